//! Quiescence: a group whose followers hold and have applied everything
//! stops ticking and heartbeating until something for it happens.
//!
//! **The round.** A leader that has seen nothing change for
//! `quiesce_after_idle_ticks` ticks, whose whole log is committed, durable
//! and applied, with no read or leadership transfer pending, and whose
//! every live follower (by node-level liveness) holds its last entry,
//! asks each live follower to quiesce ([`QuiesceRequest`]). A follower's
//! node takes the request as a commit notice naming the leader's last
//! entry (log matching decides whether it commits anything); at the next
//! flush, after the host applied what that handed out, its layer accepts
//! if the node follows that leader in that term, holds exactly that last
//! entry, has committed and applied it, has no write or read pending and
//! is not asking its peers what it lost (a recovery from lost storage,
//! `storage_loss.rs`, asks on ticks) — and then sleeps. The leader sleeps once every live follower accepted
//! and each counts as recently active for CheckQuorum; followers that
//! live only in the leader's view as dead are left out, and are woken for
//! when they return. A refusal ends the round; the leader asks again
//! after another idle spell.
//!
//! **Why a quiesced follower misses no committed entry.** A leader
//! sleeps only with its log wholly committed, and only after each live
//! follower said it holds the last entry of that log; a sleeping leader
//! commits nothing (any proposal wakes it, and a wake of the leader
//! precedes any new entry). A follower that was dead in the leader's view
//! is woken for when it returns or restarts: the leader is queued to
//! heartbeat it, and the heartbeat's answer shows the leader what it lacks.
//!
//! **What wakes a group.** A proposal, a read, a membership change or a
//! transfer asked of it; any message for it (except its leader's
//! heartbeat that tells a sleeping follower nothing new, which it answers
//! asleep, and a message of an older term, which Raft refuses or drops); the death or restart of its leader's node (it is queued to
//! elect); the return or restart of a member's node (a sleeping leader is
//! queued to heartbeat it). See `wake.rs` for what a waking group is told
//! of the time it slept through.

use std::collections::BTreeSet;

use crate::node::Role;
use crate::quorum::majority;
use crate::types::{LogPosition, NodeId, Term};

use super::frame::{GroupId, QuiesceAnswer, QuiesceRequest};
use super::multi_node::{Group, MultiAction, MultiNode, Seen};
use super::outbox::Item;
use super::wake::{Sleep, SleepKind, Wake};

/// A leader's quiescence round.
#[derive(Clone, Debug)]
pub(crate) struct QuiesceRound {
    pub(crate) term: Term,
    pub(crate) last: LogPosition,
    /// The group's idle ticks when it started. A round is aged by the
    /// ticks its group got, not by the node's clock: in a burst a leader
    /// gets a few ticks of many, and a round aged by the clock would be
    /// asked again at every turn, each time of followers that had
    /// accepted the last one and fallen asleep (they refuse: only an
    /// awake follower can accept), so the leader would never sleep.
    pub(crate) started_idle_ticks: u32,
    /// The live followers asked.
    pub(crate) asked: Vec<NodeId>,
    pub(crate) accepted: BTreeSet<NodeId>,
}

/// A follower's quiescence request to answer at the next flush.
#[derive(Clone, Copy, Debug)]
pub(crate) struct QuiesceAsked {
    pub(crate) leader: NodeId,
    pub(crate) term: Term,
    pub(crate) last: LogPosition,
}

impl MultiNode {
    /// After a tick of an awake group: counts idle ticks, and starts a
    /// round for a leader idle long enough.
    pub(crate) fn consider_quiescing(&mut self, group: GroupId) {
        let Some(idle_after_ticks) = self.config.quiesce_after_idle_ticks else {
            return;
        };
        let Some(state) = self.groups.get_mut(&group) else {
            return;
        };
        let seen = Seen::of(&state.node);
        if seen != state.seen || state.node.reads_pending() > 0 {
            state.seen = seen;
            state.idle_ticks = 0;
            state.round = None;
            return;
        }
        state.idle_ticks = state.idle_ticks.saturating_add(1);
        if state.node.role() != Role::Leader || state.idle_ticks < idle_after_ticks {
            return;
        }
        if state.round.as_ref().is_some_and(|round| {
            state.idle_ticks.saturating_sub(round.started_idle_ticks) < idle_after_ticks
        }) {
            return;
        }
        let state = &self.groups[&group];
        let Some(asked) = self.leader_quiescable(state) else {
            self.groups.get_mut(&group).expect("looked up").round = None;
            return;
        };
        let term = state.node.term();
        let last = state.node.last_position();
        if asked.is_empty() {
            // No live follower to ask (a group of one).
            self.sleep_leading(group, term, last);
            return;
        }
        let records: Vec<u64> = asked
            .iter()
            .map(|peer| state.node.progress_id_of(*peer))
            .collect();
        for (&peer, progress_id) in asked.iter().zip(records) {
            let request = QuiesceRequest {
                group,
                term,
                progress_id,
                last,
            };
            self.push_item(peer, Item::Quiesce(request));
            self.stats.quiesce_requests_sent += 1;
        }
        let state = self.groups.get_mut(&group).expect("looked up");
        state.round = Some(QuiesceRound {
            term,
            last,
            started_idle_ticks: state.idle_ticks,
            asked,
            accepted: BTreeSet::new(),
        });
    }

    /// The live followers to ask, if this group's leader may quiesce.
    fn leader_quiescable(&self, state: &Group) -> Option<Vec<NodeId>> {
        let node = &state.node;
        let last = node.last_position();
        let settled = node.role() == Role::Leader
            && node.transfer_target().is_none()
            && node.unpersisted_writes() == 0
            && node.reads_pending() == 0
            && node.commit_index() == last.index
            && node.applied_index() == last.index;
        if !settled {
            return None;
        }
        // A leader that is not its group's preferred one stays awake while
        // the preferred one is alive: only its heartbeats hand leadership
        // over (the core's priority election), and asleep it would lead
        // on until the next failure.
        if let Some(preferred) = node.preferred_leader() {
            if preferred != node.id() && self.liveness.is_alive(preferred) {
                return None;
            }
        }
        let planted = self.planted().quiesce_follower_behind;
        let mut live = Vec::new();
        for (peer, progress) in node.progress_all() {
            if !self.liveness.is_alive(peer) {
                continue;
            }
            if progress.match_index != last.index && !planted {
                return None;
            }
            live.push(peer);
        }
        // The live voters must be able to decide without the others: a
        // group that cannot commit has nothing to gain from sleeping, and
        // its leader must keep running CheckQuorum.
        let me = node.id();
        let membership = node.membership();
        for voters in [&membership.voters, &membership.voters_outgoing] {
            if voters.is_empty() {
                continue;
            }
            let up = voters
                .iter()
                .filter(|id| **id == me || live.contains(id))
                .count();
            if up < majority(voters.len()) {
                return None;
            }
        }
        Some(live)
    }

    /// Puts `group`, a leader at `term` whose log ends at `last`, to
    /// sleep; it wakes if any other member of its configuration changes.
    fn sleep_leading(&mut self, group: GroupId, term: Term, last: LogPosition) {
        let members = self.other_members(&self.groups[&group]);
        self.sleep(
            group,
            SleepKind::Leading {
                term,
                last,
                members,
            },
        );
    }

    fn other_members(&self, state: &Group) -> Vec<NodeId> {
        let me = state.node.id();
        state
            .node
            .membership()
            .members()
            .into_iter()
            .filter(|id| *id != me)
            .collect()
    }

    /// A follower answered this node's request (leader side).
    pub(crate) fn quiesce_answered(
        &mut self,
        from: NodeId,
        answer: QuiesceAnswer,
        out: &mut Vec<MultiAction>,
    ) {
        let planted = self.planted().quiesce_follower_behind;
        let Some(state) = self.groups.get_mut(&answer.group) else {
            self.stats.items_unknown_group += 1;
            return;
        };
        let Some(round) = &mut state.round else {
            return;
        };
        if round.term != answer.term
            || round.last.index != answer.last_index
            || !round.asked.contains(&from)
            || answer.progress_id != state.node.progress_id_of(from)
        {
            return;
        }
        if !answer.accepted {
            if !planted {
                state.round = None;
                state.idle_ticks = 0;
            }
            return;
        }
        round.accepted.insert(from);
        // An accepted answer is a heartbeat answer too.
        let message = answer.expand(from, self.config.id);
        self.step_group(answer.group, crate::io::Input::Receive(message), out);
        self.maybe_sleep_leader(answer.group);
    }

    /// Sleeps a leader whose round every live follower accepted.
    fn maybe_sleep_leader(&mut self, group: GroupId) {
        let Some(state) = self.groups.get(&group) else {
            return;
        };
        let Some(round) = &state.round else {
            return;
        };
        if state.sleep.is_some() {
            return;
        }
        let node = &state.node;
        if node.term() != round.term || node.last_position() != round.last {
            return;
        }
        let Some(live) = self.leader_quiescable(state) else {
            return;
        };
        let done = if self.planted().quiesce_follower_behind {
            // The planted mistake: a quorum of acceptances will do.
            round.accepted.len() + 1 >= majority(node.membership().voters.len())
        } else {
            live.iter().all(|peer| {
                round.accepted.contains(peer)
                    && node
                        .progress(*peer)
                        .is_some_and(|progress| progress.recently_active)
            })
        };
        if !done {
            return;
        }
        let (term, last) = (round.term, round.last);
        self.sleep_leading(group, term, last);
    }

    /// A leader asked this node's replica to quiesce (follower side): it
    /// takes the request as a commit notice now and answers at the flush.
    pub(crate) fn quiesce_requested(
        &mut self,
        from: NodeId,
        request: QuiesceRequest,
        out: &mut Vec<MultiAction>,
    ) {
        let group = request.group;
        let Some(state) = self.groups.get(&group) else {
            self.stats.items_unknown_group += 1;
            return;
        };
        if let Some(Sleep {
            kind: SleepKind::Following { leader, term, last },
            ..
        }) = &state.sleep
        {
            if *leader == from && *term == request.term && *last == request.last {
                // Asleep at exactly this already (an earlier answer was
                // lost): accept again, still asleep.
                self.answer(from, group, request.term, request.last, true);
                return;
            }
            let stale = request.term < *term
                || (*leader == from && request.term == *term && request.last.index < last.index);
            if stale {
                // A request from before the round this replica slept on
                // (delayed, duplicated): its leader no longer waits for an
                // answer to it. Waking for it would leave this replica
                // awake beside a sleeping leader, which a learner (it
                // never campaigns) would stay for good.
                return;
            }
        }
        if state.sleep.is_some() {
            self.wake(group, Wake::Message, out);
        }
        let message = request.expand(from, self.config.id);
        self.step_group(group, crate::io::Input::Receive(message), out);
        if let Some(state) = self.groups.get_mut(&group) {
            state.asked = Some(QuiesceAsked {
                leader: from,
                term: request.term,
                last: request.last,
            });
            self.answers_owed.insert(group);
        }
    }

    fn answer(
        &mut self,
        leader: NodeId,
        group: GroupId,
        term: Term,
        last: LogPosition,
        accepted: bool,
    ) {
        let progress_id = self
            .groups
            .get(&group)
            .map_or(0, |state| state.node.answer_progress_id(term));
        let answer = QuiesceAnswer {
            group,
            term,
            progress_id,
            last_index: last.index,
            accepted,
        };
        self.push_item(leader, Item::QuiesceAnswer(answer));
        self.stats.quiesce_answers_sent += 1;
    }

    /// At a flush: answers the requests of the round, sleeping the
    /// followers that accept.
    pub(crate) fn answer_quiesce_requests(&mut self, _out: &mut Vec<MultiAction>) {
        if self.answers_owed.is_empty() {
            return;
        }
        for group in std::mem::take(&mut self.answers_owed) {
            let Some(state) = self.groups.get_mut(&group) else {
                continue;
            };
            let Some(asked) = state.asked.take() else {
                continue;
            };
            let kind = SleepKind::Following {
                leader: asked.leader,
                term: asked.term,
                last: asked.last,
            };
            let sleep = Sleep {
                since_tick: self.now_ticks,
                kind,
            };
            // A node still asking its peers what it lost (recovering from
            // lost storage) needs its ticks to ask again: it stays awake.
            let asking = state.node.storage_recovery() == crate::StorageRecovery::AwaitingReports;
            let accepted = state.sleep.is_none() && !asking && sleep.holds(&state.node);
            self.answer(asked.leader, group, asked.term, asked.last, accepted);
            if accepted {
                self.sleep(group, sleep.kind);
            }
        }
    }
}
