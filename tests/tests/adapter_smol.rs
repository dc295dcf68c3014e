//! The adapter suite on smol: engine and workers on smol.

iii_tests::adapter_suite!(iii_tests::adapter::SmolFlavor);
