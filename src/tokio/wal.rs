//! The write-ahead log on disk: segmented files of checksummed records, a
//! dedicated writer thread with group commit, and an atomically replaced
//! hard-state file.
//!
//! ## Layout of a data directory
//!
//! ```text
//! <dir>/hardstate                       term + vote: [crc32c u32][bincode]
//! <dir>/wal/00000000000000000001.seg    records, appended
//! <dir>/wal/00000000000000000002.seg    next segment once the first is full
//! ```
//!
//! A record is `[len: u32 LE][crc32c(payload): u32 LE][payload]` where the
//! payload is a bincode [`WalRecord`]: "truncate after index i" or "append
//! these entries". Replaying the records in order rebuilds the log.
//!
//! ## Writes
//!
//! [`FileStorage::submit`] sends the write to the writer thread over a
//! `crossbeam-channel`. The thread takes everything queued (up to a bound),
//! writes it with one `write`, calls `fdatasync` once for the whole batch
//! (group commit), and reports the highest write id. A changed hard state
//! is written first, to a temporary file that is synced, renamed over
//! `hardstate`, and made durable by syncing the directory.
//!
//! ## Recovery
//!
//! [`FileStorage::open`] reads everything back. A record cut short at the
//! very end of the last segment (a torn write from a crash) is truncated
//! away. Any other damage — a checksum mismatch or undecodable record
//! before the end, a damaged hard-state file — is an error naming the file
//! and byte offset: damaged data is never skipped and never applied.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};

use crate::{Entry, HardState, Index, LogPosition, Recovered, WriteId};

use super::codec;
use super::storage::{PersistRequest, PersistedSender, Storage, StorageError};

/// Bytes of a record header.
pub const RECORD_HEADER_BYTES: usize = 8;

/// Largest record payload accepted on recovery.
pub const RECORD_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Options of a [`FileStorage`].
#[derive(Clone, Debug)]
pub struct WalOptions {
    /// Start a new segment once the current one reaches this size.
    pub segment_bytes_max: u64,
    /// Most writes taken into one group commit.
    pub batch_writes_max: usize,
    /// Call `fdatasync` (turn off only for experiments: a crash may then
    /// lose acknowledged writes).
    pub sync: bool,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_bytes_max: 64 * 1024 * 1024,
            batch_writes_max: 4096,
            sync: true,
        }
    }
}

/// One record of the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WalRecord {
    /// Drop every entry after this index.
    Truncate {
        /// Last index kept.
        after: Index,
    },
    /// Append these entries (contiguous; an overlap replaces the suffix).
    Append {
        /// The entries.
        entries: Vec<Entry>,
    },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StorageError {
    let context = context.into();
    move |source| StorageError::Io { context, source }
}

fn segment_name(number: u64) -> String {
    format!("{number:020}.seg")
}

fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(format!("syncing directory {}", dir.display())))
}

/// [`WalRecord`] borrowing its entries: encodes identically, without
/// cloning them.
#[derive(Serialize)]
enum WalRecordRef<'a> {
    Truncate { after: Index },
    Append { entries: &'a [Entry] },
}

/// Appends one encoded record to `out`.
pub fn encode_record(record: &WalRecord, out: &mut Vec<u8>) -> Result<(), StorageError> {
    let borrowed = match record {
        WalRecord::Truncate { after } => WalRecordRef::Truncate { after: *after },
        WalRecord::Append { entries } => WalRecordRef::Append { entries },
    };
    encode_record_ref(&borrowed, out)
}

fn encode_record_ref(record: &WalRecordRef<'_>, out: &mut Vec<u8>) -> Result<(), StorageError> {
    let start = out.len();
    out.extend_from_slice(&[0u8; RECORD_HEADER_BYTES]);
    codec::encode_into(record, out).map_err(|e| StorageError::Misuse(e.to_string()))?;
    let len = out.len() - start - RECORD_HEADER_BYTES;
    let crc = crc32c::crc32c(&out[start + RECORD_HEADER_BYTES..]);
    out[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Writes the hard state atomically: temp file, fsync, rename, fsync dir.
pub fn write_hard_state(dir: &Path, hard_state: &HardState) -> Result<(), StorageError> {
    let payload = codec::encode(hard_state).map_err(|e| StorageError::Misuse(e.to_string()))?;
    let mut bytes = crc32c::crc32c(&payload).to_le_bytes().to_vec();
    bytes.extend_from_slice(&payload);
    let tmp = dir.join("hardstate.tmp");
    let path = dir.join("hardstate");
    let mut file = File::create(&tmp).map_err(io_err(format!("creating {}", tmp.display())))?;
    file.write_all(&bytes)
        .map_err(io_err(format!("writing {}", tmp.display())))?;
    file.sync_all()
        .map_err(io_err(format!("syncing {}", tmp.display())))?;
    drop(file);
    fs::rename(&tmp, &path).map_err(io_err(format!(
        "renaming {} to {}",
        tmp.display(),
        path.display()
    )))?;
    sync_dir(dir)
}

fn read_hard_state(dir: &Path) -> Result<HardState, StorageError> {
    let path = dir.join("hardstate");
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HardState::default()),
        Err(e) => return Err(io_err(format!("reading {}", path.display()))(e)),
    };
    let corrupt = |reason: String| StorageError::Corrupt {
        file: path.display().to_string(),
        offset: 0,
        reason,
    };
    if bytes.len() < 4 {
        return Err(corrupt(format!(
            "{} bytes is too short for a hard state",
            bytes.len()
        )));
    }
    let crc = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if crc32c::crc32c(&bytes[4..]) != crc {
        return Err(corrupt("checksum mismatch".to_string()));
    }
    codec::decode(&bytes[4..], 1024).map_err(|e| corrupt(e.to_string()))
}

/// Segment files of `wal_dir`, sorted by number.
fn list_segments(wal_dir: &Path) -> Result<Vec<(u64, PathBuf)>, StorageError> {
    let mut segments = Vec::new();
    let read = fs::read_dir(wal_dir).map_err(io_err(format!("listing {}", wal_dir.display())))?;
    for item in read {
        let item = item.map_err(io_err(format!("listing {}", wal_dir.display())))?;
        let name = item.file_name().to_string_lossy().to_string();
        if let Some(number) = name
            .strip_suffix(".seg")
            .and_then(|n| n.parse::<u64>().ok())
        {
            segments.push((number, item.path()));
        }
    }
    segments.sort();
    Ok(segments)
}

/// What recovery found.
#[derive(Debug)]
pub struct RecoveryReport {
    /// The recovered state.
    pub recovered: Recovered,
    /// Bytes dropped from the end of the last segment (a torn record).
    pub torn_bytes_truncated: u64,
    /// Segment files read.
    pub segments: usize,
    /// Records replayed.
    pub records: u64,
}

/// Reads a data directory back, truncating a torn final record.
pub fn recover_dir(dir: &Path) -> Result<RecoveryReport, StorageError> {
    let hard_state = read_hard_state(dir)?;
    let wal_dir = dir.join("wal");
    let segments = list_segments(&wal_dir)?;
    let mut entries: Vec<Entry> = Vec::new();
    let mut records = 0u64;
    let mut torn_bytes_truncated = 0;
    for (i, (_, path)) in segments.iter().enumerate() {
        let last_segment = i + 1 == segments.len();
        let mut bytes = Vec::new();
        File::open(path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(io_err(format!("reading {}", path.display())))?;
        let file = path.display().to_string();
        let mut offset = 0usize;
        while offset < bytes.len() {
            let rest = &bytes[offset..];
            let at = offset as u64;
            let corrupt = |reason: String| StorageError::Corrupt {
                file: file.clone(),
                offset: at,
                reason,
            };
            // A record that does not fit in the file is torn: only
            // acceptable as the very last thing in the last segment.
            let torn = if rest.len() < RECORD_HEADER_BYTES {
                Some(format!(
                    "{} bytes left, less than a record header",
                    rest.len()
                ))
            } else {
                let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                if len > RECORD_BYTES_MAX {
                    return Err(corrupt(format!(
                        "record length {len} exceeds the maximum {RECORD_BYTES_MAX}"
                    )));
                }
                if RECORD_HEADER_BYTES + len > rest.len() {
                    Some(format!(
                        "record of {len} bytes extends past the end of the file"
                    ))
                } else {
                    let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
                    let payload = &rest[RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + len];
                    if crc32c::crc32c(payload) != crc {
                        if RECORD_HEADER_BYTES + len == rest.len() {
                            Some("final record fails its checksum".to_string())
                        } else {
                            return Err(corrupt("record checksum mismatch".to_string()));
                        }
                    } else {
                        let record: WalRecord = codec::decode(payload, RECORD_BYTES_MAX)
                            .map_err(|e| corrupt(e.to_string()))?;
                        replay(&mut entries, record).map_err(corrupt)?;
                        records += 1;
                        offset += RECORD_HEADER_BYTES + len;
                        None
                    }
                }
            };
            if let Some(reason) = torn {
                if !last_segment {
                    return Err(corrupt(format!(
                        "{reason} in a segment that is not the last"
                    )));
                }
                tracing::warn!(file = %file, offset, reason = %reason, "truncating torn record at the end of the log");
                torn_bytes_truncated = (bytes.len() - offset) as u64;
                let f = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(io_err(format!("opening {file}")))?;
                f.set_len(offset as u64)
                    .map_err(io_err(format!("truncating {file}")))?;
                f.sync_all().map_err(io_err(format!("syncing {file}")))?;
                break;
            }
        }
    }
    if let Some(last) = entries.last() {
        if last.term > hard_state.term {
            return Err(StorageError::Corrupt {
                file: dir.join("hardstate").display().to_string(),
                offset: 0,
                reason: format!(
                    "log holds term {} but the hard state only term {}",
                    last.term, hard_state.term
                ),
            });
        }
    }
    Ok(RecoveryReport {
        recovered: Recovered {
            hard_state,
            base: LogPosition::ZERO,
            entries,
            applied_index: 0,
        },
        torn_bytes_truncated,
        segments: segments.len(),
        records,
    })
}

fn replay(entries: &mut Vec<Entry>, record: WalRecord) -> Result<(), String> {
    match record {
        WalRecord::Truncate { after } => {
            entries.truncate(after.min(entries.len() as u64) as usize);
        }
        WalRecord::Append { entries: new } => {
            for entry in new {
                let next = entries.len() as u64 + 1;
                if entry.index == 0 || entry.index > next {
                    return Err(format!(
                        "entry index {} leaves a gap after index {}",
                        entry.index,
                        next - 1
                    ));
                }
                entries.truncate(entry.index as usize - 1);
                entries.push(entry);
            }
        }
    }
    Ok(())
}

enum WriterCommand {
    Write(PersistRequest),
}

/// Storage in a data directory, written by a dedicated thread with group
/// commit. See the [module documentation](self).
pub struct FileStorage {
    dir: PathBuf,
    options: WalOptions,
    recovered: Option<Recovered>,
    tx: Option<crossbeam_channel::Sender<WriterCommand>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for FileStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStorage")
            .field("dir", &self.dir)
            .finish()
    }
}

impl FileStorage {
    /// Opens (creating if needed) the data directory and recovers it.
    pub fn open(dir: impl AsRef<Path>, options: WalOptions) -> Result<FileStorage, StorageError> {
        let dir = dir.as_ref().to_path_buf();
        let wal_dir = dir.join("wal");
        fs::create_dir_all(&wal_dir).map_err(io_err(format!("creating {}", wal_dir.display())))?;
        let report = recover_dir(&dir)?;
        tracing::info!(
            dir = %dir.display(),
            segments = report.segments,
            records = report.records,
            entries = report.recovered.entries.len(),
            term = report.recovered.hard_state.term,
            torn_bytes = report.torn_bytes_truncated,
            "recovered write-ahead log"
        );
        Ok(FileStorage {
            dir,
            options,
            recovered: Some(report.recovered),
            tx: None,
            thread: None,
        })
    }
}

impl Storage for FileStorage {
    fn recover(&mut self) -> Result<Recovered, StorageError> {
        self.recovered
            .take()
            .ok_or_else(|| StorageError::Misuse("recover called twice".to_string()))
    }

    fn start(&mut self, notify: PersistedSender) -> Result<(), StorageError> {
        if self.tx.is_some() {
            return Err(StorageError::Misuse("start called twice".to_string()));
        }
        let wal_dir = self.dir.join("wal");
        let segments = list_segments(&wal_dir)?;
        let (number, path) = match segments.last() {
            Some((n, p)) => (*n, p.clone()),
            None => (1, wal_dir.join(segment_name(1))),
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(format!("opening {}", path.display())))?;
        sync_dir(&wal_dir)?;
        let size = file
            .metadata()
            .map_err(io_err(format!("stat {}", path.display())))?
            .len();
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut writer = Writer {
            dir: self.dir.clone(),
            wal_dir,
            options: self.options.clone(),
            file,
            segment_number: number,
            segment_bytes: size,
            buf: Vec::new(),
        };
        let thread = std::thread::Builder::new()
            .name("concord-wal".to_string())
            .spawn(move || writer.run(rx, notify))
            .map_err(io_err("spawning the WAL writer thread"))?;
        self.tx = Some(tx);
        self.thread = Some(thread);
        Ok(())
    }

    fn submit(&mut self, write: PersistRequest) {
        if let Some(tx) = &self.tx {
            // The thread only stops on an error it has already reported.
            let _ = tx.send(WriterCommand::Write(write));
        }
    }

    fn shutdown(&mut self) {
        self.tx = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for FileStorage {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Writer {
    dir: PathBuf,
    wal_dir: PathBuf,
    options: WalOptions,
    file: File,
    segment_number: u64,
    segment_bytes: u64,
    buf: Vec<u8>,
}

impl Writer {
    fn run(&mut self, rx: crossbeam_channel::Receiver<WriterCommand>, notify: PersistedSender) {
        let mut batch = Vec::new();
        while let Ok(first) = rx.recv() {
            batch.clear();
            batch.push(first);
            while batch.len() < self.options.batch_writes_max {
                match rx.try_recv() {
                    Ok(cmd) => batch.push(cmd),
                    Err(_) => break,
                }
            }
            match self.write_batch(&batch) {
                Ok(Some(id)) => {
                    if notify.send(Ok(id)).is_err() {
                        return;
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(error = %e, "write-ahead log failed; the node must stop");
                    let _ = notify.send(Err(e));
                    return;
                }
            }
        }
    }

    fn write_batch(&mut self, batch: &[WriterCommand]) -> Result<Option<WriteId>, StorageError> {
        self.buf.clear();
        let mut hard_state = None;
        let mut last_id = None;
        for WriterCommand::Write(write) in batch {
            if let Some(after) = write.truncate_after {
                encode_record(&WalRecord::Truncate { after }, &mut self.buf)?;
            }
            if !write.entries.is_empty() {
                encode_record(
                    &WalRecord::Append {
                        entries: write.entries.clone(),
                    },
                    &mut self.buf,
                )?;
            }
            if write.hard_state.is_some() {
                hard_state = write.hard_state;
            }
            last_id = Some(write.id);
        }
        // Hard state first: entries of a new term must never be durable
        // while the hard state still names an older term.
        if let Some(hs) = hard_state {
            write_hard_state(&self.dir, &hs)?;
        }
        if !self.buf.is_empty() {
            let path = self.wal_dir.join(segment_name(self.segment_number));
            self.file
                .write_all(&self.buf)
                .map_err(io_err(format!("appending to {}", path.display())))?;
            if self.options.sync {
                self.file
                    .sync_data()
                    .map_err(io_err(format!("fdatasync {}", path.display())))?;
            }
            self.segment_bytes += self.buf.len() as u64;
            if self.segment_bytes >= self.options.segment_bytes_max {
                self.roll_segment()?;
            }
        }
        Ok(last_id)
    }

    fn roll_segment(&mut self) -> Result<(), StorageError> {
        self.segment_number += 1;
        let path = self.wal_dir.join(segment_name(self.segment_number));
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(format!("creating {}", path.display())))?;
        sync_dir(&self.wal_dir)?;
        self.segment_bytes = 0;
        tracing::debug!(segment = %path.display(), "started a new WAL segment");
        Ok(())
    }
}
