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

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};

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
