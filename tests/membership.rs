//! Membership changes (thesis §4): configurations in force when appended,
//! joint consensus, learners, one change at a time, removed nodes.

mod common;

use common::{config, Cluster, Disk};
use concord::{
    Action, Config, ConfigError, Input, LogPosition, Membership, MembershipChange, MembershipError,
    Message, MessageBody, Node, NodeId, ProposeError, Recovered, Role,
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
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
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
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
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
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
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
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
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
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
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
    let mut c = Cluster::new(&[1]);
    c.elect(1);
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
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
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
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
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
    for i in 0..10 {
        c.propose(1, &format!("c{i}"));
    }
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
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
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
    let mut c = Cluster::new(&[1]);
    c.elect(1);
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
    c.propose(1, "alone again");
    c.tick_all(2);
    assert_eq!(c.applied_strings(1).last().unwrap(), "alone again");
    c.assert_election_safety();
}

#[test]
fn a_restarted_node_recovers_its_configuration_from_its_log() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
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
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
    let term = c.node(2).term();
    let stray = common::msg(9, 2, term + 1, common::append((0, 0), Vec::new(), 0));
    c.step(2, Input::Receive(stray));
    assert_eq!(c.node(2).term(), term);
    assert_eq!(c.node(2).leader(), Some(1));
    assert_eq!(c.node(2).stats().messages_from_unknown_node, 1);
}

#[test]
fn a_joining_learner_follows_a_leader_it_does_not_know_yet() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.elect(1);
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
    for message in messages {
        assert!(
            ["keep", "add", "retry", "promote", "list"]
                .iter()
                .any(|verb| message.contains(verb)),
            "no action in: {message}"
        );
    }
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
