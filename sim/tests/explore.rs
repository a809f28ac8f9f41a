//! `concord-sim explore`: the exhaustive small-scope checker finds the
//! planted core mistakes with their shortest traces, and the real core
//! passes a scope whose state count is asserted above a floor (so that an
//! explorer that silently explores nothing fails here).

use concord_sim::explore::{explore, replay, Loss, Property, Scope, ScopeBugs, Trace};

/// Explores `scope` on two threads, with no progress output.
fn run(scope: &Scope) -> concord_sim::explore::Report {
    explore(scope, 2, &|_| {}).expect("the scope is valid")
}

/// The scope of the planted vote-before-durable mistake: 3 nodes, terms up
/// to 2, two timer firings, no proposals, loss and duplication off (a
/// vote needs none of them), one crash allowed.
fn vote_scope() -> Scope {
    Scope {
        max_term: 2,
        proposals: 0,
        timeouts: 2,
        loss: Loss::Off,
        duplicates: 0,
        ..Scope::default()
    }
}

#[test]
fn vote_grant_before_durable_is_found_with_its_shortest_trace() {
    let scope = Scope {
        bugs: ScopeBugs {
            vote_before_durable: true,
            ..ScopeBugs::default()
        },
        ..vote_scope()
    };
    let report = run(&scope);
    let trace = report.trace.expect("the planted mistake is found");
    let violation = trace.violation.clone().expect("the trace names it");
    assert_eq!(violation.property, Property::Durability, "{violation}");
    // Fire n1 (pre-candidate), its pre-vote request delivered and granted
    // (n1 becomes candidate), its vote request delivered: the grant goes
    // out before the voter's write is synced. No shorter path exists: a
    // vote needs a candidate, and with PreVote a candidate needs one
    // pre-vote round trip first.
    assert_eq!(trace.steps.len(), 4, "{:#?}", trace.steps);
    // The saved trace replays to the same violation at its last step,
    // also after a round trip through JSON.
    let text = serde_json::to_string(&trace).expect("a trace encodes");
    let loaded: Trace = serde_json::from_str(&text).expect("a trace decodes");
    let mut out = Vec::new();
    let replayed = replay(&loaded, &mut out).expect("the trace replays");
    assert_eq!(replayed.violation, Some((4, violation)));
    let printed = String::from_utf8(out).expect("utf-8");
    assert!(printed.contains("RequestVote"), "{printed}");
}

#[test]
fn real_core_keeps_its_votes_durable_in_the_same_scope() {
    // The same scope without the mistake, to twice the depth at which the
    // mistake shows: clean (the whole scope is far larger; it is not
    // exhausted here).
    let scope = Scope {
        depth: 8,
        ..vote_scope()
    };
    let report = run(&scope);
    assert!(report.trace.is_none(), "{:?}", report.trace);
    assert!(
        report.outcome.counts.distinct > 1_000,
        "{:?}",
        report.outcome.counts
    );
}

/// The scope CI runs (see `.ci/run`): 3 nodes, terms up to 1, one
/// proposal, one timer firing, no crash, loss or duplication.
fn small_scope() -> Scope {
    Scope {
        max_term: 1,
        proposals: 1,
        crashes: 0,
        timeouts: 1,
        loss: Loss::Off,
        duplicates: 0,
        ..Scope::default()
    }
}

#[test]
fn real_core_passes_a_small_scope_exhaustively() {
    let report = run(&small_scope());
    assert!(report.trace.is_none(), "{:?}", report.trace);
    assert!(report.outcome.complete, "{:?}", report.outcome.counts);
    let counts = &report.outcome.counts;
    // Measured: 65,609 distinct states, 222,284 transitions, depth 34.
    // The floor is below it so that a harmless change of the core's
    // message flow does not fail here, but an explorer that stops early
    // or merges states it should not does.
    assert!(counts.distinct > 50_000, "{counts:?}");
    assert!(counts.explored > 150_000, "{counts:?}");
    assert!(counts.depth >= 25, "{counts:?}");
}

#[test]
fn the_result_does_not_depend_on_the_thread_count() {
    let scope = Scope {
        depth: 8,
        ..vote_scope()
    };
    let one = explore(&scope, 1, &|_| {}).expect("valid");
    let three = explore(&scope, 3, &|_| {}).expect("valid");
    assert_eq!(one.outcome.counts, three.outcome.counts);
}

#[test]
fn a_scope_out_of_bounds_is_refused() {
    let scope = Scope {
        nodes: 9,
        ..Scope::default()
    };
    assert!(explore(&scope, 1, &|_| {}).is_err());
}

fn concord_sim() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_concord-sim"))
}

#[test]
fn cli_exits_2_on_bad_arguments_and_1_on_a_violation_it_can_replay() {
    let bad = concord_sim()
        .args(["explore", "--nodes", "9", "--quiet"])
        .output()
        .expect("runs");
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");

    let dir = std::env::temp_dir().join(format!("concord-explore-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let trace = dir.join("trace.json");
    let found = concord_sim()
        .args([
            "explore",
            "--max-term",
            "2",
            "--proposals",
            "0",
            "--timeouts",
            "2",
            "--loss",
            "off",
            "--duplicates",
            "0",
            "--bug-vote-before-durable",
            "--quiet",
            "--threads",
            "2",
            "--trace-out",
        ])
        .arg(&trace)
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&found.stdout);
    assert_eq!(found.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("VIOLATION of durability after 4 steps"),
        "{stdout}"
    );

    let replayed = concord_sim()
        .args(["explore", "--replay"])
        .arg(&trace)
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&replayed.stdout);
    assert_eq!(replayed.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("VIOLATION at step 4: durability"),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
