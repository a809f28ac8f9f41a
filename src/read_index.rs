//! Linearizable reads that write nothing to the log (thesis §6.4):
//! ReadIndex, leader leases, and follower reads.
//!
//! **ReadIndex.** A read arriving at the leader joins the next
//! *confirmation round*: a heartbeat to every follower carrying a round
//! number, which followers echo. Once a quorum (the leader included) has
//! answered a round sent after the read arrived, no other leader can have
//! been elected before that round was sent (the quorums intersect, and a
//! follower in a newer term answers no heartbeat of ours), so every write
//! acknowledged before the read began is in our log. The read's index is
//! then the commit index, taken once the leader has committed an entry of
//! its own term (before that, its commit index may lag entries an earlier
//! leader committed). The read is released to the host once the state
//! machine has applied that index. One round confirms every read that
//! arrived before it was sent.
//!
//! **Leases.** Every heartbeat is a round, and the leader remembers the
//! tick it sent each recent round at. A follower that answers a heartbeat
//! refuses to vote for anyone else for `election_timeout_min_ticks` of its
//! own clock from when it received it (CheckQuorum's leader stickiness).
//! So while fewer than `lease_read_ticks` of the leader's ticks have
//! passed since sending a round a quorum answered, no other leader can
//! exist, provided the clocks differ by less than `clock_drift_bound_ticks`
//! over an election timeout (see [`Config::lease_read_ticks`]). A lease
//! read is then served at the commit index without a round trip. Once a
//! leader has started a leadership transfer, no round of its term grants
//! a lease, not even after it gave the transfer up: the transfer's
//! election ignores stickiness, and its messages may still be in flight.
//!
//! **Follower reads.** A follower asks its leader for a read index
//! ([`MessageBody::ReadIndexRequest`]); the leader runs ReadIndex for it
//! and answers with the index. The follower serves the read once it has
//! applied that index. A request not answered in the term it was sent in
//! (the leader changed) or within an election timeout is refused, never
//! answered from a possibly stale state; an index once received stays
//! valid across leader changes.
//!
//! [`Config::lease_read_ticks`]: crate::Config::lease_read_ticks
//! [`MessageBody::ReadIndexRequest`]: crate::MessageBody::ReadIndexRequest

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::io::Action;
use crate::message::MessageBody;
use crate::node::{Node, Role};
use crate::quorum::joint_committed_index;
use crate::types::{Index, NodeId, Term};

/// Which way a read is served. Given in [`Input::Read`](crate::Input::Read)
/// and reported back in [`Action::ReadReady`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ReadPath {
    /// At the leader, after a heartbeat round confirms its leadership.
    ReadIndex,
    /// At the leader, without a round trip, while its lease holds. Falls
    /// back to `ReadIndex` (and is reported so) when leases are off or the
    /// lease has lapsed.
    Lease,
    /// At a follower, at an index its leader confirmed with ReadIndex.
    /// Sent to the leader, this is served like `ReadIndex`.
    Follower,
}

/// Why a read was refused. None of these means the read happened: the
/// client may retry, at the hinted leader if one is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ReadError {
    /// This node cannot serve this path: it is not the leader (for
    /// `ReadIndex` and `Lease`), or it knows no leader to ask (for
    /// `Follower`).
    #[error("not the leader; the leader is {}", match leader_hint { Some(id) => format!("probably node {id}"), None => "unknown".to_string() })]
    NotLeader {
        /// The leader as far as this node knows.
        leader_hint: Option<NodeId>,
    },
    /// Leadership changed before the read's index was confirmed.
    #[error("leadership changed before the read was confirmed; retry (the leader is {})", match leader_hint { Some(id) => format!("probably node {id}"), None => "unknown".to_string() })]
    LeadershipLost {
        /// The leader as far as this node knows.
        leader_hint: Option<NodeId>,
    },
    /// Leadership is being handed to another node.
    #[error("leadership is being transferred to node {target}; retry there")]
    TransferInProgress {
        /// The node leadership is moving to.
        target: NodeId,
    },
    /// Too many reads are waiting (`read_requests_pending_max`).
    #[error("too many reads are pending; retry after some complete")]
    Backpressure,
    /// The leader did not answer a follower's request within an election
    /// timeout.
    #[error("the leader did not confirm a read index within an election timeout; retry")]
    Timeout,
    /// This node's committed log contradicts its leader's (see
    /// [`Action::LogDiverged`](crate::Action::LogDiverged)): it serves no
    /// read, on any path, until an operator repairs it.
    #[error("this server's committed log contradicts its leader's at index {index}; it serves no reads (see its log); retry at another server")]
    Diverged {
        /// The first index found in conflict.
        index: Index,
    },
}

/// A read waiting at the leader for its confirmation round.
#[derive(Clone, Copy, Debug)]
pub(crate) struct UnconfirmedRead {
    pub(crate) id: u64,
    pub(crate) path: ReadPath,
    /// A follower's request (the read is answered to it, not served here).
    pub(crate) for_follower: Option<NodeId>,
    /// The first round sent after the read arrived.
    pub(crate) round: u64,
}

/// A follower's read waiting for its leader's read index.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ForwardedRead {
    pub(crate) id: u64,
    pub(crate) term: Term,
    /// The request to the leader that covers it: the first one sent after
    /// the read arrived.
    pub(crate) request: u64,
}

/// Reads of one node, on every path, and the leader's confirmation rounds.
#[derive(Clone, Debug, Default)]
pub(crate) struct Reads {
    /// Leader: reads waiting for a round (in arrival order, so rounds are
    /// non-decreasing).
    pub(crate) unconfirmed: VecDeque<UnconfirmedRead>,
    /// Follower: reads waiting for a read index from the leader, in
    /// arrival order (so their requests are non-decreasing).
    pub(crate) forwarded: VecDeque<ForwardedRead>,
    /// Follower: the number of the next request to the leader, and the
    /// one outstanding with the tick it was sent at. One request at a
    /// time covers every read that arrived before it was sent, so the
    /// leader pays one round trip per batch, not per read.
    pub(crate) request_next: u64,
    pub(crate) request_outstanding: Option<(u64, u64)>,
    /// Reads whose index is known, waiting for the state machine to apply
    /// it: (index, arrival sequence) -> (id, path).
    pub(crate) awaiting_apply: BTreeMap<(Index, u64), (u64, ReadPath)>,
    pub(crate) sequence: u64,
    /// Leader: the number of the next round sent (rounds start at 1 in
    /// every term; 0 means "no round").
    pub(crate) round_next: u64,
    /// Leader: tick each recent round was sent at; front is the oldest
    /// remembered round, `round_first`.
    pub(crate) round_sent_ticks: VecDeque<u64>,
    pub(crate) round_first: u64,
    /// Leader: rounds below this grant no lease (`u64::MAX` once a
    /// transfer started in this term).
    pub(crate) lease_round_min: u64,
    /// Follower: the last read index its leader answered, with the term
    /// and the tick it came back in (for the planted
    /// `follower_read_index_reused` mistake only).
    pub(crate) last_answer: Option<(Index, Term, u64)>,
}

impl Reads {
    /// The reads of a node just started with PRNG seed `seed`. A
    /// follower's requests to its leader are numbered from a point drawn
    /// from the seed: a leader's answer to an earlier incarnation of this
    /// node, delayed in the network across the restart, must not be taken
    /// for the answer to a request of this one (it was computed before
    /// this incarnation's reads arrived, so it could be stale). That holds
    /// when every start gets a fresh seed, as `Config::seed` asks.
    pub(crate) fn new(seed: u64) -> Self {
        // splitmix64's finalizer: nearby seeds land far apart.
        let mut x = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^= x >> 31;
        Reads {
            // Top bit clear: 2^63 requests before wrapping; never 0.
            request_next: (x >> 1).max(1),
            ..Reads::default()
        }
    }
}

/// Rounds remembered for the lease; older ones grant nothing. A lease is
/// at most an election timeout long, and rounds are sent at most once per
/// heartbeat or per round trip, so this comfortably covers it.
const ROUND_TICKS_REMEMBERED_MAX: usize = 4096;

impl Reads {
    pub(crate) fn pending(&self) -> usize {
        self.unconfirmed.len() + self.forwarded.len() + self.awaiting_apply.len()
    }

    /// Rounds of a new term start afresh.
    pub(crate) fn reset_rounds(&mut self) {
        self.round_next = 1;
        self.round_sent_ticks.clear();
        self.round_first = 1;
        self.lease_round_min = 1;
    }

    fn record_round_sent(&mut self, round: u64, tick: u64) {
        debug_assert_eq!(round, self.round_first + self.round_sent_ticks.len() as u64);
        if self.round_sent_ticks.len() == ROUND_TICKS_REMEMBERED_MAX {
            self.round_sent_ticks.pop_front();
            self.round_first += 1;
        }
        self.round_sent_ticks.push_back(tick);
    }

    fn round_sent_tick(&self, round: u64) -> Option<u64> {
        let offset = round.checked_sub(self.round_first)?;
        self.round_sent_ticks.get(offset as usize).copied()
    }

    /// The planted `lease_from_answer` mistake: round `round` counts as
    /// sent at `tick`, when an answer to it arrived.
    fn restamp_round(&mut self, round: u64, tick: u64) {
        if let Some(offset) = round.checked_sub(self.round_first) {
            if let Some(sent) = self.round_sent_ticks.get_mut(offset as usize) {
                *sent = tick;
            }
        }
    }

    fn await_apply(&mut self, index: Index, id: u64, path: ReadPath) {
        self.sequence += 1;
        self.awaiting_apply
            .insert((index, self.sequence), (id, path));
    }
}

impl Node {
    /// A host's read request, on any role.
    pub(crate) fn read(&mut self, id: u64, path: ReadPath, actions: &mut Vec<Action>) {
        if let Some(divergence) = self.divergence {
            let error = ReadError::Diverged {
                index: divergence.index,
            };
            self.refuse_read(id, error, actions);
            return;
        }
        if self.reads.pending() >= self.config.read_requests_pending_max {
            self.refuse_read(id, ReadError::Backpressure, actions);
            return;
        }
        match (self.role, path) {
            (Role::Leader, _) => self.read_at_leader(id, path, None, actions),
            // A witness has no state machine to read from.
            (Role::Follower, ReadPath::Follower)
                if self.leader.is_some() && !self.is_witness_node() =>
            {
                self.forward_read(id, actions)
            }
            _ => {
                let leader_hint = self.leader.filter(|leader| *leader != self.config.id);
                self.refuse_read(id, ReadError::NotLeader { leader_hint }, actions);
            }
        }
    }

    fn refuse_read(&mut self, id: u64, error: ReadError, actions: &mut Vec<Action>) {
        self.stats.reads_refused += 1;
        actions.push(Action::ReadRefused { id, error });
    }

    /// Leader: serves (or confirms, for a follower) a read.
    fn read_at_leader(
        &mut self,
        id: u64,
        path: ReadPath,
        for_follower: Option<NodeId>,
        actions: &mut Vec<Action>,
    ) {
        debug_assert_eq!(self.role, Role::Leader);
        // The planted `lease_during_transfer` mistake serves lease reads
        // through a transfer.
        let lease_through_transfer = self.planted().lease_during_transfer
            && path == ReadPath::Lease
            && for_follower.is_none()
            && self.lease_holds();
        if let Some(target) = self.transfer_target.filter(|_| !lease_through_transfer) {
            match for_follower {
                None => self.refuse_read(id, ReadError::TransferInProgress { target }, actions),
                Some(follower) => self.answer_forwarded_read(follower, id, None, actions),
            }
            return;
        }
        // (The planted `lease_before_own_term_commit` skips the wait for
        // an entry of this term to commit.)
        if path == ReadPath::Lease
            && for_follower.is_none()
            && self.lease_holds()
            && (self.own_term_committed() || self.planted().lease_before_own_term_commit)
        {
            self.stats.reads_lease += 1;
            let index = self.log.commit_index();
            self.serve_when_applied(index, id, ReadPath::Lease, actions);
            return;
        }
        let path = match path {
            ReadPath::Lease => ReadPath::ReadIndex,
            other => other,
        };
        if self.sole_voter() {
            self.reads.unconfirmed.push_back(UnconfirmedRead {
                id,
                path,
                for_follower,
                round: 0,
            });
            self.release_confirmed_reads(actions);
            return;
        }
        // Batching: while reads wait (a round is out, or the leader's own
        // entry is not committed yet), a new read joins the next round,
        // sent when the outstanding one is confirmed or at the next
        // heartbeat; so a burst of reads costs one round, not one each.
        let round_in_flight = !self.reads.unconfirmed.is_empty();
        let round = if round_in_flight && self.planted().read_joins_sent_round {
            // The planted mistake: the round already out, sent before
            // this read arrived.
            self.reads.round_next.saturating_sub(1).max(1)
        } else {
            self.reads.round_next
        };
        self.reads.unconfirmed.push_back(UnconfirmedRead {
            id,
            path,
            for_follower,
            round,
        });
        if !round_in_flight {
            self.broadcast_heartbeat(actions);
        }
    }

    /// Whether a quorum answered a round sent within the lease.
    pub(crate) fn lease_holds(&mut self) -> bool {
        let lease_ticks = self.config.lease_read_ticks;
        let planted = self.planted();
        let transferring = self.transfer_target.is_some() && !planted.lease_during_transfer;
        if lease_ticks == 0 || self.role != Role::Leader || transferring {
            return false;
        }
        // A leader that removed itself from the voters leads on until the
        // configuration without it commits, and its rounds are answered by
        // the new voters alone; a lone voter among them campaigns at its
        // first tick, promising nothing. Such a leader serves no lease
        // (found by the simulator's `read-fresh`).
        if !self.is_voter_here() {
            return false;
        }
        let round = self.confirmed_round();
        if round < self.reads.lease_round_min {
            return false;
        }
        let mut lease_ticks = u64::from(lease_ticks);
        if planted.lease_ignores_drift {
            lease_ticks += u64::from(self.config.clock_drift_bound_ticks);
        }
        match self.reads.round_sent_tick(round) {
            Some(sent_tick) => self.now_ticks < sent_tick + lease_ticks,
            None => false,
        }
    }

    /// The highest round a quorum (the leader included) has answered.
    ///
    /// The quorums are those of the configuration in force (learners never
    /// count; while joint, both halves must agree), counted like the commit
    /// index: round numbers stand in for match indices.
    pub(crate) fn confirmed_round(&mut self) -> u64 {
        let latest_sent = self.reads.round_next.saturating_sub(1);
        let me = self.config.id;
        let progress = &self.progress;
        let round_of = |id: NodeId| {
            if id == me {
                latest_sent
            } else {
                progress.get(&id).map_or(0, |p| p.read_round_acked)
            }
        };
        // Reuses the quorum scratch buffer: no allocation per step.
        let mut scratch = std::mem::take(&mut self.scratch_indices);
        let confirmed = joint_committed_index(
            &self.membership.voters,
            &self.membership.voters_outgoing,
            &mut scratch,
            round_of,
        );
        self.scratch_indices = scratch;
        confirmed
    }

    /// This node is the configuration's only voter: no one else could
    /// lead, so a read is confirmed as it arrives.
    fn sole_voter(&self) -> bool {
        self.membership.voters_outgoing.is_empty()
            && self.membership.voters.len() == 1
            && self.membership.voters.contains(&self.config.id)
    }

    pub(crate) fn own_term_committed(&self) -> bool {
        self.log.term_at(self.log.commit_index()) == Some(self.term)
    }

    /// Numbers the next heartbeat round and remembers when it was sent.
    pub(crate) fn next_read_round(&mut self) -> u64 {
        let round = self.reads.round_next;
        self.reads.round_next += 1;
        let tick = self.now_ticks;
        self.reads.record_round_sent(round, tick);
        round
    }

    /// Leader: a follower answered heartbeat round `round`.
    pub(crate) fn handle_read_round_ack(
        &mut self,
        from: NodeId,
        round: u64,
        actions: &mut Vec<Action>,
    ) {
        if round >= self.reads.round_next {
            // A round never sent in this term: a broken or hostile peer.
            self.stats.messages_malformed += 1;
            return;
        }
        let Some(progress) = self.progress.get_mut(&from) else {
            return;
        };
        if round <= progress.read_round_acked {
            return;
        }
        progress.read_round_acked = round;
        if self.planted().lease_from_answer && self.confirmed_round() == round {
            let now = self.now_ticks;
            self.reads.restamp_round(round, now);
        }
        self.release_confirmed_reads(actions);
    }

    /// Leader: hands out every read whose round a quorum answered, once an
    /// entry of this term is committed; starts the next round for reads
    /// that wait for one.
    pub(crate) fn release_confirmed_reads(&mut self, actions: &mut Vec<Action>) {
        if self.role != Role::Leader || self.reads.unconfirmed.is_empty() {
            return;
        }
        if !self.own_term_committed() {
            return;
        }
        // A sole voter needs no round; the planted mistake skips it too.
        let confirmed = if self.sole_voter() || self.planted().read_index_without_round {
            u64::MAX
        } else {
            self.confirmed_round()
        };
        let index = self.log.commit_index();
        while let Some(read) = self.reads.unconfirmed.front().copied() {
            if read.round > confirmed {
                break;
            }
            self.reads.unconfirmed.pop_front();
            match read.for_follower {
                Some(follower) => {
                    self.answer_forwarded_read(follower, read.id, Some(index), actions)
                }
                None => {
                    self.stats.reads_read_index += 1;
                    self.serve_when_applied(index, read.id, read.path, actions);
                }
            }
        }
        let round_next = self.reads.round_next;
        if self
            .reads
            .unconfirmed
            .front()
            .is_some_and(|read| read.round == round_next)
        {
            self.broadcast_heartbeat(actions);
        }
    }

    /// Releases the read now if its index is applied, else when it is.
    fn serve_when_applied(
        &mut self,
        index: Index,
        id: u64,
        path: ReadPath,
        actions: &mut Vec<Action>,
    ) {
        let planted_early = path == ReadPath::Follower && self.planted().follower_read_before_apply;
        if index <= self.applied_index || planted_early {
            actions.push(Action::ReadReady { id, index, path });
        } else {
            self.reads.await_apply(index, id, path);
        }
    }

    /// The state machine applied up to `applied_index`: serve the reads it
    /// covers.
    pub(crate) fn release_applied_reads(&mut self, actions: &mut Vec<Action>) {
        while let Some(entry) = self.reads.awaiting_apply.first_entry() {
            let index = entry.key().0;
            if index > self.applied_index {
                break;
            }
            let (id, path) = entry.remove();
            // Serve-after-apply, checked on the way out too.
            assert!(index <= self.applied_index);
            actions.push(Action::ReadReady { id, index, path });
        }
    }

    /// A leader answers a follower's read request.
    fn answer_forwarded_read(
        &mut self,
        follower: NodeId,
        request: u64,
        index: Option<Index>,
        actions: &mut Vec<Action>,
    ) {
        self.send(
            follower,
            MessageBody::ReadIndexResponse { request, index },
            actions,
        );
    }

    /// Follower: the read waits for the next request to the leader, sent
    /// now unless one is outstanding.
    fn forward_read(&mut self, id: u64, actions: &mut Vec<Action>) {
        if self.planted().follower_read_index_reused && self.reads.request_outstanding.is_none() {
            // The planted mistake: an index that came back in this tick
            // serves a read that arrived after it was confirmed.
            if let Some((index, term, tick)) = self.reads.last_answer {
                if term == self.term && tick == self.now_ticks {
                    self.stats.reads_follower += 1;
                    self.serve_when_applied(index, id, ReadPath::Follower, actions);
                    return;
                }
            }
        }
        self.reads.forwarded.push_back(ForwardedRead {
            id,
            term: self.term,
            request: self.reads.request_next,
        });
        self.maybe_send_read_index_request(actions);
    }

    /// Follower: sends the next request if reads wait for it and none is
    /// outstanding.
    fn maybe_send_read_index_request(&mut self, actions: &mut Vec<Action>) {
        if self.reads.request_outstanding.is_some() || self.reads.forwarded.is_empty() {
            return;
        }
        let Some(leader) = self.leader.filter(|_| self.role == Role::Follower) else {
            return;
        };
        let request = self.reads.request_next;
        debug_assert!(self
            .reads
            .forwarded
            .iter()
            .all(|read| read.request <= request));
        self.reads.request_next += 1;
        self.reads.request_outstanding = Some((request, self.now_ticks));
        self.send(leader, MessageBody::ReadIndexRequest { request }, actions);
    }

    /// Follower: hands every read covered by `request` its index (or
    /// refuses it), then asks for the reads that arrived since.
    fn finish_read_index_request(
        &mut self,
        request: u64,
        outcome: Result<Index, ReadError>,
        actions: &mut Vec<Action>,
    ) {
        self.reads.request_outstanding = None;
        if let Ok(index) = outcome {
            self.reads.last_answer = Some((index, self.term, self.now_ticks));
        }
        while let Some(read) = self.reads.forwarded.front().copied() {
            if read.request > request {
                break;
            }
            self.reads.forwarded.pop_front();
            match outcome {
                Ok(index) => {
                    self.stats.reads_follower += 1;
                    self.serve_when_applied(index, read.id, ReadPath::Follower, actions);
                }
                Err(error) => self.refuse_read(read.id, error, actions),
            }
        }
        self.maybe_send_read_index_request(actions);
    }

    /// Leader side of a follower's read request (in our term).
    pub(crate) fn handle_read_index_request(
        &mut self,
        from: NodeId,
        request: u64,
        actions: &mut Vec<Action>,
    ) {
        if self.role != Role::Leader
            || self.reads.pending() >= self.config.read_requests_pending_max
        {
            self.answer_forwarded_read(from, request, None, actions);
            return;
        }
        self.read_at_leader(request, ReadPath::Follower, Some(from), actions);
    }

    /// Follower side: the leader answered a read request (in our term).
    pub(crate) fn handle_read_index_response(
        &mut self,
        from: NodeId,
        request: u64,
        index: Option<Index>,
        actions: &mut Vec<Action>,
    ) {
        if self.leader != Some(from) {
            self.stats.messages_malformed += 1;
            return;
        }
        if self
            .reads
            .request_outstanding
            .map(|(outstanding, _)| outstanding)
            != Some(request)
        {
            // Answered already (a duplicate), or timed out.
            return;
        }
        let outcome = index.ok_or(ReadError::LeadershipLost {
            leader_hint: self.leader,
        });
        self.finish_read_index_request(request, outcome, actions);
    }

    /// Follower: refuses reads the leader has not answered within an
    /// election timeout.
    pub(crate) fn tick_reads(&mut self, actions: &mut Vec<Action>) {
        self.now_ticks += 1;
        let timeout_ticks = u64::from(self.config.election_timeout_min_ticks);
        if let Some((request, sent_tick)) = self.reads.request_outstanding {
            if self.now_ticks >= sent_tick + timeout_ticks {
                self.finish_read_index_request(request, Err(ReadError::Timeout), actions);
            }
        }
    }

    /// Role or term changed: reads whose index is not known yet are
    /// refused (the new leader will confirm nothing for the old one);
    /// those waiting only for the state machine stay, their index is
    /// valid whoever leads.
    /// Refuses every read waiting here, on every path, with `error`.
    pub(crate) fn refuse_every_read(&mut self, error: ReadError, actions: &mut Vec<Action>) {
        while let Some(read) = self.reads.unconfirmed.pop_front() {
            if read.for_follower.is_none() {
                self.refuse_read(read.id, error, actions);
            }
        }
        self.reads.request_outstanding = None;
        while let Some(read) = self.reads.forwarded.pop_front() {
            self.refuse_read(read.id, error, actions);
        }
        let awaiting = std::mem::take(&mut self.reads.awaiting_apply);
        for (id, _) in awaiting.into_values() {
            self.refuse_read(id, error, actions);
        }
    }

    pub(crate) fn abandon_unconfirmed_reads(&mut self, actions: &mut Vec<Action>) {
        let leader_hint = self.leader.filter(|leader| *leader != self.config.id);
        while let Some(read) = self.reads.unconfirmed.pop_front() {
            // A follower's request is simply not answered; it times out or
            // sees the new term.
            if read.for_follower.is_none() {
                self.refuse_read(read.id, ReadError::LeadershipLost { leader_hint }, actions);
            }
        }
        let same_leader = self.role == Role::Follower
            && self
                .reads
                .forwarded
                .front()
                .is_none_or(|read| read.term == self.term);
        if !same_leader {
            // The request outstanding (if any) went to another leader.
            self.reads.request_outstanding = None;
            while let Some(read) = self.reads.forwarded.pop_front() {
                self.refuse_read(read.id, ReadError::LeadershipLost { leader_hint }, actions);
            }
        }
    }

    /// A transfer started: no round of this term grants a lease any more,
    /// whether sent before, during or after the transfer (`reset_rounds`
    /// lifts this in the next term). The target's election sets the
    /// voters' stickiness aside, and it may come late: TimeoutNow, or the
    /// target's vote requests, can be delayed in the network past the
    /// moment the leader gives the transfer up. A voter that answered a
    /// round sent after the give-up would still grant such a request, and
    /// a new leader could then commit writes while this one served lease
    /// reads from that round (found by the simulator's lease nemesis,
    /// `TransferGivenUp`). Until the next term, reads go through ReadIndex.
    pub(crate) fn suspend_lease(&mut self) {
        if self.planted().lease_during_transfer {
            return;
        }
        self.reads.lease_round_min = u64::MAX;
    }
}
