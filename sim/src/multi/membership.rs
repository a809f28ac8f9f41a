//! Membership under the fault swarm: per-group membership changes and the
//! replacement of a whole node, in multi-group runs.
//!
//! Half the seeds of a swarm (every seed without the swarm) draw:
//!
//! * **a replace**, three seeds in four: at a random time of the first
//!   half of the chaos, node OLD is replaced by node NEW (another node of
//!   the cluster) in every group that names it, by the planner a real
//!   host drives ([`concord::multi::ReplacePlan`], with a drawn bound on
//!   groups in flight): NEW joins a group as a learner, catches up (by
//!   snapshot when compaction is on), is promoted, and only then is OLD
//!   removed. A group NEW already votes in only loses OLD. Half the seeds
//!   crash OLD (a dead server replaced) at the first membership round at
//!   which every group naming it can lose it, and keep it down until the
//!   replace ends or the heal; the plan's restarts leave it down.
//! * **up to six per-group changes** at random times: add a learner,
//!   promote a caught-up learner, remove a learner or a voter (never the
//!   leader, never the last voter), on a random group the replace does
//!   not concern.
//!
//! Who hosts what follows the configurations, as the catalog of a real
//! cluster makes it: a node hosts a group from just before it is added
//! (an empty learner of the voters of the moment) until the group's
//! leader holds a final configuration without it (its records of the
//! group are then deleted, as a real host deletes them). A node re-added
//! later joins empty again.
//!
//! Checks:
//!
//! * `replace-rule`, every membership round: a group whose leader shows
//!   OLD gone while OLD had been a voter of it must show NEW a voter (a
//!   group never has fewer voters able to hold its log than it started
//!   with), once the replace proposed OLD's removal there. Judged on what
//!   the group's leader holds, not on what the planner meant.
//! * `membership-liveness`, after the heal: the replace completes and
//!   every node hosts exactly the groups whose configurations name it,
//!   with progress at least every liveness bound.

use std::collections::{BTreeMap, BTreeSet};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use concord::multi::{GroupId, MultiInput, ReplaceGroup, ReplacePlan, ReplaceProgress};
use concord::{Input, Membership, MembershipChange, NodeId, Role};

use super::config::MultiSimConfig;
use super::engine::{Event, MultiSim, Phase, MS};
use super::report::MultiCheck;

/// How often the membership driver looks at every group.
const ROUND_NS: u64 = 20 * MS;

/// Most per-group changes a seed draws.
const GROUP_CHANGES_MAX: u32 = 6;

/// Bounds on groups in flight a replace draws from.
const IN_FLIGHT_CHOICES: [usize; 4] = [1, 3, 16, 256];

/// A timed step of the membership driver.
#[derive(Clone, Copy, Debug)]
pub(crate) enum MembershipStep {
    /// The drawn replace starts.
    StartReplace,
    /// One drawn per-group change is proposed.
    GroupChange,
    /// The driver looks at every group: the replace's next steps, who
    /// hosts what, the checks.
    Round,
}

/// Keeping the replaced node down during its replace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hold {
    /// Not in this seed, or released at the heal before it began.
    Never,
    /// The seed wants OLD kept down, from the first round at which every
    /// group naming it can lose it.
    Wanted,
    /// OLD is down now, until the replace ends (or the heal).
    Held,
    /// OLD was kept down, and is no longer (the replace ended, or the
    /// heal came).
    Released,
}

/// A replace of a whole node.
#[derive(Clone, Debug)]
pub(crate) struct ReplaceRun {
    plan: ReplacePlan,
    old: NodeId,
    new: NodeId,
    /// Whether OLD is kept down, was, or will be.
    hold: Hold,
    started: bool,
    done: bool,
    /// Groups whose leader showed OLD a member, and whether OLD was a
    /// voter there when first seen.
    named: BTreeMap<GroupId, bool>,
    /// Groups where the replace proposed OLD's removal: only a removal of
    /// its own is the replace's to answer for (a random change proposed
    /// before the replace began may remove OLD too).
    removals_proposed: BTreeSet<GroupId>,
    progress: Option<ReplaceProgress>,
}

/// The membership fault of a run.
pub(crate) struct MembershipFault {
    pub(crate) active: bool,
    pub(crate) replace: Option<ReplaceRun>,
    /// The rebalance the seed drew (then no replace, no per-group
    /// changes).
    pub(crate) rebalance: Option<super::rebalance::Rebalance>,
    start_ns: u64,
    changes_ns: Vec<u64>,
    rng: ChaCha8Rng,
    /// When the driver last saw the configurations or the hosting move.
    pub(crate) last_progress_ns: u64,
    /// Changes proposed (per-group and the replace's), for the report.
    pub(crate) changes_proposed: u64,
    /// The highest term each group was seen led in (at a membership round
    /// or a proposal): a leader of an older one is not listened to.
    pub(crate) term_seen: BTreeMap<GroupId, u64>,
}

impl MembershipFault {
    /// What a seed draws (from its own stream, so every other draw of the
    /// seed is as it was before membership existed).
    pub(crate) fn draw(
        config: &MultiSimConfig,
        voters: &[BTreeSet<NodeId>],
        mut rng: ChaCha8Rng,
    ) -> MembershipFault {
        let mut fault = MembershipFault {
            active: false,
            replace: None,
            rebalance: None,
            start_ns: 0,
            changes_ns: Vec::new(),
            rng: ChaCha8Rng::from_seed([0; 32]),
            last_progress_ns: 0,
            changes_proposed: 0,
            term_seen: BTreeMap::new(),
        };
        // Off in forced-recovery runs (`forced.rs`).
        let wanted = config.membership && !config.forced_recovery && config.nodes >= 2;
        if !wanted || (config.swarm && !rng.gen_bool(0.5)) {
            return fault;
        }
        fault.active = true;
        let chaos_ns = config.chaos_ns.max(1);
        if config.nodes >= 4 && rng.gen_bool(0.4) {
            fault.rebalance = Some(super::rebalance::Rebalance::draw(
                config, voters, &mut rng, chaos_ns,
            ));
            fault.rng = ChaCha8Rng::from_seed(rng.gen());
            return fault;
        }
        if rng.gen_bool(0.75) {
            let nodes = config.nodes as NodeId;
            let old = rng.gen_range(1..=nodes);
            let mut new = rng.gen_range(1..nodes);
            if new >= old {
                new += 1;
            }
            let in_flight = IN_FLIGHT_CHOICES[rng.gen_range(0..IN_FLIGHT_CHOICES.len())];
            #[allow(unused_mut)]
            let mut plan = ReplacePlan::new(old, new, in_flight).expect("old and new differ");
            #[cfg(feature = "planted-bugs")]
            if config.bugs.replace_removes_old_early {
                plan.plant_bugs(concord::multi::MultiPlantedBugs {
                    replace_removes_old_early: true,
                    ..Default::default()
                });
            }
            fault.start_ns = rng.gen_range(0..chaos_ns / 2 + 1);
            fault.replace = Some(ReplaceRun {
                plan,
                old,
                new,
                hold: if rng.gen_bool(0.5) {
                    Hold::Wanted
                } else {
                    Hold::Never
                },
                started: false,
                done: false,
                named: BTreeMap::new(),
                removals_proposed: BTreeSet::new(),
                progress: None,
            });
        }
        let changes = rng.gen_range(0..=GROUP_CHANGES_MAX);
        fault.changes_ns = (0..changes).map(|_| rng.gen_range(0..chaos_ns)).collect();
        fault.rng = ChaCha8Rng::from_seed(rng.gen());
        fault
    }

    /// At the heal: OLD is kept down no longer (every node runs after the
    /// heal; the replace must finish with OLD up, as a replace of a live
    /// server does). Keeping it down past the heal could fail a correct
    /// run: a group may have lost a majority without OLD through a change
    /// no view showed when the replace started.
    pub(crate) fn release_hold(&mut self) {
        if let Some(run) = self.replace.as_mut() {
            run.hold = match run.hold {
                Hold::Never | Hold::Wanted => Hold::Never,
                Hold::Held | Hold::Released => Hold::Released,
            };
        }
    }

    /// What the run reports of it.
    pub(crate) fn figures(&self) -> super::report::MembershipFigures {
        let run = self.replace.as_ref().filter(|run| run.started);
        super::report::MembershipFigures {
            drawn: self.active,
            changes_proposed: self.changes_proposed,
            replace_started: run.is_some(),
            replace_done: run.is_some_and(|run| run.done),
            old_kept_down: run.is_some_and(|run| matches!(run.hold, Hold::Held | Hold::Released)),
            replace_groups: run
                .and_then(|run| run.progress)
                .map_or(0, |progress| progress.total as u64),
            rebalance_drawn: self.rebalance.is_some(),
            moves: self
                .rebalance
                .as_ref()
                .map_or((0, 0), |rebalance| (rebalance.started, rebalance.done)),
            moves_undone: self
                .rebalance
                .as_ref()
                .map_or(0, |rebalance| rebalance.undone),
            moves_stalled: self
                .rebalance
                .as_ref()
                .map_or(0, |rebalance| rebalance.stalled),
            moves_refused: self
                .rebalance
                .as_ref()
                .map_or(0, |rebalance| rebalance.refused),
            leader_transfers: self
                .rebalance
                .as_ref()
                .map_or(0, |rebalance| rebalance.leader_transfers),
        }
    }

    /// The node index kept down by the replace, if any.
    pub(crate) fn held_down(&self) -> Option<usize> {
        self.replace
            .as_ref()
            .filter(|run| run.hold == Hold::Held && run.started && !run.done)
            .map(|run| run.old as usize - 1)
    }

    /// The replace under way (started, not done): (OLD, NEW).
    fn replacing(&self) -> Option<(NodeId, NodeId)> {
        self.replace
            .as_ref()
            .filter(|run| run.started && !run.done)
            .map(|run| (run.old, run.new))
    }
}

/// A change of the configuration is not final yet: not committed, or a
/// joint configuration not yet left.
pub(crate) fn change_pending(node: &concord::Node) -> bool {
    node.membership_index() > node.commit_index() || node.membership().is_joint()
}

/// Whether `id` holds the log of `node` (a group's leader) close enough
/// to be promoted, as the leader's promote rule judges it.
pub(crate) fn caught_up(node: &concord::Node, id: NodeId) -> bool {
    node.progress(id).is_some_and(|progress| {
        node.last_index().saturating_sub(progress.match_index)
            <= node.config().promote_lag_entries_max
            && progress.match_index >= node.membership_index()
    })
}

/// `group`'s leader (as [`leader_of`] picks it) and its replica, when the
/// configuration it holds is final.
fn settled_leader(sim: &MultiSim, group: GroupId) -> Option<(usize, &concord::Node)> {
    let leader = leader_of(sim, group)?;
    let node = sim.hosts[leader].multi.as_ref()?.group(group)?;
    (!change_pending(node)).then_some((leader, node))
}

/// The running, unpaused node leading `group` in the highest term any of
/// its replicas was seen leading in, as the views of a replace command pick it.
/// A leader of an older term (cut off, or a newer one paused or down)
/// may hold a configuration the group has moved past: acting on it could
/// take a group away from a node it names again.
pub(crate) fn leader_of(sim: &MultiSim, group: GroupId) -> Option<usize> {
    let seen = sim.membership.term_seen.get(&group).copied().unwrap_or(0);
    let mut best: Option<(u64, usize)> = None;
    let mut term_max = seen;
    for (index, host) in sim.hosts.iter().enumerate() {
        let Some(node) = host.multi.as_ref().and_then(|multi| multi.group(group)) else {
            continue;
        };
        if node.role() == Role::Leader {
            term_max = term_max.max(node.term());
        }
        if host.paused {
            continue;
        }
        if node.role() == Role::Leader && best.is_none_or(|(term, _)| node.term() > term) {
            best = Some((node.term(), index));
        }
    }
    best.filter(|(term, _)| *term >= term_max)
        .map(|(_, index)| index)
}

impl MultiSim {
    /// Schedules the drawn membership events.
    pub(crate) fn schedule_membership(&mut self) {
        if !self.membership.active {
            return;
        }
        if self.membership.replace.is_some() {
            let at = self.membership.start_ns;
            self.schedule(at, Event::Membership(MembershipStep::StartReplace));
        }
        for at in self.membership.changes_ns.clone() {
            self.schedule(at, Event::Membership(MembershipStep::GroupChange));
        }
        self.schedule(ROUND_NS, Event::Membership(MembershipStep::Round));
    }

    pub(crate) fn membership_step(&mut self, step: MembershipStep) {
        if self.failure.is_some() || self.phase == Phase::Done {
            return;
        }
        match step {
            MembershipStep::StartReplace => self.start_replace(),
            MembershipStep::GroupChange => self.group_change(),
            MembershipStep::Round => {
                self.membership_round();
                if self.phase == Phase::Chaos || !self.membership_settled() {
                    self.schedule(ROUND_NS, Event::Membership(MembershipStep::Round));
                }
            }
        }
    }

    fn start_replace(&mut self) {
        if self.phase != Phase::Chaos {
            return;
        }
        let Some(run) = self.membership.replace.as_mut() else {
            return;
        };
        run.started = true;
        let (old, new) = (run.old, run.new);
        self.membership.last_progress_ns = self.now_ns;
        self.note(None, || format!("membership: replace n{old} by n{new}"));
        self.maybe_hold_old();
    }

    /// Crashes OLD, to keep it down until the replace ends (or the heal),
    /// if the seed wants that and every group naming OLD keeps a majority
    /// without it now (a group OLD alone or with one other node votes in
    /// could never be led again). Tried at every round of the chaos until
    /// it happens once.
    fn maybe_hold_old(&mut self) {
        let Some(run) = self.membership.replace.as_ref() else {
            return;
        };
        let wanted = run.hold == Hold::Wanted && run.started && !run.done;
        if !wanted || self.phase != Phase::Chaos {
            return;
        }
        let old = run.old;
        let losable = self.groups.iter().all(|(group, state)| {
            if !state.voters.contains(&old) {
                return true;
            }
            settled_leader(self, *group).is_some_and(|(_, node)| {
                let voters = &node.membership().voters;
                !voters.contains(&old) || voters.len() >= 3
            })
        });
        if !losable {
            return;
        }
        let run = self.membership.replace.as_mut().expect("checked");
        run.hold = Hold::Held;
        self.note(None, || {
            format!("membership: n{old} down until its replace ends")
        });
        self.crash(old as usize - 1);
    }

    /// Whether every replace is done and every node hosts exactly the
    /// groups whose configurations name it.
    pub(crate) fn membership_settled(&self) -> bool {
        if !self.membership.active {
            return true;
        }
        if self
            .membership
            .replace
            .as_ref()
            .is_some_and(|run| !run.done)
        {
            return false;
        }
        if self
            .membership
            .rebalance
            .as_ref()
            .is_some_and(|rebalance| !rebalance.settled())
        {
            return false;
        }
        self.groups.keys().all(|group| self.hosting_matches(*group))
    }

    /// Group `group`'s hosting matches its leader's final configuration.
    fn hosting_matches(&self, group: GroupId) -> bool {
        let Some((_, node)) = settled_leader(self, group) else {
            return false;
        };
        let members = node.membership().members();
        let hosting: BTreeSet<NodeId> = self.groups[&group].voters.iter().copied().collect();
        members == hosting
    }

    /// A drawn per-group change, proposed at the group's leader.
    fn group_change(&mut self) {
        if self.phase != Phase::Chaos || self.groups.is_empty() {
            return;
        }
        let groups = self.groups.len() as u64;
        // Half the changes, while the stale fault holds back an
        // acknowledgement of a removed replica, add that replica's node
        // back: the case the held answer is aimed at (`network.rs`).
        let aim = self.stale_replica_to_add_back();
        let aim = aim.filter(|_| self.membership.rng.gen_bool(0.5));
        let group = match aim {
            Some((_, group)) => group,
            None => self.membership.rng.gen_range(1..=groups) as GroupId,
        };
        let Some((leader, node)) = settled_leader(self, group) else {
            return;
        };
        let membership = node.membership().clone();
        let replacing = self.membership.replacing();
        if replacing.is_some_and(|(old, new)| membership.contains(old) || membership.contains(new))
        {
            return;
        }
        // A group the balancer moves is its alone: another change (the
        // removal of the move's source, say) would be blamed on the move
        // by `replace-rule`.
        if self
            .membership
            .rebalance
            .as_ref()
            .is_some_and(|rebalance| rebalance.moving(group))
        {
            return;
        }
        let leader_id = leader as NodeId + 1;
        let caught_up = |id: NodeId| caught_up(node, id);
        let mut options: Vec<MembershipChange> = Vec::new();
        for id in 1..=self.hosts.len() as NodeId {
            let spared = replacing.is_some_and(|(old, new)| id == old || id == new);
            if !membership.contains(id) && !spared {
                options.push(MembershipChange::AddLearner(id));
            }
        }
        for &id in &membership.learners {
            if caught_up(id) {
                options.push(MembershipChange::PromoteLearner(id));
            }
            options.push(MembershipChange::Remove(id));
        }
        if membership.voters_outgoing.is_empty() && membership.voters.len() >= 2 {
            for &id in &membership.voters {
                if id != leader_id {
                    options.push(MembershipChange::Remove(id));
                }
            }
        }
        if options.is_empty() {
            return;
        }
        let change = match aim {
            Some((index, _))
                if options.contains(&MembershipChange::AddLearner(index as NodeId + 1)) =>
            {
                MembershipChange::AddLearner(index as NodeId + 1)
            }
            _ => options[self.membership.rng.gen_range(0..options.len())],
        };
        if let MembershipChange::AddLearner(id) = change {
            let voters: Vec<NodeId> = membership.voters.iter().copied().collect();
            if !self.host_joining(id as usize - 1, group, &voters) {
                return;
            }
        }
        self.propose_change(leader, group, change);
    }

    /// Steps `leader` with a change of `group`'s configuration.
    pub(crate) fn propose_change(
        &mut self,
        leader: usize,
        group: GroupId,
        change: MembershipChange,
    ) {
        self.membership.changes_proposed += 1;
        let term = self.hosts[leader]
            .multi
            .as_ref()
            .and_then(|multi| multi.group(group))
            .map_or(0, |node| node.term());
        let seen = self.membership.term_seen.entry(group).or_insert(0);
        *seen = (*seen).max(term);
        self.note(Some(leader), || {
            format!("membership: group {group}: propose {change:?}")
        });
        let input = MultiInput::Group {
            group,
            input: Input::ChangeMembership(change),
        };
        self.step_node(leader, input, None);
    }

    /// One round: the replace's next steps, the hosting brought in line
    /// with the configurations, the checks.
    fn membership_round(&mut self) {
        for host in &self.hosts {
            let Some(multi) = &host.multi else {
                continue;
            };
            for (group, node) in multi.groups() {
                // Leaders' terms only: a node removed from a group may
                // campaign on in terms no leader will ever hold.
                if node.role() != Role::Leader {
                    continue;
                }
                let seen = self.membership.term_seen.entry(group).or_insert(0);
                *seen = (*seen).max(node.term());
            }
        }
        if self.membership.replacing().is_some() {
            self.maybe_hold_old();
            self.replace_round();
            if self.failure.is_some() {
                return;
            }
        }
        if self.membership.rebalance.is_some() {
            self.rebalance_round();
            if self.failure.is_some() {
                return;
            }
        }
        self.sync_hosting();
        if self.failure.is_some() {
            return;
        }
        if let Some((old, _)) = self.membership.replacing() {
            let old_hosts_named = {
                let run = self.membership.replace.as_ref().expect("replacing");
                run.named
                    .keys()
                    .any(|group| self.groups[group].voters.contains(&old))
            };
            let complete = self
                .membership
                .replace
                .as_ref()
                .and_then(|run| run.progress)
                .is_some_and(|progress| progress.is_complete());
            let unseen = self.groups.iter().any(|(group, state)| {
                state.voters.contains(&old) && leader_of(self, *group).is_none()
            });
            if complete && !old_hosts_named && !unseen {
                let run = self.membership.replace.as_mut().expect("replacing");
                run.done = true;
                let hold = run.hold == Hold::Held;
                if hold {
                    run.hold = Hold::Released;
                }
                self.membership.last_progress_ns = self.now_ns;
                self.note(None, || format!("membership: replace of n{old} done"));
                if hold && self.phase != Phase::Chaos {
                    self.restart(old as usize - 1);
                } else if hold {
                    let delay = self.nemesis_rng.gen_range(0..200 * MS);
                    self.schedule(
                        delay,
                        Event::Restart {
                            node: old as usize - 1,
                        },
                    );
                }
            }
        }
        if self.phase != Phase::Chaos && !self.membership_settled() {
            let stalled_ns = self.now_ns - self.membership.last_progress_ns.max(self.heal_ns);
            if stalled_ns > self.config.liveness_bound_ns {
                let message = self.membership_stall();
                self.fail(MultiCheck::MembershipLiveness, None, None, message);
            }
        }
    }

    /// What the membership driver waits for, for a failure's message.
    fn membership_stall(&self) -> String {
        let mut why = String::new();
        if let Some(run) = &self.membership.replace {
            if !run.done {
                why = format!(
                    "the replace of n{} by n{} did not finish ({}); ",
                    run.old,
                    run.new,
                    run.progress
                        .map_or("no progress seen".to_string(), |p| p.to_string())
                );
            }
        }
        if let Some(rebalance) = self
            .membership
            .rebalance
            .as_ref()
            .filter(|rebalance| !rebalance.settled())
        {
            why.push_str(&rebalance.describe());
        }
        for group in self.groups.keys() {
            if self.hosting_matches(*group) {
                continue;
            }
            let leader = leader_of(self, *group);
            let view = leader
                .and_then(|leader| self.hosts[leader].multi.as_ref()?.group(*group))
                .map(|node| {
                    format!(
                        "leader n{} holds {:?} (change pending: {:?})",
                        leader.unwrap_or(0) + 1,
                        node.membership(),
                        change_pending(node)
                    )
                })
                .unwrap_or_else(|| "no leader".to_string());
            why.push_str(&format!(
                "group {group} is hosted by {:?}: {view}",
                self.groups[group].voters
            ));
            break;
        }
        format!(
            "membership still moving {} after the heal (nothing moved for {}): {why}",
            crate::engine::format_time(self.now_ns - self.heal_ns),
            crate::engine::format_time(self.now_ns - self.membership.last_progress_ns)
        )
    }

    /// The replace's round: every group's view at its leader, the rule
    /// checked, the planner's steps proposed.
    fn replace_round(&mut self) {
        let (old, new) = self.membership.replacing().expect("replacing");
        let mut views: Vec<(GroupId, usize, Membership, bool, bool)> = Vec::new();
        for &group in self.groups.keys() {
            let Some(leader) = leader_of(self, group) else {
                continue;
            };
            let node = self.hosts[leader]
                .multi
                .as_ref()
                .and_then(|multi| multi.group(group))
                .expect("a leader hosts its group");
            let membership = node.membership();
            if !membership.contains(old) && !membership.contains(new) {
                continue;
            }
            let caught_up = caught_up(node, new);
            views.push((
                group,
                leader,
                membership.clone(),
                change_pending(node),
                caught_up,
            ));
        }
        // The rule, on what the leaders hold.
        let run = self.membership.replace.as_mut().expect("replacing");
        let mut broken = None;
        for (group, _, membership, _, _) in &views {
            if membership.contains(old) {
                run.named
                    .entry(*group)
                    .or_insert_with(|| membership.is_voter(old));
            } else if run.named.get(group) == Some(&true)
                && run.removals_proposed.contains(group)
                && !membership.is_voter(new)
            {
                broken = Some((
                    *group,
                    format!(
                        "n{old} was removed while n{new} is not a voter: the group holds {membership:?}"
                    ),
                ));
                break;
            }
        }
        if let Some((group, message)) = broken {
            self.fail(MultiCheck::ReplaceRule, None, Some(group), message);
            return;
        }
        let groups: Vec<ReplaceGroup<'_>> = views
            .iter()
            .map(
                |(group, _, membership, change_pending, new_caught_up)| ReplaceGroup {
                    group: *group,
                    membership,
                    change_pending: *change_pending,
                    new_caught_up: *new_caught_up,
                },
            )
            .collect();
        let round = match run.plan.plan(groups) {
            Ok(round) => round,
            Err(error) => {
                let message = format!("the replace planner refused its views: {error}");
                self.fail(
                    MultiCheck::Raft(crate::engine::FailureKind::HostContract),
                    None,
                    None,
                    message,
                );
                return;
            }
        };
        if run.progress != Some(round.progress) {
            run.progress = Some(round.progress);
            self.membership.last_progress_ns = self.now_ns;
            let progress = round.progress;
            self.note(None, || format!("membership: replace {progress}"));
        }
        let proposals: Vec<(GroupId, MembershipChange)> = round.proposals().collect();
        let run = self.membership.replace.as_mut().expect("replacing");
        for (group, change) in &proposals {
            if *change == MembershipChange::Remove(old) {
                run.removals_proposed.insert(*group);
            }
        }
        let leaders: BTreeMap<GroupId, (usize, Vec<NodeId>)> = views
            .iter()
            .map(|(group, leader, membership, _, _)| {
                (
                    *group,
                    (*leader, membership.voters.iter().copied().collect()),
                )
            })
            .collect();
        for (group, change) in proposals {
            let (leader, voters) = &leaders[&group];
            if let MembershipChange::AddLearner(id) | MembershipChange::AddWitness(id) = change {
                if !self.host_joining(id as usize - 1, group, voters) {
                    continue;
                }
            }
            self.propose_change(*leader, group, change);
            if self.failure.is_some() {
                return;
            }
        }
    }

    /// Brings who hosts each group in line with its leader's final
    /// configuration: a node it no longer names stops hosting it (its
    /// records deleted); a learner it names that does not host it joins.
    fn sync_hosting(&mut self) {
        let groups: Vec<GroupId> = self.groups.keys().copied().collect();
        for group in groups {
            let Some((_, node)) = settled_leader(self, group) else {
                continue;
            };
            let membership = node.membership().clone();
            let settled_term = node.term();
            let hosting = self.groups[&group].voters.clone();
            for id in hosting {
                if !membership.contains(id) && self.unhost(id as usize - 1, group, settled_term) {
                    self.membership.last_progress_ns = self.now_ns;
                }
            }
            let voters: Vec<NodeId> = membership.voters.iter().copied().collect();
            for &id in &membership.learners {
                let hosted = self.groups[&group].voters.contains(&id);
                if !hosted && self.host_joining(id as usize - 1, group, &voters) {
                    self.membership.last_progress_ns = self.now_ns;
                }
            }
            if self.failure.is_some() {
                return;
            }
        }
    }

    /// Node `index` starts hosting `group`, empty, as a learner of
    /// `voters` (now if it runs, at its next boot if it is down). False
    /// when it cannot now (it is paused).
    pub(crate) fn host_joining(&mut self, index: usize, group: GroupId, voters: &[NodeId]) -> bool {
        let id = index as NodeId + 1;
        if self.groups[&group].voters.contains(&id) {
            return true;
        }
        if self.hosts[index].paused {
            return false;
        }
        let state = self.groups.get_mut(&group).expect("a drawn group");
        state.voters.push(id);
        state.voters.sort_unstable();
        state.joined.insert(id, voters.to_vec());
        state.safety.on_restart(index);
        if let Some(rules) = &self.rules {
            rules
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .forget(index, group);
        }
        let host = &mut self.hosts[index];
        host.disks.insert(group, crate::disk::Disk::default());
        host.promised.remove(&group);
        self.note(Some(index), || {
            format!("membership: hosts group {group} (joining)")
        });
        self.stale_replica_returns(index, group);
        if self.hosts[index].multi.is_none() {
            return true;
        }
        let config = self.group_config(index, group);
        let multi = self.hosts[index].multi.as_mut().expect("running");
        if let Err(error) = multi.create_group(group, config, concord::Recovered::default()) {
            let message = format!("the layer refused to host group {group}: {error}");
            self.fail(
                MultiCheck::Raft(crate::engine::FailureKind::HostContract),
                Some(index),
                Some(group),
                message,
            );
            return false;
        }
        self.hosts[index]
            .groups
            .insert(group, super::engine::HostGroup::default());
        true
    }

    /// Node `index` stops hosting `group` and deletes its records, as a
    /// leader of `settled_term` holds a committed configuration without
    /// it. False when it cannot now (it is paused) or does not host it.
    fn unhost(&mut self, index: usize, group: GroupId, settled_term: concord::Term) -> bool {
        let id = index as NodeId + 1;
        if !self.groups[&group].voters.contains(&id) || self.hosts[index].paused {
            return false;
        }
        if let Some(multi) = self.hosts[index].multi.as_mut() {
            if multi.remove_group(group).is_err() {
                return false;
            }
        }
        self.replica_acknowledgements
            .deleted(index, group, settled_term);
        let state = self.groups.get_mut(&group).expect("a drawn group");
        state.voters.retain(|voter| *voter != id);
        state.joined.remove(&id);
        if state.leader_hint == Some(id) {
            state.leader_hint = None;
        }
        let host = &mut self.hosts[index];
        host.groups.remove(&group);
        host.disks.remove(&group);
        host.promised.remove(&group);
        host.reads.retain(|_, read| read.group != group);
        self.sleeping_leaders.remove(&(index, group));
        if let Some(rules) = &self.rules {
            rules
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .forget(index, group);
        }
        self.note(Some(index), || {
            format!("membership: stops hosting group {group}")
        });
        self.stale_replica_removed(index, group);
        true
    }
}
