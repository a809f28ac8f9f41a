//! `sim/examples/own_model_check.rs` (a lock service's own model behind
//! `concord_sim::check::main_with`) gives `concord-sim check`'s verdicts
//! and exit codes on the histories docs/checker.md checks with it. The
//! example's `main` only hands its model to `main_with`; here the same
//! model goes through `run_with`, in process, with the same arguments.

#[path = "../examples/own_model_check.rs"]
#[allow(dead_code)] // its `main`
mod example;

use concord_sim::check::cli::{CliOutput, LINEARIZABLE, MALFORMED, NOT_LINEARIZABLE};
use concord_sim::check::run_with;
use concord_sim::check::typed::{parse_jsonl, to_jsonl};
use example::Lock;

/// A history of `sim/tests/data/`, as the docs name it.
fn data(name: &str) -> String {
    format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn check(args: &[&str], stdin: &str) -> CliOutput {
    // As a shell passes it: the binary's path.
    let argv = std::iter::once("target/debug/examples/own_model_check").chain(args.iter().copied());
    run_with(&Lock, argv, &mut stdin.as_bytes())
}

#[test]
fn a_linearizable_lock_history_exits_0() {
    let path = data("lock-linearizable.jsonl");
    let out = check(&[&path], "");
    assert_eq!(out.code, LINEARIZABLE, "{out:?}");
    assert!(
        out.stdout
            .starts_with("own_model_check: 8 operations against the lock model"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.ends_with("\nLINEARIZABLE\n"), "{}", out.stdout);
    assert!(out.stderr.is_empty(), "{}", out.stderr);
}

#[test]
fn two_holders_at_once_exit_1_with_the_operations_that_show_it() {
    let path = data("lock-two-holders.jsonl");
    let out = check(&["--threads", "1", &path], "");
    assert_eq!(out.code, NOT_LINEARIZABLE, "{out:?}");
    assert!(
        out.stdout.contains(
            "NOT LINEARIZABLE (lock model): no valid order once operation #2 returned: \
             c2 acquire by b => granted [20, 30]"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("states the lock could be in just before: held by a"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("\nLINEARIZABLE"), "{}", out.stdout);
}

#[test]
fn standard_input_and_bad_lines_are_read_as_concord_sim_check_reads_them() {
    let text = std::fs::read_to_string(data("lock-two-holders.jsonl")).unwrap();
    assert_eq!(check(&["-"], &text).code, NOT_LINEARIZABLE);
    let bad = text.replace("\"granted\":true", "\"granted\":\"yes\"");
    let out = check(&["-"], &bad);
    assert_eq!(out.code, MALFORMED, "{out:?}");
    assert!(
        out.stderr
            .contains("-: line 1: result of acquire: field \"granted\" must be true or false"),
        "{}",
        out.stderr
    );
}

#[test]
fn the_lock_writes_the_json_lines_it_reads() {
    for name in ["lock-linearizable.jsonl", "lock-two-holders.jsonl"] {
        let text = std::fs::read_to_string(data(name)).unwrap();
        let ops = parse_jsonl(&Lock, &text).unwrap();
        let written = to_jsonl(&Lock, &ops);
        assert_eq!(parse_jsonl(&Lock, &written).unwrap(), ops, "{name}");
    }
}
