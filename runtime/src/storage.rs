//! What the one runtime's storage shares: [`StorageError`], and how
//! snapshot bytes travel. The shared log itself is
//! [`multi::shared_log`](super::multi::shared_log).
//!
//! Snapshot bytes are streamed, never held whole for longer than a
//! restore: a stored snapshot is read chunk by chunk through a
//! [`SnapshotReader`] (a file read at an offset) when a follower needs it,
//! and a snapshot received from a leader is written chunk by chunk into a
//! [`SnapshotSink`] (a file that becomes the stored snapshot once the
//! log's install makes it durable). Chunk reads and writes are page-cache
//! copies of at most one chunk; every fsync happens on the log's own
//! thread.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use thiserror::Error;

use concord::{checksum64, Index, Membership, Snapshot, SnapshotMeta};

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
/// Nothing is durable until the log installs it. A sink dropped
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

    /// A reader of its bytes where they are now (a file's stays readable
    /// while open, even once removed).
    pub(crate) fn reader(&self, membership: Option<Membership>) -> SnapshotReader {
        match &self.target {
            ReceivedTarget::Memory(data) => SnapshotReader {
                meta: self.meta,
                membership,
                source: ReaderSource::Memory(data.clone()),
            },
            ReceivedTarget::File { file, path, .. } => SnapshotReader::from_file(
                self.meta,
                membership,
                file.clone(),
                crate::snapshot_file::SNAPSHOT_HEADER_BYTES as u64,
                path.clone(),
            ),
        }
    }
}

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
