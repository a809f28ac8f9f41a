//! Running multi-group seeds, one or many on worker threads, and their
//! summary (text or the sweep JSON of `run --json`).

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::{Duration, Instant};

use crate::engine::FaultCounts;
use crate::faults::{FaultKind, FaultPlan};
use crate::runner::{run_parallel, FailureJson, SweepJson};

use super::config::MultiSimConfig;
use super::engine::MultiSim;
use super::report::{LayerTotals, MultiReport};

/// Runs one seed of `config` (with its own fault plan, or `plan`).
pub fn run_multi(config: &MultiSimConfig, plan: Option<FaultPlan>) -> Result<MultiReport, String> {
    Ok(MultiSim::new(config.clone(), plan)?.run())
}

/// Totals over many multi-group seeds.
#[derive(Clone, Debug, Default)]
pub struct MultiSummary {
    /// Seeds run.
    pub seeds: u64,
    /// Reports of the failed seeds, in seed order.
    pub failures: Vec<MultiReport>,
    /// `(seed, trace hash)` of every seed, in seed order.
    pub hashes: Vec<(u64, u64)>,
    /// Groups over all seeds.
    pub groups: u64,
    /// The most groups one seed ran.
    pub groups_max: usize,
    /// `MultiNode::step` calls over all seeds.
    pub node_steps: u64,
    /// Engine events over all seeds.
    pub events: u64,
    /// Virtual time over all seeds, nanoseconds.
    pub simulated_ns: u64,
    /// Client operations checked.
    pub operations: u64,
    /// Faults injected.
    pub faults: FaultCounts,
    /// The layer's counters over all seeds.
    pub layer: LayerTotals,
    /// Snapshots taken and installed.
    pub snapshots: (u64, u64),
    /// The longest time from a heal to every group led, and its seed.
    pub leaders_after_heal_max: Option<(u64, u64)>,
    /// The largest share of its bound that time took, in per mille, and
    /// its seed.
    pub leaders_bound_per_mille_max: Option<(u64, u64)>,
    /// The longest time from a heal to every group's write applied
    /// everywhere, and its seed.
    pub liveness_after_heal_max: Option<(u64, u64)>,
    /// The longest time from the workload's end to every group asleep,
    /// and its seed.
    pub quiesced_after_max: Option<(u64, u64)>,
    /// Seeds that ran without quiescence.
    pub unquiesced_seeds: u64,
    /// Most groups electing at once on one node, in any seed.
    pub electing_max: usize,
    /// Seeds that drew stall bursts (missed ticks handed over back to
    /// back, stalls at peer changes).
    pub stall_burst_seeds: u64,
    /// Ticks handed over back to back, over all seeds.
    pub ticks_back_to_back: u64,
    /// Frames taken from a peer's earlier incarnation, over all seeds.
    pub old_incarnation_frames: u64,
    /// Seeds in which a node took at least one such frame.
    pub old_incarnation_seeds: u64,
    /// Seeds that drew membership changes.
    pub membership_seeds: u64,
    /// Membership changes proposed, over all seeds.
    pub membership_changes: u64,
    /// Replaces of a whole node started, finished, and run with the old
    /// node down, over all seeds.
    pub replaces: (u64, u64, u64),
    /// Groups the replaces concerned, over all seeds.
    pub replace_groups: u64,
    /// Seeds that drew a rebalance.
    pub rebalance_seeds: u64,
    /// The rebalances' replica moves started and finished, over all seeds.
    pub moves: (u64, u64),
    /// Of the moves finished, those undone, over all seeds.
    pub moves_undone: u64,
    /// Of those, the ones undone because their target stalled.
    pub moves_stalled: u64,
    /// Moves the catalog refused a deposed catalog leader's balancer,
    /// over all seeds.
    pub moves_refused: u64,
    /// The leadership transfers the rebalances asked for, over all seeds.
    pub leader_transfers: u64,
    /// Seeds whose forced recovery ran (`--forced-recovery`).
    pub forced_recoveries: u64,
    /// Groups forced, over all seeds.
    pub forced_groups: u64,
    /// Acknowledged writes lost by design in forced recoveries, over all
    /// seeds.
    pub forced_lost_writes: u64,
    /// The forced recoveries that lost acknowledged writes, by seed.
    pub forced_lost: BTreeMap<u64, super::forced::MultiForcedReport>,
    /// Wall-clock time taken.
    pub wall: Duration,
}

impl MultiSummary {
    fn add(&mut self, report: MultiReport) {
        let seed = report.config.seed;
        self.seeds += 1;
        self.groups += report.groups() as u64;
        self.groups_max = self.groups_max.max(report.groups());
        self.node_steps += report.node_steps;
        self.events += report.events;
        self.simulated_ns += report.simulated_ns;
        self.operations += report.operations;
        self.faults.merge(&report.faults);
        self.layer.merge(&report.layer);
        self.snapshots.0 += report.snapshots_taken;
        self.snapshots.1 += report.snapshots_installed;
        // The largest value, the lowest seed among equals: the same
        // whatever order the workers finish in.
        let max = |slot: &mut Option<(u64, u64)>, value: Option<u64>| {
            if let Some(value) = value {
                let better = slot.is_none_or(|(known, known_seed)| {
                    value > known || (value == known && seed < known_seed)
                });
                if better {
                    *slot = Some((value, seed));
                }
            }
        };
        max(
            &mut self.leaders_after_heal_max,
            report.leaders_after_heal_ns,
        );
        max(
            &mut self.leaders_bound_per_mille_max,
            report
                .leaders_after_heal_ns
                .map(|ns| ns * 1000 / report.leaders_bound_ns.max(1)),
        );
        max(
            &mut self.liveness_after_heal_max,
            report.liveness_after_heal_ns,
        );
        max(&mut self.quiesced_after_max, report.quiesced_after_ns);
        self.unquiesced_seeds += u64::from(report.drawn.layer.quiesce_after_idle_ticks.is_none());
        self.electing_max = self.electing_max.max(report.electing_max);
        self.stall_burst_seeds += u64::from(report.stall_bursts);
        self.ticks_back_to_back += report.ticks_back_to_back;
        self.old_incarnation_frames += report.old_incarnation_frames;
        self.old_incarnation_seeds += u64::from(report.old_incarnation_frames > 0);
        let membership = report.membership;
        self.membership_seeds += u64::from(membership.drawn);
        self.membership_changes += membership.changes_proposed;
        self.replaces.0 += u64::from(membership.replace_started);
        self.replaces.1 += u64::from(membership.replace_done);
        self.replaces.2 += u64::from(membership.old_kept_down);
        self.replace_groups += membership.replace_groups;
        self.rebalance_seeds += u64::from(membership.rebalance_drawn);
        self.moves.0 += membership.moves.0;
        self.moves.1 += membership.moves.1;
        self.moves_undone += membership.moves_undone;
        self.moves_stalled += membership.moves_stalled;
        self.moves_refused += membership.moves_refused;
        self.leader_transfers += membership.leader_transfers;
        if let Some(forced) = report.forced_recovery.as_ref().filter(|f| f.recovered()) {
            self.forced_recoveries += 1;
            self.forced_groups += forced.groups.len() as u64;
            self.forced_lost_writes += forced.lost_writes().count() as u64;
            if forced.lost_writes().next().is_some() {
                self.forced_lost.insert(seed, forced.clone());
            }
        }
        self.hashes.push((seed, report.trace_hash));
        if !report.passed() {
            self.failures.push(report);
        }
    }

    /// Simulated seconds per wall-clock second.
    pub fn speedup(&self) -> f64 {
        self.simulated_ns as f64 / 1e9 / self.wall.as_secs_f64().max(1e-9)
    }

    /// The sweep's JSON summary (the format of `run --json`), for seeds
    /// `seeds` of `template`.
    pub fn json(&self, seeds: Range<u64>, template: &MultiSimConfig) -> SweepJson {
        let failures: Vec<FailureJson> = self
            .failures
            .iter()
            .filter_map(|report| {
                let failure = report.failure.as_ref()?;
                Some(FailureJson {
                    seed: report.config.seed,
                    kind: failure.check.name().to_string(),
                    message: match failure.group {
                        Some(group) => format!("group {group}: {}", failure.message),
                        None => failure.message.clone(),
                    },
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
            .map(|kind| (kind.name().to_string(), self.faults.get(*kind)))
            .collect();
        let snapshots = [("taken", self.snapshots.0), ("installed", self.snapshots.1)]
            .into_iter()
            .map(|(name, count)| (name.to_string(), count))
            .collect();
        let flags = template
            .cli_flags()
            .split_once(&format!("--nodes {}", template.nodes))
            .map_or(String::new(), |(_, rest)| rest.trim().to_string());
        SweepJson {
            ranges: vec![(seeds.start, seeds.end)],
            nodes: template.nodes,
            flags,
            seeds: self.seeds,
            passed: self.seeds - failures.len() as u64,
            failed: failures.len() as u64,
            failures,
            failures_by_kind,
            node_steps: self.node_steps,
            events: self.events,
            simulated_ns: self.simulated_ns,
            operations: self.operations,
            faults,
            snapshots,
            wall_ms: self.wall.as_millis() as u64,
            forced_recoveries: 0,
            lost_writes: 0,
            forced: Vec::new(),
            expectations_exceeded: Vec::new(),
            expectations_by_kind: BTreeMap::new(),
            calm_unjudged: 0,
            liveness_unowed: 0,
            performance: None,
        }
    }
}

/// Runs every seed of `seeds` with `template` (its seed replaced) on
/// `jobs` worker threads. Results are merged in seed order, so the
/// summary does not depend on scheduling. `progress` is called after each
/// seed.
pub fn run_multi_seeds(
    template: &MultiSimConfig,
    seeds: Range<u64>,
    jobs: usize,
    progress: &(dyn Fn(&MultiReport) + Sync),
) -> Result<MultiSummary, String> {
    template.validate()?;
    let started = Instant::now();
    let run = |seed| {
        let config = MultiSimConfig {
            seed,
            ..template.clone()
        };
        run_multi(&config, None)
    };
    let mut summary = run_parallel(
        seeds,
        jobs,
        None,
        &|_, _| {},
        &run,
        progress,
        MultiSummary::add,
    )?;
    summary.hashes.sort_unstable();
    summary.failures.sort_by_key(|report| report.config.seed);
    summary.wall = started.elapsed();
    Ok(summary)
}
