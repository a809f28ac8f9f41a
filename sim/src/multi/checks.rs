//! The checks of a multi-group run.
//!
//! * **After every step of a node**, for every group the step touched:
//!   the single-group simulator's safety checks run per group
//!   (`crate::safety`: one leader per term, committed prefixes agree, a
//!   new leader holds every committed entry, commit never goes back,
//!   every replica applies the same entry and computes the same
//!   response); and a group that just went to sleep as leader has every
//!   follower its node takes for alive (and that is up) holding its last
//!   entry (`quiescence`).
//! * **At every restart**: each group holds on disk everything it was told
//!   was durable before the crash (`durability`).
//! * **After the heal**: every group has a leader known to all its members
//!   within [`MultiSim::leaders_bound_ns`] (`leaderless`); every group
//!   commits a write and every member applies it within the liveness
//!   bound (`group-liveness`: a quiesced follower that missed a committed
//!   entry fails it); once the clients are done, every group sleeps within
//!   [`QUIESCE_BOUND_NS`] (`not-quiesced`), no read is left unanswered
//!   (`read-unanswered`), every member has applied everything its group
//!   committed (`quiescence`), and for [`IDLE_WINDOW_NS`] the nodes send no
//!   group message and step no group (`idle-cost`).
//! * **At every frame a node takes**: a sleeping group for which the
//!   frame holds only messages of older terms stays asleep (`stale-wake`:
//!   Raft changes nothing for them).
//! * **At every tick**: the tick ticked no more groups than were awake or
//!   woke (`idle-cost`): its work grows with the awake groups only.
//! * **At every frame a node takes** (in `host.rs`): the layer takes the
//!   sender for restarted exactly when the frame carries a newer
//!   incarnation than any taken from it before (`restart-count`).
//! * **At every tick** (in `host.rs`): since the last flush, the wake
//!   queues were served on one tick at most, woke at most
//!   `wakes_per_tick_max` groups, and election slots were judged on one
//!   tick at most (`wake-bound`).
//! * **At every resume of a stalled node**: the ticks it missed, handed
//!   over in one burst before the frames that waited, take no peer for
//!   dead that was up, heard from within the liveness timeout before the
//!   stall, and whose frames wait for it (`stall-death`).
//! * **At every step of every group's node** (in `rules.rs`, through
//!   `crate::observe`): the step rules of `crate::rules`, per group
//!   (`step-rule`).
//! * **Every 50 ms** (in `commit_told.rs`): a follower holding an entry
//!   its leader committed learns of the commit within a bound
//!   (`commit-told`).
//! * **Every membership round** (in `membership.rs`, seeds that draw
//!   membership): a node being replaced leaves a group it voted in only
//!   once its replacement votes there (`replace-rule`); after the heal,
//!   the replacement ends and who hosts a group follows its
//!   configuration (`membership-liveness`).
//! * **At the end**: every group's history is linearizable.

use std::collections::BTreeSet;

use rand::Rng;

use concord::multi::{GroupId, GroupSleep};
use concord::{NodeId, Role};

use crate::engine::FailureKind;
use crate::workload::Workload;

use super::engine::{Event, MultiSim, Phase, IDLE_WINDOW_NS, MS, QUIESCE_BOUND_NS};
use super::report::MultiCheck;

impl MultiSim {
    /// The checks after a step of node `index` that touched `groups`.
    pub(crate) fn after_step(&mut self, index: usize, groups: &BTreeSet<GroupId>) {
        let Some(multi) = self.hosts[index].multi.as_ref() else {
            return;
        };
        self.electing_max = self.electing_max.max(multi.electing_count());
        let me = index as NodeId + 1;
        let mut failure = None;
        for &group in groups {
            let Some(node) = multi.group(group) else {
                continue;
            };
            let state = self.groups.get_mut(&group).expect("a hosted group");
            if let Err((kind, message)) = state.safety.after_step(index, node) {
                failure = Some((MultiCheck::Raft(kind), group, message));
                break;
            }
            if multi.sleep_state(group) != Some(GroupSleep::Leading) {
                self.sleeping_leaders.remove(&(index, group));
                continue;
            }
            let (term, last) = (node.term(), node.last_position());
            let known = self.sleeping_leaders.get(&(index, group)).is_some_and(
                |(known_term, known_last, _)| *known_term == term && *known_last == last,
            );
            // A group queued to wake sleeps in a state its members may no
            // longer match (a follower that was dead when it went to sleep
            // returned): the wake heartbeats them. It is judged when it
            // sleeps again.
            if known || multi.wake_queued(group) {
                continue;
            }
            // It just went to sleep: every follower it takes for alive
            // said it holds the last entry, and still does.
            let alive: Vec<NodeId> = state
                .voters
                .iter()
                .copied()
                .filter(|peer| {
                    *peer != me
                        && node.membership().contains(*peer)
                        && multi.peer_alive(*peer) == Some(true)
                })
                .collect();
            for &peer in &alive {
                let follower = self.hosts[peer as usize - 1]
                    .multi
                    .as_ref()
                    .and_then(|multi| multi.group(group));
                let Some(follower) = follower else {
                    continue;
                };
                if !MultiSim::holds(follower, last) {
                    failure = Some((
                        MultiCheck::Quiescence,
                        group,
                        format!(
                            "the leader went to sleep in term {term} at {last:?}, but n{peer}, alive in its view, holds {:?} there (its last entry {:?}, commit {})",
                            follower.term_at(last.index),
                            follower.last_position(),
                            follower.commit_index()
                        ),
                    ));
                    break;
                }
            }
            if failure.is_some() {
                break;
            }
            self.sleeping_leaders
                .insert((index, group), (term, last, alive));
        }
        if let Some((check, group, message)) = failure {
            self.fail(check, Some(index), Some(group), message);
        }
    }

    /// A tick's work grows with the awake groups, not with every group
    /// hosted: the groups a tick ticked (besides the missed ticks handed
    /// to waking groups) were awake before it or woken by it.
    pub(crate) fn check_tick_work(
        &mut self,
        index: usize,
        awake_before: u64,
        before: &concord::multi::MultiStats,
    ) {
        let Some(multi) = self.hosts[index].multi.as_ref() else {
            return;
        };
        let after = multi.stats();
        let ticked = (after.group_ticks - before.group_ticks)
            - (after.missed_ticks_delivered - before.missed_ticks_delivered);
        let woken = after.wakes - before.wakes;
        if ticked > awake_before + woken {
            let message = format!(
                "a tick ticked {ticked} groups, but only {awake_before} were awake and {woken} woke (of {} hosted)",
                multi.group_count()
            );
            self.fail(MultiCheck::IdleCost, Some(index), None, message);
        }
    }

    /// After a tick of node `index`.
    pub(crate) fn after_tick(&mut self, index: usize) {
        if let Some(multi) = self.hosts[index].multi.as_ref() {
            self.electing_max = self.electing_max.max(multi.electing_count());
        }
    }

    /// How long after the heal every group must have a leader known to
    /// all its members: a liveness timeout to notice a node is back,
    /// elections (PreVote and a vote, each within a maximal election
    /// timeout, a few times over for split votes), the wake queues'
    /// limits (every hosted group woken at `wakes_per_tick_max` per tick,
    /// elections run `elections_concurrent_max` at a time, each holding
    /// its slot at most `election_slot_ticks`), in ticks of the slowest
    /// clock, plus a second for messages held back across the heal.
    pub fn leaders_bound_ns(&self) -> u64 {
        let layer = &self.drawn.layer;
        let groups = self.drawn.groups as u64;
        let election_ticks = 20u64;
        let wakes = layer.wakes_per_tick_max as u64;
        let slots = layer.elections_concurrent_max as u64;
        let ticks = u64::from(layer.liveness_timeout_ticks)
            + 8 * election_ticks
            + 2 * groups.div_ceil(wakes)
            + 2 * groups.div_ceil(slots) * u64::from(layer.election_slot_ticks);
        let slowest_ppm = 1_000_000 + self.config.max_skew_ppm.max(0) as u64;
        let tick_ns = self.config.tick_ns * slowest_ppm / 1_000_000;
        ticks * tick_ns + 1_000 * MS
    }

    /// Everything heals: the network, crashed and paused nodes; nemeses
    /// are disarmed; clients start no new operation; every group's probe
    /// starts.
    pub(crate) fn heal(&mut self) {
        self.phase = Phase::Settling;
        self.heal_ns = self.now_ns;
        self.membership.release_hold();
        self.crash_after_append = None;
        self.crash_voter = None;
        self.crash_after_step = None;
        self.lease_heal();
        self.heal_network();
        // Frames and syncs are calm from now on, and every clock ticks
        // at the nominal rate.
        self.rates = crate::faults::Rates::calm();
        let tick_ns = self.config.tick_ns;
        for host in &mut self.hosts {
            host.tick_period_ns = tick_ns;
        }
        self.note(None, || "HEAL".to_string());
        for index in 0..self.hosts.len() {
            if self.hosts[index].multi.is_none() {
                self.restart(index);
            } else {
                self.resume(index);
            }
            if self.failure.is_some() {
                return;
            }
        }
        let groups: Vec<GroupId> = self.groups.keys().copied().collect();
        for group in groups {
            let delay = self.client_rng.gen_range(0..20 * MS);
            self.schedule(delay, Event::ProbeTry { group });
        }
        self.schedule(self.config.tick_ns, Event::Check);
    }

    /// The longest a frame can take under the plan's rates.
    pub(crate) fn longest_delay_ns(&self) -> u64 {
        let rates = &self.plan.rates;
        let mut delay = super::network::DELAY_MAX_NS;
        if rates.reorder > 0.0 {
            delay += rates.reorder_max_ns;
        }
        if rates.tail > 0.0 {
            delay += super::network::TAIL_MAX_NS;
        }
        if rates.stale > 0.0 {
            delay += rates.stale_max_ns.max(1_000 * MS + 1);
        }
        delay
    }

    /// How often the checks after the heal look (every check walks every
    /// group).
    fn check_period_ns(&self) -> u64 {
        self.config.tick_ns * (1 + self.drawn.groups as u64 / 1000)
    }

    /// The first group without a leader known to all its (running)
    /// members, with what its members believe.
    pub(crate) fn unled_group(&self) -> Option<(GroupId, String)> {
        for (&group, state) in &self.groups {
            let mut views = Vec::new();
            for &voter in &state.voters {
                let node = self.hosts[voter as usize - 1]
                    .multi
                    .as_ref()
                    .and_then(|multi| multi.group(group));
                if let Some(node) = node {
                    views.push((voter, node.role(), node.term(), node.leader()));
                }
            }
            let Some(top) = views.iter().map(|(_, _, term, _)| *term).max() else {
                continue;
            };
            let leader = views
                .iter()
                .find(|(_, role, term, _)| *role == Role::Leader && *term == top)
                .map(|(id, ..)| *id);
            let led = leader.is_some_and(|leader| {
                views
                    .iter()
                    .all(|(_, _, term, known)| *term == top && *known == Some(leader))
            });
            if !led {
                return Some((
                    group,
                    format!("members (id, role, term, leader): {views:?}"),
                ));
            }
        }
        None
    }

    /// The first group whose probe has not committed, or that a member
    /// has not applied.
    fn unsettled_group(&self) -> Option<(GroupId, String)> {
        for (&group, state) in &self.groups {
            let Some(index) = state.probe.committed else {
                return Some((
                    group,
                    format!(
                        "its probe has not committed ({} tries, accepted as {:?})",
                        state.probe.tries, state.probe.accepted
                    ),
                ));
            };
            for &voter in &state.voters {
                if self.membership.held_down() == Some(voter as usize - 1) {
                    // Down until its replacement ends: not a member to
                    // wait for.
                    continue;
                }
                let node = self.hosts[voter as usize - 1]
                    .multi
                    .as_ref()
                    .and_then(|multi| multi.group(group));
                let (applied, sleep) = match node {
                    Some(node) => (
                        node.applied_index(),
                        self.hosts[voter as usize - 1]
                            .multi
                            .as_ref()
                            .and_then(|multi| multi.sleep_state(group)),
                    ),
                    None => (0, None),
                };
                if applied < index {
                    return Some((
                        group,
                        format!("n{voter} applied only up to {applied} of the probe at {index} (sleep state {sleep:?})"),
                    ));
                }
            }
        }
        None
    }

    /// The first group not asleep on some node.
    fn awake_group(&self) -> Option<(usize, GroupId, String)> {
        for (index, host) in self.hosts.iter().enumerate() {
            let Some(multi) = &host.multi else { continue };
            for (group, node) in multi.groups() {
                let sleep = multi.sleep_state(group);
                if !matches!(
                    sleep,
                    Some(GroupSleep::Leading | GroupSleep::Following { .. })
                ) {
                    return Some((
                        index,
                        group,
                        format!(
                            "{sleep:?} as {:?} of term {}, last {:?}, commit {}, applied {}, reads pending {}, unpersisted writes {}",
                            node.role(),
                            node.term(),
                            node.last_position(),
                            node.commit_index(),
                            node.applied_index(),
                            node.reads_pending(),
                            node.unpersisted_writes()
                        ),
                    ));
                }
            }
        }
        None
    }

    /// With every group asleep: the first member that has not applied
    /// everything its group committed (a quiesced follower that missed a
    /// committed entry: nothing would ever send it).
    fn follower_behind(&self) -> Option<(usize, GroupId, String)> {
        for (&group, state) in &self.groups {
            let nodes: Vec<(usize, &concord::Node)> = state
                .voters
                .iter()
                .filter_map(|voter| {
                    let index = *voter as usize - 1;
                    Some((index, self.hosts[index].multi.as_ref()?.group(group)?))
                })
                .collect();
            let Some(commit) = nodes.iter().map(|(_, node)| node.commit_index()).max() else {
                continue;
            };
            if let Some((index, node)) =
                nodes.iter().find(|(_, node)| node.applied_index() < commit)
            {
                return Some((
                    *index,
                    group,
                    format!(
                        "every group sleeps, but this member applied only up to {} of the {commit} its group committed (last entry {:?})",
                        node.applied_index(),
                        node.last_position()
                    ),
                ));
            }
        }
        None
    }

    /// Group steps and group items sent so far, over every node.
    fn group_work(&self) -> (u64, u64) {
        let mut steps = 0;
        let mut items = 0;
        for host in &self.hosts {
            if let Some(multi) = &host.multi {
                steps += multi.stats().node_steps;
                items += multi.stats().frame_items_sent;
            }
        }
        (steps, items)
    }

    /// The first read still waiting at a node.
    fn unanswered_read(&self) -> Option<(usize, GroupId, String)> {
        for (index, host) in self.hosts.iter().enumerate() {
            if let Some((id, read)) = host.reads.iter().next() {
                return Some((
                    index,
                    read.group,
                    format!(
                        "read {id} asked at {} was never answered",
                        crate::engine::format_time(read.asked_ns)
                    ),
                ));
            }
        }
        None
    }

    /// The checks after the heal, every few ticks until the run is done.
    pub(crate) fn check_after_heal(&mut self) {
        let now = self.now_ns;
        let since_heal = now - self.heal_ns;
        match self.phase {
            Phase::Chaos | Phase::Done => return,
            Phase::Settling => {
                if self.leaders_after_heal_ns.is_none() {
                    match self.unled_group() {
                        None => self.leaders_after_heal_ns = Some(since_heal),
                        Some((group, views)) if since_heal > self.leaders_bound_ns() => {
                            let message = format!(
                                "no leader known to all members {} after the heal (bound {}): {views}",
                                crate::engine::format_time(since_heal),
                                crate::engine::format_time(self.leaders_bound_ns())
                            );
                            self.fail(MultiCheck::Leaderless, None, Some(group), message);
                            return;
                        }
                        Some(_) => {}
                    }
                }
                if self.liveness_after_heal_ns.is_none() {
                    match self.unsettled_group() {
                        None => self.liveness_after_heal_ns = Some(since_heal),
                        Some((group, why)) if since_heal > self.config.liveness_bound_ns => {
                            let message = format!(
                                "{} after the heal: {why}",
                                crate::engine::format_time(since_heal)
                            );
                            self.fail(
                                MultiCheck::Raft(FailureKind::Liveness),
                                None,
                                Some(group),
                                message,
                            );
                            return;
                        }
                        Some(_) => {}
                    }
                }
                // A frame sent before the heal may still arrive (held
                // back, in the delay's long tail) and wake its group: the
                // idle cost is judged once none can.
                let settled = self.leaders_after_heal_ns.is_some()
                    && self.liveness_after_heal_ns.is_some()
                    && self.membership_settled()
                    && self.clients_idle()
                    && since_heal >= self.longest_delay_ns();
                if settled {
                    self.phase = Phase::Quiescing { since_ns: now };
                }
            }
            Phase::Quiescing { .. } | Phase::Idle { .. } if !self.membership_settled() => {
                // The balancer acts again (a fault after the heal moved a
                // leadership): its work is not idle cost, and the groups
                // it wakes get the quiesce bound anew once it rests.
                self.phase = Phase::Quiescing { since_ns: now };
            }
            Phase::Quiescing { since_ns } => {
                let quiescing = self.drawn.layer.quiesce_after_idle_ticks.is_some();
                let asleep = if quiescing { self.awake_group() } else { None };
                match asleep {
                    // Every group asleep, but group items still on their
                    // way (a late answer to a heartbeat): the idle window
                    // opens once they arrived, so that it counts only
                    // work sleeping groups cause themselves.
                    None if self.group_frames_in_flight > 0
                        && now - since_ns <= QUIESCE_BOUND_NS => {}
                    None => {
                        if quiescing {
                            self.quiesced_after_ns = Some(now - since_ns);
                            if let Some((index, group, message)) = self.follower_behind() {
                                self.fail(
                                    MultiCheck::Quiescence,
                                    Some(index),
                                    Some(group),
                                    message,
                                );
                                return;
                            }
                        }
                        let (steps, items) = self.group_work();
                        self.phase = Phase::Idle {
                            since_ns: now,
                            steps,
                            items,
                        };
                    }
                    Some((index, group, why)) if now - since_ns > QUIESCE_BOUND_NS => {
                        let others: Vec<String> = self
                            .hosts
                            .iter()
                            .enumerate()
                            .filter_map(|(other, host)| {
                                let multi = host.multi.as_ref()?;
                                let node = multi.group(group)?;
                                Some(format!(
                                    "n{}: {:?} {:?} term {} (queued to wake: {})",
                                    other + 1,
                                    multi.sleep_state(group),
                                    node.role(),
                                    node.term(),
                                    multi.wake_queued(group)
                                ))
                            })
                            .collect();
                        let message = format!(
                            "still awake {} after the workload ended and every group was led and caught up: {why}; the group's replicas: {}",
                            crate::engine::format_time(now - since_ns),
                            others.join(", ")
                        );
                        self.fail(MultiCheck::NotQuiesced, Some(index), Some(group), message);
                        return;
                    }
                    Some(_) => {}
                }
            }
            Phase::Idle {
                since_ns,
                steps,
                items,
            } => {
                if now - since_ns >= IDLE_WINDOW_NS {
                    if let Some((index, group, message)) = self.unanswered_read() {
                        self.fail(
                            MultiCheck::ReadUnanswered,
                            Some(index),
                            Some(group),
                            message,
                        );
                        return;
                    }
                    if self.drawn.layer.quiesce_after_idle_ticks.is_some() {
                        let (steps_now, items_now) = self.group_work();
                        if steps_now != steps || items_now != items {
                            let message = format!(
                                "with every group asleep the nodes stepped groups {} times and sent {} group messages in {}",
                                steps_now - steps,
                                items_now - items,
                                crate::engine::format_time(now - since_ns)
                            );
                            self.fail(MultiCheck::IdleCost, None, None, message);
                            return;
                        }
                    }
                    self.phase = Phase::Done;
                    return;
                }
            }
        }
        let period = self.check_period_ns();
        self.schedule(period, Event::Check);
    }

    /// At the end: every group's safety once more on every node, then
    /// every group's history checked for linearizability.
    pub(crate) fn final_checks(&mut self) {
        for index in 0..self.hosts.len() {
            let groups: BTreeSet<GroupId> = match &self.hosts[index].multi {
                Some(multi) => multi.groups().map(|(group, _)| group).collect(),
                None => continue,
            };
            self.after_step(index, &groups);
            if self.failure.is_some() {
                return;
            }
        }
        self.finish_forced();
        let groups: Vec<GroupId> = self.groups.keys().copied().collect();
        for group in groups {
            let report = self
                .groups
                .get_mut(&group)
                .expect("a drawn group")
                .workload
                .finish();
            if let Some(failure) = report.failure {
                self.fail(
                    MultiCheck::Raft(FailureKind::Linearizability),
                    None,
                    Some(group),
                    failure,
                );
                return;
            }
        }
    }
}
