//! Placeholder: the smol adapter is built in its own issue.
