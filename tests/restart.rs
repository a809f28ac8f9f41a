//! Restart from recovered state: what was durable comes back, what was not
//! is lost and was never promised, and committed commands survive even a
//! whole-cluster restart.
mod common;

use common::*;
use concord::{Action, AppendResponse, MessageBody, Recovered, Role};

/// A restarted node comes back with the term, vote and log it had made
/// durable, as a follower that knows no leader; it then re-applies its
/// committed log from the start (its state machine restarted empty).
#[test]
fn restart_from_recovered_state_keeps_log_and_term() {
    let mut c = Cluster::elected(&[1, 2, 3], 1);
    c.propose_numbered(1, "c", 5);
    c.tick_all(3);
    let before = (c.node(2).hard_state(), c.log(2));
    assert_eq!(before.1.len(), 6);
    c.crash(2);
    c.restart(2);
    let n = c.node(2);
    assert_eq!((n.hard_state(), c.log(2)), before);
    assert_eq!(
        (n.role(), n.leader(), n.commit_index()),
        (Role::Follower, None, 0)
    );
    c.tick_all(3);
    let expected: Vec<String> = (0..5).map(|i| format!("c{i}")).collect();
    assert_eq!(c.applied_strings(2), expected);
    assert_eq!(c.node(2).commit_index(), 6);
}

/// A host that recovered its state machine up to `applied_index` is not
/// handed those entries again.
#[test]
fn restart_with_applied_index_does_not_reapply() {
    let mut n = Solo::new(
        config(1, &[1, 2, 3]),
        Recovered {
            applied_index: 2,
            ..recovered(1, None, &[1, 1, 1, 1])
        },
    );
    assert_eq!(n.node.commit_index(), 2);
    n.receive(msg(2, 1, 1, append((4, 1), vec![], 4)));
    n.sync();
    let applied: Vec<u64> = n
        .history
        .iter()
        .filter_map(|a| match a {
            Action::Apply { entries } => Some(entries.iter().map(|e| e.index)),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(applied, vec![3, 4]);
}

/// Writes a crash catches before their sync are lost — and since the
/// followers never acknowledged them and the leader never counted them,
/// nothing committed is lost with them.
#[test]
fn unsynced_writes_are_lost_in_a_crash_and_were_never_acknowledged() {
    let mut c = Cluster::elected(&[1, 2, 3], 1);
    c.propose(1, "kept");
    c.tick_all(3);
    let kept_index = c.node(1).last_index();
    assert_eq!(c.node(1).commit_index(), kept_index);

    c.auto_sync.remove(&2);
    c.auto_sync.remove(&3);
    c.record_trace = true;
    c.propose(1, "lost");
    c.deliver_all();
    for id in [2, 3] {
        assert_eq!(
            c.node(id).last_index(),
            kept_index + 1,
            "node {id} holds it in memory"
        );
        let acks = c
            .traced_sends(id)
            .into_iter()
            .filter_map(|m| match m.body {
                MessageBody::AppendEntriesResponse(AppendResponse::Accepted { match_index }) => {
                    Some(match_index)
                }
                _ => None,
            })
            .collect::<Vec<_>>();
        assert!(
            acks.iter().all(|m| *m <= kept_index),
            "node {id} acknowledged unsynced entries: {acks:?}"
        );
    }
    assert_eq!(
        c.node(1).commit_index(),
        kept_index,
        "committed without durable copies"
    );

    for id in [2, 3] {
        c.crash(id);
        c.restart(id);
        assert_eq!(
            c.node(id).last_index(),
            kept_index,
            "node {id} kept an unsynced write"
        );
        c.auto_sync.insert(id);
    }
    c.tick_all(10);
    // Nothing committed was lost; the leader still holds "lost" and, with
    // durable followers now, commits it after all.
    for id in [1, 2, 3] {
        assert_eq!(c.applied_strings(id), vec!["kept", "lost"], "node {id}");
    }
}

/// Every node crashes at once, some with writes still unsynced: every
/// command that was committed before the crash is applied by every node
/// after the restart, in the same order, and the cluster serves again.
#[test]
fn whole_cluster_restart_preserves_every_committed_command() {
    for seed in 0..4u64 {
        let mut c = Cluster::new(&[1, 2, 3, 4, 5]);
        for config in c.configs.values_mut() {
            config.seed += seed * 10;
        }
        c.elect(1 + seed % 5);
        let leader = c.leader().unwrap();
        for i in 0..10 {
            c.propose(leader, &format!("c{i}"));
            if i == 6 {
                // Two nodes stop syncing: their later writes will be lost.
                let lagging: Vec<u64> = c
                    .ids()
                    .into_iter()
                    .filter(|id| *id != leader)
                    .take(2)
                    .collect();
                for id in lagging {
                    c.auto_sync.remove(&id);
                }
            }
            c.deliver_all();
        }
        c.tick_all(2);
        let committed = c.applied_strings(leader);
        assert_eq!(
            committed.len(),
            10,
            "seed {seed}: all ten committed on three syncing nodes"
        );

        for id in c.ids() {
            c.crash(id);
        }
        for id in c.configs.keys().copied().collect::<Vec<_>>() {
            c.restart(id);
            c.auto_sync.insert(id);
        }
        let leader = c.settle();
        c.propose(leader, "after");
        c.tick_all(3);
        let mut expected = committed.clone();
        expected.push("after".to_string());
        for id in c.ids() {
            assert_eq!(c.applied_strings(id), expected, "seed {seed}: node {id}");
        }
        c.assert_election_safety();
    }
}

/// A follower that comes back with less than it acknowledged as durable (its
/// disk lost synced data: a broken durability contract) is reported by the
/// leader with `FollowerLogRegressed`, once, and is not left behind: the
/// leader forgets the follower's match index and replicates the lost
/// entries again.
#[test]
fn follower_that_lost_acknowledged_entries_is_reported_and_repaired() {
    let mut c = Cluster::elected(&[1, 2, 3], 1);
    c.propose_numbered(1, "c", 6);
    c.tick_all(3);
    let acknowledged = c.node(1).progress(2).expect("progress").match_index;
    assert_eq!(acknowledged, 7);
    c.crash(2);
    // The follower's disk loses its last three synced entries.
    c.disks.get_mut(&2).expect("disk").entries.truncate(4);
    c.restart(2);
    c.record_trace = true;
    c.trace.clear();
    c.propose(1, "after");
    c.tick_all(40);
    let reports: Vec<(u64, u64, u64)> = c
        .trace
        .iter()
        .filter_map(|(at, action)| match action {
            Action::FollowerLogRegressed {
                follower,
                acknowledged_index,
                reported_last_index,
            } => {
                assert_eq!(*at, 1, "only the leader reports a regression");
                Some((*follower, *acknowledged_index, *reported_last_index))
            }
            _ => None,
        })
        .collect();
    assert_eq!(reports, vec![(2, 7, 4)]);
    assert_eq!(c.node(1).stats().follower_log_regressions, 1);
    assert_eq!(c.node(1).progress(2).expect("progress").log_regressions, 1);
    assert_eq!(c.log(2), c.log(1), "the lost entries are replicated again");
    assert_eq!(c.node(1).progress(2).expect("progress").match_index, 8);
}

/// A stale rejection of the match index (a reordered answer from before
/// the acknowledgement), even delivered many times over, is not taken for
/// lost data.
#[test]
fn duplicated_stale_rejections_at_the_match_index_are_not_a_regression() {
    let mut c = Cluster::elected(&[1, 2, 3], 1);
    c.propose(1, "a");
    c.tick_all(3);
    let matched = c.node(1).progress(2).expect("progress").match_index;
    let term = c.node(1).term();
    // Push the leader's view of 2 back to probing right behind its match
    // index, then hand it a stale rejection of that index.
    c.step(
        1,
        concord::Input::Receive(msg(
            2,
            1,
            term,
            MessageBody::AppendEntriesResponse(AppendResponse::Rejected {
                rejected_index: matched + 1,
                hint_index: matched,
                hint_term: term,
            }),
        )),
    );
    for _ in 0..5 {
        c.step(
            1,
            concord::Input::Receive(msg(
                2,
                1,
                term,
                MessageBody::AppendEntriesResponse(AppendResponse::Rejected {
                    rejected_index: matched,
                    hint_index: matched - 1,
                    hint_term: term,
                }),
            )),
        );
    }
    c.tick_all(20);
    assert_eq!(c.node(1).stats().follower_log_regressions, 0);
    assert_eq!(
        c.node(1).progress(2).expect("progress").state,
        concord::ProgressState::Replicate
    );
    assert_eq!(
        c.node(1).progress(2).expect("progress").match_index,
        matched
    );
    assert_eq!(c.log(2), c.log(1));
}
