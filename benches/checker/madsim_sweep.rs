//! Speed of the deployed runtime's sweep under madsim
//! (`scripts/madsim-sweep`, docs/simulator.md): seeds per minute and
//! simulated seconds per wall second of a 3-node cluster with one group
//! and with 64 groups, release build, the default fault mix (8 faults a
//! seed, some 15 simulated seconds of them).
//!
//! The sweep runs only in a `--cfg madsim` build, which cannot link into
//! this crate, so the benchmark runs the command users run, one case
//! after the other (the first builds it in `target/madsim`), and reads
//! its summary. Not criterion: one timed run per case is the figure.
//!
//! ```text
//! cargo bench -p concord-bench --bench madsim_sweep
//! ```
//!
//! `CONCORD_BENCH_SEEDS` (default 200) seeds a case, from seed 76,000;
//! `CONCORD_BENCH_JOBS` (default 2) processes at once. The goal: at
//! least 100 seeds a minute for a 3-node cluster.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use concord_bench::env::env_u64;

/// The repository's root (this crate is `benches/`).
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("benches/ has a parent")
        .to_path_buf()
}

/// What one case's summary said.
struct Case {
    seeds: u64,
    wall_secs: f64,
    simulated_secs: f64,
    operations: u64,
    failures: u64,
}

/// The number right after `after` in `text`.
fn number_after(text: &str, after: &str) -> Option<f64> {
    let rest = &text[text.find(after)? + after.len()..];
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    digits.parse().ok()
}

/// The number right before `before` in `text`.
fn number_before(text: &str, before: &str) -> Option<f64> {
    let head = &text[..text.find(before)?];
    let digits: String = head
        .trim_end()
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    digits.parse().ok()
}

fn run_case(groups: u64, seeds: u64, jobs: u64) -> Case {
    let from = 76_000;
    let started = Instant::now();
    let output = Command::new(root().join("scripts/madsim-sweep"))
        .current_dir(root())
        .args(["--seeds", &format!("{from}..{}", from + seeds)])
        .args(["--nodes", "3", "--groups", &groups.to_string()])
        .args(["--jobs", &jobs.to_string(), "--quiet"])
        .output()
        .expect("scripts/madsim-sweep runs");
    let elapsed = started.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    let parse = || -> Option<Case> {
        Some(Case {
            seeds: number_after(&text, "madsim-sweep:")? as u64,
            wall_secs: number_before(&text, "s with")?,
            simulated_secs: number_before(&text, "simulated seconds")?,
            operations: number_before(&text, "client operations checked")? as u64,
            failures: number_after(&text, "failures:")? as u64,
        })
    };
    parse().unwrap_or_else(|| {
        panic!(
            "scripts/madsim-sweep ({elapsed:.0} s, {}) printed no summary:\n{text}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn main() {
    // `cargo bench` passes `--bench`; a test run (`cargo test --benches`)
    // does not, and this takes minutes.
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("madsim_sweep: skipped outside `cargo bench`");
        return;
    }
    let seeds = env_u64("CONCORD_BENCH_SEEDS", 200);
    let jobs = env_u64("CONCORD_BENCH_JOBS", 2);
    println!(
        "madsim_sweep: 3 nodes, default fault mix, {seeds} seeds a case from 76000, {jobs} jobs, \
         release build of scripts/madsim-sweep"
    );
    println!("| groups | seeds | wall s | seeds per minute | simulated s per seed | simulated s per wall s | operations checked | failures |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for groups in [1, 64] {
        let case = run_case(groups, seeds, jobs);
        println!(
            "| {groups} | {} | {:.1} | {:.0} | {:.1} | {:.0} | {} | {} |",
            case.seeds,
            case.wall_secs,
            case.seeds as f64 * 60.0 / case.wall_secs.max(1e-9),
            case.simulated_secs / case.seeds.max(1) as f64,
            case.simulated_secs / case.wall_secs.max(1e-9),
            case.operations,
            case.failures
        );
    }
}
