//! The frame: everything one node says to one peer in one flush, for
//! every group at once. Plain data, like [`Message`]: the host chooses the
//! encoding (every type here is serde-serializable).
//!
//! A frame carries each group's messages with the group's id, and the two
//! messages every idle group sends most — the leader's heartbeat and its
//! answer — in a compact fixed-size form of their own
//! ([`GroupHeartbeat`], [`GroupHeartbeatAnswer`]). The compact forms are
//! exact: expanding one gives back the very [`Message`] the group's node
//! emitted (the sender and receiver are the frame's), so reads confirmed
//! by heartbeat rounds, leases and commit propagation work per group as
//! they do on a lone node. The frame itself, sent to every peer at least
//! once per `liveness_interval_ticks`, is the node-level heartbeat.

use serde::{Deserialize, Serialize};

use crate::message::{Message, MessageBody};
use crate::types::{Index, LogPosition, NodeId, Term};

/// Identifies one Raft group among those a cluster runs. Chosen by the
/// host (or the [`Catalog`](super::Catalog)); never reused for another
/// group, so that a message delayed from a removed group cannot reach a
/// new one.
pub type GroupId = u64;

/// Bytes counted for an item's fixed part (ids, term, kind), whatever the
/// encoding: enough that a frame of empty items is still bounded.
pub const FRAME_ITEM_OVERHEAD_BYTES: usize = 32;

/// One node's output to one peer for one flush.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    /// The sending node.
    pub from: NodeId,
    /// The receiving node.
    pub to: NodeId,
    /// The sender's [`MultiConfig::incarnation`](super::MultiConfig::incarnation):
    /// a change tells the receiver the sender restarted.
    pub incarnation: u64,
    /// Messages of the groups, each with its group id, in the order the
    /// groups emitted them.
    pub messages: Vec<GroupMessage>,
    /// Leaders' heartbeats ([`MessageBody::Heartbeat`]), compact.
    pub heartbeats: Vec<GroupHeartbeat>,
    /// Followers' answers to them ([`MessageBody::HeartbeatResponse`]),
    /// compact.
    pub heartbeat_answers: Vec<GroupHeartbeatAnswer>,
    /// A leader asks its followers to quiesce (see `quiescence.rs`).
    pub quiesce: Vec<QuiesceRequest>,
    /// Followers' answers to [`Frame::quiesce`].
    pub quiesce_answers: Vec<QuiesceAnswer>,
}

impl Frame {
    /// An empty frame: on its own, a node-level heartbeat.
    pub fn new(from: NodeId, to: NodeId, incarnation: u64) -> Self {
        Frame {
            from,
            to,
            incarnation,
            ..Frame::default()
        }
    }

    /// Items of every kind the frame carries.
    pub fn items(&self) -> usize {
        self.messages.len()
            + self.heartbeats.len()
            + self.heartbeat_answers.len()
            + self.quiesce.len()
            + self.quiesce_answers.len()
    }

    /// Whether the frame carries nothing for any group (a bare node-level
    /// heartbeat).
    pub fn is_empty(&self) -> bool {
        self.items() == 0
    }

    /// Estimated size: [`FRAME_ITEM_OVERHEAD_BYTES`] per item plus the
    /// payload bytes of entries and snapshot chunks. What
    /// `MultiConfig::frame_bytes_max` bounds.
    pub fn size_bytes(&self) -> usize {
        FRAME_ITEM_OVERHEAD_BYTES * (1 + self.items())
            + self
                .messages
                .iter()
                .map(|message| body_payload_bytes(&message.body))
                .sum::<usize>()
    }
}

/// Payload bytes of a message body beyond its fixed part.
pub(crate) fn body_payload_bytes(body: &MessageBody) -> usize {
    match body {
        MessageBody::AppendEntries { entries, .. }
        | MessageBody::CandidateCatchUp { entries, .. } => {
            entries.iter().map(|entry| entry.size_bytes()).sum()
        }
        MessageBody::InstallSnapshot(chunk) => chunk.data.len() + chunk.membership.len_bytes(),
        _ => 0,
    }
}

/// One message of one group. The sender and receiver are the frame's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMessage {
    /// The group.
    pub group: GroupId,
    /// The sender's term ([`Message::term`]).
    pub term: Term,
    /// [`Message::progress_id`].
    pub progress_id: u64,
    /// What it says.
    pub body: MessageBody,
}

impl GroupMessage {
    /// The group's message as its node emitted it, sent by `from` to `to`.
    pub fn expand(&self, from: NodeId, to: NodeId) -> Message {
        Message {
            from,
            to,
            term: self.term,
            progress_id: self.progress_id,
            body: self.body.clone(),
        }
    }
}

/// A leader's heartbeat to one follower, compact:
/// `Heartbeat { commit, read_round }` in `term`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupHeartbeat {
    /// The group.
    pub group: GroupId,
    /// The leader's term.
    pub term: Term,
    /// [`Message::progress_id`]: the leader's record of the follower.
    pub progress_id: u64,
    /// The leader's commit index, capped by the leader's node at what the
    /// follower is known to hold.
    pub commit: Index,
    /// The leader's confirmation round (reads and leases).
    pub read_round: u64,
}

impl GroupHeartbeat {
    /// The message the leader's node emitted.
    pub fn expand(&self, from: NodeId, to: NodeId) -> Message {
        Message {
            from,
            to,
            term: self.term,
            progress_id: self.progress_id,
            body: MessageBody::Heartbeat {
                commit: self.commit,
                read_round: self.read_round,
            },
        }
    }
}

/// A follower's answer to a heartbeat, compact:
/// `HeartbeatResponse { read_round }` in `term`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupHeartbeatAnswer {
    /// The group.
    pub group: GroupId,
    /// The answering node's term.
    pub term: Term,
    /// [`Message::progress_id`], echoed.
    pub progress_id: u64,
    /// The round answered (0 for none).
    pub read_round: u64,
}

impl GroupHeartbeatAnswer {
    /// The message the follower's node emitted.
    pub fn expand(&self, from: NodeId, to: NodeId) -> Message {
        Message {
            from,
            to,
            term: self.term,
            progress_id: self.progress_id,
            body: MessageBody::HeartbeatResponse {
                read_round: self.read_round,
            },
        }
    }
}

/// A leader whose log is committed, applied and held by every live
/// follower asks each to quiesce. The follower's node takes it as the
/// [`MessageBody::CommitNotice`] `{ last, commit: last.index }` (so it
/// commits only what matches the leader's log, and refuses it with a hint
/// otherwise); the follower's layer then answers whether it holds,
/// committed and applied exactly `last` with nothing else pending.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuiesceRequest {
    /// The group.
    pub group: GroupId,
    /// The leader's term.
    pub term: Term,
    /// [`Message::progress_id`]: the leader's record of the follower.
    pub progress_id: u64,
    /// The leader's last entry, which is also its commit index.
    pub last: LogPosition,
}

impl QuiesceRequest {
    /// The commit notice the follower's node is given.
    pub fn expand(&self, from: NodeId, to: NodeId) -> Message {
        Message {
            from,
            to,
            term: self.term,
            progress_id: self.progress_id,
            body: MessageBody::CommitNotice {
                last: self.last,
                commit: self.last.index,
            },
        }
    }
}

/// A follower's answer to a [`QuiesceRequest`]. An accepted answer is
/// also a heartbeat answer (it shows the follower alive in the leader's
/// term) and a promise: the follower sleeps until something for the group
/// arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuiesceAnswer {
    /// The group.
    pub group: GroupId,
    /// The term of the request answered.
    pub term: Term,
    /// [`Message::progress_id`], echoed: the leader takes the answer only
    /// if it names its record of the follower now.
    pub progress_id: u64,
    /// The `last.index` of the request answered.
    pub last_index: Index,
    /// Whether the follower quiesced.
    pub accepted: bool,
}

impl QuiesceAnswer {
    /// The heartbeat answer an accepted quiescence stands for.
    pub fn expand(&self, from: NodeId, to: NodeId) -> Message {
        Message {
            from,
            to,
            term: self.term,
            progress_id: self.progress_id,
            body: MessageBody::HeartbeatResponse { read_round: 0 },
        }
    }
}
