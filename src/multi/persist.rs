//! Batching across groups on the way to disk: every durable write any
//! group asks for during one flush ([`Action::Persist`] and
//! [`Action::PersistSnapshot`]) goes into one [`PersistBatch`], which the
//! host writes and syncs as one (one fsync for all groups). The host
//! reports batches durable in order, and the layer hands each group the
//! durability of exactly the writes of its own that the reported batches
//! hold — never a write of a later batch on the strength of an earlier
//! batch's sync.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasherDefault;

use serde::{Deserialize, Serialize};

use crate::io::Action;
use crate::types::WriteId;

use super::frame::GroupId;
use super::group_table::GroupIdHasher;
use super::stats::MultiStats;

/// Identifies one [`PersistBatch`]. Batch ids grow by one per batch, from
/// 1 at every start of the layer.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct BatchId(pub u64);

/// One group's durable write in a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupWrite {
    /// The group.
    pub group: GroupId,
    /// The write: an [`Action::Persist`] or an [`Action::PersistSnapshot`],
    /// to execute exactly as a lone node's host would.
    pub action: Action,
}

impl GroupWrite {
    /// The write's id within its group.
    pub fn write_id(&self) -> WriteId {
        match &self.action {
            Action::Persist { id, .. } | Action::PersistSnapshot { id, .. } => *id,
            other => unreachable!("a batch holds only writes, not {other:?}"),
        }
    }
}

/// Writes of many groups to make durable together: execute them in order
/// (each group's in the order given, after every earlier batch's), sync
/// once, then report [`MultiInput::Persisted`](super::MultiInput::Persisted)
/// with this id (or a later one, once that is durable too).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersistBatch {
    /// This batch's id.
    pub id: BatchId,
    /// The writes.
    pub writes: Vec<GroupWrite>,
}

/// A batch handed to the host and not yet reported durable: the last
/// write of each group it holds (groups in the order of their first write
/// in the batch), with the group's generation.
#[derive(Debug)]
struct InFlight {
    id: BatchId,
    covered: Vec<(GroupId, u64, WriteId)>,
}

/// The batch being filled and the batches the host is writing.
#[derive(Debug)]
pub(crate) struct Persister {
    next_id: u64,
    /// The batch being filled: each write with its group's generation.
    filling: Vec<(GroupWrite, u64)>,
    in_flight: VecDeque<InFlight>,
    /// Where each group's entry of the batch being built is in its
    /// `covered` list (kept to reuse its room).
    covered_at: HashMap<(GroupId, u64), usize, BuildHasherDefault<GroupIdHasher>>,
}

impl Persister {
    pub(crate) fn new() -> Self {
        Persister {
            next_id: 1,
            filling: Vec::new(),
            in_flight: VecDeque::new(),
            covered_at: HashMap::default(),
        }
    }

    /// Adds a write of the group's `generation` to the batch being filled.
    pub(crate) fn push(&mut self, group: GroupId, generation: u64, action: Action) {
        self.filling
            .push((GroupWrite { group, action }, generation));
    }

    /// Hands the filled batch (split at `writes_max`) to `emit`.
    pub(crate) fn flush(
        &mut self,
        writes_max: usize,
        stats: &mut MultiStats,
        mut emit: impl FnMut(PersistBatch),
    ) {
        if self.filling.is_empty() {
            return;
        }
        // Drained, not taken: the list keeps its room for the next flush.
        let mut filling = std::mem::take(&mut self.filling);
        let mut drained = filling.drain(..);
        loop {
            let room = drained.len().min(writes_max);
            if room == 0 {
                break;
            }
            let mut writes = Vec::with_capacity(room);
            let mut covered: Vec<(GroupId, u64, WriteId)> = Vec::with_capacity(room);
            self.covered_at.clear();
            for (write, generation) in drained.by_ref().take(writes_max) {
                let id = write.write_id();
                // Found by hash: a round of many groups, one write each,
                // searched the whole list per write.
                match self.covered_at.entry((write.group, generation)) {
                    Entry::Occupied(at) => {
                        let (_, _, last) = &mut covered[*at.get()];
                        assert!(id > *last, "a group's writes are handed out in order");
                        *last = id;
                    }
                    Entry::Vacant(at) => {
                        at.insert(covered.len());
                        covered.push((write.group, generation, id));
                    }
                }
                writes.push(write);
            }
            let id = BatchId(self.next_id);
            self.next_id += 1;
            self.in_flight.push_back(InFlight { id, covered });
            stats.persist_batches += 1;
            stats.persist_writes += writes.len() as u64;
            emit(PersistBatch { id, writes });
        }
        drop(drained);
        self.filling = filling;
    }

    /// The host reports every batch up to `id` durable: the last write of
    /// each group those batches held, in batch order. With `planted`, also
    /// the writes of batches still being written (the planted mistake).
    ///
    /// # Panics
    ///
    /// When `id` was never handed out: a broken host.
    pub(crate) fn persisted(
        &mut self,
        id: BatchId,
        planted: bool,
        mut durable: impl FnMut(GroupId, u64, WriteId),
    ) {
        assert!(
            id.0 < self.next_id,
            "host reported persist batch {} durable, but only batches up to {} were handed out",
            id.0,
            self.next_id - 1
        );
        while let Some(batch) = self.in_flight.front() {
            if batch.id > id {
                break;
            }
            let batch = self.in_flight.pop_front().expect("looked at above");
            for (group, generation, write) in batch.covered {
                durable(group, generation, write);
            }
        }
        if planted {
            // The planted mistake: groups whose writes are still in flight
            // are told they are durable on the strength of this sync.
            for batch in &self.in_flight {
                for (group, generation, write) in &batch.covered {
                    durable(*group, *generation, *write);
                }
            }
        }
    }

    /// Batches handed to the host and not yet reported durable.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.len()
    }
}
