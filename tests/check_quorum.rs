//! CheckQuorum: a leader that has not heard from a majority for an
//! election timeout steps down, and while a leader is heard from, voters
//! refuse to help depose it (the leader lease).
mod common;

use common::*;
use concord::{Action, HardState, Input, ProposeError, Role, Term};

/// Node 2 voted for node 3 in `term`, durably, and its grant is on the
/// way to node 3.
fn assert_2_voted_for_3(c: &Cluster, term: Term) {
    let vote = HardState {
        term,
        voted_for: Some(3),
        ..Default::default()
    };
    assert_eq!(c.node(2).hard_state(), vote);
    assert!(c.network.iter().any(|m| m.to == 3 && is_vote_grant(m)));
}

/// A leader cut off from every follower steps down, but not before a full
/// election timeout has passed, and within two (the window it last heard
/// from them in, then one silent window).
#[test]
fn leader_hearing_from_no_quorum_steps_down() {
    let mut c = Cluster::guarded(true, true);
    let term = c.elect(1);
    c.isolate(1);
    let min = c.configs[&1].election_timeout_min_ticks;
    for _ in 0..min - 1 {
        c.tick(1);
    }
    assert_eq!(
        c.node(1).role(),
        Role::Leader,
        "stepped down before a timeout"
    );
    for _ in 0..min + 1 {
        c.tick(1);
    }
    let n = c.node(1);
    assert_eq!(n.role(), Role::Follower);
    assert_eq!(n.term(), term, "stepping down does not change the term");
    assert_eq!(n.stats().check_quorum_step_downs, 1);
}

/// A leader that stepped down for lack of a quorum knows no leader any
/// more: it must not name itself, neither in `leader()` nor as the hint of
/// a refused proposal (a client would be redirected to a node that is not
/// leading, in a loop).
#[test]
fn leader_that_steps_down_no_longer_names_itself_leader() {
    let mut c = Cluster::guarded(true, true);
    c.elect(1);
    c.isolate(1);
    for _ in 0..3 * c.configs[&1].election_timeout_min_ticks {
        c.tick(1);
        if c.node(1).role() != Role::Leader {
            break;
        }
    }
    assert_eq!(c.node(1).role(), Role::Follower);
    assert_eq!(c.node(1).leader(), None);
    c.record_trace = true;
    c.propose(1, "x");
    let refusals: Vec<_> = c
        .trace
        .iter()
        .filter_map(|(_, a)| match a {
            Action::ProposalRefused { error, .. } => Some(*error),
            _ => None,
        })
        .collect();
    assert_eq!(
        refusals,
        vec![ProposeError::NotLeader { leader_hint: None }]
    );
}

/// Without CheckQuorum the same isolated leader keeps believing it leads.
#[test]
fn without_check_quorum_an_isolated_leader_stays() {
    let mut c = Cluster::guarded(true, false);
    c.elect(1);
    c.isolate(1);
    for _ in 0..100 {
        c.tick(1);
    }
    assert_eq!(c.node(1).role(), Role::Leader);
    assert_eq!(c.node(1).stats().check_quorum_step_downs, 0);
}

/// Even without CheckQuorum, a leader that removed itself and cannot
/// reach the remaining voters steps down within two election timeouts:
/// they may commit the change, elect a leader of their own and forget it,
/// after which no higher term would ever reach it (seed 2205754155 of
/// `concord-sim run --nodes 3 --service kv`).
#[test]
fn without_check_quorum_a_leader_outside_its_configuration_hearing_nobody_steps_down() {
    let mut c = Cluster::configured(&[1, 2, 3], |c| {
        c.pre_vote = false;
        c.check_quorum = false;
        c.auto_leave_joint = false;
    });
    c.elect(1);
    // Removing the leader goes through a joint configuration; leaving it
    // is the step that drops node 1, and it never commits here.
    c.step(
        1,
        Input::ChangeMembership(concord::MembershipChange::Remove(1)),
    );
    c.tick_all(3);
    assert!(c.node(1).membership().is_joint());
    c.step(
        1,
        Input::ChangeMembership(concord::MembershipChange::LeaveJoint),
    );
    c.isolate(1);
    assert!(!c.node(1).membership().is_voter(1));
    assert_eq!(c.node(1).role(), Role::Leader);
    let min = c.configs[&1].election_timeout_min_ticks;
    for _ in 0..2 * min + 1 {
        c.tick(1);
    }
    let n = c.node(1);
    assert_eq!(n.role(), Role::Follower);
    assert_eq!(n.stats().check_quorum_step_downs, 1);
}

/// A leader that hears from a majority (itself and one of two followers)
/// stays leader in its term, however long that lasts.
#[test]
fn leader_hearing_from_a_quorum_stays() {
    let (mut c, term) = Cluster::guarded_with_3_cut_off(true, true, 200);
    let n = c.node(1);
    assert_eq!((n.role(), n.term()), (Role::Leader, term));
    assert_eq!(n.stats().check_quorum_step_downs, 0);
    c.propose(1, "x");
    c.tick_all(2);
    assert_eq!(c.applied_strings(2), vec!["x"]);
}

/// With CheckQuorum, a real vote request in a higher term is ignored by a
/// follower in its leader lease and by the leader: no term change, no
/// answer. After the lease expires the same kind of request is granted.
#[test]
fn vote_request_ignored_inside_leader_lease_with_check_quorum() {
    let mut c = Cluster::guarded(false, true);
    let term = c.elect(1);
    let last = c.node(1).last_position();
    let request = |to, term| msg(3, to, term, vote_request((last.index + 5, last.term)));

    for to in [1, 2] {
        c.step(to, Input::Receive(request(to, term + 1)));
        assert_eq!(c.node(to).term(), term, "node {to} adopted the term");
    }
    assert!(
        c.take_messages().iter().all(|m| m.to != 3),
        "answered inside the lease"
    );
    assert_eq!(c.node(1).role(), Role::Leader);
    assert_eq!(c.node(2).leader(), Some(1));

    // The leader falls silent; after a minimum election timeout node 2
    // grants (it may have campaigned itself in term + 1 meanwhile, so ask
    // in term + 2).
    c.isolate(1);
    for _ in 0..c.configs[&2].election_timeout_min_ticks {
        c.tick(2);
    }
    c.take_messages();
    c.auto_sync.remove(&2);
    c.step(2, Input::Receive(request(2, term + 2)));
    c.sync(2);
    assert_2_voted_for_3(&c, term + 2);
}

/// The contrast: without CheckQuorum (and without PreVote) a follower has
/// no lease, so the same request moves it to the new term and wins its
/// vote.
#[test]
fn without_check_quorum_a_vote_request_deposes_the_term() {
    let mut c = Cluster::guarded(false, false);
    let term = c.elect(1);
    let last = c.node(1).last_position();
    c.step(
        2,
        Input::Receive(msg(3, 2, term + 1, vote_request((last.index, last.term)))),
    );
    assert_2_voted_for_3(&c, term + 1);
}
