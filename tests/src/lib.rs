//! Workspace-level test support for iii-rs: a deterministic simulator of one engine
//! and N workers on a virtual clock, the transcript used to check determinism, and the
//! interop harness (published SDKs against our engine, see INTEROP.md).

pub mod adapter;
pub mod fake_engine;
pub mod fuzzing;
pub mod interop;
pub mod ops;
pub mod peer;
pub mod raw;
pub mod rbac_fixtures;
pub mod sim;
pub mod toolchain;
pub mod transcript;

pub use sim::{Sim, SimConfig};
