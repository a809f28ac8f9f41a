//! The typed client of the key-value store (feature `runtime`): every
//! call linearizable; writes applied exactly once even when retried.

use bytes::Bytes;

use concord::ReadPath;

use crate::client::{CallError, ServiceClient};
use crate::kv::{Kv, KvRequest, KvResponse};

/// A client of a key-value cluster.
pub type KvClient = ServiceClient<Kv>;

fn unexpected(what: &str, other: KvResponse) -> CallError {
    CallError::Protocol(format!("expected {what}, got {other:?}"))
}

impl ServiceClient<Kv> {
    /// The values of `keys`, read at one instant on `path` (`None`:
    /// through the log): a `get` for one key, a `get_many` for more.
    async fn values(
        &mut self,
        keys: Vec<Bytes>,
        path: Option<ReadPath>,
    ) -> Result<Vec<Option<Bytes>>, CallError> {
        let count = keys.len();
        let request = if count == 1 {
            KvRequest::Get {
                key: keys.into_iter().next().unwrap_or_default(),
            }
        } else {
            KvRequest::GetMany { keys }
        };
        match self.call_via(request, path).await? {
            KvResponse::Values(values) if values.len() == count => Ok(values),
            other => Err(unexpected(&format!("{count} values"), other)),
        }
    }

    /// The value of `key` (`None`: absent), on the client's read path.
    pub async fn get(&mut self, key: impl Into<Bytes>) -> Result<Option<Bytes>, CallError> {
        let path = self.read_path();
        self.get_via(key, path).await
    }

    /// The value of `key` read on `path` (`None`: through the log, a log
    /// entry committed and applied like a write).
    pub async fn get_via(
        &mut self,
        key: impl Into<Bytes>,
        path: Option<ReadPath>,
    ) -> Result<Option<Bytes>, CallError> {
        let mut values = self.values(vec![key.into()], path).await?;
        Ok(values.pop().flatten())
    }

    /// The values of `keys` (1 to [`crate::kv::GET_MANY_KEYS_MAX`]), all
    /// read at one instant.
    pub async fn get_many<K: Into<Bytes>>(
        &mut self,
        keys: impl IntoIterator<Item = K>,
    ) -> Result<Vec<Option<Bytes>>, CallError> {
        let keys: Vec<Bytes> = keys.into_iter().map(Into::into).collect();
        let path = self.read_path();
        self.values(keys, path).await
    }

    /// Sets `key` to `value`.
    pub async fn put(
        &mut self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
    ) -> Result<(), CallError> {
        let (key, value) = (key.into(), value.into());
        self.written(KvRequest::Put { key, value }).await
    }

    /// Sets every key of `pairs` at once: no reader sees some set and
    /// others not.
    pub async fn put_many<K: Into<Bytes>, V: Into<Bytes>>(
        &mut self,
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<(), CallError> {
        let pairs = pairs
            .into_iter()
            .map(|(key, value)| (key.into(), value.into()))
            .collect();
        self.written(KvRequest::PutMany { pairs }).await
    }

    async fn written(&mut self, request: KvRequest) -> Result<(), CallError> {
        match self.call(request).await? {
            KvResponse::Written => Ok(()),
            other => Err(unexpected("written", other)),
        }
    }

    /// Appends `value` to `key`'s value (absent counts as empty).
    pub async fn append(
        &mut self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
    ) -> Result<(), CallError> {
        let (key, value) = (key.into(), value.into());
        self.written(KvRequest::Append { key, value }).await
    }

    /// Sets `key` to `new` if it holds `expected` (`None`: absent);
    /// returns whether it did.
    pub async fn cas(
        &mut self,
        key: impl Into<Bytes>,
        expected: Option<Bytes>,
        new: impl Into<Bytes>,
    ) -> Result<bool, CallError> {
        let (key, new) = (key.into(), new.into());
        match self.call(KvRequest::Cas { key, expected, new }).await? {
            KvResponse::Swapped(swapped) => Ok(swapped),
            other => Err(unexpected("a compare-and-set outcome", other)),
        }
    }
}
