//! Sleeping and waking: which groups are ticked, what a group that wakes
//! is told of the time it slept through, and how waking after a node loss
//! is spread out.
//!
//! **Time while asleep.** A sleeping group is not ticked, so its node's
//! clock stops. For a follower that is only ever conservative: it keeps
//! refusing votes as if its leader had just been heard from, and nothing
//! it promised expires early. For a leader it is not: a lease is counted
//! in its ticks, and a leader that slept through real time must not
//! believe a lease granted before it slept is fresh. So a leader that
//! wakes is first handed the ticks it missed, up to its
//! `lease_read_ticks` (every lease it held has then run out), exactly as
//! a host that stalled delivers the ticks it missed before any other
//! input. The catch-up stays below `election_timeout_min_ticks`, so it
//! runs at most one CheckQuorum, which passes: the leader slept only
//! with every live follower heard from since the last one (see
//! `quiescence.rs`).
//!
//! A follower that wakes to elect (its leader's node died or restarted,
//! or it knows no leader) is handed the ticks since it last heard its
//! leader's node (or since it fell asleep, if later), up to
//! `election_timeout_min_ticks`: the leader node's frames stand for the
//! heartbeats its sleeping groups do not send, so the follower's clock is
//! no further along than a lone follower's would be. It stops refusing
//! votes for a leader that is gone, and its randomised timeout still
//! decides when it campaigns. A
//! follower woken by its live leader is handed none: it would only
//! campaign against it.
//!
//! **Waking after a node loss.** When a peer dies (or restarts), the
//! groups it led that sleep here are queued to elect. At most
//! `wakes_per_tick_max` groups wake per tick and at most
//! `elections_concurrent_max` of those woken to elect are without a
//! leader at once: a node that lost the leader of 10,000 groups runs
//! their elections a bounded number at a time. Each node orders its queue
//! by its own hash of the group ids, so the nodes that survive start the
//! elections of different groups first (a group woken by another node's
//! candidate votes without taking a slot).

use std::collections::BTreeSet;

use crate::io::{Action, Input};
use crate::message::{Message, MessageBody};
use crate::node::{Node, Role};
use crate::types::{LogPosition, NodeId, Term};

use super::frame::GroupId;
use super::liveness::PeerChange;
use super::multi_node::{MultiAction, MultiNode, Seen};
use super::observer::observed_step;

/// Why a group wakes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wake {
    /// A message for it arrived.
    Message,
    /// The host asked something of it.
    Local,
    /// Its turn in the election queue.
    Elect,
    /// Its turn in the lead queue (a member came back).
    Lead,
    /// A step while asleep left it out of the state it slept in.
    Changed,
}

/// A sleeping group.
#[derive(Clone, Debug)]
pub(crate) struct Sleep {
    pub(crate) since_tick: u64,
    pub(crate) kind: SleepKind,
}

#[derive(Clone, Debug)]
pub(crate) enum SleepKind {
    /// Quiesced as leader of `term` with everything up to `last`
    /// committed and applied; `members` are the other members then.
    Leading {
        term: Term,
        last: LogPosition,
        members: Vec<NodeId>,
    },
    /// Quiesced as follower of `leader` in `term`, holding, committed and
    /// applied exactly `last`.
    Following {
        leader: NodeId,
        term: Term,
        last: LogPosition,
    },
    /// No live leader: queued to wake and elect.
    Waiting,
}

impl Sleep {
    /// Whether `message` may be stepped into the sleeping group without
    /// waking it: for a follower, its leader's heartbeat in its term
    /// telling it of no commit it does not have (the answer goes out;
    /// nothing else changes); for a leader, an answer to a heartbeat in
    /// its term, which arrives late when the leader fell asleep with it in
    /// flight (its node may send a follower it finds behind what it lacks,
    /// which wakes it when the follower acknowledges). For either, any
    /// message of a term older than the group's: Raft refuses or drops it
    /// without changing its receiver's state, and a group woken for it
    /// would only disturb its group (a follower woken while its leader
    /// sleeps hears no heartbeat and campaigns against that leader: seed
    /// 617244504 of `concord-sim run --nodes 7 --groups swarm`, a stale
    /// answer of term 14 delivered to a follower sleeping in term 30). The
    /// caller re-checks the sleep after the step, so a message that did
    /// change something still wakes the group. `stale_wakes` is the
    /// planted mistake that skips the rule on older terms.
    pub(crate) fn keeps_sleeping_on(
        &self,
        node: &Node,
        message: &Message,
        stale_wakes: bool,
    ) -> bool {
        if message.term < node.term() && !stale_wakes {
            return true;
        }
        match (&self.kind, &message.body) {
            (SleepKind::Following { leader, term, .. }, MessageBody::Heartbeat { commit, .. }) => {
                message.from == *leader && message.term == *term && *commit <= node.commit_index()
            }
            (SleepKind::Leading { term, .. }, MessageBody::HeartbeatResponse { .. }) => {
                message.term == *term
            }
            _ => false,
        }
    }

    /// Whether the group is still in the state it slept in.
    pub(crate) fn holds(&self, node: &Node) -> bool {
        let settled = node.unpersisted_writes() == 0
            && node.reads_pending() == 0
            && node.applied_index() == node.commit_index();
        match &self.kind {
            SleepKind::Leading { term, last, .. } => {
                settled
                    && node.role() == Role::Leader
                    && node.term() == *term
                    && node.last_position() == *last
                    && node.commit_index() == last.index
            }
            SleepKind::Following { leader, term, last } => {
                settled
                    && node.role() == Role::Follower
                    && node.leader() == Some(*leader)
                    && node.term() == *term
                    && node.last_position() == *last
                    && node.commit_index() == last.index
            }
            SleepKind::Waiting => true,
        }
    }
}

/// splitmix64's finalizer: the order in which a node wakes the groups of
/// a lost leader.
fn spread(group: GroupId, node: NodeId) -> u64 {
    let mut x = group ^ node.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl MultiNode {
    /// Puts an awake group to sleep.
    pub(crate) fn sleep(&mut self, group: GroupId, mut kind: SleepKind) {
        let alive = match &kind {
            SleepKind::Following { leader, .. } => self.liveness.is_alive(*leader),
            _ => true,
        };
        if !alive {
            // Nothing would wake it: it must elect.
            kind = SleepKind::Waiting;
        }
        let Some(state) = self.groups.get_mut(&group) else {
            return;
        };
        assert!(state.sleep.is_none(), "group {group} is asleep already");
        state.round = None;
        state.asked = None;
        state.idle_ticks = 0;
        state.electing_since = None;
        self.awake.remove(&group);
        self.electing.remove(&group);
        self.stats.sleeps += 1;
        match &kind {
            SleepKind::Following { leader, .. } => {
                self.sleeping_followers
                    .entry(*leader)
                    .or_default()
                    .insert(group);
            }
            SleepKind::Leading { members, .. } => {
                for member in members {
                    self.sleeping_leaders
                        .entry(*member)
                        .or_default()
                        .insert(group);
                }
            }
            SleepKind::Waiting => {}
        }
        let waiting = matches!(kind, SleepKind::Waiting);
        state.sleep = Some(Sleep {
            since_tick: self.now_ticks,
            kind,
        });
        if waiting {
            self.enqueue(group, true);
        }
    }

    /// Drops `group` from the sleep indexes of `sleep`.
    pub(crate) fn unindex(&mut self, group: GroupId, sleep: &Sleep) {
        match &sleep.kind {
            SleepKind::Following { leader, .. } => {
                if let Some(set) = self.sleeping_followers.get_mut(leader) {
                    set.remove(&group);
                    if set.is_empty() {
                        self.sleeping_followers.remove(leader);
                    }
                }
            }
            SleepKind::Leading { members, .. } => {
                for member in members {
                    if let Some(set) = self.sleeping_leaders.get_mut(member) {
                        set.remove(&group);
                        if set.is_empty() {
                            self.sleeping_leaders.remove(member);
                        }
                    }
                }
            }
            SleepKind::Waiting => {}
        }
    }

    /// Queues a sleeping group to wake: to elect, or to lead.
    fn enqueue(&mut self, group: GroupId, elect: bool) {
        let Some(state) = self.groups.get_mut(&group) else {
            return;
        };
        if state.queued {
            return;
        }
        state.queued = true;
        if elect {
            self.election_queue.push_back(group);
        } else {
            self.lead_queue.push_back(group);
        }
    }

    /// Wakes a sleeping group, handing it the ticks it missed as the
    /// module documentation says.
    pub(crate) fn wake(&mut self, group: GroupId, cause: Wake, out: &mut Vec<MultiAction>) {
        let Some(state) = self.groups.get_mut(&group) else {
            return;
        };
        let Some(sleep) = state.sleep.take() else {
            return;
        };
        state.queued = false;
        let node = &state.node;
        let missed = self.now_ticks - sleep.since_tick;
        let config = node.config();
        let catch_up = match node.role() {
            Role::Leader => missed.min(u64::from(config.lease_read_ticks)),
            _ => {
                let leader_gone = node
                    .leader()
                    .is_none_or(|leader| !self.liveness.is_alive(leader));
                if cause == Wake::Elect || leader_gone {
                    // A sleeping follower heard its leader through the
                    // leader node's frames: its clock restarts from the
                    // last one, not from when it fell asleep. Counting
                    // from the sleep would let it vote for a rival sooner
                    // than `election_timeout_min_ticks` after it answered
                    // a heartbeat asleep, inside that leader's lease.
                    let heard = node
                        .leader()
                        .and_then(|leader| self.liveness.last_heard_tick(leader))
                        .unwrap_or(0)
                        .max(sleep.since_tick);
                    // A group woken from the election queue wakes inside a
                    // tick and is then ticked with the awake groups: that
                    // tick is the last of the ones it missed, not one more
                    // (handed one more, it would stop refusing votes a tick
                    // inside its promise).
                    let ticked_after = u64::from(cause == Wake::Elect);
                    (self.now_ticks - heard)
                        .saturating_sub(ticked_after)
                        .min(u64::from(config.election_timeout_min_ticks))
                } else {
                    0
                }
            }
        };
        state.idle_ticks = 0;
        state.seen = Seen::of(&state.node);
        if cause == Wake::Elect {
            state.electing_since = Some(self.slot_clock_ticks);
            self.electing.insert(group);
        }
        self.awake.insert(group);
        self.unindex(group, &sleep);
        self.stats.wakes += 1;
        match cause {
            Wake::Elect => self.stats.wakes_to_elect += 1,
            Wake::Lead => self.stats.wakes_to_lead += 1,
            _ => {}
        }
        if catch_up > 0 {
            self.catch_up(group, catch_up, out);
        }
    }

    /// Hands a waking group `ticks` missed ticks. Of the heartbeats they
    /// make a leader send, only the last to each follower goes out: the
    /// earlier ones would say less, and losing them is allowed.
    fn catch_up(&mut self, group: GroupId, ticks: u64, out: &mut Vec<MultiAction>) {
        let Some(state) = self.groups.get_mut(&group) else {
            return;
        };
        let mut actions = std::mem::take(&mut self.actions);
        for _ in 0..ticks {
            observed_step(
                &mut self.observer,
                group,
                &mut state.node,
                Input::Tick,
                &mut actions,
                self.now_ticks,
            );
        }
        self.stats.node_steps += ticks;
        self.stats.group_ticks += ticks;
        self.stats.missed_ticks_delivered += ticks;
        let mut seen: Vec<NodeId> = Vec::new();
        for at in (0..actions.len()).rev() {
            if let Action::Send {
                to,
                message:
                    Message {
                        body: MessageBody::Heartbeat { .. },
                        ..
                    },
            } = &actions[at]
            {
                if seen.contains(to) {
                    actions.remove(at);
                } else {
                    seen.push(*to);
                }
            }
        }
        self.route(group, &mut actions, out);
        self.actions = actions;
    }

    /// After a step of a sleeping group that did not wake it: wakes it if
    /// the step left it out of the state it slept in.
    pub(crate) fn recheck_sleep(&mut self, group: GroupId, out: &mut Vec<MultiAction>) {
        let changed = self
            .groups
            .get(&group)
            .and_then(|state| state.sleep.as_ref().map(|sleep| !sleep.holds(&state.node)))
            .unwrap_or(false);
        if changed {
            self.wake(group, Wake::Changed, out);
        }
    }

    /// Node-level liveness saw `peer` die, return or restart.
    pub(crate) fn peer_changed(&mut self, peer: NodeId, change: PeerChange) {
        match change {
            PeerChange::Died => self.stats.peers_died += 1,
            PeerChange::Returned => self.stats.peers_returned += 1,
            PeerChange::Restarted => self.stats.peers_restarted += 1,
        }
        if matches!(change, PeerChange::Died | PeerChange::Restarted) {
            // The groups it led here sleep with nothing to wake them:
            // queue them to elect, in this node's order.
            let orphans = self.sleeping_followers.remove(&peer).unwrap_or_default();
            let mut orphans: Vec<GroupId> = orphans.into_iter().collect();
            let me = self.config.id;
            orphans.sort_by_key(|group| (spread(*group, me), *group));
            for group in orphans {
                if let Some(state) = self.groups.get_mut(&group) {
                    if let Some(sleep) = &mut state.sleep {
                        sleep.kind = SleepKind::Waiting;
                    }
                }
                self.enqueue(group, true);
            }
        }
        if matches!(change, PeerChange::Returned | PeerChange::Restarted) {
            // The groups this node leads with the peer as a member may hold
            // entries it missed (or it forgot who leads): wake them to
            // heartbeat it, in turn.
            let led: Vec<GroupId> = self
                .sleeping_leaders
                .get(&peer)
                .map(|set| set.iter().copied().collect())
                .unwrap_or_default();
            for group in led {
                self.enqueue(group, false);
            }
        }
    }

    /// Wakes groups from the queues, within the limits per tick and on
    /// concurrent elections.
    pub(crate) fn wake_from_queues(&mut self, out: &mut Vec<MultiAction>) {
        let mut wakes = self.config.wakes_per_tick_max;
        // Entries of groups woken otherwise since are skipped; they cost a
        // look each, bounded here too.
        let mut looks = wakes.saturating_mul(4);
        self.wake_from_queue(Wake::Elect, &mut wakes, &mut looks, out);
        self.wake_from_queue(Wake::Lead, &mut wakes, &mut looks, out);
    }

    /// Wakes groups from the queue of `why` (`Elect`: waiting to elect,
    /// only while election slots are free; `Lead`: sleeping leaders)
    /// while `wakes` and `looks` last. An entry counts only if its group
    /// is still queued and asleep the way that queue holds it.
    fn wake_from_queue(
        &mut self,
        why: Wake,
        wakes: &mut usize,
        looks: &mut usize,
        out: &mut Vec<MultiAction>,
    ) {
        let elect = matches!(why, Wake::Elect);
        while *wakes > 0 && *looks > 0 {
            if elect && self.electing.len() >= self.config.elections_concurrent_max {
                break;
            }
            let queue = if elect {
                &mut self.election_queue
            } else {
                &mut self.lead_queue
            };
            let Some(group) = queue.pop_front() else {
                break;
            };
            *looks -= 1;
            let due = self.groups.get(&group).is_some_and(|state| {
                state.queued
                    && match &state.sleep {
                        Some(Sleep { kind, .. }) => match kind {
                            SleepKind::Waiting => elect,
                            SleepKind::Leading { .. } => !elect,
                            SleepKind::Following { .. } => false,
                        },
                        None => false,
                    }
            });
            if due {
                self.wake(group, why, out);
                *wakes -= 1;
            }
        }
    }

    /// Frees the election slots of groups that found a leader; sends
    /// those that took too long back to sleep at the back of the queue.
    pub(crate) fn release_election_slots(&mut self) {
        if self.electing.is_empty() {
            return;
        }
        let electing: Vec<GroupId> = self.electing.iter().copied().collect();
        let mut expired = BTreeSet::new();
        for group in electing {
            let Some(state) = self.groups.get_mut(&group) else {
                self.electing.remove(&group);
                continue;
            };
            if state.node.leader().is_some() {
                state.electing_since = None;
                self.electing.remove(&group);
                continue;
            }
            let since = state
                .electing_since
                .expect("an electing group holds a slot");
            if self.slot_clock_ticks - since >= u64::from(self.config.election_slot_ticks) {
                expired.insert(group);
            }
        }
        for group in expired {
            self.stats.election_slots_expired += 1;
            self.sleep(group, SleepKind::Waiting);
        }
    }
}
