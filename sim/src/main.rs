//! `concord-sim`: run seeds of chaos against a concord cluster, replay a
//! seed with its timeline, shrink a failing seed's fault schedule, check a
//! history recorded by any system for linearizability.

// println! and friends that stop quietly at a closed pipe.
#[macro_use]
extern crate concord_cli_output;

use std::io::IsTerminal;
use std::ops::Range;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A seed allocates and frees a message, an action list and a queue event
/// per step; mimalloc does that in fewer instructions than glibc malloc.
/// Allocation addresses never reach the simulation, so the allocator does
/// not change a run.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use concord_sim::bugs::Switches;
use concord_sim::engine::format_time;
use concord_sim::performance::{PerformanceJson, SeedPerformance};
use concord_sim::services::Service;
use concord_sim::{
    run_kv, run_kv_with_history, run_seeds_watched, DurableChoice, FaultKind, FaultPlan, FaultSet,
    ForcedRecoveryChoice, HangWatch, ReadChoice, RunReport, SimConfig, SnapshotCopyChoice,
    SweepJson,
};

/// Deterministic chaos simulator for the concord Raft library.
#[derive(Parser, Debug)]
#[command(name = "concord-sim", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a range of seeds and check every run.
    Run {
        /// Seeds to run, as START..END (END excluded).
        #[arg(long, default_value = "0..100", value_parser = parse_range)]
        seeds: Range<u64>,
        /// Worker threads, each running whole seeds.
        #[arg(long, default_value_t = default_jobs())]
        jobs: usize,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
        /// Shrink the fault schedule of the first failing seed and print it.
        #[arg(long)]
        shrink: bool,
        /// Print the summary as one JSON object instead of text (seed
        /// range, counts, failures with seed, check and replay command,
        /// node steps, faults injected), so the summaries of sharded
        /// sweeps can be merged (`concord_sim::SweepJson::merge`).
        #[arg(long)]
        json: bool,
        /// Report what each seed and the whole sweep cost: messages,
        /// bytes, fsyncs and node steps per committed entry, and per
        /// simulated second of the idle cluster after the heal (also in
        /// `--json`). Deterministic, so runs compare exactly.
        #[arg(long)]
        performance: bool,
        /// A seed still running after this many seconds of wall-clock time
        /// is reported as hung, with its replay command, and the sweep
        /// exits with code 1 (a loop inside one step is beyond every budget
        /// of the run itself). 0 turns the watch off.
        #[arg(long, default_value_t = 60)]
        hang_after_s: u64,
        #[command(flatten)]
        sim: SimArgs,
    },
    /// Run one seed again, printing its timeline and trace hash.
    Replay {
        /// The seed.
        #[arg(long)]
        seed: u64,
        /// Run this fault plan (JSON, as written by `shrink`) instead of
        /// the seed's own.
        #[arg(long)]
        plan: Option<PathBuf>,
        /// Only show timeline lines of this node (cluster-wide lines stay).
        #[arg(long)]
        node: Option<u64>,
        /// Write the client history as JSON lines to this file.
        #[arg(long)]
        history: Option<PathBuf>,
        /// Print the fault plan as JSON.
        #[arg(long)]
        show_plan: bool,
        /// Write the run as a self-contained HTML timeline to this file:
        /// one lane per node (roles and terms, crashes, pauses, commits),
        /// the network (partitions), one lane per client, the failure.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
        #[command(flatten)]
        sim: SimArgs,
    },
    /// Shrink a failing seed's fault schedule to a minimal one.
    Shrink {
        /// The seed.
        #[arg(long)]
        seed: u64,
        /// Start from this plan instead of the seed's own.
        #[arg(long)]
        plan: Option<PathBuf>,
        /// Where to write the minimal plan.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Most runs to spend.
        #[arg(long, default_value_t = 400)]
        max_runs: u64,
        #[command(flatten)]
        sim: SimArgs,
    },
    /// Check a history recorded by any system for linearizability against
    /// a model (default: the key-value store). Exit 0: linearizable; 1: not
    /// linearizable; 2: unknown (a time or memory limit was reached; the
    /// limit is named); 3: malformed input (line number and reason) or bad
    /// arguments; 4: empty (no operation, or none completed; see
    /// --allow-empty).
    Check(CheckArgs),
    /// Explore every interleaving of a small scope with the real core
    /// (model checking), or replay a saved trace. Exit 0: no violation;
    /// 1: a violation (its shortest trace is written and replayed); 2:
    /// bad arguments; 3: a vacuous scope (no leader, or no committed
    /// command, was ever reached: see --allow-vacuous).
    Explore(concord_sim::explore::cli::ExploreArgs),
    /// The table of planted mistakes: each one's name (for `run --bug
    /// NAME`), layer, what it breaks, the check that catches it, and the
    /// seeds it must be caught within.
    Bugs {
        /// Print the table as one JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Figures of the multi-group layer under the simulator
    /// (docs/multi-group.md): idle cost, the node-loss wake storm.
    #[command(subcommand)]
    Multi(concord_sim::multi::cli::MultiCommand),
}

/// Arguments of `check`.
#[derive(Args, Debug)]
struct CheckArgs {
    /// The history: JSON lines in the format of `concord_sim::history`
    /// (`-` reads standard input).
    history: PathBuf,
    /// Wall-clock limit of the whole check, in seconds (decimals allowed);
    /// reaching it gives exit code 2. No limit by default.
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<f64>,
    /// Threads checking keys (parts) in parallel; they are independent.
    /// The verdict and explanation do not depend on it. At least 1.
    #[arg(long, default_value_t = default_jobs(), value_parser = parse_threads)]
    threads: usize,
    /// The model the history is checked against: kv (the format of
    /// concord_sim::history), register, cas-register, set, queue, counter,
    /// bank (see concord_sim::models for each one's operations).
    #[arg(long, default_value = "kv")]
    model: String,
    /// The input format: jsonl, or jepsen (a Jepsen JSON history, as
    /// elle-cli reads; register and cas-register only).
    #[arg(long, default_value = "jsonl")]
    format: String,
    /// The bank model's accounts and opening balances, e.g. a=100,b=50.
    #[arg(long)]
    accounts: Option<String>,
    /// Accept an empty history (no operation, or none completed) with
    /// exit 0 instead of 4.
    #[arg(long)]
    allow_empty: bool,
    /// Also write the history read as JSON lines (e.g. to convert a
    /// Jepsen history).
    #[arg(long, value_name = "FILE")]
    write_jsonl: Option<PathBuf>,
    /// Also write the history read as a Jepsen JSON history (register and
    /// cas-register), for Jepsen's own tools.
    #[arg(long, value_name = "FILE")]
    write_jepsen: Option<PathBuf>,
    /// Most search configurations alive at once on one key, a count, not
    /// the memory bound: one takes from about 100 bytes (the key-value
    /// search) to several KB (the generic search, when more than 128
    /// operations are pending at once); reaching it gives exit code 2.
    #[arg(long, default_value_t = 4_000_000)]
    max_configs: usize,
    /// Memory bound of the search, in bytes (suffixes K, M, G, T: powers
    /// of 1024): the bytes its configurations take, counted (visited sets,
    /// frontiers, stacks), shared equally by the threads. Reaching it gives
    /// exit code 2 (UNKNOWN). Default: a quarter of the machine's memory
    /// (MemTotal in /proc/meminfo), 1G if that cannot be read.
    #[arg(long, value_name = "BYTES", value_parser = concord_sim::check::memory::parse_bytes)]
    max_memory: Option<u64>,
    /// Search step limit per key (deterministic); reaching it gives exit
    /// code 2.
    #[arg(long, default_value_t = 2_000_000_000)]
    max_steps: u64,
    /// The key-value search's pace limit: a key's search gives up (exit
    /// code 2, UNKNOWN) once it has taken more steps than --max-configs
    /// plus this many per return it has passed, as searches that end
    /// UNKNOWN anyway do, long before their other limits; 0 for none.
    #[arg(long, default_value_t = concord_sim::linearizability::STEPS_PER_RETURN_DEFAULT)]
    max_steps_per_return: u64,
    /// Rows of the per-key table (the slowest keys first when there are
    /// more keys).
    #[arg(long, default_value_t = 20)]
    key_rows: usize,
    /// Write the failing key's operations as a self-contained HTML page.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
}

/// Settings of a run (every one has a default).
#[derive(Args, Debug, Clone)]
struct SimArgs {
    /// Cluster size (1 to 7).
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Keys in the key-value workload.
    #[arg(long, default_value_t = 8)]
    keys: usize,
    /// Virtual milliseconds of chaos before faults heal.
    #[arg(long, default_value_t = 10_000)]
    chaos_ms: u64,
    /// After healing, a new write must commit and apply everywhere within
    /// this many virtual milliseconds.
    #[arg(long, default_value_t = 10_000)]
    liveness_ms: u64,
    /// Tick period in virtual microseconds.
    #[arg(long, default_value_t = 10_000)]
    tick_us: u64,
    /// Mean client think time, virtual microseconds.
    #[arg(long, default_value_t = 100_000)]
    think_us: u64,
    /// Client timeout, virtual milliseconds.
    #[arg(long, default_value_t = 500)]
    client_timeout_ms: u64,
    /// Attempts per client operation before giving up.
    #[arg(long, default_value_t = 10)]
    client_attempts: u32,
    /// Faults allowed: all, none, or a list of delay, loss, duplicate,
    /// reorder, partition, one-way, bridge, crash, pause, fsync, torn, skew.
    #[arg(long, default_value = "all", value_parser = FaultSet::parse)]
    faults: FaultSet,
    /// Enable every allowed fault in every seed instead of a random half.
    #[arg(long)]
    no_swarm: bool,
    /// Bound of the per-node clock skew, parts per million.
    #[arg(long, default_value_t = 200_000)]
    max_skew_ppm: i64,
    /// Session table capacity.
    #[arg(long, default_value_t = 64)]
    max_sessions: usize,
    /// Node-step budget of one run.
    #[arg(long, default_value_t = 2_000_000)]
    max_steps: u64,
    /// Run every seed with the default Raft options (PreVote and
    /// CheckQuorum on, no preferred leader, default limits) instead of
    /// drawing them per seed.
    #[arg(long)]
    fixed_node_options: bool,
    /// No Host entries (address records) in any seed.
    #[arg(long)]
    no_host_entries: bool,
    /// No client sends malformed requests or re-sends an older command
    /// (the session-contract probes) in any seed.
    #[arg(long)]
    no_client_probes: bool,
    /// No seed shrinks its session table below the number of clients.
    #[arg(long)]
    no_session_pressure: bool,
    /// No membership churn in any seed.
    #[arg(long)]
    no_membership_churn: bool,
    /// No witness voter in any seed.
    #[arg(long)]
    no_witnesses: bool,
    /// Run the forced-recovery scenario in every seed (membership churn
    /// then off): a majority of the voters is lost for good (disks
    /// destroyed), the cluster is rebuilt from one survivor by forced
    /// recovery, fresh nodes join in some seeds; the run reports which
    /// acknowledged writes were lost (built-in workload only). Without
    /// it, the default swarm draws the scenario in about a fifth of the
    /// seeds.
    #[arg(long, conflicts_with_all = ["no_forced_recovery", "forced_recovery_swarm"])]
    forced_recovery: bool,
    /// Draw the forced-recovery scenario in about a fifth of the seeds
    /// without membership churn (the default; the flag only says so).
    #[arg(long, conflicts_with = "no_forced_recovery")]
    forced_recovery_swarm: bool,
    /// No forced recovery in any seed.
    #[arg(long)]
    no_forced_recovery: bool,
    /// Fail a seed that exceeds a statistical budget (messages per
    /// committed entry, probe round trips per catch-up, quiet-period
    /// traffic) instead of counting it in a class of its own: these are
    /// expectations fitted to the seeds, which a correct run under a rare
    /// fault schedule may exceed.
    #[arg(long)]
    strict_budgets: bool,
    /// Do not check node steps against the step rules
    /// (`sim/src/observe/rules.rs`): measures what the outcome checks alone
    /// catch.
    #[arg(long)]
    no_step_rules: bool,
    /// Do not judge reads served without the log as they are released
    /// (`read-fresh`): measures what the history checker alone catches.
    #[arg(long)]
    no_read_fresh: bool,
    /// Run every seed's state machines on disk (concord_sim::durable):
    /// applies in batches to a file of their own that a crash cuts back to
    /// what was synced, snapshots from views read while applies go on,
    /// restores streamed, restarts from the durable applied index. Without
    /// it, the default swarm draws them in about a third of the seeds.
    #[arg(long, conflicts_with = "no_durable_sm")]
    durable_sm: bool,
    /// No seed runs on-disk state machines.
    #[arg(long)]
    no_durable_sm: bool,
    /// Every seed takes the own snapshots of in-memory state machines
    /// that can copy themselves from a copy serialised later, while
    /// applies go on (as the runtime does). Without it, the default swarm
    /// draws this in about half of the seeds.
    #[arg(long, conflicts_with = "no_snapshot_copies")]
    snapshot_copies: bool,
    /// No seed takes snapshots from copies: each is serialised at once.
    #[arg(long)]
    no_snapshot_copies: bool,
    /// Read paths of the workload's gets: mix (each seed draws weights of
    /// log, index, lease and follower), log, index, lease or follower.
    #[arg(long, default_value = "mix", value_parser = parse_reads)]
    reads: ReadChoice,
    /// Fault: declare a clock drift bound of 0 for lease reads while
    /// clocks skew up to --max-skew-ppm (shows leases need the bound).
    #[arg(long)]
    lease_skew_beyond_bound: bool,
    /// The service to run: builtin (the simulator's own key-value
    /// register workload), kv (the strict key-value store of
    /// concord-services, with its put_many atomicity check), directory
    /// (its sequence and disconnect checks), orders (gap-free order
    /// numbers) or chat (delivered once, nothing lost, per-sender order,
    /// deleted accounts receive nothing).
    #[arg(long, default_value = "builtin", value_parser = Service::parse)]
    service: Service,
    /// Plant the mistake NAME (repeatable): `concord-sim bugs` lists them,
    /// with what each breaks, the check that catches it and its bound.
    #[arg(long = "bug", value_name = "NAME", value_parser = concord_sim::bugs::find)]
    bug: Vec<&'static concord_sim::bugs::Mistake>,
    /// Many groups per node (`--groups`).
    #[command(flatten)]
    multi: concord_sim::multi::cli::MultiArgs,
}

fn parse_reads(text: &str) -> Result<ReadChoice, String> {
    match text {
        "mix" => Ok(ReadChoice::Mix),
        "log" => Ok(ReadChoice::Log),
        "index" => Ok(ReadChoice::Only(concord::ReadPath::ReadIndex)),
        "lease" => Ok(ReadChoice::Only(concord::ReadPath::Lease)),
        "follower" => Ok(ReadChoice::Only(concord::ReadPath::Follower)),
        other => Err(format!(
            "unknown read path {other:?}: use mix, log, index, lease or follower"
        )),
    }
}

impl SimArgs {
    /// Every layer's switches, as the `--bug` flags set them.
    fn switches(&self) -> Switches {
        let mut switches = Switches::default();
        for mistake in &self.bug {
            mistake.set(&mut switches, true);
        }
        switches
    }

    fn config(&self, seed: u64) -> Result<SimConfig, String> {
        let switches = self.switches();
        let config = SimConfig {
            seed,
            nodes: self.nodes,
            clients: self.clients,
            keys: self.keys,
            chaos_ns: ms_to_ns(self.chaos_ms, "--chaos-ms")?,
            liveness_bound_ns: ms_to_ns(self.liveness_ms, "--liveness-ms")?,
            tick_ns: self
                .tick_us
                .checked_mul(1000)
                .ok_or("--tick-us is too large")?,
            think_mean_ns: self
                .think_us
                .checked_mul(1000)
                .ok_or("--think-us is too large")?,
            client_timeout_ns: ms_to_ns(self.client_timeout_ms, "--client-timeout-ms")?,
            client_max_attempts: self.client_attempts,
            faults: self.faults,
            swarm: !self.no_swarm,
            max_skew_ppm: self.max_skew_ppm,
            max_sessions: self.max_sessions,
            bugs: switches.host,
            core_bugs: switches.core,
            reads: self.reads,
            lease_skew_beyond_bound: self.lease_skew_beyond_bound,
            vary_node_options: !self.fixed_node_options,
            membership_churn: !self.no_membership_churn,
            witnesses: !self.no_witnesses,
            host_entries: !self.no_host_entries,
            client_probes: !self.no_client_probes,
            session_pressure: !self.no_session_pressure,
            timeline: false,
            max_node_steps: self.max_steps,
            service: self.service,
            service_bug: switches.service,
            forced_recovery: if self.forced_recovery {
                ForcedRecoveryChoice::Always
            } else if self.forced_recovery_swarm || !self.no_forced_recovery {
                ForcedRecoveryChoice::Swarm
            } else {
                ForcedRecoveryChoice::Off
            },
            strict_budgets: self.strict_budgets,
            step_rules: !self.no_step_rules,
            read_fresh: !self.no_read_fresh,
            durable_state_machine: if self.durable_sm {
                DurableChoice::Always
            } else if self.no_durable_sm {
                DurableChoice::Off
            } else {
                DurableChoice::Swarm
            },
            snapshot_copies: if self.snapshot_copies {
                SnapshotCopyChoice::Always
            } else if self.no_snapshot_copies {
                SnapshotCopyChoice::Off
            } else {
                SnapshotCopyChoice::Swarm
            },
        };
        config.validate()?;
        Ok(config)
    }
}

/// What the on-disk state machines did (`concord_sim::durable`).
fn print_durable(durable: &concord_sim::DurableCounts) {
    println!(
        "  on-disk state machines: {} runs; {} restarts ({} restored from the stored snapshot, {} ahead of their durable log, {} states judged against the committed log), {} entries skipped as already applied; crashes: {} lost unsynced batches ({} batches, {} torn records dropped), {} during a restore, {} with a view unread, {} with the state machine durable past the log, {} by the durable nemesis; {} views read after applies went on, {} restores from a leader, {} background flushes",
        durable.runs,
        durable.restarts,
        durable.restored_at_restart,
        durable.ahead_of_log_at_restart,
        durable.restart_states_judged,
        durable.entries_skipped,
        durable.crashes_losing_batches,
        durable.batches_lost,
        durable.torn_dropped,
        durable.crashes_during_restore,
        durable.crashes_during_view,
        durable.crashes_ahead_of_log,
        durable.nemesis_crashes,
        durable.views_read_after_applies,
        durable.restores,
        durable.background_flushes,
    );
}

/// The statistical budgets the sweep's seeds exceeded: counted by
/// expectation, and the first few with their replay commands. They do not
/// fail a seed unless `--strict-budgets`.
fn print_expectations(summary: &concord_sim::runner::Summary, template: &SimConfig) {
    /// Seeds listed by name; the rest are only counted.
    const LISTED_MAX: usize = 5;
    let mut by_kind = std::collections::BTreeMap::new();
    for (_, exceeded) in &summary.expectations {
        *by_kind.entry(exceeded.expectation.name()).or_insert(0u64) += 1;
    }
    let counts: Vec<String> = concord_sim::budgets::Expectation::ALL
        .iter()
        .map(|expectation| {
            let name = expectation.name();
            format!("{name}={}", by_kind.get(name).copied().unwrap_or(0))
        })
        .collect();
    println!(
        "  expectations exceeded (statistical budgets, not failures; --strict-budgets fails them): {}",
        counts.join(" ")
    );
    for (seed, exceeded) in summary.expectations.iter().take(LISTED_MAX) {
        let config = SimConfig {
            seed: *seed,
            ..template.clone()
        };
        println!(
            "    seed {seed}: {} at {}: {}\n      replay: {}",
            exceeded.expectation.name(),
            format_time(exceeded.time_ns),
            exceeded.message,
            config.replay_command()
        );
    }
    if summary.expectations.len() > LISTED_MAX {
        println!(
            "    and {} more (--json lists them all)",
            summary.expectations.len() - LISTED_MAX
        );
    }
}

fn ms_to_ns(ms: u64, flag: &str) -> Result<u64, String> {
    ms.checked_mul(1_000_000)
        .ok_or_else(|| format!("{flag} {ms} is too large"))
}

fn parse_threads(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{text:?} is not a number of threads")),
    }
}

fn default_jobs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn parse_range(text: &str) -> Result<Range<u64>, String> {
    let error = || format!("{text:?} is not a seed range; write START..END, e.g. 0..1000");
    let (start, end) = text.split_once("..").ok_or_else(error)?;
    let start: u64 = start.trim().parse().map_err(|_| error())?;
    let end: u64 = end.trim().parse().map_err(|_| error())?;
    if end <= start {
        return Err(format!(
            "seed range {text:?} is empty; END must be greater than START"
        ));
    }
    Ok(start..end)
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // `check` keeps exit code 2 for "unknown"; its usage errors
            // are 3, like malformed input. Help and version exit 0.
            let _ = error.print();
            let code = if !error.use_stderr() {
                0
            } else if std::env::args().nth(1).as_deref() == Some("check") {
                3
            } else {
                2
            };
            return ExitCode::from(code);
        }
    };
    if let Command::Check(args) = &cli.command {
        return ExitCode::from(check::run(args));
    }
    // Explore has a fourth ending, a vacuous scope (exit 3).
    if let Command::Explore(args) = &cli.command {
        return match concord_sim::explore::cli::run_verdict(args) {
            Ok(verdict) => ExitCode::from(verdict.exit_status()),
            Err(message) => {
                eprintln!("error: {message}");
                ExitCode::from(2)
            }
        };
    }
    match execute(cli.command) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

/// Keeps node panics (reported as failures) from spraying stderr.
fn quiet_panics() {
    std::panic::set_hook(Box::new(|_| {}));
}

fn execute(command: Command) -> Result<bool, String> {
    match command {
        Command::Run {
            seeds,
            jobs,
            quiet,
            shrink: shrink_first,
            json,
            performance,
            hang_after_s,
            sim,
        } => {
            let output = Output {
                quiet,
                json,
                performance,
            };
            let passed = run(seeds, jobs, output, hang_after_s, &sim)?;
            if let (false, true, Some(seed)) = (passed, shrink_first, FIRST_FAILURE.get()) {
                println!();
                shrink(*seed, None, None, 400, &sim)?;
            }
            Ok(passed)
        }
        Command::Replay {
            seed,
            plan,
            node,
            history,
            show_plan,
            html,
            sim,
        } => replay(seed, plan, node, history, show_plan, html, &sim),
        Command::Shrink {
            seed,
            plan,
            out,
            max_runs,
            sim,
        } => shrink(seed, plan, out, max_runs, &sim),
        Command::Check(_) => unreachable!("handled in main"),
        Command::Explore(_) => unreachable!("handled in main"),
        Command::Bugs { json } => {
            print_bugs(json);
            Ok(true)
        }
        Command::Multi(command) => concord_sim::multi::cli::run_command(&command),
    }
}

/// `concord-sim bugs`: the table of planted mistakes.
fn print_bugs(json: bool) {
    use concord_sim::bugs::MISTAKES;
    if json {
        let rows: Vec<serde_json::Value> = MISTAKES
            .iter()
            .map(|mistake| {
                serde_json::json!({
                    "name": mistake.name,
                    "layer": mistake.layer.name(),
                    "breaks": mistake.breaks,
                    "caught_by": mistake.caught_by,
                    "bound": mistake.bound(),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
        return;
    }
    println!(
        "{} planted mistakes; plant one with `concord-sim run --bug NAME` (repeatable; the core's and the multi-group layer's need the planted-bugs feature, the multi-group layer's --groups)",
        MISTAKES.len()
    );
    for mistake in MISTAKES {
        println!();
        println!("{} [{}]", mistake.name, mistake.layer.name());
        println!("  breaks:    {}", mistake.breaks);
        println!("  caught by: {}", mistake.caught_by);
        println!("  bound:     {}", mistake.bound());
    }
}

mod check {
    //! `concord-sim check`.

    use std::io::Read;
    use std::time::Duration;

    use concord_sim::check::cli::{self, Format, ModelArgs, MALFORMED};
    use concord_sim::linearizability::CheckConfig;

    use super::CheckArgs;

    /// Runs `check`; returns the exit code.
    pub fn run(args: &CheckArgs) -> u8 {
        let shown = args.history.display().to_string();
        let text = if shown == "-" {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).map(|_| s)
        } else {
            std::fs::read_to_string(&args.history)
        };
        let text = match text {
            Ok(text) => text,
            Err(error) => {
                eprintln!("error: cannot read history {shown}: {error}");
                return MALFORMED;
            }
        };
        let time_limit = match args.timeout {
            None => None,
            Some(s) if s.is_finite() && s > 0.0 => Some(Duration::from_secs_f64(s)),
            Some(s) => {
                eprintln!("error: --timeout {s} must be a positive number of seconds");
                return MALFORMED;
            }
        };
        let cfg = CheckConfig {
            max_steps: args.max_steps,
            max_frontier: args.max_configs,
            max_steps_per_return: args.max_steps_per_return,
            max_memory_bytes: args
                .max_memory
                .unwrap_or_else(concord_sim::check::memory::memory_bytes_default),
            time_limit,
            ..CheckConfig::default()
        };
        let format = match Format::parse(&args.format) {
            Ok(format) => format,
            Err(message) => {
                eprintln!("error: --format: {message}");
                return MALFORMED;
            }
        };
        let model_args = ModelArgs {
            model: args.model.clone(),
            format,
            accounts: args.accounts.clone(),
            allow_empty: args.allow_empty,
            cfg,
            threads: args.threads,
            write_jsonl: args.write_jsonl.clone(),
            write_jepsen: args.write_jepsen.clone(),
            html: args.html.clone(),
            shown,
            program: "concord-sim check".to_string(),
        };
        let out = if args.model == "kv" && format == Format::Jsonl {
            cli::run_kv(&model_args, args.key_rows, &text)
        } else {
            cli::run(&model_args, &text)
        };
        print!("{}", out.stdout);
        eprint!("{}", out.stderr);
        out.code
    }
}

/// The first failing seed of `run`, for `run --shrink`.
static FIRST_FAILURE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();

/// What `run` prints.
#[derive(Clone, Copy, Debug)]
struct Output {
    /// No progress bar.
    quiet: bool,
    /// One JSON object instead of text.
    json: bool,
    /// What each seed cost.
    performance: bool,
}

fn run(
    seeds: Range<u64>,
    jobs: usize,
    output: Output,
    hang_after_s: u64,
    sim: &SimArgs,
) -> Result<bool, String> {
    let Output {
        quiet,
        json,
        performance,
    } = output;
    let template = sim.config(seeds.start)?;
    let costs: std::sync::Mutex<Vec<SeedPerformance>> = std::sync::Mutex::new(Vec::new());
    quiet_panics();
    if let Some(multi) = sim.multi.config(&template, sim.switches().multi)? {
        return run_multi(seeds, jobs, quiet, json, &multi);
    }
    let bar = ProgressBar::new(seeds.end - seeds.start);
    if quiet || !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} seeds  {per_sec}  eta {eta}  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let failures = std::sync::atomic::AtomicU64::new(0);
    let on_hang = |config: &SimConfig, elapsed: std::time::Duration| {
        bar.abandon();
        println!(
            "HUNG seed {}: still running after {:.1} s of wall-clock time: a loop inside one step of the code under test or of the simulator\n  replay:     {}",
            config.seed,
            elapsed.as_secs_f64(),
            config.replay_command()
        );
    };
    let hang = (hang_after_s > 0).then(|| HangWatch {
        limit: std::time::Duration::from_secs(hang_after_s),
        on_hang: &on_hang,
    });
    let progress = |report: &RunReport| {
        if performance {
            if let Ok(mut costs) = costs.lock() {
                costs.push(SeedPerformance {
                    seed: report.config.seed,
                    performance: report.performance,
                });
            }
        }
        if !report.passed() {
            let count = failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            bar.set_message(format!("{count} failed"));
        }
        bar.inc(1);
    };
    let summary = run_seeds_watched(&template, seeds.clone(), jobs, &progress, hang)?;
    bar.finish_and_clear();
    if let Some(report) = summary.failures.first() {
        let _ = FIRST_FAILURE.set(report.config.seed);
    }
    let costs = performance.then(|| {
        PerformanceJson::new(
            costs
                .into_inner()
                .unwrap_or_else(|error| error.into_inner()),
        )
    });
    if json {
        let mut sweep = SweepJson::new(&summary, seeds, &template);
        sweep.performance = costs;
        let text = serde_json::to_string(&sweep).map_err(|error| error.to_string())?;
        println!("{text}");
        return Ok(summary.failures.is_empty());
    }

    let wall = summary.wall.as_secs_f64();
    println!(
        "concord-sim: {} seeds ({}..{}) of {} nodes in {:.2}s with {} jobs",
        summary.seeds, seeds.start, seeds.end, template.nodes, wall, jobs
    );
    println!(
        "  {:.1} seeds/s, {:.0} simulated seconds per wall second, {:.2} M node steps/s",
        summary.seeds_per_second(),
        summary.speedup(),
        summary.steps_per_second() / 1e6
    );
    println!(
        "  {} node steps, {} engine events, {:.0} simulated seconds, {} client operations checked",
        summary.node_steps,
        summary.events,
        summary.simulated_ns as f64 / 1e9,
        summary.operations
    );
    println!(
        "  snapshots: {} taken ({} from copies, {} of them serialised after further applies), \
         {} installed from a leader, {} chunks sent",
        summary.snapshots.taken,
        summary.snapshots.from_copies,
        summary.snapshots.copies_serialised_after_applies,
        summary.snapshots.installed,
        summary.snapshots.chunks_sent
    );
    if summary.durable.runs > 0 {
        print_durable(&summary.durable);
    }
    println!(
        "  commit latency at a stable leader: {} writes, at most {} us (budget {} us)",
        summary.latency_writes,
        summary.commit_latency_max_ns / 1_000,
        concord_sim::budgets::COMMIT_LATENCY_MAX_NS / 1_000
    );
    println!(
        "  calm budgets: {} follower applies, at most {} us after the leader's commit (budget {} us); {} reads, at most {} us (budget {} us); {} backlogs, the slowest in {:.2} round trips of {} us",
        summary.follower_applies,
        summary.follower_apply_max_ns / 1_000,
        concord_sim::budgets::FOLLOWER_APPLY_MAX_NS / 1_000,
        summary.calm_reads,
        summary.read_latency_max_ns / 1_000,
        concord_sim::budgets::READ_LATENCY_MAX_NS / 1_000,
        summary.backlogs,
        summary.backlog_centi_round_trips_max as f64 / 100.0,
        concord_sim::budgets::CALM_ROUND_TRIP_NS / 1_000
    );
    println!(
        "  calm measurements unjudged (a client's retry joined them, the leader never became idle, or a hand-over sent before the heal was still in flight): {}",
        summary.calm_unjudged
    );
    if summary.liveness_unowed > 0 {
        println!(
            "  liveness not owed (a server back with empty storage whose recovery floor only a witness holds; the cluster waits for a forced recovery): {}",
            summary.liveness_unowed
        );
    }
    println!(
        "  idle catch-up: {} followers repaired after losing synced entries, the slowest in {:.2} heartbeat intervals",
        summary.idle_catch_ups,
        summary.idle_catch_up_centi_heartbeats_max as f64 / 100.0
    );
    print_expectations(&summary, &template);
    let faults: Vec<String> = FaultKind::ALL
        .iter()
        .map(|kind| format!("{}={}", kind.name(), summary.faults.get(*kind)))
        .collect();
    println!("  faults injected: {}", faults.join(" "));
    println!(
        "  sessions: {} probes answered as the contract says, {} sessions evicted ({} seeds with fewer sessions than clients)",
        summary.sessions.probes_answered,
        summary.sessions.evictions,
        summary.sessions.pressured_runs
    );
    if !summary.forced.is_empty() {
        println!(
            "  forced recoveries: {} seeds, {} acknowledged writes reported lost",
            summary.forced.len(),
            summary.lost_writes()
        );
        println!("    (not failures: a forced recovery is an operator's override after a majority is lost for good, and it drops the writes only the lost servers held, by design)");
        for (seed, forced) in &summary.forced {
            if forced.lost_writes().next().is_some() {
                // All of them: `replay` (and `--json`).
                println!("    seed {seed}: {}", forced.describe(4));
            }
        }
    }
    if let Some(costs) = &costs {
        print_performance(costs);
    }
    println!("  failures: {}", summary.failures.len());
    for report in &summary.failures {
        print_failure(report);
    }
    Ok(summary.failures.is_empty())
}

/// `run --performance`: each seed's cost, then the sweep's.
fn print_performance(costs: &PerformanceJson) {
    println!("  performance (per committed entry over the run; per simulated second of the idle cluster after the heal):");
    println!(
        "    {:>12} {:>8} {:>9} {:>9} {:>8} {:>9} | {:>6} {:>9} {:>10} {:>8} {:>9}",
        "seed",
        "entries",
        "msgs/e",
        "bytes/e",
        "fsync/e",
        "steps/e",
        "idle s",
        "msgs/s",
        "bytes/s",
        "fsync/s",
        "steps/s"
    );
    let line = |label: String, cost: &concord_sim::performance::Performance| {
        let [messages, bytes, fsyncs, steps] = cost.per_entry().map(|(_, ratio)| ratio);
        let [idle_messages, idle_bytes, idle_fsyncs, idle_steps] =
            cost.idle_per_second().map(|(_, rate)| rate);
        println!(
            "    {label:>12} {:>8} {messages:>9.2} {bytes:>9.1} {fsyncs:>8.2} {steps:>9.2} | {:>6.2} {idle_messages:>9.1} {idle_bytes:>10.1} {idle_fsyncs:>8.1} {idle_steps:>9.1}",
            cost.committed,
            cost.idle_ns as f64 / 1e9,
        )
    };
    for seed in &costs.seeds {
        line(seed.seed.to_string(), &seed.performance);
    }
    line("total".to_string(), &costs.total);
}

/// `run --groups ...`: the multi-group sweep, with the same progress bar.
fn run_multi(
    seeds: Range<u64>,
    jobs: usize,
    quiet: bool,
    json: bool,
    template: &concord_sim::multi::MultiSimConfig,
) -> Result<bool, String> {
    let bar = ProgressBar::new(seeds.end - seeds.start);
    if quiet || !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let failures = std::sync::atomic::AtomicU64::new(0);
    let progress = |report: &concord_sim::multi::MultiReport| {
        if !report.passed() {
            let count = failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            bar.set_message(format!("{count} failed"));
        }
        bar.inc(1);
    };
    let passed = concord_sim::multi::cli::run_sweep(template, seeds, jobs, json, &progress)?;
    bar.finish_and_clear();
    Ok(passed)
}

fn print_failure(report: &RunReport) {
    let Some(failure) = &report.failure else {
        return;
    };
    println!();
    println!("FAILED seed {}: {failure}", report.config.seed);
    println!("  trace hash: {:016x}", report.trace_hash);
    println!("  replay:     {}", report.config.replay_command());
    println!(
        "  shrink:     {}",
        report
            .config
            .replay_command()
            .replacen(" replay ", " shrink ", 1)
    );
}

fn read_plan(path: &PathBuf) -> Result<FaultPlan, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read plan {}: {error}", path.display()))?;
    serde_json::from_str(&text)
        .map_err(|error| format!("plan {} is not a valid fault plan: {error}", path.display()))
}

fn replay(
    seed: u64,
    plan_path: Option<PathBuf>,
    node: Option<u64>,
    history: Option<PathBuf>,
    show_plan: bool,
    html: Option<PathBuf>,
    sim: &SimArgs,
) -> Result<bool, String> {
    let mut config = sim.config(seed)?;
    if let Some(multi) = sim.multi.config(&config, sim.switches().multi)? {
        if plan_path.is_some() || history.is_some() || html.is_some() || show_plan {
            return Err("--plan, --history, --html and --show-plan are not there yet for multi-group replays".to_string());
        }
        quiet_panics();
        return concord_sim::multi::cli::replay(&multi, node);
    }
    let plan = plan_path.as_ref().map(read_plan).transpose()?;
    quiet_panics();
    config.timeline = true;
    let report = run_kv(&config, plan.clone())?;
    config.timeline = false;
    let again = run_kv(&config, plan.clone())?;

    println!(
        "seed {seed}: {} nodes, faults enabled: {}",
        config.nodes,
        report.plan.enabled()
    );
    println!("node options: {}", report.node_options);
    let [index, lease, follower] = report.reads_served;
    println!(
        "{} (served without the log: {index} ReadIndex, {lease} lease, {follower} follower)",
        report.reads
    );
    println!(
        "compaction: {} ({} snapshots taken, {} from copies, {} installed, {} chunks sent)",
        report.compaction,
        report.snapshots.taken,
        report.snapshots.from_copies,
        report.snapshots.installed,
        report.snapshots.chunks_sent
    );
    if let Some(forced) = &report.forced_recovery {
        println!("{forced}");
    }
    if report.durable.runs > 0 {
        print_durable(&report.durable);
    }
    if show_plan {
        println!(
            "{}",
            serde_json::to_string_pretty(&report.plan).map_err(|error| error.to_string())?
        );
    } else {
        println!(
            "fault schedule ({} events; --show-plan prints it as JSON):",
            report.plan.events.len()
        );
        for event in &report.plan.events {
            println!("  {:>12}  {}", format_time(event.at_ns), event.fault);
        }
    }
    println!();
    println!("timeline:");
    for entry in &report.timeline {
        if let (Some(wanted), Some(node)) = (node, entry.node) {
            if wanted != node {
                continue;
            }
        }
        let who = entry
            .node
            .map_or("  --".to_string(), |node| format!("  n{node}"));
        println!("  {:>12} {who}  {}", format_time(entry.time_ns), entry.text);
    }
    println!();
    println!("per node (role changes, votes, crashes, pauses; last commit index):");
    for id in 1..=config.nodes as u64 {
        let mut last_commit = String::from("0");
        let mut events = Vec::new();
        for entry in report
            .timeline
            .iter()
            .filter(|entry| entry.node == Some(id))
        {
            if let Some(commit) = entry.text.strip_prefix("commit index ") {
                last_commit = commit.to_string();
            } else {
                events.push(format!("{} {}", format_time(entry.time_ns), entry.text));
            }
        }
        println!("  n{id}: commit {last_commit}; {} events", events.len());
        for event in events {
            println!("      {event}");
        }
    }
    println!();
    println!(
        "simulated {}, {} node steps, {} operations ({} ok), committed index {}",
        format_time(report.simulated_ns),
        report.node_steps,
        report.operations,
        report.operations_ok,
        report.committed
    );
    let same = concord_sim::trace::print_trace_hashes(report.trace_hash, again.trace_hash);
    if let Some(path) = history {
        let (_, operations) = run_kv_with_history(&config, plan.clone())?;
        let file = std::fs::File::create(&path)
            .map_err(|error| format!("cannot create {}: {error}", path.display()))?;
        concord_sim::history::write_jsonl(std::io::BufWriter::new(file), &operations)
            .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
        println!(
            "history: {} operations written to {} (JSON lines)",
            operations.len(),
            path.display()
        );
    }
    if let Some(path) = html {
        config.timeline = true;
        let (with_timeline, operations) = run_kv_with_history(&config, plan)?;
        config.timeline = false;
        let page = concord_sim::report::timeline_page(&with_timeline, &operations);
        std::fs::write(&path, page)
            .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
        println!("HTML timeline written to {}", path.display());
    }
    let passed =
        concord_sim::trace::print_verdict(report.failure.as_ref(), || config.replay_command());
    Ok(passed && same)
}

fn shrink(
    seed: u64,
    plan_path: Option<PathBuf>,
    out: Option<PathBuf>,
    max_runs: u64,
    sim: &SimArgs,
) -> Result<bool, String> {
    let config = sim.config(seed)?;
    let plan = plan_path.as_ref().map(read_plan).transpose()?;
    quiet_panics();
    let Some(result) = concord_sim::shrink::shrink(&config, plan, max_runs)? else {
        println!("seed {seed} passes; nothing to shrink");
        return Ok(true);
    };
    println!(
        "shrunk seed {seed} in {} runs: {} -> {} fault events, faults {} -> {}",
        result.runs,
        result.original.events.len(),
        result.minimal.events.len(),
        result.original.enabled(),
        result.minimal.enabled()
    );
    println!("still fails: {}", result.failure);
    println!("minimal schedule:");
    for event in &result.minimal.events {
        println!("  {:>12}  {}", format_time(event.at_ns), event.fault);
    }
    let rates = &result.minimal.rates;
    println!(
        "rates: loss {:.4} duplicate {:.4} reorder {:.4} tail {:.4} stale {:.4} torn {:.2} fsync max {} µs; skews (ppm) {:?}",
        rates.loss, rates.duplicate, rates.reorder, rates.tail, rates.stale, rates.torn, rates.fsync_max_ns / 1000, result.minimal.clock_skew_ppm
    );
    let path =
        out.unwrap_or_else(|| PathBuf::from(format!("concord-sim-seed-{seed}-minimal.json")));
    let json = serde_json::to_string_pretty(&result.minimal).map_err(|error| error.to_string())?;
    std::fs::write(&path, json)
        .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
    println!("written to {}", path.display());
    println!(
        "replay: {} --plan {}",
        config.replay_command(),
        path.display()
    );
    Ok(false)
}
