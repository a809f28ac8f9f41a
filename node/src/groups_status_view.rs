//! `concord-cli --groups N status` (a multi-group cluster): every
//! server's summary of its groups, one block per server that fits on one
//! screen whatever the group count (counts, the worst-lagging groups by
//! name, each peer), then a line checking the counts across servers; with
//! `--group G`, group G as each server sees it, as the single-group
//! status shows a server. `--json` prints the answers as one JSON line;
//! `--watch` repeats, as the single-group status does.
//!
//! Each server is asked once per round with a
//! [`GroupOp::Status`] on a
//! client connection; its answer is at most
//! [`STATUS_ANSWER_BYTES_MAX`] bytes. A server that does not answer is a
//! line saying why, never an error that stops the rest.

use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use concord::multi::GroupId;
use concord_tokio::frame::{self, DEFAULT_MAX_FRAME_BYTES};
use concord_tokio::multi::groups_status::{
    GroupsSummary, OneGroup, StatusAnswer, StatusQuery, STATUS_ANSWER_BYTES_MAX,
};
use concord_tokio::multi::wire::{GroupOp, GroupRequest};
use concord_tokio::tls::TlsConfig;
use concord_tokio::transport;
use concord_tokio::wire::{ClientResponse, Hello, HelloRole};
use serde::Serialize;
use tokio::io::AsyncWriteExt;

use crate::status_watch::StatusArgs;

/// One server's answer, or why there is none.
#[derive(Clone, Debug, Serialize)]
pub struct ServerAnswer {
    /// The address asked.
    pub address: String,
    /// Its answer.
    pub answer: Option<StatusAnswer>,
    /// Why it did not answer.
    pub error: Option<String>,
}

/// Asks the server at `address` for `query`'s answer.
pub async fn ask(
    address: &str,
    cluster_id: &str,
    tls: Option<&TlsConfig>,
    timeout: Duration,
    query: StatusQuery,
) -> Result<StatusAnswer, String> {
    let hello = Hello {
        cluster_id: cluster_id.to_string(),
        role: HelloRole::Client,
    };
    let (mut stream, _) =
        transport::connect(address, &hello, DEFAULT_MAX_FRAME_BYTES, timeout, tls)
            .await
            .map_err(|e| e.message)?;
    let request = GroupRequest {
        group: match query {
            StatusQuery::Group(group) | StatusQuery::Node(group) => group,
            StatusQuery::Summary => 0,
        },
        request: GroupOp::Status(query),
    };
    let mut buf = Vec::new();
    frame::encode_frame(&request, &mut buf).map_err(|e| e.to_string())?;
    let exchange = async {
        stream.write_all(&buf).await.map_err(|e| e.to_string())?;
        stream.flush().await.map_err(|e| e.to_string())?;
        frame::read_value::<ClientResponse, _>(&mut stream, &mut buf, DEFAULT_MAX_FRAME_BYTES)
            .await
            .map_err(|e| e.to_string())
    };
    let response = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))??;
    match response {
        ClientResponse::Done(bytes) => concord::codec::decode(&bytes, STATUS_ANSWER_BYTES_MAX)
            .map_err(|e| format!("undecodable status ({e}): is it a multi-group server?")),
        ClientResponse::Error(message) => Err(message),
        other => Err(format!("unexpected answer {other:?}")),
    }
}

/// One round: every server in `servers`, in order.
pub async fn collect(
    servers: &[String],
    cluster_id: &str,
    tls: Option<&TlsConfig>,
    timeout: Duration,
    query: StatusQuery,
) -> Vec<ServerAnswer> {
    let mut answers = Vec::with_capacity(servers.len());
    for address in servers {
        let (answer, error) = match ask(address, cluster_id, tls, timeout, query).await {
            Ok(answer) => (Some(answer), None),
            Err(e) => (None, Some(e)),
        };
        answers.push(ServerAnswer {
            address: address.clone(),
            answer,
            error,
        });
    }
    answers
}

/// How a server that hosts more groups than `--groups` says is shown.
const MORE_GROUPS: &str = "this server hosts ";

/// A server whose summary shows more groups than the client was told
/// (`--groups`, 1 when absent) serves another cluster than the one meant:
/// its answer becomes an error naming the flag, as a request would get.
fn refuse_more_groups(answers: &mut [ServerAnswer], groups: u64) {
    for server in answers {
        if let Some(StatusAnswer::Summary(summary)) = &server.answer {
            let hosted = summary.groups_hosted;
            if hosted > groups {
                server.answer = None;
                server.error = Some(format!(
                    "{MORE_GROUPS}{hosted} groups: use --groups {hosted} (the client was told \
                     {groups})"
                ));
            }
        }
    }
}

/// The round as text: a block per server, then the totals across them.
pub fn render(answers: &[ServerAnswer], groups: u64) -> String {
    let mut out = String::new();
    let mut led_total = 0;
    let mut summaries = 0;
    for server in answers {
        match (&server.answer, &server.error) {
            (Some(StatusAnswer::Summary(summary)), _) => {
                summaries += 1;
                led_total += summary.groups_led;
                render_summary(&mut out, &server.address, summary);
            }
            (Some(StatusAnswer::Group(group)), _) => render_group(&mut out, &server.address, group),
            (Some(StatusAnswer::Node(status)), _) => {
                let _ = writeln!(
                    out,
                    "{}: node {} {} in term {}, leader {:?}, commit {}, applied {}",
                    server.address,
                    status.id,
                    status.role,
                    status.term,
                    status.leader,
                    status.commit_index,
                    status.applied_index
                );
            }
            (Some(StatusAnswer::NotHosted { group, node }), _) => {
                let _ = writeln!(
                    out,
                    "{}: node {node} does not host group {group} (the cluster has groups \
                     1..={groups})",
                    server.address
                );
            }
            (None, Some(error)) if error.starts_with(MORE_GROUPS) => {
                let _ = writeln!(out, "{}: {error}", server.address);
            }
            (None, error) => {
                let _ = writeln!(
                    out,
                    "{}: unreachable: {}",
                    server.address,
                    error.as_deref().unwrap_or("no answer")
                );
            }
        }
    }
    if summaries > 0 {
        let _ = writeln!(
            out,
            "groups led across the {summaries} server(s) that answered: {led_total} of {groups}{}",
            if summaries < answers.len() {
                " (a server did not answer)"
            } else if led_total < groups {
                " (the rest are electing, or their leader did not answer)"
            } else {
                ""
            }
        );
    }
    out
}

fn render_summary(out: &mut String, address: &str, s: &GroupsSummary) {
    let _ = writeln!(
        out,
        "node {} at {address}: {} groups: {} led, {} followed, {} without a leader, {} asleep, \
         {} behind (trailing by >= {} entries){}{}",
        s.id,
        s.groups_hosted,
        s.groups_led,
        s.groups_followed,
        s.groups_without_leader,
        s.groups_asleep,
        s.groups_behind,
        s.behind_entries,
        if s.groups_witnessed > 0 {
            format!(", witness of {}", s.groups_witnessed)
        } else {
            String::new()
        },
        match s.catalog_leader {
            Some(leader) if leader == s.id => "; leads the catalog".to_string(),
            Some(leader) => format!("; catalog led by {leader}"),
            None => String::new(),
        }
    );
    let _ = writeln!(
        out,
        "    reads: {} read-index, {} lease, {} follower; {} redirects",
        s.reads_read_index, s.reads_lease, s.reads_follower, s.redirects
    );
    for (old, new) in &s.replaces {
        let _ = writeln!(
            out,
            "    replace under way: server {old} -> server {new} (recorded in the catalog; \
             `concord-cli --groups N member replace {old} {new} HOST:PORT` finishes it)"
        );
    }
    if s.groups_recovering_storage > 0 {
        let _ = writeln!(
            out,
            "    RECOVERING: {} groups catch up after lost storage before they vote",
            s.groups_recovering_storage
        );
    }
    if s.groups_diverged > 0 {
        let _ = writeln!(
            out,
            "    DIVERGED: {} groups found their log contradicting their leader's (see the \
             server's error log)",
            s.groups_diverged
        );
    }
    for lagging in &s.worst {
        let who = match lagging.member {
            Some(member) => format!("node {member}'s log trails this leader's"),
            None => "this node's applied index trails its commit".to_string(),
        };
        let _ = writeln!(
            out,
            "    behind: group {:>6}: {who} by {} entries",
            lagging.group, lagging.lag_entries
        );
    }
    if s.groups_behind > s.worst.len() as u64 {
        let _ = writeln!(
            out,
            "    ... and {} more groups behind",
            s.groups_behind - s.worst.len() as u64
        );
    }
    for peer in &s.peers {
        let _ = writeln!(
            out,
            "    peer {:>3}: {:<5} heard {} ms ago, leads {} of the groups here",
            peer.id,
            if peer.alive { "up" } else { "DOWN" },
            peer.heard_ms_ago,
            peer.groups_it_leads
        );
    }
    if s.peers_total > s.peers.len() as u64 {
        let _ = writeln!(
            out,
            "    ... and {} more peers",
            s.peers_total - s.peers.len() as u64
        );
    }
}

fn ids(ids: &[u64]) -> String {
    if ids.is_empty() {
        "-".to_string()
    } else {
        ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
    }
}

fn render_group(out: &mut String, address: &str, g: &OneGroup) {
    let _ = writeln!(
        out,
        "group {} on node {} at {address}: {}{} term {} leader {} last {} commit {} applied {} \
         snapshot {} ({})",
        g.group,
        g.node,
        g.role,
        if g.witness { " (witness)" } else { "" },
        g.term,
        g.leader.map_or("-".to_string(), |l| l.to_string()),
        g.last_index,
        g.commit_index,
        g.applied_index,
        g.snapshot_index,
        g.sleep
    );
    let _ = writeln!(
        out,
        "    configuration at index {}: voters {}  learners {}  witnesses {}{}",
        g.configuration_index,
        ids(&g.voters),
        ids(&g.learners),
        ids(&g.witnesses),
        if g.voters_outgoing.is_empty() {
            String::new()
        } else {
            format!("  JOINT: outgoing voters {}", ids(&g.voters_outgoing))
        }
    );
    for f in &g.followers {
        let _ = writeln!(
            out,
            "    follower {:>3}: match {:>9} next {:>8} {}",
            f.id,
            f.match_index,
            f.next_index,
            if f.recently_active {
                "active"
            } else {
                "not heard lately"
            }
        );
    }
}

/// Why `status` of a multi-group cluster ends with an error (after
/// printing what it has).
#[derive(Debug, thiserror::Error)]
pub enum GroupsStatusError {
    /// No server answered.
    #[error(
        "no server answered (see the lines above): check --servers, --cluster-id, and that the \
         servers run"
    )]
    NoAnswer,
    /// `--group` names a group outside 1..=N.
    #[error("--group {group}: the cluster's groups are 1..={groups} (--groups {groups})")]
    NoSuchGroup {
        /// The group given.
        group: GroupId,
        /// The group count.
        groups: u64,
    },
}

/// Runs `status` against a cluster of `groups` groups, handing each
/// round's text to `show` (which returns `false` to stop).
pub async fn run(
    servers: &[String],
    cluster_id: &str,
    tls: Option<Arc<TlsConfig>>,
    timeout: Duration,
    groups: u64,
    args: &StatusArgs,
    mut show: impl FnMut(&str) -> bool,
) -> Result<(), GroupsStatusError> {
    let query = match args.group {
        Some(group) if group == 0 || group > groups => {
            return Err(GroupsStatusError::NoSuchGroup { group, groups })
        }
        Some(group) => StatusQuery::Group(group),
        None => StatusQuery::Summary,
    };
    let mut shown = 0u64;
    loop {
        let started = tokio::time::Instant::now();
        let mut answers = collect(servers, cluster_id, tls.as_deref(), timeout, query).await;
        refuse_more_groups(&mut answers, groups);
        shown += 1;
        let text = if args.json {
            serde_json::to_string(&answers).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
        } else if args.watch {
            format!(
                "--- round {shown} ---\n{}",
                render(&answers, groups).trim_end()
            )
        } else {
            render(&answers, groups).trim_end().to_string()
        };
        if !show(&text) {
            return Ok(());
        }
        if args.rounds().is_some_and(|rounds| shown >= rounds) {
            return if answers.iter().any(|a| a.answer.is_some()) {
                Ok(())
            } else {
                Err(GroupsStatusError::NoAnswer)
            };
        }
        tokio::time::sleep_until(started + args.interval()).await;
    }
}
