//! The efficiency budgets (`concord_sim::budgets`) catch a planted
//! inefficiency that every safety and liveness check lets through: a
//! leader that ignores the follower's hint when an append is refused and
//! backs up one entry per probe round trip. Measured: 36 of seeds 0..100
//! fail on 5 nodes (the first is seed 2), 41 on 3 nodes (seed 0); the
//! correct core passes seeds 0..2000 on both sizes.

use concord_sim::{run_kv, CoreBugs, FailureKind, SimConfig};

/// Seeds within which the planted inefficiency must be caught.
const SEEDS: u64 = 20;

#[test]
fn a_leader_ignoring_the_probe_hint_exceeds_the_budget() {
    for nodes in [5, 3] {
        let base = SimConfig {
            nodes,
            core_bugs: CoreBugs {
                probe_ignores_hint: true,
                ..CoreBugs::default()
            },
            ..SimConfig::default()
        };
        let caught = (0..SEEDS).find_map(|seed| {
            let config = SimConfig {
                seed,
                ..base.clone()
            };
            let report = run_kv(&config, None).unwrap();
            report.failure.map(|failure| (seed, failure))
        });
        let (seed, failure) =
            caught.unwrap_or_else(|| panic!("not caught within {SEEDS} seeds on {nodes} nodes"));
        assert_eq!(
            failure.kind,
            FailureKind::Efficiency,
            "seed {seed}: {failure}"
        );
        // The same seed passes with the hint used.
        let correct = SimConfig {
            seed,
            nodes,
            ..SimConfig::default()
        };
        let report = run_kv(&correct, None).unwrap();
        assert!(report.passed(), "seed {seed}: {:?}", report.failure);
    }
}
