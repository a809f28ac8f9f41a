//! The server loop of a node hosting many groups: one
//! [`MultiNode`], one state machine per group (any [`StateMachine`]), one
//! shared log ([`LogSink`]), one [`FrameSender`] (one connection per
//! peer), one timer.
//!
//! Everything reaches the loop through one bounded channel of
//! [`HostEvent`]s (frames from peers, client requests naming their group,
//! status queries) plus the log's channel of [`LogEvent`]s and the timer.
//! A turn handles what arrived, proposes each group's queued commands as
//! one batch, then settles the layer: flush, execute every action (frames
//! to the network, the one persist batch to the log, group actions to the
//! groups' state machines), feed completions back, flush again, until
//! nothing is left. So one turn makes one persist batch and one frame per
//! peer, whatever the number of groups that had something to do.
//!
//! The timer ticks the whole node: [`MultiInput::Tick`] for every tick of
//! wall-clock time (the ticks a stall missed included), and the layer
//! ticks only the groups that are awake.
//!
//! Snapshots are per group: a group's own ([`Action::TakeSnapshot`]) is
//! serialized on the loop and written by the log, then reported; one from
//! a leader is received chunk by chunk into a sink of the log's
//! [`SnapshotIntake`] (in memory up to
//! [`MultiServerConfig::snapshot_in_memory_bytes_max`], otherwise into a
//! file next to the group's snapshots), restored, and stored as it is by
//! the persist batch that holds its `PersistSnapshot`.
//!
//! ## Freeing old segments
//!
//! The log asks for the snapshots of the groups that hold its oldest
//! segment back ([`LogEvent::ForceSnapshot`]). A snapshot covers only
//! what the group applied, so a group that cannot apply its last entries
//! (a leader without a quorum, a follower whose leader died before
//! committing them) would keep its segment forever, and the disk would
//! grow without bound behind one idle group. So once the snapshot is
//! asked for, every entry of the group after the snapshot handed to the
//! log is written again, as it stands in the group's log now, into the
//! log's current segment (after every write the layer still held, so the
//! copy is the group's log at that point of the log). The old segment is
//! then needed by nobody. The copy costs the group's unapplied entries,
//! once per `segments_max` segments the node writes. A group whose
//! snapshot is still streaming from its state machine's view is not
//! copied: the snapshot frees the segment when the log gets it (and the
//! log asks again, a segment later, if it did not).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::Instrument;

use crate::loop_handle::{LoopHandle, Unanswered};
use crate::metrics::round_trip::RoundTrips;
use crate::metrics::snapshot_times::SnapshotTimes;
use crate::storage::{ReceivedSnapshot, SnapshotReader, SnapshotSink, StorageError};
use crate::wire::ClientResponse;
use concord::durable::{DurableError, DurableStateMachine, InMemory, StateRestore, StateView};
use concord::multi::{
    Frame, GroupId, MultiAction, MultiConfig, MultiError, MultiInput, MultiNode, MultiStats,
    CATALOG_GROUP,
};
use concord::state_machine::StateMachine;
use concord::Membership;
use concord::{
    Action, Config, Index, Input, LogPosition, NodeId, ProposeError, Role, Snapshot,
    StorageRecoveryEvent, Term, TransferOutcome,
};

use super::log_sink::{LogEvent, LogSink};
use super::replay::MultiRecovery;
use super::shared_log::{LogStats, WalWrite};
use super::snapshot_store::{self, SnapshotIntake};
use super::wire::GroupOp;

mod counts;
mod members;

pub use counts::RaftCounts;

/// Sends frames to peers. Best effort: a frame may be lost.
pub trait FrameSender: Send + Sync + 'static {
    /// Queues `frame` for node `frame.to` without waiting.
    fn send(&self, frame: Frame);

    /// Learns (or updates) the address of peer `peer`, recorded in the
    /// catalog while the server runs. Senders of a fixed set of peers
    /// ignore it (the default).
    fn add_peer(&self, peer: NodeId, addr: &str) {
        let _ = (peer, addr);
    }

    /// The address of `peer` if this sender learned it outside the
    /// catalog (its listener looked up a member that dialled it); `None`
    /// by default.
    fn learned_address(&self, peer: NodeId) -> Option<String> {
        let _ = peer;
        None
    }
}

/// Something for the loop to handle.
#[derive(Debug)]
#[non_exhaustive]
pub enum HostEvent {
    /// A frame from a peer.
    Frame(Box<Frame>),
    /// A client's request to a group.
    Request {
        /// The group.
        group: GroupId,
        /// What to do.
        op: GroupOp,
        /// Where the answer goes.
        reply: oneshot::Sender<ClientResponse>,
    },
    /// Hand a group's leadership to another of its voters (at the
    /// group's leader here).
    Transfer {
        /// The group.
        group: GroupId,
        /// The voter to hand it to.
        target: NodeId,
        /// Where the answer goes: the transfer's outcome, or why the
        /// group could not be asked.
        reply: oneshot::Sender<Result<TransferOutcome, String>>,
    },
    /// A status query.
    Status {
        /// Whether to list every group (costly with many).
        groups: bool,
        /// Where the answer goes.
        reply: oneshot::Sender<MultiStatus>,
    },
    /// A group's snapshot, streamed from its state machine's view off the
    /// loop: sent by the server to itself.
    Streamed(Box<StreamedSnapshot>),
}

/// A snapshot a server streamed from a state machine's view on another
/// thread ([`HostEvent::Streamed`]); only the server reads it.
#[derive(Debug)]
pub struct StreamedSnapshot {
    group: GroupId,
    position: LogPosition,
    membership: Membership,
    result: Result<ReceivedSnapshot, StorageError>,
}

/// Bounded capacity of a multi-group server's inbox.
pub const INBOX_EVENTS_MAX: usize = 65_536;

/// Makes the channel a server reads its events from.
pub fn inbox() -> (mpsc::Sender<HostEvent>, mpsc::Receiver<HostEvent>) {
    mpsc::channel(INBOX_EVENTS_MAX)
}

/// Settings of a multi-group server.
#[derive(Clone, Debug)]
pub struct MultiServerConfig {
    /// The layer's configuration (its `incarnation` must differ at every
    /// start of the node: draw it from a counter stored durably).
    pub multi: MultiConfig,
    /// The groups hosted from the start, each with its configuration
    /// (`Config::id` this node).
    pub groups: Vec<(GroupId, Config)>,
    /// Wall-clock length of one tick.
    pub tick: Duration,
    /// Most commands proposed to one group in one batch.
    pub proposal_batch_max: usize,
    /// Most events handled between two looks at the timer and the log.
    pub events_per_turn_max: usize,
    /// Client address of each node, for redirects.
    pub client_addrs: BTreeMap<NodeId, String>,
    /// A snapshot from a group's leader larger than this is received into
    /// a file as it arrives, not into memory (when the log's store has
    /// files).
    pub snapshot_in_memory_bytes_max: u64,
    /// Group [`CATALOG_GROUP`] is the
    /// catalog ([`concord::multi::Catalog`]), not a group of the state
    /// machine: the servers, their addresses and assigned groups (see
    /// [`start_with_catalog`]). Off by default.
    pub catalog: bool,
    /// This server is a witness (`concord-node --witness`): every data
    /// group it comes to host from the catalog (assigned, or found on
    /// disk) is built as a witness node, which never applies entries;
    /// the catalog itself is kept in full. Off by default.
    pub witness: bool,
}

impl MultiServerConfig {
    /// Defaults around `multi` and `groups`: 10 ms ticks, batches of up to
    /// 4,096 commands, 8,192 events per turn, snapshots over 1 MiB
    /// received into files.
    pub fn new(multi: MultiConfig, groups: Vec<(GroupId, Config)>) -> Self {
        MultiServerConfig {
            multi,
            groups,
            tick: Duration::from_millis(10),
            proposal_batch_max: 4096,
            events_per_turn_max: 8192,
            client_addrs: BTreeMap::new(),
            snapshot_in_memory_bytes_max: 1024 * 1024,
            catalog: false,
            witness: false,
        }
    }
}

/// What to do when `source` is a full disk (nothing for any other
/// error): give `what` room and start the node again, which resumes
/// from what it holds (`then`, if more is to be said).
fn full_disk_advice(source: &std::io::Error, what: &str, then: &str) -> String {
    if source.kind() != std::io::ErrorKind::StorageFull {
        return String::new();
    }
    format!(
        "; the disk is full: give {what} room (free space, or a larger disk) and start the \
         node again; it resumes from what it holds{then}"
    )
}

/// [`full_disk_advice`] for an error of the node's own storage.
fn full_disk_hint(error: &StorageError) -> String {
    match error {
        StorageError::Io { source, .. } => full_disk_advice(source, "the data directory", ""),
        _ => String::new(),
    }
}

/// Why a multi-group server could not start or had to stop.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum MultiServerError {
    /// The layer refused its configuration or a group's.
    #[error("{0}")]
    Layer(#[from] MultiError),
    /// The node's storage failed: the shared log, or a snapshot file
    /// being written or read.
    #[error("storage failed: {0}{hint}", hint = full_disk_hint(.0))]
    Storage(#[from] StorageError),
    /// A group's state machine could not be restored from its snapshot.
    #[error(
        "group {group}: cannot restore the state machine from the snapshot at index {index}: \
         {reason}; run the same state machine version on every node"
    )]
    Restore {
        /// The group.
        group: GroupId,
        /// The snapshot's last index.
        index: Index,
        /// What the state machine reported.
        reason: String,
    },
    /// A group's durable state machine failed (its storage), or holds a
    /// state the log cannot continue.
    #[error("group {group}: the state machine's storage failed or cannot be used: {reason}")]
    StateMachine {
        /// The group.
        group: GroupId,
        /// What went wrong, and what to do.
        reason: String,
    },
}

/// One group as the server sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupStatus {
    /// Its role here.
    pub role: Role,
    /// Its term here.
    pub term: Term,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// Its commit index here.
    pub commit: Index,
    /// Its applied index here.
    pub applied: Index,
    /// Its last log index here (durable or not).
    pub last: Index,
}

/// Counters of the server loop itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostStats {
    /// Snapshots from leaders received into memory.
    pub snapshots_received_in_memory: u64,
    /// Snapshots from leaders received into files as they arrived.
    pub snapshots_received_to_files: u64,
    /// Groups whose entries after their snapshot were written again to
    /// free an old segment (see the [module documentation](self)).
    pub groups_rewritten: u64,
    /// Entries written again for them.
    pub entries_rewritten: u64,
    /// Client commands proposed to groups this node leads (every group
    /// summed; counted per proposed batch).
    pub proposals: u64,
    /// Entries applied to the groups' state machines (every group
    /// summed; counted per applied batch).
    pub entries_applied: u64,
    /// Reads served without a log entry at the leader after a heartbeat
    /// round (ReadIndex).
    pub reads_read_index: u64,
    /// Reads served at the leader under its lease.
    pub reads_lease: u64,
    /// Reads served at a follower.
    pub reads_follower: u64,
    /// Client requests answered with a redirect to the group's leader.
    pub redirects: u64,
    /// Groups that learned, since this server started, that they must
    /// catch up before they vote: this server started with empty or
    /// damaged storage in a running cluster (see
    /// [`StorageRecovery`](concord::StorageRecovery)).
    pub groups_recovering_storage: u64,
    /// Groups whose recovery from lost storage finished since this server
    /// started.
    pub groups_recovered_storage: u64,
    /// Groups whose committed log was found contradicting their leader's
    /// (each serves no reads since; logged at error level).
    pub groups_diverged: u64,
    /// Client requests answered "outcome unknown, retry": their entry
    /// was overwritten or covered by a snapshot, the group lost its
    /// leadership before applying it, or the group left this server.
    pub unknown_outcomes: u64,
    /// Bytes of the snapshots groups received whole from a leader.
    pub snapshot_bytes_received: u64,
}

/// A multi-group server's status.
#[derive(Clone, Debug)]
pub struct MultiStatus {
    /// The node.
    pub id: NodeId,
    /// Groups hosted.
    pub groups_hosted: usize,
    /// Groups awake (ticked every tick).
    pub groups_awake: usize,
    /// Groups this node leads.
    pub groups_led: usize,
    /// Entries that became committed here since the server started,
    /// every group summed (each group's commit index now less the one it
    /// started with; never decreases while the same groups are hosted).
    pub entries_committed: u64,
    /// The layer's counters.
    pub layer: MultiStats,
    /// The shared log's counters.
    pub log: LogStats,
    /// The loop's own counters.
    pub host: HostStats,
    /// Raft events of every group, summed from the groups' counters.
    pub raft: RaftCounts,
    /// Client sessions in the groups' state machines, summed.
    pub sessions: u64,
    /// Every group, when asked for.
    pub groups: BTreeMap<GroupId, GroupStatus>,
}

/// A running multi-group server.
pub type MultiServerHandle = LoopHandle<HostEvent, MultiServerError>;

impl LoopHandle<HostEvent, MultiServerError> {
    /// Sends `op` to `group` and waits for the answer (in-process client).
    pub async fn call(&self, group: GroupId, op: GroupOp) -> ClientResponse {
        match self
            .ask(|reply| HostEvent::Request { group, op, reply })
            .await
        {
            Ok(response) => response,
            Err(Unanswered::Stopped) => ClientResponse::Error("server stopped".to_string()),
            Err(Unanswered::Dropped) => ClientResponse::Unknown,
        }
    }

    /// Asks `group`'s leader here to hand its leadership to `target`:
    /// the outcome ([`TransferOutcome::Started`] or why not), or why the
    /// group could not be asked.
    pub async fn transfer(
        &self,
        group: GroupId,
        target: NodeId,
    ) -> Result<TransferOutcome, String> {
        let transfer = |reply| HostEvent::Transfer {
            group,
            target,
            reply,
        };
        self.ask(transfer)
            .await
            .unwrap_or_else(|_| Err("server stopped".to_string()))
    }

    /// The server's status (with every group's if `groups`), or `None`
    /// if it stopped.
    pub async fn status(&self, groups: bool) -> Option<MultiStatus> {
        self.ask(|reply| HostEvent::Status { groups, reply })
            .await
            .ok()
    }
}

/// A loop this many ticks behind its clock says so (a warning per turn).
const BEHIND_WARN_TICKS: u64 = 50;

/// A reply waiting for its command's entry: (index, term, reply).
type Waiting = VecDeque<(Index, Term, oneshot::Sender<ClientResponse>)>;

/// Target of the request trace's spans and events
/// ([`crate::request_trace`]): the one a single-group server used, so
/// `RUST_LOG=concord_tokio::server=debug` still turns them on.
const TRACE: &str = "concord_tokio::server";

/// The `apply` span of one entry of `group`, naming the request it
/// carries while the trace is on.
fn apply_span(group: GroupId, entry: &concord::Entry) -> tracing::Span {
    let span = tracing::debug_span!(
        target: TRACE,
        "apply",
        group,
        index = entry.index,
        term = entry.term,
        client = tracing::field::Empty,
        seq = tracing::field::Empty,
        register = tracing::field::Empty,
    );
    if !span.is_disabled() {
        if let concord::EntryPayload::Command(command) = &entry.payload {
            if let Some((client, seq)) = crate::request_trace::session_of_tagged(command) {
                span.record("client", client);
                span.record("seq", seq);
            } else if crate::request_trace::is_registration_tagged(command) {
                span.record("register", true);
            }
        }
    }
    span
}

/// One hosted group's host-side state.
struct HostGroup<S> {
    state_machine: S,
    /// Commands received and not yet proposed, and their replies.
    pending: Vec<Bytes>,
    pending_replies: VecDeque<oneshot::Sender<ClientResponse>>,
    /// Replies of the batch being proposed.
    proposing: VecDeque<oneshot::Sender<ClientResponse>>,
    /// The session fields of the batch being proposed, while request
    /// events are enabled ([`crate::request_trace`]).
    proposing_sessions: VecDeque<Option<(u64, u64)>>,
    waiting: Waiting,
    /// The newest snapshot reported to the group: the one it serves.
    served: Option<SnapshotReader>,
    /// A snapshot being received from the leader.
    incoming: Option<SnapshotSink>,
    /// Snapshots received whole, each until its `PersistSnapshot` stores
    /// it, and a reader of each, oldest first. More than one when a group
    /// installs a second snapshot before the layer hands out the write of
    /// the first (two arrive in one frame): the writes still come, in
    /// order, and each must find its snapshot.
    received: VecDeque<(ReceivedSnapshot, SnapshotReader)>,
    /// Index of the newest snapshot handed to the log (taken, installed
    /// or recovered): where the group's log on disk continues from.
    log_snapshot_index: Index,
}

impl<S> HostGroup<S> {
    fn new(state_machine: S) -> Self {
        HostGroup {
            state_machine,
            pending: Vec::new(),
            pending_replies: VecDeque::new(),
            proposing: VecDeque::new(),
            proposing_sessions: VecDeque::new(),
            waiting: VecDeque::new(),
            served: None,
            incoming: None,
            received: VecDeque::new(),
            log_snapshot_index: 0,
        }
    }

    /// The received snapshot at `position`, for its `PersistSnapshot`:
    /// writes come in the order of the installs, so any older one still
    /// held was never going to be stored (never expected) and is dropped.
    fn take_received(&mut self, position: LogPosition) -> Option<ReceivedSnapshot> {
        while self
            .received
            .front()
            .is_some_and(|(received, _)| received.meta().position.index < position.index)
        {
            let (stale, _) = self.received.pop_front().expect("looked at above");
            tracing::warn!(
                index = stale.meta().position.index,
                "a received snapshot was never stored; dropped"
            );
            snapshot_store::discard_received(stale);
        }
        if self
            .received
            .front()
            .is_some_and(|(received, _)| received.meta().position == position)
        {
            self.received.pop_front().map(|(received, _)| received)
        } else {
            None
        }
    }

    fn serve(&mut self, snapshot: &SnapshotReader) {
        let index = snapshot.meta().position.index;
        if self
            .served
            .as_ref()
            .is_none_or(|served| served.meta().position.index < index)
        {
            self.served = Some(snapshot.clone());
        }
    }
}

/// Most rounds of executing and flushing one turn may take (each feeds
/// completions back; a round that produces nothing ends the turn).
const SETTLE_ROUNDS_MAX: usize = 10_000;

/// Starts a multi-group server on the current runtime: creates every
/// configured group from `recovery` (restoring its state machine, made by
/// `make_state_machine`, from its snapshot), and spawns the loop.
pub fn start<S, F, L, N>(
    config: MultiServerConfig,
    make_state_machine: F,
    recovery: MultiRecovery,
    log: L,
    network: N,
    inbox: (mpsc::Sender<HostEvent>, mpsc::Receiver<HostEvent>),
) -> Result<MultiServerHandle, MultiServerError>
where
    S: StateMachine + Send + 'static,
    F: Fn(GroupId) -> S,
    L: LogSink,
    N: FrameSender,
{
    let make = move |group| InMemory::new(make_state_machine(group));
    start_durable(config, make, recovery, log, network, inbox)
}

/// [`start`] with state machines that keep their state on their own
/// storage ([`DurableStateMachine`]): a group's restart replays only the
/// log after its state machine's durable applied index, and its
/// snapshots stream from a view of the state off the loop.
pub fn start_durable<S, F, L, N>(
    config: MultiServerConfig,
    make_state_machine: F,
    recovery: MultiRecovery,
    log: L,
    network: N,
    inbox: (mpsc::Sender<HostEvent>, mpsc::Receiver<HostEvent>),
) -> Result<MultiServerHandle, MultiServerError>
where
    S: DurableStateMachine,
    F: Fn(GroupId) -> S,
    L: LogSink,
    N: FrameSender,
{
    let server = build(config, &make_state_machine, recovery, log, network)?;
    Ok(launch(server, inbox))
}

/// [`start`] with group [`CATALOG_GROUP`]
/// as the catalog (`config.catalog` is set here): the server also hosts
/// every group found in `recovery` (assigned to it since the cluster
/// started), creates the groups the catalog assigns to it while it runs
/// (with state machines from `make_state_machine`), stops hosting and
/// deletes those it unassigns, and adds the servers it records to the
/// layer's peers and to `network` ([`FrameSender::add_peer`]).
pub fn start_with_catalog<S, F, L, N>(
    config: MultiServerConfig,
    make_state_machine: F,
    recovery: MultiRecovery,
    log: L,
    network: N,
    inbox: (mpsc::Sender<HostEvent>, mpsc::Receiver<HostEvent>),
) -> Result<MultiServerHandle, MultiServerError>
where
    S: StateMachine + Send + 'static,
    F: Fn(GroupId) -> S + Send + 'static,
    L: LogSink,
    N: FrameSender,
{
    let make = move |group| InMemory::new(make_state_machine(group));
    start_durable_with_catalog(config, make, recovery, log, network, inbox)
}

/// [`start_with_catalog`] with state machines that keep their state on
/// their own storage (see [`start_durable`]).
pub fn start_durable_with_catalog<S, F, L, N>(
    mut config: MultiServerConfig,
    make_state_machine: F,
    recovery: MultiRecovery,
    log: L,
    network: N,
    inbox: (mpsc::Sender<HostEvent>, mpsc::Receiver<HostEvent>),
) -> Result<MultiServerHandle, MultiServerError>
where
    S: DurableStateMachine,
    F: Fn(GroupId) -> S + Send + 'static,
    L: LogSink,
    N: FrameSender,
{
    config.catalog = true;
    let mut server = build(config, &make_state_machine, recovery, log, network)?;
    server.make = Some(Box::new(make_state_machine));
    // The groups a restored catalog assigns here, and its servers.
    server.catalog_sync();
    server.settle();
    Ok(launch(server, inbox))
}

/// Whether a changed shutdown signal asks the loop to stop (or its
/// sender is gone).
fn shutdown_asked(shutdown: &mut watch::Receiver<bool>) -> bool {
    match shutdown.has_changed() {
        Ok(true) => *shutdown.borrow_and_update(),
        Ok(false) => false,
        Err(_) => true,
    }
}

/// Most bytes of a stored snapshot fed to a state machine's restore at a
/// time: what a restore holds in memory besides the state machine's own.
const RESTORE_CHUNK_BYTES: u64 = 1 << 20;

/// Why a streamed restore failed: the snapshot, or the state machine's
/// own storage (a full disk, say), which calls for a different remedy.
#[derive(Debug)]
enum RestoreFailure {
    /// The snapshot: cut, unreadable, failing its checksum, or refused by
    /// the state machine as not its format.
    Snapshot(String),
    /// The state machine's storage failed while it took the snapshot in.
    Storage(DurableError),
}

impl RestoreFailure {
    fn of(error: DurableError) -> RestoreFailure {
        match error {
            DurableError::Restore(_) => RestoreFailure::Snapshot(error.to_string()),
            other => RestoreFailure::Storage(other),
        }
    }

    /// The server's error for `group`'s restore of its snapshot at `index`.
    fn into_server_error(self, group: GroupId, index: Index) -> MultiServerError {
        match self {
            RestoreFailure::Snapshot(reason) => MultiServerError::Restore {
                group,
                index,
                reason,
            },
            RestoreFailure::Storage(error) => {
                let advice = match &error {
                    DurableError::Io { source, .. } => full_disk_advice(
                        source,
                        "the state machine's storage",
                        " (the restore starts over; the state it replaces was kept)",
                    ),
                    _ => String::new(),
                };
                MultiServerError::StateMachine {
                    group,
                    reason: format!("restoring the snapshot at index {index}: {error}{advice}"),
                }
            }
        }
    }
}

/// Restores `state_machine` from the snapshot `reader` reads, streamed in
/// chunks and checked against the snapshot's checksum before the new
/// state is swapped in.
fn restore_streamed<S: DurableStateMachine>(
    state_machine: &mut S,
    reader: &SnapshotReader,
) -> Result<(), RestoreFailure> {
    let meta = reader.meta();
    let mut restore = state_machine
        .begin_restore(meta.position.index)
        .map_err(RestoreFailure::of)?;
    let mut checksum = concord::Checksum64::new();
    let mut offset = 0u64;
    while offset < meta.size_bytes {
        let length = (meta.size_bytes - offset).min(RESTORE_CHUNK_BYTES);
        let data = reader
            .read_chunk(offset, length)
            .map_err(|e| RestoreFailure::Snapshot(e.to_string()))?;
        if data.is_empty() {
            return Err(RestoreFailure::Snapshot(format!(
                "the snapshot ends at byte {offset} of {}",
                meta.size_bytes
            )));
        }
        checksum.update(&data);
        restore.write(&data).map_err(RestoreFailure::of)?;
        offset += data.len() as u64;
    }
    // Checked before anything is swapped in: a damaged file restores
    // nothing.
    if checksum.finish() != meta.checksum {
        return Err(RestoreFailure::Snapshot(format!(
            "the snapshot's {} bytes fail its checksum",
            meta.size_bytes
        )));
    }
    restore.complete().map_err(RestoreFailure::of)?;
    state_machine
        .finish_restore(restore)
        .map_err(RestoreFailure::of)?;
    assert_eq!(
        state_machine.applied_index(),
        meta.position.index,
        "a restored state machine is at its snapshot's index"
    );
    Ok(())
}

/// Checks that group `group`'s state machine can continue from the
/// recovered log: one behind the log's start, with no snapshot to
/// rebuild it from, cannot be brought up to date and is refused.
fn check_continues_log<S: DurableStateMachine>(
    group: GroupId,
    state_machine: &S,
    recovered: &concord::Recovered,
) -> Result<(), MultiServerError> {
    let applied = state_machine.applied_index();
    let base = recovered.base.index;
    if applied < base {
        return Err(MultiServerError::StateMachine {
            group,
            reason: format!(
                "it holds the state up to index {applied}, but the log starts after index {base} \
                 and no snapshot covers the entries between: its directory was lost, replaced by \
                 an older copy, or belongs to another node; restore it, or remove this group's \
                 data on this node so that it catches up from the leader"
            ),
        });
    }
    Ok(())
}

/// Streams `view` into a snapshot of `intake` on a blocking thread, and
/// hands the outcome to the server through `inbox`.
#[cfg(not(madsim))]
fn stream_off_loop<V: StateView>(
    intake: SnapshotIntake,
    inbox: mpsc::WeakSender<HostEvent>,
    group: GroupId,
    position: LogPosition,
    membership: Membership,
    mut view: V,
) {
    tokio::task::spawn_blocking(move || {
        let result = intake.stream_view(group, position, &mut view);
        let streamed = StreamedSnapshot {
            group,
            position,
            membership,
            result,
        };
        // A server gone meanwhile leaves a `.tmp` file, removed at start.
        if let Some(inbox) = inbox.upgrade() {
            let _ = inbox.blocking_send(HostEvent::Streamed(Box::new(streamed)));
        }
    });
}

/// Never called under madsim (no blocking threads: streamed inline).
#[cfg(madsim)]
fn stream_off_loop<V: StateView>(
    _intake: SnapshotIntake,
    _inbox: mpsc::WeakSender<HostEvent>,
    _group: GroupId,
    _position: LogPosition,
    _membership: Membership,
    _view: V,
) {
    unreachable!("snapshots stream inline under madsim");
}

/// Builds the server loop's state: every group created and restored.
fn build<S, L, N>(
    mut config: MultiServerConfig,
    make_state_machine: &dyn Fn(GroupId) -> S,
    mut recovery: MultiRecovery,
    log: L,
    network: N,
) -> Result<Server<S, L, N>, MultiServerError>
where
    S: DurableStateMachine,
    L: LogSink,
    N: FrameSender,
{
    let id = config.multi.id;
    let mut multi = MultiNode::new(config.multi.clone())?;
    let mut groups = BTreeMap::new();
    let mut snapshots = Vec::new();
    let mut catalog = None;
    if config.catalog {
        members::host_recovered_groups(&mut config, &mut multi, &recovery);
        catalog = Some(concord::multi::Catalog::new());
    }
    for (group, group_config) in &config.groups {
        let found = recovery.groups.remove(group);
        let mut state_machine = make_state_machine(*group);
        let is_catalog = catalog.is_some() && *group == CATALOG_GROUP;
        let (recovered, snapshot) = match found {
            Some(found) => (found.recovered, found.snapshot),
            None if !is_catalog && state_machine.applied_index() > 0 => {
                return Err(MultiServerError::StateMachine {
                    group: *group,
                    reason: format!(
                        "it holds state up to index {}, but this node has no log of the group: \
                         the log was lost, or the state is another node's; remove this group's \
                         state on this node so that it catches up from the leader",
                        state_machine.applied_index()
                    ),
                });
            }
            None => (concord::Recovered::default(), None),
        };
        if let Some(snapshot) = &snapshot {
            let index = snapshot.meta().position.index;
            let restored = match catalog.as_mut().filter(|_| is_catalog) {
                Some(catalog) => {
                    let data = snapshot.read_verified()?;
                    members::restore_catalog(catalog, &data).map_err(RestoreFailure::Snapshot)
                }
                // A state machine that holds the snapshot's state durably
                // already is not rebuilt: what keeps a restart's cost
                // apart from the state's size.
                None if state_machine.applied_index() >= index => Ok(()),
                None => restore_streamed(&mut state_machine, snapshot),
            };
            restored.map_err(|failure| failure.into_server_error(*group, index))?;
        }
        // The node is not told the state machine's index as its applied
        // one: the log's entries up to it are the ones applied only if the
        // state came from applying them. A follower that restored a
        // leader's snapshot and crashed before the log's record of it was
        // synced may hold an older term's entries below that index, which
        // the node would take for committed. It starts from the log's
        // base; the committed entries the state machine holds are skipped
        // when handed out (the simulator's
        // `--bug durable-restart-trusts-applied`).
        if !is_catalog {
            check_continues_log(*group, &state_machine, &recovered)?;
        }
        let base_index = recovered.base.index;
        multi.create_group(*group, group_config.clone(), recovered)?;
        let mut host_group = HostGroup::new(state_machine);
        host_group.log_snapshot_index = base_index;
        if let Some(snapshot) = snapshot {
            host_group.serve(&snapshot);
            snapshots.push((*group, snapshot.meta()));
        }
        groups.insert(*group, host_group);
    }
    let span = tracing::info_span!("multi-node", id);
    let asking = groups
        .keys()
        .filter(|group| {
            multi
                .group(**group)
                .is_some_and(|node| node.storage_recovery().is_recovering())
        })
        .count();
    span.in_scope(|| {
        tracing::info!(
            groups = groups.len(),
            recovered = config.groups.len(),
            "multi-group server starting"
        );
        if asking > 0 {
            crate::status::log_starting_recovery(asking);
        }
    });
    let intake = log.snapshot_intake();
    let mut server = Server {
        multi,
        groups,
        intake,
        stats: HostStats::default(),
        transfers: BTreeMap::new(),
        proposals_pending: BTreeSet::new(),
        log,
        network,
        config,
        catalog,
        catalog_changes: Vec::new(),
        make: None,
        log_ready: Vec::new(),
        proposing_groups: Vec::new(),
        responses: Vec::new(),
        snapshots_deferred: BTreeSet::new(),
        streaming: BTreeSet::new(),
        inbox: None,
        out: Vec::new(),
        work: VecDeque::new(),
        reads: BTreeMap::new(),
        next_read_id: 0,
        clock_start: tokio::time::Instant::now(),
        ticks_delivered: 0,
        commit_at_start: 0,
        failed: None,
        retired: RaftCounts::default(),
        round_trips: RoundTrips::new(),
        snapshot_times: SnapshotTimes::new(),
    };
    span.in_scope(|| {
        for (group, meta) in snapshots {
            // Each group serves its snapshot to followers behind its log.
            server.input(MultiInput::Group {
                group,
                input: Input::Snapshotted(meta),
            });
        }
        server.settle();
    });
    server.commit_at_start = server.commit_sum();
    Ok(server)
}

/// Spawns the loop of a built server.
fn launch<S, L, N>(
    mut server: Server<S, L, N>,
    inbox: (mpsc::Sender<HostEvent>, mpsc::Receiver<HostEvent>),
) -> MultiServerHandle
where
    S: DurableStateMachine,
    L: LogSink,
    N: FrameSender,
{
    let id = server.multi.id();
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (done_tx, done_rx) = oneshot::channel();
    let (events_tx, events_rx) = inbox;
    server.inbox = Some(events_tx.downgrade());
    let span = tracing::info_span!("multi-node", id);
    let log_events = server.log.events();
    let run = async move {
        let result = server.run(events_rx, log_events, shutdown_rx).await;
        if let Err(e) = &result {
            tracing::error!(error = %e, "multi-group server stopped with an error");
        }
        let _ = done_tx.send(result);
    };
    tokio::spawn(run.instrument(span));
    MultiServerHandle::new(id, events_tx, shutdown_tx, done_rx)
}

struct Server<S, L, N> {
    multi: MultiNode,
    groups: BTreeMap<GroupId, HostGroup<S>>,
    /// Where snapshots from leaders are received.
    intake: SnapshotIntake,
    stats: HostStats,
    /// Transfers asked for, by group, until their outcome.
    transfers: BTreeMap<GroupId, oneshot::Sender<Result<TransferOutcome, String>>>,
    /// Groups with commands queued to propose: every turn of the loop
    /// visits these, never every group hosted (an idle node's turns must
    /// cost nothing per idle group).
    proposals_pending: BTreeSet<GroupId>,
    log: L,
    network: N,
    config: MultiServerConfig,
    out: Vec<MultiAction>,
    /// Inputs the actions of this turn fed back.
    work: VecDeque<MultiInput>,
    /// Reads handed to groups, by read id: group, query, reply.
    reads: BTreeMap<u64, (GroupId, Bytes, oneshot::Sender<ClientResponse>)>,
    next_read_id: u64,
    clock_start: tokio::time::Instant,
    ticks_delivered: u64,
    /// Every hosted group's commit index at start, summed: the base of
    /// [`MultiStatus::entries_committed`].
    commit_at_start: u64,
    failed: Option<MultiServerError>,
    /// The catalog, when group 0 is one (`MultiServerConfig::catalog`).
    catalog: Option<concord::multi::Catalog>,
    /// Changes the catalog applied and the server has yet to carry out.
    catalog_changes: Vec<concord::multi::CatalogChange>,
    /// Makes the state machine of a group created while running.
    make: Option<Box<dyn Fn(GroupId) -> S + Send>>,
    /// Events of an inline log, taken each turn (kept for its buffer).
    log_ready: Vec<LogEvent>,
    /// The groups of one `propose_pending` (kept for its buffer).
    proposing_groups: Vec<GroupId>,
    /// The responses of one applied batch (kept for its buffer).
    responses: Vec<Option<Bytes>>,
    /// Groups asked for a snapshot while their durable state machine was
    /// ahead of the node's applied index: taken once the node catches up.
    snapshots_deferred: BTreeSet<GroupId>,
    /// Groups whose state machine's view streams into a snapshot off the
    /// loop.
    streaming: BTreeSet<GroupId>,
    /// The server's own inbox, for work done off the loop to report back
    /// (weak: the loop still ends when every handle is gone). Set once
    /// the loop is launched.
    inbox: Option<mpsc::WeakSender<HostEvent>>,
    /// The Raft counters of the groups this server stopped hosting.
    retired: RaftCounts,
    /// Append round trips, sampled per peer.
    round_trips: RoundTrips,
    /// Snapshot transfers under way, timed.
    snapshot_times: SnapshotTimes,
}

impl<S, L, N> Server<S, L, N>
where
    S: DurableStateMachine,
    L: LogSink,
    N: FrameSender,
{
    async fn run(
        mut self,
        mut inbox: mpsc::Receiver<HostEvent>,
        log_events: Option<mpsc::UnboundedReceiver<LogEvent>>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), MultiServerError> {
        // The clock starts with the loop, not when the server was built:
        // a loop spawned on a runtime busy elsewhere (building other
        // servers' groups, say) would otherwise begin with every tick of
        // that wait in one burst, and each of its elections would run out
        // of time in it before it could hear an answer.
        self.clock_start = tokio::time::Instant::now();
        self.ticks_delivered = 0;
        let mut ticker = tokio::time::interval(self.config.tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // An inline log has no channel: its branch is never polled.
        let has_log_events = log_events.is_some();
        let (_, closed) = mpsc::unbounded_channel();
        let mut log_events = log_events.unwrap_or(closed);
        loop {
            // Shutdown is looked at once a turn rather than waited on: a
            // waker registered again at every turn costs each write, and a
            // loop waits at most one tick for its ticker.
            if shutdown_asked(&mut shutdown) {
                break;
            }
            // Biased, as every select of the runtime (madsim replays).
            tokio::select! {
                biased;
                Some(event) = log_events.recv(), if has_log_events => {
                    self.log_event(event);
                    let mut drained = 0;
                    while drained < 1024 {
                        let Ok(event) = log_events.try_recv() else { break };
                        self.log_event(event);
                        drained += 1;
                    }
                }
                _ = ticker.tick() => {
                    self.catch_up_ticks();
                    self.round_trips.ticked(tokio::time::Instant::now);
                    // A loop slower than its tick would find the timer
                    // due at every turn and, biased, never read its
                    // inbox: no answer would reach an election and the
                    // groups would time out again and again. So a tick
                    // turn also takes what waits there.
                    self.handle_waiting(&mut inbox, self.config.events_per_turn_max);
                }
                event = inbox.recv() => {
                    let Some(event) = event else { break };
                    self.handle(event);
                    self.handle_waiting(&mut inbox, self.config.events_per_turn_max.saturating_sub(1));
                }
            }
            self.propose_pending();
            self.settle();
            if self.failed.is_some() {
                break;
            }
        }
        self.stop(&mut inbox);
        match self.failed.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn stop(&mut self, inbox: &mut mpsc::Receiver<HostEvent>) {
        inbox.close();
        while let Ok(event) = inbox.try_recv() {
            if let HostEvent::Request { reply, .. } = event {
                let _ = reply.send(ClientResponse::Error("server is shutting down".to_string()));
            }
        }
        for group in self.groups.values_mut() {
            let replies = group
                .pending_replies
                .drain(..)
                .chain(group.proposing.drain(..))
                .chain(group.waiting.drain(..).map(|(_, _, reply)| reply));
            for reply in replies {
                let _ = reply.send(ClientResponse::Unknown);
            }
        }
        for (_, (_, _, reply)) in std::mem::take(&mut self.reads) {
            let _ = reply.send(ClientResponse::Unknown);
        }
        for (_, reply) in std::mem::take(&mut self.transfers) {
            let _ = reply.send(Err("server is shutting down".to_string()));
        }
        self.log.shutdown();
        tracing::info!("multi-group server stopped");
    }

    fn log_event(&mut self, event: LogEvent) {
        match event {
            LogEvent::Persisted(batch) => self.input(MultiInput::Persisted(batch)),
            LogEvent::Snapshotted { group, snapshot } => {
                let Some(host_group) = self.groups.get_mut(&group) else {
                    return;
                };
                host_group.serve(&snapshot);
                self.input(MultiInput::Group {
                    group,
                    input: Input::Snapshotted(snapshot.meta()),
                });
            }
            LogEvent::ForceSnapshot(groups) => {
                tracing::debug!(
                    groups = groups.len(),
                    "the log asks for snapshots to free a segment"
                );
                for group in groups {
                    if !self.groups.contains_key(&group) {
                        continue;
                    }
                    self.input(MultiInput::Group {
                        group,
                        input: Input::RequestSnapshot,
                    });
                    // Every write the layer holds reaches the log before
                    // the copy below, which is the group's log after them.
                    self.settle();
                    // A snapshot still streaming off the loop (or waiting
                    // for the node to catch up with its state machine)
                    // frees the segment once the log has it; a copy now
                    // would write again every entry since the previous
                    // one, a whole interval's worth. If the segment is
                    // still held after it lands, the log asks again.
                    if !self.streaming.contains(&group) && !self.snapshots_deferred.contains(&group)
                    {
                        self.rewrite_after_snapshot(group);
                    }
                }
            }
            LogEvent::Failed(e) => self.failed = Some(e.into()),
        }
    }

    /// Handles up to `events_max` events already in the inbox, without
    /// waiting for more.
    fn handle_waiting(&mut self, inbox: &mut mpsc::Receiver<HostEvent>, events_max: usize) {
        for _ in 0..events_max {
            let Ok(event) = inbox.try_recv() else { break };
            self.handle(event);
        }
    }

    /// Gives the node every tick due by the wall clock.
    fn catch_up_ticks(&mut self) {
        let tick_nanos = self.config.tick.as_nanos().max(1);
        let due = (self.clock_start.elapsed().as_nanos() / tick_nanos) as u64;
        let behind_ticks = due.saturating_sub(self.ticks_delivered);
        if behind_ticks >= BEHIND_WARN_TICKS {
            let (awake_leading, quiesce_rounds) = self.multi.awake_leaders();
            tracing::warn!(
                behind_ticks,
                groups_awake = self.multi.awake_count(),
                awake_leading,
                quiesce_rounds,
                groups_electing = self.multi.electing_count(),
                "the loop fell behind its clock: the ticks it missed come in one burst"
            );
        }
        while self.ticks_delivered < due {
            self.ticks_delivered += 1;
            self.input(MultiInput::Tick);
        }
    }

    fn handle(&mut self, event: HostEvent) {
        match event {
            HostEvent::Frame(frame) => {
                // A member this server was not told of (its listener
                // accepted it by the cluster's incarnation and looked its
                // address up): a peer from now on, so its groups' messages
                // reach the groups and the answers reach it.
                let from = frame.from;
                self.round_trips
                    .frame_received(&frame, tokio::time::Instant::now);
                if from != self.multi.id() && !self.multi.config().peers.contains(&from) {
                    if let Some(addr) = self.network.learned_address(from) {
                        self.multi.add_peer(from);
                        self.network.add_peer(from, &addr);
                    }
                }
                self.input(MultiInput::Receive(*frame))
            }
            HostEvent::Request {
                op: GroupOp::Status(query),
                reply,
                ..
            } => {
                let tick_ms = self.config.tick.as_millis() as u64;
                let mut answer =
                    super::groups_status::answer(&self.multi, &self.stats, tick_ms, query);
                if let (super::groups_status::StatusAnswer::Summary(summary), Some(catalog)) =
                    (&mut answer, &self.catalog)
                {
                    summary.replaces = catalog
                        .replaces()
                        .take(super::groups_status::REPLACES_SHOWN_MAX)
                        .collect();
                }
                let response = match concord::codec::encode(&answer) {
                    Ok(bytes) => ClientResponse::Done(bytes.into()),
                    Err(e) => ClientResponse::Error(format!("cannot encode the status: {e}")),
                };
                let _ = reply.send(response);
            }
            HostEvent::Request { group, op, reply } => {
                let Some(node) = self.multi.group(group) else {
                    let _ = reply.send(ClientResponse::Error(super::wire::not_hosted_message(
                        group,
                        self.multi.id(),
                    )));
                    return;
                };
                match op {
                    GroupOp::Command(command) => {
                        if node.role() != Role::Leader {
                            let leader = node.leader();
                            let _ = reply.send(self.not_leader(leader));
                            return;
                        }
                        if group == CATALOG_GROUP && self.catalog.is_some() {
                            if let Err(reason) = members::check_catalog_command(&command) {
                                let _ = reply.send(ClientResponse::Done(
                                    super::admin::catalog_answer(Err(reason)),
                                ));
                                return;
                            }
                        }
                        let host_group = self.groups.get_mut(&group).expect("hosted");
                        host_group.pending.push(command);
                        host_group.pending_replies.push_back(reply);
                        self.proposals_pending.insert(group);
                    }
                    GroupOp::Admin(request) => self.admin(group, request, reply),
                    GroupOp::Read { path, query } => {
                        // The ticks a stall missed come first (leases).
                        self.catch_up_ticks();
                        self.next_read_id += 1;
                        let id = self.next_read_id;
                        self.reads.insert(id, (group, query, reply));
                        tracing::debug!(target: TRACE, group, read = id, ?path, "read started");
                        self.input(MultiInput::Group {
                            group,
                            input: Input::Read { id, path },
                        });
                    }
                    GroupOp::Status(_) => unreachable!("answered above"),
                }
            }
            HostEvent::Transfer {
                group,
                target,
                reply,
            } => {
                if self.multi.group(group).is_none() {
                    let _ = reply.send(Err(format!(
                        "group {group} is not hosted on node {}",
                        self.multi.id()
                    )));
                    return;
                }
                if let Some(earlier) = self.transfers.insert(group, reply) {
                    let _ = earlier.send(Err("superseded by a newer transfer".to_string()));
                }
                self.input(MultiInput::Group {
                    group,
                    input: Input::TransferLeadership(target),
                });
            }
            HostEvent::Status { groups, reply } => {
                let _ = reply.send(self.status(groups));
            }
            HostEvent::Streamed(streamed) => self.snapshot_streamed(*streamed),
        }
    }

    /// Every hosted group's commit index, summed.
    fn commit_sum(&self) -> u64 {
        self.multi
            .groups()
            .map(|(_, node)| node.commit_index())
            .fold(0u64, u64::saturating_add)
    }

    fn status(&self, with_groups: bool) -> MultiStatus {
        let mut groups = BTreeMap::new();
        let mut led = 0;
        let mut commit_sum = 0u64;
        let mut raft = self.retired;
        for (id, node) in self.multi.groups() {
            led += usize::from(node.role() == Role::Leader);
            commit_sum = commit_sum.saturating_add(node.commit_index());
            raft.add(node.stats());
            if with_groups {
                groups.insert(
                    id,
                    GroupStatus {
                        role: node.role(),
                        term: node.term(),
                        leader: node.leader(),
                        commit: node.commit_index(),
                        applied: node.applied_index(),
                        last: node.last_index(),
                    },
                );
            }
        }
        MultiStatus {
            id: self.multi.id(),
            groups_hosted: self.multi.group_count(),
            groups_awake: self.multi.awake_count(),
            groups_led: led,
            entries_committed: commit_sum.saturating_sub(self.commit_at_start),
            layer: *self.multi.stats(),
            log: self.log.stats(),
            host: self.stats,
            raft,
            sessions: self
                .groups
                .values()
                .filter_map(|group| group.state_machine.sessions())
                .sum::<usize>() as u64,
            groups,
        }
    }

    fn not_leader(&mut self, leader_hint: Option<NodeId>) -> ClientResponse {
        self.stats.redirects += 1;
        let leader_hint = leader_hint.filter(|id| *id != self.multi.id());
        ClientResponse::NotLeader {
            leader_hint,
            leader_addr: leader_hint.and_then(|id| self.config.client_addrs.get(&id).cloned()),
        }
    }

    /// Proposes every group's queued commands, one batch per group.
    fn propose_pending(&mut self) {
        // Popped into a kept buffer (the set keeps its node): no
        // allocation per turn. A group put back below waits for the next.
        let mut ready = std::mem::take(&mut self.proposing_groups);
        while let Some(group) = self.proposals_pending.pop_first() {
            ready.push(group);
        }
        for group in ready.drain(..) {
            let Some(host_group) = self.groups.get_mut(&group) else {
                continue;
            };
            if host_group.pending.is_empty() {
                continue;
            }
            let take = host_group.pending.len().min(self.config.proposal_batch_max);
            let commands: Vec<Bytes> = host_group.pending.drain(..take).collect();
            self.stats.proposals += commands.len() as u64;
            super::super::metrics::proposal_batch(commands.len());
            debug_assert!(host_group.proposing.is_empty());
            // Extended, not collected: the emptied buffer keeps its
            // capacity from one batch to the next.
            let replies = host_group.pending_replies.drain(..take);
            host_group.proposing.extend(replies);
            if crate::request_trace::enabled() {
                host_group.proposing_sessions = commands
                    .iter()
                    .map(|c| crate::request_trace::session_of_tagged(c))
                    .collect();
            }
            self.input(MultiInput::Group {
                group,
                input: Input::ProposeBatch(commands),
            });
            // The node answers a proposal at once; anything unanswered
            // (never expected) is not left hanging.
            let Some(host_group) = self.groups.get_mut(&group) else {
                continue;
            };
            for reply in host_group.proposing.drain(..) {
                self.stats.unknown_outcomes += 1;
                let _ = reply.send(ClientResponse::Unknown);
            }
            host_group.proposing_sessions.clear();
            // More than a batch queued: the rest next turn.
            if !host_group.pending.is_empty() {
                self.proposals_pending.insert(group);
            }
        }
        self.proposing_groups = ready;
    }

    /// Steps the layer with `input` and executes what it asks at once.
    fn input(&mut self, input: MultiInput) {
        self.work.push_back(input);
        self.drain_work();
    }

    fn drain_work(&mut self) {
        while let Some(input) = self.work.pop_front() {
            let mut out = std::mem::take(&mut self.out);
            if let Err(e) = self.multi.step(input, &mut out) {
                // Inputs come from this loop: a refusal is a host bug.
                tracing::error!(error = %e, "the layer refused an input of the host");
            }
            for action in out.drain(..) {
                self.execute(action);
            }
            self.out = out;
        }
    }

    /// Flushes and executes until the layer has nothing more to say and
    /// an inline log has no event left (each may make more writes, whose
    /// events come at once).
    fn settle(&mut self) {
        for _ in 0..SETTLE_ROUNDS_MAX {
            let mut out = std::mem::take(&mut self.out);
            self.multi.flush(&mut out);
            if out.is_empty() {
                self.out = out;
                let mut ready = std::mem::take(&mut self.log_ready);
                self.log.take_ready(&mut ready);
                if ready.is_empty() {
                    self.log_ready = ready;
                    return;
                }
                for event in ready.drain(..) {
                    self.log_event(event);
                }
                self.log_ready = ready;
                self.propose_pending();
                continue;
            }
            for action in out.drain(..) {
                self.execute(action);
            }
            self.out = out;
            self.drain_work();
        }
        panic!("the layer did not settle within {SETTLE_ROUNDS_MAX} flushes");
    }

    fn execute(&mut self, action: MultiAction) {
        match action {
            MultiAction::Send(frame) => {
                self.round_trips
                    .frame_sent(&frame, tokio::time::Instant::now);
                self.network.send(frame)
            }
            MultiAction::Persist(batch) => {
                let mut writes = Vec::with_capacity(batch.writes.len());
                for write in batch.writes {
                    let group = write.group;
                    match write.action {
                        Action::Persist {
                            hard_state,
                            truncate_after,
                            entries,
                            ..
                        } => writes.push(WalWrite::Log {
                            group,
                            hard_state,
                            truncate_after,
                            entries,
                        }),
                        Action::PersistSnapshot {
                            snapshot,
                            discard_log,
                            membership,
                            ..
                        } => {
                            let position = snapshot.position;
                            let received = self.finish_received(group, position).and_then(|_| {
                                let host_group = self.groups.get_mut(&group)?;
                                host_group.log_snapshot_index =
                                    host_group.log_snapshot_index.max(position.index);
                                host_group.take_received(position)
                            });
                            let Some(received) = received else {
                                self.failed =
                                    Some(MultiServerError::Storage(StorageError::Misuse(format!(
                                        "group {group} stores a snapshot at index {} it never \
                                         received whole",
                                        position.index
                                    ))));
                                return;
                            };
                            writes.push(WalWrite::Received {
                                group,
                                received,
                                membership: *membership,
                                discard_log,
                            });
                        }
                        other => unreachable!("a persist batch holds only writes, not {other:?}"),
                    }
                }
                self.log.submit(Some(batch.id), writes);
            }
            MultiAction::Group { group, action } => self.group_action(group, action),
        }
    }

    /// Before a chunk at offset 0 replaces `group`'s incoming snapshot:
    /// finishes the one received so far if it is whole and the node
    /// installed it (its newest snapshot is that one or a newer: the host
    /// handles a step's actions after the step), so that the
    /// `PersistSnapshot` the layer hands out in its next persist batch
    /// finds it. A node's `RestoreSnapshot` finishes it first, but a
    /// witness gets none, and a newer snapshot's first chunk in the same
    /// frame would have cost it the older one (the simulator's host had
    /// the same hole: seed 140 of 5 nodes, `--groups swarm`).
    fn keep_installed(&mut self, group: GroupId) {
        let Some(host_group) = self.groups.get(&group) else {
            return;
        };
        let Some(sink) = host_group.incoming.as_ref() else {
            return;
        };
        let position = sink.meta().position;
        let whole = sink.written_bytes() == sink.meta().size_bytes;
        let installed = self
            .multi
            .group(group)
            .and_then(|node| node.snapshot_position())
            .is_some_and(|newest| newest.index >= position.index);
        let newer_than_kept = host_group
            .received
            .back()
            .is_none_or(|(received, _)| received.meta().position.index < position.index);
        if whole && installed && newer_than_kept {
            self.finish_received(group, position);
        }
    }

    /// A reader of the snapshot at `position` that `group` received whole
    /// (its sink finished on first use), or `None` if it did not.
    fn finish_received(&mut self, group: GroupId, position: LogPosition) -> Option<SnapshotReader> {
        let host_group = self.groups.get_mut(&group)?;
        if host_group
            .incoming
            .as_ref()
            .is_some_and(|sink| sink.meta().position == position)
        {
            let sink = host_group.incoming.take().expect("checked above");
            if sink.written_bytes() != sink.meta().size_bytes {
                return None;
            }
            self.stats.snapshot_bytes_received += sink.meta().size_bytes;
            self.snapshot_times.received(group, sink.meta());
            let (received, reader) = sink.finish();
            host_group.serve(&reader);
            // Installs go up in index (each is above the commit index, which
            // the one before raised to its own).
            let newest_index = host_group
                .received
                .back()
                .map(|(newest, _)| newest.meta().position.index);
            assert!(newest_index.is_none_or(|index| index < position.index));
            host_group.received.push_back((received, reader));
        }
        host_group
            .received
            .iter()
            .find(|(received, _)| received.meta().position == position)
            .map(|(_, reader)| reader.clone())
    }

    /// Writes again every entry of `group` after the snapshot handed to
    /// the log, so that no old segment holds what the group still needs
    /// (see the [module documentation](self)). Called with nothing of the
    /// group's held back in the layer.
    fn rewrite_after_snapshot(&mut self, group: GroupId) {
        let (Some(node), Some(host_group)) = (self.multi.group(group), self.groups.get(&group))
        else {
            return;
        };
        let first = host_group.log_snapshot_index + 1;
        let last = node.last_index();
        if last < first {
            return;
        }
        let entries: Option<Vec<concord::Entry>> = (first..=last)
            .map(|index| node.entry(index).cloned())
            .collect();
        let Some(entries) = entries else {
            tracing::warn!(
                group,
                first,
                last,
                "entries after the group's snapshot are not in memory; not written again"
            );
            return;
        };
        self.stats.groups_rewritten += 1;
        self.stats.entries_rewritten += entries.len() as u64;
        tracing::debug!(
            group,
            first,
            last,
            "writing the group's entries after its snapshot again to free an old segment"
        );
        self.log.submit(
            None,
            vec![WalWrite::Log {
                group,
                hard_state: None,
                truncate_after: None,
                entries: entries.into(),
            }],
        );
    }

    fn group_action(&mut self, group: GroupId, action: Action) {
        match action {
            Action::Apply { entries } => {
                let Some(last) = entries.last().map(|entry| entry.index) else {
                    return;
                };
                let Some(host_group) = self.groups.get_mut(&group) else {
                    return;
                };
                // The catalog is no group's state machine: its entries are
                // not counted (a one-group server's status shows them as a
                // single-group server's, where a witness applied none).
                if self.catalog.is_none() || group != CATALOG_GROUP {
                    self.stats.entries_applied += entries.len() as u64;
                }
                let first = entries[0].index;
                // Applied entries are committed: the event of the
                // request trace, once per batch.
                tracing::debug_span!(target: TRACE, "commit", group, first, last)
                    .in_scope(|| tracing::debug!(target: TRACE, first, last, "committed"));
                let mut responses = std::mem::take(&mut self.responses);
                responses.clear();
                match self.catalog.as_mut().filter(|_| group == CATALOG_GROUP) {
                    Some(catalog) => {
                        for entry in entries.iter() {
                            let span = apply_span(group, entry);
                            let _entered = span.enter();
                            responses.push(members::apply_catalog(
                                catalog,
                                entry,
                                &mut self.catalog_changes,
                            ));
                        }
                    }
                    None => {
                        // After a restart the node hands out the committed
                        // entries from its log's base: those a durable
                        // state machine holds already are never applied
                        // twice.
                        let applied = host_group.state_machine.applied_index();
                        let skip = entries.partition_point(|entry| entry.index <= applied);
                        responses.resize(skip, None);
                        let fresh = &entries[skip..];
                        if !fresh.is_empty() {
                            assert_eq!(
                                fresh[0].index,
                                applied + 1,
                                "group {group}: entries reach the state machine without a gap"
                            );
                            if let Err(e) =
                                host_group.state_machine.apply_batch(fresh, &mut responses)
                            {
                                self.failed = Some(MultiServerError::StateMachine {
                                    group,
                                    reason: e.to_string(),
                                });
                                self.responses = responses;
                                return;
                            }
                        }
                        assert_eq!(
                            responses.len(),
                            entries.len(),
                            "group {group}: one response per entry applied"
                        );
                    }
                }
                for (entry, response) in entries.iter().zip(responses.iter_mut()) {
                    let span = apply_span(group, entry);
                    let _entered = span.enter();
                    let response = response.take();
                    while host_group
                        .waiting
                        .front()
                        .is_some_and(|(index, _, _)| *index <= entry.index)
                    {
                        let (index, term, reply) =
                            host_group.waiting.pop_front().expect("checked above");
                        let answer = match &response {
                            Some(bytes) if index == entry.index && term == entry.term => {
                                tracing::debug!(target: TRACE, outcome = "done", "answered");
                                ClientResponse::Done(bytes.clone())
                            }
                            _ => {
                                tracing::debug!(
                                    target: TRACE,
                                    outcome = "unknown",
                                    waiting = index,
                                    "answered"
                                );
                                self.stats.unknown_outcomes += 1;
                                ClientResponse::Unknown
                            }
                        };
                        let _ = reply.send(answer);
                    }
                    tracing::debug!(target: TRACE, "applied");
                }
                self.responses = responses;
                self.work.push_back(MultiInput::Group {
                    group,
                    input: Input::Applied(last),
                });
                if self.snapshots_deferred.contains(&group)
                    && host_group.state_machine.applied_index() == last
                {
                    // The node is at `last` once the input above is taken,
                    // before the snapshot reaches it.
                    self.snapshots_deferred.remove(&group);
                    self.take_snapshot_at(group, last);
                }
                self.catalog_carry_out();
            }
            Action::ProposalAccepted {
                term,
                first_index,
                last_index,
            } => {
                let Some(host_group) = self.groups.get_mut(&group) else {
                    return;
                };
                for index in first_index..=last_index {
                    match host_group.proposing_sessions.pop_front() {
                        Some(Some((client, seq))) => {
                            tracing::debug_span!(target: TRACE, "propose", group, index, term, client, seq)
                                .in_scope(|| {
                                    tracing::debug!(target: TRACE, index, term, client, seq, "proposed")
                                })
                        }
                        Some(None) => tracing::debug_span!(target: TRACE, "propose", group, index, term)
                            .in_scope(|| tracing::debug!(target: TRACE, index, term, "proposed")),
                        None => {}
                    }
                    let Some(reply) = host_group.proposing.pop_front() else {
                        break;
                    };
                    while host_group
                        .waiting
                        .back()
                        .is_some_and(|(waiting, _, _)| *waiting >= index)
                    {
                        let (_, _, stale) = host_group.waiting.pop_back().expect("checked");
                        self.stats.unknown_outcomes += 1;
                        let _ = stale.send(ClientResponse::Unknown);
                    }
                    host_group.waiting.push_back((index, term, reply));
                }
            }
            Action::ProposalRefused { count, error } => {
                let response = match error {
                    ProposeError::NotLeader { leader_hint } => self.not_leader(leader_hint),
                    ProposeError::Backpressure | ProposeError::TransferInProgress { .. } => {
                        ClientResponse::Busy
                    }
                    other => ClientResponse::Error(other.to_string()),
                };
                let Some(host_group) = self.groups.get_mut(&group) else {
                    return;
                };
                for _ in 0..count {
                    let Some(reply) = host_group.proposing.pop_front() else {
                        break;
                    };
                    let _ = reply.send(response.clone());
                }
            }
            Action::ReadReady { id, path, .. } => {
                let Some((read_group, query, reply)) = self.reads.remove(&id) else {
                    tracing::error!(id, group, "a group released a read it was never given");
                    return;
                };
                assert_eq!(read_group, group, "read {id} released by another group");
                let Some(host_group) = self.groups.get(&group) else {
                    return;
                };
                let _span =
                    tracing::debug_span!(target: TRACE, "read", group, read = id, ?path).entered();
                let response = match host_group.state_machine.query(&query) {
                    Some(answer) => {
                        tracing::debug!(target: TRACE, read = id, ?path, "read served");
                        match path {
                            concord::ReadPath::ReadIndex => self.stats.reads_read_index += 1,
                            concord::ReadPath::Lease => self.stats.reads_lease += 1,
                            concord::ReadPath::Follower => self.stats.reads_follower += 1,
                        }
                        ClientResponse::Done(answer)
                    }
                    None => ClientResponse::Error(
                        "this state machine serves no reads without the log; send the read as \
                         a command"
                            .to_string(),
                    ),
                };
                let _ = reply.send(response);
            }
            Action::ReadRefused { id, error } => {
                let Some((_, _, reply)) = self.reads.remove(&id) else {
                    return;
                };
                tracing::debug!(target: TRACE, group, read = id, ?error, "read refused");
                let response = match error {
                    concord::ReadError::NotLeader { leader_hint } => self.not_leader(leader_hint),
                    concord::ReadError::Backpressure => ClientResponse::Busy,
                    _ => {
                        self.stats.unknown_outcomes += 1;
                        ClientResponse::Unknown
                    }
                };
                let _ = reply.send(response);
            }
            Action::TakeSnapshot => self.take_snapshot(group),
            Action::SendSnapshotChunk(chunk) => {
                let Some(served) = self
                    .groups
                    .get(&group)
                    .and_then(|host_group| host_group.served.as_ref())
                    .filter(|served| served.meta() == chunk.snapshot)
                else {
                    tracing::warn!(
                        group,
                        "asked to send a chunk of a snapshot not served; dropped"
                    );
                    return;
                };
                match served.read_chunk(chunk.offset, chunk.length_bytes) {
                    Ok(data) => {
                        let message = chunk.into_message(data);
                        self.snapshot_times.chunk_sent(group, &message);
                        self.work
                            .push_back(MultiInput::SendSnapshotChunk { group, message })
                    }
                    Err(e) => tracing::warn!(group, error = %e, "cannot read a snapshot chunk"),
                }
            }
            Action::WriteSnapshotChunk {
                snapshot,
                offset,
                data,
            } => {
                if offset == 0 {
                    self.keep_installed(group);
                }
                let Some(host_group) = self.groups.get_mut(&group) else {
                    return;
                };
                if offset == 0 {
                    match self.intake.sink(
                        group,
                        snapshot,
                        self.config.snapshot_in_memory_bytes_max,
                    ) {
                        Ok(sink) => {
                            if self.intake.uses_files()
                                && snapshot.size_bytes > self.config.snapshot_in_memory_bytes_max
                            {
                                self.stats.snapshots_received_to_files += 1;
                            } else {
                                self.stats.snapshots_received_in_memory += 1;
                            }
                            host_group.incoming = Some(sink);
                            self.snapshot_times.receive_started(group, snapshot);
                        }
                        Err(e) => {
                            self.failed = Some(e.into());
                            return;
                        }
                    }
                }
                match host_group.incoming.as_mut() {
                    Some(sink) if sink.meta() == snapshot && sink.written_bytes() == offset => {
                        if let Err(e) = sink.write(offset, &data) {
                            self.failed = Some(e.into());
                        }
                    }
                    _ => tracing::warn!(
                        group,
                        offset,
                        "a snapshot chunk that does not continue the one received; dropped"
                    ),
                }
            }
            Action::RestoreSnapshot { snapshot } => {
                let position = snapshot.position;
                let restore_started = tokio::time::Instant::now();
                let Some(reader) = self.finish_received(group, position) else {
                    self.failed = Some(MultiServerError::Restore {
                        group,
                        index: position.index,
                        reason: "the snapshot was not received whole".to_string(),
                    });
                    return;
                };
                let host_group = self.groups.get_mut(&group).expect("received above");
                // The state machine's restore is fed from the stored bytes
                // chunk by chunk (the catalog, small, restores whole).
                let restored = match self.catalog.as_mut().filter(|_| group == CATALOG_GROUP) {
                    Some(catalog) => reader
                        .read_verified()
                        .map_err(|e| e.to_string())
                        .and_then(|data| members::restore_catalog(catalog, &data))
                        .map_err(RestoreFailure::Snapshot),
                    None => restore_streamed(&mut host_group.state_machine, &reader),
                };
                if let Err(failure) = restored {
                    self.failed = Some(failure.into_server_error(group, position.index));
                    return;
                }
                crate::metrics::snapshot_restored(restore_started.elapsed());
                if group == CATALOG_GROUP {
                    self.catalog_sync();
                }
                let Some(host_group) = self.groups.get_mut(&group) else {
                    return;
                };
                // Entries the snapshot covers are never applied here.
                while host_group
                    .waiting
                    .front()
                    .is_some_and(|(index, _, _)| *index <= position.index)
                {
                    let (_, _, reply) = host_group.waiting.pop_front().expect("checked");
                    self.stats.unknown_outcomes += 1;
                    let _ = reply.send(ClientResponse::Unknown);
                }
                self.work.push_back(MultiInput::Group {
                    group,
                    input: Input::Applied(position.index),
                });
            }
            Action::RoleChanged { role, term } => {
                tracing::debug!(group, ?role, term, "role changed");
                self.round_trips.role_changed(group);
                if role != Role::Leader {
                    if let Some(host_group) = self.groups.get_mut(&group) {
                        for (_, _, reply) in host_group.waiting.drain(..) {
                            self.stats.unknown_outcomes += 1;
                            let _ = reply.send(ClientResponse::Unknown);
                        }
                    }
                }
            }
            Action::FollowerLogRegressed {
                follower,
                acknowledged_index,
                reported_last_index,
            } => tracing::error!(
                group,
                follower,
                acknowledged_index,
                reported_last_index,
                "a follower lost entries it had acknowledged as durable"
            ),
            Action::StorageRecovery(event) => self.note_storage_recovery(group, *event),
            Action::LogDiverged(divergence) => {
                self.stats.groups_diverged += 1;
                tracing::error!(group, "group diverged");
                crate::status::log_divergence(&divergence);
            }
            Action::Transfer { target, outcome } => {
                tracing::info!(group, target, ?outcome, "leadership transfer");
                if let Some(reply) = self.transfers.remove(&group) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            other @ (Action::Send { .. }
            | Action::Persist { .. }
            | Action::PersistSnapshot { .. }) => {
                unreachable!("the layer batches {other:?}")
            }
        }
    }

    /// A group's recovery from lost storage moved on. With many groups a
    /// line per group would bury the news: one line when the first group
    /// learns it must catch up, one when the last such group caught up,
    /// each group's own steps at debug level (errors always).
    fn note_storage_recovery(&mut self, group: GroupId, event: StorageRecoveryEvent) {
        match &event {
            StorageRecoveryEvent::FloorLearned { .. } => {
                self.stats.groups_recovering_storage += 1;
                if self.stats.groups_recovering_storage == 1 {
                    crate::status::log_storage_recovery(&event);
                    tracing::warn!(
                        group,
                        "(that line is group {group}'s; every group this server hosts does the \
                         same: `concord-cli status --groups` shows how many still catch up)"
                    );
                }
            }
            StorageRecoveryEvent::Recovered { .. } => {
                self.stats.groups_recovered_storage += 1;
                if self.stats.groups_recovered_storage == self.stats.groups_recovering_storage {
                    tracing::info!(
                        groups = self.stats.groups_recovered_storage,
                        "every group that had to catch up after lost storage votes again"
                    );
                }
            }
            StorageRecoveryEvent::AcknowledgedEntryLost { .. } => {
                tracing::error!(group, "a group of this server lost an acknowledged entry");
                crate::status::log_storage_recovery(&event);
            }
            StorageRecoveryEvent::NewCluster { .. } => {}
        }
        tracing::debug!(group, ?event, "storage recovery");
    }

    /// Serializes a group's state machine at its applied index and hands
    /// it to the log, which reports it once durable.
    fn take_snapshot(&mut self, group: GroupId) {
        let Some(node) = self.multi.group(group) else {
            return;
        };
        let index = node.applied_index();
        let witness = node.is_witness_node();
        if self.catalog.is_some() && group == CATALOG_GROUP || witness {
            self.take_snapshot_in_memory(group, index);
            return;
        }
        let Some(host_group) = self.groups.get_mut(&group) else {
            return;
        };
        // A durable state machine ahead of the node (after a restart the
        // node applies from its log's base again): its view would cover
        // entries the node has not applied. Taken once they are.
        if host_group.state_machine.applied_index() > index {
            self.snapshots_deferred.insert(group);
            return;
        }
        self.take_snapshot_at(group, index);
    }

    /// A snapshot of the catalog, or of a witness (no state: its snapshot
    /// only marks where its log starts), serialised on the loop: both are
    /// small.
    fn take_snapshot_in_memory(&mut self, group: GroupId, index: Index) {
        let Some(node) = self.multi.group(group) else {
            return;
        };
        let Some(term) = node.term_at(index) else {
            tracing::error!(
                group,
                index,
                "asked for a snapshot outside the log; ignored"
            );
            return;
        };
        let membership = node.membership_at(index).cloned();
        let data = match self.catalog.as_ref().filter(|_| group == CATALOG_GROUP) {
            Some(catalog) => catalog.snapshot(),
            None => Bytes::new(),
        };
        let snapshot =
            Snapshot::new(LogPosition::new(index, term), data).with_membership(membership);
        if let Some(host_group) = self.groups.get_mut(&group) {
            host_group.log_snapshot_index = host_group.log_snapshot_index.max(index);
        }
        self.log
            .submit(None, vec![WalWrite::Taken { group, snapshot }]);
    }

    /// A snapshot of `group`'s state machine, applied up to `index`: made
    /// durable in the state machine first (the log is compacted up to it
    /// only after), then its view streamed into the snapshot store, off
    /// the loop when the store keeps files.
    fn take_snapshot_at(&mut self, group: GroupId, index: Index) {
        let Some(node) = self.multi.group(group) else {
            return;
        };
        let (Some(term), Some(membership)) =
            (node.term_at(index), node.membership_at(index).cloned())
        else {
            tracing::error!(
                group,
                index,
                "asked for a snapshot outside the log; ignored"
            );
            return;
        };
        let position = LogPosition::new(index, term);
        let Some(host_group) = self.groups.get_mut(&group) else {
            return;
        };
        // What taking it costs the loop (a view, not the state's size):
        // logged, for docs/snapshots.md's figure. The state machine's
        // index is made durable before the log gets the snapshot (see
        // `snapshot_streamed`).
        let started = tokio::time::Instant::now();
        let state_machine = &mut host_group.state_machine;
        assert_eq!(state_machine.applied_index(), index, "group {group}");
        let mut view = match state_machine.view() {
            Ok(view) => view,
            Err(e) => {
                self.failed = Some(MultiServerError::StateMachine {
                    group,
                    reason: format!("taking a snapshot at index {index}: {e}"),
                });
                return;
            }
        };
        assert_eq!(
            view.index(),
            index,
            "group {group}: the view is of the applied state"
        );
        let intake = self.intake.clone();
        // Files are written off the loop; a store in memory (the page-cache
        // model of crash tests, madsim: no blocking threads there) inline.
        let inbox = self
            .inbox
            .as_ref()
            .filter(|_| intake.uses_files() && !cfg!(madsim))
            .cloned();
        match inbox {
            Some(inbox) => {
                self.streaming.insert(group);
                stream_off_loop(intake, inbox, group, position, membership, view);
                tracing::info!(
                    group,
                    index,
                    loop_us = started.elapsed().as_micros() as u64,
                    "snapshot view taken; streaming it off the loop"
                );
            }
            None => {
                let result = intake.stream_view(group, position, &mut view);
                self.snapshot_streamed(StreamedSnapshot {
                    group,
                    position,
                    membership,
                    result,
                });
            }
        }
    }

    /// A snapshot streamed from a state machine's view: handed to the log,
    /// which reports it to the group once durable.
    fn snapshot_streamed(&mut self, streamed: StreamedSnapshot) {
        let StreamedSnapshot {
            group,
            position,
            membership,
            result,
        } = streamed;
        self.streaming.remove(&group);
        let received = match result {
            Ok(received) => received,
            Err(e) => {
                tracing::error!(group, index = position.index, error = %e, "cannot store a snapshot of the state machine");
                self.failed = Some(e.into());
                return;
            }
        };
        assert_eq!(received.meta().position, position);
        let Some(host_group) = self.groups.get_mut(&group) else {
            snapshot_store::discard_received(received);
            return;
        };
        // The log compacts up to the snapshot once it has it: the state
        // machine must hold that much durably first. A view that did not
        // see to it (on its own thread) costs the loop a sync here.
        let state_machine = &mut host_group.state_machine;
        if state_machine.durable_applied_index() < position.index {
            if let Err(e) = state_machine.sync() {
                snapshot_store::discard_received(received);
                self.failed = Some(MultiServerError::StateMachine {
                    group,
                    reason: format!("making the state at index {} durable: {e}", position.index),
                });
                return;
            }
        }
        assert!(
            state_machine.durable_applied_index() >= position.index,
            "group {group}: a snapshot at {} past the state machine's durable index {}",
            position.index,
            state_machine.durable_applied_index()
        );
        host_group.log_snapshot_index = host_group.log_snapshot_index.max(position.index);
        self.log.submit(
            None,
            vec![WalWrite::Streamed {
                group,
                received,
                membership,
            }],
        );
    }
}
