//! Own snapshots of in-memory state machines taken from a copy
//! ([`StateMachine::snapshot_source`]), as the runtime's host takes them:
//! the copy is taken on the loop at the applied index when the node asks
//! (`Action::TakeSnapshot`), and serialised later, off the loop, while the
//! node goes on applying (`Event::SerialiseCopy`, one to 40 ms later).
//!
//! About half of the seeds whose state machines keep their state in
//! memory draw this (from their own random stream, so the other seeds run
//! as before); in them every own snapshot of a state machine that can
//! copy itself is taken so. The bytes are judged as every own snapshot is
//! (rule `snapshot-round-trip`: restored, they must give the state when
//! the copy was taken), and the report counts how many were serialised
//! after further applies.
//!
//! Planted mistake ([`HostBugs::snapshot_copy_taken_late`]): the host
//! takes the copy when it serialises, so the snapshot holds the applies
//! made meanwhile, past its index.
//!
//! [`StateMachine::snapshot_source`]: concord::state_machine::StateMachine::snapshot_source
//! [`HostBugs::snapshot_copy_taken_late`]: crate::HostBugs::snapshot_copy_taken_late

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use concord::state_machine::{SnapshotSource, StateMachine};
use concord::{LogPosition, Membership};

use super::book::Book;
use super::states::Taken;
use super::{Event, Simulation, MS};
use crate::config::{SimConfig, SnapshotCopyChoice};
use crate::workload::Workload;

/// Latest a copy is serialised after it was taken.
const SERIALISE_DELAY_NS_MAX: u64 = 40 * MS;

/// A copy of a node's state machine taken for its snapshot and not yet
/// serialised; lost in a crash.
pub(super) struct PendingCopy {
    position: LogPosition,
    membership: Option<Membership>,
    /// The copy; `None` with the planted mistake (taken when serialised).
    source: Option<SnapshotSource>,
    /// The state when the copy was taken, to judge the bytes.
    taken: Taken,
    /// The host's book at the snapshot's index.
    book: Book,
}

/// Whether this seed takes own snapshots from copies: about half of the
/// seeds under [`SnapshotCopyChoice::Swarm`], from their own random
/// stream (so the other seeds run as if copies did not exist); every
/// seed with the planted mistake.
pub(super) fn draw(config: &SimConfig) -> bool {
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0x636f_7079_736e_6170);
    rng.set_stream(32);
    let drawn = rng.gen_bool(0.5);
    match config.snapshot_copies {
        SnapshotCopyChoice::Swarm => drawn || config.bugs.snapshot_copy_taken_late,
        SnapshotCopyChoice::Always => true,
        SnapshotCopyChoice::Off => false,
    }
}

impl<S: StateMachine, W: Workload> Simulation<S, W> {
    /// Takes node `index`'s own snapshot at `position` from a copy of its
    /// state machine, serialised later, if this seed does so and the state
    /// machine can copy itself. Whether it did (if not, the caller takes
    /// the snapshot's bytes at once).
    pub(super) fn take_snapshot_from_copy(
        &mut self,
        index: usize,
        position: LogPosition,
        membership: Option<Membership>,
    ) -> bool {
        if !self.copy_snapshots {
            return false;
        }
        let Some(source) = self.hosts[index].sm.live().snapshot_source() else {
            return false;
        };
        let source = if self.config.bugs.snapshot_copy_taken_late {
            None
        } else {
            Some(source)
        };
        let taken = self.state_taken(index);
        let host = &mut self.hosts[index];
        let book = host.book.clone();
        // Asked for and not yet reported, as while its file syncs.
        host.snapshot_outstanding = true;
        host.pending_copy = Some(PendingCopy {
            position,
            membership,
            source,
            taken,
            book,
        });
        let incarnation = host.incarnation;
        let delay = self.disk_rng.gen_range(MS..=SERIALISE_DELAY_NS_MAX);
        self.schedule(
            delay,
            Event::SerialiseCopy {
                node: index as u8,
                incarnation,
            },
        );
        true
    }

    /// Node `index`'s copy is serialised (off the loop: applies went on
    /// meanwhile) and its snapshot judged and written.
    pub(super) fn serialise_copy(&mut self, index: usize, incarnation: u32) {
        let host = &mut self.hosts[index];
        if host.incarnation != incarnation || host.node.is_none() {
            return;
        }
        let Some(pending) = host.pending_copy.take() else {
            return;
        };
        let state = match pending.source {
            Some(source) => source(),
            // The planted mistake: the copy is of the state now.
            None => host.sm.live().snapshot(),
        };
        self.snapshots.from_copies += 1;
        if host.applied_position.index > pending.position.index {
            self.snapshots.copies_serialised_after_applies += 1;
        }
        self.store_own_snapshot(
            index,
            pending.position,
            pending.membership,
            state,
            &pending.taken,
            &pending.book,
        );
    }
}
