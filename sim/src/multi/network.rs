//! The network between the nodes: one frame per peer per flush, each
//! delayed, lost, duplicated, reordered, held back or cut off by a
//! partition as a whole (one connection carries every group's messages).

use rand::Rng;

use concord::multi::{Frame, MultiInput};
use concord::NodeId;

use crate::faults::{exponential, FaultKind, Partition};

use super::engine::{Event, MultiSim, Queued, MS};

/// Fastest one-way delay of a frame.
const DELAY_MIN_NS: u64 = 100_000;
/// Slowest one-way delay of a frame without a fault.
pub(crate) const DELAY_MAX_NS: u64 = 1_000_000;
/// Longest extra delay of a frame in the delay's long tail.
pub(crate) const TAIL_MAX_NS: u64 = 10_000 * MS;

impl MultiSim {
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
        if self.cut(index, to as usize - 1) {
            return;
        }
        let duplicate = self.rates.duplicate > 0.0 && self.net_rng.gen_bool(self.rates.duplicate);
        if duplicate {
            if let Some(delay) = self.frame_delay() {
                self.faults.add(FaultKind::Duplicate, 1);
                self.schedule(
                    delay,
                    Event::Deliver {
                        frame: Box::new(frame.clone()),
                    },
                );
            }
        }
        let answers = !frame.heartbeat_answers.is_empty();
        if let Some(delay) = self.frame_delay() {
            self.schedule(
                delay,
                Event::Deliver {
                    frame: Box::new(frame),
                },
            );
        }
        if answers {
            self.lease_on_answer_frame(index, to as usize - 1);
        }
    }

    /// A frame arrives: dropped if its receiver is down or a partition
    /// that started meanwhile cuts it off, queued if it is paused.
    pub(crate) fn on_deliver(&mut self, frame: Box<Frame>) {
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
