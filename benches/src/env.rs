//! Benchmark settings from the environment (`CONCORD_BENCH_*`): one
//! reading of them for every benchmark in the workspace. This crate's
//! library exports it as `concord_bench::env`; some benches include this
//! file with `#[path]` instead.

/// A number from the environment variable `name`, or `default` when it
/// is unset or not a number.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// A comma-separated list of numbers from the environment variable
/// `name` (items that are not numbers are skipped), or `default` when it
/// is unset.
pub fn env_list(name: &str, default: &[usize]) -> Vec<usize> {
    std::env::var(name)
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| default.to_vec())
}
