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

use concord::{Message, NodeId};

use bytes::Bytes;

use super::identity::Incarnation;
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
        /// The sender's cluster incarnation, if it knows one (see
        /// [`identity`](super::identity)): two clusters of one name are
        /// told apart by it. The accepting side refuses another one, and
        /// adopts it while it knows none, so every node learns it from
        /// the first peer that dials it knowing it.
        incarnation: Option<Incarnation>,
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
    /// the log. For a service with exactly-once clients it is a session
    /// command ([`encode_command`](concord::session::encode_command)) around
    /// the service's request: it carries the client's session and sequence
    /// number.
    Command(Bytes),
    /// Ask for this node's status (answered locally, not replicated).
    Status,
    /// A linearizable read, served without a log entry on `path`: the
    /// state machine's read request, answered by
    /// [`StateMachine::query`](concord::state_machine::StateMachine::query)
    /// (no session: a read can be retried freely). `ReadIndex` and `Lease`
    /// reads go to the leader; a `Follower` read to any node.
    Read {
        /// How the read is served.
        path: concord::ReadPath,
        /// The read request.
        query: Bytes,
    },
    /// A membership request, answered with [`ClientResponse::Admin`]
    /// (`concord-cli member ...`).
    Admin(AdminRequest),
}

/// A request to inspect or change the cluster's membership. Changes go to
/// the leader; one change runs at a time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminRequest {
    /// The members as this node sees them (any node answers; only the
    /// leader knows the followers' progress).
    List,
    /// Add a new node as a learner: its address is committed through the
    /// log first (see [`addresses`](super::addresses)), then the change.
    AddLearner {
        /// The new node's id.
        id: NodeId,
        /// Where it listens, `host:port`.
        addr: String,
    },
    /// Add a new node directly as a voter (through a joint configuration).
    /// Prefer [`AdminRequest::AddLearner`] then
    /// [`AdminRequest::Promote`]: a voter that has no log yet weakens the
    /// quorum until it caught up.
    AddVoter {
        /// The new node's id.
        id: NodeId,
        /// Where it listens, `host:port`.
        addr: String,
    },
    /// Make a caught-up learner a voter.
    Promote {
        /// The learner.
        id: NodeId,
    },
    /// Remove a voter or a learner.
    Remove {
        /// The node.
        id: NodeId,
    },
    /// Hand leadership to the caught-up voter `id`.
    TransferLeader {
        /// The voter to lead.
        id: NodeId,
    },
    /// Add a new node as a witness voter (through a joint configuration):
    /// it stores the log and votes but holds no state machine and never
    /// leads (see `docs/design.md`, "Witnesses"). Start its server
    /// as a witness first (`concord-node --join --witness`). Checked like
    /// [`AdminRequest::AddVoter`], and refused when the full voters would
    /// no longer be a majority of the voters.
    AddWitness {
        /// The new node's id.
        id: NodeId,
        /// Where it listens, `host:port`.
        addr: String,
    },
}

/// The answer to an [`AdminRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminResponse {
    /// Done: the change is committed and final (a joint configuration it
    /// went through was left), or the transfer ended with the target
    /// leading. The members as they are now.
    Done(Members),
    /// This node is not the leader; send the request to the hinted one.
    NotLeader {
        /// The leader's id as far as this node knows.
        leader_hint: Option<NodeId>,
        /// The leader's address, if known.
        leader_addr: Option<String>,
    },
    /// Refused; nothing changed. The reason, to act on (the core's error
    /// text for an invalid change, a learner not caught up, another change
    /// in progress).
    Refused(String),
    /// The request did not finish within the server's admin timeout, or
    /// leadership changed under it: it may or may not take effect. Run
    /// `member list` to see.
    TimedOut(String),
}

/// The cluster's members as one node sees them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Members {
    /// The node that answered.
    pub answered_by: NodeId,
    /// Its term.
    pub term: concord::Term,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// Its commit index.
    pub commit_index: concord::Index,
    /// Index of the entry holding the configuration in force.
    pub configuration_index: concord::Index,
    /// Whether that entry is committed.
    pub configuration_committed: bool,
    /// Voters (C_new while joint).
    pub voters: Vec<NodeId>,
    /// Outgoing voters C_old while the configuration is joint.
    pub voters_outgoing: Vec<NodeId>,
    /// Learners.
    pub learners: Vec<NodeId>,
    /// Every member, in id order.
    pub members: Vec<MemberInfo>,
    /// The latest forced recovery in the answering node's log, for a
    /// person: "forced recovery at index I, term T: ...".
    pub forced_recovery: Option<String>,
    /// Set when the answering node knows it is no longer a member (see
    /// [`NodeStatus::not_member_since`]): this view is stale, ask another
    /// server.
    pub not_member_since: Option<concord::Index>,
}

/// One member.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Its id.
    pub id: NodeId,
    /// `voter` (a full voter), `witness` (a witness voter), `learner`,
    /// or while a change is joint `outgoing voter` / `outgoing witness`
    /// (a voter of C_old only).
    pub role: String,
    /// Its address in the replicated address book, if known.
    pub addr: Option<String>,
    /// Highest index known replicated there (known to the leader; the
    /// leader's own last index for itself).
    pub match_index: Option<concord::Index>,
    /// Entries behind the leader's last index (known to the leader).
    pub lag_entries: Option<u64>,
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
    /// The answer to [`ClientRequest::Admin`].
    Admin(Box<AdminResponse>),
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

/// What the accepting side sends back on a peer connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerReply {
    /// The answer to a [`PeerFrame::Keepalive`].
    KeepaliveAck,
}
