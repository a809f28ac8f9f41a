//! The event queue: events in order of (virtual time, sequence number).
//!
//! Every engine event passes through here once. Each event is named by a
//! 128-bit key, time and sequence number packed with the slot of the
//! event in a side table, so keys are unique and their order is exactly
//! that of `(time, sequence number)`: the queue pops the same events in
//! the same order as any other priority queue would.
//!
//! The engine never schedules an event before the one it is running
//! (`now + delay`, and the sequence number grows), and most events fall
//! within a few milliseconds of now (message deliveries, disk syncs,
//! ticks). So the queue is a calendar: a ring of buckets of
//! `2^BUCKET_SHIFT` ns each covering the next `BUCKETS` of them, plus a
//! binary heap for the rare events beyond (client timeouts, the fault
//! plan, the end of the run). A bucket holds about one event, so a push is
//! a `Vec::push` and a pop a scan of a bitmap and of one short bucket,
//! where a binary heap of every event sifts through `log2(n)` levels with
//! two 128-bit comparisons on each.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Bits of a key's low word that hold the event's slot.
const SLOT_BITS: u32 = 24;
/// Most events waiting at once.
const SLOTS_MAX: usize = 1 << SLOT_BITS;
/// Sequence numbers must fit the low word above the slot.
const SEQ_MAX: u64 = (1 << (64 - SLOT_BITS)) - 1;
/// A bucket spans `2^BUCKET_SHIFT` ns (about 130 µs: mostly one event or none).
const BUCKET_SHIFT: u32 = 17;
/// Buckets in the ring (about a quarter of a second ahead).
const BUCKETS: usize = 2048;
/// Words of the ring's occupancy bitmap.
const WORDS: usize = BUCKETS / 64;

/// A min-queue of events of type `E` by `(time_ns, seq)`, for events never
/// scheduled before the last one popped.
pub(super) struct EventQueue<E> {
    /// Number of the bucket (time >> `BUCKET_SHIFT`) of the last event
    /// popped: the ring holds the keys of buckets `current` to
    /// `current + BUCKETS - 1`, each at its number modulo `BUCKETS`.
    current: u64,
    /// The last key popped (0 before the first pop).
    last: u128,
    ring: Vec<Vec<u128>>,
    /// Bit `i % 64` of word `i / 64` is set when `ring[i]` is not empty.
    occupied: [u64; WORDS],
    /// Keys beyond the ring when they were pushed.
    far: BinaryHeap<Reverse<u128>>,
    events: Vec<Option<E>>,
    free: Vec<u32>,
}

impl<E> EventQueue<E> {
    pub(super) fn new() -> Self {
        EventQueue {
            current: 0,
            last: 0,
            ring: (0..BUCKETS).map(|_| Vec::new()).collect(),
            occupied: [0; WORDS],
            far: BinaryHeap::new(),
            events: Vec::new(),
            free: Vec::new(),
        }
    }

    /// Queues `event` at `time_ns`; `seq` orders events of one time and is
    /// unique per event (the engine's counter). The pair must come after
    /// that of the last event popped.
    pub(super) fn push(&mut self, time_ns: u64, seq: u64, event: E) {
        // Both limits are far beyond any run (a run stops after a few
        // million node steps); crossing one would silently reorder events.
        assert!(
            seq <= SEQ_MAX,
            "more than {SEQ_MAX} events scheduled in one run"
        );
        let slot = match self.free.pop() {
            Some(slot) => {
                self.events[slot as usize] = Some(event);
                slot
            }
            None => {
                assert!(
                    self.events.len() < SLOTS_MAX,
                    "more than {SLOTS_MAX} events waiting at once"
                );
                self.events.push(Some(event));
                (self.events.len() - 1) as u32
            }
        };
        let low = (seq << SLOT_BITS) | u64::from(slot);
        let key = (u128::from(time_ns) << 64) | u128::from(low);
        // A key below the last one popped would land in a bucket already
        // passed: the engine only schedules forward in time.
        assert!(
            key > self.last,
            "an event scheduled before the event being run"
        );
        let bucket = time_ns >> BUCKET_SHIFT;
        if bucket - self.current < BUCKETS as u64 {
            let index = bucket as usize % BUCKETS;
            self.ring[index].push(key);
            self.occupied[index / 64] |= 1 << (index % 64);
        } else {
            self.far.push(Reverse(key));
        }
    }

    /// The earliest event with its time.
    pub(super) fn pop(&mut self) -> Option<(u64, E)> {
        let near = self.first_occupied();
        // Ring keys lie in buckets `current..current + BUCKETS`, in order
        // around the ring from `current`, so the first occupied bucket
        // holds the smallest of them; a far key may have come into that
        // range since it was pushed, hence the comparison.
        let near_key = near.map(|index| {
            let bucket = &self.ring[index];
            let (position, key) = bucket
                .iter()
                .copied()
                .enumerate()
                .min_by_key(|(_, key)| *key)
                .expect("an occupied bucket holds a key");
            (index, position, key)
        });
        let far_key = self.far.peek().map(|Reverse(key)| *key);
        let key = match (near_key, far_key) {
            (Some((index, position, key)), far) if far.is_none_or(|far| key < far) => {
                let bucket = &mut self.ring[index];
                bucket.swap_remove(position);
                if bucket.is_empty() {
                    self.occupied[index / 64] &= !(1 << (index % 64));
                }
                key
            }
            (_, Some(_)) => self.far.pop().expect("peeked").0,
            (_, None) => return None,
        };
        self.last = key;
        let time_ns = (key >> 64) as u64;
        self.current = time_ns >> BUCKET_SHIFT;
        let slot = (key as u64 & ((1 << SLOT_BITS) - 1)) as u32;
        let event = self.events[slot as usize]
            .take()
            .expect("every queued key names a filled slot");
        self.free.push(slot);
        Some((time_ns, event))
    }

    /// The first occupied ring bucket at or after `current`'s, around the
    /// ring.
    fn first_occupied(&self) -> Option<usize> {
        let start = self.current as usize % BUCKETS;
        let (word, bit) = (start / 64, start % 64);
        let here = self.occupied[word] & (!0u64 << bit);
        if here != 0 {
            return Some(word * 64 + here.trailing_zeros() as usize);
        }
        for step in 1..=WORDS {
            let next = (word + step) % WORDS;
            // Back at the starting word: only its bits before `start`.
            let bits = if step == WORDS {
                self.occupied[next] & !(!0u64 << bit)
            } else {
                self.occupied[next]
            };
            if bits != 0 {
                return Some(next * 64 + bits.trailing_zeros() as usize);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_by_time_then_sequence_number() {
        let mut queue = EventQueue::new();
        let mut seq = 0;
        let mut reference = Vec::new();
        // Times repeat, so the sequence number decides among equals; slots
        // are reused after pops.
        for round in 0..3u64 {
            for time in [5u64, 1, 5, 3, u64::MAX, 0, 3] {
                seq += 1;
                let time = time.saturating_add(round);
                queue.push(time, seq, seq);
                reference.push((time, seq));
            }
            let (time, event) = queue.pop().expect("non-empty");
            reference.sort_unstable();
            assert_eq!((time, event), reference.remove(0));
        }
        reference.sort_unstable();
        let mut popped = Vec::new();
        while let Some(entry) = queue.pop() {
            popped.push(entry);
        }
        assert_eq!(popped, reference);
    }

    /// The engine's pattern: pop the earliest event, schedule a few more at
    /// `now + delay` with delays from 0 to beyond the ring of buckets
    /// (equal times included), and compare with a sorted reference.
    #[test]
    fn pops_in_order_under_forward_scheduling() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let mut queue = EventQueue::new();
        let mut reference = std::collections::BTreeSet::new();
        let (mut now, mut seq) = (0u64, 0u64);
        for step in 0..20_000u32 {
            let pushes = if step < 50 { 3 } else { rng.gen_range(0..3) };
            for _ in 0..pushes {
                let delay = match rng.gen_range(0..4) {
                    0 => 0,
                    1 => rng.gen_range(0..1_000),
                    2 => rng.gen_range(0..10_000_000),
                    _ => rng.gen_range(0..u64::from(u32::MAX) << 8),
                };
                seq += 1;
                let time = now.saturating_add(delay);
                queue.push(time, seq, seq);
                reference.insert((time, seq));
            }
            let expected = reference.pop_first();
            assert_eq!(queue.pop(), expected, "pop {step}");
            if let Some((time, _)) = expected {
                now = time;
            }
        }
        while let Some(expected) = reference.pop_first() {
            assert_eq!(queue.pop(), Some(expected));
        }
        assert_eq!(queue.pop(), None);
    }

    #[test]
    #[should_panic(expected = "before the event being run")]
    fn refuses_an_event_before_the_last_popped() {
        let mut queue = EventQueue::new();
        queue.push(10, 1, ());
        queue.push(20, 2, ());
        assert_eq!(queue.pop(), Some((10, ())));
        queue.push(5, 3, ());
    }
}
