//! Quiescence: a quiesced follower never misses a committed entry, a
//! quiesced group costs no message and no step per tick, and a tick's
//! work grows with the awake groups, not with the groups hosted. Counted,
//! never timed.

mod multi_driver;

use concord::multi::MultiConfig;
use multi_driver::{Driver, Options};

#[test]
fn a_quiesced_follower_never_misses_a_committed_entry() {
    // The driver checks after every tick that each sleeping leader's live
    // followers hold its last entry, and at the end that every replica
    // applied its leader's whole committed log.
    let mut sleeps = 0;
    for seed in 0..16 {
        let options = Options {
            proposals_per_tick: 1,
            ..Options::new(3, 16)
        };
        let driver = Driver::run_checked(options, 2000 + seed)
            .unwrap_or_else(|violation| panic!("{violation}"));
        sleeps += driver.total(|stats| stats.sleeps);
    }
    assert!(
        sleeps > 100,
        "groups slept only {sleeps} times: quiescence was not exercised"
    );
}

/// Frames, frame items and node steps over `ticks` ticks of an idle cluster.
fn idle_cost(driver: &mut Driver, ticks: u64) -> (u64, u64, u64) {
    let frames = driver.total(|stats| stats.frames_sent);
    let items = driver.total(|stats| stats.frame_items_sent);
    let steps = driver.total(|stats| stats.node_steps);
    driver.run(ticks);
    assert!(driver.violation.is_none(), "{:?}", driver.violation);
    (
        driver.total(|stats| stats.frames_sent) - frames,
        driver.total(|stats| stats.frame_items_sent) - items,
        driver.total(|stats| stats.node_steps) - steps,
    )
}

#[test]
fn a_quiesced_group_sends_no_message_and_takes_no_step_per_tick() {
    let (nodes, groups, ticks) = (3, 100, 100);
    // The layer's default liveness interval, not the driver's.
    let interval = u64::from(MultiConfig::new(1, [2]).liveness_interval_ticks);
    let options = Options {
        liveness_interval_ticks: interval as u32,
        ..Options::quiet(nodes, groups)
    };
    let mut driver = Driver::new(options, 7);
    let took = driver.run_until_asleep(400);
    assert!(took.is_some(), "groups did not all quiesce in 400 ticks");
    // Answers in flight when the last group fell asleep arrive first.
    driver.run(10);
    let (frames, items, steps) = idle_cost(&mut driver, ticks);
    // Only the node-level heartbeat: one empty frame per node pair and
    // direction per liveness interval, whatever the number of groups.
    let directions = nodes * (nodes - 1);
    assert!(
        (directions * (ticks / interval)..=directions * (ticks / interval + 1)).contains(&frames),
        "{frames} frames in {ticks} ticks, one per {interval} ticks expected"
    );
    assert_eq!(items, 0);
    assert_eq!(steps, 0);

    // The same cluster never quiescing: every group heartbeats.
    let options = Options {
        quiesce_after_idle_ticks: None,
        ..Options::quiet(nodes, groups)
    };
    let mut awake = Driver::new(options, 7);
    awake.run(200);
    let (frames, items, steps) = idle_cost(&mut awake, ticks);
    // One exchange per node pair per tick carries every group: the
    // tick's frame (heartbeats) and the frame of answers to it.
    assert!(
        frames <= 2 * nodes * (nodes - 1) * ticks,
        "{frames} frames for {groups} groups"
    );
    assert!(
        items >= groups * ticks,
        "{items} items: idle awake groups should heartbeat"
    );
    assert!(
        steps >= groups * nodes * ticks,
        "{steps} steps: every awake replica is ticked"
    );
}

#[test]
fn tick_work_grows_with_awake_groups_not_with_hosted_groups() {
    let mut per_tick = Vec::new();
    for groups in [100, 2000] {
        let mut driver = Driver::new(Options::quiet(3, groups), 11);
        assert!(
            driver.run_until_asleep(1000).is_some(),
            "{groups} groups did not quiesce"
        );
        let steps = driver.total(|stats| stats.node_steps);
        let group_ticks = driver.total(|stats| stats.group_ticks);
        // Keep the same 5 groups busy for 50 ticks.
        for _ in 0..50 {
            for group in 1..=5 {
                if let Some(leader) = driver.leader_of(group) {
                    driver.propose(leader, group);
                }
            }
            driver.tick();
        }
        assert!(driver.violation.is_none(), "{:?}", driver.violation);
        let steps = driver.total(|stats| stats.node_steps) - steps;
        let group_ticks = driver.total(|stats| stats.group_ticks) - group_ticks;
        // Only the 5 groups' 3 replicas were ticked: 50 ticks each, and
        // at most a lease's worth (6) of missed ticks as each woke.
        assert!(
            group_ticks <= 5 * 3 * (50 + 6),
            "{group_ticks} group ticks with {groups} groups hosted"
        );
        per_tick.push(steps);
    }
    // 20 times the groups, the same work (within 20 %: the 5 groups'
    // leaders and terms differ between the two runs).
    let (few, many) = (per_tick[0] as f64, per_tick[1] as f64);
    assert!(
        many <= few * 1.2 && few <= many * 1.2,
        "node steps {} with 100 groups hosted, {} with 2,000",
        per_tick[0],
        per_tick[1]
    );
}

#[cfg(feature = "planted-bugs")]
#[test]
fn planted_quiesce_while_a_follower_is_behind_is_caught() {
    let bugs = multi_driver::Bugs {
        quiesce_follower_behind: true,
        ..Default::default()
    };
    let options = Options {
        proposals_per_tick: 1,
        ..Options::new(3, 16)
    };
    // Caught at seed 2011, the 12th.
    match multi_driver::first_catch(&options, bugs, 2000..2025) {
        Some((seed, violation)) => eprintln!("caught at seed {seed}: {violation}"),
        None => panic!("quiescing with a follower behind survived 25 seeds"),
    }
}

#[test]
fn a_preferred_leader_back_from_a_crash_leads_every_group_again_and_they_sleep() {
    let groups = 32;
    let options = Options {
        preferred_leader: Some(3),
        down_ticks: 150,
        ..Options::quiet(3, groups)
    };
    let mut driver = Driver::new(options, 11);
    assert!(driver.run_until_asleep(600).is_some(), "no quiescence");
    let led_by = |driver: &Driver| -> Vec<Option<u64>> {
        (1..=groups).map(|group| driver.leader_of(group)).collect()
    };
    assert!(led_by(&driver).iter().all(|leader| *leader == Some(3)));
    // Node 3 down for 150 ticks: the others elect leaders.
    driver.crash(3);
    let mut ticks = 0;
    while !led_by(&driver)
        .iter()
        .all(|leader| leader.is_some_and(|id| id != 3))
    {
        assert!(
            ticks < 140,
            "the others did not take over: {:?}",
            led_by(&driver)
        );
        driver.tick();
        ticks += 1;
    }
    // Back: every group hands leadership to it, then sleeps (a leader
    // that is not the preferred one must not sleep while it lives).
    driver.run(150 - ticks + 1);
    let took = driver.run_until_asleep(1_000);
    assert!(
        took.is_some(),
        "groups did not all quiesce after node 3 came back"
    );
    assert!(driver.violation.is_none(), "{:?}", driver.violation);
    assert_eq!(led_by(&driver), vec![Some(3); groups as usize]);
}

/// A quiesce request from before the round a follower slept on (delayed
/// or duplicated) asks nothing of it: its leader waits for no answer to
/// it. Woken by it, the follower would sit awake beside a sleeping
/// leader; a learner, which never campaigns, would stay so for good.
#[test]
fn a_stale_quiesce_request_leaves_a_sleeping_follower_asleep() {
    use concord::multi::{Frame, GroupSleep, MultiInput, QuiesceRequest};
    use concord::LogPosition;

    let mut driver = Driver::new(Options::quiet(3, 1), 11);
    driver.run_until_asleep(5_000).expect("the group sleeps");
    let group = 1;
    let leader = driver.leader_of(group).expect("a leader");
    // A write, so that a round older than the last one exists.
    driver.propose(leader, group);
    driver
        .run_until_asleep(5_000)
        .expect("the group sleeps again");
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    let node = driver.multi(follower).group(group).expect("hosted");
    let (term, last) = (node.term(), node.last_position());
    assert!(last.index > 1, "the group wrote entries: {last:?}");
    assert_eq!(
        driver.multi(follower).sleep_state(group),
        Some(GroupSleep::Following { leader })
    );
    let incarnation = driver.incarnation(leader);
    let stale = [
        LogPosition {
            index: last.index - 1,
            term: node.term_at(last.index - 1).unwrap_or(term),
        },
        last,
    ];
    for (at, request_last) in stale.into_iter().enumerate() {
        let request_term = if at == 0 { term } else { term - 1 };
        let mut frame = Frame::new(leader, follower, incarnation);
        frame.quiesce.push(QuiesceRequest {
            group,
            term: request_term,
            progress_id: 0,
            last: request_last,
        });
        driver.step(follower, MultiInput::Receive(frame));
        assert_eq!(
            driver.multi(follower).sleep_state(group),
            Some(GroupSleep::Following { leader }),
            "a request of term {request_term} at {request_last:?} woke the follower asleep in term {term} at {last:?}"
        );
    }
}
