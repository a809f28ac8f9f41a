//! Moving Raft messages between servers.
//!
//! [`Transport`] is what the server loop sees: a non-blocking, lossy
//! `send(to, message)`. Two implementations:
//!
//! * [`TcpTransport`]: one outgoing connection per peer, each fed by a
//!   bounded queue (a full queue drops the message: Raft retries), opened
//!   with a handshake naming the cluster and both node ids, re-opened with
//!   exponential backoff. Incoming connections are handled by
//!   [`listener`](super::listener).
//! * [`MemNetwork`]/[`MemTransport`]: in-process channels, for benchmarks
//!   and tests of the server loop without sockets.
//!
//! Streams are handled as [`BoxStream`] trait objects after connecting, so
//! a TLS wrapper can be slotted in without touching the framing.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use crate::{Message, NodeId};

use super::frame::{self, FrameError};
use super::server::Event;
use super::wire::{Hello, HelloRole, Welcome};

/// A byte stream the transport can frame: TCP today, TLS later.
pub trait AsyncStream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> AsyncStream for T {}

/// A boxed [`AsyncStream`].
pub type BoxStream = Box<dyn AsyncStream>;

/// Sends Raft messages to other servers. Best effort: a message may be
/// dropped (full queue, broken connection) and Raft will retry.
pub trait Transport: Send + Sync + 'static {
    /// Queues `message` for node `to` without waiting.
    fn send(&self, to: NodeId, message: Message);
}

impl<T: Transport + ?Sized> Transport for Arc<T> {
    fn send(&self, to: NodeId, message: Message) {
        (**self).send(to, message)
    }
}

/// Settings of a [`TcpTransport`].
#[derive(Clone, Debug)]
pub struct TcpTransportConfig {
    /// This node.
    pub node_id: NodeId,
    /// The cluster's name, checked by every handshake.
    pub cluster_id: String,
    /// Address of every other node.
    pub peers: BTreeMap<NodeId, String>,
    /// Messages queued per peer before new ones are dropped.
    pub queue_messages_max: usize,
    /// Largest frame written or read.
    pub max_frame_bytes: usize,
    /// First reconnection delay.
    pub backoff_min: Duration,
    /// Longest reconnection delay.
    pub backoff_max: Duration,
    /// Time allowed to connect and complete the handshake.
    pub connect_timeout: Duration,
}

impl TcpTransportConfig {
    /// Defaults: 4096 queued messages per peer, 16 MiB frames, backoff from
    /// 20 ms to 1 s, 2 s connect timeout.
    pub fn new(
        node_id: NodeId,
        cluster_id: impl Into<String>,
        peers: BTreeMap<NodeId, String>,
    ) -> Self {
        TcpTransportConfig {
            node_id,
            cluster_id: cluster_id.into(),
            peers,
            queue_messages_max: 4096,
            max_frame_bytes: frame::DEFAULT_MAX_FRAME_BYTES,
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(2),
        }
    }
}

/// Counters of a transport.
#[derive(Debug, Default)]
pub struct TransportCounters {
    /// Messages dropped because a peer queue was full.
    pub dropped_queue_full: AtomicU64,
    /// Messages for a node that is not a configured peer.
    pub dropped_unknown_peer: AtomicU64,
    /// Connections established.
    pub connects: AtomicU64,
    /// Connection attempts that failed (connect, handshake or refusal).
    pub connect_failures: AtomicU64,
}

/// TCP transport: one connection and one bounded queue per peer.
pub struct TcpTransport {
    queues: BTreeMap<NodeId, mpsc::Sender<Message>>,
    counters: Arc<TransportCounters>,
    _shutdown: watch::Sender<bool>,
}

impl std::fmt::Debug for TcpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpTransport")
            .field("peers", &self.queues.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl TcpTransport {
    /// Starts one sender task per peer (must be called inside a runtime).
    /// Tasks stop when the transport is dropped.
    pub fn start(config: TcpTransportConfig) -> TcpTransport {
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let counters = Arc::new(TransportCounters::default());
        let mut queues = BTreeMap::new();
        for (&peer, addr) in &config.peers {
            if peer == config.node_id {
                continue;
            }
            let (tx, rx) = mpsc::channel(config.queue_messages_max.max(1));
            queues.insert(peer, tx);
            let task = PeerSender {
                config: config.clone(),
                peer,
                addr: addr.clone(),
                rx,
                shutdown: shutdown_rx.clone(),
                counters: counters.clone(),
            };
            tokio::spawn(task.run());
        }
        TcpTransport {
            queues,
            counters,
            _shutdown: shutdown_tx,
        }
    }

    /// The transport's counters.
    pub fn counters(&self) -> Arc<TransportCounters> {
        self.counters.clone()
    }
}

impl Transport for TcpTransport {
    fn send(&self, to: NodeId, message: Message) {
        match self.queues.get(&to) {
            Some(queue) => {
                if queue.try_send(message).is_err() {
                    self.counters
                        .dropped_queue_full
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
            None => {
                self.counters
                    .dropped_unknown_peer
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Most messages written per flush.
const WRITE_BATCH_MESSAGES_MAX: usize = 1024;
/// Most bytes buffered per flush.
const WRITE_BATCH_BYTES_MAX: usize = 4 * 1024 * 1024;

struct PeerSender {
    config: TcpTransportConfig,
    peer: NodeId,
    addr: String,
    rx: mpsc::Receiver<Message>,
    shutdown: watch::Receiver<bool>,
    counters: Arc<TransportCounters>,
}

/// Opens a connection and performs the client side of the handshake.
pub async fn connect(
    addr: &str,
    hello: &Hello,
    max_frame_bytes: usize,
    timeout: Duration,
) -> Result<(BoxStream, NodeId), String> {
    let attempt = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let mut stream: BoxStream = Box::new(stream);
        let mut buf = Vec::new();
        frame::encode_frame(hello, &mut buf).map_err(|e| e.to_string())?;
        stream
            .write_all(&buf)
            .await
            .map_err(|e| format!("handshake with {addr}: {e}"))?;
        stream
            .flush()
            .await
            .map_err(|e| format!("handshake with {addr}: {e}"))?;
        let welcome: Welcome = frame::read_value(&mut stream, &mut buf, max_frame_bytes)
            .await
            .map_err(|e| format!("handshake with {addr}: {e}"))?;
        match welcome {
            Welcome::Accepted { node_id } => Ok((stream, node_id)),
            Welcome::Refused { reason } => Err(format!("{addr} refused the connection: {reason}")),
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(format!("connecting to {addr} timed out after {timeout:?}")),
    }
}

impl PeerSender {
    async fn run(mut self) {
        let mut backoff = self.config.backoff_min;
        let hello = Hello {
            cluster_id: self.config.cluster_id.clone(),
            role: HelloRole::Peer {
                from: self.config.node_id,
                to: self.peer,
            },
        };
        let mut failures = 0u64;
        loop {
            if *self.shutdown.borrow() {
                return;
            }
            match connect(
                &self.addr,
                &hello,
                self.config.max_frame_bytes,
                self.config.connect_timeout,
            )
            .await
            {
                Ok((stream, node_id)) if node_id == self.peer => {
                    self.counters.connects.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(peer = self.peer, addr = %self.addr, "connected to peer");
                    backoff = self.config.backoff_min;
                    failures = 0;
                    match self.pump(stream).await {
                        Ok(()) => return,
                        Err(e) => {
                            tracing::info!(peer = self.peer, error = %e, "peer connection lost; reconnecting")
                        }
                    }
                }
                Ok((_, node_id)) => {
                    self.counters
                        .connect_failures
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(peer = self.peer, addr = %self.addr, answered = node_id,
                        "address answered as another node id; check --peers");
                }
                Err(reason) => {
                    self.counters
                        .connect_failures
                        .fetch_add(1, Ordering::Relaxed);
                    failures += 1;
                    // Log the first failure and then every 32nd, not each retry.
                    if failures == 1 || failures % 32 == 0 {
                        tracing::debug!(peer = self.peer, failures, reason = %reason, "cannot reach peer");
                    }
                }
            }
            // Messages queued while disconnected are stale; drop them
            // (bounded by the queue size) so the first ones sent after
            // reconnecting are fresh.
            let mut dropped = 0;
            while dropped < self.config.queue_messages_max && self.rx.try_recv().is_ok() {
                dropped += 1;
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = self.shutdown.changed() => return,
            }
            backoff = (backoff * 2).min(self.config.backoff_max);
        }
    }

    /// Writes queued messages until the connection breaks (Err) or the
    /// transport shuts down (Ok).
    async fn pump(&mut self, mut stream: BoxStream) -> Result<(), FrameError> {
        let mut buf = Vec::with_capacity(64 * 1024);
        loop {
            let first = tokio::select! {
                message = self.rx.recv() => match message {
                    Some(message) => message,
                    None => return Ok(()),
                },
                _ = self.shutdown.changed() => return Ok(()),
            };
            buf.clear();
            frame::encode_frame(&first, &mut buf)?;
            let mut count = 1;
            while count < WRITE_BATCH_MESSAGES_MAX && buf.len() < WRITE_BATCH_BYTES_MAX {
                match self.rx.try_recv() {
                    Ok(message) => {
                        frame::encode_frame(&message, &mut buf)?;
                        count += 1;
                    }
                    Err(_) => break,
                }
            }
            stream.write_all(&buf).await?;
            stream.flush().await?;
        }
    }
}

/// An in-process network: each node registers its server inbox, and
/// [`MemTransport`]s deliver into them. Messages to an unregistered or
/// disconnected node, or to a full inbox, are dropped.
#[derive(Clone, Debug, Default)]
pub struct MemNetwork {
    inboxes: Arc<Mutex<BTreeMap<NodeId, mpsc::Sender<Event>>>>,
}

impl MemNetwork {
    /// An empty network.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers (or replaces) node `id`'s inbox.
    pub fn register(&self, id: NodeId, inbox: mpsc::Sender<Event>) {
        self.inboxes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, inbox);
    }

    /// Removes node `id`: messages to it are dropped.
    pub fn unregister(&self, id: NodeId) {
        self.inboxes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    /// A transport sending from node `from`.
    pub fn transport(&self, from: NodeId) -> MemTransport {
        MemTransport {
            from,
            network: self.clone(),
        }
    }
}

/// Sends through a [`MemNetwork`].
#[derive(Clone, Debug)]
pub struct MemTransport {
    from: NodeId,
    network: MemNetwork,
}

impl Transport for MemTransport {
    fn send(&self, to: NodeId, message: Message) {
        debug_assert_eq!(message.from, self.from);
        let inbox = self
            .network
            .inboxes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&to)
            .cloned();
        if let Some(inbox) = inbox {
            let _ = inbox.try_send(Event::Peer(message));
        }
    }
}
