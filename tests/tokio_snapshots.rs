//! Snapshots in the tokio server loop, in process (in-memory transport,
//! `MemStorage`, then `FileStorage`): the cluster compacts, a follower that
//! was down past the trailing window is caught up by a snapshot, and nodes
//! restart from their snapshots with the state machine intact.
mod common;

use common::runtime;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use concord::state_machine::{RestoreError, StateMachine};
use concord::{Config, Index};
use concord_tokio::server::{self, ServerConfig, ServerHandle};
use concord_tokio::status::NodeStatus;
use concord_tokio::storage::{MemDisk, MemStorage, Storage};
use concord_tokio::transport::MemNetwork;
use concord_tokio::wal::{FileStorage, WalOptions};
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

fn raft_config(id: u64) -> Config {
    let mut config = Config::new(id, [1, 2, 3]);
    config.seed = id * 7919;
    config.compaction_threshold_entries = Some(SNAPSHOT_EVERY_ENTRIES);
    config.compaction_trailing_entries = TRAILING_ENTRIES;
    config.snapshot_chunk_bytes_max = 512;
    config
}

struct Cluster<St> {
    network: MemNetwork,
    servers: Vec<Option<ServerHandle>>,
    recorders: Vec<Recorder>,
    storage: Box<dyn Fn(u64) -> St>,
}

impl<St: Storage> Cluster<St> {
    fn new(storage: impl Fn(u64) -> St + 'static) -> Self {
        let mut cluster = Cluster {
            network: MemNetwork::new(),
            servers: (1..=3).map(|_| None).collect(),
            recorders: Vec::new(),
            storage: Box::new(storage),
        };
        for id in 1..=3 {
            cluster.recorders.push(Recorder::default());
            cluster.start(id);
        }
        cluster
    }

    fn start(&mut self, id: u64) {
        let inbox = server::inbox();
        self.network.register(id, inbox.0.clone());
        let mut config = ServerConfig::new(raft_config(id));
        config.tick = Duration::from_millis(5);
        // A restarted node starts with an empty state machine: whatever it
        // holds comes from its snapshot and log.
        self.recorders[id as usize - 1] = Recorder::default();
        let handle = server::start(
            config,
            self.recorders[id as usize - 1].clone(),
            (self.storage)(id),
            self.network.transport(id),
            inbox,
        )
        .unwrap();
        self.servers[id as usize - 1] = Some(handle);
    }

    async fn stop(&mut self, id: u64) {
        self.network.unregister(id);
        let handle = self.servers[id as usize - 1].take().unwrap();
        handle.shutdown().await.unwrap();
    }

    async fn status(&self, id: u64) -> NodeStatus {
        self.servers[id as usize - 1]
            .as_ref()
            .unwrap()
            .status()
            .await
            .unwrap()
    }

    async fn leader(&self) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            for server in self.servers.iter().flatten() {
                if let Some(status) = server.status().await {
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
            let handle = self.servers[leader as usize - 1].as_ref().unwrap();
            match handle.call(Bytes::from(format!("command {i}"))).await {
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
            if self.servers[id as usize - 1].is_some() {
                self.stop(id).await;
            }
        }
    }
}

/// The scenario both storages run: compact, lose a follower past the
/// trailing window, catch it up by snapshot; then restart every node from
/// its snapshot.
async fn follower_caught_up_by_snapshot_then_full_restart<St: Storage>(
    storage: impl Fn(u64) -> St + 'static,
) {
    let mut cluster = Cluster::new(storage);
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
    let leader = cluster.leader().await;
    let leader_status = cluster.status(leader).await;
    assert!(leader_status.first_index > 101, "{leader_status:?}");
    cluster.start(follower);
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
        cluster.start(id);
    }
    for id in 1..=3 {
        let status = cluster.status(id).await;
        assert!(
            status.snapshot_index > 0,
            "node {id} restarted from a snapshot: {status:?}"
        );
        assert_eq!(status.applied_index, status.snapshot_index);
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
fn mem_storage_follower_is_caught_up_by_snapshot_and_all_restart_from_snapshots() {
    let disks: Vec<MemDisk> = (0..3).map(|_| MemDisk::new()).collect();
    runtime().block_on(follower_caught_up_by_snapshot_then_full_restart(
        move |id| MemStorage::new(disks[id as usize - 1].clone()),
    ));
}

struct TempDirs(Vec<PathBuf>);

impl Drop for TempDirs {
    fn drop(&mut self) {
        for dir in &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[test]
fn file_storage_follower_is_caught_up_by_snapshot_and_all_restart_from_snapshots() {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dirs = TempDirs(
        (1..=3)
            .map(|id| {
                std::env::temp_dir().join(format!(
                    "concord-tokio-snapshots-{}-{nanos}-{id}",
                    std::process::id()
                ))
            })
            .collect(),
    );
    let paths = dirs.0.clone();
    runtime().block_on(follower_caught_up_by_snapshot_then_full_restart(
        move |id| {
            let options = WalOptions {
                segment_bytes_max: 2048,
                ..WalOptions::default()
            };
            FileStorage::open(&paths[id as usize - 1], options).unwrap()
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
/// `cargo test --release --test tokio_snapshots -- --ignored --nocapture`).
/// A one-node cluster on `FileStorage` applies `CONCORD_RESTART_WRITES`
/// (default 250 000) commands of 100 bytes, snapshotting every 100 000
/// entries (the `concord-node` default); it is stopped, and the time to
/// recover storage, restore the state machine, answer a status query and
/// be leader with the log applied is printed, with a breakdown. The state
/// machine keeps every command, so its snapshot grows with the writes
/// (about 112 bytes per write).
#[test]
#[ignore = "a measurement; prints the restart time"]
fn restart_time_of_a_compacted_node() {
    let restart_writes: u64 = std::env::var("CONCORD_RESTART_WRITES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(250_000);
    const IN_FLIGHT_MAX: usize = 2_000;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dirs = TempDirs(vec![std::env::temp_dir().join(format!(
        "concord-restart-time-{}-{nanos}",
        std::process::id()
    ))]);
    let dir = dirs.0[0].clone();
    let config = || {
        let mut raft = Config::new(1, [1]);
        raft.compaction_threshold_entries = Some(100_000);
        let mut config = ServerConfig::new(raft);
        config.tick = Duration::from_millis(5);
        config
    };
    runtime().block_on(async {
        let network = MemNetwork::new();
        let inbox = server::inbox();
        network.register(1, inbox.0.clone());
        let storage = FileStorage::open(&dir, WalOptions::default()).unwrap();
        let handle = server::start(
            config(),
            TimedRecorder::default(),
            storage,
            network.transport(1),
            inbox,
        )
        .unwrap();
        let handle = Arc::new(handle);
        let started = Instant::now();
        let mut written = 0u64;
        while written < restart_writes {
            let mut calls = tokio::task::JoinSet::new();
            for _ in 0..IN_FLIGHT_MAX.min((restart_writes - written) as usize) {
                let handle = handle.clone();
                let command = Bytes::from(vec![b'x'; 100]);
                calls.spawn(async move { handle.call(command).await });
            }
            while let Some(answer) = calls.join_next().await {
                if let ClientResponse::Done(_) = answer.unwrap() {
                    written += 1;
                }
            }
        }
        let status = handle.status().await.unwrap();
        eprintln!(
            "wrote {written} commands in {:?}; applied {}, snapshot at {}, {} snapshots taken",
            started.elapsed(),
            status.applied_index,
            status.snapshot_index,
            status.server.snapshots_taken
        );
        Arc::into_inner(handle).unwrap().shutdown().await.unwrap();
        network.unregister(1);

        // Side measurements of the parts of recovery, taken before the
        // restart itself (the files are in the page cache either way).
        let file_bytes = |sub: &str| -> (usize, u64) {
            let entries: Vec<_> = std::fs::read_dir(dir.join(sub))
                .map(|d| d.flatten().collect())
                .unwrap_or_default();
            let bytes = entries
                .iter()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum();
            (entries.len(), bytes)
        };
        let (wal_files, wal_bytes) = file_bytes("wal");
        let t = Instant::now();
        let snapshot =
            concord_tokio::snapshot_file::load_newest_snapshot(&dir.join("snapshots")).unwrap();
        let snapshot_load = t.elapsed();
        let snapshot_bytes = snapshot.as_ref().map_or(0, |s| s.meta().size_bytes);
        let t = Instant::now();
        let read_back = snapshot
            .as_ref()
            .map(|s| s.read_chunk(0, s.meta().size_bytes).unwrap());
        std::hint::black_box(read_back);
        let read_back_took = t.elapsed();
        drop(snapshot);

        let restart = Instant::now();
        let storage = FileStorage::open(&dir, WalOptions::default()).unwrap();
        let recovered_after = restart.elapsed();
        let inbox = server::inbox();
        network.register(1, inbox.0.clone());
        let machine = TimedRecorder::default();
        let restore_took = machine.restore_took.clone();
        let handle = server::start(config(), machine, storage, network.transport(1), inbox).unwrap();
        let started_after = restart.elapsed();
        let status = handle.status().await.unwrap();
        let status_after = restart.elapsed();
        // Ready to serve writes: leader again, with the log after the
        // snapshot applied.
        let last_index = status.last_index;
        let ready = loop {
            let status = handle.status().await.unwrap();
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
             {wal_files} files, {:.1} MiB in wal/ before the restart):",
            status.applied_index,
            status.snapshot_index,
            snapshot_bytes as f64 / (1024.0 * 1024.0),
            status.first_index,
            status.last_index,
            wal_bytes as f64 / (1024.0 * 1024.0),
        );
        eprintln!(
            "  storage recovered (FileStorage::open)         {:>8.1} ms",
            ms(recovered_after)
        );
        eprintln!(
            "    of which, measured apart: snapshot file read and verified {:.1} ms; \
             the rest, ~{:.1} ms, reads the WAL",
            ms(snapshot_load),
            ms(recovered_after.saturating_sub(snapshot_load))
        );
        eprintln!(
            "  server started (server::start)                {:>8.1} ms  (state machine restore {:.1} ms; \
             before it the snapshot is read back, {:.1} ms measured apart; the rest is \
             Node::new)",
            ms(started_after),
            ms(restore_took),
            ms(read_back_took)
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
        handle.shutdown().await.unwrap();
    });
    drop(dirs);
}
