//! Clients sharing connections, on three real `concord-node` processes:
//! 32 key-value clients of one process share one connection per server
//! (`SharedConnections`), so their requests are pipelined and the
//! leader writes a batch's answers together. Each client writes its own
//! key and reads it back after every write: a read answered with another
//! request's answer (another client's key, or a write's outcome) fails
//! at once. The leader is SIGKILLed in the middle: the shared connection
//! to it breaks, every request waiting on it is retried in its session
//! elsewhere, and afterwards every acknowledged write reads back.

#[path = "common/processes.rs"]
mod processes;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use concord_services::KvClient;
use concord_tokio::client::ClientConfig;
use concord_tokio::multi::shared_connections::SharedConnections;
use processes::{find_leader, read_all, runtime, NodeProcesses};

const CLUSTER: &str = "shared-test";
const CLIENTS: u64 = 32;
const WRITES_PER_CLIENT: u64 = 30;

/// A client of `servers` on the connections of `shared`, patient enough
/// to ride out an election.
fn shared_client(servers: Vec<String>, shared: &SharedConnections) -> KvClient {
    let mut config = ClientConfig::new(servers, CLUSTER);
    config.request_timeout = Duration::from_millis(1500);
    config.attempts_max = 100;
    config.shared = Some(shared.clone());
    KvClient::new(config)
}

#[test]
fn clients_sharing_connections_get_their_own_answers_across_a_leader_kill() {
    let mut cluster = NodeProcesses::on_loopback("shared", CLUSTER);
    cluster.start_all();
    let runtime = runtime();
    let shared = SharedConnections::new();
    let leader = runtime.block_on(async { find_leader(&mut cluster.client()).await });
    // How many writes were acknowledged so far: the kill waits for some.
    let written = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let mut client = shared_client(cluster.servers(), &shared);
            let written = written.clone();
            runtime.spawn(async move {
                let key = format!("client-{c}");
                let mut last = None;
                for j in 0..WRITES_PER_CLIENT {
                    let value = format!("value-{c}-{j}");
                    client.put(key.clone(), value.clone()).await.expect("write");
                    written.fetch_add(1, Ordering::Relaxed);
                    let read = client.get(key.clone()).await.expect("read");
                    assert_eq!(
                        read.as_deref(),
                        Some(value.as_bytes()),
                        "client {c} read another request's answer"
                    );
                    last = Some((key.clone(), value));
                }
                last.expect("written")
            })
        })
        .collect();
    // Kill the leader once a third of the writes are in (the clients
    // run while this waits on the runtime).
    runtime.block_on(async {
        while written.load(Ordering::Relaxed) < CLIENTS * WRITES_PER_CLIENT / 3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    cluster.sigkill(leader);
    let acked: BTreeMap<String, String> = runtime.block_on(async {
        let mut acked = BTreeMap::new();
        for task in tasks {
            let (key, value) = task.await.expect("a client task");
            acked.insert(key, value);
        }
        acked
    });
    assert_eq!(acked.len() as u64, CLIENTS);
    let counts = shared.counts();
    eprintln!("{counts:?}");
    assert!(
        counts.request_writes < counts.requests,
        "the clients' requests were never pipelined: {counts:?}"
    );
    assert!(
        counts.broken >= 1,
        "the killed leader's connection did not break: {counts:?}"
    );
    // Every acknowledged write, read back by a client of its own.
    cluster.start(leader);
    runtime.block_on(async { read_all(&mut cluster.client(), &acked).await });
}
