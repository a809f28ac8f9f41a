//! A client of any service on a multi-group cluster (feature `runtime`):
//! each request goes to its group ([`crate::sharded::group_of`]) through
//! a [`SessionClient`]: writes inside the client's session of that group
//! (applied once, retried while their outcome is unknown), reads retried
//! freely. A request that would span groups is refused before anything is
//! sent. The key-value store's typed client is
//! [`ShardedKvClient`](crate::sharded_kv_client::ShardedKvClient).

use std::marker::PhantomData;

use concord::multi::GroupId;
use concord::ReadPath;
use concord_tokio::multi::routing_client::{RoutingClient, RoutingConfig};
use concord_tokio::multi::session_client::{SessionClient, SessionConfig};
use concord_tokio::multi::wire::GroupOp;

use crate::codec;
use crate::service::{Service, ServiceRequest};
use crate::sharded::group_of;
use crate::sharded_kv::ShardMap;
use crate::sharded_kv_client::ShardedKvError;

/// A client of service `S` on a multi-group cluster (see the
/// [module documentation](self)). Its errors are the sharded store's
/// ([`ShardedKvError`]), which are any sharded service's.
pub struct ShardedClient<S> {
    map: ShardMap,
    sessions: SessionClient,
    read_path: ReadPath,
    next_op_id: u64,
    service: PhantomData<fn() -> S>,
}

impl<S: Service> ShardedClient<S> {
    /// A client of the groups of `map` served by `config.servers`.
    pub fn new(map: ShardMap, config: RoutingConfig) -> Result<Self, ShardedKvError> {
        Ok(ShardedClient {
            map,
            sessions: SessionClient::new(RoutingClient::new(config)?, SessionConfig::default()),
            read_path: S::READ_PATH,
            next_op_id: 1,
            service: PhantomData,
        })
    }

    /// Sets the path reads are served on (default: the service's).
    pub fn set_read_path(&mut self, path: ReadPath) {
        self.read_path = path;
    }

    /// The session client underneath (its counters, its sessions).
    pub fn sessions(&self) -> &SessionClient {
        &self.sessions
    }

    /// The group `request` goes to, or why it goes to none.
    pub fn group_of(&self, request: &S::Request) -> Result<GroupId, ShardedKvError> {
        Ok(group_of::<S>(&self.map, request)?)
    }

    /// Sends `request` to its group; the service's answer.
    pub async fn call(&mut self, request: S::Request) -> Result<S::Response, ShardedKvError> {
        request.validate().map_err(ShardedKvError::Invalid)?;
        let group = self.group_of(&request)?;
        let op_id = self.next_op_id;
        self.next_op_id += 1;
        let bytes = codec::encode_request::<S>(op_id, &request);
        let answer = if request.is_read() {
            let op = GroupOp::Read {
                path: self.read_path,
                query: bytes,
            };
            self.sessions.call(group, op).await?
        } else {
            self.sessions.command(group, &bytes).await?
        };
        match codec::decode_answer::<S>(&answer) {
            Ok(Ok(response)) => match S::refusal(&response) {
                Some(reason) => Err(ShardedKvError::Refused { group, reason }),
                None => Ok(response),
            },
            Ok(Err(reason)) => Err(ShardedKvError::Refused { group, reason }),
            Err(e) => Err(ShardedKvError::Answer {
                group,
                reason: e.to_string(),
            }),
        }
    }
}
