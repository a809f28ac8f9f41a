//! The same throughput loop as [`crate::concord_loop`], on raft-rs 0.7
//! (`RawNode<MemStorage>`).
//!
//! One *hop*: every node with a `Ready` handles it the way raft-rs's own
//! examples do (queue messages, apply committed entries, append entries and
//! hard state to `MemStorage`, queue persisted messages, `advance`, apply
//! what the light ready commits, `advance_apply`); then every queued message
//! is delivered, in FIFO order.
//!
//! A round's proposals reach the leader by one of three paths
//! ([`ProposePath`]), so that the comparison can use raft-rs's fastest one:
//! [`Separate`] (one `RawNode::propose` per entry), [`OneMessage`] (one
//! `MsgPropose` carrying every entry of the round, passed to
//! `RawNode::step`) and [`BatchAppend`] (the same, with raft-rs's
//! `Config::batch_append`, which merges appends queued for one follower).

use std::collections::VecDeque;
use std::marker::PhantomData;

use raft::eraftpb::{ConfState, Entry, EntryType, Message, MessageType};
use raft::storage::MemStorage;
use raft::{RawNode, StateRole};

use crate::concord_loop::{payload, payload_seq, BenchCluster, NODE_IDS, STALL_HOPS_MAX};

/// Index into per-node arrays of node `id`.
fn slot(id: u64) -> usize {
    assert!((1..=3).contains(&id), "message to unknown node {id}");
    (id - 1) as usize
}

/// How a round's proposals are handed to raft-rs.
pub trait ProposePath {
    /// Name in tables, such as `raft-rs/msg`.
    const NAME: &'static str;
    /// Whether the round's entries travel in one `MsgPropose`.
    const ONE_MESSAGE: bool;
    /// raft-rs's `Config::batch_append`.
    const BATCH_APPEND: bool;
}

/// One `RawNode::propose` call per entry: raft-rs's convenience API.
pub struct Separate;

impl ProposePath for Separate {
    const NAME: &'static str = "raft-rs/propose";
    const ONE_MESSAGE: bool = false;
    const BATCH_APPEND: bool = false;
}

/// One `MsgPropose` with every entry of the round, through `RawNode::step`.
pub struct OneMessage;

impl ProposePath for OneMessage {
    const NAME: &'static str = "raft-rs/msg";
    const ONE_MESSAGE: bool = true;
    const BATCH_APPEND: bool = false;
}

/// [`OneMessage`] with `Config::batch_append` on.
pub struct BatchAppend;

impl ProposePath for BatchAppend {
    const NAME: &'static str = "raft-rs/msg+batch_append";
    const ONE_MESSAGE: bool = true;
    const BATCH_APPEND: bool = true;
}

/// Three raft-rs nodes and the FIFO network between them, fed through
/// proposal path `P`.
pub struct RaftCluster<P: ProposePath = OneMessage> {
    nodes: Vec<RawNode<MemStorage>>,
    /// Messages sent and not yet delivered, in send order.
    queue: VecDeque<Message>,
    /// Normal entries with data each node applied.
    applied: [u64; 3],
    /// Index of the last entry (of any kind) each node applied.
    applied_index: [u64; 3],
    /// Hops run since the cluster was built.
    hops: u64,
    path: PhantomData<P>,
}

impl<P: ProposePath> RaftCluster<P> {
    /// Builds the cluster and elects node 1, outside any timing.
    pub fn new() -> Self {
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let nodes = NODE_IDS
            .iter()
            .map(|&id| {
                let config = raft::Config {
                    id,
                    max_inflight_msgs: 256,
                    max_size_per_msg: 1024 * 1024,
                    batch_append: P::BATCH_APPEND,
                    ..Default::default()
                };
                config.validate().expect("valid raft-rs config");
                let storage =
                    MemStorage::new_with_conf_state(ConfState::from((NODE_IDS.to_vec(), vec![])));
                RawNode::new(&config, storage, &logger).expect("raft-rs node")
            })
            .collect();
        let mut cluster = RaftCluster {
            nodes,
            queue: VecDeque::new(),
            applied: [0; 3],
            applied_index: [0; 3],
            hops: 0,
            path: PhantomData,
        };
        cluster.elect_node_1();
        cluster
    }

    /// Campaigns node 1 and runs hops until it leads, every node applied its
    /// first entry and the network is quiet.
    fn elect_node_1(&mut self) {
        self.nodes[0].campaign().expect("campaign");
        for _ in 0..STALL_HOPS_MAX {
            let leader = &self.nodes[0];
            let last = leader.raft.raft_log.last_index();
            if leader.raft.state == StateRole::Leader
                && self.queue.is_empty()
                && self.nodes.iter().all(|node| !node.has_ready())
                && self.applied_index.iter().all(|&index| index == last)
            {
                return;
            }
            self.hop();
        }
        panic!("raft-rs: node 1 did not become a settled leader");
    }

    /// Normal entries applied on each node so far.
    pub fn applied(&self) -> [u64; 3] {
        self.applied
    }

    /// Hops run since the cluster was built.
    pub fn hops(&self) -> u64 {
        self.hops
    }

    /// One hop: every node handles its ready, then every message queued so
    /// far is delivered.
    pub fn hop(&mut self) {
        self.hops += 1;
        for i in 0..self.nodes.len() {
            self.on_ready(i);
        }
        for _ in 0..self.queue.len() {
            let message = self.queue.pop_front().expect("counted");
            let to = slot(message.to);
            self.nodes[to].step(message).expect("raft-rs step");
        }
    }

    fn apply(&mut self, i: usize, entries: Vec<Entry>) {
        for entry in &entries {
            self.applied_index[i] = entry.index;
            if entry.get_entry_type() == EntryType::EntryNormal && !entry.data.is_empty() {
                let seq = payload_seq(&entry.data);
                assert_eq!(
                    seq,
                    self.applied[i],
                    "raft-rs node {} applied proposal {seq} at index {} out of order",
                    i + 1,
                    entry.index
                );
                self.applied[i] += 1;
            }
        }
    }

    fn on_ready(&mut self, i: usize) {
        if !self.nodes[i].has_ready() {
            return;
        }
        let mut ready = self.nodes[i].ready();
        self.queue.extend(ready.take_messages());
        assert!(ready.snapshot().data.is_empty() && ready.snapshot().get_metadata().index == 0);
        let committed = ready.take_committed_entries();
        self.apply(i, committed);
        let store = self.nodes[i].raft.raft_log.store.clone();
        if !ready.entries().is_empty() {
            store
                .wl()
                .append(ready.entries())
                .expect("MemStorage append");
        }
        if let Some(hard_state) = ready.hs() {
            store.wl().set_hardstate(hard_state.clone());
        }
        self.queue.extend(ready.take_persisted_messages());
        let mut light = self.nodes[i].advance(ready);
        if let Some(commit) = light.commit_index() {
            store.wl().mut_hard_state().set_commit(commit);
        }
        self.queue.extend(light.take_messages());
        let committed = light.take_committed_entries();
        self.apply(i, committed);
        self.nodes[i].advance_apply();
    }

    fn propose(&mut self, first_seq: u64, count: usize) {
        if P::ONE_MESSAGE {
            self.propose_in_one_message(first_seq, count);
            return;
        }
        for seq in first_seq..first_seq + count as u64 {
            self.nodes[0]
                .propose(Vec::new(), payload(seq))
                .expect("raft-rs refused a proposal");
        }
    }

    /// raft-rs's batch path: the entries of the round in one `MsgPropose`,
    /// which the leader appends and broadcasts once.
    fn propose_in_one_message(&mut self, first_seq: u64, count: usize) {
        let entries: Vec<Entry> = (first_seq..first_seq + count as u64)
            .map(|seq| Entry {
                data: payload(seq).into(),
                ..Default::default()
            })
            .collect();
        let mut message = Message::default();
        message.set_msg_type(MessageType::MsgPropose);
        message.from = self.nodes[0].raft.id;
        message.set_entries(entries.into());
        self.nodes[0]
            .step(message)
            .expect("raft-rs refused a proposal");
    }

    /// Checks that every node applied exactly `count` proposals and that the
    /// three logs agree. Not timed.
    pub fn verify(&self, count: u64) {
        assert_eq!(
            self.applied, [count; 3],
            "raft-rs nodes applied different counts"
        );
        let last = self.nodes[0].raft.raft_log.last_index();
        let first = self.nodes[0].raft.raft_log.first_index();
        let logs: Vec<Vec<Entry>> = self
            .nodes
            .iter()
            .map(|node| {
                assert_eq!(
                    node.raft.raft_log.last_index(),
                    last,
                    "raft-rs log lengths differ"
                );
                node.raft
                    .raft_log
                    .entries(first, u64::MAX, raft::GetEntriesContext::empty(false))
                    .expect("entries")
            })
            .collect();
        assert!(
            logs.iter().all(|log| log == &logs[0]),
            "raft-rs logs differ"
        );
        let proposals = logs[0]
            .iter()
            .filter(|entry| !entry.data.is_empty())
            .count() as u64;
        assert_eq!(
            proposals, count,
            "raft-rs log holds {proposals} proposals, expected {count}"
        );
    }
}

impl<P: ProposePath> Default for RaftCluster<P> {
    fn default() -> Self {
        RaftCluster::new()
    }
}

impl<P: ProposePath> BenchCluster for RaftCluster<P> {
    const NAME: &'static str = P::NAME;

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
