//! Snapshot files of a data directory: written atomically, verified on
//! load, the newest one kept.
//!
//! ## Layout
//!
//! ```text
//! <dir>/snapshots/snapshot-<index:020>-<term:020>.snap    the newest snapshot
//! <dir>/snapshots/snapshot-<index:020>-<term:020>.snap.tmp  one being written
//! <dir>/snapshots/snapshot-<index:020>-<term:020>.snap.receiving.tmp
//!                                       one being received from a leader
//! <dir>/snapshots/snapshot-<index:020>-<term:020>.snap.taking.tmp
//!                                       one a state machine's view streams into
//! ```
//!
//! ## Format (version 2; integers little-endian)
//!
//! A 48-byte header, then the state machine's bytes, then the cluster
//! configuration in force at the snapshot's last entry:
//! `[magic "CNCDSNAP": 8][format version = 2: u32][index: u64][term: u64]`
//! `[data length in bytes: u64][checksum of the data: u64][header check: u32]`
//! `[data][configuration][configuration length in bytes: u32][configuration check: u32]`.
//! The data checksum is the core's [`checksum64`](concord::checksum64) (CRC-64/XZ, the one a
//! leader's snapshot transfer is verified with); the header check is
//! `crc32c` of the first 44 bytes xor [`CHECKSUM_SALT`]. The index and term
//! must match the file name. The configuration is an
//! `Option<`[`Membership`]`>` encoded by the [`codec`](super::codec), at
//! most [`SNAPSHOT_MEMBERSHIP_BYTES_MAX`] bytes, its check `crc32c` of
//! those bytes and of the length xor [`CHECKSUM_SALT`]; a configuration
//! that fails its check, does not decode or is not a usable configuration
//! is [`StorageError::CorruptSnapshot`].
//!
//! Version 1 files (before configurations traveled with snapshots: no
//! trailer) are still read; their configuration is unknown (`None`).
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
//! A snapshot received from a leader is written chunk by chunk into its
//! `.receiving.tmp` file (header first: the leader announced its length
//! and checksum), then fsynced, renamed and the directory fsynced by
//! `make_received_durable` on the storage's thread.
//!
//! [`load_newest_snapshot`] verifies the file with the highest index,
//! reading it in pieces (never whole), and returns a reader of it. Any
//! damage (short file, bad magic, header check, data checksum, a name that
//! does not match the header) is [`StorageError::CorruptSnapshot`] naming
//! the file: the write-ahead log no longer holds the entries the snapshot
//! covers, so the node must not start without it, and falling back to an
//! older snapshot could pair it with a log that continues after a newer
//! one. Older snapshot files are deleted once a newer one is durable.

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use concord::{Checksum64, LogPosition, Membership, Snapshot, SnapshotMeta};

use super::storage::{
    ReceivedSnapshot, ReceivedTarget, SnapshotReader, SnapshotSink, StorageError,
};
use super::wal::{io_err, sync_dir, write_file_atomically, CHECKSUM_SALT};
use concord::durable::StateView;

/// First bytes of every snapshot file.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"CNCDSNAP";

/// Version of the snapshot file format written by this build (it reads
/// this one and version 1).
pub const SNAPSHOT_FORMAT_VERSION: u32 = 2;

/// The first format version, without the configuration trailer.
const SNAPSHOT_FORMAT_VERSION_1: u32 = 1;

/// Most bytes of the configuration stored after a snapshot's data (a few
/// thousand members; a larger length field is damage).
pub const SNAPSHOT_MEMBERSHIP_BYTES_MAX: usize = 64 * 1024;

/// Bytes of the configuration trailer's fixed part (length and check).
const TRAILER_FIXED_BYTES: u64 = 8;

/// Bytes of a snapshot file's header.
pub const SNAPSHOT_HEADER_BYTES: usize = 48;

/// Name of the directory holding snapshot files, inside a data directory.
pub const SNAPSHOT_DIR_NAME: &str = "snapshots";

/// File name of the snapshot at `position`.
pub fn snapshot_file_name(position: LogPosition) -> String {
    format!("snapshot-{:020}-{:020}.snap", position.index, position.term)
}

/// The position a snapshot file name stands for, if it is one.
pub(crate) fn parse_file_name(name: &str) -> Option<LogPosition> {
    let rest = name.strip_prefix("snapshot-")?.strip_suffix(".snap")?;
    let (index, term) = rest.split_once('-')?;
    Some(LogPosition::new(index.parse().ok()?, term.parse().ok()?))
}

/// The header of a snapshot file holding `snapshot`.
pub fn snapshot_header(snapshot: &Snapshot) -> [u8; SNAPSHOT_HEADER_BYTES] {
    header_for(&snapshot.meta())
}

/// The header of a snapshot file holding the snapshot `meta` describes.
pub fn header_for(meta: &SnapshotMeta) -> [u8; SNAPSHOT_HEADER_BYTES] {
    let mut header = [0u8; SNAPSHOT_HEADER_BYTES];
    header[..8].copy_from_slice(&SNAPSHOT_MAGIC);
    header[8..12].copy_from_slice(&SNAPSHOT_FORMAT_VERSION.to_le_bytes());
    header[12..20].copy_from_slice(&meta.position.index.to_le_bytes());
    header[20..28].copy_from_slice(&meta.position.term.to_le_bytes());
    header[28..36].copy_from_slice(&meta.size_bytes.to_le_bytes());
    header[36..44].copy_from_slice(&meta.checksum.to_le_bytes());
    let check = crc32c::crc32c(&header[..44]) ^ CHECKSUM_SALT;
    header[44..].copy_from_slice(&check.to_le_bytes());
    header
}

/// The configuration trailer stored after a snapshot's data.
pub(crate) fn membership_trailer(membership: Option<&Membership>) -> Result<Vec<u8>, StorageError> {
    let mut out = super::codec::encode(&membership).map_err(|e| StorageError::Io {
        context: "encoding a snapshot's configuration".to_string(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
    })?;
    assert!(
        out.len() <= SNAPSHOT_MEMBERSHIP_BYTES_MAX,
        "a configuration of {} bytes",
        out.len()
    );
    let length = (out.len() as u32).to_le_bytes();
    let check = trailer_check(&out, length);
    out.extend_from_slice(&length);
    out.extend_from_slice(&check.to_le_bytes());
    Ok(out)
}

fn trailer_check(encoded: &[u8], length: [u8; 4]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(encoded), &length) ^ CHECKSUM_SALT
}

/// Reads and checks the configuration trailer of a version 2 file of
/// `file_bytes` bytes (`read_at` fills a buffer from an offset of it),
/// returning the configuration and the length of the whole trailer.
fn read_membership_trailer(
    read_at: &dyn Fn(&mut [u8], u64) -> std::io::Result<()>,
    file_bytes: u64,
) -> Result<(Option<Membership>, u64), String> {
    if file_bytes < SNAPSHOT_HEADER_BYTES as u64 + TRAILER_FIXED_BYTES {
        return Err(format!(
            "{file_bytes} bytes, too short for the header and the configuration trailer"
        ));
    }
    let mut fixed = [0u8; TRAILER_FIXED_BYTES as usize];
    read_at(&mut fixed, file_bytes - TRAILER_FIXED_BYTES)
        .map_err(|e| format!("reading the configuration trailer: {e}"))?;
    let length = [fixed[0], fixed[1], fixed[2], fixed[3]];
    let encoded_bytes = u32::from_le_bytes(length) as u64;
    let check = u32::from_le_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
    if encoded_bytes > SNAPSHOT_MEMBERSHIP_BYTES_MAX as u64
        || SNAPSHOT_HEADER_BYTES as u64 + TRAILER_FIXED_BYTES + encoded_bytes > file_bytes
    {
        return Err(format!(
            "the configuration trailer announces {encoded_bytes} bytes, which the file cannot hold"
        ));
    }
    let mut encoded = vec![0u8; encoded_bytes as usize];
    read_at(
        &mut encoded,
        file_bytes - TRAILER_FIXED_BYTES - encoded_bytes,
    )
    .map_err(|e| format!("reading the configuration trailer: {e}"))?;
    if trailer_check(&encoded, length) != check {
        return Err("the stored configuration fails its checksum".to_string());
    }
    let membership: Option<Membership> =
        super::codec::decode(&encoded, SNAPSHOT_MEMBERSHIP_BYTES_MAX)
            .map_err(|e| format!("the stored configuration does not decode: {e}"))?;
    if let Some(membership) = &membership {
        membership
            .validate()
            .map_err(|e| format!("the stored configuration is unusable: {e}"))?;
    }
    Ok((membership, encoded_bytes + TRAILER_FIXED_BYTES))
}

/// Writes `snapshot` into `snapshot_dir` atomically (temporary file, fsync,
/// rename, directory fsync) and returns its path.
pub fn write_snapshot_file(
    snapshot_dir: &Path,
    snapshot: &Snapshot,
) -> Result<PathBuf, StorageError> {
    write_snapshot_file_with_meta(snapshot_dir, snapshot, &snapshot.meta())
}

/// [`write_snapshot_file`] when the checksum is already computed.
pub(crate) fn write_snapshot_file_with_meta(
    snapshot_dir: &Path,
    snapshot: &Snapshot,
    meta: &SnapshotMeta,
) -> Result<PathBuf, StorageError> {
    debug_assert_eq!(meta.size_bytes, snapshot.data.len() as u64);
    let name = snapshot_file_name(snapshot.position);
    let trailer = membership_trailer(snapshot.membership.as_ref())?;
    write_file_atomically(
        snapshot_dir,
        &name,
        &[&header_for(meta), &snapshot.data, &trailer],
    )
}

/// Creates (empty) the temporary file `<name>.<what>.tmp` of the snapshot
/// at `position` in `snapshot_dir`; returns it, its path and the final
/// path it is renamed to once durable. A `.tmp` file is removed at start.
fn create_temporary(
    snapshot_dir: &Path,
    position: LogPosition,
    what: &str,
) -> Result<(File, PathBuf, PathBuf), StorageError> {
    let name = snapshot_file_name(position);
    let final_path = snapshot_dir.join(&name);
    let path = snapshot_dir.join(format!("{name}.{what}.tmp"));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(io_err(format!("creating {}", path.display())))?;
    Ok((file, path, final_path))
}

/// Most bytes read from a state view at a time while it is streamed into
/// a file.
const STREAM_CHUNK_BYTES: usize = 1 << 20;

/// Bytes a snapshot streamed from a view is synced after, as it is written.
const STREAM_SYNC_BYTES: u64 = 64 << 20;

/// Streams a state machine's `view` (the state after entry `position`)
/// into a new `.taking.tmp` file in `snapshot_dir`, never holding more
/// than one chunk of it, and returns it as a snapshot received whole: its
/// size and checksum found as it streamed, written in its header at the
/// end. [`make_received_durable`] then gives it its final name. Runs off
/// the server loop: a large state takes as long as the disk needs.
pub(crate) fn stream_view_into_file(
    snapshot_dir: &Path,
    position: LogPosition,
    view: &mut dyn StateView,
) -> Result<ReceivedSnapshot, StorageError> {
    let (file, path, final_path) = create_temporary(snapshot_dir, position, "taking")?;
    let mut checksum = Checksum64::new();
    let mut size_bytes = 0u64;
    let mut buf = vec![0u8; STREAM_CHUNK_BYTES];
    loop {
        let n = view.read(&mut buf).map_err(|e| StorageError::Io {
            context: format!(
                "reading the state machine's view at index {}",
                position.index
            ),
            source: std::io::Error::other(e.to_string()),
        })?;
        if n == 0 {
            break;
        }
        assert!(
            n <= buf.len(),
            "a view read more than it was given room for"
        );
        file.write_all_at(&buf[..n], SNAPSHOT_HEADER_BYTES as u64 + size_bytes)
            .map_err(io_err(format!("writing {}", path.display())))?;
        checksum.update(&buf[..n]);
        let synced_before = size_bytes / STREAM_SYNC_BYTES;
        size_bytes += n as u64;
        // Synced as it goes, here off the loop: the log's thread makes the
        // file durable later (`make_received_durable`), and a state's worth
        // of dirty pages synced there would stall every write behind it.
        if size_bytes / STREAM_SYNC_BYTES != synced_before {
            file.sync_data()
                .map_err(io_err(format!("syncing {}", path.display())))?;
        }
    }
    let meta = SnapshotMeta {
        position,
        size_bytes,
        checksum: checksum.finish(),
    };
    file.write_all_at(&header_for(&meta), 0)
        .map_err(io_err(format!("writing {}", path.display())))?;
    file.sync_data()
        .map_err(io_err(format!("syncing {}", path.display())))?;
    Ok(ReceivedSnapshot {
        meta,
        target: ReceivedTarget::File {
            file: Arc::new(file),
            path,
            final_path,
        },
    })
}

/// Creates the file a snapshot from the leader is received into (its
/// header written, its bytes to follow) and returns the sink writing it.
pub(crate) fn create_receiving_file(
    snapshot_dir: &Path,
    meta: SnapshotMeta,
) -> Result<SnapshotSink, StorageError> {
    let (file, path, final_path) = create_temporary(snapshot_dir, meta.position, "receiving")?;
    file.write_all_at(&header_for(&meta), 0)
        .map_err(io_err(format!("writing {}", path.display())))?;
    Ok(SnapshotSink::in_file(
        meta,
        file,
        SNAPSHOT_HEADER_BYTES as u64,
        path,
        final_path,
    ))
}

/// Makes a received snapshot file durable under its final name: appends
/// the configuration trailer after the `size_bytes` data bytes, then
/// fsync, rename, directory fsync (a crash before the rename leaves a
/// `.tmp` file, removed at startup).
pub(crate) fn make_received_durable(
    file: &File,
    path: &Path,
    final_path: &Path,
    size_bytes: u64,
    membership: &Membership,
) -> Result<(), StorageError> {
    let trailer = membership_trailer(Some(membership))?;
    file.write_all_at(&trailer, SNAPSHOT_HEADER_BYTES as u64 + size_bytes)
        .map_err(io_err(format!("writing {}", path.display())))?;
    file.sync_all()
        .map_err(io_err(format!("syncing {}", path.display())))?;
    fs::rename(path, final_path).map_err(io_err(format!(
        "renaming {} to {}",
        path.display(),
        final_path.display()
    )))?;
    if let Some(dir) = final_path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Opens the snapshot file at `path` and verifies it (header, length, name
/// and the data's checksum, read in pieces of a few MiB so that a snapshot
/// of any size costs no more memory), returning a reader of it.
pub fn open_snapshot_file(path: &Path) -> Result<SnapshotReader, StorageError> {
    const PIECE_BYTES: usize = 4 << 20;
    let file_name = path.display().to_string();
    let corrupt = |reason: String| StorageError::CorruptSnapshot {
        file: file_name.clone(),
        reason,
    };
    let mut file = File::open(path).map_err(io_err(format!("opening {file_name}")))?;
    let file_bytes = file
        .metadata()
        .map_err(io_err(format!("reading the length of {file_name}")))?
        .len();
    if file_bytes < SNAPSHOT_HEADER_BYTES as u64 {
        return Err(corrupt(format!(
            "{file_bytes} bytes, shorter than the {SNAPSHOT_HEADER_BYTES}-byte header"
        )));
    }
    let mut header = [0u8; SNAPSHOT_HEADER_BYTES];
    file.read_exact(&mut header)
        .map_err(io_err(format!("reading {file_name}")))?;
    let (membership, trailer_bytes) = if header_version(&header) == SNAPSHOT_FORMAT_VERSION {
        read_membership_trailer(&|buf, at| file.read_exact_at(buf, at), file_bytes)
            .map_err(&corrupt)?
    } else {
        (None, 0)
    };
    let meta = parse_header(
        &header,
        path,
        file_bytes - SNAPSHOT_HEADER_BYTES as u64 - trailer_bytes,
    )
    .map_err(&corrupt)?;
    let mut checksum = Checksum64::new();
    let mut piece = vec![0u8; PIECE_BYTES.min(meta.size_bytes as usize)];
    let mut remaining = meta.size_bytes;
    while remaining > 0 {
        let length = (remaining as usize).min(piece.len());
        file.read_exact(&mut piece[..length])
            .map_err(io_err(format!("reading {file_name}")))?;
        checksum.update(&piece[..length]);
        remaining -= length as u64;
    }
    let actual = checksum.finish();
    if actual != meta.checksum {
        return Err(corrupt(format!(
            "the data fails its checksum (stored {:#018x}, computed {actual:#018x})",
            meta.checksum
        )));
    }
    Ok(SnapshotReader::from_file(
        meta,
        membership,
        Arc::new(file),
        SNAPSHOT_HEADER_BYTES as u64,
        path.to_path_buf(),
    ))
}

/// Checks the bytes of a whole snapshot file named `name` as
/// [`open_snapshot_file`] checks a file (header, configuration trailer,
/// name, length, the data's checksum) and returns the snapshot, or why
/// it is damaged. For models of a disk that hold files in memory.
pub(crate) fn parse_snapshot_bytes(name: &str, bytes: &[u8]) -> Result<Snapshot, String> {
    let file_bytes = bytes.len() as u64;
    let Some(header) = bytes.first_chunk::<SNAPSHOT_HEADER_BYTES>() else {
        return Err(format!(
            "{file_bytes} bytes, shorter than the {SNAPSHOT_HEADER_BYTES}-byte header"
        ));
    };
    let read_at = |buf: &mut [u8], at: u64| {
        let at = at as usize;
        let end = at.checked_add(buf.len()).filter(|end| *end <= bytes.len());
        let end = end.ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(&bytes[at..end]);
        Ok(())
    };
    let (membership, trailer_bytes) = if header_version(header) == SNAPSHOT_FORMAT_VERSION {
        read_membership_trailer(&read_at, file_bytes)?
    } else {
        (None, 0)
    };
    let held_bytes = file_bytes - SNAPSHOT_HEADER_BYTES as u64 - trailer_bytes;
    let meta = parse_header(header, Path::new(name), held_bytes)?;
    let data = &bytes[SNAPSHOT_HEADER_BYTES..SNAPSHOT_HEADER_BYTES + meta.size_bytes as usize];
    let actual = concord::checksum64(data);
    if actual != meta.checksum {
        return Err(format!(
            "the data fails its checksum (stored {:#018x}, computed {actual:#018x})",
            meta.checksum
        ));
    }
    Ok(
        Snapshot::new(meta.position, bytes::Bytes::copy_from_slice(data))
            .with_membership(membership),
    )
}

/// The format version a header names (checked by `parse_header`).
fn header_version(header: &[u8; SNAPSHOT_HEADER_BYTES]) -> u32 {
    u32::from_le_bytes([header[8], header[9], header[10], header[11]])
}

/// Checks a snapshot file's header (magic, version, header check, that it
/// announces `held_bytes` data bytes and matches the file's name) and
/// returns what it describes.
fn parse_header(
    header: &[u8; SNAPSHOT_HEADER_BYTES],
    path: &Path,
    held_bytes: u64,
) -> Result<SnapshotMeta, String> {
    if header[..8] != SNAPSHOT_MAGIC {
        return Err("it does not start with the snapshot magic".to_string());
    }
    let u64_at = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&header[at..at + 8]);
        u64::from_le_bytes(b)
    };
    let version = header_version(header);
    if version != SNAPSHOT_FORMAT_VERSION && version != SNAPSHOT_FORMAT_VERSION_1 {
        return Err(format!(
            "format version {version}; this build reads versions {SNAPSHOT_FORMAT_VERSION_1} \
             and {SNAPSHOT_FORMAT_VERSION}"
        ));
    }
    let check = u32::from_le_bytes([header[44], header[45], header[46], header[47]]);
    if crc32c::crc32c(&header[..44]) ^ CHECKSUM_SALT != check {
        return Err("the header fails its checksum".to_string());
    }
    let position = LogPosition::new(u64_at(12), u64_at(20));
    let data_bytes = u64_at(28);
    if held_bytes != data_bytes {
        return Err(format!(
            "the header announces {data_bytes} data bytes but the file holds {held_bytes}"
        ));
    }
    let name = path.file_name().map(|n| n.to_string_lossy().to_string());
    if name.as_deref().and_then(parse_file_name) != Some(position) {
        return Err(format!(
            "the header names index {} term {}, which does not match the file name",
            position.index, position.term
        ));
    }
    Ok(SnapshotMeta {
        position,
        size_bytes: data_bytes,
        checksum: u64_at(36),
    })
}

/// Reads and verifies the snapshot file at `path`.
pub fn read_snapshot_file(path: &Path) -> Result<Snapshot, StorageError> {
    let reader = open_snapshot_file(path)?;
    let data = reader.read_verified()?;
    Ok(Snapshot::new(reader.meta().position, data).with_membership(reader.membership().cloned()))
}

/// Snapshot files of `snapshot_dir` by position, oldest first. Leftover
/// temporary files (a crash mid-write) are removed: call it only before
/// the node starts, when no snapshot is being written or received.
pub fn list_snapshot_files(
    snapshot_dir: &Path,
) -> Result<Vec<(LogPosition, PathBuf)>, StorageError> {
    list_files(snapshot_dir, true)
}

/// Snapshot files of `snapshot_dir` by position, oldest first; with
/// `remove_leftovers`, temporary files are removed.
fn list_files(
    snapshot_dir: &Path,
    remove_leftovers: bool,
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
            if !remove_leftovers {
                // Perhaps a snapshot being received right now.
                continue;
            }
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

/// A reader of the newest snapshot of `snapshot_dir` (highest index),
/// verified. `None` when there is no snapshot file.
pub fn load_newest_snapshot(snapshot_dir: &Path) -> Result<Option<SnapshotReader>, StorageError> {
    let files = list_snapshot_files(snapshot_dir)?;
    match files.last() {
        Some((_, path)) => open_snapshot_file(path).map(Some),
        None => Ok(None),
    }
}

/// Deletes every snapshot file older than `keep` (they are superseded once
/// `keep` is durable), syncing the directory.
pub fn delete_snapshots_before(snapshot_dir: &Path, keep: LogPosition) -> Result<(), StorageError> {
    let mut deleted = false;
    for (position, path) in list_files(snapshot_dir, false)? {
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
