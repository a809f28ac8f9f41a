//! A point-in-time snapshot of one server: what `concord-cli status` shows
//! and what a metrics exporter would scrape.

use serde::{Deserialize, Serialize};

use crate::{Index, Node, NodeId, ProgressState, Role, Term};

/// A snapshot of one server's Raft state and counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// This node's id.
    pub id: NodeId,
    /// `Follower`, `PreCandidate`, `Candidate` or `Leader`.
    pub role: String,
    /// Current term.
    pub term: Term,
    /// The leader this node knows of.
    pub leader: Option<NodeId>,
    /// Last log index.
    pub last_index: Index,
    /// Highest index known durable locally.
    pub persisted_index: Index,
    /// Commit index.
    pub commit_index: Index,
    /// Highest index applied to the state machine.
    pub applied_index: Index,
    /// Last index covered by the newest snapshot this node took, installed
    /// or recovered from (0 when none).
    pub snapshot_index: Index,
    /// Term of that entry (0 when none).
    pub snapshot_term: Term,
    /// First log index still held in memory (entries before it are only in
    /// the snapshot).
    pub first_index: Index,
    /// Per-follower replication progress (leader only).
    pub peers: Vec<PeerStatus>,
    /// Counters kept by the server (not the core).
    pub server: ServerCounters,
    /// Set when this node knows it is no longer a member (see
    /// [`Node::not_member_since`]): the index of the configuration that
    /// left it out. Its other answers are then stale: ask another server.
    pub not_member_since: Option<Index>,
}

/// A leader's view of one follower.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// The follower.
    pub id: NodeId,
    /// Highest index known replicated there: confirmed in `Replicate`
    /// state; in `Probe` state the last one confirmed, which the leader is
    /// checking (after a restart the follower may hold less).
    pub match_index: Index,
    /// Next index to send.
    pub next_index: Index,
    /// AppendEntries messages in flight.
    pub inflight_messages: usize,
    /// `Probe` or `Replicate`.
    pub state: String,
    /// Times this follower was found holding less than it had acknowledged
    /// as durable while this node led (non-zero means a disk lost data).
    pub log_regressions: u64,
    /// Milliseconds since a message from this follower last arrived
    /// (`None`: none since this server started).
    pub last_contact_ms: Option<u64>,
}

/// Counters kept by the server loop and transport.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerCounters {
    /// Ticks fed to the node.
    pub ticks: u64,
    /// Peer messages received.
    pub messages_received: u64,
    /// Peer messages handed to the transport.
    pub messages_sent: u64,
    /// Client commands proposed.
    pub proposals: u64,
    /// Proposal batches (one `ProposeBatch` each).
    pub proposal_batches: u64,
    /// Entries applied to the state machine.
    pub entries_applied: u64,
    /// Client requests answered with a redirect.
    pub redirects: u64,
    /// Reads served without the log after a ReadIndex round (here as
    /// leader).
    pub reads_read_index: u64,
    /// Reads served under the leader lease.
    pub reads_lease: u64,
    /// Follower reads served here.
    pub reads_follower: u64,
    /// Client requests answered "unknown, retry".
    pub unknown_outcomes: u64,
    /// Writes handed to storage.
    pub writes_submitted: u64,
    /// Elections this node started (from the core's statistics).
    pub elections_started: u64,
    /// Times this node became leader.
    pub leader_elected: u64,
    /// Followers found, while this node led, holding less than they had
    /// acknowledged as durable (logged at error level; non-zero means a
    /// disk or write-ahead log lost synced data).
    pub follower_log_regressions: u64,
    /// Snapshots this node took of its own state machine since it started
    /// (from the core's statistics).
    pub snapshots_taken: u64,
    /// Snapshots this node installed from a leader since it started (from
    /// the core's statistics).
    pub snapshots_installed: u64,
    /// Snapshot transfers to followers this node started while leading
    /// (from the core's statistics).
    pub snapshot_transfers_started: u64,
    /// Snapshot bytes this node read from its stored snapshot and sent to
    /// followers, in chunks.
    pub snapshot_bytes_sent: u64,
    /// Bytes of the snapshots this node received whole from a leader.
    pub snapshot_bytes_received: u64,
    /// Wall time of the last snapshot received from a leader, from its
    /// first chunk to its last, in microseconds (0 if none).
    pub last_snapshot_receive_micros: u64,
    /// Wall time of the last restore of the state machine from a leader's
    /// snapshot (read back, checksum, decode), in microseconds.
    pub last_snapshot_restore_micros: u64,
}

impl NodeStatus {
    /// Reads the status of `node`.
    pub fn of(node: &Node, server: ServerCounters) -> NodeStatus {
        let stats = node.stats();
        let mut server = server;
        server.elections_started = stats.elections_started;
        server.leader_elected = stats.leader_elected;
        server.snapshots_taken = stats.snapshots_taken;
        server.snapshots_installed = stats.snapshots_installed;
        server.snapshot_transfers_started = stats.snapshot_transfers_started;
        let snapshot = node.snapshot_position().unwrap_or_default();
        let peers = if node.role() == Role::Leader {
            node.progress_all()
                .filter(|(id, _)| *id != node.id())
                .map(|(id, p)| PeerStatus {
                    id,
                    match_index: p.match_index,
                    next_index: p.next_index,
                    inflight_messages: p.inflight_messages,
                    log_regressions: p.log_regressions,
                    last_contact_ms: None,
                    state: match p.state {
                        ProgressState::Probe => "Probe".to_string(),
                        ProgressState::Replicate => "Replicate".to_string(),
                        ProgressState::Snapshot => "Snapshot".to_string(),
                    },
                })
                .collect()
        } else {
            Vec::new()
        };
        NodeStatus {
            id: node.id(),
            role: format!("{:?}", node.role()),
            term: node.term(),
            leader: node.leader(),
            last_index: node.last_index(),
            persisted_index: node.persisted_index(),
            commit_index: node.commit_index(),
            applied_index: node.applied_index(),
            snapshot_index: snapshot.index,
            snapshot_term: snapshot.term,
            first_index: node.first_index(),
            peers,
            server,
            not_member_since: node.not_member_since(),
        }
    }
}
