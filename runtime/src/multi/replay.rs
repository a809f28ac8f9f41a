//! Recovery of the shared log: every segment read in order, every record
//! replayed into its group's log, under the single-group log's rules.
//!
//! * **Torn tail.** Damage in the last segment with no valid record after
//!   it (a crash in the middle of an append, zero-filled or garbage blocks)
//!   is cut off, durably, and counted.
//! * **Corruption.** Damage followed by a valid record, damage in a segment
//!   that is not the last, a missing segment number, a record that passes
//!   its checksum but does not decode, or a record that does not fit its
//!   group's log (a gap in indices, a snapshot record newer than the
//!   group's newest snapshot file, entries of a term newer than the
//!   group's hard state) refuses to start with
//!   [`StorageError::Corrupt`], naming the file, the byte offset and, when
//!   the record could be read, the group.
//! * **Lost durable data.** The durable marker (`record.rs`) names a
//!   segment and an offset up to which everything was synced. A torn
//!   tail that starts before it, a marked segment shorter than it, or a
//!   marked segment that is missing means data that was fsynced — and
//!   may have been acknowledged — is gone: recovery refuses with
//!   [`StorageError::SharedLogDataLost`]. With
//!   [`MultiWalOptions::accept_data_loss`](super::shared_log::MultiWalOptions::accept_data_loss)
//!   it logs the loss at error, deletes the marker (durably, before
//!   anything is cut) and goes on by the torn-tail rule. A marker that
//!   cannot be decoded is logged and ignored: it is evidence, not data.
//!
//! Each group's log is rebuilt from its newest snapshot file on
//! ([`GroupLog`]): entries the snapshot covers are dropped, and the entries
//! after it are kept only if the log holds the snapshot's last entry (log
//! matching). Unlike the single-group log's replay, a group's history
//! below its snapshot may have been deleted (segments go once no group
//! needs them), so only the entries after the snapshot must be
//! contiguous: a gap there is corruption (a segment a group needed is
//! gone).

use std::collections::{BTreeMap, BTreeSet};

use crate::codec;
use crate::storage::{SnapshotReader, StorageError};
use crate::wal::{self, RECORD_BYTES_MAX, RECORD_HEADER_BYTES};
use concord::multi::GroupId;
use concord::{Entry, HardState, Index, LogPosition, Recovered, Term};

use super::pins::{GroupTrack, Pins};
use super::record::{self, DurableMarker, GroupRecord, SEGMENT_HEADER_BYTES};
use super::segment_files::SegmentFiles;
use super::snapshot_store::SnapshotStore;

/// What recovery found for one group.
#[derive(Debug)]
pub struct RecoveredGroup {
    /// The group's durable state, to hand to
    /// [`MultiNode::create_group`](concord::multi::MultiNode::create_group).
    pub recovered: Recovered,
    /// A reader of the group's newest snapshot (verified), whose position
    /// is `recovered.base`: restore the state machine from it and report
    /// it to the group with [`Input::Snapshotted`](concord::Input::Snapshotted).
    pub snapshot: Option<SnapshotReader>,
    /// Entries dropped after the snapshot because the log did not hold the
    /// snapshot's last entry (a crash between storing a snapshot received
    /// from a leader and recording it).
    pub entries_dropped_after_snapshot: u64,
}

/// What recovery of a shared log found.
#[derive(Debug, Default)]
pub struct MultiRecovery {
    /// Every group with durable state, by id. A group the host hosts that
    /// is not here starts from `Recovered::default()`.
    pub groups: BTreeMap<GroupId, RecoveredGroup>,
    /// Groups whose removal is recorded (their ids are never used again).
    pub removed: BTreeSet<GroupId>,
    /// Segments read.
    pub segments: usize,
    /// Records replayed.
    pub records: u64,
    /// Bytes cut off the end of the last segment (a torn tail).
    pub torn_bytes_truncated: u64,
    /// The durable marker found, if a valid one was.
    pub durable_marker: Option<DurableMarker>,
    /// Marked-durable bytes found missing or damaged and dropped because
    /// data loss was accepted (0 otherwise).
    pub lost_durable_bytes: u64,
}

impl MultiRecovery {
    /// Whether some group's log or snapshot holds a configuration: the
    /// server was a member already (a node that joined holds the catalog's
    /// log at least), so its replicated configuration is in force, whatever
    /// its start flags (`--join`) say.
    pub fn holds_configuration(&self) -> bool {
        self.groups.values().any(|group| {
            !group.recovered.entries.is_empty() || group.recovered.membership.is_some()
        })
    }
}

/// One group during replay.
struct GroupReplay {
    log: GroupLog,
    hard_state: HardState,
    snapshot: Option<SnapshotReader>,
}

/// Recovery's result together with what the writer continues from.
pub(crate) struct Replayed {
    pub(crate) recovery: MultiRecovery,
    pub(crate) pins: Pins,
    /// Segments on disk, ascending (the last one cut to its valid bytes).
    pub(crate) segments: Vec<u64>,
    /// Valid bytes of the last segment.
    pub(crate) last_segment_bytes: u64,
}

/// The durable marker of `segments`, if there is a valid one (a damaged
/// one is logged and ignored).
fn read_marker<S: SegmentFiles>(segments: &mut S) -> Result<Option<DurableMarker>, StorageError> {
    let Some(bytes) = segments.read_marker()? else {
        return Ok(None);
    };
    if bytes.is_empty() {
        // Created, never written: a crash right after the first open.
        return Ok(None);
    }
    match DurableMarker::decode(&bytes) {
        Ok(marker) => Ok(Some(marker)),
        Err(reason) => {
            tracing::warn!(
                file = %segments.describe_marker(),
                %reason,
                "damaged durable marker of the shared write-ahead log; ignoring it (recovery \
                 falls back to the torn-tail rule)"
            );
            Ok(None)
        }
    }
}

/// What recovery does when the marked-durable data is not all there.
struct MarkerCheck {
    marker: Option<DurableMarker>,
    accept_data_loss: bool,
    lost_bytes: u64,
}

impl MarkerCheck {
    /// Segment `number` (named `file`) holds valid bytes up to `valid_bytes`
    /// only: an error if the marker says more of it was durable, unless
    /// the loss is accepted (then the marker goes, durably).
    fn check<S: SegmentFiles>(
        &mut self,
        segments: &mut S,
        number: u64,
        valid_bytes: u64,
        reason: impl FnOnce() -> String,
    ) -> Result<(), StorageError> {
        let Some(marker) = self.marker else {
            return Ok(());
        };
        if marker.segment != number || valid_bytes >= marker.offset_bytes {
            return Ok(());
        }
        let file = segments.describe(number);
        let reason = reason();
        let lost_bytes = marker.offset_bytes - valid_bytes;
        if !self.accept_data_loss {
            return Err(StorageError::SharedLogDataLost {
                file,
                offset: valid_bytes,
                reason,
                durable_offset: marker.offset_bytes,
                lost_bytes,
            });
        }
        tracing::error!(
            file = %file,
            offset = valid_bytes,
            durable_offset = marker.offset_bytes,
            lost_bytes,
            reason = %reason,
            "ACCEPTING DATA LOSS (accept_data_loss is set): the shared write-ahead log lost \
             {lost_bytes} bytes that had been fsynced and may have been acknowledged by any \
             group; truncating and continuing with shorter logs"
        );
        // The marker over-claims now: it goes, durably, before anything is
        // cut, so that it never describes the shorter files.
        segments.remove_marker()?;
        self.marker = None;
        self.lost_bytes += lost_bytes;
        Ok(())
    }
}

/// Reads every segment and snapshot back (see the [module documentation](self)).
pub(crate) fn replay<S: SegmentFiles, T: SnapshotStore>(
    segments: &mut S,
    snapshots: &mut T,
    accept_data_loss: bool,
) -> Result<Replayed, StorageError> {
    replay_with(segments, snapshots, accept_data_loss, false)
}

/// [`replay`]; with `planted_past_torn` (a planted mistake, see
/// [`MultiWalOptions::planted_replay_past_torn`](super::shared_log::MultiWalOptions))
/// damage followed by a valid record is skipped instead of refused, and
/// reading goes on from that record.
pub(crate) fn replay_with<S: SegmentFiles, T: SnapshotStore>(
    segments: &mut S,
    snapshots: &mut T,
    accept_data_loss: bool,
    planted_past_torn: bool,
) -> Result<Replayed, StorageError> {
    let numbers = segments.list()?;
    let durable_marker = read_marker(segments)?;
    let mut marker = MarkerCheck {
        marker: durable_marker,
        accept_data_loss,
        lost_bytes: 0,
    };
    if let Some(m) = durable_marker {
        if !numbers.contains(&m.segment) {
            let listed = match (numbers.first(), numbers.last()) {
                (Some(first), Some(last)) => format!("segments {first} to {last} are present"),
                _ => "no segment is present".to_string(),
            };
            marker.check(segments, m.segment, 0, || {
                format!("the segment the durable marker names is missing ({listed})")
            })?;
        }
    }
    // Deleting segments never leaves a gap: the oldest go first.
    for pair in numbers.windows(2) {
        if pair[1] != pair[0] + 1 {
            return Err(StorageError::Corrupt {
                file: segments.describe(pair[1]),
                offset: 0,
                reason: format!(
                    "segment {} is missing (found {} and then {})",
                    pair[0] + 1,
                    pair[0],
                    pair[1]
                ),
            });
        }
    }
    let mut groups: BTreeMap<GroupId, GroupReplay> = BTreeMap::new();
    let mut pins = Pins::default();
    let mut removed = BTreeSet::new();
    for group in snapshots.groups()? {
        if let Some(snapshot) = snapshots.newest(group)? {
            let base = snapshot.meta().position;
            if base.index == 0 && base.term != 0 {
                // No entry has index 0: such a file was never written by
                // a log, and a base there would make every entry after it
                // fail log matching at the next start.
                return Err(StorageError::Corrupt {
                    file: format!("group {group}'s newest snapshot"),
                    offset: 0,
                    reason: format!(
                        "a snapshot at index 0 with term {}: no entry has index 0",
                        base.term
                    ),
                });
            }
            pins.update(group, |track| track.snapshot = base);
            groups.insert(
                group,
                GroupReplay {
                    log: GroupLog::new(base),
                    hard_state: HardState::default(),
                    snapshot: Some(snapshot),
                },
            );
        }
    }
    // A record that does not fit its group's log is corruption, unless a
    // later record removes the group: its snapshot files are deleted once
    // the removal is durable, so its earlier records may name a snapshot
    // that is gone. The first misfit of each group waits for the end.
    let mut misfits: BTreeMap<GroupId, StorageError> = BTreeMap::new();
    // The torn tail is cut only once the whole log is known to be sound.
    let mut torn_cut: Option<(u64, u64)> = None;
    let mut records = 0u64;
    let mut torn_bytes_truncated = 0;
    let mut last_segment_bytes = 0;
    for (i, &number) in numbers.iter().enumerate() {
        let last_segment = i + 1 == numbers.len();
        let file = segments.describe(number);
        let bytes = segments.read(number)?;
        let mut damage = None;
        let mut offset = 0;
        if bytes.is_empty() {
            wal::refuse_empty_unless_last(&file, last_segment)?;
        } else if let Some(d) = check_header(&bytes, &file, last_segment)? {
            damage = Some(d);
        } else {
            offset = SEGMENT_HEADER_BYTES;
            while offset < bytes.len() {
                let payload = match wal::parse_record_at(&bytes, offset) {
                    Ok(payload) => payload,
                    Err(d) => {
                        if planted_past_torn {
                            // The planted mistake: on past the damage.
                            if let Some(next) = wal::next_valid_record(&bytes, offset + 1) {
                                offset = next;
                                continue;
                            }
                        }
                        damage = Some(d);
                        break;
                    }
                };
                let corrupt = |reason: String| StorageError::Corrupt {
                    file: file.clone(),
                    offset: offset as u64,
                    reason,
                };
                let record: GroupRecord = codec::decode(payload, RECORD_BYTES_MAX)
                    .map_err(|e| corrupt(format!("record passes its checksum but {e}")))?;
                let group = record.group();
                if removed.contains(&group) {
                    return Err(corrupt(format!(
                        "a record of group {group} after the record of its removal (group ids \
                         are never reused)"
                    )));
                }
                if matches!(record, GroupRecord::Removed { .. }) {
                    // Everything of the group before is void, misfits too.
                    misfits.remove(&group);
                }
                if let std::collections::btree_map::Entry::Vacant(misfit) = misfits.entry(group) {
                    if let Err(reason) =
                        apply(record, number, offset, &mut groups, &mut pins, &mut removed)
                    {
                        misfit.insert(corrupt(format!("group {group}: {reason}")));
                    }
                }
                records += 1;
                offset += RECORD_HEADER_BYTES + payload.len();
            }
        }
        match damage {
            None => {
                marker.check(segments, number, bytes.len() as u64, || {
                    format!("the segment holds only {} bytes", bytes.len())
                })?;
                if last_segment {
                    last_segment_bytes = bytes.len() as u64;
                }
            }
            Some(d) => {
                if let Some(next) = wal::next_valid_record(&bytes, offset + 1) {
                    return Err(StorageError::Corrupt {
                        file,
                        offset: offset as u64,
                        reason: format!(
                            "{d}, but a valid record follows at byte offset {next}: damage \
                             inside the log, not a torn write"
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
                marker.check(segments, number, offset as u64, || {
                    format!("{d} at byte offset {offset}")
                })?;
                let cut = bytes.len() as u64 - offset as u64;
                // Zeros only: most often the space the segment files fill
                // ahead of their records (`segment_files.rs`), left by a
                // process that stopped without cutting it.
                let zeros_only = bytes[offset..].iter().all(|byte| *byte == 0);
                let what = if marker.lost_bytes == 0 {
                    "not covered by the durable marker, so never reported durable"
                } else {
                    "including marked-durable data, as accept_data_loss allows"
                };
                if zeros_only && marker.lost_bytes == 0 {
                    tracing::info!(
                        file = %file,
                        offset,
                        bytes = cut,
                        "cutting {cut} zero bytes after the last record of {file} (space filled \
                         ahead of the log, or a write a crash never completed; never reported \
                         durable)"
                    );
                } else {
                    tracing::warn!(
                        file = %file,
                        offset,
                        bytes = cut,
                        reason = %d,
                        "truncating a torn tail of the shared write-ahead log: {cut} bytes at \
                         byte offset {offset} of {file}, {what}"
                    );
                }
                torn_cut = Some((number, offset as u64));
                torn_bytes_truncated = cut;
                last_segment_bytes = offset as u64;
            }
        }
    }
    if let Some((_, error)) = misfits.into_iter().next() {
        return Err(error);
    }
    let mut recovered_groups = BTreeMap::new();
    for (group, replay) in groups {
        let GroupReplay {
            log,
            hard_state,
            snapshot,
        } = replay;
        let base = snapshot
            .as_ref()
            .map_or(LogPosition::ZERO, |snapshot| snapshot.meta().position);
        let (entries, entries_dropped_after_snapshot) =
            log.finish()
                .map_err(|(segment, offset, reason)| StorageError::Corrupt {
                    file: segments.describe(segment),
                    offset: offset as u64,
                    reason: format!("group {group}: {reason}"),
                })?;
        if let Some(last) = entries.last() {
            if last.term > hard_state.term {
                return Err(StorageError::Corrupt {
                    file: numbers
                        .last()
                        .map_or_else(String::new, |n| segments.describe(*n)),
                    offset: 0,
                    reason: format!(
                        "group {group}: the log holds term {} but the group's hard state only \
                         term {}",
                        last.term, hard_state.term
                    ),
                });
            }
        }
        if entries_dropped_after_snapshot > 0 {
            tracing::info!(
                group,
                snapshot_index = base.index,
                dropped = entries_dropped_after_snapshot,
                "group {group}: the log does not hold its snapshot's last entry (a crash right \
                 after storing a snapshot from the leader): dropping the entries after it"
            );
            // Nothing of them is live any more.
            pins.update(group, |track| track.runs.clear());
        }
        let membership = snapshot
            .as_ref()
            .and_then(|snapshot| snapshot.membership().cloned());
        recovered_groups.insert(
            group,
            RecoveredGroup {
                recovered: Recovered {
                    hard_state,
                    base,
                    entries,
                    applied_index: base.index,
                    membership,
                },
                snapshot,
                entries_dropped_after_snapshot,
            },
        );
    }
    // Sound: now the torn tail goes (durably).
    if let Some((number, offset)) = torn_cut {
        segments.truncate(number, offset)?;
    }
    // A removal durable before its group's snapshot files were deleted.
    for group in &removed {
        snapshots.remove_group(*group)?;
    }
    Ok(Replayed {
        recovery: MultiRecovery {
            groups: recovered_groups,
            removed,
            segments: numbers.len(),
            records,
            torn_bytes_truncated,
            durable_marker,
            lost_durable_bytes: marker.lost_bytes,
        },
        pins,
        segments: numbers,
        last_segment_bytes,
    })
}

/// Most bytes a torn write of a new segment's header leaves (a page):
/// a last segment this short whose header is not ours and that holds no
/// valid record is a header torn by a crash, not a file of another format.
const TORN_HEADER_BYTES_MAX: usize = 4096;

/// Checks a segment's header (see `record::check_segment_header`). In the
/// last segment a header that is not ours, in a file no longer than a
/// page holding no valid record and not starting with the single-group
/// log's magic, is a torn write: a crash between creating the segment
/// and syncing its header may leave garbage there.
fn check_header(
    bytes: &[u8],
    file: &str,
    last_segment: bool,
) -> Result<Option<wal::Damage>, StorageError> {
    match record::check_segment_header(bytes, file) {
        Err(StorageError::UnsupportedFormat { .. })
            if last_segment
                && bytes.len() <= TORN_HEADER_BYTES_MAX
                && !bytes.starts_with(&wal::SEGMENT_MAGIC)
                && wal::next_valid_record(bytes, 0).is_none() =>
        {
            Ok(Some(wal::Damage::SegmentHeaderChecksum))
        }
        other => other,
    }
}

/// Replays one record into its group.
fn apply(
    record: GroupRecord,
    segment: u64,
    offset: usize,
    groups: &mut BTreeMap<GroupId, GroupReplay>,
    pins: &mut Pins,
    removed: &mut BTreeSet<GroupId>,
) -> Result<(), String> {
    let group = record.group();
    if let GroupRecord::Removed { .. } = record {
        groups.remove(&group);
        pins.remove(group);
        removed.insert(group);
        return Ok(());
    }
    let replay = groups.entry(group).or_insert_with(|| GroupReplay {
        log: GroupLog::new(LogPosition::ZERO),
        hard_state: HardState::default(),
        snapshot: None,
    });
    match record {
        GroupRecord::HardState { hard_state, .. } => {
            if hard_state.term < replay.hard_state.term {
                return Err(format!(
                    "the hard state goes back from term {} to term {}",
                    replay.hard_state.term, hard_state.term
                ));
            }
            replay.hard_state = hard_state;
            pins.update(group, |track| track.note_hard_state(hard_state, segment));
            Ok(())
        }
        GroupRecord::Truncate { after, .. } => {
            pins.update(group, |track| track.note_truncate(after));
            replay.log.truncate(after);
            Ok(())
        }
        GroupRecord::Append { entries, .. } => {
            let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
                return Ok(());
            };
            let (first, last) = (first.index, last.index);
            if first == 0 || last < first || last - first + 1 != entries.len() as u64 {
                return Err(format!(
                    "an append of {} entries from index {first} to {last} is not contiguous",
                    entries.len()
                ));
            }
            pins.update(group, |track| track.note_append(first, last, segment));
            replay.log.append(entries, segment, offset);
            Ok(())
        }
        GroupRecord::Snapshot {
            position,
            discard_log,
            ..
        } => {
            pins.update(group, |track: &mut GroupTrack| {
                track.note_snapshot(position, discard_log, segment)
            });
            replay.log.snapshot(position, discard_log)
        }
        GroupRecord::Removed { .. } => unreachable!("handled above"),
    }
}

/// One group's log as its records rebuild it, kept only after `base` (its
/// newest snapshot file's position). Entries are held by index, each with
/// where its record is: a record of entries whose predecessors were in a
/// deleted segment is fine as long as a later truncation cuts it, so gaps
/// are judged at the end, on what is still live.
struct GroupLog {
    base: LogPosition,
    /// The term the log holds at `base.index` (`None`: unknown or absent).
    term_at_base: Option<Term>,
    /// Entries after `base.index`, with the segment and byte offset of
    /// the record that appended each.
    entries: BTreeMap<Index, (Entry, u64, usize)>,
}

impl GroupLog {
    fn new(base: LogPosition) -> Self {
        GroupLog {
            base,
            term_at_base: (base.index == 0).then_some(0),
            entries: BTreeMap::new(),
        }
    }

    /// The log now ends at `after`.
    fn truncate(&mut self, after: Index) {
        if after < self.base.index {
            self.entries.clear();
            self.term_at_base = None;
        } else {
            self.entries.split_off(&(after + 1));
        }
    }

    /// Entries appended by the record at `offset` of `segment`: each
    /// replaces the log's suffix from its index.
    fn append(&mut self, new: Vec<Entry>, segment: u64, offset: usize) {
        let base = self.base.index;
        for entry in new {
            let index = entry.index;
            if index <= base {
                // Covered by the snapshot; the log now ends here.
                self.entries.clear();
                self.term_at_base = (index == base).then_some(entry.term);
            } else {
                self.entries.split_off(&index);
                self.entries.insert(index, (entry, segment, offset));
            }
        }
    }

    /// A snapshot record: the log continues after `position` (with
    /// `discard_log`, nothing after it is kept).
    fn snapshot(&mut self, position: LogPosition, discard_log: bool) -> Result<(), String> {
        let base = self.base;
        if position.index > base.index {
            return Err(format!(
                "the log records a snapshot at index {} term {}, newer than the group's newest \
                 snapshot file (index {}): a snapshot file is missing",
                position.index, position.term, base.index
            ));
        }
        if position.index == base.index && position.term != base.term {
            return Err(format!(
                "the log records a snapshot at index {} term {}, but the snapshot file at that \
                 index has term {}",
                position.index, position.term, base.term
            ));
        }
        if discard_log {
            self.entries.clear();
        }
        if position.index == base.index {
            self.term_at_base = Some(position.term);
        } else if discard_log {
            // The log now ends below the base.
            self.term_at_base = None;
        }
        Ok(())
    }

    /// The entries after the base, and how many were dropped because the
    /// log does not hold the base entry (log matching). A live entry that
    /// does not follow its predecessor is corruption: the segment, offset
    /// and reason.
    fn finish(self) -> Result<(Vec<Entry>, u64), (u64, usize, String)> {
        let base = self.base.index;
        let mut entries = Vec::with_capacity(self.entries.len());
        for (expected, (index, (entry, segment, offset))) in (base + 1..).zip(self.entries) {
            if index != expected {
                return Err((
                    segment,
                    offset,
                    format!(
                        "entry index {index} leaves a gap after index {} (the group's entries \
                         after its snapshot at index {base} must all be in the log: a segment \
                         it needed is gone)",
                        expected - 1
                    ),
                ));
            }
            entries.push(entry);
        }
        if self.term_at_base == Some(self.base.term) {
            Ok((entries, 0))
        } else {
            Ok((Vec::new(), entries.len() as u64))
        }
    }
}

/// Why this server must not start on what it recovered: its groups'
/// configuration (the last one in a group's log, else its snapshot's)
/// names it a witness while it starts as a full server, or a full voter
/// while it starts as a witness (`witness`). Names the first such group
/// and how many there are. A witness never held the data a full server
/// serves, and a full server's data is not a witness's to drop.
pub fn witness_role_conflict(
    recovery: &MultiRecovery,
    id: concord::NodeId,
    witness: bool,
) -> Option<String> {
    let mut first = None;
    let mut count = 0u64;
    // The catalog (group 0) has every server as a full member.
    for (group, found) in recovery
        .groups
        .iter()
        .filter(|(group, _)| **group != concord::multi::CATALOG_GROUP)
    {
        let recovered = &found.recovered;
        let membership = recovered
            .entries
            .iter()
            .rev()
            .find_map(|entry| entry.payload.membership())
            .or(recovered.membership.as_ref());
        let Some(membership) = membership else {
            continue;
        };
        let conflict = if witness {
            membership.is_full_voter(id)
        } else {
            membership.is_witness(id)
        };
        if conflict {
            count += 1;
            first.get_or_insert(*group);
        }
    }
    let group = first?;
    Some(if witness {
        format!(
            "node {id} is started as a witness (--witness or --witnesses), but the \
             configuration of {count} of its groups (group {group} first) lists it as a full \
             voter, which holds the data a witness never keeps: start it without --witness \
             and with the --witnesses it was started with"
        )
    } else {
        format!(
            "node {id} is started as a full server, but the configuration of {count} of its \
             groups (group {group} first) lists it as a witness, which holds no state: start \
             it with the --witnesses (or --witness) it was started with"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::super::page_cache::PageCacheDisk;
    use super::super::shared_log::{MultiWalOptions, SharedLog, WalWrite};
    use super::*;
    use concord::Snapshot;

    fn append(group: GroupId, hard_state: Option<HardState>, indices: &[Index]) -> WalWrite {
        let entries: Vec<Entry> = indices
            .iter()
            .map(|index| Entry {
                term: 1,
                index: *index,
                payload: concord::EntryPayload::Command(bytes::Bytes::from(format!("e{index}"))),
            })
            .collect();
        WalWrite::Log {
            group,
            hard_state,
            truncate_after: None,
            entries: entries.into(),
        }
    }

    /// Damage with a valid record after it is corruption, refused; the
    /// planted mistake reads past it, dropping a record in the middle.
    #[test]
    fn damage_followed_by_a_valid_record_is_refused_unless_the_mistake_skips_it() {
        let disk = PageCacheDisk::new();
        let (mut log, _) =
            SharedLog::open(disk.clone(), disk.clone(), MultiWalOptions::default()).unwrap();
        let hard_state = Some(HardState::new(1, Some(1)));
        log.write([append(7, hard_state, &[1, 2]), append(8, hard_state, &[1])])
            .unwrap();
        let before = disk.segment_bytes()[&1].len();
        log.write([append(7, None, &[3])]).unwrap();
        let after = disk.segment_bytes()[&1].len();
        log.write([append(8, None, &[2])]).unwrap();
        drop(log);
        let mut bytes = disk.segment_bytes()[&1].clone();
        bytes[(before + after) / 2] ^= 0xff;
        disk.overwrite_segment(1, bytes);

        let error = replay(&mut disk.clone(), &mut disk.clone(), false)
            .map(|_| ())
            .unwrap_err();
        assert!(
            error.to_string().contains("a valid record follows"),
            "{error}"
        );
        let skipped = replay_with(&mut disk.clone(), &mut disk.clone(), false, true)
            .unwrap()
            .recovery;
        let last = |group| {
            skipped.groups[&group]
                .recovered
                .entries
                .last()
                .map(|entry| entry.index)
        };
        assert_eq!(last(7), Some(2), "entry 3 of group 7 is dropped");
        assert_eq!(last(8), Some(2), "the record after the damage is read");
    }

    /// Found by the `wal_recovery` fuzz target: a snapshot file at index 0
    /// with a term recovered as a base that the next start's log matching
    /// then cut every later entry of the group after.
    #[test]
    fn a_snapshot_at_index_zero_with_a_term_is_refused() {
        let disk = PageCacheDisk::new();
        let mut store = disk.clone();
        store
            .store(
                6,
                &Snapshot::new(LogPosition::new(0, 1), bytes::Bytes::new()),
            )
            .unwrap();
        let error = SharedLog::open(disk.clone(), disk, MultiWalOptions::default())
            .map(|_| ())
            .unwrap_err();
        assert!(
            error.to_string().contains("no entry has index 0"),
            "{error}"
        );
    }
}
