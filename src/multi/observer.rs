//! Watching every step of every group's node from outside: a host that
//! traces what its groups do, or checks each step against rules of its
//! own (as the simulator's step rules do, `sim/src/observe/rules.rs`),
//! installs a [`GroupStepObserver`] with [`MultiNode::set_step_observer`].
//!
//! The layer steps a group's node in several places (an input for the
//! group, a frame's item, a durability report, a tick, the ticks a waking
//! group is handed); the observer sees each of them, one node step at a
//! time, with the node before and after and the actions of that step
//! alone, before the layer routes them.

use std::fmt;

use crate::io::{Action, Input};
use crate::node::Node;

use super::frame::GroupId;
use super::multi_node::MultiNode;

/// Sees every step of every group's node. Both calls run inside
/// [`MultiNode::step`] (or [`MultiNode::flush`]), so they must not call
/// back into the layer.
pub trait GroupStepObserver: Send {
    /// `node`, of `group`, is about to take `input`; the layer's clock
    /// ([`MultiNode::now_ticks`]) reads `clock_ticks`.
    fn before(&mut self, group: GroupId, node: &Node, input: &Input, clock_ticks: u64);

    /// The step of [`GroupStepObserver::before`] is done: `node` is in its
    /// state after it, and `actions` are what that step emitted.
    fn after(&mut self, group: GroupId, node: &Node, actions: &[Action], clock_ticks: u64);
}

/// The layer's observer, if one is installed.
#[derive(Default)]
pub(crate) struct Observer(pub(crate) Option<Box<dyn GroupStepObserver>>);

impl fmt::Debug for Observer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Observer(installed)"
        } else {
            "Observer(none)"
        })
    }
}

impl MultiNode {
    /// Installs `observer`, which from now on sees every step of every
    /// group's node (replacing any observer installed before).
    pub fn set_step_observer(&mut self, observer: Box<dyn GroupStepObserver>) {
        self.observer = Observer(Some(observer));
    }
}

/// Steps `node` of `group` with `input`, appending its actions to
/// `actions` and showing the step to `observer`, if any.
#[inline]
pub(crate) fn observed_step(
    observer: &mut Observer,
    group: GroupId,
    node: &mut Node,
    input: Input,
    actions: &mut Vec<Action>,
    clock_ticks: u64,
) {
    match observer.0.as_mut() {
        None => node.step(input, actions),
        Some(observer) => {
            let start = actions.len();
            observer.before(group, node, &input, clock_ticks);
            node.step(input, actions);
            observer.after(group, node, &actions[start..], clock_ticks);
        }
    }
}
