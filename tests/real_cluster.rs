//! Placeholder; filled in by the tokio runtime work.
