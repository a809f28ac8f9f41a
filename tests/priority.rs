//! Priority election: when the highest-priority node (ties broken by the
//! highest id) is healthy and caught up, the leader hands leadership to it
//! through an ordinary, early election — never at the cost of safety.
mod common;

use std::collections::BTreeMap;

use common::*;
use concord::Role;

fn cluster(priorities: &[(u64, u32)]) -> Cluster {
    let priorities: BTreeMap<u64, u32> = priorities.iter().copied().collect();
    let configs = [1, 2, 3]
        .iter()
        .map(|id| {
            let mut c = config(*id, &[1, 2, 3]);
            c.priorities = priorities.clone();
            c
        })
        .collect();
    Cluster::with_configs(configs)
}

/// Node 3 has the highest priority: after node 1 wins the first election,
/// leadership moves to node 3, in a later term, and node 3 serves
/// proposals. (Priorities 1 < 2 < 3 must do the same.)
#[test]
fn preferred_node_takes_over_after_another_is_elected_first() {
    for priorities in [vec![(3, 10)], vec![(1, 1), (2, 2), (3, 3)]] {
        takes_over(&priorities);
    }
}

/// Among equal priorities the highest id is preferred (the tie-break the
/// core's `preferred_leader` documents, and the directory service's "highest
/// id leads when healthy").
#[test]
fn highest_id_is_preferred_among_equal_priorities() {
    takes_over(&[(1, 5), (2, 5), (3, 5)]);
}

fn takes_over(priorities: &[(u64, u32)]) {
    {
        let mut c = cluster(priorities);
        c.elect(1);
        let first_term = c.node(1).term();
        c.propose(1, "before");
        c.tick_all(40);
        assert_eq!(c.leader(), Some(3), "priorities {priorities:?}");
        assert!(c.node(3).term() > first_term);
        for id in [1, 2] {
            assert_eq!(c.node(id).role(), Role::Follower);
            assert_eq!(c.node(id).leader(), Some(3));
        }
        assert!(c.node(1).stats().transfers_started >= 1);
        c.propose(3, "after");
        c.tick_all(3);
        for id in [1, 2, 3] {
            assert_eq!(c.applied_strings(id), vec!["before", "after"], "node {id}");
        }
        c.assert_election_safety();
    }
}

/// While the preferred node is down, another node leads and proposals
/// commit. When it returns, it first catches up, then takes over, holding
/// every committed command.
#[test]
fn preferred_node_down_then_back_catches_up_and_takes_over() {
    let mut c = cluster(&[(3, 10)]);
    c.crash(3);
    c.tick_all(60);
    let leader = c.leader().expect("a leader without node 3");
    assert_ne!(leader, 3);
    for i in 0..5 {
        c.propose(leader, &format!("c{i}"));
    }
    c.tick_all(5);
    for id in [1, 2] {
        assert_eq!(c.applied_strings(id).len(), 5, "node {id}");
    }
    c.tick_all(60);
    assert_eq!(
        c.leader(),
        Some(leader),
        "leadership moved while node 3 was down"
    );

    c.restart(3);
    c.tick_all(60);
    assert_eq!(c.leader(), Some(3));
    let expected: Vec<String> = (0..5).map(|i| format!("c{i}")).collect();
    assert_eq!(c.applied_strings(3), expected);
    c.propose(3, "on 3");
    c.tick_all(3);
    for id in [1, 2, 3] {
        assert_eq!(
            c.applied_strings(id).last().map(String::as_str),
            Some("on 3")
        );
    }
    c.assert_election_safety();
}

/// Leadership transfer is an election like any other: over seeded runs
/// with faults and a preferred node, no term ever has two leaders, and
/// transfers do happen.
#[test]
fn leadership_transfer_never_produces_two_leaders_in_a_term() {
    let mut transfers = 0;
    for seed in 0..20 {
        let voters = voters_of_seed(seed);
        let preferred = *voters.last().unwrap() - (seed % 2);
        let mut chaos = Chaos::new(seed, voters, |c| {
            c.priorities.insert(preferred, 10);
        });
        for _ in 0..1500 {
            chaos.step();
            chaos.cluster.assert_election_safety();
        }
        let leader = chaos.heal_and_settle();
        for node in chaos.cluster.nodes.values() {
            transfers += node.stats().transfers_started;
        }
        chaos.cluster.tick_all(60);
        chaos.cluster.assert_election_safety();
        assert_eq!(
            chaos.cluster.leader(),
            Some(preferred),
            "seed {seed}: healthy cluster led by {:?} (was {leader})",
            chaos.cluster.leader()
        );
    }
    // The count moves with the schedules: 14 over these 20 seeds before
    // commit notices were held back for followers with appends in flight
    // (fewer messages, other schedules), 9 after; over 100 seeds 28 and 24.
    assert!(transfers >= 5, "only {transfers} transfers");
}
