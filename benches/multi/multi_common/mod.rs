//! What the multi-group benches share: a 3-node cluster in this process
//! on loopback TCP, each node's groups in one shared write-ahead log on
//! real files (fsync on), and the process's CPU time and resident memory.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use concord::multi::{GroupId, MultiConfig};
use concord::state_machine::{RestoreError, StateMachine};
use concord::{Config, NodeId, Role};
use concord_tokio::multi::data_dir;
use concord_tokio::multi::host::{self, MultiServerConfig, MultiServerHandle, MultiStatus};
use concord_tokio::multi::log_sink::{WalThread, WAL_THREAD_NAME};
use concord_tokio::multi::shared_log::MultiWalOptions;
use concord_tokio::multi::tcp_listener::{self, MultiListenerConfig};
use concord_tokio::multi::tcp_sender::{TcpFrameConfig, TcpFrameSender};

#[path = "../../src/env.rs"]
mod env;
// Each bench that includes this module uses part of it.
#[allow(unused_imports)]
pub use env::{env_list, env_u64};

/// The cluster's nodes.
pub const NODES: [NodeId; 3] = [1, 2, 3];

/// Counts commands; snapshots are the count.
#[derive(Default)]
pub struct Counter(u64);

impl StateMachine for Counter {
    fn apply(&mut self, _index: u64, _command: &[u8]) -> Bytes {
        self.0 += 1;
        Bytes::new()
    }

    fn snapshot(&self) -> Bytes {
        Bytes::copy_from_slice(&self.0.to_le_bytes())
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
        let bytes: [u8; 8] = snapshot
            .try_into()
            .map_err(|_| RestoreError::new("want 8 bytes"))?;
        self.0 = u64::from_le_bytes(bytes);
        Ok(())
    }
}

/// How the cluster's nodes are configured.
#[derive(Clone, Copy, Debug)]
pub struct NodeOptions {
    /// Groups 1..=groups on every node.
    pub groups: GroupId,
    /// Idle groups sleep (`MultiConfig::quiesce_after_idle_ticks`).
    pub quiesce: bool,
    /// The node's tick.
    pub tick: Duration,
}

/// Addresses of the three nodes on free loopback ports.
pub fn loopback_addrs(ports: &[u16]) -> BTreeMap<NodeId, String> {
    NODES
        .iter()
        .zip(ports)
        .map(|(id, port)| (*id, format!("127.0.0.1:{port}")))
        .collect()
}

/// Starts node `id` from its data directory `dir` (created or recovered).
pub fn start_node(
    id: NodeId,
    dir: &Path,
    options: NodeOptions,
    addrs: &BTreeMap<NodeId, String>,
) -> MultiServerHandle {
    // `CONCORD_BENCH_SYNC=0` leaves the shared logs unsynced: only to
    // tell what the syncs cost, never for a figure about durability.
    let wal_options = MultiWalOptions {
        sync: env_u64("CONCORD_BENCH_SYNC", 1) != 0,
        ..MultiWalOptions::default()
    };
    let opened = data_dir::open_data_dir(dir, wal_options).unwrap();
    let log = WalThread::start(opened.log).unwrap();
    let peers = addrs
        .iter()
        .filter(|(peer, _)| **peer != id)
        .map(|(peer, addr)| (*peer, addr.clone()))
        .collect();
    let sender = TcpFrameSender::start(TcpFrameConfig::new(id, "bench", peers));
    let mut multi = MultiConfig::new(id, NODES);
    multi.incarnation = opened.incarnation;
    multi.groups_max = multi.groups_max.max(options.groups as usize);
    if !options.quiesce {
        multi.quiesce_after_idle_ticks = None;
    }
    let configs = (1..=options.groups)
        .map(|group| {
            let mut config = Config::new(id, NODES);
            config.seed = group * 7 + id + 1_000 * opened.incarnation;
            config.compaction_threshold_entries = Some(10_000);
            (group, config)
        })
        .collect();
    let mut config = MultiServerConfig::new(multi, configs);
    config.tick = options.tick;
    let inbox = host::inbox();
    let events = inbox.0.clone();
    let handle = host::start(
        config,
        |_| Counter::default(),
        opened.recovery,
        log,
        sender,
        inbox,
    )
    .unwrap();
    let listener = std::net::TcpListener::bind(&addrs[&id]).unwrap();
    listener.set_nonblocking(true).unwrap();
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    let listener_config = MultiListenerConfig::new(id, "bench", NODES.into_iter().collect());
    tokio::spawn(tcp_listener::serve(
        listener,
        listener_config,
        events,
        handle.shutdown_signal(),
    ));
    handle
}

/// `count` of each node's status, summed over `handles` (cheap: no
/// per-group status).
async fn summed(
    handles: &BTreeMap<NodeId, Arc<MultiServerHandle>>,
    count: fn(&MultiStatus) -> usize,
) -> usize {
    let mut sum = 0;
    for handle in handles.values() {
        sum += count(&handle.status(false).await.unwrap());
    }
    sum
}

/// Groups led, summed over `handles`.
pub async fn groups_led(handles: &BTreeMap<NodeId, Arc<MultiServerHandle>>) -> usize {
    summed(handles, |status| status.groups_led).await
}

/// The layer's counters that explain idle work, summed over `handles`:
/// (group ticks, wakes, wakes to elect, peers taken for dead, frames sent).
pub async fn layer_counts(handles: &BTreeMap<NodeId, Arc<MultiServerHandle>>) -> [u64; 5] {
    let mut counts = [0; 5];
    for handle in handles.values() {
        let layer = handle.status(false).await.unwrap().layer;
        let each = [
            layer.group_ticks,
            layer.wakes,
            layer.wakes_to_elect,
            layer.peers_died,
            layer.frames_sent,
        ];
        for (sum, one) in counts.iter_mut().zip(each) {
            *sum += one;
        }
    }
    counts
}

/// Groups awake, summed over `handles`.
pub async fn groups_awake(handles: &BTreeMap<NodeId, Arc<MultiServerHandle>>) -> usize {
    summed(handles, |status| status.groups_awake).await
}

/// Least time between two per-group checks of [`leaders`].
const FULL_CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// Each group's leader among `handles`, once every group of 1..=groups
/// has exactly one there (polled every `poll`, up to `limit`).
pub async fn leaders(
    handles: &BTreeMap<NodeId, Arc<MultiServerHandle>>,
    groups: GroupId,
    poll: Duration,
    limit: Duration,
) -> BTreeMap<GroupId, NodeId> {
    let started = Instant::now();
    let deadline = started + limit;
    let mut next_report = started + Duration::from_secs(10);
    // The per-group check walks every group inside each node's loop (a
    // pause of its own at 300,000 groups); taken at every poll while a
    // deposed leader lingers, it would stall the loops it is waiting on.
    let mut next_full_check = started;
    loop {
        if Instant::now() >= next_report {
            next_report += Duration::from_secs(10);
            report_progress(handles, started).await;
        }
        // The cheap count first; the per-group check once it adds up.
        if groups_led(handles).await == groups as usize && Instant::now() >= next_full_check {
            next_full_check = Instant::now() + FULL_CHECK_INTERVAL;
            let mut led = BTreeMap::new();
            let mut twice = false;
            for (id, handle) in handles {
                for (group, status) in handle.status(true).await.unwrap().groups {
                    if status.role == Role::Leader {
                        twice |= led.insert(group, *id).is_some();
                    }
                }
            }
            if !twice && led.len() == groups as usize {
                return led;
            }
        }
        assert!(
            Instant::now() < deadline,
            "not every group led in {limit:?}"
        );
        tokio::time::sleep(poll).await;
    }
}

/// A progress line per node for a long wait: led, awake, the layer's
/// ticks against the wall clock's, elections started and given up.
async fn report_progress(handles: &BTreeMap<NodeId, Arc<MultiServerHandle>>, started: Instant) {
    let mut line = format!("  after {:.0} s:", started.elapsed().as_secs_f64());
    for (id, handle) in handles {
        let status = handle.status(false).await.unwrap();
        let layer = &status.layer;
        line.push_str(&format!(
            " n{id} led {} awake {} ticks {} (back to back {}) wakes {} sleeps {} to elect {} \
             to lead {} slots expired {} peers died {};",
            status.groups_led,
            status.groups_awake,
            layer.ticks,
            layer.ticks_back_to_back,
            layer.wakes,
            layer.sleeps,
            layer.wakes_to_elect,
            layer.wakes_to_lead,
            layer.election_slots_expired,
            layer.peers_died,
        ));
    }
    eprintln!("{line}");
}

/// Waits until no group of `handles` is awake (up to `limit`); false if
/// some still are then.
pub async fn all_asleep(
    handles: &BTreeMap<NodeId, Arc<MultiServerHandle>>,
    limit: Duration,
) -> bool {
    let started = Instant::now();
    let deadline = started + limit;
    let mut next_report = started + Duration::from_secs(10);
    while Instant::now() < deadline {
        if groups_awake(handles).await == 0 {
            return true;
        }
        if Instant::now() >= next_report {
            next_report += Duration::from_secs(10);
            report_progress(handles, started).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Stops every node.
pub async fn shutdown(handles: BTreeMap<NodeId, Arc<MultiServerHandle>>) {
    for (_, handle) in handles {
        if let Ok(handle) = Arc::try_unwrap(handle) {
            let _ = handle.shutdown().await;
        }
    }
}

/// This process's CPU time (user + system) so far, from
/// `/proc/self/stat`.
pub fn process_cpu() -> Duration {
    stat_cpu(&std::fs::read_to_string("/proc/self/stat").unwrap())
}

/// CPU time so far of this process's shared-log threads (named
/// [`WAL_THREAD_NAME`], which `/proc` cuts to 15 bytes as it does every
/// thread name), summed: what the logs' writes and syncs cost, apart
/// from the nodes' loops.
pub fn log_threads_cpu() -> Duration {
    let mut sum = Duration::ZERO;
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let task = task.unwrap().path();
        // A thread that ended meanwhile has no files left: skip it.
        let (Ok(name), Ok(stat)) = (
            std::fs::read_to_string(task.join("comm")),
            std::fs::read_to_string(task.join("stat")),
        ) else {
            continue;
        };
        let shown = &WAL_THREAD_NAME[..WAL_THREAD_NAME.len().min(15)];
        if name.trim_end() == shown {
            sum += stat_cpu(&stat);
        }
    }
    sum
}

/// User + system time of a `/proc/.../stat` line (fields 14 and 15, in
/// clock ticks of 1/100 s: the value of `CLK_TCK` on Linux).
fn stat_cpu(stat: &str) -> Duration {
    // The command name may hold spaces: fields count from after its ')'.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

/// This process's resident memory, from `/proc/self/status` (`VmRSS`).
pub fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|kib| kib * 1024)
        .unwrap()
}

/// The runtime the benches run the cluster on: by default one thread for
/// the three nodes' loops and connections (each node's log writes on its
/// own thread), so a figure is the cost of the work, not of how it was
/// spread; `CONCORD_BENCH_THREADS=N` (N > 1) runs them on N worker
/// threads instead, as three separate servers would run.
pub fn runtime() -> tokio::runtime::Runtime {
    match env_u64("CONCORD_BENCH_THREADS", 1) {
        0 | 1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
        threads => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads as usize)
            .enable_all()
            .build()
            .unwrap(),
    }
}
