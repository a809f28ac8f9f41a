//! The forged-sender check, the session-contract probes and the
//! session-answer check (least-recently-used eviction): each is exercised
//! by the sweep without failing, and each fires on a planted bug that
//! breaks the promise it checks.

mod common;

use common::{caught_as, drawn, only, passing, passing_seeds};
use concord_sim::{run_kv, FailureKind, FaultKind, FaultSet, SimConfig};

#[test]
fn forged_senders_are_handed_to_leaders_and_refused() {
    let forged = drawn(FaultKind::Forge, 8);
    assert!(forged >= 8, "only {forged} forged heartbeats in 8 seeds");
}

#[test]
fn a_transport_that_relabels_forged_senders_is_caught() {
    let mut base = only(FaultKind::Forge);
    base.bugs.forged_sender_relabelled = true;
    let (_, message) = caught_as(&base, 10, FailureKind::ForgedSender);
    assert!(
        message.contains("heartbeat forged from") && message.contains("Leader"),
        "{message}"
    );
}

#[test]
fn probes_are_answered_as_the_session_contract_says() {
    let answered: u64 = passing_seeds(&SimConfig::default(), 12)
        .iter()
        .map(|report| report.sessions.probes_answered)
        .sum();
    assert!(answered > 20, "only {answered} probes answered in 12 seeds");
}

#[test]
fn well_formed_probes_are_caught() {
    let mut base = SimConfig::default();
    base.bugs.client_probes_well_formed = true;
    let (_, message) = caught_as(&base, 20, FailureKind::SessionContract);
    assert!(
        message.contains("the session contract answers it"),
        "{message}"
    );
}

fn small_table() -> SimConfig {
    SimConfig {
        max_sessions: 4,
        faults: FaultSet::NONE
            .with(FaultKind::Loss)
            .with(FaultKind::Delay)
            .with(FaultKind::Duplicate),
        swarm: false,
        ..SimConfig::default()
    }
}

#[test]
fn a_full_session_table_evicts_the_least_recently_used() {
    let mut evictions = 0;
    for report in passing_seeds(&small_table(), 8) {
        assert_eq!(report.sessions.pressured_runs, 1, "{}", report.config.seed);
        evictions += report.sessions.evictions;
    }
    assert!(evictions > 100, "only {evictions} evictions in 8 seeds");
}

#[test]
fn a_table_larger_than_promised_is_caught() {
    let mut base = small_table();
    base.bugs.session_table_one_larger = true;
    let (_, message) = caught_as(&base, 5, FailureKind::SessionLost);
    assert!(
        message.contains("least recently used") && message.contains("(4 sessions)"),
        "{message}"
    );
}

#[test]
fn probes_and_session_pressure_have_off_switches() {
    let mut seen = (0, 0);
    for seed in 0..12 {
        let on = run_kv(
            &SimConfig {
                seed,
                ..SimConfig::default()
            },
            None,
        )
        .unwrap();
        seen.0 += on.sessions.probes_answered;
        seen.1 += on.sessions.pressured_runs;
        let off = passing(&SimConfig {
            seed,
            client_probes: false,
            session_pressure: false,
            ..SimConfig::default()
        });
        assert_eq!(off.sessions.probes_answered, 0, "seed {seed}");
        assert_eq!(off.sessions.pressured_runs, 0, "seed {seed}");
    }
    assert!(seen.0 > 0 && seen.1 > 0, "12 seeds drew {seen:?}");
}

#[test]
fn split_votes_are_drawn_and_every_durable_vote_is_answered() {
    let splits = drawn(FaultKind::SplitVote, 4);
    assert!(splits >= 4, "only {splits} split votes in 4 seeds");
}

#[test]
fn a_transport_that_loses_vote_grants_in_a_split_vote_is_caught() {
    let mut base = only(FaultKind::SplitVote);
    base.bugs.split_vote_grant_dropped = true;
    let (seed, _) = caught_as(&base, 5, FailureKind::VoteUnanswered);
    // The same seed passes without the bug.
    passing(&SimConfig {
        seed,
        ..only(FaultKind::SplitVote)
    });
}

/// The client-avoidance check has work in the swarm: clients do send
/// attempts to crashed and paused servers (each one checked against the
/// bound of learning from failure), and removed nodes that know it refuse
/// reads at once, as the real server does, so that clients avoid them.
#[test]
fn clients_meet_dark_servers_and_removed_nodes_refuse_reads() {
    let (mut dark, mut refused) = (0, 0);
    for report in passing_seeds(&SimConfig::default(), 40) {
        dark += report.client_dark_attempts;
        refused += report.reads_refused_not_member;
    }
    println!("40 seeds: {dark} attempts to dark servers, {refused} reads refused by removed nodes");
    assert!(dark > 0, "no client attempt met a dark server");
    assert!(refused > 0, "no removed node was asked for a read");
}
