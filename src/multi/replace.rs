//! Replacing a server in every group that names it: a deterministic
//! planner, sans-IO, for a host (or a simulator) to drive.
//!
//! Replacing server OLD by server NEW runs, in each group that names OLD,
//! the safe order of the Raft thesis (§4.2.1): NEW joins as a learner,
//! catches up (by snapshot, usually), is promoted to voter, and only then
//! is OLD removed. So a group never has fewer voters able to hold its log
//! than it started with, even while OLD is dead: the rule asserted here is
//! that **OLD is never removed from a group unless NEW is a voter of it**.
//!
//! The planner holds no progress of its own. Each group's phase follows
//! from that group's configuration (as its leader sees it) alone:
//!
//! | configuration | next step |
//! | --- | --- |
//! | a change pending (not committed, or joint) | wait |
//! | OLD a member, NEW absent | add NEW as a learner (within the bound) |
//! | NEW a learner, caught up | promote NEW to voter |
//! | NEW a learner, not caught up | wait |
//! | NEW a voter, OLD still a member | remove OLD |
//! | OLD absent, NEW a member | done |
//!
//! so re-running [`ReplacePlan::plan`] after any crash (of a server, of
//! the leader, of whoever drives the replace) resumes where the committed
//! configurations say it stands. At most
//! [`ReplacePlan::groups_in_flight_max`] groups are between "learner
//! added" and "done" at once (each of them streams a snapshot to NEW);
//! groups start in ascending id.
//!
//! ```
//! use concord::multi::{ReplaceGroup, ReplacePlan, ReplaceStep};
//! use concord::{Membership, MembershipChange};
//!
//! let plan = ReplacePlan::new(3, 4, 1)?;
//! let before = Membership::new([1, 2, 3]);
//! let groups = [
//!     ReplaceGroup { group: 7, membership: &before, change_pending: false, new_caught_up: false },
//!     ReplaceGroup { group: 9, membership: &before, change_pending: false, new_caught_up: false },
//! ];
//! let round = plan.plan(groups)?;
//! // One group at a time: group 7 starts, group 9 waits its turn.
//! assert_eq!(round.steps[0].1, ReplaceStep::Propose(MembershipChange::AddLearner(4)));
//! assert!(matches!(round.steps[1].1, ReplaceStep::Wait(_)));
//! assert_eq!(round.progress.total, 2);
//! # Ok::<(), concord::multi::ReplaceError>(())
//! ```

use std::fmt;

use thiserror::Error;

use crate::membership::{Membership, MembershipChange};
use crate::types::NodeId;

use super::frame::GroupId;
use super::planted::MultiPlantedBugs;

/// Most groups a replace may have in flight at once (each streams a
/// snapshot to the new server, so the bound is the new server's load).
pub const REPLACE_GROUPS_IN_FLIGHT_MAX: usize = 100_000;

/// Why a replace cannot be planned.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ReplaceError {
    /// Node id 0 is reserved.
    #[error("node id 0 is reserved; name the servers by their ids (1 or more)")]
    ZeroNodeId,
    /// OLD and NEW are the same server.
    #[error("server {id} cannot replace itself; name a new server id")]
    SameServer {
        /// The id given twice.
        id: NodeId,
    },
    /// The bound on groups in flight is out of range.
    #[error("groups in flight must be between 1 and {max}, not {groups_in_flight_max}")]
    BadBound {
        /// The bound asked for.
        groups_in_flight_max: usize,
        /// The largest bound allowed ([`REPLACE_GROUPS_IN_FLIGHT_MAX`]).
        max: usize,
    },
    /// The groups were not given in strictly ascending id order.
    #[error(
        "group {group} was given after group {previous}: give every group once, in ascending id"
    )]
    GroupsOutOfOrder {
        /// The group out of place.
        group: GroupId,
        /// The group before it.
        previous: GroupId,
    },
}

/// What the planner is told about one group: its configuration in force
/// as its leader sees it, and whether NEW has caught up in it.
#[derive(Clone, Copy, Debug)]
pub struct ReplaceGroup<'a> {
    /// The group.
    pub group: GroupId,
    /// Its configuration in force at its leader.
    pub membership: &'a Membership,
    /// A change of the configuration is not final yet (not committed, or
    /// a joint configuration not yet left): nothing may be proposed.
    pub change_pending: bool,
    /// NEW holds the group's log close enough to its leader's to vote
    /// without stalling commits (the leader's promote rule decides in the
    /// end; see `Config::promote_lag_entries_max`).
    pub new_caught_up: bool,
}

/// Why a group waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WaitReason {
    /// A change of its configuration is not final yet.
    ChangePending,
    /// NEW is a learner still catching up.
    CatchingUp,
    /// Its turn has not come: `groups_in_flight_max` groups are in flight.
    Queued,
    /// The next change is not a valid configuration (OLD is a witness
    /// and a second witness would leave the full voters short of a
    /// majority): replace it by hand.
    Blocked,
}

/// The next step for one group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReplaceStep {
    /// Propose this change to the group's leader.
    Propose(MembershipChange),
    /// Nothing to propose now.
    Wait(WaitReason),
    /// The group is on NEW and no longer names OLD.
    Done,
}

/// How far a replace has come, for display.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ReplaceProgress {
    /// Groups done: NEW a voter (or OLD's role), OLD gone.
    pub done: usize,
    /// Groups between "NEW added" and "done".
    pub in_flight: usize,
    /// Groups not started (OLD a member, NEW absent).
    pub waiting: usize,
    /// Groups the replace concerns: every group given that names OLD or
    /// NEW (so a group NEW was a voter of before, without OLD, counts as
    /// done).
    pub total: usize,
}

impl ReplaceProgress {
    /// Whether every group is done.
    pub fn is_complete(&self) -> bool {
        self.done == self.total
    }
}

impl fmt::Display for ReplaceProgress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of {} groups done, {} in flight, {} waiting",
            self.done, self.total, self.in_flight, self.waiting
        )
    }
}

/// One round of the plan: the next step of every group the replace
/// concerns, in ascending group id, and the progress they add up to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplaceRound {
    /// Each concerned group and its next step.
    pub steps: Vec<(GroupId, ReplaceStep)>,
    /// The progress before these steps are taken.
    pub progress: ReplaceProgress,
}

impl ReplaceRound {
    /// The changes to propose this round, per group.
    pub fn proposals(&self) -> impl Iterator<Item = (GroupId, MembershipChange)> + '_ {
        self.steps.iter().filter_map(|(group, step)| match step {
            ReplaceStep::Propose(change) => Some((*group, *change)),
            _ => None,
        })
    }
}

/// The role OLD holds in a group, which NEW takes over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Voter,
    Witness,
    Learner,
}

/// The replace of server `old` by server `new` (see the module
/// documentation). Immutable: everything it decides comes from the
/// groups it is shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplacePlan {
    old: NodeId,
    new: NodeId,
    groups_in_flight_max: usize,
    planted: MultiPlantedBugs,
}

impl ReplacePlan {
    /// The replace of `old` by `new`, with at most `groups_in_flight_max`
    /// groups in flight at once.
    pub fn new(
        old: NodeId,
        new: NodeId,
        groups_in_flight_max: usize,
    ) -> Result<ReplacePlan, ReplaceError> {
        if old == 0 || new == 0 {
            return Err(ReplaceError::ZeroNodeId);
        }
        if old == new {
            return Err(ReplaceError::SameServer { id: old });
        }
        if groups_in_flight_max == 0 || groups_in_flight_max > REPLACE_GROUPS_IN_FLIGHT_MAX {
            return Err(ReplaceError::BadBound {
                groups_in_flight_max,
                max: REPLACE_GROUPS_IN_FLIGHT_MAX,
            });
        }
        Ok(ReplacePlan {
            old,
            new,
            groups_in_flight_max,
            planted: MultiPlantedBugs::NONE,
        })
    }

    /// The server replaced.
    pub fn old(&self) -> NodeId {
        self.old
    }

    /// The server that takes its place.
    pub fn new_server(&self) -> NodeId {
        self.new
    }

    /// Most groups between "NEW added" and "done" at once.
    pub fn groups_in_flight_max(&self) -> usize {
        self.groups_in_flight_max
    }

    /// Plants deliberate mistakes in the planner (see
    /// `src/multi/planted.rs`). For measuring tests only.
    #[cfg(feature = "planted-bugs")]
    #[doc(hidden)]
    pub fn plant_bugs(&mut self, bugs: MultiPlantedBugs) {
        self.planted = bugs;
    }

    fn planted(&self) -> MultiPlantedBugs {
        self.planted.in_force()
    }

    /// Whether removing OLD from a group of this configuration keeps the
    /// replace's rule: NEW already holds OLD's role there (a voter for a
    /// voter, a witness for a witness; anything for a learner). An outside
    /// check (the simulator's) applies it to every removal of OLD it sees
    /// proposed.
    pub fn removal_allowed(&self, membership: &Membership) -> bool {
        match role_of(membership, self.old) {
            None | Some(Role::Learner) => true,
            Some(Role::Voter) => membership.is_full_voter(self.new),
            Some(Role::Witness) => membership.is_voter(self.new),
        }
    }

    /// The next step of one group, or `None` if the replace does not
    /// concern it (it names neither OLD nor NEW). `may_start` says whether
    /// the bound lets a group not started yet start now.
    pub fn step(&self, group: &ReplaceGroup<'_>, may_start: bool) -> Option<ReplaceStep> {
        let membership = group.membership;
        let old_role = role_of(membership, self.old);
        let new_role = role_of(membership, self.new);
        if old_role.is_none() && new_role.is_none() {
            return None;
        }
        // OLD gone and NEW in: done. The voter path removes OLD only once
        // NEW votes, so a NEW learner without OLD is a learner that
        // replaced a learner (or OLD was removed by hand).
        if old_role.is_none() {
            return Some(ReplaceStep::Done);
        }
        if group.change_pending || membership.is_joint() {
            return Some(ReplaceStep::Wait(WaitReason::ChangePending));
        }
        let step = match (old_role, new_role) {
            (Some(role), None) => {
                if !may_start {
                    return Some(ReplaceStep::Wait(WaitReason::Queued));
                }
                // NEW joins as a witness directly for a witness (it holds
                // the log, never applies it: nothing to catch up but the
                // log, which it gets as a voter); as a learner otherwise.
                let change = match role {
                    Role::Witness => MembershipChange::AddWitness(self.new),
                    Role::Voter | Role::Learner => MembershipChange::AddLearner(self.new),
                };
                if membership.apply_change(change).is_err() {
                    return Some(ReplaceStep::Wait(WaitReason::Blocked));
                }
                change
            }
            (old_role, Some(Role::Learner)) => {
                if self.planted().replace_removes_old_early {
                    // The planted mistake: OLD goes as soon as NEW is in.
                    return Some(ReplaceStep::Propose(MembershipChange::Remove(self.old)));
                }
                if !group.new_caught_up {
                    return Some(ReplaceStep::Wait(WaitReason::CatchingUp));
                }
                match old_role {
                    // A learner replaced by a learner: NEW holds the role.
                    Some(Role::Learner) => MembershipChange::Remove(self.old),
                    // NEW becomes the voter it replaces.
                    _ => MembershipChange::PromoteLearner(self.new),
                }
            }
            (Some(_), Some(Role::Voter | Role::Witness)) => MembershipChange::Remove(self.old),
            (None, _) => unreachable!("handled above"),
        };
        if let MembershipChange::Remove(id) = step {
            assert_eq!(id, self.old, "the replace removes OLD only");
            assert!(
                self.removal_allowed(membership),
                "the replace of {} by {} would remove {} from group {} where {} is not a voter",
                self.old,
                self.new,
                self.old,
                group.group,
                self.new
            );
        }
        Some(ReplaceStep::Propose(step))
    }

    /// The next step of undoing this replace in one group, as a move
    /// whose target (NEW) can no longer take the group must (NEW is
    /// draining or retired, so it may never catch up): while NEW is a
    /// learner and OLD still in the group, NEW leaves (`Remove(NEW)`);
    /// once NEW is gone, `Done`. `None` when it cannot be undone: NEW
    /// already votes or is a witness (the group counts on it now, and
    /// going forward removes OLD), or OLD is gone; then [`Self::step`]
    /// finishes it.
    /// A pending change waits first: the leader's configuration drops NEW
    /// as soon as its removal is appended, before it commits.
    pub fn step_back(&self, group: &ReplaceGroup<'_>) -> Option<ReplaceStep> {
        let membership = group.membership;
        let roles = (role_of(membership, self.old), role_of(membership, self.new));
        if !matches!(roles, (_, None) | (Some(_), Some(Role::Learner))) {
            return None;
        }
        if group.change_pending || membership.is_joint() {
            return Some(ReplaceStep::Wait(WaitReason::ChangePending));
        }
        match roles {
            (_, None) => Some(ReplaceStep::Done),
            _ => {
                let leaving = if self.planted().move_rollback_removes_source {
                    self.old
                } else {
                    self.new
                };
                Some(ReplaceStep::Propose(MembershipChange::Remove(leaving)))
            }
        }
    }

    /// The next step of a replica move in one group: [`Self::step_back`]
    /// while its target is not up (drained, retired) and the move can
    /// still be undone, else [`Self::step`]. A `Done` with NEW absent
    /// from the group is an undone move.
    pub fn move_step(&self, group: &ReplaceGroup<'_>, target_up: bool) -> Option<ReplaceStep> {
        if !target_up {
            if let Some(step) = self.step_back(group) {
                return Some(step);
            }
        }
        self.step(group, true)
    }

    /// The next step of every group the replace concerns. `groups` must
    /// be in strictly ascending id order (each group once); groups not
    /// started begin in that order while fewer than
    /// `groups_in_flight_max` are in flight.
    pub fn plan<'a>(
        &self,
        groups: impl IntoIterator<Item = ReplaceGroup<'a>>,
    ) -> Result<ReplaceRound, ReplaceError> {
        let mut round = ReplaceRound::default();
        let mut previous: Option<GroupId> = None;
        // Groups not started wait for the in-flight count, which is known
        // only once every group was seen: first pass, in flight and done;
        // second pass, starts in id order.
        let mut not_started = Vec::new();
        for group in groups {
            if let Some(previous) = previous {
                if group.group <= previous {
                    return Err(ReplaceError::GroupsOutOfOrder {
                        group: group.group,
                        previous,
                    });
                }
            }
            previous = Some(group.group);
            let started = role_of(group.membership, self.new).is_some();
            let Some(step) = self.step(&group, true) else {
                continue;
            };
            round.progress.total += 1;
            if step == ReplaceStep::Done {
                round.progress.done += 1;
            } else if started {
                round.progress.in_flight += 1;
            } else {
                round.progress.waiting += 1;
                not_started.push((round.steps.len(), group));
            }
            round.steps.push((group.group, step));
        }
        let mut in_flight = round.progress.in_flight;
        for (at, group) in not_started {
            let may_start = in_flight < self.groups_in_flight_max;
            let step = self
                .step(&group, may_start)
                .expect("a group naming OLD concerns the replace");
            if matches!(step, ReplaceStep::Propose(_)) {
                in_flight += 1;
            }
            round.steps[at].1 = step;
        }
        debug_assert!(in_flight <= self.groups_in_flight_max.max(round.progress.in_flight));
        debug_assert_eq!(
            round.progress.done + round.progress.in_flight + round.progress.waiting,
            round.progress.total
        );
        Ok(round)
    }
}

/// The role `id` holds in `membership`, if any. A witness is a voter that
/// is a witness; a voter being demoted (a learner still voting in C_old)
/// counts as a voter.
fn role_of(membership: &Membership, id: NodeId) -> Option<Role> {
    if membership.is_witness(id) {
        Some(Role::Witness)
    } else if membership.is_voter(id) {
        Some(Role::Voter)
    } else if membership.is_learner(id) {
        Some(Role::Learner)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(group: GroupId, membership: &Membership) -> ReplaceGroup<'_> {
        ReplaceGroup {
            group,
            membership,
            change_pending: false,
            new_caught_up: false,
        }
    }

    fn with_learner(voters: &[NodeId], learner: NodeId) -> Membership {
        Membership::try_new(voters, &[learner]).unwrap()
    }

    /// Runs the replace to its end the way a host does: plan, apply every
    /// proposal (committing it at once), NEW catching up one round after
    /// it joined. Returns the rounds taken and checks the bound and the
    /// rule in every round.
    fn run_to_end(plan: &ReplacePlan, groups: &mut [(GroupId, Membership)]) -> usize {
        let mut joined_round: Vec<Option<usize>> = vec![None; groups.len()];
        for round_number in 0..1_000 {
            let views: Vec<ReplaceGroup<'_>> = groups
                .iter()
                .enumerate()
                .map(|(i, (group, membership))| ReplaceGroup {
                    group: *group,
                    membership,
                    change_pending: false,
                    new_caught_up: joined_round[i].is_some_and(|at| at < round_number),
                })
                .collect();
            let round = plan.plan(views).unwrap();
            assert!(round.progress.in_flight <= plan.groups_in_flight_max());
            if round.progress.is_complete() {
                return round_number;
            }
            let proposals: Vec<_> = round.proposals().collect();
            for (group, change) in proposals {
                let i = groups.iter().position(|(id, _)| *id == group).unwrap();
                let membership = &groups[i].1;
                if change == MembershipChange::Remove(plan.old()) {
                    assert!(plan.removal_allowed(membership));
                }
                if change == MembershipChange::AddLearner(plan.new_server()) {
                    joined_round[i] = Some(round_number);
                }
                let mut next = membership.apply_change(change).unwrap();
                if next.is_joint() {
                    next = next.leave_joint();
                }
                groups[i].1 = next;
            }
        }
        panic!("the replace did not end in 1,000 rounds");
    }

    #[test]
    fn every_phase_of_a_voter_replace() {
        let plan = ReplacePlan::new(3, 4, 10).unwrap();
        let start = Membership::new([1, 2, 3]);
        assert_eq!(
            plan.step(&view(1, &start), true),
            Some(ReplaceStep::Propose(MembershipChange::AddLearner(4)))
        );
        let learner = with_learner(&[1, 2, 3], 4);
        assert_eq!(
            plan.step(&view(1, &learner), true),
            Some(ReplaceStep::Wait(WaitReason::CatchingUp))
        );
        let caught_up = ReplaceGroup {
            new_caught_up: true,
            ..view(1, &learner)
        };
        assert_eq!(
            plan.step(&caught_up, true),
            Some(ReplaceStep::Propose(MembershipChange::PromoteLearner(4)))
        );
        let both = Membership::new([1, 2, 3, 4]);
        assert_eq!(
            plan.step(&view(1, &both), true),
            Some(ReplaceStep::Propose(MembershipChange::Remove(3)))
        );
        let done = Membership::new([1, 2, 4]);
        assert_eq!(plan.step(&view(1, &done), true), Some(ReplaceStep::Done));
        let unrelated = Membership::new([1, 2, 5]);
        assert_eq!(plan.step(&view(1, &unrelated), true), None);
    }

    #[test]
    fn a_move_undone_removes_its_learner_then_ends() {
        let plan = ReplacePlan::new(3, 4, 10).unwrap();
        // Not started: nothing to undo.
        let start = Membership::new([1, 2, 3]);
        assert_eq!(plan.step_back(&view(1, &start)), Some(ReplaceStep::Done));
        // NEW learning: it leaves, once no other change is pending.
        let learner = with_learner(&[1, 2, 3], 4);
        assert_eq!(
            plan.step_back(&view(1, &learner)),
            Some(ReplaceStep::Propose(MembershipChange::Remove(4)))
        );
        let pending = ReplaceGroup {
            change_pending: true,
            ..view(1, &learner)
        };
        assert_eq!(
            plan.step_back(&pending),
            Some(ReplaceStep::Wait(WaitReason::ChangePending))
        );
        // Undone: the group is as it was.
        let undone = learner.apply_change(MembershipChange::Remove(4)).unwrap();
        assert_eq!(undone.voters, start.voters);
        assert_eq!(plan.step_back(&view(1, &undone)), Some(ReplaceStep::Done));
    }

    #[test]
    fn a_move_whose_target_votes_is_not_undone() {
        let plan = ReplacePlan::new(3, 4, 10).unwrap();
        // NEW votes: the group counts on it; the move goes forward.
        let both = Membership::new([1, 2, 3, 4]);
        assert_eq!(plan.step_back(&view(1, &both)), None);
        assert_eq!(
            plan.step(&view(1, &both), true),
            Some(ReplaceStep::Propose(MembershipChange::Remove(3)))
        );
        // OLD gone already: nothing to undo, and the move is done.
        let learner_without_old = with_learner(&[1, 2], 4);
        assert_eq!(plan.step_back(&view(1, &learner_without_old)), None);
        assert_eq!(
            plan.step(&view(1, &learner_without_old), true),
            Some(ReplaceStep::Done)
        );
    }

    #[test]
    fn a_pending_or_joint_change_waits() {
        let plan = ReplacePlan::new(3, 4, 10).unwrap();
        let start = Membership::new([1, 2, 3]);
        let pending = ReplaceGroup {
            change_pending: true,
            ..view(1, &start)
        };
        assert_eq!(
            plan.step(&pending, true),
            Some(ReplaceStep::Wait(WaitReason::ChangePending))
        );
        let joint = Membership::new([1, 2, 3])
            .apply_change(MembershipChange::Remove(3))
            .unwrap();
        assert!(joint.is_joint());
        assert_eq!(
            plan.step(&view(1, &joint), true),
            Some(ReplaceStep::Wait(WaitReason::ChangePending))
        );
    }

    #[test]
    fn witnesses_and_learners_are_replaced_in_kind() {
        let plan = ReplacePlan::new(3, 4, 10).unwrap();
        // A second witness among three voters leaves one full voter of
        // four: not a configuration.
        let lone_witness = Membership::new([1, 2, 3]).try_with_witnesses(&[3]).unwrap();
        assert_eq!(
            plan.step(&view(1, &lone_witness), true),
            Some(ReplaceStep::Wait(WaitReason::Blocked))
        );
        let witness = Membership::new([1, 2, 3, 5, 6])
            .try_with_witnesses(&[3])
            .unwrap();
        assert_eq!(
            plan.step(&view(1, &witness), true),
            Some(ReplaceStep::Propose(MembershipChange::AddWitness(4)))
        );
        let learner_old = with_learner(&[1, 2], 3);
        assert_eq!(
            plan.step(&view(1, &learner_old), true),
            Some(ReplaceStep::Propose(MembershipChange::AddLearner(4)))
        );
        let both_learners = Membership::try_new(&[1, 2], &[3, 4]).unwrap();
        let caught_up = ReplaceGroup {
            new_caught_up: true,
            ..view(1, &both_learners)
        };
        assert_eq!(
            plan.step(&caught_up, true),
            Some(ReplaceStep::Propose(MembershipChange::Remove(3)))
        );
        let mut groups = vec![(1, witness), (2, learner_old), (3, Membership::new([3]))];
        run_to_end(&plan, &mut groups);
        assert!(groups[0].1.is_witness(4) && !groups[0].1.contains(3));
        assert!(groups[1].1.is_learner(4) && !groups[1].1.contains(3));
        assert_eq!(groups[2].1, Membership::new([4]));
    }

    #[test]
    fn the_bound_holds_and_groups_start_in_id_order() {
        let plan = ReplacePlan::new(3, 4, 2).unwrap();
        let start = Membership::new([1, 2, 3]);
        let learner = with_learner(&[1, 2, 3], 4);
        let done = Membership::new([1, 2, 4]);
        let other = Membership::new([1, 2, 5]);
        let groups = [
            view(1, &done),
            view(2, &start),
            view(3, &learner),
            view(4, &other),
            view(5, &start),
            view(6, &start),
        ];
        let round = plan.plan(groups).unwrap();
        assert_eq!(
            round.progress,
            ReplaceProgress {
                done: 1,
                in_flight: 1,
                waiting: 3,
                total: 5
            }
        );
        assert_eq!(
            round.steps,
            vec![
                (1, ReplaceStep::Done),
                (2, ReplaceStep::Propose(MembershipChange::AddLearner(4))),
                (3, ReplaceStep::Wait(WaitReason::CatchingUp)),
                (5, ReplaceStep::Wait(WaitReason::Queued)),
                (6, ReplaceStep::Wait(WaitReason::Queued)),
            ]
        );
        assert_eq!(
            round.progress.to_string(),
            "1 of 5 groups done, 1 in flight, 3 waiting"
        );
        let mut all: Vec<(GroupId, Membership)> =
            (1..=50).map(|group| (group, start.clone())).collect();
        let rounds = run_to_end(&plan, &mut all);
        assert!(all.iter().all(|(_, membership)| *membership == done));
        // Two at a time, three rounds each (add; promote once caught up;
        // remove), the next two starting in the round the last two end.
        assert_eq!(rounds, 25 * 3);
    }

    #[test]
    fn bad_input_is_an_error() {
        assert_eq!(ReplacePlan::new(0, 4, 1), Err(ReplaceError::ZeroNodeId));
        assert_eq!(
            ReplacePlan::new(3, 3, 1),
            Err(ReplaceError::SameServer { id: 3 })
        );
        assert!(matches!(
            ReplacePlan::new(3, 4, 0),
            Err(ReplaceError::BadBound { .. })
        ));
        let plan = ReplacePlan::new(3, 4, 1).unwrap();
        let start = Membership::new([1, 2, 3]);
        assert_eq!(
            plan.plan([view(2, &start), view(2, &start)]),
            Err(ReplaceError::GroupsOutOfOrder {
                group: 2,
                previous: 2
            })
        );
    }

    #[test]
    fn the_rule_refuses_removing_old_before_new_votes() {
        let plan = ReplacePlan::new(3, 4, 1).unwrap();
        assert!(!plan.removal_allowed(&with_learner(&[1, 2, 3], 4)));
        assert!(!plan.removal_allowed(&Membership::new([1, 2, 3])));
        assert!(plan.removal_allowed(&Membership::new([1, 2, 3, 4])));
        let witness_new = Membership::new([1, 2, 3, 4])
            .try_with_witnesses(&[4])
            .unwrap();
        assert!(!plan.removal_allowed(&witness_new));
    }

    #[cfg(feature = "planted-bugs")]
    #[test]
    fn the_planted_mistake_removes_old_while_new_learns() {
        let mut plan = ReplacePlan::new(3, 4, 1).unwrap();
        plan.plant_bugs(MultiPlantedBugs {
            replace_removes_old_early: true,
            ..MultiPlantedBugs::NONE
        });
        let learner = with_learner(&[1, 2, 3], 4);
        assert_eq!(
            plan.step(&view(1, &learner), true),
            Some(ReplaceStep::Propose(MembershipChange::Remove(3)))
        );
        assert!(!plan.removal_allowed(&learner));
    }
}
