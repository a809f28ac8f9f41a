//! The step observers (`crate::observe`: the step rules) for every group
//! of a multi-group run: each node's layer is given a
//! [`GroupStepObserver`] that shows every step of every group's node to
//! that group's rules through [`StepObserver`], as the single-group engine
//! shows every step of its nodes.
//!
//! The rules of a group see the steps of the group's node on every node,
//! so the cross-node rules (`lease-promise`, `vote-hold`) work per group
//! as they do for one: a promise is counted on the clock of the layer
//! that holds it ([`MultiNode::now_ticks`](concord::multi::MultiNode::now_ticks),
//! given here at every step and every tick), since a sleeping group's
//! node is not ticked while its process keeps time.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use concord::multi::{GroupId, GroupStepObserver};
use concord::{Action, Input, Node};

use crate::observe::{Broken, StepObserver};
use crate::rules::Rules;

/// A broken rule: the node index, the group, and what broke.
pub(crate) type GroupBroken = (usize, GroupId, Broken);

/// The rules of every group, shared by the nodes' observers.
pub(crate) struct GroupRules {
    nodes: usize,
    /// Each node's layer clock, as last given.
    clocks_ticks: Vec<u64>,
    groups: BTreeMap<GroupId, Rules>,
    /// The first broken rule (later ones are consequences).
    broken: Option<GroupBroken>,
}

/// The shared handle the engine and the observers hold.
pub(crate) type SharedRules = Arc<Mutex<GroupRules>>;

impl GroupRules {
    /// The rules of a run of `nodes` nodes, no group seen yet.
    pub(crate) fn shared(nodes: usize) -> SharedRules {
        Arc::new(Mutex::new(GroupRules {
            nodes,
            clocks_ticks: vec![0; nodes],
            groups: BTreeMap::new(),
            broken: None,
        }))
    }

    /// Node `index`'s layer clock reads `clock_ticks`.
    pub(crate) fn set_clock(&mut self, index: usize, clock_ticks: u64) {
        self.clocks_ticks[index] = clock_ticks;
    }

    /// Node `index` restarted: every group's rules carry its promises
    /// over (the ticks it had left) and forget its reads; its layer
    /// clock starts again from 0.
    pub(crate) fn on_restart(&mut self, index: usize) {
        for rules in self.groups.values_mut() {
            sync_clocks(rules, &self.clocks_ticks);
            rules.on_restart(index);
        }
        self.clocks_ticks[index] = 0;
    }

    /// Node `index` stopped hosting `group`, or hosts it afresh and
    /// empty: nothing its earlier replica of the group did binds it.
    pub(crate) fn forget(&mut self, index: usize, group: GroupId) {
        if let Some(rules) = self.groups.get_mut(&group) {
            rules.forget_node(index);
        }
    }

    /// Takes the first broken rule, if any.
    pub(crate) fn take_broken(&mut self) -> Option<GroupBroken> {
        self.broken.take()
    }

    fn rules_of(&mut self, group: GroupId) -> &mut Rules {
        let nodes = self.nodes;
        self.groups
            .entry(group)
            .or_insert_with(|| Rules::with_host_clocks(nodes))
    }
}

fn sync_clocks(rules: &mut Rules, clocks_ticks: &[u64]) {
    for (index, clock_ticks) in clocks_ticks.iter().enumerate() {
        rules.set_clock(index, *clock_ticks);
    }
}

/// Node `index`'s observer.
pub(crate) struct HostObserver {
    index: usize,
    shared: SharedRules,
}

impl HostObserver {
    pub(crate) fn new(index: usize, shared: SharedRules) -> HostObserver {
        HostObserver { index, shared }
    }
}

impl GroupStepObserver for HostObserver {
    fn before(&mut self, group: GroupId, node: &Node, input: &Input, clock_ticks: u64) {
        let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        shared.set_clock(self.index, clock_ticks);
        shared.rules_of(group).before(self.index, node, input);
    }

    fn after(&mut self, group: GroupId, node: &Node, actions: &[Action], clock_ticks: u64) {
        let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        shared.set_clock(self.index, clock_ticks);
        let GroupRules {
            clocks_ticks,
            groups,
            broken,
            nodes,
        } = &mut *shared;
        let rules = groups
            .entry(group)
            .or_insert_with(|| Rules::with_host_clocks(*nodes));
        sync_clocks(rules, clocks_ticks);
        if let Err(failure) = rules.after(self.index, node, actions) {
            if broken.is_none() {
                *broken = Some((self.index, group, failure));
            }
        }
    }
}
