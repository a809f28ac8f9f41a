//! Where a server keeps its durable state, behind a trait so the same server
//! runs on real disks ([`FileStorage`](super::wal::FileStorage): segmented
//! write-ahead log, writer thread, group commit) and in simulation or
//! benchmarks ([`MemStorage`]: no files, no threads, works inside madsim).
//!
//! Snapshots go through the same ordered queue as log writes
//! ([`Storage::submit_snapshot`]): a snapshot the node took itself
//! ([`SnapshotWrite::Taken`], reported on its own channel once durable) and
//! one installed from a leader ([`SnapshotWrite::Installed`], reported like
//! a log write under its [`WriteId`]). After a restart
//! [`Storage::recover`] reports the newest stored snapshot's position as
//! the log's base and [`Storage::recovered_snapshot`] hands over a reader
//! of it.
//!
//! Snapshot bytes are streamed, never held whole for longer than a
//! restore: a stored snapshot is read chunk by chunk through a
//! [`SnapshotReader`] (a file read at an offset) when a follower needs it,
//! and a snapshot received from a leader is written chunk by chunk into a
//! [`SnapshotSink`] (a file that becomes the stored snapshot once
//! [`SnapshotWrite::Installed`] makes it durable). Chunk reads and writes
//! are page-cache copies of at most one chunk; every fsync happens on the
//! storage's own thread.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use thiserror::Error;
use tokio::sync::mpsc::UnboundedSender;

use concord::{
    checksum64, Entries, Entry, HardState, Index, LogPosition, Membership, Recovered, Snapshot,
    SnapshotMeta, WriteId,
};

/// One [`Action::Persist`](concord::Action::Persist), as handed to storage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersistRequest {
    /// The write's id, reported back once durable.
    pub id: WriteId,
    /// Term and vote to store, if changed.
    pub hard_state: Option<HardState>,
    /// Drop every entry after this index first.
    pub truncate_after: Option<Index>,
    /// Then append these.
    pub entries: Entries,
}

/// A snapshot to store, in order with every log write submitted before it.
#[derive(Debug)]
#[non_exhaustive]
pub enum SnapshotWrite {
    /// A snapshot of this node's own state machine
    /// ([`Action::TakeSnapshot`](concord::Action::TakeSnapshot)). Once it is
    /// durable a reader of it is sent back on `stored` (the host then
    /// reports it with
    /// [`Input::Snapshotted`](concord::Input::Snapshotted)). A snapshot at or
    /// below the index of the one already stored is not written (the
    /// stored one is newer) but is still sent back.
    Taken {
        /// The snapshot.
        snapshot: Snapshot,
        /// Where to report it durable.
        stored: SnapshotStoredSender,
    },
    /// A snapshot received from the leader
    /// ([`Action::PersistSnapshot`](concord::Action::PersistSnapshot)):
    /// reported with `id` on the completion channel, like a log write.
    Installed {
        /// The write's id.
        id: WriteId,
        /// The snapshot's bytes, as received into the sink
        /// [`Storage::receive_snapshot`] gave.
        received: ReceivedSnapshot,
        /// Drop every log entry, not only those the snapshot covers.
        discard_log: bool,
        /// The configuration in force at the snapshot's last entry, stored
        /// with it (see [`Recovered::membership`]).
        membership: Membership,
    },
}

/// Where storage reports a [`SnapshotWrite::Taken`] durable.
pub type SnapshotStoredSender = UnboundedSender<SnapshotReader>;

/// Reads one stored snapshot's bytes on demand, so that a snapshot of any
/// size is served to followers without being held in memory. Cheap to
/// clone. A file-backed reader keeps the file open: it stays readable
/// after a newer snapshot replaced (and deleted) it.
#[derive(Clone, Debug)]
pub struct SnapshotReader {
    meta: SnapshotMeta,
    /// The configuration stored with the snapshot (`None` for a snapshot
    /// stored without one: file format version 1).
    membership: Option<Membership>,
    source: ReaderSource,
}

#[derive(Clone, Debug)]
enum ReaderSource {
    Memory(Bytes),
    File {
        file: Arc<File>,
        /// Where the snapshot's bytes start in the file (after its header).
        data_offset_bytes: u64,
        path: PathBuf,
    },
}

impl SnapshotReader {
    /// A reader of a snapshot held in memory.
    pub fn from_memory(snapshot: &Snapshot) -> Self {
        SnapshotReader {
            meta: snapshot.meta(),
            membership: snapshot.membership.clone(),
            source: ReaderSource::Memory(snapshot.data.clone()),
        }
    }

    /// A reader of the snapshot `meta` stored in `file` from byte
    /// `data_offset_bytes` on.
    pub(crate) fn from_file(
        meta: SnapshotMeta,
        membership: Option<Membership>,
        file: Arc<File>,
        data_offset_bytes: u64,
        path: PathBuf,
    ) -> Self {
        SnapshotReader {
            meta,
            membership,
            source: ReaderSource::File {
                file,
                data_offset_bytes,
                path,
            },
        }
    }

    /// What the node is told of this snapshot.
    pub fn meta(&self) -> SnapshotMeta {
        self.meta
    }

    /// The configuration in force at the snapshot's last entry, as stored
    /// with it (`None` for a snapshot stored without one).
    pub fn membership(&self) -> Option<&Membership> {
        self.membership.as_ref()
    }

    /// The snapshot's bytes `offset..offset + length_bytes`.
    pub fn read_chunk(&self, offset: u64, length_bytes: u64) -> Result<Bytes, StorageError> {
        let end = offset.checked_add(length_bytes);
        if end.is_none_or(|end| end > self.meta.size_bytes) {
            return Err(StorageError::Io {
                context: format!(
                    "reading bytes {offset}..+{length_bytes} of the {}-byte snapshot at index {}",
                    self.meta.size_bytes, self.meta.position.index
                ),
                source: std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
            });
        }
        match &self.source {
            ReaderSource::Memory(data) => {
                Ok(data.slice(offset as usize..(offset + length_bytes) as usize))
            }
            ReaderSource::File {
                file,
                data_offset_bytes,
                path,
            } => {
                let mut buffer = vec![0u8; length_bytes as usize];
                file.read_exact_at(&mut buffer, data_offset_bytes + offset)
                    .map_err(|source| StorageError::Io {
                        context: format!("reading snapshot file {}", path.display()),
                        source,
                    })?;
                Ok(Bytes::from(buffer))
            }
        }
    }

    /// Every byte, checked against the checksum (so a snapshot damaged
    /// after it was verified is never restored).
    pub fn read_verified(&self) -> Result<Bytes, StorageError> {
        let data = self.read_chunk(0, self.meta.size_bytes)?;
        let actual = checksum64(&data);
        if actual != self.meta.checksum {
            let file = match &self.source {
                ReaderSource::Memory(_) => "(in memory)".to_string(),
                ReaderSource::File { path, .. } => path.display().to_string(),
            };
            return Err(StorageError::CorruptSnapshot {
                file,
                reason: format!(
                    "read back for a restore, the data fails its checksum (expected {:#018x}, \
                     computed {actual:#018x})",
                    self.meta.checksum
                ),
            });
        }
        Ok(data)
    }
}

/// Where a snapshot received from a leader is written, chunk by chunk
/// ([`Action::WriteSnapshotChunk`](concord::Action::WriteSnapshotChunk)).
/// Nothing is durable until [`SnapshotWrite::Installed`]. A sink dropped
/// before it is finished (the transfer started over, or was abandoned for
/// a newer snapshot) removes its file.
#[derive(Debug)]
pub struct SnapshotSink {
    meta: SnapshotMeta,
    written_bytes: u64,
    /// `None` once finished.
    target: Option<SinkTarget>,
}

impl Drop for SnapshotSink {
    fn drop(&mut self) {
        if let Some(SinkTarget::File { path, .. }) = self.target.take() {
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::debug!(file = %path.display(), error = %e, "cannot remove an abandoned snapshot file");
            }
        }
    }
}

#[derive(Debug)]
enum SinkTarget {
    Memory(Vec<u8>),
    File {
        file: Arc<File>,
        data_offset_bytes: u64,
        /// The temporary file, renamed to `final_path` once durable.
        path: PathBuf,
        final_path: PathBuf,
    },
}

/// A snapshot received whole into a [`SnapshotSink`], handed to storage to
/// make durable.
#[derive(Debug)]
pub struct ReceivedSnapshot {
    pub(crate) meta: SnapshotMeta,
    pub(crate) target: ReceivedTarget,
}

#[derive(Debug)]
pub(crate) enum ReceivedTarget {
    Memory(Bytes),
    File {
        file: Arc<File>,
        path: PathBuf,
        final_path: PathBuf,
    },
}

impl SnapshotSink {
    /// A sink that keeps the bytes in memory.
    pub fn in_memory(meta: SnapshotMeta) -> Self {
        SnapshotSink {
            meta,
            written_bytes: 0,
            target: Some(SinkTarget::Memory(Vec::new())),
        }
    }

    /// A sink writing the snapshot's bytes into `file` (at `path`) from
    /// byte `data_offset_bytes` on; storage renames it to `final_path`
    /// once durable.
    pub(crate) fn in_file(
        meta: SnapshotMeta,
        file: File,
        data_offset_bytes: u64,
        path: PathBuf,
        final_path: PathBuf,
    ) -> Self {
        SnapshotSink {
            meta,
            written_bytes: 0,
            target: Some(SinkTarget::File {
                file: Arc::new(file),
                data_offset_bytes,
                path,
                final_path,
            }),
        }
    }

    /// The snapshot being received.
    pub fn meta(&self) -> SnapshotMeta {
        self.meta
    }

    /// Bytes written so far.
    pub fn written_bytes(&self) -> u64 {
        self.written_bytes
    }

    /// Writes `data` at `offset`, which must be where the previous write
    /// ended (the node writes a snapshot strictly in order).
    pub fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        assert_eq!(
            offset, self.written_bytes,
            "snapshot chunks must be written in order"
        );
        assert!(
            offset + data.len() as u64 <= self.meta.size_bytes,
            "a snapshot chunk past the snapshot's announced size"
        );
        match self.target.as_mut().expect("written before finished") {
            SinkTarget::Memory(bytes) => bytes.extend_from_slice(data),
            SinkTarget::File {
                file,
                data_offset_bytes,
                path,
                ..
            } => file
                .write_all_at(data, *data_offset_bytes + offset)
                .map_err(|source| StorageError::Io {
                    context: format!("writing snapshot file {}", path.display()),
                    source,
                })?,
        }
        self.written_bytes += data.len() as u64;
        Ok(())
    }

    /// Every byte was written: the snapshot to hand to storage, and a
    /// reader of it (for the restore and to serve it to followers).
    ///
    /// # Panics
    ///
    /// When bytes are missing: the node installs only a whole snapshot.
    pub fn finish(mut self) -> (ReceivedSnapshot, SnapshotReader) {
        assert_eq!(
            self.written_bytes, self.meta.size_bytes,
            "a snapshot finished before every byte was written"
        );
        match self.target.take().expect("finished once") {
            SinkTarget::Memory(bytes) => {
                let data = Bytes::from(bytes);
                let reader = SnapshotReader {
                    meta: self.meta,
                    membership: None,
                    source: ReaderSource::Memory(data.clone()),
                };
                let received = ReceivedSnapshot {
                    meta: self.meta,
                    target: ReceivedTarget::Memory(data),
                };
                (received, reader)
            }
            SinkTarget::File {
                file,
                data_offset_bytes,
                path,
                final_path,
            } => {
                let reader = SnapshotReader::from_file(
                    self.meta,
                    None,
                    file.clone(),
                    data_offset_bytes,
                    final_path.clone(),
                );
                let received = ReceivedSnapshot {
                    meta: self.meta,
                    target: ReceivedTarget::File {
                        file,
                        path,
                        final_path,
                    },
                };
                (received, reader)
            }
        }
    }
}

impl ReceivedSnapshot {
    /// The snapshot received.
    pub fn meta(&self) -> SnapshotMeta {
        self.meta
    }
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
    /// The shared write-ahead log of a multi-group node
    /// ([`crate::multi`]) lost data it had made durable, as its
    /// durable marker shows. Any of the node's groups may have
    /// acknowledged those writes, so recovery refuses.
    #[error(
        "shared write-ahead log lost data it had made durable: {file} at byte offset {offset}: \
         {reason}; everything up to byte offset {durable_offset} of that segment had been \
         fsynced and may have been acknowledged by any group of this node, so starting with \
         less ({lost_bytes} bytes fewer) could lose committed writes. Refusing to start. Find \
         out what damaged the disk; then either restore the data directory, or restart with \
         --accept-wal-data-loss (MultiWalOptions::accept_data_loss) to truncate the log there \
         and rejoin every group with a shorter log"
    )]
    SharedLogDataLost {
        /// The segment file that was marked durable.
        file: String,
        /// Byte offset in `file` where the readable log ends.
        offset: u64,
        /// What is wrong.
        reason: String,
        /// Byte offset of `file` up to which the marker says data was durable.
        durable_offset: u64,
        /// Marked-durable bytes that are gone.
        lost_bytes: u64,
    },
    /// The data directory is another cluster's or node's, or in use by
    /// another process (see [`IdentityError`](super::identity::IdentityError)).
    #[error(transparent)]
    Identity(Box<super::identity::IdentityError>),
    /// A file is not in a format this build can read (an older, unversioned
    /// write-ahead log, a newer format version, or not a log file at all).
    #[error("write-ahead log file {file} has an unsupported format: {reason}")]
    UnsupportedFormat {
        /// The file.
        file: String,
        /// What was found instead.
        reason: String,
    },
    /// A snapshot file is damaged (failed its checksum, cut short, or does
    /// not match its name) or missing where the write-ahead log needs it.
    /// Never ignored: the snapshot holds committed state the log no longer
    /// has.
    #[error(
        "snapshot file {file} is unusable: {reason}; the entries it covers are no longer in the \
         write-ahead log, so this node cannot start from its data directory. Restore the data \
         directory from a backup, or remove it entirely so the node rejoins empty and is sent a \
         snapshot by the leader"
    )]
    CorruptSnapshot {
        /// The snapshot file (or the directory where it should be).
        file: String,
        /// What is wrong.
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

    /// A reader of the newest stored snapshot, verified by
    /// [`recover`](Storage::recover) (its position is the recovered log's
    /// base). Called once, after `recover` and before `start`; `None` when
    /// there is none.
    fn recovered_snapshot(&mut self) -> Option<SnapshotReader>;

    /// A sink for a snapshot about to be received from the leader (the
    /// node wrote its first chunk). Any earlier sink that was not finished
    /// is abandoned.
    fn receive_snapshot(&mut self, meta: SnapshotMeta) -> Result<SnapshotSink, StorageError>;

    /// Queues a write, in order after every earlier one.
    fn submit(&mut self, write: PersistRequest);

    /// Queues a snapshot write, in order after every earlier write. Once
    /// durable, the snapshot replaces the stored one and the log entries it
    /// covers (every entry, for [`SnapshotWrite::Installed`] with
    /// `discard_log`) are dropped: after a restart `recover` reports the
    /// log continuing after the snapshot.
    fn submit_snapshot(&mut self, write: SnapshotWrite);

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
    fn recovered_snapshot(&mut self) -> Option<SnapshotReader> {
        (**self).recovered_snapshot()
    }
    fn receive_snapshot(&mut self, meta: SnapshotMeta) -> Result<SnapshotSink, StorageError> {
        (**self).receive_snapshot(meta)
    }
    fn submit(&mut self, write: PersistRequest) {
        (**self).submit(write)
    }
    fn submit_snapshot(&mut self, write: SnapshotWrite) {
        (**self).submit_snapshot(write)
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
    /// The stored snapshot; the log continues after its position.
    snapshot: Option<Snapshot>,
    /// Entries after the snapshot's position, contiguous.
    entries: Vec<Entry>,
    writes: u64,
}

impl MemDiskState {
    fn base(&self) -> LogPosition {
        self.snapshot
            .as_ref()
            .map_or(LogPosition::ZERO, |snapshot| snapshot.position)
    }

    /// Keeps `snapshot` unless a newer one is stored, dropping the entries
    /// it covers (all of them with `discard_log`). Returns whether it was
    /// kept.
    fn store_snapshot(&mut self, snapshot: Snapshot, discard_log: bool) -> bool {
        let position = snapshot.position;
        if position.index <= self.base().index {
            return false;
        }
        let covered = (position.index - self.base().index) as usize;
        // The entries after the snapshot are kept only when the log holds
        // its last entry (log matching: then they continue it).
        let keeps_suffix = !discard_log
            && covered <= self.entries.len()
            && self.entries[covered - 1].term == position.term;
        if keeps_suffix {
            self.entries.drain(..covered);
        } else {
            self.entries.clear();
        }
        self.snapshot = Some(snapshot);
        true
    }
}

impl MemDisk {
    /// An empty disk.
    pub fn new() -> Self {
        Self::default()
    }

    /// The stored snapshot's position (ZERO when none): the log continues
    /// after it.
    pub fn snapshot_position(&self) -> LogPosition {
        self.lock().base()
    }

    /// Number of entries stored (after the snapshot).
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
/// Snapshots have the file storage's semantics: the newest is kept, the
/// entries it covers are dropped, and a restart recovers from it.
#[derive(Debug)]
pub struct MemStorage {
    disk: MemDisk,
    notify: Option<PersistedSender>,
    recovered_snapshot: Option<Snapshot>,
}

impl MemStorage {
    /// Storage on `disk` (clone the disk to keep it across restarts).
    pub fn new(disk: MemDisk) -> Self {
        MemStorage {
            disk,
            notify: None,
            recovered_snapshot: None,
        }
    }
}

impl Storage for MemStorage {
    fn recover(&mut self) -> Result<Recovered, StorageError> {
        let state = self.disk.lock();
        let base = state.base();
        self.recovered_snapshot = state.snapshot.clone();
        Ok(Recovered {
            hard_state: state.hard_state,
            base,
            entries: state.entries.clone(),
            // The host restores its state machine from the snapshot.
            applied_index: base.index,
            membership: state
                .snapshot
                .as_ref()
                .and_then(|snapshot| snapshot.membership.clone()),
        })
    }

    fn recovered_snapshot(&mut self) -> Option<SnapshotReader> {
        self.recovered_snapshot
            .take()
            .map(|snapshot| SnapshotReader::from_memory(&snapshot))
    }

    fn receive_snapshot(&mut self, meta: SnapshotMeta) -> Result<SnapshotSink, StorageError> {
        Ok(SnapshotSink::in_memory(meta))
    }

    fn submit_snapshot(&mut self, write: SnapshotWrite) {
        match write {
            SnapshotWrite::Taken { snapshot, stored } => {
                let reader = SnapshotReader::from_memory(&snapshot);
                {
                    let mut state = self.disk.lock();
                    state.store_snapshot(snapshot, false);
                    state.writes += 1;
                }
                let _ = stored.send(reader);
            }
            SnapshotWrite::Installed {
                id,
                received,
                discard_log,
                membership,
            } => {
                let ReceivedTarget::Memory(data) = received.target else {
                    panic!("MemStorage hands out in-memory sinks only");
                };
                let snapshot =
                    Snapshot::new(received.meta.position, data).with_membership(Some(membership));
                {
                    let mut state = self.disk.lock();
                    state.store_snapshot(snapshot, discard_log);
                    state.writes += 1;
                }
                if let Some(notify) = &self.notify {
                    let _ = notify.send(Ok(id));
                }
            }
        }
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
            let base = state.base().index;
            if let Some(after) = write.truncate_after {
                assert!(after >= base, "truncating below the snapshot at {base}");
                state.entries.truncate((after - base) as usize);
            }
            append_entries(&mut state.entries, base, write.entries.iter().cloned());
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

/// Appends entries to a log continuing after `base`, overwriting any
/// suffix the first new entry overlaps. Entries at or below `base` are
/// covered by the snapshot and skipped.
pub(crate) fn append_entries(
    log: &mut Vec<Entry>,
    base: Index,
    new: impl IntoIterator<Item = Entry>,
) {
    for entry in new {
        if entry.index <= base {
            continue;
        }
        let position = (entry.index - base - 1) as usize;
        assert!(
            position <= log.len(),
            "appended entries must not leave a gap"
        );
        if position < log.len() {
            log.truncate(position);
        }
        log.push(entry);
    }
}
