//! The typed client of the strict key-value store (feature `runtime`).

use concord::ReadPath;

use crate::kv::{KvRequest, KvResponse};
use crate::runtime::{CallError, ServiceClient, ServiceRequest};

/// A client of a strict key-value cluster: every call is linearizable;
/// writes are applied exactly once even when retried.
#[derive(Debug)]
pub struct KvClient {
    inner: ServiceClient,
}

impl KvClient {
    /// A client of the cluster at `servers` named `cluster_id`.
    pub fn new(servers: Vec<String>, cluster_id: &str) -> Self {
        KvClient {
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
        KvClient { inner }
    }

    async fn call(&mut self, request: KvRequest) -> Result<KvResponse, CallError> {
        self.inner.call(request, ReadPath::ReadIndex).await
    }

    async fn values(
        &mut self,
        request: KvRequest,
        count: usize,
    ) -> Result<Vec<Option<String>>, CallError> {
        match self.call(request).await? {
            KvResponse::Values(values) if values.len() == count => Ok(values),
            other => Err(CallError::Protocol(format!(
                "expected {count} values, got {other:?}"
            ))),
        }
    }

    async fn written(&mut self, request: KvRequest) -> Result<(), CallError> {
        match self.call(request).await? {
            KvResponse::Written => Ok(()),
            other => Err(CallError::Protocol(format!(
                "expected written, got {other:?}"
            ))),
        }
    }

    /// The value of `key` (`None`: never written).
    pub async fn get(&mut self, key: &str) -> Result<Option<String>, CallError> {
        let mut values = self
            .values(
                KvRequest::Get {
                    key: key.to_string(),
                },
                1,
            )
            .await?;
        Ok(values.pop().flatten())
    }

    /// The values of `keys`, all read at one instant.
    pub async fn get_many(&mut self, keys: &[&str]) -> Result<Vec<Option<String>>, CallError> {
        let keys: Vec<String> = keys.iter().map(|key| key.to_string()).collect();
        let count = keys.len();
        self.values(KvRequest::GetMany { keys }, count).await
    }

    /// Sets `key` to `value`.
    pub async fn put(&mut self, key: &str, value: &str) -> Result<(), CallError> {
        self.written(KvRequest::Put {
            key: key.to_string(),
            value: value.to_string(),
        })
        .await
    }

    /// Sets every key of `pairs` at once: no reader sees some set and
    /// others not.
    pub async fn put_many(&mut self, pairs: &[(&str, &str)]) -> Result<(), CallError> {
        self.written(KvRequest::PutMany {
            pairs: pairs
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect(),
        })
        .await
    }
}

impl ServiceRequest for KvRequest {
    type Response = KvResponse;

    fn is_read(&self) -> bool {
        KvRequest::is_read(self)
    }

    fn validate(&self) -> Result<(), String> {
        KvRequest::validate(self)
    }

    fn encode(&self, op_id: u64) -> bytes::Bytes {
        KvRequest::encode(self, op_id)
    }

    fn decode_response(
        bytes: &[u8],
    ) -> Result<Result<KvResponse, String>, crate::codec::DecodeError> {
        Ok(match KvResponse::decode(bytes)? {
            KvResponse::Refused(reason) => Err(reason),
            response => Ok(response),
        })
    }
}
