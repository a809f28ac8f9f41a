//! Commitment (§5.4): the Figure 8 rule (only entries of the leader's own
//! term commit by counting), Leader Completeness, State Machine Safety, a
//! commit index that never goes back, and the leader counting its own log
//! only once it is durable.
mod common;

use std::collections::BTreeMap;

use common::*;
use concord::{Config, Entry, Index, Message, MessageBody, Role, Term};

/// Figure 8 is about basic Raft: no PreVote, no CheckQuorum lease.
fn figure_8_cluster() -> Cluster {
    let ids = [1, 2, 3, 4, 5];
    let configs: Vec<Config> = ids
        .iter()
        .map(|id| {
            let mut c = config(*id, &ids);
            c.pre_vote = false;
            c.check_quorum = false;
            c.append_entries_max = 1;
            c
        })
        .collect();
    let mut c = Cluster::with_configs(configs);
    // After Figure 8 (b): S1 led term 2 and wrote (2, term 2); S5 led term
    // 3 with votes from S3 and S4 and wrote (2, term 3). (Unlike the figure,
    // S2 has not received (2, term 2) yet; S1 will replicate it in term 4.)
    c.load(1, recovered(2, Some(1), &[1, 2]));
    c.load(2, recovered(2, Some(1), &[1]));
    c.load(3, recovered(3, Some(5), &[1]));
    c.load(4, recovered(3, Some(5), &[1]));
    c.load(5, recovered(3, Some(5), &[1, 3]));
    c
}

/// Figure 8 (c): S5 is down and S4 unreachable; S1 is elected in term 4
/// and replicates (2, term 2) to S2 and S3, but its own no-op (3, term 4)
/// reaches nobody.
fn figure_8_c() -> Cluster {
    let mut c = figure_8_cluster();
    c.crash(5);
    c.partition(&[1], &[4]);
    // Entry 3 is lost on the way: appends arrive with it (and anything
    // after it) cut off, as if the leader had sent fewer entries.
    let strip_entry_3 = |mut m: Message| {
        if let MessageBody::AppendEntries { entries, .. } = &mut m.body {
            *entries = entries.iter().filter(|e| e.index < 3).cloned().collect();
        }
        Some(m)
    };
    for _ in 0..200 {
        c.tick(1);
        c.deliver_mapped(strip_entry_3);
        if c.node(1).role() == Role::Leader {
            break;
        }
    }
    assert_eq!((c.node(1).role(), c.node(1).term()), (Role::Leader, 4));
    for _ in 0..10 {
        c.tick(1);
        c.deliver_mapped(strip_entry_3);
    }
    c
}

/// Figure 8 (c)–(d): an entry of an older term stored on a majority is not
/// committed by counting. Had S1 committed (2, term 2), (d) would have
/// destroyed a committed entry: S5 can still win term 5 and overwrite it.
#[test]
fn figure_8_older_term_entry_is_not_committed_by_counting_replicas() {
    let mut c = figure_8_c();
    let leader = c.node(1);
    assert_eq!(leader.progress(2).unwrap().match_index, 2);
    assert_eq!(leader.progress(3).unwrap().match_index, 2);
    assert_eq!(c.node(2).term_at(2), Some(2));
    assert_eq!(c.node(3).term_at(2), Some(2));
    assert_eq!(
        leader.commit_index(),
        0,
        "committed an older-term entry by counting"
    );
    for id in [1, 2, 3] {
        assert!(
            c.applied[&id].is_empty(),
            "node {id} applied {:?}",
            c.applied[&id]
        );
    }

    // (d): S1 crashes, S5 returns and is elected with votes from S2, S3, S4.
    c.crash(1);
    c.restart(5);
    c.heal();
    c.elect(5);
    assert_eq!(c.node(5).term(), 5);
    c.tick_all(5);
    for id in [2, 3, 4, 5] {
        assert_eq!(c.node(id).entry(2).cloned(), Some(entry(2, 3)), "node {id}");
        assert!(c.applied_strings(id).contains(&"2@3".to_string()));
        assert!(!c.applied_strings(id).contains(&"2@2".to_string()));
    }
    c.assert_election_safety();
}

/// Figure 8 (e): once S1 replicates an entry of its own term to a
/// majority, that entry and the older one before it commit together, and
/// S5 can no longer be elected.
#[test]
fn figure_8_older_term_entry_commits_with_one_of_the_current_term() {
    let mut c = figure_8_c();
    for _ in 0..4 {
        c.tick(1);
        c.deliver_all();
    }
    assert_eq!(c.node(1).commit_index(), 3);
    for id in [1, 2, 3] {
        assert_eq!(c.applied_strings(id), vec!["1@1", "2@2"], "node {id}");
    }

    c.crash(1);
    c.restart(5);
    c.heal();
    let mut leader = None;
    for _ in 0..300 {
        c.tick_all(1);
        leader = c.leader();
        if leader.is_some() {
            break;
        }
    }
    let leader = leader.expect("a new leader");
    assert!(
        [2, 3].contains(&leader),
        "leader {leader} lacks committed entry 3"
    );
    assert!(
        !c.leaders.values().any(|ids| ids.contains(&5)),
        "S5 was elected without the committed entries"
    );
    c.tick_all(5);
    for id in [2, 3, 4, 5] {
        assert_eq!(c.node(id).entry(2).cloned(), Some(entry(2, 2)), "node {id}");
        assert_eq!(&c.applied_strings(id)[..2], &["1@1", "2@2"], "node {id}");
    }
}

/// Runs seeded chaos on 3- and 5-node clusters, calling `check` after each
/// step with the cluster and the ids restarted in that step.
fn chaos_runs(seeds: u64, steps: usize, mut check: impl FnMut(u64, &Cluster, Option<u64>)) {
    for seed in 0..seeds {
        let voters = voters_of_seed(seed);
        let mut chaos = Chaos::new(seed, voters, |config| {
            config.append_entries_max = 2;
            config.inflight_messages_max = 3;
            config.pre_vote = seed % 3 != 0;
            config.check_quorum = seed % 3 != 0;
        });
        check(seed, &chaos.cluster, None);
        for _ in 0..steps {
            let restarted = chaos.step();
            check(seed, &chaos.cluster, restarted);
        }
        chaos.heal_and_settle();
        check(seed, &chaos.cluster, None);
    }
}

/// Leader Completeness (Figure 3): an entry committed in a term is present
/// in the log of every leader of every later term.
#[test]
fn leader_completeness_new_leaders_hold_every_committed_entry() {
    // index -> (entry, the lowest term in which some node knew it committed)
    let mut committed: BTreeMap<Index, (Entry, Term)> = BTreeMap::new();
    let mut last_seed = u64::MAX;
    let mut checked = 0usize;
    chaos_runs(16, 1200, |seed, c, _| {
        if seed != last_seed {
            committed.clear();
            last_seed = seed;
        }
        for node in c.nodes.values() {
            for index in node.first_index()..=node.commit_index() {
                let entry = node
                    .entry(index)
                    .expect("committed entry in memory")
                    .clone();
                let known = committed
                    .entry(index)
                    .or_insert((entry.clone(), node.term()));
                assert_eq!(
                    known.0, entry,
                    "seed {seed}: two entries committed at {index}"
                );
                known.1 = known.1.min(node.term());
            }
        }
        for node in c.nodes.values().filter(|n| n.role() == Role::Leader) {
            for (index, (entry, term)) in &committed {
                if *term < node.term() {
                    checked += 1;
                    assert_eq!(
                        node.entry(*index),
                        Some(entry),
                        "seed {seed}: leader {} of term {} lacks entry {index} committed in term {term}",
                        node.id(),
                        node.term()
                    );
                }
            }
        }
    });
    assert!(
        checked > 1000,
        "only {checked} checks: the runs do not commit across terms"
    );
}

/// State Machine Safety (Figure 3): no two servers apply different commands
/// at the same index; each applies in log order; after healing, all
/// applied the same sequence.
#[test]
fn state_machine_safety_all_nodes_apply_the_same_commands_in_order() {
    let mut by_index: BTreeMap<(u64, Index), bytes::Bytes> = BTreeMap::new();
    let mut applied_total = 0;
    chaos_runs(16, 1200, |seed, c, _| {
        for (id, applied) in &c.applied {
            assert!(
                applied.windows(2).all(|w| w[0].0 < w[1].0),
                "seed {seed}: node {id} applied out of order"
            );
            for (index, command) in applied {
                let known = by_index
                    .entry((seed, *index))
                    .or_insert_with(|| command.clone());
                assert_eq!(
                    known, command,
                    "seed {seed}: node {id} applied another command at {index}"
                );
            }
        }
    });
    // A separate, final comparison of whole sequences after healing.
    for seed in 0..6 {
        let mut chaos = Chaos::new(seed, &[1, 2, 3, 4, 5], |_| {});
        for _ in 0..1500 {
            chaos.step();
        }
        let leader = chaos.heal_and_settle();
        let reference = chaos.cluster.applied_strings(leader);
        applied_total += reference.len();
        for id in chaos.cluster.ids() {
            assert_eq!(
                chaos.cluster.applied_strings(id),
                reference,
                "seed {seed}: node {id}"
            );
        }
    }
    assert!(
        applied_total > 30,
        "too few commands applied ({applied_total})"
    );
}

/// The commit index never decreases on a running node (a restarted node
/// starts again from what it had applied), and never passes its log.
#[test]
fn commit_index_never_decreases() {
    let mut last: BTreeMap<(u64, u64), Index> = BTreeMap::new();
    let mut advanced = 0usize;
    chaos_runs(16, 1200, |seed, c, restarted| {
        if let Some(id) = restarted {
            last.remove(&(seed, id));
        }
        for (id, node) in &c.nodes {
            let commit = node.commit_index();
            assert!(commit <= node.last_index());
            let previous = last.insert((seed, *id), commit).unwrap_or(0);
            assert!(
                commit >= previous,
                "seed {seed}: node {id} commit went back from {previous} to {commit}"
            );
            if commit > previous {
                advanced += 1;
            }
        }
    });
    assert!(advanced > 100);
}

/// Durability contract, single node: the leader is the whole majority, so
/// nothing commits before its own write is durable.
#[test]
fn single_node_commits_only_after_persisting() {
    let mut c = Cluster::elected(&[1], 1);
    assert_eq!(c.node(1).commit_index(), 1);
    c.auto_sync.remove(&1);
    c.propose(1, "x");
    c.tick(1);
    assert_eq!(
        c.node(1).commit_index(),
        1,
        "committed an unpersisted entry"
    );
    assert!(c.applied[&1].is_empty());
    c.sync(1);
    assert_eq!(c.node(1).commit_index(), 2);
    assert_eq!(c.applied_strings(1), vec!["x"]);
}

/// Durability contract, 3 nodes: with the leader's disk and one follower's
/// unsynced, only one durable copy exists and nothing commits. When both
/// followers have synced, the entry commits although the leader's own copy
/// is still unsynced (§10.2.1: the leader may write in parallel), but the
/// leader applies it only once it holds it durably itself.
#[test]
fn leader_counts_itself_toward_commit_only_once_persisted() {
    let mut c = Cluster::elected(&[1, 2, 3], 1);
    c.tick_all(1);
    assert_eq!(c.node(1).commit_index(), 1);
    c.auto_sync.remove(&1);
    c.auto_sync.remove(&3);
    c.propose(1, "x");
    c.deliver_all();
    assert_eq!(
        c.node(1).progress(2).unwrap().match_index,
        2,
        "node 2 acked"
    );
    assert_eq!(
        c.node(1).progress(3).unwrap().match_index,
        1,
        "node 3 cannot ack yet"
    );
    assert_eq!(
        c.node(1).commit_index(),
        1,
        "counted the leader's unsynced copy"
    );

    c.sync(3);
    c.deliver_all();
    assert_eq!(c.node(1).commit_index(), 2);
    assert_eq!(c.node(1).persisted_index(), 1);
    assert!(
        c.applied[&1].is_empty(),
        "the leader applied an entry it may lose"
    );
    c.sync(1);
    assert_eq!(c.applied_strings(1), vec!["x"]);
    c.tick_all(3);
    c.sync(3);
    c.tick_all(1);
    for id in [2, 3] {
        assert_eq!(c.applied_strings(id), vec!["x"], "node {id}");
    }
}
