//! The accepting side of a multi-group server: one port for peers and
//! clients, the same handshake as a single-group server's (cluster id,
//! node ids, mutual TLS when configured: a peer's certificate must name
//! the node it claims, a client's must be a client certificate), then a
//! peer connection carries [`MultiPeerFrame`]s into the server loop and a
//! client connection carries [`GroupRequest`]s and their answers.
//!
//! Bad input (garbage, a bad checksum, an oversized or undecodable frame,
//! a frame claiming another sender) closes that one connection with a
//! logged reason; the server keeps serving.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use crate::frame;
use crate::listener::{self, Inbound, ListenerConfig, ListenerCounters};
use crate::tls::TlsConfig;
use crate::wire::ClientResponse;
use concord::NodeId;

use super::host::HostEvent;
use super::wire::{GroupRequest, MultiPeerFrame};

/// Settings of the accepting side.
#[derive(Clone, Debug)]
pub struct MultiListenerConfig {
    /// This node.
    pub node_id: NodeId,
    /// The cluster's name.
    pub cluster_id: String,
    /// The nodes that may connect as peers.
    pub peers: BTreeSet<NodeId>,
    /// Largest frame accepted.
    pub max_frame_bytes: usize,
    /// Time a new connection has to complete its handshake.
    pub handshake_timeout: Duration,
    /// A peer connection on which nothing arrived for this long is closed.
    pub peer_idle_timeout: Duration,
    /// A client connection with no request for this long is closed.
    pub client_idle_timeout: Duration,
    /// A frame begun but not finished in this time closes its connection.
    pub frame_timeout: Duration,
    /// Most connections open at once.
    pub connections_max: usize,
    /// Node-wide bytes of receive buffers beyond each connection's share.
    pub frame_buffer_bytes_max: usize,
    /// Mutual TLS; `None` accepts plaintext.
    pub tls: Option<Arc<TlsConfig>>,
    /// The number of groups this server hosts, named in the answer to a
    /// single-group client's request ("this server hosts N groups: use
    /// --groups N"); `None` closes such a connection as bad input.
    pub groups_hosted: Option<u64>,
    /// Peers learnt while running (the catalog's servers), accepted
    /// besides `peers`: the book a [`TcpFrameSender`](super::tcp_sender::TcpFrameSender)
    /// writes them to.
    pub addresses: crate::addresses::SharedAddressBook,
    /// This node's data directory identity: a peer showing another
    /// incarnation of the cluster is refused, one showing ours is
    /// accepted though neither `peers` nor `addresses` name it yet (a
    /// member added since), and ours is adopted while unknown (see
    /// [`crate::identity`]). `None` checks none.
    pub identity: Option<Arc<crate::identity::IdentityHandle>>,
    /// Where the listener counts the connections it accepted, refused
    /// and closed for bad input: share it to read them while it runs
    /// (a test that a refusal was counted, a metrics exporter).
    pub counters: Arc<ListenerCounters>,
    /// Planted mistake for the madsim sweep (`--bug
    /// answers-out-of-order`): see [`ListenerConfig`]'s.
    #[cfg(feature = "planted-bugs")]
    #[doc(hidden)]
    pub planted_answers_out_of_order: bool,
}

impl MultiListenerConfig {
    /// Defaults: 16 MiB frames, 2 s to shake hands, peers silent for 2 s
    /// and clients idle for 120 s are closed, 10 s per frame, 1,024
    /// connections, 128 MiB of receive buffers.
    pub fn new(node_id: NodeId, cluster_id: impl Into<String>, peers: BTreeSet<NodeId>) -> Self {
        MultiListenerConfig {
            node_id,
            cluster_id: cluster_id.into(),
            peers,
            max_frame_bytes: frame::DEFAULT_MAX_FRAME_BYTES,
            handshake_timeout: Duration::from_secs(2),
            peer_idle_timeout: listener::PEER_IDLE_TIMEOUT_DEFAULT,
            client_idle_timeout: listener::CLIENT_IDLE_TIMEOUT_DEFAULT,
            frame_timeout: listener::FRAME_TIMEOUT_DEFAULT,
            connections_max: 1024,
            frame_buffer_bytes_max: listener::FRAME_BUFFER_BYTES_MAX_DEFAULT,
            tls: None,
            groups_hosted: None,
            addresses: Default::default(),
            identity: None,
            counters: Arc::default(),
            #[cfg(feature = "planted-bugs")]
            planted_answers_out_of_order: false,
        }
    }
}

/// Accepts connections on `listener` until `shutdown` flips, handing
/// frames and client requests to the server's `events`: the single-group
/// listener's code (handshake, TLS, limits, budgets, bad input) with this
/// server's frames and requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: MultiListenerConfig,
    events: mpsc::Sender<HostEvent>,
    shutdown: watch::Receiver<bool>,
) {
    let MultiListenerConfig {
        node_id,
        cluster_id,
        peers,
        max_frame_bytes,
        handshake_timeout,
        peer_idle_timeout,
        client_idle_timeout,
        frame_timeout,
        connections_max,
        frame_buffer_bytes_max,
        tls,
        groups_hosted,
        addresses,
        identity,
        counters,
        #[cfg(feature = "planted-bugs")]
        planted_answers_out_of_order,
    } = config;
    let misdirected = groups_hosted.map(|groups| {
        format!(
            "this server hosts {groups} groups: use --groups {groups} (a client of a \
             single-group cluster sent this request)"
        )
    });
    let config = ListenerConfig {
        node_id,
        cluster_id,
        // Peers of the start, and those the catalog recorded since; no
        // incarnation.
        voters: peers,
        addresses,
        max_frame_bytes,
        handshake_timeout,
        connections_max,
        peer_idle_timeout,
        client_idle_timeout,
        frame_timeout,
        frame_buffer_bytes_max,
        tls,
        identity,
        #[cfg(feature = "planted-bugs")]
        planted_answers_out_of_order,
    };
    listener::serve_for::<Groups>(listener, config, events, shutdown, counters, misdirected).await
}

/// The multi-group host's side of [`Inbound`].
enum Groups {}

impl Inbound for Groups {
    type PeerFrame = MultiPeerFrame;
    type Request = GroupRequest;
    type Event = HostEvent;
    const STRANGER_HINT: &'static str = " (a multi-group server's peers are fixed at its start)";

    fn from_peer(frame: MultiPeerFrame) -> Option<(NodeId, u64, HostEvent)> {
        match frame {
            MultiPeerFrame::Frame { seq, frame } => {
                Some((frame.from, seq, HostEvent::Frame(Box::new(frame))))
            }
            MultiPeerFrame::Keepalive => None,
        }
    }

    fn from_client(request: GroupRequest, reply: oneshot::Sender<ClientResponse>) -> HostEvent {
        HostEvent::Request {
            group: request.group,
            op: request.request,
            reply,
        }
    }
}
