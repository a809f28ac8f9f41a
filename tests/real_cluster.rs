//! Three real `concord-node` processes on loopback: write through the
//! client, SIGKILL the leader, keep writing through the new leader, restart
//! the dead node and see it catch up; then stop all three, restart all
//! three, and read every acknowledged write back.
#![cfg(feature = "tokio")]

#[path = "common/processes.rs"]
mod processes;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use processes::{leader_id, NodeProcesses};

const CLUSTER: &str = "real-test";

#[test]
fn three_processes_survive_sigkill_of_the_leader_and_full_restart() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut cluster = NodeProcesses::on_loopback("real", CLUSTER);
    for id in 1..=3 {
        cluster.start(id);
    }
    runtime.block_on(async {
        let mut client = cluster.client();
        let mut acked: BTreeMap<String, String> = BTreeMap::new();
        for i in 0..50 {
            let (k, v) = (format!("key-{i}"), format!("value-{i}"));
            client
                .put(k.clone(), v.clone())
                .await
                .expect("write before the kill");
            acked.insert(k, v);
        }

        // SIGKILL the leader.
        let mut leader = None;
        let deadline = Instant::now() + Duration::from_secs(10);
        while leader.is_none() {
            assert!(Instant::now() < deadline, "no leader found");
            leader = leader_id(&mut client, 3).await;
        }
        let leader = leader.unwrap();
        cluster.sigkill(leader);

        // Keep writing through the new leader.
        for i in 50..100 {
            let (k, v) = (format!("key-{i}"), format!("value-{i}"));
            client
                .put(k.clone(), v.clone())
                .await
                .expect("write after the kill");
            acked.insert(k, v);
        }
        let new_leader = leader_id(&mut client, 3).await.expect("a new leader");
        assert_ne!(new_leader, leader);

        // Restart the dead node: it catches up from its own log plus the leader.
        cluster.start(leader);
        let target = client
            .status(new_leader as usize - 1)
            .await
            .unwrap()
            .commit_index;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(status) = client.status(leader as usize - 1).await {
                if status.applied_index >= target {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "restarted node {leader} did not catch up to {target}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Writes keep working with all three up.
        client.put("after-restart", "yes").await.unwrap();
        acked.insert("after-restart".to_string(), "yes".to_string());

        // Stop all three, restart all three, read everything back.
        drop(client);
        cluster.sigterm_all();
        for id in 1..=3 {
            cluster.start(id);
        }
        let mut client = cluster.client();
        for (k, v) in &acked {
            let got = client
                .get(k.clone())
                .await
                .expect("read after full restart");
            assert_eq!(got, Some(Bytes::from(v.clone())), "key {k}");
        }
    });
    cluster.sigterm_all();
}
