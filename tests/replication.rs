//! Log replication (§5.3, Figure 2's AppendEntries rules, Figure 7): log
//! matching, consistency check, conflict truncation, idempotence, the
//! durability of acknowledgements, fast backtracking and commit
//! propagation by heartbeat.
mod common;

use common::*;
use concord::{Action, AppendResponse, Entry, Index, Message, MessageBody, Recovered, Role, Term};

/// Follower 1 of a 3-node cluster whose leader is node 2.
fn follower(recovered: Recovered) -> Solo {
    Solo::new(config(1, &[1, 2, 3]), recovered)
}

/// Log Matching (Figure 3): if two logs contain an entry with the same
/// index and term, the logs are identical in all entries up to that index —
/// checked between every pair of nodes after every step of seeded runs with
/// crashes, partitions and lost messages, and finally all logs are equal.
#[test]
fn log_matching_holds_between_all_nodes() {
    for seed in 0..12 {
        let mut chaos = Chaos::new(seed, &[1, 2, 3, 4, 5], |config| {
            config.append_entries_max = 3;
        });
        for step in 0..1200 {
            chaos.step();
            if step % 10 == 0 {
                assert_log_matching(&chaos.cluster, seed);
            }
        }
        let leader = chaos.heal_and_settle();
        assert_log_matching(&chaos.cluster, seed);
        for id in chaos.cluster.ids() {
            assert_eq!(
                chaos.cluster.log(id),
                chaos.cluster.log(leader),
                "seed {seed} node {id}"
            );
        }
    }
}

fn assert_log_matching(c: &Cluster, seed: u64) {
    let logs: Vec<(u64, Vec<Entry>)> = c.ids().into_iter().map(|id| (id, c.log(id))).collect();
    for (a, log_a) in &logs {
        for (b, log_b) in &logs {
            let common = log_a.len().min(log_b.len());
            if let Some(last_same) = (0..common).rev().find(|i| log_a[*i].term == log_b[*i].term) {
                assert_eq!(
                    log_a[..=last_same],
                    log_b[..=last_same],
                    "seed {seed}: nodes {a} and {b} agree on entry {} but not before",
                    last_same + 1
                );
            }
        }
    }
}

/// The only answer in `actions` refuses an append after `rejected_index`,
/// hinting at the follower's entry `hint` (index, term).
fn assert_rejected(actions: &[Action], rejected_index: Index, hint: (Index, Term)) {
    assert_eq!(
        append_answers(actions),
        vec![AppendResponse::Rejected {
            rejected_index,
            hint_index: hint.0,
            hint_term: hint.1
        }]
    );
}

/// Three nodes, node 1 elected and heard by both others, every message
/// recorded from now on.
fn traced_cluster() -> Cluster {
    let mut c = Cluster::elected(&[1, 2, 3], 1);
    c.deliver_all();
    c.record_trace = true;
    c
}

/// Figure 2, AppendEntries rule 2: reply false if the log has no entry at
/// prevLogIndex. The hint points at the follower's last entry.
#[test]
fn append_is_rejected_when_prev_is_missing() {
    let mut n = follower(recovered(1, None, &[1, 1]));
    let actions = n.receive(msg(2, 1, 1, append((5, 1), vec![entry(6, 1)], 0)));
    assert_rejected(&actions, 5, (2, 1));
    assert_eq!(n.node.last_index(), 2);
    assert_eq!(n.node.stats().messages_index_out_of_range, 1);
}

/// Figure 2, AppendEntries rule 2: reply false if the entry at prevLogIndex
/// has another term. The hint is the last entry whose term is at most
/// prevLogTerm.
#[test]
fn append_is_rejected_when_prev_term_mismatches() {
    let mut n = follower(recovered(2, None, &[1, 1, 2]));
    let actions = n.receive(msg(2, 1, 3, append((3, 3), vec![entry(4, 3)], 0)));
    assert_rejected(&actions, 3, (3, 2));
    assert_eq!(n.node.last_index(), 3);
    assert_eq!(n.node.term_at(3), Some(2));
    assert_eq!(n.node.stats().entries_truncated, 0);
}

/// Figure 2, AppendEntries rule 3: an existing entry that conflicts with a
/// new one (same index, other term) is deleted with all that follow it —
/// in memory and, through the Persist action, on disk.
#[test]
fn follower_truncates_a_conflicting_uncommitted_suffix() {
    let mut n = follower(recovered(2, None, &[1, 1, 2, 2]));
    let actions = n.receive(msg(2, 1, 3, append((2, 1), vec![entry(3, 3)], 0)));
    assert_eq!(n.node.last_index(), 3);
    assert_eq!(n.node.term_at(3), Some(3));
    assert_eq!(n.node.stats().entries_truncated, 2);
    let writes: Vec<_> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Persist {
                truncate_after,
                entries,
                ..
            } => Some((*truncate_after, entries.to_vec())),
            _ => None,
        })
        .collect();
    assert_eq!(writes, vec![(Some(2), vec![entry(3, 3)])]);
    assert_eq!(
        append_answers(&n.sync()),
        vec![AppendResponse::Accepted { match_index: 3 }]
    );
    assert_eq!(n.disk.entries, log_of(&[1, 1, 3]));
}

/// Figure 2, AppendEntries rules 3–4: entries already held are not touched.
/// A duplicated AppendEntries changes nothing, and an older, shorter one
/// arriving late does not truncate the entries that followed it.
#[test]
fn duplicate_append_entries_is_idempotent() {
    let mut n = follower(Recovered::default());
    let first = msg(2, 1, 1, append((0, 0), log_of(&[1, 1, 1]), 0));
    n.receive(first.clone());
    assert_eq!(
        append_answers(&n.sync()),
        vec![AppendResponse::Accepted { match_index: 3 }]
    );

    let mut actions = n.receive(first);
    actions.extend(n.sync());
    assert_eq!(
        append_answers(&actions),
        vec![AppendResponse::Accepted { match_index: 3 }]
    );
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::Persist { entries, .. } if !entries.is_empty())),
        "rewrote entries it already held"
    );

    let mut actions = n.receive(msg(2, 1, 1, append((0, 0), log_of(&[1]), 0)));
    actions.extend(n.sync());
    assert_eq!(
        n.node.last_index(),
        3,
        "a late, shorter append truncated the log"
    );
    assert_eq!(n.node.stats().entries_truncated, 0);
    // The answer never claims less than the follower holds for this leader.
    for answer in append_answers(&actions) {
        assert!(matches!(answer, AppendResponse::Accepted { match_index } if match_index >= 1));
    }
    assert_eq!(n.disk.entries, log_of(&[1, 1, 1]));
}

/// Durability contract: an acknowledgement promises the entries are on
/// disk, so it leaves only after `Input::Persisted`.
#[test]
fn append_ack_is_not_sent_until_entries_are_persisted() {
    let mut n = follower(Recovered::default());
    let actions = n.receive(msg(2, 1, 1, append((0, 0), log_of(&[1, 1, 1]), 0)));
    assert!(
        append_answers(&actions).is_empty(),
        "acked before the write: {actions:?}"
    );
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::Persist { entries, .. } if entries.len() == 3)));
    assert!(append_answers(&n.ticks(2)).is_empty());
    assert_eq!(n.node.persisted_index(), 0);
    assert_eq!(
        append_answers(&n.sync()),
        vec![AppendResponse::Accepted { match_index: 3 }]
    );
    assert_eq!(n.node.persisted_index(), 3);
}

/// Figure 7: a leader in term 8 with log terms [1,1,1,4,4,5,5,6,6,6] and six
/// followers (a)–(f). Followers (a), (b) miss entries, (c), (d) hold extra
/// uncommitted entries, (e), (f) both. The leader is elected by (a), (b),
/// (e), (f) and itself, and forces every follower's log to its own: the
/// extra and conflicting entries are deleted, the missing ones appended.
#[test]
fn figure_7_followers_converge_to_the_leader_log() {
    let ids = [1, 2, 3, 4, 5, 6, 7];
    let leader_log: &[u64] = &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6];
    // (follower id, log terms, entries Raft must delete)
    let followers: [(u64, &[u64], u64); 6] = [
        (2, &[1, 1, 1, 4, 4, 5, 5, 6, 6], 0),          // (a)
        (3, &[1, 1, 1, 4], 0),                         // (b)
        (4, &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6], 1),    // (c)
        (5, &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7], 2), // (d)
        (6, &[1, 1, 1, 4, 4, 4, 4], 2),                // (e)
        (7, &[1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3], 8),    // (f)
    ];
    let mut c = Cluster::new(&ids);
    c.load(1, recovered(7, None, leader_log));
    for (id, terms, _) in followers {
        c.load(id, recovered(7, None, terms));
    }
    c.elect(1);
    assert_eq!(c.node(1).term(), 8);
    c.tick_all(10);

    let mut expected = log_of(leader_log);
    expected.push(c.node(1).entry(11).expect("no-op").clone());
    assert_eq!(expected[10].term, 8);
    assert_eq!(c.log(1), expected);
    for (id, _, deleted) in followers {
        assert_eq!(c.log(id), expected, "follower {id}");
        assert_eq!(
            c.node(id).stats().entries_truncated,
            deleted,
            "follower {id}"
        );
        assert_eq!(c.node(id).commit_index(), 11, "follower {id}");
        assert_eq!(c.disks[&id].entries, expected, "follower {id}'s disk");
    }
    c.assert_election_safety();
}

fn rejections_from(c: &Cluster, id: u64) -> usize {
    c.traced_sends(id)
        .iter()
        .filter(|m| {
            matches!(
                m.body,
                MessageBody::AppendEntriesResponse(AppendResponse::Rejected { .. })
            )
        })
        .count()
}

/// §5.3's optimisation (fast backtracking by term): a follower with a long
/// divergent or missing log is repaired in at most one rejection per
/// distinct term of its log, not one per entry.
#[test]
fn fast_backtracking_skips_whole_terms() {
    let repeat = |prefix: &[u64], parts: &[(u64, usize)]| {
        let mut terms = prefix.to_vec();
        for (term, count) in parts {
            terms.extend(std::iter::repeat_n(*term, *count));
        }
        terms
    };
    let cases = [
        // Divergent: 200 uncommitted entries of terms 2 and 3.
        (
            repeat(&[1, 1, 1], &[(4, 5)]),
            repeat(&[1, 1, 1], &[(2, 100), (3, 100)]),
        ),
        // Behind: 200 entries missing.
        (repeat(&[1, 1, 1], &[(2, 200)]), vec![1, 1, 1]),
        // Both: shares a term-2 prefix, then diverges.
        (
            repeat(&[1], &[(2, 50), (5, 100)]),
            repeat(&[1], &[(2, 80), (3, 60), (4, 60)]),
        ),
    ];
    for (leader_log, follower_log) in cases {
        let mut c = Cluster::new(&[1, 2, 3]);
        let term = *leader_log.last().unwrap();
        c.load(1, recovered(term, None, &leader_log));
        c.load(2, recovered(term, None, &leader_log));
        c.load(
            3,
            recovered(*follower_log.last().unwrap(), None, &follower_log),
        );
        c.record_trace = true;
        c.elect(1);
        c.tick_all(4);
        assert_eq!(c.log(3), c.log(1));
        let distinct_terms = {
            let mut t = follower_log.clone();
            t.dedup();
            t.len()
        };
        let rejections = rejections_from(&c, 3);
        assert!(
            rejections >= 1,
            "the follower's log did not match, yet no rejection"
        );
        assert!(
            rejections <= distinct_terms,
            "{rejections} rejections for a log of {} entries in {distinct_terms} terms",
            follower_log.len()
        );
    }
}

/// A heartbeat carries the commit index capped at what the follower is
/// known to hold: a follower whose log beyond its match index differs from
/// the leader's must not commit those entries.
#[test]
fn heartbeat_commit_is_capped_at_the_follower_match_index() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.load(1, recovered(3, None, &[1, 3]));
    c.load(2, recovered(3, None, &[1, 3]));
    // Node 3 holds stale entries 2..4 of term 2 that the leader lacks.
    c.load(3, recovered(2, None, &[1, 2, 2, 2]));
    c.record_trace = true;
    let no_appends_to_3 =
        |m: &Message| !(m.to == 3 && matches!(m.body, MessageBody::AppendEntries { .. }));
    for _ in 0..200 {
        c.tick(1);
        c.deliver_filtered(no_appends_to_3);
        if c.node(1).role() == Role::Leader {
            break;
        }
    }
    assert_eq!(c.node(1).role(), Role::Leader);
    for _ in 0..20 {
        for id in c.ids() {
            c.tick(id);
        }
        c.deliver_filtered(no_appends_to_3);
    }
    assert_eq!(
        c.node(1).commit_index(),
        3,
        "the leader commits with node 2"
    );
    let heartbeat_commits = |to: u64| -> Vec<u64> {
        c.traced_sends(1)
            .into_iter()
            .filter(|m| m.to == to)
            .filter_map(|m| match m.body {
                MessageBody::Heartbeat { commit, .. } => Some(commit),
                _ => None,
            })
            .collect()
    };
    assert!(heartbeat_commits(2).contains(&3));
    let to_3 = heartbeat_commits(3);
    assert!(!to_3.is_empty());
    assert!(
        to_3.iter().all(|commit| *commit == 0),
        "heartbeats to 3: {to_3:?}"
    );
    assert_eq!(c.node(3).commit_index(), 0);
    assert!(
        c.applied[&3].is_empty(),
        "node 3 applied {:?}",
        c.applied[&3]
    );

    // Once appends flow again node 3 is repaired and commits the right log.
    c.tick_all(5);
    assert_eq!(c.log(3), c.log(1));
    assert_eq!(c.applied_strings(3), vec!["1@1", "2@3"]);
}

/// A follower whose first acknowledgement reaches the leader after the
/// entries it covers were already committed (by other followers) must still
/// learn the commit index from the leader, without waiting for a heartbeat.
#[test]
fn late_follower_learns_commit_without_heartbeat() {
    let mut c = Cluster::new(&[1, 2, 3]);
    // Elect node 1, but hold back everything node 3 sends.
    for _ in 0..200 {
        c.tick(1);
        c.deliver_filtered(|m| {
            m.from != 3 || !matches!(m.body, MessageBody::AppendEntriesResponse(_))
        });
        if c.node(1).role() == Role::Leader {
            break;
        }
    }
    assert_eq!(c.node(1).role(), Role::Leader);
    // Node 2's ack committed the no-op; node 3 has it but its ack was lost.
    c.deliver_filtered(|m| m.from != 3 || !matches!(m.body, MessageBody::AppendEntriesResponse(_)));
    let commit = c.node(1).commit_index();
    assert!(commit >= 1);
    assert!(c.node(3).commit_index() < commit);
    assert_eq!(c.node(3).last_index(), c.node(1).last_index());
    // Node 3 repeats its ack (as any later append would make it do); no
    // ticks, so no heartbeat can help.
    let ack = Message {
        from: 3,
        to: 1,
        term: c.node(1).term(),
        progress_id: c.node(1).progress(3).unwrap().progress_id,
        body: MessageBody::AppendEntriesResponse(AppendResponse::Accepted {
            match_index: c.node(3).last_index(),
        }),
    };
    c.step(1, concord::Input::Receive(ack));
    c.deliver_all();
    assert_eq!(
        c.node(3).commit_index(),
        commit,
        "node 3 never learned the commit index"
    );
}

/// When the commit index moves, a follower the leader streams to and that
/// has nothing new to receive is told with a one-way commit notice, not an
/// empty append it would have to answer; it commits and answers nothing.
#[test]
fn commit_reaches_caught_up_followers_as_an_unanswered_notice() {
    let mut c = traced_cluster();
    c.propose(1, "x");
    c.deliver_all();
    let last = c.node(1).last_index();
    assert_eq!(c.node(1).commit_index(), last);
    for id in [2, 3] {
        assert_eq!(
            c.node(id).commit_index(),
            last,
            "node {id} learned the commit"
        );
    }
    let sends = c.traced_sends(1);
    for id in [2, 3] {
        assert!(
            sends.iter().any(|m| m.to == id
                && matches!(m.body, MessageBody::CommitNotice { last: l, commit }
                    if l.index == last && commit == last)),
            "no commit notice to node {id}: {sends:?}"
        );
        assert!(
            !sends.iter().any(|m| m.to == id
                && matches!(&m.body, MessageBody::AppendEntries { entries, .. } if entries.is_empty())),
            "an empty append to node {id}: {sends:?}"
        );
    }
    // Per follower: one append with the entry, its answer, one notice.
    for id in [2, 3] {
        let answers = c
            .traced_sends(id)
            .into_iter()
            .filter(|m| matches!(m.body, MessageBody::AppendEntriesResponse(_)))
            .count();
        assert_eq!(answers, 1, "node {id} answered the notice");
    }
}

/// A follower with an append in flight past the new commit index is not
/// sent a commit notice when the commit index moves: the answer to that
/// append releases it, so a pipelined follower is told each commit by the
/// next append or, at the end of the stream, by one notice.
#[test]
fn commit_notice_waits_for_the_answer_to_the_append_in_flight() {
    let mut c = traced_cluster();
    c.propose(1, "a");
    let first = c.node(1).last_index();
    // The appends of "a" arrive and are answered; "b" goes out before the
    // answers reach the leader.
    c.deliver_one();
    c.deliver_one();
    c.propose(1, "b");
    // The two answers to "a": the first commits it, while "b" is in
    // flight to both followers.
    c.deliver_one();
    c.deliver_one();
    assert_eq!(c.node(1).commit_index(), first);
    let notices = |c: &Cluster| {
        c.traced_sends(1)
            .into_iter()
            .filter(|m| matches!(m.body, MessageBody::CommitNotice { .. }))
            .collect::<Vec<_>>()
    };
    assert!(
        notices(&c).is_empty(),
        "a notice while appends were in flight: {:?}",
        notices(&c)
    );
    c.deliver_all();
    let last = c.node(1).last_index();
    assert_eq!(last, first + 1);
    for id in [1, 2, 3] {
        assert_eq!(
            c.node(id).commit_index(),
            last,
            "node {id} learned the commit"
        );
    }
    // One notice per follower, released by the answer to "b".
    let notices = notices(&c);
    for id in [2, 3] {
        let to: Vec<_> = notices.iter().filter(|m| m.to == id).collect();
        assert_eq!(to.len(), 1, "notices to node {id}: {notices:?}");
        assert!(
            matches!(to[0].body, MessageBody::CommitNotice { commit, .. } if commit == last),
            "{notices:?}"
        );
    }
}

/// A commit notice whose last entry the follower holds commits up to the
/// leader's commit index and is not answered (an append in its place was).
#[test]
fn commit_notice_matching_the_log_commits_without_an_answer() {
    let mut n = Solo::new(config(2, &[1, 2, 3]), recovered(1, None, &[1, 1, 1]));
    let actions = n.receive(msg(1, 2, 1, append((3, 1), vec![], 0)));
    assert_eq!(
        append_answers(&actions),
        vec![AppendResponse::Accepted { match_index: 3 }],
        "an empty append is answered"
    );
    let last = concord::LogPosition::new(3, 1);
    let actions = n.receive(msg(1, 2, 1, MessageBody::CommitNotice { last, commit: 2 }));
    assert_eq!(n.node.commit_index(), 2);
    assert!(sent(&actions).is_empty(), "answered: {:?}", sent(&actions));
}

/// A commit notice naming an entry the follower does not hold is refused
/// with a hint, like an append there would be: the leader learns of the
/// entries the follower lost as quickly. Nothing is committed.
#[test]
fn commit_notice_not_matching_the_log_is_refused_with_a_hint() {
    let mut n = Solo::new(config(2, &[1, 2, 3]), recovered(2, None, &[1, 1]));
    let last = concord::LogPosition::new(4, 2);
    let actions = n.receive(msg(1, 2, 2, MessageBody::CommitNotice { last, commit: 3 }));
    assert_eq!(n.node.commit_index(), 0);
    assert_eq!(
        append_answers(&actions),
        vec![AppendResponse::Rejected {
            rejected_index: 4,
            hint_index: 2,
            hint_term: 1,
        }]
    );
}

/// A notice whose commit index passes its own last entry comes from no
/// correct leader: counted as malformed, nothing committed, no answer.
#[test]
fn commit_notice_past_its_last_entry_is_malformed() {
    let mut n = Solo::new(config(2, &[1, 2, 3]), recovered(1, None, &[1, 1, 1]));
    let last = concord::LogPosition::new(2, 1);
    let actions = n.receive(msg(1, 2, 1, MessageBody::CommitNotice { last, commit: 3 }));
    assert_eq!(n.node.commit_index(), 0);
    assert_eq!(n.node.stats().messages_malformed, 1);
    assert!(append_answers(&actions).is_empty());
}
