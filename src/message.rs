//! Messages replicas exchange. These are plain data: the host chooses how
//! to encode them (the tokio runtime uses a checksummed binary codec).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::entries::Entries;
use crate::membership::Membership;
use crate::types::{Index, LogPosition, NodeId, Term};

/// One message between two replicas.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Sender.
    pub from: NodeId,
    /// Intended receiver. A node ignores messages addressed to another.
    pub to: NodeId,
    /// The sender's term (for a pre-vote request, the term it would campaign
    /// in).
    pub term: Term,
    /// Names the leader's record of one follower (its progress), so that a
    /// leader counts an answer only from the replica it replicates to now.
    /// In a leader's message: the id of its record of the receiver. In any
    /// other message: the newest id the sender received from its leader in
    /// `term` (0 for none). A leader drops an answer to an append, a
    /// heartbeat or a snapshot chunk that names another id than its record
    /// of the sender: a replica removed and added back empty within one
    /// term gets a new record, and a delayed answer of the replica it
    /// replaced, which held entries the new one does not, must not count
    /// for the new one.
    pub progress_id: u64,
    /// What the message says.
    pub body: MessageBody,
}

/// The kinds of message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageBody {
    /// A candidate (or pre-candidate) asks for a vote.
    RequestVote {
        /// True for a pre-vote (thesis §9.6): nobody changes term or vote.
        pre_vote: bool,
        /// The candidate's last log entry, for the up-to-date check.
        last_log: LogPosition,
        /// Set when the current leader asked for this election (leadership
        /// transfer); voters then ignore their leader lease.
        transfer: bool,
    },
    /// Answer to [`MessageBody::RequestVote`].
    RequestVoteResponse {
        /// Answers a pre-vote request.
        pre_vote: bool,
        /// Whether the vote is granted.
        granted: bool,
    },
    /// Log replication from the leader.
    AppendEntries {
        /// The entry immediately preceding `entries`.
        prev: LogPosition,
        /// New entries, contiguous, starting at `prev.index + 1`.
        entries: Entries,
        /// The leader's commit index.
        leader_commit: Index,
    },
    /// Answer to [`MessageBody::AppendEntries`].
    AppendEntriesResponse(AppendResponse),
    /// Leader liveness and commit propagation without log matching.
    Heartbeat {
        /// The leader's commit index, capped at what this follower is known
        /// to hold so it never commits an entry it may not have.
        commit: Index,
        /// The leader's confirmation round (see [`MessageBody::HeartbeatResponse`]).
        read_round: u64,
    },
    /// Answer to [`MessageBody::Heartbeat`].
    HeartbeatResponse {
        /// The round of the heartbeat answered (0 for none): a quorum
        /// answering a round confirms the leader's reads and lease.
        read_round: u64,
    },
    /// Sent by a leader to tell a caught-up follower to start an election
    /// at once (leadership transfer, used for priority election).
    TimeoutNow,
    /// One chunk of the leader's latest snapshot, for a follower whose next
    /// entry the leader no longer holds in its log. Boxed: the largest
    /// body by far and a rare one, so every other message (and every
    /// [`Action`](crate::Action) and [`Input`](crate::Input) carrying one)
    /// stays small to move. The wire format is that of a variant with the
    /// chunk's fields inline.
    InstallSnapshot(Box<SnapshotChunk>),
    /// Answer to a vote request (or pre-vote request) from a candidate that
    /// is not a voter in the receiver's configuration, which is committed,
    /// and whose log is behind the receiver's: the candidate cannot win,
    /// and the receiver neither votes nor moves to the candidate's term
    /// (so a removed node cannot disrupt the cluster, thesis §4.2.3). The
    /// candidate stops campaigning until its log holds this entry (then its
    /// configurations decide again).
    Removed {
        /// A committed log position at which the receiver's configuration,
        /// which does not name the candidate as a voter, is in force (its
        /// entry, or the receiver's log base if that was compacted).
        configuration: LogPosition,
    },
    /// A follower asks its leader for a read index, to serve a read
    /// locally once it has applied it (a follower read).
    ReadIndexRequest {
        /// The follower's id for the read, echoed in the answer.
        request: u64,
    },
    /// Answer to [`MessageBody::ReadIndexRequest`].
    ReadIndexResponse {
        /// The request answered.
        request: u64,
        /// The confirmed read index, or `None` when the leader cannot
        /// confirm one (it is not leader any more, is transferring
        /// leadership, or has too many reads pending).
        index: Option<Index>,
    },
    /// Answer to [`MessageBody::InstallSnapshot`]: how much of the snapshot
    /// the follower holds. Installation itself is acknowledged like an
    /// append, by [`AppendResponse::Accepted`] once it is durable.
    InstallSnapshotResponse {
        /// The snapshot the answered chunk belongs to.
        snapshot: LogPosition,
        /// The follower holds bytes `0..next_offset` of that snapshot.
        next_offset: u64,
        /// The chunk did not continue what the follower holds (a chunk was
        /// lost, or the follower restarted or was sent another snapshot):
        /// the leader resends from `next_offset`.
        rewind: bool,
    },
    /// The leader's commit index moved and this follower has nothing new
    /// to receive: taken as an empty [`MessageBody::AppendEntries`] after
    /// the leader's last entry `last`, except that it is not acknowledged.
    /// A follower whose log holds `last` (so it equals the leader's log up
    /// to there, by log matching) commits up to `commit` and answers
    /// nothing, so telling a follower of a commit costs one message instead
    /// of two; one whose log does not hold it refuses it with a hint, like
    /// an append, so the leader finds out about missing entries as soon.
    /// While appends past the commit index are in flight to the follower,
    /// the leader holds the notice back: the next append carries the
    /// commit, or the answer after which none goes past it sends the
    /// notice.
    CommitNotice {
        /// The leader's last log entry.
        last: LogPosition,
        /// The leader's commit index (at most `last.index`).
        commit: Index,
    },
    /// Sent with the refusal of a vote (or pre-vote) whose candidate's log
    /// is behind, by a node that can never campaign itself (a witness, a
    /// learner, a node its configuration dropped): the entries it holds
    /// after `prev`. Without them a cluster can stall for good when the
    /// newest entries live only on such nodes: every voter that could
    /// lead is refused for being behind, and nobody who holds the entries
    /// may lead. A (pre-)candidate whose log holds `prev` takes them only
    /// if they leave its log more up to date than before (§5.4.1): they
    /// are then exactly what that entry's leader would have sent it, and
    /// replace only entries no leader can have committed.
    CandidateCatchUp {
        /// The entry immediately preceding `entries`.
        prev: LogPosition,
        /// The sender's entries, contiguous, starting at `prev.index + 1`.
        entries: Entries,
    },
    /// Sent by a replica recovering from lost storage
    /// ([`StorageRecovery::AwaitingReports`](crate::StorageRecovery::AwaitingReports))
    /// to every member of the newest configuration it knows: what do you
    /// hold? Answered by any replica, in any term, with
    /// [`MessageBody::RecoveryReport`]; moves no term.
    RecoveryQuery {
        /// Echoed in the report, so that only answers to this recovery's
        /// questions count.
        nonce: u64,
    },
    /// Answer to [`MessageBody::RecoveryQuery`]: the sender's log and
    /// configuration (the message's term is the sender's term). Moves no
    /// term.
    RecoveryReport(Box<RecoveryReport>),
    /// Sent by a leader to a follower that acknowledged `acknowledged` as
    /// durable and now refuses it again and again: its storage lost what
    /// it had promised (its host reported a write durable that was not,
    /// or its disk lost synced data). A follower whose log indeed lacks
    /// that entry starts recovering
    /// ([`StorageRecovery::AwaitingReports`](crate::StorageRecovery::AwaitingReports)).
    AcknowledgedEntryLost {
        /// The entry the follower had acknowledged as durable.
        acknowledged: LogPosition,
    },
}

/// What a replica reports to one recovering from lost storage
/// ([`MessageBody::RecoveryReport`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryReport {
    /// The query answered.
    pub nonce: u64,
    /// The sender is recovering from lost storage itself and does not yet
    /// hold what its lost storage promised: its log does not bound what
    /// the cluster counted on (it is not one of the peers a recovery
    /// waits for), though its emptiness tells of a new cluster.
    pub recovering: bool,
    /// The sender's last log entry (or its snapshot's, with an empty log).
    pub last_log: LogPosition,
    /// Where the sender's configuration in force comes from (its entry,
    /// or the sender's log base when that was compacted away).
    pub configuration: LogPosition,
    /// The sender's configuration in force.
    pub membership: Membership,
}

/// One chunk of a snapshot, in [`MessageBody::InstallSnapshot`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotChunk {
    /// The last entry the snapshot covers.
    pub snapshot: LogPosition,
    /// Size of the whole snapshot.
    pub size_bytes: u64,
    /// [`checksum64`](crate::checksum64) of the whole snapshot, checked by
    /// the follower before it installs anything.
    pub checksum: u64,
    /// Where in the snapshot this chunk starts.
    pub offset: u64,
    /// The chunk (at most `snapshot_chunk_bytes_max` bytes).
    pub data: Bytes,
    /// The cluster configuration in force at the snapshot's last entry
    /// (the follower adopts it on install: the entries that set it may be
    /// compacted away). The same in every chunk of a snapshot.
    pub membership: Membership,
}

/// Outcome of an AppendEntries as the follower reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AppendResponse {
    /// The follower durably holds the leader's log up to `match_index`.
    Accepted {
        /// Highest index known to match the leader's log and be durable.
        match_index: Index,
    },
    /// The follower's log does not contain the `prev` entry.
    Rejected {
        /// The `prev.index` of the rejected request.
        rejected_index: Index,
        /// The largest index of the follower's log at or below
        /// `rejected_index` whose term is at most the leader's `prev.term`.
        /// The leader backs up to at most this + 1, skipping whole terms.
        hint_index: Index,
        /// Term of the follower's entry at `hint_index` (0 if unknown).
        hint_term: Term,
    },
}
