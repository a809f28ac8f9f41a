//! The properties checked on every explored state, and the ghost state
//! they need: what was ever committed (and in which term), who led each
//! term, and what each read must reflect. The ghost state is part of the
//! explored state (and of its fingerprint), so merging two states never
//! merges two different histories the checks would judge differently.

use std::collections::BTreeMap;
use std::fmt;

use concord::{Entry, Index, Node, NodeId, Role, Term};
use serde::{Deserialize, Serialize};

/// A property the explorer checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Property {
    /// At most one leader per term, over the whole history.
    ElectionSafety,
    /// Two logs holding an entry of the same index and term hold the same
    /// entries up to it; a committed entry is the same on every node and
    /// is never replaced; a commit index never goes back.
    LogMatching,
    /// A leader holds every entry committed in an earlier term.
    LeaderCompleteness,
    /// Every node applies the committed entries, in order, and nothing
    /// else (a restored snapshot holds exactly the committed prefix).
    StateMachineSafety,
    /// No vote grant, append acknowledgement or commit before the write it
    /// promises is durable (synced by the host): a vote grant's term and
    /// vote are on the voter's disk, an acknowledged index is on the
    /// follower's disk, and an index a leader commits is on the disks of a
    /// majority of its configuration.
    Durability,
    /// A read served reflects every entry committed before it started.
    ReadSafety,
    /// The core panicked (one of its own assertions, or a broken host
    /// contract), or refused to start from what its disk held.
    CorePanic,
    /// A step broke a step rule (`crate::observe`; the detail names the
    /// rule).
    StepRule,
}

impl Property {
    /// The property's name as printed and saved.
    pub fn name(self) -> &'static str {
        match self {
            Property::ElectionSafety => "election-safety",
            Property::LogMatching => "log-matching",
            Property::LeaderCompleteness => "leader-completeness",
            Property::StateMachineSafety => "state-machine-safety",
            Property::Durability => "durability",
            Property::ReadSafety => "read-safety",
            Property::CorePanic => "core-panic",
            Property::StepRule => "step-rule",
        }
    }
}

impl fmt::Display for Property {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A property found violated, and how.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// Which property.
    pub property: Property,
    /// What was seen.
    pub detail: String,
}

impl Violation {
    pub(crate) fn new(property: Property, detail: String) -> Self {
        Violation { property, detail }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.property, self.detail)
    }
}

/// An entry known committed, and the term of the node that first reported
/// it committed (the leader that committed it: followers learn commits
/// only from the leader of their term).
#[derive(Clone, Debug)]
pub(crate) struct Committed {
    pub(crate) entry: Entry,
    pub(crate) commit_term: Term,
}

/// What became of a read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum ReadOutcome {
    Pending,
    Served,
    Refused,
}

/// A read a client issued.
#[derive(Clone, Debug)]
pub(crate) struct GhostRead {
    pub(crate) node: NodeId,
    pub(crate) id: u64,
    /// Entries known committed (anywhere) when the read started.
    pub(crate) committed_before: Index,
    pub(crate) outcome: ReadOutcome,
}

/// The history the checks need, beyond the nodes' own state.
#[derive(Clone, Debug, Default)]
pub(crate) struct Ghost {
    /// The leader of each term seen so far.
    pub(crate) leaders: BTreeMap<Term, NodeId>,
    /// `committed[i - 1]`: committed entry `i`.
    pub(crate) committed: Vec<Committed>,
    pub(crate) reads: Vec<GhostRead>,
}

impl Ghost {
    /// A node announced (or is seen holding) leadership of `term`.
    pub(crate) fn leader(&mut self, id: NodeId, term: Term) -> Result<(), Violation> {
        match self.leaders.get(&term) {
            Some(other) if *other != id => Err(Violation::new(
                Property::ElectionSafety,
                format!("n{other} and n{id} are both leader of term {term}"),
            )),
            Some(_) => Ok(()),
            None => {
                self.leaders.insert(term, id);
                Ok(())
            }
        }
    }

    /// `node`'s commit index moved from `from` to its current one: the
    /// newly committed entries agree with what was committed before, or
    /// extend it.
    pub(crate) fn commit_moved(&mut self, node: &Node, from: Index) -> Result<(), Violation> {
        let id = node.id();
        let commit = node.commit_index();
        if commit < from {
            return Err(Violation::new(
                Property::LogMatching,
                format!("n{id}'s commit index went back from {from} to {commit}"),
            ));
        }
        let base = node.log_base();
        if base.index > from && base.index > 0 {
            // Entries up to the base are covered by a snapshot, whose last
            // entry must be the committed one.
            match self.committed.get(base.index as usize - 1) {
                Some(known) if known.entry.term == base.term => {}
                known => {
                    return Err(Violation::new(
                        Property::LogMatching,
                        format!(
                            "n{id}'s log continues after a snapshot at index {} term {}, but the committed entry there has term {:?}",
                            base.index,
                            base.term,
                            known.map(|known| known.entry.term)
                        ),
                    ))
                }
            }
        }
        for index in from.max(base.index) + 1..=commit {
            let Some(entry) = node.entry(index) else {
                return Err(Violation::new(
                    Property::LogMatching,
                    format!("n{id}'s commit index is {commit} but it holds no entry {index}"),
                ));
            };
            match self.committed.get(index as usize - 1) {
                Some(known) if known.entry != *entry => {
                    return Err(Violation::new(
                        Property::LogMatching,
                        format!(
                            "n{id} committed entry {index} of term {}, but entry {index} of term {} was committed before",
                            entry.term, known.entry.term
                        ),
                    ));
                }
                Some(_) => {}
                None => {
                    debug_assert_eq!(self.committed.len() as Index, index - 1);
                    self.committed.push(Committed {
                        entry: entry.clone(),
                        commit_term: node.term(),
                    });
                }
            }
        }
        Ok(())
    }

    /// A leader holds every entry committed in a term before its own.
    pub(crate) fn leader_complete(&self, node: &Node) -> Result<(), Violation> {
        if node.role() != Role::Leader {
            return Ok(());
        }
        let base = node.log_base();
        for (position, committed) in self.committed.iter().enumerate() {
            if committed.commit_term >= node.term() {
                continue;
            }
            let index = position as Index + 1;
            let holds = index < base.index || node.term_at(index) == Some(committed.entry.term);
            if !holds {
                return Err(Violation::new(
                    Property::LeaderCompleteness,
                    format!(
                        "n{} leads term {} without entry {index} (term {}), committed in term {}; it holds term {:?} there",
                        node.id(),
                        node.term(),
                        committed.entry.term,
                        committed.commit_term,
                        node.term_at(index)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// An applied entry is the committed one at its index.
    pub(crate) fn applied(&self, id: NodeId, entry: &Entry) -> Result<(), Violation> {
        match self.committed.get((entry.index as usize).wrapping_sub(1)) {
            Some(known) if known.entry == *entry => Ok(()),
            known => Err(Violation::new(
                Property::StateMachineSafety,
                format!(
                    "n{id} applies entry {} of term {}, but the committed entry there is {:?}",
                    entry.index,
                    entry.term,
                    known.map(|known| known.entry.term)
                ),
            )),
        }
    }
}

/// Log matching between two logs: where both hold an entry of the same
/// index and term, both hold the same entries up to it (as far as both
/// still hold them).
pub(crate) fn logs_match(a: &Node, b: &Node) -> Result<(), Violation> {
    let low = a.log_base().index.max(b.log_base().index);
    let high = a.last_index().min(b.last_index());
    let mut agreed = None;
    for index in (low + 1..=high).rev() {
        if a.term_at(index).is_some() && a.term_at(index) == b.term_at(index) {
            agreed = Some(index);
            break;
        }
    }
    let Some(agreed) = agreed else {
        return Ok(());
    };
    for index in low + 1..=agreed {
        if a.entry(index) != b.entry(index) {
            return Err(Violation::new(
                Property::LogMatching,
                format!(
                    "n{} and n{} both hold entry {agreed} of term {:?}, but differ at entry {index} (terms {:?} and {:?}, or the payloads)",
                    a.id(),
                    b.id(),
                    a.term_at(agreed),
                    a.term_at(index),
                    b.term_at(index)
                ),
            ));
        }
    }
    Ok(())
}
