//! Deterministic reproduction of the partition-heal stall of real TCP
//! peer connections, on the one runtime: three nodes of
//! `concord_tokio::cluster::start_node` (the multi-group host's loop
//! serving the key-value store as group 1 beside the catalog, shared
//! logs on the page-cache disk model, one connection per peer from its
//! `TcpFrameSender`, on madsim's TCP). Follower X is cut off (madsim
//! `clog`) and every connection it had falls silent ([`LinkStaller`],
//! applied by the sender to every connection it dials, through
//! `NodeSettings::stream_wrapper`: the connection stays open and
//! swallows everything, as a TCP connection into a partition does until
//! the kernel's backed-off retransmission); the other follower Y is
//! killed; then the partition heals and the leader and X must find each
//! other again.
//!
//! With the sender's peer timeout the first write after the heal lands
//! within a second for every partition length; with the peer timeout
//! switched off (`NodeSettings::peer_timeout = None`: a silent
//! connection is kept 24 hours, as a transport without keepalives keeps
//! it) no write lands at all, which is the liveness failure seen on real
//! processes.
//!
//! ```text
//! RUSTFLAGS="--cfg madsim" MADSIM_TEST_SEED=1 cargo test -p concord-madsim-tests \
//!     --target-dir target/madsim --test madsim_stalled_links -- --nocapture
//! ```
#![cfg(madsim)]

#[path = "../../tests/common/kv_writes.rs"]
mod kv_writes;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use concord_madsim_tests::{serve_kv, NodeDisk};
use concord_services::KvClient;
use concord_tokio::client::ClientConfig;
use concord_tokio::cluster::NodeSettings;
use concord_tokio::fault::LinkStaller;
use kv_writes::first_write;
use madsim::runtime::Handle;
use madsim::time::sleep;

const CLUSTER: &str = "stalled";
const PORT: u16 = 7000;
/// Partition lengths tried, in seconds of virtual time.
const PARTITIONS_SECS: [u64; 4] = [1, 20, 60, 120];

fn ip(cluster: u8, host: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 20 + cluster, 0, host))
}

/// Runs the scenario on a fresh cluster (numbered `cluster`, for its own
/// addresses) and returns the time from the heal to the first write, if
/// one landed within `within`.
async fn heal_to_first_write(
    cluster: u8,
    partition: Duration,
    peer_timeout: Option<Duration>,
    within: Duration,
) -> Option<Duration> {
    let handle = Handle::current();
    let net = madsim::net::NetSim::current();
    let staller = LinkStaller::new();
    let peers: BTreeMap<u64, String> = (1..=3)
        .map(|id| (id, format!("{}:{PORT}", ip(cluster, id as u8))))
        .collect();
    let mut nodes = BTreeMap::new();
    for id in 1..=3u64 {
        let (peers, staller, disk) = (peers.clone(), staller.clone(), NodeDisk::new());
        let node = handle
            .create_node()
            .name(format!("c{cluster}-node-{id}"))
            .ip(ip(cluster, id as u8))
            .init(move || {
                let mut settings =
                    NodeSettings::new(id, peers[&id].clone(), peers.clone(), CLUSTER);
                settings.peer_timeout = peer_timeout;
                settings.stream_wrapper = Some(staller.wrapper(id));
                serve_kv(settings, disk.clone())
            })
            .build();
        nodes.insert(id, node);
    }
    let client_node = handle
        .create_node()
        .name(format!("c{cluster}-client"))
        .ip(ip(cluster, 100))
        .build();
    let servers: Vec<String> = peers.values().cloned().collect();
    let result = client_node
        .spawn(async move {
            // Impatient, so the figure measures the cluster, not the
            // client. Nor does the client hold a node off for long after
            // a failure: its connection to the leader, idle through the
            // partition, may have been closed by the server's idle
            // timeout (120 s), and the default second of avoidance after
            // that failed send would be counted as the cluster's.
            let mut client = KvClient::new(ClientConfig {
                request_timeout: Duration::from_millis(200),
                attempts_max: 1,
                retry_backoff: Duration::from_millis(10),
                avoid_min: Duration::from_millis(10),
                avoid_max: Duration::from_millis(10),
                ..ClientConfig::new(servers, CLUSTER)
            });
            first_write(&mut client, Duration::from_secs(10))
                .await
                .expect("the cluster never accepted a first write");
            let mut leader = None;
            for i in 0..3 {
                if let Ok(status) = client.status(i).await {
                    leader = leader.or(status.leader);
                }
            }
            (client, leader.expect("a leader"))
        })
        .await
        .expect("client task");
    let (mut client, leader) = result;
    let x = (1..=3).find(|&id| id != leader).unwrap();
    let y = (1..=3).find(|&id| id != leader && id != x).unwrap();
    net.clog_node(nodes[&x].id());
    assert!(
        staller.stall_node(x) >= 2,
        "X had no connections to silence"
    );
    handle.kill(nodes[&y].id());
    sleep(partition).await;
    net.unclog_node(nodes[&x].id());
    let took = client_node
        .spawn(async move { first_write(&mut client, within).await })
        .await
        .expect("client task");
    for node in nodes.values() {
        handle.kill(node.id());
    }
    took
}

#[madsim::test]
async fn first_write_lands_within_a_second_of_a_partition_healing() {
    for (i, secs) in PARTITIONS_SECS.into_iter().enumerate() {
        let took = heal_to_first_write(
            i as u8,
            Duration::from_secs(secs),
            Some(Duration::from_millis(500)),
            Duration::from_secs(30),
        )
        .await;
        eprintln!(
            "seed {}: partition {secs} s: heal to first write {took:?}",
            Handle::current().seed()
        );
        let took = took.unwrap_or_else(|| {
            panic!(
                "seed {}: no write within 30 s of healing a {secs} s partition",
                Handle::current().seed()
            )
        });
        assert!(
            took < Duration::from_secs(1),
            "seed {}: partition {secs} s: heal to first write took {took:?}",
            Handle::current().seed()
        );
    }
}

#[madsim::test]
async fn without_a_peer_timeout_silent_connections_never_heal() {
    let took = heal_to_first_write(9, Duration::from_secs(20), None, Duration::from_secs(30)).await;
    assert!(
        took.is_none(),
        "seed {}: a write landed {took:?} after the heal: the stalled-link fault no longer reproduces the stall",
        Handle::current().seed()
    );
}
