//! Benchmark 10(a): a 3-node cluster of `concord-node` processes on
//! loopback with fsync on; 1, 16 and 64 concurrent clients (one connection
//! and one request in flight each) doing 128-byte puts over 10,000 keys.
//! Prints throughput and p50/p99/max latency per client count.
//!
//! The nodes run `concord-node`'s default compaction (a snapshot every
//! 100 000 entries). `CONCORD_BENCH_COMPACTION=off` passes
//! `--snapshot-every-entries 0`; `both` runs `CONCORD_BENCH_ROUNDS` rounds
//! (default 3) of an off and an on run per client count, alternating which
//! goes first, and prints the median on/off throughput ratio.
//!
//! ```text
//! cargo bench -p concord-node --bench tokio_cluster            # 20 s per run
//! CONCORD_BENCH_SECS=5 CONCORD_BENCH_CLIENTS=1,16,64 cargo bench -p concord-node --bench tokio_cluster
//! CONCORD_BENCH_COMPACTION=both CONCORD_BENCH_SECS=10 cargo bench -p concord-node --bench tokio_cluster
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use concord::tokio::client::{Client, ClientConfig};

#[path = "support/node_cluster.rs"]
mod node_cluster;

use node_cluster::{env_list, percentile, NodeCluster, CLUSTER};

const KEYS: u64 = 10_000;

fn start_cluster(compaction: bool) -> NodeCluster {
    let extra: &[&str] = if compaction {
        &[]
    } else {
        &["--snapshot-every-entries", "0"]
    };
    NodeCluster::start(3, extra)
}

/// One run of `clients` clients for `seconds` against a fresh cluster;
/// returns puts per second.
fn run(runtime: &tokio::runtime::Runtime, clients: usize, seconds: u64, compaction: bool) -> f64 {
    let cluster = start_cluster(compaction);
    let servers = cluster.servers.clone();
    let rate = runtime.block_on(async move {
        // Wait for a leader: one put through a client.
        let mut probe = Client::new(ClientConfig::new(servers.clone(), CLUSTER));
        let deadline = Instant::now() + Duration::from_secs(20);
        while probe.put("warmup", "x").await.is_err() {
            assert!(Instant::now() < deadline, "cluster did not come up");
        }
        let stop = Arc::new(AtomicBool::new(false));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..clients as u64 {
            let (servers, stop) = (servers.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut client = Client::new(ClientConfig::new(servers, CLUSTER));
                let value = Bytes::from(vec![b'v'; 128]);
                let mut latencies_us = Vec::new();
                let mut errors = 0u64;
                let mut i = c.wrapping_mul(7919);
                // Bounded by the stop flag (time) and a count.
                while !stop.load(Ordering::Relaxed) && latencies_us.len() < 50_000_000 {
                    i = i.wrapping_add(1);
                    let key = format!("key-{}", i % KEYS);
                    let t = Instant::now();
                    match client.put(key, value.clone()).await {
                        Ok(()) => latencies_us.push(t.elapsed().as_micros() as u64),
                        Err(_) => errors += 1,
                    }
                }
                (latencies_us, errors)
            }));
        }
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        let mut errors = 0;
        for task in tasks {
            if let Ok(Ok((lat, e))) = tokio::time::timeout(Duration::from_secs(30), task).await {
                all.extend(lat);
                errors += e;
            }
        }
        let elapsed = start.elapsed().as_secs_f64();
        all.sort_unstable();
        let rate = all.len() as f64 / elapsed;
        println!(
            "clients {clients:>3} compaction {:<3}: {:>8.0} puts/s  p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  ({} puts, {errors} errors)",
            if compaction { "on" } else { "off" },
            rate,
            percentile(&all, 50.0) as f64 / 1000.0,
            percentile(&all, 99.0) as f64 / 1000.0,
            all.last().copied().unwrap_or(0) as f64 / 1000.0,
            all.len()
        );
        rate
    });
    drop(cluster);
    rate
}

fn main() {
    let seconds: u64 = std::env::var("CONCORD_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let clients_list = env_list("CONCORD_BENCH_CLIENTS", &[1, 16, 64]);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("3 concord-node processes on loopback, fsync on, 128-byte puts over {KEYS} keys, {seconds}s per run");
    let policy = std::env::var("CONCORD_BENCH_COMPACTION").unwrap_or_default();
    if policy != "both" {
        for clients in clients_list {
            run(&runtime, clients, seconds, policy != "off");
        }
        return;
    }
    let rounds: u64 = std::env::var("CONCORD_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
        .max(1);
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); clients_list.len()];
    for round in 0..rounds {
        println!("round {}/{rounds}", round + 1);
        for (i, &clients) in clients_list.iter().enumerate() {
            // Alternate which goes first, so drift favours neither.
            let order = if round % 2 == 0 {
                [false, true]
            } else {
                [true, false]
            };
            let mut rates = [0.0; 2];
            for compaction in order {
                rates[usize::from(compaction)] = run(&runtime, clients, seconds, compaction);
            }
            ratios[i].push(rates[1] / rates[0]);
        }
    }
    for (i, clients) in clients_list.iter().enumerate() {
        let mut cells = ratios[i].clone();
        let shown: Vec<String> = cells.iter().map(|r| format!("{r:.3}")).collect();
        cells.sort_by(|a, b| a.total_cmp(b));
        let n = cells.len();
        let median = if n % 2 == 1 {
            cells[n / 2]
        } else {
            (cells[n / 2 - 1] + cells[n / 2]) / 2.0
        };
        println!(
            "clients {clients:>3}: compaction on/off ratio per round [{}], median {median:.3}",
            shown.join(", ")
        );
    }
}
