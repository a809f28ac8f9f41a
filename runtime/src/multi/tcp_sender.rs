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
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::frame::{self, FrameError};
use crate::metrics::multi::PeerSendCounters;
use crate::tls::TlsConfig;
use crate::transport::{LinkEvent, Outbound, PeerSender, TcpTransportConfig};
use concord::multi::Frame;
use concord::NodeId;

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
    /// Where peers learnt while running ([`FrameSender::add_peer`]) are
    /// written too, for the listener to accept their connections.
    pub addresses: Option<crate::addresses::SharedAddressBook>,
    /// This node's data directory identity: its cluster incarnation goes
    /// in every handshake, so a peer of another incarnation of the
    /// cluster (an earlier one of the same name and addresses) refuses
    /// it (see [`crate::identity`]). `None` shows none.
    pub identity: Option<Arc<crate::identity::IdentityHandle>>,
    /// Applied to every connection after its handshake (fault injection
    /// in tests: [`crate::fault`]).
    pub stream_wrapper: Option<crate::transport::StreamWrapper>,
    /// Planted mistake for the madsim sweep (`--bug frames-out-of-order`):
    /// every [`PLANTED_SWAP_EVERY`]th frame to a peer is held back and
    /// written after the next one, so one connection delivers those two
    /// frames swapped.
    #[cfg(feature = "planted-bugs")]
    #[doc(hidden)]
    pub planted_frames_out_of_order: bool,
}

/// Frames to a peer between two swapped pairs under the planted
/// reordering mistake.
#[cfg(feature = "planted-bugs")]
#[doc(hidden)]
pub const PLANTED_SWAP_EVERY: u64 = 16;

impl TcpFrameConfig {
    /// The links of node `node_id` to every other server of `servers`
    /// (this node's own entry is skipped), with an address book seeded
    /// with them and shared with the sender: the listener asks the servers
    /// in it for the address of a member it was not told of (the catalog
    /// records it), and peers learnt later are written to it too. The
    /// rest are [`new`](Self::new)'s defaults.
    pub fn for_servers(
        node_id: NodeId,
        cluster_id: impl Into<String>,
        servers: &BTreeMap<NodeId, String>,
    ) -> (TcpFrameConfig, crate::addresses::SharedAddressBook) {
        let peers: BTreeMap<NodeId, String> = servers
            .iter()
            .filter(|(peer, _)| **peer != node_id)
            .map(|(peer, addr)| (*peer, addr.clone()))
            .collect();
        let addresses = crate::addresses::SharedAddressBook::default();
        for (peer, addr) in &peers {
            addresses.set(*peer, addr);
        }
        let mut config = TcpFrameConfig::new(node_id, cluster_id, peers);
        config.addresses = Some(addresses.clone());
        (config, addresses)
    }

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
            addresses: None,
            identity: None,
            stream_wrapper: None,
            #[cfg(feature = "planted-bugs")]
            planted_frames_out_of_order: false,
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
    /// Connections dropped because nothing was heard on them for the
    /// peer timeout (then dialled again).
    pub silent_connections_dropped: AtomicU64,
}

/// One peer's queue of numbered frames.
#[derive(Debug)]
struct PeerQueue {
    tx: mpsc::Sender<Numbered>,
    metrics: PeerSendCounters,
    /// The number of the last frame handed over for this peer
    /// ([`MultiPeerFrame::Frame`](super::wire::MultiPeerFrame::Frame)'s
    /// `seq`).
    seq_last: u64,
}

/// Sends frames over one connection per peer (see the
/// [module documentation](self)). Its tasks stop when it is dropped.
#[derive(Debug)]
pub struct TcpFrameSender {
    /// Each peer's queue and its send-side metrics (peers are added
    /// while running, never removed: at most `CATALOG_SERVERS_MAX`).
    queues: Mutex<BTreeMap<NodeId, PeerQueue>>,
    counters: Arc<TcpFrameCounters>,
    /// How a connection to a peer added later is made.
    link: TcpTransportConfig,
    queue_frames_max: usize,
    addresses: Option<crate::addresses::SharedAddressBook>,
    shutdown_rx: watch::Receiver<bool>,
    _shutdown: watch::Sender<bool>,
    /// The planted reordering mistake is on.
    swap_frames: bool,
}

impl TcpFrameSender {
    /// Starts one connection task per peer (inside a runtime): the
    /// single-group transport's peer sender, carrying frames.
    pub fn start(config: TcpFrameConfig) -> TcpFrameSender {
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let counters = Arc::new(TcpFrameCounters::default());
        let mut link =
            TcpTransportConfig::new(config.node_id, config.cluster_id.clone(), BTreeMap::new());
        link.queue_messages_max = config.queue_frames_max;
        link.max_frame_bytes = config.max_frame_bytes;
        link.backoff_min = config.backoff_min;
        link.backoff_max = config.backoff_max;
        link.connect_timeout = config.connect_timeout;
        link.keepalive_interval = config.keepalive_interval;
        link.peer_timeout = Some(config.peer_timeout);
        link.tls = config.tls.clone();
        link.identity = config.identity.clone();
        link.stream_wrapper = config.stream_wrapper.clone();
        let sender = TcpFrameSender {
            queues: Mutex::new(BTreeMap::new()),
            counters,
            link,
            queue_frames_max: config.queue_frames_max,
            addresses: config.addresses.clone(),
            shutdown_rx,
            _shutdown: shutdown_tx,
            #[cfg(feature = "planted-bugs")]
            swap_frames: config.planted_frames_out_of_order,
            #[cfg(not(feature = "planted-bugs"))]
            swap_frames: false,
        };
        for (&peer, addr) in &config.peers {
            if peer == config.node_id {
                continue;
            }
            sender.connect(peer, addr);
        }
        sender
    }

    /// Starts the connection task of `peer` unless it has one.
    fn connect(&self, peer: NodeId, addr: &str) {
        let mut queues = self.queues.lock().expect("no panic while held");
        if queues.contains_key(&peer) {
            return;
        }
        let (tx, rx) = mpsc::channel(self.queue_frames_max.max(1));
        let peer_metrics = PeerSendCounters::new(peer);
        queues.insert(
            peer,
            PeerQueue {
                tx,
                metrics: peer_metrics.clone(),
                seq_last: 0,
            },
        );
        let frames = Frames {
            metrics: peer_metrics,
            counters: self.counters.clone(),
            swap: self.swap_frames.then(Mutex::default),
        };
        let sender = PeerSender::new(&self.link, peer, addr, rx, self.shutdown_rx.clone(), frames);
        tokio::spawn(sender.run());
    }

    /// The counters.
    pub fn counters(&self) -> Arc<TcpFrameCounters> {
        self.counters.clone()
    }
}

impl FrameSender for TcpFrameSender {
    fn send(&self, frame: Frame) {
        let mut queues = self.queues.lock().expect("no panic while held");
        let sent = match queues.get_mut(&frame.to) {
            Some(queue) => {
                // Numbered in the order handed over, which is the order
                // the peer must see them in; a frame dropped here only
                // leaves a gap.
                queue.seq_last += 1;
                let sent = queue.tx.try_send((queue.seq_last, frame)).is_ok();
                if !sent {
                    queue.metrics.dropped(1);
                }
                sent
            }
            None => false,
        };
        if !sent {
            self.counters.frames_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn learned_address(&self, peer: NodeId) -> Option<String> {
        self.addresses.as_ref()?.address(peer)
    }

    fn add_peer(&self, peer: NodeId, addr: &str) {
        if peer == self.link.node_id {
            return;
        }
        if let Some(book) = &self.addresses {
            book.set(peer, addr);
        }
        self.connect(peer, addr);
    }
}

/// The multi-group server's side of [`Outbound`]: frames, never stale
/// (a frame holds every group's messages; Raft resends what is lost).
struct Frames {
    counters: Arc<TcpFrameCounters>,
    /// This peer's send-side series.
    metrics: PeerSendCounters,
    /// Under the planted reordering mistake: frames encoded so far, and
    /// the one held back to go after the next.
    swap: Option<Mutex<(u64, Option<Numbered>)>>,
}

/// A frame and its number ([`MultiPeerFrame::Frame`](super::wire::MultiPeerFrame::Frame)'s `seq`).
type Numbered = (u64, Frame);

/// Appends numbered frame `seq` to `buf`.
fn encode_numbered(seq: u64, frame: &Frame, buf: &mut Vec<u8>) -> Result<(), FrameError> {
    frame::encode_frame(&MultiPeerFrameRef::Frame { seq, frame }, buf)
}

impl Outbound for Frames {
    type Item = Numbered;

    fn encode(
        &self,
        (seq, frame): Numbered,
        _now: Instant,
        buf: &mut Vec<u8>,
    ) -> Result<bool, FrameError> {
        if let Some(swap) = &self.swap {
            let mut swap = swap.lock().expect("no panic while held");
            let (encoded, held) = &mut *swap;
            *encoded += 1;
            if let Some((earlier_seq, earlier)) = held.take() {
                encode_numbered(seq, &frame, buf)?;
                encode_numbered(earlier_seq, &earlier, buf)?;
                return Ok(true);
            }
            #[cfg(feature = "planted-bugs")]
            if *encoded % PLANTED_SWAP_EVERY == 0 {
                *held = Some((seq, frame));
                // Written with the next frame (counted as not written now).
                return Ok(false);
            }
        }
        encode_numbered(seq, &frame, buf)?;
        Ok(true)
    }

    fn encode_keepalive(&self, buf: &mut Vec<u8>) -> Result<(), FrameError> {
        frame::encode_frame(&MultiPeerFrameRef::Keepalive, buf)
    }

    fn count(&self, event: LinkEvent) {
        match event {
            LinkEvent::Connected => {
                self.counters.connects.fetch_add(1, Ordering::Relaxed);
            }
            LinkEvent::Dropped(frames) => {
                self.counters
                    .frames_dropped
                    .fetch_add(frames, Ordering::Relaxed);
                self.metrics.dropped(frames);
            }
            LinkEvent::Written { items, bytes } => {
                self.counters
                    .frames_sent
                    .fetch_add(items, Ordering::Relaxed);
                self.metrics.written(items, bytes);
            }
            LinkEvent::Silent => {
                self.counters
                    .silent_connections_dropped
                    .fetch_add(1, Ordering::Relaxed);
            }
            LinkEvent::ConnectFailed => {}
        }
    }
}

#[cfg(all(test, feature = "planted-bugs"))]
mod planted_tests {
    use super::*;

    fn encoded(frame: &Frame) -> Vec<u8> {
        let mut buf = Vec::new();
        encode_numbered(frame.incarnation, frame, &mut buf).unwrap();
        buf
    }

    /// The planted mistake holds every sixteenth frame back and writes it
    /// right after the next one.
    #[test]
    fn the_planted_mistake_swaps_every_sixteenth_frame_with_the_next() {
        let frames = Frames {
            counters: Arc::default(),
            metrics: PeerSendCounters::new(2),
            swap: Some(Mutex::default()),
        };
        let now = Instant::now();
        let frame = |n: u64| Frame::new(1, 2, n);
        for n in 1..PLANTED_SWAP_EVERY {
            let mut buf = Vec::new();
            assert!(frames.encode((n, frame(n)), now, &mut buf).unwrap());
            assert_eq!(buf, encoded(&frame(n)));
        }
        let mut buf = Vec::new();
        assert!(!frames.encode((16, frame(16)), now, &mut buf).unwrap());
        assert!(buf.is_empty(), "the sixteenth frame is held back");
        assert!(frames.encode((17, frame(17)), now, &mut buf).unwrap());
        let mut swapped = encoded(&frame(17));
        swapped.extend(encoded(&frame(16)));
        assert_eq!(buf, swapped);
    }
}
