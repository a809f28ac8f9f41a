//! The `concord-sim` command line: a passing run exits 0 with a summary, a
//! failing one exits 1 and prints the replay command, bad arguments give a
//! clear error instead of a panic, and replay shows the same trace hash
//! twice.

use std::process::Command;

fn concord_sim(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_concord-sim"))
        .args(args)
        .output()
        .expect("runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn passing_run_prints_a_summary_and_exits_0() {
    let (code, stdout, _) = concord_sim(&[
        "run",
        "--seeds",
        "0..4",
        "--nodes",
        "3",
        "--chaos-ms",
        "1000",
        "--quiet",
    ]);
    assert_eq!(code, 0, "{stdout}");
    for needle in [
        "seeds/s",
        "simulated seconds per wall second",
        "operations checked",
        "faults injected",
        "failures: 0",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }
}

#[test]
fn failing_run_prints_the_replay_command_and_exits_1() {
    let (code, stdout, _) = concord_sim(&[
        "run",
        "--seeds",
        "0..3",
        "--nodes",
        "3",
        "--chaos-ms",
        "2000",
        "--bug-nondeterministic-sm",
        "--quiet",
    ]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("FAILED seed 0"), "{stdout}");
    assert!(stdout.contains("trace hash:"), "{stdout}");
    assert!(
        stdout.contains("replay --seed 0 --nodes 3 --chaos-ms 2000 --bug-nondeterministic-sm"),
        "{stdout}"
    );
}

#[test]
fn replay_shows_a_timeline_and_the_same_hash_twice() {
    let (code, stdout, _) = concord_sim(&[
        "replay",
        "--seed",
        "3",
        "--nodes",
        "3",
        "--chaos-ms",
        "1000",
    ]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("becomes Leader"), "{stdout}");
    assert!(
        stdout.contains("same: the run is deterministic"),
        "{stdout}"
    );
}

#[test]
fn bad_arguments_are_explained() {
    let (code, _, stderr) = concord_sim(&["run", "--seeds", "5..2"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("empty"), "{stderr}");
    let (code, _, stderr) = concord_sim(&["run", "--seeds", "0..2", "--nodes", "9"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("1 to 7"), "{stderr}");
    let (code, _, stderr) = concord_sim(&["run", "--faults", "crash,meteor"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("meteor"), "{stderr}");
    let (code, _, stderr) =
        concord_sim(&["replay", "--seed", "1", "--plan", "/nonexistent/plan.json"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("cannot read plan"), "{stderr}");
}
