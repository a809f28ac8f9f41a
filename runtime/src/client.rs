//! A client of a concord cluster, for any state machine.
//!
//! [`Client`] is given the servers' addresses. It sends each command to the
//! node it believes is the leader, follows `NotLeader` redirects and leader
//! hints (a redirect to an address it was not given, a server that joined
//! later, adds that address), and retries on timeouts, broken connections
//! and "outcome unknown" answers — always with the same session id and sequence number,
//! so the state machine applies a retried command at most once (the
//! session is registered through the log first, see [`concord::session`]).
//! Retries are bounded; when they run out the call fails with
//! [`ClientError::RetriesExhausted`] if a request was sent and its answer
//! lost (the command may or may not have been applied), or with
//! [`ClientError::Unavailable`] if no server took it; the next operation
//! uses the next sequence number.
//!
//! ## Learning from failure
//!
//! A server that refused the connection, reset it or did not answer in
//! time is avoided for a while ([`ClientConfig::avoid_min`], doubling on
//! each new failure up to [`ClientConfig::avoid_max`]): follower reads
//! and leader discovery go to the other servers first. Avoidance only
//! orders the servers this client picks by itself; it never refuses the
//! one the cluster names. A `NotLeader` redirect from a server that knows
//! the leader is followed at once, avoided or not, with one attempt: a
//! leader the client could not reach while the servers could (a client
//! cut from the leader alone) is written to as soon as the cut heals,
//! not once its avoidance ends. If that attempt fails too, the client
//! pauses [`ClientConfig::retry_backoff`] and asks the others again.
//! Once its period ends an avoided server is probed again by the next
//! request that would go to it; one answer clears it. A connection is
//! opened within [`ClientConfig::connect_timeout`], so probing a stopped
//! server costs that, not a whole request timeout. When every server is
//! avoided the one whose period ends first is tried.
//!
//! ## Errors that say what happened
//!
//! Every failure is [`ErrorClass::Transient`] (a server down, slow or
//! busy: trying again, elsewhere or later, may work) or
//! [`ErrorClass::Permanent`] (this client as configured is refused: TLS
//! on one side only, a certificate the server does not trust, another
//! cluster's name). A permanent failure on every server ends the call at
//! once with [`ClientError::Rejected`], which names it.

use std::time::Duration;

use bytes::Bytes;
use thiserror::Error;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use super::frame::{self, DEFAULT_MAX_FRAME_BYTES};
use concord::session::{self, ClientId, SessionResponse};

use super::status::NodeStatus;
use super::transport::{connect, BoxStream, ConnectError};
use super::wire::{
    AdminRequest, AdminResponse, ClientRequest, ClientResponse, Hello, HelloRole, Members,
};

/// Shortest time a [`Client::admin`] request is given for one attempt: a
/// membership change waits for two or three commits (and a server answers
/// within its own `admin_timeout`, 10 s by default).
pub const ADMIN_ATTEMPT_TIMEOUT_MIN: Duration = Duration::from_secs(15);

/// Most server addresses a client keeps (given ones and ones learned from
/// redirects).
const SERVERS_MAX: usize = 1024;

/// Settings of a [`Client`].
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Addresses of the servers (`host:port`).
    pub servers: Vec<String>,
    /// The cluster's name (checked by the servers' handshake).
    pub cluster_id: String,
    /// Time allowed for one attempt (connect + request + answer).
    pub request_timeout: Duration,
    /// Most attempts per operation.
    pub attempts_max: u32,
    /// Pause before retrying when no leader is known.
    pub retry_backoff: Duration,
    /// Mutual TLS to the servers (a certificate naming
    /// `client.<cluster-id>`, see [`super::tls`]); `None`: plaintext.
    pub tls: Option<std::sync::Arc<super::tls::TlsConfig>>,
    /// Time allowed to open a connection and complete its handshake
    /// (capped by `request_timeout`): what probing a stopped server costs.
    pub connect_timeout: Duration,
    /// How long a server that failed (refused, reset, timed out) is
    /// avoided after its first failure; each further failure doubles it.
    pub avoid_min: Duration,
    /// Longest time a failing server is avoided before it is probed again.
    pub avoid_max: Duration,
}

impl ClientConfig {
    /// Defaults: 2 s per attempt, 1 s to connect, 30 attempts, 50 ms
    /// backoff; a failed server is avoided for 1 s, doubling up to 30 s.
    pub fn new(servers: Vec<String>, cluster_id: impl Into<String>) -> Self {
        ClientConfig {
            servers,
            cluster_id: cluster_id.into(),
            request_timeout: Duration::from_secs(2),
            attempts_max: 30,
            retry_backoff: Duration::from_millis(50),
            tls: None,
            connect_timeout: Duration::from_secs(1),
            avoid_min: Duration::from_secs(1),
            avoid_max: Duration::from_secs(30),
        }
    }
}

/// Whether trying again can help.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// A passing condition: a server down, restarting, slow or busy, an
    /// answer lost. Trying again, elsewhere or later, may succeed.
    Transient,
    /// The servers refuse this client or this request as configured (TLS
    /// on one side only, a certificate the server does not trust, another
    /// cluster's name): trying again cannot help; the message says what
    /// to change.
    Permanent,
}

/// Why an operation failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ClientError {
    /// No attempt succeeded, and at least one sent the request and lost
    /// its answer: the operation may or may not have been applied.
    #[error("gave up after {attempts} attempts; the operation may or may not have been applied (last problem: {last})")]
    RetriesExhausted {
        /// Attempts made.
        attempts: u32,
        /// What went wrong last.
        last: String,
    },
    /// No attempt succeeded and none left the outcome open: no server
    /// took the request (unreachable, refused, no leader), or it was a
    /// read, so nothing was applied.
    #[error("gave up after {attempts} attempts; no server took the request, nothing was applied (last problem: {last})")]
    Unavailable {
        /// Attempts made.
        attempts: u32,
        /// What went wrong last.
        last: String,
    },
    /// Every server refused this client as configured (see
    /// [`ErrorClass::Permanent`]); nothing was sent.
    #[error("{reason}")]
    Rejected {
        /// What the servers (the last one to refuse) said or showed, with
        /// what to change.
        reason: String,
    },
    /// Every server asked refused the request itself, not this client:
    /// for good (a multi-group server asked a single-group request names
    /// its group count), or all for one passing reason (every one
    /// shutting down). The last one's words.
    #[error("server error: {0}")]
    Server(String),
    /// The server asked for its status of a group does not host it: it
    /// was removed from the group (and stopped hosting it), or it serves
    /// another cluster's groups.
    #[error(
        "node {node} does not host group {group}: removed from it, or a server of a \
         multi-group cluster (--groups N)"
    )]
    NotHosted {
        /// The server's node id.
        node: concord::NodeId,
        /// The group asked for.
        group: u64,
    },
    /// The session was forgotten by the servers; the outcome of the last
    /// operation is unknown. The next operation registers a new session.
    #[error("session expired on the servers; the operation may or may not have been applied")]
    SessionExpired,
    /// The command is larger than the service accepts (its client checks
    /// before sending); it was not sent. Retrying cannot help.
    #[error(
        "the command is {bytes} bytes encoded, above the limit of {max} bytes ({} MiB) a command \
         may have; nothing was sent",
        max / (1024 * 1024)
    )]
    CommandTooLarge {
        /// The command's encoded size.
        bytes: usize,
        /// The largest command accepted.
        max: usize,
    },
    /// A server answered something that could not be understood.
    #[error("bad answer from server: {0}")]
    Protocol(String),
    /// No server address was given.
    #[error("no server addresses given")]
    NoServers,
}

impl ClientError {
    /// Whether trying the same call again can help.
    pub fn class(&self) -> ErrorClass {
        match self {
            ClientError::RetriesExhausted { .. }
            | ClientError::Unavailable { .. }
            | ClientError::SessionExpired => ErrorClass::Transient,
            ClientError::Rejected { .. }
            | ClientError::Server(_)
            | ClientError::NotHosted { .. }
            | ClientError::Protocol(_)
            | ClientError::CommandTooLarge { .. }
            | ClientError::NoServers => ErrorClass::Permanent,
        }
    }

    /// Whether the operation may have been applied although the call
    /// failed (a request was sent and its answer lost).
    pub fn outcome_unknown(&self) -> bool {
        matches!(
            self,
            ClientError::RetriesExhausted { .. } | ClientError::SessionExpired
        )
    }
}

/// Why one attempt on one server failed.
#[derive(Clone, Debug)]
struct AttemptError {
    class: ErrorClass,
    message: String,
    /// The request was written whole before the failure: the server may
    /// have acted on it.
    sent: bool,
}

impl From<ConnectError> for AttemptError {
    fn from(e: ConnectError) -> Self {
        AttemptError {
            class: e.class,
            message: e.message,
            sent: false,
        }
    }
}

/// What the client remembers of one server's failures.
#[derive(Clone, Copy, Debug, Default)]
struct Health {
    /// Not chosen before this time (unless every server is avoided).
    avoid_until: Option<Instant>,
    /// The period of the last avoidance (zero: the last attempt worked).
    avoid: Duration,
}

/// What one call has seen so far, across its attempts.
#[derive(Debug, Default)]
struct CallState {
    /// The last problem, for the error.
    last: String,
    /// An attempt sent the request and lost the answer.
    sent: bool,
    /// Servers that refused this client for good in this call, and the
    /// last such refusal.
    rejected: Vec<bool>,
    rejection: Option<String>,
    /// The request changes nothing (a read): never "may have been
    /// applied".
    read_only: bool,
    /// Servers that answered this call with an error (refused the
    /// request itself: shutting down, or a server of another kind).
    errored: Vec<bool>,
}

impl CallState {
    fn new(servers: usize) -> Self {
        CallState {
            rejected: vec![false; servers],
            errored: vec![false; servers],
            ..CallState::default()
        }
    }

    /// Notes `server`'s error answer `e`; returns the error to end the
    /// call with once every server of `servers` answered one and no
    /// attempt left the outcome open: asking again would only get the
    /// same answers (a multi-group server's "use --groups N", every
    /// server shutting down).
    fn errored(&mut self, server: usize, servers: usize, e: String) -> Option<ClientError> {
        if server >= self.errored.len() {
            self.errored.resize(server + 1, false);
        }
        self.errored[server] = true;
        self.last = e;
        let everyone = self.errored.len() >= servers && self.errored.iter().all(|e| *e);
        (everyone && !self.sent).then(|| ClientError::Server(self.last.clone()))
    }

    /// Notes a failed attempt on `server`; returns the error to end the
    /// call with when every server refused this client for good.
    fn failed(&mut self, server: usize, e: AttemptError) -> Option<ClientError> {
        self.sent |= e.sent && !self.read_only;
        if e.class == ErrorClass::Permanent {
            if server >= self.rejected.len() {
                self.rejected.resize(server + 1, false);
            }
            self.rejected[server] = true;
            self.rejection = Some(e.message.clone());
        }
        self.last = e.message;
        if !self.sent && self.rejected.iter().all(|r| *r) {
            return self
                .rejection
                .clone()
                .map(|reason| ClientError::Rejected { reason });
        }
        None
    }

    /// The error of a call whose attempts ran out.
    fn exhausted(self, attempts: u32) -> ClientError {
        if self.sent {
            ClientError::RetriesExhausted {
                attempts,
                last: self.last,
            }
        } else if let Some(reason) = self.rejection {
            ClientError::Rejected { reason }
        } else {
            ClientError::Unavailable {
                attempts,
                last: self.last,
            }
        }
    }
}

/// A client of the key-value service. One operation at a time.
pub struct Client {
    config: ClientConfig,
    connections: Vec<Option<BoxStream>>,
    health: Vec<Health>,
    /// The attempt under way wrote its request whole.
    request_written: bool,
    leader: Option<usize>,
    next_target: usize,
    session: Option<ClientId>,
    next_seq: u64,
    buf: Vec<u8>,
    retries: u64,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("servers", &self.config.servers)
            .field("leader", &self.leader)
            .field("session", &self.session)
            .field("next_seq", &self.next_seq)
            .finish()
    }
}

impl Client {
    /// A client; connections are opened lazily.
    pub fn new(config: ClientConfig) -> Client {
        Client {
            connections: config.servers.iter().map(|_| None).collect(),
            health: vec![Health::default(); config.servers.len()],
            request_written: false,
            config,
            leader: None,
            next_target: 0,
            session: None,
            next_seq: 1,
            buf: Vec::new(),
            retries: 0,
        }
    }

    /// This client's session id, once registered.
    pub fn session(&self) -> Option<ClientId> {
        self.session
    }

    /// Attempts that were retries, over the client's life.
    pub fn retries(&self) -> u64 {
        self.retries
    }

    /// Index in the server list of the presumed leader.
    pub fn leader(&self) -> Option<&str> {
        self.leader.map(|i| self.config.servers[i].as_str())
    }

    /// Sends a state machine's own read request `query` without a log
    /// entry, on `path`, and returns its answer (from
    /// [`StateMachine::query`](concord::state_machine::StateMachine::query)):
    /// at the leader after a heartbeat round (`ReadIndex`), at the leader
    /// under its lease (`Lease`; served as `ReadIndex` where leases are
    /// off), or at any server once it has applied the leader's read index
    /// (`Follower`, tried at each server in turn). Retried freely, as a
    /// read changes nothing.
    pub async fn read(
        &mut self,
        query: Bytes,
        path: concord::ReadPath,
    ) -> Result<Bytes, ClientError> {
        let request = ClientRequest::Read { path, query };
        let any_server = path == concord::ReadPath::Follower;
        self.request(&request, any_server).await
    }

    /// Sends `command`, a state machine's own request, through the log in
    /// this client's session (registered on first use), with leader
    /// discovery and bounded retries; returns the state machine's answer.
    /// Every retry carries the same sequence number, so the command is
    /// applied at most once; the next call uses the next number whatever
    /// became of this one.
    pub async fn write(&mut self, command: Bytes) -> Result<Bytes, ClientError> {
        let client = match self.session {
            Some(client) => client,
            None => {
                let answer = self.submit(session::encode_register()).await?;
                match SessionResponse::decode(&answer) {
                    Ok(SessionResponse::Registered { client }) => {
                        self.session = Some(client);
                        self.next_seq = 1;
                        client
                    }
                    other => {
                        return Err(ClientError::Protocol(format!(
                            "unexpected registration answer {other:?}"
                        )))
                    }
                }
            }
        };
        let seq = self.next_seq;
        // The next operation gets the next number whatever happens to this
        // one: a number is never reused for a different operation.
        self.next_seq += 1;
        let answer = self
            .submit(session::encode_command(client, seq, &command))
            .await?;
        match SessionResponse::decode(&answer) {
            Ok(SessionResponse::Ok(bytes)) => Ok(bytes),
            Ok(SessionResponse::SessionExpired) => {
                self.session = None;
                Err(ClientError::SessionExpired)
            }
            other => Err(ClientError::Protocol(format!(
                "unexpected answer {other:?}"
            ))),
        }
    }

    /// Submits raw state-machine command bytes (already wrapped for the
    /// session layer) with leader discovery and bounded retries; returns
    /// the state machine's response.
    pub async fn submit(&mut self, command: Bytes) -> Result<Bytes, ClientError> {
        self.request(&ClientRequest::Command(command), false).await
    }

    /// Sends `request` until a server answers it, with bounded retries: to
    /// the presumed leader, or with `any_server` to each server in turn,
    /// avoiding servers that failed lately.
    async fn request(
        &mut self,
        request: &ClientRequest,
        any_server: bool,
    ) -> Result<Bytes, ClientError> {
        if self.config.servers.is_empty() {
            return Err(ClientError::NoServers);
        }
        let mut call = CallState::new(self.config.servers.len());
        // A read changes nothing, so its outcome is never in doubt.
        call.read_only = matches!(request, ClientRequest::Read { .. });
        // The target of this attempt was named by a redirect while this
        // client avoided it.
        let mut probing_avoided = false;
        for attempt in 0..self.config.attempts_max {
            if attempt > 0 {
                self.retries += 1;
            }
            let target = match self.leader {
                Some(leader) if !any_server => leader,
                _ => self.pick().await,
            };
            if any_server {
                // Spread reads over the servers.
                self.next_target = target + 1;
            }
            let probe = std::mem::take(&mut probing_avoided);
            match self.call(target, request).await {
                Ok(ClientResponse::Done(bytes)) => {
                    self.note_answer(target);
                    if !any_server {
                        self.leader = Some(target);
                    }
                    return Ok(bytes);
                }
                Ok(ClientResponse::NotLeader { .. }) if any_server => {
                    // This server cannot serve reads now (no leader known,
                    // or it is out of the configuration): the next one is
                    // tried at once, and this one avoided for a while.
                    call.last = format!("{} cannot serve reads now", self.config.servers[target]);
                    self.note_failure(target, ErrorClass::Transient);
                    if self.all_avoided(Instant::now()) {
                        tokio::time::sleep(self.config.retry_backoff).await;
                    }
                }
                Ok(ClientResponse::NotLeader {
                    leader_hint,
                    leader_addr,
                }) => {
                    call.last = format!(
                        "{} is not the leader (hint: {leader_hint:?})",
                        self.config.servers[target]
                    );
                    // A leader at an address this client was not given
                    // (it joined after the client was configured) is
                    // learned, as membership requests learn it: without
                    // it, a cluster whose members all changed could never
                    // be written to again. The leader the cluster names
                    // is tried next even if this client avoids it (one
                    // attempt): the servers reach it, so this client's
                    // own failures there may be over.
                    let redirect = leader_addr
                        .and_then(|addr| self.server_index(&addr))
                        .filter(|&index| index != target);
                    match redirect {
                        Some(index) => {
                            probing_avoided = self.avoided(index, Instant::now());
                            self.leader = Some(index);
                        }
                        None => {
                            self.leader = None;
                            self.next_target = target + 1;
                            tokio::time::sleep(self.config.retry_backoff).await;
                        }
                    }
                }
                Ok(ClientResponse::Unknown) => {
                    self.note_answer(target);
                    call.sent |= !call.read_only;
                    call.last = "outcome unknown (leadership changed)".to_string();
                    self.leader = None;
                    self.next_target = target + 1;
                    tokio::time::sleep(self.config.retry_backoff).await;
                }
                Ok(ClientResponse::Busy) => {
                    self.note_answer(target);
                    call.last = "server busy".to_string();
                    tokio::time::sleep(self.config.retry_backoff).await;
                }
                Ok(ClientResponse::Error(e)) => {
                    self.note_answer(target);
                    let servers = self.config.servers.len();
                    if let Some(error) = call.errored(target, servers, e) {
                        return Err(error);
                    }
                    self.leader = None;
                    self.next_target = target + 1;
                    tokio::time::sleep(self.config.retry_backoff).await;
                }
                Ok(ClientResponse::Status(_) | ClientResponse::Admin(_)) => {
                    return Err(ClientError::Protocol(
                        "status or membership answer to a command".to_string(),
                    ));
                }
                Err(e) => {
                    if let Some(error) = call.failed(target, e) {
                        return Err(error);
                    }
                    self.leader = None;
                    self.next_target = target + 1;
                    // Another server is tried at once; a pause only when
                    // every one failed lately, or when the leader a
                    // redirect named failed again (the next server would
                    // name it once more).
                    if probe || self.all_avoided(Instant::now()) {
                        tokio::time::sleep(self.config.retry_backoff).await;
                    }
                }
            }
        }
        Err(call.exhausted(self.config.attempts_max))
    }

    /// Whether server `index` failed lately and is still avoided at `now`.
    fn avoided(&self, index: usize, now: Instant) -> bool {
        self.health
            .get(index)
            .and_then(|h| h.avoid_until)
            .is_some_and(|until| until > now)
    }

    fn all_avoided(&self, now: Instant) -> bool {
        (0..self.config.servers.len()).all(|i| self.avoided(i, now))
    }

    /// The next server to try in turn from `next_target`, skipping the
    /// avoided ones; when every one is avoided, the one whose avoidance
    /// ends first (a probe, rather than no attempt at all).
    async fn pick(&mut self) -> usize {
        let n = self.config.servers.len();
        let now = Instant::now();
        let start = self.next_target % n;
        if let Some(index) = (0..n)
            .map(|k| (start + k) % n)
            .find(|&i| !self.avoided(i, now))
        {
            return index;
        }
        (0..n)
            .map(|k| (start + k) % n)
            .min_by_key(|&i| self.health[i].avoid_until)
            .unwrap_or(start)
    }

    /// Server `index` failed: avoid it, twice as long as last time.
    fn note_failure(&mut self, index: usize, class: ErrorClass) {
        let config = &self.config;
        let Some(health) = self.health.get_mut(index) else {
            return;
        };
        health.avoid = match class {
            // Only a change of configuration helps: no point probing soon.
            ErrorClass::Permanent => config.avoid_max,
            ErrorClass::Transient if health.avoid.is_zero() => config.avoid_min,
            ErrorClass::Transient => (health.avoid * 2).min(config.avoid_max),
        };
        health.avoid_until = Some(Instant::now() + health.avoid);
    }

    /// Server `index` answered: no longer avoided.
    fn note_answer(&mut self, index: usize) {
        if let Some(health) = self.health.get_mut(index) {
            *health = Health::default();
        }
    }

    /// Sends a membership request (see [`AdminRequest`]) and returns the
    /// server's answer: to the leader for a change, following
    /// [`AdminResponse::NotLeader`] redirects (also to a leader whose
    /// address was not in [`ClientConfig::servers`]), retrying only
    /// connection failures. [`AdminRequest::List`] is answered by the
    /// leader when one is known and reachable (only it knows the
    /// followers' progress and the latest configuration); a server that
    /// knows no leader, or knows it is no longer a member, is not taken
    /// at its word while another server can be asked.
    /// [`AdminResponse::Refused`] and [`AdminResponse::TimedOut`] are
    /// returned as they are: a timed-out change may still take effect, so
    /// it is never sent again blindly.
    pub async fn admin(&mut self, request: AdminRequest) -> Result<AdminResponse, ClientError> {
        if self.config.servers.is_empty() {
            return Err(ClientError::NoServers);
        }
        if request == AdminRequest::List {
            return self.list_members().await;
        }
        let timeout = self.config.request_timeout.max(ADMIN_ATTEMPT_TIMEOUT_MIN);
        let wire = ClientRequest::Admin(request);
        let mut call = CallState::new(self.config.servers.len());
        for attempt in 0..self.config.attempts_max {
            if attempt > 0 {
                self.retries += 1;
            }
            let target = match self.leader {
                Some(leader) => leader,
                None => self.pick().await,
            };
            // A change is sent only over a connection that just answered:
            // a server that cannot be reached is tried like any failed
            // attempt, while one that took the change and then went
            // silent leaves its outcome unknown.
            let answered = self
                .call_within(target, &ClientRequest::Status, self.config.request_timeout)
                .await;
            if answered.is_ok() {
                self.note_answer(target);
            }
            if let Err(e) = answered {
                if let Some(error) = call.failed(target, AttemptError { sent: false, ..e }) {
                    return Err(error);
                }
                self.leader = None;
                self.next_target = target + 1;
                if self.all_avoided(Instant::now()) {
                    tokio::time::sleep(self.config.retry_backoff).await;
                }
                continue;
            }
            match self.call_within(target, &wire, timeout).await {
                Ok(ClientResponse::Admin(AdminResponse::NotLeader {
                    leader_hint,
                    leader_addr,
                })) => {
                    call.last = format!(
                        "{} is not the leader (hint: {leader_hint:?})",
                        self.config.servers[target]
                    );
                    match leader_addr.map(|addr| self.server_index(&addr)) {
                        Some(Some(index)) if index != target => self.leader = Some(index),
                        _ => {
                            self.leader = None;
                            self.next_target = target + 1;
                            tokio::time::sleep(self.config.retry_backoff).await;
                        }
                    }
                }
                Ok(ClientResponse::Admin(answer)) => {
                    self.leader = Some(target);
                    return Ok(answer);
                }
                Ok(ClientResponse::Error(e)) => {
                    let servers = self.config.servers.len();
                    if let Some(error) = call.errored(target, servers, e) {
                        return Err(error);
                    }
                    self.leader = None;
                    self.next_target = target + 1;
                    tokio::time::sleep(self.config.retry_backoff).await;
                }
                Ok(other) => {
                    return Err(ClientError::Protocol(format!(
                        "unexpected answer to a membership request: {other:?}"
                    )))
                }
                Err(e) if e.sent => {
                    // Sent, not answered: the change may be under way.
                    return Ok(AdminResponse::TimedOut(format!(
                        "{}; the change may or may not take effect: run `member list`",
                        e.message
                    )));
                }
                Err(e) => {
                    if let Some(error) = call.failed(target, e) {
                        return Err(error);
                    }
                    self.leader = None;
                    self.next_target = target + 1;
                    tokio::time::sleep(self.config.retry_backoff).await;
                }
            }
        }
        Err(call.exhausted(self.config.attempts_max))
    }

    /// `member list`: the leader's answer when a leader can be reached.
    /// A server's own answer names the leader it knows, which is then
    /// asked; a server that knows no leader, or knows it was removed, is
    /// set aside while the other servers are asked in turn. Without any
    /// leader's answer the best one seen is returned: a member's over a
    /// removed server's, the newest configuration first.
    async fn list_members(&mut self) -> Result<AdminResponse, ClientError> {
        let wire = ClientRequest::Admin(AdminRequest::List);
        let mut call = CallState::new(self.config.servers.len());
        let mut best: Option<Members> = None;
        let mut asked = vec![false; self.config.servers.len()];
        for attempt in 0..self.config.attempts_max {
            if attempt > 0 {
                self.retries += 1;
            }
            let target = match self
                .leader
                .filter(|&l| !asked.get(l).copied().unwrap_or(false))
            {
                Some(leader) => leader,
                None => {
                    let n = self.config.servers.len();
                    let start = self.next_target % n;
                    match (0..n).map(|k| (start + k) % n).find(|&i| !asked[i]) {
                        Some(index) => index,
                        // Everyone was asked: the best answer there is.
                        None => break,
                    }
                }
            };
            if target >= asked.len() {
                asked.resize(target + 1, false);
            }
            asked[target] = true;
            self.next_target = target + 1;
            let answered = self
                .call_within(target, &wire, self.config.request_timeout)
                .await;
            if answered.is_ok() {
                self.note_answer(target);
            }
            match answered {
                Ok(ClientResponse::Admin(AdminResponse::Done(members))) => {
                    if members.leader == Some(members.answered_by) {
                        self.leader = Some(target);
                        return Ok(AdminResponse::Done(members));
                    }
                    self.leader = members
                        .leader
                        .and_then(|leader| members.members.iter().find(|m| m.id == leader))
                        .and_then(|m| m.addr.clone())
                        .and_then(|addr| self.server_index(&addr));
                    if self.leader.is_none() {
                        // The members it knows of may know more: ask them
                        // too (a removed server's list names the others).
                        for addr in members.members.iter().filter_map(|m| m.addr.as_deref()) {
                            self.server_index(addr);
                        }
                    }
                    if asked.len() < self.config.servers.len() {
                        asked.resize(self.config.servers.len(), false);
                    }
                    if best.as_ref().is_none_or(|b| better_view(&members, b)) {
                        best = Some(members);
                    }
                }
                Ok(ClientResponse::Admin(other)) => return Ok(other),
                Ok(ClientResponse::Error(e)) => {
                    let servers = self.config.servers.len();
                    if let Some(error) = call.errored(target, servers, e) {
                        return Err(error);
                    }
                }
                Ok(other) => {
                    return Err(ClientError::Protocol(format!(
                        "unexpected answer to a membership request: {other:?}"
                    )))
                }
                Err(e) => {
                    self.leader = None;
                    if let Some(error) = call.failed(target, e) {
                        return Err(error);
                    }
                }
            }
        }
        match best {
            Some(members) => Ok(AdminResponse::Done(members)),
            None => Err(call.exhausted(self.config.attempts_max)),
        }
    }

    /// The index of `addr` in the server list, added (up to a bound) when
    /// it is not there: a leader added at runtime.
    fn server_index(&mut self, addr: &str) -> Option<usize> {
        if let Some(index) = self.config.servers.iter().position(|s| s == addr) {
            return Some(index);
        }
        if self.config.servers.len() >= SERVERS_MAX {
            return None;
        }
        self.config.servers.push(addr.to_string());
        self.connections.push(None);
        self.health.push(Health::default());
        Some(self.config.servers.len() - 1)
    }

    /// Asks server number `server` (index in the list) for its status,
    /// once: [`ClientError::Unavailable`] if it cannot be reached,
    /// [`ClientError::Rejected`] if it refuses this client as configured.
    pub async fn status(&mut self, server: usize) -> Result<NodeStatus, ClientError> {
        if server >= self.config.servers.len() {
            return Err(ClientError::NoServers);
        }
        let answered = self.call(server, &ClientRequest::Status).await;
        if answered.is_ok() {
            self.note_answer(server);
        }
        match answered {
            Ok(ClientResponse::Status(status)) => Ok(*status),
            Ok(ClientResponse::Error(e)) => Err(ClientError::Server(e)),
            Ok(other) => Err(ClientError::Protocol(format!(
                "unexpected answer {other:?}"
            ))),
            Err(e) => {
                self.connections[server] = None;
                Err(match e.class {
                    ErrorClass::Permanent => ClientError::Rejected { reason: e.message },
                    ErrorClass::Transient => ClientError::Unavailable {
                        attempts: 1,
                        last: e.message,
                    },
                })
            }
        }
    }

    async fn call(
        &mut self,
        target: usize,
        request: &ClientRequest,
    ) -> Result<ClientResponse, AttemptError> {
        self.call_within(target, request, self.config.request_timeout)
            .await
    }

    /// One attempt on server `target`: its answer, or why there is none
    /// (the server is then avoided for a while).
    async fn call_within(
        &mut self,
        target: usize,
        request: &ClientRequest,
        timeout: Duration,
    ) -> Result<ClientResponse, AttemptError> {
        self.request_written = false;
        let result = match tokio::time::timeout(timeout, self.call_inner(target, request)).await {
            Ok(result) => result,
            Err(_) => Err(AttemptError {
                class: ErrorClass::Transient,
                message: format!(
                    "no answer from {} within {timeout:?}",
                    self.config.servers[target]
                ),
                sent: self.request_written,
            }),
        };
        // An answer clears the server once the caller judged it (a
        // refusal to serve may avoid it still).
        if let Err(e) = &result {
            self.connections[target] = None;
            self.note_failure(target, e.class);
        }
        result
    }

    async fn call_inner(
        &mut self,
        target: usize,
        request: &ClientRequest,
    ) -> Result<ClientResponse, AttemptError> {
        if self.connections[target].is_none() {
            let hello = Hello {
                cluster_id: self.config.cluster_id.clone(),
                role: HelloRole::Client,
            };
            let (stream, _) = connect(
                &self.config.servers[target],
                &hello,
                DEFAULT_MAX_FRAME_BYTES,
                self.config.connect_timeout.min(self.config.request_timeout),
                self.config.tls.as_deref(),
            )
            .await?;
            self.connections[target] = Some(stream);
        }
        let transient = |message: String, sent: bool| AttemptError {
            class: ErrorClass::Transient,
            message,
            sent,
        };
        let Some(stream) = self.connections[target].as_mut() else {
            return Err(transient("not connected".to_string(), false));
        };
        self.buf.clear();
        frame::encode_frame(request, &mut self.buf).map_err(|e| AttemptError {
            class: ErrorClass::Permanent,
            message: e.to_string(),
            sent: false,
        })?;
        // A frame written in part cannot be decoded, so a failed write
        // leaves nothing that could be applied.
        let written = async {
            stream.write_all(&self.buf).await?;
            stream.flush().await
        };
        written
            .await
            .map_err(|e| transient(format!("send failed: {e}"), false))?;
        self.request_written = true;
        frame::read_value(stream, &mut self.buf, DEFAULT_MAX_FRAME_BYTES)
            .await
            .map_err(|e| transient(format!("{}: {e}", self.config.servers[target]), true))
    }
}

/// Whether `a` is a better `member list` answer than `b` when no leader
/// answered: one that knows a leader, then a member's over a removed
/// server's, then the newer configuration.
fn better_view(a: &Members, b: &Members) -> bool {
    let rank = |m: &Members| {
        (
            m.leader.is_some(),
            m.not_member_since.is_none(),
            m.configuration_index,
        )
    };
    rank(a) > rank(b)
}
