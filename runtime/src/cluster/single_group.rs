//! The single-group server from [`NodeSettings`]: transitional, while
//! the callers that have not moved to [`start_node`](super::start_node)
//! (the one runtime) are ported. It goes with the single-group server.

use std::sync::Arc;
use std::time::Duration;

use super::NodeSettings;

use super::super::frame::DEFAULT_MAX_FRAME_BYTES;
use super::super::listener::{self, ListenerConfig, ListenerCounters};
use super::super::server::{self, ServerConfig, ServerError, ServerHandle};
use super::super::storage::Storage;
use super::super::transport::{TcpTransport, TcpTransportConfig, TransportCounters};

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
        identity: None,
        address_lookup: super::super::listener::AddressLookup::SingleGroup,
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
