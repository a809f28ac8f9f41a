//! Forced recovery from a single survivor (`concord::recovery`): after a
//! majority is destroyed, the survivor's durable state is rewritten to make
//! it the only voter; it then elects itself, commits its whole log and
//! serves. Writes the lost majority committed without it are lost, and the
//! tests name them.
mod common;

use std::collections::BTreeSet;

use common::*;
use concord::{
    plan_forced_recovery, Entry, EntryPayload, ForcedRecoveryRequest, Index, LogPosition,
    Membership, NodeId, Recovered, RecoveryError, Role,
};

fn request(survivor: NodeId, reason: &str) -> ForcedRecoveryRequest {
    ForcedRecoveryRequest {
        survivor,
        voters: BTreeSet::new(),
        reason: reason.to_string(),
        startup_membership: Some(Membership::new([1, 2, 3])),
    }
}

/// The committed commands of `log` (by position) that `survivor_log` lacks:
/// the acknowledged writes the recovery loses.
fn lost_writes(committed: &[Entry], survivor_log: &[Entry]) -> Vec<LogPosition> {
    let held: BTreeSet<LogPosition> = survivor_log.iter().map(Entry::position).collect();
    committed
        .iter()
        .filter(|entry| matches!(entry.payload, EntryPayload::Command(_)))
        .map(Entry::position)
        .filter(|position| !held.contains(position))
        .collect()
}

/// Ticks `id` alone until it leads with its whole log committed.
fn lead_alone(c: &mut Cluster, id: NodeId) {
    for _ in 0..500 {
        c.tick(id);
        let node = c.node(id);
        if node.role() == Role::Leader && node.commit_index() == node.last_index() {
            return;
        }
    }
    panic!("node {id} did not lead and commit alone");
}

/// Three voters; node 3 is cut off while the leader commits three more
/// writes with node 2; then nodes 1 and 2 are destroyed. Node 3 is forced
/// to be the only voter: it leads, commits, serves, and the three writes
/// it never received are exactly the ones reported lost.
#[test]
fn survivor_forced_alone_leads_commits_and_the_lost_writes_are_named() {
    let mut c = Cluster::elected(&[1, 2, 3], 1);
    c.propose_numbered(1, "a", 3);
    c.tick_all(3);
    c.isolate(3);
    c.propose_numbered(1, "b", 3);
    c.deliver_all();
    c.tick_all(2);
    let committed_by_old_majority: Vec<Entry> = {
        let leader = c.node(1);
        (1..=leader.commit_index())
            .map(|i| leader.entry(i).expect("in memory").clone())
            .collect()
    };
    assert_eq!(c.applied_strings(2).len(), 6, "b0..b2 committed by 1 and 2");
    let lost_leader_log = c.log(1);

    // The majority is gone for good.
    c.crash(1);
    c.crash(2);
    c.crash(3);
    c.heal();
    let recovered = c.disks[&3].recovered();
    let plan = plan_forced_recovery(&recovered, &request(3, "rack 1 and 2 burned"))
        .expect("a valid forced recovery");

    // The term is raised past everything the survivor saw, so the forced
    // entry shares no (index, term) with an entry of the lost leader.
    assert!(plan.hard_state.term > recovered.hard_state.term);
    assert_eq!(plan.hard_state.voted_for, None);
    assert_eq!(plan.entry.term, plan.hard_state.term);
    assert!(lost_leader_log
        .iter()
        .all(|entry| entry.position() != plan.entry.position()));
    assert_eq!(plan.audit.previous, Some(Membership::new([1, 2, 3])));
    assert_eq!(plan.audit.membership, Membership::new([3]));
    assert_eq!(
        plan.audit.last_before,
        c.disks[&3].recovered().entries.last().unwrap().position()
    );

    let mut forced = recovered.clone();
    plan.apply_to(&mut forced);
    c.load(3, forced);
    assert_eq!(c.node(3).membership(), &Membership::new([3]));
    lead_alone(&mut c, 3);
    assert_eq!(c.applied_strings(3), vec!["a0", "a1", "a2"]);
    c.propose(3, "after");
    assert_eq!(c.applied_strings(3), vec!["a0", "a1", "a2", "after"]);
    let (position, audit) = c.node(3).last_forced_recovery().expect("the audit record");
    assert_eq!(position, plan.entry.position());
    assert_eq!(audit.reason, "rack 1 and 2 burned");
    assert!(audit
        .to_string()
        .contains("forced from survivor 3 to voters {3}"));

    let lost = lost_writes(&committed_by_old_majority, &c.log(3));
    let lost_commands: Vec<Index> = lost.iter().map(|p| p.index).collect();
    assert_eq!(lost_commands, vec![5, 6, 7], "b0, b1, b2 are lost");

    // The survivor's durable state after a restart still holds it all.
    c.crash(3);
    c.restart(3);
    assert!(c.node(3).last_forced_recovery().is_some());
    lead_alone(&mut c, 3);
    assert_eq!(c.applied_strings(3), vec!["a0", "a1", "a2", "after"]);
}

/// A survivor that held every committed entry loses nothing; its entries
/// past its known commit index are kept and committed.
#[test]
fn survivor_holding_everything_reports_zero_lost_writes() {
    let mut c = Cluster::elected(&[1, 2, 3], 1);
    c.propose_numbered(1, "w", 4);
    c.tick_all(3);
    let committed: Vec<Entry> = c.log(1);
    c.crash(1);
    c.crash(2);
    c.crash(3);
    let recovered = c.disks[&2].recovered();
    let plan = plan_forced_recovery(&recovered, &request(2, "two disks lost")).unwrap();
    assert_eq!(
        plan.uncommitted_kept(),
        1..=5,
        "its disk shows nothing applied"
    );
    let mut forced = recovered;
    plan.apply_to(&mut forced);
    c.load(2, forced);
    lead_alone(&mut c, 2);
    assert_eq!(c.applied_strings(2), vec!["w0", "w1", "w2", "w3"]);
    assert!(lost_writes(&committed, &c.log(2)).is_empty());
}

/// Running the recovery again on its own result changes nothing; a
/// survivor that already served after it can be forced again (a second,
/// audited recovery).
#[test]
fn forcing_twice_is_refused_until_the_node_ran() {
    let recovered = recovered(3, Some(1), &[1, 2, 3]);
    let plan = plan_forced_recovery(&recovered, &request(1, "again")).unwrap();
    let mut forced = recovered;
    plan.apply_to(&mut forced);
    assert_eq!(
        plan_forced_recovery(&forced, &request(1, "again")),
        Err(RecoveryError::AlreadyRecovered {
            index: plan.entry.index,
            term: plan.entry.term
        })
    );
    // To other voters it is a new recovery.
    let mut wider = request(1, "again");
    wider.voters = [1, 4].into();
    let second = plan_forced_recovery(&forced, &wider).unwrap();
    assert_eq!(second.entry.index, plan.entry.index + 1);
    assert!(second.entry.term > plan.entry.term);
    assert_eq!(second.audit.previous, Some(Membership::new([1])));
}

#[test]
fn bad_requests_are_refused_with_a_reason() {
    let state = recovered(2, None, &[1, 2]);
    assert_eq!(
        plan_forced_recovery(&state, &request(1, "  ")),
        Err(RecoveryError::ReasonEmpty)
    );
    let long = "x".repeat(concord::recovery::FORCED_RECOVERY_REASON_BYTES_MAX + 1);
    assert!(matches!(
        plan_forced_recovery(&state, &request(1, &long)),
        Err(RecoveryError::ReasonTooLong { .. })
    ));
    let mut elsewhere = request(1, "why");
    elsewhere.voters = [2, 3].into();
    assert_eq!(
        plan_forced_recovery(&state, &elsewhere),
        Err(RecoveryError::SurvivorNotVoter { id: 1 })
    );
    let mut zero = request(1, "why");
    zero.voters = [0, 1].into();
    assert!(matches!(
        plan_forced_recovery(&state, &zero),
        Err(RecoveryError::Membership(_))
    ));
    let mut witness = request(3, "why");
    let mut with_witness = Membership::new([1, 2, 3]);
    with_witness.witnesses.insert(3);
    witness.startup_membership = Some(with_witness);
    assert_eq!(
        plan_forced_recovery(&Recovered::default(), &witness),
        Err(RecoveryError::SurvivorWitness { id: 3 })
    );
    let mut exhausted = state.clone();
    exhausted.hard_state.term = u64::MAX;
    assert_eq!(
        plan_forced_recovery(&exhausted, &request(1, "why")),
        Err(RecoveryError::TermExhausted)
    );
}
