//! Benchmark helpers for concord.
//!
//! [`concord_loop`] is the core's throughput loop: a 3-node
//! cluster in memory, driven in one thread, committing 200,000 proposals of
//! 128 bytes in four cells (`lock` or `pipe` feeding, batches of 1 or 64).
//! The criterion bench `throughput` (`core/throughput.rs`) includes the
//! same file.
//!
//! With the `raft-rs` feature, `raft_loop` runs the identical loop on
//! raft-rs 0.7 and the `compare` bench prints both side by side:
//!
//! ```text
//! cargo bench -p concord-bench --features raft-rs --bench compare
//! ```
#![deny(missing_docs)]

pub mod concord_loop;

pub mod env;

pub mod plot;

#[cfg(feature = "raft-rs")]
pub mod raft_loop;

/// Median of `samples` (the mean of the two middle values for an even
/// count).
///
/// # Panics
///
/// If `samples` is empty.
pub fn median(samples: &[f64]) -> f64 {
    assert!(!samples.is_empty(), "median of no samples");
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}
