//! Client sessions: exactly-once execution of retried commands.
//!
//! A client that times out cannot tell whether its command was applied, so
//! it retries; without sessions a retried `append` would be applied twice.
//! Following the Raft thesis (§6.3), every client first registers a session
//! through the log, then numbers its commands `1, 2, 3, ...` and keeps at
//! most one command outstanding. The state machine remembers, per session,
//! the last sequence number it executed and the response it gave, so a
//! retry is answered from that cache instead of being executed again.
//!
//! The session table is bounded. Expiry is decided by the log alone, so
//! every replica evicts the same sessions at the same index: when a new
//! registration finds the table full, the session least recently used (by
//! log index of its last command) is dropped. A command for a session that
//! is not in the table, or with a sequence number below the session's last
//! one, is answered [`SessionResponse::SessionExpired`] and never executed:
//! it may be a late retry of a command that was already applied.
//!
//! Client ids are built from the log index of the registration entry and
//! the table's *id epoch*, the number of forced recoveries
//! ([`crate::recovery`]) applied so far: the epoch in the top
//! [`CLIENT_ID_EPOCH_BITS`] bits, the index in the low
//! [`CLIENT_ID_INDEX_BITS`] (see [`client_id`]). Before any forced
//! recovery the epoch is 0 and the id is the index itself. Ids are unique
//! and never reused, and a client id unknown to the table is known to have
//! expired (or never to have existed).
//!
//! **Across a forced recovery** ([`StateMachine::apply_forced_recovery`])
//! the table expires every session registered above the audit record's
//! `commit_index_before` and starts the next epoch, so a lost server's
//! session id names an expired session or none, never someone else's
//! (why that holds: the repository's `docs/design.md`, "Client sessions
//! across a forced recovery").
//!
//! Wire format of a command (what a client proposes):
//!
//! | bytes | meaning |
//! | --- | --- |
//! | `0x00` | register a new session |
//! | `0x01`, client id (u64 LE), sequence number (u64 LE), command | a command of a session |
//!
//! and of a response (what [`WithSessions`] returns from `apply`):
//!
//! | bytes | meaning |
//! | --- | --- |
//! | `0x00`, client id (u64 LE) | [`SessionResponse::Registered`] |
//! | `0x01`, response | [`SessionResponse::Ok`] |
//! | `0x02` | [`SessionResponse::SessionExpired`] |
//! | `0x03` | [`SessionResponse::Malformed`] |
//!
//! ```
//! use bytes::Bytes;
//! use concord::session::{self, SessionResponse, WithSessions};
//! use concord::state_machine::{RestoreError, StateMachine};
//!
//! #[derive(Default)]
//! struct Log(Vec<u8>);
//! impl StateMachine for Log {
//!     fn apply(&mut self, _index: u64, command: &[u8]) -> Bytes {
//!         self.0.extend_from_slice(command);
//!         Bytes::copy_from_slice(&self.0)
//!     }
//!     fn snapshot(&self) -> Bytes { Bytes::copy_from_slice(&self.0) }
//!     fn restore(&mut self, s: &[u8]) -> Result<(), RestoreError> { self.0 = s.to_vec(); Ok(()) }
//! }
//!
//! let mut sm = WithSessions::new(Log::default(), 16);
//! let registered = sm.apply(1, &session::encode_register());
//! let Ok(SessionResponse::Registered { client }) = SessionResponse::decode(&registered) else { panic!() };
//! let command = session::encode_command(client, 1, b"x");
//! let first = sm.apply(2, &command);
//! let retry = sm.apply(3, &command); // the same command committed twice
//! assert_eq!(first, retry);          // answered from the cache ...
//! assert_eq!(sm.inner().0, b"x");    // ... and executed once
//! ```

use std::collections::{BTreeMap, VecDeque};

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

use crate::recovery::ForcedRecovery;
use crate::state_machine::{RestoreError, SnapshotSource, StateMachine};
use crate::types::Index;

/// Identifies a client session: the log index of its registration entry,
/// with the id epoch in the high bits (see [`client_id`]).
pub type ClientId = u64;

/// Low bits of a [`ClientId`] that hold the registration's log index.
/// Registrations at an index that does not fit (2^48 entries: 89 years at
/// 100,000 entries a second) are refused rather than given an id that could
/// collide.
pub const CLIENT_ID_INDEX_BITS: u32 = 48;

/// High bits of a [`ClientId`] that hold the id epoch: the number of forced
/// recoveries applied before the registration. Past
/// [`CLIENT_ID_EPOCH_MAX`] forced recoveries registrations are refused.
pub const CLIENT_ID_EPOCH_BITS: u32 = 64 - CLIENT_ID_INDEX_BITS;

/// The largest id epoch a client id can carry.
pub const CLIENT_ID_EPOCH_MAX: u64 = (1 << CLIENT_ID_EPOCH_BITS) - 1;

const CLIENT_ID_INDEX_MASK: u64 = (1 << CLIENT_ID_INDEX_BITS) - 1;

/// The id of the session registered at log index `index` in id epoch
/// `epoch`, or `None` when either does not fit its bits. Epoch 0 gives the
/// index itself, the ids of tables that never saw a forced recovery.
pub fn client_id(epoch: u64, index: Index) -> Option<ClientId> {
    if epoch > CLIENT_ID_EPOCH_MAX || index > CLIENT_ID_INDEX_MASK {
        return None;
    }
    Some(epoch << CLIENT_ID_INDEX_BITS | index)
}

/// The (id epoch, registration log index) a client id was built from.
pub fn client_id_parts(client: ClientId) -> (u64, Index) {
    (
        client >> CLIENT_ID_INDEX_BITS,
        client & CLIENT_ID_INDEX_MASK,
    )
}

/// A client's number for one command: 1 for its first, then one more for
/// each following command.
pub type SequenceNumber = u64;

const TAG_REGISTER: u8 = 0;
const TAG_COMMAND: u8 = 1;
const COMMAND_HEADER_BYTES: usize = 1 + 8 + 8;

/// Encodes a request that registers a new session.
pub fn encode_register() -> Bytes {
    Bytes::from_static(&[TAG_REGISTER])
}

/// Encodes `command` as command number `seq` of session `client`.
pub fn encode_command(client: ClientId, seq: SequenceNumber, command: &[u8]) -> Bytes {
    let mut buffer = BytesMut::with_capacity(COMMAND_HEADER_BYTES + command.len());
    buffer.put_u8(TAG_COMMAND);
    buffer.put_u64_le(client);
    buffer.put_u64_le(seq);
    buffer.put_slice(command);
    buffer.freeze()
}

/// A decoded client request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientRequest<'a> {
    /// Open a new session.
    Register,
    /// A command of an existing session.
    Command {
        /// The session.
        client: ClientId,
        /// The command's sequence number within the session.
        seq: SequenceNumber,
        /// The state machine command.
        command: &'a [u8],
    },
}

/// A request or response could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
#[error("malformed session {what}: {reason}")]
pub struct DecodeError {
    /// "request", "response" or "snapshot".
    pub what: &'static str,
    /// What is wrong.
    pub reason: &'static str,
}

impl<'a> ClientRequest<'a> {
    /// Decodes a request encoded by [`encode_register`] or
    /// [`encode_command`].
    pub fn decode(bytes: &'a [u8]) -> Result<ClientRequest<'a>, DecodeError> {
        let error = |reason| DecodeError {
            what: "request",
            reason,
        };
        match bytes.first() {
            None => Err(error("empty")),
            Some(&TAG_REGISTER) if bytes.len() == 1 => Ok(ClientRequest::Register),
            Some(&TAG_REGISTER) => Err(error("trailing bytes after a registration")),
            Some(&TAG_COMMAND) => {
                if bytes.len() < COMMAND_HEADER_BYTES {
                    return Err(error("command header truncated"));
                }
                let client = read_u64(&bytes[1..9]);
                let seq = read_u64(&bytes[9..17]);
                Ok(ClientRequest::Command {
                    client,
                    seq,
                    command: &bytes[COMMAND_HEADER_BYTES..],
                })
            }
            Some(_) => Err(error("unknown tag")),
        }
    }
}

fn read_u64(bytes: &[u8]) -> u64 {
    let mut array = [0u8; 8];
    array.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(array)
}

/// What a replica answers to a client request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionResponse {
    /// A session was opened with this id.
    Registered {
        /// The new session's id.
        client: ClientId,
    },
    /// The command was executed (now or by an earlier copy of it); this is
    /// the state machine's response.
    Ok(Bytes),
    /// The session is unknown (expired) or the sequence number is below
    /// the session's last one. The command was not executed now; an
    /// earlier copy of it may have been.
    SessionExpired,
    /// The request could not be decoded; nothing was executed.
    Malformed,
}

impl SessionResponse {
    /// Encodes the response (see the module documentation).
    pub fn encode(&self) -> Bytes {
        match self {
            SessionResponse::Registered { client } => {
                let mut buffer = BytesMut::with_capacity(9);
                buffer.put_u8(0);
                buffer.put_u64_le(*client);
                buffer.freeze()
            }
            SessionResponse::Ok(response) => {
                let mut buffer = BytesMut::with_capacity(1 + response.len());
                buffer.put_u8(1);
                buffer.put_slice(response);
                buffer.freeze()
            }
            SessionResponse::SessionExpired => Bytes::from_static(&[2]),
            SessionResponse::Malformed => Bytes::from_static(&[3]),
        }
    }

    /// Decodes a response encoded by [`SessionResponse::encode`].
    pub fn decode(bytes: &[u8]) -> Result<SessionResponse, DecodeError> {
        let error = |reason| DecodeError {
            what: "response",
            reason,
        };
        match bytes.first() {
            None => Err(error("empty")),
            Some(0) if bytes.len() == 9 => Ok(SessionResponse::Registered {
                client: read_u64(&bytes[1..]),
            }),
            Some(0) => Err(error("registration is not 9 bytes")),
            Some(1) => Ok(SessionResponse::Ok(Bytes::copy_from_slice(&bytes[1..]))),
            Some(2) if bytes.len() == 1 => Ok(SessionResponse::SessionExpired),
            Some(3) if bytes.len() == 1 => Ok(SessionResponse::Malformed),
            Some(_) => Err(error("unknown tag or trailing bytes")),
        }
    }
}

/// How the session table admits a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission<'a, R> {
    /// A new command: execute it, then [`SessionTable::record`] the
    /// response.
    Execute,
    /// A retry of the last executed command: answer with its response.
    Duplicate(&'a R),
    /// Unknown session, or a sequence number below the last one: do not
    /// execute.
    Expired,
}

/// One session as a state machine that stores sessions one by one
/// reads and writes it ([`SessionTable::session`],
/// [`SessionTable::restore_session`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionRecord<R> {
    /// The sequence number of the session's last executed command.
    pub last_seq: SequenceNumber,
    /// The log index that last used the session (the eviction order).
    pub last_used: Index,
    /// The last executed command's response (`None` before the first).
    pub response: Option<R>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Session<R> {
    last_seq: SequenceNumber,
    response: Option<R>,
    last_used: Index,
}

/// The bounded table of client sessions, updated only by committed log
/// entries so that every replica holds the same table.
///
/// `R` is the cached response type. Two tables are equal when they hold
/// the same sessions and counters (the eviction queue's stale entries do
/// not count: they never change which session is evicted).
#[derive(Clone, Debug)]
pub struct SessionTable<R> {
    sessions: BTreeMap<ClientId, Session<R>>,
    /// (last used index, client) of every use, oldest first: the eviction
    /// order. An entry whose session is gone or was used again later is
    /// stale and skipped; every held session has its current entry. A
    /// queue and not an ordered set because uses come in log order, so
    /// noting one is a push (a set's remove and insert cost about 450
    /// instructions a put); stale entries are swept out when they pass
    /// the live ones ([`LRU_SLACK`]).
    lru: VecDeque<(Index, ClientId)>,
    /// Whether `lru` is in order: false after a use was noted at an
    /// index below the last one (a session restored from storage), until
    /// the next eviction rebuilds it.
    lru_sorted: bool,
    capacity: usize,
    evictions: u64,
    /// Forced recoveries applied: the high bits of the next ids.
    epoch: u64,
    /// Most [`SessionTable::bytes`] held after a command is recorded
    /// (`usize::MAX`: no bound but the session count).
    bytes_max: usize,
    /// Bytes of the cached responses held, summed.
    response_bytes: usize,
}

/// What one session is counted for in [`SessionTable::bytes`], besides its
/// cached response: its entry in the table's ordered map (id, last
/// sequence number, last use, the response's handle), with the map's node
/// overhead, and its share of the eviction queue (at most two 16-byte
/// entries per session, and a few dozen for the whole table).
pub const SESSION_ENTRY_BYTES: usize = 96;

/// Stale entries the eviction queue may hold beyond one per session
/// before it is rebuilt: it holds at most twice the sessions plus this
/// many entries, and a rebuild (a copy and a sort of one entry per
/// session) is paid for by the pushes since the last one.
const LRU_SLACK: usize = 64;

impl<R: PartialEq> PartialEq for SessionTable<R> {
    fn eq(&self, other: &Self) -> bool {
        self.sessions == other.sessions
            && self.capacity == other.capacity
            && self.evictions == other.evictions
            && self.epoch == other.epoch
            && self.bytes_max == other.bytes_max
            && self.response_bytes == other.response_bytes
    }
}

impl<R: Eq> Eq for SessionTable<R> {}

impl<R> SessionTable<R> {
    /// A table holding at most `capacity` sessions (at least 1).
    pub fn new(capacity: usize) -> Self {
        SessionTable {
            sessions: BTreeMap::new(),
            lru: VecDeque::new(),
            lru_sorted: true,
            capacity: capacity.max(1),
            evictions: 0,
            epoch: 0,
            bytes_max: usize::MAX,
            response_bytes: 0,
        }
    }

    /// A table holding at most `capacity` sessions (at least 1) and, after
    /// each recorded command, at most `bytes_max` [`bytes`](Self::bytes):
    /// past it the least recently used sessions other than the one just
    /// used are evicted, as for a registration into a full table. One
    /// session whose response alone is over `bytes_max` is kept (its
    /// client must be able to read its answer); the bound is then that
    /// response.
    pub fn with_bytes_max(capacity: usize, bytes_max: usize) -> Self {
        let mut table = SessionTable::new(capacity);
        table.bytes_max = bytes_max;
        table
    }

    /// The bytes the table is counted for: [`SESSION_ENTRY_BYTES`] per
    /// session plus every cached response's bytes.
    pub fn bytes(&self) -> usize {
        self.sessions.len() * SESSION_ENTRY_BYTES + self.response_bytes
    }

    /// The bound on [`bytes`](Self::bytes) (see
    /// [`with_bytes_max`](Self::with_bytes_max)).
    pub fn bytes_max(&self) -> usize {
        self.bytes_max
    }

    /// The id epoch: forced recoveries applied so far. New sessions' ids
    /// carry it (see [`client_id`]).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Most sessions held at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Sessions held now.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether no session is held.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Whether session `client` is held.
    pub fn contains(&self, client: ClientId) -> bool {
        self.sessions.contains_key(&client)
    }

    /// Sessions evicted so far to make room for new ones.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }
}

impl<R: AsRef<[u8]>> SessionTable<R> {
    /// Removes session `client` (evicted or expired), keeping the byte
    /// count.
    fn drop_session(&mut self, client: ClientId) -> bool {
        match self.sessions.remove(&client) {
            Some(session) => {
                // Its entry in the eviction queue is stale from now on.
                self.response_bytes -= session.response.as_ref().map_or(0, |r| r.as_ref().len());
                true
            }
            None => false,
        }
    }

    /// Evicts least recently used sessions other than `keep` while the
    /// table is over its byte bound; the evicted ids.
    fn evict_over_bytes(&mut self, keep: ClientId) -> Vec<ClientId> {
        let mut evicted = Vec::new();
        while self.bytes() > self.bytes_max {
            let Some(client) = self.least_recently_used(keep) else {
                break;
            };
            self.drop_session(client);
            self.evictions += 1;
            evicted.push(client);
        }
        evicted
    }

    /// Opens a session for the registration committed at `index`; its id is
    /// [`client_id`] of the table's epoch and `index`. Evicts the least
    /// recently used session first if the table is full, returning the
    /// evicted id. `None` (nothing changed) when the id does not fit: the
    /// index is past 2^[`CLIENT_ID_INDEX_BITS`] or the epoch past
    /// [`CLIENT_ID_EPOCH_MAX`].
    pub fn register(&mut self, index: Index) -> Option<(ClientId, Option<ClientId>)> {
        let id = client_id(self.epoch, index)?;
        let mut evicted = None;
        // Registering twice at one index cannot happen with a real log;
        // keep the table consistent anyway.
        self.drop_session(id);
        if self.sessions.len() >= self.capacity {
            if let Some(client) = self.least_recently_used(id) {
                self.drop_session(client);
                self.evictions += 1;
                evicted = Some(client);
            }
        }
        self.sessions.insert(
            id,
            Session {
                last_seq: 0,
                response: None,
                last_used: index,
            },
        );
        self.note_use(index, id);
        Some((id, evicted))
    }

    /// Applies a forced recovery whose survivor knew everything up to
    /// `commit_index_before` committed: expires every session registered
    /// above it (the lost servers may have given the same index to another
    /// client) and starts the next id epoch, so no later registration
    /// reuses an id the lost servers handed out. Returns the expired ids.
    pub fn force_recovery(&mut self, commit_index_before: Index) -> Vec<ClientId> {
        let expired: Vec<ClientId> = self
            .sessions
            .keys()
            .copied()
            .filter(|client| client_id_parts(*client).1 > commit_index_before)
            .collect();
        for client in &expired {
            self.drop_session(*client);
        }
        // Saturating: past the last epoch registrations are refused (see
        // `register`), so the top epoch is never shared either.
        self.epoch = self.epoch.saturating_add(1);
        expired
    }

    /// Decides whether command `seq` of session `client` must be executed.
    pub fn admit(&self, client: ClientId, seq: SequenceNumber) -> Admission<'_, R> {
        match self.sessions.get(&client) {
            None => Admission::Expired,
            Some(session) if seq > session.last_seq => Admission::Execute,
            Some(session) if seq == session.last_seq => match &session.response {
                Some(response) => Admission::Duplicate(response),
                None => Admission::Expired,
            },
            Some(_) => Admission::Expired,
        }
    }

    /// Records that command `seq` of session `client`, committed at
    /// `index`, was executed with `response`. Ignored for an unknown
    /// session. Returns the sessions evicted to keep the table within its
    /// byte bound (none without one).
    pub fn record(
        &mut self,
        index: Index,
        client: ClientId,
        seq: SequenceNumber,
        response: R,
    ) -> Vec<ClientId> {
        let mut evicted = Vec::new();
        if let Some(session) = self.sessions.get_mut(&client) {
            let used_before = session.last_used;
            session.last_used = session.last_used.max(index);
            let used = session.last_used;
            session.last_seq = seq;
            let old = session.response.as_ref().map_or(0, |r| r.as_ref().len());
            self.response_bytes = self.response_bytes - old + response.as_ref().len();
            session.response = Some(response);
            if used != used_before {
                self.note_use(used, client);
            }
            if self.bytes_max != usize::MAX {
                evicted = self.evict_over_bytes(client);
            }
        }
        evicted
    }

    /// Session `client` as a [`SessionRecord`], for a state machine that
    /// stores its sessions one by one (`None`: not held).
    pub fn session(&self, client: ClientId) -> Option<SessionRecord<&R>> {
        self.sessions.get(&client).map(|session| SessionRecord {
            last_seq: session.last_seq,
            last_used: session.last_used,
            response: session.response.as_ref(),
        })
    }

    /// Puts back a session read from storage (see
    /// [`session`](Self::session)), replacing any of the same id. Refuses
    /// one past the table's epoch or capacity, which no table of this
    /// build wrote.
    pub fn restore_session(
        &mut self,
        client: ClientId,
        record: SessionRecord<R>,
    ) -> Result<(), String> {
        if client_id_parts(client).0 > self.epoch {
            return Err(format!(
                "session {client:#x} is of id epoch {}, past the table's epoch {}",
                client_id_parts(client).0,
                self.epoch
            ));
        }
        self.drop_session(client);
        if self.sessions.len() >= self.capacity {
            return Err(format!(
                "more than the table's capacity of {} sessions",
                self.capacity
            ));
        }
        self.response_bytes += record.response.as_ref().map_or(0, |r| r.as_ref().len());
        let last_used = record.last_used;
        self.sessions.insert(
            client,
            Session {
                last_seq: record.last_seq,
                response: record.response,
                last_used,
            },
        );
        self.note_use(last_used, client);
        Ok(())
    }

    /// Sets the id epoch and the evictions count of a table read from
    /// storage (see [`epoch`](Self::epoch), [`evictions`](Self::evictions)).
    pub fn restore_counters(&mut self, epoch: u64, evictions: u64) {
        self.epoch = epoch;
        self.evictions = evictions;
    }

    /// Marks session `client` used at `index` (a duplicate was answered),
    /// so it is not the next to be evicted.
    pub fn touch(&mut self, index: Index, client: ClientId) {
        if let Some(session) = self.sessions.get_mut(&client) {
            if index > session.last_used {
                session.last_used = index;
                self.note_use(index, client);
            }
        }
    }

    /// Notes in the eviction queue that session `client` (held, or about
    /// to be) was last used at `index`.
    fn note_use(&mut self, index: Index, client: ClientId) {
        if self.lru.back().is_some_and(|&last| last > (index, client)) {
            self.lru_sorted = false;
        }
        self.lru.push_back((index, client));
        if self.lru.len() > 2 * self.sessions.len() + LRU_SLACK {
            self.sweep_lru();
        }
    }

    /// Whether queue entry `(index, client)` is its session's current one.
    fn is_current(&self, (index, client): (Index, ClientId)) -> bool {
        self.sessions
            .get(&client)
            .is_some_and(|session| session.last_used == index)
    }

    /// Rebuilds the eviction queue from the sessions: one current entry
    /// each, in order. Cheaper than checking each queued entry against
    /// the table (a lookup per entry): a copy and a sort of as many
    /// entries as sessions, once per at least as many pushes.
    fn sweep_lru(&mut self) {
        let mut lru = std::mem::take(&mut self.lru);
        lru.clear();
        lru.extend(
            self.sessions
                .iter()
                .map(|(&client, session)| (session.last_used, client)),
        );
        lru.make_contiguous().sort_unstable();
        self.lru = lru;
        self.lru_sorted = true;
    }

    /// The least recently used session other than `keep` (by last use,
    /// then id: the order every replica evicts in), if any.
    fn least_recently_used(&mut self, keep: ClientId) -> Option<ClientId> {
        if !self.lru_sorted {
            self.sweep_lru();
        }
        while let Some(&front) = self.lru.front() {
            if self.is_current(front) {
                break;
            }
            self.lru.pop_front();
        }
        let found = self
            .lru
            .iter()
            .find(|&&(index, client)| client != keep && self.is_current((index, client)))
            .map(|&(_, client)| client);
        debug_assert_eq!(
            found,
            self.sessions
                .iter()
                .filter(|&(&client, _)| client != keep)
                .map(|(&client, session)| (session.last_used, client))
                .min()
                .map(|(_, client)| client),
            "the queue's least recently used session is the table's"
        );
        found
    }
}

/// What [`WithSessions::apply_request`] did with a request, in more detail
/// than the response the client sees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionOutcome {
    /// A session was opened; `evicted` names the session dropped for it.
    Registered {
        /// The new session.
        client: ClientId,
        /// The session evicted to make room, if any.
        evicted: Option<ClientId>,
    },
    /// The command was executed now, with this response.
    Executed(Bytes),
    /// The command was a retry, answered from the cache.
    Cached(Bytes),
    /// Not executed: unknown session or old sequence number.
    Expired,
    /// Not decodable; not executed.
    Malformed,
    /// A registration refused because its id would not fit (see
    /// [`SessionTable::register`]); answered
    /// [`SessionResponse::SessionExpired`].
    RegistrationRefused,
}

impl SessionOutcome {
    /// The response the client is sent.
    pub fn response(&self) -> SessionResponse {
        match self {
            SessionOutcome::Registered { client, .. } => {
                SessionResponse::Registered { client: *client }
            }
            SessionOutcome::Executed(response) | SessionOutcome::Cached(response) => {
                SessionResponse::Ok(response.clone())
            }
            SessionOutcome::Expired | SessionOutcome::RegistrationRefused => {
                SessionResponse::SessionExpired
            }
            SessionOutcome::Malformed => SessionResponse::Malformed,
        }
    }
}

/// Wraps a state machine so that its commands are executed exactly once per
/// session and sequence number. Commands are encoded with
/// [`encode_register`] and [`encode_command`]; responses are
/// [`SessionResponse`]s, encoded.
#[derive(Clone, Debug)]
pub struct WithSessions<S> {
    inner: S,
    table: SessionTable<Bytes>,
    /// The sessions one request changed, which this machine does not
    /// store one by one: kept between requests so that an apply does not
    /// allocate a list to throw away.
    changed: Vec<ClientId>,
}

impl<S: StateMachine> WithSessions<S> {
    /// Wraps `inner` with a session table of at most `max_sessions`
    /// sessions.
    pub fn new(inner: S, max_sessions: usize) -> Self {
        WithSessions {
            inner,
            table: SessionTable::new(max_sessions),
            changed: Vec::new(),
        }
    }

    /// Wraps `inner` with a session table of at most `max_sessions`
    /// sessions and `bytes_max` bytes (see [`SessionTable::with_bytes_max`]).
    pub fn with_limits(inner: S, max_sessions: usize, bytes_max: usize) -> Self {
        WithSessions {
            inner,
            table: SessionTable::with_bytes_max(max_sessions, bytes_max),
            changed: Vec::new(),
        }
    }

    /// The wrapped state machine.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The wrapped state machine, mutably.
    pub fn inner_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The session table.
    pub fn sessions(&self) -> &SessionTable<Bytes> {
        &self.table
    }

    /// Applies one committed request and says what happened.
    pub fn apply_request(&mut self, index: Index, request: &[u8]) -> SessionOutcome {
        let inner = &mut self.inner;
        self.changed.clear();
        let applied = self
            .table
            .apply_request(index, request, &mut self.changed, |command| {
                Ok::<_, std::convert::Infallible>(inner.apply(index, command))
            });
        match applied {
            Ok(outcome) => outcome,
        }
    }
}

impl SessionTable<Bytes> {
    /// Applies one committed session request (see [`ClientRequest`]):
    /// opens a session, or runs a command through `execute` once per
    /// session and sequence number, answering a retry from the cache.
    /// Pushes to `changed` every session whose record it changed or
    /// dropped (a state machine that stores its sessions one by one writes
    /// those back). An `Err` from `execute` is returned as it is, the
    /// table unchanged by the command.
    pub fn apply_request<E>(
        &mut self,
        index: Index,
        request: &[u8],
        changed: &mut Vec<ClientId>,
        execute: impl FnOnce(&[u8]) -> Result<Bytes, E>,
    ) -> Result<SessionOutcome, E> {
        Ok(match ClientRequest::decode(request) {
            Err(_) => SessionOutcome::Malformed,
            Ok(ClientRequest::Register) => match self.register(index) {
                Some((client, evicted)) => {
                    changed.push(client);
                    changed.extend(evicted);
                    SessionOutcome::Registered { client, evicted }
                }
                None => SessionOutcome::RegistrationRefused,
            },
            Ok(ClientRequest::Command {
                client,
                seq,
                command,
            }) => match self.admit(client, seq) {
                Admission::Expired => SessionOutcome::Expired,
                Admission::Duplicate(response) => {
                    let response = response.clone();
                    self.touch(index, client);
                    changed.push(client);
                    SessionOutcome::Cached(response)
                }
                Admission::Execute => {
                    let response = execute(command)?;
                    changed.push(client);
                    changed.extend(self.record(index, client, seq, response.clone()));
                    SessionOutcome::Executed(response)
                }
            },
        })
    }
}

/// The session layer's snapshot: the table `table` in front of the wrapped
/// state machine's snapshot `inner` (see [`WithSessions`]'s `snapshot`).
fn encode_snapshot(table: &SessionTable<Bytes>, inner: &[u8]) -> Bytes {
    // Sized exactly up front: the buffer never regrows while filling.
    let sessions_bytes: usize = table
        .sessions
        .values()
        .map(|session| 8 * 3 + 1 + session.response.as_ref().map_or(0, |r| 4 + r.len()))
        .sum();
    let size_bytes = SNAPSHOT_HEADER_BYTES + 8 + sessions_bytes + 8 + inner.len();
    let mut buffer = BytesMut::with_capacity(size_bytes);
    buffer.put_u64_le(SNAPSHOT_MARKER);
    buffer.put_u8(SNAPSHOT_VERSION);
    buffer.put_u64_le(table.epoch);
    buffer.put_u64_le(table.sessions.len() as u64);
    for (client, session) in &table.sessions {
        buffer.put_u64_le(*client);
        buffer.put_u64_le(session.last_seq);
        buffer.put_u64_le(session.last_used);
        match &session.response {
            None => buffer.put_u8(0),
            Some(response) => {
                buffer.put_u8(1);
                buffer.put_u32_le(response.len() as u32);
                buffer.put_slice(response);
            }
        }
    }
    buffer.put_u64_le(table.evictions);
    buffer.put_slice(inner);
    debug_assert_eq!(buffer.len(), size_bytes);
    buffer.freeze()
}

impl<S: StateMachine> StateMachine for WithSessions<S> {
    fn apply(&mut self, index: Index, command: &[u8]) -> Bytes {
        match self.apply_request(index, command) {
            // The response moves into the answer (no second handle).
            SessionOutcome::Executed(response) | SessionOutcome::Cached(response) => {
                SessionResponse::Ok(response).encode()
            }
            outcome => outcome.response().encode(),
        }
    }

    /// Reads need no session (they change nothing, so a retry is
    /// harmless): the request is the inner state machine's, unwrapped.
    fn query(&self, request: &[u8]) -> Option<Bytes> {
        self.inner.query(request)
    }

    fn sessions(&self) -> Option<usize> {
        Some(self.table.len())
    }

    /// Expires the sessions the lost servers may share ids with and starts
    /// the next id epoch ([`SessionTable::force_recovery`]), then passes
    /// the recovery on to the wrapped state machine.
    fn apply_forced_recovery(&mut self, index: Index, audit: &ForcedRecovery) {
        self.table.force_recovery(audit.commit_index_before);
        self.inner.apply_forced_recovery(index, audit);
    }

    /// Layout (version 1): [`SNAPSHOT_MARKER`] (u64 LE), the version byte
    /// 1, the id epoch (u64 LE), the session count (u64 LE), then per
    /// session client id, last sequence number, last used index (u64 LE
    /// each), a response flag byte and, if set, the response length (u32
    /// LE) and bytes; then the evictions count (u64 LE) and the inner
    /// snapshot. Version 0 (before id epochs) is the same from the session
    /// count on, with no marker, version or epoch; it is still restored,
    /// with epoch 0.
    fn snapshot(&self) -> Bytes {
        encode_snapshot(&self.table, &self.inner.snapshot())
    }

    /// The wrapped state machine's copy, and a copy of the table (bounded
    /// by its limits), encoded together off the loop.
    fn snapshot_source(&self) -> Option<SnapshotSource> {
        let inner = self.inner.snapshot_source()?;
        let table = self.table.clone();
        Some(Box::new(move || encode_snapshot(&table, &inner())))
    }

    /// The session table (canonical: its maps are ordered) in front of
    /// the wrapped state machine's canonical state.
    fn canonical_state(&self) -> Bytes {
        encode_snapshot(&self.table, &self.inner.canonical_state())
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
        let mut reader = Reader { bytes: snapshot };
        let mut epoch = 0;
        let mut count = reader.u64()?;
        if count == SNAPSHOT_MARKER {
            match reader.u8()? {
                SNAPSHOT_VERSION => {}
                version => {
                    return Err(RestoreError::new(format!(
                        "session snapshot version {version} is not known to this build (it reads versions 0 and {SNAPSHOT_VERSION}); restore it with a newer build"
                    )))
                }
            }
            epoch = reader.u64()?;
            count = reader.u64()?;
        }
        let mut table = SessionTable::with_bytes_max(self.table.capacity, self.table.bytes_max);
        table.epoch = epoch;
        for _ in 0..count {
            let client = reader.u64()?;
            let last_seq = reader.u64()?;
            let last_used = reader.u64()?;
            let response = match reader.u8()? {
                0 => None,
                1 => {
                    let length = reader.u32()? as usize;
                    Some(Bytes::copy_from_slice(reader.take(length)?))
                }
                _ => return Err(RestoreError::new("bad response flag in session snapshot")),
            };
            let record = SessionRecord {
                last_seq,
                last_used,
                response,
            };
            table
                .restore_session(client, record)
                .map_err(|reason| RestoreError::new(format!("session snapshot: {reason}")))?;
        }
        table.evictions = reader.u64()?;
        self.inner.restore(reader.bytes)?;
        self.table = table;
        Ok(())
    }
}

/// First eight bytes of a versioned session snapshot. A version 0 snapshot
/// starts with its session count, and one claiming `u64::MAX` sessions was
/// never restorable (no table holds that many, and the bytes cannot), so
/// the marker cannot be mistaken for one.
pub const SNAPSHOT_MARKER: u64 = u64::MAX;

/// The session snapshot version written now (see
/// [`WithSessions::snapshot`](StateMachine::snapshot)).
pub const SNAPSHOT_VERSION: u8 = 1;

/// Marker, version byte, epoch.
const SNAPSHOT_HEADER_BYTES: usize = 8 + 1 + 8;

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, length: usize) -> Result<&'a [u8], RestoreError> {
        if self.bytes.len() < length {
            return Err(RestoreError::new("session snapshot truncated"));
        }
        let (head, tail) = self.bytes.split_at(length);
        self.bytes = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, RestoreError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, RestoreError> {
        let mut array = [0u8; 4];
        array.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(array))
    }
    fn u64(&mut self) -> Result<u64, RestoreError> {
        Ok(read_u64(self.take(8)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Appends every command to a list; responds with the list length.
    #[derive(Clone, Debug, Default)]
    struct Appender(Vec<Vec<u8>>);

    impl StateMachine for Appender {
        fn apply(&mut self, _index: Index, command: &[u8]) -> Bytes {
            self.0.push(command.to_vec());
            Bytes::copy_from_slice(&(self.0.len() as u64).to_le_bytes())
        }
        fn snapshot(&self) -> Bytes {
            let mut buffer = BytesMut::new();
            for command in &self.0 {
                buffer.put_u32_le(command.len() as u32);
                buffer.put_slice(command);
            }
            buffer.freeze()
        }
        fn restore(&mut self, mut snapshot: &[u8]) -> Result<(), RestoreError> {
            self.0.clear();
            while !snapshot.is_empty() {
                if snapshot.len() < 4 {
                    return Err(RestoreError::new("truncated"));
                }
                let length =
                    u32::from_le_bytes([snapshot[0], snapshot[1], snapshot[2], snapshot[3]])
                        as usize;
                snapshot = &snapshot[4..];
                if snapshot.len() < length {
                    return Err(RestoreError::new("truncated"));
                }
                self.0.push(snapshot[..length].to_vec());
                snapshot = &snapshot[length..];
            }
            Ok(())
        }
    }

    fn register(sm: &mut WithSessions<Appender>, index: Index) -> ClientId {
        match SessionResponse::decode(&sm.apply(index, &encode_register())) {
            Ok(SessionResponse::Registered { client }) => client,
            other => panic!("registration failed: {other:?}"),
        }
    }

    /// A table of `capacity` sessions holding two, registered at indices
    /// 1 and 2.
    fn two_sessions(capacity: usize) -> (WithSessions<Appender>, ClientId, ClientId) {
        let mut sm = WithSessions::new(Appender::default(), capacity);
        let a = register(&mut sm, 1);
        let b = register(&mut sm, 2);
        (sm, a, b)
    }

    /// Asserts that a registration at `index` (the new client's id) evicts
    /// `evicted`.
    fn assert_registration_evicts(
        sm: &mut WithSessions<Appender>,
        index: Index,
        evicted: ClientId,
    ) {
        assert_eq!(
            sm.apply_request(index, &encode_register()),
            SessionOutcome::Registered {
                client: index,
                evicted: Some(evicted)
            }
        );
    }

    #[test]
    fn request_encoding_round_trips() {
        assert_eq!(
            ClientRequest::decode(&encode_register()),
            Ok(ClientRequest::Register)
        );
        let bytes = encode_command(7, 9, b"hello");
        assert_eq!(
            ClientRequest::decode(&bytes),
            Ok(ClientRequest::Command {
                client: 7,
                seq: 9,
                command: b"hello"
            })
        );
        assert!(ClientRequest::decode(&[]).is_err());
        assert!(ClientRequest::decode(&[1, 2, 3]).is_err());
        assert!(ClientRequest::decode(&[9]).is_err());
        assert!(ClientRequest::decode(&[0, 0]).is_err());
    }

    #[test]
    fn response_encoding_round_trips() {
        for response in [
            SessionResponse::Registered { client: 42 },
            SessionResponse::Ok(Bytes::from_static(b"value")),
            SessionResponse::Ok(Bytes::new()),
            SessionResponse::SessionExpired,
            SessionResponse::Malformed,
        ] {
            assert_eq!(SessionResponse::decode(&response.encode()), Ok(response));
        }
        assert!(SessionResponse::decode(&[]).is_err());
        assert!(SessionResponse::decode(&[0, 1]).is_err());
        assert!(SessionResponse::decode(&[7]).is_err());
    }

    #[test]
    fn client_id_is_the_registration_index() {
        let mut sm = WithSessions::new(Appender::default(), 4);
        assert_eq!(register(&mut sm, 5), 5);
        assert_eq!(register(&mut sm, 9), 9);
        assert_eq!(sm.sessions().len(), 2);
    }

    #[test]
    fn a_retried_command_is_executed_once_and_answered_from_the_cache() {
        let mut sm = WithSessions::new(Appender::default(), 4);
        let client = register(&mut sm, 1);
        let command = encode_command(client, 1, b"a");
        let first = sm.apply(2, &command);
        assert_eq!(
            sm.apply_request(3, &command),
            SessionOutcome::Cached(Bytes::copy_from_slice(&1u64.to_le_bytes()))
        );
        assert_eq!(sm.apply(4, &command), first);
        assert_eq!(sm.inner().0, vec![b"a".to_vec()]);
        // The next sequence number is executed.
        let second = sm.apply_request(5, &encode_command(client, 2, b"b"));
        assert!(matches!(second, SessionOutcome::Executed(_)));
        assert_eq!(sm.inner().0.len(), 2);
    }

    #[test]
    fn an_older_sequence_number_is_expired_not_reapplied() {
        let mut sm = WithSessions::new(Appender::default(), 4);
        let client = register(&mut sm, 1);
        sm.apply(2, &encode_command(client, 1, b"a"));
        sm.apply(3, &encode_command(client, 2, b"b"));
        assert_eq!(
            sm.apply_request(4, &encode_command(client, 1, b"a")),
            SessionOutcome::Expired
        );
        assert_eq!(sm.inner().0.len(), 2);
    }

    #[test]
    fn sequence_numbers_may_skip_after_a_given_up_command() {
        let mut sm = WithSessions::new(Appender::default(), 4);
        let client = register(&mut sm, 1);
        assert!(matches!(
            sm.apply_request(2, &encode_command(client, 3, b"c")),
            SessionOutcome::Executed(_)
        ));
        // A late copy of command 2, which the client gave up on, arrives.
        assert_eq!(
            sm.apply_request(3, &encode_command(client, 2, b"b")),
            SessionOutcome::Expired
        );
    }

    #[test]
    fn unknown_session_is_expired() {
        let mut sm = WithSessions::new(Appender::default(), 4);
        assert_eq!(
            sm.apply_request(1, &encode_command(99, 1, b"a")),
            SessionOutcome::Expired
        );
        assert!(sm.inner().0.is_empty());
        assert_eq!(
            SessionResponse::decode(&sm.apply(2, &encode_command(99, 1, b"a"))),
            Ok(SessionResponse::SessionExpired)
        );
    }

    #[test]
    fn a_table_over_its_byte_bound_evicts_the_least_recently_used_other_session() {
        // Appender answers 8 bytes: each session with a response counts
        // SESSION_ENTRY_BYTES + 8.
        let per_session = SESSION_ENTRY_BYTES + 8;
        let mut sm = WithSessions::with_limits(Appender::default(), 16, 2 * per_session);
        let a = register(&mut sm, 1);
        let b = register(&mut sm, 2);
        let c = register(&mut sm, 3);
        // Three sessions without responses fit (3 * 96 < 2 * 104 is false:
        // the bound is only enforced when a command is recorded).
        assert_eq!(sm.sessions().bytes(), 3 * SESSION_ENTRY_BYTES);
        sm.apply(4, &encode_command(c, 1, b"c1"));
        // 3 * 96 + 8 = 296 > 208: the least recently used (a, then b)
        // go until the table fits; c, just used, stays.
        assert!(!sm.sessions().contains(a));
        assert!(sm.sessions().contains(b) && sm.sessions().contains(c));
        assert_eq!(sm.sessions().bytes(), SESSION_ENTRY_BYTES + per_session);
        assert!(sm.sessions().bytes() <= sm.sessions().bytes_max());
        assert_eq!(sm.sessions().evictions(), 1);
        // The evicted session's retry is refused, not applied again.
        assert_eq!(
            sm.apply_request(5, &encode_command(a, 1, b"a1")),
            SessionOutcome::Expired
        );
        // A response alone over the bound keeps its session.
        let mut tiny = WithSessions::with_limits(Appender::default(), 16, 1);
        let only = register(&mut tiny, 1);
        tiny.apply(2, &encode_command(only, 1, b"x"));
        assert!(tiny.sessions().contains(only));
        assert_eq!(tiny.sessions().bytes(), per_session);
        // The byte count survives a snapshot.
        let mut restored = WithSessions::with_limits(Appender::default(), 16, 2 * per_session);
        restored.restore(&sm.snapshot()).unwrap();
        assert_eq!(restored.sessions(), sm.sessions());
        assert_eq!(restored.sessions().bytes(), sm.sessions().bytes());
    }

    #[test]
    fn malformed_request_is_answered_and_not_executed() {
        let mut sm = WithSessions::new(Appender::default(), 4);
        assert_eq!(sm.apply_request(1, &[0xff]), SessionOutcome::Malformed);
        assert_eq!(
            SessionResponse::decode(&sm.apply(2, &[])),
            Ok(SessionResponse::Malformed)
        );
        assert!(sm.inner().0.is_empty());
    }

    #[test]
    fn full_table_evicts_the_least_recently_used_session_by_log_index() {
        let (mut sm, a, b) = two_sessions(2);
        // `a` is used after `b` registered, so `b` is least recently used.
        sm.apply(3, &encode_command(a, 1, b"a1"));
        assert_registration_evicts(&mut sm, 4, b);
        assert!(sm.sessions().contains(a));
        assert!(!sm.sessions().contains(b));
        assert_eq!(sm.sessions().evictions(), 1);
        // The evicted session's retry is not re-applied.
        assert_eq!(
            sm.apply_request(5, &encode_command(b, 1, b"b1")),
            SessionOutcome::Expired
        );
        assert_eq!(sm.inner().0, vec![b"a1".to_vec()]);
    }

    /// The eviction order kept the obvious way: every held session's last
    /// use, the least (then the lowest id) evicted first.
    #[derive(Default)]
    struct ReferenceTable {
        last_used: BTreeMap<ClientId, Index>,
    }

    impl ReferenceTable {
        fn least_recently_used(&self, keep: ClientId) -> Option<ClientId> {
            self.last_used
                .iter()
                .filter(|&(&client, _)| client != keep)
                .map(|(&client, &used)| (used, client))
                .min()
                .map(|(_, client)| client)
        }
    }

    #[test]
    fn eviction_follows_last_use_through_uses_and_restores() {
        use rand::{Rng, SeedableRng};
        const CAPACITY: usize = 8;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for round in 0..20 {
            // A byte bound that evicts on some records too.
            let bytes_max = CAPACITY * SESSION_ENTRY_BYTES + rng.gen_range(0..64);
            let mut table: SessionTable<Vec<u8>> =
                SessionTable::with_bytes_max(CAPACITY, bytes_max);
            let mut reference = ReferenceTable::default();
            let mut evictions_seen = 0u64;
            for index in 1..=2_000u64 {
                let held: Vec<ClientId> = reference.last_used.keys().copied().collect();
                match rng.gen_range(0..10) {
                    0..=1 => {
                        let expected_evicted = if held.len() >= CAPACITY {
                            reference.least_recently_used(u64::MAX)
                        } else {
                            None
                        };
                        let (id, evicted) = table.register(index).expect("ids fit");
                        assert_eq!(evicted, expected_evicted, "round {round} index {index}");
                        if let Some(gone) = evicted {
                            reference.last_used.remove(&gone);
                            evictions_seen += 1;
                        }
                        reference.last_used.insert(id, index);
                    }
                    2..=7 if !held.is_empty() => {
                        let client = held[rng.gen_range(0..held.len())];
                        let response = vec![0u8; rng.gen_range(0..32)];
                        let evicted = table.record(index, client, index, response);
                        reference.last_used.insert(client, index);
                        for gone in evicted {
                            assert_eq!(
                                Some(gone),
                                reference.least_recently_used(client),
                                "round {round} index {index}"
                            );
                            reference.last_used.remove(&gone);
                            evictions_seen += 1;
                        }
                    }
                    8 if !held.is_empty() => {
                        let client = held[rng.gen_range(0..held.len())];
                        table.touch(index, client);
                        reference.last_used.insert(client, index);
                    }
                    9 => {
                        // A replica restored from storage, sessions in id
                        // order (not last-use order), then carries on.
                        let mut restored: SessionTable<Vec<u8>> =
                            SessionTable::with_bytes_max(CAPACITY, bytes_max);
                        restored.restore_counters(table.epoch(), table.evictions());
                        for &client in &held {
                            let record = table.session(client).expect("held");
                            let record = SessionRecord {
                                last_seq: record.last_seq,
                                last_used: record.last_used,
                                response: record.response.cloned(),
                            };
                            restored.restore_session(client, record).expect("fits");
                        }
                        assert_eq!(restored, table);
                        table = restored;
                    }
                    _ => {}
                }
                assert_eq!(table.len(), reference.last_used.len());
                assert_eq!(table.evictions(), evictions_seen);
                assert!(
                    table.lru.len() <= 2 * table.len() + LRU_SLACK,
                    "the queue stays bounded: {} entries for {} sessions",
                    table.lru.len(),
                    table.len()
                );
            }
        }
    }

    #[test]
    fn a_cached_answer_refreshes_the_session() {
        let (mut sm, a, b) = two_sessions(2);
        sm.apply(3, &encode_command(a, 1, b"a1"));
        sm.apply(4, &encode_command(b, 1, b"b1"));
        // A retry of a's command at index 5 makes b the least recently used.
        sm.apply(5, &encode_command(a, 1, b"a1"));
        assert_registration_evicts(&mut sm, 6, b);
    }

    #[test]
    fn replicas_applying_the_same_log_agree() {
        let log: Vec<Bytes> = vec![
            encode_register(),
            encode_register(),
            encode_command(1, 1, b"x"),
            encode_register(),
            encode_command(2, 1, b"y"),
            encode_command(1, 1, b"x"),
            encode_register(),
            encode_command(2, 2, b"z"),
        ];
        let run = || {
            let mut sm = WithSessions::new(Appender::default(), 2);
            let responses: Vec<Bytes> = log
                .iter()
                .enumerate()
                .map(|(i, command)| sm.apply(i as Index + 1, command))
                .collect();
            (responses, sm.snapshot())
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn snapshot_restores_sessions_and_inner_state() {
        let (mut sm, a, b) = two_sessions(3);
        sm.apply(3, &encode_command(a, 1, b"a1"));
        sm.apply(4, &encode_command(b, 1, b"b1"));
        let snapshot = sm.snapshot();

        let mut restored = WithSessions::new(Appender::default(), 3);
        restored.restore(&snapshot).unwrap();
        assert_eq!(restored.inner().0, sm.inner().0);
        assert_eq!(restored.sessions(), sm.sessions());
        // The cache survives: a retry is not executed again.
        assert!(matches!(
            restored.apply_request(5, &encode_command(a, 1, b"a1")),
            SessionOutcome::Cached(_)
        ));
        assert_eq!(restored.snapshot().len(), {
            sm.apply(5, &encode_command(a, 1, b"a1"));
            sm.snapshot().len()
        });
    }

    #[test]
    fn truncated_or_oversized_snapshot_is_refused() {
        let mut sm = WithSessions::new(Appender::default(), 3);
        register(&mut sm, 1);
        register(&mut sm, 2);
        let snapshot = sm.snapshot();
        let mut small = WithSessions::new(Appender::default(), 3);
        assert!(small.restore(&snapshot[..10]).is_err());
        let mut tiny = WithSessions::new(Appender::default(), 1);
        assert!(tiny.restore(&snapshot).is_err());
        // A failed restore leaves the state untouched.
        assert!(tiny.sessions().is_empty());
    }

    /// The audit record of a forced recovery whose survivor knew
    /// `commit_index_before` committed.
    fn forced(commit_index_before: Index) -> ForcedRecovery {
        ForcedRecovery {
            survivor: 1,
            membership: crate::Membership::new([1]),
            previous: Some(crate::Membership::new([1, 2, 3])),
            last_before: crate::LogPosition {
                index: commit_index_before + 2,
                term: 3,
            },
            commit_index_before,
            term_before: 3,
            reason: "two machines burnt".to_string(),
        }
    }

    #[test]
    fn sessions_registered_above_forced_commit_index_expire() {
        let mut sm = WithSessions::new(Appender::default(), 8);
        let kept = register(&mut sm, 5);
        let at_commit = register(&mut sm, 9);
        let above = register(&mut sm, 11);
        sm.apply(12, &encode_command(above, 1, b"uncommitted"));
        sm.apply_forced_recovery(13, &forced(9));
        assert!(sm.sessions().contains(kept));
        assert!(sm.sessions().contains(at_commit));
        assert!(!sm.sessions().contains(above));
        assert_eq!(
            sm.apply_request(14, &encode_command(above, 2, b"late")),
            SessionOutcome::Expired
        );
        // The survivor's own sessions go on, exactly once.
        assert!(matches!(
            sm.apply_request(15, &encode_command(kept, 1, b"k")),
            SessionOutcome::Executed(_)
        ));
        assert!(matches!(
            sm.apply_request(16, &encode_command(kept, 1, b"k")),
            SessionOutcome::Cached(_)
        ));
        assert_eq!(sm.inner().0, vec![b"uncommitted".to_vec(), b"k".to_vec()]);
    }

    #[test]
    fn session_ids_are_not_reused_after_forced_recovery() {
        // The lost servers registered sessions at 10..=20; the survivor
        // knew 9 committed and is forced at 10.
        let lost_ids: Vec<ClientId> = (10..=20).collect();
        let mut sm = WithSessions::new(Appender::default(), 64);
        let own = register(&mut sm, 4);
        sm.apply_forced_recovery(10, &forced(9));
        assert_eq!(sm.sessions().epoch(), 1);
        let mut new_ids = BTreeSet::new();
        for index in 11..=20 {
            let id = register(&mut sm, index);
            assert!(
                !lost_ids.contains(&id),
                "id {id} was handed out by the lost servers"
            );
            assert_ne!(id, own);
            assert_eq!(client_id_parts(id), (1, index));
            new_ids.insert(id);
        }
        // A second recovery: ids of the first epoch above its commit index
        // are not reused either.
        sm.apply_forced_recovery(21, &forced(15));
        for index in 16..=20 {
            assert!(!sm.sessions().contains(client_id(1, index).unwrap()));
        }
        let id = register(&mut sm, 22);
        assert_eq!(client_id_parts(id), (2, 22));
        assert!(!new_ids.contains(&id) && !lost_ids.contains(&id));
    }

    #[test]
    fn a_lost_servers_session_id_is_answered_expired_never_anothers_session() {
        // Seed 455 of `concord-sim --forced-recovery`: client 1 registered
        // session 13 on the lost servers; the survivor, forced at 10 with 9
        // committed, puts client 0's registration at 13.
        let lost_session: ClientId = 13;
        let mut sm = WithSessions::new(Appender::default(), 8);
        sm.apply_forced_recovery(10, &forced(9));
        let client0 = register(&mut sm, 13);
        assert_ne!(client0, lost_session);
        assert_eq!(
            sm.apply_request(14, &encode_command(lost_session, 5, b"from client 1")),
            SessionOutcome::Expired
        );
        assert_eq!(
            SessionResponse::decode(&sm.apply(15, &encode_command(lost_session, 6, b"again"))),
            Ok(SessionResponse::SessionExpired)
        );
        // Client 0's session is untouched: its first command executes.
        assert!(matches!(
            sm.apply_request(16, &encode_command(client0, 1, b"from client 0")),
            SessionOutcome::Executed(_)
        ));
        assert_eq!(sm.inner().0, vec![b"from client 0".to_vec()]);
    }

    #[test]
    fn forced_membership_entries_reach_the_session_layer_through_apply_entry() {
        use crate::state_machine::apply_entry;
        use crate::types::{Entry, EntryPayload};
        let mut sm = WithSessions::new(Appender::default(), 8);
        let entry = |index, payload| Entry {
            term: 1,
            index,
            payload,
        };
        let registered = apply_entry(
            &mut sm,
            &entry(11, EntryPayload::Command(encode_register())),
        );
        assert_eq!(
            registered.map(|bytes| SessionResponse::decode(&bytes)),
            Some(Ok(SessionResponse::Registered { client: 11 }))
        );
        let forced_entry = entry(12, EntryPayload::ForcedMembership(Box::new(forced(9))));
        assert_eq!(apply_entry(&mut sm, &forced_entry), None);
        assert_eq!(sm.sessions().epoch(), 1);
        assert!(!sm.sessions().contains(11));
        assert_eq!(apply_entry(&mut sm, &entry(13, EntryPayload::Noop)), None);
    }

    #[test]
    fn client_ids_carry_the_epoch_above_the_index() {
        assert_eq!(client_id(0, 42), Some(42));
        assert_eq!(client_id_parts(42), (0, 42));
        let id = client_id(3, 42).unwrap();
        assert_eq!(client_id_parts(id), (3, 42));
        assert_ne!(id, 42);
        assert_eq!(client_id(0, 1 << CLIENT_ID_INDEX_BITS), None);
        assert_eq!(client_id(CLIENT_ID_EPOCH_MAX + 1, 1), None);
        assert_eq!(
            client_id_parts(client_id(CLIENT_ID_EPOCH_MAX, CLIENT_ID_INDEX_MASK).unwrap()),
            (CLIENT_ID_EPOCH_MAX, CLIENT_ID_INDEX_MASK)
        );
    }

    #[test]
    fn a_registration_whose_id_does_not_fit_is_refused_not_wrapped() {
        let mut sm = WithSessions::new(Appender::default(), 8);
        let index = 1 << CLIENT_ID_INDEX_BITS;
        assert_eq!(
            sm.apply_request(index, &encode_register()),
            SessionOutcome::RegistrationRefused
        );
        assert_eq!(
            SessionResponse::decode(&sm.apply(index + 1, &encode_register())),
            Ok(SessionResponse::SessionExpired)
        );
        assert!(sm.sessions().is_empty());
    }

    #[test]
    fn snapshot_keeps_the_epoch_and_old_snapshots_still_restore() {
        let mut sm = WithSessions::new(Appender::default(), 4);
        let own = register(&mut sm, 2);
        sm.apply(3, &encode_command(own, 1, b"a"));
        sm.apply_forced_recovery(5, &forced(3));
        let new = register(&mut sm, 6);
        let snapshot = sm.snapshot();
        assert_eq!(&snapshot[..8], &SNAPSHOT_MARKER.to_le_bytes());
        assert_eq!(snapshot[8], SNAPSHOT_VERSION);

        let mut restored = WithSessions::new(Appender::default(), 4);
        restored.restore(&snapshot).unwrap();
        assert_eq!(restored.sessions(), sm.sessions());
        assert_eq!(restored.sessions().epoch(), 1);
        assert_eq!(restored.snapshot(), snapshot);
        assert!(restored.sessions().contains(new));
        // The next registration after the restore is in the restored epoch.
        assert_eq!(client_id_parts(register(&mut restored, 7)), (1, 7));

        // Version 0: the same without marker, version and epoch.
        let mut old = WithSessions::new(Appender::default(), 4);
        let a = register(&mut old, 1);
        old.apply(2, &encode_command(a, 1, b"x"));
        let version_1 = old.snapshot();
        let version_0 = &version_1[SNAPSHOT_HEADER_BYTES..];
        let mut from_old = WithSessions::new(Appender::default(), 4);
        from_old.restore(version_0).unwrap();
        assert_eq!(from_old.sessions(), old.sessions());
        assert_eq!(from_old.sessions().epoch(), 0);
        assert_eq!(from_old.inner().0, vec![b"x".to_vec()]);
        assert!(matches!(
            from_old.apply_request(3, &encode_command(a, 1, b"x")),
            SessionOutcome::Cached(_)
        ));
    }

    #[test]
    fn corrupt_versioned_snapshots_are_refused_not_panicked_on() {
        let mut sm = WithSessions::new(Appender::default(), 4);
        register(&mut sm, 2);
        sm.apply_forced_recovery(5, &forced(3));
        register(&mut sm, 6);
        let snapshot = sm.snapshot().to_vec();
        let mut target = WithSessions::new(Appender::default(), 4);
        // Unknown version.
        let mut unknown = snapshot.clone();
        unknown[8] = SNAPSHOT_VERSION + 1;
        let error = target.restore(&unknown).unwrap_err();
        assert!(error.reason.contains("version"), "{error}");
        // An epoch below the ids it holds.
        let mut behind = snapshot.clone();
        behind[9..17].copy_from_slice(&0u64.to_le_bytes());
        assert!(target.restore(&behind).is_err());
        // Every truncation.
        for length in 0..snapshot.len() {
            let _ = target.restore(&snapshot[..length]);
        }
        for length in 0..SNAPSHOT_HEADER_BYTES + 8 {
            assert!(target.restore(&snapshot[..length]).is_err(), "{length}");
        }
        assert!(target.sessions().is_empty());
    }
}
