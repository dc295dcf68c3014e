//! Workspace-level test support (temporary: simulator lands with the worker).
pub mod raw;
