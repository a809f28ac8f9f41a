//! What the simulator's tests share: running the `concord-sim` binary,
//! writing input files, and configurations several tests run.
#![allow(dead_code)]

use std::path::PathBuf;

use concord_sim::{FaultKind, FaultSet, HostBugs, SimConfig};

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
