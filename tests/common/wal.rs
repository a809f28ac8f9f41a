//! Driving a write-ahead log ([`FileStorage`]) from a test: entries,
//! one-entry writes, and waiting until writes are reported durable.

use std::time::{Duration, Instant};

use bytes::Bytes;
use concord::{Entry, EntryPayload, HardState, WriteId};
use concord_tokio::multi::shared_log::WalWrite;
use concord_tokio::storage::{PersistRequest, Storage, StorageError};
use concord_tokio::wal::FileStorage;
use tokio::sync::mpsc::UnboundedReceiver;

/// An entry at `index` of `term` whose command is `payload`.
pub fn entry(term: u64, index: u64, payload: &str) -> Entry {
    Entry {
        term,
        index,
        payload: EntryPayload::Command(Bytes::from(payload.to_string())),
    }
}

/// Write `i` (from 0) of a run of one-entry writes: id `i + 1`, and the
/// first also sets the term to the entry's.
pub fn one_entry_write(i: usize, entry: Entry) -> PersistRequest {
    PersistRequest {
        id: WriteId(i as u64 + 1),
        hard_state: (i == 0).then_some(HardState {
            term: entry.term,
            voted_for: None,
            ..Default::default()
        }),
        truncate_after: None,
        entries: vec![entry].into(),
    }
}

/// A shared-log write of one entry of `group` at `index` (term 1) whose
/// command is `payload_bytes` bytes of `byte`; the group's first entry
/// also sets its term.
pub fn group_entry_write(group: u64, index: u64, byte: u8, payload_bytes: usize) -> WalWrite {
    WalWrite::Log {
        group,
        hard_state: (index == 1).then_some(HardState {
            term: 1,
            voted_for: None,
            ..Default::default()
        }),
        truncate_after: None,
        entries: vec![Entry {
            term: 1,
            index,
            payload: EntryPayload::Command(Bytes::from(vec![byte; payload_bytes])),
        }]
        .into(),
    }
}

/// Every write id `reported` names until `last` (included), in order;
/// panics when the storage reports a failure or `last` takes over 10 s.
pub fn reported_until(
    reported: &mut UnboundedReceiver<Result<WriteId, StorageError>>,
    last: WriteId,
) -> Vec<WriteId> {
    let mut ids = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "WAL did not report in time");
        match reported.try_recv() {
            Ok(Ok(id)) => {
                ids.push(id);
                if id == last {
                    return ids;
                }
            }
            Ok(Err(e)) => panic!("storage failed: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}

/// Starts the (recovered) `storage`, submits `writes`, waits until the
/// last is reported durable and shuts it down; returns every id reported.
pub fn write_and_wait(storage: &mut FileStorage, writes: Vec<PersistRequest>) -> Vec<WriteId> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    storage.start(tx).unwrap();
    let last = writes.last().unwrap().id;
    for w in writes {
        storage.submit(w);
    }
    let ids = reported_until(&mut rx, last);
    storage.shutdown();
    ids
}
