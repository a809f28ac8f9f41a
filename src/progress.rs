//! What a leader knows about each follower's log, and the flow control
//! that bounds what it sends.

use std::collections::VecDeque;

use crate::types::{Index, LogPosition, NodeId};

/// How the leader is replicating to a follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProgressState {
    /// The leader does not know where the follower's log matches; it sends
    /// one AppendEntries at a time and waits for the answer.
    Probe,
    /// The follower's log matches; the leader streams entries optimistically
    /// (pipelining) up to the in-flight limit.
    Replicate,
    /// The follower needs entries the leader has compacted away; the
    /// leader streams its snapshot in chunks, up to the in-flight limit.
    Snapshot,
}

/// A read-only view of a follower's replication progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProgressView {
    /// The record's id, which the follower's answers must name (see
    /// [`Message::progress_id`](crate::Message::progress_id)).
    pub progress_id: u64,
    /// Highest index known to be durably replicated on the follower.
    pub match_index: Index,
    /// Next index the leader will send.
    pub next_index: Index,
    /// Probe or replicate.
    pub state: ProgressState,
    /// AppendEntries messages sent and not yet acknowledged.
    pub inflight_messages: usize,
    /// Whether the follower was heard from in the current check-quorum
    /// window.
    pub recently_active: bool,
    /// Times this follower was found holding a shorter log than it had
    /// acknowledged as durable (see [`Action::FollowerLogRegressed`]).
    ///
    /// [`Action::FollowerLogRegressed`]: crate::Action::FollowerLogRegressed
    pub log_regressions: u64,
    /// Bytes of the snapshot being sent that the follower confirmed
    /// holding (0 outside a snapshot transfer): with the match index, the
    /// mark of a follower's progress while it catches up.
    pub snapshot_acked_bytes: u64,
}

/// The leader's record of one follower.
#[derive(Clone, Debug)]
pub(crate) struct Progress {
    /// Names this record in the leader's messages to the follower, which
    /// echoes it: answers naming another id are of an earlier replica.
    pub(crate) id: u64,
    pub(crate) match_index: Index,
    pub(crate) next_index: Index,
    pub(crate) state: ProgressState,
    /// Set after a probe is sent; cleared by any answer or a heartbeat
    /// response.
    pub(crate) probe_sent: bool,
    pub(crate) recent_active: bool,
    /// Appends in flight (by last index), or in the snapshot state chunks
    /// in flight (by end offset).
    pub(crate) inflight: Inflights,
    /// Consecutive probes at the match index that the follower rejected:
    /// it denies holding an entry it acknowledged as durable.
    pub(crate) denials: u32,
    /// Ticks since the first of those denials.
    pub(crate) denial_age_ticks: u32,
    pub(crate) log_regressions: u64,
    /// The snapshot being sent, in the snapshot state only.
    pub(crate) snapshot: Option<SnapshotTransfer>,
    /// Highest heartbeat round this follower answered (see `read_index.rs`).
    pub(crate) read_round_acked: u64,
    /// The commit index moved and this follower was not told (appends
    /// past the commit were in flight to it, or none could be sent): an
    /// append tells it, or the answer after which none in flight goes past
    /// the commit (see `broadcast_commit`).
    pub(crate) commit_owed: bool,
}

/// A snapshot transfer to one follower: which snapshot, and how far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SnapshotTransfer {
    /// The last entry the snapshot covers.
    pub(crate) position: LogPosition,
    pub(crate) size_bytes: u64,
    /// The follower confirmed holding bytes up to here.
    pub(crate) acked_offset: u64,
    /// The next chunk starts here.
    pub(crate) sent_offset: u64,
    /// `acked_offset` at the previous heartbeat answer: a transfer that did
    /// not advance between two heartbeat answers is stalled.
    pub(crate) acked_offset_at_heartbeat: u64,
}

/// Consecutive denials of an acknowledged entry after which the leader
/// may believe the follower really lost it. A denial may be a stale
/// rejection from before the acknowledgement, reordered, duplicated or
/// delayed; so a denial counts only as the answer to a probe that was
/// outstanding (duplicates of one stale rejection count once), the real
/// answer to any probe resets the count, and the denials must also go on
/// for an election timeout (see [`Progress::note_denial`]).
pub(crate) const LOG_REGRESSION_DENIALS_MIN: u32 = 3;

impl Progress {
    pub(crate) fn new(id: u64, next_index: Index, inflight_messages_max: usize) -> Self {
        debug_assert!(id > 0, "0 names no record");
        Progress {
            id,
            match_index: 0,
            next_index,
            state: ProgressState::Probe,
            probe_sent: false,
            recent_active: false,
            inflight: Inflights::new(inflight_messages_max),
            denials: 0,
            denial_age_ticks: 0,
            log_regressions: 0,
            snapshot: None,
            read_round_acked: 0,
            commit_owed: false,
        }
    }

    pub(crate) fn view(&self) -> ProgressView {
        ProgressView {
            progress_id: self.id,
            match_index: self.match_index,
            next_index: self.next_index,
            state: self.state,
            inflight_messages: self.inflight.len(),
            recently_active: self.recent_active,
            log_regressions: self.log_regressions,
            snapshot_acked_bytes: self.snapshot.map_or(0, |transfer| transfer.acked_offset),
        }
    }

    /// True when nothing more may be sent until an answer arrives.
    pub(crate) fn is_paused(&self) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate | ProgressState::Snapshot => self.inflight.is_full(),
        }
    }

    pub(crate) fn become_probe(&mut self) {
        self.state = ProgressState::Probe;
        self.next_index = self.match_index + 1;
        self.probe_sent = false;
        self.inflight.reset();
        self.snapshot = None;
    }

    pub(crate) fn become_replicate(&mut self) {
        // The follower confirmed the match index: earlier denials were stale.
        self.denials = 0;
        self.denial_age_ticks = 0;
        self.state = ProgressState::Replicate;
        self.next_index = self.match_index + 1;
        self.probe_sent = false;
        self.inflight.reset();
        self.snapshot = None;
    }

    /// Starts sending the snapshot ending at `position` from offset 0.
    pub(crate) fn become_snapshot(&mut self, position: LogPosition, size_bytes: u64) {
        self.state = ProgressState::Snapshot;
        self.next_index = position.index + 1;
        self.probe_sent = false;
        self.inflight.reset();
        self.snapshot = Some(SnapshotTransfer {
            position,
            size_bytes,
            acked_offset: 0,
            sent_offset: 0,
            acked_offset_at_heartbeat: 0,
        });
    }

    /// Records that the follower holds the snapshot `position` up to
    /// `next_offset`; with `rewind`, resends from there. Returns false for
    /// an answer about another snapshot or past its end.
    pub(crate) fn snapshot_progress(
        &mut self,
        position: LogPosition,
        next_offset: u64,
        rewind: bool,
    ) -> bool {
        let Some(transfer) = self.snapshot.as_mut() else {
            return false;
        };
        if transfer.position != position || next_offset > transfer.size_bytes {
            return false;
        }
        if rewind {
            // The follower may hold less than it confirmed before (it
            // restarted): believe the latest answer.
            transfer.acked_offset = next_offset;
            transfer.sent_offset = next_offset;
            self.inflight.reset();
        } else if next_offset > transfer.acked_offset {
            transfer.acked_offset = next_offset;
            transfer.sent_offset = transfer.sent_offset.max(next_offset);
            self.inflight.free_to(next_offset);
        }
        true
    }

    /// A heartbeat answer: the follower is alive. If the transfer did not
    /// advance since the previous one, chunks or their answers were lost:
    /// resend from the last confirmed offset. Returns whether it did (a
    /// transfer that is advancing is left alone, so that chunks still in
    /// flight are not sent twice).
    pub(crate) fn snapshot_resume(&mut self) -> bool {
        let Some(transfer) = self.snapshot.as_mut() else {
            return false;
        };
        let stalled = transfer.acked_offset == transfer.acked_offset_at_heartbeat;
        transfer.acked_offset_at_heartbeat = transfer.acked_offset;
        if stalled {
            transfer.sent_offset = transfer.acked_offset;
            self.inflight.reset();
        }
        stalled
    }

    /// Records an acknowledgement of `index`. Returns whether the match
    /// index advanced.
    pub(crate) fn maybe_update(&mut self, index: Index) -> bool {
        let advanced = index > self.match_index;
        if advanced {
            self.match_index = index;
            self.probe_sent = false;
            self.denials = 0;
            self.denial_age_ticks = 0;
        }
        self.next_index = self.next_index.max(index + 1);
        if self.state != ProgressState::Snapshot {
            self.inflight.free_to(index);
        }
        advanced
    }

    /// Handles a rejection of an append whose `prev.index` was
    /// `rejected_index`; `probe_from` is where the hint suggests probing.
    /// Returns false when the rejection is stale and was ignored.
    pub(crate) fn maybe_decrease_to(&mut self, rejected_index: Index, probe_from: Index) -> bool {
        match self.state {
            // Answers to appends sent before the transfer began.
            ProgressState::Snapshot => false,
            ProgressState::Replicate => {
                if rejected_index <= self.match_index {
                    return false;
                }
                self.become_probe();
                true
            }
            ProgressState::Probe => {
                if rejected_index + 1 != self.next_index {
                    return false;
                }
                let next_index = rejected_index.min(probe_from).max(self.match_index + 1);
                if next_index == self.next_index {
                    // Nothing to step back to (a denial of an acknowledged
                    // entry is handled before this, see `is_denial`).
                    return false;
                }
                self.next_index = next_index;
                self.probe_sent = false;
                true
            }
        }
    }

    /// Whether a rejection of the probe at `rejected_index` denies an entry
    /// the follower acknowledged as durable: the leader is probing right
    /// behind the match index and the follower says it lacks the entry at
    /// the match index.
    pub(crate) fn is_denial(&self, rejected_index: Index) -> bool {
        self.state == ProgressState::Probe
            && self.match_index > 0
            && rejected_index == self.match_index
            && self.next_index == self.match_index + 1
    }

    /// Counts one denial (see [`Self::is_denial`]) if it answers the
    /// outstanding probe. Returns true once the denials are many and old
    /// enough (`age_ticks_min`) to believe the follower lost acknowledged
    /// entries; the caller then calls [`Self::forget_match`].
    pub(crate) fn note_denial(&mut self, age_ticks_min: u32) -> bool {
        if !self.probe_sent {
            // No probe is waiting for this answer: a duplicate or a stale
            // rejection.
            return false;
        }
        self.probe_sent = false;
        self.denials = self.denials.saturating_add(1);
        self.denials >= LOG_REGRESSION_DENIALS_MIN && self.denial_age_ticks >= age_ticks_min
    }

    /// One tick passed on the leader.
    pub(crate) fn tick(&mut self) {
        if self.denials > 0 {
            self.denial_age_ticks = self.denial_age_ticks.saturating_add(1);
        }
    }

    /// The follower lost entries it had acknowledged (its host broke the
    /// durability contract, or its disk lost synced data). Nothing it
    /// acknowledged can be trusted beyond what it now reports, so forget
    /// the match and probe from `probe_from + 1`, where the follower's own
    /// hint says the logs may agree. Re-replicating restores the copies the
    /// commit rule counted on; staying paused would leave the follower
    /// behind forever.
    pub(crate) fn forget_match(&mut self, probe_from: Index) {
        debug_assert!(probe_from < self.match_index);
        self.match_index = 0;
        self.become_probe();
        self.next_index = probe_from + 1;
        self.denials = 0;
        self.denial_age_ticks = 0;
        self.log_regressions += 1;
    }

    /// Notes that an append ending at `last_index` was sent.
    pub(crate) fn sent_entries(&mut self, last_index: Index) {
        match self.state {
            ProgressState::Replicate => {
                self.next_index = last_index + 1;
                self.inflight.add(last_index);
            }
            ProgressState::Probe => self.probe_sent = true,
            ProgressState::Snapshot => unreachable!("no appends while sending a snapshot"),
        }
    }
}

/// Last indices of the appends in flight to one follower, oldest first.
#[derive(Clone, Debug)]
pub(crate) struct Inflights {
    last_indices: VecDeque<Index>,
    capacity: usize,
}

impl Inflights {
    /// Feeds the window to a model checker's hash (see `state_hash.rs`).
    pub(crate) fn hash_state(&self, h: &mut crate::state_hash::StateHasher<'_>) {
        let Inflights {
            last_indices,
            capacity,
        } = self;
        h.u64(*capacity as u64);
        h.u64(last_indices.len() as u64);
        for index in last_indices {
            h.u64(*index);
        }
    }

    pub(crate) fn new(capacity: usize) -> Self {
        assert!(capacity > 0);
        Inflights {
            last_indices: VecDeque::new(),
            capacity,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.last_indices.len()
    }

    /// Whether an append in flight carries entries past `index`.
    pub(crate) fn carries_past(&self, index: Index) -> bool {
        self.last_indices.back().is_some_and(|last| *last > index)
    }

    pub(crate) fn is_full(&self) -> bool {
        self.last_indices.len() >= self.capacity
    }

    pub(crate) fn add(&mut self, last_index: Index) {
        assert!(!self.is_full(), "in-flight window overflow");
        debug_assert!(self
            .last_indices
            .back()
            .is_none_or(|back| *back < last_index));
        self.last_indices.push_back(last_index);
    }

    /// Frees every message whose entries are all acknowledged.
    pub(crate) fn free_to(&mut self, index: Index) {
        while self
            .last_indices
            .front()
            .is_some_and(|front| *front <= index)
        {
            self.last_indices.pop_front();
        }
    }

    /// Frees the oldest message (used when a heartbeat answer shows the
    /// follower is alive but the window is full, so a lost answer cannot
    /// stall replication forever).
    pub(crate) fn free_first(&mut self) {
        self.last_indices.pop_front();
    }

    pub(crate) fn reset(&mut self) {
        self.last_indices.clear();
    }
}

/// The leader's records of its followers, by node id, kept in a vector
/// sorted by id. A cluster has a handful of members and the leader looks a
/// follower up several times per message, so scanning a few ids is cheaper
/// than a tree's search; iteration is in id order, as a `BTreeMap`'s, so
/// what the leader sends does not depend on how the map was built.
#[derive(Clone, Debug)]
pub(crate) struct PeerMap<V> {
    entries: Vec<(NodeId, V)>,
}

impl<V> PeerMap<V> {
    pub(crate) fn new() -> Self {
        PeerMap {
            entries: Vec::new(),
        }
    }

    /// Where `id` is, or where it would be inserted.
    fn position(&self, id: NodeId) -> Result<usize, usize> {
        for (at, (key, _)) in self.entries.iter().enumerate() {
            if *key >= id {
                return if *key == id { Ok(at) } else { Err(at) };
            }
        }
        Err(self.entries.len())
    }

    pub(crate) fn get(&self, id: &NodeId) -> Option<&V> {
        let at = self.position(*id).ok()?;
        Some(&self.entries[at].1)
    }

    pub(crate) fn get_mut(&mut self, id: &NodeId) -> Option<&mut V> {
        let at = self.position(*id).ok()?;
        Some(&mut self.entries[at].1)
    }

    /// The record of `id`, inserted by `make` if there is none.
    pub(crate) fn get_or_insert_with(&mut self, id: NodeId, make: impl FnOnce() -> V) -> &mut V {
        let at = match self.position(id) {
            Ok(at) => at,
            Err(at) => {
                self.entries.insert(at, (id, make()));
                at
            }
        };
        &mut self.entries[at].1
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }

    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&NodeId, &mut V) -> bool) {
        self.entries.retain_mut(|(id, value)| keep(id, value));
    }

    /// Records in id order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&NodeId, &V)> {
        self.entries.iter().map(|(id, value)| (id, value))
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.iter().map(|(_, value)| value)
    }

    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.entries.iter_mut().map(|(_, value)| value)
    }
}

impl<V> Default for PeerMap<V> {
    fn default() -> Self {
        PeerMap::new()
    }
}

impl<V> FromIterator<(NodeId, V)> for PeerMap<V> {
    fn from_iter<I: IntoIterator<Item = (NodeId, V)>>(records: I) -> Self {
        let mut entries: Vec<(NodeId, V)> = records.into_iter().collect();
        entries.sort_by_key(|(id, _)| *id);
        assert!(
            entries.windows(2).all(|pair| pair[0].0 < pair[1].0),
            "one record per node"
        );
        PeerMap { entries }
    }
}

impl<'a, V> IntoIterator for &'a PeerMap<V> {
    type Item = (&'a NodeId, &'a V);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (NodeId, V)>,
        fn(&'a (NodeId, V)) -> (&'a NodeId, &'a V),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter().map(|(id, value)| (id, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The leader's followers are visited in id order however their
    /// records were added, as a `BTreeMap` would: what it sends must not
    /// depend on the order a configuration listed them.
    #[test]
    fn peer_map_iterates_in_id_order_and_finds_every_record() {
        let mut map: PeerMap<u64> = [(5, 50), (2, 20)].into_iter().collect();
        *map.get_or_insert_with(3, || 30) += 1;
        *map.get_or_insert_with(2, || 0) += 1;
        map.get_or_insert_with(9, || 90);
        let ids: Vec<NodeId> = map.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, [2, 3, 5, 9]);
        assert_eq!(map.get(&2), Some(&21));
        assert_eq!(map.get(&3), Some(&31));
        assert_eq!(map.get(&4), None);
        assert_eq!(map.get(&10), None);
        *map.get_mut(&9).expect("held") = 91;
        map.retain(|id, _| *id != 3);
        let all: Vec<(NodeId, u64)> = map.iter().map(|(id, value)| (*id, *value)).collect();
        assert_eq!(all, [(2, 21), (5, 50), (9, 91)]);
        assert_eq!(map.values().sum::<u64>(), 162);
        assert_eq!(map.len(), 3);
        map.clear();
        assert!(map.is_empty());
    }

    #[test]
    #[should_panic(expected = "one record per node")]
    fn peer_map_refuses_two_records_of_one_node() {
        let _: PeerMap<u64> = [(1, 1), (1, 2)].into_iter().collect();
    }
}
