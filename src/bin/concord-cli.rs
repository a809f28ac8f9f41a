//! `concord-cli`: talks to a concord key-value cluster.
//!
//! ```text
//! concord-cli --servers 127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003 put greeting hello
//! concord-cli --servers ... get greeting
//! concord-cli --servers ... get --read follower greeting
//! concord-cli --servers ... cas greeting hello bonjour
//! concord-cli --servers ... status
//! concord-cli --servers ... member list
//! concord-cli --servers ... member add-learner 4 127.0.0.1:7004
//! concord-cli --servers ... member promote 4
//! concord-cli --servers ... member remove 3
//! concord-cli --servers ... member transfer-leader 4
//! concord-cli force-recover --data-dir D --node-id 1 --reason "..." \
//!     --i-understand-acknowledged-writes-may-be-lost   # UNSAFE, offline
//! ```
//!
//! Exit status: 0 done, 1 refused or failed (the message says why and what
//! to do), 2 bad arguments, 3 a membership change whose outcome is unknown
//! (run `member list`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use concord::tokio::client::{Client, ClientConfig, ClientError};
use concord::tokio::tls;
use concord::tokio::wire::{AdminRequest, AdminResponse, Members};
use concord::ReadPath;

const USAGE: &str = "\
usage: concord-cli --servers <HOST:PORT,...> [--cluster-id <NAME>] [--timeout-ms <MS>]
                   [--tls-ca <PEM> --tls-cert <PEM> --tls-key <PEM>] <COMMAND>

commands:
  get [--read PATH] <KEY>        print the value (or \"(absent)\"), read linearizably
                                 on PATH: index (the default: the leader confirms
                                 it still leads with one heartbeat round), lease
                                 (the leader, no round trip, if the cluster runs
                                 leases), follower (any server, once it applied
                                 the leader's read index) or log (a log entry)
  put <KEY> <VALUE>              set a value
  append <KEY> <VALUE>           append to a value; print the result
  cas <KEY> <EXPECTED> <NEW>     set NEW if the value is EXPECTED (use --absent
                                 instead of EXPECTED for \"key not set\")
  status                         role, term, leader, commit, applied, lag and snapshot of every server
  force-recover ...              UNSAFE, offline, on a stopped server's data directory:
                                 make it the only voter after a majority is lost for
                                 good (`concord-cli force-recover --help`)

membership (one change at a time; a change answers once committed and final):
  member list                    voters, learners, outgoing voters while a change is
                                 joint, the leader, and each member's address,
                                 match index and lag (as the leader sees them)
  member add-learner <ID> <HOST:PORT>
                                 add a new node as a learner (start it first with
                                 concord-node --join); its address is replicated
  member promote <ID>            make a learner a voter; refused until it caught up
  member add <ID> <HOST:PORT>    add a new node directly as a voter (prefer
                                 add-learner, wait for catch-up, then promote)
  member remove <ID>             remove a voter or a learner (also a dead one)
  member transfer-leader <ID>    hand leadership to the caught-up voter ID

  Replace a dead voter: add-learner the new node, wait until `member list` shows
  its lag near 0, promote it, then remove the dead one. Never remove or replace
  more than one voter at a time, and never remove voters so that the remaining
  ones (dead ones included) have no live majority.

  --cluster-id defaults to \"concord\"
  --tls-ca, --tls-cert, --tls-key: mutual TLS 1.3 to servers that run it: the
  cluster's CA certificate, a client certificate naming client.<CLUSTER-ID> and
  its private key, as PEM files (all three or none)

exit status: 0 done, 1 refused or failed (the message says why), 2 bad arguments,
3 a membership change whose outcome is unknown (run `member list` before retrying)";

struct Args {
    servers: Vec<String>,
    cluster_id: String,
    timeout: Duration,
    read_path: Option<ReadPath>,
    command: Vec<String>,
    tls: [Option<PathBuf>; 3],
}

fn parse_read_path(value: &str) -> Result<Option<ReadPath>, String> {
    match value {
        "index" => Ok(Some(ReadPath::ReadIndex)),
        "lease" => Ok(Some(ReadPath::Lease)),
        "follower" => Ok(Some(ReadPath::Follower)),
        "log" => Ok(None),
        other => Err(format!(
            "--read: {other:?} is not a read path; use index, lease, follower or log"
        )),
    }
}

fn parse_args(argv: Vec<String>) -> Result<Args, String> {
    let mut servers = None;
    let mut cluster_id = "concord".to_string();
    let mut timeout = Duration::from_secs(2);
    let mut read_path = Some(ReadPath::ReadIndex);
    let mut command = Vec::new();
    let mut tls: [Option<PathBuf>; 3] = [None, None, None];
    let mut it = argv.into_iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--help" | "-h" => return Err(String::new()),
            "--servers" => {
                let value = it.next().ok_or("--servers needs a value")?;
                let list: Vec<String> = value
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect();
                for server in &list {
                    if server.parse::<std::net::SocketAddr>().is_err() {
                        return Err(format!(
                            "--servers: {server:?} is not a host:port address like 127.0.0.1:7001"
                        ));
                    }
                }
                if list.is_empty() {
                    return Err("--servers: give at least one address".to_string());
                }
                servers = Some(list);
            }
            "--cluster-id" => cluster_id = it.next().ok_or("--cluster-id needs a value")?,
            "--read" => {
                let value = it.next().ok_or("--read needs a value")?;
                read_path = parse_read_path(&value)?;
            }
            "--timeout-ms" => {
                let value = it.next().ok_or("--timeout-ms needs a value")?;
                let ms: u64 = value
                    .parse()
                    .map_err(|_| format!("--timeout-ms: {value:?} is not a number"))?;
                timeout = Duration::from_millis(ms.max(1));
            }
            "--tls-ca" | "--tls-cert" | "--tls-key" => {
                let value = it.next().ok_or_else(|| format!("{arg} needs a value"))?;
                let slot = ["--tls-ca", "--tls-cert", "--tls-key"]
                    .iter()
                    .position(|flag| *flag == arg)
                    .unwrap_or(0);
                tls[slot] = Some(PathBuf::from(value));
            }
            _ => command.push(arg),
        }
    }
    let servers = servers.ok_or("missing --servers")?;
    if command.first().map(String::as_str) == Some("member") {
        let arity = match command.get(1).map(String::as_str) {
            None => return Err("member: missing subcommand (list, add-learner, add, promote, remove, transfer-leader)".to_string()),
            Some("list") => 2,
            Some("add") | Some("add-learner") => 4,
            Some("promote") | Some("remove") | Some("transfer-leader") => 3,
            Some(other) => {
                return Err(format!(
                    "member: unknown subcommand {other:?}; use list, add-learner, add, promote, \
                     remove or transfer-leader"
                ))
            }
        };
        if command.len() != arity {
            return Err(format!(
                "member {} takes {} argument(s), got {}",
                command[1],
                arity - 2,
                command.len() - 2
            ));
        }
        if arity >= 3 {
            parse_node_id(&command[2])?;
        }
        if arity == 4 && command[3].parse::<std::net::SocketAddr>().is_err() {
            return Err(format!(
                "member {}: {:?} is not a host:port address like 127.0.0.1:7004",
                command[1], command[3]
            ));
        }
        return Ok(Args {
            servers,
            cluster_id,
            timeout,
            read_path,
            command,
            tls,
        });
    }
    let arity = match command.first().map(String::as_str) {
        None => return Err("missing command".to_string()),
        Some("get") => 2,
        Some("put") | Some("append") => 3,
        Some("cas") => 4,
        Some("status") => 1,
        Some(other) => return Err(format!("unknown command {other:?}")),
    };
    if command.len() != arity {
        return Err(format!(
            "{} takes {} argument(s), got {}",
            command[0],
            arity - 1,
            command.len() - 1
        ));
    }
    Ok(Args {
        servers,
        cluster_id,
        timeout,
        read_path,
        command,
        tls,
    })
}

fn parse_node_id(value: &str) -> Result<u64, String> {
    match value.parse::<u64>() {
        Ok(0) => Err("node id 0 is reserved; node ids are 1 or more".to_string()),
        Ok(id) => Ok(id),
        Err(_) => Err(format!("{value:?} is not a node id (a positive integer)")),
    }
}

/// A table of the members, for a person.
fn print_members(members: &Members) {
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
    print!(
        "voters {}  learners {}",
        list(&members.voters),
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

/// Why `run` failed: the message, and whether the outcome is unknown.
struct Failure {
    message: String,
    unknown: bool,
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure {
            message,
            unknown: false,
        }
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Self {
        message.to_string().into()
    }
}

async fn member(client: &mut Client, c: &[String]) -> Result<(), Failure> {
    let id = || c.get(2).map(|v| parse_node_id(v)).transpose();
    let id = id()?.unwrap_or(0);
    let (request, done) = match c[1].as_str() {
        "list" => (AdminRequest::List, String::new()),
        "add-learner" => (
            AdminRequest::AddLearner {
                id,
                addr: c[3].clone(),
            },
            format!("added node {id} ({}) as a learner", c[3]),
        ),
        "add" => (
            AdminRequest::AddVoter {
                id,
                addr: c[3].clone(),
            },
            format!("added node {id} ({}) as a voter", c[3]),
        ),
        "promote" => (
            AdminRequest::Promote { id },
            format!("promoted node {id} to voter"),
        ),
        "remove" => (AdminRequest::Remove { id }, format!("removed node {id}")),
        "transfer-leader" => (
            AdminRequest::TransferLeader { id },
            format!("node {id} is the leader now"),
        ),
        _ => unreachable!("validated in parse_args"),
    };
    let answer = client.admin(request).await.map_err(|e| match e {
        ClientError::RetriesExhausted { attempts, last } => format!(
            "no leader answered after {attempts} attempts (last problem: {last}); check \
             --servers and --cluster-id, and that a majority of the voters runs"
        ),
        other => other.to_string(),
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
            unknown: true,
        }),
        AdminResponse::NotLeader { leader_hint, .. } => Err(format!(
            "no leader could be reached (last hint: {leader_hint:?}); check that a majority of \
             the voters runs, and list every server in --servers"
        )
        .into()),
    }
}

fn show(value: &Option<Bytes>) -> String {
    match value {
        Some(v) => String::from_utf8_lossy(v).to_string(),
        None => "(absent)".to_string(),
    }
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().map(String::as_str) == Some("force-recover") {
        return ExitCode::from(concord::tokio::recovery::force_recover_command(&argv[1..]));
    }
    let args = match parse_args(argv) {
        Ok(args) => args,
        Err(message) if message.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("concord-cli: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
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
            if e.unknown {
                ExitCode::from(3)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

async fn run(args: Args) -> Result<(), Failure> {
    let [ca, cert, key] = args.tls;
    let tls = tls::load_from_flags(ca, cert, key, &args.cluster_id, tls::TlsRole::Client)
        .map_err(|e| e.to_string())?;
    let mut config = ClientConfig::new(args.servers.clone(), args.cluster_id);
    config.tls = tls;
    config.request_timeout = args.timeout;
    config.read_path = args.read_path;
    let mut client = Client::new(config);
    let c = &args.command;
    if c[0] == "member" {
        return member(&mut client, c).await;
    }
    let bytes = |s: &String| Bytes::from(s.clone().into_bytes());
    match c[0].as_str() {
        "get" => println!(
            "{}",
            show(&client.get(bytes(&c[1])).await.map_err(|e| e.to_string())?)
        ),
        "put" => {
            client
                .put(bytes(&c[1]), bytes(&c[2]))
                .await
                .map_err(|e| e.to_string())?;
            println!("ok");
        }
        "append" => {
            let value = client
                .append(bytes(&c[1]), bytes(&c[2]))
                .await
                .map_err(|e| e.to_string())?;
            println!("{}", show(&Some(value)));
        }
        "cas" => {
            let expected = if c[2] == "--absent" {
                None
            } else {
                Some(bytes(&c[2]))
            };
            let (swapped, current) = client
                .cas(bytes(&c[1]), expected, bytes(&c[3]))
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "{} (value now {})",
                if swapped { "swapped" } else { "not swapped" },
                show(&current)
            );
            if !swapped {
                return Err("compare-and-set did not match".into());
            }
        }
        "status" => {
            let mut rows = Vec::new();
            for (i, server) in args.servers.iter().enumerate() {
                rows.push((server.clone(), client.status(i).await));
            }
            let max_commit = rows
                .iter()
                .filter_map(|(_, r)| r.as_ref().ok())
                .map(|s| s.commit_index)
                .max()
                .unwrap_or(0);
            println!(
                "{:<22} {:>4} {:<12} {:>6} {:>7} {:>8} {:>8} {:>8} {:>6} {:>8} {:>11}",
                "server",
                "id",
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
            for (server, row) in rows {
                match row {
                    Ok(s) => {
                        println!(
                            "{:<22} {:>4} {:<12} {:>6} {:>7} {:>8} {:>8} {:>8} {:>6} {:>8} {:>11}",
                            server,
                            s.id,
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
                            println!(
                                "    follower {:>3}: match {:>8} next {:>8} in-flight {:>4} {}{}",
                                p.id,
                                p.match_index,
                                p.next_index,
                                p.inflight_messages,
                                p.state,
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
                        if s.server.follower_log_regressions > 0 {
                            println!(
                                "    WARNING: {} follower log regression(s) seen while leading (a disk lost synced data; see this server's error log)",
                                s.server.follower_log_regressions
                            );
                        }
                    }
                    Err(e) => println!("{server:<22} unreachable: {e}"),
                }
            }
        }
        _ => unreachable!("validated in parse_args"),
    }
    Ok(())
}
