//! Membership change through the real tokio adapter under madsim: a fourth
//! node starts empty as a learner (`NodeSettings::join`), is added with an
//! admin request while an old voter is partitioned away, is refused
//! promotion while it is itself partitioned and falls behind, is promoted
//! once it caught up, takes the leadership (a client given only the old
//! voters' addresses writes through it, learning its address from a
//! redirect), and then stands in for a partitioned old voter: every
//! acknowledged write stays readable through the new configuration.
//!
//! ```text
//! RUSTFLAGS="--cfg madsim" MADSIM_TEST_SEED=7 MADSIM_TEST_CHECK_DETERMINISM=1 \
//!     cargo test -p concord-madsim-tests --test madsim_membership --target-dir target/madsim
//! ```
#![cfg(madsim)]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use bytes::Bytes;
use concord_madsim_tests::serve_kv;
use concord_services::KvClient;
use concord_tokio::client::ClientConfig;
use concord_tokio::cluster::NodeSettings;
use concord_tokio::storage::{MemDisk, MemStorage};
use concord_tokio::wire::{AdminRequest, AdminResponse, Members};
use madsim::runtime::Handle;
use madsim::time::sleep;

const CLUSTER: &str = "madsim-member";
const PORT: u16 = 7000;

fn node_ip(id: u64) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, id as u8))
}

fn addr(id: u64) -> String {
    format!("{}:{PORT}", node_ip(id))
}

fn client(servers: Vec<String>) -> KvClient {
    let mut config = ClientConfig::new(servers, CLUSTER);
    config.request_timeout = Duration::from_millis(800);
    config.attempts_max = 40;
    config.retry_backoff = Duration::from_millis(50);
    KvClient::single_group(config)
}

async fn put_keys(
    client: &mut KvClient,
    acked: &mut BTreeMap<String, String>,
    prefix: &str,
    count: u32,
) {
    for i in 0..count {
        let (k, v) = (format!("{prefix}-{i}"), format!("v{i}"));
        client.put(k.clone(), v.clone()).await.expect("write");
        acked.insert(k, v);
    }
}

async fn admin(client: &mut KvClient, request: AdminRequest) -> AdminResponse {
    client.admin(request).await.expect("admin request answered")
}

fn done(response: AdminResponse) -> Members {
    match response {
        AdminResponse::Done(members) => members,
        other => panic!("expected done, got {other:?}"),
    }
}

#[madsim::test]
async fn learner_added_and_promoted_under_partitions() {
    let handle = Handle::current();
    let voters: BTreeMap<u64, String> = (1..=3).map(|id| (id, addr(id))).collect();
    let mut nodes = BTreeMap::new();
    for id in 1..=4u64 {
        let disk = MemDisk::new();
        let mut peers = voters.clone();
        peers.insert(id, addr(id));
        let node = handle
            .create_node()
            .name(format!("node-{id}"))
            .ip(node_ip(id))
            .init(move || {
                let mut settings = NodeSettings::new(id, addr(id), peers.clone(), CLUSTER);
                // Node 4 starts empty, as a learner of the voters 1..3.
                settings.join = id == 4;
                let storage = MemStorage::new(disk.clone());
                serve_kv(settings, storage)
            })
            .build();
        nodes.insert(id, node);
    }
    let net = madsim::net::NetSim::current();
    let driver = handle
        .create_node()
        .name("driver")
        .ip(IpAddr::V4(Ipv4Addr::new(10, 0, 1, 1)))
        .build();
    let (node1, node3, node4) = (nodes[&1].id(), nodes[&3].id(), nodes[&4].id());
    let all: Vec<String> = (1..=4).map(addr).collect();
    driver
        .spawn(async move {
            let mut c = client(voters.values().cloned().collect());
            let mut acked = BTreeMap::new();
            put_keys(&mut c, &mut acked, "before", 20).await;

            // Add the learner while old voter 3 is cut off: the address
            // record and the change commit with voters 1 and 2.
            net.clog_node(node3);
            let members = done(
                admin(
                    &mut c,
                    AdminRequest::AddLearner {
                        id: 4,
                        addr: addr(4),
                    },
                )
                .await,
            );
            assert_eq!(members.learners, vec![4]);
            assert_eq!(members.voters, vec![1, 2, 3]);
            put_keys(&mut c, &mut acked, "learner-added", 20).await;
            net.unclog_node(node3);

            // The learner is partitioned and falls behind: promotion is
            // refused with the core's reason.
            net.clog_node(node4);
            put_keys(&mut c, &mut acked, "learner-cut-off", 100).await;
            match admin(&mut c, AdminRequest::Promote { id: 4 }).await {
                AdminResponse::Refused(reason) => {
                    assert!(reason.contains("behind"), "refused for lag: {reason}")
                }
                other => panic!("promotion of a lagging learner answered {other:?}"),
            }
            net.unclog_node(node4);

            // Once it caught up the promotion goes through.
            let mut promoted = None;
            for _ in 0..100 {
                match admin(&mut c, AdminRequest::Promote { id: 4 }).await {
                    AdminResponse::Done(members) => {
                        promoted = Some(members);
                        break;
                    }
                    AdminResponse::Refused(reason) if reason.contains("behind") => {
                        sleep(Duration::from_millis(100)).await
                    }
                    other => panic!("promotion answered {other:?}"),
                }
            }
            let members = promoted.expect("the learner caught up and was promoted");
            assert_eq!(members.voters, vec![1, 2, 3, 4]);
            assert!(members.learners.is_empty() && members.voters_outgoing.is_empty());

            // Leadership moves to node 4: a client given only the first
            // three addresses learns node 4's from a redirect and writes.
            let mut old = client(voters.values().cloned().collect());
            let mut transferred = false;
            for _ in 0..100 {
                match admin(&mut c, AdminRequest::TransferLeader { id: 4 }).await {
                    AdminResponse::Done(members) => {
                        assert_eq!(members.leader, Some(4));
                        transferred = true;
                        break;
                    }
                    AdminResponse::Refused(reason) if reason.contains("already the leader") => {
                        transferred = true;
                        break;
                    }
                    // Just back from its partition: not heard lately.
                    AdminResponse::Refused(reason) if reason.contains("recently") => {
                        sleep(Duration::from_millis(100)).await
                    }
                    other => panic!("transfer to node 4 answered {other:?}"),
                }
            }
            assert!(transferred, "node 4 never took the leadership");
            put_keys(&mut old, &mut acked, "led-by-4", 20).await;

            // Node 4 now counts: with 1 and 3 cut off, 2 and 4 are not a
            // majority of four, so remove 3 first (with 1, 2, 4 up), then
            // cut 1 off: 2 and 4 are a majority of {1, 2, 4}.
            net.clog_node(node3);
            let members = done(admin(&mut c, AdminRequest::Remove { id: 3 }).await);
            assert_eq!(members.voters, vec![1, 2, 4]);
            let mut c = client(all.clone());
            put_keys(&mut c, &mut acked, "node3-removed", 20).await;
            net.clog_node(node1);
            put_keys(&mut c, &mut acked, "node1-cut-off", 20).await;
            for (k, v) in &acked {
                let got = c.get(k.clone()).await.expect("read");
                assert_eq!(got, Some(Bytes::from(v.clone())), "key {k}");
            }
            net.unclog_node(node1);
            let members = done(admin(&mut c, AdminRequest::List).await);
            assert_eq!(members.voters, vec![1, 2, 4]);
            assert_eq!(
                members
                    .members
                    .iter()
                    .find(|m| m.id == 4)
                    .and_then(|m| m.addr.clone()),
                Some(addr(4))
            );
        })
        .await
        .expect("driver ran");
}
