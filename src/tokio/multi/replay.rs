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
//!
//! Each group's log is rebuilt by the single-group log's replay
//! (`ReplayedLog` in `wal.rs`) from its newest snapshot file on: entries
//! the snapshot covers are dropped, and the entries after it are kept only
//! if the log holds the snapshot's last entry (log matching).

use std::collections::{BTreeMap, BTreeSet};

use crate::multi::GroupId;
use crate::tokio::codec;
use crate::tokio::storage::{SnapshotReader, StorageError};
use crate::tokio::wal::{self, ReplayedLog, WalRecord, RECORD_BYTES_MAX, RECORD_HEADER_BYTES};
use crate::{HardState, LogPosition, Recovered};

use super::pins::{GroupTrack, Pins};
use super::record::{self, GroupRecord, SEGMENT_HEADER_BYTES};
use super::segment_files::SegmentFiles;
use super::snapshot_store::SnapshotStore;

/// What recovery found for one group.
#[derive(Debug)]
pub struct RecoveredGroup {
    /// The group's durable state, to hand to
    /// [`MultiNode::create_group`](crate::multi::MultiNode::create_group).
    pub recovered: Recovered,
    /// A reader of the group's newest snapshot (verified), whose position
    /// is `recovered.base`: restore the state machine from it and report
    /// it to the group with [`Input::Snapshotted`](crate::Input::Snapshotted).
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
}

/// One group during replay.
struct GroupReplay {
    log: ReplayedLog,
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

/// Reads every segment and snapshot back (see the [module documentation](self)).
pub(crate) fn replay<S: SegmentFiles, T: SnapshotStore>(
    segments: &mut S,
    snapshots: &mut T,
) -> Result<Replayed, StorageError> {
    let numbers = segments.list()?;
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
    let starts_at_first_segment = numbers.first().is_none_or(|first| *first == 1);
    let mut groups: BTreeMap<GroupId, GroupReplay> = BTreeMap::new();
    let mut pins = Pins::default();
    let mut removed = BTreeSet::new();
    for group in snapshots.groups()? {
        if let Some(snapshot) = snapshots.newest(group)? {
            let base = snapshot.meta().position;
            pins.update(group, |track| track.snapshot = base);
            groups.insert(
                group,
                GroupReplay {
                    log: ReplayedLog::new(base, starts_at_first_segment),
                    hard_state: HardState::default(),
                    snapshot: Some(snapshot),
                },
            );
        }
    }
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
            if !last_segment {
                return Err(StorageError::Corrupt {
                    file,
                    offset: 0,
                    reason: "empty segment that is not the last".to_string(),
                });
            }
        } else if let Some(d) = record::check_segment_header(&bytes, &file)? {
            damage = Some(d);
        } else {
            offset = SEGMENT_HEADER_BYTES;
            while offset < bytes.len() {
                let payload = match wal::parse_record_at(&bytes, offset) {
                    Ok(payload) => payload,
                    Err(d) => {
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
                apply(
                    record,
                    number,
                    starts_at_first_segment,
                    &mut groups,
                    &mut pins,
                    &mut removed,
                )
                .map_err(|reason| corrupt(format!("group {group}: {reason}")))?;
                records += 1;
                offset += RECORD_HEADER_BYTES + payload.len();
            }
        }
        match damage {
            None => {
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
                let cut = bytes.len() as u64 - offset as u64;
                tracing::warn!(
                    file = %file,
                    offset,
                    bytes = cut,
                    reason = %d,
                    "truncating a torn tail of the shared write-ahead log: {cut} bytes at byte \
                     offset {offset} of {file}, never reported durable"
                );
                segments.truncate(number, offset as u64)?;
                torn_bytes_truncated = cut;
                last_segment_bytes = offset as u64;
            }
        }
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
        let (entries, entries_dropped_after_snapshot) = log.finish();
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
        },
        pins,
        segments: numbers,
        last_segment_bytes,
    })
}

/// Replays one record into its group.
fn apply(
    record: GroupRecord,
    segment: u64,
    starts_at_first_segment: bool,
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
        log: ReplayedLog::new(LogPosition::ZERO, starts_at_first_segment),
        hard_state: HardState::default(),
        snapshot: None,
    });
    let wal_record = match record {
        GroupRecord::HardState { hard_state, .. } => {
            if hard_state.term < replay.hard_state.term {
                return Err(format!(
                    "the hard state goes back from term {} to term {}",
                    replay.hard_state.term, hard_state.term
                ));
            }
            replay.hard_state = hard_state;
            pins.update(group, |track| track.note_hard_state(hard_state, segment));
            return Ok(());
        }
        GroupRecord::Truncate { after, .. } => {
            pins.update(group, |track| track.note_truncate(after));
            WalRecord::Truncate { after }
        }
        GroupRecord::Append { entries, .. } => {
            if let (Some(first), Some(last)) = (entries.first(), entries.last()) {
                let (first, last) = (first.index, last.index);
                if first == 0 || last < first || last - first + 1 != entries.len() as u64 {
                    return Err(format!(
                        "an append of {} entries from index {first} to {last} is not contiguous",
                        entries.len()
                    ));
                }
                pins.update(group, |track| track.note_append(first, last, segment));
            }
            WalRecord::Append { entries }
        }
        GroupRecord::Snapshot {
            position,
            discard_log,
            ..
        } => {
            pins.update(group, |track: &mut GroupTrack| {
                track.note_snapshot(position, discard_log, segment)
            });
            WalRecord::Snapshot {
                position,
                discard_log,
            }
        }
        GroupRecord::Removed { .. } => unreachable!("handled above"),
    };
    replay.log.replay(wal_record)
}
