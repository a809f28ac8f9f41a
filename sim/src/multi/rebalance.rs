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
//! Two balancers at once: the seed draws one to three catalog leader
//! changes. At each, the deposed leader's balancer planned the moves of
//! a round as the new leader's did, from the same view, and they reach
//! the catalog 0.1 to 2 s later, when other moves may have started and
//! ended; they are recorded through the catalog's own rule
//! ([`concord::multi::admit_move`]), which refuses a second move of a
//! group and one past the limits.
//!
//! Checks:
//!
//! * `replace-rule`, every round: a group whose leader shows a move's
//!   source gone while the source had been a voter, once the move
//!   proposed its removal, must show its target a voter.
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
//! * Once no replica moves, the driver hands leaderships over as the
//!   leader balancer plans ([`concord::multi::Balancer::plan_leaders`]);
//!   the fixed point waits for it too (progress: the sum of the squares
//!   of the servers' leader counts fell). `leader-band`, every round:
//!   each planned transfer goes from a server that is not up, or to a
//!   voter leading at least two fewer groups; and at the fixed point: no group
//!   is led by a server that is not up while an up voter could lead it,
//!   nor by a server over the band (or with a voter under it) while a
//!   voter leads at least two fewer groups.

use std::collections::{BTreeMap, BTreeSet};

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use concord::multi::MultiInput;
use concord::multi::{
    admit_move_planted, BalanceLimits, Balancer, CatchUpMark, GroupId, LeaderTransfer, MoveStall,
    PlacementRule, ReplaceGroup, ReplacePlan, ReplaceStep, ReplicaMove, ServerPlace, ServerState,
};
use concord::{Input, Membership, MembershipChange, NodeId};

use super::config::MultiSimConfig;
use super::engine::{MultiSim, Phase};
use super::report::MultiCheck;

/// Zones servers are spread over when the rule spreads zones.
const ZONES: u64 = 3;

/// Replicas the rule asks of every group.
const REPLICAS: usize = 3;

/// Least time between two leadership transfers asked of one group.
const TRANSFER_ASK_PAUSE_NS: u64 = 500_000_000;

/// Zone collisions among `voters`: replicas beyond the first in each zone.
fn collisions(zones: &BTreeMap<NodeId, String>, voters: &BTreeSet<NodeId>) -> usize {
    let used: BTreeSet<&String> = voters.iter().filter_map(|id| zones.get(id)).collect();
    voters.len() - used.len()
}

/// Groups led per up server (every up server listed, leading none or
/// more).
fn leader_counts(
    servers: &BTreeMap<NodeId, ServerPlace>,
    leaders: &BTreeMap<GroupId, NodeId>,
) -> BTreeMap<NodeId, usize> {
    let mut count: BTreeMap<NodeId, usize> = servers
        .iter()
        .filter(|(_, place)| place.state == ServerState::Up)
        .map(|(id, _)| (*id, 0))
        .collect();
    for leader in leaders.values() {
        if let Some(n) = count.get_mut(leader) {
            *n += 1;
        }
    }
    count
}

/// A move under way, stepped as a one-group replace.
#[derive(Clone, Debug)]
struct MoveRun {
    planned: ReplicaMove,
    plan: ReplacePlan,
    /// Whether the source was a voter when the group's leader was first
    /// seen with the move under way.
    source_voted: Option<bool>,
    /// Whether the move proposed the source's removal: only a removal of
    /// its own is the move's to answer for (a random change proposed
    /// before the move began may remove the source too).
    source_removal_proposed: bool,
    /// Zone collisions among the group's voters when the move began.
    collisions_before: usize,
    /// The `move-stall` check's own record while the target learns: the
    /// highest mark seen and since when (`None` while not learning).
    learning: Option<(Option<CatchUpMark>, u64)>,
}

/// A move's target hung (paused, up in the catalog) during the chaos,
/// long enough for its move to stall: drawn with the stall watch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hang {
    /// Hangs the target of a move under way at the first round from
    /// `at_ns`, for `for_ns`.
    Drawn {
        at_ns: u64,
        for_ns: u64,
    },
    /// Node index `node` is paused until `until_ns` (or the heal).
    Hung {
        node: usize,
        until_ns: u64,
    },
    Over,
}

/// A catalog leader change: the deposed leader's balancer planned the
/// moves of the first round from `armed_ns` that planned any, as the new
/// leader's did, and they reach the catalog `delay_ns` later.
#[derive(Clone, Debug)]
struct Overlap {
    armed_ns: u64,
    delay_ns: u64,
    /// When its moves reach the catalog, and the moves (taken, so empty,
    /// once they arrived).
    planned: Option<(u64, Vec<ReplicaMove>)>,
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
    /// Of the moves done, those undone (their target stopped being up
    /// while a learner, or stalled).
    pub(crate) undone: u64,
    /// Of those, the ones undone because their target stalled.
    pub(crate) stalled: u64,
    /// The stall watch a balancer keeps (drawn: `draw_move_stall`).
    stall: MoveStall,
    /// A target hung while its move runs, if drawn.
    hang: Option<Hang>,
    /// The chaos's length, for the hang's draw.
    chaos_ns: u64,
    /// Moves a deposed catalog leader's balancer planned that the
    /// catalog refused.
    pub(crate) refused: u64,
    /// The catalog leader changes drawn.
    overlaps: Vec<Overlap>,
    /// Leadership transfers asked for.
    pub(crate) leader_transfers: u64,
    /// The least sum of the squares of the up servers' leader counts
    /// since the heal, at rounds with every group led: a transfer that
    /// took effect lowers it (progress). A new least only, so
    /// leaderships handed back and forth are no progress, and the heal's
    /// wait ends.
    leader_squares_min: Option<usize>,
    /// When each group's leadership transfer was last asked for.
    transfer_asked_ns: BTreeMap<GroupId, u64>,
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
            leader_transfers_max: [1, 4, 16][rng.gen_range(0..3)],
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
        let overlaps = (0..rng.gen_range(1..=3))
            .map(|_| Overlap {
                armed_ns: rng.gen_range(0..chaos_ns),
                delay_ns: rng.gen_range(100_000_000..2_000_000_000),
                planned: None,
            })
            .collect();
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
            undone: 0,
            stalled: 0,
            stall: MoveStall::new(0),
            hang: None,
            chaos_ns,
            refused: 0,
            overlaps,
            leader_transfers: 0,
            leader_squares_min: None,
            transfer_asked_ns: BTreeMap::new(),
            fixed_point: false,
        }
    }

    /// Draws the stall watch's time, from a stream of its own (so every
    /// other draw of a seed is as before it existed): none on a third of
    /// the seeds, else 3 to 6 s, above the 2 s a wave of paced snapshot
    /// transfers takes after the heal. With a stall time, half the seeds
    /// also hang a move's target during the chaos (paused, still up in
    /// the catalog) for the stall time plus 0 to 3 s: its move stalls
    /// and is undone, unless the hang ends first (a crash and restart,
    /// the nemesis's resume, the heal).
    pub(crate) fn draw_move_stall(&mut self, rng: &mut ChaCha8Rng) {
        let stall_after_ns = if rng.gen_bool(1.0 / 3.0) {
            0
        } else {
            rng.gen_range(3_000_000_000..=6_000_000_000)
        };
        if stall_after_ns > 0 && rng.gen_bool(0.5) {
            self.hang = Some(Hang::Drawn {
                at_ns: rng.gen_range(0..self.chaos_ns / 2 + 1),
                for_ns: stall_after_ns + rng.gen_range(0..=3_000_000_000),
            });
        }
        #[allow(unused_mut)]
        let mut stall = MoveStall::new(stall_after_ns);
        #[cfg(feature = "planted-bugs")]
        stall.plant_bugs(self.bugs);
        self.stall = stall;
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

    /// Records `planned` as a move in flight (over one of its group, if
    /// the catalog let it).
    fn start(&mut self, planned: ReplicaMove) {
        let voters = self.voters.get(&planned.group).cloned().unwrap_or_default();
        #[allow(unused_mut)]
        let mut plan = ReplacePlan::new(planned.from, planned.to, 1).expect("a move's ends differ");
        #[cfg(feature = "planted-bugs")]
        plan.plant_bugs(self.bugs);
        let run = MoveRun {
            planned,
            plan,
            source_voted: None,
            source_removal_proposed: false,
            collisions_before: collisions(&self.zones, &voters),
            learning: None,
        };
        self.moves.insert(planned.group, run);
        self.started += 1;
    }

    /// Whether a move of `group` is under way.
    pub(crate) fn moving(&self, group: GroupId) -> bool {
        self.moves.contains_key(&group)
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
    /// The voter some member's configuration prefers as leader.
    preferred_leader: Option<NodeId>,
    /// The leader hands its leadership over already.
    transferring: bool,
}

impl MultiSim {
    /// One round of the balancer, as the catalog leader runs it.
    pub(crate) fn rebalance_round(&mut self) {
        let mut views: BTreeMap<GroupId, View> = BTreeMap::new();
        let mut caught_up: BTreeMap<(GroupId, NodeId), bool> = BTreeMap::new();
        let mut marks: BTreeMap<(GroupId, NodeId), CatchUpMark> = BTreeMap::new();
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
                if let Some(progress) = node.progress(to) {
                    marks.insert((group, to), CatchUpMark::of(&progress));
                }
            }
            views.insert(
                group,
                View {
                    leader,
                    membership: node.membership().clone(),
                    change_pending: super::membership::change_pending(node),
                    // Any member's: one that prefers a leader hands any
                    // other back once it leads.
                    preferred_leader: self.hosts.iter().find_map(|host| {
                        let member = host.multi.as_ref()?.group(group)?;
                        member.preferred_leader()
                    }),
                    transferring: node.transfer_target().is_some(),
                },
            );
        }
        let nodes = self.hosts.len() as NodeId;
        let now_ns = self.now_ns;
        let phase = self.phase;
        let all_led = views.len() == self.groups.len();
        let rebalance = self.membership.rebalance.as_mut().expect("a rebalance");
        for (group, view) in &views {
            if !view.change_pending && !view.membership.is_joint() {
                rebalance
                    .voters
                    .insert(*group, view.membership.voters.iter().copied().collect());
            }
        }

        // The rules, on what the leaders hold; then each move's next step.
        let servers = rebalance.servers(nodes, now_ns);
        let mut broken: Option<(MultiCheck, GroupId, String)> = None;
        let mut proposals: Vec<(usize, GroupId, MembershipChange, Vec<NodeId>)> = Vec::new();
        let mut finished: Vec<GroupId> = Vec::new();
        let mut undone: Vec<GroupId> = Vec::new();
        for (group, run) in rebalance.moves.iter_mut() {
            let Some(view) = views.get(group) else {
                continue;
            };
            let (from, to) = (run.planned.from, run.planned.to);
            let membership = &view.membership;
            if membership.contains(from) {
                run.source_voted.get_or_insert(membership.is_voter(from));
            } else if run.source_voted == Some(true)
                && run.source_removal_proposed
                && !membership.is_voter(to)
            {
                broken = Some((
                    MultiCheck::ReplaceRule,
                    *group,
                    format!(
                        "a move removed n{from} while n{to} is not a voter: the group holds {membership:?}"
                    ),
                ));
                break;
            }
            let new_caught_up = caught_up.get(&(*group, to)).copied().unwrap_or(false);
            let seen = ReplaceGroup {
                group: *group,
                membership,
                change_pending: view.change_pending,
                new_caught_up,
            };
            // A target no longer up (drained) may never catch up: the
            // move is undone while the target only learns.
            let target_up = servers
                .get(&to)
                .is_some_and(|place| place.state == ServerState::Up);
            // Nor may one that stays up and gets no closer: the watch
            // undoes it the same way (as `concord-cli cluster balance`).
            let stalled = if target_up && !membership.is_voter(to) {
                let mark = marks.get(&(*group, to)).copied();
                // The check's own record: since when the target, not
                // caught up, got no closer.
                let still = if new_caught_up {
                    run.learning = None;
                    None
                } else {
                    let (best, since_ns) = run.learning.get_or_insert((mark, now_ns));
                    if mark > *best {
                        *best = mark;
                        *since_ns = now_ns;
                    }
                    Some(now_ns - *since_ns)
                };
                let stalled = rebalance
                    .stall
                    .observe(run.planned, mark, new_caught_up, now_ns);
                let stall_after_ns = rebalance.stall.stall_after_ns();
                // Both paths see the same rounds: the watch stalls
                // exactly when the record does.
                let should =
                    stall_after_ns > 0 && still.is_some_and(|still_ns| still_ns >= stall_after_ns);
                if !stalled && should {
                    broken = Some((
                        MultiCheck::MoveStall,
                        *group,
                        format!(
                            "the move n{from} -> n{to} was not taken for stalled, but its \
                             target got no closer for {} ms (at {mark:?}), past the stall \
                             time of {} ms",
                            still.unwrap_or(0) / 1_000_000,
                            stall_after_ns / 1_000_000
                        ),
                    ));
                    break;
                }
                if stalled && !should {
                    let why = match still {
                        None => "is caught up".to_string(),
                        Some(still_ns) => {
                            format!("got closer {} ms ago (now {mark:?})", still_ns / 1_000_000)
                        }
                    };
                    broken = Some((
                        MultiCheck::MoveStall,
                        *group,
                        format!(
                            "the move n{from} -> n{to} was taken for stalled, but its target \
                             {why}, within the stall time of {} ms",
                            stall_after_ns / 1_000_000
                        ),
                    ));
                    break;
                }
                stalled
            } else {
                run.learning = None;
                rebalance.stall.forget(&run.planned);
                false
            };
            let step = run.plan.move_step(&seen, target_up && !stalled);
            match step {
                Some(ReplaceStep::Propose(change)) => {
                    run.source_removal_proposed |= change == MembershipChange::Remove(from);
                    proposals.push((
                        view.leader,
                        *group,
                        change,
                        membership.voters.iter().copied().collect(),
                    ))
                }
                // Done once the removal is final: the balancer plans from
                // the settled voters, and a move counted done on an
                // uncommitted removal would let it plan the same source
                // again (found at seed 92000275 on 5 nodes).
                Some(ReplaceStep::Done) if view.change_pending || view.membership.is_joint() => {}
                Some(ReplaceStep::Done) if !membership.contains(to) => {
                    if stalled {
                        rebalance.stalled += 1;
                    }
                    undone.push(*group)
                }
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
        for group in finished.iter().chain(&undone) {
            rebalance.moves.remove(group);
            rebalance.done += 1;
        }
        rebalance.undone += undone.len() as u64;
        let mut progressed = !finished.is_empty() || !undone.is_empty();

        // New moves, from every group's voters as last seen settled.
        let in_flight: Vec<ReplicaMove> = rebalance.moves.values().map(|run| run.planned).collect();
        rebalance.stall.retain_under_way(&in_flight);
        let planned = rebalance
            .balancer
            .plan(&servers, &rebalance.voters, &in_flight)
            .unwrap_or_default();
        rebalance.fixed_point = planned.is_empty() && in_flight.is_empty();
        // Leadership, once no replica moves: from every group's leader
        // and the voters that may lead it, as last seen settled.
        let leaders: BTreeMap<GroupId, NodeId> = views
            .iter()
            .map(|(group, view)| (*group, view.leader as NodeId + 1))
            .collect();
        let candidates: BTreeMap<GroupId, BTreeSet<NodeId>> = views
            .iter()
            .filter(|(_, view)| {
                // A group that prefers a leader hands any other back.
                !view.change_pending
                    && !view.membership.is_joint()
                    && view.preferred_leader.is_none()
            })
            .map(|(group, view)| {
                let membership = &view.membership;
                let voters = membership.voters.iter().copied();
                (
                    *group,
                    voters.filter(|id| !membership.is_witness(*id)).collect(),
                )
            })
            .collect();
        let squares = leader_counts(&servers, &leaders)
            .values()
            .map(|n| n * n)
            .sum::<usize>();
        if phase == Phase::Chaos {
            rebalance.leader_squares_min = None;
        } else if all_led {
            // Only rounds with every group led: a group between leaders
            // lowers the sum without any transfer.
            progressed |= rebalance
                .leader_squares_min
                .is_some_and(|min| squares < min);
            let min = rebalance.leader_squares_min.get_or_insert(squares);
            *min = (*min).min(squares);
        }
        let transfers = if rebalance.fixed_point {
            rebalance
                .balancer
                .plan_leaders(&servers, &candidates, &leaders, &[])
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        rebalance.fixed_point &= transfers.is_empty();
        // Each transfer planned keeps the balancer's promise: from a
        // server that is not up, or to a voter leading at least two
        // fewer (counting the plan's earlier transfers).
        let mut count = leader_counts(&servers, &leaders);
        for t in &transfers {
            let n_to = count.get(&t.to).copied();
            let broken = match (count.get(&t.from).copied(), n_to) {
                (_, None) => Some(format!("n{} is not up", t.to)),
                (Some(n_from), Some(n_to)) if n_to + 2 > n_from => Some(format!(
                    "n{} leads {n_from}, n{} leads {n_to}: not two fewer",
                    t.from, t.to
                )),
                _ => None,
            };
            if let Some(why) = broken {
                let message = format!(
                    "the leader balancer planned group {} from n{} to n{}: {why}",
                    t.group, t.from, t.to
                );
                self.fail(MultiCheck::LeaderBand, None, Some(t.group), message);
                return;
            }
            if let Some(n) = count.get_mut(&t.from) {
                *n -= 1;
            }
            *count.get_mut(&t.to).expect("an up target") += 1;
        }
        // Asked once per pause, and not while the leader hands over
        // already: a transfer refused now (the target behind or cut
        // off) is asked again later, not every round.
        let transfers: Vec<LeaderTransfer> = transfers
            .into_iter()
            .filter(|t| {
                let transferring = views.get(&t.group).is_some_and(|view| view.transferring);
                let asked = rebalance.transfer_asked_ns.get(&t.group);
                !transferring && asked.is_none_or(|at| now_ns >= at + TRANSFER_ASK_PAUSE_NS)
            })
            .collect();
        for t in &transfers {
            rebalance.transfer_asked_ns.insert(t.group, now_ns);
        }
        rebalance.leader_transfers += transfers.len() as u64;
        let fresh = planned.clone();
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
            rebalance.start(planned);
            progressed = true;
        }
        // A catalog leader change: the deposed leader's balancer planned
        // this round's moves too, from the same view, and its moves reach
        // the catalog a delay later (through the new leader, as every
        // balancer's proposals do), when other moves may have started and
        // ended: they are recorded through the catalog's rule.
        let mut arrived = Vec::new();
        for overlap in &mut rebalance.overlaps {
            if overlap.planned.is_none() && now_ns >= overlap.armed_ns && !fresh.is_empty() {
                overlap.planned = Some((now_ns + overlap.delay_ns, fresh.clone()));
            }
            match &mut overlap.planned {
                Some((at_ns, moves)) if !moves.is_empty() && now_ns >= *at_ns => {
                    arrived.push(std::mem::take(moves));
                }
                _ => {}
            }
        }
        let mut stale_notes = Vec::new();
        let limits = Some(rebalance.balancer.limits().moves());
        for stale in arrived {
            let (mut recorded, mut refused) = (0, 0);
            for planned in &stale {
                let in_flight = rebalance.moves.values().map(|run| run.planned);
                match admit_move_planted(in_flight, *planned, limits, rebalance.bugs) {
                    Ok(true) => {
                        rebalance.start(*planned);
                        recorded += 1;
                        progressed = true;
                    }
                    Ok(false) => {}
                    Err(_) => refused += 1,
                }
            }
            rebalance.refused += refused;
            stale_notes.push(format!(
                "rebalance: the {} moves a deposed catalog leader's balancer planned reach the \
                 catalog: {recorded} recorded, {refused} refused",
                stale.len()
            ));
        }
        for text in stale_notes {
            self.note(None, || text);
        }
        let rebalance = self.membership.rebalance.as_mut().expect("a rebalance");
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
        for transfer in transfers {
            self.note(Some(transfer.from as usize - 1), || {
                format!(
                    "rebalance: group {}: hand leadership to n{}",
                    transfer.group, transfer.to
                )
            });
            let input = MultiInput::Group {
                group: transfer.group,
                input: Input::TransferLeadership(transfer.to),
            };
            self.step_node(transfer.from as usize - 1, input, None);
            if self.failure.is_some() {
                return;
            }
        }
        self.hang_target();
        if self.phase != Phase::Chaos {
            self.check_balance_band();
            self.check_leader_band(&candidates, &leaders);
        }
    }

    /// The drawn hang of a move's target: begun at the first round from
    /// its time with a move whose target learns, ended at its time or
    /// the heal.
    fn hang_target(&mut self) {
        let now_ns = self.now_ns;
        let chaos = self.phase == Phase::Chaos;
        let rebalance = self.membership.rebalance.as_mut().expect("a rebalance");
        match rebalance.hang {
            Some(Hang::Drawn { at_ns, for_ns }) if chaos && now_ns >= at_ns => {
                // The lowest group's move whose target is not a voter
                // of it (as the balancer last saw it settled).
                let target = rebalance.moves.values().find_map(|run| {
                    let voters = rebalance.voters.get(&run.planned.group)?;
                    (!voters.contains(&run.planned.to)).then_some(run.planned.to)
                });
                let Some(to) = target else {
                    return;
                };
                let node = to as usize - 1;
                rebalance.hang = Some(Hang::Hung {
                    node,
                    until_ns: now_ns + for_ns,
                });
                self.note(Some(node), || {
                    format!("rebalance: n{to} hangs (a move's target, up in the catalog)")
                });
                self.pause(node);
            }
            Some(Hang::Hung { node, until_ns }) if !chaos || now_ns >= until_ns => {
                rebalance.hang = Some(Hang::Over);
                self.note(Some(node), || "rebalance: the hang ends".to_string());
                self.resume(node);
            }
            _ => {}
        }
    }

    /// At a fixed point after the heal: no group the leader balancer
    /// could still hand over (checked here from the counts, not from
    /// the balancer's plan).
    fn check_leader_band(
        &mut self,
        candidates: &BTreeMap<GroupId, BTreeSet<NodeId>>,
        leaders: &BTreeMap<GroupId, NodeId>,
    ) {
        let rebalance = self.membership.rebalance.as_ref().expect("a rebalance");
        if !rebalance.settled() {
            return;
        }
        let servers = rebalance.servers(self.hosts.len() as NodeId, self.now_ns);
        let count = leader_counts(&servers, leaders);
        let (low, high) = rebalance.balancer.band(count.values().sum(), count.len());
        for (group, leader) in leaders {
            let Some(voters) = candidates.get(group) else {
                continue;
            };
            for to in voters.iter().filter(|to| *to != leader) {
                let Some(&n_to) = count.get(to) else {
                    continue;
                };
                let stuck = match count.get(leader) {
                    None => Some("a server that is not up"),
                    Some(&n_from) if (n_from > high || n_to < low) && n_to + 2 <= n_from => {
                        Some("a server outside the band")
                    }
                    Some(_) => None,
                };
                if let Some(why) = stuck {
                    let message = format!(
                        "the leader balancer stopped with group {group} led by n{leader}, \
                         {why}, while n{to} could lead it: leaders per up server {count:?}, \
                         band {low}..={high}"
                    );
                    self.fail(MultiCheck::LeaderBand, None, Some(*group), message);
                    return;
                }
            }
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
