//! Candidate catch-up: a node that can never lead (a witness, a learner)
//! and refuses a candidate for a log behind its own hands the candidate
//! its newer entries, which the candidate takes only where they leave its
//! log more up to date. Without it a cluster whose newest entries live
//! only on such nodes elects nobody, ever (seeds 1821808821 and 358816310
//! of `concord-sim run --nodes 5`).
mod common;

use common::*;
use concord::{Action, Config, Entries, LogPosition, MessageBody, NodeId, Role};

fn configured(id: NodeId, witnesses: &[NodeId]) -> Config {
    let mut config = config(id, &[1, 2, 3]);
    config.pre_vote = false;
    config.witnesses = witnesses.iter().copied().collect();
    config
}

fn catch_ups(actions: &[Action]) -> Vec<(NodeId, LogPosition, Entries)> {
    sent(actions)
        .into_iter()
        .filter_map(|m| match m.body {
            MessageBody::CandidateCatchUp { prev, entries } => Some((m.to, prev, entries)),
            _ => None,
        })
        .collect()
}

fn terms(solo: &Solo) -> Vec<u64> {
    (1..=solo.node.last_index())
        .map(|i| solo.node.term_at(i).expect("in memory"))
        .collect()
}

fn catch_up(prev: (u64, u64), entries: Vec<concord::Entry>) -> MessageBody {
    MessageBody::CandidateCatchUp {
        prev: LogPosition::new(prev.0, prev.1),
        entries: entries.into(),
    }
}

#[test]
fn a_witness_refusing_a_candidate_behind_it_sends_its_newer_entries() {
    let mut witness = Solo::new(configured(3, &[3]), recovered(2, None, &[1, 1, 2]));
    let actions = witness.receive(msg(1, 3, 3, vote_request((2, 1))));
    assert_eq!(vote_answers(&actions), vec![(1, 3, false)]);
    let sent = catch_ups(&actions);
    assert_eq!(sent.len(), 1, "one catch-up: {actions:?}");
    let (to, prev, entries) = &sent[0];
    assert_eq!(*to, 1);
    // Its commit index (0 after a restart) is below the candidate's last
    // entry: it sends from there.
    assert_eq!(*prev, LogPosition::new(0, 0));
    let terms: Vec<u64> = entries.iter().map(|e| e.term).collect();
    assert_eq!(terms, vec![1, 1, 2]);
}

#[test]
fn a_voter_able_to_lead_refusing_a_candidate_sends_nothing_more() {
    let mut voter = Solo::new(configured(3, &[]), recovered(2, None, &[1, 1, 2]));
    let actions = voter.receive(msg(1, 3, 3, vote_request((2, 1))));
    assert_eq!(vote_answers(&actions), vec![(1, 3, false)]);
    assert!(catch_ups(&actions).is_empty(), "{actions:?}");
}

#[test]
fn a_witness_granting_a_vote_sends_no_catch_up() {
    let mut witness = Solo::new(configured(3, &[3]), recovered(2, None, &[1, 1, 2]));
    let actions = witness.receive(msg(1, 3, 3, vote_request((3, 2))));
    assert!(catch_ups(&actions).is_empty(), "{actions:?}");
}

/// Node 1 campaigns in term 3 with a log ending (3, 1); the witness holds
/// (3, 2), written by the leader of term 2 and lost everywhere else.
fn candidate() -> Solo {
    let mut node = Solo::new(configured(1, &[3]), recovered(2, None, &[1, 1, 1]));
    node.ticks(100);
    assert_eq!(node.node.role(), Role::Candidate);
    node
}

#[test]
fn a_candidate_takes_entries_that_leave_its_log_more_up_to_date() {
    let mut node = candidate();
    let term = node.node.term();
    node.receive(msg(3, 1, term, catch_up((2, 1), vec![entry(3, 2)])));
    assert_eq!(terms(&node), vec![1, 1, 2]);
    assert_eq!(node.node.term(), term, "a catch-up moves no term");
    // Its votes judged the old log: the next election asks with the new.
    assert_eq!(node.node.role(), Role::Follower);
    assert_eq!(node.node.leader(), None);
    assert_eq!(node.node.stats().candidate_catch_ups_taken, 1);
}

/// Catch-ups a candidate refuses: each case sends two, as (previous
/// position, entry), and the candidate's log stays as it was.
#[test]
fn a_candidate_refuses_entries_that_do_not_leave_its_log_more_up_to_date() {
    let cases = [
        (
            "not newer than its log: the same last entry, and an older one",
            [((2, 1), entry(3, 1)), ((1, 1), entry(2, 1))],
        ),
        (
            "after a position its log does not hold",
            [((2, 2), entry(3, 2)), ((5, 1), entry(6, 2))],
        ),
    ];
    for (case, sent) in cases {
        let mut node = candidate();
        let term = node.node.term();
        for (prev, entry) in sent {
            node.receive(msg(3, 1, term, catch_up(prev, vec![entry])));
        }
        assert_eq!(terms(&node), vec![1, 1, 1], "{case}");
        assert_eq!(node.node.stats().candidate_catch_ups_taken, 0, "{case}");
    }
}

#[test]
fn a_candidate_refuses_entries_of_a_term_past_its_own() {
    let mut node = candidate();
    let term = node.node.term();
    let past = term + 1;
    node.receive(msg(3, 1, past, catch_up((2, 1), vec![entry(3, past)])));
    assert_eq!(terms(&node), vec![1, 1, 1]);
    assert_eq!(node.node.term(), term);
}

#[test]
fn a_follower_ignores_catch_ups() {
    let mut node = Solo::new(configured(1, &[3]), recovered(2, None, &[1, 1, 1]));
    assert_eq!(node.node.role(), Role::Follower);
    node.receive(msg(3, 1, 2, catch_up((2, 1), vec![entry(3, 2)])));
    assert_eq!(terms(&node), vec![1, 1, 1]);
}

/// The whole story on a cluster: voter 2 is down, the newest entry lives
/// on the witness only, so voter 1 needs the vote of a witness whose log
/// is ahead of its own; without the catch-up no one is ever elected.
#[test]
fn a_cluster_whose_newest_entry_lives_only_on_a_witness_elects_a_voter() {
    let configs = vec![
        configured(1, &[3]),
        configured(2, &[3]),
        configured(3, &[3]),
    ];
    let mut c = Cluster::with_configs(configs);
    c.load(1, recovered(2, None, &[1, 1]));
    c.load(2, recovered(2, None, &[1]));
    c.load(3, recovered(2, None, &[1, 1, 2]));
    c.crash(2);
    c.tick_all(300);
    assert_eq!(c.leader(), Some(1));
    assert_eq!(
        c.node(1).term_at(3),
        Some(2),
        "the witness's entry survives"
    );
    assert!(c.node(1).stats().candidate_catch_ups_taken >= 1);
    c.assert_election_safety();
}
