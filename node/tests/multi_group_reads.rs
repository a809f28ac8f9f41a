//! Three real `concord-node --groups 64` processes on loopback, for what
//! a multi-group cluster does besides writes: lease and follower reads
//! that stay linearizable while a server is SIGKILLed and restarted and
//! another is cut off (the simulator's checker, every group's history);
//! a witness that keeps every group serving with a full voter killed,
//! and holds no state; leaders spread over the servers by
//! `--spread-leaders`, and handed back to a server that restarted; and
//! `concord-cli status` of the groups (the summary's counts against the
//! group count, the one-group view against the leader a client found).
//!
//! ```text
//! cargo test -p concord-node --test multi_group_reads -- --nocapture
//! ```
//!
//! `CONCORD_READS_SEED` sets the workload's seed (default: from the
//! clock; printed).

#[path = "common/multi_cluster.rs"]
mod multi_cluster;
#[path = "common/processes.rs"]
mod processes;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use concord::ReadPath;
use concord_node::group_roles::spread_leader;
use concord_services::sharded_kv::ShardMap;
use concord_tokio::multi::groups_status::{GroupsSummary, StatusAnswer, StatusQuery};
use multi_cluster::{client, get, keys_of_every_group, proxied_cluster, put, Recorder};
use processes::cli_binary;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const GROUPS: u64 = 64;
const NODES: [u64; 3] = [1, 2, 3];

fn base(label: &str, seed: u64) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "concord-multi-{label}-{}-{seed}",
        std::process::id()
    ))
}

/// Writes every key once (so every group has a leader), retrying until
/// acknowledged within 120 s.
async fn write_every_key(
    cluster: &str,
    listen: &BTreeMap<u64, String>,
    recorder: &Recorder,
    keys: &[String],
    value: &str,
) {
    let mut kv = client(cluster, GROUPS, listen);
    let mut who = recorder.client_id();
    let deadline = Instant::now() + Duration::from_secs(120);
    for key in keys {
        while !put(&mut kv, recorder, &mut who, key, value.to_string()).await {
            assert!(Instant::now() < deadline, "{key}: no write acknowledged");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Every server's summary of its groups (`None` for one that did not
/// answer).
async fn summaries(cluster: &str, listen: &BTreeMap<u64, String>) -> BTreeMap<u64, GroupsSummary> {
    let servers: Vec<String> = listen.values().cloned().collect();
    let answers = concord_node::groups_status_view::collect(
        &servers,
        cluster,
        None,
        Duration::from_secs(2),
        StatusQuery::Summary,
    )
    .await;
    answers
        .into_iter()
        .filter_map(|answer| match answer.answer {
            Some(StatusAnswer::Summary(summary)) => Some((summary.id, summary)),
            _ => None,
        })
        .collect()
}

/// Waits up to `within` for `done` to hold of the servers' summaries;
/// the last summaries seen.
async fn wait_for_summaries(
    cluster: &str,
    listen: &BTreeMap<u64, String>,
    within: Duration,
    what: &str,
    done: impl Fn(&BTreeMap<u64, GroupsSummary>) -> bool,
) -> BTreeMap<u64, GroupsSummary> {
    let deadline = Instant::now() + within;
    loop {
        let seen = summaries(cluster, listen).await;
        if done(&seen) {
            return seen;
        }
        let led: BTreeMap<u64, u64> = seen.iter().map(|(id, s)| (*id, s.groups_led)).collect();
        assert!(
            Instant::now() < deadline,
            "{what}: not within {within:?}; groups led per server: {led:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_and_follower_reads_stay_linearizable_under_kill_and_partition() {
    const CLUSTER: &str = "multi-reads";
    let seed = multi_cluster::seed_from_env("CONCORD_READS_SEED");
    let args = ["--lease-ticks", "5"];
    let (mut nodes, network) =
        proxied_cluster(base("reads", seed), CLUSTER, GROUPS, &NODES, &args).await;
    let listen = nodes.listen.clone();
    for id in NODES {
        nodes.start(id);
    }
    let map = ShardMap::new(GROUPS).unwrap();
    let keys = Arc::new(keys_of_every_group(&map));
    let recorder = Arc::new(Recorder::new());
    write_every_key(CLUSTER, &listen, &recorder, &keys, "init").await;

    // Half the clients read under the leader's lease, half at followers
    // (each follower read goes to the next server in turn), all of them
    // writing too, mostly to a few keys so that reads race writes.
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for c in 0..6u64 {
        let (keys, recorder, listen, stop) =
            (keys.clone(), recorder.clone(), listen.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (c + 1).wrapping_mul(0x9e37_79b9));
            let mut kv = client(CLUSTER, GROUPS, &listen);
            kv.set_read_path(if c % 2 == 0 {
                ReadPath::Lease
            } else {
                ReadPath::Follower
            });
            let mut who = recorder.client_id();
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let key = if rng.gen_bool(0.7) {
                    &keys[rng.gen_range(0..4)]
                } else {
                    &keys[rng.gen_range(0..keys.len())]
                };
                if rng.gen_bool(0.3) {
                    n += 1;
                    put(&mut kv, &recorder, &mut who, key, format!("c{c}-{n}")).await;
                } else {
                    get(&mut kv, &recorder, who, key).await;
                }
            }
        }));
    }
    let sleep = |secs: u64| tokio::time::sleep(Duration::from_secs(secs));
    sleep(2).await;
    eprintln!("SIGKILL node 3");
    nodes.sigkill(3);
    sleep(4).await;
    eprintln!("restart node 3");
    nodes.start(3);
    sleep(4).await;
    eprintln!("partition: node 1 cut off");
    network.isolate(1);
    sleep(5).await;
    eprintln!("heal");
    network.heal();
    sleep(4).await;
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.await.unwrap();
    }
    nodes.assert_running();

    // The reads went the ways asked: the servers served lease reads and
    // follower reads (not only read-index ones).
    let seen = summaries(CLUSTER, &listen).await;
    let lease: u64 = seen.values().map(|s| s.reads_lease).sum();
    let follower: u64 = seen.values().map(|s| s.reads_follower).sum();
    eprintln!("reads served: {lease} under a lease, {follower} at followers");
    assert!(lease > 0 && follower > 0, "{seen:?}");

    let mut kv = client(CLUSTER, GROUPS, &listen);
    let finals = multi_cluster::read_back(&mut kv, &recorder, &keys, Duration::from_secs(60)).await;
    let history = std::mem::take(&mut *recorder.ops.lock().unwrap());
    let gets = history
        .iter()
        .filter(|op| matches!(op.op, concord_sim::history::Op::Get))
        .count();
    let operations = multi_cluster::check_history(history, &finals, &map, seed);
    eprintln!(
        "{operations} operations ({gets} gets) on {GROUPS} groups linearizable ({} writes \
         acknowledged, {} unknown)",
        recorder.acked(),
        recorder.unknown_writes.load(Ordering::SeqCst)
    );
}

/// Sizes of the snapshot files under a node's `groups/` directory.
fn snapshot_sizes(data_dir: &std::path::Path) -> Vec<u64> {
    let mut sizes = Vec::new();
    let Ok(groups) = std::fs::read_dir(data_dir.join("groups")) else {
        return sizes;
    };
    for group in groups.flatten() {
        for file in std::fs::read_dir(group.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = file.file_name().to_string_lossy().into_owned();
            if name.ends_with(".snap") {
                sizes.push(file.metadata().unwrap().len());
            }
        }
    }
    sizes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_witness_keeps_every_group_serving_with_a_voter_killed() {
    const CLUSTER: &str = "multi-witness";
    let seed = multi_cluster::seed_from_env("CONCORD_READS_SEED");
    // Node 3 witnesses every group; snapshots every 8 entries, so that
    // every member takes some.
    let args = ["--witnesses", "3", "--snapshot-every-entries", "8"];
    let (mut nodes, _network) =
        proxied_cluster(base("witness", seed), CLUSTER, GROUPS, &NODES, &args).await;
    let listen = nodes.listen.clone();
    for id in NODES {
        nodes.start(id);
    }
    let map = ShardMap::new(GROUPS).unwrap();
    let keys = keys_of_every_group(&map);
    let recorder = Recorder::new();
    // Values of 2 KiB, ten rounds: a full voter's snapshots hold them.
    let value = |round: u32| format!("{round}-{}", "v".repeat(2048));
    for round in 0..10 {
        write_every_key(CLUSTER, &listen, &recorder, &keys, &value(round)).await;
    }
    let seen = wait_for_summaries(
        CLUSTER,
        &listen,
        Duration::from_secs(30),
        "a summary",
        |s| s.len() == 3,
    )
    .await;
    assert_eq!(seen[&3].groups_led, 0, "a witness never leads");
    assert_eq!(seen[&3].groups_witnessed, GROUPS);
    assert_eq!(seen[&1].groups_witnessed + seen[&2].groups_witnessed, 0);

    // The witness holds no state: its snapshots are metadata only, a full
    // voter's hold the values.
    // Snapshots land off the loop, after the writes that called for them
    // were answered: wait for them rather than race them.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let (witness_sizes, full_sizes) = loop {
        let witness_sizes = snapshot_sizes(&nodes.base.join("node-3"));
        let full_sizes = snapshot_sizes(&nodes.base.join("node-2"));
        let landed = !witness_sizes.is_empty() && full_sizes.iter().any(|size| *size > 2048);
        if landed || std::time::Instant::now() > deadline {
            break (witness_sizes, full_sizes);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!(
        "snapshots: witness {} files, largest {:?} bytes; node 2 {} files, largest {:?} bytes",
        witness_sizes.len(),
        witness_sizes.iter().max(),
        full_sizes.len(),
        full_sizes.iter().max()
    );
    assert!(full_sizes.iter().any(|size| *size > 2048), "{full_sizes:?}");
    assert!(!witness_sizes.is_empty(), "the witness takes snapshots too");
    assert!(
        witness_sizes.iter().all(|size| *size < 1024),
        "{witness_sizes:?}"
    );

    // A follower read sent to the witness is not served there: the
    // client is redirected and the read answered elsewhere.
    let only_witness: BTreeMap<u64, String> = [(3, listen[&3].clone())].into();
    let mut at_witness = client(CLUSTER, GROUPS, &only_witness);
    at_witness.set_read_path(ReadPath::Follower);
    let read = at_witness.get(keys[0].clone()).await.unwrap();
    assert_eq!(multi_cluster::text(read), value(9));
    let after = summaries(CLUSTER, &listen).await;
    assert_eq!(after[&3].reads_follower, 0, "a witness serves no read");
    assert!(after[&3].redirects > 0, "the witness redirected the read");

    // Node 1 killed: node 2 and the witness are a majority of every
    // group; every key takes a write and reads it back.
    nodes.sigkill(1);
    let survivors: BTreeMap<u64, String> = listen
        .iter()
        .filter(|(id, _)| **id != 1)
        .map(|(id, a)| (*id, a.clone()))
        .collect();
    write_every_key(CLUSTER, &survivors, &recorder, &keys, "after").await;
    let mut kv = client(CLUSTER, GROUPS, &survivors);
    for key in &keys {
        let value = kv.get(key.clone()).await.unwrap();
        assert_eq!(multi_cluster::text(value), "after", "{key}");
    }
    let seen = summaries(CLUSTER, &survivors).await;
    assert_eq!(seen[&2].groups_led, GROUPS, "node 2 leads every group");
    nodes.assert_running();
}

/// The groups `spread_leader` gives each server.
fn spread_counts() -> BTreeMap<u64, u64> {
    let voters: BTreeSet<u64> = NODES.into();
    let mut counts = BTreeMap::new();
    for group in 1..=GROUPS {
        *counts
            .entry(spread_leader(group, &voters).unwrap())
            .or_default() += 1;
    }
    counts
}

/// `concord-cli --groups 64 status` (with `extra` flags) against
/// `listen`: its exit status and standard output.
fn cli_status(cluster: &str, listen: &BTreeMap<u64, String>, extra: &[&str]) -> (i32, String) {
    let servers: Vec<String> = listen.values().cloned().collect();
    let output = Command::new(cli_binary())
        .args(["--groups", &GROUPS.to_string(), "--cluster-id", cluster])
        .args(["--servers", &servers.join(","), "status"])
        .args(extra)
        .output()
        .expect("run concord-cli");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spread_leaders_come_back_after_a_restart_and_status_shows_them() {
    const CLUSTER: &str = "multi-prefer";
    let seed = multi_cluster::seed_from_env("CONCORD_READS_SEED");
    let (mut nodes, _network) = proxied_cluster(
        base("prefer", seed),
        CLUSTER,
        GROUPS,
        &NODES,
        &["--spread-leaders"],
    )
    .await;
    let listen = nodes.listen.clone();
    for id in NODES {
        nodes.start(id);
    }
    let map = ShardMap::new(GROUPS).unwrap();
    let keys = keys_of_every_group(&map);
    let recorder = Recorder::new();
    write_every_key(CLUSTER, &listen, &recorder, &keys, "one").await;
    let expected = spread_counts();
    eprintln!("groups each server prefers to lead: {expected:?}");
    assert_eq!(expected.len(), 3, "every server is preferred by some group");
    let balanced = |seen: &BTreeMap<u64, GroupsSummary>| {
        NODES
            .iter()
            .all(|id| seen.get(id).map(|s| s.groups_led) == Some(expected[id]))
    };
    wait_for_summaries(
        CLUSTER,
        &listen,
        Duration::from_secs(60),
        "spread",
        balanced,
    )
    .await;

    // `status`: one block per server; the led counts add up to the group
    // count, and each server's count is the one the spread gives it.
    let (code, text) = cli_status(CLUSTER, &listen, &[]);
    eprintln!("{text}");
    assert_eq!(code, 0, "{text}");
    for id in NODES {
        let line = text
            .lines()
            .find(|line| line.starts_with(&format!("node {id} at ")))
            .unwrap_or_else(|| panic!("no block for node {id}:\n{text}"));
        let want = format!("{GROUPS} groups: {} led,", expected[&id]);
        assert!(line.contains(&want), "{line}");
    }
    assert!(
        text.contains(&format!(
            "groups led across the 3 server(s) that answered: {GROUPS} of {GROUPS}"
        )),
        "{text}"
    );
    assert!(text.lines().count() <= 24, "one screen:\n{text}");
    // The one-group view names the leader a client found by writing.
    let key = &keys[4];
    let group = map.group_of(key.as_bytes());
    let mut kv = client(CLUSTER, GROUPS, &listen);
    kv.put(key.clone(), "two".to_string()).await.unwrap();
    let leader = kv
        .routing()
        .cached_leader(group)
        .expect("the writer knows the leader");
    assert_eq!(Some(leader), spread_leader(group, &NODES.into()));
    let (code, text) = cli_status(CLUSTER, &listen, &["--group", &group.to_string()]);
    eprintln!("{text}");
    assert_eq!(code, 0, "{text}");
    for id in NODES {
        let line = text
            .lines()
            .find(|line| line.starts_with(&format!("group {group} on node {id} at ")))
            .unwrap_or_else(|| panic!("no line for node {id}:\n{text}"));
        let role = if id == leader { "Leader" } else { "Follower" };
        assert!(line.contains(&format!(": {role} term ")), "{line}");
        assert!(line.contains(&format!(" leader {leader} ")), "{line}");
    }
    assert!(text.contains("voters 1,2,3"), "{text}");
    // A group the cluster does not have: refused, exit 2.
    let (code, _) = cli_status(CLUSTER, &listen, &["--group", "65"]);
    assert_eq!(code, 2);

    // Node 2 killed: the others take its groups; restarted, it gets its
    // share back.
    nodes.sigkill(2);
    let survivors: BTreeMap<u64, String> = listen
        .iter()
        .filter(|(id, _)| **id != 2)
        .map(|(id, a)| (*id, a.clone()))
        .collect();
    write_every_key(CLUSTER, &survivors, &recorder, &keys, "three").await;
    wait_for_summaries(
        CLUSTER,
        &survivors,
        Duration::from_secs(60),
        "failover",
        |seen| seen.values().map(|s| s.groups_led).sum::<u64>() == GROUPS,
    )
    .await;
    let (code, text) = cli_status(CLUSTER, &listen, &[]);
    eprintln!("{text}");
    assert_eq!(code, 0, "a server down is a line, not a failure: {text}");
    assert!(text.contains("unreachable"), "{text}");
    assert!(text.contains("DOWN"), "the others see node 2 down:\n{text}");
    nodes.start(2);
    let started = Instant::now();
    wait_for_summaries(
        CLUSTER,
        &listen,
        Duration::from_secs(60),
        "handed back",
        balanced,
    )
    .await;
    eprintln!(
        "node 2 leads its {} groups again {:?} after its restart",
        expected[&2],
        started.elapsed()
    );
    nodes.assert_running();
}
