//! Mixed pairs: a smol worker streams to a tokio worker through a tokio engine, and the
//! reverse through a smol engine.

use iii_tests::adapter::{self, Flavor, SmolFlavor, TokioFlavor};

const SIZE: usize = 16 << 20;

#[test]
fn smol_writer_to_tokio_reader_through_a_tokio_engine() {
    TokioFlavor::block_on(async {
        let engine = adapter::engine(TokioFlavor::rt()).await;
        adapter::transfer(SmolFlavor::rt(), TokioFlavor::rt(), &engine.url(), SIZE).await;
        engine.shutdown().await;
    });
}

#[test]
fn tokio_writer_to_smol_reader_through_a_smol_engine() {
    // The tokio runtime hosts the tokio worker; the test body awaits on it.
    TokioFlavor::block_on(async {
        let engine = adapter::engine(SmolFlavor::rt()).await;
        adapter::transfer(TokioFlavor::rt(), SmolFlavor::rt(), &engine.url(), SIZE).await;
        engine.shutdown().await;
    });
}

/// A smol worker creates the channels and drops its unused ends; a tokio worker uses
/// the handed-off refs.
mod smol_creates_tokio_uses {
    use iii_tests::adapter::{SmolFlavor, TokioFlavor};
    iii_tests::adapter_suite!(@pairs TokioFlavor; SmolFlavor, TokioFlavor;
        dropped_unused_writer_leaves_the_handed_off_ref_working,
        dropped_unused_reader_leaves_the_handed_off_ref_working,
    );
}

/// A tokio worker creates the channels and drops its unused ends; a smol worker uses
/// the handed-off refs.
mod tokio_creates_smol_uses {
    use iii_tests::adapter::{SmolFlavor, TokioFlavor};
    iii_tests::adapter_suite!(@pairs TokioFlavor; TokioFlavor, SmolFlavor;
        dropped_unused_writer_leaves_the_handed_off_ref_working,
        dropped_unused_reader_leaves_the_handed_off_ref_working,
    );
}
