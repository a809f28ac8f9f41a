//! Step observers: the checks that judge one `Node::step` from the node
//! before and after it, its input and its actions, and the one interface
//! every host of the simulator calls them through.
//!
//! A host steps a node the same way everywhere:
//!
//! ```text
//! observer.before(index, &node, &input);
//! node.step(input, &mut actions);
//! observer.after(index, &node, &actions)?;   // Err: report, stop the run
//! ```
//!
//! Every host of the simulator does this for every step of every node:
//! the single-group engine (`crate::engine`, `host.rs`), the multi-group
//! host (`crate::multi`, through the core's `GroupStepObserver`, one set
//! of rules per group), the explorer (`crate::explore`, `world.rs`) and
//! the fuzzer's cluster (`crate::fuzzing::node_step`). Each reports a
//! broken step through its own failure path: a failed seed, a failed group,
//! a violated property with its trace, a fuzzing finding.
//!
//! One check a file:
//!
//! * [`rules`]: the step rules (tabled in `sim/README.md`), with the
//!   cross-node promise rules (`rules/promises.rs`) and the forwarded
//!   reads (`rules/forwarded.rs`);
//! * `safety`: Raft's safety properties on the committed prefix (commit
//!   monotonic, log matching, no committed entry replaced) after every
//!   step; its leader and apply checks are fed by the host as it executes
//!   the actions (`on_leader`, `on_apply`), since they need what the host
//!   did with them (the response the state machine computed).
//!
//! What stays outside, and why: these are not judgements of one step.
//!
//! * `crate::promises` compares what a node promised over the network
//!   (grants, acknowledgements) with what its disk gives back at a
//!   restart: it is fed by sends and judged at recovery, not at a step.
//! * Linearizability, read freshness and the client checks judge the
//!   history of operations, once a run ends.
//! * Durability at the end of a run, liveness (progress once faults
//!   heal), the budgets (`crate::budgets`), calm and catch-up
//!   (`engine/calm.rs`, `engine/catchup.rs`) bound whole runs or phases.
//! * The engine's own step checks (`engine/checks.rs`, `accounting`,
//!   `accessors`, `hints`, `campaign`) judge the single-group host's
//!   contract with its nodes (what it was told to write, to apply, when
//!   to snapshot), which the other hosts keep differently; the
//!   multi-group checks (`multi/checks.rs`) judge the layer, not a step.
//! * The explorer's properties (`explore/checks.rs`) are part of its
//!   explored state and fingerprint.

use concord::{Action, Input, Node};

use crate::engine::FailureKind;

pub mod rules;
pub(crate) mod safety;

/// A check of every step of every node of a run: shown the node before
/// the step with the input it is about to take, then after it with the
/// actions it emitted.
///
/// Nodes are known by their index in the run (node id − 1). A host calls
/// `before` and `after` in pairs, one step at a time; an observer keeps
/// whatever it reads before the step until `after`.
pub(crate) trait StepObserver {
    /// Node `index`, in `node`'s state, is about to take `input`.
    fn before(&mut self, index: usize, node: &Node, input: &Input);

    /// The step is done: `node` is in its state after it and emitted
    /// `actions`. An error fails the run (later steps would judge the
    /// consequences of the first mistake).
    fn after(&mut self, index: usize, node: &Node, actions: &[Action]) -> Result<(), Broken>;
}

/// A step an observer judged wrong: the failure kind the host reports
/// and what happened (a step rule's message starts `rule NAME: `).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Broken {
    pub(crate) kind: FailureKind,
    pub(crate) message: String,
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl StepObserver for safety::Safety {
    fn before(&mut self, _index: usize, _node: &Node, _input: &Input) {}

    #[inline]
    fn after(&mut self, index: usize, node: &Node, _actions: &[Action]) -> Result<(), Broken> {
        self.after_step(index, node)
            .map_err(|(kind, message)| Broken { kind, message })
    }
}
