//! Where the groups' snapshots live: one directory per group holding its
//! newest snapshot file ([`DirSnapshots`], the format and atomic write of
//! [`crate::tokio::snapshot_file`]), behind a trait so a
//! crash test can use a model of the disk instead
//! ([`PageCacheDisk`](super::page_cache::PageCacheDisk)).
//!
//! ```text
//! <dir>/<group:020>/snapshot-<index:020>-<term:020>.snap
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use crate::multi::GroupId;
use crate::tokio::snapshot_file;
use crate::tokio::storage::{SnapshotReader, StorageError};
use crate::tokio::wal::{io_err, sync_dir};
use crate::{LogPosition, Snapshot};

/// The groups' snapshot files. Every operation is durable when it returns.
pub trait SnapshotStore: Send + 'static {
    /// Stores `snapshot` as group `group`'s newest, atomically (a crash
    /// leaves the whole file or none) and durably, and returns a reader
    /// of it.
    fn store(
        &mut self,
        group: GroupId,
        snapshot: &Snapshot,
    ) -> Result<SnapshotReader, StorageError>;
    /// Group `group`'s newest snapshot, verified (`None` when it has none).
    fn newest(&mut self, group: GroupId) -> Result<Option<SnapshotReader>, StorageError>;
    /// Every group that has a snapshot (or a directory for one), ascending.
    fn groups(&mut self) -> Result<Vec<GroupId>, StorageError>;
    /// Deletes group `group`'s snapshots older than `keep`.
    fn delete_before(&mut self, group: GroupId, keep: LogPosition) -> Result<(), StorageError>;
    /// Deletes everything of group `group`.
    fn remove_group(&mut self, group: GroupId) -> Result<(), StorageError>;
}

/// Snapshot files in one directory per group.
#[derive(Debug)]
pub struct DirSnapshots {
    dir: PathBuf,
}

impl DirSnapshots {
    /// The snapshots under `dir`, created if missing.
    pub fn new(dir: impl AsRef<Path>) -> Result<DirSnapshots, StorageError> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
        Ok(DirSnapshots { dir })
    }

    fn group_dir(&self, group: GroupId) -> PathBuf {
        self.dir.join(format!("{group:020}"))
    }
}

impl SnapshotStore for DirSnapshots {
    fn store(
        &mut self,
        group: GroupId,
        snapshot: &Snapshot,
    ) -> Result<SnapshotReader, StorageError> {
        let dir = self.group_dir(group);
        if !dir.exists() {
            fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
            sync_dir(&self.dir)?;
        }
        let path = snapshot_file::write_snapshot_file(&dir, snapshot)?;
        snapshot_file::open_snapshot_file(&path)
    }

    fn newest(&mut self, group: GroupId) -> Result<Option<SnapshotReader>, StorageError> {
        snapshot_file::load_newest_snapshot(&self.group_dir(group))
    }

    fn groups(&mut self) -> Result<Vec<GroupId>, StorageError> {
        let mut groups = Vec::new();
        let listing =
            fs::read_dir(&self.dir).map_err(io_err(format!("listing {}", self.dir.display())))?;
        for item in listing {
            let item = item.map_err(io_err(format!("listing {}", self.dir.display())))?;
            if let Ok(group) = item.file_name().to_string_lossy().parse::<GroupId>() {
                groups.push(group);
            }
        }
        groups.sort_unstable();
        Ok(groups)
    }

    fn delete_before(&mut self, group: GroupId, keep: LogPosition) -> Result<(), StorageError> {
        snapshot_file::delete_snapshots_before(&self.group_dir(group), keep)
    }

    fn remove_group(&mut self, group: GroupId) -> Result<(), StorageError> {
        let dir = self.group_dir(group);
        match fs::remove_dir_all(&dir) {
            Ok(()) => sync_dir(&self.dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(format!("removing {}", dir.display()))(e)),
        }
    }
}
