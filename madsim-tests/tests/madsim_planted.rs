//! The sweep of the deployed runtime catches the runtime's planted
//! mistakes (`scripts/madsim-sweep --bug NAME`), each within its stated
//! number of seeds, and the seed that catches one passes without it: it
//! fails because of the mistake, not because of the seed.
//!
//! ```text
//! RUSTFLAGS="--cfg madsim" cargo test -p concord-madsim-tests --target-dir target/madsim \
//!     --test madsim_planted
//! ```
#![cfg(madsim)]

use concord_madsim_tests::multi_scenario::{
    capture_panics, run_seed, MultiScenario, RuntimeMistake,
};

/// The first seed of `0..seeds` at which `mistake` fails a run of 8
/// groups, with its failure; panics if none does, or if that seed fails
/// without the mistake too.
fn caught_within(mistake: RuntimeMistake, seeds: u64) -> (u64, String) {
    capture_panics();
    let clean = MultiScenario {
        groups: 8,
        ..MultiScenario::default()
    };
    let planted = MultiScenario {
        planted: Some(mistake),
        ..clean
    };
    let (seed, failure) = (0..seeds)
        .find_map(|seed| run_seed(seed, planted).err().map(|failure| (seed, failure)))
        .unwrap_or_else(|| panic!("{} survived seeds 0..{seeds}", mistake.name()));
    if let Err(failure) = run_seed(seed, clean) {
        panic!(
            "seed {seed} fails without {} too: {failure}",
            mistake.name()
        );
    }
    (seed, failure)
}

/// A round reported durable before its fsync: every node killed at once
/// loses its page cache, and recovery refuses a log with acknowledged
/// entries missing (or a group comes back without an acknowledged
/// write). Caught at seed 0 here; 8 of seeds 0..10 fail.
#[test]
fn an_acknowledgement_before_the_fsync_is_caught_within_3_seeds() {
    let (seed, failure) = caught_within(RuntimeMistake::AckBeforeFsync, 3);
    eprintln!("ack-before-fsync caught at seed {seed}: {failure}");
}

/// A routing client that keeps each group's first leader forever and
/// sends it every attempt: once leadership moves (a fault), the client
/// cannot reach the group even after every group is led again. Caught
/// at seed 0 here; 10 of seeds 0..10 fail.
#[test]
fn a_leader_cached_forever_is_caught_within_3_seeds() {
    let (seed, failure) = caught_within(RuntimeMistake::LeaderCachedForever, 3);
    eprintln!("leader-cached-forever caught at seed {seed}: {failure}");
}
