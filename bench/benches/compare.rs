//! concord against raft-rs 0.7 on the same in-memory loop, cells interleaved
//! (concord cell, raft-rs cell, next cell, …) so that both libraries see the
//! same machine conditions.
//!
//! ```text
//! cargo bench -p concord-bench --features raft-rs --bench compare
//! ```
//!
//! Environment (all optional, for profiling and quick looks):
//! `CONCORD_BENCH_RUNS` runs per cell (default 5); `CONCORD_BENCH_ONLY` =
//! `concord` or `raft-rs` runs one library alone; `CONCORD_BENCH_CELL` =
//! `lock/1`, `pipe/1`, `lock/64` or `pipe/64` runs one cell alone.

use std::time::Duration;

use concord_bench::concord_loop::{run_once, Cell, Cluster, PAYLOAD_BYTES, PROPOSALS};
use concord_bench::median;
use concord_bench::raft_loop::RaftCluster;

fn entries_per_second(proposals: u64, elapsed: Duration) -> f64 {
    proposals as f64 / elapsed.as_secs_f64()
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

fn main() {
    let runs: usize = env("CONCORD_BENCH_RUNS")
        .map(|runs| runs.parse().expect("CONCORD_BENCH_RUNS must be a number"))
        .unwrap_or(5)
        .max(1);
    let only = env("CONCORD_BENCH_ONLY");
    assert!(
        matches!(only.as_deref(), None | Some("concord") | Some("raft-rs")),
        "CONCORD_BENCH_ONLY must be `concord` or `raft-rs`"
    );
    let run_concord = only.as_deref() != Some("raft-rs");
    let run_raft = only.as_deref() != Some("concord");
    let cell_filter = env("CONCORD_BENCH_CELL");
    let cells: Vec<Cell> = Cell::ALL
        .into_iter()
        .filter(|cell| {
            cell_filter.as_deref().is_none() || cell_filter.as_deref() == Some(cell.name().as_str())
        })
        .collect();
    assert!(
        !cells.is_empty(),
        "CONCORD_BENCH_CELL must be one of lock/1, pipe/1, lock/64, pipe/64"
    );
    println!(
        "{PROPOSALS} proposals of {} bytes, 3 nodes in memory, {runs} runs per cell",
        PAYLOAD_BYTES
    );

    // One untimed warm-up of each library, so the first cell does not pay
    // for page faults and allocator growth alone.
    if run_concord {
        run_once::<Cluster>(cells[0], PROPOSALS / 10);
    }
    if run_raft {
        run_once::<RaftCluster>(cells[0], PROPOSALS / 10);
    }

    let mut concord = vec![Vec::new(); cells.len()];
    let mut raft = vec![Vec::new(); cells.len()];
    for run in 1..=runs {
        for (i, cell) in cells.iter().enumerate() {
            let ours = if run_concord {
                entries_per_second(PROPOSALS, run_once::<Cluster>(*cell, PROPOSALS))
            } else {
                f64::NAN
            };
            let theirs = if run_raft {
                entries_per_second(PROPOSALS, run_once::<RaftCluster>(*cell, PROPOSALS))
            } else {
                f64::NAN
            };
            println!(
                "run {run}/{runs} {:>8}: concord {:>6.3} M/s, raft-rs {:>6.3} M/s",
                cell.name(),
                ours / 1e6,
                theirs / 1e6
            );
            concord[i].push(ours);
            raft[i].push(theirs);
        }
    }

    println!();
    println!("median entries/s over {runs} runs (entries applied on all 3 nodes)");
    println!("| cell     |    concord |    raft-rs | concord/raft-rs |");
    println!("| -------- | ---------- | ---------- | --------------- |");
    for (i, cell) in cells.iter().enumerate() {
        let ours = median(&concord[i]);
        let theirs = median(&raft[i]);
        println!(
            "| {:<8} | {:>8.3} M | {:>8.3} M | {:>14.2}x |",
            cell.name(),
            ours / 1e6,
            theirs / 1e6,
            ours / theirs
        );
    }
}
