//! Where a server keeps its durable state, behind a trait so the same server
//! runs on real disks ([`FileStorage`](super::wal::FileStorage): segmented
//! write-ahead log, writer thread, group commit) and in simulation or
//! benchmarks ([`MemStorage`]: no files, no threads, works inside madsim).
//!
//! Snapshots will add `save_snapshot`/`load_snapshot` with default
//! implementations, and `recover` will then report a non-zero base.

use std::sync::{Arc, Mutex};

use thiserror::Error;
use tokio::sync::mpsc::UnboundedSender;

use crate::{Entry, HardState, Index, LogPosition, Recovered, WriteId};

/// One [`Action::Persist`](crate::Action::Persist), as handed to storage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersistRequest {
    /// The write's id, reported back once durable.
    pub id: WriteId,
    /// Term and vote to store, if changed.
    pub hard_state: Option<HardState>,
    /// Drop every entry after this index first.
    pub truncate_after: Option<Index>,
    /// Then append these.
    pub entries: Vec<Entry>,
}

/// Where storage reports completions: `Ok(id)` means every write up to and
/// including `id` is durable; `Err` means storage failed and the server must
/// stop (fail-stop: it cannot promise durability any more).
pub type PersistedSender = UnboundedSender<Result<WriteId, StorageError>>;

/// Why storage failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StorageError {
    /// An operating-system I/O error, with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the file.
        context: String,
        /// The error.
        source: std::io::Error,
    },
    /// A record failed its checksum or could not be decoded, before the end
    /// of the log: the data is damaged and is not used.
    #[error("corrupt write-ahead log: {file} at byte offset {offset}: {reason}")]
    Corrupt {
        /// The file.
        file: String,
        /// Byte offset of the bad record.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// Data the write-ahead log had already made durable (fsynced, and so
    /// possibly acknowledged to other nodes) is damaged or missing, as
    /// shown by the durable marker. Starting with the shorter log would
    /// silently break Raft's durability promise, so recovery refuses.
    #[error(
        "write-ahead log lost data it had made durable: {file} at byte offset {offset}: {reason}; \
         everything up to byte offset {durable_offset} of that segment (log index {durable_index}) \
         had been fsynced and may have been acknowledged to the leader, so starting with less \
         ({lost_bytes} bytes fewer) could lose committed writes. Refusing to start. Find out what \
         damaged the disk; then either restore the data directory, or restart with \
         --accept-wal-data-loss (WalOptions::accept_data_loss) to truncate the log there and \
         rejoin the cluster with a shorter log"
    )]
    DurableDataLost {
        /// The segment file that was marked durable.
        file: String,
        /// Byte offset in `file` where the readable log ends.
        offset: u64,
        /// What is wrong.
        reason: String,
        /// Byte offset of `file` up to which the marker says data was durable.
        durable_offset: u64,
        /// Last log index the marker says was durable.
        durable_index: Index,
        /// Marked-durable bytes that are gone.
        lost_bytes: u64,
    },
    /// A file is not in a format this build can read (an older, unversioned
    /// write-ahead log, a newer format version, or not a log file at all).
    #[error("write-ahead log file {file} has an unsupported format: {reason}")]
    UnsupportedFormat {
        /// The file.
        file: String,
        /// What was found instead.
        reason: String,
    },
    /// The storage was used wrongly (e.g. submit before start).
    #[error("storage misuse: {0}")]
    Misuse(String),
}

/// Durable storage of one node's hard state and log.
///
/// Writes are asynchronous: [`submit`](Storage::submit) queues a write and
/// returns at once; completions arrive, in order, on the channel given to
/// [`start`](Storage::start). An implementation may batch many writes into
/// one sync and report only the highest id.
pub trait Storage: Send + 'static {
    /// Reads back everything durable. Called once, before `start`.
    fn recover(&mut self) -> Result<Recovered, StorageError>;

    /// Starts accepting writes; completions go to `notify`.
    fn start(&mut self, notify: PersistedSender) -> Result<(), StorageError>;

    /// Queues a write, in order after every earlier one.
    fn submit(&mut self, write: PersistRequest);

    /// Finishes every queued write (reporting it) and stops. Idempotent.
    fn shutdown(&mut self);
}

impl<S: Storage + ?Sized> Storage for Box<S> {
    fn recover(&mut self) -> Result<Recovered, StorageError> {
        (**self).recover()
    }
    fn start(&mut self, notify: PersistedSender) -> Result<(), StorageError> {
        (**self).start(notify)
    }
    fn submit(&mut self, write: PersistRequest) {
        (**self).submit(write)
    }
    fn shutdown(&mut self) {
        (**self).shutdown()
    }
}

/// The durable contents of a [`MemStorage`], shared so that it outlives a
/// (simulated) crash of the server that wrote it.
#[derive(Clone, Debug, Default)]
pub struct MemDisk {
    inner: Arc<Mutex<MemDiskState>>,
}

#[derive(Debug, Default)]
struct MemDiskState {
    hard_state: HardState,
    entries: Vec<Entry>,
    writes: u64,
}

impl MemDisk {
    /// An empty disk.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of entries stored.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// True when no entry is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The stored hard state.
    pub fn hard_state(&self) -> HardState {
        self.lock().hard_state
    }

    /// Writes applied so far.
    pub fn writes(&self) -> u64 {
        self.lock().writes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemDiskState> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// In-memory storage: every write is "durable" (in the shared [`MemDisk`])
/// as soon as it is submitted. No threads and no files, so it runs inside
/// madsim and gives benchmarks the same server code without a disk.
#[derive(Debug)]
pub struct MemStorage {
    disk: MemDisk,
    notify: Option<PersistedSender>,
}

impl MemStorage {
    /// Storage on `disk` (clone the disk to keep it across restarts).
    pub fn new(disk: MemDisk) -> Self {
        MemStorage { disk, notify: None }
    }
}

impl Storage for MemStorage {
    fn recover(&mut self) -> Result<Recovered, StorageError> {
        let state = self.disk.lock();
        Ok(Recovered {
            hard_state: state.hard_state,
            base: LogPosition::ZERO,
            entries: state.entries.clone(),
            applied_index: 0,
        })
    }

    fn start(&mut self, notify: PersistedSender) -> Result<(), StorageError> {
        self.notify = Some(notify);
        Ok(())
    }

    fn submit(&mut self, write: PersistRequest) {
        let id = write.id;
        {
            let mut guard = self.disk.lock();
            let state = &mut *guard;
            if let Some(after) = write.truncate_after {
                state.entries.truncate(after as usize);
            }
            append_entries(&mut state.entries, write.entries);
            if let Some(hs) = write.hard_state {
                state.hard_state = hs;
            }
            state.writes += 1;
        }
        if let Some(notify) = &self.notify {
            let _ = notify.send(Ok(id));
        }
    }

    fn shutdown(&mut self) {
        self.notify = None;
    }
}

/// Appends entries to a log starting at index 1, overwriting any suffix the
/// first new entry overlaps.
pub(crate) fn append_entries(log: &mut Vec<Entry>, new: impl IntoIterator<Item = Entry>) {
    for entry in new {
        let position = entry.index.saturating_sub(1) as usize;
        if position < log.len() {
            log.truncate(position);
        }
        log.push(entry);
    }
}
