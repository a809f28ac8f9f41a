//! Running the built-in key-value service, one seed or many in parallel.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::budgets::ExpectationExceeded;
use crate::config::SimConfig;
use crate::engine::{
    FaultCounts, ForcedRecoveryReport, RunReport, SessionCounts, Simulation, SnapshotCounts,
};
use crate::faults::{FaultKind, FaultPlan};
use crate::history::Operation;
use crate::performance::PerformanceJson;
use crate::services::kv::{KvWorkload, KvWorkloadConfig, Nondeterministic};
use crate::watchdog::SeedWatch;
use concord_services::kv::Kv;
use concord_services::ServiceMachine;
use serde::{Deserialize, Serialize};

/// Runs the key-value service under `config`, with the seed's own fault
/// plan or the one given.
pub fn run_kv(config: &SimConfig, plan: Option<FaultPlan>) -> Result<RunReport, String> {
    if config.service != crate::services::Service::Builtin {
        return crate::services::run_service(config, plan).map(|(report, _)| report);
    }
    // A sweep only needs the report: no copy of the history.
    run_kv_workload(config, plan).map(|(report, _)| report)
}

/// [`run_kv`], also returning the client history it recorded.
pub fn run_kv_with_history(
    config: &SimConfig,
    plan: Option<FaultPlan>,
) -> Result<(RunReport, Vec<Operation>), String> {
    if config.service != crate::services::Service::Builtin {
        return crate::services::run_service(config, plan);
    }
    let (report, workload) = run_kv_workload(config, plan)?;
    Ok((report, workload.history().to_vec()))
}

/// Runs the key-value service and hands back its workload (which holds
/// the recorded history).
fn run_kv_workload(
    config: &SimConfig,
    plan: Option<FaultPlan>,
) -> Result<(RunReport, KvWorkload), String> {
    let nondeterministic = config.bugs.nondeterministic_state_machine;
    let workload = KvWorkload::new(
        KvWorkloadConfig {
            keys: config.keys,
            ..KvWorkloadConfig::default()
        },
        config.clients,
    );
    // Every replica the same store; with the planted bug, each applies
    // some commands twice, on indices its id picks.
    let salt = move |id| nondeterministic.then_some(id);
    let simulation = Simulation::new(
        config.clone(),
        plan,
        move |id| Nondeterministic::new(ServiceMachine::<Kv>::new(), salt(id)),
        workload,
    )?;
    Ok(simulation.run_with_workload())
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
    /// The forced recoveries run, by seed (their lists of operation ids
    /// left out), in seed order.
    pub forced: Vec<(u64, ForcedRecoveryReport)>,
    /// Writes measured from proposal to commit after the quiet period
    /// (`crate::budgets`), over all seeds.
    pub latency_writes: u64,
    /// The longest of them, nanoseconds.
    pub commit_latency_max_ns: u64,
    /// Session-contract probes and session evictions, over all seeds.
    pub sessions: SessionCounts,
    /// What the on-disk state machines did, summed over the seeds.
    pub durable: crate::DurableCounts,
    /// Follower applies measured after the latency writes, over all seeds.
    pub follower_applies: u64,
    /// The longest time from a latency write's commit at the leader to its
    /// apply at a follower, nanoseconds.
    pub follower_apply_max_ns: u64,
    /// Linearizable reads measured on the calm network, over all seeds.
    pub calm_reads: u64,
    /// The longest of them, nanoseconds.
    pub read_latency_max_ns: u64,
    /// Backlogs measured on the calm network (seeds that ran one).
    pub backlogs: u64,
    /// The slowest of them, in hundredths of a calm round trip.
    pub backlog_centi_round_trips_max: u64,
    /// Statistical budgets exceeded (`crate::budgets::Expectation`), by
    /// seed, in seed order: reported, not failed, unless
    /// `strict_budgets`.
    pub expectations: Vec<(u64, ExpectationExceeded)>,
    /// Calm-phase measurements left unjudged (`Efficiency::calm_unjudged`).
    pub calm_unjudged: u64,
    /// Runs whose liveness was not owed (`Efficiency::liveness_unowed`).
    pub liveness_unowed: u64,
    /// Followers repaired by the idle catch-up check, over all seeds.
    pub idle_catch_ups: u64,
    /// The slowest of those repairs, in hundredths of a heartbeat
    /// interval.
    pub idle_catch_up_centi_heartbeats_max: u64,
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
        self.sessions.merge(&report.sessions);
        self.durable.merge(&report.durable);
        self.latency_writes += u64::from(report.efficiency.latency_writes);
        self.commit_latency_max_ns = self
            .commit_latency_max_ns
            .max(report.efficiency.commit_latency_max_ns);
        let efficiency = &report.efficiency;
        self.follower_applies += u64::from(efficiency.follower_applies);
        self.follower_apply_max_ns = self
            .follower_apply_max_ns
            .max(efficiency.follower_apply_max_ns);
        self.calm_reads += u64::from(efficiency.reads);
        self.read_latency_max_ns = self.read_latency_max_ns.max(efficiency.read_latency_max_ns);
        self.backlogs += u64::from(efficiency.backlog_entries > 0);
        self.backlog_centi_round_trips_max = self
            .backlog_centi_round_trips_max
            .max(efficiency.backlog_centi_round_trips);
        self.calm_unjudged += u64::from(efficiency.calm_unjudged);
        self.liveness_unowed += u64::from(efficiency.liveness_unowed);
        self.idle_catch_ups += u64::from(efficiency.idle_catch_ups);
        self.idle_catch_up_centi_heartbeats_max = self
            .idle_catch_up_centi_heartbeats_max
            .max(efficiency.idle_catch_up_centi_heartbeats);
        let seed = report.config.seed;
        self.expectations.extend(
            report
                .expectations
                .iter()
                .map(|exceeded| (seed, exceeded.clone())),
        );
        self.hashes.push((report.config.seed, report.trace_hash));
        if let Some(forced) = report.forced_recovery.as_ref() {
            let forced = ForcedRecoveryReport {
                held_op_ids: Vec::new(),
                final_op_ids: Vec::new(),
                ..forced.clone()
            };
            self.forced.push((report.config.seed, forced));
        }
        if !report.passed() {
            self.failures.push(report);
        }
    }

    /// Acknowledged writes reported lost by forced recoveries.
    pub fn lost_writes(&self) -> u64 {
        self.forced
            .iter()
            .map(|(_, forced)| forced.lost_writes().count() as u64)
            .sum()
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
    run_seeds_watched(template, seeds, jobs, progress, None)
}

/// What [`run_seeds_watched`] does about a seed that never finishes.
pub struct HangWatch<'a> {
    /// Wall-clock time one seed may run before it counts as hung.
    pub limit: Duration,
    /// Told the hung seed's configuration and how long it has run. Its
    /// worker is stuck inside a step and cannot be stopped, so the process
    /// exits with code 1 when this returns.
    pub on_hang: &'a (dyn Fn(&SimConfig, Duration) + Sync),
}

/// [`run_seeds`], with a watch that names a seed running longer than
/// `hang.limit` of wall-clock time (see [`crate::watchdog`]) and then exits
/// the process, instead of hanging the sweep with no seed named.
pub fn run_seeds_watched(
    template: &SimConfig,
    seeds: Range<u64>,
    jobs: usize,
    progress: &(dyn Fn(&RunReport) + Sync),
    hang: Option<HangWatch<'_>>,
) -> Result<Summary, String> {
    template.validate()?;
    let started = Instant::now();
    let with_seed = |seed| SimConfig {
        seed,
        ..template.clone()
    };
    let on_hang = |seed, elapsed| {
        if let Some(hang) = &hang {
            (hang.on_hang)(&with_seed(seed), elapsed);
        }
    };
    let mut summary = run_parallel(
        seeds,
        jobs,
        hang.as_ref().map(|hang| hang.limit),
        &on_hang,
        &|seed| run_kv(&with_seed(seed), None),
        progress,
        Summary::add,
    )?;
    summary.hashes.sort_unstable();
    summary.failures.sort_by_key(|report| report.config.seed);
    summary.forced.sort_by_key(|(seed, _)| *seed);
    summary.wall = started.elapsed();
    Ok(summary)
}

/// Runs `run` on every seed of `seeds` on `jobs` worker threads (1 to
/// 256), each taking whole seeds, and folds each result into the totals
/// with `add` at once (sums do not depend on order; the caller sorts what
/// does). `progress` is called after each seed (from worker threads). The
/// first error of a run ends the sweep with it. With a `hang_limit`, a
/// watch (see [`crate::watchdog`]) tells `on_hang` the seed that ran
/// longer than that, and how long, and exits the process.
pub(crate) fn run_parallel<R, S: Default + Send>(
    seeds: Range<u64>,
    jobs: usize,
    hang_limit: Option<Duration>,
    on_hang: &(dyn Fn(u64, Duration) + Sync),
    run: &(dyn Fn(u64) -> Result<R, String> + Sync),
    progress: &(dyn Fn(&R) + Sync),
    add: fn(&mut S, R),
) -> Result<S, String> {
    let next = AtomicU64::new(seeds.start);
    let totals: Mutex<S> = Mutex::new(S::default());
    let error: Mutex<Option<String>> = Mutex::new(None);
    let jobs = jobs.clamp(1, 256);
    let watch = SeedWatch::new(jobs);
    std::thread::scope(|scope| {
        if let Some(limit) = hang_limit {
            let watch = &watch;
            scope.spawn(move || {
                if let Some((seed, elapsed)) = watch.watch(limit) {
                    on_hang(seed, elapsed);
                    std::process::exit(1);
                }
            });
        }
        let workers: Vec<_> = (0..jobs)
            .map(|worker| {
                let (next, totals, error, watch) = (&next, &totals, &error, &watch);
                let seeds_end = seeds.end;
                scope.spawn(move || loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= seeds_end {
                        break;
                    }
                    watch.start(worker, seed);
                    let result = run(seed);
                    watch.finish(worker);
                    match result {
                        Ok(report) => {
                            progress(&report);
                            if let Ok(mut totals) = totals.lock() {
                                add(&mut totals, report);
                            }
                        }
                        Err(message) => {
                            if let Ok(mut error) = error.lock() {
                                error.get_or_insert(message);
                            }
                            break;
                        }
                    }
                })
            })
            .collect();
        for worker in workers {
            // A seed's own panics are caught inside the run and reported
            // as failures; one escaping to here is the runner's.
            if worker.join().is_err() {
                if let Ok(mut error) = error.lock() {
                    error.get_or_insert("a worker thread panicked".to_string());
                }
            }
        }
        watch.stop();
    });
    if let Some(message) = error.into_inner().ok().flatten() {
        return Err(message);
    }
    totals
        .into_inner()
        .map_err(|_| "a worker thread panicked".to_string())
}

/// One failed seed in a [`SweepJson`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureJson {
    /// The seed.
    pub seed: u64,
    /// The failed check ([`crate::FailureKind::name`]).
    pub kind: String,
    /// What the check saw.
    pub message: String,
    /// Virtual time of the failure, nanoseconds.
    pub time_ns: u64,
    /// The node concerned, if any.
    pub node: Option<u64>,
    /// The run's trace hash, hexadecimal.
    pub trace_hash: String,
    /// The command that replays the run.
    pub replay: String,
}

/// One acknowledged write a forced recovery lost, in a [`ForcedJson`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LostWriteJson {
    /// The workload's operation id, if it has one.
    pub op_id: Option<u64>,
    /// The client it was acknowledged to.
    pub client: u32,
    /// The operation (e.g. `put k3 = "1.7;"`).
    pub operation: String,
    /// Index of its entry in the lost majority's log.
    pub index: u64,
    /// Term of that entry.
    pub term: u64,
}

/// One seed's forced recovery in a [`SweepJson`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForcedJson {
    /// The seed.
    pub seed: u64,
    /// The survivor.
    pub survivor: u64,
    /// The nodes lost for good.
    pub lost_nodes: Vec<u64>,
    /// Virtual time of the recovery, nanoseconds.
    pub recovered_ns: u64,
    /// The first committed index the survivor did not hold.
    pub diverged_at: u64,
    /// Fresh nodes that joined after.
    pub fresh_nodes: Vec<u64>,
    /// The acknowledged writes lost.
    pub lost_writes: Vec<LostWriteJson>,
}

/// One statistical budget a seed exceeded, in a [`SweepJson`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectationJson {
    /// The seed.
    pub seed: u64,
    /// The expectation's name (`crate::budgets::Expectation::name`).
    pub expectation: String,
    /// What the run saw.
    pub message: String,
    /// Virtual time it was exceeded, nanoseconds.
    pub time_ns: u64,
    /// The command that replays the run.
    pub replay: String,
}

/// The machine-readable summary of a sweep (`run --json`). Summaries of
/// shards of one sweep (same flags, disjoint seed ranges) merge with
/// [`SweepJson::merge`] into the summary of the whole.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepJson {
    /// Seed ranges covered, `[start, end)` each, sorted.
    pub ranges: Vec<(u64, u64)>,
    /// Cluster size.
    pub nodes: usize,
    /// The command-line flags of the sweep besides seeds and size (shards
    /// to merge must agree).
    pub flags: String,
    /// Seeds run.
    pub seeds: u64,
    /// Seeds that passed.
    pub passed: u64,
    /// Seeds that failed.
    pub failed: u64,
    /// Failed seeds, in seed order.
    pub failures: Vec<FailureJson>,
    /// Failures by check name.
    pub failures_by_kind: BTreeMap<String, u64>,
    /// Node steps over all seeds.
    pub node_steps: u64,
    /// Engine events over all seeds.
    pub events: u64,
    /// Virtual time over all seeds, nanoseconds.
    pub simulated_ns: u64,
    /// Client operations checked.
    pub operations: u64,
    /// Faults injected, by kind name.
    pub faults: BTreeMap<String, u64>,
    /// Snapshots taken, installed from a leader, and chunks sent.
    pub snapshots: BTreeMap<String, u64>,
    /// Wall-clock time, milliseconds (summed over merged shards).
    pub wall_ms: u64,
    /// Seeds that ran a forced recovery.
    #[serde(default)]
    pub forced_recoveries: u64,
    /// Acknowledged writes the forced recoveries reported lost.
    #[serde(default)]
    pub lost_writes: u64,
    /// The forced recoveries, in seed order.
    #[serde(default)]
    pub forced: Vec<ForcedJson>,
    /// Seeds that exceeded a statistical budget (passed, unless the sweep
    /// ran with `--strict-budgets`), in seed order: the first time each
    /// expectation was exceeded in each.
    #[serde(default)]
    pub expectations_exceeded: Vec<ExpectationJson>,
    /// Those, counted by expectation name.
    #[serde(default)]
    pub expectations_by_kind: BTreeMap<String, u64>,
    /// Calm-phase measurements left unjudged (a client's retry joined
    /// them, or the leader never became idle).
    #[serde(default)]
    pub calm_unjudged: u64,
    /// Seeds whose liveness was not owed (`Efficiency::liveness_unowed`).
    #[serde(default)]
    pub liveness_unowed: u64,
    /// What each seed cost, with `run --performance`
    /// (`crate::performance`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub performance: Option<PerformanceJson>,
}

impl SweepJson {
    /// The summary of `summary`, a sweep of `seeds` under `template`.
    pub fn new(summary: &Summary, seeds: Range<u64>, template: &SimConfig) -> SweepJson {
        let failures: Vec<FailureJson> = summary
            .failures
            .iter()
            .filter_map(|report| {
                let failure = report.failure.as_ref()?;
                Some(FailureJson {
                    seed: report.config.seed,
                    kind: failure.kind.name().to_string(),
                    message: failure.message.clone(),
                    time_ns: failure.time_ns,
                    node: failure.node,
                    trace_hash: format!("{:016x}", report.trace_hash),
                    replay: report.config.replay_command(),
                })
            })
            .collect();
        let mut failures_by_kind = BTreeMap::new();
        for failure in &failures {
            *failures_by_kind.entry(failure.kind.clone()).or_insert(0) += 1;
        }
        let faults = FaultKind::ALL
            .iter()
            .map(|kind| (kind.name().to_string(), summary.faults.get(*kind)))
            .collect();
        let snapshots = [
            ("taken", summary.snapshots.taken),
            ("installed", summary.snapshots.installed),
            ("chunks_sent", summary.snapshots.chunks_sent),
        ]
        .into_iter()
        .map(|(name, count)| (name.to_string(), count))
        .collect();
        // The flags without the seed and size, which the ranges and
        // `nodes` carry.
        let flags = template
            .cli_flags()
            .split_once(&format!("--nodes {}", template.nodes))
            .map_or(String::new(), |(_, rest)| rest.trim().to_string());
        let forced = summary
            .forced
            .iter()
            .map(|(seed, forced)| ForcedJson {
                seed: *seed,
                survivor: forced.survivor,
                lost_nodes: forced.lost_nodes.clone(),
                recovered_ns: forced.recovered_ns,
                diverged_at: forced.diverged_at,
                fresh_nodes: forced.fresh_nodes.clone(),
                lost_writes: forced
                    .lost_writes()
                    .map(|lost| LostWriteJson {
                        op_id: lost.op_id,
                        client: lost.client,
                        operation: lost.description.clone(),
                        index: lost.index,
                        term: lost.term,
                    })
                    .collect(),
            })
            .collect();
        let expectations_exceeded: Vec<ExpectationJson> = summary
            .expectations
            .iter()
            .map(|(seed, exceeded)| ExpectationJson {
                seed: *seed,
                expectation: exceeded.expectation.name().to_string(),
                message: exceeded.message.clone(),
                time_ns: exceeded.time_ns,
                replay: SimConfig {
                    seed: *seed,
                    ..template.clone()
                }
                .replay_command(),
            })
            .collect();
        let mut expectations_by_kind = BTreeMap::new();
        for exceeded in &expectations_exceeded {
            *expectations_by_kind
                .entry(exceeded.expectation.clone())
                .or_insert(0) += 1;
        }
        SweepJson {
            ranges: vec![(seeds.start, seeds.end)],
            nodes: template.nodes,
            flags,
            seeds: summary.seeds,
            passed: summary.seeds - failures.len() as u64,
            failed: failures.len() as u64,
            failures,
            failures_by_kind,
            node_steps: summary.node_steps,
            events: summary.events,
            simulated_ns: summary.simulated_ns,
            operations: summary.operations,
            faults,
            snapshots,
            wall_ms: summary.wall.as_millis() as u64,
            forced_recoveries: summary.forced.len() as u64,
            lost_writes: summary.lost_writes(),
            forced,
            expectations_exceeded,
            expectations_by_kind,
            calm_unjudged: summary.calm_unjudged,
            liveness_unowed: summary.liveness_unowed,
            performance: None,
        }
    }

    /// Adds another shard of the same sweep. Fails if the shards ran
    /// different clusters or flags, or overlap.
    pub fn merge(&mut self, other: &SweepJson) -> Result<(), String> {
        if (self.nodes, &self.flags) != (other.nodes, &other.flags) {
            return Err(format!(
                "shards differ: {} nodes {:?} vs {} nodes {:?}",
                self.nodes, self.flags, other.nodes, other.flags
            ));
        }
        let mut ranges = self.ranges.clone();
        ranges.extend(other.ranges.iter().copied());
        ranges.sort_unstable();
        if ranges.windows(2).any(|pair| pair[0].1 > pair[1].0) {
            return Err(format!("seed ranges overlap: {ranges:?}"));
        }
        self.ranges = ranges;
        self.seeds += other.seeds;
        self.passed += other.passed;
        self.failed += other.failed;
        self.failures.extend(other.failures.iter().cloned());
        self.failures.sort_by_key(|failure| failure.seed);
        for (kind, count) in &other.failures_by_kind {
            *self.failures_by_kind.entry(kind.clone()).or_insert(0) += count;
        }
        self.node_steps += other.node_steps;
        self.events += other.events;
        self.simulated_ns += other.simulated_ns;
        self.operations += other.operations;
        for (map, theirs) in [
            (&mut self.faults, &other.faults),
            (&mut self.snapshots, &other.snapshots),
        ] {
            for (name, count) in theirs {
                *map.entry(name.clone()).or_insert(0) += count;
            }
        }
        self.wall_ms += other.wall_ms;
        self.forced_recoveries += other.forced_recoveries;
        self.lost_writes += other.lost_writes;
        self.forced.extend(other.forced.iter().cloned());
        self.forced.sort_by_key(|forced| forced.seed);
        self.expectations_exceeded
            .extend(other.expectations_exceeded.iter().cloned());
        self.expectations_exceeded
            .sort_by_key(|exceeded| exceeded.seed);
        for (kind, count) in &other.expectations_by_kind {
            *self.expectations_by_kind.entry(kind.clone()).or_insert(0) += count;
        }
        self.calm_unjudged += other.calm_unjudged;
        self.liveness_unowed += other.liveness_unowed;
        self.performance = match (self.performance.take(), &other.performance) {
            (Some(mine), Some(theirs)) => {
                let mut seeds = mine.seeds;
                seeds.extend(theirs.seeds.iter().cloned());
                Some(PerformanceJson::new(seeds))
            }
            (mine, theirs) => mine.or_else(|| theirs.clone()),
        };
        Ok(())
    }
}
