//! The accounting check (`node-report`): what a node reports to its
//! operator (its `Statistics` counters, its `RoleChanged` announcements,
//! its snapshot requests) agrees with what it did. The sweep runs it
//! without failing, the malformed-message fault is handed to nodes and
//! refused as promised, and the check fires on a planted host bug that
//! loses a leader's announcement.

mod common;

use common::{drawn, passing};
use concord_sim::{run_kv, FailureKind, FaultKind, SimConfig};

#[test]
fn malformed_messages_are_refused_and_counted_as_promised() {
    let applied = drawn(FaultKind::Malformed, 6);
    assert!(
        applied >= 30,
        "only {applied} malformed messages in 6 seeds"
    );
}

#[test]
fn a_host_that_loses_a_leader_announcement_is_caught_at_once() {
    // Every seed elects a leader within its first second; the check sees
    // that step, so the first seed already fails.
    let seed = 0;
    let base = SimConfig {
        seed,
        ..SimConfig::default()
    };
    let mut buggy = base.clone();
    buggy.bugs.role_announcement_dropped = true;
    let buggy = run_kv(&buggy, None).unwrap();
    let failure = buggy.failure.expect("the lost announcement went unseen");
    assert_eq!(failure.kind, FailureKind::NodeReport, "{failure}");
    let message = failure.to_string();
    assert!(
        message.contains("ended the step as Leader") && message.contains("RoleChanged"),
        "{message}"
    );
    // The same seed passes without the bug.
    passing(&base);
}
