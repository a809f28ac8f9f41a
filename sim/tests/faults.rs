//! Every fault kind really happens when it is enabled, and none happens
//! when faults are off.

use concord_sim::{run_kv, FaultCounts, FaultKind, FaultSet, SimConfig};

fn totals(faults: FaultSet, seeds: std::ops::Range<u64>, nodes: usize) -> FaultCounts {
    let mut counts = FaultCounts::default();
    for seed in seeds {
        let config = SimConfig {
            seed,
            nodes,
            faults,
            swarm: false,
            chaos_ns: 5_000_000_000,
            ..SimConfig::default()
        };
        let report = run_kv(&config, None).unwrap();
        assert!(report.passed(), "seed {seed}: {:?}", report.failure);
        counts.merge(&report.faults);
    }
    counts
}

#[test]
fn every_fault_kind_is_injected_when_enabled() {
    let counts = totals(FaultSet::all(), 0..6, 5);
    for kind in FaultKind::ALL {
        assert!(
            counts.get(kind) > 0,
            "fault {kind} was never injected: {counts:?}"
        );
    }
}

#[test]
fn each_fault_alone_is_injected() {
    for kind in FaultKind::ALL {
        // Torn writes need crashes with unsynced data to tear.
        let set = match kind {
            FaultKind::Torn => FaultSet::NONE
                .with(FaultKind::Torn)
                .with(FaultKind::Crash)
                .with(FaultKind::Fsync),
            _ => FaultSet::NONE.with(kind),
        };
        let counts = totals(set, 0..4, 3);
        assert!(
            counts.get(kind) > 0,
            "fault {kind} alone was never injected"
        );
    }
}

#[test]
fn no_fault_when_faults_are_off() {
    let counts = totals(FaultSet::NONE, 0..3, 5);
    assert_eq!(counts.total(), 0, "{counts:?}");
}
