//! The simulator is deterministic: a seed replays to the same trace hash,
//! different seeds give different runs, and recording the timeline or
//! passing the seed's own plan explicitly changes nothing.

use concord_sim::{plan_for, run_kv, DurableChoice, SimConfig};

fn config(seed: u64, nodes: usize) -> SimConfig {
    SimConfig {
        seed,
        nodes,
        chaos_ns: 3_000_000_000,
        liveness_bound_ns: 10_000_000_000,
        ..SimConfig::default()
    }
}

#[test]
fn same_seed_gives_same_trace_hash() {
    for nodes in [1, 3, 5] {
        for seed in [0, 7, 12345] {
            let first = run_kv(&config(seed, nodes), None).unwrap();
            let second = run_kv(&config(seed, nodes), None).unwrap();
            assert_eq!(
                first.trace_hash, second.trace_hash,
                "seed {seed}, {nodes} nodes"
            );
            assert_eq!(first.node_steps, second.node_steps);
            assert_eq!(first.simulated_ns, second.simulated_ns);
            assert_eq!(first.failure, second.failure);
            assert!(
                first.node_steps > 100 && first.operations > 0,
                "a run does real work"
            );
        }
    }
}

#[test]
fn on_disk_state_machines_replay_to_the_same_trace_hash() {
    for nodes in [1, 3, 5] {
        for seed in [0, 7, 12345] {
            let durable = SimConfig {
                durable_state_machine: DurableChoice::Always,
                ..config(seed, nodes)
            };
            let first = run_kv(&durable, None).unwrap();
            let second = run_kv(&durable, None).unwrap();
            assert_eq!(
                first.trace_hash, second.trace_hash,
                "seed {seed}, {nodes} nodes"
            );
            assert_eq!(first.durable, second.durable);
            assert_eq!(first.failure, second.failure);
            assert_eq!(first.durable.runs, 1, "the state machines are on disk");
            let in_memory = SimConfig {
                durable_state_machine: DurableChoice::Off,
                ..config(seed, nodes)
            };
            let memory = run_kv(&in_memory, None).unwrap();
            assert_eq!(memory.durable.runs, 0);
            assert_ne!(
                memory.trace_hash, first.trace_hash,
                "seed {seed}, {nodes} nodes"
            );
        }
    }
}

#[test]
fn different_seeds_give_different_trace_hashes() {
    let hashes: std::collections::BTreeSet<u64> = (0..20)
        .map(|seed| run_kv(&config(seed, 3), None).unwrap().trace_hash)
        .collect();
    assert_eq!(hashes.len(), 20, "every seed gives its own run");
}

#[test]
fn timeline_and_explicit_plan_do_not_change_the_run() {
    let plain = config(99, 5);
    let report = run_kv(&plain, None).unwrap();
    let with_timeline = run_kv(
        &SimConfig {
            timeline: true,
            ..plain.clone()
        },
        None,
    )
    .unwrap();
    assert_eq!(report.trace_hash, with_timeline.trace_hash);
    assert!(!with_timeline.timeline.is_empty());
    assert!(with_timeline
        .timeline
        .iter()
        .any(|entry| entry.text.contains("becomes Leader")));
    let explicit = run_kv(&plain, Some(plan_for(&plain))).unwrap();
    assert_eq!(report.trace_hash, explicit.trace_hash);
}

#[test]
fn plan_round_trips_through_json() {
    let plan = plan_for(&config(5, 5));
    let json = serde_json::to_string(&plan).unwrap();
    let back: concord_sim::FaultPlan = serde_json::from_str(&json).unwrap();
    assert_eq!(plan, back);
}

#[test]
fn parallel_runs_merge_deterministically() {
    let template = SimConfig {
        nodes: 3,
        chaos_ns: 2_000_000_000,
        ..SimConfig::default()
    };
    let one = concord_sim::run_seeds(&template, 0..12, 1, &|_| {}).unwrap();
    let two = concord_sim::run_seeds(&template, 0..12, 2, &|_| {}).unwrap();
    assert_eq!(one.hashes, two.hashes);
    assert_eq!(one.node_steps, two.node_steps);
    assert_eq!(one.operations, two.operations);
    assert_eq!(one.faults, two.faults);
    assert!(
        one.hashes.windows(2).all(|pair| pair[0].0 < pair[1].0),
        "merged in seed order"
    );
}
