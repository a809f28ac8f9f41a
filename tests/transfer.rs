//! Leadership transfer as public API (thesis §3.10): to a named voter,
//! refused with a reason, proposals refused meanwhile, given up after a
//! timeout.

mod common;

use common::{Cluster, Disk};
use concord::{
    Action, Input, LogPosition, MembershipChange, Node, NodeId, ProposeError, Recovered, Role,
    TransferError, TransferOutcome,
};

/// Steps `input` at `id` and returns the actions it produced.
fn step_traced(c: &mut Cluster, id: NodeId, input: Input) -> Vec<Action> {
    c.record_trace = true;
    c.trace.clear();
    c.step(id, input);
    c.record_trace = false;
    c.trace
        .iter()
        .filter(|(from, _)| *from == id)
        .map(|(_, action)| action.clone())
        .collect()
}

/// Asks `leader` to hand leadership to `target`; returns the outcome.
fn transfer(c: &mut Cluster, leader: NodeId, target: NodeId) -> TransferOutcome {
    step_traced(c, leader, Input::TransferLeadership(target))
        .into_iter()
        .find_map(|action| match action {
            Action::Transfer { target: t, outcome } if t == target => Some(outcome),
            _ => None,
        })
        .expect("the transfer was answered")
}

/// A transfer to `target` asked of `at` is refused with `error`.
fn assert_refused(c: &mut Cluster, at: NodeId, target: NodeId, error: TransferError) {
    assert_eq!(
        transfer(c, at, target),
        TransferOutcome::Refused(error),
        "a transfer to {target} asked of {at}"
    );
}

/// Ticks every node until the heartbeats have been answered.
fn settle(c: &mut Cluster) {
    c.tick_all(3);
}

#[test]
fn leadership_moves_to_the_named_voter() {
    let mut c = Cluster::elected(&[1, 2, 3], 1);
    settle(&mut c);
    assert_eq!(transfer(&mut c, 1, 3), TransferOutcome::Started);
    c.deliver_all();
    c.tick_all(3);
    assert_eq!(c.leader(), Some(3));
    assert_eq!(c.node(1).role(), Role::Follower);
    c.assert_served(3, "after the transfer", 3, 1);
    c.assert_election_safety();
}

#[test]
fn a_transfer_is_refused_anywhere_but_at_the_leader_with_the_leader_named() {
    let mut c = Cluster::elected(&[1, 2, 3], 1);
    settle(&mut c);
    assert_refused(
        &mut c,
        2,
        3,
        TransferError::NotLeader {
            leader_hint: Some(1),
        },
    );
    assert_refused(&mut c, 1, 1, TransferError::AlreadyLeader { target: 1 });
}

#[test]
fn a_transfer_to_a_learner_or_a_stranger_is_refused() {
    let mut c = Cluster::elected(&[1, 2, 3], 1);
    let mut config = common::config(4, &[1, 2, 3]);
    config.learners = [4].into();
    c.nodes
        .insert(4, Node::new(config.clone(), Recovered::default()).unwrap());
    c.configs.insert(4, config);
    c.disks.insert(4, Disk::default());
    c.auto_sync.insert(4);
    c.applied.insert(4, Vec::new());
    c.applied_position.insert(4, LogPosition::ZERO);
    c.step(1, Input::ChangeMembership(MembershipChange::AddLearner(4)));
    settle(&mut c);
    assert_refused(&mut c, 1, 4, TransferError::NotVoter { target: 4 });
    assert_refused(&mut c, 1, 9, TransferError::NotVoter { target: 9 });
    assert_eq!(c.node(1).transfer_target(), None);
}

#[test]
fn a_transfer_to_a_voter_that_is_behind_or_silent_is_refused() {
    let mut c = Cluster::configured(&[1, 2, 3], |config| config.promote_lag_entries_max = 4);
    c.elect(1);
    settle(&mut c);
    c.isolate(3);
    for i in 0..10 {
        c.propose(1, &format!("without 3: {i}"));
    }
    c.deliver_all();
    // Within one CheckQuorum round node 3 still counts as having answered.
    match transfer(&mut c, 1, 3) {
        TransferOutcome::Refused(TransferError::NotCaughtUp {
            target: 3,
            lag_entries,
            lag_entries_max: 4,
        }) => assert!(lag_entries >= 10),
        other => panic!("expected NotCaughtUp, got {other:?}"),
    }
    // After a CheckQuorum round without an answer it is unreachable.
    c.tick_all(25);
    assert_refused(&mut c, 1, 3, TransferError::Unreachable { target: 3 });
}

/// A group of the multi-group layer that slept heard from nobody, so
/// after a CheckQuorum round every follower looks silent; one that holds
/// the whole log is still a target (TimeoutNow goes at once). Before, the
/// transfer was refused as "not answered recently", and a balancer could
/// never move the leadership of an idle group.
#[test]
fn a_silent_voter_that_holds_the_whole_log_may_take_the_leadership() {
    let mut c = Cluster::elected(&[1, 2, 3], 1);
    settle(&mut c);
    // A CheckQuorum round without a word from node 3 (its answers are
    // lost; it still hears the leader, as a slept group's follower still
    // follows it), and no entry it lacks.
    c.cut.insert((3, 1));
    c.tick_all(25);
    assert_eq!(c.leader(), Some(1));
    assert_eq!(
        c.node(1).progress(3).map(|p| p.recently_active),
        Some(false)
    );
    c.heal();
    assert_eq!(transfer(&mut c, 1, 3), TransferOutcome::Started);
    c.deliver_all();
    c.tick_all(3);
    assert_eq!(c.leader(), Some(3));
}

#[test]
fn proposals_and_changes_are_refused_while_a_transfer_is_under_way() {
    let mut c = Cluster::elected(&[1, 2, 3], 1);
    settle(&mut c);
    // The target hears nothing from now on: the transfer cannot finish.
    c.partition(&[1, 2], &[3]);
    assert_eq!(transfer(&mut c, 1, 3), TransferOutcome::Started);
    let actions = step_traced(&mut c, 1, Input::Propose("refused".into()));
    assert!(actions.iter().any(|action| matches!(
        action,
        Action::ProposalRefused {
            error: ProposeError::TransferInProgress { target: 3 },
            ..
        }
    )));
    let actions = step_traced(
        &mut c,
        1,
        Input::ChangeMembership(MembershipChange::Remove(2)),
    );
    assert!(actions.iter().any(|action| matches!(
        action,
        Action::ProposalRefused {
            error: ProposeError::TransferInProgress { target: 3 },
            ..
        }
    )));
    assert_refused(&mut c, 1, 2, TransferError::InProgress { target: 3 });
}

#[test]
fn a_transfer_that_does_not_complete_times_out_and_the_leader_serves_again() {
    let mut c = Cluster::configured(&[1, 2, 3], |config| {
        config.transfer_timeout_ticks = Some(6);
        config.check_quorum = false;
    });
    c.elect(1);
    settle(&mut c);
    c.partition(&[1, 2], &[3]);
    assert_eq!(transfer(&mut c, 1, 3), TransferOutcome::Started);
    let mut timed_out = None;
    for tick in 1..=10 {
        let actions = step_traced(&mut c, 1, Input::Tick);
        c.deliver_all();
        if actions.iter().any(|action| {
            matches!(
                action,
                Action::Transfer {
                    target: 3,
                    outcome: TransferOutcome::TimedOut
                }
            )
        }) {
            timed_out = Some(tick);
            break;
        }
    }
    assert_eq!(timed_out, Some(6));
    assert_eq!(c.node(1).role(), Role::Leader);
    assert_eq!(c.node(1).transfer_target(), None);
    c.assert_served(1, "served again", 3, 2);
}
