//! The `correlator` target.

use super::*;
use crate::{Input, MAX_OPS};
use iii_core::Instant;

use iii_core::worker::FunctionSpec;

/// `correlator`: the worker's call correlation through the public [`Worker`] API.
/// Arbitrary sequences of `invoke`, results (for pending, finished and unknown ids, with
/// results, nulls and errors), incoming invocations and `complete`, timeouts, connection
/// losses and reconnects. Every call completes exactly once, with the outcome of the
/// result delivered for it, no later than its deadline, and at once when the connection
/// it was sent on is lost; `complete` succeeds exactly once per waiting invocation.
pub fn correlator(data: &[u8], start: Instant) {
    let mut input = Input::new(data);
    let mut rig = WorkerRig::new(input.u8(), start, true);
    // Serve `f0` and start connected, so most calls reach the "engine".
    let spec = FunctionSpec {
        id: "f0".to_owned(),
        description: None,
        request_format: None,
        response_format: None,
        metadata: None,
    };
    if rig.worker.register_function(start, spec).is_ok() {
        rig.functions.push("f0".to_owned());
    }
    if let Some(conn) = rig.pick_conn(&mut Input::new(&[]), &[Link::Pending]) {
        if let Some(c) = rig.conns.get_mut(&conn) {
            c.link = Link::Open;
        }
        rig.worker.handle_connected(start, conn);
        rig.drain();
    }
    let mut ops = 0;
    while !input.is_empty() && ops < MAX_OPS {
        ops += 1;
        rig.step(&mut input);
    }
    rig.finish();
}
