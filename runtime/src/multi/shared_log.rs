//! One write-ahead log for every group of a node (raft-engine's model):
//! every group's writes go into one sequence of segments as records tagged
//! by group, and each round of writes — typically one
//! [`PersistBatch`](concord::multi::PersistBatch) of the
//! [`MultiNode`](concord::multi::MultiNode), or several queued ones — is
//! made durable with one sync, whatever the number of groups in it.
//!
//! [`SharedLog`] is the synchronous core: [`open`](SharedLog::open)
//! recovers every group (see `replay.rs`), [`write`](SharedLog::write)
//! runs one round. [`WalThread`](super::log_sink::WalThread) runs it on
//! a thread of its own for a server; tests drive it directly on a
//! [`PageCacheDisk`](super::page_cache::PageCacheDisk) and crash it at
//! every write.
//!
//! ## Compaction
//!
//! Each group compacts on its own: a snapshot (taken, or received from a
//! leader) is stored as a file first, then recorded; the entries it covers
//! are no longer needed. A segment is deleted once no group needs it
//! (`pins.rs`), oldest first, never the one being written. An idle group
//! would keep its old records forever, so when more than
//! [`MultiWalOptions::segments_max`] segments are on disk, the groups
//! holding the oldest one back are moved on:
//!
//! * one that needs it only for its hard state or its snapshot record
//!   gets those (a few dozen bytes) written again into the current
//!   segment;
//! * one that needs entries in it is asked to snapshot (a forced
//!   snapshot, in [`RoundOutcome::force_snapshot`]; the host steps the
//!   group with [`Input::RequestSnapshot`](concord::Input::RequestSnapshot)),
//!   at most once per segment written.
//!
//! So the disk holds about `segments_max` segments plus what groups that
//! cannot snapshot (entries not yet applied) keep.
//!
//! ## Snapshots
//!
//! A group's snapshot is stored in its file (atomically, durably) before
//! the round's records are written, and the record naming it goes into
//! the round; a crash in between leaves a snapshot file the log does not
//! name, which recovery handles by log matching (`replay.rs`). Older
//! snapshot files of the group are deleted once the record is durable. At
//! open, a group whose recovered log ends at its snapshot, or whose
//! snapshot has no record, gets one written (as the single-group log
//! does): older records below the snapshot must not, replayed again, hide
//! or drop the entries appended after it from then on.
//!
//! ## The durable marker
//!
//! After every sync of a segment the log overwrites the durable marker
//! (`record.rs`) with "this segment is durable up to here", without
//! syncing it: written only after the data it describes is durable, it
//! never claims more than is, and if a power failure loses it the older
//! marker claims less. So recovery can tell fsynced data that was lost
//! (refused, see `replay.rs`) from a torn tail (cut). A new segment's
//! header is synced before the marker moves to it, so the marker always
//! names the current segment, which is never deleted; before deleting
//! any segment the log syncs the marker, so no marker on disk ever names
//! a deleted segment. Cost: one small write per round, and one marker
//! sync per round that deletes segments. With
//! [`MultiWalOptions::sync`] off there is no marker (one left from
//! earlier runs is deleted at open).

use std::collections::{BTreeMap, VecDeque};

use crate::storage::{ReceivedSnapshot, SnapshotReader, StorageError};
use concord::multi::GroupId;
use concord::{Entries, Entry, HardState, Index, LogPosition, Membership, Snapshot};

use super::pins::Pins;
use super::record::{self, DurableMarker, GroupRecordRef, SEGMENT_HEADER_BYTES};
use super::replay::{self, MultiRecovery};
use super::segment_files::SegmentFiles;
use super::snapshot_store::{self, SnapshotIntake, SnapshotStore};

/// Options of a [`SharedLog`].
#[derive(Clone, Debug)]
pub struct MultiWalOptions {
    /// Start a new segment once the current one reaches this size.
    pub segment_bytes_max: u64,
    /// Sync every round (turn off only for experiments: a crash may then
    /// lose acknowledged writes).
    pub sync: bool,
    /// When more segments than this are on disk, the groups holding the
    /// oldest one back are moved on (records written again, forced
    /// snapshots). At least 1.
    pub segments_max: usize,
    /// When recovery finds that data the durable marker names as synced
    /// is damaged or missing, truncate anyway (logging the loss at error
    /// level) instead of refusing to start: every group then rejoins with
    /// a log shorter than it may have acknowledged. Default: false.
    pub accept_data_loss: bool,
    /// Planted mistake for measuring the crash property test: when more
    /// than `segments_max` segments are on disk, the oldest is deleted
    /// even though a group still needs entries in it.
    #[cfg(feature = "planted-bugs")]
    #[doc(hidden)]
    pub planted_delete_needed_segment: bool,
    /// Planted mistake for measuring the crash property test: the durable
    /// marker is written before the sync it describes, not after.
    #[cfg(feature = "planted-bugs")]
    #[doc(hidden)]
    pub planted_marker_before_sync: bool,
    /// Planted mistake for the madsim sweep (`--bug ack-before-fsync`):
    /// a round is reported durable while its fsync waits for a later
    /// round (only every eighth round syncs), so a kill loses entries the
    /// node acknowledged.
    #[cfg(feature = "planted-bugs")]
    #[doc(hidden)]
    pub planted_ack_before_sync: bool,
    /// Planted mistake for the madsim sweep (`--bug replay-past-torn`):
    /// recovery skips a damaged record that a valid one follows and reads
    /// on, instead of refusing the log as corrupt (damage with a valid
    /// record after it is not a torn tail): a record in the middle of
    /// the log is dropped and the later ones are trusted.
    #[cfg(feature = "planted-bugs")]
    #[doc(hidden)]
    pub planted_replay_past_torn: bool,
    /// Planted mistake for the madsim sweep (`--bug retry-failed-fsync`):
    /// a segment sync that fails is tried again, and the round counts as
    /// durable if the second one succeeds. On Linux a failed fsync's
    /// pages may be dropped and a later fsync still succeed, so the round
    /// is acknowledged though it never reached the disk.
    #[cfg(feature = "planted-bugs")]
    #[doc(hidden)]
    pub planted_retry_failed_sync: bool,
}

impl Default for MultiWalOptions {
    /// 64 MiB segments, synced, at most about 8 of them.
    fn default() -> Self {
        MultiWalOptions {
            segment_bytes_max: 64 * 1024 * 1024,
            sync: true,
            segments_max: 8,
            accept_data_loss: false,
            #[cfg(feature = "planted-bugs")]
            planted_delete_needed_segment: false,
            #[cfg(feature = "planted-bugs")]
            planted_marker_before_sync: false,
            #[cfg(feature = "planted-bugs")]
            planted_ack_before_sync: false,
            #[cfg(feature = "planted-bugs")]
            planted_replay_past_torn: false,
            #[cfg(feature = "planted-bugs")]
            planted_retry_failed_sync: false,
        }
    }
}

/// One write of one group, in a round.
#[derive(Debug)]
pub enum WalWrite {
    /// An [`Action::Persist`](concord::Action::Persist) of the group: store
    /// the hard state, drop entries after `truncate_after`, append.
    Log {
        /// The group.
        group: GroupId,
        /// Term and vote to store, if changed.
        hard_state: Option<HardState>,
        /// Drop every entry after this index first.
        truncate_after: Option<Index>,
        /// Then append these.
        entries: Entries,
    },
    /// An [`Action::PersistSnapshot`](concord::Action::PersistSnapshot): the
    /// snapshot received from the leader (its bytes and the configuration
    /// the leader sent).
    Installed {
        /// The group.
        group: GroupId,
        /// The snapshot.
        snapshot: Snapshot,
        /// Drop every log entry, not only those the snapshot covers.
        discard_log: bool,
    },
    /// An [`Action::PersistSnapshot`](concord::Action::PersistSnapshot) of a
    /// snapshot received into a sink of the store's
    /// [`SnapshotIntake`] (in
    /// memory or in a file): stored as it is, without a copy in memory.
    Received {
        /// The group.
        group: GroupId,
        /// The snapshot's bytes, as received.
        received: ReceivedSnapshot,
        /// The configuration in force at its last entry.
        membership: Membership,
        /// Drop every log entry, not only those the snapshot covers.
        discard_log: bool,
    },
    /// A snapshot of the group's own state machine
    /// ([`Action::TakeSnapshot`](concord::Action::TakeSnapshot)); its
    /// reader comes back in [`RoundOutcome::taken`] once durable.
    Taken {
        /// The group.
        group: GroupId,
        /// The snapshot.
        snapshot: Snapshot,
    },
    /// A snapshot of the group's own state machine streamed from its view
    /// into a sink of the store's [`SnapshotIntake`] off the loop; its
    /// reader comes back in [`RoundOutcome::taken`] once durable, like
    /// [`WalWrite::Taken`]'s.
    Streamed {
        /// The group.
        group: GroupId,
        /// The snapshot's bytes, as streamed.
        received: ReceivedSnapshot,
        /// The configuration in force at its last entry.
        membership: Membership,
    },
    /// The group no longer lives here: every record and snapshot of it is
    /// void.
    Remove {
        /// The group.
        group: GroupId,
    },
}

/// What a round did, for the host.
#[derive(Debug, Default)]
pub struct RoundOutcome {
    /// The groups' own snapshots of this round, durable: report each with
    /// [`Input::Snapshotted`](concord::Input::Snapshotted) (one not newer
    /// than the stored one was not written; its reader reads memory).
    pub taken: Vec<(GroupId, SnapshotReader)>,
    /// Groups holding back the deletion of the oldest segment with
    /// entries: step each with
    /// [`Input::RequestSnapshot`](concord::Input::RequestSnapshot).
    pub force_snapshot: Vec<GroupId>,
}

/// Counters of a [`SharedLog`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Rounds written.
    pub rounds: u64,
    /// Syncs of segment data (one per round with records, plus one per
    /// rewrite and per new segment's header).
    pub syncs: u64,
    /// Record bytes written.
    pub bytes_written: u64,
    /// Segments started.
    pub segments_created: u64,
    /// Segments deleted.
    pub segments_deleted: u64,
    /// Hard-state and snapshot records written again to free a segment.
    pub records_rewritten: u64,
    /// Forced snapshots asked for.
    pub forced_snapshots_asked: u64,
    /// Segments on disk now (a gauge, not a counter).
    pub segments_on_disk: u64,
}

/// The shared log (see the [module documentation](self)).
#[derive(Debug)]
pub struct SharedLog<S, T> {
    segments: S,
    snapshots: T,
    options: MultiWalOptions,
    /// Segments on disk, ascending; the last is the current one.
    on_disk: VecDeque<u64>,
    current_bytes: u64,
    pins: Pins,
    buf: Vec<u8>,
    stats: LogStats,
    /// The durable marker on disk is the last one written (synced since).
    marker_synced: bool,
}

impl<S: SegmentFiles, T: SnapshotStore> SharedLog<S, T> {
    /// Recovers every group from `segments` and `snapshots` (see
    /// `replay.rs` for the rules) and readies the log for writing.
    pub fn open(
        mut segments: S,
        mut snapshots: T,
        options: MultiWalOptions,
    ) -> Result<(Self, MultiRecovery), StorageError> {
        if options.segments_max == 0 || options.segment_bytes_max == 0 {
            return Err(StorageError::Misuse(
                "MultiWalOptions::segments_max and segment_bytes_max must be at least 1"
                    .to_string(),
            ));
        }
        #[cfg(feature = "planted-bugs")]
        let past_torn = options.planted_replay_past_torn;
        #[cfg(not(feature = "planted-bugs"))]
        let past_torn = false;
        let replayed = replay::replay_with(
            &mut segments,
            &mut snapshots,
            options.accept_data_loss,
            past_torn,
        )?;
        if !options.sync {
            // Nothing will be durable: a marker left from a synced run
            // could name a segment this run deletes.
            segments.remove_marker()?;
        }
        let recovery = replayed.recovery;
        let mut log = SharedLog {
            segments,
            snapshots,
            options,
            on_disk: replayed.segments.into_iter().collect(),
            current_bytes: replayed.last_segment_bytes,
            pins: replayed.pins,
            buf: Vec::new(),
            stats: LogStats::default(),
            marker_synced: true,
        };
        match log.on_disk.back().copied() {
            None => log.start_segment(1)?,
            Some(number) if log.current_bytes == 0 => {
                // Created, or torn before its header was whole.
                log.write_header(number)?;
            }
            Some(number) => {
                if log.options.sync {
                    // The marker on disk may name an older segment (a crash
                    // can keep the previous marker), which this run may
                    // delete: make the current segment durable as read and
                    // move the marker to it, so the deletion rule (sync the
                    // marker first) covers it.
                    log.segments.sync(number)?;
                    log.stats.syncs += 1;
                    log.mark_durable(number, log.current_bytes)?;
                }
            }
        }
        // Snapshots the log must name again (see the module documentation).
        let mut marks = Vec::new();
        for (group, found) in &recovery.groups {
            let base = found.recovered.base;
            let named = log
                .pins
                .get(*group)
                .is_some_and(|track| track.snapshot_record == Some(base));
            if base.index > 0 && (found.recovered.entries.is_empty() || !named) {
                marks.push((*group, base, found.recovered.entries.is_empty()));
            }
        }
        if !marks.is_empty() {
            log.buf.clear();
            let segment = log.current();
            for (group, position, discard_log) in marks {
                log.record_snapshot(group, position, discard_log, segment)?;
            }
            log.flush_buf()?;
        }
        log.check();
        Ok((log, recovery))
    }

    fn current(&self) -> u64 {
        *self
            .on_disk
            .back()
            .expect("the log always has a current segment")
    }

    /// Counters.
    pub fn stats(&self) -> LogStats {
        LogStats {
            segments_on_disk: self.on_disk.len() as u64,
            ..self.stats
        }
    }

    /// Segments on disk.
    pub fn segments_on_disk(&self) -> usize {
        self.on_disk.len()
    }

    /// Where the host receives groups' snapshots for this log's store.
    pub fn snapshot_intake(&self) -> SnapshotIntake {
        self.snapshots.intake()
    }

    /// The disk's segment files (a test looks at them).
    pub fn segment_files(&self) -> &S {
        &self.segments
    }

    /// Writes one round: every write's records in order, one sync, then
    /// the compaction that frees (see the [module documentation](self)).
    /// An error leaves the log unusable: the node must stop (nothing is
    /// reported durable that may not be).
    pub fn write(
        &mut self,
        writes: impl IntoIterator<Item = WalWrite>,
    ) -> Result<RoundOutcome, StorageError> {
        self.stats.rounds += 1;
        self.buf.clear();
        let segment = self.current();
        let mut outcome = RoundOutcome::default();
        let mut stored: BTreeMap<GroupId, LogPosition> = BTreeMap::new();
        let mut removed = Vec::new();
        let mut entries_written = 0u64;
        for write in writes {
            match write {
                WalWrite::Log {
                    group,
                    hard_state,
                    truncate_after,
                    entries,
                } => {
                    // Hard state first: no prefix of the log may hold
                    // entries of a term its hard state does not know.
                    if let Some(hard_state) = hard_state {
                        let known = self.pins.get(group).map(|t| t.hard_state.term);
                        assert!(
                            known.is_none_or(|term| term <= hard_state.term),
                            "group {group}'s term goes back to {}",
                            hard_state.term
                        );
                        record::encode(
                            &GroupRecordRef::HardState { group, hard_state },
                            &mut self.buf,
                        )?;
                        self.pins
                            .update(group, |track| track.note_hard_state(hard_state, segment));
                    }
                    if let Some(after) = truncate_after {
                        record::encode(&GroupRecordRef::Truncate { group, after }, &mut self.buf)?;
                        self.pins.update(group, |track| track.note_truncate(after));
                    }
                    if let (Some(first), Some(last)) = (entries.first(), entries.last()) {
                        entries_written += entries.len() as u64;
                        let (first, last) = (first.index, last.index);
                        assert_eq!(
                            last - first + 1,
                            entries.len() as u64,
                            "group {group} appends entries that are not contiguous"
                        );
                        // Records of a bounded size: a write may be a
                        // group's whole log (written again to free a
                        // segment), far past what one record holds.
                        for entries in append_records(&entries) {
                            record::encode(
                                &GroupRecordRef::Append { group, entries },
                                &mut self.buf,
                            )?;
                        }
                        self.pins
                            .update(group, |track| track.note_append(first, last, segment));
                    }
                }
                WalWrite::Installed {
                    group,
                    snapshot,
                    discard_log,
                } => {
                    let position = snapshot.position;
                    if self.is_newer(group, position, &stored) {
                        // The file is durable before the record naming it.
                        self.snapshots.store(group, &snapshot)?;
                        stored.insert(group, position);
                        self.record_snapshot(group, position, discard_log, segment)?;
                    }
                }
                WalWrite::Received {
                    group,
                    received,
                    membership,
                    discard_log,
                } => {
                    let position = received.meta().position;
                    if self.is_newer(group, position, &stored) {
                        self.snapshots.store_received(group, received, membership)?;
                        stored.insert(group, position);
                        self.record_snapshot(group, position, discard_log, segment)?;
                    } else {
                        snapshot_store::discard_received(received);
                    }
                }
                WalWrite::Taken { group, snapshot } => {
                    let position = snapshot.position;
                    let reader = if self.is_newer(group, position, &stored) {
                        let reader = self.snapshots.store(group, &snapshot)?;
                        stored.insert(group, position);
                        self.record_snapshot(group, position, false, segment)?;
                        reader
                    } else {
                        SnapshotReader::from_memory(&snapshot)
                    };
                    outcome.taken.push((group, reader));
                }
                WalWrite::Streamed {
                    group,
                    received,
                    membership,
                } => {
                    let position = received.meta().position;
                    let reader = if self.is_newer(group, position, &stored) {
                        let reader = self.snapshots.store_received(group, received, membership)?;
                        stored.insert(group, position);
                        self.record_snapshot(group, position, false, segment)?;
                        reader
                    } else {
                        // Reported all the same (the node counts it stale);
                        // the file goes, its reader reads what is open.
                        let reader = received.reader(Some(membership));
                        snapshot_store::discard_received(received);
                        reader
                    };
                    outcome.taken.push((group, reader));
                }
                WalWrite::Remove { group } => {
                    record::encode(&GroupRecordRef::Removed { group }, &mut self.buf)?;
                    self.pins.remove(group);
                    stored.remove(&group);
                    removed.push(group);
                }
            }
        }
        let round_bytes = self.buf.len();
        let synced = self.flush_buf()?;
        if synced {
            crate::metrics::multi::shared_wal_round(entries_written, round_bytes as u64);
        }
        // Durable: what the round made obsolete can go.
        for group in removed {
            self.snapshots.remove_group(group)?;
        }
        for (group, position) in stored {
            self.snapshots.delete_before(group, position)?;
        }
        if self.current_bytes >= self.options.segment_bytes_max {
            self.start_segment(self.current() + 1)?;
        }
        self.compact(&mut outcome)?;
        self.check();
        Ok(outcome)
    }

    /// Whether a snapshot of `group` at `position` is newer than the one
    /// stored (or stored earlier in this round).
    fn is_newer(
        &self,
        group: GroupId,
        position: LogPosition,
        stored: &BTreeMap<GroupId, LogPosition>,
    ) -> bool {
        let known = stored
            .get(&group)
            .copied()
            .or_else(|| self.pins.get(group).map(|track| track.snapshot))
            .unwrap_or(LogPosition::ZERO);
        position.index > known.index
    }

    fn record_snapshot(
        &mut self,
        group: GroupId,
        position: LogPosition,
        discard_log: bool,
        segment: u64,
    ) -> Result<(), StorageError> {
        record::encode(
            &GroupRecordRef::Snapshot {
                group,
                position,
                discard_log,
            },
            &mut self.buf,
        )?;
        self.pins.update(group, |track| {
            track.note_snapshot(position, discard_log, segment)
        });
        Ok(())
    }

    /// Appends the buffered records to the current segment and syncs;
    /// whether it synced.
    fn flush_buf(&mut self) -> Result<bool, StorageError> {
        if self.buf.is_empty() {
            return Ok(false);
        }
        let segment = self.current();
        self.segments.append(segment, &self.buf)?;
        self.current_bytes += self.buf.len() as u64;
        self.stats.bytes_written += self.buf.len() as u64;
        if self.options.sync && self.planted_sync_skipped() {
            self.buf.clear();
            return Ok(true);
        }
        if self.options.sync {
            if self.planted_marker_first() {
                self.mark_durable(segment, self.current_bytes)?;
            }
            let started = self.segments.sync_waits().then(std::time::Instant::now);
            if let Err(e) = self.segments.sync(segment) {
                if !self.planted_retry_sync() {
                    return Err(e);
                }
                // The planted mistake: try again, and trust it.
                self.segments.sync(segment)?;
            }
            if let Some(started) = started {
                crate::metrics::wal_fsync(started.elapsed());
            }
            self.stats.syncs += 1;
            self.mark_durable(segment, self.current_bytes)?;
        }
        self.buf.clear();
        Ok(self.options.sync)
    }

    /// Records that segment `segment` is durable up to `offset_bytes`
    /// (called right after its sync; see the module documentation).
    fn mark_durable(&mut self, segment: u64, offset_bytes: u64) -> Result<(), StorageError> {
        debug_assert_eq!(segment, self.current());
        let marker = DurableMarker {
            segment,
            offset_bytes,
        };
        self.segments.write_marker(&marker.encode())?;
        self.marker_synced = false;
        Ok(())
    }

    fn start_segment(&mut self, number: u64) -> Result<(), StorageError> {
        assert!(
            self.on_disk.back().is_none_or(|last| *last + 1 == number),
            "segments are numbered without gaps"
        );
        self.segments.create(number)?;
        self.on_disk.push_back(number);
        self.stats.segments_created += 1;
        self.write_header(number)
    }

    fn write_header(&mut self, number: u64) -> Result<(), StorageError> {
        self.segments.append(number, &record::segment_header())?;
        self.segments.sync(number)?;
        self.stats.syncs += 1;
        self.current_bytes = SEGMENT_HEADER_BYTES as u64;
        if self.options.sync {
            self.mark_durable(number, self.current_bytes)?;
        }
        Ok(())
    }

    /// Whether the planted marker mistake is on.
    fn planted_marker_first(&self) -> bool {
        #[cfg(feature = "planted-bugs")]
        {
            self.options.planted_marker_before_sync
        }
        #[cfg(not(feature = "planted-bugs"))]
        {
            false
        }
    }

    /// Whether the planted acknowledgement mistake skips this round's
    /// sync (all but every eighth round).
    fn planted_sync_skipped(&self) -> bool {
        #[cfg(feature = "planted-bugs")]
        {
            self.options.planted_ack_before_sync && self.stats.rounds % 8 != 0
        }
        #[cfg(not(feature = "planted-bugs"))]
        {
            false
        }
    }

    /// Whether the planted mistake of retrying a failed sync is on.
    fn planted_retry_sync(&self) -> bool {
        #[cfg(feature = "planted-bugs")]
        {
            self.options.planted_retry_failed_sync
        }
        #[cfg(not(feature = "planted-bugs"))]
        {
            false
        }
    }

    /// Whether the planted deletion mistake is on.
    fn planted(&self) -> bool {
        #[cfg(feature = "planted-bugs")]
        {
            self.options.planted_delete_needed_segment
        }
        #[cfg(not(feature = "planted-bugs"))]
        {
            false
        }
    }

    /// Deletes the segments no group needs, oldest first; when too many
    /// remain, moves on the groups holding the oldest back.
    fn compact(&mut self, outcome: &mut RoundOutcome) -> Result<(), StorageError> {
        self.delete_unneeded()?;
        if self.on_disk.len() <= self.options.segments_max {
            return Ok(());
        }
        let oldest = self.on_disk[0];
        let current = self.current();
        self.buf.clear();
        let mut rewritten = 0;
        for group in self.pins.pinning(oldest) {
            let track = self.pins.get(group).expect("a pinning group is tracked");
            if track.entries_pin().is_some_and(|segment| segment <= oldest) {
                if track.forced_at_segment.is_none_or(|at| at < current) {
                    self.pins
                        .update(group, |track| track.forced_at_segment = Some(current));
                    outcome.force_snapshot.push(group);
                    self.stats.forced_snapshots_asked += 1;
                }
                continue;
            }
            // Only its hard state or snapshot record: write them again.
            let (hard_state, snapshot) = (track.hard_state, track.snapshot);
            if track.hard_state_segment.is_some() {
                record::encode(
                    &GroupRecordRef::HardState { group, hard_state },
                    &mut self.buf,
                )?;
                rewritten += 1;
            }
            if track.snapshot_record_segment.is_some() {
                // The snapshot record naming the group's base: its entries
                // after it continue it (the first record naming it is in a
                // segment at least as old, deleted only now).
                record::encode(
                    &GroupRecordRef::Snapshot {
                        group,
                        position: snapshot,
                        discard_log: false,
                    },
                    &mut self.buf,
                )?;
                rewritten += 1;
            }
            self.pins.update(group, |track| {
                if track.hard_state_segment.is_some() {
                    track.hard_state_segment = Some(current);
                }
                if track.snapshot_record_segment.is_some() {
                    track.snapshot_record_segment = Some(current);
                    track.snapshot_record = Some(snapshot);
                }
            });
        }
        self.stats.records_rewritten += rewritten;
        self.flush_buf()?;
        self.delete_unneeded()
    }

    /// Deletes the oldest segments while no group needs them.
    fn delete_unneeded(&mut self) -> Result<(), StorageError> {
        while self.on_disk.len() > 1 {
            let oldest = self.on_disk[0];
            let needed = self.pins.oldest_pinned().is_some_and(|pin| pin <= oldest);
            let overrun = self.planted() && self.on_disk.len() > self.options.segments_max;
            if needed && !overrun {
                break;
            }
            if !self.planted() {
                assert!(
                    self.pins.oldest_pinned().is_none_or(|pin| pin > oldest),
                    "deleting segment {oldest}, which a group still needs"
                );
            }
            if self.options.sync && !self.marker_synced {
                // The marker on disk must name a segment that stays.
                self.segments.sync_marker()?;
                self.stats.syncs += 1;
                self.marker_synced = true;
            }
            self.segments.remove(oldest)?;
            self.on_disk.pop_front();
            self.stats.segments_deleted += 1;
        }
        Ok(())
    }

    /// Invariants between rounds: the pin index is consistent (walked in
    /// debug builds with few groups), and no group needs a deleted
    /// segment.
    fn check(&self) {
        assert!(!self.on_disk.is_empty());
        assert!(self.current_bytes >= SEGMENT_HEADER_BYTES as u64);
        if !self.planted() {
            assert!(self
                .pins
                .oldest_pinned()
                .is_none_or(|pin| pin >= self.on_disk[0]));
        }
        if cfg!(debug_assertions) && self.pins.len() <= 256 {
            self.pins.check();
        }
    }
}

/// Bytes of entries one append record holds at most, unless a single
/// entry is larger (a quarter of [`crate::wal::RECORD_BYTES_MAX`]: room
/// for each entry's framing).
const APPEND_RECORD_BYTES_MAX: usize = crate::wal::RECORD_BYTES_MAX / 4;

/// `entries` cut into runs of at most [`APPEND_RECORD_BYTES_MAX`] bytes
/// each (a longer entry alone), in order.
fn append_records(entries: &[Entry]) -> impl Iterator<Item = &[Entry]> {
    let mut rest = entries;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut bytes = 0;
        let mut count = 0;
        for entry in rest {
            bytes += entry.size_bytes();
            if count > 0 && bytes > APPEND_RECORD_BYTES_MAX {
                break;
            }
            count += 1;
        }
        let (run, after) = rest.split_at(count);
        rest = after;
        Some(run)
    })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use concord::EntryPayload;

    use super::*;

    fn entry(index: Index, bytes: usize) -> Entry {
        Entry {
            term: 1,
            index,
            payload: EntryPayload::Command(Bytes::from(vec![7; bytes])),
        }
    }

    #[test]
    fn a_long_append_is_cut_into_records_that_fit() {
        let entries: Vec<Entry> = (1..=200).map(|i| entry(i, 1 << 20)).collect();
        let runs: Vec<&[Entry]> = append_records(&entries).collect();
        assert!(runs.len() >= 200 / 16, "{} runs", runs.len());
        let mut next = 1;
        for run in &runs {
            assert_eq!(run[0].index, next, "runs are contiguous and in order");
            next = run.last().unwrap().index + 1;
            let bytes: usize = run.iter().map(Entry::size_bytes).sum();
            assert!(bytes <= APPEND_RECORD_BYTES_MAX, "{bytes}");
            let mut out = Vec::new();
            record::encode(
                &GroupRecordRef::Append {
                    group: 1,
                    entries: run,
                },
                &mut out,
            )
            .expect("a run fits one record");
        }
        assert_eq!(next, 201);
        // An entry past the bound goes alone; an empty write is no record.
        let big = [entry(1, APPEND_RECORD_BYTES_MAX + 1), entry(2, 1)];
        let runs: Vec<usize> = append_records(&big).map(<[Entry]>::len).collect();
        assert_eq!(runs, vec![1, 1]);
        assert_eq!(append_records(&[]).count(), 0);
    }
}
