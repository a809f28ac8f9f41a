//! The typed client of the directory (feature `runtime`).

use concord::ReadPath;

use crate::directory::{DirectoryRequest, DirectoryResponse};
use crate::runtime::{CallError, ServiceClient, ServiceRequest};

/// A client of a directory cluster: lookups are linearizable, connects,
/// disconnects and sequence numbers are applied exactly once even when
/// retried.
#[derive(Debug)]
pub struct DirectoryClient {
    inner: ServiceClient,
}

impl DirectoryClient {
    /// A client of the cluster at `servers` named `cluster_id`.
    pub fn new(servers: Vec<String>, cluster_id: &str) -> Self {
        DirectoryClient {
            inner: ServiceClient::new(servers, cluster_id),
        }
    }

    /// Writes return only once every healthy server applied them (see
    /// [`ServiceClient::set_acknowledge_all`]).
    pub fn set_acknowledge_all(&mut self, enabled: bool) {
        self.inner.set_acknowledge_all(enabled);
    }

    /// A client over an already configured [`ServiceClient`].
    pub fn from_service_client(inner: ServiceClient) -> Self {
        DirectoryClient { inner }
    }

    async fn call(&mut self, request: DirectoryRequest) -> Result<DirectoryResponse, CallError> {
        self.inner.call(request, ReadPath::ReadIndex).await
    }

    async fn done(&mut self, request: DirectoryRequest) -> Result<(), CallError> {
        match self.call(request).await? {
            DirectoryResponse::Done => Ok(()),
            other => Err(CallError::Protocol(format!("expected done, got {other:?}"))),
        }
    }

    /// Records that `user` is reachable at `address` (`ip:port`).
    pub async fn connect(&mut self, user: &str, address: &str) -> Result<(), CallError> {
        self.done(DirectoryRequest::Connect {
            user: user.to_string(),
            address: address.to_string(),
        })
        .await
    }

    /// Forgets `user`'s address.
    pub async fn disconnect(&mut self, user: &str) -> Result<(), CallError> {
        self.done(DirectoryRequest::Disconnect {
            user: user.to_string(),
        })
        .await
    }

    /// Where each of `users` is (`None`: not connected), at one instant.
    pub async fn lookup(&mut self, users: &[&str]) -> Result<Vec<Option<String>>, CallError> {
        let users: Vec<String> = users.iter().map(|user| user.to_string()).collect();
        let count = users.len();
        match self.call(DirectoryRequest::Lookup { users }).await? {
            DirectoryResponse::Addresses(addresses) if addresses.len() == count => Ok(addresses),
            other => Err(CallError::Protocol(format!(
                "expected {count} addresses, got {other:?}"
            ))),
        }
    }

    /// The next number of the cluster-wide sequence.
    pub async fn next_sequence(&mut self) -> Result<u64, CallError> {
        match self.call(DirectoryRequest::NextSequence).await? {
            DirectoryResponse::Sequence(number) => Ok(number),
            other => Err(CallError::Protocol(format!(
                "expected a sequence number, got {other:?}"
            ))),
        }
    }
}

impl ServiceRequest for DirectoryRequest {
    type Response = DirectoryResponse;

    fn is_read(&self) -> bool {
        DirectoryRequest::is_read(self)
    }

    fn validate(&self) -> Result<(), String> {
        DirectoryRequest::validate(self)
    }

    fn encode(&self, op_id: u64) -> bytes::Bytes {
        DirectoryRequest::encode(self, op_id)
    }

    fn decode_response(
        bytes: &[u8],
    ) -> Result<Result<DirectoryResponse, String>, crate::codec::DecodeError> {
        Ok(match DirectoryResponse::decode(bytes)? {
            DirectoryResponse::Refused(reason) => Err(reason),
            response => Ok(response),
        })
    }
}
