//! Benchmark 10(b): three servers in one process over the in-process
//! network, each with its shared log on the in-memory disk model (the
//! same server loop as the TCP nodes: the one runtime,
//! `concord_tokio::cluster::start_in_process_node`).
//!
//! **Throughput** (the default): 1, 64 and 256 concurrent clients writing
//! 128-byte commands to an empty state machine, printing operations per
//! second. `CONCORD_BENCH_COMPACTION` chooses the compaction policy:
//! `off` (the default; `Config::new` compacts never), `on` (a snapshot
//! every [`SNAPSHOT_EVERY_ENTRIES_DEFAULT`] entries keeping
//! [`COMPACTION_TRAILING_ENTRIES_DEFAULT`] below it, as `concord-node` does
//! by default) or `both`: `CONCORD_BENCH_ROUNDS` rounds (default 3) of an
//! off and an on run per client count, alternating which goes first, then
//! the median on/off ratio per client count. `CONCORD_BENCH_STATE=kv` runs
//! the key-value state machine with sessions instead (128-byte puts over
//! `CONCORD_BENCH_KEYS` keys, default 10 000), so snapshots have content.
//!
//! **Memory** (`CONCORD_BENCH_PUTS=N`): N 128-byte puts over
//! `CONCORD_BENCH_KEYS` keys into the key-value state machine with
//! compaction on (`CONCORD_BENCH_SNAPSHOT_EVERY` entries, default
//! [`SNAPSHOT_EVERY_ENTRIES_DEFAULT`]), by `CONCORD_BENCH_CLIENTS` clients
//! (default 64). Every ~10% of the run and at the end it prints puts done,
//! ops/s, the process's peak and current RSS (`VmHWM`, `VmRSS`), the
//! state's own size (key + value bytes summed over the three replicas, and
//! the newest snapshot's size per replica) and peak RSS minus that state.
//!
//! ```text
//! cargo bench -p concord-bench --bench tokio_inprocess
//! CONCORD_BENCH_SECS=5 CONCORD_BENCH_CLIENTS=1,64,256 cargo bench -p concord-bench --bench tokio_inprocess
//! CONCORD_BENCH_COMPACTION=both CONCORD_BENCH_ROUNDS=3 cargo bench -p concord-bench --bench tokio_inprocess
//! CONCORD_BENCH_PUTS=10000000 CONCORD_BENCH_KEYS=10000 cargo bench -p concord-bench --bench tokio_inprocess
//! ```

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use concord::multi::sessions;
use concord::session::SessionResponse;
use concord::state_machine::{RestoreError, StateMachine};
use concord::Index;
use concord_services::codec::{decode_request, encode_request};
use concord_services::kv::{Kv, KvRequest};
use concord_services::ServiceMachine;
use concord_tokio::cluster::{
    group_status, start_in_process_node, NodeSettings, StartError,
    COMPACTION_TRAILING_ENTRIES_DEFAULT, GROUP, SNAPSHOT_EVERY_ENTRIES_DEFAULT,
};
use concord_tokio::multi::host::MultiServerHandle;
use concord_tokio::multi::mem_network::MemFrameNetwork;
use concord_tokio::multi::page_cache::PageCacheDisk;
use concord_tokio::multi::wire::GroupOp;
use concord_tokio::null::NullStateMachine;
use concord_tokio::wire::ClientResponse;
use env::{env_list, env_u64};

#[path = "../src/env.rs"]
mod env;

const VALUE_BYTES: usize = 128;

/// The size of a replica's state, kept up to date by [`Accounted`] and
/// read by the benchmark while the servers run.
#[derive(Default)]
struct StateSize {
    /// Key bytes plus value bytes of every key stored.
    kv_bytes: AtomicU64,
    /// Bytes of the newest snapshot taken (0 before the first).
    snapshot_bytes: AtomicU64,
    /// Snapshots taken.
    snapshots: AtomicU64,
}

/// The key-value store that keeps [`StateSize`] current.
struct Accounted {
    store: ServiceMachine<Kv>,
    size: Arc<StateSize>,
}

impl StateMachine for Accounted {
    fn apply(&mut self, index: Index, command: &[u8]) -> Bytes {
        // Only puts are issued here; other operations are not accounted.
        let put = decode_request::<Kv>(command)
            .ok()
            .and_then(|(_, request)| match request {
                KvRequest::Put { key, value } => Some((key, value)),
                _ => None,
            });
        if let Some((key, value)) = &put {
            let old = self
                .store
                .state()
                .value(key)
                .map_or(0, |old| (key.len() + old.len()) as u64);
            let new = (key.len() + value.len()) as u64;
            self.size.kv_bytes.fetch_add(new, Ordering::Relaxed);
            self.size.kv_bytes.fetch_sub(old, Ordering::Relaxed);
        }
        self.store.apply(index, command)
    }

    fn snapshot(&self) -> Bytes {
        let snapshot = self.store.snapshot();
        self.size
            .snapshot_bytes
            .store(snapshot.len() as u64, Ordering::Relaxed);
        self.size.snapshots.fetch_add(1, Ordering::Relaxed);
        snapshot
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
        self.store.restore(snapshot)
    }
}

/// Which state machine the servers run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// [`NullStateMachine`]: raw 128-byte commands.
    Null,
    /// The key-value store with sessions: session-encoded 128-byte puts.
    Kv,
}

/// Node `id`'s settings under the compaction policy of one run.
fn settings(id: u64, compaction: Option<u64>) -> NodeSettings {
    let peers = (1..=3u64).map(|id| (id, format!("mem:{id}"))).collect();
    let mut settings = NodeSettings::new(id, format!("mem:{id}"), peers, "bench");
    settings.snapshot_every_entries = compaction;
    settings.compaction_trailing_entries = COMPACTION_TRAILING_ENTRIES_DEFAULT;
    settings.tick = Duration::from_millis(10);
    settings
}

struct Cluster {
    handles: Vec<Arc<MultiServerHandle>>,
    leader: usize,
    sizes: Vec<Arc<StateSize>>,
}

async fn start_cluster(state: State, compaction: Option<u64>) -> Cluster {
    let network = MemFrameNetwork::new();
    let mut handles = Vec::new();
    let mut sizes = Vec::new();
    for id in 1..=3u64 {
        let settings = settings(id, compaction);
        let started: Result<MultiServerHandle, StartError> = match state {
            State::Null => start_in_process_node(
                settings,
                || NullStateMachine,
                PageCacheDisk::new(),
                1,
                &network,
            ),
            State::Kv => {
                let size = Arc::new(StateSize::default());
                sizes.push(size.clone());
                let machine = move || Accounted {
                    store: ServiceMachine::new(),
                    size: size.clone(),
                };
                start_in_process_node(settings, machine, PageCacheDisk::new(), 1, &network)
            }
        };
        handles.push(Arc::new(started.expect("server starts")));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for (i, handle) in handles.iter().enumerate() {
            if let Some(status) = group_status(handle).await {
                if status.role == "Leader" {
                    return Cluster {
                        handles,
                        leader: i,
                        sizes,
                    };
                }
            }
        }
        assert!(Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

impl Cluster {
    async fn shutdown(self) {
        for handle in self.handles {
            if let Ok(handle) = Arc::try_unwrap(handle) {
                let _ = handle.shutdown().await;
            }
        }
    }
}

/// One client: a session (for the key-value state machine) and the
/// commands it sends.
struct Writer {
    handle: Arc<MultiServerHandle>,
    state: State,
    client: u64,
    seq: u64,
    keys: u64,
    value: Bytes,
}

impl Writer {
    async fn new(handle: Arc<MultiServerHandle>, state: State, keys: u64) -> Writer {
        let mut client = 0;
        if state == State::Kv {
            loop {
                let register = GroupOp::Command(sessions::encode_register());
                if let ClientResponse::Done(reply) = handle.call(GROUP, register).await {
                    if let Ok(SessionResponse::Registered { client: id }) =
                        SessionResponse::decode(&reply)
                    {
                        client = id;
                        break;
                    }
                }
            }
        }
        Writer {
            handle,
            state,
            client,
            seq: 0,
            keys,
            value: Bytes::from(vec![b'v'; VALUE_BYTES]),
        }
    }

    /// Sends write number `n` (its key is `n` modulo the key count); true
    /// when it was done.
    async fn write(&mut self, n: u64) -> bool {
        let command = match self.state {
            State::Null => self.value.clone(),
            State::Kv => {
                self.seq += 1;
                let put = KvRequest::Put {
                    key: Bytes::from(format!("key-{}", n % self.keys)),
                    value: self.value.clone(),
                };
                let put = encode_request::<Kv>(self.seq, &put);
                sessions::encode_command(self.client, self.seq, &put)
            }
        };
        let write = GroupOp::Command(command);
        matches!(
            self.handle.call(GROUP, write).await,
            ClientResponse::Done(_)
        )
    }
}

/// `VmHWM` (peak) and `VmRSS` (current) of this process, in bytes.
fn rss_bytes() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|kib| kib.parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Runs `clients` writers against a fresh cluster for `seconds` after a
/// one-second warm-up; returns operations per second.
fn throughput_run(
    runtime: &tokio::runtime::Runtime,
    state: State,
    compaction: Option<u64>,
    clients: usize,
    seconds: u64,
    keys: u64,
) -> f64 {
    runtime.block_on(async {
        let cluster = start_cluster(state, compaction).await;
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for c in 0..clients as u64 {
            let handle = cluster.handles[cluster.leader].clone();
            let (stop, done, failed) = (stop.clone(), done.clone(), failed.clone());
            tasks.push(tokio::spawn(async move {
                let mut writer = Writer::new(handle, state, keys).await;
                let mut n = c.wrapping_mul(7919);
                while !stop.load(Ordering::Relaxed) {
                    n = n.wrapping_add(1);
                    if writer.write(n).await {
                        done.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
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
        let snapshot_index = match group_status(&cluster.handles[cluster.leader]).await {
            Some(status) => status.snapshot_index,
            None => 0,
        };
        let rate = count as f64 / elapsed;
        let policy = match compaction {
            Some(every) => format!("on (every {every})"),
            None => "off".to_string(),
        };
        println!(
            "clients {clients:>4}  compaction {policy:<17}: {rate:>10.0} ops/s  ({count} ops in {elapsed:.1}s, {} not done, leader's snapshot at {snapshot_index})",
            failed.load(Ordering::Relaxed)
        );
        cluster.shutdown().await;
        rate
    })
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// The memory run: `puts` puts over `keys` keys with compaction on.
fn memory_run(runtime: &tokio::runtime::Runtime, puts: u64, keys: u64, clients: usize, every: u64) {
    println!(
        "memory: {puts} puts of {VALUE_BYTES}-byte values over {keys} keys, key-value state machine with sessions, {clients} clients, snapshot every {every} entries keeping {COMPACTION_TRAILING_ENTRIES_DEFAULT}"
    );
    runtime.block_on(async {
        let cluster = start_cluster(State::Kv, Some(every)).await;
        let issued = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let handle = cluster.handles[cluster.leader].clone();
            let (issued, done, failed) = (issued.clone(), done.clone(), failed.clone());
            tasks.push(tokio::spawn(async move {
                let mut writer = Writer::new(handle, State::Kv, keys).await;
                loop {
                    let n = issued.fetch_add(1, Ordering::Relaxed);
                    if n >= puts {
                        break;
                    }
                    // A put that was not done is retried under a new
                    // number, so exactly `puts` puts are done.
                    while !writer.write(n).await {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        let start = Instant::now();
        let step = (puts / 10).max(1);
        let mut next_report = step;
        let report = |label: &str, count: u64, statuses: &[concord_tokio::status::NodeStatus]| {
            let elapsed = start.elapsed().as_secs_f64();
            let (peak, current) = rss_bytes();
            let summed = |size: fn(&StateSize) -> &AtomicU64| -> u64 {
                cluster
                    .sizes
                    .iter()
                    .map(|s| size(s).load(Ordering::Relaxed))
                    .sum()
            };
            let kv = summed(|s| &s.kv_bytes);
            let snapshots: Vec<String> = cluster
                .sizes
                .iter()
                .map(|s| format!("{:.2}", mib(s.snapshot_bytes.load(Ordering::Relaxed))))
                .collect();
            let taken = summed(|s| &s.snapshots);
            let in_memory: Vec<String> = statuses
                .iter()
                .map(|s| (s.last_index + 1 - s.first_index).to_string())
                .collect();
            println!(
                "{label} {count:>9} puts {elapsed:>7.1}s {:>8.0} ops/s | RSS peak {:>7.1} MiB now {:>7.1} MiB | state (key+value bytes, 3 replicas) {:>6.2} MiB, snapshot MiB per replica [{}], {taken} taken | peak RSS - state {:>7.1} MiB | log entries in memory per node [{}]",
                count as f64 / elapsed,
                mib(peak),
                mib(current),
                mib(kv),
                snapshots.join(", "),
                mib(peak.saturating_sub(kv)),
                in_memory.join(", "),
            );
        };
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let count = done.load(Ordering::Relaxed);
            if count >= next_report || count >= puts {
                let mut statuses = Vec::new();
                for handle in &cluster.handles {
                    if let Some(status) = group_status(handle).await {
                        statuses.push(status);
                    }
                }
                if count >= puts {
                    for task in std::mem::take(&mut tasks) {
                        let _ = task.await;
                    }
                    report("done    ", count, &statuses);
                    break;
                }
                report("progress", count, &statuses);
                while next_report <= count {
                    next_report += step;
                }
            }
        }
        println!("({} calls not done and retried)", failed.load(Ordering::Relaxed));
        cluster.shutdown().await;
    });
}

fn main() {
    let seconds = env_u64("CONCORD_BENCH_SECS", 5);
    let keys = env_u64("CONCORD_BENCH_KEYS", 10_000).max(1);
    // Default: everything on one thread (no cross-thread wake-ups; fastest
    // on this 2-core machine). CONCORD_BENCH_THREADS=N: N worker threads.
    let threads = env_u64("CONCORD_BENCH_THREADS", 1) as usize;
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
    if let Some(puts) = std::env::var("CONCORD_BENCH_PUTS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        let clients = env_list("CONCORD_BENCH_CLIENTS", &[64])
            .first()
            .copied()
            .unwrap_or(64)
            .max(1);
        let every = env_u64(
            "CONCORD_BENCH_SNAPSHOT_EVERY",
            SNAPSHOT_EVERY_ENTRIES_DEFAULT,
        )
        .max(1);
        memory_run(&runtime, puts, keys, clients, every);
        return;
    }
    let clients_list = env_list("CONCORD_BENCH_CLIENTS", &[1, 64, 256]);
    let state = match std::env::var("CONCORD_BENCH_STATE").as_deref() {
        Ok("kv") => State::Kv,
        _ => State::Null,
    };
    let on = Some(SNAPSHOT_EVERY_ENTRIES_DEFAULT);
    let policy = std::env::var("CONCORD_BENCH_COMPACTION").unwrap_or_default();
    let what = match state {
        State::Null => "128-byte commands, empty state machine".to_string(),
        State::Kv => format!("128-byte puts over {keys} keys, key-value state machine"),
    };
    println!(
        "in-process 3-node cluster, in-memory transport and storage, {what}, {seconds}s per run, {threads} runtime thread(s)"
    );
    if policy != "both" {
        let compaction = if policy == "on" { on } else { None };
        for clients in clients_list {
            throughput_run(&runtime, state, compaction, clients, seconds, keys);
        }
        return;
    }
    let rounds = env_u64("CONCORD_BENCH_ROUNDS", 3).max(1);
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); clients_list.len()];
    for round in 0..rounds {
        println!("round {}/{rounds}", round + 1);
        for (i, &clients) in clients_list.iter().enumerate() {
            // Alternate which policy goes first, so drift (the machine
            // warming up, or another load) does not favour one side.
            let order = if round % 2 == 0 {
                [None, on]
            } else {
                [on, None]
            };
            let mut rates = [0.0; 2];
            for compaction in order {
                let rate = throughput_run(&runtime, state, compaction, clients, seconds, keys);
                rates[usize::from(compaction.is_some())] = rate;
            }
            ratios[i].push(rates[1] / rates[0]);
        }
    }
    for (i, clients) in clients_list.iter().enumerate() {
        let cells: Vec<String> = ratios[i].iter().map(|r| format!("{r:.3}")).collect();
        println!(
            "clients {clients:>4}: compaction on/off ratio per round [{}], median {:.3}",
            cells.join(", "),
            median(&mut ratios[i])
        );
    }
}
