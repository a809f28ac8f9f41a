//! The client of a sharded key-value store (feature `runtime`): each
//! request goes to the group of its keys ([`ShardMap`]) through a
//! [`RoutingClient`], which caches each group's leader and follows
//! redirects.
//!
//! A multi-key request (`put_many`, `get_many`) whose keys span several
//! groups is refused before anything is sent ([`ShardError::CrossGroup`]).
//! Writes carry the client's session in their group ([`SessionClient`]):
//! a write whose answer was lost is sent again with the same sequence
//! number and applied once. Its outcome is reported unknown
//! ([`ShardedKvError::definitely_not_applied`] false) only when the group
//! expired the session before a retry reached it, or no retry was
//! answered ([`SessionError`]). Reads are retried freely.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use concord::multi::GroupId;
use concord::NodeId;
use concord::ReadPath;
use concord_tokio::multi::routing_client::{RoutingClient, RoutingConfig, RoutingError};
use concord_tokio::multi::session_client::{SessionClient, SessionConfig, SessionError};
use concord_tokio::multi::wire::GroupOp;
use concord_tokio::tls::TlsConfig;

use crate::codec;
use crate::kv::{Kv, KvRequest, KvResponse};
use crate::service::{Service, ServiceRequest};
use crate::sharded_kv::{ShardError, ShardMap};

/// Why a call of a [`ShardedKvClient`] did not do what it asked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShardedKvError {
    /// The request breaks the store's limits; nothing was sent.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The request cannot go to one group; nothing was sent.
    #[error(transparent)]
    Shard(#[from] ShardError),
    /// No answer from the group (see [`RoutingError`]; `Unknown`: the
    /// write may or may not be applied).
    #[error(transparent)]
    Routing(#[from] RoutingError),
    /// A write's session could not give its outcome (see
    /// [`SessionError::outcome_unknown`]).
    #[error(transparent)]
    Session(SessionError),
    /// The group's store refused the request.
    #[error("group {group} refused the request: {reason}")]
    Refused {
        /// The group.
        group: GroupId,
        /// Its reason.
        reason: String,
    },
    /// The group answered something this client cannot read.
    #[error("group {group}: unexpected answer: {reason}")]
    Answer {
        /// The group.
        group: GroupId,
        /// What was wrong with it.
        reason: String,
    },
}

impl ShardedKvError {
    /// Whether the request certainly did not change the store (a write
    /// refused, never sent, or answered). `false` for a write whose
    /// outcome is unknown.
    pub fn definitely_not_applied(&self) -> bool {
        match self {
            ShardedKvError::Routing(RoutingError::Unknown { .. }) => false,
            ShardedKvError::Session(error) => !error.outcome_unknown(),
            _ => true,
        }
    }
}

impl From<SessionError> for ShardedKvError {
    fn from(error: SessionError) -> Self {
        match error {
            SessionError::Routing(error) => ShardedKvError::Routing(error),
            other => ShardedKvError::Session(other),
        }
    }
}

/// A client of a sharded key-value cluster (see the
/// [module documentation](self)).
pub struct ShardedKvClient {
    map: ShardMap,
    sessions: SessionClient,
    read_path: ReadPath,
    next_op_id: u64,
}

impl ShardedKvClient {
    /// A client of the groups of `map` served by `config.servers`.
    pub fn new(map: ShardMap, config: RoutingConfig) -> Result<Self, ShardedKvError> {
        ShardedKvClient::with_sessions(map, config, SessionConfig::default())
    }

    /// [`new`](Self::new), with `sessions` for how writes are retried.
    pub fn with_sessions(
        map: ShardMap,
        config: RoutingConfig,
        sessions: SessionConfig,
    ) -> Result<Self, ShardedKvError> {
        Ok(ShardedKvClient {
            map,
            sessions: SessionClient::new(RoutingClient::new(config)?, sessions),
            read_path: Kv::READ_PATH,
            next_op_id: 1,
        })
    }

    /// The map of keys to groups.
    pub fn map(&self) -> &ShardMap {
        &self.map
    }

    /// The routing client underneath (its counters, its leader cache).
    pub fn routing(&self) -> &RoutingClient {
        self.sessions.routing()
    }

    /// The session client underneath (its counters, its sessions).
    pub fn sessions(&self) -> &SessionClient {
        &self.sessions
    }

    /// Sets the path reads are served on (default: read-index).
    pub fn set_read_path(&mut self, path: ReadPath) {
        self.read_path = path;
    }

    /// Sends `request` to the group of its keys; the store's answer.
    pub async fn call(&mut self, request: KvRequest) -> Result<KvResponse, ShardedKvError> {
        request.validate().map_err(ShardedKvError::Invalid)?;
        let group = self.map.group_of_request(&request)?;
        let op_id = self.next_op_id;
        self.next_op_id += 1;
        let bytes = codec::encode_request::<Kv>(op_id, &request);
        let answer = if request.is_read() {
            let op = GroupOp::Read {
                path: self.read_path,
                query: bytes,
            };
            self.sessions.call(group, op).await?
        } else {
            self.sessions.command(group, &bytes).await?
        };
        match codec::decode_answer::<Kv>(&answer) {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(reason)) => Err(ShardedKvError::Refused { group, reason }),
            Err(e) => Err(ShardedKvError::Answer {
                group,
                reason: e.to_string(),
            }),
        }
    }

    fn unexpected(&self, key: &[u8], what: &str, other: KvResponse) -> ShardedKvError {
        ShardedKvError::Answer {
            group: self.map.group_of(key),
            reason: format!("expected {what}, got {other:?}"),
        }
    }

    /// The value of `key` (`None`: absent).
    pub async fn get(&mut self, key: impl Into<Bytes>) -> Result<Option<Bytes>, ShardedKvError> {
        let key = key.into();
        match self.call(KvRequest::Get { key: key.clone() }).await? {
            KvResponse::Values(mut values) if values.len() == 1 => Ok(values.pop().flatten()),
            other => Err(self.unexpected(&key, "one value", other)),
        }
    }

    /// The values of `keys`, read at one instant; all keys must be in
    /// one group.
    pub async fn get_many<K: Into<Bytes>>(
        &mut self,
        keys: impl IntoIterator<Item = K>,
    ) -> Result<Vec<Option<Bytes>>, ShardedKvError> {
        let keys: Vec<Bytes> = keys.into_iter().map(Into::into).collect();
        let (count, first) = (keys.len(), keys.first().cloned().unwrap_or_default());
        match self.call(KvRequest::GetMany { keys }).await? {
            KvResponse::Values(values) if values.len() == count => Ok(values),
            other => Err(self.unexpected(&first, &format!("{count} values"), other)),
        }
    }

    /// Writes `value` at `key`.
    pub async fn put(
        &mut self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
    ) -> Result<(), ShardedKvError> {
        let (key, value) = (key.into(), value.into());
        self.written(key.clone(), KvRequest::Put { key, value })
            .await
    }

    /// Writes every pair atomically; all keys must be in one group
    /// ([`ShardError::CrossGroup`] otherwise, nothing sent).
    pub async fn put_many<K: Into<Bytes>, V: Into<Bytes>>(
        &mut self,
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<(), ShardedKvError> {
        let pairs: Vec<(Bytes, Bytes)> = pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        let first = pairs.first().map(|(k, _)| k.clone()).unwrap_or_default();
        self.written(first, KvRequest::PutMany { pairs }).await
    }

    /// Appends `value` to `key`'s value.
    pub async fn append(
        &mut self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
    ) -> Result<(), ShardedKvError> {
        let (key, value) = (key.into(), value.into());
        self.written(key.clone(), KvRequest::Append { key, value })
            .await
    }

    /// Sets `key` to `new` if it holds `expected` (`None`: absent);
    /// whether it did.
    pub async fn cas(
        &mut self,
        key: impl Into<Bytes>,
        expected: Option<Bytes>,
        new: impl Into<Bytes>,
    ) -> Result<bool, ShardedKvError> {
        let key = key.into();
        let request = KvRequest::Cas {
            key: key.clone(),
            expected,
            new: new.into(),
        };
        match self.call(request).await? {
            KvResponse::Swapped(swapped) => Ok(swapped),
            other => Err(self.unexpected(&key, "a swap outcome", other)),
        }
    }

    async fn written(&mut self, key: Bytes, request: KvRequest) -> Result<(), ShardedKvError> {
        match self.call(request).await? {
            KvResponse::Written => Ok(()),
            other => Err(self.unexpected(&key, "written", other)),
        }
    }
}

/// Least time [`node_ids`] waits for the other servers once the first
/// answered.
pub use concord_tokio::multi::routing_client::NODE_IDS_GRACE_MIN;

/// The node id of each server in `addrs` that answers the handshake, for
/// a [`RoutingConfig`]: [`concord_tokio::multi::routing_client::node_ids`]
/// with its error as text.
pub async fn node_ids(
    addrs: &[String],
    cluster_id: &str,
    tls: Option<&TlsConfig>,
    timeout: Duration,
) -> Result<BTreeMap<NodeId, String>, String> {
    concord_tokio::multi::routing_client::node_ids(addrs, cluster_id, tls, timeout)
        .await
        .map_err(|e| e.to_string())
}
