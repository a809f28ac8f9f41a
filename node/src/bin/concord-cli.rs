//! `concord-cli`: talks to a concord cluster: a service's requests, status
//! and membership.
//!
//! ```text
//! concord-cli --servers 127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003 kv put greeting hello
//! concord-cli --servers ... kv get greeting
//! concord-cli --servers ... kv get --read follower greeting
//! concord-cli --servers ... kv cas greeting hello bonjour
//! concord-cli --servers ... kv cas greeting --absent hello
//! concord-cli --servers ... kv put-many color=blue size=L
//! concord-cli --servers ... directory lookup ann bob
//! concord-cli --servers ... orders place-order acme
//! concord-cli --servers ... chat send ann bob "lunch at noon?"
//! concord-cli --servers ... status
//! concord-cli --servers ... member list
//! concord-cli --servers ... member add-learner 4 127.0.0.1:7004
//! concord-cli --servers ... member add-witness 5 127.0.0.1:7005
//! concord-cli --servers ... member promote 4
//! concord-cli --servers ... member remove 3
//! concord-cli --servers ... member transfer-leader 4
//! concord-cli force-recover --data-dir D --node-id 1 --reason "..." \
//!     --i-understand-acknowledged-writes-may-be-lost   # UNSAFE, offline
//! concord-cli completions bash
//! ```
//!
//! `--groups N` (or `CONCORD_GROUPS`) talks to a multi-group cluster
//! (`concord-node --groups N`, the same N) of any service: each command
//! goes to the group of its key (`concord_services::sharded`); a request
//! spanning groups (`kv put-many` or `get-many`, `directory lookup`,
//! `chat send` across groups, `chat list-accounts`) is refused (exit 2),
//! naming them. A write whose answer was lost is sent again in the
//! client's session of its group and applied once; exit 3 only when that
//! session expired meanwhile or no copy was answered.
//! `status` summarises each server's groups, `status --group G` shows
//! one group (`concord_node::groups_status_view`); `member` commands
//! change group 1 unless `--group G` names another
//! (`concord_node::multi_admin`). Without `--groups` the cluster has one
//! group, and every command reaches it.
//!
//! `--servers`, `--cluster-id` and `--timeout-ms` fall back to
//! `CONCORD_SERVERS`, `CONCORD_CLUSTER_ID` and `CONCORD_TIMEOUT_MS`; the
//! flags go before or after the command. The command line is
//! `concord_node::client`; each service's commands are its own
//! (`concord_services`). The key-value commands of old (`get`, `put`,
//! `append`, `cas`) are refused with their new place, `kv ...`.
//!
//! Exit status: 0 done, 1 refused or failed (the message says why and what
//! to do), 2 bad arguments, 3 the outcome is unknown (a request was sent
//! and its answer lost: check before retrying; for a membership change
//! run `member list`), 4 every server refused this client as configured
//! (TLS on one side only, a certificate the server does not trust,
//! another cluster's name; the message says which), 5 `kv get` of an
//! absent key (nothing on stdout), 6 a request above the 4 MiB limit
//! (nothing was sent). `kv put` takes its value from `--value-file PATH`
//! (`-` for stdin) as well as the command line.

// println! and friends that stop quietly at a closed pipe.
#[macro_use]
extern crate concord_cli_output;

use std::process::ExitCode;

use clap::CommandFactory;
use concord_node::client::{CliArgs, CliCommand, ClusterCommand, MemberCommand, ReadMode};
use concord_node::status_watch::{self, StatusArgs};
use concord_tokio::client::{ClientConfig, ClientError};
use concord_tokio::tls;
use std::sync::Arc;

use concord::ReadPath;
use concord_services::sharded_client::ShardedClient;
use concord_services::sharded_kv::ShardMap;
use concord_services::sharded_kv_client::{node_ids, ShardedKvError};
use concord_services::{CallError, CommandError, CommandVisitor, Service, ServiceClient, Shown};
use concord_tokio::multi::routing_client::{unresolved_addresses, RoutingConfig, RoutingError};
use concord_tokio::tls::TlsConfig;

/// How `run` ended badly, for the exit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    /// Refused or failed: exit 1.
    Failed,
    /// A request was sent and its answer lost: exit 3.
    Unknown,
    /// Every server refused this client as configured: exit 4.
    Rejected,
    /// `kv get` of an absent key: exit 5.
    Absent,
    /// A request above the size limit, not sent: exit 6.
    TooLarge,
    /// Arguments that make no request: exit 2.
    Usage,
}

/// Why `run` failed: the message, and how it ended.
struct Failure {
    message: String,
    ending: Ending,
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure {
            message,
            ending: Ending::Failed,
        }
    }
}

impl From<ClientError> for Failure {
    fn from(error: ClientError) -> Self {
        let ending = if error.outcome_unknown() {
            Ending::Unknown
        } else if matches!(error, ClientError::Rejected { .. }) {
            Ending::Rejected
        } else if matches!(error, ClientError::CommandTooLarge { .. }) {
            Ending::TooLarge
        } else {
            Ending::Failed
        };
        Failure {
            message: error.to_string(),
            ending,
        }
    }
}

impl From<CallError> for Failure {
    fn from(error: CallError) -> Self {
        match error {
            CallError::Client(error) => error.into(),
            other => other.to_string().into(),
        }
    }
}

impl From<CommandError> for Failure {
    fn from(error: CommandError) -> Self {
        let ending = match error {
            CommandError::Usage(_) => Ending::Usage,
            CommandError::Input(_) => Ending::Failed,
            CommandError::TooLarge(_) => Ending::TooLarge,
        };
        Failure {
            message: error.to_string(),
            ending,
        }
    }
}

fn main() -> ExitCode {
    let args = CliArgs::parse_or_exit();
    if let CliCommand::Completions { shell } = args.command {
        clap_complete::generate(
            shell,
            &mut CliArgs::command(),
            "concord-cli",
            &mut concord_cli_output::Stdout,
        );
        return ExitCode::SUCCESS;
    }
    if let CliCommand::ForceRecover(recover) = &args.command {
        return match recover.run(args.connection.group, &mut concord_cli_output::Stdout) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("concord-cli force-recover: {error}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("concord-cli: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("concord-cli: {}", e.message);
            match e.ending {
                Ending::Failed => ExitCode::FAILURE,
                Ending::Unknown => ExitCode::from(3),
                Ending::Rejected => ExitCode::from(4),
                Ending::Absent => ExitCode::from(5),
                Ending::TooLarge => ExitCode::from(6),
                Ending::Usage => ExitCode::from(2),
            }
        }
    }
}

async fn run(args: CliArgs) -> Result<(), Failure> {
    let connection = &args.connection;
    let tls = tls::load_from_flags(
        connection.tls_ca.clone(),
        connection.tls_cert.clone(),
        connection.tls_key.clone(),
        &connection.cluster_id,
        tls::TlsRole::Client,
    )
    .map_err(|e| e.to_string())?;
    if connection.groups > 1 {
        return sharded(args, tls).await;
    }
    let mut config = ClientConfig::new(connection.servers.clone(), connection.cluster_id.clone());
    config.tls = tls.clone();
    config.request_timeout = connection.timeout();
    match args.command {
        CliCommand::Service(command) => {
            let call = Call {
                config,
                read: connection.read,
                acknowledge_all: connection.acknowledge_all,
            };
            command.visit(call).await
        }
        CliCommand::Status(status_args) => status(&config, &status_args).await,
        CliCommand::Member(command) => multi_member(connection, tls, &command).await,
        CliCommand::Cluster(_) => Err(Failure {
            message: "`cluster` commands are for multi-group clusters: give --groups N as the \
                servers were started with"
                .to_string(),
            ending: Ending::Failed,
        }),
        CliCommand::Completions { .. } | CliCommand::ForceRecover(_) | CliCommand::Moved(_) => {
            Ok(())
        }
    }
}

/// One request of a service's command line: sent, answered, printed.
struct Call {
    config: ClientConfig,
    read: Option<ReadMode>,
    acknowledge_all: bool,
}

impl CommandVisitor for Call {
    type Output = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), Failure>>>>;

    fn visit<S: Service>(self, command: S::Command) -> Self::Output {
        Box::pin(async move {
            let request = concord_services::request_of::<S>(command)?;
            let mut client = ServiceClient::<S>::new(self.config);
            if let Some(read) = self.read {
                client.set_read_path(read.read_path());
            }
            client.set_acknowledge_all(self.acknowledge_all);
            let response = client.call(request.clone()).await?;
            let shown = S::show(&request, response, &mut concord_cli_output::Stdout)
                .map_err(|e| format!("cannot print the answer: {e}"))?;
            shown_ending(shown)
        })
    }
}

/// A service's command to a multi-group cluster (`--groups N`, N > 1):
/// sent to the group of its key (`concord_services::sharded`), through
/// each group's leader, a write inside the client's session there.
async fn sharded(args: CliArgs, tls: Option<Arc<TlsConfig>>) -> Result<(), Failure> {
    let connection = &args.connection;
    let groups = connection.groups;
    let command = match args.command {
        CliCommand::Service(command) => command,
        CliCommand::Status(status_args) => {
            return groups_status(connection, tls, &status_args).await
        }
        CliCommand::Member(command) => return multi_member(&args.connection, tls, &command).await,
        CliCommand::Cluster(command) => {
            return multi_cluster(&args.connection, tls, &command).await
        }
        _ => {
            return Err(Failure {
                message: format!(
                    "--groups {groups}: a multi-group cluster answers service, status and \
                     member commands only"
                ),
                ending: Ending::Usage,
            })
        }
    };
    let read_path = match connection.read {
        None => None,
        Some(ReadMode::Index) => Some(ReadPath::ReadIndex),
        Some(ReadMode::Lease) => Some(ReadPath::Lease),
        Some(ReadMode::Follower) => Some(ReadPath::Follower),
        Some(ReadMode::Log) => {
            return Err(Failure {
                message: format!(
                    "--groups {groups}: --read log is not offered by a multi-group cluster: \
                     its groups answer reads without log entries only; --read index is as \
                     strict (linearizable) and costs no entry; lease and follower also work"
                ),
                ending: Ending::Usage,
            })
        }
    };
    let call = ShardedCall {
        servers: connection.servers.clone(),
        cluster_id: connection.cluster_id.clone(),
        timeout: connection.timeout(),
        tls,
        groups,
        read_path,
    };
    command.visit(call).await
}

/// One request of a service's command line to a multi-group cluster.
struct ShardedCall {
    servers: Vec<String>,
    cluster_id: String,
    timeout: std::time::Duration,
    tls: Option<Arc<TlsConfig>>,
    groups: u64,
    read_path: Option<ReadPath>,
}

impl CommandVisitor for ShardedCall {
    type Output = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), Failure>>>>;

    fn visit<S: Service>(self, command: S::Command) -> Self::Output {
        Box::pin(async move {
            let groups = self.groups;
            let request = concord_services::request_of::<S>(command)?;
            let map = ShardMap::new(groups).map_err(|e| e.to_string())?;
            // Refused before any server is asked: it spans groups.
            if let Err(e) = concord_services::sharded::group_of::<S>(&map, &request) {
                return Err(Failure {
                    message: e.to_string(),
                    ending: Ending::Usage,
                });
            }
            let servers = node_ids(
                &self.servers,
                &self.cluster_id,
                self.tls.as_deref(),
                self.timeout,
            )
            .await
            .map_err(|e| Failure {
                message: format!("{e}; check --servers and --cluster-id"),
                ending: Ending::Failed,
            })?;
            let mut config = RoutingConfig::new(self.cluster_id.clone(), servers);
            config.unresolved = unresolved_addresses(&self.servers, &config.servers);
            config.tls = self.tls;
            config.request_timeout = self.timeout;
            config.connect_timeout = self.timeout;
            let mut client = ShardedClient::<S>::new(map, config).map_err(|e| e.to_string())?;
            if let Some(path) = self.read_path {
                client.set_read_path(path);
            }
            let response = client
                .call(request.clone())
                .await
                .map_err(|e| sharded_failure(e, groups))?;
            let shown = S::show(&request, response, &mut concord_cli_output::Stdout)
                .map_err(|e| format!("cannot print the answer: {e}"))?;
            shown_ending(shown)
        })
    }
}

/// How a multi-group call's error ends `concord-cli`.
fn sharded_failure(e: ShardedKvError, groups: u64) -> Failure {
    let ending = match &e {
        ShardedKvError::Shard(_) | ShardedKvError::Invalid(_) => Ending::Usage,
        ShardedKvError::Routing(RoutingError::Unknown { .. }) => Ending::Unknown,
        ShardedKvError::Session(session) if session.outcome_unknown() => Ending::Unknown,
        _ => Ending::Failed,
    };
    let hint = match &e {
        ShardedKvError::Routing(RoutingError::Refused { message, .. })
            if message.contains("not hosted") =>
        {
            format!(" (is --groups {groups} the servers' group count?)")
        }
        _ => String::new(),
    };
    Failure {
        message: format!("{e}{hint}"),
        ending,
    }
}

/// `status` of a multi-group cluster (see
/// `concord_node::groups_status_view`).
async fn groups_status(
    connection: &concord_node::client::Connection,
    tls: Option<Arc<TlsConfig>>,
    args: &StatusArgs,
) -> Result<(), Failure> {
    let redraw = args.watch && !args.json && std::io::IsTerminal::is_terminal(&std::io::stdout());
    concord_node::groups_status_view::run(
        &connection.servers,
        &connection.cluster_id,
        tls,
        connection.timeout(),
        connection.groups,
        args,
        |text| {
            if redraw {
                print!("\x1b[2J\x1b[H");
            }
            println!("{text}");
            !concord_cli_output::stdout_closed()
        },
    )
    .await
    .map_err(|e| {
        let ending = match e {
            concord_node::groups_status_view::GroupsStatusError::NoSuchGroup { .. } => {
                Ending::Usage
            }
            _ => Ending::Failed,
        };
        Failure {
            message: e.to_string(),
            ending,
        }
    })
}

/// The multi-group cluster behind `connection`: every server's id,
/// asked of the servers themselves.
async fn multi_cluster_of(
    connection: &concord_node::client::Connection,
    tls: Option<Arc<TlsConfig>>,
) -> Result<concord_node::multi_admin::Cluster, Failure> {
    let timeout = connection.timeout();
    let servers = node_ids(
        &connection.servers,
        &connection.cluster_id,
        tls.as_deref(),
        timeout,
    )
    .await
    .map_err(|e| Failure {
        message: format!("{e}; check --servers and --cluster-id"),
        ending: Ending::Failed,
    })?;
    Ok(concord_node::multi_admin::Cluster {
        cluster_id: connection.cluster_id.clone(),
        servers,
        groups: connection.groups,
        tls,
        timeout,
    })
}

/// A node-level operation's failure as the CLI exits on it.
fn admin_failure(failure: concord_node::multi_admin::AdminFailure) -> Failure {
    Failure {
        message: failure.message,
        ending: if failure.unknown {
            Ending::Unknown
        } else {
            Ending::Failed
        },
    }
}

/// `member ...` against a multi-group cluster (see
/// `concord_node::multi_admin`).
async fn multi_member(
    connection: &concord_node::client::Connection,
    tls: Option<Arc<TlsConfig>>,
    command: &MemberCommand,
) -> Result<(), Failure> {
    let cluster = multi_cluster_of(connection, tls).await?;
    concord_node::multi_admin::member(&cluster, connection.group, command)
        .await
        .map_err(admin_failure)
}

/// `cluster ...` against a multi-group cluster (see
/// `concord_node::cluster_admin`).
async fn multi_cluster(
    connection: &concord_node::client::Connection,
    tls: Option<Arc<TlsConfig>>,
    command: &ClusterCommand,
) -> Result<(), Failure> {
    let cluster = multi_cluster_of(connection, tls).await?;
    concord_node::cluster_admin::cluster(&cluster, command)
        .await
        .map_err(admin_failure)
}

/// `status` (see `concord_node::status_watch`): when no server
/// answered, exit 4 if one refused this client, else 1.
async fn status(config: &ClientConfig, args: &StatusArgs) -> Result<(), Failure> {
    if let Some(group) = args.group {
        return Err(Failure {
            message: format!(
                "--group {group} shows one group of a multi-group cluster: give its group count \
                 with --groups N"
            ),
            ending: Ending::Usage,
        });
    }
    // A terminal shows --watch as one table redrawn in place; a pipe or
    // file gets every round, one after another.
    let redraw = args.watch && !args.json && std::io::IsTerminal::is_terminal(&std::io::stdout());
    status_watch::run(config, args, |text| {
        if redraw {
            print!("\x1b[2J\x1b[H");
        }
        println!("{text}");
        !concord_cli_output::stdout_closed()
    })
    .await
    .map_err(|e| match e {
        status_watch::StatusError::Refused(refusal) => Failure::from(refusal),
        other => Failure::from(other.to_string()),
    })
}

/// How a printed answer ends the command: a note goes to stderr; an
/// absent key and a refused command end with their own exit status.
fn shown_ending(shown: Shown) -> Result<(), Failure> {
    match shown {
        Shown::Done => Ok(()),
        Shown::Note(note) => {
            eprintln!("({note})");
            Ok(())
        }
        Shown::Absent(message) => Err(Failure {
            message,
            ending: Ending::Absent,
        }),
        Shown::NotDone(message) => Err(message.into()),
    }
}
