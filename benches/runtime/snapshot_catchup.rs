//! Catch-up by snapshot, measured: three key-value nodes over TCP
//! on loopback, each on the one runtime's data directory (the shared log,
//! fsync on; `concord_tokio::cluster::start_node`); node 3 is stopped, the
//! others apply `CONCORD_CATCHUP_PUTS` puts of distinct keys (1 M by
//! default, 100-byte values: a state of more than 100 MB), compacting as
//! `concord-node` does by default (a snapshot every 100 000 entries).
//! Node 3 is restarted and the benchmark prints how long it took to be
//! caught up (its applied index at the leader's commit index), how large
//! the snapshot it installed is (its file in node 3's `groups/`), and the
//! rate in MB/s from the restart to the snapshot being installed.
//!
//! ```text
//! cargo bench -p concord-bench --bench snapshot_catchup
//! CONCORD_CATCHUP_PUTS=200000 cargo bench -p concord-bench --bench snapshot_catchup
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use concord::multi::sessions;
use concord::session::SessionResponse;
use concord_services::codec::encode_request;
use concord_services::kv::{Kv, KvRequest};
use concord_services::ServiceMachine;
use concord_tokio::cluster::{start_node, NodeSettings, NodeStorage, RunningNode, GROUP};
use concord_tokio::multi::wire::GroupOp;
use concord_tokio::status::NodeStatus;
use concord_tokio::wire::ClientResponse;

const VALUE_BYTES: usize = 100;
const CLIENTS: usize = 256;

#[path = "../../tests/common/scratch.rs"]
mod scratch;
use scratch::{free_ports, TempDir};

#[path = "../src/env.rs"]
#[allow(dead_code)]
mod env;
use env::env_u64;

async fn start(id: u64, peers: &BTreeMap<u64, String>, dir: &TempDir) -> RunningNode {
    let mut settings = NodeSettings::new(id, peers[&id].clone(), peers.clone(), "catchup-bench");
    settings.tick = Duration::from_millis(10);
    let storage = NodeStorage::dir(dir.0.join(format!("n{id}")));
    start_node(settings, ServiceMachine::<Kv>::new, storage)
        .await
        .expect("node starts")
}

async fn status(node: &RunningNode) -> NodeStatus {
    node.status().await.expect("node answers")
}

async fn leader_of(nodes: &[&RunningNode]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for (i, node) in nodes.iter().enumerate() {
            if status(node).await.role == "Leader" {
                return i;
            }
        }
        assert!(Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Registers a session, then puts keys `first, first + step, ...` below
/// `puts`.
async fn client(handle: Arc<RunningNode>, first: u64, step: u64, puts: u64, done: Arc<AtomicU64>) {
    let call = |command: Bytes| handle.server.call(GROUP, GroupOp::Command(command));
    let client = loop {
        if let ClientResponse::Done(reply) = call(sessions::encode_register()).await {
            if let Ok(SessionResponse::Registered { client }) = SessionResponse::decode(&reply) {
                break client;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let value = Bytes::from(vec![b'v'; VALUE_BYTES]);
    let mut seq = 0;
    let mut n = first;
    while n < puts {
        seq += 1;
        let put = KvRequest::Put {
            key: Bytes::from(format!("key-{n:010}")),
            value: value.clone(),
        };
        let command = sessions::encode_command(client, seq, &encode_request::<Kv>(seq, &put));
        // Retried under the same sequence number until done: applied once.
        while !matches!(call(command.clone()).await, ClientResponse::Done(_)) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        done.fetch_add(1, Ordering::Relaxed);
        n += step;
    }
}

fn main() {
    // RUST_LOG=info shows the nodes' logs (snapshots taken, sent, restored).
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let puts = env_u64("CONCORD_CATCHUP_PUTS", 1_000_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let dir = TempDir::new("catchup");
        let ports = free_ports(3);
        let peers: BTreeMap<u64, String> = (1..=3u64)
            .map(|id| (id, format!("127.0.0.1:{}", ports[id as usize - 1])))
            .collect();
        let n1 = start(1, &peers, &dir).await;
        let n2 = start(2, &peers, &dir).await;
        let n3 = start(3, &peers, &dir).await;
        leader_of(&[&n1, &n2, &n3]).await;
        n3.shutdown().await.expect("node 3 stops");
        let leader = leader_of(&[&n1, &n2]).await;
        let (leader, other) = if leader == 0 { (n1, n2) } else { (n2, n1) };
        let leader_handle = Arc::new(leader);

        let started = Instant::now();
        let done = Arc::new(AtomicU64::new(0));
        let clients: Vec<_> = (0..CLIENTS as u64)
            .map(|i| {
                tokio::spawn(client(
                    leader_handle.clone(),
                    i,
                    CLIENTS as u64,
                    puts,
                    done.clone(),
                ))
            })
            .collect();
        let mut reported = 0;
        while done.load(Ordering::Relaxed) < puts {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = done.load(Ordering::Relaxed);
            if now >= reported + puts / 10 {
                reported = now;
                eprintln!(
                    "snapshot_catchup: {now} of {puts} puts with node 3 down ({:.1} s)",
                    started.elapsed().as_secs_f64()
                );
            }
        }
        for client in clients {
            client.await.expect("client task");
        }
        let write_secs = started.elapsed().as_secs_f64();
        let before = status(&leader_handle).await;
        println!(
            "snapshot_catchup: {puts} puts of {VALUE_BYTES}-byte values in {write_secs:.1} s \
             ({:.0} puts/s) with node 3 down; leader commit {} snapshot at {} first index {}",
            puts as f64 / write_secs,
            before.commit_index,
            before.snapshot_index,
            before.first_index
        );

        let restarted = Instant::now();
        let n3 = start(3, &peers, &dir).await;
        let target = before.commit_index;
        let mut installed_after = None;
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut next_progress = Instant::now() + Duration::from_secs(2);
        let caught_up_after = loop {
            let s = status(&n3).await;
            if Instant::now() >= next_progress {
                next_progress += Duration::from_secs(2);
                eprintln!(
                    "snapshot_catchup: node 3 after {:.1} s: applied {} of {target}, \
                     snapshots installed {}, snapshot index {}",
                    restarted.elapsed().as_secs_f64(),
                    s.applied_index,
                    s.server.snapshots_installed,
                    s.snapshot_index
                );
            }
            if installed_after.is_none() && s.server.snapshots_installed > 0 {
                installed_after = Some(restarted.elapsed());
            }
            if s.applied_index >= target {
                break restarted.elapsed();
            }
            assert!(Instant::now() < deadline, "node 3 did not catch up: {s:?}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let s3 = status(&n3).await;
        let installed_after = installed_after.unwrap_or(caught_up_after);
        let snapshot_bytes = snapshot_file_bytes(&dir.0.join("n3"));
        println!(
            "snapshot_catchup: node 3 restarted {target} entries behind; snapshots installed {}; \
             its snapshot file {:.1} MB; installed and restored {:.3} s after the restart \
             ({:.0} MB/s); caught up to index {target} after {:.3} s",
            s3.server.snapshots_installed,
            snapshot_bytes as f64 / 1e6,
            installed_after.as_secs_f64(),
            snapshot_bytes as f64 / 1e6 / installed_after.as_secs_f64(),
            caught_up_after.as_secs_f64(),
        );
        assert!(
            s3.server.snapshots_installed >= 1,
            "node 3 was caught up without a snapshot: the benchmark measured nothing"
        );
        n3.shutdown().await.ok();
        other.shutdown().await.ok();
        if let Ok(node) = Arc::try_unwrap(leader_handle) {
            node.shutdown().await.ok();
        }
    });
}

/// Bytes of the newest snapshot file of group [`GROUP`] in the data
/// directory `dir` (`groups/<group:020>/snapshot-*.snap`), 0 if none.
fn snapshot_file_bytes(dir: &std::path::Path) -> u64 {
    let group_dir = dir.join("groups").join(format!("{GROUP:020}"));
    let Ok(entries) = std::fs::read_dir(group_dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("snapshot-"))
        .filter_map(|entry| entry.metadata().ok())
        .map(|metadata| metadata.len())
        .max()
        .unwrap_or(0)
}
