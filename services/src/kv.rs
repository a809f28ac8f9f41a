//! Strict key-value store: `get`, `get_many`, `put`, `put_many`, every one
//! linearizable. A `put_many` is one log entry applied in one step, so no
//! read, on any replica, at any moment, sees some of its keys written and
//! others not; a `put_many` in flight when the leader crashes is applied
//! whole or not at all.
//!
//! Request layout (inside the session envelope of [`concord::session`] for
//! writes, bare for reads): operation id (u64; chosen by the client, used
//! only by the simulator's exactly-once check), a tag byte (0 get, 1
//! get_many, 2 put, 3 put_many), then the keys and values
//! ([`crate::codec`] strings; counts as u32). Response: tag 0 + count +
//! optional strings (values, `None` for a missing key), tag 1 (written),
//! tag 2 + reason (refused, nothing changed).

use std::collections::BTreeMap;

use bytes::Bytes;

use concord::state_machine::{RestoreError, StateMachine};
use concord::Index;

use crate::codec::{DecodeError, Reader, SnapshotReader, Writer, STRING_BYTES_MAX};

/// Most keys one `get_many` reads.
pub const GET_MANY_KEYS_MAX: usize = 64;
/// Most pairs one `put_many` writes.
pub const PUT_MANY_PAIRS_MAX: usize = 64;
/// Longest key.
pub const KEY_BYTES_MAX: usize = 1024;
/// Longest value.
pub const VALUE_BYTES_MAX: usize = STRING_BYTES_MAX;
/// Most keys the store holds; a write that would add more is refused.
pub const KEYS_MAX: usize = 1 << 20;

const TAG_GET: u8 = 0;
const TAG_GET_MANY: u8 = 1;
const TAG_PUT: u8 = 2;
const TAG_PUT_MANY: u8 = 3;

const SNAPSHOT_VERSION: u8 = 1;

/// A request to the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvRequest {
    /// Read one key.
    Get {
        /// The key.
        key: String,
    },
    /// Read several keys at one instant.
    GetMany {
        /// The keys, answered in this order.
        keys: Vec<String>,
    },
    /// Write one key.
    Put {
        /// The key.
        key: String,
        /// Its new value.
        value: String,
    },
    /// Write several keys atomically.
    PutMany {
        /// Keys and their new values; keys distinct.
        pairs: Vec<(String, String)>,
    },
}

impl KvRequest {
    /// Whether the request only reads (served through
    /// [`StateMachine::query`] without a log entry).
    pub fn is_read(&self) -> bool {
        matches!(self, KvRequest::Get { .. } | KvRequest::GetMany { .. })
    }

    /// Checks the limits; the error says what to change.
    pub fn validate(&self) -> Result<(), String> {
        let key_ok = |key: &str| -> Result<(), String> {
            if key.is_empty() {
                return Err("a key must not be empty".to_string());
            }
            if key.len() > KEY_BYTES_MAX {
                return Err(format!(
                    "key of {} bytes is longer than {KEY_BYTES_MAX}",
                    key.len()
                ));
            }
            Ok(())
        };
        let value_ok = |value: &str| -> Result<(), String> {
            if value.len() > VALUE_BYTES_MAX {
                return Err(format!(
                    "value of {} bytes is longer than {VALUE_BYTES_MAX}",
                    value.len()
                ));
            }
            Ok(())
        };
        match self {
            KvRequest::Get { key } => key_ok(key),
            KvRequest::GetMany { keys } => {
                if keys.is_empty() || keys.len() > GET_MANY_KEYS_MAX {
                    return Err(format!(
                        "get_many reads 1 to {GET_MANY_KEYS_MAX} keys, not {}",
                        keys.len()
                    ));
                }
                keys.iter().try_for_each(|key| key_ok(key))
            }
            KvRequest::Put { key, value } => {
                key_ok(key)?;
                value_ok(value)
            }
            KvRequest::PutMany { pairs } => {
                if pairs.is_empty() || pairs.len() > PUT_MANY_PAIRS_MAX {
                    return Err(format!(
                        "put_many writes 1 to {PUT_MANY_PAIRS_MAX} keys, not {}",
                        pairs.len()
                    ));
                }
                let mut seen = std::collections::BTreeSet::new();
                for (key, value) in pairs {
                    key_ok(key)?;
                    value_ok(value)?;
                    if !seen.insert(key.as_str()) {
                        return Err(format!("put_many names key {key:?} twice"));
                    }
                }
                Ok(())
            }
        }
    }

    /// Encodes the request with operation id `op_id`.
    pub fn encode(&self, op_id: u64) -> Bytes {
        let mut writer = Writer::new();
        writer.u64(op_id);
        match self {
            KvRequest::Get { key } => {
                writer.u8(TAG_GET).str(key);
            }
            KvRequest::GetMany { keys } => {
                writer.u8(TAG_GET_MANY).u32(keys.len() as u32);
                for key in keys {
                    writer.str(key);
                }
            }
            KvRequest::Put { key, value } => {
                writer.u8(TAG_PUT).str(key).str(value);
            }
            KvRequest::PutMany { pairs } => {
                writer.u8(TAG_PUT_MANY).u32(pairs.len() as u32);
                for (key, value) in pairs {
                    writer.str(key).str(value);
                }
            }
        }
        writer.finish()
    }

    /// Decodes a request and its operation id.
    pub fn decode(bytes: &[u8]) -> Result<(u64, KvRequest), DecodeError> {
        let mut reader = Reader::new(bytes);
        let op_id = reader.u64("operation id")?;
        let request = match reader.u8("request tag")? {
            TAG_GET => KvRequest::Get {
                key: reader.str("key")?.to_string(),
            },
            TAG_GET_MANY => {
                let count = reader.count("key count", GET_MANY_KEYS_MAX)?;
                let mut keys = Vec::with_capacity(count);
                for _ in 0..count {
                    keys.push(reader.str("key")?.to_string());
                }
                KvRequest::GetMany { keys }
            }
            TAG_PUT => KvRequest::Put {
                key: reader.str("key")?.to_string(),
                value: reader.str("value")?.to_string(),
            },
            TAG_PUT_MANY => {
                let count = reader.count("pair count", PUT_MANY_PAIRS_MAX)?;
                let mut pairs = Vec::with_capacity(count);
                for _ in 0..count {
                    let key = reader.str("key")?.to_string();
                    pairs.push((key, reader.str("value")?.to_string()));
                }
                KvRequest::PutMany { pairs }
            }
            tag => {
                return Err(DecodeError::UnknownTag {
                    field: "request",
                    tag,
                })
            }
        };
        reader.end()?;
        Ok((op_id, request))
    }
}

/// The store's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvResponse {
    /// The values read, in the order of the keys asked (`None`: no such
    /// key).
    Values(Vec<Option<String>>),
    /// The write was applied.
    Written,
    /// The request was refused and changed nothing.
    Refused(String),
}

impl KvResponse {
    /// Encodes the response.
    pub fn encode(&self) -> Bytes {
        let mut writer = Writer::new();
        match self {
            KvResponse::Values(values) => {
                writer.u8(0).u32(values.len() as u32);
                for value in values {
                    writer.opt_str(value.as_deref());
                }
            }
            KvResponse::Written => {
                writer.u8(1);
            }
            KvResponse::Refused(reason) => {
                writer.u8(2).str(reason);
            }
        }
        writer.finish()
    }

    /// Decodes a response.
    pub fn decode(bytes: &[u8]) -> Result<KvResponse, DecodeError> {
        let mut reader = Reader::new(bytes);
        let response = match reader.u8("response tag")? {
            0 => {
                let count = reader.count("value count", GET_MANY_KEYS_MAX)?;
                let mut values = Vec::with_capacity(count);
                for _ in 0..count {
                    values.push(reader.opt_str("value")?.map(str::to_string));
                }
                KvResponse::Values(values)
            }
            1 => KvResponse::Written,
            2 => KvResponse::Refused(reader.str("reason")?.to_string()),
            tag => {
                return Err(DecodeError::UnknownTag {
                    field: "response",
                    tag,
                })
            }
        };
        reader.end()?;
        Ok(response)
    }
}

/// The strict key-value state machine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StrictKv {
    data: BTreeMap<String, String>,
    /// Planted bug only: pairs of a `put_many` not applied yet; they are
    /// applied with the next log entry.
    deferred: Vec<(String, String)>,
    split_put_many: bool,
}

impl StrictKv {
    /// An empty store.
    pub fn new() -> Self {
        StrictKv::default()
    }

    /// A store with a planted bug, for measuring the simulator's
    /// `put_many` atomicity check: a `put_many` is applied as two log
    /// entries would be, its first pair now and the rest together with the
    /// next command. Replicas still agree with each other; a read between
    /// the two halves sees a partial write.
    pub fn with_split_put_many() -> Self {
        StrictKv {
            split_put_many: true,
            ..StrictKv::default()
        }
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.data.get(key).map(String::as_str)
    }

    /// Number of keys stored.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn read(&self, keys: &[&str]) -> KvResponse {
        KvResponse::Values(
            keys.iter()
                .map(|key| self.data.get(*key).cloned())
                .collect(),
        )
    }

    /// New keys `pairs` would add, for the capacity check before any is
    /// written.
    fn new_keys(&self, pairs: &[(String, String)]) -> usize {
        pairs
            .iter()
            .filter(|(key, _)| !self.data.contains_key(key))
            .count()
    }

    fn write(&mut self, pairs: Vec<(String, String)>) -> KvResponse {
        if self.data.len() + self.new_keys(&pairs) > KEYS_MAX {
            return KvResponse::Refused(format!(
                "the store holds its limit of {KEYS_MAX} keys; overwrite existing keys instead"
            ));
        }
        let mut pairs = pairs;
        if self.split_put_many && pairs.len() > 1 {
            self.deferred = pairs.split_off(1);
        }
        for (key, value) in pairs {
            self.data.insert(key, value);
        }
        KvResponse::Written
    }

    fn execute(&mut self, request: KvRequest) -> KvResponse {
        if let Err(reason) = request.validate() {
            return KvResponse::Refused(reason);
        }
        match request {
            KvRequest::Get { key } => self.read(&[key.as_str()]),
            KvRequest::GetMany { keys } => {
                let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                self.read(&keys)
            }
            KvRequest::Put { key, value } => self.write(vec![(key, value)]),
            KvRequest::PutMany { pairs } => self.write(pairs),
        }
    }
}

impl StateMachine for StrictKv {
    fn apply(&mut self, _index: Index, command: &[u8]) -> Bytes {
        // Planted bug only: the rest of the last put_many rides along
        // with this entry.
        for (key, value) in std::mem::take(&mut self.deferred) {
            self.data.insert(key, value);
        }
        match KvRequest::decode(command) {
            Ok((_, request)) => self.execute(request).encode(),
            Err(error) => KvResponse::Refused(format!("malformed request: {error}")).encode(),
        }
    }

    fn query(&self, request: &[u8]) -> Option<Bytes> {
        let (_, request) = KvRequest::decode(request).ok()?;
        if !request.is_read() {
            return None;
        }
        if let Err(reason) = request.validate() {
            return Some(KvResponse::Refused(reason).encode());
        }
        Some(
            match &request {
                KvRequest::Get { key } => self.read(&[key.as_str()]),
                KvRequest::GetMany { keys } => {
                    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                    self.read(&keys)
                }
                _ => return None,
            }
            .encode(),
        )
    }

    /// Layout: version byte, key count (u64), the pairs, then the count
    /// and pairs of the deferred half-write (always empty without the
    /// planted bug).
    fn snapshot(&self) -> Bytes {
        let mut writer = Writer::new();
        writer.u8(SNAPSHOT_VERSION).u64(self.data.len() as u64);
        for (key, value) in &self.data {
            writer.str(key).str(value);
        }
        writer.u32(self.deferred.len() as u32);
        for (key, value) in &self.deferred {
            writer.str(key).str(value);
        }
        writer.finish()
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
        let mut snapshot = SnapshotReader::open(snapshot, "strict kv", SNAPSHOT_VERSION)?;
        let count = snapshot.count("key count", "keys", KEYS_MAX)?;
        let mut data = BTreeMap::new();
        for _ in 0..count {
            let key = snapshot.string("key")?;
            data.insert(key, snapshot.string("value")?);
        }
        // The planted bug's deferred half-write (empty without it).
        let deferred_count = snapshot
            .reader
            .count("deferred count", PUT_MANY_PAIRS_MAX)
            .map_err(|e| snapshot.error(e))?;
        let mut deferred = Vec::with_capacity(deferred_count);
        for _ in 0..deferred_count {
            let key = snapshot.string("key")?;
            deferred.push((key, snapshot.string("value")?));
        }
        snapshot.end()?;
        self.data = data;
        self.deferred = deferred;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn keys(items: &[&str]) -> Vec<String> {
        items.iter().map(|k| k.to_string()).collect()
    }

    fn apply(kv: &mut StrictKv, index: Index, request: KvRequest) -> KvResponse {
        KvResponse::decode(&kv.apply(index, &request.encode(index))).unwrap()
    }

    fn query(kv: &StrictKv, request: KvRequest) -> KvResponse {
        KvResponse::decode(&kv.query(&request.encode(0)).unwrap()).unwrap()
    }

    #[test]
    fn requests_and_responses_round_trip() {
        for request in [
            KvRequest::Get { key: "a".into() },
            KvRequest::GetMany {
                keys: keys(&["a", "b"]),
            },
            KvRequest::Put {
                key: "a".into(),
                value: "".into(),
            },
            KvRequest::PutMany {
                pairs: pairs(&[("a", "1"), ("b", "2")]),
            },
        ] {
            let bytes = request.encode(42);
            assert_eq!(KvRequest::decode(&bytes), Ok((42, request.clone())));
            for cut in 0..bytes.len() {
                assert!(KvRequest::decode(&bytes[..cut]).is_err());
            }
        }
        for response in [
            KvResponse::Values(vec![Some("x".into()), None]),
            KvResponse::Written,
            KvResponse::Refused("no".into()),
        ] {
            assert_eq!(KvResponse::decode(&response.encode()), Ok(response));
        }
    }

    #[test]
    fn put_many_is_applied_whole_and_reads_answer_like_apply() {
        let mut kv = StrictKv::new();
        assert_eq!(
            apply(
                &mut kv,
                1,
                KvRequest::PutMany {
                    pairs: pairs(&[("a", "1"), ("b", "1"), ("c", "1")])
                }
            ),
            KvResponse::Written
        );
        let read = KvRequest::GetMany {
            keys: keys(&["a", "b", "c", "d"]),
        };
        let expected = KvResponse::Values(vec![
            Some("1".into()),
            Some("1".into()),
            Some("1".into()),
            None,
        ]);
        assert_eq!(query(&kv, read.clone()), expected);
        assert_eq!(apply(&mut kv, 2, read), expected);
        // A write is not a query.
        assert!(kv
            .query(
                &KvRequest::Put {
                    key: "a".into(),
                    value: "2".into()
                }
                .encode(0)
            )
            .is_none());
    }

    #[test]
    fn invalid_requests_are_refused_and_change_nothing() {
        let mut kv = StrictKv::new();
        let before = kv.snapshot();
        for request in [
            KvRequest::PutMany { pairs: vec![] },
            KvRequest::PutMany {
                pairs: pairs(&[("a", "1"), ("a", "2")]),
            },
            KvRequest::Put {
                key: "".into(),
                value: "v".into(),
            },
            KvRequest::PutMany {
                pairs: (0..=PUT_MANY_PAIRS_MAX)
                    .map(|i| (format!("k{i}"), String::new()))
                    .collect(),
            },
        ] {
            assert!(matches!(apply(&mut kv, 1, request), KvResponse::Refused(_)));
        }
        assert!(matches!(
            KvResponse::decode(&kv.apply(2, b"\x01\x02")).unwrap(),
            KvResponse::Refused(_)
        ));
        assert_eq!(kv.snapshot(), before);
    }

    #[test]
    fn snapshot_restores_the_same_store_and_rejects_damage() {
        let mut kv = StrictKv::new();
        apply(
            &mut kv,
            1,
            KvRequest::PutMany {
                pairs: pairs(&[("a", "1"), ("b", "2")]),
            },
        );
        let snapshot = kv.snapshot();
        let mut copy = StrictKv::new();
        copy.restore(&snapshot).unwrap();
        assert_eq!(copy, kv);
        for cut in 0..snapshot.len() {
            assert!(StrictKv::new().restore(&snapshot[..cut]).is_err());
        }
        let mut wrong_version = snapshot.to_vec();
        wrong_version[0] = 9;
        assert!(StrictKv::new().restore(&wrong_version).is_err());
    }

    #[test]
    fn the_planted_bug_exposes_a_half_applied_put_many() {
        let mut kv = StrictKv::with_split_put_many();
        apply(
            &mut kv,
            1,
            KvRequest::PutMany {
                pairs: pairs(&[("a", "1"), ("b", "1")]),
            },
        );
        let read = KvRequest::GetMany {
            keys: keys(&["a", "b"]),
        };
        assert_eq!(
            query(&kv, read.clone()),
            KvResponse::Values(vec![Some("1".into()), None])
        );
        // The snapshot carries the pending half, so replicas agree.
        let mut copy = StrictKv::with_split_put_many();
        copy.restore(&kv.snapshot()).unwrap();
        assert_eq!(copy, kv);
        apply(
            &mut kv,
            2,
            KvRequest::Get {
                key: "zz".to_string(),
            },
        );
        assert_eq!(
            query(&kv, read),
            KvResponse::Values(vec![Some("1".into()), Some("1".into())])
        );
    }
}
