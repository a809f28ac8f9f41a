//! What the simulator's tests share: running the `concord-sim` binary,
//! writing input files, configurations several tests run, and running
//! seeds that must pass or fail.
#![allow(dead_code)]

use std::path::PathBuf;

use concord_sim::{run_kv, FailureKind, FaultKind, FaultSet, HostBugs, RunReport, SimConfig};

/// Three nodes under crashes (power loss of a majority included) and
/// slow fsyncs, on a host that acknowledges writes before they are synced
/// ([`HostBugs::persisted_before_sync`]): it loses acknowledged entries.
pub fn persisted_before_sync() -> SimConfig {
    SimConfig {
        nodes: 3,
        chaos_ns: 5_000_000_000,
        faults: FaultSet::NONE.with(FaultKind::Crash).with(FaultKind::Fsync),
        swarm: false,
        max_node_steps: 300_000,
        bugs: HostBugs {
            persisted_before_sync: true,
            ..HostBugs::default()
        },
        ..SimConfig::default()
    }
}

/// Runs `concord-sim` with `args`: its exit code (-1 if killed by a
/// signal), standard output and standard error.
#[cfg(feature = "cli")]
pub fn concord_sim(args: &[&str]) -> (i32, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_concord-sim"))
        .args(args)
        .output()
        .expect("runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Writes `text` to file `name` in directory `dir` of the target's
/// temporary directory (created if need be); its path.
pub fn file_in(dir: &str, name: &str, text: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `config` with its seed's own fault plan; it must pass. Its report.
pub fn passing(config: &SimConfig) -> RunReport {
    let report = run_kv(config, None).expect("a valid configuration");
    assert!(
        report.passed(),
        "seed {} on {} nodes: {:?}",
        config.seed,
        config.nodes,
        report.failure
    );
    report
}

/// Runs seeds `0..seeds` of `base`, each of which must pass; their
/// reports.
pub fn passing_seeds(base: &SimConfig, seeds: u64) -> Vec<RunReport> {
    (0..seeds)
        .map(|seed| {
            passing(&SimConfig {
                seed,
                ..base.clone()
            })
        })
        .collect()
}

/// The first of seeds `0..seeds` of `base`, which must fail as `kind`:
/// the seed and the failure's message.
pub fn caught_as(base: &SimConfig, seeds: u64, kind: FailureKind) -> (u64, String) {
    let caught = (0..seeds).find_map(|seed| {
        let config = SimConfig {
            seed,
            ..base.clone()
        };
        let report = run_kv(&config, None).expect("a valid configuration");
        report.failure.map(|failure| (seed, failure))
    });
    let (seed, failure) = caught.unwrap_or_else(|| panic!("never caught in {seeds} seeds"));
    assert_eq!(failure.kind, kind, "seed {seed}: {failure}");
    (seed, failure.to_string())
}

/// The default configuration with only the faults of `kind`, drawn in
/// every run (no swarm).
pub fn only(kind: FaultKind) -> SimConfig {
    SimConfig {
        faults: FaultSet::NONE.with(kind),
        swarm: false,
        ..SimConfig::default()
    }
}

/// Runs seeds `0..seeds` of [`only`]`(kind)`, each of which must pass; how
/// many faults of `kind` they drew between them.
pub fn drawn(kind: FaultKind, seeds: u64) -> u64 {
    passing_seeds(&only(kind), seeds)
        .iter()
        .map(|report| report.faults.get(kind))
        .sum()
}
