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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot, watch};

use crate::tokio::frame::{self, FrameBudget, FrameBuffer, FrameError, FrameTimeouts};
use crate::tokio::tls::{self, TlsConfig};
use crate::tokio::transport::BoxStream;
use crate::tokio::wire::{
    ClientResponse, Hello, HelloRole, PeerReply, Welcome, CLUSTER_ID_MAX_BYTES,
};
use crate::NodeId;

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
            peer_idle_timeout: Duration::from_secs(2),
            client_idle_timeout: Duration::from_secs(120),
            frame_timeout: Duration::from_secs(10),
            connections_max: 1024,
            frame_buffer_bytes_max: 128 * 1024 * 1024,
            tls: None,
        }
    }
}

/// Accepts connections on `listener` until `shutdown` flips, handing
/// frames and client requests to the server's `events`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: MultiListenerConfig,
    events: mpsc::Sender<HostEvent>,
    mut shutdown: watch::Receiver<bool>,
) {
    let config = Arc::new(config);
    let budget = Arc::new(FrameBudget::new(config.frame_buffer_bytes_max));
    let open = Arc::new(AtomicUsize::new(0));
    loop {
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
        if open.load(Ordering::Relaxed) >= config.connections_max {
            tracing::warn!(%remote, "too many connections; closing the new one");
            continue;
        }
        let _ = stream.set_nodelay(true);
        open.fetch_add(1, Ordering::Relaxed);
        let (config, events, shutdown, budget, open) = (
            config.clone(),
            events.clone(),
            shutdown.clone(),
            budget.clone(),
            open.clone(),
        );
        tokio::spawn(async move {
            match handle(Box::new(stream), &config, events, shutdown, budget).await {
                Ok(()) => tracing::debug!(%remote, "connection closed"),
                Err(reason) => tracing::warn!(%remote, %reason, "closing connection"),
            }
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

async fn write_value<T: serde::Serialize>(
    stream: &mut BoxStream,
    buf: &mut Vec<u8>,
    value: &T,
) -> Result<(), String> {
    buf.clear();
    frame::encode_frame(value, buf).map_err(|e| e.to_string())?;
    stream.write_all(buf).await.map_err(|e| e.to_string())?;
    stream.flush().await.map_err(|e| e.to_string())
}

/// Whether the error only says the other side went away.
fn went_away(e: &FrameError) -> bool {
    matches!(e, FrameError::Closed)
        || matches!(e, FrameError::Io(io) if matches!(io.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::BrokenPipe))
}

async fn handle(
    stream: BoxStream,
    config: &MultiListenerConfig,
    events: mpsc::Sender<HostEvent>,
    mut shutdown: watch::Receiver<bool>,
    budget: Arc<FrameBudget>,
) -> Result<(), String> {
    let (mut stream, identity) = match &config.tls {
        None => (stream, None),
        Some(tls) => {
            match tokio::time::timeout(config.handshake_timeout, tls::accept(tls, stream)).await {
                Ok(Ok((stream, identity))) => (stream, Some(identity)),
                Ok(Err(e)) => return Err(format!("TLS handshake failed: {e}")),
                Err(_) => return Err("no TLS handshake in time".to_string()),
            }
        }
    };
    let mut frame_buf = FrameBuffer::with_budget(budget);
    let handshake = FrameTimeouts {
        idle: config.handshake_timeout,
        frame: config.handshake_timeout,
    };
    let hello: Hello = frame::read_value_timed(&mut stream, &mut frame_buf, 64 * 1024, handshake)
        .await
        .map_err(|e| format!("bad handshake: {e}"))?;
    let mut buf = Vec::new();
    let refusal =
        if hello.cluster_id.len() > CLUSTER_ID_MAX_BYTES || hello.cluster_id != config.cluster_id {
            Some(format!(
                "cluster id {:?} is not ours ({:?})",
                hello.cluster_id, config.cluster_id
            ))
        } else {
            match hello.role {
                HelloRole::Peer { from, to, .. }
                    if from == config.node_id || !config.peers.contains(&from) =>
                {
                    let _ = to;
                    Some(format!(
                        "node {from} is not a peer of node {}",
                        config.node_id
                    ))
                }
                HelloRole::Peer { to, .. } if to != config.node_id => Some(format!(
                    "peer wanted node {to} but this is node {}",
                    config.node_id
                )),
                HelloRole::Peer { from, .. } => identity
                    .as_ref()
                    .and_then(|identity| identity.check_node(from, &config.cluster_id).err()),
                HelloRole::Client => identity
                    .as_ref()
                    .and_then(|identity| identity.check_client(&config.cluster_id).err()),
            }
        };
    if let Some(reason) = refusal {
        let _ = write_value(
            &mut stream,
            &mut buf,
            &Welcome::Refused {
                reason: reason.clone(),
            },
        )
        .await;
        return Err(format!("refused: {reason}"));
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
            let timeouts = FrameTimeouts {
                idle: config.peer_idle_timeout,
                frame: config.frame_timeout,
            };
            loop {
                let read = frame::read_value_timed(
                    &mut stream,
                    &mut frame_buf,
                    config.max_frame_bytes,
                    timeouts,
                );
                let frame = tokio::select! {
                    biased;
                    _ = shutdown.changed() => return Ok(()),
                    read = read => match read {
                        Ok(MultiPeerFrame::Frame(frame)) => frame,
                        Ok(MultiPeerFrame::Keepalive) => {
                            write_value(&mut stream, &mut buf, &PeerReply::KeepaliveAck).await?;
                            continue;
                        }
                        Err(e) if went_away(&e) => return Ok(()),
                        Err(e) => return Err(format!("bad input from node {from}: {e}")),
                    },
                };
                if frame.from != from {
                    return Err(format!(
                        "a frame claims sender {} on node {from}'s connection",
                        frame.from
                    ));
                }
                if events.send(HostEvent::Frame(frame)).await.is_err() {
                    return Ok(());
                }
            }
        }
        HelloRole::Client => loop {
            let timeouts = FrameTimeouts {
                idle: config.client_idle_timeout,
                frame: config.frame_timeout,
            };
            let read = frame::read_value_timed(
                &mut stream,
                &mut frame_buf,
                config.max_frame_bytes,
                timeouts,
            );
            let request: GroupRequest = tokio::select! {
                biased;
                _ = shutdown.changed() => return Ok(()),
                read = read => match read {
                    Ok(request) => request,
                    Err(e) if went_away(&e) => return Ok(()),
                    Err(e) => return Err(format!("bad client input: {e}")),
                },
            };
            let (reply, answer) = oneshot::channel();
            let event = HostEvent::Request {
                group: request.group,
                op: request.request,
                reply,
            };
            let response = if events.send(event).await.is_err() {
                ClientResponse::Error("server is shutting down".to_string())
            } else {
                answer.await.unwrap_or(ClientResponse::Unknown)
            };
            write_value(&mut stream, &mut buf, &response).await?;
        },
    }
}
