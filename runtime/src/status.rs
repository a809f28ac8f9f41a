//! A point-in-time snapshot of one server: what `concord-cli status` shows
//! and what a metrics exporter would scrape.

use serde::{Deserialize, Serialize};

use concord::{
    Divergence, Index, Node, NodeId, ProgressState, Role, StorageRecovery, StorageRecoveryEvent,
    Term,
};

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
    /// Set while this server recovers from lost storage (it started empty,
    /// or its leader saw it lose an entry it had acknowledged): what it
    /// waits for before it votes again (see [`StorageRecovery`]).
    #[serde(default)]
    pub storage_recovery: Option<String>,
    /// Set once this server's committed log was found contradicting its
    /// leader's: where, and both terms. It serves no reads since.
    #[serde(default)]
    pub divergence: Option<String>,
}

/// What a recovery from lost storage waits for, for an operator.
pub fn storage_recovery_text(node: &Node) -> Option<String> {
    match node.storage_recovery() {
        StorageRecovery::None => None,
        StorageRecovery::AwaitingReports => {
            let (reporters, needed) = node.recovery_reports();
            Some(format!(
                "lost storage (or new to a running cluster): not voting; waiting for {needed} \
                 peer(s) to report what they hold, {} so far {:?} (a peer that cannot be \
                 reached keeps it waiting: bring it back)",
                reporters.len(),
                reporters
            ))
        }
        StorageRecovery::CatchingUp { floor, term } => Some(format!(
            "lost storage: not voting until its durable log reaches index {} of term {} \
             (now index {}) and its term passes {term} (now {})",
            floor.index,
            floor.term,
            node.persisted_index(),
            node.term()
        )),
    }
}

/// Logs a step of a recovery from lost storage, saying what it means and
/// what to do (one line each; the runtime's loops call it for
/// [`Action::StorageRecovery`](concord::Action::StorageRecovery)).
pub fn log_storage_recovery(event: &StorageRecoveryEvent) {
    match event {
        StorageRecoveryEvent::NewCluster { empty } => tracing::info!(
            ?empty,
            "a new cluster: every voter started with empty storage; voting"
        ),
        StorageRecoveryEvent::FloorLearned {
            floor,
            term,
            reporters,
        } => tracing::warn!(
            ?reporters,
            floor_index = floor.index,
            floor_term = floor.term,
            term,
            "this server started with empty or damaged storage in a running cluster: it \
             will not vote until its durable log reaches the index and term its peers \
             reported (it catches up from the leader on its own). If its disk was \
             replaced, nothing else is needed"
        ),
        StorageRecoveryEvent::Recovered { durable } => tracing::info!(
            index = durable.index,
            term = durable.term,
            "caught up after lost storage: this server votes again"
        ),
        StorageRecoveryEvent::AcknowledgedEntryLost {
            acknowledged,
            leader,
        } => tracing::error!(
            leader,
            index = acknowledged.index,
            term = acknowledged.term,
            "this server lost a log entry it had acknowledged as durable (its disk or \
             file system lost synced data: check it); not voting until it has caught up"
        ),
    }
}

/// Logs, at start, that `groups` groups (1 for a one-group server) start
/// with empty storage or a recovery under way: what it means and what to
/// do.
pub fn log_starting_recovery(groups: usize) {
    // Info, not a warning: most such starts are a new cluster's.
    tracing::info!(
        groups,
        "this server starts with empty storage (a new cluster's server, one added to a \
         running cluster, or one whose disk was lost): it asks its peers what it may have \
         promised and does not vote until it holds that much. A new cluster elects once \
         every voter has started; a running one needs a majority of the other voters to \
         answer. `concord-cli status` shows what it waits for"
    );
}

/// Logs a divergence at error level (for
/// [`Action::LogDiverged`](concord::Action::LogDiverged)).
pub fn log_divergence(divergence: &Divergence) {
    tracing::error!(
        leader = divergence.leader,
        index = divergence.index,
        local_term = divergence.local_term,
        leader_term = divergence.leader_term,
        "this server's committed log contradicts its leader's: one of them lost or changed \
         a committed entry (more servers lost storage than Raft survives, or a forced \
         recovery). Serving no reads from now on; see docs/operations.md, \"A diverged \
         server\""
    );
}

/// A divergence, for an operator.
pub fn divergence_text(node: &Node) -> Option<String> {
    node.divergence().map(|d| {
        format!(
            "committed log contradicts the leader's (node {}) at index {}: term {} here, \
             term {} at the leader; serving no reads (docs/operations.md, \"A diverged \
             server\")",
            d.leader, d.index, d.local_term, d.leader_term
        )
    })
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
            storage_recovery: storage_recovery_text(node),
            divergence: divergence_text(node),
        }
    }
}
