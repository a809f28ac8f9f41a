//! Counters of what a node saw and did, in particular of input it refused.

/// Counters of notable events on one node. Every refused or ignored input is
/// counted here rather than trusted or treated as a crash.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Statistics {
    /// Messages from a node outside the configuration.
    pub messages_from_unknown_node: u64,
    /// Vote requests ignored because the candidate is not a voter in this
    /// node's committed configuration and its log is behind (each
    /// answered with [`MessageBody::Removed`](crate::MessageBody::Removed)).
    pub vote_requests_from_removed: u64,
    /// [`MessageBody::CandidateCatchUp`](crate::MessageBody::CandidateCatchUp)
    /// messages sent: this node, unable to lead, refused a candidate
    /// behind it and sent it its newer entries.
    pub candidate_catch_ups_sent: u64,
    /// [`MessageBody::CandidateCatchUp`](crate::MessageBody::CandidateCatchUp)
    /// messages whose entries this (pre-)candidate took.
    pub candidate_catch_ups_taken: u64,
    /// [`MessageBody::Removed`](crate::MessageBody::Removed) answers
    /// received: this node was told it is not a voter.
    pub removed_notices_received: u64,
    /// Answers carrying a higher term from a node the committed
    /// configuration no longer names, dropped (a removed node's term must
    /// not depose the leader).
    pub answers_from_removed: u64,
    /// Answers to this leader's appends, heartbeats or snapshot chunks
    /// dropped because they name an earlier record of their sender (see
    /// [`Message::progress_id`](crate::Message::progress_id)): sent by a
    /// replica removed since, whose node was added back.
    pub answers_from_earlier_replica: u64,
    /// Messages addressed to another node.
    pub messages_misaddressed: u64,
    /// Messages carrying a term below ours.
    pub messages_stale_term: u64,
    /// Messages whose contents contradict themselves (non-contiguous
    /// entries, entry terms above the message term, a response of the wrong
    /// kind for our role, ...).
    pub messages_malformed: u64,
    /// Indices beyond the log or below its compacted base.
    pub messages_index_out_of_range: u64,
    /// AppendEntries that would have overwritten a committed entry.
    pub append_conflicts_with_commit: u64,
    /// Appends dropped because too many writes were unpersisted.
    pub appends_dropped_backpressure: u64,
    /// Elections (not pre-elections) started.
    pub elections_started: u64,
    /// Pre-elections started.
    pub pre_elections_started: u64,
    /// Times this node became leader.
    pub leader_elected: u64,
    /// Times a leader stepped down because a quorum went quiet.
    pub check_quorum_step_downs: u64,
    /// Leadership transfers started by this node as leader.
    pub transfers_started: u64,
    /// Proposals accepted.
    pub proposals_accepted: u64,
    /// Proposals refused.
    pub proposals_refused: u64,
    /// Log entries truncated because they conflicted with a leader's.
    pub entries_truncated: u64,
    /// Followers found holding a shorter log than they acknowledged as
    /// durable (each also reported as [`Action::FollowerLogRegressed`]).
    ///
    /// [`Action::FollowerLogRegressed`]: crate::Action::FollowerLogRegressed
    pub follower_log_regressions: u64,
    /// Snapshots the host reported durable and the log was compacted to.
    pub snapshots_taken: u64,
    /// Snapshot reports older than the snapshot already held, ignored.
    pub snapshot_reports_stale: u64,
    /// Snapshot transfers a leader started (or restarted from offset 0).
    pub snapshot_transfers_started: u64,
    /// Snapshot chunks sent.
    pub snapshot_chunks_sent: u64,
    /// Snapshot chunks refused: too large a snapshot, a chunk outside it,
    /// or one that did not continue the transfer under way.
    pub snapshot_chunks_refused: u64,
    /// Assembled snapshots whose checksum did not match; discarded.
    pub snapshot_checksum_mismatches: u64,
    /// Snapshots received from a leader and installed.
    pub snapshots_installed: u64,
    /// Reads this leader confirmed with a heartbeat round (ReadIndex).
    pub reads_read_index: u64,
    /// Reads this leader served under its lease.
    pub reads_lease: u64,
    /// Follower reads whose index this follower received from its leader.
    pub reads_follower: u64,
    /// Reads refused (the host was told why).
    pub reads_refused: u64,
    /// Questions sent while recovering from lost storage
    /// ([`MessageBody::RecoveryQuery`](crate::MessageBody::RecoveryQuery)).
    pub recovery_queries_sent: u64,
    /// Answers to them received.
    pub recovery_reports_received: u64,
    /// Votes (and pre-votes) refused because this node was recovering
    /// from lost storage.
    pub votes_refused_recovering: u64,
}
