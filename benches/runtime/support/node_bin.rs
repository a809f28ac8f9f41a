//! The `concord-node` binary a process benchmark starts. Cargo names a
//! package's own binaries to its benches (`CARGO_BIN_EXE_*`), not another
//! package's, so the first call builds `concord-node` with the cargo that
//! runs the benchmark: same target directory and profile as the benchmark,
//! with the server features this crate was built with (`disk`,
//! `count-alloc`), as `cargo bench -p concord-node` built it when the
//! benches lived there. Included by `#[path]`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The `concord-node` binary the clusters run: this tree's, built on
/// first use, or the one `CONCORD_BENCH_NODE_BIN` names (to compare two
/// builds of the server in one sitting, alternating).
pub fn node_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("CONCORD_BENCH_NODE_BIN") {
        return PathBuf::from(bin);
    }
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(build_node_binary).clone()
}

/// Builds `concord-node` next to this benchmark and returns its path.
fn build_node_binary() -> PathBuf {
    // A benchmark runs as <target>/<profile directory>/deps/<name>-<hash>.
    let exe = std::env::current_exe().expect("the benchmark's own path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("a benchmark runs from <target>/<profile>/deps")
        .to_path_buf();
    let target_dir = profile_dir.parent().expect("a target directory");
    // `cargo bench` builds into `release` with profile `bench`, `cargo
    // test --benches` into `debug` with `dev`; a custom profile's directory
    // is its name.
    let profile = match profile_dir.file_name().and_then(|name| name.to_str()) {
        Some("release") => "bench",
        Some("debug") => "dev",
        Some(other) => other,
        None => panic!("no profile directory above {}", exe.display()),
    };
    let mut features = Vec::new();
    if cfg!(feature = "disk") {
        features.push("disk");
    }
    if cfg!(feature = "count-alloc") {
        features.push("count-alloc");
    }
    let cargo = std::env::var_os("CARGO")
        .or_else(|| option_env!("CARGO").map(Into::into))
        .unwrap_or_else(|| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    eprintln!(
        "building concord-node (profile {profile}, features [{}])",
        features.join(",")
    );
    let status = Command::new(cargo)
        .args([
            "build",
            "--package",
            "concord-node",
            "--bin",
            "concord-node",
        ])
        .args(["--profile", profile])
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target_dir)
        .args(if features.is_empty() {
            Vec::new()
        } else {
            vec!["--features".to_string(), features.join(",")]
        })
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building concord-node failed: {status}");
    profile_dir.join(format!("concord-node{}", std::env::consts::EXE_SUFFIX))
}
