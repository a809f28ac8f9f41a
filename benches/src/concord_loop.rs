//! The throughput loop on concord: a 3-node cluster in memory, driven in one
//! thread.
//!
//! No serialization, no ticks in the timed part, no fsync; messages are
//! delivered in FIFO order. One *hop* is: every node does its pending work
//! (executes the actions it emitted since the previous hop: queue sends,
//! "persist" writes, apply committed entries, then reports `Persisted` and
//! `Applied`), then every queued message is delivered. Actions emitted while
//! a message is delivered wait for the next hop, the way raft-rs's `Ready`
//! collects them.
//!
//! This file is shared: the `concord-bench` library exposes it as a module
//! and `core/throughput.rs` includes it by path, so the criterion bench and
//! the side-by-side comparison run the same code.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use concord::{
    Action, Config, EntryPayload, Input, LogPosition, Message, Node, Recovered, Role, Snapshot,
    WriteId,
};

/// Proposals committed in one run.
pub const PROPOSALS: u64 = 200_000;

/// Size of every proposal's payload.
pub const PAYLOAD_BYTES: usize = 128;

/// Node ids of the cluster.
pub const NODE_IDS: [u64; 3] = [1, 2, 3];

/// Most hops to wait for one locked round, or for the tail of a pipelined
/// run, before declaring the cluster stuck.
pub(crate) const STALL_HOPS_MAX: usize = 10_000;

/// How proposals are fed to the leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Each round proposes `batch` entries, then runs one hop.
    Pipe,
    /// Each round proposes `batch` entries, then runs hops until all three
    /// nodes applied them.
    Lock,
}

impl Mode {
    /// Short name for tables and benchmark ids.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Pipe => "pipe",
            Mode::Lock => "lock",
        }
    }
}

/// One cell of the benchmark table: a feeding mode and a batch size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cell {
    /// How proposals are fed.
    pub mode: Mode,
    /// Proposals per round.
    pub batch: usize,
}

impl Cell {
    /// The four cells the benchmark reports, in table order.
    pub const ALL: [Cell; 4] = [
        Cell {
            mode: Mode::Lock,
            batch: 1,
        },
        Cell {
            mode: Mode::Pipe,
            batch: 1,
        },
        Cell {
            mode: Mode::Lock,
            batch: 64,
        },
        Cell {
            mode: Mode::Pipe,
            batch: 64,
        },
    ];

    /// Name such as `lock/1`.
    pub fn name(self) -> String {
        format!("{}/{}", self.mode.name(), self.batch)
    }
}

/// A freshly allocated payload of [`PAYLOAD_BYTES`] whose first 8 bytes are
/// `seq`, little endian, so appliers can check order and completeness.
pub fn payload(seq: u64) -> Vec<u8> {
    let mut bytes = vec![0u8; PAYLOAD_BYTES];
    bytes[..8].copy_from_slice(&seq.to_le_bytes());
    bytes
}

/// The sequence number [`payload`] wrote into `bytes`.
pub fn payload_seq(bytes: &[u8]) -> u64 {
    assert!(
        bytes.len() == PAYLOAD_BYTES,
        "applied payload has {} bytes, expected {PAYLOAD_BYTES}",
        bytes.len()
    );
    u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"))
}

/// Index into per-node arrays of node `id`.
fn slot(id: u64) -> usize {
    assert!((1..=3).contains(&id), "message to unknown node {id}");
    (id - 1) as usize
}

/// Three concord nodes and the FIFO network between them.
pub struct Cluster {
    nodes: Vec<Node>,
    /// Actions each node emitted since its last pending-work phase.
    actions: Vec<Vec<Action>>,
    /// Messages sent and not yet delivered, in send order.
    queue: VecDeque<Message>,
    /// Command entries each node applied.
    applied: [u64; 3],
    /// Hops run since the cluster was built.
    hops: u64,
    /// Each node's latest snapshot (its state: the count of proposals
    /// applied, 8 bytes), served to followers behind the log.
    snapshots: [Option<Snapshot>; 3],
    /// A snapshot each node is receiving.
    incoming: [Vec<u8>; 3],
}

/// Entries between snapshots in [`CompactingCluster`]: etcd's default
/// snapshot count.
pub const COMPACTION_EVERY_ENTRIES: u64 = 10_000;

impl Cluster {
    /// Builds the cluster and elects node 1, outside any timing.
    pub fn new() -> Self {
        Self::build(None)
    }

    /// [`Cluster::new`], snapshotting every `every` applied entries (with
    /// the default trailing window): the same loop with compaction on.
    pub fn with_compaction(every: u64) -> Self {
        Self::build(Some(every))
    }

    fn build(compaction_every: Option<u64>) -> Self {
        let nodes = NODE_IDS
            .iter()
            .map(|&id| {
                let mut config = Config::new(id, NODE_IDS);
                config.append_entries_max = 1 << 16;
                config.append_bytes_max = 1024 * 1024;
                config.inflight_messages_max = 256;
                config.uncommitted_entries_max = 1 << 20;
                config.unpersisted_writes_max = 4096;
                config.apply_batch_entries_max = 1 << 16;
                config.compaction_threshold_entries = compaction_every;
                // Every node starts together: no recovery round before the
                // first election (what is measured is the steady state).
                config.recover_empty_storage = false;
                Node::new(config, Recovered::default()).expect("valid benchmark config")
            })
            .collect();
        let mut cluster = Cluster {
            nodes,
            actions: vec![Vec::new(), Vec::new(), Vec::new()],
            queue: VecDeque::new(),
            applied: [0; 3],
            hops: 0,
            snapshots: [None, None, None],
            incoming: [Vec::new(), Vec::new(), Vec::new()],
        };
        cluster.elect_node_1();
        cluster
    }

    /// Ticks node 1 until it campaigns and wins, then runs hops (ticking the
    /// leader when the network is quiet) until every node applied the
    /// leader's first entry and the network is quiet.
    fn elect_node_1(&mut self) {
        for _ in 0..1_000 {
            if self.nodes[0].role() == Role::Leader {
                break;
            }
            self.nodes[0].step(Input::Tick, &mut self.actions[0]);
            for _ in 0..4 {
                self.hop();
            }
        }
        assert_eq!(
            self.nodes[0].role(),
            Role::Leader,
            "node 1 did not become leader"
        );
        for _ in 0..STALL_HOPS_MAX {
            let last = self.nodes[0].last_index();
            if self.is_quiet() {
                if self.nodes.iter().all(|node| node.applied_index() == last) {
                    return;
                }
                // A follower that was still being probed when the first
                // entry committed learns the commit from the next
                // heartbeat: tick the leader (still outside the timing).
                self.nodes[0].step(Input::Tick, &mut self.actions[0]);
            }
            self.hop();
        }
        panic!("cluster did not settle after the election");
    }

    fn is_quiet(&self) -> bool {
        self.queue.is_empty() && self.actions.iter().all(Vec::is_empty)
    }

    /// Command entries applied on each node so far.
    pub fn applied(&self) -> [u64; 3] {
        self.applied
    }

    /// Hops run since the cluster was built.
    pub fn hops(&self) -> u64 {
        self.hops
    }

    /// Proposes `count` fresh payloads numbered from `first_seq` to the
    /// leader, as one batch when `count > 1`.
    fn propose(&mut self, first_seq: u64, count: usize) {
        let leader = &mut self.nodes[0];
        if count == 1 {
            leader.step(
                Input::Propose(Bytes::from(payload(first_seq))),
                &mut self.actions[0],
            );
        } else {
            let batch = (0..count as u64)
                .map(|i| Bytes::from(payload(first_seq + i)))
                .collect();
            leader.step(Input::ProposeBatch(batch), &mut self.actions[0]);
        }
    }

    /// One hop: pending work on every node, then delivery of every message
    /// queued so far.
    pub fn hop(&mut self) {
        self.hops += 1;
        for i in 0..self.nodes.len() {
            self.work(i);
        }
        for _ in 0..self.queue.len() {
            let message = self.queue.pop_front().expect("counted");
            let to = slot(message.to);
            self.nodes[to].step(Input::Receive(message), &mut self.actions[to]);
        }
    }

    /// Executes node `i`'s pending actions: sends are queued, writes are
    /// "durable" at once, committed entries are applied and checked; then
    /// reports `Applied` and `Persisted` (highest write id only) and executes
    /// what that produces, until nothing is left.
    fn work(&mut self, i: usize) {
        // Nothing emitted since the last hop: nothing to do (raft-rs's
        // loop returns the same way when a node has no `Ready`).
        if self.actions[i].is_empty() {
            return;
        }
        let node = &mut self.nodes[i];
        let mut pending = std::mem::take(&mut self.actions[i]);
        let mut rounds = 0;
        while !pending.is_empty() {
            rounds += 1;
            assert!(rounds <= 64, "node {} keeps emitting actions", i + 1);
            let mut persisted: Option<WriteId> = None;
            let mut applied_to = None;
            let mut snapshotted = None;
            for action in pending.drain(..) {
                match action {
                    // The loop issues no reads.
                    Action::ReadReady { .. } | Action::ReadRefused { .. } => {}
                    Action::Send { message, .. } => self.queue.push_back(message),
                    Action::Persist { id, .. } => persisted = Some(id),
                    Action::Apply { entries } => {
                        for entry in &entries {
                            if let EntryPayload::Command(bytes) = &entry.payload {
                                let seq = payload_seq(bytes);
                                assert_eq!(
                                    seq,
                                    self.applied[i],
                                    "node {} applied proposal {seq} at index {} out of order",
                                    i + 1,
                                    entry.index
                                );
                                self.applied[i] += 1;
                            }
                        }
                        if let Some(last) = entries.last() {
                            applied_to = Some(last.index);
                        }
                    }
                    Action::ProposalRefused { count, error } => {
                        panic!("node {} refused {count} proposals: {error}", i + 1)
                    }
                    Action::FollowerLogRegressed { follower, .. } => {
                        panic!("node {follower} lost acknowledged entries in memory")
                    }
                    Action::LogDiverged(divergence) => {
                        panic!(
                            "node {} found its committed log contradicted: {divergence:?}",
                            i + 1
                        )
                    }
                    Action::ProposalAccepted { .. }
                    | Action::RoleChanged { .. }
                    | Action::StorageRecovery(_)
                    | Action::Transfer { .. } => {}
                    // With compaction on: the state is the count of
                    // proposals applied; a snapshot of it is "durable" at
                    // once, like every write here.
                    Action::TakeSnapshot => {
                        let index = node.applied_index();
                        let term = node.term_at(index).expect("applied entry in the log");
                        let snapshot = Snapshot::new(
                            LogPosition::new(index, term),
                            Bytes::copy_from_slice(&self.applied[i].to_le_bytes()),
                        );
                        snapshotted = Some(snapshot.meta());
                        self.snapshots[i] = Some(snapshot);
                    }
                    Action::SendSnapshotChunk(chunk) => {
                        let snapshot = self.snapshots[i].as_ref().expect("a snapshot to send");
                        self.queue.push_back(chunk.cut_from(&snapshot.data));
                    }
                    Action::WriteSnapshotChunk { offset, data, .. } => {
                        self.incoming[i].truncate(offset as usize);
                        self.incoming[i].extend_from_slice(&data);
                    }
                    Action::PersistSnapshot { id, snapshot, .. } => {
                        let data = Bytes::from(std::mem::take(&mut self.incoming[i]));
                        self.snapshots[i] = Some(Snapshot::new(snapshot.position, data));
                        persisted = Some(id);
                    }
                    Action::RestoreSnapshot { snapshot } => {
                        let data = &self.snapshots[i].as_ref().expect("stored").data;
                        self.applied[i] =
                            u64::from_le_bytes(data[..8].try_into().expect("8 bytes"));
                        applied_to = Some(snapshot.position.index);
                    }
                }
            }
            if let Some(meta) = snapshotted {
                node.step(Input::Snapshotted(meta), &mut pending);
            }
            if let Some(index) = applied_to {
                node.step(Input::Applied(index), &mut pending);
            }
            if let Some(id) = persisted {
                node.step(Input::Persisted(id), &mut pending);
            }
        }
        self.actions[i] = pending;
    }

    /// Checks that every node applied exactly `count` proposals, in order,
    /// and that their logs agree. Not timed.
    pub fn verify(&self, count: u64) {
        assert_eq!(self.applied, [count; 3], "nodes applied different counts");
        let last = self.nodes[0].last_index();
        for node in &self.nodes {
            assert_eq!(
                node.last_index(),
                last,
                "node {} log length differs",
                node.id()
            );
            assert_eq!(
                node.commit_index(),
                last,
                "node {} commit differs",
                node.id()
            );
        }
        // With compaction the log starts after a snapshot: the proposals
        // it holds must be the last ones, in order.
        let mut index = self.nodes[0].first_index();
        let mut seq = if index <= 1 {
            0
        } else {
            (index..=last)
                .filter_map(
                    |i| match &self.nodes[0].entry(i).expect("entry in memory").payload {
                        EntryPayload::Command(bytes) => Some(payload_seq(bytes)),
                        _ => None,
                    },
                )
                .next()
                .unwrap_or(count)
        };
        while index <= last {
            let entry = self.nodes[0].entry(index).expect("entry in memory");
            for node in &self.nodes[1..] {
                let other = node.entry(index).expect("entry in memory");
                assert_eq!(
                    other.term,
                    entry.term,
                    "node {} term at {index} differs",
                    node.id()
                );
                assert_eq!(
                    other.payload,
                    entry.payload,
                    "node {} payload at {index} differs",
                    node.id()
                );
            }
            if let EntryPayload::Command(bytes) = &entry.payload {
                assert_eq!(
                    payload_seq(bytes),
                    seq,
                    "entry {index} holds the wrong proposal"
                );
                seq += 1;
            }
            index += 1;
        }
        assert_eq!(seq, count, "log holds {seq} proposals, expected {count}");
    }
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster::new()
    }
}

/// The concord cluster with compaction on (a snapshot every
/// [`COMPACTION_EVERY_ENTRIES`] entries): the same loop, to measure what
/// compaction costs side by side with [`Cluster`].
pub struct CompactingCluster(pub Cluster);

impl Default for CompactingCluster {
    fn default() -> Self {
        CompactingCluster(Cluster::with_compaction(COMPACTION_EVERY_ENTRIES))
    }
}

impl BenchCluster for CompactingCluster {
    const NAME: &'static str = "concord with compaction";

    fn propose_batch(&mut self, first_seq: u64, count: usize) {
        self.0.propose(first_seq, count);
    }

    fn run_hop(&mut self) {
        self.0.hop();
    }

    fn applied_counts(&self) -> [u64; 3] {
        self.0.applied()
    }

    fn hop_count(&self) -> u64 {
        self.0.hops()
    }

    fn verify_applied(&self, count: u64) {
        self.0.verify(count);
        // Entries are applied in batches, so a snapshot lands somewhat past
        // each threshold: at least one per two thresholds.
        for node in &self.0.nodes {
            let snapshots = node.stats().snapshots_taken;
            assert!(
                snapshots >= count / (2 * COMPACTION_EVERY_ENTRIES),
                "compaction on, yet node {} took only {snapshots} snapshots for {count} proposals",
                node.id()
            );
            if count >= 2 * COMPACTION_EVERY_ENTRIES {
                assert!(node.first_index() > 1, "node {} never compacted", node.id());
            }
        }
    }
}

/// What the benchmark loop needs from a 3-node cluster of one library.
/// The driver (`run`, `settle`) is written once, here, so every library
/// runs exactly the same loop.
pub trait BenchCluster: Default {
    /// Library name, for messages.
    const NAME: &'static str;

    /// Proposes `count` fresh payloads numbered from `first_seq` to the
    /// leader.
    fn propose_batch(&mut self, first_seq: u64, count: usize);

    /// One hop: pending work on every node (persist, apply, report), then
    /// delivery of every message queued so far.
    fn run_hop(&mut self);

    /// Command entries applied on each node so far.
    fn applied_counts(&self) -> [u64; 3];

    /// Hops run since the cluster was built.
    fn hop_count(&self) -> u64;

    /// Checks that every node applied exactly `count` proposals, in order,
    /// and that the three logs agree. Not timed.
    fn verify_applied(&self, count: u64);

    /// Whether all three nodes applied at least `count` proposals.
    fn all_applied(&self, count: u64) -> bool {
        self.applied_counts()
            .iter()
            .all(|&applied| applied >= count)
    }

    /// Runs hops until all three nodes applied `count` proposals.
    fn settle(&mut self, count: u64) {
        for _ in 0..STALL_HOPS_MAX {
            if self.all_applied(count) {
                return;
            }
            self.run_hop();
        }
        panic!(
            "{} stuck: applied {:?} of {count} after {STALL_HOPS_MAX} hops",
            Self::NAME,
            self.applied_counts()
        );
    }

    /// The timed part: commits `proposals` proposals fed as `cell` says,
    /// until all three nodes applied them.
    fn run(&mut self, cell: Cell, proposals: u64) {
        assert!(cell.batch >= 1);
        let base = self.applied_counts()[0];
        assert!(self.all_applied(base), "run started with nodes out of step");
        let mut proposed = 0u64;
        while proposed < proposals {
            let count = cell.batch.min((proposals - proposed) as usize);
            self.propose_batch(base + proposed, count);
            proposed += count as u64;
            match cell.mode {
                Mode::Pipe => self.run_hop(),
                Mode::Lock => self.settle(base + proposed),
            }
        }
        self.settle(base + proposals);
    }
}

impl BenchCluster for Cluster {
    const NAME: &'static str = "concord";

    fn propose_batch(&mut self, first_seq: u64, count: usize) {
        self.propose(first_seq, count);
    }

    fn run_hop(&mut self) {
        self.hop();
    }

    fn applied_counts(&self) -> [u64; 3] {
        self.applied()
    }

    fn hop_count(&self) -> u64 {
        self.hops()
    }

    fn verify_applied(&self, count: u64) {
        self.verify(count);
    }
}

/// Builds and elects a cluster of `C`, times one run of `proposals`
/// proposals in `cell`, verifies the result, and returns the timed
/// duration.
pub fn run_once<C: BenchCluster>(cell: Cell, proposals: u64) -> Duration {
    let mut cluster = C::default();
    let start = Instant::now();
    cluster.run(cell, proposals);
    let elapsed = start.elapsed();
    cluster.verify_applied(proposals);
    drop(cluster);
    elapsed
}
