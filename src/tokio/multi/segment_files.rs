//! Where the shared log's segments live: the few file operations the log
//! needs, behind a trait, so that the same log code runs on a directory of
//! real files ([`DirSegments`]) and on a model of the page cache
//! ([`PageCacheDisk`](super::page_cache::PageCacheDisk)) that a crash test
//! can cut at any write.
//!
//! Next to the segments lives the durable marker (`record.rs`): one small
//! file overwritten in place after every sync.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::tokio::identity::DataDirLock;
use crate::tokio::storage::StorageError;
use crate::tokio::wal::{io_err, numbered_files, segment_name, sync_dir};

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
}

/// File name of the durable marker among the segments.
pub const MARKER_FILE_NAME: &str = "durable";

/// Segments as files `<dir>/<number:020>.seg`. Keeps the segment being
/// appended to open.
#[derive(Debug)]
pub struct DirSegments {
    dir: PathBuf,
    /// The segment appended to last, open for appending.
    open: BTreeMap<u64, File>,
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
            dir,
            open: BTreeMap::new(),
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

    /// The open file of segment `number` (opened for appending if needed;
    /// at most one is kept open).
    fn file(&mut self, number: u64) -> Result<&mut File, StorageError> {
        if !self.open.contains_key(&number) {
            let path = self.path(number);
            let file = OpenOptions::new()
                .append(true)
                .open(&path)
                .map_err(io_err(format!("opening {}", path.display())))?;
            self.open.clear();
            self.open.insert(number, file);
        }
        Ok(self.open.get_mut(&number).expect("opened above"))
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
        let path = self.path(number);
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(io_err(format!("creating {}", path.display())))?;
        sync_dir(&self.dir)?;
        self.open.clear();
        self.open.insert(number, file);
        Ok(())
    }

    fn append(&mut self, number: u64, bytes: &[u8]) -> Result<(), StorageError> {
        let path = self.path(number);
        self.file(number)?
            .write_all(bytes)
            .map_err(io_err(format!("appending to {}", path.display())))
    }

    fn sync(&mut self, number: u64) -> Result<(), StorageError> {
        let path = self.path(number);
        self.file(number)?
            .sync_data()
            .map_err(io_err(format!("fdatasync {}", path.display())))
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
            .map_err(io_err(format!("syncing {}", path.display())))
    }

    fn remove(&mut self, number: u64) -> Result<(), StorageError> {
        self.open.remove(&number);
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
        let path = self.dir.join(MARKER_FILE_NAME);
        if self.marker.is_none() {
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(io_err(format!("opening {}", path.display())))?;
            // The file's creation must not be what a crash loses once the
            // marker is synced.
            sync_dir(&self.dir)?;
            self.marker = Some(file);
        }
        let file = self.marker.as_ref().expect("opened above");
        // One positioned write of the whole marker; the file never grows.
        std::os::unix::fs::FileExt::write_all_at(file, bytes, 0)
            .map_err(io_err(format!("writing {}", path.display())))
    }

    fn sync_marker(&mut self) -> Result<(), StorageError> {
        let path = self.dir.join(MARKER_FILE_NAME);
        match &self.marker {
            Some(file) => file
                .sync_data()
                .map_err(io_err(format!("fdatasync {}", path.display()))),
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
