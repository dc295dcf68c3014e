//! The `upgrade_target` target.

use iii_core::channel::{channel_url, ChannelRef};
use iii_core::upgrade::{parse_target, Route};

/// `upgrade_target`: `parse_target` never panics on any string, and a channel route
/// re-rendered with `channel_url("", ..)` parses back to exactly the same channel id, key
/// and direction (routing percent-decodes the id that `channel_url` encodes; see
/// FUZZING.md, findings 1 and 3).
pub fn upgrade_target(data: &[u8]) {
    let target = String::from_utf8_lossy(data);
    let Ok(Route::Channel {
        channel_id,
        key,
        direction,
    }) = parse_target(&target)
    else {
        return;
    };
    let channel_ref = ChannelRef {
        channel_id: channel_id.clone(),
        access_key: key.clone(),
        direction,
    };
    let url = channel_url("", &channel_ref);
    let Ok(Route::Channel {
        channel_id: id_again,
        key: key_again,
        direction: direction_again,
    }) = parse_target(&url)
    else {
        panic!("{url:?} (rendered from {target:?}) is not a channel route");
    };
    assert_eq!(key_again, key, "key of {target:?} changed through {url:?}");
    assert_eq!(
        direction_again, direction,
        "direction changed through {url:?}"
    );
    assert_eq!(id_again, channel_id, "channel id changed through {url:?}");
}
