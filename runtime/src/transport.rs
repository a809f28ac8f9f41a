//! Peer links: one outgoing connection per peer, fed by a bounded queue
//! (a full queue drops what is queued: Raft resends), opened with a
//! handshake naming the cluster and both node ids, re-opened with
//! exponential backoff. The one runtime's frame sender
//! ([`tcp_sender`](super::multi::tcp_sender)) runs one such link per
//! peer; incoming connections are [`listener`](super::listener)'s.
//!
//! ## Liveness of a TCP connection
//!
//! A connection whose packets are silently dropped (a partition, a host
//! that vanished) is not an error to TCP: writes land in the kernel's send
//! buffer and are retransmitted with exponential backoff, so after the
//! network heals the connection may stay mute for minutes. The transport
//! does not wait for that. Every `keepalive_interval` the sender writes a
//! [`PeerFrame::Keepalive`](super::wire::PeerFrame::Keepalive) and the
//! accepting side answers with a [`PeerReply::KeepaliveAck`]; when nothing
//! has been heard for
//! `peer_timeout` (also while a write is blocked) the connection is dropped
//! and dialled again, with a short connect timeout so that a dial sent into
//! a partition is retried soon after it heals rather than waiting for the
//! kernel's SYN retransmission. Messages that waited in the queue longer
//! than `message_stale_after` are dropped unsent: Raft would rather resend
//! than deliver a heartbeat from seconds ago. The defaults bound the time
//! from a healed partition to a working connection by roughly
//! `connect_timeout + backoff_max` (350 ms).
//!
//! Streams are handled as [`BoxStream`] trait objects after connecting, so
//! a TLS wrapper can be slotted in without touching the framing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use concord::NodeId;

use super::client::ErrorClass;
use super::frame::{self, FrameError};
use super::identity::IdentityHandle;
use super::sniff;
use super::tls::TlsConfig;
use super::wire::{Hello, HelloRole, PeerReply, Welcome};

/// A byte stream the transport can frame: TCP, or TLS over TCP.
pub trait AsyncStream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> AsyncStream for T {}

/// A boxed [`AsyncStream`].
pub type BoxStream = Box<dyn AsyncStream>;

/// Wraps every peer connection a peer link opens, after the
/// handshake: the hook through which tests inject connection-level faults
/// (see the madsim suite's stalled links) and a TLS layer could be added.
#[derive(Clone)]
pub struct StreamWrapper(pub Arc<dyn Fn(NodeId, BoxStream) -> BoxStream + Send + Sync>);

impl std::fmt::Debug for StreamWrapper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamWrapper")
    }
}

/// Settings of the peer links (the one runtime's frame sender,
/// [`TcpFrameSender`](super::multi::tcp_sender::TcpFrameSender), fills
/// them from its own configuration).
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
    /// How often a keepalive is written on each peer connection.
    pub keepalive_interval: Duration,
    /// A connection on which nothing was heard (no keepalive answer) for
    /// this long is dropped and dialled again. `None` never gives up on a
    /// connection: a connection into a partition then recovers only when
    /// the kernel's TCP retransmission gets through (the behaviour before
    /// keepalives, kept for tests that prove the difference).
    pub peer_timeout: Option<Duration>,
    /// Messages that waited in the queue longer than this are dropped
    /// unsent.
    pub message_stale_after: Duration,
    /// Applied to every connection after its handshake (tests).
    pub stream_wrapper: Option<StreamWrapper>,
    /// Mutual TLS on every peer connection (the peer's certificate must
    /// name the node dialled); `None` dials in plaintext.
    pub tls: Option<Arc<TlsConfig>>,
    /// This node's data directory identity: its cluster incarnation goes
    /// in every handshake, and a peer of another incarnation refuses the
    /// connection (see [`super::identity`]). `None` sends none.
    pub identity: Option<Arc<IdentityHandle>>,
}

impl TcpTransportConfig {
    /// Defaults: 4096 queued messages per peer, 16 MiB frames, backoff from
    /// 20 ms to 100 ms, 250 ms to connect, a keepalive every 100 ms, a
    /// connection silent for 500 ms is dropped, messages older than 1 s
    /// are not sent. Suited to a LAN and election timeouts of 150 ms and
    /// more; raise the timeouts together with the election timeout for
    /// links with a longer round trip.
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
            backoff_max: Duration::from_millis(100),
            connect_timeout: Duration::from_millis(250),
            keepalive_interval: Duration::from_millis(100),
            peer_timeout: Some(Duration::from_millis(500)),
            message_stale_after: Duration::from_secs(1),
            stream_wrapper: None,
            tls: None,
            identity: None,
        }
    }
}

/// Most queued items (messages or frames) written per flush.
const WRITE_BATCH_ITEMS_MAX: usize = 1024;
/// Most bytes buffered per flush.
const WRITE_BATCH_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Why a peer connection was given up.
#[derive(Debug, thiserror::Error)]
enum LinkError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("nothing heard from the peer for {0:?}")]
    Silent(Duration),
}

/// Most keepalive answers buffered between the reader and the sender.
const HEARD_QUEUE_MAX: usize = 64;

/// What a peer connection carries and how it is counted: all the
/// single-group transport's links and the multi-group server's differ in.
/// Dialling, handshake, backoff, keepalives, silence and batching are
/// [`PeerSender`]'s, the same for both.
pub(crate) trait Outbound: Send + 'static {
    /// What waits in a peer's queue.
    type Item: Send + 'static;
    /// Encodes `item` as one frame onto `buf`, or drops it (`false`)
    /// because it waited too long to be worth sending at `now`.
    fn encode(&self, item: Self::Item, now: Instant, buf: &mut Vec<u8>)
        -> Result<bool, FrameError>;
    /// Encodes a keepalive frame onto `buf`.
    fn encode_keepalive(&self, buf: &mut Vec<u8>) -> Result<(), FrameError>;
    /// Counts what happened on the link.
    fn count(&self, event: LinkEvent);
}

/// What an [`Outbound`] counts.
#[derive(Clone, Copy, Debug)]
pub(crate) enum LinkEvent {
    /// A connection was established.
    Connected,
    /// A connection attempt failed (connect, handshake or refusal).
    ConnectFailed,
    /// A connection was dropped: nothing heard for the peer timeout.
    Silent,
    /// Items dropped unsent: they waited too long, or were queued while
    /// the peer was unreachable.
    Dropped(u64),
    /// One write went out.
    Written {
        /// Queued items in it (keepalives not counted).
        items: u64,
        /// Its bytes, keepalives included.
        bytes: u64,
    },
}

/// One peer's sender task: dials the peer, shakes hands and writes its
/// queue, keepalives in between, until the queue's sender is dropped.
pub(crate) struct PeerSender<O: Outbound> {
    config: TcpTransportConfig,
    peer: NodeId,
    addr: String,
    rx: mpsc::Receiver<O::Item>,
    shutdown: watch::Receiver<bool>,
    out: O,
}

/// Why [`connect`] failed: in words, and whether trying again can help.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{message}")]
pub struct ConnectError {
    /// Whether another attempt may succeed (a server down or slow) or
    /// not as configured (TLS on one side only, a certificate the other
    /// side does not trust, a refused handshake).
    pub class: ErrorClass,
    /// What happened, naming the address.
    pub message: String,
}

impl ConnectError {
    fn transient(message: String) -> Self {
        ConnectError {
            class: ErrorClass::Transient,
            message,
        }
    }

    fn permanent(message: String) -> Self {
        ConnectError {
            class: ErrorClass::Permanent,
            message,
        }
    }
}

/// Opens a connection (secured with `tls` when given) and performs the
/// client side of the handshake. With TLS, a peer connection
/// ([`HelloRole::Peer`]) requires the certificate of the node it names, and
/// any connection requires that the node id the server answers with is the
/// one its certificate names.
///
/// A mismatch that retrying cannot fix is [`ErrorClass::Permanent`] and
/// named: a TLS server answering this plaintext side ("server expects
/// TLS"), a plaintext server answering this TLS side ("server does not
/// use TLS"), a certificate either side does not trust, a refused
/// handshake (another cluster's name, a certificate naming someone else).
pub async fn connect(
    addr: &str,
    hello: &Hello,
    max_frame_bytes: usize,
    timeout: Duration,
    tls: Option<&TlsConfig>,
) -> Result<(BoxStream, NodeId), ConnectError> {
    let attempt = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| ConnectError::transient(format!("connect to {addr}: {e}")))?;
        let _ = stream.set_nodelay(true);
        // What the server sent first tells a TLS/plaintext mismatch from a
        // server that went away.
        let (stream, seen) = sniff::FirstBytes::new(stream);
        let (mut stream, identity) = match tls {
            None => (Box::new(stream) as BoxStream, None),
            Some(tls) => {
                let node = match hello.role {
                    HelloRole::Peer { to, .. } => Some(to),
                    HelloRole::Client => None,
                };
                match super::tls::dial(tls, Box::new(stream), node).await {
                    Ok((stream, identity)) => (stream, Some(identity)),
                    Err(e) => return Err(tls_failure(addr, &e, &seen.bytes())),
                }
            }
        };
        let mut buf = Vec::new();
        frame::encode_frame(hello, &mut buf).map_err(|e| ConnectError::permanent(e.to_string()))?;
        let sent = async {
            stream.write_all(&buf).await?;
            stream.flush().await
        };
        if let Err(e) = sent.await {
            return Err(answer_failure(
                addr,
                FrameError::Io(e),
                tls.is_some(),
                &seen.bytes(),
            ));
        }
        let welcome: Welcome = match frame::read_value(&mut stream, &mut buf, max_frame_bytes).await
        {
            Ok(welcome) => welcome,
            Err(e) => return Err(answer_failure(addr, e, tls.is_some(), &seen.bytes())),
        };
        match welcome {
            Welcome::Accepted { node_id } => {
                if let Some(identity) = identity {
                    identity
                        .check_node(node_id, &hello.cluster_id)
                        .map_err(|e| {
                            ConnectError::permanent(format!(
                                "{addr} answered as node {node_id}: {e}"
                            ))
                        })?;
                }
                Ok((stream, node_id))
            }
            Welcome::Refused { reason } => Err(ConnectError::permanent(format!(
                "{addr} refused the connection: {reason}"
            ))),
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(ConnectError::transient(format!(
            "connecting to {addr} timed out after {timeout:?}"
        ))),
    }
}

/// Why this side's TLS handshake failed, given what the server sent.
fn tls_failure(addr: &str, e: &std::io::Error, first: &[u8]) -> ConnectError {
    if sniff::is_frame_header(first) {
        return ConnectError::permanent(format!(
            "{addr}: server does not use TLS (it answered the TLS handshake in plaintext); \
             connect without --tls-ca, --tls-cert and --tls-key, or start the servers with them"
        ));
    }
    match super::tls::certificate_problem(e) {
        Some(problem) => ConnectError::permanent(format!("{addr}: {problem}")),
        None => ConnectError::transient(format!("{addr}: TLS handshake failed: {e}")),
    }
}

/// Why the server's answer to the handshake could not be read, given
/// whether this side runs TLS and what the server sent.
fn answer_failure(addr: &str, e: FrameError, tls: bool, first: &[u8]) -> ConnectError {
    if !tls && sniff::is_tls_record(first) {
        return ConnectError::permanent(format!(
            "{addr}: server expects TLS (it answered with a TLS record); connect with \
             --tls-ca, --tls-cert and --tls-key"
        ));
    }
    if let FrameError::Io(io) = &e {
        if let Some(problem) = super::tls::certificate_problem(io) {
            return ConnectError::permanent(format!("{addr}: {problem}"));
        }
    }
    ConnectError::transient(format!("handshake with {addr}: {e}"))
}

impl<O: Outbound> PeerSender<O> {
    /// A sender to `peer` at `addr`, fed by `rx`.
    pub(crate) fn new(
        config: &TcpTransportConfig,
        peer: NodeId,
        addr: &str,
        rx: mpsc::Receiver<O::Item>,
        shutdown: watch::Receiver<bool>,
        out: O,
    ) -> Self {
        PeerSender {
            config: config.clone(),
            peer,
            addr: addr.to_string(),
            rx,
            shutdown,
            out,
        }
    }

    /// Runs until the queue's sender is dropped or the shutdown flips.
    pub(crate) async fn run(mut self) {
        let mut backoff = self.config.backoff_min;
        let mut failures = 0u64;
        super::metrics::peer_added(self.peer);
        loop {
            if *self.shutdown.borrow() {
                return;
            }
            // Built for each attempt: the incarnation may have been
            // adopted since the last one.
            let hello = Hello {
                cluster_id: self.config.cluster_id.clone(),
                role: HelloRole::Peer {
                    from: self.config.node_id,
                    to: self.peer,
                    incarnation: self.config.identity.as_ref().and_then(|i| i.incarnation()),
                },
            };
            match connect(
                &self.addr,
                &hello,
                self.config.max_frame_bytes,
                self.config.connect_timeout,
                self.config.tls.as_deref(),
            )
            .await
            {
                Ok((stream, node_id)) if node_id == self.peer => {
                    self.out.count(LinkEvent::Connected);
                    if failures > 0 {
                        tracing::info!(peer = self.peer, addr = %self.addr, failures, "reconnected to peer");
                    } else {
                        tracing::info!(peer = self.peer, addr = %self.addr, "connected to peer");
                    }
                    backoff = self.config.backoff_min;
                    let stream = match &self.config.stream_wrapper {
                        Some(wrap) => (wrap.0)(self.peer, stream),
                        None => stream,
                    };
                    super::metrics::peer_connection(self.peer, true);
                    let pumped = self.pump(stream).await;
                    super::metrics::peer_connection(self.peer, false);
                    match pumped {
                        Ok(()) => return,
                        Err(LinkError::Silent(silent)) => {
                            self.out.count(LinkEvent::Silent);
                            tracing::warn!(peer = self.peer, addr = %self.addr, ?silent,
                                "peer connection silent; dropping it and dialling again");
                        }
                        Err(e) => {
                            tracing::info!(peer = self.peer, error = %e, "peer connection lost; reconnecting")
                        }
                    }
                    // Count the outage from here, so the reconnection is
                    // logged.
                    failures = 1;
                }
                Ok((_, node_id)) => {
                    self.out.count(LinkEvent::ConnectFailed);
                    super::metrics::peer_connect_failed(self.peer);
                    tracing::warn!(peer = self.peer, addr = %self.addr, answered = node_id,
                        "address answered as another node id; check --peers");
                }
                Err(reason) => {
                    self.out.count(LinkEvent::ConnectFailed);
                    super::metrics::peer_connect_failed(self.peer);
                    failures += 1;
                    // Log the first failure and then every 32nd, not each
                    // retry; loudly when only a change of configuration
                    // can fix it.
                    if failures == 1 || failures % 32 == 0 {
                        if reason.class == ErrorClass::Permanent {
                            tracing::warn!(peer = self.peer, failures, reason = %reason, "peer refuses this node's connection");
                        } else {
                            tracing::debug!(peer = self.peer, failures, reason = %reason, "cannot reach peer");
                        }
                    }
                }
            }
            // Messages queued while disconnected are stale; drop them
            // (bounded by the queue size) so the first ones sent after
            // reconnecting are fresh.
            let mut dropped = 0;
            while dropped < self.config.queue_messages_max {
                match self.rx.try_recv() {
                    Ok(_) => dropped += 1,
                    // The transport replaced this peer's address (or is
                    // gone): this task's work is over.
                    Err(mpsc::error::TryRecvError::Disconnected) => return,
                    Err(mpsc::error::TryRecvError::Empty) => break,
                }
            }
            if dropped > 0 {
                self.out.count(LinkEvent::Dropped(dropped as u64));
            }
            tokio::select! {
                biased;
                _ = self.shutdown.changed() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(self.config.backoff_max);
        }
    }

    /// Writes queued messages and keepalives until the connection breaks
    /// or falls silent (Err) or the transport shuts down (Ok).
    async fn pump(&mut self, stream: BoxStream) -> Result<(), LinkError> {
        let (reader, mut writer) = tokio::io::split(stream);
        let (heard_tx, mut heard) = mpsc::channel(HEARD_QUEUE_MAX);
        let reader = tokio::spawn(read_replies(reader, heard_tx));
        let result = self.pump_until_broken(&mut writer, &mut heard).await;
        reader.abort();
        result
    }

    async fn pump_until_broken(
        &mut self,
        writer: &mut WriteHalf<BoxStream>,
        heard: &mut mpsc::Receiver<Result<(), FrameError>>,
    ) -> Result<(), LinkError> {
        let mut buf = Vec::with_capacity(64 * 1024);
        // The first keepalive written since the last answer: silence is
        // counted from it. Counted from the last answer instead, a node
        // whose own thread stalled (one busy task of a current-thread
        // runtime, a paused process) would find the deadline passed when
        // it ran again, though it had asked nothing in that time, and
        // drop every live connection with the frames in flight.
        let mut unanswered_since: Option<Instant> = None;
        let mut keepalive = tokio::time::interval(self.config.keepalive_interval);
        keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let silent_at = self.silent_at(unanswered_since);
            buf.clear();
            let items;
            // Biased (see `listener.rs`), in an order that starves nothing
            // that matters: an answer that arrived counts before the
            // silence deadline is judged, and the keepalive (ready once
            // per interval) goes before the queue, which may always be
            // ready under load; without keepalives the peer would send no
            // answers and the link would be judged silent.
            tokio::select! {
                biased;
                _ = self.shutdown.changed() => return Ok(()),
                answer = heard.recv() => {
                    answered(answer)?;
                    unanswered_since = None;
                    continue;
                }
                _ = tokio::time::sleep_until(silent_at) => {
                    self.answer_or_silent(heard).await?;
                    unanswered_since = None;
                    continue;
                }
                _ = keepalive.tick() => {
                    self.out.encode_keepalive(&mut buf)?;
                    unanswered_since.get_or_insert_with(Instant::now);
                    items = 0;
                }
                queued = self.rx.recv() => {
                    let Some(queued) = queued else { return Ok(()) };
                    items = self.encode_batch(queued, &mut buf)?;
                }
            }
            if buf.is_empty() {
                continue;
            }
            // A blocked write is watched like an idle connection: answers to
            // keepalives written before it keep it alive, silence ends it
            // (counted from the write if nothing was asked before it).
            let write_started = Instant::now();
            let write = async {
                writer.write_all(&buf).await?;
                writer.flush().await
            };
            tokio::pin!(write);
            loop {
                let silent_at = self.silent_at(Some(unanswered_since.unwrap_or(write_started)));
                tokio::select! {
                    biased;
                    _ = self.shutdown.changed() => return Ok(()),
                    written = &mut write => {
                        written.map_err(FrameError::from)?;
                        let bytes = buf.len() as u64;
                        self.out.count(LinkEvent::Written { items, bytes });
                        break;
                    }
                    answer = heard.recv() => {
                        answered(answer)?;
                        unanswered_since = None;
                    }
                    _ = tokio::time::sleep_until(silent_at) => {
                        self.answer_or_silent(heard).await?;
                        unanswered_since = None;
                    }
                }
            }
        }
    }

    /// When the connection counts as dead if nothing more is heard, for a
    /// question asked at `asked_at` (far away when there is no peer
    /// timeout, or nothing is asked).
    fn silent_at(&self, asked_at: Option<Instant>) -> Instant {
        match (self.config.peer_timeout, asked_at) {
            (Some(timeout), Some(asked_at)) => asked_at + timeout,
            _ => Instant::now() + Duration::from_secs(86_400 * 365),
        }
    }

    /// The silence deadline passed: an answer that arrived unread keeps
    /// the connection, none ends it.
    async fn answer_or_silent(
        &self,
        heard: &mut mpsc::Receiver<Result<(), FrameError>>,
    ) -> Result<(), LinkError> {
        let answer = answer_waiting(heard).await.ok_or_else(|| self.silent())?;
        answered(Some(answer))
    }

    fn silent(&self) -> LinkError {
        LinkError::Silent(self.config.peer_timeout.unwrap_or_default())
    }

    /// Encodes `first` and whatever else is queued (bounded), skipping
    /// items that waited too long; how many it encoded.
    fn encode_batch(&mut self, first: O::Item, buf: &mut Vec<u8>) -> Result<u64, FrameError> {
        let now = Instant::now();
        let mut stale = 0u64;
        let mut count = 0u64;
        let mut next = Some(first);
        while let Some(item) = next.take() {
            if self.out.encode(item, now, buf)? {
                count += 1;
            } else {
                stale += 1;
            }
            if count < WRITE_BATCH_ITEMS_MAX as u64 && buf.len() < WRITE_BATCH_BYTES_MAX {
                next = self.rx.try_recv().ok();
            }
        }
        if stale > 0 {
            self.out.count(LinkEvent::Dropped(stale));
        }
        Ok(count)
    }
}

/// Turns of the scheduler an expiring silence deadline waits for an
/// answer already on its way (the reader's, then the peer's, if it
/// shares this runtime).
const SILENCE_RECHECK_TURNS: usize = 8;

/// An answer that arrived but was not yet read, looked for before a
/// connection is judged silent. The deadline can expire right after a
/// long stall of this thread (one busy task of a current-thread runtime,
/// a paused process): the peer's answers then wait unread in the socket,
/// and the reader task has had no turn to report them. Each yield lets
/// the runtime poll its I/O driver and run the tasks it wakes first.
async fn answer_waiting(
    heard: &mut mpsc::Receiver<Result<(), FrameError>>,
) -> Option<Result<(), FrameError>> {
    for _ in 0..SILENCE_RECHECK_TURNS {
        tokio::task::yield_now().await;
        if let Ok(answer) = heard.try_recv() {
            return Some(answer);
        }
    }
    None
}

/// What an answer from the reader task means: the peer was heard, or (an
/// error it carries, the reader's end) the connection is broken.
fn answered(answer: Option<Result<(), FrameError>>) -> Result<(), LinkError> {
    match answer {
        Some(Ok(())) => Ok(()),
        Some(Err(e)) => Err(e.into()),
        None => Err(FrameError::Closed.into()),
    }
}

/// Reads the accepting side's answers on a peer connection, reporting each
/// (or the error that ended the connection) to the sender.
async fn read_replies(
    mut reader: ReadHalf<BoxStream>,
    heard: mpsc::Sender<Result<(), FrameError>>,
) {
    let mut buf = Vec::new();
    loop {
        // Answers are tiny; a large frame here is bad input.
        match frame::read_value::<PeerReply, _>(&mut reader, &mut buf, 1024).await {
            Ok(PeerReply::KeepaliveAck) => {
                // A full queue already holds news of life; dropping is fine.
                let _ = heard.try_send(Ok(()));
            }
            Err(e) => {
                let _ = heard.send(Err(e)).await;
                return;
            }
        }
    }
}
