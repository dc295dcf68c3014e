//! End-to-end tests of the `iii` binary: each test starts an engine in-process on
//! loopback and a backend worker, and runs the real binary against them.

mod call;
mod listing;
mod recv;
mod send;
mod support;
