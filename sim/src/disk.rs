//! The simulated disk of one node: a write-ahead log of records that are
//! first *written* (in the page cache, lost on a crash) and later *synced*
//! (durable). A crash may leave the first unsynced record torn on disk;
//! recovery detects it by checksum and drops it, like a real WAL.

use std::collections::VecDeque;

use concord::{Entry, EntryPayload, HardState, Index, LogPosition, Recovered, WriteId};

use crate::trace::TraceHash;

/// One `Persist` action as written to the log file.
#[derive(Clone, Debug)]
pub(crate) struct Record {
    pub(crate) id: WriteId,
    pub(crate) hard_state: Option<HardState>,
    pub(crate) truncate_after: Option<Index>,
    pub(crate) entries: Vec<Entry>,
}

impl Record {
    fn checksum(&self) -> u64 {
        let mut hash = TraceHash::new();
        hash.word(self.id.0);
        match self.hard_state {
            Some(hard_state) => {
                hash.word(1);
                hash.word(hard_state.term);
                hash.word(hard_state.voted_for.unwrap_or(0));
            }
            None => hash.word(0),
        }
        hash.word(self.truncate_after.map_or(u64::MAX, |index| index));
        hash.word(self.entries.len() as u64);
        for entry in &self.entries {
            hash.word(entry.index);
            hash.word(entry.term);
            match &entry.payload {
                EntryPayload::Command(bytes) => {
                    hash.word(bytes.len() as u64);
                    hash.bytes(bytes);
                }
                _ => hash.word(u64::MAX),
            }
        }
        hash.value()
    }
}

/// A record whose write was cut short by a crash.
#[derive(Clone, Debug)]
struct TornRecord {
    record: Record,
    stored_checksum: u64,
}

/// What went wrong applying a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ContractError(pub(crate) String);

/// The disk of one node.
#[derive(Clone, Debug, Default)]
pub(crate) struct Disk {
    /// Durable term and vote.
    hard_state: HardState,
    /// Durable log; `log[i]` has index `i + 1`.
    log: Vec<Entry>,
    /// Written, not yet synced, in write order.
    unsynced: VecDeque<Record>,
    /// Sync in progress: everything up to this id becomes durable when it
    /// completes.
    pub(crate) syncing_through: Option<WriteId>,
    torn: Option<TornRecord>,
    /// Torn records found and dropped by recovery.
    pub(crate) torn_dropped: u64,
}

impl Disk {
    pub(crate) fn write(&mut self, record: Record) {
        self.unsynced.push_back(record);
    }

    /// Id of the last record written.
    pub(crate) fn last_written(&self) -> Option<WriteId> {
        self.unsynced.back().map(|record| record.id)
    }

    /// Completes the sync in progress: records up to `through` become
    /// durable.
    pub(crate) fn complete_sync(&mut self, through: WriteId) -> Result<(), ContractError> {
        self.syncing_through = None;
        while self
            .unsynced
            .front()
            .is_some_and(|record| record.id <= through)
        {
            if let Some(record) = self.unsynced.pop_front() {
                self.make_durable(record)?;
            }
        }
        Ok(())
    }

    fn make_durable(&mut self, record: Record) -> Result<(), ContractError> {
        if let Some(after) = record.truncate_after {
            if (after as usize) < self.log.len() {
                self.log.truncate(after as usize);
            }
        }
        for entry in record.entries {
            let expected = self.log.len() as Index + 1;
            if entry.index != expected {
                return Err(ContractError(format!(
                    "write {} appends entry {} but the durable log ends at {}",
                    record.id.0,
                    entry.index,
                    expected - 1
                )));
            }
            self.log.push(entry);
        }
        if let Some(hard_state) = record.hard_state {
            self.hard_state = hard_state;
        }
        Ok(())
    }

    /// A crash: unsynced writes are lost; with `tear`, the first of them is
    /// left half-written on disk.
    pub(crate) fn crash(&mut self, tear: bool) -> bool {
        self.syncing_through = None;
        let mut torn = false;
        if tear {
            if let Some(mut record) = self.unsynced.pop_front() {
                let stored_checksum = record.checksum();
                // Half of the entries made it; or the hard state is garbled.
                if record.entries.len() >= 2 {
                    let keep = record.entries.len() / 2;
                    record.entries.truncate(keep);
                } else if let Some(hard_state) = record.hard_state.as_mut() {
                    hard_state.term ^= 0x5a5a;
                } else if let Some(entry) = record.entries.first_mut() {
                    entry.term ^= 0x5a5a;
                } else {
                    record.truncate_after =
                        Some(record.truncate_after.map_or(0, |index| index ^ 1));
                }
                self.torn = Some(TornRecord {
                    record,
                    stored_checksum,
                });
                torn = true;
            }
        }
        self.unsynced.clear();
        torn
    }

    /// What a restarting node reads back: the durable state, after
    /// checking and dropping a torn tail record.
    pub(crate) fn recover(&mut self) -> Result<Recovered, ContractError> {
        if let Some(torn) = self.torn.take() {
            if torn.record.checksum() == torn.stored_checksum {
                // Intact after all: it is a complete record, replay it.
                self.make_durable(torn.record)?;
            } else {
                self.torn_dropped += 1;
            }
        }
        Ok(Recovered {
            hard_state: self.hard_state,
            base: LogPosition::ZERO,
            entries: self.log.clone(),
            applied_index: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn entry(index: Index, term: u64) -> Entry {
        Entry {
            index,
            term,
            payload: EntryPayload::Command(Bytes::from(vec![index as u8; 4])),
        }
    }

    fn record(id: u64, entries: Vec<Entry>) -> Record {
        Record {
            id: WriteId(id),
            hard_state: Some(HardState {
                term: 1,
                voted_for: Some(1),
            }),
            truncate_after: None,
            entries,
        }
    }

    #[test]
    fn crash_loses_unsynced_writes_and_drops_torn_record() {
        let mut disk = Disk::default();
        disk.write(record(1, vec![entry(1, 1)]));
        disk.complete_sync(WriteId(1)).unwrap();
        disk.write(record(2, vec![entry(2, 1), entry(3, 1)]));
        disk.write(record(3, vec![entry(4, 1)]));
        assert!(disk.crash(true));
        let recovered = disk.recover().unwrap();
        assert_eq!(recovered.entries.len(), 1);
        assert_eq!(disk.torn_dropped, 1);
        assert_eq!(recovered.hard_state.term, 1);
    }

    #[test]
    fn truncation_then_append_is_applied_in_order() {
        let mut disk = Disk::default();
        disk.write(record(1, vec![entry(1, 1), entry(2, 1)]));
        disk.write(Record {
            id: WriteId(2),
            hard_state: None,
            truncate_after: Some(1),
            entries: vec![entry(2, 2)],
        });
        disk.complete_sync(WriteId(2)).unwrap();
        assert_eq!(
            disk.log.iter().map(|e| e.term).collect::<Vec<_>>(),
            vec![1, 2]
        );
        disk.write(record(3, vec![entry(5, 2)]));
        assert!(disk.complete_sync(WriteId(3)).is_err());
    }
}
