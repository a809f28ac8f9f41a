//! Linearizable reads without log entries: ReadIndex (thesis §6.4),
//! leader leases and follower reads. Each test is named after the rule it
//! checks.
mod common;

use common::*;
use concord::{Action, Config, ConfigError, Input, ReadError, ReadPath, Role};

fn cluster_with(configure: impl Fn(&mut Config)) -> Cluster {
    let mut c = Cluster::configured(&[1, 2, 3], configure);
    c.record_trace = true;
    c
}

fn cluster() -> Cluster {
    cluster_with(|_| {})
}

/// Leases of 5 ticks with a drift bound of 4 (minimum election timeout 10).
fn leases(config: &mut Config) {
    config.lease_read_ticks = 5;
    config.clock_drift_bound_ticks = 4;
}

fn lease_cluster() -> Cluster {
    cluster_with(leases)
}

/// A read's answer: its index and path, or why it was refused.
type Answer = Result<(u64, ReadPath), ReadError>;

/// Answers to reads, by node, in order: (read id, answer).
fn read_answers(c: &Cluster, node: u64) -> Vec<(u64, Answer)> {
    c.trace
        .iter()
        .filter(|(id, _)| *id == node)
        .filter_map(|(_, action)| match action {
            Action::ReadReady { id, index, path } => Some((*id, Ok((*index, *path)))),
            Action::ReadRefused { id, error } => Some((*id, Err(*error))),
            _ => None,
        })
        .collect()
}

fn read(c: &mut Cluster, node: u64, id: u64, path: ReadPath) {
    c.step(node, Input::Read { id, path });
}

/// The leader (node 1) answered exactly the reads `served` (id, path),
/// each at its current commit index.
fn assert_served(c: &Cluster, served: &[(u64, ReadPath)], why: &str) {
    let commit = c.node(1).commit_index();
    let expected: Vec<(u64, Answer)> = served
        .iter()
        .map(|(id, path)| (*id, Ok((commit, *path))))
        .collect();
    assert_eq!(read_answers(c, 1), expected, "{why}");
}

/// [`lease_cluster`] preferring node 3 as leader, with node 1 elected:
/// node 1 hands leadership over at its next heartbeat.
fn lease_cluster_preferring_3() -> Cluster {
    let mut c = cluster_with(|config| {
        leases(config);
        config.priorities.insert(3, 1);
    });
    c.elect(1);
    c
}

/// Node 1 starts its transfer to node 3, which never hears the leader.
fn transfer_to_3_unheard(c: &mut Cluster) {
    c.cut.insert((1, 3));
    for _ in 0..2 {
        c.tick(1);
    }
    c.deliver_all();
    assert_eq!(c.node(1).transfer_target(), Some(3));
}

/// Node 2 asks for follower read `id` with the link `cut` (from, to)
/// cut, so the exchange with the leader stops half way.
fn ask_held(c: &mut Cluster, cut: (u64, u64), id: u64) {
    c.cut.insert(cut);
    read(c, 2, id, ReadPath::Follower);
    c.deliver_all();
}

/// [`ask_held`] on a [`settled`] cluster.
fn follower_read_held(cut: (u64, u64), id: u64) -> Cluster {
    let mut c = settled(cluster());
    ask_held(&mut c, cut, id);
    c
}

/// A [`settled`] cluster in which node `node` is asked for reads 1 to
/// `reads` on `path` in one burst: the first goes out alone, the others
/// arrive while it is out.
fn burst_of_reads(node: u64, path: ReadPath, reads: u64) -> Cluster {
    let mut c = settled(cluster());
    for id in 1..=reads {
        read(&mut c, node, id, path);
    }
    c
}

/// A leader with its first entry committed and applied everywhere.
fn settled(mut c: Cluster) -> Cluster {
    c.elect(1);
    c.propose(1, "x");
    c.deliver_all();
    c.tick_all(3);
    c.trace.clear();
    c
}

#[test]
fn read_index_waits_for_a_quorum_to_answer_a_round_sent_after_it() {
    let mut c = settled(cluster());
    read(&mut c, 1, 7, ReadPath::ReadIndex);
    assert!(
        read_answers(&c, 1).is_empty(),
        "served before any round trip"
    );
    let heartbeats: Vec<_> = c
        .network
        .iter()
        .filter(|m| matches!(m.body, concord::MessageBody::Heartbeat { .. }))
        .cloned()
        .collect();
    assert_eq!(heartbeats.len(), 2, "the read starts a round at once");
    // One follower's answer makes a quorum of three with the leader.
    c.deliver_one();
    c.deliver_one();
    assert!(read_answers(&c, 1).is_empty());
    c.deliver_one();
    assert_served(&c, &[(7, ReadPath::ReadIndex)], "a quorum with the leader");
}

#[test]
fn read_index_appends_nothing_to_the_log() {
    let mut c = settled(cluster());
    let last = c.node(1).last_index();
    for id in 0..50 {
        read(&mut c, 1, id, ReadPath::ReadIndex);
        c.deliver_all();
    }
    assert_eq!(read_answers(&c, 1).len(), 50);
    assert!(read_answers(&c, 1).iter().all(|(_, answer)| answer.is_ok()));
    for id in c.ids() {
        assert_eq!(
            c.node(id).last_index(),
            last,
            "node {id}'s log grew from reads"
        );
    }
}

#[test]
fn one_round_confirms_every_read_that_arrived_before_it() {
    // Reads 2 to 20 arrive while round 1 is out: they join the next round.
    let mut c = burst_of_reads(1, ReadPath::ReadIndex, 20);
    let heartbeats = c
        .network
        .iter()
        .filter(|m| matches!(m.body, concord::MessageBody::Heartbeat { .. }))
        .count();
    assert_eq!(heartbeats, 2, "one round for the burst, not one per read");
    c.deliver_all();
    let answers = read_answers(&c, 1);
    assert_eq!(answers.len(), 20);
    assert!(answers.iter().all(|(_, answer)| answer.is_ok()));
    // Two rounds in all: the first, then one for everything after it.
    let rounds = c
        .trace
        .iter()
        .filter(|(id, action)| {
            *id == 1
                && matches!(action, Action::Send { message, .. }
                    if matches!(message.body, concord::MessageBody::Heartbeat { .. }))
        })
        .count();
    assert_eq!(rounds, 4, "two rounds of two heartbeats");
}

#[test]
fn read_index_waits_until_the_leader_commits_an_entry_of_its_term() {
    let mut c = cluster();
    // Elect node 1, and lose the appends carrying its no-op.
    for _ in 0..200 {
        c.tick(1);
        while c.node(1).role() != Role::Leader && c.deliver_one().is_some() {}
        if c.node(1).role() == Role::Leader {
            break;
        }
    }
    assert_eq!(c.node(1).role(), Role::Leader);
    c.take_messages();
    let noop = c.node(1).last_index();
    assert!(c.node(1).commit_index() < noop);
    c.trace.clear();
    read(&mut c, 1, 1, ReadPath::ReadIndex);
    // The round is answered by everyone, but appends keep getting lost.
    while let Some(message) = c.network.pop_front() {
        if !matches!(message.body, concord::MessageBody::AppendEntries { .. }) {
            let to = message.to;
            c.step(to, Input::Receive(message));
        }
    }
    assert!(
        read_answers(&c, 1).is_empty(),
        "served before the leader committed an entry of its term"
    );
    // The next heartbeat's answers bring the no-op along: it commits.
    c.tick_all(3);
    let answers = read_answers(&c, 1);
    assert_eq!(answers.len(), 1);
    let (id, Ok((index, ReadPath::ReadIndex))) = answers[0] else {
        panic!("read not served: {answers:?}");
    };
    assert_eq!(id, 1);
    assert!(
        index >= noop,
        "read index {index} is below the no-op {noop}"
    );
}

#[test]
fn read_is_refused_with_a_hint_by_a_follower_for_leader_paths() {
    let mut c = settled(cluster());
    read(&mut c, 2, 3, ReadPath::ReadIndex);
    read(&mut c, 2, 4, ReadPath::Lease);
    assert_eq!(
        read_answers(&c, 2),
        vec![
            (
                3,
                Err(ReadError::NotLeader {
                    leader_hint: Some(1)
                })
            ),
            (
                4,
                Err(ReadError::NotLeader {
                    leader_hint: Some(1)
                })
            ),
        ]
    );
}

#[test]
fn pending_reads_are_refused_when_the_leader_steps_down() {
    let mut c = settled(cluster());
    c.isolate(1);
    read(&mut c, 1, 9, ReadPath::ReadIndex);
    let min = c.configs[&1].election_timeout_min_ticks;
    for _ in 0..2 * min + 1 {
        c.tick(1);
    }
    assert_eq!(c.node(1).role(), Role::Follower);
    assert_eq!(
        read_answers(&c, 1),
        vec![(9, Err(ReadError::LeadershipLost { leader_hint: None }))]
    );
}

#[test]
fn reads_beyond_the_pending_bound_are_refused() {
    let mut c = settled(cluster_with(|config| config.read_requests_pending_max = 3));
    for id in 0..5 {
        read(&mut c, 1, id, ReadPath::ReadIndex);
    }
    let refused: Vec<_> = read_answers(&c, 1)
        .into_iter()
        .filter(|(_, answer)| *answer == Err(ReadError::Backpressure))
        .map(|(id, _)| id)
        .collect();
    assert_eq!(refused, vec![3, 4]);
}

#[test]
fn lease_read_is_served_without_a_round_trip_while_a_quorum_answered_recently() {
    let mut c = settled(lease_cluster());
    read(&mut c, 1, 5, ReadPath::Lease);
    assert_served(&c, &[(5, ReadPath::Lease)], "a read under the lease");
    assert!(c.network.is_empty(), "a lease read sends nothing");
}

#[test]
fn lease_lapses_lease_ticks_after_the_last_answered_round_was_sent() {
    let mut c = settled(lease_cluster());
    c.isolate(1);
    // The last round a quorum answered was sent during `settled`; ticks
    // without answers run the lease out.
    for _ in 0..5 {
        c.tick(1);
    }
    read(&mut c, 1, 6, ReadPath::Lease);
    assert!(
        read_answers(&c, 1).is_empty(),
        "served under a lapsed lease; it must fall back to a round"
    );
    // The round sent with the read was lost; the next heartbeat's round
    // confirms it.
    c.heal();
    c.tick_all(2);
    assert_served(
        &c,
        &[(6, ReadPath::ReadIndex)],
        "confirmed by the next round",
    );
}

#[test]
fn lease_is_not_used_while_leadership_is_being_transferred() {
    // Node 3 is preferred: the leader hands over at its next heartbeat,
    // but node 3 never hears the leader's TimeoutNow.
    let mut c = lease_cluster_preferring_3();
    // The first read's round, once answered, starts the lease.
    read(&mut c, 1, 6, ReadPath::Lease);
    c.deliver_all();
    read(&mut c, 1, 7, ReadPath::Lease);
    assert_served(
        &c,
        &[(6, ReadPath::ReadIndex), (7, ReadPath::Lease)],
        "the lease holds before the transfer",
    );
    c.trace.clear();
    transfer_to_3_unheard(&mut c);
    read(&mut c, 1, 8, ReadPath::Lease);
    assert_eq!(
        read_answers(&c, 1),
        vec![(8, Err(ReadError::TransferInProgress { target: 3 }))]
    );
}

#[test]
fn lease_stays_void_for_the_term_after_a_transfer_is_given_up() {
    // Node 3 never hears the leader's TimeoutNow, and the leader gives
    // the transfer up. Node 3 may still campaign (a TimeoutNow or a vote
    // request of its campaign delayed in the network), and voters let
    // such a campaign past their stickiness: a round answered after the
    // give-up must not grant a lease (the simulator's lease nemesis,
    // `TransferGivenUp`, found a stale read when it did).
    let mut c = lease_cluster_preferring_3();
    transfer_to_3_unheard(&mut c);
    // The preferred node stays silent, so the leader does not start the
    // transfer again once it gives up.
    c.cut.insert((3, 1));
    for _ in 0..10 {
        c.tick(1);
        c.deliver_all();
    }
    assert_eq!(c.node(1).transfer_target(), None, "the transfer timed out");
    assert_eq!(c.node(1).role(), Role::Leader);
    c.trace.clear();
    // A read confirmed by a round sent after the give-up...
    read(&mut c, 1, 9, ReadPath::Lease);
    c.deliver_all();
    // ...and one right after it: no lease either.
    read(&mut c, 1, 10, ReadPath::Lease);
    c.deliver_all();
    assert_served(
        &c,
        &[(9, ReadPath::ReadIndex), (10, ReadPath::ReadIndex)],
        "a lease served after a given-up transfer",
    );
}

#[test]
fn lease_without_check_quorum_is_refused_by_validation() {
    let mut config = Config::new(1, [1, 2, 3]);
    config.check_quorum = false;
    config.lease_read_ticks = 3;
    assert_eq!(config.validate(), Err(ConfigError::LeaseWithoutCheckQuorum));
}

#[test]
fn lease_that_leaves_no_room_for_the_drift_bound_is_refused_by_validation() {
    let mut config = Config::new(1, [1, 2, 3]);
    config.lease_read_ticks = 8;
    config.clock_drift_bound_ticks = 2;
    assert_eq!(
        config.validate(),
        Err(ConfigError::LeaseTooLong {
            lease: 8,
            drift: 2,
            election: 10
        })
    );
    config.lease_read_ticks = 7;
    assert_eq!(config.validate(), Ok(()));
}

#[test]
fn with_leases_a_restarted_node_refuses_votes_for_a_minimum_election_timeout() {
    let mut c = settled(lease_cluster());
    c.crash(2);
    c.restart(2);
    // Node 3 asks node 2 for a vote at once: refused (node 2 may have
    // answered node 1's heartbeat just before it restarted).
    let term = c.node(3).term();
    let last = c.node(3).last_position();
    let request = msg(3, 2, term + 1, vote_request((last.index, last.term)));
    c.trace.clear();
    c.step(2, Input::Receive(request));
    assert!(c.network.iter().all(|m| !is_vote_grant(m)));
    assert_eq!(
        c.node(2).term(),
        term,
        "a refused vote does not move the term"
    );
}

#[test]
fn follower_read_is_served_once_the_follower_applied_the_leaders_read_index() {
    let mut c = settled(cluster());
    // Node 2 stops hearing about commits: the leader's next entry commits
    // with node 3 only.
    c.cut.insert((1, 2));
    c.propose(1, "y");
    c.deliver_all();
    let commit = c.node(1).commit_index();
    assert!(c.node(2).applied_index() < commit);
    c.cut.clear();
    // The request goes to the leader; the answer comes back before node 2
    // has the entry.
    read(&mut c, 2, 11, ReadPath::Follower);
    c.deliver_one(); // ReadIndexRequest to 1: starts a round.
    while !c
        .network
        .iter()
        .any(|m| matches!(m.body, concord::MessageBody::ReadIndexResponse { .. }))
    {
        assert!(c.deliver_one().is_some(), "no answer came");
    }
    let answer = c
        .network
        .iter()
        .position(|m| matches!(m.body, concord::MessageBody::ReadIndexResponse { .. }))
        .unwrap();
    let message = c.network.remove(answer).unwrap();
    c.step(2, Input::Receive(message));
    if c.node(2).applied_index() < commit {
        assert!(
            read_answers(&c, 2).is_empty(),
            "served before applying the read index"
        );
    }
    c.deliver_all();
    c.tick_all(3);
    assert_eq!(
        read_answers(&c, 2),
        vec![(11, Ok((commit, ReadPath::Follower)))]
    );
    assert!(c.node(2).applied_index() >= commit);
}

#[test]
fn follower_read_is_refused_when_the_leader_changes_before_it_answers() {
    let mut c = follower_read_held((1, 2), 12);
    // A newer term arrives before the leader's answer.
    let term = c.node(2).term();
    let heartbeat = concord::MessageBody::Heartbeat {
        commit: 0,
        read_round: 1,
    };
    c.step(2, Input::Receive(msg(3, 2, term + 1, heartbeat)));
    assert_eq!(
        read_answers(&c, 2),
        vec![(
            12,
            Err(ReadError::LeadershipLost {
                leader_hint: Some(3)
            })
        )]
    );
}

#[test]
fn follower_read_unanswered_for_an_election_timeout_is_refused() {
    let mut c = follower_read_held((2, 1), 13);
    let min = c.configs[&2].election_timeout_min_ticks;
    for _ in 0..min {
        c.tick(2);
    }
    assert_eq!(read_answers(&c, 2), vec![(13, Err(ReadError::Timeout))]);
}

#[test]
fn follower_reads_arriving_while_a_request_is_out_share_the_next_request() {
    let mut c = burst_of_reads(2, ReadPath::Follower, 6);
    let requests = |c: &Cluster| {
        c.trace
            .iter()
            .filter(|(id, action)| {
                *id == 2
                    && matches!(action, Action::Send { message, .. }
                        if matches!(message.body, concord::MessageBody::ReadIndexRequest { .. }))
            })
            .count()
    };
    assert_eq!(requests(&c), 1, "one request outstanding at a time");
    c.deliver_all();
    c.tick_all(2);
    let answers = read_answers(&c, 2);
    assert_eq!(answers.len(), 6);
    assert!(
        answers.iter().all(|(_, answer)| answer.is_ok()),
        "{answers:?}"
    );
    assert_eq!(requests(&c), 2, "the five later reads shared one request");
}

#[test]
fn follower_read_ignores_an_answer_addressed_to_an_earlier_incarnation() {
    // Node 2 asks; the leader's answer is held in the network.
    let mut c = follower_read_held((1, 2), 21);
    let old_request = c
        .trace
        .iter()
        .find_map(|(id, action)| match action {
            Action::Send { message, .. } if *id == 2 => match message.body {
                concord::MessageBody::ReadIndexRequest { request } => Some(request),
                _ => None,
            },
            _ => None,
        })
        .expect("node 2 asked the leader");
    // Node 2 restarts with a fresh seed, as every start should.
    c.crash(2);
    c.configs.get_mut(&2).unwrap().seed ^= 0x5eed;
    c.restart(2);
    c.cut.clear();
    c.tick_all(3);
    c.deliver_all();
    c.trace.clear();
    ask_held(&mut c, (1, 2), 22);
    // The answer to the earlier incarnation's request arrives, in the
    // current term, with an index the new read must not be served at.
    let term = c.node(2).term();
    let stale = concord::MessageBody::ReadIndexResponse {
        request: old_request,
        index: Some(1),
    };
    c.step(2, Input::Receive(msg(1, 2, term, stale)));
    assert!(
        read_answers(&c, 2).is_empty(),
        "a read was served on an answer to a request this incarnation never sent"
    );
}

/// Found by the simulator's `vote-hold` rule (multi-group seed
/// 84 of `run --groups swarm --nodes 3`): a follower inside its leader
/// lease that learns of a newer term from an answer (here a refused
/// pre-vote) must keep refusing votes in that term until the promise it
/// gave its leader runs out; before the fix it took the newer term with
/// no leader and granted the next vote request at once, while its leader
/// could still serve lease reads counting on it.
#[test]
fn with_leases_a_follower_keeps_its_promise_into_a_newer_term_an_answer_names() {
    let mut c = settled(lease_cluster());
    let term = c.node(2).term();
    assert_eq!(c.node(2).leader(), Some(1));
    // Node 3's refusal of a pre-vote node 2 never sent (a late answer of
    // an earlier campaign) names term + 1.
    let refusal = msg(
        3,
        2,
        term + 1,
        concord::MessageBody::RequestVoteResponse {
            pre_vote: true,
            granted: false,
        },
    );
    c.step(2, Input::Receive(refusal));
    assert_eq!(
        c.node(2).term(),
        term + 1,
        "an answer's newer term is taken"
    );
    // Node 3 asks for node 2's vote in that term, inside node 2's promise.
    let last = c.node(3).last_position();
    let request = msg(3, 2, term + 1, vote_request((last.index, last.term)));
    c.trace.clear();
    c.step(2, Input::Receive(request));
    c.sync(2);
    assert_eq!(c.node(2).voted_for(), None, "no vote inside the promise");
    assert!(c.network.iter().all(|m| !is_vote_grant(m)));
    // Once an election timeout has passed, it votes again.
    for _ in 0..10 {
        c.tick(2);
    }
    let request = msg(3, 2, term + 1, vote_request((last.index, last.term)));
    c.step(2, Input::Receive(request));
    c.sync(2);
    assert_eq!(c.node(2).voted_for(), Some(3), "the promise ran out");
}

/// Found by the simulator's `vote-hold` (`run --groups 64
/// --nodes 3`, seed 610124): a heartbeat was answered, its round
/// confirmed, before the term it names was durable, so a node that
/// crashed right after answering could recover no term at all, and with
/// it no vote hold after the restart (a node that recovered no term holds
/// nothing): it voted at once, inside the lease its answer gave the
/// leader. An answer now confirms a round only once its term is durable.
#[test]
fn with_leases_a_heartbeat_answer_confirms_no_round_before_its_term_is_durable() {
    let mut c = lease_cluster();
    // Node 2 syncs only when told: its term stays in memory.
    c.auto_sync.remove(&2);
    let term = c.elect(1);
    c.tick_all(3);
    assert_eq!(c.node(2).term(), term);
    let answers = |c: &Cluster| -> Vec<u64> {
        c.trace
            .iter()
            .filter_map(|(id, action)| match action {
                Action::Send { to: 1, message } if *id == 2 => match message.body {
                    concord::MessageBody::HeartbeatResponse { read_round } => Some(read_round),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    };
    let before = answers(&c);
    assert!(
        !before.is_empty(),
        "node 2 answered the leader's heartbeats"
    );
    assert!(
        before.iter().all(|round| *round == 0),
        "answers before node 2's term is durable confirm no round: {before:?}"
    );
    // Crashed now, node 2 comes back with no term and holds no vote, and
    // none of its answers counted.
    c.sync(2);
    c.trace.clear();
    c.tick_all(3);
    let after = answers(&c);
    assert!(
        after.iter().any(|round| *round > 0),
        "once its term is durable, its answers confirm rounds: {after:?}"
    );
}

/// Found by the simulator's `read-fresh` (`run --nodes 5`, seed
/// 610874): a leader that removed itself from the voters leads on until
/// the configuration without it commits, its rounds answered by the new
/// voters alone. When one voter is left, it campaigns at its first tick
/// (a lone voter waits for no one) and commits in a newer term while the
/// old leader's lease, counted on its answers, still ran: the old leader
/// served a lease read at a stale index. A leader that is not a voter
/// serves no lease.
#[test]
fn a_leader_that_removed_itself_serves_no_lease_read() {
    let mut c = settled(lease_cluster());
    c.step(
        1,
        Input::ChangeMembership(concord::MembershipChange::Remove(1)),
    );
    // The joint configuration commits and the leader leaves it; the
    // entry leaving it is not yet committed when the read arrives.
    for _ in 0..40 {
        if !c.node(1).membership().is_joint() && !c.node(1).membership().is_voter(1) {
            break;
        }
        c.deliver_one();
    }
    assert!(!c.node(1).membership().is_voter(1), "node 1 removed itself");
    assert_eq!(c.node(1).role(), Role::Leader, "and still leads");
    c.trace.clear();
    read(&mut c, 1, 9, ReadPath::Lease);
    assert!(
        read_answers(&c, 1)
            .iter()
            .all(|(_, answer)| !matches!(answer, Ok((_, ReadPath::Lease)))),
        "a lease read served by a leader outside the voters: {:?}",
        read_answers(&c, 1)
    );
}
