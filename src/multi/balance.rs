//! Where each group's replicas should live: a deterministic balancer,
//! sans-IO, that turns the cluster's servers, its placement rule and each
//! group's voters into the next few replica moves.
//!
//! Every server deciding from the same catalog state decides the same
//! moves (inputs are ordered maps; ties go to the lower id), so only the
//! catalog's leader needs to act and a new leader resumes without handing
//! anything over. Moves come in two kinds, in this order:
//!
//! 1. **Evacuation**: a replica on a server that is not [`ServerState::Up`]
//!    (draining or retired) moves to an up server.
//! 2. **Balance**: while the most loaded up server holds more than the
//!    band's top (`mean × (100 + band_percent) / 100`, rounded up) or the
//!    least loaded fewer than its bottom (rounded down), one replica moves
//!    from the most to the least loaded.
//!
//! Every target is an up server that does not hold the group yet and, when
//! the rule spreads zones, whose zone no other replica of the group uses.
//! A plan never holds more than [`BalanceLimits::moves_max`] moves in
//! flight, nor more than [`BalanceLimits::moves_per_server_max`] touching
//! one server (as source or target): each move streams a snapshot. A group
//! with a move in flight gets no second one.
//!
//! A move is carried out like a replacement of one server in one group
//! ([`ReplacePlan`](super::ReplacePlan)): the target joins as a learner,
//! catches up, becomes a voter, and only then is the source removed, so a
//! group never has fewer voters than its rule asks for while it moves.

use std::collections::{BTreeMap, BTreeSet};

use thiserror::Error;

use super::{GroupId, MultiPlantedBugs};
use crate::NodeId;

/// Most servers a balancer plans over.
pub const BALANCE_SERVERS_MAX: usize = 1024;

/// Most replicas a group's rule may ask for.
pub const BALANCE_REPLICAS_MAX: usize = 7;

/// A server's part in placement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ServerState {
    /// Takes replicas.
    Up,
    /// Gives every replica away, takes none.
    Draining,
    /// Gone for good: its replicas move away like a draining server's.
    Retired,
}

/// A server as the balancer sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerPlace {
    /// Whether it takes or gives replicas.
    pub state: ServerState,
    /// Its zone, if the operator named one.
    pub zone: Option<String>,
}

/// What every group's replicas must satisfy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlacementRule {
    /// Replicas (voters) of each group.
    pub replicas: usize,
    /// No two replicas of a group in one zone (servers without a zone
    /// count as one zone each).
    pub spread_zones: bool,
}

/// How far, and how fast, the balancer moves replicas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BalanceLimits {
    /// Width of the band around the mean replica count, in percent.
    pub band_percent: u32,
    /// Most moves in flight cluster-wide.
    pub moves_max: usize,
    /// Most moves in flight touching one server.
    pub moves_per_server_max: usize,
    /// Most leadership transfers one plan asks for
    /// ([`Balancer::plan_leaders`]).
    pub leader_transfers_max: usize,
}

impl BalanceLimits {
    /// The limits on moves in flight, as a balancer hands them to the
    /// catalog with each move it records ([`CatalogCommand::StartMove`]):
    /// the catalog holds the moves of every balancer to them, so two
    /// balancers acting at once (the old and the new catalog leader, or
    /// a server's own balancer and `concord-cli cluster balance`) cannot
    /// exceed them together.
    ///
    /// [`CatalogCommand::StartMove`]: super::CatalogCommand::StartMove
    pub fn moves(&self) -> MoveLimits {
        MoveLimits {
            moves_max: self.moves_max,
            moves_per_server_max: self.moves_per_server_max,
        }
    }
}

/// The most moves in flight the catalog records
/// ([`BalanceLimits::moves`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MoveLimits {
    /// Most moves in flight cluster-wide.
    pub moves_max: usize,
    /// Most moves in flight touching one server (as source or target).
    pub moves_per_server_max: usize,
}

impl Default for BalanceLimits {
    fn default() -> Self {
        BalanceLimits {
            band_percent: 10,
            moves_max: 16,
            moves_per_server_max: 2,
            leader_transfers_max: 16,
        }
    }
}

/// One replica of one group moving from one server to another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ReplicaMove {
    /// The group.
    pub group: GroupId,
    /// The server giving the replica up.
    pub from: NodeId,
    /// The server taking it.
    pub to: NodeId,
}

/// Why the balancer refused to plan; nothing should move.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum BalanceError {
    /// Fewer up servers (or zones) than the rule's replicas.
    #[error(
        "the placement rule needs {needed} {what} for {replicas} replicas of every group, \
         but only {have} are up; add servers (or zones) or lower the replica count"
    )]
    RuleUnmet {
        /// "servers" or "zones".
        what: &'static str,
        /// How many the rule needs.
        needed: usize,
        /// How many there are.
        have: usize,
        /// The rule's replicas.
        replicas: usize,
    },
    /// The inputs are out of the balancer's bounds or inconsistent.
    #[error("cannot plan: {0}")]
    Invalid(String),
}

/// The balancer: a placement rule and limits. It evacuates servers that
/// are not up, then moves replicas from the most to the least loaded up
/// servers until each is within the band; every target holds no replica
/// of the group yet and, when the rule spreads zones, shares no zone with
/// the group's other replicas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Balancer {
    rule: PlacementRule,
    limits: BalanceLimits,
    planted: MultiPlantedBugs,
}

impl Balancer {
    /// A balancer for `rule` within `limits`.
    pub fn new(rule: PlacementRule, limits: BalanceLimits) -> Result<Balancer, BalanceError> {
        if rule.replicas == 0 || rule.replicas > BALANCE_REPLICAS_MAX {
            return Err(BalanceError::Invalid(format!(
                "replicas {} outside 1..={BALANCE_REPLICAS_MAX}",
                rule.replicas
            )));
        }
        if limits.moves_max == 0
            || limits.moves_per_server_max == 0
            || limits.leader_transfers_max == 0
        {
            return Err(BalanceError::Invalid(
                "move limits must be at least 1".to_string(),
            ));
        }
        Ok(Balancer {
            rule,
            limits,
            planted: MultiPlantedBugs::NONE,
        })
    }

    /// The rule it places by.
    pub fn rule(&self) -> PlacementRule {
        self.rule
    }

    /// The limits it moves within.
    pub fn limits(&self) -> BalanceLimits {
        self.limits
    }

    /// Plants deliberate mistakes (feature `planted-bugs`; the
    /// simulator's table of planted mistakes).
    #[doc(hidden)]
    pub fn plant_bugs(&mut self, bugs: MultiPlantedBugs) {
        self.planted = bugs;
    }

    pub(super) fn planted(&self) -> MultiPlantedBugs {
        self.planted.in_force()
    }

    /// Checks that `servers` can hold the rule at all: enough up servers,
    /// and enough zones among them when the rule spreads zones.
    pub fn check_rule(&self, servers: &BTreeMap<NodeId, ServerPlace>) -> Result<(), BalanceError> {
        let up: Vec<&ServerPlace> = servers
            .values()
            .filter(|place| place.state == ServerState::Up)
            .collect();
        if up.len() < self.rule.replicas {
            return Err(BalanceError::RuleUnmet {
                what: "servers",
                needed: self.rule.replicas,
                have: up.len(),
                replicas: self.rule.replicas,
            });
        }
        if self.rule.spread_zones {
            let zones = zone_count(servers.iter().filter(|(_, p)| p.state == ServerState::Up));
            if zones < self.rule.replicas {
                return Err(BalanceError::RuleUnmet {
                    what: "zones",
                    needed: self.rule.replicas,
                    have: zones,
                    replicas: self.rule.replicas,
                });
            }
        }
        Ok(())
    }

    /// The moves to start now, given the servers, each group's voters and
    /// the moves already in flight (their groups, sources and targets
    /// count against the limits and get nothing more). Empty when the
    /// cluster is within the band and nothing needs evacuating, or when
    /// the limits are used up.
    pub fn plan(
        &self,
        servers: &BTreeMap<NodeId, ServerPlace>,
        groups: &BTreeMap<GroupId, BTreeSet<NodeId>>,
        in_flight: &[ReplicaMove],
    ) -> Result<Vec<ReplicaMove>, BalanceError> {
        if servers.len() > BALANCE_SERVERS_MAX {
            return Err(BalanceError::Invalid(format!(
                "{} servers, more than {BALANCE_SERVERS_MAX}",
                servers.len()
            )));
        }
        self.check_rule(servers)?;
        for (group, voters) in groups {
            if let Some(unknown) = voters.iter().find(|id| !servers.contains_key(id)) {
                return Err(BalanceError::Invalid(format!(
                    "group {group} names server {unknown}, which the cluster does not have"
                )));
            }
        }
        // The planted mistake: a balancer that never read the moves in
        // flight.
        let in_flight = if self.planted().balance_ignores_in_flight {
            &[]
        } else {
            in_flight
        };
        let mut state = PlanState::new(self, servers, groups, in_flight);
        // Evacuation first: a draining server's replicas are the operator's
        // request, balance only an optimisation.
        for (&group, voters) in groups {
            for &from in voters {
                if servers[&from].state != ServerState::Up {
                    state.try_move(group, from, |_| true);
                }
            }
        }
        state.balance();
        let planned = state.planned;
        assert!(planned.is_empty() || planned.len() + in_flight.len() <= self.limits.moves_max);
        Ok(planned)
    }

    /// A lower bound on the replica moves still needed, the moves in
    /// flight counted as done: every replica on a server that is not up
    /// moves once, and every replica above the band's top (or missing
    /// below its bottom, beyond what the evacuated replicas fill) moves
    /// once. For a time-left estimate: the balancer needs at least this
    /// many more moves, often exactly this many.
    pub fn moves_left_min(
        &self,
        servers: &BTreeMap<NodeId, ServerPlace>,
        groups: &BTreeMap<GroupId, BTreeSet<NodeId>>,
        in_flight: &[ReplicaMove],
    ) -> usize {
        let mut load: BTreeMap<NodeId, usize> = servers.keys().map(|id| (*id, 0)).collect();
        let moved: BTreeMap<GroupId, &ReplicaMove> =
            in_flight.iter().map(|m| (m.group, m)).collect();
        for (group, voters) in groups {
            for id in voters {
                let id = match moved.get(group) {
                    Some(m) if m.from == *id => m.to,
                    _ => *id,
                };
                *load.entry(id).or_insert(0) += 1;
            }
        }
        let up = |id: &NodeId| servers.get(id).is_some_and(|p| p.state == ServerState::Up);
        let evacuated: usize = load.iter().filter(|(id, _)| !up(id)).map(|(_, n)| n).sum();
        let up_loads: Vec<usize> = load
            .iter()
            .filter(|(id, _)| up(id))
            .map(|(_, n)| *n)
            .collect();
        if up_loads.is_empty() {
            return evacuated;
        }
        let total: usize = up_loads.iter().sum::<usize>() + evacuated;
        let (low, high) = self.band(total, up_loads.len());
        let excess: usize = up_loads.iter().map(|n| n.saturating_sub(high)).sum();
        let deficit: usize = up_loads.iter().map(|n| low.saturating_sub(*n)).sum();
        evacuated + excess.max(deficit.saturating_sub(evacuated))
    }

    /// The band of replica counts an up server may hold: `(low, high)`,
    /// for `replicas_total` replicas over `up_servers` servers.
    pub fn band(&self, replicas_total: usize, up_servers: usize) -> (usize, usize) {
        assert!(up_servers > 0, "a band needs an up server");
        let scale = 100 * up_servers as u64;
        let total = replicas_total as u64;
        let low = total * u64::from(100u32.saturating_sub(self.limits.band_percent)) / scale;
        let high = (total * u64::from(100 + self.limits.band_percent)).div_ceil(scale);
        (low as usize, high as usize)
    }
}

/// Distinct zones among `servers` (a server without a zone is its own).
fn zone_count<'a>(servers: impl Iterator<Item = (&'a NodeId, &'a ServerPlace)>) -> usize {
    let mut zones = BTreeSet::new();
    let mut unzoned = 0;
    for (_, place) in servers {
        match &place.zone {
            Some(zone) => {
                zones.insert(zone.as_str());
            }
            None => unzoned += 1,
        }
    }
    zones.len() + unzoned
}

/// The counts a plan updates as it adds moves.
struct PlanState<'a> {
    balancer: &'a Balancer,
    servers: &'a BTreeMap<NodeId, ServerPlace>,
    /// Each group's replicas as the caller gave them.
    groups: &'a BTreeMap<GroupId, BTreeSet<NodeId>>,
    /// The groups a move in flight or planned changes, with their
    /// replicas once every move is done (an overlay on `groups`: a
    /// million groups are not copied for a few moves).
    changed: BTreeMap<GroupId, BTreeSet<NodeId>>,
    /// Replicas per up server, after the moves.
    load: BTreeMap<NodeId, usize>,
    /// Moves touching each server, in flight or planned.
    busy: BTreeMap<NodeId, usize>,
    /// Groups with a move in flight or planned.
    moving: BTreeSet<GroupId>,
    moves: usize,
    planned: Vec<ReplicaMove>,
}

impl<'a> PlanState<'a> {
    fn new(
        balancer: &'a Balancer,
        servers: &'a BTreeMap<NodeId, ServerPlace>,
        groups: &'a BTreeMap<GroupId, BTreeSet<NodeId>>,
        in_flight: &[ReplicaMove],
    ) -> PlanState<'a> {
        let mut changed: BTreeMap<GroupId, BTreeSet<NodeId>> = BTreeMap::new();
        let mut busy = BTreeMap::new();
        let mut moving = BTreeSet::new();
        for m in in_flight {
            // Count the move as done: its target will hold the replica.
            if let Some(voters) = groups.get(&m.group) {
                let voters = changed.entry(m.group).or_insert_with(|| voters.clone());
                voters.remove(&m.from);
                voters.insert(m.to);
            }
            *busy.entry(m.from).or_insert(0) += 1;
            *busy.entry(m.to).or_insert(0) += 1;
            moving.insert(m.group);
        }
        let mut load: BTreeMap<NodeId, usize> = servers
            .iter()
            .filter(|(_, place)| place.state == ServerState::Up)
            .map(|(&id, _)| (id, 0))
            .collect();
        for (group, voters) in groups {
            for id in changed.get(group).unwrap_or(voters) {
                if let Some(count) = load.get_mut(id) {
                    *count += 1;
                }
            }
        }
        PlanState {
            balancer,
            servers,
            groups,
            changed,
            load,
            busy,
            moving,
            moves: in_flight.len(),
            planned: Vec::new(),
        }
    }

    /// Group `group`'s replicas once every move is done.
    fn voters(&self, group: GroupId) -> &BTreeSet<NodeId> {
        self.changed
            .get(&group)
            .unwrap_or_else(|| &self.groups[&group])
    }

    fn room(&self, server: NodeId) -> bool {
        self.busy.get(&server).copied().unwrap_or(0) < self.balancer.limits.moves_per_server_max
    }

    fn full(&self) -> bool {
        self.moves >= self.balancer.limits.moves_max
    }

    /// Whether `to` may take a replica of `group` in place of `from`.
    fn fits(&self, group: GroupId, from: NodeId, to: NodeId) -> bool {
        let voters = self.voters(group);
        if self.servers[&to].state != ServerState::Up || voters.contains(&to) || !self.room(to) {
            return false;
        }
        if !self.balancer.rule.spread_zones || self.balancer.planted().balance_ignores_zones {
            return true;
        }
        match &self.servers[&to].zone {
            None => true,
            Some(zone) => !voters
                .iter()
                .filter(|&&id| id != from)
                .any(|id| self.servers[id].zone.as_deref() == Some(zone.as_str())),
        }
    }

    /// Moves `group`'s replica off `from` to the least loaded server that
    /// fits and whose load `accept` allows; false if none could.
    fn try_move(&mut self, group: GroupId, from: NodeId, accept: impl Fn(usize) -> bool) -> bool {
        if self.full() || self.moving.contains(&group) || !self.room(from) {
            return false;
        }
        let target = self
            .load
            .iter()
            .filter(|&(&to, &load)| self.fits(group, from, to) && accept(load))
            .min_by_key(|&(&to, &load)| (load, to))
            .map(|(&to, _)| to);
        let Some(to) = target else {
            return false;
        };
        let base = self.groups.get(&group).expect("planned groups exist");
        let voters = self.changed.entry(group).or_insert_with(|| base.clone());
        // The group keeps its replica count: the source held it, the
        // target (which `fits` checked) did not.
        assert!(
            voters.remove(&from) && voters.insert(to),
            "group {group}: moving {from} -> {to}"
        );
        if let Some(count) = self.load.get_mut(&from) {
            *count -= 1;
        }
        *self.load.get_mut(&to).expect("targets are up servers") += 1;
        *self.busy.entry(from).or_insert(0) += 1;
        *self.busy.entry(to).or_insert(0) += 1;
        self.moving.insert(group);
        self.moves += 1;
        self.planned.push(ReplicaMove { group, from, to });
        true
    }

    /// Moves replicas from the most to the least loaded up servers until
    /// every one is within the band or no move narrows the spread (a
    /// server whose replicas the zone rule pins keeps them; the next most
    /// loaded gives instead).
    fn balance(&mut self) {
        let total: usize = self.load.values().sum();
        let (low, high) = self.balancer.band(total, self.load.len());
        // Each server's groups, once: a pass looks at its sources' groups
        // only, not at every group for every source (a round over a
        // million groups took seconds that way). Moves planned since are
        // seen through `voters`.
        let mut on_server: BTreeMap<NodeId, Vec<GroupId>> = BTreeMap::new();
        for &group in self.groups.keys() {
            for &id in self.voters(group) {
                on_server.entry(id).or_default().push(group);
            }
        }
        // Each pass moves one replica or stops: at most one move per
        // replica, so this ends.
        for _ in 0..=total {
            if self.full() {
                return;
            }
            let least_load = *self
                .load
                .values()
                .min()
                .expect("the rule needs an up server");
            let mut sources: Vec<(usize, NodeId)> =
                self.load.iter().map(|(&id, &load)| (load, id)).collect();
            sources.sort_by_key(|&(load, id)| (std::cmp::Reverse(load), id));
            if sources[0].0 <= high && least_load >= low {
                return;
            }
            let mut moved = false;
            for (source_load, source) in sources {
                // A move must narrow the spread: its target ends below the
                // source's load.
                if source_load <= least_load + 1 {
                    break;
                }
                if !self.room(source) {
                    // Every move off it would be refused.
                    continue;
                }
                // No server could take one of its replicas (full of
                // moves, or loaded too): then none could take one of a
                // less loaded source's either. Without this, a round with
                // the targets' limits used up tried every group of every
                // source against every server (15 s for a million groups).
                let any_target = self
                    .load
                    .iter()
                    .any(|(&to, &load)| to != source && load + 1 < source_load && self.room(to));
                if !any_target {
                    break;
                }
                let candidates: Vec<GroupId> = on_server
                    .get(&source)
                    .map(|groups| {
                        groups
                            .iter()
                            .copied()
                            .filter(|group| {
                                !self.moving.contains(group)
                                    && self.voters(*group).contains(&source)
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                moved = candidates
                    .into_iter()
                    .any(|group| self.try_move(group, source, |load| load + 1 < source_load));
                if moved {
                    break;
                }
            }
            if !moved {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(zone: Option<&str>) -> ServerPlace {
        ServerPlace {
            state: ServerState::Up,
            zone: zone.map(str::to_string),
        }
    }

    fn servers(count: u64) -> BTreeMap<NodeId, ServerPlace> {
        (1..=count).map(|id| (id, up(None))).collect()
    }

    /// `count` groups of `replicas` on servers `1..=first_servers`, spread
    /// round-robin.
    fn groups(
        count: u64,
        replicas: u64,
        first_servers: u64,
    ) -> BTreeMap<GroupId, BTreeSet<NodeId>> {
        (1..=count)
            .map(|group| {
                let voters = (0..replicas)
                    .map(|r| (group + r) % first_servers + 1)
                    .collect();
                (group, voters)
            })
            .collect()
    }

    fn rule(replicas: usize, spread_zones: bool) -> PlacementRule {
        PlacementRule {
            replicas,
            spread_zones,
        }
    }

    /// Plans and completes moves round after round until the plan is
    /// empty; checks every round's limits and every group's replica count
    /// and zones; returns the rounds taken.
    fn run_to_rest(
        balancer: &Balancer,
        servers: &BTreeMap<NodeId, ServerPlace>,
        groups: &mut BTreeMap<GroupId, BTreeSet<NodeId>>,
    ) -> usize {
        let replicas = balancer.rule.replicas;
        for round in 1..=10_000 {
            let moves = balancer.plan(servers, groups, &[]).unwrap();
            if moves.is_empty() {
                return round - 1;
            }
            assert!(moves.len() <= balancer.limits.moves_max);
            let mut touching: BTreeMap<NodeId, usize> = BTreeMap::new();
            let mut seen_groups = BTreeSet::new();
            for m in &moves {
                *touching.entry(m.from).or_default() += 1;
                *touching.entry(m.to).or_default() += 1;
                assert!(
                    seen_groups.insert(m.group),
                    "two moves of group {}",
                    m.group
                );
                assert_eq!(servers[&m.to].state, ServerState::Up);
                let voters = groups.get_mut(&m.group).unwrap();
                assert!(
                    voters.remove(&m.from) && voters.insert(m.to),
                    "{m:?} on {voters:?}"
                );
                assert_eq!(voters.len(), replicas);
                if balancer.rule.spread_zones {
                    let zones: BTreeSet<_> = voters.iter().map(|id| &servers[id].zone).collect();
                    assert_eq!(zones.len(), replicas, "group {} shares a zone", m.group);
                }
            }
            assert!(touching
                .values()
                .all(|&n| n <= balancer.limits.moves_per_server_max));
        }
        panic!("no rest after 10,000 rounds");
    }

    fn loads(
        servers: &BTreeMap<NodeId, ServerPlace>,
        groups: &BTreeMap<GroupId, BTreeSet<NodeId>>,
    ) -> BTreeMap<NodeId, usize> {
        let mut load: BTreeMap<NodeId, usize> = servers.keys().map(|&id| (id, 0)).collect();
        for voters in groups.values() {
            for id in voters {
                *load.get_mut(id).unwrap() += 1;
            }
        }
        load
    }

    #[test]
    fn a_new_server_takes_its_share_within_the_band() {
        let balancer = Balancer::new(rule(3, false), BalanceLimits::default()).unwrap();
        let all = servers(4);
        let mut placed = groups(64, 3, 3);
        let rounds = run_to_rest(&balancer, &all, &mut placed);
        let load = loads(&all, &placed);
        let (low, high) = balancer.band(64 * 3, 4);
        assert!(
            load.values().all(|&n| (low..=high).contains(&n)),
            "{load:?} not in {low}..={high}"
        );
        assert!(load[&4] >= low && rounds > 0, "{load:?}");
    }

    #[test]
    fn a_draining_server_ends_with_nothing_and_nothing_lands_on_it() {
        let balancer = Balancer::new(rule(3, false), BalanceLimits::default()).unwrap();
        let mut all = servers(5);
        let mut placed = groups(40, 3, 5);
        all.get_mut(&2).unwrap().state = ServerState::Draining;
        run_to_rest(&balancer, &all, &mut placed);
        assert!(placed.values().all(|voters| !voters.contains(&2)));
        let load = loads(&all, &placed);
        let (low, high) = balancer.band(40 * 3, 4);
        for (id, n) in load {
            if id != 2 {
                assert!(
                    (low..=high).contains(&n),
                    "server {id}: {n} not in {low}..={high}"
                );
            }
        }
    }

    #[test]
    fn zones_are_kept_apart_while_balancing() {
        let balancer = Balancer::new(rule(3, true), BalanceLimits::default()).unwrap();
        // Zone c has one server: its replicas cannot move. New servers 4
        // and 5 share zones a and b with servers 1 and 2, so a replica may
        // only move 1 -> 4 or 2 -> 5.
        let zones = ["a", "b", "c", "a", "b"];
        let all: BTreeMap<NodeId, ServerPlace> = zones
            .iter()
            .enumerate()
            .map(|(i, zone)| (i as NodeId + 1, up(Some(zone))))
            .collect();
        let mut placed: BTreeMap<GroupId, BTreeSet<NodeId>> = (1..=30)
            .map(|group| (group, BTreeSet::from([1, 2, 3])))
            .collect();
        run_to_rest(&balancer, &all, &mut placed);
        let load = loads(&all, &placed);
        assert_eq!(load[&3], 30, "{load:?}");
        assert!(load[&4] >= 10 && load[&5] >= 10, "{load:?}");
        assert_eq!(load[&1] + load[&4], 30);
        assert_eq!(load[&2] + load[&5], 30);
    }

    /// Moves the balancer makes until it rests, applied as planned.
    fn moves_to_rest(
        balancer: &Balancer,
        servers: &BTreeMap<NodeId, ServerPlace>,
        groups: &mut BTreeMap<GroupId, BTreeSet<NodeId>>,
    ) -> usize {
        let mut moved = 0;
        loop {
            let moves = balancer.plan(servers, groups, &[]).unwrap();
            if moves.is_empty() {
                return moved;
            }
            for m in &moves {
                let voters = groups.get_mut(&m.group).unwrap();
                assert!(voters.remove(&m.from) && voters.insert(m.to));
            }
            moved += moves.len();
        }
    }

    #[test]
    fn moves_left_min_never_exceeds_the_moves_the_balancer_makes() {
        let balancer = Balancer::new(rule(3, false), BalanceLimits::default()).unwrap();
        // Grow 3 -> 5 servers, then drain server 1.
        let mut all = servers(5);
        let mut placed = groups(100, 3, 3);
        let left = balancer.moves_left_min(&all, &placed, &[]);
        let made = moves_to_rest(&balancer, &all, &mut placed);
        assert!(left > 0 && left <= made, "at least {left}, made {made}");
        assert_eq!(balancer.moves_left_min(&all, &placed, &[]), 0);
        all.get_mut(&1).unwrap().state = ServerState::Draining;
        let on_1 = placed.values().filter(|v| v.contains(&1)).count();
        let left = balancer.moves_left_min(&all, &placed, &[]);
        assert!(left >= on_1, "at least {left}, {on_1} on server 1");
        let made = moves_to_rest(&balancer, &all, &mut placed);
        assert!(left <= made, "at least {left}, made {made}");
    }

    #[test]
    fn limits_hold_with_moves_in_flight() {
        let limits = BalanceLimits {
            band_percent: 10,
            moves_max: 3,
            moves_per_server_max: 1,
            ..BalanceLimits::default()
        };
        let balancer = Balancer::new(rule(3, false), limits).unwrap();
        let all = servers(6);
        let placed = groups(60, 3, 3);
        let in_flight = [ReplicaMove {
            group: 1,
            from: 2,
            to: 4,
        }];
        let moves = balancer.plan(&all, &placed, &in_flight).unwrap();
        assert!(moves.len() <= 2, "{moves:?}");
        assert!(moves
            .iter()
            .all(|m| m.group != 1 && ![m.from, m.to].iter().any(|s| [2, 4].contains(s))));
    }

    #[test]
    fn an_unmeetable_rule_is_refused_and_nothing_moves() {
        let balancer = Balancer::new(rule(3, false), BalanceLimits::default()).unwrap();
        let mut all = servers(3);
        all.get_mut(&3).unwrap().state = ServerState::Draining;
        let err = balancer.plan(&all, &groups(4, 3, 3), &[]).unwrap_err();
        assert!(
            err.to_string().contains("needs 3 servers") && err.to_string().contains("only 2"),
            "{err}"
        );
        let zoned = Balancer::new(rule(3, true), BalanceLimits::default()).unwrap();
        let two_zones: BTreeMap<NodeId, ServerPlace> =
            [(1, up(Some("a"))), (2, up(Some("a"))), (3, up(Some("b")))]
                .into_iter()
                .collect();
        let err = zoned.plan(&two_zones, &groups(4, 3, 3), &[]).unwrap_err();
        assert!(
            matches!(
                err,
                BalanceError::RuleUnmet {
                    what: "zones",
                    have: 2,
                    ..
                }
            ),
            "{err}"
        );
        assert!(Balancer::new(rule(0, false), BalanceLimits::default()).is_err());
    }

    #[test]
    fn the_plan_depends_on_the_state_alone() {
        let balancer = Balancer::new(rule(3, false), BalanceLimits::default()).unwrap();
        let all = servers(5);
        let placed = groups(50, 3, 3);
        let reversed: BTreeMap<GroupId, BTreeSet<NodeId>> =
            placed.iter().rev().map(|(g, v)| (*g, v.clone())).collect();
        assert_eq!(
            balancer.plan(&all, &placed, &[]).unwrap(),
            balancer.plan(&all, &reversed, &[]).unwrap()
        );
    }
}
