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
//!
//! Propose changes with [`Input::ChangeMembership`](crate::Input::ChangeMembership)
//! at the leader. A replica joining a running cluster is built with
//! `Config::voters` = the cluster's voters and itself in `Config::learners`,
//! then added with [`MembershipChange::AddLearner`] and, once caught up,
//! [`MembershipChange::PromoteLearner`].
//!
//! **Demotion and leaving the joint configuration.**
//! [`MembershipChange::Demote`] turns a voter into a learner through a
//! joint configuration in which it still votes in C_old (it is listed in
//! `voters_outgoing` and in `learners`: a learner once C_new stands
//! alone). The leader leaves a committed joint configuration on its own
//! unless `Config::auto_leave_joint` is off; then the host proposes
//! [`MembershipChange::LeaveJoint`] when it chooses (etcd's explicit
//! transition), and no other change is taken until it has.
//!
//! **Witnesses** are described, with their trade-off, in the crate
//! documentation (section "Witnesses").
//!
//! **Configurations and snapshots.** Compaction may drop the entries that
//! set the configuration in force, so the configuration at a snapshot's
//! last entry travels with the snapshot: the host stores
//! [`Node::membership_at`]`(index)` with the snapshots it takes
//! ([`Snapshot::with_membership`](crate::Snapshot::with_membership)), the
//! leader sends it with every snapshot chunk, a follower adopts it when it
//! installs the snapshot and asks its host to store it
//! ([`Action::PersistSnapshot`](crate::Action::PersistSnapshot)), and
//! after a restart the host hands it back in
//! [`Recovered::membership`](crate::Recovered::membership); configuration
//! entries in the log after the snapshot take effect over it. Only
//! without a stored configuration (no snapshot, or one stored before
//! configurations traveled with snapshots) does a node start from
//! `Config::voters` and `Config::learners`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::io::{Action, ProposeError};
use crate::node::{Node, Role};
use crate::progress::Progress;
use crate::types::{Entry, EntryPayload, Index, LogPosition, NodeId};

/// A cluster configuration: voters, learners, and in the joint phase the
/// outgoing voters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Membership {
    /// The voters (C_new while joint).
    pub voters: BTreeSet<NodeId>,
    /// The outgoing voters C_old while the configuration is joint; empty
    /// otherwise.
    pub voters_outgoing: BTreeSet<NodeId>,
    /// Nodes that receive the log and snapshots but never vote and never
    /// count toward commitment. While joint, a voter being demoted is
    /// listed here and in `voters_outgoing` (and not in `voters`).
    pub learners: BTreeSet<NodeId>,
    /// The voters (of `voters` or `voters_outgoing`) that are witnesses:
    /// they store the log and vote but never apply it and never lead (see
    /// the repository's `docs/design.md`, "Witnesses", for what that buys
    /// and costs).
    ///
    /// Encoding: configurations are serialized as the three sets above
    /// followed, in the learners sequence after a 0 (an id no member can
    /// have), by the witnesses; a configuration without witnesses encodes
    /// exactly as before witnesses existed, so stored logs and snapshots
    /// read back unchanged.
    pub witnesses: BTreeSet<NodeId>,
}

/// The serialized form of a [`Membership`] (see [`Membership::witnesses`]).
#[derive(Serialize, Deserialize)]
#[serde(rename = "Membership")]
struct MembershipRepr {
    voters: Vec<NodeId>,
    voters_outgoing: Vec<NodeId>,
    /// Learners, then (if any) a 0 and the witnesses.
    learners: Vec<NodeId>,
}

impl Serialize for Membership {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut learners: Vec<NodeId> = self.learners.iter().copied().collect();
        if !self.witnesses.is_empty() {
            learners.push(WITNESS_SEPARATOR);
            learners.extend(self.witnesses.iter().copied());
        }
        MembershipRepr {
            voters: self.voters.iter().copied().collect(),
            voters_outgoing: self.voters_outgoing.iter().copied().collect(),
            learners,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Membership {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let repr = MembershipRepr::deserialize(deserializer)?;
        let mut membership = Membership {
            voters: repr.voters.into_iter().collect(),
            voters_outgoing: repr.voters_outgoing.into_iter().collect(),
            ..Membership::default()
        };
        let mut ids = repr.learners.into_iter();
        for id in ids.by_ref() {
            if id == WITNESS_SEPARATOR {
                break;
            }
            membership.learners.insert(id);
        }
        membership.witnesses.extend(ids);
        Ok(membership)
    }
}

/// Separates learners from witnesses in the serialized learners sequence:
/// id 0 is reserved, so no configuration stored before witnesses existed
/// holds it.
const WITNESS_SEPARATOR: NodeId = 0;

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
    /// Remove a voter (through a joint configuration), a witness or a
    /// learner.
    Remove(NodeId),
    /// Make a full voter a learner (through a joint configuration in which
    /// it still votes in C_old).
    Demote(NodeId),
    /// Add a new node as a witness voter (through a joint configuration):
    /// it stores the log and votes but never applies it or leads. Its
    /// server must be built with its id in `Config::witnesses`.
    AddWitness(NodeId),
    /// Leave the joint configuration in force (C_old,new → C_new) once it
    /// has committed: the host's explicit step when
    /// `Config::auto_leave_joint` is off (allowed, but never needed, when
    /// it is on).
    LeaveJoint,
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
    #[error("node {id} is already a member of the cluster; to make a learner a voter, promote it; to re-add a node, remove it first")]
    AlreadyMember {
        /// The node.
        id: NodeId,
    },
    /// A node id is listed twice.
    #[error("node {id} is listed more than once; list every member once")]
    DuplicateId {
        /// The node.
        id: NodeId,
    },
    /// A change was applied to a joint configuration: a voter change is
    /// still under way.
    #[error("the configuration is joint (a change of voters is under way); apply the next change once it is left")]
    Joint,
    /// The node named is not a member.
    #[error(
        "node {id} is not a member of the cluster; add it first (as a learner, then promote it)"
    )]
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
    /// The full (non-witness) voters would not form a majority of the
    /// voters (of either half of a joint configuration): some quorum
    /// would hold no full voter, and the cluster could not make progress
    /// with its witnesses down.
    #[error("only {full_voters} of {voters} voters would be full (non-witness) voters, not a majority; add a full voter or remove a witness first")]
    NoFullVoterQuorum {
        /// Size of the voter set that fails (C_new, or C_old while joint).
        voters: usize,
        /// How many of them are full voters.
        full_voters: usize,
    },
    /// A witness is named that is not a voter.
    #[error("node {id} is listed as a witness but is not a voter; a witness is a kind of voter")]
    WitnessNotVoter {
        /// The node.
        id: NodeId,
    },
    /// A witness cannot become a learner: it has no state machine to
    /// serve one with.
    #[error("node {id} is a witness and holds no state machine, so it cannot be a learner; remove it instead")]
    WitnessDemoted {
        /// The node.
        id: NodeId,
    },
    /// Only a voter can be demoted.
    #[error("node {id} is not a voter; only a voter can be demoted to a learner")]
    NotVoter {
        /// The node.
        id: NodeId,
    },
    /// `LeaveJoint` was proposed while the configuration is not joint.
    #[error("the configuration is not joint; there is nothing to leave")]
    NotJoint,
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
    /// Duplicates collapse; use [`try_new`](Self::try_new) to refuse them.
    pub fn new(voters: impl IntoIterator<Item = NodeId>) -> Self {
        Membership {
            voters: voters.into_iter().collect(),
            ..Membership::default()
        }
    }

    /// A simple configuration of `voters` and `learners` as a user lists
    /// them, checked: at least one voter, no id 0, no id listed twice
    /// (within a list or in both).
    pub fn try_new(voters: &[NodeId], learners: &[NodeId]) -> Result<Self, MembershipError> {
        let mut membership = Membership::default();
        for id in voters {
            if !membership.voters.insert(*id) {
                return Err(MembershipError::DuplicateId { id: *id });
            }
        }
        for id in learners {
            if membership.voters.contains(id) {
                return Err(MembershipError::VoterAndLearner { id: *id });
            }
            if !membership.learners.insert(*id) {
                return Err(MembershipError::DuplicateId { id: *id });
            }
        }
        membership.validate()?;
        Ok(membership)
    }

    /// This configuration with the voters `witnesses` made witnesses,
    /// checked: each a voter, none listed twice, and the full voters still
    /// a majority ([`MembershipError::NoFullVoterQuorum`]).
    pub fn try_with_witnesses(mut self, witnesses: &[NodeId]) -> Result<Self, MembershipError> {
        for id in witnesses {
            if !self.witnesses.insert(*id) {
                return Err(MembershipError::DuplicateId { id: *id });
            }
        }
        self.validate()?;
        Ok(self)
    }

    /// Whether this is a joint configuration C_old,new.
    pub fn is_joint(&self) -> bool {
        !self.voters_outgoing.is_empty()
    }

    /// Whether `id` votes (in C_new or, while joint, C_old). Witnesses
    /// are voters.
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.voters_outgoing.contains(&id)
    }

    /// Whether `id` is a voter that is not a witness: one that may lead.
    pub fn is_full_voter(&self, id: NodeId) -> bool {
        self.is_voter(id) && !self.is_witness(id)
    }

    /// Whether `id` is a witness voter.
    pub fn is_witness(&self, id: NodeId) -> bool {
        self.witnesses.contains(&id)
    }

    /// Whether `id` is a learner (while joint, possibly a voter of C_old
    /// being demoted).
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
        8 * (self.voters.len()
            + self.voters_outgoing.len()
            + self.learners.len()
            + self.witnesses.len())
    }

    /// Checks the configuration is usable: at least one voter (in C_new),
    /// no id 0, nobody both a voter of C_new and a learner (a learner may
    /// be a voter of C_old: it is being demoted), every witness a voter
    /// and not a learner, and the full voters a majority of each voter
    /// set.
    pub fn validate(&self) -> Result<(), MembershipError> {
        if self.voters.is_empty() {
            return Err(MembershipError::NoVoters);
        }
        if self.members().contains(&0) || self.witnesses.contains(&0) {
            return Err(MembershipError::ZeroNodeId);
        }
        if let Some(id) = self.learners.iter().find(|id| self.voters.contains(id)) {
            return Err(MembershipError::VoterAndLearner { id: *id });
        }
        if let Some(id) = self.witnesses.iter().find(|id| !self.is_voter(**id)) {
            return Err(MembershipError::WitnessNotVoter { id: *id });
        }
        if let Some(id) = self.witnesses.iter().find(|id| self.is_learner(**id)) {
            return Err(MembershipError::WitnessDemoted { id: *id });
        }
        for voters in [&self.voters, &self.voters_outgoing] {
            if voters.is_empty() {
                continue;
            }
            let full_voters = voters.iter().filter(|id| !self.is_witness(**id)).count();
            if full_voters < crate::quorum::majority(voters.len()) {
                return Err(MembershipError::NoFullVoterQuorum {
                    voters: voters.len(),
                    full_voters,
                });
            }
        }
        Ok(())
    }

    /// The configuration `change` leads to from this one: joint
    /// C_old,new when the voter set changes, simple when only learners
    /// change. A joint configuration takes no change but
    /// [`MembershipChange::LeaveJoint`] ([`MembershipError::Joint`]).
    pub fn apply_change(&self, change: MembershipChange) -> Result<Membership, MembershipError> {
        if change == MembershipChange::LeaveJoint {
            if !self.is_joint() {
                return Err(MembershipError::NotJoint);
            }
            let next = self.leave_joint();
            next.validate()?;
            return Ok(next);
        }
        if self.is_joint() {
            return Err(MembershipError::Joint);
        }
        let mut next = self.clone();
        match change {
            MembershipChange::AddVoter(id)
            | MembershipChange::AddLearner(id)
            | MembershipChange::AddWitness(id) => {
                if id == 0 {
                    return Err(MembershipError::ZeroNodeId);
                }
                if self.contains(id) {
                    return Err(MembershipError::AlreadyMember { id });
                }
                match change {
                    MembershipChange::AddLearner(_) => {
                        next.learners.insert(id);
                    }
                    MembershipChange::AddWitness(_) => {
                        next.voters.insert(id);
                        next.witnesses.insert(id);
                    }
                    _ => {
                        next.voters.insert(id);
                    }
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
            MembershipChange::Demote(id) => {
                if !self.voters.contains(&id) {
                    return Err(if self.contains(id) {
                        MembershipError::NotVoter { id }
                    } else {
                        MembershipError::NotMember { id }
                    });
                }
                if self.is_witness(id) {
                    return Err(MembershipError::WitnessDemoted { id });
                }
                if self.voters.len() == 1 {
                    return Err(MembershipError::RemovesLastVoter { id });
                }
                next.voters.remove(&id);
                next.learners.insert(id);
            }
            MembershipChange::LeaveJoint => unreachable!("handled above"),
        }
        if next.voters != self.voters {
            next.voters_outgoing = self.voters.clone();
        }
        // A removed witness stays one while it still votes in C_old.
        let witnesses: BTreeSet<NodeId> = next
            .witnesses
            .iter()
            .copied()
            .filter(|id| next.is_voter(*id))
            .collect();
        next.witnesses = witnesses;
        next.validate()?;
        Ok(next)
    }

    /// The configuration that ends this joint one: C_new alone (this one
    /// unchanged when it is not joint). A voter being demoted stays a
    /// learner; a witness no longer a voter is forgotten.
    pub fn leave_joint(&self) -> Membership {
        Membership {
            voters: self.voters.clone(),
            voters_outgoing: BTreeSet::new(),
            learners: self.learners.clone(),
            witnesses: self
                .witnesses
                .iter()
                .copied()
                .filter(|id| self.voters.contains(id))
                .collect(),
        }
    }
}

impl Node {
    /// The configuration in force here: the latest in the log (or the
    /// snapshot's, or the initial one).
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// The index since which this node knows it is not a member of the
    /// cluster, if it does: its configuration in force leaves it out, or
    /// a peer reported ([`MessageBody::Removed`](crate::MessageBody::Removed))
    /// a committed configuration that does not name it a voter and that
    /// its log lacks (a removal it missed; for a node demoted to learner
    /// this lasts until the leader's entries reach it). A node started
    /// to join a cluster is not a member yet either, but was never one:
    /// its configuration is the one it started with, at index 0. A host
    /// shows it (a removed server says so, instead of a stale view).
    pub fn not_member_since(&self) -> Option<Index> {
        let me = self.config.id;
        if !self.membership.contains(me) {
            return (self.membership_index() > 0).then_some(self.membership_index());
        }
        // A notice older than the configuration in force was overtaken by
        // it (the node was added again).
        self.removed_notice
            .filter(|notice| notice.index > self.membership_index())
            .map(|notice| notice.index)
    }

    /// Index of the entry holding the configuration in force (the log's
    /// base for an initial or snapshot configuration).
    pub fn membership_index(&self) -> Index {
        // Kept by `membership_changed`, which every change to the newest
        // configuration goes through; `check_membership_index` compares it
        // with the map after each change.
        self.membership_in_force_index
    }

    /// The cached index of the configuration in force is the newest
    /// known one, so that steps read the cache instead of walking the map
    /// (`check_invariants` and the leader's `advance_membership` walked it
    /// on every step: about 2 % of the instructions of the batch-1
    /// benchmark, by callgrind). Every change to `memberships` but
    /// compaction ends in `membership_changed`, which recomputes the cache
    /// from the map (there this holds by construction, a postcondition);
    /// compaction keeps the newest entry and checks it here. What would
    /// catch a new change to the map that skipped `membership_changed` is
    /// the check on every step in builds with debug assertions, which the
    /// tests and their simulated seeds run.
    pub(crate) fn check_membership_index(&self) {
        assert_eq!(
            self.memberships.keys().next_back(),
            Some(&self.membership_in_force_index),
            "the cached configuration index is stale"
        );
    }

    /// The configuration in force at `index`, if still known (the
    /// configurations of compacted entries are forgotten, except the one
    /// in force at the log's base).
    pub fn membership_at(&self, index: Index) -> Option<&Membership> {
        self.memberships
            .range(..=index)
            .next_back()
            .map(|(_, membership)| membership)
    }

    /// The index of a configuration entry that is not final yet — not
    /// committed, or a joint configuration not yet left — if any.
    pub fn membership_change_pending(&self) -> Option<Index> {
        let index = self.membership_index();
        (index > self.log.commit_index() || self.membership.is_joint()).then_some(index)
    }

    /// Records a configuration entry just appended to the log: it is in
    /// force from now on.
    pub(crate) fn note_appended(&mut self, entry: &Entry) {
        if let Some(membership) = entry.payload.membership() {
            assert!(entry.index > self.membership_index());
            if self.planted().membership_on_commit {
                // The planted mistake: wait for the commit.
                self.deferred_memberships
                    .insert(entry.index, membership.clone());
                return;
            }
            self.memberships.insert(entry.index, membership.clone());
            self.membership_changed();
        }
    }

    /// The log was truncated after `index`: configurations of the removed
    /// entries are no longer in force.
    pub(crate) fn membership_truncated(&mut self, index: Index) {
        self.deferred_memberships.split_off(&(index + 1));
        if self.membership_index() <= index {
            return;
        }
        self.memberships.split_off(&(index + 1));
        assert!(!self.memberships.is_empty());
        self.membership_changed();
    }

    /// Forgets configurations older than the one in force at `base`.
    pub(crate) fn membership_compacted(&mut self, base: Index) {
        let Some((&floor, _)) = self.memberships.range(..=base).next_back() else {
            return;
        };
        self.memberships = self.memberships.split_off(&floor);
        self.check_membership_index();
    }

    /// A snapshot ending at `index` replaced the log up to it (and, without
    /// `keep_suffix`, after it): the configuration at `index` is
    /// `membership`, the one the leader sent with the snapshot.
    pub(crate) fn membership_installed(
        &mut self,
        index: Index,
        membership: Membership,
        keep_suffix: bool,
    ) {
        let at = membership;
        let mut suffix = if keep_suffix {
            self.memberships.split_off(&(index + 1))
        } else {
            BTreeMap::new()
        };
        self.memberships.clear();
        self.memberships.insert(index, at);
        self.memberships.append(&mut suffix);
        self.membership_changed();
    }

    /// Brings everything derived from the configuration in force up to
    /// date: peers, the leader's progress, known nodes.
    pub(crate) fn membership_changed(&mut self) {
        let (&index, latest) = self
            .memberships
            .iter()
            .next_back()
            .expect("a configuration is always known");
        self.membership = latest.clone();
        self.membership_in_force_index = index;
        self.voter_here = self.membership.is_voter(self.config.id);
        self.check_membership_index();
        let me = self.config.id;
        let members = self.membership.members();
        self.known_nodes.extend(members.iter().copied());
        self.peer_ids = members.into_iter().filter(|id| *id != me).collect();
        if self.role == Role::Leader {
            let next_index = self.log.last_index() + 1;
            let inflight_max = self.config.inflight_messages_max;
            let peers = &self.peer_ids;
            self.progress.retain(|id, _| peers.contains(id));
            for id in &self.peer_ids {
                let issued = &mut self.progress_ids_issued;
                self.progress.get_or_insert_with(*id, || {
                    // A new record, under a new id: answers of any earlier
                    // replica on that node name an older one.
                    *issued += 1;
                    Progress::new(*issued, next_index, inflight_max)
                });
            }
            if let Some(target) = self.transfer_target {
                if !self.membership.is_voter(target) {
                    self.transfer_target = None;
                }
            }
        }
    }

    /// Whether a vote request from `candidate` with log `last_log` is one
    /// from a removed node, to be ignored and answered with
    /// [`MessageBody::Removed`](crate::MessageBody::Removed): the candidate
    /// is not a voter in this node's configuration, that configuration is
    /// committed, and the candidate's log is behind ours (so we would refuse
    /// anyway). A candidate whose log is at least as up to date may hold a
    /// newer configuration that names it, so it is heard as usual.
    pub(crate) fn is_removed_candidate(&self, candidate: NodeId, last_log: LogPosition) -> bool {
        !self.membership.is_voter(candidate)
            && self.log.commit_index() >= self.membership_index()
            && !last_log.is_up_to_date_with(&self.log.last_position())
    }

    /// A log position at which the configuration in force is in force:
    /// its entry's, or the log's base when that entry was compacted away.
    pub(crate) fn membership_position(&self) -> LogPosition {
        let index = self.membership_index().max(self.log.base().index);
        let term = self
            .log
            .term_at(index)
            .expect("the log holds its base and every later entry");
        LogPosition::new(index, term)
    }

    /// A peer says a committed configuration does not name this node as a
    /// voter: stop any election and keep the newest such notice.
    pub(crate) fn handle_removed(&mut self, configuration: LogPosition, actions: &mut Vec<Action>) {
        self.stats.removed_notices_received += 1;
        if self
            .removed_notice
            .is_some_and(|notice| notice.index >= configuration.index)
        {
            return;
        }
        self.removed_notice = Some(configuration);
        if !self.may_campaign() && matches!(self.role, Role::PreCandidate | Role::Candidate) {
            tracing::info!(
                node = self.config.id,
                term = self.term,
                configuration_index = configuration.index,
                "not a voter in the committed configuration; no longer campaigning"
            );
            self.become_follower(self.term, None, actions);
        }
    }

    /// Whether `id` is or was a member in any configuration this node
    /// knows of; messages from anyone else are ignored.
    pub(crate) fn is_known_node(&self, id: NodeId) -> bool {
        self.known_nodes.contains(&id)
    }

    /// Whether this node was built as a witness (its id in
    /// `Config::witnesses`): it never applies, restores or snapshots the
    /// state machine, and never campaigns.
    pub fn is_witness_node(&self) -> bool {
        self.config.witnesses.contains(&self.config.id)
    }

    /// Whether this node may campaign: only voters do.
    pub(crate) fn is_voter_here(&self) -> bool {
        // Cached by `membership_changed`: the leader asks on every step.
        debug_assert_eq!(self.voter_here, self.membership.is_voter(self.config.id));
        self.voter_here
    }

    /// Whether this node may start an election: it votes in the
    /// configuration in force, or in one not known to be superseded by a
    /// committed configuration (its log may be the only one holding the
    /// entry that removed it, which then needs a leader to commit; its own
    /// vote counts only where it is a voter).
    ///
    /// A node told by a peer that a committed configuration does not name
    /// it ([`MessageBody::Removed`](crate::MessageBody::Removed)) does not
    /// campaign while its log lacks that entry: a log without a committed
    /// entry is behind a majority of every configuration that could elect
    /// it, so it cannot win. Once its log holds the entry, the entry counts
    /// as committed here.
    pub(crate) fn may_campaign(&self) -> bool {
        let me = self.config.id;
        // A node recovering from lost storage would vote for itself.
        if !self.recovery_allows_campaign(self.term + 1) {
            return false;
        }
        // A witness never leads, so it never campaigns (not even a
        // pre-vote, which would only ask for an election it must not win).
        if (self.is_witness_node() || self.membership.is_witness(me))
            && !self.planted().witness_campaigns
        {
            return false;
        }
        if self.planted().removed_node_campaigns
            && self.memberships.values().any(|m| m.is_voter(me))
        {
            return true;
        }
        let mut commit = self.log.commit_index();
        if let Some(notice) = self.removed_notice {
            let held = notice.index < self.log.base().index
                || self.log.term_at(notice.index) == Some(notice.term);
            if !held {
                return false;
            }
            commit = commit.max(notice.index);
        }
        if self.is_voter_here() {
            return true;
        }
        let floor = self
            .memberships
            .range(..=commit)
            .next_back()
            .map_or(0, |(index, _)| *index);
        self.memberships
            .range(floor..)
            .any(|(_, membership)| membership.is_voter(me))
    }

    /// Leader side of [`Input::ChangeMembership`](crate::Input::ChangeMembership).
    pub(crate) fn change_membership(
        &mut self,
        change: MembershipChange,
        actions: &mut Vec<Action>,
    ) {
        match self.membership_change_refusal(change) {
            Err(error) => {
                self.stats.proposals_refused += 1;
                actions.push(Action::ProposalRefused { count: 1, error });
            }
            Ok(next) => {
                let index = self.append_membership(next);
                self.stats.proposals_accepted += 1;
                actions.push(Action::ProposalAccepted {
                    term: self.term,
                    first_index: index,
                    last_index: index,
                });
                self.broadcast_append(false, actions);
            }
        }
    }

    fn membership_change_refusal(
        &self,
        change: MembershipChange,
    ) -> Result<Membership, ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader {
                leader_hint: self.leader,
            });
        }
        if let Some(error) = self.transfer_blocks_proposals() {
            return Err(error);
        }
        if let Some(index) = self.membership_change_pending() {
            // Leaving a committed joint configuration is the one change
            // that may follow it (the host's own step when auto-leave is
            // off).
            let leaves_committed_joint = change == MembershipChange::LeaveJoint
                && self.membership.is_joint()
                && index <= self.log.commit_index();
            if !leaves_committed_joint {
                return Err(ProposeError::Membership(
                    MembershipError::ChangeInProgress { index },
                ));
            }
        }
        if self.writes.len() >= self.config.unpersisted_writes_max {
            return Err(ProposeError::Backpressure);
        }
        let next = self
            .membership
            .apply_change(change)
            .map_err(ProposeError::Membership)?;
        if let MembershipChange::PromoteLearner(id) = change {
            let match_index = self.progress.get(&id).map_or(0, |p| p.match_index);
            let lag_entries = self.log.last_index().saturating_sub(match_index);
            let lag_entries_max = self.config.promote_lag_entries_max;
            // It must at least hold the configuration that made it a
            // learner, or it would not know its fellow voters.
            if lag_entries > lag_entries_max || match_index < self.membership_index() {
                return Err(ProposeError::Membership(MembershipError::LearnerBehind {
                    id,
                    lag_entries,
                    lag_entries_max,
                }));
            }
        }
        Ok(next)
    }

    /// Appends a configuration entry to the leader's log (in force at
    /// once). Returns its index.
    fn append_membership(&mut self, membership: Membership) -> Index {
        let index = self.log.last_index() + 1;
        let entry = Entry {
            term: self.term,
            index,
            payload: EntryPayload::Membership(Box::new(membership)),
        };
        self.note_appended(&entry);
        self.log.append(entry);
        index
    }

    /// The leader's follow-up once configurations commit: leave a
    /// committed joint configuration, and step down once a configuration
    /// without this node as a voter commits.
    pub(crate) fn advance_membership(&mut self, actions: &mut Vec<Action>) {
        let commit = self.log.commit_index();
        if self
            .deferred_memberships
            .first_key_value()
            .is_some_and(|(index, _)| *index <= commit)
        {
            let later = self.deferred_memberships.split_off(&(commit + 1));
            let committed = std::mem::replace(&mut self.deferred_memberships, later);
            let mut newest = self.membership_index();
            for (index, membership) in committed {
                if index > newest {
                    self.memberships.insert(index, membership);
                    newest = index;
                }
            }
            self.membership_changed();
        }
        if self.role != Role::Leader {
            return;
        }
        let index = self.membership_index();
        if index > self.log.commit_index() {
            return;
        }
        if self.membership.is_joint() {
            if !self.config.auto_leave_joint {
                // The host proposes `LeaveJoint` when it chooses.
                return;
            }
            let next = self.membership.leave_joint();
            self.append_membership(next);
            self.broadcast_append(false, actions);
        } else if !self.is_voter_here() {
            tracing::info!(
                node = self.config.id,
                term = self.term,
                "removed from the voters; stepping down"
            );
            self.become_follower(self.term, None, actions);
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
