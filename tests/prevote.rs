//! PreVote (thesis §9.6): a node first asks whether it could win before it
//! increments its term, so a node that was partitioned away cannot disrupt
//! a healthy leader when it returns.
mod common;

use common::*;
use concord::{Input, MessageBody, Role};

/// A pre-election asks for votes in term + 1 without entering it: neither
/// the pre-candidate nor the voters change term or vote.
#[test]
fn pre_election_does_not_increment_the_term() {
    let mut c = Cluster::guarded(true, true);
    c.isolate(1);
    for _ in 0..60 {
        c.tick(1);
    }
    let n = c.node(1);
    assert!(n.stats().pre_elections_started >= 2);
    assert_eq!(n.stats().elections_started, 0);
    assert_eq!(
        (n.term(), n.voted_for(), n.role()),
        (0, None, Role::PreCandidate)
    );

    // Reconnected, its next pre-vote requests reach the voters.
    c.heal();
    c.take_messages();
    let started = c.node(1).stats().pre_elections_started;
    while c.node(1).stats().pre_elections_started == started {
        c.tick(1);
    }
    let requests = c.take_messages();
    assert_eq!(requests.len(), 2);
    for request in requests {
        assert!(matches!(
            request.body,
            MessageBody::RequestVote { pre_vote: true, .. }
        ));
        assert_eq!(request.term, 1, "asks about term + 1");
        c.step(request.to, Input::Receive(request));
    }
    for id in [2, 3] {
        assert_eq!(
            (c.node(id).term(), c.node(id).voted_for()),
            (0, None),
            "node {id}"
        );
    }
    // They would vote: the grants echo the term asked about.
    let answers = c.take_messages();
    assert_eq!(answers.len(), 2);
    for answer in answers {
        assert_eq!(answer.term, 1);
        assert_eq!(
            answer.body,
            MessageBody::RequestVoteResponse {
                pre_vote: true,
                granted: true
            }
        );
    }
    assert_eq!(c.node(1).term(), 0);
}

/// A node cut off from a healthy cluster keeps failing pre-elections
/// without raising its term, so when it returns the leader and the term
/// stand.
#[test]
fn rejoining_partitioned_node_does_not_disrupt_a_healthy_leader() {
    let (mut c, term) = Cluster::guarded_with_3_cut_off(true, true, 100);
    assert!(c.node(3).stats().pre_elections_started >= 3);
    assert_eq!(c.node(3).term(), term, "the isolated node raised its term");
    c.heal();
    c.tick_all(50);
    for id in [1, 2, 3] {
        assert_eq!(c.node(id).term(), term, "node {id}");
        assert_eq!(c.node(id).leader(), Some(1), "node {id}");
    }
    assert_eq!(c.node(1).role(), Role::Leader);
    assert_eq!(
        c.leaders.len(),
        1,
        "another election happened: {:?}",
        c.leaders
    );
}

/// The contrast: without PreVote (and without CheckQuorum's lease) the
/// returning node has raised its term while away and forces the leader
/// to step down.
#[test]
fn without_prevote_a_rejoining_node_disrupts_the_leader() {
    let (mut c, term) = Cluster::guarded_with_3_cut_off(false, false, 100);
    assert!(
        c.node(3).term() > term + 1,
        "the isolated node kept campaigning"
    );
    c.heal();
    c.tick_all(50);
    assert!(
        c.node(1).term() > term,
        "the leader never saw the higher term"
    );
    assert!(c.leaders.keys().any(|t| *t > term), "no new election");
    c.assert_election_safety();
}

/// A follower that heard from its leader within the minimum election
/// timeout ignores pre-votes; once the leader has been silent that long, it
/// grants them.
#[test]
fn follower_within_leader_lease_ignores_pre_votes() {
    let mut c = Cluster::guarded(true, true);
    let term = c.elect(1);
    let last = c.node(3).last_position();
    let pre_vote = msg(3, 2, term + 1, pre_vote_request((last.index, last.term)));

    c.step(2, Input::Receive(pre_vote.clone()));
    let answers: Vec<_> = c
        .take_messages()
        .into_iter()
        .filter(|m| m.to == 3)
        .collect();
    assert!(
        answers.is_empty(),
        "answered a pre-vote inside the lease: {answers:?}"
    );
    assert_eq!((c.node(2).term(), c.node(2).leader()), (term, Some(1)));

    // The leader goes silent for a minimum election timeout.
    c.isolate(1);
    let min = c.configs[&2].election_timeout_min_ticks;
    for _ in 0..min {
        c.tick(2);
    }
    c.take_messages();
    c.step(2, Input::Receive(pre_vote));
    let answers: Vec<_> = c
        .take_messages()
        .into_iter()
        .filter(|m| m.to == 3)
        .collect();
    assert_eq!(answers.len(), 1);
    assert_eq!(
        answers[0].body,
        MessageBody::RequestVoteResponse {
            pre_vote: true,
            granted: true
        }
    );
    assert_eq!(c.node(2).term(), term, "a pre-vote changes no term");
}

/// When the leader is really gone, a follower's pre-election succeeds and
/// is followed by a real election that it wins.
#[test]
fn leader_gone_pre_vote_then_vote_elects_a_new_leader() {
    let mut c = Cluster::guarded(true, true);
    let term = c.elect(1);
    c.crash(1);
    c.record_trace = true;
    let mut leader = None;
    for _ in 0..200 {
        c.tick_all(1);
        if let Some(id) = c.leader() {
            leader = Some(id);
            break;
        }
    }
    let leader = leader.expect("no new leader");
    assert_ne!(leader, 1);
    let new_term = c.node(leader).term();
    assert!(new_term > term);
    let requests: Vec<bool> = c
        .traced_sends(leader)
        .into_iter()
        .filter_map(|m| match m.body {
            MessageBody::RequestVote { pre_vote, .. } => Some(pre_vote),
            _ => None,
        })
        .collect();
    let first_real = requests.iter().position(|pre| !pre).expect("no real vote");
    assert!(
        requests[..first_real].iter().any(|pre| *pre),
        "no pre-vote before the real vote: {requests:?}"
    );
    // It serves: a proposal commits on both survivors.
    c.propose(leader, "after");
    c.tick_all(5);
    for id in [2, 3] {
        assert_eq!(c.applied_strings(id), vec!["after"], "node {id}");
    }
}
