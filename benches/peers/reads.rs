//! Linearizable reads without log entries, against etcd
//! 3.4's linearizable gets, side by side in one run.
//!
//! concord: `concord-node` processes on loopback with fsync on, preloaded
//! with 10,000 keys of 128-byte values. Read paths: ReadIndex and follower
//! reads on a 3-node cluster without leases, lease reads on a 3-node
//! cluster started with `--lease-ticks 8 --clock-drift-bound-ticks 4`, and
//! follower reads on a 5-node cluster. etcd: 3 members of the `etcd`
//! binary on loopback (default fsync), same preload, linearizable range
//! requests (`serializable: false`, the default) and puts over gRPC, its
//! native and fastest API (the one `etcdctl` and the Go client use; the
//! HTTP/JSON gateway adds a translation hop), one HTTP/2 connection per
//! client; etcd clients are spread round-robin over the members (any
//! member serves a linearizable read; it forwards ReadIndex to its
//! leader).
//!
//! Every client is closed-loop with one request in flight. ReadIndex and
//! lease clients talk to the leader over one connection. Follower clients
//! in the read-only workload are pinned to one server each (round-robin
//! over the servers, one connection); in the mixed workload they use
//! concord's client as shipped, which sends each read to the next server
//! in turn and writes to the leader (so one connection per server, still
//! one request in flight).
//!
//! Workloads: read-only, and 90 % reads / 10 % writes (128-byte puts over
//! the same keys). Per cell: throughput (all operations), read p50/p99,
//! and the servers' CPU time (user + sys from `/proc/<pid>/stat`, summed
//! over the server processes) per operation — robust to other load on the
//! machine, unlike throughput — and the load generator's own CPU per
//! operation (it shares the machine with the servers).
//!
//! etcd cells are skipped, with the reason printed, when no `etcd` binary
//! is found (`benches/peers/etcd/setup.sh` installs Debian's `etcd-server`);
//! `CONCORD_BENCH_ETCD=/path/to/etcd` picks another binary.
//!
//! ```text
//! benches/peers/etcd/setup.sh
//! CONCORD_BENCH_SECS=3 cargo bench -p concord-bench --bench reads
//! CONCORD_BENCH_SECS=10 CONCORD_BENCH_CLIENTS=1,16,64,256 cargo bench -p concord-bench --bench reads
//! ```
//!
//! `CONCORD_BENCH_SYSTEMS` (comma-separated, default all) picks among
//! `etcd`, `index`, `lease`, `follower3`, `follower5`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use concord::ReadPath;
use concord_services::KvClient;
use concord_tokio::client::ClientConfig;

#[path = "../runtime/support/node_cluster.rs"]
mod node_cluster;

#[path = "support/etcd.rs"]
mod etcd;

use etcd::{cpu_us, etcd_binary, etcd_preload, etcd_version, etcd_wait_ready, start_etcd, Etcd};

use node_cluster::{env_list, env_u64, key, percentile, NodeCluster, Rng, CLUSTER, KEYS};

/// Bytes per value.
const VALUE_BYTES: usize = 128;
/// Concurrent clients used for preloading.
const PRELOAD_CLIENTS: u64 = 32;
/// A cap on the samples one client keeps (bounds memory).
const SAMPLES_PER_CLIENT_MAX: usize = 20_000_000;
/// The lease arguments of the lease cluster (elections 15..30 ticks).
const LEASE_ARGS: [&str; 4] = ["--lease-ticks", "8", "--clock-drift-bound-ticks", "4"];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Workload {
    ReadOnly,
    /// 90 % reads, 10 % writes.
    Mixed,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::ReadOnly => "read-only",
            Workload::Mixed => "90r/10w",
        }
    }

    fn write_percent(self) -> u64 {
        match self {
            Workload::ReadOnly => 0,
            Workload::Mixed => 10,
        }
    }
}

/// What one client measured.
#[derive(Default)]
struct Samples {
    read_us: Vec<u64>,
    write_us: Vec<u64>,
    errors: u64,
}

impl Samples {
    fn merge(&mut self, other: Samples) {
        self.read_us.extend(other.read_us);
        self.write_us.extend(other.write_us);
        self.errors += other.errors;
    }
}

/// One cell of the table.
struct Cell {
    system: String,
    workload: Workload,
    clients: usize,
    ops_per_sec: f64,
    reads_per_sec: f64,
    read_p50_us: u64,
    read_p99_us: u64,
    write_p99_us: u64,
    cpu_us_per_op: f64,
    /// CPU of this process (the load generator) per operation.
    loadgen_us_per_op: f64,
    errors: u64,
    note: String,
}

fn print_header() {
    println!(
        "{:<16} {:<9} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>6}  notes",
        "system",
        "workload",
        "clients",
        "ops/s",
        "reads/s",
        "rd p50ms",
        "rd p99ms",
        "wr p99ms",
        "cpu us/op",
        "gen us/op",
        "errors"
    );
}

fn print_cell(cell: &Cell) {
    println!(
        "{:<16} {:<9} {:>7} {:>9.0} {:>9.0} {:>9.2} {:>9.2} {:>9.2} {:>9.1} {:>9.1} {:>6}  {}",
        cell.system,
        cell.workload.name(),
        cell.clients,
        cell.ops_per_sec,
        cell.reads_per_sec,
        cell.read_p50_us as f64 / 1000.0,
        cell.read_p99_us as f64 / 1000.0,
        cell.write_p99_us as f64 / 1000.0,
        cell.cpu_us_per_op,
        cell.loadgen_us_per_op,
        cell.errors,
        cell.note
    );
}

/// Runs `clients` closed-loop clients for `seconds`, each made by
/// `spawn_client(index, stop)`, and turns what they measured into a cell.
async fn measure<F, Fut>(
    system: &str,
    workload: Workload,
    clients: usize,
    seconds: u64,
    pids: &[u32],
    spawn_client: F,
) -> Cell
where
    F: Fn(u64, Arc<AtomicBool>) -> Fut,
    Fut: std::future::Future<Output = Samples> + Send + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    let me = [std::process::id()];
    let cpu_before = cpu_us(pids);
    let loadgen_before = cpu_us(&me);
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients as u64)
        .map(|c| tokio::spawn(spawn_client(c, stop.clone())))
        .collect();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Samples::default();
    let mut lost = 0;
    for task in tasks {
        match tokio::time::timeout(Duration::from_secs(30), task).await {
            Ok(Ok(samples)) => all.merge(samples),
            _ => lost += 1,
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu_us(pids).saturating_sub(cpu_before);
    let loadgen = cpu_us(&me).saturating_sub(loadgen_before);
    all.read_us.sort_unstable();
    all.write_us.sort_unstable();
    let ops = all.read_us.len() + all.write_us.len();
    Cell {
        system: system.to_string(),
        workload,
        clients,
        ops_per_sec: ops as f64 / elapsed,
        reads_per_sec: all.read_us.len() as f64 / elapsed,
        read_p50_us: percentile(&all.read_us, 50.0),
        read_p99_us: percentile(&all.read_us, 99.0),
        write_p99_us: percentile(&all.write_us, 99.0),
        cpu_us_per_op: cpu as f64 / ops.max(1) as f64,
        loadgen_us_per_op: loadgen as f64 / ops.max(1) as f64,
        errors: all.errors,
        note: if lost > 0 {
            format!("{lost} clients did not stop")
        } else {
            String::new()
        },
    }
}

// ---------------------------------------------------------------- concord

/// A concord configuration to measure: a cluster and a read path.
#[derive(Clone, Copy)]
struct ConcordSystem {
    name: &'static str,
    path: ReadPath,
}

fn concord_config(servers: Vec<String>) -> ClientConfig {
    ClientConfig::new(servers, CLUSTER)
}

async fn concord_preload(servers: &[String]) {
    let mut probe = KvClient::new(concord_config(servers.to_vec()));
    let deadline = Instant::now() + Duration::from_secs(30);
    while probe.put("warmup", "x").await.is_err() {
        assert!(Instant::now() < deadline, "concord cluster did not come up");
    }
    let tasks: Vec<_> = (0..PRELOAD_CLIENTS)
        .map(|t| {
            let servers = servers.to_vec();
            tokio::spawn(async move {
                let mut client = KvClient::new(concord_config(servers));
                let value = Bytes::from(vec![b'v'; VALUE_BYTES]);
                for i in (t..KEYS).step_by(PRELOAD_CLIENTS as usize) {
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

/// Sum over the servers of (ReadIndex, lease, follower) reads served, and
/// the highest last log index.
async fn concord_counters(servers: &[String]) -> [u64; 4] {
    let mut client = KvClient::new(concord_config(servers.to_vec()));
    let mut sums = [0u64; 4];
    for i in 0..servers.len() {
        if let Ok(status) = client.status(i).await {
            sums[0] += status.server.reads_read_index;
            sums[1] += status.server.reads_lease;
            sums[2] += status.server.reads_follower;
            sums[3] = sums[3].max(status.last_index);
        }
    }
    sums
}

async fn concord_client(
    servers: Vec<String>,
    path: ReadPath,
    workload: Workload,
    seed: u64,
    stop: Arc<AtomicBool>,
) -> Samples {
    let mut client = KvClient::new(concord_config(servers));
    let value = Bytes::from(vec![b'w'; VALUE_BYTES]);
    let mut rng = Rng::for_client(seed);
    let mut samples = Samples::default();
    while !stop.load(Ordering::Relaxed)
        && samples.read_us.len() + samples.write_us.len() < SAMPLES_PER_CLIENT_MAX
    {
        let draw = rng.next();
        let k = key(draw >> 8);
        let t = Instant::now();
        if draw % 100 < workload.write_percent() {
            match client.put(k, value.clone()).await {
                Ok(()) => samples.write_us.push(t.elapsed().as_micros() as u64),
                Err(_) => samples.errors += 1,
            }
        } else {
            match client.get_via(k, Some(path)).await {
                Ok(Some(_)) => samples.read_us.push(t.elapsed().as_micros() as u64),
                // A preloaded key that reads as absent is an error too.
                Ok(None) | Err(_) => samples.errors += 1,
            }
        }
    }
    samples
}

/// Starts one concord cluster and measures `systems` on it, every workload
/// and client count.
fn run_concord(
    runtime: &tokio::runtime::Runtime,
    nodes: usize,
    extra_args: &[&str],
    systems: &[ConcordSystem],
    clients_list: &[usize],
    seconds: u64,
    cells: &mut Vec<Cell>,
) {
    let cluster = NodeCluster::start(nodes, extra_args);
    let servers = cluster.servers.clone();
    let pids = cluster.processes.pids();
    runtime.block_on(concord_preload(&servers));
    for workload in [Workload::ReadOnly, Workload::Mixed] {
        for system in systems {
            for &clients in clients_list {
                let before = runtime.block_on(concord_counters(&servers));
                let all = servers.clone();
                let path = system.path;
                let mut cell = runtime.block_on(measure(
                    system.name,
                    workload,
                    clients,
                    seconds,
                    &pids,
                    move |c, stop| {
                        // Read-only follower clients: one server each.
                        let servers =
                            if path == ReadPath::Follower && workload == Workload::ReadOnly {
                                vec![all[c as usize % all.len()].clone()]
                            } else {
                                all.clone()
                            };
                        concord_client(servers, path, workload, c + 1, stop)
                    },
                ));
                let after = runtime.block_on(concord_counters(&servers));
                cell.note = format!(
                    "served: index {} lease {} follower {}; log +{}{}{}",
                    after[0] - before[0],
                    after[1] - before[1],
                    after[2] - before[2],
                    after[3] - before[3],
                    if cell.note.is_empty() { "" } else { "; " },
                    cell.note
                );
                print_cell(&cell);
                cells.push(cell);
            }
        }
    }
}

// ------------------------------------------------------------------- etcd

async fn etcd_client(
    addr: String,
    workload: Workload,
    seed: u64,
    stop: Arc<AtomicBool>,
) -> Samples {
    let mut samples = Samples::default();
    let mut rng = Rng::for_client(seed);
    let mut etcd = None;
    while !stop.load(Ordering::Relaxed)
        && samples.read_us.len() + samples.write_us.len() < SAMPLES_PER_CLIENT_MAX
    {
        let conn = match &mut etcd {
            Some(conn) => conn,
            None => match Etcd::connect(&addr).await {
                Ok(conn) => etcd.insert(conn),
                Err(_) => {
                    samples.errors += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let draw = rng.next();
        let k = key(draw >> 8);
        let t = Instant::now();
        let ok = if draw % 100 < workload.write_percent() {
            let result = conn.put(&k, &[b'w'; VALUE_BYTES]).await;
            if result.is_ok() {
                samples.write_us.push(t.elapsed().as_micros() as u64);
            }
            result.is_ok()
        } else {
            let result = conn.get(&k).await;
            if result == Ok(true) {
                samples.read_us.push(t.elapsed().as_micros() as u64);
            }
            result == Ok(true)
        };
        if !ok {
            samples.errors += 1;
            etcd = None; // the connection may be broken; open another
        }
    }
    samples
}

fn run_etcd(
    runtime: &tokio::runtime::Runtime,
    binary: &str,
    clients_list: &[usize],
    seconds: u64,
    cells: &mut Vec<Cell>,
) {
    let (processes, addrs) = start_etcd(binary, None);
    let pids = processes.pids();
    if let Err(e) = runtime.block_on(etcd_wait_ready(&addrs[0])) {
        println!("SKIPPING etcd cells: {e}");
        return;
    }
    println!("etcd: gRPC, one HTTP/2 connection per client, round-robin over the 3 members");
    runtime.block_on(etcd_preload(&addrs, KEYS, key, VALUE_BYTES));
    for workload in [Workload::ReadOnly, Workload::Mixed] {
        for &clients in clients_list {
            let addrs = addrs.clone();
            let cell = runtime.block_on(measure(
                "etcd",
                workload,
                clients,
                seconds,
                &pids,
                move |c, stop| {
                    let addr = addrs[c as usize % addrs.len()].clone();
                    etcd_client(addr, workload, c + 1, stop)
                },
            ));
            print_cell(&cell);
            cells.push(cell);
        }
    }
    drop(processes);
}

// ------------------------------------------------------------------- main

fn print_side_by_side(cells: &[Cell], clients_list: &[usize]) {
    let systems = ["etcd", "index", "lease", "follower3", "follower5"];
    println!();
    println!("side by side: ops/s (x etcd) | read p50/p99 ms | server CPU us per op");
    for workload in [Workload::ReadOnly, Workload::Mixed] {
        println!("{}:", workload.name());
        for &clients in clients_list {
            let find = |name: &str| {
                cells
                    .iter()
                    .find(|c| c.system == name && c.workload == workload && c.clients == clients)
            };
            let etcd_rate = find("etcd").map(|c| c.ops_per_sec);
            let mut line = format!("  {clients:>3} clients");
            for name in systems {
                match find(name) {
                    Some(cell) => {
                        let ratio = match etcd_rate {
                            Some(rate) if name != "etcd" && rate > 0.0 => {
                                format!(" x{:.2}", cell.ops_per_sec / rate)
                            }
                            _ => String::new(),
                        };
                        line.push_str(&format!(
                            " | {name} {:.0}{ratio} {:.2}/{:.2} cpu {:.0}",
                            cell.ops_per_sec,
                            cell.read_p50_us as f64 / 1000.0,
                            cell.read_p99_us as f64 / 1000.0,
                            cell.cpu_us_per_op
                        ));
                    }
                    None => line.push_str(&format!(" | {name} -")),
                }
            }
            println!("{line}");
        }
    }
}

fn main() {
    let seconds = env_u64("CONCORD_BENCH_SECS", 10);
    let clients_list = env_list("CONCORD_BENCH_CLIENTS", &[1, 16, 64, 256]);
    let wanted: Vec<String> = std::env::var("CONCORD_BENCH_SYSTEMS")
        .unwrap_or_else(|_| "etcd,index,lease,follower3,follower5".to_string())
        .split(',')
        .map(|s| s.trim().to_string())
        .collect();
    let want = |name: &str| wanted.iter().any(|w| w == name);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    println!(
        "reads: {KEYS} keys of {VALUE_BYTES} bytes preloaded; closed-loop clients, one request in flight each; {seconds}s per cell; fsync on"
    );
    println!(
        "concord: lease cluster started with {}",
        LEASE_ARGS.join(" ")
    );
    let mut cells = Vec::new();
    print_header();
    if want("etcd") {
        match etcd_binary() {
            Ok(binary) => {
                println!("etcd: {} ({binary})", etcd_version(&binary));
                run_etcd(&runtime, &binary, &clients_list, seconds, &mut cells);
            }
            Err(reason) => println!("SKIPPING etcd cells: {reason}"),
        }
    }
    let three: Vec<ConcordSystem> = [
        ("index", ReadPath::ReadIndex),
        ("follower3", ReadPath::Follower),
    ]
    .into_iter()
    .filter(|(name, _)| want(name))
    .map(|(name, path)| ConcordSystem { name, path })
    .collect();
    if !three.is_empty() {
        run_concord(&runtime, 3, &[], &three, &clients_list, seconds, &mut cells);
    }
    if want("lease") {
        let lease = [ConcordSystem {
            name: "lease",
            path: ReadPath::Lease,
        }];
        run_concord(
            &runtime,
            3,
            &LEASE_ARGS,
            &lease,
            &clients_list,
            seconds,
            &mut cells,
        );
    }
    if want("follower5") {
        let five = [ConcordSystem {
            name: "follower5",
            path: ReadPath::Follower,
        }];
        run_concord(&runtime, 5, &[], &five, &clients_list, seconds, &mut cells);
    }
    print_side_by_side(&cells, &clients_list);
}
