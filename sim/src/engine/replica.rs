//! A host's state machine: the workload's, wrapped in client sessions
//! ([`Tapped`], which notes what each apply did for the host's checks),
//! kept in memory or on the node's simulated disk ([`Replica`]); and the
//! reference replica the durable runs judge restarted state machines
//! against ([`Reference`]).

use std::collections::BTreeMap;

use bytes::Bytes;

use concord::recovery::ForcedRecovery;
use concord::session::{SessionOutcome, WithSessions};
use concord::state_machine::{apply_entry, RestoreError, StateMachine};
use concord::{Entry, Index};

use crate::durable::SimDurable;

/// What one apply did, beyond its response, noted for the host's checks
/// (which run after the whole batch is applied).
#[derive(Debug)]
pub(super) enum Note {
    /// A command: the session layer's outcome, and whether the session
    /// table's accessors agreed with it right after (`check_session_table`).
    Command {
        outcome: SessionOutcome,
        table: Result<(), String>,
    },
    /// A forced recovery: the session table's id epoch before and after.
    Forced { epoch_before: u64, epoch_after: u64 },
}

/// The workload's state machine in client sessions, noting what each
/// apply did ([`Note`]): a host applies a whole batch (through
/// [`apply_entry`], as any host must) and then judges each entry.
pub(super) struct Tapped<S> {
    sm: WithSessions<S>,
    /// The capacity the host asked the session table for.
    capacity: usize,
    notes: Vec<Note>,
}

impl<S: StateMachine> Tapped<S> {
    pub(super) fn new(inner: S, capacity: usize) -> Tapped<S> {
        Tapped {
            sm: WithSessions::new(inner, capacity),
            capacity,
            notes: Vec::new(),
        }
    }

    /// The state machine in its sessions.
    pub(super) fn sessions_sm(&self) -> &WithSessions<S> {
        &self.sm
    }

    /// The notes of the applies since the last call, in apply order.
    pub(super) fn take_notes(&mut self) -> std::vec::IntoIter<Note> {
        std::mem::take(&mut self.notes).into_iter()
    }
}

impl<S: StateMachine> StateMachine for Tapped<S> {
    fn apply(&mut self, index: Index, command: &[u8]) -> Bytes {
        let evictions_before = self.sm.sessions().evictions();
        let outcome = self.sm.apply_request(index, command);
        let table = super::host::check_session_table(
            self.sm.sessions(),
            self.capacity,
            index,
            &outcome,
            evictions_before,
        );
        let response = outcome.response().encode();
        self.notes.push(Note::Command { outcome, table });
        response
    }

    fn snapshot(&self) -> Bytes {
        self.sm.snapshot()
    }

    fn snapshot_source(&self) -> Option<concord::state_machine::SnapshotSource> {
        self.sm.snapshot_source()
    }

    fn canonical_state(&self) -> Bytes {
        self.sm.canonical_state()
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
        self.sm.restore(snapshot)
    }

    fn query(&self, request: &[u8]) -> Option<Bytes> {
        self.sm.query(request)
    }

    fn sessions(&self) -> Option<usize> {
        StateMachine::sessions(&self.sm)
    }

    fn apply_forced_recovery(&mut self, index: Index, audit: &ForcedRecovery) {
        let epoch_before = self.sm.sessions().epoch();
        self.sm.apply_forced_recovery(index, audit);
        let epoch_after = self.sm.sessions().epoch();
        self.notes.push(Note::Forced {
            epoch_before,
            epoch_after,
        });
    }
}

/// A host's state machine: in memory (restored from the host's snapshot
/// files and the log at a restart), or on the node's disk
/// ([`SimDurable`]: it comes back by itself at its durable applied index).
pub(super) enum Replica<S> {
    Memory(Tapped<S>),
    Durable(Box<SimDurable<Tapped<S>>>),
}

impl<S: StateMachine> Replica<S> {
    /// The live state, in its sessions.
    pub(super) fn live(&self) -> &WithSessions<S> {
        match self {
            Replica::Memory(sm) => sm.sessions_sm(),
            Replica::Durable(sm) => sm.live().sessions_sm(),
        }
    }

    /// The live state, noting its applies.
    pub(super) fn tapped_mut(&mut self) -> &mut Tapped<S> {
        match self {
            Replica::Memory(sm) => sm,
            Replica::Durable(sm) => sm.live_mut(),
        }
    }

    /// The on-disk state machine, when it is one.
    pub(super) fn durable(&self) -> Option<&SimDurable<Tapped<S>>> {
        match self {
            Replica::Durable(sm) => Some(sm.as_ref()),
            Replica::Memory(_) => None,
        }
    }

    /// The on-disk state machine, when it is one.
    pub(super) fn durable_mut(&mut self) -> Option<&mut SimDurable<Tapped<S>>> {
        match self {
            Replica::Durable(sm) => Some(sm.as_mut()),
            Replica::Memory(_) => None,
        }
    }
}

/// Committed indices between two of the reference's checkpoints.
const CHECKPOINT_EVERY: Index = 64;

/// The committed log applied in order to one more state machine: the
/// state every replica must hold at each applied index. It advances on
/// demand and keeps the state every [`CHECKPOINT_EVERY`] indices, so the
/// state at an index it has passed is a restore and a few applies away.
pub(super) struct Reference<S> {
    /// The reference state machine and the index it has applied up to.
    frontier: Option<(Index, WithSessions<S>)>,
    /// Its state's bytes at multiples of [`CHECKPOINT_EVERY`].
    checkpoints: BTreeMap<Index, Bytes>,
    /// Comparisons made.
    pub(super) judged: u64,
}

impl<S: StateMachine> Reference<S> {
    pub(super) fn new() -> Reference<S> {
        Reference {
            frontier: None,
            checkpoints: BTreeMap::new(),
            judged: 0,
        }
    }

    /// The canonical state at `at`, from the committed entries (`entry(i)`
    /// for every `i` up to `at`); `fresh` builds an empty state machine.
    /// `None` if an entry is missing.
    pub(super) fn state_at(
        &mut self,
        at: Index,
        entry: impl Fn(Index) -> Option<Entry>,
        mut fresh: impl FnMut() -> WithSessions<S>,
    ) -> Option<Bytes> {
        let frontier_at = self.frontier.as_ref().map_or(0, |(index, _)| *index);
        if self.frontier.is_none() || frontier_at > at {
            // Rebuilt from the last checkpoint at or below `at`.
            let mut sm = fresh();
            let from = match self.checkpoints.range(..=at).next_back() {
                Some((index, state)) => {
                    sm.restore(state).ok()?;
                    *index
                }
                None => 0,
            };
            if self.frontier.is_none() {
                self.frontier = Some((from, sm));
            } else {
                let mut sm = (from, sm);
                Self::advance(&mut sm, at, &entry, None)?;
                return Some(sm.1.canonical_state());
            }
        }
        let frontier = self.frontier.as_mut()?;
        Self::advance(frontier, at, &entry, Some(&mut self.checkpoints))?;
        Some(frontier.1.canonical_state())
    }

    fn advance(
        (index, sm): &mut (Index, WithSessions<S>),
        to: Index,
        entry: &impl Fn(Index) -> Option<Entry>,
        mut checkpoints: Option<&mut BTreeMap<Index, Bytes>>,
    ) -> Option<()> {
        while *index < to {
            let next = entry(*index + 1)?;
            apply_entry(sm, &next);
            *index += 1;
            if *index % CHECKPOINT_EVERY == 0 {
                if let Some(checkpoints) = checkpoints.as_deref_mut() {
                    checkpoints.insert(*index, sm.snapshot());
                }
            }
        }
        Some(())
    }

    /// A forced recovery gave up the committed entries from
    /// `diverged_at` on: states past them are forgotten.
    pub(super) fn forget_from(&mut self, diverged_at: Index) {
        let _ = self.checkpoints.split_off(&diverged_at);
        if self
            .frontier
            .as_ref()
            .is_some_and(|(index, _)| *index >= diverged_at)
        {
            self.frontier = None;
        }
    }
}
