//! The durability promise checks (`promises.rs`) judge a node by what it
//! still owed when it crashed, not by what it once acknowledged.
//!
//! Seeds from a 1,000,000-seed sweep that reported
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

/// A server whose disk is replaced starts in term 0 and may then follow
/// an older leader (a delayed heartbeat of term 1): its promise to the
/// leader of a later term, made before the loss, still binds, since the
/// core's vote hold after such a start is restarted by that message, not
/// ended. Seed 5610001247 of the strict key-value service on 5 nodes: the
/// rules forgot the earlier promise and reported a correct lease read
/// (`lease-promise`).
#[test]
fn a_promise_made_before_a_lost_disk_outlives_an_older_leaders_message() {
    passing(&SimConfig {
        seed: 5610001247,
        nodes: 5,
        service: Service::Kv,
        ..SimConfig::default()
    });
}

/// A server recovering from lost storage answers no leader of a term it
/// may have passed, so a heartbeat it takes while it waits for its peers'
/// reports promises nothing any lease counts. Seed 9280234874 on 5 nodes
/// (6 sessions): the rules held a replaced disk to a promise to a stale
/// term-10 leader it heard while waiting, and reported its vote in term 12
/// (`vote-hold`).
#[test]
fn a_heartbeat_taken_while_awaiting_reports_promises_nothing() {
    passing(&SimConfig {
        seed: 9280234874,
        nodes: 5,
        max_sessions: 6,
        ..SimConfig::default()
    });
}
