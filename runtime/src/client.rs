//! What every client of a concord cluster is configured with, and how its
//! calls fail: [`ClientConfig`], [`ClientError`], [`ErrorClass`]. The
//! client of a one-group cluster is
//! [`OneGroupClient`](super::multi::one_group_client::OneGroupClient); of
//! a sharded one, the
//! [`RoutingClient`](super::multi::routing_client::RoutingClient).
//!
//! ## Learning from failure
//!
//! A server that refused the connection, reset it or did not answer in
//! time is avoided for a while ([`ClientConfig::avoid_min`], doubling on
//! each new failure up to [`ClientConfig::avoid_max`]): follower reads
//! and leader discovery go to the other servers first. Avoidance only
//! orders the servers this client picks by itself; it never refuses the
//! one the cluster names. A `NotLeader` redirect from a server that knows
//! the leader is followed at once, avoided or not, with one attempt: a
//! leader the client could not reach while the servers could (a client
//! cut from the leader alone) is written to as soon as the cut heals,
//! not once its avoidance ends. If that attempt fails too, the client
//! pauses [`ClientConfig::retry_backoff`] and asks the others again.
//! Once its period ends an avoided server is probed again by the next
//! request that would go to it; one answer clears it. A connection is
//! opened within [`ClientConfig::connect_timeout`], so probing a stopped
//! server costs that, not a whole request timeout. When every server is
//! avoided the one whose period ends first is tried.
//!
//! ## Errors that say what happened
//!
//! Every failure is [`ErrorClass::Transient`] (a server down, slow or
//! busy: trying again, elsewhere or later, may work) or
//! [`ErrorClass::Permanent`] (this client as configured is refused: TLS
//! on one side only, a certificate the server does not trust, another
//! cluster's name). A permanent failure on every server ends the call at
//! once with [`ClientError::Rejected`], which names it.

use std::time::Duration;

use thiserror::Error;

/// Settings of a client of the one runtime
/// ([`OneGroupClient`](super::multi::one_group_client::OneGroupClient),
/// and the services' clients on it).
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Addresses of the servers (`host:port`).
    pub servers: Vec<String>,
    /// The cluster's name (checked by the servers' handshake).
    pub cluster_id: String,
    /// Time allowed for one attempt (connect + request + answer).
    pub request_timeout: Duration,
    /// Most attempts per operation.
    pub attempts_max: u32,
    /// Pause before retrying when no leader is known.
    pub retry_backoff: Duration,
    /// Mutual TLS to the servers (a certificate naming
    /// `client.<cluster-id>`, see [`super::tls`]); `None`: plaintext.
    pub tls: Option<std::sync::Arc<super::tls::TlsConfig>>,
    /// Time allowed to open a connection and complete its handshake
    /// (capped by `request_timeout`): what probing a stopped server costs.
    pub connect_timeout: Duration,
    /// How long a server that failed (refused, reset, timed out) is
    /// avoided after its first failure; each further failure doubles it.
    pub avoid_min: Duration,
    /// Longest time a failing server is avoided before it is probed again.
    pub avoid_max: Duration,
    /// Connections shared with other clients, requests pipelined on them
    /// ([`SharedConnections`](super::multi::shared_connections::SharedConnections)):
    /// many clients of one process, one connection per server. `None`
    /// (the default): this client's own connections.
    pub shared: Option<super::multi::shared_connections::SharedConnections>,
}

impl ClientConfig {
    /// Defaults: 2 s per attempt, 1 s to connect, 30 attempts, 50 ms
    /// backoff; a failed server is avoided for 1 s, doubling up to 30 s.
    pub fn new(servers: Vec<String>, cluster_id: impl Into<String>) -> Self {
        ClientConfig {
            servers,
            cluster_id: cluster_id.into(),
            request_timeout: Duration::from_secs(2),
            attempts_max: 30,
            retry_backoff: Duration::from_millis(50),
            tls: None,
            connect_timeout: Duration::from_secs(1),
            avoid_min: Duration::from_secs(1),
            avoid_max: Duration::from_secs(30),
            shared: None,
        }
    }
}

/// Whether trying again can help.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// A passing condition: a server down, restarting, slow or busy, an
    /// answer lost. Trying again, elsewhere or later, may succeed.
    Transient,
    /// The servers refuse this client or this request as configured (TLS
    /// on one side only, a certificate the server does not trust, another
    /// cluster's name): trying again cannot help; the message says what
    /// to change.
    Permanent,
}

/// Why an operation failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ClientError {
    /// No attempt succeeded, and at least one sent the request and lost
    /// its answer: the operation may or may not have been applied.
    #[error("gave up after {attempts} attempts; the operation may or may not have been applied (last problem: {last})")]
    RetriesExhausted {
        /// Attempts made.
        attempts: u32,
        /// What went wrong last.
        last: String,
    },
    /// No attempt succeeded and none left the outcome open: no server
    /// took the request (unreachable, refused, no leader), or it was a
    /// read, so nothing was applied.
    #[error("gave up after {attempts} attempts; no server took the request, nothing was applied (last problem: {last})")]
    Unavailable {
        /// Attempts made.
        attempts: u32,
        /// What went wrong last.
        last: String,
    },
    /// Every server refused this client as configured (see
    /// [`ErrorClass::Permanent`]); nothing was sent.
    #[error("{reason}")]
    Rejected {
        /// What the servers (the last one to refuse) said or showed, with
        /// what to change.
        reason: String,
    },
    /// Every server asked refused the request itself, not this client:
    /// for good (a multi-group server asked a single-group request names
    /// its group count), or all for one passing reason (every one
    /// shutting down). The last one's words.
    #[error("server error: {0}")]
    Server(String),
    /// The server asked for its status of a group does not host it: it
    /// was removed from the group (and stopped hosting it), or it serves
    /// another cluster's groups.
    #[error(
        "node {node} does not host group {group}: removed from it, or a server of a \
         multi-group cluster (--groups N)"
    )]
    NotHosted {
        /// The server's node id.
        node: concord::NodeId,
        /// The group asked for.
        group: u64,
    },
    /// The session was forgotten by the servers; the outcome of the last
    /// operation is unknown. The next operation registers a new session.
    #[error("session expired on the servers; the operation may or may not have been applied")]
    SessionExpired,
    /// The command is larger than the service accepts (its client checks
    /// before sending); it was not sent. Retrying cannot help.
    #[error(
        "the command is {bytes} bytes encoded, above the limit of {max} bytes ({} MiB) a command \
         may have; nothing was sent",
        max / (1024 * 1024)
    )]
    CommandTooLarge {
        /// The command's encoded size.
        bytes: usize,
        /// The largest command accepted.
        max: usize,
    },
    /// A server answered something that could not be understood.
    #[error("bad answer from server: {0}")]
    Protocol(String),
    /// No server address was given.
    #[error("no server addresses given")]
    NoServers,
}

impl ClientError {
    /// Whether trying the same call again can help.
    pub fn class(&self) -> ErrorClass {
        match self {
            ClientError::RetriesExhausted { .. }
            | ClientError::Unavailable { .. }
            | ClientError::SessionExpired => ErrorClass::Transient,
            ClientError::Rejected { .. }
            | ClientError::Server(_)
            | ClientError::NotHosted { .. }
            | ClientError::Protocol(_)
            | ClientError::CommandTooLarge { .. }
            | ClientError::NoServers => ErrorClass::Permanent,
        }
    }

    /// Whether the operation may have been applied although the call
    /// failed (a request was sent and its answer lost).
    pub fn outcome_unknown(&self) -> bool {
        matches!(
            self,
            ClientError::RetriesExhausted { .. } | ClientError::SessionExpired
        )
    }
}
