//! `concord-node`: runs one server of a concord cluster of one service,
//! the key-value store (`--service kv`, the default), the directory, orders
//! or chat (`concord_services`).
//!
//! ```text
//! concord-node --id 1 --listen 127.0.0.1:7001 \
//!     --peers 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003 \
//!     --data-dir /tmp/concord-1 --cluster-id demo
//! concord-node --config server.toml          # the same settings from a file
//! concord-node --service chat ...             # a chat server
//! concord-node local-cluster --service orders # 3 servers on 127.0.0.1
//! concord-node completions bash               # a shell completion script
//! ```
//!
//! Every flag has a `CONCORD_*` environment variable and a key in the
//! `--config` TOML file (`node/examples/server.toml`); flags and variables
//! override the file. `--help` lists them all; the rules are in
//! `concord_node::server`. Stops gracefully on SIGINT/SIGTERM; logs go to
//! stderr (`RUST_LOG`, `--log-format json`). The runtime has 1 worker
//! thread on a machine of at most 2 cores and 2 on a larger one, plus the
//! log's writer thread (`--worker-threads N`, `CONCORD_NODE_THREADS`; 1 is
//! a single-threaded runtime).
//!
//! Every server runs the one runtime, the multi-group host
//! (`concord_node::multi_node`): without `--groups` it hosts one group of
//! the service (group 1) beside the catalog (group 0); `--groups N` (1 to
//! 100,000) shards the service over N groups (docs/sharded-store.md). A
//! data directory keeps its group count, its service
//! (`<data-dir>/service`) and, in `<data-dir>/identity`, its cluster, node
//! id, incarnation and log format; a start with other flags is refused, as
//! is a second process on the directory (`<data-dir>/lock`). A directory
//! of the single-group server of earlier releases is upgraded in place on
//! its first start (`concord_tokio::multi::upgrade`).
//!
//! Every `--snapshot-every-entries` applied entries (default 100000) a
//! group is snapshotted into `<data-dir>/groups/<group>/` and log segments
//! no group needs are deleted. A damaged snapshot makes the node refuse to
//! start, naming the file; so does a log that lost records it had fsynced,
//! unless `--accept-wal-data-loss` (which truncates there and rejoins with
//! a shorter log). Joining a running cluster (`--join`, as a learner or a
//! `--witness`) is in docs/membership.md; a witness must keep running as
//! the kind the configuration names it, or it is refused at start; `--metrics-listen ADDR` serves
//! Prometheus metrics (docs/metrics.md); `--otlp-endpoint URL` (a build
//! with `--features otel`) exports request spans over OTLP/HTTP, and is
//! refused with exit status 2 by a build without it.
//!
//! Exit status: 0 stopped by a signal, 1 failed to start or serve, 2 bad
//! flags or config file (or a metrics address that cannot be bound, or an
//! OTLP endpoint this build cannot serve), 3 the data directory belongs to
//! another cluster, node or service (or a newer build, or one from before
//! services), 4 the data directory is in use by another process.

// println! and friends that stop quietly at a closed pipe.
#[macro_use]
extern crate concord_cli_output;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use concord_node::multi_node::{self, StartFailure};
use concord_node::observability;
use concord_node::server::{LocalClusterArgs, NodeArgs, NodeCommand, ServerSettings};
use concord_tokio::metrics::endpoint::MetricsEndpoint;

fn main() -> ExitCode {
    let huge_pages_off = disable_transparent_huge_pages();
    let args = NodeArgs::parse();
    match args.command {
        Some(NodeCommand::Completions { shell }) => {
            clap_complete::generate(
                shell,
                &mut NodeArgs::command(),
                "concord-node",
                &mut concord_cli_output::Stdout,
            );
            return ExitCode::SUCCESS;
        }
        Some(NodeCommand::LocalCluster(cluster)) => return local_cluster(&cluster),
        None => {}
    }
    let settings = match ServerSettings::resolve(&args.server) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!(
                "concord-node: {e}

For more information, try '--help'."
            );
            return ExitCode::from(2);
        }
    };
    let mut tracing = match observability::init(
        "concord-node",
        settings.log_format,
        settings.otlp_endpoint.as_deref(),
    ) {
        Ok(tracing) => tracing,
        Err(e) => {
            eprintln!("concord-node: {e}");
            return ExitCode::from(EXIT_BAD_FLAGS);
        }
    };
    if !huge_pages_off {
        tracing::warn!(
            "could not turn transparent huge pages off for this process; \
             a server may spend more CPU clearing huge pages"
        );
    }
    let runtime = if settings.worker_threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(settings.worker_threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("concord-node: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    #[cfg(feature = "count-alloc")]
    runtime.spawn(report_allocations_on_sigusr1());
    let result = runtime.block_on(run(settings));
    #[cfg(feature = "count-alloc")]
    eprintln!("{}", concord_node::count_alloc::AllocCounts::now().line());
    // Outside the runtime: the exporter blocks while it sends what is
    // queued.
    drop(runtime);
    tracing.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("concord-node: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}

/// Turns transparent huge pages off for this process (and the servers
/// `local-cluster` starts, which inherit it); false if the kernel refused,
/// which changes nothing else and is logged once tracing runs.
///
/// Why: the allocator asks the kernel for huge pages on its arenas, and a
/// server's memory comes and goes in waves (the log grows by a snapshot
/// interval's entries, then compaction frees them), so the kernel keeps
/// clearing fresh 2 MiB pages: on a follower at 16 clients that was 6-8 %
/// of its CPU (benches/results/2026-11-30-huge-pages.md). A process
/// without huge pages faults 4 KiB at a time and reuses freed memory the
/// same way.
fn disable_transparent_huge_pages() -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: prctl with PR_SET_THP_DISABLE takes integer arguments
        // only and touches no memory of ours.
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) == 0 }
    }
    #[cfg(not(target_os = "linux"))]
    {
        true
    }
}

/// Feature `mimalloc` (default): a server allocates and frees a few dozen
/// small buffers per write, which mimalloc does in fewer instructions than
/// the system allocator. `count-alloc` counts the system allocator's.
#[cfg(all(feature = "mimalloc", not(feature = "count-alloc")))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Feature `count-alloc`: every allocation of the process is counted.
#[cfg(feature = "count-alloc")]
#[global_allocator]
static ALLOCATOR: concord_node::count_alloc::CountingAllocator =
    concord_node::count_alloc::CountingAllocator;

/// Feature `count-alloc`: prints the allocation counters to stderr on
/// every `SIGUSR1` (`benches/runtime/cpu/breakdown.sh` reads them before and after
/// a run).
#[cfg(feature = "count-alloc")]
async fn report_allocations_on_sigusr1() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut usr1 = match signal(SignalKind::user_defined1()) {
        Ok(usr1) => usr1,
        Err(e) => {
            eprintln!("count-alloc: cannot install a SIGUSR1 handler: {e}");
            return;
        }
    };
    while usr1.recv().await.is_some() {
        eprintln!("{}", concord_node::count_alloc::AllocCounts::now().line());
    }
}

/// Exit status: bad flags or config file (also a metrics address that
/// cannot be bound).
const EXIT_BAD_FLAGS: u8 = 2;

/// A flag refused once the node tried it (exit status [`EXIT_BAD_FLAGS`]).
fn bad_flag(error: impl std::fmt::Display) -> StartFailure {
    StartFailure {
        code: EXIT_BAD_FLAGS,
        message: error.to_string(),
    }
}

async fn run(args: ServerSettings) -> Result<(), StartFailure> {
    run_multi(&args).await
}

/// The service on the multi-group host, with one group (no `--groups`)
/// or sharded over `--groups N`, until a signal.
async fn run_multi(args: &ServerSettings) -> Result<(), StartFailure> {
    // Bound before anything else: an address in use is a bad flag. The
    // recorder is installed before the groups start, so the transport's
    // per-peer series exist from the first dial.
    let metrics = match &args.metrics_listen {
        Some(addr) if args.groups == 1 => Some(
            MetricsEndpoint::bind_one_group(addr)
                .await
                .map_err(bad_flag)?,
        ),
        Some(addr) => Some(MetricsEndpoint::bind_multi(addr).await.map_err(bad_flag)?),
        None => None,
    };
    let node = multi_node::start(args).await?;
    if let Some(metrics) = metrics {
        let addr = metrics.local_addr().map_err(|e| e.to_string())?;
        let (events, shutdown) = (node.handle.events(), node.handle.shutdown_signal());
        if args.groups == 1 {
            metrics.serve_one_group(events, shutdown);
        } else {
            metrics.serve_multi(events, shutdown);
        }
        tracing::info!(%addr, "serving metrics on http://{addr}/metrics");
    }
    tracing::info!(service = %args.service, groups = args.groups, id = args.id, listen = %node.local_addr, cluster = %args.cluster_id, tls = args.tls_ca.is_some(), "concord-node serving");
    multi_node::serve_until_signal(node)
        .await
        .map_err(StartFailure::from)
}

/// `local-cluster`: starts `nodes` servers of `service` as child processes
/// of this binary, waits until each listens (or exits), prints the
/// `--servers` list, reports any server that exits, and stops them all on
/// SIGINT (Ctrl-C) or SIGTERM. Exits 1 when no server started, or when
/// every server has exited.
fn local_cluster(args: &LocalClusterArgs) -> ExitCode {
    let Some(last_port) = args.base_port.checked_add(args.nodes - 1) else {
        eprintln!(
            "concord-node: --base-port {} leaves no room for {} servers",
            args.base_port, args.nodes
        );
        return ExitCode::from(EXIT_BAD_FLAGS);
    };
    let metrics: Option<Vec<std::net::SocketAddr>> = match args.metrics_listen {
        None => None,
        Some(first) => {
            let Some(last) = first.port().checked_add(args.nodes - 1) else {
                eprintln!(
                    "concord-node: --metrics-listen {first} leaves no room for {} servers",
                    args.nodes
                );
                return ExitCode::from(EXIT_BAD_FLAGS);
            };
            Some(
                (first.port()..=last)
                    .map(|port| std::net::SocketAddr::new(first.ip(), port))
                    .collect(),
            )
        }
    };
    let addrs: Vec<String> = (args.base_port..=last_port)
        .map(|port| format!("127.0.0.1:{port}"))
        .collect();
    let peers: Vec<String> = addrs
        .iter()
        .enumerate()
        .map(|(i, addr)| format!("{}={addr}", i + 1))
        .collect();
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(error) => {
            eprintln!("concord-node: cannot find this binary to start servers: {error}");
            return ExitCode::FAILURE;
        }
    };
    // A port another process listens on would pass for a server that
    // listens: refused before anything starts.
    let wanted = addrs
        .iter()
        .map(|addr| (addr.clone(), "--base-port"))
        .chain(
            metrics
                .iter()
                .flatten()
                .map(|addr| (addr.to_string(), "--metrics-listen")),
        );
    for (addr, flag) in wanted {
        if let Err(error) = std::net::TcpListener::bind(&addr) {
            eprintln!(
                "concord-node local-cluster: cannot listen on {addr} ({error}): no server \
                 started; pick another {flag}"
            );
            return ExitCode::FAILURE;
        }
    }
    let service = args.service.name();
    let mut servers: Vec<LocalServer> = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        let id = i + 1;
        let mut command = std::process::Command::new(&exe);
        command
            .args(["--service", service, "--cluster-id", "concord"])
            .args(["--id", &id.to_string()])
            .args(["--listen", addr, "--peers", &peers.join(",")])
            .arg("--data-dir")
            .arg(args.data_dir.join(format!("{service}-{id}")));
        if args.prefer_highest_id {
            command.args(["--preferred-leader", &args.nodes.to_string()]);
        }
        let metrics = metrics.as_ref().map(|all| all[i]);
        if let Some(metrics) = metrics {
            command.args(["--metrics-listen", &metrics.to_string()]);
        }
        match command.spawn() {
            Ok(child) => servers.push(LocalServer {
                id,
                addr: addr.clone(),
                metrics,
                child,
                exited: None,
            }),
            Err(error) => {
                eprintln!("concord-node: cannot start server {id}: {error}");
                stop_local_servers(&mut servers);
                return ExitCode::FAILURE;
            }
        }
    }
    let listening = wait_until_listening(&mut servers);
    if listening == 0 {
        eprintln!(
            "concord-node local-cluster: no server started (each exited; its messages are \
             above): check that ports {}..={last_port} are free and {} is writable",
            args.base_port,
            args.data_dir.display()
        );
        stop_local_servers(&mut servers);
        return ExitCode::FAILURE;
    }
    println!(
        "{service} cluster of {listening} of {} servers; Ctrl-C stops it.",
        args.nodes
    );
    for server in &servers {
        let state = match &server.exited {
            Some(status) => format!("exited ({status})"),
            None => format!("pid {}", server.child.id()),
        };
        let metrics = server
            .metrics
            .map(|addr| format!(", metrics http://{addr}/metrics"))
            .unwrap_or_default();
        println!("  server {}: {} ({state}){metrics}", server.id, server.addr);
    }
    println!("Clients:");
    println!(
        "  concord-cli --servers {} {service} <command>",
        addrs.join(",")
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let mut all_exited = false;
    if let Ok(runtime) = runtime {
        all_exited = runtime.block_on(serve_local_cluster(&mut servers));
    }
    stop_local_servers(&mut servers);
    if all_exited {
        eprintln!("concord-node local-cluster: every server has exited");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// One server of `local-cluster`.
struct LocalServer {
    id: usize,
    addr: String,
    metrics: Option<std::net::SocketAddr>,
    child: std::process::Child,
    /// How it ended, once it did.
    exited: Option<std::process::ExitStatus>,
}

impl LocalServer {
    /// Notes (and reports) that the server exited, if it did since the
    /// last look.
    fn look(&mut self) -> bool {
        if self.exited.is_some() {
            return true;
        }
        match self.child.try_wait() {
            Ok(Some(status)) => {
                eprintln!(
                    "concord-node local-cluster: server {} ({}, pid {}) exited: {status}",
                    self.id,
                    self.addr,
                    self.child.id()
                );
                self.exited = Some(status);
                true
            }
            Ok(None) | Err(_) => false,
        }
    }
}

/// How long `local-cluster` waits for its servers to listen.
const LOCAL_CLUSTER_START_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Waits until every server accepts connections or has exited, for at
/// most [`LOCAL_CLUSTER_START_WAIT`]; how many listen.
fn wait_until_listening(servers: &mut [LocalServer]) -> usize {
    let deadline = std::time::Instant::now() + LOCAL_CLUSTER_START_WAIT;
    let mut listening = vec![false; servers.len()];
    loop {
        for (server, up) in servers.iter_mut().zip(listening.iter_mut()) {
            if *up || server.look() {
                continue;
            }
            let Ok(addr) = server.addr.parse() else {
                continue;
            };
            let timeout = std::time::Duration::from_millis(100);
            *up = std::net::TcpStream::connect_timeout(&addr, timeout).is_ok();
        }
        let decided = servers
            .iter()
            .zip(&listening)
            .all(|(server, up)| *up || server.exited.is_some());
        if decided || std::time::Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    for (server, up) in servers.iter().zip(&listening) {
        if !up && server.exited.is_none() {
            eprintln!(
                "concord-node local-cluster: server {} ({}) does not listen after {:?}; \
                 still waiting for it",
                server.id, server.addr, LOCAL_CLUSTER_START_WAIT
            );
        }
    }
    listening
        .iter()
        .zip(servers.iter())
        .filter(|(up, server)| **up && server.exited.is_none())
        .count()
}

/// Serves until SIGINT or SIGTERM (false) or until every server has
/// exited (true), reporting each that exits.
async fn serve_local_cluster(servers: &mut [LocalServer]) -> bool {
    let mut sigterm =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let mut every = tokio::time::interval(std::time::Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return false,
            Some(()) = async {
                match sigterm.as_mut() {
                    Some(sigterm) => sigterm.recv().await,
                    None => std::future::pending().await,
                }
            } => return false,
            _ = every.tick() => {
                let mut exited = 0;
                for server in servers.iter_mut() {
                    if server.look() {
                        exited += 1;
                    }
                }
                if exited == servers.len() {
                    return true;
                }
            }
        }
    }
}

/// Stops every server still running.
fn stop_local_servers(servers: &mut [LocalServer]) {
    for server in servers.iter_mut().filter(|server| server.exited.is_none()) {
        let _ = server.child.kill();
        let _ = server.child.wait();
    }
}
