//! What a multi-group run reports: its failure (if any), what it drew,
//! its counts and the figures the checks measured.

use std::fmt;

use concord::multi::MultiStats;
use concord::NodeId;

use crate::engine::{format_time, FailureKind, FaultCounts};
use crate::faults::FaultPlan;

use super::config::{Drawn, MultiSimConfig};

/// Which check of a multi-group run failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MultiCheck {
    /// One of the single-group simulator's checks, run per group: election
    /// safety, log matching on the committed prefix, leader completeness,
    /// state machine safety, commit never going back, a follower losing
    /// acknowledged entries, linearizability, a node or layer assertion
    /// (panic), recovery, the host contract, the event budget.
    Raft(FailureKind),
    /// A group was told a write is durable that its node's disk does not
    /// hold after a crash (one group acknowledged on another's sync).
    Durability,
    /// A group went to sleep as leader while a follower its node took for
    /// alive lacked the leader's last entry: nothing would send it.
    Quiescence,
    /// A node sent more bytes of snapshot chunks than its bandwidth limit
    /// allows: over some run of ticks, more than the limit per tick times
    /// their number plus one chunk (`MultiConfig::snapshot_send_bytes_per_tick_max`);
    /// or more of one transfer's chunks waited for the limit than its
    /// snapshot holds (a chunk waiting twice).
    SnapshotPace,
    /// After the heal, a group had no leader known to all its members
    /// within the stated bound.
    Leaderless,
    /// After the heal, a write to some group did not commit, or a member
    /// did not apply it, within the liveness bound.
    Liveness,
    /// After the heal and the workload, some group did not go to sleep
    /// within the stated bound (quiescence on).
    NotQuiesced,
    /// With every group asleep, the nodes still sent group messages or
    /// stepped groups; or a tick ticked more groups than were awake.
    IdleCost,
    /// A read asked of a node that stayed up was never answered (served
    /// or refused).
    ReadUnanswered,
    /// A forged or malformed frame changed a group's state, or was not
    /// counted where the layer's statistics say.
    FrameRefusal,
    /// A node that stalled took for dead, in the ticks its stall missed,
    /// a peer that was up, that it had heard from within the liveness
    /// timeout before the stall, and whose frames waited for it.
    StallDeath,
    /// A frame whose only messages for a sleeping group were of terms
    /// older than the group's woke it.
    StaleWake,
    /// Between two flushes, the layer served its wake queues on more than
    /// one tick, woke more than `wakes_per_tick_max` groups from them, or
    /// judged election slots on more than one tick: a host that hands the
    /// ticks it missed back to back must not get a wake for each.
    WakeBound,
    /// A node took a peer for restarted on a frame that carried no newer
    /// incarnation than one it had taken from that peer (a frame delayed
    /// from before the peer's restart), or missed a restart a frame
    /// showed.
    RestartCount,
    /// A read was released at a read index below what some node of its
    /// group had already seen committed when the read was asked: it could
    /// miss a write acknowledged before it began (a leader that served
    /// from a lease it no longer held, or a read index taken by a node
    /// that was not leader).
    ReadFresh,
    /// A follower holding an entry its leader committed did not learn of
    /// the commit (by an append, a heartbeat, a commit notice or a
    /// quiescence round) within the stated bound, with both nodes up and
    /// running and no partition changing (`commit_told.rs`).
    CommitTold,
    /// A node being replaced was removed from a group it voted in while
    /// its replacement was not a voter of it (`membership.rs`).
    ReplaceRule,
    /// After the heal, a node's replacement did not finish, or who hosts a
    /// group did not come in line with its configuration, with nothing
    /// moving for the liveness bound (`membership.rs`).
    MembershipLiveness,
    /// The balancer had more moves in flight than its limits allow
    /// (cluster-wide or touching one server), or two at once on one group
    /// (`rebalance.rs`).
    MoveLimits,
    /// A move ended with more of its group's replicas sharing a zone than
    /// before it, under a rule that spreads zones (`rebalance.rs`).
    ZoneRule,
    /// After the heal, the balancer stopped (nothing in flight, nothing to
    /// plan) with an up server outside the band while the replica counts
    /// spread over more than one (`rebalance.rs`).
    BalanceBand,
    /// The leader balancer planned a transfer to a voter leading fewer
    /// than two groups less than the source (every round), or, after the
    /// heal, stopped with a group it could still hand over: led by a
    /// server that is not up while an up voter could lead it, or led by
    /// a server over the band (or to a server under it) while a voter
    /// leads at least two fewer (`rebalance.rs`).
    LeaderBand,
    /// A move was undone as stalled while its target, learning and not
    /// caught up, had got closer to its group's log (a higher match
    /// index, or more snapshot bytes confirmed) within the stall time
    /// (`rebalance.rs`).
    MoveStall,
}

impl MultiCheck {
    /// A short name.
    pub fn name(self) -> &'static str {
        match self {
            MultiCheck::Raft(kind) => kind.name(),
            MultiCheck::Durability => "durability",
            MultiCheck::Quiescence => "quiescence",
            MultiCheck::Leaderless => "leaderless",
            MultiCheck::Liveness => "group-liveness",
            MultiCheck::NotQuiesced => "not-quiesced",
            MultiCheck::IdleCost => "idle-cost",
            MultiCheck::ReadUnanswered => "read-unanswered",
            MultiCheck::FrameRefusal => "frame-refusal",
            MultiCheck::StallDeath => "stall-death",
            MultiCheck::StaleWake => "stale-wake",
            MultiCheck::RestartCount => "restart-count",
            MultiCheck::WakeBound => "wake-bound",
            MultiCheck::ReadFresh => "read-fresh",
            MultiCheck::CommitTold => "commit-told",
            MultiCheck::ReplaceRule => "replace-rule",
            MultiCheck::MembershipLiveness => "membership-liveness",
            MultiCheck::MoveLimits => "move-limits",
            MultiCheck::ZoneRule => "zone-rule",
            MultiCheck::BalanceBand => "balance-band",
            MultiCheck::LeaderBand => "leader-band",
            MultiCheck::MoveStall => "move-stall",
            MultiCheck::SnapshotPace => "snapshot-pace",
        }
    }
}

impl fmt::Display for MultiCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A failed check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MultiFailure {
    /// Which check.
    pub check: MultiCheck,
    /// Virtual time it was detected, nanoseconds.
    pub time_ns: u64,
    /// The node concerned, if one is.
    pub node: Option<NodeId>,
    /// The group concerned, if one is.
    pub group: Option<u64>,
    /// What exactly is wrong.
    pub message: String,
}

impl fmt::Display for MultiFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {}", self.check, format_time(self.time_ns))?;
        if let Some(node) = self.node {
            write!(f, " on n{node}")?;
        }
        if let Some(group) = self.group {
            write!(f, " in group {group}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Counters of the layer summed over every node and incarnation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LayerTotals {
    /// `Node::step` calls on any group.
    pub group_steps: u64,
    /// Frames sent.
    pub frames: u64,
    /// Items in them (group messages, coalesced heartbeats and answers,
    /// quiescence requests and answers).
    pub items: u64,
    /// Persist batches.
    pub batches: u64,
    /// Writes in them.
    pub writes: u64,
    /// Groups put to sleep.
    pub sleeps: u64,
    /// Groups woken.
    pub wakes: u64,
    /// Of those, woken from the election queue.
    pub wakes_to_elect: u64,
    /// Election slots that expired.
    pub slots_expired: u64,
    /// Frames refused (forged or malformed).
    pub frames_refused: u64,
    /// Bytes of snapshot chunks sent.
    pub snapshot_bytes: u64,
    /// Snapshot chunks that waited for the bandwidth limit.
    pub snapshot_chunks_held: u64,
}

impl LayerTotals {
    pub(crate) fn add(&mut self, stats: &MultiStats) {
        self.group_steps += stats.node_steps;
        self.frames += stats.frames_sent;
        self.items += stats.frame_items_sent;
        self.batches += stats.persist_batches;
        self.writes += stats.persist_writes;
        self.sleeps += stats.sleeps;
        self.wakes += stats.wakes;
        self.wakes_to_elect += stats.wakes_to_elect;
        self.slots_expired += stats.election_slots_expired;
        self.frames_refused += stats.frames_refused;
        self.snapshot_bytes += stats.snapshot_bytes_sent;
        self.snapshot_chunks_held += stats.snapshot_chunks_held;
    }

    /// Adds another run's totals.
    pub fn merge(&mut self, other: &LayerTotals) {
        self.group_steps += other.group_steps;
        self.frames += other.frames;
        self.items += other.items;
        self.batches += other.batches;
        self.writes += other.writes;
        self.sleeps += other.sleeps;
        self.wakes += other.wakes;
        self.wakes_to_elect += other.wakes_to_elect;
        self.slots_expired += other.slots_expired;
        self.frames_refused += other.frames_refused;
        self.snapshot_bytes += other.snapshot_bytes;
        self.snapshot_chunks_held += other.snapshot_chunks_held;
    }
}

/// Everything about one multi-group run.
#[derive(Clone, Debug)]
pub struct MultiReport {
    /// The configuration run.
    pub config: MultiSimConfig,
    /// What the seed drew.
    pub drawn: Drawn,
    /// The fault plan run.
    pub plan: FaultPlan,
    /// The first failed check, if any.
    pub failure: Option<MultiFailure>,
    /// Fingerprint of every event (same seed, same hash).
    pub trace_hash: u64,
    /// Engine events.
    pub events: u64,
    /// `MultiNode::step` calls.
    pub node_steps: u64,
    /// Virtual time simulated, nanoseconds.
    pub simulated_ns: u64,
    /// Client operations checked for linearizability (all groups).
    pub operations: u64,
    /// Faults injected, by kind.
    pub faults: FaultCounts,
    /// The layer's counters over the run.
    pub layer: LayerTotals,
    /// Snapshots taken by state machines.
    pub snapshots_taken: u64,
    /// Snapshots installed from a leader.
    pub snapshots_installed: u64,
    /// Time from the heal until every group had a leader known to all its
    /// members.
    pub leaders_after_heal_ns: Option<u64>,
    /// The bound that time was held to.
    pub leaders_bound_ns: u64,
    /// Time from the heal until every group committed a write and every
    /// member applied it.
    pub liveness_after_heal_ns: Option<u64>,
    /// Time from the end of the workload until every group slept.
    pub quiesced_after_ns: Option<u64>,
    /// Most groups electing at once on one node (woken from the election
    /// queue, without a leader).
    pub electing_max: usize,
    /// Whether the seed drew stall bursts: stalled hosts hand their
    /// missed ticks back to back, and stall at a peer change.
    pub stall_bursts: bool,
    /// Ticks handed over back to back, with no flush since the one
    /// before (a stalled host catching up).
    pub ticks_back_to_back: u64,
    /// Frames taken from a peer's earlier incarnation, delayed past a
    /// frame of its new one.
    pub old_incarnation_frames: u64,
    /// The membership the seed drew and what came of it.
    pub membership: MembershipFigures,
    /// The forced recovery of a `--forced-recovery` run: what it forced
    /// and the acknowledged operations it lost by design.
    pub forced_recovery: Option<super::forced::MultiForcedReport>,
    /// Timeline lines (with `timeline`).
    pub timeline: Vec<(u64, Option<NodeId>, String)>,
}

/// What a seed's membership fault did (`membership.rs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MembershipFigures {
    /// The seed drew membership changes (half the seeds of a swarm).
    pub drawn: bool,
    /// Changes proposed at a group's leader: the per-group ones and the
    /// replace's.
    pub changes_proposed: u64,
    /// The seed drew a replace of a whole node and it started.
    pub replace_started: bool,
    /// The replace finished.
    pub replace_done: bool,
    /// The node replaced was kept down during the replace.
    pub old_kept_down: bool,
    /// Groups the replace concerned.
    pub replace_groups: u64,
    /// The seed drew a rebalance (a server joining late, maybe one
    /// drained) instead of a replace.
    pub rebalance_drawn: bool,
    /// The rebalance's replica moves started and finished.
    pub moves: (u64, u64),
    /// Of the moves finished, those undone: their target stopped being up
    /// while it was still a learner, or stalled.
    pub moves_undone: u64,
    /// Of those, the ones undone because their target stalled (the stall
    /// watch, `concord::multi::MoveStall`).
    pub moves_stalled: u64,
    /// Moves a deposed catalog leader's balancer planned beside the new
    /// one's that the catalog refused.
    pub moves_refused: u64,
    /// The leadership transfers the rebalance asked for.
    pub leader_transfers: u64,
}

impl MultiReport {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }

    /// Groups the run hosted.
    pub fn groups(&self) -> usize {
        self.drawn.groups
    }
}
