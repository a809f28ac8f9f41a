//! Prometheus metrics of a server: names, what each means, and the calls
//! that record them.
//!
//! The runtime records through the [`metrics`] facade: a global recorder
//! that costs one atomic load per call while none is installed, so the
//! instrumentation points (the server loop, the WAL's fsync thread, the
//! transport's peer tasks) need no handle passed to them and a server
//! without `--metrics-listen` pays nothing. `endpoint` (feature
//! `metrics`) installs the Prometheus recorder of
//! `metrics-exporter-prometheus`, which renders the exposition format,
//! and answers `GET /metrics` with it.
//!
//! Two kinds of source:
//! * **at scrape time** from a [`NodeStatus`] the server loop answers
//!   ([`record_status`]): the Raft state (role, term, indices, per-follower
//!   lag) and the server's counters, set absolutely, so nothing is counted
//!   twice;
//! * **as it happens** from the hooks below: histograms (batch sizes,
//!   fsync latency, append round trips, snapshot transfer times), entries
//!   committed, peer connection state, session table size.
//!
//! A server hosting many groups exports its own set, [`multi::MULTI_CATALOGUE`]
//! (no per-group series), through the same endpoint.
//!
//! One recorder per process: a process that runs several servers (tests)
//! installs none, or shares one. Every metric is listed in [`CATALOGUE`];
//! `docs/metrics.md` lists the same names (a test compares it with a
//! scrape).

#[cfg(all(feature = "metrics", not(madsim)))]
pub mod endpoint;
pub mod multi;
pub mod round_trip;
pub mod snapshot_times;

use std::time::Duration;

use super::status::NodeStatus;
use concord::NodeId;

/// Whether a metric counts up, goes up and down, or is a distribution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only increases (name ends in `_total`).
    Counter,
    /// Any value.
    Gauge,
    /// Observations in buckets (`_bucket`, `_sum`, `_count` series).
    Histogram,
}

/// One metric of [`CATALOGUE`].
#[derive(Clone, Copy, Debug)]
pub struct Metric {
    /// Its name.
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: Kind,
    /// The label its series carry, if any (such a series appears once it
    /// is first recorded, not at start).
    pub label: Option<&'static str>,
    /// What it measures (the HELP line).
    pub help: &'static str,
}

/// `concord_role{role}`: 1 for the role this node is in, 0 for the others.
pub const ROLE: &str = "concord_role";
/// `concord_node_id`: this node's id.
pub const NODE_ID: &str = "concord_node_id";
/// `concord_term`: the current term.
pub const TERM: &str = "concord_term";
/// `concord_leader_id`: the leader this node knows of (0: none).
pub const LEADER_ID: &str = "concord_leader_id";
/// `concord_last_index`: last log index.
pub const LAST_INDEX: &str = "concord_last_index";
/// `concord_persisted_index`: highest index durable locally.
pub const PERSISTED_INDEX: &str = "concord_persisted_index";
/// `concord_commit_index`: commit index.
pub const COMMIT_INDEX: &str = "concord_commit_index";
/// `concord_applied_index`: highest index applied.
pub const APPLIED_INDEX: &str = "concord_applied_index";
/// `concord_snapshot_index`: last index the newest snapshot covers.
pub const SNAPSHOT_INDEX: &str = "concord_snapshot_index";
/// `concord_follower_lag_entries{peer}`: leader only.
pub const FOLLOWER_LAG_ENTRIES: &str = "concord_follower_lag_entries";
/// `concord_follower_last_contact_seconds{peer}`: leader only.
pub const FOLLOWER_LAST_CONTACT_SECONDS: &str = "concord_follower_last_contact_seconds";
/// `concord_peer_connected{peer}`: 1 while the outgoing connection is up.
pub const PEER_CONNECTED: &str = "concord_peer_connected";
/// `concord_peer_connect_failures_total{peer}`.
pub const PEER_CONNECT_FAILURES_TOTAL: &str = "concord_peer_connect_failures_total";
/// `concord_sessions`: client sessions in the state machine's table.
pub const SESSIONS: &str = "concord_sessions";
/// `concord_proposals_total`: client commands proposed here.
pub const PROPOSALS_TOTAL: &str = "concord_proposals_total";
/// `concord_entries_committed_total`: entries this node saw commit.
pub const ENTRIES_COMMITTED_TOTAL: &str = "concord_entries_committed_total";
/// `concord_entries_applied_total`: entries applied to the state machine.
pub const ENTRIES_APPLIED_TOTAL: &str = "concord_entries_applied_total";
/// `concord_reads_total{path}`: reads served without the log, by path.
pub const READS_TOTAL: &str = "concord_reads_total";
/// `concord_redirects_total`: client requests sent to the leader.
pub const REDIRECTS_TOTAL: &str = "concord_redirects_total";
/// `concord_unknown_outcomes_total`: answers "unknown, retry".
pub const UNKNOWN_OUTCOMES_TOTAL: &str = "concord_unknown_outcomes_total";
/// `concord_messages_sent_total`: peer messages sent.
pub const MESSAGES_SENT_TOTAL: &str = "concord_messages_sent_total";
/// `concord_messages_received_total`: peer messages received.
pub const MESSAGES_RECEIVED_TOTAL: &str = "concord_messages_received_total";
/// `concord_elections_started_total`.
pub const ELECTIONS_STARTED_TOTAL: &str = "concord_elections_started_total";
/// `concord_leader_elected_total`: times this node became leader.
pub const LEADER_ELECTED_TOTAL: &str = "concord_leader_elected_total";
/// `concord_follower_log_regressions_total`: a follower lost acked entries.
pub const FOLLOWER_LOG_REGRESSIONS_TOTAL: &str = "concord_follower_log_regressions_total";
/// `concord_snapshots_taken_total`.
pub const SNAPSHOTS_TAKEN_TOTAL: &str = "concord_snapshots_taken_total";
/// `concord_snapshots_installed_total`: snapshots received and installed.
pub const SNAPSHOTS_INSTALLED_TOTAL: &str = "concord_snapshots_installed_total";
/// `concord_snapshots_sent_total`: snapshot transfers started as leader.
pub const SNAPSHOTS_SENT_TOTAL: &str = "concord_snapshots_sent_total";
/// `concord_snapshot_sent_bytes_total`.
pub const SNAPSHOT_SENT_BYTES_TOTAL: &str = "concord_snapshot_sent_bytes_total";
/// `concord_snapshot_received_bytes_total`.
pub const SNAPSHOT_RECEIVED_BYTES_TOTAL: &str = "concord_snapshot_received_bytes_total";
/// `concord_proposal_batch_entries`: commands per proposed batch.
pub const PROPOSAL_BATCH_ENTRIES: &str = "concord_proposal_batch_entries";
/// `concord_wal_fsync_duration_seconds`: one fdatasync of the WAL.
pub const WAL_FSYNC_DURATION_SECONDS: &str = "concord_wal_fsync_duration_seconds";
/// `concord_wal_batch_writes`: writes made durable by one WAL batch.
pub const WAL_BATCH_WRITES: &str = "concord_wal_batch_writes";
/// `concord_append_round_trip_seconds{peer}`: AppendEntries to its
/// acknowledgement (the follower's fsync included).
pub const APPEND_ROUND_TRIP_SECONDS: &str = "concord_append_round_trip_seconds";
/// `concord_snapshot_send_duration_seconds`: leader only, a snapshot's
/// first chunk to a follower handed to the transport until its last.
pub const SNAPSHOT_SEND_DURATION_SECONDS: &str = "concord_snapshot_send_duration_seconds";
/// `concord_snapshot_receive_duration_seconds`: first chunk to last.
pub const SNAPSHOT_RECEIVE_DURATION_SECONDS: &str = "concord_snapshot_receive_duration_seconds";
/// `concord_snapshot_restore_duration_seconds`: state machine restore.
pub const SNAPSHOT_RESTORE_DURATION_SECONDS: &str = "concord_snapshot_restore_duration_seconds";

/// Every metric: name, kind, help text. The endpoint registers them all at
/// start, so a scrape shows each (at zero) before it first moves, and
/// dashboards and alerts never meet a missing series. Per-peer and
/// per-path series appear once that peer or path is seen.
pub const CATALOGUE: &[Metric] = &[
    Metric { name: ROLE, kind: Kind::Gauge, label: Some("role"), help: "1 for the Raft role this node is in (label role), 0 for the others" },
    Metric { name: NODE_ID, kind: Kind::Gauge, label: None, help: "This node's id" },
    Metric { name: TERM, kind: Kind::Gauge, label: None, help: "Current Raft term" },
    Metric { name: LEADER_ID, kind: Kind::Gauge, label: None, help: "The leader this node knows of (0: none known)" },
    Metric { name: LAST_INDEX, kind: Kind::Gauge, label: None, help: "Last log index" },
    Metric { name: PERSISTED_INDEX, kind: Kind::Gauge, label: None, help: "Highest log index durable on this node's disk" },
    Metric { name: COMMIT_INDEX, kind: Kind::Gauge, label: None, help: "Commit index" },
    Metric { name: APPLIED_INDEX, kind: Kind::Gauge, label: None, help: "Highest index applied to the state machine" },
    Metric { name: SNAPSHOT_INDEX, kind: Kind::Gauge, label: None, help: "Last index covered by the newest snapshot (0: none)" },
    Metric { name: FOLLOWER_LAG_ENTRIES, kind: Kind::Gauge, label: Some("peer"), help: "Leader only: entries a follower (label peer) is behind the leader's last index" },
    Metric { name: FOLLOWER_LAST_CONTACT_SECONDS, kind: Kind::Gauge, label: Some("peer"), help: "Leader only: seconds since a message from a follower (label peer) arrived" },
    Metric { name: PEER_CONNECTED, kind: Kind::Gauge, label: Some("peer"), help: "1 while this node's outgoing connection to a peer (label peer) is up" },
    Metric { name: PEER_CONNECT_FAILURES_TOTAL, kind: Kind::Counter, label: Some("peer"), help: "Failed attempts to connect to a peer (label peer)" },
    Metric { name: SESSIONS, kind: Kind::Gauge, label: None, help: "Client sessions in the state machine's session table" },
    Metric { name: PROPOSALS_TOTAL, kind: Kind::Counter, label: None, help: "Client commands proposed on this node as leader" },
    Metric { name: ENTRIES_COMMITTED_TOTAL, kind: Kind::Counter, label: None, help: "Log entries this node saw become committed" },
    Metric { name: ENTRIES_APPLIED_TOTAL, kind: Kind::Counter, label: None, help: "Log entries applied to the state machine" },
    Metric { name: READS_TOTAL, kind: Kind::Counter, label: Some("path"), help: "Reads served without a log entry, by path (label path: read_index, lease, follower)" },
    Metric { name: REDIRECTS_TOTAL, kind: Kind::Counter, label: None, help: "Client requests answered with a redirect to the leader" },
    Metric { name: UNKNOWN_OUTCOMES_TOTAL, kind: Kind::Counter, label: None, help: "Client requests answered 'outcome unknown, retry'" },
    Metric { name: MESSAGES_SENT_TOTAL, kind: Kind::Counter, label: None, help: "Raft messages handed to the transport" },
    Metric { name: MESSAGES_RECEIVED_TOTAL, kind: Kind::Counter, label: None, help: "Raft messages received from peers" },
    Metric { name: ELECTIONS_STARTED_TOTAL, kind: Kind::Counter, label: None, help: "Elections this node started" },
    Metric { name: LEADER_ELECTED_TOTAL, kind: Kind::Counter, label: None, help: "Times this node became leader" },
    Metric { name: FOLLOWER_LOG_REGRESSIONS_TOTAL, kind: Kind::Counter, label: None, help: "Followers found holding less than they acknowledged as durable (a disk lost data)" },
    Metric { name: SNAPSHOTS_TAKEN_TOTAL, kind: Kind::Counter, label: None, help: "Snapshots this node took of its state machine" },
    Metric { name: SNAPSHOTS_INSTALLED_TOTAL, kind: Kind::Counter, label: None, help: "Snapshots this node installed from a leader" },
    Metric { name: SNAPSHOTS_SENT_TOTAL, kind: Kind::Counter, label: None, help: "Snapshot transfers to followers this node started as leader" },
    Metric { name: SNAPSHOT_SENT_BYTES_TOTAL, kind: Kind::Counter, label: None, help: "Snapshot bytes sent to followers" },
    Metric { name: SNAPSHOT_RECEIVED_BYTES_TOTAL, kind: Kind::Counter, label: None, help: "Bytes of snapshots received whole from a leader" },
    Metric { name: PROPOSAL_BATCH_ENTRIES, kind: Kind::Histogram, label: None, help: "Client commands per proposed batch" },
    Metric { name: WAL_FSYNC_DURATION_SECONDS, kind: Kind::Histogram, label: None, help: "Duration of one fdatasync of the write-ahead log" },
    Metric { name: WAL_BATCH_WRITES, kind: Kind::Histogram, label: None, help: "Writes made durable together by one write-ahead log batch (group commit)" },
    Metric { name: APPEND_ROUND_TRIP_SECONDS, kind: Kind::Histogram, label: Some("peer"), help: "Leader only: AppendEntries with entries sent to a follower (label peer) until it acknowledged them durable" },
    Metric { name: SNAPSHOT_SEND_DURATION_SECONDS, kind: Kind::Histogram, label: None, help: "Leader only: sending a snapshot to a follower, its first chunk handed to the transport until its last" },
    Metric { name: SNAPSHOT_RECEIVE_DURATION_SECONDS, kind: Kind::Histogram, label: None, help: "Receiving a snapshot from a leader, first chunk to last" },
    Metric { name: SNAPSHOT_RESTORE_DURATION_SECONDS, kind: Kind::Histogram, label: None, help: "Restoring the state machine from a received snapshot" },
];

/// Bucket bounds of the `_seconds` histograms: 50 µs to 10 s, roughly
/// ×2.5 apart (an fsync on NVMe is ~50 µs-2 ms, on a cloud disk ~1-20 ms; a
/// snapshot transfer seconds).
pub const SECONDS_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 10.0,
];

/// Bucket bounds of the batch-size histograms, powers of two up to the
/// default proposal batch limit and beyond.
pub const COUNT_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
];

/// Bucket bounds of the `_bytes` histograms: powers of four from 64 B to
/// 64 MiB (a shared log's segment size).
pub const BYTES_BUCKETS: &[f64] = &[
    64.0,
    256.0,
    1024.0,
    4096.0,
    16_384.0,
    65_536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
];

/// The bucket bounds of a histogram, by its name's unit.
pub fn buckets_for(name: &str) -> &'static [f64] {
    if name.ends_with("_seconds") {
        SECONDS_BUCKETS
    } else if name.ends_with("_bytes") {
        BYTES_BUCKETS
    } else {
        COUNT_BUCKETS
    }
}

/// The `role` label of [`ROLE`] for a status role string.
const ROLES: &[(&str, &str)] = &[
    ("Follower", "follower"),
    ("PreCandidate", "pre_candidate"),
    ("Candidate", "candidate"),
    ("Leader", "leader"),
];

/// The metrics of [`CATALOGUE`] a server of one group (the multi-group
/// host with one data group, `concord-node` without `--groups`) exports
/// beside [`multi::MULTI_CATALOGUE`]: its group's Raft state, as
/// [`record_group_state`] sets it. The other single-group names have a
/// replacement in the multi-group catalogue (docs/metrics.md).
pub const ONE_GROUP_STATE: &[&str] = &[
    ROLE,
    TERM,
    LEADER_ID,
    LAST_INDEX,
    PERSISTED_INDEX,
    COMMIT_INDEX,
    APPLIED_INDEX,
    SNAPSHOT_INDEX,
    FOLLOWER_LAG_ENTRIES,
    FOLLOWER_LAST_CONTACT_SECONDS,
];

/// Sets the state gauges and server counters from a status snapshot (at
/// scrape time).
pub fn record_status(status: &NodeStatus) {
    record_group_state(status);
    metrics::gauge!(NODE_ID).set(status.id as f64);
    let s = &status.server;
    let counters = [
        (PROPOSALS_TOTAL, s.proposals),
        (ENTRIES_APPLIED_TOTAL, s.entries_applied),
        (REDIRECTS_TOTAL, s.redirects),
        (UNKNOWN_OUTCOMES_TOTAL, s.unknown_outcomes),
        (MESSAGES_SENT_TOTAL, s.messages_sent),
        (MESSAGES_RECEIVED_TOTAL, s.messages_received),
        (ELECTIONS_STARTED_TOTAL, s.elections_started),
        (LEADER_ELECTED_TOTAL, s.leader_elected),
        (FOLLOWER_LOG_REGRESSIONS_TOTAL, s.follower_log_regressions),
        (SNAPSHOTS_TAKEN_TOTAL, s.snapshots_taken),
        (SNAPSHOTS_INSTALLED_TOTAL, s.snapshots_installed),
        (SNAPSHOTS_SENT_TOTAL, s.snapshot_transfers_started),
        (SNAPSHOT_SENT_BYTES_TOTAL, s.snapshot_bytes_sent),
        (SNAPSHOT_RECEIVED_BYTES_TOTAL, s.snapshot_bytes_received),
    ];
    record_counters(
        &counters,
        [s.reads_read_index, s.reads_lease, s.reads_follower],
    );
}

/// Sets the Raft state of one group from its status snapshot (at scrape
/// time): the series of [`ONE_GROUP_STATE`].
pub fn record_group_state(status: &NodeStatus) {
    for (shown, label) in ROLES {
        let value = if status.role == *shown { 1.0 } else { 0.0 };
        metrics::gauge!(ROLE, "role" => *label).set(value);
    }
    metrics::gauge!(TERM).set(status.term as f64);
    metrics::gauge!(LEADER_ID).set(status.leader.unwrap_or(0) as f64);
    metrics::gauge!(LAST_INDEX).set(status.last_index as f64);
    metrics::gauge!(PERSISTED_INDEX).set(status.persisted_index as f64);
    metrics::gauge!(COMMIT_INDEX).set(status.commit_index as f64);
    metrics::gauge!(APPLIED_INDEX).set(status.applied_index as f64);
    metrics::gauge!(SNAPSHOT_INDEX).set(status.snapshot_index as f64);
    for peer in &status.peers {
        let id = peer.id.to_string();
        let lag = status.last_index.saturating_sub(peer.match_index);
        metrics::gauge!(FOLLOWER_LAG_ENTRIES, "peer" => id.clone()).set(lag as f64);
        if let Some(ms) = peer.last_contact_ms {
            metrics::gauge!(FOLLOWER_LAST_CONTACT_SECONDS, "peer" => id).set(ms as f64 / 1000.0);
        }
    }
}

/// Sets counters read at scrape time: each `(name, value)` of `counters`,
/// and [`READS_TOTAL`] by path from `reads` (ReadIndex, lease, follower).
pub(crate) fn record_counters(counters: &[(&'static str, u64)], reads: [u64; 3]) {
    for &(name, value) in counters {
        metrics::counter!(name).absolute(value);
    }
    for (path, value) in ["read_index", "lease", "follower"].into_iter().zip(reads) {
        metrics::counter!(READS_TOTAL, "path" => path).absolute(value);
    }
}

/// `count` entries became committed on this node.
pub fn entries_committed(count: u64) {
    metrics::counter!(ENTRIES_COMMITTED_TOTAL).increment(count);
}

/// A batch of `commands` client commands was proposed.
pub fn proposal_batch(commands: usize) {
    metrics::histogram!(PROPOSAL_BATCH_ENTRIES).record(commands as f64);
}

/// One fdatasync of the write-ahead log took `elapsed`.
pub fn wal_fsync(elapsed: Duration) {
    metrics::histogram!(WAL_FSYNC_DURATION_SECONDS).record(elapsed.as_secs_f64());
}

/// One write-ahead log batch made `writes` writes durable together.
pub fn wal_batch(writes: usize) {
    metrics::histogram!(WAL_BATCH_WRITES).record(writes as f64);
}

/// An append to `peer` was acknowledged `elapsed` after it was sent.
pub fn append_round_trip(peer: NodeId, elapsed: Duration) {
    metrics::histogram!(APPEND_ROUND_TRIP_SECONDS, "peer" => peer.to_string())
        .record(elapsed.as_secs_f64());
}

/// The last chunk of a snapshot was handed to the transport for a
/// follower, `elapsed` after its first.
pub fn snapshot_sent(elapsed: Duration) {
    metrics::histogram!(SNAPSHOT_SEND_DURATION_SECONDS).record(elapsed.as_secs_f64());
}

/// A snapshot from a leader arrived whole, `elapsed` after its first chunk.
pub fn snapshot_received(elapsed: Duration) {
    metrics::histogram!(SNAPSHOT_RECEIVE_DURATION_SECONDS).record(elapsed.as_secs_f64());
}

/// The state machine was restored from a received snapshot in `elapsed`.
pub fn snapshot_restored(elapsed: Duration) {
    metrics::histogram!(SNAPSHOT_RESTORE_DURATION_SECONDS).record(elapsed.as_secs_f64());
}

/// The outgoing connection to `peer` came up (`true`) or went down.
pub fn peer_connection(peer: NodeId, up: bool) {
    metrics::gauge!(PEER_CONNECTED, "peer" => peer.to_string()).set(if up { 1.0 } else { 0.0 });
}

/// An attempt to connect to `peer` failed.
pub fn peer_connect_failed(peer: NodeId) {
    metrics::counter!(PEER_CONNECT_FAILURES_TOTAL, "peer" => peer.to_string()).increment(1);
}

/// The state machine's session table holds `sessions` sessions.
pub fn sessions(sessions: usize) {
    metrics::gauge!(SESSIONS).set(sessions as f64);
}

/// The transport started dialling `peer`: its connection series exist from
/// now on (down, no failures), not only after its first failure.
pub fn peer_added(peer: NodeId) {
    peer_connection(peer, false);
    metrics::counter!(PEER_CONNECT_FAILURES_TOTAL, "peer" => peer.to_string()).increment(0);
}
