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
//! ## Learning from failure
//!
//! A node that could not be reached (no connection within
//! `connect_timeout`, a broken or silent connection) is avoided for a
//! while, for every group alike: from [`RoutingConfig::avoid_min`],
//! doubling with each further failure up to [`RoutingConfig::avoid_max`],
//! cleared by its next answer. A group with no leader cached is first
//! sent to the lowest node id that is not avoided (when every node is,
//! the one whose avoidance ends first), as is a group whose cached
//! leader is avoided, and a retry goes to the next node in id order that
//! is not avoided: so while node 1 is down only
//! the first request of the client waits for its connect timeout, not
//! the first request of every group. Avoidance only orders the nodes the
//! client picks itself: a redirect naming a group's leader is followed
//! at once, avoided or not. A redirect that also carries the leader's
//! address teaches the client a node it was not given.
//!
//! ## What is retried
//!
//! A command sent here carries no client session (the host hands
//! `GroupOp::Command` bytes to the group's state machine as they are;
//! [`super::session_client`] adds one), so a command is retried only
//! when it was certainly not applied: refused as not the leader or busy,
//! or not written to any connection. A command written whose answer was
//! lost, or answered [`ClientResponse::Unknown`], ends the call with
//! [`RoutingError::Unknown`]: the caller, who knows whether its command
//! may be applied twice, decides. Reads change nothing and are retried
//! in every case.
//!
//! A server that does not host the group asked for (a server that joined
//! later, or one a replace is moving the group to or from) refuses it;
//! the next server is tried, and only when every server refused so is
//! the call refused ([`RoutingError::Refused`]: the group exists
//! nowhere this client knows).
//!
//! ## Addresses without an id
//!
//! A client is given addresses; [`node_ids`] learns the ids of those that
//! answer, and the others (a server still starting) are kept as
//! [`RoutingConfig::unresolved`]. When a call has tried every node it
//! knows (or every one it knows refused the group as not hosted), it
//! asks those addresses again and goes on with the nodes it learns:
//! a client that met one server at its start is not stuck with that one
//! when it leaves the group. When every known node refused the group,
//! the addresses are asked even if they failed lately, and while some
//! stay unresolved the call goes on retrying until its attempts run out
//! rather than being refused.
//!
//! ## Follower reads
//!
//! A read on [`ReadPath::Follower`](concord::ReadPath::Follower) is served
//! by any member that has applied its leader's read index, so it is not
//! sent to the group's leader: each goes to the next node in id order
//! after the one the previous follower read went to (not avoided), which
//! spreads the reads over the servers. A node that cannot serve it (no
//! leader known, a witness) redirects or refuses and the next is tried.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;

use super::shared_connections::{PipeError, SharedConnections};
use crate::client::ErrorClass;
use crate::frame::{self, DEFAULT_MAX_FRAME_BYTES};
use crate::tls::TlsConfig;
use crate::transport::{self, BoxStream, StreamWrapper};
use crate::wire::{ClientResponse, Hello, HelloRole};
use concord::multi::GroupId;
use concord::NodeId;

use super::wire::{is_not_hosted, GroupOp, GroupRequest};

/// Most nodes a [`RoutingClient`] may be given.
pub const SERVERS_MAX: usize = 1_024;

/// Options of a [`RoutingClient`].
#[derive(Clone, Debug)]
pub struct RoutingConfig {
    /// The cluster's name, checked by every server in the handshake.
    pub cluster_id: String,
    /// Every node's client address (at most [`SERVERS_MAX`]).
    pub servers: BTreeMap<NodeId, String>,
    /// Addresses given whose node id is not known yet: they did not
    /// answer [`node_ids`] when the client was made (a server still
    /// starting). Asked again, as a last resort, when a call has found no
    /// known node that serves its group (see the
    /// [module documentation](self#addresses-without-an-id)). Empty by
    /// default; [`unresolved_addresses`] computes it.
    pub unresolved: Vec<String>,
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
    /// How long a node that could not be reached is avoided after its
    /// first failure, for every group; each further failure doubles it.
    pub avoid_min: Duration,
    /// Longest time a failing node is avoided before it is tried again.
    pub avoid_max: Duration,
    /// Wraps every connection the client opens, after the handshake,
    /// given the node it reaches: the hook through which tests inject
    /// connection-level faults ([`ConnectionResetter`](crate::fault::ConnectionResetter)).
    /// `None` by default.
    pub stream_wrapper: Option<StreamWrapper>,
    /// Connections shared with other clients, requests pipelined on them
    /// (see [`SharedConnections`]); `None` (the default): this client's
    /// own connections, one request at a time on each.
    pub shared: Option<SharedConnections>,
    /// Planted mistake for the madsim sweep (`--bug
    /// leader-cached-forever`): a group's first cached leader is tried on
    /// every attempt of every call, whatever the answers say, and never
    /// replaced.
    #[cfg(feature = "planted-bugs")]
    #[doc(hidden)]
    pub planted_leader_cached_forever: bool,
}

impl RoutingConfig {
    /// `servers` of cluster `cluster_id`, with 32 attempts per call,
    /// backoff 5 ms to 200 ms, 2 s to connect, 10 s per answer, up to
    /// 1,000,000 leaders remembered, and a node that failed avoided for
    /// 1 s, doubling up to 30 s.
    pub fn new(cluster_id: impl Into<String>, servers: BTreeMap<NodeId, String>) -> Self {
        RoutingConfig {
            cluster_id: cluster_id.into(),
            servers,
            unresolved: Vec::new(),
            attempts_max: 32,
            backoff: Duration::from_millis(5),
            backoff_max: Duration::from_millis(200),
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
            leaders_cached_max: 1_000_000,
            tls: None,
            avoid_min: Duration::from_secs(1),
            avoid_max: Duration::from_secs(30),
            stream_wrapper: None,
            shared: None,
            #[cfg(feature = "planted-bugs")]
            planted_leader_cached_forever: false,
        }
    }

    /// Whether the planted caching mistake is on.
    fn leader_cached_forever(&self) -> bool {
        #[cfg(feature = "planted-bugs")]
        {
            self.planted_leader_cached_forever
        }
        #[cfg(not(feature = "planted-bugs"))]
        {
            false
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
    /// The servers refuse this client as configured (another cluster's
    /// name, TLS on one side only, a certificate they do not trust):
    /// nothing was sent, and trying again cannot help.
    #[error("{reason}")]
    Rejected {
        /// The node that refused.
        node: NodeId,
        /// What it said or showed, with what to change.
        reason: String,
    },
    /// A server refused the request for good (a group it does not host,
    /// a request it cannot serve).
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
    /// Connection attempts that failed (no connection or no handshake
    /// within `connect_timeout`, or a refusal).
    pub connect_failures: u64,
    /// Nodes learnt from a redirect's leader address (not given in
    /// [`RoutingConfig::servers`]).
    pub nodes_learnt: u64,
}

/// What the client remembers of one node's failures.
#[derive(Clone, Copy, Debug, Default)]
struct Health {
    /// Not picked before this time (unless every node is avoided).
    avoid_until: Option<tokio::time::Instant>,
    /// The last avoidance period (zero: the last attempt was answered).
    avoid: Duration,
}

impl Health {
    /// Another failure: avoided from now for `min`, or twice as long as
    /// last time, up to `max`.
    fn failed(&mut self, min: Duration, max: Duration) {
        self.avoid = if self.avoid.is_zero() {
            min
        } else {
            (self.avoid * 2).min(max)
        };
        self.avoid_until = Some(tokio::time::Instant::now() + self.avoid);
    }
}

/// Routes requests by group to the group's leader (see the
/// [module documentation](self)).
pub struct RoutingClient {
    config: RoutingConfig,
    /// The node that last answered as each group's leader.
    leaders: BTreeMap<GroupId, NodeId>,
    connections: BTreeMap<NodeId, BoxStream>,
    /// Failures of the nodes that failed lately, for every group.
    health: BTreeMap<NodeId, Health>,
    buf: Vec<u8>,
    stats: RoutingStats,
    /// The node the last follower read went to first.
    read_cursor: Option<NodeId>,
    /// When the unresolved addresses failed to answer last: they are not
    /// asked again before it ends (doubling like a node's avoidance).
    unresolved_health: Health,
}

/// What one attempt found.
enum Attempt {
    Done(Bytes),
    /// Try `Some(node)` next (at the address, if the redirect named one),
    /// or any other node.
    Elsewhere(Option<(NodeId, Option<String>)>, String),
    /// Wait, then try again (the same node or another).
    Later(String),
    /// Sent; outcome unknown.
    Unknown(String),
    Refused(String),
    /// The node refuses this client as configured (nothing sent).
    Rejected(String),
}

impl Attempt {
    /// What the attempt found, in words.
    fn reason(&self) -> &str {
        match self {
            Attempt::Done(_) => "answered",
            Attempt::Elsewhere(_, reason)
            | Attempt::Later(reason)
            | Attempt::Unknown(reason)
            | Attempt::Refused(reason)
            | Attempt::Rejected(reason) => reason,
        }
    }
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
            health: BTreeMap::new(),
            buf: Vec::new(),
            stats: RoutingStats::default(),
            read_cursor: None,
            unresolved_health: Health::default(),
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

    /// Whether `node` failed lately and is still avoided (see the
    /// [module documentation](self#learning-from-failure)).
    pub fn avoids(&self, node: NodeId) -> bool {
        self.avoided(node, tokio::time::Instant::now())
    }

    /// Sends `command` to `group`'s leader; its state machine's answer.
    pub async fn command(&mut self, group: GroupId, command: Bytes) -> Result<Bytes, RoutingError> {
        self.call(group, GroupOp::Command(command)).await
    }

    /// Sends `op` to `group`'s leader, following redirects, retrying as
    /// the [module documentation](self) says.
    pub async fn call(&mut self, group: GroupId, op: GroupOp) -> Result<Bytes, RoutingError> {
        let retry_unknown = matches!(op, GroupOp::Read { .. });
        let follower_read = matches!(
            op,
            GroupOp::Read {
                path: concord::ReadPath::Follower,
                ..
            }
        );
        let request = GroupRequest { group, request: op };
        // A cached leader this client failed to reach lately is not
        // tried first: the others name the group's leader now.
        let stuck = self.config.leader_cached_forever();
        let cached = self
            .leaders
            .get(&group)
            .copied()
            .filter(|node| stuck || !self.avoids(*node));
        let mut target = match cached {
            _ if follower_read => {
                let node = self.pick_from(self.read_cursor);
                self.read_cursor = Some(node);
                node
            }
            Some(node) => {
                self.stats.cache_hits += 1;
                node
            }
            None => self.pick_from(None),
        };
        let mut backoff = self.config.backoff;
        let mut last = String::new();
        let mut not_hosting: BTreeSet<NodeId> = BTreeSet::new();
        // Per node tried: attempts and what the last one found, so an
        // exhausted call says where it went (bounded by the servers).
        let mut tried: BTreeMap<NodeId, (u32, String)> = BTreeMap::new();
        for attempt in 1..=self.config.attempts_max {
            if let (true, Some(node)) = (stuck, cached) {
                // The planted mistake: always the cached leader.
                target = node;
            }
            self.stats.attempts += 1;
            let outcome = self.attempt(target, &request).await;
            if !matches!(outcome, Attempt::Done(_)) {
                let seen = tried.entry(target).or_default();
                seen.0 += 1;
                seen.1 = outcome.reason().to_string();
            }
            match outcome {
                Attempt::Done(answer) => {
                    // A follower read may be answered by a follower.
                    if !follower_read {
                        self.remember(group, target);
                    }
                    self.stats.calls_done += 1;
                    return Ok(answer);
                }
                Attempt::Refused(message) if is_not_hosted(&message) => {
                    // Another server may host it: try the next, without
                    // the backoff (this one answered at once).
                    not_hosting.insert(target);
                    if self.leaders.get(&group) == Some(&target) {
                        self.forget_leader(group);
                    }
                    let untried = |client: &Self| {
                        client
                            .config
                            .servers
                            .keys()
                            .any(|node| !not_hosting.contains(node))
                    };
                    // Every known server refused: the addresses not yet
                    // resolved are asked even while avoided, for they are
                    // now the only way to the group (a client that met one
                    // server at its start, and that server left the group).
                    if untried(self) || (self.resolve_unresolved(true).await && untried(self)) {
                        last = message;
                        target = self.next_after(target);
                        continue;
                    }
                    if self.config.unresolved.is_empty() {
                        return Err(RoutingError::Refused {
                            group,
                            node: target,
                            message,
                        });
                    }
                    // Addresses that did not answer yet may host the group
                    // (servers starting or restarting): asked again after
                    // the backoff, not refused for good.
                    last = message;
                    target = self.next_after(target);
                }
                Attempt::Refused(message) => {
                    return Err(RoutingError::Refused {
                        group,
                        node: target,
                        message,
                    })
                }
                Attempt::Rejected(reason) => {
                    return Err(RoutingError::Rejected {
                        node: target,
                        reason,
                    })
                }
                Attempt::Unknown(reason) if !retry_unknown => {
                    self.forget_leader(group);
                    return Err(RoutingError::Unknown {
                        group,
                        node: target,
                        reason,
                    });
                }
                Attempt::Unknown(reason) | Attempt::Later(reason) => {
                    last = reason;
                    self.forget_leader(group);
                    if tried.len() >= self.config.servers.len() {
                        self.resolve_unresolved(false).await;
                    }
                    target = self.next_after(target);
                }
                Attempt::Elsewhere(Some((leader, addr)), reason)
                    if leader != target && self.knows(leader, addr.as_deref()) =>
                {
                    // A redirect to a named leader is followed at once,
                    // even to a node this client avoids (the servers
                    // reach it): it costs no election wait.
                    last = reason;
                    self.stats.redirects += 1;
                    self.remember(group, leader);
                    target = leader;
                    continue;
                }
                Attempt::Elsewhere(_, reason) => {
                    last = reason;
                    self.forget_leader(group);
                    if tried.len() >= self.config.servers.len() {
                        self.resolve_unresolved(false).await;
                    }
                    target = self.next_after(target);
                }
            }
            if attempt < self.config.attempts_max {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(self.config.backoff_max);
            }
        }
        let per_node: Vec<String> = tried
            .iter()
            .map(|(node, (count, reason))| format!("node {node} ×{count} (last: {reason})"))
            .collect();
        Err(RoutingError::Exhausted {
            group,
            attempts: self.config.attempts_max,
            last: format!("{last}; tried {}", per_node.join(", ")),
        })
    }

    /// Sends `op` (a status query, a read) to `node` itself, once: no
    /// redirect followed, no retry. A node that cannot be reached is
    /// avoided as after any failure.
    pub async fn call_node(
        &mut self,
        node: NodeId,
        group: GroupId,
        op: GroupOp,
    ) -> Result<Bytes, RoutingError> {
        let request = GroupRequest { group, request: op };
        self.stats.attempts += 1;
        match self.attempt(node, &request).await {
            Attempt::Done(answer) => {
                self.stats.calls_done += 1;
                Ok(answer)
            }
            Attempt::Refused(message) => Err(RoutingError::Refused {
                group,
                node,
                message,
            }),
            Attempt::Rejected(reason) => Err(RoutingError::Rejected { node, reason }),
            Attempt::Unknown(reason) | Attempt::Later(reason) | Attempt::Elsewhere(_, reason) => {
                Err(RoutingError::Exhausted {
                    group,
                    attempts: 1,
                    last: reason,
                })
            }
        }
    }

    /// The client address of `node`, given or learnt from a redirect.
    pub fn address(&self, node: NodeId) -> Option<&str> {
        self.config.servers.get(&node).map(String::as_str)
    }

    /// Teaches this client `node`'s address (kept if it knows one
    /// already); false when it holds [`SERVERS_MAX`] nodes.
    pub fn learn(&mut self, node: NodeId, addr: &str) -> bool {
        self.knows(node, Some(addr))
    }

    /// The nodes this client knows, with their addresses, in id order.
    pub fn servers(&self) -> &BTreeMap<NodeId, String> {
        &self.config.servers
    }

    /// The node after `node` in id order, wrapping, that is not avoided
    /// (see [`pick_from`](Self::pick_from)).
    fn next_after(&self, node: NodeId) -> NodeId {
        self.pick_from(Some(node))
    }

    /// The first node in id order after `after` (from the lowest without
    /// it), wrapping, that is not avoided; when every node is, the one
    /// whose avoidance ends first.
    fn pick_from(&self, after: Option<NodeId>) -> NodeId {
        let servers = &self.config.servers;
        let start = after.and_then(|node| node.checked_add(1)).unwrap_or(0);
        let order = servers.range(start..).chain(servers.range(..start));
        let now = tokio::time::Instant::now();
        let mut soonest: Option<(tokio::time::Instant, NodeId)> = None;
        for (&node, _) in order {
            match self.health.get(&node).and_then(|h| h.avoid_until) {
                Some(until) if until > now => {
                    if soonest.is_none_or(|(t, _)| until < t) {
                        soonest = Some((until, node));
                    }
                }
                _ => return node,
            }
        }
        soonest.map(|(_, node)| node).expect("servers checked")
    }

    /// Whether `node` is avoided at `now`.
    fn avoided(&self, node: NodeId, now: tokio::time::Instant) -> bool {
        self.health
            .get(&node)
            .and_then(|h| h.avoid_until)
            .is_some_and(|until| until > now)
    }

    /// Node `node` could not be reached: avoid it, twice as long as last
    /// time.
    fn note_failure(&mut self, node: NodeId) {
        let (min, max) = (self.config.avoid_min, self.config.avoid_max);
        self.health.entry(node).or_default().failed(min, max);
    }

    /// Node `node` answered: no longer avoided.
    fn note_answer(&mut self, node: NodeId) {
        self.health.remove(&node);
    }

    /// Whether `node` has an address: a known one, or `addr` from a
    /// redirect (then learnt, up to [`SERVERS_MAX`] nodes).
    fn knows(&mut self, node: NodeId, addr: Option<&str>) -> bool {
        if self.config.servers.contains_key(&node) {
            return true;
        }
        match addr {
            Some(addr) if self.config.servers.len() < SERVERS_MAX => {
                self.config.servers.insert(node, addr.to_string());
                self.stats.nodes_learnt += 1;
                true
            }
            _ => false,
        }
    }

    /// Asks the [unresolved](RoutingConfig::unresolved) addresses their
    /// node ids and learns those that answer; true when it learnt a node.
    /// Unless `even_if_avoided`, not asked again before the avoidance of
    /// the last failed asking ends: an address that never answers costs
    /// one connect timeout per avoidance period, not one per call.
    async fn resolve_unresolved(&mut self, even_if_avoided: bool) -> bool {
        if self.config.unresolved.is_empty() {
            return false;
        }
        let now = tokio::time::Instant::now();
        if !even_if_avoided
            && self
                .unresolved_health
                .avoid_until
                .is_some_and(|until| until > now)
        {
            return false;
        }
        let found = node_ids(
            &self.config.unresolved,
            &self.config.cluster_id,
            self.config.tls.as_deref(),
            self.config.connect_timeout,
        )
        .await;
        let Ok(found) = found else {
            let (min, max) = (self.config.avoid_min, self.config.avoid_max);
            self.unresolved_health.failed(min, max);
            return false;
        };
        self.unresolved_health = Health::default();
        let mut learnt = false;
        for (node, addr) in &found {
            learnt |= !self.config.servers.contains_key(node) && self.knows(*node, Some(addr));
        }
        self.config
            .unresolved
            .retain(|addr| !found.values().any(|answered| answered == addr));
        learnt
    }

    /// Forgets `group`'s cached leader (it answered that it is not, or
    /// could not be reached).
    fn forget_leader(&mut self, group: GroupId) {
        if !self.config.leader_cached_forever() {
            self.leaders.remove(&group);
        }
    }

    fn remember(&mut self, group: GroupId, node: NodeId) {
        if self.config.leader_cached_forever() && self.leaders.contains_key(&group) {
            return;
        }
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
        if let Some(shared) = self.config.shared.clone() {
            return self.attempt_shared(node, &addr, request, &shared).await;
        }
        if !self.connections.contains_key(&node) {
            match self.dial(node, &addr).await {
                Ok(stream) => {
                    self.connections.insert(node, stream);
                }
                Err(attempt) => return attempt,
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
            self.note_failure(node);
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
                self.note_failure(node);
                return Attempt::Unknown(format!("node {node} at {addr}: {e}"));
            }
            Err(_) => {
                self.connections.remove(&node);
                self.note_failure(node);
                return Attempt::Unknown(format!(
                    "no answer from node {node} at {addr} within {:?}",
                    self.config.request_timeout
                ));
            }
        };
        self.judge(node, response)
    }

    /// [`attempt`](Self::attempt) on the connection to `node` that this
    /// client shares with others (see [`SharedConnections`]).
    async fn attempt_shared(
        &mut self,
        node: NodeId,
        addr: &str,
        request: &GroupRequest,
        shared: &SharedConnections,
    ) -> Attempt {
        let pipe = match shared.get(node) {
            Some(pipe) => pipe,
            None => match self.dial(node, addr).await {
                Ok(stream) => shared.adopt(node, stream),
                Err(attempt) => return attempt,
            },
        };
        let mut frame = Vec::new();
        if let Err(e) = frame::encode_frame(request, &mut frame) {
            return Attempt::Refused(format!("request cannot be encoded: {e}"));
        }
        match pipe.call(frame, self.config.request_timeout).await {
            Ok(response) => self.judge(node, response),
            Err(PipeError::NotSent) => {
                shared.forget(node, &pipe);
                self.note_failure(node);
                Attempt::Later(format!("sending to node {node} at {addr} failed"))
            }
            Err(PipeError::Lost(why)) => {
                shared.forget(node, &pipe);
                self.note_failure(node);
                Attempt::Unknown(format!("node {node} at {addr}: {why}"))
            }
        }
    }

    /// Opens a connection to `node` at `addr` and completes the
    /// handshake; what the attempt found if that failed.
    async fn dial(&mut self, node: NodeId, addr: &str) -> Result<BoxStream, Attempt> {
        let hello = Hello {
            cluster_id: self.config.cluster_id.clone(),
            role: HelloRole::Client,
        };
        let connected = transport::connect(
            addr,
            &hello,
            DEFAULT_MAX_FRAME_BYTES,
            self.config.connect_timeout,
            self.config.tls.as_deref(),
        )
        .await;
        match connected {
            Ok((stream, answered_as)) if answered_as == node => {
                self.stats.connects += 1;
                Ok(match &self.config.stream_wrapper {
                    Some(wrap) => (wrap.0)(node, stream),
                    None => stream,
                })
            }
            Ok((_, answered_as)) => {
                self.stats.connect_failures += 1;
                self.note_failure(node);
                Err(Attempt::Later(format!(
                    "{addr}, the address of node {node}, answered as node {answered_as}"
                )))
            }
            Err(e) => {
                self.stats.connect_failures += 1;
                self.note_failure(node);
                if e.class == ErrorClass::Permanent {
                    return Err(Attempt::Rejected(e.message));
                }
                Err(Attempt::Later(e.message))
            }
        }
    }

    /// What `node`'s answer says about the attempt.
    fn judge(&mut self, node: NodeId, response: ClientResponse) -> Attempt {
        self.note_answer(node);
        match response {
            ClientResponse::Done(answer) => Attempt::Done(answer),
            ClientResponse::NotLeader {
                leader_hint,
                leader_addr,
            } => Attempt::Elsewhere(
                leader_hint.map(|leader| (leader, leader_addr)),
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

/// Least time [`node_ids`] waits for the other servers once the first
/// answered.
pub const NODE_IDS_GRACE_MIN: Duration = Duration::from_millis(50);

/// The addresses of `given` that [`node_ids`] did not `found`: a
/// [`RoutingConfig::unresolved`].
pub fn unresolved_addresses(given: &[String], found: &BTreeMap<NodeId, String>) -> Vec<String> {
    given
        .iter()
        .filter(|addr| !found.values().any(|answered| answered == *addr))
        .cloned()
        .collect()
}

/// The node id of each server in `addrs` that answers the handshake
/// (a cluster's client addresses, as a person lists them),
/// for a [`RoutingConfig`]: redirects name nodes by id.
///
/// Every server is asked at once. Once the fastest has answered, after
/// `t`, the others get as long again, and at least
/// [`NODE_IDS_GRACE_MIN`]: so one stopped or unreachable server costs
/// that, not `timeout` (within which the first answer must come). A
/// server left out is still reached when a redirect names it (the
/// redirect carries its address). An error when none answers, or two
/// addresses answer as one node.
///
/// Lives with the routing client because every client of a cluster needs
/// it: a person gives addresses, redirects name node ids.
pub async fn node_ids(
    addrs: &[String],
    cluster_id: &str,
    tls: Option<&TlsConfig>,
    timeout: Duration,
) -> Result<BTreeMap<NodeId, String>, NodeIdsError> {
    type Handshake<'a> = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<NodeId, transport::ConnectError>> + Send + 'a>,
    >;
    let hello = Hello {
        cluster_id: cluster_id.to_string(),
        role: HelloRole::Client,
    };
    let hello = &hello;
    let started = tokio::time::Instant::now();
    let mut pending: Vec<Option<Handshake<'_>>> = addrs
        .iter()
        .map(|addr| {
            let handshake = async move {
                transport::connect(addr, hello, DEFAULT_MAX_FRAME_BYTES, timeout, tls)
                    .await
                    .map(|(_, id)| id)
            };
            Some(Box::pin(handshake) as Handshake<'_>)
        })
        .collect();
    let mut results: Vec<Option<Result<NodeId, transport::ConnectError>>> = vec![None; addrs.len()];
    // Set once a server answered: when the others stop being waited for.
    let mut deadline: Option<tokio::time::Instant> = None;
    while pending.iter().any(Option::is_some) {
        // Polls every handshake still under way; ready once one ended.
        let progress = std::future::poll_fn(|cx| {
            let mut ended = false;
            for (slot, result) in pending.iter_mut().zip(results.iter_mut()) {
                if let Some(handshake) = slot {
                    if let std::task::Poll::Ready(outcome) = handshake.as_mut().poll(cx) {
                        *result = Some(outcome);
                        *slot = None;
                        ended = true;
                    }
                }
            }
            if ended {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        });
        match deadline {
            Some(deadline) => {
                // `timeout`, not `timeout_at`: madsim's tokio has only the
                // former.
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if tokio::time::timeout(left, progress).await.is_err() {
                    break;
                }
            }
            None => progress.await,
        }
        if deadline.is_none() && results.iter().flatten().any(Result::is_ok) {
            let fastest = started.elapsed();
            deadline = Some(tokio::time::Instant::now() + fastest.max(NODE_IDS_GRACE_MIN));
        }
    }
    let mut ids = BTreeMap::new();
    let mut problems = Vec::new();
    // Every server refused this client as configured: nothing else can
    // answer it.
    let mut rejection: Option<String> = None;
    let mut every_refusal_permanent = true;
    for (addr, result) in addrs.iter().zip(results) {
        match result {
            Some(Ok(id)) => {
                if let Some(other) = ids.insert(id, addr.clone()) {
                    return Err(NodeIdsError::Duplicate(format!(
                        "{other} and {addr} both answer as node {id}; list each server once"
                    )));
                }
            }
            Some(Err(error)) => {
                if error.class == ErrorClass::Permanent {
                    rejection = Some(error.message.clone());
                } else {
                    every_refusal_permanent = false;
                }
                problems.push(format!("{addr}: {}", error.message));
            }
            None => {
                every_refusal_permanent = false;
                problems.push(format!("{addr}: slower than the others to answer"));
            }
        }
    }
    if ids.is_empty() {
        return Err(match rejection {
            Some(reason) if every_refusal_permanent => NodeIdsError::Rejected(reason),
            _ => NodeIdsError::Unreachable {
                problems: format!("no server answered: {}", problems.join("; ")),
                rejection,
            },
        });
    }
    Ok(ids)
}

/// Why [`node_ids`] learnt no node id.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NodeIdsError {
    /// Every server refused this client as configured (TLS on one side
    /// only, another cluster's name, an untrusted certificate): the
    /// last one's words, with what to change.
    #[error("{0}")]
    Rejected(String),
    /// No server answered in time (each one's problem listed).
    #[error("{problems}")]
    Unreachable {
        /// Each server's problem.
        problems: String,
        /// A refusal of this client as configured by one of them, while
        /// the others could not be reached.
        rejection: Option<String>,
    },
    /// Two addresses answered as one node.
    #[error("{0}")]
    Duplicate(String),
}
