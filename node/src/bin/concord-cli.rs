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
extern crate concord;

use std::process::ExitCode;

use clap::CommandFactory;
use concord::tokio::client::{Client, ClientConfig, ClientError};
use concord::tokio::tls;
use concord::tokio::wire::{AdminRequest, AdminResponse, Members};
use concord_node::client::{CliArgs, CliCommand, MemberCommand, ReadMode};
use concord_services::{CallError, CommandError, CommandVisitor, Service, ServiceClient, Shown};

/// A table of the members, for a person.
fn print_members(members: &Members) {
    if let Some(index) = members.not_member_since {
        println!(
            "node {} is not a member since index {index}; ask another server (its view below \
             is stale)",
            members.answered_by
        );
    }
    let list = |ids: &[u64]| {
        if ids.is_empty() {
            "-".to_string()
        } else {
            ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
        }
    };
    println!(
        "configuration at index {} ({}), term {}, leader {}, answered by node {}",
        members.configuration_index,
        if members.configuration_committed {
            "committed"
        } else {
            "not committed yet"
        },
        members.term,
        members
            .leader
            .map(|l| l.to_string())
            .unwrap_or_else(|| "unknown".to_string()),
        members.answered_by
    );
    let witnesses: Vec<u64> = members
        .members
        .iter()
        .filter(|m| m.role.ends_with("witness"))
        .map(|m| m.id)
        .collect();
    print!(
        "voters {}  witnesses {}  learners {}",
        list(&members.voters),
        list(&witnesses),
        list(&members.learners)
    );
    if !members.voters_outgoing.is_empty() {
        print!(
            "  JOINT: outgoing voters {} (a change of voters is under way)",
            list(&members.voters_outgoing)
        );
    }
    println!();
    if let Some(forced) = &members.forced_recovery {
        println!("AUDIT: {forced}");
    }
    println!(
        "{:>4}  {:<15} {:<22} {:>8} {:>8}",
        "id", "role", "address", "match", "lag"
    );
    for m in &members.members {
        let role = if Some(m.id) == members.leader {
            format!("{} *leader", m.role)
        } else {
            m.role.clone()
        };
        let or_dash = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".to_string());
        println!(
            "{:>4}  {:<15} {:<22} {:>8} {:>8}",
            m.id,
            role,
            m.addr.as_deref().unwrap_or("(unknown)"),
            or_dash(m.match_index),
            or_dash(m.lag_entries)
        );
    }
    if members.members.iter().all(|m| m.match_index.is_none()) {
        println!(
            "(match and lag are known to the leader only; node {} answered)",
            members.answered_by
        );
    }
}

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

async fn member(client: &mut Client, command: &MemberCommand) -> Result<(), Failure> {
    let (request, done) = match command.clone() {
        MemberCommand::List => (AdminRequest::List, String::new()),
        MemberCommand::AddLearner { id, addr } => (
            AdminRequest::AddLearner {
                id,
                addr: addr.clone(),
            },
            format!("added node {id} ({addr}) as a learner"),
        ),
        MemberCommand::Add { id, addr } => (
            AdminRequest::AddVoter {
                id,
                addr: addr.clone(),
            },
            format!("added node {id} ({addr}) as a voter"),
        ),
        MemberCommand::AddWitness { id, addr } => (
            AdminRequest::AddWitness {
                id,
                addr: addr.clone(),
            },
            format!("added node {id} ({addr}) as a witness"),
        ),
        MemberCommand::Promote { id } => (
            AdminRequest::Promote { id },
            format!("promoted node {id} to voter"),
        ),
        MemberCommand::Remove { id } => (AdminRequest::Remove { id }, format!("removed node {id}")),
        MemberCommand::TransferLeader { id } => (
            AdminRequest::TransferLeader { id },
            format!("node {id} is the leader now"),
        ),
    };
    let answer = client.admin(request).await.map_err(|e| match e {
        ClientError::RetriesExhausted { attempts, last }
        | ClientError::Unavailable { attempts, last } => Failure::from(format!(
            "no leader answered after {attempts} attempts (last problem: {last}); check \
             --servers and --cluster-id, and that a majority of the voters runs"
        )),
        other => Failure::from(other),
    })?;
    match answer {
        AdminResponse::Done(members) => {
            if !done.is_empty() {
                println!("{done}");
            }
            print_members(&members);
            Ok(())
        }
        AdminResponse::Refused(reason) => Err(format!("refused: {reason}").into()),
        AdminResponse::TimedOut(reason) => Err(Failure {
            message: format!("outcome unknown: {reason}"),
            ending: Ending::Unknown,
        }),
        AdminResponse::NotLeader { leader_hint, .. } => Err(format!(
            "no leader could be reached (last hint: {leader_hint:?}); check that a majority of \
             the voters runs, and list every server in --servers"
        )
        .into()),
    }
}

fn main() -> ExitCode {
    let args = CliArgs::parse_or_exit();
    if let CliCommand::Completions { shell } = args.command {
        clap_complete::generate(
            shell,
            &mut CliArgs::command(),
            "concord-cli",
            &mut concord::cli_output::Stdout,
        );
        return ExitCode::SUCCESS;
    }
    if let CliCommand::ForceRecover(recover) = &args.command {
        return match concord::tokio::recovery::force_recover(
            &recover.options(),
            &mut concord::cli_output::Stdout,
        ) {
            Ok(_) => ExitCode::SUCCESS,
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
    let mut config = ClientConfig::new(connection.servers.clone(), connection.cluster_id.clone());
    config.tls = tls;
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
        CliCommand::Status => status(&config).await,
        CliCommand::Member(command) => member(&mut Client::new(config), &command).await,
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
            let shown = S::show(&request, response, &mut concord::cli_output::Stdout)
                .map_err(|e| format!("cannot print the answer: {e}"))?;
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
        })
    }
}

/// `status`: one row per member of the configuration the leader reports
/// (so a removed server is not shown as a member and an added one is),
/// each with its followers' progress and last contact as the leader sees
/// them; then any of --servers that is not a member. Without a leader,
/// the --servers only.
async fn status(config: &ClientConfig) -> Result<(), Failure> {
    let mut lister = Client::new(ClientConfig {
        attempts_max: (2 * config.servers.len() as u32).max(2),
        ..config.clone()
    });
    let members = match lister.admin(AdminRequest::List).await {
        Ok(AdminResponse::Done(members)) if members.leader == Some(members.answered_by) => {
            Some(members)
        }
        _ => None,
    };
    // (member id, its role in the configuration, address)
    let mut targets: Vec<(Option<u64>, String, String)> = Vec::new();
    if let Some(members) = &members {
        for member in &members.members {
            let addr = member.addr.clone().unwrap_or_default();
            targets.push((Some(member.id), member.role.clone(), addr));
        }
    }
    for server in &config.servers {
        if !targets.iter().any(|(_, _, addr)| addr == server) {
            targets.push((None, String::new(), server.clone()));
        }
    }
    let mut client = Client::new(ClientConfig {
        servers: targets.iter().map(|(_, _, addr)| addr.clone()).collect(),
        ..config.clone()
    });
    let mut rows = Vec::new();
    // The last refusal of this client as configured (TLS, CA, cluster id).
    let mut rejected = None;
    for (i, (member, role, addr)) in targets.iter().enumerate() {
        let answer = if addr.is_empty() {
            Err("unreachable: its address is not in the leader's address book".to_string())
        } else {
            client.status(i).await.map_err(|e| match e {
                ClientError::Rejected { reason } => {
                    let shown = format!("refused: {reason}");
                    rejected = Some(ClientError::Rejected { reason });
                    shown
                }
                other => format!("unreachable: {other}"),
            })
        };
        rows.push((*member, role.clone(), addr.clone(), answer));
    }
    // A --servers address that answered as a member listed under another
    // address is that member.
    let member_ids: Vec<u64> = targets.iter().filter_map(|(id, _, _)| *id).collect();
    rows.retain(|(member, _, _, answer)| {
        member.is_some() || !matches!(answer, Ok(s) if member_ids.contains(&s.id))
    });
    match &members {
        Some(members) => {
            let ids = |ids: &[u64]| {
                if ids.is_empty() {
                    "-".to_string()
                } else {
                    ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
                }
            };
            println!(
                "configuration at index {} ({}) from the leader, node {} in term {}: voters {}  learners {}{}",
                members.configuration_index,
                if members.configuration_committed {
                    "committed"
                } else {
                    "not committed yet"
                },
                members.answered_by,
                members.term,
                ids(&members.voters),
                ids(&members.learners),
                if members.voters_outgoing.is_empty() {
                    String::new()
                } else {
                    format!("  JOINT: outgoing voters {}", ids(&members.voters_outgoing))
                }
            );
        }
        None => println!("no leader answered: the --servers as given (members unknown)"),
    }
    // Exit 4 only when no server answered and one refused this client.
    let failure = if rows.iter().any(|(_, _, _, r)| r.is_ok()) {
        None
    } else {
        rejected.map(|e| Failure {
            message: e.to_string(),
            ending: Ending::Rejected,
        })
    };
    let max_commit = rows
        .iter()
        .filter_map(|(_, _, _, r)| r.as_ref().ok())
        .map(|s| s.commit_index)
        .max()
        .unwrap_or(0);
    println!(
        "{:<22} {:>4} {:<8} {:<12} {:>6} {:>7} {:>8} {:>8} {:>8} {:>6} {:>8} {:>11}",
        "server",
        "id",
        "member",
        "role",
        "term",
        "leader",
        "last",
        "commit",
        "applied",
        "lag",
        "snapshot",
        "taken/inst."
    );
    let mut strangers_shown = false;
    for (member, role, server, row) in rows {
        if member.is_none() && members.is_some() && !strangers_shown {
            println!("not members of the leader's configuration:");
            strangers_shown = true;
        }
        let role = if member.is_some() {
            role
        } else if members.is_some() {
            "NO".to_string()
        } else {
            "?".to_string()
        };
        match row {
            Ok(s) => {
                println!(
                    "{:<22} {:>4} {:<8} {:<12} {:>6} {:>7} {:>8} {:>8} {:>8} {:>6} {:>8} {:>11}",
                    server,
                    s.id,
                    role,
                    s.role,
                    s.term,
                    s.leader
                        .map(|l| l.to_string())
                        .unwrap_or_else(|| "-".to_string()),
                    s.last_index,
                    s.commit_index,
                    s.applied_index,
                    max_commit.saturating_sub(s.applied_index),
                    s.snapshot_index,
                    format!(
                        "{}/{}",
                        s.server.snapshots_taken, s.server.snapshots_installed
                    )
                );
                for p in &s.peers {
                    // In probe state the match index is the last one the
                    // follower confirmed, which the leader is checking: a
                    // follower that restarted may hold less.
                    let match_index = if p.state == "Probe" {
                        format!("{}?", p.match_index)
                    } else {
                        p.match_index.to_string()
                    };
                    let heard = match p.last_contact_ms {
                        Some(ms) => format!("heard {ms} ms ago"),
                        None => "never heard".to_string(),
                    };
                    println!(
                        "    follower {:>3}: match {:>9} next {:>8} in-flight {:>4} {:<9} {}{}",
                        p.id,
                        match_index,
                        p.next_index,
                        p.inflight_messages,
                        p.state,
                        heard,
                        if p.log_regressions > 0 {
                            format!(
                                "  LOST ACKNOWLEDGED ENTRIES {} time(s): check its disk",
                                p.log_regressions
                            )
                        } else {
                            String::new()
                        }
                    );
                }
                if let Some(index) = s.not_member_since {
                    println!(
                        "    node {} is not a member since index {index}; ask another server",
                        s.id
                    );
                }
                if s.server.follower_log_regressions > 0 {
                    println!(
                            "    WARNING: {} follower log regression(s) seen while leading (a disk lost synced data; see this server's error log)",
                            s.server.follower_log_regressions
                        );
                }
            }
            Err(e) => println!(
                "{server:<22} {:>4} {role:<8} {e}",
                member.map_or("?".to_string(), |id| id.to_string())
            ),
        }
    }
    match failure {
        Some(failure) => Err(failure),
        None => Ok(()),
    }
}
