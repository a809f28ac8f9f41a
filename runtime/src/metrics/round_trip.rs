//! Append round trips per follower: from a leader's AppendEntries carrying
//! entries to the follower's acknowledgement that it holds them durably.
//!
//! One sample in flight per follower: the first unacknowledged append is
//! timed, later ones sent before its answer are not (a pipelined window
//! would otherwise need a timestamp per message). Each acknowledgement
//! covering the timed index ends the sample; the next append starts
//! another. So a busy follower is sampled about once per round trip,
//! which is what the histogram is for.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use concord::{Index, NodeId};

/// Followers timed at once at most (past it, new followers go untimed
/// rather than grow the table).
pub const FOLLOWERS_MAX: usize = 1024;

/// The timed append of each follower.
#[derive(Debug, Default)]
pub struct RoundTrips {
    /// Follower → (last index of the timed append, when it was sent).
    pending: BTreeMap<NodeId, (Index, Instant)>,
}

impl RoundTrips {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// An append whose last entry is `last_index` was sent to `peer`.
    pub fn sent(&mut self, peer: NodeId, last_index: Index, now: Instant) {
        if self.pending.contains_key(&peer) || self.pending.len() >= FOLLOWERS_MAX {
            return;
        }
        self.pending.insert(peer, (last_index, now));
    }

    /// `peer` acknowledged its log durable up to `match_index`: the round
    /// trip of the timed append, if this covers it.
    pub fn acknowledged(
        &mut self,
        peer: NodeId,
        match_index: Index,
        now: Instant,
    ) -> Option<Duration> {
        let (index, sent) = *self.pending.get(&peer)?;
        if match_index < index {
            return None;
        }
        self.pending.remove(&peer);
        Some(now.saturating_duration_since(sent))
    }

    /// Forgets every timed append (this node stopped leading: answers to
    /// an old term's appends say nothing about today's round trip).
    pub fn clear(&mut self) {
        self.pending.clear();
    }

    /// Followers with a timed append.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether no append is timed.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_the_first_append_until_an_ack_covers_it() {
        let t0 = Instant::now();
        let mut trips = RoundTrips::new();
        trips.sent(2, 10, t0);
        // A second append before the answer is not timed.
        trips.sent(2, 20, t0 + Duration::from_millis(1));
        assert_eq!(trips.len(), 1);
        // An older acknowledgement does not end the sample.
        assert_eq!(
            trips.acknowledged(2, 9, t0 + Duration::from_millis(2)),
            None
        );
        assert_eq!(
            trips.acknowledged(2, 12, t0 + Duration::from_millis(5)),
            Some(Duration::from_millis(5))
        );
        assert!(trips.is_empty());
        // Nothing timed: nothing measured.
        assert_eq!(
            trips.acknowledged(2, 30, t0 + Duration::from_millis(6)),
            None
        );
        assert_eq!(trips.acknowledged(3, 30, t0), None);
    }

    #[test]
    fn the_table_is_bounded_and_cleared() {
        let t0 = Instant::now();
        let mut trips = RoundTrips::new();
        for peer in 0..(FOLLOWERS_MAX as u64 + 10) {
            trips.sent(peer, 1, t0);
        }
        assert_eq!(trips.len(), FOLLOWERS_MAX);
        trips.clear();
        assert!(trips.is_empty());
    }
}
