//! concord against raft-rs 0.7 on the same in-memory loop, cells interleaved
//! (concord cell, raft-rs cells, next cell, …) so that both libraries see the
//! same machine conditions. raft-rs runs on each of its three proposal
//! paths (`raft_loop::ProposePath`): one `propose` call per entry, one
//! `MsgPropose` per round, and one `MsgPropose` with `batch_append`; the
//! ratio is taken against the fastest of the three in each cell, as a
//! ratio of medians and as the median of each run's ratio (concord's run
//! against the best raft-rs path of the same run, which ran right after
//! it).
//!
//! ```text
//! cargo bench -p concord-bench --features raft-rs --bench compare
//! ```
//!
//! Both libraries are built with the workspace's `bench` profile (thin LTO,
//! one codegen unit: see the root `Cargo.toml`).
//!
//! Environment (all optional, for profiling and quick looks):
//! `CONCORD_BENCH_RUNS` runs per cell (default 5); `CONCORD_BENCH_ONLY` =
//! `raft-rs` runs raft-rs's three paths alone, and `concord`,
//! `raft-rs/propose`, `raft-rs/msg` or `raft-rs/msg+batch_append` one
//! contestant alone (for profiling); `CONCORD_BENCH_CELL` =
//! `lock/1`, `pipe/1`, `lock/64` or `pipe/64` runs one cell alone.

use std::time::Duration;

use concord_bench::concord_loop::{
    run_once, BenchCluster, Cell, Cluster, PAYLOAD_BYTES, PROPOSALS,
};
use concord_bench::raft_loop::{BatchAppend, OneMessage, RaftCluster, Separate};
use concord_bench::{median, plot};

fn entries_per_second(proposals: u64, elapsed: Duration) -> f64 {
    proposals as f64 / elapsed.as_secs_f64()
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// One contestant: its name and a function that runs one cell.
struct Contestant {
    name: &'static str,
    run: fn(Cell, u64) -> Duration,
    raft_rs: bool,
}

fn contestant<C: BenchCluster>(raft_rs: bool) -> Contestant {
    Contestant {
        name: C::NAME,
        run: run_once::<C>,
        raft_rs,
    }
}

fn main() {
    let runs: usize = env("CONCORD_BENCH_RUNS")
        .map(|runs| runs.parse().expect("CONCORD_BENCH_RUNS must be a number"))
        .unwrap_or(5)
        .max(1);
    let only = env("CONCORD_BENCH_ONLY");
    let contestants: Vec<Contestant> = [
        contestant::<Cluster>(false),
        contestant::<RaftCluster<Separate>>(true),
        contestant::<RaftCluster<OneMessage>>(true),
        contestant::<RaftCluster<BatchAppend>>(true),
    ]
    .into_iter()
    .filter(|c| match only.as_deref() {
        None => true,
        Some("raft-rs") => c.raft_rs,
        Some(name) => c.name == name,
    })
    .collect();
    assert!(
        !contestants.is_empty(),
        "CONCORD_BENCH_ONLY must be `raft-rs` (its three paths) or one name of: concord, \
         raft-rs/propose, raft-rs/msg, raft-rs/msg+batch_append"
    );
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

    // One untimed warm-up of each contestant, so the first cell does not
    // pay for page faults and allocator growth alone.
    for c in &contestants {
        (c.run)(cells[0], PROPOSALS / 10);
    }

    // rates[cell][contestant] = entries/s of every run.
    let mut rates = vec![vec![Vec::new(); contestants.len()]; cells.len()];
    for run in 1..=runs {
        for (i, cell) in cells.iter().enumerate() {
            let mut line = format!("run {run}/{runs} {:>8}:", cell.name());
            for (j, c) in contestants.iter().enumerate() {
                let rate = entries_per_second(PROPOSALS, (c.run)(*cell, PROPOSALS));
                line.push_str(&format!(" {} {:.3} M/s;", c.name, rate / 1e6));
                rates[i][j].push(rate);
            }
            println!("{line}");
        }
    }

    println!();
    println!("median entries/s over {runs} runs (entries applied on all 3 nodes), in millions");
    let mut header = String::from("| cell     |");
    let mut rule = String::from("| -------- |");
    for c in &contestants {
        header.push_str(&format!(" {} |", c.name));
        rule.push_str(" ---: |");
    }
    let ratio = contestants.iter().any(|c| !c.raft_rs) && contestants.iter().any(|c| c.raft_rs);
    if ratio {
        header.push_str(" concord / best raft-rs | median of per-run ratios |");
        rule.push_str(" ---: | ---: |");
    }
    println!("{header}");
    println!("{rule}");
    for (i, cell) in cells.iter().enumerate() {
        let medians: Vec<f64> = rates[i].iter().map(|r| median(r)).collect();
        let mut row = format!("| {:<8} |", cell.name());
        for m in &medians {
            row.push_str(&format!(" {:.3} |", m / 1e6));
        }
        if ratio {
            let ours = medians[0];
            let best_raft = contestants
                .iter()
                .zip(&medians)
                .filter(|(c, _)| c.raft_rs)
                .map(|(_, m)| *m)
                .fold(0.0, f64::max);
            row.push_str(&format!(" {:.2}x |", ours / best_raft));
            // Each run's contestants ran back to back, so a spell in which
            // the machine runs slow for a while tends to hit one run of
            // all of them: the ratio within a run cancels it where the
            // ratio of medians (which may take concord's median from a
            // slow run and raft-rs's from a fast one) does not.
            let per_run: Vec<f64> = (0..runs)
                .map(|run| {
                    let best_raft = contestants
                        .iter()
                        .zip(&rates[i])
                        .filter(|(c, _)| c.raft_rs)
                        .map(|(_, r)| r[run])
                        .fold(0.0, f64::max);
                    rates[i][0][run] / best_raft
                })
                .collect();
            row.push_str(&format!(" {:.2}x |", median(&per_run)));
        }
        println!("{row}");
    }
    write_results(&cells, &contestants, &rates);
}

/// Every run as CSV and the medians as a plot, in the results directory.
fn write_results(cells: &[Cell], contestants: &[Contestant], rates: &[Vec<Vec<f64>>]) {
    let mut csv = String::from("cell,contestant,run,entries_per_sec\n");
    for (i, cell) in cells.iter().enumerate() {
        for (j, c) in contestants.iter().enumerate() {
            for (run, rate) in rates[i][j].iter().enumerate() {
                csv.push_str(&format!(
                    "{},{},{},{rate:.0}\n",
                    cell.name(),
                    c.name,
                    run + 1
                ));
            }
        }
    }
    let labels: Vec<String> = cells.iter().map(|c| c.name()).collect();
    let series: Vec<plot::Series> = contestants
        .iter()
        .enumerate()
        .map(|(j, c)| plot::Series {
            name: c.name.to_string(),
            values: (0..cells.len())
                .map(|i| Some(median(&rates[i][j]) / 1e6))
                .collect(),
        })
        .collect();
    let svg = plot::line_chart(
        "Core loop: entries applied on all 3 nodes (median of runs)",
        "cell (feeding / batch)",
        "million entries/s",
        &labels,
        &series,
    );
    match plot::write_results(&[("compare.csv", csv), ("compare.svg", svg)]) {
        Ok(dir) => println!("wrote compare.csv and compare.svg to {}", dir.display()),
        Err(e) => println!("could not write the results: {e}"),
    }
}
