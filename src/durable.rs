//! State machines that keep their state on their own storage.
//!
//! A [`StateMachine`] lives in memory: the host
//! serialises it whole into a snapshot, and a restart restores the last
//! snapshot then applies the log after it, so both cost as much as the
//! state is large. A [`DurableStateMachine`] owns its storage instead (an
//! embedded database, files of its own) and records, atomically with the
//! state it produced, the index of the last entry it applied. Then:
//!
//! * **A restart replays only the log after that index.** The host asks
//!   [`durable_applied_index`](DurableStateMachine::durable_applied_index)
//!   and skips every committed entry at or below it: the state is not
//!   rebuilt, whatever its size.
//! * **Compaction waits for the state machine.** The log may drop an entry
//!   only once the state machine holds its effect durably: before the
//!   host hands a snapshot to the log it checks that the snapshot's index
//!   is at or below the durable applied index, and calls
//!   [`sync`](DurableStateMachine::sync) on the loop if it is not. A state
//!   machine whose view makes its index durable on the view's own thread
//!   (an engine's sync, while the stream goes on) spares the loop that
//!   wait for the disk.
//! * **A snapshot is a stream from a point-in-time view.** The host asks
//!   for a [`StateView`] at the applied index and reads it on another
//!   thread while applies go on; the state machine keeps the view
//!   consistent (a database read transaction, a copy-on-write tree).
//! * **A restore is a stream too.** A follower feeds the snapshot's bytes
//!   into a [`StateRestore`] as they are read back, never holding them all;
//!   the old state stays as it was until
//!   [`finish_restore`](DurableStateMachine::finish_restore) swaps the new
//!   one in, atomically: a crash before it leaves the old state, one after
//!   it the new.
//!
//! [`InMemory`] adapts any [`StateMachine`] to this trait (its state is
//! durable only through the host's snapshot files, so its durable applied
//! index is that of the snapshot it was last restored from), so a host
//! drives both kinds through one path.
//!
//! Every method runs on the host's loop except [`StateView::read`] and
//! [`StateRestore::write`] / [`StateRestore::complete`], which run on
//! another thread: a state machine must not block the loop for as long as
//! its state is large in any of the loop's methods.

use bytes::Bytes;
use thiserror::Error;

use crate::state_machine::{apply_entry, RestoreError, SnapshotSource, StateMachine};
use crate::types::{Entry, Index};

/// A state machine's storage failed, or a snapshot stream cannot be
/// restored. The host stops serving the group (a state it cannot vouch for
/// is never served).
#[derive(Debug, Error)]
pub enum DurableError {
    /// Reading or writing the state machine's storage failed.
    #[error("state machine storage: {context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The stored state is not this state machine's or is damaged: the
    /// reason says which, and what to do.
    #[error("state machine storage is unusable: {0}")]
    Corrupt(String),
    /// A snapshot stream cannot be restored (truncated, damaged, of
    /// another format).
    #[error(transparent)]
    Restore(#[from] RestoreError),
}

/// A state machine that keeps its state on its own storage (see the
/// [module documentation](self)).
///
/// Determinism is as for [`StateMachine`]: every replica that applied the
/// same entries, or restored the same stream, holds the same state, and
/// [`canonical_state`](DurableStateMachine::canonical_state) shows it.
pub trait DurableStateMachine: Send + 'static {
    /// A point-in-time view, read on another thread.
    type View: StateView;
    /// A restore under way, written on another thread.
    type Restore: StateRestore;

    /// The last index whose effect a crash now would keep: recorded
    /// atomically with the state it produced (never before it). 0 when
    /// nothing was ever applied.
    fn durable_applied_index(&self) -> Index;

    /// The last index applied, durable or not; at least
    /// [`durable_applied_index`](DurableStateMachine::durable_applied_index).
    fn applied_index(&self) -> Index;

    /// Applies committed `entries`, consecutive and in log order, the
    /// first right after [`applied_index`](DurableStateMachine::applied_index)
    /// (entries that carry no command still advance it). Pushes one item
    /// to `responses` per entry: the answer to a command, `None` for
    /// other entries. A command it cannot parse is answered (an error
    /// response), never an `Err`: `Err` means the storage failed and the
    /// state is unknown.
    fn apply_batch(
        &mut self,
        entries: &[Entry],
        responses: &mut Vec<Option<Bytes>>,
    ) -> Result<(), DurableError>;

    /// Makes every entry applied so far durable: afterwards
    /// `durable_applied_index() == applied_index()`.
    fn sync(&mut self) -> Result<(), DurableError>;

    /// A consistent view of the state as it is now, at
    /// [`applied_index`](DurableStateMachine::applied_index): later applies
    /// must not show in it. Cheap to take (it must not copy the state on
    /// the loop, nor wait for the disk); it is read on another thread
    /// while applies go on. It need not make its index durable: if the
    /// durable applied index is still short of it once the stream is
    /// read, the host calls [`sync`](DurableStateMachine::sync).
    fn view(&mut self) -> Result<Self::View, DurableError>;

    /// Begins replacing the whole state with the stream of a view taken at
    /// `index` on another replica. The current state stays as it is
    /// (queries may still read it) until
    /// [`finish_restore`](DurableStateMachine::finish_restore).
    fn begin_restore(&mut self, index: Index) -> Result<Self::Restore, DurableError>;

    /// Makes a restore whose every byte was written and
    /// [completed](StateRestore::complete) the state, durably and
    /// atomically: afterwards both indexes are the restore's index. On
    /// `Err` the host stops serving the group: the state may be the old
    /// one or damaged (an [`InMemory`] state machine's
    /// [`StateMachine::restore`] may have begun).
    fn finish_restore(&mut self, restore: Self::Restore) -> Result<(), DurableError>;

    /// Answers a read-only request from the current state (see
    /// [`StateMachine::query`]). The default answers none.
    fn query(&self, request: &[u8]) -> Option<Bytes> {
        let _ = request;
        None
    }

    /// The state in a canonical form, for checkers comparing replicas (see
    /// [`StateMachine::canonical_state`]). May be slow: never called by a
    /// runtime serving clients.
    fn canonical_state(&self) -> Bytes;

    /// Client sessions the state machine remembers, if it keeps any (see
    /// [`StateMachine::sessions`]).
    fn sessions(&self) -> Option<usize> {
        None
    }

    /// The group left this server, or its state here is garbage (a group
    /// created afresh found it): delete the storage, so that a new state
    /// machine made for the same group starts empty, at index 0. The
    /// default deletes nothing (the state dies with the value).
    fn destroy(self) -> Result<(), DurableError>
    where
        Self: Sized,
    {
        Ok(())
    }
}

/// A point-in-time view of a [`DurableStateMachine`]'s state, read as one
/// byte stream.
pub trait StateView: Send + 'static {
    /// The index of the last entry the view reflects.
    fn index(&self) -> Index;

    /// Reads the stream's next bytes into `buf`; 0 at its end. Two views
    /// of the same state give the same stream.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, DurableError>;
}

/// A restore under way (see [`DurableStateMachine::begin_restore`]).
pub trait StateRestore: Send + 'static {
    /// Takes the stream's next bytes.
    fn write(&mut self, bytes: &[u8]) -> Result<(), DurableError>;

    /// Every byte was written: checks the stream is whole and makes the
    /// new state durable where it waits, so that
    /// [`DurableStateMachine::finish_restore`] costs little on the loop.
    fn complete(&mut self) -> Result<(), DurableError>;
}

/// Most bytes [`BytesView::read`] hands out per call: bounds the copies.
const VIEW_READ_BYTES_MAX: usize = 1 << 20;

/// A view that is a snapshot serialised into memory (what [`InMemory`]
/// hands out): already, or, from a [`SnapshotSource`], on the thread that
/// first reads it.
pub struct BytesView {
    index: Index,
    data: Bytes,
    /// Not serialised yet: run on the first read.
    source: Option<SnapshotSource>,
    offset: usize,
}

impl std::fmt::Debug for BytesView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BytesView")
            .field("index", &self.index)
            .field("len", &self.data.len())
            .field("serialised", &self.source.is_none())
            .field("offset", &self.offset)
            .finish()
    }
}

impl BytesView {
    /// The stream `data`, a state at `index`.
    pub fn new(index: Index, data: Bytes) -> Self {
        BytesView {
            index,
            data,
            source: None,
            offset: 0,
        }
    }

    /// The stream `source` serialises when first read, a state at `index`.
    pub fn from_source(index: Index, source: SnapshotSource) -> Self {
        BytesView {
            index,
            data: Bytes::new(),
            source: Some(source),
            offset: 0,
        }
    }
}

impl StateView for BytesView {
    fn index(&self) -> Index {
        self.index
    }

    fn read(&mut self, buf: &mut [u8]) -> Result<usize, DurableError> {
        if let Some(source) = self.source.take() {
            debug_assert_eq!(self.offset, 0);
            self.data = source();
        }
        assert!(self.offset <= self.data.len());
        let n = buf
            .len()
            .min(self.data.len() - self.offset)
            .min(VIEW_READ_BYTES_MAX);
        buf[..n].copy_from_slice(&self.data[self.offset..self.offset + n]);
        self.offset += n;
        Ok(n)
    }
}

/// A restore into an in-memory state machine: the stream gathered, then
/// restored whole (a [`StateMachine`] restores from one buffer).
#[derive(Debug)]
pub struct BytesRestore {
    index: Index,
    data: Vec<u8>,
    completed: bool,
}

impl StateRestore for BytesRestore {
    fn write(&mut self, bytes: &[u8]) -> Result<(), DurableError> {
        assert!(!self.completed, "written after complete");
        self.data.extend_from_slice(bytes);
        Ok(())
    }

    fn complete(&mut self) -> Result<(), DurableError> {
        self.completed = true;
        Ok(())
    }
}

/// Any [`StateMachine`] as a [`DurableStateMachine`] whose only durable
/// state is the host's snapshot file (see the
/// [module documentation](self)): a new instance holds nothing durably,
/// one restored from a snapshot holds its index, and a sync counts the
/// snapshot the host stores next. Its view is the state machine's
/// [`StateMachine::snapshot_source`], serialised on the view's thread, or
/// where it has none, the state serialised by [`StateMachine::snapshot`]
/// on the loop.
#[derive(Debug, Default)]
pub struct InMemory<S> {
    state_machine: S,
    applied_index: Index,
    /// The index of the snapshot last restored: all that survives a crash.
    restored_index: Index,
}

impl<S: StateMachine> InMemory<S> {
    /// `state_machine`, empty (nothing applied).
    pub fn new(state_machine: S) -> Self {
        InMemory {
            state_machine,
            applied_index: 0,
            restored_index: 0,
        }
    }

    /// The state machine.
    pub fn get(&self) -> &S {
        &self.state_machine
    }

    /// The state machine, to change outside the log (tests, tools).
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.state_machine
    }
}

impl<S: StateMachine + Send + 'static> DurableStateMachine for InMemory<S> {
    type View = BytesView;
    type Restore = BytesRestore;

    fn durable_applied_index(&self) -> Index {
        self.restored_index
    }

    fn applied_index(&self) -> Index {
        self.applied_index
    }

    fn apply_batch(
        &mut self,
        entries: &[Entry],
        responses: &mut Vec<Option<Bytes>>,
    ) -> Result<(), DurableError> {
        for entry in entries {
            assert_eq!(
                entry.index,
                self.applied_index + 1,
                "entries are applied in order, without a gap"
            );
            responses.push(apply_entry(&mut self.state_machine, entry));
            self.applied_index = entry.index;
        }
        Ok(())
    }

    /// Nothing is written: the snapshot the host stores next, before
    /// the log drops anything it covers, is what lasts. A new instance (a
    /// restart) starts at 0.
    fn sync(&mut self) -> Result<(), DurableError> {
        self.restored_index = self.applied_index;
        Ok(())
    }

    /// The view is that next snapshot: counted durable as a sync counts
    /// it.
    fn view(&mut self) -> Result<BytesView, DurableError> {
        self.restored_index = self.applied_index;
        // A point-in-time copy, serialised on the view's thread, when the
        // state machine can make one cheaply; otherwise serialised here.
        Ok(match self.state_machine.snapshot_source() {
            Some(source) => BytesView::from_source(self.applied_index, source),
            None => BytesView::new(self.applied_index, self.state_machine.snapshot()),
        })
    }

    fn begin_restore(&mut self, index: Index) -> Result<BytesRestore, DurableError> {
        Ok(BytesRestore {
            index,
            data: Vec::new(),
            completed: false,
        })
    }

    fn finish_restore(&mut self, restore: BytesRestore) -> Result<(), DurableError> {
        assert!(
            restore.completed,
            "a restore is completed before it is finished"
        );
        self.state_machine.restore(&restore.data)?;
        self.applied_index = restore.index;
        self.restored_index = restore.index;
        Ok(())
    }

    fn query(&self, request: &[u8]) -> Option<Bytes> {
        self.state_machine.query(request)
    }

    fn canonical_state(&self) -> Bytes {
        self.state_machine.canonical_state()
    }

    fn sessions(&self) -> Option<usize> {
        self.state_machine.sessions()
    }
}

/// Reads a whole view into memory (tests, checkers, small states).
pub fn read_view<V: StateView + ?Sized>(view: &mut V) -> Result<Vec<u8>, DurableError> {
    let mut data = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = view.read(&mut buf)?;
        if n == 0 {
            return Ok(data);
        }
        data.extend_from_slice(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::EntryPayload;

    /// Sums the bytes of the commands applied.
    #[derive(Default)]
    struct Sum(u64);

    impl StateMachine for Sum {
        fn apply(&mut self, _index: Index, command: &[u8]) -> Bytes {
            self.0 += command.iter().map(|b| u64::from(*b)).sum::<u64>();
            Bytes::copy_from_slice(&self.0.to_le_bytes())
        }
        fn snapshot(&self) -> Bytes {
            Bytes::copy_from_slice(&self.0.to_le_bytes())
        }
        fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
            let bytes: [u8; 8] = snapshot
                .try_into()
                .map_err(|_| RestoreError::new("want 8 bytes"))?;
            self.0 = u64::from_le_bytes(bytes);
            Ok(())
        }
    }

    fn command(index: Index, bytes: &[u8]) -> Entry {
        Entry {
            index,
            term: 1,
            payload: EntryPayload::Command(Bytes::copy_from_slice(bytes)),
        }
    }

    #[test]
    fn in_memory_keeps_only_the_restored_index_durable() {
        let mut sm = InMemory::new(Sum::default());
        let mut responses = Vec::new();
        let noop = Entry {
            index: 2,
            term: 1,
            payload: EntryPayload::Noop,
        };
        sm.apply_batch(&[command(1, &[3]), noop, command(3, &[4])], &mut responses)
            .unwrap();
        assert_eq!(responses.len(), 3);
        assert!(responses[1].is_none());
        assert_eq!(responses[2].as_deref(), Some(&7u64.to_le_bytes()[..]));
        assert_eq!(sm.applied_index(), 3);
        assert_eq!(sm.durable_applied_index(), 0, "memory is not durable");
        sm.sync().unwrap();
        assert_eq!(sm.durable_applied_index(), 3, "as the snapshot taken next");

        // A view taken now does not see a later apply.
        let mut view = sm.view().unwrap();
        sm.apply_batch(&[command(4, &[100])], &mut responses)
            .unwrap();
        assert_eq!(view.index(), 3);
        let stream = read_view(&mut view).unwrap();
        assert_eq!(stream, 7u64.to_le_bytes());

        // Restored from that stream: the view's state and index, durable.
        let mut copy = InMemory::new(Sum::default());
        let mut restore = copy.begin_restore(3).unwrap();
        restore.write(&stream[..5]).unwrap();
        restore.write(&stream[5..]).unwrap();
        restore.complete().unwrap();
        copy.finish_restore(restore).unwrap();
        assert_eq!(copy.get().0, 7);
        assert_eq!((copy.applied_index(), copy.durable_applied_index()), (3, 3));
    }

    #[test]
    fn a_damaged_stream_is_refused_with_its_reason() {
        let mut sm = InMemory::new(Sum::default());
        sm.apply_batch(&[command(1, &[9])], &mut Vec::new())
            .unwrap();
        let mut restore = sm.begin_restore(5).unwrap();
        restore.write(&[1, 2, 3]).unwrap();
        restore.complete().unwrap();
        let error = sm.finish_restore(restore).unwrap_err();
        assert!(error.to_string().contains("want 8 bytes"), "{error}");
        assert_eq!((sm.get().0, sm.applied_index()), (9, 1));
    }
}
