//! The bank of `sim/examples/bank` tested as docs/testing-your-service.md
//! says: a seed range from `#[test]`, the model as the judge, a planted
//! stale read caught by the model within a stated number of seeds and
//! missed by an invariant-only judge, and proptest shrinking the fault
//! plan and the workload together.

#[path = "../examples/bank/service.rs"]
mod service;

use concord_sim::check::workload::Checked;
use concord_sim::harness::{scenario, Harness};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestError, TestRunner};

use service::{config, BankSm, InvariantJudged, ModelJudged};

/// Seeds within which the model must catch the planted stale read.
/// Measured with `cargo run --release -p concord-sim --example bank --
/// --planted-stale-read --seeds 0..100`: first caught at seed 2.
const STALE_READ_SEEDS: u64 = 20;

// Guide, step 4: the test.
#[test]
fn bank_is_linearizable_under_partitions() {
    Harness::new(config(false)).seeds(0..STALE_READ_SEEDS).run(
        |_| BankSm::default(),
        |config| Checked::new(ModelJudged::default(), config.clients),
    );
}
// Guide, end of step 4.

#[test]
fn the_model_catches_a_stale_read_that_invariants_miss() {
    let harness = Harness::new(config(true)).seeds(0..STALE_READ_SEEDS);
    let caught = harness
        .first_failure(
            |_| BankSm::default(),
            |config| Checked::new(ModelJudged::default(), config.clients),
        )
        .expect("valid configuration")
        .expect("the model catches the stale read");
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
    assert!(text.contains("timeline of seed"), "{text}");
    // The same runs judged by "money is conserved, no balance is
    // negative": every one passes.
    let missed = harness
        .first_failure(|_| BankSm::default(), |_| InvariantJudged::default())
        .expect("valid configuration");
    assert!(missed.is_none(), "{}", missed.unwrap());
}

#[test]
fn a_replayed_seed_is_the_same_run() {
    let harness = Harness::new(config(true));
    let make =
        |config: &concord_sim::SimConfig| Checked::new(ModelJudged::default(), config.clients);
    let a = harness
        .run_seed(2, None, true, |_| BankSm::default(), &make)
        .unwrap();
    let b = harness
        .run_seed(2, None, true, |_| BankSm::default(), &make)
        .unwrap();
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_eq!(a.timeline.len(), b.timeline.len());
    assert_eq!(a.failure.map(|f| f.message), b.failure.map(|f| f.message));
}

// Guide, step 6: proptest over fault plans and workloads together.
#[test]
fn proptest_shrinks_the_fault_plan_and_the_workload_together() {
    // A planted mistake: a transfer of more than 50 credits twice.
    let harness = Harness::new(config(false));
    let mut runner = TestRunner::new(Config {
        cases: 16,
        max_shrink_iters: 200,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&scenario(3, 2_000_000_000, 6, 1u32..200), |s| {
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
    #![proptest_config(ProptestConfig { cases: 6, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn correct_bank_passes_any_scenario(s in scenario(3, 2_000_000_000, 6, 1u32..200)) {
        Harness::new(config(false)).check_scenario(
            &s,
            |_| BankSm::default(),
            |config, max_amount| Checked::new(ModelJudged::new(*max_amount), config.clients),
        )?;
    }
}
