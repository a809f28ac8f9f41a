//! [`Entries`]: consecutive log entries that every write, append and apply
//! of them shares instead of copying.
//!
//! Entries live in *segments*: buffers of slots that are written once, in
//! order, and never changed after. An [`Entries`] is a reference-counted
//! segment and a range of its written slots. The log appends a leader's
//! proposals, one batch after another, into the free slots of its newest
//! segment, so that a run of single-entry proposals shares one allocation
//! and one segment; handing part of it to the host to persist, to a
//! follower in an append or to the state machine costs one reference
//! count, where a `Vec<Entry>` per action cost an allocation plus a clone
//! (a payload reference count) per entry.
//!
//! This is the one module of the crate with `unsafe` code: a slot is
//! written while other holders of the segment read the slots before it,
//! which safe Rust cannot express without giving up `Deref<[Entry]>`. The
//! argument for it is in [`Segment`]'s comments; `scripts/miri.sh` runs
//! this module's tests (and the log's segment scenario) under Miri.
#![allow(unsafe_code)]

use std::cell::UnsafeCell;
use std::fmt;
use std::mem::{ManuallyDrop, MaybeUninit};
use std::ops::{Deref, Range};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::types::Entry;

/// One slot of a segment. `UnsafeCell` and `MaybeUninit` are both
/// `repr(transparent)`, so a slot has exactly an `Entry`'s layout.
type Slot = UnsafeCell<MaybeUninit<Entry>>;

/// A buffer of entry slots written once each, in order.
///
/// Why this is sound:
/// - Slots `0..filled` are claimed; `filled` only grows. A slot is written
///   by the one caller of [`Segment::try_write`] whose compare-exchange of
///   `filled` claimed it, once, before that caller builds any [`Entries`]
///   covering it.
/// - Every `Entries` covers a range of slots its builder wrote (or that
///   were written when the segment was built from a vector), so every slot
///   an `Entries` covers was written before the `Entries` existed and is
///   never written again. A reader (any thread) and a writer (the log
///   appending) therefore never touch the same slot: a writer only writes
///   past every range handed out.
/// - Every `Entries` holds an `Arc` of its segment, so the segment (and
///   its buffer) outlives every slice read from it; the last `Arc` to go
///   drops the claimed slots, and every writer finished its write before
///   it released its own `Arc` (the `Arc`'s release/acquire orders them).
struct Segment {
    slots: Box<[Slot]>,
    /// Slots claimed: written, or being written by their claimer.
    filled: AtomicUsize,
}

// SAFETY: see `Segment`: no slot is read and written at once, and a slot
// is written before any thread can read it (the `Entries` covering it is
// built after the write and reaches other threads only through whatever
// synchronizes the handover). `Entry` is `Send + Sync`.
unsafe impl Sync for Segment {}

impl Segment {
    /// An empty segment with room for `capacity` entries.
    fn with_capacity(capacity: usize) -> Segment {
        let slots: Box<[Slot]> = (0..capacity)
            .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
            .collect();
        Segment {
            slots,
            filled: AtomicUsize::new(0),
        }
    }

    /// A segment holding `entries`, in its buffer (no copy).
    fn from_vec(entries: Vec<Entry>) -> Segment {
        let mut entries = ManuallyDrop::new(entries);
        let (pointer, len, capacity) = (entries.as_mut_ptr(), entries.len(), entries.capacity());
        // SAFETY: a slot has an `Entry`'s size and alignment, so the
        // vector's buffer (allocated for `capacity` entries) is a valid
        // allocation of `capacity` slots, and the vector gave it up. Its
        // first `len` slots are initialized, as `filled` records.
        let slots = unsafe {
            Box::from_raw(std::ptr::slice_from_raw_parts_mut(
                pointer.cast::<Slot>(),
                capacity,
            ))
        };
        Segment {
            slots,
            filled: AtomicUsize::new(len),
        }
    }

    /// The written entries as a vector, in the segment's buffer (no copy).
    fn into_vec(mut self) -> Vec<Entry> {
        let len = std::mem::replace(self.filled.get_mut(), 0);
        let slots = std::mem::take(&mut self.slots);
        let capacity = slots.len();
        let pointer = Box::into_raw(slots).cast::<Entry>();
        // SAFETY: the reverse of `from_vec`: a buffer allocated for
        // `capacity` slots is one for `capacity` entries; we own it (the
        // segment was unique and no longer drops it: `filled` is 0 and its
        // slots are now empty), and its first `len` slots are written
        // (every claimer finished: we hold the only reference).
        unsafe { Vec::from_raw_parts(pointer, len, capacity) }
    }

    /// Writes `entry` into slot `at`, if `at` is the first unclaimed slot
    /// and within the capacity; otherwise hands `entry` back.
    fn try_write(&self, at: usize, entry: Entry) -> Result<(), Entry> {
        if at >= self.slots.len()
            || self
                .filled
                .compare_exchange(at, at + 1, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return Err(entry);
        }
        // SAFETY: the exchange made this call the only writer slot `at`
        // will ever have (`filled` only grows), and no `Entries` covers it
        // yet (they cover written slots only), so nothing reads it.
        unsafe { (*self.slots[at].get()).write(entry) };
        Ok(())
    }

    /// The entries in slots `range`.
    ///
    /// # Safety
    ///
    /// Every slot in `range` was written (the caller is an `Entries`
    /// covering them).
    unsafe fn entries(&self, range: Range<usize>) -> &[Entry] {
        debug_assert!(range.start <= range.end && range.end <= self.slots.len());
        // SAFETY: in bounds (asserted by the `Entries` invariants), the
        // slots are written and never written again (see `Segment`), and
        // a slot has an `Entry`'s layout.
        unsafe {
            std::slice::from_raw_parts(
                self.slots.as_ptr().add(range.start).cast::<Entry>(),
                range.end - range.start,
            )
        }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        let filled = *self.filled.get_mut();
        for slot in &mut self.slots[..filled] {
            // SAFETY: slots below `filled` were written (every claimer
            // finished before the last reference went), and are dropped
            // once, here.
            unsafe { slot.get_mut().assume_init_drop() };
        }
    }
}

/// Consecutive log entries, shared: cloning an `Entries` or taking a
/// [`slice`](Entries::slice) of it copies no entry.
///
/// It dereferences to `[Entry]`, so it is read like a slice (`len`,
/// `iter`, `last`, indexing). Build one from a `Vec<Entry>` or an iterator
/// of entries. Serialized exactly as a sequence of entries (the same bytes
/// as a `Vec<Entry>`).
#[derive(Clone, Default)]
pub struct Entries {
    /// `None` when empty and never given room, so that an empty value
    /// allocates nothing.
    segment: Option<Arc<Segment>>,
    /// The slots of `segment` this value covers, all written. `u32` keeps
    /// an `Entries` as small as the `Vec<Entry>` it replaced in every
    /// action and message.
    start: u32,
    end: u32,
}

/// The most slots a segment built here holds, and the most entries one
/// value covers: offsets are `u32`.
const RANGE_ENTRIES_MAX: usize = u32::MAX as usize;

impl Entries {
    /// No entries.
    pub const fn new() -> Self {
        Entries {
            segment: None,
            start: 0,
            end: 0,
        }
    }

    /// No entries yet, in a new segment with room for `capacity`, which
    /// [`Entries::try_push`] fills.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        assert!(
            capacity <= RANGE_ENTRIES_MAX,
            "a segment of {capacity} entries (at most {RANGE_ENTRIES_MAX})"
        );
        Entries {
            segment: Some(Arc::new(Segment::with_capacity(capacity))),
            start: 0,
            end: 0,
        }
    }

    /// Extends these entries by `entry`, written into the next slot of
    /// their segment, if they end at its first free slot and it has room;
    /// otherwise hands `entry` back (the caller starts a new segment).
    pub(crate) fn try_push(&mut self, entry: Entry) -> Result<(), Entry> {
        let Some(segment) = &self.segment else {
            return Err(entry);
        };
        // A segment built from a vector may have room past `u32::MAX`;
        // the range must stay representable.
        if self.end == u32::MAX {
            return Err(entry);
        }
        segment.try_write(self.end as usize, entry)?;
        self.end += 1;
        Ok(())
    }

    /// Free slots after these entries, if they end at the first free slot
    /// of their segment (so that [`Entries::try_push`] can extend them).
    pub(crate) fn room(&self) -> usize {
        match &self.segment {
            Some(segment) if segment.filled.load(Ordering::Relaxed) == self.end as usize => {
                segment.slots.len() - self.end as usize
            }
            _ => 0,
        }
    }

    /// Extends these entries by `next` when `next` directly follows them
    /// in the same segment (the next part of one run of a leader's
    /// proposals, say); otherwise hands `next` back.
    pub(crate) fn try_join(&mut self, next: Entries) -> Result<(), Entries> {
        match (&self.segment, &next.segment) {
            (Some(mine), Some(theirs)) if Arc::ptr_eq(mine, theirs) && self.end == next.start => {
                self.end = next.end;
                Ok(())
            }
            _ => Err(next),
        }
    }

    /// Whether another value holds (part of) the same segment.
    pub(crate) fn is_shared(&self) -> bool {
        self.segment
            .as_ref()
            .is_some_and(|segment| Arc::strong_count(segment) > 1)
    }

    /// The entries at positions `range` of these, sharing them.
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
            segment: self.segment.clone(),
            start: self.start + range.start as u32,
            end: self.start + range.end as u32,
        }
    }

    /// The entries as a vector of their own: moved out when nothing else
    /// shares them, else cloned (payloads are reference counted, not
    /// copied).
    pub fn into_vec(self) -> Vec<Entry> {
        let (start, end) = (self.start as usize, self.end as usize);
        let Some(segment) = self.segment else {
            return Vec::new();
        };
        match Arc::try_unwrap(segment) {
            Ok(segment) => {
                let mut all = segment.into_vec();
                all.truncate(end);
                all.drain(..start);
                all
            }
            // SAFETY: `start..end` are written slots (the invariant of
            // the `Entries` this was).
            Err(segment) => unsafe { segment.entries(start..end) }.to_vec(),
        }
    }

    /// The entries as a slice.
    pub fn as_slice(&self) -> &[Entry] {
        match &self.segment {
            // SAFETY: an `Entries` covers written slots only.
            Some(segment) => unsafe { segment.entries(self.start as usize..self.end as usize) },
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
        if entries.is_empty() {
            return Entries::new();
        }
        assert!(
            entries.len() <= RANGE_ENTRIES_MAX,
            "a run of {} entries (at most {RANGE_ENTRIES_MAX})",
            entries.len()
        );
        let end = entries.len() as u32;
        Entries {
            segment: Some(Arc::new(Segment::from_vec(entries))),
            start: 0,
            end,
        }
    }
}

impl FromIterator<Entry> for Entries {
    fn from_iter<I: IntoIterator<Item = Entry>>(entries: I) -> Self {
        Entries::from(entries.into_iter().collect::<Vec<_>>())
    }
}

impl<'a> IntoIterator for &'a Entries {
    type Item = &'a Entry;
    type IntoIter = std::slice::Iter<'a, Entry>;

    fn into_iter(self) -> Self::IntoIter {
        self.as_slice().iter()
    }
}

/// Owned iteration moves the entries out when nothing else shares them,
/// else clones each (a payload reference count each).
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
    use std::sync::atomic::{AtomicUsize, Ordering};

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
            entries.segment.as_ref().unwrap(),
            middle.segment.as_ref().unwrap()
        ));
        let inner = middle.slice(1..2);
        assert_eq!(inner.as_slice(), &run(3, 1)[..]);
        assert!(middle.slice(2..2).is_empty());
    }

    /// A payload that counts its drops, so that a test sees every entry
    /// dropped exactly once.
    fn counted(index: u64, drops: &Arc<AtomicUsize>) -> Entry {
        struct Counted(Arc<AtomicUsize>, [u8; 8]);
        impl AsRef<[u8]> for Counted {
            fn as_ref(&self) -> &[u8] {
                &self.1
            }
        }
        impl Drop for Counted {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        Entry {
            term: 1,
            index,
            payload: EntryPayload::Command(Bytes::from_owner(Counted(
                drops.clone(),
                index.to_le_bytes(),
            ))),
        }
    }

    fn index_of(entry: &Entry) -> u64 {
        match &entry.payload {
            EntryPayload::Command(bytes) => u64::from_le_bytes(bytes[..8].try_into().unwrap()),
            _ => unreachable!(),
        }
    }

    #[test]
    fn pushes_fill_the_segment_while_earlier_slices_are_read() {
        let drops = Arc::new(AtomicUsize::new(0));
        let mut tail = Entries::with_capacity(4);
        assert_eq!(tail.room(), 4);
        tail.try_push(counted(1, &drops)).unwrap();
        let first = tail.slice(0..1);
        tail.try_push(counted(2, &drops)).unwrap();
        tail.try_push(counted(3, &drops)).unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(index_of(&first[0]), 1);
        assert_eq!(tail.iter().map(index_of).collect::<Vec<_>>(), [1, 2, 3]);
        // The first slice does not end at the free slot: it cannot push.
        let mut stale = first.clone();
        assert_eq!(stale.room(), 0);
        assert!(stale.try_push(counted(9, &drops)).is_err());
        assert_eq!(
            drops.load(Ordering::SeqCst),
            1,
            "the refused entry is dropped"
        );
        tail.try_push(counted(4, &drops)).unwrap();
        assert_eq!(tail.room(), 0);
        assert!(tail.try_push(counted(5, &drops)).is_err());
        drop(tail);
        assert_eq!(drops.load(Ordering::SeqCst), 2);
        assert_eq!(index_of(&first[0]), 1, "a slice keeps the segment alive");
        drop((first, stale));
        assert_eq!(drops.load(Ordering::SeqCst), 6, "every written entry once");
    }

    /// Two holders of one segment (as two clones of a log) both try the
    /// next slot: exactly one writes it.
    #[test]
    fn one_slot_is_written_by_one_holder() {
        let drops = Arc::new(AtomicUsize::new(0));
        let mut a = Entries::with_capacity(8);
        a.try_push(counted(1, &drops)).unwrap();
        let mut b = a.clone();
        a.try_push(counted(2, &drops)).unwrap();
        assert!(b.try_push(counted(20, &drops)).is_err());
        assert_eq!(b.len(), 1);
        assert_eq!(a.iter().map(index_of).collect::<Vec<_>>(), [1, 2]);
        drop((a, b));
        assert_eq!(drops.load(Ordering::SeqCst), 3);
    }

    /// A writer appends while other threads read the slices it handed
    /// out: each reader sees exactly the entries of its slice.
    #[test]
    fn readers_on_other_threads_see_their_slices_while_the_writer_appends() {
        let drops = Arc::new(AtomicUsize::new(0));
        let count: u64 = if cfg!(miri) { 24 } else { 2_000 };
        let mut tail = Entries::with_capacity(count as usize);
        let (send, receive) = std::sync::mpsc::channel::<Entries>();
        let reader = std::thread::spawn(move || {
            let mut next = 1;
            for slice in receive {
                for entry in slice.iter() {
                    assert_eq!(index_of(entry), next);
                    next += 1;
                }
            }
            next - 1
        });
        for index in 1..=count {
            tail.try_push(counted(index, &drops)).unwrap();
            send.send(tail.slice(tail.len() - 1..tail.len())).unwrap();
        }
        drop(send);
        assert_eq!(reader.join().unwrap(), count);
        drop(tail);
        assert_eq!(drops.load(Ordering::SeqCst), count as usize);
    }

    #[test]
    fn into_vec_moves_unshared_entries_and_clones_shared_ones() {
        let drops = Arc::new(AtomicUsize::new(0));
        let all: Entries = (1..=5).map(|index| counted(index, &drops)).collect();
        let shared = all.slice(1..4);
        let copy = shared.clone().into_vec();
        assert_eq!(copy.iter().map(index_of).collect::<Vec<_>>(), [2, 3, 4]);
        drop(all);
        assert_eq!(
            drops.load(Ordering::SeqCst),
            0,
            "`shared` holds the segment"
        );
        let moved = shared.into_vec();
        // The segment's other entries (1 and 5) went with it.
        assert_eq!(drops.load(Ordering::SeqCst), 2);
        assert_eq!(moved.iter().map(index_of).collect::<Vec<_>>(), [2, 3, 4]);
        drop((copy, moved));
        assert_eq!(drops.load(Ordering::SeqCst), 5);
        assert!(Entries::new().into_vec().is_empty());
        assert!(Entries::with_capacity(3).into_vec().is_empty());
    }

    #[test]
    fn joins_only_the_next_slots_of_the_same_segment() {
        let all = Entries::from(run(1, 6));
        let mut head = all.slice(0..2);
        assert!(head.try_join(all.slice(3..4)).is_err(), "a gap");
        assert!(
            head.try_join(Entries::from(run(3, 1))).is_err(),
            "another segment"
        );
        head.try_join(all.slice(2..5)).unwrap();
        assert_eq!(head.as_slice(), &run(1, 5)[..]);
    }

    /// Every action and AppendEntries carries one: no bigger than the
    /// `Vec<Entry>` it replaced. Messages and actions are moved several
    /// times per entry replicated (built, pushed, drained, queued, stepped),
    /// so their size is held down too: a rare, large variant is boxed.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn entries_messages_and_actions_stay_small() {
        assert!(std::mem::size_of::<Entries>() <= std::mem::size_of::<Vec<Entry>>());
        // 80 since a message names the leader's record of its follower
        // (`Message::progress_id`).
        assert!(
            std::mem::size_of::<crate::Message>() <= 80,
            "Message grew to {} bytes",
            std::mem::size_of::<crate::Message>()
        );
        // 96 since the hard state carries a storage recovery's floor
        // (`HardState::recovery`, 32 bytes) in every `Persist`.
        assert!(
            std::mem::size_of::<crate::Action>() <= 96,
            "Action grew to {} bytes",
            std::mem::size_of::<crate::Action>()
        );
        // 80 since its largest variant carries a message.
        assert!(
            std::mem::size_of::<crate::Input>() <= 80,
            "Input grew to {} bytes",
            std::mem::size_of::<crate::Input>()
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
    #[cfg(feature = "codec")]
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
