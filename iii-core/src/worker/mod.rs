//! The worker role machine.
