//! `concord-sim explore`: the command line of the explorer. Kept in the
//! library so that the binary only names the subcommand.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::reach::Unreached;
use super::scope::{Loss, Scope, ScopeBugs};
use super::search::Progress;
use super::trace::{replay, Trace};

/// Exit status: no violation, and the scope reached a leader and, when it
/// proposes, a committed command (or `--allow-vacuous`).
pub const EXIT_CLEAN: u8 = 0;
/// Exit status: a violation (its shortest trace is written and replayed).
pub const EXIT_VIOLATION: u8 = 1;
/// Exit status: bad arguments or an unreadable file.
pub const EXIT_BAD_ARGUMENTS: u8 = 2;
/// Exit status: no violation, but the scope proved nothing: no state had a
/// leader, or the scope proposes and no command was ever committed.
pub const EXIT_VACUOUS: u8 = 3;

/// The exit statuses, as `--help` shows them.
const EXIT_STATUSES: &str = "Exit status: 0 no violation, and the scope elected a leader and (when it proposes) committed a command; 1 a violation (its shortest trace is written and replayed); 2 bad arguments or an unreadable file; 3 vacuous: no violation, but no leader was ever elected, or no proposed command ever committed, so the result proves nothing (the warning names what to change; --allow-vacuous makes it 0).";

/// `on` or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    /// Turned on.
    On,
    /// Turned off.
    Off,
}

impl Switch {
    fn on(self) -> bool {
        self == Switch::On
    }
}

/// How messages are lost (see [`Loss`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LossArg {
    /// Any message may be lost, by a step of its own.
    On,
    /// A message is lost by never being delivered.
    Implicit,
    /// No loss.
    Off,
}

/// Arguments of `concord-sim explore`.
#[derive(Args, Debug)]
#[command(after_help = EXIT_STATUSES)]
pub struct ExploreArgs {
    /// Nodes of the cluster, all voters (1 to 5; at most 4 with symmetry
    /// reduction).
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// States where a term exceeds this are checked but not explored
    /// further.
    #[arg(long, default_value_t = 3)]
    pub max_term: u64,
    /// Client proposals over a whole run (each at a leader).
    #[arg(long, default_value_t = 2)]
    pub proposals: u32,
    /// Crash-and-restarts over a whole run (unsynced writes lost).
    #[arg(long, default_value_t = 1)]
    pub crashes: u32,
    /// Timer firings over a whole run (0: bounded by --depth only).
    #[arg(long, default_value_t = 0)]
    pub timeouts: u32,
    /// Timer firings of each node over a whole run (0: no bound of its
    /// own).
    #[arg(long, default_value_t = 0)]
    pub timeouts_per_node: u32,
    /// Message loss: `on` (any message may be lost by a step of its own),
    /// `implicit` (a message is lost by never being delivered; cheaper,
    /// the same states while the messages sent and not delivered fit in
    /// --network-max) or `off`.
    #[arg(long, value_enum, default_value_t = LossArg::On)]
    pub loss: LossArg,
    /// Messages that may be delivered twice over a whole run (0: no
    /// duplication).
    #[arg(long, default_value_t = 1)]
    pub duplicates: u32,
    /// Most messages in flight at once [default: nodes + 1, room for one
    /// election's requests and answers with none lost: 4 for 3 nodes, 6
    /// for 5].
    #[arg(long, value_name = "MESSAGES")]
    pub network_max: Option<usize>,
    /// Writes are durable as soon as the node asks for them (no sync
    /// steps; a crash loses nothing).
    #[arg(long, value_enum, default_value_t = Switch::Off)]
    pub sync_at_once: Switch,
    /// A message of a term below its receiver's durable term is lost at
    /// once (needs loss).
    #[arg(long, value_enum, default_value_t = Switch::Off)]
    pub stale_lost: Switch,
    /// Linearizable reads over a whole run (ReadIndex at a leader, a
    /// follower read at a follower).
    #[arg(long, default_value_t = 0)]
    pub reads: u32,
    /// One membership change (a leader removes one voter).
    #[arg(long, value_enum, default_value_t = Switch::Off)]
    pub membership: Switch,
    /// One snapshot (a node snapshots and compacts its log; a follower
    /// behind it is caught up by a transfer).
    #[arg(long, value_enum, default_value_t = Switch::Off)]
    pub snapshot: Switch,
    /// Bytes per snapshot chunk.
    #[arg(long, default_value_t = 16)]
    pub snapshot_chunk_bytes: u64,
    /// PreVote on every node.
    #[arg(long, value_enum, default_value_t = Switch::On)]
    pub pre_vote: Switch,
    /// CheckQuorum on every node.
    #[arg(long, value_enum, default_value_t = Switch::On)]
    pub check_quorum: Switch,
    /// Most entries per AppendEntries (1: a leader backing up sends one
    /// entry at a time).
    #[arg(long, default_value_t = 1024)]
    pub append_entries_max: u32,
    /// Most steps of one path.
    #[arg(long, default_value_t = super::scope::DEPTH_MAX)]
    pub depth: u32,
    /// Count states that differ only by node names once.
    #[arg(long, value_enum, default_value_t = Switch::On)]
    pub symmetry: Switch,
    /// Judge every step of every node by the step rules (off: only the
    /// outcome properties).
    #[arg(long, value_enum, default_value_t = Switch::On)]
    pub step_rules: Switch,
    /// Worker threads expanding each level (the result does not depend
    /// on it).
    #[arg(long, default_value_t = default_threads())]
    pub threads: usize,
    /// Where a violation's shortest trace is written.
    #[arg(long, value_name = "FILE", default_value = "explore-trace.json")]
    pub trace_out: PathBuf,
    /// Replay a saved trace step by step instead of exploring (the scope
    /// flags are then taken from the file).
    #[arg(long, value_name = "FILE")]
    pub replay: Option<PathBuf>,
    /// No progress lines.
    #[arg(long)]
    pub quiet: bool,
    /// Exit 0 even if no leader was ever elected or no proposed command
    /// committed (for scopes meant to check only elections, or less).
    #[arg(long)]
    pub allow_vacuous: bool,
    /// Plant a core mistake of the table (`concord-sim bugs`); an
    /// exploration plants figure-8-commit, vote-before-durable,
    /// read-index-without-round or commit-notice-unchecked. Repeatable.
    #[arg(long = "bug", value_name = "NAME", value_parser = parse_scope_bug)]
    pub bugs: Vec<String>,
}

/// A `--bug NAME` an exploration can plant.
fn parse_scope_bug(name: &str) -> Result<String, String> {
    ScopeBugs::default().plant(name)?;
    Ok(name.to_string())
}

fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

impl ExploreArgs {
    /// The scope these flags describe.
    pub fn scope(&self) -> Scope {
        Scope {
            nodes: self.nodes,
            max_term: self.max_term,
            proposals: self.proposals,
            crashes: self.crashes,
            timeouts: self.timeouts,
            timeouts_per_node: self.timeouts_per_node,
            loss: match self.loss {
                LossArg::On => Loss::On,
                LossArg::Off => Loss::Off,
                LossArg::Implicit => Loss::Implicit,
            },
            duplicates: self.duplicates,
            network_max: self
                .network_max
                .unwrap_or(Scope::network_max_default(self.nodes)),
            sync_at_once: self.sync_at_once.on(),
            stale_lost: self.stale_lost.on(),
            reads: self.reads,
            membership: self.membership.on(),
            snapshot: self.snapshot.on(),
            snapshot_chunk_bytes: self.snapshot_chunk_bytes,
            pre_vote: self.pre_vote.on(),
            check_quorum: self.check_quorum.on(),
            append_entries_max: self.append_entries_max,
            depth: self.depth,
            symmetry: self.symmetry.on(),
            step_rules: self.step_rules.on(),
            bugs: {
                let mut bugs = ScopeBugs::default();
                for name in &self.bugs {
                    bugs.plant(name).expect("checked by parse_scope_bug");
                }
                bugs
            },
        }
    }
}

fn progress_line(progress: &Progress) {
    let seconds = progress.elapsed.as_secs_f64().max(1e-9);
    eprintln!(
        "  level {}: {}/{} expanded; {} transitions, {} distinct states, {:.0} states/s, {:.0} s",
        progress.level,
        progress.expanded,
        progress.frontier,
        progress.counts.explored,
        progress.counts.distinct,
        progress.counts.explored as f64 / seconds,
        seconds
    );
}

/// How `concord-sim explore` ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No violation; the scope reached a leader and, when it proposes, a
    /// committed command (or vacuity was allowed).
    Clean,
    /// A violation, or a replayed trace that still violates.
    Violation,
    /// No violation, but these were never reached: the result proves
    /// nothing about them.
    Vacuous(Vec<Unreached>),
}

impl Verdict {
    /// The process exit status of this verdict.
    pub fn exit_status(&self) -> u8 {
        match self {
            Verdict::Clean => EXIT_CLEAN,
            Verdict::Violation => EXIT_VIOLATION,
            Verdict::Vacuous(_) => EXIT_VACUOUS,
        }
    }
}

/// Runs `concord-sim explore`, printing its summary to stdout and a
/// vacuous scope's warning to stderr, and returns the verdict; `Err`: bad
/// arguments or an unreadable file.
pub fn run_verdict(args: &ExploreArgs) -> Result<Verdict, String> {
    super::world::quiet_core_panics();
    if let Some(path) = &args.replay {
        let text = std::fs::read_to_string(path)
            .map_err(|error| format!("cannot read trace {}: {error}", path.display()))?;
        let trace: Trace = serde_json::from_str(&text)
            .map_err(|error| format!("{} is not a trace: {error}", path.display()))?;
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        let replayed = replay(&trace, &mut out)?;
        return Ok(if replayed.violation.is_none() {
            Verdict::Clean
        } else {
            Verdict::Violation
        });
    }
    if args.threads == 0 || args.threads > 256 {
        return Err(format!(
            "--threads {} is out of range: 1 to 256",
            args.threads
        ));
    }
    let scope = args.scope();
    scope.validate()?;
    let flags = scope.flags();
    println!(
        "concord-sim explore: {} on {} threads",
        if flags.is_empty() {
            "the default scope".to_string()
        } else {
            flags.clone()
        },
        args.threads
    );
    let show_progress = !args.quiet;
    let report = super::explore(&scope, args.threads, &|progress| {
        if show_progress {
            progress_line(progress);
        }
    })?;
    let counts = &report.outcome.counts;
    println!(
        "  {} transitions explored, {} distinct states, depth {}, {:.0} states/s, {:.1} s",
        counts.explored,
        counts.distinct,
        counts.depth,
        report.states_per_second(),
        report.outcome.wall.as_secs_f64()
    );
    println!(
        "  {} states outside the scope (a term above {}, or a full network without loss): checked, not expanded",
        counts.out_of_scope, scope.max_term
    );
    let levels: Vec<String> = counts.levels.iter().map(u64::to_string).collect();
    println!("  new states per depth: {}", levels.join(" "));
    let reached = &report.outcome.reached;
    let Some(trace) = &report.trace else {
        println!("  {}", reached.summary());
        let unreached = reached.vacuous(&scope);
        let what: Vec<&str> = unreached.iter().map(|unreached| unreached.name()).collect();
        // A vacuous scope's "no violation" is qualified on the line
        // itself: a reader of stdout alone must not take it for a proof.
        let qualifier = if unreached.is_empty() {
            String::new()
        } else {
            format!(" (VACUOUS: {})", what.join(", "))
        };
        if report.outcome.complete {
            println!("  exhaustive: every state of the scope explored, no violation{qualifier}");
        } else {
            println!(
                "  NOT exhaustive: {} states at the depth bound {} were not expanded; no violation up to it{qualifier}",
                counts.at_depth_bound, scope.depth
            );
        }
        if unreached.is_empty() {
            return Ok(Verdict::Clean);
        }
        if args.allow_vacuous {
            println!("  vacuous, allowed by --allow-vacuous: {}", what.join(", "));
            return Ok(Verdict::Clean);
        }
        eprintln!(
            "warning: VACUOUS SCOPE: {} in {} distinct states, so \"no violation\" proves nothing about them (exit {EXIT_VACUOUS})",
            what.join(" and "),
            counts.distinct
        );
        eprintln!(
            "  to fix: {}",
            reached.advice(&scope, counts.at_depth_bound)
        );
        return Ok(Verdict::Vacuous(unreached));
    };
    let violation = trace
        .violation
        .as_ref()
        .expect("a found trace names its violation");
    println!(
        "VIOLATION of {} after {} steps (a shortest path): {}",
        violation.property,
        trace.steps.len(),
        violation.detail
    );
    let text = serde_json::to_string_pretty(trace)
        .map_err(|error| format!("cannot encode the trace: {error}"))?;
    std::fs::write(&args.trace_out, text + "\n").map_err(|error| {
        format!(
            "cannot write the trace to {}: {error}",
            args.trace_out.display()
        )
    })?;
    println!("  trace written to {}", args.trace_out.display());
    println!(
        "  replay: concord-sim explore --replay {}",
        args.trace_out.display()
    );
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    replay(trace, &mut out)?;
    out.flush()
        .map_err(|error| format!("cannot write the replay: {error}"))?;
    Ok(Verdict::Violation)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        explore: ExploreArgs,
    }

    fn args(flags: &str) -> ExploreArgs {
        let words = std::iter::once("explore").chain(flags.split_whitespace());
        Command::try_parse_from(words)
            .expect("the flags parse")
            .explore
    }

    /// The CI scope's flags (see `.ci/run`), without the nodes.
    const CI: &str = "--max-term 1 --proposals 1 --crashes 0 --timeouts 1 --loss off \
                      --duplicates 0 --threads 2 --quiet";

    #[test]
    fn five_nodes_in_a_four_message_network_are_flagged_vacuous() {
        let small = args(&format!("--nodes 5 --symmetry off --network-max 4 {CI}"));
        let verdict = run_verdict(&small).expect("a valid scope");
        assert_eq!(
            verdict,
            Verdict::Vacuous(vec![Unreached::Leader, Unreached::CommittedCommand])
        );
        assert_eq!(verdict.exit_status(), EXIT_VACUOUS);
        let allowed = args(&format!(
            "--nodes 5 --symmetry off --network-max 4 --allow-vacuous {CI}"
        ));
        assert_eq!(run_verdict(&allowed), Ok(Verdict::Clean));
    }

    #[test]
    fn the_network_default_grows_with_the_nodes_and_a_flag_wins() {
        assert_eq!(args("").scope().network_max, 4);
        assert_eq!(args("--nodes 5").scope().network_max, 6);
        assert_eq!(args("--nodes 5 --network-max 4").scope().network_max, 4);
    }

    #[test]
    fn default_networks_of_three_and_five_nodes_elect_and_three_commit() {
        // 3 nodes: a command commits by depth 18 (0.2 s in debug). 5
        // nodes: the first commit is some 25 steps deep, out of reach of
        // a breadth-first debug test, so this explores to depth 10 with
        // writes durable at once (a leader, 0.8 s) and `reach.rs` shows a
        // path to a commit within the same network.
        let three = args(&format!("--depth 18 {CI}"));
        let report = super::super::explore(&three.scope(), 2, &|_| {}).expect("valid");
        let reached = &report.outcome.reached;
        assert!(reached.leader_states > 0, "{reached:?}");
        assert!(reached.committed_commands_max >= 1, "{reached:?}");
        assert!(reached.committed_entries_max >= 2, "{reached:?}");
        assert_eq!(run_verdict(&three), Ok(Verdict::Clean));

        let five = args(&format!(
            "--nodes 5 --symmetry off --sync-at-once on --depth 10 {CI}"
        ));
        let report = super::super::explore(&five.scope(), 2, &|_| {}).expect("valid");
        let reached = &report.outcome.reached;
        assert_eq!(reached.leader_terms, 1, "{reached:?}");
        assert!(reached.leader_states > 0, "{reached:?}");
    }
}
