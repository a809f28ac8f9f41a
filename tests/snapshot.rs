//! Snapshots and log compaction: the policy, the trailing window, chunked
//! and resumable transfers to far-behind followers, installation only once
//! durable, and recovery from a snapshot plus the log's tail.
mod common;

use bytes::Bytes;
use common::{msg, Chaos, Cluster, Solo};
use concord::{
    checksum64, Action, Config, Input, LogPosition, Membership, Message, MessageBody, NodeId, Role,
    Snapshot, SnapshotChunk, Term,
};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};

/// Compaction every `threshold` applied entries, `trailing` entries kept,
/// chunks of `chunk` bytes.
fn compacting(threshold: u64, trailing: u64, chunk: usize) -> impl Fn(&mut Config) {
    move |config: &mut Config| {
        config.compaction_threshold_entries = Some(threshold);
        config.compaction_trailing_entries = trailing;
        config.snapshot_chunk_bytes_max = chunk;
    }
}

fn propose_many(c: &mut Cluster, leader: NodeId, from: usize, count: usize) {
    for i in from..from + count {
        c.propose(leader, &format!("command-{i:04}"));
        c.deliver_all();
    }
}

fn is_chunk_to(message: &Message, to: NodeId) -> bool {
    message.to == to && matches!(message.body, MessageBody::InstallSnapshot { .. })
}

/// Ticks everyone until every node applied what the leader applied
/// (bounded).
fn catch_up(c: &mut Cluster) {
    for _ in 0..400 {
        c.tick_all(1);
        let leader = c.leader().expect("a leader");
        let want = c.applied_strings(leader);
        if c.ids().iter().all(|id| c.applied_strings(*id) == want) {
            return;
        }
    }
    panic!("the cluster did not catch up");
}

fn assert_identical_state(c: &Cluster) {
    let leader = c.leader().expect("a leader");
    let want = c.applied_strings(leader);
    assert!(!want.is_empty());
    for id in c.ids() {
        assert_eq!(c.applied_strings(id), want, "node {id} state differs");
    }
}

/// A snapshot ending at `position` sent whole, in one chunk, from a
/// leader of the configuration {1, 2, 3}.
fn whole_snapshot(position: LogPosition, data: Bytes) -> MessageBody {
    MessageBody::InstallSnapshot(Box::new(SnapshotChunk {
        snapshot: position,
        size_bytes: data.len() as u64,
        checksum: checksum64(&data),
        offset: 0,
        data,
        membership: Membership::new([1, 2, 3]),
    }))
}

#[test]
fn compaction_happens_at_the_entry_threshold_and_keeps_the_trailing_window() {
    let mut c = Cluster::configured(&[1, 2, 3], compacting(10, 3, 64));
    c.elect(1);
    propose_many(&mut c, 1, 0, 8);
    // Noop + 8 commands: 9 applied, below the threshold.
    assert_eq!(c.node(1).latest_snapshot_index(), 0);
    assert_eq!(c.node(1).log_base(), LogPosition::ZERO);
    propose_many(&mut c, 1, 8, 1);
    c.tick_all(1);
    for id in [1, 2, 3] {
        let node = c.node(id);
        assert_eq!(node.latest_snapshot_index(), 10, "node {id}");
        // The base trails the snapshot by the window.
        assert_eq!(node.log_base().index, 7, "node {id}");
        assert_eq!(node.first_index(), 8);
        assert!(node.entry(8).is_some() && node.entry(7).is_none());
        assert_eq!(node.stats().snapshots_taken, 1);
    }
    propose_many(&mut c, 1, 9, 25);
    c.tick_all(1);
    for id in [1, 2, 3] {
        let node = c.node(id);
        assert_eq!(node.stats().snapshots_taken, 3, "node {id}");
        assert_eq!(node.latest_snapshot_index(), 30);
        assert_eq!(node.log_base().index, 27);
        assert!(
            node.log_len() <= 10 + 3,
            "node {id} holds {}",
            node.log_len()
        );
        assert_eq!(node.snapshot_position().unwrap().index, 30);
    }
    assert_identical_state(&c);
}

#[test]
fn compaction_happens_at_the_bytes_threshold() {
    let mut c = Cluster::configured(&[1], |config| {
        config.compaction_threshold_bytes = Some(220);
        config.compaction_trailing_entries = 0;
    });
    c.elect(1);
    // The noop counts 24 bytes, each command 12 + 24 = 36: the sixth
    // command crosses 220.
    propose_many(&mut c, 1, 0, 5);
    assert_eq!(c.node(1).latest_snapshot_index(), 0);
    propose_many(&mut c, 1, 5, 1);
    assert_eq!(c.node(1).latest_snapshot_index(), 7);
    assert_eq!(c.node(1).log_len(), 0);
}

#[test]
fn compaction_is_off_by_default_and_on_request() {
    let mut c = Cluster::elected(&[1], 1);
    propose_many(&mut c, 1, 0, 50);
    assert_eq!(c.node(1).latest_snapshot_index(), 0);
    assert_eq!(c.node(1).log_len(), 51);
    c.record_trace = true;
    c.step(1, Input::RequestSnapshot);
    assert!(c
        .trace
        .iter()
        .any(|(_, action)| matches!(action, Action::TakeSnapshot)));
    assert_eq!(c.node(1).latest_snapshot_index(), 51);
    // The default window keeps up to 1024 entries in memory.
    assert_eq!(c.node(1).log_base(), LogPosition::ZERO);
    // Nothing applied since: a second request asks nothing.
    c.trace.clear();
    c.step(1, Input::RequestSnapshot);
    assert!(c.trace.is_empty());
}

#[test]
fn compaction_waits_until_the_snapshot_is_durable() {
    let mut c = Cluster::configured(&[1], compacting(5, 0, 64));
    c.elect(1);
    c.auto_sync.clear();
    for i in 0..4 {
        c.propose(1, &format!("c{i}"));
        c.sync(1);
    }
    // Applied 5 (noop + 4): asked, but the snapshot is not synced yet.
    assert!(c.disks[&1].unsynced_own_snapshot.is_some());
    assert_eq!(c.node(1).log_base(), LogPosition::ZERO);
    assert_eq!(c.node(1).log_len(), 5);
    c.sync(1);
    assert_eq!(c.node(1).log_base().index, 5);
    assert_eq!(c.node(1).log_len(), 0);
}

#[test]
fn compaction_never_passes_the_applied_index() {
    // Applies reported late: snapshots are only of what was reported.
    let mut c = Cluster::configured(&[1, 2, 3], compacting(3, 0, 64));
    c.elect(1);
    for i in 0..40 {
        c.propose(1, &format!("c{i}"));
        c.deliver_all();
        for id in [1, 2, 3] {
            let node = c.node(id);
            assert!(node.log_base().index <= node.applied_index(), "node {id}");
            assert!(node.latest_snapshot_index() <= node.applied_index());
            assert!(node.log_base().index <= node.persisted_index());
        }
    }
}

#[test]
#[should_panic(expected = "past the applied index")]
fn a_host_reporting_a_snapshot_past_the_applied_index_is_a_broken_host() {
    let mut c = Cluster::elected(&[1], 1);
    propose_many(&mut c, 1, 0, 3);
    let applied = c.node(1).applied_index();
    let snapshot = Snapshot::new(LogPosition::new(applied + 1, 1), Bytes::new());
    let input = c.snapshotted(1, snapshot);
    c.step(1, input);
}

/// A three-node cluster in which node 3 missed `count` commands while the
/// others compacted past them.
fn far_behind(count: usize, chunk: usize) -> Cluster {
    let mut c = Cluster::configured(&[1, 2, 3], compacting(5, 2, chunk));
    c.elect(1);
    propose_many(&mut c, 1, 0, 3);
    c.isolate(3);
    propose_many(&mut c, 1, 3, count);
    let leader = c.node(1);
    assert!(
        leader.log_base().index > c.node(3).last_index(),
        "the leader compacted past node 3's log"
    );
    c.heal();
    c.record_trace = true;
    c
}

#[test]
fn far_behind_follower_is_caught_up_by_a_chunked_snapshot() {
    let mut c = far_behind(30, 32);
    catch_up(&mut c);
    let chunks = c
        .traced_sends(1)
        .iter()
        .filter(|m| is_chunk_to(m, 3))
        .count();
    let snapshot_bytes = c.node(1).snapshot_position().map(|_| ()).is_some();
    assert!(snapshot_bytes);
    assert!(chunks >= 5, "only {chunks} chunks");
    assert_eq!(c.node(3).stats().snapshots_installed, 1);
    assert_eq!(c.node(3).stats().snapshot_checksum_mismatches, 0);
    assert!(c.node(1).stats().snapshot_transfers_started >= 1);
    // Every chunk respected the limit.
    for message in c.traced_sends(1) {
        if let MessageBody::InstallSnapshot(chunk) = &message.body {
            assert!(chunk.data.len() <= 32);
        }
    }
    // Back to ordinary replication afterwards.
    propose_many(&mut c, 1, 100, 3);
    c.tick_all(2);
    assert_identical_state(&c);
    let progress = c.node(1).progress(3).unwrap();
    assert_eq!(progress.state, concord::ProgressState::Replicate);
    assert_eq!(progress.match_index, c.node(1).last_index());
}

#[test]
fn lost_duplicated_and_reordered_chunks_still_install_the_same_state() {
    for seed in 0..20u64 {
        let mut c = far_behind(30, 24);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        for _ in 0..400 {
            for id in c.ids() {
                c.tick(id);
            }
            // Deliver in a shuffled order, losing and duplicating some.
            let mut messages = c.take_messages();
            for _ in 0..messages.len() {
                let i = rng.gen_range(0..messages.len());
                let j = rng.gen_range(0..messages.len());
                messages.swap(i, j);
            }
            for message in messages {
                let chunk = matches!(
                    message.body,
                    MessageBody::InstallSnapshot { .. }
                        | MessageBody::InstallSnapshotResponse { .. }
                );
                if chunk && rng.gen_bool(0.2) {
                    continue;
                }
                if chunk && rng.gen_bool(0.2) {
                    c.network.push_back(message.clone());
                }
                c.network.push_back(message);
            }
            c.deliver_all();
            let want = c.applied_strings(1);
            if c.applied_strings(3) == want {
                break;
            }
        }
        assert_eq!(c.applied_strings(3), c.applied_strings(1), "seed {seed}");
        assert!(c.node(3).stats().snapshots_installed >= 1, "seed {seed}");
        assert_eq!(c.node(3).stats().snapshot_checksum_mismatches, 0);
    }
}

#[test]
fn a_chunk_that_skips_ahead_is_answered_with_a_rewind() {
    let mut c = far_behind(30, 16);
    // Let node 3 hear one chunk only, then lose the next two.
    let mut seen = 0;
    c.tick_all(0);
    for _ in 0..3 {
        c.tick(1);
        c.deliver_mapped(|message| {
            if is_chunk_to(&message, 3) {
                seen += 1;
                if (2..=3).contains(&seen) {
                    return None;
                }
            }
            Some(message)
        });
    }
    let rewinds = c
        .traced_sends(3)
        .iter()
        .filter(|m| {
            matches!(
                m.body,
                MessageBody::InstallSnapshotResponse { rewind: true, .. }
            )
        })
        .count();
    assert!(rewinds >= 1);
    assert!(c.node(3).stats().snapshot_chunks_refused >= 1);
    catch_up(&mut c);
    assert_identical_state(&c);
}

/// Two of node 1's ticks in which node 3 receives its first three
/// snapshot chunks and loses the rest; returns how many were sent.
fn first_chunks_to_3(c: &mut Cluster) -> usize {
    let mut delivered = 0;
    for _ in 0..2 {
        c.tick(1);
        c.deliver_mapped(|message| {
            if is_chunk_to(&message, 3) {
                delivered += 1;
                if delivered > 3 {
                    return None;
                }
            }
            Some(message)
        });
    }
    delivered
}

#[test]
fn leader_change_mid_transfer_restarts_the_transfer_from_the_new_leader() {
    let mut c = far_behind(30, 16);
    // Node 3 receives a few chunks from node 1, then node 1 dies.
    assert!(first_chunks_to_3(&mut c) >= 3);
    assert_eq!(c.node(3).stats().snapshots_installed, 0);
    c.crash(1);
    for _ in 0..200 {
        c.tick_all(1);
        if c.leader().is_some_and(|leader| leader != 1) {
            break;
        }
    }
    assert_eq!(c.leader(), Some(2), "node 3 is behind: only node 2 can win");
    for _ in 0..200 {
        c.tick_all(1);
        if c.applied_strings(3) == c.applied_strings(2) {
            break;
        }
    }
    assert_eq!(c.applied_strings(3), c.applied_strings(2));
    assert!(c.traced_sends(2).iter().any(|m| is_chunk_to(m, 3)));
    c.restart(1);
    propose_many(&mut c, 2, 200, 2);
    catch_up(&mut c);
    assert_identical_state(&c);
}

#[test]
fn follower_restart_mid_transfer_resumes_from_the_start() {
    let mut c = far_behind(30, 16);
    first_chunks_to_3(&mut c);
    c.crash(3);
    c.restart(3);
    catch_up(&mut c);
    assert_identical_state(&c);
    assert_eq!(c.node(3).stats().snapshots_installed, 1);
    // The restarted node was asked to go back to offset 0.
    assert!(c.traced_sends(3).iter().any(|m| matches!(
        m.body,
        MessageBody::InstallSnapshotResponse {
            next_offset: 0,
            rewind: true,
            ..
        }
    )));
}

#[test]
fn checksum_mismatch_is_refused_and_the_transfer_restarts() {
    let mut c = far_behind(30, 16);
    let mut corrupted = false;
    for _ in 0..3 {
        c.tick(1);
        c.deliver_mapped(|mut message| {
            if !corrupted && is_chunk_to(&message, 3) {
                if let MessageBody::InstallSnapshot(chunk) = &mut message.body {
                    if chunk.offset > 0 && !chunk.data.is_empty() {
                        let mut bytes = chunk.data.to_vec();
                        bytes[0] ^= 0xff;
                        chunk.data = Bytes::from(bytes);
                        corrupted = true;
                    }
                }
            }
            Some(message)
        });
    }
    assert!(corrupted);
    catch_up(&mut c);
    assert_eq!(c.node(3).stats().snapshot_checksum_mismatches, 1);
    assert_eq!(c.node(3).stats().snapshots_installed, 1);
    assert_identical_state(&c);
}

#[test]
fn snapshot_is_acknowledged_only_once_durable() {
    let mut c = far_behind(30, 64);
    c.auto_sync.remove(&3);
    for _ in 0..20 {
        c.tick_all(1);
        if c.node(3).stats().snapshots_installed == 1 {
            break;
        }
    }
    assert_eq!(c.node(3).stats().snapshots_installed, 1);
    let snapshot_index = c.node(3).log_base().index;
    let acked = |c: &Cluster| {
        c.traced_sends(3).iter().any(|m| {
            matches!(
                m.body,
                MessageBody::AppendEntriesResponse(concord::AppendResponse::Accepted {
                    match_index
                }) if match_index >= snapshot_index
            )
        })
    };
    c.tick_all(5);
    assert!(!acked(&c), "acknowledged before the snapshot was durable");
    assert!(c.node(1).progress(3).unwrap().match_index < snapshot_index);
    // A crash now loses the snapshot: node 3 restarts from its old state.
    c.crash(3);
    c.restart(3);
    assert!(c.node(3).last_index() < snapshot_index);
    c.auto_sync.insert(3);
    catch_up(&mut c);
    assert!(acked(&c));
    assert_identical_state(&c);
}

/// Node 2, recovered in `term` with a log of `terms`, receives from the
/// leader of that term (node 1) a whole snapshot ending at `last`.
fn installed_on_2(
    term: Term,
    terms: &[Term],
    last: LogPosition,
    data: Bytes,
) -> (Solo, Vec<Action>) {
    let mut n = Solo::new(
        common::config(2, &[1, 2, 3]),
        common::recovered(term, None, terms),
    );
    let actions = n.receive(msg(1, 2, term, whole_snapshot(last, data)));
    (n, actions)
}

#[test]
fn a_matching_log_suffix_is_kept_on_install() {
    let data = Bytes::from_static(b"state after entry 3");
    let (n, actions) = installed_on_2(1, &[1, 1, 1, 1], LogPosition::new(3, 1), data.clone());
    assert!(actions.iter().any(|a| matches!(
        a,
        Action::PersistSnapshot {
            discard_log: false,
            ..
        }
    )));
    assert!(actions.iter().any(|a| matches!(
        a,
        Action::RestoreSnapshot { snapshot } if snapshot.position == LogPosition::new(3, 1)
    )));
    assert_eq!(n.received.as_ref().map(|s| &s.data), Some(&data));
    assert_eq!(n.node.log_base(), LogPosition::new(3, 1));
    assert_eq!(n.node.last_index(), 4, "entry 4 kept");
    assert!(n.node.commit_index() >= 3);
    assert_eq!(n.node.applied_index(), 3);
}

#[test]
fn a_conflicting_log_is_discarded_on_install() {
    let data = Bytes::from_static(b"state");
    let (mut n, actions) = installed_on_2(2, &[1, 1, 2, 2], LogPosition::new(3, 1), data);
    assert!(actions.iter().any(|a| matches!(
        a,
        Action::PersistSnapshot {
            discard_log: true,
            ..
        }
    )));
    assert_eq!(n.node.last_position(), LogPosition::new(3, 1));
    // Acknowledged only after the sync.
    assert!(common::append_answers(&actions).is_empty());
    let answers = common::append_answers(&n.sync());
    assert_eq!(
        answers,
        vec![concord::AppendResponse::Accepted { match_index: 3 }]
    );
    assert_eq!(n.disk.base, LogPosition::new(3, 1));
    assert!(n.disk.entries.is_empty());
}

#[test]
fn bad_snapshot_chunks_are_refused_and_counted() {
    let mut config = common::config(2, &[1, 2, 3]);
    config.snapshot_bytes_max = 100;
    let mut n = Solo::new(config, common::recovered(2, None, &[1, 1]));
    let chunk = |size: u64, offset: u64, data: &'static [u8], term| {
        MessageBody::InstallSnapshot(Box::new(SnapshotChunk {
            snapshot: LogPosition::new(5, term),
            size_bytes: size,
            checksum: 7,
            offset,
            data: Bytes::from_static(data),
            membership: Membership::new([1, 2, 3]),
        }))
    };
    // Past the end of the announced size, and an absurd offset.
    n.receive(msg(1, 2, 2, chunk(4, 2, b"abc", 2)));
    n.receive(msg(1, 2, 2, chunk(4, u64::MAX, b"abc", 2)));
    // A snapshot term above the message term.
    n.receive(msg(1, 2, 2, chunk(4, 0, b"ab", 3)));
    assert_eq!(n.node.stats().messages_malformed, 3);
    // An index no log reaches (its next index would overflow).
    let absurd = whole_snapshot(LogPosition::new(u64::MAX, 2), Bytes::from_static(b"ab"));
    n.receive(msg(1, 2, 2, absurd));
    assert_eq!(n.node.stats().messages_malformed, 4);
    assert_eq!(n.node.stats().snapshots_installed, 0);
    // Larger than this node accepts.
    n.receive(msg(1, 2, 2, chunk(1000, 0, b"ab", 2)));
    assert_eq!(n.node.stats().snapshot_chunks_refused, 1);
    // A stale term and an unknown sender.
    n.receive(msg(1, 2, 1, chunk(4, 0, b"ab", 1)));
    assert_eq!(n.node.stats().messages_stale_term, 1);
    n.receive(msg(9, 2, 2, chunk(4, 0, b"ab", 2)));
    assert_eq!(n.node.stats().messages_from_unknown_node, 1);
    // A wrong checksum, in one chunk: refused, nothing installed.
    let actions = n.receive(msg(1, 2, 2, chunk(4, 0, b"abcd", 2)));
    assert_eq!(n.node.stats().snapshot_checksum_mismatches, 1);
    assert_eq!(n.node.stats().snapshots_installed, 0);
    assert!(!actions
        .iter()
        .any(|a| matches!(a, Action::PersistSnapshot { .. })));
    assert_eq!(n.node.last_index(), 2);
    // A response to a snapshot nobody sent, at a follower: ignored.
    n.receive(msg(
        1,
        2,
        2,
        MessageBody::InstallSnapshotResponse {
            snapshot: LogPosition::new(5, 2),
            next_offset: u64::MAX,
            rewind: true,
        },
    ));
    assert_eq!(n.node.role(), Role::Follower);
}

#[test]
fn restart_recovers_from_the_snapshot_and_the_log_tail() {
    let mut c = Cluster::configured(&[1, 2, 3], compacting(7, 1, 64));
    c.elect(1);
    propose_many(&mut c, 1, 0, 20);
    c.tick_all(1);
    let before = c.applied_strings(1);
    for id in [1, 2, 3] {
        c.crash(id);
    }
    for id in [1, 2, 3] {
        let disk = &c.disks[&id];
        let base = disk.base;
        assert!(base.index >= 14, "node {id} stored a snapshot at {base:?}");
        assert!(disk
            .entries
            .first()
            .is_none_or(|e| e.index == base.index + 1));
        c.restart(id);
        let node = c.node(id);
        assert_eq!(node.log_base(), base);
        assert_eq!(node.commit_index(), base.index);
        assert_eq!(node.applied_index(), base.index);
        assert_eq!(node.snapshot_position(), Some(base));
    }
    let leader = c.settle();
    propose_many(&mut c, leader, 20, 1);
    c.tick_all(2);
    let mut want = before;
    want.push("command-0020".to_string());
    for id in [1, 2, 3] {
        assert_eq!(c.applied_strings(id), want, "node {id}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Random faults (loss, reordering, duplication, crashes with lost
    /// unsynced writes, partitions) with compaction at small random
    /// thresholds: every node ends with the same state, nothing committed
    /// is lost, and the in-memory log stays bounded.
    #[test]
    fn compaction_under_random_faults_keeps_every_replica_identical(
        seed in 0u64..10_000,
        threshold in 2u64..12,
        trailing in 0u64..5,
        chunk in 1usize..64,
    ) {
        let mut chaos = Chaos::new(seed, &[1, 2, 3], |config| {
            config.compaction_threshold_entries = Some(threshold);
            config.compaction_trailing_entries = trailing;
            config.snapshot_chunk_bytes_max = chunk;
            config.inflight_messages_max = 4;
        });
        for _ in 0..3000 {
            chaos.step();
            for id in chaos.cluster.ids() {
                let node = chaos.cluster.node(id);
                let snapshot_index = node.latest_snapshot_index();
                prop_assert!(node.log_base().index <= node.applied_index().max(snapshot_index));
                prop_assert!(node.log_base().index >= snapshot_index.saturating_sub(trailing));
                if chaos.cluster.disks[&id].unsynced_own_snapshot.is_none() {
                    // No snapshot outstanding: the policy is satisfied, so
                    // the log holds at most the threshold and the window
                    // past what is not yet applied.
                    let applied_since = node.applied_index().saturating_sub(snapshot_index);
                    prop_assert!(applied_since < threshold);
                    let unapplied = node.last_index() - node.applied_index().max(snapshot_index);
                    prop_assert!(
                        node.log_len() <= threshold + trailing + unapplied,
                        "node {} holds {} entries", id, node.log_len()
                    );
                }
            }
        }
        let leader = chaos.heal_and_settle();
        chaos.cluster.propose(leader, "final");
        chaos.cluster.tick_all(5);
        let want = chaos.cluster.applied_strings(leader);
        prop_assert!(want.last().is_some_and(|last| last == "final"));
        for id in chaos.cluster.ids() {
            prop_assert_eq!(chaos.cluster.applied_strings(id), want.clone(), "node {}", id);
        }
    }
}

#[test]
fn a_discarded_log_leaves_the_disk_only_with_the_snapshot_write() {
    // Node 2 holds entries 1..=4 (term 1), acknowledged as durable, and
    // commit 0; the leader's snapshot ends at entry 6 (term 2), which its
    // log does not hold, so the whole log is replaced.
    let data = Bytes::from_static(b"state after entry 6");
    let (mut n, actions) = installed_on_2(2, &[1, 1, 1, 1], LogPosition::new(6, 2), data);
    let snapshot_write = actions
        .iter()
        .position(|a| {
            matches!(
                a,
                Action::PersistSnapshot {
                    discard_log: true,
                    ..
                }
            )
        })
        .expect("the snapshot replaces the log");
    // No write may drop the entries before the snapshot is durable: a crash
    // between the two would lose what node 2 acknowledged.
    assert!(
        !actions[..snapshot_write].iter().any(|a| matches!(
            a,
            Action::Persist {
                truncate_after: Some(_),
                ..
            }
        )),
        "a truncation was written before the snapshot: {actions:?}"
    );
    assert_eq!(
        n.disk.entries.len(),
        4,
        "the disk keeps the log until the snapshot is durable"
    );
    n.sync();
    assert_eq!(n.disk.base, LogPosition::new(6, 2));
    assert!(n.disk.entries.is_empty());
}
