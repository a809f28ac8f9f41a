//! Merges the `run --json` summaries of the shards of one sweep.
//!
//! ```text
//! cargo run --release -p concord-sim --example merge_sweeps -- shard-*.json > sweep.json
//! ```
//!
//! Each file holds the JSON line a `concord-sim run --seeds A..B --json`
//! printed. The shards must have run the same cluster size and flags and
//! disjoint seed ranges (`SweepJson::merge` refuses anything else). Prints
//! the merged summary as one JSON line on stdout, a short report on
//! stderr, and exits non-zero if any seed failed, so a CI job that runs it
//! fails with the list of seeds to replay.

use std::process::ExitCode;

use concord_sim::SweepJson;

fn read(path: &str) -> Result<SweepJson, String> {
    let text = std::fs::read_to_string(path).map_err(|error| format!("{path}: {error}"))?;
    // `run --json` prints the summary as its last line.
    let line = text.lines().last().unwrap_or("");
    serde_json::from_str(line).map_err(|error| format!("{path}: {error}"))
}

fn merge(paths: &[String]) -> Result<SweepJson, String> {
    let (first, rest) = paths
        .split_first()
        .ok_or("usage: merge_sweeps SHARD.json...")?;
    let mut sweep = read(first)?;
    for path in rest {
        sweep.merge(&read(path)?)?;
    }
    Ok(sweep)
}

fn main() -> ExitCode {
    let paths: Vec<String> = std::env::args().skip(1).collect();
    let sweep = match merge(&paths) {
        Ok(sweep) => sweep,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    match serde_json::to_string(&sweep) {
        Ok(text) => println!("{text}"),
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    }
    eprintln!(
        "{} seeds in {} shard(s) ({} ranges), {} passed, {} failed; {} node steps",
        sweep.seeds,
        paths.len(),
        sweep.ranges.len(),
        sweep.passed,
        sweep.failed,
        sweep.node_steps
    );
    for failure in &sweep.failures {
        eprintln!(
            "  FAILED seed {} ({}): {}",
            failure.seed, failure.kind, failure.replay
        );
    }
    if sweep.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
