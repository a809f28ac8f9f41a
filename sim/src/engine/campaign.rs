//! The concession check: a (pre-)candidate gives up its campaign exactly
//! when a majority of some half of its configuration refused it.
//!
//! The host keeps its own tally of each campaign from the answers it
//! delivers, with its own majority arithmetic (the core's quorum code is
//! what this check watches, so it must not be borrowed). After every step
//! whose input was an answer to the node's current campaign:
//!
//! * refused by more voters of a half than can be spared (more than
//!   `n - (n / 2 + 1)` of `n`) ⇒ the node ends the step a follower: a
//!   candidate that cannot win and keeps campaigning only delays the
//!   election another node could win;
//! * ended a follower of the same term ⇒ such a majority refused: a
//!   candidate that concedes a winnable election wastes an election
//!   timeout, or more, before a leader is chosen.
//!
//! An answer is counted as the core must count it: none of an older term
//! (stale); a pre-candidate takes any other refusal and a grant that
//! echoes the term it asked about; a candidate takes answers of its own
//! term; each voter's first answer stands.

use std::collections::BTreeMap;

use concord::{Action, Message, MessageBody, Node, NodeId, Role, Term};

/// One campaign of one node, as its host saw it.
#[derive(Clone, Debug, Default)]
pub(super) struct Campaign {
    /// The role and term of the campaign (`None` when none is watched).
    of: Option<(Role, Term)>,
    /// Each voter's first answer counted.
    answers: BTreeMap<NodeId, bool>,
}

impl Campaign {
    /// No campaign is watched any more. An already empty tally is not torn
    /// down again (most steps are of followers and leaders).
    fn forget(&mut self) {
        self.of = None;
        if !self.answers.is_empty() {
            self.answers.clear();
        }
    }
}

/// An answer to a vote request, as delivered.
#[derive(Clone, Copy, Debug)]
pub(super) struct VoteAnswer {
    from: NodeId,
    term: Term,
    pre_vote: bool,
    granted: bool,
}

impl VoteAnswer {
    /// The answer `message` carries, if it is one.
    pub(super) fn of(message: &Message) -> Option<VoteAnswer> {
        match message.body {
            MessageBody::RequestVoteResponse { pre_vote, granted } => Some(VoteAnswer {
                from: message.from,
                term: message.term,
                pre_vote,
                granted,
            }),
            _ => None,
        }
    }
}

/// Whether more of `voters` refused than a majority of them can spare.
fn refused_by_majority(
    voters: &std::collections::BTreeSet<NodeId>,
    answers: &BTreeMap<NodeId, bool>,
) -> bool {
    let n = voters.len();
    if n == 0 {
        return false;
    }
    let needed = n / 2 + 1;
    let refused = voters
        .iter()
        .filter(|voter| answers.get(voter) == Some(&false))
        .count();
    refused > n - needed
}

/// Checks and updates `campaign` after a step of `node` that began as
/// `before` (role and term), whose input carried `answer` (if it was a vote
/// answer) and which emitted `actions`.
///
/// A step without a vote answer that leaves the node neither candidate
/// nor pre-candidate (most steps) only forgets the campaign: decided
/// inline, the rest is a call.
#[inline]
pub(super) fn check(
    campaign: &mut Campaign,
    before: (Role, Term),
    node: &Node,
    answer: Option<VoteAnswer>,
    actions: &[Action],
) -> Result<(), String> {
    if answer.is_none() && !matches!(node.role(), Role::PreCandidate | Role::Candidate) {
        campaign.forget();
        return Ok(());
    }
    judge(campaign, before, node, answer, actions)
}

/// [`check`] on a step with a vote answer or of a (pre-)candidate.
fn judge(
    campaign: &mut Campaign,
    before: (Role, Term),
    node: &Node,
    answer: Option<VoteAnswer>,
    actions: &[Action],
) -> Result<(), String> {
    let mut verdict = Ok(());
    if let (Some(answer), Some(of)) = (answer, campaign.of) {
        // An answer of an older term is dropped as stale before it is
        // looked at; a refusal of a newer one makes the node a follower of
        // that term first.
        let current = of == before
            && answer.term >= before.1
            && match before.0 {
                Role::PreCandidate => {
                    answer.pre_vote && (!answer.granted || answer.term == before.1 + 1)
                }
                Role::Candidate => !answer.pre_vote && answer.term == before.1,
                Role::Follower | Role::Leader => false,
            };
        // Only a voter's campaign is tallied: a node outside its own
        // configuration must not campaign at all (the stability checks
        // judge that), so how it concedes is not defined by the tally.
        let membership = node.membership();
        if current && membership.is_voter(node.id()) {
            campaign
                .answers
                .entry(answer.from)
                .or_insert(answer.granted);
            let lost = refused_by_majority(&membership.voters, &campaign.answers)
                || refused_by_majority(&membership.voters_outgoing, &campaign.answers);
            let after = (node.role(), node.term());
            if lost && after.0 != Role::Follower {
                verdict = Err(format!(
                    "a majority of a half of its configuration refused its {:?} campaign of term {} (answers {:?}), yet it ended the step {:?} in term {}: a campaign that cannot be won is given up",
                    before.0, before.1, campaign.answers, after.0, after.1
                ));
            } else if !lost && after == (Role::Follower, before.1) {
                verdict = Err(format!(
                    "gave up its {:?} campaign of term {} on the answer of n{} although no majority refused it (answers {:?}): a winnable election is not conceded",
                    before.0, before.1, answer.from, campaign.answers
                ));
            }
        }
    }
    let role = node.role();
    if !matches!(role, Role::PreCandidate | Role::Candidate) {
        // Followers and leaders: no walk of the actions.
        campaign.forget();
        return verdict;
    }
    // A new campaign starts with an announcement, or (a pre-campaign
    // repeated without a change of role) with its vote requests.
    let started = actions.iter().any(|action| match action {
        Action::RoleChanged { role, .. } => {
            matches!(role, Role::PreCandidate | Role::Candidate)
        }
        Action::Send { message, .. } => matches!(
            message.body,
            MessageBody::RequestVote { pre_vote: true, .. }
        ),
        _ => false,
    });
    if started {
        campaign.of = Some((role, node.term()));
        campaign.answers.clear();
    }
    verdict
}

/// The only voter of a configuration campaigns at its first tick as a
/// follower: it has no one to wait for and no one to disrupt, so a
/// restarted one-node cluster (or the survivor of a forced recovery) serves
/// again at once instead of after a whole election timeout. Checked on a
/// tick of a follower whose configuration, not joint, has itself as its
/// only voter and not as a witness, that was never told it is removed,
/// and that is not recovering from lost storage.
///
/// Only a follower's tick is judged; that test is inline, the rest a call.
#[inline]
pub(super) fn check_sole_voter(
    before: (Role, Term),
    node: &Node,
    tick: bool,
    actions: &[Action],
) -> Result<(), String> {
    if !tick || before.0 != Role::Follower {
        return Ok(());
    }
    judge_sole_voter(node, actions)
}

/// [`check_sole_voter`] on a follower's tick.
fn judge_sole_voter(node: &Node, actions: &[Action]) -> Result<(), String> {
    let membership = node.membership();
    let id = node.id();
    let sole = !membership.is_joint()
        && membership.voters.len() == 1
        && membership.voters.contains(&id)
        && !membership.witnesses.contains(&id)
        && !node.is_witness_node()
        && node.stats().removed_notices_received == 0
        // A node recovering from lost storage campaigns only once it
        // holds its floor: the configuration it holds meanwhile may be an
        // old one a snapshot brought back (seed 5840003001 on 3 nodes,
        // directory: restored to a one-voter configuration of index 192).
        && !node.storage_recovery().is_recovering();
    let campaigned = node.role() != Role::Follower
        || actions
            .iter()
            .any(|action| matches!(action, Action::RoleChanged { .. }));
    if sole && !campaigned {
        return Err(format!(
            "is the only voter of its configuration, yet a tick left it a follower in term {} without a campaign: a sole voter campaigns at its first tick",
            node.term()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn a_campaign_is_lost_once_more_voters_refused_than_a_majority_spares() {
        let refusals = |voters: &[NodeId], refused: &[NodeId]| {
            let voters: BTreeSet<NodeId> = voters.iter().copied().collect();
            let answers = refused.iter().map(|&id| (id, false)).collect();
            refused_by_majority(&voters, &answers)
        };
        // 5 voters: a majority is 3, so 2 may refuse.
        assert!(!refusals(&[1, 2, 3, 4, 5], &[2, 3]));
        assert!(refusals(&[1, 2, 3, 4, 5], &[2, 3, 4]));
        // 4 voters: a majority is 3, so 1 may refuse.
        assert!(!refusals(&[1, 2, 3, 4], &[2]));
        assert!(refusals(&[1, 2, 3, 4], &[2, 3]));
        // 2 voters: both are needed.
        assert!(refusals(&[1, 2], &[2]));
        // Refusals of non-members do not count; an empty half never loses.
        assert!(!refusals(&[1, 2, 3], &[7, 8]));
        assert!(!refusals(&[], &[1]));
    }

    /// A node of three voters ticked until it campaigns.
    fn campaigning() -> Node {
        let mut config = concord::Config::new(1, [1, 2, 3]);
        // A running cluster's node, not a new one waiting for its peers.
        config.recover_empty_storage = false;
        let mut node =
            Node::new(config, concord::Recovered::default()).expect("a valid configuration");
        let mut actions = Vec::new();
        for _ in 0..1_000 {
            if matches!(node.role(), Role::PreCandidate | Role::Candidate) {
                return node;
            }
            node.step(concord::Input::Tick, &mut actions);
            actions.clear();
        }
        panic!("never campaigned");
    }

    /// Through the inline no-op test, a campaign that a majority refused
    /// and that the node keeps up is still caught, and a follower's step
    /// forgets the campaign.
    #[test]
    fn a_lost_campaign_kept_up_is_caught() {
        let node = campaigning();
        let before = (node.role(), node.term());
        let pre_vote = before.0 == Role::PreCandidate;
        let refusal = |from| VoteAnswer {
            from,
            term: before.1,
            pre_vote,
            granted: false,
        };
        let mut campaign = Campaign {
            of: Some(before),
            answers: BTreeMap::new(),
        };
        // One refusal of three voters: still winnable.
        assert_eq!(
            check(&mut campaign, before, &node, Some(refusal(2)), &[]),
            Ok(())
        );
        // A second: lost, yet the node still campaigns.
        let message = check(&mut campaign, before, &node, Some(refusal(3)), &[]).unwrap_err();
        assert!(message.contains("cannot be won"), "{message}");
        // No answer and no campaign: the tally is dropped.
        let follower = Node::new(
            concord::Config::new(1, [1, 2, 3]),
            concord::Recovered::default(),
        )
        .expect("a valid configuration");
        assert_eq!(check(&mut campaign, before, &follower, None, &[]), Ok(()));
        assert!(campaign.of.is_none() && campaign.answers.is_empty());
    }
}
