//! Membership changes (thesis §4): configurations in force when appended,
//! joint consensus, learners, one change at a time, removed nodes.

mod common;

use common::{config, Cluster, Disk};
use concord::{
    Action, Config, ConfigError, Input, LogPosition, Membership, MembershipChange, MembershipError,
    Message, MessageBody, Node, NodeId, ProposeError, ReadError, ReadPath, Recovered, Role,
    TransferError, TransferOutcome,
};

/// Adds node `id` to the harness as a replica joining a running cluster of
/// `voters` (it lists itself as a learner until the log tells it more).
fn join(c: &mut Cluster, id: NodeId, voters: &[NodeId]) {
    let mut cfg = config(id, voters);
    cfg.voters = voters.iter().copied().collect();
    cfg.learners = [id].into();
    c.nodes
        .insert(id, Node::new(cfg.clone(), Recovered::default()).unwrap());
    c.configs.insert(id, cfg);
    c.disks.insert(id, Disk::default());
    c.auto_sync.insert(id);
    c.applied.insert(id, Vec::new());
    c.applied_position.insert(id, LogPosition::ZERO);
}

fn change(c: &mut Cluster, leader: NodeId, change: MembershipChange) -> Result<u64, ProposeError> {
    c.record_trace = true;
    c.trace.clear();
    c.step(leader, Input::ChangeMembership(change));
    let answer = c.trace.iter().find_map(|(_, action)| match action {
        Action::ProposalAccepted { first_index, .. } => Some(Ok(*first_index)),
        Action::ProposalRefused { error, .. } => Some(Err(*error)),
        _ => None,
    });
    c.record_trace = false;
    answer.expect("the change was answered")
}

/// Ticks only `ids` until one of them leads; returns it.
fn elect_among(c: &mut Cluster, ids: &[NodeId]) -> NodeId {
    for _ in 0..500 {
        for id in ids {
            c.tick(*id);
        }
        c.deliver_all();
        if let Some(id) = ids.iter().find(|id| c.node(**id).role() == Role::Leader) {
            return *id;
        }
    }
    panic!("none of {ids:?} became leader");
}

fn voters(m: &Membership) -> Vec<NodeId> {
    m.voters.iter().copied().collect()
}

#[test]
fn a_configuration_is_in_force_when_appended_not_when_committed() {
    let mut c = Cluster::elected(&[1, 2, 3], 1);
    // Node 2 hears the leader but its answers are lost; node 3 hears
    // nothing: the entry cannot commit.
    c.cut.insert((2, 1));
    c.partition(&[1], &[3]);
    let index = change(&mut c, 1, MembershipChange::Remove(3)).unwrap();
    c.deliver_all();
    let leader = c.node(1);
    assert!(leader.commit_index() < index);
    assert!(leader.membership().is_joint());
    assert_eq!(leader.membership_index(), index);
    let follower = c.node(2);
    assert!(follower.last_index() >= index);
    assert!(follower.commit_index() < index);
    assert_eq!(follower.membership(), c.node(1).membership());
    assert_eq!(c.node(3).membership(), &Membership::new([1, 2, 3]));
}

#[test]
fn a_configuration_is_rolled_back_when_its_entry_is_truncated() {
    let mut c = Cluster::elected(&[1, 2, 3], 1);
    c.isolate(1);
    change(&mut c, 1, MembershipChange::AddLearner(4)).unwrap();
    assert!(c.node(1).membership().is_learner(4));
    let leader = elect_among(&mut c, &[2, 3]);
    c.propose(leader, "x");
    c.deliver_all();
    c.heal();
    c.tick_all(5);
    assert_eq!(c.node(1).membership(), &Membership::new([1, 2, 3]));
    assert_eq!(c.node(1).role(), Role::Follower);
}

#[test]
fn the_joint_configuration_is_left_automatically_once_it_commits() {
    let mut c = Cluster::elected(&[1, 2, 3], 1);
    join(&mut c, 4, &[1, 2, 3]);
    change(&mut c, 1, MembershipChange::AddVoter(4)).unwrap();
    c.tick_all(3);
    for id in 1..=4 {
        let m = c.node(id).membership();
        assert!(!m.is_joint(), "node {id}: {m:?}");
        assert_eq!(voters(m), vec![1, 2, 3, 4], "node {id}");
    }
    assert!(c.node(1).commit_index() >= c.node(1).membership_index());
    c.propose(1, "after");
    c.tick_all(2);
    assert_eq!(c.applied_strings(4), vec!["after".to_string()]);
}

#[test]
fn a_joint_configuration_decides_only_with_majorities_of_both() {
    // C_old = {1,2,3}, C_new = {1,2}: nodes 1 and 3 are a majority of C_old
    // but not of C_new.
    let mut c = Cluster::elected(&[1, 2, 3], 1);
    c.isolate(2);
    let index = change(&mut c, 1, MembershipChange::Remove(3)).unwrap();
    c.tick_all(5);
    assert_eq!(c.node(3).last_index(), index);
    assert!(c.node(1).commit_index() < index);
    c.heal();
    c.tick_all(5);
    assert!(c.node(1).commit_index() > index);
    assert_eq!(voters(c.node(1).membership()), vec![1, 2]);
}

#[test]
fn a_second_change_is_refused_while_one_is_in_progress() {
    let mut c = Cluster::elected(&[1, 2, 3], 1);
    c.isolate(1);
    let index = change(&mut c, 1, MembershipChange::AddLearner(4)).unwrap();
    assert_eq!(
        change(&mut c, 1, MembershipChange::AddLearner(5)),
        Err(ProposeError::Membership(
            MembershipError::ChangeInProgress { index }
        ))
    );
    c.heal();
    c.tick_all(3);
    change(&mut c, 1, MembershipChange::AddLearner(5)).unwrap();
}

#[test]
fn invalid_changes_are_refused_with_an_actionable_error() {
    let mut c = Cluster::elected(&[1], 1);
    assert_eq!(
        change(&mut c, 1, MembershipChange::Remove(1)),
        Err(ProposeError::Membership(
            MembershipError::RemovesLastVoter { id: 1 }
        ))
    );
    assert_eq!(
        change(&mut c, 1, MembershipChange::AddVoter(1)),
        Err(ProposeError::Membership(MembershipError::AlreadyMember {
            id: 1
        }))
    );
    assert_eq!(
        change(&mut c, 1, MembershipChange::PromoteLearner(7)),
        Err(ProposeError::Membership(MembershipError::NotMember {
            id: 7
        }))
    );
    let mut two = Cluster::new(&[1, 2, 3]);
    two.elect(1);
    assert!(matches!(
        change(&mut two, 2, MembershipChange::AddVoter(4)),
        Err(ProposeError::NotLeader { .. })
    ));
}

#[test]
fn config_validation_names_the_problem() {
    let mut both = Config::new(1, [1, 2]);
    both.learners.insert(2);
    assert_eq!(both.validate(), Err(ConfigError::VoterAndLearner { id: 2 }));
    let empty = Config::new(1, []);
    assert_eq!(empty.validate(), Err(ConfigError::NoVoters));
    let mut learner = Config::new(4, [1, 2, 3]);
    assert_eq!(learner.validate(), Err(ConfigError::SelfNotVoter { id: 4 }));
    learner.learners.insert(4);
    assert_eq!(learner.validate(), Ok(()));
}

#[test]
fn a_learner_receives_the_log_but_never_counts_toward_commit() {
    let mut c = Cluster::elected(&[1, 2, 3], 1);
    join(&mut c, 4, &[1, 2, 3]);
    change(&mut c, 1, MembershipChange::AddLearner(4)).unwrap();
    c.tick_all(3);
    let commit = c.node(1).commit_index();
    c.partition(&[1, 4], &[2, 3]);
    c.propose(1, "only on the learner");
    c.deliver_all();
    assert_eq!(c.node(4).last_index(), c.node(1).last_index());
    assert_eq!(c.node(1).commit_index(), commit);
    c.heal();
    c.tick_all(3);
    assert_eq!(
        c.applied_strings(4),
        vec!["only on the learner".to_string()]
    );
}

#[test]
fn a_learner_never_campaigns() {
    let mut c = Cluster::elected(&[1, 2, 3], 1);
    join(&mut c, 4, &[1, 2, 3]);
    change(&mut c, 1, MembershipChange::AddLearner(4)).unwrap();
    c.tick_all(3);
    let term = c.node(4).term();
    c.isolate(4);
    for _ in 0..500 {
        c.tick(4);
    }
    assert_eq!(c.node(4).role(), Role::Follower);
    assert_eq!(c.node(4).term(), term);
}

#[test]
fn promotion_is_refused_until_the_learner_caught_up() {
    let mut c = Cluster::configured(&[1, 2, 3], |cfg| cfg.promote_lag_entries_max = 4);
    c.elect(1);
    join(&mut c, 4, &[1, 2, 3]);
    change(&mut c, 1, MembershipChange::AddLearner(4)).unwrap();
    c.tick_all(3);
    c.isolate(4);
    c.propose_numbered(1, "c", 10);
    c.deliver_all();
    assert!(matches!(
        change(&mut c, 1, MembershipChange::PromoteLearner(4)),
        Err(ProposeError::Membership(MembershipError::LearnerBehind {
            id: 4,
            ..
        }))
    ));
    c.heal();
    c.tick_all(5);
    change(&mut c, 1, MembershipChange::PromoteLearner(4)).unwrap();
    c.tick_all(5);
    assert_eq!(voters(c.node(2).membership()), vec![1, 2, 3, 4]);
    assert!(!c.node(2).membership().is_joint());
}

#[test]
fn a_removed_leader_steps_down_once_the_change_commits_and_stops_campaigning() {
    let mut c = Cluster::elected(&[1, 2, 3], 1);
    change(&mut c, 1, MembershipChange::Remove(1)).unwrap();
    c.tick_all(3);
    assert_eq!(voters(c.node(2).membership()), vec![2, 3]);
    assert_ne!(c.node(1).role(), Role::Leader);
    let term = c.node(1).term();
    c.isolate(1);
    for _ in 0..500 {
        c.tick(1);
    }
    assert_eq!(c.node(1).term(), term, "a removed node campaigned");
    c.heal();
    c.tick_all(60);
    let leader = c.leader().expect("the remaining voters elect a leader");
    assert!(leader == 2 || leader == 3);
    c.assert_election_safety();
}

#[test]
fn a_cluster_grows_from_one_to_five_and_shrinks_back() {
    let mut c = Cluster::elected(&[1], 1);
    for id in 2..=5 {
        let current: Vec<NodeId> = voters(c.node(1).membership());
        join(&mut c, id, &current);
        change(&mut c, 1, MembershipChange::AddLearner(id)).unwrap();
        c.tick_all(3);
        change(&mut c, 1, MembershipChange::PromoteLearner(id)).unwrap();
        c.tick_all(3);
        c.propose(1, &format!("with {id}"));
        c.tick_all(3);
    }
    assert_eq!(voters(c.node(5).membership()), vec![1, 2, 3, 4, 5]);
    for id in [5, 4, 3, 2] {
        change(&mut c, 1, MembershipChange::Remove(id)).unwrap();
        c.tick_all(3);
    }
    assert_eq!(c.node(1).membership(), &Membership::new([1]));
    c.assert_served(1, "alone again", 2, 1);
    c.assert_election_safety();
}

#[test]
fn a_restarted_node_recovers_its_configuration_from_its_log() {
    let mut c = Cluster::elected(&[1, 2, 3], 1);
    change(&mut c, 1, MembershipChange::Remove(3)).unwrap();
    c.tick_all(3);
    assert_eq!(voters(c.node(2).membership()), vec![1, 2]);
    c.crash(2);
    c.restart(2);
    assert_eq!(voters(c.node(2).membership()), vec![1, 2]);
    assert!(!c.node(2).membership().is_joint());
}

/// Compaction after every 4 applied entries, keeping no trailing entries.
fn compact_often(config: &mut Config) {
    config.compaction_threshold_entries = Some(4);
    config.compaction_trailing_entries = 0;
}

#[test]
fn a_node_that_learned_its_configuration_from_a_snapshot_recovers_it_after_restart() {
    let mut c = Cluster::configured(&[1, 2, 3], compact_often);
    c.elect(1);
    // Node 4 joins but hears nothing while the configuration changes and
    // the log is compacted past every configuration entry.
    join(&mut c, 4, &[1, 2, 3]);
    c.isolate(4);
    change(&mut c, 1, MembershipChange::AddLearner(4)).unwrap();
    c.tick_all(3);
    change(&mut c, 1, MembershipChange::Remove(3)).unwrap();
    c.tick_all(3);
    let mut expected = Membership::new([1, 2]);
    expected.learners.insert(4);
    assert_eq!(c.node(1).membership(), &expected);
    let last_change = c.node(1).membership_index();
    for i in 0..12 {
        c.propose(1, &format!("after the changes {i}"));
        c.tick_all(1);
    }
    assert!(
        c.node(1).log_base().index > last_change,
        "the leader compacted past the configuration entries"
    );
    c.heal();
    c.tick_all(5);
    let learner = c.node(4);
    assert_eq!(learner.stats().snapshots_installed, 1);
    assert!(learner.log_base().index > last_change);
    assert_eq!(learner.membership(), &expected);
    // Restarted, it finds the configuration with the snapshot (its own
    // `Config` still names the voters it was built with: 1, 2 and 3).
    c.crash(4);
    c.restart(4);
    assert_eq!(c.node(4).membership(), &expected);
    assert_eq!(c.node(4).membership_index(), c.node(4).log_base().index);
    // So do the nodes that compacted their own logs.
    for id in [1, 2] {
        assert!(c.node(id).log_base().index > last_change);
        c.crash(id);
        c.restart(id);
        assert_eq!(c.node(id).membership(), &expected);
    }
    let leader = elect_among(&mut c, &[1, 2]);
    c.propose(leader, "after the restarts");
    c.tick_all(3);
    assert_eq!(
        c.applied_strings(4).last().map(String::as_str),
        Some("after the restarts")
    );
    c.assert_election_safety();
}

#[test]
fn a_snapshot_with_an_unusable_configuration_is_refused_at_recovery() {
    let recovered = Recovered {
        membership: Some(Membership::default()),
        ..Recovered::default()
    };
    let error = Node::new(config(1, &[1, 2, 3]), recovered).unwrap_err();
    assert!(
        matches!(error, ConfigError::InvalidRecoveredState { .. }),
        "{error}"
    );
}

/// PreVote and CheckQuorum off: nothing but the configuration keeps a
/// removed node from deposing leaders.
fn no_prevote_no_check_quorum(config: &mut Config) {
    config.pre_vote = false;
    config.check_quorum = false;
}

#[test]
fn a_removed_node_is_told_so_and_stops_campaigning() {
    let mut c = Cluster::configured(&[1, 2, 3], no_prevote_no_check_quorum);
    c.elect(1);
    // Node 3 is cut off while it is removed: it never hears of it.
    c.isolate(3);
    change(&mut c, 1, MembershipChange::Remove(3)).unwrap();
    c.tick_all(3);
    c.propose(1, "without 3");
    c.tick_all(3);
    assert_eq!(voters(c.node(1).membership()), vec![1, 2]);
    assert_eq!(voters(c.node(3).membership()), vec![1, 2, 3]);
    // Alone, it campaigns (it still believes it votes).
    for _ in 0..100 {
        c.tick(3);
    }
    assert!(c.node(3).stats().elections_started > 0);
    let term = c.node(1).term();
    c.heal();
    c.tick_all(100);
    // The voters ignored it and told it; it stopped.
    assert_eq!(c.leader(), Some(1));
    assert_eq!(
        c.node(1).term(),
        term,
        "the removed node deposed the leader"
    );
    assert!(
        c.node(1).stats().vote_requests_from_removed + c.node(2).stats().vote_requests_from_removed
            > 0
    );
    assert!(c.node(3).stats().removed_notices_received > 0);
    let elections = c.node(3).stats().elections_started;
    c.tick_all(200);
    assert_eq!(c.node(3).stats().elections_started, elections);
    assert_eq!(c.node(3).role(), Role::Follower);
    c.assert_election_safety();
}

/// A removed node's term can run ahead (it campaigned before it was told);
/// an answer it sends to a request delayed from before its removal must
/// not depose the leader of the configuration that removed it.
#[test]
fn an_answer_from_a_removed_node_with_a_higher_term_does_not_depose_the_leader() {
    let mut c = Cluster::configured(&[1, 2, 3], no_prevote_no_check_quorum);
    c.elect(1);
    change(&mut c, 1, MembershipChange::Remove(3)).unwrap();
    c.tick_all(3);
    c.propose(1, "without 3");
    c.tick_all(3);
    assert_eq!(voters(c.node(1).membership()), vec![1, 2]);
    let term = c.node(1).term();
    let answer = Message {
        from: 3,
        to: 1,
        term: term + 5,
        progress_id: 0,
        body: MessageBody::HeartbeatResponse { read_round: 0 },
    };
    c.step(1, Input::Receive(answer.clone()));
    assert_eq!(c.leader(), Some(1));
    assert_eq!(
        c.node(1).term(),
        term,
        "the removed node's answer deposed the leader"
    );
    assert_eq!(c.node(1).stats().answers_from_removed, 1);
    // From a member, the same answer deposes it, as Raft requires.
    c.step(
        1,
        Input::Receive(Message {
            from: 2,
            to: 1,
            ..answer
        }),
    );
    assert_eq!(c.node(1).term(), term + 5);
    assert_eq!(c.node(1).role(), Role::Follower);
}

#[test]
fn a_removed_node_told_so_campaigns_again_once_added_back() {
    let mut c = Cluster::configured(&[1, 2, 3], no_prevote_no_check_quorum);
    c.elect(1);
    c.isolate(3);
    change(&mut c, 1, MembershipChange::Remove(3)).unwrap();
    c.tick_all(3);
    for _ in 0..100 {
        c.tick(3);
    }
    c.heal();
    c.tick_all(50);
    assert!(c.node(3).stats().removed_notices_received > 0);
    // Added back as a learner and promoted, it is a voter that may lead
    // (its inflated term costs one election on the way).
    change(&mut c, 1, MembershipChange::AddLearner(3)).unwrap();
    c.tick_all(5);
    let leader = elect_among(&mut c, &[1, 2]);
    c.tick_all(5);
    change(&mut c, leader, MembershipChange::PromoteLearner(3)).unwrap();
    c.tick_all(5);
    assert_eq!(voters(c.node(3).membership()), vec![1, 2, 3]);
    assert!(!c.node(3).membership().is_joint());
    c.crash(leader);
    assert_eq!(elect_among(&mut c, &[3]), 3);
}

#[test]
fn a_voter_following_a_live_leader_ignores_leader_traffic_from_an_unknown_node() {
    let mut c = Cluster::elected(&[1, 2, 3], 1);
    let term = c.node(2).term();
    let stray = common::msg(9, 2, term + 1, common::append((0, 0), Vec::new(), 0));
    c.step(2, Input::Receive(stray));
    assert_eq!(c.node(2).term(), term);
    assert_eq!(c.node(2).leader(), Some(1));
    assert_eq!(c.node(2).stats().messages_from_unknown_node, 1);
}

#[test]
fn a_joining_learner_follows_a_leader_it_does_not_know_yet() {
    let mut c = Cluster::elected(&[1, 2, 3], 1);
    // Node 4 was built believing the voters are 2 and 3 only (the leader
    // joined after its configuration was written).
    join(&mut c, 4, &[2, 3]);
    change(&mut c, 1, MembershipChange::AddLearner(4)).unwrap();
    c.tick_all(5);
    assert_eq!(c.node(4).leader(), Some(1));
    assert_eq!(c.node(4).membership(), c.node(1).membership());
}

#[test]
fn a_listed_configuration_refuses_duplicates_and_names_the_id() {
    assert_eq!(
        Config::try_new(1, &[1, 2, 2]).unwrap_err(),
        ConfigError::DuplicateId { id: 2 }
    );
    assert_eq!(Config::try_new(1, &[]).unwrap_err(), ConfigError::NoVoters);
    assert!(Config::try_new(1, &[1, 2, 3]).is_ok());
    assert_eq!(
        Membership::try_new(&[1, 2, 1], &[]),
        Err(MembershipError::DuplicateId { id: 1 })
    );
    assert_eq!(
        Membership::try_new(&[1, 2], &[2]),
        Err(MembershipError::VoterAndLearner { id: 2 })
    );
    assert_eq!(
        Membership::try_new(&[1, 2], &[4, 4]),
        Err(MembershipError::DuplicateId { id: 4 })
    );
    assert_eq!(
        Membership::try_new(&[], &[4]),
        Err(MembershipError::NoVoters)
    );
    let mut expected = Membership::new([1, 2]);
    expected.learners.insert(4);
    assert_eq!(Membership::try_new(&[1, 2], &[4]), Ok(expected));
}

#[test]
fn a_joint_configuration_takes_no_further_change() {
    let joint = Membership::new([1, 2, 3])
        .apply_change(MembershipChange::AddVoter(4))
        .unwrap();
    assert_eq!(
        joint.apply_change(MembershipChange::AddLearner(5)),
        Err(MembershipError::Joint)
    );
}

#[test]
fn membership_errors_say_what_to_do() {
    let messages = [
        MembershipError::NoVoters.to_string(),
        MembershipError::RemovesLastVoter { id: 1 }.to_string(),
        MembershipError::ChangeInProgress { index: 7 }.to_string(),
        MembershipError::AlreadyMember { id: 2 }.to_string(),
        MembershipError::NotMember { id: 9 }.to_string(),
        MembershipError::LearnerBehind {
            id: 4,
            lag_entries: 100,
            lag_entries_max: 64,
        }
        .to_string(),
        MembershipError::DuplicateId { id: 3 }.to_string(),
        MembershipError::VoterAndLearner { id: 3 }.to_string(),
    ];
    assert_each_names_an_action(&messages, &["keep", "add", "retry", "promote", "list"]);
}

#[test]
fn a_lagging_voter_votes_for_an_unknown_candidate_whose_log_is_ahead_only() {
    // Node 9 was added in entries node 2 has not received; its vote may
    // be needed, so it is heard when its log is at least as up to date.
    let mut n = common::Solo::new(config(2, &[1, 2, 3]), common::recovered(1, None, &[1, 1]));
    let behind = common::msg(9, 2, 2, common::vote_request((1, 1)));
    let answers = common::sent(&n.receive(behind));
    assert!(
        matches!(
            answers.as_slice(),
            [Message {
                to: 9,
                body: MessageBody::Removed { .. },
                ..
            }]
        ),
        "{answers:?}"
    );
    assert_eq!(n.node.term(), 1, "a stray behind us cannot move our term");
    let ahead = common::msg(9, 2, 2, common::vote_request((5, 1)));
    n.receive(ahead);
    assert_eq!(
        common::vote_answers(&n.sync()),
        vec![(9, 2, true)],
        "granted once durable"
    );
}

// ---------------------------------------------------------------------
// Witnesses, demotion, explicit leave, and the validation rules by name.
// ---------------------------------------------------------------------

/// A cluster of `voters` in which `witnesses` are witnesses, every node
/// configured alike (the witnesses' own servers know they are ones).
fn with_witnesses(
    voters: &[NodeId],
    witnesses: &[NodeId],
    configure: impl Fn(&mut Config),
) -> Cluster {
    Cluster::configured(voters, |cfg| {
        cfg.witnesses = witnesses.iter().copied().collect();
        configure(cfg);
    })
}

fn membership_error(result: Result<u64, ProposeError>) -> MembershipError {
    match result {
        Err(ProposeError::Membership(error)) => error,
        other => panic!("expected a membership refusal, got {other:?}"),
    }
}

#[test]
fn a_witness_votes_and_counts_toward_commit_but_never_applies() {
    let mut c = with_witnesses(&[1, 2, 3], &[3], |_| {});
    c.elect(1);
    // Node 2 is away: the leader commits with the witness's copy.
    c.isolate(2);
    c.propose(1, "x");
    c.tick_all(3);
    let leader = c.node(1);
    assert_eq!(leader.commit_index(), leader.last_index());
    assert_eq!(c.applied_strings(1), vec!["x".to_string()]);
    let witness = c.node(3);
    assert!(witness.is_witness_node());
    assert_eq!(witness.last_index(), leader.last_index());
    // Counted as applied inside the node, never handed to a state machine.
    assert_eq!(witness.applied_index(), leader.commit_index());
    assert!(c.applied_strings(3).is_empty());
}

#[test]
fn a_witness_never_campaigns_not_even_a_pre_vote() {
    let mut c = with_witnesses(&[1, 2, 3], &[3], |_| {});
    c.elect(1);
    let term = c.node(3).term();
    c.isolate(3);
    for _ in 0..500 {
        c.tick(3);
    }
    let witness = c.node(3);
    assert_eq!(witness.role(), Role::Follower);
    assert_eq!(witness.term(), term);
    assert_eq!(witness.stats().pre_elections_started, 0);
    assert_eq!(witness.stats().elections_started, 0);
    // Without PreVote either.
    let mut c = with_witnesses(&[1, 2, 3], &[3], no_prevote_no_check_quorum);
    c.elect(1);
    c.isolate(3);
    for _ in 0..500 {
        c.tick(3);
    }
    assert_eq!(c.node(3).stats().elections_started, 0);
}

#[test]
fn a_witness_still_elects_a_full_voter_when_the_other_is_down() {
    // Two sites with a full voter each, a witness at a third: losing one
    // site leaves a quorum, and the full voter left leads.
    let mut c = with_witnesses(&[1, 2, 3], &[3], |_| {});
    c.elect(1);
    c.propose(1, "before");
    c.tick_all(3);
    c.isolate(1);
    let leader = elect_among(&mut c, &[2, 3]);
    assert_eq!(leader, 2);
    c.propose(2, "after");
    for _ in 0..5 {
        c.tick(2);
        c.tick(3);
        c.deliver_all();
    }
    assert_eq!(
        c.applied_strings(2),
        vec!["before".to_string(), "after".to_string()]
    );
    c.assert_election_safety();
}

#[test]
fn a_transfer_to_a_witness_is_refused() {
    let mut c = with_witnesses(&[1, 2, 3], &[3], |_| {});
    c.elect(1);
    c.tick_all(3);
    c.record_trace = true;
    c.step(1, Input::TransferLeadership(3));
    let outcome = c.trace.iter().find_map(|(_, action)| match action {
        Action::Transfer { outcome, .. } => Some(*outcome),
        _ => None,
    });
    assert_eq!(
        outcome,
        Some(TransferOutcome::Refused(TransferError::Witness {
            target: 3
        }))
    );
    assert_eq!(c.node(1).role(), Role::Leader);
    assert!(TransferError::Witness { target: 3 }
        .to_string()
        .contains("full voter"));
}

#[test]
fn a_witness_refuses_follower_reads() {
    let mut c = with_witnesses(&[1, 2, 3], &[3], |_| {});
    c.elect(1);
    c.tick_all(3);
    c.record_trace = true;
    c.step(
        3,
        Input::Read {
            id: 7,
            path: ReadPath::Follower,
        },
    );
    assert!(c.trace.iter().any(|(_, action)| matches!(
        action,
        Action::ReadRefused {
            id: 7,
            error: ReadError::NotLeader { .. }
        }
    )));
}

#[test]
fn the_full_voters_must_stay_a_majority_of_every_voter_set() {
    // Membership: {1, 2, 3w} may not lose a full voter, nor take a second
    // witness; C_old's half is checked too.
    let m = Membership::new([1, 2, 3]).try_with_witnesses(&[3]).unwrap();
    assert_eq!(
        m.apply_change(MembershipChange::Remove(1)),
        Err(MembershipError::NoFullVoterQuorum {
            voters: 2,
            full_voters: 1
        })
    );
    assert_eq!(
        m.apply_change(MembershipChange::AddWitness(4)),
        Err(MembershipError::NoFullVoterQuorum {
            voters: 4,
            full_voters: 2
        })
    );
    assert_eq!(
        Membership::new([1, 2]).try_with_witnesses(&[2]),
        Err(MembershipError::NoFullVoterQuorum {
            voters: 2,
            full_voters: 1
        })
    );
    let mut joint = Membership::new([1, 2, 3, 4, 5]);
    joint.voters_outgoing = [1, 2, 3].into();
    joint.witnesses = [2, 3].into();
    assert_eq!(
        joint.validate(),
        Err(MembershipError::NoFullVoterQuorum {
            voters: 3,
            full_voters: 1
        })
    );
    // Five voters hold two witnesses.
    assert!(Membership::new([1, 2, 3, 4, 5])
        .try_with_witnesses(&[4, 5])
        .is_ok());
    // Config: the same rule on the initial voters.
    let mut config = Config::new(1, [1, 2]);
    config.witnesses = [2].into();
    assert_eq!(
        config.validate(),
        Err(ConfigError::NoFullVoterQuorum {
            voters: 2,
            full_voters: 1
        })
    );
    // At the leader: refused with the reason.
    let mut c = with_witnesses(&[1, 2, 3], &[3], |_| {});
    c.elect(1);
    c.tick_all(3);
    assert_eq!(
        membership_error(change(&mut c, 1, MembershipChange::Remove(2))),
        MembershipError::NoFullVoterQuorum {
            voters: 2,
            full_voters: 1
        }
    );
    // Removing the witness itself is fine.
    change(&mut c, 1, MembershipChange::Remove(3)).unwrap();
}

#[test]
fn a_witness_is_a_voter_and_never_a_learner() {
    let mut m = Membership::new([1, 2, 3]);
    m.witnesses.insert(4);
    assert_eq!(
        m.validate(),
        Err(MembershipError::WitnessNotVoter { id: 4 })
    );
    let m = Membership::new([1, 2, 3]).try_with_witnesses(&[3]).unwrap();
    assert_eq!(
        m.apply_change(MembershipChange::Demote(3)),
        Err(MembershipError::WitnessDemoted { id: 3 })
    );
    let mut config = Config::new(1, [1, 2, 3]);
    config.witnesses = [5].into();
    assert_eq!(
        config.validate(),
        Err(ConfigError::WitnessNotVoter { id: 5 })
    );
    let mut config = Config::new(4, [1, 2, 3]);
    config.learners = [4].into();
    config.witnesses = [4].into();
    assert_eq!(
        config.validate(),
        Err(ConfigError::WitnessLearner { id: 4 })
    );
    // A node joining as a witness lists itself alone.
    let mut joining = Config::new(4, [1, 2, 3]);
    joining.witnesses = [4].into();
    assert_eq!(joining.validate(), Ok(()));
}

#[test]
fn a_witness_joins_through_a_joint_configuration_and_counts_as_a_voter() {
    let mut c = Cluster::elected(&[1, 2, 3], 1);
    join(&mut c, 4, &[1, 2, 3]);
    let mut cfg = c.configs[&4].clone();
    cfg.learners.clear();
    cfg.witnesses = [4].into();
    c.nodes
        .insert(4, Node::new(cfg.clone(), Recovered::default()).unwrap());
    c.configs.insert(4, cfg);
    let index = change(&mut c, 1, MembershipChange::AddWitness(4)).unwrap();
    let joint = c.node(1).membership().clone();
    assert!(joint.is_joint() && joint.is_witness(4) && joint.is_voter(4));
    c.tick_all(3);
    let m = c.node(1).membership();
    assert!(!m.is_joint());
    assert_eq!(voters(m), vec![1, 2, 3, 4]);
    assert!(m.is_witness(4) && !m.is_full_voter(4));
    assert!(c.node(1).commit_index() > index);
    // Nodes 2 and 3 away: 1 and the witness are not a majority of four.
    c.partition(&[1, 4], &[2, 3]);
    let commit = c.node(1).commit_index();
    c.propose(1, "x");
    c.deliver_all();
    assert_eq!(c.node(1).commit_index(), commit);
    assert_eq!(c.node(4).last_index(), c.node(1).last_index());
    c.heal();
    c.tick_all(3);
    assert!(c.applied_strings(4).is_empty());
    assert_eq!(c.node(4).applied_index(), c.node(1).commit_index());
}

fn compact_witness(config: &mut Config) {
    config.compaction_threshold_entries = Some(4);
    config.compaction_trailing_entries = 0;
}

#[test]
fn a_witness_compacts_its_log_without_a_state_machine() {
    let mut c = with_witnesses(&[1, 2, 3], &[3], compact_witness);
    c.elect(1);
    for i in 0..20 {
        c.propose(1, &format!("c{i}"));
        c.tick_all(1);
    }
    c.tick_all(3);
    let witness = c.node(3);
    assert!(witness.log_base().index >= 16, "{:?}", witness.log_base());
    assert!(witness.log_len() < 8);
    // Its stored snapshot holds no bytes.
    let stored = c.disks[&3].snapshot.as_ref().expect("a snapshot");
    assert!(stored.data.is_empty());
    assert_eq!(
        stored.membership.as_ref(),
        c.node(3).membership_at(stored.position.index)
    );
}

#[test]
fn a_witness_behind_the_leaders_log_gets_a_snapshot_of_no_bytes() {
    let mut c = with_witnesses(&[1, 2, 3], &[3], compact_witness);
    c.elect(1);
    c.isolate(3);
    for i in 0..20 {
        c.propose(1, &format!("c{i}"));
        c.tick(1);
        c.tick(2);
        c.deliver_all();
    }
    assert!(c.node(1).log_base().index > c.node(3).last_index());
    c.record_trace = true;
    c.heal();
    c.tick_all(4);
    let to_witness: Vec<u64> = c
        .trace
        .iter()
        .filter_map(|(_, action)| match action {
            Action::Send { to: 3, message } => match &message.body {
                MessageBody::InstallSnapshot(chunk) => Some(chunk.size_bytes),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert!(!to_witness.is_empty(), "no snapshot was sent");
    assert!(to_witness.iter().all(|size| *size == 0));
    assert!(!c
        .trace
        .iter()
        .any(|(id, action)| *id == 3 && matches!(action, Action::RestoreSnapshot { .. })));
    assert_eq!(c.node(3).last_index(), c.node(1).last_index());
    assert_eq!(c.node(3).applied_index(), c.node(1).commit_index());
    assert!(c.applied_strings(3).is_empty());
}

#[test]
fn a_demoted_voter_votes_in_the_old_half_then_becomes_a_learner() {
    let mut c = Cluster::elected(&[1, 2, 3], 1);
    c.tick_all(2);
    c.isolate(3);
    change(&mut c, 1, MembershipChange::Demote(3)).unwrap();
    let joint = c.node(1).membership().clone();
    assert!(joint.is_joint());
    assert!(joint.is_voter(3) && joint.is_learner(3));
    assert_eq!(voters(&joint), vec![1, 2]);
    c.heal();
    c.tick_all(3);
    let m = c.node(3).membership();
    assert!(!m.is_joint());
    assert!(m.is_learner(3) && !m.is_voter(3));
    c.propose(1, "after");
    c.tick_all(2);
    assert_eq!(c.applied_strings(3), vec!["after".to_string()]);
    // A learner now: it never campaigns.
    let term = c.node(3).term();
    c.isolate(3);
    for _ in 0..300 {
        c.tick(3);
    }
    assert_eq!(c.node(3).term(), term);
}

#[test]
fn demoting_a_non_voter_or_the_last_voter_is_refused() {
    let m = Membership::try_new(&[1], &[2]).unwrap();
    assert_eq!(
        m.apply_change(MembershipChange::Demote(2)),
        Err(MembershipError::NotVoter { id: 2 })
    );
    assert_eq!(
        m.apply_change(MembershipChange::Demote(9)),
        Err(MembershipError::NotMember { id: 9 })
    );
    assert_eq!(
        m.apply_change(MembershipChange::Demote(1)),
        Err(MembershipError::RemovesLastVoter { id: 1 })
    );
}

#[test]
fn without_auto_leave_the_joint_configuration_stays_until_the_host_leaves_it() {
    let mut c = Cluster::configured(&[1, 2, 3], |cfg| cfg.auto_leave_joint = false);
    c.elect(1);
    assert_eq!(
        membership_error(change(&mut c, 1, MembershipChange::LeaveJoint)),
        MembershipError::NotJoint
    );
    let index = change(&mut c, 1, MembershipChange::Remove(3)).unwrap();
    c.tick_all(5);
    assert!(c.node(1).commit_index() >= index);
    assert!(c.node(1).membership().is_joint());
    assert_eq!(
        membership_error(change(&mut c, 1, MembershipChange::AddLearner(4))),
        MembershipError::ChangeInProgress { index }
    );
    let leave = change(&mut c, 1, MembershipChange::LeaveJoint).unwrap();
    assert!(leave > index);
    c.tick_all(3);
    let m = c.node(1).membership();
    assert!(!m.is_joint());
    assert_eq!(voters(m), vec![1, 2]);
    change(&mut c, 1, MembershipChange::AddLearner(4)).unwrap();
}

#[test]
fn leave_joint_is_refused_until_the_joint_configuration_commits() {
    let mut c = Cluster::configured(&[1, 2, 3], |cfg| cfg.auto_leave_joint = false);
    c.elect(1);
    c.isolate(1);
    let index = change(&mut c, 1, MembershipChange::Remove(3)).unwrap();
    assert_eq!(
        membership_error(change(&mut c, 1, MembershipChange::LeaveJoint)),
        MembershipError::ChangeInProgress { index }
    );
}

#[test]
fn removing_the_last_voter_is_refused() {
    let m = Membership::try_new(&[1], &[2]).unwrap();
    assert_eq!(
        m.apply_change(MembershipChange::Remove(1)),
        Err(MembershipError::RemovesLastVoter { id: 1 })
    );
    // The learner may go.
    assert!(m.apply_change(MembershipChange::Remove(2)).is_ok());
}

#[test]
fn a_learner_and_a_voter_with_the_same_id_are_refused() {
    assert_eq!(
        Membership::try_new(&[1, 2], &[2]),
        Err(MembershipError::VoterAndLearner { id: 2 })
    );
    let mut config = Config::new(1, [1, 2]);
    config.learners.insert(2);
    assert_eq!(
        config.validate(),
        Err(ConfigError::VoterAndLearner { id: 2 })
    );
    let mut m = Membership::new([1, 2]);
    m.learners.insert(1);
    assert_eq!(
        m.validate(),
        Err(MembershipError::VoterAndLearner { id: 1 })
    );
}

#[test]
fn an_empty_voter_set_is_refused() {
    assert_eq!(
        Membership::try_new(&[], &[]),
        Err(MembershipError::NoVoters)
    );
    assert_eq!(Config::new(1, []).validate(), Err(ConfigError::NoVoters));
    // Not even by removing learners from a voterless configuration.
    assert_eq!(
        Membership::default().apply_change(MembershipChange::AddLearner(1)),
        Err(MembershipError::NoVoters)
    );
}

#[test]
fn a_duplicate_id_is_refused() {
    assert_eq!(
        Membership::try_new(&[1, 1], &[]),
        Err(MembershipError::DuplicateId { id: 1 })
    );
    assert_eq!(
        Config::try_new(1, &[1, 2, 2]).unwrap_err(),
        ConfigError::DuplicateId { id: 2 }
    );
    assert_eq!(
        Membership::new([1, 2, 3]).try_with_witnesses(&[3, 3]),
        Err(MembershipError::DuplicateId { id: 3 })
    );
}

#[test]
fn witness_and_demotion_errors_say_what_to_do() {
    let messages = [
        MembershipError::NoFullVoterQuorum {
            voters: 2,
            full_voters: 1,
        }
        .to_string(),
        MembershipError::WitnessNotVoter { id: 4 }.to_string(),
        MembershipError::WitnessDemoted { id: 4 }.to_string(),
        MembershipError::NotVoter { id: 4 }.to_string(),
        MembershipError::NotJoint.to_string(),
        ConfigError::NoFullVoterQuorum {
            voters: 2,
            full_voters: 1,
        }
        .to_string(),
        ConfigError::WitnessLearner { id: 4 }.to_string(),
        ConfigError::WitnessNotVoter { id: 4 }.to_string(),
    ];
    assert_each_names_an_action(&messages, &["add", "remove", "list", "only", "nothing"]);
}

/// The configuration as it was serialized before witnesses existed.
#[derive(serde::Serialize)]
struct MembershipBeforeWitnesses {
    voters: std::collections::BTreeSet<NodeId>,
    voters_outgoing: std::collections::BTreeSet<NodeId>,
    learners: std::collections::BTreeSet<NodeId>,
}

#[test]
fn a_configuration_stored_before_witnesses_reads_back_unchanged() {
    use concord_tokio::codec::{decode, encode, DECODE_LIMIT_BYTES};
    let old = MembershipBeforeWitnesses {
        voters: [1, 2, 4].into(),
        voters_outgoing: [1, 2, 3].into(),
        learners: [5].into(),
    };
    let bytes = encode(&old).unwrap();
    let read: Membership = decode(&bytes, DECODE_LIMIT_BYTES).unwrap();
    let mut expected = Membership::new([1, 2, 4]);
    expected.voters_outgoing = [1, 2, 3].into();
    expected.learners = [5].into();
    assert_eq!(read, expected);
    // Without witnesses the encoding is the old one, byte for byte.
    assert_eq!(encode(&expected).unwrap(), bytes);
    // With witnesses it round-trips.
    let witnessed = Membership::try_new(&[1, 2, 3], &[5])
        .unwrap()
        .try_with_witnesses(&[3])
        .unwrap();
    let bytes = encode(&witnessed).unwrap();
    let read: Membership = decode(&bytes, DECODE_LIMIT_BYTES).unwrap();
    assert_eq!(read, witnessed);
}

/// Every message of `messages` tells the user what to do: it holds one of
/// `verbs`.
fn assert_each_names_an_action(messages: &[String], verbs: &[&str]) {
    for message in messages {
        assert!(
            verbs.iter().any(|verb| message.contains(verb)),
            "no action in: {message}"
        );
    }
}

/// A replica removed and added back empty within one term is a new
/// replica: an acknowledgement its predecessor sent, delayed past the
/// re-addition, names the leader's earlier record of the node
/// (`Message::progress_id`) and must not count for the new replica, which
/// holds none of what it acknowledges. Counted, it would make the leader
/// believe an empty learner holds the log (and, once promoted, count it
/// in every commit's majority).
#[test]
fn an_acknowledgement_of_a_removed_replica_does_not_count_for_its_successor() {
    let mut c = Cluster::elected(&[1, 2, 3], 1);
    join(&mut c, 4, &[1, 2, 3]);
    change(&mut c, 1, MembershipChange::AddLearner(4)).unwrap();
    c.propose(1, "held by the first replica of 4");
    let mut stale = None;
    c.deliver_mapped(|message| {
        if message.from == 4
            && matches!(
                message.body,
                MessageBody::AppendEntriesResponse(concord::AppendResponse::Accepted { .. })
            )
        {
            stale = Some(message.clone());
        }
        Some(message)
    });
    c.tick_all(3);
    let stale = stale.expect("the first replica of 4 acknowledged");
    let MessageBody::AppendEntriesResponse(concord::AppendResponse::Accepted { match_index }) =
        stale.body
    else {
        unreachable!("matched above")
    };
    assert!(match_index >= 3, "the first replica held the proposal");
    let term = c.node(1).term();

    change(&mut c, 1, MembershipChange::Remove(4)).unwrap();
    c.deliver_all();
    c.tick_all(3);
    assert!(!c.node(1).membership().contains(4));
    // Node 4 deletes its replica and hosts the group again, empty.
    c.nodes.remove(&4);
    join(&mut c, 4, &[1, 2, 3]);
    change(&mut c, 1, MembershipChange::AddLearner(4)).unwrap();
    let fresh = c.node(1).progress(4).expect("a record of the new replica");
    assert_ne!(fresh.progress_id, stale.progress_id, "a new record");

    c.step(1, Input::Receive(stale.clone()));
    assert_eq!(c.node(1).term(), term, "one term throughout");
    let after = c.node(1).progress(4).expect("still a learner");
    assert_eq!(
        after.match_index, 0,
        "the predecessor's acknowledgement of {match_index} counted for the new replica"
    );
    assert_eq!(c.node(1).stats().answers_from_earlier_replica, 1);

    // The new replica's own answers count: it catches up for real.
    c.deliver_all();
    c.tick_all(5);
    c.deliver_all();
    let caught_up = c.node(1).progress(4).expect("a learner");
    assert_eq!(caught_up.match_index, c.node(1).last_index());
    assert_eq!(c.node(4).last_index(), c.node(1).last_index());
    assert_eq!(c.node(1).stats().follower_log_regressions, 0);
}
