//! State beyond memory, measured (docs/snapshots.md): three real
//! `concord-node` processes of one group on loopback, fsync on, the
//! key-value store on disk (`--storage disk`; `CONCORD_DISK_STORAGE=memory`
//! runs the in-memory store instead, the "before", which holds at most
//! 512 MiB).
//!
//! 1. The three nodes start and take one write; node 3 is SIGKILLed.
//!    Nodes 1 and 2 take `CONCORD_DISK_MB` MiB (default 1024) of 1 KiB
//!    values under distinct keys, `put_many`s of 64 pairs from 8 clients,
//!    snapshotting about every quarter of the load.
//! 2. Baseline: one client's 1 KiB puts for 10 s: p50, p99, max.
//! 3. Node 3 restarts, behind every log: it catches up by a streamed
//!    snapshot. Printed: the time until its applied index reaches the
//!    commit index it was started behind, the rate (the state's MiB over
//!    that time), node 3's resident memory at its start and at its peak,
//!    and the same one client's p99 during the catch-up.
//! 4. The loop's longest pause taking a snapshot: each server logs, per
//!    snapshot, what taking it cost the loop (`loop_us`: the sync and the
//!    view; with the in-memory store, serialising the whole state).
//! 5. Restart: every node SIGKILLed, every node started: the time until
//!    the cluster acknowledges a write again, and until every node
//!    answers its status with its applied index at the commit index.
//!
//! ```text
//! cargo bench -p concord-bench --features disk --bench disk_state
//! CONCORD_DISK_MB=10240 CONCORD_DISK_VALUES=compressible cargo bench -p concord-bench --features disk --bench disk_state
//! CONCORD_DISK_STORAGE=memory CONCORD_DISK_MB=448 cargo bench -p concord-bench --features disk --bench disk_state
//! ```
//!
//! The data directories go under `CONCORD_DISK_DIR` (default the system's
//! temporary directory) and are deleted at the end (kept, with the
//! servers' logs, if `CONCORD_DISK_KEEP` is set): each node holds the
//! state, its newest snapshot file and a log tail. With random values
//! that is some 2.2 times the state per node; `CONCORD_DISK_VALUES=
//! compressible` packs state and snapshot files some sevenfold (the log
//! is not packed).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use concord_services::KvClient;
use concord_tokio::client::ClientConfig;

#[path = "support/node_bin.rs"]
mod node_bin;

const CLUSTER: &str = "disk-state-bench";
const VALUE_BYTES: usize = 1024;
const PAIRS_PER_PUT: usize = 64;
const LOADERS: u64 = 8;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    listener.local_addr().expect("local addr").to_string()
}

/// The three node processes; killed, and their directory removed, on drop.
struct Nodes {
    base: PathBuf,
    addrs: BTreeMap<u64, String>,
    storage: String,
    snapshot_every: u64,
    children: BTreeMap<u64, Child>,
    starts: u32,
}

impl Nodes {
    fn start(&mut self, id: u64) {
        self.starts += 1;
        let peers = self
            .addrs
            .iter()
            .map(|(id, a)| format!("{id}={a}"))
            .collect::<Vec<_>>()
            .join(",");
        let log = self.base.join(format!("node-{id}-{}.log", self.starts));
        let child = Command::new(node_bin::node_binary())
            .args(["--id", &id.to_string(), "--listen", &self.addrs[&id]])
            .args(["--peers", &peers, "--cluster-id", CLUSTER])
            .args(["--storage", &self.storage])
            .args(["--snapshot-every-entries", &self.snapshot_every.to_string()])
            .args(["--compaction-trailing-entries", "100"])
            .arg("--data-dir")
            .arg(self.base.join(format!("node-{id}")))
            .env("RUST_LOG", "warn,concord_tokio::multi::host=info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(log).expect("log file")))
            .spawn()
            .expect("spawn concord-node");
        self.children.insert(id, child);
    }

    fn kill(&mut self, id: u64) {
        if let Some(mut child) = self.children.remove(&id) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn pid(&self, id: u64) -> u32 {
        self.children[&id].id()
    }

    fn client(&self) -> KvClient {
        KvClient::new(ClientConfig::new(
            self.addrs.values().cloned().collect(),
            CLUSTER,
        ))
    }

    fn logs(&self) -> Vec<PathBuf> {
        let mut logs: Vec<PathBuf> = std::fs::read_dir(&self.base)
            .map(|dir| dir.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        logs.retain(|p| p.extension().is_some_and(|e| e == "log"));
        logs.sort();
        logs
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for id in [1, 2, 3] {
            self.kill(id);
        }
        if std::env::var_os("CONCORD_DISK_KEEP").is_some() {
            println!("kept: {}", self.base.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.base);
        }
    }
}

fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn dir_bytes(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Key `i`'s value. By default bytes that do not compress (the engine
/// compresses its files; a value of one repeated byte would measure a
/// tenth of the disk). With `CONCORD_DISK_VALUES=compressible`, its first
/// 128 bytes do not compress and the rest repeat them: a value packs to
/// some 150 bytes, so that 10 GiB of state fits this disk three times.
fn value_of(i: u64, compressible: bool) -> Bytes {
    let mut state = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let random_bytes = if compressible { 128 } else { VALUE_BYTES };
    let mut value = Vec::with_capacity(VALUE_BYTES);
    while value.len() < random_bytes {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        value.extend_from_slice(&state.to_le_bytes());
    }
    while value.len() < VALUE_BYTES {
        value.extend_from_within(..random_bytes);
    }
    value.truncate(VALUE_BYTES);
    Bytes::from(value)
}

/// Bytes under `dir` in the files whose path contains `part`.
fn part_bytes(dir: &Path, part: &str) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => part_bytes(&e.path(), part),
            Ok(m) if e.path().to_string_lossy().contains(part) => m.len(),
            _ => 0,
        })
        .sum()
}

/// Node `id`'s directory, by part: state, snapshot files, log.
fn show_parts(base: &Path, id: u64) {
    let dir = base.join(format!("node-{id}"));
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!(
        "  node {id}: {:.0} MiB: state {:.0}, snapshot files {:.0}, log {:.0}",
        mib(dir_bytes(&dir)),
        mib(part_bytes(&dir, "kv-disk")),
        mib(part_bytes(&dir, ".snap")),
        mib(part_bytes(&dir.join("log"), ""))
    );
}

fn key(i: u64) -> String {
    format!("key-{i:012}")
}

/// Latencies of one client's 1 KiB puts to existing keys until `stop`.
async fn probe(
    nodes_client: KvClient,
    keys: u64,
    compressible: bool,
    stop: Arc<AtomicBool>,
) -> Vec<u64> {
    let mut client = nodes_client;
    let mut latencies = Vec::new();
    let mut i = 0u64;
    while !stop.load(Ordering::SeqCst) {
        i = i
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let started = Instant::now();
        if client
            .put(key(i % keys), value_of(i, compressible))
            .await
            .is_ok()
        {
            latencies.push(started.elapsed().as_micros() as u64);
        }
    }
    latencies.sort_unstable();
    latencies
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at] as f64 / 1000.0
}

fn show(name: &str, latencies: &[u64]) {
    println!(
        "{name}: {} puts, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latencies.len(),
        percentile(latencies, 0.5),
        percentile(latencies, 0.99),
        latencies.last().copied().unwrap_or(0) as f64 / 1000.0
    );
}

/// The highest commit index the servers report (a busy server may not
/// answer at once: asked again until one does).
async fn commit_index(client: &mut KvClient) -> u64 {
    let started = Instant::now();
    loop {
        let mut highest = None;
        for server in 0..3 {
            if let Ok(status) = client.status(server).await {
                highest = highest.max(Some(status.commit_index));
            }
        }
        if let Some(index) = highest.filter(|index| *index > 0) {
            return index;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no server reports its commit index"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_for_write(client: &mut KvClient, within: Duration) -> Duration {
    let started = Instant::now();
    while client.put("ready-probe", "x").await.is_err() {
        assert!(started.elapsed() < within, "no write acknowledged");
    }
    started.elapsed()
}

fn main() {
    let storage = std::env::var("CONCORD_DISK_STORAGE").unwrap_or_else(|_| "disk".to_string());
    let mib = env_u64("CONCORD_DISK_MB", 1024);
    let compressible = match std::env::var("CONCORD_DISK_VALUES").as_deref() {
        Ok("compressible") => true,
        Ok("random") | Err(_) => false,
        Ok(other) => panic!("CONCORD_DISK_VALUES={other}: say random or compressible"),
    };
    let keys = mib * 1024 * 1024 / VALUE_BYTES as u64;
    let puts = keys.div_ceil(PAIRS_PER_PUT as u64);
    let base = std::env::var_os("CONCORD_DISK_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("concord-disk-state-{}", std::process::id()));
    std::fs::create_dir_all(&base).expect("create the bench directory");
    let mut nodes = Nodes {
        base,
        addrs: (1..=3).map(|id| (id, free_addr())).collect(),
        storage: storage.clone(),
        snapshot_every: (puts / 4).max(100),
        children: BTreeMap::new(),
        starts: 0,
    };
    println!(
        "disk_state: --storage {storage}, {mib} MiB of {VALUE_BYTES}-byte {} values ({keys} keys, {puts} put_many of {PAIRS_PER_PUT}), a snapshot every {} entries, fsync on",
        if compressible { "compressible" } else { "random" },
        nodes.snapshot_every
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    // A new cluster elects once every voter has started (a server with
    // empty storage does not vote before): node 3 leaves after the first
    // write.
    for id in [1, 2, 3] {
        nodes.start(id);
    }
    runtime.block_on(async {
        let mut client = nodes.client();
        wait_for_write(&mut client, Duration::from_secs(30)).await;
        nodes.kill(3);

        // 1. The load.
        let started = Instant::now();
        let done = Arc::new(AtomicU64::new(0));
        let tasks: Vec<_> = (0..LOADERS)
            .map(|t| {
                let mut client = nodes.client();
                let done = done.clone();
                tokio::spawn(async move {
                    let mut put = t;
                    while put < puts {
                        let first = put * PAIRS_PER_PUT as u64;
                        let pairs: Vec<(String, Bytes)> = (first
                            ..(first + PAIRS_PER_PUT as u64).min(keys))
                            .map(|i| (key(i), value_of(i, compressible)))
                            .collect();
                        while client.put_many(pairs.clone()).await.is_err() {}
                        let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                        if n % (puts / 10).max(1) == 0 {
                            println!(
                                "  loaded {:>3}% ({:.0} MiB/s)",
                                n * 100 / puts,
                                (n * (PAIRS_PER_PUT * VALUE_BYTES) as u64) as f64
                                    / (1 << 20) as f64
                                    / started.elapsed().as_secs_f64()
                            );
                        }
                        put += LOADERS;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("loader");
        }
        let load = started.elapsed();
        println!(
            "loaded {mib} MiB in {:.1} s ({:.1} MiB/s)",
            load.as_secs_f64(),
            mib as f64 / load.as_secs_f64(),
        );
        show_parts(&nodes.base, 1);

        // 2. Baseline latency.
        let stop = Arc::new(AtomicBool::new(false));
        let probing = tokio::spawn(probe(nodes.client(), keys, compressible, stop.clone()));
        tokio::time::sleep(Duration::from_secs(10)).await;
        stop.store(true, Ordering::SeqCst);
        let baseline = probing.await.expect("probe");
        show("one client, node 3 down (baseline)", &baseline);

        // 3. Catch-up.
        let target = commit_index(&mut client).await;
        let stop = Arc::new(AtomicBool::new(false));
        let probing = tokio::spawn(probe(nodes.client(), keys, compressible, stop.clone()));
        let started = Instant::now();
        nodes.start(3);
        let pid = nodes.pid(3);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let rss_start = rss_mib(pid).unwrap_or(f64::NAN);
        let mut rss_peak = rss_start;
        let mut caught_up = None;
        while started.elapsed() < Duration::from_secs(3600) {
            if let Some(rss) = rss_mib(pid) {
                rss_peak = rss_peak.max(rss);
            }
            if let Ok(status) = client.status(2).await {
                if status.applied_index >= target {
                    caught_up = Some(started.elapsed());
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop.store(true, Ordering::SeqCst);
        let during = probing.await.expect("probe");
        match caught_up {
            Some(took) => println!(
                "node 3 caught up to index {target} in {:.1} s: {:.1} MiB/s of state; resident memory {rss_start:.0} MiB at start, {rss_peak:.0} MiB at peak (+{:.0} MiB)",
                took.as_secs_f64(),
                mib as f64 / took.as_secs_f64(),
                rss_peak - rss_start
            ),
            None => println!("node 3 did not catch up within an hour"),
        }
        show("one client, node 3 catching up", &during);
        show_parts(&nodes.base, 3);
        println!(
            "p99 during catch-up / baseline: {:.2}",
            percentile(&during, 0.99) / percentile(&baseline, 0.99)
        );
    });

    // 4. The loop's pauses taking snapshots, from the servers' logs.
    let mut pauses = Vec::new();
    for log in nodes.logs() {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        for line in text.lines().filter(|l| l.contains("snapshot view taken")) {
            if let Some(us) = line
                .split("loop_us=")
                .nth(1)
                .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|n| n.parse::<u64>().ok())
            {
                pauses.push(us);
            }
        }
    }
    pauses.sort_unstable();
    println!(
        "snapshots taken: {}; the loop's pause taking one: median {:.2} ms, longest {:.2} ms",
        pauses.len(),
        pauses.get(pauses.len() / 2).copied().unwrap_or(0) as f64 / 1000.0,
        pauses.last().copied().unwrap_or(0) as f64 / 1000.0
    );

    // 5. Restart.
    for id in [1, 2, 3] {
        nodes.kill(id);
    }
    let started = Instant::now();
    for id in [1, 2, 3] {
        nodes.start(id);
    }
    runtime.block_on(async {
        let mut client = nodes.client();
        let write = wait_for_write(&mut client, Duration::from_secs(600)).await;
        println!(
            "restart (every node SIGKILLed, then started): a write acknowledged after {:.2} s",
            write.as_secs_f64()
        );
        let commit = commit_index(&mut client).await;
        let mut applied_after = Vec::new();
        for server in 0..3 {
            loop {
                match client.status(server).await {
                    Ok(status) if status.applied_index >= commit => break,
                    _ => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
            applied_after.push(format!("{:.2}", started.elapsed().as_secs_f64()));
        }
        println!(
            "every node applied to the commit index after {:.2} s (nodes 1, 2, 3 in turn: {} s)",
            started.elapsed().as_secs_f64(),
            applied_after.join(", ")
        );
    });
    let on_disk: u64 = (1..=3)
        .map(|id| dir_bytes(&nodes.base.join(format!("node-{id}"))))
        .sum();
    println!(
        "the three data directories hold {:.0} MiB",
        on_disk as f64 / (1 << 20) as f64
    );
    for id in [1, 2, 3] {
        show_parts(&nodes.base, id);
    }
}
