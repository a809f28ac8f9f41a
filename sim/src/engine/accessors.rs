//! The accessor check: what a node's public accessors say agrees with
//! what the node did in the step and with what its other accessors say.
//!
//! Hosts and operators read these accessors (a status page shows the
//! leader, the log's extent, the held snapshot; a host prunes snapshot
//! files by `snapshot_position`; a client library routes by `leader`), so
//! an accessor that lies is a real bug even where the protocol itself is
//! untouched. After every step of a node, with the step's actions:
//!
//! * `id()` and `config().id` name the host's node;
//! * `hard_state()` holds `term()` and `voted_for()`;
//! * a leader's `leader()` is itself; a follower's never names itself (a
//!   deposed leader must stop naming itself); a (pre-)candidate knows no
//!   leader;
//! * the log's extent is one story: `first_index()` is one past
//!   `log_base()`, `log_len()` counts the entries between the base and
//!   `last_index()`, `last_position()` is `last_index()` with
//!   `term_at(last_index())`, and `entry(last_index())` is that entry;
//! * a step that took or installed a snapshot leaves `snapshot_position()`
//!   naming it, at `latest_snapshot_index()`;
//! * a step that started a leadership transfer that did not end in the
//!   same step leaves `transfer_target()` naming a node; only a leader
//!   names one;
//! * after a step that handed the host a write, `unpersisted_writes()` is
//!   at least one;
//! * an `Apply` leaves `apply_emitted_index()` at its last entry, within
//!   `commit_index()`;
//! * a leader's `progress(id)` is what `progress_all()` says of `id`, and
//!   a leader of a configuration with other members tracks at least one.
//!
//! The readings are taken into [`Readings`] first, so the rules are plain
//! comparisons of numbers, testable on readings made up to break each one.

use concord::{Action, Index, LogPosition, Node, NodeId, Role, Term};

/// What the step showed from outside: the facts the rules compare the
/// accessors with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct StepFacts {
    /// The node's id, as the host knows it.
    pub(super) id: NodeId,
    /// The step took a snapshot (`snapshots_taken` moved) or installed one.
    pub(super) snapshotted: bool,
    /// The step started a leadership transfer (`transfers_started` moved).
    pub(super) transfer_started: bool,
    /// The step emitted an `Action::Transfer` (a transfer ended).
    pub(super) transfer_ended: bool,
    /// The step emitted a `Persist` or `PersistSnapshot`.
    pub(super) wrote: bool,
    /// The last index of the step's last `Apply`, if any.
    pub(super) applied_to: Option<Index>,
}

impl StepFacts {
    /// The facts of a step that emitted `actions`, given whether the
    /// node's snapshot and transfer counters moved in it.
    pub(super) fn of(
        id: NodeId,
        actions: &[Action],
        snapshotted: bool,
        transfer_started: bool,
    ) -> StepFacts {
        let mut facts = StepFacts {
            id,
            snapshotted,
            transfer_started,
            ..StepFacts::default()
        };
        for action in actions {
            match action {
                Action::Transfer { .. } => facts.transfer_ended = true,
                Action::Persist { .. } | Action::PersistSnapshot { .. } => facts.wrote = true,
                Action::Apply { entries } => {
                    if let Some(last) = entries.last() {
                        facts.applied_to = Some(last.index);
                    }
                }
                _ => {}
            }
        }
        facts
    }
}

/// Every accessor the rules read, read once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Readings {
    pub(super) id: NodeId,
    pub(super) config_id: NodeId,
    pub(super) role: Role,
    pub(super) term: Term,
    pub(super) voted_for: Option<NodeId>,
    pub(super) hard_state: (Term, Option<NodeId>),
    pub(super) leader: Option<NodeId>,
    pub(super) first_index: Index,
    pub(super) log_base: LogPosition,
    pub(super) log_len: u64,
    pub(super) last_index: Index,
    pub(super) last_position: LogPosition,
    /// `term_at(last_index())`.
    pub(super) last_term_at: Option<Term>,
    /// `entry(last_index())`'s position, when the log holds entries.
    pub(super) last_entry: Option<LogPosition>,
    pub(super) snapshot_position: Option<LogPosition>,
    pub(super) latest_snapshot_index: Index,
    pub(super) transfer_target: Option<NodeId>,
    pub(super) unpersisted_writes: usize,
    pub(super) apply_emitted_index: Index,
    pub(super) commit_index: Index,
    /// Followers `progress_all()` lists.
    pub(super) progress_count: usize,
    /// A follower whose `progress(id)` differs from `progress_all()`'s.
    pub(super) progress_mismatch: Option<NodeId>,
    /// Members of the node's configuration other than itself (read only
    /// when `progress_all()` lists none: it builds a set).
    pub(super) other_members: usize,
}

impl Readings {
    /// Reads `node`'s accessors. The progress lists are read only for a
    /// leader (they are empty otherwise, and cost a walk of the followers).
    pub(super) fn of(node: &Node) -> Readings {
        let id = node.id();
        let role = node.role();
        let (mut progress_count, mut progress_mismatch, mut other_members) = (0, None, 0);
        if role == Role::Leader {
            for (follower, view) in node.progress_all() {
                progress_count += 1;
                if node.progress(follower) != Some(view) && progress_mismatch.is_none() {
                    progress_mismatch = Some(follower);
                }
            }
            if progress_count == 0 {
                other_members = node
                    .membership()
                    .members()
                    .into_iter()
                    .filter(|&member| member != id)
                    .count();
            }
        }
        let hard_state = node.hard_state();
        let last_index = node.last_index();
        let log_base = node.log_base();
        // One struct expression as the value returned: built in the
        // caller's slot, where a struct filled in and then returned was
        // copied out (a few hundred bytes on every step).
        Readings {
            id,
            config_id: node.config().id,
            role,
            term: node.term(),
            voted_for: node.voted_for(),
            hard_state: (hard_state.term, hard_state.voted_for),
            leader: node.leader(),
            first_index: node.first_index(),
            log_base,
            log_len: node.log_len(),
            last_index,
            last_position: node.last_position(),
            last_term_at: node.term_at(last_index),
            last_entry: (last_index > log_base.index)
                .then(|| node.entry(last_index).map(|entry| entry.position()))
                .flatten(),
            snapshot_position: node.snapshot_position(),
            latest_snapshot_index: node.latest_snapshot_index(),
            transfer_target: node.transfer_target(),
            unpersisted_writes: node.unpersisted_writes(),
            apply_emitted_index: node.apply_emitted_index(),
            commit_index: node.commit_index(),
            progress_count,
            progress_mismatch,
            other_members,
        }
    }
}

/// Checks the readings taken after a step against the step's facts.
pub(super) fn check(r: &Readings, facts: &StepFacts) -> Result<(), String> {
    let id = facts.id;
    if r.id != id || r.config_id != id {
        return Err(format!(
            "node {id} answers id() = {} and config().id = {}",
            r.id, r.config_id
        ));
    }
    if r.hard_state != (r.term, r.voted_for) {
        return Err(format!(
            "hard_state() says term {} vote {:?}, but term() is {} and voted_for() {:?}",
            r.hard_state.0, r.hard_state.1, r.term, r.voted_for
        ));
    }
    match r.role {
        Role::Leader if r.leader != Some(id) => {
            return Err(format!(
                "leads term {} but leader() answers {:?}",
                r.term, r.leader
            ));
        }
        Role::Follower if r.leader == Some(id) => {
            return Err(format!(
                "is {:?} in term {} but leader() names itself",
                r.role, r.term
            ));
        }
        Role::PreCandidate | Role::Candidate if r.leader.is_some() => {
            return Err(format!(
                "is {:?} in term {} but leader() answers {:?}",
                r.role, r.term, r.leader
            ));
        }
        _ => {}
    }
    if r.first_index != r.log_base.index + 1
        || r.log_len != r.last_index.wrapping_sub(r.log_base.index)
        || r.last_position.index != r.last_index
        || r.last_term_at != Some(r.last_position.term)
    {
        return Err(format!(
            "the log's accessors disagree: log_base() {:?}, first_index() {}, log_len() {}, last_index() {}, last_position() {:?}, term_at(last_index()) {:?}",
            r.log_base, r.first_index, r.log_len, r.last_index, r.last_position, r.last_term_at
        ));
    }
    if r.last_index > r.log_base.index && r.last_entry != Some(r.last_position) {
        return Err(format!(
            "entry(last_index()) is at {:?}, but last_position() is {:?}",
            r.last_entry, r.last_position
        ));
    }
    if facts.snapshotted
        && r.snapshot_position.map(|position| position.index) != Some(r.latest_snapshot_index)
    {
        return Err(format!(
            "took or installed a snapshot in this step, yet snapshot_position() is {:?} and latest_snapshot_index() {}",
            r.snapshot_position, r.latest_snapshot_index
        ));
    }
    if let Some(target) = r.transfer_target {
        if r.role != Role::Leader || target == id {
            return Err(format!(
                "transfer_target() names {target} while the node is {:?} in term {}: only a leader hands leadership, to another node",
                r.role, r.term
            ));
        }
    } else if facts.transfer_started && !facts.transfer_ended && r.role == Role::Leader {
        return Err(
            "started a leadership transfer that did not end in this step, yet transfer_target() is None"
                .to_string(),
        );
    }
    if facts.wrote && r.unpersisted_writes == 0 {
        return Err(
            "handed the host a write in this step, yet unpersisted_writes() is 0".to_string(),
        );
    }
    if let Some(to) = facts.applied_to {
        if r.apply_emitted_index != to || to > r.commit_index {
            return Err(format!(
                "handed out entries up to {to} to apply, yet apply_emitted_index() is {} and commit_index() {}",
                r.apply_emitted_index, r.commit_index
            ));
        }
    }
    if let Some(follower) = r.progress_mismatch {
        return Err(format!(
            "progress({follower}) differs from what progress_all() says of {follower}"
        ));
    }
    if r.role == Role::Leader && r.progress_count == 0 && r.other_members > 0 {
        return Err(format!(
            "leads a configuration with {} other members, yet progress_all() lists none",
            r.other_members
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Readings of a leader of term 3 holding entries 5..=9 after a
    /// snapshot at 4, that agree with each other.
    fn leader() -> Readings {
        Readings {
            id: 2,
            config_id: 2,
            role: Role::Leader,
            term: 3,
            voted_for: Some(2),
            hard_state: (3, Some(2)),
            leader: Some(2),
            first_index: 5,
            log_base: LogPosition::new(4, 2),
            log_len: 5,
            last_index: 9,
            last_position: LogPosition::new(9, 3),
            last_term_at: Some(3),
            last_entry: Some(LogPosition::new(9, 3)),
            snapshot_position: Some(LogPosition::new(4, 2)),
            latest_snapshot_index: 4,
            transfer_target: None,
            unpersisted_writes: 1,
            apply_emitted_index: 7,
            commit_index: 8,
            progress_count: 2,
            progress_mismatch: None,
            other_members: 2,
        }
    }

    fn facts() -> StepFacts {
        StepFacts {
            id: 2,
            snapshotted: true,
            transfer_started: false,
            transfer_ended: false,
            wrote: true,
            applied_to: Some(7),
        }
    }

    #[test]
    fn readings_that_agree_pass() {
        assert_eq!(check(&leader(), &facts()), Ok(()));
    }

    /// Each rule, broken alone, fails the check with a message naming the
    /// accessor.
    #[test]
    fn each_lying_accessor_is_caught() {
        type Break = fn(&mut Readings, &mut StepFacts);
        let cases: [(&str, Break); 15] = [
            ("id()", |r, _| r.id = 0),
            ("hard_state()", |r, _| r.voted_for = None),
            ("leader()", |r, _| r.leader = None),
            ("leader()", |r, _| {
                r.role = Role::Candidate;
                r.progress_count = 0;
            }),
            ("leader()", |r, _| {
                r.role = Role::Follower;
                r.progress_count = 0;
            }),
            ("first_index()", |r, _| r.first_index = 0),
            ("log_len()", |r, _| r.log_len = 1),
            ("last_position()", |r, _| {
                r.last_position = LogPosition::ZERO
            }),
            ("entry(last_index())", |r, _| r.last_entry = None),
            ("snapshot_position()", |r, _| r.snapshot_position = None),
            ("transfer_target()", |r, f| {
                f.transfer_started = true;
                r.transfer_target = None;
            }),
            ("transfer_target()", |r, _| {
                r.role = Role::Follower;
                r.leader = Some(1);
                r.transfer_target = Some(0);
            }),
            ("unpersisted_writes()", |r, _| r.unpersisted_writes = 0),
            ("apply_emitted_index()", |r, _| r.apply_emitted_index = 0),
            ("progress_all()", |r, _| r.progress_count = 0),
        ];
        for (accessor, break_it) in cases {
            let (mut readings, mut step) = (leader(), facts());
            break_it(&mut readings, &mut step);
            let message = check(&readings, &step).expect_err(accessor);
            assert!(
                message.contains(accessor),
                "{accessor}: the message does not name it: {message}"
            );
        }
    }

    #[test]
    fn a_transfer_that_ended_in_its_step_names_no_target() {
        let mut step = facts();
        step.transfer_started = true;
        step.transfer_ended = true;
        assert_eq!(check(&leader(), &step), Ok(()));
    }
}
