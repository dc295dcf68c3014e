//! The adapter suite on tokio: engine and workers on tokio.

use iii_tests::adapter::{self, Flavor, TokioFlavor as F};

macro_rules! suite {
    ($($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            F::block_on(async {
                let engine = adapter::engine(F::rt()).await;
                adapter::$name(F::rt(), &engine.url()).await;
                engine.shutdown().await;
            });
        }
    )*};
}

suite!(
    invoke_round_trip,
    void_call,
    invocation_stopped_when_the_target_leaves,
    trigger_timeout,
    sender_to_processor,
    coordinator_and_worker,
    dropped_writer_fails_the_reader,
    wrong_key_and_reused_ref_are_refused,
    trigger_type_and_binding,
);

#[test]
fn transfer_256_mib_with_sha256() {
    F::block_on(async {
        let engine = adapter::engine(F::rt()).await;
        adapter::transfer(F::rt(), F::rt(), &engine.url(), 256 << 20).await;
        engine.shutdown().await;
    });
}
