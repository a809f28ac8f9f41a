//! Which segments each group still needs: what decides when a segment of
//! the shared log may be deleted.
//!
//! A group needs (pins) the segments holding
//!
//! * its newest hard-state record (its term and vote);
//! * its newest snapshot record (what tells recovery that the entries after
//!   the snapshot continue it; see `ReplayedLog` in `wal.rs`);
//! * every entry after its snapshot that is still in its log.
//!
//! Entries are tracked as runs, one per segment a group appended to: the
//! segment, the first and the highest index appended there. A truncation
//! kills what it cuts; a snapshot frees the runs it covers. Runs may claim
//! more than is live (never less): a segment is kept too long, never
//! deleted too soon.
//!
//! A segment can be deleted once it is older than every group's oldest
//! pinned segment. Segments are deleted oldest first, so a record that is
//! kept always has every later record kept too: a truncation or a
//! snapshot record never outlives what it cut.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use concord::multi::GroupId;
use concord::{HardState, Index, LogPosition};

/// Entries a group appended to one segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Run {
    pub(crate) segment: u64,
    pub(crate) first: Index,
    pub(crate) last: Index,
}

/// What the log knows of one group's durable state.
#[derive(Clone, Debug, Default)]
pub(crate) struct GroupTrack {
    /// The newest snapshot stored (ZERO when none).
    pub(crate) snapshot: LogPosition,
    /// The newest hard state written.
    pub(crate) hard_state: HardState,
    /// Segment of the newest hard-state record.
    pub(crate) hard_state_segment: Option<u64>,
    /// Segment of the newest snapshot record.
    pub(crate) snapshot_record_segment: Option<u64>,
    /// Position the newest snapshot record names.
    pub(crate) snapshot_record: Option<LogPosition>,
    /// Live entries after the snapshot, by segment, oldest first.
    pub(crate) runs: VecDeque<Run>,
    /// The current segment when a forced snapshot was last asked for.
    pub(crate) forced_at_segment: Option<u64>,
}

impl GroupTrack {
    /// The oldest segment this group needs.
    pub(crate) fn pin(&self) -> Option<u64> {
        [
            self.hard_state_segment,
            self.snapshot_record_segment,
            self.entries_pin(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The oldest segment holding entries this group needs.
    pub(crate) fn entries_pin(&self) -> Option<u64> {
        // Runs are pushed in log order into segments that only grow, so
        // the front is the oldest; this is asked at every append.
        debug_assert!(
            self.runs
                .iter()
                .zip(self.runs.iter().skip(1))
                .all(|(a, b)| a.segment <= b.segment),
            "runs out of segment order"
        );
        self.runs.front().map(|run| run.segment)
    }

    pub(crate) fn note_hard_state(&mut self, hard_state: HardState, segment: u64) {
        self.hard_state = hard_state;
        self.hard_state_segment = Some(segment);
    }

    pub(crate) fn note_truncate(&mut self, after: Index) {
        // The usual append follows the last entry: nothing to cut, and
        // no pass over the runs (the last run ends the log).
        if self.runs.back().is_none_or(|run| run.last <= after) {
            debug_assert!(
                self.runs.iter().all(|run| run.last > self.snapshot.index),
                "a run the snapshot covers is still held"
            );
            return;
        }
        self.runs.retain(|run| run.first <= after);
        for run in &mut self.runs {
            run.last = run.last.min(after);
        }
        // What is left at or below the snapshot is not live (the snapshot
        // covers it): a run cut down to that pins nothing.
        let covered = self.snapshot.index;
        self.runs.retain(|run| run.last > covered);
    }

    pub(crate) fn note_append(&mut self, first: Index, last: Index, segment: u64) {
        assert!(first <= last, "an append of entries {first}..={last}");
        // Appending at `first` replaces the log's suffix from there on.
        self.note_truncate(first - 1);
        if last <= self.snapshot.index {
            // Covered by the snapshot already (a leader's resend).
            return;
        }
        match self.runs.back_mut() {
            Some(run) if run.segment == segment => {
                run.first = run.first.min(first);
                run.last = run.last.max(last);
            }
            _ => self.runs.push_back(Run {
                segment,
                first,
                last,
            }),
        }
    }

    pub(crate) fn note_snapshot(&mut self, position: LogPosition, discard_log: bool, segment: u64) {
        if position.index >= self.snapshot.index {
            self.snapshot = position;
        }
        self.snapshot_record_segment = Some(segment);
        self.snapshot_record = Some(position);
        if discard_log {
            self.runs.clear();
        } else {
            let covered = self.snapshot.index;
            self.runs.retain(|run| run.last > covered);
        }
    }
}

/// Every group's [`GroupTrack`], indexed by the segment each pins.
#[derive(Debug, Default)]
pub(crate) struct Pins {
    groups: BTreeMap<GroupId, GroupTrack>,
    by_segment: BTreeMap<u64, BTreeSet<GroupId>>,
}

impl Pins {
    /// Changes group `group`'s track (created if new), keeping the index.
    pub(crate) fn update<R>(
        &mut self,
        group: GroupId,
        change: impl FnOnce(&mut GroupTrack) -> R,
    ) -> R {
        let track = self.groups.entry(group).or_default();
        let before = track.pin();
        let result = change(track);
        let after = track.pin();
        if before != after {
            if let Some(segment) = before {
                self.unindex(segment, group);
            }
            if let Some(segment) = after {
                self.by_segment.entry(segment).or_default().insert(group);
            }
        }
        result
    }

    fn unindex(&mut self, segment: u64, group: GroupId) {
        let set = self
            .by_segment
            .get_mut(&segment)
            .expect("a pinned segment is indexed");
        assert!(
            set.remove(&group),
            "group {group} indexed at segment {segment}"
        );
        if set.is_empty() {
            self.by_segment.remove(&segment);
        }
    }

    /// Forgets group `group` (removed): it pins nothing any more.
    pub(crate) fn remove(&mut self, group: GroupId) {
        if let Some(track) = self.groups.remove(&group) {
            if let Some(segment) = track.pin() {
                self.unindex(segment, group);
            }
        }
    }

    /// Group `group`'s track, if it has one.
    pub(crate) fn get(&self, group: GroupId) -> Option<&GroupTrack> {
        self.groups.get(&group)
    }

    /// The oldest segment any group pins.
    pub(crate) fn oldest_pinned(&self) -> Option<u64> {
        self.by_segment.keys().next().copied()
    }

    /// The groups whose oldest needed segment is `segment`.
    pub(crate) fn pinning(&self, segment: u64) -> Vec<GroupId> {
        self.by_segment
            .get(&segment)
            .map(|set| set.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Groups tracked.
    pub(crate) fn len(&self) -> usize {
        self.groups.len()
    }

    /// Checks the index against the tracks (O(groups): tests and debug
    /// builds with few groups).
    pub(crate) fn check(&self) {
        let mut indexed = 0;
        for (segment, groups) in &self.by_segment {
            assert!(!groups.is_empty());
            for group in groups {
                assert_eq!(self.groups[group].pin(), Some(*segment));
                indexed += 1;
            }
        }
        let pinning = self.groups.values().filter(|t| t.pin().is_some()).count();
        assert_eq!(indexed, pinning);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_and_snapshots_free_runs_and_the_index_follows() {
        let mut pins = Pins::default();
        pins.update(7, |t| t.note_append(1, 10, 1));
        pins.update(7, |t| t.note_append(11, 20, 2));
        pins.update(8, |t| t.note_hard_state(HardState::default(), 2));
        assert_eq!(pins.oldest_pinned(), Some(1));
        // Overwriting from 5 on keeps 1..=4 in segment 1.
        pins.update(7, |t| t.note_append(5, 6, 3));
        assert_eq!(pins.get(7).unwrap().runs.len(), 2);
        pins.update(7, |t| t.note_snapshot(LogPosition::new(4, 1), false, 3));
        assert_eq!(pins.get(7).unwrap().entries_pin(), Some(3));
        assert_eq!(pins.oldest_pinned(), Some(2));
        assert_eq!(pins.pinning(2), vec![8]);
        pins.remove(8);
        assert_eq!(pins.oldest_pinned(), Some(3));
        pins.check();
    }

    #[test]
    fn entries_written_again_after_a_snapshot_free_the_older_segments() {
        let mut pins = Pins::default();
        // Entries 1..=10 in segment 1, then a snapshot at 6 (its record in
        // segment 2): 7..=10 still pin segment 1.
        pins.update(3, |t| t.note_append(1, 10, 1));
        pins.update(3, |t| t.note_snapshot(LogPosition::new(6, 1), false, 2));
        assert_eq!(pins.get(3).unwrap().entries_pin(), Some(1));
        // 7..=10 written again in segment 3: segment 1 holds only what the
        // snapshot covers.
        pins.update(3, |t| t.note_append(7, 10, 3));
        assert_eq!(pins.get(3).unwrap().entries_pin(), Some(3));
        assert_eq!(pins.oldest_pinned(), Some(2));
        pins.check();
    }
}
