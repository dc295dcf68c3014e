//! Channel ends inside a typed function's input: a field of type [`ChannelReader`] or
//! [`ChannelWriter`] deserializes from the channel ref the caller put there, and opens
//! that end on the worker serving the call, as the Node and Python SDKs turn refs in
//! their handlers' data into live ends.
//!
//! ```no_run
//! # fn demo<R: iii_driver::Runtime>(iii: iii_driver::worker::Iii<R>) -> Result<(), iii_driver::worker::Error> {
//! use iii_driver::worker::{ChannelReader, Error};
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! #[serde(bound = "")]
//! struct Upload<R: iii_driver::Runtime> {
//!     name: String,
//!     data: ChannelReader<R>,
//! }
//!
//! iii.register_typed("files::store", |mut upload: Upload<R>| async move {
//!     let bytes = upload.data.read_all().await?;
//!     Ok::<_, Error>(format!("{}: {} bytes", upload.name, bytes.len()))
//! })?;
//! # Ok(()) }
//! ```
//!
//! The ends are opened on the worker that registered the typed function (it is current
//! while the input is deserialized); outside a typed function's input, deserializing
//! an end fails with a message saying so.

use std::any::Any;
use std::cell::RefCell;
use std::sync::Arc;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

use super::{ChannelReader, ChannelRef, ChannelWriter, Direction, Iii};
use crate::runtime::Runtime;

type AnyWorker = Arc<dyn Any + Send + Sync>;

thread_local! {
    static WORKER: RefCell<Option<AnyWorker>> = const { RefCell::new(None) };
}

/// Runs `f` (a typed handler's deserialization and call) with `worker` current.
pub(crate) fn with_worker<T>(worker: &AnyWorker, f: impl FnOnce() -> T) -> T {
    let previous = WORKER.with(|current| current.replace(Some(worker.clone())));
    let result = f();
    WORKER.with(|current| *current.borrow_mut() = previous);
    result
}

/// The worker serving the typed input being deserialized on this thread.
fn current<R: Runtime>() -> Option<Iii<R>> {
    WORKER.with(|current| {
        current
            .borrow()
            .as_ref()
            .and_then(|worker| worker.downcast_ref::<Iii<R>>().cloned())
    })
}

/// The ref of `direction` at this place of the input, and the worker to open it on.
fn opened<'de, D: Deserializer<'de>, R: Runtime>(
    deserializer: D,
    direction: Direction,
    what: &str,
) -> Result<(Iii<R>, ChannelRef), D::Error> {
    let channel_ref = ChannelRef::deserialize(deserializer)?;
    if channel_ref.direction != direction {
        return Err(D::Error::custom(format!(
            "a {what} needs a channel ref with direction `{}`",
            match direction {
                Direction::Read => "read",
                Direction::Write => "write",
            }
        )));
    }
    let iii = current::<R>().ok_or_else(|| {
        D::Error::custom(format!(
            "a {what} deserializes only in the input of a function registered with \
             register_typed (it opens the end on that worker)"
        ))
    })?;
    Ok((iii, channel_ref))
}

impl<'de, R: Runtime> Deserialize<'de> for ChannelReader<R> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (iii, channel_ref) = opened::<D, R>(deserializer, Direction::Read, "ChannelReader")?;
        Ok(ChannelReader::new(&iii, &channel_ref))
    }
}

impl<'de, R: Runtime> Deserialize<'de> for ChannelWriter<R> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (iii, channel_ref) = opened::<D, R>(deserializer, Direction::Write, "ChannelWriter")?;
        Ok(ChannelWriter::new(&iii, &channel_ref))
    }
}
