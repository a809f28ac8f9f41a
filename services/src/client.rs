//! A client of any service (feature `runtime`): concord's
//! [`OneGroupClient`] (leader discovery, redirects, bounded retries, exactly-once
//! sessions) carrying the service's typed requests. Reads go on the
//! service's read path ([`Service::READ_PATH`], or the one set) without a
//! log entry; writes through the log in the client's session, so a write
//! retried after a lost answer is applied once.

use std::marker::PhantomData;
use std::time::Duration;

use bytes::Bytes;
use thiserror::Error;

use concord::ReadPath;
use concord_tokio::client::{ClientConfig, ClientError};
use concord_tokio::multi::one_group_client::OneGroupClient;
use concord_tokio::status::NodeStatus;

use crate::codec::{self, REQUEST_BYTES_MAX};
use crate::service::{Service, ServiceRequest};

/// How long [`ServiceClient::set_acknowledge_all`] waits for a server to
/// apply a write before counting it unhealthy for that write.
pub const ALL_APPLIED_WAIT_MAX: Duration = Duration::from_secs(1);
/// Pause between two status polls while waiting for a server to apply.
const ALL_APPLIED_POLL: Duration = Duration::from_millis(1);

/// Why a call failed, and whether it may have been applied.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CallError {
    /// The request breaks a limit of the service; nothing was sent.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The service refused the request; it changed nothing.
    #[error("refused: {0}")]
    Refused(String),
    /// The cluster could not be reached, did not answer in time, or
    /// refused this client.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// An answer that does not parse (a client and servers of different
    /// versions?). A write may or may not have been applied.
    #[error("unexpected answer from the service: {0}")]
    Protocol(String),
}

impl CallError {
    /// Whether the call certainly changed nothing.
    pub fn definitely_not_applied(&self) -> bool {
        match self {
            CallError::Invalid(_) | CallError::Refused(_) => true,
            // No server took the request, or every one refused it before
            // acting on it.
            CallError::Client(error) => matches!(
                error,
                ClientError::NoServers
                    | ClientError::Server(_)
                    | ClientError::NotHosted { .. }
                    | ClientError::CommandTooLarge { .. }
                    | ClientError::Unavailable { .. }
                    | ClientError::Rejected { .. }
            ),
            CallError::Protocol(_) => false,
        }
    }
}

/// A client of a cluster running service `S`.
#[derive(Debug)]
pub struct ServiceClient<S> {
    client: Box<OneGroupClient>,
    servers: usize,
    /// Where reads go; `None`: through the log, like a write.
    read_path: Option<ReadPath>,
    next_op_id: u64,
    /// Wait after each write until every healthy server has applied it.
    acknowledge_all: bool,
    service: PhantomData<fn() -> S>,
}

impl<S: Service> ServiceClient<S> {
    /// A client of the cluster at `servers` named `cluster_id`.
    pub fn connect(servers: Vec<String>, cluster_id: &str) -> Self {
        ServiceClient::new(ClientConfig::new(servers, cluster_id))
    }

    /// A client with explicit settings of a cluster of one group
    /// (`concord-node` without `--groups`, or
    /// [`concord_tokio::cluster::start_node`]); reads on
    /// [`Service::READ_PATH`].
    pub fn new(config: ClientConfig) -> Self {
        ServiceClient {
            servers: config.servers.len(),
            client: Box::new(OneGroupClient::new(config)),
            read_path: Some(S::READ_PATH),
            next_op_id: 1,
            acknowledge_all: false,
            service: PhantomData,
        }
    }

    /// Reads on `path` from now on; `None` sends them through the log.
    pub fn set_read_path(&mut self, path: Option<ReadPath>) {
        self.read_path = path;
    }

    /// Where reads go; `None`: through the log.
    pub fn read_path(&self) -> Option<ReadPath> {
        self.read_path
    }

    /// With `enabled`, a write returns only once every healthy server has
    /// applied it, not just a majority: after the leader's answer the
    /// client reads the highest commit index any server reports (at or
    /// past the write) and polls each server's status until it has
    /// applied that far. A server that does not answer, or has not applied
    /// within [`ALL_APPLIED_WAIT_MAX`], counts as unhealthy and is not
    /// waited for. Costs a status round trip to every server per write,
    /// plus the slowest replica's apply delay.
    pub fn set_acknowledge_all(&mut self, enabled: bool) {
        self.acknowledge_all = enabled;
    }

    /// The status of server number `server` (an index into the servers
    /// given): [`OneGroupClient::status`].
    pub async fn status(&mut self, server: usize) -> Result<NodeStatus, ClientError> {
        self.client.status(server).await
    }

    /// The one-group client underneath (its members, for one).
    pub fn one_group(&mut self) -> &mut OneGroupClient {
        &mut self.client
    }

    /// The server currently believed to lead.
    pub fn leader(&self) -> Option<&str> {
        self.client.leader()
    }

    /// This client's session id, once registered (by its first write).
    pub fn session(&self) -> Option<concord::session::ClientId> {
        self.client.session()
    }

    /// Attempts that were retries, over the client's life.
    pub fn retries(&self) -> u64 {
        self.client.retries()
    }

    /// Sends `request` on the client's read path if it is a read, else
    /// through the log; a refusal becomes [`CallError::Refused`].
    pub async fn call(&mut self, request: S::Request) -> Result<S::Response, CallError> {
        let path = self.read_path;
        self.call_via(request, path).await
    }

    /// [`ServiceClient::call`] with a read on `path` (`None`: through the
    /// log).
    pub async fn call_via(
        &mut self,
        request: S::Request,
        path: Option<ReadPath>,
    ) -> Result<S::Response, CallError> {
        request.validate().map_err(CallError::Invalid)?;
        // Unique within this client's session; only the simulator reads it.
        let op_id = (self.client.session().unwrap_or(0) << 32) | self.next_op_id;
        self.next_op_id += 1;
        let bytes = codec::encode_request::<S>(op_id, &request);
        if bytes.len() > REQUEST_BYTES_MAX {
            return Err(CallError::Client(ClientError::CommandTooLarge {
                bytes: bytes.len(),
                max: REQUEST_BYTES_MAX,
            }));
        }
        let answer = match path {
            Some(path) if request.is_read() => self.client.read(bytes, path).await?,
            _ => self.write(bytes).await?,
        };
        match codec::decode_answer::<S>(&answer) {
            Ok(Ok(response)) => match S::refusal(&response) {
                Some(reason) => Err(CallError::Refused(reason)),
                None => Ok(response),
            },
            Ok(Err(reason)) => Err(CallError::Refused(reason)),
            Err(error) => Err(CallError::Protocol(error.to_string())),
        }
    }

    async fn write(&mut self, request: Bytes) -> Result<Bytes, ClientError> {
        let answer = self.client.write(request).await?;
        if self.acknowledge_all {
            self.wait_all_applied().await;
        }
        Ok(answer)
    }

    /// Waits until every server that answers has applied everything
    /// committed when the write was acknowledged.
    async fn wait_all_applied(&mut self) {
        let mut target = 0;
        for server in 0..self.servers {
            if let Ok(status) = self.client.status(server).await {
                target = target.max(status.commit_index);
            }
        }
        for server in 0..self.servers {
            let deadline = tokio::time::Instant::now() + ALL_APPLIED_WAIT_MAX;
            loop {
                match self.client.status(server).await {
                    Ok(status) if status.applied_index >= target => break,
                    Ok(_) if tokio::time::Instant::now() < deadline => {
                        tokio::time::sleep(ALL_APPLIED_POLL).await;
                    }
                    // Not answering, or too slow: unhealthy for this write.
                    _ => break,
                }
            }
        }
    }
}
