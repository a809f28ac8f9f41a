//! Efficiency budgets: outside checks that the protocol does
//! not spend more messages or time than it should. Safety and liveness
//! checks pass a core that, say, backs up one entry per rejected probe
//! instead of using the follower's hint: it is only slower. These checks
//! turn such waste into a finding.
//!
//! They come in two classes, because a check that can fail a
//! correct run is a defect:
//!
//! * **Bounds** fail the run. Each is either a limit the core promises
//!   (the append limits below) or derived from the model of the calm
//!   network that runs after the quiet period (message delays below
//!   [`CALM_MESSAGE_DELAY_MAX_NS`], fsyncs of [`CALM_FSYNC_NS`]), with the
//!   argument at its constant for why no correct run can exceed it.
//! * **Expectations** ([`Expectation`]) are statistical: bounds fitted to
//!   the distributions over seeds that a correct run under a rare fault
//!   schedule may exceed (no leader for seconds on end still sends
//!   heartbeats and campaigns, and commits nothing). A run that exceeds
//!   one is reported in a class of its own (shown and counted by `run`, in
//!   `--json`), not failed, unless `--strict-budgets`
//!   ([`crate::SimConfig::strict_budgets`]) asks for failures.
//!
//! The expectations, counted from what the nodes *send* (a message lost
//! or duplicated by the network costs the sender nothing more):
//!
//! * **probe round trips per catch-up**: a catch-up is one follower
//!   finding the point where its log matches its leader's, in one term:
//!   from the follower's first refusal of an append to its next
//!   acceptance. A probe round trip is a refusal below every earlier
//!   refusal of the catch-up: the leader backs up after each, while the
//!   refusals of appends already in flight (pipelined behind the first
//!   one), repeated after a loss or duplicated by the network refuse
//!   indices at or above it and cost no extra round trip. With the
//!   follower's hint the leader skips a whole term per round trip.
//! * **messages per committed entry and follower**: every message sent in
//!   the run, over the entries committed (before a forced recovery too)
//!   and the followers a leader replicates to. Heartbeats and elections
//!   are in it, so it is a coarse bound; it catches a protocol that
//!   chatters.
//! * **messages per follower and heartbeat interval in the quiet
//!   period**: once liveness is satisfied the run goes on for a quiet
//!   period without faults and without new client operations, where a
//!   leader needs one heartbeat and its answer per follower and interval.
//!   This catches a leader that doubles its idle traffic, which the
//!   per-entry budget is too coarse to see.
//! * **backlog round trips** ([`backlog_expected_ns`]): the calm backlog
//!   below commits within one round trip per in-flight window of its
//!   batches and four more; tighter than its bound.
//!
//! The bounds. One limit the core promises ("every batch has a configured
//! limit"), checked from outside on every append a node sends: at most
//! `append_entries_max` entries, and at most `append_bytes_max` bytes of
//! entries ([`concord::Entry::size_bytes`]) beyond the first entry, which
//! always goes out however large. The other side of the same promise: an
//! append stops short of the leader's last entry only at one of those
//! limits, so a backlog never trickles out in batches smaller than the
//! limits allow (one entry per message, say).
//!
//! Then the calm phases after the quiet period (`engine::checks`,
//! `engine::calm`), on the calm network: message delays drawn uniformly
//! below [`CALM_MESSAGE_DELAY_MAX_NS`] (`D`), no loss, duplication or
//! partition, fsyncs of [`CALM_FSYNC_NS`] (`F`), and no pause, crash or
//! skew change. Messages sent before the heal may still arrive (a long
//! tail, a stale delivery) and clients may still retry an operation from
//! before: so each measurement starts only when the leader is *idle*
//! (every other voter holds its whole log, acknowledged, and is streamed
//! to with no append in flight), and one that another entry joined
//! (a client's retry) is not judged where that entry could delay it
//! (`Efficiency::calm_unjudged` counts them). Under those conditions:
//!
//! * **commit latency at a stable leader**: [`LATENCY_WRITES`] writes
//!   proposed one at a time commit within [`COMMIT_LATENCY_MAX_NS`].
//! * **follower apply**: each voter that held a latency write when it
//!   committed applies it within [`FOLLOWER_APPLY_MAX_NS`] of the
//!   leader's commit.
//! * **reads**: linearizable reads (ReadIndex at the leader, follower
//!   reads at the voters) are answered within [`READ_LATENCY_MAX_NS`].
//! * **backlog**: [`BACKLOG_BATCHES`] full batches proposed at once go
//!   out to every voter as a window of appends in the proposal's step and
//!   commit within [`backlog_budget_ns`].

use std::collections::BTreeMap;

use concord::{
    AppendResponse, Config, Entry, Index, Message, MessageBody, Node, NodeId, ReadPath, Term,
};
use serde::{Deserialize, Serialize};

use crate::engine::FailureKind;

/// The largest message delay of the calm network (`D`), exclusive: every
/// message sent after the heal is delivered between 0.1 and 1 ms after it
/// was sent (`engine::network`'s base delay, the only one left once the
/// fault rates are calm).
pub const CALM_MESSAGE_DELAY_MAX_NS: u64 = crate::engine::MESSAGE_DELAY_MAX_NS;

/// The time of every fsync after the heal (`F`; `engine::host`).
pub const CALM_FSYNC_NS: u64 = crate::engine::CALM_FSYNC_NS;

/// Most probe round trips one catch-up is expected to take (an
/// [`Expectation`]). Over seeds 0..2000 the most seen was 4 on 5 nodes and
/// 5 on 3 nodes (99th percentile of the runs' maxima: 3); a leader that
/// ignores the hint needs up to 30 in seeds 0..300. Not a bound: with the
/// hint each round trip skips one term of the follower's divergent
/// suffix, and a follower cut off through many short terms can hold
/// entries of more terms than this.
pub const PROBES_PER_CATCH_UP_MAX: usize = 8;

/// Most messages per committed entry and per follower (a cluster of `n`
/// nodes may send `n - 1` times this per entry) a run is expected to send
/// (an [`Expectation`]), with at least `MESSAGES_MIN_COMMITTED` entries
/// committed. Over seeds 0..2000 on 5 and 3 nodes the most seen was 23
/// and 20 (medians 7, 99th percentiles 14 and 13). Not a bound: heartbeats
/// and campaigns go on with time, entries commit only while a quorum
/// works (seed 5201658 on 6 nodes: a one-way partition and crashes before
/// vote fsyncs for ten seconds, 4,863 messages for 22 entries).
pub const MESSAGES_PER_ENTRY_AND_FOLLOWER_MAX: u64 = 40;

/// Most messages per follower and heartbeat interval (counted on the
/// fastest clock) in the quiet period, in hundredths: 3.5 (an
/// [`Expectation`]). Over seeds 0..2000 the most seen was 2.77 on 5 nodes
/// and 2.79 on 3 (medians 2.16 and 2.21: a heartbeat and its answer, plus
/// the tail of the last client operations and snapshot transfers, which
/// no bound limits).
pub const QUIET_MESSAGES_PER_FOLLOWER_AND_HEARTBEAT_MAX_CENTI: u64 = 350;

/// Writes proposed one at a time at the leader after the quiet period,
/// each measured from proposal to commit (see the module's documentation).
pub const LATENCY_WRITES: u32 = 6;

/// One round trip on the calm network: two message delays and two fsyncs
/// (a follower that receives an entry while an fsync is under way waits
/// for it, then syncs the entry: at most `2F`).
pub const CALM_ROUND_TRIP_NS: u64 = 2 * CALM_MESSAGE_DELAY_MAX_NS + 2 * CALM_FSYNC_NS;

/// Most time from a write's proposal at an idle stable leader to its
/// commit there, on the calm network: one round trip, 2.1 ms.
///
/// Why no correct run exceeds it: at the proposal every other voter
/// holds the leader's whole log and is streamed to with nothing in flight,
/// so the leader sends the write to each at once (the in-flight window is
/// empty). Its append has `prev` at the follower's last entry, so it is
/// taken whenever it arrives, before `D`; the follower's fsync ends within
/// `2F` of that, and its acknowledgement arrives within `D` more. The
/// leader's own fsync ends within `2F`. A quorum has then acknowledged.
/// Appends of entries proposed later (a client's retry) go after it and
/// cannot make a follower refuse it. Over seeds 0..2000 the most seen was
/// 2,043 us on 5 nodes. A write that waits for the next heartbeat takes up
/// to a heartbeat interval (20 ms at the default tick) more.
pub const COMMIT_LATENCY_MAX_NS: u64 = CALM_ROUND_TRIP_NS;

/// Most time from a latency write's commit at the leader to its apply on
/// each voter that held it when it committed (the leader had its
/// acknowledgement and streams to it), when no other entry followed the
/// write before it committed: one message delay, 1 ms. A voter the leader
/// probes instead (a stale refusal arrived, `concord::replication`) is
/// owed no notice and is not judged.
///
/// Why: such a voter has no append in flight past the commit (its last
/// acknowledgement freed the window), so the leader's commit step sends
/// it a commit notice at once, which arrives within `D`; the voter holds
/// the entry and applies it in the step that takes the notice. When an
/// entry followed the write, the leader holds the notice back until the
/// follower answers the append carrying it (by design: under a stream of
/// writes the next append carries the commit), so those applies are not
/// judged (seed 1016817 on 5 nodes: a client's retry appended 0.26 ms
/// before the commit; 2,171 us). A follower that learns the commit only
/// from the next heartbeat applies up to a heartbeat interval later.
pub const FOLLOWER_APPLY_MAX_NS: u64 = CALM_MESSAGE_DELAY_MAX_NS;

/// Most time from a linearizable read's request to its answer on the calm
/// network at an idle leader whose voters have applied its commit index,
/// with no entry appended meanwhile: six message delays, 6 ms.
///
/// Why: a follower's read request reaches the leader within `D`. There it
/// joins the next confirmation round, which goes out at once if none is
/// under way, else when the one under way (sent before the request
/// arrived) is confirmed, within `2D` of the arrival; followers echo a
/// round at once, so it is confirmed within `2D` of being sent. The
/// answer takes `D` back, and the follower has applied the index (the
/// commit index, unchanged). `D + 2D + 2D + D`. A ReadIndex read at the
/// leader starts a round at once, or joins the next: at most `4D`. A
/// follower has one request out at a time, so a follower read that finds
/// a client's read waiting there is not judged (it may wait a whole
/// request cycle first). Over
/// seeds 0..2000 the most seen was 4,855 us on 5 nodes.
pub const READ_LATENCY_MAX_NS: u64 = 6 * CALM_MESSAGE_DELAY_MAX_NS;

/// Full batches (`append_entries_max`, `append_bytes_max`) in the backlog
/// proposed at once after the reads, at most `uncommitted_entries_max`
/// entries. Four, so that a window shows from outside: a leader whose
/// pipeline stops after one append still sends two in the proposal's step
/// (one from the broadcast, one from the pipeline), which two batches
/// would not tell from a window. Every batch more is up to
/// `append_entries_max` more entries to replicate, apply and snapshot (8
/// in every seed made the default sweep 2.5 times slower).
pub const BACKLOG_BATCHES: usize = 4;

/// Round trips a backlog is expected to take beyond one per in-flight
/// window of its batches (an [`Expectation`]; [`backlog_budget_ns`] is
/// the bound): appends sent at once reach a follower out of order on the
/// calm network too, and the ones that arrive ahead of a gap are refused
/// and sent again. Over seeds 0..2000 the slowest backlog took 4.35 round
/// trips in all on 5 nodes and 4.84 on 3 (the default window holds every
/// batch). Tighter than the bound, it sees a leader that learns of a
/// follower's missing entries only at its next heartbeat (the planted
/// `commit_notice_unchecked`), which the bound, allowing three message
/// delays per refusal, does not.
pub const BACKLOG_EXPECTED_EXTRA_ROUND_TRIPS: u64 = 4;

/// The backlog's expectation: one calm round trip per window of
/// `batches`, and [`BACKLOG_EXPECTED_EXTRA_ROUND_TRIPS`] more.
pub fn backlog_expected_ns(batches: u64, window: u64) -> u64 {
    (batches.div_ceil(window.max(1)) + BACKLOG_EXPECTED_EXTRA_ROUND_TRIPS) * CALM_ROUND_TRIP_NS
}

/// Below this many committed entries the messages-per-entry budget is not
/// checked: a run that committed almost nothing (a nemesis deposed every
/// leader) divides by a number too small to mean anything.
pub const MESSAGES_MIN_COMMITTED: Index = 20;

/// A statistical budget (see the module's documentation): exceeding it is
/// reported, not failed, unless `--strict-budgets` asks for failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Expectation {
    /// A catch-up took more than [`PROBES_PER_CATCH_UP_MAX`] probe round
    /// trips.
    ProbesPerCatchUp,
    /// The run sent more than [`MESSAGES_PER_ENTRY_AND_FOLLOWER_MAX`]
    /// messages per committed entry and follower.
    MessagesPerEntry,
    /// The quiet period sent more than
    /// [`QUIET_MESSAGES_PER_FOLLOWER_AND_HEARTBEAT_MAX_CENTI`] hundredths
    /// of a message per follower and heartbeat interval.
    QuietMessages,
    /// A calm backlog took more than [`backlog_expected_ns`].
    BacklogRoundTrips,
}

impl Expectation {
    /// Every expectation, in report order.
    pub const ALL: [Expectation; 4] = [
        Expectation::ProbesPerCatchUp,
        Expectation::MessagesPerEntry,
        Expectation::QuietMessages,
        Expectation::BacklogRoundTrips,
    ];

    /// A short name, as `run` and `--json` print it.
    pub fn name(self) -> &'static str {
        match self {
            Expectation::ProbesPerCatchUp => "probes-per-catch-up",
            Expectation::MessagesPerEntry => "messages-per-entry",
            Expectation::QuietMessages => "quiet-messages",
            Expectation::BacklogRoundTrips => "backlog-round-trips",
        }
    }

    /// The kind of failure it is under `--strict-budgets`.
    pub fn strict_kind(self) -> FailureKind {
        match self {
            Expectation::BacklogRoundTrips => FailureKind::BacklogThroughput,
            _ => FailureKind::Efficiency,
        }
    }
}

/// An expectation a run exceeded, with what it saw.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectationExceeded {
    /// Which expectation.
    pub expectation: Expectation,
    /// Virtual time it was exceeded, nanoseconds.
    pub time_ns: u64,
    /// The figures.
    pub message: String,
}

/// What a send went beyond.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Overrun {
    /// A bound: the run fails with this kind.
    Bound(FailureKind, String),
    /// An expectation.
    Expectation(Expectation, String),
}

/// What a run spent, for the report and the distributions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Efficiency {
    /// Messages sent by every node.
    pub messages: u64,
    /// Catch-ups completed (a refusal later followed by an acceptance).
    pub catch_ups: u64,
    /// Most probe round trips of one catch-up (completed or not).
    pub probes_max: usize,
    /// Messages per follower and heartbeat interval in the quiet period,
    /// in hundredths (0 when the run had no quiet period).
    pub quiet_centi: u64,
    /// Writes measured from proposal to commit after the quiet period.
    pub latency_writes: u32,
    /// The longest of them, nanoseconds (0 when none was measured).
    pub commit_latency_max_ns: u64,
    /// Follower applies measured after latency writes.
    #[serde(default)]
    pub follower_applies: u32,
    /// The longest time from a latency write's commit at the leader to its
    /// apply at a follower, nanoseconds.
    #[serde(default)]
    pub follower_apply_max_ns: u64,
    /// Linearizable reads measured after the latency writes.
    #[serde(default)]
    pub reads: u32,
    /// The longest of them from request to answer, nanoseconds.
    #[serde(default)]
    pub read_latency_max_ns: u64,
    /// Entries of the backlog proposed at once after the reads (0 when
    /// none was).
    #[serde(default)]
    pub backlog_entries: u64,
    /// Time from the backlog's proposal to its commit at the leader, in
    /// hundredths of a calm round trip ([`CALM_ROUND_TRIP_NS`]).
    #[serde(default)]
    pub backlog_centi_round_trips: u64,
    /// Refusals of appends the slowest-refusing voter sent during the
    /// backlog (each may cost the backlog a round trip and more, see
    /// [`backlog_budget_ns`]).
    #[serde(default)]
    pub backlog_refusals: u64,
    /// Calm-phase measurements left unjudged: another entry joined them
    /// (a client's retry), a follower read queued behind a client's read
    /// at that follower, the leader never became idle, or a leadership
    /// hand-over sent before the heal could still arrive.
    #[serde(default)]
    pub calm_unjudged: u32,
    /// Runs whose liveness was not owed (0 or 1): a server back with
    /// empty storage recovers until its log reaches what its peers
    /// reported, and only a witness held that (see
    /// `Simulation::liveness_unowed`).
    #[serde(default)]
    pub liveness_unowed: u32,
    /// Followers repaired by the idle catch-up check (0 or 1).
    #[serde(default)]
    pub idle_catch_ups: u32,
    /// Time the repair took, from the follower's restart, in hundredths of
    /// the leader's heartbeat interval.
    #[serde(default)]
    pub idle_catch_up_centi_heartbeats: u64,
}

/// A catch-up under way.
#[derive(Clone, Copy, Debug)]
struct CatchUp {
    /// The lowest index refused so far.
    lowest_refused: Index,
    /// Probe round trips so far.
    probes: usize,
}

/// The budgets of one run.
pub(crate) struct Budgets {
    /// Followers of a leader: nodes - 1, at least 1.
    followers: u64,
    spent: Efficiency,
    /// Catch-ups under way, by (leader, follower, term).
    open: BTreeMap<(NodeId, NodeId, Term), CatchUp>,
    /// Messages sent before the quiet period started.
    quiet_from: Option<u64>,
    /// The last index of the node stepping, before its step: the sends of
    /// a step are checked against what it held before (an entry it appends
    /// later in the same step, leaving a joint configuration on a commit
    /// say, goes out in the next append of that step).
    held_before_step: Index,
    /// While counting (the backlog's proposal): appends with entries sent
    /// by node `.0`, by receiver.
    appends_counted: Option<(NodeId, BTreeMap<NodeId, u64>)>,
    /// While the backlog is under way: refusals of appends sent to leader
    /// `.0` in term `.1`, by sender.
    refusals_counted: Option<(NodeId, Term, BTreeMap<NodeId, u64>)>,
    /// Entries committed and then forgotten by a forced recovery (the
    /// lost majority's), counted in the messages-per-entry expectation.
    committed_forgotten: Index,
}

impl Budgets {
    /// The budgets of a run of `nodes` nodes.
    pub(crate) fn new(nodes: usize) -> Budgets {
        Budgets {
            followers: nodes.saturating_sub(1).max(1) as u64,
            spent: Efficiency::default(),
            open: BTreeMap::new(),
            quiet_from: None,
            held_before_step: 0,
            appends_counted: None,
            refusals_counted: None,
            committed_forgotten: 0,
        }
    }

    /// A node holding entries up to `last_index` is about to step.
    pub(crate) fn step_started(&mut self, last_index: Index) {
        self.held_before_step = last_index;
    }

    /// The quiet period starts.
    pub(crate) fn quiet_started(&mut self) {
        self.quiet_from = Some(self.spent.messages);
    }

    /// The quiet period ends after `heartbeats` heartbeat intervals (on
    /// the fastest clock). An error is an [`Expectation::QuietMessages`].
    pub(crate) fn quiet_ended(&mut self, heartbeats: u64) -> Result<(), String> {
        let Some(from) = self.quiet_from else {
            return Ok(());
        };
        let sent = self.spent.messages - from;
        self.spent.quiet_centi = 100 * sent / (self.followers * heartbeats.max(1));
        if self.spent.quiet_centi > QUIET_MESSAGES_PER_FOLLOWER_AND_HEARTBEAT_MAX_CENTI {
            return Err(format!(
                "{sent} messages in a quiet period of {heartbeats} heartbeat intervals: {:.2} per follower and interval, above {:.2}",
                self.spent.quiet_centi as f64 / 100.0,
                QUIET_MESSAGES_PER_FOLLOWER_AND_HEARTBEAT_MAX_CENTI as f64 / 100.0
            ));
        }
        Ok(())
    }

    /// A write proposed at a stable leader committed there `latency_ns`
    /// after its proposal. An error names the bound and the figures.
    pub(crate) fn on_commit_latency(&mut self, latency_ns: u64) -> Result<(), String> {
        self.spent.latency_writes += 1;
        self.spent.commit_latency_max_ns = self.spent.commit_latency_max_ns.max(latency_ns);
        if latency_ns > COMMIT_LATENCY_MAX_NS {
            return Err(format!(
                "write {} of {LATENCY_WRITES} at a stable leader on a calm network committed {} us after its proposal, above the commit latency budget of {} us",
                self.spent.latency_writes,
                latency_ns / 1_000,
                COMMIT_LATENCY_MAX_NS / 1_000
            ));
        }
        Ok(())
    }

    /// A follower applied a latency write `lag_ns` after the leader
    /// committed it. An error names the bound and the figures.
    pub(crate) fn on_follower_apply(
        &mut self,
        follower: NodeId,
        index: Index,
        lag_ns: u64,
    ) -> Result<(), String> {
        self.spent.follower_applies += 1;
        self.spent.follower_apply_max_ns = self.spent.follower_apply_max_ns.max(lag_ns);
        if lag_ns > FOLLOWER_APPLY_MAX_NS {
            return Err(format!(
                "n{follower} applied the latency write at index {index} {} us after the stable leader committed it on a calm network, above the follower apply budget of {} us",
                lag_ns / 1_000,
                FOLLOWER_APPLY_MAX_NS / 1_000
            ));
        }
        Ok(())
    }

    /// A linearizable read at `node` was answered `latency_ns` after its
    /// request. An error names the bound and the figures.
    pub(crate) fn on_read(
        &mut self,
        node: NodeId,
        path: ReadPath,
        latency_ns: u64,
    ) -> Result<(), String> {
        self.spent.reads += 1;
        self.spent.read_latency_max_ns = self.spent.read_latency_max_ns.max(latency_ns);
        if latency_ns > READ_LATENCY_MAX_NS {
            return Err(format!(
                "a {path:?} read at n{node} on a calm network with a stable leader was answered {} us after its request, above the read latency budget of {} us",
                latency_ns / 1_000,
                READ_LATENCY_MAX_NS / 1_000
            ));
        }
        Ok(())
    }

    /// A backlog of `entries` entries in `batches` full batches, proposed
    /// at once at an idle stable leader whose in-flight window per
    /// follower is `window` appends, committed `elapsed_ns` after its
    /// proposal, while the voter that refused most appends refused
    /// `refusals` (see [`backlog_budget_ns`]).
    pub(crate) fn on_backlog(
        &mut self,
        entries: u64,
        batches: u64,
        window: u64,
        refusals: u64,
        elapsed_ns: u64,
    ) -> Result<(), String> {
        let budget_ns = backlog_budget_ns(batches, refusals);
        self.spent.backlog_entries = entries;
        self.spent.backlog_refusals = refusals;
        self.spent.backlog_centi_round_trips = 100 * elapsed_ns / CALM_ROUND_TRIP_NS;
        if elapsed_ns > budget_ns {
            return Err(format!(
                "a backlog of {entries} entries ({batches} full batches, in-flight window {window}) proposed at once at a stable leader on a calm network committed {} us after its proposal, above its budget of {} us ({batches} round trips of {} us and {refusals} refused appends of {} us each)",
                elapsed_ns / 1_000,
                budget_ns / 1_000,
                CALM_ROUND_TRIP_NS / 1_000,
                BACKLOG_REFUSAL_NS / 1_000
            ));
        }
        Ok(())
    }

    /// The run's liveness was not owed (`Simulation::liveness_unowed`).
    pub(crate) fn liveness_unowed(&mut self) {
        self.spent.liveness_unowed += 1;
    }

    /// A calm-phase measurement was left unjudged.
    pub(crate) fn calm_unjudged(&mut self) {
        self.spent.calm_unjudged += 1;
    }

    /// The idle catch-up check repaired its follower in
    /// `centi_heartbeats` hundredths of a heartbeat interval.
    pub(crate) fn idle_catch_up(&mut self, centi_heartbeats: u64) {
        self.spent.idle_catch_ups += 1;
        self.spent.idle_catch_up_centi_heartbeats = centi_heartbeats;
    }

    /// Starts counting the refusals of appends sent to `leader` in `term`.
    pub(crate) fn count_refusals(&mut self, leader: NodeId, term: Term) {
        self.refusals_counted = Some((leader, term, BTreeMap::new()));
    }

    /// Stops counting: the most refusals one node sent since
    /// [`Budgets::count_refusals`].
    pub(crate) fn refusals_counted(&mut self) -> u64 {
        self.refusals_counted
            .take()
            .and_then(|(_, _, counts)| counts.into_values().max())
            .unwrap_or(0)
    }

    /// The backlog's expectation ([`Expectation::BacklogRoundTrips`]): a
    /// backlog of `batches` full batches, in-flight window `window`,
    /// committed `elapsed_ns` after its proposal.
    pub(crate) fn backlog_expected(
        &self,
        batches: u64,
        window: u64,
        elapsed_ns: u64,
    ) -> Result<(), String> {
        let expected_ns = backlog_expected_ns(batches, window);
        if elapsed_ns > expected_ns {
            return Err(format!(
                "a backlog of {batches} full batches (in-flight window {window}) at a stable leader on a calm network committed {} us after its proposal, above the {} us expected ({} round trips of {} us)",
                elapsed_ns / 1_000,
                expected_ns / 1_000,
                expected_ns / CALM_ROUND_TRIP_NS,
                CALM_ROUND_TRIP_NS / 1_000
            ));
        }
        Ok(())
    }

    /// A forced recovery forgot `entries` committed entries (the lost
    /// majority's): they still count as committed for the expectation of
    /// messages per entry, whose messages were sent for them.
    pub(crate) fn committed_forgotten(&mut self, entries: Index) {
        self.committed_forgotten += entries;
    }

    /// Starts counting the appends with entries `leader` sends.
    pub(crate) fn count_appends(&mut self, leader: NodeId) {
        self.appends_counted = Some((leader, BTreeMap::new()));
    }

    /// Stops counting: the appends sent since [`Budgets::count_appends`],
    /// by receiver.
    pub(crate) fn appends_counted(&mut self) -> BTreeMap<NodeId, u64> {
        self.appends_counted
            .take()
            .map(|(_, counts)| counts)
            .unwrap_or_default()
    }

    /// `node` sends `message`. An error names the bound, limit or
    /// expectation it went beyond.
    pub(crate) fn on_send(&mut self, node: &Node, message: &Message) -> Result<(), Overrun> {
        self.spent.messages += 1;
        let response = match &message.body {
            MessageBody::AppendEntries { entries, .. } => {
                if let Some((from, counts)) = self.appends_counted.as_mut() {
                    if *from == message.from && !entries.is_empty() {
                        *counts.entry(message.to).or_insert(0) += 1;
                    }
                }
                append_within_limits(node.config(), entries)
                    .map_err(|excess| Overrun::Bound(FailureKind::MessageBound, excess))?;
                return append_fills_its_batch(node, self.held_before_step, entries)
                    .map_err(|short| Overrun::Bound(FailureKind::Efficiency, short));
            }
            // A catch-up is one append's worth of the sender's log.
            MessageBody::CandidateCatchUp { entries, .. } => {
                return append_within_limits(node.config(), entries)
                    .map_err(|excess| Overrun::Bound(FailureKind::MessageBound, excess));
            }
            MessageBody::AppendEntriesResponse(response) => response,
            _ => return Ok(()),
        };
        let key = (message.to, message.from, message.term);
        match response {
            AppendResponse::Rejected { rejected_index, .. } => {
                if let Some((leader, term, counts)) = self.refusals_counted.as_mut() {
                    if (*leader, *term) == (message.to, message.term) {
                        *counts.entry(message.from).or_insert(0) += 1;
                    }
                }
                let catch_up = self.open.entry(key).or_insert(CatchUp {
                    lowest_refused: Index::MAX,
                    probes: 0,
                });
                if *rejected_index >= catch_up.lowest_refused {
                    return Ok(());
                }
                catch_up.lowest_refused = *rejected_index;
                catch_up.probes += 1;
                self.spent.probes_max = self.spent.probes_max.max(catch_up.probes);
                if catch_up.probes == PROBES_PER_CATCH_UP_MAX + 1 {
                    return Err(Overrun::Expectation(Expectation::ProbesPerCatchUp, format!(
                        "n{} needed more than {PROBES_PER_CATCH_UP_MAX} probe round trips to catch up with n{} in term {} (down to index {rejected_index})",
                        message.from, message.to, message.term
                    )));
                }
            }
            AppendResponse::Accepted { .. } => {
                if self.open.remove(&key).is_some() {
                    self.spent.catch_ups += 1;
                }
            }
        }
        Ok(())
    }

    /// The run is over with `committed` entries committed (in the final
    /// log). An error is an [`Expectation::MessagesPerEntry`].
    pub(crate) fn at_end(&self, committed: Index) -> Result<(), String> {
        let committed = committed + self.committed_forgotten;
        let budget = MESSAGES_PER_ENTRY_AND_FOLLOWER_MAX
            .saturating_mul(self.followers)
            .saturating_mul(committed);
        if committed >= MESSAGES_MIN_COMMITTED && self.spent.messages > budget {
            return Err(format!(
                "{} messages for {committed} committed entries: more than {MESSAGES_PER_ENTRY_AND_FOLLOWER_MAX} per entry and follower",
                self.spent.messages
            ));
        }
        Ok(())
    }

    /// What the run spent so far.
    pub(crate) fn spent(&self) -> Efficiency {
        self.spent
    }
}

/// What one refused append may add to a backlog: three message delays
/// (see [`backlog_budget_ns`]).
pub const BACKLOG_REFUSAL_NS: u64 = 3 * CALM_MESSAGE_DELAY_MAX_NS;

/// The backlog budget: one calm round trip per batch, and
/// [`BACKLOG_REFUSAL_NS`] per append the voter that refused most refused
/// (`refusals`).
///
/// Why no voter takes longer to hold the backlog. Let `a(i)` be when the
/// leader learns the voter holds batch `i`. The first batch goes out in
/// the proposal's step (checked at the proposal) with `prev` at the
/// voter's last entry, so it is taken on arrival: `a(1)` is within a round
/// trip. Batch `i + 1` was sent by `a(i)` (or is sent then, the
/// acknowledgement freeing the window or ending a probe). If the voter
/// takes its first copy, `a(i + 1)` is within a round trip of its sending.
/// If the voter refused it (it arrived ahead of batch `i`: the calm
/// network reorders), the refusal reaches the leader within `D` after
/// `a(i)` (it was sent before the voter held batch `i`); the leader then
/// either probes from its match index at once or, when the refusal names
/// that index, sends a commit notice naming its last entry, which the
/// voter refuses (`2D`) before the probe. The probe has `prev` at batch
/// `i` and is taken: `a(i + 1) <= a(i) + RT + 3D`. Summed over the
/// batches: at most `batches * RT + refused * 3D`, with `refused` the
/// refusals of first copies, at most all the voter's refusals; a quorum
/// of voters, each within its own, is within the largest. The
/// leader's own fsync ends within `2F`. A leader without a window of
/// appends in flight, or whose messages wait (a planted 5 ms per
/// message), takes longer.
pub fn backlog_budget_ns(batches: u64, refusals: u64) -> u64 {
    batches * CALM_ROUND_TRIP_NS + refusals * BACKLOG_REFUSAL_NS
}

/// An append that stops short of what the sender held before its step
/// (`held`) is full: one more entry would pass `append_entries_max` or
/// `append_bytes_max`.
fn append_fills_its_batch(node: &Node, held: Index, entries: &[Entry]) -> Result<(), String> {
    let Some(last) = entries.last() else {
        return Ok(());
    };
    if last.index >= held {
        return Ok(());
    }
    let Some(next) = node.entry(last.index + 1) else {
        return Ok(());
    };
    let config = node.config();
    let size_bytes: usize = entries.iter().map(Entry::size_bytes).sum();
    if entries.len() >= config.append_entries_max
        || size_bytes + next.size_bytes() > config.append_bytes_max
    {
        return Ok(());
    }
    Err(format!(
        "an append of {} entries and {size_bytes} bytes (indices {}..={}) stops short of the last index {held} the sender held before its step although entry {} ({} bytes) fits within append_entries_max {} and append_bytes_max {}",
        entries.len(),
        entries[0].index,
        last.index,
        next.index,
        next.size_bytes(),
        config.append_entries_max,
        config.append_bytes_max
    ))
}

/// The limits of one append (see the module's documentation).
fn append_within_limits(config: &Config, entries: &[Entry]) -> Result<(), String> {
    if entries.len() > config.append_entries_max {
        return Err(format!(
            "an append of {} entries, above append_entries_max {}",
            entries.len(),
            config.append_entries_max
        ));
    }
    let beyond_first: usize = entries.iter().skip(1).map(|entry| entry.size_bytes()).sum();
    let first = entries.first().map_or(0, |entry| entry.size_bytes());
    if beyond_first > 0 && first + beyond_first > config.append_bytes_max {
        return Err(format!(
            "an append of {} entries and {} bytes, above append_bytes_max {}",
            entries.len(),
            first + beyond_first,
            config.append_bytes_max
        ));
    }
    Ok(())
}
