//! The rejection-hint check: a follower that refuses an append tells the
//! leader where to resume, and the hint must be what the protocol says,
//! computed here from the follower's log through its public accessors.
//!
//! A follower refuses `AppendEntries` whose `prev` entry it does not hold.
//! Its answer names `hint_index`: the largest index of its log at or below
//! `prev.index` whose term is at most `prev.term`, with that entry's term
//! (`hint_term`; the base's term at the base, 0 below it). The leader then
//! skips every entry of a term the follower cannot share. A hint that is
//! too low makes the leader send again what the follower holds (or a
//! snapshot it did not need); one that is too high costs probe round
//! trips. Neither breaks safety, which is why only this check sees them.
//!
//! Terms never decrease along a log, so the index is found by a binary
//! search over `term_at`; a rejection changes nothing in the follower's
//! log, so the log after the step is the log the hint was computed from.

use concord::{Action, AppendResponse, Index, LogPosition, MessageBody, Node, Term};

/// The hint the protocol asks of `node` for a refused `prev`: the last
/// index of its log at or below `prev.index` whose term is at most
/// `prev.term`, with that term (also how a leader finds where to probe
/// next from a follower's hint, `crate::rules`).
pub(crate) fn expected_hint(node: &Node, prev: LogPosition) -> (Index, Term) {
    let base = node.log_base();
    let top = prev.index.min(node.last_index());
    if top <= base.index {
        return (top, if top == base.index { base.term } else { 0 });
    }
    let term_of = |index: Index| node.term_at(index).unwrap_or(Term::MAX);
    // Invariant: every index in (base, low] has a term <= prev.term, and
    // every index in (high, top] a term above it.
    let (mut low, mut high) = (base.index, top);
    while low < high {
        let mid = low + (high - low).div_ceil(2);
        if term_of(mid) <= prev.term {
            low = mid;
        } else {
            high = mid - 1;
        }
    }
    let term = if low == base.index {
        base.term
    } else {
        term_of(low)
    };
    (low, term)
}

/// Checks every refusal `node` sent in a step whose input was an append
/// with `prev`.
pub(super) fn check(node: &Node, prev: LogPosition, actions: &[Action]) -> Result<(), String> {
    for action in actions {
        let Action::Send { message, .. } = action else {
            continue;
        };
        let MessageBody::AppendEntriesResponse(AppendResponse::Rejected {
            rejected_index,
            hint_index,
            hint_term,
        }) = message.body
        else {
            continue;
        };
        let (index, term) = expected_hint(node, prev);
        if rejected_index != prev.index || (hint_index, hint_term) != (index, term) {
            return Err(format!(
                "refused an append after {prev:?} with rejected_index {rejected_index}, hint ({hint_index}, term {hint_term}); its log (base {:?}, last {:?}) asks for rejected_index {} and hint ({index}, term {term}): the largest index at or below prev.index whose term is at most prev.term",
                node.log_base(),
                node.last_position(),
                prev.index,
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use concord::{Config, Entry, EntryPayload, HardState, Recovered};

    /// A follower whose log continues after (4, term 2) with entries 5..=9
    /// of terms 2, 3, 3, 5, 5.
    fn follower() -> Node {
        let terms = [2, 3, 3, 5, 5];
        let entries = (5..=9)
            .zip(terms)
            .map(|(index, term)| Entry {
                term,
                index,
                payload: EntryPayload::Noop,
            })
            .collect();
        let recovered = Recovered {
            hard_state: HardState {
                term: 5,
                voted_for: None,
                ..Default::default()
            },
            base: LogPosition::new(4, 2),
            entries,
            applied_index: 4,
            membership: None,
        };
        Node::new(Config::new(2, [1, 2, 3]), recovered).expect("a valid recovered log")
    }

    #[test]
    fn the_hint_is_the_last_entry_at_or_below_prev_with_a_term_at_most_prevs() {
        let node = follower();
        let hint = |index, term| expected_hint(&node, LogPosition::new(index, term));
        // Entries 8 and 9 are of term 5, above 4: skipped; 7 has term 3.
        assert_eq!(hint(9, 4), (7, 3));
        // Past the end: from the last entry down.
        assert_eq!(hint(12, 9), (9, 5));
        assert_eq!(hint(12, 3), (7, 3));
        // Every held entry is above term 1: the base.
        assert_eq!(hint(9, 1), (4, 2));
        assert_eq!(hint(6, 2), (5, 2));
        // At or below the base.
        assert_eq!(hint(4, 9), (4, 2));
        assert_eq!(hint(3, 1), (3, 0));
    }
}
