//! The accepting side: one TCP port per server serves both peers and
//! clients. The first frame (a [`Hello`]) says which; strangers (another
//! cluster, an unknown node id, a node claiming our own id) are refused with
//! a logged reason. After the handshake a peer connection carries Raft
//! messages into the server loop, and a client connection carries requests
//! and their answers.
//!
//! With TLS on ([`ListenerConfig::tls`]) a TLS 1.3 handshake with a client
//! certificate from the cluster's CA comes first, and the certificate must
//! name what the `Hello` claims (`node-<id>.<cluster-id>` for a peer,
//! `client.<cluster-id>` for a client; see [`super::tls`]); anything
//! else is refused with a logged reason naming the remote address, the
//! claim and what the certificate names.
//!
//! Any bad input (garbage, a truncated or oversized frame, a bad checksum,
//! an undecodable payload, a message claiming another sender) closes that
//! one connection with a logged reason; the server keeps serving. A peer or
//! client that simply goes away (a clean close, a reset, a broken pipe) is
//! not bad input and is logged at debug level.
//!
//! Memory is bounded by what arrives, not by what is announced: a
//! connection's receive buffer grows with the bytes received (see
//! [`FrameBuffer`]), beyond a small share it draws on a node-wide budget
//! (one for clients, one for peers), a frame begun must be finished
//! within `frame_timeout` and a client connection with no request for
//! `client_idle_timeout` is closed.
//!
//! A peer connection answers every keepalive and is closed once nothing at
//! all arrived on it for `peer_idle_timeout`: its sender writes keepalives
//! far more often, so such a connection is dead (a partition, a vanished
//! host) and its sender has dialled a new one.
//!
//! The multi-group server ([`tcp_listener`](super::multi::tcp_listener))
//! accepts through the same code: only what its connections carry and
//! what its server loop receives differ (the crate-internal `Inbound`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot, watch};

use concord::NodeId;

use super::codec;
use super::frame::{self, FrameBudget, FrameBuffer, FrameError, FrameTimeouts};
use super::identity::IdentityHandle;
use super::sniff;
use super::tls::{self, PeerIdentity, TlsConfig};
use super::transport::BoxStream;
use super::wire::{
    ClientRequest, ClientResponse, Hello, HelloRole, PeerReply, Welcome, CLUSTER_ID_MAX_BYTES,
};

/// Settings of the accepting side.
#[derive(Clone, Debug)]
pub struct ListenerConfig {
    /// This node.
    pub node_id: NodeId,
    /// The cluster's name.
    pub cluster_id: String,
    /// Every voter of the cluster at its birth (`--peers`): peers must be
    /// one of them or in [`addresses`](Self::addresses).
    pub voters: BTreeSet<NodeId>,
    /// The replicated address book: a node added at runtime is accepted as
    /// a peer once its address record is in this node's log.
    pub addresses: super::addresses::SharedAddressBook,
    /// Largest frame accepted.
    pub max_frame_bytes: usize,
    /// Time a new connection has to send its `Hello`.
    pub handshake_timeout: Duration,
    /// Most connections open at once; more are closed at once.
    pub connections_max: usize,
    /// A peer connection on which nothing arrived for this long is closed.
    pub peer_idle_timeout: Duration,
    /// A client connection on which no request began for this long is
    /// closed (the client dials again when it has something to ask).
    pub client_idle_timeout: Duration,
    /// A frame begun (its first header byte arrived) but not finished
    /// within this time closes its connection, peer or client.
    pub frame_timeout: Duration,
    /// Node-wide limit on the bytes client connections' receive buffers
    /// hold beyond [`FRAME_BUFFER_FREE_BYTES`](frame::FRAME_BUFFER_FREE_BYTES)
    /// each (see [`FrameBudget`]); peer connections have a second budget
    /// of the same size, so clients cannot starve replication.
    pub frame_buffer_bytes_max: usize,
    /// Mutual TLS: every connection must complete a TLS 1.3 handshake with
    /// a certificate from the cluster's CA naming what its `Hello` claims
    /// (see [`super::tls`]). `None` accepts plaintext.
    pub tls: Option<Arc<TlsConfig>>,
    /// This node's data directory identity: a peer of another incarnation
    /// of the cluster is refused, and the first one a peer shows is
    /// adopted while ours is unknown (see [`super::identity`]). `None`
    /// checks no incarnation.
    pub identity: Option<Arc<IdentityHandle>>,
    /// Planted mistake for the madsim sweep (`--bug
    /// answers-out-of-order`): a client connection's write that gathers
    /// several answers puts the first two the wrong way round, so a
    /// pipelining client pairs each with the other's request.
    #[cfg(feature = "planted-bugs")]
    #[doc(hidden)]
    pub planted_answers_out_of_order: bool,
}

/// Default [`ListenerConfig::peer_idle_timeout`]: many keepalive intervals
/// of the transport's defaults.
pub const PEER_IDLE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(2);

/// Default [`ListenerConfig::client_idle_timeout`].
pub const CLIENT_IDLE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(120);

/// Default [`ListenerConfig::frame_timeout`]: a 16 MiB frame at under
/// 2 MB/s is too slow to be anything but a stalled or hostile sender.
pub const FRAME_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);

/// Default [`ListenerConfig::frame_buffer_bytes_max`]: 128 MiB, room for
/// 32 commands of the 4 MiB limit at once on top of each connection's
/// free share.
pub const FRAME_BUFFER_BYTES_MAX_DEFAULT: usize = 128 * 1024 * 1024;

/// What a client connection keeps of its receive buffer between requests.
const CLIENT_BUFFER_KEEP_BYTES: usize = 16 * 1024;

/// Counters of the accepting side.
#[derive(Debug, Default)]
pub struct ListenerCounters {
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Connections refused at the handshake.
    pub refused: AtomicU64,
    /// Connections closed because of bad input.
    pub bad_input: AtomicU64,
    /// Peer connections closed because a frame's sequence number did not
    /// rise: the peer's transport delivered its frames out of order (a
    /// defect there; counted in `bad_input` too).
    pub peer_frames_out_of_order: AtomicU64,
    /// Connections closed because a frame was begun but not finished
    /// within the frame timeout.
    pub slow: AtomicU64,
    /// Connections currently open.
    pub open: AtomicUsize,
    /// Answers written to clients.
    pub client_answers: AtomicU64,
    /// Writes that carried them: a pipelining client's answers of one
    /// batch leave in one write.
    pub client_answer_writes: AtomicU64,
}

/// What a listener hands on to its server: the one thing the single-group
/// server and the multi-group host accept differently (peer frames, client
/// requests and the server loop's events). Handshake, TLS, limits and
/// error handling are [`serve_for`]'s, the same for both.
pub(crate) trait Inbound: 'static {
    /// What a peer connection carries: a keepalive or messages.
    type PeerFrame: serde::de::DeserializeOwned + Send;
    /// What a client connection carries.
    type Request: serde::de::DeserializeOwned + Send;
    /// What the server loop receives.
    type Event: Send + 'static;
    /// Said after "node N is not a member of this cluster": how a node
    /// becomes one.
    const STRANGER_HINT: &'static str;
    /// The node a peer frame claims to come from, its sequence number
    /// (rising on one connection) and the event it becomes; `None` for a
    /// keepalive.
    fn from_peer(frame: Self::PeerFrame) -> Option<(NodeId, u64, Self::Event)>;
    /// The event a client request becomes, answered on `reply`.
    fn from_client(request: Self::Request, reply: oneshot::Sender<ClientResponse>) -> Self::Event;
}

/// Accepts connections on `listener` until `shutdown` flips, for the
/// server behind an [`Inbound`]. `misdirected`: the
/// answer to a client request that is not an `I::Request` but a
/// single-group server's [`ClientRequest`] (a multi-group server names
/// its group count); `None` closes such a connection as bad input.
pub(crate) async fn serve_for<I: Inbound>(
    listener: tokio::net::TcpListener,
    config: ListenerConfig,
    events: mpsc::Sender<I::Event>,
    mut shutdown: watch::Receiver<bool>,
    counters: Arc<ListenerCounters>,
    misdirected: Option<String>,
) {
    let config = Arc::new(config);
    // Peers draw on a budget of their own: clients, however many and
    // however hostile, cannot starve replication of buffer space.
    let budgets = Budgets {
        clients: Arc::new(FrameBudget::new(config.frame_buffer_bytes_max)),
        peers: Arc::new(FrameBudget::new(config.frame_buffer_bytes_max)),
        lookups: Arc::default(),
        misdirected: misdirected.map(Arc::from),
        counters: counters.clone(),
    };
    loop {
        // Every `select!` in the runtime is `biased`: an unbiased one draws
        // its branch order from tokio's own thread-local generator, which
        // madsim does not seed, so a simulated run would not replay.
        let accepted = tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, remote) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if *shutdown.borrow() {
            return;
        }
        if counters.open.load(Ordering::Relaxed) >= config.connections_max {
            tracing::warn!(%remote, max = config.connections_max, "too many connections; closing the new one");
            continue;
        }
        let _ = stream.set_nodelay(true);
        counters.accepted.fetch_add(1, Ordering::Relaxed);
        counters.open.fetch_add(1, Ordering::Relaxed);
        let config = config.clone();
        let events = events.clone();
        let counters = counters.clone();
        let shutdown = shutdown.clone();
        let budgets = budgets.clone();
        tokio::spawn(async move {
            let remote = remote.to_string();
            // The first bytes name a TLS client dialling a plaintext server.
            let (stream, seen) = sniff::FirstBytes::new(stream);
            let result = match secure(Box::new(stream), &config).await {
                Ok((stream, identity)) => {
                    handle::<I>(
                        stream, identity, &seen, &remote, &config, events, shutdown, budgets,
                    )
                    .await
                }
                Err(refusal) => Err(refusal),
            };
            match result {
                Ok(()) | Err(ConnError::Gone) => tracing::debug!(%remote, "connection closed"),
                Err(ConnError::Idle(idle)) => {
                    tracing::info!(%remote, ?idle, "closing silent connection")
                }
                Err(ConnError::Slow(timeout)) => {
                    counters.slow.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%remote, ?timeout, "closing connection: a frame was begun but not finished in time");
                }
                Err(ConnError::Refused(reason)) => {
                    counters.refused.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%remote, reason = %reason, "refused connection");
                }
                Err(ConnError::BadInput(reason)) => {
                    counters.bad_input.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%remote, reason = %reason, "closing connection after bad input");
                }
            }
            counters.open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// The node-wide frame buffer budgets, and what every connection's task
/// shares besides.
#[derive(Clone)]
struct Budgets {
    /// Of client connections and of every connection's handshake.
    clients: Arc<FrameBudget>,
    /// Of peer connections once their handshake was accepted.
    peers: Arc<FrameBudget>,
    /// Members accepted without an address, whose address is being
    /// asked of the others (see [`learn_address`]).
    lookups: Arc<std::sync::Mutex<BTreeSet<NodeId>>>,
    /// The listener's counters.
    counters: Arc<ListenerCounters>,
    /// What a client of the other kind of server is answered (see
    /// [`serve_for`]).
    misdirected: Option<Arc<str>>,
}

enum ConnError {
    Refused(String),
    BadInput(String),
    /// The other side closed or reset the connection while we wrote.
    Gone,
    /// A connection on which nothing arrived for the idle timeout.
    Idle(Duration),
    /// A connection that began a frame and did not finish it in time.
    Slow(Duration),
}

/// The next value on an accepted connection, or `None` once the server
/// shuts down or the other side went away.
async fn next_value<T: serde::de::DeserializeOwned>(
    stream: &mut BoxStream,
    frame_buf: &mut FrameBuffer,
    config: &ListenerConfig,
    timeouts: FrameTimeouts,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Option<T>, ConnError> {
    if !next_frame(stream, frame_buf, config, timeouts, shutdown).await? {
        return Ok(None);
    }
    codec::decode(frame_buf.payload(), config.max_frame_bytes)
        .map(Some)
        .map_err(|e| ConnError::BadInput(FrameError::Codec(e).to_string()))
}

/// Reads the next frame of an accepted connection into `frame_buf`:
/// `false` once the server shuts down or the other side went away.
async fn next_frame<R: tokio::io::AsyncRead + Unpin + ?Sized>(
    stream: &mut R,
    frame_buf: &mut FrameBuffer,
    config: &ListenerConfig,
    timeouts: FrameTimeouts,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<bool, ConnError> {
    let read = frame::read_frame_timed(stream, frame_buf, config.max_frame_bytes, timeouts);
    let e = tokio::select! {
        biased;
        _ = shutdown.changed() => return Ok(false),
        read = read => match read {
            Ok(()) => return Ok(true),
            Err(e) => e,
        },
    };
    match e {
        e if went_away(&e) => Ok(false),
        FrameError::Idle { timeout } => Err(ConnError::Idle(timeout)),
        FrameError::Slow { timeout } => Err(ConnError::Slow(timeout)),
        e => Err(ConnError::BadInput(e.to_string())),
    }
}

/// Whether `e` only says the other side closed or reset the connection
/// (a client that gave up on a timed-out request, a restarting peer).
fn went_away(e: &FrameError) -> bool {
    use std::io::ErrorKind;
    match e {
        FrameError::Closed => true,
        FrameError::Io(io) => matches!(
            io.kind(),
            ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
        ),
        _ => false,
    }
}

async fn write_value<T: serde::Serialize>(
    stream: &mut BoxStream,
    buf: &mut Vec<u8>,
    value: &T,
) -> Result<(), ConnError> {
    buf.clear();
    frame::encode_frame(value, buf).map_err(|e| ConnError::BadInput(e.to_string()))?;
    write_all(stream, buf).await
}

/// Writes `bytes` and flushes them.
async fn write_all<W: tokio::io::AsyncWrite + Unpin + ?Sized>(
    stream: &mut W,
    bytes: &[u8],
) -> Result<(), ConnError> {
    let written = async {
        stream.write_all(bytes).await?;
        stream.flush().await
    };
    match written.await {
        Ok(()) => Ok(()),
        Err(e) => match FrameError::Io(e) {
            e if went_away(&e) => Err(ConnError::Gone),
            e => Err(ConnError::BadInput(format!("write failed: {e}"))),
        },
    }
}

/// Reads and drops what the other side still sends, for a moment, before
/// a connection is closed after a refusal: closing with unread bytes
/// would reset the connection, and a reset may destroy the refusal
/// before the other side reads it.
async fn linger(stream: &mut BoxStream) {
    use tokio::io::AsyncReadExt;
    const LINGER_BYTES_MAX: usize = 64 * 1024;
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 4096];
    let mut read = 0;
    let drain = async {
        while read < LINGER_BYTES_MAX {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(n) => read += n,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(500), drain).await;
}

/// The TLS handshake on a new connection when TLS is on (within the
/// handshake timeout): the secured stream and what the other side's
/// certificate names. Without TLS the stream as it is.
async fn secure(
    stream: BoxStream,
    config: &ListenerConfig,
) -> Result<(BoxStream, Option<PeerIdentity>), ConnError> {
    let Some(tls) = &config.tls else {
        return Ok((stream, None));
    };
    match tokio::time::timeout(config.handshake_timeout, tls::accept(tls, stream)).await {
        Ok(Ok((stream, identity))) => Ok((stream, Some(identity))),
        // Closed before a single TLS record: a peer's dial cancelled by
        // its shutdown, a port probe. Not a refusal.
        Ok(Err(e))
            if matches!(
                e.kind(),
                std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
            ) =>
        {
            Err(ConnError::Gone)
        }
        Ok(Err(e)) => Err(ConnError::Refused(format!(
            "TLS handshake failed: {e} (a plaintext client, or a certificate that is expired \
             or not signed by this cluster's CA?)"
        ))),
        Err(_) => Err(ConnError::Refused(format!(
            "no TLS handshake within {:?}",
            config.handshake_timeout
        ))),
    }
}

/// Why the certificate behind `identity` may not say `role`: it must name
/// the node a peer claims to be, or be a client certificate.
fn certificate_refusal(
    identity: &PeerIdentity,
    role: &HelloRole,
    cluster_id: &str,
) -> Option<String> {
    match role {
        HelloRole::Peer { from, .. } => identity.check_node(*from, cluster_id).err(),
        HelloRole::Client => identity.check_client(cluster_id).err(),
    }
}

#[allow(clippy::too_many_arguments)]
async fn handle<I: Inbound>(
    mut stream: BoxStream,
    identity: Option<PeerIdentity>,
    seen: &sniff::Seen,
    remote: &str,
    config: &Arc<ListenerConfig>,
    events: mpsc::Sender<I::Event>,
    mut shutdown: watch::Receiver<bool>,
    budgets: Budgets,
) -> Result<(), ConnError> {
    let mut frame_buf = FrameBuffer::with_budget(budgets.clients.clone());
    let handshake = FrameTimeouts {
        idle: config.handshake_timeout,
        frame: config.handshake_timeout,
    };
    let hello: Hello = match tokio::time::timeout(
        config.handshake_timeout,
        frame::read_value_timed(
            &mut stream,
            &mut frame_buf,
            config.max_frame_bytes.min(64 * 1024),
            handshake,
        ),
    )
    .await
    {
        Err(_) | Ok(Err(FrameError::Idle { .. } | FrameError::Slow { .. })) => {
            return Err(ConnError::BadInput(
                "no handshake within the timeout".to_string(),
            ))
        }
        Ok(Err(FrameError::Closed)) => return Ok(()),
        Ok(Err(_)) if config.tls.is_none() && sniff::is_tls_client_hello(&seen.bytes()) => {
            // Told in plaintext, which the TLS client reads as such.
            let reason = "this server does not use TLS (a TLS client dialled it)".to_string();
            let mut buf = Vec::new();
            let refused = Welcome::Refused {
                reason: reason.clone(),
            };
            if write_value(&mut stream, &mut buf, &refused).await.is_ok() {
                linger(&mut stream).await;
            }
            return Err(ConnError::Refused(reason));
        }
        Ok(Err(e)) => return Err(ConnError::BadInput(format!("bad handshake: {e}"))),
        Ok(Ok(hello)) => hello,
    };
    // Replies are encoded here; requests are read into `frame_buf`.
    let mut buf = Vec::new();
    let refusal =
        if hello.cluster_id.len() > CLUSTER_ID_MAX_BYTES || hello.cluster_id != config.cluster_id {
            Some(format!(
                "cluster id {:?} is not ours ({:?})",
                hello.cluster_id, config.cluster_id
            ))
        } else {
            match hello.role {
                HelloRole::Peer {
                    from, incarnation, ..
                } if !config.voters.contains(&from)
                    && !config.addresses.contains(from)
                    && !member_of_our_incarnation(config, incarnation) =>
                {
                    Some(stranger_refusal(config, from, I::STRANGER_HINT))
                }
                HelloRole::Peer { from, .. } if from == config.node_id => {
                    Some(format!("peer claims our own id {from}"))
                }
                HelloRole::Peer { to, .. } if to != config.node_id => Some(format!(
                    "peer wanted node {to} but this is node {}",
                    config.node_id
                )),
                _ => None,
            }
        };
    let refusal = refusal.or_else(|| {
        identity
            .as_ref()
            .and_then(|identity| certificate_refusal(identity, &hello.role, &config.cluster_id))
    });
    // Last, once the peer is known to be who it says: its incarnation
    // (which may be adopted and stored).
    let refusal = refusal.or_else(|| match (hello.role, &config.identity) {
        (
            HelloRole::Peer {
                from, incarnation, ..
            },
            Some(ours),
        ) => ours.meet(from, incarnation).err(),
        _ => None,
    });
    if let Some(reason) = refusal {
        let _ = write_value(
            &mut stream,
            &mut buf,
            &Welcome::Refused {
                reason: reason.clone(),
            },
        )
        .await;
        return Err(ConnError::Refused(reason));
    }
    write_value(
        &mut stream,
        &mut buf,
        &Welcome::Accepted {
            node_id: config.node_id,
        },
    )
    .await?;
    match hello.role {
        HelloRole::Peer { from, .. } => {
            tracing::debug!(%remote, peer = from, "peer connected");
            if !config.voters.contains(&from) && !config.addresses.contains(from) {
                // A member this node was not told of: answering it needs
                // its address.
                learn_address(from, config, &budgets, &shutdown);
            }
            let mut reply = Vec::new();
            // The handshake's buffer, charged to the peers' budget from
            // now on: it may hold the beginning of the first frame.
            frame_buf.move_to_budget(budgets.peers);
            // A peer's buffer keeps its size between frames: appends of
            // similar size follow one another, and what it holds stays
            // charged to the node's budget.
            let timeouts = FrameTimeouts {
                idle: config.peer_idle_timeout,
                frame: config.frame_timeout,
            };
            let mut last_seq = 0u64;
            loop {
                let next = next_value(&mut stream, &mut frame_buf, config, timeouts, &mut shutdown);
                let Some(frame) = next.await? else {
                    return Ok(());
                };
                let Some((sender, seq, event)) = I::from_peer(frame) else {
                    write_value(&mut stream, &mut reply, &PeerReply::KeepaliveAck).await?;
                    continue;
                };
                if sender != from {
                    return Err(ConnError::BadInput(format!(
                        "message claims sender {sender} on node {from}'s connection"
                    )));
                }
                // One connection keeps the order its frames were sent in
                // (TCP does; a wrapper or a sender that did not would
                // hand Raft reordered frames, which it survives, hiding
                // the defect): the numbers must rise.
                if seq <= last_seq {
                    budgets
                        .counters
                        .peer_frames_out_of_order
                        .fetch_add(1, Ordering::Relaxed);
                    return Err(ConnError::BadInput(format!(
                        "frame {seq} after frame {last_seq} on node {from}'s connection: its \
                         frames arrive out of the order they were sent in (a defect of that \
                         node's transport)"
                    )));
                }
                last_seq = seq;
                if events.send(event).await.is_err() {
                    return Ok(());
                }
            }
        }
        HelloRole::Client => {
            serve_client::<I>(
                stream, frame_buf, buf, remote, config, events, shutdown, budgets,
            )
            .await
        }
    }
}

/// Most requests of one client connection waiting for their answers at
/// once: a client may send its next requests before the first is
/// answered (pipelining); past this many, the connection is not read
/// until an answer leaves.
pub const CLIENT_PIPELINE_DEPTH_MAX: usize = 128;

/// Most bytes of requests one client connection has waiting for their
/// answers at once (a request larger than this is still taken when it is
/// the only one): with [`CLIENT_PIPELINE_DEPTH_MAX`], what one client can
/// make the server hold.
pub const CLIENT_PIPELINE_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Most bytes of answers gathered into one write of a client connection.
const CLIENT_ANSWER_WRITE_BYTES_MAX: usize = 256 * 1024;

/// An answer a client connection owes, in the order of its requests.
enum Owed {
    Ready(ClientResponse),
    Waiting(oneshot::Receiver<ClientResponse>),
}

impl Owed {
    /// The answer if the server gave it already (`Unknown` if it never
    /// will), else `None`.
    fn take_ready(&mut self) -> Option<ClientResponse> {
        match self {
            Owed::Ready(response) => Some(std::mem::replace(response, ClientResponse::Unknown)),
            Owed::Waiting(reply) => match reply.try_recv() {
                Ok(response) => Some(response),
                Err(oneshot::error::TryRecvError::Closed) => Some(ClientResponse::Unknown),
                Err(oneshot::error::TryRecvError::Empty) => None,
            },
        }
    }
}

/// What a client connection's reading half hands back with each frame:
/// itself, to read the next.
struct ReadHalfState {
    reader: tokio::io::ReadHalf<BoxStream>,
    frame_buf: FrameBuffer,
    shutdown: watch::Receiver<bool>,
}

type NextRequest = std::pin::Pin<
    Box<dyn std::future::Future<Output = (ReadHalfState, Result<bool, ConnError>)> + Send>,
>;

/// Reads the next frame of a client connection, owning the reading half
/// meanwhile: the future lives on while answers are written, so a frame
/// half read is never lost.
fn next_request(mut state: ReadHalfState, config: Arc<ListenerConfig>) -> NextRequest {
    Box::pin(async move {
        let timeouts = FrameTimeouts {
            idle: config.client_idle_timeout,
            frame: config.frame_timeout,
        };
        let result = next_frame(
            &mut state.reader,
            &mut state.frame_buf,
            &config,
            timeouts,
            &mut state.shutdown,
        )
        .await;
        (state, result)
    })
}

/// Serves a client connection: requests are read and handed to the server
/// as they arrive, up to the pipelining limits, and answered in the order
/// they came. Every answer ready when one is written leaves in the same
/// write (one system call for a batch's answers), so a client that
/// pipelines pays one write per batch, not one per request; a client
/// that waits for each answer sees what it always did.
#[allow(clippy::too_many_arguments)]
async fn serve_client<I: Inbound>(
    stream: BoxStream,
    frame_buf: FrameBuffer,
    mut buf: Vec<u8>,
    remote: &str,
    config: &Arc<ListenerConfig>,
    events: mpsc::Sender<I::Event>,
    shutdown: watch::Receiver<bool>,
    budgets: Budgets,
) -> Result<(), ConnError> {
    let (reader, mut writer) = tokio::io::split(stream);
    #[cfg(feature = "planted-bugs")]
    let planted_swap_first_two = config.planted_answers_out_of_order;
    #[cfg(not(feature = "planted-bugs"))]
    let planted_swap_first_two = false;
    // The answers owed, oldest first, with their requests' sizes.
    let mut owed: std::collections::VecDeque<(Owed, usize)> = std::collections::VecDeque::new();
    let mut owed_bytes = 0usize;
    let first = ReadHalfState {
        reader,
        frame_buf,
        shutdown,
    };
    let mut reading: Option<NextRequest> = Some(next_request(first, config.clone()));
    // Why reading stopped, once it did: the connection closes with it
    // after the answers owed are written.
    let mut read_end: Result<(), ConnError> = Ok(());
    loop {
        assert!(owed.len() <= CLIENT_PIPELINE_DEPTH_MAX);
        let may_read = reading.is_some()
            && owed.len() < CLIENT_PIPELINE_DEPTH_MAX
            && (owed_bytes < CLIENT_PIPELINE_BYTES_MAX || owed.is_empty());
        let owes = !owed.is_empty();
        if reading.is_none() && !owes {
            return read_end;
        }
        // Ready once the oldest answer is (kept in its place).
        let oldest = std::future::poll_fn(|cx| {
            use std::future::Future;
            let Some((front, _)) = owed.front_mut() else {
                return std::task::Poll::Pending;
            };
            if let Owed::Waiting(reply) = front {
                let std::task::Poll::Ready(answer) = std::pin::Pin::new(reply).poll(cx) else {
                    return std::task::Poll::Pending;
                };
                *front = Owed::Ready(answer.unwrap_or(ClientResponse::Unknown));
            }
            std::task::Poll::Ready(())
        });
        // The next frame. A disabled branch's future is still built (not
        // polled), so it must not assume a reading half.
        let next = std::future::poll_fn(|cx| match reading.as_mut() {
            Some(next) => next.as_mut().poll(cx),
            None => std::task::Poll::Pending,
        });
        tokio::select! {
            // Answers first: what is owed leaves before more is taken.
            biased;
            () = oldest, if owes => {
                buf.clear();
                let mut answers = 0usize;
                let mut held: Option<ClientResponse> = None;
                while buf.len() < CLIENT_ANSWER_WRITE_BYTES_MAX {
                    let Some((front, bytes)) = owed.front_mut() else { break };
                    let Some(response) = front.take_ready() else { break };
                    owed_bytes -= *bytes;
                    owed.pop_front();
                    answers += 1;
                    if planted_swap_first_two && answers == 1 {
                        held = Some(response);
                        continue;
                    }
                    encode_answer(&response, &mut buf)?;
                    if let Some(first) = held.take() {
                        encode_answer(&first, &mut buf)?;
                    }
                }
                if let Some(first) = held.take() {
                    encode_answer(&first, &mut buf)?;
                }
                assert!(answers >= 1, "the oldest answer was ready");
                write_all(&mut writer, &buf).await?;
                let counters = &budgets.counters;
                counters.client_answers.fetch_add(answers as u64, Ordering::Relaxed);
                counters.client_answer_writes.fetch_add(1, Ordering::Relaxed);
            }
            (mut state, result) = next, if may_read => {
                reading = None;
                match result {
                    Ok(true) => {}
                    Ok(false) => continue,
                    // A client waiting for answers is not idle.
                    Err(ConnError::Idle(_)) if !owed.is_empty() => {
                        reading = Some(next_request(state, config.clone()));
                        continue;
                    }
                    Err(e) => {
                        read_end = Err(e);
                        continue;
                    }
                }
                let request_bytes = state.frame_buf.payload().len();
                let decoded = codec::decode::<I::Request>(state.frame_buf.payload(), config.max_frame_bytes);
                let answer = match decoded {
                    Ok(request) => {
                        // A large command's buffer is given back to the
                        // node's budget as soon as it is decoded.
                        state.frame_buf.shrink_to(CLIENT_BUFFER_KEEP_BYTES);
                        let (reply_tx, reply_rx) = oneshot::channel();
                        let event = I::from_client(request, reply_tx);
                        if events.send(event).await.is_err() {
                            Owed::Ready(ClientResponse::Error("server is shutting down".to_string()))
                        } else {
                            Owed::Waiting(reply_rx)
                        }
                    }
                    Err(e) => {
                        let answer = budgets.misdirected.as_deref().filter(|_| {
                            codec::decode::<ClientRequest>(state.frame_buf.payload(), config.max_frame_bytes)
                                .is_ok()
                        });
                        let Some(answer) = answer else {
                            read_end = Err(ConnError::BadInput(FrameError::Codec(e).to_string()));
                            continue;
                        };
                        tracing::debug!(%remote, "a single-group client's request, answered with the group count");
                        state.frame_buf.shrink_to(CLIENT_BUFFER_KEEP_BYTES);
                        Owed::Ready(ClientResponse::Error(answer.to_string()))
                    }
                };
                owed.push_back((answer, request_bytes));
                owed_bytes += request_bytes;
                reading = Some(next_request(state, config.clone()));
            }
        }
    }
}

fn encode_answer(response: &ClientResponse, buf: &mut Vec<u8>) -> Result<(), ConnError> {
    frame::encode_frame(response, buf).map_err(|e| ConnError::BadInput(e.to_string()))
}

/// Whether a peer that neither this node's `--peers` nor its address
/// book names is judged by its incarnation rather than refused as a
/// stranger: when this node checks incarnations and the peer shows one.
/// The incarnation check that follows accepts ours, or adopts it while
/// this node knows none (a new learner), and refuses another one naming
/// both. A peer showing the cluster's incarnation was handed it by the
/// cluster: a member this node was not told of (added after this node's
/// `--peers` were written, and leading now).
fn member_of_our_incarnation(
    config: &ListenerConfig,
    theirs: Option<super::identity::Incarnation>,
) -> bool {
    config.identity.is_some() && theirs.is_some()
}

/// Why a peer named neither by this node's `--peers` nor by its address
/// book is refused: naming the nodes it knows.
fn stranger_refusal(config: &ListenerConfig, from: NodeId, hint: &str) -> String {
    let mut known: BTreeSet<NodeId> = config.voters.clone();
    known.extend(config.addresses.get().into_keys());
    known.remove(&config.node_id);
    let known: Vec<String> = known.iter().map(NodeId::to_string).collect();
    format!(
        "node {from} is not a member of this cluster as node {} knows it (its --peers and its \
         log name nodes {}){hint}",
        config.node_id,
        if known.is_empty() {
            "none".to_string()
        } else {
            known.join(", ")
        }
    )
}

/// Most time between two attempts of [`learn_address`].
const ADDRESS_LOOKUP_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Starts asking the servers in this node's address book for `node`'s
/// address, unless that is under way: a member that dialled this node
/// but that its `--peers` do not name (it joined later) cannot be
/// answered until its address is known, which otherwise comes only with
/// the log it sends (a new learner's first answer comes before any).
/// The address goes into the book, which the server hands to its
/// transport. Asked again, less and less often, until found, the book
/// has it from the log, or the server stops.
fn learn_address(
    node: NodeId,
    config: &Arc<ListenerConfig>,
    shared: &Budgets,
    shutdown: &watch::Receiver<bool>,
) {
    {
        let mut lookups = shared.lookups.lock().unwrap_or_else(|e| e.into_inner());
        if !lookups.insert(node) {
            return;
        }
    }
    let (config, lookups, mut shutdown) =
        (config.clone(), shared.lookups.clone(), shutdown.clone());
    tokio::spawn(async move {
        let mut wait = Duration::from_secs(1);
        let mut warned = false;
        while !config.addresses.contains(node) && !*shutdown.borrow() {
            match ask_address(node, &config).await {
                Ok((addr, answered_by)) => {
                    if config.addresses.set(node, &addr) {
                        tracing::info!(
                            peer = node,
                            %addr,
                            answered_by,
                            "address book: node {node} is at {addr} (it is not in this node's \
                             --peers; node {answered_by} told its address)"
                        );
                    }
                    break;
                }
                Err(why) if !warned => {
                    warned = true;
                    tracing::warn!(
                        peer = node,
                        "node {node} dialled this node as a member of the cluster, but this \
                         node's --peers do not name it and {why}: this node cannot answer it \
                         (a learner cannot catch up) until the log brings its address; restart \
                         this node with --peers naming the cluster's current voters (see \
                         `concord-cli member list`)"
                    );
                }
                Err(why) => tracing::debug!(peer = node, %why, "address of a member still unknown"),
            }
            tokio::select! {
                biased;
                _ = shutdown.changed() => {}
                _ = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(ADDRESS_LOOKUP_BACKOFF_MAX);
        }
        lookups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&node);
    });
}

/// `node`'s address as the servers in this node's book know it: the
/// catalog's member list (group 0) names every server's address; and the
/// node that told it.
async fn ask_address(node: NodeId, config: &ListenerConfig) -> Result<(String, NodeId), String> {
    if config.tls.is_some() {
        // A node's certificate is not a client's: it cannot ask.
        return Err("with TLS on it cannot ask the other servers for the address".to_string());
    }
    use super::multi::admin::{AdminAnswer, AdminRequest};
    use super::multi::routing_client::{RoutingClient, RoutingConfig};
    use super::multi::wire::GroupOp;
    let servers: BTreeMap<NodeId, String> = config
        .addresses
        .get()
        .into_iter()
        .filter(|(id, _)| *id != config.node_id)
        .collect();
    if servers.is_empty() {
        return Err("this node knows no other server to ask for it".to_string());
    }
    let shown: Vec<String> = servers.values().cloned().collect();
    let mut routing = RoutingConfig::new(config.cluster_id.clone(), servers);
    routing.request_timeout = Duration::from_secs(2);
    routing.connect_timeout = Duration::from_millis(500);
    routing.attempts_max = 2 * shown.len() as u32;
    let mut client = RoutingClient::new(routing).map_err(|e| e.to_string())?;
    let catalog = concord::multi::CATALOG_GROUP;
    let answer = client
        .call(catalog, GroupOp::Admin(AdminRequest::List))
        .await
        .map_err(|e| {
            format!(
                "none of the servers it knows ({}) could be asked: {e}",
                shown.join(", ")
            )
        })?;
    match AdminAnswer::decode(&answer) {
        Ok(AdminAnswer::Members(members)) => members
            .addrs
            .iter()
            .find(|(id, _)| *id == node)
            .map(|(_, addr)| addr.clone())
            .filter(|addr| super::addresses::validate_address(addr).is_ok())
            .map(|addr| (addr, members.answered_by))
            .ok_or_else(|| {
                format!(
                    "node {} (asked for the catalog's members) names no address for it",
                    members.answered_by
                )
            }),
        Ok(other) => Err(format!("the catalog answered {other:?}")),
        Err(e) => Err(format!("the catalog's answer does not decode: {e}")),
    }
}
