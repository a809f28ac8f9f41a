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
//! `CONCORD_BENCH_TLS=on` runs the nodes and clients with mutual TLS 1.3
//! (certificates made at start with rcgen, as `examples/make_certs.rs`
//! does); `both` compares TLS off and on the same way: rounds of an off
//! and an on run per client count, alternating which goes first, and the
//! median on/off throughput ratio (the goal: TLS should cost less than
//! 15 % at 64 clients). The machine may be shared: the interleaving and the
//! rounds are there so that load from elsewhere hits both sides alike.
//!
//! ```text
//! cargo bench -p concord-bench --bench tokio_cluster            # 20 s per run
//! CONCORD_BENCH_SECS=5 CONCORD_BENCH_CLIENTS=1,16,64 cargo bench -p concord-bench --bench tokio_cluster
//! CONCORD_BENCH_COMPACTION=both CONCORD_BENCH_SECS=10 cargo bench -p concord-bench --bench tokio_cluster
//! CONCORD_BENCH_TLS=both CONCORD_BENCH_CLIENTS=64 CONCORD_BENCH_ROUNDS=4 CONCORD_BENCH_SECS=10 cargo bench -p concord-bench --bench tokio_cluster
//! ```

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use concord_services::KvClient;
use concord_tokio::client::ClientConfig;
use concord_tokio::tls::{TlsConfig, TlsPaths, TlsRole};

#[path = "support/node_cluster.rs"]
mod node_cluster;

#[path = "../../tests/common/certs.rs"]
mod certs;

use node_cluster::{env_list, key, percentile, NodeCluster, CLUSTER, KEYS};

/// What one run's cluster looks like.
/// Turns one setting of a [`Setup`] on or off.
type Flip = fn(Setup, bool) -> Setup;

#[derive(Clone, Copy)]
struct Setup {
    compaction: bool,
    tls: bool,
}

/// The certificates of the benchmark's clusters (one CA for every run),
/// removed on drop.
struct Certs {
    dir: PathBuf,
    client: Arc<TlsConfig>,
}

impl Certs {
    fn make() -> Certs {
        let dir = node_cluster::temp_base("concord-certs");
        certs::write_cluster(&dir, CLUSTER, 3, 2).expect("make the benchmark's certificates");
        let paths = TlsPaths {
            ca: dir.join("ca.pem"),
            cert: dir.join("client.pem"),
            key: dir.join("client.key"),
        };
        let client = TlsConfig::load(&paths, CLUSTER, TlsRole::Client).expect("load client TLS");
        Certs {
            dir,
            client: Arc::new(client),
        }
    }

    fn node_args(dir: &Path, id: u64) -> Vec<String> {
        let path = |name: String| dir.join(name).display().to_string();
        vec![
            "--tls-ca".to_string(),
            path("ca.pem".to_string()),
            "--tls-cert".to_string(),
            path(format!("node-{id}.pem")),
            "--tls-key".to_string(),
            path(format!("node-{id}.key")),
        ]
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_cluster(setup: Setup, certs: &Certs) -> NodeCluster {
    NodeCluster::start_per_node(3, |id| {
        let mut args = Vec::new();
        if !setup.compaction {
            args.extend(["--snapshot-every-entries".to_string(), "0".to_string()]);
        }
        if setup.tls {
            args.extend(Certs::node_args(&certs.dir, id));
        }
        args
    })
}

/// One run of `clients` clients for `seconds` against a fresh cluster;
/// returns puts per second.
fn run(
    runtime: &tokio::runtime::Runtime,
    clients: usize,
    seconds: u64,
    setup: Setup,
    certs: &Certs,
) -> f64 {
    let cluster = start_cluster(setup, certs);
    let servers = cluster.servers.clone();
    let tls = setup.tls.then(|| certs.client.clone());
    let client_config = move |servers: Vec<String>| {
        let mut config = ClientConfig::new(servers, CLUSTER);
        config.tls = tls.clone();
        config
    };
    let rate = runtime.block_on(async move {
        // Wait for a leader: one put through a client.
        let mut probe = KvClient::new(client_config(servers.clone()));
        let deadline = Instant::now() + Duration::from_secs(20);
        while probe.put("warmup", "x").await.is_err() {
            assert!(Instant::now() < deadline, "cluster did not come up");
        }
        let stop = Arc::new(AtomicBool::new(false));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..clients as u64 {
            let (config, stop) = (client_config(servers.clone()), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut client = KvClient::new(config);
                let value = Bytes::from(vec![b'v'; 128]);
                let mut latencies_us = Vec::new();
                let mut errors = 0u64;
                let mut i = c.wrapping_mul(7919);
                // Bounded by the stop flag (time) and a count.
                while !stop.load(Ordering::Relaxed) && latencies_us.len() < 50_000_000 {
                    i = i.wrapping_add(1);
                    let k = key(i);
                    let t = Instant::now();
                    match client.put(k, value.clone()).await {
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
            "clients {clients:>3} compaction {:<3} tls {:<3}: {:>8.0} puts/s  p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  ({} puts, {errors} errors)",
            if setup.compaction { "on" } else { "off" },
            if setup.tls { "on" } else { "off" },
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
    let compaction = std::env::var("CONCORD_BENCH_COMPACTION").unwrap_or_default();
    let tls = std::env::var("CONCORD_BENCH_TLS").unwrap_or_default();
    let certs = Certs::make();
    let base = Setup {
        compaction: compaction != "off",
        tls: tls == "on",
    };
    // The axis compared side by side, if any: which setting a run flips.
    let axis: Option<(&str, Flip)> = if compaction == "both" {
        Some(("compaction", |setup, on| Setup {
            compaction: on,
            ..setup
        }))
    } else if tls == "both" {
        Some(("tls", |setup, on| Setup { tls: on, ..setup }))
    } else {
        None
    };
    let Some((name, flip)) = axis else {
        for clients in clients_list {
            run(&runtime, clients, seconds, base, &certs);
        }
        return;
    };
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
            for on in order {
                rates[usize::from(on)] = run(&runtime, clients, seconds, flip(base, on), &certs);
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
            "clients {clients:>3}: {name} on/off ratio per round [{}], median {median:.3}",
            shown.join(", ")
        );
    }
}
