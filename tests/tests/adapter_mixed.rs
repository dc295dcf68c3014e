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
