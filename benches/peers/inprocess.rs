//! Three servers in one process, concord against
//! openraft 0.9, side by side in one run, on the same tokio runtime.
//!
//! **concord**: the one runtime's server loop (`concord-node`'s: the
//! multi-group host with group 1 beside the catalog,
//! `concord_tokio::cluster::start_in_process_node`) over the in-process
//! network (`MemFrameNetwork`), its shared log on the in-memory disk model
//! (`PageCacheDisk`), an empty state machine (`NullStateMachine`), the
//! same shape as `runtime/tokio_inprocess.rs`; a
//! snapshot every 5,000 applied entries
//! keeping the 1,000 before it (`compaction_threshold_entries`,
//! `compaction_trailing_entries`), which is openraft's default policy
//! below. Without it concord's log, and the in-memory disk's copy of it,
//! grew by about 1.3 M entries a second, and growing them (page faults,
//! copies on reallocation) cost concord a fifth of its CPU that openraft,
//! which purges, never paid.
//!
//! **openraft 0.9** (crates.io): the shape of openraft's own
//! `benchmarks/minimal`, written here: its storage-v2 traits over memory (a
//! `BTreeMap` log behind a mutex, a state machine that records only the
//! last applied id and membership), a function-call network (an
//! AppendEntries or vote is a direct call of the target `Raft`'s handler),
//! and the settings that benchmark uses (`election_timeout_min` 200 ms,
//! `election_timeout_max` 2000 ms, `purge_batch_size` and
//! `max_payload_entries` 1024; the rest openraft's defaults, so it
//! snapshots every 5,000 entries, a snapshot of nothing here).
//!
//! Both: 3 voters, clients are tasks on the same runtime as the servers,
//! each with one 128-byte write in flight on the leader
//! (`MultiServerHandle::call` / `Raft::client_write`), counted when the leader
//! answers (applied). A redirected write (the node no longer leads) sends
//! the client's next write to the node named; any other failure (no leader
//! known, overloaded) makes the client wait 1 ms, so that a cluster without
//! a leader is not hammered by spinning clients; both counts are printed
//! per run. A fresh cluster per run, 1 s of warm-up, then
//! `CONCORD_BENCH_SECS` (default 5) measured. Each cell (runtime × clients)
//! runs `CONCORD_BENCH_ROUNDS` rounds (default 3) of both systems,
//! alternating which goes first; the table gives the median operations per
//! second and the process CPU time per operation (user + sys of the whole
//! process during the measured window, from `/proc/self/stat`).
//!
//! Runtimes (`CONCORD_BENCH_RUNTIMES`, default `current,multi2`):
//! `current` (tokio's current-thread runtime: one thread), `multi1`,
//! `multi2` (multi-thread runtime with 1 or 2 workers).
//! `CONCORD_BENCH_ONLY=concord` (or `openraft`) runs one system alone, for
//! profiling it.
//!
//! ```text
//! cargo bench -p concord-bench --features openraft --bench inprocess
//! CONCORD_BENCH_SECS=10 CONCORD_BENCH_CLIENTS=1,64,256 CONCORD_BENCH_RUNTIMES=current,multi1,multi2 cargo bench -p concord-bench --features openraft --bench inprocess
//! ```
//!
//! With `--features openraft,mimalloc` both systems allocate through
//! mimalloc (the allocator `concord-node` ships with) instead of the
//! system's.

use std::collections::BTreeMap;
use std::fmt::Debug;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::io::Cursor;
use std::ops::RangeBounds;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use concord_bench::env::{env_list, env_u64};
use concord_bench::plot;

const VALUE_BYTES: usize = 128;
const WARMUP: Duration = Duration::from_secs(1);

/// User + sys CPU time of this process, in microseconds.
fn process_cpu_us() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields after the command name start at field 3; utime is 14, stime 15.
    let field = |n: usize| -> u64 { fields.get(n - 3).and_then(|f| f.parse().ok()).unwrap_or(0) };
    // Linux reports these in clock ticks of 100 Hz on every platform Rust
    // supports (USER_HZ), so no sysconf call is needed.
    (field(14) + field(15)) * 10_000
}

// ------------------------------------------------------------- concord

mod concord_side {
    use super::*;
    use concord_tokio::cluster::{group_status, start_in_process_node, NodeSettings, GROUP};
    use concord_tokio::multi::host::MultiServerHandle;
    use concord_tokio::multi::mem_network::MemFrameNetwork;
    use concord_tokio::multi::page_cache::PageCacheDisk;
    use concord_tokio::multi::wire::GroupOp;
    use concord_tokio::null::NullStateMachine;
    use concord_tokio::wire::ClientResponse;

    /// A started cluster and which server leads, as far as the clients
    /// have learnt.
    pub struct Cluster {
        handles: Vec<Arc<MultiServerHandle>>,
        leader: AtomicUsize,
        /// The first failure's answer, for the run's line.
        pub first_failure: Mutex<Option<String>>,
    }

    pub async fn start() -> Arc<Cluster> {
        let network = MemFrameNetwork::new();
        let peers: BTreeMap<u64, String> = (1..=3u64).map(|id| (id, format!("mem:{id}"))).collect();
        let mut handles = Vec::new();
        for id in 1..=3u64 {
            let mut settings = NodeSettings::new(id, format!("mem:{id}"), peers.clone(), "bench");
            // openraft's defaults: a snapshot every 5,000 entries,
            // keeping 1,000 entries below it.
            settings.snapshot_every_entries = Some(5_000);
            settings.compaction_trailing_entries = 1_000;
            settings.tick = Duration::from_millis(10);
            let handle = start_in_process_node(
                settings,
                || NullStateMachine,
                PageCacheDisk::new(),
                1,
                &network,
            )
            .expect("concord server starts");
            handles.push(Arc::new(handle));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            for (i, handle) in handles.iter().enumerate() {
                if let Some(status) = group_status(handle).await {
                    if status.role == "Leader" {
                        let leader = AtomicUsize::new(i);
                        let first_failure = Mutex::new(None);
                        return Arc::new(Cluster {
                            handles,
                            leader,
                            first_failure,
                        });
                    }
                }
            }
            assert!(Instant::now() < deadline, "concord: no leader in 10 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    impl Cluster {
        /// One write to the server believed to lead; on a redirect the
        /// hint is believed for the next write.
        pub async fn write(&self, value: &Bytes) -> Outcome {
            let leader = self.leader.load(Ordering::Relaxed);
            let write = GroupOp::Command(value.clone());
            match self.handles[leader].call(GROUP, write).await {
                ClientResponse::Done(_) => Outcome::Done,
                ClientResponse::NotLeader {
                    leader_hint: Some(id),
                    ..
                } if (1..=3).contains(&id) => {
                    self.leader.store(id as usize - 1, Ordering::Relaxed);
                    Outcome::Redirected
                }
                other => {
                    let mut first = self.first_failure.lock().expect("failure lock");
                    first.get_or_insert_with(|| format!("{other:?}"));
                    Outcome::Failed
                }
            }
        }

        /// How the leader batched the run's writes: proposals per log
        /// round, and the frames every node received and log rounds it
        /// wrote per write, over the whole run (warm-up included).
        pub async fn batching(&self) -> String {
            let leader = self.leader.load(Ordering::Relaxed);
            let mut line = String::new();
            let Some(lead) = self.handles[leader].status(false).await else {
                return line;
            };
            let proposals = lead.host.proposals.max(1) as f64;
            line.push_str(&format!(
                "{:.1} writes per leader log round",
                proposals / lead.log.rounds.max(1) as f64
            ));
            for handle in &self.handles {
                if let Some(status) = handle.status(false).await {
                    line.push_str(&format!(
                        "; node {}: {:.3} frames received, {:.3} log rounds per write",
                        status.id,
                        status.layer.frames_received as f64 / proposals,
                        status.log.rounds as f64 / proposals
                    ));
                }
            }
            line
        }

        pub async fn shutdown(self: Arc<Self>) {
            if let Ok(cluster) = Arc::try_unwrap(self) {
                for handle in cluster.handles {
                    if let Ok(handle) = Arc::try_unwrap(handle) {
                        let _ = handle.shutdown().await;
                    }
                }
            }
        }
    }
}

// ------------------------------------------------------------ openraft

mod openraft_side {
    use super::*;
    use openraft::error::{InstallSnapshotError, RPCError, RaftError, RemoteError, Unreachable};
    use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
    use openraft::raft::{
        AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest,
        InstallSnapshotResponse, VoteRequest, VoteResponse,
    };
    use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
    use openraft::{
        BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftLogReader, RaftSnapshotBuilder,
        SnapshotMeta, StorageError, StoredMembership, Vote,
    };

    openraft::declare_raft_types!(
        /// The benchmark's types: raw bytes in, nothing out.
        pub Types:
            D = Bytes,
            R = (),
    );

    pub type Raft = openraft::Raft<Types>;
    type NodeId = u64;

    // -- log store: a BTreeMap behind a mutex, "flushed" at once.

    #[derive(Default)]
    struct LogInner {
        vote: Option<Vote<NodeId>>,
        committed: Option<LogId<NodeId>>,
        last_purged: Option<LogId<NodeId>>,
        log: BTreeMap<u64, Entry<Types>>,
    }

    #[derive(Clone, Default)]
    pub struct LogStore {
        inner: Arc<Mutex<LogInner>>,
    }

    impl RaftLogReader<Types> for LogStore {
        async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
            &mut self,
            range: RB,
        ) -> Result<Vec<Entry<Types>>, StorageError<NodeId>> {
            let inner = self.inner.lock().expect("log lock");
            Ok(inner.log.range(range).map(|(_, e)| e.clone()).collect())
        }
    }

    impl RaftLogStorage<Types> for LogStore {
        type LogReader = LogStore;

        async fn get_log_state(&mut self) -> Result<LogState<Types>, StorageError<NodeId>> {
            let inner = self.inner.lock().expect("log lock");
            let last = inner
                .log
                .last_key_value()
                .map(|(_, e)| e.log_id)
                .or(inner.last_purged);
            Ok(LogState {
                last_purged_log_id: inner.last_purged,
                last_log_id: last,
            })
        }

        async fn get_log_reader(&mut self) -> Self::LogReader {
            self.clone()
        }

        async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
            self.inner.lock().expect("log lock").vote = Some(*vote);
            Ok(())
        }

        async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
            Ok(self.inner.lock().expect("log lock").vote)
        }

        async fn save_committed(
            &mut self,
            committed: Option<LogId<NodeId>>,
        ) -> Result<(), StorageError<NodeId>> {
            self.inner.lock().expect("log lock").committed = committed;
            Ok(())
        }

        async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
            Ok(self.inner.lock().expect("log lock").committed)
        }

        async fn append<I>(
            &mut self,
            entries: I,
            callback: LogFlushed<Types>,
        ) -> Result<(), StorageError<NodeId>>
        where
            I: IntoIterator<Item = Entry<Types>> + OptionalSend,
            I::IntoIter: OptionalSend,
        {
            {
                let mut inner = self.inner.lock().expect("log lock");
                for entry in entries {
                    inner.log.insert(entry.log_id.index, entry);
                }
            }
            // Memory is the medium: the entries are as durable as they
            // will be once they are in the map.
            callback.log_io_completed(Ok(()));
            Ok(())
        }

        async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
            let mut inner = self.inner.lock().expect("log lock");
            inner.log.split_off(&log_id.index);
            Ok(())
        }

        async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
            let mut inner = self.inner.lock().expect("log lock");
            inner.last_purged = Some(log_id);
            let keep = inner.log.split_off(&(log_id.index + 1));
            inner.log = keep;
            Ok(())
        }
    }

    // -- state machine: the last applied id and membership, nothing else.

    #[derive(Clone, Default)]
    struct Applied {
        last: Option<LogId<NodeId>>,
        membership: StoredMembership<NodeId, BasicNode>,
        snapshot: Option<SnapshotMeta<NodeId, BasicNode>>,
    }

    #[derive(Clone, Default)]
    pub struct StateMachine {
        applied: Arc<Mutex<Applied>>,
    }

    pub struct Builder {
        applied: Applied,
        /// Where the built snapshot is kept as the current one (openraft
        /// reads it back with `get_current_snapshot` to send it).
        machine: Arc<Mutex<Applied>>,
    }

    fn snapshot_of(meta: SnapshotMeta<NodeId, BasicNode>) -> Snapshot<Types> {
        Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(Vec::new())),
        }
    }

    impl RaftSnapshotBuilder<Types> for Builder {
        async fn build_snapshot(&mut self) -> Result<Snapshot<Types>, StorageError<NodeId>> {
            let meta = SnapshotMeta {
                last_log_id: self.applied.last,
                last_membership: self.applied.membership.clone(),
                snapshot_id: format!("{:?}", self.applied.last),
            };
            self.machine.lock().expect("sm lock").snapshot = Some(meta.clone());
            Ok(snapshot_of(meta))
        }
    }

    impl RaftStateMachine<Types> for StateMachine {
        type SnapshotBuilder = Builder;

        async fn applied_state(
            &mut self,
        ) -> Result<
            (Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>),
            StorageError<NodeId>,
        > {
            let applied = self.applied.lock().expect("sm lock");
            Ok((applied.last, applied.membership.clone()))
        }

        async fn apply<I>(&mut self, entries: I) -> Result<Vec<()>, StorageError<NodeId>>
        where
            I: IntoIterator<Item = Entry<Types>> + OptionalSend,
            I::IntoIter: OptionalSend,
        {
            let mut applied = self.applied.lock().expect("sm lock");
            let mut out = Vec::new();
            for entry in entries {
                applied.last = Some(entry.log_id);
                if let EntryPayload::Membership(m) = entry.payload {
                    applied.membership = StoredMembership::new(Some(entry.log_id), m);
                }
                out.push(());
            }
            Ok(out)
        }

        async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
            Builder {
                applied: self.applied.lock().expect("sm lock").clone(),
                machine: self.applied.clone(),
            }
        }

        async fn begin_receiving_snapshot(
            &mut self,
        ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
            Ok(Box::new(Cursor::new(Vec::new())))
        }

        async fn install_snapshot(
            &mut self,
            meta: &SnapshotMeta<NodeId, BasicNode>,
            _snapshot: Box<Cursor<Vec<u8>>>,
        ) -> Result<(), StorageError<NodeId>> {
            let mut applied = self.applied.lock().expect("sm lock");
            applied.last = meta.last_log_id;
            applied.membership = meta.last_membership.clone();
            applied.snapshot = Some(meta.clone());
            Ok(())
        }

        async fn get_current_snapshot(
            &mut self,
        ) -> Result<Option<Snapshot<Types>>, StorageError<NodeId>> {
            let applied = self.applied.lock().expect("sm lock");
            Ok(applied.snapshot.clone().map(snapshot_of))
        }
    }

    // -- network: a call of the target's handler.

    #[derive(Clone, Default)]
    pub struct Router {
        nodes: Arc<Mutex<BTreeMap<NodeId, Raft>>>,
    }

    pub struct Connection {
        target: NodeId,
        raft: Option<Raft>,
    }

    impl RaftNetworkFactory<Types> for Router {
        type Network = Connection;

        async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> Connection {
            let raft = self
                .nodes
                .lock()
                .expect("router lock")
                .get(&target)
                .cloned();
            Connection { target, raft }
        }
    }

    impl Connection {
        // The error type is openraft's own, as its RaftNetwork methods
        // return it.
        #[allow(clippy::result_large_err)]
        fn raft<E: std::error::Error>(
            &self,
        ) -> Result<Raft, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>> {
            self.raft.clone().ok_or_else(|| {
                let error = std::io::Error::new(std::io::ErrorKind::NotFound, "no such node");
                RPCError::Unreachable(Unreachable::new(&error))
            })
        }
    }

    impl RaftNetwork<Types> for Connection {
        async fn append_entries(
            &mut self,
            rpc: AppendEntriesRequest<Types>,
            _option: RPCOption,
        ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>>
        {
            let raft = self.raft()?;
            raft.append_entries(rpc)
                .await
                .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
        }

        async fn install_snapshot(
            &mut self,
            rpc: InstallSnapshotRequest<Types>,
            _option: RPCOption,
        ) -> Result<
            InstallSnapshotResponse<NodeId>,
            RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
        > {
            let raft = self.raft()?;
            raft.install_snapshot(rpc)
                .await
                .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
        }

        async fn vote(
            &mut self,
            rpc: VoteRequest<NodeId>,
            _option: RPCOption,
        ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
            let raft = self.raft()?;
            raft.vote(rpc)
                .await
                .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
        }
    }

    /// A started cluster and which node leads, as far as the clients have
    /// learnt.
    pub struct Cluster {
        rafts: Vec<Raft>,
        leader: AtomicUsize,
        /// The first failure's message, for the run's line.
        pub first_failure: Mutex<Option<String>>,
    }

    pub async fn start() -> Arc<Cluster> {
        let config = openraft::Config {
            election_timeout_min: 200,
            election_timeout_max: 2000,
            purge_batch_size: 1024,
            max_payload_entries: 1024,
            ..Default::default()
        };
        let config = Arc::new(config.validate().expect("openraft config"));
        let router = Router::default();
        let mut rafts = Vec::new();
        for id in 1..=3u64 {
            let raft = Raft::new(
                id,
                config.clone(),
                router.clone(),
                LogStore::default(),
                StateMachine::default(),
            )
            .await
            .expect("openraft node starts");
            router
                .nodes
                .lock()
                .expect("router lock")
                .insert(id, raft.clone());
            rafts.push(raft);
        }
        let members: BTreeMap<NodeId, BasicNode> =
            (1..=3).map(|id| (id, BasicNode::default())).collect();
        rafts[0]
            .initialize(members)
            .await
            .expect("openraft initialize");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(leader) = rafts[0].current_leader().await {
                let index = (leader - 1) as usize;
                // The leader answers writes once its blank entry commits.
                if rafts[index]
                    .client_write(Bytes::from_static(b"up"))
                    .await
                    .is_ok()
                {
                    let leader = AtomicUsize::new(index);
                    let first_failure = Mutex::new(None);
                    return Arc::new(Cluster {
                        rafts,
                        leader,
                        first_failure,
                    });
                }
            }
            assert!(Instant::now() < deadline, "openraft: no leader in 10 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    impl Cluster {
        /// One write to the node believed to lead; on ForwardToLeader the
        /// named leader is believed for the next write.
        pub async fn write(&self, value: &Bytes) -> Outcome {
            let leader = self.leader.load(Ordering::Relaxed);
            match self.rafts[leader].client_write(value.clone()).await {
                Ok(_) => Outcome::Done,
                Err(error) => match error.forward_to_leader::<BasicNode>() {
                    Some(forward) => match forward.leader_id {
                        Some(id) if (1..=3).contains(&id) => {
                            self.leader.store(id as usize - 1, Ordering::Relaxed);
                            Outcome::Redirected
                        }
                        _ => self.failed(&error),
                    },
                    None => self.failed(&error),
                },
            }
        }

        fn failed(&self, error: &dyn std::fmt::Display) -> Outcome {
            let mut first = self.first_failure.lock().expect("failure lock");
            first.get_or_insert_with(|| error.to_string());
            Outcome::Failed
        }

        pub async fn shutdown(self: Arc<Self>) {
            for raft in &self.rafts {
                let _ = raft.shutdown().await;
            }
        }
    }
}

// ---------------------------------------------------------------- driver

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum System {
    Concord,
    Openraft,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Concord => "concord",
            System::Openraft => "openraft",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Flavour {
    Current,
    Multi(usize),
}

impl Flavour {
    fn parse(s: &str) -> Option<Flavour> {
        match s.trim() {
            "current" => Some(Flavour::Current),
            "multi1" => Some(Flavour::Multi(1)),
            "multi2" => Some(Flavour::Multi(2)),
            "multi4" => Some(Flavour::Multi(4)),
            _ => None,
        }
    }

    fn name(self) -> String {
        match self {
            Flavour::Current => "current-thread".to_string(),
            Flavour::Multi(n) => format!("multi-thread {n}w"),
        }
    }

    fn runtime(self) -> tokio::runtime::Runtime {
        match self {
            Flavour::Current => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build(),
            Flavour::Multi(n) => tokio::runtime::Builder::new_multi_thread()
                .worker_threads(n)
                .enable_all()
                .build(),
        }
        .expect("tokio runtime")
    }
}

/// What a client's write came to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Outcome {
    /// Applied and answered by the leader.
    Done,
    /// Not the leader; the client now knows which node is.
    Redirected,
    /// No leader known, overloaded, or the outcome is unknown.
    Failed,
}

/// How long a client waits after a write that was not done, so that a
/// cluster without a leader is not hammered by a spinning client.
const RETRY_BACKOFF: Duration = Duration::from_millis(1);

/// What one run measured.
struct Run {
    ops_per_sec: f64,
    cpu_us_per_op: f64,
    /// Writes answered with a redirect to the new leader.
    redirected: u64,
    /// Writes not done for another reason.
    failed: u64,
    /// What the first of those was answered.
    first_failure: Option<String>,
    /// How the servers batched the writes (concord only).
    batching: Option<String>,
}

/// A cluster the clients write to.
trait Writer: Send + Sync + 'static {
    /// One write of `value`, and what came of it.
    fn write(&self, value: &Bytes) -> impl std::future::Future<Output = Outcome> + Send;
}

impl Writer for concord_side::Cluster {
    fn write(&self, value: &Bytes) -> impl std::future::Future<Output = Outcome> + Send {
        concord_side::Cluster::write(self, value)
    }
}

impl Writer for openraft_side::Cluster {
    fn write(&self, value: &Bytes) -> impl std::future::Future<Output = Outcome> + Send {
        openraft_side::Cluster::write(self, value)
    }
}

/// One client's counts (done, redirected, failed) on cache lines of its
/// own, and the stop flag on another: with the clients spread over two
/// workers, one shared counter would bounce between the cores on every
/// write and charge that to whichever system is measured.
#[repr(align(128))]
#[derive(Default)]
struct Counts([AtomicU64; 3]);

/// The stop flag, alone on its cache lines (read by every client on every
/// write).
#[repr(align(128))]
#[derive(Default)]
struct Stop(AtomicBool);

/// Spawns `clients` closed-loop writers, each calling `write` with one
/// write in flight; measures `seconds` after the warm-up.
async fn drive<C: Writer>(cluster: &Arc<C>, clients: usize, seconds: u64) -> Run {
    let stop = Arc::new(Stop::default());
    let counts: Vec<Arc<Counts>> = (0..clients).map(|_| Arc::default()).collect();
    let tasks: Vec<_> = counts
        .iter()
        .map(|counts| {
            // One reference per client, taken once: a clone per write
            // would bounce the cluster's reference count between the
            // workers on every write.
            let (stop, counts, cluster) = (stop.clone(), counts.clone(), cluster.clone());
            tokio::spawn(async move {
                let value = Bytes::from(vec![b'v'; VALUE_BYTES]);
                while !stop.0.load(Ordering::Relaxed) {
                    let outcome = cluster.write(&value).await;
                    counts.0[outcome as usize].fetch_add(1, Ordering::Relaxed);
                    if outcome == Outcome::Failed {
                        tokio::time::sleep(RETRY_BACKOFF).await;
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(WARMUP).await;
    let read = |i: usize| -> u64 { counts.iter().map(|c| c.0[i].load(Ordering::Relaxed)).sum() };
    let (before, cpu_before) = ([read(0), read(1), read(2)], process_cpu_us());
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let count = read(0) - before[0];
    let cpu = process_cpu_us().saturating_sub(cpu_before);
    let elapsed = start.elapsed().as_secs_f64();
    let (redirected, failed) = (read(1) - before[1], read(2) - before[2]);
    stop.0.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }
    Run {
        ops_per_sec: count as f64 / elapsed,
        cpu_us_per_op: cpu as f64 / count.max(1) as f64,
        redirected,
        failed,
        first_failure: None,
        batching: None,
    }
}

fn run_once(system: System, flavour: Flavour, clients: usize, seconds: u64) -> Run {
    let runtime = flavour.runtime();
    let run = runtime.block_on(async {
        match system {
            System::Concord => {
                let cluster = concord_side::start().await;
                let run = drive(&cluster, clients, seconds).await;
                let first_failure = cluster.first_failure.lock().expect("failure lock").take();
                let batching = Some(cluster.batching().await);
                cluster.shutdown().await;
                Run {
                    first_failure,
                    batching,
                    ..run
                }
            }
            System::Openraft => {
                let cluster = openraft_side::start().await;
                let run = drive(&cluster, clients, seconds).await;
                let first_failure = cluster.first_failure.lock().expect("failure lock").take();
                cluster.shutdown().await;
                Run {
                    first_failure,
                    ..run
                }
            }
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(5));
    run
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn main() {
    let seconds = env_u64("CONCORD_BENCH_SECS", 5);
    let rounds = env_u64("CONCORD_BENCH_ROUNDS", 3).max(1);
    let clients_list = env_list("CONCORD_BENCH_CLIENTS", &[1, 64, 256]);
    let flavours: Vec<Flavour> = std::env::var("CONCORD_BENCH_RUNTIMES")
        .unwrap_or_else(|_| "current,multi2".to_string())
        .split(',')
        .map(|s| Flavour::parse(s).unwrap_or_else(|| panic!("CONCORD_BENCH_RUNTIMES: unknown runtime {s:?}; use current, multi1, multi2 or multi4")))
        .collect();
    let only = std::env::var("CONCORD_BENCH_ONLY")
        .ok()
        .map(|s| match s.trim() {
            "concord" => System::Concord,
            "openraft" => System::Openraft,
            other => {
                panic!("CONCORD_BENCH_ONLY: unknown system {other:?}; use concord or openraft")
            }
        });
    println!(
        "inprocess: 3 voters in one process, {VALUE_BYTES}-byte writes, one in flight per client; {}s measured after {}s warm-up; {rounds} rounds alternating which system goes first",
        seconds,
        WARMUP.as_secs()
    );
    let mut summary = Vec::new();
    for flavour in &flavours {
        for (n, &clients) in clients_list.iter().enumerate() {
            let mut rates: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
            let mut cpus: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
            for round in 0..rounds {
                let order = if (round + n as u64).is_multiple_of(2) {
                    [System::Concord, System::Openraft]
                } else {
                    [System::Openraft, System::Concord]
                };
                for system in order {
                    if only.is_some_and(|only| only != system) {
                        continue;
                    }
                    let run = run_once(system, *flavour, clients, seconds);
                    println!(
                        "{:<16} clients {clients:>4} round {round} {:<8}: {:>10.0} ops/s  {:>7.2} us CPU/op  {} redirected, {} failed (then {} ms back-off)",
                        flavour.name(),
                        system.name(),
                        run.ops_per_sec,
                        run.cpu_us_per_op,
                        run.redirected,
                        run.failed,
                        RETRY_BACKOFF.as_millis()
                    );
                    if let Some(batching) = &run.batching {
                        println!("    {batching}");
                    }
                    if let Some(first) = &run.first_failure {
                        println!("    first failure: {first}");
                    }
                    rates
                        .entry(system.name())
                        .or_default()
                        .push(run.ops_per_sec);
                    cpus.entry(system.name())
                        .or_default()
                        .push(run.cpu_us_per_op);
                }
            }
            let c = median(rates.remove("concord").unwrap_or_default());
            let o = median(rates.remove("openraft").unwrap_or_default());
            let cc = median(cpus.remove("concord").unwrap_or_default());
            let oc = median(cpus.remove("openraft").unwrap_or_default());
            summary.push((flavour.name(), clients, c, o, cc, oc));
        }
    }
    println!();
    println!("medians; x = concord / openraft (goal >= 2 at equal threads)");
    println!(
        "{:<16} {:>7} {:>11} {:>11} {:>6} {:>12} {:>12}",
        "runtime", "clients", "concord/s", "openraft/s", "x", "concord us", "openraft us"
    );
    for (flavour, clients, c, o, cc, oc) in &summary {
        println!(
            "{flavour:<16} {clients:>7} {c:>11.0} {o:>11.0} {:>6.2} {cc:>12.2} {oc:>12.2}",
            c / o
        );
    }
    write_results(&summary, &clients_list);
}

/// One row of the summary: runtime, clients, concord and openraft ops/s,
/// concord and openraft CPU microseconds per op (medians).
type Row = (String, usize, f64, f64, f64, f64);

/// The medians as CSV, and a plot of ops/s per runtime and system.
fn write_results(summary: &[Row], clients_list: &[usize]) {
    let mut csv = String::from(
        "runtime,clients,concord_ops_per_sec,openraft_ops_per_sec,concord_cpu_us_per_op,openraft_cpu_us_per_op\n",
    );
    for (flavour, clients, c, o, cc, oc) in summary {
        csv.push_str(&format!(
            "{flavour},{clients},{c:.0},{o:.0},{cc:.3},{oc:.3}\n"
        ));
    }
    let labels: Vec<String> = clients_list.iter().map(|c| c.to_string()).collect();
    let mut flavours: Vec<&String> = summary.iter().map(|row| &row.0).collect();
    flavours.dedup();
    let mut series = Vec::new();
    for flavour in flavours {
        for (name, pick) in [("concord", 2), ("openraft", 3)] {
            let values = clients_list
                .iter()
                .map(|&c| {
                    summary
                        .iter()
                        .find(|row| &row.0 == flavour && row.1 == c)
                        .map(|row| if pick == 2 { row.2 } else { row.3 })
                })
                .collect();
            series.push(plot::Series {
                name: format!("{name}, {flavour}"),
                values,
            });
        }
    }
    let svg = plot::line_chart(
        "3 voters in one process: writes per second (median of rounds)",
        "concurrent clients (one write in flight each)",
        "ops/s",
        &labels,
        &series,
    );
    match plot::write_results(&[("inprocess.csv", csv), ("inprocess.svg", svg)]) {
        Ok(dir) => println!("wrote inprocess.csv and inprocess.svg to {}", dir.display()),
        Err(e) => println!("could not write the results: {e}"),
    }
}
