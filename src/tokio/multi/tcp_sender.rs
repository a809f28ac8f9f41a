//! One TCP connection per peer, carrying every group's messages: the
//! layer hands out one [`Frame`] per peer per flush, and
//! [`TcpFrameSender`] queues it (bounded; a full queue drops it, Raft
//! resends) for that peer's one connection, opened with the runtime's
//! handshake naming the cluster and both nodes (mutual TLS when
//! configured), re-opened with backoff. Frames travel in the runtime's
//! framing (length, version, CRC32C) as [`MultiPeerFrame`]s, keepalives
//! between them; a connection on which nothing was heard for
//! `peer_timeout` is dropped and dialled again.
//!
//! [`MultiPeerFrame`]: super::wire::MultiPeerFrame

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::multi::Frame;
use crate::tokio::frame::{self, FrameError};
use crate::tokio::metrics::{self, multi::PeerSendCounters};
use crate::tokio::tls::TlsConfig;
use crate::tokio::transport::{connect, BoxStream};
use crate::tokio::wire::{Hello, HelloRole, PeerReply};
use crate::NodeId;

use super::host::FrameSender;
use super::wire::MultiPeerFrameRef;

/// Settings of a [`TcpFrameSender`].
#[derive(Clone, Debug)]
pub struct TcpFrameConfig {
    /// This node.
    pub node_id: NodeId,
    /// The cluster's name, checked by every handshake.
    pub cluster_id: String,
    /// Address of every peer.
    pub peers: BTreeMap<NodeId, String>,
    /// Frames queued per peer before new ones are dropped.
    pub queue_frames_max: usize,
    /// Largest frame written.
    pub max_frame_bytes: usize,
    /// First reconnection delay.
    pub backoff_min: Duration,
    /// Longest reconnection delay.
    pub backoff_max: Duration,
    /// Time allowed to connect and complete the handshake.
    pub connect_timeout: Duration,
    /// How often a keepalive is written.
    pub keepalive_interval: Duration,
    /// A connection on which nothing was heard for this long is dropped.
    pub peer_timeout: Duration,
    /// Mutual TLS on every connection; `None` dials in plaintext.
    pub tls: Option<Arc<TlsConfig>>,
}

impl TcpFrameConfig {
    /// Defaults: 1,024 queued frames per peer, 16 MiB frames, backoff
    /// from 20 ms to 100 ms, 250 ms to connect, a keepalive every 100 ms,
    /// silent for 500 ms is dead.
    pub fn new(
        node_id: NodeId,
        cluster_id: impl Into<String>,
        peers: BTreeMap<NodeId, String>,
    ) -> Self {
        TcpFrameConfig {
            node_id,
            cluster_id: cluster_id.into(),
            peers,
            queue_frames_max: 1024,
            max_frame_bytes: frame::DEFAULT_MAX_FRAME_BYTES,
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_millis(100),
            connect_timeout: Duration::from_millis(250),
            keepalive_interval: Duration::from_millis(100),
            peer_timeout: Duration::from_millis(500),
            tls: None,
        }
    }
}

/// Counters of a [`TcpFrameSender`].
#[derive(Debug, Default)]
pub struct TcpFrameCounters {
    /// Frames written.
    pub frames_sent: AtomicU64,
    /// Frames dropped: a full queue, an unknown peer, or queued while the
    /// peer was unreachable.
    pub frames_dropped: AtomicU64,
    /// Connections established.
    pub connects: AtomicU64,
}

/// Sends frames over one connection per peer (see the
/// [module documentation](self)). Its tasks stop when it is dropped.
#[derive(Debug)]
pub struct TcpFrameSender {
    /// Each peer's queue and its send-side metrics.
    queues: BTreeMap<NodeId, (mpsc::Sender<Frame>, PeerSendCounters)>,
    counters: Arc<TcpFrameCounters>,
    _shutdown: watch::Sender<bool>,
}

impl TcpFrameSender {
    /// Starts one connection task per peer (inside a runtime).
    pub fn start(config: TcpFrameConfig) -> TcpFrameSender {
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let counters = Arc::new(TcpFrameCounters::default());
        let mut queues = BTreeMap::new();
        for (&peer, addr) in &config.peers {
            if peer == config.node_id {
                continue;
            }
            let (tx, rx) = mpsc::channel(config.queue_frames_max.max(1));
            let peer_metrics = PeerSendCounters::new(peer);
            metrics::peer_added(peer);
            queues.insert(peer, (tx, peer_metrics.clone()));
            let link = Link {
                metrics: peer_metrics,
                config: config.clone(),
                peer,
                addr: addr.clone(),
                rx,
                shutdown: shutdown_rx.clone(),
                counters: counters.clone(),
            };
            tokio::spawn(link.run());
        }
        TcpFrameSender {
            queues,
            counters,
            _shutdown: shutdown_tx,
        }
    }

    /// The counters.
    pub fn counters(&self) -> Arc<TcpFrameCounters> {
        self.counters.clone()
    }
}

impl FrameSender for TcpFrameSender {
    fn send(&self, frame: Frame) {
        let sent = match self.queues.get(&frame.to) {
            Some((queue, peer_metrics)) => {
                let sent = queue.try_send(frame).is_ok();
                if !sent {
                    peer_metrics.dropped(1);
                }
                sent
            }
            None => false,
        };
        if !sent {
            self.counters.frames_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Most frames written with one write.
const WRITE_BATCH_FRAMES_MAX: usize = 256;
/// Most bytes buffered for one write.
const WRITE_BATCH_BYTES_MAX: usize = 4 * 1024 * 1024;

/// One peer's connection task.
struct Link {
    config: TcpFrameConfig,
    peer: NodeId,
    addr: String,
    rx: mpsc::Receiver<Frame>,
    shutdown: watch::Receiver<bool>,
    counters: Arc<TcpFrameCounters>,
    /// This peer's send-side series.
    metrics: PeerSendCounters,
}

impl Link {
    async fn run(mut self) {
        let mut backoff = self.config.backoff_min;
        loop {
            if *self.shutdown.borrow() {
                return;
            }
            let hello = Hello {
                cluster_id: self.config.cluster_id.clone(),
                role: HelloRole::Peer {
                    from: self.config.node_id,
                    to: self.peer,
                    incarnation: None,
                },
            };
            let connected = connect(
                &self.addr,
                &hello,
                self.config.max_frame_bytes,
                self.config.connect_timeout,
                self.config.tls.as_deref(),
            )
            .await;
            match connected {
                Ok((stream, node)) if node == self.peer => {
                    self.counters.connects.fetch_add(1, Ordering::Relaxed);
                    metrics::peer_connection(self.peer, true);
                    backoff = self.config.backoff_min;
                    let pumped = self.pump(stream).await;
                    metrics::peer_connection(self.peer, false);
                    match pumped {
                        Ok(()) => return,
                        Err(e) => {
                            tracing::debug!(peer = self.peer, error = %e, "peer connection lost; dialling again")
                        }
                    }
                }
                Ok((_, node)) => {
                    metrics::peer_connect_failed(self.peer);
                    tracing::warn!(peer = self.peer, addr = %self.addr, answered = node, "address answered as another node")
                }
                Err(e) => {
                    metrics::peer_connect_failed(self.peer);
                    tracing::debug!(peer = self.peer, error = %e, "cannot reach peer")
                }
            }
            // Frames queued while unreachable are stale: drop them.
            let mut dropped = 0u64;
            loop {
                match self.rx.try_recv() {
                    Ok(_) => dropped += 1,
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => return,
                }
            }
            self.counters
                .frames_dropped
                .fetch_add(dropped, Ordering::Relaxed);
            if dropped > 0 {
                self.metrics.dropped(dropped);
            }
            tokio::select! {
                biased;
                _ = self.shutdown.changed() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(self.config.backoff_max);
        }
    }

    /// Writes frames and keepalives until the connection breaks or falls
    /// silent (`Err`) or the sender is dropped (`Ok`).
    async fn pump(&mut self, stream: BoxStream) -> Result<(), FrameError> {
        let (mut reader, mut writer) = tokio::io::split(stream);
        let (heard_tx, mut heard) = mpsc::channel::<Result<(), FrameError>>(64);
        let acks = tokio::spawn(async move {
            let mut buf = Vec::new();
            loop {
                // Answers are tiny; a large frame here is bad input.
                match frame::read_value::<PeerReply, _>(&mut reader, &mut buf, 1024).await {
                    Ok(PeerReply::KeepaliveAck) => {
                        let _ = heard_tx.try_send(Ok(()));
                    }
                    Err(e) => {
                        let _ = heard_tx.send(Err(e)).await;
                        return;
                    }
                }
            }
        });
        let result = async {
            let mut buf = Vec::with_capacity(64 * 1024);
            let mut last_heard = Instant::now();
            let mut keepalive = tokio::time::interval(self.config.keepalive_interval);
            keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                buf.clear();
                let frames_in_buf: u64;
                tokio::select! {
                    biased;
                    _ = self.shutdown.changed() => return Ok(()),
                    answer = heard.recv() => {
                        match answer {
                            Some(Ok(())) => last_heard = Instant::now(),
                            Some(Err(e)) => return Err(e),
                            None => return Err(FrameError::Closed),
                        }
                        continue;
                    }
                    _ = tokio::time::sleep_until(last_heard + self.config.peer_timeout) => {
                        return Err(FrameError::Idle { timeout: self.config.peer_timeout });
                    }
                    _ = keepalive.tick() => {
                        frame::encode_frame(&MultiPeerFrameRef::Keepalive, &mut buf)?;
                        frames_in_buf = 0;
                    }
                    queued = self.rx.recv() => {
                        let Some(first) = queued else { return Ok(()) };
                        let mut next = Some(first);
                        let mut count = 0u64;
                        while let Some(frame) = next.take() {
                            frame::encode_frame(&MultiPeerFrameRef::Frame(&frame), &mut buf)?;
                            count += 1;
                            if count < WRITE_BATCH_FRAMES_MAX as u64 && buf.len() < WRITE_BATCH_BYTES_MAX {
                                next = self.rx.try_recv().ok();
                            }
                        }
                        self.counters.frames_sent.fetch_add(count, Ordering::Relaxed);
                        frames_in_buf = count;
                    }
                }
                let write = async {
                    writer.write_all(&buf).await?;
                    writer.flush().await
                };
                match tokio::time::timeout(self.config.peer_timeout, write).await {
                    Ok(written) => written?,
                    Err(_) => return Err(FrameError::Idle { timeout: self.config.peer_timeout }),
                }
                self.metrics.written(frames_in_buf, buf.len() as u64);
            }
        }
        .await;
        acks.abort();
        result
    }
}
