//! The figures of `docs/multi-group.md`, as deterministic counts from the
//! test driver (never times). Ignored by default; run with
//! `cargo test -p concord --test multi_group_figures -- --ignored --nocapture`.

mod multi_driver;

use concord::NodeId;
use multi_driver::{Driver, Options};

/// Per idle group per tick, over `ticks` ticks of a 3-node cluster:
/// frames, frame items (messages) and node steps.
fn idle_per_group_per_tick(groups: u64, quiesce: bool, ticks: u64) -> (f64, f64, f64) {
    let options = Options {
        quiesce_after_idle_ticks: quiesce.then_some(4),
        ..Options::quiet(3, groups)
    };
    let mut driver = Driver::new(options, 1);
    if quiesce {
        assert!(driver.run_until_asleep(2000).is_some());
        driver.run(10);
    } else {
        driver.run(300);
    }
    let frames = driver.total(|stats| stats.frames_sent);
    let items = driver.total(|stats| stats.frame_items_sent);
    let steps = driver.total(|stats| stats.node_steps);
    driver.run(ticks);
    assert!(driver.violation.is_none(), "{:?}", driver.violation);
    let per = (groups * ticks) as f64;
    (
        (driver.total(|stats| stats.frames_sent) - frames) as f64 / per,
        (driver.total(|stats| stats.frame_items_sent) - items) as f64 / per,
        (driver.total(|stats| stats.node_steps) - steps) as f64 / per,
    )
}

#[test]
#[ignore = "figures for the docs; run with --ignored --nocapture"]
fn figures() {
    let groups = 1000;
    for quiesce in [true, false] {
        let (frames, items, steps) = idle_per_group_per_tick(groups, quiesce, 100);
        println!(
            "idle, {groups} groups on 3 nodes, quiescence {}: per group per tick (all nodes): {frames:.4} frames, {items:.4} messages, {steps:.4} node steps",
            if quiesce { "on" } else { "off" }
        );
    }
    for groups in [1000, 10_000] {
        let mut driver = Driver::new(Options::quiet(3, groups), 3);
        let asleep = driver.run_until_asleep(5000).expect("quiesces");
        let mut led = std::collections::BTreeMap::<NodeId, u64>::new();
        for &group in driver.members.keys() {
            *led.entry(driver.leader_of(group).expect("led"))
                .or_default() += 1;
        }
        let (victim, orphans) = led.into_iter().max_by_key(|(id, n)| (*n, *id)).unwrap();
        driver.kill(victim);
        driver.electing_max = 0;
        let mut took = None;
        for tick in 1..=5000 {
            driver.tick();
            assert!(driver.violation.is_none(), "{:?}", driver.violation);
            if driver
                .members
                .keys()
                .all(|group| driver.leader_of(*group).is_some())
            {
                took = Some(tick);
                break;
            }
        }
        println!(
            "node loss, {groups} groups on 3 nodes (all quiesced after {asleep} ticks): node {victim} led {orphans}; every group led again after {took:?} ticks; at most {} elections at once on a node (limit 256)",
            driver.electing_max
        );
    }
}
