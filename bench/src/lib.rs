//! Benchmark helpers: placeholder, being written.
