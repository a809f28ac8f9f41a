//! `concord-services` on a closed standard output (`| head -1`): a
//! client command that prints its answer exits quietly with the code of
//! its outcome, never with a panic ("failed printing to stdout: Broken
//! pipe", exit 101). A real one-server cluster on loopback.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{cli, Cluster, Outcome, BINARY};

const CLUSTER: &str = "closed-pipe";

#[test]
fn a_client_answer_to_a_closed_pipe_exits_quietly() {
    let mut cluster = Cluster::with_nodes("kv", CLUSTER, 1);
    cluster.start(1);
    let deadline = Instant::now() + Duration::from_secs(30);
    while cluster.leader().is_none() {
        assert!(Instant::now() < deadline, "no leader within 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    let target = cluster.cli_target();
    match cli(&target, &["put", "color", "blue"]) {
        Outcome::Ok(_) => {}
        _ => panic!("put was not applied"),
    }
    // The answer is printed: check it is there with a reader first.
    match cli(&target, &["get", "color"]) {
        Outcome::Ok(stdout) => assert!(stdout.contains("blue"), "{stdout}"),
        _ => panic!("get was not answered"),
    }
    let mut child = Command::new(BINARY)
        .args([
            "kv",
            "--servers",
            &cluster.servers(),
            "--cluster-id",
            CLUSTER,
        ])
        .args(["get", "color"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the command-line client");
    // Closing the only read end makes every write fail with EPIPE.
    drop(child.stdout.take());
    let output = child.wait_with_output().expect("waits");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "{stderr}"
    );
}
