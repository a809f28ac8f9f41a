//! Benchmark 10(b): three servers in one process over the in-memory
//! transport with in-memory storage (the same server code as the TCP
//! nodes), 1, 64 and 256 concurrent clients writing 128-byte commands to an
//! empty state machine. Prints operations per second.
//!
//! ```text
//! cargo bench --features tokio --bench tokio_inprocess
//! CONCORD_BENCH_SECS=5 CONCORD_BENCH_CLIENTS=1,64,256 cargo bench --features tokio --bench tokio_inprocess
//! ```

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use concord::tokio::kv::NullStateMachine;
use concord::tokio::server::{self, ServerConfig, ServerHandle};
use concord::tokio::storage::{MemDisk, MemStorage};
use concord::tokio::transport::MemNetwork;
use concord::tokio::wire::ClientResponse;
use concord::Config;

fn env_list(name: &str, default: &[usize]) -> Vec<usize> {
    std::env::var(name)
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| default.to_vec())
}

async fn start_cluster() -> (Vec<Arc<ServerHandle>>, usize) {
    let network = MemNetwork::new();
    let mut handles = Vec::new();
    for id in 1..=3u64 {
        let inbox = server::inbox();
        network.register(id, inbox.0.clone());
        let mut raft = Config::new(id, [1, 2, 3]);
        raft.seed = id;
        raft.uncommitted_entries_max = 1 << 20;
        let mut config = ServerConfig::new(raft);
        config.tick = Duration::from_millis(10);
        let handle = server::start(
            config,
            NullStateMachine,
            MemStorage::new(MemDisk::new()),
            network.transport(id),
            inbox,
        )
        .expect("server starts");
        handles.push(Arc::new(handle));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for (i, handle) in handles.iter().enumerate() {
            if let Some(status) = handle.status().await {
                if status.role == "Leader" {
                    return (handles, i);
                }
            }
        }
        assert!(Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn main() {
    let seconds: u64 = std::env::var("CONCORD_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let clients_list = env_list("CONCORD_BENCH_CLIENTS", &[1, 64, 256]);
    // Default: everything on one thread (no cross-thread wake-ups; fastest
    // on this 2-core machine). CONCORD_BENCH_THREADS=N: N worker threads.
    let threads: usize = std::env::var("CONCORD_BENCH_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let runtime = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
            .unwrap()
    };
    println!(
        "in-process 3-node cluster, in-memory transport and storage, 128-byte commands, empty state machine, {seconds}s per run, {threads} runtime thread(s)"
    );
    for clients in clients_list {
        runtime.block_on(async {
            let (handles, leader) = start_cluster().await;
            let stop = Arc::new(AtomicBool::new(false));
            let done = Arc::new(AtomicU64::new(0));
            let failed = Arc::new(AtomicU64::new(0));
            let mut tasks = Vec::new();
            for _ in 0..clients {
                let handle = handles[leader].clone();
                let (stop, done, failed) = (stop.clone(), done.clone(), failed.clone());
                tasks.push(tokio::spawn(async move {
                    let command = Bytes::from(vec![7u8; 128]);
                    while !stop.load(Ordering::Relaxed) {
                        match handle.call(command.clone()).await {
                            ClientResponse::Done(_) => done.fetch_add(1, Ordering::Relaxed),
                            _ => failed.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                }));
            }
            // Warm up 1 s, then measure.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let start_count = done.load(Ordering::Relaxed);
            let start = Instant::now();
            tokio::time::sleep(Duration::from_secs(seconds)).await;
            let count = done.load(Ordering::Relaxed) - start_count;
            let elapsed = start.elapsed().as_secs_f64();
            stop.store(true, Ordering::Relaxed);
            for task in tasks {
                let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
            }
            println!(
                "clients {clients:>4}: {:>10.0} ops/s  ({count} ops in {elapsed:.1}s, {} not done)",
                count as f64 / elapsed,
                failed.load(Ordering::Relaxed)
            );
            for handle in handles {
                if let Ok(handle) = Arc::try_unwrap(handle) {
                    let _ = handle.shutdown().await;
                }
            }
        });
    }
}
