//! Cluster membership (Raft thesis §4): which nodes vote, which only
//! learn, and how the set changes by joint consensus.
//!
//! A configuration lives in the log as an
//! [`EntryPayload::Membership`](crate::EntryPayload::Membership) entry and
//! takes effect on a replica as soon as the entry is appended to its log,
//! not when it commits; if the entry is truncated away the replica falls
//! back to the configuration before it. A change of the voter set goes
//! through a joint configuration C_old,new (`voters` = C_new,
//! `voters_outgoing` = C_old) in which every decision — commitment and
//! elections — needs a majority of both; once the joint entry commits the
//! leader appends C_new on its own. Only one change is in flight at a time.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::types::{Index, NodeId};

/// A cluster configuration: voters, learners, and in the joint phase the
/// outgoing voters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Membership {
    /// The voters (C_new while joint).
    pub voters: BTreeSet<NodeId>,
    /// The outgoing voters C_old while the configuration is joint; empty
    /// otherwise.
    pub voters_outgoing: BTreeSet<NodeId>,
    /// Nodes that receive the log and snapshots but never vote and never
    /// count toward commitment.
    pub learners: BTreeSet<NodeId>,
}

/// One change of the configuration, proposed with
/// [`Input::ChangeMembership`](crate::Input::ChangeMembership).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MembershipChange {
    /// Add a new node as a voter (through a joint configuration).
    AddVoter(NodeId),
    /// Add a new node as a learner.
    AddLearner(NodeId),
    /// Make a caught-up learner a voter (through a joint configuration).
    PromoteLearner(NodeId),
    /// Remove a voter (through a joint configuration) or a learner.
    Remove(NodeId),
}

/// Why a configuration or a change of it is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MembershipError {
    /// The configuration would have no voter.
    #[error("the configuration has no voter; keep at least one voter")]
    NoVoters,
    /// Node id 0 is reserved.
    #[error("node id 0 is reserved; give every node an id of 1 or more")]
    ZeroNodeId,
    /// A node is listed both as a voter and as a learner.
    #[error("node {id} is both a voter and a learner; list it once")]
    VoterAndLearner {
        /// The node.
        id: NodeId,
    },
    /// The node to add is already a member.
    #[error("node {id} is already a member of the cluster")]
    AlreadyMember {
        /// The node.
        id: NodeId,
    },
    /// The node named is not a member.
    #[error("node {id} is not a member of the cluster")]
    NotMember {
        /// The node.
        id: NodeId,
    },
    /// Only learners can be promoted.
    #[error("node {id} is not a learner; only learners can be promoted")]
    NotLearner {
        /// The node.
        id: NodeId,
    },
    /// Removing this voter would leave no voter.
    #[error("node {id} is the last voter; add another voter before removing it")]
    RemovesLastVoter {
        /// The node.
        id: NodeId,
    },
    /// Another change has not finished (its entry, or the joint phase it
    /// started, is not committed yet).
    #[error("a membership change at index {index} is still in progress; retry once it commits")]
    ChangeInProgress {
        /// Index of the configuration entry not yet final.
        index: Index,
    },
    /// The learner to promote is too far behind the leader.
    #[error("learner {id} is {lag_entries} entries behind (at most {lag_entries_max} allowed); retry once it caught up")]
    LearnerBehind {
        /// The learner.
        id: NodeId,
        /// How far behind the leader's last index it is.
        lag_entries: u64,
        /// `Config::promote_lag_entries_max`.
        lag_entries_max: u64,
    },
}

impl Membership {
    /// A simple (non-joint) configuration of `voters` and no learner.
    pub fn new(voters: impl IntoIterator<Item = NodeId>) -> Self {
        Membership {
            voters: voters.into_iter().collect(),
            voters_outgoing: BTreeSet::new(),
            learners: BTreeSet::new(),
        }
    }

    /// Whether this is a joint configuration C_old,new.
    pub fn is_joint(&self) -> bool {
        !self.voters_outgoing.is_empty()
    }

    /// Whether `id` votes (in C_new or, while joint, C_old).
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.voters_outgoing.contains(&id)
    }

    /// Whether `id` is a learner.
    pub fn is_learner(&self, id: NodeId) -> bool {
        self.learners.contains(&id)
    }

    /// Whether `id` is a voter or a learner.
    pub fn contains(&self, id: NodeId) -> bool {
        self.is_voter(id) || self.is_learner(id)
    }

    /// Every member, voters and learners, in id order.
    pub fn members(&self) -> BTreeSet<NodeId> {
        let mut all = self.voters.clone();
        all.extend(self.voters_outgoing.iter().copied());
        all.extend(self.learners.iter().copied());
        all
    }

    /// Payload size counted by batching limits.
    pub fn len_bytes(&self) -> usize {
        8 * (self.voters.len() + self.voters_outgoing.len() + self.learners.len())
    }

    /// Checks the configuration is usable: at least one voter (in each
    /// half when joint), no id 0, nobody both voter and learner.
    pub fn validate(&self) -> Result<(), MembershipError> {
        if self.voters.is_empty() {
            return Err(MembershipError::NoVoters);
        }
        if self.members().contains(&0) {
            return Err(MembershipError::ZeroNodeId);
        }
        if let Some(id) = self.learners.iter().find(|id| self.is_voter(**id)) {
            return Err(MembershipError::VoterAndLearner { id: *id });
        }
        Ok(())
    }

    /// The configuration `change` leads to from this one (which must not
    /// be joint): joint C_old,new when the voter set changes, simple when
    /// only learners change.
    pub fn apply_change(&self, change: MembershipChange) -> Result<Membership, MembershipError> {
        assert!(!self.is_joint());
        let mut next = self.clone();
        match change {
            MembershipChange::AddVoter(id) | MembershipChange::AddLearner(id) => {
                if id == 0 {
                    return Err(MembershipError::ZeroNodeId);
                }
                if self.contains(id) {
                    return Err(MembershipError::AlreadyMember { id });
                }
                if let MembershipChange::AddVoter(_) = change {
                    next.voters.insert(id);
                } else {
                    next.learners.insert(id);
                }
            }
            MembershipChange::PromoteLearner(id) => {
                if !self.is_learner(id) {
                    return Err(if self.contains(id) {
                        MembershipError::NotLearner { id }
                    } else {
                        MembershipError::NotMember { id }
                    });
                }
                next.learners.remove(&id);
                next.voters.insert(id);
            }
            MembershipChange::Remove(id) => {
                if !self.contains(id) {
                    return Err(MembershipError::NotMember { id });
                }
                if self.voters.len() == 1 && self.voters.contains(&id) {
                    return Err(MembershipError::RemovesLastVoter { id });
                }
                next.voters.remove(&id);
                next.learners.remove(&id);
            }
        }
        if next.voters != self.voters {
            next.voters_outgoing = self.voters.clone();
        }
        next.validate()?;
        Ok(next)
    }

    /// The configuration that ends this joint one: C_new alone.
    pub fn leave_joint(&self) -> Membership {
        assert!(self.is_joint());
        Membership {
            voters: self.voters.clone(),
            voters_outgoing: BTreeSet::new(),
            learners: self.learners.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voter_changes_go_through_a_joint_configuration() {
        let old = Membership::new([1, 2, 3]);
        let joint = old.apply_change(MembershipChange::AddVoter(4)).unwrap();
        assert!(joint.is_joint());
        assert_eq!(joint.voters_outgoing, old.voters);
        assert!(joint.is_voter(4));
        let new = joint.leave_joint();
        assert_eq!(new, Membership::new([1, 2, 3, 4]));
        let learner = old.apply_change(MembershipChange::AddLearner(5)).unwrap();
        assert!(!learner.is_joint());
        assert!(learner.is_learner(5) && !learner.is_voter(5));
    }

    #[test]
    fn invalid_changes_are_refused_with_the_reason() {
        let one = Membership::new([1]);
        assert_eq!(
            one.apply_change(MembershipChange::Remove(1)),
            Err(MembershipError::RemovesLastVoter { id: 1 })
        );
        assert_eq!(
            one.apply_change(MembershipChange::AddVoter(1)),
            Err(MembershipError::AlreadyMember { id: 1 })
        );
        assert_eq!(
            one.apply_change(MembershipChange::PromoteLearner(1)),
            Err(MembershipError::NotLearner { id: 1 })
        );
        assert_eq!(
            one.apply_change(MembershipChange::Remove(9)),
            Err(MembershipError::NotMember { id: 9 })
        );
        let mut both = Membership::new([1, 2]);
        both.learners.insert(2);
        assert_eq!(
            both.validate(),
            Err(MembershipError::VoterAndLearner { id: 2 })
        );
        assert_eq!(
            Membership::default().validate(),
            Err(MembershipError::NoVoters)
        );
    }
}
