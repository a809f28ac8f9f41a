//! The directory as three real `concord-node --service directory`
//! processes on loopback, driven only through its command-line client:
//! two clients draw sequence numbers while a third connects, looks up and
//! disconnects a user, and the leader is SIGKILLed part way. Checked on
//! the results: sequence numbers are unique and strictly increasing in
//! real-time order across the leader change; a lookup after an
//! acknowledged disconnect never returns the old address (and after an
//! acknowledged connect returns the new one); the per-user history is
//! linearizable.

#[path = "common/processes.rs"]
mod processes;
#[path = "common/services.rs"]
mod services;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use concord_sim::history::{Op, Output, Recorder};
use concord_sim::linearizability::{check_history, CheckResult};

use services::{
    assert_unique_and_increasing, cli, recorded_read, spawn_clients, CliTarget, Cluster, Numbered,
    Outcome,
};

const CLUSTER: &str = "real-directory-test";
const SEQUENCES_PER_CLIENT: usize = 15;
const KILL_AFTER_SEQUENCES: usize = 8;
const ROUNDS: usize = 12;

fn draw(target: &CliTarget, drawn: &AtomicUsize) -> Vec<Numbered> {
    let mut numbers = Vec::new();
    for _ in 0..SEQUENCES_PER_CLIENT {
        let call = Instant::now();
        let outcome = cli(target, &["next-sequence"]);
        let ret = Instant::now();
        if let Outcome::Ok(text) = outcome {
            let number = text.trim().parse().expect("a sequence number");
            numbers.push(Numbered { call, ret, number });
        }
        drawn.fetch_add(1, Ordering::SeqCst);
    }
    numbers
}

#[test]
fn sequence_and_lookups_stay_correct_across_a_leader_kill() {
    let mut cluster = Cluster::started("directory", CLUSTER);
    let target = cluster.cli_target();
    let drawn = Arc::new(AtomicUsize::new(0));
    let recorder = Recorder::new();
    let drawers = spawn_clients(2, &target, &drawn, draw);

    // A third client: connect ann at a new address, look her up,
    // disconnect her, look her up again; each step checked against the
    // acknowledged writes before it.
    let presence = {
        let (target, recorder) = (target.clone(), recorder.clone());
        std::thread::spawn(move || {
            let mut stale = Vec::new();
            let mut connected: Option<String> = None;
            for round in 0..ROUNDS {
                let address = format!("10.0.0.{}:{}", round + 1, 5000 + round);
                let token = recorder.call(
                    3,
                    "ann",
                    Op::Put {
                        value: address.clone(),
                    },
                );
                match cli(&target, &["connect", "ann", &address]) {
                    Outcome::Ok(_) => {
                        recorder.ok(token, Output::Done);
                        connected = Some(address.clone());
                    }
                    Outcome::NotApplied => recorder.fail(token),
                    Outcome::Unknown => {
                        recorder.unknown(token);
                        connected = None;
                    }
                }
                for _ in 0..2 {
                    let seen =
                        recorded_read(&target, &recorder, 3, "lookup", &["ann", "bob"], " offline");
                    if let Some(seen) = seen {
                        if let Some(expected) = &connected {
                            if seen[0].1.as_ref() != Some(expected) {
                                stale.push(format!(
                                    "round {round}: after connect {expected} was acknowledged, lookup said {:?}",
                                    seen[0].1
                                ));
                            }
                        }
                    }
                }
                let token = recorder.call(
                    3,
                    "ann",
                    Op::Put {
                        value: String::new(),
                    },
                );
                let disconnected = match cli(&target, &["disconnect", "ann"]) {
                    Outcome::Ok(_) => {
                        recorder.ok(token, Output::Done);
                        true
                    }
                    Outcome::NotApplied => {
                        recorder.fail(token);
                        false
                    }
                    Outcome::Unknown => {
                        recorder.unknown(token);
                        false
                    }
                };
                connected = None;
                let seen = recorded_read(&target, &recorder, 3, "lookup", &["ann"], " offline");
                if let Some(seen) = seen {
                    if disconnected && seen[0].1.is_some() {
                        stale.push(format!(
                            "round {round}: after the disconnect was acknowledged, lookup returned {:?}",
                            seen[0].1
                        ));
                    }
                }
            }
            stale
        })
    };

    let (leader, killed_at) = cluster.kill_leader_after(&drawn, KILL_AFTER_SEQUENCES, &drawers);

    let mut numbers: Vec<Numbered> = drawers
        .into_iter()
        .flat_map(|d| d.join().expect("sequence client"))
        .collect();
    let stale = presence.join().expect("presence client");

    assert!(stale.is_empty(), "stale lookups: {stale:#?}");
    let after_kill = numbers.iter().filter(|d| d.call > killed_at).count();
    assert!(
        after_kill >= SEQUENCES_PER_CLIENT / 2,
        "only {after_kill} numbers drawn after the leader was killed"
    );
    assert_unique_and_increasing(&mut numbers);
    let history = recorder.history();
    eprintln!(
        "leader {leader} killed; {} sequence numbers ({after_kill} drawn after the kill), {} presence operations",
        numbers.len(),
        history.len()
    );
    match check_history(&history) {
        CheckResult::Ok => {}
        other => panic!("the presence history is not linearizable: {other}"),
    }
}

/// Waits until node `want` (or, with `None`, any node) says it leads.
fn wait_for_leader(cluster: &Cluster, want: Option<u64>, within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    loop {
        if let Some(leader) = cluster.leader() {
            if want.is_none_or(|want| want == leader) {
                return leader;
            }
        }
        assert!(
            Instant::now() < deadline,
            "leader {want:?} not in place within {within:?} (now {:?})",
            cluster.leader()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The directory's deployment shape: four servers, the highest id
/// preferred as leader whenever it is healthy; any one server may fail.
#[test]
fn four_servers_prefer_the_highest_id_and_survive_losing_it() {
    let mut cluster = Cluster::with_nodes("directory", "real-directory-4", 4);
    let prefer = ["--preferred-leader", "4"];
    for id in 1..=4 {
        cluster.start_with(id, &prefer);
    }
    let target = cluster.cli_target();
    assert_eq!(
        wait_for_leader(&cluster, Some(4), Duration::from_secs(20)),
        4
    );
    let Outcome::Ok(first) = cli(&target, &["next-sequence"]) else {
        panic!("next-sequence failed with every server up");
    };
    // The preferred leader fails: one of the other three leads and the
    // directory keeps serving.
    cluster.sigkill(4);
    let interim = wait_for_leader(&cluster, None, Duration::from_secs(20));
    assert_ne!(interim, 4);
    assert!(matches!(
        cli(&target, &["connect", "ann", "10.0.0.7:5000"]),
        Outcome::Ok(_)
    ));
    let Outcome::Ok(second) = cli(&target, &["next-sequence"]) else {
        panic!("next-sequence failed with node 4 down");
    };
    // It returns, catches up, and takes leadership back.
    cluster.start_with(4, &prefer);
    assert_eq!(
        wait_for_leader(&cluster, Some(4), Duration::from_secs(30)),
        4
    );
    let Outcome::Ok(third) = cli(&target, &["next-sequence"]) else {
        panic!("next-sequence failed after node 4 returned");
    };
    let numbers: Vec<u64> = [first, second, third]
        .iter()
        .map(|text| text.trim().parse().expect("a sequence number"))
        .collect();
    assert!(
        numbers.windows(2).all(|pair| pair[0] < pair[1]),
        "sequence not increasing across leader changes: {numbers:?}"
    );
    let Outcome::Ok(text) = cli(&target, &["lookup", "ann"]) else {
        panic!("lookup failed");
    };
    assert_eq!(text.trim(), "ann=10.0.0.7:5000");
}

/// Users of two different groups of `groups`.
fn users_apart(groups: u64) -> (String, String) {
    let map = concord_services::sharded_kv::ShardMap::new(groups).unwrap();
    let first = "user-0".to_string();
    let other = (1..)
        .map(|i| format!("user-{i}"))
        .find(|user| map.group_of(user.as_bytes()) != map.group_of(first.as_bytes()))
        .unwrap();
    (first, other)
}

/// `--groups 4`: users are sharded by name, the sequence lives on group
/// 1; a lookup of users of two groups is refused naming them.
#[test]
fn directory_on_four_groups_shards_users_and_keeps_one_sequence() {
    let (ann, bob) = users_apart(4);
    let lookup = |user: &str| ["lookup".to_string(), user.to_string()];
    let probe_ann = lookup(&ann);
    let probe_bob = lookup(&bob);
    let probes: [&[&str]; 3] = [
        &[&probe_ann[0], &probe_ann[1]],
        &[&probe_bob[0], &probe_bob[1]],
        &["next-sequence"],
    ];
    let cluster = Cluster::started_with_groups("directory", "real-directory-groups", 4, &probes);
    let target = cluster.cli_target();
    for (user, address) in [(&ann, "10.0.0.1:5000"), (&bob, "10.0.0.2:6000")] {
        assert!(matches!(
            cli(&target, &["connect", user, address]),
            Outcome::Ok(_)
        ));
    }
    match cli(&target, &["lookup", &ann]) {
        Outcome::Ok(text) => assert_eq!(text.trim(), format!("{ann}=10.0.0.1:5000")),
        other => panic!("lookup {ann}: {other:?}"),
    }
    assert!(matches!(
        cli(&target, &["disconnect", &bob]),
        Outcome::Ok(_)
    ));
    match cli(&target, &["lookup", &bob]) {
        Outcome::Ok(text) => assert_eq!(text.trim(), format!("{bob} offline")),
        other => panic!("lookup {bob}: {other:?}"),
    }
    // One sequence for the cluster: 1, 2, 3, ... (the probe drew 1).
    let mut numbers = Vec::new();
    for _ in 0..5 {
        match cli(&target, &["next-sequence"]) {
            Outcome::Ok(text) => numbers.push(text.trim().parse::<u64>().unwrap()),
            other => panic!("next-sequence: {other:?}"),
        }
    }
    assert_eq!(numbers, vec![2, 3, 4, 5, 6]);
    let (code, out, err) = services::cli_output(&target, &["lookup", &ann, &bob]);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(
        err.contains("lookup names keys of groups") && err.contains("no cross-group"),
        "{err}"
    );
}
