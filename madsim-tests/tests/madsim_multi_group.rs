//! The multi-group scenario ([`concord_madsim_tests::multi_scenario`]:
//! the tokio multi-group host as a 3-node cluster of 64 groups, sharded
//! key-value clients, kills with restarts from a crashed disk, partitions,
//! one-way cuts, a slow and a lossy network; checked linearizable per
//! group, no acknowledged append lost, every group led after the heal)
//! over madsim's test seeds. With `MADSIM_TEST_CHECK_DETERMINISM=1`,
//! madsim runs the same seed twice and fails if they differ. For any
//! range of seeds, with a summary: `scripts/madsim-sweep`.
//!
//! ```text
//! RUSTFLAGS="--cfg madsim" MADSIM_TEST_SEED=1 MADSIM_TEST_NUM=4 cargo test \
//!     -p concord-madsim-tests --target-dir target/madsim --test madsim_multi_group -- --nocapture
//! ```
#![cfg(madsim)]

use concord_madsim_tests::multi_scenario::{run_multi_group, MultiScenario};

#[madsim::test]
async fn multi_group_hosts_under_kills_partitions_and_loss_are_linearizable() {
    let report = run_multi_group(MultiScenario::default()).await;
    eprintln!(
        "seed {}: {report:?}",
        madsim::runtime::Handle::current().seed()
    );
}
