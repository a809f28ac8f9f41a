//! `concord-cli status`: one round, or with `--watch` a table refreshed
//! every `--interval-ms`, as text or (`--json`) one JSON object per round.
//!
//! A round asks the leader for the configuration, then every member (and
//! every `--servers` address that is not one) for its status. A server
//! that does not answer is a row saying so ("unreachable: ..."), never an
//! error that stops the table: the operator watching a failure needs the
//! rows of the servers that are still up.

use std::time::Duration;

use clap::Args;
use concord::NodeId;
use concord_tokio::client::{ClientConfig, ClientError};
use concord_tokio::multi::one_group_client::OneGroupClient;
use concord_tokio::status::NodeStatus;
use concord_tokio::wire::Members;
use serde::Serialize;

/// Default refresh interval of `--watch`.
pub const INTERVAL_MS_DEFAULT: u64 = 2_000;
/// Shortest refresh interval accepted (each round is a request per
/// server: a tighter loop would mostly load the cluster).
pub const INTERVAL_MS_MIN: u64 = 100;
/// Longest refresh interval accepted (a day).
pub const INTERVAL_MS_MAX: u64 = 86_400_000;
/// A server whose applied index is this far behind the highest commit
/// index seen is shown as `lagging`.
pub const LAG_ENTRIES_WARN: u64 = 1_000;

/// `status`'s flags.
#[derive(Clone, Debug, Default, PartialEq, Eq, Args)]
pub struct StatusArgs {
    /// Refresh the table every --interval-ms until interrupted (or until
    /// --count rounds were shown).
    #[arg(long)]
    pub watch: bool,
    /// Time between two rounds of --watch, in milliseconds (100 to
    /// 86400000) [default: 2000].
    #[arg(long, value_name = "MS", requires = "watch", value_parser = clap::value_parser!(u64).range(INTERVAL_MS_MIN..=INTERVAL_MS_MAX))]
    pub interval_ms: Option<u64>,
    /// Stop after N rounds of --watch.
    #[arg(long, value_name = "N", requires = "watch", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Print one JSON object per round (one line each) instead of the
    /// table.
    #[arg(long)]
    pub json: bool,
    /// With --groups N: show group G as every server sees it (role, term,
    /// leader, commit/applied, members) instead of each server's summary
    /// of its groups.
    #[arg(long, value_name = "G", value_parser = clap::value_parser!(u64).range(1..))]
    pub group: Option<u64>,
}

impl StatusArgs {
    /// Rounds to show (`None`: until interrupted).
    pub fn rounds(&self) -> Option<u64> {
        if self.watch {
            self.count
        } else {
            Some(1)
        }
    }

    /// Time between rounds.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms.unwrap_or(INTERVAL_MS_DEFAULT))
    }
}

/// One server's row.
#[derive(Clone, Debug, Serialize)]
pub struct ServerRow {
    /// The address asked.
    pub address: String,
    /// Its id in the leader's configuration (`None`: not a member, or no
    /// leader answered).
    pub member: Option<NodeId>,
    /// Its node id as it said it (its status, or its refusal of a group
    /// it does not host), if it answered.
    pub id: Option<NodeId>,
    /// Its role in the configuration (`voter`, `learner`, ...; empty when
    /// not a member).
    pub member_role: String,
    /// `ok`, `lagging`, `no-leader`, `removed`, `data-loss`,
    /// `unreachable` or `refused`.
    pub health: String,
    /// Its status, when it answered.
    pub status: Option<NodeStatus>,
    /// Why it did not answer.
    pub error: Option<String>,
}

/// One round of `status`.
#[derive(Debug, Serialize)]
pub struct StatusReport {
    /// The leader's view of the configuration, if a leader answered.
    pub configuration: Option<Members>,
    /// The members, then the `--servers` that are not members.
    pub servers: Vec<ServerRow>,
    /// The highest commit index among the answers (lag is measured from
    /// it).
    pub commit_index_max: u64,
    /// This client's refusal by every server that answered at all (TLS,
    /// CA, cluster id), if no server answered with a status.
    #[serde(skip)]
    pub refused: Option<ClientError>,
    /// Whether any server answered with its status.
    #[serde(skip)]
    pub answered: bool,
}

/// Why `status` ends with an error (after printing its table).
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// No server answered, and one refused this client as configured.
    #[error(transparent)]
    Refused(ClientError),
    /// No server answered at all: every row says why.
    #[error(
        "no server answered (every one is unreachable, see the rows above): check --servers, \
         --cluster-id, and that the servers run"
    )]
    NoAnswer,
}

/// The health word of an answering server.
fn health(status: &NodeStatus, commit_index_max: u64) -> &'static str {
    let regressions = status.server.follower_log_regressions > 0
        || status.peers.iter().any(|p| p.log_regressions > 0);
    if status.not_member_since.is_some() {
        "removed"
    } else if regressions {
        "data-loss"
    } else if status.leader.is_none() {
        "no-leader"
    } else if commit_index_max.saturating_sub(status.applied_index) > LAG_ENTRIES_WARN {
        "lagging"
    } else {
        "ok"
    }
}

/// One round: the leader's configuration, then every server's status.
pub async fn collect(config: &ClientConfig) -> StatusReport {
    let mut lister = OneGroupClient::new(ClientConfig {
        attempts_max: (2 * config.servers.len() as u32).max(2),
        ..config.clone()
    });
    let members = match lister.members().await {
        Ok(members) if members.leader == Some(members.answered_by) => Some(members.to_members()),
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
    let mut client = OneGroupClient::new(ClientConfig {
        servers: targets.iter().map(|(_, _, addr)| addr.clone()).collect(),
        ..config.clone()
    });
    let mut answers = Vec::new();
    let mut refused = None;
    for (i, (member, role, addr)) in targets.iter().enumerate() {
        let answer = if addr.is_empty() {
            Err((
                "unreachable",
                "unreachable: its address is not in the leader's address book".to_string(),
                None,
            ))
        } else {
            client.status(i).await.map_err(|e| match e {
                ClientError::NotHosted { node, .. } => (
                    "removed",
                    "not a member: it does not host the cluster's group".to_string(),
                    Some(node),
                ),
                ClientError::Rejected { reason } => {
                    let shown = format!("refused: {reason}");
                    refused = Some(ClientError::Rejected { reason });
                    ("refused", shown, None)
                }
                other => ("unreachable", format!("unreachable: {other}"), None),
            })
        };
        answers.push((*member, role.clone(), addr.clone(), answer));
    }
    // A --servers address that answered as a member listed under another
    // address is that member.
    let member_ids: Vec<u64> = targets.iter().filter_map(|(id, _, _)| *id).collect();
    answers.retain(|(member, _, _, answer)| {
        member.is_some() || !matches!(answer, Ok(s) if member_ids.contains(&s.id))
    });
    let commit_index_max = answers
        .iter()
        .filter_map(|(_, _, _, r)| r.as_ref().ok())
        .map(|s| s.commit_index)
        .max()
        .unwrap_or(0);
    // A server that said it is not a member answered too.
    let answered = answers
        .iter()
        .any(|(_, _, _, r)| matches!(r, Ok(_) | Err(("removed", _, _))));
    let servers = answers
        .into_iter()
        .map(|(member, member_role, address, answer)| match answer {
            Ok(status) => ServerRow {
                id: Some(status.id),
                address,
                member,
                member_role,
                health: health(&status, commit_index_max).to_string(),
                status: Some(status),
                error: None,
            },
            Err((health, error, id)) => ServerRow {
                id,
                address,
                member,
                member_role,
                health: health.to_string(),
                status: None,
                error: Some(error),
            },
        })
        .collect();
    StatusReport {
        configuration: members,
        servers,
        commit_index_max,
        refused: if answered { None } else { refused },
        answered,
    }
}

/// The report as one line of JSON.
pub fn render_json(report: &StatusReport) -> String {
    // Plain data (strings, numbers, options, vectors): serializing it
    // cannot fail.
    serde_json::to_string(report).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// The report as a table: the configuration line, a header, a row per
/// server and, under the leader's, a line per follower.
pub fn render_table(report: &StatusReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    match &report.configuration {
        Some(members) => {
            let ids = |ids: &[u64]| {
                if ids.is_empty() {
                    "-".to_string()
                } else {
                    ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
                }
            };
            let _ = writeln!(
                out,
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
        None => {
            let _ = writeln!(
                out,
                "no leader answered: the --servers as given (members unknown)"
            );
        }
    }
    let _ = writeln!(
        out,
        "{:<22} {:>4} {:<8} {:<12} {:>6} {:>7} {:>8} {:>8} {:>8} {:>6} {:>8} {:>11} {:<9}",
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
        "taken/inst.",
        "health"
    );
    let mut strangers_shown = false;
    for row in &report.servers {
        if row.member.is_none() && report.configuration.is_some() && !strangers_shown {
            let _ = writeln!(out, "not members of the leader's configuration:");
            strangers_shown = true;
        }
        let role = if row.member.is_some() {
            row.member_role.clone()
        } else if report.configuration.is_some() {
            "NO".to_string()
        } else {
            "?".to_string()
        };
        let server = &row.address;
        let Some(s) = &row.status else {
            let _ = writeln!(
                out,
                "{server:<22} {:>4} {role:<8} {}",
                row.id
                    .or(row.member)
                    .map_or("?".to_string(), |id| id.to_string()),
                row.error.as_deref().unwrap_or("unreachable")
            );
            continue;
        };
        let _ = writeln!(
            out,
            "{:<22} {:>4} {:<8} {:<12} {:>6} {:>7} {:>8} {:>8} {:>8} {:>6} {:>8} {:>11} {:<9}",
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
            report.commit_index_max.saturating_sub(s.applied_index),
            s.snapshot_index,
            format!(
                "{}/{}",
                s.server.snapshots_taken, s.server.snapshots_installed
            ),
            row.health
        );
        for p in &s.peers {
            // In probe state the match index is the last one the follower
            // confirmed, which the leader is checking: a follower that
            // restarted may hold less.
            let match_index = if p.state == "Probe" {
                format!("{}?", p.match_index)
            } else {
                p.match_index.to_string()
            };
            let heard = match p.last_contact_ms {
                Some(ms) => format!("heard {ms} ms ago"),
                None => "never heard".to_string(),
            };
            let _ = writeln!(
                out,
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
            let _ = writeln!(
                out,
                "    node {} is not a member since index {index}; ask another server",
                s.id
            );
        }
        if let Some(recovery) = &s.storage_recovery {
            let _ = writeln!(out, "    RECOVERING: {recovery}");
        }
        if let Some(divergence) = &s.divergence {
            let _ = writeln!(out, "    DIVERGED: {divergence}");
        }
        if s.server.follower_log_regressions > 0 {
            let _ = writeln!(
                out,
                "    WARNING: {} follower log regression(s) seen while leading (a disk lost synced data; see this server's error log)",
                s.server.follower_log_regressions
            );
        }
    }
    out
}

/// Runs `status` with `args`, handing each round's text to `show` (which
/// returns `false` to stop: stdout closed, which ends it with `Ok`). The
/// result is the last round's: an error when no server answered (the
/// refusal of this client, if one refused it).
pub async fn run(
    config: &ClientConfig,
    args: &StatusArgs,
    mut show: impl FnMut(&str) -> bool,
) -> Result<(), StatusError> {
    let mut shown = 0u64;
    loop {
        let started = tokio::time::Instant::now();
        let report = collect(config).await;
        shown += 1;
        let text = if args.json {
            render_json(&report)
        } else if args.watch {
            // A round header, so that a log of the rounds reads well and
            // a terminal shows that the table is fresh.
            format!(
                "--- round {shown} ---\n{}",
                render_table(&report).trim_end()
            )
        } else {
            render_table(&report).trim_end().to_string()
        };
        let last = args.rounds().is_some_and(|rounds| shown >= rounds);
        if !show(&text) {
            // Stdout closed (`| head`): whoever reads is gone, and an exit
            // status would only be noise in their pipeline.
            return Ok(());
        }
        if last {
            return match report.refused {
                Some(refusal) => Err(StatusError::Refused(refusal)),
                None if !report.answered => Err(StatusError::NoAnswer),
                None => Ok(()),
            };
        }
        tokio::time::sleep_until(started + args.interval()).await;
    }
}
