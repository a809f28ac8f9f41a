//! `concord-node` and `concord-cli` on a closed standard output (`|
//! head -1`): they exit quietly, never with a panic ("failed printing to
//! stdout: Broken pipe", exit 101).

use std::process::{Command, Stdio};

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

#[test]
fn shell_completions_exit_quietly_on_a_closed_pipe() {
    for (binary, args) in [
        (NODE, &["completions", "bash"][..]),
        (CLI, &["completions", "bash"][..]),
        (CLI, &["completions", "zsh"][..]),
    ] {
        let (code, stderr) = with_stdout_closed(binary, args);
        assert_eq!(code, 0, "{binary} {args:?}: {stderr}");
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "{binary} {args:?}: {stderr}"
        );
    }
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
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("status --watch kept running with its stdout closed");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let output = child.wait_with_output().expect("waits");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "{stderr}"
    );
}
