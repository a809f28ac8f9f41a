//! The in-memory replicated log: entries since the last snapshot, the
//! position the snapshot covers (the log's base), and the commit index.
//!
//! Entries are held in runs, each an [`Entries`] (a range of a segment)
//! shared with every write, append and apply cut from it: a leader's
//! proposals fill the free slots of its newest segment, and a follower's
//! appends join the run whose segment they continue, are moved into the
//! newest segment (a few, unshared), or stay runs of their own. In the
//! steady state entries reach the host, the followers and the state
//! machine without a copy; a request that spans runs is served by a copy
//! of its entries.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::entries::Entries;
use crate::types::{Entry, Index, LogPosition, Term, ENTRY_OVERHEAD_BYTES};

/// Slots of the smallest segment: a short log (a simulated node's, a
/// new leader's) allocates little.
const SEGMENT_ENTRIES_MIN: usize = 16;

/// Slots of the largest segment a log allocates for entries that fit in
/// one (a bigger batch gets a segment of its size): a log of many small
/// proposals fills one allocation per this many.
const SEGMENT_ENTRIES_MAX: usize = 1024;

/// Unshared runs (decoded messages) of at most this many entries that do
/// not continue the last run's segment are moved into the newest segment:
/// a run of their own would cost a run per append.
const COPIED_RUN_ENTRIES_MAX: usize = 8;

/// Consecutive entries of the log, the first at index `first`.
#[derive(Clone, Debug)]
struct Run {
    first: Index,
    /// Never empty.
    entries: Entries,
}

impl Run {
    fn last(&self) -> Index {
        self.first + self.entries.len() as Index - 1
    }
}

/// The log of one replica: the runs hold indices `base.index + 1` to
/// `base.index + len`, in order, without gaps.
#[derive(Debug)]
pub(crate) struct RaftLog {
    /// Last entry covered by a snapshot (ZERO when there is none).
    base: LogPosition,
    runs: VecDeque<Run>,
    /// Entries in all runs together.
    len: usize,
    /// Highest index known to be committed.
    commit: Index,
    /// The run the last search found: lookups that walk the log index by
    /// index find it there or in the next run. Only a hint (checked before
    /// use), kept in an atomic so that lookups take `&self` and the log
    /// stays `Sync`; relaxed loads and stores cost what plain ones do.
    found_run: AtomicUsize,
}

impl Clone for RaftLog {
    fn clone(&self) -> Self {
        RaftLog {
            base: self.base,
            runs: self.runs.clone(),
            len: self.len,
            commit: self.commit,
            found_run: AtomicUsize::new(self.found_run.load(Ordering::Relaxed)),
        }
    }
}

impl RaftLog {
    /// A log that starts after `base` and holds `entries`. The caller has
    /// checked that the entries are contiguous from `base.index + 1`.
    pub(crate) fn new(base: LogPosition, entries: Vec<Entry>, commit: Index) -> Self {
        let mut log = RaftLog {
            base,
            runs: VecDeque::new(),
            len: 0,
            commit: base.index,
            found_run: AtomicUsize::new(0),
        };
        log.append_run(Entries::from(entries));
        assert!(commit >= log.base.index && commit <= log.last_index());
        log.commit = commit;
        log
    }

    pub(crate) fn first_index(&self) -> Index {
        self.base.index + 1
    }

    pub(crate) fn last_index(&self) -> Index {
        self.base.index + self.len as Index
    }

    pub(crate) fn last_position(&self) -> LogPosition {
        match self.runs.back().and_then(|run| run.entries.last()) {
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

    /// The run holding `index` and the entry's offset in it.
    #[inline]
    fn locate(&self, index: Index) -> Option<(usize, usize)> {
        if index <= self.base.index || index > self.last_index() {
            return None;
        }
        // Most lookups are of the newest entries: try the last run first
        // (without touching the hint, which is for walks through older
        // runs). This part is inlined into the callers; the search through
        // older runs is a call of its own, so that the common case does not
        // pay for the registers the search needs.
        let last = self.runs.len() - 1;
        let back_first = self.runs[last].first;
        if back_first <= index {
            let offset = (index - back_first) as usize;
            debug_assert_eq!(self.runs[last].entries[offset].index, index);
            return Some((last, offset));
        }
        Some(self.locate_in_older_runs(index))
    }

    /// [`Self::locate`] for an index held before the last run.
    #[inline(never)]
    fn locate_in_older_runs(&self, index: Index) -> (usize, usize) {
        let last = self.runs.len() - 1;
        debug_assert!(index > self.base.index && index < self.runs[last].first);
        let hint = self.found_run.load(Ordering::Relaxed);
        let holds = |run: usize| {
            self.runs
                .get(run)
                .is_some_and(|run| run.first <= index && index <= run.last())
        };
        let run = if holds(hint) {
            hint
        } else if holds(hint + 1) {
            hint + 1
        } else {
            // Runs tend to be of one size (a client's batch, a message's
            // worth): where they are, the interpolated guess is the run.
            let span = index - self.first_index();
            let guess = span
                .checked_mul(self.runs.len() as u64)
                .map_or(0, |scaled| (scaled / self.len as u64) as usize)
                .min(last);
            let at = &self.runs[guess];
            if at.first > index {
                self.last_run_starting_by(index, 0, guess)
            } else if at.last() < index {
                self.last_run_starting_by(index, guess + 1, last)
            } else {
                guess
            }
        };
        self.found_run.store(run, Ordering::Relaxed);
        let offset = (index - self.runs[run].first) as usize;
        debug_assert_eq!(self.runs[run].entries[offset].index, index);
        (run, offset)
    }

    /// Of runs `low..high`, the last whose first index is at most
    /// `index`; the caller knows run `low` starts by `index` or that
    /// `low` is 0 (the first run starts at the log's first index).
    fn last_run_starting_by(&self, index: Index, mut low: usize, mut high: usize) -> usize {
        assert!(self.runs[low].first <= index);
        // Invariant: run `low` starts by `index`; runs from `high` on
        // start after it (or lie outside the searched part).
        while high - low > 1 {
            let middle = low + (high - low) / 2;
            if self.runs[middle].first <= index {
                low = middle;
            } else {
                high = middle;
            }
        }
        low
    }

    pub(crate) fn entry(&self, index: Index) -> Option<&Entry> {
        // Most lookups are of the newest entries: the last run first. Not
        // through `locate`: here `get` bounds the index against the run in
        // one check, where `locate` checks the log's range first (through
        // `locate`, the batch-1 benchmark loop ran 0.6-0.8 % more
        // instructions by callgrind).
        let back = self.runs.back()?;
        if index >= back.first {
            return back.entries.get((index - back.first) as usize);
        }
        if index <= self.base.index {
            return None;
        }
        // Held, and before the last run (runs are contiguous from the base).
        let (run, offset) = self.locate_in_older_runs(index);
        Some(&self.runs[run].entries[offset])
    }

    pub(crate) fn matches(&self, position: LogPosition) -> bool {
        self.term_at(position.index) == Some(position.term)
    }

    /// Appends one entry, which must directly follow the last.
    pub(crate) fn append(&mut self, entry: Entry) {
        self.append_new(1, std::iter::once(entry));
    }

    /// Appends `count` entries, which must directly follow the last entry,
    /// be contiguous, and have non-decreasing terms, into the free slots
    /// of the newest segment where they all fit (so that they stay one run
    /// and a batch is shared whole), else into a new segment.
    pub(crate) fn append_new(&mut self, count: usize, entries: impl IntoIterator<Item = Entry>) {
        let mut last = self.last_position();
        let mut room = self.runs.back().map_or(0, |run| run.entries.room());
        if room < count {
            room = 0;
        }
        let mut left = count;
        for mut entry in entries {
            assert!(left > 0, "more than {count} entries to append");
            last = follows(last, &entry);
            if room > 0 {
                let run = self.runs.back_mut().expect("room is in the last run");
                match run.entries.try_push(entry) {
                    Ok(()) => {
                        room -= 1;
                        left -= 1;
                        self.len += 1;
                        continue;
                    }
                    // A clone of this log wrote the slot first.
                    Err(back) => entry = back,
                }
            }
            let capacity = (self.len + left)
                .next_power_of_two()
                .clamp(SEGMENT_ENTRIES_MIN, SEGMENT_ENTRIES_MAX)
                .max(left);
            let mut fresh = Entries::with_capacity(capacity);
            if fresh.try_push(entry).is_err() {
                unreachable!("a new segment has room");
            }
            self.runs.push_back(Run {
                first: last.index,
                entries: fresh,
            });
            room = capacity - 1;
            left -= 1;
            self.len += 1;
        }
        assert_eq!(left, 0, "fewer than {count} entries to append");
        assert_eq!(self.last_position(), last);
    }

    /// Appends `entries`, which must directly follow the last entry, be
    /// contiguous, and have non-decreasing terms: joined to the last run
    /// where they continue its segment (a follower taking a leader's
    /// batches in memory: later ones join this one), moved into the
    /// newest segment where they are few and nothing else holds them (a
    /// decoded message), else kept as a run of their own (no entry
    /// copied).
    pub(crate) fn append_run(&mut self, entries: Entries) {
        let Some(first) = entries.first().map(|entry| entry.index) else {
            return;
        };
        let count = entries.len();
        self.check_appended(&entries);
        let entries = match self.runs.back_mut() {
            Some(run) => match run.entries.try_join(entries) {
                Ok(()) => {
                    self.len += count;
                    return;
                }
                Err(entries) => entries,
            },
            None => entries,
        };
        if count <= COPIED_RUN_ENTRIES_MAX && !entries.is_shared() {
            self.append_new(count, entries);
        } else {
            self.len += count;
            self.runs.push_back(Run { first, entries });
        }
        assert_eq!(self.last_index(), first + count as Index - 1);
    }

    /// Asserts that `entries`, about to be appended, directly follow the
    /// last entry, are contiguous, and have non-decreasing terms.
    fn check_appended(&self, entries: &[Entry]) {
        entries.iter().fold(self.last_position(), follows);
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
        while let Some(run) = self.runs.back_mut() {
            if run.first > index {
                self.len -= run.entries.len();
                self.runs.pop_back();
            } else {
                if run.last() > index {
                    let keep = (index - run.first + 1) as usize;
                    self.len -= run.entries.len() - keep;
                    run.entries = run.entries.slice(0..keep);
                }
                break;
            }
        }
        assert_eq!(self.last_index(), index.min(self.last_index()));
    }

    /// Releases the entries up to and including `index`, which must be
    /// held or be the base.
    fn release_to(&mut self, index: Index) {
        while let Some(run) = self.runs.front_mut() {
            if run.last() <= index {
                self.len -= run.entries.len();
                self.runs.pop_front();
            } else {
                if run.first <= index {
                    let cut = (index - run.first + 1) as usize;
                    self.len -= cut;
                    run.entries = run.entries.slice(cut..run.entries.len());
                    run.first = index + 1;
                }
                break;
            }
        }
    }

    /// The position the log continues after (the last compacted entry).
    pub(crate) fn base(&self) -> LogPosition {
        self.base
    }

    /// Feeds the log to a model checker's hash (see `state_hash.rs`): the
    /// base, the commit index and every entry, `entry` hashing each. How
    /// the entries are split into runs, and the lookup hint, change
    /// nothing the log does, so they are left out.
    pub(crate) fn hash_state(
        &self,
        h: &mut crate::state_hash::StateHasher<'_>,
        mut entry: impl FnMut(&mut crate::state_hash::StateHasher<'_>, &Entry),
    ) {
        h.position(self.base);
        h.u64(self.commit);
        h.u64(self.len as u64);
        for run in &self.runs {
            for held in run.entries.iter() {
                entry(h, held);
            }
        }
    }

    /// Releases every entry up to and including `index`, which becomes the
    /// base. Only committed entries are released; the caller also checks
    /// they are applied and covered by a durable snapshot.
    pub(crate) fn compact_to(&mut self, index: Index) {
        assert!(
            index <= self.commit,
            "compacting to {index} past the commit index {}",
            self.commit
        );
        if index <= self.base.index {
            return;
        }
        let term = self.term_at(index).expect("compacted entry is held");
        let last = self.last_index();
        self.release_to(index);
        self.base = LogPosition::new(index, term);
        assert_eq!(self.first_index(), index + 1);
        assert_eq!(self.last_index(), last);
    }

    /// Installs a snapshot ending at `snapshot`, above the commit index:
    /// the log continues after it, keeping the entries after it when
    /// `keep_suffix` (the log holds the snapshot's last entry), else none.
    /// Everything up to the snapshot is committed.
    pub(crate) fn install_snapshot(&mut self, snapshot: LogPosition, keep_suffix: bool) {
        assert!(
            snapshot.index > self.commit,
            "installing a committed prefix"
        );
        if keep_suffix {
            assert!(self.matches(snapshot));
            self.release_to(snapshot.index);
        } else {
            self.runs.clear();
            self.len = 0;
        }
        self.base = snapshot;
        self.commit = snapshot.index;
        assert_eq!(self.first_index(), snapshot.index + 1);
    }

    /// The planted `stale_snapshot_installed` mistake: installs a snapshot
    /// at or below the commit index, which goes back to it.
    #[cfg(feature = "planted-bugs")]
    pub(crate) fn install_stale_snapshot(&mut self, snapshot: LogPosition, keep_suffix: bool) {
        if keep_suffix && snapshot.index > self.base.index {
            self.release_to(snapshot.index);
        } else if !keep_suffix {
            self.runs.clear();
            self.len = 0;
        }
        self.base = snapshot;
        self.commit = snapshot.index;
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
    pub(crate) fn entries_from(&self, from: Index, count_max: usize, bytes_max: usize) -> Entries {
        assert!(
            from > self.base.index,
            "entry {from} requested below the log base {}",
            self.base.index
        );
        if from > self.last_index() {
            return Entries::new();
        }
        // Every entry counts at least its fixed overhead against
        // `bytes_max`: never more than a small multiple of the byte limit.
        let room = ((self.last_index() - from + 1) as usize)
            .min(count_max)
            .min(bytes_max / ENTRY_OVERHEAD_BYTES + 1);
        let at = self.locate(from).expect("held");
        let run = &self.runs[at.0].entries;
        let count = if at.1 + room <= run.len() {
            // The common case, all within one run: no iterator over runs.
            count_within(run[at.1..at.1 + room].iter(), bytes_max)
        } else {
            count_within(self.iter_at(at).take(room), bytes_max)
        };
        self.cut(at, from, count)
    }

    /// Entries `from..=to`, shared where they lie in one run.
    // Inlined: its callers (the write and the apply of every step that
    // has them) hold the registers it needs already.
    #[inline(always)]
    pub(crate) fn slice(&self, from: Index, to: Index) -> Entries {
        if from > to {
            return Entries::new();
        }
        assert!(from > self.base.index && to <= self.last_index());
        let at = self.locate(from).expect("held");
        self.cut(at, from, (to - from + 1) as usize)
    }

    /// `count` entries from entry `from`, found at `(run, offset)`, all
    /// held: a part of one run, or a copy when they span runs.
    #[inline(always)]
    fn cut(&self, (run, offset): (usize, usize), from: Index, count: usize) -> Entries {
        if count == 0 {
            return Entries::new();
        }
        let entries = &self.runs[run].entries;
        if offset + count <= entries.len() {
            // The common case, within one run: the first entry is checked
            // on the run and the slice goes straight to the caller (`slice`
            // checks the range, so the length). Kept in a local for checks
            // after it was built, it cost a copy through the stack. This
            // part is inlined into the callers; a cut across runs is a call
            // of its own.
            assert_eq!(entries[offset].index, from);
            return entries.slice(offset..offset + count);
        }
        self.cut_across_runs((run, offset), from, count)
    }

    /// [`Self::cut`] of entries held in more than one run: copied into one
    /// new buffer.
    #[inline(never)]
    fn cut_across_runs(&self, at: (usize, usize), from: Index, count: usize) -> Entries {
        let cut: Entries = self.iter_at(at).take(count).cloned().collect();
        assert_eq!(cut.len(), count);
        assert_eq!(cut[0].index, from);
        cut
    }

    /// The entries from the one at `(run, offset)` to the end, in order.
    fn iter_at(&self, (run, offset): (usize, usize)) -> impl Iterator<Item = &Entry> {
        let rest = self
            .runs
            .range(run + 1..)
            .flat_map(|run| run.entries.iter());
        self.runs[run].entries[offset..].iter().chain(rest)
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
        // The first index in base+1..=index whose term exceeds `term`.
        let (mut low, mut high) = (self.base.index + 1, index + 1);
        while low < high {
            let middle = low + (high - low) / 2;
            let middle_term = self.term_at(middle).expect("held");
            if middle_term <= term {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        let found = low - 1;
        LogPosition::new(found, self.term_at(found).unwrap_or(0))
    }
}

/// Asserts that `entry` may follow `last` in a log (the next index, a
/// term not below), and returns its position.
fn follows(last: LogPosition, entry: &Entry) -> LogPosition {
    assert_eq!(entry.index, last.index + 1, "log append must be contiguous");
    assert!(entry.term >= last.term, "log terms must not decrease");
    entry.position()
}

/// How many of `entries` (at least one, if any) fit before their total
/// size passes `bytes_max`.
fn count_within<'a>(entries: impl Iterator<Item = &'a Entry>, bytes_max: usize) -> usize {
    let mut count = 0usize;
    let mut size_bytes = 0usize;
    for entry in entries {
        size_bytes += entry.size_bytes();
        if count > 0 && size_bytes > bytes_max {
            break;
        }
        count += 1;
    }
    count
}

#[cfg(test)]
mod tests {
    //! The log against a model: a plain `Vec` of entries after a base.
    use super::*;
    use crate::types::EntryPayload;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        /// Append one entry whose term is the last term plus this bump.
        Append(u64),
        /// Append this many entries (1 to 12) as one run, the first with
        /// the last term plus the bump, the rest with its term.
        AppendRun(usize, u64),
        /// Append this many entries (2 to 20) as two slices of one run,
        /// split after the given count: the second continues the first's
        /// segment where the first was kept as a run.
        AppendSplitRun(usize, usize),
        /// Clone the log, append to the clone (which may take the next
        /// slot of the segment the two share) and drop it: the original is
        /// unchanged and still appends.
        CloneAndDiverge(usize),
        /// Truncate after a point chosen in the allowed range by this seed.
        Truncate(u64),
        /// Commit up to a point chosen in the allowed range by this seed.
        Commit(u64),
        /// Compact up to a point at or below the commit index.
        Compact(u64),
        /// Install a snapshot past the commit index, at an entry held (keep
        /// the suffix) or not.
        Install(u64, bool),
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            5 => (0u64..3).prop_map(Op::Append),
            3 => (1usize..13, 0u64..2).prop_map(|(count, bump)| Op::AppendRun(count, bump)),
            2 => (2usize..21, 1usize..20).prop_map(|(count, split)| Op::AppendSplitRun(count, split.min(count - 1))),
            1 => (1usize..4).prop_map(Op::CloneAndDiverge),
            2 => any::<u64>().prop_map(Op::Truncate),
            1 => any::<u64>().prop_map(Op::Commit),
            1 => any::<u64>().prop_map(Op::Compact),
            1 => (any::<u64>(), any::<bool>()).prop_map(|(seed, keep)| Op::Install(seed, keep)),
        ]
    }

    struct Model {
        base: LogPosition,
        entries: Vec<Entry>,
        commit: Index,
    }

    impl Model {
        fn last_index(&self) -> Index {
            self.base.index + self.entries.len() as Index
        }

        fn term_at(&self, index: Index) -> Option<Term> {
            if index == self.base.index {
                return Some(self.base.term);
            }
            self.entries
                .iter()
                .find(|entry| entry.index == index)
                .map(|entry| entry.term)
        }
    }

    fn entry(index: Index, term: Term) -> Entry {
        Entry {
            term,
            index,
            payload: EntryPayload::Command(bytes::Bytes::from(vec![0u8; (index % 7) as usize])),
        }
    }

    /// A log holding `entries` after `base`: one run, or with `split`
    /// runs of one to three entries, so that reads cross run boundaries.
    fn build(base: LogPosition, entries: &[Entry], split: bool) -> RaftLog {
        let mut log = RaftLog::new(base, Vec::new(), base.index);
        if split {
            let mut rest = entries;
            let mut size = 1;
            while !rest.is_empty() {
                let take = size.min(rest.len());
                log.append_run(Entries::from(rest[..take].to_vec()));
                rest = &rest[take..];
                size = size % 3 + 1;
            }
        } else {
            log.append_run(Entries::from(entries.to_vec()));
        }
        log
    }

    fn check(log: &RaftLog, model: &Model) -> Result<(), TestCaseError> {
        let last = model.last_index();
        prop_assert_eq!(log.first_index(), model.base.index + 1);
        prop_assert_eq!(log.last_index(), last);
        prop_assert_eq!(
            log.last_position(),
            model.entries.last().map_or(model.base, Entry::position)
        );
        prop_assert_eq!(log.commit_index(), model.commit);
        for index in model.base.index..=last + 2 {
            let term = model.term_at(index);
            prop_assert_eq!(log.term_at(index), term, "term_at({})", index);
            let expected = model.entries.iter().find(|e| e.index == index);
            prop_assert_eq!(log.entry(index), expected);
            prop_assert_eq!(
                log.matches(LogPosition::new(index, term.unwrap_or(1))),
                term.is_some()
            );
            // The largest i <= index (within the log) with term_at(i) <= t.
            for t in 0..6 {
                let upper = index.min(last);
                let found = (model.base.index + 1..=upper)
                    .rev()
                    .find(|i| model.term_at(*i).unwrap() <= t)
                    .unwrap_or(model.base.index);
                let position = LogPosition::new(found, model.term_at(found).unwrap());
                prop_assert_eq!(
                    log.find_conflict_by_term(index, t),
                    position,
                    "find_conflict_by_term({}, {})",
                    index,
                    t
                );
            }
        }
        for from in model.base.index + 1..=last + 1 {
            for (count_max, bytes_max) in [(1, usize::MAX), (3, usize::MAX), (100, 60), (2, 0)] {
                let mut expected: Vec<Entry> = Vec::new();
                let mut bytes = 0;
                for entry in model.entries.iter().filter(|e| e.index >= from) {
                    if expected.len() == count_max {
                        break;
                    }
                    bytes += entry.size_bytes();
                    if !expected.is_empty() && bytes > bytes_max {
                        break;
                    }
                    expected.push(entry.clone());
                }
                prop_assert_eq!(log.entries_from(from, count_max, bytes_max), expected);
            }
            let slice: Vec<Entry> = model
                .entries
                .iter()
                .filter(|e| e.index >= from)
                .cloned()
                .collect();
            prop_assert_eq!(log.slice(from, last), slice);
        }
        Ok(())
    }

    /// Every way entries enter and leave segments, in one fixed sequence
    /// short enough for Miri (`cargo +nightly miri test -p concord --lib
    /// -- entries:: log::tests::segments`), which checks the reads and
    /// drops of the shared slots; natively it checks the contents.
    #[test]
    fn segments_keep_every_entry_through_appends_truncation_clones_and_compaction() {
        let mut log = RaftLog::new(LogPosition::ZERO, Vec::new(), 0);
        let mut model: Vec<Entry> = Vec::new();
        let fresh = |from: Index, count: Index, term: Term| -> Vec<Entry> {
            (from..from + count).map(|i| entry(i, term)).collect()
        };
        // Proposals fill the newest segment; slices handed out meanwhile
        // (writes, appends, applies) keep reading their entries.
        let mut handed_out = Vec::new();
        for index in 1..=40 {
            log.append(entry(index, 1));
            model.push(entry(index, 1));
            handed_out.push(log.slice(index, index));
        }
        // A shared run continues in pieces (a follower's appends), then an
        // unshared one is moved in, then a large one stays a run.
        let shared = Entries::from(fresh(41, 12, 2));
        log.append_run(shared.slice(0..3));
        log.append_run(shared.slice(3..12));
        log.append_run(Entries::from(fresh(53, 2, 2)));
        log.append_run(Entries::from(fresh(55, 20, 3)));
        model.extend(fresh(41, 14, 2));
        model.extend(fresh(55, 20, 3));
        // Truncation inside a segment that a slice still reads past the
        // cut; the next proposal must not overwrite that slice's slots.
        let past_cut = log.slice(60, 74);
        log.truncate_after(59);
        model.truncate(59);
        log.append(entry(60, 4));
        model.push(entry(60, 4));
        assert_eq!(past_cut[0].term, 3, "a slice past the cut is unchanged");
        // A clone proposes into the segment the two share; the original
        // then proposes too and must land elsewhere.
        let mut clone = log.clone();
        clone.append(entry(61, 5));
        log.append(entry(61, 4));
        model.push(entry(61, 4));
        assert_eq!(clone.entry(61).map(|e| e.term), Some(5));
        drop(clone);
        log.commit_to(61);
        log.compact_to(30);
        for index in 31..=61 {
            assert_eq!(
                log.entry(index),
                model.get(index as usize - 1),
                "entry {index}"
            );
        }
        for (index, slice) in (1..).zip(&handed_out) {
            assert_eq!(slice.as_slice(), &model[index - 1..index]);
        }
        assert_eq!(log.entries_from(31, 100, usize::MAX), model[30..].to_vec());
        assert_eq!(log.slice(50, 61).into_vec(), model[49..61].to_vec());
    }

    proptest! {
        #[test]
        fn log_agrees_with_a_vec_model(
            base_index in 0u64..4,
            base_term in 0u64..3,
            initial in prop::collection::vec(0u64..2, 0..8),
            split in any::<bool>(),
            ops in prop::collection::vec(arb_op(), 0..40),
        ) {
            let base = if base_index == 0 {
                LogPosition::ZERO
            } else {
                LogPosition::new(base_index, base_term)
            };
            let mut term = base.term;
            let entries: Vec<Entry> = initial
                .iter()
                .enumerate()
                .map(|(i, bump)| {
                    term += bump;
                    entry(base.index + 1 + i as Index, term)
                })
                .collect();
            let mut log = build(base, &entries, split);
            let mut model = Model { base, entries, commit: base.index };
            check(&log, &model)?;
            for op in ops {
                match op {
                    Op::Append(bump) => {
                        let last = model.entries.last().map_or(model.base, Entry::position);
                        let new = entry(last.index + 1, last.term + bump);
                        log.append(new.clone());
                        model.entries.push(new);
                    }
                    Op::AppendRun(count, bump) => {
                        let last = model.entries.last().map_or(model.base, Entry::position);
                        let run: Vec<Entry> = (1..=count as Index)
                            .map(|i| entry(last.index + i, last.term + bump))
                            .collect();
                        log.append_run(Entries::from(run.clone()));
                        model.entries.extend(run);
                    }
                    Op::AppendSplitRun(count, split) => {
                        let last = model.entries.last().map_or(model.base, Entry::position);
                        let run: Vec<Entry> = (1..=count as Index)
                            .map(|i| entry(last.index + i, last.term))
                            .collect();
                        let shared = Entries::from(run.clone());
                        log.append_run(shared.slice(0..split));
                        log.append_run(shared.slice(split..count));
                        model.entries.extend(run);
                    }
                    Op::CloneAndDiverge(count) => {
                        let mut clone = log.clone();
                        let last = model.entries.last().map_or(model.base, Entry::position);
                        let diverging: Vec<Entry> = (1..=count as Index)
                            .map(|i| entry(last.index + i, last.term + 1))
                            .collect();
                        clone.append_new(count, diverging.iter().cloned());
                        prop_assert_eq!(clone.last_index(), last.index + count as Index);
                        prop_assert_eq!(clone.entry(last.index + 1), diverging.first());
                        check(&log, &model)?;
                        drop(clone);
                    }
                    Op::Truncate(seed) => {
                        let low = model.commit;
                        let index = low + seed % (model.last_index() - low + 1);
                        log.truncate_after(index);
                        model.entries.retain(|e| e.index <= index);
                    }
                    Op::Commit(seed) => {
                        let low = model.commit;
                        let index = low + seed % (model.last_index() - low + 1);
                        log.commit_to(index);
                        model.commit = index;
                    }
                    Op::Compact(seed) => {
                        let low = model.base.index;
                        let index = low + seed % (model.commit - low + 1);
                        log.compact_to(index);
                        if index > model.base.index {
                            model.base = LogPosition::new(index, model.term_at(index).unwrap());
                            model.entries.retain(|e| e.index > index);
                        }
                    }
                    Op::Install(seed, keep) => {
                        let last = model.last_index();
                        if keep && last > model.commit {
                            let index = model.commit + 1 + seed % (last - model.commit);
                            let position = LogPosition::new(index, model.term_at(index).unwrap());
                            log.install_snapshot(position, true);
                            model.base = position;
                            model.entries.retain(|e| e.index > index);
                        } else {
                            let index = model.commit + 1 + seed % 5;
                            let term = model.entries.last().map_or(model.base.term, |e| e.term) + 1;
                            let position = LogPosition::new(index, term);
                            log.install_snapshot(position, false);
                            model.base = position;
                            model.entries.clear();
                        }
                        model.commit = model.base.index;
                    }
                }
                check(&log, &model)?;
            }
        }

        /// The guards hold: a committed entry is never truncated, the
        /// commit index never goes back or past the log, and appends must
        /// be contiguous with non-decreasing terms.
        #[test]
        fn log_refuses_to_break_its_invariants(len in 2u64..8, commit in 1u64..8) {
            let commit = commit.min(len);
            let entries: Vec<Entry> = (1..=len).map(|i| entry(i, 2)).collect();
            let fresh = || RaftLog::new(LogPosition::ZERO, entries.clone(), commit);
            let panics = |f: &dyn Fn(&mut RaftLog)| {
                let mut log = fresh();
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut log))).is_err()
            };
            prop_assert!(panics(&|log| log.truncate_after(commit - 1)));
            prop_assert!(!panics(&|log| log.truncate_after(commit)));
            prop_assert!(panics(&|log| log.commit_to(commit - 1)));
            prop_assert!(panics(&|log| log.commit_to(len + 1)));
            prop_assert!(panics(&|log| log.append(entry(len + 2, 2))));
            prop_assert!(panics(&|log| log.append(entry(len + 1, 1))));
            prop_assert!(!panics(&|log| log.append(entry(len + 1, 3))));
            // Never compacted past the commit index; nothing is read below
            // the base.
            prop_assert!(!panics(&|log| log.compact_to(commit)));
            if commit < len {
                prop_assert!(panics(&|log| log.compact_to(commit + 1)));
            }
            let read_below_base = |log: &mut RaftLog| {
                log.compact_to(commit);
                log.entries_from(commit, 1, usize::MAX);
            };
            prop_assert!(panics(&read_below_base));
            prop_assert!(panics(&|log| log.install_snapshot(LogPosition::new(commit, 2), true)));
        }
    }
}
