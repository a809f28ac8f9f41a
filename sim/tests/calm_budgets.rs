//! The calm-network liveness budgets (`concord_sim::budgets`: follower
//! apply, read latency, backlog throughput) each fire on a host bug that
//! breaks their property after the quiet period, and stay quiet on the
//! same seed without it.

use concord_sim::{run_kv, FailureKind, HostBugs, SimConfig};

/// Seeds within which each bug must be caught.
const SEEDS: u64 = 20;

/// The first seed of `0..SEEDS` on `nodes` nodes that `bugs` fails, with
/// its failure kind; then the same seed must pass without the bug.
fn first_catch(nodes: usize, bugs: HostBugs) -> (u64, FailureKind, String) {
    let caught = (0..SEEDS).find_map(|seed| {
        let config = SimConfig {
            seed,
            nodes,
            bugs,
            ..SimConfig::default()
        };
        let report = run_kv(&config, None).unwrap();
        report
            .failure
            .map(|failure| (seed, failure.kind, failure.message))
    });
    let (seed, kind, message) = caught
        .unwrap_or_else(|| panic!("{bugs:?} not caught within {SEEDS} seeds on {nodes} nodes"));
    let correct = SimConfig {
        seed,
        nodes,
        ..SimConfig::default()
    };
    let report = run_kv(&correct, None).unwrap();
    assert!(report.passed(), "seed {seed}: {:?}", report.failure);
    (seed, kind, message)
}

#[test]
fn followers_that_learn_a_commit_only_from_heartbeats_fail_the_apply_budget() {
    for nodes in [5, 3] {
        let bugs = HostBugs {
            calm_commit_updates_dropped: true,
            ..HostBugs::default()
        };
        let (seed, kind, message) = first_catch(nodes, bugs);
        assert_eq!(kind, FailureKind::FollowerApply, "seed {seed}: {message}");
        assert!(message.contains("follower apply budget"), "{message}");
    }
}

#[test]
fn reads_never_confirmed_fail_the_read_budget() {
    for nodes in [5, 3] {
        let bugs = HostBugs {
            calm_heartbeat_answers_dropped: true,
            ..HostBugs::default()
        };
        let (seed, kind, message) = first_catch(nodes, bugs);
        assert_eq!(kind, FailureKind::ReadLatency, "seed {seed}: {message}");
        assert!(message.contains("read latency budget"), "{message}");
    }
}

#[test]
fn a_slow_backlog_fails_the_throughput_budget() {
    for nodes in [5, 3] {
        let bugs = HostBugs {
            calm_backlog_delayed: true,
            ..HostBugs::default()
        };
        let (seed, kind, message) = first_catch(nodes, bugs);
        assert_eq!(
            kind,
            FailureKind::BacklogThroughput,
            "seed {seed}: {message}"
        );
        assert!(message.contains("round trips of 2100 us"), "{message}");
    }
}
