//! A model of a disk behind a page cache, for crash tests of the shared
//! log: appended bytes sit in the cache until a sync makes them durable,
//! and a crash keeps only what was synced, plus perhaps a torn prefix of
//! what was not (followed, perhaps, by zeros or garbage, as some file
//! systems leave after a power failure). Creating, truncating and removing
//! a segment are durable at once, as the real implementations make them
//! (they sync the file and its directory).
//! The durable marker is overwritten in place: a crash keeps its synced
//! bytes, its newest ones, or a torn mix of the two.
//!
//! Snapshots are files under a file system's rules, one directory per
//! group as [`DirSnapshots`](super::snapshot_store::DirSnapshots) keeps
//! them, each file holding the bytes of the real format
//! ([`crate::snapshot_file`]):
//!
//! * a file's contents are durable up to its last sync; a crash tears
//!   the rest as it tears a segment's;
//! * a directory's entries (a file created, renamed or removed, a
//!   group's directory made or removed) are durable as of the last sync
//!   of that directory; of the changes since, a crash keeps a prefix
//!   drawn from its seed, often none (a journaling file system commits
//!   them in order, when it likes): a rename not followed by a sync of
//!   its directory may be undone, the old name back.
//!
//! The store writes a snapshot as the real one does
//! (`wal::write_file_atomically`): a temporary file, written, synced,
//! renamed to its final name, the directory synced, each step one
//! operation of the disk. Reading a group's newest snapshot removes
//! leftover temporary files (syncing the directory) and verifies the
//! file as `snapshot_file::open_snapshot_file` does: a damaged one is
//! [`StorageError::CorruptSnapshot`], naming it.
//!
//! A fuse stops the disk after a given number of operations: that one
//! and every later one fail, as if the process died there. So a test can
//! crash the log at every write boundary: run, blow the fuse after `n`
//! operations, [`crash`](PageCacheDisk::crash), reopen. A second fuse
//! ([`set_snapshot_fuse`](PageCacheDisk::set_snapshot_fuse)) counts only
//! the operations on snapshot files, to fail a snapshot's store at a
//! given step.
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
//! And one fault of the platter itself:
//!
//! * **Rot** ([`rot_at_next_crash`](PageCacheDisk::rot_at_next_crash)):
//!   while the node is down, a few bytes of data that was synced change
//!   (a latent sector error, a misdirected write), where every log must
//!   notice: in a segment older than the newest, or in the newest before
//!   the offset the durable marker on the platter vouches for. The
//!   promise it tests: recovery refuses such a log, naming the file,
//!   rather than start without what it had acknowledged.
//!   [`repair`](PageCacheDisk::repair) puts the bytes back (the operator
//!   restoring the disk).
//!
//! One [`PageCacheDisk`] is both [`SegmentFiles`] and [`SnapshotStore`];
//! clones share the same disk (so the disk outlives the log that wrote it).
//! Deterministic: the crash draws from the seed it is given.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::snapshot_file::{
    membership_trailer, parse_file_name, parse_snapshot_bytes, snapshot_file_name, snapshot_header,
    SNAPSHOT_HEADER_BYTES,
};
use crate::storage::{ReceivedSnapshot, SnapshotReader, StorageError};
use concord::multi::GroupId;
use concord::{LogPosition, Membership, Snapshot};

use super::record::{DurableMarker, SEGMENT_HEADER_BYTES};
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

/// One directory as a file system keeps it: its entries as the page
/// cache shows them, those of its last sync, and the changes made since,
/// oldest first. A change is atomic (a rename's old name goes as its new
/// one comes): a crash keeps the synced entries and a prefix of the
/// changes.
#[derive(Clone, Debug)]
struct Dir<K, V> {
    entries: BTreeMap<K, V>,
    synced: BTreeMap<K, V>,
    unsynced: Vec<Vec<(K, Option<V>)>>,
}

impl<K, V> Default for Dir<K, V> {
    fn default() -> Self {
        Dir {
            entries: BTreeMap::new(),
            synced: BTreeMap::new(),
            unsynced: Vec::new(),
        }
    }
}

impl<K: Ord + Clone, V: Clone> Dir<K, V> {
    /// Sets (`Some`) or removes (`None`) each name, at once.
    fn change(&mut self, change: Vec<(K, Option<V>)>) {
        apply_change(&mut self.entries, &change);
        self.unsynced.push(change);
    }

    /// The directory's fsync: its entries are durable.
    fn sync(&mut self) {
        self.synced.clone_from(&self.entries);
        self.unsynced.clear();
    }

    /// A crash that kept the first `kept` changes made since the last
    /// sync: that is what the directory holds now, durably.
    fn crash(&mut self, kept: usize) {
        let mut entries = self.synced.clone();
        for change in &self.unsynced[..kept] {
            apply_change(&mut entries, change);
        }
        self.synced.clone_from(&entries);
        self.entries = entries;
        self.unsynced.clear();
    }

    /// The directory as its last sync left it, nothing pending.
    fn synced_image(&self) -> Dir<K, V> {
        Dir {
            entries: self.synced.clone(),
            synced: self.synced.clone(),
            unsynced: Vec::new(),
        }
    }

    /// Every value a crash could leave in it, or the page cache shows.
    fn values_reachable(&self) -> impl Iterator<Item = &V> {
        self.entries.values().chain(self.synced.values()).chain(
            self.unsynced
                .iter()
                .flatten()
                .filter_map(|(_, v)| v.as_ref()),
        )
    }
}

fn apply_change<K: Ord + Clone, V: Clone>(entries: &mut BTreeMap<K, V>, change: &[(K, Option<V>)]) {
    for (name, value) in change {
        match value {
            Some(value) => {
                entries.insert(name.clone(), value.clone());
            }
            None => {
                entries.remove(name);
            }
        }
    }
}

/// The snapshot files: a directory of the groups' directories, each
/// holding its group's files (see the [module documentation](self)).
/// Directories and files are known by number, as inodes: a name
/// removed but not durably so still reaches its file.
#[derive(Clone, Debug, Default)]
struct SnapshotTree {
    /// Group -> its directory's number.
    root: Dir<GroupId, u64>,
    /// File name -> file number, by directory number.
    dirs: BTreeMap<u64, Dir<String, u64>>,
    files: BTreeMap<u64, CachedFile>,
    /// The number the next directory or file gets.
    next_number: u64,
}

impl SnapshotTree {
    fn number(&mut self) -> u64 {
        self.next_number += 1;
        self.next_number
    }

    /// Group `group`'s directory's number, as the page cache shows it.
    fn dir_of(&self, group: GroupId) -> Option<u64> {
        self.root.entries.get(&group).copied()
    }

    /// The tree as its last syncs left it (a lying disk's platter).
    fn synced_image(&self) -> SnapshotTree {
        let mut image = SnapshotTree {
            root: self.root.synced_image(),
            dirs: self
                .dirs
                .iter()
                .map(|(number, dir)| (*number, dir.synced_image()))
                .collect(),
            files: self
                .files
                .iter()
                .map(|(number, file)| {
                    let mut bytes = file.bytes();
                    bytes.truncate(file.durable_bytes);
                    (*number, CachedFile::durable(bytes))
                })
                .collect(),
            next_number: self.next_number,
        };
        image.forget_unreachable();
        image
    }

    /// Drops the directories and files no name reaches, whatever a
    /// crash keeps.
    fn forget_unreachable(&mut self) {
        let dirs: BTreeSet<u64> = self.root.values_reachable().copied().collect();
        self.dirs.retain(|number, _| dirs.contains(number));
        let files: BTreeSet<u64> = self
            .dirs
            .values()
            .flat_map(|dir| dir.values_reachable().copied())
            .collect();
        self.files.retain(|number, _| files.contains(number));
    }

    /// A crash: each directory keeps its synced entries and a prefix of
    /// the changes since, each file its synced bytes and perhaps a torn
    /// prefix of the rest, all drawn from `draw`.
    fn crash(&mut self, draw: &mut SplitMix, report: &mut CrashReport) {
        let kept = draw_prefix(draw, self.root.unsynced.len());
        self.root.crash(kept);
        for dir in self.dirs.values_mut() {
            let kept = draw_prefix(draw, dir.unsynced.len());
            dir.crash(kept);
        }
        self.forget_unreachable();
        for file in self.files.values_mut() {
            tear(file, draw, report);
        }
    }
}

/// How many of `changes` unsynced changes a crash keeps: none, all, or
/// a prefix, a third of the time each.
fn draw_prefix(draw: &mut SplitMix, changes: usize) -> usize {
    if changes == 0 {
        return 0;
    }
    match draw.next() % 3 {
        0 => 0,
        1 => changes,
        _ => draw.below(changes as u64 + 1) as usize,
    }
}

/// Where a snapshot file lives, for messages.
fn snapshot_path(group: GroupId, name: &str) -> String {
    format!("page-cache disk snapshots/{group:020}/{name}")
}

/// The position a snapshot file's name stands for, if it is one
/// (`snapshot-<index:020>-<term:020>.snap`, as the real store names it).
fn position_of_name(name: &str) -> Option<LogPosition> {
    parse_file_name(name).filter(|position| snapshot_file_name(*position) == name)
}

/// A snapshot file's bytes, as the real store writes them: header, data,
/// configuration trailer (format version 2).
fn snapshot_file_bytes(snapshot: &Snapshot) -> Result<Vec<u8>, StorageError> {
    let trailer = membership_trailer(snapshot.membership.as_ref())?;
    let mut bytes = Vec::with_capacity(SNAPSHOT_HEADER_BYTES + snapshot.data.len() + trailer.len());
    bytes.extend_from_slice(&snapshot_header(snapshot));
    bytes.extend_from_slice(&snapshot.data);
    bytes.extend_from_slice(&trailer);
    Ok(bytes)
}

#[derive(Debug, Default)]
struct DiskState {
    segments: BTreeMap<u64, CachedFile>,
    snapshots: SnapshotTree,
    /// The durable marker as the page cache shows it (`None`: no file).
    marker: Option<Vec<u8>>,
    /// The durable marker's bytes on the platter.
    marker_durable: Option<Vec<u8>>,
    /// Operations (mutating ones) performed so far.
    operations: u64,
    /// Operations left before the fuse blows; `None`: never.
    fuse: Option<u64>,
    /// Snapshot-file operations left before the fuse blows; `None`: never.
    snapshot_fuse: Option<u64>,
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
    /// The next crash damages synced bytes (once).
    rot_at_next_crash: bool,
    /// The damage the last crash did to synced bytes, until taken.
    rot: Option<Rot>,
    /// What the platter holds while the disk lies: its durable state
    /// when it began to.
    frozen: Option<Frozen>,
    /// One-shot faults that struck: failed syncs, failed appends.
    struck: FaultsStruck,
    /// The planted mistake: a snapshot file is renamed (and its
    /// directory synced) before its contents are synced.
    #[cfg(feature = "planted-bugs")]
    planted_snapshot_rename_before_sync: bool,
}

/// A lying disk's platter: every file's durable bytes, the snapshot
/// files and the durable marker when it began to lie.
#[derive(Clone, Debug)]
struct Frozen {
    segments: BTreeMap<u64, Vec<u8>>,
    snapshots: SnapshotTree,
    marker: Option<Vec<u8>>,
}

/// One-shot faults of a [`PageCacheDisk`] that struck so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultsStruck {
    /// Segment syncs that failed with EIO.
    pub failed_syncs: u64,
    /// Appends that failed with ENOSPC.
    pub failed_appends: u64,
    /// Crashes that damaged synced bytes ([`PageCacheDisk::rot_at_next_crash`]).
    pub rots: u64,
}

/// Synced bytes a crash damaged ([`PageCacheDisk::rot_at_next_crash`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rot {
    /// The segment damaged.
    pub segment: u64,
    /// Where in it the damage starts.
    pub offset_bytes: u64,
    /// The bytes that were there ([`PageCacheDisk::repair`] puts them back).
    pub original: Vec<u8>,
}

/// Most bytes one rot damages.
const ROT_BYTES_MAX: u64 = 8;

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

    /// Lets `operations` more operations on snapshot files succeed (a
    /// snapshot's store is five: create, write, sync, rename, sync the
    /// directory); the next one fails, and so does every operation after
    /// it, of any kind, until [`crash`](Self::crash): a disk failing in
    /// the middle of a snapshot's store.
    pub fn set_snapshot_fuse(&self, operations: u64) {
        self.lock().snapshot_fuse = Some(operations);
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

    /// Makes the next [`crash`](Self::crash) damage a few synced bytes
    /// where every log must notice (see the [module documentation](self)),
    /// once; [`take_rot`](Self::take_rot) says where. A disk with no such
    /// byte (one segment, no marker past its header) is left whole.
    pub fn rot_at_next_crash(&self) {
        self.lock().rot_at_next_crash = true;
    }

    /// The damage the last crash did to synced bytes, if it did any
    /// (taken: asked again, `None`).
    pub fn take_rot(&self) -> Option<Rot> {
        self.lock().rot.take()
    }

    /// Puts back the bytes `rot` damaged (the operator restoring them).
    pub fn repair(&self, rot: &Rot) {
        let mut state = self.lock();
        let file = state
            .segments
            .get_mut(&rot.segment)
            .expect("a rotted segment is repaired before anything deletes it");
        let mut bytes = file.bytes();
        let start = rot.offset_bytes as usize;
        bytes[start..start + rot.original.len()].copy_from_slice(&rot.original);
        *file = CachedFile::durable(bytes);
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
                snapshots: state.snapshots.synced_image(),
                marker: state.marker_durable.clone(),
            });
        }
    }

    /// The planted mistake `snapshot-rename-before-sync` (`true`): the
    /// snapshot store renames a snapshot's temporary file to its final
    /// name and syncs the directory before it syncs the file's contents,
    /// so a crash in between leaves a named snapshot whose contents are
    /// torn. Survives crashes.
    #[cfg(feature = "planted-bugs")]
    #[doc(hidden)]
    pub fn set_planted_snapshot_rename_before_sync(&self, planted: bool) {
        self.lock().planted_snapshot_rename_before_sync = planted;
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
        let report = Self::crash_platter(&mut state, seed);
        if std::mem::take(&mut state.rot_at_next_crash) {
            // Its own stream: a crash draws as it did before rot existed.
            state.rot = rot(&mut state, &mut SplitMix(seed ^ 0x726f_7420_6661_756c));
            state.struck.rots += u64::from(state.rot.is_some());
        }
        report
    }

    /// [`crash`](Self::crash) but for rot.
    fn crash_platter(state: &mut DiskState, seed: u64) -> CrashReport {
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
            state.snapshot_fuse = None;
            state.blown = false;
            state.fail_next_sync = false;
            state.fail_next_append = false;
            return report;
        }
        for file in state.segments.values_mut() {
            tear(file, &mut draw, &mut report);
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
        // Drawn after the segments and the marker: a disk without
        // snapshots crashes as it did before they were files.
        state.snapshots.crash(&mut draw, &mut report);
        state.fuse = None;
        state.snapshot_fuse = None;
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

    /// Counts one mutating operation on a snapshot file or directory,
    /// failing it if either fuse blew.
    fn snapshot_operation(state: &mut DiskState, what: &str) -> Result<(), StorageError> {
        if !state.blown {
            if let Some(left) = state.snapshot_fuse.as_mut() {
                if *left == 0 {
                    state.blown = true;
                    return Err(crashed(what));
                }
                *left -= 1;
            }
        }
        PageCacheDisk::operation(state, what)
    }
}

/// Damages a few synced bytes of `state`'s segments where every log must
/// notice (see the [module documentation](PageCacheDisk)): what was
/// there, or `None` if there is no such byte.
fn rot(state: &mut DiskState, draw: &mut SplitMix) -> Option<Rot> {
    let newest = *state.segments.keys().next_back()?;
    let marker = state
        .marker_durable
        .as_deref()
        .and_then(|bytes| DurableMarker::decode(bytes).ok());
    let header = SEGMENT_HEADER_BYTES as u64;
    // (segment, end of the bytes a log must vouch for), each non-empty.
    let places: Vec<(u64, u64)> = state
        .segments
        .iter()
        .filter_map(|(number, file)| {
            let end = if *number != newest {
                file.len_bytes as u64
            } else {
                match marker {
                    Some(m) if m.segment == newest => m.offset_bytes.min(file.len_bytes as u64),
                    _ => 0,
                }
            };
            (end > header).then_some((*number, end))
        })
        .collect();
    if places.is_empty() {
        return None;
    }
    let (segment, end) = places[draw.below(places.len() as u64) as usize];
    let offset = header + draw.below(end - header);
    let len = (1 + draw.below(ROT_BYTES_MAX)).min(end - offset);
    let file = state.segments.get_mut(&segment).expect("listed above");
    let mut bytes = file.bytes();
    let range = offset as usize..(offset + len) as usize;
    let original = bytes[range.clone()].to_vec();
    for byte in &mut bytes[range] {
        *byte ^= 0xff;
    }
    *file = CachedFile::durable(bytes);
    Some(Rot {
        segment,
        offset_bytes: offset,
        original,
    })
}

/// A crash's effect on one file: it keeps its durable bytes and, drawn
/// from `draw`, a prefix of its unsynced ones, perhaps followed by zeros
/// or garbage; bytes whose writeback failed read as zeros.
fn tear(file: &mut CachedFile, draw: &mut SplitMix, report: &mut CrashReport) {
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

/// The file-system steps of the snapshot store, each one operation of
/// the disk (the fuse may fail it).
impl DiskState {
    /// Group `group`'s directory, made (and its entry synced) if missing,
    /// as `snapshot_store::ensure_group_dir` makes it.
    fn ensure_group_dir(&mut self, group: GroupId) -> Result<u64, StorageError> {
        if let Some(dir) = self.snapshots.dir_of(group) {
            return Ok(dir);
        }
        PageCacheDisk::snapshot_operation(self, "making a group's snapshot directory")?;
        let dir = self.snapshots.number();
        self.snapshots.dirs.insert(dir, Dir::default());
        self.snapshots.root.change(vec![(group, Some(dir))]);
        self.sync_snapshot_root()?;
        Ok(dir)
    }

    fn sync_snapshot_root(&mut self) -> Result<(), StorageError> {
        PageCacheDisk::snapshot_operation(self, "syncing the snapshot directory")?;
        self.syncs += 1;
        if !self.lying_sync {
            self.snapshots.root.sync();
            self.snapshots.forget_unreachable();
        }
        Ok(())
    }

    /// Creates (empty, replacing one of that name) file `name` in
    /// directory `dir`.
    fn create_snapshot_file(&mut self, dir: u64, name: &str) -> Result<u64, StorageError> {
        PageCacheDisk::snapshot_operation(self, "creating a snapshot file")?;
        let file = self.snapshots.number();
        self.snapshots.files.insert(file, CachedFile::default());
        self.dir_mut(dir)
            .change(vec![(name.to_string(), Some(file))]);
        Ok(file)
    }

    fn write_snapshot_file(&mut self, file: u64, bytes: Vec<u8>) -> Result<(), StorageError> {
        PageCacheDisk::snapshot_operation(self, "writing a snapshot file")?;
        let file = self
            .snapshots
            .files
            .get_mut(&file)
            .expect("a snapshot file being written exists");
        if file.len_bytes == 0 {
            // One buffer of its own size, not a segment's chunk.
            file.len_bytes = bytes.len();
            file.chunks = vec![bytes];
        } else {
            file.append(&bytes);
        }
        Ok(())
    }

    fn sync_snapshot_file(&mut self, file: u64) -> Result<(), StorageError> {
        PageCacheDisk::snapshot_operation(self, "syncing a snapshot file")?;
        self.syncs += 1;
        if !self.lying_sync {
            let file = self
                .snapshots
                .files
                .get_mut(&file)
                .expect("a snapshot file being synced exists");
            file.durable_bytes = file.len_bytes;
        }
        Ok(())
    }

    /// Renames `from` to `to` in directory `dir` (replacing a file named
    /// `to`), atomically.
    fn rename_snapshot_file(&mut self, dir: u64, from: &str, to: &str) -> Result<(), StorageError> {
        PageCacheDisk::snapshot_operation(self, "renaming a snapshot file")?;
        let directory = self.dir_mut(dir);
        let file = *directory
            .entries
            .get(from)
            .expect("a snapshot file being renamed exists");
        directory.change(vec![(from.to_string(), None), (to.to_string(), Some(file))]);
        Ok(())
    }

    fn remove_snapshot_file(&mut self, dir: u64, name: &str) -> Result<(), StorageError> {
        PageCacheDisk::snapshot_operation(self, "removing a snapshot file")?;
        self.dir_mut(dir).change(vec![(name.to_string(), None)]);
        Ok(())
    }

    fn sync_snapshot_dir(&mut self, dir: u64) -> Result<(), StorageError> {
        PageCacheDisk::snapshot_operation(self, "syncing a group's snapshot directory")?;
        self.syncs += 1;
        if !self.lying_sync {
            self.dir_mut(dir).sync();
            self.snapshots.forget_unreachable();
        }
        Ok(())
    }

    fn dir_mut(&mut self, dir: u64) -> &mut Dir<String, u64> {
        self.snapshots
            .dirs
            .get_mut(&dir)
            .expect("a group's snapshot directory in use exists")
    }

    /// Whether the planted snapshot mistake is on.
    fn planted_rename_before_sync(&self) -> bool {
        #[cfg(feature = "planted-bugs")]
        {
            self.planted_snapshot_rename_before_sync
        }
        #[cfg(not(feature = "planted-bugs"))]
        {
            false
        }
    }
}

/// The snapshot store on this disk: the steps of
/// [`DirSnapshots`](super::snapshot_store::DirSnapshots) on the disk's
/// directories and files (see the [module documentation](self)).
impl SnapshotStore for PageCacheDisk {
    fn store(
        &mut self,
        group: GroupId,
        snapshot: &Snapshot,
    ) -> Result<SnapshotReader, StorageError> {
        let bytes = snapshot_file_bytes(snapshot)?;
        let name = snapshot_file_name(snapshot.position);
        let temporary = format!("{name}.tmp");
        let mut state = self.lock();
        let dir = state.ensure_group_dir(group)?;
        let file = state.create_snapshot_file(dir, &temporary)?;
        state.write_snapshot_file(file, bytes)?;
        if state.planted_rename_before_sync() {
            // The planted mistake: named, durably, before its contents
            // are; a crash before the file's sync leaves the final name
            // on a torn file.
            state.rename_snapshot_file(dir, &temporary, &name)?;
            state.sync_snapshot_dir(dir)?;
            state.sync_snapshot_file(file)?;
        } else {
            state.sync_snapshot_file(file)?;
            state.rename_snapshot_file(dir, &temporary, &name)?;
            state.sync_snapshot_dir(dir)?;
        }
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

    /// As `snapshot_file::load_newest_snapshot`: leftover temporary files
    /// are removed (the directory synced), then the file of the highest
    /// position is verified.
    fn newest(&mut self, group: GroupId) -> Result<Option<SnapshotReader>, StorageError> {
        let mut state = self.lock();
        let Some(dir) = state.snapshots.dir_of(group) else {
            return Ok(None);
        };
        let leftovers: Vec<String> = state.snapshots.dirs[&dir]
            .entries
            .keys()
            .filter(|name| name.ends_with(".tmp"))
            .cloned()
            .collect();
        for name in &leftovers {
            tracing::info!(file = %snapshot_path(group, name), "removing a snapshot file left half-written by a crash");
            state.remove_snapshot_file(dir, name)?;
        }
        if !leftovers.is_empty() {
            state.sync_snapshot_dir(dir)?;
        }
        let newest = state.snapshots.dirs[&dir]
            .entries
            .iter()
            .filter_map(|(name, file)| position_of_name(name).map(|p| (p, name, *file)))
            .max();
        let Some((_, name, file)) = newest else {
            return Ok(None);
        };
        let bytes = state.snapshots.files[&file].bytes();
        let snapshot =
            parse_snapshot_bytes(name, &bytes).map_err(|reason| StorageError::CorruptSnapshot {
                file: snapshot_path(group, name),
                reason,
            })?;
        Ok(Some(SnapshotReader::from_memory(&snapshot)))
    }

    fn groups(&mut self) -> Result<Vec<GroupId>, StorageError> {
        Ok(self.lock().snapshots.root.entries.keys().copied().collect())
    }

    /// As `snapshot_file::delete_snapshots_before`: the older files
    /// removed, then the directory synced (if any was).
    fn delete_before(&mut self, group: GroupId, keep: LogPosition) -> Result<(), StorageError> {
        let mut state = self.lock();
        let Some(dir) = state.snapshots.dir_of(group) else {
            return Ok(());
        };
        let older: Vec<String> = state.snapshots.dirs[&dir]
            .entries
            .keys()
            .filter(|name| position_of_name(name).is_some_and(|p| p.index < keep.index))
            .cloned()
            .collect();
        for name in &older {
            state.remove_snapshot_file(dir, name)?;
        }
        if !older.is_empty() {
            state.sync_snapshot_dir(dir)?;
        }
        Ok(())
    }

    /// As [`DirSnapshots`](super::snapshot_store::DirSnapshots) does: every
    /// file of the group's directory removed, the directory removed, then
    /// the directory of the groups synced.
    fn remove_group(&mut self, group: GroupId) -> Result<(), StorageError> {
        let mut state = self.lock();
        let Some(dir) = state.snapshots.dir_of(group) else {
            return Ok(());
        };
        let names: Vec<String> = state.snapshots.dirs[&dir].entries.keys().cloned().collect();
        for name in &names {
            state.remove_snapshot_file(dir, name)?;
        }
        PageCacheDisk::snapshot_operation(&mut state, "removing a group's snapshot directory")?;
        state.snapshots.root.change(vec![(group, None)]);
        state.sync_snapshot_root()
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

    fn snapshot_at(index: u64, fill: u8) -> Snapshot {
        Snapshot::new(LogPosition::new(index, 2), vec![fill; 300].into())
            .with_membership(Some(Membership::new([1, 2, 3])))
    }

    /// Operations of storing a snapshot in a group's existing directory:
    /// create, write, sync, rename, sync the directory.
    const STORE_OPERATIONS: u64 = 5;

    /// A disk holding group 7's snapshot at index 10, durably (its
    /// directory made), and nothing pending.
    fn disk_with_a_snapshot() -> PageCacheDisk {
        let mut disk = PageCacheDisk::new();
        disk.store(7, &snapshot_at(10, 1)).unwrap();
        assert_eq!(disk.operations(), 2 + STORE_OPERATIONS);
        disk
    }

    /// What group 7's newest snapshot is after a crash: its index, or
    /// why it was refused.
    fn newest_index(disk: &mut PageCacheDisk) -> Result<Option<u64>, String> {
        match disk.newest(7) {
            Ok(reader) => Ok(reader.map(|reader| {
                let expected = snapshot_at(reader.meta().position.index, 0);
                assert_eq!(reader.membership(), expected.membership.as_ref());
                reader.meta().position.index
            })),
            Err(StorageError::CorruptSnapshot { file, reason }) => Err(format!("{file}: {reason}")),
            Err(other) => panic!("{other}"),
        }
    }

    /// The store's steps survive a crash at each of them, whatever the
    /// crash keeps: the newest snapshot is the old one or the whole new
    /// one (the new one once the store returned), never a torn file, and
    /// no temporary file stays.
    #[test]
    fn a_crash_at_any_step_of_a_store_leaves_the_old_snapshot_or_the_whole_new_one() {
        let mut seen = BTreeSet::new();
        for fuse in 0..=STORE_OPERATIONS {
            for seed in 0..60 {
                let mut disk = disk_with_a_snapshot();
                disk.set_fuse(fuse);
                let stored = disk.store(7, &snapshot_at(20, 2)).is_ok();
                assert_eq!(stored, fuse == STORE_OPERATIONS);
                disk.crash(seed);
                let newest = newest_index(&mut disk)
                    .unwrap_or_else(|e| panic!("fuse {fuse} seed {seed}: refused: {e}"));
                if stored {
                    assert_eq!(newest, Some(20), "fuse {fuse} seed {seed}");
                } else {
                    assert!(matches!(newest, Some(10 | 20)), "fuse {fuse} seed {seed}");
                }
                seen.insert((fuse, newest));
                let names: Vec<String> = {
                    let state = disk.lock();
                    let dir = state.snapshots.dir_of(7).unwrap();
                    state.snapshots.dirs[&dir].entries.keys().cloned().collect()
                };
                assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
                // Deleting the older one, crashing again: the newest stays.
                disk.delete_before(7, LogPosition::new(newest.unwrap(), 2))
                    .unwrap();
                disk.crash(seed + 1_000);
                assert_eq!(newest_index(&mut disk).unwrap(), newest);
            }
        }
        // A crash after the rename but before the directory's sync may
        // undo the rename (the old snapshot back) or keep it.
        let fuse = STORE_OPERATIONS - 1;
        assert!(seen.contains(&(fuse, Some(10))), "{seen:?}");
        assert!(seen.contains(&(fuse, Some(20))), "{seen:?}");
    }

    /// A rename is durable only once its directory is synced: a crash
    /// before that may bring the old names back.
    #[test]
    fn an_unsynced_rename_may_be_undone_by_a_crash() {
        let mut undone = 0;
        for seed in 0..60 {
            let disk = PageCacheDisk::new();
            let mut state = disk.lock();
            let dir = state.ensure_group_dir(3).unwrap();
            let file = state.create_snapshot_file(dir, "a.tmp").unwrap();
            state
                .write_snapshot_file(file, b"contents".to_vec())
                .unwrap();
            state.sync_snapshot_file(file).unwrap();
            state.sync_snapshot_dir(dir).unwrap();
            state.rename_snapshot_file(dir, "a.tmp", "a").unwrap();
            let mut draw = SplitMix(seed);
            let mut report = CrashReport::default();
            state.snapshots.crash(&mut draw, &mut report);
            let names: Vec<&String> = state.snapshots.dirs[&dir].entries.keys().collect();
            match names.as_slice() {
                [name] if *name == "a.tmp" => undone += 1,
                [name] if *name == "a" => {}
                other => panic!("seed {seed}: {other:?}"),
            }
            let file = state.snapshots.dirs[&dir].entries.values().next().unwrap();
            assert_eq!(state.snapshots.files[file].bytes(), b"contents");
        }
        assert!(undone > 10 && undone < 50, "{undone} of 60 undone");
    }

    /// Unsynced contents are torn by a crash like a segment's; a file
    /// named durably with contents never synced comes back short, zeroed
    /// or with garbage, and reading it refuses it naming the file.
    #[cfg(feature = "planted-bugs")]
    #[test]
    fn the_planted_rename_before_sync_leaves_a_torn_named_snapshot() {
        let mut refused = 0;
        for seed in 0..60 {
            let mut disk = disk_with_a_snapshot();
            disk.set_planted_snapshot_rename_before_sync(true);
            // Create, write, rename, sync the directory: the file's own
            // sync fails.
            disk.set_fuse(STORE_OPERATIONS - 1);
            assert!(disk.store(7, &snapshot_at(20, 2)).is_err());
            disk.crash(seed);
            match newest_index(&mut disk) {
                Err(reason) => {
                    assert!(
                        reason.starts_with(&snapshot_path(
                            7,
                            &snapshot_file_name(LogPosition::new(20, 2))
                        )),
                        "{reason}"
                    );
                    refused += 1;
                }
                // The crash happened to keep every byte and nothing more.
                Ok(newest) => assert_eq!(newest, Some(20), "seed {seed}"),
            }
            // The same crash under the correct order never refuses.
            let mut disk = disk_with_a_snapshot();
            disk.set_fuse(STORE_OPERATIONS - 1);
            assert!(disk.store(7, &snapshot_at(20, 2)).is_err());
            disk.crash(seed);
            assert!(newest_index(&mut disk).is_ok(), "seed {seed}");
        }
        assert!(refused > 30, "{refused} of 60 refused");
    }

    /// A damaged snapshot file is refused naming it, whatever is damaged.
    #[test]
    fn every_byte_of_a_snapshot_file_is_checked() {
        let snapshot = snapshot_at(20, 9);
        let bytes = snapshot_file_bytes(&snapshot).unwrap();
        let name = snapshot_file_name(snapshot.position);
        let read = parse_snapshot_bytes(&name, &bytes).unwrap();
        assert_eq!(read.meta(), snapshot.meta());
        assert_eq!(read.membership, snapshot.membership);
        for at in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x40;
            assert!(parse_snapshot_bytes(&name, &damaged).is_err(), "byte {at}");
        }
        for length in 0..bytes.len() {
            assert!(
                parse_snapshot_bytes(&name, &bytes[..length]).is_err(),
                "{length} bytes"
            );
        }
        let other = snapshot_file_name(LogPosition::new(21, 2));
        assert!(parse_snapshot_bytes(&other, &bytes).is_err());
    }

    /// Removing a group: gone once the directory of the groups is synced;
    /// a crash before that may bring some of it back, never a damaged file.
    #[test]
    fn a_removed_group_is_gone_once_synced_and_never_comes_back_damaged() {
        let mut disk = disk_with_a_snapshot();
        disk.remove_group(7).unwrap();
        disk.crash(1);
        assert!(disk.groups().unwrap().is_empty());
        let mut back = 0;
        for seed in 0..60 {
            let mut disk = disk_with_a_snapshot();
            disk.store(7, &snapshot_at(20, 2)).unwrap();
            // Two unlinks and the directory's removal; its sync fails.
            disk.set_fuse(3);
            assert!(disk.remove_group(7).is_err());
            disk.crash(seed);
            if disk.groups().unwrap() == vec![7] {
                back += 1;
                assert!(newest_index(&mut disk).is_ok(), "seed {seed}");
            }
        }
        assert!(back > 5, "{back} of 60 came back");
    }
}
