//! [`Entries`]: a run of consecutive log entries that every write, append
//! and apply of it shares instead of copying.
//!
//! The log keeps entries in the runs they arrived in (a proposal batch, or
//! the entries of one AppendEntries). Handing a run, or part of one, to the
//! host to persist, to a follower in an append and to the state machine
//! costs one reference count per run, where a `Vec<Entry>` per action cost
//! an allocation plus a clone (a payload reference count) per entry.

use std::fmt;
use std::ops::{Deref, Range};
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::types::Entry;

/// Consecutive log entries, shared: cloning an `Entries` or taking a
/// [`slice`](Entries::slice) of it copies no entry.
///
/// It dereferences to `[Entry]`, so it is read like a slice (`len`,
/// `iter`, `last`, indexing). Build one from a `Vec<Entry>` or an iterator
/// of entries. Serialized exactly as a sequence of entries (the same bytes
/// as a `Vec<Entry>`).
#[derive(Clone, Default)]
pub struct Entries {
    /// `None` when empty, so that an empty run allocates nothing.
    run: Option<Arc<[Entry]>>,
    /// The part of `run` this value covers. `u32` keeps an `Entries` as
    /// small as the `Vec<Entry>` it replaced in every action and message
    /// (a run is one proposal batch or one message: far fewer entries).
    start: u32,
    end: u32,
}

/// The most entries one run holds.
const RUN_ENTRIES_MAX: usize = u32::MAX as usize;

/// A whole run, checked against [`RUN_ENTRIES_MAX`].
fn whole(run: Arc<[Entry]>) -> Entries {
    if run.is_empty() {
        return Entries::new();
    }
    assert!(
        run.len() <= RUN_ENTRIES_MAX,
        "a run of {} entries (at most {RUN_ENTRIES_MAX})",
        run.len()
    );
    let end = run.len() as u32;
    Entries {
        run: Some(run),
        start: 0,
        end,
    }
}

impl Entries {
    /// No entries.
    pub const fn new() -> Self {
        Entries {
            run: None,
            start: 0,
            end: 0,
        }
    }

    /// The entries at positions `range` of this run, sharing them.
    ///
    /// # Panics
    ///
    /// If `range` is not within `0..self.len()`, like slice indexing.
    pub fn slice(&self, range: Range<usize>) -> Entries {
        assert!(
            range.start <= range.end && range.end <= self.len(),
            "entries {}..{} of a run of {}",
            range.start,
            range.end,
            self.len()
        );
        if range.start == range.end {
            return Entries::new();
        }
        Entries {
            run: self.run.clone(),
            start: self.start + range.start as u32,
            end: self.start + range.end as u32,
        }
    }

    /// The entries, copied into a vector of their own (payloads are
    /// reference counted, not copied).
    pub fn into_vec(self) -> Vec<Entry> {
        self.as_slice().to_vec()
    }

    /// The entries as a slice.
    pub fn as_slice(&self) -> &[Entry] {
        match &self.run {
            Some(run) => &run[self.start as usize..self.end as usize],
            None => &[],
        }
    }
}

impl Deref for Entries {
    type Target = [Entry];

    fn deref(&self) -> &[Entry] {
        self.as_slice()
    }
}

impl From<Vec<Entry>> for Entries {
    fn from(entries: Vec<Entry>) -> Self {
        whole(Arc::from(entries))
    }
}

impl FromIterator<Entry> for Entries {
    fn from_iter<I: IntoIterator<Item = Entry>>(entries: I) -> Self {
        whole(entries.into_iter().collect())
    }
}

impl<'a> IntoIterator for &'a Entries {
    type Item = &'a Entry;
    type IntoIter = std::slice::Iter<'a, Entry>;

    fn into_iter(self) -> Self::IntoIter {
        self.as_slice().iter()
    }
}

/// Owned iteration clones each entry (a payload reference count each):
/// the run may be shared.
impl IntoIterator for Entries {
    type Item = Entry;
    type IntoIter = std::vec::IntoIter<Entry>;

    fn into_iter(self) -> Self::IntoIter {
        self.into_vec().into_iter()
    }
}

impl PartialEq for Entries {
    fn eq(&self, other: &Entries) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Entries {}

impl PartialEq<Vec<Entry>> for Entries {
    fn eq(&self, other: &Vec<Entry>) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl fmt::Debug for Entries {
    /// Exactly as the slice of entries, so traces and messages print as
    /// they did with a `Vec<Entry>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_slice(), f)
    }
}

impl Serialize for Entries {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.as_slice().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<Entry>::deserialize(deserializer).map(Entries::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::EntryPayload;
    use bytes::Bytes;

    fn run(first: u64, count: u64) -> Vec<Entry> {
        (first..first + count)
            .map(|index| Entry {
                term: 1,
                index,
                payload: EntryPayload::Command(Bytes::from(index.to_le_bytes().to_vec())),
            })
            .collect()
    }

    #[test]
    fn a_slice_shares_the_run_and_reads_as_its_part() {
        let entries = Entries::from(run(1, 5));
        let middle = entries.slice(1..4);
        assert_eq!(middle.len(), 3);
        assert_eq!(middle[0].index, 2);
        assert_eq!(middle.last().map(|e| e.index), Some(4));
        assert!(Arc::ptr_eq(
            entries.run.as_ref().unwrap(),
            middle.run.as_ref().unwrap()
        ));
        let inner = middle.slice(1..2);
        assert_eq!(inner.as_slice(), &run(3, 1)[..]);
        assert!(middle.slice(2..2).is_empty());
    }

    /// Every action and AppendEntries carries one: no bigger than the
    /// `Vec<Entry>` it replaced.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn entries_are_as_small_as_a_vec() {
        assert!(std::mem::size_of::<Entries>() <= std::mem::size_of::<Vec<Entry>>());
        assert!(
            std::mem::size_of::<crate::Action>() <= 120,
            "Action grew to {} bytes",
            std::mem::size_of::<crate::Action>()
        );
    }

    #[test]
    fn printed_like_a_vec_of_entries() {
        let vec = run(7, 3);
        let entries = Entries::from(vec.clone());
        assert_eq!(format!("{entries:?}"), format!("{vec:?}"));
        assert_eq!(
            format!("{:?}", Entries::new()),
            format!("{:?}", Vec::<Entry>::new())
        );
        assert_eq!(entries, vec);
        assert_eq!(entries.clone().into_vec(), vec);
    }

    /// The wire format of the tokio runtime must not change with the type.
    #[cfg(feature = "tokio")]
    #[test]
    fn serialized_like_a_vec_of_entries() {
        let config = bincode::config::standard();
        let vec = run(7, 4);
        let entries = Entries::from(run(6, 6)).slice(1..5);
        let bytes = bincode::serde::encode_to_vec(&entries, config).expect("encodes");
        assert_eq!(
            bytes,
            bincode::serde::encode_to_vec(&vec, config).expect("encodes")
        );
        let (back, _): (Entries, usize) =
            bincode::serde::decode_from_slice(&bytes, config).expect("decodes");
        assert_eq!(back, vec);
    }
}
