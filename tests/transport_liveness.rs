//! The one runtime's peer connections (`multi/tcp_sender.rs`, one per
//! peer) under connections that go silent: the failure a
//! network partition leaves behind. A silenced connection accepts writes
//! and never answers, exactly like a TCP connection whose packets are
//! dropped; the cluster must notice, dial again and serve writes within a
//! bound, and must not when the peer timeout is switched off (proof that
//! the fault is the one that matters).
mod common;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::kv_nodes::{loopback_peers, start_kv_node};
use common::kv_writes::first_write;
use common::{free_ports, runtime};
use concord_services::KvClient;
use concord_tokio::client::ClientConfig;
use concord_tokio::cluster::{NodeSettings, RunningNode};
use concord_tokio::fault::LinkStaller;

/// A client that gives up on an attempt quickly, so the time to the first
/// successful write measures the cluster, not the client's patience.
fn impatient_client(peers: &BTreeMap<u64, String>) -> KvClient {
    KvClient::new(ClientConfig {
        request_timeout: Duration::from_millis(200),
        attempts_max: 1,
        retry_backoff: Duration::from_millis(10),
        ..ClientConfig::new(peers.values().cloned().collect(), "liveness")
    })
}

/// Starts three nodes whose outgoing peer connections pass through
/// `staller`, with the given peer timeout.
async fn start_cluster(
    staller: &LinkStaller,
    peer_timeout: Option<Duration>,
) -> (BTreeMap<u64, RunningNode>, BTreeMap<u64, String>) {
    let peers = loopback_peers(&free_ports(3));
    let mut nodes = BTreeMap::new();
    for (&id, addr) in &peers {
        let mut settings = NodeSettings::new(id, addr.clone(), peers.clone(), "liveness");
        settings.peer_timeout = peer_timeout;
        settings.stream_wrapper = Some(staller.wrapper(id));
        let node = start_kv_node(settings).await.unwrap();
        nodes.insert(id, node);
    }
    (nodes, peers)
}

/// A fresh cluster accepts a first write within 10 s.
async fn first_write_within_10_s(client: &mut KvClient) {
    let took = first_write(client, Duration::from_secs(10)).await;
    assert!(took.is_some(), "the cluster never accepted a first write");
}

/// Connections the nodes dropped as silent, summed.
fn silent_dropped(nodes: &BTreeMap<u64, RunningNode>) -> u64 {
    nodes
        .values()
        .map(|n| {
            n.sender_counters
                .silent_connections_dropped
                .load(Ordering::Relaxed)
        })
        .sum()
}

/// The scenario: follower X's connections fall silent, the other
/// follower Y dies, and the leader and X must find each other again.
/// Returns the time from "network fine again" to the first write.
async fn leader_and_silenced_follower_must_reconnect(
    peer_timeout: Option<Duration>,
    within: Duration,
) -> (Option<Duration>, u64) {
    let staller = LinkStaller::new();
    let (mut nodes, peers) = start_cluster(&staller, peer_timeout).await;
    let mut client = impatient_client(&peers);
    first_write_within_10_s(&mut client).await;
    let leader = client.status(0).await.unwrap().leader.expect("a leader");
    let x = (1..=3).find(|&id| id != leader).unwrap();
    let y = (1..=3).find(|&id| id != leader && id != x).unwrap();
    // Let every connection exist, then silence all of X's.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        staller.stall_node(x) >= 2,
        "X had no connections to silence"
    );
    nodes.remove(&y).unwrap().shutdown().await.unwrap();
    let took = first_write(&mut client, within).await;
    let dropped = silent_dropped(&nodes);
    for (_, node) in nodes {
        node.shutdown().await.unwrap();
    }
    (took, dropped)
}

#[test]
fn silent_peer_connections_are_dropped_and_dialled_again() {
    runtime().block_on(async {
        let (took, silent_dropped) = leader_and_silenced_follower_must_reconnect(
            Some(Duration::from_millis(500)),
            Duration::from_secs(10),
        )
        .await;
        let took = took.expect("no write succeeded within 10 s of the connections going silent");
        eprintln!("first write {took:?} after the connections went silent; {silent_dropped} dropped as silent");
        assert!(
            silent_dropped >= 1,
            "no connection was dropped as silent"
        );
        // Detection (500 ms) + redial + election + commit, with room for a
        // loaded machine; the old transport never recovers at all.
        assert!(
            took < Duration::from_secs(5),
            "first write took {took:?}"
        );
    });
}

#[test]
fn without_a_peer_timeout_silent_connections_stall_the_cluster() {
    runtime().block_on(async {
        let (took, silent_dropped) =
            leader_and_silenced_follower_must_reconnect(None, Duration::from_secs(4)).await;
        assert_eq!(silent_dropped, 0);
        assert!(
            took.is_none(),
            "a write succeeded after {took:?}: the fault no longer reproduces the stall"
        );
    });
}

/// A connection is judged silent on what the peer sent, not on what this
/// node had the time to read: after its own thread stalled (one busy task
/// of a current-thread runtime, a paused process) the answers to its
/// keepalives wait unread in the socket when the deadline comes due, and
/// dropping the connection then would lose every frame in flight and, at
/// scale, turn one long turn into a storm of re-sent work.
#[test]
fn a_node_that_stalled_itself_drops_no_live_connection() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("build a tokio runtime");
    runtime.block_on(async {
        let staller = LinkStaller::new();
        let (nodes, peers) = start_cluster(&staller, Some(Duration::from_millis(500))).await;
        let mut client = impatient_client(&peers);
        first_write_within_10_s(&mut client).await;
        let before = silent_dropped(&nodes);
        // Keepalives go out and are answered while the cluster idles.
        tokio::time::sleep(Duration::from_millis(300)).await;
        for _ in 0..3 {
            // Every node of this runtime stops for three peer timeouts:
            // no task reads, answers or sends.
            std::thread::sleep(Duration::from_millis(1_500));
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        assert_eq!(
            silent_dropped(&nodes) - before,
            0,
            "a live connection was dropped as silent after this node's own stall"
        );
        for (_, node) in nodes {
            node.shutdown().await.unwrap();
        }
    });
}
