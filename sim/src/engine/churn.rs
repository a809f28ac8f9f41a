//! The membership workload: in the seeds that draw it, the leader is asked
//! now and then to add a node as learner, promote a learner or remove a
//! voter during the faults; after the heal every node is brought back as
//! a voter.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use concord::state_machine::StateMachine;
use concord::{Input, MembershipChange, NodeId};

use super::{Event, Simulation, MS};
use crate::config::SimConfig;
use crate::faults::exponential;
use crate::workload::Workload;

/// A membership workload: changes proposed at the leader during the
/// faults, every node restored as a voter after the heal.
pub(super) struct Churn {
    /// Start with node 1 as the only voter and the others as learners
    /// waiting to be added (grow 1 → N).
    pub(super) start_small: bool,
    rng: ChaCha8Rng,
    /// Changes accepted by a leader.
    proposed: u64,
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
        Some(Churn {
            start_small: rng.gen_bool(0.5),
            rng,
            proposed: 0,
        })
    }
}

impl<S: StateMachine, W: Workload> Simulation<S, W> {
    /// The membership workload: one change at the leader now and then.
    /// During the faults: add a non-member as learner, promote a learner,
    /// or remove a voter (possibly the leader; never the last voter).
    /// After the heal: add and promote until every node is a voter.
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
        let node = self.hosts[leader].node.as_ref().expect("leader is live");
        let membership = node.membership().clone();
        let all: Vec<NodeId> = (1..=self.hosts.len() as NodeId).collect();
        let outsiders: Vec<NodeId> = all
            .iter()
            .copied()
            .filter(|id| !membership.contains(*id))
            .collect();
        let learners: Vec<NodeId> = membership.learners.iter().copied().collect();
        let voters: Vec<NodeId> = membership.voters.iter().copied().collect();
        let churn = self.churn.as_mut().expect("churn is on");
        let change = if healed {
            if let Some(id) = outsiders.first() {
                Some(MembershipChange::AddLearner(*id))
            } else {
                learners
                    .first()
                    .map(|id| MembershipChange::PromoteLearner(*id))
            }
        } else {
            match churn.rng.gen_range(0..3) {
                0 if !outsiders.is_empty() => Some(MembershipChange::AddLearner(
                    outsiders[churn.rng.gen_range(0..outsiders.len())],
                )),
                1 if !learners.is_empty() => Some(MembershipChange::PromoteLearner(
                    learners[churn.rng.gen_range(0..learners.len())],
                )),
                2 if voters.len() > 1 && churn.rng.gen_bool(0.5) => Some(MembershipChange::Remove(
                    voters[churn.rng.gen_range(0..voters.len())],
                )),
                _ => None,
            }
        };
        if let Some(change) = change {
            churn.proposed += 1;
            self.note(Some(leader), || format!("membership change {change:?}"));
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
