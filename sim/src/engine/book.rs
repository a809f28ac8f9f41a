//! Host entries: the simulated host's own replicated records, proposed with
//! [`Input::ProposeHost`] and handed back in `Apply` as
//! [`EntryPayload::Host`](concord::EntryPayload::Host), the way the
//! single-group tokio server kept its address book
//! (`concord_tokio::addresses`; the one runtime reads such entries only
//! when it upgrades that server's data directory, and keeps addresses in
//! its catalog).
//!
//! In the seeds that draw them, the leader is asked now and then to append
//! an address record (node id → a value standing for its address), and
//! always just before a membership change that adds or promotes a node
//! (the runtime appends the new node's address first). Each host keeps the
//! book its applied records build; like the runtime's, the book travels in
//! the host's snapshots in front of the state machine's bytes
//! ([`wrap_snapshot`]), since compaction drops the entries that carried it.
//!
//! The host hands a Host entry to the book, never to the state machine
//! (whose digests at each applied index are compared across nodes by the
//! other checks). The check: every node's book equals the book of the
//! committed log prefix it applied ([`HostEntries::book_at`]), after every
//! Host entry it applies and every snapshot it restores, so a record that
//! went anywhere but the book, or a book lost in a snapshot, is caught.

use std::collections::BTreeMap;

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use concord::state_machine::StateMachine;
use concord::{Index, Input, NodeId};

use super::{Event, FailureKind, Simulation, MS};
use crate::config::SimConfig;
use crate::faults::exponential;
use crate::workload::Workload;

/// A host's address book: node id → the value of its latest record.
pub(super) type Book = BTreeMap<NodeId, u64>;

/// First byte of an encoded record (a format tag, so that a record can be
/// told from anything else).
const RECORD_TAG: u8 = 0xad;

/// Bytes of an encoded record: tag, id, value.
const RECORD_BYTES: usize = 17;

/// Mean time between two host entries proposed during a run.
const HOST_ENTRY_MEAN_NS: u64 = 250 * MS;

/// This seed's host entries: the draws, and the record committed at each
/// index as first applied by any node (safety checks that every node
/// applies the same entry at an index).
pub(super) struct HostEntries {
    rng: ChaCha8Rng,
    next_value: u64,
    /// Records applied, by log index.
    records: BTreeMap<Index, (NodeId, u64)>,
    /// Records proposed at a leader.
    pub(super) proposed: u64,
}

impl HostEntries {
    /// Draws whether this seed proposes host entries (about half the
    /// seeds), from its own random stream.
    pub(super) fn draw(config: &SimConfig) -> Option<HostEntries> {
        if !config.host_entries {
            return None;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0x686f_7374_656e_7472);
        rng.set_stream(29);
        rng.gen_bool(0.5).then_some(HostEntries {
            rng,
            next_value: 1,
            records: BTreeMap::new(),
            proposed: 0,
        })
    }

    /// The book of the committed log prefix up to and including `index`.
    pub(super) fn book_at(&self, index: Index) -> Book {
        let mut book = Book::new();
        for (id, value) in self.records.range(..=index).map(|(_, record)| *record) {
            book.insert(id, value);
        }
        book
    }

    /// A forced recovery: the records from `diverged_at` on were in
    /// committed entries the survivor did not hold, gone with them.
    pub(super) fn forget_from(&mut self, diverged_at: Index) {
        let _ = self.records.split_off(&diverged_at);
    }

    /// Notes the record applied at `index`; an error if another record was
    /// applied there before.
    pub(super) fn on_applied(&mut self, index: Index, record: (NodeId, u64)) -> Result<(), String> {
        match self.records.insert(index, record) {
            Some(other) if other != record => Err(format!(
                "host entry at index {index} applied as {record:?}, elsewhere as {other:?}"
            )),
            _ => Ok(()),
        }
    }
}

/// The bytes of a Host entry recording that node `id` is at `value`.
pub(super) fn encode_record(id: NodeId, value: u64) -> Bytes {
    let mut bytes = Vec::with_capacity(RECORD_BYTES);
    bytes.push(RECORD_TAG);
    bytes.extend_from_slice(&id.to_le_bytes());
    bytes.extend_from_slice(&value.to_le_bytes());
    Bytes::from(bytes)
}

/// Reads a record back.
pub(super) fn decode_record(bytes: &[u8]) -> Result<(NodeId, u64), String> {
    if bytes.len() != RECORD_BYTES || bytes[0] != RECORD_TAG {
        return Err(format!(
            "a host entry of {} bytes is no record",
            bytes.len()
        ));
    }
    let word = |at: usize| {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(raw)
    };
    Ok((word(1), word(9)))
}

/// A host snapshot: the book (count, then id and value of each record),
/// then the state machine's bytes.
pub(super) fn wrap_snapshot(book: &Book, state: &[u8]) -> Bytes {
    let mut bytes = Vec::with_capacity(4 + 16 * book.len() + state.len());
    bytes.extend_from_slice(&(book.len() as u32).to_le_bytes());
    for (id, value) in book {
        bytes.extend_from_slice(&id.to_le_bytes());
        bytes.extend_from_slice(&value.to_le_bytes());
    }
    bytes.extend_from_slice(state);
    Bytes::from(bytes)
}

/// Splits a host snapshot into its book and the state machine's bytes.
pub(super) fn unwrap_snapshot(bytes: &Bytes) -> Result<(Book, Bytes), String> {
    let short = || format!("a host snapshot of {} bytes is cut short", bytes.len());
    let count = bytes.get(..4).ok_or_else(short)?;
    let count = u32::from_le_bytes([count[0], count[1], count[2], count[3]]) as usize;
    let end = count
        .checked_mul(16)
        .and_then(|len| len.checked_add(4))
        .filter(|end| *end <= bytes.len())
        .ok_or_else(short)?;
    let mut book = Book::new();
    for record in bytes[4..end].chunks_exact(16) {
        let mut id = [0u8; 8];
        let mut value = [0u8; 8];
        id.copy_from_slice(&record[..8]);
        value.copy_from_slice(&record[8..]);
        book.insert(u64::from_le_bytes(id), u64::from_le_bytes(value));
    }
    Ok((book, bytes.slice(end..)))
}

impl<S: StateMachine, W: Workload> Simulation<S, W> {
    /// Now and then: the leader appends an address record for a random
    /// node. Stops once liveness is satisfied (the quiet period's message
    /// budget is the cluster's own).
    pub(super) fn host_entry_tick(&mut self) {
        if self.failure.is_some() || self.probe.satisfied {
            return;
        }
        let nodes = self.hosts.len() as NodeId;
        if let Some(leader) = self.current_leader() {
            let entries = self.host_entries.as_mut().expect("host entries are on");
            let id = entries.rng.gen_range(1..=nodes);
            self.propose_address(leader, id);
        }
        let entries = self.host_entries.as_mut().expect("host entries are on");
        let delay = exponential(&mut entries.rng, HOST_ENTRY_MEAN_NS).max(MS);
        self.schedule(delay, Event::HostEntry);
    }

    /// Asks node `leader` to append a new address record for node `id`
    /// (refused like any proposal if it no longer leads). Nothing in seeds
    /// without host entries.
    pub(super) fn propose_address(&mut self, leader: usize, id: NodeId) {
        let Some(entries) = self.host_entries.as_mut() else {
            return;
        };
        let value = entries.next_value;
        entries.next_value += 1;
        entries.proposed += 1;
        self.note(Some(leader), || format!("host entry: n{id} at {value}"));
        self.step(leader, Input::ProposeHost(encode_record(id, value)), None);
    }

    /// Node `index` applied the Host entry at `entry_index`: its book takes
    /// the record and must then be the committed prefix's.
    pub(super) fn apply_host_entry(&mut self, index: usize, entry_index: Index, bytes: &[u8]) {
        let record = match decode_record(bytes) {
            Ok(record) => record,
            Err(message) => {
                self.fail(FailureKind::HostContract, Some(index), message);
                return;
            }
        };
        let Some(entries) = self.host_entries.as_mut() else {
            let message = format!("a host entry at index {entry_index} nobody proposed");
            self.fail(FailureKind::HostContract, Some(index), message);
            return;
        };
        if let Err(message) = entries.on_applied(entry_index, record) {
            self.fail(FailureKind::HostBook, Some(index), message);
            return;
        }
        self.hosts[index].book.insert(record.0, record.1);
        self.check_book(index, entry_index, "applying the host entry");
    }

    /// A host snapshot's book and state machine bytes: all state machine
    /// in seeds without host entries (their snapshots carry no book).
    pub(super) fn unwrap_host_snapshot(&self, data: &Bytes) -> Result<(Book, Bytes), String> {
        if self.host_entries.is_some() {
            unwrap_snapshot(data)
        } else {
            Ok((Book::new(), data.clone()))
        }
    }

    /// Node `index`'s book must be the committed prefix's up to `applied`.
    pub(super) fn check_book(&mut self, index: usize, applied: Index, when: &str) {
        let Some(entries) = self.host_entries.as_ref() else {
            return;
        };
        let expected = entries.book_at(applied);
        if self.hosts[index].book != expected {
            let message = format!(
                "after {when} at index {applied} its address book is {:?}, the committed log's is {expected:?}",
                self.hosts[index].book
            );
            self.fail(FailureKind::HostBook, Some(index), message);
        }
    }
}
