//! The forced-recovery scenario (`engine::forced`): a majority of the
//! voters lost for good, the cluster rebuilt from one survivor. The lost
//! writes the run reports are compared with an outside computation from
//! the client history and the survivor's log, and the history check relaxes exactly the reported writes. A client
//! still holding a session the lost servers handed out is told it expired,
//! never served from another client's session, and the default swarm draws
//! the scenario. (Its planted bug, the survivor started before the
//! recovery's writes are synced, is caught in `tests/bugs.rs`.)

use std::collections::BTreeSet;

use concord_sim::history::{Op, Operation, Outcome, Output};
use concord_sim::linearizability::{check_history, CheckResult};
use concord_sim::services::kv::split_at_forced_recovery;
use concord_sim::{
    run_kv, run_kv_with_history, ForcedRecoveryChoice, ForcedRecoveryReport, SimConfig,
};

fn forced(seed: u64, nodes: usize) -> SimConfig {
    SimConfig {
        seed,
        nodes,
        forced_recovery: ForcedRecoveryChoice::Always,
        // The schedules these tests were written against: split votes are
        // drawn after every other fault, so leaving them out gives them
        // back.
        faults: concord_sim::FaultSet::all()
            .without(concord_sim::FaultKind::SplitVote)
            .without(concord_sim::FaultKind::DiskLoss),
        ..SimConfig::default()
    }
}

/// A short run with few clients, whose logs stay below the compaction
/// thresholds: the survivor's log then holds every command it ever had.
fn short(seed: u64) -> SimConfig {
    SimConfig {
        clients: 3,
        chaos_ns: 3_000_000_000,
        ..forced(seed, 3)
    }
}

/// The operation id of every operation of `history`, as the key-value
/// workload numbers them: client in the high bits, the client's count of
/// operations in the low ones.
fn op_ids(history: &[Operation]) -> Vec<u64> {
    let mut counts = std::collections::BTreeMap::new();
    history
        .iter()
        .map(|op| {
            let count = counts.entry(op.client).or_insert(0u64);
            *count += 1;
            (op.client << 40) | *count
        })
        .collect()
}

/// Runs `config` and computes, from outside the engine, the acknowledged
/// writes that are gone: those the client history shows acknowledged
/// whose commands are not in the survivor's log at the end of the run
/// (every entry it held at the recovery is still there, and so is every
/// entry the recovered cluster committed since). That needs a survivor
/// that never compacted its log, so that its log holds every command it
/// ever had: `None` for a run whose survivor compacted.
fn run_and_compute_lost(config: &SimConfig) -> Option<(ForcedRecoveryReport, BTreeSet<u64>)> {
    let (report, history) = run_kv_with_history(config, None).unwrap();
    assert!(
        report.passed(),
        "seed {}: {:?}",
        config.seed,
        report.failure
    );
    let forced = report
        .forced_recovery
        .clone()
        .expect("the seed runs a forced recovery");
    assert!(
        forced.recovered_ns > 0,
        "seed {}: no recovery ran",
        config.seed
    );
    if (forced.survivor_base.index, forced.final_base) != (0, 0) {
        return None;
    }
    let in_survivor_log: BTreeSet<u64> = forced.final_op_ids.iter().copied().collect();
    let acknowledged_writes = history
        .iter()
        .zip(op_ids(&history))
        .filter(|(op, _)| op.op != Op::Get && matches!(op.outcome, Outcome::Ok(_)))
        .map(|(_, id)| id);
    let lost = acknowledged_writes
        .filter(|id| !in_survivor_log.contains(id))
        .collect();
    Some((forced, lost))
}

/// The first seed of [`short`]'s seeds `0..SHORT_SEEDS` whose survivor
/// kept its whole log and whose recovery `wanted` picks, with its report
/// and the writes computed as gone. The tests search rather than name a
/// seed, so that a change to the schedule (a new fault or check drawing
/// from the seed's random stream) moves the seed, not the test's meaning.
fn first_uncompacted_run(
    wanted: impl Fn(&ForcedRecoveryReport) -> bool,
) -> (u64, ForcedRecoveryReport, BTreeSet<u64>) {
    (0..SHORT_SEEDS)
        .filter_map(|seed| run_and_compute_lost(&short(seed)).map(|(f, lost)| (seed, f, lost)))
        .find(|(_, forced, _)| wanted(forced))
        .inspect(|(seed, _, _)| println!("seed {seed} has the wanted recovery"))
        .unwrap_or_else(|| panic!("no seed of 0..{SHORT_SEEDS} has the wanted recovery"))
}

fn reported_lost(forced: &ForcedRecoveryReport) -> BTreeSet<u64> {
    forced
        .lost_writes()
        .map(|lost| lost.op_id.expect("key-value operations carry ids"))
        .collect()
}

/// A seed whose survivor held every committed entry when it was
/// recovered: the run reports no lost write, and none is gone.
#[test]
fn a_survivor_holding_everything_reports_no_lost_writes() {
    let (seed, forced, lost) =
        first_uncompacted_run(|forced| forced.diverged_at == forced.committed_before + 1);
    assert!(lost.is_empty(), "seed {seed}: writes gone: {lost:x?}");
    assert_eq!(forced.lost_writes().count(), 0, "seed {seed}: {forced}");
}

/// A seed whose survivor (the node with the shortest durable log) lacked
/// committed entries: the run reports exactly the acknowledged writes
/// that are gone, as computed from the history and the survivor's log.
#[test]
fn a_lagging_survivor_reports_exactly_the_writes_it_lacked() {
    let (seed, forced, lost) = first_uncompacted_run(|forced| {
        forced.diverged_at <= forced.committed_before && forced.lost_writes().count() > 0
    });
    assert!(
        !lost.is_empty(),
        "seed {seed}: no acknowledged write is gone: {forced}"
    );
    assert_eq!(reported_lost(&forced), lost, "seed {seed}: {forced}");
    // None of them was in the survivor's log when it was recovered.
    let held: BTreeSet<u64> = forced.held_op_ids.iter().copied().collect();
    assert!(lost.iter().all(|id| !held.contains(id)), "seed {seed}");
}

/// How many seeds of [`short`] the two tests above search (before the
/// post-quiet-period checks were added, eight of seeds 0..60 kept the
/// survivor's log uncompacted, one of them with a lagging survivor. Since
/// replicas recover from empty storage, which moves every schedule, the
/// first survivor holding everything is at seed 7 and the first lagging
/// one at seed 176; the tests print the seed they use).
const SHORT_SEEDS: u64 = 200;

fn put(client: u64, value: &str, call: u64, ret: u64) -> Operation {
    Operation::new(
        client,
        "k",
        Op::Put {
            value: value.to_string(),
        },
        call,
    )
    .completed(ret, Output::Done)
}

fn get(client: u64, value: &str, call: u64, ret: u64) -> Operation {
    Operation::new(client, "k", Op::Get, call).completed(ret, Output::Value(value.to_string()))
}

/// The history check across a recovery: a reported-lost write may have
/// been seen before the recovery and be absent after it; a write that is
/// not reported lost must stay.
#[test]
fn the_history_check_relaxes_only_the_reported_lost_writes() {
    // Client 0 puts "a", then "b" (acknowledged, its entry lost); client 1
    // reads "b" before the recovery at 100 and "a" after it.
    let history = vec![
        put(0, "a", 0, 10),
        put(0, "b", 20, 30),
        get(1, "b", 40, 50),
        get(1, "a", 200, 210),
    ];
    let ids = op_ids(&history);
    assert!(matches!(
        check_history(&history),
        CheckResult::NotLinearizable(_)
    ));
    let lost: BTreeSet<u64> = [ids[1]].into();
    let (before, across) = split_at_forced_recovery(&history, &ids, 100, &lost);
    assert!(matches!(check_history(&before), CheckResult::Ok));
    assert!(matches!(check_history(&across), CheckResult::Ok));
    // Not reported lost, "b" must survive the recovery.
    let (before, across) = split_at_forced_recovery(&history, &ids, 100, &BTreeSet::new());
    assert!(matches!(check_history(&before), CheckResult::Ok));
    assert!(matches!(
        check_history(&across),
        CheckResult::NotLinearizable(_)
    ));
    // Before the recovery the old cluster is checked as strictly as ever:
    // a read of a value never written fails even with every write lost.
    let mut bad = history.clone();
    bad[2] = get(1, "z", 40, 50);
    let all: BTreeSet<u64> = ids.iter().copied().collect();
    let (before, _) = split_at_forced_recovery(&bad, &ids, 100, &all);
    assert!(matches!(
        check_history(&before),
        CheckResult::NotLinearizable(_)
    ));
}

/// Seed 455 on 5 nodes (before candidate catch-ups changed its
/// schedule): client 1 registered session 13 on the lost servers; the
/// survivor, forced at index 9, later put client 0's registration at index
/// 13. Session ids now carry the id epoch, so no session registered after
/// the recovery can be one of the lost ones, and a client whose session
/// was lost is told it expired instead of writing into another's (which
/// failed the run with `session-lost`). Checked on seeds that lose
/// sessions and register new ones after the recovery.
#[test]
fn a_session_from_the_lost_servers_is_expired_not_given_to_another_client() {
    // The seeds are searched, not named: a change of schedule moves them.
    let mut checked = Vec::new();
    for seed in 0..SESSION_SEEDS {
        let config = SimConfig {
            timeline: true,
            ..forced(seed, 5)
        };
        let report = run_kv(&config, None).unwrap();
        assert!(report.passed(), "seed {seed}: {:?}", report.failure);
        let texts: Vec<&str> = report
            .timeline
            .iter()
            .map(|entry| entry.text.as_str())
            .collect();
        let registered_after: Vec<u64> = texts
            .iter()
            .skip_while(|text| !text.contains("applied the forced recovery"))
            .filter_map(|text| text.split("registered session ").nth(1))
            .filter_map(|id| id.parse().ok())
            .collect();
        let expired = texts.iter().any(|text| text.ends_with(": session expired"));
        if registered_after.is_empty() || !expired {
            continue;
        }
        for id in &registered_after {
            assert_eq!(
                concord::session::client_id_parts(*id).0,
                1,
                "seed {seed}: session {id} registered after the recovery is not of epoch 1"
            );
        }
        checked.push(seed);
    }
    println!("seeds that lost a session and registered one after: {checked:?}");
    assert!(
        checked.len() >= SESSION_SEEDS_WANTED,
        "only seeds {checked:?} of 0..{SESSION_SEEDS} lost a session and registered one \
         after the recovery"
    );
}

/// Seeds searched for runs that lose a session and register new ones
/// after the recovery, and how many must. Measured since replicas recover
/// from empty storage: 12 of seeds 0..24 (1, 3, 4, 7, 9, 11, 14, 15, 18,
/// 19, 20, 23); the test prints them.
const SESSION_SEEDS: u64 = 24;
const SESSION_SEEDS_WANTED: usize = 6;

/// The default configuration draws the scenario in some seeds (about a
/// fifth of those without membership churn), and they pass.
#[test]
fn the_default_swarm_draws_forced_recoveries() {
    assert_eq!(ForcedRecoveryChoice::default(), ForcedRecoveryChoice::Swarm);
    assert_eq!(
        SimConfig::default().forced_recovery,
        ForcedRecoveryChoice::Swarm
    );
    let mut drawn = Vec::new();
    for seed in 0..40 {
        let config = SimConfig {
            seed,
            nodes: 5,
            ..SimConfig::default()
        };
        let report = run_kv(&config, None).unwrap();
        assert!(report.passed(), "seed {seed}: {:?}", report.failure);
        if report
            .forced_recovery
            .is_some_and(|forced| forced.recovered_ns > 0)
        {
            drawn.push(seed);
        }
    }
    assert!(!drawn.is_empty(), "no seed of 0..40 drew a forced recovery");
    // The off switch draws none, and a replay names it.
    let off = SimConfig {
        seed: drawn[0],
        nodes: 5,
        forced_recovery: ForcedRecoveryChoice::Off,
        ..SimConfig::default()
    };
    assert!(run_kv(&off, None).unwrap().forced_recovery.is_none());
    assert!(off.replay_command().contains("--no-forced-recovery"));
}

/// A passing sweep with forced recoveries lists the acknowledged writes
/// they reported lost, and says in one line that this is their design,
/// not a failure (a user reading "writes lost" in a green run would
/// otherwise believe the library lost them).
#[cfg(feature = "cli")]
#[test]
fn a_passing_sweep_says_forced_recoveries_lose_writes_by_design() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_concord-sim"))
        .args([
            "run",
            "--seeds",
            "0..6",
            "--nodes",
            "5",
            "--forced-recovery",
        ])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    let at = lines
        .iter()
        .position(|line| line.contains("forced recoveries: 6 seeds"))
        .unwrap_or_else(|| panic!("no forced recovery summary:\n{stdout}"));
    assert!(
        lines[at].contains("acknowledged writes reported lost"),
        "{stdout}"
    );
    assert!(
        lines[at + 1].contains("not failures")
            && lines[at + 1].contains("operator's override")
            && lines[at + 1].contains("by design"),
        "{stdout}"
    );
}
