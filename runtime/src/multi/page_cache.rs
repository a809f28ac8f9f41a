//! A model of a disk behind a page cache, for crash tests of the shared
//! log: appended bytes sit in the cache until a sync makes them durable,
//! and a crash keeps only what was synced, plus perhaps a torn prefix of
//! what was not (followed, perhaps, by zeros or garbage, as some file
//! systems leave after a power failure). Creating, truncating and removing
//! a file and storing a snapshot are durable at once, as the real
//! implementations make them (they sync the file and its directory).
//! The durable marker is overwritten in place: a crash keeps its synced
//! bytes, its newest ones, or a torn mix of the two.
//!
//! A fuse stops the disk after a given number of operations: that one
//! and every later one fail, as if the process died there. So a test can
//! crash the log at every write boundary: run, blow the fuse after `n`
//! operations, [`crash`](PageCacheDisk::crash), reopen.
//!
//! Three faults of a disk that keeps working:
//!
//! * **An fsync fails once** ([`fail_next_sync`](PageCacheDisk::fail_next_sync)):
//!   the next segment sync returns an I/O error (EIO) and later ones
//!   succeed, as on Linux, which marks the pages whose writeback failed
//!   clean: what the failed sync was to make durable never reaches the
//!   platter (a crash reads zeros there), though the page cache still
//!   shows it and a later sync reports success. A log that retried the
//!   sync and trusted it would acknowledge writes a crash then loses.
//! * **The disk is full once** ([`fail_next_append_no_space`](PageCacheDisk::fail_next_append_no_space)):
//!   the next append writes a prefix of its bytes and fails with
//!   `StorageFull` (ENOSPC); later appends succeed.
//! * **A lying fsync** ([`set_lying_sync`](PageCacheDisk::set_lying_sync)):
//!   from then on every sync reports success and nothing reaches the
//!   platter (a volatile write cache that ignores flushes): a crash
//!   brings the whole disk back to what it held when it began to lie,
//!   files, snapshots and marker alike. No log can defend against it; it
//!   is there to show that the checks of a test catch the writes it
//!   loses.
//!
//! One [`PageCacheDisk`] is both [`SegmentFiles`] and [`SnapshotStore`];
//! clones share the same disk (so the disk outlives the log that wrote it).
//! Deterministic: the crash draws from the seed it is given.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::storage::{ReceivedSnapshot, SnapshotReader, StorageError};
use concord::multi::GroupId;
use concord::{LogPosition, Membership, Snapshot};

use super::segment_files::SegmentFiles;
use super::snapshot_store::{SnapshotIntake, SnapshotStore};

/// Bytes of one buffer of a [`CachedFile`]: an append fills the last
/// buffer before it starts another, so a file costs one allocation per
/// this many bytes, not one per append (each an allocation freed later,
/// perhaps on another thread, which glibc's allocator makes dear).
const CHUNK_BYTES: usize = 64 * 1024;

/// One file: what the page cache shows, and how much of it is on the
/// platter. Appends only extend a file and a truncation is durable at
/// once, so the durable bytes are always a prefix of the cached ones: a
/// length says which, and a sync costs nothing however long the file.
/// The bytes are kept in buffers of a fixed capacity that never grow
/// (a single growing buffer was copied whole at every doubling, a
/// seventh of an in-process benchmark's CPU).
#[derive(Clone, Debug, Default)]
struct CachedFile {
    chunks: Vec<Vec<u8>>,
    len_bytes: usize,
    durable_bytes: usize,
    /// Byte ranges whose writeback failed (a sync returned EIO): never
    /// on the platter, whatever later syncs report; a crash leaves zeros
    /// there.
    writeback_lost: Vec<(usize, usize)>,
}

impl CachedFile {
    /// A file holding `bytes`, all durable.
    fn durable(bytes: Vec<u8>) -> CachedFile {
        CachedFile {
            len_bytes: bytes.len(),
            durable_bytes: bytes.len(),
            chunks: vec![bytes],
            writeback_lost: Vec::new(),
        }
    }

    /// What the page cache shows, in one buffer.
    fn bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.len_bytes);
        for chunk in &self.chunks {
            bytes.extend_from_slice(chunk);
        }
        debug_assert_eq!(bytes.len(), self.len_bytes);
        bytes
    }

    fn append(&mut self, mut bytes: &[u8]) {
        self.len_bytes += bytes.len();
        while !bytes.is_empty() {
            let room = self
                .chunks
                .last()
                .map_or(0, |chunk| chunk.capacity() - chunk.len());
            if room == 0 {
                self.chunks
                    .push(Vec::with_capacity(CHUNK_BYTES.max(bytes.len())));
                continue;
            }
            let (now, later) = bytes.split_at(room.min(bytes.len()));
            self.chunks
                .last_mut()
                .expect("a chunk with room")
                .extend_from_slice(now);
            bytes = later;
        }
    }

    /// Cuts the file to `length_bytes` (no longer than it is), durably.
    fn truncate(&mut self, length_bytes: usize) {
        if length_bytes < self.len_bytes {
            let mut bytes = self.bytes();
            bytes.truncate(length_bytes);
            let mut lost = std::mem::take(&mut self.writeback_lost);
            lost.retain_mut(|(start, end)| {
                *end = (*end).min(length_bytes);
                start < end
            });
            *self = CachedFile::durable(bytes);
            self.writeback_lost = lost;
        }
        self.durable_bytes = self.len_bytes;
    }
}

#[derive(Debug, Default)]
struct DiskState {
    segments: BTreeMap<u64, CachedFile>,
    snapshots: BTreeMap<GroupId, BTreeMap<LogPosition, Snapshot>>,
    /// The durable marker as the page cache shows it (`None`: no file).
    marker: Option<Vec<u8>>,
    /// The durable marker's bytes on the platter.
    marker_durable: Option<Vec<u8>>,
    /// Operations (mutating ones) performed so far.
    operations: u64,
    /// Operations left before the fuse blows; `None`: never.
    fuse: Option<u64>,
    /// The fuse blew: every operation fails until the next crash.
    blown: bool,
    /// Syncs performed (the count a benchmark of fsyncs would read).
    syncs: u64,
    /// The next segment sync fails with EIO (once).
    fail_next_sync: bool,
    /// The next append fails with ENOSPC, after writing a prefix (once).
    fail_next_append: bool,
    /// Every sync reports success and makes nothing durable.
    lying_sync: bool,
    /// What the platter holds while the disk lies: its durable state
    /// when it began to.
    frozen: Option<Frozen>,
    /// One-shot faults that struck: failed syncs, failed appends.
    struck: FaultsStruck,
}

/// A lying disk's platter: every file's durable bytes, the snapshots
/// and the durable marker when it began to lie.
#[derive(Clone, Debug)]
struct Frozen {
    segments: BTreeMap<u64, Vec<u8>>,
    snapshots: BTreeMap<GroupId, BTreeMap<LogPosition, Snapshot>>,
    marker: Option<Vec<u8>>,
}

/// One-shot faults of a [`PageCacheDisk`] that struck so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultsStruck {
    /// Segment syncs that failed with EIO.
    pub failed_syncs: u64,
    /// Appends that failed with ENOSPC.
    pub failed_appends: u64,
}

/// What a crash kept of the unsynced bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CrashReport {
    /// Unsynced bytes lost, over every file.
    pub lost_bytes: u64,
    /// Unsynced bytes kept (a torn prefix of what was written).
    pub kept_unsynced_bytes: u64,
    /// Bytes of zeros or garbage left after a kept prefix.
    pub junk_bytes: u64,
}

/// A disk behind a page cache (see the [module documentation](self)).
#[derive(Clone, Debug, Default)]
pub struct PageCacheDisk {
    state: Arc<Mutex<DiskState>>,
}

/// Longest run of zeros or garbage a crash leaves after a torn prefix.
const JUNK_BYTES_MAX: u64 = 64;

impl PageCacheDisk {
    /// An empty disk.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, DiskState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lets `operations` more operations succeed; the next one fails, and
    /// so does every one after it until [`crash`](Self::crash).
    pub fn set_fuse(&self, operations: u64) {
        self.lock().fuse = Some(operations);
    }

    /// Makes the next segment sync fail with EIO, once: what it was to
    /// make durable never reaches the platter (see the
    /// [module documentation](self)). A crash disarms it.
    pub fn fail_next_sync(&self) {
        self.lock().fail_next_sync = true;
    }

    /// Makes the next append write a prefix of its bytes and fail with
    /// ENOSPC (`StorageFull`), once. A crash disarms it.
    pub fn fail_next_append_no_space(&self) {
        self.lock().fail_next_append = true;
    }

    /// From now on (`true`) every sync reports success and nothing
    /// reaches the platter: each crash brings the disk back to its
    /// durable state of this moment. Survives crashes; `false` ends it.
    pub fn set_lying_sync(&self, lying: bool) {
        let mut state = self.lock();
        state.lying_sync = lying;
        if !lying {
            state.frozen = None;
        } else if state.frozen.is_none() {
            let segments = state
                .segments
                .iter()
                .map(|(number, file)| {
                    let mut bytes = file.bytes();
                    bytes.truncate(file.durable_bytes);
                    (*number, bytes)
                })
                .collect();
            state.frozen = Some(Frozen {
                segments,
                snapshots: state.snapshots.clone(),
                marker: state.marker_durable.clone(),
            });
        }
    }

    /// The one-shot faults that struck so far.
    pub fn faults_struck(&self) -> FaultsStruck {
        self.lock().struck
    }

    /// Whether the fuse blew.
    pub fn blown(&self) -> bool {
        self.lock().blown
    }

    /// Mutating operations performed so far.
    pub fn operations(&self) -> u64 {
        self.lock().operations
    }

    /// Syncs performed so far.
    pub fn syncs(&self) -> u64 {
        self.lock().syncs
    }

    /// Bytes of every segment file as the page cache shows them.
    pub fn segment_bytes(&self) -> BTreeMap<u64, Vec<u8>> {
        let state = self.lock();
        state
            .segments
            .iter()
            .map(|(number, file)| (*number, file.bytes()))
            .collect()
    }

    /// Deletes segment `number`, durably (a test planting a lost file).
    pub fn delete_segment(&self, number: u64) {
        self.lock().segments.remove(&number);
    }

    /// The durable marker's bytes as the page cache shows them.
    pub fn marker_bytes(&self) -> Option<Vec<u8>> {
        self.lock().marker.clone()
    }

    /// Replaces the durable marker's bytes, durably (a test planting
    /// damage; `None` deletes it).
    pub fn overwrite_marker(&self, bytes: Option<Vec<u8>>) {
        let mut state = self.lock();
        state.marker = bytes.clone();
        state.marker_durable = bytes;
    }

    /// Replaces segment `number`'s bytes, durably (a test planting damage).
    pub fn overwrite_segment(&self, number: u64, bytes: Vec<u8>) {
        let mut state = self.lock();
        state.segments.insert(number, CachedFile::durable(bytes));
    }

    /// The process dies: each file keeps its durable bytes plus, drawn
    /// from `seed`, a prefix of its unsynced ones, perhaps followed by
    /// zeros or garbage. The fuse is reset.
    pub fn crash(&self, seed: u64) -> CrashReport {
        let mut state = self.lock();
        let mut draw = SplitMix(seed);
        let mut report = CrashReport::default();
        if let Some(frozen) = state.frozen.clone() {
            // A lying disk: the platter is as it was when it began to lie.
            let written: usize = state.segments.values().map(|file| file.len_bytes).sum();
            let kept: usize = frozen.segments.values().map(Vec::len).sum();
            report.lost_bytes = written.saturating_sub(kept) as u64;
            state.segments = frozen
                .segments
                .into_iter()
                .map(|(number, bytes)| (number, CachedFile::durable(bytes)))
                .collect();
            state.snapshots = frozen.snapshots;
            state.marker.clone_from(&frozen.marker);
            state.marker_durable = frozen.marker;
            state.fuse = None;
            state.blown = false;
            state.fail_next_sync = false;
            state.fail_next_append = false;
            return report;
        }
        for file in state.segments.values_mut() {
            let durable = file.durable_bytes;
            assert!(durable <= file.len_bytes, "durable bytes past the file");
            let unsynced = (file.len_bytes - durable) as u64;
            let kept = match draw.next() % 3 {
                0 => 0,
                1 => unsynced,
                _ => draw.below(unsynced + 1),
            };
            let mut bytes = file.bytes();
            bytes.truncate(durable + kept as usize);
            // Failed writeback: never on the platter, synced since or not.
            for &(start, end) in &file.writeback_lost {
                let end = end.min(bytes.len());
                if start < end {
                    bytes[start..end].fill(0);
                }
            }
            report.kept_unsynced_bytes += kept;
            report.lost_bytes += unsynced - kept;
            if unsynced > 0 {
                let junk = draw.below(JUNK_BYTES_MAX + 1);
                match draw.next() % 3 {
                    0 => {}
                    1 => bytes.extend(std::iter::repeat_n(0u8, junk as usize)),
                    _ => bytes.extend((0..junk).map(|_| draw.next() as u8)),
                }
                report.junk_bytes += (bytes.len() - durable) as u64 - kept;
            }
            *file = CachedFile::durable(bytes);
        }
        // The marker: its synced bytes, its newest, or the newest torn
        // over the synced ones (one small write, perhaps half done).
        let marker = match (&state.marker, &state.marker_durable) {
            (Some(new), old) if Some(new) != old.as_ref() => match draw.next() % 3 {
                0 => old.clone(),
                1 => Some(new.clone()),
                _ => {
                    let mut torn = old.clone().unwrap_or_default();
                    let cut = draw.below(new.len() as u64 + 1) as usize;
                    torn.resize(torn.len().max(new.len()), 0);
                    torn[..cut].copy_from_slice(&new[..cut]);
                    Some(torn)
                }
            },
            (_, old) => old.clone(),
        };
        state.marker = marker.clone();
        state.marker_durable = marker;
        state.fuse = None;
        state.blown = false;
        state.fail_next_sync = false;
        state.fail_next_append = false;
        report
    }

    /// Counts one mutating operation, failing it if the fuse blew.
    fn operation(state: &mut DiskState, what: &str) -> Result<(), StorageError> {
        if state.blown {
            return Err(crashed(what));
        }
        if let Some(left) = state.fuse.as_mut() {
            if *left == 0 {
                state.blown = true;
                return Err(crashed(what));
            }
            *left -= 1;
        }
        state.operations += 1;
        Ok(())
    }
}

fn crashed(what: &str) -> StorageError {
    StorageError::Io {
        context: format!("{what} (simulated crash)"),
        source: std::io::Error::other("the disk's fuse blew"),
    }
}

fn missing(number: u64) -> StorageError {
    StorageError::Io {
        context: format!("segment {number}"),
        source: std::io::Error::from(std::io::ErrorKind::NotFound),
    }
}

impl SegmentFiles for PageCacheDisk {
    fn list(&mut self) -> Result<Vec<u64>, StorageError> {
        Ok(self.lock().segments.keys().copied().collect())
    }

    fn read(&mut self, number: u64) -> Result<Vec<u8>, StorageError> {
        let state = self.lock();
        let file = state.segments.get(&number).ok_or_else(|| missing(number))?;
        Ok(file.bytes())
    }

    fn create(&mut self, number: u64) -> Result<(), StorageError> {
        let mut state = self.lock();
        PageCacheDisk::operation(&mut state, "creating a segment")?;
        assert!(
            !state.segments.contains_key(&number),
            "segment {number} created twice"
        );
        state.segments.insert(number, CachedFile::default());
        Ok(())
    }

    fn append(&mut self, number: u64, bytes: &[u8]) -> Result<(), StorageError> {
        let mut state = self.lock();
        PageCacheDisk::operation(&mut state, "appending to a segment")?;
        let no_space = std::mem::take(&mut state.fail_next_append);
        let file = state
            .segments
            .get_mut(&number)
            .ok_or_else(|| missing(number))?;
        if no_space {
            // A short write, then no room for the rest.
            file.append(&bytes[..bytes.len() / 2]);
            state.struck.failed_appends += 1;
            return Err(StorageError::Io {
                context: format!("appending to segment {number} (simulated full disk)"),
                source: std::io::Error::new(
                    std::io::ErrorKind::StorageFull,
                    "no space left on device",
                ),
            });
        }
        file.append(bytes);
        Ok(())
    }

    fn sync(&mut self, number: u64) -> Result<(), StorageError> {
        let mut state = self.lock();
        PageCacheDisk::operation(&mut state, "syncing a segment")?;
        state.syncs += 1;
        let fails = std::mem::take(&mut state.fail_next_sync);
        let lying = state.lying_sync;
        let file = state
            .segments
            .get_mut(&number)
            .ok_or_else(|| missing(number))?;
        if fails {
            // The pages are marked clean: this writeback is lost for good.
            if file.durable_bytes < file.len_bytes {
                file.writeback_lost
                    .push((file.durable_bytes, file.len_bytes));
            }
            state.struck.failed_syncs += 1;
            return Err(StorageError::Io {
                context: format!("syncing segment {number} (simulated EIO)"),
                source: std::io::Error::other("input/output error (EIO) on fsync"),
            });
        }
        if !lying {
            file.durable_bytes = file.len_bytes;
        }
        Ok(())
    }

    fn truncate(&mut self, number: u64, length_bytes: u64) -> Result<(), StorageError> {
        let mut state = self.lock();
        PageCacheDisk::operation(&mut state, "truncating a segment")?;
        let file = state
            .segments
            .get_mut(&number)
            .ok_or_else(|| missing(number))?;
        file.truncate(length_bytes as usize);
        Ok(())
    }

    fn remove(&mut self, number: u64) -> Result<(), StorageError> {
        let mut state = self.lock();
        PageCacheDisk::operation(&mut state, "removing a segment")?;
        state.segments.remove(&number);
        Ok(())
    }

    fn describe(&self, number: u64) -> String {
        format!("page-cache disk segment {number}")
    }

    fn read_marker(&mut self) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.lock().marker.clone())
    }

    fn write_marker(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        let mut state = self.lock();
        PageCacheDisk::operation(&mut state, "writing the durable marker")?;
        // Rewritten in place: a marker is written at every sync.
        let marker = state.marker.get_or_insert_with(Vec::new);
        marker.clear();
        marker.extend_from_slice(bytes);
        Ok(())
    }

    fn sync_marker(&mut self) -> Result<(), StorageError> {
        let mut state = self.lock();
        PageCacheDisk::operation(&mut state, "syncing the durable marker")?;
        state.syncs += 1;
        if state.lying_sync {
            return Ok(());
        }
        let DiskState {
            marker,
            marker_durable,
            ..
        } = &mut *state;
        match (marker, marker_durable) {
            (Some(new), Some(durable)) => durable.clone_from(new),
            (new, durable) => *durable = new.clone(),
        }
        Ok(())
    }

    fn remove_marker(&mut self) -> Result<(), StorageError> {
        let mut state = self.lock();
        PageCacheDisk::operation(&mut state, "removing the durable marker")?;
        state.marker = None;
        state.marker_durable = None;
        Ok(())
    }

    fn describe_marker(&self) -> String {
        "page-cache disk durable marker".to_string()
    }

    fn sync_waits(&self) -> bool {
        false
    }
}

impl SnapshotStore for PageCacheDisk {
    fn store(
        &mut self,
        group: GroupId,
        snapshot: &Snapshot,
    ) -> Result<SnapshotReader, StorageError> {
        let mut state = self.lock();
        PageCacheDisk::operation(&mut state, "storing a snapshot")?;
        state
            .snapshots
            .entry(group)
            .or_default()
            .insert(snapshot.position, snapshot.clone());
        Ok(SnapshotReader::from_memory(snapshot))
    }

    fn store_received(
        &mut self,
        group: GroupId,
        received: ReceivedSnapshot,
        membership: Membership,
    ) -> Result<SnapshotReader, StorageError> {
        let position = received.meta().position;
        let data = super::snapshot_store::received_bytes(&received)?;
        super::snapshot_store::discard_received(received);
        let snapshot = Snapshot::new(position, data).with_membership(Some(membership));
        self.store(group, &snapshot)
    }

    fn intake(&self) -> SnapshotIntake {
        SnapshotIntake::memory()
    }

    fn newest(&mut self, group: GroupId) -> Result<Option<SnapshotReader>, StorageError> {
        let state = self.lock();
        Ok(state
            .snapshots
            .get(&group)
            .and_then(|snapshots| snapshots.values().max_by_key(|s| s.position.index))
            .map(SnapshotReader::from_memory))
    }

    fn groups(&mut self) -> Result<Vec<GroupId>, StorageError> {
        Ok(self.lock().snapshots.keys().copied().collect())
    }

    fn delete_before(&mut self, group: GroupId, keep: LogPosition) -> Result<(), StorageError> {
        let mut state = self.lock();
        PageCacheDisk::operation(&mut state, "deleting old snapshots")?;
        if let Some(snapshots) = state.snapshots.get_mut(&group) {
            snapshots.retain(|position, _| position.index >= keep.index);
        }
        Ok(())
    }

    fn remove_group(&mut self, group: GroupId) -> Result<(), StorageError> {
        let mut state = self.lock();
        PageCacheDisk::operation(&mut state, "removing a group's snapshots")?;
        state.snapshots.remove(&group);
        Ok(())
    }
}

/// A small deterministic generator (SplitMix64) for the crash's draws.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A draw in `0..bound` (`bound` > 0).
    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crash_keeps_synced_bytes_and_never_more_than_was_written() {
        for seed in 0..200 {
            let mut disk = PageCacheDisk::new();
            disk.create(1).unwrap();
            disk.append(1, b"synced").unwrap();
            disk.sync(1).unwrap();
            disk.append(1, b"unsynced").unwrap();
            let report = disk.crash(seed);
            let bytes = disk.read(1).unwrap();
            assert!(bytes.starts_with(b"synced"));
            let kept = report.kept_unsynced_bytes as usize;
            assert_eq!(&bytes[6..6 + kept], &b"unsynced"[..kept]);
            assert_eq!(bytes.len(), 6 + kept + report.junk_bytes as usize);
        }
    }

    #[test]
    fn a_failed_fsync_loses_its_bytes_even_if_a_later_one_succeeds() {
        for seed in 0..50 {
            let mut disk = PageCacheDisk::new();
            disk.create(1).unwrap();
            disk.append(1, b"synced").unwrap();
            disk.sync(1).unwrap();
            disk.append(1, b"lost").unwrap();
            disk.fail_next_sync();
            assert_eq!(disk.faults_struck(), FaultsStruck::default());
            assert!(disk.sync(1).is_err());
            // The page cache still shows it; a retried sync "succeeds".
            assert_eq!(disk.read(1).unwrap(), b"syncedlost");
            disk.append(1, b"later").unwrap();
            disk.sync(1).unwrap();
            assert_eq!(disk.faults_struck().failed_syncs, 1);
            disk.crash(seed);
            assert_eq!(disk.read(1).unwrap(), b"synced\0\0\0\0later");
        }
    }

    #[test]
    fn a_full_disk_fails_one_append_after_a_short_write() {
        let mut disk = PageCacheDisk::new();
        disk.create(1).unwrap();
        disk.fail_next_append_no_space();
        let error = disk.append(1, b"abcd").unwrap_err();
        match error {
            StorageError::Io { source, .. } => {
                assert_eq!(source.kind(), std::io::ErrorKind::StorageFull)
            }
            other => panic!("{other}"),
        }
        assert_eq!(disk.read(1).unwrap(), b"ab");
        disk.append(1, b"e").unwrap();
        assert_eq!(disk.read(1).unwrap(), b"abe");
        assert_eq!(disk.faults_struck().failed_appends, 1);
    }

    #[test]
    fn a_lying_fsync_brings_the_disk_back_to_when_it_began_to_lie() {
        let mut disk = PageCacheDisk::new();
        disk.create(1).unwrap();
        disk.append(1, b"kept").unwrap();
        disk.sync(1).unwrap();
        disk.set_lying_sync(true);
        disk.append(1, b"acked").unwrap();
        disk.sync(1).unwrap();
        disk.create(2).unwrap();
        disk.store(3, &Snapshot::new(LogPosition::new(5, 1), Vec::new().into()))
            .unwrap();
        let report = disk.crash(7);
        assert_eq!(report.lost_bytes, 5);
        assert_eq!(disk.list().unwrap(), vec![1]);
        assert_eq!(disk.read(1).unwrap(), b"kept");
        assert!(disk.newest(3).unwrap().is_none());
        // Still lying: the next crash goes back there again.
        disk.append(1, b"again").unwrap();
        disk.sync(1).unwrap();
        disk.crash(8);
        assert_eq!(disk.read(1).unwrap(), b"kept");
    }

    #[test]
    fn a_blown_fuse_fails_that_operation_and_every_later_one() {
        let mut disk = PageCacheDisk::new();
        disk.set_fuse(2);
        disk.create(1).unwrap();
        disk.append(1, b"a").unwrap();
        assert!(disk.sync(1).is_err());
        assert!(disk.append(1, b"b").is_err());
        assert!(disk.blown());
        let report = disk.crash(1);
        // Nothing was synced: only a torn prefix of "a" and junk remain.
        let kept = disk.read(1).unwrap();
        assert_eq!(
            kept.len() as u64,
            report.kept_unsynced_bytes + report.junk_bytes
        );
        assert!(report.kept_unsynced_bytes <= 1);
        disk.append(1, b"c").unwrap();
    }
}
