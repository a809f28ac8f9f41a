//! Majority arithmetic: how many make a quorum, which index a quorum has
//! reached, and how an election stands.

use crate::types::Index;

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
