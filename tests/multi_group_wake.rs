//! Waking: after a node loss every group has a leader again within a
//! bound, with a bounded number of elections at once; a leader that slept
//! does not trust a lease from before; a follower woken by its leader's
//! death votes no sooner than a lone follower would; the read or proposal
//! that wakes a group is served.

mod multi_driver;

use concord::multi::GroupSleep;
use concord::{NodeId, ReadPath};
use multi_driver::{Driver, Options};

/// The node leading the most groups.
fn busiest_leader(driver: &Driver) -> NodeId {
    let mut led = std::collections::BTreeMap::<NodeId, u64>::new();
    for &group in driver.members.keys() {
        if let Some(leader) = driver.leader_of(group) {
            *led.entry(leader).or_default() += 1;
        }
    }
    led.into_iter()
        .max_by_key(|(id, count)| (*count, *id))
        .expect("a leader")
        .0
}

/// Ticks after killing the busiest leader until every group has a live
/// leader, and the most groups electing at once on one node.
pub fn leaderless_ticks_after_node_loss(groups: u64, seed: u64) -> (u64, usize, u64) {
    let mut driver = Driver::new(Options::quiet(3, groups), seed);
    assert!(
        driver.run_until_asleep(2000).is_some(),
        "groups did not quiesce"
    );
    let victim = busiest_leader(&driver);
    let orphans = driver
        .members
        .keys()
        .filter(|group| driver.leader_of(**group) == Some(victim))
        .count() as u64;
    driver.kill(victim);
    driver.electing_max = 0;
    for tick in 1..=2000 {
        driver.tick();
        assert!(driver.violation.is_none(), "{:?}", driver.violation);
        let leaderless = driver
            .members
            .keys()
            .any(|group| driver.leader_of(*group).is_none());
        if !leaderless {
            return (tick, driver.electing_max, orphans);
        }
    }
    panic!("groups still leaderless 2,000 ticks after the node loss");
}

#[test]
fn after_a_node_loss_every_group_has_a_leader_within_the_bound() {
    let (ticks, electing_max, orphans) = leaderless_ticks_after_node_loss(1000, 3);
    assert!(orphans > 200, "the lost node led only {orphans} groups");
    // Liveness timeout (10) plus a few elections' worth of ticks for
    // 1,000 groups at 256 elections at a time per node.
    assert!(ticks <= 120, "{ticks} ticks until every group had a leader");
    assert!(electing_max <= 256, "{electing_max} elections at once");
    assert!(electing_max > 0);
}

#[test]
fn elections_after_a_node_loss_run_a_bounded_number_at_a_time() {
    // Fewer election slots than orphaned groups: the queue must be used.
    let options = Options {
        elections_concurrent_max: 8,
        ..Options::quiet(3, 300)
    };
    let mut driver = Driver::new(options, 5);
    assert!(driver.run_until_asleep(2000).is_some());
    let victim = busiest_leader(&driver);
    driver.kill(victim);
    driver.electing_max = 0;
    driver.run(400);
    assert!(driver.violation.is_none(), "{:?}", driver.violation);
    for &group in driver.members.keys() {
        assert!(
            driver.leader_of(group).is_some(),
            "group {group} leaderless"
        );
    }
    assert!(
        driver.electing_max <= 8,
        "{} elections at once",
        driver.electing_max
    );
    assert!(driver.total(|stats| stats.wakes_to_elect) > 8);
}

#[test]
fn a_leader_waking_does_not_trust_a_lease_from_before_it_slept() {
    let mut driver = Driver::new(Options::quiet(3, 1), 1);
    assert!(driver.run_until_asleep(400).is_some());
    let leader = driver.leader_of(1).expect("a leader");
    assert_eq!(
        driver.multi(leader).sleep_state(1),
        Some(GroupSleep::Leading)
    );
    driver.run(50);
    let read = driver.read(leader, 1, ReadPath::Lease);
    // Served only after a round trip: the lease it held when it fell
    // asleep ran out while it slept.
    assert!(
        driver.read_pending(read),
        "a lease from before the sleep served the read at once"
    );
    assert!(driver.total(|stats| stats.missed_ticks_delivered) > 0);
    driver.run(5);
    assert!(
        !driver.read_pending(read),
        "the read was not served after a round"
    );
    assert!(driver.violation.is_none(), "{:?}", driver.violation);
}

#[test]
fn a_follower_woken_by_its_leaders_death_votes_no_sooner_than_a_lone_follower() {
    // Node-level liveness notices the death in 4 ticks, well inside the
    // 10-tick minimum election timeout: the followers must still wait out
    // that timeout from the last frame they heard from the dead node.
    for seed in 0..8 {
        let options = Options {
            liveness_timeout_ticks: 4,
            ..Options::quiet(3, 4)
        };
        let mut driver = Driver::new(options, seed);
        assert!(driver.run_until_asleep(400).is_some());
        let victim = busiest_leader(&driver);
        let last_heard = driver.now;
        driver.kill(victim);
        driver.run(100);
        assert!(driver.violation.is_none(), "{:?}", driver.violation);
        for (&(group, _term), &(leader, since)) in &driver.leaders {
            if leader != victim && since > last_heard {
                assert!(
                    since >= last_heard + 10,
                    "seed {seed}: group {group} elected node {leader} at tick {since}, {} ticks after it last heard the old leader",
                    since - last_heard
                );
            }
        }
    }
}

#[test]
fn the_read_that_wakes_a_group_is_served() {
    let mut driver = Driver::new(Options::quiet(3, 6), 2);
    assert!(driver.run_until_asleep(400).is_some());
    let mut reads = Vec::new();
    for group in 1..=6 {
        let leader = driver.leader_of(group).expect("a leader");
        reads.push(driver.read(leader, group, ReadPath::ReadIndex));
        let follower = *driver.members[&group]
            .iter()
            .find(|id| **id != leader)
            .expect("3 voters");
        reads.push(driver.read(follower, group, ReadPath::Follower));
    }
    driver.run(30);
    assert!(driver.violation.is_none(), "{:?}", driver.violation);
    for read in reads {
        assert!(!driver.read_pending(read), "read {read} was never answered");
    }
    assert_eq!(driver.reads_answered, 12);
}

#[cfg(feature = "planted-bugs")]
#[test]
fn planted_wake_that_forgets_the_read_is_caught() {
    let options = Options {
        bugs: multi_driver::Bugs {
            wake_drops_read: true,
            ..Default::default()
        },
        ..Options::quiet(3, 6)
    };
    let mut driver = Driver::new(options, 2);
    assert!(driver.run_until_asleep(400).is_some());
    let leader = driver.leader_of(1).expect("a leader");
    let read = driver.read(leader, 1, ReadPath::ReadIndex);
    driver.run(30);
    assert!(
        driver.read_pending(read),
        "the planted mistake did not lose the read"
    );
}

/// A message of a term older than a sleeping group's changes nothing in
/// Raft, so it must not wake the group: a follower woken while its leader
/// sleeps hears no heartbeat and campaigns against that leader (a stale
/// delivery did so in the simulator, seed 617244504 on 7 nodes with
/// `--groups swarm`).
#[test]
fn a_stale_message_of_an_older_term_wakes_no_sleeping_group() {
    use concord::multi::{Frame, GroupHeartbeatAnswer, MultiInput};

    let term = |driver: &Driver, id: NodeId, group| {
        driver.hosts[&id]
            .multi
            .as_ref()
            .unwrap()
            .group(group)
            .unwrap()
            .term()
    };
    // A group whose leader was elected past term 1, so that an older term
    // exists to replay.
    let (mut driver, group) = (0..20)
        .find_map(|seed| {
            // Faults for 200 ticks (crashes, partitions, loss), then
            // quiet until every group sleeps.
            let options = Options {
                faults_until_tick: 200,
                proposals_per_tick: 0,
                reads_per_mille: 0,
                ..Options::new(3, 16)
            };
            let mut driver = Driver::new(options, seed);
            driver.run(200);
            driver.run_until_asleep(1000)?;
            let group = (1..=16).find(|group| {
                driver
                    .leader_of(*group)
                    .is_some_and(|leader| term(&driver, leader, *group) > 1)
            })?;
            Some((driver, group))
        })
        .expect("some group elected past term 1 within 20 seeds");
    let leader = driver.leader_of(group).expect("a leader");
    let follower = *driver.members[&group]
        .iter()
        .find(|id| **id != leader)
        .expect("3 voters");
    let term_before = term(&driver, leader, group);
    let incarnation = driver.hosts[&leader]
        .multi
        .as_ref()
        .unwrap()
        .config()
        .incarnation;
    let mut frame = Frame::new(leader, follower, incarnation);
    frame.heartbeat_answers.push(GroupHeartbeatAnswer {
        group,
        term: term_before - 1,
        progress_id: 0,
        read_round: 0,
    });
    let multi = driver.multi_mut(follower);
    let mut out = Vec::new();
    multi.step(MultiInput::Receive(frame), &mut out).unwrap();
    assert_eq!(
        multi.sleep_state(group),
        Some(GroupSleep::Following { leader }),
        "a stale answer woke the follower"
    );
    // Long enough for any woken follower to have campaigned several times.
    driver.run(300);
    assert!(driver.violation.is_none(), "{:?}", driver.violation);
    assert_eq!(
        term(&driver, leader, group),
        term_before,
        "an election disturbed the group"
    );
    assert_eq!(driver.leader_of(group), Some(leader));
}

/// A host that stalls (its loop paused, its process stopped, its machine
/// overloaded) is handed the ticks it missed in one burst before the
/// frames that waited for it. Its peers were alive all along: it must not
/// take them for dead and queue every group they lead to elect, which at
/// scale keeps the loop stalled and repeats the storm. A peer that did
/// die is still taken for dead once another peer is heard from.
#[test]
fn a_stalled_host_takes_no_live_peer_for_dead() {
    use concord::multi::MultiInput;

    let mut driver = Driver::new(Options::quiet(3, 30), 3);
    assert!(driver.run_until_asleep(400).is_some());
    let stalled: NodeId = 1;
    let timeout_ticks = u64::from(driver.options.liveness_timeout_ticks);
    let multi = driver.multi_mut(stalled);
    let died_before = multi.stats().peers_died;
    let mut out = Vec::new();
    for _ in 0..3 * timeout_ticks {
        multi.step(MultiInput::Tick, &mut out).unwrap();
    }
    assert_eq!(
        multi.stats().peers_died,
        died_before,
        "the stalled host took its live peers for dead"
    );
    assert_eq!(multi.electing_count(), 0, "groups woke to elect");
    driver.run(50);
    assert!(driver.violation.is_none(), "{:?}", driver.violation);

    // The death of a peer the others outlive is still noticed.
    let victim = busiest_leader(&driver);
    driver.kill(victim);
    let died_before: u64 = driver.total(|stats| stats.peers_died);
    driver.run(3 * timeout_ticks);
    assert!(
        driver.total(|stats| stats.peers_died) >= died_before + 2,
        "the two survivors did not take node {victim} for dead"
    );
}

/// A host that stalled hands over the ticks it missed back to back, then
/// flushes once: the wake queues are served once for the lot, not once
/// per missed tick (which would wake ever more groups the slower the
/// loop got), while the clock still takes every tick.
#[test]
fn ticks_back_to_back_serve_the_wake_queues_once() {
    use concord::multi::{MultiConfig, MultiInput, MultiNode};
    use concord::{Config, Recovered};

    let mut config = MultiConfig::new(1, [1, 2, 3]);
    config.wakes_per_tick_max = 2;
    config.elections_concurrent_max = 1_000;
    let mut multi = MultiNode::new(config).unwrap();
    // Every group starts without a leader, queued to elect.
    for group in 1..=100 {
        multi
            .create_group(group, Config::new(1, [1, 2, 3]), Recovered::default())
            .unwrap();
    }
    let mut out = Vec::new();
    for _ in 0..20 {
        multi.step(MultiInput::Tick, &mut out).unwrap();
    }
    assert_eq!(multi.now_ticks(), 20, "the clock took every tick");
    assert_eq!(
        multi.stats().wakes_to_elect,
        2,
        "twenty ticks back to back woke more than one tick's worth"
    );
    assert_eq!(multi.stats().ticks_back_to_back, 19);
    // After a flush, the next tick serves the queue again.
    multi.flush(&mut out);
    multi.step(MultiInput::Tick, &mut out).unwrap();
    assert_eq!(multi.stats().wakes_to_elect, 4);
}

/// A long stall's catch-up costs each awake group a few steps, however
/// many ticks the host missed: a leader its `lease_read_ticks` (so every
/// lease from before the stall has run out), any other role half its
/// minimum election timeout. 1,000 missed ticks with every group awake would otherwise
/// be 1,000 steps of each, a stall of its own, and every follower would
/// time out on heartbeats still waiting unread. The clock takes every tick.
#[test]
fn a_burst_hands_a_leader_its_lease_and_a_follower_half_a_timeout() {
    use concord::multi::MultiInput;
    use concord::Role;

    let options = Options {
        // Awake, so that every group is ticked.
        quiesce_after_idle_ticks: None,
        ..Options::quiet(3, 12)
    };
    let lease_ticks = u64::from(options.lease_read_ticks);
    assert!(
        lease_ticks > 2,
        "the lease must outlast a heartbeat interval"
    );
    let mut driver = Driver::new(options, 5);
    driver.run(200);
    let groups: Vec<u64> = driver.members.keys().copied().collect();
    assert!(groups.iter().all(|&g| driver.leader_of(g).is_some()));
    let stalled = busiest_leader(&driver);
    let led: Vec<u64> = groups
        .iter()
        .copied()
        .filter(|&g| driver.leader_of(g) == Some(stalled))
        .collect();
    // A lease read right now is served at once: the lease holds.
    let read = driver.read(stalled, led[0], ReadPath::Lease);
    assert!(!driver.read_pending(read), "no lease before the stall");

    let multi = driver.multi_mut(stalled);
    // Each group's share of a burst, by its role now.
    let (mut leading, mut following, mut shares) = (0u64, 0u64, 0u64);
    for node in groups.iter().filter_map(|&g| multi.group(g)) {
        let config = node.config();
        if node.role() == Role::Leader {
            leading += 1;
            assert_eq!(u64::from(config.lease_read_ticks), lease_ticks);
            shares += lease_ticks;
        } else {
            following += 1;
            shares += u64::from(config.election_timeout_min_ticks / 2);
        }
    }
    assert!(leading > 0 && following > 0);
    let (clock_before, stats_before) = (multi.now_ticks(), *multi.stats());
    let mut out = Vec::new();
    multi.flush(&mut out);
    out.clear();
    for _ in 0..1_000 {
        multi.step(MultiInput::Tick, &mut out).unwrap();
    }
    let stats = multi.stats();
    assert_eq!(
        multi.now_ticks(),
        clock_before + 1_000,
        "the clock took every tick"
    );
    assert_eq!(
        stats.group_ticks - stats_before.group_ticks,
        shares,
        "a group took more or less of the burst than its share"
    );
    assert_eq!(
        stats.group_ticks_withheld - stats_before.group_ticks_withheld,
        (leading + following) * 1_000 - shares
    );
    // The lease from before the stall ran out in the burst.
    let read = driver.read(stalled, led[0], ReadPath::Lease);
    assert!(
        driver.read_pending(read),
        "a lease from before the stall served a read after it"
    );
    driver.run(50);
    assert!(
        !driver.read_pending(read),
        "the read was not served after a round"
    );
    assert!(driver.violation.is_none(), "{:?}", driver.violation);
    // No group lost its leader to the stall.
    for &g in &groups {
        assert!(driver.leader_of(g).is_some(), "group {g} has no leader");
    }
    assert_eq!(
        led.iter()
            .filter(|&&g| driver.leader_of(g) == Some(stalled))
            .count(),
        led.len(),
        "the stalled node lost a leadership to its own stall"
    );
}

/// Found by the simulator's `vote-hold` step rule (multi-group
/// seeds 88 and 137 of `run --groups swarm --nodes 3`): a group woken
/// from the election queue wakes inside a tick and is then ticked with
/// the awake groups in that same tick, and its catch-up counted that tick
/// too. Its node was a tick further along than a lone follower's clock,
/// and voted a tick inside the promise it had given its leader.
#[test]
fn a_follower_woken_to_elect_takes_no_more_ticks_than_passed() {
    use std::sync::{Arc, Mutex};

    use concord::multi::{GroupId, GroupStepObserver};
    use concord::{Action, Input, Node};

    type Log = Arc<Mutex<Vec<(NodeId, GroupId, u64)>>>;
    /// Records every tick a group's node takes, with the layer's clock.
    struct Ticks(NodeId, Log);
    impl GroupStepObserver for Ticks {
        fn before(&mut self, group: GroupId, _: &Node, input: &Input, clock_ticks: u64) {
            if matches!(input, Input::Tick) {
                self.1.lock().unwrap().push((self.0, group, clock_ticks));
            }
        }
        fn after(&mut self, _: GroupId, _: &Node, _: &[Action], _: u64) {}
    }

    for seed in 0..8 {
        let options = Options {
            liveness_timeout_ticks: 4,
            ..Options::quiet(3, 4)
        };
        let mut driver = Driver::new(options, seed);
        assert!(driver.run_until_asleep(400).is_some());
        let victim = busiest_leader(&driver);
        let last_heard = driver.now;
        let log: Log = Arc::default();
        for id in [1, 2, 3].into_iter().filter(|id| *id != victim) {
            let observer = Box::new(Ticks(id, log.clone()));
            driver.multi_mut(id).set_step_observer(observer);
        }
        driver.kill(victim);
        driver.run(30);
        assert!(driver.violation.is_none(), "{:?}", driver.violation);
        let log = log.lock().unwrap();
        let mut checked = 0;
        for &(id, group, clock) in log.iter() {
            // Ticks a group's node took by this clock reading (it slept,
            // untouched, since it last heard the dead node).
            let taken = log
                .iter()
                .filter(|(other, same, at)| *other == id && *same == group && *at <= clock)
                .count() as u64;
            assert!(
                taken <= clock - last_heard,
                "seed {seed}: group {group} on n{id} took {taken} ticks by tick {clock}, {} after it last heard n{victim}",
                clock - last_heard
            );
            checked += 1;
        }
        assert!(checked > 0, "seed {seed}: no group woke on the survivors");
    }
}
