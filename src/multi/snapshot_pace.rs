//! The snapshot bandwidth limit of one server: a token bucket over the
//! layer's ticks that every snapshot chunk this node sends passes through.
//!
//! Why here and not in the host: the limit must hold for the runtime and
//! for the simulator alike, and both hand their chunks to the layer
//! ([`MultiInput::SendSnapshotChunk`](super::MultiInput::SendSnapshotChunk)).
//! The layer owns the clock (ticks) and the outbox, so pacing is one more
//! deterministic step of it, with no timer of the host's.
//!
//! The rule, with `rate` = `snapshot_send_bytes_per_tick_max`: the credit
//! starts at `rate`; each tick adds `rate` and caps it at `rate` (an idle
//! spell banks nothing, so a transfer after one does not leave in a
//! burst); a chunk leaves while the credit is positive and takes its
//! length from it, so the credit goes negative by less than one chunk.
//! Hence, over any `n` consecutive ticks, at most `n × rate +
//! snapshot_chunk_bytes_max` bytes of chunks leave the node.
//!
//! Chunks that wait are held in arrival order, at most
//! `snapshot_queue_bytes_max` bytes of them. One that would pass that is
//! dropped: the core's transfer protocol resends what its follower lacks,
//! so a dropped chunk costs time, never correctness.
//!
//! **Repeats.** A leader resends its window of chunks whenever a
//! transfer did not move between two heartbeat answers, and a paced
//! transfer often does not: held repeats would pile up faster than the
//! limit lets them out (a window of 4 chunks every 2 ticks against a
//! tenth of that leaving), and the transfer would never end. So a chunk
//! that repeats one waiting (same group, follower, snapshot and offset)
//! takes that one's place in the queue: the newest copy (its term and
//! progress id) leaves, at the older one's turn. To the follower that is
//! an older copy lost and a newer one delivered early, which any network
//! may do. (Seed 140 of 5 nodes, `--groups swarm`, once blamed on an
//! earlier pacer that dropped the newer copy, failed on a hole in the
//! simulator's host instead: see `keep_installed` in `sim/src/multi/host.rs`.)

use std::collections::{BTreeMap, VecDeque};

use crate::message::{Message, MessageBody};
use crate::types::{LogPosition, NodeId};

use super::frame::GroupId;

/// A chunk waiting for credit.
#[derive(Debug)]
struct Held {
    group: GroupId,
    key: ChunkKey,
    bytes: u64,
    message: Message,
}

/// What makes two chunks copies of one: group, follower, snapshot and
/// offset.
type ChunkKey = (GroupId, NodeId, LogPosition, u64);

/// The chunks of one transfer (group, follower, snapshot) waiting for
/// the bandwidth limit ([`MultiNode::snapshot_transfers_waiting`]).
///
/// [`MultiNode::snapshot_transfers_waiting`]: super::MultiNode::snapshot_transfers_waiting
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransferWaiting {
    /// The group.
    pub group: GroupId,
    /// The follower the chunks go to.
    pub to: NodeId,
    /// The snapshot they are cut from.
    pub snapshot: LogPosition,
    /// That snapshot's length, as the chunks carry it.
    pub size_bytes: u64,
    /// Chunks of it waiting.
    pub chunks: usize,
    /// Their data's bytes. Each chunk waits once, and chunks of one
    /// transfer do not overlap, so this is at most `size_bytes`.
    pub bytes: u64,
}

/// What the pacer did with a chunk offered to it.
#[derive(Debug)]
pub(crate) enum Offer {
    /// Send it now.
    Send(Message),
    /// Held until there is credit.
    Held,
    /// Took the place of a waiting copy of the same chunk.
    Replaced,
    /// Dropped: the queue is full.
    Dropped,
}

/// The token bucket of one node (see the module documentation).
#[derive(Debug)]
pub(crate) struct SnapshotPacer {
    /// `None`: no limit, and nothing is ever held.
    rate_bytes_per_tick: Option<u64>,
    queue_bytes_max: u64,
    /// May go below zero by less than one chunk.
    credit_bytes: i64,
    queue: VecDeque<Held>,
    /// The sequence number of `queue`'s front: a held chunk's place is
    /// its sequence number less this.
    front_seq: u64,
    /// Each waiting chunk's sequence number, by what it is a copy of.
    waiting: BTreeMap<ChunkKey, u64>,
    queued_bytes: u64,
    /// The planted `snapshot_repeats_queued` mistake was ever planted:
    /// repeats then wait behind their copies, so `waiting` indexes only
    /// the first copy of each chunk.
    repeats_queued: bool,
}

impl SnapshotPacer {
    pub(crate) fn new(rate_bytes_per_tick: Option<u64>, queue_bytes_max: u64) -> SnapshotPacer {
        SnapshotPacer {
            rate_bytes_per_tick,
            queue_bytes_max,
            credit_bytes: rate_bytes_per_tick.map_or(0, credit_of),
            queue: VecDeque::new(),
            front_seq: 0,
            waiting: BTreeMap::new(),
            queued_bytes: 0,
            repeats_queued: false,
        }
    }

    /// Bytes of chunks waiting.
    pub(crate) fn queued_bytes(&self) -> u64 {
        self.queued_bytes
    }

    /// Chunks waiting.
    pub(crate) fn queued_chunks(&self) -> usize {
        self.queue.len()
    }

    /// A chunk of `group` the host filled: send it now, hold it, put it
    /// in the place of a waiting copy, or drop it. Chunks keep their
    /// order: none passes one that waits. `repeats_queued` plants the
    /// mistake of holding a repeat behind its copy.
    pub(crate) fn offer(
        &mut self,
        group: GroupId,
        message: Message,
        repeats_queued: bool,
    ) -> Offer {
        self.repeats_queued |= repeats_queued;
        if self.rate_bytes_per_tick.is_none() {
            return Offer::Send(message);
        }
        let (key, bytes) = chunk_key(group, &message);
        if self.queue.is_empty() && self.credit_bytes > 0 {
            self.spend(bytes);
            return Offer::Send(message);
        }
        let copy_waiting = self.waiting.get(&key).copied();
        if let Some(seq) = copy_waiting.filter(|_| !repeats_queued) {
            let place = usize::try_from(seq - self.front_seq).expect("a queue place");
            let held = &mut self.queue[place];
            debug_assert_eq!(held.key, key);
            if self.queued_bytes - held.bytes + bytes <= self.queue_bytes_max {
                self.queued_bytes = self.queued_bytes - held.bytes + bytes;
                held.bytes = bytes;
                held.message = message;
                return Offer::Replaced;
            }
            return Offer::Dropped;
        }
        if self.queued_bytes + bytes > self.queue_bytes_max {
            return Offer::Dropped;
        }
        self.queued_bytes += bytes;
        if copy_waiting.is_none() {
            self.waiting
                .insert(key, self.front_seq + self.queue.len() as u64);
        }
        self.queue.push_back(Held {
            group,
            key,
            bytes,
            message,
        });
        Offer::Held
    }

    /// The waiting chunks by transfer, in key order (a walk of the queue:
    /// for checks).
    pub(crate) fn transfers_waiting(&self) -> Vec<TransferWaiting> {
        let mut transfers: BTreeMap<(GroupId, NodeId, LogPosition), TransferWaiting> =
            BTreeMap::new();
        for held in &self.queue {
            let (group, to, snapshot, _) = held.key;
            let size_bytes = match &held.message.body {
                MessageBody::InstallSnapshot(chunk) => chunk.size_bytes,
                _ => 0,
            };
            let transfer = transfers
                .entry((group, to, snapshot))
                .or_insert(TransferWaiting {
                    group,
                    to,
                    snapshot,
                    size_bytes,
                    chunks: 0,
                    bytes: 0,
                });
            transfer.size_bytes = transfer.size_bytes.max(size_bytes);
            transfer.chunks += 1;
            transfer.bytes += held.bytes;
        }
        transfers.into_values().collect()
    }

    /// One tick of the layer: adds a tick's credit (`banked` plants the
    /// mistake of letting it grow past one tick's worth) and hands every
    /// chunk the credit allows to `send`, in order.
    pub(crate) fn tick(&mut self, banked: bool, mut send: impl FnMut(GroupId, Message)) {
        let Some(rate) = self.rate_bytes_per_tick else {
            return;
        };
        let credit = credit_of(rate);
        self.credit_bytes = if banked {
            self.credit_bytes.saturating_add(credit)
        } else {
            (self.credit_bytes + credit).min(credit)
        };
        while self.credit_bytes > 0 {
            let Some(held) = self.queue.pop_front() else {
                break;
            };
            if self.waiting.get(&held.key) == Some(&self.front_seq) {
                self.waiting.remove(&held.key);
            } else {
                debug_assert!(self.repeats_queued, "a held chunk not indexed");
            }
            self.front_seq += 1;
            self.queued_bytes -= held.bytes;
            self.spend(held.bytes);
            send(held.group, held.message);
        }
        debug_assert!(self.queue.is_empty() || self.credit_bytes <= 0);
    }

    fn spend(&mut self, bytes: u64) {
        debug_assert!(self.credit_bytes > 0);
        self.credit_bytes -= i64::try_from(bytes).unwrap_or(i64::MAX);
    }

    /// The invariants: the waiting chunks fit, no two are copies of one
    /// chunk, and (a walk, so only for a short queue) their bytes are
    /// counted and each is found at its place.
    pub(crate) fn check_invariants(&self) {
        assert!(self.queued_bytes <= self.queue_bytes_max);
        assert!(self.waiting.len() <= self.queue.len());
        if !self.repeats_queued {
            assert_eq!(self.waiting.len(), self.queue.len());
        }
        if self.queue.len() <= 64 {
            assert_eq!(
                self.queue.iter().map(|held| held.bytes).sum::<u64>(),
                self.queued_bytes
            );
            for (&key, &seq) in &self.waiting {
                let place = usize::try_from(seq - self.front_seq).expect("a queue place");
                assert_eq!(self.queue[place].key, key);
            }
        }
        if self.rate_bytes_per_tick.is_none() {
            assert!(self.queue.is_empty());
        }
    }
}

/// A tick's credit, in the signed type the bucket counts in.
fn credit_of(rate_bytes_per_tick: u64) -> i64 {
    i64::try_from(rate_bytes_per_tick).unwrap_or(i64::MAX)
}

/// A chunk's data length. The layer admits only `InstallSnapshot`
/// messages here (`MultiNode::step`).
pub(crate) fn chunk_bytes(message: &Message) -> u64 {
    chunk_key(0, message).1
}

/// What `message` (of `group`) is a copy of, and its data length.
fn chunk_key(group: GroupId, message: &Message) -> (ChunkKey, u64) {
    match &message.body {
        MessageBody::InstallSnapshot(chunk) => (
            (group, message.to, chunk.snapshot, chunk.offset),
            chunk.data.len() as u64,
        ),
        _ => ((group, message.to, LogPosition::default(), 0), 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::SnapshotChunk;
    use crate::types::{LogPosition, NodeId};
    use bytes::Bytes;

    impl SnapshotPacer {
        fn offer_ok(&mut self, group: GroupId, message: Message) -> Offer {
            self.offer(group, message, false)
        }
    }

    fn chunk(to: NodeId, offset: u64, bytes: usize) -> Message {
        Message {
            from: 1,
            to,
            term: 1,
            progress_id: 0,
            body: MessageBody::InstallSnapshot(Box::new(SnapshotChunk {
                snapshot: LogPosition { index: 7, term: 1 },
                size_bytes: 1 << 20,
                checksum: 0,
                offset,
                data: Bytes::from(vec![0; bytes]),
                membership: crate::membership::Membership::default(),
            })),
        }
    }

    /// Bytes sent per tick over `ticks` ticks, with `chunks` chunks of
    /// `bytes` each offered before the first.
    fn pace(
        pacer: &mut SnapshotPacer,
        banked: bool,
        chunks: u64,
        bytes: usize,
        ticks: usize,
    ) -> Vec<u64> {
        let mut sent = vec![0];
        for offset in 0..chunks {
            if let Offer::Send(message) = pacer.offer_ok(1, chunk(2, offset * bytes as u64, bytes))
            {
                sent[0] += chunk_bytes(&message);
            }
        }
        for _ in 0..ticks {
            let mut tick = 0;
            pacer.tick(banked, |_, message| tick += chunk_bytes(&message));
            sent.push(tick);
            pacer.check_invariants();
        }
        sent
    }

    #[test]
    fn unlimited_pacer_sends_every_chunk_at_once() {
        let mut pacer = SnapshotPacer::new(None, 0);
        assert_eq!(pace(&mut pacer, false, 10, 100, 1), vec![1000, 0]);
    }

    #[test]
    fn paced_chunks_leave_at_the_rate_plus_one_chunk() {
        let mut pacer = SnapshotPacer::new(Some(250), 1 << 20);
        // 250 of credit: chunks leave while it is positive (3 × 100).
        let sent = pace(&mut pacer, false, 20, 100, 8);
        assert_eq!(sent, vec![300, 200, 300, 200, 300, 200, 300, 200, 0]);
        let total: u64 = sent.iter().sum();
        assert_eq!(total, 2000);
        for window in 1..=sent.len() {
            for start in 0..=sent.len() - window {
                let bytes: u64 = sent[start..start + window].iter().sum();
                assert!(bytes <= window as u64 * 250 + 100, "{sent:?}");
            }
        }
    }

    #[test]
    fn idle_ticks_bank_no_credit() {
        let mut pacer = SnapshotPacer::new(Some(100), 1 << 20);
        pace(&mut pacer, false, 0, 100, 50);
        let sent = pace(&mut pacer, false, 10, 100, 1);
        assert_eq!(sent, vec![100, 100]);
        // The planted mistake: fifty idle ticks bank 5,000 bytes.
        let mut banked = SnapshotPacer::new(Some(100), 1 << 20);
        pace(&mut banked, true, 0, 100, 50);
        let sent = pace(&mut banked, true, 10, 100, 1);
        assert_eq!(sent, vec![1000, 0]);
    }

    #[test]
    fn a_chunk_past_the_queue_is_dropped() {
        let mut pacer = SnapshotPacer::new(Some(100), 250);
        assert!(matches!(
            pacer.offer_ok(1, chunk(2, 0, 100)),
            Offer::Send(_)
        ));
        assert!(matches!(pacer.offer_ok(1, chunk(2, 100, 100)), Offer::Held));
        assert!(matches!(pacer.offer_ok(1, chunk(2, 200, 100)), Offer::Held));
        assert!(matches!(
            pacer.offer_ok(1, chunk(3, 100, 100)),
            Offer::Dropped
        ));
        assert_eq!((pacer.queued_chunks(), pacer.queued_bytes()), (2, 200));
        pacer.check_invariants();
    }

    #[test]
    fn a_repeated_chunk_takes_the_place_of_the_waiting_copy() {
        let mut pacer = SnapshotPacer::new(Some(100), 1 << 20);
        assert!(matches!(
            pacer.offer_ok(1, chunk(2, 0, 100)),
            Offer::Send(_)
        ));
        for round in 0..10 {
            for offset in [100, 200, 300] {
                let mut message = chunk(2, offset, 100);
                message.term = round;
                let offer = pacer.offer_ok(1, message);
                if round == 0 {
                    assert!(matches!(offer, Offer::Held));
                } else {
                    assert!(matches!(offer, Offer::Replaced));
                }
            }
            pacer.check_invariants();
        }
        // Three chunks wait, not thirty, and the newest copies leave in
        // the order the first copies came.
        assert_eq!((pacer.queued_chunks(), pacer.queued_bytes()), (3, 300));
        let transfers = pacer.transfers_waiting();
        assert_eq!(transfers.len(), 1);
        assert_eq!((transfers[0].chunks, transfers[0].bytes), (3, 300));
        assert!(transfers[0].bytes <= transfers[0].size_bytes);
        let mut sent = Vec::new();
        for _ in 0..3 {
            pacer.tick(false, |_, message| {
                let MessageBody::InstallSnapshot(chunk) = &message.body else {
                    panic!("a chunk")
                };
                sent.push((chunk.offset, message.term));
            });
            pacer.check_invariants();
        }
        assert_eq!(sent, vec![(100, 9), (200, 9), (300, 9)]);
        assert!(pacer.transfers_waiting().is_empty());
        // A copy for another follower is another chunk.
        assert!(matches!(pacer.offer_ok(1, chunk(3, 100, 100)), Offer::Held));
    }

    #[test]
    fn planted_repeats_wait_behind_their_copies() {
        let mut pacer = SnapshotPacer::new(Some(100), 1 << 20);
        assert!(matches!(
            pacer.offer(1, chunk(2, 0, 100), true),
            Offer::Send(_)
        ));
        for _ in 0..10 {
            assert!(matches!(
                pacer.offer(1, chunk(2, 100, 100), true),
                Offer::Held
            ));
            pacer.check_invariants();
        }
        assert_eq!(pacer.queued_chunks(), 10);
        // Ten copies of one chunk wait: ten times its bytes.
        let transfers = pacer.transfers_waiting();
        assert_eq!(transfers.len(), 1);
        assert_eq!((transfers[0].chunks, transfers[0].bytes), (10, 1000));
        for _ in 0..10 {
            pacer.tick(false, |_, _| {});
            pacer.check_invariants();
        }
        assert_eq!(pacer.queued_chunks(), 0);
    }
}
