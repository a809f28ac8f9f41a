//! Saved traces: a violation's shortest path as a JSON file that
//! `concord-sim explore --replay FILE` runs again step by step, printing
//! each step's input, the node's resulting role, term and commit index,
//! and what it sent, wrote and applied.
//!
//! A delivered (duplicated, lost) message is named by its fingerprint, not
//! by its place in the network, with its description alongside for
//! readers; replay finds it by fingerprint and refuses a trace whose
//! message is not in flight.

use serde::{Deserialize, Serialize};

use super::checks::{Property, Violation};
use super::scope::Scope;
use super::world::{Step, StepLog, World};

/// The format tag of a trace file.
pub const TRACE_FORMAT: &str = "concord-explore-trace/2";

/// A step as saved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "kebab-case", deny_unknown_fields)]
pub enum SavedStep {
    /// The node's timer fires.
    Fire {
        /// Node id.
        node: u64,
    },
    /// The node's oldest pending write becomes durable.
    Sync {
        /// Node id.
        node: u64,
    },
    /// The node crashes and restarts from its disk.
    Restart {
        /// Node id.
        node: u64,
    },
    /// A client proposes at the node.
    Propose {
        /// Node id.
        node: u64,
    },
    /// A client reads at the node.
    Read {
        /// Node id.
        node: u64,
    },
    /// The node is asked for a snapshot.
    Snapshot {
        /// Node id.
        node: u64,
    },
    /// The node is asked to remove `target`.
    Remove {
        /// Node id.
        node: u64,
        /// The voter to remove.
        target: u64,
    },
    /// A message is delivered.
    Deliver {
        /// The message's fingerprint, in hex.
        message: String,
        /// What it is (for readers; not used by replay).
        describe: String,
    },
    /// A copy of a message is delivered, the message kept in flight.
    Duplicate {
        /// The message's fingerprint, in hex.
        message: String,
        /// What it is.
        describe: String,
    },
    /// A message is lost.
    Drop {
        /// The message's fingerprint, in hex.
        message: String,
        /// What it is.
        describe: String,
    },
}

/// A saved trace: the scope it was found in, the violation, the steps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trace {
    /// [`TRACE_FORMAT`].
    pub format: String,
    /// The scope (nodes, bounds, planted mistakes): the initial state and
    /// every node's configuration follow from it.
    pub scope: Scope,
    /// The violation the last step shows, if any.
    pub violation: Option<Violation>,
    /// The steps from the initial state.
    pub steps: Vec<SavedStep>,
}

fn node_id(index: u8) -> u64 {
    u64::from(index) + 1
}

fn node_index(world: &World, id: u64) -> Result<u8, String> {
    if id == 0 || id as usize > world.slots.len() {
        return Err(format!(
            "node {id} is not in the cluster of {}",
            world.slots.len()
        ));
    }
    Ok((id - 1) as u8)
}

/// `step` as saved, named against `world`, the state it is taken from.
pub(crate) fn save_step(world: &World, step: Step) -> SavedStep {
    let message = |k: u16| {
        let in_flight = &world.network[k as usize];
        (
            format!("{:016x}", in_flight.fingerprint),
            super::world::describe_message(&in_flight.message),
        )
    };
    match step {
        Step::Fire(i) => SavedStep::Fire { node: node_id(i) },
        Step::Sync(i) => SavedStep::Sync { node: node_id(i) },
        Step::Restart(i) => SavedStep::Restart { node: node_id(i) },
        Step::Propose(i) => SavedStep::Propose { node: node_id(i) },
        Step::Read(i) => SavedStep::Read { node: node_id(i) },
        Step::Snapshot(i) => SavedStep::Snapshot { node: node_id(i) },
        Step::Remove(i, target) => SavedStep::Remove {
            node: node_id(i),
            target: node_id(target),
        },
        Step::Deliver(k) => {
            let (message, describe) = message(k);
            SavedStep::Deliver { message, describe }
        }
        Step::Duplicate(k) => {
            let (message, describe) = message(k);
            SavedStep::Duplicate { message, describe }
        }
        Step::Drop(k) => {
            let (message, describe) = message(k);
            SavedStep::Drop { message, describe }
        }
    }
}

/// The step `saved` names, in `world`.
fn load_step(world: &World, saved: &SavedStep) -> Result<Step, String> {
    let find = |fingerprint: &str| -> Result<u16, String> {
        let wanted = u64::from_str_radix(fingerprint, 16)
            .map_err(|_| format!("{fingerprint:?} is not a message fingerprint (hex)"))?;
        world
            .network
            .iter()
            .position(|in_flight| in_flight.fingerprint == wanted)
            .map(|k| k as u16)
            .ok_or_else(|| format!("message {fingerprint} is not in flight here"))
    };
    Ok(match saved {
        SavedStep::Fire { node } => Step::Fire(node_index(world, *node)?),
        SavedStep::Sync { node } => Step::Sync(node_index(world, *node)?),
        SavedStep::Restart { node } => Step::Restart(node_index(world, *node)?),
        SavedStep::Propose { node } => Step::Propose(node_index(world, *node)?),
        SavedStep::Read { node } => Step::Read(node_index(world, *node)?),
        SavedStep::Snapshot { node } => Step::Snapshot(node_index(world, *node)?),
        SavedStep::Remove { node, target } => {
            Step::Remove(node_index(world, *node)?, node_index(world, *target)?)
        }
        SavedStep::Deliver { message, .. } => Step::Deliver(find(message)?),
        SavedStep::Duplicate { message, .. } => Step::Duplicate(find(message)?),
        SavedStep::Drop { message, .. } => Step::Drop(find(message)?),
    })
}

/// Whether `step` is one the scope allows in `world` (a saved trace may
/// have been edited).
fn allowed(world: &World, scope: &Scope, step: Step) -> bool {
    let mut steps = Vec::new();
    world.steps(scope, &mut steps);
    match step {
        // Equal messages are offered once, as the first of them.
        Step::Deliver(k) | Step::Duplicate(k) | Step::Drop(k) => {
            let first = world.network[..k as usize]
                .iter()
                .position(|m| m.fingerprint == world.network[k as usize].fingerprint)
                .unwrap_or(k as usize) as u16;
            let canonical = match step {
                Step::Deliver(_) => Step::Deliver(first),
                Step::Duplicate(_) => Step::Duplicate(first),
                _ => Step::Drop(first),
            };
            steps.contains(&canonical)
        }
        other => steps.contains(&other),
    }
}

/// Builds the saved trace of `steps` from the initial state of `scope`,
/// checking that the path replays to `violation` at its last step.
pub(crate) fn build(scope: &Scope, steps: &[Step], violation: &Violation) -> Result<Trace, String> {
    let mut world = World::initial(scope).map_err(|violation| violation.to_string())?;
    let mut saved = Vec::with_capacity(steps.len());
    for (number, step) in steps.iter().enumerate() {
        saved.push(save_step(&world, *step));
        match world.apply(scope, *step, None) {
            Ok(true) => {}
            Ok(false) => return Err(format!("step {} of the path changes nothing", number + 1)),
            Err(seen) if number + 1 == steps.len() && seen == *violation => {}
            Err(seen) => {
                return Err(format!(
                    "step {} of the path violates {seen} on replay, not {violation}",
                    number + 1
                ))
            }
        }
    }
    Ok(Trace {
        format: TRACE_FORMAT.to_string(),
        scope: scope.clone(),
        violation: Some(violation.clone()),
        steps: saved,
    })
}

/// What a replay found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replayed {
    /// Steps taken.
    pub steps: usize,
    /// The violation, and the step (counted from 1) that showed it.
    pub violation: Option<(usize, Violation)>,
}

/// Runs `trace` again, printing every step to `out`.
pub fn replay(trace: &Trace, out: &mut dyn std::io::Write) -> Result<Replayed, String> {
    if trace.format != TRACE_FORMAT {
        return Err(format!(
            "trace format {:?} is not {TRACE_FORMAT:?}",
            trace.format
        ));
    }
    trace.scope.validate()?;
    let scope = &trace.scope;
    let io = |error: std::io::Error| format!("cannot write the replay: {error}");
    let flags = scope.flags();
    writeln!(
        out,
        "replaying {} steps, scope: {}",
        trace.steps.len(),
        if flags.is_empty() { "defaults" } else { &flags }
    )
    .map_err(io)?;
    let mut world = World::initial(scope).map_err(|violation| violation.to_string())?;
    for (number, saved) in trace.steps.iter().enumerate() {
        let number = number + 1;
        let step = load_step(&world, saved).map_err(|error| format!("step {number}: {error}"))?;
        if !allowed(&world, scope, step) {
            return Err(format!(
                "step {number} ({}) is not allowed by the scope here",
                world.describe_step(step)
            ));
        }
        writeln!(out, "{number:>3}. {}", world.describe_step(step)).map_err(io)?;
        let mut log = StepLog::default();
        match world.apply(scope, step, Some(&mut log)) {
            Ok(true) => {
                for line in &log.lines {
                    writeln!(out, "       {line}").map_err(io)?;
                }
            }
            Ok(false) => {
                return Err(format!(
                    "step {number} changes nothing (its timer never fires)"
                ));
            }
            Err(violation) => {
                for line in &log.lines {
                    writeln!(out, "       {line}").map_err(io)?;
                }
                writeln!(out, "VIOLATION at step {number}: {violation}").map_err(io)?;
                return Ok(Replayed {
                    steps: number,
                    violation: Some((number, violation)),
                });
            }
        }
    }
    writeln!(out, "no violation").map_err(io)?;
    Ok(Replayed {
        steps: trace.steps.len(),
        violation: None,
    })
}

/// Whether `property` is the one a trace says it shows.
pub fn shows(trace: &Trace, property: Property) -> bool {
    trace
        .violation
        .as_ref()
        .is_some_and(|violation| violation.property == property)
}
