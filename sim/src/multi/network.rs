//! The network between the nodes: one frame per peer per flush, each
//! delayed, lost, duplicated, reordered, held back or cut off by a
//! partition as a whole (one connection carries every group's messages).

use rand::Rng;

use std::collections::BTreeMap;

use concord::multi::{Frame, GroupId, MultiInput};
use concord::{AppendResponse, Index, MessageBody, NodeId, Term};

use crate::faults::{exponential, FaultKind, Partition};

use super::engine::{Event, MultiSim, Phase, Queued, MS};
use super::membership::MembershipStep;

/// Fastest one-way delay of a frame.
const DELAY_MIN_NS: u64 = 100_000;
/// Slowest one-way delay of a frame without a fault.
pub(crate) const DELAY_MAX_NS: u64 = 1_000_000;
/// Longest extra delay of a frame in the delay's long tail.
pub(crate) const TAIL_MAX_NS: u64 = 10_000 * MS;

/// Chance that the stale fault holds back the last acknowledgement of a
/// replica being removed, until its node hosts the group again.
const STALE_REPLICA_ANSWER_CHANCE: f64 = 0.5;

/// Bounds of the time from a replica's removal, its acknowledgement held
/// back, to a change of its group that may add its node back.
const STALE_REPLICA_ADD_BACK_MIN_NS: u64 = 20 * MS;
const STALE_REPLICA_ADD_BACK_MAX_NS: u64 = 500 * MS;

/// Longest time after a node hosts a group again until an answer of its
/// removed replica, held back, arrives.
const STALE_REPLICA_ANSWER_DELAY_MAX_NS: u64 = 30 * MS;

/// Part of the stale fault: an acknowledgement of a replica, held back in
/// the network until after the replica was removed and its node added
/// back empty (in the same term, it names an entry the new replica does
/// not hold). A network may hold any frame that long; aiming the hold at
/// the moment the leader starts a new record of the node is what makes
/// the case, rare under random delays, common enough to test.
#[derive(Debug, Default)]
pub(crate) struct StaleReplicaAnswers {
    /// The last acknowledgement each replica sent, as a frame of its own
    /// (recorded only while the stale fault is on).
    last: BTreeMap<(usize, GroupId), Frame>,
    /// Held back at the replica's removal.
    held: BTreeMap<(usize, GroupId), Frame>,
}

/// What replicas acknowledged, and what deleted ones had: a leader of an
/// older term than a deleted replica saw may still keep one record of its
/// node across the deletion (it never learnt of the removal), take a
/// delayed acknowledgement of the deleted replica, and then find the new,
/// empty replica "regressed". That report (`FollowerLogRegressed`) is
/// then the core's storage-loss check doing its work, as after a lost
/// disk, not an acknowledged entry lost.
#[derive(Debug, Default)]
pub(crate) struct ReplicaAcknowledgements {
    /// The highest index each live replica acknowledged, by (node index,
    /// group).
    live: BTreeMap<(usize, GroupId), Index>,
    /// Of the replicas deleted, by (node index, group): the highest term
    /// of a leader that held their removal committed when one was
    /// deleted, and the highest index one acknowledged.
    deleted: BTreeMap<(usize, GroupId), (Term, Index)>,
}

impl ReplicaAcknowledgements {
    /// Node `index`'s replica of `group` is deleted, as a leader of
    /// `term` holds its removal committed.
    pub(crate) fn deleted(&mut self, index: usize, group: GroupId, term: Term) {
        let acknowledged = self.live.remove(&(index, group)).unwrap_or(0);
        let entry = self.deleted.entry((index, group)).or_insert((0, 0));
        entry.0 = entry.0.max(term);
        entry.1 = entry.1.max(acknowledged);
    }

    /// Whether a leader of `leader_term` may hold node `index`'s
    /// acknowledgement of `acknowledged` from a replica of `group` since
    /// deleted: one that had acknowledged that far, deleted once a leader
    /// of a later term than `leader_term` held its removal committed. A
    /// leader of that term or later holds the removal (Raft's leader
    /// completeness) and made a new record at the re-addition, which
    /// answers of the deleted replica do not name; an older one may never
    /// have learnt of the removal.
    pub(crate) fn explain_regression(
        &self,
        index: usize,
        group: GroupId,
        leader_term: Term,
        acknowledged: Index,
    ) -> bool {
        self.deleted
            .get(&(index, group))
            .is_some_and(|(term, index)| leader_term < *term && acknowledged <= *index)
    }
}

impl MultiSim {
    /// Notes the highest index each replica acknowledged in `frame`.
    fn note_acknowledged_indexes(&mut self, index: usize, frame: &Frame) {
        for message in &frame.messages {
            if let MessageBody::AppendEntriesResponse(AppendResponse::Accepted { match_index }) =
                message.body
            {
                let high = self
                    .replica_acknowledgements
                    .live
                    .entry((index, message.group))
                    .or_insert(0);
                *high = (*high).max(match_index);
            }
        }
    }

    /// Notes the acknowledgements of `frame` (the stale fault on).
    fn note_acknowledgements(&mut self, index: usize, frame: &Frame) {
        for message in &frame.messages {
            if let MessageBody::AppendEntriesResponse(AppendResponse::Accepted { .. }) =
                message.body
            {
                let mut alone = Frame::new(frame.from, frame.to, frame.incarnation);
                alone.messages.push(message.clone());
                self.stale_replicas
                    .last
                    .insert((index, message.group), alone);
            }
        }
    }

    /// Node `index` deletes its replica of `group`: the stale fault may
    /// hold back the replica's last acknowledgement.
    pub(crate) fn stale_replica_removed(&mut self, index: usize, group: GroupId) {
        let Some(frame) = self.stale_replicas.last.remove(&(index, group)) else {
            return;
        };
        if self.rates.stale > 0.0 && self.net_rng.gen_bool(STALE_REPLICA_ANSWER_CHANCE) {
            self.stale_replicas.held.insert((index, group), frame);
            // Most removals are a replace's or the balancer's, which never
            // add the node back: a change of the group soon after may
            // (`MultiSim::group_change` aims at the held answers).
            if self.phase == Phase::Chaos {
                let delay = self
                    .net_rng
                    .gen_range(STALE_REPLICA_ADD_BACK_MIN_NS..STALE_REPLICA_ADD_BACK_MAX_NS);
                self.schedule(delay, Event::Membership(MembershipStep::GroupChange));
            }
        }
    }

    /// A (node index, group) whose removed replica's acknowledgement is
    /// held back, drawn among them.
    pub(crate) fn stale_replica_to_add_back(&mut self) -> Option<(usize, GroupId)> {
        let held = self.stale_replicas.held.len();
        if held == 0 {
            return None;
        }
        let at = self.net_rng.gen_range(0..held);
        self.stale_replicas.held.keys().nth(at).copied()
    }

    /// Node `index` hosts `group` again, empty: an acknowledgement of its
    /// removed replica held back arrives soon after (once the leader made
    /// its new record of the node).
    pub(crate) fn stale_replica_returns(&mut self, index: usize, group: GroupId) {
        self.stale_replicas.last.remove(&(index, group));
        let Some(frame) = self.stale_replicas.held.remove(&(index, group)) else {
            return;
        };
        let delay = self
            .net_rng
            .gen_range(MS..STALE_REPLICA_ANSWER_DELAY_MAX_NS);
        self.faults.add(FaultKind::Stale, 1);
        self.note(Some(index), || {
            format!("stale: an acknowledgement of the removed replica of group {group} arrives")
        });
        self.schedule_delivery(delay, frame);
    }

    /// Schedules `frame`'s arrival in `delay`, counting it while it
    /// carries group items.
    fn schedule_delivery(&mut self, delay: u64, frame: Frame) {
        if frame.items() > 0 {
            self.group_frames_in_flight += 1;
        }
        self.schedule(
            delay,
            Event::Deliver {
                frame: Box::new(frame),
            },
        );
    }

    /// Whether frames from node index `from` to `to` are dropped.
    pub(crate) fn cut(&self, from: usize, to: usize) -> bool {
        from < 8 && to < 8 && self.blocked[from] & (1 << to) != 0
    }

    /// The delay of one frame, or `None` if it is lost.
    fn frame_delay(&mut self) -> Option<u64> {
        let rates = self.rates.clone();
        if rates.loss > 0.0 && self.net_rng.gen_bool(rates.loss) {
            self.faults.add(FaultKind::Loss, 1);
            return None;
        }
        let mut delay = self.net_rng.gen_range(DELAY_MIN_NS..DELAY_MAX_NS);
        if rates.reorder > 0.0 && self.net_rng.gen_bool(rates.reorder) {
            delay += self.net_rng.gen_range(0..rates.reorder_max_ns.max(1));
            self.faults.add(FaultKind::Reorder, 1);
        }
        if rates.tail > 0.0 && self.net_rng.gen_bool(rates.tail) {
            delay += exponential(&mut self.net_rng, rates.tail_mean_ns).min(TAIL_MAX_NS);
            self.faults.add(FaultKind::Delay, 1);
        }
        if rates.stale > 0.0 && self.net_rng.gen_bool(rates.stale) {
            delay += self
                .net_rng
                .gen_range(1_000 * MS..rates.stale_max_ns.max(1_000 * MS + 1));
            self.faults.add(FaultKind::Stale, 1);
        }
        Some(delay)
    }

    /// Node `index` hands a frame to the network.
    pub(crate) fn send_frame(&mut self, index: usize, frame: Frame) {
        let to = frame.to;
        if to == 0 || to as usize > self.hosts.len() || frame.from != index as NodeId + 1 {
            let message = format!("the layer sent a frame from {} to {to}", frame.from);
            self.fail(
                super::report::MultiCheck::Raft(crate::engine::FailureKind::HostContract),
                Some(index),
                None,
                message,
            );
            return;
        }
        self.trace
            .word(0xf7a0_0000 | ((index as u64) << 8) | to | ((frame.items() as u64) << 24));
        if !frame.messages.is_empty() {
            self.note_acknowledged_indexes(index, &frame);
            if self.rates.stale > 0.0 {
                self.note_acknowledgements(index, &frame);
            }
        }
        if self.cut(index, to as usize - 1) {
            return;
        }
        let duplicate = self.rates.duplicate > 0.0 && self.net_rng.gen_bool(self.rates.duplicate);
        if duplicate {
            if let Some(delay) = self.frame_delay() {
                self.faults.add(FaultKind::Duplicate, 1);
                self.schedule_delivery(delay, frame.clone());
            }
        }
        let answers = !frame.heartbeat_answers.is_empty();
        if let Some(delay) = self.frame_delay() {
            self.schedule_delivery(delay, frame);
        }
        if answers {
            self.lease_on_answer_frame(index, to as usize - 1);
        }
    }

    /// A frame arrives: dropped if its receiver is down or a partition
    /// that started meanwhile cuts it off, queued if it is paused.
    pub(crate) fn on_deliver(&mut self, frame: Box<Frame>) {
        if frame.items() > 0 {
            self.group_frames_in_flight = self.group_frames_in_flight.saturating_sub(1);
        }
        let to = frame.to as usize - 1;
        let from = frame.from as usize;
        if self.hosts[to].multi.is_none() {
            return;
        }
        if from >= 1 && from <= self.hosts.len() && self.cut(from - 1, to) {
            return;
        }
        if self.is_fenced(frame.from) {
            // A lost node's frame still in the network (`forced.rs`).
            return;
        }
        if let Some(Queued::Frame(frame)) = self.queue_if_paused(to, Queued::Frame(frame)) {
            self.step_node(to, MultiInput::Receive(*frame), None);
        }
    }

    /// Splits the network.
    pub(crate) fn partition(&mut self, partition: &Partition) {
        self.blocked = partition.blocked_matrix(self.hosts.len());
        self.partition_generation += 1;
        self.faults.add(partition.kind(), 1);
        self.note(None, || format!("partition: {partition}"));
    }

    /// Every link works again.
    pub(crate) fn heal_network(&mut self) {
        if self.blocked != [0; 8] {
            self.note(None, || "network healed".to_string());
        }
        self.blocked = [0; 8];
        self.partition_generation += 1;
    }
}
