//! A client of a multi-group cluster that routes each request to its
//! group's leader.
//!
//! It keeps, per group, the node that last answered as its leader (a
//! bounded cache), sends there first, follows the redirects
//! ([`ClientResponse::NotLeader`]) the servers answer with, and retries a
//! bounded number of times. One connection per node, opened on first use
//! and dropped after a failure; requests on a client are one at a time
//! (a caller that wants many in flight runs many clients, as the benches
//! do, one per active group).
//!
//! ## What is retried
//!
//! A command carries no client session (the multi-group host applies
//! `GroupOp::Command` bytes as they are), so a command is retried only
//! when it was certainly not applied: refused as not the leader or busy,
//! or not written to any connection. A command written whose answer was
//! lost, or answered [`ClientResponse::Unknown`], ends the call with
//! [`RoutingError::Unknown`]: the caller, who knows whether its command
//! may be applied twice, decides. Reads change nothing and are retried
//! in every case.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;

use crate::multi::GroupId;
use crate::tokio::client::ErrorClass;
use crate::tokio::frame::{self, DEFAULT_MAX_FRAME_BYTES};
use crate::tokio::tls::TlsConfig;
use crate::tokio::transport::{self, BoxStream};
use crate::tokio::wire::{ClientResponse, Hello, HelloRole};
use crate::NodeId;

use super::wire::{GroupOp, GroupRequest};

/// Most nodes a [`RoutingClient`] may be given.
pub const SERVERS_MAX: usize = 1_024;

/// Options of a [`RoutingClient`].
#[derive(Clone, Debug)]
pub struct RoutingConfig {
    /// The cluster's name, checked by every server in the handshake.
    pub cluster_id: String,
    /// Every node's client address (at most [`SERVERS_MAX`]).
    pub servers: BTreeMap<NodeId, String>,
    /// Most attempts per call, redirects included. At least 1.
    pub attempts_max: u32,
    /// Wait after an attempt that found no leader, doubled after each
    /// such attempt up to `backoff_max`: an election takes a few ticks.
    pub backoff: Duration,
    /// Longest wait between attempts.
    pub backoff_max: Duration,
    /// Longest wait for a connection and its handshake.
    pub connect_timeout: Duration,
    /// Longest wait for one answer.
    pub request_timeout: Duration,
    /// Most groups whose leader is remembered; past it, the lowest
    /// group's entry is forgotten (the cache is a hint, never needed).
    pub leaders_cached_max: usize,
    /// TLS, when the servers use it.
    pub tls: Option<Arc<TlsConfig>>,
}

impl RoutingConfig {
    /// `servers` of cluster `cluster_id`, with 32 attempts per call,
    /// backoff 5 ms to 200 ms, 2 s to connect, 10 s per answer, and up to
    /// 1,000,000 leaders remembered.
    pub fn new(cluster_id: impl Into<String>, servers: BTreeMap<NodeId, String>) -> Self {
        RoutingConfig {
            cluster_id: cluster_id.into(),
            servers,
            attempts_max: 32,
            backoff: Duration::from_millis(5),
            backoff_max: Duration::from_millis(200),
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
            leaders_cached_max: 1_000_000,
            tls: None,
        }
    }
}

/// Why a [`RoutingClient`] call did not get an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoutingError {
    /// The configuration cannot work.
    #[error("routing client misconfigured: {0}")]
    Config(String),
    /// Every attempt failed or found no leader.
    #[error("group {group}: no answer after {attempts} attempts; last: {last}")]
    Exhausted {
        /// The group.
        group: GroupId,
        /// Attempts made.
        attempts: u32,
        /// What the last attempt found.
        last: String,
    },
    /// A command was sent but whether it was applied is unknown (its
    /// answer was lost, or the leader changed while it was in flight).
    #[error("group {group}: outcome of the command sent to node {node} is unknown: {reason}")]
    Unknown {
        /// The group.
        group: GroupId,
        /// The node it was sent to.
        node: NodeId,
        /// What happened.
        reason: String,
    },
    /// A server refused the request for good (a group it does not host,
    /// another cluster's name, TLS on one side only).
    #[error("group {group}: refused by node {node}: {message}")]
    Refused {
        /// The group.
        group: GroupId,
        /// The node that refused.
        node: NodeId,
        /// Its reason.
        message: String,
    },
}

/// Counters of a [`RoutingClient`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RoutingStats {
    /// Calls answered.
    pub calls_done: u64,
    /// Attempts made (each call makes at least one).
    pub attempts: u64,
    /// Redirects followed to a named leader.
    pub redirects: u64,
    /// Calls sent first to a leader from the cache.
    pub cache_hits: u64,
    /// Connections opened.
    pub connects: u64,
}

/// Routes requests by group to the group's leader (see the
/// [module documentation](self)).
pub struct RoutingClient {
    config: RoutingConfig,
    /// The node that last answered as each group's leader.
    leaders: BTreeMap<GroupId, NodeId>,
    connections: BTreeMap<NodeId, BoxStream>,
    buf: Vec<u8>,
    stats: RoutingStats,
}

/// What one attempt found.
enum Attempt {
    Done(Bytes),
    /// Try `Some(node)` next, or any other node.
    Elsewhere(Option<NodeId>, String),
    /// Wait, then try again (the same node or another).
    Later(String),
    /// Sent; outcome unknown.
    Unknown(String),
    Refused(String),
}

impl RoutingClient {
    /// A client of `config.servers`; connects on first use.
    pub fn new(config: RoutingConfig) -> Result<Self, RoutingError> {
        if config.servers.is_empty() || config.servers.len() > SERVERS_MAX {
            return Err(RoutingError::Config(format!(
                "{} servers given; 1 to {SERVERS_MAX} expected",
                config.servers.len()
            )));
        }
        if config.attempts_max == 0 || config.leaders_cached_max == 0 {
            return Err(RoutingError::Config(
                "attempts_max and leaders_cached_max must be at least 1".to_string(),
            ));
        }
        Ok(RoutingClient {
            config,
            leaders: BTreeMap::new(),
            connections: BTreeMap::new(),
            buf: Vec::new(),
            stats: RoutingStats::default(),
        })
    }

    /// Counters so far.
    pub fn stats(&self) -> RoutingStats {
        self.stats
    }

    /// The node remembered as `group`'s leader.
    pub fn cached_leader(&self, group: GroupId) -> Option<NodeId> {
        self.leaders.get(&group).copied()
    }

    /// Sends `command` to `group`'s leader; its state machine's answer.
    pub async fn command(&mut self, group: GroupId, command: Bytes) -> Result<Bytes, RoutingError> {
        self.call(group, GroupOp::Command(command)).await
    }

    /// Sends `op` to `group`'s leader, following redirects, retrying as
    /// the [module documentation](self) says.
    pub async fn call(&mut self, group: GroupId, op: GroupOp) -> Result<Bytes, RoutingError> {
        let retry_unknown = matches!(op, GroupOp::Read { .. });
        let request = GroupRequest { group, request: op };
        let mut target = match self.leaders.get(&group) {
            Some(node) => {
                self.stats.cache_hits += 1;
                *node
            }
            None => *self.config.servers.keys().next().expect("servers checked"),
        };
        let mut backoff = self.config.backoff;
        let mut last = String::new();
        for attempt in 1..=self.config.attempts_max {
            self.stats.attempts += 1;
            match self.attempt(target, &request).await {
                Attempt::Done(answer) => {
                    self.remember(group, target);
                    self.stats.calls_done += 1;
                    return Ok(answer);
                }
                Attempt::Refused(message) => {
                    return Err(RoutingError::Refused {
                        group,
                        node: target,
                        message,
                    })
                }
                Attempt::Unknown(reason) if !retry_unknown => {
                    self.leaders.remove(&group);
                    return Err(RoutingError::Unknown {
                        group,
                        node: target,
                        reason,
                    });
                }
                Attempt::Unknown(reason) | Attempt::Later(reason) => {
                    last = reason;
                    self.leaders.remove(&group);
                    target = self.next_after(target);
                }
                Attempt::Elsewhere(Some(leader), reason) if leader != target => {
                    // A redirect to a named leader is followed at once:
                    // it costs no election wait.
                    last = reason;
                    self.stats.redirects += 1;
                    self.remember(group, leader);
                    target = leader;
                    continue;
                }
                Attempt::Elsewhere(_, reason) => {
                    last = reason;
                    self.leaders.remove(&group);
                    target = self.next_after(target);
                }
            }
            if attempt < self.config.attempts_max {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(self.config.backoff_max);
            }
        }
        Err(RoutingError::Exhausted {
            group,
            attempts: self.config.attempts_max,
            last,
        })
    }

    /// The node after `node` in id order, wrapping.
    fn next_after(&self, node: NodeId) -> NodeId {
        let servers = &self.config.servers;
        servers
            .range(node + 1..)
            .next()
            .or_else(|| servers.iter().next())
            .map(|(id, _)| *id)
            .expect("servers checked")
    }

    fn remember(&mut self, group: GroupId, node: NodeId) {
        if !self.leaders.contains_key(&group)
            && self.leaders.len() >= self.config.leaders_cached_max
        {
            self.leaders.pop_first();
        }
        self.leaders.insert(group, node);
        assert!(self.leaders.len() <= self.config.leaders_cached_max);
    }

    async fn attempt(&mut self, node: NodeId, request: &GroupRequest) -> Attempt {
        let Some(addr) = self.config.servers.get(&node).cloned() else {
            return Attempt::Elsewhere(None, format!("node {node} has no known address"));
        };
        if !self.connections.contains_key(&node) {
            let hello = Hello {
                cluster_id: self.config.cluster_id.clone(),
                role: HelloRole::Client,
            };
            let connected = transport::connect(
                &addr,
                &hello,
                DEFAULT_MAX_FRAME_BYTES,
                self.config.connect_timeout,
                self.config.tls.as_deref(),
            )
            .await;
            match connected {
                Ok((stream, _)) => {
                    self.stats.connects += 1;
                    self.connections.insert(node, stream);
                }
                Err(e) if e.class == ErrorClass::Permanent => return Attempt::Refused(e.message),
                Err(e) => return Attempt::Later(e.message),
            }
        }
        let stream = self.connections.get_mut(&node).expect("connected above");
        self.buf.clear();
        if let Err(e) = frame::encode_frame(request, &mut self.buf) {
            return Attempt::Refused(format!("request cannot be encoded: {e}"));
        }
        // A frame written in part cannot be decoded by the server, so a
        // failed write applied nothing.
        let written = async {
            stream.write_all(&self.buf).await?;
            stream.flush().await
        };
        let sent = tokio::time::timeout(self.config.request_timeout, written).await;
        if !matches!(sent, Ok(Ok(()))) {
            self.connections.remove(&node);
            return Attempt::Later(format!("sending to node {node} at {addr} failed"));
        }
        let answer = tokio::time::timeout(
            self.config.request_timeout,
            frame::read_value::<ClientResponse, _>(stream, &mut self.buf, DEFAULT_MAX_FRAME_BYTES),
        )
        .await;
        let response = match answer {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => {
                self.connections.remove(&node);
                return Attempt::Unknown(format!("node {node} at {addr}: {e}"));
            }
            Err(_) => {
                self.connections.remove(&node);
                return Attempt::Unknown(format!(
                    "no answer from node {node} at {addr} within {:?}",
                    self.config.request_timeout
                ));
            }
        };
        match response {
            ClientResponse::Done(answer) => Attempt::Done(answer),
            ClientResponse::NotLeader { leader_hint, .. } => Attempt::Elsewhere(
                leader_hint,
                format!("node {node} is not the leader (hint {leader_hint:?})"),
            ),
            ClientResponse::Busy => Attempt::Later(format!("node {node} is busy")),
            ClientResponse::Unknown => Attempt::Unknown(format!(
                "node {node} lost track of it (leadership changed in flight)"
            )),
            ClientResponse::Error(message) => Attempt::Refused(message),
            other => Attempt::Refused(format!("unexpected answer {other:?}")),
        }
    }
}
