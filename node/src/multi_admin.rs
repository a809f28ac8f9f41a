//! `concord-cli member ...` against a multi-group cluster (`--groups N`):
//! one group's membership (`--group G`), and the node-level operations
//! over every group a server is in: `replace`, `drain`, `remove-node`.
//!
//! Every operation is driven from here, by the command, from what the
//! servers report each round: nothing but the catalog and the groups'
//! own configurations holds its progress, so a command killed at any
//! point and run again continues where the cluster stands. Each round
//! asks every server for the groups it leads that the operation
//! concerns, plans each group's next change
//! ([`concord::multi::ReplacePlan`]), and sends each server the changes
//! of the groups it leads in one request.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use concord::multi::{
    CatalogCommand, GroupId, ReplaceGroup, ReplacePlan, ReplaceProgress, CATALOG_ASSIGN_GROUPS_MAX,
    CATALOG_GROUP,
};
use concord::{MembershipChange, NodeId};
use concord_tokio::multi::admin::{
    catalog_result, AdminAnswer, AdminRequest, GroupMembers, GroupView, ADMIN_BATCH_CHANGES_MAX,
};
use concord_tokio::multi::groups_status::{StatusAnswer, StatusQuery, STATUS_ANSWER_BYTES_MAX};
use concord_tokio::multi::routing_client::{RoutingClient, RoutingConfig, RoutingError};
use concord_tokio::multi::wire::GroupOp;
use concord_tokio::tls::TlsConfig;

use crate::client::MemberCommand;

/// Groups a replace or remove-node moves at once unless told otherwise.
pub const GROUPS_IN_FLIGHT_DEFAULT: usize = 256;

/// Longest a node-level operation runs before it gives up (it can be
/// run again: it resumes).
pub const OPERATION_TIME_MAX: Duration = Duration::from_secs(3600);

/// How long the new server of a replace may go without answering
/// before the replace stops, unless `--new-silence-max-secs` says
/// otherwise. Longer than a restart of it, or than a pause of its
/// answers while it takes in a burst of snapshots (a few seconds), so
/// that neither stops a replace; far below [`OPERATION_TIME_MAX`],
/// which a replace toward a dead server used to wait out in silence.
pub const NEW_SILENCE_MAX_DEFAULT: Duration = Duration::from_secs(30);

/// Longest one group's change is waited for.
const CHANGE_WAIT_MAX: Duration = Duration::from_secs(60);

/// Pause between two rounds of a node-level operation.
const ROUND_PAUSE: Duration = Duration::from_millis(50);

/// How long `remove-node` must see no group naming the server before it
/// is done: longer than the elections of the groups it led, should it
/// have died just before (their leaders answer for them again after).
const REMOVE_SETTLE: Duration = Duration::from_secs(3);

/// Why a membership command failed.
#[derive(Debug)]
pub struct AdminFailure {
    /// What went wrong and what to do.
    pub message: String,
    /// Whether the outcome is unknown (a change sent whose answer was
    /// lost).
    pub unknown: bool,
}

impl From<String> for AdminFailure {
    fn from(message: String) -> Self {
        AdminFailure {
            message,
            unknown: false,
        }
    }
}

/// How to reach the cluster.
pub struct Cluster {
    /// The cluster's name.
    pub cluster_id: String,
    /// Each server's id and address (from `--servers`).
    pub servers: BTreeMap<NodeId, String>,
    /// The cluster's group count (`--groups`): its groups are 0 (the
    /// catalog) to N.
    pub groups: u64,
    /// TLS to the servers.
    pub tls: Option<Arc<TlsConfig>>,
    /// Timeout of one request.
    pub timeout: Duration,
}

impl Cluster {
    fn config(&self, servers: BTreeMap<NodeId, String>) -> RoutingConfig {
        let mut config = RoutingConfig::new(self.cluster_id.clone(), servers);
        config.tls = self.tls.clone();
        config.request_timeout = self.timeout;
        config.connect_timeout = self.timeout;
        config
    }

    pub(crate) fn client(
        &self,
        servers: BTreeMap<NodeId, String>,
    ) -> Result<RoutingClient, AdminFailure> {
        RoutingClient::new(self.config(servers)).map_err(|e| AdminFailure::from(e.to_string()))
    }

    /// A client of server `id` alone, which gives up soon: a dead server
    /// must not hold a round up.
    pub(crate) fn one(&self, id: NodeId, addr: &str) -> Result<RoutingClient, AdminFailure> {
        let mut config = self.config([(id, addr.to_string())].into());
        config.attempts_max = 2;
        RoutingClient::new(config).map_err(|e| AdminFailure::from(e.to_string()))
    }
}

pub(crate) async fn admin(
    client: &mut RoutingClient,
    group: GroupId,
    request: AdminRequest,
) -> Result<AdminAnswer, RoutingError> {
    let bytes = client.call(group, GroupOp::Admin(request)).await?;
    AdminAnswer::decode(&bytes).map_err(|message| RoutingError::Refused {
        group,
        node: 0,
        message,
    })
}

/// Proposes `command` to the catalog; idempotent commands only, so an
/// unknown outcome is retried.
pub(crate) async fn catalog(
    client: &mut RoutingClient,
    command: CatalogCommand,
) -> Result<(), AdminFailure> {
    catalog_answer(client, command)
        .await?
        .map_err(|reason| AdminFailure::from(format!("the catalog refused: {reason}")))
}

/// The catalog's answer to `command`: `Ok(Err(reason))` when the catalog
/// applied it and refused it.
pub(crate) async fn catalog_answer(
    client: &mut RoutingClient,
    command: CatalogCommand,
) -> Result<Result<(), String>, AdminFailure> {
    let mut last = String::new();
    for _ in 0..5 {
        match client.command(CATALOG_GROUP, command.encode()).await {
            Ok(answer) => return Ok(catalog_result(&answer)),
            Err(RoutingError::Unknown { reason, .. }) => last = reason,
            Err(e) => return Err(format!("the catalog (group 0) did not answer: {e}").into()),
        }
    }
    Err(format!("the catalog's answer was lost five times (last: {last}); run again").into())
}

pub(crate) async fn members(
    client: &mut RoutingClient,
    group: GroupId,
) -> Result<GroupMembers, AdminFailure> {
    match admin(client, group, AdminRequest::List).await {
        Ok(AdminAnswer::Members(members)) => Ok(*members),
        Ok(other) => Err(format!("an unexpected answer {other:?}").into()),
        Err(e) => Err(format!("group {group}: {e}").into()),
    }
}

/// Teaches `client` every server of the catalog (group 0) and its
/// address, as the catalog's members list them; nothing if none answers.
async fn learn_catalog_servers(client: &mut RoutingClient) {
    if let Ok(catalog) = members(client, CATALOG_GROUP).await {
        for (id, addr) in &catalog.addrs {
            client.learn(*id, addr);
        }
    }
}

/// The group's members as its leader sees them (the configuration in
/// force, each member's progress) when `list` came from another member
/// that names a leader with a known address; `list` otherwise (no
/// leader known, or it did not answer).
async fn leaders_view(client: &mut RoutingClient, list: GroupMembers) -> GroupMembers {
    let Some(leader) = list.leader.filter(|leader| *leader != list.answered_by) else {
        return list;
    };
    if let Some((_, addr)) = list.addrs.iter().find(|(id, _)| *id == leader) {
        client.learn(leader, addr);
    }
    let answer = client
        .call_node(leader, list.group, GroupOp::Admin(AdminRequest::List))
        .await;
    match answer.ok().map(|bytes| AdminAnswer::decode(&bytes)) {
        Some(Ok(AdminAnswer::Members(members))) => *members,
        _ => list,
    }
}

fn print_members(members: &GroupMembers) {
    let m = &members.membership;
    let list =
        |ids: &BTreeSet<NodeId>| ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    println!(
        "group {}: configuration at index {} ({}), term {}, leader {}, as node {} sees it",
        members.group,
        members.configuration_index,
        if members.configuration_committed {
            "committed"
        } else {
            "not committed yet"
        },
        members.term,
        members
            .leader
            .map_or_else(|| "unknown".to_string(), |id| id.to_string()),
        members.answered_by
    );
    println!(
        "voters: {}  learners: {}",
        list(&m.voters),
        list(&m.learners)
    );
    if m.is_joint() {
        println!("outgoing voters (joint): {}", list(&m.voters_outgoing));
    }
    if let Some(forced) = &members.forced_recovery {
        println!("AUDIT: {forced}");
    }
    if !m.witnesses.is_empty() {
        println!("witnesses: {}", list(&m.witnesses));
    }
    let addrs: BTreeMap<NodeId, &String> = members.addrs.iter().map(|(id, a)| (*id, a)).collect();
    let progress: BTreeMap<NodeId, (u64, u64)> = members
        .progress
        .iter()
        .map(|(id, matched, lag)| (*id, (*matched, *lag)))
        .collect();
    println!(
        "{:<6} {:<10} {:<22} {:>10} {:>8}",
        "id", "role", "address", "match", "lag"
    );
    for id in m.members() {
        let role = if Some(id) == members.leader {
            "leader"
        } else if m.is_witness(id) {
            "witness"
        } else if m.is_voter(id) {
            "voter"
        } else {
            "learner"
        };
        let (matched, lag) = progress
            .get(&id)
            .map_or(("-".to_string(), "-".to_string()), |(m, l)| {
                (m.to_string(), l.to_string())
            });
        println!(
            "{:<6} {:<10} {:<22} {:>10} {:>8}",
            id,
            role,
            addrs.get(&id).map_or("-", |a| a.as_str()),
            matched,
            lag
        );
    }
}

/// Runs `command` against a multi-group cluster: one group's membership
/// (`group`), or a node-level operation.
pub async fn member(
    cluster: &Cluster,
    group: Option<GroupId>,
    command: &MemberCommand,
) -> Result<(), AdminFailure> {
    let in_range = |group: GroupId| -> Result<GroupId, AdminFailure> {
        if group > cluster.groups {
            return Err(format!(
                "group {group} does not exist: the cluster's groups are 0 (the catalog) to {}",
                cluster.groups
            )
            .into());
        }
        Ok(group)
    };
    let need_group = || -> Result<GroupId, AdminFailure> {
        match group {
            Some(group) => in_range(group),
            // A cluster of one group: that group.
            None if cluster.groups == 1 => Ok(1),
            None => Err(AdminFailure::from(
                "a multi-group cluster: name the group with --group G (0 is the catalog), or \
                 use replace, drain or remove-node for a whole server"
                    .to_string(),
            )),
        }
    };
    let mut client = cluster.client(cluster.servers.clone())?;
    if cluster.groups == 1 && group.is_none() {
        return one_group_member(&mut client, command).await;
    }
    match command {
        MemberCommand::List => {
            let group = need_group()?;
            let list = match members(&mut client, group).await {
                // No server given hosts the group (one removed from it,
                // asked alone): the servers the catalog records, which
                // every server hosts, are asked too.
                Err(failure) if failure.message.contains(" is not hosted on node ") => {
                    learn_catalog_servers(&mut client).await;
                    members(&mut client, group).await?
                }
                other => other?,
            };
            print_members(&leaders_view(&mut client, list).await);
            Ok(())
        }
        MemberCommand::AddLearner { id, addr } => {
            add(
                &mut client,
                need_group()?,
                MembershipChange::AddLearner(*id),
                addr,
            )
            .await
        }
        MemberCommand::Add { id, addr } => {
            add(
                &mut client,
                need_group()?,
                MembershipChange::AddVoter(*id),
                addr,
            )
            .await
        }
        MemberCommand::AddWitness { id, addr } => {
            add(
                &mut client,
                need_group()?,
                MembershipChange::AddWitness(*id),
                addr,
            )
            .await
        }
        MemberCommand::Promote { id } => {
            change_once(
                &mut client,
                need_group()?,
                MembershipChange::PromoteLearner(*id),
            )
            .await
        }
        MemberCommand::Remove { id } => {
            let group = need_group()?;
            change_once(&mut client, group, MembershipChange::Remove(*id)).await?;
            catalog(
                &mut client,
                CatalogCommand::Unassign {
                    node: *id,
                    groups: vec![group],
                },
            )
            .await
        }
        MemberCommand::TransferLeader { id } => {
            let group = need_group()?;
            transfer(&mut client, group, *id).await
        }
        MemberCommand::Replace {
            old,
            new,
            addr,
            groups_in_flight,
            new_silence_max_secs,
        } => {
            let new_silence_max = Duration::from_secs(*new_silence_max_secs);
            replace(
                cluster,
                &mut client,
                *old,
                *new,
                addr,
                *groups_in_flight,
                new_silence_max,
            )
            .await
        }
        MemberCommand::Drain { id } => drain(cluster, *id).await,
        MemberCommand::RemoveNode {
            id,
            groups_in_flight,
        } => remove_node(cluster, &mut client, *id, *groups_in_flight).await,
    }
}

/// Adds server `change`'s node to `group`: its address and assignment go
/// to the catalog first (so that every server reaches it and it creates
/// the group), then the change to the group.
async fn add(
    client: &mut RoutingClient,
    group: GroupId,
    change: MembershipChange,
    addr: &str,
) -> Result<(), AdminFailure> {
    let (MembershipChange::AddLearner(id)
    | MembershipChange::AddVoter(id)
    | MembershipChange::AddWitness(id)) = change
    else {
        unreachable!("only additions come here");
    };
    let before = members(client, group).await?;
    if before.membership.contains(id) {
        return Err(format!("server {id} is a member of group {group} already").into());
    }
    catalog(
        client,
        CatalogCommand::AddServer {
            id,
            addr: addr.to_string(),
        },
    )
    .await?;
    if group != CATALOG_GROUP {
        // A server started with --join hosts only the catalog and learns
        // what it hosts from the catalog's log, which reaches it only as
        // a member of group 0: a server new to the catalog joins it as a
        // learner first, or it would never create the group it is added
        // to (a voter that never answers).
        let catalog_members = members(client, CATALOG_GROUP).await?;
        if !catalog_members.membership.contains(id) {
            change_once(client, CATALOG_GROUP, MembershipChange::AddLearner(id)).await?;
        }
        catalog(
            client,
            CatalogCommand::Assign {
                node: id,
                groups: vec![(group, before.membership.voters.clone())],
            },
        )
        .await?;
    }
    change_once(client, group, change).await
}

/// A membership command of a cluster of one group (no `--groups`, no
/// `--group`): the cluster has one set of servers, as a single-group
/// server's had, so every change of the data group (1) is made to the
/// catalog (group 0) too, which tells each server what it hosts. The
/// catalog goes first on the way in (a new server must follow it to
/// learn that it hosts group 1) and last on the way out. Each step is
/// skipped when already done, so a command refused half-way (a learner
/// not caught up yet) is simply run again. Prints what
/// a single-group server's command printed, then the data group's view.
async fn one_group_member(
    client: &mut RoutingClient,
    command: &MemberCommand,
) -> Result<(), AdminFailure> {
    const DATA: GroupId = 1;
    refuse_more_groups(client).await?;
    let done = match command {
        MemberCommand::List => {
            let now = match members(client, DATA).await {
                // A server removed from the group, asked alone: the
                // servers the catalog records are asked too.
                Err(failure) if failure.message.contains(" is not hosted on node ") => {
                    learn_catalog_servers(client).await;
                    members(client, DATA).await?
                }
                other => other?,
            };
            let now = leaders_view(client, now).await;
            print_one_group_summary(&now);
            print_members(&now);
            return Ok(());
        }
        MemberCommand::AddLearner { id, addr }
        | MemberCommand::Add { id, addr }
        | MemberCommand::AddWitness { id, addr } => {
            let (change, catalog_change, kind) = match command {
                MemberCommand::AddLearner { .. } => (
                    MembershipChange::AddLearner(*id),
                    MembershipChange::AddLearner(*id),
                    "a learner",
                ),
                MemberCommand::Add { .. } => (
                    MembershipChange::AddVoter(*id),
                    MembershipChange::AddVoter(*id),
                    "a voter",
                ),
                // A witness keeps the catalog in full: a voter of it.
                _ => (
                    MembershipChange::AddWitness(*id),
                    MembershipChange::AddVoter(*id),
                    "a witness",
                ),
            };
            if members(client, DATA).await?.membership.contains(*id) {
                return Err(format!("node {id} is already a member of the cluster").into());
            }
            catalog(
                client,
                CatalogCommand::AddServer {
                    id: *id,
                    addr: addr.to_string(),
                },
            )
            .await?;
            if !members(client, CATALOG_GROUP)
                .await?
                .membership
                .contains(*id)
            {
                change_quietly(client, CATALOG_GROUP, catalog_change).await?;
            }
            add(client, DATA, change, addr).await?;
            format!("added node {id} ({addr}) as {kind}")
        }
        MemberCommand::Promote { id } => {
            let data = members(client, DATA).await?.membership;
            if !data.contains(*id) {
                return Err(format!("node {id} is not a member of the cluster").into());
            }
            if members(client, CATALOG_GROUP)
                .await?
                .membership
                .is_learner(*id)
            {
                change_quietly(client, CATALOG_GROUP, MembershipChange::PromoteLearner(*id))
                    .await?;
            }
            if data.is_learner(*id) {
                change_once(client, DATA, MembershipChange::PromoteLearner(*id)).await?;
            }
            format!("promoted node {id} to voter")
        }
        MemberCommand::Remove { id } => {
            if members(client, DATA).await?.membership.contains(*id) {
                change_once(client, DATA, MembershipChange::Remove(*id)).await?;
            }
            catalog(
                client,
                CatalogCommand::Unassign {
                    node: *id,
                    groups: vec![DATA],
                },
            )
            .await?;
            if members(client, CATALOG_GROUP)
                .await?
                .membership
                .contains(*id)
            {
                change_quietly(client, CATALOG_GROUP, MembershipChange::Remove(*id)).await?;
            }
            format!("removed node {id}")
        }
        MemberCommand::TransferLeader { id } => {
            transfer(client, DATA, *id).await?;
            format!("node {id} is the leader now")
        }
        MemberCommand::Replace { .. }
        | MemberCommand::Drain { .. }
        | MemberCommand::RemoveNode { .. } => {
            return Err(AdminFailure::from(
                "replace, drain and remove-node move every group of a server; a cluster of \
                 one group changes its members one by one: add-learner, promote, remove"
                    .to_string(),
            ))
        }
    };
    println!("{done}");
    print_one_group_summary(&members(client, DATA).await?);
    Ok(())
}

/// Refuses a cluster of more than one data group (a `--groups` was
/// forgotten): its group 1 is one shard, not the cluster.
async fn refuse_more_groups(client: &mut RoutingClient) -> Result<(), AdminFailure> {
    let answer = client
        .call(1, GroupOp::Status(StatusQuery::Summary))
        .await
        .map_err(|e| AdminFailure::from(format!("no server answered: {e}")))?;
    if let Ok(StatusAnswer::Summary(summary)) =
        concord::codec::decode::<StatusAnswer>(&answer, STATUS_ANSWER_BYTES_MAX)
    {
        let hosted = summary.groups_hosted;
        if hosted > 1 {
            return Err(format!(
                "this server hosts {hosted} groups: use --groups {hosted} (and --group G for \
                 one group's members)"
            )
            .into());
        }
    }
    Ok(())
}

/// [`change_once`] without its printout (the catalog's part of a
/// one-group change).
pub(crate) async fn change_quietly(
    client: &mut RoutingClient,
    group: GroupId,
    change: MembershipChange,
) -> Result<(), AdminFailure> {
    change_once_printing(client, group, change, false).await
}

/// The line a single-group server's `member` command printed: the
/// voters, witnesses and learners.
fn print_one_group_summary(members: &GroupMembers) {
    let m = &members.membership;
    let list = |ids: &mut dyn Iterator<Item = &NodeId>| {
        let ids: Vec<String> = ids.map(u64::to_string).collect();
        if ids.is_empty() {
            "-".to_string()
        } else {
            ids.join(",")
        }
    };
    println!(
        "voters {}  witnesses {}  learners {}",
        list(&mut m.voters.iter()),
        list(&mut m.witnesses.iter()),
        list(&mut m.learners.iter())
    );
}

/// Proposes one change and waits until it is committed and final.
async fn change_once(
    client: &mut RoutingClient,
    group: GroupId,
    change: MembershipChange,
) -> Result<(), AdminFailure> {
    change_once_printing(client, group, change, true).await
}

/// [`change_once`], printing the outcome if `print`.
async fn change_once_printing(
    client: &mut RoutingClient,
    group: GroupId,
    change: MembershipChange,
    print: bool,
) -> Result<(), AdminFailure> {
    match admin(client, group, AdminRequest::Change(change)).await {
        Ok(AdminAnswer::Proposed { index }) => {
            let started = Instant::now();
            loop {
                let now = members(client, group).await?;
                let applied_or_gone = now.configuration_index > index
                    || (now.configuration_index == index
                        && now.configuration_committed
                        && !now.membership.is_joint());
                if applied_or_gone && !now.membership.is_joint() && now.configuration_committed {
                    if print {
                        println!("group {group}: {change:?} done");
                        print_members(&now);
                    }
                    return Ok(());
                }
                if started.elapsed() > CHANGE_WAIT_MAX {
                    return Err(AdminFailure {
                        message: format!(
                            "group {group}: {change:?} was proposed at index {index} but is not \
                             final after {CHANGE_WAIT_MAX:?}; run `member list --group {group}`"
                        ),
                        unknown: true,
                    });
                }
                tokio::time::sleep(ROUND_PAUSE).await;
            }
        }
        Ok(other) => Err(format!("an unexpected answer {other:?}").into()),
        Err(RoutingError::Refused { message, .. }) => Err(format!("refused: {message}").into()),
        Err(e @ RoutingError::Unknown { .. }) => Err(AdminFailure {
            message: format!("outcome unknown: {e}; run `member list --group {group}`"),
            unknown: true,
        }),
        Err(e) => Err(format!("group {group}: {e}").into()),
    }
}

async fn transfer(
    client: &mut RoutingClient,
    group: GroupId,
    target: NodeId,
) -> Result<(), AdminFailure> {
    match admin(client, group, AdminRequest::Transfer(target)).await {
        Ok(_) => {}
        Err(RoutingError::Refused { message, .. }) => {
            return Err(format!("refused: {message}").into())
        }
        Err(e) => return Err(format!("group {group}: {e}").into()),
    }
    let started = Instant::now();
    while started.elapsed() < CHANGE_WAIT_MAX {
        let now = members(client, group).await?;
        if now.leader == Some(target) {
            println!("group {group}: node {target} leads now");
            return Ok(());
        }
        tokio::time::sleep(ROUND_PAUSE).await;
    }
    Err(format!("group {group}: node {target} does not lead after {CHANGE_WAIT_MAX:?}").into())
}

/// Every group some server leads that names `old` or `new`, by group
/// (the view of the highest term when two servers claim one), and the
/// servers that answered.
async fn views(
    cluster: &Cluster,
    old: NodeId,
    new: NodeId,
    servers: &BTreeMap<NodeId, String>,
) -> (BTreeMap<GroupId, (NodeId, GroupView)>, BTreeSet<NodeId>) {
    let mut by_group: BTreeMap<GroupId, (NodeId, GroupView)> = BTreeMap::new();
    let mut answered = BTreeSet::new();
    for (id, addr) in servers {
        let Ok(mut client) = cluster.one(*id, addr) else {
            continue;
        };
        let Ok(AdminAnswer::Views(views)) = admin(
            &mut client,
            CATALOG_GROUP,
            AdminRequest::ReplaceView { old, new },
        )
        .await
        else {
            continue;
        };
        answered.insert(*id);
        for view in views {
            let newer = by_group
                .get(&view.group)
                .is_none_or(|(_, known)| known.term < view.term);
            if newer {
                by_group.insert(view.group, (*id, view));
            }
        }
    }
    (by_group, answered)
}

/// Sends each leader its groups' changes, in batches.
pub(crate) async fn send_changes(
    cluster: &Cluster,
    servers: &BTreeMap<NodeId, String>,
    by_leader: BTreeMap<NodeId, Vec<(GroupId, MembershipChange)>>,
) -> usize {
    let mut refused = 0;
    for (leader, changes) in by_leader {
        let Some(addr) = servers.get(&leader) else {
            continue;
        };
        let Ok(mut client) = cluster.one(leader, addr) else {
            continue;
        };
        for chunk in changes.chunks(ADMIN_BATCH_CHANGES_MAX) {
            let request = AdminRequest::ChangeBatch(chunk.to_vec());
            if let Ok(AdminAnswer::Batch(results)) =
                admin(&mut client, CATALOG_GROUP, request).await
            {
                refused += results.iter().filter(|(_, why)| why.is_some()).count();
            }
        }
    }
    refused
}

/// How long NEW has been silent at `now`, when that is longer than
/// `new_silence_max`: the replace cannot finish without it, and an
/// operator watching a command that prints nothing new cannot tell why.
fn new_silent_too_long(
    last_heard: Instant,
    now: Instant,
    new_silence_max: Duration,
) -> Option<Duration> {
    let silent = now.saturating_duration_since(last_heard);
    (silent > new_silence_max).then_some(silent)
}

async fn replace(
    cluster: &Cluster,
    client: &mut RoutingClient,
    old: NodeId,
    new: NodeId,
    addr: &str,
    groups_in_flight: usize,
    new_silence_max: Duration,
) -> Result<(), AdminFailure> {
    let plan = ReplacePlan::new(old, new, groups_in_flight).map_err(|e| e.to_string())?;
    // Another replace of OLD is refused before anything is recorded (the
    // catalog would refuse it too, but only after NEW's address).
    match admin(client, CATALOG_GROUP, AdminRequest::Replaces).await {
        Ok(AdminAnswer::Replaces(replaces)) => {
            if let Some((_, under_way)) = replaces
                .iter()
                .find(|(from, to)| *from == old && *to != new)
            {
                return Err(format!(
                    "server {old} is being replaced by server {under_way} already (the catalog \
                     records that replace); run `member replace {old} {under_way} ...` again to \
                     finish it"
                )
                .into());
            }
        }
        Ok(other) => return Err(format!("an unexpected answer {other:?}").into()),
        Err(e) => return Err(format!("cannot read the replaces under way: {e}").into()),
    }
    // The new server must run (started with --join) before anything is
    // recorded: a replace toward a server that cannot answer would leave
    // every group waiting.
    let mut probe = cluster.one(new, addr)?;
    let restart_new = format!(
        "concord-node --join --id {new} --listen {addr} --groups {} ...",
        cluster.groups
    );
    match admin(
        &mut probe,
        CATALOG_GROUP,
        AdminRequest::Led { groups_max: 0 },
    )
    .await
    {
        Ok(_) => {}
        Err(e) => {
            return Err(format!(
                "the new server {new} at {addr} does not answer ({e}); start it first with \
                 `{restart_new}` and run again"
            )
            .into())
        }
    }
    catalog(
        client,
        CatalogCommand::AddServer {
            id: new,
            addr: addr.to_string(),
        },
    )
    .await?;
    catalog(client, CatalogCommand::StartReplace { old, new }).await?;
    // OLD is asked too while it answers: a live OLD (replaced while it
    // runs) leads groups that only it can show, and the replace could not
    // finish without seeing them. Once it fails to answer it is taken for
    // dead and not asked again, so a dead OLD costs one failed request,
    // not one per round.
    let mut servers = cluster.servers.clone();
    servers.insert(new, addr.to_string());
    let started = Instant::now();
    let all_groups: Vec<GroupId> = (0..=cluster.groups).collect();
    let mut shown: Option<(ReplaceProgress, usize)> = None;
    let mut shown_line = String::new();
    let mut assigned: BTreeSet<GroupId> = BTreeSet::new();
    // NEW answered the probe just now.
    let mut new_heard = Instant::now();
    loop {
        if started.elapsed() > OPERATION_TIME_MAX {
            return Err(format!(
                "the replace of {old} by {new} did not finish in {OPERATION_TIME_MAX:?}; run \
                 the same command again to continue"
            )
            .into());
        }
        let (by_group, answered) = views(cluster, old, new, &servers).await;
        if servers.contains_key(&old) && !answered.contains(&old) {
            servers.remove(&old);
            println!(
                "replace {old} -> {new}: server {old} does not answer; taken for dead, its groups \
                 are seen at their other members"
            );
        }
        if answered.contains(&new) {
            new_heard = Instant::now();
        }
        let leaderless = all_groups
            .iter()
            .filter(|group| !by_group.contains_key(group))
            .count();
        let groups: Vec<ReplaceGroup<'_>> = by_group
            .values()
            .map(|(_, view)| ReplaceGroup {
                group: view.group,
                membership: &view.membership,
                change_pending: view.change_pending,
                new_caught_up: view.new_caught_up,
            })
            .collect();
        let round = plan.plan(groups).map_err(|e| e.to_string())?;
        if shown != Some((round.progress, leaderless)) {
            shown_line = format!(
                "replace {old} -> {new}: {}{} ({:.1} s)",
                round.progress,
                if leaderless > 0 {
                    format!(", {leaderless} groups without a leader seen (or not naming {old})")
                } else {
                    String::new()
                },
                started.elapsed().as_secs_f64()
            );
            println!("{shown_line}");
            shown = Some((round.progress, leaderless));
        }
        // Done once every group that names OLD or NEW is done and every
        // group was seen led (none with OLD left unseen).
        if round.progress.is_complete() && leaderless == 0 {
            break;
        }
        // Without NEW no group gets further, and groups in which it votes
        // beside a dead OLD have no majority: say so rather than wait.
        if let Some(silent) = new_silent_too_long(new_heard, Instant::now(), new_silence_max) {
            return Err(format!(
                "the new server {new} at {addr} has not answered for {:.1} s (more than \
                 --new-silence-max-secs {}): the replace of {old} by {new} stopped at \
                 \"{shown_line}\". It stays recorded in the catalog (`concord-cli status` shows \
                 it under way) and groups that took in server {new} keep it; groups in which \
                 it votes may lack a majority while it is down. Restart server {new} with the \
                 same --id, --listen and data directory (`{restart_new}`), then run the same \
                 command again: it continues where the groups stand",
                silent.as_secs_f64(),
                new_silence_max.as_secs()
            )
            .into());
        }
        // New groups for NEW: assigned in the catalog before the group
        // adds it, so that NEW creates them.
        let to_assign: Vec<(GroupId, BTreeSet<NodeId>)> = round
            .proposals()
            .filter(|(group, change)| {
                *group != CATALOG_GROUP
                    && matches!(
                        change,
                        MembershipChange::AddLearner(_) | MembershipChange::AddWitness(_)
                    )
                    && !assigned.contains(group)
            })
            .map(|(group, _)| (group, by_group[&group].1.membership.voters.clone()))
            .collect();
        for chunk in to_assign.chunks(CATALOG_ASSIGN_GROUPS_MAX) {
            catalog(
                client,
                CatalogCommand::Assign {
                    node: new,
                    groups: chunk.to_vec(),
                },
            )
            .await?;
            assigned.extend(chunk.iter().map(|(group, _)| *group));
        }
        let mut by_leader: BTreeMap<NodeId, Vec<(GroupId, MembershipChange)>> = BTreeMap::new();
        for (group, change) in round.proposals() {
            let leader = by_group[&group].0;
            by_leader.entry(leader).or_default().push((group, change));
        }
        send_changes(cluster, &servers, by_leader).await;
        tokio::time::sleep(ROUND_PAUSE).await;
    }
    let groups: Vec<GroupId> = all_groups;
    for chunk in groups.chunks(CATALOG_ASSIGN_GROUPS_MAX) {
        catalog(
            client,
            CatalogCommand::Unassign {
                node: old,
                groups: chunk.to_vec(),
            },
        )
        .await?;
    }
    catalog(client, CatalogCommand::FinishReplace { old }).await?;
    println!(
        "replaced server {old} by server {new} in every group in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn drain(cluster: &Cluster, id: NodeId) -> Result<(), AdminFailure> {
    let Some(addr) = cluster.servers.get(&id) else {
        return Err(format!("server {id} is not in --servers; list its address there").into());
    };
    let mut client = cluster.one(id, addr)?;
    let started = Instant::now();
    loop {
        let views = match admin(
            &mut client,
            CATALOG_GROUP,
            AdminRequest::ReplaceView { old: id, new: id },
        )
        .await
        {
            Ok(AdminAnswer::Views(views)) => views,
            Ok(other) => return Err(format!("an unexpected answer {other:?}").into()),
            Err(e) => return Err(format!("server {id} did not answer: {e}").into()),
        };
        println!(
            "drain {id}: {} groups led ({:.1} s)",
            views.len(),
            started.elapsed().as_secs_f64()
        );
        if views.is_empty() {
            return Ok(());
        }
        if started.elapsed() > CHANGE_WAIT_MAX {
            return Err(format!(
                "server {id} still leads {} groups after {CHANGE_WAIT_MAX:?} (groups with no \
                 other voter caught up cannot move); run again",
                views.len()
            )
            .into());
        }
        for view in views {
            let Some(target) = view
                .membership
                .voters
                .iter()
                .copied()
                .find(|voter| *voter != id && view.membership.is_full_voter(*voter))
            else {
                continue;
            };
            let _ = admin(&mut client, view.group, AdminRequest::Transfer(target)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn remove_node(
    cluster: &Cluster,
    client: &mut RoutingClient,
    id: NodeId,
    groups_in_flight: usize,
) -> Result<(), AdminFailure> {
    // ID itself is asked too: the groups it leads are seen only there
    // (a leader may remove itself; it steps down once that commits).
    let servers = cluster.servers.clone();
    let started = Instant::now();
    let mut none_seen_since: Option<Instant> = None;
    loop {
        let (by_group, _answered) = views(cluster, id, id, &servers).await;
        if by_group.is_empty() {
            // A group that names ID but has no leader right now (ID led
            // it and just died) is seen by nobody: done only once none
            // is seen for longer than an election takes.
            let since = *none_seen_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= REMOVE_SETTLE {
                break;
            }
            tokio::time::sleep(ROUND_PAUSE * 4).await;
            continue;
        }
        none_seen_since = None;
        if started.elapsed() > OPERATION_TIME_MAX {
            return Err(format!(
                "server {id} is still in {} groups; run the same command again",
                by_group.len()
            )
            .into());
        }
        println!(
            "remove-node {id}: {} groups still name it ({:.1} s)",
            by_group.len(),
            started.elapsed().as_secs_f64()
        );
        let mut by_leader: BTreeMap<NodeId, Vec<(GroupId, MembershipChange)>> = BTreeMap::new();
        for (group, (leader, view)) in by_group.iter().take(groups_in_flight.max(1)) {
            if view.change_pending || view.membership.is_joint() {
                continue;
            }
            if view.membership.voters.len() == 1 && view.membership.is_voter(id) {
                return Err(format!(
                    "server {id} is the only voter of group {group}: add another first"
                )
                .into());
            }
            by_leader
                .entry(*leader)
                .or_default()
                .push((*group, MembershipChange::Remove(id)));
        }
        send_changes(cluster, &servers, by_leader).await;
        tokio::time::sleep(ROUND_PAUSE).await;
    }
    let groups: Vec<GroupId> = (0..=cluster.groups).collect();
    for chunk in groups.chunks(CATALOG_ASSIGN_GROUPS_MAX) {
        catalog(
            client,
            CatalogCommand::Unassign {
                node: id,
                groups: chunk.to_vec(),
            },
        )
        .await?;
    }
    let _ = catalog(client, CatalogCommand::RemoveServer { id }).await;
    println!(
        "server {id} is in no group any more ({:.1} s); stop it and delete its data directory",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_is_too_silent_only_past_the_bound() {
        let heard = Instant::now();
        let max = Duration::from_secs(30);
        assert_eq!(new_silent_too_long(heard, heard, max), None);
        assert_eq!(new_silent_too_long(heard, heard + max, max), None);
        let past = max + Duration::from_millis(1);
        assert_eq!(new_silent_too_long(heard, heard + past, max), Some(past));
        // An answer stamped after `now` (clocks read out of order) is no
        // silence.
        assert_eq!(new_silent_too_long(heard + max, heard, max), None);
    }
}
