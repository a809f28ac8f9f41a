//! The in-memory replicated log: entries since the last snapshot, the
//! position the snapshot covers (the log's base), and the commit index.

use std::collections::VecDeque;

use crate::types::{Entry, Index, LogPosition, Term};

/// The log of one replica. `entries[i]` has index `base.index + 1 + i`.
#[derive(Clone, Debug)]
pub(crate) struct RaftLog {
    /// Last entry covered by a snapshot (ZERO when there is none).
    base: LogPosition,
    entries: VecDeque<Entry>,
    /// Highest index known to be committed.
    commit: Index,
}

impl RaftLog {
    /// A log that starts after `base` and holds `entries`. The caller has
    /// checked that the entries are contiguous from `base.index + 1`.
    pub(crate) fn new(base: LogPosition, entries: Vec<Entry>, commit: Index) -> Self {
        let log = RaftLog {
            base,
            entries: entries.into(),
            commit,
        };
        assert!(log.commit >= log.base.index && log.commit <= log.last_index());
        log
    }

    pub(crate) fn first_index(&self) -> Index {
        self.base.index + 1
    }

    pub(crate) fn last_index(&self) -> Index {
        self.base.index + self.entries.len() as Index
    }

    pub(crate) fn last_position(&self) -> LogPosition {
        match self.entries.back() {
            Some(entry) => entry.position(),
            None => self.base,
        }
    }

    pub(crate) fn commit_index(&self) -> Index {
        self.commit
    }

    /// Term of the entry at `index`: `Some` for the base and every entry
    /// held, `None` below the base (compacted) or past the end.
    pub(crate) fn term_at(&self, index: Index) -> Option<Term> {
        if index == self.base.index {
            return Some(self.base.term);
        }
        self.entry(index).map(|entry| entry.term)
    }

    pub(crate) fn entry(&self, index: Index) -> Option<&Entry> {
        if index <= self.base.index {
            return None;
        }
        let offset = usize::try_from(index - self.base.index - 1).ok()?;
        self.entries.get(offset)
    }

    pub(crate) fn matches(&self, position: LogPosition) -> bool {
        self.term_at(position.index) == Some(position.term)
    }

    /// Appends one entry, which must directly follow the last.
    pub(crate) fn append(&mut self, entry: Entry) {
        let last = self.last_position();
        assert_eq!(entry.index, last.index + 1, "log append must be contiguous");
        assert!(entry.term >= last.term, "log terms must not decrease");
        self.entries.push_back(entry);
    }

    /// Drops every entry after `index`. Committed entries are never dropped.
    pub(crate) fn truncate_after(&mut self, index: Index) {
        assert!(
            index >= self.commit,
            "truncating committed entry {} (commit {})",
            index + 1,
            self.commit
        );
        assert!(index >= self.base.index);
        if index < self.last_index() {
            self.entries.truncate((index - self.base.index) as usize);
        }
        assert_eq!(self.last_index(), index.min(self.last_index()));
    }

    /// Raises the commit index. It never goes back, and never past the log.
    pub(crate) fn commit_to(&mut self, index: Index) {
        assert!(
            index >= self.commit,
            "commit index going back from {} to {index}",
            self.commit
        );
        assert!(
            index <= self.last_index(),
            "commit {index} past last index {}",
            self.last_index()
        );
        self.commit = index;
    }

    /// Up to `count_max` entries from `from` on, stopping before the total
    /// size passes `bytes_max` (but always at least one entry if any).
    pub(crate) fn entries_from(
        &self,
        from: Index,
        count_max: usize,
        bytes_max: usize,
    ) -> Vec<Entry> {
        let mut batch = Vec::new();
        if from <= self.base.index {
            return batch;
        }
        let offset = (from - self.base.index - 1) as usize;
        let mut size_bytes = 0usize;
        for entry in self.entries.iter().skip(offset).take(count_max) {
            size_bytes += entry.size_bytes();
            if !batch.is_empty() && size_bytes > bytes_max {
                break;
            }
            batch.push(entry.clone());
        }
        batch
    }

    /// Entries `from..=to`, cloned (payloads are shared, not copied).
    pub(crate) fn slice(&self, from: Index, to: Index) -> Vec<Entry> {
        if from > to {
            return Vec::new();
        }
        assert!(from > self.base.index && to <= self.last_index());
        let start = (from - self.base.index - 1) as usize;
        let end = (to - self.base.index) as usize;
        self.entries.range(start..end).cloned().collect()
    }

    /// The largest index `i <= index` whose term is at most `term`, with
    /// that term. Used for fast log backtracking: both sides can skip every
    /// entry of a term the other side does not have. Terms are
    /// non-decreasing along the log, so this is a binary search.
    pub(crate) fn find_conflict_by_term(&self, index: Index, term: Term) -> LogPosition {
        let index = index.min(self.last_index());
        if index <= self.base.index {
            return LogPosition::new(
                index,
                if index == self.base.index {
                    self.base.term
                } else {
                    0
                },
            );
        }
        let upto = (index - self.base.index) as usize;
        let (front, back) = self.entries.as_slices();
        let count_le = |slice: &[Entry]| slice.partition_point(|entry| entry.term <= term);
        let position = if upto <= front.len() {
            count_le(&front[..upto])
        } else {
            let in_front = count_le(front);
            if in_front < front.len() {
                in_front
            } else {
                front.len() + count_le(&back[..upto - front.len()])
            }
        };
        let found = self.base.index + position as Index;
        LogPosition::new(found, self.term_at(found).unwrap_or(0))
    }
}
