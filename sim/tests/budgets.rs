//! The efficiency budgets (`concord_sim::budgets`) catch a planted
//! inefficiency that every safety and liveness check lets through: a
//! leader that ignores the follower's hint when an append is refused and
//! backs up one entry per probe round trip. Probe round trips per
//! catch-up are an expectation, not a bound (a follower cut off through
//! many short terms may need one round trip per term even with the hint),
//! so by default the run reports it in a class of its own and passes;
//! `--strict-budgets` fails it. Measured: the first seed to exceed it is
//! seed 2 on 5 nodes and seed 0 on 3 nodes; the correct core exceeds no
//! expectation on those seeds.

use concord_sim::budgets::Expectation;
use concord_sim::{run_kv, CoreBugs, FailureKind, SimConfig};

/// Seeds within which the planted inefficiency must be caught.
const SEEDS: u64 = 20;

#[test]
fn a_leader_ignoring_the_probe_hint_exceeds_the_expectation() {
    for nodes in [5, 3] {
        let base = SimConfig {
            nodes,
            core_bugs: CoreBugs {
                probe_ignores_hint: true,
                ..CoreBugs::default()
            },
            // The expectation is measured alone: the step rule
            // `probe-per-term` would stop the run at the first probe.
            step_rules: false,
            ..SimConfig::default()
        };
        let caught = (0..SEEDS).find(|seed| {
            let config = SimConfig {
                seed: *seed,
                ..base.clone()
            };
            let report = run_kv(&config, None).unwrap();
            assert!(report.passed(), "seed {seed}: {:?}", report.failure);
            report
                .expectations
                .iter()
                .any(|exceeded| exceeded.expectation == Expectation::ProbesPerCatchUp)
        });
        let seed =
            caught.unwrap_or_else(|| panic!("not caught within {SEEDS} seeds on {nodes} nodes"));
        // Strict, the same seed fails on the same expectation.
        let strict = SimConfig {
            seed,
            strict_budgets: true,
            ..base.clone()
        };
        let failure = run_kv(&strict, None)
            .unwrap()
            .failure
            .expect("strict fails");
        assert_eq!(
            failure.kind,
            FailureKind::Efficiency,
            "seed {seed}: {failure}"
        );
        assert!(failure.message.contains("probe round trips"), "{failure}");
        // The same seed passes, strict, with the hint used.
        let correct = SimConfig {
            seed,
            nodes,
            strict_budgets: true,
            ..SimConfig::default()
        };
        let report = run_kv(&correct, None).unwrap();
        assert!(report.passed(), "seed {seed}: {:?}", report.failure);
        assert!(report.expectations.is_empty(), "seed {seed}");
    }
}

/// The four seeds of a 1,000,000-seed sweep that failed a budget without
/// showing a bug: each now passes, and one that exceeds a statistical budget reports it
/// in its own class, not as a failure.
#[test]
fn the_sweep_seeds_raise_no_false_alarm() {
    let cases: [(u64, usize, bool, Option<Expectation>); 4] = [
        // A client's retry followed the latency write before it committed.
        (1016817, 5, false, None),
        // The write's append overtook the one before it and was refused.
        (1029696, 5, false, None),
        // Ten seconds without a working quorum: messages, few entries.
        (5201658, 6, false, Some(Expectation::MessagesPerEntry)),
        // The entries the lost majority committed are counted.
        (7001472, 5, true, None),
    ];
    for (seed, nodes, forced, expected) in cases {
        let config = SimConfig {
            seed,
            nodes,
            forced_recovery: if forced {
                concord_sim::ForcedRecoveryChoice::Always
            } else {
                concord_sim::ForcedRecoveryChoice::Swarm
            },
            ..SimConfig::default()
        };
        let report = run_kv(&config, None).unwrap();
        assert!(report.passed(), "seed {seed}: {:?}", report.failure);
        let exceeded: Vec<Expectation> = report
            .expectations
            .iter()
            .map(|exceeded| exceeded.expectation)
            .collect();
        // Whether a seed's run still exceeds its expectation depends on
        // the schedule the seed draws, which later changes of the core or
        // the simulator move; no other expectation may be exceeded.
        assert!(
            exceeded.iter().all(|kind| Some(*kind) == expected),
            "seed {seed}: {exceeded:?}"
        );
    }
}

/// A `TimeoutNow` the lease nemesis sent during the faults can arrive
/// seconds after the heal (a stale delivery) and depose the calm leader:
/// its target campaigns whatever the network does now. Found by CI's
/// random sweep: seed 3384630468 on 5 nodes with forced recovery failed
/// a follower read as "refused on a calm network". The calm phases are
/// unjudged while such a hand-over may still arrive, and counted so.
#[test]
fn a_hand_over_in_flight_at_the_heal_leaves_the_calm_phases_unjudged() {
    let config = SimConfig {
        seed: 3384630468,
        nodes: 5,
        forced_recovery: concord_sim::ForcedRecoveryChoice::Always,
        ..SimConfig::default()
    };
    let report = run_kv(&config, None).unwrap();
    assert!(report.passed(), "{:?}", report.failure);
    // Since replicas recover from empty storage (a round of questions
    // before the first election), this seed's schedule has moved: the
    // hand-over no longer arrives after the heal, so whether its calm
    // phases are unjudged is no longer asserted; the seed must still pass.
}
