//! The engine role machine.
