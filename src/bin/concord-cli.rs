//! `concord-cli`: talks to a concord key-value cluster.
//!
//! ```text
//! concord-cli --servers 127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003 put greeting hello
//! concord-cli --servers ... get greeting
//! concord-cli --servers ... get --read follower greeting
//! concord-cli --servers ... cas greeting hello bonjour
//! concord-cli --servers ... status
//! ```

use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use concord::tokio::client::{Client, ClientConfig};
use concord::ReadPath;

const USAGE: &str = "\
usage: concord-cli --servers <HOST:PORT,...> [--cluster-id <NAME>] [--timeout-ms <MS>] <COMMAND>

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

  --cluster-id defaults to \"concord\"";

struct Args {
    servers: Vec<String>,
    cluster_id: String,
    timeout: Duration,
    read_path: Option<ReadPath>,
    command: Vec<String>,
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
            _ => command.push(arg),
        }
    }
    let servers = servers.ok_or("missing --servers")?;
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
    })
}

fn show(value: &Option<Bytes>) -> String {
    match value {
        Some(v) => String::from_utf8_lossy(v).to_string(),
        None => "(absent)".to_string(),
    }
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1).collect()) {
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
            eprintln!("concord-cli: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let mut config = ClientConfig::new(args.servers.clone(), args.cluster_id);
    config.request_timeout = args.timeout;
    config.read_path = args.read_path;
    let mut client = Client::new(config);
    let c = &args.command;
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
                return Err("compare-and-set did not match".to_string());
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
