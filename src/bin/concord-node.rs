//! `concord-node`: runs one server of a concord key-value cluster.
//!
//! ```text
//! concord-node --id 1 --listen 127.0.0.1:7001 \
//!     --peers 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003 \
//!     --data-dir /tmp/concord-1 --cluster-id demo
//! ```
//!
//! Stops gracefully on SIGINT/SIGTERM. Logs go to stderr; set `RUST_LOG`
//! (e.g. `RUST_LOG=concord=debug`) for more. The runtime has 2 worker
//! threads (plus the WAL writer thread); `CONCORD_NODE_THREADS=N` changes
//! that (1: a single-threaded runtime).
//!
//! If the write-ahead log lost records it had already fsynced (see
//! `concord::tokio::wal`), the node refuses to start and exits non-zero
//! with an error naming the file and offset; `--accept-wal-data-loss`
//! truncates the log there instead and rejoins with a shorter log.
//!
//! A new server joins a running cluster empty, as a learner: start it with
//! `--join` and `--peers` naming the cluster's voters, then add it with
//! `concord-cli member add-learner <ID> <HOST:PORT>` and, once caught up,
//! `concord-cli member promote <ID>` (see the README, "Growing, shrinking
//! and replacing servers"). After that its log holds the configuration:
//! restarts keep it, with or without `--join`.
//!
//! Every `--snapshot-every-entries` applied entries (default 100000) the
//! node snapshots its state into `<data-dir>/snapshots/` and deletes the
//! write-ahead log segments the snapshot covers; a damaged snapshot file
//! makes it refuse to start, naming the file.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use concord::tokio::cluster::{
    start_kv_node, NodeSettings, COMPACTION_TRAILING_ENTRIES_DEFAULT,
    SNAPSHOT_EVERY_ENTRIES_DEFAULT,
};
use concord::tokio::tls;
use concord::tokio::wal::{FileStorage, WalOptions};
use concord::NodeId;

const USAGE: &str = "\
usage: concord-node --id <ID> --listen <HOST:PORT> --peers <ID=HOST:PORT,...> --data-dir <DIR> --cluster-id <NAME>
                    [--join] [--tick-ms <MS>] [--no-fsync] [--accept-wal-data-loss]
                    [--snapshot-every-entries <N>] [--compaction-trailing-entries <N>]
                    [--lease-ticks <N>] [--clock-drift-bound-ticks <N>]
                    [--tls-ca <PEM> --tls-cert <PEM> --tls-key <PEM>]

  --id          this node's id (a positive integer, one of --peers)
  --listen      address to serve peers and clients on
  --peers       every node of the cluster as id=host:port, comma separated
                (this node may be included; it must then match --listen)
  --data-dir    directory for the write-ahead log (created if missing)
  --cluster-id  the cluster's name; connections naming another are refused
  --join        start as a new, empty learner of a running cluster whose
                voters are --peers (this node is not one of them); then add
                it with `concord-cli member add-learner <ID> <HOST:PORT>`
                and promote it once caught up. Ignored once the node's log
                holds a configuration (after it was added)
  --tick-ms     length of one Raft tick in milliseconds (default 10)
  --no-fsync    do not fsync the log (unsafe: for experiments only)
  --accept-wal-data-loss
                if the write-ahead log lost records it had fsynced (and so
                may have acknowledged), truncate it there and start anyway,
                logging the loss at error level; without it such a node
                refuses to start
  --snapshot-every-entries
                snapshot the state machine (and delete the log it covers)
                once this many entries were applied since the last
                snapshot (default 100000; 0 never snapshots)
  --compaction-trailing-entries
                entries kept in the log below a snapshot, so a follower a
                little behind catches up from the log (default 1024)
  --lease-ticks lease reads: the leader answers a read without a round trip
                while fewer than N ticks passed since it sent a heartbeat a
                quorum answered (default 0: off; reads then use a heartbeat
                round). N plus the drift bound must stay below the minimum
                election timeout (15 ticks). Assumes the hosts' clocks run
                at rates within the drift bound of each other.
  --clock-drift-bound-ticks
                how many ticks clocks may drift apart over a minimum election
                timeout (default 3); the lease leaves room for it
  --tls-ca, --tls-cert, --tls-key
                mutual TLS 1.3 for every peer and client connection: the
                cluster's CA certificate, this node's certificate (naming
                node-<ID>.<CLUSTER-ID>) and its private key, as PEM files
                (all three or none; without them the node speaks plaintext
                and says so in its log). `cargo run --example make_certs
                --features tokio` makes them for a test cluster";

#[derive(Debug)]
struct Args {
    id: NodeId,
    listen: String,
    peers: BTreeMap<NodeId, String>,
    data_dir: PathBuf,
    cluster_id: String,
    tick_ms: u64,
    fsync: bool,
    join: bool,
    accept_wal_data_loss: bool,
    snapshot_every_entries: Option<u64>,
    compaction_trailing_entries: u64,
    lease_ticks: u32,
    clock_drift_bound_ticks: u32,
    tls_ca: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
}

fn parse_addr(flag: &str, value: &str) -> Result<String, String> {
    value
        .parse::<std::net::SocketAddr>()
        .map(|_| value.to_string())
        .map_err(|_| format!("{flag}: {value:?} is not a host:port address like 127.0.0.1:7001"))
}

fn parse_args(argv: Vec<String>) -> Result<Args, String> {
    let mut id = None;
    let mut listen = None;
    let mut peers = None;
    let mut data_dir = None;
    let mut cluster_id = None;
    let mut tick_ms = 10u64;
    let mut fsync = true;
    let mut join = false;
    let mut accept_wal_data_loss = false;
    let mut snapshot_every_entries = Some(SNAPSHOT_EVERY_ENTRIES_DEFAULT);
    let mut compaction_trailing_entries = COMPACTION_TRAILING_ENTRIES_DEFAULT;
    let mut lease_ticks = 0u32;
    let mut clock_drift_bound_ticks = 3u32;
    let (mut tls_ca, mut tls_cert, mut tls_key) = (None, None, None);
    let mut it = argv.into_iter();
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            return Err(String::new());
        }
        if flag == "--no-fsync" {
            fsync = false;
            continue;
        }
        if flag == "--join" {
            join = true;
            continue;
        }
        if flag == "--accept-wal-data-loss" {
            accept_wal_data_loss = true;
            continue;
        }
        let (flag, value) = match flag.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), v.to_string()),
            _ => {
                let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
                (flag, value)
            }
        };
        match flag.as_str() {
            "--id" => {
                let parsed: NodeId = value
                    .parse()
                    .map_err(|_| format!("--id: {value:?} is not a positive integer"))?;
                if parsed == 0 {
                    return Err("--id: 0 is reserved; use 1 or more".to_string());
                }
                id = Some(parsed);
            }
            "--listen" => listen = Some(parse_addr("--listen", &value)?),
            "--peers" => {
                let mut map = BTreeMap::new();
                for item in value.split(',').filter(|s| !s.is_empty()) {
                    let (pid, addr) = item.split_once('=').ok_or_else(|| {
                        format!("--peers: {item:?} is not of the form id=host:port")
                    })?;
                    let pid: NodeId = pid
                        .parse()
                        .map_err(|_| format!("--peers: {pid:?} in {item:?} is not a node id"))?;
                    if pid == 0 {
                        return Err(format!("--peers: node id 0 in {item:?} is reserved"));
                    }
                    if map.insert(pid, parse_addr("--peers", addr)?).is_some() {
                        return Err(format!("--peers: node {pid} is listed twice"));
                    }
                }
                peers = Some(map);
            }
            "--data-dir" => data_dir = Some(PathBuf::from(value)),
            "--cluster-id" => {
                if value.is_empty() || value.len() > 128 {
                    return Err("--cluster-id: give a name of 1 to 128 bytes".to_string());
                }
                cluster_id = Some(value);
            }
            "--tick-ms" => {
                tick_ms = value
                    .parse()
                    .map_err(|_| format!("--tick-ms: {value:?} is not a number"))?;
                if !(1..=10_000).contains(&tick_ms) {
                    return Err("--tick-ms: must be between 1 and 10000".to_string());
                }
            }
            "--snapshot-every-entries" => {
                let n: u64 = value
                    .parse()
                    .map_err(|_| format!("--snapshot-every-entries: {value:?} is not a number"))?;
                snapshot_every_entries = (n > 0).then_some(n);
            }
            "--compaction-trailing-entries" => {
                compaction_trailing_entries = value.parse().map_err(|_| {
                    format!("--compaction-trailing-entries: {value:?} is not a number")
                })?;
            }
            "--lease-ticks" => {
                lease_ticks = value
                    .parse()
                    .map_err(|_| format!("--lease-ticks: {value:?} is not a number"))?;
            }
            "--clock-drift-bound-ticks" => {
                clock_drift_bound_ticks = value
                    .parse()
                    .map_err(|_| format!("--clock-drift-bound-ticks: {value:?} is not a number"))?;
            }
            "--tls-ca" => tls_ca = Some(PathBuf::from(value)),
            "--tls-cert" => tls_cert = Some(PathBuf::from(value)),
            "--tls-key" => tls_key = Some(PathBuf::from(value)),
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    let id = id.ok_or("missing --id")?;
    let listen = listen.ok_or("missing --listen")?;
    let mut peers = peers.ok_or("missing --peers")?;
    match peers.get(&id) {
        Some(addr) if *addr != listen => {
            return Err(format!(
                "--peers lists node {id} at {addr} but --listen is {listen}"
            ));
        }
        Some(_) if join => {
            return Err(format!(
                "--join: node {id} is listed in --peers; list the cluster's voters only (a \
                 joining node is not one of them yet)"
            ));
        }
        Some(_) => {}
        None => {
            peers.insert(id, listen.clone());
        }
    }
    if join && peers.len() < 2 {
        return Err("--join: --peers must name the voters of the cluster to join".to_string());
    }
    Ok(Args {
        id,
        listen,
        peers,
        data_dir: data_dir.ok_or("missing --data-dir")?,
        cluster_id: cluster_id.ok_or("missing --cluster-id")?,
        tick_ms,
        fsync,
        join,
        accept_wal_data_loss,
        snapshot_every_entries,
        compaction_trailing_entries,
        lease_ticks,
        clock_drift_bound_ticks,
        tls_ca,
        tls_cert,
        tls_key,
    })
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1).collect()) {
        Ok(args) => args,
        Err(message) if message.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("concord-node: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("concord-node: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("concord-node: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let options = WalOptions {
        sync: args.fsync,
        accept_data_loss: args.accept_wal_data_loss,
        ..WalOptions::default()
    };
    let storage = FileStorage::open(&args.data_dir, options).map_err(|e| {
        format!(
            "cannot open the data directory {}: {e}",
            args.data_dir.display()
        )
    })?;
    let mut settings = NodeSettings::new(
        args.id,
        args.listen.clone(),
        args.peers.clone(),
        args.cluster_id.clone(),
    );
    settings.tick = Duration::from_millis(args.tick_ms);
    settings.join = args.join;
    settings.snapshot_every_entries = args.snapshot_every_entries;
    settings.compaction_trailing_entries = args.compaction_trailing_entries;
    settings.lease_read_ticks = args.lease_ticks;
    settings.clock_drift_bound_ticks = args.clock_drift_bound_ticks;
    settings.tls = tls::load_from_flags(
        args.tls_ca.clone(),
        args.tls_cert.clone(),
        args.tls_key.clone(),
        &args.cluster_id,
        tls::TlsRole::Node(args.id),
    )
    .map_err(|e| e.to_string())?;
    // An invalid lease is refused here, with the reason, before the node
    // starts.
    settings
        .raft_config()
        .validate()
        .map_err(|e| format!("invalid settings: {e}"))?;
    let mut node = start_kv_node(settings, storage)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(id = args.id, listen = %node.local_addr, cluster = %args.cluster_id, join = args.join, tls = args.tls_ca.is_some(), "concord-node serving");
    if args.join {
        tracing::info!(
            "joining as a learner: add this node with `concord-cli member add-learner {} {}`",
            args.id,
            args.listen
        );
    }
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("cannot install a SIGTERM handler: {e}"))?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
        _ = sigterm.recv() => tracing::info!("SIGTERM: shutting down"),
        result = node.server.wait() => return result.map_err(|e| e.to_string()),
    }
    node.shutdown().await.map_err(|e| e.to_string())
}
