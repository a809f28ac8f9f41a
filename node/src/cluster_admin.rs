//! `concord-cli cluster ...` against a multi-group cluster (`--groups
//! N`): its servers' zones and states, the placement rule, and the
//! moves of replicas that grow, shrink and rebalance it.
//!
//! The catalog (group 0) records every server's zone and state
//! ([`ServerState`]), the placement rule and each replica move under
//! way; the groups' own configurations say how far each move got. Every
//! command reads both afresh each round and holds no progress of its
//! own, so one killed at any point and run again continues where the
//! cluster stands. A round asks every server for the groups it leads,
//! takes each move under way one step further (the steps of a one-group
//! replace, [`ReplacePlan`]: the target joins as a learner, catches up,
//! is promoted, then the source is removed), and once the moves under
//! way leave room, records the next moves the [`Balancer`] plans.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use concord::multi::{
    BalanceLimits, Balancer, Catalog, CatalogCommand, GroupId, LeaderTransfer, MoveStall,
    PlacementRule, ReplaceGroup, ReplacePlan, ReplaceStep, ReplicaMove, ServerPlace, ServerState,
    WaitReason, CATALOG_GROUP,
};
use concord::{MembershipChange, NodeId};
use concord_tokio::multi::admin::{AdminAnswer, AdminRequest, LedGroup};
use concord_tokio::multi::routing_client::RoutingClient;

use crate::client::ClusterCommand;
use crate::multi_admin::{
    admin, catalog, catalog_answer, change_quietly, members, send_changes, AdminFailure, Cluster,
    OPERATION_TIME_MAX,
};

/// Pause between two rounds of a balance or drain.
const ROUND_PAUSE: Duration = Duration::from_millis(100);

/// Most groups one server lists per round.
const LED_GROUPS_MAX: usize = 100_000;

/// Times one group's leadership transfer is asked for before the
/// balancer leaves the group as it is (a voter that never catches up).
const TRANSFER_ASKS_MAX: u32 = 3;

/// How long a move's target may learn without getting any closer to its
/// leader's log before the move is undone, unless the operator says
/// otherwise (`cluster balance --move-stall-secs`). A snapshot's
/// confirmed chunks count as getting closer, so a slow transfer under
/// a bandwidth limit is no stall.
pub const MOVE_STALL_DEFAULT: Duration = Duration::from_secs(120);

/// Replicas per group when the catalog records no rule and no group is
/// seen.
const REPLICAS_DEFAULT: usize = 3;

/// What a round sees: the catalog and every group led, by group.
struct Seen {
    catalog: Catalog,
    /// Each group, its leader and its view (the highest term when two
    /// servers claim it).
    led: BTreeMap<GroupId, (NodeId, LedGroup)>,
    /// Every server's address: the catalog's, then `--servers`.
    addrs: BTreeMap<NodeId, String>,
}

impl Seen {
    /// The data groups (1 to N) and their voters, as their leaders see
    /// them.
    fn voters(&self, groups: u64) -> BTreeMap<GroupId, BTreeSet<NodeId>> {
        self.led
            .iter()
            .filter(|(group, _)| **group != CATALOG_GROUP && **group <= groups)
            .map(|(group, (_, view))| (*group, view.membership.voters.clone()))
            .collect()
    }

    /// Every server as the balancer takes it: the catalog's places, then
    /// any other server `--servers` or a group names (up, in no zone).
    fn places(&self, groups: u64) -> BTreeMap<NodeId, ServerPlace> {
        let mut places = self.catalog.places();
        let named = self
            .addrs
            .keys()
            .copied()
            .chain(self.voters(groups).into_values().flatten());
        for id in named {
            places
                .entry(id)
                .or_insert_with(|| self.catalog.place_of(id));
        }
        places
    }

    /// The leadership transfers the balancer plans now: none while a
    /// replica moves (`in_flight`), none for a group whose configuration
    /// prefers a leader (it would hand the leadership back), nor for a
    /// group it asked
    /// [`TRANSFER_ASKS_MAX`] times already (`asked`: its leader refuses
    /// or the transfer never takes).
    fn leader_plan(
        &self,
        groups: u64,
        places: &BTreeMap<NodeId, ServerPlace>,
        balancer: &Balancer,
        in_flight: &[ReplicaMove],
        asked: &BTreeMap<GroupId, u32>,
    ) -> Result<Vec<LeaderTransfer>, AdminFailure> {
        if !in_flight.is_empty() {
            return Ok(Vec::new());
        }
        let data = self
            .led
            .iter()
            .filter(|(group, _)| **group != CATALOG_GROUP && **group <= groups);
        let leaders: BTreeMap<GroupId, NodeId> = data
            .clone()
            .map(|(group, (leader, _))| (*group, *leader))
            .collect();
        let candidates: BTreeMap<GroupId, BTreeSet<NodeId>> = data
            .filter(|(group, (_, view))| {
                !view.change_pending
                    && !view.membership.is_joint()
                    && view.preferred_leader.is_none()
                    && asked.get(group).is_none_or(|n| *n < TRANSFER_ASKS_MAX)
            })
            .map(|(group, (_, view))| {
                let membership = &view.membership;
                let voters = membership.voters.iter().copied();
                let able = voters.filter(|id| membership.is_full_voter(*id));
                (*group, able.collect())
            })
            .collect();
        balancer
            .plan_leaders(places, &candidates, &leaders, in_flight)
            .map_err(|e| AdminFailure::from(e.to_string()))
    }

    /// The rule the catalog records, else the voter count most groups
    /// have (the larger on a tie), zones not spread.
    fn rule(&self, groups: u64) -> PlacementRule {
        if let Some(rule) = self.catalog.placement_rule() {
            return rule;
        }
        let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
        for voters in self.voters(groups).values() {
            *counts.entry(voters.len()).or_insert(0) += 1;
        }
        let replicas = counts
            .iter()
            .max_by_key(|(replicas, count)| (**count, **replicas))
            .map_or(REPLICAS_DEFAULT, |(replicas, _)| *replicas)
            .clamp(1, concord::multi::BALANCE_REPLICAS_MAX);
        PlacementRule {
            replicas,
            spread_zones: false,
        }
    }
}

/// Reads the catalog from its leader.
async fn read_catalog(client: &mut RoutingClient) -> Result<Catalog, AdminFailure> {
    match admin(client, CATALOG_GROUP, AdminRequest::Catalog).await {
        Ok(AdminAnswer::Catalog(bytes)) => Catalog::restore(&bytes)
            .map_err(|e| format!("the catalog's bytes could not be read: {e}").into()),
        Ok(other) => Err(format!("an unexpected answer {other:?}").into()),
        Err(e) => Err(format!(
            "the catalog (group 0) did not answer: {e} (a server older than this client \
             cannot answer `cluster` commands: upgrade it)"
        )
        .into()),
    }
}

/// The catalog and every group led, asked of every server known.
async fn see(cluster: &Cluster, client: &mut RoutingClient) -> Result<Seen, AdminFailure> {
    let catalog = read_catalog(client).await?;
    let mut addrs: BTreeMap<NodeId, String> = cluster.servers.clone();
    for (id, addr) in catalog.servers() {
        addrs.insert(id, addr.to_string());
    }
    let mut led: BTreeMap<GroupId, (NodeId, LedGroup)> = BTreeMap::new();
    for (id, addr) in &addrs {
        if catalog.place_of(*id).state == ServerState::Retired {
            continue;
        }
        let Ok(mut one) = cluster.one(*id, addr) else {
            continue;
        };
        let request = AdminRequest::LedGroups {
            groups_max: LED_GROUPS_MAX,
        };
        let Ok(AdminAnswer::LedGroups { groups, .. }) =
            admin(&mut one, CATALOG_GROUP, request).await
        else {
            continue;
        };
        for view in groups {
            let newer = led
                .get(&view.group)
                .is_none_or(|(_, known)| known.term < view.term);
            if newer {
                led.insert(view.group, (*id, view));
            }
        }
    }
    Ok(Seen {
        catalog,
        led,
        addrs,
    })
}

/// Runs a `cluster` command.
pub async fn cluster(cluster: &Cluster, command: &ClusterCommand) -> Result<(), AdminFailure> {
    if cluster.groups < 2 {
        return Err(AdminFailure::from(
            "`cluster` commands are for multi-group clusters: give --groups N as the servers \
             were started with"
                .to_string(),
        ));
    }
    let mut client = cluster.client(cluster.servers.clone())?;
    match command {
        ClusterCommand::Status { watch_secs } => status(cluster, &mut client, *watch_secs).await,
        ClusterCommand::Balance { dry_run: true, .. } => dry_run(cluster, &mut client).await,
        ClusterCommand::Balance {
            dry_run: false,
            time_max_secs,
            move_stall_secs,
        } => {
            let time_max = Duration::from_secs(*time_max_secs);
            let stall_after = Duration::from_secs(*move_stall_secs);
            run_moves(cluster, &mut client, None, time_max, stall_after).await
        }
        ClusterCommand::AddServer { id, addr, zone } => {
            add_server(cluster, &mut client, *id, addr, zone.as_deref()).await
        }
        ClusterCommand::SetZone { id, zone } => {
            record_servers(cluster, &mut client).await?;
            known(&read_catalog(&mut client).await?, *id)?;
            catalog(
                &mut client,
                CatalogCommand::SetZone {
                    id: *id,
                    zone: Some(zone.clone()),
                },
            )
            .await?;
            println!("server {id} is in zone {zone}");
            Ok(())
        }
        ClusterCommand::SetRule {
            replicas,
            spread_zones,
        } => {
            let rule = PlacementRule {
                replicas: usize::from(*replicas),
                spread_zones: *spread_zones,
            };
            catalog(&mut client, CatalogCommand::SetPlacementRule { rule }).await?;
            println!("placement rule: {}", rule_line(rule));
            Ok(())
        }
        ClusterCommand::Drain { id } => drain(cluster, &mut client, *id).await,
        ClusterCommand::RemoveServer { id } => remove_server(cluster, &mut client, *id).await,
    }
}

fn rule_line(rule: PlacementRule) -> String {
    format!(
        "{} replicas per group, {}",
        rule.replicas,
        if rule.spread_zones {
            "each in another zone"
        } else {
            "zones not spread"
        }
    )
}

fn state_word(state: ServerState) -> &'static str {
    match state {
        ServerState::Up => "up",
        ServerState::Draining => "draining",
        ServerState::Retired => "retired",
    }
}

fn balancer(rule: PlacementRule) -> Result<Balancer, AdminFailure> {
    Balancer::new(rule, BalanceLimits::default()).map_err(|e| AdminFailure::from(e.to_string()))
}

/// Refuses a server the catalog does not record.
fn known(catalog: &Catalog, id: NodeId) -> Result<(), AdminFailure> {
    if catalog.has_server(id) {
        Ok(())
    } else {
        Err(format!(
            "server {id} is not a server of this cluster (see `concord-cli cluster status`; add \
             a new one with `cluster add-server`)"
        )
        .into())
    }
}

/// Records in the catalog every server of `--servers` it does not record
/// yet (the servers the cluster started with are not), so that each has
/// a zone, a state and may take moves.
async fn record_servers(cluster: &Cluster, client: &mut RoutingClient) -> Result<(), AdminFailure> {
    let recorded = read_catalog(client).await?;
    for (id, addr) in &cluster.servers {
        if !recorded.has_server(*id) {
            catalog(
                client,
                CatalogCommand::AddServer {
                    id: *id,
                    addr: addr.clone(),
                },
            )
            .await?;
        }
    }
    Ok(())
}

async fn status(
    cluster: &Cluster,
    client: &mut RoutingClient,
    watch_secs: u64,
) -> Result<(), AdminFailure> {
    let seen = see(cluster, client).await?;
    let groups = cluster.groups;
    let rule = seen.rule(groups);
    let places = seen.places(groups);
    let voters = seen.voters(groups);
    let mut replicas: BTreeMap<NodeId, usize> = places.keys().map(|id| (*id, 0)).collect();
    let mut leaders: BTreeMap<NodeId, usize> = places.keys().map(|id| (*id, 0)).collect();
    for members in voters.values() {
        for id in members {
            *replicas.entry(*id).or_insert(0) += 1;
        }
    }
    for (group, (leader, _)) in &seen.led {
        if *group != CATALOG_GROUP && *group <= groups {
            *leaders.entry(*leader).or_insert(0) += 1;
        }
    }
    let up: Vec<NodeId> = places
        .iter()
        .filter(|(_, place)| place.state == ServerState::Up)
        .map(|(id, _)| *id)
        .collect();
    let band = if up.is_empty() {
        "no server is up".to_string()
    } else {
        let total: usize = voters.values().map(BTreeSet::len).sum();
        let balancer = balancer(rule)?;
        let (low, high) = balancer.band(total, up.len());
        let led: usize = up.iter().map(|id| leaders[id]).sum();
        let (led_low, led_high) = balancer.band(led, up.len());
        format!("band {low} to {high} replicas per up server, {led_low} to {led_high} leaders")
    };
    println!(
        "placement rule: {}{}; {band}",
        rule_line(rule),
        if seen.catalog.placement_rule().is_none() {
            " (none recorded: the groups' own count)"
        } else {
            ""
        }
    );
    println!(
        "{:<6} {:<9} {:<12} {:>8} {:>8}  address",
        "id", "state", "zone", "replicas", "leaders"
    );
    for (id, place) in &places {
        println!(
            "{:<6} {:<9} {:<12} {:>8} {:>8}  {}",
            id,
            state_word(place.state),
            place.zone.as_deref().unwrap_or("-"),
            replicas.get(id).copied().unwrap_or(0),
            leaders.get(id).copied().unwrap_or(0),
            seen.addrs.get(id).map_or("-", String::as_str)
        );
    }
    let recorded: BTreeMap<GroupId, ReplicaMove> =
        seen.catalog.moves().map(|m| (m.group, m)).collect();
    let mut moving = Vec::new();
    for group in 1..=groups {
        let view = seen.led.get(&group).map(|(_, view)| view);
        let under_way = view.is_some_and(|view| {
            view.change_pending
                || !view.membership.learners.is_empty()
                || view.membership.is_joint()
                || view.membership.voters.len() > rule.replicas
        });
        match (recorded.get(&group), view) {
            (Some(m), Some(view)) => moving.push(format!(
                "group {group}: {} -> {} ({})",
                m.from,
                m.to,
                move_phase(m, view)
            )),
            (Some(m), None) => moving.push(format!(
                "group {group}: {} -> {} (no leader seen)",
                m.from, m.to
            )),
            (None, Some(view)) if under_way => moving.push(format!(
                "group {group}: a change under way, not a recorded move (voters {:?}, learners {:?})",
                view.membership.voters, view.membership.learners
            )),
            _ => {}
        }
    }
    let in_flight: Vec<ReplicaMove> = recorded.values().copied().collect();
    let left = balancer(rule)?.moves_left_min(&places, &voters, &in_flight);
    if left > 0 {
        println!("moves left after those in flight: at least {left}");
    }
    if moving.is_empty() {
        println!("moves in flight: none");
    } else {
        println!("moves in flight: {}", moving.len());
        for line in moving {
            println!("  {line}");
        }
    }
    let unseen = (1..=groups).filter(|g| !seen.led.contains_key(g)).count();
    if unseen > 0 {
        println!("{unseen} of {groups} groups have no leader seen");
    }
    if watch_secs > 0 && !in_flight.is_empty() {
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        let (finished, seconds) = watch_moves(client, &in_flight, watch_secs).await?;
        println!(
            "time left: {} ({finished} moves finished in the {seconds:.1} s watched)",
            time_left(left + in_flight.len() - finished, finished, seconds)
        );
    }
    Ok(())
}

/// Most moves `cluster status` waits to see finish for its estimate.
const WATCH_FINISHED_ENOUGH: usize = 8;

/// Watches the catalog for up to `watch_secs` (less once
/// [`WATCH_FINISHED_ENOUGH`] have finished): how many of the moves
/// `in_flight` ended (done or undone), and the seconds watched. The
/// moves that start and end within the watch are not counted, so the rate
/// is a floor.
async fn watch_moves(
    client: &mut RoutingClient,
    in_flight: &[ReplicaMove],
    watch_secs: u64,
) -> Result<(usize, f64), AdminFailure> {
    let started = Instant::now();
    let limit = std::time::Duration::from_secs(watch_secs);
    let mut finished = 0;
    while started.elapsed() < limit && finished < WATCH_FINISHED_ENOUGH.min(in_flight.len()) {
        tokio::time::sleep(WATCH_PAUSE.min(limit.saturating_sub(started.elapsed()))).await;
        let catalog = read_catalog(client).await?;
        let recorded: BTreeSet<ReplicaMove> = catalog.moves().collect();
        finished = in_flight.iter().filter(|m| !recorded.contains(m)).count();
    }
    Ok((finished, started.elapsed().as_secs_f64()))
}

/// Pause between two readings of the catalog while `cluster status`
/// watches the moves: each reads the whole catalog (about 160 bytes a
/// group), so a few readings a watch, not one every few milliseconds.
const WATCH_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);

/// How far a move got in its group, in words.
fn move_phase(m: &ReplicaMove, view: &LedGroup) -> &'static str {
    let membership = &view.membership;
    if membership.is_learner(m.to) {
        if view.caught_up.contains(&m.to) {
            "target caught up"
        } else {
            "target catching up"
        }
    } else if membership.is_voter(m.to) && membership.contains(m.from) {
        "target votes, source to remove"
    } else if membership.is_voter(m.to) {
        "done"
    } else {
        "starting"
    }
}

async fn dry_run(cluster: &Cluster, client: &mut RoutingClient) -> Result<(), AdminFailure> {
    let seen = see(cluster, client).await?;
    let groups = cluster.groups;
    let unseen = (1..=groups).filter(|g| !seen.led.contains_key(g)).count();
    if unseen > 0 {
        return Err(format!(
            "{unseen} of {groups} groups have no leader seen: retry once they elected one"
        )
        .into());
    }
    let balancer = balancer(seen.rule(groups))?;
    let places = seen.places(groups);
    let in_flight: Vec<ReplicaMove> = seen.catalog.moves().collect();
    let planned = balancer
        .plan(&places, &seen.voters(groups), &in_flight)
        .map_err(|e| AdminFailure::from(e.to_string()))?;
    for m in &in_flight {
        println!("group {} from {} to {} (under way)", m.group, m.from, m.to);
    }
    for m in &planned {
        println!("group {} from {} to {}", m.group, m.from, m.to);
    }
    // Leaderships move once the replicas stand still.
    let transfers = if planned.is_empty() {
        seen.leader_plan(groups, &places, &balancer, &in_flight, &BTreeMap::new())?
    } else {
        Vec::new()
    };
    for t in &transfers {
        println!("group {} leadership from {} to {}", t.group, t.from, t.to);
    }
    if planned.is_empty() && in_flight.is_empty() && transfers.is_empty() {
        println!("balanced");
    }
    Ok(())
}

/// Makes `id` a member (a learner) of the catalog group if it is not
/// one: a server learns what it hosts from the catalog's log.
async fn ensure_catalog_member(client: &mut RoutingClient, id: NodeId) -> Result<(), AdminFailure> {
    if !members(client, CATALOG_GROUP)
        .await?
        .membership
        .contains(id)
    {
        change_quietly(client, CATALOG_GROUP, MembershipChange::AddLearner(id)).await?;
    }
    Ok(())
}

/// What rounds of moves keep from one to the next: the servers they
/// made catalog members (each asked once), the moves finished or undone
/// as stalled, the watch on moves whose targets learn, and when the
/// first round began.
struct Rounds {
    in_catalog: BTreeSet<NodeId>,
    moved: usize,
    /// Moves undone because their target stopped catching up.
    stalled: usize,
    /// Leadership transfers asked, per group.
    transfers_asked: BTreeMap<GroupId, u32>,
    stall: MoveStall,
    started: Instant,
}

impl Rounds {
    /// Rounds that undo a move whose target learns for `stall_after`
    /// without getting closer (zero: never).
    fn new(stall_after: Duration) -> Rounds {
        Rounds {
            in_catalog: BTreeSet::new(),
            moved: 0,
            stalled: 0,
            transfers_asked: BTreeMap::new(),
            stall: MoveStall::new(u64::try_from(stall_after.as_nanos()).unwrap_or(u64::MAX)),
            started: Instant::now(),
        }
    }

    /// The rounds' clock, for the stall watch.
    fn now_ns(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn seconds(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

/// How a round left the cluster.
enum Round {
    /// Nothing under way and nothing more to move.
    Done,
    /// Moves under way or waiting: this line says how many.
    Going(String),
}

/// Carries out moves round after round until nothing is left to move:
/// the balancer's moves (`only_from` None), or only those off server
/// `only_from` (a drain), for at most `time_max`; a move whose target
/// learns for `stall_after` without getting closer is undone.
async fn run_moves(
    cluster: &Cluster,
    client: &mut RoutingClient,
    only_from: Option<NodeId>,
    time_max: Duration,
    stall_after: Duration,
) -> Result<(), AdminFailure> {
    record_servers(cluster, client).await?;
    let mut rounds = Rounds::new(stall_after);
    let mut shown = String::new();
    let say = |line: String| println!("{line}");
    loop {
        if rounds.started.elapsed() > time_max {
            return Err(format!(
                "the moves did not finish in {time_max:?}; run the same command again \
                 to continue"
            )
            .into());
        }
        match move_round(cluster, client, only_from, &mut rounds, &say).await? {
            Round::Done => {
                println!(
                    "{} ({} moves{}, {:.1} s)",
                    match only_from {
                        Some(id) => format!("server {id} holds no replica"),
                        None => "balanced".to_string(),
                    },
                    rounds.moved,
                    match rounds.stalled {
                        0 => String::new(),
                        n => format!(", {n} undone as stalled"),
                    },
                    rounds.seconds()
                );
                return Ok(());
            }
            Round::Going(line) => {
                if line != shown {
                    println!("{line} ({:.1} s)", rounds.seconds());
                    shown = line;
                }
            }
        }
        tokio::time::sleep(ROUND_PAUSE).await;
    }
}

/// One round: every move under way one step further, then the next
/// moves recorded once every group is seen led. `say` gets a line per
/// move started or finished.
async fn move_round(
    cluster: &Cluster,
    client: &mut RoutingClient,
    only_from: Option<NodeId>,
    rounds: &mut Rounds,
    say: &(dyn Fn(String) + Sync),
) -> Result<Round, AdminFailure> {
    let groups = cluster.groups;
    let seen = see(cluster, client).await?;
    let balancer = balancer(seen.rule(groups))?;
    let places = seen.places(groups);
    let voters = seen.voters(groups);
    balancer
        .check_rule(&places)
        .map_err(|e| AdminFailure::from(e.to_string()))?;
    // Each move under way, one step further.
    let mut by_leader: BTreeMap<NodeId, Vec<(GroupId, MembershipChange)>> = BTreeMap::new();
    let under_way: Vec<ReplicaMove> = seen.catalog.moves().collect();
    rounds.stall.retain_under_way(&under_way);
    let now_ns = rounds.now_ns();
    let mut waiting = 0usize;
    for m in &under_way {
        let Some((leader, view)) = seen.led.get(&m.group) else {
            waiting += 1;
            continue;
        };
        let plan = ReplacePlan::new(m.from, m.to, 1).map_err(|e| e.to_string())?;
        let group_seen = ReplaceGroup {
            group: m.group,
            membership: &view.membership,
            change_pending: view.change_pending,
            new_caught_up: view.caught_up.contains(&m.to),
        };
        // A target drained or retired since the move began (perhaps
        // because it died) may never catch up: the move is undone while
        // the target only learns, and the balancer plans again.
        let target_up = places
            .get(&m.to)
            .is_some_and(|place| place.state == ServerState::Up);
        // One that stays up but gets no closer (hung, its disk full, cut
        // off one way) is undone the same way once it stalled.
        let stalled = if target_up && !view.membership.is_voter(m.to) {
            let mark = view
                .learner_marks
                .iter()
                .find(|(id, _)| *id == m.to)
                .map(|(_, mark)| *mark);
            rounds
                .stall
                .observe(*m, mark, view.caught_up.contains(&m.to), now_ns)
        } else {
            rounds.stall.forget(m);
            false
        };
        let step = plan.move_step(&group_seen, target_up && !stalled);
        // The target hosts the group only once the catalog assigns it
        // there. Asked whenever the catalog read this round lacks it, not
        // once per command: a move undone (which unassigns) and planned
        // again, or a learner added by a command that died before it
        // assigned, would otherwise wait for a host that never comes.
        let going_on = !matches!(step, None | Some(ReplaceStep::Done));
        if target_up && !stalled && going_on {
            if !rounds.in_catalog.contains(&m.to) {
                ensure_catalog_member(client, m.to).await?;
                rounds.in_catalog.insert(m.to);
            }
            if !seen.catalog.hosts(m.to, m.group) {
                catalog(
                    client,
                    CatalogCommand::Assign {
                        node: m.to,
                        groups: vec![(m.group, view.membership.voters.clone())],
                    },
                )
                .await?;
            }
        }
        match step {
            Some(ReplaceStep::Propose(change)) => {
                by_leader
                    .entry(*leader)
                    .or_default()
                    .push((m.group, change));
                waiting += 1;
            }
            Some(ReplaceStep::Wait(WaitReason::Blocked)) => {
                finish_move(client, m).await?;
                say(format!(
                    "group {}: the move from {} to {} cannot go on (the source is a \
                     witness); given up, move it by hand",
                    m.group, m.from, m.to
                ));
            }
            Some(ReplaceStep::Wait(_)) => waiting += 1,
            // Undone: the target left the group.
            Some(ReplaceStep::Done) if !view.membership.contains(m.to) => {
                if end_move(client, m, m.to).await? {
                    let why = if stalled {
                        rounds.stalled += 1;
                        format!(
                            "server {} got no closer to the group's log in {} s (is it \
                             running, and can the group's leader reach it?)",
                            m.to,
                            rounds.stall.stall_after_ns() / 1_000_000_000
                        )
                    } else {
                        format!("server {} is no longer up", m.to)
                    };
                    say(format!(
                        "group {}: the move from {} to {} undone: {why}",
                        m.group, m.from, m.to
                    ));
                }
            }
            // Done, or the group names neither server any more.
            Some(ReplaceStep::Done) | None => {
                if !end_move(client, m, m.from).await? {
                    continue;
                }
                rounds.moved += 1;
                say(format!(
                    "moved group {} from {} to {} ({:.1} s)",
                    m.group,
                    m.from,
                    m.to,
                    rounds.seconds()
                ));
            }
        }
    }
    send_changes(cluster, &seen.addrs, by_leader).await;
    // New moves, once every group is seen led.
    let unseen = (1..=groups).filter(|g| !seen.led.contains_key(g)).count();
    let mut planned = Vec::new();
    if unseen == 0 {
        planned = balancer
            .plan(&places, &voters, &under_way)
            .map_err(|e| AdminFailure::from(e.to_string()))?;
        if let Some(from) = only_from {
            planned.retain(|m| m.from == from);
        }
        // The catalog holds every move to the limits against the moves
        // it has, whoever recorded them: a move refused here was planned
        // beside another balancer's (a server's own, or a catalog leader
        // deposed a moment ago) and is planned again next round.
        // (Counted as planned all the same: the round is not the last.)
        let limits = Some(balancer.limits().moves());
        for m in &planned {
            let start = CatalogCommand::StartMove {
                replica: *m,
                limits,
            };
            match catalog_answer(client, start).await? {
                Ok(()) => say(format!(
                    "moving group {} from {} to {}",
                    m.group, m.from, m.to
                )),
                Err(reason) => say(format!(
                    "group {}: not moved from {} to {} this round: {reason}",
                    m.group, m.from, m.to
                )),
            }
        }
    }
    // Leaderships, once no replica moves (not in a drain: the moves
    // off the drained server take its leaderships with them).
    let mut transfers = Vec::new();
    if unseen == 0 && only_from.is_none() && planned.is_empty() {
        transfers = seen.leader_plan(
            groups,
            &places,
            &balancer,
            &under_way,
            &rounds.transfers_asked,
        )?;
        for t in &transfers {
            *rounds.transfers_asked.entry(t.group).or_insert(0) += 1;
            let Some(addr) = seen.addrs.get(&t.from) else {
                continue;
            };
            let Ok(mut leader) = cluster.one(t.from, addr) else {
                continue;
            };
            let asked = admin(&mut leader, t.group, AdminRequest::Transfer(t.to)).await;
            say(format!(
                "group {}: leadership from {} to {}{}",
                t.group,
                t.from,
                t.to,
                match asked {
                    Ok(_) => String::new(),
                    Err(e) => format!(" (refused: {e})"),
                }
            ));
        }
    }
    let done = match only_from {
        Some(id) => {
            unseen == 0
                && under_way.is_empty()
                && planned.is_empty()
                && seen.voters(groups).values().all(|voters| !voters.contains(&id))
                // The data groups' learners: a server joins the catalog
                // (group 0) as a learner too, which is no replica to move.
                && seen
                    .led
                    .iter()
                    .filter(|(group, _)| **group != CATALOG_GROUP && **group <= groups)
                    .all(|(_, (_, view))| !view.membership.learners.contains(&id))
        }
        None => unseen == 0 && under_way.is_empty() && planned.is_empty() && transfers.is_empty(),
    };
    if done {
        return Ok(Round::Done);
    }
    let in_flight: Vec<ReplicaMove> = under_way.iter().chain(&planned).copied().collect();
    let left = balancer.moves_left_min(&places, &voters, &in_flight) + in_flight.len();
    Ok(Round::Going(format!(
        "{} moves under way, {waiting} waiting on their groups, {unseen} groups without a \
         leader seen, {} leadership transfers asked; {}",
        under_way.len() + planned.len(),
        transfers.len(),
        time_left(left, rounds.moved, rounds.seconds())
    )))
}

/// Ends move `m` whose server `leaving` left its group: the catalog
/// stops assigning the group to `leaving` (first, so that a crash between
/// the two leaves the move to end again, not a stale assignment), then
/// the move ends. `false` if another balancer ended it first.
async fn end_move(
    client: &mut RoutingClient,
    m: &ReplicaMove,
    leaving: NodeId,
) -> Result<bool, AdminFailure> {
    let unassign = CatalogCommand::Unassign {
        node: leaving,
        groups: vec![m.group],
    };
    catalog(client, unassign).await?;
    finish_move(client, m).await
}

/// Ends move `m` in the catalog: `false` if it had ended already
/// (another balancer acting at once finished it first; the catalog then
/// holds no move of its group, or the group's next).
async fn finish_move(client: &mut RoutingClient, m: &ReplicaMove) -> Result<bool, AdminFailure> {
    let finish = CatalogCommand::FinishMove {
        group: m.group,
        ends: Some((m.from, m.to)),
    };
    Ok(catalog_answer(client, finish).await?.is_ok())
}

/// "at least N moves left", and the time they take at the rate of the
/// `moved` moves of the last `seconds`, once there is one.
fn time_left(left: usize, moved: usize, seconds: f64) -> String {
    if moved == 0 || seconds <= 0.0 {
        return format!("at least {left} moves left");
    }
    let left_seconds = left as f64 * seconds / moved as f64;
    format!("at least {left} moves left, about {left_seconds:.0} s at the rate so far")
}

/// Pause between two rounds of a server's own balancer while the
/// cluster is balanced (or this server does not lead the catalog).
const IDLE_ROUND_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);

/// A server's own balancer (`concord-node --balance`): while server `me`
/// (at `addr`) leads the catalog, it runs the rounds `concord-cli
/// cluster balance` runs, for as long as the server runs, so a server
/// added with `cluster add-server` fills and a drained one empties with
/// no command left running. Every server may run it: each round first
/// asks this server whether it leads the catalog, and only the leader
/// acts. Two leaders of overlapping terms may both act for a round; the
/// catalog refuses a second move of one group (one move per group), and
/// a move's steps are taken from the groups' own configurations, so a
/// step taken twice is refused or a no-op. `record_servers`: record the
/// servers of `cluster` in the catalog first (a server started with
/// `--join` does not: its `--peers` name itself before it was added).
pub async fn balance_while_leading(
    cluster: Cluster,
    me: NodeId,
    addr: String,
    record_servers_first: bool,
) {
    let mut rounds: Option<Rounds> = None;
    let mut shown = String::new();
    let say = |line: String| tracing::info!("balancer: {line}");
    let mut pause = IDLE_ROUND_PAUSE;
    loop {
        tokio::time::sleep(pause).await;
        pause = IDLE_ROUND_PAUSE;
        let leads = match cluster.one(me, &addr) {
            Ok(mut own) => members(&mut own, CATALOG_GROUP)
                .await
                .is_ok_and(|m| m.answered_by == me && m.leader == Some(me)),
            Err(_) => false,
        };
        if !leads {
            if rounds.take().is_some() {
                tracing::info!("balancer: this server no longer leads the catalog; stopped");
            }
            continue;
        }
        let Ok(mut client) = cluster.client(cluster.servers.clone()) else {
            continue;
        };
        if rounds.is_none() {
            if record_servers_first {
                if let Err(e) = record_servers(&cluster, &mut client).await {
                    tracing::warn!("balancer: cannot record the servers: {}", e.message);
                    continue;
                }
            }
            tracing::info!("balancer: this server leads the catalog; balancing");
            rounds = Some(Rounds::new(MOVE_STALL_DEFAULT));
        }
        let state = rounds.as_mut().expect("set above");
        match move_round(&cluster, &mut client, None, state, &say).await {
            Ok(Round::Done) => {
                if !shown.is_empty() {
                    tracing::info!("balancer: balanced ({} moves)", state.moved);
                    shown.clear();
                }
            }
            Ok(Round::Going(line)) => {
                if line != shown {
                    tracing::info!("balancer: {line}");
                    shown = line;
                }
                pause = ROUND_PAUSE;
            }
            Err(e) => tracing::warn!("balancer: a round failed: {}", e.message),
        }
    }
}

async fn add_server(
    cluster: &Cluster,
    client: &mut RoutingClient,
    id: NodeId,
    addr: &str,
    zone: Option<&str>,
) -> Result<(), AdminFailure> {
    if !concord::multi::is_server_address(addr) {
        return Err(format!("{addr:?} is not a HOST:PORT address").into());
    }
    if let Some(zone) = zone.filter(|zone| !concord::multi::is_zone_name(zone)) {
        return Err(format!(
            "zone {zone:?}: give 1 to {} letters, digits, '-', '.' or '_'",
            concord::multi::CATALOG_ZONE_BYTES_MAX
        )
        .into());
    }
    let recorded = read_catalog(client).await?;
    let in_use = recorded.has_server(id)
        || cluster.servers.contains_key(&id)
        || members(client, CATALOG_GROUP)
            .await?
            .membership
            .contains(id);
    if in_use {
        return Err(format!(
            "server id {id} is in use in this cluster (see `concord-cli cluster status`); give \
             the new server another id"
        )
        .into());
    }
    let addr_in_use = recorded
        .servers()
        .map(|(_, a)| a.to_string())
        .chain(cluster.servers.values().cloned())
        .any(|a| a == addr);
    if addr_in_use {
        return Err(format!("address {addr} is another server's already").into());
    }
    // It must run (started with --join) before anything is recorded.
    let mut probe = cluster.one(id, addr)?;
    if let Err(e) = admin(
        &mut probe,
        CATALOG_GROUP,
        AdminRequest::Led { groups_max: 0 },
    )
    .await
    {
        return Err(format!(
            "server {id} at {addr} does not answer ({e}); start it first with `concord-node \
             --join --id {id} --listen {addr} --groups {} ...` and run again",
            cluster.groups
        )
        .into());
    }
    record_servers(cluster, client).await?;
    catalog(
        client,
        CatalogCommand::AddServer {
            id,
            addr: addr.to_string(),
        },
    )
    .await?;
    if let Some(zone) = zone {
        catalog(
            client,
            CatalogCommand::SetZone {
                id,
                zone: Some(zone.to_string()),
            },
        )
        .await?;
    }
    ensure_catalog_member(client, id).await?;
    println!(
        "added server {id} at {addr}{}; it holds no replica yet: run `concord-cli cluster \
         balance` to move some to it",
        zone.map_or(String::new(), |zone| format!(" in zone {zone}"))
    );
    Ok(())
}

async fn drain(
    cluster: &Cluster,
    client: &mut RoutingClient,
    id: NodeId,
) -> Result<(), AdminFailure> {
    record_servers(cluster, client).await?;
    let seen = see(cluster, client).await?;
    known(&seen.catalog, id)?;
    let groups = cluster.groups;
    let mut places = seen.places(groups);
    let place = places.get_mut(&id).expect("a recorded server has a place");
    if place.state == ServerState::Retired {
        return Err(format!("server {id} is retired already").into());
    }
    place.state = ServerState::Draining;
    // Refused before anything is recorded: without it the rule cannot
    // hold (too few servers, or the last of a zone the rule needs).
    balancer(seen.rule(groups))?
        .check_rule(&places)
        .map_err(|e| AdminFailure::from(format!("cannot drain server {id}: {e}")))?;
    catalog(
        client,
        CatalogCommand::SetServerState {
            id,
            state: ServerState::Draining,
        },
    )
    .await?;
    println!("server {id} is draining: its replicas move to other servers");
    run_moves(
        cluster,
        client,
        Some(id),
        OPERATION_TIME_MAX,
        MOVE_STALL_DEFAULT,
    )
    .await?;
    println!("run `concord-cli cluster remove-server {id}` to retire it");
    Ok(())
}

async fn remove_server(
    cluster: &Cluster,
    client: &mut RoutingClient,
    id: NodeId,
) -> Result<(), AdminFailure> {
    record_servers(cluster, client).await?;
    let seen = see(cluster, client).await?;
    known(&seen.catalog, id)?;
    let groups = cluster.groups;
    let holding: Vec<GroupId> = seen
        .led
        .iter()
        .filter(|(group, (_, view))| {
            **group != CATALOG_GROUP && **group <= groups && view.membership.contains(id)
        })
        .map(|(group, _)| *group)
        .collect();
    if !holding.is_empty() {
        return Err(format!(
            "server {id} still holds replicas of {} groups ({holding:?}); run `concord-cli \
             cluster drain {id}` first",
            holding.len()
        )
        .into());
    }
    let unseen = (1..=groups).filter(|g| !seen.led.contains_key(g)).count();
    if unseen > 0 {
        return Err(format!(
            "{unseen} of {groups} groups have no leader seen, so whether server {id} holds a \
             replica of them is unknown; retry once they elected one"
        )
        .into());
    }
    // The catalog group keeps its voter count: a caught-up learner of it
    // that is up takes the place of the server leaving.
    let catalog_members = members(client, CATALOG_GROUP).await?;
    let catalog_view = seen.led.get(&CATALOG_GROUP).map(|(_, view)| view);
    if catalog_members.membership.is_voter(id) {
        let stand_in = catalog_members
            .membership
            .learners
            .iter()
            .copied()
            .find(|learner| {
                seen.catalog.place_of(*learner).state == ServerState::Up
                    && catalog_view.is_some_and(|view| view.caught_up.contains(learner))
            });
        if let Some(learner) = stand_in {
            change_quietly(
                client,
                CATALOG_GROUP,
                MembershipChange::PromoteLearner(learner),
            )
            .await?;
            println!("server {learner} votes in the catalog in place of server {id}");
        }
    }
    if members(client, CATALOG_GROUP)
        .await?
        .membership
        .contains(id)
    {
        change_quietly(client, CATALOG_GROUP, MembershipChange::Remove(id)).await?;
    }
    catalog(
        client,
        CatalogCommand::SetServerState {
            id,
            state: ServerState::Retired,
        },
    )
    .await?;
    println!("server {id} is retired: it holds no replica; stop it and delete its data directory");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use concord::Membership;

    fn led(group: GroupId, voters: &[NodeId]) -> (GroupId, (NodeId, LedGroup)) {
        let view = LedGroup {
            group,
            term: 1,
            membership: Membership::new(voters.iter().copied()),
            change_pending: false,
            caught_up: Vec::new(),
            preferred_leader: None,
            learner_marks: Vec::new(),
        };
        (group, (voters[0], view))
    }

    #[test]
    fn time_left_is_the_moves_left_at_the_rate_so_far() {
        assert_eq!(time_left(7, 0, 3.0), "at least 7 moves left");
        assert_eq!(
            time_left(10, 5, 20.0),
            "at least 10 moves left, about 40 s at the rate so far"
        );
    }

    #[test]
    fn without_a_recorded_rule_the_groups_own_count_is_the_rule() {
        let seen = Seen {
            catalog: Catalog::new(),
            led: [
                led(0, &[1, 2, 3, 4, 5]),
                led(1, &[1, 2, 3]),
                led(2, &[1, 2, 3, 4, 5]),
                led(3, &[2, 3, 4]),
            ]
            .into(),
            addrs: [(1, "127.0.0.1:7001".to_string())].into(),
        };
        // The catalog (group 0) does not count; a tie goes to more.
        assert_eq!(seen.rule(3).replicas, 3);
        assert_eq!(seen.rule(2).replicas, 5);
        assert_eq!(seen.rule(1).replicas, 3);
        assert!(!seen.rule(3).spread_zones);
        // Every server a group names or --servers lists has a place.
        assert_eq!(
            seen.places(3).keys().copied().collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5]
        );
        let empty = Seen {
            catalog: Catalog::new(),
            led: BTreeMap::new(),
            addrs: BTreeMap::new(),
        };
        assert_eq!(empty.rule(8).replicas, REPLICAS_DEFAULT);
    }

    #[test]
    fn a_move_phase_follows_the_configuration() {
        let m = ReplicaMove {
            group: 1,
            from: 1,
            to: 4,
        };
        let (_, (_, mut view)) = led(1, &[1, 2, 3]);
        assert_eq!(move_phase(&m, &view), "starting");
        view.membership = view
            .membership
            .apply_change(MembershipChange::AddLearner(4))
            .unwrap();
        assert_eq!(move_phase(&m, &view), "target catching up");
        view.caught_up.push(4);
        assert_eq!(move_phase(&m, &view), "target caught up");
        view.membership = view
            .membership
            .apply_change(MembershipChange::PromoteLearner(4))
            .unwrap();
        assert_eq!(move_phase(&m, &view), "target votes, source to remove");
        if view.membership.is_joint() {
            view.membership = view
                .membership
                .apply_change(MembershipChange::LeaveJoint)
                .unwrap();
        }
        view.membership = view
            .membership
            .apply_change(MembershipChange::Remove(1))
            .unwrap();
        if view.membership.is_joint() {
            view.membership = view
                .membership
                .apply_change(MembershipChange::LeaveJoint)
                .unwrap();
        }
        assert_eq!(move_phase(&m, &view), "done");
    }
}
