//! Connections to the servers shared by many clients, with their
//! requests pipelined: the way etcd's clients share one gRPC connection.
//!
//! Clients made with the same [`SharedConnections`] (through
//! [`RoutingConfig::shared`](super::routing_client::RoutingConfig::shared)
//! or [`ClientConfig::shared`](crate::client::ClientConfig::shared)) send
//! their requests to a server down one connection, each as soon as it is
//! made, without waiting for the answers before it. The server answers a
//! connection's requests in the order they came, and writes every answer
//! it has ready in one go: a batch of 64 clients' writes applied together
//! costs the leader one write system call per connection instead of 64.
//!
//! Nothing else changes for a client: each still has its own session,
//! one command outstanding in it, and its own timeouts and retries. What
//! the clients share is only the byte stream.
//!
//! A connection has two tasks: one writes requests as they come (every
//! request waiting at that moment in one write), one reads answers and
//! hands each to the oldest request not yet answered. When either fails
//! (the server closed, reset or sent garbage) the connection is broken:
//! every request still waiting on it learns that its outcome is unknown,
//! and the next call dials a new one. A request not answered within its
//! client's `request_timeout` breaks its connection too: an answer that
//! late means the server or the path is stuck, and the requests behind it
//! would wait as long.
//!
//! ```no_run
//! # async fn example() -> Result<(), concord_tokio::client::ClientError> {
//! use bytes::Bytes;
//! use concord_tokio::client::ClientConfig;
//! use concord_tokio::multi::one_group_client::OneGroupClient;
//! use concord_tokio::multi::shared_connections::SharedConnections;
//!
//! let servers = vec!["127.0.0.1:7001".to_string(), "127.0.0.1:7002".to_string()];
//! let shared = SharedConnections::new();
//! let mut clients: Vec<OneGroupClient> = (0..64)
//!     .map(|_| {
//!         let mut config = ClientConfig::new(servers.clone(), "my-cluster");
//!         config.shared = Some(shared.clone());
//!         OneGroupClient::new(config)
//!     })
//!     .collect();
//! // 64 clients, one connection per server between them.
//! clients[0].write(Bytes::from_static(b"...")).await?;
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};

use concord::NodeId;

use crate::frame::{self, FrameBudget, FrameBuffer, DEFAULT_MAX_FRAME_BYTES};
use crate::transport::BoxStream;
use crate::wire::ClientResponse;

/// Most requests queued on one shared connection and not yet written; a
/// call waits for room before it is sent. Those written and waiting for
/// their answers are bounded by the server, which reads no more of a
/// connection than
/// [`CLIENT_PIPELINE_DEPTH_MAX`](crate::listener::CLIENT_PIPELINE_DEPTH_MAX)
/// requests ahead of its answers (TCP holds the rest).
pub const SHARED_DEPTH_MAX: usize = crate::listener::CLIENT_PIPELINE_DEPTH_MAX;

/// Most bytes of requests gathered into one write.
const REQUEST_WRITE_BYTES_MAX: usize = 256 * 1024;

/// Most bytes a shared connection's reading side holds of answers beyond
/// the frame in hand (what arrived ahead of it).
const ANSWER_BUFFER_BYTES_MAX: usize = 64 * 1024 * 1024;

/// One connection per server, shared by every client made with a clone
/// of this handle (see the [module documentation](self)).
#[derive(Clone, Default)]
pub struct SharedConnections {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    connections: Mutex<BTreeMap<NodeId, Arc<Pipe>>>,
    /// Shared with the connections' tasks, which must not hold the pool:
    /// dropping the pool drops its connections, which stops them.
    stats: Arc<SharedStats>,
}

/// Counters of a [`SharedConnections`], over its life.
#[derive(Debug, Default)]
pub struct SharedStats {
    requests: AtomicU64,
    request_writes: AtomicU64,
    answers: AtomicU64,
    broken: AtomicU64,
}

/// A snapshot of [`SharedStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SharedCounts {
    /// Requests sent.
    pub requests: u64,
    /// Writes that carried them.
    pub request_writes: u64,
    /// Answers handed to their requests.
    pub answers: u64,
    /// Connections that broke (closed, reset, garbage, or an answer
    /// later than its request's timeout).
    pub broken: u64,
}

impl std::fmt::Debug for SharedConnections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let nodes: Vec<NodeId> = self.lock().keys().copied().collect();
        f.debug_struct("SharedConnections")
            .field("connected", &nodes)
            .field("counts", &self.counts())
            .finish()
    }
}

impl SharedConnections {
    /// No connections yet: the first call to a server dials it.
    pub fn new() -> Self {
        SharedConnections::default()
    }

    /// The counters so far.
    pub fn counts(&self) -> SharedCounts {
        let stats = &self.inner.stats;
        SharedCounts {
            requests: stats.requests.load(Ordering::Relaxed),
            request_writes: stats.request_writes.load(Ordering::Relaxed),
            answers: stats.answers.load(Ordering::Relaxed),
            broken: stats.broken.load(Ordering::Relaxed),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<NodeId, Arc<Pipe>>> {
        self.inner
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The working connection to `node`, if there is one.
    pub(crate) fn get(&self, node: NodeId) -> Option<Arc<Pipe>> {
        let mut connections = self.lock();
        match connections.get(&node) {
            Some(pipe) if pipe.is_broken() => {
                connections.remove(&node);
                None
            }
            Some(pipe) => Some(pipe.clone()),
            None => None,
        }
    }

    /// Makes `stream` (connected to `node`, its handshake done) the
    /// shared connection to `node`, unless another client made one
    /// meanwhile: the one in use.
    pub(crate) fn adopt(&self, node: NodeId, stream: BoxStream) -> Arc<Pipe> {
        let mut connections = self.lock();
        if let Some(pipe) = connections.get(&node) {
            if !pipe.is_broken() {
                return pipe.clone();
            }
        }
        let pipe = Pipe::start(stream, self.inner.stats.clone());
        connections.insert(node, pipe.clone());
        pipe
    }

    /// Drops `pipe` as `node`'s connection (it broke, or timed out).
    pub(crate) fn forget(&self, node: NodeId, pipe: &Arc<Pipe>) {
        pipe.break_off(&self.inner.stats);
        let mut connections = self.lock();
        if connections
            .get(&node)
            .is_some_and(|current| Arc::ptr_eq(current, pipe))
        {
            connections.remove(&node);
        }
    }
}

/// Marks a connection broken, counting it once.
fn mark_broken(broken: &AtomicBool, stats: &SharedStats) {
    if !broken.swap(true, Ordering::AcqRel) {
        stats.broken.fetch_add(1, Ordering::Relaxed);
    }
}

/// A request on its way to the writing task: its frame, and where its
/// answer goes.
struct Outgoing {
    frame: Vec<u8>,
    answer: oneshot::Sender<ClientResponse>,
}

/// One shared connection: its two tasks, stopped when the last handle
/// goes (the pool forgot it and no call still waits on it).
pub(crate) struct Pipe {
    requests: mpsc::Sender<Outgoing>,
    broken: Arc<AtomicBool>,
    tasks: [tokio::task::JoinHandle<()>; 2],
}

impl Drop for Pipe {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Why a call on a shared connection got no answer.
#[derive(Debug)]
pub(crate) enum PipeError {
    /// The request never left: nothing was applied.
    NotSent,
    /// Sent (or perhaps sent), then the connection broke or the answer
    /// did not come in time: the outcome is unknown.
    Lost(&'static str),
}

impl Pipe {
    fn start(stream: BoxStream, stats: Arc<SharedStats>) -> Arc<Pipe> {
        let (reader, writer) = tokio::io::split(stream);
        let (requests_tx, requests_rx) = mpsc::channel(SHARED_DEPTH_MAX);
        // Unbounded, but never longer than the calls waiting on this
        // connection: each holds one slot until its answer comes.
        let (waiting_tx, waiting_rx) = mpsc::unbounded_channel();
        let broken = Arc::new(AtomicBool::new(false));
        let write_task = tokio::spawn(write_requests(
            writer,
            requests_rx,
            waiting_tx,
            broken.clone(),
            stats.clone(),
        ));
        let read_task = tokio::spawn(read_answers(reader, waiting_rx, broken.clone(), stats));
        Arc::new(Pipe {
            requests: requests_tx,
            broken,
            tasks: [write_task, read_task],
        })
    }

    fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Acquire) || self.requests.is_closed()
    }

    fn break_off(&self, stats: &SharedStats) {
        mark_broken(&self.broken, stats);
        for task in &self.tasks {
            task.abort();
        }
    }

    /// Sends the request `frame` (one whole encoded frame) and waits for
    /// its answer, at most `timeout` from now.
    pub(crate) async fn call(
        &self,
        frame: Vec<u8>,
        timeout: Duration,
    ) -> Result<ClientResponse, PipeError> {
        let (answer_tx, answer_rx) = oneshot::channel();
        let outgoing = Outgoing {
            frame,
            answer: answer_tx,
        };
        let deadline = tokio::time::Instant::now() + timeout;
        // Waiting for room counts against the timeout; a request that
        // never got into the channel was never sent.
        match tokio::time::timeout(timeout, self.requests.send(outgoing)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) | Err(_) => return Err(PipeError::NotSent),
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, answer_rx).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(_)) => Err(PipeError::Lost("the shared connection broke")),
            Err(_) => Err(PipeError::Lost("no answer within the request timeout")),
        }
    }
}

/// The writing task: each request's answer slot goes in line before its
/// frame leaves, so the reading task finds it there when the answer
/// arrives; every request waiting goes out in one write.
async fn write_requests(
    mut writer: tokio::io::WriteHalf<BoxStream>,
    mut requests: mpsc::Receiver<Outgoing>,
    waiting: mpsc::UnboundedSender<oneshot::Sender<ClientResponse>>,
    broken: Arc<AtomicBool>,
    stats: Arc<SharedStats>,
) {
    let mut buf: Vec<u8> = Vec::new();
    while let Some(first) = requests.recv().await {
        buf.clear();
        let mut count = 0u64;
        let mut next = Some(first);
        while let Some(outgoing) = next.take() {
            if waiting.send(outgoing.answer).is_err() {
                // The reading side ended: the connection is broken.
                mark_broken(&broken, &stats);
                return;
            }
            buf.extend_from_slice(&outgoing.frame);
            count += 1;
            if buf.len() < REQUEST_WRITE_BYTES_MAX {
                next = requests.try_recv().ok();
            }
        }
        let written = async {
            writer.write_all(&buf).await?;
            writer.flush().await
        };
        if written.await.is_err() {
            mark_broken(&broken, &stats);
            return;
        }
        stats.requests.fetch_add(count, Ordering::Relaxed);
        stats.request_writes.fetch_add(1, Ordering::Relaxed);
    }
}

/// The reading task: each answer goes to the oldest request waiting.
async fn read_answers(
    mut reader: tokio::io::ReadHalf<BoxStream>,
    mut waiting: mpsc::UnboundedReceiver<oneshot::Sender<ClientResponse>>,
    broken: Arc<AtomicBool>,
    stats: Arc<SharedStats>,
) {
    let budget = Arc::new(FrameBudget::new(ANSWER_BUFFER_BYTES_MAX));
    let mut frame_buf = FrameBuffer::with_budget(budget);
    loop {
        if frame::read_frame_buffered(&mut reader, &mut frame_buf, DEFAULT_MAX_FRAME_BYTES)
            .await
            .is_err()
        {
            break;
        }
        let Ok(response) =
            crate::codec::decode::<ClientResponse>(frame_buf.payload(), DEFAULT_MAX_FRAME_BYTES)
        else {
            break;
        };
        // An answer with no request waiting: the server is not speaking
        // this protocol.
        let Ok(answer) = waiting.try_recv() else {
            break;
        };
        stats.answers.fetch_add(1, Ordering::Relaxed);
        // A caller that gave up (its timeout) dropped its end.
        let _ = answer.send(response);
    }
    mark_broken(&broken, &stats);
    // Dropping `waiting` drops every answer slot still in line: their
    // callers learn the outcome is unknown.
}
