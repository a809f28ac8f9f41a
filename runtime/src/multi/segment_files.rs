//! Where the shared log's segments live: the few file operations the log
//! needs, behind a trait, so that the same log code runs on a directory of
//! real files ([`DirSegments`]) and on a model of the page cache
//! ([`PageCacheDisk`](super::page_cache::PageCacheDisk)) that a crash test
//! can cut at any write.
//!
//! Next to the segments lives the durable marker (`record.rs`): one small
//! file overwritten in place after every sync.

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::identity::DataDirLock;
use crate::storage::StorageError;
use crate::wal::{io_err, numbered_files, segment_name, sync_dir};

/// The segment files of one shared log, by number. Every operation but
/// [`append`](SegmentFiles::append) is durable when it returns; appended
/// bytes are durable once [`sync`](SegmentFiles::sync) returns.
pub trait SegmentFiles: Send + 'static {
    /// Numbers of the segments present, ascending.
    fn list(&mut self) -> Result<Vec<u64>, StorageError>;
    /// Every byte of segment `number`.
    fn read(&mut self, number: u64) -> Result<Vec<u8>, StorageError>;
    /// Creates segment `number`, empty (its creation durable).
    fn create(&mut self, number: u64) -> Result<(), StorageError>;
    /// Appends `bytes` to segment `number` (not yet durable).
    fn append(&mut self, number: u64, bytes: &[u8]) -> Result<(), StorageError>;
    /// Makes every byte appended to segment `number` durable (one fsync).
    fn sync(&mut self, number: u64) -> Result<(), StorageError>;
    /// Cuts segment `number` to `length_bytes`, durably.
    fn truncate(&mut self, number: u64, length_bytes: u64) -> Result<(), StorageError>;
    /// Deletes segment `number`, durably.
    fn remove(&mut self, number: u64) -> Result<(), StorageError>;
    /// How errors name segment `number` (a path for real files).
    fn describe(&self, number: u64) -> String;
    /// The durable marker's bytes; `None` when there is no marker.
    fn read_marker(&mut self) -> Result<Option<Vec<u8>>, StorageError>;
    /// Overwrites the durable marker in place (created if missing). Not
    /// durable until [`sync_marker`](SegmentFiles::sync_marker): a crash
    /// may leave the old bytes, the new ones or a torn mix.
    fn write_marker(&mut self, bytes: &[u8]) -> Result<(), StorageError>;
    /// Makes the marker's last write durable.
    fn sync_marker(&mut self) -> Result<(), StorageError>;
    /// Deletes the durable marker, durably (nothing if there is none).
    fn remove_marker(&mut self) -> Result<(), StorageError>;
    /// How errors name the durable marker.
    fn describe_marker(&self) -> String;
    /// Whether a sync waits for a device, so that its latency is worth a
    /// clock read on each side (the fsync histogram). A model of the page
    /// cache in memory says no: two clock reads would cost more than its
    /// sync.
    fn sync_waits(&self) -> bool {
        true
    }
}

/// File name of the durable marker among the segments.
pub const MARKER_FILE_NAME: &str = "durable";

/// Least and most bytes [`DirSegments`] fill with zeros ahead
/// of the segment appended to, at a time: double what the segment holds,
/// within these bounds.
///
/// Why: an append that grows a file changes its size, and ext4 makes a
/// size change durable with a journal commit inside every `fdatasync`;
/// measured here (2 KiB appends, each synced) 140 µs and 60 µs of CPU
/// per sync, against 92 µs and 43 µs when the bytes overwrite zeros the
/// file already holds. One zero fill, made durable by the next sync,
/// pays the journal once per up to a MiB of log. The zeros after the last
/// record are a torn tail to recovery, cut at the next start; a segment
/// is cut to its records before the next one is created (recovery calls
/// damage in a segment that is not the last corruption) and when the
/// segments are dropped.
pub const ZERO_AHEAD_BYTES_MIN: u64 = 64 * 1024;
/// See [`ZERO_AHEAD_BYTES_MIN`].
pub const ZERO_AHEAD_BYTES_MAX: u64 = 1024 * 1024;

/// An I/O error's context, `what` then the file, formatted only when
/// there is an error: the write path calls this several times a round.
fn io_err_at<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> StorageError + 'a {
    move |source| StorageError::Io {
        context: format!("{what} {}", path.display()),
        source,
    }
}

/// Zeros written ahead in one call.
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// A file appended to by positioned writes at a tracked end, with zeros
/// written ahead of that end ([`ZERO_AHEAD_BYTES_MIN`] says why). Used by
/// [`DirSegments`] and by the single-group log's writer
/// ([`wal`](crate::wal)).
#[derive(Debug)]
pub(crate) struct ZeroAheadFile {
    file: File,
    /// Where the records end: the next append goes here.
    end_bytes: u64,
    /// How far the file holds zeros (or records); never below `end_bytes`.
    zeroed_bytes: u64,
}

impl ZeroAheadFile {
    /// `file`, whose records end where it does (`length_bytes`).
    pub(crate) fn new(file: File, length_bytes: u64) -> ZeroAheadFile {
        ZeroAheadFile {
            file,
            end_bytes: length_bytes,
            zeroed_bytes: length_bytes,
        }
    }

    /// The open file (to sync it).
    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// Writes `bytes` at the end of the records, filling zeros ahead
    /// first when they would pass the zeros already written: double the
    /// new end, within [`ZERO_AHEAD_BYTES_MIN`]..=[`ZERO_AHEAD_BYTES_MAX`].
    /// `path` names the file in errors.
    pub(crate) fn append(&mut self, bytes: &[u8], path: &Path) -> Result<(), StorageError> {
        let end_bytes = self.end_bytes + bytes.len() as u64;
        if end_bytes > self.zeroed_bytes {
            let ahead_bytes = end_bytes.clamp(ZERO_AHEAD_BYTES_MIN, ZERO_AHEAD_BYTES_MAX);
            let zeroed_bytes = end_bytes + ahead_bytes;
            let mut at = self.zeroed_bytes;
            while at < zeroed_bytes {
                let piece = (zeroed_bytes - at).min(ZEROS.len() as u64) as usize;
                self.file
                    .write_all_at(&ZEROS[..piece], at)
                    .map_err(|source| StorageError::Io {
                        context: format!("filling {} with zeros ahead", path.display()),
                        source,
                    })?;
                at += piece as u64;
            }
            self.zeroed_bytes = zeroed_bytes;
        }
        self.file
            .write_all_at(bytes, self.end_bytes)
            .map_err(io_err_at("appending to", path))?;
        self.end_bytes = end_bytes;
        assert!(self.end_bytes <= self.zeroed_bytes);
        Ok(())
    }

    /// The file was truncated to `length_bytes` (and synced) from outside.
    fn truncated(&mut self, length_bytes: u64) {
        self.end_bytes = self.end_bytes.min(length_bytes);
        self.zeroed_bytes = length_bytes;
    }

    /// Cuts the zeros after the records, durably (nothing to do if there
    /// are none). `path` names the file in errors.
    pub(crate) fn seal(&mut self, path: &Path) -> Result<(), StorageError> {
        assert!(self.end_bytes <= self.zeroed_bytes);
        if self.zeroed_bytes == self.end_bytes {
            return Ok(());
        }
        self.file
            .set_len(self.end_bytes)
            .and_then(|()| self.file.sync_all())
            .map_err(io_err(format!("cutting {} to its records", path.display())))?;
        self.zeroed_bytes = self.end_bytes;
        Ok(())
    }
}

/// The segment being appended to.
#[derive(Debug)]
struct OpenSegment {
    number: u64,
    /// Its path, kept so that the write path does not build it again.
    path: PathBuf,
    file: ZeroAheadFile,
}

/// Segments as files `<dir>/<number:020>.seg`. Keeps the segment being
/// appended to open, filled with zeros ahead of its records
/// ([`ZERO_AHEAD_BYTES_MIN`] says why).
#[derive(Debug)]
pub struct DirSegments {
    dir: PathBuf,
    /// `dir`'s durable marker.
    marker_path: PathBuf,
    /// The segment appended to last.
    open: Option<OpenSegment>,
    /// The durable marker, open once written.
    marker: Option<File>,
    /// The data directory's lock, held as long as the segments are
    /// written (see [`open_data_dir`](super::data_dir::open_data_dir)).
    lock: Option<DataDirLock>,
}

impl DirSegments {
    /// The segments in `dir`, created if missing.
    pub fn new(dir: impl AsRef<Path>) -> Result<DirSegments, StorageError> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
        Ok(DirSegments {
            marker_path: dir.join(MARKER_FILE_NAME),
            dir,
            open: None,
            marker: None,
            lock: None,
        })
    }

    /// Holds `lock` for as long as these segments exist.
    pub fn holding(mut self, lock: DataDirLock) -> Self {
        self.lock = Some(lock);
        self
    }

    /// Whether a data directory lock is held with these segments.
    pub fn holds_lock(&self) -> bool {
        self.lock.is_some()
    }

    fn path(&self, number: u64) -> PathBuf {
        self.dir.join(segment_name(number))
    }

    /// Segment `number`, open (opened if needed; at most one is kept
    /// open, and the one it replaces is cut to its records first).
    fn open_segment(&mut self, number: u64) -> Result<&mut OpenSegment, StorageError> {
        if self.open.as_ref().is_none_or(|open| open.number != number) {
            self.seal_open()?;
            let path = self.path(number);
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(io_err(format!("opening {}", path.display())))?;
            // Opened after recovery cut any torn tail: the records end
            // where the file does.
            let length_bytes = file
                .metadata()
                .map_err(io_err(format!("reading the length of {}", path.display())))?
                .len();
            self.open = Some(OpenSegment {
                number,
                path,
                file: ZeroAheadFile::new(file, length_bytes),
            });
        }
        Ok(self.open.as_mut().expect("opened above"))
    }

    /// Cuts the open segment's zeros and closes it.
    fn seal_open(&mut self) -> Result<(), StorageError> {
        if let Some(mut open) = self.open.take() {
            open.file.seal(&open.path)?;
        }
        Ok(())
    }
}

impl Drop for DirSegments {
    fn drop(&mut self) {
        // A failure leaves zeros that the next start cuts as a torn tail.
        if let Err(e) = self.seal_open() {
            tracing::warn!(error = %e, "could not cut the last segment to its records");
        }
    }
}

impl SegmentFiles for DirSegments {
    fn list(&mut self) -> Result<Vec<u64>, StorageError> {
        let segments = numbered_files(&self.dir, ".seg")?;
        Ok(segments.into_iter().map(|(number, _)| number).collect())
    }

    fn read(&mut self, number: u64) -> Result<Vec<u8>, StorageError> {
        let path = self.path(number);
        let mut bytes = Vec::new();
        File::open(&path)
            .and_then(|mut file| file.read_to_end(&mut bytes))
            .map_err(io_err(format!("reading {}", path.display())))?;
        Ok(bytes)
    }

    fn create(&mut self, number: u64) -> Result<(), StorageError> {
        // The segment before must not end in zeros once it is not the
        // last.
        self.seal_open()?;
        let path = self.path(number);
        let file = OpenOptions::new()
            .create_new(true)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_err(format!("creating {}", path.display())))?;
        sync_dir(&self.dir)?;
        self.open = Some(OpenSegment {
            number,
            path,
            file: ZeroAheadFile::new(file, 0),
        });
        Ok(())
    }

    fn append(&mut self, number: u64, bytes: &[u8]) -> Result<(), StorageError> {
        let open = self.open_segment(number)?;
        open.file.append(bytes, &open.path)
    }

    fn sync(&mut self, number: u64) -> Result<(), StorageError> {
        let open = self.open_segment(number)?;
        open.file
            .file()
            .sync_data()
            .map_err(io_err_at("fdatasync", &open.path))
    }

    fn truncate(&mut self, number: u64, length_bytes: u64) -> Result<(), StorageError> {
        let path = self.path(number);
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(io_err(format!("opening {}", path.display())))?;
        file.set_len(length_bytes)
            .map_err(io_err(format!("truncating {}", path.display())))?;
        file.sync_all()
            .map_err(io_err(format!("syncing {}", path.display())))?;
        if let Some(open) = self.open.as_mut().filter(|open| open.number == number) {
            open.file.truncated(length_bytes);
        }
        Ok(())
    }

    fn remove(&mut self, number: u64) -> Result<(), StorageError> {
        if self.open.as_ref().is_some_and(|open| open.number == number) {
            self.open = None;
        }
        let path = self.path(number);
        fs::remove_file(&path).map_err(io_err(format!("removing {}", path.display())))?;
        sync_dir(&self.dir)
    }

    fn describe(&self, number: u64) -> String {
        self.path(number).display().to_string()
    }

    fn read_marker(&mut self) -> Result<Option<Vec<u8>>, StorageError> {
        let path = self.dir.join(MARKER_FILE_NAME);
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(format!("reading {}", path.display()))(e)),
        }
    }

    fn write_marker(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        let path = &self.marker_path;
        if self.marker.is_none() {
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(path)
                .map_err(io_err_at("opening", path))?;
            // The file's creation must not be what a crash loses once the
            // marker is synced.
            sync_dir(&self.dir)?;
            self.marker = Some(file);
        }
        let file = self.marker.as_ref().expect("opened above");
        // One positioned write of the whole marker; the file never grows.
        file.write_all_at(bytes, 0)
            .map_err(io_err_at("writing", path))
    }

    fn sync_marker(&mut self) -> Result<(), StorageError> {
        match &self.marker {
            Some(file) => file
                .sync_data()
                .map_err(io_err_at("fdatasync", &self.marker_path)),
            None => Ok(()),
        }
    }

    fn remove_marker(&mut self) -> Result<(), StorageError> {
        self.marker = None;
        let path = self.dir.join(MARKER_FILE_NAME);
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(format!("removing {}", path.display()))(e)),
        }
    }

    fn describe_marker(&self) -> String {
        self.dir.join(MARKER_FILE_NAME).display().to_string()
    }
}
