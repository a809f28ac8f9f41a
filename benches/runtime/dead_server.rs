//! What one dead or stopped server of three costs
//! follower reads, with concord's client as shipped.
//!
//! Three `concord-node` processes on loopback (fsync on), 1,000 keys of
//! 128-byte values. Closed-loop clients (one read in flight each, every
//! client given all three servers, `ReadPath::Follower`: each read goes to
//! the next server in turn) read random keys for a while in three phases:
//! every server up; one follower SIGSTOPped (it accepts connections in the
//! kernel and never answers); the same follower SIGCONTed and then
//! SIGKILLed (connections refused). Each phase starts fresh clients, so
//! each pays for discovering the failure. Per phase: reads per second,
//! p50/p99 read latency, errors, and the throughput relative to the
//! first phase.
//!
//! ```text
//! cargo bench -p concord-bench --bench dead_server
//! CONCORD_BENCH_SECS=20 CONCORD_BENCH_CLIENTS=1,8 cargo bench -p concord-bench --bench dead_server
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use concord::ReadPath;
use concord_services::KvClient;
use concord_tokio::client::ClientConfig;

#[path = "support/node_cluster.rs"]
mod node_cluster;

use node_cluster::{env_list, env_u64, key, percentile, NodeCluster, Rng, CLUSTER};

/// Keys preloaded and read.
const KEYS: u64 = 1_000;
/// Bytes per value.
const VALUE_BYTES: usize = 128;

fn config(servers: Vec<String>) -> ClientConfig {
    ClientConfig::new(servers, CLUSTER)
}

/// Latencies of one client's reads, in microseconds, and its errors.
#[derive(Default)]
struct Samples {
    read_us: Vec<u64>,
    errors: u64,
}

async fn reader(servers: Vec<String>, seed: u64, stop: Arc<AtomicBool>) -> Samples {
    let mut client = KvClient::new(config(servers));
    let mut rng = Rng::for_client(seed);
    let mut samples = Samples::default();
    while !stop.load(Ordering::Relaxed) {
        let k = key(rng.next() % KEYS);
        let started = Instant::now();
        match client.get_via(k, Some(ReadPath::Follower)).await {
            Ok(Some(_)) => samples.read_us.push(started.elapsed().as_micros() as u64),
            Ok(None) | Err(_) => samples.errors += 1,
        }
    }
    samples
}

/// Runs `clients` readers for `seconds`: reads per second, p50 and p99 in
/// microseconds, errors.
async fn phase(servers: &[String], clients: usize, seconds: u64) -> (f64, u64, u64, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| tokio::spawn(reader(servers.to_vec(), c as u64 + 1, stop.clone())))
        .collect();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Samples::default();
    for task in tasks {
        let samples = task.await.expect("reader");
        all.read_us.extend(samples.read_us);
        all.errors += samples.errors;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.read_us.sort_unstable();
    (
        all.read_us.len() as f64 / elapsed,
        percentile(&all.read_us, 50.0),
        percentile(&all.read_us, 99.0),
        all.errors,
    )
}

async fn preload(servers: &[String]) {
    let mut client = KvClient::new(config(servers.to_vec()));
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.put("warmup", "x").await.is_err() {
        assert!(Instant::now() < deadline, "the cluster did not come up");
    }
    let value = Bytes::from(vec![b'v'; VALUE_BYTES]);
    for i in 0..KEYS {
        client.put(key(i), value.clone()).await.expect("preload");
    }
}

async fn leader(servers: &[String]) -> usize {
    let mut client = KvClient::new(config(servers.to_vec()));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for i in 0..servers.len() {
            if let Ok(status) = client.status(i).await {
                if status.role == "Leader" {
                    return i;
                }
            }
        }
        assert!(Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn signal(pid: u32, signal: i32) {
    // SAFETY: kill(2) on a child process this bench started and has not
    // reaped.
    let rc = unsafe { libc::kill(pid as libc::pid_t, signal) };
    assert_eq!(rc, 0, "kill({pid}, {signal})");
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs it
    // without, as a smoke run.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let seconds = env_u64("CONCORD_BENCH_SECS", if smoke { 1 } else { 10 });
    let clients_list = env_list("CONCORD_BENCH_CLIENTS", &[1, 8]);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "follower reads on 3 concord-node processes, {seconds} s per phase, fresh clients per phase"
    );
    println!(
        "{:<26} {:>7} {:>10} {:>9} {:>9} {:>7} {:>8}",
        "phase", "clients", "reads/s", "p50 us", "p99 us", "errors", "vs up"
    );
    for clients in clients_list {
        let mut cluster = NodeCluster::start(3, &[]);
        let servers = cluster.servers.clone();
        runtime.block_on(preload(&servers));
        let leader = runtime.block_on(leader(&servers));
        let follower = (leader + 1) % servers.len();
        let pid = cluster.processes.children[follower].id();
        let mut baseline = None;
        for name in [
            "all up",
            "one follower SIGSTOPped",
            "one follower SIGKILLed",
        ] {
            match name {
                "one follower SIGSTOPped" => signal(pid, libc::SIGSTOP),
                "one follower SIGKILLed" => {
                    signal(pid, libc::SIGCONT);
                    let child = &mut cluster.processes.children[follower];
                    child.kill().expect("SIGKILL");
                    child.wait().expect("reap");
                }
                _ => {}
            }
            let (rate, p50, p99, errors) = runtime.block_on(phase(&servers, clients, seconds));
            let base = *baseline.get_or_insert(rate);
            println!(
                "{name:<26} {clients:>7} {rate:>10.0} {p50:>9} {p99:>9} {errors:>7} {:>7.2}x",
                base / rate.max(1e-9)
            );
        }
    }
}
