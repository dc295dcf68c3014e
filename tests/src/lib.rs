//! Workspace-level test support for iii-rs: a deterministic simulator of one engine
//! and N workers on a virtual clock, and the transcript used to check determinism.

pub mod fuzzing;
pub mod ops;
pub mod raw;
pub mod sim;
pub mod transcript;

pub use sim::{Sim, SimConfig};
