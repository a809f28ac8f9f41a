//! The key-value store: `get`, `get_many`, `put`, `put_many`, `append`
//! and compare-and-set, every one linearizable. A `put_many` is one log
//! entry applied in one step, so no read, on any replica, at any moment,
//! sees some of its keys written and others not; a `put_many` in flight
//! when the leader crashes is applied whole or not at all.
//!
//! Keys and values are byte strings. `append` and `cas` are what the
//! simulator's default workload runs, whose checker knows get, put,
//! append and cas; `get_many` and `put_many` what its `--service kv`
//! workload runs, checking atomicity besides.

use std::collections::BTreeSet;

use imbl::ordmap::Entry;
use imbl::OrdMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::codec::REQUEST_BYTES_MAX;
use crate::service::{one_to, Applied, Outcome, Service, ServiceRequest};
#[cfg(feature = "cli")]
use crate::service::{Out, Printed};

/// Most keys one `get_many` reads.
pub const GET_MANY_KEYS_MAX: usize = 64;
/// Most pairs one `put_many` writes.
pub const PUT_MANY_PAIRS_MAX: usize = 64;
/// Longest key.
pub const KEY_BYTES_MAX: usize = 1024;
/// Longest value, also one grown by `append`: what one request can carry.
pub const VALUE_BYTES_MAX: usize = REQUEST_BYTES_MAX;
/// Most keys the store holds; a write that would add more is refused.
pub const KEYS_MAX: usize = 1 << 20;
/// Most bytes of keys and values the store holds: its snapshot must stay
/// well within what a replica decodes (1 GiB,
/// [`concord::codec::SNAPSHOT_DECODE_LIMIT_BYTES`]).
pub const STORE_BYTES_MAX: u64 = 512 * 1024 * 1024;

/// A request to the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvRequest {
    /// Read one key.
    Get {
        /// The key.
        key: Bytes,
    },
    /// Read several keys at one instant.
    GetMany {
        /// The keys, answered in this order.
        keys: Vec<Bytes>,
    },
    /// Write one key.
    Put {
        /// The key.
        key: Bytes,
        /// Its new value.
        value: Bytes,
    },
    /// Write several keys atomically.
    PutMany {
        /// Keys and their new values; keys distinct.
        pairs: Vec<(Bytes, Bytes)>,
    },
    /// Append to a key's value (an absent key counts as empty).
    Append {
        /// The key.
        key: Bytes,
        /// What to append.
        value: Bytes,
    },
    /// Set `key` to `new` only if its value is `expected` (`None`:
    /// absent).
    Cas {
        /// The key.
        key: Bytes,
        /// The value the key must hold.
        expected: Option<Bytes>,
        /// The value to set.
        new: Bytes,
    },
}

impl ServiceRequest for KvRequest {
    fn is_read(&self) -> bool {
        matches!(self, KvRequest::Get { .. } | KvRequest::GetMany { .. })
    }

    fn validate(&self) -> Result<(), String> {
        match self {
            KvRequest::Get { key } => check_key(key),
            KvRequest::GetMany { keys } => {
                one_to("get_many reads", keys.len(), GET_MANY_KEYS_MAX, "keys")?;
                keys.iter().try_for_each(|key| check_key(key))
            }
            KvRequest::Put { key, value } | KvRequest::Append { key, value } => {
                check_key(key)?;
                check_value(value)
            }
            KvRequest::Cas { key, expected, new } => {
                check_key(key)?;
                check_value(new)?;
                expected.as_deref().map_or(Ok(()), check_value)
            }
            KvRequest::PutMany { pairs } => {
                one_to("put_many writes", pairs.len(), PUT_MANY_PAIRS_MAX, "keys")?;
                let mut seen = BTreeSet::new();
                for (key, value) in pairs {
                    check_key(key)?;
                    check_value(value)?;
                    if !seen.insert(key) {
                        return Err(format!(
                            "put_many names key {:?} twice",
                            String::from_utf8_lossy(key)
                        ));
                    }
                }
                Ok(())
            }
        }
    }
}

/// The store's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvResponse {
    /// The values read, in the order of the keys asked (`None`: absent).
    Values(Vec<Option<Bytes>>),
    /// The `put`, `put_many` or `append` was applied. No write answers
    /// with a value: the answer is kept in the writer's session (and so in
    /// every snapshot) until its next write, and a value may be large.
    Written,
    /// A `cas`: whether the value matched and was replaced.
    Swapped(bool),
}

/// The store.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kv {
    /// Persistent: a snapshot's copy of it is a clone of its root
    /// (`Service::snapshot_copy`), and later writes copy only the nodes
    /// they change. Serialised as an ordered map, the bytes of a
    /// `BTreeMap`'s.
    data: OrdMap<Bytes, Bytes>,
    /// Bytes of keys and values held (kept, so a write is checked against
    /// [`STORE_BYTES_MAX`] without a walk).
    stored_bytes: u64,
    /// Planted bug only: pairs of a `put_many` not applied yet; they are
    /// applied with the next log entry. Always empty otherwise.
    deferred: Vec<(Bytes, Bytes)>,
}

pub(crate) fn check_key(key: &[u8]) -> Result<(), String> {
    if key.is_empty() {
        return Err("a key must not be empty".to_string());
    }
    if key.len() > KEY_BYTES_MAX {
        return Err(format!(
            "a key of {} bytes is longer than {KEY_BYTES_MAX}",
            key.len()
        ));
    }
    Ok(())
}

/// Whether a store of `keys` keys holding `bytes` bytes of keys and
/// values is within its limits, or why not.
fn check_limits(keys: usize, bytes: u64) -> Result<(), String> {
    check_limits_of(keys as u64, KEYS_MAX as u64, bytes, STORE_BYTES_MAX)
}

/// Whether a store of `keys` keys holding `bytes` bytes is within limits
/// of `keys_max` keys and `bytes_max` bytes, or why not (the memory store's
/// and the disk store's limits differ, not their refusals).
pub(crate) fn check_limits_of(
    keys: u64,
    keys_max: u64,
    bytes: u64,
    bytes_max: u64,
) -> Result<(), String> {
    if keys > keys_max {
        return Err(format!(
            "the store holds its limit of {keys_max} keys; overwrite existing keys instead"
        ));
    }
    if bytes > bytes_max {
        return Err(format!(
            "the store would hold {bytes} bytes of keys and values, above its limit of \
             {bytes_max}; delete or shorten values first"
        ));
    }
    Ok(())
}

pub(crate) fn check_value(value: &[u8]) -> Result<(), String> {
    if value.len() > VALUE_BYTES_MAX {
        return Err(format!(
            "a value of {} bytes is longer than {VALUE_BYTES_MAX}",
            value.len()
        ));
    }
    Ok(())
}

impl Kv {
    /// Executes `request`; with `planted`, the service's planted
    /// mistake: a put_many is applied as two log entries would be, its
    /// first pair now and the rest with the next entry, so a read between
    /// them sees half of it (`crate::planted`).
    pub(crate) fn apply_as(
        &mut self,
        request: KvRequest,
        planted: bool,
    ) -> Result<KvResponse, String> {
        // Planted mistake only: the rest of the last put_many rides along
        // with this entry.
        for (key, value) in std::mem::take(&mut self.deferred) {
            // Within the limits: the whole put_many was checked.
            self.insert(key, value);
        }
        match request {
            KvRequest::Get { key } => Ok(self.values([&key])),
            KvRequest::GetMany { keys } => Ok(self.values(&keys)),
            KvRequest::Put { key, value } => {
                self.put(key, value)?;
                Ok(KvResponse::Written)
            }
            KvRequest::PutMany { mut pairs } => {
                if planted && pairs.len() > 1 {
                    // Checked whole, applied in two halves.
                    self.check_write(&pairs)?;
                    self.deferred = pairs.split_off(1);
                }
                self.write(pairs)?;
                Ok(KvResponse::Written)
            }
            KvRequest::Append { key, value } => {
                let mut new = self
                    .data
                    .get(&key)
                    .map(|old| old.to_vec())
                    .unwrap_or_default();
                new.extend_from_slice(&value);
                check_value(&new)?;
                self.put(key, Bytes::from(new))?;
                Ok(KvResponse::Written)
            }
            KvRequest::Cas { key, expected, new } => {
                if self.data.get(&key) != expected.as_ref() {
                    return Ok(KvResponse::Swapped(false));
                }
                self.put(key, new)?;
                Ok(KvResponse::Swapped(true))
            }
        }
    }

    /// The value of `key` (not linearizable: for tests and inspection).
    pub fn value(&self, key: &[u8]) -> Option<&Bytes> {
        self.data.get(key)
    }

    /// Number of keys stored.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn values<'a>(&self, keys: impl IntoIterator<Item = &'a Bytes>) -> KvResponse {
        KvResponse::Values(
            keys.into_iter()
                .map(|key| self.data.get(key).cloned())
                .collect(),
        )
    }

    /// The bytes the store would hold after writing `pairs`, or why it
    /// must not.
    fn check_write(&self, pairs: &[(Bytes, Bytes)]) -> Result<u64, String> {
        let mut keys = self.data.len();
        let mut bytes = self.stored_bytes;
        for (key, value) in pairs {
            match self.data.get(key) {
                Some(old) => bytes -= old.len() as u64,
                None => {
                    keys += 1;
                    bytes += key.len() as u64;
                }
            }
            bytes += value.len() as u64;
        }
        check_limits(keys, bytes)?;
        Ok(bytes)
    }

    /// Writes one pair, unless the store would exceed a limit: one walk
    /// of the map (a put is most of a store's writes).
    fn put(&mut self, key: Bytes, value: Bytes) -> Result<(), String> {
        let keys_before = self.data.len();
        let new_key_bytes = self.stored_bytes + key.len() as u64 + value.len() as u64;
        // Within the limits even if the key is new (the usual case): one
        // walk down the persistent map. Its `entry` looks the key up and
        // then inserts from the root again, so it is kept for puts near a
        // limit, where whether the key exists decides.
        let Err(refused_if_new) = check_limits(keys_before + 1, new_key_bytes) else {
            self.insert(key, value);
            return Ok(());
        };
        match self.data.entry(key) {
            Entry::Occupied(mut slot) => {
                let bytes = self.stored_bytes - slot.get().len() as u64 + value.len() as u64;
                check_limits(keys_before, bytes)?;
                slot.insert(value);
                self.stored_bytes = bytes;
            }
            Entry::Vacant(_) => return Err(refused_if_new),
        }
        debug_assert!(self.stored_bytes <= STORE_BYTES_MAX);
        Ok(())
    }

    /// Writes one pair, already checked.
    fn insert(&mut self, key: Bytes, value: Bytes) {
        let (key_bytes, value_bytes) = (key.len() as u64, value.len() as u64);
        match self.data.insert(key, value) {
            Some(old) => self.stored_bytes = self.stored_bytes - old.len() as u64 + value_bytes,
            None => self.stored_bytes += key_bytes + value_bytes,
        }
        debug_assert!(self.stored_bytes <= STORE_BYTES_MAX);
    }

    /// Writes every pair, or none when the store would exceed a limit.
    fn write(&mut self, pairs: Vec<(Bytes, Bytes)>) -> Result<(), String> {
        self.check_write(&pairs)?;
        for (key, value) in pairs {
            self.insert(key, value);
        }
        Ok(())
    }
}

impl Service for Kv {
    /// By key, as [`ShardMap::group_of_request`](crate::sharded_kv::ShardMap::group_of_request).
    fn placement(request: &KvRequest) -> crate::sharded::Placement<'_> {
        use crate::sharded::Placement;
        match request {
            KvRequest::Get { key }
            | KvRequest::Put { key, .. }
            | KvRequest::Append { key, .. }
            | KvRequest::Cas { key, .. } => Placement::Key(key),
            KvRequest::GetMany { keys } => Placement::Keys {
                what: "get_many",
                keys: keys.iter().map(|k| k.as_ref()).collect(),
            },
            KvRequest::PutMany { pairs } => Placement::Keys {
                what: "put_many",
                keys: pairs.iter().map(|(k, _)| k.as_ref()).collect(),
            },
        }
    }

    type Request = KvRequest;
    type Response = KvResponse;

    fn apply(&mut self, request: KvRequest, _at: Applied) -> Result<KvResponse, String> {
        self.apply_as(request, false)
    }

    fn read(&self, request: &KvRequest) -> Option<Outcome<Self>> {
        match request {
            KvRequest::Get { key } => Some(Ok(self.values([key]))),
            KvRequest::GetMany { keys } => Some(Ok(self.values(keys))),
            _ => None,
        }
    }

    /// A clone of the persistent map's root and two counters.
    fn snapshot_copy(&self) -> Option<Self> {
        Some(self.clone())
    }

    fn check_restored(&self) -> Result<(), String> {
        crate::service::at_most("keys", self.data.len(), KEYS_MAX)?;
        let mut bytes = 0u64;
        for (key, value) in &self.data {
            check_key(key)?;
            check_value(value)?;
            bytes += (key.len() + value.len()) as u64;
        }
        if bytes != self.stored_bytes || bytes > STORE_BYTES_MAX {
            return Err(format!(
                "it holds {bytes} bytes of keys and values but says {} (limit {STORE_BYTES_MAX})",
                self.stored_bytes
            ));
        }
        crate::service::at_most("deferred pairs", self.deferred.len(), PUT_MANY_PAIRS_MAX)
    }

    #[cfg(feature = "cli")]
    type Command = command_line::KvCommand;

    #[cfg(feature = "cli")]
    fn show(request: &Self::Request, response: Self::Response, out: &mut Out) -> Printed {
        command_line::show(request, response, out)
    }
}

/// `concord-cli kv ...` (feature `cli`).
#[cfg(feature = "cli")]
pub mod command_line {
    use std::io::Write;
    use std::path::{Path, PathBuf};

    use bytes::Bytes;

    use super::{KvRequest, KvResponse, VALUE_BYTES_MAX};
    use crate::{CommandError, Shown};

    /// The key-value store's commands.
    #[derive(Debug, clap::Subcommand)]
    pub enum KvCommand {
        /// Print the value (the bytes as stored, then a newline); a key that
        /// is absent prints nothing and exits 5.
        Get {
            /// The key.
            key: String,
        },
        /// Print KEY=VALUE (or KEY (absent)) for every key, all read at one
        /// instant.
        GetMany {
            /// The keys (1 to 64).
            #[arg(required = true)]
            keys: Vec<String>,
        },
        /// Set a value, given as VALUE or read from --value-file (a request,
        /// key and value encoded, is at most 4 MiB); prints ok.
        Put {
            /// The key.
            key: String,
            /// The new value (or give --value-file).
            #[arg(required_unless_present = "value_file")]
            value: Option<String>,
            /// Read the new value from this file, byte for byte; `-` reads
            /// standard input.
            #[arg(long, value_name = "PATH", conflicts_with = "value")]
            value_file: Option<PathBuf>,
        },
        /// Set every KEY=VALUE at once: no reader sees some set and others
        /// not; prints ok.
        PutMany {
            /// The pairs (1 to 64), keys distinct.
            #[arg(required = true, value_name = "KEY=VALUE")]
            pairs: Vec<String>,
        },
        /// Append to a value (an absent key counts as empty); prints ok.
        Append {
            /// The key.
            key: String,
            /// What to append.
            value: String,
        },
        /// Set NEW if the value is EXPECTED: `cas KEY EXPECTED NEW`, or
        /// `cas KEY --absent NEW` for "key not set"; prints swapped, or not
        /// swapped and exits 1.
        Cas {
            /// The key.
            key: String,
            /// The value expected (with --absent: the new value).
            #[arg(value_name = "EXPECTED")]
            expected: String,
            /// The new value (not given with --absent).
            #[arg(value_name = "NEW")]
            new: Option<String>,
            /// Expect the key not to be set (instead of EXPECTED).
            #[arg(long)]
            absent: bool,
        },
    }

    fn bytes(text: String) -> Bytes {
        Bytes::from(text.into_bytes())
    }

    /// `put --value-file`'s value: the file's bytes, or standard input's
    /// for `-`. Read up to one byte past the limit, so that a larger value
    /// is refused by its size without being held whole.
    fn read_value(path: &Path) -> Result<Bytes, CommandError> {
        use std::io::Read;
        let limit = VALUE_BYTES_MAX as u64 + 1;
        let mut value = Vec::new();
        let read = if path.as_os_str() == "-" {
            std::io::stdin().lock().take(limit).read_to_end(&mut value)
        } else {
            std::fs::File::open(path).and_then(|file| file.take(limit).read_to_end(&mut value))
        };
        read.map_err(|e| {
            CommandError::Input(format!(
                "cannot read the value from {}: {e}",
                path.display()
            ))
        })?;
        if value.len() as u64 >= limit {
            return Err(CommandError::TooLarge(format!(
                "the value in {} is larger than the limit of {VALUE_BYTES_MAX} bytes (4 MiB) a \
                 request may have; nothing was sent",
                path.display()
            )));
        }
        Ok(Bytes::from(value))
    }

    impl TryFrom<KvCommand> for KvRequest {
        type Error = CommandError;

        fn try_from(command: KvCommand) -> Result<KvRequest, CommandError> {
            command.request()
        }
    }

    impl KvCommand {
        /// The request it asks for.
        pub fn request(self) -> Result<KvRequest, CommandError> {
            Ok(match self {
                KvCommand::Get { key } => KvRequest::Get { key: bytes(key) },
                KvCommand::GetMany { keys } => KvRequest::GetMany {
                    keys: keys.into_iter().map(bytes).collect(),
                },
                KvCommand::Put {
                    key,
                    value,
                    value_file,
                } => {
                    let value = match (value, value_file) {
                        (Some(value), _) => bytes(value),
                        (None, Some(path)) => read_value(&path)?,
                        // Checked by clap.
                        (None, None) => {
                            return Err(CommandError::Usage(
                                "put needs VALUE or --value-file".to_string(),
                            ))
                        }
                    };
                    KvRequest::Put {
                        key: bytes(key),
                        value,
                    }
                }
                KvCommand::PutMany { pairs } => {
                    let mut split = Vec::with_capacity(pairs.len());
                    for pair in pairs {
                        let Some((key, value)) = pair.split_once('=') else {
                            return Err(CommandError::Usage(format!("{pair:?} is not KEY=VALUE")));
                        };
                        split.push((bytes(key.to_string()), bytes(value.to_string())));
                    }
                    KvRequest::PutMany { pairs: split }
                }
                KvCommand::Append { key, value } => KvRequest::Append {
                    key: bytes(key),
                    value: bytes(value),
                },
                KvCommand::Cas {
                    key,
                    expected,
                    new,
                    absent,
                } => {
                    let (expected, new) =
                        match (new, absent) {
                            (Some(new), false) => (Some(bytes(expected)), bytes(new)),
                            (None, true) => (None, bytes(expected)),
                            (Some(_), true) => {
                                return Err(CommandError::Usage(
                                    "cas takes KEY --absent NEW (no EXPECTED value with --absent)"
                                        .to_string(),
                                ))
                            }
                            (None, false) => return Err(CommandError::Usage(
                                "cas takes KEY EXPECTED NEW, or KEY --absent NEW for a key not set"
                                    .to_string(),
                            )),
                        };
                    KvRequest::Cas {
                        key: bytes(key),
                        expected,
                        new,
                    }
                }
            })
        }
    }

    /// Prints `response` to `request`.
    pub fn show(
        request: &KvRequest,
        response: KvResponse,
        out: &mut dyn Write,
    ) -> std::io::Result<Shown> {
        match (request, response) {
            (KvRequest::Get { key }, KvResponse::Values(mut values)) => {
                match values.pop().flatten() {
                    // The bytes as stored (a value put from a file may be
                    // binary), then a newline.
                    Some(value) => {
                        out.write_all(&value)?;
                        out.write_all(b"\n")?;
                    }
                    None => {
                        let key = String::from_utf8_lossy(key);
                        return Ok(Shown::Absent(format!("key {key:?} is absent")));
                    }
                }
            }
            (KvRequest::GetMany { keys }, KvResponse::Values(values)) => {
                for (key, value) in keys.iter().zip(values) {
                    let key = String::from_utf8_lossy(key);
                    match value {
                        Some(value) => writeln!(out, "{key}={}", String::from_utf8_lossy(&value))?,
                        None => writeln!(out, "{key} (absent)")?,
                    }
                }
            }
            (_, KvResponse::Swapped(true)) => writeln!(out, "swapped")?,
            (_, KvResponse::Swapped(false)) => {
                writeln!(out, "not swapped")?;
                return Ok(Shown::NotDone(
                    "compare-and-set did not match: the value is not the one expected".to_string(),
                ));
            }
            (_, KvResponse::Written) => writeln!(out, "ok")?,
            (request, response) => {
                return Ok(Shown::NotDone(format!(
                    "the server answered {response:?} to {request:?}"
                )))
            }
        }
        Ok(Shown::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;
    use crate::machine::{testing, ServiceMachine};
    use concord::state_machine::StateMachine;

    fn b(text: &str) -> Bytes {
        Bytes::copy_from_slice(text.as_bytes())
    }

    fn pairs(items: &[(&str, &str)]) -> Vec<(Bytes, Bytes)> {
        items.iter().map(|(k, v)| (b(k), b(v))).collect()
    }

    fn put_many(items: &[(&str, &str)]) -> KvRequest {
        KvRequest::PutMany {
            pairs: pairs(items),
        }
    }

    /// A put the key limit refuses leaves the store as it was, and an
    /// overwrite at the limit is still accepted.
    #[test]
    fn a_put_refused_at_the_key_limit_changes_nothing() {
        let mut kv = Kv::default();
        for i in 0..KEYS_MAX as u32 {
            kv.put(Bytes::copy_from_slice(&i.to_be_bytes()), b("v"))
                .unwrap();
        }
        let (len, bytes) = (kv.data.len(), kv.stored_bytes);
        let refused = kv.put(b("one more"), b("v")).unwrap_err();
        assert!(refused.contains("limit"), "{refused}");
        assert_eq!((kv.data.len(), kv.stored_bytes), (len, bytes));
        assert!(!kv.data.contains_key(&b("one more")));
        let first = Bytes::copy_from_slice(&0u32.to_be_bytes());
        kv.put(first.clone(), b("longer")).unwrap();
        assert_eq!(kv.data.get(&first), Some(&b("longer")));
        assert_eq!(kv.stored_bytes, bytes + 5);
    }

    fn keys(items: &[&str]) -> Vec<Bytes> {
        items.iter().map(|k| b(k)).collect()
    }

    fn apply(
        kv: &mut ServiceMachine<Kv>,
        index: u64,
        request: KvRequest,
    ) -> Result<KvResponse, String> {
        testing::apply(kv, index, &request)
    }

    fn query(kv: &ServiceMachine<Kv>, request: KvRequest) -> Result<KvResponse, String> {
        testing::query(kv, &request).expect("a read")
    }

    #[test]
    fn a_snapshot_source_serialises_the_state_it_was_taken_at() {
        let mut kv = ServiceMachine::<Kv>::new();
        for i in 0..2_000u64 {
            let key = b(&format!("key-{}", i % 700));
            let write = KvRequest::Put {
                key,
                value: b(&format!("value-{i}")),
            };
            assert_eq!(apply(&mut kv, i + 1, write), Ok(KvResponse::Written));
        }
        let at_source = kv.snapshot();
        let source = kv
            .snapshot_source()
            .expect("the store copies its map cheaply");
        // Writes after the copy (overwrites, new keys, an append, a cas)
        // do not reach it.
        for i in 2_000..3_000u64 {
            let key = b(&format!("key-{}", i % 1_100));
            let write = match i % 3 {
                0 => KvRequest::Put {
                    key,
                    value: b("later"),
                },
                1 => KvRequest::Append { key, value: b("+") },
                _ => KvRequest::Cas {
                    key,
                    expected: None,
                    new: b("new"),
                },
            };
            apply(&mut kv, i + 1, write).expect("applied");
        }
        assert_ne!(kv.snapshot(), at_source);
        assert_eq!(source(), at_source);
    }

    #[test]
    fn the_persistent_map_serialises_as_an_ordered_map() {
        // Snapshots written with the map a `BTreeMap` restore, and replicas
        // on either build write the same bytes.
        let mut tree = std::collections::BTreeMap::new();
        let mut map = OrdMap::new();
        for i in 0..300u32 {
            let (key, value) = (b(&format!("k{}", i * 7 % 300)), b(&"v".repeat(i as usize)));
            tree.insert(key.clone(), value.clone());
            map.insert(key, value);
        }
        let mut from_tree = Vec::new();
        let mut from_map = Vec::new();
        concord::codec::encode_into(&tree, &mut from_tree).unwrap();
        concord::codec::encode_into(&map, &mut from_map).unwrap();
        assert_eq!(from_tree, from_map);
    }

    #[test]
    fn put_many_is_applied_whole_and_reads_answer_like_apply() {
        let mut kv = ServiceMachine::<Kv>::new();
        let write = put_many(&[("a", "1"), ("b", "1"), ("c", "1")]);
        assert_eq!(apply(&mut kv, 1, write), Ok(KvResponse::Written));
        let read = KvRequest::GetMany {
            keys: keys(&["a", "b", "c", "d"]),
        };
        let expected = Ok(KvResponse::Values(vec![
            Some(b("1")),
            Some(b("1")),
            Some(b("1")),
            None,
        ]));
        assert_eq!(query(&kv, read.clone()), expected);
        assert_eq!(apply(&mut kv, 2, read), expected);
        // A write is not a query.
        let put = KvRequest::Put {
            key: b("a"),
            value: b("2"),
        };
        assert!(testing::query(&kv, &put).is_none());
    }

    #[test]
    fn append_and_cas_change_what_they_say() {
        let mut kv = ServiceMachine::<Kv>::new();
        let append = |value: &str| KvRequest::Append {
            key: b("k"),
            value: b(value),
        };
        assert_eq!(apply(&mut kv, 1, append("x")), Ok(KvResponse::Written));
        assert_eq!(apply(&mut kv, 2, append("y")), Ok(KvResponse::Written));
        let cas = |expected: Option<&str>, new: &str| KvRequest::Cas {
            key: b("k"),
            expected: expected.map(b),
            new: b(new),
        };
        assert_eq!(
            apply(&mut kv, 3, cas(None, "z")),
            Ok(KvResponse::Swapped(false))
        );
        assert_eq!(
            apply(&mut kv, 4, cas(Some("x"), "z")),
            Ok(KvResponse::Swapped(false))
        );
        assert_eq!(
            apply(&mut kv, 5, cas(Some("xy"), "z")),
            Ok(KvResponse::Swapped(true))
        );
        assert_eq!(kv.state().value(b"k"), Some(&b("z")));
        assert_eq!(kv.state().stored_bytes, 2);
    }

    #[test]
    fn invalid_and_foreign_requests_are_refused_and_change_nothing() {
        let mut kv = ServiceMachine::<Kv>::new();
        let before = kv.snapshot();
        for request in [
            KvRequest::PutMany { pairs: vec![] },
            put_many(&[("a", "1"), ("a", "2")]),
            KvRequest::Put {
                key: b(""),
                value: b("v"),
            },
            KvRequest::PutMany {
                pairs: (0..=PUT_MANY_PAIRS_MAX)
                    .map(|i| (b(&format!("k{i}")), Bytes::new()))
                    .collect(),
            },
        ] {
            assert!(apply(&mut kv, 1, request).is_err());
        }
        let junk = kv.apply(2, b"\x01\x02");
        let reason = codec::decode_answer::<Kv>(&junk).unwrap().unwrap_err();
        assert!(reason.contains("malformed request"), "{reason}");
        let mut other_version =
            codec::encode_request::<Kv>(3, &KvRequest::Get { key: b("a") }).to_vec();
        other_version[0] = 9;
        let reason = codec::decode_answer::<Kv>(&kv.apply(3, &other_version))
            .unwrap()
            .unwrap_err();
        assert!(
            reason.contains("version 9") && reason.contains("version 1"),
            "{reason}"
        );
        assert_eq!(kv.snapshot(), before);
    }

    #[test]
    fn the_store_refuses_a_write_past_its_byte_limit() {
        let mut kv = Kv::default();
        let at = Applied { index: 1 };
        kv.stored_bytes = STORE_BYTES_MAX - 3;
        let put = |value: &str| KvRequest::Put {
            key: b("k"),
            value: b(value),
        };
        let refused = kv.apply(put("vvv"), at).unwrap_err();
        assert!(refused.contains("above its limit"), "{refused}");
        assert_eq!(kv.stored_bytes, STORE_BYTES_MAX - 3);
        assert_eq!(kv.apply(put("vv"), at), Ok(KvResponse::Written));
        assert_eq!(kv.stored_bytes, STORE_BYTES_MAX);
        // An overwrite counts the old value out: one byte more is refused
        // and leaves the value, one less frees a byte.
        let refused = kv.apply(put("vvv"), at).unwrap_err();
        assert!(refused.contains("above its limit"), "{refused}");
        assert_eq!(kv.value(b"k").map(|v| &v[..]), Some(&b"vv"[..]));
        assert_eq!(kv.apply(put("v"), at), Ok(KvResponse::Written));
        assert_eq!(kv.stored_bytes, STORE_BYTES_MAX - 1);
    }

    #[test]
    fn snapshot_restores_the_same_store_and_rejects_damage() {
        let mut kv = ServiceMachine::<Kv>::new();
        apply(&mut kv, 1, put_many(&[("a", "1"), ("b", "2")])).unwrap();
        crate::machine::testing::restored_copy(&kv);
        // A total that does not add up is refused.
        let mut lying = kv.state().clone();
        lying.stored_bytes += 1;
        let error = ServiceMachine::<Kv>::new()
            .restore(&codec::encode_snapshot(&lying))
            .unwrap_err();
        assert!(error.to_string().contains("says 5"), "{error}");
    }

    #[test]
    fn a_state_larger_than_any_message_round_trips_through_a_snapshot() {
        // 80 MiB: past the 64 MiB limit of message decoding, which once
        // made such a state impossible to restore on a follower.
        let mut kv = ServiceMachine::<Kv>::new();
        for i in 0..80u32 {
            let put = KvRequest::Put {
                key: b(&format!("key-{i}")),
                value: Bytes::from(vec![i as u8; 1 << 20]),
            };
            apply(&mut kv, u64::from(i) + 1, put).unwrap();
        }
        let snapshot = kv.snapshot();
        assert!(snapshot.len() > concord::codec::DECODE_LIMIT_BYTES);
        let mut copy = ServiceMachine::<Kv>::new();
        copy.restore(&snapshot).unwrap();
        assert_eq!(copy.state().len(), 80);
        assert_eq!(
            copy.state().value(b"key-79"),
            Some(&Bytes::from(vec![79u8; 1 << 20]))
        );
    }

    #[cfg(feature = "planted-bugs")]
    #[test]
    fn the_planted_bug_exposes_a_half_applied_put_many() {
        let mut kv = ServiceMachine::<Kv>::with_planted_bug();
        apply(&mut kv, 1, put_many(&[("a", "1"), ("b", "1")])).unwrap();
        let read = KvRequest::GetMany {
            keys: keys(&["a", "b"]),
        };
        assert_eq!(
            query(&kv, read.clone()),
            Ok(KvResponse::Values(vec![Some(b("1")), None]))
        );
        // The snapshot carries the pending half, so replicas agree.
        let mut copy = ServiceMachine::<Kv>::with_planted_bug();
        copy.restore(&kv.snapshot()).unwrap();
        assert_eq!(copy, kv);
        apply(&mut kv, 2, KvRequest::Get { key: b("zz") }).unwrap();
        assert_eq!(
            query(&kv, read),
            Ok(KvResponse::Values(vec![Some(b("1")), Some(b("1"))]))
        );
    }
}
