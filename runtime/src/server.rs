//! The server loop: hosts one [`Node`] and one [`StateMachine`], turns wall
//! clock time into ticks, executes the node's actions against storage and
//! transport, applies committed entries and answers clients.
//!
//! Everything reaches the loop through one bounded channel of [`Event`]s
//! (peer messages from the transport, client requests, status queries),
//! plus the storage's completion channel and a ticker. Client commands that
//! arrive together are proposed together with one `ProposeBatch`, so a
//! burst of requests costs one log write and one AppendEntries per
//! follower.
//!
//! ## Which tokio runtime
//!
//! The loop is one task; it shares no lock with its clients, only the
//! inbox channel, the clients' reply channels and the command bytes. On a
//! current-thread runtime all of that stays in one core's cache, and every
//! client answered by an apply has sent its next command before the loop
//! runs again, so whole rounds of clients are proposed as one batch. On a
//! multi-thread runtime tokio moves the loop and its clients between
//! workers by work stealing: the same objects are then written from two
//! cores on every request (the inbox's semaphore and queue, the reply
//! channel, the reference count of the command's bytes, the woken task),
//! and the loop wakes as soon as the first of the answered clients sends,
//! so batches shrink (three servers and 64 clients in one process on two
//! workers: about 20 commands per batch instead of 64). How often those
//! objects change cores depends on how the tasks happen to interleave,
//! which settles differently from run to run: the in-process benchmark on
//! two workers costs about 2 µs of CPU per write in some runs and about
//! 3 µs in others, against 1.3 µs on one thread (see the benchmark's
//! README). Where the servers carry the load, run them on a current-thread
//! runtime and give other threads the rest of the application's work.
//!
//! ## Snapshots
//!
//! When the node asks for a snapshot ([`Action::TakeSnapshot`], by the
//! compaction policy in [`Config`]), the loop serializes the state machine
//! (client sessions included) at the applied index — the state machine is
//! only ever touched by this loop, and every `Apply` is executed (and
//! reported applied) before the next action, so its state is exactly that
//! of the applied index. Serializing is the only part done on the loop
//! (its cost grows with the state's size; it is logged as `serialize_ms`):
//! it produces an immutable, reference-counted copy, so the state machine
//! keeps applying entries while storage writes and fsyncs the file on its
//! own thread, in order with the log writes (no file I/O on the loop); the snapshot comes back on a
//! channel once durable and is reported with [`Input::Snapshotted`]. A
//! snapshot from the leader arrives chunk by chunk
//! ([`Action::WriteSnapshotChunk`], written into a storage
//! [`SnapshotSink`], typically a file), is
//! made durable like any other write ([`Action::PersistSnapshot`], reported
//! with [`Input::Persisted`]); [`Action::RestoreSnapshot`] reads it back,
//! checks its checksum again, replaces the state machine's state, then
//! reports [`Input::Applied`]. The snapshot the node serves to followers is
//! read one chunk at a time ([`Action::SendSnapshotChunk`]) through a
//! [`SnapshotReader`], so no snapshot is held in memory beyond a restore.
//! On start, the newest stored snapshot is restored into the state machine
//! and reported to the node, which serves it to followers behind its log.
//!
//! ## Membership changes
//!
//! [`Event::Admin`] carries an [`AdminRequest`]. `List` is answered by any
//! node from its own view (the leader adds each member's match index and
//! lag). A change is refused by a node that is not the leader (with a hint)
//! or while another request runs on it; otherwise the leader carries it
//! out in stages, moved on once per loop turn:
//!
//! 1. for `AddLearner`/`AddVoter`/`AddWitness`: the change is checked against the
//!    configuration in force, then the new node's address is proposed as a
//!    [`HostRecord`] ([`Input::ProposeHost`]) and must commit (see
//!    [`addresses`] for why the address goes first);
//! 2. the change is proposed ([`Input::ChangeMembership`]); the answer is
//!    [`AdminResponse::Done`] once its entry is committed and the
//!    configuration in force is committed and not joint (the core leaves a
//!    joint configuration on its own);
//! 3. a transfer ([`Input::TransferLeadership`]) is done when this node
//!    follows the target as leader.
//!
//! The core's refusals come back as [`AdminResponse::Refused`] with its
//! error text. Losing leadership, the core's transfer timeout, or
//! [`ServerConfig::admin_timeout`] end a request with
//! [`AdminResponse::TimedOut`]: the change may or may not take effect.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::Instrument;

use concord::state_machine::{apply_entry, StateMachine};
use concord::{
    Action, Config, ConfigError, EntryPayload, Index, Input, LogPosition, Node, NodeId,
    ProposeError, Role, Snapshot, SnapshotMeta, Term,
};

use super::addresses::{self, AddressRecord, HostRecord, SharedAddressBook};
use super::loop_handle::{LoopHandle, Unanswered};
use super::metrics::{self, round_trip::RoundTrips};
use super::request_trace;
use super::status::{NodeStatus, ServerCounters};
use super::storage::{
    PersistRequest, SnapshotReader, SnapshotSink, SnapshotStoredSender, SnapshotWrite, Storage,
    StorageError,
};
use super::transport::Transport;
use super::wire::{AdminRequest, AdminResponse, ClientResponse, MemberInfo, Members};

/// Something for the server loop to handle.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// A Raft message from a peer.
    Peer(concord::Message),
    /// A client command to replicate and apply.
    Client {
        /// The command, opaque to the server.
        command: Bytes,
        /// Where the answer goes.
        reply: oneshot::Sender<ClientResponse>,
    },
    /// A linearizable read served without a log entry (see
    /// [`concord::ReadPath`]), answered from
    /// [`StateMachine::query`].
    Read {
        /// How to serve it.
        path: concord::ReadPath,
        /// The state machine's read request.
        query: Bytes,
        /// Where the answer goes.
        reply: oneshot::Sender<ClientResponse>,
    },
    /// A status query (answered with [`ClientResponse::Status`]).
    Status {
        /// Where the answer goes.
        reply: oneshot::Sender<ClientResponse>,
    },
    /// A membership request (answered with [`ClientResponse::Admin`]; see
    /// the [module documentation](self#membership-changes)).
    Admin {
        /// What to do.
        request: AdminRequest,
        /// Where the answer goes.
        reply: oneshot::Sender<ClientResponse>,
    },
}

/// Settings of a server.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The replica's configuration.
    pub raft: Config,
    /// Wall-clock length of one tick.
    pub tick: Duration,
    /// Most client commands proposed in one batch.
    pub proposal_batch_max: usize,
    /// Most events handled between two looks at the ticker and storage.
    pub events_per_turn_max: usize,
    /// Client address of each node, for redirects (seeds
    /// [`addresses`](Self::addresses) at start).
    pub client_addrs: BTreeMap<NodeId, String>,
    /// The replicated address book this server keeps up to date from its
    /// log and snapshots, shared with the transport and the listener (see
    /// [`addresses`]).
    pub addresses: SharedAddressBook,
    /// Longest a membership request may take (from its arrival to the
    /// change committed and final, or the transfer done) before it is
    /// answered [`AdminResponse::TimedOut`].
    pub admin_timeout: Duration,
}

impl ServerConfig {
    /// Defaults around `raft`: 10 ms ticks, batches of up to 4096 commands.
    pub fn new(raft: Config) -> Self {
        ServerConfig {
            raft,
            tick: Duration::from_millis(10),
            proposal_batch_max: 4096,
            events_per_turn_max: 8192,
            client_addrs: BTreeMap::new(),
            addresses: SharedAddressBook::default(),
            admin_timeout: Duration::from_secs(10),
        }
    }
}

/// Why a server could not start or had to stop.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The configuration or recovered state is invalid.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// Storage failed.
    #[error("storage failed: {0}")]
    Storage(#[from] StorageError),
    /// An I/O error outside storage (binding the listener, ...).
    #[error("{0}")]
    Io(String),
    /// The state machine could not be restored from a snapshot (stored or
    /// received from the leader, its checksum verified): the snapshot was
    /// written by an incompatible version of the state machine.
    #[error(
        "cannot restore the state machine from the snapshot at index {index} term {term}: \
         {reason}; run the same state machine version on every node"
    )]
    Restore {
        /// The snapshot's last index.
        index: Index,
        /// The snapshot's last term.
        term: Term,
        /// What the state machine reported.
        reason: String,
    },
    /// This server was started as a witness (its id in
    /// [`Config::witnesses`], `concord-node --witness`) but the cluster's
    /// configuration lists it as a full voter, which must hold the state
    /// machine a witness never keeps.
    #[error(
        "node {id} is started as a witness, but the cluster's configuration (index \
         {configuration_index}) lists it as a full voter, which holds the data a witness never \
         keeps: start it without --witness, or remove it (`concord-cli member remove {id}`), \
         empty its data directory and add it back with `concord-cli member add-witness`"
    )]
    WitnessListedAsFullVoter {
        /// This node.
        id: NodeId,
        /// Index of the configuration in force.
        configuration_index: Index,
    },
    /// This server was started as a full server but the cluster's
    /// configuration lists it as a witness: the leader sends it no state
    /// machine data.
    #[error(
        "node {id} is started as a full server, but the cluster's configuration (index \
         {configuration_index}) lists it as a witness, which receives no state machine data: \
         start it with --witness (`concord-node --witness`, or `witness = true` in its config \
         file)"
    )]
    FullServerListedAsWitness {
        /// This node.
        id: NodeId,
        /// Index of the configuration in force.
        configuration_index: Index,
    },
    /// Storage recovered a log continuing after a snapshot it did not hand
    /// over (a broken [`Storage`] implementation).
    #[error("storage recovered a log continuing after index {index} term {term} but no snapshot at that position")]
    MissingSnapshot {
        /// The recovered log's base index.
        index: Index,
        /// The recovered log's base term.
        term: Term,
    },
}

/// Replaces the state machine's state with the state machine's part of
/// `data`, the bytes of `snapshot`. Returns their size in bytes and the
/// address book the snapshot carried.
///
/// A witness (`witness`) holds no state machine: its snapshots carry the
/// address book alone (or nothing, as the leader sends them), and the
/// state machine is left untouched.
fn restore<S: StateMachine>(
    state_machine: &mut S,
    witness: bool,
    snapshot: &SnapshotReader,
    data: Bytes,
) -> Result<(u64, addresses::AddressBook), ServerError> {
    let position = snapshot.meta().position;
    let size_bytes = data.len() as u64;
    let refused = |reason: String| ServerError::Restore {
        index: position.index,
        term: position.term,
        reason,
    };
    let (book, data) = addresses::unwrap_snapshot(data).map_err(refused)?;
    if !witness {
        state_machine
            .restore(&data)
            .map_err(|e| refused(e.reason))?;
    }
    Ok((size_bytes, book))
}

/// Whether this node's kind (witness or full server, fixed when it was
/// built) contradicts the configuration in force, which is what the
/// leader serves it by: the error saying so.
fn witness_role_conflict(node: &Node) -> Option<ServerError> {
    let id = node.id();
    let membership = node.membership();
    let configuration_index = node.membership_index();
    if node.is_witness_node() && membership.is_full_voter(id) {
        Some(ServerError::WitnessListedAsFullVoter {
            id,
            configuration_index,
        })
    } else if !node.is_witness_node() && membership.is_witness(id) {
        Some(ServerError::FullServerListedAsWitness {
            id,
            configuration_index,
        })
    } else {
        None
    }
}

/// The role error for a full server whose recovered configuration (the
/// last one in its log, else its snapshot's) lists it as a witness: the
/// reason a snapshot without state would not restore.
fn recovered_as_witness(recovered: &concord::Recovered, id: NodeId) -> Option<ServerError> {
    let (configuration_index, membership) = recovered
        .entries
        .iter()
        .rev()
        .find_map(|entry| Some((entry.index, entry.payload.membership()?)))
        .or_else(|| Some((recovered.base.index, recovered.membership.as_ref()?)))?;
    membership
        .is_witness(id)
        .then_some(ServerError::FullServerListedAsWitness {
            id,
            configuration_index,
        })
}

/// Adopts the address an [`EntryPayload::Host`] entry carries, if it is an
/// address record: into `book`, and into `transport` when given. Records
/// this version cannot read are logged and skipped (they change no
/// address).
fn note_host_entry<T: Transport>(
    book: &SharedAddressBook,
    transport: Option<&T>,
    entry: &concord::Entry,
) {
    let EntryPayload::Host(bytes) = &entry.payload else {
        return;
    };
    match HostRecord::decode(bytes) {
        Ok(HostRecord::Address(AddressRecord { id, addr })) => {
            if addresses::validate_address(&addr).is_err() {
                tracing::warn!(index = entry.index, id, %addr, "unusable address record in the log; skipped");
                return;
            }
            if book.set(id, &addr) {
                tracing::info!(index = entry.index, id, %addr, "address book: node {id} is at {addr}");
                if let Some(transport) = transport {
                    transport.set_peer_address(id, &addr);
                }
            }
        }
        Err(e) => {
            tracing::warn!(index = entry.index, error = %e, "host record in the log this version cannot read; skipped")
        }
    }
}

/// Sends `response` to a membership request.
fn send_admin(reply: oneshot::Sender<ClientResponse>, response: AdminResponse) {
    let _ = reply.send(ClientResponse::Admin(response));
}

/// A membership request being carried out by the leader.
#[derive(Debug)]
struct AdminOp {
    stage: AdminStage,
    reply: oneshot::Sender<ClientResponse>,
    deadline: tokio::time::Instant,
}

#[derive(Debug)]
enum AdminStage {
    /// The address record at `index`/`term` must commit before `change` is
    /// proposed.
    Address {
        index: Index,
        term: Term,
        change: concord::MembershipChange,
    },
    /// The configuration entry at `index`/`term` must commit, and the
    /// joint configuration it may start must be left.
    Change { index: Index, term: Term },
    /// Leadership is being handed to `target`.
    Transfer { target: NodeId },
}

/// What the node answered to an admin input, captured while stepping it.
#[derive(Debug)]
enum AdminCaptured {
    Accepted { index: Index, term: Term },
    Refused(ProposeError),
    Transfer(concord::TransferOutcome),
}

/// Bounded channel capacity for a server inbox.
pub const INBOX_EVENTS_MAX: usize = 65_536;

/// Makes the channel a server reads its events from (create it first so the
/// transport or listener can be handed the sender).
pub fn inbox() -> (mpsc::Sender<Event>, mpsc::Receiver<Event>) {
    mpsc::channel(INBOX_EVENTS_MAX)
}

/// A running server: send it events, ask for status, shut it down.
pub type ServerHandle = LoopHandle<Event, ServerError>;

impl LoopHandle<Event, ServerError> {
    /// Submits a command and waits for the answer (in-process client).
    pub async fn call(&self, command: Bytes) -> ClientResponse {
        match self.ask(|reply| Event::Client { command, reply }).await {
            Ok(response) => response,
            Err(Unanswered::Stopped) => ClientResponse::Error("server stopped".to_string()),
            Err(Unanswered::Dropped) => ClientResponse::Unknown,
        }
    }

    /// Sends a membership request (in-process admin client); `None` if the
    /// server stopped.
    pub async fn admin(&self, request: AdminRequest) -> Option<AdminResponse> {
        match self.ask(|reply| Event::Admin { request, reply }).await {
            Ok(ClientResponse::Admin(response)) => Some(response),
            _ => None,
        }
    }

    /// The node's status, or `None` if the server stopped.
    pub async fn status(&self) -> Option<NodeStatus> {
        match self.ask(|reply| Event::Status { reply }).await {
            Ok(ClientResponse::Status(status)) => Some(*status),
            _ => None,
        }
    }
}

/// Starts a server on the current runtime: recovers `storage`, builds the
/// node, and spawns the loop reading `inbox`.
pub fn start<S, St, T>(
    config: ServerConfig,
    state_machine: S,
    mut storage: St,
    transport: T,
    inbox: (mpsc::Sender<Event>, mpsc::Receiver<Event>),
) -> Result<ServerHandle, ServerError>
where
    S: StateMachine + Send + 'static,
    St: Storage,
    T: Transport,
{
    let id = config.raft.id;
    let mut state_machine = state_machine;
    let recovered = storage.recover()?;
    let recovered_snapshot = storage.recovered_snapshot();
    let witness = config.raft.witnesses.contains(&id);
    let recovered_entries = recovered.entries.len();
    let base = recovered.base;
    // The book: the command line's addresses, then the snapshot's book,
    // then every record in the log (see `addresses`).
    for (&node, addr) in &config.client_addrs {
        config.addresses.set(node, addr);
    }
    match &recovered_snapshot {
        Some(snapshot) if snapshot.meta().position == base => {
            // Storage verified the recovered snapshot's checksum as it read
            // it back (`Storage::recovered_snapshot`): not checked twice.
            let data = snapshot.read_chunk(0, snapshot.meta().size_bytes)?;
            let book = restore(&mut state_machine, witness, snapshot, data)
                .map_err(|e| recovered_as_witness(&recovered, id).unwrap_or(e))?
                .1;
            for (node, addr) in book {
                config.addresses.set(node, &addr);
            }
        }
        None if base == LogPosition::ZERO => {}
        _ => {
            return Err(ServerError::MissingSnapshot {
                index: base.index,
                term: base.term,
            })
        }
    }
    for entry in &recovered.entries {
        note_host_entry(&config.addresses, None::<&T>, entry);
    }
    for (node, addr) in config.addresses.get() {
        if node != id {
            transport.set_peer_address(node, &addr);
        }
    }
    let was_member = config.raft.voters.contains(&id);
    let node = Node::new(config.raft.clone(), recovered)?;
    if let Some(conflict) = witness_role_conflict(&node) {
        return Err(conflict);
    }
    let (persisted_tx, persisted_rx) = mpsc::unbounded_channel();
    storage.start(persisted_tx)?;
    let (snapshots_tx, snapshots_rx) = mpsc::unbounded_channel();
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (done_tx, done_rx) = oneshot::channel();
    let (events_tx, events_rx) = inbox;
    let span = tracing::info_span!("node", id);
    span.in_scope(|| {
        tracing::info!(
            term = node.term(),
            entries = recovered_entries,
            snapshot_index = base.index,
            snapshot_term = base.term,
            "server starting"
        );
        if node.storage_recovery().is_recovering() {
            super::status::log_starting_recovery(1);
        }
    });
    // Every address so far was handed to the transport above.
    let addresses_synced = config.addresses.generation();
    let mut server = Server {
        node,
        state_machine,
        storage,
        transport,
        config,
        actions: Vec::new(),
        more_actions: Vec::new(),
        pending_commands: Vec::new(),
        pending_replies: VecDeque::new(),
        proposing: VecDeque::new(),
        proposing_sessions: VecDeque::new(),
        waiting: VecDeque::new(),
        counters: ServerCounters::default(),
        failed: None,
        snapshots_stored: snapshots_tx,
        served_snapshot: None,
        incoming_snapshot: None,
        outgoing_snapshots: BTreeMap::new(),
        received_snapshot: None,
        reads: BTreeMap::new(),
        next_read_id: 0,
        clock_start: tokio::time::Instant::now(),
        ticks_delivered: 0,
        admin: None,
        admin_capturing: false,
        admin_captured: None,
        removed_notices_logged: 0,
        removed_logged: false,
        was_member,
        role_conflict_logged_index: None,
        last_heard: BTreeMap::new(),
        round_trips: RoundTrips::new(),
        addresses_synced,
    };
    if let Some(snapshot) = recovered_snapshot {
        // The node serves it to followers behind its log.
        span.in_scope(|| server.snapshotted(snapshot));
    }
    tokio::spawn(
        async move {
            let result = server
                .run(events_rx, persisted_rx, snapshots_rx, shutdown_rx)
                .await;
            if let Err(e) = &result {
                tracing::error!(error = %e, "server stopped with an error");
            }
            let _ = done_tx.send(result);
        }
        .instrument(span),
    );
    Ok(ServerHandle::new(id, events_tx, shutdown_tx, done_rx))
}

struct Server<S, St, T> {
    node: Node,
    state_machine: S,
    storage: St,
    transport: T,
    config: ServerConfig,
    actions: Vec<Action>,
    more_actions: Vec<Action>,
    /// Commands received and not yet proposed.
    pending_commands: Vec<Bytes>,
    pending_replies: VecDeque<oneshot::Sender<ClientResponse>>,
    /// Replies of the batch being proposed, matched to the node's answer.
    proposing: VecDeque<oneshot::Sender<ClientResponse>>,
    /// The `(client, seq)` of each command of the batch being proposed,
    /// for the `proposed` event; filled only while it is enabled (see
    /// [`request_trace`]).
    proposing_sessions: VecDeque<Option<(u64, u64)>>,
    /// Clients waiting for their entry: (index, term, reply), in index
    /// order (a leader's accepted indices only grow).
    waiting: VecDeque<(Index, Term, oneshot::Sender<ClientResponse>)>,
    counters: ServerCounters,
    failed: Option<ServerError>,
    /// Where storage reports this node's own snapshots durable.
    snapshots_stored: SnapshotStoredSender,
    /// The newest snapshot reported to the node (taken, recovered or
    /// received): the one its `SendSnapshotChunk` actions read.
    served_snapshot: Option<SnapshotReader>,
    /// The snapshot being received from the leader, and when its first
    /// chunk arrived.
    incoming_snapshot: Option<(SnapshotSink, std::time::Instant)>,
    /// Snapshots being sent, by follower: which one, and when its first
    /// chunk was handed to the transport (one entry per peer at most).
    outgoing_snapshots: BTreeMap<NodeId, (LogPosition, std::time::Instant)>,
    /// The snapshot received whole and handed to storage, until restored.
    received_snapshot: Option<SnapshotReader>,
    /// Reads handed to the node, by read id: the query and the reply.
    reads: BTreeMap<u64, (Bytes, oneshot::Sender<ClientResponse>)>,
    next_read_id: u64,
    /// When the node's clock started, and the ticks given to it since: the
    /// node sees one tick per `tick` of wall-clock time, including the
    /// ticks a stall of this process missed (leases rely on it).
    clock_start: tokio::time::Instant,
    ticks_delivered: u64,
    /// The membership request under way (one at a time).
    admin: Option<AdminOp>,
    /// While stepping an admin input: its answer goes to `admin_captured`.
    admin_capturing: bool,
    admin_captured: Option<AdminCaptured>,
    /// The core's count of "you were removed" notices already seen.
    removed_notices_logged: u64,
    /// Whether this node's removal was logged.
    removed_logged: bool,
    /// Whether this node was seen in a committed configuration: born a
    /// voter, or added (a joining learner's own initial configuration does
    /// not count).
    was_member: bool,
    /// The configuration index at which a witness/full-server conflict
    /// was last logged.
    role_conflict_logged_index: Option<Index>,
    /// When a Raft message last arrived from each peer, for `status`
    /// (bounded: see [`PEERS_HEARD_MAX`]).
    last_heard: BTreeMap<NodeId, tokio::time::Instant>,
    /// The timed append of each follower, for the round-trip histogram.
    round_trips: RoundTrips,
    /// The address book's generation last handed to the transport.
    addresses_synced: u64,
}

/// Most peers whose last contact a server remembers (a cluster's members
/// are far fewer; a flood of forged ids cannot grow it past this).
const PEERS_HEARD_MAX: usize = 1024;

impl<S, St, T> Server<S, St, T>
where
    S: StateMachine + Send + 'static,
    St: Storage,
    T: Transport,
{
    async fn run(
        mut self,
        mut inbox: mpsc::Receiver<Event>,
        mut persisted: mpsc::UnboundedReceiver<Result<concord::WriteId, StorageError>>,
        mut snapshots_stored: mpsc::UnboundedReceiver<SnapshotReader>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), ServerError> {
        let mut ticker = tokio::time::interval(self.config.tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                }
                Some(first) = persisted.recv() => {
                    let mut result = first;
                    let mut drained = 0;
                    while drained < 1024 {
                        match persisted.try_recv() {
                            Ok(next) => {
                                result = match (result, next) {
                                    (Ok(a), Ok(b)) => Ok(a.max(b)),
                                    (Err(e), _) | (_, Err(e)) => Err(e),
                                };
                                drained += 1;
                            }
                            Err(_) => break,
                        }
                    }
                    match result {
                        Ok(id) => self.step(Input::Persisted(id)),
                        Err(e) => self.failed = Some(ServerError::Storage(e)),
                    }
                }
                Some(snapshot) = snapshots_stored.recv() => {
                    tracing::debug!(index = snapshot.meta().position.index, "snapshot durable");
                    self.snapshotted(snapshot);
                }
                _ = ticker.tick() => {
                    self.sync_addresses();
                    self.catch_up_ticks();
                }
                event = inbox.recv() => {
                    let Some(event) = event else { break };
                    self.handle_event(event);
                    let mut handled = 1;
                    while handled < self.config.events_per_turn_max {
                        match inbox.try_recv() {
                            Ok(event) => self.handle_event(event),
                            Err(_) => break,
                        }
                        handled += 1;
                    }
                }
            }
            self.flush_proposals();
            self.advance_admin();
            self.note_removed();
            self.note_role_conflict();
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

    /// Graceful stop: refuse what is queued, tell waiting clients the
    /// outcome is unknown, let storage finish its queued writes.
    fn stop(&mut self, inbox: &mut mpsc::Receiver<Event>) {
        inbox.close();
        while let Ok(event) = inbox.try_recv() {
            match event {
                Event::Client { reply, .. }
                | Event::Read { reply, .. }
                | Event::Admin { reply, .. }
                | Event::Status { reply } => {
                    let _ =
                        reply.send(ClientResponse::Error("server is shutting down".to_string()));
                }
                Event::Peer(_) => {}
            }
        }
        for reply in self.pending_replies.drain(..) {
            let _ = reply.send(ClientResponse::Unknown);
        }
        for (_, _, reply) in std::mem::take(&mut self.waiting) {
            let _ = reply.send(ClientResponse::Unknown);
        }
        for (_, (_, reply)) in std::mem::take(&mut self.reads) {
            let _ = reply.send(ClientResponse::Unknown);
        }
        if let Some(op) = self.admin.take() {
            let _ = op.reply.send(ClientResponse::Admin(AdminResponse::TimedOut(
                "the server shut down before the request finished; it may or may not take \
                 effect: run `member list` against the cluster"
                    .to_string(),
            )));
        }
        self.storage.shutdown();
        tracing::info!(
            commit = self.node.commit_index(),
            applied = self.node.applied_index(),
            "server stopped"
        );
    }

    fn handle_event(&mut self, event: Event) {
        match event {
            Event::Peer(message) => {
                self.counters.messages_received += 1;
                let now = tokio::time::Instant::now();
                if self.last_heard.len() < PEERS_HEARD_MAX
                    || self.last_heard.contains_key(&message.from)
                {
                    self.last_heard.insert(message.from, now);
                }
                if let concord::MessageBody::AppendEntriesResponse(
                    concord::AppendResponse::Accepted { match_index },
                ) = message.body
                {
                    if let Some(elapsed) =
                        self.round_trips
                            .acknowledged(message.from, match_index, now)
                    {
                        metrics::append_round_trip(message.from, elapsed);
                    }
                }
                self.step(Input::Receive(message));
            }
            Event::Client { command, reply } => {
                if self.node.role() != Role::Leader {
                    self.counters.redirects += 1;
                    let _ = reply.send(self.not_leader(self.node.leader()));
                    return;
                }
                self.pending_commands.push(command);
                self.pending_replies.push_back(reply);
                if self.pending_commands.len() >= self.config.proposal_batch_max {
                    self.flush_proposals();
                }
            }
            Event::Read { path, query, reply } => {
                // A node out of the configuration applies nothing more:
                // it sends the reader on at once rather than let it wait.
                if self.node.not_member_since().is_some() {
                    let _ = reply.send(self.not_leader(self.node.leader()));
                    return;
                }
                // The ticks a stall missed come first: a leader must see
                // its lease run out before it serves a read under it.
                self.catch_up_ticks();
                self.next_read_id += 1;
                let id = self.next_read_id;
                self.reads.insert(id, (query, reply));
                tracing::debug!(read = id, ?path, "read started");
                self.step(Input::Read { id, path });
            }
            Event::Status { reply } => {
                let mut status = NodeStatus::of(&self.node, self.counters);
                let now = tokio::time::Instant::now();
                for peer in &mut status.peers {
                    peer.last_contact_ms = self
                        .last_heard
                        .get(&peer.id)
                        .map(|at| now.duration_since(*at).as_millis() as u64);
                }
                let _ = reply.send(ClientResponse::Status(Box::new(status)));
            }
            Event::Admin { request, reply } => self.start_admin(request, reply),
        }
    }

    /// Hands the transport the addresses the book gained from elsewhere
    /// than this loop (the listener's, for a member this node's
    /// `--peers` do not name): once per change of the book.
    fn sync_addresses(&mut self) {
        let generation = self.config.addresses.generation();
        if generation == self.addresses_synced {
            return;
        }
        self.addresses_synced = generation;
        let me = self.node.id();
        for (node, addr) in self.config.addresses.get() {
            if node != me {
                self.transport.set_peer_address(node, &addr);
            }
        }
    }

    /// Gives the node every tick due by the wall clock.
    fn catch_up_ticks(&mut self) {
        let tick_nanos = self.config.tick.as_nanos().max(1);
        let due = (self.clock_start.elapsed().as_nanos() / tick_nanos) as u64;
        while self.ticks_delivered < due {
            self.ticks_delivered += 1;
            self.counters.ticks += 1;
            self.step(Input::Tick);
        }
    }

    fn serve_read(&mut self, id: u64, path: concord::ReadPath) {
        let Some((query, reply)) = self.reads.remove(&id) else {
            tracing::error!(id, "the node released a read it was never given");
            return;
        };
        let _span = tracing::debug_span!("read", read = id, ?path).entered();
        tracing::debug!(read = id, ?path, "read served");
        let response = match self.state_machine.query(&query) {
            Some(answer) => {
                match path {
                    concord::ReadPath::ReadIndex => self.counters.reads_read_index += 1,
                    concord::ReadPath::Lease => self.counters.reads_lease += 1,
                    concord::ReadPath::Follower => self.counters.reads_follower += 1,
                }
                ClientResponse::Done(answer)
            }
            None => ClientResponse::Error(
                "this state machine serves no reads without the log; send the read as a command"
                    .to_string(),
            ),
        };
        let _ = reply.send(response);
    }

    fn refuse_read(&mut self, id: u64, error: concord::ReadError) {
        let Some((_, reply)) = self.reads.remove(&id) else {
            return;
        };
        tracing::debug!(read = id, ?error, "read refused");
        let response = match error {
            concord::ReadError::NotLeader { leader_hint } => {
                self.counters.redirects += 1;
                self.not_leader(leader_hint)
            }
            concord::ReadError::Backpressure => ClientResponse::Busy,
            // Nothing was read: the client retries (at the new leader).
            _ => ClientResponse::Unknown,
        };
        let _ = reply.send(response);
    }

    fn not_leader(&self, leader_hint: Option<NodeId>) -> ClientResponse {
        let leader_hint = leader_hint.filter(|&id| id != self.node.id());
        ClientResponse::NotLeader {
            leader_hint,
            leader_addr: leader_hint.and_then(|id| self.config.addresses.address(id)),
        }
    }

    /// The members as this node sees them.
    fn members(&self) -> Members {
        let membership = self.node.membership();
        let leading = self.node.role() == Role::Leader;
        let last_index = self.node.last_index();
        let members = membership
            .members()
            .into_iter()
            .map(|id| {
                let witness = membership.is_witness(id);
                let role = if membership.voters.contains(&id) {
                    if witness {
                        "witness"
                    } else {
                        "voter"
                    }
                } else if membership.voters_outgoing.contains(&id) {
                    if witness {
                        "outgoing witness"
                    } else {
                        "outgoing voter"
                    }
                } else {
                    "learner"
                };
                let match_index = if !leading {
                    None
                } else if id == self.node.id() {
                    Some(last_index)
                } else {
                    self.node.progress(id).map(|p| p.match_index)
                };
                MemberInfo {
                    id,
                    role: role.to_string(),
                    addr: self.config.addresses.address(id),
                    match_index,
                    lag_entries: match_index.map(|m| last_index.saturating_sub(m)),
                }
            })
            .collect();
        Members {
            answered_by: self.node.id(),
            term: self.node.term(),
            leader: self.node.leader(),
            commit_index: self.node.commit_index(),
            configuration_index: self.node.membership_index(),
            configuration_committed: self.node.membership_index() <= self.node.commit_index(),
            voters: membership.voters.iter().copied().collect(),
            voters_outgoing: membership.voters_outgoing.iter().copied().collect(),
            learners: membership.learners.iter().copied().collect(),
            members,
            forced_recovery: self.node.last_forced_recovery().map(|(position, audit)| {
                format!(
                    "forced recovery at index {}, term {}: {audit}",
                    position.index, position.term
                )
            }),
            not_member_since: self.node.not_member_since(),
        }
    }

    /// Steps an admin input and returns the node's answer to it (the
    /// proposal or transfer answer; the actions around it run as usual).
    fn step_admin(&mut self, input: Input) -> Option<AdminCaptured> {
        debug_assert!(self.admin_captured.is_none());
        self.admin_capturing = true;
        self.step(input);
        self.admin_capturing = false;
        self.admin_captured.take()
    }

    /// Answers the request under way and forgets it.
    fn admin_answer(&mut self, response: AdminResponse) {
        if let Some(op) = self.admin.take() {
            match &response {
                AdminResponse::Done(_) => tracing::info!("membership request done"),
                other => tracing::info!(answer = ?other, "membership request ended"),
            }
            let _ = op.reply.send(ClientResponse::Admin(response));
        }
    }

    fn admin_not_leader(&self, leader_hint: Option<NodeId>) -> AdminResponse {
        let leader_hint = leader_hint.filter(|&id| id != self.node.id());
        AdminResponse::NotLeader {
            leader_hint,
            leader_addr: leader_hint.and_then(|id| self.config.addresses.address(id)),
        }
    }

    /// Turns the node's refusal of a proposal into an answer.
    fn admin_refusal(&self, error: ProposeError) -> AdminResponse {
        match error {
            ProposeError::NotLeader { leader_hint } => self.admin_not_leader(leader_hint),
            ProposeError::Membership(e) => AdminResponse::Refused(e.to_string()),
            other => AdminResponse::Refused(format!("{other}; retry")),
        }
    }

    /// Starts a membership request (see the module documentation).
    fn start_admin(&mut self, request: AdminRequest, reply: oneshot::Sender<ClientResponse>) {
        if request == AdminRequest::List {
            return send_admin(reply, AdminResponse::Done(self.members()));
        }
        if self.node.role() != Role::Leader {
            return send_admin(reply, self.admin_not_leader(self.node.leader()));
        }
        if let Some(op) = &self.admin {
            return send_admin(
                reply,
                AdminResponse::Refused(format!(
                "another membership request is in progress on this leader ({:?}); retry once it \
                 finished",
                op.stage
            )),
            );
        }
        tracing::info!(?request, "membership request");
        let deadline = tokio::time::Instant::now() + self.config.admin_timeout;
        let (change, addr) = match request {
            AdminRequest::List => unreachable!("answered above"),
            AdminRequest::AddLearner { id, addr } => {
                (concord::MembershipChange::AddLearner(id), Some((id, addr)))
            }
            AdminRequest::AddVoter { id, addr } => {
                (concord::MembershipChange::AddVoter(id), Some((id, addr)))
            }
            AdminRequest::AddWitness { id, addr } => {
                (concord::MembershipChange::AddWitness(id), Some((id, addr)))
            }
            AdminRequest::Promote { id } => (concord::MembershipChange::PromoteLearner(id), None),
            AdminRequest::Remove { id } => (concord::MembershipChange::Remove(id), None),
            AdminRequest::TransferLeader { id } => {
                self.catch_up_ticks();
                return match self.step_admin(Input::TransferLeadership(id)) {
                    Some(AdminCaptured::Transfer(concord::TransferOutcome::Started)) => {
                        self.admin = Some(AdminOp {
                            stage: AdminStage::Transfer { target: id },
                            reply,
                            deadline,
                        });
                    }
                    Some(AdminCaptured::Transfer(concord::TransferOutcome::Refused(e))) => {
                        send_admin(reply, AdminResponse::Refused(e.to_string()))
                    }
                    other => send_admin(
                        reply,
                        AdminResponse::Refused(format!(
                            "unexpected answer of the node to the transfer: {other:?}"
                        )),
                    ),
                };
            }
        };
        if let Some((id, addr)) = addr {
            if let Err(e) = addresses::validate_address(&addr) {
                return send_admin(
                    reply,
                    AdminResponse::Refused(format!("node {id}'s address: {e}")),
                );
            }
            if id == 0 {
                return send_admin(
                    reply,
                    AdminResponse::Refused(concord::MembershipError::ZeroNodeId.to_string()),
                );
            }
            // Refuse an invalid change before writing its address.
            if let Err(e) = self.node.membership().apply_change(change) {
                return send_admin(reply, AdminResponse::Refused(e.to_string()));
            }
            let record = HostRecord::Address(AddressRecord { id, addr });
            let bytes = match record.encode() {
                Ok(bytes) => bytes,
                Err(e) => return send_admin(reply, AdminResponse::Refused(e)),
            };
            match self.step_admin(Input::ProposeHost(bytes)) {
                Some(AdminCaptured::Accepted { index, term }) => {
                    self.admin = Some(AdminOp {
                        stage: AdminStage::Address {
                            index,
                            term,
                            change,
                        },
                        reply,
                        deadline,
                    });
                }
                Some(AdminCaptured::Refused(e)) => send_admin(reply, self.admin_refusal(e)),
                other => send_admin(
                    reply,
                    AdminResponse::Refused(format!(
                        "unexpected answer of the node to the address record: {other:?}"
                    )),
                ),
            }
            return;
        }
        self.admin = Some(AdminOp {
            stage: AdminStage::Change { index: 0, term: 0 },
            reply,
            deadline,
        });
        self.propose_change(change);
    }

    /// Proposes the membership change of the request under way.
    fn propose_change(&mut self, change: concord::MembershipChange) {
        match self.step_admin(Input::ChangeMembership(change)) {
            Some(AdminCaptured::Accepted { index, term }) => {
                if let Some(op) = self.admin.as_mut() {
                    op.stage = AdminStage::Change { index, term };
                }
            }
            Some(AdminCaptured::Refused(e)) => {
                let response = self.admin_refusal(e);
                self.admin_answer(response);
            }
            other => self.admin_answer(AdminResponse::Refused(format!(
                "unexpected answer of the node to the change: {other:?}"
            ))),
        }
    }

    /// Moves the request under way on, once per loop turn.
    fn advance_admin(&mut self) {
        let Some(op) = &self.admin else {
            return;
        };
        let leading = self.node.role() == Role::Leader;
        let commit = self.node.commit_index();
        match op.stage {
            AdminStage::Address {
                index,
                term,
                change,
            } => {
                if !leading || self.node.term_at(index) != Some(term) {
                    let hint = self.node.leader();
                    let response = match self.admin_not_leader(hint) {
                        AdminResponse::NotLeader { .. } if !leading => {
                            AdminResponse::TimedOut(format!(
                                "leadership changed before node {} could add the address; the \
                             membership did not change: retry (the leader is now {hint:?})",
                                self.node.id()
                            ))
                        }
                        _ => AdminResponse::TimedOut(
                            "the address record was lost; the membership did not change: retry"
                                .to_string(),
                        ),
                    };
                    return self.admin_answer(response);
                }
                if commit >= index {
                    return self.propose_change(change);
                }
            }
            AdminStage::Change { index, term } => {
                let final_index = self.node.membership_index();
                if commit >= index
                    && self.node.term_at(index).is_none_or(|t| t == term)
                    && commit >= final_index
                    && !self.node.membership().is_joint()
                {
                    let members = self.members();
                    return self.admin_answer(AdminResponse::Done(members));
                }
                if !leading || self.node.term_at(index).is_some_and(|t| t != term) {
                    return self.admin_answer(AdminResponse::TimedOut(format!(
                        "leadership changed while the change at index {index} was in progress; \
                         it may or may not take effect: run `member list` (leader now {:?})",
                        self.node.leader()
                    )));
                }
            }
            AdminStage::Transfer { target } => {
                if self.node.leader() == Some(target) && !leading {
                    let members = self.members();
                    return self.admin_answer(AdminResponse::Done(members));
                }
            }
        }
        if tokio::time::Instant::now() >= op.deadline {
            let response = AdminResponse::TimedOut(format!(
                "not finished within {:?} ({:?}); it may or may not take effect: run `member \
                 list`",
                self.config.admin_timeout, op.stage
            ));
            self.admin_answer(response);
        }
    }

    /// Logs, once, that this node is no longer a member: the cluster told
    /// it so (it asked for votes it may not have), or it holds a committed
    /// configuration without itself (a removed leader, which stepped down).
    /// The core keeps it from campaigning; the operator should stop it.
    fn note_removed(&mut self) {
        let notices = self.node.stats().removed_notices_received;
        let id = self.node.id();
        let committed = self.node.membership_index() <= self.node.commit_index();
        let member = self.node.membership().contains(id);
        if committed && member && self.node.membership_index() > 0 {
            self.was_member = true;
        }
        // A joining node installs the leader's snapshot, whose
        // configuration may predate its own addition: not a removal.
        let committed_without_me = committed && !member && self.was_member;
        if notices > self.removed_notices_logged || committed_without_me {
            if !self.removed_logged {
                self.removed_logged = true;
                tracing::warn!(
                    id,
                    configuration_index = self.node.membership_index(),
                    "this node was removed from the cluster's configuration: it no longer \
                     campaigns or serves; stop it (and wipe its data directory before reusing its \
                     id)"
                );
            }
            self.removed_notices_logged = notices;
        }
    }

    /// Logs, once per configuration, that the configuration in force
    /// names this node a witness while it runs as a full server or the
    /// reverse (an operator added it with the wrong `member add-*`
    /// command). It keeps serving (its vote still counts), but the cluster
    /// has the wrong number of full voters until it is fixed.
    fn note_role_conflict(&mut self) {
        let index = self.node.membership_index();
        if self.role_conflict_logged_index == Some(index) {
            return;
        }
        if let Some(conflict) = witness_role_conflict(&self.node) {
            self.role_conflict_logged_index = Some(index);
            tracing::error!(error = %conflict, "witness role conflict");
        }
    }

    /// Serializes the state machine at the applied index and hands the
    /// copy to storage (see the [module documentation](self)). A witness
    /// has no state machine: its snapshot holds the address book alone,
    /// so that its log can be compacted and a restart still knows where
    /// every member listens.
    fn take_snapshot(&mut self) {
        let index = self.node.applied_index();
        let Some(term) = self.node.term_at(index) else {
            // The core asks only with applied entries in its log.
            tracing::error!(
                index,
                "asked for a snapshot at an index outside the log; ignored"
            );
            return;
        };
        let started = std::time::Instant::now();
        let state = if self.node.is_witness_node() {
            Bytes::new()
        } else {
            self.state_machine.snapshot()
        };
        let data = match addresses::wrap_snapshot(&self.config.addresses.get(), &state) {
            Ok(data) => data,
            Err(e) => {
                tracing::error!(index, error = %e, "cannot write the address book into a snapshot; no snapshot taken");
                return;
            }
        };
        let membership = self.node.membership_at(index).cloned();
        tracing::info!(
            index,
            term,
            bytes = data.len(),
            serialize_ms = started.elapsed().as_millis() as u64,
            "taking a snapshot"
        );
        self.storage.submit_snapshot(SnapshotWrite::Taken {
            snapshot: Snapshot::new(LogPosition::new(index, term), data)
                .with_membership(membership),
            stored: self.snapshots_stored.clone(),
        });
    }

    /// Keeps `snapshot` as the one served to followers if it is the newest
    /// one, and reports it to the node.
    fn snapshotted(&mut self, snapshot: SnapshotReader) {
        self.serve_snapshot(&snapshot);
        self.step(Input::Snapshotted(snapshot.meta()));
    }

    /// Keeps `snapshot` for chunk reads unless a newer one is kept (the
    /// node serves the newest one it was told of, and ignores older
    /// reports).
    fn serve_snapshot(&mut self, snapshot: &SnapshotReader) {
        let index = snapshot.meta().position.index;
        if self
            .served_snapshot
            .as_ref()
            .is_none_or(|served| served.meta().position.index < index)
        {
            self.served_snapshot = Some(snapshot.clone());
        }
    }

    /// Reads a chunk of the served snapshot and sends it. Best effort: a
    /// chunk of a snapshot no longer served is dropped (the transfer
    /// resumes from the follower's next answer).
    fn send_snapshot_chunk(&mut self, chunk: concord::SnapshotChunkToSend) {
        let Some(served) = self
            .served_snapshot
            .as_ref()
            .filter(|served| served.meta() == chunk.snapshot)
        else {
            tracing::warn!(
                index = chunk.snapshot.position.index,
                "asked to send a chunk of a snapshot this server does not serve; dropped"
            );
            return;
        };
        match served.read_chunk(chunk.offset, chunk.length_bytes) {
            Ok(data) => {
                self.counters.messages_sent += 1;
                self.counters.snapshot_bytes_sent += data.len() as u64;
                let to = chunk.to;
                let message = chunk.into_message(data);
                if let concord::MessageBody::InstallSnapshot(sent) = &message.body {
                    let end = sent.offset + sent.data.len() as u64;
                    self.snapshot_chunk_sent(to, sent.snapshot, sent.offset, end, sent.size_bytes);
                }
                self.transport.send(to, message);
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read a snapshot chunk; not sent");
            }
        }
    }

    /// Times a snapshot transfer to `to`, for
    /// `concord_snapshot_send_duration_seconds`: from its chunk at offset
    /// 0 (a rewound transfer starts again) to the chunk that ends at
    /// `size_bytes`. The empty chunk a leader sends past the end to draw
    /// an answer finds no transfer and is not counted twice.
    fn snapshot_chunk_sent(
        &mut self,
        to: NodeId,
        snapshot: LogPosition,
        offset: u64,
        end: u64,
        size_bytes: u64,
    ) {
        let now = std::time::Instant::now();
        if offset == 0 {
            self.outgoing_snapshots.insert(to, (snapshot, now));
        }
        if end >= size_bytes {
            if let Some((sending, started)) = self.outgoing_snapshots.remove(&to) {
                if sending == snapshot {
                    metrics::snapshot_sent(now.duration_since(started));
                }
            }
        }
    }

    /// Writes a chunk of the snapshot being received (offset 0 starts a
    /// new one).
    fn write_snapshot_chunk(&mut self, snapshot: SnapshotMeta, offset: u64, data: Bytes) {
        if self.failed.is_some() {
            // Storage failed: the server is stopping with that error.
            return;
        }
        if offset == 0 {
            self.incoming_snapshot = None;
            match self.storage.receive_snapshot(snapshot) {
                Ok(sink) => self.incoming_snapshot = Some((sink, std::time::Instant::now())),
                Err(e) => {
                    self.failed = Some(e.into());
                    return;
                }
            }
        }
        let Some((sink, _)) = self.incoming_snapshot.as_mut() else {
            // Only after storage failed to create the sink: the server is
            // stopping with that error.
            assert!(
                self.failed.is_some(),
                "the node wrote a snapshot chunk at {offset} before the one at offset 0"
            );
            return;
        };
        assert_eq!(sink.meta(), snapshot, "a chunk of another snapshot");
        if let Err(e) = sink.write(offset, &data) {
            self.failed = Some(e.into());
        }
    }

    /// Hands the snapshot received whole to storage (a write under `id`).
    fn persist_snapshot(
        &mut self,
        id: concord::WriteId,
        snapshot: SnapshotMeta,
        discard_log: bool,
        membership: concord::Membership,
    ) {
        if self.failed.is_some() {
            return;
        }
        let Some((sink, started)) = self.incoming_snapshot.take() else {
            assert!(
                self.failed.is_some(),
                "the node stored a snapshot it never received"
            );
            return;
        };
        self.counters.last_snapshot_receive_micros = started.elapsed().as_micros() as u64;
        metrics::snapshot_received(started.elapsed());
        self.counters.snapshot_bytes_received += snapshot.size_bytes;
        assert_eq!(sink.meta(), snapshot, "the node stored another snapshot");
        let (received, reader) = sink.finish();
        self.counters.writes_submitted += 1;
        tracing::info!(
            index = snapshot.position.index,
            term = snapshot.position.term,
            bytes = snapshot.size_bytes,
            discard_log,
            "storing a snapshot received from the leader"
        );
        self.serve_snapshot(&reader);
        self.received_snapshot = Some(reader);
        self.storage.submit_snapshot(SnapshotWrite::Installed {
            id,
            received,
            discard_log,
            membership,
        });
    }

    /// Replaces the state machine's state with a snapshot from the leader.
    fn restore_snapshot(&mut self, snapshot: SnapshotMeta) {
        if self.failed.is_some() {
            return;
        }
        let position = snapshot.position;
        let Some(reader) = self
            .received_snapshot
            .take()
            .filter(|reader| reader.meta() == snapshot)
        else {
            assert!(
                self.failed.is_some(),
                "the node restores a snapshot it never received"
            );
            return;
        };
        let started = std::time::Instant::now();
        // Read back from where storage wrote it: checked again, as the
        // node checked the bytes it handed over.
        let bytes = match reader
            .read_verified()
            .map_err(ServerError::from)
            .and_then(|data| {
                let witness = self.node.is_witness_node();
                restore(&mut self.state_machine, witness, &reader, data)
            }) {
            Ok((bytes, book)) => {
                for (id, addr) in book {
                    if self.config.addresses.set(id, &addr) && id != self.node.id() {
                        tracing::info!(id, %addr, "address book: node {id} is at {addr} (from the leader's snapshot)");
                        self.transport.set_peer_address(id, &addr);
                    }
                }
                bytes
            }
            Err(e) => {
                // A full server the configuration lists as a witness was
                // sent a snapshot without state: say that, not "corrupt".
                self.failed = Some(witness_role_conflict(&self.node).unwrap_or(e));
                return;
            }
        };
        self.counters.last_snapshot_restore_micros = started.elapsed().as_micros() as u64;
        metrics::snapshot_restored(started.elapsed());
        tracing::info!(
            index = position.index,
            term = position.term,
            bytes,
            restore_ms = self.counters.last_snapshot_restore_micros / 1000,
            "restored the state machine from the leader's snapshot"
        );
        // Entries the snapshot covers are never applied here: their
        // clients learn nothing.
        while self
            .waiting
            .front()
            .is_some_and(|(index, _, _)| *index <= position.index)
        {
            if let Some((_, _, reply)) = self.waiting.pop_front() {
                self.counters.unknown_outcomes += 1;
                let _ = reply.send(ClientResponse::Unknown);
            }
        }
        self.node
            .step(Input::Applied(position.index), &mut self.more_actions);
    }

    fn flush_proposals(&mut self) {
        if self.pending_commands.is_empty() {
            return;
        }
        let commands = std::mem::take(&mut self.pending_commands);
        self.counters.proposals += commands.len() as u64;
        self.counters.proposal_batches += 1;
        metrics::proposal_batch(commands.len());
        debug_assert!(self.proposing.is_empty());
        self.proposing = std::mem::take(&mut self.pending_replies);
        if request_trace::enabled() {
            self.proposing_sessions = commands
                .iter()
                .map(|c| request_trace::session_of(c))
                .collect();
        }
        self.step(Input::ProposeBatch(commands));
        self.proposing_sessions.clear();
        // Anything the node did not account for (should not happen) is
        // answered rather than left hanging.
        for reply in self.proposing.drain(..) {
            let _ = reply.send(ClientResponse::Unknown);
        }
    }

    fn step(&mut self, input: Input) {
        let commit_before = self.node.commit_index();
        self.node.step(input, &mut self.actions);
        // Executing actions can step the node again (Applied), which can
        // produce more actions; bounded rounds.
        let mut rounds = 0;
        while !self.actions.is_empty() {
            rounds += 1;
            assert!(rounds <= 1024, "actions keep producing actions");
            let mut actions = std::mem::take(&mut self.actions);
            for action in actions.drain(..) {
                self.execute(action);
            }
            std::mem::swap(&mut self.actions, &mut self.more_actions);
            // Reuse the allocation.
            if self.more_actions.capacity() < actions.capacity() {
                self.more_actions = actions;
            }
        }
        let commit_after = self.node.commit_index();
        if commit_after > commit_before {
            metrics::entries_committed(commit_after - commit_before);
            let (first, last) = (commit_before + 1, commit_after);
            tracing::debug_span!("commit", first, last)
                .in_scope(|| tracing::debug!(first, last, "committed"));
        }
    }

    fn execute(&mut self, action: Action) {
        match action {
            Action::ReadReady { id, path, .. } => self.serve_read(id, path),
            Action::ReadRefused { id, error } => self.refuse_read(id, error),
            Action::Send { to, message } => {
                self.counters.messages_sent += 1;
                if let concord::MessageBody::AppendEntries { entries, .. } = &message.body {
                    if let Some(last) = entries.last() {
                        self.round_trips
                            .sent(to, last.index, tokio::time::Instant::now());
                    }
                }
                self.transport.send(to, message);
            }
            Action::Persist {
                id,
                hard_state,
                truncate_after,
                entries,
            } => {
                self.counters.writes_submitted += 1;
                // Addresses take effect when their record is in the log.
                for entry in &entries {
                    if matches!(entry.payload, EntryPayload::Host(_)) {
                        note_host_entry(&self.config.addresses, Some(&self.transport), entry);
                    }
                }
                self.storage.submit(PersistRequest {
                    id,
                    hard_state,
                    truncate_after,
                    entries,
                });
            }
            Action::Apply { entries } => {
                let Some(last) = entries.last().map(|e| e.index) else {
                    return;
                };
                let first = entries[0].index;
                for entry in &entries {
                    let span = tracing::debug_span!(
                        "apply",
                        index = entry.index,
                        term = entry.term,
                        client = tracing::field::Empty,
                        seq = tracing::field::Empty,
                        register = tracing::field::Empty,
                    );
                    if !span.is_disabled() {
                        if let EntryPayload::Command(command) = &entry.payload {
                            if let Some((client, seq)) = request_trace::session_of(command) {
                                span.record("client", client);
                                span.record("seq", seq);
                            } else if request_trace::is_registration(command) {
                                span.record("register", true);
                            }
                        }
                    }
                    let _entered = span.enter();
                    // Commands, and forced recoveries (the session layer
                    // expires what the lost servers may have handed out).
                    let response = apply_entry(&mut self.state_machine, entry);
                    tracing::debug!("applied");
                    self.counters.entries_applied += 1;
                    while self
                        .waiting
                        .front()
                        .is_some_and(|(index, _, _)| *index <= entry.index)
                    {
                        let Some((index, term, reply)) = self.waiting.pop_front() else {
                            break;
                        };
                        let answer = match &response {
                            Some(bytes) if index == entry.index && term == entry.term => {
                                tracing::debug!(outcome = "done", "answered");
                                ClientResponse::Done(bytes.clone())
                            }
                            _ => {
                                tracing::debug!(outcome = "unknown", waiting = index, "answered");
                                self.counters.unknown_outcomes += 1;
                                ClientResponse::Unknown
                            }
                        };
                        let _ = reply.send(answer);
                    }
                }
                tracing::debug!(first, last, commit = self.node.commit_index(), "applied");
                if let Some(sessions) = self.state_machine.sessions() {
                    metrics::sessions(sessions);
                }
                self.node.step(Input::Applied(last), &mut self.more_actions);
            }
            Action::ProposalAccepted {
                term,
                first_index,
                last_index,
            } if self.admin_capturing => {
                debug_assert_eq!(first_index, last_index);
                self.admin_captured = Some(AdminCaptured::Accepted {
                    index: last_index,
                    term,
                });
            }
            Action::ProposalRefused { error, .. } if self.admin_capturing => {
                self.admin_captured = Some(AdminCaptured::Refused(error));
            }
            Action::ProposalAccepted {
                term,
                first_index,
                last_index,
            } => {
                for index in first_index..=last_index {
                    match self.proposing_sessions.pop_front() {
                        Some(Some((client, seq))) => {
                            tracing::debug_span!("propose", index, term, client, seq)
                                .in_scope(|| tracing::debug!(index, term, client, seq, "proposed"))
                        }
                        Some(None) => tracing::debug_span!("propose", index, term)
                            .in_scope(|| tracing::debug!(index, term, "proposed")),
                        None => {}
                    }
                    match self.proposing.pop_front() {
                        Some(reply) => {
                            // A new leader's indices continue after anything
                            // still waiting from an earlier term only if the
                            // node stayed leader; otherwise `waiting` was
                            // emptied when leadership was lost.
                            while self.waiting.back().is_some_and(|(i, _, _)| *i >= index) {
                                if let Some((_, _, stale)) = self.waiting.pop_back() {
                                    let _ = stale.send(ClientResponse::Unknown);
                                }
                            }
                            self.waiting.push_back((index, term, reply));
                        }
                        None => break,
                    }
                }
            }
            Action::ProposalRefused { count, error } => {
                let response = match error {
                    ProposeError::NotLeader { leader_hint } => {
                        self.counters.redirects += count as u64;
                        self.not_leader(leader_hint)
                    }
                    ProposeError::Backpressure | ProposeError::TransferInProgress { .. } => {
                        ClientResponse::Busy
                    }
                    other => ClientResponse::Error(other.to_string()),
                };
                for _ in 0..count {
                    match self.proposing.pop_front() {
                        Some(reply) => {
                            let _ = reply.send(response.clone());
                        }
                        None => break,
                    }
                }
            }
            Action::FollowerLogRegressed {
                follower,
                acknowledged_index,
                reported_last_index,
            } => {
                self.counters.follower_log_regressions += 1;
                tracing::error!(
                    follower,
                    acknowledged_index,
                    reported_last_index,
                    "follower lost log entries it had acknowledged as durable (its disk or \
                     write-ahead log lost synced data); replicating them to it again"
                );
            }
            Action::StorageRecovery(event) => super::status::log_storage_recovery(&event),
            Action::LogDiverged(divergence) => super::status::log_divergence(&divergence),
            Action::TakeSnapshot => self.take_snapshot(),
            Action::SendSnapshotChunk(chunk) => self.send_snapshot_chunk(chunk),
            Action::WriteSnapshotChunk {
                snapshot,
                offset,
                data,
            } => self.write_snapshot_chunk(snapshot, offset, data),
            Action::PersistSnapshot {
                id,
                snapshot,
                discard_log,
                membership,
            } => self.persist_snapshot(id, snapshot, discard_log, *membership),
            Action::RestoreSnapshot { snapshot } => self.restore_snapshot(snapshot),
            Action::Transfer { target, outcome } => {
                tracing::info!(target, ?outcome, "leadership transfer");
                if self.admin_capturing {
                    self.admin_captured = Some(AdminCaptured::Transfer(outcome));
                } else if outcome == concord::TransferOutcome::TimedOut
                    && matches!(&self.admin, Some(AdminOp { stage: AdminStage::Transfer { target: t }, .. }) if *t == target)
                {
                    self.admin_answer(AdminResponse::TimedOut(format!(
                        "node {target} did not take over within the transfer timeout; node {} \
                         leads on (is node {target} reachable and caught up?)",
                        self.node.id()
                    )));
                }
            }
            Action::RoleChanged { role, term } => {
                self.round_trips.clear();
                match role {
                    Role::Leader => tracing::info!(term, "became leader"),
                    Role::Candidate => tracing::info!(term, "starting an election"),
                    Role::PreCandidate => tracing::debug!(term, "starting a pre-election"),
                    Role::Follower => {
                        tracing::info!(term, leader = ?self.node.leader(), "became follower")
                    }
                }
                if role != Role::Leader && !self.waiting.is_empty() {
                    let count = self.waiting.len() as u64;
                    self.counters.unknown_outcomes += count;
                    for (_, _, reply) in std::mem::take(&mut self.waiting) {
                        let _ = reply.send(ClientResponse::Unknown);
                    }
                }
            }
        }
    }
}
