//! The forged-sender check, the session-contract probes and the
//! session-answer check (least-recently-used eviction): each is exercised
//! by the sweep without failing, and each fires on a planted bug that
//! breaks the promise it checks.

use concord_sim::{run_kv, FailureKind, FaultKind, FaultSet, HostBugs, RunReport, SimConfig};

fn run(config: &SimConfig) -> RunReport {
    run_kv(config, None).unwrap()
}

/// The first of `seeds` seeds of `base` that fails, with its kind and
/// message.
fn first_failure(base: &SimConfig, seeds: u64) -> Option<(u64, FailureKind, String)> {
    (0..seeds).find_map(|seed| {
        let report = run(&SimConfig {
            seed,
            ..base.clone()
        });
        report
            .failure
            .map(|failure| (seed, failure.kind, failure.to_string()))
    })
}

fn forged_only() -> SimConfig {
    SimConfig {
        faults: FaultSet::NONE.with(FaultKind::Forge),
        swarm: false,
        ..SimConfig::default()
    }
}

#[test]
fn forged_senders_are_handed_to_leaders_and_refused() {
    let mut forged = 0;
    for seed in 0..8 {
        let report = run(&SimConfig {
            seed,
            ..forged_only()
        });
        assert!(report.passed(), "seed {seed}: {:?}", report.failure);
        forged += report.faults.get(FaultKind::Forge);
    }
    assert!(forged >= 8, "only {forged} forged heartbeats in 8 seeds");
}

#[test]
fn a_transport_that_relabels_forged_senders_is_caught() {
    let base = SimConfig {
        bugs: HostBugs {
            forged_sender_relabelled: true,
            ..HostBugs::default()
        },
        ..forged_only()
    };
    let (seed, kind, message) = first_failure(&base, 10).expect("never caught in 10 seeds");
    assert_eq!(kind, FailureKind::ForgedSender, "seed {seed}: {message}");
    assert!(
        message.contains("heartbeat forged from") && message.contains("Leader"),
        "{message}"
    );
}

#[test]
fn probes_are_answered_as_the_session_contract_says() {
    let mut answered = 0;
    for seed in 0..12 {
        let report = run(&SimConfig {
            seed,
            ..SimConfig::default()
        });
        assert!(report.passed(), "seed {seed}: {:?}", report.failure);
        answered += report.sessions.probes_answered;
    }
    assert!(answered > 20, "only {answered} probes answered in 12 seeds");
}

#[test]
fn well_formed_probes_are_caught() {
    let base = SimConfig {
        bugs: HostBugs {
            client_probes_well_formed: true,
            ..HostBugs::default()
        },
        ..SimConfig::default()
    };
    let (seed, kind, message) = first_failure(&base, 20).expect("never caught in 20 seeds");
    assert_eq!(kind, FailureKind::SessionContract, "seed {seed}: {message}");
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
    for seed in 0..8 {
        let report = run(&SimConfig {
            seed,
            ..small_table()
        });
        assert!(report.passed(), "seed {seed}: {:?}", report.failure);
        assert_eq!(report.sessions.pressured_runs, 1);
        evictions += report.sessions.evictions;
    }
    assert!(evictions > 100, "only {evictions} evictions in 8 seeds");
}

#[test]
fn a_table_larger_than_promised_is_caught() {
    let base = SimConfig {
        bugs: HostBugs {
            session_table_one_larger: true,
            ..HostBugs::default()
        },
        ..small_table()
    };
    let (seed, kind, message) = first_failure(&base, 5).expect("never caught in 5 seeds");
    assert_eq!(kind, FailureKind::SessionLost, "seed {seed}: {message}");
    assert!(
        message.contains("least recently used") && message.contains("(4 sessions)"),
        "{message}"
    );
}

#[test]
fn probes_and_session_pressure_have_off_switches() {
    let mut drawn = (0, 0);
    for seed in 0..12 {
        let on = run(&SimConfig {
            seed,
            ..SimConfig::default()
        });
        drawn.0 += on.sessions.probes_answered;
        drawn.1 += on.sessions.pressured_runs;
        let off = run(&SimConfig {
            seed,
            client_probes: false,
            session_pressure: false,
            ..SimConfig::default()
        });
        assert!(off.passed(), "seed {seed}: {:?}", off.failure);
        assert_eq!(off.sessions.probes_answered, 0, "seed {seed}");
        assert_eq!(off.sessions.pressured_runs, 0, "seed {seed}");
    }
    assert!(drawn.0 > 0 && drawn.1 > 0, "12 seeds drew {drawn:?}");
}

fn split_votes_only() -> SimConfig {
    SimConfig {
        faults: FaultSet::NONE.with(FaultKind::SplitVote),
        swarm: false,
        ..SimConfig::default()
    }
}

#[test]
fn split_votes_are_drawn_and_every_durable_vote_is_answered() {
    let mut splits = 0;
    for seed in 0..4 {
        let report = run(&SimConfig {
            seed,
            ..split_votes_only()
        });
        assert!(report.passed(), "seed {seed}: {:?}", report.failure);
        splits += report.faults.get(FaultKind::SplitVote);
    }
    assert!(splits >= 4, "only {splits} split votes in 4 seeds");
}

#[test]
fn a_transport_that_loses_vote_grants_in_a_split_vote_is_caught() {
    let base = SimConfig {
        bugs: HostBugs {
            split_vote_grant_dropped: true,
            ..HostBugs::default()
        },
        ..split_votes_only()
    };
    let (seed, kind, message) = first_failure(&base, 5).expect("never caught in 5 seeds");
    assert_eq!(kind, FailureKind::VoteUnanswered, "seed {seed}: {message}");
    let clean = run(&SimConfig {
        seed,
        ..split_votes_only()
    });
    assert!(
        clean.passed(),
        "seed {seed} without the bug: {:?}",
        clean.failure
    );
}

/// The client-avoidance check has work in the swarm: clients do send
/// attempts to crashed and paused servers (each one checked against the
/// bound of learning from failure), and removed nodes that know it refuse
/// reads at once, as the real server does, so that clients avoid them.
#[test]
fn clients_meet_dark_servers_and_removed_nodes_refuse_reads() {
    let (mut dark, mut refused) = (0, 0);
    for seed in 0..40 {
        let report = run(&SimConfig {
            seed,
            ..SimConfig::default()
        });
        assert!(report.passed(), "seed {seed}: {:?}", report.failure);
        dark += report.client_dark_attempts;
        refused += report.reads_refused_not_member;
    }
    println!("40 seeds: {dark} attempts to dark servers, {refused} reads refused by removed nodes");
    assert!(dark > 0, "no client attempt met a dark server");
    assert!(refused > 0, "no removed node was asked for a read");
}
