//! What travels in frames: the handshake, peer messages, client requests
//! and their answers.
//!
//! Every connection starts with the connecting side sending a [`Hello`]
//! frame; the accepting side answers with a [`Welcome`] and then the
//! connection carries [`PeerFrame`]s one way and [`PeerReply`]s the other (a
//! peer connection: Raft messages and keepalives, answered by keepalive
//! acknowledgements) or [`ClientRequest`]/[`ClientResponse`] pairs (a client
//! connection).

use serde::{Deserialize, Serialize};

use crate::{Message, NodeId};

use bytes::Bytes;

use super::status::NodeStatus;

/// Longest cluster id accepted in a handshake.
pub const CLUSTER_ID_MAX_BYTES: usize = 128;

/// First frame on every connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The cluster the connecting side belongs to (or, for a client, wants).
    pub cluster_id: String,
    /// Who is connecting.
    pub role: HelloRole,
}

/// Who opens a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HelloRole {
    /// A replica that will send Raft messages on this connection.
    Peer {
        /// The sender's node id.
        from: NodeId,
        /// The node id the sender believes it reached.
        to: NodeId,
    },
    /// A client that will send requests.
    Client,
}

/// The answer to a [`Hello`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Welcome {
    /// The connection is accepted.
    Accepted {
        /// The accepting node's id.
        node_id: NodeId,
    },
    /// The connection is refused and will be closed.
    Refused {
        /// Why, in words for the log.
        reason: String,
    },
}

/// A client's request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientRequest {
    /// A state-machine command (opaque to the server), replicated through
    /// the log. For the key-value service it is a session command
    /// ([`encode_command`](crate::session::encode_command)) wrapping a
    /// [`KvOp`](super::kv::KvOp): it carries the client's session and
    /// sequence number for exactly-once application.
    Command(Bytes),
    /// Ask for this node's status (answered locally, not replicated).
    Status,
    /// A linearizable read, served without a log entry on `path`: the
    /// state machine's read request, answered by
    /// [`StateMachine::query`](crate::state_machine::StateMachine::query).
    /// For the key-value service, a [`KvOp::Get`](super::kv::KvOp::Get)
    /// (bincode, no session: a read can be retried freely). `ReadIndex`
    /// and `Lease` reads go to the leader; a `Follower` read to any node.
    Read {
        /// How the read is served.
        path: crate::ReadPath,
        /// The read request.
        query: Bytes,
    },
}

/// A node's answer to a [`ClientRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientResponse {
    /// The command committed and was applied; here is the state machine's
    /// response.
    Done(Bytes),
    /// This node is not the leader; try the hinted one.
    NotLeader {
        /// The leader's id as far as this node knows.
        leader_hint: Option<NodeId>,
        /// The leader's client address, if known.
        leader_addr: Option<String>,
    },
    /// The outcome is unknown (leadership changed while the command was in
    /// flight). Retrying with the same session and sequence number is safe.
    Unknown,
    /// The node is overloaded; retry later.
    Busy,
    /// The request was refused for good.
    Error(String),
    /// The answer to [`ClientRequest::Status`].
    Status(Box<NodeStatus>),
}

/// What the connecting replica sends on a peer connection after the
/// handshake.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerFrame {
    /// A Raft message for the accepting node.
    Raft(Message),
    /// "Are you there?": the accepting side answers with
    /// [`PeerReply::KeepaliveAck`]. A sender that hears no answer within
    /// its peer timeout drops the connection and dials again, instead of
    /// writing into a connection whose packets vanish (a partition, a dead
    /// host) until the kernel's TCP retransmission, backing off
    /// exponentially, notices minutes later.
    Keepalive,
}

/// [`PeerFrame`] borrowing its message: encodes identically, without a
/// clone.
#[derive(Serialize)]
pub(crate) enum PeerFrameRef<'a> {
    Raft(&'a Message),
    Keepalive,
}

/// What the accepting side sends back on a peer connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerReply {
    /// The answer to a [`PeerFrame::Keepalive`].
    KeepaliveAck,
}
