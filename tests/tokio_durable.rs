//! The one runtime's host driving a [`DurableStateMachine`]: a restart
//! replays only the log after the state machine's durable applied index
//! and restores nothing; the log is never compacted past that index; a
//! state machine whose storage was lost is rebuilt from the stored
//! snapshot by streaming, or refused when nothing can rebuild it; a
//! follower behind the leader's log restores by streaming, in chunks.
//!
//! The state machine here keeps a key-value map in one file of its own,
//! rewritten atomically (temporary file, fsync, rename) with the applied
//! index in its first line at every sync: simple, but it holds to the
//! contract (the index recorded with the state it covers, point-in-time
//! views, restores staged in a file and swapped in by a rename).
mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::TempDir;

use concord::durable::{DurableError, DurableStateMachine, StateRestore, StateView};
use concord::multi::{GroupId, MultiConfig};
use concord::{Config, Entry, EntryPayload, Index, NodeId, ReadPath, Role};
use concord_tokio::multi::data_dir;
use concord_tokio::multi::host::{self, MultiServerConfig, MultiServerHandle};
use concord_tokio::multi::log_sink::WalThread;
use concord_tokio::multi::mem_network::MemFrameNetwork;
use concord_tokio::multi::shared_log::MultiWalOptions;
use concord_tokio::multi::wire::GroupOp;
use concord_tokio::wire::ClientResponse;

const GROUP: GroupId = 1;

/// Writes of the one-node tests: the last few after the last snapshot
/// (one every 8 entries), so the state machine's background flush takes
/// its durable index past the snapshot's.
const WRITES: usize = 53;

/// What the state machines of one start of a node did.
#[derive(Debug, Default)]
struct Counters {
    /// The first index applied after the start.
    first_applied: Mutex<Option<Index>>,
    restores_begun: AtomicU64,
    /// Calls of `StateRestore::write`.
    restore_writes: AtomicU64,
    /// The durable applied index found at the start.
    durable_at_start: AtomicU64,
    /// While set, a view's stream waits before each read.
    hold_views: AtomicBool,
    /// Views taken.
    views_taken: AtomicU64,
}

/// A key-value map (`key=value` commands; a read is a key) in one file.
struct FileKv {
    file: PathBuf,
    map: BTreeMap<String, String>,
    applied: Index,
    durable: Index,
    /// Batches applied since the start.
    batches: u64,
    counters: Arc<Counters>,
}

fn encode(map: &BTreeMap<String, String>) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, value) in map {
        out.extend_from_slice(format!("{key}={value}\n").as_bytes());
    }
    out
}

fn decode(data: &[u8]) -> Result<BTreeMap<String, String>, DurableError> {
    let text = std::str::from_utf8(data).map_err(|e| DurableError::Corrupt(e.to_string()))?;
    text.lines()
        .map(|line| {
            line.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| DurableError::Corrupt(format!("no `=` in {line:?}")))
        })
        .collect()
}

fn io(context: &str) -> impl FnOnce(std::io::Error) -> DurableError + '_ {
    move |source| DurableError::Io {
        context: context.to_string(),
        source,
    }
}

/// Writes `index` and `body` as the state file, atomically and durably.
fn write_state(file: &Path, index: Index, body: &[u8]) -> Result<(), DurableError> {
    let tmp = file.with_extension("tmp");
    let mut out = fs::File::create(&tmp).map_err(io("creating the state"))?;
    out.write_all(format!("{index}\n").as_bytes())
        .and_then(|()| out.write_all(body))
        .and_then(|()| out.sync_all())
        .map_err(io("writing the state"))?;
    fs::rename(&tmp, file).map_err(io("renaming the state"))?;
    fs::File::open(file.parent().unwrap())
        .and_then(|dir| dir.sync_all())
        .map_err(io("syncing the directory"))
}

impl FileKv {
    fn open(dir: &Path, counters: Arc<Counters>) -> FileKv {
        fs::create_dir_all(dir).unwrap();
        let file = dir.join("state");
        let (index, map) = match fs::read(&file) {
            Ok(data) => {
                let newline = data.iter().position(|b| *b == b'\n').unwrap();
                let index = std::str::from_utf8(&data[..newline])
                    .unwrap()
                    .parse()
                    .unwrap();
                (index, decode(&data[newline + 1..]).unwrap())
            }
            Err(_) => (0, BTreeMap::new()),
        };
        counters.durable_at_start.store(index, Ordering::SeqCst);
        FileKv {
            file,
            map,
            applied: index,
            durable: index,
            batches: 0,
            counters,
        }
    }
}

struct MapView {
    index: Index,
    data: Vec<u8>,
    offset: usize,
    counters: Arc<Counters>,
}

impl StateView for MapView {
    fn index(&self) -> Index {
        self.index
    }
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, DurableError> {
        // A view of a big state: its stream takes a while.
        while self.counters.hold_views.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(2));
        }
        let n = buf.len().min(self.data.len() - self.offset);
        buf[..n].copy_from_slice(&self.data[self.offset..self.offset + n]);
        self.offset += n;
        Ok(n)
    }
}

struct FileRestore {
    path: PathBuf,
    file: fs::File,
    index: Index,
    counters: Arc<Counters>,
}

impl StateRestore for FileRestore {
    fn write(&mut self, bytes: &[u8]) -> Result<(), DurableError> {
        self.counters.restore_writes.fetch_add(1, Ordering::SeqCst);
        self.file.write_all(bytes).map_err(io("staging a restore"))
    }
    fn complete(&mut self) -> Result<(), DurableError> {
        self.file.sync_all().map_err(io("syncing a restore"))
    }
}

impl DurableStateMachine for FileKv {
    type View = MapView;
    type Restore = FileRestore;

    fn durable_applied_index(&self) -> Index {
        self.durable
    }
    fn applied_index(&self) -> Index {
        self.applied
    }
    fn apply_batch(
        &mut self,
        entries: &[Entry],
        responses: &mut Vec<Option<Bytes>>,
    ) -> Result<(), DurableError> {
        let mut first = self.counters.first_applied.lock().unwrap();
        first.get_or_insert(entries[0].index);
        drop(first);
        for entry in entries {
            assert_eq!(entry.index, self.applied + 1, "applied in order, no gap");
            self.applied = entry.index;
            responses.push(match &entry.payload {
                EntryPayload::Command(command) => {
                    let text = String::from_utf8_lossy(command);
                    Some(match text.split_once('=') {
                        Some((key, value)) => {
                            self.map.insert(key.to_string(), value.to_string());
                            Bytes::from(value.to_string())
                        }
                        None => Bytes::from_static(b"?"),
                    })
                }
                _ => None,
            });
        }
        // A background flush every few batches, as an engine does: so
        // the durable index runs ahead of the last snapshot's.
        self.batches += 1;
        if self.batches % 2 == 0 {
            self.sync()?;
        }
        Ok(())
    }
    fn sync(&mut self) -> Result<(), DurableError> {
        write_state(&self.file, self.applied, &encode(&self.map))?;
        self.durable = self.applied;
        Ok(())
    }
    fn view(&mut self) -> Result<MapView, DurableError> {
        self.counters.views_taken.fetch_add(1, Ordering::SeqCst);
        Ok(MapView {
            index: self.applied,
            data: encode(&self.map),
            offset: 0,
            counters: self.counters.clone(),
        })
    }
    fn begin_restore(&mut self, index: Index) -> Result<FileRestore, DurableError> {
        self.counters.restores_begun.fetch_add(1, Ordering::SeqCst);
        let path = self.file.with_extension("restoring");
        let file = fs::File::create(&path).map_err(io("creating a restore"))?;
        Ok(FileRestore {
            path,
            file,
            index,
            counters: self.counters.clone(),
        })
    }
    fn finish_restore(&mut self, restore: FileRestore) -> Result<(), DurableError> {
        let body = fs::read(&restore.path).map_err(io("reading a restore"))?;
        let map = decode(&body)?;
        write_state(&self.file, restore.index, &body)?;
        let _ = fs::remove_file(&restore.path);
        self.map = map;
        self.applied = restore.index;
        self.durable = restore.index;
        Ok(())
    }
    fn query(&self, request: &[u8]) -> Option<Bytes> {
        let key = String::from_utf8_lossy(request);
        Some(Bytes::from(
            self.map.get(key.as_ref()).cloned().unwrap_or_default(),
        ))
    }
    fn canonical_state(&self) -> Bytes {
        Bytes::from(encode(&self.map))
    }
}

fn group_config(id: NodeId, members: &[NodeId], start: u64) -> Config {
    let mut config = Config::new(id, members.iter().copied());
    config.seed = id * 10 + start;
    config.compaction_threshold_entries = Some(8);
    config.compaction_trailing_entries = 2;
    config
}

/// One node's data directory (the runtime's) and its state machine's.
struct NodeDirs {
    data: TempDir,
    state: TempDir,
}

impl NodeDirs {
    fn new(name: &str) -> NodeDirs {
        NodeDirs {
            data: TempDir::new(&format!("durable-{name}-data")),
            state: TempDir::new(&format!("durable-{name}-state")),
        }
    }
}

/// Opens node `dirs`' data directory for its `start`-th start (1 first).
fn open_node(dirs: &NodeDirs, start: u64) -> data_dir::DataDir {
    if start == 1 {
        fs::create_dir_all(&dirs.data.0).unwrap();
        let counter = dirs.data.0.join(data_dir::INCARNATION_FILE_NAME);
        fs::write(&counter, data_dir::encode_incarnation(0)).unwrap();
    }
    data_dir::open_data_dir(&dirs.data.0, MultiWalOptions::default()).unwrap()
}

/// Starts node `id` of `members` for its `start`-th start (1 first).
fn start_node(
    id: NodeId,
    members: &[NodeId],
    dirs: &NodeDirs,
    start: u64,
    network: &MemFrameNetwork,
    counters: Arc<Counters>,
) -> Result<MultiServerHandle, host::MultiServerError> {
    let opened = open_node(dirs, start);
    start_opened(id, members, dirs, start, opened, network, counters)
}

/// Starts node `id` of `members` from its `opened` data directory.
fn start_opened(
    id: NodeId,
    members: &[NodeId],
    dirs: &NodeDirs,
    start: u64,
    opened: data_dir::DataDir,
    network: &MemFrameNetwork,
    counters: Arc<Counters>,
) -> Result<MultiServerHandle, host::MultiServerError> {
    let log = WalThread::start(opened.log).unwrap();
    let mut multi = MultiConfig::new(id, members.iter().copied());
    multi.incarnation = opened.incarnation;
    let mut config = MultiServerConfig::new(multi, vec![(GROUP, group_config(id, members, start))]);
    config.tick = Duration::from_millis(5);
    config.snapshot_in_memory_bytes_max = 0;
    let inbox = host::inbox();
    network.register(id, inbox.0.clone());
    let state_dir = dirs.state.0.clone();
    host::start_durable(
        config,
        move |group| FileKv::open(&state_dir.join(group.to_string()), counters.clone()),
        opened.recovery,
        log,
        network.sender(id),
        inbox,
    )
}

/// Sends `op` to the group, following redirects, until it is answered.
async fn call(handles: &BTreeMap<NodeId, MultiServerHandle>, op: GroupOp) -> Bytes {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let ids: Vec<NodeId> = handles.keys().copied().collect();
    let mut target = ids[0];
    loop {
        assert!(tokio::time::Instant::now() < deadline, "no answer in time");
        match handles[&target].call(GROUP, op.clone()).await {
            ClientResponse::Done(bytes) => return bytes,
            ClientResponse::NotLeader {
                leader_hint: Some(hint),
                ..
            } if handles.contains_key(&hint) => target = hint,
            _ => {
                target = ids[(ids.iter().position(|id| *id == target).unwrap() + 1) % ids.len()];
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
}

fn put(key: &str, value: &str) -> GroupOp {
    GroupOp::Command(Bytes::from(format!("{key}={value}")))
}

fn get(key: &str) -> GroupOp {
    GroupOp::Read {
        path: ReadPath::ReadIndex,
        query: Bytes::from(key.to_string()),
    }
}

/// The index of every snapshot file under `dir`.
fn snapshot_indexes(dir: &Path) -> Vec<Index> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for item in fs::read_dir(&dir).unwrap() {
            let path = item.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if path.is_dir() {
                stack.push(path);
            } else if let Some(rest) = name.strip_prefix("snapshot-") {
                if name.ends_with(".snap") {
                    found.push(rest[..20].parse().unwrap());
                }
            }
        }
    }
    found
}

/// Writes `count` keys on a one-node cluster, then stops it: the state
/// machine holds the state up to its last snapshot's index durably.
async fn one_node_with_writes(dirs: &NodeDirs, network: &MemFrameNetwork, count: usize) -> Index {
    let counters = Arc::new(Counters::default());
    let handle = start_node(1, &[1], dirs, 1, network, counters).unwrap();
    let handles = BTreeMap::from([(1, handle)]);
    for k in 0..count {
        let value = call(&handles, put(&format!("k{k}"), &format!("v{k}"))).await;
        assert_eq!(value, Bytes::from(format!("v{k}")));
    }
    // Snapshots stream off the loop, and one still streaming at shutdown
    // is dropped: on a loaded machine the writes can all finish before
    // the first lands. Wait for one (the file appears once the log holds
    // it) rather than race it.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while snapshot_indexes(&dirs.data.0).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no snapshot landed within 30 s of {count} writes"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for (_, handle) in handles {
        handle.shutdown().await.unwrap();
    }
    network.unregister(1);
    let snapshots = snapshot_indexes(&dirs.data.0);
    let newest = *snapshots.iter().max().expect("snapshots were taken");
    let durable = FileKv::open(&dirs.state.0.join("1"), Arc::default()).durable;
    // The log was compacted only up to what the state machine holds.
    assert!(durable >= newest, "durable {durable} < snapshot {newest}");
    durable
}

async fn read_back(handles: &BTreeMap<NodeId, MultiServerHandle>, count: usize) {
    for k in 0..count {
        let value = call(handles, get(&format!("k{k}"))).await;
        assert_eq!(value, Bytes::from(format!("v{k}")), "key k{k}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_restart_replays_only_the_log_after_the_durable_applied_index() {
    let dirs = NodeDirs::new("replay");
    let network = MemFrameNetwork::new();
    let durable = one_node_with_writes(&dirs, &network, WRITES).await;

    let counters = Arc::new(Counters::default());
    let handle = start_node(1, &[1], &dirs, 2, &network, counters.clone()).unwrap();
    let handles = BTreeMap::from([(1, handle)]);
    read_back(&handles, WRITES).await;
    assert_eq!(counters.durable_at_start.load(Ordering::SeqCst), durable);
    let newest = *snapshot_indexes(&dirs.data.0).iter().max().unwrap();
    assert!(
        durable > newest,
        "flushed past the snapshot: {durable} vs {newest}"
    );
    assert_eq!(
        counters.restores_begun.load(Ordering::SeqCst),
        0,
        "a state machine holding the snapshot's state is not rebuilt"
    );
    // Entries up to the durable index are not applied again; the first
    // applied is the one right after it.
    assert_eq!(
        *counters.first_applied.lock().unwrap(),
        Some(durable + 1),
        "durable index {durable}"
    );
    for (_, handle) in handles {
        handle.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_lost_state_machine_is_rebuilt_from_the_snapshot_by_streaming() {
    let dirs = NodeDirs::new("lost");
    let network = MemFrameNetwork::new();
    one_node_with_writes(&dirs, &network, WRITES).await;
    let newest = *snapshot_indexes(&dirs.data.0).iter().max().unwrap();
    fs::remove_dir_all(dirs.state.0.join("1")).unwrap();

    let counters = Arc::new(Counters::default());
    let handle = start_node(1, &[1], &dirs, 2, &network, counters.clone()).unwrap();
    let handles = BTreeMap::from([(1, handle)]);
    read_back(&handles, WRITES).await;
    assert_eq!(counters.durable_at_start.load(Ordering::SeqCst), 0);
    assert_eq!(counters.restores_begun.load(Ordering::SeqCst), 1);
    assert_eq!(*counters.first_applied.lock().unwrap(), Some(newest + 1));
    for (_, handle) in handles {
        handle.shutdown().await.unwrap();
    }
}

/// The host's own guard: a state machine behind the log's start with no
/// snapshot handed to it cannot be brought up to date. (The shared log
/// already refuses a record naming a missing snapshot file; here the
/// recovery is edited to reach the host without one.)
#[tokio::test(flavor = "current_thread")]
async fn a_state_machine_behind_the_log_with_no_snapshot_is_refused() {
    let dirs = NodeDirs::new("refused");
    let network = MemFrameNetwork::new();
    one_node_with_writes(&dirs, &network, WRITES).await;
    fs::remove_dir_all(dirs.state.0.join("1")).unwrap();
    let mut opened = open_node(&dirs, 2);
    let group = opened
        .recovery
        .groups
        .get_mut(&GROUP)
        .expect("group 1 recovered");
    let base = group.recovered.base.index;
    assert!(base > 0, "the log was compacted");
    group.snapshot = None;
    let counters = Arc::new(Counters::default());
    let started = start_opened(1, &[1], &dirs, 2, opened, &network, counters);
    let error = match started {
        Ok(_) => panic!("a state machine behind the log started"),
        Err(error) => error.to_string(),
    };
    assert!(
        error.contains("holds the state up to index 0")
            && error.contains(&format!("the log starts after index {base}")),
        "{error}"
    );
}

/// A state machine holding state for a group of which the node has no
/// log at all (the log lost, or the state another node's) is refused at
/// start rather than trusted: its entries would be skipped as applied.
#[tokio::test(flavor = "current_thread")]
async fn a_state_machine_with_state_but_no_log_of_its_group_is_refused() {
    let dirs = NodeDirs::new("no-log");
    let network = MemFrameNetwork::new();
    one_node_with_writes(&dirs, &network, WRITES).await;
    let mut opened = open_node(&dirs, 2);
    assert!(opened.recovery.groups.remove(&GROUP).is_some());
    let counters = Arc::new(Counters::default());
    let started = start_opened(1, &[1], &dirs, 2, opened, &network, counters);
    let error = match started {
        Ok(_) => panic!("a state machine without its log started"),
        Err(error) => error.to_string(),
    };
    assert!(
        error.contains("holds state up to index") && error.contains("no log of the group"),
        "{error}"
    );
}

/// A follower that missed more than the leader's log holds catches up by
/// a snapshot streamed from the leader's view and restored in chunks.
#[tokio::test(flavor = "current_thread")]
async fn a_follower_behind_the_log_restores_by_streaming_in_chunks() {
    const MEMBERS: [NodeId; 3] = [1, 2, 3];
    const KEYS: usize = 200;
    let dirs: BTreeMap<NodeId, NodeDirs> = MEMBERS
        .iter()
        .map(|id| (*id, NodeDirs::new(&format!("follower-{id}"))))
        .collect();
    let network = MemFrameNetwork::new();
    let mut handles: BTreeMap<NodeId, MultiServerHandle> = MEMBERS
        .iter()
        .map(|id| {
            let counters = Arc::new(Counters::default());
            let handle = start_node(*id, &MEMBERS, &dirs[id], 1, &network, counters).unwrap();
            (*id, handle)
        })
        .collect();
    call(&handles, put("first", "1")).await;
    // Node 3 stops; some 2 MB of state is written without it.
    let leader = loop {
        let status = handles[&1].status(true).await.unwrap();
        if let Some(leader) = status.groups[&GROUP].leader.filter(|id| *id != 3) {
            break leader;
        }
        let _ = handles[&3].transfer(GROUP, 1).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    network.unregister(3);
    handles.remove(&3).unwrap().shutdown().await.unwrap();
    let value = "x".repeat(10_000);
    for k in 0..KEYS {
        call(&handles, put(&format!("k{k}"), &format!("{value}{k}"))).await;
    }
    assert_eq!(
        handles[&leader].status(true).await.unwrap().groups[&GROUP].role,
        Role::Leader
    );

    let counters = Arc::new(Counters::default());
    let handle = start_node(3, &MEMBERS, &dirs[&3], 2, &network, counters.clone()).unwrap();
    handles.insert(3, handle);
    // Node 3's own state machine answers a follower read of the last key
    // once it caught up.
    let last = format!("k{}", KEYS - 1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let read = GroupOp::Read {
            path: ReadPath::Follower,
            query: Bytes::from(last.clone()),
        };
        if let ClientResponse::Done(answer) = handles[&3].call(GROUP, read).await {
            if answer == format!("{value}{}", KEYS - 1) {
                break;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node 3 never caught up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(counters.restores_begun.load(Ordering::SeqCst) >= 1);
    // 2 MB fed in chunks of at most 1 MiB: never held whole by the host.
    assert!(
        counters.restore_writes.load(Ordering::SeqCst) >= 2,
        "{counters:?}"
    );
    for (_, handle) in handles {
        handle.shutdown().await.unwrap();
    }
}

/// The log asks for a snapshot to free its oldest segment; a durable
/// state machine's view streams off the loop for a while (a big state).
/// Meanwhile the group's log is not written again: the copy would be
/// every entry since the last snapshot, the whole state's worth, and
/// larger than a log record (a node died of it, a 538 MB record, at
/// 10 GB). Once the snapshot lands, the segments go.
#[tokio::test(flavor = "current_thread")]
async fn a_segment_held_by_a_streaming_snapshot_is_not_copied_again() {
    let dirs = NodeDirs::new("streaming");
    let network = MemFrameNetwork::new();
    let counters = Arc::new(Counters::default());
    counters.hold_views.store(true, Ordering::SeqCst);
    // A failed assertion still lets the view go: the runtime waits for
    // its thread as it shuts down.
    let _release = ReleaseViews(counters.clone());
    fs::create_dir_all(&dirs.data.0).unwrap();
    let counter = dirs.data.0.join(data_dir::INCARNATION_FILE_NAME);
    fs::write(&counter, data_dir::encode_incarnation(0)).unwrap();
    let options = MultiWalOptions {
        segment_bytes_max: 4096,
        segments_max: 2,
        ..MultiWalOptions::default()
    };
    let opened = data_dir::open_data_dir(&dirs.data.0, options).unwrap();
    let log = WalThread::start(opened.log).unwrap();
    let mut multi = MultiConfig::new(1, [1]);
    multi.incarnation = opened.incarnation;
    // Only the log asks for snapshots.
    let mut group = group_config(1, &[1], 1);
    group.compaction_threshold_entries = None;
    let mut config = MultiServerConfig::new(multi, vec![(GROUP, group)]);
    config.tick = Duration::from_millis(5);
    let inbox = host::inbox();
    network.register(1, inbox.0.clone());
    let state_dir = dirs.state.0.clone();
    let made = counters.clone();
    let handle = host::start_durable(
        config,
        move |group| FileKv::open(&state_dir.join(group.to_string()), made.clone()),
        opened.recovery,
        log,
        network.sender(1),
        inbox,
    )
    .unwrap();
    let handles = BTreeMap::from([(1, handle)]);
    let value = "y".repeat(200);
    for k in 0..KEYS_STREAMING {
        call(&handles, put(&format!("k{k}"), &format!("{value}{k}"))).await;
    }
    let status = handles[&1].status(false).await.unwrap();
    assert_eq!(counters.views_taken.load(Ordering::SeqCst), 1);
    assert!(status.log.forced_snapshots_asked >= 2, "{:?}", status.log);
    assert_eq!(
        status.host.entries_rewritten, 0,
        "the log was written again while its snapshot streamed"
    );
    let held = status.log.segments_on_disk;
    assert!(held > 4, "{held} segments held by the streaming snapshot");

    counters.hold_views.store(false, Ordering::SeqCst);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        call(&handles, put("more", "1")).await;
        let status = handles[&1].status(false).await.unwrap();
        if status.log.segments_on_disk <= 3 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the segments stay: {:?}",
            status.log
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for k in 0..KEYS_STREAMING {
        let read = call(&handles, get(&format!("k{k}"))).await;
        assert_eq!(read, Bytes::from(format!("{value}{k}")));
    }
    for (_, handle) in handles {
        handle.shutdown().await.unwrap();
    }
}

/// Writes of the streaming test: some 60 segments of 4 KiB.
const KEYS_STREAMING: usize = 1000;

/// Lets every view stream when dropped.
struct ReleaseViews(Arc<Counters>);

impl Drop for ReleaseViews {
    fn drop(&mut self) {
        self.0.hold_views.store(false, Ordering::SeqCst);
    }
}
