//! A 3-node cluster of the one runtime (`concord_tokio::cluster::start_node`:
//! the multi-group host's loop serving the key-value store as group 1
//! beside the catalog, its shared log written inline on the page-cache
//! disk model, one TCP connection per peer on madsim's simulated TCP)
//! under node kills and restarts, partitions (a node cut off, a link cut
//! one way) and a slow network, with clients (`KvClient::new`, the
//! one-group client) whose history is checked by the simulator's
//! linearizability checker. A killed node restarts on what its disk
//! kept: the kill loses the page cache (what was not synced, perhaps
//! leaving a torn tail), and the node starts again with a larger
//! incarnation. After the clients stop, every key is read once more and
//! the read joins the history, so an acknowledged write that the cluster
//! lost shows as a history that is not linearizable.
//!
//! A second run compacts every few entries and first isolates one node
//! long enough that the others compact past it, so that it is caught up
//! by a snapshot install under the same faults. Gets take each read path
//! in turn (ReadIndex, lease, follower read, through the log), chosen at
//! random per operation, with leases on; every path must serve reads in
//! every run, and the servers must have served some reads under a lease
//! (a lease read the leader cannot serve under its lease is served by
//! ReadIndex instead, so the client's count alone would not show it).
//!
//! ```text
//! RUSTFLAGS="--cfg madsim" MADSIM_TEST_SEED=1 MADSIM_TEST_NUM=8 cargo test \
//!     -p concord-madsim-tests --target-dir target/madsim --test madsim_cluster
//! RUSTFLAGS="--cfg madsim" MADSIM_TEST_CHECK_DETERMINISM=1 cargo test \
//!     -p concord-madsim-tests --target-dir target/madsim --test madsim_cluster
//! ```
//!
//! The IP addresses below are madsim's virtual addresses: madsim simulates
//! the network inside the process, no real socket is ever opened.
#![cfg(madsim)]

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use concord::ReadPath;
use concord_madsim_tests::{
    assert_linearizable, completed_after_heal, ip, join_clients, plain_node, run_faults, serve_kv,
    text, Fault, FaultRounds, NodeDisk,
};
use concord_services::{CallError, KvClient};
use concord_sim::history::{Op, Operation, Output};
use concord_tokio::client::{ClientConfig, ClientError};
use concord_tokio::cluster::NodeSettings;
use madsim::rand::{thread_rng, Rng};
use madsim::runtime::Handle;
use madsim::time::{sleep, Instant};

const CLUSTER: &str = "madsim";
const PORT: u16 = 7000;
const CLIENTS: u64 = 3;
/// Most operations per client (a bound; clients stop earlier when the fault
/// schedule has run and the cluster had time to heal).
const OPS_PER_CLIENT_MAX: u64 = 2000;
const KEYS: [&str; 3] = ["x", "y", "z"];
const FAULT_ROUNDS: u32 = 12;
/// Attempts at each final read (the cluster healed seconds before).
const FINAL_READ_ATTEMPTS: u32 = 50;

fn node_ip(id: u64) -> IpAddr {
    ip(0, 0, id)
}

fn client_ip(i: u64) -> IpAddr {
    ip(0, 1, i)
}

async fn run_client(
    client_no: u64,
    servers: Vec<String>,
    start: Instant,
    history: Arc<Mutex<Vec<Operation>>>,
    stop: Arc<AtomicBool>,
    reads_by_path: Arc<Mutex<[u64; 4]>>,
) {
    let mut config = ClientConfig::new(servers, CLUSTER);
    config.request_timeout = Duration::from_millis(800);
    config.attempts_max = 12;
    config.retry_backoff = Duration::from_millis(30);
    let mut client = KvClient::new(config);
    for i in 0..OPS_PER_CLIENT_MAX {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let key = KEYS[thread_rng().gen_range(0..KEYS.len())];
        let value = format!("c{client_no}.{i};");
        let op = match thread_rng().gen_range(0..10) {
            0..=2 => Op::Get,
            3..=4 => Op::Put { value },
            5..=7 => Op::Append { value },
            _ => {
                // Compare against what this client last saw is unknown here;
                // read then cas keeps some cas operations succeeding.
                let current = client.get(key).await.map(text).unwrap_or_default();
                Op::Cas {
                    from: current,
                    to: value,
                }
            }
        };
        let call = start.elapsed().as_nanos() as u64;
        let result = match &op {
            Op::Get => {
                // 0..3: ReadIndex, lease, follower; 3: through the log.
                let slot = thread_rng().gen_range(0..4);
                let paths = [ReadPath::ReadIndex, ReadPath::Lease, ReadPath::Follower];
                let read = client.get_via(key, paths.get(slot).copied()).await;
                if read.is_ok() {
                    reads_by_path.lock().unwrap()[slot] += 1;
                }
                read.map(|v| Output::Value(text(v)))
            }
            Op::Put { value } => client.put(key, value.clone()).await.map(|_| Output::Done),
            Op::Append { value } => client
                .append(key, value.clone())
                .await
                .map(|_| Output::Done),
            Op::Cas { from, to } => {
                let expected = if from.is_empty() {
                    None
                } else {
                    Some(Bytes::from(from.clone()))
                };
                client
                    .cas(key, expected, to.clone())
                    .await
                    .map(Output::Swapped)
            }
        };
        let ret = start.elapsed().as_nanos() as u64;
        let operation = Operation::new(client_no, key, op, call);
        let operation = match result {
            Ok(output) => operation.completed(ret.max(call), output),
            // Retries exhausted or session expired: the operation may or may
            // not have been applied.
            Err(CallError::Client(
                ClientError::RetriesExhausted { .. }
                | ClientError::Unavailable { .. }
                | ClientError::SessionExpired,
            )) => operation,
            Err(e) => panic!("client {client_no}: unexpected error {e}"),
        };
        history.lock().unwrap().push(operation);
    }
}

#[madsim::test]
async fn cluster_under_kills_partitions_and_delays_is_linearizable() {
    run_cluster(None).await;
}

/// Snapshot every this many applied entries in the compacting run.
const SNAPSHOT_EVERY_ENTRIES: u64 = 20;
/// Entries kept below a snapshot in the compacting run.
const TRAILING_ENTRIES: u64 = 5;

#[madsim::test]
async fn compacting_cluster_installs_snapshots_under_faults_and_is_linearizable() {
    let installed = run_cluster(Some((SNAPSHOT_EVERY_ENTRIES, TRAILING_ENTRIES))).await;
    assert!(
        installed >= 1,
        "the node isolated while the others compacted was caught up by a snapshot"
    );
}

/// Runs the cluster under faults with a compaction policy (`(snapshot
/// every N entries, trailing entries)`, or none) and checks the history.
/// With compaction, node 1 is first isolated for 3 s while the clients
/// write, and the snapshots it installed just after are returned.
async fn run_cluster(compaction: Option<(u64, u64)>) -> u64 {
    let handle = Handle::current();
    let peers: BTreeMap<u64, String> = (1..=3)
        .map(|id| (id, format!("{}:{PORT}", node_ip(id))))
        .collect();
    let disks: BTreeMap<u64, NodeDisk> = (1..=3).map(|id| (id, NodeDisk::new())).collect();
    let mut nodes = BTreeMap::new();
    for id in 1..=3u64 {
        let disk = disks[&id].clone();
        let peers = peers.clone();
        let node = handle
            .create_node()
            .name(format!("node-{id}"))
            .ip(node_ip(id))
            .init(move || {
                let mut settings =
                    NodeSettings::new(id, peers[&id].clone(), peers.clone(), CLUSTER);
                settings.tick = Duration::from_millis(10);
                // Elections after 15..30 ticks; 8 + 3 < 15.
                settings.lease_read_ticks = 8;
                settings.clock_drift_bound_ticks = 3;
                if let Some((every, trailing)) = compaction {
                    settings.snapshot_every_entries = Some(every);
                    settings.compaction_trailing_entries = trailing;
                }
                serve_kv(settings, disk.clone())
            })
            .build();
        nodes.insert(id, node);
    }

    let start = Instant::now();
    let history = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let servers: Vec<String> = peers.values().cloned().collect();
    let mut clients = Vec::new();
    let reads_by_path = Arc::new(Mutex::new([0u64; 4]));
    for c in 1..=CLIENTS {
        let client_node = plain_node(&handle, format!("client-{c}"), client_ip(c));
        let (servers, history, stop) = (servers.clone(), history.clone(), stop.clone());
        let reads = reads_by_path.clone();
        clients.push(client_node.spawn(run_client(c, servers, start, history, stop, reads)));
    }

    // Faults, one at a time, each healed before the next.
    let net = madsim::net::NetSim::current();
    let isolated = nodes[&1].id();
    let mut installed = 0;
    if compaction.is_some() {
        // A new cluster elects once every voter has reported an empty log
        // (an empty voter could be one whose disk was lost): let node 1
        // answer first, then isolate it.
        sleep(Duration::from_secs(1)).await;
        tracing::info!("fault: isolate node 1 while the others compact");
        net.clog_node(isolated);
        sleep(Duration::from_secs(3)).await;
        net.unclog_node(isolated);
        // Node 1 has had a second to catch up: ask it how (before any
        // kill resets its counters).
        sleep(Duration::from_secs(1)).await;
        let checker = handle
            .create_node()
            .name("checker")
            .ip(client_ip(CLIENTS + 1))
            .build();
        let status_servers = servers.clone();
        installed = checker
            .spawn(async move {
                let mut client = KvClient::new(ClientConfig::new(status_servers, CLUSTER));
                match client.status(0).await {
                    Ok(status) => {
                        tracing::info!(
                            snapshot_index = status.snapshot_index,
                            taken = status.server.snapshots_taken,
                            installed = status.server.snapshots_installed,
                            "node 1 after its isolation"
                        );
                        status.server.snapshots_installed
                    }
                    Err(_) => 0,
                }
            })
            .await
            .expect("status check ran");
    }
    let plan = FaultRounds {
        rounds: FAULT_ROUNDS,
        gap_ms: 100..600,
        hold_ms: 200..1500,
        kinds: vec![Fault::Kill, Fault::Isolate, Fault::OneWay, Fault::Slow],
    };
    let kills = run_faults(&nodes, &plan, |_| {}).await.kills;

    // Healed: the cluster must make progress again.
    let healed_at = start.elapsed().as_nanos() as u64;
    sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    join_clients(clients).await;
    // Every kill was followed by a start on the crashed disk.
    let starts: u64 = disks.values().map(NodeDisk::starts).sum();
    assert_eq!(starts, 3 + u64::from(kills), "starts after {kills} kills");

    // Every key read once more, now that the clients are done: the value
    // joins the history, so that an acknowledged write the cluster lost
    // makes it not linearizable. Lease reads first, then each node's
    // count of reads served under a lease (since its last start).
    let reader = plain_node(&handle, "final-reader", client_ip(CLIENTS + 2));
    let final_servers = servers.clone();
    let (finals, lease_reads_served) = reader
        .spawn(async move {
            let mut config = ClientConfig::new(final_servers, CLUSTER);
            config.request_timeout = Duration::from_millis(800);
            config.attempts_max = 12;
            let mut client = KvClient::new(config);
            let mut finals = BTreeMap::new();
            for key in KEYS {
                let mut value = None;
                for _ in 0..FINAL_READ_ATTEMPTS {
                    match client.get_via(key, Some(ReadPath::Lease)).await {
                        Ok(read) => {
                            value = Some(text(read));
                            break;
                        }
                        Err(_) => sleep(Duration::from_millis(100)).await,
                    }
                }
                let value = value.unwrap_or_else(|| panic!("key {key} could not be read"));
                finals.insert(key, value);
            }
            let mut lease_reads = 0;
            for server in 0..3 {
                if let Ok(status) = client.status(server).await {
                    lease_reads += status.server.reads_lease;
                }
            }
            (finals, lease_reads)
        })
        .await
        .expect("final reads ran");
    let mut history = history.lock().unwrap().clone();
    let completed = completed_after_heal(&history, healed_at, CLIENTS as usize);
    assert!(
        completed * 2 >= history.len(),
        "too few operations completed: {completed} of {}",
        history.len()
    );
    let end = start.elapsed().as_nanos() as u64;
    for (key, value) in &finals {
        let read = Operation::new(CLIENTS + 2, *key, Op::Get, end);
        history.push(read.completed(end, Output::Value(value.clone())));
    }
    let unknown = history.len() - finals.len() - completed;
    eprintln!(
        "seed {}: {} operations, {completed} completed, {unknown} unknown, {kills} kills, {installed} snapshot installs checked, {:?} virtual time",
        handle.seed(),
        history.len(),
        start.elapsed()
    );
    let reads = *reads_by_path.lock().unwrap();
    eprintln!(
        "reads completed, by the path asked: {} ReadIndex, {} lease, {} follower, {} through the log; {lease_reads_served} served under a lease by the nodes since their last start",
        reads[0], reads[1], reads[2], reads[3]
    );
    assert!(
        reads.iter().all(|count| *count > 0),
        "a read path served nothing: {reads:?}"
    );
    assert!(
        lease_reads_served > 0,
        "seed {}: no server served a read under its lease: leases are off",
        handle.seed()
    );
    assert_linearizable(&history, &format!("{completed} completed, {kills} kills"));
    installed
}
