//! Bad input is not a panic: invalid configuration and recovered state are
//! refused with errors that say what is wrong; hostile or broken messages
//! are ignored (or answered per the protocol) and counted.
mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};

use common::*;
use concord::{
    AppendResponse, Config, ConfigError, Entry, EntryPayload, HardState, Input, Membership,
    Message, MessageBody, Node, Recovered, Role, Statistics, Term,
};

/// Each invalid field yields its own error, whose message names the field
/// (or the concept) so an operator knows what to fix; `Node::new` refuses
/// the same configuration with the same error.
#[test]
fn config_validate_rejects_each_invalid_field_with_a_message_naming_it() {
    type Mutation = fn(&mut Config);
    let cases: Vec<(Mutation, ConfigError, &[&str])> = vec![
        (|c| c.voters.clear(), ConfigError::NoVoters, &["voters"]),
        (
            |c| {
                c.voters.remove(&1);
            },
            ConfigError::SelfNotVoter { id: 1 },
            &["node 1", "voters"],
        ),
        (|c| c.id = 0, ConfigError::ZeroNodeId, &["id 0"]),
        (
            |c| {
                c.voters.insert(0);
            },
            ConfigError::ZeroNodeId,
            &["id 0"],
        ),
        (
            |c| c.heartbeat_interval_ticks = 10,
            ConfigError::HeartbeatNotBelowElectionTimeout {
                heartbeat: 10,
                election: 10,
            },
            &["heartbeat", "election timeout"],
        ),
        (
            |c| c.election_timeout_max_ticks = 10,
            ConfigError::ElectionTimeoutRange { min: 10, max: 10 },
            &["election_timeout_max_ticks", "10..10"],
        ),
        (
            |c| c.election_timeout_max_ticks = 5,
            ConfigError::ElectionTimeoutRange { min: 10, max: 5 },
            &["election_timeout_max_ticks"],
        ),
        (
            |c| {
                c.priorities.insert(9, 1);
            },
            ConfigError::PriorityForUnknownNode { id: 9 },
            &["priority", "node 9"],
        ),
    ];
    // Fields that must not be zero, each refused naming itself.
    let zero: [(&'static str, Mutation); 8] = [
        ("election_timeout_min_ticks", |c| {
            c.election_timeout_min_ticks = 0
        }),
        ("heartbeat_interval_ticks", |c| {
            c.heartbeat_interval_ticks = 0
        }),
        ("append_entries_max", |c| c.append_entries_max = 0),
        ("append_bytes_max", |c| c.append_bytes_max = 0),
        ("inflight_messages_max", |c| c.inflight_messages_max = 0),
        ("uncommitted_entries_max", |c| c.uncommitted_entries_max = 0),
        ("apply_batch_entries_max", |c| c.apply_batch_entries_max = 0),
        ("unpersisted_writes_max", |c| c.unpersisted_writes_max = 0),
    ];
    assert_eq!(Config::new(1, [1, 2, 3]).validate(), Ok(()));
    let check = |mutate: Mutation, expected: ConfigError, mentions: &[&str]| {
        let mut c = Config::new(1, [1, 2, 3]);
        mutate(&mut c);
        assert_eq!(c.validate(), Err(expected.clone()));
        let text = expected.to_string();
        for word in mentions {
            assert!(text.contains(word), "{text:?} does not mention {word:?}");
        }
        assert_eq!(Node::new(c, Recovered::default()).err(), Some(expected));
    };
    for (mutate, expected, mentions) in cases {
        check(mutate, expected, mentions);
    }
    for (field, mutate) in zero {
        check(mutate, ConfigError::Zero { field }, &[field]);
    }
}

/// Recovered state that cannot have been written by a correct host is
/// refused, not trusted.
#[test]
fn invalid_recovered_state_is_rejected() {
    let gap = Recovered {
        hard_state: HardState {
            term: 1,
            voted_for: None,
            ..Default::default()
        },
        entries: vec![entry(1, 1), entry(3, 1)],
        ..Recovered::default()
    };
    let cases: Vec<(&str, Recovered)> = vec![
        ("non-contiguous entries", gap),
        (
            "entry term above the stored term",
            recovered(1, None, &[1, 2]),
        ),
        ("vote for node 0", recovered(1, Some(0), &[1])),
        (
            "terms going down along the log",
            recovered(2, None, &[2, 1]),
        ),
        (
            "applied index past the log",
            Recovered {
                applied_index: 5,
                ..recovered(1, None, &[1])
            },
        ),
    ];
    for (what, bad) in cases {
        match Node::new(config(1, &[1, 2, 3]), bad) {
            Err(error @ ConfigError::InvalidRecoveredState { .. }) => {
                assert!(
                    error.to_string().contains("recovered state is invalid"),
                    "{what}: {error}"
                );
            }
            other => panic!("{what}: expected InvalidRecoveredState, got {other:?}"),
        }
    }
}

/// A running 3-node cluster whose committed log is [1, 1, 2, noop 3] on
/// every node, led by node 1 in term 3.
fn running() -> Cluster {
    let mut c = Cluster::new(&[1, 2, 3]);
    for id in [1, 2, 3] {
        c.load(id, recovered(2, None, &[1, 1, 2]));
    }
    c.elect(1);
    c.tick_all(2);
    assert_eq!((c.node(1).term(), c.node(2).commit_index()), (3, 4));
    c
}

/// [`running`] with nothing in flight; its term (every node's).
fn quiet() -> (Cluster, Term) {
    let mut c = running();
    c.network.clear();
    let term = c.node(1).term();
    (c, term)
}

/// Each of `bodies`, sent by the leader (node 1) to node 2 in term `t`, is
/// ignored and counted once by `counted`.
fn appends_ignored(
    c: &mut Cluster,
    t: Term,
    bodies: impl IntoIterator<Item = MessageBody>,
    counted: fn(&Statistics) -> u64,
) {
    for body in bodies {
        let grown = feed_ignored(c, 2, msg(1, 2, t, body.clone()));
        assert_eq!(counted(&grown), 1, "{body:?}");
    }
}

/// What a node's observable state is, to check bad input changed nothing.
fn snapshot(c: &Cluster, id: u64) -> (Role, HardState, Option<u64>, u64, Vec<Entry>) {
    let n = c.node(id);
    (
        n.role(),
        n.hard_state(),
        n.leader(),
        n.commit_index(),
        c.log(id),
    )
}

/// Feeds `message` to node `to`; checks nothing changed, nothing panicked,
/// and returns the growth of the statistics.
fn feed_ignored(c: &mut Cluster, to: u64, message: Message) -> Statistics {
    let before = snapshot(c, to);
    let stats = *c.node(to).stats();
    let result = catch_unwind(AssertUnwindSafe(|| {
        c.step(to, Input::Receive(message.clone()))
    }));
    assert!(result.is_ok(), "panicked on {message:?}");
    assert_eq!(snapshot(c, to), before, "{message:?} changed node {to}");
    let after = *c.node(to).stats();
    Statistics {
        messages_from_unknown_node: after.messages_from_unknown_node
            - stats.messages_from_unknown_node,
        messages_misaddressed: after.messages_misaddressed - stats.messages_misaddressed,
        messages_stale_term: after.messages_stale_term - stats.messages_stale_term,
        messages_malformed: after.messages_malformed - stats.messages_malformed,
        messages_index_out_of_range: after.messages_index_out_of_range
            - stats.messages_index_out_of_range,
        append_conflicts_with_commit: after.append_conflicts_with_commit
            - stats.append_conflicts_with_commit,
        ..Statistics::default()
    }
}

/// Messages from outside the configuration, from the node itself, or meant
/// for another node are dropped and counted, whatever they say.
#[test]
fn messages_from_unknown_nodes_or_misaddressed_are_ignored_and_counted() {
    let mut c = running();
    let t = c.node(2).term();
    let bodies = [
        append((4, 3), vec![entry(5, t + 5)], 5),
        vote_request((100, t + 5)),
        MessageBody::TimeoutNow,
        MessageBody::Heartbeat {
            commit: 100,
            read_round: 0,
        },
    ];
    for body in bodies {
        let unknown = feed_ignored(&mut c, 2, msg(9, 2, t + 5, body.clone()));
        assert_eq!(unknown.messages_from_unknown_node, 1, "{body:?}");
        let from_self = feed_ignored(&mut c, 2, msg(2, 2, t + 5, body.clone()));
        assert_eq!(from_self.messages_from_unknown_node, 1, "{body:?}");
        let misaddressed = feed_ignored(&mut c, 2, msg(1, 3, t + 5, body.clone()));
        assert_eq!(misaddressed.messages_misaddressed, 1, "{body:?}");
    }
}

/// AppendEntries that contradict themselves — entries not contiguous after
/// prev, entry terms above the message's term or going down — are
/// ignored and counted as malformed.
#[test]
fn malformed_append_entries_are_ignored_and_counted() {
    let (mut c, t) = quiet();
    let cases = [
        append((4, t), vec![entry(5, t), entry(7, t)], 4),
        append((4, t), vec![entry(6, t)], 4),
        append((4, t), vec![entry(5, t + 1)], 4),
        append((4, t + 1), vec![], 4),
        append((4, t), vec![entry(5, t), entry(6, t - 1)], 4),
    ];
    appends_ignored(&mut c, t, cases, |grown| grown.messages_malformed);
}

/// An AppendEntries carrying a configuration entry no leader can propose
/// (no voters, node id 0, a voter that is also a learner) is malformed:
/// ignored and counted, never appended. Found by the `node_step` fuzz
/// target: a configuration without voters, once in the log, made the next
/// election tick panic counting votes among nobody.
#[test]
fn append_entries_carrying_an_invalid_configuration_are_ignored_and_counted() {
    let (mut c, t) = quiet();
    let set = |ids: &[u64]| {
        ids.iter()
            .copied()
            .collect::<std::collections::BTreeSet<u64>>()
    };
    let invalid = [
        Membership::default(),
        Membership {
            voters: set(&[0, 1, 2]),
            ..Membership::default()
        },
        Membership {
            voters: set(&[1, 2, 3]),
            learners: set(&[3]),
            ..Membership::default()
        },
    ];
    let bodies = invalid.map(|membership| {
        let entry = Entry {
            term: t,
            index: 5,
            payload: EntryPayload::Membership(Box::new(membership)),
        };
        append((4, t), vec![entry], 4)
    });
    appends_ignored(&mut c, t, bodies, |grown| grown.messages_malformed);
    // Time passes without a panic and the cluster keeps its leader.
    c.tick_all(30);
    assert_eq!(c.node(2).leader(), Some(1));
}

/// An AppendEntries that would overwrite a committed entry (only a broken
/// or malicious leader sends one) is refused and counted.
#[test]
fn append_contradicting_a_committed_entry_is_ignored_and_counted() {
    let (mut c, t) = quiet();
    let cases = [
        // Entry 2 is committed with term 1.
        append((1, 1), vec![entry(2, 3), entry(3, 3)], 4),
        // Our committed entry 3 has term 2, not 1.
        append((3, 1), vec![entry(4, 3)], 4),
    ];
    appends_ignored(&mut c, t, cases, |grown| grown.append_conflicts_with_commit);
}

/// A leader receives acknowledgements of indices it never sent (past its
/// log) or rejections whose hint lies past the rejected index: ignored and
/// counted, with the follower's progress untouched.
#[test]
fn acks_beyond_the_log_are_ignored_and_counted() {
    let (mut c, t) = quiet();
    let last = c.node(1).last_index();
    let progress = c.node(1).progress(2).unwrap();
    let cases = [
        AppendResponse::Accepted {
            match_index: last + 1,
        },
        AppendResponse::Accepted {
            match_index: u64::MAX,
        },
        AppendResponse::Rejected {
            rejected_index: last + 10,
            hint_index: 0,
            hint_term: 0,
        },
        AppendResponse::Rejected {
            rejected_index: 2,
            hint_index: 3,
            hint_term: 1,
        },
    ];
    for response in cases {
        let body = MessageBody::AppendEntriesResponse(response);
        // From the replica the leader replicates to (naming its record).
        let answer = Message {
            progress_id: progress.progress_id,
            ..msg(2, 1, t, body)
        };
        let grown = feed_ignored(&mut c, 1, answer);
        assert_eq!(grown.messages_index_out_of_range, 1, "{response:?}");
        let now = c.node(1).progress(2).unwrap();
        assert_eq!(
            (now.match_index, now.next_index),
            (progress.match_index, progress.next_index)
        );
    }
}

/// Messages only a leader may send, from a node that is not this term's
/// leader (a second leader in one term, or TimeoutNow from a follower), are
/// refused and counted: they would otherwise break election safety.
#[test]
fn leader_messages_from_a_non_leader_are_ignored_and_counted() {
    let (mut c, t) = quiet();
    let cases = [
        msg(3, 2, t, append((4, t), vec![entry(5, t)], 5)),
        msg(
            3,
            2,
            t,
            MessageBody::Heartbeat {
                commit: 4,
                read_round: 0,
            },
        ),
        msg(3, 2, t, MessageBody::TimeoutNow),
        msg(2, 1, t, append((4, t), vec![entry(5, t)], 5)),
    ];
    for message in cases {
        let to = message.to;
        let grown = feed_ignored(&mut c, to, message.clone());
        assert_eq!(grown.messages_malformed, 1, "{message:?}");
    }
}

/// Extreme indices and terms never panic (no overflow), whichever node
/// receives them, and never push the commit index past the log.
#[test]
fn extreme_indices_never_panic() {
    let (mut c, t) = quiet();
    let huge = u64::MAX;
    let bodies = vec![
        append((huge, t), vec![], huge),
        append((huge - 1, t), vec![], huge),
        append((4, t), vec![], huge),
        MessageBody::Heartbeat {
            commit: huge,
            read_round: 0,
        },
        vote_request((huge, huge)),
        pre_vote_request((huge, t)),
        MessageBody::AppendEntriesResponse(AppendResponse::Rejected {
            rejected_index: huge,
            hint_index: huge,
            hint_term: huge,
        }),
    ];
    for body in bodies {
        for (from, to) in [(1, 2), (2, 1), (3, 2)] {
            let message = msg(from, to, t, body.clone());
            let result = catch_unwind(AssertUnwindSafe(|| {
                c.step(to, Input::Receive(message.clone()))
            }));
            assert!(result.is_ok(), "panicked on {message:?}");
            let n = c.node(to);
            assert!(n.commit_index() <= n.last_index());
        }
    }
}

/// An AppendEntries whose `prev.index` is u64::MAX and which carries an
/// entry overflows `prev.index + 1` in the well-formedness check: a
/// hostile message panics the node (debug builds) instead of being
/// counted as malformed.
#[test]
fn append_with_prev_index_at_u64_max_is_malformed_not_a_panic() {
    let (mut c, t) = quiet();
    let entry = Entry {
        term: t,
        index: 0,
        payload: EntryPayload::Noop,
    };
    let grown = feed_ignored(
        &mut c,
        2,
        msg(1, 2, t, append((u64::MAX, t), vec![entry], 0)),
    );
    assert_eq!(grown.messages_malformed, 1);
}

/// A term near `u64::MAX` could only come from a broken or hostile peer;
/// adopting it would let the next election overflow the term. Every kind of
/// message carrying one is refused and counted, and the term stays put.
#[test]
fn absurd_terms_are_refused_as_malformed() {
    let mut c = running();
    c.network.clear();
    let bodies = [
        append((4, 3), vec![], 4),
        vote_request((100, 3)),
        MessageBody::TimeoutNow,
        MessageBody::Heartbeat {
            commit: 0,
            read_round: 0,
        },
        MessageBody::HeartbeatResponse { read_round: 0 },
    ];
    for term in [u64::MAX, u64::MAX / 2 + 1] {
        for body in &bodies {
            let grown = feed_ignored(&mut c, 2, msg(1, 2, term, body.clone()));
            assert_eq!(grown.messages_malformed, 1, "term {term}: {body:?}");
        }
    }
}
