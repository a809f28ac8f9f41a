//! Snapshot files of a data directory: written atomically, verified on
//! load, the newest one kept.
//!
//! ## Layout
//!
//! ```text
//! <dir>/snapshots/snapshot-<index:020>-<term:020>.snap    the newest snapshot
//! <dir>/snapshots/snapshot-<index:020>-<term:020>.snap.tmp  one being written
//! ```
//!
//! ## Format (version 1; integers little-endian)
//!
//! A 48-byte header, then the state machine's bytes:
//! `[magic "CNCDSNAP": 8][format version = 1: u32][index: u64][term: u64]`
//! `[data length in bytes: u64][checksum of the data: u64][header check: u32]`.
//! The data checksum is the core's [`checksum64`](crate::checksum64)
//! (CRC-64/XZ, the one a leader's snapshot transfer is verified with,
//! computed here eight bytes at a time); the header check is
//! `crc32c` of the first 44 bytes xor [`CHECKSUM_SALT`]. The index and term
//! must match the file name.
//!
//! ## Writing
//!
//! [`write_snapshot_file`] writes `<name>.tmp`, fsyncs it, renames it to
//! `<name>` and fsyncs the directory: a crash leaves either no file or the
//! whole file under its final name, never a partial one. A `.tmp` file found
//! at startup is the remnant of a crash mid-write and is removed.
//!
//! ## Loading
//!
//! [`load_newest_snapshot`] reads the file with the highest index. Any
//! damage (short file, bad magic, header check, data checksum, a name that
//! does not match the header) is [`StorageError::CorruptSnapshot`] naming
//! the file: the write-ahead log no longer holds the entries the snapshot
//! covers, so the node must not start without it, and falling back to an
//! older snapshot could pair it with a log that continues after a newer
//! one. Older snapshot files are deleted once a newer one is durable.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::crc64::crc64_xz;
use crate::{LogPosition, Snapshot};

use super::storage::StorageError;
use super::wal::{io_err, sync_dir, write_file_atomically, CHECKSUM_SALT};

/// First bytes of every snapshot file.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"CNCDSNAP";

/// Version of the snapshot file format written and read by this build.
pub const SNAPSHOT_FORMAT_VERSION: u32 = 1;

/// Bytes of a snapshot file's header.
pub const SNAPSHOT_HEADER_BYTES: usize = 48;

/// Name of the directory holding snapshot files, inside a data directory.
pub const SNAPSHOT_DIR_NAME: &str = "snapshots";

/// File name of the snapshot at `position`.
pub fn snapshot_file_name(position: LogPosition) -> String {
    format!("snapshot-{:020}-{:020}.snap", position.index, position.term)
}

/// The position a snapshot file name stands for, if it is one.
fn parse_file_name(name: &str) -> Option<LogPosition> {
    let rest = name.strip_prefix("snapshot-")?.strip_suffix(".snap")?;
    let (index, term) = rest.split_once('-')?;
    Some(LogPosition::new(index.parse().ok()?, term.parse().ok()?))
}

/// The header of a snapshot file holding `snapshot`.
pub fn snapshot_header(snapshot: &Snapshot) -> [u8; SNAPSHOT_HEADER_BYTES] {
    let mut header = [0u8; SNAPSHOT_HEADER_BYTES];
    header[..8].copy_from_slice(&SNAPSHOT_MAGIC);
    header[8..12].copy_from_slice(&SNAPSHOT_FORMAT_VERSION.to_le_bytes());
    header[12..20].copy_from_slice(&snapshot.position.index.to_le_bytes());
    header[20..28].copy_from_slice(&snapshot.position.term.to_le_bytes());
    header[28..36].copy_from_slice(&(snapshot.data.len() as u64).to_le_bytes());
    header[36..44].copy_from_slice(&crc64_xz(&snapshot.data).to_le_bytes());
    let check = crc32c::crc32c(&header[..44]) ^ CHECKSUM_SALT;
    header[44..].copy_from_slice(&check.to_le_bytes());
    header
}

/// Writes `snapshot` into `snapshot_dir` atomically (temporary file, fsync,
/// rename, directory fsync) and returns its path.
pub fn write_snapshot_file(
    snapshot_dir: &Path,
    snapshot: &Snapshot,
) -> Result<PathBuf, StorageError> {
    let name = snapshot_file_name(snapshot.position);
    write_file_atomically(
        snapshot_dir,
        &name,
        &[&snapshot_header(snapshot), &snapshot.data],
    )
}

/// Reads and verifies the snapshot file at `path`.
pub fn read_snapshot_file(path: &Path) -> Result<Snapshot, StorageError> {
    let file = path.display().to_string();
    let corrupt = |reason: String| StorageError::CorruptSnapshot {
        file: file.clone(),
        reason,
    };
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(io_err(format!("reading {file}")))?;
    if bytes.len() < SNAPSHOT_HEADER_BYTES {
        return Err(corrupt(format!(
            "{} bytes, shorter than the {SNAPSHOT_HEADER_BYTES}-byte header",
            bytes.len()
        )));
    }
    if bytes[..8] != SNAPSHOT_MAGIC {
        return Err(corrupt(
            "it does not start with the snapshot magic".to_string(),
        ));
    }
    let u64_at = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(b)
    };
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if version != SNAPSHOT_FORMAT_VERSION {
        return Err(corrupt(format!(
            "format version {version}; this build reads only version {SNAPSHOT_FORMAT_VERSION}"
        )));
    }
    let check = u32::from_le_bytes([bytes[44], bytes[45], bytes[46], bytes[47]]);
    if crc32c::crc32c(&bytes[..44]) ^ CHECKSUM_SALT != check {
        return Err(corrupt("the header fails its checksum".to_string()));
    }
    let position = LogPosition::new(u64_at(12), u64_at(20));
    let data_bytes = u64_at(28);
    let checksum = u64_at(36);
    let held_bytes = (bytes.len() - SNAPSHOT_HEADER_BYTES) as u64;
    if held_bytes != data_bytes {
        return Err(corrupt(format!(
            "the header announces {data_bytes} data bytes but the file holds {held_bytes}"
        )));
    }
    let name = path.file_name().map(|n| n.to_string_lossy().to_string());
    if name.as_deref().and_then(parse_file_name) != Some(position) {
        return Err(corrupt(format!(
            "the header names index {} term {}, which does not match the file name",
            position.index, position.term
        )));
    }
    let data = Bytes::from(bytes).slice(SNAPSHOT_HEADER_BYTES..);
    let actual = crc64_xz(&data);
    if actual != checksum {
        return Err(corrupt(format!(
            "the data fails its checksum (stored {checksum:#018x}, computed {actual:#018x})"
        )));
    }
    Ok(Snapshot::new(position, data))
}

/// Snapshot files of `snapshot_dir` by position, oldest first. Leftover
/// temporary files (a crash mid-write) are removed.
pub fn list_snapshot_files(
    snapshot_dir: &Path,
) -> Result<Vec<(LogPosition, PathBuf)>, StorageError> {
    let mut files = Vec::new();
    let listing = match fs::read_dir(snapshot_dir) {
        Ok(listing) => listing,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(files),
        Err(e) => return Err(io_err(format!("listing {}", snapshot_dir.display()))(e)),
    };
    let mut removed_tmp = false;
    for item in listing {
        let item = item.map_err(io_err(format!("listing {}", snapshot_dir.display())))?;
        let name = item.file_name().to_string_lossy().to_string();
        if name.ends_with(".tmp") {
            tracing::info!(file = %item.path().display(), "removing a snapshot file left half-written by a crash");
            fs::remove_file(item.path())
                .map_err(io_err(format!("removing {}", item.path().display())))?;
            removed_tmp = true;
        } else if let Some(position) = parse_file_name(&name) {
            files.push((position, item.path()));
        }
    }
    if removed_tmp {
        sync_dir(snapshot_dir)?;
    }
    files.sort();
    Ok(files)
}

/// The newest snapshot of `snapshot_dir` (highest index), verified. `None`
/// when there is no snapshot file.
pub fn load_newest_snapshot(snapshot_dir: &Path) -> Result<Option<Snapshot>, StorageError> {
    let files = list_snapshot_files(snapshot_dir)?;
    match files.last() {
        Some((_, path)) => read_snapshot_file(path).map(Some),
        None => Ok(None),
    }
}

/// Deletes every snapshot file older than `keep` (they are superseded once
/// `keep` is durable), syncing the directory.
pub fn delete_snapshots_before(snapshot_dir: &Path, keep: LogPosition) -> Result<(), StorageError> {
    let mut deleted = false;
    for (position, path) in list_snapshot_files(snapshot_dir)? {
        if position.index < keep.index {
            fs::remove_file(&path).map_err(io_err(format!("removing {}", path.display())))?;
            deleted = true;
        }
    }
    if deleted {
        sync_dir(snapshot_dir)?;
    }
    Ok(())
}
