//! Calm-network liveness budgets after the latency writes: the
//! cluster is healed, quiet, and led by the leader that held through the
//! quiet period, so anything slower than a few round trips is the
//! protocol's own doing.
//!
//! * **reads**: [`READ_ROUNDS`] rounds, each a ReadIndex read at the
//!   leader and a follower read at every other non-witness voter
//!   (`checks::judged_voters`); every read must be answered
//!   within `crate::budgets`' `READ_LATENCY_MAX_NS` (a read never
//!   answered fails at the end of its round).
//! * **backlog**: then `BACKLOG_BATCHES` full batches of entries proposed
//!   at once at the leader must go out as a window of appends and commit
//!   there within one round trip per batch and three message delays per
//!   refused append (`budgets::backlog_budget_ns`).
//!
//! Each measurement starts only once the leader is idle
//! (`Simulation::leader_idle`: every judged voter holds its whole log,
//! acknowledged, with no append in flight; for reads, every commit
//! applied), the precondition of the bounds; one that a client's retry
//! joined is counted unjudged, not judged.
//!
//! The rejoin check runs after them. A leader lost during these phases
//! ends the run unjudged here (the quiet period already judged stability).

use std::collections::BTreeMap;

use bytes::Bytes;
use concord::session;
use concord::state_machine::StateMachine;
use concord::{Index, Input, Message, MessageBody, NodeId, ReadError, ReadPath, Role, Term};

use super::checks::{judged_voters, CALM_IDLE_POLL_NS, CALM_IDLE_WAIT_MAX_NS};
use super::{format_time, Event, FailureKind, Simulation, MS};
use crate::budgets::{Expectation, BACKLOG_BATCHES, READ_LATENCY_MAX_NS};
use crate::workload::Workload;

/// Read rounds after the latency writes.
pub(super) const READ_ROUNDS: u32 = 3;

/// Time from a read round's start to its end, when every read of it must
/// have been answered; longer than a heartbeat interval at the default
/// tick, so a read that waits for the next heartbeat still fails on its
/// budget with its figures rather than here.
const READ_ROUND_NS: u64 = 25 * MS;

/// A backlog not committed this long after its proposal fails the run
/// (the budget itself is far smaller: this only ends a stalled phase).
const BACKLOG_TIMEOUT_NS: u64 = 1_000 * MS;

/// The session the calm phases' writes name: never registered, so the
/// state machine answers each one "expired" and executes none (no
/// client's session is evicted by them).
const CALM_CLIENT: u64 = u64::MAX;

/// A backlog under way.
#[derive(Clone, Copy)]
struct Backlog {
    proposed_ns: u64,
    last: Index,
    entries: u64,
    batches: u64,
    window: u64,
}

/// The calm phases under way.
pub(super) struct CalmPhase {
    leader: usize,
    term: Term,
    /// Reads not answered yet: (host, read id) -> (requested at, path,
    /// queued behind a client's read already waiting at that follower:
    /// then not judged, see [`Simulation::start_read_round`]).
    reads: BTreeMap<(usize, u64), (u64, ReadPath, bool)>,
    /// The leader's last index when the read round under way started: a
    /// read is judged only while no entry was appended since (a client's
    /// retry; see `crate::budgets::READ_LATENCY_MAX_NS`).
    round_last: Index,
    /// Time spent so far waiting for the leader to be idle before the
    /// next measurement.
    idle_wait_ns: u64,
    backlog: Option<Backlog>,
}

impl<S: StateMachine, W: Workload> Simulation<S, W> {
    /// Starts the calm phases at `leader` of `term` (the latency writes are
    /// done).
    pub(super) fn start_calm_phases(&mut self, leader: usize, term: Term) {
        self.calm = Some(CalmPhase {
            leader,
            term,
            reads: BTreeMap::new(),
            round_last: 0,
            idle_wait_ns: 0,
            backlog: None,
        });
        self.start_read_round(1);
    }

    /// Whether the phase's leader is idle (with `applied`: and every
    /// commit applied), the precondition of the calm bounds. When it is
    /// not, `retry` is scheduled after a poll interval, or, once the wait
    /// is over its limit, the run ends with the phase unjudged.
    fn calm_leader_idle(&mut self, leader: usize, applied: bool, retry: Event) -> bool {
        if self.leader_idle(leader, applied) {
            if let Some(phase) = self.calm.as_mut() {
                phase.idle_wait_ns = 0;
            }
            return true;
        }
        let Some(phase) = self.calm.as_mut() else {
            return false;
        };
        phase.idle_wait_ns += CALM_IDLE_POLL_NS;
        if phase.idle_wait_ns > CALM_IDLE_WAIT_MAX_NS {
            self.budgets.calm_unjudged();
            self.note(Some(leader), || {
                "calm phases unjudged: the leader never became idle".to_string()
            });
            self.calm = None;
            self.finished = true;
            return false;
        }
        self.schedule(CALM_IDLE_POLL_NS, retry);
        false
    }

    /// Whether the calm phase's leader appended an entry since the read
    /// round under way started.
    fn appended_since_round(&self) -> bool {
        let Some(phase) = self.calm.as_ref() else {
            return false;
        };
        self.hosts[phase.leader]
            .node
            .as_ref()
            .is_some_and(|node| node.last_index() != phase.round_last)
    }

    /// The phase's leader, if it still leads its term; otherwise the run
    /// ends unjudged.
    fn calm_leader(&mut self) -> Option<(usize, Term)> {
        let phase = self.calm.as_ref()?;
        let (leader, term) = (phase.leader, phase.term);
        let leads = self.hosts[leader]
            .node
            .as_ref()
            .is_some_and(|node| node.role() == Role::Leader && node.term() == term);
        if leads && self.failure.is_none() {
            return Some((leader, term));
        }
        self.calm = None;
        self.finished = true;
        None
    }

    /// One read round: a ReadIndex read at the leader and a follower read
    /// at every other voter that can serve one. No write goes with them: a
    /// follower that receives a write after the leader committed it learns
    /// the commit only at the next heartbeat, by design, and its read
    /// would wait for that.
    pub(super) fn start_read_round(&mut self, round: u32) {
        let Some((leader, _)) = self.calm_leader() else {
            return;
        };
        if !self.calm_leader_idle(leader, true, Event::CalmReadsStart { round }) {
            return;
        }
        let last = self.hosts[leader]
            .node
            .as_ref()
            .map_or(0, |n| n.last_index());
        if let Some(phase) = self.calm.as_mut() {
            phase.round_last = last;
        }
        let mut readers = vec![(leader, ReadPath::ReadIndex)];
        if let Some(node) = self.hosts[leader].node.as_ref() {
            let membership = node.membership();
            readers.extend(
                judged_voters(membership)
                    .into_iter()
                    .filter(|id| !membership.is_witness(*id))
                    .map(|id| id as usize - 1)
                    .filter(|index| {
                        *index != leader
                            && self
                                .hosts
                                .get(*index)
                                .is_some_and(|host| host.node.is_some() && !host.paused)
                    })
                    .map(|index| (index, ReadPath::Follower)),
            );
        }
        for (index, path) in readers {
            let host = &mut self.hosts[index];
            host.next_read_id += 1;
            let id = host.next_read_id;
            // A follower has one read request to the leader out at a time
            // (by design: the reads that arrive meanwhile share the next
            // one), so a read behind a client's read waiting there may
            // take two request cycles, which the budget does not count
            // (seed 5810016999 on 3 nodes: 6,365 us).
            let queued = path == ReadPath::Follower
                && host
                    .node
                    .as_ref()
                    .is_some_and(|node| node.reads_pending() > 0);
            if let Some(phase) = self.calm.as_mut() {
                phase.reads.insert((index, id), (self.now, path, queued));
            }
            self.step(index, Input::Read { id, path }, None);
            if self.failure.is_some() {
                return;
            }
        }
        self.schedule(READ_ROUND_NS, Event::CalmReadsEnd { round });
    }

    /// Host `index` answered read `id`: whether it was a calm phase's
    /// read (then the host has nothing more to do with it).
    pub(super) fn calm_read_answered(
        &mut self,
        index: usize,
        id: u64,
        outcome: Result<Index, &ReadError>,
    ) -> bool {
        let Some(phase) = self.calm.as_mut() else {
            return false;
        };
        let Some((requested_ns, path, queued)) = phase.reads.remove(&(index, id)) else {
            return false;
        };
        let node = index as NodeId + 1;
        if queued || self.appended_since_round() {
            self.budgets.calm_unjudged();
            return true;
        }
        let result = match outcome {
            Ok(_) => self.budgets.on_read(node, path, self.now - requested_ns),
            Err(error) => Err(format!(
                "a {path:?} read at n{node} on a calm network with a stable leader was refused: {error}"
            )),
        };
        if let Err(message) = result {
            self.fail(FailureKind::ReadLatency, Some(index), message);
        }
        true
    }

    /// The end of read round `round`: every read of it must have been
    /// answered; then the next round, or the backlog.
    pub(super) fn end_read_round(&mut self, round: u32) {
        let Some(phase) = self.calm.as_ref() else {
            return;
        };
        if !phase.reads.is_empty() && self.appended_since_round() {
            // Reads that wait for an entry appended since (a client's
            // retry) to be applied at a follower, which learns its commit
            // at the next heartbeat: unjudged, and nothing more to
            // measure while they are outstanding.
            self.budgets.calm_unjudged();
            self.calm = None;
            self.finished = true;
            return;
        }
        if let Some((&(index, _), &(requested_ns, path, _))) = phase.reads.iter().next() {
            let message = format!(
                "a {path:?} read at n{} on a calm network with a stable leader was not answered within {} of its request (read latency budget {} us)",
                index + 1,
                format_time(self.now - requested_ns),
                READ_LATENCY_MAX_NS / 1_000
            );
            self.fail(FailureKind::ReadLatency, Some(index), message);
            return;
        }
        if round < READ_ROUNDS {
            self.start_read_round(round + 1);
        } else if backlog_drawn(self.config.seed) {
            self.propose_backlog();
        } else {
            let Some((leader, term)) = self.calm_leader() else {
                return;
            };
            self.calm = None;
            self.schedule(
                0,
                Event::CalmDone {
                    leader: leader as u8,
                    term,
                },
            );
        }
    }

    /// Proposes `BACKLOG_BATCHES` full batches at once at the leader,
    /// once it is idle.
    pub(super) fn propose_backlog(&mut self) {
        let Some((leader, term)) = self.calm_leader() else {
            return;
        };
        if !self.calm_leader_idle(leader, false, Event::BacklogPropose) {
            return;
        }
        let Some(node) = self.hosts[leader].node.as_ref() else {
            return;
        };
        let config = node.config();
        let entries = (BACKLOG_BATCHES * config.append_entries_max)
            .min(usize::try_from(config.uncommitted_entries_max).unwrap_or(usize::MAX))
            .max(1);
        let before = node.last_index();
        let payloads: Vec<Bytes> = (0..entries)
            .map(|seq| session::encode_command(CALM_CLIENT, 1_000 + seq as u64, b""))
            .collect();
        self.budgets.count_appends(leader as NodeId + 1);
        self.budgets.count_refusals(leader as NodeId + 1, term);
        self.step(leader, Input::ProposeBatch(payloads), None);
        let sent = self.budgets.appends_counted();
        let Some(node) = self.hosts[leader].node.as_ref() else {
            return;
        };
        let last = node.last_index();
        if last != before + entries as Index || self.failure.is_some() {
            // Refused (backpressure from an earlier write, say): nothing
            // to measure.
            self.calm = None;
            self.finished = true;
            return;
        }
        let config = node.config();
        let entry_bytes = node
            .entry(last)
            .map_or(1, |entry| entry.size_bytes())
            .max(1);
        let per_batch = config
            .append_entries_max
            .min((config.append_bytes_max / entry_bytes).max(1))
            .max(1);
        let backlog = Backlog {
            proposed_ns: self.now,
            last,
            entries: entries as u64,
            batches: entries.div_ceil(per_batch) as u64,
            window: config.inflight_messages_max as u64,
        };
        // The window from outside: every voter holding the leader's whole
        // log before the backlog is owed a window of batches at once.
        let window_due = backlog.batches.min(backlog.window);
        let short = judged_voters(node.membership())
            .into_iter()
            .filter(|id| *id != leader as NodeId + 1 && !node.membership().is_witness(*id))
            .filter(|id| node.progress(*id).is_some_and(|p| p.match_index == before))
            .map(|id| (id, sent.get(&id).copied().unwrap_or(0)))
            .find(|(_, appends)| *appends < window_due);
        if let Some((follower, appends)) = short {
            let message = format!(
                "a backlog of {entries} entries ({} full batches) proposed at once at a stable leader on a calm network went out to n{follower}, which held the whole log, as {appends} appends, not a window of {window_due} (in-flight window {})",
                backlog.batches, backlog.window
            );
            self.fail(FailureKind::BacklogThroughput, Some(leader), message);
            return;
        }
        if let Some(phase) = self.calm.as_mut() {
            phase.backlog = Some(backlog);
        }
        self.note(Some(leader), || {
            format!(
                "backlog of {entries} entries ({} batches) proposed up to index {last}",
                backlog.batches
            )
        });
        self.schedule(BACKLOG_TIMEOUT_NS, Event::BacklogTimeout);
    }

    /// After a step of `index`: if it is the leader and committed the
    /// backlog, its time is checked against its budget and the rejoin
    /// check starts.
    pub(super) fn check_backlog_commit(&mut self, index: usize) {
        let Some(phase) = self.calm.as_ref() else {
            return;
        };
        let (Some(backlog), true) = (phase.backlog, phase.leader == index) else {
            return;
        };
        let committed = self.hosts[index]
            .node
            .as_ref()
            .is_some_and(|node| node.commit_index() >= backlog.last);
        if !committed {
            return;
        }
        let (leader, term) = (phase.leader, phase.term);
        self.calm = None;
        let elapsed_ns = self.now - backlog.proposed_ns;
        let refusals = self.budgets.refusals_counted();
        self.note(Some(index), || {
            format!(
                "backlog committed {} us after its proposal ({refusals} refused appends)",
                elapsed_ns / 1_000
            )
        });
        // An entry appended behind the backlog (a client's retry) may
        // take window slots and probes the bound does not count.
        let followed = self.hosts[index]
            .node
            .as_ref()
            .is_some_and(|node| node.last_index() > backlog.last);
        if followed {
            self.budgets.calm_unjudged();
        } else if let Err(message) = self.budgets.on_backlog(
            backlog.entries,
            backlog.batches,
            backlog.window,
            refusals,
            elapsed_ns,
        ) {
            self.fail(FailureKind::BacklogThroughput, Some(index), message);
            return;
        } else if let Err(message) =
            self.budgets
                .backlog_expected(backlog.batches, backlog.window, elapsed_ns)
        {
            self.exceed(Expectation::BacklogRoundTrips, Some(index), message);
            if self.failure.is_some() {
                return;
            }
        }
        // The rejoin check starts in an event of its own, not inside the
        // leader's step.
        self.schedule(
            0,
            Event::CalmDone {
                leader: leader as u8,
                term,
            },
        );
    }

    /// The host bugs that break the calm budgets (`HostBugs::calm_*`):
    /// the extra delay of `message`, or `None` when it is dropped.
    pub(super) fn calm_bug_delay(&self, message: &Message) -> Option<u64> {
        let bugs = &self.config.bugs;
        let commit_update = match &message.body {
            MessageBody::AppendEntries { entries, .. } => entries.is_empty(),
            MessageBody::CommitNotice { .. } => true,
            _ => false,
        };
        match &message.body {
            _ if commit_update && bugs.calm_commit_updates_dropped && self.latency.is_some() => {
                None
            }
            MessageBody::HeartbeatResponse { .. }
                if bugs.calm_heartbeat_answers_dropped
                    && self
                        .calm
                        .as_ref()
                        .is_some_and(|phase| phase.backlog.is_none()) =>
            {
                None
            }
            _ if bugs.calm_backlog_delayed
                && self
                    .calm
                    .as_ref()
                    .is_some_and(|phase| phase.backlog.is_some()) =>
            {
                Some(5 * MS)
            }
            _ => Some(0),
        }
    }

    /// The backlog may still be under way.
    pub(super) fn backlog_timeout(&mut self) {
        let Some(backlog) = self.calm.as_ref().and_then(|phase| phase.backlog) else {
            return;
        };
        let leader = self.calm.as_ref().map_or(0, |phase| phase.leader);
        let message = format!(
            "a backlog of {} entries proposed at once at a stable leader on a calm network did not commit within {}",
            backlog.entries,
            format_time(BACKLOG_TIMEOUT_NS)
        );
        self.fail(FailureKind::BacklogThroughput, Some(leader), message);
    }
}

/// Whether seed `seed` runs the backlog: about one seed in four. A backlog
/// is `BACKLOG_BATCHES` full batches to replicate, apply and snapshot on
/// every node, the dearest part of a seed that reaches it; a mistake it
/// shows fails about half the seeds that run it, so a quarter of the seeds
/// still catches one within a few seeds. A hash of the seed, not a draw,
/// so no other random stream of the seed moves.
fn backlog_drawn(seed: u64) -> bool {
    seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 62 == 0
}
