//! Wiring: a TCP-served node of a one-group cluster from a handful of
//! settings, on the one runtime (the multi-group host, [`crate::multi`],
//! hosting group [`GROUP`] beside the catalog): the same loop, shared
//! log, wire and data directory as `concord-node`. Used by the examples,
//! the in-process tests and the madsim suite.
//!
//! The state machine is built by a closure, once for the group and once
//! for the catalog's slot (which the host keeps itself and never hands to
//! it; see [`start_node`]). Exactly-once writes are the runtime's: every
//! group runs behind a session table
//! ([`GroupSessions`]), so the
//! state machine given here has none of its own.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use concord::multi::sessions::GroupSessions;
use concord::multi::{GroupId, MultiConfig, CATALOG_GROUP};
use concord::state_machine::StateMachine;
use concord::{Config, NodeId};

use crate::identity::{IdentityClaim, IdentityHandle};
use crate::listener::ListenerCounters;
use crate::multi::data_dir;
use crate::multi::groups_status::{StatusAnswer, StatusQuery};
use crate::multi::host::{self, MultiServerConfig, MultiServerError, MultiServerHandle};
use crate::multi::log_sink::{InlineLog, WalThread};
use crate::multi::mem_network::MemFrameNetwork;
use crate::multi::page_cache::PageCacheDisk;
use crate::multi::shared_log::{MultiWalOptions, SharedLog};
use crate::multi::tcp_listener::{self, MultiListenerConfig};
use crate::multi::tcp_sender::{TcpFrameConfig, TcpFrameCounters, TcpFrameSender};
use crate::multi::wire::GroupOp;
use crate::multi::MultiRecovery;
use crate::status::NodeStatus;
use crate::storage::StorageError;
use crate::tls::TlsConfig;
use crate::transport::StreamWrapper;
use crate::wire::ClientResponse;

/// The data group of a one-group cluster (group [`CATALOG_GROUP`] is the
/// catalog beside it), as `concord-node` without `--groups` hosts it.
pub const GROUP: GroupId = 1;

/// Most client sessions the group keeps: the single-group server's bound
/// (its data directories are upgraded with their tables whole).
pub const SESSIONS_MAX: usize = 65_536;

/// A peer connection silent this long is dropped and dialled again, by
/// default.
pub const PEER_TIMEOUT_DEFAULT: Duration = Duration::from_millis(500);

/// A silent peer connection is kept this long when
/// [`NodeSettings::peer_timeout`] is `None` (TCP's own retransmission
/// gives up well before).
const PEER_TIMEOUT_NONE: Duration = Duration::from_secs(24 * 3600);

/// Entries applied between two snapshots, by default.
pub const SNAPSHOT_EVERY_ENTRIES_DEFAULT: u64 = 100_000;

/// Entries kept in the log below a snapshot, by default.
pub const COMPACTION_TRAILING_ENTRIES_DEFAULT: u64 = 1024;

/// Settings of one node of a TCP cluster.
#[derive(Clone, Debug)]
pub struct NodeSettings {
    /// This node's id (1 or more).
    pub id: NodeId,
    /// Address to listen on for peers and clients.
    pub listen: String,
    /// Address of every node of the cluster, this one included. With
    /// [`join`](Self::join), the voters of the cluster to join (and this
    /// node).
    pub peers: BTreeMap<NodeId, String>,
    /// Start as a new, empty learner of a running cluster whose voters are
    /// `peers` (this node excluded), to be added with
    /// `concord-cli member add-learner` and promoted once caught up.
    /// Ignored once the node's log or snapshot holds a configuration: after
    /// a restart the replicated configuration is in force, whatever the
    /// flag says.
    pub join: bool,
    /// Run this node as a witness voter: it stores the log and votes but
    /// keeps no state machine, never applies, never snapshots state and
    /// never leads; clients it gets are redirected to the leader (see the
    /// repository's `docs/design.md`, "Witnesses"). A witness of a new cluster is
    /// also listed in [`witnesses`](Self::witnesses) (on every node); one
    /// joining a running cluster ([`join`](Self::join)) is added with
    /// `concord-cli member add-witness`. A node's kind must match the
    /// replicated configuration: a server that its stored configuration
    /// lists otherwise refuses to start ([`StartError::Settings`], naming
    /// the flag to give).
    pub witness: bool,
    /// The witnesses among the voters a new cluster is born with
    /// ([`Config::witnesses`]); give every node the same set. A node
    /// listed here is a witness itself. Ignored once the node's log or
    /// snapshot holds a configuration.
    pub witnesses: std::collections::BTreeSet<NodeId>,
    /// The cluster's name.
    pub cluster_id: String,
    /// Wall-clock length of a tick.
    pub tick: Duration,
    /// Election timeout range in ticks.
    pub election_ticks: (u32, u32),
    /// Heartbeat interval in ticks.
    pub heartbeat_ticks: u32,
    /// Drop a peer connection silent for this long and dial again (see
    /// [`TcpFrameConfig::peer_timeout`]; `None` waits for TCP itself).
    pub peer_timeout: Option<Duration>,
    /// Applied to every outgoing peer connection (fault injection in tests).
    pub stream_wrapper: Option<StreamWrapper>,
    /// Take a snapshot (and compact the log) once this many entries were
    /// applied since the last one; `None` never does.
    pub snapshot_every_entries: Option<u64>,
    /// Entries kept in the log below a new snapshot, so that a follower a
    /// little behind is caught up from the log rather than by a snapshot.
    pub compaction_trailing_entries: u64,
    /// The node's snapshot bandwidth limit: most bytes of snapshot chunks
    /// it sends per second, every peer and group together (see
    /// [`MultiConfig::snapshot_send_bytes_per_tick_max`]); `None`, the
    /// default, sends them as fast as the transfers ask.
    pub snapshot_send_bytes_per_sec: Option<u64>,
    /// Lease reads: see [`Config::lease_read_ticks`] (0, the default,
    /// turns them off).
    pub lease_read_ticks: u32,
    /// The clock drift the lease leaves room for: see
    /// [`Config::clock_drift_bound_ticks`].
    pub clock_drift_bound_ticks: u32,
    /// Election priorities: see [`Config::priorities`] (empty, the
    /// default, prefers no node). Every node must be given the same map.
    pub priorities: BTreeMap<NodeId, u32>,
    /// Mutual TLS on every peer and client connection (load it with
    /// [`TlsConfig::load`] for [`TlsRole::Node`](crate::tls::TlsRole::Node)
    /// of this node); `None`, the default, serves plaintext and says so
    /// loudly in the log.
    pub tls: Option<Arc<TlsConfig>>,
    /// A client connection on which no request began for this long is
    /// closed ([`crate::listener::CLIENT_IDLE_TIMEOUT_DEFAULT`]).
    pub client_idle_timeout: Duration,
    /// A frame begun but not finished within this time closes its
    /// connection ([`crate::listener::FRAME_TIMEOUT_DEFAULT`]).
    pub frame_timeout: Duration,
    /// Node-wide limit on bytes held by connections' receive buffers
    /// beyond a small share each
    /// ([`crate::listener::FRAME_BUFFER_BYTES_MAX_DEFAULT`]).
    pub frame_buffer_bytes_max: usize,
}

impl NodeSettings {
    /// Defaults: 10 ms ticks, elections after 15..30 ticks, heartbeats
    /// every 3 ticks, the transport's default peer timeout, a snapshot
    /// every [`SNAPSHOT_EVERY_ENTRIES_DEFAULT`] entries keeping
    /// [`COMPACTION_TRAILING_ENTRIES_DEFAULT`] entries below it.
    pub fn new(
        id: NodeId,
        listen: impl Into<String>,
        peers: BTreeMap<NodeId, String>,
        cluster_id: impl Into<String>,
    ) -> Self {
        NodeSettings {
            id,
            listen: listen.into(),
            peers,
            join: false,
            witness: false,
            witnesses: std::collections::BTreeSet::new(),
            cluster_id: cluster_id.into(),
            tick: Duration::from_millis(10),
            election_ticks: (15, 30),
            heartbeat_ticks: 3,
            peer_timeout: Some(PEER_TIMEOUT_DEFAULT),
            stream_wrapper: None,
            snapshot_every_entries: Some(SNAPSHOT_EVERY_ENTRIES_DEFAULT),
            compaction_trailing_entries: COMPACTION_TRAILING_ENTRIES_DEFAULT,
            snapshot_send_bytes_per_sec: None,
            lease_read_ticks: 0,
            clock_drift_bound_ticks: 3,
            priorities: BTreeMap::new(),
            tls: None,
            client_idle_timeout: crate::listener::CLIENT_IDLE_TIMEOUT_DEFAULT,
            frame_timeout: crate::listener::FRAME_TIMEOUT_DEFAULT,
            frame_buffer_bytes_max: crate::listener::FRAME_BUFFER_BYTES_MAX_DEFAULT,
        }
    }

    /// The replica configuration these settings describe, with a PRNG
    /// seed fresh for this start of the node (see [`Config::seed`]).
    pub fn raft_config(&self) -> Config {
        let mut config = if self.join {
            let mut config = Config::new(
                self.id,
                self.peers.keys().copied().filter(|id| *id != self.id),
            );
            // A joining witness lists itself among the witnesses alone
            // (it is not a learner: it will never hold a state machine).
            if !self.is_witness() {
                config.learners.insert(self.id);
            }
            config
        } else {
            Config::new(
                self.id,
                self.peers.keys().copied().chain(std::iter::once(self.id)),
            )
        };
        config.witnesses = self.witnesses.clone();
        if self.is_witness() {
            config.witnesses.insert(self.id);
        }
        config.election_timeout_min_ticks = self.election_ticks.0;
        config.election_timeout_max_ticks = self.election_ticks.1;
        config.heartbeat_interval_ticks = self.heartbeat_ticks;
        config.compaction_threshold_entries = self.snapshot_every_entries;
        config.compaction_trailing_entries = self.compaction_trailing_entries;
        config.snapshot_chunk_bytes_max =
            snapshot_chunk_bytes_for(self.snapshot_send_bytes_per_sec);
        config.lease_read_ticks = self.lease_read_ticks;
        config.clock_drift_bound_ticks = self.clock_drift_bound_ticks;
        config.priorities = self.priorities.clone();
        // Under madsim the clock is simulated, so this stays reproducible.
        let started_nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        config.seed = self.id ^ started_nanos.rotate_left(17);
        config
    }

    /// Whether this node runs as a witness: [`witness`](Self::witness),
    /// or its id among [`witnesses`](Self::witnesses).
    pub fn is_witness(&self) -> bool {
        self.witness || self.witnesses.contains(&self.id)
    }
}

/// Where a node keeps its log and snapshots.
#[derive(Clone, Debug)]
pub enum NodeStorage {
    /// A data directory, as `concord-node --data-dir` keeps it: the shared
    /// log in `<path>/log/`, snapshots in `<path>/groups/`, written by the
    /// log's own thread with group commit. It is locked for this process
    /// and claimed for this cluster and node (another's is refused); a
    /// single-group server's directory is upgraded in place
    /// ([`crate::multi::upgrade`]).
    Dir {
        /// The directory (created if missing).
        path: PathBuf,
        /// How the log writes (`sync: false` skips fsync: tests and
        /// benchmarks only).
        options: MultiWalOptions,
    },
    /// A simulated disk in memory ([`PageCacheDisk`]), written on the
    /// server loop: what was not synced is lost at
    /// [`PageCacheDisk::crash`]. For madsim (which has no threads or
    /// files) and in-process tests and benchmarks.
    Memory {
        /// The disk; give the same one back to restart the node on it.
        disk: PageCacheDisk,
        /// This start's incarnation: must grow at every start on the same
        /// disk ([`MultiConfig::incarnation`]).
        incarnation: u64,
        /// How the log writes.
        options: MultiWalOptions,
    },
}

impl NodeStorage {
    /// The data directory `path`, fsync on.
    pub fn dir(path: impl Into<PathBuf>) -> NodeStorage {
        NodeStorage::Dir {
            path: path.into(),
            options: MultiWalOptions::default(),
        }
    }

    /// The memory disk `disk`, in its start number `incarnation` (1 or
    /// more, growing at every restart on it).
    pub fn memory(disk: PageCacheDisk, incarnation: u64) -> NodeStorage {
        NodeStorage::Memory {
            disk,
            incarnation,
            options: MultiWalOptions::default(),
        }
    }
}

/// Why [`start_node`] could not start the node.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The settings cannot work: what to change.
    #[error("{0}")]
    Settings(String),
    /// Binding the listener or starting a thread failed.
    #[error("{0}")]
    Io(String),
    /// The storage could not be opened or recovered (another cluster's or
    /// node's data directory, one in use, a damaged log).
    #[error("{0}")]
    Storage(#[from] StorageError),
    /// The server loop refused its configuration or a snapshot.
    #[error("{0}")]
    Server(#[from] MultiServerError),
}

/// A running node of a one-group cluster.
#[derive(Debug)]
pub struct RunningNode {
    /// The server loop (send it [`GroupOp`]s of [`GROUP`] with
    /// [`call`](MultiServerHandle::call): an in-process client).
    pub server: MultiServerHandle,
    /// The address actually bound.
    pub local_addr: SocketAddr,
    /// Counters of the outgoing peer connections.
    pub sender_counters: Arc<TcpFrameCounters>,
    /// Counters of the incoming connections (accepted, refused at the
    /// handshake, closed for bad input).
    pub listener_counters: Arc<ListenerCounters>,
    /// The data directory's identity, held while the node runs (`None` in
    /// memory).
    _identity: Option<Arc<IdentityHandle>>,
}

impl RunningNode {
    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.server.id()
    }

    /// The group's status here, as `concord-cli status` shows it, or
    /// `None` once the node stopped or if it does not host the group (a
    /// node that joined and was not added yet, or was removed).
    pub async fn status(&self) -> Option<NodeStatus> {
        group_status(&self.server).await
    }

    /// Stops the node gracefully: queued writes finish, waiting clients
    /// are told the outcome is unknown. How the loop ended.
    pub async fn shutdown(self) -> Result<(), MultiServerError> {
        self.server.shutdown().await
    }
}

/// Group [`GROUP`]'s status at the server `server`, as `concord-cli
/// status` shows it, or `None` once the server stopped or if it does not
/// host the group.
pub async fn group_status(server: &MultiServerHandle) -> Option<NodeStatus> {
    let op = GroupOp::Status(StatusQuery::Node(GROUP));
    let ClientResponse::Done(bytes) = server.call(GROUP, op).await else {
        return None;
    };
    match concord::codec::decode(&bytes, crate::multi::groups_status::STATUS_ANSWER_BYTES_MAX) {
        Ok(StatusAnswer::Node(status)) => Some(*status),
        _ => None,
    }
}

/// Segment size of [`start_in_process_node`]'s log. In memory a segment
/// is freed only whole, once compaction passes it: small segments give
/// the allocator back what it reuses, where 64 MiB ones (a disk's
/// default) made every append fault in fresh pages.
pub const IN_PROCESS_SEGMENT_BYTES_MAX: u64 = 1024 * 1024;

/// Starts node `settings.id` of a one-group cluster in this process, on
/// `network` instead of sockets (`settings.listen` and the peers'
/// addresses are only names; TLS and the listener's settings do not
/// apply), storing on `disk` in its start number `incarnation`: the same
/// server loop as [`start_node`], for benchmarks and tests of the loop
/// alone. Must be called inside a runtime.
pub fn start_in_process_node<S, F>(
    settings: NodeSettings,
    make_state_machine: F,
    disk: PageCacheDisk,
    incarnation: u64,
    network: &MemFrameNetwork,
) -> Result<MultiServerHandle, StartError>
where
    S: StateMachine + Send + 'static,
    F: Fn() -> S + Send + 'static,
{
    let storage = NodeStorage::Memory {
        disk,
        incarnation,
        options: MultiWalOptions {
            segment_bytes_max: IN_PROCESS_SEGMENT_BYTES_MAX,
            ..MultiWalOptions::default()
        },
    };
    let (opened, _) = open_storage(&settings, storage)?;
    let config = host_config(&settings, &opened)?;
    let OpenedLog::Memory(log) = opened.log else {
        unreachable!("a memory disk opens a memory log");
    };
    let inbox = host::inbox();
    network.register(settings.id, inbox.0.clone());
    let log = InlineLog::new(log);
    let sender = network.sender(settings.id);
    Ok(host::start_with_catalog(
        config,
        with_sessions(make_state_machine),
        opened.recovery,
        log,
        sender,
        inbox,
    )?)
}

/// `make_state_machine` as the host's factory: each group's machine
/// behind a session table of [`SESSIONS_MAX`] sessions.
fn with_sessions<S, F>(make_state_machine: F) -> impl Fn(GroupId) -> GroupSessions<S> + Send
where
    S: StateMachine,
    F: Fn() -> S + Send,
{
    move |_group| GroupSessions::with_limits(make_state_machine(), SESSIONS_MAX, usize::MAX)
}

/// The host's settings for the node `settings` describe, on what
/// `opened` recovered: refused if the recovered configuration lists the
/// node as the other kind (witness or full voter) than `settings` say.
fn host_config(settings: &NodeSettings, opened: &Opened) -> Result<MultiServerConfig, StartError> {
    if let Some(conflict) =
        crate::multi::witness_role_conflict(&opened.recovery, settings.id, settings.is_witness())
    {
        return Err(StartError::Settings(conflict));
    }
    // A node that joined holds the cluster's log: its configuration is in
    // force, whatever `join` says.
    let join = settings.join && !opened.recovery.holds_configuration();
    Ok(server_config(
        settings,
        &voters_of(settings),
        join,
        opened.incarnation,
    ))
}

/// The voters of a new cluster `settings` describe: the peers and this
/// node, or the peers alone when it joins.
fn voters_of(settings: &NodeSettings) -> BTreeSet<NodeId> {
    settings
        .peers
        .keys()
        .copied()
        .filter(|peer| !settings.join || *peer != settings.id)
        .chain((!settings.join).then_some(settings.id))
        .collect()
}

/// Starts a node of a one-group cluster serving the state machine
/// `make_state_machine` builds: opens (or creates) `storage`, binds the
/// listener, connects to peers and runs the server loop. Must be called
/// inside a runtime.
///
/// `make_state_machine` is called for group [`GROUP`] (again if the group
/// is removed from this node and added back) and once for the catalog's
/// slot, whose machine the host never uses (it applies the catalog
/// itself). Each runs behind a session table of [`SESSIONS_MAX`]
/// sessions: give a state machine without sessions of its own.
pub async fn start_node<S, F>(
    settings: NodeSettings,
    make_state_machine: F,
    storage: NodeStorage,
) -> Result<RunningNode, StartError>
where
    S: StateMachine + Send + 'static,
    F: Fn() -> S + Send + 'static,
{
    if let Some(tls) = &settings.tls {
        // Certificates name nodes of one cluster: material loaded for
        // another would refuse every peer.
        if tls.cluster_id() != settings.cluster_id {
            return Err(StartError::Settings(format!(
                "the TLS material was loaded for cluster {:?} but this node is in cluster {:?}",
                tls.cluster_id(),
                settings.cluster_id
            )));
        }
    }
    let id = settings.id;
    let (opened, identity) = open_storage(&settings, storage)?;
    let config = host_config(&settings, &opened)?;
    let listener = tokio::net::TcpListener::bind(settings.listen.as_str())
        .await
        .map_err(|e| StartError::Io(format!("cannot listen on {}: {e}", settings.listen)))?;
    let local_addr = listener
        .local_addr()
        .map_err(|e| StartError::Io(format!("cannot read the listening address: {e}")))?;
    if settings.tls.is_none() {
        tracing::warn!(
            node = id,
            listen = %local_addr,
            "TLS is off: peers and clients connect in plaintext and are not authenticated; \
             give the node a CA, certificate and key (concord-node --tls-ca/--tls-cert/--tls-key) \
             on any network you do not fully trust"
        );
    }
    let (mut frames, addresses) =
        TcpFrameConfig::for_servers(id, settings.cluster_id.clone(), &settings.peers);
    frames.tls = settings.tls.clone();
    frames.identity = identity.clone();
    frames.peer_timeout = settings.peer_timeout.unwrap_or(PEER_TIMEOUT_NONE);
    frames.stream_wrapper = settings.stream_wrapper.clone();
    let sender = TcpFrameSender::start(frames);
    let sender_counters = sender.counters();
    let inbox = host::inbox();
    let events = inbox.0.clone();
    let make = with_sessions(make_state_machine);
    let server = match opened.log {
        OpenedLog::Dir(log) => {
            let log = WalThread::start(log).map_err(|e| {
                StartError::Io(format!("cannot start the write-ahead log's thread: {e}"))
            })?;
            host::start_with_catalog(config, make, opened.recovery, log, sender, inbox)?
        }
        OpenedLog::Memory(log) => {
            let log = InlineLog::new(log);
            host::start_with_catalog(config, make, opened.recovery, log, sender, inbox)?
        }
    };
    // A joining node is not among the voters it joins.
    let mut accept =
        MultiListenerConfig::new(id, settings.cluster_id.clone(), voters_of(&settings));
    accept.tls = settings.tls.clone();
    accept.groups_hosted = Some(1);
    accept.addresses = addresses;
    accept.identity = identity.clone();
    accept.client_idle_timeout = settings.client_idle_timeout;
    accept.frame_timeout = settings.frame_timeout;
    accept.frame_buffer_bytes_max = settings.frame_buffer_bytes_max;
    let listener_counters = accept.counters.clone();
    tokio::spawn(tcp_listener::serve(
        listener,
        accept,
        events,
        server.shutdown_signal(),
    ));
    Ok(RunningNode {
        server,
        local_addr,
        sender_counters,
        listener_counters,
        _identity: identity,
    })
}

/// The log [`open_storage`] opened.
enum OpenedLog {
    Dir(data_dir::DirLog),
    Memory(SharedLog<PageCacheDisk, PageCacheDisk>),
}

/// What [`open_storage`] found.
struct Opened {
    log: OpenedLog,
    recovery: MultiRecovery,
    incarnation: u64,
}

/// Opens and recovers `storage`; with a data directory, its identity.
fn open_storage(
    settings: &NodeSettings,
    storage: NodeStorage,
) -> Result<(Opened, Option<Arc<IdentityHandle>>), StartError> {
    match storage {
        NodeStorage::Dir { path, options } => {
            let claim = IdentityClaim {
                cluster_id: settings.cluster_id.clone(),
                node_id: settings.id,
                bootstrap: !settings.join && settings.peers.keys().next() == Some(&settings.id),
            };
            let (opened, identity, _) =
                data_dir::open_one_group_data_dir_as(&path, options, &claim, GROUP)?;
            let opened = Opened {
                log: OpenedLog::Dir(opened.log),
                recovery: opened.recovery,
                incarnation: opened.incarnation,
            };
            Ok((opened, Some(identity)))
        }
        NodeStorage::Memory {
            disk,
            incarnation,
            options,
        } => {
            let (log, recovery) = SharedLog::open(disk.clone(), disk, options)?;
            let opened = Opened {
                log: OpenedLog::Memory(log),
                recovery,
                incarnation,
            };
            Ok((opened, None))
        }
    }
}

/// A snapshot bandwidth limit in bytes per second as the layer counts it,
/// in bytes per tick of `tick` (at least 1); `None` stays no limit.
pub fn snapshot_bytes_per_tick(bytes_per_sec: Option<u64>, tick: Duration) -> Option<u64> {
    bytes_per_sec.map(|rate| {
        let per_tick = u128::from(rate) * tick.as_nanos() / 1_000_000_000;
        u64::try_from(per_tick).unwrap_or(u64::MAX).max(1)
    })
}

/// The snapshot chunk size under a snapshot bandwidth limit of
/// `bytes_per_sec`: a tenth of a second's worth, between 4 KiB and the
/// core's default (1 MiB), so that the limit holds smoothly (a chunk may
/// overdraw the limit's credit by its length). Without a limit, the
/// core's default.
pub fn snapshot_chunk_bytes_for(bytes_per_sec: Option<u64>) -> usize {
    let default = Config::new(1, [1]).snapshot_chunk_bytes_max;
    bytes_per_sec.map_or(default, |rate| {
        usize::try_from(rate / 10)
            .unwrap_or(default)
            .clamp(SNAPSHOT_PACED_CHUNK_BYTES_MIN, default)
    })
}

/// The smallest snapshot chunk a bandwidth limit cuts chunks to.
pub const SNAPSHOT_PACED_CHUNK_BYTES_MIN: usize = 4 * 1024;

/// The host's settings for `settings`: the catalog and, unless the node
/// joins, group [`GROUP`], both with `voters`.
fn server_config(
    settings: &NodeSettings,
    voters: &BTreeSet<NodeId>,
    join: bool,
    incarnation: u64,
) -> MultiServerConfig {
    let id = settings.id;
    let mut multi = MultiConfig::new(id, settings.peers.keys().copied().chain([id]));
    multi.incarnation = incarnation;
    multi.snapshot_send_bytes_per_tick_max =
        snapshot_bytes_per_tick(settings.snapshot_send_bytes_per_sec, settings.tick);
    let group = settings.raft_config();
    let seed = group.seed;
    // A joining node follows the catalog as a learner of the voters it
    // was told of, and hosts the group once it is added to it.
    let mut catalog = Config::new(id, voters.iter().copied());
    if join {
        catalog.learners.insert(id);
    }
    catalog.compaction_threshold_entries = settings.snapshot_every_entries;
    catalog.compaction_trailing_entries = settings.compaction_trailing_entries;
    catalog.snapshot_chunk_bytes_max =
        snapshot_chunk_bytes_for(settings.snapshot_send_bytes_per_sec);
    catalog.seed = seed.rotate_left(29) ^ 0x9e37_79b9;
    let mut groups = vec![(CATALOG_GROUP, catalog)];
    if !join {
        groups.push((GROUP, group));
    }
    let mut config = MultiServerConfig::new(multi, groups);
    config.witness = settings.is_witness();
    config.tick = settings.tick;
    config.client_addrs = settings.peers.clone();
    config
}
