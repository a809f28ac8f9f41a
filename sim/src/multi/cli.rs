//! The command line of the multi-group simulator: `run --groups ...` and
//! `replay --groups ...` (flags flattened into the single-group ones),
//! and `multi idle|storm` for the figures.

use std::ops::Range;
use std::time::Instant;

use clap::{Args, Subcommand};

use crate::config::{ForcedRecoveryChoice, ReadChoice, SimConfig};
use crate::engine::format_time;
use crate::faults::FaultKind;

use super::config::{GroupsChoice, MultiBugs, MultiSimConfig};
use super::report::MultiReport;
use super::runner::{run_multi, run_multi_seeds, MultiSummary};
use super::scenarios::{idle_figures, node_loss_storm};

/// The flags of `run` and `replay` that turn on many groups per node.
#[derive(Args, Debug, Clone, Default)]
pub struct MultiArgs {
    /// Run many Raft groups per node, each simulated node a
    /// `concord::multi::MultiNode`: `swarm` draws 1 to 256 groups per
    /// seed, a number runs that many in every seed (see
    /// docs/multi-group-simulator.md).
    #[arg(long, value_parser = GroupsChoice::parse)]
    pub groups: Option<GroupsChoice>,
    /// Multi-group runs (--groups) draw no membership changes and no node
    /// replacement (half the seeds of a swarm draw them otherwise).
    #[arg(long)]
    pub no_membership: bool,
}

impl MultiArgs {
    /// The multi-group run these flags, `sim` and the planted mistakes
    /// `bugs` of the multi-group layer ask for, or `None` without
    /// `--groups`. Flags of the single-group simulator that mean nothing
    /// here are refused, not ignored.
    pub fn config(
        &self,
        sim: &SimConfig,
        bugs: MultiBugs,
    ) -> Result<Option<MultiSimConfig>, String> {
        let Some(groups) = self.groups else {
            if self.no_membership {
                return Err("--no-membership is a setting of multi-group runs: add --groups swarm (or a count)".to_string());
            }
            if bugs != MultiBugs::NONE {
                return Err("the multi-* planted mistakes are mistakes of multi-group runs: add --groups swarm (or a count)".to_string());
            }
            return Ok(None);
        };
        let default = SimConfig::default();
        let single_only = [
            (
                sim.bugs.any(),
                "a planted host mistake (--bug of layer host)",
            ),
            (sim.service != default.service, "--service"),
            (sim.service_bug, "--bug service-bug"),
            (sim.reads != ReadChoice::Mix, "--reads"),
            (sim.lease_skew_beyond_bound, "--lease-skew-beyond-bound"),
            (sim.strict_budgets, "--strict-budgets"),
            (sim.max_sessions != default.max_sessions, "--max-sessions"),
            (
                sim.durable_state_machine == crate::config::DurableChoice::Always,
                "--durable-sm (on-disk state machines)",
            ),
        ];
        if let Some((_, flag)) = single_only.iter().find(|(set, _)| *set) {
            return Err(format!(
                "{flag} is a setting of single-group runs; multi-group runs (--groups) do not take it"
            ));
        }
        // `--forced-recovery` runs the scenario in every seed; the swarm
        // default of single-group runs does not draw it here.
        let forced_recovery = sim.forced_recovery == ForcedRecoveryChoice::Always;
        let config = MultiSimConfig {
            bugs,
            core_bugs: sim.core_bugs,
            membership: !self.no_membership && !forced_recovery,
            forced_recovery,
            ..MultiSimConfig::from_sim(sim, groups)
        };
        config.validate()?;
        Ok(Some(config))
    }
}

/// `run --groups ...`: runs the seeds and prints the summary (text, or
/// the sweep JSON). True when every seed passed.
pub fn run_sweep(
    template: &MultiSimConfig,
    seeds: Range<u64>,
    jobs: usize,
    json: bool,
    progress: &(dyn Fn(&MultiReport) + Sync),
) -> Result<bool, String> {
    let summary = run_multi_seeds(template, seeds.clone(), jobs, progress)?;
    if json {
        let sweep = summary.json(seeds, template);
        let text = serde_json::to_string(&sweep).map_err(|error| error.to_string())?;
        println!("{text}");
        return Ok(summary.failures.is_empty());
    }
    print_summary(&summary, &seeds, template, jobs);
    Ok(summary.failures.is_empty())
}

fn print_summary(
    summary: &MultiSummary,
    seeds: &Range<u64>,
    template: &MultiSimConfig,
    jobs: usize,
) {
    let wall = summary.wall.as_secs_f64();
    println!(
        "concord-sim: {} multi-group seeds ({}..{}) of {} nodes, groups {}, in {:.2}s with {} jobs",
        summary.seeds, seeds.start, seeds.end, template.nodes, template.groups, wall, jobs
    );
    println!(
        "  {} groups in all (at most {} in one seed), {:.0} simulated seconds per wall second",
        summary.groups,
        summary.groups_max,
        summary.speedup()
    );
    println!(
        "  {} node steps, {} group steps, {} engine events, {:.0} simulated seconds, {} client operations checked",
        summary.node_steps,
        summary.layer.group_steps,
        summary.events,
        summary.simulated_ns as f64 / 1e9,
        summary.operations
    );
    println!(
        "  layer: {} frames carrying {} items, {} persist batches of {} writes, {} sleeps, {} wakes ({} to elect, {} election slots expired), {} frames refused",
        summary.layer.frames,
        summary.layer.items,
        summary.layer.batches,
        summary.layer.writes,
        summary.layer.sleeps,
        summary.layer.wakes,
        summary.layer.wakes_to_elect,
        summary.layer.slots_expired,
        summary.layer.frames_refused
    );
    println!(
        "  snapshots: {} taken, {} installed from a leader, {} bytes of chunks sent ({} chunks waited for a bandwidth limit); at most {} groups electing at once on a node",
        summary.snapshots.0,
        summary.snapshots.1,
        summary.layer.snapshot_bytes,
        summary.layer.snapshot_chunks_held,
        summary.electing_max
    );
    let at = |slot: Option<(u64, u64)>| match slot {
        Some((ns, seed)) => format!("{} (seed {seed})", format_time(ns)),
        None => "-".to_string(),
    };
    println!(
        "  after the heal: every group led within {} at most ({} of its bound at most, seed {}); every group's write applied everywhere within {}",
        at(summary.leaders_after_heal_max),
        summary
            .leaders_bound_per_mille_max
            .map_or("-".to_string(), |(per_mille, _)| format!("{:.1}%", per_mille as f64 / 10.0)),
        summary
            .leaders_bound_per_mille_max
            .map_or("-".to_string(), |(_, seed)| seed.to_string()),
        at(summary.liveness_after_heal_max)
    );
    println!(
        "  every group asleep within {} of the workload's end ({} seeds ran without quiescence)",
        at(summary.quiesced_after_max),
        summary.unquiesced_seeds
    );
    println!(
        "  stalls: {} seeds hand their missed ticks back to back ({} ticks in all); {} frames taken from a peer's earlier incarnation, in {} seeds",
        summary.stall_burst_seeds,
        summary.ticks_back_to_back,
        summary.old_incarnation_frames,
        summary.old_incarnation_seeds
    );
    println!(
        "  membership: {} seeds drew changes ({} proposed); {} replaced a node ({} finished, {} with the old node down), {} groups in all",
        summary.membership_seeds,
        summary.membership_changes,
        summary.replaces.0,
        summary.replaces.1,
        summary.replaces.2,
        summary.replace_groups
    );
    println!(
        "  rebalance: {} seeds ran the balancer (a server joining late, from five nodes one drained): {} replica moves started, {} finished ({} undone: the target stopped being up, or stalled in {}), {} refused by the catalog (a deposed catalog leader's balancer acting beside the new one's), {} leadership transfers asked",
        summary.rebalance_seeds, summary.moves.0, summary.moves.1, summary.moves_undone, summary.moves_stalled, summary.moves_refused, summary.leader_transfers
    );
    if template.forced_recovery {
        println!(
            "  forced recovery: {} seeds rebuilt from one survivor, {} groups forced, {} acknowledged writes lost by design",
            summary.forced_recoveries, summary.forced_groups, summary.forced_lost_writes
        );
        println!("    (not failures: a forced recovery is an operator's override after a majority is lost for good, and it drops the writes only the lost servers held, by design)");
        for (seed, forced) in &summary.forced_lost {
            // All of them: `replay`.
            println!("    seed {seed}: {}", forced.describe(4));
        }
    }
    let faults: Vec<String> = FaultKind::ALL
        .iter()
        .map(|kind| format!("{}={}", kind.name(), summary.faults.get(*kind)))
        .collect();
    println!("  faults injected: {}", faults.join(" "));
    println!("  failures: {}", summary.failures.len());
    for report in &summary.failures {
        print_failure(report);
    }
}

fn print_failure(report: &MultiReport) {
    let Some(failure) = &report.failure else {
        return;
    };
    println!();
    println!(
        "FAILED seed {} ({} groups): {failure}",
        report.config.seed,
        report.groups()
    );
    if let Some(forced) = report.forced_recovery.as_ref().filter(|f| f.recovered()) {
        println!("  {}", forced.describe(10));
    }
    println!("  trace hash: {:016x}", report.trace_hash);
    println!("  replay:     {}", report.config.replay_command());
}

/// `replay --groups ...`: runs one seed twice, prints what it drew, its
/// fault schedule, its timeline and its trace hash. True when it passed
/// and both runs agreed.
pub fn replay(config: &MultiSimConfig, group: Option<u64>) -> Result<bool, String> {
    let mut with_timeline = config.clone();
    with_timeline.timeline = true;
    let report = run_multi(&with_timeline, None)?;
    let again = run_multi(config, None)?;
    let drawn = &report.drawn;
    println!(
        "seed {}: {} nodes, {} groups, faults enabled: {}",
        config.seed,
        config.nodes,
        drawn.groups,
        report.plan.enabled()
    );
    println!("layer: {}", drawn.layer);
    println!("node options: {}", drawn.node_options);
    match &drawn.compaction {
        Some(compaction) => println!("compaction: {compaction}"),
        None => println!("compaction: off"),
    }
    println!("{}", drawn.reads);
    println!(
        "workload: {} hot groups, {} per mille of operations to any group",
        drawn.hot.len(),
        drawn.cold_per_mille
    );
    println!("fault schedule ({} events):", report.plan.events.len());
    for event in &report.plan.events {
        println!("  {:>12}  {}", format_time(event.at_ns), event.fault);
    }
    println!();
    println!("timeline:");
    for (time_ns, node, text) in &report.timeline {
        if let Some(group) = group {
            if text.starts_with("group ") && !text.starts_with(&format!("group {group}:")) {
                continue;
            }
        }
        let who = node.map_or("  --".to_string(), |node| format!("  n{node}"));
        println!("  {:>12} {who}  {text}", format_time(*time_ns));
    }
    println!();
    println!(
        "simulated {}, {} events, {} node steps, {} group steps, {} operations",
        format_time(report.simulated_ns),
        report.events,
        report.node_steps,
        report.layer.group_steps,
        report.operations
    );
    if let Some(ns) = report.leaders_after_heal_ns {
        println!(
            "every group led {} after the heal (bound {})",
            format_time(ns),
            format_time(report.leaders_bound_ns)
        );
    }
    if let Some(forced) = &report.forced_recovery {
        println!("{forced}");
    }
    let same = crate::trace::print_trace_hashes(report.trace_hash, again.trace_hash);
    let passed = crate::trace::print_verdict(report.failure.as_ref(), || config.replay_command());
    Ok(passed && same)
}

/// `concord-sim multi ...`: the figures of docs/multi-group.md.
#[derive(Subcommand, Debug, Clone)]
pub enum MultiCommand {
    /// What idle groups cost: messages, group steps and frames per idle
    /// group per simulated second, quiesced and not.
    Idle {
        /// Nodes.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Groups.
        #[arg(long, default_value_t = 1000)]
        groups: usize,
        /// Simulated seconds measured once every group is led (and
        /// asleep).
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// The seed (elections' timeouts).
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// How fast the simulator runs a calm cluster of quiesced groups
    /// with clients at work, for each group count: simulated seconds per
    /// wall-clock second (the one figure that depends on the machine).
    Speed {
        /// Nodes.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Group counts, comma-separated.
        #[arg(
            long,
            default_value = "100,1000,10000,30000,100000",
            value_delimiter = ','
        )]
        groups: Vec<usize>,
        /// Clients.
        #[arg(long, default_value_t = 8)]
        clients: usize,
        /// Simulated seconds measured per group count.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// The seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// The node-loss wake storm: every group quiesced, the node leading
    /// the most groups dies; how long until every group has a leader, and
    /// how many elections ran at once.
    Storm {
        /// Nodes.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Groups.
        #[arg(long, default_value_t = 10_000)]
        groups: usize,
        /// The seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

/// Runs a `multi` subcommand. True on success.
pub fn run_command(command: &MultiCommand) -> Result<bool, String> {
    match *command {
        MultiCommand::Idle {
            nodes,
            groups,
            seconds,
            seed,
        } => {
            println!(
                "{groups} idle groups on {nodes} nodes (3 voters each, default settings), measured over {seconds} simulated seconds once every group is led (and asleep):"
            );
            println!(
                "  {:<13} {:>12} {:>16} {:>16} {:>12} {:>10}",
                "quiescence",
                "settled (s)",
                "messages/g/s",
                "group steps/g/s",
                "frames/s",
                "wall (s)"
            );
            for quiesce in [true, false] {
                let started = Instant::now();
                let figures = idle_figures(nodes, groups, quiesce, seconds * 1_000_000_000, seed)?;
                println!(
                    "  {:<13} {:>12.2} {:>16.3} {:>16.3} {:>12.1} {:>10.1}",
                    if quiesce { "on" } else { "off" },
                    figures.settled_ns as f64 / 1e9,
                    figures.messages_per_group_second(),
                    figures.steps_per_group_second(),
                    figures.frames_per_second(),
                    started.elapsed().as_secs_f64()
                );
            }
            Ok(true)
        }
        MultiCommand::Speed {
            nodes,
            ref groups,
            clients,
            seconds,
            seed,
        } => {
            println!(
                "{nodes} nodes, quiesced groups, {clients} clients on a sixteenth of them, {seconds} simulated seconds each:"
            );
            println!(
                "  {:>8} {:>12} {:>10} {:>20} {:>10} {:>20}",
                "groups",
                "operations",
                "wall (s)",
                "simulated s / wall s",
                "CPU (s)",
                "simulated s / CPU s"
            );
            for &count in groups {
                let figures =
                    super::scenarios::speed(nodes, count, clients, seconds * 1_000_000_000, seed)?;
                let cpu = figures
                    .cpu
                    .map_or("-".to_string(), |cpu| format!("{:.2}", cpu.as_secs_f64()));
                let cpu_speedup = figures
                    .cpu_speedup()
                    .map_or("-".to_string(), |speedup| format!("{speedup:.0}"));
                println!(
                    "  {:>8} {:>12} {:>10.2} {:>20.0} {:>10} {:>20}",
                    count,
                    figures.operations,
                    figures.wall.as_secs_f64(),
                    figures.speedup(),
                    cpu,
                    cpu_speedup
                );
            }
            Ok(true)
        }
        MultiCommand::Storm {
            nodes,
            groups,
            seed,
        } => {
            let started = Instant::now();
            let figures = node_loss_storm(nodes, groups, seed)?;
            let wall = started.elapsed();
            println!(
                "{groups} quiesced groups on {nodes} nodes: n{} (leading {} groups) dies",
                figures.killed, figures.orphaned
            );
            println!(
                "  every group led again after {} of simulated time (the leaderless check's bound: {})",
                format_time(figures.leaders_ns),
                format_time(figures.bound_ns)
            );
            println!(
                "  at most {} groups electing at once on one node (limit {}); {} group messages and {} group steps meanwhile",
                figures.electing_max, figures.electing_limit, figures.messages, figures.group_steps
            );
            println!("  wall time {:.1} s", wall.as_secs_f64());
            Ok(true)
        }
    }
}
