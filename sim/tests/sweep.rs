//! The CI sweep: 600 seeds across cluster sizes 1, 3 and 5 with every
//! fault allowed (swarm testing picks each seed's mix); all must pass.

use concord_sim::{run_seeds, FaultSet, SimConfig};

#[test]
fn sweep_600_seeds_across_cluster_sizes() {
    let mut failures = Vec::new();
    let mut operations = 0;
    for nodes in [1, 3, 5] {
        let template = SimConfig {
            nodes,
            faults: FaultSet::all(),
            chaos_ns: 8_000_000_000,
            clients: 4,
            ..SimConfig::default()
        };
        let summary = run_seeds(&template, 0..200, 2, &|_| {}).unwrap();
        assert_eq!(summary.seeds, 200);
        operations += summary.operations;
        for report in summary.failures {
            failures.push(format!(
                "{} nodes, seed {}: {:?}\n  replay: {}",
                nodes,
                report.config.seed,
                report.failure,
                report.config.replay_command()
            ));
        }
    }
    assert!(
        operations > 10_000,
        "the sweep checked {operations} operations"
    );
    assert!(
        failures.is_empty(),
        "{} failing seeds:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
