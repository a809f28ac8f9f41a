//! `concord-node`'s settings: the command line (clap, with `CONCORD_*`
//! environment fallbacks), the TOML config file, and the two merged into
//! [`ServerSettings`], everything a server needs to start.
//!
//! Precedence, highest first: a flag, its environment variable, the key in
//! the `--config` file, the default. A switch (`--join`, `--witness`,
//! `--no-fsync`, `--accept-wal-data-loss`) can only be turned on from the command line;
//! the file may set it either way.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use concord::NodeId;
use concord_services::ServiceKind;
use concord_tokio::cluster::{
    NodeSettings, COMPACTION_TRAILING_ENTRIES_DEFAULT, SNAPSHOT_EVERY_ENTRIES_DEFAULT,
};
use concord_tokio::tls;
use serde::Deserialize;

use crate::observability::{LogFormat, ObservabilityFlags};
use crate::parse::{self, Peers};

/// Default length of one Raft tick.
pub const TICK_MS_DEFAULT: u64 = 10;
/// Longest tick a server accepts.
pub const TICK_MS_MAX: u64 = 10_000;
/// Default clock drift bound of lease reads, in ticks.
pub const CLOCK_DRIFT_BOUND_TICKS_DEFAULT: u32 = 3;
/// Runtime worker threads on a machine of more than
/// [`SMALL_MACHINE_CORES_MAX`] cores when none are given (the WAL writer
/// thread is extra).
pub const WORKER_THREADS_DEFAULT: usize = 2;
/// Most cores of a machine on which a server runs one worker thread when
/// none are given: there the WAL writer thread has the other core, and
/// one worker (a current-thread runtime, no wake-ups across threads) did
/// 30 to 36 % more puts a second than two on 2 cores, at 68 to 82 % of
/// the CPU per put (3 servers, 1 to 256 clients;
/// benches/results/2026-12-02-default-threads.md).
pub const SMALL_MACHINE_CORES_MAX: usize = 2;

/// The runtime worker threads of a server given none, on a machine of
/// `cores` cores: 1 up to [`SMALL_MACHINE_CORES_MAX`] cores, else
/// [`WORKER_THREADS_DEFAULT`].
pub fn worker_threads_default(cores: usize) -> usize {
    if cores <= SMALL_MACHINE_CORES_MAX {
        1
    } else {
        WORKER_THREADS_DEFAULT
    }
}
/// Most runtime worker threads a server accepts.
pub const WORKER_THREADS_MAX: usize = 256;

/// `concord-node`: runs one server of a concord cluster of one service.
#[derive(Debug, Parser)]
#[command(
    name = "concord-node",
    version,
    about = "Runs one server of a concord cluster (--service kv, directory, orders or chat)",
    long_about = "Runs one server of a concord cluster of one service: the key-value store \
        (--service kv, the default), directory, orders or chat.\n\n\
        Every setting can come from a flag, its CONCORD_* environment variable, or a key of \
        the TOML file named by --config (the key is the flag's name without the dashes, \
        e.g. `data-dir`; `fsync = false` for --no-fsync); a flag or variable overrides the \
        file. Stops gracefully on SIGINT/SIGTERM. Logs go to stderr; RUST_LOG (e.g. \
        RUST_LOG=concord=debug) selects more.",
    after_help = "Example:\n  concord-node --id 1 --listen 127.0.0.1:7001 \\\n      \
        --peers 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003 \\\n      \
        --data-dir /tmp/concord-1 --cluster-id demo\n  concord-node --config server.toml --id 2\n  \
        concord-node local-cluster --service chat --nodes 3",
    args_conflicts_with_subcommands = true
)]
pub struct NodeArgs {
    /// Something other than serving (shell completions).
    #[command(subcommand)]
    pub command: Option<NodeCommand>,
    /// The server's settings (logs and metrics among them).
    #[command(flatten)]
    pub server: ServerFlags,
}

/// `concord-node`'s subcommands; without one it serves.
#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Run a whole cluster on this machine, one `concord-node` process per
    /// server on 127.0.0.1, until Ctrl-C (data kept across restarts).
    LocalCluster(LocalClusterArgs),
    /// Print a completion script for a shell to stdout (e.g.
    /// `concord-node completions bash > /etc/bash_completion.d/concord-node`).
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
}

/// Most servers `local-cluster` starts.
pub const LOCAL_CLUSTER_NODES_MAX: u16 = 7;

/// Flags of `concord-node local-cluster`.
#[derive(Clone, Debug, Args)]
pub struct LocalClusterArgs {
    /// The service the servers run.
    #[arg(long, value_name = "NAME", default_value = "kv", value_parser = service_kind)]
    pub service: ServiceKind,
    /// Servers to run (1 to 7).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=LOCAL_CLUSTER_NODES_MAX as i64))]
    pub nodes: u16,
    /// Port of server 1; server N listens on BASE_PORT + N - 1 on
    /// 127.0.0.1.
    #[arg(long, default_value_t = 7001)]
    pub base_port: u16,
    /// Directory holding one data directory per server (created if
    /// missing; kept, so a restart continues where it stopped).
    #[arg(long, value_name = "DIR", default_value = "concord-data")]
    pub data_dir: PathBuf,
    /// Prefer the server with the highest id as leader whenever it is
    /// healthy (the directory's deployment shape).
    #[arg(long)]
    pub prefer_highest_id: bool,
    /// Serve each server's Prometheus metrics: server N on
    /// `http://HOST:(PORT + N - 1)/metrics`.
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// A `--service` name.
pub fn service_kind(value: &str) -> Result<ServiceKind, String> {
    ServiceKind::from_name(value)
}

/// The server flags, each optional here: a missing one may come from the
/// config file or a default ([`ServerSettings::resolve`]).
#[derive(Clone, Debug, Default, Args)]
pub struct ServerFlags {
    /// The service this server runs: kv (the key-value store, the
    /// default), directory, orders or chat; every server of a cluster runs
    /// the same one.
    #[arg(long, env = "CONCORD_SERVICE", value_name = "NAME", value_parser = service_kind)]
    pub service: Option<ServiceKind>,
    /// Read settings from this TOML file (see `node/examples/server.toml`);
    /// flags and CONCORD_* variables override its keys.
    #[arg(long, env = "CONCORD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// This node's id (a positive integer, one of --peers; with --join,
    /// not one of them).
    #[arg(long, env = "CONCORD_ID", value_name = "ID", value_parser = parse::node_id)]
    pub id: Option<NodeId>,
    /// Address to serve peers and clients on.
    #[arg(long, env = "CONCORD_LISTEN", value_name = "HOST:PORT", value_parser = parse::addr)]
    pub listen: Option<String>,
    /// Every node of the cluster as id=host:port, comma separated.
    ///
    /// This node is one of them, at its --listen address; ids and
    /// addresses are each listed once. With --join: the voters of the
    /// cluster to join, without this node.
    #[arg(long, env = "CONCORD_PEERS", value_name = "ID=HOST:PORT,...", value_parser = parse::peers)]
    pub peers: Option<Peers>,
    /// Directory for the write-ahead log and snapshots (created if
    /// missing).
    #[arg(long, env = "CONCORD_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The cluster's name; connections naming another are refused.
    #[arg(long, env = "CONCORD_CLUSTER_ID", value_name = "NAME", value_parser = parse::cluster_id)]
    pub cluster_id: Option<String>,
    /// Start as a new, empty learner of a running cluster whose voters are
    /// --peers.
    ///
    /// This node is not one of --peers; add it with `concord-cli member
    /// add-learner <ID> <HOST:PORT>` and promote it once caught up. Ignored
    /// once the node's log holds a configuration (after it was added).
    /// With --groups N: a new, empty server of a multi-group cluster; it
    /// follows the catalog (group 0) and hosts the groups it is given
    /// (`concord-cli --groups N member replace OLD <ID> <HOST:PORT>`).
    #[arg(long, env = "CONCORD_JOIN")]
    pub join: bool,
    /// Run as a witness voter: store the log and vote, but keep no state
    /// machine, never lead, and redirect clients to the leader.
    ///
    /// In a new cluster the node must also be listed in --witnesses (on
    /// every server); with --join it joins a running cluster, to be added
    /// with `concord-cli member add-witness <ID> <HOST:PORT>`. A witness's
    /// data is only as durable as the full voters' disks: see the README,
    /// "Witness voters".
    #[arg(long, env = "CONCORD_WITNESS")]
    pub witness: bool,
    /// The witnesses among --peers in a new cluster, comma separated ids;
    /// give every server the same list.
    ///
    /// The full voters must stay a majority of --peers. Ignored once the
    /// node's log holds a configuration.
    #[arg(long, env = "CONCORD_WITNESSES", value_name = "ID,...", value_delimiter = ',', value_parser = parse::node_id)]
    pub witnesses: Option<Vec<NodeId>>,
    /// Length of one Raft tick in milliseconds [default: 10].
    #[arg(long, env = "CONCORD_TICK_MS", value_name = "MS", value_parser = tick_ms_text)]
    pub tick_ms: Option<u64>,
    /// Do not fsync the log (unsafe: for experiments only).
    #[arg(long, env = "CONCORD_NO_FSYNC")]
    pub no_fsync: bool,
    /// Start even if the write-ahead log lost records it had fsynced.
    ///
    /// The log is truncated there and the loss logged at error level; the
    /// node rejoins with a shorter log. Without it such a node refuses to
    /// start, naming the file and offset.
    #[arg(long, env = "CONCORD_ACCEPT_WAL_DATA_LOSS")]
    pub accept_wal_data_loss: bool,
    /// Mutual TLS 1.3 for every peer and client connection: the cluster's
    /// CA certificate (PEM). All three --tls-* settings or none; without
    /// them the node speaks plaintext and says so in its log.
    #[arg(long, env = "CONCORD_TLS_CA", value_name = "PEM")]
    pub tls_ca: Option<PathBuf>,
    /// This node's certificate (PEM), naming `node-<ID>.<CLUSTER-ID>`
    /// (`cargo run --example make_certs` makes them for a
    /// test cluster).
    #[arg(long, env = "CONCORD_TLS_CERT", value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,
    /// This node's private key (PEM).
    #[arg(long, env = "CONCORD_TLS_KEY", value_name = "PEM")]
    pub tls_key: Option<PathBuf>,
    /// Snapshot the state machine (and delete the log it covers) once this
    /// many entries were applied since the last snapshot [default: 100000;
    /// 0 never snapshots].
    #[arg(long, env = "CONCORD_SNAPSHOT_EVERY_ENTRIES", value_name = "N")]
    pub snapshot_every_entries: Option<u64>,
    /// Entries kept in the log below a snapshot, so a follower a little
    /// behind catches up from the log [default: 1024].
    #[arg(long, env = "CONCORD_COMPACTION_TRAILING_ENTRIES", value_name = "N")]
    pub compaction_trailing_entries: Option<u64>,
    /// The snapshot bandwidth limit of this server: most bytes of snapshot
    /// chunks it sends per second, to every peer and group together (what
    /// a new or returning server is caught up with, and a rebalance's moves
    /// cost). Chunks over it wait; writes and heartbeats are not held
    /// [default: 0, no limit].
    #[arg(
        long,
        env = "CONCORD_SNAPSHOT_SEND_BYTES_PER_SEC",
        value_name = "BYTES"
    )]
    pub snapshot_send_bytes_per_sec: Option<u64>,
    /// Lease reads: the leader answers a read without a round trip while
    /// fewer than N ticks passed since a heartbeat a quorum answered
    /// [default: 0, off].
    ///
    /// N plus the drift bound must stay below the minimum election timeout
    /// (15 ticks; 10 with --groups N). Assumes the hosts' clocks run at rates within the drift
    /// bound of each other. Without leases, reads use a heartbeat round.
    #[arg(long, env = "CONCORD_LEASE_TICKS", value_name = "N")]
    pub lease_ticks: Option<u32>,
    /// How many ticks clocks may drift apart over a minimum election
    /// timeout; the lease leaves room for it [default: 3].
    #[arg(long, env = "CONCORD_CLOCK_DRIFT_BOUND_TICKS", value_name = "N")]
    pub clock_drift_bound_ticks: Option<u32>,
    /// Prefer this node as leader: while it is healthy and caught up, the
    /// leader hands leadership to it (the core's priority election). Give
    /// every server the same value.
    #[arg(long, env = "CONCORD_PREFERRED_LEADER", value_name = "ID", value_parser = parse::node_id)]
    pub preferred_leader: Option<NodeId>,
    /// With --groups N: each group prefers one of the full voters as
    /// leader, chosen from the group id the same way on every server, so
    /// leadership is balanced across them and handed back to a server
    /// that restarted (docs/sharded-store.md, "Leases, follower reads,
    /// witnesses, preferred leader"). Give every server the same setting.
    #[arg(
        long,
        env = "CONCORD_SPREAD_LEADERS",
        conflicts_with = "preferred_leader"
    )]
    pub spread_leaders: bool,
    /// With --groups N: while this server leads the catalog (group 0),
    /// it moves replicas itself until the cluster is balanced, as
    /// `concord-cli cluster balance` does, and goes on watching: a server
    /// added with `cluster add-server` then fills, and one set draining
    /// empties, with no command left running. Give every server the same
    /// setting; only the catalog's leader acts.
    #[arg(long, env = "CONCORD_BALANCE")]
    pub balance: bool,
    /// Runtime worker threads, besides the WAL writer thread [default: 1
    /// on a machine of at most 2 cores, else 2; 1: a single-threaded
    /// runtime, which costs less CPU per write; use it where nodes share a
    /// machine's cores].
    #[arg(long, env = "CONCORD_NODE_THREADS", value_name = "N", value_parser = worker_threads_text)]
    pub worker_threads: Option<usize>,
    /// Logs and metrics.
    #[command(flatten)]
    pub observability: ObservabilityFlags,
    /// Raft groups this node hosts [default: 1, one group].
    ///
    /// N > 1 runs the service sharded: keys (kv keys, users, customers,
    /// accounts) hashed onto groups 1..=N, every group on every node of
    /// --peers, a client session table in every group, one shared
    /// write-ahead log and one connection per peer (docs/multi-group.md).
    /// Every server of the cluster, and `concord-cli --groups`, must give
    /// the same N, and a data directory keeps the N it was started with.
    #[arg(long, env = "CONCORD_GROUPS", value_name = "N", value_parser = groups_text)]
    pub groups: Option<u64>,
    /// Where the key-value store keeps its keys: memory (the default; a
    /// snapshot holds the whole state) or disk (an embedded storage
    /// engine under the data directory, for a state larger than memory:
    /// a restart replays only the log after what the disk holds, a
    /// snapshot streams from a point-in-time view). Needs a build with
    /// feature `disk`; a data directory keeps the storage it was started
    /// with.
    #[arg(long, env = "CONCORD_STORAGE", value_name = "memory|disk", value_parser = Storage::from_name)]
    pub storage: Option<Storage>,
}

fn groups_text(value: &str) -> Result<u64, String> {
    check_groups(parse_number(value)?)
}

fn check_groups(n: u64) -> Result<u64, String> {
    check_within(n, concord_services::sharded_kv::GROUPS_MAX)
}

fn tick_ms_text(value: &str) -> Result<u64, String> {
    check_tick_ms(parse_number(value)?)
}

fn check_tick_ms(ms: u64) -> Result<u64, String> {
    check_within(ms, TICK_MS_MAX)
}

fn worker_threads_text(value: &str) -> Result<usize, String> {
    check_worker_threads(parse_number(value)?)
}

fn check_worker_threads(n: usize) -> Result<usize, String> {
    check_within(n, WORKER_THREADS_MAX)
}

/// `value` as a number, or a message saying it is not one.
fn parse_number<T: std::str::FromStr>(value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{value:?} is not a number"))
}

/// `n` if it is between 1 and `max` (both included), or a message naming
/// the range and `n`.
fn check_within<T>(n: T, max: T) -> Result<T, String>
where
    T: Copy + PartialOrd + From<u8> + std::fmt::Display,
{
    if n < T::from(1) || n > max {
        return Err(format!("must be between 1 and {max}, not {n}"));
    }
    Ok(n)
}

/// The `--config` file: every key optional, named like the flag without
/// its dashes; `[peers]` is a table of `id = "host:port"`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServerConfig {
    /// `--service`.
    pub service: Option<String>,
    /// `--id`.
    pub id: Option<u64>,
    /// `--listen`.
    pub listen: Option<String>,
    /// `--peers`, as a table: `[peers]` then `1 = "127.0.0.1:7001"`.
    pub peers: Option<BTreeMap<String, String>>,
    /// `--data-dir` (relative to the working directory, like the flag).
    pub data_dir: Option<PathBuf>,
    /// `--cluster-id`.
    pub cluster_id: Option<String>,
    /// `--join`.
    pub join: Option<bool>,
    /// `--witness`.
    pub witness: Option<bool>,
    /// `--witnesses`, as an array of ids: `witnesses = [3]`.
    pub witnesses: Option<Vec<u64>>,
    /// `--tick-ms`.
    pub tick_ms: Option<u64>,
    /// `false` is `--no-fsync`.
    pub fsync: Option<bool>,
    /// `--accept-wal-data-loss`.
    pub accept_wal_data_loss: Option<bool>,
    /// `--snapshot-every-entries`.
    pub snapshot_every_entries: Option<u64>,
    /// `--compaction-trailing-entries`.
    pub compaction_trailing_entries: Option<u64>,
    /// `--snapshot-send-bytes-per-sec`.
    pub snapshot_send_bytes_per_sec: Option<u64>,
    /// `--lease-ticks`.
    pub lease_ticks: Option<u32>,
    /// `--clock-drift-bound-ticks`.
    pub clock_drift_bound_ticks: Option<u32>,
    /// `--worker-threads`.
    pub worker_threads: Option<usize>,
    /// `--preferred-leader`.
    pub preferred_leader: Option<u64>,
    /// `--spread-leaders`.
    pub spread_leaders: Option<bool>,
    /// `--balance`.
    pub balance: Option<bool>,
    /// `--tls-ca`.
    pub tls_ca: Option<PathBuf>,
    /// `--tls-cert`.
    pub tls_cert: Option<PathBuf>,
    /// `--tls-key`.
    pub tls_key: Option<PathBuf>,
    /// `--metrics-listen`.
    pub metrics_listen: Option<String>,
    /// `--log-format`: `text` or `json`.
    pub log_format: Option<String>,
    /// `--otlp-endpoint`.
    pub otlp_endpoint: Option<String>,
    /// `--groups`.
    pub groups: Option<u64>,
    /// `--storage`: `memory` or `disk`.
    pub storage: Option<String>,
}

/// Every key [`ServerConfig`] accepts, for the "did you mean" of an
/// unknown key (a test checks it against the example config).
pub const CONFIG_KEYS: &[&str] = &[
    "service",
    "id",
    "listen",
    "peers",
    "data-dir",
    "cluster-id",
    "join",
    "witness",
    "witnesses",
    "tick-ms",
    "fsync",
    "accept-wal-data-loss",
    "snapshot-every-entries",
    "compaction-trailing-entries",
    "snapshot-send-bytes-per-sec",
    "lease-ticks",
    "clock-drift-bound-ticks",
    "worker-threads",
    "preferred-leader",
    "spread-leaders",
    "balance",
    "tls-ca",
    "tls-cert",
    "tls-key",
    "metrics-listen",
    "log-format",
    "otlp-endpoint",
    "groups",
    "storage",
];

/// Why `concord-node`'s settings were refused: each names the flag, or the
/// key and the file, and what to give instead.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The config file could not be read.
    #[error("cannot read the config file {file}: {source}")]
    ConfigUnreadable {
        /// The file given to `--config`.
        file: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// The config file is not TOML.
    #[error("{file} is not valid TOML: {message}")]
    ConfigSyntax {
        /// The file given to `--config`.
        file: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// A key the config file may not hold.
    #[error("unknown key `{key}` in {file}, {hint}")]
    UnknownKey {
        /// The file given to `--config`.
        file: PathBuf,
        /// The key as written (`peers.x` for one inside a table).
        key: String,
        /// The closest known key, or the list of them.
        hint: String,
    },
    /// A key whose value is of the wrong type or out of range.
    #[error("key `{key}` in {file}: {message}")]
    BadValue {
        /// The file given to `--config`.
        file: PathBuf,
        /// The key as written (`peers.4` for a peer).
        key: String,
        /// What is wrong with the value.
        message: String,
    },
    /// A setting neither a flag, its variable nor the file gave.
    #[error("missing --{flag} (or {variable}, or `{flag}` in the --config file)")]
    Missing {
        /// The flag's name without dashes, also the config key.
        flag: &'static str,
        /// Its environment variable.
        variable: &'static str,
    },
    /// Settings that contradict each other.
    #[error("{0}")]
    Inconsistent(String),
}

/// Everything a server needs to start, merged from the command line, the
/// config file and the defaults, and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerSettings {
    /// The service this server runs.
    pub service: ServiceKind,
    /// This node's id.
    pub id: NodeId,
    /// Address to serve peers and clients on.
    pub listen: String,
    /// Every node of the cluster, this one included (with `join`: the
    /// voters to join, and this one).
    pub peers: BTreeMap<NodeId, String>,
    /// Write-ahead log and snapshot directory.
    pub data_dir: PathBuf,
    /// The cluster's name.
    pub cluster_id: String,
    /// Start as a new, empty learner (or with `witness`, witness) of a
    /// running cluster.
    pub join: bool,
    /// With `join`: `--peers` named this node too (at its `--listen`),
    /// as the current voters of a cluster it already joined do. Allowed
    /// only once its data directory holds the cluster's configuration,
    /// checked when the node starts (the log's configuration is then in
    /// force and `--join` is ignored).
    pub join_lists_itself: bool,
    /// Run as a witness voter.
    pub witness: bool,
    /// The witnesses among `peers` of a new cluster.
    pub witnesses: BTreeSet<NodeId>,
    /// Length of one Raft tick in milliseconds.
    pub tick_ms: u64,
    /// Fsync the log (off only for experiments).
    pub fsync: bool,
    /// Start past fsynced records the log lost.
    pub accept_wal_data_loss: bool,
    /// Snapshot every this many applied entries; `None` never.
    pub snapshot_every_entries: Option<u64>,
    /// Entries kept in the log below a snapshot.
    pub compaction_trailing_entries: u64,
    /// Most bytes of snapshot chunks sent per second; `None`: no limit.
    pub snapshot_send_bytes_per_sec: Option<u64>,
    /// Lease length in ticks; 0: no lease reads.
    pub lease_ticks: u32,
    /// Clock drift the lease leaves room for, in ticks.
    pub clock_drift_bound_ticks: u32,
    /// Runtime worker threads (1: a single-threaded runtime).
    pub worker_threads: usize,
    /// The node preferred as leader, if any.
    pub preferred_leader: Option<NodeId>,
    /// With `groups` > 1: each group prefers a full voter chosen from its
    /// id (see `group_roles`).
    pub spread_leaders: bool,
    /// With `groups` > 1: balance the cluster while this server leads
    /// the catalog ([`crate::cluster_admin::balance_while_leading`]).
    pub balance: bool,
    /// TLS files: the CA certificate, this node's certificate and key
    /// (checked and loaded when the server starts).
    pub tls_ca: Option<PathBuf>,
    /// See `tls_ca`.
    pub tls_cert: Option<PathBuf>,
    /// See `tls_ca`.
    pub tls_key: Option<PathBuf>,
    /// Address of the Prometheus endpoint, if any (bound when the server
    /// starts).
    pub metrics_listen: Option<String>,
    /// Log line format on stderr.
    pub log_format: LogFormat,
    /// Where the request spans are exported over OTLP/HTTP, if anywhere
    /// (feature `otel`; refused at start without it).
    pub otlp_endpoint: Option<String>,
    /// Raft groups hosted: 1 is one group (a single-group server); more
    /// runs the sharded key-value store on a multi-group host.
    pub groups: u64,
    /// Where the key-value store keeps its keys.
    pub storage: Storage,
}

/// The directory of a data directory that holds the key-value store's
/// keys with `--storage disk`, one store per group.
pub const DISK_DIR_NAME: &str = "kv-disk";

/// Most groups a server with `--storage disk` hosts: each group's store
/// is one storage engine with its own cache (64 MiB) and memtables.
pub const DISK_GROUPS_MAX: u64 = 64;

/// Where the key-value store keeps its keys (`--storage`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Storage {
    /// In memory; a snapshot holds the whole state.
    #[default]
    Memory,
    /// In an embedded storage engine under the data directory (feature
    /// `disk`).
    Disk,
}

impl Storage {
    /// The storage named `name` (`memory` or `disk`).
    pub fn from_name(name: &str) -> Result<Storage, String> {
        match name {
            "memory" => Ok(Storage::Memory),
            "disk" => Ok(Storage::Disk),
            other => Err(format!("{other:?} is no storage: give memory or disk")),
        }
    }

    /// The name `--storage` takes.
    pub fn name(self) -> &'static str {
        match self {
            Storage::Memory => "memory",
            Storage::Disk => "disk",
        }
    }
}

impl ServerSettings {
    /// The node's TLS material from `--tls-ca`, `--tls-cert` and
    /// `--tls-key` (`None` without them), loaded and checked.
    pub fn node_tls(&self) -> Result<Option<std::sync::Arc<tls::TlsConfig>>, String> {
        tls::load_from_flags(
            self.tls_ca.clone(),
            self.tls_cert.clone(),
            self.tls_key.clone(),
            &self.cluster_id,
            tls::TlsRole::Node(self.id),
        )
        .map_err(|e| e.to_string())
    }

    /// Reads `flags.config` if given and merges it under the flags.
    pub fn resolve(flags: &ServerFlags) -> Result<ServerSettings, SettingsError> {
        let file = match &flags.config {
            Some(path) => load_config(path)?,
            None => ServerConfig::default(),
        };
        ServerSettings::merge(flags, &file, flags.config.as_deref())
    }

    /// Merges `flags` over `file` (read from `path`, named in errors) over
    /// the defaults, and checks the result.
    pub fn merge(
        flags: &ServerFlags,
        file: &ServerConfig,
        path: Option<&Path>,
    ) -> Result<ServerSettings, SettingsError> {
        let path = path.unwrap_or(Path::new("the config file"));
        let bad = |key: &str, message: String| SettingsError::BadValue {
            file: path.to_path_buf(),
            key: key.to_string(),
            message,
        };
        let service = match (flags.service, &file.service) {
            (Some(service), _) => service,
            (None, Some(name)) => service_kind(name).map_err(|m| bad("service", m))?,
            (None, None) => ServiceKind::default(),
        };
        let id = match (flags.id, file.id) {
            (Some(id), _) => id,
            (None, Some(id)) => parse::node_id(&id.to_string()).map_err(|m| bad("id", m))?,
            (None, None) => return Err(missing("id", "CONCORD_ID")),
        };
        let listen = match (&flags.listen, &file.listen) {
            (Some(listen), _) => listen.clone(),
            (None, Some(listen)) => parse::addr(listen).map_err(|m| bad("listen", m))?,
            (None, None) => return Err(missing("listen", "CONCORD_LISTEN")),
        };
        let peers = match (&flags.peers, &file.peers) {
            (Some(peers), _) => peers.clone(),
            (None, Some(table)) => peers_from_table(table).map_err(|(k, m)| bad(&k, m))?,
            (None, None) => return Err(missing("peers", "CONCORD_PEERS")),
        };
        let data_dir = flags
            .data_dir
            .clone()
            .or_else(|| file.data_dir.clone())
            .ok_or_else(|| missing("data-dir", "CONCORD_DATA_DIR"))?;
        let cluster_id = match (&flags.cluster_id, &file.cluster_id) {
            (Some(name), _) => name.clone(),
            (None, Some(name)) => parse::cluster_id(name).map_err(|m| bad("cluster-id", m))?,
            (None, None) => return Err(missing("cluster-id", "CONCORD_CLUSTER_ID")),
        };
        let tick_ms = match (flags.tick_ms, file.tick_ms) {
            (Some(ms), _) => ms,
            (None, Some(ms)) => check_tick_ms(ms).map_err(|m| bad("tick-ms", m))?,
            (None, None) => TICK_MS_DEFAULT,
        };
        let worker_threads = match (flags.worker_threads, file.worker_threads) {
            (Some(n), _) => n,
            (None, Some(n)) => check_worker_threads(n).map_err(|m| bad("worker-threads", m))?,
            (None, None) => worker_threads_default(
                std::thread::available_parallelism().map_or(1, |cores| cores.get()),
            ),
        };
        let witnesses = match (&flags.witnesses, &file.witnesses) {
            (Some(ids), _) => witness_set(ids).map_err(SettingsError::Inconsistent)?,
            (None, Some(ids)) => {
                let checked = ids
                    .iter()
                    .map(|id| parse::node_id(&id.to_string()))
                    .collect::<Result<Vec<NodeId>, String>>()
                    .map_err(|m| bad("witnesses", m))?;
                witness_set(&checked).map_err(|m| bad("witnesses", m))?
            }
            (None, None) => BTreeSet::new(),
        };
        let preferred_leader = match (flags.preferred_leader, file.preferred_leader) {
            (Some(id), _) => Some(id),
            (None, Some(id)) => {
                Some(parse::node_id(&id.to_string()).map_err(|m| bad("preferred-leader", m))?)
            }
            (None, None) => None,
        };
        let log_format = match (flags.observability.log_format, &file.log_format) {
            (Some(format), _) => format,
            (None, Some(name)) => LogFormat::from_name(name).map_err(|m| bad("log-format", m))?,
            (None, None) => LogFormat::default(),
        };
        let groups = match (flags.groups, file.groups) {
            (Some(n), _) => n,
            (None, Some(n)) => check_groups(n).map_err(|m| bad("groups", m))?,
            (None, None) => 1,
        };
        let storage = match (flags.storage, &file.storage) {
            (Some(storage), _) => storage,
            (None, Some(name)) => Storage::from_name(name).map_err(|m| bad("storage", m))?,
            (None, None) => Storage::default(),
        };
        let snapshot_every_entries = flags
            .snapshot_every_entries
            .or(file.snapshot_every_entries)
            .unwrap_or(SNAPSHOT_EVERY_ENTRIES_DEFAULT);
        let settings = ServerSettings {
            service,
            id,
            listen,
            peers: peers.0,
            data_dir,
            cluster_id,
            join: flags.join || file.join.unwrap_or(false),
            join_lists_itself: false,
            witness: flags.witness || file.witness.unwrap_or(false),
            witnesses,
            tick_ms,
            fsync: !flags.no_fsync && file.fsync.unwrap_or(true),
            accept_wal_data_loss: flags.accept_wal_data_loss
                || file.accept_wal_data_loss.unwrap_or(false),
            snapshot_every_entries: (snapshot_every_entries > 0).then_some(snapshot_every_entries),
            compaction_trailing_entries: flags
                .compaction_trailing_entries
                .or(file.compaction_trailing_entries)
                .unwrap_or(COMPACTION_TRAILING_ENTRIES_DEFAULT),
            snapshot_send_bytes_per_sec: flags
                .snapshot_send_bytes_per_sec
                .or(file.snapshot_send_bytes_per_sec)
                .filter(|bytes| *bytes > 0),
            lease_ticks: flags.lease_ticks.or(file.lease_ticks).unwrap_or(0),
            clock_drift_bound_ticks: flags
                .clock_drift_bound_ticks
                .or(file.clock_drift_bound_ticks)
                .unwrap_or(CLOCK_DRIFT_BOUND_TICKS_DEFAULT),
            worker_threads,
            preferred_leader,
            spread_leaders: flags.spread_leaders || file.spread_leaders.unwrap_or(false),
            balance: flags.balance || file.balance.unwrap_or(false),
            tls_ca: flags.tls_ca.clone().or_else(|| file.tls_ca.clone()),
            tls_cert: flags.tls_cert.clone().or_else(|| file.tls_cert.clone()),
            tls_key: flags.tls_key.clone().or_else(|| file.tls_key.clone()),
            metrics_listen: flags
                .observability
                .metrics_listen
                .clone()
                .or_else(|| file.metrics_listen.clone()),
            log_format,
            otlp_endpoint: flags
                .observability
                .otlp_endpoint
                .clone()
                .or_else(|| file.otlp_endpoint.clone()),
            groups,
            storage,
        };
        settings
            .with_storage_checked()?
            .with_groups_checked()?
            .with_this_node_in_peers()?
            .with_witnesses_checked()?
            .with_preferred_leader_checked()
    }

    /// Checks that a multi-group node (`groups` > 1) asks only for what
    /// the multi-group host runs.
    /// Checks that disk storage is asked of the key-value store only, and
    /// of at most [`DISK_GROUPS_MAX`] groups.
    fn with_storage_checked(self) -> Result<ServerSettings, SettingsError> {
        if self.storage == Storage::Disk && self.groups > DISK_GROUPS_MAX {
            return Err(SettingsError::Inconsistent(format!(
                "--storage disk runs one storage engine per group (its own cache, memtables \
                 and files), at most {DISK_GROUPS_MAX} groups; --groups {} is more: give \
                 fewer groups, or keep the keys in memory",
                self.groups
            )));
        }
        if self.storage == Storage::Disk && self.service != ServiceKind::Kv {
            return Err(SettingsError::Inconsistent(format!(
                "--storage disk keeps the key-value store's keys on disk; the {} service keeps \
                 its state in memory: drop --storage, or run --service kv",
                self.service.name()
            )));
        }
        Ok(self)
    }

    fn with_groups_checked(self) -> Result<ServerSettings, SettingsError> {
        if self.groups == 1 {
            if self.spread_leaders {
                return Err(SettingsError::Inconsistent(
                    "--spread-leaders spreads the leaderships of many groups (--groups N); \
                     a single-group server prefers one leader with --preferred-leader"
                        .to_string(),
                ));
            }
            if self.balance {
                return Err(SettingsError::Inconsistent(
                    "--balance moves the replicas of many groups (--groups N); a single-group \
                     server has one group on every server"
                        .to_string(),
                ));
            }
            return Ok(self);
        }
        if self.spread_leaders && self.preferred_leader.is_some() {
            return Err(SettingsError::Inconsistent(
                "--spread-leaders and --preferred-leader: each group prefers its own leader, \
                 or every group prefers one; give one of them"
                    .to_string(),
            ));
        }
        Ok(self)
    }

    /// Checks that the preferred leader is one of the voters.
    fn with_preferred_leader_checked(self) -> Result<ServerSettings, SettingsError> {
        match self.preferred_leader {
            Some(id) if !self.join && !self.peers.contains_key(&id) => {
                Err(SettingsError::Inconsistent(format!(
                    "--preferred-leader {id} is not one of --peers; prefer one of the voters"
                )))
            }
            _ => Ok(self),
        }
    }

    /// Checks `witness` and `witnesses` against `peers` and `join`.
    fn with_witnesses_checked(self) -> Result<ServerSettings, SettingsError> {
        let id = self.id;
        if let Some(stranger) = self.witnesses.iter().find(|w| !self.peers.contains_key(w)) {
            return Err(SettingsError::Inconsistent(format!(
                "--witnesses names node {stranger}, which --peers does not list; a witness of a \
                 new cluster is one of its voters"
            )));
        }
        if self.join && !self.witnesses.is_empty() {
            return Err(SettingsError::Inconsistent(
                "--join with --witnesses: --witnesses lists the witnesses a new cluster is born \
                 with; a node joining a running cluster learns them from it (use --witness to \
                 join as a witness)"
                    .to_string(),
            ));
        }
        if self.witness && !self.join && !self.witnesses.contains(&id) {
            return Err(SettingsError::Inconsistent(format!(
                "--witness: node {id} is one of the voters of a new cluster (--peers) but not in \
                 --witnesses; list it in --witnesses on every server, or start it with --join to \
                 add it to a running cluster with `concord-cli member add-witness`"
            )));
        }
        let full_voters = self
            .peers
            .keys()
            .filter(|peer| !self.witnesses.contains(peer))
            .count();
        if !self.join && full_voters <= self.peers.len() / 2 {
            return Err(SettingsError::Inconsistent(format!(
                "--witnesses: only {full_voters} of the {} voters in --peers would be full voters, \
                 not a majority; some quorum would hold no copy of the data: list fewer witnesses",
                self.peers.len()
            )));
        }
        Ok(self)
    }

    /// Whether this node runs as a witness (`--witness`, or listed in
    /// `--witnesses`).
    pub fn is_witness(&self) -> bool {
        self.witness || self.witnesses.contains(&self.id)
    }

    /// Checks `peers` against this node and `join`, and adds this node to
    /// them if they leave it out.
    fn with_this_node_in_peers(mut self) -> Result<ServerSettings, SettingsError> {
        let (id, listen) = (self.id, &self.listen);
        match self.peers.get(&id) {
            Some(addr) if addr != listen => {
                return Err(SettingsError::Inconsistent(format!(
                    "--peers lists node {id} at {addr} but --listen is {listen}"
                )));
            }
            // A node that joined already may be restarted with the
            // current voters, itself among them: whether it joined is
            // known once its data directory is open
            // (`join_listed_itself_refusal`).
            Some(_) if self.join => self.join_lists_itself = true,
            Some(_) => {}
            None if !self.join => {
                let listed: Vec<String> = self.peers.keys().map(NodeId::to_string).collect();
                return Err(SettingsError::Inconsistent(format!(
                    "--id {id} is not one of --peers (nodes {}): a server of a new cluster is \
                     one of its voters, listed in --peers on every server; to add node {id} to \
                     a running cluster, start it with --join",
                    listed.join(", ")
                )));
            }
            None => {
                if let Some((other, _)) = self.peers.iter().find(|(_, a)| *a == listen) {
                    return Err(SettingsError::Inconsistent(format!(
                        "--join: --listen {listen} is the address of node {other} in --peers; \
                         a joining node needs an address of its own"
                    )));
                }
                self.peers.insert(id, listen.clone());
            }
        }
        if self.join && self.peers.len() < 2 {
            return Err(SettingsError::Inconsistent(
                "--join: --peers must name the voters of the cluster to join".to_string(),
            ));
        }
        Ok(self)
    }

    /// Why this node must not start: `--join` with `--peers` naming this
    /// node, on a data directory whose log (`holds_configuration`: any
    /// group's entries or stored membership) holds no configuration yet, so
    /// a new node, which is not one of the voters yet. `None` otherwise:
    /// a node that joined already starts on its log's configuration,
    /// `--join` ignored.
    pub fn join_listed_itself_refusal(&self, holds_configuration: bool) -> Option<String> {
        (self.join && self.join_lists_itself && !holds_configuration).then(|| {
            format!(
                "--join: node {} is listed in --peers, and its data directory holds no \
                 configuration yet (it never joined): list the cluster's voters only (a joining \
                 node is not one of them yet). Once it joined, --peers may name the current \
                 voters, itself included",
                self.id
            )
        })
    }

    /// The library's settings for [`concord_tokio::cluster::start_node`].
    pub fn node_settings(&self) -> NodeSettings {
        let mut settings = NodeSettings::new(
            self.id,
            self.listen.clone(),
            self.peers.clone(),
            self.cluster_id.clone(),
        );
        settings.tick = Duration::from_millis(self.tick_ms);
        settings.join = self.join;
        settings.witness = self.witness;
        settings.witnesses = self.witnesses.clone();
        settings.snapshot_every_entries = self.snapshot_every_entries;
        settings.compaction_trailing_entries = self.compaction_trailing_entries;
        settings.snapshot_send_bytes_per_sec = self.snapshot_send_bytes_per_sec;
        settings.lease_read_ticks = self.lease_ticks;
        settings.clock_drift_bound_ticks = self.clock_drift_bound_ticks;
        if let Some(preferred) = self.preferred_leader {
            settings.priorities = BTreeMap::from([(preferred, 1)]);
        }
        settings
    }
}

/// The `--witnesses` ids as a set; an id listed twice is refused.
fn witness_set(ids: &[NodeId]) -> Result<BTreeSet<NodeId>, String> {
    let mut set = BTreeSet::new();
    for id in ids {
        if !set.insert(*id) {
            return Err(format!(
                "--witnesses lists node {id} twice; list every witness once"
            ));
        }
    }
    Ok(set)
}

fn missing(flag: &'static str, variable: &'static str) -> SettingsError {
    SettingsError::Missing { flag, variable }
}

/// `[peers]` of the config file; on error the key (`peers.<id>`) and why.
fn peers_from_table(table: &BTreeMap<String, String>) -> Result<Peers, (String, String)> {
    let mut peers = Peers::default();
    for (id, address) in table {
        peers
            .insert(id, address)
            .map_err(|m| (format!("peers.{id}"), m))?;
    }
    Ok(peers)
}

/// Reads and parses the config file at `path`.
pub fn load_config(path: &Path) -> Result<ServerConfig, SettingsError> {
    let text = std::fs::read_to_string(path).map_err(|source| SettingsError::ConfigUnreadable {
        file: path.to_path_buf(),
        source,
    })?;
    parse_config(&text, path)
}

/// Parses config text; `path` only names the file in errors.
///
/// Each key is first deserialized on its own (every field is optional, so
/// a table of one key is a valid config), so that an error names the key
/// it is about, which serde's message for the whole table does not.
pub fn parse_config(text: &str, path: &Path) -> Result<ServerConfig, SettingsError> {
    let table: toml::Table = toml::from_str(text).map_err(|e| SettingsError::ConfigSyntax {
        file: path.to_path_buf(),
        message: e.to_string().trim_end().to_string(),
    })?;
    for (key, value) in &table {
        if !CONFIG_KEYS.contains(&key.as_str()) {
            return Err(SettingsError::UnknownKey {
                file: path.to_path_buf(),
                key: key.clone(),
                hint: unknown_key_hint(key),
            });
        }
        let mut single = toml::Table::new();
        single.insert(key.clone(), value.clone());
        if let Err(e) = ServerConfig::deserialize(single) {
            return Err(SettingsError::BadValue {
                file: path.to_path_buf(),
                key: key.clone(),
                message: e.message().trim_end().to_string(),
            });
        }
    }
    ServerConfig::deserialize(table).map_err(|e| SettingsError::ConfigSyntax {
        file: path.to_path_buf(),
        message: e.message().trim_end().to_string(),
    })
}

/// "expected `peers`" for a near miss, else the list of keys.
fn unknown_key_hint(key: &str) -> String {
    let closest = CONFIG_KEYS
        .iter()
        .map(|known| (edit_distance(key, known), *known))
        .min();
    match closest {
        Some((distance, known)) if distance <= 2.max(key.len() / 4) => {
            format!("expected `{known}`")
        }
        _ => format!("expected one of: {}", CONFIG_KEYS.join(", ")),
    }
}

/// Levenshtein distance in bytes (keys are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, &x) in a.iter().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, &y) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(x != y);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(argv: &[&str]) -> ServerFlags {
        let mut full = vec!["concord-node"];
        full.extend_from_slice(argv);
        NodeArgs::try_parse_from(full).expect("valid flags").server
    }

    fn file(text: &str) -> Result<ServerConfig, SettingsError> {
        parse_config(text, Path::new("server.toml"))
    }

    #[test]
    fn a_machine_of_two_cores_runs_one_worker_and_a_larger_one_two() {
        assert_eq!(worker_threads_default(1), 1);
        assert_eq!(worker_threads_default(2), 1);
        assert_eq!(worker_threads_default(3), 2);
        assert_eq!(worker_threads_default(64), 2);
    }

    const FULL: &str = r#"
id = 1
listen = "127.0.0.1:7001"
data-dir = "/var/lib/concord-1"
cluster-id = "demo"

[peers]
1 = "127.0.0.1:7001"
2 = "127.0.0.1:7002"
3 = "127.0.0.1:7003"
"#;

    #[test]
    fn a_config_file_alone_is_enough_and_flags_override_it() {
        let config = file(FULL).unwrap();
        let from_file = ServerSettings::merge(&flags(&[]), &config, None).unwrap();
        assert_eq!(from_file.id, 1);
        assert_eq!(from_file.peers.len(), 3);
        assert_eq!(from_file.tick_ms, TICK_MS_DEFAULT);
        assert!(from_file.fsync);
        let overridden = ServerSettings::merge(
            &flags(&["--cluster-id", "other", "--tick-ms", "20", "--no-fsync"]),
            &config,
            None,
        )
        .unwrap();
        assert_eq!(overridden.cluster_id, "other");
        assert_eq!(overridden.tick_ms, 20);
        assert!(!overridden.fsync);
        assert_eq!(overridden.listen, "127.0.0.1:7001");
    }

    #[test]
    fn unknown_keys_name_the_key_the_file_and_the_closest_key() {
        let e = file("peer = 3\n").unwrap_err().to_string();
        assert_eq!(e, "unknown key `peer` in server.toml, expected `peers`");
        let e = file("datadir = \"x\"\n").unwrap_err().to_string();
        assert!(e.contains("expected `data-dir`"), "{e}");
        let e = file("colour = \"blue\"\n").unwrap_err().to_string();
        assert!(
            e.contains("expected one of: service, id, listen, peers"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_name_the_key_and_the_file() {
        let e = file("tick-ms = \"fast\"\n").unwrap_err().to_string();
        assert!(
            e.starts_with("key `tick-ms` in server.toml: invalid type"),
            "{e}"
        );
        let e = file("[peers]\n1 = 7001\n").unwrap_err().to_string();
        assert!(e.starts_with("key `peers` in server.toml:"), "{e}");
        let config = file("[peers]\nx = \"127.0.0.1:1\"\n").unwrap();
        let e = ServerSettings::merge(&flags(&[]), &config, Some(Path::new("s.toml")))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "missing --id (or CONCORD_ID, or `id` in the --config file)"
        );
        let config = file(&FULL.replace("2 = ", "x = ")).unwrap();
        let e = ServerSettings::merge(&flags(&[]), &config, Some(Path::new("s.toml")))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("key `peers.x` in s.toml: \"x\" is not a node id"),
            "{e}"
        );
        let config = file(&format!("{FULL}\n")).unwrap();
        let mut config = config;
        config.tick_ms = Some(0);
        let e = ServerSettings::merge(&flags(&[]), &config, Some(Path::new("s.toml")))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "key `tick-ms` in s.toml: must be between 1 and 10000, not 0"
        );
        let e = file("id = \n").unwrap_err().to_string();
        assert!(e.starts_with("server.toml is not valid TOML: "), "{e}");
        assert!(e.contains("line 1"), "{e}");
    }

    #[test]
    fn balance_comes_from_a_flag_or_the_file_and_needs_groups() {
        let config = file(FULL).unwrap();
        let off = ServerSettings::merge(&flags(&["--groups", "8"]), &config, None).unwrap();
        assert!(!off.balance);
        let on = ServerSettings::merge(&flags(&["--groups", "8", "--balance"]), &config, None);
        assert!(on.unwrap().balance);
        let from_file = file(&format!("balance = true\ngroups = 8\n{FULL}")).unwrap();
        let on = ServerSettings::merge(&flags(&[]), &from_file, None).unwrap();
        assert!(on.balance && on.groups == 8);
        let e = ServerSettings::merge(&flags(&["--balance"]), &config, None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--balance moves the replicas of many groups"),
            "{e}"
        );
    }

    #[test]
    fn join_and_peers_are_checked_against_this_node() {
        let config = file(FULL).unwrap();
        let e = ServerSettings::merge(&flags(&["--listen", "127.0.0.1:9"]), &config, None)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "--peers lists node 1 at 127.0.0.1:7001 but --listen is 127.0.0.1:9"
        );
        // --join naming this node in --peers: allowed once its log holds
        // a configuration (a node that joined, restarted with the
        // current voters), refused on a new data directory.
        let listed = ServerSettings::merge(&flags(&["--join"]), &config, None).unwrap();
        assert!(listed.join && listed.join_lists_itself);
        assert_eq!(listed.join_listed_itself_refusal(true), None);
        let e = listed.join_listed_itself_refusal(false).unwrap();
        assert!(e.contains("node 1 is listed in --peers"), "{e}");
        let joining = ServerSettings::merge(
            &flags(&["--join", "--id", "4", "--listen", "127.0.0.1:7004"]),
            &config,
            None,
        )
        .unwrap();
        assert!(joining.join);
        assert_eq!(joining.peers[&4], "127.0.0.1:7004");
        assert_eq!(joining.peers.len(), 4);
    }

    #[test]
    fn the_service_and_preferred_leader_come_from_a_flag_or_the_file() {
        let config = file(FULL).unwrap();
        let default = ServerSettings::merge(&flags(&[]), &config, None).unwrap();
        assert_eq!(default.service, ServiceKind::Kv);
        assert_eq!(default.preferred_leader, None);
        let config = file(&format!("service = \"chat\"\npreferred-leader = 3\n{FULL}")).unwrap();
        let from_file = ServerSettings::merge(&flags(&[]), &config, None).unwrap();
        assert_eq!(from_file.service, ServiceKind::Chat);
        assert_eq!(
            from_file.node_settings().priorities,
            BTreeMap::from([(3, 1)])
        );
        let overridden =
            ServerSettings::merge(&flags(&["--service", "orders"]), &config, None).unwrap();
        assert_eq!(overridden.service, ServiceKind::Orders);
        let e = file("service = \"bank\"\n")
            .map(|config| ServerSettings::merge(&flags(&[]), &config, Some(Path::new("s.toml"))));
        let e = e.unwrap().unwrap_err().to_string();
        assert!(
            e.starts_with("key `service` in s.toml: no service named \"bank\""),
            "{e}"
        );
        let config = file(&format!("preferred-leader = 9\n{FULL}")).unwrap();
        let e = ServerSettings::merge(&flags(&[]), &config, None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--preferred-leader 9 is not one of --peers"),
            "{e}"
        );
    }

    #[test]
    fn edit_distance_counts_single_byte_edits() {
        assert_eq!(edit_distance("peer", "peers"), 1);
        assert_eq!(edit_distance("tick_ms", "tick-ms"), 1);
        assert_eq!(edit_distance("", "id"), 2);
        assert_eq!(edit_distance("listen", "listen"), 0);
    }
}
