//! Wiring: a TCP-served node from a handful of settings. Used by the
//! `concord-node` binary, the local-cluster example and the madsim tests,
//! so they all run the same code.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use concord::{Config, NodeId};

use super::frame::DEFAULT_MAX_FRAME_BYTES;
use super::listener::{self, ListenerConfig, ListenerCounters};
use super::server::{self, ServerConfig, ServerError, ServerHandle};
use super::storage::Storage;
use super::tls::TlsConfig;
use super::transport::{StreamWrapper, TcpTransport, TcpTransportConfig, TransportCounters};

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
    /// crate documentation, "Witnesses"). A witness of a new cluster is
    /// also listed in [`witnesses`](Self::witnesses) (on every node); one
    /// joining a running cluster ([`join`](Self::join)) is added with
    /// `concord-cli member add-witness`. A node's kind must match the
    /// replicated configuration: a server that its stored configuration
    /// lists otherwise refuses to start
    /// ([`ServerError::WitnessListedAsFullVoter`],
    /// [`ServerError::FullServerListedAsWitness`]).
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
    /// [`TcpTransportConfig::peer_timeout`]; `None` waits for TCP itself).
    pub peer_timeout: Option<Duration>,
    /// Applied to every outgoing peer connection (fault injection in tests).
    pub stream_wrapper: Option<StreamWrapper>,
    /// Take a snapshot (and compact the log) once this many entries were
    /// applied since the last one; `None` never does.
    pub snapshot_every_entries: Option<u64>,
    /// Entries kept in the log below a new snapshot, so that a follower a
    /// little behind is caught up from the log rather than by a snapshot.
    pub compaction_trailing_entries: u64,
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
    /// [`TlsConfig::load`] for [`TlsRole::Node`](super::tls::TlsRole::Node)
    /// of this node); `None`, the default, serves plaintext and says so
    /// loudly in the log.
    pub tls: Option<Arc<TlsConfig>>,
    /// A client connection on which no request began for this long is
    /// closed ([`listener::CLIENT_IDLE_TIMEOUT_DEFAULT`]).
    pub client_idle_timeout: Duration,
    /// A frame begun but not finished within this time closes its
    /// connection ([`listener::FRAME_TIMEOUT_DEFAULT`]).
    pub frame_timeout: Duration,
    /// Node-wide limit on bytes held by connections' receive buffers
    /// beyond a small share each
    /// ([`listener::FRAME_BUFFER_BYTES_MAX_DEFAULT`]).
    pub frame_buffer_bytes_max: usize,
    /// The data directory's identity
    /// ([`FileStorage::open_as`](super::wal::FileStorage::open_as)): peers
    /// of another incarnation of the cluster are refused. `None`, the
    /// default, checks no incarnation.
    pub identity: Option<Arc<super::identity::IdentityHandle>>,
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
            peer_timeout: TcpTransportConfig::new(id, "", BTreeMap::new()).peer_timeout,
            stream_wrapper: None,
            snapshot_every_entries: Some(SNAPSHOT_EVERY_ENTRIES_DEFAULT),
            compaction_trailing_entries: COMPACTION_TRAILING_ENTRIES_DEFAULT,
            lease_read_ticks: 0,
            clock_drift_bound_ticks: 3,
            priorities: BTreeMap::new(),
            tls: None,
            client_idle_timeout: listener::CLIENT_IDLE_TIMEOUT_DEFAULT,
            frame_timeout: listener::FRAME_TIMEOUT_DEFAULT,
            frame_buffer_bytes_max: listener::FRAME_BUFFER_BYTES_MAX_DEFAULT,
            identity: None,
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

/// A running node: its server and the tasks around it.
#[derive(Debug)]
pub struct RunningNode {
    /// The server.
    pub server: ServerHandle,
    /// The address actually bound.
    pub local_addr: std::net::SocketAddr,
    /// Connection counters of the listener.
    pub listener_counters: Arc<ListenerCounters>,
    /// Counters of the outgoing peer connections.
    pub transport_counters: Arc<TransportCounters>,
    _transport: Arc<TcpTransport>,
}

impl RunningNode {
    /// Stops the node gracefully.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        self.server.shutdown().await
    }
}

/// Starts a node serving any `state_machine` (for a service with
/// exactly-once clients, wrapped in
/// [`WithSessions`](concord::session::WithSessions)): binds the listener,
/// connects to peers, recovers `storage` and runs the server. Must be
/// called inside a runtime.
pub async fn start_node<S, St>(
    settings: NodeSettings,
    state_machine: S,
    storage: St,
) -> Result<RunningNode, ServerError>
where
    S: concord::state_machine::StateMachine + Send + 'static,
    St: Storage,
{
    if let Some(tls) = &settings.tls {
        // Certificates name nodes of one cluster: material loaded for
        // another would refuse every peer.
        if tls.cluster_id() != settings.cluster_id {
            return Err(ServerError::Io(format!(
                "the TLS material was loaded for cluster {:?} but this node is in cluster {:?}",
                tls.cluster_id(),
                settings.cluster_id
            )));
        }
    }
    let listener = tokio::net::TcpListener::bind(settings.listen.as_str())
        .await
        .map_err(|e| ServerError::Io(format!("cannot listen on {}: {e}", settings.listen)))?;
    let local_addr = listener
        .local_addr()
        .map_err(|e| ServerError::Io(e.to_string()))?;
    let raft = settings.raft_config();
    let voters = raft.voters.clone();
    let mut peers = settings.peers.clone();
    peers.remove(&settings.id);
    let mut transport_config =
        TcpTransportConfig::new(settings.id, settings.cluster_id.clone(), peers);
    transport_config.peer_timeout = settings.peer_timeout;
    transport_config.stream_wrapper = settings.stream_wrapper.clone();
    transport_config.tls = settings.tls.clone();
    transport_config.identity = settings.identity.clone();
    if settings.tls.is_none() {
        tracing::warn!(
            node = settings.id,
            listen = %local_addr,
            "TLS is off: peers and clients connect in plaintext and are not authenticated; \
             give the node a CA, certificate and key (concord-node --tls-ca/--tls-cert/--tls-key) \
             on any network you do not fully trust"
        );
    }
    let transport = Arc::new(TcpTransport::start(transport_config));
    let mut server_config = ServerConfig::new(raft);
    server_config.tick = settings.tick;
    server_config.client_addrs = settings.peers.clone();
    let addresses = server_config.addresses.clone();
    let inbox = server::inbox();
    let events = inbox.0.clone();
    let server = server::start(
        server_config,
        state_machine,
        storage,
        transport.clone(),
        inbox,
    )?;
    let counters = Arc::new(ListenerCounters::default());
    let listener_config = ListenerConfig {
        node_id: settings.id,
        cluster_id: settings.cluster_id.clone(),
        voters,
        addresses: addresses.clone(),
        max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
        handshake_timeout: Duration::from_secs(5),
        connections_max: 4096,
        peer_idle_timeout: listener::PEER_IDLE_TIMEOUT_DEFAULT,
        client_idle_timeout: settings.client_idle_timeout,
        frame_timeout: settings.frame_timeout,
        frame_buffer_bytes_max: settings.frame_buffer_bytes_max,
        tls: settings.tls.clone(),
        identity: settings.identity.clone(),
        address_lookup: super::listener::AddressLookup::SingleGroup,
    };
    tokio::spawn(listener::serve(
        listener,
        listener_config,
        events,
        server.shutdown_signal(),
        counters.clone(),
    ));
    Ok(RunningNode {
        server,
        local_addr,
        listener_counters: counters,
        transport_counters: transport.counters(),
        _transport: transport,
    })
}
