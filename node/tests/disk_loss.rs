//! A server that comes back with an empty disk must not vote as if it
//! remembered (`src/storage_loss.rs`), on real `concord-node` processes,
//! one group and many.
//!
//! The sequence an operator hit: node 2 is cut off (here: stopped with
//! SIGSTOP, which a peer cannot tell from a cut network); 40 writes are
//! acknowledged by nodes 1 and 3; node 3 is killed and its data directory
//! deleted (a failed disk replaced); node 1 is cut off and node 2 comes
//! back; node 3 starts again, same id, empty directory. Nodes 2 and 3 are
//! a majority, but node 2 lacks the writes and node 3 forgot them: if node
//! 3 voted, they would elect node 2 and the 40 writes would be gone for
//! good once node 1 returned. They must elect no one until node 1 is back;
//! then every write reads back.
//!
//! ```text
//! cargo test -p concord-node --test disk_loss -- --nocapture
//! ```

#[path = "common/processes.rs"]
mod processes;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use concord_services::sharded_kv::ShardMap;
use concord_services::sharded_kv_client::ShardedKvClient;
use processes::{runtime, NodeProcesses};

const WRITES: u32 = 40;

/// Writes `key` = `value` through `writer` (either client) until a write
/// is acknowledged, within 30 s: a write whose answer was lost (a leader,
/// of the cluster or of a group, just stopped) is simply written again.
macro_rules! put_until_acknowledged {
    ($writer:expr, $key:expr, $value:expr) => {{
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match $writer.put($key.clone(), $value.clone()).await {
                Ok(_) => break,
                Err(error) => assert!(
                    Instant::now() < deadline,
                    "{} never acknowledged by 1 and 3: {error:?}",
                    $key
                ),
            }
        }
    }};
}

/// How long nodes 2 and 3 are left alone: many election timeouts.
const ALONE: Duration = Duration::from_secs(4);

#[test]
fn a_server_with_a_new_disk_does_not_lose_acknowledged_writes() {
    let mut cluster = NodeProcesses::on_loopback("disk-loss", "disk-loss");
    cluster.start_all();
    runtime().block_on(async {
        let mut writer = cluster.client_at(vec![cluster.addr(1), cluster.addr(3)]);
        // Any write at all first: the cluster is up and every node holds
        // the start of the log.
        writer.put("warm-up", "1").await.expect("first write");
        cluster.signal(2, libc::SIGSTOP);
        let mut acked = BTreeMap::new();
        for i in 0..WRITES {
            let (key, value) = (format!("key-{i}"), format!("value-{i}"));
            put_until_acknowledged!(writer, key, value);
            acked.insert(key, value);
        }
        cluster.sigkill(3);
        std::fs::remove_dir_all(cluster.data_dir(3)).expect("delete node 3's data directory");
        cluster.signal(1, libc::SIGSTOP);
        // Node 2 may have led when it stopped, and may still say "Leader"
        // of that term for a moment after it resumes: stale, not elected.
        // An election is logged; none may be won while node 1 is stopped.
        let elections =
            |cluster: &NodeProcesses, id| cluster.log_text(id).matches("became leader").count();
        // (Node 3 starts a new log file below: none won in it yet.)
        let won_before = (elections(&cluster, 2), 0);
        cluster.signal(2, libc::SIGCONT);
        cluster.start(3);
        // Nodes 2 and 3 alone: no leader, and node 3 says why.
        let mut probe = cluster.client_with_timeout(Duration::from_millis(300));
        let deadline = Instant::now() + ALONE;
        let mut recovering_seen = false;
        while Instant::now() < deadline {
            for (place, id) in [(1, 2), (2, 3)] {
                if let Ok(status) = probe.status(place).await {
                    assert!(
                        id == 2 || status.role != "Leader",
                        "node {id} was elected without node 1: {status:?}"
                    );
                    if id == 3 && status.storage_recovery.is_some() {
                        recovering_seen = true;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            recovering_seen,
            "node 3's status never said it recovers lost storage"
        );
        let won_after = (elections(&cluster, 2), elections(&cluster, 3));
        assert_eq!(
            won_before,
            won_after,
            "nodes 2 and 3 elected a leader without node 1:\n{}\n{}",
            cluster.log_text(2),
            cluster.log_text(3)
        );
        let log = cluster.log_text(3);
        assert!(
            log.contains("empty storage") || log.contains("lost its storage"),
            "node 3 logged nothing about its empty disk:\n{log}"
        );
        cluster.signal(1, libc::SIGCONT);
        let mut reader = cluster.client();
        for (key, value) in &acked {
            let got = reader.get(key.clone()).await.expect("read");
            assert_eq!(got.as_deref(), Some(value.as_bytes()), "{key} was lost");
        }
    });
}

#[test]
fn a_server_of_many_groups_with_a_new_disk_does_not_lose_acknowledged_writes() {
    const GROUPS: u64 = 8;
    let groups = GROUPS.to_string();
    let mut cluster = NodeProcesses::on_loopback("disk-loss-multi", "disk-loss-multi");
    cluster.start_all_with(&["--groups", &groups]);
    let sharded = |servers: BTreeMap<u64, String>| {
        let mut config =
            concord_tokio::multi::routing_client::RoutingConfig::new("disk-loss-multi", servers);
        config.request_timeout = Duration::from_millis(1500);
        config.attempts_max = 100;
        ShardedKvClient::new(ShardMap::new(GROUPS).expect("groups"), config).expect("client")
    };
    runtime().block_on(async {
        // Every address: a group's leader may be node 2 until it stops.
        let mut writer = sharded(cluster.addrs.clone());
        for group_key in 0..GROUPS * 4 {
            writer
                .put(format!("warm-up-{group_key}"), "1")
                .await
                .expect("first writes");
        }
        cluster.signal(2, libc::SIGSTOP);
        let mut acked = BTreeMap::new();
        for i in 0..WRITES {
            let (key, value) = (format!("key-{i}"), format!("value-{i}"));
            put_until_acknowledged!(writer, key, value);
            acked.insert(key, value);
        }
        cluster.sigkill(3);
        std::fs::remove_dir_all(cluster.data_dir(3)).expect("delete node 3's data directory");
        cluster.signal(1, libc::SIGSTOP);
        cluster.signal(2, libc::SIGCONT);
        cluster.start_with(3, &["--groups", &groups]);
        tokio::time::sleep(ALONE).await;
        let log = cluster.log_text(3);
        assert!(
            log.contains("empty storage") || log.contains("lost its storage"),
            "node 3 logged nothing about its empty disk:\n{log}"
        );
        cluster.signal(1, libc::SIGCONT);
        let mut reader = sharded(cluster.addrs.clone());
        for (key, value) in &acked {
            let got = reader.get(key.clone()).await.expect("read");
            assert_eq!(got.as_deref(), Some(value.as_bytes()), "{key} was lost");
        }
    });
}
