//! Writes on a real 3-node cluster, concord against etcd
//! 3.4, side by side in one run.
//!
//! Both clusters run on loopback on this machine at the same time, each
//! with fsync on (etcd's default; `concord-node`'s default): three
//! `concord-node` processes, and three `etcd` members (Debian's
//! `etcd-server`, installed by `benches/peers/etcd/setup.sh`). Both are preloaded
//! with the same 10,000 keys. Each cell is one system at one client count:
//! closed-loop clients with one request in flight each put 128-byte values
//! under random keys of the 10,000. Every client opens its connection and
//! makes one put **before** the clock starts, so connection set-up is never
//! timed.
//!
//! etcd runs on its own fastest path: gRPC over one HTTP/2 connection per
//! client, the API `etcdctl` and the Go client use, with every client
//! talking to the **leader** (a put sent to a follower costs a forwarding
//! hop; `CONCORD_BENCH_ETCD_TARGET=spread` spreads clients round-robin
//! over the members instead, as the Go client's balancer does). concord's
//! clients use `concord_services::KvClient` as shipped, which finds the
//! leader itself.
//!
//! Both run their servers on the same number of threads,
//! `CONCORD_BENCH_SERVER_THREADS` (default 1): `--worker-threads` of every
//! `concord-node` (1 is a current-thread runtime; the WAL writer has its
//! own thread besides) and `GOMAXPROCS` of every etcd member (Go's
//! system-call and garbage-collector threads besides). On 2 cores that
//! carry 3 members of each system and the load generator, one thread is
//! the faster setting for both (2026-11-24, 64 clients: etcd 8,372 puts/s
//! with `GOMAXPROCS=1` against 7,864 with its default of one per core;
//! concord 32,459 with one worker against 23,893 to 26,552 with two, its
//! default then; one is its default on 2 cores since 2026-12-02).
//! `CONCORD_BENCH_SERVER_THREADS=0` keeps each system's
//! default.
//!
//! Each client count runs `CONCORD_BENCH_ROUNDS` rounds (default 2), and
//! each round runs both systems, alternating which goes first, so load from
//! elsewhere on the machine hits both alike. Per cell: throughput, p50 and
//! p99 latency, and the **CPU seconds per 1,000 operations of the whole
//! cluster** (user + sys of the three server processes from
//! `/proc/<pid>/stat`, robust to other load on the machine, unlike
//! throughput), plus the load generator's own CPU per 1,000 operations and
//! the 1-minute load average when the cell ended. The summary gives the
//! median of the rounds per system and the ratios against concord's
//! goals at 64 clients (≥ 3× etcd's throughput, ≤ ¼ of its CPU per
//! operation, p99 ≤ ½).
//!
//! The table is also written as CSV, and three plots (throughput, CPU per
//! 1,000 operations, p99 against clients) as SVG, to `CONCORD_BENCH_OUT`
//! (default `target/bench-results/` of the workspace).
//!
//! `CONCORD_BENCH_SHARED=1` makes each system's clients share
//! connections, each on its own way of doing it: concord's clients one
//! `SharedConnections` (one connection per server, requests pipelined,
//! a batch's answers in one write), etcd's clients one gRPC channel per
//! member (one HTTP/2 connection, requests multiplexed as streams).
//!
//! `CONCORD_BENCH_DISK=1`, with a build of `--features disk`, runs a
//! third cluster beside them, `concord-node --storage disk` (the keys in
//! RocksDB), preloaded alike, and adds a table of it against the
//! in-memory store and etcd.
//!
//! ```text
//! benches/peers/etcd/compare.sh                      # installs etcd, then runs this
//! CONCORD_BENCH_DISK=1 CONCORD_BENCH_CLIENTS=64 cargo bench -p concord-bench --features disk --bench vs_etcd
//! CONCORD_BENCH_SECS=10 CONCORD_BENCH_CLIENTS=1,16,64,256 cargo bench -p concord-bench --bench vs_etcd
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use concord_services::KvClient;
use concord_tokio::client::ClientConfig;
use concord_tokio::multi::shared_connections::SharedConnections;

#[path = "../runtime/support/node_cluster.rs"]
mod node_cluster;

#[path = "support/etcd.rs"]
mod etcd;

#[path = "../src/plot.rs"]
mod plot;

use etcd::{
    cpu_us, etcd_binary, etcd_leader, etcd_preload, etcd_version, etcd_wait_ready, start_etcd, Etcd,
};
use node_cluster::{env_list, env_u64, key, percentile, NodeCluster, Rng, CLUSTER, KEYS};

/// Bytes per value.
const VALUE_BYTES: usize = 128;
/// A cap on the latencies one client keeps (bounds memory).
const SAMPLES_PER_CLIENT_MAX: usize = 10_000_000;
/// How long a client may take to open its connection and make its first
/// put before the cell is abandoned.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum System {
    Etcd,
    Concord,
    /// `concord-node --storage disk` (`CONCORD_BENCH_DISK=1`, a build with
    /// `--features disk`).
    ConcordDisk,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Etcd => "etcd",
            System::Concord => "concord",
            System::ConcordDisk => "concord-disk",
        }
    }
}

/// One open client connection of either system.
enum Conn {
    Etcd(Etcd),
    Concord(KvClient),
}

impl Conn {
    async fn put(&mut self, k: String, value: &Bytes) -> Result<(), String> {
        match self {
            Conn::Etcd(etcd) => etcd.put(&k, value).await,
            Conn::Concord(client) => client
                .put(k, value.clone())
                .await
                .map_err(|e| e.to_string()),
        }
    }
}

/// One system, one client count, one round.
struct Cell {
    system: System,
    clients: usize,
    round: u64,
    ops: u64,
    ops_per_sec: f64,
    p50_us: u64,
    p99_us: u64,
    /// Server CPU (user + sys, all three processes) per 1,000 puts.
    cpu_s_per_kop: f64,
    /// This process's CPU per 1,000 puts.
    loadgen_s_per_kop: f64,
    errors: u64,
    load_avg_1m: f64,
}

fn load_avg_1m() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|f| f.parse().ok()))
        .unwrap_or(f64::NAN)
}

fn print_header() {
    println!(
        "{:<8} {:>7} {:>5} {:>10} {:>9} {:>9} {:>12} {:>12} {:>6} {:>6}",
        "system",
        "clients",
        "round",
        "puts/s",
        "p50 ms",
        "p99 ms",
        "cpu s/kop",
        "gen s/kop",
        "errors",
        "load"
    );
}

fn print_cell(cell: &Cell) {
    println!(
        "{:<8} {:>7} {:>5} {:>10.0} {:>9.2} {:>9.2} {:>12.4} {:>12.4} {:>6} {:>6.2}",
        cell.system.name(),
        cell.clients,
        cell.round,
        cell.ops_per_sec,
        cell.p50_us as f64 / 1000.0,
        cell.p99_us as f64 / 1000.0,
        cell.cpu_s_per_kop,
        cell.loadgen_s_per_kop,
        cell.errors,
        cell.load_avg_1m
    );
}

/// The clusters under test, all running for the whole benchmark.
struct Clusters {
    concord: NodeCluster,
    concord_pids: Vec<u32>,
    /// `--storage disk`, when asked for.
    concord_disk: Option<NodeCluster>,
    concord_disk_pids: Vec<u32>,
    /// etcd's processes, client addresses and the addresses clients use.
    etcd: Option<(node_cluster::Processes, Vec<String>)>,
    etcd_pids: Vec<u32>,
    etcd_targets: Vec<String>,
}

/// Whether the clients of each system share connections
/// (`CONCORD_BENCH_SHARED=1`): concord's share one `SharedConnections`
/// (one pipelined connection per server), etcd's one gRPC channel (one
/// HTTP/2 connection) per member they talk to.
fn shared_connections() -> bool {
    env_u64("CONCORD_BENCH_SHARED", 0) == 1
}

/// Opens `clients` connections of `system` and makes one put on each.
async fn open(system: System, clusters: &Clusters, clients: usize) -> Result<Vec<Conn>, String> {
    let value = Bytes::from(vec![b'o'; VALUE_BYTES]);
    let shared = shared_connections();
    let concord_shared = shared.then(SharedConnections::new);
    // One channel per member, cloned by every client that talks to it.
    let mut etcd_channels: BTreeMap<String, Etcd> = BTreeMap::new();
    if shared && system == System::Etcd {
        for target in &clusters.etcd_targets {
            etcd_channels.insert(target.clone(), Etcd::connect(target).await?);
        }
    }
    let opens = (0..clients).map(|c| {
        let value = value.clone();
        let servers = match system {
            System::ConcordDisk => clusters.concord_disk.as_ref().map(|c| c.servers.clone()),
            _ => Some(clusters.concord.servers.clone()),
        };
        let target = clusters
            .etcd_targets
            .get(c % clusters.etcd_targets.len().max(1))
            .cloned();
        let concord_shared = concord_shared.clone();
        let etcd_channel = target.as_ref().and_then(|t| etcd_channels.get(t)).cloned();
        async move {
            let mut conn = match system {
                System::Concord | System::ConcordDisk => {
                    let servers = servers.ok_or("no concord-disk cluster")?;
                    let mut config = ClientConfig::new(servers, CLUSTER);
                    config.shared = concord_shared;
                    Conn::Concord(KvClient::new(config))
                }
                System::Etcd => match etcd_channel {
                    Some(channel) => Conn::Etcd(channel),
                    None => {
                        let target = target.ok_or("no etcd cluster")?;
                        Conn::Etcd(Etcd::connect(&target).await?)
                    }
                },
            };
            conn.put(key(c as u64), &value).await?;
            Ok::<Conn, String>(conn)
        }
    });
    let opened = tokio::time::timeout(CONNECT_TIMEOUT, futures_join_all(opens))
        .await
        .map_err(|_| format!("{clients} {} clients did not connect", system.name()))?;
    opened.into_iter().collect()
}

/// Awaits every future (spawned, so they connect concurrently).
async fn futures_join_all<F, T>(futures: impl Iterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.expect("connect task"));
    }
    out
}

/// Runs the open connections for `seconds` and measures them.
async fn measure(system: System, conns: Vec<Conn>, round: u64, seconds: u64, pids: &[u32]) -> Cell {
    let clients = conns.len();
    let stop = Arc::new(AtomicBool::new(false));
    let me = [std::process::id()];
    let cpu_before = cpu_us(pids);
    let loadgen_before = cpu_us(&me);
    let start = Instant::now();
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(c, mut conn)| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let value = Bytes::from(vec![b'w'; VALUE_BYTES]);
                let mut rng = Rng::for_client(c as u64 + 1);
                let mut latencies_us = Vec::new();
                let mut errors = 0u64;
                while !stop.load(Ordering::Relaxed) && latencies_us.len() < SAMPLES_PER_CLIENT_MAX {
                    let k = key(rng.next() >> 8);
                    let t = Instant::now();
                    match conn.put(k, &value).await {
                        Ok(()) => latencies_us.push(t.elapsed().as_micros() as u64),
                        Err(_) => errors += 1,
                    }
                }
                (latencies_us, errors)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies_us = Vec::new();
    let mut errors = 0;
    for task in tasks {
        match tokio::time::timeout(Duration::from_secs(30), task).await {
            Ok(Ok((l, e))) => {
                latencies_us.extend(l);
                errors += e;
            }
            _ => errors += 1,
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu_us(pids).saturating_sub(cpu_before);
    let loadgen = cpu_us(&me).saturating_sub(loadgen_before);
    latencies_us.sort_unstable();
    let ops = latencies_us.len() as u64;
    let per_kop = |us: u64| us as f64 / 1e6 / (ops.max(1) as f64 / 1000.0);
    Cell {
        system,
        clients,
        round,
        ops,
        ops_per_sec: ops as f64 / elapsed,
        p50_us: percentile(&latencies_us, 50.0),
        p99_us: percentile(&latencies_us, 99.0),
        cpu_s_per_kop: per_kop(cpu),
        loadgen_s_per_kop: per_kop(loadgen),
        errors,
        load_avg_1m: load_avg_1m(),
    }
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    })
}

/// The median over rounds of `metric` for one system and client count.
fn median_of(
    cells: &[Cell],
    system: System,
    clients: usize,
    metric: fn(&Cell) -> f64,
) -> Option<f64> {
    median(
        cells
            .iter()
            .filter(|c| c.system == system && c.clients == clients && c.ops > 0)
            .map(metric)
            .collect(),
    )
}

fn print_summary(cells: &[Cell], clients_list: &[usize]) {
    println!();
    println!("medians of the rounds; ratio = concord against etcd");
    println!(
        "{:>7} | {:>10} {:>10} {:>6} | {:>9} {:>9} {:>6} | {:>9} {:>9} {:>6}",
        "clients",
        "etcd/s",
        "concord/s",
        "x",
        "etcd cpu",
        "concord",
        "1/x",
        "etcd p99",
        "concord",
        "x"
    );
    for &clients in clients_list {
        let get = |s, m| median_of(cells, s, clients, m);
        let rate = |c: &Cell| c.ops_per_sec;
        let cpu = |c: &Cell| c.cpu_s_per_kop;
        let p99 = |c: &Cell| c.p99_us as f64 / 1000.0;
        let show = |v: Option<f64>, digits: usize| {
            v.map(|v| format!("{v:.digits$}"))
                .unwrap_or_else(|| "-".to_string())
        };
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
            _ => "-".to_string(),
        };
        let (er, cr) = (get(System::Etcd, rate), get(System::Concord, rate));
        let (ec, cc) = (get(System::Etcd, cpu), get(System::Concord, cpu));
        let (ep, cp) = (get(System::Etcd, p99), get(System::Concord, p99));
        println!(
            "{:>7} | {:>10} {:>10} {:>6} | {:>9} {:>9} {:>6} | {:>9} {:>9} {:>6}",
            clients,
            show(er, 0),
            show(cr, 0),
            ratio(cr, er),
            show(ec, 4),
            show(cc, 4),
            ratio(ec, cc),
            show(ep, 2),
            show(cp, 2),
            ratio(cp, ep)
        );
    }
    if cells.iter().any(|c| c.system == System::ConcordDisk) {
        println!();
        println!("the key-value store on disk (--storage disk) against in memory and etcd");
        println!(
            "{:>7} | {:>10} {:>12} {:>10} | {:>9} {:>9} | {:>9}",
            "clients", "disk/s", "x in-memory", "x etcd", "disk cpu", "disk p99", "mem p99"
        );
        for &clients in clients_list {
            let get = |s, m| median_of(cells, s, clients, m);
            let rate = |c: &Cell| c.ops_per_sec;
            let (dr, mr, er) = (
                get(System::ConcordDisk, rate),
                get(System::Concord, rate),
                get(System::Etcd, rate),
            );
            let show = |v: Option<f64>, digits: usize| {
                v.map(|v| format!("{v:.digits$}"))
                    .unwrap_or_else(|| "-".to_string())
            };
            let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
                (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
                _ => "-".to_string(),
            };
            println!(
                "{:>7} | {:>10} {:>12} {:>10} | {:>9} {:>9} | {:>9}",
                clients,
                show(dr, 0),
                ratio(dr, mr),
                ratio(dr, er),
                show(get(System::ConcordDisk, |c: &Cell| c.cpu_s_per_kop), 4),
                show(
                    get(System::ConcordDisk, |c: &Cell| c.p99_us as f64 / 1000.0),
                    2
                ),
                show(get(System::Concord, |c: &Cell| c.p99_us as f64 / 1000.0), 2),
            );
        }
    }
    println!("(cpu: server CPU seconds per 1,000 puts, the three processes together; p99 in ms)");
    println!(
        "goals at 64 clients: throughput x >= 3, cpu 1/x >= 4 (<= 1/4 of etcd's), p99 x <= 0.5"
    );
}

/// A plot: its file, title, y-axis title and the metric it draws.
type Chart = (&'static str, &'static str, &'static str, fn(&Cell) -> f64);

fn write_outputs(cells: &[Cell], clients_list: &[usize]) -> std::io::Result<PathBuf> {
    let mut csv = String::from(
        "system,clients,round,puts,puts_per_sec,p50_ms,p99_ms,server_cpu_s_per_kop,loadgen_cpu_s_per_kop,errors,load_avg_1m\n",
    );
    for c in cells {
        csv.push_str(&format!(
            "{},{},{},{},{:.1},{:.3},{:.3},{:.5},{:.5},{},{:.2}\n",
            c.system.name(),
            c.clients,
            c.round,
            c.ops,
            c.ops_per_sec,
            c.p50_us as f64 / 1000.0,
            c.p99_us as f64 / 1000.0,
            c.cpu_s_per_kop,
            c.loadgen_s_per_kop,
            c.errors,
            c.load_avg_1m
        ));
    }
    let mut files = vec![("vs_etcd.csv", csv)];
    let labels: Vec<String> = clients_list.iter().map(|c| c.to_string()).collect();
    let charts: [Chart; 3] = [
        (
            "vs_etcd_throughput.svg",
            "Puts per second (median of rounds)",
            "puts/s",
            |c| c.ops_per_sec,
        ),
        (
            "vs_etcd_cpu.svg",
            "Server CPU seconds per 1,000 puts",
            "CPU s / 1,000 puts",
            |c| c.cpu_s_per_kop,
        ),
        ("vs_etcd_p99.svg", "p99 put latency", "ms", |c| {
            c.p99_us as f64 / 1000.0
        }),
    ];
    for (file, title, y_title, metric) in charts {
        let series: Vec<plot::Series> = [System::Etcd, System::Concord]
            .into_iter()
            .map(|s| plot::Series {
                name: s.name().to_string(),
                values: clients_list
                    .iter()
                    .map(|&c| median_of(cells, s, c, metric))
                    .collect(),
            })
            .collect();
        let svg = plot::line_chart(
            &format!("{title}, 3 nodes on loopback, fsync on"),
            "concurrent clients (one put in flight each)",
            y_title,
            &labels,
            &series,
        );
        files.push((file, svg));
    }
    plot::write_results(&files)
}

/// Server threads per member for both systems, from
/// `CONCORD_BENCH_SERVER_THREADS`; `None` (the value 0): each system's
/// default.
fn server_threads() -> Option<usize> {
    match env_u64("CONCORD_BENCH_SERVER_THREADS", 1) {
        0 => None,
        n => Some(n as usize),
    }
}

fn start_clusters(runtime: &tokio::runtime::Runtime, threads: Option<usize>) -> Clusters {
    let worker_threads = threads.map(|n| n.to_string());
    let concord_args: Vec<&str> = match &worker_threads {
        Some(n) => vec!["--worker-threads", n],
        None => Vec::new(),
    };
    let concord = NodeCluster::start(3, &concord_args);
    let concord_pids = concord.processes.pids();
    let value = Bytes::from(vec![b'v'; VALUE_BYTES]);
    runtime.block_on(node_cluster::preload_keys(&concord.servers, value.clone()));
    let concord_disk = (env_u64("CONCORD_BENCH_DISK", 0) == 1).then(|| {
        let mut args = concord_args.clone();
        args.extend(["--storage", "disk"]);
        let cluster = NodeCluster::start(3, &args);
        runtime.block_on(node_cluster::preload_keys(&cluster.servers, value.clone()));
        println!("concord-disk: concord-node --storage disk (RocksDB)");
        cluster
    });
    let concord_disk_pids = concord_disk
        .as_ref()
        .map(|c| c.processes.pids())
        .unwrap_or_default();
    let mut clusters = Clusters {
        concord,
        concord_pids,
        concord_disk,
        concord_disk_pids,
        etcd: None,
        etcd_pids: Vec::new(),
        etcd_targets: Vec::new(),
    };
    let binary = match etcd_binary() {
        Ok(binary) => binary,
        Err(reason) => {
            println!("SKIPPING every etcd cell: {reason}");
            return clusters;
        }
    };
    println!("etcd: {} ({binary})", etcd_version(&binary));
    let (processes, addrs) = start_etcd(&binary, threads);
    if let Err(e) = runtime.block_on(etcd_wait_ready(&addrs[0])) {
        println!("SKIPPING every etcd cell: {e}");
        return clusters;
    }
    runtime.block_on(etcd_preload(&addrs, KEYS, key, VALUE_BYTES));
    let spread = std::env::var("CONCORD_BENCH_ETCD_TARGET").as_deref() == Ok("spread");
    clusters.etcd_targets = if spread {
        println!("etcd clients: round-robin over the 3 members");
        addrs.clone()
    } else {
        match runtime.block_on(etcd_leader(&addrs)) {
            Some(leader) => {
                println!("etcd clients: all on the leader, member {}", leader + 1);
                vec![addrs[leader].clone()]
            }
            None => {
                println!("etcd clients: no member said it leads; round-robin over the 3");
                addrs.clone()
            }
        }
    };
    clusters.etcd_pids = processes.pids();
    clusters.etcd = Some((processes, addrs));
    clusters
}

fn main() {
    let seconds = env_u64("CONCORD_BENCH_SECS", 10);
    let rounds = env_u64("CONCORD_BENCH_ROUNDS", 2).max(1);
    let clients_list = env_list("CONCORD_BENCH_CLIENTS", &[1, 16, 64, 256]);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let threads = server_threads();
    let threads_text = match threads {
        Some(n) => format!("{n} per member for both (concord --worker-threads, etcd GOMAXPROCS)"),
        None => "each system's default".to_string(),
    };
    println!(
        "vs_etcd: puts of {VALUE_BYTES}-byte values over {KEYS} preloaded keys; closed-loop clients, one put in flight each, connections opened before the clock ({}); {seconds}s per cell; {rounds} rounds alternating which system goes first; fsync on; server threads: {threads_text}; load generator: 2 tokio workers",
        if shared_connections() {
            "shared: one per server or member for all clients of a system"
        } else {
            "one per client"
        }
    );
    let clusters = start_clusters(&runtime, threads);
    let mut cells = Vec::new();
    print_header();
    for (n, &clients) in clients_list.iter().enumerate() {
        for round in 0..rounds {
            let order = if (round + n as u64).is_multiple_of(2) {
                [System::Etcd, System::Concord, System::ConcordDisk]
            } else {
                [System::ConcordDisk, System::Concord, System::Etcd]
            };
            for system in order {
                let pids = match system {
                    System::Etcd if clusters.etcd.is_none() => continue,
                    System::Etcd => &clusters.etcd_pids,
                    System::Concord => &clusters.concord_pids,
                    System::ConcordDisk if clusters.concord_disk.is_none() => continue,
                    System::ConcordDisk => &clusters.concord_disk_pids,
                };
                let conns = match runtime.block_on(open(system, &clusters, clients)) {
                    Ok(conns) => conns,
                    Err(e) => {
                        println!("{} at {clients} clients: {e}", system.name());
                        continue;
                    }
                };
                let cell = runtime.block_on(measure(system, conns, round, seconds, pids));
                print_cell(&cell);
                cells.push(cell);
            }
        }
    }
    print_summary(&cells, &clients_list);
    match write_outputs(&cells, &clients_list) {
        Ok(dir) => println!("wrote vs_etcd.csv and three SVG plots to {}", dir.display()),
        Err(e) => println!("could not write the results: {e}"),
    }
    drop(clusters);
}
