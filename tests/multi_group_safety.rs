//! Per-group safety of the multi-group layer under loss, delay,
//! reordering, partitions, crashes and restarts from durable state: at
//! most one leader per term in every group (election safety), replicas of
//! a group that agree on an entry agree on every entry before it (log
//! matching), every replica applies the same entry at an index (commit
//! agreement), reads see everything committed before them, and what a
//! group was told is durable is on disk. See `multi_driver/mod.rs`.

mod multi_driver;

use multi_driver::{Driver, Options};

/// Seeds per cluster shape; each run is 600 ticks.
const SEEDS: u64 = 12;

#[test]
fn every_group_keeps_raft_safety_under_faults_with_quiescence() {
    let mut applied = 0;
    let mut crashes = 0;
    for (nodes, groups) in [(3, 12), (5, 16)] {
        for seed in 0..SEEDS {
            let options = Options::new(nodes, groups);
            let driver = Driver::run_checked(options, seed)
                .unwrap_or_else(|violation| panic!("{violation}"));
            applied += driver.entries_applied;
            crashes += driver.crashes;
        }
    }
    // The runs did something worth checking.
    assert!(applied > 1000, "only {applied} entries applied");
    assert!(crashes > 10, "only {crashes} crashes");
}

#[test]
fn every_group_keeps_raft_safety_under_faults_without_quiescence() {
    for seed in 0..SEEDS / 2 {
        let options = Options {
            quiesce_after_idle_ticks: None,
            ..Options::new(3, 12)
        };
        Driver::run_checked(options, 1000 + seed).unwrap_or_else(|violation| panic!("{violation}"));
    }
}

/// Fails unless a run with `bugs` planted fails within the first `seeds`
/// seeds (3 nodes, 12 groups, faults on).
#[cfg(feature = "planted-bugs")]
fn caught_within(bugs: multi_driver::Bugs, seeds: u64) -> u64 {
    let options = Options::new(3, 12);
    match multi_driver::first_catch(&options, bugs, 0..seeds) {
        Some((seed, violation)) => {
            eprintln!("caught at seed {seed}: {violation}");
            seed
        }
        None => panic!("the planted mistake {bugs:?} survived {seeds} seeds"),
    }
}

/// Each planted mistake, with the seeds it must be caught within: a
/// heartbeat that carries the commit index past a follower's match
/// (caught at seed 0: a replica applies another entry at an index), and
/// one group's entries acknowledged on another group's fsync (caught at
/// seed 3: a crash finds an acknowledged entry not on disk).
#[cfg(feature = "planted-bugs")]
#[test]
fn planted_mistakes_of_the_multi_group_host_are_caught() {
    for (seeds, bugs) in [
        (
            5,
            multi_driver::Bugs {
                heartbeat_commit_uncapped: true,
                ..Default::default()
            },
        ),
        (
            10,
            multi_driver::Bugs {
                persist_acks_later_batches: true,
                ..Default::default()
            },
        ),
    ] {
        caught_within(bugs, seeds);
    }
}
