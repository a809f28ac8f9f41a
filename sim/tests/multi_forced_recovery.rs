//! The forced-recovery scenario of multi-group runs (`run --groups ...
//! --forced-recovery`): every node but one is lost for good, every group
//! that lost its majority is forced onto the survivor, and the checks
//! (safety per group, liveness after the heal, quiescence, every group's
//! history across the recovery) still pass; the acknowledged writes the
//! survivor did not hold are reported as lost by design.

use std::process::Command;

use concord_sim::multi::{run_multi, MultiSimConfig};

fn forced(nodes: usize, seed: u64) -> MultiSimConfig {
    MultiSimConfig {
        seed,
        nodes,
        forced_recovery: true,
        membership: false,
        ..MultiSimConfig::default()
    }
}

#[test]
fn multi_group_seeds_pass_a_forced_recovery_that_happened() {
    let mut groups_forced = 0;
    let mut lost_writes = 0;
    // On 5 nodes, seeds 9500000042, 83 and 167 failed `linearizability`
    // before an operation failed by a lost node's other entry at its
    // index, but held by the survivor, counted as unknown across the
    // recovery (`revived`).
    let three = (9_500_000_000..9_500_000_008).map(|seed| (3, seed));
    let five = [9_500_000_042, 9_500_000_083, 9_500_000_167, 9_500_000_100].map(|seed| (5, seed));
    let mut revived = 0;
    for (nodes, seed) in three.chain(five) {
        let report = run_multi(&forced(nodes, seed), None).unwrap();
        assert!(
            report.passed(),
            "seed {seed}, {} groups on {nodes} nodes: {:?}\nreplay: {}",
            report.groups(),
            report.failure,
            report.config.replay_command()
        );
        let recovery = report
            .forced_recovery
            .as_ref()
            .expect("every seed runs the scenario");
        assert!(recovery.recovered(), "seed {seed}: the recovery never ran");
        assert_eq!(recovery.lost_nodes.len(), nodes - 1, "seed {seed}");
        assert!(!recovery.lost_nodes.contains(&recovery.survivor));
        // Every group of two or more voters lost its majority and was
        // forced; a group of the survivor alone was not.
        let multi_voter = report
            .drawn
            .voters
            .iter()
            .filter(|voters| voters.len() >= 2)
            .count();
        assert_eq!(recovery.groups.len(), multi_voter, "seed {seed}");
        for group in &recovery.groups {
            assert_eq!(group.forced_index, group.last_before.index + 1);
            assert!(group.term > group.last_before.term);
        }
        assert!(report
            .drawn
            .voters
            .iter()
            .all(|voters| voters.contains(&recovery.survivor)));
        assert!(report.liveness_after_heal_ns.is_some(), "seed {seed}");
        groups_forced += recovery.groups.len();
        revived += recovery.revived.len();
        lost_writes += recovery.lost_writes().count();
    }
    assert!(groups_forced > 0);
    assert!(lost_writes > 0, "no seed lost an acknowledged write");
    assert!(revived > 0, "no seed revived a failed operation");
    eprintln!(
        "{groups_forced} groups forced, {lost_writes} acknowledged writes lost by design, {revived} failed operations committed after all"
    );
}

#[test]
fn a_forced_seed_replays_exactly() {
    let first = run_multi(&forced(3, 9_500_000_003), None).unwrap();
    let again = run_multi(&forced(3, 9_500_000_003), None).unwrap();
    assert_eq!(first.trace_hash, again.trace_hash);
    assert_eq!(first.forced_recovery, again.forced_recovery);
    assert!(first
        .config
        .replay_command()
        .contains("--no-membership --forced-recovery"));
}

#[test]
fn the_command_line_runs_forced_recoveries_of_multi_group_seeds() {
    let output = Command::new(env!("CARGO_BIN_EXE_concord-sim"))
        .args(["run", "--groups", "swarm", "--forced-recovery"])
        .args([
            "--seeds",
            "9500000000..9500000002",
            "--nodes",
            "3",
            "--quiet",
        ])
        .output()
        .expect("the binary runs");
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(text.contains("failures: 0"), "{text}");
    assert!(
        text.contains("forced recovery: 2 seeds rebuilt from one survivor"),
        "{text}"
    );
}
