//! docs/testing-your-service.md stays true: every Rust block of the guide
//! is code that compiles and runs here (in `sim/examples/bank/service.rs`
//! or `sim/tests/bank.rs`, which CI runs), the names it uses exist, and
//! its `concord-sim check --model bank` command accepts a history the
//! bank recorded.

#[path = "../examples/bank/service.rs"]
#[allow(dead_code)]
mod service;

use concord_sim::check::workload::{Checked, ModelWorkload};
use concord_sim::Simulation;
use std::process::Command;

fn read(path: &str) -> String {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    std::fs::read_to_string(format!("{root}/{path}")).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn blocks<'a>(text: &'a str, lang: &str) -> Vec<&'a str> {
    let fence = format!("```{lang}\n");
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(&fence) {
        let body = &rest[i + fence.len()..];
        let end = body.find("```").expect("closed block");
        out.push(&body[..end]);
        rest = &body[end + 3..];
    }
    out
}

#[test]
fn every_rust_block_of_the_guide_is_tested_code() {
    let guide = read("docs/testing-your-service.md");
    // The ledger (`sim/examples/bank/ledger.rs`, compiled and run by
    // sim/tests/ledger.rs) is the guide's model of the user's own.
    let sources = read("sim/examples/bank/service.rs")
        + &read("sim/tests/bank.rs")
        + &read("sim/examples/bank/ledger.rs");
    let rust = blocks(&guide, "rust");
    assert!(rust.len() >= 7, "{} rust blocks", rust.len());
    for block in rust {
        assert!(
            sources.contains(block),
            "this block of the guide is not in the tested sources:\n{block}"
        );
    }
}

#[test]
fn the_guide_names_what_exists() {
    let guide = read("docs/testing-your-service.md");
    for name in [
        "CONCORD_SIM_SEED",
        "CONCORD_SIM_SEEDS",
        "harness::scenario",
        "Checked::new",
        "--model bank",
        "--format jepsen",
        "step_unknown",
        "read_only",
        "part(input)",
        "pins(",
        "When the check says UNKNOWN",
        "--release",
    ] {
        assert!(guide.contains(name), "{name}");
    }
    assert_eq!(concord_sim::harness::SEED_VAR, "CONCORD_SIM_SEED");
    assert_eq!(concord_sim::harness::SEEDS_VAR, "CONCORD_SIM_SEEDS");
}

/// Step 7: the bank's history of seed 0, written as JSON lines, checked
/// by the guide's own command line (the file name replaced): exit 0.
#[test]
fn the_guides_check_command_accepts_a_recorded_history() {
    let guide = read("docs/testing-your-service.md");
    let line = guide
        .lines()
        .find(|l| l.starts_with("concord-sim check --model bank "))
        .expect("the guide checks a bank history");
    let config = service::config(false);
    let workload = Checked::new(service::ModelJudged::default(), config.clients);
    let sim = Simulation::new(config, None, |_| service::BankSm::default(), workload)
        .expect("valid configuration");
    let (report, workload) = sim.run_with_workload();
    assert!(report.failure.is_none(), "{:?}", report.failure);
    let history = workload.history();
    assert!(history.len() > 100, "{} operations", history.len());
    let text = concord_sim::check::typed::to_jsonl(workload.workload().model(), history);
    let path = std::env::temp_dir().join(format!("concord-guide-{}.jsonl", std::process::id()));
    std::fs::write(&path, text).expect("writes");
    let path_text = path.to_str().expect("utf-8 path");
    let args: Vec<&str> = line
        .split_whitespace()
        .skip(1)
        .map(|a| if a == "history.jsonl" { path_text } else { a })
        .collect();
    assert!(args.contains(&path_text), "{line}");
    let out = Command::new(env!("CARGO_BIN_EXE_concord-sim"))
        .args(&args)
        .output()
        .expect("runs");
    let _ = std::fs::remove_file(&path);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
