//! The durability promise checks (`promises.rs`) judge a node by what it
//! still owed when it crashed, not by what it once acknowledged.
//!
//! Seeds from the 1,000,000-seed sweep of issue 36 that reported
//! `acked-entry-not-recovered` on correct runs: a follower acknowledged
//! entry 76 of term 5; a term-7 leader then overwrote 73..76 with its own
//! entries (synced); a term-8 leader, whose log still held term 5's
//! entries, handed 73..76 back in a write the power loss took. The node
//! held 76 (term 5) in memory at the crash, but the disk rightly held the
//! term-7 entries: the overwrite had ended the promise. The check now ends
//! an acknowledgement when the node's log is cut below it; the planted
//! ack-before-fsync host (`bugs.rs`, `persisted_before_sync_is_caught`)
//! is still caught by it.

use concord_sim::services::{run_service, Service};
mod common;

use common::passing;
use concord_sim::SimConfig;

#[test]
fn an_acknowledgement_overwritten_by_a_newer_leader_binds_no_more() {
    for (seed, nodes) in [(3195644357, 7), (3195739117, 7)] {
        passing(&SimConfig {
            seed,
            nodes,
            ..SimConfig::default()
        });
    }
    let config = SimConfig {
        seed: 3520360973,
        nodes: 5,
        service: Service::Directory,
        ..SimConfig::default()
    };
    let (report, _) = run_service(&config, None).unwrap();
    assert!(report.passed(), "seed 3520360973: {:?}", report.failure);
}
