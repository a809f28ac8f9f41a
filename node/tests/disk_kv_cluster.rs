//! Three real `concord-node --storage disk` processes (feature `disk`):
//! the key-value store's keys in each server's storage engine, under
//! faults while concurrent clients run every request of the store (get,
//! put, append, cas, get-many, put-many, as `multi_group_cluster.rs` does
//! against the store in memory). A server is SIGKILLed
//! and stays down while the others compact their logs past it, so it
//! comes back to a streamed snapshot; a server is cut off by a partition;
//! then every server is SIGKILLed at once and restarted from its disk. At
//! the end every key is read back, no acknowledged write is lost, and
//! every group's history is checked linearizable by the simulator's
//! checker, as for the in-memory store (`multi_group_cluster.rs`).
//!
//! ```text
//! cargo test -p concord-node --features disk --test disk_kv_cluster -- --nocapture
//! ```
//!
//! `CONCORD_DISK_SEED` sets the workload's seed (default: from the clock;
//! printed, and printed again on failure).
#![cfg(feature = "disk")]

#[path = "common/multi_cluster.rs"]
mod multi_cluster;
#[path = "common/processes.rs"]
mod processes;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use concord_services::sharded_kv::ShardMap;
use multi_cluster::{client, keys_of_every_group, proxied_cluster, put, Recorder};

const CLUSTER: &str = "disk-chaos";
const GROUPS: u64 = 4;
const NODES: [u64; 3] = [1, 2, 3];
const CLIENTS: u64 = 6;
/// Keys per group: enough that a snapshot holds more than one chunk of
/// rows is not the point here (the unit tests cut streams); enough that
/// concurrent writers meet on some.
const KEYS_PER_GROUP: usize = 8;

/// `n` keys of every group.
fn keys(map: &ShardMap) -> Vec<String> {
    let mut keys = keys_of_every_group(map);
    let mut i = 0;
    while keys.len() < KEYS_PER_GROUP * GROUPS as usize {
        let key = format!("k{i}");
        let group = map.group_of(key.as_bytes());
        if keys
            .iter()
            .filter(|k| map.group_of(k.as_bytes()) == group)
            .count()
            < KEYS_PER_GROUP
        {
            keys.push(key);
        }
        i += 1;
    }
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_stores_survive_kill_catch_up_by_snapshot_partition_and_full_restart() {
    let seed = multi_cluster::seed_from_env("CONCORD_DISK_SEED");
    let test_start = Instant::now();
    let base =
        std::env::temp_dir().join(format!("concord-disk-chaos-{}-{seed}", std::process::id()));
    // Snapshots every 100 entries, few kept after one: a server down for
    // a few seconds comes back behind every log.
    let extra = [
        "--storage",
        "disk",
        "--snapshot-every-entries",
        "100",
        "--compaction-trailing-entries",
        "10",
    ];
    let (mut nodes, network) = proxied_cluster(base.clone(), CLUSTER, GROUPS, &NODES, &extra).await;
    let listen = nodes.listen.clone();
    for id in NODES {
        nodes.start(id);
    }
    let map = ShardMap::new(GROUPS).unwrap();
    let keys = Arc::new(keys(&map));
    let recorder = Arc::new(Recorder::new());

    // Every key written once.
    let mut kv = client(CLUSTER, GROUPS, &listen);
    let mut who = recorder.client_id();
    let deadline = Instant::now() + Duration::from_secs(60);
    for key in keys.iter() {
        let mut attempt = 0;
        while !put(&mut kv, &recorder, &mut who, key, format!("init-{attempt}")).await {
            attempt += 1;
            assert!(
                Instant::now() < deadline,
                "{key}: no first write acknowledged"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    nodes.assert_running();

    let stop = Arc::new(AtomicBool::new(false));
    let workers = multi_cluster::spawn_clients(
        seed, CLIENTS, CLUSTER, GROUPS, &listen, &keys, 0, &recorder, &stop,
    );
    let mut steps = multi_cluster::Steps::new(test_start, &recorder);
    let sleep = |secs: u64| tokio::time::sleep(Duration::from_secs(secs));
    sleep(2).await;
    steps.step("SIGKILL node 3");
    nodes.sigkill(3);
    // Long enough for hundreds of writes per group: the others' logs move
    // past node 3's, so it catches up by snapshot.
    sleep(8).await;
    steps.step("restart node 3");
    nodes.start(3);
    sleep(6).await;
    steps.step("partition: node 1 cut off");
    network.isolate(1);
    sleep(6).await;
    steps.step("heal");
    network.heal();
    sleep(4).await;
    steps.step("SIGKILL every node, restart every node");
    for id in NODES {
        nodes.sigkill(id);
    }
    for id in NODES {
        nodes.start(id);
    }
    sleep(8).await;
    steps.step("stop the clients");
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.await.unwrap();
    }
    nodes.assert_running();
    steps.assert_each_acknowledged();
    // The keys are in each server's storage engine, one store per group;
    // node 3 restored a streamed snapshot into at least one of its stores
    // (a restore makes a new state directory: state-000001 is the one a
    // store is created with).
    let mut restored_on_node_3 = 0;
    for id in NODES {
        for group in map.group_ids() {
            let dir = base
                .join(format!("node-{id}"))
                .join("kv-disk")
                .join(format!("group-{group}"));
            let current = std::fs::read_to_string(dir.join("CURRENT_STATE"))
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            if id == 3 && current.trim() != "state-000001" {
                restored_on_node_3 += 1;
            }
        }
    }
    assert!(
        restored_on_node_3 > 0,
        "node 3 came back behind every log but restored no snapshot"
    );

    let mut kv = client(CLUSTER, GROUPS, &listen);
    let finals = multi_cluster::read_back(&mut kv, &recorder, &keys, Duration::from_secs(60)).await;
    recorder.assert_every_request_answered();
    let history = std::mem::take(&mut *recorder.ops.lock().unwrap());
    let operations = multi_cluster::check_history(history, &finals, &map, seed);
    eprintln!(
        "{operations} operations linearizable ({} writes acknowledged, {} unknown); whole test {:?}",
        recorder.acked(),
        recorder.unknown_writes.load(Ordering::SeqCst),
        test_start.elapsed()
    );
}
