//! The simulated disk of one node: a write-ahead log of records that are
//! first *written* (in the page cache, lost on a crash) and later *synced*
//! (durable). A crash may leave the first unsynced record torn on disk;
//! recovery detects it by checksum and drops it, like a real WAL.
//!
//! Snapshots live beside the log. One received from a leader is a log
//! record (it is ordered with the writes around it); one the node took
//! itself is a snapshot file, written then synced on its own, which a
//! crash before the sync loses or leaves torn (recovery checks its
//! checksum and keeps the previous snapshot). Storing a snapshot drops the
//! log entries it covers; the log continues after the newest snapshot.

use std::collections::VecDeque;

use concord::{
    checksum64, Entry, EntryPayload, HardState, Index, LogPosition, Recovered, Snapshot, WriteId,
};

use crate::trace::TraceHash;

/// One `Persist` action as written to the log file.
#[derive(Clone, Debug)]
pub(crate) struct Record {
    pub(crate) id: WriteId,
    pub(crate) hard_state: Option<HardState>,
    pub(crate) truncate_after: Option<Index>,
    pub(crate) entries: Vec<Entry>,
    /// A snapshot received from a leader, and whether the whole log goes
    /// with the entries it covers.
    pub(crate) snapshot: Option<(Snapshot, bool)>,
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
                hash.word(u64::from(hard_state.recovery.is_recovering()));
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
        if let Some((snapshot, discard_log)) = &self.snapshot {
            hash.word(snapshot.position.index);
            hash.word(snapshot.position.term);
            hash.word(u64::from(*discard_log));
            hash.word(checksum64(&snapshot.data));
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
    /// Durable snapshot, if any.
    snapshot: Option<Snapshot>,
    /// The durable snapshot is one the node took itself (not one received
    /// from a leader).
    snapshot_own: bool,
    /// The durable log continues after this position (the snapshot's).
    base: LogPosition,
    /// Durable log; `log[i]` has index `base.index + 1 + i`.
    log: Vec<Entry>,
    /// The node's own snapshot, written, not yet synced.
    pending_snapshot: Option<Snapshot>,
    /// A snapshot file a crash cut short: (the data as left on disk, the
    /// checksum written in its header).
    torn_snapshot: Option<(Snapshot, u64)>,
    /// Written, not yet synced, in write order.
    unsynced: VecDeque<Record>,
    /// Sync in progress: everything up to this id becomes durable when it
    /// completes.
    pub(crate) syncing_through: Option<WriteId>,
    torn: Option<TornRecord>,
    /// Torn records found and dropped by recovery.
    pub(crate) torn_dropped: u64,
    /// A durable state machine's own file (`crate::durable`), kept here
    /// while the node is down; its state machine holds it while it runs.
    /// Lost with the disk.
    pub(crate) sm_file: Option<crate::durable::DurableFile>,
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

    /// Index of the last durable entry (or of the snapshot).
    pub(crate) fn last_index(&self) -> Index {
        self.base.index + self.log.len() as Index
    }

    /// Index of the durable log's base (the stored snapshot's last entry).
    pub(crate) fn base_index(&self) -> Index {
        self.base.index
    }

    /// The disk loses its last `entries` synced log entries (at most those
    /// above the base), and with them whatever a crash left half-written
    /// after them: a damaged disk a node restarted past with
    /// `--accept-wal-data-loss`, or a restore from an older backup.
    /// Returns the index the durable log now ends at.
    pub(crate) fn lose_synced_tail(&mut self, entries: Index) -> Index {
        let keep = (self.log.len() as Index).saturating_sub(entries);
        self.log.truncate(keep as usize);
        self.torn = None;
        self.unsynced.clear();
        self.last_index()
    }

    /// A disk that goes back in time (the disk-loss fault): loses its last
    /// `entries` synced entries (as many as it holds past its snapshot at
    /// most) and everything unsynced, and its term and vote go back to
    /// the last entry left (a disk image restored, or one that lied about
    /// its syncs), and its host, noticing, stores the recovery marker
    /// ([`concord::StorageRecovery::AwaitingReports`]) before it starts
    /// the node again. Returns the last position left.
    pub(crate) fn roll_back(&mut self, entries: Index) -> LogPosition {
        self.lose_synced_tail(entries);
        let last = self.log.last().map_or(self.base, Entry::position);
        if last.term < self.hard_state.term {
            self.hard_state = HardState::new(last.term, None);
        }
        self.hard_state.recovery = concord::StorageRecovery::AwaitingReports;
        last
    }

    /// The node's own snapshot, written to a file (not yet synced).
    pub(crate) fn write_snapshot(&mut self, snapshot: Snapshot) {
        self.pending_snapshot = Some(snapshot);
    }

    /// The snapshot file is synced: it becomes the durable snapshot (unless
    /// a newer one is stored already). Returns it.
    pub(crate) fn sync_snapshot(&mut self) -> Option<Snapshot> {
        let snapshot = self.pending_snapshot.take()?;
        self.store_snapshot(snapshot.clone(), false, true);
        Some(snapshot)
    }

    /// A host that trusts an unsynced snapshot file: drops the log entries
    /// it covers at once (planted bug).
    pub(crate) fn drop_log_under(&mut self, position: LogPosition) {
        if position.index <= self.base.index {
            return;
        }
        let covered = (position.index - self.base.index).min(self.log.len() as Index);
        self.log.drain(..covered as usize);
        self.base = position;
    }

    /// Keeps the newer snapshot and drops the entries it covers (all of
    /// them with `discard_log`); `own` if the node took it itself.
    fn store_snapshot(&mut self, snapshot: Snapshot, discard_log: bool, own: bool) {
        if discard_log {
            self.log.clear();
        }
        let position = snapshot.position;
        if self
            .snapshot
            .as_ref()
            .is_some_and(|stored| stored.position.index >= position.index)
        {
            return;
        }
        let covered = position.index.saturating_sub(self.base.index);
        if covered >= self.log.len() as Index {
            self.log.clear();
        } else {
            self.log.drain(..covered as usize);
        }
        self.base = position;
        self.snapshot = Some(snapshot);
        self.snapshot_own = own;
    }

    fn make_durable(&mut self, record: Record) -> Result<(), ContractError> {
        if let Some((snapshot, discard_log)) = record.snapshot {
            self.store_snapshot(snapshot, discard_log, false);
        }
        if let Some(after) = record.truncate_after {
            let keep = after.saturating_sub(self.base.index);
            if (keep as usize) < self.log.len() {
                self.log.truncate(keep as usize);
            }
        }
        for entry in record.entries {
            if entry.index <= self.base.index {
                // Covered by a snapshot stored since the write was issued
                // (only a host that reports writes durable before they are
                // can order them so): the snapshot holds its effect.
                continue;
            }
            let expected = self.last_index() + 1;
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
        if let Some(mut snapshot) = self.pending_snapshot.take() {
            if tear {
                let checksum = checksum64(&snapshot.data);
                let half = snapshot.data.len() / 2;
                snapshot.data = snapshot.data.slice(..half);
                self.torn_snapshot = Some((snapshot, checksum));
                torn = true;
            }
        }
        torn
    }

    /// The stored snapshot, if any (what a restarting host restores from).
    pub(crate) fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref()
    }

    /// Whether the stored snapshot is one the node took itself.
    pub(crate) fn snapshot_is_own(&self) -> bool {
        self.snapshot.is_some() && self.snapshot_own
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
        if let Some((snapshot, checksum)) = self.torn_snapshot.take() {
            if checksum64(&snapshot.data) == checksum {
                self.store_snapshot(snapshot, false, true);
            } else {
                self.torn_dropped += 1;
            }
        }
        Ok(Recovered {
            hard_state: self.hard_state,
            base: self.base,
            entries: self.log.clone(),
            // The host restores its state machine from the snapshot.
            applied_index: self.base.index,
            membership: self
                .snapshot
                .as_ref()
                .and_then(|snapshot| snapshot.membership.clone()),
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
                ..Default::default()
            }),
            truncate_after: None,
            entries,
            snapshot: None,
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

    fn snapshot_at(index: Index) -> Snapshot {
        Snapshot::new(
            LogPosition::new(index, 1),
            Bytes::from(vec![index as u8; 64]),
        )
    }

    #[test]
    fn a_synced_snapshot_replaces_the_log_under_it() {
        let mut disk = Disk::default();
        disk.write(record(1, (1..=5).map(|i| entry(i, 1)).collect()));
        disk.complete_sync(WriteId(1)).unwrap();
        disk.write_snapshot(snapshot_at(3));
        assert_eq!(disk.sync_snapshot(), Some(snapshot_at(3)));
        let recovered = disk.recover().unwrap();
        assert_eq!(recovered.base, LogPosition::new(3, 1));
        assert_eq!(recovered.applied_index, 3);
        assert_eq!(
            recovered
                .entries
                .iter()
                .map(|e| e.index)
                .collect::<Vec<_>>(),
            vec![4, 5]
        );
        assert_eq!(disk.snapshot(), Some(&snapshot_at(3)));
        // An older snapshot never replaces a newer one.
        disk.write_snapshot(snapshot_at(2));
        disk.sync_snapshot();
        assert_eq!(disk.snapshot(), Some(&snapshot_at(3)));
    }

    #[test]
    fn a_crash_loses_an_unsynced_snapshot_or_leaves_it_torn() {
        for tear in [false, true] {
            let mut disk = Disk::default();
            disk.write(record(1, (1..=5).map(|i| entry(i, 1)).collect()));
            disk.complete_sync(WriteId(1)).unwrap();
            disk.write_snapshot(snapshot_at(4));
            assert_eq!(disk.crash(tear), tear);
            let recovered = disk.recover().unwrap();
            assert_eq!(recovered.base, LogPosition::ZERO);
            assert_eq!(recovered.entries.len(), 5);
            assert!(disk.snapshot().is_none());
            assert_eq!(disk.torn_dropped, u64::from(tear));
        }
    }

    #[test]
    fn a_leader_snapshot_record_may_discard_the_whole_log() {
        let mut disk = Disk::default();
        disk.write(record(1, (1..=5).map(|i| entry(i, 1)).collect()));
        disk.write(Record {
            id: WriteId(2),
            hard_state: None,
            truncate_after: None,
            entries: Vec::new(),
            snapshot: Some((snapshot_at(3), true)),
        });
        disk.write(record(3, vec![entry(4, 2)]));
        disk.complete_sync(WriteId(3)).unwrap();
        let recovered = disk.recover().unwrap();
        assert_eq!(recovered.base, LogPosition::new(3, 1));
        assert_eq!(recovered.entries, vec![entry(4, 2)]);
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
            snapshot: None,
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
