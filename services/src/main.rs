//! `concord-services`: every service's server and command-line client in
//! one binary, `concord-services <service> <command>`.
//!
//! One binary rather than one per service: the server flags, the client
//! flags, logging and exit codes are the same for every service, so they
//! are written once here, and a cluster of any service is started from
//! the same executable.
//!
//! ```text
//! concord-services kv serve --id 1 --listen 127.0.0.1:7001 \
//!     --peers 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003 --data-dir kv-data/1
//! concord-services kv --servers 127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003 put color blue
//! concord-services kv --servers ... put-many a=1 b=2
//! concord-services kv --servers ... get-many a b
//! concord-services directory serve --id 1 ...   (same server flags)
//! concord-services directory --servers ... connect ann 10.0.0.7:5000
//! concord-services directory --servers ... lookup ann bob
//! concord-services directory --servers ... next-sequence
//! concord-services orders --servers ... place-order acme
//! concord-services orders --servers ... last-order acme
//! concord-services chat --servers ... create-account ann
//! concord-services chat --servers ... send ann bob "lunch at noon?"
//! concord-services chat --servers ... fetch bob
//! concord-services chat --servers ... list-accounts 'a*'
//! ```
//!
//! Exit codes of the client commands: 0 done; 3 refused or invalid
//! (nothing was changed); 4 outcome unknown (the cluster did not answer in
//! time: a write may or may not have been applied); 5 `kv get` of a key
//! that is absent (nothing on stdout, as `concord-cli get`); 2 bad usage.

// println! and friends that stop quietly at a closed pipe.
#[macro_use]
extern crate concord;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use concord_services::chat::Chat;
use concord_services::chat_client::ChatClient;
use concord_services::directory::Directory;
use concord_services::directory_client::DirectoryClient;
use concord_services::kv::StrictKv;
use concord_services::kv_client::KvClient;
use concord_services::orders::Orders;
use concord_services::orders_client::OrdersClient;
use concord_services::runtime::{serve, CallError, ServeArgs};

#[derive(Parser, Debug)]
#[command(
    name = "concord-services",
    about = "Services on concord: servers and clients"
)]
struct Cli {
    #[command(subcommand)]
    service: Service,
}

#[derive(Subcommand, Debug)]
enum Service {
    /// Strict (linearizable) key-value store with atomic multi-key writes.
    Kv(KvArgs),
    /// Directory: user -> ip:port lookups and a cluster-wide sequence.
    Directory(DirectoryArgs),
    /// Orders: gap-free order numbers per customer.
    Orders(OrdersArgs),
    /// Chat: accounts, and messages queued until their recipient fetches
    /// them, each delivered once.
    Chat(ChatArgs),
}

#[derive(Args, Debug)]
struct ChatArgs {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    command: ChatCommand,
}

#[derive(Subcommand, Debug)]
enum ChatCommand {
    /// Run one server of a chat cluster.
    Serve(ServeArgs),
    /// Run a whole cluster on this machine (one process per server) until
    /// Ctrl-C.
    LocalCluster(LocalClusterArgs),
    /// Create ACCOUNT (ASCII letters, digits, '_', '.', '-').
    CreateAccount {
        /// The account.
        account: String,
    },
    /// Delete ACCOUNT and every message in its mailbox.
    DeleteAccount {
        /// The account.
        account: String,
    },
    /// Print the accounts matching PATTERN, one a line ('*' any run of
    /// characters, '?' exactly one).
    ListAccounts {
        /// The glob.
        #[arg(default_value = "*")]
        pattern: String,
    },
    /// Queue BODY for RECIPIENT; prints the message id.
    Send {
        /// The sending account.
        sender: String,
        /// The receiving account.
        recipient: String,
        /// The text.
        body: String,
    },
    /// Print ACCOUNT's undelivered messages as ID<TAB>SENDER<TAB>BODY,
    /// oldest first, and mark them delivered.
    Fetch {
        /// The account.
        account: String,
    },
    /// Delete delivered messages of ACCOUNT by id (every delivered one
    /// when no id is given); prints how many were deleted.
    DeleteMessages {
        /// The account.
        account: String,
        /// Message ids.
        ids: Vec<u64>,
    },
}

#[derive(Args, Debug)]
struct OrdersArgs {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    command: OrdersCommand,
}

#[derive(Subcommand, Debug)]
enum OrdersCommand {
    /// Run one server of an orders cluster.
    Serve(ServeArgs),
    /// Run a whole cluster on this machine (one process per server) until
    /// Ctrl-C.
    LocalCluster(LocalClusterArgs),
    /// Place CUSTOMER's next order and print its number.
    PlaceOrder {
        /// The customer.
        customer: String,
    },
    /// Print CUSTOMER's last order number (0: none), read at any server.
    LastOrder {
        /// The customer.
        customer: String,
    },
    /// The experiment: place_order latency versus cluster size, as a
    /// Markdown table and an SVG plot in --out.
    Latency(LatencyArgs),
}

/// Flags of `orders latency`.
#[derive(Args, Debug, Clone)]
struct LatencyArgs {
    /// Cluster sizes, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,3,5,7")]
    sizes: Vec<usize>,
    /// Client threads, each placing orders one after another.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Orders per client thread per run.
    #[arg(long, default_value_t = 200)]
    orders: usize,
    /// Runs per cluster size.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Acknowledge each order only after every healthy server applied it
    /// (measures that option's cost).
    #[arg(long)]
    acknowledge_all: bool,
    /// Directory for latency.md, latency.svg and the servers' data (the
    /// data is removed after each run).
    #[arg(long, default_value = "orders-latency")]
    out: std::path::PathBuf,
}

#[derive(Args, Debug)]
struct DirectoryArgs {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    command: DirectoryCommand,
}

#[derive(Subcommand, Debug)]
enum DirectoryCommand {
    /// Run one server of a directory cluster.
    Serve(ServeArgs),
    /// Run a whole cluster on this machine (one process per server) until
    /// Ctrl-C.
    LocalCluster(LocalClusterArgs),
    /// Record that USER is reachable at ADDRESS (ip:port).
    Connect {
        /// The user.
        user: String,
        /// Where, e.g. 10.0.0.7:5000.
        address: String,
    },
    /// Forget USER's address.
    Disconnect {
        /// The user.
        user: String,
    },
    /// Print USER=ADDRESS (or USER offline) for every user, at one instant.
    Lookup {
        /// The users.
        #[arg(required = true)]
        users: Vec<String>,
    },
    /// Print the next number of the cluster-wide sequence.
    NextSequence,
}

/// Where the cluster is.
#[derive(Args, Debug, Clone)]
struct Target {
    /// The servers' client addresses, comma separated (host:port,...).
    #[arg(long, value_delimiter = ',', global = true)]
    servers: Vec<String>,
    /// The cluster's name.
    #[arg(long, default_value = "concord", global = true)]
    cluster_id: String,
    /// Return from a write only once every healthy server has applied it
    /// (not just a majority).
    #[arg(long, global = true)]
    acknowledge_all: bool,
}

#[derive(Args, Debug)]
struct KvArgs {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    command: KvCommand,
}

#[derive(Subcommand, Debug)]
enum KvCommand {
    /// Run one server of a key-value cluster.
    Serve(ServeArgs),
    /// Run a whole cluster on this machine (one process per server) until
    /// Ctrl-C.
    LocalCluster(LocalClusterArgs),
    /// Print the value of KEY (exit 5 when it was never written).
    Get {
        /// The key.
        key: String,
    },
    /// Print KEY=VALUE for every key, read at one instant.
    GetMany {
        /// The keys.
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Set KEY to VALUE.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// Set every KEY=VALUE at once (all or none).
    PutMany {
        /// KEY=VALUE pairs.
        #[arg(required = true)]
        pairs: Vec<String>,
    },
}

/// Flags of `<service> local-cluster`.
#[derive(Args, Debug, Clone)]
struct LocalClusterArgs {
    /// Servers to run (1 to 7).
    #[arg(long, default_value_t = 3)]
    nodes: u16,
    /// Port of server 1; server N listens on BASE_PORT + N - 1 on
    /// 127.0.0.1.
    #[arg(long, default_value_t = 7001)]
    base_port: u16,
    /// Directory holding one data directory per server (created if
    /// missing; kept, so a restart continues where it stopped).
    #[arg(long, default_value = "concord-data")]
    data_dir: std::path::PathBuf,
    /// Prefer the server with the highest id as leader whenever it is
    /// healthy (the directory's deployment shape).
    #[arg(long)]
    prefer_highest_id: bool,
}

/// Starts `nodes` servers of `service` as child processes of this binary,
/// prints the `--servers` list, and stops them all on Ctrl-C.
async fn local_cluster(service: &str, args: LocalClusterArgs) -> ExitCode {
    if !(1..=7).contains(&args.nodes) {
        eprintln!("concord-services: --nodes {} is outside 1..=7", args.nodes);
        return ExitCode::from(2);
    }
    let Some(last_port) = args.base_port.checked_add(args.nodes - 1) else {
        eprintln!(
            "concord-services: --base-port {} leaves no room for {} servers",
            args.base_port, args.nodes
        );
        return ExitCode::from(2);
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
            eprintln!("concord-services: cannot find this binary to start servers: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut children = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        let id = (i + 1).to_string();
        let mut command = std::process::Command::new(&exe);
        command
            .args([
                service,
                "serve",
                "--id",
                &id,
                "--listen",
                addr,
                "--peers",
                &peers.join(","),
            ])
            .arg("--data-dir")
            .arg(args.data_dir.join(format!("{service}-{id}")));
        if args.prefer_highest_id {
            command.args(["--preferred-leader", &args.nodes.to_string()]);
        }
        let spawned = command.spawn();
        match spawned {
            Ok(child) => children.push(child),
            Err(error) => {
                eprintln!("concord-services: cannot start server {id}: {error}");
                for mut child in children {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                return ExitCode::FAILURE;
            }
        }
    }
    println!(
        "{service} cluster of {} servers; Ctrl-C stops it. Clients:",
        args.nodes
    );
    println!(
        "  concord-services {service} --servers {} <command>",
        addrs.join(",")
    );
    let _ = tokio::signal::ctrl_c().await;
    for mut child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
    ExitCode::SUCCESS
}

const EXIT_NOT_APPLIED: u8 = 3;
const EXIT_UNKNOWN: u8 = 4;
const EXIT_MISSING: u8 = 5;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("concord-services: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match cli.service {
        Service::Kv(args) => runtime.block_on(kv(args)),
        Service::Directory(args) => runtime.block_on(directory(args)),
        Service::Orders(args) => runtime.block_on(orders(args)),
        Service::Chat(args) => runtime.block_on(chat(args)),
    }
}

/// `<service> serve`: logs to stderr and serves until stopped; a server
/// that cannot start exits with the reason.
async fn serve_until_stopped<S>(name: &str, args: ServeArgs, state_machine: S) -> ExitCode
where
    S: concord::state_machine::StateMachine + Send + 'static,
{
    init_logging();
    match serve(args, state_machine).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("concord-services {name} serve: {error}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes are for a person at a terminal, not a log file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn client_failed(error: CallError) -> ExitCode {
    eprintln!("concord-services: {error}");
    if error.definitely_not_applied() {
        ExitCode::from(EXIT_NOT_APPLIED)
    } else {
        ExitCode::from(EXIT_UNKNOWN)
    }
}

fn check_target(target: &Target) -> Result<(), ExitCode> {
    if target.servers.is_empty() {
        eprintln!("concord-services: name the cluster with --servers host:port,...");
        return Err(ExitCode::from(2));
    }
    Ok(())
}

fn client(target: &Target) -> Result<KvClient, ExitCode> {
    check_target(target)?;
    let mut client = KvClient::new(target.servers.clone(), &target.cluster_id);
    client.set_acknowledge_all(target.acknowledge_all);
    Ok(client)
}

async fn orders(args: OrdersArgs) -> ExitCode {
    let OrdersArgs { target, command } = args;
    let (customer, place) = match command {
        OrdersCommand::LocalCluster(cluster_args) => {
            return local_cluster("orders", cluster_args).await
        }
        OrdersCommand::Serve(serve_args) => {
            return serve_until_stopped("orders", serve_args, Orders::new()).await;
        }
        OrdersCommand::Latency(latency_args) => return latency_experiment(latency_args).await,
        OrdersCommand::PlaceOrder { customer } => (customer, true),
        OrdersCommand::LastOrder { customer } => (customer, false),
    };
    if let Err(code) = check_target(&target) {
        return code;
    }
    let mut client = OrdersClient::new(target.servers.clone(), &target.cluster_id);
    client.set_acknowledge_all(target.acknowledge_all);
    let result = if place {
        client.place_order(&customer).await
    } else {
        client.last_order(&customer).await
    };
    match result {
        Ok(number) => {
            println!("{number}");
            ExitCode::SUCCESS
        }
        Err(error) => client_failed(error),
    }
}

/// Ports the kernel hands out now, for `count` servers.
fn free_ports(count: usize) -> std::io::Result<Vec<String>> {
    let listeners = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|listener| listener.local_addr().map(|addr| addr.to_string()))
        .collect()
}

/// One run: a fresh cluster of `servers` processes, `clients` tasks each
/// placing `orders` orders; the latency of every acknowledged order.
async fn latency_run(
    args: &LatencyArgs,
    servers: usize,
    run: usize,
) -> Result<Vec<std::time::Duration>, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let addrs = free_ports(servers).map_err(|e| format!("no free ports: {e}"))?;
    let peers: Vec<String> = addrs
        .iter()
        .enumerate()
        .map(|(i, addr)| format!("{}={addr}", i + 1))
        .collect();
    let data = args.out.join(format!("data-{servers}-{run}"));
    let _ = std::fs::remove_dir_all(&data);
    let mut children = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        let id = (i + 1).to_string();
        let child = std::process::Command::new(&exe)
            .args([
                "orders",
                "serve",
                "--id",
                &id,
                "--listen",
                addr,
                "--peers",
                &peers.join(","),
            ])
            .arg("--data-dir")
            .arg(data.join(&id))
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start server {id}: {e}"));
        match child {
            Ok(child) => children.push(child),
            Err(error) => {
                for mut child in children {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                return Err(error);
            }
        }
    }
    // The first order waits out the election; it is not measured.
    let mut warmup = OrdersClient::new(addrs.clone(), "concord");
    let ready = warmup.place_order("warmup").await.map(|_| ());
    let mut latencies = Vec::new();
    let mut failure = ready
        .err()
        .map(|e| format!("the cluster never served: {e}"));
    if failure.is_none() {
        let mut tasks = Vec::new();
        for client in 0..args.clients {
            let addrs = addrs.clone();
            let orders = args.orders;
            let acknowledge_all = args.acknowledge_all;
            tasks.push(tokio::spawn(async move {
                let mut orders_client = OrdersClient::new(addrs, "concord");
                orders_client.set_acknowledge_all(acknowledge_all);
                let customer = format!("customer-{client}");
                let mut mine = Vec::with_capacity(orders);
                for _ in 0..orders {
                    let started = std::time::Instant::now();
                    orders_client
                        .place_order(&customer)
                        .await
                        .map_err(|e| e.to_string())?;
                    mine.push(started.elapsed());
                }
                Ok::<_, String>(mine)
            }));
        }
        for task in tasks {
            match task.await {
                Ok(Ok(mine)) => latencies.extend(mine),
                Ok(Err(error)) => failure = Some(error),
                Err(error) => failure = Some(format!("a client task failed: {error}")),
            }
        }
    }
    for mut child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
    let _ = std::fs::remove_dir_all(&data);
    match failure {
        Some(error) => Err(error),
        None => Ok(latencies),
    }
}

async fn latency_experiment(args: LatencyArgs) -> ExitCode {
    use concord_services::latency::{svg, table, SizeResult, Stats};
    if args.sizes.is_empty()
        || args.sizes.iter().any(|n| !(1..=7).contains(n))
        || args.clients == 0
        || args.clients > 64
        || args.orders == 0
        || args.runs == 0
    {
        eprintln!(
            "concord-services: sizes must be 1..=7, clients 1..=64, orders and runs at least 1"
        );
        return ExitCode::from(2);
    }
    if let Err(error) = std::fs::create_dir_all(&args.out) {
        eprintln!(
            "concord-services: cannot create {}: {error}",
            args.out.display()
        );
        return ExitCode::FAILURE;
    }
    let mut results = Vec::new();
    for &servers in &args.sizes {
        let mut runs = Vec::new();
        for run in 0..args.runs {
            match latency_run(&args, servers, run).await {
                Ok(latencies) => {
                    let Some(stats) = Stats::of(&latencies) else {
                        eprintln!("concord-services: no orders measured");
                        return ExitCode::FAILURE;
                    };
                    eprintln!(
                        "{servers} servers, run {}: p50 {:.2} ms, p99 {:.2} ms, mean {:.2} ms over {} orders",
                        run + 1,
                        stats.p50_ms,
                        stats.p99_ms,
                        stats.mean_ms,
                        stats.count
                    );
                    runs.push(stats);
                }
                Err(error) => {
                    eprintln!(
                        "concord-services: {servers} servers, run {}: {error}",
                        run + 1
                    );
                    return ExitCode::FAILURE;
                }
            }
        }
        results.push(SizeResult { servers, runs });
    }
    let mut table = table(&results, args.clients, args.orders);
    if args.acknowledge_all {
        table = format!(
            "Each order acknowledged only after every healthy server applied it (--acknowledge-all).\n\n{table}"
        );
    }
    let written = std::fs::write(args.out.join("latency.md"), &table)
        .and_then(|()| std::fs::write(args.out.join("latency.svg"), svg(&results)));
    if let Err(error) = written {
        eprintln!("concord-services: cannot write the results: {error}");
        return ExitCode::FAILURE;
    }
    println!("{table}");
    println!(
        "wrote {} and {}",
        args.out.join("latency.md").display(),
        args.out.join("latency.svg").display()
    );
    ExitCode::SUCCESS
}

async fn chat(args: ChatArgs) -> ExitCode {
    let ChatArgs { target, command } = args;
    let command = match command {
        ChatCommand::LocalCluster(cluster_args) => {
            return local_cluster("chat", cluster_args).await
        }
        ChatCommand::Serve(serve_args) => {
            return serve_until_stopped("chat", serve_args, Chat::new()).await;
        }
        command => command,
    };
    if let Err(code) = check_target(&target) {
        return code;
    }
    let mut client = ChatClient::new(target.servers.clone(), &target.cluster_id);
    client.set_acknowledge_all(target.acknowledge_all);
    let result = match command {
        ChatCommand::Serve(_) | ChatCommand::LocalCluster(_) => unreachable!("handled above"),
        ChatCommand::CreateAccount { account } => client.create_account(&account).await,
        ChatCommand::DeleteAccount { account } => client.delete_account(&account).await,
        ChatCommand::ListAccounts { pattern } => {
            client
                .list_accounts(&pattern)
                .await
                .map(|(names, truncated)| {
                    for name in names {
                        println!("{name}");
                    }
                    if truncated {
                        eprintln!("(more accounts match; narrow the pattern)");
                    }
                })
        }
        ChatCommand::Send {
            sender,
            recipient,
            body,
        } => client
            .send(&sender, &recipient, &body)
            .await
            .map(|id| println!("{id}")),
        ChatCommand::Fetch { account } => client.fetch(&account).await.map(|fetched| {
            for message in fetched.messages {
                println!("{}\t{}\t{}", message.id, message.sender, message.body);
            }
            if fetched.more {
                eprintln!("(more messages wait; fetch again)");
            }
        }),
        ChatCommand::DeleteMessages { account, ids } => client
            .delete_messages(&account, &ids)
            .await
            .map(|count| println!("{count}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => client_failed(error),
    }
}

async fn directory(args: DirectoryArgs) -> ExitCode {
    let DirectoryArgs { target, command } = args;
    if let DirectoryCommand::LocalCluster(cluster_args) = command {
        return local_cluster("directory", cluster_args).await;
    }
    if let DirectoryCommand::Serve(serve_args) = command {
        return serve_until_stopped("directory", serve_args, Directory::new()).await;
    }
    if let Err(code) = check_target(&target) {
        return code;
    }
    let mut client = DirectoryClient::new(target.servers.clone(), &target.cluster_id);
    client.set_acknowledge_all(target.acknowledge_all);
    let result = match command {
        DirectoryCommand::Serve(_) | DirectoryCommand::LocalCluster(_) => {
            unreachable!("handled above")
        }
        DirectoryCommand::Connect { user, address } => client
            .connect(&user, &address)
            .await
            .map(|()| ExitCode::SUCCESS),
        DirectoryCommand::Disconnect { user } => {
            client.disconnect(&user).await.map(|()| ExitCode::SUCCESS)
        }
        DirectoryCommand::Lookup { users } => {
            let names: Vec<&str> = users.iter().map(String::as_str).collect();
            client.lookup(&names).await.map(|addresses| {
                for (user, address) in users.iter().zip(addresses) {
                    match address {
                        Some(address) => println!("{user}={address}"),
                        None => println!("{user} offline"),
                    }
                }
                ExitCode::SUCCESS
            })
        }
        DirectoryCommand::NextSequence => client.next_sequence().await.map(|number| {
            println!("{number}");
            ExitCode::SUCCESS
        }),
    };
    result.unwrap_or_else(client_failed)
}

async fn kv(args: KvArgs) -> ExitCode {
    let KvArgs { target, command } = args;
    if let KvCommand::LocalCluster(cluster_args) = command {
        return local_cluster("kv", cluster_args).await;
    }
    if let KvCommand::Serve(serve_args) = command {
        return serve_until_stopped("kv", serve_args, StrictKv::new()).await;
    }
    let mut client = match client(&target) {
        Ok(client) => client,
        Err(code) => return code,
    };
    let result = match command {
        KvCommand::Serve(_) | KvCommand::LocalCluster(_) => unreachable!("handled above"),
        KvCommand::Get { key } => match client.get(&key).await {
            Ok(Some(value)) => {
                println!("{value}");
                Ok(ExitCode::SUCCESS)
            }
            Ok(None) => {
                eprintln!("{key} was never written");
                Ok(ExitCode::from(EXIT_MISSING))
            }
            Err(error) => Err(error),
        },
        KvCommand::GetMany { keys } => {
            let names: Vec<&str> = keys.iter().map(String::as_str).collect();
            client.get_many(&names).await.map(|values| {
                for (key, value) in keys.iter().zip(values) {
                    match value {
                        Some(value) => println!("{key}={value}"),
                        None => println!("{key} (never written)"),
                    }
                }
                ExitCode::SUCCESS
            })
        }
        KvCommand::Put { key, value } => client.put(&key, &value).await.map(|()| ExitCode::SUCCESS),
        KvCommand::PutMany { pairs } => {
            let mut split = Vec::with_capacity(pairs.len());
            for pair in &pairs {
                match pair.split_once('=') {
                    Some(pair) => split.push(pair),
                    None => {
                        eprintln!("concord-services: {pair:?} is not KEY=VALUE");
                        return ExitCode::from(2);
                    }
                }
            }
            client.put_many(&split).await.map(|()| ExitCode::SUCCESS)
        }
    };
    result.unwrap_or_else(client_failed)
}
