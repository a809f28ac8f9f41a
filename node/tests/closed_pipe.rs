//! `concord-node` and `concord-cli` on a closed standard output (`|
//! head -1`): they exit quietly, never with a panic ("failed printing to
//! stdout: Broken pipe", exit 101); a client command that prints its
//! answer exits with the code of its outcome.

#[path = "common/processes.rs"]
mod processes;
#[path = "common/services.rs"]
mod services;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use services::{cli, Cluster, Outcome};

const NODE: &str = env!("CARGO_BIN_EXE_concord-node");
const CLI: &str = env!("CARGO_BIN_EXE_concord-cli");

/// Runs `binary args` with its standard output's reader gone before it
/// writes a byte: (exit code, stderr).
fn with_stdout_closed(binary: &str, args: &[&str]) -> (i32, String) {
    let mut command = Command::new(binary);
    for (name, _) in std::env::vars() {
        if name.starts_with("CONCORD_") {
            command.env_remove(name);
        }
    }
    let mut child = command
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs");
    // Closing the only read end makes every write fail with EPIPE.
    drop(child.stdout.take());
    let output = child.wait_with_output().expect("waits");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Exit status 0, and no panic or complaint about the pipe on stderr.
fn assert_exited_quietly(code: i32, stderr: &str, what: &str) {
    assert_eq!(code, 0, "{what}: {stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "{what}: {stderr}"
    );
}

#[test]
fn shell_completions_exit_quietly_on_a_closed_pipe() {
    for (binary, args) in [
        (NODE, &["completions", "bash"][..]),
        (CLI, &["completions", "bash"][..]),
        (CLI, &["completions", "zsh"][..]),
    ] {
        let (code, stderr) = with_stdout_closed(binary, args);
        assert_exited_quietly(code, &stderr, &format!("{binary} {args:?}"));
    }
}

/// A real one-server cluster on loopback: an answer printed to a closed
/// pipe.
#[test]
fn a_client_answer_to_a_closed_pipe_exits_quietly() {
    let mut cluster = Cluster::with_nodes("kv", "closed-pipe", 1);
    cluster.start_all_and_await_leader();
    let target = cluster.cli_target();
    assert!(matches!(
        cli(&target, &["put", "color", "blue"]),
        Outcome::Ok(_)
    ));
    // The answer is printed: check it is there with a reader first.
    match cli(&target, &["get", "color"]) {
        Outcome::Ok(stdout) => assert_eq!(stdout, "blue\n"),
        _ => panic!("get was not answered"),
    }
    let args = [
        "--servers",
        &cluster.servers(),
        "--cluster-id",
        "closed-pipe",
        "kv",
        "get",
        "color",
    ];
    let (code, stderr) = with_stdout_closed(CLI, &args);
    assert_exited_quietly(code, &stderr, "kv get");
}

/// `status --watch` without `--count` would refresh forever: a closed
/// stdout ends it quietly after the round it could not print (a server
/// that refuses connections is a row, so rounds are quick).
#[test]
fn status_watch_stops_on_a_closed_pipe() {
    let mut child = Command::new(CLI)
        .args(["--servers", "127.0.0.1:9", "--timeout-ms", "100", "status"])
        .args(["--watch", "--interval-ms", "100"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs");
    drop(child.stdout.take());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("status --watch kept running with its stdout closed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = child.wait_with_output().expect("waits");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_exited_quietly(status.code().unwrap_or(-1), &stderr, "status --watch");
}
