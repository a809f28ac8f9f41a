//! The membership workload: in the seeds that draw it, the leader is asked
//! now and then to add a node as learner, promote a learner or remove a
//! voter (sometimes itself) during the faults. The heal changes nothing:
//! the run ends in whatever configuration the churn left (grown, shrunk,
//! with witnesses and learners), and liveness is checked under it
//! (`checks`); removed nodes keep running and must not disrupt it.
//!
//! Changes drawn during the faults include demoting a voter to a learner,
//! and in some seeds the cluster grows 1 → 3 → 5 and shrinks back to 1
//! (capped at the number of nodes).
//! Some seeds turn `Config::auto_leave_joint` off: the workload then
//! proposes `LeaveJoint` itself once a joint configuration commits.
//!
//! Witnesses: in some seeds one node is built as a witness
//! ([`draw_witness`]); the workload adds it back (after removing it) with
//! `AddWitness`, never as a learner.
//!
//! In some seeds the highest id is a spare: a server that has never run
//! (an empty disk) and is not in the initial configuration. When a voter
//! is down during the faults, the spare replaces it: it starts as a
//! learner joining the cluster, is added, promoted, and the crashed voter
//! is removed. A spare that never joined is started at the heal as a
//! server named by no configuration, and must stay idle.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use concord::state_machine::StateMachine;
use concord::{Input, MembershipChange, NodeId};

use super::{Event, Simulation, MS};
use crate::config::SimConfig;
use crate::faults::exponential;
use crate::workload::Workload;

/// A membership workload: changes proposed at the leader during the
/// faults; after the heal only leaving a committed joint configuration
/// when `auto_leave` is off.
pub(super) struct Churn {
    /// Start with node 1 as the only voter and the others as learners
    /// waiting to be added (grow 1 → N).
    pub(super) start_small: bool,
    rng: ChaCha8Rng,
    /// Changes accepted by a leader.
    proposed: u64,
    /// The host that has not run yet and replaces a crashed voter.
    pub(super) spare: Option<usize>,
    /// The spare was started.
    pub(super) spare_started: bool,
    /// The crashed voter (host index) the spare is replacing.
    replacing: Option<usize>,
    /// `Config::auto_leave_joint` of every node in this seed.
    pub(super) auto_leave: bool,
    /// Grow 1 → 3 → 5 and shrink back to 1 during the faults: the voter
    /// counts still to reach, in order (empty: the random workload).
    grow_shrink: Vec<usize>,
}

/// Draws whether this seed has a witness, and which host: about 40 % of
/// the seeds on 3 or more nodes whose first configuration can hold one
/// (its full voters a majority). Never the spare and never the highest id
/// (the preferred leader when priorities are on), never node 1 (the
/// first voter of a cluster that starts small).
pub(super) fn draw_witness(config: &SimConfig, churn: Option<&Churn>) -> Option<usize> {
    if !config.witnesses || config.nodes < 3 {
        return None;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0x7769_746e_6573_7321);
    rng.set_stream(23);
    if !rng.gen_bool(0.4) {
        return None;
    }
    let initial_voters = match churn {
        Some(churn) if churn.start_small => usize::MAX,
        Some(churn) if churn.spare.is_some() => config.nodes - 1,
        _ => config.nodes,
    };
    // One witness among n voters needs n - 1 >= n / 2 + 1.
    if initial_voters < 3 {
        return None;
    }
    Some(rng.gen_range(1..config.nodes - 1))
}

impl Churn {
    /// Draws this seed's membership workload (about half the seeds on 2
    /// or more nodes), from its own random stream.
    pub(super) fn draw(config: &SimConfig) -> Option<Churn> {
        if !config.membership_churn || config.nodes < 2 {
            return None;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0x6d65_6d62_6572_7321);
        rng.set_stream(19);
        if !rng.gen_bool(0.5) {
            return None;
        }
        let start_small = rng.gen_bool(0.5);
        let spare =
            (!start_small && config.nodes >= 3 && rng.gen_bool(0.5)).then_some(config.nodes - 1);
        let auto_leave = rng.gen_bool(0.7);
        let grow_shrink = if start_small && config.nodes >= 3 && rng.gen_bool(0.5) {
            vec![3, 5.min(config.nodes), 3, 1]
        } else {
            Vec::new()
        };
        Some(Churn {
            start_small,
            rng,
            proposed: 0,
            spare,
            spare_started: false,
            replacing: None,
            auto_leave,
            grow_shrink,
        })
    }
}

impl<S: StateMachine, W: Workload> Simulation<S, W> {
    /// Whether host `index` is the spare and has not been started.
    pub(super) fn is_unstarted_spare(&self, index: usize) -> bool {
        self.churn
            .as_ref()
            .is_some_and(|churn| churn.spare == Some(index) && !churn.spare_started)
    }

    /// The voters a node starts with: all but an unstarted spare; the
    /// spare itself joins with the leader's voters of the moment.
    pub(super) fn initial_voters(&self, index: usize) -> Vec<NodeId> {
        let all = 1..=self.hosts.len() as NodeId;
        let Some(spare) = self.churn.as_ref().and_then(|churn| churn.spare) else {
            return all.collect();
        };
        let spare_id = spare as NodeId + 1;
        let without_spare: Vec<NodeId> = all.filter(|id| *id != spare_id).collect();
        if index != spare {
            return without_spare;
        }
        let current = self.voters_except(self.current_leader(), spare_id);
        if current.is_empty() {
            without_spare
        } else {
            current
        }
    }

    /// The voters of `leader`'s configuration other than `id`, in id order:
    /// what a node that starts without a configuration on its disk is
    /// told. Empty when there is no leader or it is down.
    pub(super) fn voters_except(&self, leader: Option<usize>, id: NodeId) -> Vec<NodeId> {
        leader
            .and_then(|leader| self.hosts[leader].node.as_ref())
            .map(|node| {
                node.membership()
                    .voters
                    .iter()
                    .copied()
                    .filter(|voter| *voter != id)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The next step of replacing a crashed voter by the spare, if one is
    /// under way or can start: start the spare, add it, promote it, remove
    /// the crashed voter.
    fn replacement_change(&mut self, leader: usize) -> Option<MembershipChange> {
        let churn = self.churn.as_ref()?;
        let spare = churn.spare?;
        let spare_id = spare as NodeId + 1;
        let membership = self.hosts[leader].node.as_ref()?.membership().clone();
        let old = match churn.replacing {
            Some(old) => old,
            None => {
                if churn.spare_started {
                    return None;
                }
                let crashed = (0..self.hosts.len()).find(|index| {
                    *index != spare
                        && self.hosts[*index].node.is_none()
                        && membership.is_voter(*index as NodeId + 1)
                })?;
                self.note(Some(crashed), || {
                    format!("replacing crashed n{} by new node n{spare_id}", crashed + 1)
                });
                let churn = self.churn.as_mut().expect("churn is on");
                churn.replacing = Some(crashed);
                churn.spare_started = true;
                self.restart(spare);
                crashed
            }
        };
        let old_id = old as NodeId + 1;
        if !membership.contains(spare_id) {
            Some(MembershipChange::AddLearner(spare_id))
        } else if membership.is_learner(spare_id) {
            Some(MembershipChange::PromoteLearner(spare_id))
        } else if membership.voters.contains(&old_id) && membership.voters.len() > 1 {
            Some(MembershipChange::Remove(old_id))
        } else {
            self.churn.as_mut().expect("churn is on").replacing = None;
            None
        }
    }

    /// The membership workload: one change at the leader now and then.
    /// During the faults: add a non-member as learner, promote a learner,
    /// or remove a voter (possibly the leader; never the last voter).
    /// After the heal: nothing but leaving a committed joint configuration
    /// (with auto-leave off), so the run ends in the configuration the
    /// faults left.
    pub(super) fn membership_change(&mut self) {
        if self.failure.is_some() || self.probe.satisfied {
            return;
        }
        let healed = self.healed;
        let next_ns = if healed { 50 * MS } else { 150 * MS };
        let Some(leader) = self.current_leader() else {
            self.schedule(next_ns, Event::Membership);
            return;
        };
        let replacement = if healed {
            None
        } else {
            self.replacement_change(leader)
        };
        let node = self.hosts[leader].node.as_ref().expect("leader is live");
        let membership = node.membership().clone();
        let leader_id = node.id();
        let all: Vec<NodeId> = (1..=self.hosts.len() as NodeId).collect();
        let outsiders: Vec<NodeId> = all
            .iter()
            .copied()
            .filter(|id| !membership.contains(*id))
            .collect();
        let learners: Vec<NodeId> = membership.learners.iter().copied().collect();
        let voters: Vec<NodeId> = membership.voters.iter().copied().collect();
        let joint_committed =
            membership.is_joint() && node.commit_index() >= node.membership_index();
        let witness_id = self.witness.map(|witness| witness as NodeId + 1);
        // The witness joins as a witness voter, every other node as a
        // learner.
        let add = |id: NodeId| {
            if Some(id) == witness_id {
                MembershipChange::AddWitness(id)
            } else {
                MembershipChange::AddLearner(id)
            }
        };
        let mut reached = None;
        let churn = self.churn.as_mut().expect("churn is on");
        let change = if joint_committed && !churn.auto_leave {
            // Auto-leave is off: the host leaves the joint configuration.
            Some(MembershipChange::LeaveJoint)
        } else if replacement.is_some() {
            replacement
        } else if healed {
            None
        } else if let Some(target) = churn.grow_shrink.first().copied() {
            // Grow or shrink toward the next voter count.
            let pick = |rng: &mut ChaCha8Rng, ids: &[NodeId]| ids[rng.gen_range(0..ids.len())];
            match voters.len().cmp(&target) {
                std::cmp::Ordering::Equal => {
                    churn.grow_shrink.remove(0);
                    reached = Some(target);
                    None
                }
                std::cmp::Ordering::Less if !learners.is_empty() => Some(
                    MembershipChange::PromoteLearner(pick(&mut churn.rng, &learners)),
                ),
                std::cmp::Ordering::Less if !outsiders.is_empty() => {
                    Some(add(pick(&mut churn.rng, &outsiders)))
                }
                std::cmp::Ordering::Less => None,
                std::cmp::Ordering::Greater => {
                    let id = if churn.rng.gen_bool(0.3) {
                        leader_id
                    } else {
                        pick(&mut churn.rng, &voters)
                    };
                    Some(if churn.rng.gen_bool(0.5) {
                        MembershipChange::Demote(id)
                    } else {
                        MembershipChange::Remove(id)
                    })
                }
            }
        } else {
            match churn.rng.gen_range(0..4) {
                0 if !outsiders.is_empty() => {
                    Some(add(outsiders[churn.rng.gen_range(0..outsiders.len())]))
                }
                3 if voters.len() > 1 && churn.rng.gen_bool(0.5) => Some(MembershipChange::Demote(
                    voters[churn.rng.gen_range(0..voters.len())],
                )),
                1 if !learners.is_empty() => Some(MembershipChange::PromoteLearner(
                    learners[churn.rng.gen_range(0..learners.len())],
                )),
                // Sometimes the leader itself.
                2 if voters.len() > 1 && churn.rng.gen_bool(0.5) => {
                    Some(MembershipChange::Remove(if churn.rng.gen_bool(0.3) {
                        leader_id
                    } else {
                        voters[churn.rng.gen_range(0..voters.len())]
                    }))
                }
                _ => None,
            }
        };
        if let Some(target) = reached {
            self.note(Some(leader), || {
                format!("grow/shrink: {target} voters reached")
            });
        }
        let churn = self.churn.as_mut().expect("churn is on");
        if let Some(change) = change {
            churn.proposed += 1;
            self.note(Some(leader), || format!("membership change {change:?}"));
            // As the runtime does, the address of a node joining goes into
            // the log first (in seeds with host entries).
            if let MembershipChange::AddLearner(id)
            | MembershipChange::AddWitness(id)
            | MembershipChange::PromoteLearner(id) = change
            {
                self.propose_address(leader, id);
            }
            self.step(leader, Input::ChangeMembership(change), None);
        }
        let delay = if healed {
            next_ns
        } else {
            exponential(&mut self.churn.as_mut().expect("churn").rng, next_ns).max(MS)
        };
        self.schedule(delay, Event::Membership);
    }
}
