//! The strict key-value store as three real `concord-node --service kv`
//! processes on loopback, driven only through its command-line client: a
//! writer runs `put-many` on a group of three keys while a reader runs
//! `get-many` on the same group, and the leader is SIGKILLed part way.
//! Every read must see the group whole (put_many atomicity), the history
//! of both clients must be linearizable (checked per key by the
//! simulator's checker), and writes must go on being acknowledged after
//! the kill.

#[path = "common/processes.rs"]
mod processes;
#[path = "common/services.rs"]
mod services;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use concord_sim::history::{Op, Output, Recorder};
use concord_sim::linearizability::{check_history, CheckResult};

use processes::runtime;
use services::{cli, parse_pairs, recorded_read, Cluster, Outcome};

const CLUSTER: &str = "real-kv-test";
const GROUP: [&str; 3] = ["g.a", "g.b", "g.c"];
const WRITES: usize = 30;
const KILL_AFTER_WRITES: usize = 10;

/// Parses `get-many` output: `key=value` or `key (absent)` (read as
/// the empty value).
fn parse_values(text: &str) -> Vec<(String, String)> {
    present_or_empty(parse_pairs(text, " (absent)"))
}

/// Pairs read, an absent key's value read as empty.
fn present_or_empty(pairs: Vec<(String, Option<String>)>) -> Vec<(String, String)> {
    pairs
        .into_iter()
        .map(|(key, value)| (key, value.unwrap_or_default()))
        .collect()
}

#[test]
fn put_many_stays_atomic_and_linearizable_across_a_leader_kill() {
    let mut cluster = Cluster::started("kv", CLUSTER);
    let servers = cluster.cli_target();
    let recorder = Recorder::new();
    let writes_done = Arc::new(AtomicUsize::new(0));
    let writer_finished = Arc::new(AtomicBool::new(false));

    let writer = {
        let (servers, recorder, writes_done, finished) = (
            servers.clone(),
            recorder.clone(),
            writes_done.clone(),
            writer_finished.clone(),
        );
        std::thread::spawn(move || {
            let mut acked = Vec::new();
            for i in 0..WRITES {
                let value = format!("w{i}");
                let tokens: Vec<_> = GROUP
                    .iter()
                    .map(|key| {
                        recorder.call(
                            1,
                            *key,
                            Op::Put {
                                value: value.clone(),
                            },
                        )
                    })
                    .collect();
                let pairs: Vec<String> = GROUP.iter().map(|key| format!("{key}={value}")).collect();
                let mut args = vec!["put-many"];
                args.extend(pairs.iter().map(String::as_str));
                match cli(&servers, &args) {
                    Outcome::Ok(_) => {
                        tokens
                            .into_iter()
                            .for_each(|t| recorder.ok(t, Output::Done));
                        acked.push(i);
                    }
                    Outcome::NotApplied => tokens.into_iter().for_each(|t| recorder.fail(t)),
                    Outcome::Unknown => tokens.into_iter().for_each(|t| recorder.unknown(t)),
                }
                writes_done.fetch_add(1, Ordering::SeqCst);
            }
            finished.store(true, Ordering::SeqCst);
            acked
        })
    };

    let reader = {
        let (servers, recorder, finished) =
            (servers.clone(), recorder.clone(), writer_finished.clone());
        std::thread::spawn(move || {
            let mut reads = Vec::new();
            while !finished.load(Ordering::SeqCst) {
                let read = recorded_read(&servers, &recorder, 2, "get-many", &GROUP, " (absent)");
                if let Some(read) = read {
                    reads.push(present_or_empty(read));
                }
            }
            reads
        })
    };

    // SIGKILL the leader once a third of the writes are in.
    while writes_done.load(Ordering::SeqCst) < KILL_AFTER_WRITES {
        assert!(!writer.is_finished(), "the writer stopped early");
        std::thread::sleep(Duration::from_millis(20));
    }
    let leader = cluster.leader().expect("a leader before the kill");
    cluster.sigkill(leader);
    let writes_at_kill = writes_done.load(Ordering::SeqCst);

    let acked = writer.join().expect("writer thread");
    let reads = reader.join().expect("reader thread");

    // Writes went on being acknowledged after the leader died.
    let acked_after_kill = acked.iter().filter(|i| **i >= writes_at_kill).count();
    assert!(
        acked_after_kill >= (WRITES - writes_at_kill) / 2,
        "only {acked_after_kill} of {} writes after the kill were acknowledged",
        WRITES - writes_at_kill
    );
    // Atomicity: every read saw the group whole.
    assert!(reads.len() >= 5, "only {} reads completed", reads.len());
    for values in &reads {
        assert!(
            values.iter().all(|(_, value)| *value == values[0].1),
            "a get-many saw part of a put-many: {values:?}"
        );
    }
    // A final read sees the last acknowledged write (or a later one whose
    // outcome the writer did not learn).
    let last = *acked.last().expect("some write acknowledged");
    let Outcome::Ok(text) = cli(&servers, &["get-many", "g.a", "g.b", "g.c"]) else {
        panic!("the final read failed");
    };
    let values = parse_values(&text);
    let seen: usize = values[0]
        .1
        .trim_start_matches('w')
        .parse()
        .expect("a written value");
    assert!(
        seen >= last,
        "final read {values:?} is older than acknowledged write w{last}"
    );
    assert!(
        values.iter().all(|(_, value)| *value == values[0].1),
        "{values:?}"
    );
    // Linearizability of both clients' histories, per key.
    let history = recorder.history();
    eprintln!(
        "leader {leader} killed after {writes_at_kill} writes; {} of {WRITES} writes acknowledged ({acked_after_kill} after the kill), {} reads, {} key-level operations checked",
        acked.len(),
        reads.len(),
        history.len()
    );
    match check_history(&history) {
        CheckResult::Ok => {}
        other => panic!(
            "the history of {} operations is not linearizable: {other}",
            history.len()
        ),
    }
}

/// `--acknowledge-all`: when a write returns, every server has applied
/// everything committed (with one client and no other writer, every
/// server's applied index has reached the leader's commit index).
#[test]
fn acknowledge_all_returns_after_every_server_applied() {
    let mut cluster = Cluster::with_nodes("kv", "real-kv-ack-all", 3);
    cluster.start_all_and_await_leader();
    let target = cluster.cli_target();
    let runtime = runtime();
    let mut status_client = concord_tokio::multi::one_group_client::OneGroupClient::new(
        concord_tokio::client::ClientConfig::new(
            cluster.servers().split(',').map(str::to_string).collect(),
            "real-kv-ack-all",
        ),
    );
    for i in 0..10 {
        let value = format!("v{i}");
        assert!(matches!(
            cli(&target, &["--acknowledge-all", "put", "k", &value]),
            Outcome::Ok(_)
        ));
        let statuses: Vec<_> = runtime.block_on(async {
            let mut statuses = Vec::new();
            for server in 0..3 {
                statuses.push(status_client.status(server).await.expect("status"));
            }
            statuses
        });
        let commit = statuses.iter().map(|s| s.commit_index).max().unwrap_or(0);
        for status in &statuses {
            assert!(
                status.applied_index >= commit,
                "write {i} returned with node {} applied to {} of {commit}",
                status.id,
                status.applied_index
            );
        }
    }
}
