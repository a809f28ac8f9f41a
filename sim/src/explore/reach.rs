//! What an exploration reached: leaders, commits, crashes, terms.
//!
//! "No violation" speaks only for the states explored. A scope whose
//! network is too small for one election, or whose depth ends before the
//! first commit, is exhausted quickly and passes every check without ever
//! putting the properties to work. So the search gathers, over the distinct
//! states it saw, what they reached, and a scope that never elected a
//! leader, or never committed a proposed command, is reported as vacuous
//! rather than clean (see [`Reached::vacuous`]).
//!
//! Everything here is gathered in the search's merge order, from the
//! states themselves (never from timing), so it does not depend on the
//! thread count.

use concord::{Index, Term};
use serde::{Deserialize, Serialize};

use super::scope::{Scope, TERM_MAX};

/// Terms a leader term mask can name: bit `t` stands for term `t`. A state
/// is expanded only while its terms are within `TERM_MAX`, and one step
/// raises a term by at most one, so no term seen exceeds `TERM_MAX + 1`.
const LEADER_TERMS_BITS: u32 = u64::BITS;
const _: () = assert!(TERM_MAX < LEADER_TERMS_BITS as u64 - 1);

/// What one state shows, taken by the worker that built it (the state
/// itself is not kept).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Sighting {
    /// Some node is leader now.
    pub(crate) leader_now: bool,
    /// Bit `t`: the history of this state had a leader of term `t`.
    pub(crate) leader_terms_mask: u64,
    /// Highest commit index of any node.
    pub(crate) committed_entries_max: Index,
    /// Client commands among the entries committed so far (anywhere).
    pub(crate) committed_commands: u32,
    /// Crash-and-restarts taken on the way here.
    pub(crate) crashes: u32,
    /// Highest term of any node.
    pub(crate) term_max: Term,
    /// The state left the scope because a send found the network full.
    pub(crate) overflowed: bool,
}

impl Sighting {
    /// The mask bit of a leader of `term`.
    pub(crate) fn leader_term_bit(term: Term) -> u64 {
        assert!(
            term < u64::from(LEADER_TERMS_BITS),
            "a leader of term {term}, beyond the terms a scope can reach"
        );
        1 << term
    }
}

/// What the distinct states of an exploration reached, at best.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reached {
    /// Distinct states in which some node is leader.
    pub leader_states: u64,
    /// Distinct terms that had a leader, over every state.
    pub leader_terms: u32,
    /// Most entries committed on one node (a leader's no-op counts).
    pub committed_entries_max: Index,
    /// Most client commands committed in one state (proposals that made
    /// it; at most `Scope::proposals`).
    pub committed_commands_max: u32,
    /// Most crash-and-restarts taken on one path.
    pub crashes_max: u32,
    /// Highest term any node reached.
    pub term_max: Term,
    /// Distinct states that left the scope because a send found the
    /// network full (loss off or implicit).
    pub overflowed_states: u64,
    #[serde(skip)]
    leader_terms_mask: u64,
}

/// Something a scope that proves anything must reach, and did not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Unreached {
    /// No state had a leader: no election completed.
    Leader,
    /// The scope proposes commands, and none was ever committed.
    CommittedCommand,
}

impl Unreached {
    /// A short name, as printed.
    pub fn name(self) -> &'static str {
        match self {
            Unreached::Leader => "no leader was ever elected",
            Unreached::CommittedCommand => "no proposed command was ever committed",
        }
    }
}

impl Reached {
    /// Counts one distinct state.
    pub(crate) fn add(&mut self, sighting: &Sighting) {
        if sighting.leader_now {
            self.leader_states += 1;
        }
        self.leader_terms_mask |= sighting.leader_terms_mask;
        self.leader_terms = self.leader_terms_mask.count_ones();
        self.committed_entries_max = self
            .committed_entries_max
            .max(sighting.committed_entries_max);
        self.committed_commands_max = self.committed_commands_max.max(sighting.committed_commands);
        self.crashes_max = self.crashes_max.max(sighting.crashes);
        self.term_max = self.term_max.max(sighting.term_max);
        if sighting.overflowed {
            self.overflowed_states += 1;
        }
    }

    /// What a scope that puts the properties to work must reach and this
    /// exploration did not: a leader, and a committed command when
    /// `scope` proposes any. Empty: not vacuous.
    pub fn vacuous(&self, scope: &Scope) -> Vec<Unreached> {
        let mut unreached = Vec::new();
        if self.leader_terms == 0 {
            unreached.push(Unreached::Leader);
        }
        if scope.proposals > 0 && self.committed_commands_max == 0 {
            unreached.push(Unreached::CommittedCommand);
        }
        unreached
    }

    /// One line: what was reached.
    pub fn summary(&self) -> String {
        format!(
            "reached: {} states with a leader, leaders in {} terms, at most {} entries committed on a node ({} client commands), {} crashes on a path, terms up to {}",
            self.leader_states,
            self.leader_terms,
            self.committed_entries_max,
            self.committed_commands_max,
            self.crashes_max,
            self.term_max
        )
    }

    /// What to change so that `scope` reaches what it did not, given how
    /// the search ended (`at_depth_bound`: states left unexpanded at the
    /// depth bound).
    pub fn advice(&self, scope: &Scope, at_depth_bound: u64) -> String {
        let mut advice = Vec::new();
        if scope.network_max < Scope::network_max_default(scope.nodes) {
            advice.push(format!(
                "raise --network-max {} to at least {} (one election's requests and answers for {} nodes), or leave it out",
                scope.network_max,
                Scope::network_max_default(scope.nodes),
                scope.nodes
            ));
        } else if self.overflowed_states > 0 {
            advice.push(format!(
                "raise --network-max {} ({} states filled the network)",
                scope.network_max, self.overflowed_states
            ));
        }
        if at_depth_bound > 0 {
            advice.push(format!(
                "raise --depth {} ({at_depth_bound} states were left at the bound)",
                scope.depth
            ));
        }
        if scope.timeouts > 0 || scope.timeouts_per_node > 0 {
            advice.push(
                "raise --timeouts or --timeouts-per-node (an election needs a timer firing)"
                    .to_string(),
            );
        }
        if scope.nodes > 3 {
            advice.push(format!("or lower --nodes {}", scope.nodes));
        }
        advice.push(
            "pass --allow-vacuous if the scope is meant to check only what it reaches".to_string(),
        );
        advice.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::super::world::{Step, World};
    use super::*;
    use crate::explore::scope::Loss;

    /// A path from the initial state to one where a proposed command is
    /// committed, every state on it within `scope`, found depth first
    /// (syncs, proposals and deliveries tried before timer firings), or
    /// `None` if there is none within `depth_max` steps.
    fn path_to_a_commit(scope: &Scope, depth_max: usize) -> Option<Vec<Step>> {
        fn visit(
            scope: &Scope,
            world: &World,
            path: &mut Vec<Step>,
            seen: &mut HashSet<u128>,
            depth_max: usize,
        ) -> bool {
            if world.sighting().committed_commands > 0 {
                return true;
            }
            if path.len() == depth_max || !world.in_scope(scope) {
                return false;
            }
            let mut steps = Vec::new();
            world.steps(scope, &mut steps);
            let rank = |step: &Step| match step {
                Step::Sync(_) | Step::Propose(_) => 0,
                Step::Deliver(_) => 1,
                _ => 2,
            };
            steps.sort_by_key(rank);
            for step in steps {
                let mut child = world.clone();
                if !matches!(child.apply(scope, step, None), Ok(true)) {
                    continue;
                }
                if !seen.insert(child.fingerprint(scope)) {
                    continue;
                }
                path.push(step);
                if visit(scope, &child, path, seen, depth_max) {
                    return true;
                }
                path.pop();
            }
            false
        }
        let initial = World::initial(scope).expect("a valid scope starts");
        let mut path = Vec::new();
        let mut seen = HashSet::new();
        visit(scope, &initial, &mut path, &mut seen, depth_max).then_some(path)
    }

    /// The CI scope's shape (one proposal, one timer firing, no crash,
    /// loss or duplication) on `nodes` nodes with `network_max` messages.
    fn ci_shaped(nodes: usize, network_max: usize) -> Scope {
        Scope {
            nodes,
            max_term: 1,
            proposals: 1,
            crashes: 0,
            timeouts: 1,
            loss: Loss::Off,
            duplicates: 0,
            network_max,
            symmetry: nodes <= 4,
            ..Scope::default()
        }
    }

    #[test]
    fn five_nodes_commit_within_the_default_network_and_not_within_five() {
        // An exhaustive search of 5 nodes as far as the first commit (some
        // 25 steps) is out of reach of a debug test; one path found depth
        // first shows the default network lets a command commit.
        let scope = ci_shaped(5, Scope::network_max_default(5));
        let path = path_to_a_commit(&scope, 60).expect("5 nodes commit with the default network");
        assert!(path.len() <= 60, "{path:?}");
        assert!(path_to_a_commit(&ci_shaped(5, 5), 60).is_none());
    }

    #[test]
    fn leader_terms_are_counted_once_each() {
        let mut reached = Reached::default();
        let sighting = Sighting {
            leader_now: true,
            leader_terms_mask: Sighting::leader_term_bit(1) | Sighting::leader_term_bit(2),
            ..Sighting::default()
        };
        reached.add(&sighting);
        reached.add(&sighting);
        assert_eq!(reached.leader_states, 2);
        assert_eq!(reached.leader_terms, 2);
        assert_eq!(
            reached.vacuous(&Scope::default()),
            [Unreached::CommittedCommand]
        );
    }
}
