//! The single-group server's write-ahead log format (version 2), kept
//! for two readers: the shared log
//! ([`multi::shared_log`](super::multi::shared_log)) frames its records,
//! segments and durable marker the same way, and a data directory that
//! server wrote is read back once, by the upgrade to the shared log
//! ([`multi::upgrade`](super::multi::upgrade), through [`recover_dir`]).
//! Nothing writes this layout any more.
//!
//! ```text
//! <dir>/identity                        whose it is (see [`identity`]); `open_as` only
//! <dir>/lock                            flock(2)ed while open; the holder's pid
//! <dir>/hardstate                       term + vote: [crc32c u32][bincode]
//! <dir>/wal/00000000000000000001.seg    segment header, then records, appended
//! <dir>/wal/durable                     the durable marker (40 bytes)
//! <dir>/snapshots/snapshot-<index>-<term>.snap   the newest snapshot
//! ```
//!
//! Segments hold checksummed, length-checked records (a bincode
//! [`WalRecord`] each) after a versioned header; a log without the header
//! or of another version is refused ([`StorageError::UnsupportedFormat`]).
//! Each batch of writes was one write and one `fdatasync`, then the
//! durable marker ("that segment is durable up to this offset").
//! Recovery ([`recover_dir`]) cuts a torn tail, refuses damage followed by
//! valid data ([`StorageError::Corrupt`]) and refuses to start when bytes
//! the marker names as durable are gone ([`StorageError::DurableDataLost`],
//! unless [`WalOptions::accept_data_loss`]); damaged data is never applied
//! and never skipped. Snapshot files and their records bound the log.
//!
//! The format byte by byte, the durable marker, the recovery rules and what
//! they guarantee, and snapshots and compaction: the repository's
//! `docs/wal-format.md`.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use concord::{Entry, HardState, Index, LogPosition, Recovered, Term};

use super::codec;
use super::snapshot_file::{self, SNAPSHOT_DIR_NAME};
use super::storage::{SnapshotReader, StorageError};

/// Version of the on-disk format written and read by this build.
pub const FORMAT_VERSION: u32 = 2;

/// First bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"CNCDWAL\n";

/// Bytes of a segment header: magic, version, checksum.
pub const SEGMENT_HEADER_BYTES: usize = 16;

/// Bytes of a record header: length, length check, checksum.
pub const RECORD_HEADER_BYTES: usize = 12;

/// Largest record payload accepted on recovery.
pub const RECORD_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Xor'd into every checksum of this format (non-zero), so that a zero
/// checksum field only verifies if crc32c happens to equal this constant;
/// together with "a record length of 0 is invalid", zero-filled bytes never
/// read as a record or a header.
pub const CHECKSUM_SALT: u32 = 0x5EED_C0DE;

/// File name of the durable marker inside the `wal` directory.
pub const MARKER_FILE_NAME: &str = "durable";

/// First bytes of the durable marker.
pub const MARKER_MAGIC: [u8; 8] = *b"CNCDMARK";

/// Size of the durable marker file.
pub const MARKER_BYTES: usize = MarkerFrame::bytes(3);

/// How [`recover_dir`] reads a log (and how the single-group server
/// wrote it).
#[derive(Clone, Debug)]
pub struct WalOptions {
    /// Start a new segment once the current one reaches this size.
    pub segment_bytes_max: u64,
    /// Most writes taken into one group commit.
    pub batch_writes_max: usize,
    /// Call `fdatasync` (turn off only for experiments: a crash may then
    /// lose acknowledged writes). Without it no durable marker is written.
    pub sync: bool,
    /// When recovery finds that data the durable marker names as fsynced
    /// is damaged or missing, truncate anyway (logging the loss at error
    /// level) instead of refusing to start. The node then rejoins with a
    /// shorter log than it may have acknowledged. Default: false.
    pub accept_data_loss: bool,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_bytes_max: 64 * 1024 * 1024,
            batch_writes_max: 4096,
            sync: true,
            accept_data_loss: false,
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
    /// The snapshot at `position` is durable (its file was written and
    /// synced before this record): the log now continues after it. Entries
    /// up to `position.index` are covered by it; with `discard_log` every
    /// later entry is dropped too. Written for snapshots taken
    /// (`discard_log` false) and installed from a leader.
    Snapshot {
        /// The snapshot's last entry.
        position: LogPosition,
        /// The log did not hold the snapshot's last entry: drop it all.
        discard_log: bool,
    },
}

pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StorageError {
    let context = context.into();
    move |source| StorageError::Io { context, source }
}

/// File name of segment `number`.
pub fn segment_name(number: u64) -> String {
    format!("{number:020}.seg")
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(format!("syncing directory {}", dir.display())))
}

/// Replaces `dir/name` with `parts` (concatenated) so that a crash leaves
/// either the old file or the new one, complete and durable: a temporary
/// file written and fsynced, renamed over `name`, then the directory
/// fsynced. Returns the file's path.
pub(crate) fn write_file_atomically(
    dir: &Path,
    name: &str,
    parts: &[&[u8]],
) -> Result<PathBuf, StorageError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let mut file = File::create(&tmp).map_err(io_err(format!("creating {}", tmp.display())))?;
    for part in parts {
        file.write_all(part)
            .map_err(io_err(format!("writing {}", tmp.display())))?;
    }
    file.sync_all()
        .map_err(io_err(format!("syncing {}", tmp.display())))?;
    drop(file);
    fs::rename(&tmp, &path).map_err(io_err(format!(
        "renaming {} to {}",
        tmp.display(),
        path.display()
    )))?;
    sync_dir(dir)?;
    Ok(path)
}

pub(crate) fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

/// The check of a record's length field alone.
fn length_check(len_bytes: &[u8]) -> u32 {
    debug_assert_eq!(len_bytes.len(), 4);
    crc32c::crc32c(len_bytes) ^ CHECKSUM_SALT
}

/// The checksum of a record: covers the length field and the payload.
fn record_checksum(len_bytes: &[u8], payload: &[u8]) -> u32 {
    debug_assert_eq!(len_bytes.len(), 4);
    crc32c::crc32c_append(crc32c::crc32c(len_bytes), payload) ^ CHECKSUM_SALT
}

/// The header every segment starts with.
pub fn segment_header() -> [u8; SEGMENT_HEADER_BYTES] {
    SEGMENT_FORMAT.header()
}

/// This log's segments: [`SEGMENT_MAGIC`], [`FORMAT_VERSION`].
const SEGMENT_FORMAT: SegmentFormat = SegmentFormat {
    magic: SEGMENT_MAGIC,
    version: FORMAT_VERSION,
};

/// A kind of segment file: the magic and format version its header
/// starts with. The single-group log and the multi-group shared log lay
/// out and check their segment headers alike (magic, version, salted
/// checksum); only these differ.
pub(crate) struct SegmentFormat {
    /// The first eight bytes.
    pub(crate) magic: [u8; 8],
    /// The format version after them.
    pub(crate) version: u32,
}

impl SegmentFormat {
    /// A segment's header.
    pub(crate) fn header(&self) -> [u8; SEGMENT_HEADER_BYTES] {
        let mut header = [0u8; SEGMENT_HEADER_BYTES];
        header[..8].copy_from_slice(&self.magic);
        header[8..12].copy_from_slice(&self.version.to_le_bytes());
        let checksum = crc32c::crc32c(&header[..12]) ^ CHECKSUM_SALT;
        header[12..].copy_from_slice(&checksum.to_le_bytes());
        header
    }

    /// Checks a segment's header: `Ok(None)` if valid, `Ok(Some(damage))`
    /// if damaged the way a torn or zeroed write leaves it (a prefix of
    /// the header, or zeros), an error if the file is in another format
    /// (`other_magic` says what such a file may be).
    pub(crate) fn check_header(
        &self,
        bytes: &[u8],
        file: &str,
        other_magic: impl FnOnce() -> String,
    ) -> Result<Option<Damage>, StorageError> {
        let expected = self.header();
        let n = bytes.len().min(SEGMENT_HEADER_BYTES);
        if bytes[..n] == expected[..n] || bytes[..n].iter().all(|b| *b == 0) {
            return Ok(if n < SEGMENT_HEADER_BYTES {
                Some(Damage::SegmentHeaderShort { bytes: n })
            } else if bytes[..n] == expected[..] {
                None
            } else {
                Some(Damage::SegmentHeaderZeroed)
            });
        }
        let unsupported = |reason: String| StorageError::UnsupportedFormat {
            file: file.to_string(),
            reason,
        };
        if n < 8 || bytes[..8] != self.magic {
            return Err(unsupported(other_magic()));
        }
        if n < 12 {
            return Ok(Some(Damage::SegmentHeaderShort { bytes: n }));
        }
        let version = u32_at(bytes, 8);
        if version != self.version {
            return Err(unsupported(format!(
                "format version {version}; this build reads only version {}",
                self.version
            )));
        }
        Ok(Some(if n < SEGMENT_HEADER_BYTES {
            Damage::SegmentHeaderShort { bytes: n }
        } else {
            Damage::SegmentHeaderChecksum
        }))
    }
}

/// [`WalRecord`] borrowing its entries: encodes identically, without
/// cloning them.
#[derive(Serialize)]
enum WalRecordRef<'a> {
    Truncate {
        after: Index,
    },
    Append {
        entries: &'a [Entry],
    },
    Snapshot {
        position: LogPosition,
        discard_log: bool,
    },
}

/// Appends one encoded record (header and payload) to `out`.
pub fn encode_record(record: &WalRecord, out: &mut Vec<u8>) -> Result<(), StorageError> {
    let borrowed = match record {
        WalRecord::Truncate { after } => WalRecordRef::Truncate { after: *after },
        WalRecord::Append { entries } => WalRecordRef::Append { entries },
        WalRecord::Snapshot {
            position,
            discard_log,
        } => WalRecordRef::Snapshot {
            position: *position,
            discard_log: *discard_log,
        },
    };
    encode_record_ref(&borrowed, out)
}

/// Appends `record` encoded by the codec, framed as a record (header and
/// payload), to `out`. Shared with the multi-group log
/// ([`super::multi`]), whose records use the same framing.
pub(crate) fn encode_record_ref<T: Serialize + ?Sized>(
    record: &T,
    out: &mut Vec<u8>,
) -> Result<(), StorageError> {
    let start = out.len();
    out.extend_from_slice(&[0u8; RECORD_HEADER_BYTES]);
    codec::encode_into(record, out).map_err(|e| StorageError::Misuse(e.to_string()))?;
    seal_record(out, start)
}

/// Appends `payload`, framed as a record whatever its bytes, to `out`.
pub(crate) fn frame_payload(payload: &[u8], out: &mut Vec<u8>) -> Result<(), StorageError> {
    let start = out.len();
    out.extend_from_slice(&[0u8; RECORD_HEADER_BYTES]);
    out.extend_from_slice(payload);
    seal_record(out, start)
}

/// Fills in the header of the record whose header was reserved at
/// `start` of `out` and whose payload follows it to the end; refuses
/// (and drops the record) a payload empty or over [`RECORD_BYTES_MAX`].
fn seal_record(out: &mut Vec<u8>, start: usize) -> Result<(), StorageError> {
    let len = out.len() - start - RECORD_HEADER_BYTES;
    if len == 0 || len > RECORD_BYTES_MAX {
        out.truncate(start);
        return Err(StorageError::Misuse(format!(
            "a WAL record of {len} bytes is outside 1..={RECORD_BYTES_MAX}"
        )));
    }
    let len_bytes = (len as u32).to_le_bytes();
    let checksum = record_checksum(&len_bytes, &out[start + RECORD_HEADER_BYTES..]);
    out[start..start + 4].copy_from_slice(&len_bytes);
    out[start + 4..start + 8].copy_from_slice(&length_check(&len_bytes).to_le_bytes());
    out[start + 8..start + 12].copy_from_slice(&checksum.to_le_bytes());
    Ok(())
}

/// Writes the hard state atomically: temp file, fsync, rename, fsync dir.
pub fn write_hard_state(dir: &Path, hard_state: &HardState) -> Result<(), StorageError> {
    let payload = codec::encode(hard_state).map_err(|e| StorageError::Misuse(e.to_string()))?;
    let mut bytes = crc32c::crc32c(&payload).to_le_bytes().to_vec();
    bytes.extend_from_slice(&payload);
    write_file_atomically(dir, "hardstate", &[&bytes]).map(|_| ())
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
    let crc = u32_at(&bytes, 0);
    if crc32c::crc32c(&bytes[4..]) != crc {
        return Err(corrupt("checksum mismatch".to_string()));
    }
    codec::decode(&bytes[4..], 1024).map_err(|e| corrupt(e.to_string()))
}

/// Segment files of `wal_dir`, sorted by number.
fn list_segments(wal_dir: &Path) -> Result<Vec<(u64, PathBuf)>, StorageError> {
    numbered_files(wal_dir, ".seg")
}

/// The files (or directories) in `dir` whose name, less `suffix`, reads
/// as a `T`, with their paths, ascending; other names are passed over.
pub(crate) fn numbered_files<T: std::str::FromStr + Ord>(
    dir: &Path,
    suffix: &str,
) -> Result<Vec<(T, PathBuf)>, StorageError> {
    let listing = || format!("listing {}", dir.display());
    let mut found = Vec::new();
    for item in fs::read_dir(dir).map_err(io_err(listing()))? {
        let item = item.map_err(io_err(listing()))?;
        let name = item.file_name();
        let number = name.to_str().and_then(|name| name.strip_suffix(suffix));
        if let Some(number) = number.and_then(|n| n.parse::<T>().ok()) {
            found.push((number, item.path()));
        }
    }
    found.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(found)
}

/// "Every byte of segment `segment` before `offset_bytes` (and every
/// earlier segment) is durable; the log then ended at `last_index`": what
/// the writer records after each `fdatasync`. See the
/// [module documentation](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DurableMarker {
    /// Number of the segment the offset is in.
    pub segment: u64,
    /// Byte offset in that segment up to which everything is durable.
    pub offset_bytes: u64,
    /// Last log index once those bytes are replayed.
    pub last_index: Index,
}

impl DurableMarker {
    /// How the marker is framed: [`MARKER_MAGIC`], [`FORMAT_VERSION`].
    const FRAME: MarkerFrame = MarkerFrame {
        magic: MARKER_MAGIC,
        version: FORMAT_VERSION,
    };

    /// The marker's fixed-size encoding.
    pub fn encode(&self) -> [u8; MARKER_BYTES] {
        Self::FRAME.encode(&[self.segment, self.offset_bytes, self.last_index])
    }

    /// Decodes a marker, saying what is wrong if it is not one.
    pub fn decode(bytes: &[u8]) -> Result<DurableMarker, String> {
        let [segment, offset_bytes, last_index] = Self::FRAME.decode(bytes)?;
        if offset_bytes < SEGMENT_HEADER_BYTES as u64 {
            return Err(format!(
                "durable offset {offset_bytes} is inside the segment header"
            ));
        }
        Ok(DurableMarker {
            segment,
            offset_bytes,
            last_index,
        })
    }
}

/// The frame of a durable marker, shared by this log's [`DurableMarker`]
/// and the multi-group shared log's
/// ([`crate::multi::record::DurableMarker`]): `magic`, `version`
/// as a little-endian `u32`, the marker's fields as little-endian `u64`
/// words, then `crc32c` of everything before it `^ CHECKSUM_SALT`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MarkerFrame {
    /// The first 8 bytes.
    pub(crate) magic: [u8; 8],
    /// The layout's version.
    pub(crate) version: u32,
}

impl MarkerFrame {
    /// Bytes of a frame of `words` words.
    pub(crate) const fn bytes(words: usize) -> usize {
        12 + 8 * words + 4
    }

    /// Frames `words`; `BYTES` must be [`MarkerFrame::bytes`] of their
    /// count (each marker type fixes both).
    pub(crate) fn encode<const BYTES: usize>(&self, words: &[u64]) -> [u8; BYTES] {
        debug_assert_eq!(BYTES, Self::bytes(words.len()));
        let mut bytes = [0u8; BYTES];
        bytes[..8].copy_from_slice(&self.magic);
        bytes[8..12].copy_from_slice(&self.version.to_le_bytes());
        for (i, word) in words.iter().enumerate() {
            bytes[12 + 8 * i..20 + 8 * i].copy_from_slice(&word.to_le_bytes());
        }
        let end = BYTES - 4;
        let checksum = crc32c::crc32c(&bytes[..end]) ^ CHECKSUM_SALT;
        bytes[end..].copy_from_slice(&checksum.to_le_bytes());
        bytes
    }

    /// The `WORDS` words of a frame, after checking its size, magic,
    /// version and checksum; the error says which is wrong.
    pub(crate) fn decode<const WORDS: usize>(&self, bytes: &[u8]) -> Result<[u64; WORDS], String> {
        let expected = Self::bytes(WORDS);
        if bytes.len() != expected {
            return Err(format!("{} bytes, expected {expected}", bytes.len()));
        }
        if bytes[..8] != self.magic {
            return Err("bad magic".to_string());
        }
        let version = u32_at(bytes, 8);
        if version != self.version {
            return Err(format!(
                "format version {version}, expected {}",
                self.version
            ));
        }
        let end = expected - 4;
        if crc32c::crc32c(&bytes[..end]) ^ CHECKSUM_SALT != u32_at(bytes, end) {
            return Err("checksum mismatch".to_string());
        }
        Ok(std::array::from_fn(|i| u64_at(bytes, 12 + 8 * i)))
    }
}

/// Reads the durable marker of `wal_dir`: `None` when there is none, or
/// (logged at warn) when it cannot be read or is damaged.
pub fn read_durable_marker(wal_dir: &Path) -> Option<DurableMarker> {
    let path = wal_dir.join(MARKER_FILE_NAME);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "cannot read the durable marker; ignoring it (recovery falls back to the torn-tail rule)");
            return None;
        }
    };
    // A marker file created but never written (crash right after start).
    if bytes.is_empty() {
        return None;
    }
    match DurableMarker::decode(&bytes) {
        Ok(marker) => Some(marker),
        Err(reason) => {
            tracing::warn!(file = %path.display(), reason = %reason, "damaged durable marker; ignoring it (recovery falls back to the torn-tail rule)");
            None
        }
    }
}

/// What recovery found.
#[derive(Debug)]
pub struct RecoveryReport {
    /// The recovered state.
    pub recovered: Recovered,
    /// Torn tails truncated from the end of the last segment (0 or 1).
    pub torn_tails: u64,
    /// Bytes dropped from the end of the last segment (a torn tail).
    pub torn_bytes_truncated: u64,
    /// The durable marker found, if a valid one was.
    pub durable_marker: Option<DurableMarker>,
    /// Marked-durable bytes that were missing or damaged and were dropped
    /// because [`WalOptions::accept_data_loss`] was set (0 otherwise).
    pub lost_durable_bytes: u64,
    /// Marked-durable log entries dropped with them: the marker's last index
    /// minus the recovered last index.
    pub lost_durable_entries: u64,
    /// Segment files read.
    pub segments: usize,
    /// Records replayed.
    pub records: u64,
    /// A reader of the newest snapshot (verified), whose position is the
    /// recovered log's base.
    pub snapshot: Option<SnapshotReader>,
    /// Log entries dropped after the snapshot because the log did not hold
    /// the snapshot's last entry (a crash between storing a snapshot
    /// installed from a leader and recording it in the log).
    pub entries_dropped_after_snapshot: u64,
    /// Highest entry index appended in each segment (0 when none), by
    /// segment number: what deciding which segments a snapshot covers needs.
    pub segment_max_indices: BTreeMap<u64, Index>,
}

/// Why reading stopped before the end of a segment.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Damage {
    SegmentHeaderShort { bytes: usize },
    SegmentHeaderZeroed,
    SegmentHeaderChecksum,
    RecordHeaderShort { bytes: usize },
    ZeroLength,
    LengthCheck,
    TooLong { len: usize },
    PastEnd { len: usize, left: usize },
    Checksum,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Damage::SegmentHeaderShort { bytes } => {
                write!(
                    f,
                    "segment header cut short ({bytes} of {SEGMENT_HEADER_BYTES} bytes)"
                )
            }
            Damage::SegmentHeaderZeroed => write!(f, "segment header is all zeros"),
            Damage::SegmentHeaderChecksum => write!(f, "segment header fails its checksum"),
            Damage::RecordHeaderShort { bytes } => write!(
                f,
                "record header cut short ({bytes} of {RECORD_HEADER_BYTES} bytes left)"
            ),
            Damage::ZeroLength => write!(f, "record length 0 (zeroed or damaged header)"),
            Damage::LengthCheck => write!(f, "record length fails its check (damaged header)"),
            Damage::TooLong { len } => {
                write!(
                    f,
                    "record length {len} exceeds the maximum {RECORD_BYTES_MAX}"
                )
            }
            Damage::PastEnd { len, left } => write!(
                f,
                "record of {len} bytes extends past the end of the file ({left} bytes left)"
            ),
            Damage::Checksum => write!(f, "record fails its checksum"),
        }
    }
}

/// The record at `offset` of a segment, or why there is none.
pub(crate) fn parse_record_at(bytes: &[u8], offset: usize) -> Result<&[u8], Damage> {
    let rest = &bytes[offset..];
    if rest.len() < RECORD_HEADER_BYTES {
        return Err(Damage::RecordHeaderShort { bytes: rest.len() });
    }
    let len = u32_at(rest, 0) as usize;
    if len == 0 {
        return Err(Damage::ZeroLength);
    }
    if length_check(&rest[..4]) != u32_at(rest, 4) {
        return Err(Damage::LengthCheck);
    }
    if len > RECORD_BYTES_MAX {
        return Err(Damage::TooLong { len });
    }
    let left = rest.len() - RECORD_HEADER_BYTES;
    if len > left {
        return Err(Damage::PastEnd { len, left });
    }
    let payload = &rest[RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + len];
    if record_checksum(&rest[..4], payload) != u32_at(rest, 8) {
        return Err(Damage::Checksum);
    }
    Ok(payload)
}

/// Offset of the first valid record starting at or after `from`. Linear:
/// a position whose length fails its check costs O(1).
pub(crate) fn next_valid_record(bytes: &[u8], from: usize) -> Option<usize> {
    (from..bytes.len()).find(|&at| parse_record_at(bytes, at).is_ok())
}

/// An empty segment file: one created whose header was not yet written
/// when the process died, which only the last segment can be (a segment
/// is created only once the one before it is sealed). Any other is
/// corruption.
pub(crate) fn refuse_empty_unless_last(file: &str, last_segment: bool) -> Result<(), StorageError> {
    if last_segment {
        return Ok(());
    }
    Err(StorageError::Corrupt {
        file: file.to_string(),
        offset: 0,
        reason: "empty segment that is not the last".to_string(),
    })
}

/// Checks a segment's header: `Ok(None)` if valid, `Ok(Some(damage))` if
/// damaged the way a torn or zeroed write leaves it, an error if the file
/// is in another format.
fn check_segment_header(bytes: &[u8], file: &str) -> Result<Option<Damage>, StorageError> {
    SEGMENT_FORMAT.check_header(bytes, file, || {
        format!(
            "it does not start with the segment magic {:?}: it was written by a concord \
             older than format version {FORMAT_VERSION} (unversioned, not readable by this \
             build; start from an empty data directory) or is not a write-ahead log segment",
            String::from_utf8_lossy(&SEGMENT_MAGIC)
        )
    })
}

/// Damage at the end of the last segment, taken as a torn tail.
struct TornTail {
    offset: u64,
    file_bytes: u64,
    damage: Damage,
    /// The tail holds zeros only: most often the space the writer fills
    /// ahead of its records, left by a process that stopped without
    /// cutting it.
    zeros_only: bool,
}

/// Reads a data directory back, applying the recovery rule of the
/// [module documentation](self): torn tails are truncated, corruption and
/// lost durable data are errors (the latter truncated and reported instead
/// when `options.accept_data_loss` is set).
pub fn recover_dir(dir: &Path, options: &WalOptions) -> Result<RecoveryReport, StorageError> {
    let hard_state = read_hard_state(dir)?;
    let snapshot = snapshot_file::load_newest_snapshot(&dir.join(SNAPSHOT_DIR_NAME))?;
    let base = snapshot
        .as_ref()
        .map_or(LogPosition::ZERO, |snapshot| snapshot.meta().position);
    let wal_dir = dir.join("wal");
    let marker = read_durable_marker(&wal_dir);
    let segments = list_segments(&wal_dir)?;
    if let Some((first, path)) = segments.first() {
        if *first > 1 && base.index == 0 {
            return Err(StorageError::Corrupt {
                file: path.display().to_string(),
                offset: 0,
                reason: format!(
                    "segments 1 to {} are missing and no snapshot in {} covers them",
                    first - 1,
                    dir.join(SNAPSHOT_DIR_NAME).display()
                ),
            });
        }
    }
    let starts_at_first_segment = segments.first().is_none_or(|(first, _)| *first == 1);
    let mut log = ReplayedLog::new(base, starts_at_first_segment);
    let mut segment_max_indices = BTreeMap::new();
    let mut records = 0u64;
    // Bytes of each segment that hold valid records (all of it, except at
    // a torn tail of the last one).
    let mut valid_bytes: Vec<u64> = Vec::with_capacity(segments.len());
    let mut torn: Option<TornTail> = None;
    for (i, (number, path)) in segments.iter().enumerate() {
        let last_segment = i + 1 == segments.len();
        let file = path.display().to_string();
        if i > 0 && *number != segments[i - 1].0 + 1 {
            return Err(StorageError::Corrupt {
                file,
                offset: 0,
                reason: format!(
                    "segment {} is missing (found {} and then {number})",
                    segments[i - 1].0 + 1,
                    segments[i - 1].0
                ),
            });
        }
        let mut bytes = Vec::new();
        File::open(path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(io_err(format!("reading {file}")))?;
        let mut damage: Option<(usize, Damage)> = None;
        if bytes.is_empty() {
            refuse_empty_unless_last(&file, last_segment)?;
        } else if let Some(d) = check_segment_header(&bytes, &file)? {
            damage = Some((0, d));
        } else {
            let mut offset = SEGMENT_HEADER_BYTES;
            while offset < bytes.len() {
                let corrupt = |reason: String| StorageError::Corrupt {
                    file: file.clone(),
                    offset: offset as u64,
                    reason,
                };
                match parse_record_at(&bytes, offset) {
                    Ok(payload) => {
                        let record: WalRecord = codec::decode(payload, RECORD_BYTES_MAX)
                            .map_err(|e| corrupt(format!("record passes its checksum but {e}")))?;
                        if let WalRecord::Append { entries } = &record {
                            let max = segment_max_indices.entry(*number).or_insert(0);
                            *max = entries.iter().map(|e| e.index).fold(*max, Index::max);
                        }
                        log.replay(record).map_err(corrupt)?;
                        records += 1;
                        offset += RECORD_HEADER_BYTES + payload.len();
                    }
                    Err(d) => {
                        damage = Some((offset, d));
                        break;
                    }
                }
            }
        }
        match damage {
            None => valid_bytes.push(bytes.len() as u64),
            Some((offset, d)) => {
                if let Some(next) = next_valid_record(&bytes, offset + 1) {
                    return Err(StorageError::Corrupt {
                        file,
                        offset: offset as u64,
                        reason: format!(
                            "{d}, but a valid record follows at byte offset {next}: \
                             damage inside the log, not a torn write"
                        ),
                    });
                }
                if !last_segment {
                    return Err(StorageError::Corrupt {
                        file,
                        offset: offset as u64,
                        reason: format!("{d} in a segment that is not the last"),
                    });
                }
                valid_bytes.push(offset as u64);
                torn = Some(TornTail {
                    offset: offset as u64,
                    file_bytes: bytes.len() as u64,
                    damage: d,
                    zeros_only: bytes[offset..].iter().all(|byte| *byte == 0),
                });
            }
        }
    }
    debug_assert_eq!(valid_bytes.len(), segments.len());
    for (number, _) in &segments {
        segment_max_indices.entry(*number).or_insert(0);
    }
    let (entries, entries_dropped_after_snapshot) = log.finish();
    if entries_dropped_after_snapshot > 0 {
        tracing::info!(
            snapshot_index = base.index,
            snapshot_term = base.term,
            dropped = entries_dropped_after_snapshot,
            "the write-ahead log does not hold the snapshot's last entry (a crash right after \
             storing a snapshot from the leader): dropping the {entries_dropped_after_snapshot} \
             log entries after it, as installing the snapshot does"
        );
    }
    let last_index = entries.last().map_or(base.index, |e| e.index);
    // Every check that can refuse comes before the first change on disk.
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

    // Did the marked-durable data survive?
    let mut lost_durable_bytes = 0;
    let mut lost_durable_entries = 0;
    if let Some(m) = marker {
        let found = segments.iter().position(|(n, _)| *n == m.segment);
        let file = wal_dir.join(segment_name(m.segment)).display().to_string();
        let loss = match found {
            None => Some((
                0,
                "the segment the durable marker names is missing".to_string(),
            )),
            Some(i) if valid_bytes[i] < m.offset_bytes => {
                let reason = match &torn {
                    Some(t) if i + 1 == segments.len() => {
                        format!("{} at byte offset {}", t.damage, t.offset)
                    }
                    _ => format!("the segment holds only {} bytes", valid_bytes[i]),
                };
                Some((valid_bytes[i], reason))
            }
            Some(_) => None,
        };
        if let Some((offset, reason)) = loss {
            lost_durable_bytes = m.offset_bytes - offset;
            lost_durable_entries = m.last_index.saturating_sub(last_index);
            if !options.accept_data_loss {
                return Err(StorageError::DurableDataLost {
                    file,
                    offset,
                    reason,
                    durable_offset: m.offset_bytes,
                    durable_index: m.last_index,
                    lost_bytes: lost_durable_bytes,
                });
            }
            tracing::error!(
                file = %file,
                offset,
                durable_offset = m.offset_bytes,
                durable_index = m.last_index,
                recovered_last_index = last_index,
                lost_bytes = lost_durable_bytes,
                lost_entries = lost_durable_entries,
                reason = %reason,
                "ACCEPTING DATA LOSS (accept_data_loss is set): the write-ahead log lost \
                 {lost_durable_bytes} bytes and {lost_durable_entries} entries that had been \
                 fsynced and may have been acknowledged; truncating and continuing with a \
                 shorter log"
            );
            // The marker over-claims now: remove it (durably) before the
            // truncation, so it can never describe the shorter files. The
            // writer records a fresh one after its first durable batch.
            let marker_path = wal_dir.join(MARKER_FILE_NAME);
            fs::remove_file(&marker_path)
                .map_err(io_err(format!("removing {}", marker_path.display())))?;
            sync_dir(&wal_dir)?;
        }
    }

    let mut torn_tails = 0;
    let mut torn_bytes_truncated = 0;
    if let Some(t) = &torn {
        let (_, path) = segments.last().expect("a torn tail is in a segment");
        let file = path.display().to_string();
        assert!(
            t.file_bytes > t.offset,
            "a torn tail holds at least one byte"
        );
        torn_bytes_truncated = t.file_bytes - t.offset;
        torn_tails = 1;
        let what = if lost_durable_bytes == 0 {
            "not covered by the durable marker, so never reported durable"
        } else {
            "including marked-durable data, as accept_data_loss allows"
        };
        if t.zeros_only && lost_durable_bytes == 0 {
            tracing::info!(
                file = %file,
                offset = t.offset,
                bytes = torn_bytes_truncated,
                "cutting {torn_bytes_truncated} zero bytes at byte offset {} of {file}, after \
                 its last record (space filled ahead of the log, or a write a crash never \
                 completed; never reported durable)",
                t.offset
            );
        } else {
            tracing::warn!(
                file = %file,
                offset = t.offset,
                bytes = torn_bytes_truncated,
                reason = %t.damage,
                "truncating a torn tail of the write-ahead log: {torn_bytes_truncated} bytes at \
                 byte offset {} of {file}, {what}",
                t.offset
            );
        }
        let f = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(io_err(format!("opening {file}")))?;
        f.set_len(t.offset)
            .map_err(io_err(format!("truncating {file}")))?;
        f.sync_all().map_err(io_err(format!("syncing {file}")))?;
    }
    Ok(RecoveryReport {
        recovered: Recovered {
            hard_state,
            base,
            entries,
            // The host restores its state machine from the snapshot.
            applied_index: base.index,
            membership: snapshot
                .as_ref()
                .and_then(|snapshot| snapshot.membership().cloned()),
        },
        torn_tails,
        torn_bytes_truncated,
        durable_marker: marker,
        lost_durable_bytes,
        lost_durable_entries,
        segments: segments.len(),
        records,
        snapshot,
        entries_dropped_after_snapshot,
        segment_max_indices,
    })
}

/// The log as the write-ahead log's records rebuild it, kept only after
/// `base` (the newest snapshot's position): entries up to it are covered by
/// the snapshot, and the segments that held them may have been deleted.
struct ReplayedLog {
    base: LogPosition,
    /// Where the log ends; `None` while unknown (replay began at a segment
    /// after deleted ones, and no record has told yet).
    last: Option<Index>,
    /// The term the log holds at `base.index` (`None`: unknown or absent).
    term_at_base: Option<Term>,
    /// Entries `base.index + 1 ..`, contiguous.
    entries: Vec<Entry>,
}

impl ReplayedLog {
    fn new(base: LogPosition, starts_at_first_segment: bool) -> Self {
        ReplayedLog {
            base,
            last: starts_at_first_segment.then_some(0),
            term_at_base: (base.index == 0).then_some(0),
            entries: Vec::new(),
        }
    }

    fn replay(&mut self, record: WalRecord) -> Result<(), String> {
        let base = self.base.index;
        match record {
            WalRecord::Truncate { after } => {
                self.last = self.last.map(|last| last.min(after));
                if after < base {
                    self.entries.clear();
                    self.term_at_base = None;
                } else {
                    self.entries
                        .truncate(usize::try_from(after - base).unwrap_or(usize::MAX));
                }
            }
            WalRecord::Append { entries: new } => {
                for entry in new {
                    let index = entry.index;
                    let held_last = base + self.entries.len() as Index;
                    let gap = index == 0
                        || self.last.is_some_and(|last| index > last + 1)
                        || (index > base + 1 && index > held_last + 1);
                    if gap {
                        return Err(format!(
                            "entry index {index} leaves a gap after index {}",
                            self.last.unwrap_or(held_last)
                        ));
                    }
                    if index <= base {
                        // Covered by the snapshot; it drops every later entry.
                        self.entries.clear();
                        self.term_at_base = (index == base).then_some(entry.term);
                    } else {
                        self.entries.truncate((index - base - 1) as usize);
                        self.entries.push(entry);
                    }
                    self.last = Some(index);
                }
            }
            WalRecord::Snapshot {
                position,
                discard_log,
            } => {
                if position.index > base {
                    return Err(format!(
                        "the log records a snapshot at index {} term {}, newer than the newest \
                         snapshot file (index {base}): a snapshot file is missing",
                        position.index, position.term
                    ));
                }
                if position.index == base && position.term != self.base.term {
                    return Err(format!(
                        "the log records a snapshot at index {} term {}, but the snapshot file \
                         at that index has term {}",
                        position.index, position.term, self.base.term
                    ));
                }
                if discard_log {
                    self.entries.clear();
                    self.last = Some(position.index);
                } else {
                    self.last = Some(self.last.map_or(position.index, |l| l.max(position.index)));
                }
                if position.index == base {
                    self.term_at_base = Some(position.term);
                } else if discard_log {
                    self.term_at_base = None;
                }
            }
        }
        Ok(())
    }

    /// The entries after the base, and how many were dropped because the
    /// log does not hold the base entry (log matching: only then do the
    /// entries after it continue the snapshot).
    fn finish(self) -> (Vec<Entry>, u64) {
        if self.term_at_base == Some(self.base.term) {
            (self.entries, 0)
        } else {
            let dropped = self.entries.len() as u64;
            (Vec::new(), dropped)
        }
    }
}
