//! Which server leads each group: the balancer's second half. Replicas
//! decide where a group's log lives; leaders decide where its writes and
//! reads are served, so a server leading far more groups than the others
//! does far more of the cluster's work. This plans leadership transfers,
//! deterministically from the groups' voters and leaders, as the replica
//! plan does from the voters alone:
//!
//! 1. **Evacuation**: a group led by a server that is not
//!    [`ServerState::Up`] (draining or retired) hands its leadership to
//!    the up voter leading fewest groups.
//! 2. **Balance**: while a server leads more groups than the band's top,
//!    or one fewer than its bottom (the band of
//!    [`Balancer::band`] over the groups with a leader), one group moves
//!    from a server leading `n` to a voter leading at most `n - 2`.
//!
//! The margin of two makes every transfer lower the sum of the squares
//! of the counts, so rounds of plans end at a fixed point and never hand
//! one group back and forth. A transfer costs no snapshot (the target is
//! a voter already, caught up), so only
//! [`BalanceLimits::leader_transfers_max`](super::BalanceLimits) bounds a
//! plan; a group whose replica moves is left alone until its move ends.

use std::collections::{BTreeMap, BTreeSet};

use super::balance::{BalanceError, Balancer, ReplicaMove, ServerPlace, ServerState};
use super::GroupId;
use crate::NodeId;

/// One group's leadership handed from one server to another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LeaderTransfer {
    /// The group.
    pub group: GroupId,
    /// The server leading it now.
    pub from: NodeId,
    /// The voter to lead it.
    pub to: NodeId,
}

impl Balancer {
    /// The leadership transfers to ask for now, given the servers, the
    /// voters of each group that may lead it (witnesses left out), each
    /// group's leader as last seen, and the replica moves in flight
    /// (their groups are left alone).
    ///
    /// First, groups led by a server that is not up go to the up voter
    /// leading fewest. Then, while a server leads more groups than the
    /// band's top or fewer than its bottom ([`Balancer::band`] over the
    /// groups with a leader), one group goes from a server leading `n` to
    /// one of its voters leading at most `n - 2`: every transfer lowers
    /// the sum of the squares of the counts, so rounds of plans end and
    /// never hand a group back and forth. Empty when nothing is left to
    /// hand over; at most [`BalanceLimits::leader_transfers_max`]
    /// transfers.
    ///
    /// [`BalanceLimits::leader_transfers_max`]: super::BalanceLimits::leader_transfers_max
    pub fn plan_leaders(
        &self,
        servers: &BTreeMap<NodeId, ServerPlace>,
        candidates: &BTreeMap<GroupId, BTreeSet<NodeId>>,
        leaders: &BTreeMap<GroupId, NodeId>,
        in_flight: &[ReplicaMove],
    ) -> Result<Vec<LeaderTransfer>, BalanceError> {
        if servers.len() > super::balance::BALANCE_SERVERS_MAX {
            return Err(BalanceError::Invalid(format!(
                "{} servers, more than {}",
                servers.len(),
                super::balance::BALANCE_SERVERS_MAX
            )));
        }
        let up = |id: &NodeId| servers.get(id).is_some_and(|p| p.state == ServerState::Up);
        let moving: BTreeSet<GroupId> = in_flight.iter().map(|m| m.group).collect();
        let mut count: BTreeMap<NodeId, usize> = servers
            .iter()
            .filter(|(id, _)| up(id))
            .map(|(id, _)| (*id, 0))
            .collect();
        if count.is_empty() {
            return Ok(Vec::new());
        }
        // Each leader's groups that may move: known voters, no replica
        // move under way.
        let mut led_by: BTreeMap<NodeId, Vec<GroupId>> = BTreeMap::new();
        let mut led_total = 0usize;
        for (&group, &leader) in leaders {
            if let Some(n) = count.get_mut(&leader) {
                *n += 1;
                led_total += 1;
            }
            if candidates.contains_key(&group) && !moving.contains(&group) {
                led_by.entry(leader).or_default().push(group);
            }
        }
        let transfers_max = self.limits().leader_transfers_max;
        let mut planned: Vec<LeaderTransfer> = Vec::new();
        let mut taken: BTreeSet<GroupId> = BTreeSet::new();
        // The up voter of `group` (not `from`) leading fewest groups.
        let least_led = |count: &BTreeMap<NodeId, usize>, group: GroupId, from: NodeId| {
            candidates[&group]
                .iter()
                .filter(|id| **id != from)
                .filter_map(|id| count.get(id).map(|n| (*n, *id)))
                .min()
        };

        // Evacuation: leadership off servers that are not up.
        for (&from, groups) in &led_by {
            if up(&from) {
                continue;
            }
            for &group in groups {
                if planned.len() >= transfers_max {
                    return Ok(planned);
                }
                if let Some((_, to)) = least_led(&count, group, from) {
                    *count.get_mut(&to).expect("an up voter") += 1;
                    taken.insert(group);
                    planned.push(LeaderTransfer { group, from, to });
                }
            }
        }

        // Balance: each pass hands one group from the most loaded server
        // that can give one, or stops.
        let (low, high) = self.band(led_total, count.len());
        let margin = if self.planted().leader_balance_without_margin {
            1
        } else {
            2
        };
        while planned.len() < transfers_max {
            let least = *count.values().min().expect("an up server");
            let mut sources: Vec<(usize, NodeId)> = count.iter().map(|(id, n)| (*n, *id)).collect();
            sources.sort_by_key(|&(n, id)| (std::cmp::Reverse(n), id));
            if sources[0].0 <= high && least >= low {
                break;
            }
            let mut best: Option<(usize, GroupId, NodeId, NodeId)> = None;
            for &(n_from, from) in &sources {
                let Some(groups) = led_by.get(&from) else {
                    continue;
                };
                for &group in groups {
                    if taken.contains(&group) {
                        continue;
                    }
                    let Some((n_to, to)) = least_led(&count, group, from) else {
                        continue;
                    };
                    let worth = (n_from > high || n_to < low) && n_to + margin <= n_from;
                    if worth && best.is_none_or(|(n, ..)| n_to < n) {
                        best = Some((n_to, group, from, to));
                    }
                }
                // The most loaded server that can give one gives.
                if best.is_some() {
                    break;
                }
            }
            let Some((_, group, from, to)) = best else {
                break;
            };
            *count.get_mut(&from).expect("an up source") -= 1;
            *count.get_mut(&to).expect("an up voter") += 1;
            taken.insert(group);
            planned.push(LeaderTransfer { group, from, to });
        }
        assert!(planned.len() <= transfers_max);
        Ok(planned)
    }
}

#[cfg(test)]
mod tests {
    use super::super::balance::{BalanceLimits, PlacementRule};
    use super::*;

    fn up(ids: &[NodeId]) -> BTreeMap<NodeId, ServerPlace> {
        ids.iter()
            .map(|id| {
                let place = ServerPlace {
                    state: ServerState::Up,
                    zone: None,
                };
                (*id, place)
            })
            .collect()
    }

    fn balancer(band_percent: u32) -> Balancer {
        let limits = BalanceLimits {
            band_percent,
            ..BalanceLimits::default()
        };
        let rule = PlacementRule {
            replicas: 3,
            spread_zones: false,
        };
        Balancer::new(rule, limits).unwrap()
    }

    /// Groups 1..=n on servers 1, 2, 3, all led by server 1.
    fn all_led_by_one(
        n: GroupId,
    ) -> (
        BTreeMap<GroupId, BTreeSet<NodeId>>,
        BTreeMap<GroupId, NodeId>,
    ) {
        let voters = (1..=n).map(|g| (g, [1, 2, 3].into())).collect();
        let leaders = (1..=n).map(|g| (g, 1)).collect();
        (voters, leaders)
    }

    /// Applies `transfers` to `leaders`, checking each one's source led.
    fn apply(leaders: &mut BTreeMap<GroupId, NodeId>, transfers: &[LeaderTransfer]) {
        for t in transfers {
            assert_eq!(leaders.insert(t.group, t.to), Some(t.from), "{t:?}");
        }
    }

    fn counts(leaders: &BTreeMap<GroupId, NodeId>) -> BTreeMap<NodeId, usize> {
        let mut counts = BTreeMap::new();
        for leader in leaders.values() {
            *counts.entry(*leader).or_insert(0) += 1;
        }
        counts
    }

    #[test]
    fn rounds_of_leader_plans_reach_the_band_and_stop() {
        let (voters, mut leaders) = all_led_by_one(30);
        let balancer = balancer(10);
        let mut rounds = 0;
        loop {
            let plan = balancer
                .plan_leaders(&up(&[1, 2, 3]), &voters, &leaders, &[])
                .unwrap();
            if plan.is_empty() {
                break;
            }
            assert!(plan.len() <= BalanceLimits::default().leader_transfers_max);
            apply(&mut leaders, &plan);
            rounds += 1;
            assert!(rounds < 10, "no fixed point: {:?}", counts(&leaders));
        }
        // 30 groups over 3 servers, band 10 %: 9..=11 each.
        for (server, n) in counts(&leaders) {
            assert!((9..=11).contains(&n), "server {server} leads {n}");
        }
    }

    #[test]
    fn a_transfer_goes_only_to_a_voter_of_the_group() {
        // Server 4 holds no replica of group 1: it may not lead it,
        // however few groups it leads.
        let voters = [(1, [1, 2, 3].into()), (2, [1, 2, 4].into())].into();
        let leaders = [(1, 1), (2, 1)].into();
        let plan = balancer(0)
            .plan_leaders(&up(&[1, 2, 3, 4]), &voters, &leaders, &[])
            .unwrap();
        for t in &plan {
            assert!(voters[&t.group].contains(&t.to), "{t:?}");
        }
        assert_eq!(plan.len(), 1, "{plan:?}");
    }

    #[test]
    fn a_difference_of_one_is_never_handed_back_and_forth() {
        // Only servers 1 and 2 hold the groups. Server 1 leads 2, over
        // the band's top of 1 (3 leaders over 4 servers), but server 2
        // leads 1: handing one over would only swap the counts, and the
        // next plan would hand it back.
        let voters = (1..=3).map(|g| (g, [1, 2].into())).collect();
        let leaders = [(1, 1), (2, 1), (3, 2)].into();
        let plan = balancer(0)
            .plan_leaders(&up(&[1, 2, 3, 4]), &voters, &leaders, &[])
            .unwrap();
        assert!(plan.is_empty(), "{plan:?}");
    }

    #[test]
    fn a_draining_server_hands_every_leadership_away() {
        let (voters, leaders) = all_led_by_one(4);
        let mut servers = up(&[1, 2, 3]);
        servers.get_mut(&1).unwrap().state = ServerState::Draining;
        let plan = balancer(10)
            .plan_leaders(&servers, &voters, &leaders, &[])
            .unwrap();
        assert_eq!(plan.len(), 4, "{plan:?}");
        let mut after = leaders.clone();
        apply(&mut after, &plan);
        assert_eq!(counts(&after), [(2, 2), (3, 2)].into());
    }

    #[test]
    fn a_group_whose_replica_moves_keeps_its_leader() {
        let (voters, leaders) = all_led_by_one(2);
        let moving = [ReplicaMove {
            group: 1,
            from: 3,
            to: 4,
        }];
        let plan = balancer(0)
            .plan_leaders(&up(&[1, 2, 3, 4]), &voters, &leaders, &moving)
            .unwrap();
        assert!(plan.iter().all(|t| t.group != 1), "{plan:?}");
    }
}
