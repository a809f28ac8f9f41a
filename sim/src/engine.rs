//! The discrete-event engine: virtual clock, event queue, nodes with their
//! disks and state machines, the network, clients, and the checks.
//!
//! This file holds the run's state ([`Simulation`]), the event queue, the
//! event loop and the dispatch of each event; each concern the events
//! drive has its own module, all of them `impl` blocks of [`Simulation`]:
//!
//! | module | concern |
//! | --- | --- |
//! | `host` | a node with its disk and state machine: boot, step, execute actions, crash, restart, pause |
//! | `network` | message delays, loss, duplication, partitions, in-flight messages |
//! | `client` | the workload's clients: sessions, timeouts, retries, leader discovery |
//! | `inject` | applying the fault plan and the protocol-aware nemeses; healing |
//! | `checks` | liveness probe, stability checks, final checks on the run |
//! | `churn` | the membership workload: adding, promoting and removing nodes |
//! | `forced` | losing a majority for good, forced recovery from a survivor, fresh nodes joining |
//! | `split` | the split-vote nemesis: a rival campaign in the same step, voters hearing both requests before a winner |
//! | `queue` | the event queue, by (virtual time, sequence number) |
//!
//! The per-step safety checks live in `crate::safety`, the promise checks
//! across restarts in `crate::promises`, the nemeses' decisions in
//! `crate::nemesis`.
//!
//! Everything random derives from the run's seed through one ChaCha8
//! generator (separate streams for the plan, the network, the disks, the
//! clients and the workload, so that editing the fault schedule disturbs
//! the other draws as little as possible). Nothing reads the wall clock,
//! no thread runs inside a run, and every collection iterated is ordered.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use concord::state_machine::StateMachine;
use concord::{Action, Index, Input, Message, Node, NodeId, Term};

use crate::budgets::{Budgets, Efficiency, Expectation, ExpectationExceeded};
use crate::config::{CompactionOptions, NodeOptions, ReadOptions, SimConfig};
use crate::faults::{exponential, Fault, FaultKind, FaultPlan, PlanLimits, Rates};
use crate::nemesis::Nemesis;
use crate::performance::{Cost, Performance};
use crate::promises::Promises;
use crate::rules::Rules;
use crate::safety::Safety;
use crate::trace::TraceHash;
use crate::workload::{OpResult, Workload};

mod accessors;
mod accounting;
mod book;
mod calm;
mod campaign;
mod catchup;
mod checks;
mod churn;
mod client;
mod conflict;
mod disk_loss;
mod forced;
mod fresh;
mod hints;
mod host;
mod inject;
mod late_catchup;
mod lease;
mod network;
mod ondisk;
mod queue;
mod replica;
mod sessions;
mod snapshot_copy;
mod split;
mod states;

use self::book::HostEntries;
use self::calm::CalmPhase;
use self::checks::{LatencyPhase, Probe};
use self::churn::Churn;
use self::client::{Client, ClientMessage, ClientProbes};
use self::conflict::{ConflictNemesis, ConflictStep};
use self::disk_loss::{DiskLossNemesis, DiskLossStep};
use self::forced::{Forced, ForcedStep};
pub use self::forced::{ForcedRecoveryReport, LostOperation};
pub(crate) use self::hints::expected_hint as last_at_or_below;
pub(crate) use self::host::{
    fsync_latency_ns, read_refusal_hint, receive_snapshot_chunk, received_snapshot, show_bytes,
    show_response, CALM_FSYNC_NS,
};
use self::host::{Host, HostInput, Proposer};
use self::lease::{LeaseNemesis, LeaseStep};
pub(crate) use self::network::MESSAGE_DELAY_MAX_NS;
use self::network::{body_code, NetOdds, Slab};
pub use self::ondisk::DurableCounts;
use self::ondisk::DurableRun;
use self::queue::EventQueue;
use self::sessions::SessionModel;
use self::split::SplitRoute;

const MS: u64 = 1_000_000;

/// After liveness is satisfied, the run goes on this long without faults
/// and no election may start meanwhile.
const QUIET_PERIOD_NS: u64 = 1_000 * MS;

/// Most inputs queued for a paused node; later ones are dropped.
const PAUSED_QUEUE_MAX: usize = 4096;

/// What kind of check failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FailureKind {
    /// Two leaders in one term.
    ElectionSafety,
    /// Two nodes disagree on a committed entry.
    LogMatching,
    /// A new leader lacks an entry committed before its election.
    LeaderCompleteness,
    /// Two nodes applied different commands, or computed different
    /// responses or states, at one index.
    StateMachineSafety,
    /// An operation acknowledged to a client is missing from the final log.
    AckedWriteLost,
    /// A node's commit index went back within one incarnation.
    CommitRegressed,
    /// A leader found a follower holding less than it had acknowledged as
    /// durable (the core's [`concord::Action::FollowerLogRegressed`]): the
    /// simulated disk never loses synced writes, so its host lied.
    AcknowledgedEntriesLost,
    /// A state machine executed one logical operation twice.
    ExactlyOnce,
    /// The client history is not linearizable (or could not be checked).
    Linearizability,
    /// A service's own invariant (`run --service ...`) failed: the
    /// message names the service and the check.
    ServiceInvariant,
    /// A workload's own check failed ([`Workload::check_now`] during the
    /// run, [`Workload::finish`] at its end), under the name the workload
    /// gives it ([`Workload::failure_kind`]; `workload` by default).
    Workload(&'static str),
    /// After faults healed, a new write did not commit and apply on every
    /// member of the final configuration in time, or a node outside it
    /// led.
    Liveness,
    /// The node (or the host) panicked: an assertion of the core fired.
    Panic,
    /// A node refused the state recovered from its own disk.
    Recovery,
    /// The node asked the host for something the contract forbids (e.g. a
    /// non-contiguous write).
    HostContract,
    /// The run did not finish within its event budget.
    EventBudget,
    /// A node held more log entries in memory than its compaction policy
    /// allows.
    LogBound,
    /// A restarted node's term or vote went back behind what it promised
    /// (a vote grant sent, or an election won).
    HardStateRegressed,
    /// A restarted node lacks an entry it acknowledged as durable and
    /// still held when it crashed.
    AckedEntryNotRecovered,
    /// Elections during a quiet period without faults, or a leader cut off
    /// from a quorum that did not step down within its CheckQuorum bound.
    Stability,
    /// A leader's commit index moved past what the quorums of the
    /// configuration in force in its log (both halves while joint) hold.
    CommitWithoutQuorum,
    /// The run spent more messages than its budget (`crate::budgets`).
    Efficiency,
    /// A node sent an append above its configured `append_entries_max` or
    /// `append_bytes_max` (`crate::budgets`).
    MessageBound,
    /// A write proposed at a stable leader on a calm network took longer
    /// than its budget to commit (`crate::budgets`).
    CommitLatency,
    /// A follower applied a write committed by a stable leader on a calm
    /// network later than its budget (`crate::budgets`).
    FollowerApply,
    /// A linearizable read on a calm network with a stable leader was
    /// refused, or answered later than its budget (`crate::budgets`).
    ReadLatency,
    /// A backlog of full batches proposed at once at a stable leader on a
    /// calm network took longer than its budget in round trips to commit
    /// (`crate::budgets`).
    BacklogThroughput,
    /// A client's session expired although the session table never held
    /// enough sessions to evict one.
    SessionLost,
    /// A witness led, or was handed entries to apply or a snapshot to
    /// restore: it must do neither.
    WitnessServed,
    /// A node's address book (built from the Host entries it applied and
    /// the snapshots it restored) differs from the committed log's.
    HostBook,
    /// A node took a message whose sender is forged (itself, id 0, or
    /// outside its configuration while it leads): its term, vote or role
    /// moved, or it sent or did something.
    ForgedSender,
    /// A client's malformed request, or its re-sent older command, was
    /// not answered as the session contract promises (`Malformed`,
    /// `SessionExpired`).
    SessionContract,
    /// What a node reports to its operator disagrees with what it did: a
    /// `Statistics` counter went down or moved by other than its events,
    /// a change of role or term went unannounced (or an announcement
    /// named no change), a malformed message moved the wrong counter or
    /// changed state, or a snapshot was asked for before the compaction
    /// policy called for one (`engine::accounting`).
    NodeReport,
    /// A node voted for a candidate, the vote became durable, and the node
    /// never sent that candidate its grant (while still in that term with
    /// that vote): the candidate loses a vote it was given.
    VoteUnanswered,
    /// A node whose storage was lost granted a vote (or pre-vote) before
    /// its durable log held the entry committed when it lost it
    /// (`engine::disk_loss`).
    RecoveringVote,
    /// A leader left a follower it streams to, with no append in flight to
    /// it, without the commit index up to what the follower holds: the
    /// follower applies nothing until the next append or heartbeat.
    CommitUntold,
    /// A node's step changed a part of its state its input may not
    /// change (`crate::rules`: the message names the rule, the input and
    /// the change).
    StepRule,
    /// A client kept sending attempts to a server that was dark to it
    /// (crashed, paused, or refusing reads as a removed node) beyond what
    /// avoiding a failed server allows (`engine::client`).
    ClientAvoidance,
    /// A follower that lost synced entries on an idle cluster was not
    /// repaired within its bound, or the leader did not report the loss
    /// once (`engine::catchup`).
    IdleCatchUp,
    /// A node released a read (ReadIndex, lease or follower) at an index
    /// below one already committed somewhere when the read arrived
    /// (`engine::fresh`).
    ReadFresh,
    /// An on-disk state machine restarted with its durable applied index
    /// below the log's base, its own snapshot: the log was compacted past
    /// what the state machine had made durable (`restart-base`,
    /// `engine::ondisk`).
    DurableState,
}

impl FailureKind {
    /// A short name.
    pub fn name(self) -> &'static str {
        match self {
            FailureKind::ElectionSafety => "election-safety",
            FailureKind::LogMatching => "log-matching",
            FailureKind::LeaderCompleteness => "leader-completeness",
            FailureKind::StateMachineSafety => "state-machine-safety",
            FailureKind::AckedWriteLost => "acked-write-lost",
            FailureKind::CommitRegressed => "commit-regressed",
            FailureKind::AcknowledgedEntriesLost => "acknowledged-entries-lost",
            FailureKind::ExactlyOnce => "exactly-once",
            FailureKind::Linearizability => "linearizability",
            FailureKind::ServiceInvariant => "service-invariant",
            FailureKind::Workload(name) => name,
            FailureKind::Liveness => "liveness",
            FailureKind::Panic => "panic",
            FailureKind::Recovery => "recovery",
            FailureKind::HostContract => "host-contract",
            FailureKind::EventBudget => "event-budget",
            FailureKind::LogBound => "log-bound",
            FailureKind::HardStateRegressed => "hard-state-regressed",
            FailureKind::AckedEntryNotRecovered => "acked-entry-not-recovered",
            FailureKind::Stability => "stability",
            FailureKind::CommitWithoutQuorum => "commit-without-quorum",
            FailureKind::WitnessServed => "witness-served",
            FailureKind::Efficiency => "efficiency",
            FailureKind::MessageBound => "message-bound",
            FailureKind::CommitLatency => "commit-latency",
            FailureKind::FollowerApply => "follower-apply",
            FailureKind::ReadLatency => "read-latency",
            FailureKind::BacklogThroughput => "backlog-throughput",
            FailureKind::SessionLost => "session-lost",
            FailureKind::HostBook => "host-book",
            FailureKind::ForgedSender => "forged-sender",
            FailureKind::SessionContract => "session-contract",
            FailureKind::NodeReport => "node-report",
            FailureKind::VoteUnanswered => "vote-unanswered",
            FailureKind::RecoveringVote => "recovering-vote",
            FailureKind::CommitUntold => "commit-untold",
            FailureKind::StepRule => "step-rule",
            FailureKind::ClientAvoidance => "client-avoidance",
            FailureKind::IdleCatchUp => "idle-catch-up",
            FailureKind::ReadFresh => "read-fresh",
            FailureKind::DurableState => "durable-state",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Snapshot activity in a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnapshotCounts {
    /// Snapshots nodes took of their own state machines.
    pub taken: u64,
    /// Snapshots received from a leader and restored.
    pub installed: u64,
    /// Snapshot chunks sent.
    pub chunks_sent: u64,
    /// Own snapshots of in-memory state machines taken from a copy and
    /// serialised later (`StateMachine::snapshot_source`).
    pub from_copies: u64,
    /// Of those, the ones serialised after the node applied further
    /// entries (what the copy is for).
    pub copies_serialised_after_applies: u64,
}

impl SnapshotCounts {
    /// Adds another run's counts.
    pub fn merge(&mut self, other: &SnapshotCounts) {
        self.taken += other.taken;
        self.installed += other.installed;
        self.chunks_sent += other.chunks_sent;
        self.from_copies += other.from_copies;
        self.copies_serialised_after_applies += other.copies_serialised_after_applies;
    }
}

/// Session activity in a run: the session-contract probes and the
/// evictions the least-recently-used check judged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionCounts {
    /// Malformed requests and re-sent older commands answered as the
    /// contract says.
    pub probes_answered: u64,
    /// Sessions the session table had to evict, by the committed log.
    pub evictions: u64,
    /// 1 when the run's table held fewer sessions than it had clients.
    pub pressured_runs: u64,
}

impl SessionCounts {
    /// Adds `other` to these counts.
    pub fn merge(&mut self, other: &SessionCounts) {
        self.probes_answered += other.probes_answered;
        self.evictions += other.evictions;
        self.pressured_runs += other.pressured_runs;
    }
}

/// A failed check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Which check.
    pub kind: FailureKind,
    /// Virtual time it was detected, nanoseconds.
    pub time_ns: u64,
    /// The node involved, if one is.
    pub node: Option<NodeId>,
    /// What exactly is wrong.
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {}", self.kind, format_time(self.time_ns))?;
        if let Some(node) = self.node {
            write!(f, " on n{node}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Formats virtual nanoseconds as seconds with millisecond precision.
pub fn format_time(ns: u64) -> String {
    format!(
        "{}.{:06}s",
        ns / 1_000_000_000,
        (ns % 1_000_000_000) / 1_000
    )
}

/// How many faults of each kind a run injected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    counts: [u64; FaultKind::ALL.len()],
}

impl FaultCounts {
    /// Count for `kind`: messages delayed into the tail, lost, duplicated,
    /// reordered; partitions of each kind started; crashes; pauses; slow
    /// fsyncs; torn records written; nodes with a skewed clock.
    pub fn get(&self, kind: FaultKind) -> u64 {
        self.counts[kind as usize]
    }

    pub(crate) fn add(&mut self, kind: FaultKind, count: u64) {
        self.counts[kind as usize] += count;
    }

    /// Adds another run's counts.
    pub fn merge(&mut self, other: &FaultCounts) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts.iter()) {
            *mine += theirs;
        }
    }

    /// Total over all kinds.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// One line of a run's timeline (recorded only when asked for).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimelineEntry {
    /// Virtual time, nanoseconds.
    pub time_ns: u64,
    /// The node concerned, if any.
    pub node: Option<NodeId>,
    /// What happened.
    pub text: String,
}

/// The result of one run.
#[derive(Clone, Debug)]
pub struct RunReport {
    /// The configuration run.
    pub config: SimConfig,
    /// The fault plan used (drawn from the seed or given).
    pub plan: FaultPlan,
    /// The Raft options the nodes ran with.
    pub node_options: NodeOptions,
    /// How the nodes compacted their logs.
    pub compaction: CompactionOptions,
    /// How the workload's reads were served.
    pub reads: ReadOptions,
    /// Reads served without the log, by path (ReadIndex, lease,
    /// follower), as the nodes reported them.
    pub reads_served: [u64; 3],
    /// Client attempts sent to a server dark to clients (crashed, paused,
    /// or for a follower read removed and aware of it), each checked by
    /// the client-avoidance check.
    pub client_dark_attempts: u64,
    /// Reads a node refused at once because it knew it was no longer a
    /// member.
    pub reads_refused_not_member: u64,
    /// Snapshots the nodes took, installed from a leader, and snapshot
    /// chunks sent.
    pub snapshots: SnapshotCounts,
    /// The trace hash over every event.
    pub trace_hash: u64,
    /// Node steps executed (`Node::step` calls).
    pub node_steps: u64,
    /// Events dispatched by the engine.
    pub events: u64,
    /// Virtual time simulated, nanoseconds.
    pub simulated_ns: u64,
    /// Client operations issued (and checked by the workload).
    pub operations: u64,
    /// Operations completed successfully.
    pub operations_ok: u64,
    /// Highest committed index reached.
    pub committed: Index,
    /// Faults injected, by kind.
    pub faults: FaultCounts,
    /// Messages and probe round trips spent (`crate::budgets`).
    pub efficiency: Efficiency,
    /// The statistical budgets the run exceeded (`crate::budgets`'
    /// [`Expectation`]s, the first time each), which do not fail it
    /// unless `strict_budgets` is set.
    pub expectations: Vec<ExpectationExceeded>,
    /// The first failed check, if any.
    pub failure: Option<Failure>,
    /// The timeline, when recording was on.
    pub timeline: Vec<TimelineEntry>,
    /// The forced recovery, in seeds that ran one (`engine::forced`).
    pub forced_recovery: Option<ForcedRecoveryReport>,
    /// Session-contract probes and session evictions.
    pub sessions: SessionCounts,
    /// What the on-disk state machines did, in seeds that ran them.
    pub durable: DurableCounts,
    /// What the run cost (`crate::performance`).
    pub performance: Performance,
}

impl RunReport {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Event {
    Tick {
        node: u8,
        incarnation: u32,
    },
    Deliver {
        slot: u32,
    },
    DiskSync {
        node: u8,
        incarnation: u32,
    },
    ClientWake {
        client: u32,
    },
    ClientTimeout {
        client: u32,
        attempt: u32,
    },
    ClientResend {
        client: u32,
        attempt: u32,
    },
    ToNode {
        slot: u32,
    },
    ToClient {
        slot: u32,
    },
    Fault {
        index: u32,
    },
    Heal,
    Probe,
    Deadline,
    DelayedRestart {
        node: u8,
    },
    DelayedHealNetwork,
    SnapshotSync {
        node: u8,
        incarnation: u32,
    },
    Depose {
        node: u8,
        incarnation: u32,
        term: Term,
    },
    StepDownDeadline {
        node: u8,
        incarnation: u32,
        term: Term,
        network: u32,
        pauses: u32,
        /// Index of the configuration in force in the leader when the
        /// deadline was set.
        configuration: Index,
    },
    QuietEnd,
    LatencyWrite,
    LatencyTimeout {
        write: u32,
    },
    RejoinEnd {
        leader: u8,
        follower: u8,
        term: Term,
    },
    CalmReadsEnd {
        round: u32,
    },
    /// A read round starts once the leader is idle (polled).
    CalmReadsStart {
        round: u32,
    },
    /// The backlog is proposed once the leader is idle (polled).
    BacklogPropose,
    BacklogTimeout,
    CalmDone {
        leader: u8,
        term: Term,
    },
    /// The idle catch-up check crashes its follower once the leader is
    /// idle (polled).
    CatchUpStart,
    /// The idle catch-up check looks whether the follower caught up.
    CatchUpPoll,
    Membership,
    HostEntry,
    Forced(ForcedStep),
    /// A timed step of the lease nemesis (`lease`).
    Lease(LeaseStep),
    /// A timed step of the snapshot-conflict nemesis (`conflict`).
    Conflict(ConflictStep),
    /// A timed step of the disk-loss nemesis (`disk_loss`).
    DiskLoss(DiskLossStep),
    /// An on-disk state machine's snapshot view is read (`ondisk`).
    ReadView {
        node: u8,
        incarnation: u32,
    },
    /// The next chunk of an on-disk state machine's restore is written
    /// (`ondisk`).
    RestoreChunk {
        node: u8,
        incarnation: u32,
    },
    /// An in-memory state machine's copy, taken for a snapshot, is
    /// serialised (`snapshot_copy`).
    SerialiseCopy {
        node: u8,
        incarnation: u32,
    },
}

impl Event {
    fn code(&self) -> u64 {
        match self {
            Event::Tick { node, .. } => 1 | (u64::from(*node) << 8),
            Event::Deliver { .. } => 2,
            Event::DiskSync { node, .. } => 3 | (u64::from(*node) << 8),
            Event::ClientWake { client } => 4 | (u64::from(*client) << 8),
            Event::ClientTimeout { client, .. } => 5 | (u64::from(*client) << 8),
            Event::ClientResend { client, .. } => 12 | (u64::from(*client) << 8),
            Event::ToNode { .. } => 6,
            Event::ToClient { .. } => 7,
            Event::Fault { index } => 8 | (u64::from(*index) << 8),
            Event::Heal => 9,
            Event::Probe => 10,
            Event::Deadline => 11,
            Event::DelayedRestart { node } => 13 | (u64::from(*node) << 8),
            Event::DelayedHealNetwork => 14,
            Event::SnapshotSync { node, .. } => 15 | (u64::from(*node) << 8),
            Event::Depose { node, .. } => 16 | (u64::from(*node) << 8),
            Event::StepDownDeadline { node, .. } => 17 | (u64::from(*node) << 8),
            Event::QuietEnd => 18,
            Event::LatencyWrite => 22,
            Event::LatencyTimeout { write } => 23 | (u64::from(*write) << 8),
            Event::RejoinEnd { follower, .. } => 24 | (u64::from(*follower) << 8),
            Event::CalmReadsEnd { round } => 25 | (u64::from(*round) << 8),
            Event::BacklogTimeout => 26,
            Event::CalmReadsStart { round } => 28 | (u64::from(*round) << 8),
            Event::BacklogPropose => 29,
            Event::CalmDone { leader, .. } => 27 | (u64::from(*leader) << 8),
            Event::CatchUpStart => 30,
            Event::CatchUpPoll => 31,
            Event::Membership => 19,
            Event::HostEntry => 20,
            Event::Forced(step) => 21 | (step.code() << 8),
            Event::Lease(step) => 30 | (step.code() << 8),
            Event::Conflict(step) => 31 | (step.code() << 8),
            Event::DiskLoss(step) => 32 | (step.code() << 8),
            Event::ReadView { node, .. } => 33 | (u64::from(*node) << 8),
            Event::RestoreChunk { node, .. } => 34 | (u64::from(*node) << 8),
            Event::SerialiseCopy { node, .. } => 35 | (u64::from(*node) << 8),
        }
    }
}

/// Makes a fresh state machine for a node (at start and at every restart).
pub type StateMachineFactory<S> = Box<dyn FnMut(NodeId) -> S>;

/// A simulated cluster running state machine `S` under workload `W`.
///
/// Build one with [`Simulation::new`] (or use [`crate::run_kv`] for the
/// built-in key-value service) and call [`Simulation::run`].
pub struct Simulation<S, W> {
    config: SimConfig,
    plan: FaultPlan,
    rates: Rates,
    /// `rates`' network coin flips, rebuilt whenever `rates` changes.
    odds: NetOdds,
    now: u64,
    seq: u64,
    queue: EventQueue<Event>,
    messages: Slab<Message>,
    client_messages: Slab<ClientMessage>,
    hosts: Vec<Host<S>>,
    make_sm: StateMachineFactory<S>,
    clients: Vec<Client>,
    workload: W,
    net_rng: ChaCha8Rng,
    disk_rng: ChaCha8Rng,
    client_rng: ChaCha8Rng,
    workload_rng: ChaCha8Rng,
    node_seeds: Vec<u64>,
    node_options: NodeOptions,
    compaction: CompactionOptions,
    reads: ReadOptions,
    reads_served: [u64; 3],
    /// The canonical state of the first snapshot taken at each index, by
    /// node (`states`).
    snapshot_states: BTreeMap<Index, (usize, bytes::Bytes)>,
    /// Reads the clients issued, kept to compare two states by
    /// what they answer rather than by their snapshot bytes (`states`);
    /// at most `states::READ_PROBES_MAX`.
    read_probes: std::collections::BTreeSet<bytes::Bytes>,
    /// The workload commands sent through the log and not executed yet,
    /// by (session, sequence number): which client's how-manyth command
    /// each is, for [`Workload::took_effect`].
    effects: BTreeMap<(u64, u64), (u32, u64)>,
    client_dark_attempts: u64,
    reads_refused_not_member: u64,
    snapshots: SnapshotCounts,
    blocked: [u8; 8],
    healed: bool,
    safety: Safety,
    trace: TraceHash,
    faults: FaultCounts,
    failure: Option<Failure>,
    probe: Probe,
    acked: Vec<(Index, Term)>,
    actions: Vec<Action>,
    /// The inputs a step led to, kept between steps for its allocation
    /// (`None` while a step holds it; see `host::step`).
    work: Option<VecDeque<(Input, Option<Proposer>)>>,
    node_steps: u64,
    /// Messages handed to the network by every host (lost ones too): how
    /// the malformed fault sees whether a delivered message made a node
    /// send anything.
    messages_handed: u64,
    events: u64,
    operations: u64,
    operations_ok: u64,
    timeline: Option<Vec<TimelineEntry>>,
    finished: bool,
    nemesis: Nemesis,
    promises: Promises,
    /// The step rules' state (`crate::rules`).
    rules: Rules,
    budgets: Budgets,
    /// The expectations exceeded so far, the first time each.
    expectations: Vec<ExpectationExceeded>,
    /// Bumped at every change of the network's partitions.
    network_generation: u32,
    /// Elections and pre-elections started by each host, and transfers
    /// summed over the nodes, when the quiet period began.
    quiet_start: Option<(Vec<u64>, u64)>,
    /// The writes measured after the quiet period (`checks`), while
    /// under way.
    latency: Option<LatencyPhase>,
    /// The reads and the backlog after the latency writes (`calm`), while
    /// under way.
    calm: Option<CalmPhase>,
    /// The idle catch-up check after the calm phases (`catchup`), while
    /// under way.
    catch_up: Option<catchup::CatchUpCheck>,
    /// With `lease_skew_beyond_bound`: the cut-off leader whose clock runs
    /// slow, and its normal tick period, restored when the network heals.
    slowed_clock: Option<(usize, u64)>,
    /// The membership workload of this seed, if drawn.
    churn: Option<Churn>,
    /// The host built as a witness in this seed, if drawn (see
    /// `churn::draw_witness`).
    witness: Option<usize>,
    /// The host entries of this seed, if drawn (`book`).
    host_entries: Option<HostEntries>,
    /// The session-contract probes, when the seed drew them.
    probes: Option<ClientProbes>,
    /// The session table's promises, judged from the committed log (off
    /// in forced-recovery runs).
    session_model: Option<SessionModel>,
    /// The forced recovery of this seed, if drawn (`forced`).
    forced: Option<Forced>,
    /// The network skew of a split vote under way (`split`).
    split_route: Option<SplitRoute>,
    /// Messages, bytes and fsyncs spent so far (`crate::performance`;
    /// node steps are `node_steps`).
    spent: Cost,
    /// What had been spent, and when, as the quiet period began.
    idle_from: Option<(Cost, u64)>,
    /// What the quiet period cost, and how long it lasted.
    idle: Option<(Cost, u64)>,
    /// The lease nemeses (`lease`).
    lease: LeaseNemesis,
    /// The snapshot-conflict nemesis (`conflict`).
    conflict: ConflictNemesis,
    disk_loss: DiskLossNemesis,
    /// The latest time a message sent before the heal (delayed by the
    /// faults, up to seconds) may be delivered: until then the network is
    /// not calm, whatever the rates say (see `checks::end_rejoin_check`).
    chaos_deliveries_until_ns: u64,
    /// The same for leadership hand-overs (`TimeoutNow`) sent before the
    /// heal: one delivered late starts an election at its target in the
    /// quiet period (see `checks::end_quiet_period`).
    chaos_timeout_now_until_ns: u64,
    /// The highest commit index any node reached, for `read-fresh`
    /// (`fresh`).
    fresh: fresh::Freshness,
    /// The late catch-up nemesis (`late_catchup`).
    late_catch_ups: late_catchup::LateCatchUps,
    /// The on-disk state machines of this seed, if drawn (`ondisk`).
    durable: Option<DurableRun<S>>,
    /// Whether own snapshots of in-memory state machines are taken from a
    /// copy, serialised later (`snapshot_copy`).
    copy_snapshots: bool,
}

/// The random streams of a seed.
pub(crate) struct Streams {
    pub(crate) plan: ChaCha8Rng,
    net: ChaCha8Rng,
    disk: ChaCha8Rng,
    client: ChaCha8Rng,
    workload: ChaCha8Rng,
    node_seeds: Vec<u64>,
    node_options: NodeOptions,
    compaction: CompactionOptions,
    reads: ReadOptions,
}

impl Streams {
    pub(crate) fn new(seed: u64, nodes: usize) -> Streams {
        let mut master = ChaCha8Rng::seed_from_u64(seed);
        let node_seeds = (0..nodes).map(|_| master.gen()).collect();
        let node_options = NodeOptions::draw(&mut master);
        let stream = |number: u64| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(number);
            rng
        };
        Streams {
            plan: stream(1),
            net: stream(2),
            disk: stream(3),
            client: stream(4),
            workload: stream(5),
            node_seeds,
            node_options,
            // Its own stream, so the draws above do not change.
            compaction: CompactionOptions::draw(&mut stream(6)),
            reads: ReadOptions::draw(&mut stream(7)),
        }
    }
}

/// The plan a seed draws under `config` (what runs unless a plan is given).
pub fn plan_for(config: &SimConfig) -> FaultPlan {
    let mut streams = Streams::new(config.seed, config.nodes);
    FaultPlan::generate(
        &mut streams.plan,
        config.faults,
        config.swarm,
        PlanLimits {
            nodes: config.nodes,
            chaos_ns: config.chaos_ns,
            max_skew_ppm: config.max_skew_ppm,
        },
    )
}

impl<S: StateMachine, W: Workload> Simulation<S, W> {
    /// A simulation of `config`, with state machines made by `make_sm`
    /// (wrapped in sessions by the simulator) and clients driven by
    /// `workload`. With `plan` given, its faults replace the seed's draws.
    pub fn new(
        mut config: SimConfig,
        plan: Option<FaultPlan>,
        make_sm: impl FnMut(NodeId) -> S + 'static,
        workload: W,
    ) -> Result<Self, String> {
        config.validate()?;
        // Drawn here so that every table the run builds (at boot, restart
        // or recovery) has it, and the report's flags replay it.
        config.max_sessions = sessions::draw_capacity(&config);
        // What the session table promises (the planted bug builds every
        // table one session larger: `SimConfig::table_sessions`).
        let sessions_promised = config.max_sessions;
        let streams = Streams::new(config.seed, config.nodes);
        let plan = match plan {
            Some(plan) => {
                plan.validate(config.nodes)?;
                plan
            }
            None => plan_for(&config),
        };
        let mut make_sm: StateMachineFactory<S> = Box::new(make_sm);
        let durable = DurableRun::draw(&config);
        let copy_snapshots = snapshot_copy::draw(&config);
        let mut hosts = Vec::with_capacity(config.nodes);
        for index in 0..config.nodes {
            let id = index as NodeId + 1;
            let skew = plan.clock_skew_ppm.get(index).copied().unwrap_or(0);
            let tick_period_ns =
                ((config.tick_ns as i128 * (1_000_000 + skew as i128)) / 1_000_000).max(1) as u64;
            let tapped = replica::Tapped::new(make_sm(id), config.table_sessions());
            let sm = match &durable {
                Some(durable) => {
                    replica::Replica::Durable(Box::new(durable.new_state_machine(index, tapped)))
                }
                None => replica::Replica::Memory(tapped),
            };
            hosts.push(Host::fresh(id, sm, tick_period_ns));
        }
        let mut safety = Safety::new(config.nodes);
        if durable.is_some() {
            // The reference replica of the restart checks reads them.
            safety.keep_entries();
        }
        let clients = (0..config.clients)
            .map(|_| Client::new(config.nodes))
            .collect();
        let rates = plan.rates.clone();
        let plan_rates = plan.rates.clone();
        let config_vary = config.vary_node_options;
        let read_choice = config.reads;
        let mut churn = Churn::draw(&config);
        let forced = Forced::draw(
            &config,
            churn.is_some(),
            workload.supports_forced_recovery(),
        );
        if forced.is_some() {
            // Both change the membership; a seed runs one or the other.
            churn = None;
        }
        let witness = churn::draw_witness(&config, churn.as_ref());
        let host_entries = HostEntries::draw(&config);
        let probes = ClientProbes::draw(&config, forced.is_some());
        let session_model = forced
            .is_none()
            .then(|| SessionModel::new(sessions_promised));
        let (seed, nodes) = (config.seed, config.nodes);
        let mut simulation = Simulation {
            safety,
            timeline: if config.timeline {
                Some(Vec::new())
            } else {
                None
            },
            config,
            plan,
            odds: NetOdds::new(&rates),
            rates,
            now: 0,
            seq: 0,
            queue: EventQueue::new(),
            messages: Slab::new(),
            client_messages: Slab::new(),
            hosts,
            make_sm,
            clients,
            workload,
            net_rng: streams.net,
            disk_rng: streams.disk,
            client_rng: streams.client,
            workload_rng: streams.workload,
            node_seeds: streams.node_seeds,
            node_options: if config_vary {
                streams.node_options
            } else {
                NodeOptions::default()
            },
            compaction: streams.compaction,
            reads: ReadOptions::for_choice(read_choice, streams.reads),
            reads_served: [0; 3],
            snapshot_states: BTreeMap::new(),
            read_probes: std::collections::BTreeSet::new(),
            effects: BTreeMap::new(),
            client_dark_attempts: 0,
            reads_refused_not_member: 0,
            snapshots: SnapshotCounts::default(),
            blocked: [0; 8],
            healed: false,
            trace: TraceHash::new(),
            faults: FaultCounts::default(),
            failure: None,
            probe: Probe::default(),
            acked: Vec::new(),
            actions: Vec::new(),
            work: None,
            node_steps: 0,
            messages_handed: 0,
            events: 0,
            operations: 0,
            operations_ok: 0,
            finished: false,
            nemesis: Nemesis::new(seed),
            promises: Promises::new(nodes),
            rules: Rules::new(nodes),
            budgets: Budgets::new(nodes),
            expectations: Vec::new(),
            network_generation: 0,
            quiet_start: None,
            latency: None,
            calm: None,
            catch_up: None,
            slowed_clock: None,
            churn,
            witness,
            host_entries,
            forced,
            probes,
            session_model,
            split_route: None,
            spent: Cost::default(),
            idle_from: None,
            idle: None,
            lease: LeaseNemesis::new(seed),
            conflict: ConflictNemesis::new(seed),
            disk_loss: DiskLossNemesis::new(seed),
            chaos_deliveries_until_ns: 0,
            chaos_timeout_now_until_ns: 0,
            fresh: fresh::Freshness::default(),
            late_catch_ups: late_catchup::LateCatchUps::new(&plan_rates),
            durable,
            copy_snapshots,
        };
        simulation.start()?;
        Ok(simulation)
    }

    fn start(&mut self) -> Result<(), String> {
        let skewed = self
            .plan
            .clock_skew_ppm
            .iter()
            .filter(|skew| **skew != 0)
            .count();
        self.faults.add(FaultKind::Skew, skewed as u64);
        for index in 0..self.hosts.len() {
            if self.is_unstarted_spare(index) {
                continue;
            }
            self.boot(index)?;
        }
        for (index, event) in self.plan.events.iter().enumerate() {
            let at = event.at_ns.min(self.config.chaos_ns);
            self.seq += 1;
            let event = Event::Fault {
                index: index as u32,
            };
            self.queue.push(at, self.seq, event);
        }
        for client in 0..self.clients.len() {
            let delay = exponential(&mut self.client_rng, self.config.think_mean_ns);
            self.schedule(
                delay,
                Event::ClientWake {
                    client: client as u32,
                },
            );
        }
        self.schedule(self.config.chaos_ns, Event::Heal);
        if self.churn.is_some() {
            self.schedule(200 * MS, Event::Membership);
        }
        if self.host_entries.is_some() {
            self.schedule(100 * MS, Event::HostEntry);
        }
        if let Some(forced) = &self.forced {
            self.schedule(forced.lose_at_ns(), Event::Forced(ForcedStep::Lose));
        }
        self.schedule(
            self.config.chaos_ns + self.liveness_bound_ns(),
            Event::Deadline,
        );
        Ok(())
    }

    /// How long after the faults heal a write must commit. Without PreVote
    /// a voter whose log is behind still bumps the term each time its timer
    /// fires; if its clock also runs fastest, it campaigns in every term
    /// before an up-to-date candidate can, and that candidate wins only in
    /// a round where its randomized timeout undercuts the laggard's by more
    /// than their phase lag. The chance of such a round falls to zero as
    /// the ratio of tick periods nears the timeout range's 2: seed 7519
    /// (ratio 1.38) had no leader for between 20 and 40 s. Those runs get
    /// four times the bound; a cluster that never elects still fails.
    fn liveness_bound_ns(&self) -> u64 {
        let bound_ns = self.config.liveness_bound_ns;
        if self.node_options.pre_vote {
            return bound_ns;
        }
        let periods = self.hosts.iter().map(|host| host.tick_period_ns);
        let fastest_ns = periods.clone().min().unwrap_or(1).max(1);
        let slowest_ns = periods.max().unwrap_or(1);
        // Periods within 25 % of each other leave the timeouts' spread
        // most of its room; none of 10,000 seeds needed more there.
        if slowest_ns * 4 > fastest_ns * 5 {
            bound_ns.saturating_mul(4)
        } else {
            bound_ns
        }
    }

    fn schedule(&mut self, delay_ns: u64, event: Event) {
        self.seq += 1;
        self.queue
            .push(self.now.saturating_add(delay_ns), self.seq, event);
    }

    fn note(&mut self, node: Option<usize>, text: impl FnOnce() -> String) {
        if let Some(timeline) = self.timeline.as_mut() {
            timeline.push(TimelineEntry {
                time_ns: self.now,
                node: node.map(|index| index as NodeId + 1),
                text: text(),
            });
        }
    }

    fn fail(&mut self, kind: FailureKind, node: Option<usize>, message: String) {
        if self.failure.is_none() {
            let node = node.map(|index| index as NodeId + 1);
            self.note(None, || format!("FAILURE {kind}: {message}"));
            self.failure = Some(Failure {
                kind,
                time_ns: self.now,
                node,
                message,
            });
        }
    }

    /// The run went beyond a statistical budget: a failure (of its
    /// [`Expectation::strict_kind`]) with `strict_budgets`, else noted in the report (the
    /// first time for each expectation).
    fn exceed(&mut self, expectation: Expectation, node: Option<usize>, message: String) {
        if self.config.strict_budgets {
            self.fail(expectation.strict_kind(), node, message);
            return;
        }
        if self
            .expectations
            .iter()
            .any(|seen| seen.expectation == expectation)
        {
            return;
        }
        self.note(None, || {
            format!("EXPECTATION {} exceeded: {message}", expectation.name())
        });
        self.expectations.push(ExpectationExceeded {
            expectation,
            time_ns: self.now,
            message,
        });
    }

    /// Runs to the end (liveness satisfied, deadline, or first failure) and
    /// reports. Panics of the node are caught and reported as failures.
    pub fn run(self) -> RunReport {
        self.run_with_workload().0
    }

    /// [`Simulation::run`], also handing back the workload (with whatever
    /// it recorded, e.g. the client history).
    pub fn run_with_workload(mut self) -> (RunReport, W) {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.run_loop();
            self.finish();
        }));
        if let Err(panic) = outcome {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic with a non-string payload".to_string());
            self.failure = None;
            self.fail(FailureKind::Panic, None, message);
        }
        self.report()
    }

    fn report(self) -> (RunReport, W) {
        let committed = self.safety.committed_len();
        let pressured = self.config.max_sessions < self.config.clients;
        let (idle, idle_ns) = self.idle.unwrap_or_default();
        let performance = Performance {
            committed,
            total: self.cost(),
            idle,
            idle_ns,
        };
        let durable = self.durable_counts();
        let report = RunReport {
            config: self.config,
            plan: self.plan,
            node_options: self.node_options,
            compaction: self.compaction,
            reads: self.reads,
            reads_served: self.reads_served,
            client_dark_attempts: self.client_dark_attempts,
            reads_refused_not_member: self.reads_refused_not_member,
            snapshots: self.snapshots,
            trace_hash: self.trace.value(),
            node_steps: self.node_steps,
            events: self.events,
            simulated_ns: self.now,
            operations: self.operations,
            operations_ok: self.operations_ok,
            committed,
            faults: self.faults,
            efficiency: self.budgets.spent(),
            expectations: self.expectations,
            failure: self.failure,
            timeline: self.timeline.unwrap_or_default(),
            forced_recovery: self.forced.as_ref().map(|forced| forced.report().clone()),
            sessions: SessionCounts {
                probes_answered: self.probes.as_ref().map_or(0, |probes| probes.answered),
                evictions: self
                    .session_model
                    .as_ref()
                    .map_or(0, |model| model.evictions()),
                pressured_runs: u64::from(pressured),
            },
            durable,
            performance,
        };
        (report, self.workload)
    }

    /// Everything spent so far.
    fn cost(&self) -> Cost {
        Cost {
            node_steps: self.node_steps,
            ..self.spent
        }
    }

    fn run_loop(&mut self) {
        while let Some((time, event)) = self.queue.pop() {
            if self.failure.is_some() || self.finished {
                break;
            }
            self.now = time;
            self.events += 1;
            self.trace.word(time);
            self.trace.word(event.code());
            if self.node_steps > self.config.max_node_steps {
                let message = format!("more than {} node steps", self.config.max_node_steps);
                self.fail(FailureKind::EventBudget, None, message);
                break;
            }
            self.dispatch(event);
        }
    }

    fn dispatch(&mut self, event: Event) {
        match event {
            Event::Tick { node, incarnation } => {
                let index = node as usize;
                let host = &self.hosts[index];
                if host.incarnation != incarnation || host.node.is_none() {
                    return;
                }
                let period = host.tick_period_ns;
                self.schedule(period, Event::Tick { node, incarnation });
                if !self.hosts[index].paused {
                    self.step(index, Input::Tick, None);
                } else {
                    // The process is stopped, its clock is not: it sees
                    // these ticks when it resumes.
                    self.hosts[index].missed_ticks += 1;
                }
            }
            Event::Deliver { slot } => {
                let Some(message) = self.messages.take(slot) else {
                    return;
                };
                let nodes = self.hosts.len() as NodeId;
                if !(1..=nodes).contains(&message.to) || !(1..=nodes).contains(&message.from) {
                    return; // a message naming no node of the cluster goes nowhere
                }
                let to = message.to as usize - 1;
                let from = message.from as usize - 1;
                self.trace
                    .word(message.from | (message.to << 8) | (body_code(&message.body) << 16));
                self.trace.word(message.term);
                if self.blocked[from] & (1 << to) != 0 || self.is_fenced(message.from) {
                    return;
                }
                self.deliver(to, HostInput::Node(Input::Receive(message)));
            }
            Event::SnapshotSync { node, incarnation } => {
                let index = node as usize;
                if self.hosts[index].incarnation != incarnation || self.hosts[index].node.is_none()
                {
                    return;
                }
                if let Some(snapshot) = self.hosts[index].disk.sync_snapshot() {
                    self.trace.word(snapshot.position.index);
                    if !self.config.bugs.snapshot_reported_before_sync {
                        let meta = self.hosts[index].keep_snapshot_bytes(snapshot);
                        self.deliver(index, HostInput::Node(Input::Snapshotted(meta)));
                    }
                }
            }
            Event::DiskSync { node, incarnation } => {
                let index = node as usize;
                if self.hosts[index].incarnation != incarnation || self.hosts[index].node.is_none()
                {
                    return;
                }
                let Some(through) = self.hosts[index].disk.syncing_through else {
                    return;
                };
                if let Err(error) = self.hosts[index].disk.complete_sync(through) {
                    self.fail(FailureKind::HostContract, Some(index), error.0);
                    return;
                }
                self.trace.word(through.0);
                self.start_sync(index);
                if !self.config.bugs.persisted_before_sync {
                    self.deliver(index, HostInput::Node(Input::Persisted(through)));
                }
            }
            Event::ClientWake { client } => self.client_wake(client as usize),
            Event::ClientTimeout { client, attempt } => {
                self.client_timeout(client as usize, attempt)
            }
            Event::ClientResend { client, attempt } => {
                if self.clients[client as usize].attempt == attempt
                    && self.clients[client as usize].op.is_some()
                {
                    self.client_send(client as usize);
                }
            }
            Event::ToNode { slot } => {
                let Some(ClientMessage::Request {
                    client,
                    attempt,
                    node,
                    payload,
                    read,
                }) = self.client_messages.take(slot)
                else {
                    return;
                };
                self.trace
                    .word(u64::from(client) | (u64::from(attempt) << 20) | (u64::from(node) << 52));
                self.deliver(
                    node as usize,
                    HostInput::Request {
                        client,
                        attempt,
                        payload,
                        read,
                    },
                );
            }
            Event::ToClient { slot } => {
                let Some(ClientMessage::Reply {
                    client,
                    attempt,
                    reply,
                }) = self.client_messages.take(slot)
                else {
                    return;
                };
                self.trace
                    .word(u64::from(client) | (u64::from(attempt) << 20));
                self.client_reply(client as usize, attempt, reply);
            }
            Event::Fault { index } => {
                if self.healed {
                    return;
                }
                let fault = self.plan.events[index as usize].fault.clone();
                self.apply_fault(fault);
            }
            Event::Heal => {
                for index in 0..self.hosts.len() {
                    if let Some(node) = self.hosts[index].node.as_ref() {
                        let membership = node.membership().clone();
                        let (last, commit) = (node.last_position(), node.commit_index());
                        let recovery = node.storage_recovery();
                        self.note(Some(index), || {
                            let recovering = if recovery.is_recovering() {
                                format!(", storage {recovery:?}")
                            } else {
                                String::new()
                            };
                            format!("at the heal: last {last:?}, commit {commit}, {membership:?}{recovering}")
                        });
                    }
                }
                self.heal()
            }
            Event::DelayedRestart { node } => {
                if !self.healed {
                    self.restart(node as usize);
                }
            }
            Event::DelayedHealNetwork => {
                if !self.healed {
                    self.apply_fault(Fault::HealNetwork);
                }
            }
            Event::Probe => self.probe(),
            Event::Depose {
                node,
                incarnation,
                term,
            } => self.depose(node as usize, incarnation, term),
            Event::StepDownDeadline {
                node,
                incarnation,
                term,
                network,
                pauses,
                configuration,
            } => self.check_step_down(
                node as usize,
                incarnation,
                term,
                network,
                pauses,
                configuration,
            ),
            Event::QuietEnd => self.end_quiet_period(),
            Event::LatencyWrite => self.propose_latency_write(),
            Event::LatencyTimeout { write } => self.latency_timeout(write),
            Event::RejoinEnd {
                leader,
                follower,
                term,
            } => self.end_rejoin_check(leader as usize, follower as usize, term),
            Event::CalmReadsEnd { round } => self.end_read_round(round),
            Event::CalmReadsStart { round } => self.start_read_round(round),
            Event::BacklogPropose => self.propose_backlog(),
            Event::BacklogTimeout => self.backlog_timeout(),
            Event::CalmDone { leader, term } => self.start_catch_up_check(leader as usize, term),
            Event::CatchUpStart => self.catch_up_crash_when_idle(),
            Event::CatchUpPoll => self.catch_up_poll(),
            Event::Membership => self.membership_change(),
            Event::HostEntry => self.host_entry_tick(),
            Event::Forced(step) => self.forced_step(step),
            Event::Lease(step) => self.lease_step(step),
            Event::Conflict(step) => self.conflict_step(step),
            Event::DiskLoss(step) => self.disk_loss_step(step),
            Event::ReadView { node, incarnation } => self.read_view(node as usize, incarnation),
            Event::RestoreChunk { node, incarnation } => {
                self.restore_chunk(node as usize, incarnation)
            }
            Event::SerialiseCopy { node, incarnation } => {
                self.serialise_copy(node as usize, incarnation)
            }
            Event::Deadline => {
                if self.probe.satisfied {
                    // In the quiet period, which ends on its own.
                    return;
                }
                if self.probe.committed.is_none() {
                    if let Some(reason) = self.liveness_unowed() {
                        self.budgets.liveness_unowed();
                        self.note(None, || format!("liveness not owed: {reason}"));
                        self.finished = true;
                        return;
                    }
                }
                if !self.probe.satisfied {
                    let message = match self.probe.committed {
                        None => format!(
                            "no write committed within {} after faults healed (probes accepted: {:?})",
                            format_time(self.liveness_bound_ns()),
                            self.probe.accepted
                        ),
                        Some((index, at)) => match self.final_membership() {
                            None => format!(
                                "probe committed at index {index} at {} but no leader settled in a committed, non-joint configuration naming it a voter (leader: {:?})",
                                format_time(at),
                                self.current_leader().map(|leader| leader + 1)
                            ),
                            Some((_, membership)) => {
                                let lagging: Vec<String> = membership
                                    .voters
                                    .iter()
                                    .chain(membership.learners.iter())
                                    .filter_map(|id| {
                                        let host = self.hosts.get(*id as usize - 1)?;
                                        let applied =
                                            host.node.as_ref().map_or(0, Node::applied_index);
                                        (applied < index)
                                            .then(|| format!("n{} applied {applied}", host.id))
                                    })
                                    .collect();
                                let outsider = self
                                    .leader_outside(&membership)
                                    .map(|outsider| format!("; n{} outside it still leads", outsider + 1))
                                    .unwrap_or_default();
                                format!(
                                    "probe committed at index {index} at {} but not applied by every member of the final configuration {membership:?} in time: {}{outsider}",
                                    format_time(at),
                                    lagging.join(", ")
                                )
                            }
                        },
                    };
                    self.fail(FailureKind::Liveness, None, message);
                }
                self.finished = true;
            }
        }
    }

    // ----- the end -----

    fn finish(&mut self) {
        for client in 0..self.clients.len() {
            if self.clients[client]
                .op
                .as_ref()
                .is_some_and(|op| !op.register)
            {
                self.clients[client].op = None;
                self.workload.complete(client, self.now, OpResult::Unknown);
            }
        }
        if self.failure.is_none() {
            self.final_checks();
        }
        self.finish_forced();
        let report = self.workload.finish();
        if self.failure.is_none() {
            if let Some(message) = report.failure {
                self.workload_failed(message);
            }
        }
    }

    /// The workload's check failed now: under the workload's own kind, or
    /// a service's invariant for `--service` runs.
    fn workload_failed(&mut self, message: String) {
        match self.config.service {
            crate::services::Service::Builtin => {
                let kind = self.workload.failure_kind();
                self.fail(kind, None, message)
            }
            service => self.fail(
                FailureKind::ServiceInvariant,
                None,
                format!("service {}: {message}", service.name()),
            ),
        }
    }
}
