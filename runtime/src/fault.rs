//! Connection-level fault injection for tests of the real transport.
//!
//! A network partition does not break a TCP connection: the connection
//! stays open while every packet on it vanishes, and after the partition
//! heals it stays mute until the kernel's next retransmission, which backs
//! off exponentially to minutes. A simulated network that only delays or
//! drops *messages* never shows that. [`LinkStaller`] reproduces it on any
//! runtime, real or madsim: wrap the transport's connections with
//! [`LinkStaller::wrapper`], then [`LinkStaller::stall_between`] makes every
//! connection that is open between two nodes silent for good (writes are
//! accepted and discarded, reads never complete) until the transport gives
//! up on it and dials a new one. New connections are not affected; block
//! those with the network's own partition (nftables, madsim's `clog`) for
//! as long as the partition should last.
//!
//! [`ConnectionResetter`] breaks connections instead: a reset connection
//! fails every read and write with `ConnectionReset` and drops the
//! connection underneath, so the other end sees it closed and whatever
//! was still on its way to the resetting end is lost (an answer to a
//! request already sent, say). madsim's network cannot do this itself:
//! its TCP streams are reliable channels that a `clog` only delays, and
//! `NetSim::reset_node` forgets a node's bound sockets (its listener
//! stops accepting) while the streams it has open carry on.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use concord::NodeId;

use super::transport::{BoxStream, StreamWrapper};

/// Most connections tracked; older entries whose connection closed are
/// pruned first, so this only bounds a test that leaks connections.
const TRACKED_CONNECTIONS_MAX: usize = 65_536;

/// Makes live peer connections go silent. See the [module docs](self).
#[derive(Clone, Debug, Default)]
pub struct LinkStaller {
    state: Arc<Mutex<StallerState>>,
}

#[derive(Debug, Default)]
struct StallerState {
    /// (from, to, switch) of every wrapped connection still open.
    connections: Vec<(NodeId, NodeId, Weak<AtomicBool>)>,
}

impl LinkStaller {
    /// A new staller with no connections.
    pub fn new() -> Self {
        Self::default()
    }

    /// The wrapper to put in node `from`'s transport settings
    /// ([`TcpTransportConfig::stream_wrapper`](super::transport::TcpTransportConfig::stream_wrapper)).
    pub fn wrapper(&self, from: NodeId) -> StreamWrapper {
        let state = self.state.clone();
        StreamWrapper(Arc::new(move |to: NodeId, inner: BoxStream| {
            let stalled = Arc::new(AtomicBool::new(false));
            let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
            state.connections.retain(|(_, _, s)| s.strong_count() > 0);
            assert!(
                state.connections.len() < TRACKED_CONNECTIONS_MAX,
                "more than {TRACKED_CONNECTIONS_MAX} open connections"
            );
            state.connections.push((from, to, Arc::downgrade(&stalled)));
            Box::new(SilentableStream { inner, stalled }) as BoxStream
        }))
    }

    /// Silences every open connection between `a` and `b`, in both
    /// directions. Returns how many were open.
    pub fn stall_between(&self, a: NodeId, b: NodeId) -> usize {
        self.stall_where(|from, to| (from, to) == (a, b) || (from, to) == (b, a))
    }

    /// Silences every open connection from or to `node`. Returns how many
    /// were open.
    pub fn stall_node(&self, node: NodeId) -> usize {
        self.stall_where(|from, to| from == node || to == node)
    }

    fn stall_where(&self, matches: impl Fn(NodeId, NodeId) -> bool) -> usize {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut count = 0;
        for (from, to, switch) in &state.connections {
            if let Some(switch) = switch.upgrade() {
                if matches(*from, *to) && !switch.swap(true, Ordering::SeqCst) {
                    count += 1;
                }
            }
        }
        count
    }
}

/// A stream that can be switched to silence: writes succeed and vanish,
/// reads never complete.
struct SilentableStream {
    inner: BoxStream,
    stalled: Arc<AtomicBool>,
}

impl AsyncRead for SilentableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.stalled.load(Ordering::SeqCst) {
            // Never woken: nothing will ever arrive on this connection.
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for SilentableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.stalled.load(Ordering::SeqCst) {
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.stalled.load(Ordering::SeqCst) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.stalled.load(Ordering::SeqCst) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Resets live connections: every read and write of a reset connection
/// fails with `ConnectionReset`, and the connection underneath is
/// dropped at once. See the [module docs](self).
#[derive(Clone, Debug, Default)]
pub struct ConnectionResetter {
    state: Arc<Mutex<ResetterState>>,
    resets: Arc<AtomicU64>,
}

#[derive(Debug, Default)]
struct ResetterState {
    /// (from, to, switch) of every wrapped connection still open.
    connections: Vec<(NodeId, NodeId, Weak<ResetSwitch>)>,
}

/// One connection's reset: the flag, and the task waiting to read from
/// it (woken by the reset, so that it learns at once).
#[derive(Debug, Default)]
struct ResetSwitch {
    reset: AtomicBool,
    reader: Mutex<Option<Waker>>,
}

impl ResetSwitch {
    /// Resets the connection; whether it was live.
    fn trip(&self) -> bool {
        let was_live = !self.reset.swap(true, Ordering::SeqCst);
        let reader = self.reader.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(waker) = reader {
            waker.wake();
        }
        was_live
    }
}

impl ConnectionResetter {
    /// A new resetter with no connections.
    pub fn new() -> Self {
        Self::default()
    }

    /// The wrapper for the connections node (or client) `from` opens: a
    /// peer link's ([`TcpTransportConfig::stream_wrapper`](super::transport::TcpTransportConfig::stream_wrapper))
    /// or a routing client's
    /// ([`RoutingConfig::stream_wrapper`](super::multi::routing_client::RoutingConfig::stream_wrapper)).
    /// The wrapped function is given the node at the other end.
    pub fn wrapper(&self, from: NodeId) -> StreamWrapper {
        let state = self.state.clone();
        StreamWrapper(Arc::new(move |to: NodeId, inner: BoxStream| {
            let reset = Arc::new(ResetSwitch::default());
            let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
            state.connections.retain(|(_, _, s)| s.strong_count() > 0);
            assert!(
                state.connections.len() < TRACKED_CONNECTIONS_MAX,
                "more than {TRACKED_CONNECTIONS_MAX} open connections"
            );
            state.connections.push((from, to, Arc::downgrade(&reset)));
            Box::new(ResettableStream {
                inner: Some(inner),
                reset,
            }) as BoxStream
        }))
    }

    /// Resets every open connection from or to `node`. Returns how many
    /// were open.
    pub fn reset_node(&self, node: NodeId) -> usize {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut count = 0;
        for (from, to, switch) in &state.connections {
            if let Some(switch) = switch.upgrade() {
                if (*from == node || *to == node) && switch.trip() {
                    count += 1;
                }
            }
        }
        self.resets.fetch_add(count as u64, Ordering::Relaxed);
        count
    }

    /// Connections reset so far.
    pub fn resets(&self) -> u64 {
        self.resets.load(Ordering::Relaxed)
    }
}

/// A stream that can be reset: from then on every operation fails and
/// the stream underneath is dropped.
struct ResettableStream {
    inner: Option<BoxStream>,
    reset: Arc<ResetSwitch>,
}

impl ResettableStream {
    /// The stream underneath, or the reset's error (dropping the stream
    /// the first time).
    fn live(&mut self) -> std::io::Result<&mut BoxStream> {
        if self.reset.reset.load(Ordering::SeqCst) {
            self.inner = None;
        }
        self.inner.as_mut().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "connection reset (fault injected)",
            )
        })
    }
}

impl AsyncRead for ResettableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let reset = self.reset.clone();
        let polled = match self.live() {
            Ok(inner) => Pin::new(inner).poll_read(cx, buf),
            Err(e) => return Poll::Ready(Err(e)),
        };
        if polled.is_pending() {
            *reset.reader.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
            // A reset between the poll and the waker's registration.
            if reset.reset.load(Ordering::SeqCst) {
                cx.waker().wake_by_ref();
            }
        }
        polled
    }
}

impl AsyncWrite for ResettableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.live() {
            Ok(inner) => Pin::new(inner).poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.live() {
            Ok(inner) => Pin::new(inner).poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.live() {
            Ok(inner) => Pin::new(inner).poll_shutdown(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_reset_fails_the_wrapped_end_and_closes_the_other() {
        let resetter = ConnectionResetter::new();
        let (near, mut far) = tokio::io::duplex(64);
        let mut wrapped = (resetter.wrapper(1).0)(2, Box::new(near));
        wrapped.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        far.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        // A reader waiting on the wrapped end learns of the reset at once.
        let reader = tokio::spawn(async move {
            let mut byte = [0u8; 1];
            let read = wrapped.read(&mut byte).await;
            (read.map_err(|e| e.kind()), wrapped)
        });
        tokio::task::yield_now().await;
        assert_eq!(resetter.reset_node(7), 0, "no connection of node 7");
        assert_eq!(resetter.reset_node(2), 1);
        let (read, mut wrapped) = reader.await.unwrap();
        assert_eq!(read, Err(std::io::ErrorKind::ConnectionReset));
        let write = wrapped.write_all(b"x").await.map_err(|e| e.kind());
        assert_eq!(write, Err(std::io::ErrorKind::ConnectionReset));
        // The stream underneath is gone: the other end reads its end.
        assert_eq!(far.read(&mut buf).await.unwrap(), 0);
        assert_eq!(resetter.resets(), 1);
        assert_eq!(resetter.reset_node(2), 0, "reset once");
    }
}
