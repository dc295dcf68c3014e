//! Unit tests of the pure helpers.
