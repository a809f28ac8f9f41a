//! Every `concord-sim` command of README.md and docs/ runs: the real
//! binary, with the doc's arguments, in a scratch directory, each `--seeds
//! A..B` cut to its first [`SEEDS_RUN`] seeds so the whole set takes
//! seconds. A run may find a failure (exit 1: some docs show a planted
//! bug being caught); bad arguments (2), a crash or a hang fail here.
//! `node/tests/doc_commands.rs` checks the docs' other commands.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../../node/tests/common/doc_commands.rs"]
mod doc_commands;
use doc_commands::{all, Program};

/// Seeds of a doc's range that are run.
const SEEDS_RUN: u64 = 2;

/// Longest one command may take.
const COMMAND_TIME_MAX: Duration = Duration::from_secs(120);

/// `args` with every `--seeds A..B` cut to `A..A+SEEDS_RUN` (or less).
fn cut_seeds(args: &[String]) -> Vec<String> {
    let mut out = args.to_vec();
    for at in 1..out.len() {
        if out[at - 1] != "--seeds" {
            continue;
        }
        let Some((from, to)) = out[at].split_once("..") else {
            continue;
        };
        let (Ok(from), Ok(to)) = (from.parse::<u64>(), to.parse::<u64>()) else {
            continue;
        };
        out[at] = format!("{from}..{}", to.min(from + SEEDS_RUN));
    }
    out
}

/// Runs the simulator with `args` in `dir`; its exit status, or an error.
fn run(dir: &Path, args: &[String]) -> Result<i32, String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_concord-sim"))
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return status
                .code()
                .ok_or_else(|| "killed by a signal".to_string());
        }
        if started.elapsed() > COMMAND_TIME_MAX {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("still running after {COMMAND_TIME_MAX:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn every_doc_simulator_command_runs() {
    let dir = std::env::temp_dir().join(format!("concord-doc-commands-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A history for `check FILE.jsonl`: one the simulator records.
    let history = [
        "replay",
        "--seed",
        "1",
        "--nodes",
        "3",
        "--history",
        "history.jsonl",
    ];
    let recorded = run(&dir, &history.map(String::from));
    assert_eq!(recorded, Ok(0), "recording a history");
    let mut ran = 0;
    let mut failures = Vec::new();
    for command in all() {
        let Program::Sim(args) = &command.program else {
            continue;
        };
        ran += 1;
        match run(&dir, &cut_seeds(args)) {
            Ok(0 | 1) => {}
            Ok(code) => failures.push(format!(
                "{}: `{}`: exit {code}",
                command.place, command.text
            )),
            Err(error) => failures.push(format!("{}: `{}`: {error}", command.place, command.text)),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(ran >= 5, "only {ran} simulator commands found in the docs");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_seed_range_is_cut_to_its_first_seeds() {
    let args = ["run", "--seeds", "5..2000", "--nodes", "5"].map(String::from);
    assert_eq!(cut_seeds(&args)[2], "5..7");
    let args = ["run", "--seeds", "5..6"].map(String::from);
    assert_eq!(cut_seeds(&args)[2], "5..6");
}
