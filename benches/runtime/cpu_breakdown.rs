//! Where the server CPU of one committed put goes, on a
//! real 3-node cluster (three `concord-node` processes on loopback, fsync
//! on, one worker thread each as in `vs_etcd`).
//!
//! The workload is `vs_etcd`'s: 10,000 preloaded keys, closed-loop
//! clients (`concord_services::KvClient`, one put in flight each) putting
//! 128-byte values under random keys, connections opened before the
//! clock. For each client count of `CONCORD_BENCH_CLIENTS` (default
//! 1,64,256) it runs up to three windows of `CONCORD_BENCH_SECS` (default
//! 10) seconds each and prints, per committed put:
//!
//! * **plain window**: server CPU (user + sys of the three processes from
//!   `/proc/<pid>/stat`), context switches (voluntary and nonvoluntary,
//!   summed over every thread in `/proc/<pid>/task/*/status`), and, when
//!   the servers were built with feature `count-alloc`, allocations and
//!   bytes allocated (each server prints its counters on `SIGUSR1`;
//!   `CONCORD_BENCH_ALLOC=1` asks for them);
//! * **strace window** (`CONCORD_BENCH_STRACE=1`): `strace -c -f -p` on
//!   each server for the window, the system calls by kind per put (strace
//!   slows the servers, so this window's puts/s are not the plain ones);
//! * **perf window** (`CONCORD_BENCH_PERF_DIR=dir`): `perf record
//!   --call-graph dwarf -F 299` on the leader and one follower for
//!   `CONCORD_BENCH_PERF_SECS` (default 5) seconds, into
//!   `dir/{leader,follower}-<clients>.data`, with the puts and each
//!   process's CPU in that window in `dir/window-<clients>.txt`
//!   (`benches/runtime/cpu/stages.py` splits the profile by stage).
//!
//! `CONCORD_BENCH_SHARED` (default `0`): `1` makes each window's clients
//! share one connection per server (`SharedConnections`: requests
//! pipelined, the answers of a batch in one write); `0,1` runs both,
//! one after the other, for each client count.
//!
//! `CONCORD_BENCH_NODE_BIN=path` runs another build of `concord-node`
//! (a before/after comparison alternates two builds, one run each).
//!
//! Each line carries the 1-minute load average when the window ended.
//! strace and perf slow the servers down; on a loaded machine that can
//! stall a leader past its election timeout, so `CONCORD_BENCH_TICK_MS`
//! (passed as `--tick-ms`) can lengthen the timeouts for those windows'
//! run; a window in which leadership moved is flagged.
//! `benches/runtime/cpu/breakdown.sh` builds both binaries and runs everything.
//!
//! ```text
//! benches/runtime/cpu/breakdown.sh
//! CONCORD_BENCH_CLIENTS=64 CONCORD_BENCH_STRACE=1 cargo bench -p concord-bench --bench cpu_breakdown
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use concord_services::KvClient;
use concord_tokio::client::ClientConfig;
use concord_tokio::multi::one_group_client::OneGroupClient;
use concord_tokio::multi::shared_connections::SharedConnections;

#[path = "support/node_cluster.rs"]
mod node_cluster;

use node_cluster::{env_list, env_u64, key, NodeCluster, Rng, CLUSTER, KEYS};

/// Bytes per value (as `vs_etcd`).
const VALUE_BYTES: usize = 128;

fn load_avg_1m() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|f| f.parse().ok()))
        .unwrap_or(f64::NAN)
}

/// Clock ticks per second of `/proc/<pid>/stat`'s times (Linux: 100).
const TICKS_PER_SEC: u64 = 100;

/// One server process's counters at one moment.
#[derive(Clone, Copy, Default, Debug)]
struct ProcCounters {
    cpu_us: u64,
    voluntary: u64,
    nonvoluntary: u64,
}

impl ProcCounters {
    fn read(pid: u32) -> ProcCounters {
        let mut counters = ProcCounters::default();
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            // Fields after the command's closing parenthesis: utime and
            // stime are the 12th and 13th of them.
            if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
                let fields: Vec<&str> = rest.split_whitespace().collect();
                let ticks: u64 = fields
                    .get(11..13)
                    .map(|f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum())
                    .unwrap_or(0);
                counters.cpu_us = ticks * 1_000_000 / TICKS_PER_SEC;
            }
        }
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for task in tasks.flatten() {
                let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
                    continue;
                };
                for line in status.lines() {
                    let number = |l: &str| {
                        l.split_whitespace()
                            .nth(1)
                            .and_then(|v| v.parse::<u64>().ok())
                            .unwrap_or(0)
                    };
                    if line.starts_with("voluntary_ctxt_switches:") {
                        counters.voluntary += number(line);
                    } else if line.starts_with("nonvoluntary_ctxt_switches:") {
                        counters.nonvoluntary += number(line);
                    }
                }
            }
        }
        counters
    }

    fn since(self, before: ProcCounters) -> ProcCounters {
        ProcCounters {
            cpu_us: self.cpu_us.saturating_sub(before.cpu_us),
            voluntary: self.voluntary.saturating_sub(before.voluntary),
            nonvoluntary: self.nonvoluntary.saturating_sub(before.nonvoluntary),
        }
    }
}

/// The cluster, its processes in id order, and which of them leads.
struct Cluster {
    nodes: NodeCluster,
    pids: Vec<u32>,
}

impl Cluster {
    fn start(runtime: &tokio::runtime::Runtime, threads: u64, tick_ms: Option<u64>) -> Cluster {
        let mut args = vec!["--worker-threads".to_string(), threads.to_string()];
        if let Some(ms) = tick_ms {
            args.extend(["--tick-ms".to_string(), ms.to_string()]);
        }
        let nodes = NodeCluster::start_logged(3, |_| args.clone(), true);
        let pids = nodes.processes.pids();
        let value = Bytes::from(vec![b'v'; VALUE_BYTES]);
        runtime.block_on(node_cluster::preload_keys(&nodes.servers, value.clone()));
        Cluster { nodes, pids }
    }

    /// The index (0-based, id order) of the server that says it leads.
    fn leader(&self, runtime: &tokio::runtime::Runtime) -> Option<usize> {
        runtime.block_on(async {
            let mut client =
                OneGroupClient::new(ClientConfig::new(self.nodes.servers.clone(), CLUSTER));
            for server in 0..self.nodes.servers.len() {
                if let Ok(status) = client.status(server).await {
                    if status.role == "Leader" {
                        return Some(server);
                    }
                }
            }
            None
        })
    }

    /// Each server's allocation counters (feature `count-alloc`): sends
    /// `SIGUSR1` and reads the newest line the server printed; `None` when
    /// a server printed none (built without the feature).
    fn alloc_counts(&self) -> Option<Vec<(u64, u64)>> {
        let before: Vec<usize> = (0..self.pids.len())
            .map(|i| alloc_lines(&self.nodes.stderr_file(i as u64 + 1)).len())
            .collect();
        for pid in &self.pids {
            signal(*pid, "USR1");
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let lines: Vec<Vec<(u64, u64)>> = (0..self.pids.len())
                .map(|i| alloc_lines(&self.nodes.stderr_file(i as u64 + 1)))
                .collect();
            if lines.iter().zip(&before).all(|(l, b)| l.len() > *b) {
                return Some(lines.iter().map(|l| l[l.len() - 1]).collect());
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The `count-alloc:` lines of a server's stderr: (allocations, bytes).
fn alloc_lines(path: &Path) -> Vec<(u64, u64)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.strip_prefix("count-alloc: ")?.split(' ').collect();
            match words.as_slice() {
                ["allocations", a, "bytes", b, ..] => Some((a.parse().ok()?, b.parse().ok()?)),
                _ => None,
            }
        })
        .collect()
}

fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status();
}

/// Whether this window's clients share one connection per server
/// (`SharedConnections`: requests pipelined, a batch's answers in one
/// write) instead of one connection each; set by `main` per window.
static SHARED: AtomicBool = AtomicBool::new(false);

/// The window's clients, as its lines name them.
fn who(clients: usize) -> String {
    format!(
        "clients={clients} shared={}",
        u8::from(SHARED.load(Ordering::Relaxed))
    )
}

/// Runs `clients` closed-loop writers for `seconds`; returns the puts
/// acknowledged and the errors.
fn run_load(
    runtime: &tokio::runtime::Runtime,
    servers: &[String],
    clients: usize,
    seconds: u64,
    mut during: impl FnMut(),
) -> (u64, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let puts = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let counting = Arc::new(AtomicBool::new(false));
    // Connect and make one put each before the window opens.
    let ready = Arc::new(AtomicU64::new(0));
    let shared = SHARED.load(Ordering::Relaxed).then(SharedConnections::new);
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (stop, puts, errors, counting, ready) = (
                stop.clone(),
                puts.clone(),
                errors.clone(),
                counting.clone(),
                ready.clone(),
            );
            let servers = servers.to_vec();
            let shared = shared.clone();
            runtime.spawn(async move {
                let value = Bytes::from(vec![b'w'; VALUE_BYTES]);
                let mut config = ClientConfig::new(servers, CLUSTER);
                config.shared = shared;
                let mut client = KvClient::new(config);
                let mut rng = Rng::for_client(c as u64 + 1);
                let _ = client.put(key(c as u64), value.clone()).await;
                ready.fetch_add(1, Ordering::Relaxed);
                while !stop.load(Ordering::Relaxed) {
                    let result = client.put(key(rng.next() >> 8), value.clone()).await;
                    if counting.load(Ordering::Relaxed) {
                        match result {
                            Ok(()) => puts.fetch_add(1, Ordering::Relaxed),
                            Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while ready.load(Ordering::Relaxed) < clients as u64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    during();
    counting.store(true, Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(seconds));
    counting.store(false, Ordering::Relaxed);
    let counted = (puts.load(Ordering::Relaxed), errors.load(Ordering::Relaxed));
    stop.store(true, Ordering::Relaxed);
    runtime.block_on(async {
        for task in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
        }
    });
    counted
}

/// The plain window: CPU, context switches and allocations per put.
fn plain_window(
    runtime: &tokio::runtime::Runtime,
    cluster: &Cluster,
    clients: usize,
    seconds: u64,
    alloc: bool,
) {
    let who = who(clients);
    let mut before = Vec::new();
    let mut alloc_before = None;
    let (puts, errors) = run_load(runtime, &cluster.nodes.servers, clients, seconds, || {
        alloc_before = if alloc { cluster.alloc_counts() } else { None };
        before = cluster
            .pids
            .iter()
            .map(|p| ProcCounters::read(*p))
            .collect();
    });
    let after: Vec<ProcCounters> = cluster
        .pids
        .iter()
        .map(|p| ProcCounters::read(*p))
        .collect();
    let alloc_after = if alloc { cluster.alloc_counts() } else { None };
    let load = load_avg_1m();
    let per_put = |v: u64| v as f64 / puts.max(1) as f64;
    let deltas: Vec<ProcCounters> = after
        .iter()
        .zip(&before)
        .map(|(a, b)| a.since(*b))
        .collect();
    let cpu: u64 = deltas.iter().map(|d| d.cpu_us).sum();
    let vol: u64 = deltas.iter().map(|d| d.voluntary).sum();
    let nonvol: u64 = deltas.iter().map(|d| d.nonvoluntary).sum();
    println!(
        "plain {who} secs={seconds} puts={puts} errors={errors} puts_per_s={:.0} \
         cpu_us_per_put={:.2} per_server_cpu_us_per_put={} csw_vol_per_put={:.3} \
         csw_nonvol_per_put={:.3} load={load:.2}",
        puts as f64 / seconds as f64,
        per_put(cpu),
        deltas
            .iter()
            .map(|d| format!("{:.2}", per_put(d.cpu_us)))
            .collect::<Vec<_>>()
            .join("/"),
        per_put(vol),
        per_put(nonvol),
    );
    if alloc {
        match (alloc_before, alloc_after) {
            (Some(b), Some(a)) => {
                let allocs: u64 = a.iter().zip(&b).map(|(a, b)| a.0 - b.0).sum();
                let bytes: u64 = a.iter().zip(&b).map(|(a, b)| a.1 - b.1).sum();
                println!(
                    "alloc {who} puts={puts} allocations_per_put={:.2} \
                     bytes_per_put={:.0} per_server_allocations_per_put={} load={load:.2}",
                    per_put(allocs),
                    per_put(bytes),
                    a.iter()
                        .zip(&b)
                        .map(|(a, b)| format!("{:.2}", per_put(a.0 - b.0)))
                        .collect::<Vec<_>>()
                        .join("/"),
                );
            }
            _ => println!(
                "alloc {who}: the servers printed no counters (build them with \
                 --features count-alloc)"
            ),
        }
    }
}

/// One `strace -c -f` summary: calls by system call.
fn parse_strace_summary(text: &str) -> BTreeMap<String, u64> {
    let mut calls = BTreeMap::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        // "% time seconds usecs/call calls [errors] syscall"
        if words.len() < 5 || words[0].parse::<f64>().is_err() {
            continue;
        }
        let name = words[words.len() - 1];
        if name == "total" {
            continue;
        }
        if let Ok(n) = words[3].parse::<u64>() {
            *calls.entry(name.to_string()).or_insert(0) += n;
        }
    }
    calls
}

/// The strace window: system calls by kind per put, per role.
fn strace_window(
    runtime: &tokio::runtime::Runtime,
    cluster: &Cluster,
    leader: usize,
    clients: usize,
    seconds: u64,
    dir: &Path,
) {
    let who = who(clients);
    let files: Vec<PathBuf> = (0..cluster.pids.len())
        .map(|i| dir.join(format!("strace-{clients}-node{}.txt", i + 1)))
        .collect();
    let mut tracers: Vec<Child> = Vec::new();
    let (puts, _) = run_load(runtime, &cluster.nodes.servers, clients, seconds, || {
        for (pid, file) in cluster.pids.iter().zip(&files) {
            let tracer = Command::new("strace")
                .args(["-c", "-f", "-o"])
                .arg(file)
                .args(["-p", &pid.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("run strace");
            tracers.push(tracer);
        }
        // strace attaches to every thread before counting.
        std::thread::sleep(Duration::from_millis(300));
    });
    for tracer in &mut tracers {
        signal(tracer.id(), "INT");
    }
    for tracer in &mut tracers {
        let _ = tracer.wait();
    }
    let load = load_avg_1m();
    let per_put = |v: u64| v as f64 / puts.max(1) as f64;
    let mut all: BTreeMap<String, u64> = BTreeMap::new();
    for (i, file) in files.iter().enumerate() {
        let calls = parse_strace_summary(&std::fs::read_to_string(file).unwrap_or_default());
        let role = if i == leader { "leader" } else { "follower" };
        let total: u64 = calls.values().sum();
        let by_kind = calls
            .iter()
            .filter(|(_, n)| per_put(**n) >= 0.005)
            .map(|(k, n)| format!("{k}={:.3}", per_put(*n)))
            .collect::<Vec<_>>()
            .join(" ");
        println!(
            "strace {who} node={} role={role} puts={puts} syscalls_per_put={:.3} {by_kind}",
            i + 1,
            per_put(total)
        );
        for (k, n) in calls {
            *all.entry(k).or_insert(0) += n;
        }
    }
    let total: u64 = all.values().sum();
    println!(
        "strace {who} node=all puts={puts} puts_per_s={:.0} syscalls_per_put={:.3} {} load={load:.2}",
        puts as f64 / seconds as f64,
        per_put(total),
        all.iter()
            .filter(|(_, n)| per_put(**n) >= 0.005)
            .map(|(k, n)| format!("{k}={:.3}", per_put(*n)))
            .collect::<Vec<_>>()
            .join(" ")
    );
}

/// The perf window: profiles of the leader and one follower.
fn perf_window(
    runtime: &tokio::runtime::Runtime,
    cluster: &Cluster,
    leader: usize,
    clients: usize,
    seconds: u64,
    dir: &Path,
) {
    let who = who(clients);
    let follower = (leader + 1) % cluster.pids.len();
    let targets = [("leader", leader), ("follower", follower)];
    let mut recorders: Vec<Child> = Vec::new();
    let mut before = Vec::new();
    let (puts, _) = run_load(runtime, &cluster.nodes.servers, clients, seconds, || {
        for (name, i) in targets {
            let recorder = Command::new("perf")
                .args(["record", "--call-graph", "dwarf,8192", "-F", "299", "-o"])
                .arg(dir.join(format!("{name}-{clients}.data")))
                .args(["-p", &cluster.pids[i].to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("run perf");
            recorders.push(recorder);
        }
        std::thread::sleep(Duration::from_millis(300));
        before = targets
            .iter()
            .map(|(_, i)| ProcCounters::read(cluster.pids[*i]))
            .collect();
    });
    let after: Vec<ProcCounters> = targets
        .iter()
        .map(|(_, i)| ProcCounters::read(cluster.pids[*i]))
        .collect();
    for recorder in &mut recorders {
        signal(recorder.id(), "INT");
    }
    for recorder in &mut recorders {
        let _ = recorder.wait();
    }
    let load = load_avg_1m();
    let cpu: Vec<u64> = after
        .iter()
        .zip(&before)
        .map(|(a, b)| a.since(*b).cpu_us)
        .collect();
    let window = format!(
        "clients {clients}\nputs {puts}\nleader_cpu_us {}\nfollower_cpu_us {}\nload {load:.2}\n",
        cpu[0], cpu[1]
    );
    std::fs::write(dir.join(format!("window-{clients}.txt")), &window).expect("write window");
    println!(
        "perf {who} puts={puts} leader_cpu_us_per_put={:.2} follower_cpu_us_per_put={:.2} \
         (profiling on) load={load:.2}",
        cpu[0] as f64 / puts.max(1) as f64,
        cpu[1] as f64 / puts.max(1) as f64
    );
}

fn main() {
    let seconds = env_u64("CONCORD_BENCH_SECS", 10);
    let clients_list = env_list("CONCORD_BENCH_CLIENTS", &[1, 64, 256]);
    let shared_list = env_list("CONCORD_BENCH_SHARED", &[0]);
    let threads = env_u64("CONCORD_BENCH_SERVER_THREADS", 1).max(1);
    let tick_ms = std::env::var("CONCORD_BENCH_TICK_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok());
    let alloc = env_u64("CONCORD_BENCH_ALLOC", 0) == 1;
    let strace = env_u64("CONCORD_BENCH_STRACE", 0) == 1;
    let perf_dir = std::env::var("CONCORD_BENCH_PERF_DIR")
        .ok()
        .map(PathBuf::from);
    let perf_seconds = env_u64("CONCORD_BENCH_PERF_SECS", 5);
    let out = std::env::var("CONCORD_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir().join("concord-cpu-breakdown"));
    std::fs::create_dir_all(&out).expect("create the output directory");
    if let Some(dir) = &perf_dir {
        std::fs::create_dir_all(dir).expect("create the perf directory");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    println!("server binary: {}", node_cluster::node_binary().display());
    println!(
        "cpu_breakdown: 3 concord-node processes, fsync on, --worker-threads {threads}; \
         {VALUE_BYTES}-byte puts over {KEYS} keys; {seconds}s windows; load generator: 2 tokio workers; \
         tick: {}; load at start {:.2}",
        tick_ms.map_or("the default".to_string(), |ms| format!("{ms} ms")),
        load_avg_1m()
    );
    let cluster = Cluster::start(&runtime, threads, tick_ms);
    // Each window names the leader before it and says if it moved: a
    // window in which leadership moved measured elections and retries.
    let leader_now = |what: &str| -> Option<usize> {
        let leader = cluster.leader(&runtime);
        match leader {
            Some(l) => println!("{what}: node {} leads", l + 1),
            None => println!("{what}: no server says it leads"),
        }
        leader
    };
    for (&clients, &shared) in clients_list
        .iter()
        .flat_map(|c| shared_list.iter().map(move |s| (c, s)))
    {
        SHARED.store(shared == 1, Ordering::Relaxed);
        let Some(leader) = leader_now("before the plain window") else {
            continue;
        };
        plain_window(&runtime, &cluster, clients, seconds, alloc);
        if strace {
            if let Some(leader) = leader_now("before the strace window") {
                strace_window(&runtime, &cluster, leader, clients, seconds, &out);
            }
        }
        if let Some(dir) = &perf_dir {
            if let Some(leader) = leader_now("before the perf window") {
                perf_window(&runtime, &cluster, leader, clients, perf_seconds, dir);
            }
        }
        if cluster.leader(&runtime) != Some(leader) {
            println!("LEADERSHIP MOVED during the windows above: their figures are suspect");
        }
    }
}
