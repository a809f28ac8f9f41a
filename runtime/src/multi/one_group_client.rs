//! The client of a cluster of one group, on the multi-group wire: writes
//! applied once, reads on any path, a server's status, the leader's
//! address, built on
//! [`SessionClient`] and [`RoutingClient`] with every request naming group
//! [`GROUP`].
//!
//! It is given the servers' addresses, as a person lists them; the
//! routing client names nodes by id, so the first call asks every server
//! for its id in the handshake ([`node_ids`]), retried like any attempt
//! while no server answers. A server that did not answer then is still
//! reached when a redirect names it (the redirect carries its address).
//!
//! Errors are [`ClientError`]s with the same classes as `Client`'s: a
//! write whose answer was lost is sent again in its session, so
//! [`ClientError::RetriesExhausted`] and [`ClientError::SessionExpired`]
//! are the only "may have been applied" outcomes, and a refusal of this
//! client as configured (TLS on one side only, another cluster's name) is
//! [`ClientError::Rejected`] at once.

use bytes::Bytes;
use concord::multi::GroupId;
use concord::session::ClientId;
use concord::NodeId;
use concord::ReadPath;

use super::admin::{AdminAnswer, AdminRequest, GroupMembers};
use super::groups_status::{StatusAnswer, StatusQuery};
use super::routing_client::{
    node_ids, unresolved_addresses, NodeIdsError, RoutingClient, RoutingConfig, RoutingError,
};
use super::session_client::{SessionClient, SessionConfig, SessionError};
use super::wire::GroupOp;
use crate::client::{ClientConfig, ClientError};
use crate::status::NodeStatus;

/// The group a one-group cluster serves (`concord-node` without
/// `--groups`, or with `--groups 1`).
pub const GROUP: GroupId = 1;

/// Groups whose leader the routing client remembers: one, and the
/// catalog's.
const LEADERS_CACHED_MAX: usize = 4;

/// A client of a one-group cluster (see the [module documentation](self)).
pub struct OneGroupClient {
    config: ClientConfig,
    /// Built once a server told its node id.
    sessions: Option<SessionClient>,
    /// Attempts that were retries, over the client's life.
    retries: u64,
}

impl std::fmt::Debug for OneGroupClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OneGroupClient")
            .field("servers", &self.config.servers)
            .field("leader", &self.leader())
            .field("session", &self.session())
            .finish()
    }
}

impl OneGroupClient {
    /// A client of `config.servers`; it connects on first use.
    pub fn new(config: ClientConfig) -> OneGroupClient {
        OneGroupClient {
            config,
            sessions: None,
            retries: 0,
        }
    }

    /// This client's session id, once registered.
    pub fn session(&self) -> Option<ClientId> {
        self.sessions.as_ref().and_then(|s| s.session(GROUP))
    }

    /// Attempts that were retries, over the client's life.
    pub fn retries(&self) -> u64 {
        self.retries
    }

    /// The address of the server this client takes for the leader.
    pub fn leader(&self) -> Option<&str> {
        let routing = self.sessions.as_ref()?.routing();
        routing.address(routing.cached_leader(GROUP)?)
    }

    /// Sends a state machine's own read request `query` on `path` and
    /// returns its answer.
    /// Retried freely: a read changes nothing.
    pub async fn read(&mut self, query: Bytes, path: ReadPath) -> Result<Bytes, ClientError> {
        let op = GroupOp::Read { path, query };
        let sessions = self.connected().await?;
        let before = sessions.routing().stats().attempts;
        let answer = sessions.call(GROUP, op).await;
        self.count_retries(before);
        answer.map_err(|e| from_routing(e, true))
    }

    /// Sends `command` through the log in this client's session
    /// (registered on first use), applied at most once however often it
    /// is sent again; the state machine's answer.
    pub async fn write(&mut self, command: Bytes) -> Result<Bytes, ClientError> {
        let sessions = self.connected().await?;
        let before = sessions.routing().stats().attempts;
        let answer = sessions.command(GROUP, &command).await;
        self.count_retries(before);
        answer.map_err(from_session)
    }

    /// The group's members as its leader sees them (as the server that
    /// answered sees them when the leader it names does not answer): the
    /// configuration in force, whether it is committed, each member's
    /// progress (known at the leader) and address.
    pub async fn members(&mut self) -> Result<GroupMembers, ClientError> {
        let sessions = self.connected().await?;
        let before = sessions.routing().stats().attempts;
        let list = GroupOp::Admin(AdminRequest::List);
        let answer = sessions.routing_mut().call(GROUP, list.clone()).await;
        let mut members = answer
            .map_err(|e| from_routing(e, true))
            .and_then(|bytes| decode_members(&bytes))?;
        // Any server that hosts the group answers; the leader's view is
        // the one with the members' progress.
        if let Some(leader) = members.leader.filter(|l| *l != members.answered_by) {
            let routing = sessions.routing_mut();
            if let Ok(bytes) = routing.call_node(leader, GROUP, list).await {
                if let Ok(at_leader) = decode_members(&bytes) {
                    members = at_leader;
                }
            }
        }
        self.count_retries(before);
        Ok(members)
    }

    /// Asks server number `server` (index in [`ClientConfig::servers`])
    /// for its status, once: [`ClientError::Unavailable`] if it cannot be
    /// reached, [`ClientError::Rejected`] if it refuses this client as
    /// configured.
    pub async fn status(&mut self, server: usize) -> Result<NodeStatus, ClientError> {
        let Some(addr) = self.config.servers.get(server).cloned() else {
            return Err(ClientError::NoServers);
        };
        let known = self.sessions.as_ref().and_then(|s| {
            s.routing()
                .servers()
                .iter()
                .find(|(_, a)| **a == addr)
                .map(|(id, _)| *id)
        });
        let node = match known {
            Some(node) => node,
            None => {
                let one = [addr.clone()];
                let ids = node_ids(
                    &one,
                    &self.config.cluster_id,
                    self.config.tls.as_deref(),
                    self.connect_timeout(),
                )
                .await
                .map_err(from_node_ids)?;
                let (&node, _) = ids.iter().next().expect("node_ids answers or fails");
                if let Some(sessions) = self.sessions.as_mut() {
                    sessions.routing_mut().learn(node, &addr);
                }
                node
            }
        };
        let answer = match self.sessions.as_mut() {
            Some(sessions) => {
                sessions
                    .routing_mut()
                    .call_node(node, GROUP, GroupOp::Status(StatusQuery::Node(GROUP)))
                    .await
            }
            None => {
                // No call made yet: a routing client of this server alone.
                let servers = [(node, addr.clone())].into_iter().collect();
                let mut routing = RoutingClient::new(self.routing_config(servers))
                    .map_err(|e| from_routing(e, true))?;
                refuse_many_groups(&mut routing, node).await?;
                routing
                    .call_node(node, GROUP, GroupOp::Status(StatusQuery::Node(GROUP)))
                    .await
            }
        };
        let bytes = answer.map_err(|e| from_routing(e, true))?;
        let answer: StatusAnswer =
            concord::codec::decode(&bytes, super::groups_status::STATUS_ANSWER_BYTES_MAX).map_err(
                |e| ClientError::Protocol(format!("a malformed status from {addr}: {e}")),
            )?;
        match answer {
            StatusAnswer::Node(status) => Ok(*status),
            StatusAnswer::NotHosted { group, node } => Err(ClientError::NotHosted { node, group }),
            other => Err(ClientError::Protocol(format!(
                "{addr} answered a status of another kind: {other:?}"
            ))),
        }
    }

    /// The session client, built on the first call once a server told
    /// its id: retried like any attempt while none answers.
    async fn connected(&mut self) -> Result<&mut SessionClient, ClientError> {
        if self.sessions.is_none() {
            if self.config.servers.is_empty() {
                return Err(ClientError::NoServers);
            }
            let attempts_max = self.config.attempts_max.max(1);
            let mut last = String::new();
            let mut rejection = None;
            let mut ids = None;
            for attempt in 0..attempts_max {
                if attempt > 0 {
                    self.retries += 1;
                    tokio::time::sleep(self.config.retry_backoff).await;
                }
                match node_ids(
                    &self.config.servers,
                    &self.config.cluster_id,
                    self.config.tls.as_deref(),
                    self.connect_timeout(),
                )
                .await
                {
                    Ok(found) => {
                        ids = Some(found);
                        break;
                    }
                    Err(NodeIdsError::Unreachable {
                        problems,
                        rejection: refused,
                    }) => {
                        last = problems;
                        rejection = refused.or(rejection);
                    }
                    Err(refused) => return Err(from_node_ids(refused)),
                }
            }
            let Some(ids) = ids else {
                // Servers that answered refused this client; the others
                // were down: the refusal is what the user must fix.
                return Err(match rejection {
                    Some(reason) => ClientError::Rejected { reason },
                    None => ClientError::Unavailable {
                        attempts: attempts_max,
                        last,
                    },
                });
            };
            let first = ids.keys().next().copied();
            let mut config = self.routing_config(ids);
            // A server that was still starting is asked again when the
            // ones that answered do not serve the group.
            config.unresolved = unresolved_addresses(&self.config.servers, &config.servers);
            let mut routing = RoutingClient::new(config).map_err(|e| from_routing(e, true))?;
            if let Some(node) = first {
                refuse_many_groups(&mut routing, node).await?;
            }
            self.sessions = Some(SessionClient::new(routing, SessionConfig::default()));
        }
        Ok(self.sessions.as_mut().expect("built above"))
    }

    fn connect_timeout(&self) -> std::time::Duration {
        self.config.connect_timeout.min(self.config.request_timeout)
    }

    /// The routing client's settings from this client's.
    fn routing_config(
        &self,
        servers: std::collections::BTreeMap<concord::NodeId, String>,
    ) -> RoutingConfig {
        let mut routing = RoutingConfig::new(self.config.cluster_id.clone(), servers);
        routing.attempts_max = self.config.attempts_max.max(1);
        routing.backoff = self.config.retry_backoff;
        routing.backoff_max = routing.backoff_max.max(self.config.retry_backoff);
        routing.connect_timeout = self.connect_timeout();
        routing.request_timeout = self.config.request_timeout;
        routing.tls = self.config.tls.clone();
        routing.avoid_min = self.config.avoid_min;
        routing.avoid_max = self.config.avoid_max;
        routing.shared = self.config.shared.clone();
        routing.leaders_cached_max = LEADERS_CACHED_MAX;
        routing
    }

    /// Counts the attempts since `before` beyond the first as retries.
    fn count_retries(&mut self, before: u64) {
        if let Some(sessions) = &self.sessions {
            let attempts = sessions.routing().stats().attempts - before;
            self.retries += attempts.saturating_sub(1);
        }
    }
}

/// A member list's answer.
fn decode_members(bytes: &[u8]) -> Result<GroupMembers, ClientError> {
    match AdminAnswer::decode(bytes) {
        Ok(AdminAnswer::Members(members)) => Ok(*members),
        Ok(other) => Err(ClientError::Server(format!(
            "a member list answered {other:?}"
        ))),
        Err(reason) => Err(ClientError::Server(reason)),
    }
}

/// Refuses a cluster of more than one data group before anything is
/// sent to it: group 1 of a sharded cluster holds only the keys mapped to
/// it, so a one-group client would write the others where no sharded
/// client looks. Asked of one server (`node`), once; a server that does
/// not answer lets the client go on (a request then finds out).
async fn refuse_many_groups(routing: &mut RoutingClient, node: NodeId) -> Result<(), ClientError> {
    let Ok(bytes) = routing
        .call_node(node, GROUP, GroupOp::Status(StatusQuery::Summary))
        .await
    else {
        return Ok(());
    };
    match concord::codec::decode(&bytes, super::groups_status::STATUS_ANSWER_BYTES_MAX) {
        Ok(StatusAnswer::Summary(summary)) if summary.groups_hosted > 1 => {
            let groups = summary.groups_hosted;
            Err(ClientError::Server(format!(
                "this server hosts {groups} groups: use --groups {groups} (a client of a \
                 one-group cluster sent this request)"
            )))
        }
        _ => Ok(()),
    }
}

/// A routing failure as `Client` names it; `read_only`: nothing the call
/// sent could have been applied.
fn from_routing(error: RoutingError, read_only: bool) -> ClientError {
    match error {
        RoutingError::Config(reason) => ClientError::Protocol(reason),
        RoutingError::Exhausted { attempts, last, .. } => {
            ClientError::Unavailable { attempts, last }
        }
        RoutingError::Unknown { reason, .. } if read_only => ClientError::Unavailable {
            attempts: 1,
            last: reason,
        },
        RoutingError::Unknown { reason, .. } => ClientError::RetriesExhausted {
            attempts: 1,
            last: reason,
        },
        RoutingError::Rejected { reason, .. } => ClientError::Rejected { reason },
        RoutingError::Refused { message, .. } => ClientError::Server(message),
    }
}

/// A session failure as `Client` names it.
fn from_session(error: SessionError) -> ClientError {
    match error {
        SessionError::Routing(routing) => from_routing(routing, false),
        SessionError::Expired { .. } => ClientError::SessionExpired,
        SessionError::Unanswered { sends, last, .. } => ClientError::RetriesExhausted {
            attempts: sends,
            last,
        },
        SessionError::Answer { reason, .. } => ClientError::Server(reason),
    }
}

/// A failed discovery of the servers' ids as `Client` names it.
fn from_node_ids(error: NodeIdsError) -> ClientError {
    match error {
        NodeIdsError::Rejected(reason) | NodeIdsError::Duplicate(reason) => {
            ClientError::Rejected { reason }
        }
        NodeIdsError::Unreachable {
            rejection: Some(reason),
            ..
        } => ClientError::Rejected { reason },
        NodeIdsError::Unreachable { problems, .. } => ClientError::Unavailable {
            attempts: 1,
            last: problems,
        },
    }
}
