//! Servers that lose their storage (`src/storage_loss.rs`): a replica that
//! may have forgotten what it promised neither votes nor campaigns until
//! it holds what the cluster may have counted on; a follower whose
//! committed log its leader contradicts serves no reads.

mod common;

use common::{is_vote_grant, msg, vote_request, Cluster, Disk};
use concord::{
    Action, AppendResponse, Config, Entries, Input, LogPosition, Message, MessageBody, NodeId,
    ReadError, ReadPath, Role, StorageRecovery, StorageRecoveryEvent,
};

/// Three voters that recover empty storage, as every real host's do.
fn recovering_cluster(voters: &[NodeId]) -> Cluster {
    Cluster::configured(voters, |config: &mut Config| {
        config.recover_empty_storage = true;
    })
}

/// Ticks every node and delivers until `id` leads (bounded).
fn run_until_leader(c: &mut Cluster, rounds: usize) -> Option<NodeId> {
    for _ in 0..rounds {
        c.tick_all(1);
        if let Some(leader) = c.leader() {
            return Some(leader);
        }
    }
    None
}

/// Ticks every node and delivers until one of `among` leads (bounded).
fn run_until_leader_among(c: &mut Cluster, among: &[NodeId], rounds: usize) -> Option<NodeId> {
    for _ in 0..rounds {
        c.tick_all(1);
        if let Some(id) = among
            .iter()
            .copied()
            .find(|id| c.node(*id).role() == Role::Leader)
        {
            return Some(id);
        }
    }
    None
}

/// Node `id` loses its disk (a replacement) and starts again, empty.
fn replace_disk(c: &mut Cluster, id: NodeId) {
    c.crash(id);
    *c.disks.get_mut(&id).expect("disk") = Disk::default();
    c.restart(id);
}

/// Three voters that elect and commit three writes; then a follower's
/// disk is replaced. Returns the cluster, the leader and that follower.
fn three_writes_then_a_follower_disk_replaced() -> (Cluster, NodeId, NodeId) {
    let mut c = recovering_cluster(&[1, 2, 3]);
    let leader = run_until_leader(&mut c, 200).expect("leader");
    c.propose_numbered(leader, "w", 3);
    c.tick_all(3);
    let follower = [1, 2, 3].into_iter().find(|id| *id != leader).unwrap();
    replace_disk(&mut c, follower);
    (c, leader, follower)
}

#[test]
fn a_new_cluster_elects_once_every_voter_reported_an_empty_log() {
    let mut c = recovering_cluster(&[1, 2, 3]);
    for id in [1, 2, 3] {
        assert_eq!(
            c.node(id).storage_recovery(),
            StorageRecovery::AwaitingReports
        );
    }
    let leader = run_until_leader(&mut c, 200).expect("a new cluster elects a leader");
    c.propose(leader, "first");
    c.tick_all(5);
    for id in [1, 2, 3] {
        assert_eq!(c.node(id).storage_recovery(), StorageRecovery::None);
        assert_eq!(c.applied_strings(id), vec!["first"]);
    }
}

/// A voter that never started (or never answered) could be one whose disk
/// was replaced, next to one that lagged: a new cluster waits for it.
#[test]
fn a_new_cluster_missing_a_voter_does_not_elect() {
    let mut c = recovering_cluster(&[1, 2, 3]);
    c.isolate(3);
    assert_eq!(run_until_leader(&mut c, 300), None);
    for id in [1, 2] {
        assert_eq!(
            c.node(id).storage_recovery(),
            StorageRecovery::AwaitingReports,
            "node {id} saw only two empty logs of three"
        );
        assert_eq!(c.node(id).stats().elections_started, 0);
    }
    c.heal();
    assert!(run_until_leader(&mut c, 300).is_some());
}

/// The sequence that lost acknowledged writes on real processes: node 2
/// lags, writes commit on {1, 3}, node 3's disk is replaced, node 1 is cut
/// off. Nodes 2 and 3 are a majority, but node 3 must not vote: the writes
/// live only on node 1.
#[test]
fn a_server_with_a_new_disk_does_not_elect_a_peer_that_lacks_the_writes() {
    let mut c = recovering_cluster(&[1, 2, 3]);
    let leader = run_until_leader(&mut c, 200).expect("leader");
    // The leader's followers: one lags (cut off), the other's disk is lost.
    let others: Vec<NodeId> = [1, 2, 3].into_iter().filter(|id| *id != leader).collect();
    let (lagging, victim) = (others[0], others[1]);
    c.isolate(lagging);
    c.propose_numbered(leader, "w", 5);
    c.tick_all(3);
    assert_eq!(c.node(leader).commit_index(), 6, "a no-op and 5 writes");
    assert_eq!(c.node(lagging).commit_index(), 1);
    replace_disk(&mut c, victim);
    c.heal();
    c.isolate(leader);
    // (The old leader, cut off, may still think it leads.)
    assert_eq!(
        run_until_leader_among(&mut c, &[lagging, victim], 300),
        None,
        "the lagging node and the empty one elect no one"
    );
    assert!(c.node(victim).storage_recovery().is_recovering());
    assert!(c.node(victim).stats().votes_refused_recovering > 0);
    assert!(
        c.node(victim).stats().recovery_queries_sent > 0,
        "the empty node asked its peers what they hold"
    );
    // The old leader comes back: it (or a voter holding the writes) leads,
    // the empty node catches up, and the writes are everywhere.
    c.heal();
    let leader_after = run_until_leader(&mut c, 400).expect("a leader once all are back");
    assert_ne!(leader_after, lagging, "the lagging node lacks the writes");
    c.propose(leader_after, "after");
    c.tick_all(40);
    let expected: Vec<String> = (0..5)
        .map(|i| format!("w{i}"))
        .chain(["after".to_string()])
        .collect();
    for id in [1, 2, 3] {
        assert_eq!(c.applied_strings(id), expected, "node {id}");
    }
}

/// The floor a recovering node learns is durable: a restart in the middle
/// does not make it a voter.
#[test]
fn a_restart_in_the_middle_of_a_recovery_goes_on_recovering() {
    let mut c = recovering_cluster(&[1, 2, 3]);
    run_until_leader(&mut c, 200).expect("leader");
    let leader = c.leader().expect("leader");
    c.propose_numbered(leader, "w", 3);
    c.tick_all(3);
    let follower = [1, 2, 3].into_iter().find(|id| *id != leader).unwrap();
    replace_disk(&mut c, follower);
    // Answers arrive, the floor is learned and written with the hard
    // state, the node catches up; the term has not moved past the floor's
    // term, so the node is still recovering.
    c.tick_all(10);
    let recovery = c.node(follower).storage_recovery();
    assert!(
        matches!(recovery, StorageRecovery::CatchingUp { .. }),
        "{recovery:?}"
    );
    assert_eq!(c.disks[&follower].hard_state.recovery, recovery);
    c.crash(follower);
    c.restart(follower);
    assert_eq!(c.node(follower).storage_recovery(), recovery);
    // A new election (a higher term) ends it: the node holds the floor.
    c.crash(leader);
    let new_leader = run_until_leader(&mut c, 400).expect("the other two elect");
    assert_ne!(new_leader, leader);
    c.tick_all(5);
    assert_eq!(c.node(follower).storage_recovery(), StorageRecovery::None);
}

/// The second path: a follower whose disk lost synced entries without its
/// host noticing is told so by its leader, and recovers.
#[test]
fn a_follower_that_lost_an_acknowledged_entry_is_told_to_recover() {
    let mut c = Cluster::elected(&[1, 2, 3], 1);
    c.propose_numbered(1, "c", 6);
    c.tick_all(3);
    c.crash(2);
    c.disks.get_mut(&2).expect("disk").entries.truncate(4);
    c.restart(2);
    assert_eq!(c.node(2).storage_recovery(), StorageRecovery::None);
    c.record_trace = true;
    c.propose(1, "after");
    c.tick_all(40);
    let told = c.trace.iter().any(|(at, action)| {
        *at == 2
            && matches!(
                action,
                Action::StorageRecovery(event) if matches!(
                    **event,
                    StorageRecoveryEvent::AcknowledgedEntryLost { leader: 1, acknowledged }
                        if acknowledged.index == 7
                )
            )
    });
    assert!(told, "node 2 was told it lost index 7");
    assert!(c.node(2).storage_recovery().is_recovering());
    assert_eq!(c.log(2), c.log(1), "and caught up all the same");
}

/// A follower whose committed entry its leader contradicts cannot tell
/// which log is right: it reports it once and serves no read again.
#[test]
fn a_follower_whose_committed_log_is_contradicted_serves_no_reads() {
    let mut c = Cluster::elected(&[1, 2, 3], 1);
    c.propose_numbered(1, "c", 3);
    c.tick_all(3);
    let commit = c.node(2).commit_index();
    let term = c.node(2).term();
    let local_term = c.node(2).term_at(commit).expect("held");
    assert!(commit >= 2 && local_term >= 1);
    c.record_trace = true;
    let contradicting = Message {
        from: 1,
        to: 2,
        term,
        progress_id: 0,
        body: MessageBody::AppendEntries {
            prev: LogPosition::new(commit, local_term - 1),
            entries: Entries::new(),
            leader_commit: commit,
        },
    };
    c.step(2, Input::Receive(contradicting));
    let reported: Vec<_> = c
        .trace
        .iter()
        .filter_map(|(at, action)| match action {
            Action::LogDiverged(divergence) if *at == 2 => Some(*divergence),
            _ => None,
        })
        .collect();
    assert_eq!(reported.len(), 1);
    assert_eq!(
        (
            reported[0].index,
            reported[0].local_term,
            reported[0].leader_term,
            reported[0].leader
        ),
        (commit, local_term, local_term - 1, 1)
    );
    assert_eq!(c.node(2).divergence(), Some(reported[0]));
    c.trace.clear();
    c.step(
        2,
        Input::Read {
            id: 7,
            path: ReadPath::Follower,
        },
    );
    let refused = c.trace.iter().any(|(at, action)| {
        *at == 2
            && matches!(
                action,
                Action::ReadRefused {
                    id: 7,
                    error: ReadError::Diverged { index }
                } if *index == commit
            )
    });
    assert!(refused, "{:?}", c.trace);
    // An ordinary answer to the leader is unaffected: it is not a read.
    assert_eq!(c.node(2).role(), Role::Follower);
}

/// A recovering node answers nothing it may not promise, but its own
/// acknowledgements are real: it holds what it acknowledges.
#[test]
fn a_recovering_node_acknowledges_what_it_holds() {
    let (mut c, leader, follower) = three_writes_then_a_follower_disk_replaced();
    c.record_trace = true;
    // The leader believes the loss only after three refused probes over an
    // election timeout (docs/operations.md), then re-replicates.
    c.tick_all(60);
    let last = c.node(leader).last_index();
    let acknowledged = c.trace.iter().any(|(at, action)| {
        *at == follower
            && matches!(action, Action::Send { message: Message {
                body: MessageBody::AppendEntriesResponse(AppendResponse::Accepted { match_index }),
                ..
            }, .. } if *match_index == last)
    });
    assert!(
        acknowledged,
        "node {follower} never acknowledged index {last}: {:#?}",
        c.trace
            .iter()
            .filter(|(at, action)| *at == follower && matches!(action, Action::Send { .. }))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        c.disks[&follower].entries.last().map(|e| e.index),
        Some(last)
    );
}

/// A disk lost right after its server answered the leader's heartbeat may
/// have held the promise that the leader's lease counts on, and the term
/// that made the promise durable is gone with it: the server starts again
/// holding its votes for a minimum election timeout, as a restart with a
/// term does, though it asks and learns what the others hold at once.
#[test]
fn with_leases_a_server_with_a_new_disk_refuses_votes_for_a_minimum_election_timeout() {
    let mut c = Cluster::configured(&[1, 2, 3], |config: &mut Config| {
        config.recover_empty_storage = true;
        config.lease_read_ticks = 5;
        config.clock_drift_bound_ticks = 4;
    });
    let leader = run_until_leader(&mut c, 200).expect("leader");
    c.propose(leader, "first");
    c.tick_all(3);
    let others: Vec<NodeId> = [1, 2, 3].into_iter().filter(|id| *id != leader).collect();
    let (candidate, victim) = (others[0], others[1]);
    replace_disk(&mut c, victim);
    // The empty server asks at its first tick what the others hold.
    c.step(victim, Input::Tick);
    c.deliver_all();
    assert!(c.node(victim).stats().recovery_queries_sent > 0);
    let term = c.node(candidate).term();
    let last = c.node(candidate).last_position();
    let request = msg(
        candidate,
        victim,
        term + 1,
        vote_request((last.index, last.term)),
    );
    c.network.clear();
    c.step(victim, Input::Receive(request));
    assert!(
        c.network.iter().all(|m| !is_vote_grant(m)),
        "a vote inside the lease the lost disk may have promised"
    );
}

/// A follower restarted in the middle of its recovery has matched none of
/// its leader's appends this incarnation. An idle leader sends nothing new,
/// only heartbeats, so the follower must take their commit index for the
/// entries of the leader's term it holds (found by the simulator's
/// `commit-told`, `--groups swarm` seed 101 on 5 nodes).
#[test]
fn a_follower_restarted_while_recovering_learns_the_commit_from_heartbeats() {
    let (mut c, leader, follower) = three_writes_then_a_follower_disk_replaced();
    // The leader believes the loss after an election timeout of refused
    // probes, then re-replicates.
    c.tick_all(60);
    assert!(c.node(follower).storage_recovery().is_recovering());
    let commit = c.node(leader).commit_index();
    assert_eq!(c.node(follower).commit_index(), commit, "caught up once");
    c.crash(follower);
    c.restart(follower);
    assert!(c.node(follower).storage_recovery().is_recovering());
    assert!(c.node(follower).commit_index() < commit);
    // A few heartbeat intervals, no write.
    c.tick_all(10);
    assert_eq!(c.node(leader).commit_index(), commit, "nothing new");
    assert_eq!(c.node(leader).role(), Role::Leader);
    assert_eq!(
        c.node(follower).commit_index(),
        commit,
        "the restarted follower learned the commit of what it holds"
    );
}

/// A node that lost its storage may have voted in a later term than the
/// leader it now hears and forgotten it: while it waits for its peers'
/// reports, it stores a leader's entries but acknowledges none of them,
/// so that an older leader cannot count it toward a commit over a newer
/// one's log (`concord-sim` seed 5710002841 on 3 nodes, chat: a committed
/// entry lost).
#[test]
fn a_node_awaiting_reports_acknowledges_no_entry() {
    let mut config = common::config(1, &[1, 2, 3]);
    config.recover_empty_storage = true;
    let mut solo = common::Solo::new(config, concord::Recovered::default());
    assert_eq!(
        solo.node.storage_recovery(),
        StorageRecovery::AwaitingReports
    );
    let body = common::append((0, 0), common::log_of(&[7, 7, 7]), 3);
    let mut actions = solo.step(Input::Receive(msg(2, 1, 7, body)));
    if let Some(write) = solo.disk.sync() {
        actions.extend(solo.step(Input::Persisted(write)));
    }
    assert_eq!(solo.disk.entries.len(), 3, "the entries are stored");
    let acknowledged: Vec<_> = common::append_answers(&actions)
        .into_iter()
        .filter(
            |answer| matches!(answer, AppendResponse::Accepted { match_index } if *match_index > 0),
        )
        .collect();
    assert!(acknowledged.is_empty(), "acknowledged {acknowledged:?}");
}

/// The read side of the same rule: while it waits for its peers' reports,
/// a node that lost its storage answers a leader's heartbeat without
/// confirming its read round, so that a stale leader cannot count it
/// toward a ReadIndex or lease read (`concord-sim` seed 5600004625 on 3
/// nodes, chat: a stale read).
#[test]
fn a_node_awaiting_reports_confirms_no_read_round() {
    let mut config = common::config(1, &[1, 2, 3]);
    config.recover_empty_storage = true;
    let mut solo = common::Solo::new(config, concord::Recovered::default());
    let heartbeat = |read_round| MessageBody::Heartbeat {
        commit: 0,
        read_round,
    };
    // The first heartbeat makes the term durable; only an answer given
    // after that could confirm a round.
    solo.step(Input::Receive(msg(2, 1, 7, heartbeat(5))));
    if let Some(write) = solo.disk.sync() {
        solo.step(Input::Persisted(write));
    }
    assert_eq!(solo.disk.hard_state.term, 7, "the term is durable");
    let actions = solo.step(Input::Receive(msg(2, 1, 7, heartbeat(6))));
    let rounds: Vec<u64> = actions
        .iter()
        .filter_map(|action| match action {
            Action::Send { message, .. } => match message.body {
                MessageBody::HeartbeatResponse { read_round } => Some(read_round),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert!(!rounds.is_empty(), "the heartbeat is answered: {actions:?}");
    assert!(
        rounds.iter().all(|round| *round == 0),
        "confirmed {rounds:?}"
    );
}

/// A replica that moved away from a group and back joins it empty, as a
/// learner, and may be sent a snapshot before its first tick asks
/// anyone what they hold. When that snapshot is old enough to name this
/// replica as the group's only voter, the configuration it knows names
/// nobody else; it must still ask the leader it follows, or its recovery
/// never ends and it never acknowledges the snapshot (`concord-sim`
/// seed 94000598 on 5 nodes, `--groups swarm`: a rebalance's move back
/// never caught up).
#[test]
fn a_recovering_learner_asks_its_leader_when_its_snapshot_names_only_itself() {
    let mut config = common::config(1, &[5]);
    config.learners = [1].into();
    config.recover_empty_storage = true;
    let mut solo = common::Solo::new(config, concord::Recovered::default());
    assert_eq!(
        solo.node.storage_recovery(),
        StorageRecovery::AwaitingReports
    );
    let data = bytes::Bytes::from_static(b"state at 12");
    let snapshot = MessageBody::InstallSnapshot(Box::new(concord::SnapshotChunk {
        snapshot: LogPosition::new(12, 4),
        size_bytes: data.len() as u64,
        checksum: concord::checksum64(&data),
        offset: 0,
        data,
        membership: concord::Membership::new([1]),
    }));
    solo.step(Input::Receive(msg(5, 1, 6, snapshot)));
    let asked: Vec<NodeId> = (0..4)
        .flat_map(|_| solo.step(Input::Tick))
        .filter_map(|action| match action {
            Action::Send { message, .. } => {
                matches!(message.body, MessageBody::RecoveryQuery { .. }).then_some(message.to)
            }
            _ => None,
        })
        .collect();
    assert!(asked.contains(&5), "asked only {asked:?}");
}

/// A server that joins a group empty, as a learner of the voters the
/// group had then, may come up only after those voters left: the group
/// is led by a server its configuration does not name. It follows that
/// leader, which is asked too, and the leader's report must count: else
/// the recovery waits for answers from voters that are gone, the learner
/// acknowledges nothing and never catches up (`concord-sim` seed
/// 99970094 on 7 nodes, `--groups swarm`: a learner added while cut off,
/// crashed, and back once the voter it joined had left the group).
#[test]
fn a_recovering_learner_counts_its_leaders_report_when_its_voters_left() {
    let mut config = common::config(5, &[4]);
    config.learners = [5].into();
    config.recover_empty_storage = true;
    let mut solo = common::Solo::new(config, concord::Recovered::default());
    // Node 2 leads the group in term 4 now; node 4 left it.
    let heartbeat = MessageBody::Heartbeat {
        commit: 0,
        read_round: 0,
    };
    solo.step(Input::Receive(msg(2, 5, 4, heartbeat)));
    let nonce = (0..4)
        .flat_map(|_| solo.step(Input::Tick))
        .find_map(|action| match action {
            Action::Send { message, .. } if message.to == 2 => match message.body {
                MessageBody::RecoveryQuery { nonce } => Some(nonce),
                _ => None,
            },
            _ => None,
        })
        .expect("the leader is asked");
    let report = MessageBody::RecoveryReport(Box::new(concord::RecoveryReport {
        nonce,
        recovering: false,
        last_log: LogPosition::new(12, 4),
        configuration: LogPosition::new(10, 4),
        membership: concord::Membership::try_new(&[2], &[5]).unwrap(),
    }));
    solo.step(Input::Receive(msg(2, 5, 4, report)));
    assert!(
        matches!(
            solo.node.storage_recovery(),
            StorageRecovery::CatchingUp { .. }
        ),
        "{:?}",
        solo.node.storage_recovery()
    );
}
