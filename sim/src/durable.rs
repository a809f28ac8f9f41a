//! A simulated on-disk state machine: [`SimDurable`] runs any
//! [`StateMachine`] as a [`DurableStateMachine`] whose storage is a file
//! on the node's simulated disk, under the same write / sync / crash rules
//! as the simulated write-ahead log.
//!
//! The model is a small embedded engine:
//!
//! * **Live state** is the wrapped state machine: what applies change,
//!   what queries read.
//! * **The file** holds a *base* (the state's bytes at an index, with a
//!   checksum) and, after it, one record per apply batch (the batch's
//!   entries, with a checksum): the engine's own write-ahead records. A
//!   batch record is *written* by [`apply_batch`](SimDurable::apply_batch)
//!   and lost on a crash until it is *synced*. The engine syncs by itself
//!   after every `flush_every` batches (a real engine's background flush),
//!   so a crash finds the durable applied index anywhere between the last
//!   explicit [`sync`](SimDurable::sync) and the applied index. An explicit
//!   sync also rewrites the base (a checkpoint), which bounds the records
//!   a recovery replays.
//! * **A crash** ([`crash`](SimDurable::crash)) loses the unsynced records;
//!   with `tear` the first of them is left half-written, and recovery
//!   detects it by its checksum and drops it. What comes back
//!   ([`recover`](SimDurable::recover)) is the durable image: the base
//!   restored, the synced records replayed, and
//!   `applied_index() == durable_applied_index()`.
//! * **A view** ([`view`](SimDurable::view)) is the state's bytes at the
//!   moment it is taken, read later while applies go on.
//! * **A restore** stages the stream's bytes in a [`SimRestore`] (off the
//!   loop); [`finish_restore`](SimDurable::finish_restore) swaps them in
//!   as the new base, atomically: a crash before it leaves the old image.
//!
//! [`DurableBugs`] plants two mistakes of such an engine, to measure that
//! the simulator catches them (`sim/tests/bugs.rs`).
//!
//! The methods are inherent as well as the trait's: the simulator's hosts
//! are generic over any [`StateMachine`], which need not be `Send`, while
//! [`DurableStateMachine`] asks for `Send + 'static`; the trait's methods
//! call the inherent ones, which the hosts call in the trait's order.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use concord::durable::{BytesView, DurableError, DurableStateMachine, StateRestore, StateView};
use concord::state_machine::{apply_entry, StateMachine};
use concord::{checksum64, Entry, EntryPayload, Index};

use crate::trace::TraceHash;

/// Batch records a background flush lets pile up after the base before it
/// rewrites the base (a checkpoint), bounding a recovery's replay.
const CHECKPOINT_RECORDS: usize = 64;

/// Mistakes planted in the simulated state machine; all off by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DurableBugs {
    /// The applied index is recorded on its own, in a small record made
    /// durable at every batch, ahead of the state it covers (whose batch
    /// records follow the ordinary unsynced path): after a crash the
    /// durable applied index claims entries whose effect was lost.
    pub index_before_state: bool,
    /// A view is a pointer into the live state, not a point-in-time copy:
    /// its bytes are the state as it is when the view is read, with the
    /// applies made since it was taken.
    pub view_reads_live: bool,
}

/// One apply batch as the engine writes it: the batch's entries and a
/// checksum over them.
#[derive(Clone, Debug)]
struct BatchRecord {
    entries: Vec<Entry>,
    checksum: u64,
}

impl BatchRecord {
    fn new(entries: Vec<Entry>) -> BatchRecord {
        let checksum = batch_checksum(&entries);
        BatchRecord { entries, checksum }
    }

    fn first(&self) -> Index {
        self.entries.first().map_or(0, |entry| entry.index)
    }

    fn last(&self) -> Index {
        self.entries.last().map_or(0, |entry| entry.index)
    }
}

fn batch_checksum(entries: &[Entry]) -> u64 {
    let mut hash = TraceHash::new();
    hash.word(entries.len() as u64);
    for entry in entries {
        hash.word(entry.index);
        hash.word(entry.term);
        match &entry.payload {
            EntryPayload::Command(bytes) | EntryPayload::Host(bytes) => {
                hash.word(bytes.len() as u64);
                hash.bytes(bytes);
            }
            _ => hash.word(u64::MAX),
        }
    }
    hash.value()
}

/// The state machine's storage on the node's simulated disk: what
/// survives a crash ([`SimDurable::crash`]) and what a restart recovers
/// from ([`SimDurable::recover`]). Empty by default (nothing applied).
#[derive(Clone, Debug, Default)]
pub struct DurableFile {
    /// The index the base state stands for (0: the empty state).
    base_index: Index,
    /// The base state's bytes (`StateMachine::snapshot`); `None` for the
    /// empty state.
    base_state: Option<Bytes>,
    base_checksum: u64,
    /// Batch records after the base, synced, in order.
    synced: Vec<BatchRecord>,
    /// Batch records written and not synced yet.
    unsynced: VecDeque<BatchRecord>,
    /// The record a crash left half-written, with the checksum written in
    /// its header.
    torn: Option<(BatchRecord, u64)>,
    /// With [`DurableBugs::index_before_state`]: the applied index as its
    /// own durable record.
    index_record: Option<Index>,
}

impl DurableFile {
    /// The applied index a crash now would keep.
    pub fn durable_index(&self) -> Index {
        let synced = self
            .synced
            .last()
            .map_or(self.base_index, BatchRecord::last);
        synced.max(self.index_record.unwrap_or(0))
    }

    /// Unsynced batch records (lost by a crash).
    pub fn unsynced_batches(&self) -> usize {
        self.unsynced.len()
    }

    fn sync_all(&mut self) {
        self.synced.extend(self.unsynced.drain(..));
    }

    fn set_base(&mut self, index: Index, state: Bytes) {
        self.base_checksum = checksum64(&state);
        self.base_index = index;
        self.base_state = Some(state);
        self.synced.clear();
        self.index_record = None;
    }
}

/// What a crash did to a [`SimDurable`]'s file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CrashLoss {
    /// Unsynced batch records lost.
    pub lost_batches: usize,
    /// The first of them was left half-written.
    pub torn: bool,
}

/// What a recovery found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// A half-written record was detected by its checksum and dropped.
    pub torn_dropped: bool,
    /// Batch records replayed on top of the base.
    pub replayed_batches: usize,
}

/// Work a [`SimDurable`] did, for the run's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DurableStats {
    /// Apply batches written.
    pub batches: u64,
    /// Background flushes (every `flush_every` batches).
    pub background_flushes: u64,
    /// Explicit syncs ([`SimDurable::sync`]).
    pub syncs: u64,
    /// Restores finished ([`SimDurable::finish_restore`]).
    pub restores: u64,
}

/// A simulated on-disk state machine over `S` (see the [module
/// documentation](self)).
#[derive(Debug)]
pub struct SimDurable<S> {
    live: S,
    applied: Index,
    file: DurableFile,
    /// A background flush after this many batches (at least 1).
    flush_every: u32,
    since_flush: u32,
    bugs: DurableBugs,
    /// With [`DurableBugs::view_reads_live`]: the live state's bytes,
    /// kept current, which every view reads when it is read.
    live_bytes: Option<Arc<Mutex<Bytes>>>,
    stats: DurableStats,
}

impl<S: StateMachine> SimDurable<S> {
    /// `live`, empty (nothing applied), on an empty file; a background
    /// flush after every `flush_every` batches.
    pub fn new(live: S, flush_every: u32, bugs: DurableBugs) -> SimDurable<S> {
        let mut sm = SimDurable {
            live,
            applied: 0,
            file: DurableFile::default(),
            flush_every: flush_every.max(1),
            since_flush: 0,
            bugs,
            live_bytes: None,
            stats: DurableStats::default(),
        };
        sm.refresh_live_bytes();
        sm
    }

    /// The state machine a restart finds on `file`: `fresh` (an empty
    /// state machine) with the base restored and the synced batches
    /// replayed; a torn record is dropped. Both indexes are the durable
    /// one. `Err` if the file is damaged (a base whose checksum fails, a
    /// gap between records) or the base cannot be restored.
    pub fn recover(
        mut file: DurableFile,
        fresh: S,
        flush_every: u32,
        bugs: DurableBugs,
    ) -> Result<(SimDurable<S>, Recovery), DurableError> {
        let mut recovery = Recovery::default();
        if let Some((record, stored)) = file.torn.take() {
            if batch_checksum(&record.entries) == stored {
                // Whole after all: a complete record.
                file.synced.push(record);
            } else {
                recovery.torn_dropped = true;
            }
        }
        // The written-not-synced part never survives (`crash` empties it).
        file.unsynced.clear();
        let mut live = fresh;
        if let Some(state) = &file.base_state {
            if checksum64(state) != file.base_checksum {
                return Err(DurableError::Corrupt(format!(
                    "the base state at index {} fails its checksum",
                    file.base_index
                )));
            }
            live.restore(state)?;
        }
        let mut applied = file.base_index;
        for record in &file.synced {
            if record.first() != applied + 1 {
                return Err(DurableError::Corrupt(format!(
                    "a batch record starts at index {} after index {applied}",
                    record.first()
                )));
            }
            for entry in &record.entries {
                apply_entry(&mut live, entry);
            }
            applied = record.last();
        }
        recovery.replayed_batches = file.synced.len();
        // The planted mistake's index record may claim more than the
        // state holds: that is what the restart believes.
        applied = applied.max(file.index_record.unwrap_or(0));
        let mut sm = SimDurable {
            live,
            applied,
            file,
            flush_every: flush_every.max(1),
            since_flush: 0,
            bugs,
            live_bytes: None,
            stats: DurableStats::default(),
        };
        sm.refresh_live_bytes();
        debug_assert_eq!(sm.applied_index(), sm.durable_applied_index());
        Ok((sm, recovery))
    }

    /// The process dies: unsynced batch records are lost (with `tear`, the
    /// first of them is left half-written) and the file is handed back,
    /// for [`SimDurable::recover`]. The live state is no longer to be
    /// used.
    pub fn crash(&mut self, tear: bool) -> (DurableFile, CrashLoss) {
        let mut file = std::mem::take(&mut self.file);
        let mut loss = CrashLoss {
            lost_batches: file.unsynced.len(),
            torn: false,
        };
        if tear {
            if let Some(mut record) = file.unsynced.pop_front() {
                let stored = record.checksum;
                // Half of the entries made it, or the only one is garbled.
                if record.entries.len() >= 2 {
                    let keep = record.entries.len() / 2;
                    record.entries.truncate(keep);
                } else if let Some(entry) = record.entries.first_mut() {
                    entry.term ^= 0x5a5a;
                }
                file.torn = Some((record, stored));
                loss.torn = true;
            }
        }
        file.unsynced.clear();
        self.since_flush = 0;
        (file, loss)
    }

    /// The live state.
    pub fn live(&self) -> &S {
        &self.live
    }

    /// The live state, to change outside the log (the host drains what
    /// its wrapper noted; tests).
    pub fn live_mut(&mut self) -> &mut S {
        &mut self.live
    }

    /// The file as it is now.
    pub fn file(&self) -> &DurableFile {
        &self.file
    }

    /// The work done so far.
    pub fn stats(&self) -> DurableStats {
        self.stats
    }

    /// See [`DurableStateMachine::durable_applied_index`].
    pub fn durable_applied_index(&self) -> Index {
        self.file.durable_index()
    }

    /// See [`DurableStateMachine::applied_index`].
    pub fn applied_index(&self) -> Index {
        self.applied
    }

    /// See [`DurableStateMachine::apply_batch`]: applies `entries` to the
    /// live state and writes their batch record (unsynced, unless this
    /// batch is the one a background flush follows).
    pub fn apply_batch(
        &mut self,
        entries: &[Entry],
        responses: &mut Vec<Option<Bytes>>,
    ) -> Result<(), DurableError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        if first.index != self.applied + 1
            || entries
                .windows(2)
                .any(|pair| pair[1].index != pair[0].index + 1)
        {
            return Err(DurableError::Corrupt(format!(
                "asked to apply entries {}..={} after index {}: applies are consecutive",
                first.index,
                entries.last().map_or(0, |entry| entry.index),
                self.applied
            )));
        }
        for entry in entries {
            responses.push(apply_entry(&mut self.live, entry));
            self.applied = entry.index;
        }
        self.file
            .unsynced
            .push_back(BatchRecord::new(entries.to_vec()));
        if self.bugs.index_before_state {
            self.file.index_record = Some(self.applied);
        }
        self.stats.batches += 1;
        self.since_flush += 1;
        if self.since_flush >= self.flush_every {
            self.since_flush = 0;
            self.stats.background_flushes += 1;
            self.file.sync_all();
            if self.file.synced.len() > CHECKPOINT_RECORDS {
                self.checkpoint();
            }
        }
        self.refresh_live_bytes();
        Ok(())
    }

    /// See [`DurableStateMachine::sync`]: every batch becomes durable, and
    /// the base is rewritten at the applied index.
    pub fn sync(&mut self) -> Result<(), DurableError> {
        self.file.sync_all();
        self.since_flush = 0;
        self.stats.syncs += 1;
        self.checkpoint();
        Ok(())
    }

    /// See [`DurableStateMachine::view`]: the state's bytes now.
    pub fn view(&mut self) -> Result<SimView, DurableError> {
        if let Some(cell) = &self.live_bytes {
            return Ok(SimView::Live {
                index: self.applied,
                cell: Arc::clone(cell),
                read: None,
            });
        }
        Ok(SimView::Taken(BytesView::new(
            self.applied,
            self.live.snapshot(),
        )))
    }

    /// See [`DurableStateMachine::begin_restore`].
    pub fn begin_restore(&mut self, index: Index) -> Result<SimRestore, DurableError> {
        Ok(SimRestore {
            index,
            staged: Vec::new(),
            completed: false,
        })
    }

    /// See [`DurableStateMachine::finish_restore`]: the staged bytes become
    /// the live state and the file's new base, at the restore's index.
    pub fn finish_restore(&mut self, restore: SimRestore) -> Result<(), DurableError> {
        if !restore.completed {
            return Err(DurableError::Corrupt(format!(
                "the restore at index {} was finished before it was completed",
                restore.index
            )));
        }
        let state = Bytes::from(restore.staged);
        self.live.restore(&state)?;
        self.applied = restore.index;
        self.file.unsynced.clear();
        self.file.set_base(restore.index, state);
        self.since_flush = 0;
        self.stats.restores += 1;
        self.refresh_live_bytes();
        Ok(())
    }

    /// See [`DurableStateMachine::query`].
    pub fn query(&self, request: &[u8]) -> Option<Bytes> {
        self.live.query(request)
    }

    /// See [`DurableStateMachine::canonical_state`].
    pub fn canonical_state(&self) -> Bytes {
        self.live.canonical_state()
    }

    /// The base rewritten at the applied index (everything applied is
    /// durable when this is called).
    fn checkpoint(&mut self) {
        let state = self.live.snapshot();
        self.file.set_base(self.applied, state);
    }

    fn refresh_live_bytes(&mut self) {
        if !self.bugs.view_reads_live {
            return;
        }
        let state = self.live.snapshot();
        match &self.live_bytes {
            Some(cell) => {
                *cell.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = state;
            }
            None => self.live_bytes = Some(Arc::new(Mutex::new(state))),
        }
    }
}

impl<S: StateMachine + Send + 'static> DurableStateMachine for SimDurable<S> {
    type View = SimView;
    type Restore = SimRestore;

    fn durable_applied_index(&self) -> Index {
        SimDurable::durable_applied_index(self)
    }

    fn applied_index(&self) -> Index {
        SimDurable::applied_index(self)
    }

    fn apply_batch(
        &mut self,
        entries: &[Entry],
        responses: &mut Vec<Option<Bytes>>,
    ) -> Result<(), DurableError> {
        SimDurable::apply_batch(self, entries, responses)
    }

    fn sync(&mut self) -> Result<(), DurableError> {
        SimDurable::sync(self)
    }

    fn view(&mut self) -> Result<SimView, DurableError> {
        SimDurable::view(self)
    }

    fn begin_restore(&mut self, index: Index) -> Result<SimRestore, DurableError> {
        SimDurable::begin_restore(self, index)
    }

    fn finish_restore(&mut self, restore: SimRestore) -> Result<(), DurableError> {
        SimDurable::finish_restore(self, restore)
    }

    fn query(&self, request: &[u8]) -> Option<Bytes> {
        SimDurable::query(self, request)
    }

    fn canonical_state(&self) -> Bytes {
        SimDurable::canonical_state(self)
    }

    fn sessions(&self) -> Option<usize> {
        self.live.sessions()
    }
}

/// A [`SimDurable`]'s view.
#[derive(Debug)]
pub enum SimView {
    /// The state's bytes when the view was taken.
    Taken(BytesView),
    /// With [`DurableBugs::view_reads_live`]: the live state's bytes as
    /// they are at the first read.
    Live {
        /// The applied index when the view was taken.
        index: Index,
        /// The live state's bytes, kept current by the state machine.
        cell: Arc<Mutex<Bytes>>,
        /// What the first read found.
        read: Option<BytesView>,
    },
}

impl StateView for SimView {
    fn index(&self) -> Index {
        match self {
            SimView::Taken(view) => view.index(),
            SimView::Live { index, .. } => *index,
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> Result<usize, DurableError> {
        match self {
            SimView::Taken(view) => view.read(buf),
            SimView::Live { index, cell, read } => {
                let view = read.get_or_insert_with(|| {
                    let bytes = cell
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .clone();
                    BytesView::new(*index, bytes)
                });
                view.read(buf)
            }
        }
    }
}

/// A restore under way into a [`SimDurable`]: the stream's bytes, staged.
#[derive(Debug)]
pub struct SimRestore {
    index: Index,
    staged: Vec<u8>,
    completed: bool,
}

impl SimRestore {
    /// The index the restore stands for.
    pub fn index(&self) -> Index {
        self.index
    }

    /// See [`StateRestore::write`].
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), DurableError> {
        if self.completed {
            return Err(DurableError::Corrupt(
                "a restore was written after it was completed".to_string(),
            ));
        }
        self.staged.extend_from_slice(bytes);
        Ok(())
    }

    /// See [`StateRestore::complete`].
    pub fn complete(&mut self) -> Result<(), DurableError> {
        self.completed = true;
        Ok(())
    }
}

impl StateRestore for SimRestore {
    fn write(&mut self, bytes: &[u8]) -> Result<(), DurableError> {
        SimRestore::write(self, bytes)
    }

    fn complete(&mut self) -> Result<(), DurableError> {
        SimRestore::complete(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use concord::durable::read_view;
    use concord::state_machine::RestoreError;

    /// The commands' bytes, concatenated.
    #[derive(Clone, Debug, Default)]
    struct Log(Vec<u8>);

    impl StateMachine for Log {
        fn apply(&mut self, _index: Index, command: &[u8]) -> Bytes {
            self.0.extend_from_slice(command);
            Bytes::copy_from_slice(&(self.0.len() as u64).to_le_bytes())
        }
        fn snapshot(&self) -> Bytes {
            Bytes::copy_from_slice(&self.0)
        }
        fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
            if snapshot.first() == Some(&0xff) {
                return Err(RestoreError::new("not a log"));
            }
            self.0 = snapshot.to_vec();
            Ok(())
        }
    }

    fn entry(index: Index) -> Entry {
        Entry {
            index,
            term: 1,
            payload: EntryPayload::Command(Bytes::from(vec![index as u8])),
        }
    }

    fn batch(from: Index, to: Index) -> Vec<Entry> {
        (from..=to).map(entry).collect()
    }

    /// Drives any durable state machine through the trait: applies
    /// 1..=3, syncs, applies 4..=5; returns the view's stream at 5.
    fn drive<D: DurableStateMachine>(sm: &mut D) -> Vec<u8> {
        let mut responses = Vec::new();
        sm.apply_batch(&batch(1, 3), &mut responses).unwrap();
        sm.sync().unwrap();
        assert_eq!(sm.durable_applied_index(), 3);
        sm.apply_batch(&batch(4, 5), &mut responses).unwrap();
        assert_eq!(responses.len(), 5);
        assert_eq!(sm.applied_index(), 5);
        let mut view = sm.view().unwrap();
        sm.apply_batch(&batch(6, 6), &mut responses).unwrap();
        assert_eq!(view.index(), 5);
        read_view(&mut view).unwrap()
    }

    #[test]
    fn through_the_trait_a_view_is_the_state_when_taken() {
        let mut sm = SimDurable::new(Log::default(), 100, DurableBugs::default());
        assert_eq!(drive(&mut sm), vec![1, 2, 3, 4, 5]);
        assert_eq!(sm.live().0, vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn a_crash_keeps_what_was_synced_or_flushed() {
        // No background flush: the crash goes back to the explicit sync.
        let mut sm = SimDurable::new(Log::default(), 100, DurableBugs::default());
        drive(&mut sm);
        assert_eq!(sm.durable_applied_index(), 3);
        let (file, loss) = sm.crash(false);
        assert_eq!(loss.lost_batches, 2);
        let (back, _) =
            SimDurable::recover(file, Log::default(), 100, DurableBugs::default()).unwrap();
        assert_eq!((back.applied_index(), back.durable_applied_index()), (3, 3));
        assert_eq!(back.live().0, vec![1, 2, 3]);

        // A flush after every second batch: batch 6 was the second after
        // the sync, so all of 1..=6 made it; batch 7 is torn.
        let mut sm = SimDurable::new(Log::default(), 2, DurableBugs::default());
        drive(&mut sm);
        assert_eq!(sm.durable_applied_index(), 6);
        sm.apply_batch(&batch(7, 8), &mut Vec::new()).unwrap();
        assert_eq!((sm.applied_index(), sm.durable_applied_index()), (8, 6));
        let (file, loss) = sm.crash(true);
        assert_eq!(
            loss,
            CrashLoss {
                lost_batches: 1,
                torn: true
            }
        );
        let (back, recovery) =
            SimDurable::recover(file, Log::default(), 2, DurableBugs::default()).unwrap();
        assert!(recovery.torn_dropped, "the torn batch 7..=8 is detected");
        assert_eq!((back.applied_index(), back.live().0.len()), (6, 6));
    }

    #[test]
    fn a_restore_swaps_in_at_finish_and_a_crash_before_keeps_the_old_image() {
        let mut sm = SimDurable::new(Log::default(), 1, DurableBugs::default());
        sm.apply_batch(&batch(1, 2), &mut Vec::new()).unwrap();
        let mut restore = sm.begin_restore(9).unwrap();
        restore.write(&[7, 7]).unwrap();
        restore.write(&[7]).unwrap();
        restore.complete().unwrap();
        // Crashed before the swap: the old image.
        let mut before = SimDurable::new(Log::default(), 1, DurableBugs::default());
        before.apply_batch(&batch(1, 2), &mut Vec::new()).unwrap();
        let (file, _) = before.crash(false);
        let (back, _) =
            SimDurable::recover(file, Log::default(), 1, DurableBugs::default()).unwrap();
        assert_eq!(
            (back.applied_index(), back.live().0.clone()),
            (2, vec![1, 2])
        );
        // Finished: the new state, durable at once.
        sm.finish_restore(restore).unwrap();
        assert_eq!((sm.applied_index(), sm.durable_applied_index()), (9, 9));
        let (file, _) = sm.crash(false);
        let (back, _) =
            SimDurable::recover(file, Log::default(), 1, DurableBugs::default()).unwrap();
        assert_eq!(
            (back.applied_index(), back.live().0.clone()),
            (9, vec![7, 7, 7])
        );
        // A damaged stream is refused.
        let mut back = back;
        let mut restore = back.begin_restore(12).unwrap();
        restore.write(&[0xff]).unwrap();
        restore.complete().unwrap();
        assert!(back.finish_restore(restore).is_err());
    }

    #[test]
    fn the_planted_mistakes_do_what_they_say() {
        let bugs = DurableBugs {
            index_before_state: true,
            view_reads_live: true,
        };
        let mut sm = SimDurable::new(Log::default(), 100, bugs);
        sm.apply_batch(&batch(1, 2), &mut Vec::new()).unwrap();
        // The index is durable ahead of its state.
        assert_eq!(sm.durable_applied_index(), 2);
        let mut view = sm.view().unwrap();
        sm.apply_batch(&batch(3, 3), &mut Vec::new()).unwrap();
        assert_eq!(view.index(), 2);
        assert_eq!(read_view(&mut view).unwrap(), vec![1, 2, 3], "sees index 3");
        let (file, _) = sm.crash(false);
        let (back, _) = SimDurable::recover(file, Log::default(), 100, bugs).unwrap();
        assert_eq!(back.applied_index(), 3);
        assert!(back.live().0.is_empty(), "the state of 1..=3 was lost");
    }
}
