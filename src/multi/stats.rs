//! Counters of what a multi-group node did: the figures of its cost (node
//! steps, frames and items per tick) and every refused input.

/// Counters of one [`MultiNode`](super::MultiNode), from its start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MultiStats {
    /// Ticks the host delivered to the layer.
    pub ticks: u64,
    /// Ticks the layer delivered to groups (awake groups, and the missed
    /// ticks handed to a group that wakes). Grows with awake groups, not
    /// with all groups.
    pub group_ticks: u64,
    /// Calls of [`Node::step`](crate::Node::step) on any group, whatever
    /// the input.
    pub node_steps: u64,
    /// Frames handed to the host.
    pub frames_sent: u64,
    /// Items in those frames (group messages, coalesced heartbeats and
    /// answers, quiescence requests and answers).
    pub frame_items_sent: u64,
    /// Coalesced heartbeats sent.
    pub heartbeats_sent: u64,
    /// Coalesced heartbeat answers sent.
    pub heartbeat_answers_sent: u64,
    /// Quiescence requests sent by leaders.
    pub quiesce_requests_sent: u64,
    /// Quiescence answers sent by followers.
    pub quiesce_answers_sent: u64,
    /// Frames received and taken.
    pub frames_received: u64,
    /// Frames refused: addressed to another node, from this node, node 0
    /// or a node that is not a peer, or larger than `frame_items_max`.
    pub frames_refused: u64,
    /// Items for a group this node does not host, dropped.
    pub items_unknown_group: u64,
    /// Persist batches handed to the host.
    pub persist_batches: u64,
    /// Writes in those batches.
    pub persist_writes: u64,
    /// Groups that went to sleep.
    pub sleeps: u64,
    /// Groups woken, for any reason.
    pub wakes: u64,
    /// Of those, woken from the election queue.
    pub wakes_to_elect: u64,
    /// Of those, woken from the lead queue (to heartbeat a returning peer).
    pub wakes_to_lead: u64,
    /// Missed ticks handed to groups as they woke.
    pub missed_ticks_delivered: u64,
    /// Ticks that came back to back, with no flush since the one before
    /// (a host catching up after a stall): they served no wake queue.
    pub ticks_back_to_back: u64,
    /// Ticks of such a burst not handed to an awake group, one per group
    /// and tick: a leader takes at most its `lease_read_ticks` (and at
    /// least a heartbeat interval) of one burst, any other role half its
    /// `election_timeout_min_ticks`.
    pub group_ticks_withheld: u64,
    /// Groups woken to elect that found no leader in time and went back
    /// to sleep at the back of the queue.
    pub election_slots_expired: u64,
    /// Peers taken for dead.
    pub peers_died: u64,
    /// Peers heard from again after they were taken for dead.
    pub peers_returned: u64,
    /// Peers seen with a new incarnation.
    pub peers_restarted: u64,
    /// Bytes of snapshot chunks handed to the outbox (after the bandwidth
    /// limit, if any).
    pub snapshot_bytes_sent: u64,
    /// Snapshot chunks that waited for the bandwidth limit.
    pub snapshot_chunks_held: u64,
    /// Snapshot chunks dropped by the bandwidth limit: a waiting copy a
    /// newer copy of the same chunk replaced, a chunk past the full
    /// queue, or one whose transfer ended before its turn (transfers
    /// resend what their followers lack).
    pub snapshot_chunks_dropped: u64,
}
