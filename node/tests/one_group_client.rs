//! The client of a one-group cluster on the multi-group wire
//! (`concord_tokio::multi::one_group_client`) against three real
//! `concord-node` servers (one group, no `--groups`) on loopback: writes in a session,
//! reads on every path, each server's status, the leader's address, a
//! leader killed under it, a stopped server's status, and a wrong cluster
//! name refused at once.
//!
//! ```text
//! cargo test -p concord-node --test one_group_client
//! ```

#[path = "common/processes.rs"]
mod processes;

use std::time::{Duration, Instant};

use bytes::Bytes;
use concord::ReadPath;
use concord_services::codec;
use concord_services::kv::{Kv, KvRequest, KvResponse};
use concord_tokio::client::{ClientConfig, ClientError, ErrorClass};
use concord_tokio::multi::one_group_client::OneGroupClient;
use processes::{runtime, NodeProcesses};

const CLUSTER: &str = "one-group-client";

fn put(key: &str, value: &str) -> Bytes {
    let request = KvRequest::Put {
        key: Bytes::from(key.to_string()),
        value: Bytes::from(value.to_string()),
    };
    codec::encode_request::<Kv>(1, &request)
}

fn get(key: &str) -> Bytes {
    let request = KvRequest::Get {
        key: Bytes::from(key.to_string()),
    };
    codec::encode_request::<Kv>(1, &request)
}

fn answer(bytes: &[u8]) -> KvResponse {
    codec::decode_answer::<Kv>(bytes)
        .expect("a well-formed answer")
        .expect("not refused")
}

fn value(bytes: &[u8]) -> Option<Bytes> {
    match answer(bytes) {
        KvResponse::Values(mut values) if values.len() == 1 => values.remove(0),
        other => panic!("a get answered {other:?}"),
    }
}

/// `n` keys with `prefix` (a one-group cluster holds every key).
fn keys(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

fn new_client(servers: Vec<String>, cluster: &str) -> OneGroupClient {
    let mut config = ClientConfig::new(servers, cluster);
    config.connect_timeout = Duration::from_millis(500);
    OneGroupClient::new(config)
}

/// The index in `servers` of the one server that says it leads, once
/// every server that answers agrees on the leader.
async fn settled_leader(client: &mut OneGroupClient, servers: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut leaders = Vec::new();
        let mut named = Vec::new();
        for server in 0..servers {
            if let Ok(status) = client.status(server).await {
                if status.role == "Leader" {
                    leaders.push(server);
                }
                named.push(status.leader);
            }
        }
        if leaders.len() == 1 && named.windows(2).all(|w| w[0] == w[1]) {
            return leaders[0];
        }
        assert!(Instant::now() < deadline, "no settled leader within 20 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn writes_reads_status_and_a_killed_leader_through_the_one_group_client() {
    let mut nodes = NodeProcesses::on_loopback("one-group-client", CLUSTER);
    nodes.start_all();
    let servers = nodes.servers();
    runtime().block_on(async {
        let mut client = new_client(servers.clone(), CLUSTER);
        assert_eq!(client.session(), None, "no session before the first write");
        let written_keys = keys("k", 20);
        for key in &written_keys {
            let written = client.write(put(key, &format!("v-{key}"))).await;
            assert_eq!(answer(&written.expect("write")), KvResponse::Written);
        }
        assert!(
            client.session().is_some(),
            "the first write opened a session"
        );
        for path in [ReadPath::ReadIndex, ReadPath::Lease, ReadPath::Follower] {
            for key in &written_keys {
                let read = client.read(get(key), path).await.expect("read");
                assert_eq!(
                    value(&read),
                    Some(Bytes::from(format!("v-{key}"))),
                    "{key} on {path:?}"
                );
            }
        }

        let leader = settled_leader(&mut client, servers.len()).await;
        let status = client.status(leader).await.expect("the leader answers");
        assert_eq!(status.peers.len(), 2, "the leader lists both followers");
        assert!(status.commit_index >= 20, "{status:?}");
        assert!(status.server.proposals >= 20, "{status:?}");
        // A write after the leader is settled goes to it.
        let after = keys("after-", 1).remove(0);
        client.write(put(&after, "settled")).await.expect("write");
        assert_eq!(client.leader(), Some(servers[leader].as_str()));

        let leader_id = nodes.ids()[leader];
        nodes.sigkill(leader_id);
        match client.status(leader).await {
            Err(error @ ClientError::Unavailable { .. }) => {
                assert_eq!(error.class(), ErrorClass::Transient)
            }
            other => panic!("a killed server's status: {other:?}"),
        }
        for key in keys("after-kill-", 10) {
            let written = client.write(put(&key, "x")).await;
            assert_eq!(
                answer(&written.expect("write after the kill")),
                KvResponse::Written
            );
        }
        let new_leader = client.leader().expect("a leader answered").to_string();
        assert_ne!(
            new_leader, servers[leader],
            "the killed server leads no more"
        );
        for key in &written_keys {
            let read = client.read(get(key), ReadPath::ReadIndex).await;
            assert_eq!(
                value(&read.expect("read")),
                Some(Bytes::from(format!("v-{key}")))
            );
        }

        // Another cluster's name is refused by the servers that run (one
        // was killed): a permanent error naming it, within the retries.
        let started = Instant::now();
        let mut stranger = new_client(servers.clone(), "another-cluster");
        match stranger.write(put(&written_keys[0], "v")).await {
            Err(error @ ClientError::Rejected { .. }) => {
                assert_eq!(error.class(), ErrorClass::Permanent);
                assert!(error.to_string().contains("another-cluster"), "{error}");
            }
            other => panic!("a stranger's write: {other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "refused within the retries, not after timeouts: {:?}",
            started.elapsed()
        );
    });
}
