//! The distributions the efficiency budgets (`concord_sim::budgets`) were
//! chosen from: probe round trips per catch-up and messages per committed
//! entry, over a range of seeds of the default run.
//!
//! ```text
//! cargo run --release -p concord-sim --example efficiency -- 0..2000 5
//! ```
//!
//! Arguments: the seed range (default `0..2000`) and the cluster size
//! (default 5), and `probe-ignores-hint` to plant that inefficiency in the
//! core. Prints the maximum and the high percentiles of each
//! measure, and the seeds where the maxima were seen.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use concord_sim::budgets::MESSAGES_MIN_COMMITTED;
use concord_sim::{run_kv, CoreBugs, SimConfig};

fn main() {
    let mut args = std::env::args().skip(1);
    let range = args.next().unwrap_or_else(|| "0..2000".to_string());
    let (start, end) = range.split_once("..").expect("seeds as START..END");
    let (start, end): (u64, u64) = (start.parse().unwrap(), end.parse().unwrap());
    let nodes: usize = args.next().map_or(5, |n| n.parse().unwrap());
    // A third argument `probe-ignores-hint` plants that inefficiency.
    let planted = args.next().as_deref() == Some("probe-ignores-hint");
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());

    let next = AtomicU64::new(start);
    let rows: Mutex<Vec<Row>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= end {
                    break;
                }
                let config = SimConfig {
                    seed,
                    nodes,
                    core_bugs: CoreBugs {
                        probe_ignores_hint: planted,
                        ..CoreBugs::default()
                    },
                    // Budgets alone: the step rules stop a planted run.
                    step_rules: !planted,
                    ..SimConfig::default()
                };
                let report = run_kv(&config, None).expect("valid configuration");
                let failure = report
                    .failure
                    .as_ref()
                    .map(|failure| format!("{failure:?}"));
                rows.lock().unwrap().push(Row {
                    seed,
                    probes: report.efficiency.probes_max,
                    messages: report.efficiency.messages,
                    committed: report.committed,
                    quiet_centi: report.efficiency.quiet_centi,
                    failure,
                });
            });
        }
    });
    let mut rows = rows.into_inner().unwrap();
    rows.sort_unstable_by_key(|row| row.seed);

    let failures: Vec<_> = rows.iter().filter(|row| row.failure.is_some()).collect();
    println!(
        "{} seeds ({range}) of {nodes} nodes, {} failed",
        rows.len(),
        failures.len()
    );
    for row in failures.iter().take(10) {
        println!(
            "  seed {}: {}",
            row.seed,
            row.failure.as_deref().unwrap_or("")
        );
    }

    let mut probes: Vec<(usize, u64)> = rows.iter().map(|row| (row.probes, row.seed)).collect();
    probes.sort_unstable();
    report("probe round trips per catch-up", &probes, |v| v.to_string());

    let mut ratios: Vec<(u64, u64)> = rows
        .iter()
        .filter(|row| row.committed >= MESSAGES_MIN_COMMITTED)
        .map(|row| {
            let followers = nodes.max(2) as u64 - 1;
            (row.messages.div_ceil(row.committed * followers), row.seed)
        })
        .collect();
    ratios.sort_unstable();
    println!(
        "({} seeds committed fewer than {MESSAGES_MIN_COMMITTED} entries)",
        rows.len() - ratios.len()
    );
    report("messages per committed entry and follower", &ratios, |v| {
        v.to_string()
    });

    let mut quiet: Vec<(u64, u64)> = rows
        .iter()
        .filter(|row| row.quiet_centi > 0)
        .map(|row| (row.quiet_centi, row.seed))
        .collect();
    quiet.sort_unstable();
    println!("({} seeds had a quiet period)", quiet.len());
    report(
        "quiet-period messages per follower and heartbeat interval",
        &quiet,
        |v| format!("{:.2}", v as f64 / 100.0),
    );
}

/// What one seed spent.
struct Row {
    seed: u64,
    /// Most probe round trips of one catch-up.
    probes: usize,
    messages: u64,
    committed: u64,
    /// Messages per follower and heartbeat interval in the quiet period,
    /// hundredths.
    quiet_centi: u64,
    failure: Option<String>,
}

fn report<T: Copy>(what: &str, sorted: &[(T, u64)], show: impl Fn(T) -> String) {
    if sorted.is_empty() {
        return;
    }
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q) as usize].0;
    let (max, seed) = sorted[sorted.len() - 1];
    println!(
        "{what}: median {}, p99 {}, p99.9 {}, max {} (seed {seed})",
        show(at(0.5)),
        show(at(0.99)),
        show(at(0.999)),
        show(max)
    );
}
