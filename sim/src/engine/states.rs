//! Replica states judged by what the state machine says is its state
//! ([`StateMachine::canonical_state`]), never by the bytes of its
//! snapshots, which need not be canonical (a state machine may write a
//! `HashMap` in its iteration order).
//!
//! Three rules, each failure naming the rule, the index, the nodes, the
//! first differing byte and a hint:
//!
//! * `snapshot-round-trip`: a snapshot restored into a fresh state machine
//!   gives the canonical state of the state machine it was taken from
//!   (what "restoring it must give a state machine that behaves
//!   identically" asks, seen through the canonical state);
//! * `snapshot-agreement`: two snapshots taken at one index hold one
//!   canonical state;
//! * `replica-agreement` (end of the run): replicas that applied the same
//!   prefix hold one canonical state.
//!
//! The canonical state defaults to the snapshot bytes, so a mistake in
//! `snapshot()` itself (a balance written twice, two fields swapped) is
//! compared with itself and can pass, or be blamed on the wrong part of
//! the state. So the first two rules also ask both states the reads the
//! run has served (`read_probes`, through `StateMachine::query`), an
//! answer derived from the state itself and not from its snapshot bytes,
//! and a failure names the first read, in the workload's words, that the
//! two answer differently.

use bytes::Bytes;

use concord::session::WithSessions;
use concord::state_machine::StateMachine;
use concord::{Index, NodeId};

use super::FailureKind;
use super::Simulation;
use crate::workload::Workload;

/// Where two canonical states first differ, readably: the offset, both
/// bytes (or which one ended), both lengths, and, when one is a
/// permutation of the other, the likely cause.
pub(crate) fn describe_difference(
    (left_name, left): (&str, &[u8]),
    (right_name, right): (&str, &[u8]),
) -> String {
    let offset = left
        .iter()
        .zip(right)
        .position(|(a, b)| a != b)
        .unwrap_or(left.len().min(right.len()));
    let byte_at = |bytes: &[u8]| match bytes.get(offset) {
        Some(byte) => format!("{byte:#04x}"),
        None => "its end".to_string(),
    };
    let context = |bytes: &[u8]| {
        let from = offset.saturating_sub(8);
        let to = (offset + 8).min(bytes.len());
        crate::engine::show_bytes(&bytes[from.min(to)..to])
    };
    let mut text = format!(
        "they first differ at byte {offset} ({} on {left_name}, {} on {right_name}; {} and {} bytes in all; around it: {} and {})",
        byte_at(left),
        byte_at(right),
        left.len(),
        right.len(),
        context(left),
        context(right),
    );
    if left.len() == right.len() {
        let (mut a, mut b) = (left.to_vec(), right.to_vec());
        a.sort_unstable();
        b.sort_unstable();
        if a == b {
            text.push_str(
                "; they hold the same bytes in another order: iterating a HashMap? Write the state in a canonical order (sort the keys, or keep a BTreeMap), or override StateMachine::canonical_state to return it so",
            );
        }
    }
    text
}

/// The most distinct reads kept to compare states by their answers: each
/// snapshot costs two queries per read kept.
pub(crate) const READ_PROBES_MAX: usize = 64;

/// A state machine's state when a snapshot of it was taken, to judge the
/// snapshot's bytes against: its canonical state and its answers to the
/// remembered reads.
pub(super) struct Taken {
    pub(super) canonical: Bytes,
    pub(super) answers: Vec<(Bytes, Option<Bytes>)>,
}

impl<S: StateMachine, W: Workload> Simulation<S, W> {
    /// Keeps `command`, a read a client issued (whatever path serves it),
    /// to ask states the simulator later compares (the first `READ_PROBES_MAX` distinct ones).
    pub(super) fn remember_read_probe(&mut self, command: &Bytes) {
        if self.read_probes.len() < READ_PROBES_MAX {
            self.read_probes.insert(command.clone());
        }
        debug_assert!(self.read_probes.len() <= READ_PROBES_MAX);
    }

    /// The first remembered read that `left` and `right` answer
    /// differently, described in the workload's words with both answers.
    fn first_read_difference(
        &self,
        (left_name, left): (&str, &WithSessions<S>),
        (right_name, right): (&str, &WithSessions<S>),
    ) -> Option<String> {
        self.read_probes.iter().find_map(|command| {
            let (a, b) = (left.query(command), right.query(command));
            (a != b)
                .then(|| self.describe_read_difference(command, (left_name, a), (right_name, b)))
        })
    }

    /// The read `command` answered `a` on `left_name` and `b` on
    /// `right_name`, in the workload's words.
    fn describe_read_difference(
        &self,
        command: &Bytes,
        (left_name, a): (&str, Option<Bytes>),
        (right_name, b): (&str, Option<Bytes>),
    ) -> String {
        let show = |answer: Option<Bytes>| match answer {
            Some(bytes) => crate::engine::show_bytes(&bytes),
            None => "no answer".to_string(),
        };
        format!(
            "the read {} answers {} on {left_name} and {} on {right_name}",
            self.workload.describe(command),
            show(a),
            show(b)
        )
    }

    /// Node `index`'s state now, as a snapshot of it is judged
    /// ([`Simulation::judge_snapshot`]): taken when the snapshot's state is
    /// (at once for an in-memory state machine, when the view is taken for
    /// an on-disk one, whose view is read later).
    pub(super) fn state_taken(&self, index: usize) -> Taken {
        let live = self.hosts[index].sm.live();
        Taken {
            canonical: live.canonical_state(),
            answers: self
                .read_probes
                .iter()
                .map(|command| (command.clone(), live.query(command)))
                .collect(),
        }
    }

    /// A fresh state machine for node `index`, as a restart builds one.
    fn fresh_state_machine(&mut self, index: usize) -> WithSessions<S> {
        let id = index as NodeId + 1;
        WithSessions::new((self.make_sm)(id), self.config.table_sessions())
    }

    /// Node `index` took a snapshot at `at` whose state-machine bytes are
    /// `state`, of the state `taken` (with `book`, the host's book then):
    /// restored into a fresh state machine they must give the canonical
    /// state taken, and every snapshot at `at` must hold one canonical
    /// state. Returns the canonical state (the book wrapped in front when
    /// host entries are on), or `None` after a failure.
    pub(super) fn judge_snapshot(
        &mut self,
        index: usize,
        at: Index,
        state: &[u8],
        taken: &Taken,
        book: &super::book::Book,
    ) -> Option<Bytes> {
        let canonical = taken.canonical.clone();
        let mut fresh = self.fresh_state_machine(index);
        let restored = match fresh.restore(state) {
            Ok(()) => fresh.canonical_state(),
            Err(error) => {
                let message = format!(
                    "rule snapshot-round-trip: n{}'s snapshot at index {at} cannot be restored into a fresh state machine: {error}",
                    index + 1
                );
                self.fail(FailureKind::StateMachineSafety, Some(index), message);
                return None;
            }
        };
        let node = format!("n{}", index + 1);
        let answers = taken.answers.iter().find_map(|(command, answer)| {
            let restored = fresh.query(command);
            (*answer != restored).then(|| {
                self.describe_read_difference(
                    command,
                    (&node, answer.clone()),
                    ("the restored copy", restored),
                )
            })
        });
        if restored != canonical || answers.is_some() {
            let mut message = format!(
                "rule snapshot-round-trip: {node}'s snapshot at index {at}, restored into a fresh state machine, gives another state than the one it was taken from"
            );
            if let Some(answers) = answers {
                // The answers come from the states, not from snapshot
                // bytes: they name the part of the state that was lost
                // even when `snapshot()` is the mistake.
                message.push_str(&format!(
                    ": {answers} (answers of StateMachine::query, independent of the snapshot bytes: snapshot() or restore() loses or moves this part of the state)"
                ));
            }
            if restored != canonical {
                message.push_str(&format!(
                    "; compared by StateMachine::canonical_state (by default the snapshot bytes): {}",
                    describe_difference(
                        (&format!("{node} before"), &canonical),
                        ("the restored copy", &restored)
                    )
                ));
            }
            self.fail(FailureKind::StateMachineSafety, Some(index), message);
            return None;
        }
        let canonical = match &self.host_entries {
            Some(_) => super::book::wrap_snapshot(book, &canonical),
            None => canonical,
        };
        match self.snapshot_states.get(&at) {
            Some((other, other_state)) if *other_state != canonical => {
                let message = format!(
                    "rule snapshot-agreement: n{} and n{} took snapshots at index {at} with different states (compared by StateMachine::canonical_state, by default the snapshot bytes): {}",
                    other + 1,
                    index + 1,
                    describe_difference(
                        (&format!("n{}", other + 1), other_state),
                        (&format!("n{}", index + 1), &canonical)
                    )
                );
                self.fail(FailureKind::StateMachineSafety, Some(index), message);
                return None;
            }
            Some(_) => {}
            None => {
                self.snapshot_states.insert(at, (index, canonical.clone()));
            }
        }
        Some(canonical)
    }

    /// End of the run: replicas that applied the same prefix hold one
    /// canonical state.
    pub(super) fn judge_final_states(&mut self) {
        let mut states: std::collections::BTreeMap<Index, (usize, Bytes)> =
            std::collections::BTreeMap::new();
        for index in 0..self.hosts.len() {
            let Some(node) = self.hosts[index].node.as_ref() else {
                continue;
            };
            // A witness holds no state machine (the host fails the run if it
            // is ever handed entries to apply).
            if node.is_witness_node() {
                continue;
            }
            // An on-disk state machine may stand past what its node was
            // told (a restart's durable image, until the node hands those
            // entries out again): its state is at its own applied index.
            let applied = match self.hosts[index].sm.durable() {
                Some(sm) => sm.applied_index(),
                None => node.applied_index(),
            };
            let state = self.hosts[index].sm.live().canonical_state();
            let Some((other, other_state)) = states.get(&applied) else {
                states.insert(applied, (index, state));
                continue;
            };
            let (left, right) = (format!("n{}", other + 1), format!("n{}", index + 1));
            let answers = self.first_read_difference(
                (&left, self.hosts[*other].sm.live()),
                (&right, self.hosts[index].sm.live()),
            );
            if *other_state != state || answers.is_some() {
                let mut message = format!(
                    "rule replica-agreement: {left} and {right} both applied up to index {applied} but their state machines differ"
                );
                if let Some(answers) = answers {
                    message.push_str(&format!(
                        ": {answers} (answers of StateMachine::query, independent of the snapshot bytes)"
                    ));
                }
                if *other_state != state {
                    message.push_str(&format!(
                        "; compared by StateMachine::canonical_state (by default the snapshot bytes): {}",
                        describe_difference((&left, other_state), (&right, &state))
                    ));
                }
                self.fail(FailureKind::StateMachineSafety, Some(index), message);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_differing_byte_is_named() {
        let text = describe_difference(("n1", b"abcdef"), ("n2", b"abXdef"));
        assert!(text.contains("byte 2 (0x63 on n1, 0x58 on n2"), "{text}");
        assert!(!text.contains("HashMap"), "{text}");
        let shorter = describe_difference(("n1", b"abc"), ("n2", b"ab"));
        assert!(
            shorter.contains("byte 2 (0x63 on n1, its end on n2"),
            "{shorter}"
        );
    }

    #[test]
    fn a_permutation_is_blamed_on_iteration_order() {
        let text = describe_difference(("n1", b"k1v1k2v2"), ("n2", b"k2v2k1v1"));
        assert!(text.contains("byte 1 (0x31 on n1, 0x32 on n2"), "{text}");
        assert!(text.contains("iterating a HashMap?"), "{text}");
    }
}
