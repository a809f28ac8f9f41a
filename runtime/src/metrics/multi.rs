//! Metrics of a server hosting many groups (`concord_tokio::multi`,
//! `concord-node --groups N`).
//!
//! No series carries a group label: a node hosts thousands of groups, and
//! one series per group would cost the scraper more than the node. Counts
//! are summed over groups; per-peer series are fine (a node has a handful
//! of peers).
//!
//! As for one group, two kinds of source:
//! * **at scrape time** from a [`MultiStatus`] the server loop answers
//!   ([`record_multi_status`]): groups hosted, active, quiesced and led,
//!   and the loop's, layer's and shared log's counters, set absolutely
//!   (the loop counts in plain integers, per batch, never per entry
//!   through the facade);
//! * **as it happens**: the shared log's fsync latency and batch sizes
//!   ([`shared_wal_round`], once per fsync), per-peer frames and bytes
//!   sent and connection state ([`PeerSendCounters`], once per write to a
//!   peer's connection), commands per proposed batch, append round trips
//!   (sampled: [`RoundTrips`](super::round_trip::RoundTrips)), snapshot
//!   transfer and restore times (once per snapshot:
//!   [`SnapshotTimes`](super::snapshot_times::SnapshotTimes)).
//!
//! The Raft events (elections, leaderships won, snapshots taken, sent and
//! installed, followers' log regressions) are the groups' own counters
//! ([`concord::Statistics`]), summed by the status query
//! ([`RaftCounts`](crate::multi::host::RaftCounts)); the session gauge is
//! the groups' session tables, summed there too.

use super::{
    Kind, Metric, APPEND_ROUND_TRIP_SECONDS, ELECTIONS_STARTED_TOTAL, ENTRIES_APPLIED_TOTAL,
    ENTRIES_COMMITTED_TOTAL, FOLLOWER_LOG_REGRESSIONS_TOTAL, LEADER_ELECTED_TOTAL, NODE_ID,
    PEER_CONNECTED, PEER_CONNECT_FAILURES_TOTAL, PROPOSALS_TOTAL, PROPOSAL_BATCH_ENTRIES,
    READS_TOTAL, REDIRECTS_TOTAL, SESSIONS, SNAPSHOTS_INSTALLED_TOTAL, SNAPSHOTS_SENT_TOTAL,
    SNAPSHOTS_TAKEN_TOTAL, SNAPSHOT_RECEIVED_BYTES_TOTAL, SNAPSHOT_RECEIVE_DURATION_SECONDS,
    SNAPSHOT_RESTORE_DURATION_SECONDS, SNAPSHOT_SEND_DURATION_SECONDS, SNAPSHOT_SENT_BYTES_TOTAL,
    UNKNOWN_OUTCOMES_TOTAL, WAL_FSYNC_DURATION_SECONDS,
};
use crate::multi::host::MultiStatus;
use concord::NodeId;

/// `concord_groups_hosted`: Raft groups this node hosts.
pub const GROUPS_HOSTED: &str = "concord_groups_hosted";
/// `concord_groups_active`: groups awake (ticked every tick).
pub const GROUPS_ACTIVE: &str = "concord_groups_active";
/// `concord_groups_quiesced`: groups asleep (not ticked until woken).
pub const GROUPS_QUIESCED: &str = "concord_groups_quiesced";
/// `concord_groups_led`: groups whose leader is this node.
pub const GROUPS_LED: &str = "concord_groups_led";
/// `concord_snapshot_chunks_paced_total`: snapshot chunks that waited for
/// the snapshot bandwidth limit (`--snapshot-send-bytes-per-sec`).
pub const SNAPSHOT_CHUNKS_PACED_TOTAL: &str = "concord_snapshot_chunks_paced_total";
/// `concord_group_sleeps_total`: times a group went to sleep.
pub const GROUP_SLEEPS_TOTAL: &str = "concord_group_sleeps_total";
/// `concord_group_wakes_total`: times a group was woken.
pub const GROUP_WAKES_TOTAL: &str = "concord_group_wakes_total";
/// `concord_frames_sent_total`: frames (one per peer per flush, every
/// group's messages in it) handed to the transport.
pub const FRAMES_SENT_TOTAL: &str = "concord_frames_sent_total";
/// `concord_frames_received_total`: frames received from peers.
pub const FRAMES_RECEIVED_TOTAL: &str = "concord_frames_received_total";
/// `concord_persist_batches_total`: persist batches (one per flush of
/// every group's writes) handed to the shared log.
pub const PERSIST_BATCHES_TOTAL: &str = "concord_persist_batches_total";
/// `concord_wal_written_bytes_total`: record bytes the shared log wrote.
pub const WAL_WRITTEN_BYTES_TOTAL: &str = "concord_wal_written_bytes_total";
/// `concord_wal_segments`: segments of the shared log on disk.
pub const WAL_SEGMENTS: &str = "concord_wal_segments";
/// `concord_wal_batch_entries`: log entries made durable by one fsync.
pub const WAL_BATCH_ENTRIES: &str = "concord_wal_batch_entries";
/// `concord_wal_batch_bytes`: record bytes made durable by one fsync.
pub const WAL_BATCH_BYTES: &str = "concord_wal_batch_bytes";
/// `concord_peer_frames_sent_total{peer}`: frames written to a peer.
pub const PEER_FRAMES_SENT_TOTAL: &str = "concord_peer_frames_sent_total";
/// `concord_peer_sent_bytes_total{peer}`: bytes written to a peer
/// (frames and keepalives, framing included).
pub const PEER_SENT_BYTES_TOTAL: &str = "concord_peer_sent_bytes_total";
/// `concord_peer_frames_dropped_total{peer}`: frames for a peer dropped
/// (its queue full, or queued while it was unreachable).
pub const PEER_FRAMES_DROPPED_TOTAL: &str = "concord_peer_frames_dropped_total";

/// Every metric of a multi-group server (the endpoint registers them all
/// at start, like [`CATALOGUE`](super::CATALOGUE) for one group). Names
/// shared with the single-group server mean the same thing, summed over
/// groups.
pub const MULTI_CATALOGUE: &[Metric] = &[
    Metric { name: NODE_ID, kind: Kind::Gauge, label: None, help: "This node's id" },
    Metric { name: GROUPS_HOSTED, kind: Kind::Gauge, label: None, help: "Raft groups this node hosts" },
    Metric { name: GROUPS_ACTIVE, kind: Kind::Gauge, label: None, help: "Groups awake: ticked every tick, heartbeating or electing" },
    Metric { name: GROUPS_QUIESCED, kind: Kind::Gauge, label: None, help: "Groups asleep (quiesced): not ticked until a message or request wakes them" },
    Metric { name: GROUPS_LED, kind: Kind::Gauge, label: None, help: "Groups whose leader is this node" },
    Metric { name: PROPOSALS_TOTAL, kind: Kind::Counter, label: None, help: "Client commands proposed on this node as leader, every group summed" },
    Metric { name: ENTRIES_COMMITTED_TOTAL, kind: Kind::Counter, label: None, help: "Log entries that became committed on this node since it started, every group summed" },
    Metric { name: ENTRIES_APPLIED_TOTAL, kind: Kind::Counter, label: None, help: "Log entries applied to the groups' state machines, every group summed" },
    Metric { name: READS_TOTAL, kind: Kind::Counter, label: Some("path"), help: "Reads served without a log entry, by path (label path: read_index, lease, follower), every group summed" },
    Metric { name: REDIRECTS_TOTAL, kind: Kind::Counter, label: None, help: "Client requests answered with a redirect to the group's leader" },
    Metric { name: UNKNOWN_OUTCOMES_TOTAL, kind: Kind::Counter, label: None, help: "Client requests answered 'outcome unknown, retry', every group summed" },
    Metric { name: SESSIONS, kind: Kind::Gauge, label: None, help: "Client sessions in the session tables of the groups' state machines, every group summed" },
    Metric { name: ELECTIONS_STARTED_TOTAL, kind: Kind::Counter, label: None, help: "Elections (not pre-elections) this node started, every group summed" },
    Metric { name: LEADER_ELECTED_TOTAL, kind: Kind::Counter, label: None, help: "Times this node became a group's leader, every group summed" },
    Metric { name: FOLLOWER_LOG_REGRESSIONS_TOTAL, kind: Kind::Counter, label: None, help: "Followers found holding less than they acknowledged as durable (a disk lost data), every group summed" },
    Metric { name: SNAPSHOTS_TAKEN_TOTAL, kind: Kind::Counter, label: None, help: "Snapshots this node took of its groups' state machines" },
    Metric { name: SNAPSHOTS_INSTALLED_TOTAL, kind: Kind::Counter, label: None, help: "Snapshots this node installed from a group's leader" },
    Metric { name: SNAPSHOTS_SENT_TOTAL, kind: Kind::Counter, label: None, help: "Snapshot transfers to followers this node started as a group's leader" },
    Metric { name: SNAPSHOT_SENT_BYTES_TOTAL, kind: Kind::Counter, label: None, help: "Snapshot bytes sent to followers, every group summed" },
    Metric { name: SNAPSHOT_RECEIVED_BYTES_TOTAL, kind: Kind::Counter, label: None, help: "Bytes of snapshots received whole from a leader, every group summed" },
    Metric { name: SNAPSHOT_CHUNKS_PACED_TOTAL, kind: Kind::Counter, label: None, help: "Snapshot chunks that waited for this node's snapshot bandwidth limit" },
    Metric { name: GROUP_SLEEPS_TOTAL, kind: Kind::Counter, label: None, help: "Times a group went to sleep (quiesced)" },
    Metric { name: GROUP_WAKES_TOTAL, kind: Kind::Counter, label: None, help: "Times a group was woken" },
    Metric { name: FRAMES_SENT_TOTAL, kind: Kind::Counter, label: None, help: "Frames (one per peer per flush, carrying every group's messages) handed to the transport" },
    Metric { name: FRAMES_RECEIVED_TOTAL, kind: Kind::Counter, label: None, help: "Frames received from peers and taken" },
    Metric { name: PERSIST_BATCHES_TOTAL, kind: Kind::Counter, label: None, help: "Persist batches (every group's writes of one flush) handed to the shared log" },
    Metric { name: WAL_WRITTEN_BYTES_TOTAL, kind: Kind::Counter, label: None, help: "Record bytes written to the shared write-ahead log" },
    Metric { name: WAL_SEGMENTS, kind: Kind::Gauge, label: None, help: "Segments of the shared write-ahead log on disk" },
    Metric { name: PEER_CONNECTED, kind: Kind::Gauge, label: Some("peer"), help: "1 while this node's outgoing connection to a peer (label peer) is up" },
    Metric { name: PEER_CONNECT_FAILURES_TOTAL, kind: Kind::Counter, label: Some("peer"), help: "Failed attempts to connect to a peer (label peer)" },
    Metric { name: PEER_FRAMES_SENT_TOTAL, kind: Kind::Counter, label: Some("peer"), help: "Frames written to a peer's connection (label peer)" },
    Metric { name: PEER_SENT_BYTES_TOTAL, kind: Kind::Counter, label: Some("peer"), help: "Bytes written to a peer's connection (label peer), framing and keepalives included" },
    Metric { name: PEER_FRAMES_DROPPED_TOTAL, kind: Kind::Counter, label: Some("peer"), help: "Frames for a peer (label peer) dropped: its queue was full or it was unreachable" },
    Metric { name: PROPOSAL_BATCH_ENTRIES, kind: Kind::Histogram, label: None, help: "Client commands per proposed batch of one group" },
    Metric { name: WAL_FSYNC_DURATION_SECONDS, kind: Kind::Histogram, label: None, help: "Duration of one fdatasync of the shared write-ahead log" },
    Metric { name: WAL_BATCH_ENTRIES, kind: Kind::Histogram, label: None, help: "Log entries of every group made durable by one fsync of the shared log" },
    Metric { name: WAL_BATCH_BYTES, kind: Kind::Histogram, label: None, help: "Record bytes made durable by one fsync of the shared log" },
    Metric { name: APPEND_ROUND_TRIP_SECONDS, kind: Kind::Histogram, label: Some("peer"), help: "Leader only: AppendEntries with entries sent to a follower (label peer) until it acknowledged them durable (sampled: at most one in flight per peer, one per tick)" },
    Metric { name: SNAPSHOT_SEND_DURATION_SECONDS, kind: Kind::Histogram, label: None, help: "Leader only: sending a snapshot to a follower, its first chunk handed to the transport until its last" },
    Metric { name: SNAPSHOT_RECEIVE_DURATION_SECONDS, kind: Kind::Histogram, label: None, help: "Receiving a snapshot from a leader, first chunk to last" },
    Metric { name: SNAPSHOT_RESTORE_DURATION_SECONDS, kind: Kind::Histogram, label: None, help: "Restoring a group's state machine from a received snapshot" },
];

/// Sets the gauges and counters of a multi-group server from its status
/// (at scrape time).
pub fn record_multi_status(status: &MultiStatus) {
    let quiesced = status.groups_hosted.saturating_sub(status.groups_awake);
    metrics::gauge!(NODE_ID).set(status.id as f64);
    metrics::gauge!(GROUPS_HOSTED).set(status.groups_hosted as f64);
    metrics::gauge!(GROUPS_ACTIVE).set(status.groups_awake as f64);
    metrics::gauge!(GROUPS_QUIESCED).set(quiesced as f64);
    metrics::gauge!(GROUPS_LED).set(status.groups_led as f64);
    metrics::gauge!(WAL_SEGMENTS).set(status.log.segments_on_disk as f64);
    metrics::gauge!(SESSIONS).set(status.sessions as f64);
    let host = &status.host;
    let raft = &status.raft;
    let counters = [
        (PROPOSALS_TOTAL, host.proposals),
        (ENTRIES_COMMITTED_TOTAL, status.entries_committed),
        (ENTRIES_APPLIED_TOTAL, host.entries_applied),
        (REDIRECTS_TOTAL, host.redirects),
        (UNKNOWN_OUTCOMES_TOTAL, host.unknown_outcomes),
        (ELECTIONS_STARTED_TOTAL, raft.elections_started),
        (LEADER_ELECTED_TOTAL, raft.leader_elected),
        (
            FOLLOWER_LOG_REGRESSIONS_TOTAL,
            raft.follower_log_regressions,
        ),
        (SNAPSHOTS_TAKEN_TOTAL, raft.snapshots_taken),
        (SNAPSHOTS_INSTALLED_TOTAL, raft.snapshots_installed),
        (SNAPSHOTS_SENT_TOTAL, raft.snapshot_transfers_started),
        (SNAPSHOT_SENT_BYTES_TOTAL, status.layer.snapshot_bytes_sent),
        (SNAPSHOT_RECEIVED_BYTES_TOTAL, host.snapshot_bytes_received),
        (
            SNAPSHOT_CHUNKS_PACED_TOTAL,
            status.layer.snapshot_chunks_held,
        ),
        (GROUP_SLEEPS_TOTAL, status.layer.sleeps),
        (GROUP_WAKES_TOTAL, status.layer.wakes),
        (FRAMES_SENT_TOTAL, status.layer.frames_sent),
        (FRAMES_RECEIVED_TOTAL, status.layer.frames_received),
        (PERSIST_BATCHES_TOTAL, status.layer.persist_batches),
        (WAL_WRITTEN_BYTES_TOTAL, status.log.bytes_written),
    ];
    let reads = [host.reads_read_index, host.reads_lease, host.reads_follower];
    super::record_counters(&counters, reads);
}

/// One fsync of the shared log made `entries` entries in `bytes` record
/// bytes durable.
pub fn shared_wal_round(entries: u64, bytes: u64) {
    metrics::histogram!(WAL_BATCH_ENTRIES).record(entries as f64);
    metrics::histogram!(WAL_BATCH_BYTES).record(bytes as f64);
}

/// One peer's send-side series, looked up once (a handle update is an
/// atomic add; nothing is looked up per frame).
#[derive(Clone, Debug)]
pub struct PeerSendCounters {
    frames_sent: metrics::Counter,
    bytes_sent: metrics::Counter,
    frames_dropped: metrics::Counter,
}

impl PeerSendCounters {
    /// The series of `peer`, created at zero (so they show before the
    /// first frame).
    pub fn new(peer: NodeId) -> Self {
        let label = peer.to_string();
        let counters = PeerSendCounters {
            frames_sent: metrics::counter!(PEER_FRAMES_SENT_TOTAL, "peer" => label.clone()),
            bytes_sent: metrics::counter!(PEER_SENT_BYTES_TOTAL, "peer" => label.clone()),
            frames_dropped: metrics::counter!(PEER_FRAMES_DROPPED_TOTAL, "peer" => label),
        };
        counters.frames_sent.increment(0);
        counters.bytes_sent.increment(0);
        counters.frames_dropped.increment(0);
        // The peer's round-trip histogram shows (empty) from now on too,
        // not only once this node led a group it follows.
        drop(metrics::histogram!(APPEND_ROUND_TRIP_SECONDS, "peer" => peer.to_string()));
        counters
    }

    /// One write of `frames` frames in `bytes` bytes.
    pub fn written(&self, frames: u64, bytes: u64) {
        self.frames_sent.increment(frames);
        self.bytes_sent.increment(bytes);
    }

    /// `frames` frames for the peer were dropped.
    pub fn dropped(&self, frames: u64) {
        self.frames_dropped.increment(frames);
    }
}
