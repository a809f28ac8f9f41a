//! The bank of `sim/examples/bank` tested as docs/testing-your-service.md
//! says: a seed range from `#[test]`, the model as the judge, a planted
//! stale read caught by the model within a stated number of seeds and
//! missed by an invariant-only judge, the printed command replaying the
//! failing seed, and proptest shrinking the fault plan and the workload
//! together.

#[path = "../examples/bank/service.rs"]
mod service;

use concord_sim::check::workload::Checked;
use concord_sim::harness::{scenario, Harness, SeedFailure};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestError, TestRunner};
use std::process::Command;

use service::{config, BankSm, InvariantJudged, ModelJudged};

/// Seeds the correct bank passes and within which the model must catch
/// the planted stale read. Measured with `cargo run -p concord-sim
/// --example bank -- --planted-stale-read --seeds 0..20`: first caught
/// at seed 2. The correct bank passes seeds 0..100 (`--seeds 0..100`,
/// 1 s in release; seed 16, whose partition times out dozens of
/// transfers, was UNKNOWN before the check tried the simulator's witness
/// first); the 16 correct seeds take 2 s in debug.
const STALE_READ_SEEDS: u64 = 16;

// Guide, step 4: the test.
#[test]
fn bank_is_linearizable_under_partitions() {
    Harness::new(config(false)).seeds(0..STALE_READ_SEEDS).run(
        |_| BankSm::default(),
        |config| Checked::new(ModelJudged::default(), config.clients),
    );
}
// Guide, end of step 4.

/// The seeds of the bank with the planted stale read.
fn planted() -> Harness {
    Harness::new(config(true)).seeds(0..STALE_READ_SEEDS)
}

/// The first of [`planted`]'s seeds the bank model fails.
fn caught_by_the_model() -> SeedFailure {
    planted()
        .first_failure(
            |_| BankSm::default(),
            |config| Checked::new(ModelJudged::default(), config.clients),
        )
        .expect("valid configuration")
        .expect("the model catches the stale read")
}

#[test]
fn the_model_catches_a_stale_read_that_invariants_miss() {
    let caught = caught_by_the_model();
    let text = caught.to_string();
    assert!(text.contains("NOT LINEARIZABLE (bank model)"), "{text}");
    assert!(
        text.contains("balance"),
        "a balance read is the stale one: {text}"
    );
    assert!(
        text.contains(&format!(
            "replay it: CONCORD_SIM_SEED={} cargo test -p concord-sim",
            caught.seed
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("timeline of seed {}", caught.seed)),
        "{text}"
    );
    // The same runs judged by "money is conserved, no balance is
    // negative": every one passes.
    let missed = planted()
        .first_failure(|_| BankSm::default(), |_| InvariantJudged::default())
        .expect("valid configuration");
    assert!(missed.is_none(), "{}", missed.unwrap());
}

/// The failing seed of [`the_model_catches_a_stale_read_that_invariants_miss`]
/// when run on its own; ignored, it is run by the test below.
#[test]
#[ignore = "fails on purpose; run by the_printed_command_replays_the_seed"]
fn planted_stale_read() {
    planted().run(
        |_| BankSm::default(),
        |config| Checked::new(ModelJudged::default(), config.clients),
    );
}

/// The command a failure prints is run as cargo would run it: the
/// ignored test fails on the harness's seeds and prints `replay it:
/// CONCORD_SIM_SEED=N cargo test -p concord-sim --test bank
/// planted_stale_read -- --exact --include-ignored --nocapture`; that
/// command's test arguments, run on this test binary with the seed in
/// the environment, fail on that seed alone with the whole timeline.
#[test]
fn the_printed_command_replays_the_seed() {
    let exe = std::env::current_exe().expect("the test binary");
    let first = Command::new(&exe)
        .args(["planted_stale_read", "--exact", "--ignored", "--nocapture"])
        .env_remove(concord_sim::harness::SEED_VAR)
        .env_remove(concord_sim::harness::SEEDS_VAR)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(!first.status.success(), "{stderr}");
    let printed = stderr
        .lines()
        .find_map(|line| line.trim().strip_prefix("replay it: "))
        .unwrap_or_else(|| panic!("no replay command: {stderr}"))
        .to_string();
    assert!(
        !stderr.contains("concord-sim replay"),
        "a user's test is not replayed by the simulator's built-in workload: {stderr}"
    );
    let words: Vec<&str> = printed.split_whitespace().collect();
    let seed: u64 = words[0]
        .strip_prefix(&format!("{}=", concord_sim::harness::SEED_VAR))
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(|| panic!("no seed in {printed:?}"));
    assert_eq!(seed, caught_by_the_model().seed, "{printed}");
    let dashes = words
        .iter()
        .position(|w| *w == "--")
        .expect("test arguments");
    assert_eq!(
        &words[1..dashes],
        [
            "cargo",
            "test",
            "-p",
            "concord-sim",
            "--test",
            "bank",
            "planted_stale_read"
        ],
        "{printed}"
    );
    let test_args = &words[dashes + 1..];
    assert!(test_args.contains(&"--include-ignored"), "{printed}");
    let replayed = Command::new(&exe)
        .arg("planted_stale_read")
        .args(test_args)
        .env(concord_sim::harness::SEED_VAR, seed.to_string())
        .env_remove(concord_sim::harness::SEEDS_VAR)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&replayed.stderr);
    assert!(!replayed.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("seed {seed} failed: ")),
        "{stderr}"
    );
    let events = caught_by_the_model().report.timeline.len();
    assert!(
        stderr.contains(&format!("timeline of seed {seed} ({events} events):")),
        "the whole timeline: {stderr}"
    );
}

// Guide, step 6: proptest over fault plans and workloads together.
#[test]
fn proptest_shrinks_the_fault_plan_and_the_workload_together() {
    // A planted mistake: a transfer of more than 50 credits twice.
    let harness = Harness::new(config(false));
    let mut runner = TestRunner::new(Config {
        cases: 8,
        max_shrink_iters: 200,
        failure_persistence: None,
        // Fixed, so that the scenarios (and the test's time) are the same
        // on every run.
        rng_seed: RngSeed::Fixed(1),
        ..Config::default()
    });
    let result = runner.run(&scenario(3, 2_000_000_000, 3, 1u32..200), |s| {
        harness.check_scenario(
            &s,
            |_| BankSm::double_crediting_above(50),
            |config, max_amount| Checked::new(ModelJudged::new(*max_amount), config.clients),
        )
    });
    let Err(TestError::Fail(reason, minimal)) = result else {
        panic!("the double credit was not found: {result:?}");
    };
    // Shrunk: no fault is needed, and transfers need to reach just past 50.
    assert!(minimal.plan.events.is_empty(), "{:?}", minimal.plan);
    assert!(
        (51..=60).contains(&minimal.workload),
        "{}",
        minimal.workload
    );
    assert!(
        reason.message().contains("NOT LINEARIZABLE (bank model)"),
        "{reason}"
    );
}
// Guide, end of step 6.

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 4,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(2),
        ..ProptestConfig::default()
    })]
    #[test]
    fn correct_bank_passes_any_scenario(s in scenario(3, 2_000_000_000, 3, 1u32..200)) {
        Harness::new(config(false)).check_scenario(
            &s,
            |_| BankSm::default(),
            |config, max_amount| Checked::new(ModelJudged::new(*max_amount), config.clients),
        )?;
    }
}
