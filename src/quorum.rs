//! Majority arithmetic: how many make a quorum, which index a quorum has
//! reached, and how an election stands.

use std::collections::BTreeSet;

use crate::types::{Index, NodeId};

/// Votes needed out of `voters` for a majority.
pub fn majority(voters: usize) -> usize {
    assert!(voters > 0);
    voters / 2 + 1
}

/// The highest index that a majority of `match_indices` have reached.
/// Reorders the slice.
pub fn quorum_index(match_indices: &mut [Index]) -> Index {
    assert!(!match_indices.is_empty());
    match_indices.sort_unstable_by(|a, b| b.cmp(a));
    match_indices[majority(match_indices.len()) - 1]
}

/// The state of an election.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteResult {
    /// A majority granted.
    Won,
    /// A majority refused: the election cannot be won.
    Lost,
    /// Neither yet.
    Pending,
}

/// Tallies `granted` and `rejected` votes out of `voters`.
pub fn vote_result(voters: usize, granted: usize, rejected: usize) -> VoteResult {
    assert!(granted + rejected <= voters);
    let needed = majority(voters);
    if granted >= needed {
        VoteResult::Won
    } else if rejected > voters - needed {
        VoteResult::Lost
    } else {
        VoteResult::Pending
    }
}

/// The highest index that a majority of `voters` have reached, where
/// `match_of` gives each voter's index. `scratch` is a reusable buffer (no
/// allocation per call once it has grown).
///
/// # Panics
///
/// When `voters` is empty.
pub fn committed_index(
    voters: &BTreeSet<NodeId>,
    scratch: &mut Vec<Index>,
    match_of: impl Fn(NodeId) -> Index,
) -> Index {
    assert!(!voters.is_empty());
    scratch.clear();
    scratch.extend(voters.iter().map(|id| match_of(*id)));
    quorum_index(scratch)
}

/// The highest index that both a majority of `incoming` and, when
/// `outgoing` is not empty (a joint configuration C_old,new), a majority
/// of `outgoing` have reached: joint consensus decides only with both.
pub fn joint_committed_index(
    incoming: &BTreeSet<NodeId>,
    outgoing: &BTreeSet<NodeId>,
    scratch: &mut Vec<Index>,
    match_of: impl Fn(NodeId) -> Index,
) -> Index {
    let incoming_index = committed_index(incoming, scratch, &match_of);
    if outgoing.is_empty() {
        return incoming_index;
    }
    let outgoing_index = committed_index(outgoing, scratch, &match_of);
    incoming_index.min(outgoing_index)
}

/// Tallies the votes of a simple configuration: `vote_of` gives each
/// voter's answer (granted, refused, or none yet).
pub fn tally(voters: &BTreeSet<NodeId>, vote_of: impl Fn(NodeId) -> Option<bool>) -> VoteResult {
    assert!(!voters.is_empty());
    let mut granted = 0;
    let mut rejected = 0;
    for voter in voters {
        match vote_of(*voter) {
            Some(true) => granted += 1,
            Some(false) => rejected += 1,
            None => {}
        }
    }
    vote_result(voters.len(), granted, rejected)
}

/// Tallies votes in a possibly joint configuration: won only when won in
/// both `incoming` and (if not empty) `outgoing`; lost as soon as either
/// is lost.
pub fn joint_tally(
    incoming: &BTreeSet<NodeId>,
    outgoing: &BTreeSet<NodeId>,
    vote_of: impl Fn(NodeId) -> Option<bool>,
) -> VoteResult {
    let incoming_result = tally(incoming, &vote_of);
    if outgoing.is_empty() {
        return incoming_result;
    }
    let outgoing_result = tally(outgoing, &vote_of);
    match (incoming_result, outgoing_result) {
        (VoteResult::Won, VoteResult::Won) => VoteResult::Won,
        (VoteResult::Lost, _) | (_, VoteResult::Lost) => VoteResult::Lost,
        _ => VoteResult::Pending,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn set(ids: &[NodeId]) -> BTreeSet<NodeId> {
        ids.iter().copied().collect()
    }

    #[test]
    fn joint_commit_needs_both_majorities() {
        let old = set(&[1, 2, 3]);
        let new = set(&[3, 4, 5]);
        let matches: BTreeMap<NodeId, Index> = [(1, 9), (2, 9), (3, 5), (4, 1), (5, 1)].into();
        let mut scratch = Vec::new();
        let of = |id| matches[&id];
        assert_eq!(committed_index(&old, &mut scratch, of), 9);
        assert_eq!(committed_index(&new, &mut scratch, of), 1);
        assert_eq!(joint_committed_index(&new, &old, &mut scratch, of), 1);
        assert_eq!(
            joint_committed_index(&old, &BTreeSet::new(), &mut scratch, of),
            9
        );
    }

    #[test]
    fn joint_vote_needs_both_majorities() {
        let old = set(&[1, 2, 3]);
        let new = set(&[3, 4, 5]);
        let mut votes = BTreeMap::from([(1, true), (2, true), (3, true)]);
        assert_eq!(tally(&old, |id| votes.get(&id).copied()), VoteResult::Won);
        assert_eq!(
            joint_tally(&new, &old, |id| votes.get(&id).copied()),
            VoteResult::Pending
        );
        votes.insert(4, false);
        votes.insert(5, false);
        assert_eq!(
            joint_tally(&new, &old, |id| votes.get(&id).copied()),
            VoteResult::Lost
        );
        votes.insert(4, true);
        assert_eq!(
            joint_tally(&new, &old, |id| votes.get(&id).copied()),
            VoteResult::Won
        );
        // Votes from non-voters do not count.
        let only_outsiders = BTreeMap::from([(7, true), (8, true)]);
        assert_eq!(
            tally(&old, |id| only_outsiders.get(&id).copied()),
            VoteResult::Pending
        );
    }
}
