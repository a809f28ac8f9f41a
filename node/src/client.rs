//! `concord-cli`'s command line (clap, with `CONCORD_*` environment
//! fallbacks for the connection flags).

use std::path::PathBuf;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use concord::NodeId;
use concord::ReadPath;
use concord_services::ServiceCommand;

use crate::parse;

/// Default time a request may take before the client retries elsewhere.
pub const TIMEOUT_MS_DEFAULT: u64 = 2000;

const EXIT_STATUS: &str = "\
Exit status: 0 done, 1 refused or failed (the message says why), 2 bad arguments,
3 the outcome is unknown: a request was sent and its answer lost (check before
retrying; for a membership change run `member list`), 4 every server refused this
client as configured (TLS on one side only, a certificate the server does not
trust, another cluster's name; the message says which), 5 `kv get` of a key that
is absent (nothing on stdout), 6 a request above the 4 MiB limit (nothing was
sent).

Limits: a request (key and value, encoded) is at most 4 MiB; a larger `kv put` is
refused before anything is sent. Give a large value with --value-file PATH (or
--value-file - for stdin) rather than on the command line.";

/// `concord-cli`: talks to a concord cluster.
#[derive(Debug, Parser)]
#[command(
    name = "concord-cli",
    version,
    about = "Talks to a concord cluster: a service's requests (kv, directory, orders, chat), \
        status and membership",
    after_help = EXIT_STATUS
)]
pub struct CliArgs {
    /// How to reach the cluster.
    #[command(flatten)]
    pub connection: Connection,
    /// What to do.
    #[command(subcommand)]
    pub command: CliCommand,
}

/// The flags every command takes (before or after the command's name).
#[derive(Clone, Debug, Args)]
pub struct Connection {
    /// The cluster's servers as host:port, comma separated (any of them;
    /// the client follows the leader's redirects).
    #[arg(
        long,
        env = "CONCORD_SERVERS",
        value_name = "HOST:PORT,...",
        value_delimiter = ',',
        value_parser = parse::addr,
        global = true
    )]
    pub servers: Vec<String>,
    /// The cluster's name, as given to its servers.
    #[arg(
        long,
        env = "CONCORD_CLUSTER_ID",
        value_name = "NAME",
        default_value = "concord",
        global = true
    )]
    pub cluster_id: String,
    /// How long one request may take before the client tries again.
    #[arg(
        long,
        env = "CONCORD_TIMEOUT_MS",
        value_name = "MS",
        default_value_t = TIMEOUT_MS_DEFAULT,
        global = true
    )]
    pub timeout_ms: u64,
    /// How a read (`kv get`, `orders last-order`, ...) goes: index (the
    /// leader confirms it still leads with one heartbeat round), lease
    /// (the leader, no round trip, if the cluster runs leases), follower
    /// (any server, once it applied the leader's read index) or log (a log
    /// entry) [default: the service's, index; follower for orders].
    #[arg(long, value_enum, value_name = "PATH", global = true)]
    pub read: Option<ReadMode>,
    /// Return from a write only once every healthy server has applied it,
    /// not just a majority.
    #[arg(long, global = true)]
    pub acknowledge_all: bool,
    /// The cluster's group count, as given to its servers (`concord-node
    /// --groups N`): N > 1 sends each `kv` request to the group of its
    /// keys (a `put-many` or `get-many` across groups is refused).
    #[arg(
        long,
        env = "CONCORD_GROUPS",
        value_name = "N",
        default_value_t = 1,
        value_parser = groups,
        global = true
    )]
    pub groups: u64,
    /// With --groups N: the group a `member` command is for (0 is the
    /// catalog).
    #[arg(long, value_name = "G", global = true)]
    pub group: Option<u64>,
    /// Mutual TLS 1.3 to servers that run it: the cluster's CA certificate
    /// (PEM). All three --tls-* flags or none.
    #[arg(long, env = "CONCORD_TLS_CA", value_name = "PEM", global = true)]
    pub tls_ca: Option<PathBuf>,
    /// This client's certificate (PEM), naming `client.<CLUSTER-ID>`.
    #[arg(long, env = "CONCORD_TLS_CERT", value_name = "PEM", global = true)]
    pub tls_cert: Option<PathBuf>,
    /// This client's private key (PEM).
    #[arg(long, env = "CONCORD_TLS_KEY", value_name = "PEM", global = true)]
    pub tls_key: Option<PathBuf>,
}

fn groups(value: &str) -> Result<u64, String> {
    let n: u64 = value
        .parse()
        .map_err(|_| format!("{value:?} is not a number"))?;
    concord_services::sharded_kv::ShardMap::new(n)
        .map(|map| map.groups())
        .map_err(|e| e.to_string())
}

impl Connection {
    /// The request timeout (at least 1 ms).
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.max(1))
    }
}

/// The read paths of `--read`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReadMode {
    /// ReadIndex: the leader confirms it still leads with one heartbeat
    /// round (the default).
    Index,
    /// The leader answers within its lease, no round trip (needs servers
    /// started with --lease-ticks; otherwise served as index).
    Lease,
    /// Any server answers once it applied the leader's read index.
    Follower,
    /// Through the log, like a write.
    Log,
}

impl ReadMode {
    /// The client library's read path; `None` reads through the log.
    pub fn read_path(self) -> Option<ReadPath> {
        match self {
            ReadMode::Index => Some(ReadPath::ReadIndex),
            ReadMode::Lease => Some(ReadPath::Lease),
            ReadMode::Follower => Some(ReadPath::Follower),
            ReadMode::Log => None,
        }
    }
}

/// `concord-cli`'s commands.
#[derive(Debug, Subcommand)]
pub enum CliCommand {
    /// A service's request: `concord-cli kv put k v`, `concord-cli chat
    /// send ann bob hi`, ... (the cluster must run that service).
    #[command(flatten)]
    Service(ServiceCommand),
    /// Role, term, leader, commit, applied, lag and snapshot of every
    /// member of the leader's configuration (and of any --servers that is
    /// not one), each follower's progress and last contact as the leader
    /// sees them. `--watch` refreshes it, `--json` prints JSON.
    Status(crate::status_watch::StatusArgs),
    /// Membership: one change at a time; a change answers once committed
    /// and final.
    #[command(
        subcommand,
        after_help = "Replace a dead voter: add-learner the new node, wait until `member list` \
            shows its lag near 0, promote it, then remove the dead one. Never remove or replace \
            more than one voter at a time, and never remove voters so that the remaining ones \
            (dead ones included) have no live majority."
    )]
    Member(MemberCommand),
    /// Multi-group clusters (--groups N): the servers' zones and states,
    /// the placement rule, and moving replicas between servers to grow,
    /// shrink and rebalance the cluster.
    #[command(subcommand, after_help = CLUSTER_HELP)]
    Cluster(ClusterCommand),
    /// UNSAFE, offline, on a stopped server's data directory: make it the
    /// only voter after a majority of the voters is lost for good.
    #[command(after_help = concord_tokio::multi::recovery::FORCE_RECOVER_USAGE)]
    ForceRecover(ForceRecoverArgs),
    /// Print a completion script for a shell to stdout (e.g.
    /// `concord-cli completions zsh > ~/.zfunc/_concord-cli`).
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// The key-value commands before services: refused, naming `kv ...`.
    #[command(external_subcommand)]
    Moved(Vec<String>),
}

/// The key-value commands that moved under `kv` when the binary learned
/// other services: a command line that still names one is refused with
/// the new spelling, never read as something else.
pub const MOVED_TO_KV: &[&str] = &["get", "put", "append", "cas", "get-many", "put-many"];

/// `force-recover`'s arguments (see `concord_tokio::multi::recovery`);
/// `--group G` (the global flag) picks the group.
#[derive(Clone, Debug, Args)]
pub struct ForceRecoverArgs {
    /// The stopped server's data directory.
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Its id (the survivor).
    #[arg(long, value_name = "ID", value_parser = parse::node_id)]
    pub node_id: NodeId,
    /// Why (kept in the log; at most 512 bytes).
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
    /// The forced voters, comma separated, including --node-id (default:
    /// --node-id alone).
    #[arg(long, value_name = "ID,...", value_delimiter = ',', value_parser = parse::node_id)]
    pub voters: Vec<NodeId>,
    /// Required: without it the plan is printed and nothing is written.
    #[arg(long)]
    pub i_understand_acknowledged_writes_may_be_lost: bool,
}

impl ForceRecoverArgs {
    /// Runs the forced recovery on `--data-dir`, by its layout: a
    /// multi-group server's shared log (`log/`) is recovered for group
    /// `group` (`--group G`; default
    /// [`DEFAULT_GROUP`](concord_tokio::multi::recovery::DEFAULT_GROUP),
    /// and the catalog with it on a server of one group) by
    /// `concord_tokio::multi::recovery`; a single-group server's
    /// write-ahead log (`wal/`) is upgraded to the shared log first
    /// (`concord_tokio::multi::upgrade`). Prints the
    /// plan and the outcome to `out`; the error is the message for stderr.
    pub fn run(&self, group: Option<u64>, out: &mut dyn std::io::Write) -> Result<(), String> {
        use concord_tokio::multi::data_dir::{layout, DataDirLayout};
        use concord_tokio::multi::recovery;
        let found = layout(&self.data_dir);
        match found {
            DataDirLayout::SharedLog => {
                // A server of one group (no --groups): its group and the
                // catalog, which says what each server hosts and must
                // take new servers again, are forced together.
                let one_group = crate::groups_file::recorded(&self.data_dir)
                    .ok()
                    .flatten()
                    .is_none_or(|groups| groups == 1);
                let groups = match group {
                    Some(group) => vec![group],
                    None if one_group => {
                        vec![concord::multi::CATALOG_GROUP, recovery::DEFAULT_GROUP]
                    }
                    None => vec![recovery::DEFAULT_GROUP],
                };
                // Asked for no group on a server of one group: the catalog
                // goes with group 1 where it exists.
                let catalog_optional = one_group && group.is_none();
                let mut unconfirmed = None;
                for group in groups {
                    let options = recovery::ForceRecoverOptions {
                        data_dir: self.data_dir.clone(),
                        group,
                        node_id: self.node_id,
                        voters: self.voters.iter().copied().collect(),
                        reason: self.reason.clone(),
                        confirmed: self.i_understand_acknowledged_writes_may_be_lost,
                        stop_after: None,
                    };
                    match recovery::force_recover_group(&options, out) {
                        Ok(_) => {}
                        // A single-group server's directory, upgraded and
                        // not started since, has no catalog yet: the
                        // server writes it at its next start.
                        Err(recovery::ForceRecoverError::NoGroup {
                            group: concord::multi::CATALOG_GROUP,
                            ..
                        }) if catalog_optional => {
                            let _ = writeln!(
                                out,
                                "no catalog (group 0) here yet: the server writes it at its \
                                 next start; group {} alone is recovered",
                                recovery::DEFAULT_GROUP
                            );
                        }
                        // Every group's plan is printed before the refusal.
                        Err(e @ recovery::ForceRecoverError::NotConfirmed) => {
                            unconfirmed = Some(e.to_string())
                        }
                        Err(e) => return Err(e.to_string()),
                    }
                }
                unconfirmed.map_or(Ok(()), Err)
            }
            DataDirLayout::SingleGroup => {
                if let Some(group) = group {
                    return Err(format!(
                        "--group {group}: {} holds {found}, which has one group and no group \
                         numbers; leave --group out",
                        self.data_dir.display()
                    ));
                }
                // The one runtime reads the shared log only: the
                // directory is upgraded first, as `concord-node` does at
                // its first start (crash-safe, the log's content kept),
                // then recovered as any one-group server's.
                self.upgrade_single_group(out)?;
                self.run(None, out)
            }
            DataDirLayout::Neither => Err(format!(
                "{} holds {found}: neither a multi-group server's shared log nor a \
                 single-group server's write-ahead log; name the data directory the stopped \
                 server was started with (--data-dir)",
                self.data_dir.display()
            )),
        }
    }

    /// Upgrades a single-group server's directory to the shared log in
    /// place (`concord_tokio::multi::upgrade`), holding its lock.
    fn upgrade_single_group(&self, out: &mut dyn std::io::Write) -> Result<(), String> {
        use concord_tokio::multi::upgrade::{self, UpgradeOptions, UpgradeOutcome};
        let lock = concord_tokio::identity::lock(&self.data_dir).map_err(|e| e.to_string())?;
        let outcome = upgrade::upgrade_single_group(
            &self.data_dir,
            concord_tokio::multi::recovery::DEFAULT_GROUP,
            &UpgradeOptions::default(),
        )
        .map_err(|e| {
            format!(
                "cannot upgrade {} to the shared log before recovering it: {e}",
                self.data_dir.display()
            )
        })?;
        drop(lock);
        if let UpgradeOutcome::Upgraded(upgraded) = outcome {
            let _ = writeln!(
                out,
                "upgraded {} from the single-group server's layout to the shared log (as \
                 concord-node does at its first start): {} entries up to index {} kept",
                self.data_dir.display(),
                upgraded.entries,
                upgraded.last_index
            );
        }
        Ok(())
    }
}

/// `concord-cli member ...`.
#[derive(Clone, Debug, Subcommand)]
pub enum MemberCommand {
    /// Voters (full and witness), learners, outgoing voters while a
    /// change is joint, the leader, and each member's role, address,
    /// match index and lag (as the leader sees them).
    List,
    /// Add a new node as a learner (start it first with `concord-node
    /// --join`); its address is replicated.
    AddLearner {
        /// The new node's id.
        #[arg(value_parser = parse::node_id)]
        id: NodeId,
        /// The address it listens on.
        #[arg(value_name = "HOST:PORT", value_parser = parse::addr)]
        addr: String,
    },
    /// Add a new node directly as a voter (prefer add-learner, wait for
    /// catch-up, then promote).
    Add {
        /// The new node's id.
        #[arg(value_parser = parse::node_id)]
        id: NodeId,
        /// The address it listens on.
        #[arg(value_name = "HOST:PORT", value_parser = parse::addr)]
        addr: String,
    },
    /// Add a new node as a witness voter: it stores the log and votes but
    /// keeps no state machine and never leads (start it first with
    /// `concord-node --join --witness`); its address is replicated.
    /// Refused if the full voters would no longer be a majority.
    AddWitness {
        /// The new node's id.
        #[arg(value_parser = parse::node_id)]
        id: NodeId,
        /// The address it listens on.
        #[arg(value_name = "HOST:PORT", value_parser = parse::addr)]
        addr: String,
    },
    /// Make a learner a voter; refused until it caught up.
    Promote {
        /// The learner's id.
        #[arg(value_parser = parse::node_id)]
        id: NodeId,
    },
    /// Remove a voter or a learner (also a dead one).
    Remove {
        /// The member's id.
        #[arg(value_parser = parse::node_id)]
        id: NodeId,
    },
    /// Hand leadership to the caught-up voter ID.
    TransferLeader {
        /// The voter's id.
        #[arg(value_parser = parse::node_id)]
        id: NodeId,
    },
    /// Multi-group clusters (--groups N): replace server OLD by the new,
    /// empty server NEW (start it first with `concord-node --join`) in
    /// every group naming OLD: NEW joins as a learner, catches up, is
    /// promoted, then OLD is removed, a bounded number of groups at once.
    /// Progress is printed; run it again after any crash to continue.
    Replace {
        /// The server replaced (dead or alive).
        #[arg(value_parser = parse::node_id)]
        old: NodeId,
        /// The new server's id.
        #[arg(value_parser = parse::node_id)]
        new: NodeId,
        /// The address the new server listens on.
        #[arg(value_name = "HOST:PORT", value_parser = parse::addr)]
        addr: String,
        /// Most groups moving at once.
        #[arg(long, value_name = "N", default_value_t = crate::multi_admin::GROUPS_IN_FLIGHT_DEFAULT)]
        groups_in_flight: usize,
        /// Stop with an error once the new server has not answered for
        /// this long (1 to 3600 s): the replace stays recorded in the
        /// catalog; restart the new server and run the command again.
        #[arg(
            long,
            value_name = "SECS",
            default_value_t = crate::multi_admin::NEW_SILENCE_MAX_DEFAULT.as_secs(),
            value_parser = clap::value_parser!(u64)
                .range(1..=crate::multi_admin::OPERATION_TIME_MAX.as_secs())
        )]
        new_silence_max_secs: u64,
    },
    /// Multi-group clusters: hand every group server ID leads to another
    /// of its voters (before stopping it for maintenance).
    Drain {
        /// The server.
        #[arg(value_parser = parse::node_id)]
        id: NodeId,
    },
    /// Multi-group clusters: remove server ID from every group naming it,
    /// then from the catalog.
    RemoveNode {
        /// The server.
        #[arg(value_parser = parse::node_id)]
        id: NodeId,
        /// Most groups changing at once.
        #[arg(long, value_name = "N", default_value_t = crate::multi_admin::GROUPS_IN_FLIGHT_DEFAULT)]
        groups_in_flight: usize,
    },
}

const CLUSTER_HELP: &str = "\
Grow: start the new server with `concord-node --join`, then `cluster add-server ID
HOST:PORT`, then `cluster balance`. Shrink: `cluster drain ID`, then `cluster
remove-server ID`, then stop it. Moves are recorded in the catalog and each goes
like a one-group replace (learner, caught up, promoted, source removed): a command
killed and run again continues where the cluster stands.";

/// `concord-cli cluster ...`.
#[derive(Clone, Debug, Subcommand)]
pub enum ClusterCommand {
    /// Each server's state, zone, replicas and leaderships, the placement
    /// rule and its band, the moves in flight and, while moves are in
    /// flight, the time left at the rate they finish while it watches.
    Status {
        /// Seconds to watch the moves in flight for the time left (it
        /// stops once 8 have finished); 0 prints no estimate.
        #[arg(long, default_value_t = 3, value_name = "SECONDS",
              value_parser = clap::value_parser!(u64).range(0..=600))]
        watch_secs: u64,
    },
    /// Move replicas until every up server holds a count within the band
    /// around the mean and no draining server holds any; progress is
    /// printed, run it again after any crash to continue.
    Balance {
        /// Print the moves the balancer would start now (one line each:
        /// group, from, to), or "balanced"; move nothing.
        #[arg(long)]
        dry_run: bool,
        /// Stop with an error once the moves have run this long (1 to
        /// 3600 s); the moves under way go on, and the same command run
        /// again continues.
        #[arg(
            long,
            value_name = "SECS",
            default_value_t = crate::multi_admin::OPERATION_TIME_MAX.as_secs(),
            value_parser = clap::value_parser!(u64)
                .range(1..=crate::multi_admin::OPERATION_TIME_MAX.as_secs())
        )]
        time_max_secs: u64,
        /// Undo a move whose target learns this long without getting any
        /// closer to its group's log (0 to 3600 s; 0 never undoes one);
        /// the balancer then plans again. Confirmed snapshot chunks count
        /// as getting closer.
        #[arg(
            long,
            value_name = "SECS",
            default_value_t = crate::cluster_admin::MOVE_STALL_DEFAULT.as_secs(),
            value_parser = clap::value_parser!(u64)
                .range(0..=crate::multi_admin::OPERATION_TIME_MAX.as_secs())
        )]
        move_stall_secs: u64,
    },
    /// Record a new server (started first with `concord-node --join`):
    /// refused if the id or the address is in use. It holds no replica
    /// until `cluster balance` moves some to it.
    AddServer {
        /// The new server's id.
        #[arg(value_parser = parse::node_id)]
        id: NodeId,
        /// The address it listens on.
        #[arg(value_name = "HOST:PORT", value_parser = parse::addr)]
        addr: String,
        /// Its zone (letters, digits, '-', '.', '_').
        #[arg(long, value_name = "ZONE")]
        zone: Option<String>,
    },
    /// Put server ID in zone ZONE.
    SetZone {
        /// The server.
        #[arg(value_parser = parse::node_id)]
        id: NodeId,
        /// The zone (letters, digits, '-', '.', '_').
        zone: String,
    },
    /// Record the placement rule (by default: the voter count most groups
    /// have, zones not spread).
    SetRule {
        /// Replicas (voters) of every group, 1 to 7.
        #[arg(long, value_parser = clap::value_parser!(u8).range(1..=7))]
        replicas: u8,
        /// No two replicas of a group in one zone.
        #[arg(long)]
        spread_zones: bool,
    },
    /// Mark server ID draining and move every replica it holds to other
    /// servers (its leaderships go with them). Refused, with nothing
    /// moved, if the rule could not hold without it.
    Drain {
        /// The server.
        #[arg(value_parser = parse::node_id)]
        id: NodeId,
    },
    /// Retire a server that holds no replica (drain it first) and take
    /// it out of the catalog group; then stop it.
    RemoveServer {
        /// The server.
        #[arg(value_parser = parse::node_id)]
        id: NodeId,
    },
}

impl CliArgs {
    /// Parses the process's arguments; on bad arguments prints the error
    /// with the usage and exits with status 2 (`--help` exits 0).
    pub fn parse_or_exit() -> CliArgs {
        let args = CliArgs::parse();
        if let Err(message) = args.check() {
            CliArgs::command()
                .error(ErrorKind::MissingRequiredArgument, message)
                .exit();
        }
        args
    }

    /// What clap cannot check by itself: the servers are required except
    /// for `completions` and the offline `force-recover`; a command that
    /// moved under `kv` is named in its new place; an unknown one is
    /// refused.
    pub fn check(&self) -> Result<(), String> {
        match &self.command {
            CliCommand::Completions { .. } | CliCommand::ForceRecover(_) => return Ok(()),
            CliCommand::Moved(words) => {
                let first = words.first().map(String::as_str).unwrap_or_default();
                return Err(if MOVED_TO_KV.contains(&first) {
                    format!(
                        "`concord-cli {first}` is now `concord-cli kv {first}`: the key-value \
                         store is one service of several (kv, directory, orders, chat)"
                    )
                } else {
                    format!("unrecognized subcommand '{first}'; see --help for the commands")
                });
            }
            _ => {}
        }
        if self.connection.servers.is_empty() {
            return Err(
                "missing --servers (or CONCORD_SERVERS): give at least one host:port".to_string(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(argv: &[&str]) -> Result<CliArgs, String> {
        let mut full = vec!["concord-cli"];
        full.extend_from_slice(argv);
        let args = CliArgs::try_parse_from(full).map_err(|e| e.to_string())?;
        args.check()?;
        Ok(args)
    }

    use concord_services::kv::command_line::KvCommand;
    use concord_services::kv::{Kv, KvRequest};
    use concord_services::CommandError;

    fn kv(args: CliArgs) -> KvCommand {
        match args.command {
            CliCommand::Service(ServiceCommand::Kv(command)) => command,
            other => panic!("not a kv command: {other:?}"),
        }
    }

    #[test]
    fn connection_flags_go_before_or_after_the_command() {
        let before = parse(&[
            "--servers",
            "127.0.0.1:1",
            "--read",
            "follower",
            "kv",
            "get",
            "k",
        ]);
        let after = parse(&[
            "kv",
            "get",
            "k",
            "--read",
            "follower",
            "--servers",
            "127.0.0.1:1",
        ]);
        for args in [before.unwrap(), after.unwrap()] {
            assert_eq!(args.connection.servers, vec!["127.0.0.1:1"]);
            assert_eq!(args.connection.read, Some(ReadMode::Follower));
            assert!(matches!(kv(args), KvCommand::Get { ref key } if key == "k"));
        }
    }

    #[test]
    fn every_service_has_its_commands() {
        let s = ["--servers", "127.0.0.1:1"];
        let with = |rest: &[&str]| parse(&[&s[..], rest].concat());
        for (line, service) in [
            (&["kv", "put-many", "a=1", "b=2"][..], "kv"),
            (&["directory", "lookup", "ann", "bob"][..], "directory"),
            (&["orders", "last-order", "acme"][..], "orders"),
            (&["chat", "send", "ann", "bob", "hi"][..], "chat"),
            (&["chat", "list-accounts"][..], "chat"),
        ] {
            match with(line).unwrap().command {
                CliCommand::Service(command) => assert_eq!(command.kind().name(), service),
                other => panic!("{line:?} parsed as {other:?}"),
            }
        }
        assert!(with(&["chat", "send", "ann"]).is_err());
        assert!(with(&["directory", "lookup"]).is_err());
    }

    #[test]
    fn the_commands_that_moved_under_kv_say_where_they_went() {
        let s = ["--servers", "127.0.0.1:1"];
        let with = |rest: &[&str]| parse(&[&s[..], rest].concat());
        for moved in ["get", "put", "append", "cas"] {
            let error = with(&[moved, "k", "v"]).unwrap_err();
            assert!(
                error.contains(&format!("is now `concord-cli kv {moved}`")),
                "{error}"
            );
        }
        assert!(with(&["frobnicate"])
            .unwrap_err()
            .contains("unrecognized subcommand 'frobnicate'"));
    }

    #[test]
    fn cas_takes_expected_or_absent() {
        let s = ["--servers", "127.0.0.1:1"];
        let request = |rest: &[&str]| {
            let args = parse(&[&s[..], &["kv"], rest].concat()).unwrap();
            concord_services::request_of::<Kv>(kv(args))
        };
        let b = |text: &str| bytes::Bytes::copy_from_slice(text.as_bytes());
        assert_eq!(
            request(&["cas", "k", "old", "new"]),
            Ok(KvRequest::Cas {
                key: b("k"),
                expected: Some(b("old")),
                new: b("new")
            })
        );
        assert_eq!(
            request(&["cas", "k", "--absent", "new"]),
            Ok(KvRequest::Cas {
                key: b("k"),
                expected: None,
                new: b("new")
            })
        );
        assert!(matches!(
            request(&["cas", "k", "new"]),
            Err(CommandError::Usage(reason)) if reason.contains("KEY EXPECTED NEW")
        ));
        assert!(matches!(
            request(&["cas", "k", "--absent", "a", "b"]),
            Err(CommandError::Usage(reason)) if reason.contains("no EXPECTED value with --absent")
        ));
    }

    #[test]
    fn member_subcommands_check_ids_and_addresses() {
        let s = ["--servers", "127.0.0.1:1"];
        let with = |rest: &[&str]| parse(&[&s[..], rest].concat());
        let args = with(&["member", "add-learner", "4", "127.0.0.1:7004"]).unwrap();
        assert!(matches!(
            args.command,
            CliCommand::Member(MemberCommand::AddLearner { id: 4, .. })
        ));
        assert!(with(&["member", "promote", "0"])
            .unwrap_err()
            .contains("0 is reserved"));
        assert!(with(&["member", "add", "4", "nowhere"])
            .unwrap_err()
            .contains("is not a host:port address"));
        assert!(with(&["member", "transfer-leader", "3"]).is_ok());
        assert!(with(&["member", "remove"]).is_err());
        assert!(with(&["member", "list"]).is_ok());
    }

    #[test]
    fn put_takes_a_value_or_a_file_but_not_both() {
        let s = ["--servers", "127.0.0.1:1", "kv"];
        let with = |rest: &[&str]| parse(&[&s[..], rest].concat());
        assert!(matches!(
            kv(with(&["put", "k", "v"]).unwrap()),
            KvCommand::Put {
                value: Some(_),
                value_file: None,
                ..
            }
        ));
        assert!(matches!(
            kv(with(&["put", "k", "--value-file", "-"]).unwrap()),
            KvCommand::Put {
                value: None,
                value_file: Some(_),
                ..
            }
        ));
        assert!(with(&["put", "k", "v", "--value-file", "f"])
            .unwrap_err()
            .contains("cannot be used with"));
        assert!(with(&["put", "k"]).unwrap_err().contains("required"));
    }

    #[test]
    fn completions_need_no_servers() {
        assert!(parse(&["completions", "bash"]).is_ok());
        assert!(parse(&["status"])
            .unwrap_err()
            .contains("missing --servers"));
    }
}
