//! Running the built-in key-value service, one seed or many in parallel.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::SimConfig;
use crate::engine::{FaultCounts, RunReport, Simulation, SnapshotCounts};
use crate::faults::FaultPlan;
use crate::history::Operation;
use crate::kv::{KvStateMachine, KvWorkload, KvWorkloadConfig};

/// Runs the key-value service under `config`, with the seed's own fault
/// plan or the one given.
pub fn run_kv(config: &SimConfig, plan: Option<FaultPlan>) -> Result<RunReport, String> {
    run_kv_with_history(config, plan).map(|(report, _)| report)
}

/// [`run_kv`], also returning the client history it recorded.
pub fn run_kv_with_history(
    config: &SimConfig,
    plan: Option<FaultPlan>,
) -> Result<(RunReport, Vec<Operation>), String> {
    let nondeterministic = config.bugs.nondeterministic_state_machine;
    let workload = KvWorkload::new(
        KvWorkloadConfig {
            keys: config.keys,
            ..KvWorkloadConfig::default()
        },
        config.clients,
    );
    let simulation = Simulation::new(
        config.clone(),
        plan,
        move |id| {
            if nondeterministic {
                KvStateMachine::nondeterministic(id)
            } else {
                KvStateMachine::new()
            }
        },
        workload,
    )?;
    let (report, workload) = simulation.run_with_workload();
    Ok((report, workload.history().to_vec()))
}

/// Totals over many seeds.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Seeds run.
    pub seeds: u64,
    /// Reports of the failed seeds, in seed order.
    pub failures: Vec<RunReport>,
    /// `(seed, trace hash)` of every seed, in seed order.
    pub hashes: Vec<(u64, u64)>,
    /// Node steps over all seeds.
    pub node_steps: u64,
    /// Engine events over all seeds.
    pub events: u64,
    /// Virtual time over all seeds, nanoseconds.
    pub simulated_ns: u64,
    /// Client operations checked.
    pub operations: u64,
    /// Faults injected, by kind.
    pub faults: FaultCounts,
    /// Snapshots taken and installed, chunks sent.
    pub snapshots: SnapshotCounts,
    /// Wall-clock time taken.
    pub wall: Duration,
}

impl Summary {
    fn add(&mut self, report: RunReport) {
        self.seeds += 1;
        self.node_steps += report.node_steps;
        self.events += report.events;
        self.simulated_ns += report.simulated_ns;
        self.operations += report.operations;
        self.faults.merge(&report.faults);
        self.snapshots.merge(&report.snapshots);
        self.hashes.push((report.config.seed, report.trace_hash));
        if !report.passed() {
            self.failures.push(report);
        }
    }

    /// Seeds per wall-clock second.
    pub fn seeds_per_second(&self) -> f64 {
        self.seeds as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    /// Simulated seconds per wall-clock second (summed over workers).
    pub fn speedup(&self) -> f64 {
        self.simulated_ns as f64 / 1e9 / self.wall.as_secs_f64().max(1e-9)
    }

    /// Node steps per wall-clock second.
    pub fn steps_per_second(&self) -> f64 {
        self.node_steps as f64 / self.wall.as_secs_f64().max(1e-9)
    }
}

/// Runs every seed of `seeds` with `template` (its seed replaced), on
/// `jobs` worker threads, each running whole seeds. Results are merged in
/// seed order, so the summary does not depend on scheduling. `progress` is
/// called after each seed (from worker threads).
pub fn run_seeds(
    template: &SimConfig,
    seeds: Range<u64>,
    jobs: usize,
    progress: &(dyn Fn(&RunReport) + Sync),
) -> Result<Summary, String> {
    template.validate()?;
    let started = Instant::now();
    let next = AtomicU64::new(seeds.start);
    // Passing seeds are folded into the totals at once (sums do not depend
    // on order); only failures keep their whole report.
    let summary: Mutex<Summary> = Mutex::new(Summary::default());
    let error: Mutex<Option<String>> = Mutex::new(None);
    let jobs = jobs.clamp(1, 256);
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= seeds.end {
                    break;
                }
                let config = SimConfig {
                    seed,
                    ..template.clone()
                };
                match run_kv(&config, None) {
                    Ok(report) => {
                        progress(&report);
                        if let Ok(mut summary) = summary.lock() {
                            summary.add(report);
                        }
                    }
                    Err(message) => {
                        if let Ok(mut error) = error.lock() {
                            error.get_or_insert(message);
                        }
                        break;
                    }
                }
            });
        }
    });
    if let Some(message) = error.into_inner().ok().flatten() {
        return Err(message);
    }
    let mut summary = summary
        .into_inner()
        .map_err(|_| "a worker thread panicked".to_string())?;
    summary.hashes.sort_unstable();
    summary.failures.sort_by_key(|report| report.config.seed);
    summary.wall = started.elapsed();
    Ok(summary)
}
