//! The network between the hosts: message delays drawn from the seed
//! (loss, reordering, long tails, duplication, stale deliveries across
//! terms), the partition matrix, and the in-flight message slab.

use rand::distributions::Bernoulli;
use rand::Rng;

use concord::state_machine::StateMachine;
use concord::{Message, MessageBody, NodeId, Role};

use super::{Event, FailureKind, Simulation, MS};
use crate::budgets::Overrun;
use crate::faults::{exponential, FaultKind, Rates};
use crate::workload::Workload;

/// The shortest delay of any message.
pub(crate) const MESSAGE_DELAY_MIN_NS: u64 = 100_000;

/// Every message's base delay is drawn uniformly from
/// `MESSAGE_DELAY_MIN_NS..MESSAGE_DELAY_MAX_NS`; the faults add to it
/// (reordering, long tails, stale deliveries), none once the network is
/// calm (`crate::budgets` derives its calm bounds from this).
pub(crate) const MESSAGE_DELAY_MAX_NS: u64 = 1_000_000;

/// A slab of values with a free list, so in-flight messages are not
/// moved around the heap.
pub(super) struct Slab<T> {
    pub(super) slots: Vec<Option<T>>,
    pub(super) free: Vec<u32>,
}

impl<T> Slab<T> {
    pub(super) fn new() -> Self {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
        }
    }
    pub(super) fn insert(&mut self, value: T) -> u32 {
        match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(value);
                slot
            }
            None => {
                self.slots.push(Some(value));
                (self.slots.len() - 1) as u32
            }
        }
    }
    pub(super) fn take(&mut self, slot: u32) -> Option<T> {
        let value = self.slots.get_mut(slot as usize).and_then(Option::take);
        if value.is_some() {
            self.free.push(slot);
        }
        value
    }
}

/// The network's fault rates as ready-made coin flips (`None`: rate 0, no
/// draw). `Rng::gen_bool(p)` builds the same distribution on every call,
/// several times per message; sampling a prebuilt one draws exactly the
/// same bits, so runs do not change.
#[derive(Clone, Copy, Debug)]
pub(super) struct NetOdds {
    loss: Option<Bernoulli>,
    duplicate: Option<Bernoulli>,
    reorder: Option<Bernoulli>,
    tail: Option<Bernoulli>,
    stale: Option<Bernoulli>,
}

impl NetOdds {
    /// The coin flips of `rates` (validated probabilities, see
    /// `FaultPlan::validate`).
    pub(super) fn new(rates: &Rates) -> NetOdds {
        let coin = |rate: f64| {
            if rate > 0.0 {
                Bernoulli::new(rate).ok()
            } else {
                None
            }
        };
        NetOdds {
            loss: coin(rates.loss),
            duplicate: coin(rates.duplicate),
            reorder: coin(rates.reorder),
            tail: coin(rates.tail),
            stale: coin(rates.stale),
        }
    }
}

/// A message body as one word for the trace hash.
pub(super) fn body_code(body: &MessageBody) -> u64 {
    match body {
        MessageBody::RequestVote {
            pre_vote, last_log, ..
        } => 1 | (u64::from(*pre_vote) << 4) | (last_log.index << 8),
        MessageBody::RequestVoteResponse { pre_vote, granted } => {
            2 | (u64::from(*pre_vote) << 4) | (u64::from(*granted) << 5)
        }
        MessageBody::AppendEntries {
            prev,
            entries,
            leader_commit,
        } => 3 | ((entries.len() as u64) << 4) | (prev.index << 16) | (leader_commit << 40),
        MessageBody::AppendEntriesResponse(response) => match response {
            concord::AppendResponse::Accepted { match_index } => 4 | (match_index << 8),
            concord::AppendResponse::Rejected { rejected_index, .. } => 5 | (rejected_index << 8),
        },
        MessageBody::Heartbeat { commit, read_round } => 6 | (commit << 8) | (read_round << 40),
        MessageBody::HeartbeatResponse { read_round } => 7 | (read_round << 8),
        MessageBody::ReadIndexRequest { request } => 11 | (request << 8),
        MessageBody::ReadIndexResponse { request, index } => {
            12 | (u64::from(index.is_some()) << 4) | (request << 8) | (index.unwrap_or(0) << 32)
        }
        MessageBody::TimeoutNow => 8,
        MessageBody::InstallSnapshot(chunk) => {
            9 | (chunk.snapshot.index << 8) | (chunk.offset << 32)
        }
        MessageBody::InstallSnapshotResponse {
            snapshot,
            next_offset,
            rewind,
        } => 10 | (u64::from(*rewind) << 4) | (snapshot.index << 8) | (next_offset << 32),
        MessageBody::Removed { configuration } => 11 | (configuration.index << 8),
        MessageBody::CommitNotice { last, commit } => 13 | (last.index << 8) | (commit << 36),
        MessageBody::CandidateCatchUp { prev, entries } => {
            14 | ((entries.len() as u64) << 4) | (prev.index << 16)
        }
        MessageBody::RecoveryQuery { nonce } => 15 | (nonce << 8),
        MessageBody::RecoveryReport(report) => {
            16 | (u64::from(report.recovering) << 4)
                | (report.last_log.index << 8)
                | (report.last_log.term << 40)
        }
        MessageBody::AcknowledgedEntryLost { acknowledged } => 17 | (acknowledged.index << 8),
    }
}

impl<S: StateMachine, W: Workload> Simulation<S, W> {
    /// Flips `coin`: false without a draw when its rate is 0.
    fn flip(&mut self, coin: Option<Bernoulli>) -> bool {
        coin.is_some_and(|coin| self.net_rng.sample(coin))
    }

    pub(super) fn message_delay(&mut self) -> Option<u64> {
        let odds = self.odds;
        if self.flip(odds.loss) {
            self.faults.add(FaultKind::Loss, 1);
            return None;
        }
        let mut delay = MESSAGE_DELAY_MIN_NS
            + self
                .net_rng
                .gen_range(0..MESSAGE_DELAY_MAX_NS - MESSAGE_DELAY_MIN_NS);
        if self.flip(odds.reorder) {
            delay += self.net_rng.gen_range(0..self.rates.reorder_max_ns.max(1));
            self.faults.add(FaultKind::Reorder, 1);
        }
        if self.flip(odds.tail) {
            delay += exponential(&mut self.net_rng, self.rates.tail_mean_ns).min(10_000 * MS);
            self.faults.add(FaultKind::Delay, 1);
        }
        if self.flip(odds.stale) {
            delay += self
                .net_rng
                .gen_range(1_000 * MS..self.rates.stale_max_ns.max(1_000 * MS + 1));
            self.faults.add(FaultKind::Stale, 1);
        }
        Some(delay)
    }

    /// A message sent before the heal may arrive up to `delay` later: the
    /// calm checks that a late delivery could disturb (`checks`) stay
    /// unjudged until then.
    fn note_chaos_delivery(&mut self, message: &Message, delay: u64) {
        if self.healed {
            return;
        }
        let until_ns = self.now + delay;
        self.chaos_deliveries_until_ns = self.chaos_deliveries_until_ns.max(until_ns);
        if matches!(message.body, MessageBody::TimeoutNow) {
            self.chaos_timeout_now_until_ns = self.chaos_timeout_now_until_ns.max(until_ns);
        }
    }

    pub(super) fn send(&mut self, index: usize, to: NodeId, message: Message) {
        self.messages_handed += 1;
        self.spent.messages += 1;
        self.spent.bytes += crate::performance::message_bytes(&message);
        if to == 0 || to as usize > self.hosts.len() {
            return;
        }
        if matches!(message.body, MessageBody::InstallSnapshot { .. }) {
            self.snapshots.chunks_sent += 1;
        }
        if self.split_vote_grant_lost(to, &message) {
            return;
        }
        if let Some(text) = self.check_vote_after_loss(index, &message) {
            self.fail(FailureKind::RecoveringVote, Some(index), text);
            return;
        }
        if let Some(node) = self.hosts[index].node.as_ref() {
            self.promises.on_send(index, node, &message);
            match self.budgets.on_send(node, &message) {
                Ok(()) => {}
                Err(Overrun::Bound(kind, excess)) => self.fail(kind, Some(index), excess),
                Err(Overrun::Expectation(expectation, excess)) => {
                    self.exceed(expectation, Some(index), excess)
                }
            }
        }
        let target = to as usize - 1;
        if self.blocked[index] & (1 << target) != 0 {
            return;
        }
        self.late_catch_up_on_send(index, target, &message);
        if self.lease_hold(index, target, &message) {
            return;
        }
        self.conflict_on_send(index, &message);
        let (Some(delay), Some(bug_ns)) = (self.message_delay(), self.calm_bug_delay(&message))
        else {
            return;
        };
        let delay = delay + bug_ns + self.split_vote_delay(index, target, &message);
        self.note_chaos_delivery(&message, delay);
        if self.flip(self.odds.duplicate) {
            if let Some(second_delay) = self.message_delay() {
                self.note_chaos_delivery(&message, second_delay);
                self.faults.add(FaultKind::Duplicate, 1);
                let slot = self.messages.insert(message.clone());
                self.schedule(second_delay, Event::Deliver { slot });
            }
        }
        let slot = self.messages.insert(message);
        self.schedule(delay, Event::Deliver { slot });
    }

    /// The partitions changed: every leader now cut off from a quorum must
    /// step down within its CheckQuorum bound (two CheckQuorum rounds of
    /// `election_timeout_min_ticks` each, plus two ticks, on its own
    /// clock).
    /// Whether node `index` is cut off from a quorum of the configuration
    /// in force in it (either half while joint). A peer counts as cut off
    /// only if nothing it sends can reach the node: answers sent before a
    /// one-way cut of the other direction may still arrive (seconds)
    /// later, legitimately.
    pub(super) fn cut_off_from_quorum(&self, index: usize) -> bool {
        let Some(node) = self.hosts[index].node.as_ref() else {
            return false;
        };
        let nodes = self.hosts.len();
        let membership = node.membership();
        let reaches = |id: NodeId| {
            let other = id as usize - 1;
            other == index || (other < nodes && self.blocked[other] & (1 << index) == 0)
        };
        [&membership.voters, &membership.voters_outgoing]
            .into_iter()
            .filter(|voters| !voters.is_empty())
            .any(|voters| voters.iter().filter(|id| reaches(**id)).count() <= voters.len() / 2)
    }

    pub(super) fn network_changed(&mut self) {
        self.network_generation = self.network_generation.wrapping_add(1);
        if self.healed || !self.node_options.check_quorum {
            return;
        }
        let nodes = self.hosts.len();
        for index in 0..nodes {
            let host = &self.hosts[index];
            let Some(node) = host.node.as_ref() else {
                continue;
            };
            if node.role() != Role::Leader || host.paused {
                continue;
            }
            if !self.cut_off_from_quorum(index) {
                continue;
            }
            self.schedule_step_down_deadline(index);
        }
    }

    /// Leader `index`, cut off from a quorum of its configuration, must
    /// have stepped down two CheckQuorum rounds (plus two ticks) from now.
    pub(super) fn schedule_step_down_deadline(&mut self, index: usize) {
        let host = &self.hosts[index];
        let Some(node) = host.node.as_ref() else {
            return;
        };
        let ticks = 2 * u64::from(node.config().election_timeout_min_ticks) + 2;
        let event = Event::StepDownDeadline {
            node: index as u8,
            incarnation: host.incarnation,
            term: node.term(),
            network: self.network_generation,
            pauses: host.pauses,
            configuration: node.membership_index(),
        };
        self.schedule(ticks * host.tick_period_ns, event);
    }
}
