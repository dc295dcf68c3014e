//! The adapter suite on tokio: engine and workers on tokio.

iii_tests::adapter_suite!(iii_tests::adapter::TokioFlavor);
