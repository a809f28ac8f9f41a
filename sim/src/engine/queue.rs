//! The event queue: events in order of (virtual time, sequence number).
//!
//! Every engine event passes through here once, so the heap holds only a
//! 16-byte key per event, time and sequence number packed with the slot of
//! the event in a side table: sifting moves small words, and comparing two
//! keys is one 128-bit comparison. The order is exactly that of
//! `(time, sequence number)`, which is unique per event, so the queue pops
//! the same events in the same order as any other priority queue would.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Bits of a key's low word that hold the event's slot.
const SLOT_BITS: u32 = 24;
/// Most events waiting at once.
const SLOTS_MAX: usize = 1 << SLOT_BITS;
/// Sequence numbers must fit the low word above the slot.
const SEQ_MAX: u64 = (1 << (64 - SLOT_BITS)) - 1;

/// A min-queue of events of type `E` by `(time_ns, seq)`.
pub(super) struct EventQueue<E> {
    heap: BinaryHeap<Reverse<u128>>,
    events: Vec<Option<E>>,
    free: Vec<u32>,
}

impl<E> EventQueue<E> {
    pub(super) fn new() -> Self {
        EventQueue {
            heap: BinaryHeap::new(),
            events: Vec::new(),
            free: Vec::new(),
        }
    }

    /// Queues `event` at `time_ns`; `seq` orders events of one time and is
    /// unique per event (the engine's counter).
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
        self.heap
            .push(Reverse((u128::from(time_ns) << 64) | u128::from(low)));
    }

    /// The earliest event with its time.
    pub(super) fn pop(&mut self) -> Option<(u64, E)> {
        let Reverse(key) = self.heap.pop()?;
        let time_ns = (key >> 64) as u64;
        let slot = (key as u64 & ((1 << SLOT_BITS) - 1)) as u32;
        let event = self.events[slot as usize]
            .take()
            .expect("every queued key names a filled slot");
        self.free.push(slot);
        Some((time_ns, event))
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
}
