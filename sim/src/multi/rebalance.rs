//! Grow, shrink and rebalance under the fault swarm: the balancer a
//! catalog leader runs ([`concord::multi::Balancer`]), driven from what
//! the groups' leaders hold, its moves carried out during the chaos.
//!
//! A seed of four or more nodes that draws membership draws a rebalance
//! two times in five (then no replace and no per-group changes): a
//! placement rule (three replicas; zones spread or not, each server in
//! one of three zones), the balancer's limits, a server that joins late
//! (not up until a drawn time: the balancer first moves every replica
//! off it, then onto it, as a server added to a running cluster fills),
//! and, on five or more nodes, a server drained at a drawn time (up to
//! then). Every round the driver, as the catalog leader, plans from
//! every group's voters at its leader and the moves in flight, and steps
//! each move as a one-group replace ([`concord::multi::ReplacePlan`]):
//! the target joins as a learner, catches up, becomes a voter, and only
//! then is the source removed.
//!
//! Checks:
//!
//! * `replace-rule`, every round: a group whose leader shows a move's
//!   source gone while the source had been a voter must show its target
//!   a voter.
//! * `move-limits`, every round: at most one move per group, no more in
//!   flight than the limits allow cluster-wide and per server.
//! * `zone-rule`, at every move's end when the rule spreads zones: the
//!   move did not add a zone shared by two of the group's replicas.
//! * `membership-liveness`, after the heal: the balancer reaches a fixed
//!   point (nothing in flight, nothing more to plan) with progress at
//!   least every liveness bound; and `balance-band` there: without zones,
//!   every up server holds a replica count within the band or the spread
//!   is at most one replica (a correct balancer always finds a move
//!   otherwise).

use std::collections::{BTreeMap, BTreeSet};

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use concord::multi::{
    BalanceLimits, Balancer, GroupId, PlacementRule, ReplaceGroup, ReplacePlan, ReplaceStep,
    ReplicaMove, ServerPlace, ServerState,
};
use concord::{Membership, MembershipChange, NodeId};

use super::config::MultiSimConfig;
use super::engine::{MultiSim, Phase};
use super::report::MultiCheck;

/// Zones servers are spread over when the rule spreads zones.
const ZONES: u64 = 3;

/// Replicas the rule asks of every group.
const REPLICAS: usize = 3;

/// Zone collisions among `voters`: replicas beyond the first in each zone.
fn collisions(zones: &BTreeMap<NodeId, String>, voters: &BTreeSet<NodeId>) -> usize {
    let used: BTreeSet<&String> = voters.iter().filter_map(|id| zones.get(id)).collect();
    voters.len() - used.len()
}

/// A move under way, stepped as a one-group replace.
#[derive(Clone, Debug)]
struct MoveRun {
    planned: ReplicaMove,
    plan: ReplacePlan,
    /// Whether the source was a voter when the group's leader was first
    /// seen with the move under way.
    source_voted: Option<bool>,
    /// Zone collisions among the group's voters when the move began.
    collisions_before: usize,
}

/// The rebalance a seed drew.
pub(crate) struct Rebalance {
    balancer: Balancer,
    /// Zone of each server (only used when the rule spreads zones).
    zones: BTreeMap<NodeId, String>,
    /// The server that joins late, and when it is up.
    late: (NodeId, u64),
    /// The server drained, and from when.
    drained: Option<(NodeId, u64)>,
    /// Moves in flight, by group.
    moves: BTreeMap<GroupId, MoveRun>,
    /// Each group's voters as its leader last showed them settled.
    voters: BTreeMap<GroupId, BTreeSet<NodeId>>,
    /// The planted mistakes of the run (the moves' replace plans take
    /// them too).
    bugs: concord::multi::MultiPlantedBugs,
    /// Moves started and finished.
    pub(crate) started: u64,
    pub(crate) done: u64,
    /// The balancer planned nothing and nothing was in flight at the last
    /// round with every group's voters known.
    fixed_point: bool,
}

impl Rebalance {
    /// What a seed draws.
    pub(crate) fn draw(
        config: &MultiSimConfig,
        voters: &[BTreeSet<NodeId>],
        rng: &mut ChaCha8Rng,
        chaos_ns: u64,
    ) -> Rebalance {
        let nodes = config.nodes as NodeId;
        assert!(nodes >= 4, "a rebalance needs a server to spare");
        let spread_zones = rng.gen_bool(0.5);
        let limits = BalanceLimits {
            band_percent: [0, 10, 25][rng.gen_range(0..3)],
            moves_max: [1, 2, 16][rng.gen_range(0..3)],
            moves_per_server_max: [1, 2][rng.gen_range(0..2)],
        };
        #[allow(unused_mut)]
        let mut balancer = Balancer::new(
            PlacementRule {
                replicas: REPLICAS,
                spread_zones,
            },
            limits,
        )
        .expect("a valid rule");
        #[cfg(feature = "planted-bugs")]
        balancer.plant_bugs(config.bugs);
        #[cfg(not(feature = "planted-bugs"))]
        let _ = &config.bugs;
        let zones = (1..=nodes)
            .map(|id| (id, format!("z{}", id % ZONES)))
            .collect();
        let late = (rng.gen_range(1..=nodes), rng.gen_range(0..chaos_ns / 2 + 1));
        // Draining leaves enough up servers (and zones) for the rule only
        // from five nodes on.
        let drained = (nodes >= 5).then(|| {
            let mut id = rng.gen_range(1..nodes);
            if id >= late.0 {
                id += 1;
            }
            (id, rng.gen_range(0..chaos_ns))
        });
        Rebalance {
            balancer,
            zones,
            late,
            drained,
            moves: BTreeMap::new(),
            voters: voters
                .iter()
                .enumerate()
                .map(|(i, voters)| (i as GroupId + 1, voters.clone()))
                .collect(),
            bugs: config.bugs,
            started: 0,
            done: 0,
            fixed_point: false,
        }
    }

    /// The servers as the catalog would show them at `now_ns`.
    fn servers(&self, nodes: NodeId, now_ns: u64) -> BTreeMap<NodeId, ServerPlace> {
        (1..=nodes)
            .map(|id| {
                let state = if id == self.late.0 && now_ns < self.late.1 {
                    // Not added yet: nothing may stay on it or move to it.
                    ServerState::Draining
                } else if self.drained.is_some_and(|(d, at)| d == id && now_ns >= at) {
                    ServerState::Draining
                } else {
                    ServerState::Up
                };
                let zone = self.zones.get(&id).cloned();
                (id, ServerPlace { state, zone })
            })
            .collect()
    }

    /// Whether the balancer sits at a fixed point (for the heal's wait).
    pub(crate) fn settled(&self) -> bool {
        self.fixed_point && self.moves.is_empty()
    }

    /// A line of what it waits for.
    pub(crate) fn describe(&self) -> String {
        let moves: Vec<String> = self
            .moves
            .values()
            .map(|run| {
                format!(
                    "group {}: n{} -> n{}",
                    run.planned.group, run.planned.from, run.planned.to
                )
            })
            .collect();
        format!(
            "the balancer is not at a fixed point ({} moves started, {} done; in flight: [{}]); ",
            self.started,
            self.done,
            moves.join(", ")
        )
    }
}

/// A group's view at its leader.
struct View {
    leader: usize,
    membership: Membership,
    change_pending: bool,
}

impl MultiSim {
    /// One round of the balancer, as the catalog leader runs it.
    pub(crate) fn rebalance_round(&mut self) {
        let mut views: BTreeMap<GroupId, View> = BTreeMap::new();
        let mut caught_up: BTreeMap<(GroupId, NodeId), bool> = BTreeMap::new();
        let targets: BTreeMap<GroupId, NodeId> = self
            .membership
            .rebalance
            .as_ref()
            .expect("a rebalance")
            .moves
            .iter()
            .map(|(group, run)| (*group, run.planned.to))
            .collect();
        for &group in self.groups.keys() {
            let Some(leader) = super::membership::leader_of(self, group) else {
                continue;
            };
            let node = self.hosts[leader]
                .multi
                .as_ref()
                .and_then(|multi| multi.group(group))
                .expect("a leader hosts its group");
            if let Some(&to) = targets.get(&group) {
                caught_up.insert((group, to), super::membership::caught_up(node, to));
            }
            views.insert(
                group,
                View {
                    leader,
                    membership: node.membership().clone(),
                    change_pending: super::membership::change_pending(node),
                },
            );
        }
        let nodes = self.hosts.len() as NodeId;
        let now_ns = self.now_ns;
        let rebalance = self.membership.rebalance.as_mut().expect("a rebalance");
        for (group, view) in &views {
            if !view.change_pending && !view.membership.is_joint() {
                rebalance
                    .voters
                    .insert(*group, view.membership.voters.iter().copied().collect());
            }
        }

        // The rules, on what the leaders hold; then each move's next step.
        let mut broken: Option<(MultiCheck, GroupId, String)> = None;
        let mut proposals: Vec<(usize, GroupId, MembershipChange, Vec<NodeId>)> = Vec::new();
        let mut finished: Vec<GroupId> = Vec::new();
        for (group, run) in rebalance.moves.iter_mut() {
            let Some(view) = views.get(group) else {
                continue;
            };
            let (from, to) = (run.planned.from, run.planned.to);
            let membership = &view.membership;
            if membership.contains(from) {
                run.source_voted.get_or_insert(membership.is_voter(from));
            } else if run.source_voted == Some(true) && !membership.is_voter(to) {
                broken = Some((
                    MultiCheck::ReplaceRule,
                    *group,
                    format!(
                        "a move removed n{from} while n{to} is not a voter: the group holds {membership:?}"
                    ),
                ));
                break;
            }
            let step = run.plan.step(
                &ReplaceGroup {
                    group: *group,
                    membership,
                    change_pending: view.change_pending,
                    new_caught_up: caught_up.get(&(*group, to)).copied().unwrap_or(false),
                },
                true,
            );
            match step {
                Some(ReplaceStep::Propose(change)) => proposals.push((
                    view.leader,
                    *group,
                    change,
                    membership.voters.iter().copied().collect(),
                )),
                // Done once the removal is final: the balancer plans from
                // the settled voters, and a move counted done on an
                // uncommitted removal would let it plan the same source
                // again (found at seed 92000275 on 5 nodes).
                Some(ReplaceStep::Done) if view.change_pending || view.membership.is_joint() => {}
                Some(ReplaceStep::Done) => {
                    let voters: BTreeSet<NodeId> = membership.voters.iter().copied().collect();
                    let spread = rebalance.balancer.rule().spread_zones;
                    let after = collisions(&rebalance.zones, &voters);
                    if spread && after > run.collisions_before {
                        broken = Some((
                            MultiCheck::ZoneRule,
                            *group,
                            format!(
                                "the move n{from} -> n{to} left {after} replicas sharing a zone, \
                                 {} before it: the group holds {membership:?}",
                                run.collisions_before
                            ),
                        ));
                        break;
                    }
                    finished.push(*group);
                }
                Some(ReplaceStep::Wait(_)) => {}
                // The group names neither end any more: nothing to do.
                None => finished.push(*group),
            }
        }
        if let Some((check, group, message)) = broken {
            self.fail(check, None, Some(group), message);
            return;
        }
        for group in &finished {
            rebalance.moves.remove(group);
            rebalance.done += 1;
        }
        let mut progressed = !finished.is_empty();

        // New moves, from every group's voters as last seen settled.
        let servers = rebalance.servers(nodes, now_ns);
        let in_flight: Vec<ReplicaMove> = rebalance.moves.values().map(|run| run.planned).collect();
        let planned = rebalance
            .balancer
            .plan(&servers, &rebalance.voters, &in_flight)
            .unwrap_or_default();
        rebalance.fixed_point = planned.is_empty() && in_flight.is_empty();
        for planned in planned {
            if rebalance.moves.contains_key(&planned.group) {
                // Two moves of one group at once: the limits check below
                // names it.
                let message = format!(
                    "the balancer planned {} -> {} for group {} while its move n{} -> n{} runs",
                    planned.from,
                    planned.to,
                    planned.group,
                    rebalance.moves[&planned.group].planned.from,
                    rebalance.moves[&planned.group].planned.to
                );
                self.fail(MultiCheck::MoveLimits, None, Some(planned.group), message);
                return;
            }
            let voters = rebalance
                .voters
                .get(&planned.group)
                .cloned()
                .unwrap_or_default();
            let collisions_before = collisions(&rebalance.zones, &voters);
            #[allow(unused_mut)]
            let mut plan =
                ReplacePlan::new(planned.from, planned.to, 1).expect("a move's ends differ");
            #[cfg(feature = "planted-bugs")]
            plan.plant_bugs(rebalance.bugs);
            rebalance.moves.insert(
                planned.group,
                MoveRun {
                    planned,
                    plan,
                    source_voted: None,
                    collisions_before,
                },
            );
            rebalance.started += 1;
            progressed = true;
        }
        // The limits, on what is in flight.
        let limits = rebalance.balancer.limits();
        let mut per_server: BTreeMap<NodeId, usize> = BTreeMap::new();
        for run in rebalance.moves.values() {
            *per_server.entry(run.planned.from).or_default() += 1;
            *per_server.entry(run.planned.to).or_default() += 1;
        }
        let busiest = per_server
            .iter()
            .max_by_key(|(id, n)| (**n, std::cmp::Reverse(**id)));
        let over = if rebalance.moves.len() > limits.moves_max {
            Some(format!(
                "{} moves in flight, more than the limit of {}",
                rebalance.moves.len(),
                limits.moves_max
            ))
        } else {
            busiest
                .filter(|(_, n)| **n > limits.moves_per_server_max)
                .map(|(id, n)| {
                    format!(
                        "{n} moves in flight touch n{id}, more than the limit of {} per server",
                        limits.moves_per_server_max
                    )
                })
        };
        if let Some(message) = over {
            self.fail(MultiCheck::MoveLimits, None, None, message);
            return;
        }
        if progressed {
            self.membership.last_progress_ns = self.now_ns;
        }
        for (leader, group, change, voters) in proposals {
            if let MembershipChange::AddLearner(id) | MembershipChange::AddWitness(id) = change {
                if !self.host_joining(id as usize - 1, group, &voters) {
                    continue;
                }
            }
            self.propose_change(leader, group, change);
            if self.failure.is_some() {
                return;
            }
        }
        if self.phase != Phase::Chaos {
            self.check_balance_band();
        }
    }

    /// At a fixed point after the heal, without zones: every up server
    /// within the band, or the spread at most one replica.
    fn check_balance_band(&mut self) {
        let rebalance = self.membership.rebalance.as_ref().expect("a rebalance");
        if !rebalance.settled() || rebalance.balancer.rule().spread_zones {
            return;
        }
        let servers = rebalance.servers(self.hosts.len() as NodeId, self.now_ns);
        let mut load: BTreeMap<NodeId, usize> = servers
            .iter()
            .filter(|(_, place)| place.state == ServerState::Up)
            .map(|(id, _)| (*id, 0))
            .collect();
        for voters in rebalance.voters.values() {
            for id in voters {
                if let Some(count) = load.get_mut(id) {
                    *count += 1;
                }
            }
        }
        let total: usize = load.values().sum();
        let (low, high) = rebalance.balancer.band(total, load.len());
        let least = load.values().copied().min().unwrap_or(0);
        let most = load.values().copied().max().unwrap_or(0);
        if most <= least + 1 || (least >= low && most <= high) {
            return;
        }
        let message = format!(
            "the balancer stopped with replicas per up server {load:?}, outside the band \
             {low}..={high} and spread over more than one replica"
        );
        self.fail(MultiCheck::BalanceBand, None, None, message);
    }
}
