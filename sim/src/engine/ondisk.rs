//! Hosts of on-disk state machines ([`SimDurable`], in the seeds that draw
//! them): driven the way a real host drives a
//! [`concord::durable::DurableStateMachine`].
//!
//! * **Applies** go through `apply_batch`, one call per `Action::Apply`;
//!   entries at or below the state machine's applied index (after a
//!   restart, what its durable image already holds) are skipped, not
//!   applied again: only the host's own records (Host entries) are read
//!   from them into its book.
//! * **A snapshot** (`Action::TakeSnapshot`): `view()` at the applied
//!   index; the view is read later (an event after a disk delay, while
//!   applies go on); then `sync()` if the durable applied index does not
//!   cover the snapshot yet (as the runtime's host does); then it is
//!   written to the snapshot file, synced, and only then reported with
//!   `Input::Snapshotted`. While the state machine is ahead of what the
//!   node was told it applied (right after a restart) or a restore is
//!   under way, the snapshot waits.
//! * **A restore** (`Action::RestoreSnapshot`): `begin_restore`, the bytes
//!   written in chunks over virtual time, `complete()`, then, on the
//!   loop, `finish_restore` and `Input::Applied`. Applies and restores the
//!   node asks for meanwhile wait their turn, in order. A crash before the
//!   finish leaves the old image.
//! * **A restart** reads the state machine back from its file (durable
//!   applied index D). If the log's base (the stored snapshot) S is past
//!   D, the state is rebuilt from the stored snapshot; else nothing is
//!   restored. The node starts from the log's base as ever, and the
//!   entries up to D it hands out again are skipped.
//!
//! The checks: at every restart D >= S, or the stored snapshot is one
//! received from a leader (whose restore the crash cut short) and is
//! restored (`restart-base`, a `durable-state` failure: a snapshot the
//! node took itself never covers more than its durable applied index);
//! and the state after the restart equals the reference replica's (the
//! committed log applied in order) at D (`restart-state`, a
//! `state-machine-safety` failure like the other comparisons of states).
//! A snapshot's view is judged like any snapshot (`snapshot-round-trip`
//! against the state when the view was taken, `snapshot-agreement` across
//! nodes).
//!
//! The state machine's syncs (explicit, background flushes, restores
//! made durable) count as fsyncs in the run's cost.

use std::collections::VecDeque;

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use concord::durable::{read_view, DurableError};
use concord::state_machine::StateMachine;
use concord::{Entry, EntryPayload, Index, Input, LogPosition, Membership, Snapshot};

use super::book::Book;
use super::client::Reply;
use super::host::HostInput;
use super::replica::{Note, Reference, Replica, Tapped};
use super::{Event, FailureKind, Simulation, MS};
use crate::config::{DurableChoice, SimConfig};
use crate::durable::{DurableBugs, SimDurable, SimRestore, SimView};
use crate::faults::FaultKind;
use crate::workload::Workload;

/// Most bytes one restore chunk writes.
const RESTORE_CHUNK_MAX: usize = 4096;

/// In seeds with crashes, the odds that the durable nemesis crashes a node
/// before a chunk of its restore, and right after a restore finished
/// (while the log's write of the snapshot may not be synced yet).
const RESTORE_CRASH_ODDS: f64 = 0.2;

/// What durable state machines did in a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DurableCounts {
    /// Runs whose state machines were on disk.
    pub runs: u64,
    /// Restarts of a node from its state machine's file (not its first
    /// boot).
    pub restarts: u64,
    /// Restarts that rebuilt the state from the stored snapshot (the
    /// durable applied index below the log's base).
    pub restored_at_restart: u64,
    /// Restarts whose durable applied index was past the end of the
    /// durable log (the state machine's write durable before the log's).
    pub ahead_of_log_at_restart: u64,
    /// Restarts whose state was compared with the reference replica's.
    pub restart_states_judged: u64,
    /// Entries skipped after restarts (already in the durable image).
    pub entries_skipped: u64,
    /// Crashes that lost unsynced batch records of the state machine.
    pub crashes_losing_batches: u64,
    /// Batch records crashes lost.
    pub batches_lost: u64,
    /// Torn batch records detected and dropped at a restart.
    pub torn_dropped: u64,
    /// Crashes while a restore from a leader's snapshot was under way.
    pub crashes_during_restore: u64,
    /// Crashes while a snapshot's view waited to be read.
    pub crashes_during_view: u64,
    /// Crashes that found the state machine durable past the durable log
    /// (its write durable, the log's not yet).
    pub crashes_ahead_of_log: u64,
    /// Crashes by the durable nemesis (in a restore, or right after one).
    pub nemesis_crashes: u64,
    /// Views read after applies moved the state past their index.
    pub views_read_after_applies: u64,
    /// Restores from a leader's snapshot finished.
    pub restores: u64,
    /// Background flushes of the state machines.
    pub background_flushes: u64,
}

impl DurableCounts {
    /// Adds `other` to these counts.
    pub fn merge(&mut self, other: &DurableCounts) {
        self.runs += other.runs;
        self.restarts += other.restarts;
        self.restored_at_restart += other.restored_at_restart;
        self.ahead_of_log_at_restart += other.ahead_of_log_at_restart;
        self.restart_states_judged += other.restart_states_judged;
        self.entries_skipped += other.entries_skipped;
        self.crashes_losing_batches += other.crashes_losing_batches;
        self.batches_lost += other.batches_lost;
        self.torn_dropped += other.torn_dropped;
        self.crashes_during_restore += other.crashes_during_restore;
        self.crashes_during_view += other.crashes_during_view;
        self.crashes_ahead_of_log += other.crashes_ahead_of_log;
        self.nemesis_crashes += other.nemesis_crashes;
        self.views_read_after_applies += other.views_read_after_applies;
        self.restores += other.restores;
        self.background_flushes += other.background_flushes;
    }
}

/// This seed's durable state machines.
pub(super) struct DurableRun<S> {
    rng: ChaCha8Rng,
    /// Each node's background flush period, in batches (by node index,
    /// modulo its length).
    flush_every: Vec<u32>,
    bugs: DurableBugs,
    pub(super) counts: DurableCounts,
    reference: Reference<S>,
}

impl<S: StateMachine> DurableRun<S> {
    /// Whether this seed runs durable state machines (about a third of the
    /// seeds under [`DurableChoice::Swarm`]), from its own random stream.
    pub(super) fn draw(config: &SimConfig) -> Option<DurableRun<S>> {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0x6475_7261_626c_6521);
        rng.set_stream(31);
        // Drawn whatever the choice, so a seed flushes alike in both.
        let drawn = rng.gen_bool(1.0 / 3.0);
        let on = match config.durable_state_machine {
            DurableChoice::Swarm => drawn,
            DurableChoice::Always => true,
            DurableChoice::Off => false,
        };
        if !on {
            return None;
        }
        let flush_every = (0..8).map(|_| rng.gen_range(1..=8)).collect();
        Some(DurableRun {
            rng,
            flush_every,
            bugs: DurableBugs {
                index_before_state: config.bugs.durable_index_before_state,
                view_reads_live: config.bugs.durable_view_reads_live,
            },
            counts: DurableCounts {
                runs: 1,
                ..DurableCounts::default()
            },
            reference: Reference::new(),
        })
    }

    /// Node `index`'s background flush period.
    pub(super) fn flush_every(&self, index: usize) -> u32 {
        self.flush_every[index % self.flush_every.len()]
    }

    /// A new on-disk state machine over `tapped` for node `index`.
    pub(super) fn new_state_machine(
        &self,
        index: usize,
        tapped: Tapped<S>,
    ) -> SimDurable<Tapped<S>> {
        SimDurable::new(tapped, self.flush_every(index), self.bugs)
    }

    /// A forced recovery gave up the committed entries from `diverged_at`.
    pub(super) fn forget_from(&mut self, diverged_at: Index) {
        self.reference.forget_from(diverged_at);
    }
}

/// A snapshot's view waiting to be read.
pub(super) struct PendingView {
    position: LogPosition,
    membership: Option<Membership>,
    view: SimView,
    /// The state when the view was taken, to judge what it reads.
    taken: super::states::Taken,
    /// The host's book at the view's index.
    book: Book,
}

/// A restore from a leader's snapshot under way.
pub(super) struct Restoring {
    position: LogPosition,
    book: Book,
    state: Bytes,
    written: usize,
    restore: SimRestore,
}

/// What waits for a restore under way to finish.
pub(super) enum Queued {
    Apply(Vec<Entry>),
    Restore {
        position: LogPosition,
        book: Book,
        state: Bytes,
    },
}

/// A host's on-disk state machine work under way; lost in a crash.
#[derive(Default)]
pub(super) struct OnDisk {
    pub(super) view: Option<PendingView>,
    pub(super) restoring: Option<Restoring>,
    pub(super) queue: VecDeque<Queued>,
    /// A snapshot the node asked for waits (see the module documentation).
    pub(super) snapshot_waits: bool,
}

impl OnDisk {
    /// Applies must wait: a restore is under way or others wait already.
    fn busy(&self) -> bool {
        self.restoring.is_some() || !self.queue.is_empty()
    }
}

/// A state machine storage failure, as the run reports it.
fn storage(error: DurableError) -> String {
    format!("state machine storage: {error}")
}

impl<S: StateMachine, W: Workload> Simulation<S, W> {
    /// A fresh state machine for node `index` (with id `id`), in memory or
    /// on disk as the seed drew.
    pub(super) fn new_replica(&mut self, index: usize, id: concord::NodeId) -> Replica<S> {
        let tapped = Tapped::new((self.make_sm)(id), self.config.table_sessions());
        match &self.durable {
            Some(durable) => Replica::Durable(Box::new(durable.new_state_machine(index, tapped))),
            None => Replica::Memory(tapped),
        }
    }

    /// Boots node `index`'s on-disk state machine from its file: restored
    /// from the stored `snapshot` when the log's base `base` is past its
    /// durable applied index. `last` is the durable log's last index. The
    /// state machine and the book, or `None` after a failure.
    pub(super) fn boot_durable(
        &mut self,
        index: usize,
        witness: bool,
        snapshot: Option<&Snapshot>,
        base: LogPosition,
        last: Index,
    ) -> Option<(Replica<S>, Book)> {
        let id = index as concord::NodeId + 1;
        let tapped = Tapped::new((self.make_sm)(id), self.config.table_sessions());
        let file = self.hosts[index].disk.sm_file.take().unwrap_or_default();
        let durable = self.durable.as_mut().expect("durable runs only");
        let (flush_every, bugs) = (durable.flush_every(index), durable.bugs);
        let (mut sm, recovery) = match SimDurable::recover(file, tapped, flush_every, bugs) {
            Ok(recovered) => recovered,
            Err(error) => {
                let message = format!("reading its state machine back: {}", storage(error));
                self.fail(FailureKind::Recovery, Some(index), message);
                return None;
            }
        };
        // What the replay noted is no apply of this incarnation's.
        drop(sm.live_mut().take_notes());
        let durable = self.durable.as_mut().expect("durable runs only");
        durable.counts.restarts += u64::from(self.hosts[index].incarnation > 0);
        durable.counts.torn_dropped += u64::from(recovery.torn_dropped);
        // A witness's snapshots hold no state machine, and it applies
        // nothing: its state machine stays empty.
        if witness {
            return Some((Replica::Durable(Box::new(sm)), Book::new()));
        }
        let d = sm.durable_applied_index();
        if d > last {
            durable.counts.ahead_of_log_at_restart += 1;
        }
        let mut book = Book::new();
        if let Some(snapshot) = snapshot {
            let (stored, state) = match self.unwrap_host_snapshot(&snapshot.data) {
                Ok(parts) => parts,
                Err(error) => {
                    let message = format!("reading the stored snapshot: {error}");
                    self.fail(FailureKind::Recovery, Some(index), message);
                    return None;
                }
            };
            book = stored;
            if d < base.index {
                if self.hosts[index].disk.snapshot_is_own() {
                    let message = format!(
                        "rule restart-base: the log was compacted to its own snapshot at index {} but the state machine's durable applied index is {d}: a host compacts only up to what sync() made durable",
                        base.index
                    );
                    self.fail(FailureKind::DurableState, Some(index), message);
                    return None;
                }
                if let Err(error) = restore_whole(&mut sm, base.index, &state) {
                    let message = format!(
                        "restoring the stored snapshot at index {}: {}",
                        base.index,
                        storage(error)
                    );
                    self.fail(FailureKind::Recovery, Some(index), message);
                    return None;
                }
                self.durable
                    .as_mut()
                    .expect("on")
                    .counts
                    .restored_at_restart += 1;
                self.spent.fsyncs += 1;
                self.note(Some(index), || {
                    format!(
                        "its state machine's durable applied index {d} is below the log's base {}: restored from the stored snapshot",
                        base.index
                    )
                });
            }
        } else if d < base.index {
            let message = format!(
                "the log continues after {base:?}, past the state machine's durable applied index {d}, and no snapshot is stored to rebuild it from"
            );
            self.fail(FailureKind::Recovery, Some(index), message);
            return None;
        }
        let at = sm.applied_index();
        self.note(Some(index), || {
            format!(
                "its state machine is back at applied index {at} (durable {d}, log base {}, durable log to {last})",
                base.index
            )
        });
        self.judge_restart_state(index, &sm, at);
        if self.failure.is_some() {
            return None;
        }
        Some((Replica::Durable(Box::new(sm)), book))
    }

    /// Where node `index`'s host starts its node's applied index: the
    /// log's base, as for any host; with the planted
    /// `durable_restart_trusts_applied` its state machine's durable
    /// applied index (capped at the log's end), written into `recovered`,
    /// with the Host entries up to it (which the node will not hand out
    /// again) for the host's book.
    pub(super) fn trusted_applied(
        &mut self,
        index: usize,
        recovered: &mut concord::Recovered,
    ) -> (LogPosition, Vec<(Index, Bytes)>) {
        let base = recovered.base;
        if !self.config.bugs.durable_restart_trusts_applied
            || self.durable.is_none()
            || self.witness == Some(index)
        {
            return (base, Vec::new());
        }
        let durable = self.hosts[index]
            .disk
            .sm_file
            .as_ref()
            .map_or(0, crate::durable::DurableFile::durable_index);
        let trusted: Vec<&Entry> = recovered
            .entries
            .iter()
            .take_while(|entry| entry.index <= durable)
            .collect();
        let Some(last) = trusted.last().map(|entry| entry.position()) else {
            return (base, Vec::new());
        };
        let records = trusted
            .iter()
            .filter_map(|entry| match &entry.payload {
                EntryPayload::Host(bytes) => Some((entry.index, bytes.clone())),
                _ => None,
            })
            .collect();
        recovered.applied_index = last.index;
        (last, records)
    }

    /// The offline forced recovery of node `index` (down) rebuilds its
    /// on-disk state machine from the stored snapshot (empty without one):
    /// the recovery gives up committed entries past the survivor's log,
    /// whose effect its state machine may hold (its durable applied index
    /// past the log's end, after a restore whose write to the log was not
    /// durable), and commits the survivor's log in their place, whose
    /// entries up to that index need not be the ones applied. The log's
    /// base is the one state both agree on.
    pub(super) fn roll_back_state_machine(&mut self, index: usize) {
        if self.witness == Some(index) {
            return;
        }
        let id = index as concord::NodeId + 1;
        let tapped = Tapped::new((self.make_sm)(id), self.config.table_sessions());
        let Some(durable) = self.durable.as_ref() else {
            return;
        };
        let mut sm = durable.new_state_machine(index, tapped);
        let before = self.hosts[index]
            .disk
            .sm_file
            .as_ref()
            .map_or(0, crate::durable::DurableFile::durable_index);
        let mut at = 0;
        if let Some(snapshot) = self.hosts[index].disk.snapshot().cloned() {
            let state = match self.unwrap_host_snapshot(&snapshot.data) {
                Ok((_, state)) => state,
                Err(error) => {
                    let message = format!("reading the stored snapshot: {error}");
                    self.fail(FailureKind::Recovery, Some(index), message);
                    return;
                }
            };
            at = snapshot.position.index;
            if let Err(error) = restore_whole(&mut sm, at, &state) {
                let message = format!(
                    "rebuilding the state machine from the stored snapshot at index {at}: {}",
                    storage(error)
                );
                self.fail(FailureKind::Recovery, Some(index), message);
                return;
            }
        }
        let (file, _) = sm.crash(false);
        self.hosts[index].disk.sm_file = Some(file);
        self.spent.fsyncs += 1;
        self.note(Some(index), || {
            format!(
                "forced recovery: its state machine (durable applied index {before}) is rebuilt from the stored snapshot at index {at}"
            )
        });
    }

    /// Rule `restart-state`: the state a restart found at `at` is the
    /// reference replica's at `at`.
    fn judge_restart_state(&mut self, index: usize, sm: &SimDurable<Tapped<S>>, at: Index) {
        if at == 0 || at > self.safety.committed_len() {
            return;
        }
        let capacity = self.config.table_sessions();
        let (safety, make_sm) = (&self.safety, &mut self.make_sm);
        let Some(durable) = self.durable.as_mut() else {
            return;
        };
        let expected = durable.reference.state_at(
            at,
            |i| safety.committed_entry(i).cloned(),
            || concord::session::WithSessions::new(make_sm(1), capacity),
        );
        let Some(expected) = expected else {
            return;
        };
        durable.reference.judged += 1;
        durable.counts.restart_states_judged += 1;
        let state = sm.canonical_state();
        if state != expected {
            let message = format!(
                "rule restart-state: n{} restarted with its state machine at applied index {at}, but its state is not the committed log's at {at}: {}",
                index + 1,
                super::states::describe_difference(
                    (&format!("n{}", index + 1), &state),
                    ("the committed log applied in order", &expected)
                )
            );
            self.fail(FailureKind::StateMachineSafety, Some(index), message);
        }
    }

    /// Executes `Action::Apply` on an on-disk state machine: now, or after
    /// the restore under way. The inputs the step leads to go to `work`.
    pub(super) fn apply_durable_action(
        &mut self,
        index: usize,
        entries: Vec<Entry>,
        work: &mut VecDeque<(Input, Option<super::host::Proposer>)>,
    ) {
        let host = &mut self.hosts[index];
        if host.ondisk.busy() {
            host.ondisk.queue.push_back(Queued::Apply(entries));
            return;
        }
        let Some(last) = entries.last().map(|entry| entry.index) else {
            return;
        };
        self.apply_durable(index, &entries);
        if self.failure.is_none() {
            work.push_back((Input::Applied(last), None));
        }
    }

    /// Applies `entries` (one `Action::Apply`) to node `index`'s on-disk
    /// state machine with one `apply_batch`, skipping those it holds
    /// already, then judges each entry as any host does.
    fn apply_durable(&mut self, index: usize, entries: &[Entry]) {
        let Some(last) = entries.last().map(Entry::position) else {
            return;
        };
        let host = &mut self.hosts[index];
        if host
            .node
            .as_ref()
            .is_some_and(|node| node.config().compaction_threshold_bytes.is_some())
        {
            host.applied_bytes.note_apply(entries);
        }
        let Some(sm) = host.sm.durable_mut() else {
            return;
        };
        let applied = sm.applied_index();
        let skip = entries
            .iter()
            .take_while(|entry| entry.index <= applied)
            .count();
        let (skipped, rest) = entries.split_at(skip);
        let mut responses = Vec::with_capacity(rest.len());
        debug_assert_eq!(sm.live_mut().take_notes().len(), 0);
        let flushes = sm.stats().background_flushes;
        let outcome = sm.apply_batch(rest, &mut responses);
        self.spent.fsyncs += sm.stats().background_flushes - flushes;
        let notes: Vec<Note> = sm.live_mut().take_notes().collect();
        if let Some(durable) = self.durable.as_mut() {
            durable.counts.entries_skipped += skipped.len() as u64;
        }
        for entry in skipped {
            // The image holds its effect; a Host entry is the host's own.
            if let EntryPayload::Host(bytes) = &entry.payload {
                self.apply_host_entry(index, entry.index, bytes);
            }
            if let Some(pending) = self.hosts[index].pending.remove(&entry.index) {
                self.reply(pending.client, pending.attempt, Reply::Unknown);
            }
            if self.failure.is_some() {
                return;
            }
        }
        if let Err(error) = outcome {
            self.fail(FailureKind::HostContract, Some(index), storage(error));
            return;
        }
        let mut notes = notes.into_iter();
        for (entry, response) in rest.iter().zip(responses) {
            let note = match entry.payload {
                EntryPayload::Command(_) | EntryPayload::ForcedMembership(_) => notes.next(),
                _ => None,
            };
            self.after_apply(index, entry, response, note);
            if self.failure.is_some() {
                return;
            }
        }
        self.hosts[index].applied_position = last;
        if self.hosts[index].ondisk.snapshot_waits {
            self.take_snapshot_durable(index);
        }
    }

    /// `Action::TakeSnapshot` on an on-disk state machine: a view at the
    /// applied index, read later (`Event::ReadView`), as the runtime's host
    /// takes it: no `sync()` first.
    pub(super) fn take_snapshot_durable(&mut self, index: usize) {
        let past_applied = self.config.bugs.snapshot_past_applied;
        let host = &mut self.hosts[index];
        host.snapshot_outstanding = true;
        let Some(node) = host.node.as_ref() else {
            return;
        };
        let Some(sm) = host.sm.durable_mut() else {
            return;
        };
        // The state machine must stand where the node was told it does.
        if host.ondisk.busy() || sm.applied_index() != host.applied_position.index {
            host.ondisk.snapshot_waits = true;
            return;
        }
        host.ondisk.snapshot_waits = false;
        let position = if past_applied {
            let commit = node.commit_index();
            LogPosition::new(commit, node.term_at(commit).unwrap_or(0))
        } else {
            host.applied_position
        };
        let membership = node.membership_at(position.index).cloned();
        let view = match sm.view() {
            Ok(view) => view,
            Err(error) => {
                self.fail(FailureKind::HostContract, Some(index), storage(error));
                return;
            }
        };
        let book = host.book.clone();
        let taken = self.state_taken(index);
        self.hosts[index].ondisk.view = Some(PendingView {
            position,
            membership,
            view,
            taken,
            book,
        });
        let delay = self.durable_rng().gen_range(MS..=40 * MS);
        let incarnation = self.hosts[index].incarnation;
        self.schedule(
            delay,
            Event::ReadView {
                node: index as u8,
                incarnation,
            },
        );
    }

    fn durable_rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.durable.as_mut().expect("durable runs only").rng
    }

    /// The view of node `index`'s snapshot is read (off the loop, applies
    /// went on meanwhile) and written to its snapshot file.
    pub(super) fn read_view(&mut self, index: usize, incarnation: u32) {
        let host = &mut self.hosts[index];
        if host.incarnation != incarnation || host.node.is_none() {
            return;
        }
        let Some(mut pending) = host.ondisk.view.take() else {
            return;
        };
        let applied = host.sm.durable().map_or(0, SimDurable::applied_index);
        let state = match read_view(&mut pending.view) {
            Ok(state) => Bytes::from(state),
            Err(error) => {
                self.fail(FailureKind::HostContract, Some(index), storage(error));
                return;
            }
        };
        if applied > pending.position.index {
            if let Some(durable) = self.durable.as_mut() {
                durable.counts.views_read_after_applies += 1;
            }
        }
        // As the runtime's host: before the snapshot goes to the log (which
        // compacts up to it), the state machine holds its index durably,
        // synced here if its view did not see to it (a simulated view
        // never does). Applies went on meanwhile: the sync covers them too.
        let bug_without_sync = self.config.bugs.durable_snapshot_without_sync;
        let Some(sm) = self.hosts[index].sm.durable_mut() else {
            return;
        };
        if !bug_without_sync && sm.durable_applied_index() < pending.position.index {
            if let Err(error) = sm.sync() {
                self.fail(FailureKind::HostContract, Some(index), storage(error));
                return;
            }
            self.spent.fsyncs += 1;
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

    /// `Action::RestoreSnapshot` on an on-disk state machine: the restore
    /// starts now, or after the one under way.
    pub(super) fn restore_durable(
        &mut self,
        index: usize,
        position: LogPosition,
        book: Book,
        state: Bytes,
    ) {
        let host = &mut self.hosts[index];
        if host.ondisk.busy() {
            host.ondisk.queue.push_back(Queued::Restore {
                position,
                book,
                state,
            });
            return;
        }
        self.start_restore(index, position, book, state);
    }

    fn start_restore(&mut self, index: usize, position: LogPosition, book: Book, state: Bytes) {
        let Some(sm) = self.hosts[index].sm.durable_mut() else {
            return;
        };
        let restore = match sm.begin_restore(position.index) {
            Ok(restore) => restore,
            Err(error) => {
                self.fail(FailureKind::HostContract, Some(index), storage(error));
                return;
            }
        };
        self.hosts[index].ondisk.restoring = Some(Restoring {
            position,
            book,
            state,
            written: 0,
            restore,
        });
        self.schedule_restore_chunk(index);
    }

    fn schedule_restore_chunk(&mut self, index: usize) {
        let delay = self.durable_rng().gen_range(MS / 10..=5 * MS);
        let incarnation = self.hosts[index].incarnation;
        self.schedule(
            delay,
            Event::RestoreChunk {
                node: index as u8,
                incarnation,
            },
        );
    }

    /// The next chunk of the restore under way is written (off the loop);
    /// after the last, the restore is completed and its finish handed to
    /// the loop.
    pub(super) fn restore_chunk(&mut self, index: usize, incarnation: u32) {
        if self.hosts[index].incarnation != incarnation || self.hosts[index].node.is_none() {
            return;
        }
        if self.hosts[index].ondisk.restoring.is_none() {
            return;
        }
        if self.durable_nemesis_strikes() {
            self.durable_nemesis_crash(index, "in the middle of its restore");
            return;
        }
        let chunk = self.durable_rng().gen_range(64..=RESTORE_CHUNK_MAX);
        let Some(restoring) = self.hosts[index].ondisk.restoring.as_mut() else {
            return;
        };
        let end = (restoring.written + chunk).min(restoring.state.len());
        let written = restoring
            .restore
            .write(&restoring.state[restoring.written..end]);
        restoring.written = end;
        let done = end == restoring.state.len();
        let outcome = written.and_then(|()| {
            if done {
                restoring.restore.complete()
            } else {
                Ok(())
            }
        });
        if let Err(error) = outcome {
            self.fail(FailureKind::HostContract, Some(index), storage(error));
            return;
        }
        if done {
            self.deliver(index, HostInput::FinishRestore);
        } else {
            self.schedule_restore_chunk(index);
        }
    }

    /// On the loop: the completed restore becomes the state
    /// (`finish_restore`), the node is told (`Input::Applied`), and what
    /// waited for it runs.
    pub(super) fn finish_restore(&mut self, index: usize) {
        let host = &mut self.hosts[index];
        let Some(restoring) = host.ondisk.restoring.take() else {
            return;
        };
        let Some(sm) = host.sm.durable_mut() else {
            return;
        };
        let position = restoring.position;
        if let Err(error) = sm.finish_restore(restoring.restore) {
            self.fail(
                FailureKind::StateMachineSafety,
                Some(index),
                format!("restoring the snapshot at {position:?}: {}", storage(error)),
            );
            return;
        }
        host.book = restoring.book;
        host.applied_position = position;
        self.spent.fsyncs += 1;
        if let Some(durable) = self.durable.as_mut() {
            durable.counts.restores += 1;
        }
        self.note(Some(index), || {
            format!(
                "its state machine finished restoring the snapshot at index {} term {}",
                position.index, position.term
            )
        });
        self.check_book(index, position.index, "restoring a leader's snapshot");
        if self.failure.is_some() {
            return;
        }
        self.step(index, Input::Applied(position.index), None);
        self.run_queued(index);
        if self.hosts[index].node.is_some() && self.durable_nemesis_strikes() {
            self.durable_nemesis_crash(index, "right after its restore finished");
        }
    }

    /// Whether the durable nemesis crashes a node now: in seeds with
    /// crashes, before the faults heal, at [`RESTORE_CRASH_ODDS`].
    fn durable_nemesis_strikes(&mut self) -> bool {
        if self.healed || self.failure.is_some() || !self.plan.enabled().contains(FaultKind::Crash)
        {
            return false;
        }
        self.durable_rng().gen_bool(RESTORE_CRASH_ODDS)
    }

    /// The durable nemesis crashes node `index` (`when` says when), which
    /// comes back 10 to 200 ms later.
    fn durable_nemesis_crash(&mut self, index: usize, when: &str) {
        let down_ns = self.durable_rng().gen_range(10 * MS..=200 * MS);
        if let Some(durable) = self.durable.as_mut() {
            durable.counts.nemesis_crashes += 1;
        }
        self.note(Some(index), || format!("durable nemesis: crash {when}"));
        self.nemesis_crash(index, down_ns, false);
    }

    /// Runs what waited for a restore, in order, until another restore
    /// starts.
    fn run_queued(&mut self, index: usize) {
        loop {
            if self.failure.is_some() || self.hosts[index].node.is_none() {
                return;
            }
            let host = &mut self.hosts[index];
            if host.ondisk.restoring.is_some() {
                return;
            }
            let Some(queued) = host.ondisk.queue.pop_front() else {
                break;
            };
            match queued {
                Queued::Apply(entries) => {
                    let Some(last) = entries.last().map(|entry| entry.index) else {
                        continue;
                    };
                    self.apply_durable(index, &entries);
                    if self.failure.is_none() {
                        self.step(index, Input::Applied(last), None);
                    }
                }
                Queued::Restore {
                    position,
                    book,
                    state,
                } => self.start_restore(index, position, book, state),
            }
        }
        if self.hosts[index].ondisk.snapshot_waits {
            self.take_snapshot_durable(index);
        }
    }

    /// Node `index` crashes: its state machine's file goes to its disk,
    /// losing the unsynced batches (the first torn with `tear`).
    pub(super) fn crash_durable(&mut self, index: usize, tear: bool) {
        let host = &mut self.hosts[index];
        let ondisk = std::mem::take(&mut host.ondisk);
        let Some(sm) = host.sm.durable_mut() else {
            return;
        };
        let flushes = sm.stats().background_flushes;
        let ahead = sm.durable_applied_index() > host.disk.last_index();
        let (file, loss) = sm.crash(tear);
        host.disk.sm_file = Some(file);
        let Some(durable) = self.durable.as_mut() else {
            return;
        };
        let counts = &mut durable.counts;
        counts.background_flushes += flushes;
        if loss.lost_batches > 0 {
            counts.crashes_losing_batches += 1;
            counts.batches_lost += loss.lost_batches as u64;
        }
        counts.crashes_during_restore += u64::from(ondisk.restoring.is_some());
        counts.crashes_during_view += u64::from(ondisk.view.is_some());
        counts.crashes_ahead_of_log += u64::from(ahead);
    }

    /// The counts at the end of the run (the background flushes of the
    /// state machines still running added).
    pub(super) fn durable_counts(&self) -> DurableCounts {
        let Some(durable) = self.durable.as_ref() else {
            return DurableCounts::default();
        };
        let mut counts = durable.counts;
        for host in &self.hosts {
            if host.node.is_some() {
                if let Some(sm) = host.sm.durable() {
                    counts.background_flushes += sm.stats().background_flushes;
                }
            }
        }
        counts
    }
}

/// Streams `state` into `sm` as a restore at `index`, in chunks, and
/// finishes it (a restart's restore from the stored snapshot).
fn restore_whole<S: StateMachine>(
    sm: &mut SimDurable<S>,
    index: Index,
    state: &[u8],
) -> Result<(), DurableError> {
    let mut restore = sm.begin_restore(index)?;
    for chunk in state.chunks(RESTORE_CHUNK_MAX) {
        restore.write(chunk)?;
    }
    restore.complete()?;
    sm.finish_restore(restore)
}
