//! The plumbing every service shares on a real cluster (feature
//! `runtime`): a server started from command-line flags, and a client
//! with leader discovery, retries and exactly-once sessions.
//!
//! A service supplies a state machine and a request codec; it does not
//! touch sockets, the write-ahead log or sessions. Writes go through the
//! log inside a session (a retried write is applied once); reads go
//! through the linearizable read path (`ReadIndex` at the leader, answered
//! by [`StateMachine::query`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use thiserror::Error;

use concord::session::{self, ClientId, SessionResponse, WithSessions};
use concord::state_machine::StateMachine;
use concord::tokio::client::{Client, ClientConfig, ClientError};
use concord::tokio::cluster::{start_node, NodeSettings};
use concord::tokio::wal::{FileStorage, WalOptions};
use concord::{NodeId, ReadPath};

/// Sessions a server remembers (the least recently used is evicted
/// beyond it; its client then gets "session expired").
pub const SESSIONS_MAX: usize = 65_536;

/// A service's request, as its typed client sends it through
/// [`ServiceClient::call`].
pub trait ServiceRequest {
    /// The service's answer.
    type Response;
    /// Whether the request only reads (answered without a log entry).
    fn is_read(&self) -> bool;
    /// Refuses, before sending, a request the service would refuse.
    fn validate(&self) -> Result<(), String>;
    /// The request's bytes, carrying `op_id`.
    fn encode(&self, op_id: u64) -> Bytes;
    /// Decodes an answer; the inner `Err` is a refusal's reason.
    fn decode_response(
        bytes: &[u8],
    ) -> Result<Result<Self::Response, String>, crate::codec::DecodeError>;
}

/// Flags of `<service> serve`.
#[derive(Args, Clone, Debug)]
pub struct ServeArgs {
    /// This node's id (a positive integer, one of --peers).
    #[arg(long)]
    pub id: NodeId,
    /// Address to serve peers and clients on (host:port).
    #[arg(long)]
    pub listen: String,
    /// Every node of the cluster as id=host:port, comma separated.
    #[arg(long, value_parser = parse_peers)]
    pub peers: BTreeMap<NodeId, String>,
    /// Directory of the write-ahead log and snapshots (created if missing).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// The cluster's name; connections naming another are refused.
    #[arg(long, default_value = "concord")]
    pub cluster_id: String,
    /// Length of one Raft tick, milliseconds.
    #[arg(long, default_value_t = 10)]
    pub tick_ms: u64,
    /// Snapshot the state every this many applied entries (0: never).
    #[arg(long, default_value_t = 100_000)]
    pub snapshot_every_entries: u64,
    /// Prefer this node as leader: while it is healthy and caught up, the
    /// leader hands leadership to it (the core's priority election). Give
    /// every server the same value.
    #[arg(long)]
    pub preferred_leader: Option<NodeId>,
}

/// Parses `1=127.0.0.1:7001,2=127.0.0.1:7002`.
pub fn parse_peers(text: &str) -> Result<BTreeMap<NodeId, String>, String> {
    let mut peers = BTreeMap::new();
    for item in text.split(',').filter(|item| !item.trim().is_empty()) {
        let (id, addr) = item
            .split_once('=')
            .ok_or_else(|| format!("{item:?} is not id=host:port, e.g. 1=127.0.0.1:7001"))?;
        let id: NodeId = id
            .trim()
            .parse()
            .ok()
            .filter(|id| *id > 0)
            .ok_or_else(|| format!("{id:?} is not a positive node id"))?;
        let addr = addr.trim();
        addr.parse::<std::net::SocketAddr>()
            .map_err(|_| format!("{addr:?} is not a host:port address like 127.0.0.1:7001"))?;
        if peers.insert(id, addr.to_string()).is_some() {
            return Err(format!("node {id} is listed twice"));
        }
    }
    if peers.is_empty() {
        return Err("list at least one node as id=host:port".to_string());
    }
    Ok(peers)
}

/// Why a server stopped or could not start.
#[derive(Debug, Error)]
pub enum ServeError {
    /// The flags contradict each other.
    #[error("invalid flags: {0}")]
    Flags(String),
    /// The data directory could not be opened.
    #[error("cannot open the data directory {dir}: {reason}")]
    DataDir {
        /// The directory.
        dir: String,
        /// What went wrong.
        reason: String,
    },
    /// The server failed.
    #[error("server: {0}")]
    Server(String),
}

/// Runs one server of a service until SIGINT/SIGTERM: `state_machine`
/// (wrapped in sessions) behind concord's TCP server, its log and
/// snapshots under `--data-dir`. Must be called inside a tokio runtime.
pub async fn serve<S>(args: ServeArgs, state_machine: S) -> Result<(), ServeError>
where
    S: StateMachine + Send + 'static,
{
    match args.peers.get(&args.id) {
        Some(addr) if *addr != args.listen => {
            return Err(ServeError::Flags(format!(
                "--peers lists node {} at {addr} but --listen is {}",
                args.id, args.listen
            )))
        }
        Some(_) => {}
        None => {
            return Err(ServeError::Flags(format!(
                "--peers must list this node ({}={})",
                args.id, args.listen
            )))
        }
    }
    if args.tick_ms == 0 || args.tick_ms > 10_000 {
        return Err(ServeError::Flags(format!(
            "--tick-ms {} is outside 1..=10000",
            args.tick_ms
        )));
    }
    let storage = FileStorage::open(&args.data_dir, WalOptions::default()).map_err(|e| {
        ServeError::DataDir {
            dir: args.data_dir.display().to_string(),
            reason: e.to_string(),
        }
    })?;
    let mut settings = NodeSettings::new(
        args.id,
        args.listen.clone(),
        args.peers.clone(),
        args.cluster_id.clone(),
    );
    settings.tick = Duration::from_millis(args.tick_ms);
    settings.snapshot_every_entries =
        (args.snapshot_every_entries > 0).then_some(args.snapshot_every_entries);
    if let Some(preferred) = args.preferred_leader {
        if !args.peers.contains_key(&preferred) {
            return Err(ServeError::Flags(format!(
                "--preferred-leader {preferred} is not one of --peers"
            )));
        }
        settings.priorities = BTreeMap::from([(preferred, 1)]);
    }
    settings
        .raft_config()
        .validate()
        .map_err(|e| ServeError::Flags(e.to_string()))?;
    let mut node = start_node(
        settings,
        WithSessions::new(state_machine, SESSIONS_MAX),
        storage,
    )
    .await
    .map_err(|e| ServeError::Server(e.to_string()))?;
    tracing::info!(id = args.id, listen = %node.local_addr, cluster = %args.cluster_id, "serving");
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| ServeError::Server(format!("cannot install a SIGTERM handler: {e}")))?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
        _ = sigterm.recv() => tracing::info!("SIGTERM: shutting down"),
        result = node.server.wait() => return result.map_err(|e| ServeError::Server(e.to_string())),
    }
    node.shutdown()
        .await
        .map_err(|e| ServeError::Server(e.to_string()))
}

/// Why a service call failed, and whether it may have been applied.
#[derive(Debug, Error)]
pub enum CallError {
    /// The request breaks a limit of the service; nothing was sent.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The service refused the request; it changed nothing.
    #[error("refused by the service: {0}")]
    Refused(String),
    /// The cluster could not be reached or did not answer in time. A
    /// write may or may not have been applied.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// An answer that does not parse (a client and servers of different
    /// versions?). A write may or may not have been applied.
    #[error("unexpected answer from the service: {0}")]
    Protocol(String),
}

impl CallError {
    /// Whether the call certainly changed nothing (so a history may record
    /// it as failed rather than unknown).
    pub fn definitely_not_applied(&self) -> bool {
        matches!(
            self,
            CallError::Invalid(_)
                | CallError::Refused(_)
                | CallError::Client(ClientError::NoServers)
                | CallError::Client(ClientError::Server(_))
                | CallError::Client(ClientError::CommandTooLarge { .. })
        )
    }
}

/// A client of any service: concord's [`Client`] (leader discovery,
/// redirects, bounded retries) plus a session registered on first write,
/// so a write retried after a lost answer is applied once.
#[derive(Debug)]
pub struct ServiceClient {
    client: Client,
    servers: usize,
    session: Option<ClientId>,
    next_seq: u64,
    next_op_id: u64,
    /// Wait after each write until every healthy server has applied it.
    acknowledge_all: bool,
}

/// How long [`ServiceClient::set_acknowledge_all`] waits for a server to
/// apply a write before counting it unhealthy for that write.
pub const ALL_APPLIED_WAIT_MAX: Duration = Duration::from_secs(1);
/// Pause between two status polls while waiting for a server to apply.
const ALL_APPLIED_POLL: Duration = Duration::from_millis(1);

impl ServiceClient {
    /// A client of the cluster at `servers` named `cluster_id`.
    pub fn new(servers: Vec<String>, cluster_id: &str) -> Self {
        ServiceClient::with_config(ClientConfig::new(servers, cluster_id))
    }

    /// A client with explicit settings.
    pub fn with_config(config: ClientConfig) -> Self {
        ServiceClient {
            servers: config.servers.len(),
            client: Client::new(config),
            session: None,
            next_seq: 1,
            next_op_id: 1,
            acknowledge_all: false,
        }
    }

    /// With `enabled`, a write returns only once every healthy server has
    /// applied it, not just a majority: after the leader's answer the
    /// client reads the highest commit index any server reports (at or
    /// past the write) and polls each server's status until it has
    /// applied that far. A server that does not answer, or has not applied
    /// within [`ALL_APPLIED_WAIT_MAX`], counts as unhealthy and is not
    /// waited for. Costs a status round trip to every server per write,
    /// plus the slowest replica's apply delay.
    pub fn set_acknowledge_all(&mut self, enabled: bool) {
        self.acknowledge_all = enabled;
    }

    /// Waits until every server that answers has applied everything
    /// committed when the write was acknowledged.
    async fn wait_all_applied(&mut self) {
        let mut target = 0;
        for server in 0..self.servers {
            if let Ok(status) = self.client.status(server).await {
                target = target.max(status.commit_index);
            }
        }
        for server in 0..self.servers {
            let deadline = tokio::time::Instant::now() + ALL_APPLIED_WAIT_MAX;
            loop {
                match self.client.status(server).await {
                    Ok(status) if status.applied_index >= target => break,
                    Ok(_) if tokio::time::Instant::now() < deadline => {
                        tokio::time::sleep(ALL_APPLIED_POLL).await;
                    }
                    // Not answering, or too slow: unhealthy for this write.
                    _ => break,
                }
            }
        }
    }

    /// The session, once registered.
    pub fn session(&self) -> Option<ClientId> {
        self.session
    }

    /// The server currently believed to lead.
    pub fn leader(&self) -> Option<&str> {
        self.client.leader()
    }

    /// A fresh operation id for a request (unique within this client's
    /// session).
    pub fn next_op_id(&mut self) -> u64 {
        let id = (self.session.unwrap_or(0) << 32) | self.next_op_id;
        self.next_op_id += 1;
        id
    }

    async fn register(&mut self) -> Result<ClientId, CallError> {
        if let Some(session) = self.session {
            return Ok(session);
        }
        let answer = self.client.submit(session::encode_register()).await?;
        match SessionResponse::decode(&answer) {
            Ok(SessionResponse::Registered { client }) => {
                self.session = Some(client);
                self.next_seq = 1;
                Ok(client)
            }
            other => Err(CallError::Protocol(format!(
                "registration answered {other:?}"
            ))),
        }
    }

    /// Sends a write (already encoded by the service) through the log in
    /// this client's session; returns the state machine's response.
    pub async fn write(&mut self, request: Bytes) -> Result<Bytes, CallError> {
        let session = self.register().await?;
        let seq = self.next_seq;
        // A number is never reused for another request, whatever becomes
        // of this one.
        self.next_seq += 1;
        let answer = self
            .client
            .submit(session::encode_command(session, seq, &request))
            .await?;
        match SessionResponse::decode(&answer) {
            Ok(SessionResponse::Ok(bytes)) => {
                if self.acknowledge_all {
                    self.wait_all_applied().await;
                }
                Ok(bytes)
            }
            Ok(SessionResponse::SessionExpired) => {
                self.session = None;
                Err(CallError::Client(ClientError::SessionExpired))
            }
            other => Err(CallError::Protocol(format!("write answered {other:?}"))),
        }
    }

    /// Sends `request` of a typed client: checked first, then as a read
    /// on `read_path` or as a write through the log; a refusal becomes
    /// [`CallError::Refused`].
    pub async fn call<R: ServiceRequest>(
        &mut self,
        request: R,
        read_path: ReadPath,
    ) -> Result<R::Response, CallError> {
        request.validate().map_err(CallError::Invalid)?;
        let op_id = self.next_op_id();
        let bytes = request.encode(op_id);
        let answer = if request.is_read() {
            self.read_via(bytes, read_path).await?
        } else {
            self.write(bytes).await?
        };
        match R::decode_response(&answer) {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(reason)) => Err(CallError::Refused(reason)),
            Err(error) => Err(CallError::Protocol(error.to_string())),
        }
    }

    /// Sends a read (already encoded by the service) on the linearizable
    /// read path, answered without a log entry.
    pub async fn read(&mut self, request: Bytes) -> Result<Bytes, CallError> {
        self.read_via(request, ReadPath::ReadIndex).await
    }

    /// Sends a read on `path`: `Follower` reads go to any server (each in
    /// turn), which answers once it has applied the leader's commit index
    /// (still linearizable).
    pub async fn read_via(&mut self, request: Bytes, path: ReadPath) -> Result<Bytes, CallError> {
        Ok(self.client.read(request, path).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse_and_bad_ones_say_why() {
        let peers = parse_peers("1=127.0.0.1:7001, 2=127.0.0.1:7002").unwrap();
        assert_eq!(peers.len(), 2);
        assert_eq!(peers[&2], "127.0.0.1:7002");
        assert!(parse_peers("").unwrap_err().contains("at least one"));
        assert!(parse_peers("0=127.0.0.1:1")
            .unwrap_err()
            .contains("positive"));
        assert!(parse_peers("1=nowhere").unwrap_err().contains("host:port"));
        assert!(parse_peers("1=127.0.0.1:1,1=127.0.0.1:2")
            .unwrap_err()
            .contains("twice"));
    }
}
