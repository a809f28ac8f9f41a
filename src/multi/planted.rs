//! Deliberately planted mistakes of the multi-group layer, for measuring
//! how quickly outside checks catch them (the layer's counterpart of
//! `src/planted.rs`). Switched on only with the `planted-bugs` feature and
//! the hidden `MultiNode::plant_bugs`; without the feature every check is
//! constant `false` and compiles away. A field's name, in kebab case after
//! `multi-`, is the mistake's name in the simulator's table of planted
//! mistakes (`sim/src/bugs.rs`, `concord-sim bugs`): `concord-sim run
//! --groups swarm --bug multi-wake-drops-read`.

/// The planted mistakes. All off by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MultiPlantedBugs {
    /// A leader quiesces while a live follower is behind: it neither
    /// checks its followers' match indices nor waits for every live
    /// follower's answer (a quorum of accepted answers will do, refusals
    /// are ignored).
    pub quiesce_follower_behind: bool,
    /// The heartbeat coalescer sends each follower the group's commit
    /// index rather than the one the leader's node capped at what that
    /// follower is known to hold, so a follower whose log does not match
    /// commits entries the leader never sent it.
    pub heartbeat_commit_uncapped: bool,
    /// Waking a sleeping group for a read (a local read, or a follower's
    /// read-index request at its leader) drops the read that woke it.
    pub wake_drops_read: bool,
    /// A durability report for one persist batch also acknowledges the
    /// writes of batches still being written: one group's entries are
    /// acknowledged on the strength of another group's fsync.
    pub persist_acks_later_batches: bool,
    /// A message of a term older than a sleeping group's wakes it: the
    /// first rule of `Sleep::keeps_sleeping_on` is skipped (a stale
    /// heartbeat answer wakes a follower whose leader sleeps; it hears no
    /// heartbeat and campaigns against that leader).
    pub stale_message_wakes: bool,
    /// Node-level liveness takes a peer for dead on its own silence
    /// alone, not only while another peer was heard from a timeout after
    /// it: a host that stalls and then gets its missed ticks in one burst
    /// takes every live peer for dead at once (and queues every group
    /// they lead to elect).
    pub live_peer_taken_for_dead: bool,
    /// Node-level liveness takes any change of a peer's incarnation for a
    /// restart, a smaller one too: a frame delayed from before the peer's
    /// restart orphans every group the peer leads here (queued to elect
    /// against a live leader), and the next current frame does it again
    /// (the mistake fixed in d252013).
    pub old_incarnation_restarts: bool,
    /// The wake queues are served, and election slots judged, on every
    /// tick, not only on the first tick after a flush: a host that hands
    /// the ticks it missed back to back wakes `wakes_per_tick_max` groups
    /// for each of them, and the stalled loop stalls longer.
    pub tick_burst_wakes: bool,
    /// A leader takes one tick of a burst, not its `lease_read_ticks`: a
    /// lease from before the stall still holds when the leader runs again,
    /// and it serves lease reads although a new leader may have committed
    /// writes while it stalled.
    pub burst_lease_kept: bool,
    /// A sleeping follower's layer answers its leader's heartbeat itself
    /// (the round it names, in the group's term) instead of stepping the
    /// group's node with it: the node never took the heartbeat, so its
    /// promise not to vote for another leader (counted from the last
    /// leader message it took) is older than the answer the leader's
    /// lease counts.
    pub sleeping_follower_answers_unstepped: bool,
    /// The replace planner (`ReplacePlan`) removes OLD from a group as
    /// soon as NEW is in it as a learner, not once NEW is a voter: while
    /// NEW catches up, the group runs on one fewer voter able to hold its
    /// log (two of three, one of them maybe dead).
    pub replace_removes_old_early: bool,
    /// The balancer plans as if no move were in flight, as a new catalog
    /// leader would that did not read the moves its predecessor started:
    /// a group gets a second move while its first runs, and the limits on
    /// moves in flight no longer hold.
    pub balance_ignores_in_flight: bool,
    /// The balancer picks a move's target without the zone rule: a group
    /// may end with two replicas in one zone.
    pub balance_ignores_zones: bool,
    /// The leader balancer hands a group over whenever the target leads
    /// fewer groups than the source, not at least two fewer: two servers
    /// one group apart hand the same group back and forth, and the
    /// balancer never reaches a fixed point.
    pub leader_balance_without_margin: bool,
    /// Undoing a move whose target can no longer take the group
    /// (`ReplacePlan::step_back`) removes the move's source instead of its
    /// target: the group loses a voter while the target, still a
    /// learner, does not hold its log.
    pub move_rollback_removes_source: bool,
    /// The catalog records every move a balancer proposes as it comes
    /// (`admit_move`): a second move of a group replaces the first, and
    /// the limits on moves in flight are not held. Two balancers acting at
    /// once after a catalog leader change (the deposed leader's from a
    /// stale view of the moves) then exceed the limits together, and a
    /// group's move is abandoned half done.
    pub catalog_trusts_balancers: bool,
    /// The snapshot bandwidth limit's credit is not capped at one tick's
    /// worth (`snapshot_pace.rs`): idle ticks bank it, and the chunks of a
    /// transfer that starts after an idle spell leave in one burst, far
    /// past the limit.
    pub snapshot_credit_banked: bool,
    /// A repeat of a snapshot chunk waiting for the bandwidth limit waits
    /// behind its copy instead of taking its place (`snapshot_pace.rs`):
    /// the leader resends a transfer that did not move between two
    /// heartbeat answers, faster than a low limit lets chunks out, so the
    /// queue grows and the transfer never ends.
    pub snapshot_repeats_queued: bool,
    /// The stall watch (`MoveStall`) takes a mark equal to the highest
    /// seen for progress (`>=` for `>`): a target that stays up but gets
    /// no closer never stalls, and its move holds its group and a share
    /// of the move limits for as long as the target hangs.
    pub move_stall_equal_mark_progress: bool,
}

impl MultiPlantedBugs {
    /// These mistakes in a build with feature `planted-bugs`, none in any
    /// other: what a holder of planted mistakes acts on.
    pub(crate) fn in_force(self) -> MultiPlantedBugs {
        #[cfg(feature = "planted-bugs")]
        {
            self
        }
        #[cfg(not(feature = "planted-bugs"))]
        {
            let _ = self;
            MultiPlantedBugs::NONE
        }
    }

    /// No bug.
    pub const NONE: MultiPlantedBugs = MultiPlantedBugs {
        quiesce_follower_behind: false,
        heartbeat_commit_uncapped: false,
        wake_drops_read: false,
        persist_acks_later_batches: false,
        stale_message_wakes: false,
        live_peer_taken_for_dead: false,
        old_incarnation_restarts: false,
        tick_burst_wakes: false,
        burst_lease_kept: false,
        sleeping_follower_answers_unstepped: false,
        replace_removes_old_early: false,
        balance_ignores_in_flight: false,
        balance_ignores_zones: false,
        leader_balance_without_margin: false,
        move_rollback_removes_source: false,
        catalog_trusts_balancers: false,
        snapshot_credit_banked: false,
        snapshot_repeats_queued: false,
        move_stall_equal_mark_progress: false,
    };
}
