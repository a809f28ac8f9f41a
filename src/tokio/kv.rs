//! The key-value service the binaries serve: operations, results, and a
//! deterministic state machine.
//!
//! Exactly-once execution comes from the shared session layer
//! ([`crate::session`]): the server runs `WithSessions<KvStore>`
//! ([`kv_state_machine`]); a client registers a session through the log,
//! then sends each [`KvOp`] (bincode) wrapped by
//! [`session::encode_command`](crate::session::encode_command) with its
//! client id and sequence number; a retry of the same number is answered
//! from the session's cache instead of being executed twice.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::session::WithSessions;
use crate::state_machine::{RestoreError, StateMachine};
use crate::Index;

use super::codec;

/// Most client sessions the key-value service remembers.
pub const SESSIONS_MAX: usize = 65_536;

/// Largest encoded operation accepted.
pub const COMMAND_BYTES_MAX: usize = 4 * 1024 * 1024;

/// The state machine a key-value server runs: the store behind the
/// exactly-once session layer.
pub type KvStateMachine = WithSessions<KvStore>;

/// A fresh key-value state machine with sessions.
pub fn kv_state_machine() -> KvStateMachine {
    WithSessions::new(KvStore::new(), SESSIONS_MAX)
}

/// One key-value operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvOp {
    /// Read a key (through the log, so the read is linearizable).
    Get {
        /// The key.
        key: Bytes,
    },
    /// Set a key.
    Put {
        /// The key.
        key: Bytes,
        /// The new value.
        value: Bytes,
    },
    /// Append to a key's value (an absent key counts as empty).
    Append {
        /// The key.
        key: Bytes,
        /// Bytes to append.
        value: Bytes,
    },
    /// Set a key to `new` only if its value is `expected` (`None`: absent).
    Cas {
        /// The key.
        key: Bytes,
        /// The value the key must have.
        expected: Option<Bytes>,
        /// The value to set.
        new: Bytes,
    },
}

/// The outcome of a [`KvOp`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvResult {
    /// The value read (`Get`), or the value after the write (`Put`, `Append`).
    Value(Option<Bytes>),
    /// A `Cas` outcome: whether it swapped, and the value now stored.
    Cas {
        /// True when the value matched and was replaced.
        swapped: bool,
        /// The value after the operation.
        current: Option<Bytes>,
    },
    /// The operation bytes could not be decoded.
    Malformed,
}

/// A key-value map: the state machine without sessions. Commands are
/// bincode [`KvOp`]s, responses bincode [`KvResult`]s.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct KvStore {
    data: BTreeMap<Bytes, Bytes>,
}

impl KvStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads a key directly (not linearizable: for tests and inspection).
    pub fn get(&self, key: &[u8]) -> Option<&Bytes> {
        self.data.get(key)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when no key is stored.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn execute(&mut self, op: KvOp) -> KvResult {
        match op {
            KvOp::Get { key } => KvResult::Value(self.data.get(&key).cloned()),
            KvOp::Put { key, value } => {
                self.data.insert(key, value.clone());
                KvResult::Value(Some(value))
            }
            KvOp::Append { key, value } => {
                let mut new = self.data.get(&key).map(|v| v.to_vec()).unwrap_or_default();
                new.extend_from_slice(&value);
                let new = Bytes::from(new);
                self.data.insert(key, new.clone());
                KvResult::Value(Some(new))
            }
            KvOp::Cas { key, expected, new } => {
                let current = self.data.get(&key).cloned();
                if current == expected {
                    self.data.insert(key, new.clone());
                    KvResult::Cas {
                        swapped: true,
                        current: Some(new),
                    }
                } else {
                    KvResult::Cas {
                        swapped: false,
                        current,
                    }
                }
            }
        }
    }
}

impl StateMachine for KvStore {
    fn apply(&mut self, _index: Index, command: &[u8]) -> Bytes {
        let result = match codec::decode::<KvOp>(command, COMMAND_BYTES_MAX) {
            Ok(op) => self.execute(op),
            Err(_) => KvResult::Malformed,
        };
        Bytes::from(codec::encode(&result).unwrap_or_default())
    }

    /// Answers a [`KvOp::Get`] without the log; nothing else is a read.
    fn query(&self, request: &[u8]) -> Option<Bytes> {
        match codec::decode::<KvOp>(request, COMMAND_BYTES_MAX) {
            Ok(KvOp::Get { key }) => {
                let result = KvResult::Value(self.data.get(&key).cloned());
                codec::encode(&result).ok().map(Bytes::from)
            }
            _ => None,
        }
    }

    fn snapshot(&self) -> Bytes {
        // A map of byte strings always encodes; an empty snapshot in its
        // place would silently drop the whole state.
        Bytes::from(codec::encode(self).expect("the key-value store encodes"))
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
        *self = codec::decode_snapshot(snapshot).map_err(|e| RestoreError::new(e.to_string()))?;
        Ok(())
    }
}

/// A state machine that does nothing and answers with empty bytes (for
/// benchmarks of the replication path alone).
#[derive(Clone, Copy, Debug, Default)]
pub struct NullStateMachine;

impl StateMachine for NullStateMachine {
    fn apply(&mut self, _index: Index, _command: &[u8]) -> Bytes {
        Bytes::new()
    }

    fn snapshot(&self) -> Bytes {
        Bytes::new()
    }

    fn restore(&mut self, _snapshot: &[u8]) -> Result<(), RestoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{self, SessionResponse};

    fn result(bytes: Bytes) -> KvResult {
        match SessionResponse::decode(&bytes).unwrap() {
            SessionResponse::Ok(bytes) => codec::decode(&bytes, 1 << 20).unwrap(),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn retries_apply_once() {
        let mut sm = kv_state_machine();
        let SessionResponse::Registered { client } =
            SessionResponse::decode(&sm.apply(1, &session::encode_register())).unwrap()
        else {
            panic!("not registered")
        };
        let append = |seq: u64, v: &'static [u8]| {
            let op = codec::encode(&KvOp::Append {
                key: Bytes::from_static(b"k"),
                value: Bytes::from_static(v),
            })
            .unwrap();
            session::encode_command(client, seq, &op)
        };
        assert_eq!(
            result(sm.apply(2, &append(1, b"a"))),
            KvResult::Value(Some(Bytes::from_static(b"a")))
        );
        assert_eq!(
            result(sm.apply(3, &append(1, b"a"))),
            KvResult::Value(Some(Bytes::from_static(b"a")))
        );
        assert_eq!(
            result(sm.apply(4, &append(2, b"b"))),
            KvResult::Value(Some(Bytes::from_static(b"ab")))
        );
        assert_eq!(sm.inner().get(b"k"), Some(&Bytes::from_static(b"ab")));
        assert_eq!(
            result(sm.apply(5, &session::encode_command(client, 3, b"junk"))),
            KvResult::Malformed
        );
        let snap = sm.inner().snapshot();
        let mut copy = KvStore::new();
        copy.restore(&snap).unwrap();
        assert_eq!(copy.get(b"k"), Some(&Bytes::from_static(b"ab")));
    }

    #[test]
    fn a_state_larger_than_any_message_round_trips_through_a_snapshot() {
        // 80 MiB: past the 64 MiB limit of message decoding, which once
        // made such a state impossible to restore on a follower.
        let mut store = KvStore::new();
        for i in 0..80u32 {
            store.data.insert(
                Bytes::from(format!("key-{i}")),
                Bytes::from(vec![i as u8; 1 << 20]),
            );
        }
        let snap = store.snapshot();
        assert!(snap.len() > codec::DECODE_LIMIT_BYTES);
        let mut copy = KvStore::new();
        copy.restore(&snap).unwrap();
        assert_eq!(copy.len(), 80);
        assert_eq!(copy.get(b"key-79"), Some(&Bytes::from(vec![79u8; 1 << 20])));
    }
}
