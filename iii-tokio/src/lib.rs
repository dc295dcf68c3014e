//! Placeholder: the tokio adapter is built in its own issue.
