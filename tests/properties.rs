//! Properties checked by proptest: quorum arithmetic against brute force,
//! and a node fed arbitrary sequences of arbitrary messages never panics
//! and never breaks its invariants (term and commit never go back, commit
//! never passes the log).
mod common;

use bytes::Bytes;
use common::*;
use concord::quorum::{majority, quorum_index, vote_result, VoteResult};
use concord::{
    checksum64, AppendResponse, Config, Entry, EntryPayload, Input, LogPosition, Membership,
    Message, MessageBody, ReadPath, Recovered, Snapshot, SnapshotChunk,
};
use proptest::prelude::*;

proptest! {
    /// The quorum index is the largest x such that a majority of the match
    /// indices are at least x.
    #[test]
    fn quorum_index_matches_brute_force(indices in prop::collection::vec(0u64..20, 1..10)) {
        let n = indices.len();
        let brute = (0..=20u64)
            .rev()
            .find(|x| 2 * indices.iter().filter(|i| **i >= *x).count() > n)
            .expect("0 is reached by all");
        let mut scratch = indices.clone();
        prop_assert_eq!(quorum_index(&mut scratch), brute);
        prop_assert_eq!(2 * majority(n) > n && 2 * (majority(n) - 1) <= n, true);
    }

    /// An election is won with a strict majority of grants, lost when even
    /// every outstanding vote could not make one, and pending otherwise.
    #[test]
    fn vote_result_agrees_with_counting(
        (voters, granted, rejected) in (1usize..12)
            .prop_flat_map(|n| (Just(n), 0..=n))
            .prop_flat_map(|(n, g)| (Just(n), Just(g), 0..=n - g))
    ) {
        let outstanding = voters - granted - rejected;
        let expected = if 2 * granted > voters {
            VoteResult::Won
        } else if 2 * (granted + outstanding) <= voters {
            VoteResult::Lost
        } else {
            VoteResult::Pending
        };
        prop_assert_eq!(vote_result(voters, granted, rejected), expected);
    }
}

/// Entries after `prev`: usually well formed (contiguous, terms non-
/// decreasing and at most `term`), sometimes arbitrary.
/// Mostly small indices (so messages interact with the log), sometimes
/// extreme ones (so overflow paths are exercised).
fn arb_index() -> impl Strategy<Value = u64> {
    prop_oneof![20 => 0u64..20, 1 => Just(u64::MAX), 1 => Just(u64::MAX - 1), 1 => any::<u64>()]
}

/// Mostly small terms, sometimes absurd ones a hostile peer might send.
fn arb_term() -> impl Strategy<Value = u64> {
    prop_oneof![20 => 0u64..8, 1 => Just(u64::MAX), 1 => any::<u64>()]
}

fn arb_entries(prev: LogPosition, term: u64) -> impl Strategy<Value = Vec<Entry>> {
    let well_formed = prop::collection::vec(0u64..2, 0..4).prop_map(move |bumps| {
        let mut t = prev.term;
        bumps
            .iter()
            .enumerate()
            .map(|(i, bump)| {
                t = t.saturating_add(*bump).min(term.max(prev.term));
                Entry {
                    term: t,
                    index: prev.index.wrapping_add(1 + i as u64),
                    payload: EntryPayload::Command(Bytes::from(vec![i as u8; i])),
                }
            })
            .collect()
    });
    let arbitrary = prop::collection::vec((0u64..20, 0u64..8), 0..4).prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(index, term)| Entry {
                term,
                index,
                payload: EntryPayload::Noop,
            })
            .collect()
    });
    prop_oneof![4 => well_formed, 1 => arbitrary]
}

fn arb_position() -> impl Strategy<Value = LogPosition> {
    (arb_index(), 0u64..8).prop_map(|(index, term)| LogPosition::new(index, term))
}

fn arb_body(term: u64) -> impl Strategy<Value = MessageBody> {
    prop_oneof![
        (any::<bool>(), arb_position(), any::<bool>()).prop_map(
            |(pre_vote, last_log, transfer)| {
                MessageBody::RequestVote {
                    pre_vote,
                    last_log,
                    transfer,
                }
            }
        ),
        (any::<bool>(), any::<bool>())
            .prop_map(|(pre_vote, granted)| MessageBody::RequestVoteResponse { pre_vote, granted }),
        (arb_position(), arb_index()).prop_flat_map(move |(prev, leader_commit)| {
            arb_entries(prev, term).prop_map(move |entries| MessageBody::AppendEntries {
                prev,
                entries: entries.into(),
                leader_commit,
            })
        }),
        (arb_index()).prop_map(|match_index| {
            MessageBody::AppendEntriesResponse(AppendResponse::Accepted { match_index })
        }),
        (arb_index(), arb_index(), 0u64..8).prop_map(|(rejected_index, hint_index, hint_term)| {
            MessageBody::AppendEntriesResponse(AppendResponse::Rejected {
                rejected_index,
                hint_index,
                hint_term,
            })
        }),
        (arb_index(), 0u64..16)
            .prop_map(|(commit, read_round)| MessageBody::Heartbeat { commit, read_round }),
        (0u64..16).prop_map(|read_round| MessageBody::HeartbeatResponse { read_round }),
        (arb_position(), arb_index())
            .prop_map(|(last, commit)| MessageBody::CommitNotice { last, commit }),
        (0u64..16).prop_map(|request| MessageBody::ReadIndexRequest { request }),
        (
            0u64..16,
            prop_oneof![Just(None), arb_index().prop_map(Some)]
        )
            .prop_map(|(request, index)| MessageBody::ReadIndexResponse { request, index }),
        Just(MessageBody::TimeoutNow),
        (
            arb_position(),
            prop::collection::vec(any::<u8>(), 0..8),
            prop_oneof![3 => Just(0u64), 1 => arb_index()],
            prop_oneof![2 => Just(None), 1 => arb_index().prop_map(Some)],
            any::<bool>(),
            prop_oneof![3 => Just(Membership::new([1, 2, 3])), 1 => Just(Membership::default())],
        )
            .prop_map(
                |(snapshot, data, offset, size, good_checksum, membership)| {
                    let size_bytes =
                        size.unwrap_or_else(|| offset.saturating_add(data.len() as u64));
                    let checksum = if good_checksum { checksum64(&data) } else { 7 };
                    MessageBody::InstallSnapshot(Box::new(SnapshotChunk {
                        snapshot,
                        size_bytes,
                        checksum,
                        offset,
                        data: Bytes::from(data),
                        membership,
                    }))
                }
            ),
        (arb_position(), arb_index(), any::<bool>()).prop_map(|(snapshot, next_offset, rewind)| {
            MessageBody::InstallSnapshotResponse {
                snapshot,
                next_offset,
                rewind,
            }
        }),
    ]
}

fn arb_message() -> impl Strategy<Value = Message> {
    let from = prop_oneof![8 => 2u64..4, 1 => 0u64..6];
    let to = prop_oneof![9 => Just(1u64), 1 => 0u64..5];
    (from, to, arb_term(), 0u64..4).prop_flat_map(|(from, to, term, progress_id)| {
        arb_body(term).prop_map(move |body| Message {
            from,
            to,
            term,
            progress_id,
            body,
        })
    })
}

#[derive(Clone, Debug)]
enum Op {
    Receive(Message),
    Tick(u8),
    Sync,
    Propose,
    /// The host snapshots at its applied index.
    Snapshot,
    /// A client read on one of the paths.
    Read(u64, ReadPath),
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => arb_message().prop_map(Op::Receive),
        2 => (1u8..12).prop_map(Op::Tick),
        2 => Just(Op::Sync),
        1 => Just(Op::Propose),
        1 => Just(Op::Snapshot),
        1 => (0u64..16, prop_oneof![
            Just(ReadPath::ReadIndex),
            Just(ReadPath::Lease),
            Just(ReadPath::Follower)
        ])
        .prop_map(|(id, path)| Op::Read(id, path)),
    ]
}

fn arb_start() -> impl Strategy<Value = (Recovered, bool, bool)> {
    let recovered = prop_oneof![
        Just(Recovered::default()),
        Just(recovered(3, None, &[1, 1, 2, 3])),
        Just(Recovered {
            applied_index: 2,
            ..recovered(4, Some(2), &[1, 2, 2, 4, 4])
        }),
    ];
    (recovered, any::<bool>(), any::<bool>())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Arbitrary messages interleaved with ticks, syncs and proposals never
    /// panic the node, and never move its term or commit index back or its
    /// commit index past its log.
    #[test]
    fn arbitrary_messages_never_break_node_invariants(
        (start, pre_vote, check_quorum) in arb_start(),
        ops in prop::collection::vec(arb_op(), 1..60),
    ) {
        let mut cfg: Config = config(1, &[1, 2, 3]);
        cfg.pre_vote = pre_vote;
        cfg.check_quorum = check_quorum;
        cfg.election_timeout_min_ticks = 4;
        cfg.election_timeout_max_ticks = 8;
        cfg.heartbeat_interval_ticks = 1;
        cfg.append_entries_max = 2;
        cfg.inflight_messages_max = 2;
        cfg.compaction_trailing_entries = 1;
        cfg.snapshot_chunk_bytes_max = 16;
        if check_quorum {
            cfg.lease_read_ticks = 2;
            cfg.clock_drift_bound_ticks = 1;
        }
        let mut n = Solo::new(cfg, start);
        let (mut term, mut commit) = (n.node.term(), n.node.commit_index());
        for op in ops {
            match op {
                Op::Receive(message) => { n.receive(message); }
                Op::Tick(count) => { n.ticks(count as usize); }
                Op::Sync => { n.sync(); }
                Op::Propose => { n.step(Input::Propose(Bytes::from_static(b"p"))); }
                Op::Read(id, path) => { n.step(Input::Read { id, path }); }
                Op::Snapshot => {
                    let applied = n.node.applied_index();
                    if let Some(term) = n.node.term_at(applied) {
                        let position = LogPosition::new(applied, term);
                        let snapshot = Snapshot::new(position, Bytes::from(vec![1u8; 40]));
                        n.step(Input::Snapshotted(snapshot.meta()));
                    }
                }
            }
            let node = &n.node;
            prop_assert!(node.term() >= term, "term went back");
            prop_assert!(node.commit_index() >= commit, "commit went back");
            prop_assert!(node.commit_index() <= node.last_index(), "commit past the log");
            prop_assert!(node.persisted_index() <= node.last_index());
            prop_assert!(node.log_base().index <= node.commit_index());
            term = node.term();
            commit = node.commit_index();
        }
    }
}
