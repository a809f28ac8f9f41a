//! Raft's safety properties, checked incrementally after every node step.
//!
//! The checker keeps the cluster-wide committed log (every entry some node
//! has reported committed, with its term and a hash of its payload) and
//! the response each applied index produced. Each check costs O(1) per
//! step plus O(entries newly committed or applied), except leader
//! completeness, which walks the committed log once per election.

use std::collections::BTreeMap;

use bytes::Bytes;

use concord::{Entry, EntryPayload, Index, Node, Term};

use crate::engine::FailureKind;
use crate::trace::hash_bytes;

type Violation = (FailureKind, String);

fn payload_hash(entry: &Entry) -> u64 {
    match &entry.payload {
        EntryPayload::Command(bytes) => hash_bytes(bytes),
        EntryPayload::Noop => 1,
        _ => 2,
    }
}

/// Why applying an entry failed the run.
#[derive(Debug)]
pub(crate) enum ApplyError {
    /// A check failed (the message says which).
    Violation(Violation),
    /// Another node (`other`, by index) computed `other_response` at this
    /// index: the caller names the command and both responses.
    Diverged {
        other: usize,
        other_response: Option<Bytes>,
    },
}

pub(crate) struct Safety {
    /// Leader of each term seen so far (node index).
    leaders: BTreeMap<Term, usize>,
    /// `committed[i - 1]` = (term, payload hash) of committed entry `i`.
    committed: Vec<(Term, u64)>,
    /// `commit_terms[i - 1]` = term of the node that first reported entry
    /// `i` committed: the leader that committed it, whose term is the
    /// entry's commit term (followers learn of commits only from it).
    commit_terms: Vec<Term>,
    /// `applied[i - 1]` = the response computed at index `i` (if the
    /// entry has one) and the first node that computed it.
    applied: Vec<Option<(usize, Option<Bytes>)>>,
    /// Commit index last seen per node, within its current incarnation.
    last_commit: Vec<Index>,
    /// `entries[i - 1]` = committed entry `i` itself, when kept
    /// ([`Safety::keep_entries`]: the reference replica of durable runs).
    entries: Option<Vec<Entry>>,
}

impl Safety {
    pub(crate) fn new(nodes: usize) -> Self {
        Safety {
            leaders: BTreeMap::new(),
            committed: Vec::new(),
            commit_terms: Vec::new(),
            applied: Vec::new(),
            last_commit: vec![0; nodes],
            entries: None,
        }
    }

    /// Keeps every committed entry from now on (call before the run).
    pub(crate) fn keep_entries(&mut self) {
        self.entries.get_or_insert_with(Vec::new);
    }

    /// Committed entry `index`, when entries are kept.
    pub(crate) fn committed_entry(&self, index: Index) -> Option<&Entry> {
        let slot = usize::try_from(index.checked_sub(1)?).ok()?;
        self.entries.as_ref()?.get(slot)
    }

    pub(crate) fn committed_len(&self) -> Index {
        self.committed.len() as Index
    }

    pub(crate) fn committed_term(&self, index: Index) -> Option<Term> {
        if index == 0 {
            return None;
        }
        self.committed
            .get(index as usize - 1)
            .map(|(term, _)| *term)
    }

    /// A host joined the run (a fresh node after a forced recovery).
    pub(crate) fn add_node(&mut self) {
        self.last_commit.push(0);
    }

    /// A forced recovery: the committed entries from `diverged_at` on
    /// (which the survivor did not hold) are gone, with the responses
    /// applied there, and the leaders of terms from `forced_term` on (only
    /// lost nodes can have led them) are forgotten. What is relaxed, and
    /// why, is argued in `engine::forced`.
    pub(crate) fn forget_from(&mut self, diverged_at: Index, forced_term: Term) {
        let keep = diverged_at.saturating_sub(1) as usize;
        self.committed.truncate(keep);
        self.commit_terms.truncate(keep);
        self.applied.truncate(keep);
        if let Some(entries) = self.entries.as_mut() {
            entries.truncate(keep);
        }
        let _ = self.leaders.split_off(&forced_term);
    }

    pub(crate) fn on_restart(&mut self, node: usize) {
        self.last_commit[node] = 0;
    }

    /// Commit never goes back; newly committed entries agree with what
    /// every other node committed at those indices (log matching on the
    /// committed prefix, and no committed entry is ever replaced).
    ///
    /// Most steps move no commit index: that case is decided inline, and
    /// the walk of newly committed entries is a call of its own.
    #[inline]
    pub(crate) fn after_step(&mut self, index: usize, node: &Node) -> Result<(), Violation> {
        let commit = node.commit_index();
        let last = self.last_commit[index];
        if commit == last {
            return Ok(());
        }
        self.commit_moved(index, node, commit, last)
    }

    /// [`Safety::after_step`] for a commit index that moved from `last` to
    /// `commit`.
    fn commit_moved(
        &mut self,
        index: usize,
        node: &Node,
        commit: Index,
        last: Index,
    ) -> Result<(), Violation> {
        if commit < last {
            return Err((
                FailureKind::CommitRegressed,
                format!("commit index went back from {last} to {commit}"),
            ));
        }
        // Entries up to the log's base are covered by a snapshot (taken
        // here, installed from a leader, or recovered): its last entry must
        // be the committed one, so no committed entry is lost under it.
        let base = node.log_base();
        if base.index > last && self.committed_term(base.index) != Some(base.term) {
            return Err((
                FailureKind::LogMatching,
                format!(
                    "the log continues after a snapshot at {base:?}, but the committed entry there has term {:?}",
                    self.committed_term(base.index)
                ),
            ));
        }
        for i in last.max(base.index) + 1..=commit {
            let Some(entry) = node.entry(i) else {
                return Err((
                    FailureKind::LogMatching,
                    format!("commit index is {commit} but entry {i} is not in the log"),
                ));
            };
            let fingerprint = (entry.term, payload_hash(entry));
            match self.committed.get(i as usize - 1) {
                Some(known) if *known != fingerprint => {
                    return Err((
                        FailureKind::LogMatching,
                        format!(
                            "committed entry {i} has term {} here but term {} (or another payload) was committed there before",
                            entry.term, known.0
                        ),
                    ));
                }
                Some(_) => {}
                None => {
                    debug_assert_eq!(self.committed.len() as Index, i - 1);
                    self.committed.push(fingerprint);
                    self.commit_terms.push(node.term());
                    if let Some(entries) = self.entries.as_mut() {
                        entries.push(entry.clone());
                    }
                }
            }
        }
        self.last_commit[index] = commit;
        Ok(())
    }

    /// At most one leader per term; a new leader holds every entry known
    /// committed.
    pub(crate) fn on_leader(
        &mut self,
        index: usize,
        term: Term,
        node: &Node,
    ) -> Result<(), Violation> {
        if let Some(other) = self.leaders.insert(term, index) {
            if other != index {
                return Err((
                    FailureKind::ElectionSafety,
                    format!(
                        "n{} and n{} are both leader of term {term}",
                        other + 1,
                        index + 1
                    ),
                ));
            }
        }
        // Raft promises a leader of term T every entry committed in an
        // earlier term; a stale leader of an older term (e.g. one that was
        // paused while campaigning and resumed after a later term
        // committed more) need not hold what was committed after it.
        // Terms are compared everywhere; payloads (a hash each) over the
        // last entries only, to keep elections cheap on long logs (the
        // payloads of the whole committed prefix are compared on every
        // node as its commit index advances).
        let payload_from = self.committed.len().saturating_sub(64);
        for (position, (committed_term, hash)) in self.committed.iter().enumerate() {
            let i = position as Index + 1;
            if self.commit_terms[position] >= term {
                continue;
            }
            // Below its log's base the leader holds the committed prefix in
            // a snapshot, whose last entry was checked against the
            // committed log when its commit index passed it.
            let base = node.log_base();
            let holds = if i < base.index {
                true
            } else if i == base.index {
                base.term == *committed_term
            } else {
                node.entry(i).is_some_and(|entry| {
                    entry.term == *committed_term
                        && (position < payload_from || payload_hash(entry) == *hash)
                })
            };
            if !holds {
                return Err((
                    FailureKind::LeaderCompleteness,
                    format!(
                        "new leader of term {term} lacks committed entry {i} (term {committed_term}); it has term {:?} there",
                        node.term_at(i)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Applied entries are committed ones, and every node computes the same
    /// response at each index. (The entry's payload was compared with the
    /// committed log when this node's commit index passed it.) Node
    /// `index` computed `response` applying `entry`.
    pub(crate) fn on_apply(
        &mut self,
        index: usize,
        entry: &Entry,
        response: Option<&Bytes>,
    ) -> Result<(), ApplyError> {
        let i = entry.index;
        match self.committed.get(i as usize - 1) {
            Some((term, _)) if *term == entry.term => {}
            known => {
                return Err(ApplyError::Violation((
                    FailureKind::StateMachineSafety,
                    format!(
                        "applies entry {i} term {} that does not match the committed log ({:?})",
                        entry.term,
                        known.map(|(term, _)| term)
                    ),
                )));
            }
        }
        let slot = i as usize - 1;
        if self.applied.len() <= slot {
            self.applied.resize(slot + 1, None);
        }
        match &self.applied[slot] {
            Some((other, known)) if known.as_ref() != response => Err(ApplyError::Diverged {
                other: *other,
                other_response: known.clone(),
            }),
            Some(_) => Ok(()),
            None => {
                self.applied[slot] = Some((index, response.cloned()));
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use concord::{Config, HardState, LogPosition, Recovered};

    /// A node recovered from a snapshot at (4, term 2) with nothing after
    /// it: its commit index is 4.
    fn node_at_snapshot() -> Node {
        let recovered = Recovered {
            hard_state: HardState {
                term: 2,
                voted_for: None,
                ..Default::default()
            },
            base: LogPosition::new(4, 2),
            entries: Vec::new(),
            applied_index: 4,
            membership: None,
        };
        let node = Node::new(Config::new(1, [1, 2, 3]), recovered).expect("a valid recovered log");
        assert_eq!(node.commit_index(), 4);
        node
    }

    /// The step that moves no commit index is decided without the walk of
    /// committed entries, and still every moved commit index is judged: a
    /// commit index that went back, and a snapshot whose last entry is not
    /// the committed one, are caught.
    #[test]
    fn a_moved_commit_index_is_still_judged() {
        let node = node_at_snapshot();
        let mut safety = Safety::new(1);
        safety.committed = vec![(1, 1), (1, 1), (2, 1), (2, 1)];
        safety.commit_terms = vec![1, 1, 2, 2];
        assert_eq!(safety.after_step(0, &node), Ok(()));
        assert_eq!(safety.last_commit[0], 4);
        // Unmoved: passes without a look at the log.
        assert_eq!(safety.after_step(0, &node), Ok(()));
        // Went back from 6 to 4.
        safety.last_commit[0] = 6;
        let (kind, message) = safety.after_step(0, &node).unwrap_err();
        assert_eq!(kind, FailureKind::CommitRegressed);
        assert!(message.contains("from 6 to 4"), "{message}");
        // The committed entry at the snapshot's index has term 3, not 2.
        safety.last_commit[0] = 0;
        safety.committed[3] = (3, 1);
        let (kind, message) = safety.after_step(0, &node).unwrap_err();
        assert_eq!(kind, FailureKind::LogMatching);
        assert!(message.contains("continues after a snapshot"), "{message}");
    }
}
