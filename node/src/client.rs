//! `concord-cli`'s command line (clap, with `CONCORD_*` environment
//! fallbacks for the connection flags).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use concord::NodeId;
use concord::ReadPath;

use crate::parse;

/// Default time a request may take before the client retries elsewhere.
pub const TIMEOUT_MS_DEFAULT: u64 = 2000;

const EXIT_STATUS: &str = "\
Exit status: 0 done, 1 refused or failed (the message says why), 2 bad arguments,
3 the outcome is unknown: a request was sent and its answer lost (check before
retrying; for a membership change run `member list`), 4 every server refused this
client as configured (TLS on one side only, a certificate the server does not
trust, another cluster's name; the message says which), 5 `get` of a key that is
absent (nothing on stdout), 6 a command above the 4 MiB limit (nothing was sent).

Limits: a command (key and value, encoded) is at most 4 MiB; a larger `put` is
refused before anything is sent. Give a large value with --value-file PATH (or
--value-file - for stdin) rather than on the command line.";

/// `concord-cli`: talks to a concord key-value cluster.
#[derive(Debug, Parser)]
#[command(
    name = "concord-cli",
    version,
    about = "Talks to a concord key-value cluster",
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
    /// How `get` reads: index (the leader confirms it still leads with one
    /// heartbeat round), lease (the leader, no round trip, if the cluster
    /// runs leases), follower (any server, once it applied the leader's
    /// read index) or log (a log entry).
    #[arg(long, value_enum, value_name = "PATH", default_value_t = ReadMode::Index, global = true)]
    pub read: ReadMode,
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
    /// Print the value, read linearizably on --read's path; a key that is
    /// absent prints nothing and exits 5.
    Get {
        /// The key.
        key: String,
    },
    /// Set a value, given as VALUE or read from --value-file (a command,
    /// key and value encoded, is at most 4 MiB).
    Put {
        /// The key.
        key: String,
        /// The new value (or give --value-file).
        #[arg(required_unless_present = "value_file")]
        value: Option<String>,
        /// Read the new value from this file, byte for byte; `-` reads
        /// standard input.
        #[arg(long, value_name = "PATH", conflicts_with = "value")]
        value_file: Option<PathBuf>,
    },
    /// Append to a value; print the result.
    Append {
        /// The key.
        key: String,
        /// What to append.
        value: String,
    },
    /// Set NEW if the value is EXPECTED: `cas KEY EXPECTED NEW`, or
    /// `cas KEY --absent NEW` for "key not set".
    Cas(CasArgs),
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
    /// UNSAFE, offline, on a stopped server's data directory: make it the
    /// only voter after a majority of the voters is lost for good.
    #[command(after_help = concord::tokio::recovery::FORCE_RECOVER_USAGE)]
    ForceRecover(ForceRecoverArgs),
    /// Print a completion script for a shell to stdout (e.g.
    /// `concord-cli completions zsh > ~/.zfunc/_concord-cli`).
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
}

/// `force-recover`'s arguments (see `concord::tokio::recovery`).
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
    /// The library's options for these arguments.
    pub fn options(&self) -> concord::tokio::recovery::ForceRecoverOptions {
        concord::tokio::recovery::ForceRecoverOptions {
            data_dir: self.data_dir.clone(),
            node_id: self.node_id,
            voters: self.voters.iter().copied().collect::<BTreeSet<NodeId>>(),
            reason: self.reason.clone(),
            confirmed: self.i_understand_acknowledged_writes_may_be_lost,
        }
    }
}

/// `cas`'s arguments as typed; [`CasArgs::expected_and_new`] sorts them.
#[derive(Clone, Debug, Args)]
pub struct CasArgs {
    /// The key.
    pub key: String,
    /// The value expected (with --absent: the new value).
    #[arg(value_name = "EXPECTED")]
    pub expected: String,
    /// The new value (not given with --absent).
    #[arg(value_name = "NEW")]
    pub new: Option<String>,
    /// Expect the key not to be set (instead of EXPECTED).
    #[arg(long)]
    pub absent: bool,
}

impl CasArgs {
    /// The expected value (`None`: absent) and the new one.
    pub fn expected_and_new(&self) -> Result<(Option<String>, String), String> {
        match (&self.new, self.absent) {
            (Some(new), false) => Ok((Some(self.expected.clone()), new.clone())),
            (None, true) => Ok((None, self.expected.clone())),
            (Some(_), true) => {
                Err("cas takes KEY --absent NEW (no EXPECTED value with --absent)".to_string())
            }
            (None, false) => {
                Err("cas takes KEY EXPECTED NEW, or KEY --absent NEW for a key not set".to_string())
            }
        }
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
    /// for `completions` and the offline `force-recover`, and `cas`'s
    /// arguments.
    pub fn check(&self) -> Result<(), String> {
        if let CliCommand::Completions { .. } | CliCommand::ForceRecover(_) = self.command {
            return Ok(());
        }
        if self.connection.servers.is_empty() {
            return Err(
                "missing --servers (or CONCORD_SERVERS): give at least one host:port".to_string(),
            );
        }
        if let CliCommand::Cas(cas) = &self.command {
            cas.expected_and_new()?;
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

    #[test]
    fn connection_flags_go_before_or_after_the_command() {
        let before = parse(&["--servers", "127.0.0.1:1", "--read", "follower", "get", "k"]);
        let after = parse(&["get", "k", "--read", "follower", "--servers", "127.0.0.1:1"]);
        for args in [before.unwrap(), after.unwrap()] {
            assert_eq!(args.connection.servers, vec!["127.0.0.1:1"]);
            assert_eq!(args.connection.read, ReadMode::Follower);
            assert!(matches!(args.command, CliCommand::Get { ref key } if key == "k"));
        }
    }

    #[test]
    fn cas_takes_expected_or_absent() {
        let s = ["--servers", "127.0.0.1:1"];
        let with = |rest: &[&str]| parse(&[&s[..], rest].concat());
        let CliCommand::Cas(cas) = with(&["cas", "k", "old", "new"]).unwrap().command else {
            panic!("not cas");
        };
        assert_eq!(
            cas.expected_and_new(),
            Ok((Some("old".to_string()), "new".to_string()))
        );
        let CliCommand::Cas(cas) = with(&["cas", "k", "--absent", "new"]).unwrap().command else {
            panic!("not cas");
        };
        assert_eq!(cas.expected_and_new(), Ok((None, "new".to_string())));
        assert!(with(&["cas", "k", "new"])
            .unwrap_err()
            .contains("KEY EXPECTED NEW"));
        assert!(with(&["cas", "k", "--absent", "a", "b"])
            .unwrap_err()
            .contains("no EXPECTED value with --absent"));
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
        let s = ["--servers", "127.0.0.1:1"];
        let with = |rest: &[&str]| parse(&[&s[..], rest].concat());
        assert!(matches!(
            with(&["put", "k", "v"]).unwrap().command,
            CliCommand::Put {
                value: Some(_),
                value_file: None,
                ..
            }
        ));
        assert!(matches!(
            with(&["put", "k", "--value-file", "-"]).unwrap().command,
            CliCommand::Put {
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
