//! A client of a concord key-value cluster.
//!
//! [`Client`] is given the servers' addresses. It sends each command to the
//! node it believes is the leader, follows `NotLeader` redirects and leader
//! hints, and retries on timeouts, broken connections and "outcome
//! unknown" answers — always with the same session id and sequence number,
//! so the state machine applies a retried command at most once (the
//! session is registered through the log first, see [`crate::session`]).
//! Retries are bounded; when they run out the call fails with
//! [`ClientError::RetriesExhausted`] (the command may or may not have been
//! applied) and the next operation uses the next sequence number.

use std::time::Duration;

use bytes::Bytes;
use thiserror::Error;
use tokio::io::AsyncWriteExt;

use super::codec;
use super::frame::{self, DEFAULT_MAX_FRAME_BYTES};
use crate::session::{self, ClientId, SessionResponse};

use super::kv::{KvOp, KvResult, COMMAND_BYTES_MAX};
use super::status::NodeStatus;
use super::transport::{connect, BoxStream};
use super::wire::{AdminRequest, AdminResponse, ClientRequest, ClientResponse, Hello, HelloRole};

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
    /// How [`Client::get`] reads: without a log entry on this path
    /// (`ReadIndex` by default; `Follower` reads go to every server in
    /// turn), or through the log when `None`.
    pub read_path: Option<crate::ReadPath>,
    /// Mutual TLS to the servers (a certificate naming
    /// `client.<cluster-id>`, see [`super::tls`]); `None`: plaintext.
    pub tls: Option<std::sync::Arc<super::tls::TlsConfig>>,
}

impl ClientConfig {
    /// Defaults: 2 s per attempt, 30 attempts, 50 ms backoff.
    pub fn new(servers: Vec<String>, cluster_id: impl Into<String>) -> Self {
        ClientConfig {
            servers,
            cluster_id: cluster_id.into(),
            request_timeout: Duration::from_secs(2),
            attempts_max: 30,
            retry_backoff: Duration::from_millis(50),
            read_path: Some(crate::ReadPath::ReadIndex),
            tls: None,
        }
    }
}

/// Why an operation failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ClientError {
    /// No attempt succeeded. The operation may or may not have been
    /// applied.
    #[error("gave up after {attempts} attempts; the operation may or may not have been applied (last problem: {last})")]
    RetriesExhausted {
        /// Attempts made.
        attempts: u32,
        /// What went wrong last.
        last: String,
    },
    /// The server refused the request for good.
    #[error("server error: {0}")]
    Server(String),
    /// The session was forgotten by the servers; the outcome of the last
    /// operation is unknown. The next operation registers a new session.
    #[error("session expired on the servers; the operation may or may not have been applied")]
    SessionExpired,
    /// The command is larger than a server accepts
    /// ([`COMMAND_BYTES_MAX`](super::kv::COMMAND_BYTES_MAX)); it was not
    /// sent. Retrying cannot help.
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

/// A client of the key-value service. One operation at a time.
pub struct Client {
    config: ClientConfig,
    connections: Vec<Option<BoxStream>>,
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

    /// Reads `key`, linearizably, on the configured
    /// [`ClientConfig::read_path`].
    pub async fn get(&mut self, key: impl Into<Bytes>) -> Result<Option<Bytes>, ClientError> {
        match self.config.read_path {
            Some(path) => self.get_via(key, path).await,
            None => self.get_through_log(key).await,
        }
    }

    /// Reads `key` without a log entry, on `path`: at the leader after a
    /// heartbeat round (`ReadIndex`), at the leader under its lease
    /// (`Lease`; served as `ReadIndex` where leases are off), or at any
    /// server once it has applied the leader's read index (`Follower`).
    /// A read is retried freely: it changes nothing.
    pub async fn get_via(
        &mut self,
        key: impl Into<Bytes>,
        path: crate::ReadPath,
    ) -> Result<Option<Bytes>, ClientError> {
        let query = codec::encode(&KvOp::Get { key: key.into() })
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let request = ClientRequest::Read {
            path,
            query: Bytes::from(query),
        };
        let any_server = path == crate::ReadPath::Follower;
        let answer = self.request(&request, any_server).await?;
        match codec::decode::<KvResult>(&answer, COMMAND_BYTES_MAX) {
            Ok(KvResult::Value(value)) => Ok(value),
            Ok(other) => Err(ClientError::Protocol(format!(
                "unexpected result {other:?}"
            ))),
            Err(e) => Err(ClientError::Protocol(e.to_string())),
        }
    }

    /// Sends a state machine's own read request `query` without a log
    /// entry, on `path`, and returns its answer (from
    /// [`StateMachine::query`](crate::state_machine::StateMachine::query)).
    /// For services other than the built-in key-value store; retried
    /// freely, as a read changes nothing.
    pub async fn read(
        &mut self,
        query: Bytes,
        path: crate::ReadPath,
    ) -> Result<Bytes, ClientError> {
        let request = ClientRequest::Read { path, query };
        let any_server = path == crate::ReadPath::Follower;
        self.request(&request, any_server).await
    }

    /// Reads `key` through the log: a log entry, committed and applied
    /// like a write.
    pub async fn get_through_log(
        &mut self,
        key: impl Into<Bytes>,
    ) -> Result<Option<Bytes>, ClientError> {
        match self.execute(KvOp::Get { key: key.into() }).await? {
            KvResult::Value(value) => Ok(value),
            other => Err(ClientError::Protocol(format!(
                "unexpected result {other:?}"
            ))),
        }
    }

    /// Sets `key` to `value`.
    pub async fn put(
        &mut self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
    ) -> Result<(), ClientError> {
        self.execute(KvOp::Put {
            key: key.into(),
            value: value.into(),
        })
        .await
        .map(|_| ())
    }

    /// Appends `value` to `key`'s value; returns the new value.
    pub async fn append(
        &mut self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
    ) -> Result<Bytes, ClientError> {
        match self
            .execute(KvOp::Append {
                key: key.into(),
                value: value.into(),
            })
            .await?
        {
            KvResult::Value(Some(value)) => Ok(value),
            other => Err(ClientError::Protocol(format!(
                "unexpected result {other:?}"
            ))),
        }
    }

    /// Sets `key` to `new` if it holds `expected` (`None`: absent).
    /// Returns whether it swapped and the value now stored.
    pub async fn cas(
        &mut self,
        key: impl Into<Bytes>,
        expected: Option<Bytes>,
        new: impl Into<Bytes>,
    ) -> Result<(bool, Option<Bytes>), ClientError> {
        match self
            .execute(KvOp::Cas {
                key: key.into(),
                expected,
                new: new.into(),
            })
            .await?
        {
            KvResult::Cas { swapped, current } => Ok((swapped, current)),
            other => Err(ClientError::Protocol(format!(
                "unexpected result {other:?}"
            ))),
        }
    }

    /// Runs one operation with retries; exactly-once through the session.
    pub async fn execute(&mut self, op: KvOp) -> Result<KvResult, ClientError> {
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
        let op = codec::encode(&op).map_err(|e| ClientError::Protocol(e.to_string()))?;
        if op.len() > COMMAND_BYTES_MAX {
            return Err(ClientError::CommandTooLarge {
                bytes: op.len(),
                max: COMMAND_BYTES_MAX,
            });
        }
        let seq = self.next_seq;
        // The next operation gets the next number whatever happens to this
        // one: a number is never reused for a different operation.
        self.next_seq += 1;
        let answer = self
            .submit(session::encode_command(client, seq, &op))
            .await?;
        match SessionResponse::decode(&answer) {
            Ok(SessionResponse::Ok(bytes)) => {
                match codec::decode::<KvResult>(&bytes, COMMAND_BYTES_MAX) {
                    Ok(KvResult::Malformed) => Err(ClientError::Protocol(
                        "server could not decode the operation".to_string(),
                    )),
                    Ok(result) => Ok(result),
                    Err(e) => Err(ClientError::Protocol(e.to_string())),
                }
            }
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
    /// the presumed leader, or with `any_server` to each server in turn.
    async fn request(
        &mut self,
        request: &ClientRequest,
        any_server: bool,
    ) -> Result<Bytes, ClientError> {
        if self.config.servers.is_empty() {
            return Err(ClientError::NoServers);
        }
        let mut last = String::new();
        for attempt in 0..self.config.attempts_max {
            if attempt > 0 {
                self.retries += 1;
            }
            let target = match self.leader {
                Some(leader) if !any_server => leader,
                _ => self.next_target % self.config.servers.len(),
            };
            if any_server {
                // Spread reads over the servers.
                self.next_target = target + 1;
            }
            match self.call(target, request).await {
                Ok(ClientResponse::Done(bytes)) => {
                    if !any_server {
                        self.leader = Some(target);
                    }
                    return Ok(bytes);
                }
                Ok(ClientResponse::NotLeader {
                    leader_hint,
                    leader_addr,
                }) => {
                    last = format!(
                        "{} is not the leader (hint: {leader_hint:?})",
                        self.config.servers[target]
                    );
                    match leader_addr
                        .and_then(|addr| self.config.servers.iter().position(|s| *s == addr))
                    {
                        Some(index) if index != target && !any_server => self.leader = Some(index),
                        _ => {
                            self.leader = None;
                            self.next_target = target + 1;
                            tokio::time::sleep(self.config.retry_backoff).await;
                        }
                    }
                }
                Ok(ClientResponse::Unknown) => {
                    last = "outcome unknown (leadership changed)".to_string();
                    self.leader = None;
                    self.next_target = target + 1;
                    tokio::time::sleep(self.config.retry_backoff).await;
                }
                Ok(ClientResponse::Busy) => {
                    last = "server busy".to_string();
                    tokio::time::sleep(self.config.retry_backoff).await;
                }
                Ok(ClientResponse::Error(e)) => {
                    last = e;
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
                    last = e;
                    self.leader = None;
                    self.next_target = target + 1;
                    tokio::time::sleep(self.config.retry_backoff).await;
                }
            }
        }
        Err(ClientError::RetriesExhausted {
            attempts: self.config.attempts_max,
            last,
        })
    }

    /// Sends a membership request (see [`AdminRequest`]) and returns the
    /// server's answer: to the leader for a change, following
    /// [`AdminResponse::NotLeader`] redirects (also to a leader whose
    /// address was not in [`ClientConfig::servers`]), retrying only
    /// connection failures. [`AdminRequest::List`] is answered by the
    /// leader when one is known and reachable (only it knows the
    /// followers' progress), otherwise by any server.
    /// [`AdminResponse::Refused`] and [`AdminResponse::TimedOut`] are
    /// returned as they are: a timed-out change may still take effect, so
    /// it is never sent again blindly.
    pub async fn admin(&mut self, request: AdminRequest) -> Result<AdminResponse, ClientError> {
        if self.config.servers.is_empty() {
            return Err(ClientError::NoServers);
        }
        let timeout = self.config.request_timeout.max(ADMIN_ATTEMPT_TIMEOUT_MIN);
        let list = request == AdminRequest::List;
        let wire = ClientRequest::Admin(request);
        let mut last = String::new();
        let mut listed: Option<AdminResponse> = None;
        for attempt in 0..self.config.attempts_max {
            if attempt > 0 {
                self.retries += 1;
            }
            let target = match self.leader {
                Some(leader) => leader,
                None => self.next_target % self.config.servers.len(),
            };
            let call_timeout = if list {
                self.config.request_timeout
            } else {
                // A change is sent only over a connection that just
                // answered: a server that cannot be reached is tried like
                // any failed attempt, while one that took the change and
                // then went silent leaves its outcome unknown.
                if let Err(e) = self
                    .call_within(target, &ClientRequest::Status, self.config.request_timeout)
                    .await
                {
                    last = e;
                    self.leader = None;
                    self.next_target = target + 1;
                    tokio::time::sleep(self.config.retry_backoff).await;
                    continue;
                }
                timeout
            };
            match self.call_within(target, &wire, call_timeout).await {
                Ok(ClientResponse::Admin(AdminResponse::NotLeader {
                    leader_hint,
                    leader_addr,
                })) => {
                    last = format!(
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
                Ok(ClientResponse::Admin(AdminResponse::Done(members))) if list => {
                    // Ask the leader for its fuller view, once.
                    let leader_addr = members
                        .leader
                        .filter(|leader| *leader != members.answered_by)
                        .and_then(|leader| members.members.iter().find(|m| m.id == leader))
                        .and_then(|m| m.addr.clone());
                    if listed.is_some() {
                        return Ok(AdminResponse::Done(members));
                    }
                    match leader_addr.and_then(|addr| self.server_index(&addr)) {
                        Some(index) if index != target => {
                            listed = Some(AdminResponse::Done(members));
                            self.leader = Some(index);
                        }
                        _ => return Ok(AdminResponse::Done(members)),
                    }
                }
                Ok(ClientResponse::Admin(answer)) => {
                    self.leader = Some(target);
                    return Ok(answer);
                }
                Ok(ClientResponse::Error(e)) => {
                    last = e;
                    self.leader = None;
                    self.next_target = target + 1;
                    tokio::time::sleep(self.config.retry_backoff).await;
                }
                Ok(other) => {
                    return Err(ClientError::Protocol(format!(
                        "unexpected answer to a membership request: {other:?}"
                    )))
                }
                Err(e) => {
                    if let Some(answer) = listed.take() {
                        // The leader's view is out of reach: the first one.
                        return Ok(answer);
                    }
                    if !list && e.starts_with("no answer from") {
                        // Sent, not answered: the change may be under way.
                        return Ok(AdminResponse::TimedOut(format!(
                            "{e}; the change may or may not take effect: run `member list`"
                        )));
                    }
                    last = e;
                    self.leader = None;
                    self.next_target = target + 1;
                    tokio::time::sleep(self.config.retry_backoff).await;
                }
            }
        }
        Err(ClientError::RetriesExhausted {
            attempts: self.config.attempts_max,
            last,
        })
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
        Some(self.config.servers.len() - 1)
    }

    /// Asks server number `server` (index in the list) for its status.
    pub async fn status(&mut self, server: usize) -> Result<NodeStatus, ClientError> {
        if server >= self.config.servers.len() {
            return Err(ClientError::NoServers);
        }
        match self.call(server, &ClientRequest::Status).await {
            Ok(ClientResponse::Status(status)) => Ok(*status),
            Ok(other) => Err(ClientError::Protocol(format!(
                "unexpected answer {other:?}"
            ))),
            Err(e) => {
                self.connections[server] = None;
                Err(ClientError::RetriesExhausted {
                    attempts: 1,
                    last: e,
                })
            }
        }
    }

    async fn call(
        &mut self,
        target: usize,
        request: &ClientRequest,
    ) -> Result<ClientResponse, String> {
        self.call_within(target, request, self.config.request_timeout)
            .await
    }

    async fn call_within(
        &mut self,
        target: usize,
        request: &ClientRequest,
        timeout: Duration,
    ) -> Result<ClientResponse, String> {
        match tokio::time::timeout(timeout, self.call_inner(target, request)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => {
                self.connections[target] = None;
                Err(e)
            }
            Err(_) => {
                self.connections[target] = None;
                Err(format!(
                    "no answer from {} within {timeout:?}",
                    self.config.servers[target]
                ))
            }
        }
    }

    async fn call_inner(
        &mut self,
        target: usize,
        request: &ClientRequest,
    ) -> Result<ClientResponse, String> {
        if self.connections[target].is_none() {
            let hello = Hello {
                cluster_id: self.config.cluster_id.clone(),
                role: HelloRole::Client,
            };
            let (stream, _) = connect(
                &self.config.servers[target],
                &hello,
                DEFAULT_MAX_FRAME_BYTES,
                self.config.request_timeout,
                self.config.tls.as_deref(),
            )
            .await?;
            self.connections[target] = Some(stream);
        }
        let Some(stream) = self.connections[target].as_mut() else {
            return Err("not connected".to_string());
        };
        self.buf.clear();
        frame::encode_frame(request, &mut self.buf).map_err(|e| e.to_string())?;
        stream
            .write_all(&self.buf)
            .await
            .map_err(|e| format!("send failed: {e}"))?;
        stream
            .flush()
            .await
            .map_err(|e| format!("send failed: {e}"))?;
        frame::read_value(stream, &mut self.buf, DEFAULT_MAX_FRAME_BYTES)
            .await
            .map_err(|e| format!("{}: {e}", self.config.servers[target]))
    }
}
