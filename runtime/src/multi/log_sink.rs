//! How the server loop hands writes to the shared log and hears back: a
//! [`LogSink`] takes rounds of writes, and [`LogEvent`]s come back on a
//! channel ([`LogSink::events`]) or, for a sink that writes inline, in
//! the same turn ([`LogSink::take_ready`]). Two sinks: [`WalThread`] runs the [`SharedLog`] on a thread of
//! its own with group commit (every round queued while it syncs goes into
//! the next sync), for real files; [`InlineLog`] writes on the caller's
//! thread, for a disk without latency (the page-cache model) and inside
//! madsim, which has no OS threads. An inline sink hands its events back
//! through [`LogSink::take_ready`] in the same turn of the loop: a round
//! trip through the channel would cost every write one more turn of the
//! loop on every server.

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc::UnboundedReceiver;

use crate::storage::{SnapshotReader, StorageError};
use concord::multi::{BatchId, GroupId};

use super::segment_files::SegmentFiles;
use super::shared_log::{LogStats, RoundOutcome, SharedLog, WalWrite};
use super::snapshot_store::{SnapshotIntake, SnapshotStore};

/// What the log tells the server loop.
#[derive(Debug)]
pub enum LogEvent {
    /// Every persist batch up to this one is durable.
    Persisted(BatchId),
    /// A group's own snapshot is durable: report it to the group.
    Snapshotted {
        /// The group.
        group: GroupId,
        /// A reader of the snapshot.
        snapshot: SnapshotReader,
    },
    /// Groups holding back the deletion of old segments: ask each for a
    /// snapshot.
    ForceSnapshot(Vec<GroupId>),
    /// The log failed: nothing more is durable; the server must stop.
    Failed(StorageError),
}

/// Where the server loop sends its writes.
pub trait LogSink: Send + 'static {
    /// Queues a round of writes, after every earlier one; `batch` is the
    /// persist batch it holds, if any, reported [`LogEvent::Persisted`]
    /// once durable.
    fn submit(&mut self, batch: Option<BatchId>, writes: Vec<WalWrite>);
    /// The log's counters so far.
    fn stats(&self) -> LogStats;
    /// Where the host receives groups' snapshots for this log's store.
    fn snapshot_intake(&self) -> SnapshotIntake;
    /// Finishes every queued round and stops. Idempotent.
    fn shutdown(&mut self);
    /// The channel this sink reports on, taken once by the loop when it
    /// starts; `None` for a sink that reports through
    /// [`take_ready`](Self::take_ready) alone (the default).
    fn events(&mut self) -> Option<UnboundedReceiver<LogEvent>> {
        None
    }
    /// Moves the events of rounds already written into `out` (a sink that
    /// writes on the caller's thread); the loop takes them before it
    /// waits. A sink that reports on its channel has none (the default).
    fn take_ready(&mut self, out: &mut Vec<LogEvent>) {
        let _ = out;
    }
}

/// What a round's outcome says to the loop, in order.
fn report(batch: Option<BatchId>, outcome: RoundOutcome, mut send: impl FnMut(LogEvent)) {
    if let Some(batch) = batch {
        send(LogEvent::Persisted(batch));
    }
    for (group, snapshot) in outcome.taken {
        send(LogEvent::Snapshotted { group, snapshot });
    }
    if !outcome.force_snapshot.is_empty() {
        send(LogEvent::ForceSnapshot(outcome.force_snapshot));
    }
}

/// A [`SharedLog`] written on the caller's thread: each submitted round
/// is written (and synced) before `submit` returns, and its events (a
/// failure too) wait for [`LogSink::take_ready`]. It has no channel.
#[derive(Debug)]
pub struct InlineLog<S, T> {
    log: Option<SharedLog<S, T>>,
    ready: Vec<LogEvent>,
    intake: SnapshotIntake,
}

impl<S: SegmentFiles, T: SnapshotStore> InlineLog<S, T> {
    /// Writes `log` inline.
    pub fn new(log: SharedLog<S, T>) -> Self {
        InlineLog {
            intake: log.snapshot_intake(),
            log: Some(log),
            ready: Vec::new(),
        }
    }
}

impl<S: SegmentFiles, T: SnapshotStore> LogSink for InlineLog<S, T> {
    fn submit(&mut self, batch: Option<BatchId>, writes: Vec<WalWrite>) {
        let Some(log) = self.log.as_mut() else {
            return;
        };
        match log.write(writes) {
            Ok(outcome) => report(batch, outcome, |event| self.ready.push(event)),
            Err(e) => {
                tracing::error!(error = %e, "shared write-ahead log failed; the node must stop");
                self.log = None;
                self.ready.push(LogEvent::Failed(e));
            }
        }
    }

    fn stats(&self) -> LogStats {
        self.log.as_ref().map(SharedLog::stats).unwrap_or_default()
    }

    fn snapshot_intake(&self) -> SnapshotIntake {
        self.intake.clone()
    }

    fn shutdown(&mut self) {}

    fn take_ready(&mut self, out: &mut Vec<LogEvent>) {
        out.append(&mut self.ready);
    }
}

/// The name of [`WalThread`]'s thread (`/proc` shows its first 15
/// bytes), for profilers and for tools that split a process's CPU time
/// by thread.
pub const WAL_THREAD_NAME: &str = "concord-multi-wal";

/// Most rounds taken into one sync by [`WalThread`].
pub const ROUNDS_PER_SYNC_MAX: usize = 4096;

type Round = (Option<BatchId>, Vec<WalWrite>);

/// A [`SharedLog`] on a thread of its own: rounds queue up while it syncs
/// and go into the next sync together (group commit across rounds, on top
/// of the one batch per flush of every group).
#[derive(Debug)]
pub struct WalThread {
    tx: Option<crossbeam_channel::Sender<Round>>,
    events: Option<UnboundedReceiver<LogEvent>>,
    thread: Option<std::thread::JoinHandle<()>>,
    stats: Arc<Mutex<LogStats>>,
    intake: SnapshotIntake,
}

impl WalThread {
    /// Starts the thread writing `log`; it reports on the channel of
    /// [`LogSink::events`].
    pub fn start<S: SegmentFiles, T: SnapshotStore>(
        mut log: SharedLog<S, T>,
    ) -> Result<WalThread, StorageError> {
        let (events, events_rx) = tokio::sync::mpsc::unbounded_channel();
        let (tx, rx) = crossbeam_channel::unbounded::<Round>();
        let stats = Arc::new(Mutex::new(log.stats()));
        let intake = log.snapshot_intake();
        let shared = stats.clone();
        let thread = std::thread::Builder::new()
            .name(WAL_THREAD_NAME.to_string())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut last_batch = first.0;
                    let mut writes = first.1;
                    let mut rounds = 1;
                    while rounds < ROUNDS_PER_SYNC_MAX {
                        let Ok((batch, more)) = rx.try_recv() else {
                            break;
                        };
                        if let Some(batch) = batch {
                            assert!(
                                last_batch.is_none_or(|last| last < batch),
                                "persist batches are submitted in order"
                            );
                            last_batch = Some(batch);
                        }
                        writes.extend(more);
                        rounds += 1;
                    }
                    match log.write(writes) {
                        Ok(outcome) => {
                            *shared.lock().unwrap_or_else(|e| e.into_inner()) = log.stats();
                            report(last_batch, outcome, |event| {
                                let _ = events.send(event);
                            });
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "shared write-ahead log failed; the node must stop");
                            let _ = events.send(LogEvent::Failed(e));
                            return;
                        }
                    }
                }
            })
            .map_err(|e| StorageError::Io {
                context: "spawning the shared write-ahead log's thread".to_string(),
                source: e,
            })?;
        Ok(WalThread {
            tx: Some(tx),
            events: Some(events_rx),
            thread: Some(thread),
            stats,
            intake,
        })
    }
}

impl LogSink for WalThread {
    fn submit(&mut self, batch: Option<BatchId>, writes: Vec<WalWrite>) {
        if let Some(tx) = &self.tx {
            // The thread only stops after reporting a failure.
            let _ = tx.send((batch, writes));
        }
    }

    fn stats(&self) -> LogStats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn snapshot_intake(&self) -> SnapshotIntake {
        self.intake.clone()
    }

    fn events(&mut self) -> Option<UnboundedReceiver<LogEvent>> {
        self.events.take()
    }

    fn shutdown(&mut self) {
        self.tx = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for WalThread {
    fn drop(&mut self) {
        self.shutdown();
    }
}
