//! `concord-sim` on a closed standard output (`concord-sim check FILE |
//! head -1`): it exits quietly with the code its work decides, never
//! with a panic ("failed printing to stdout: Broken pipe", exit 101).

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Runs `concord-sim args` with its standard output's reader gone before
/// it writes a byte: (exit code, stderr).
fn with_stdout_closed(args: &[&str]) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_concord-sim"))
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

fn assert_quiet(code: i32, expected: i32, stderr: &str) {
    assert_eq!(code, expected, "{stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "{stderr}"
    );
}

#[test]
fn check_exits_with_its_verdict_on_a_closed_pipe() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("closed_pipe");
    std::fs::create_dir_all(&dir).unwrap();
    let linearizable = dir.join("ok.jsonl");
    std::fs::write(
        &linearizable,
        r#"{"client":1,"op":"put","key":"k","value":"a","call":0,"return":10,"ok":true}
{"client":2,"op":"get","key":"k","value":"a","call":20,"return":30,"ok":true}
"#,
    )
    .unwrap();
    let stale = dir.join("stale.jsonl");
    std::fs::write(
        &stale,
        r#"{"client":1,"op":"put","key":"k","value":"a","call":0,"return":10,"ok":true}
{"client":1,"op":"put","key":"k","value":"b","call":20,"return":30,"ok":true}
{"client":2,"op":"get","key":"k","value":"a","call":40,"return":50,"ok":true}
"#,
    )
    .unwrap();
    let (code, stderr) = with_stdout_closed(&["check", linearizable.to_str().unwrap()]);
    assert_quiet(code, 0, &stderr);
    let (code, stderr) = with_stdout_closed(&["check", stale.to_str().unwrap()]);
    assert_quiet(code, 1, &stderr);
}

#[test]
fn run_finishes_its_sweep_on_a_closed_pipe() {
    let args = [
        "run",
        "--seeds",
        "0..2",
        "--nodes",
        "3",
        "--chaos-ms",
        "1000",
        "--quiet",
    ];
    let (code, stderr) = with_stdout_closed(&args);
    assert_quiet(code, 0, &stderr);
    let mut json = args.to_vec();
    json.push("--json");
    let (code, stderr) = with_stdout_closed(&json);
    assert_quiet(code, 0, &stderr);
}
