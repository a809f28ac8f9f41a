//! Where the groups' snapshots live: one directory per group holding its
//! newest snapshot file ([`DirSnapshots`], the format and atomic write of
//! [`crate::snapshot_file`]), behind a trait so a
//! crash test can use a model of the disk instead
//! ([`PageCacheDisk`](super::page_cache::PageCacheDisk)).
//!
//! ```text
//! <dir>/<group:020>/snapshot-<index:020>-<term:020>.snap
//! <dir>/<group:020>/snapshot-<index:020>-<term:020>.snap.receiving.tmp   one arriving
//! ```
//!
//! A snapshot sent by a group's leader arrives chunk by chunk into a
//! [`SnapshotSink`] the host gets from the store's [`SnapshotIntake`]:
//! in memory when it is small, otherwise straight into a file in the
//! group's directory, so that a large snapshot (or many groups receiving
//! at once) never sits whole in memory. Once installed, the log makes it
//! durable under its final name ([`SnapshotStore::store_received`]); a
//! crash before that leaves a `.tmp` file, removed at the next start.

use std::fs;
use std::path::{Path, PathBuf};

use crate::snapshot_file::{self, SNAPSHOT_HEADER_BYTES};
use crate::storage::{
    ReceivedSnapshot, ReceivedTarget, SnapshotReader, SnapshotSink, StorageError,
};
use crate::wal::{io_err, numbered_files, sync_dir};
use concord::durable::StateView;
use concord::multi::GroupId;
use concord::{LogPosition, Membership, Snapshot, SnapshotMeta};

/// Where the host receives a group's snapshot from its leader (see the
/// [module documentation](self)). Cheap to clone; used on the server
/// loop's thread while the store itself lives with the log.
#[derive(Clone, Debug, Default)]
pub struct SnapshotIntake {
    /// The directory of the groups' directories; `None`: memory only.
    dir: Option<PathBuf>,
}

impl SnapshotIntake {
    /// Every snapshot received into memory (a store without files).
    pub fn memory() -> Self {
        SnapshotIntake { dir: None }
    }

    /// Snapshots larger than a threshold received into files in the group
    /// directories under `dir` (where [`DirSnapshots`] keeps them).
    pub fn files(dir: impl Into<PathBuf>) -> Self {
        SnapshotIntake {
            dir: Some(dir.into()),
        }
    }

    /// Whether large snapshots go to files.
    pub fn uses_files(&self) -> bool {
        self.dir.is_some()
    }

    /// A sink for group `group`'s snapshot `meta`: in memory if it is at
    /// most `in_memory_bytes_max` bytes (or there is no directory), else a
    /// file next to the group's snapshots.
    pub fn sink(
        &self,
        group: GroupId,
        meta: SnapshotMeta,
        in_memory_bytes_max: u64,
    ) -> Result<SnapshotSink, StorageError> {
        let Some(dir) = self
            .dir
            .as_ref()
            .filter(|_| meta.size_bytes > in_memory_bytes_max)
        else {
            return Ok(SnapshotSink::in_memory(meta));
        };
        let group_dir = group_dir(dir, group);
        ensure_group_dir(dir, &group_dir)?;
        snapshot_file::create_receiving_file(&group_dir, meta)
    }
}

impl SnapshotIntake {
    /// Streams group `group`'s state machine `view` (the state after
    /// `position`) into a snapshot received whole: a file in the group's
    /// directory, or memory when there is none. Off the loop: it reads the
    /// whole view.
    pub fn stream_view(
        &self,
        group: GroupId,
        position: LogPosition,
        view: &mut dyn StateView,
    ) -> Result<ReceivedSnapshot, StorageError> {
        match &self.dir {
            Some(dir) => {
                let group_dir = group_dir(dir, group);
                ensure_group_dir(dir, &group_dir)?;
                snapshot_file::stream_view_into_file(&group_dir, position, view)
            }
            None => {
                let data = concord::durable::read_view(view).map_err(|e| StorageError::Io {
                    context: format!(
                        "reading the state machine's view at index {}",
                        position.index
                    ),
                    source: std::io::Error::other(e.to_string()),
                })?;
                let data = bytes::Bytes::from(data);
                let meta = Snapshot::new(position, data.clone()).meta();
                Ok(ReceivedSnapshot {
                    meta,
                    target: ReceivedTarget::Memory(data),
                })
            }
        }
    }
}

fn group_dir(dir: &Path, group: GroupId) -> PathBuf {
    dir.join(format!("{group:020}"))
}

/// Creates a group's directory if missing, durably (its entry in `dir`).
fn ensure_group_dir(dir: &Path, group_dir: &Path) -> Result<(), StorageError> {
    if !group_dir.exists() {
        fs::create_dir_all(group_dir)
            .map_err(io_err(format!("creating {}", group_dir.display())))?;
        sync_dir(dir)?;
    }
    Ok(())
}

/// Removes the file a received snapshot was written into (not stored:
/// the store holds a newer one).
pub(crate) fn discard_received(received: ReceivedSnapshot) {
    if let ReceivedTarget::File { path, .. } = received.target {
        if let Err(e) = fs::remove_file(&path) {
            tracing::debug!(file = %path.display(), error = %e, "cannot remove a received snapshot file not stored");
        }
    }
}

/// Every byte of a received snapshot, verified against its checksum.
pub(crate) fn received_bytes(received: &ReceivedSnapshot) -> Result<bytes::Bytes, StorageError> {
    match &received.target {
        ReceivedTarget::Memory(data) => Ok(data.clone()),
        ReceivedTarget::File { file, path, .. } => SnapshotReader::from_file(
            received.meta,
            None,
            file.clone(),
            SNAPSHOT_HEADER_BYTES as u64,
            path.clone(),
        )
        .read_verified(),
    }
}

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
    /// Stores a snapshot received from the group's leader (into a sink of
    /// [`intake`](SnapshotStore::intake)) with the configuration in force
    /// at its last entry, like [`store`](SnapshotStore::store).
    fn store_received(
        &mut self,
        group: GroupId,
        received: ReceivedSnapshot,
        membership: Membership,
    ) -> Result<SnapshotReader, StorageError>;
    /// Where the host receives snapshots for this store.
    fn intake(&self) -> SnapshotIntake;
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
        group_dir(&self.dir, group)
    }
}

impl SnapshotStore for DirSnapshots {
    fn store(
        &mut self,
        group: GroupId,
        snapshot: &Snapshot,
    ) -> Result<SnapshotReader, StorageError> {
        let dir = self.group_dir(group);
        ensure_group_dir(&self.dir, &dir)?;
        let path = snapshot_file::write_snapshot_file(&dir, snapshot)?;
        snapshot_file::open_snapshot_file(&path)
    }

    fn store_received(
        &mut self,
        group: GroupId,
        received: ReceivedSnapshot,
        membership: Membership,
    ) -> Result<SnapshotReader, StorageError> {
        let meta = received.meta;
        match received.target {
            ReceivedTarget::Memory(data) => {
                let snapshot = Snapshot::new(meta.position, data).with_membership(Some(membership));
                self.store(group, &snapshot)
            }
            ReceivedTarget::File {
                file,
                path,
                final_path,
            } => {
                // Received into this group's directory: made durable in
                // place under its final name. Its bytes were checked
                // against the snapshot's checksum as they arrived.
                snapshot_file::make_received_durable(
                    &file,
                    &path,
                    &final_path,
                    meta.size_bytes,
                    &membership,
                )?;
                Ok(SnapshotReader::from_file(
                    meta,
                    Some(membership),
                    file,
                    SNAPSHOT_HEADER_BYTES as u64,
                    final_path,
                ))
            }
        }
    }

    fn intake(&self) -> SnapshotIntake {
        SnapshotIntake::files(&self.dir)
    }

    fn newest(&mut self, group: GroupId) -> Result<Option<SnapshotReader>, StorageError> {
        snapshot_file::load_newest_snapshot(&self.group_dir(group))
    }

    fn groups(&mut self) -> Result<Vec<GroupId>, StorageError> {
        let dirs = numbered_files(&self.dir, "")?;
        Ok(dirs.into_iter().map(|(group, _)| group).collect())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "concord-snapshot-store-{name}-{}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn files_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|item| item.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        names.sort();
        names
    }

    /// A snapshot over the threshold arrives into a file in its group's
    /// directory and is stored there under its final name, with its
    /// configuration; one not newer than the stored one leaves no file.
    #[test]
    fn large_received_snapshots_go_to_files_and_are_stored_in_place() {
        let dir = scratch("received");
        let mut store = DirSnapshots::new(&dir).unwrap();
        let intake = store.intake();
        let data = bytes::Bytes::from(vec![7u8; 10_000]);
        let snapshot = Snapshot::new(LogPosition::new(40, 3), data.clone());
        let meta = snapshot.meta();
        // Under the threshold: memory.
        let small = intake.sink(9, meta, 10_000).unwrap();
        drop(small);
        assert!(!dir.join(format!("{:020}", 9)).exists());
        // Over it: a file, written chunk by chunk.
        let mut sink = intake.sink(9, meta, 1_000).unwrap();
        let group_dir = dir.join(format!("{:020}", 9));
        assert_eq!(files_in(&group_dir).len(), 1);
        assert!(files_in(&group_dir)[0].ends_with(".receiving.tmp"));
        for (i, chunk) in data.chunks(4096).enumerate() {
            sink.write(i as u64 * 4096, chunk).unwrap();
        }
        let (received, reader) = sink.finish();
        assert_eq!(reader.read_verified().unwrap(), data);
        let membership = Membership::new([1, 2, 3]);
        let stored = store
            .store_received(9, received, membership.clone())
            .unwrap();
        assert_eq!(stored.meta(), meta);
        assert_eq!(
            files_in(&group_dir),
            vec![snapshot_file::snapshot_file_name(meta.position)]
        );
        let newest = store.newest(9).unwrap().expect("stored");
        assert_eq!(newest.meta(), meta);
        assert_eq!(newest.membership(), Some(&membership));
        assert_eq!(newest.read_verified().unwrap(), data);
        // A sink abandoned before it is finished leaves nothing behind.
        let older = Snapshot::new(LogPosition::new(30, 3), data.clone());
        let abandoned = intake.sink(9, older.meta(), 0).unwrap();
        assert_eq!(files_in(&group_dir).len(), 2);
        drop(abandoned);
        assert_eq!(files_in(&group_dir).len(), 1);
        // One received whole but not stored is discarded with its file.
        let mut sink = intake.sink(9, older.meta(), 0).unwrap();
        sink.write(0, &older.data).unwrap();
        let (received, _) = sink.finish();
        discard_received(received);
        assert_eq!(files_in(&group_dir).len(), 1);
        let _ = fs::remove_dir_all(&dir);
    }
}
