//! What goes into a [`Node`](crate::Node) and what comes out of it.

use bytes::Bytes;
use thiserror::Error;

use crate::entries::Entries;
use crate::message::Message;
use crate::read_index::{ReadError, ReadPath};
use crate::snapshot::{SnapshotChunkToSend, SnapshotMeta};
use crate::types::{HardState, Index, NodeId, Term, WriteId};

/// An event the host feeds into [`Node::step`](crate::Node::step).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// One logical unit of time has passed.
    Tick,
    /// A message arrived from another replica.
    Receive(Message),
    /// A client asks to append a command.
    Propose(Bytes),
    /// Several commands, appended as one batch: one write and one
    /// AppendEntries per follower instead of one per command.
    ProposeBatch(Vec<Bytes>),
    /// Append bytes for the host itself (leader only), as one
    /// [`EntryPayload::Host`](crate::EntryPayload::Host) entry: replicated,
    /// committed and handed back in [`Action::Apply`] like a command, but
    /// meant for the host's own replicated records (the tokio runtime's
    /// address book), not its state machine. Answered like a proposal.
    ProposeHost(Bytes),
    /// Every write up to and including this id is durable.
    Persisted(WriteId),
    /// The host's state machine has applied every entry up to this index.
    Applied(Index),
    /// Ask the node to snapshot now (it answers with
    /// [`Action::TakeSnapshot`] unless one is already requested or nothing
    /// was applied since the last snapshot).
    RequestSnapshot,
    /// A snapshot of the host's state machine is durable: it is the state
    /// after applying every entry up to `snapshot.position`. Answers
    /// [`Action::TakeSnapshot`]; after a restart, also hands the node the
    /// snapshot its `Recovered::base` names, so that it can send it to
    /// followers.
    ///
    /// The node keeps this as the one snapshot it serves to followers that
    /// are behind its log (asking for its bytes with
    /// [`Action::SendSnapshotChunk`], so the host keeps it readable until it
    /// reports a newer one), then releases the log entries the snapshot
    /// covers, except for the last `compaction_trailing_entries`. Build it
    /// with [`Snapshot::meta`](crate::Snapshot::meta), or from the size and
    /// [`checksum64`](crate::checksum64) the host computed while writing. The host may delete log entries
    /// up to `snapshot.position.index` from disk from now on; on restart
    /// it recovers with `base = snapshot.position`.
    ///
    /// # Panics
    ///
    /// When the position is past the applied index or names a term that is
    /// not the log's at that index: a broken host.
    Snapshotted(SnapshotMeta),
    /// A client asks for a linearizable read, without writing the log
    /// (see [`ReadPath`]). Answered with [`Action::ReadReady`] (serve the
    /// read from the state machine as it is then) or
    /// [`Action::ReadRefused`], naming `id`.
    Read {
        /// The host's id for the read, echoed in the answer.
        id: u64,
        /// How to serve it.
        path: ReadPath,
    },
    /// Change the cluster's membership (leader only). Answered like a
    /// proposal: [`Action::ProposalAccepted`] naming the configuration
    /// entry's index, or [`Action::ProposalRefused`] with
    /// [`ProposeError::Membership`] saying why (another change still in
    /// progress, an invalid change, a learner not caught up). A change of
    /// the voters passes through a joint configuration, which the leader
    /// leaves on its own once it commits.
    ChangeMembership(crate::membership::MembershipChange),
    /// Hand leadership to the voter `target` (leader only), answered with
    /// [`Action::Transfer`]: [`TransferOutcome::Started`] or
    /// [`TransferOutcome::Refused`] saying why (not the leader, the target
    /// is not a voter, not caught up within `Config::promote_lag_entries_max`
    /// or not answering, another transfer under way). Proposals are refused
    /// while it runs; it ends when the target leads (this node reports
    /// [`Action::RoleChanged`]) or after `Config::transfer_timeout_ticks`
    /// ([`TransferOutcome::TimedOut`]), when this node serves again.
    ///
    /// [`TransferOutcome::Started`]: crate::TransferOutcome::Started
    /// [`TransferOutcome::Refused`]: crate::TransferOutcome::Refused
    /// [`TransferOutcome::TimedOut`]: crate::TransferOutcome::TimedOut
    TransferLeadership(NodeId),
}

/// Something the host must do on the node's behalf.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Deliver a message to another replica (best effort: loss is fine).
    Send {
        /// Receiver.
        to: NodeId,
        /// The message.
        message: Message,
    },
    /// Make a change to the node's durable state, in order with every
    /// earlier `Persist`: first drop every log entry after
    /// `truncate_after` (if set), then append `entries`, then store
    /// `hard_state` (if set). Report completion with
    /// [`Input::Persisted`]`(id)`; writes may be batched into one fsync.
    Persist {
        /// This write's id.
        id: WriteId,
        /// New term and vote to store.
        hard_state: Option<HardState>,
        /// Remove every entry with a greater index before appending.
        truncate_after: Option<Index>,
        /// Entries to append, contiguous.
        entries: Entries,
    },
    /// Apply these committed entries to the state machine, in order. Every
    /// replica applies the same entries in the same order.
    Apply {
        /// Committed entries, contiguous, continuing the previous `Apply`.
        entries: Entries,
    },
    /// Proposals were appended to the leader's log. They will commit unless
    /// leadership is lost first; watch for them in `Apply`.
    ProposalAccepted {
        /// Term the entries were created in.
        term: Term,
        /// Index of the first proposal of the input.
        first_index: Index,
        /// Index of the last proposal of the input.
        last_index: Index,
    },
    /// Proposals were not appended.
    ProposalRefused {
        /// How many proposals of the input were refused.
        count: usize,
        /// Why.
        error: ProposeError,
    },
    /// A follower rejected, again and again, the entry at the index it had
    /// acknowledged as durable: it lost acknowledged entries (its host
    /// reported a write durable that was not, or its disk lost synced
    /// data). Raft's safety rests on those copies, so hosts should log this
    /// at error level. The leader has forgotten the follower's match index
    /// and replicates to it again from where the logs agree.
    ///
    /// One case is no fault: a leader of an older term, cut off while the
    /// group removed the follower's node and added it back empty, keeps
    /// one record of that node and may take the new replica for the old
    /// one that acknowledged. It reports this; the new replica, which
    /// recovers as any replica that starts empty does, loses nothing.
    FollowerLogRegressed {
        /// The follower.
        follower: NodeId,
        /// The highest index it had acknowledged.
        acknowledged_index: Index,
        /// The last index it now reports holding (from its rejection hint).
        reported_last_index: Index,
    },
    /// Snapshot the state machine: serialize its state after every entry
    /// applied so far (by every earlier `Apply`), store it durably, then
    /// report it with [`Input::Snapshotted`], naming the last entry
    /// applied. Keep the newest snapshot: never replace a stored snapshot
    /// with one at a lower index. Store with it the cluster configuration
    /// in force at its last entry, [`Node::membership_at`]`(index)`
    /// (see [`Snapshot::with_membership`]), and hand it back in
    /// [`Recovered::membership`](crate::Recovered::membership) after a
    /// restart: once the log is compacted, the entries that set it are
    /// gone.
    ///
    ///
    /// A witness's host (one whose node reports
    /// [`Node::is_witness_node`]) has no state machine: it stores a
    /// snapshot without state-machine data at [`Node::applied_index`] (no
    /// bytes, or only the host's own records: the tokio runtime keeps its
    /// address book there), which marks where the witness's log starts
    /// (see `docs/design.md`, "Witnesses").
    ///
    /// [`Node::membership_at`]: crate::Node::membership_at
    /// [`Snapshot::with_membership`]: crate::Snapshot::with_membership
    /// [`Node::is_witness_node`]: crate::Node::is_witness_node
    /// [`Node::applied_index`]: crate::Node::applied_index
    TakeSnapshot,
    /// Send a chunk of the snapshot last reported with
    /// [`Input::Snapshotted`]: read its bytes and send
    /// [`SnapshotChunkToSend::into_message`] to its receiver. Best effort,
    /// like `Send`.
    SendSnapshotChunk(SnapshotChunkToSend),
    /// Write `data` at `offset` of the snapshot being received from the
    /// leader. Offset 0 starts a new one: drop whatever was received
    /// before. Every later write continues exactly where the previous one
    /// ended. Need not be durable (a crash loses it and the transfer starts
    /// over); `PersistSnapshot` makes it durable once every byte arrived.
    WriteSnapshotChunk {
        /// The snapshot being received.
        snapshot: SnapshotMeta,
        /// Where `data` goes, in bytes: the total written so far.
        offset: u64,
        /// The bytes.
        data: bytes::Bytes,
    },
    /// Store the snapshot received from the leader (every byte written by
    /// `WriteSnapshotChunk`, their checksum verified by the node), in order
    /// with every earlier `Persist`, under the same contract: report it
    /// with [`Input::Persisted`]`(id)`. The stored snapshot is replaced;
    /// every log entry at or below `snapshot.position.index` is removed,
    /// and with `discard_log` every other entry too (the log then
    /// continues empty after the snapshot). From then on this is the
    /// snapshot `SendSnapshotChunk` reads.
    PersistSnapshot {
        /// This write's id.
        id: WriteId,
        /// The snapshot received.
        snapshot: SnapshotMeta,
        /// The local log did not match the snapshot's last entry: drop it
        /// all.
        discard_log: bool,
        /// The cluster configuration in force at the snapshot's last entry,
        /// sent by the leader: store it with the snapshot and hand it back
        /// in [`Recovered::membership`](crate::Recovered::membership).
        /// Boxed: a rare action, kept from making every [`Action`] (and so
        /// every move of one) larger.
        membership: Box<crate::membership::Membership>,
    },
    /// Replace the state machine's state with the snapshot received from
    /// the leader (the bytes of `WriteSnapshotChunk`, which stand for every
    /// entry up to `snapshot.position.index`), then report
    /// [`Input::Applied`]`(snapshot.position.index)`. Later `Apply` actions
    /// continue after it. Verifying `snapshot.checksum` again on the bytes
    /// read back guards against a host that stored them wrongly.
    RestoreSnapshot {
        /// The snapshot to restore from.
        snapshot: SnapshotMeta,
    },
    /// Serve read `id` now, from the state machine as it is after every
    /// `Apply` handed out so far: it has applied at least `index`, which
    /// is at or past every write acknowledged before the read arrived.
    ReadReady {
        /// The read.
        id: u64,
        /// The read index it was confirmed at.
        index: Index,
        /// How it was served (a `Lease` read the lease could not cover is
        /// served, and reported, as `ReadIndex`).
        path: ReadPath,
    },
    /// Read `id` was not served; nothing was read.
    ReadRefused {
        /// The read.
        id: u64,
        /// Why; the client may retry.
        error: ReadError,
    },
    /// A leadership transfer started, was refused, or timed out (see
    /// [`Input::TransferLeadership`]; transfers to a preferred leader are
    /// reported too).
    Transfer {
        /// The node leadership was to go to.
        target: NodeId,
        /// What became of it.
        outcome: crate::transfer::TransferOutcome,
    },
    /// This replica's recovery from lost storage moved on (see
    /// [`StorageRecovery`](crate::StorageRecovery)). Hosts should log it:
    /// an operator wants to know that a server started without the state
    /// it had promised, and when it votes again.
    /// (Boxed: rare, and larger than the common actions.)
    StorageRecovery(Box<crate::storage_loss::StorageRecoveryEvent>),
    /// This follower's committed log contradicts its leader's: one of the
    /// two lost or changed an entry that was committed. Reached only
    /// after a fault Raft does not survive (a majority that lost
    /// storage, a disk that lied about a sync, a forced recovery that
    /// dropped acknowledged writes). The node refuses every read from
    /// now on (it cannot tell which log is right); hosts should log it at
    /// error level and show it in their status. Repair is the operator's
    /// decision (docs/operations.md).
    LogDiverged(crate::storage_loss::Divergence),
    /// The node's role changed.
    RoleChanged {
        /// The new role.
        role: crate::Role,
        /// The term it holds the role in.
        term: Term,
    },
}

/// Why a proposal was refused. The client may retry, at the hinted leader
/// if one is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ProposeError {
    /// This node is not the leader.
    #[error("not the leader; the leader is {}", match leader_hint { Some(id) => format!("probably node {id}"), None => "unknown".to_string() })]
    NotLeader {
        /// The leader as far as this node knows.
        leader_hint: Option<NodeId>,
    },
    /// Too many proposals are uncommitted or unpersisted; retry later.
    #[error("too many uncommitted entries; retry after the backlog commits")]
    Backpressure,
    /// Leadership is being handed to another node.
    #[error("leadership is being transferred to node {target}; retry there")]
    TransferInProgress {
        /// The node leadership is moving to.
        target: NodeId,
    },
    /// The batch was empty.
    #[error("the proposal batch is empty")]
    Empty,
    /// A membership change was refused.
    #[error("membership change refused: {0}")]
    Membership(crate::membership::MembershipError),
}
