//! Shared by the process benchmarks (`tokio_cluster`, `reads`): starting a
//! cluster of real `concord-node` processes on loopback, plus small helpers
//! for reading the benchmark's environment and its latencies. Included by
//! `#[path]`, so each bench uses only part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

#[path = "../../src/env.rs"]
mod env;
// Each bench that includes this file uses part of it.
#[allow(unused_imports)]
pub use env::{env_list, env_u64};

#[path = "node_bin.rs"]
mod node_bin;
pub use node_bin::node_binary;

/// The cluster id every benchmark cluster is started with.
pub const CLUSTER: &str = "bench";

/// Keys the process benchmarks preload and write (`reads`, `vs_etcd`).
pub const KEYS: u64 = 10_000;

/// The name of key number `i` (modulo [`KEYS`]).
pub fn key(i: u64) -> String {
    format!("key-{}", i % KEYS)
}

/// A small xorshift generator: a client's keys and read/write choices.
pub struct Rng(u64);

impl Rng {
    /// The generator of client `seed` (any number; 0 is made nonzero).
    pub fn for_client(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next number.
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// The `p`th percentile (0..=100) of an ascending slice; 0 when empty.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// `count` distinct free loopback addresses (bound, then released).
pub fn free_loopback_addrs(count: usize) -> Vec<String> {
    let listeners: Vec<_> = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local addr").to_string())
        .collect()
}

/// A fresh, unique temporary directory path for one cluster's data.
pub fn temp_base(system: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("{system}-bench-{}-{n}", std::process::id()))
}

/// Child processes killed, and their data directory removed, on drop.
pub struct Processes {
    /// The running server processes.
    pub children: Vec<Child>,
    /// Their data directories' parent.
    pub base: PathBuf,
}

impl Processes {
    /// The process ids of the servers.
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

/// `nodes` `concord-node` processes with fsync on, ids 1..=nodes.
pub struct NodeCluster {
    /// The processes; killed on drop.
    pub processes: Processes,
    /// Client addresses, in id order.
    pub servers: Vec<String>,
}

impl NodeCluster {
    /// Starts the nodes, each with `extra_args` after the common ones.
    pub fn start(nodes: usize, extra_args: &[&str]) -> NodeCluster {
        NodeCluster::start_per_node(nodes, |_| {
            extra_args.iter().map(|arg| arg.to_string()).collect()
        })
    }

    /// Starts the nodes, node `id` with `args_of(id)` after the common
    /// ones (per-node flags such as a node's TLS certificate).
    pub fn start_per_node(nodes: usize, args_of: impl Fn(u64) -> Vec<String>) -> NodeCluster {
        NodeCluster::start_logged(nodes, args_of, false)
    }

    /// As [`start_per_node`](Self::start_per_node); with `stderr_to_files`
    /// each node's stderr goes to `<base>/node-<id>.stderr` (see
    /// [`stderr_file`](Self::stderr_file)) instead of this process's.
    pub fn start_logged(
        nodes: usize,
        args_of: impl Fn(u64) -> Vec<String>,
        stderr_to_files: bool,
    ) -> NodeCluster {
        let addrs: BTreeMap<u64, String> =
            (1..=nodes as u64).zip(free_loopback_addrs(nodes)).collect();
        let peers = addrs
            .iter()
            .map(|(id, a)| format!("{id}={a}"))
            .collect::<Vec<_>>()
            .join(",");
        let base = temp_base("concord");
        if stderr_to_files {
            std::fs::create_dir_all(&base).expect("create the cluster's directory");
        }
        let mut children = Vec::new();
        for (id, addr) in &addrs {
            let stderr = if stderr_to_files {
                Stdio::from(
                    std::fs::File::create(base.join(format!("node-{id}.stderr")))
                        .expect("create a node's stderr file"),
                )
            } else {
                Stdio::inherit()
            };
            let child = Command::new(node_binary())
                .args([
                    "--id",
                    &id.to_string(),
                    "--listen",
                    addr,
                    "--peers",
                    &peers,
                    "--cluster-id",
                    CLUSTER,
                ])
                .arg("--data-dir")
                .arg(base.join(format!("node-{id}")))
                .args(args_of(*id))
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .expect("spawn concord-node");
            children.push(child);
        }
        NodeCluster {
            processes: Processes { children, base },
            servers: addrs.values().cloned().collect(),
        }
    }

    /// Where node `id` (1-based) writes its stderr when started with
    /// [`start_logged`](Self::start_logged) and `stderr_to_files`.
    pub fn stderr_file(&self, id: u64) -> PathBuf {
        self.processes.base.join(format!("node-{id}.stderr"))
    }
}

/// Waits up to 30 s for the cluster at `servers` to take a write, then
/// puts every key of [`KEYS`] with `value`, 32 clients at a time, so
/// that a timed run starts from the same 10,000 keys every time.
pub async fn preload_keys(servers: &[String], value: bytes::Bytes) {
    use concord_services::KvClient;
    use concord_tokio::client::ClientConfig;
    use std::time::{Duration, Instant};

    let mut probe = KvClient::new(ClientConfig::new(servers.to_vec(), CLUSTER));
    let deadline = Instant::now() + Duration::from_secs(30);
    while probe.put("warmup", "x").await.is_err() {
        assert!(Instant::now() < deadline, "the cluster did not come up");
    }
    let tasks: Vec<_> = (0..32u64)
        .map(|t| {
            let servers = servers.to_vec();
            let value = value.clone();
            tokio::spawn(async move {
                let mut client = KvClient::new(ClientConfig::new(servers, CLUSTER));
                for i in (t..KEYS).step_by(32) {
                    client
                        .put(key(i), value.clone())
                        .await
                        .expect("preload put");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("preload task");
    }
}
