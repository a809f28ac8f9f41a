//! The fault model: which faults a run may inject, at what rates, and the
//! timed schedule of node and network faults.
//!
//! A run's faults come in two parts:
//!
//! * per-message and per-write faults (loss, duplication, reordering, long
//!   delays, fsync latency, torn writes), drawn while the run goes at the
//!   [`Rates`] of its plan;
//! * a [`FaultPlan::events`] schedule of timed faults (crash, restart,
//!   power loss of a majority, pause, resume, partitions, heal, and faults
//!   aimed at whichever node leads at that moment), fixed before the run
//!   starts.
//!
//! With swarm testing each seed first draws which [`FaultKind`]s are on
//! and at what rate, so that some seeds hammer one fault and others mix
//! them all. The plan of a seed can be printed, edited, shrunk, saved as
//! JSON, and replayed instead of the seed's own draws.

use std::fmt;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use concord::NodeId;

/// One kind of fault, switchable on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum FaultKind {
    /// Some messages take much longer than usual (a long-tailed delay).
    Delay,
    /// Messages are lost.
    Loss,
    /// Messages are delivered twice.
    Duplicate,
    /// Messages get extra random delay, so they overtake each other.
    Reorder,
    /// The cluster splits into two sides that cannot talk.
    Partition,
    /// Messages from one group to another are dropped, not the reverse.
    OneWay,
    /// Two sides cannot talk, except through one node that sees both.
    Bridge,
    /// A node crashes (losing memory and unsynced writes) and restarts later.
    Crash,
    /// A node stalls and later resumes with stale beliefs.
    Pause,
    /// fsync takes a random, sometimes long, time.
    Fsync,
    /// A crash leaves a torn final record that recovery must detect.
    Torn,
    /// Each node's clock ticks at its own, skewed rate.
    Skew,
    /// Leader churn: each new leader is deposed (crashed or cut off)
    /// within an election timeout, several times in a row, some right when
    /// its commit index moves with entries not yet on a majority (then
    /// every node holding unsynced writes crashes with it): logs diverge
    /// in several terms at once, the shape of Raft's Figure 8.
    Churn,
    /// A node crashes between granting a vote and that vote's fsync, and
    /// restarts at once.
    VoteCrash,
    /// A few messages are held back for seconds, across several terms.
    Stale,
    /// The leader is handed a message with a forged sender (itself, id 0,
    /// or a node outside every configuration) and a higher term: it must
    /// refuse it without a trace.
    Forge,
    /// A node is handed a self-contradictory message, or one it must refuse
    /// in its state ([`MalformedMessage`]): it must refuse it, count it in
    /// exactly the counter its [`concord::Statistics`] docs promise, give
    /// the answer the rule names (if any), and change nothing else.
    Malformed,
    /// Split vote: the leader crashes, and when the next campaign starts a
    /// second voter campaigns in the same step; the network hands every
    /// voter the first candidate's request first and the second's soon
    /// after, before the first can announce a win. A voter must grant one
    /// vote per term.
    SplitVote,
    /// Lease nemeses (`engine::lease`): a leader cut off from the other
    /// servers right after a quorum renewed its lease, while clients still
    /// reach it; the same with every clock at the declared drift bound; a
    /// leader paused between sending a heartbeat round and hearing its
    /// answers, past its lease; a leadership transfer with lease reads in
    /// flight; a transfer given up after the target may have campaigned.
    Lease,
    /// The snapshot-conflict nemesis (`engine::conflict`): a follower takes
    /// an uncommitted suffix of one term from a leader cut off with it, a
    /// new leader commits other entries there and compacts past them, then
    /// the follower gets the snapshot, with late copies of its chunks and,
    /// sometimes, a change of leader in the middle of the transfer.
    SnapshotConflict,
    /// Disk loss (`engine::disk_loss`): a server comes back with an empty
    /// disk (replaced), or with one that lost its last synced writes (its
    /// host notices and says so); and the aimed sequence that loses
    /// acknowledged writes if such a server votes at once: a follower cut
    /// off while writes commit, another follower's disk replaced, the
    /// leader cut off, the two left to elect. At most a minority of the
    /// voters is without its storage at once.
    DiskLoss,
}

impl FaultKind {
    /// Every kind, in a fixed order.
    pub const ALL: [FaultKind; 21] = [
        FaultKind::Delay,
        FaultKind::Loss,
        FaultKind::Duplicate,
        FaultKind::Reorder,
        FaultKind::Partition,
        FaultKind::OneWay,
        FaultKind::Bridge,
        FaultKind::Crash,
        FaultKind::Pause,
        FaultKind::Fsync,
        FaultKind::Torn,
        FaultKind::Skew,
        FaultKind::Churn,
        FaultKind::VoteCrash,
        FaultKind::Stale,
        FaultKind::Forge,
        FaultKind::Malformed,
        FaultKind::SplitVote,
        FaultKind::Lease,
        FaultKind::SnapshotConflict,
        FaultKind::DiskLoss,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Delay => "delay",
            FaultKind::Loss => "loss",
            FaultKind::Duplicate => "duplicate",
            FaultKind::Reorder => "reorder",
            FaultKind::Partition => "partition",
            FaultKind::OneWay => "one-way",
            FaultKind::Bridge => "bridge",
            FaultKind::Crash => "crash",
            FaultKind::Pause => "pause",
            FaultKind::Fsync => "fsync",
            FaultKind::Torn => "torn",
            FaultKind::Skew => "skew",
            FaultKind::Churn => "churn",
            FaultKind::VoteCrash => "vote-crash",
            FaultKind::Stale => "stale",
            FaultKind::Forge => "forged",
            FaultKind::Malformed => "malformed",
            FaultKind::SplitVote => "split-vote",
            FaultKind::Lease => "lease",
            FaultKind::SnapshotConflict => "snapshot-conflict",
            FaultKind::DiskLoss => "disk-loss",
        }
    }

    /// Parses a command-line name.
    pub fn from_name(name: &str) -> Option<FaultKind> {
        FaultKind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of fault kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FaultSet(u32);

impl FaultSet {
    /// No fault.
    pub const NONE: FaultSet = FaultSet(0);

    /// Every fault.
    pub fn all() -> FaultSet {
        FaultSet(
            FaultKind::ALL
                .iter()
                .fold(0, |bits, kind| bits | kind.bit()),
        )
    }

    /// Whether `kind` is in the set.
    pub fn contains(self, kind: FaultKind) -> bool {
        self.0 & kind.bit() != 0
    }

    /// The set with `kind` added.
    pub fn with(self, kind: FaultKind) -> FaultSet {
        FaultSet(self.0 | kind.bit())
    }

    /// The set with `kind` removed.
    pub fn without(self, kind: FaultKind) -> FaultSet {
        FaultSet(self.0 & !kind.bit())
    }

    /// The kinds in the set, in [`FaultKind::ALL`] order.
    pub fn kinds(self) -> impl Iterator<Item = FaultKind> {
        FaultKind::ALL
            .into_iter()
            .filter(move |kind| self.contains(*kind))
    }

    /// Parses a comma-separated list of names, or `all` / `none`.
    pub fn parse(list: &str) -> Result<FaultSet, String> {
        match list.trim() {
            "all" => return Ok(FaultSet::all()),
            "none" | "" => return Ok(FaultSet::NONE),
            _ => {}
        }
        let mut set = FaultSet::NONE;
        for name in list
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
        {
            match FaultKind::from_name(name) {
                Some(kind) => set = set.with(kind),
                None => {
                    let known: Vec<&str> = FaultKind::ALL.iter().map(|kind| kind.name()).collect();
                    return Err(format!(
                        "unknown fault {name:?}; known faults: {}, or all / none",
                        known.join(", ")
                    ));
                }
            }
        }
        Ok(set)
    }
}

impl fmt::Display for FaultSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == FaultSet::all() {
            return f.write_str("all");
        }
        if *self == FaultSet::NONE {
            return f.write_str("none");
        }
        let names: Vec<&str> = self.kinds().map(FaultKind::name).collect();
        f.write_str(&names.join(","))
    }
}

/// Rates of the faults drawn per message or per write. A rate of 0 turns
/// the fault off.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rates {
    /// Probability that a message is lost.
    pub loss: f64,
    /// Probability that a message is delivered twice.
    pub duplicate: f64,
    /// Probability that a message gets up to `reorder_max_ns` extra delay.
    pub reorder: f64,
    /// Extra delay bound for reordered messages, nanoseconds.
    pub reorder_max_ns: u64,
    /// Probability that a message falls in the long tail of the delay
    /// distribution.
    pub tail: f64,
    /// Mean of the (exponential) long-tail delay, nanoseconds.
    pub tail_mean_ns: u64,
    /// Upper bound of one fsync's latency, nanoseconds (the latency is
    /// uniform between a small floor and this).
    pub fsync_max_ns: u64,
    /// Probability that a crash tears the first unsynced record.
    pub torn: f64,
    /// Probability that a message is held back for seconds (across
    /// several terms).
    #[serde(default)]
    pub stale: f64,
    /// Upper bound of a held-back message's extra delay, nanoseconds (the
    /// delay is uniform between one second and this).
    #[serde(default)]
    pub stale_max_ns: u64,
}

impl Rates {
    /// No per-message or per-write fault.
    pub fn calm() -> Rates {
        Rates {
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_max_ns: 0,
            tail: 0.0,
            tail_mean_ns: 0,
            fsync_max_ns: 0,
            torn: 0.0,
            stale: 0.0,
            stale_max_ns: 0,
        }
    }
}

/// How the network is split.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Partition {
    /// `side` and the other nodes cannot talk (both directions).
    Split {
        /// One side; the rest is the other.
        side: Vec<NodeId>,
    },
    /// Messages from any of `from` to any of `to` are dropped; the other
    /// direction works.
    OneWay {
        /// Senders cut off.
        from: Vec<NodeId>,
        /// Receivers they cannot reach.
        to: Vec<NodeId>,
    },
    /// `left` and `right` cannot talk; `bridge` talks to both.
    Bridge {
        /// One side.
        left: Vec<NodeId>,
        /// The node that sees both sides.
        bridge: NodeId,
        /// The other side.
        right: Vec<NodeId>,
    },
}

impl Partition {
    /// The fault kind this partition belongs to.
    pub fn kind(&self) -> FaultKind {
        match self {
            Partition::Split { .. } => FaultKind::Partition,
            Partition::OneWay { .. } => FaultKind::OneWay,
            Partition::Bridge { .. } => FaultKind::Bridge,
        }
    }

    /// `blocked[from] & (1 << to)` set when messages from node index
    /// `from` to node index `to` are dropped (indices are node id - 1).
    pub fn blocked_matrix(&self, nodes: usize) -> [u8; 8] {
        let mut blocked = [0u8; 8];
        let bit = |id: NodeId| -> u8 {
            if id >= 1 && (id as usize) <= nodes && id <= 8 {
                1 << (id - 1)
            } else {
                0
            }
        };
        let mask = |ids: &[NodeId]| ids.iter().fold(0u8, |mask, id| mask | bit(*id));
        let everyone: u8 = if nodes >= 8 { 0xff } else { (1u8 << nodes) - 1 };
        let mut block = |from: u8, to: u8| {
            for (index, row) in blocked.iter_mut().enumerate().take(nodes.min(8)) {
                if from & (1 << index) != 0 {
                    *row |= to;
                }
            }
        };
        match self {
            Partition::Split { side } => {
                let side = mask(side);
                block(side, everyone & !side);
                block(everyone & !side, side);
            }
            Partition::OneWay { from, to } => block(mask(from), mask(to)),
            Partition::Bridge {
                left,
                bridge,
                right,
            } => {
                let left = mask(left) & !bit(*bridge);
                let right = mask(right) & !bit(*bridge);
                block(left, right);
                block(right, left);
            }
        }
        blocked
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Partition::Split { side } => write!(f, "split {side:?} | rest"),
            Partition::OneWay { from, to } => write!(f, "one-way {from:?} -/-> {to:?}"),
            Partition::Bridge {
                left,
                bridge,
                right,
            } => write!(f, "bridge {left:?} <- {bridge} -> {right:?}"),
        }
    }
}

/// A scheduled node or network fault.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fault {
    /// The node crashes: memory and unsynced writes are lost.
    Crash {
        /// The node.
        node: NodeId,
    },
    /// A crashed node restarts from its disk (no effect on a running node).
    Restart {
        /// The node.
        node: NodeId,
    },
    /// The node stops processing anything until resumed.
    Pause {
        /// The node.
        node: NodeId,
    },
    /// A paused node resumes and processes what queued up meanwhile.
    Resume {
        /// The node.
        node: NodeId,
    },
    /// The network splits (replacing any earlier split).
    Partition(Partition),
    /// Every link works again.
    HealNetwork,
    /// Whichever node is leader at that moment (highest term) crashes, and
    /// restarts `down_ns` later. No effect without a leader.
    CrashLeader {
        /// How long it stays down.
        down_ns: u64,
    },
    /// Whichever node is leader at that moment is cut off from all others
    /// (replacing any earlier split); the network heals `length_ns` later.
    IsolateLeader {
        /// How long the partition lasts.
        length_ns: u64,
    },
    /// Whichever node is leader at that moment is cut off together with
    /// the largest minority it can keep (the nodes after it in id order):
    /// it may keep replicating to them, but can commit nothing. The
    /// network heals `length_ns` later.
    IsolateLeaderWithMinority {
        /// How long the partition lasts.
        length_ns: u64,
    },
    /// Armed: the next time a leader appends entries (a client's command
    /// or its election no-op), it crashes before anything it just did
    /// reaches the network or the disk, and restarts `down_ns` later.
    CrashLeaderAfterAppend {
        /// How long it stays down.
        down_ns: u64,
    },
    /// Leader churn: the next `rounds` leaders are each deposed within
    /// `depose_within_ns` of their election, or at once if their commit
    /// index moves while later entries are not yet on a majority (then
    /// every node with unsynced writes crashes with it). A deposed leader
    /// is crashed (or cut off) for `down_ns`.
    LeaderChurn {
        /// Leaders to depose.
        rounds: u32,
        /// Each is deposed within this long after its election.
        depose_within_ns: u64,
        /// How long a deposed leader stays down or cut off.
        down_ns: u64,
    },
    /// Armed: the next node to vote for another crashes after handing
    /// the vote to its disk and before the vote's fsync completes, and
    /// restarts `down_ns` later (it loses the unsynced vote).
    CrashVoter {
        /// How long it stays down.
        down_ns: u64,
    },
    /// Whichever node is leader at that moment (and a voter of its own
    /// configuration, so its leader lease refuses strangers) is handed a
    /// heartbeat claiming to come from `sender`, `terms_ahead` terms ahead
    /// of its own. It must leave its term, vote and role as they were and
    /// send nothing. No effect without a leader.
    Forge {
        /// Who the message claims to come from.
        sender: ForgedSender,
        /// How far ahead of the leader's term the message's term is.
        terms_ahead: u64,
    },
    /// A node is handed `message`, self-contradictory or impossible from
    /// its sender: `pick` chooses among the nodes it fits (the leader, a
    /// follower with a leader, any node). It must move exactly the counter
    /// the message promises (or none), leave its role, term, vote, commit
    /// and log as they were, and do nothing but, for some kinds, send one
    /// answer. No effect when no node fits.
    Malformed {
        /// What is wrong with the message.
        message: MalformedMessage,
        /// Chooses the receiver among the nodes the message fits.
        pick: u32,
    },
    /// Whichever node is leader at that moment crashes and restarts
    /// `down_ns` later, and a split vote is armed: the next node to start
    /// a campaign (or pre-campaign) is joined in the same step by a second
    /// follower of the same term, whose timer the host runs to expiry, and
    /// for [`SPLIT_VOTE_WINDOW_NS`] the network hands every voter the first
    /// candidate's vote requests first and the second's
    /// [`SPLIT_VOTE_LAG_NS`] later, while the first candidate's other
    /// messages (and everything it sends the second) take
    /// [`SPLIT_VOTE_HOLD_NS`] longer.
    SplitVote {
        /// How long the leader stays down.
        down_ns: u64,
    },
    /// A lease nemesis ([`LeaseScenario`], `engine::lease`), aimed at
    /// whichever node leads when it strikes; everything it did is undone
    /// `length_ns` after it strikes (or at the heal).
    Lease {
        /// What it does.
        scenario: LeaseScenario,
        /// How long the partition (or pause) it causes lasts.
        length_ns: u64,
    },
    /// The snapshot-conflict nemesis (`engine::conflict`): the leader and
    /// one follower are cut off, the leader reaching only that follower,
    /// for `feed_ns`; then the leader loses what it did not sync (it
    /// crashes) and stays away while the others elect a leader that
    /// commits other entries and compacts past them; then the follower
    /// rejoins and gets the snapshot. With `late_chunks`, every chunk of
    /// that transfer is delivered again `late_ns` later (after the
    /// follower has moved on), and with `depose`, the leader sending the
    /// snapshot is cut off after its first chunk.
    SnapshotConflict {
        /// How long the cut-off leader feeds the follower.
        feed_ns: u64,
        /// Deliver a late copy of every chunk of the transfer.
        late_chunks: bool,
        /// How late.
        late_ns: u64,
        /// Cut off the sending leader after its first chunk.
        depose: bool,
    },
    /// The disk-loss fault ([`DiskLossScenario`], `engine::disk_loss`).
    DiskLoss {
        /// What it does.
        scenario: DiskLossScenario,
        /// How long the server stays down (and, aimed, how long the two
        /// left alone are given to elect).
        down_ns: u64,
    },
}

/// What a [`Fault::DiskLoss`] does (`engine::disk_loss`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DiskLossScenario {
    /// A running voter (not the leader) crashes and comes back with an
    /// empty disk, as after a disk replacement.
    Wipe,
    /// A running voter crashes and its disk loses its last synced
    /// entries, its term and its vote going back with them (a disk that
    /// lied about a sync, or a restored backup); its host notices and
    /// starts it recovering.
    RollBack,
    /// The sequence that loses acknowledged writes if a server with a new
    /// disk votes at once: a minority of followers is cut off while the
    /// leader commits writes with the others; one of those others crashes
    /// and comes back with an empty disk, cut off together with the
    /// lagging minority from everyone else (leader included), which would
    /// be a majority if its vote counted; after `down_ns` the network
    /// heals.
    Aimed,
}

impl DiskLossScenario {
    /// Every scenario, in drawing order.
    pub const ALL: [DiskLossScenario; 3] = [
        DiskLossScenario::Wipe,
        DiskLossScenario::RollBack,
        DiskLossScenario::Aimed,
    ];
}

impl fmt::Display for DiskLossScenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DiskLossScenario::Wipe => "a follower comes back with an empty disk",
            DiskLossScenario::RollBack => {
                "a follower comes back with a disk that lost its last synced writes"
            }
            DiskLossScenario::Aimed => {
                "a lagging minority and a follower with a new disk left alone to elect"
            }
        })
    }
}

/// What a [`Fault::Lease`] does (`engine::lease`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaseScenario {
    /// At the leader's next step that takes a heartbeat answer (a lease
    /// just renewed), cut it off from every other server; clients still
    /// reach it, and half of those waiting on it give up and go elsewhere.
    Isolate,
    /// Every clock runs at the edge of the declared drift bound (the
    /// leader's slowest, the others' fastest: `--max-skew-ppm` apart
    /// each way), then as [`LeaseScenario::Isolate`].
    SkewAtBound,
    /// Clocks at the drift bound as in [`LeaseScenario::SkewAtBound`];
    /// at the leader's next step that sends a heartbeat round, pause it
    /// (its answers queue up), then cut it off from the other servers; it
    /// resumes (missed ticks first) past its lease, short of an election
    /// timeout.
    PauseAtExpiry,
    /// The host asks the leader to hand leadership to a caught-up voter;
    /// once it sends the target TimeoutNow, it hears no other server
    /// (one-way), while clients still reach it.
    Transfer,
    /// As [`LeaseScenario::Transfer`], but only the target goes unheard,
    /// and the target's vote requests are held back until the leader has
    /// given the transfer up and a quorum answered a heartbeat round sent
    /// after; the leader is then cut off from every other server.
    TransferGivenUp,
    /// As [`LeaseScenario::TransferGivenUp`], with the transfer retried
    /// (to another caught-up voter when there is one) once the first is
    /// given up, and given up again, while the nemesis reads at the leader
    /// on the lease path throughout.
    TransferRetried,
    /// The leader cut off from a minority of the followers (who can then
    /// elect a leader with one more vote); a tick or two short of their
    /// election timeout, another follower is crashed right after it answers
    /// the leader's heartbeat and restarted one to three ticks later, and
    /// the leader is cut off from every server: the restarted follower
    /// must keep refusing votes for the rest of its promise.
    RestartAfterAnswer,
    /// The leader's next read-index answer to a follower is held in the
    /// network for a few milliseconds while the leader commits a write,
    /// and the nemesis reads at that follower throughout and right after
    /// the answer arrives (forwarded reads).
    ForwardedAnswerHeld,
}

impl LeaseScenario {
    /// Every scenario, in drawing order.
    pub const ALL: [LeaseScenario; 8] = [
        LeaseScenario::Isolate,
        LeaseScenario::SkewAtBound,
        LeaseScenario::PauseAtExpiry,
        LeaseScenario::Transfer,
        LeaseScenario::TransferGivenUp,
        LeaseScenario::TransferRetried,
        LeaseScenario::RestartAfterAnswer,
        LeaseScenario::ForwardedAnswerHeld,
    ];
}

impl fmt::Display for LeaseScenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LeaseScenario::Isolate => "cut the leader off right after its lease is renewed",
            LeaseScenario::SkewAtBound => {
                "clocks at the drift bound, then cut the leader off right after its lease is renewed"
            }
            LeaseScenario::PauseAtExpiry => {
                "pause the leader between a heartbeat round and its answers"
            }
            LeaseScenario::Transfer => "transfer leadership with lease reads in flight",
            LeaseScenario::TransferGivenUp => {
                "transfer leadership, hold the target's campaign until the leader gave up"
            }
            LeaseScenario::TransferRetried => {
                "transfer leadership, give it up, retry and give it up again, lease reads throughout"
            }
            LeaseScenario::RestartAfterAnswer => {
                "restart a follower right after it answers the leader's heartbeat"
            }
            LeaseScenario::ForwardedAnswerHeld => {
                "hold a read-index answer to a follower while a write commits"
            }
        })
    }
}

/// The messages of [`Fault::Malformed`]: self-contradictory ones, and
/// well-formed ones a node must refuse in its state (a stale vote request,
/// a pre-vote it may not grant), each with the [`concord::Statistics`]
/// counter it must move and, for some, the one answer it must get.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MalformedMessage {
    /// The leader hears a heartbeat from a peer in its own term (a second
    /// leader in one term): `messages_malformed`.
    LeaderHearsLeader,
    /// A message from a peer with a term beyond any a node accepts:
    /// `messages_malformed`.
    TermBeyondMax,
    /// A follower's leader sends entries with a gap: `messages_malformed`.
    EntriesNotContiguous,
    /// A follower's leader sends an entry of a term above the message's:
    /// `messages_malformed`.
    EntryTermAboveMessage,
    /// A peer tells the leader it holds an entry past the leader's log:
    /// `messages_index_out_of_range`.
    AcceptedBeyondLog,
    /// A peer refuses an entry past the leader's log:
    /// `messages_index_out_of_range`.
    RejectedBeyondLog,
    /// A follower's leader appends after an entry past the follower's log:
    /// `messages_index_out_of_range` (answered with a refusal).
    PrevBeyondLog,
    /// A follower's leader appends after the follower's last (uncommitted)
    /// entry with another term: an ordinary mismatch, counted nowhere
    /// (answered with a refusal).
    PrevAtLastMismatched,
    /// A follower's leader appends after a committed entry with another
    /// term: `append_conflicts_with_commit`.
    ContradictsCommit,
    /// A node outside every configuration, with an empty log, asks for a
    /// vote: `vote_requests_from_removed` (answered with `Removed`).
    VoteFromRemoved,
    /// A message addressed to another node: `messages_misaddressed`.
    Misaddressed,
    /// A voter peer asks for a vote in a term below the node's:
    /// `messages_stale_term`, answered with exactly one refusal carrying
    /// the node's term, so a candidate behind learns it (§5.1).
    StaleVoteRequest,
    /// A voter peer asks for a pre-vote in the node's own term while the
    /// node has voted for another or knows a leader: counted nowhere,
    /// answered with exactly one refusal (a pre-vote is grantable past a
    /// vote or a leader only for a term above the voter's own).
    PreVoteInOwnTerm,
    /// A follower that knows its leader hears a heartbeat from another
    /// peer in the same term (a second leader in one term):
    /// `messages_malformed`, no answer.
    SecondLeader,
    /// A follower's leader appends after an entry below the follower's
    /// commit index, with an entry at the commit index in another term
    /// than the committed one: `append_conflicts_with_commit`, no answer.
    EntryContradictsCommit,
    /// A node the committed configuration no longer names (a removed
    /// member the node still knows) answers in a newer term:
    /// `answers_from_removed`, no answer, the term kept.
    AnswerFromRemoved,
    /// The same answer in the node's own term: not an answer from a
    /// removed node to count (that counter is for newer terms), and
    /// nothing to act on: counted nowhere, no answer.
    AnswerFromRemovedSameTerm,
    /// A follower the leader probes acknowledges exactly the match index
    /// the leader knows (a probe's answer where the logs already agree):
    /// counted nowhere, and the leader starts streaming to it (its
    /// progress leaves the probe state, the match index kept).
    ProbeAnsweredAtMatch,
    /// A streaming follower acknowledges its known match index again (a
    /// late duplicate): counted nowhere,
    /// and the leader does nothing: it sends nothing and keeps the
    /// follower's match, next index and state.
    DuplicateAcknowledgement,
    /// A follower the leader probes refuses the outstanding probe with a
    /// hint of unknown term (`hint_term` 0) between its match index and
    /// the probe: counted nowhere, and the leader's next probe starts
    /// right after the hint (`next_index` = hint + 1; a refusal costs one
    /// round trip per hint, not per entry).
    ProbeRefusedWithHint,
    /// A follower's leader appends after an entry the follower compacted
    /// into its snapshot (below its commit index, so it agrees): counted
    /// nowhere, answered (with an acknowledgement), nothing changed.
    AppendBelowBase,
}

impl MalformedMessage {
    /// Whether the kind is an acknowledgement or refusal of a leader's
    /// append that the leader must act on (not refuse): it is delivered
    /// through the host's whole step and judged by the follower's progress.
    pub fn is_acknowledgement(self) -> bool {
        matches!(
            self,
            MalformedMessage::ProbeAnsweredAtMatch
                | MalformedMessage::DuplicateAcknowledgement
                | MalformedMessage::ProbeRefusedWithHint
        )
    }

    /// Every kind, in drawing order.
    pub const ALL: [MalformedMessage; 21] = [
        MalformedMessage::LeaderHearsLeader,
        MalformedMessage::TermBeyondMax,
        MalformedMessage::EntriesNotContiguous,
        MalformedMessage::EntryTermAboveMessage,
        MalformedMessage::AcceptedBeyondLog,
        MalformedMessage::RejectedBeyondLog,
        MalformedMessage::PrevBeyondLog,
        MalformedMessage::PrevAtLastMismatched,
        MalformedMessage::ContradictsCommit,
        MalformedMessage::VoteFromRemoved,
        MalformedMessage::Misaddressed,
        MalformedMessage::StaleVoteRequest,
        MalformedMessage::PreVoteInOwnTerm,
        MalformedMessage::SecondLeader,
        MalformedMessage::EntryContradictsCommit,
        MalformedMessage::AnswerFromRemoved,
        MalformedMessage::AnswerFromRemovedSameTerm,
        MalformedMessage::ProbeAnsweredAtMatch,
        MalformedMessage::DuplicateAcknowledgement,
        MalformedMessage::ProbeRefusedWithHint,
        MalformedMessage::AppendBelowBase,
    ];
}

impl fmt::Display for MalformedMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MalformedMessage::LeaderHearsLeader => {
                "a heartbeat from a peer in the leader's own term"
            }
            MalformedMessage::TermBeyondMax => "a message with a term beyond the largest accepted",
            MalformedMessage::EntriesNotContiguous => "an append whose entries have a gap",
            MalformedMessage::EntryTermAboveMessage => {
                "an append with an entry of a term above the message's"
            }
            MalformedMessage::AcceptedBeyondLog => {
                "an append acknowledgement past the leader's last index"
            }
            MalformedMessage::RejectedBeyondLog => "an append refusal past the leader's last index",
            MalformedMessage::PrevBeyondLog => "an append after an index past the follower's log",
            MalformedMessage::PrevAtLastMismatched => {
                "an append after the follower's last entry with another term"
            }
            MalformedMessage::ContradictsCommit => {
                "an append after a committed entry with another term"
            }
            MalformedMessage::VoteFromRemoved => {
                "a vote request from a node outside the configuration"
            }
            MalformedMessage::Misaddressed => "a message addressed to another node",
            MalformedMessage::StaleVoteRequest => "a vote request of an older term",
            MalformedMessage::PreVoteInOwnTerm => {
                "a pre-vote request in the voter's own term after it voted or heard a leader"
            }
            MalformedMessage::SecondLeader => {
                "a heartbeat from a second leader in the follower's term"
            }
            MalformedMessage::EntryContradictsCommit => {
                "an append with an entry contradicting the follower's committed log"
            }
            MalformedMessage::AnswerFromRemoved => {
                "an answer of a newer term from a removed member"
            }
            MalformedMessage::AnswerFromRemovedSameTerm => {
                "an answer of the node's own term from a removed member"
            }
            MalformedMessage::ProbeAnsweredAtMatch => {
                "a probed follower's acknowledgement of the known match index"
            }
            MalformedMessage::DuplicateAcknowledgement => {
                "a streaming follower's duplicate acknowledgement"
            }
            MalformedMessage::ProbeRefusedWithHint => {
                "a probed follower's refusal with a hint of unknown term"
            }
            MalformedMessage::AppendBelowBase => {
                "an append after an entry the follower compacted into its snapshot"
            }
        })
    }
}

/// How long a split vote ([`Fault::SplitVote`]) skews the network: long
/// enough for both candidates' pre-votes and votes to be answered.
pub const SPLIT_VOTE_WINDOW_NS: u64 = 40_000_000;

/// How much later the second candidate's messages arrive during a split
/// vote: above the base delay's spread (0.1 to 1 ms), so every voter hears
/// the first candidate's request first.
pub const SPLIT_VOTE_LAG_NS: u64 = 2_000_000;

/// A voter's fsync latency during a split vote: the second candidate's
/// request (at most about 7 ms after the first's with PreVote) arrives
/// while the voter's vote for the first is not yet durable.
pub const SPLIT_VOTE_SYNC_NS: u64 = 12_000_000;

/// How much longer the first candidate's messages other than its vote
/// requests (and all it sends the second candidate) take during a split
/// vote: well past the second candidate's requests (two lags and two base
/// delays with PreVote, under 7 ms), so voters hear both requests before
/// they learn of a winner, and the second candidate does not hear the
/// first one's request before its own campaign has started.
pub const SPLIT_VOTE_HOLD_NS: u64 = 20_000_000;

/// The sender a forged message claims ([`Fault::Forge`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ForgedSender {
    /// The receiving node itself.
    Itself,
    /// Id 0, which names no node.
    Zero,
    /// A node id no configuration of the run names.
    Outside,
}

/// The id a forged message from outside every configuration claims: above
/// any id the simulator gives a node (at most 7 nodes).
pub const FORGED_OUTSIDE_ID: NodeId = 1_000;

impl fmt::Display for ForgedSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForgedSender::Itself => f.write_str("itself"),
            ForgedSender::Zero => f.write_str("id 0"),
            ForgedSender::Outside => write!(f, "outsider n{FORGED_OUTSIDE_ID}"),
        }
    }
}

impl Fault {
    /// The fault kind, for counting; `None` for repairs.
    pub fn kind(&self) -> Option<FaultKind> {
        match self {
            Fault::Crash { .. } | Fault::CrashLeader { .. } => Some(FaultKind::Crash),
            Fault::IsolateLeader { .. } | Fault::IsolateLeaderWithMinority { .. } => {
                Some(FaultKind::Partition)
            }
            Fault::CrashLeaderAfterAppend { .. } => Some(FaultKind::Crash),
            Fault::LeaderChurn { .. } => Some(FaultKind::Churn),
            Fault::CrashVoter { .. } => Some(FaultKind::VoteCrash),
            Fault::Forge { .. } => Some(FaultKind::Forge),
            Fault::Malformed { .. } => Some(FaultKind::Malformed),
            Fault::SplitVote { .. } => Some(FaultKind::SplitVote),
            Fault::Lease { .. } => Some(FaultKind::Lease),
            Fault::SnapshotConflict { .. } => Some(FaultKind::SnapshotConflict),
            Fault::DiskLoss { .. } => Some(FaultKind::DiskLoss),
            Fault::Pause { .. } => Some(FaultKind::Pause),
            Fault::Partition(partition) => Some(partition.kind()),
            Fault::Restart { .. } | Fault::Resume { .. } | Fault::HealNetwork => None,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Crash { node } => write!(f, "crash n{node}"),
            Fault::Restart { node } => write!(f, "restart n{node}"),
            Fault::Pause { node } => write!(f, "pause n{node}"),
            Fault::Resume { node } => write!(f, "resume n{node}"),
            Fault::Partition(partition) => write!(f, "partition: {partition}"),
            Fault::HealNetwork => write!(f, "heal network"),
            Fault::CrashLeader { down_ns } => {
                write!(f, "crash the leader for {} ms", down_ns / 1_000_000)
            }
            Fault::IsolateLeader { length_ns } => {
                write!(f, "isolate the leader for {} ms", length_ns / 1_000_000)
            }
            Fault::IsolateLeaderWithMinority { length_ns } => write!(
                f,
                "cut the leader off with a minority for {} ms",
                length_ns / 1_000_000
            ),
            Fault::CrashLeaderAfterAppend { down_ns } => write!(
                f,
                "crash the next leader to append, for {} ms",
                down_ns / 1_000_000
            ),
            Fault::LeaderChurn {
                rounds,
                depose_within_ns,
                down_ns,
            } => write!(
                f,
                "leader churn: depose {rounds} leaders within {} ms each, for {} ms",
                depose_within_ns / 1_000_000,
                down_ns / 1_000_000
            ),
            Fault::CrashVoter { down_ns } => write!(
                f,
                "crash the next voter before its vote's fsync, for {} ms",
                down_ns / 1_000_000
            ),
            Fault::Forge {
                sender,
                terms_ahead,
            } => write!(
                f,
                "hand the leader a heartbeat from {sender}, {terms_ahead} terms ahead"
            ),
            Fault::Malformed { message, pick } => {
                write!(f, "hand a node {message} (pick {pick})")
            }
            Fault::SplitVote { down_ns } => write!(
                f,
                "crash the leader for {} ms and split the next vote between two candidates",
                down_ns / 1_000_000
            ),
            Fault::Lease {
                scenario,
                length_ns,
            } => write!(f, "lease: {scenario}, for {} ms", length_ns / 1_000_000),
            Fault::DiskLoss { scenario, down_ns } => {
                write!(f, "disk loss: {scenario}, for {} ms", down_ns / 1_000_000)
            }
            Fault::SnapshotConflict {
                feed_ns,
                late_chunks,
                late_ns,
                depose,
            } => {
                write!(
                    f,
                    "snapshot conflict: a cut-off leader feeds one follower for {} ms",
                    feed_ns / 1_000_000
                )?;
                if *late_chunks {
                    write!(f, ", chunks again {} ms late", late_ns / 1_000_000)?;
                }
                if *depose {
                    write!(f, ", the sender cut off after its first chunk")?;
                }
                Ok(())
            }
        }
    }
}

/// A schedule over `0..chaos_ns`: a mean gap drawn from `mean_gap_ms`
/// milliseconds, then faults at exponentially distributed gaps (at least
/// 1 ms), each drawn by `draw`, which also says how long the fault keeps
/// its target busy (added to the gap before the next).
fn draw_schedule(
    rng: &mut ChaCha8Rng,
    chaos_ns: u64,
    mean_gap_ms: std::ops::Range<u64>,
    mut draw: impl FnMut(&mut ChaCha8Rng) -> (Fault, u64),
) -> Vec<TimedFault> {
    let ms = 1_000_000u64;
    let mean_gap_ns = rng.gen_range(mean_gap_ms.start * ms..mean_gap_ms.end * ms);
    let mut events = Vec::new();
    let mut at = exponential(rng, mean_gap_ns);
    while at < chaos_ns {
        let (fault, busy_ns) = draw(rng);
        events.push(TimedFault { at_ns: at, fault });
        at += busy_ns + exponential(rng, mean_gap_ns).max(ms);
    }
    events
}

/// The forged-sender schedule of a plan ([`Fault::Forge`]): every few
/// hundred milliseconds to seconds of `0..chaos_ns`, a heartbeat from
/// one of the three forged senders, 1 to 3 terms ahead.
fn draw_forgeries(rng: &mut ChaCha8Rng, chaos_ns: u64) -> Vec<TimedFault> {
    draw_schedule(rng, chaos_ns, 100..2_000, |rng| {
        let sender = match rng.gen_range(0..3) {
            0 => ForgedSender::Itself,
            1 => ForgedSender::Zero,
            _ => ForgedSender::Outside,
        };
        let terms_ahead = rng.gen_range(1..=3);
        let fault = Fault::Forge {
            sender,
            terms_ahead,
        };
        (fault, 0)
    })
}

/// The malformed-message schedule of a plan ([`Fault::Malformed`]): every
/// 50 ms to a second on average of `0..chaos_ns`, one of the kinds,
/// handed to a node it fits.
fn draw_malformed(rng: &mut ChaCha8Rng, chaos_ns: u64) -> Vec<TimedFault> {
    draw_schedule(rng, chaos_ns, 50..1_000, |rng| {
        let message = MalformedMessage::ALL[rng.gen_range(0..MalformedMessage::ALL.len())];
        let fault = Fault::Malformed {
            message,
            pick: rng.gen(),
        };
        (fault, 0)
    })
}

/// The split-vote schedule of a plan ([`Fault::SplitVote`]): every few
/// hundred milliseconds to seconds of `0..chaos_ns`, the leader crashes
/// for 20 to 400 ms and the next campaign gets a rival.
fn draw_split_votes(rng: &mut ChaCha8Rng, chaos_ns: u64) -> Vec<TimedFault> {
    draw_schedule(rng, chaos_ns, 300..2_000, |rng| {
        let down_ns = rng.gen_range(20_000_000..400_000_000);
        (Fault::SplitVote { down_ns }, down_ns)
    })
}

/// The lease schedule of a plan ([`Fault::Lease`]): every 100 ms to a
/// second on average of `0..chaos_ns`, one of the scenarios, undone 100
/// to 400 ms after it strikes.
fn draw_lease(rng: &mut ChaCha8Rng, chaos_ns: u64) -> Vec<TimedFault> {
    draw_schedule(rng, chaos_ns, 100..1_000, |rng| {
        let scenario = LeaseScenario::ALL[rng.gen_range(0..LeaseScenario::ALL.len())];
        let length_ns = rng.gen_range(100_000_000..400_000_000);
        // Busy until it has struck and healed, give or take.
        (
            Fault::Lease {
                scenario,
                length_ns,
            },
            length_ns + 200_000_000,
        )
    })
}

/// The snapshot-conflict schedule of a plan ([`Fault::SnapshotConflict`]):
/// one every couple of seconds of `0..chaos_ns`.
fn draw_snapshot_conflicts(rng: &mut ChaCha8Rng, chaos_ns: u64) -> Vec<TimedFault> {
    draw_schedule(rng, chaos_ns, 500..3_000, |rng| {
        let feed_ns = rng.gen_range(30_000_000..400_000_000);
        let late_chunks = rng.gen_bool(0.5);
        let late_ns = rng.gen_range(20_000_000..300_000_000);
        let depose = rng.gen_bool(0.3);
        (
            Fault::SnapshotConflict {
                feed_ns,
                late_chunks,
                late_ns,
                depose,
            },
            feed_ns + 1_500_000_000,
        )
    })
}

/// The disk-loss schedule of a plan ([`Fault::DiskLoss`]): one every
/// couple of seconds of `0..chaos_ns`, the aimed sequence half the time.
fn draw_disk_losses(rng: &mut ChaCha8Rng, chaos_ns: u64) -> Vec<TimedFault> {
    draw_schedule(rng, chaos_ns, 800..3_000, |rng| {
        let scenario = if rng.gen_bool(0.5) {
            DiskLossScenario::Aimed
        } else if rng.gen_bool(0.5) {
            DiskLossScenario::Wipe
        } else {
            DiskLossScenario::RollBack
        };
        let down_ns = rng.gen_range(100_000_000..1_500_000_000);
        (
            Fault::DiskLoss { scenario, down_ns },
            down_ns + 1_000_000_000,
        )
    })
}

/// A fault at a virtual time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimedFault {
    /// Virtual time, nanoseconds since the start of the run.
    pub at_ns: u64,
    /// The fault.
    pub fault: Fault,
}

/// Everything about a run's faults: rates, clock skews and the schedule.
/// Drawn from the seed by [`FaultPlan::generate`], or given explicitly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultPlan {
    /// Per-message and per-write fault rates.
    pub rates: Rates,
    /// Per node (index = id - 1): tick period skew in parts per million
    /// (+100000 = ticks 10% slower). Missing entries mean 0.
    pub clock_skew_ppm: Vec<i64>,
    /// The schedule, sorted by time.
    pub events: Vec<TimedFault>,
}

/// Bounds used to draw a plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanLimits {
    /// Nodes in the cluster.
    pub nodes: usize,
    /// Faults are scheduled in `0..chaos_ns`.
    pub chaos_ns: u64,
    /// Largest clock skew, parts per million.
    pub max_skew_ppm: i64,
}

impl FaultPlan {
    /// A plan without any fault.
    pub fn calm(nodes: usize) -> FaultPlan {
        FaultPlan {
            rates: Rates::calm(),
            clock_skew_ppm: vec![0; nodes],
            events: Vec::new(),
        }
    }

    /// Draws a plan. With `swarm`, each kind in `allowed` is switched on
    /// with probability 1/2 (at least one stays on when any is allowed);
    /// without, every allowed kind is on. Rates are drawn per plan.
    pub fn generate(
        rng: &mut ChaCha8Rng,
        allowed: FaultSet,
        swarm: bool,
        limits: PlanLimits,
    ) -> FaultPlan {
        // Forged senders are drawn last, after everything else, so that
        // adding them left every other draw of a seed (and its plan) as it
        // was.
        let others = allowed
            .without(FaultKind::Forge)
            .without(FaultKind::Malformed)
            .without(FaultKind::SplitVote)
            .without(FaultKind::Lease)
            .without(FaultKind::SnapshotConflict)
            .without(FaultKind::DiskLoss);
        let mut enabled = FaultSet::NONE;
        for kind in others.kinds() {
            if !swarm || rng.gen_bool(0.5) {
                enabled = enabled.with(kind);
            }
        }
        if swarm && enabled == FaultSet::NONE {
            if let Some(kind) = others
                .kinds()
                .nth(rng.gen_range(0..others.kinds().count().max(1)))
            {
                enabled = enabled.with(kind);
            }
        }
        let mut plan = Self::generate_enabled(rng, enabled, limits);
        let forge = allowed.contains(FaultKind::Forge)
            && (others == FaultSet::NONE || !swarm || rng.gen_bool(0.5));
        if forge {
            plan.events.extend(draw_forgeries(rng, limits.chaos_ns));
            plan.events.sort_by_key(|event| event.at_ns);
        }
        // Malformed messages are drawn after the forgeries, for the same
        // reason.
        let malformed = allowed.contains(FaultKind::Malformed)
            && (others == FaultSet::NONE || !swarm || rng.gen_bool(0.5));
        if malformed {
            plan.events.extend(draw_malformed(rng, limits.chaos_ns));
            plan.events.sort_by_key(|event| event.at_ns);
        }
        // Split votes likewise come after the forgeries.
        let split = allowed.contains(FaultKind::SplitVote)
            && limits.nodes > 2
            && (!swarm || rng.gen_bool(0.5));
        if split {
            plan.events.extend(draw_split_votes(rng, limits.chaos_ns));
            plan.events.sort_by_key(|event| event.at_ns);
        }
        // The lease and snapshot-conflict nemeses come last of all, so a
        // seed that draws neither runs as it did before they existed.
        let lease =
            allowed.contains(FaultKind::Lease) && limits.nodes > 2 && (!swarm || rng.gen_bool(0.5));
        if lease {
            plan.events.extend(draw_lease(rng, limits.chaos_ns));
            plan.events.sort_by_key(|event| event.at_ns);
        }
        let conflict = allowed.contains(FaultKind::SnapshotConflict)
            && limits.nodes > 2
            && (!swarm || rng.gen_bool(0.5));
        if conflict {
            plan.events
                .extend(draw_snapshot_conflicts(rng, limits.chaos_ns));
            plan.events.sort_by_key(|event| event.at_ns);
        }
        // Disk loss after them, for the same reason.
        let disk_loss = allowed.contains(FaultKind::DiskLoss)
            && limits.nodes > 2
            && (!swarm || rng.gen_bool(0.5));
        if disk_loss {
            plan.events.extend(draw_disk_losses(rng, limits.chaos_ns));
            plan.events.sort_by_key(|event| event.at_ns);
        }
        plan
    }

    /// Draws rates, skews and a schedule using exactly the kinds in
    /// `enabled`.
    pub fn generate_enabled(
        rng: &mut ChaCha8Rng,
        enabled: FaultSet,
        limits: PlanLimits,
    ) -> FaultPlan {
        let nodes = limits.nodes.max(1);
        let on = |kind| enabled.contains(kind);
        let mut rates = Rates::calm();
        // Draw every rate whether or not it is used, so that switching one
        // kind off does not shift the draws of the others.
        let loss = rng.gen_range(0.001..0.15);
        let duplicate = rng.gen_range(0.001..0.10);
        let reorder = rng.gen_range(0.01..0.3);
        let reorder_max_ns = rng.gen_range(1_000_000..30_000_000);
        let tail = rng.gen_range(0.001..0.05);
        let tail_mean_ns = rng.gen_range(20_000_000..500_000_000);
        let fsync_max_ns = rng.gen_range(500_000..40_000_000);
        let torn = rng.gen_range(0.3..1.0);
        if on(FaultKind::Loss) {
            rates.loss = loss;
        }
        if on(FaultKind::Duplicate) {
            rates.duplicate = duplicate;
        }
        if on(FaultKind::Reorder) {
            rates.reorder = reorder;
            rates.reorder_max_ns = reorder_max_ns;
        }
        if on(FaultKind::Delay) {
            rates.tail = tail;
            rates.tail_mean_ns = tail_mean_ns;
        }
        if on(FaultKind::Fsync) {
            rates.fsync_max_ns = fsync_max_ns;
        }
        if on(FaultKind::Torn) {
            rates.torn = torn;
        }
        let mut clock_skew_ppm = vec![0i64; nodes];
        for skew in clock_skew_ppm.iter_mut() {
            let drawn = if limits.max_skew_ppm > 0 {
                rng.gen_range(-limits.max_skew_ppm..=limits.max_skew_ppm)
            } else {
                0
            };
            if on(FaultKind::Skew) {
                *skew = drawn;
            }
        }

        let mut events = Vec::new();
        let chaos_ns = limits.chaos_ns;
        let ms = 1_000_000u64;
        if on(FaultKind::Crash) {
            let mean_gap_ns = rng.gen_range(300 * ms..4_000 * ms);
            let mean_down_ns = rng.gen_range(50 * ms..3_000 * ms);
            let mut down_until = vec![0u64; nodes];
            let mut at = exponential(rng, mean_gap_ns);
            while at < chaos_ns {
                // Mostly one node; sometimes a power loss takes down a
                // majority (or everyone) at the same instant.
                if nodes > 1 && rng.gen_bool(0.25) {
                    // Target whoever leads at that moment, or the next
                    // leader to append (before a majority holds it).
                    let down_ns = exponential(rng, mean_down_ns).max(ms);
                    let fault = if rng.gen_bool(0.5) {
                        Fault::CrashLeaderAfterAppend { down_ns }
                    } else {
                        Fault::CrashLeader { down_ns }
                    };
                    events.push(TimedFault { at_ns: at, fault });
                    at += exponential(rng, mean_gap_ns).max(1);
                    continue;
                }
                let power_loss = nodes > 1 && rng.gen_bool(0.15);
                let victims: Vec<usize> = if power_loss {
                    let count = rng.gen_range(nodes / 2 + 1..=nodes);
                    let mut all: Vec<usize> = (0..nodes).collect();
                    for i in 0..count {
                        let j = rng.gen_range(i..nodes);
                        all.swap(i, j);
                    }
                    all.truncate(count);
                    all.sort_unstable();
                    all
                } else {
                    vec![rng.gen_range(0..nodes)]
                };
                for node in victims {
                    let down_ns = exponential(rng, mean_down_ns).max(ms);
                    if down_until[node] <= at {
                        down_until[node] = at + down_ns;
                        let id = node as NodeId + 1;
                        events.push(TimedFault {
                            at_ns: at,
                            fault: Fault::Crash { node: id },
                        });
                        events.push(TimedFault {
                            at_ns: at + down_ns,
                            fault: Fault::Restart { node: id },
                        });
                    }
                }
                at += exponential(rng, mean_gap_ns).max(1);
            }
        }
        if on(FaultKind::Pause) {
            let mean_gap_ns = rng.gen_range(500 * ms..6_000 * ms);
            let max_pause_ns = rng.gen_range(20 * ms..3_000 * ms);
            let mut paused_until = vec![0u64; nodes];
            let mut at = exponential(rng, mean_gap_ns);
            while at < chaos_ns {
                let node = rng.gen_range(0..nodes);
                let pause_ns = rng.gen_range(ms..max_pause_ns);
                if paused_until[node] <= at {
                    paused_until[node] = at + pause_ns;
                    events.push(TimedFault {
                        at_ns: at,
                        fault: Fault::Pause {
                            node: node as NodeId + 1,
                        },
                    });
                    events.push(TimedFault {
                        at_ns: at + pause_ns,
                        fault: Fault::Resume {
                            node: node as NodeId + 1,
                        },
                    });
                }
                at += exponential(rng, mean_gap_ns).max(1);
            }
        }
        let partition_kinds: Vec<FaultKind> =
            [FaultKind::Partition, FaultKind::OneWay, FaultKind::Bridge]
                .into_iter()
                .filter(|kind| on(*kind))
                .collect();
        if !partition_kinds.is_empty() && nodes >= 2 {
            let mean_gap_ns = rng.gen_range(300 * ms..4_000 * ms);
            let mean_length_ns = rng.gen_range(100 * ms..4_000 * ms);
            let mut at = exponential(rng, mean_gap_ns);
            while at < chaos_ns {
                let kind = partition_kinds[rng.gen_range(0..partition_kinds.len())];
                let partition = draw_partition(rng, kind, nodes);
                let length_ns = exponential(rng, mean_length_ns).max(ms);
                if kind == FaultKind::Partition && rng.gen_bool(0.3) {
                    let fault = if nodes >= 5 && rng.gen_bool(0.5) {
                        Fault::IsolateLeaderWithMinority { length_ns }
                    } else {
                        Fault::IsolateLeader { length_ns }
                    };
                    events.push(TimedFault { at_ns: at, fault });
                    at += length_ns + exponential(rng, mean_gap_ns).max(1);
                    continue;
                }
                events.push(TimedFault {
                    at_ns: at,
                    fault: Fault::Partition(partition),
                });
                events.push(TimedFault {
                    at_ns: at + length_ns,
                    fault: Fault::HealNetwork,
                });
                at += length_ns + exponential(rng, mean_gap_ns).max(1);
            }
        }
        if on(FaultKind::Stale) {
            rates.stale = rng.gen_range(0.0005..0.01);
            rates.stale_max_ns = rng.gen_range(1_500 * ms..6_000 * ms);
        }
        if on(FaultKind::Churn) && nodes > 1 {
            let mean_gap_ns = rng.gen_range(100 * ms..1_500 * ms);
            let mut at = exponential(rng, mean_gap_ns);
            while at < chaos_ns {
                let rounds = rng.gen_range(4..=12);
                let depose_within_ns = rng.gen_range(5 * ms..250 * ms);
                let down_ns = rng.gen_range(20 * ms..600 * ms);
                events.push(TimedFault {
                    at_ns: at,
                    fault: Fault::LeaderChurn {
                        rounds,
                        depose_within_ns,
                        down_ns,
                    },
                });
                at += u64::from(rounds) * (300 * ms + down_ns) + exponential(rng, mean_gap_ns);
            }
        }
        if on(FaultKind::VoteCrash) && nodes > 1 {
            let mean_gap_ns = rng.gen_range(100 * ms..2_000 * ms);
            let mut at = exponential(rng, mean_gap_ns);
            while at < chaos_ns {
                let down_ns = rng.gen_range(ms..200 * ms);
                events.push(TimedFault {
                    at_ns: at,
                    fault: Fault::CrashVoter { down_ns },
                });
                at += exponential(rng, mean_gap_ns).max(ms);
            }
        }
        if on(FaultKind::Forge) {
            events.extend(draw_forgeries(rng, chaos_ns));
        }
        if on(FaultKind::Malformed) {
            events.extend(draw_malformed(rng, chaos_ns));
        }
        if on(FaultKind::SplitVote) && nodes > 2 {
            events.extend(draw_split_votes(rng, chaos_ns));
        }
        if on(FaultKind::Lease) && nodes > 2 {
            events.extend(draw_lease(rng, chaos_ns));
        }
        if on(FaultKind::SnapshotConflict) && nodes > 2 {
            events.extend(draw_snapshot_conflicts(rng, chaos_ns));
        }
        events.retain(|event| event.at_ns < chaos_ns);
        events.sort_by_key(|event| event.at_ns);
        FaultPlan {
            rates,
            clock_skew_ppm,
            events,
        }
    }

    /// The kinds of fault this plan can inject.
    pub fn enabled(&self) -> FaultSet {
        let mut set = FaultSet::NONE;
        let rates = &self.rates;
        for (kind, rate) in [
            (FaultKind::Loss, rates.loss),
            (FaultKind::Duplicate, rates.duplicate),
            (FaultKind::Reorder, rates.reorder),
            (FaultKind::Delay, rates.tail),
            (FaultKind::Torn, rates.torn),
            (FaultKind::Stale, rates.stale),
        ] {
            if rate > 0.0 {
                set = set.with(kind);
            }
        }
        if rates.fsync_max_ns > 0 {
            set = set.with(FaultKind::Fsync);
        }
        if self.clock_skew_ppm.iter().any(|skew| *skew != 0) {
            set = set.with(FaultKind::Skew);
        }
        for event in &self.events {
            if let Some(kind) = event.fault.kind() {
                set = set.with(kind);
            }
        }
        set
    }

    /// Checks node ids and times; returns a readable problem.
    pub fn validate(&self, nodes: usize) -> Result<(), String> {
        let valid = |id: NodeId| id >= 1 && id as usize <= nodes;
        for event in &self.events {
            let ids: Vec<NodeId> = match &event.fault {
                Fault::Crash { node }
                | Fault::Restart { node }
                | Fault::Pause { node }
                | Fault::Resume { node } => {
                    vec![*node]
                }
                Fault::Partition(Partition::Split { side }) => side.clone(),
                Fault::Partition(Partition::OneWay { from, to }) => {
                    from.iter().chain(to).copied().collect()
                }
                Fault::Partition(Partition::Bridge {
                    left,
                    bridge,
                    right,
                }) => left
                    .iter()
                    .chain(right)
                    .chain(std::iter::once(bridge))
                    .copied()
                    .collect(),
                Fault::HealNetwork
                | Fault::DiskLoss { .. }
                | Fault::CrashLeader { .. }
                | Fault::IsolateLeader { .. }
                | Fault::IsolateLeaderWithMinority { .. }
                | Fault::CrashLeaderAfterAppend { .. }
                | Fault::LeaderChurn { .. }
                | Fault::CrashVoter { .. }
                | Fault::Forge { .. }
                | Fault::Malformed { .. }
                | Fault::SplitVote { .. }
                | Fault::Lease { .. }
                | Fault::SnapshotConflict { .. } => Vec::new(),
            };
            if let Some(id) = ids.into_iter().find(|id| !valid(*id)) {
                return Err(format!(
                    "fault \"{}\" at {} ns names node {id}, but the cluster has nodes 1..={nodes}",
                    event.fault, event.at_ns
                ));
            }
        }
        for (name, rate) in [
            ("loss", self.rates.loss),
            ("duplicate", self.rates.duplicate),
            ("reorder", self.rates.reorder),
            ("tail", self.rates.tail),
            ("torn", self.rates.torn),
            ("stale", self.rates.stale),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!(
                    "rate {name} = {rate} is not a probability in 0..=1"
                ));
            }
        }
        if self.clock_skew_ppm.iter().any(|skew| skew.abs() >= 900_000) {
            return Err("a clock skew must stay within ±900000 ppm".to_string());
        }
        Ok(())
    }
}

fn draw_partition(rng: &mut ChaCha8Rng, kind: FaultKind, nodes: usize) -> Partition {
    let ids: Vec<NodeId> = (1..=nodes as NodeId).collect();
    // A random non-empty proper subset.
    let mut side: Vec<NodeId> = Vec::new();
    while side.is_empty() || side.len() == nodes {
        side = ids.iter().copied().filter(|_| rng.gen_bool(0.5)).collect();
    }
    let rest: Vec<NodeId> = ids
        .iter()
        .copied()
        .filter(|id| !side.contains(id))
        .collect();
    match kind {
        FaultKind::OneWay => Partition::OneWay {
            from: side,
            to: rest,
        },
        FaultKind::Bridge if nodes >= 3 => {
            let bridge = ids[rng.gen_range(0..nodes)];
            let left: Vec<NodeId> = side.into_iter().filter(|id| *id != bridge).collect();
            let right: Vec<NodeId> = rest.into_iter().filter(|id| *id != bridge).collect();
            Partition::Bridge {
                left,
                bridge,
                right,
            }
        }
        _ => Partition::Split { side },
    }
}

/// An exponentially distributed duration with the given mean.
pub fn exponential(rng: &mut ChaCha8Rng, mean_ns: u64) -> u64 {
    let uniform: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
    let value = -uniform.ln() * mean_ns as f64;
    if value >= u64::MAX as f64 / 2.0 {
        u64::MAX / 2
    } else {
        value as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn fault_set_parses_and_prints() {
        assert_eq!(FaultSet::parse("all"), Ok(FaultSet::all()));
        let set = FaultSet::parse("crash, loss").unwrap();
        assert!(set.contains(FaultKind::Crash) && set.contains(FaultKind::Loss));
        assert!(!set.contains(FaultKind::Pause));
        assert_eq!(FaultSet::parse(&set.to_string()), Ok(set));
        assert!(FaultSet::parse("crash,bogus")
            .unwrap_err()
            .contains("bogus"));
    }

    #[test]
    fn partitions_block_the_right_links() {
        let split = Partition::Split { side: vec![1, 2] }.blocked_matrix(5);
        assert_eq!(split[0], 0b11100);
        assert_eq!(split[2], 0b00011);
        let one_way = Partition::OneWay {
            from: vec![1],
            to: vec![2, 3],
        }
        .blocked_matrix(3);
        assert_eq!(one_way, [0b110, 0, 0, 0, 0, 0, 0, 0]);
        let bridge = Partition::Bridge {
            left: vec![1],
            bridge: 2,
            right: vec![3],
        }
        .blocked_matrix(3);
        assert_eq!(bridge[0], 0b100);
        assert_eq!(bridge[1], 0);
        assert_eq!(bridge[2], 0b001);
    }

    #[test]
    fn generated_plans_are_valid_and_deterministic() {
        let limits = PlanLimits {
            nodes: 5,
            chaos_ns: 10_000_000_000,
            max_skew_ppm: 100_000,
        };
        for seed in 0..50 {
            let plan = FaultPlan::generate(
                &mut ChaCha8Rng::seed_from_u64(seed),
                FaultSet::all(),
                true,
                limits,
            );
            let again = FaultPlan::generate(
                &mut ChaCha8Rng::seed_from_u64(seed),
                FaultSet::all(),
                true,
                limits,
            );
            assert_eq!(plan, again);
            plan.validate(5).unwrap();
            assert!(plan
                .events
                .windows(2)
                .all(|pair| pair[0].at_ns <= pair[1].at_ns));
        }
        let all = FaultPlan::generate(
            &mut ChaCha8Rng::seed_from_u64(1),
            FaultSet::all(),
            false,
            limits,
        );
        // Without swarm every kind is on; partitions of each kind appear
        // only if the schedule happens to draw them.
        let expected = FaultSet::all()
            .without(FaultKind::Partition)
            .without(FaultKind::OneWay)
            .without(FaultKind::Bridge);
        assert!(
            expected.kinds().all(|kind| all.enabled().contains(kind)),
            "{}",
            all.enabled()
        );
    }
}
