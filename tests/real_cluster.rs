//! Three real `concord-node` processes on loopback: write through the
//! client, SIGKILL the leader, keep writing through the new leader, restart
//! the dead node and see it catch up; then stop all three, restart all
//! three, and read every acknowledged write back. And the write-ahead log's
//! recovery rule on real processes: a zero-filled tail is a torn write the
//! node starts past; a cut record it had fsynced makes it refuse to start
//! until the operator passes `--accept-wal-data-loss`.
#![cfg(feature = "tokio")]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use concord::tokio::client::{Client, ClientConfig};
use concord::tokio::wal;

const CLUSTER: &str = "real-test";

struct Cluster {
    base: PathBuf,
    addrs: BTreeMap<u64, String>,
    children: BTreeMap<u64, Child>,
    /// The log file of each node's latest start.
    logs: BTreeMap<u64, PathBuf>,
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
            logs: BTreeMap::new(),
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
        self.start_with(id, &[]);
    }

    fn data_dir(&self, id: u64) -> PathBuf {
        self.base.join(format!("node-{id}"))
    }

    /// Starts node `id` with extra command-line flags.
    fn start_with(&mut self, id: u64, extra: &[&str]) {
        self.starts += 1;
        let log_path = self.base.join(format!("node-{id}-{}.log", self.starts));
        let log = std::fs::File::create(&log_path).unwrap();
        self.logs.insert(id, log_path);
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
            .arg(self.data_dir(id))
            .args(["--cluster-id", CLUSTER])
            .args(extra)
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

    /// Waits up to `timeout` for node `id` to exit on its own.
    fn wait_exit(&mut self, id: u64, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.children.get_mut(&id).unwrap();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.children.remove(&id);
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What node `id` logged since its latest start.
    fn log_text(&self, id: u64) -> String {
        std::fs::read_to_string(&self.logs[&id]).unwrap_or_default()
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

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Writes `count` keys starting at `from`, recording them in `acked`.
async fn put_keys(
    client: &mut Client,
    acked: &mut BTreeMap<String, String>,
    prefix: &str,
    from: u32,
    count: u32,
) {
    for i in from..from + count {
        let (k, v) = (format!("{prefix}-{i}"), format!("value-{i}"));
        client.put(k.clone(), v.clone()).await.expect("write");
        acked.insert(k, v);
    }
}

async fn find_leader(client: &mut Client) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(id) = leader_id(client).await {
            return id;
        }
        assert!(Instant::now() < deadline, "no leader found");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until node `id` has applied everything `leader` has committed.
async fn wait_caught_up(client: &mut Client, leader: u64, id: u64, within: Duration) {
    let target = client
        .status(leader as usize - 1)
        .await
        .expect("leader status")
        .commit_index;
    let deadline = Instant::now() + within;
    loop {
        if let Ok(status) = client.status(id as usize - 1).await {
            if status.applied_index >= target {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "node {id} did not catch up to index {target}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn read_all(client: &mut Client, acked: &BTreeMap<String, String>) {
    for (k, v) in acked {
        let got = client.get(k.clone()).await.expect("read");
        assert_eq!(got, Some(Bytes::from(v.clone())), "key {k}");
    }
}

/// The newest WAL segment of a data directory.
fn newest_segment(data_dir: &Path) -> PathBuf {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(data_dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segments.sort();
    segments.pop().expect("a WAL segment")
}

/// Offset and size of the last record of a segment, read by the documented
/// format.
fn last_record(segment: &Path) -> (u64, u64) {
    let bytes = std::fs::read(segment).unwrap();
    let mut at = wal::SEGMENT_HEADER_BYTES;
    let mut last = None;
    while at + wal::RECORD_HEADER_BYTES <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        last = Some((at as u64, (wal::RECORD_HEADER_BYTES + len) as u64));
        at += wal::RECORD_HEADER_BYTES + len;
    }
    assert_eq!(at, bytes.len(), "segment ends on a record boundary");
    last.expect("a record in the newest segment")
}

#[test]
fn follower_restarts_past_a_zero_filled_wal_tail_and_catches_up() {
    let mut cluster = Cluster::new();
    for id in 1..=3 {
        cluster.start(id);
    }
    runtime().block_on(async {
        let mut client = client(&cluster);
        let mut acked = BTreeMap::new();
        put_keys(&mut client, &mut acked, "zero", 0, 30).await;
        let leader = find_leader(&mut client).await;
        let follower = (1..=3).find(|id| *id != leader).unwrap();
        wait_caught_up(&mut client, leader, follower, Duration::from_secs(10)).await;
        cluster.sigkill(follower);
        put_keys(&mut client, &mut acked, "zero", 30, 20).await;

        // What a torn write leaves after power loss on some filesystems.
        let segment = newest_segment(&cluster.data_dir(follower));
        let good_bytes = std::fs::metadata(&segment).unwrap().len();
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&segment)
            .unwrap();
        std::io::Write::write_all(&mut file, &[0u8; 4096]).unwrap();
        drop(file);

        cluster.start(follower);
        let leader = find_leader(&mut client).await;
        wait_caught_up(&mut client, leader, follower, Duration::from_secs(15)).await;
        assert!(
            cluster
                .children
                .get_mut(&follower)
                .unwrap()
                .try_wait()
                .unwrap()
                .is_none(),
            "the follower keeps running"
        );
        let log = cluster.log_text(follower);
        assert!(
            log.contains("torn tail") && log.contains(&format!("byte offset {good_bytes} of")),
            "the truncation is logged:\n{log}"
        );
        put_keys(&mut client, &mut acked, "zero", 50, 5).await;
        read_all(&mut client, &acked).await;
    });
    cluster.sigterm_all();
}

#[test]
fn follower_with_a_cut_durable_wal_record_refuses_to_start_until_data_loss_is_accepted() {
    let mut cluster = Cluster::new();
    for id in 1..=3 {
        cluster.start(id);
    }
    runtime().block_on(async {
        let mut client = client(&cluster);
        let mut acked = BTreeMap::new();
        put_keys(&mut client, &mut acked, "cut", 0, 30).await;
        let leader = find_leader(&mut client).await;
        let follower = (1..=3).find(|id| *id != leader).unwrap();
        wait_caught_up(&mut client, leader, follower, Duration::from_secs(10)).await;
        cluster.sigkill(follower);

        // Its final record was fsynced (and acknowledged): the durable
        // marker covers it. Cut it in half.
        let data_dir = cluster.data_dir(follower);
        let segment = newest_segment(&data_dir);
        let size = std::fs::metadata(&segment).unwrap().len();
        let marker = wal::read_durable_marker(&data_dir.join("wal")).expect("a durable marker");
        assert_eq!(marker.offset_bytes, size, "the marker covers the whole log");
        let (at, bytes) = last_record(&segment);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&segment)
            .unwrap()
            .set_len(at + bytes / 2)
            .unwrap();

        // Loud: it exits non-zero at once, naming the file and the way out.
        let started = Instant::now();
        cluster.start(follower);
        let status = cluster
            .wait_exit(follower, Duration::from_secs(10))
            .expect("the node refuses to start");
        assert!(!status.success(), "{status}");
        assert!(started.elapsed() < Duration::from_secs(10));
        let log = cluster.log_text(follower);
        let segment_name = segment.file_name().unwrap().to_str().unwrap();
        for needle in [
            segment_name,
            &format!("offset {at}"),
            "fsynced",
            "--accept-wal-data-loss",
        ] {
            assert!(log.contains(needle), "{needle:?} not in the log:\n{log}");
        }

        // The cluster keeps serving meanwhile.
        put_keys(&mut client, &mut acked, "cut", 30, 10).await;

        // The operator accepts the loss: it starts, says what was lost,
        // and the cluster still serves every acknowledged write.
        cluster.start_with(follower, &["--accept-wal-data-loss"]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while client.status(follower as usize - 1).await.is_err() {
            assert!(Instant::now() < deadline, "node {follower} did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let log = cluster.log_text(follower);
        assert!(
            log.contains("ERROR") && log.contains("ACCEPTING DATA LOSS"),
            "the loss is logged at error:\n{log}"
        );
        put_keys(&mut client, &mut acked, "cut", 40, 5).await;
        read_all(&mut client, &acked).await;
        // Not asserted: that the follower catches up. The leader still
        // believes it holds the lost entry (its match index), so it probes
        // from past the follower's shorter log; detecting that is the core's
        // (leader-side) job, being built separately.
        assert!(
            cluster
                .children
                .get_mut(&follower)
                .unwrap()
                .try_wait()
                .unwrap()
                .is_none(),
            "the follower keeps running"
        );
    });
    cluster.sigterm_all();
}
