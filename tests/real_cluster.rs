//! Three real `concord-node` processes on loopback: write through the
//! client, SIGKILL the leader, keep writing through the new leader, restart
//! the dead node and see it catch up; then stop all three, restart all
//! three, and read every acknowledged write back.
#![cfg(feature = "tokio")]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use concord::tokio::client::{Client, ClientConfig};

const CLUSTER: &str = "real-test";

struct Cluster {
    base: PathBuf,
    addrs: BTreeMap<u64, String>,
    children: BTreeMap<u64, Child>,
    starts: u32,
}

impl Cluster {
    fn new() -> Cluster {
        let listeners: Vec<_> = (0..3)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let addrs = (1..=3u64)
            .map(|id| {
                (
                    id,
                    listeners[id as usize - 1].local_addr().unwrap().to_string(),
                )
            })
            .collect();
        drop(listeners);
        let base = std::env::temp_dir().join(format!(
            "concord-real-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&base).unwrap();
        Cluster {
            base,
            addrs,
            children: BTreeMap::new(),
            starts: 0,
        }
    }

    fn peers_arg(&self) -> String {
        self.addrs
            .iter()
            .map(|(id, a)| format!("{id}={a}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn servers(&self) -> Vec<String> {
        self.addrs.values().cloned().collect()
    }

    fn start(&mut self, id: u64) {
        self.starts += 1;
        let log = std::fs::File::create(self.base.join(format!("node-{id}-{}.log", self.starts)))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_concord-node"))
            .args([
                "--id",
                &id.to_string(),
                "--listen",
                &self.addrs[&id],
                "--peers",
                &self.peers_arg(),
            ])
            .arg("--data-dir")
            .arg(self.base.join(format!("node-{id}")))
            .args(["--cluster-id", CLUSTER])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn concord-node");
        self.children.insert(id, child);
    }

    fn sigkill(&mut self, id: u64) {
        let mut child = self.children.remove(&id).unwrap();
        child.kill().unwrap(); // SIGKILL on unix
        child.wait().unwrap();
    }

    fn sigterm_all(&mut self) {
        for (_, mut child) in std::mem::take(&mut self.children) {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    fn dump_logs(&self) {
        if let Ok(dir) = std::fs::read_dir(&self.base) {
            for item in dir.flatten() {
                let path = item.path();
                if path.extension().is_some_and(|e| e == "log") {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    let tail: Vec<&str> = text.lines().rev().take(30).collect();
                    eprintln!("==== {} (last lines) ====", path.display());
                    for line in tail.into_iter().rev() {
                        eprintln!("{line}");
                    }
                }
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, mut child) in std::mem::take(&mut self.children) {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            self.dump_logs();
        } else {
            let _ = remove_dir(&self.base);
        }
    }
}

fn remove_dir(path: &Path) -> std::io::Result<()> {
    std::fs::remove_dir_all(path)
}

fn client(cluster: &Cluster) -> Client {
    let mut config = ClientConfig::new(cluster.servers(), CLUSTER);
    config.request_timeout = Duration::from_millis(1500);
    config.attempts_max = 100;
    config.retry_backoff = Duration::from_millis(50);
    Client::new(config)
}

/// Index of the leader in the server list, asked of every node.
async fn leader_id(client: &mut Client) -> Option<u64> {
    for i in 0..3 {
        if let Ok(status) = client.status(i).await {
            if status.role == "Leader" {
                return Some(status.id);
            }
        }
    }
    None
}

#[test]
fn three_processes_survive_sigkill_of_the_leader_and_full_restart() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut cluster = Cluster::new();
    for id in 1..=3 {
        cluster.start(id);
    }
    runtime.block_on(async {
        let mut client = client(&cluster);
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
            leader = leader_id(&mut client).await;
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
        let new_leader = leader_id(&mut client).await.expect("a new leader");
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
        let mut client = self::client(&cluster);
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
