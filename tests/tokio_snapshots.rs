//! Snapshots on the one runtime (`concord_tokio::cluster::start_node`:
//! the multi-group host serving group 1 beside the catalog, over
//! loopback TCP), in process, on a simulated disk in memory
//! (`NodeStorage::memory`) and then on data directories
//! (`NodeStorage::dir`): the cluster compacts, a follower that was down
//! past the trailing window is caught up by a snapshot, and nodes restart
//! from their snapshots with the state machine intact.
mod common;

use common::{free_ports, runtime, TempDir};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use concord::state_machine::{RestoreError, StateMachine};
use concord::Index;
use concord_tokio::cluster::{
    start_node, NodeSettings, NodeStorage, RunningNode, StartError, GROUP,
};
use concord_tokio::multi::page_cache::PageCacheDisk;
use concord_tokio::multi::shared_log::MultiWalOptions;
use concord_tokio::multi::wire::GroupOp;
use concord_tokio::status::NodeStatus;
use concord_tokio::wire::ClientResponse;

/// A state machine whose state the test can read: the commands applied,
/// by index.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<BTreeMap<Index, Bytes>>>);

impl StateMachine for Recorder {
    fn apply(&mut self, index: Index, command: &[u8]) -> Bytes {
        self.0
            .lock()
            .unwrap()
            .insert(index, Bytes::copy_from_slice(command));
        Bytes::from(index.to_le_bytes().to_vec())
    }

    fn snapshot(&self) -> Bytes {
        let state = self.0.lock().unwrap();
        let mut out = Vec::new();
        for (index, command) in state.iter() {
            out.extend_from_slice(&index.to_le_bytes());
            out.extend_from_slice(&(command.len() as u32).to_le_bytes());
            out.extend_from_slice(command);
        }
        Bytes::from(out)
    }

    fn restore(&mut self, mut snapshot: &[u8]) -> Result<(), RestoreError> {
        let mut state = BTreeMap::new();
        while !snapshot.is_empty() {
            if snapshot.len() < 12 {
                return Err(RestoreError::new("truncated record"));
            }
            let index = u64::from_le_bytes(snapshot[..8].try_into().unwrap());
            let len = u32::from_le_bytes(snapshot[8..12].try_into().unwrap()) as usize;
            if snapshot.len() < 12 + len {
                return Err(RestoreError::new("truncated command"));
            }
            state.insert(index, Bytes::copy_from_slice(&snapshot[12..12 + len]));
            snapshot = &snapshot[12 + len..];
        }
        *self.0.lock().unwrap() = state;
        Ok(())
    }
}

const SNAPSHOT_EVERY_ENTRIES: u64 = 40;
const TRAILING_ENTRIES: u64 = 10;
const CLUSTER: &str = "snapshots";

/// Settings of node `id` of the cluster at `peers`: 5 ms ticks, a
/// snapshot every [`SNAPSHOT_EVERY_ENTRIES`] entries keeping
/// [`TRAILING_ENTRIES`] below it.
fn settings(id: u64, peers: &BTreeMap<u64, String>) -> NodeSettings {
    let mut settings = NodeSettings::new(id, peers[&id].clone(), peers.clone(), CLUSTER);
    settings.tick = Duration::from_millis(5);
    settings.snapshot_every_entries = Some(SNAPSHOT_EVERY_ENTRIES);
    settings.compaction_trailing_entries = TRAILING_ENTRIES;
    settings
}

/// Starts a node, retrying while its address is still held by its
/// previous run's listener (which stops just after the loop does).
async fn start_with_retry<S>(
    settings: NodeSettings,
    machine: S,
    storage: NodeStorage,
) -> RunningNode
where
    S: StateMachine + Clone + Send + 'static,
{
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let made = machine.clone();
        match start_node(settings.clone(), move || made.clone(), storage.clone()).await {
            Ok(node) => return node,
            Err(StartError::Io(reason)) if Instant::now() < deadline => {
                eprintln!("start of node {} retried: {reason}", settings.id);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("node {} did not start: {e}", settings.id),
        }
    }
}

/// Where each node keeps its log: given the node and its start number
/// (1 for the first), its storage.
type StorageOf = Box<dyn Fn(u64, u64) -> NodeStorage>;

struct Cluster {
    peers: BTreeMap<u64, String>,
    nodes: Vec<Option<RunningNode>>,
    recorders: Vec<Recorder>,
    starts: Vec<u64>,
    storage: StorageOf,
}

impl Cluster {
    async fn new(storage: impl Fn(u64, u64) -> NodeStorage + 'static) -> Self {
        let ports = free_ports(3);
        let peers = (1..=3u64)
            .map(|id| (id, format!("127.0.0.1:{}", ports[id as usize - 1])))
            .collect();
        let mut cluster = Cluster {
            peers,
            nodes: (1..=3).map(|_| None).collect(),
            recorders: (1..=3).map(|_| Recorder::default()).collect(),
            starts: vec![0; 3],
            storage: Box::new(storage),
        };
        for id in 1..=3 {
            cluster.start(id).await;
        }
        cluster
    }

    async fn start(&mut self, id: u64) {
        let slot = id as usize - 1;
        // A restarted node starts with an empty state machine: whatever it
        // holds comes from its snapshot and log. (The catalog's slot gets
        // a clone too, which the host never applies to.)
        self.recorders[slot] = Recorder::default();
        self.starts[slot] += 1;
        let storage = (self.storage)(id, self.starts[slot]);
        let node = start_with_retry(
            settings(id, &self.peers),
            self.recorders[slot].clone(),
            storage,
        )
        .await;
        self.nodes[slot] = Some(node);
    }

    async fn stop(&mut self, id: u64) {
        let node = self.nodes[id as usize - 1].take().unwrap();
        node.shutdown().await.unwrap();
    }

    fn node(&self, id: u64) -> &RunningNode {
        self.nodes[id as usize - 1].as_ref().unwrap()
    }

    async fn status(&self, id: u64) -> NodeStatus {
        self.node(id).status().await.unwrap()
    }

    async fn leader(&self) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            for node in self.nodes.iter().flatten() {
                if let Some(status) = node.status().await {
                    if status.role == "Leader" {
                        return status.id;
                    }
                }
            }
            assert!(Instant::now() < deadline, "no leader elected");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Writes `count` commands through the leader (retrying refusals).
    async fn write(&self, from: u32, count: u32) {
        let mut i = from;
        let deadline = Instant::now() + Duration::from_secs(20);
        while i < from + count {
            assert!(Instant::now() < deadline, "writes did not complete");
            let leader = self.leader().await;
            let command = GroupOp::Command(Bytes::from(format!("command {i}")));
            match self.node(leader).server.call(GROUP, command).await {
                ClientResponse::Done(_) => i += 1,
                _ => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    /// Waits until node `id` applied `index`.
    async fn wait_applied(&self, id: u64, index: Index) -> NodeStatus {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let status = self.status(id).await;
            if status.applied_index >= index {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "node {id} did not apply {index}: {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The commands node `id` applied, up to `index`.
    fn state(&self, id: u64, index: Index) -> Vec<(Index, Bytes)> {
        let state = self.recorders[id as usize - 1].0.lock().unwrap();
        state
            .range(..=index)
            .map(|(i, c)| (*i, c.clone()))
            .collect()
    }

    async fn shutdown(mut self) {
        for id in 1..=3 {
            if self.nodes[id as usize - 1].is_some() {
                self.stop(id).await;
            }
        }
    }
}

/// The scenario both storages run: compact, lose a follower past the
/// trailing window, catch it up by snapshot; then restart every node from
/// its snapshot.
async fn follower_caught_up_by_snapshot_then_full_restart(
    storage: impl Fn(u64, u64) -> NodeStorage + 'static,
) {
    let mut cluster = Cluster::new(storage).await;
    cluster.write(0, 100).await;
    let leader = cluster.leader().await;
    let status = cluster.status(leader).await;
    assert!(
        status.snapshot_index > 0 && status.server.snapshots_taken > 0,
        "the leader compacted: {status:?}"
    );
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    cluster.stop(follower).await;
    // More than a snapshot interval plus the trailing window.
    cluster
        .write(100, (SNAPSHOT_EVERY_ENTRIES + TRAILING_ENTRIES) as u32 * 2)
        .await;
    // Down long enough that the leader's connection to it fails to
    // reconnect: the frames queued for it are then dropped (a frame
    // still queued at the restart would carry the entries it missed, and
    // no snapshot would be needed).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let leader = cluster.leader().await;
    let leader_status = cluster.status(leader).await;
    assert!(leader_status.first_index > 101, "{leader_status:?}");
    cluster.start(follower).await;
    let target = leader_status.commit_index;
    let status = cluster.wait_applied(follower, target).await;
    assert!(
        status.server.snapshots_installed >= 1,
        "the follower was caught up by a snapshot: {status:?}"
    );
    assert_eq!(
        cluster.state(follower, target),
        cluster.state(leader, target),
        "the follower's state matches the leader's"
    );
    // Everything, including the snapshot's sessions of state, survives a
    // restart of all three.
    for id in 1..=3 {
        cluster.stop(id).await;
    }
    for id in 1..=3 {
        cluster.start(id).await;
    }
    for id in 1..=3 {
        let status = cluster.status(id).await;
        assert!(
            status.snapshot_index > 0,
            "node {id} restarted from a snapshot: {status:?}"
        );
        assert_eq!(status.applied_index, status.snapshot_index);
        assert!(
            cluster.state(id, status.snapshot_index).len() as u64 >= SNAPSHOT_EVERY_ENTRIES,
            "node {id} restored its state machine from the snapshot: {status:?}"
        );
    }
    cluster.write(1000, 5).await;
    let leader = cluster.leader().await;
    let target = cluster.status(leader).await.commit_index;
    let expected = cluster.state(leader, target);
    assert_eq!(
        expected.len() as u32,
        100 + (SNAPSHOT_EVERY_ENTRIES + TRAILING_ENTRIES) as u32 * 2 + 5,
        "every write is in the leader's state machine once"
    );
    for id in 1..=3 {
        cluster.wait_applied(id, target).await;
        assert_eq!(cluster.state(id, target), expected, "node {id}");
    }
    cluster.shutdown().await;
}

#[test]
fn memory_disk_follower_is_caught_up_by_snapshot_and_all_restart_from_snapshots() {
    let disks: Vec<PageCacheDisk> = (0..3).map(|_| PageCacheDisk::new()).collect();
    runtime().block_on(follower_caught_up_by_snapshot_then_full_restart(
        move |id, start| NodeStorage::memory(disks[id as usize - 1].clone(), start),
    ));
}

#[test]
fn data_dir_follower_is_caught_up_by_snapshot_and_all_restart_from_snapshots() {
    let dirs: Vec<TempDir> = (1..=3)
        .map(|id| TempDir::new(&format!("tokio-snapshots-{id}")))
        .collect();
    let paths: Vec<_> = dirs.iter().map(|dir| dir.0.clone()).collect();
    runtime().block_on(follower_caught_up_by_snapshot_then_full_restart(
        move |id, _| NodeStorage::Dir {
            path: paths[id as usize - 1].clone(),
            // Small segments, so compaction deletes some.
            options: MultiWalOptions {
                segment_bytes_max: 2048,
                ..MultiWalOptions::default()
            },
        },
    ));
    drop(dirs);
}

/// A [`Recorder`] that remembers how long its last `restore` took.
#[derive(Clone, Default)]
struct TimedRecorder {
    recorder: Recorder,
    restore_took: Arc<Mutex<Option<Duration>>>,
}

impl StateMachine for TimedRecorder {
    fn apply(&mut self, index: Index, command: &[u8]) -> Bytes {
        self.recorder.apply(index, command)
    }

    fn snapshot(&self) -> Bytes {
        self.recorder.snapshot()
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
        let started = Instant::now();
        let result = self.recorder.restore(snapshot);
        *self.restore_took.lock().unwrap() = Some(started.elapsed());
        result
    }
}

/// Restart time of a compacted node (a figure, not a check; run with
/// `cargo test --release -p concord-tests --test tokio_snapshots -- --ignored --nocapture`).
/// A one-node cluster on a data directory applies
/// `CONCORD_RESTART_WRITES` (default 250 000) commands of 100 bytes,
/// snapshotting every 100 000 entries (the `concord-node` default); it is
/// stopped, and the time to open the directory, recover the shared log,
/// restore the state machine, answer a status query and be leader with
/// the log applied is printed, with a breakdown. The state machine keeps
/// every command, so its snapshot grows with the writes (about 112 bytes
/// per write).
#[test]
#[ignore = "a measurement; prints the restart time"]
fn restart_time_of_a_compacted_node() {
    let restart_writes: u64 = std::env::var("CONCORD_RESTART_WRITES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(250_000);
    const IN_FLIGHT_MAX: usize = 2_000;
    let dir = TempDir::new("restart-time");
    let path = dir.0.clone();
    let peers = BTreeMap::from([(1, format!("127.0.0.1:{}", free_ports(1)[0]))]);
    let settings = || {
        let mut settings = NodeSettings::new(1, peers[&1].clone(), peers.clone(), CLUSTER);
        settings.tick = Duration::from_millis(5);
        settings.snapshot_every_entries = Some(100_000);
        settings
    };
    runtime().block_on(async {
        let node = start_with_retry(
            settings(),
            TimedRecorder::default(),
            NodeStorage::dir(&path),
        )
        .await;
        let node = Arc::new(node);
        let started = Instant::now();
        let mut written = 0u64;
        while written < restart_writes {
            let mut calls = tokio::task::JoinSet::new();
            for _ in 0..IN_FLIGHT_MAX.min((restart_writes - written) as usize) {
                let node = node.clone();
                let command = GroupOp::Command(Bytes::from(vec![b'x'; 100]));
                calls.spawn(async move { node.server.call(GROUP, command).await });
            }
            while let Some(answer) = calls.join_next().await {
                if let ClientResponse::Done(_) = answer.unwrap() {
                    written += 1;
                }
            }
        }
        let status = node.status().await.unwrap();
        eprintln!(
            "wrote {written} commands in {:?}; applied {}, snapshot at {}, {} snapshots taken",
            started.elapsed(),
            status.applied_index,
            status.snapshot_index,
            status.server.snapshots_taken
        );
        Arc::into_inner(node).unwrap().shutdown().await.unwrap();

        // Side measurements of the parts of recovery, taken before the
        // restart itself (the files are in the page cache either way).
        let file_bytes = |sub: &str| -> (usize, u64) {
            let entries: Vec<_> = std::fs::read_dir(path.join(sub))
                .map(|d| d.flatten().collect())
                .unwrap_or_default();
            let bytes = entries
                .iter()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum();
            (entries.len(), bytes)
        };
        let (log_files, log_bytes) = file_bytes("log");
        let group_dir = path.join("groups").join(format!("{GROUP:020}"));
        let t = Instant::now();
        let snapshot = concord_tokio::snapshot_file::load_newest_snapshot(&group_dir).unwrap();
        let snapshot_load = t.elapsed();
        let snapshot_bytes = snapshot.as_ref().map_or(0, |s| s.meta().size_bytes);
        drop(snapshot);

        let restart = Instant::now();
        let machine = TimedRecorder::default();
        let restore_took = machine.restore_took.clone();
        let node = start_with_retry(settings(), machine, NodeStorage::dir(&path)).await;
        let started_after = restart.elapsed();
        let status = node.status().await.unwrap();
        let status_after = restart.elapsed();
        // Ready to serve writes: leader again, with the log after the
        // snapshot applied.
        let last_index = status.last_index;
        let ready = loop {
            let status = node.status().await.unwrap();
            if status.role == "Leader" && status.applied_index >= last_index {
                break status;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        let ready_after = restart.elapsed();
        let restore_took = restore_took.lock().unwrap().unwrap_or_default();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        eprintln!(
            "restart of a node with {} applied entries (snapshot at {}, {:.1} MiB; log {}..={}; \
             {log_files} files, {:.1} MiB in log/ before the restart):",
            status.applied_index,
            status.snapshot_index,
            snapshot_bytes as f64 / (1024.0 * 1024.0),
            status.first_index,
            status.last_index,
            log_bytes as f64 / (1024.0 * 1024.0),
        );
        eprintln!(
            "  node started (start_node: open, recover, restore) {:>8.1} ms  (state machine \
             restore {:.1} ms; the snapshot file read and verified {:.1} ms, measured apart)",
            ms(started_after),
            ms(restore_took),
            ms(snapshot_load)
        );
        eprintln!(
            "  first status answered                         {:>8.1} ms",
            ms(status_after)
        );
        eprintln!(
            "  ready: leader (term {}), {} entries re-applied after the snapshot {:>8.1} ms",
            ready.term,
            ready.applied_index - ready.snapshot_index,
            ms(ready_after)
        );
        node.shutdown().await.unwrap();
    });
    drop(dir);
}
