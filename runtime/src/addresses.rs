//! The replicated address book: where every member of the cluster listens.
//!
//! A server's `--peers` names the nodes the cluster was born with. A node
//! added at runtime (see [`AdminRequest`](super::wire::AdminRequest)) has
//! an address none of them was started with, and every node that may
//! become leader must be able to reach it — also after every node
//! restarted with its original `--peers`. So the address book is
//! replicated through the log and survives compaction:
//!
//! * **In the log.** An admin request that adds a node carries its id and
//!   address. The leader first appends an [`AddressRecord`] as an
//!   [`EntryPayload::Host`](concord::EntryPayload::Host) entry (never seen by
//!   the state machine), waits for it to commit, and only then proposes
//!   the membership change. So by the time any node treats the new node
//!   as a member, the address is committed in the log before that change.
//! * **Effective when appended.** A replica adopts an address as soon as
//!   the record is in its log (when it is handed to storage, and at
//!   recovery for every record in the recovered log), not when it is
//!   applied. A restarted node must be able to reach every member *before*
//!   it knows what is committed — it may need the new node's vote to learn
//!   it. An address from an entry that is later truncated is harmless: it
//!   only says where to dial, a later record for the same id replaces it,
//!   and a node answering under another id is refused by the handshake.
//! * **In snapshots.** Compaction drops the entries that carried the
//!   records, so a snapshot's bytes carry the address book in front of the
//!   state machine's data ([`wrap_snapshot`]/[`unwrap_snapshot`]). A node
//!   that installs the leader's snapshot (a new, empty learner typically
//!   does) learns every address from it.
//!
//! On start a server's book is its `--peers`, overlaid by the snapshot's
//! book, overlaid by every record in its log in index order: what was
//! replicated wins over the command line.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use concord::NodeId;

use super::codec;

/// Node id → `host:port` the node listens on (peers and clients).
pub type AddressBook = BTreeMap<NodeId, String>;

/// Longest address accepted, in bytes.
pub const ADDRESS_BYTES_MAX: usize = 256;

/// Most entries of an address book read from a snapshot.
pub const ADDRESS_BOOK_ENTRIES_MAX: usize = 65_536;

/// What a runtime [`EntryPayload::Host`](concord::EntryPayload::Host) entry
/// holds. An enum so that later runtime records can be added without a new
/// entry kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum HostRecord {
    /// Node `id` listens at `addr` from now on.
    Address(AddressRecord),
}

/// One address of the book.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressRecord {
    /// The node.
    pub id: NodeId,
    /// Where it listens, `host:port`.
    pub addr: String,
}

impl HostRecord {
    /// The bytes of an entry holding this record.
    pub fn encode(&self) -> Result<Bytes, String> {
        codec::encode(self)
            .map(Bytes::from)
            .map_err(|e| e.to_string())
    }

    /// Reads a record back; `Err` for bytes that are not one (written by a
    /// newer version, or damaged).
    pub fn decode(bytes: &[u8]) -> Result<HostRecord, String> {
        codec::decode(bytes, ADDRESS_BYTES_MAX + 64).map_err(|e| e.to_string())
    }
}

/// Checks an address given by a user: a `host:port` socket address like
/// `127.0.0.1:7004`, as `--peers` takes.
pub fn validate_address(addr: &str) -> Result<(), String> {
    if addr.len() > ADDRESS_BYTES_MAX {
        return Err(format!(
            "address of {} bytes is longer than {ADDRESS_BYTES_MAX}",
            addr.len()
        ));
    }
    addr.parse::<std::net::SocketAddr>()
        .map(|_| ())
        .map_err(|_| format!("{addr:?} is not a host:port address like 127.0.0.1:7004"))
}

/// The address book shared by the server loop (which updates it), the
/// transport (which dials it) and the listener (which accepts peers named
/// in it, and adds the address of a member it learnt of from another:
/// see [`listener`](super::listener)).
#[derive(Clone, Debug, Default)]
pub struct SharedAddressBook(Arc<SharedBook>);

#[derive(Debug, Default)]
struct SharedBook {
    book: RwLock<AddressBook>,
    /// Changes made so far.
    generation: AtomicU64,
}

impl SharedAddressBook {
    /// A book holding `initial`.
    pub fn new(initial: AddressBook) -> Self {
        SharedAddressBook(Arc::new(SharedBook {
            book: RwLock::new(initial),
            generation: AtomicU64::new(0),
        }))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, AddressBook> {
        self.0.book.read().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of the book.
    pub fn get(&self) -> AddressBook {
        self.read().clone()
    }

    /// The address of `id`, if known.
    pub fn address(&self, id: NodeId) -> Option<String> {
        self.read().get(&id).cloned()
    }

    /// Whether `id` has an address.
    pub fn contains(&self, id: NodeId) -> bool {
        self.read().contains_key(&id)
    }

    /// Sets `id`'s address; returns whether it changed.
    pub fn set(&self, id: NodeId, addr: &str) -> bool {
        let mut book = self.0.book.write().unwrap_or_else(|e| e.into_inner());
        if book.get(&id).map(String::as_str) == Some(addr) {
            return false;
        }
        book.insert(id, addr.to_string());
        self.0.generation.fetch_add(1, Ordering::Release);
        true
    }

    /// How many changes [`set`](Self::set) made so far: a holder that
    /// copies the book elsewhere (the server into its transport) copies
    /// it again when this moved.
    pub fn generation(&self) -> u64 {
        self.0.generation.load(Ordering::Acquire)
    }
}

/// First bytes of a snapshot whose data carries an address book. Snapshots
/// without them (written before the book existed) hold the state machine's
/// data alone.
const SNAPSHOT_MAGIC: &[u8; 8] = b"CNCDAB01";

/// The bytes of a snapshot: `book` in front of the state machine's `data`
/// (magic, book length as u32 little-endian, the book, the data).
pub fn wrap_snapshot(book: &AddressBook, data: &[u8]) -> Result<Bytes, String> {
    let encoded = codec::encode(book).map_err(|e| e.to_string())?;
    let length = u32::try_from(encoded.len())
        .map_err(|_| "the address book does not fit a snapshot header".to_string())?;
    let mut out = BytesMut::with_capacity(SNAPSHOT_MAGIC.len() + 4 + encoded.len() + data.len());
    out.put_slice(SNAPSHOT_MAGIC);
    out.put_u32_le(length);
    out.put_slice(&encoded);
    out.put_slice(data);
    Ok(out.freeze())
}

/// Splits a snapshot's bytes into its address book (empty for a snapshot
/// written before books traveled in snapshots) and the state machine's
/// data.
pub fn unwrap_snapshot(data: Bytes) -> Result<(AddressBook, Bytes), String> {
    if data.len() < SNAPSHOT_MAGIC.len() + 4 || &data[..SNAPSHOT_MAGIC.len()] != SNAPSHOT_MAGIC {
        return Ok((AddressBook::new(), data));
    }
    let at = SNAPSHOT_MAGIC.len();
    let length = u32::from_le_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]) as usize;
    let start = at + 4;
    let end = start
        .checked_add(length)
        .filter(|end| *end <= data.len())
        .ok_or_else(|| "the snapshot's address book runs past its end".to_string())?;
    let limit = ADDRESS_BOOK_ENTRIES_MAX * (ADDRESS_BYTES_MAX + 16);
    let book: AddressBook = codec::decode(&data[start..end], limit)
        .map_err(|e| format!("the snapshot's address book is unreadable: {e}"))?;
    if book.len() > ADDRESS_BOOK_ENTRIES_MAX {
        return Err(format!(
            "the snapshot's address book has {} entries (at most {ADDRESS_BOOK_ENTRIES_MAX})",
            book.len()
        ));
    }
    Ok((book, data.slice(end..)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_round_trip_and_legacy() {
        let mut book = AddressBook::new();
        book.insert(4, "127.0.0.1:7004".to_string());
        let wrapped = wrap_snapshot(&book, b"state").unwrap();
        let (back, data) = unwrap_snapshot(wrapped.clone()).unwrap();
        assert_eq!(back, book);
        assert_eq!(&data[..], b"state");
        // A snapshot written before the book: all state machine data.
        let (back, data) = unwrap_snapshot(Bytes::from_static(b"old state")).unwrap();
        assert!(back.is_empty());
        assert_eq!(&data[..], b"old state");
        // A length past the end is refused, not a panic.
        let mut bad = wrapped.to_vec();
        bad[8] = 0xff;
        assert!(unwrap_snapshot(Bytes::from(bad)).is_err());
    }

    #[test]
    fn record_round_trip_and_address_checks() {
        let record = HostRecord::Address(AddressRecord {
            id: 4,
            addr: "127.0.0.1:7004".to_string(),
        });
        assert_eq!(
            HostRecord::decode(&record.encode().unwrap()).unwrap(),
            record
        );
        assert!(HostRecord::decode(b"\xff\xff\xff").is_err());
        assert!(validate_address("127.0.0.1:7004").is_ok());
        assert!(validate_address("localhost").is_err());
        assert!(validate_address(&"1".repeat(300)).is_err());
    }
}
