//! Append round trips per peer (`concord_append_round_trip_seconds`): from
//! a frame carrying a leader's AppendEntries with entries to the frame
//! carrying the follower's acknowledgement that it holds them durably.
//!
//! Sampled, so that timing costs nothing per write: one append in flight
//! per peer is timed (the first found in a frame to it), and a peer's
//! frames are searched for one at most [`SEARCHES_PER_TICK`] times per
//! tick. Without a sample in flight to a peer, a frame sent to it that
//! carries group messages (not only coalesced heartbeats, which every
//! tick sends) is searched for an AppendEntries with entries; after
//! `SEARCHES_PER_TICK` frames without one (this node leads nothing the
//! peer follows, say), the peer's frames are left alone until the next
//! tick. While a sample is in flight, frames from the peer are searched
//! for the acknowledgement of that group covering its last entry, which
//! ends the sample, and the peer is not sampled again before the next
//! tick. So a busy follower is sampled about once per tick (or per round
//! trip, if longer), and a frame is searched only while
//! a sample is sought or pending (the layer walks every frame's messages
//! anyway, to build or deliver them).

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use concord::multi::{Frame, GroupId};
use concord::{AppendResponse, Index, MessageBody, NodeId};

/// Frames to a peer searched for an append to time, at most, between
/// two ticks.
pub const SEARCHES_PER_TICK: u8 = 4;

/// Peers timed at once at most (past it, new peers go untimed rather than
/// grow the table).
pub const PEERS_MAX: usize = 1024;

/// A sample older than this is dropped at the next tick (its answer was
/// lost, or the follower is down): the slot serves a new sample. It is
/// the last finite bucket of the `_seconds` histograms.
pub const SAMPLE_AGE_MAX: Duration = Duration::from_secs(10);

/// Where the sampling of one peer stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sample {
    /// This many frames to the peer held no append to time since the
    /// last tick (at [`SEARCHES_PER_TICK`], none is sought until the
    /// next).
    Searched(u8),
    /// The append of `group` ending at `last_index` was sent at `sent`.
    Timing {
        group: GroupId,
        last_index: Index,
        sent: Instant,
    },
}

/// The timed append of each peer (see the [module documentation](self)).
#[derive(Debug, Default)]
pub struct RoundTrips {
    /// Peers searched this tick or with an append in flight; a peer
    /// missing here is sought in its next frame.
    peers: BTreeMap<NodeId, Sample>,
}

impl RoundTrips {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// A frame is about to be handed to the transport: starts a sample if
    /// none is in flight to its peer and it was not searched this tick.
    /// `now` is read only when a sample starts.
    pub fn frame_sent(&mut self, frame: &Frame, now: impl FnOnce() -> Instant) {
        if frame.messages.is_empty() {
            return;
        }
        let searched = match self.peers.get(&frame.to) {
            None if self.peers.len() >= PEERS_MAX => return,
            None => 0,
            Some(Sample::Searched(searched)) if *searched < SEARCHES_PER_TICK => *searched,
            Some(_) => return,
        };
        let append = frame
            .messages
            .iter()
            .find_map(|message| match &message.body {
                MessageBody::AppendEntries { entries, .. } => {
                    entries.last().map(|last| (message.group, last.index))
                }
                _ => None,
            });
        let sample = match append {
            Some((group, last_index)) => Sample::Timing {
                group,
                last_index,
                sent: now(),
            },
            None => Sample::Searched(searched + 1),
        };
        self.peers.insert(frame.to, sample);
    }

    /// A frame arrived: the round trip of its peer's timed append, if the
    /// frame acknowledges it (recorded in the histogram too).
    pub fn frame_received(
        &mut self,
        frame: &Frame,
        now: impl FnOnce() -> Instant,
    ) -> Option<Duration> {
        let Some(Sample::Timing {
            group,
            last_index,
            sent,
        }) = self.peers.get(&frame.from).copied()
        else {
            return None;
        };
        let covered = frame.messages.iter().any(|message| {
            message.group == group
                && matches!(
                    message.body,
                    MessageBody::AppendEntriesResponse(AppendResponse::Accepted { match_index })
                        if match_index >= last_index
                )
        });
        if !covered {
            return None;
        }
        // No new sample of this peer before the next tick: at one sample
        // per round trip, a lone client would pay a clock read and a
        // histogram record on every write.
        self.peers
            .insert(frame.from, Sample::Searched(SEARCHES_PER_TICK));
        let elapsed = now().saturating_duration_since(sent);
        super::append_round_trip(frame.from, elapsed);
        Some(elapsed)
    }

    /// A tick passed: every peer may be searched again, and samples older
    /// than [`SAMPLE_AGE_MAX`] are dropped.
    pub fn ticked(&mut self, now: impl FnOnce() -> Instant) {
        if self.peers.is_empty() {
            return;
        }
        let timing = self
            .peers
            .values()
            .any(|sample| matches!(sample, Sample::Timing { .. }));
        let now = timing.then(now);
        self.peers.retain(|_, sample| match (sample, now) {
            (Sample::Timing { sent, .. }, Some(now)) => {
                now.saturating_duration_since(*sent) <= SAMPLE_AGE_MAX
            }
            _ => false,
        });
    }

    /// `group` changed role here: its timed appends are dropped (answers
    /// to an old term's appends say nothing about today's round trip).
    pub fn role_changed(&mut self, group: GroupId) {
        self.peers
            .retain(|_, sample| !matches!(sample, Sample::Timing { group: g, .. } if *g == group));
    }

    /// Peers searched this tick or with a timed append.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether no peer is searched or timed.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use concord::multi::GroupMessage;
    use concord::{Entry, EntryPayload, LogPosition};

    fn frame(from: NodeId, to: NodeId, messages: Vec<GroupMessage>) -> Frame {
        let mut frame = Frame::new(from, to, 1);
        frame.messages = messages;
        frame
    }

    fn append(group: GroupId, first: Index, last: Index) -> GroupMessage {
        let entries: Vec<Entry> = (first..=last)
            .map(|index| Entry {
                index,
                term: 1,
                payload: EntryPayload::Noop,
            })
            .collect();
        GroupMessage {
            group,
            term: 1,
            progress_id: 0,
            body: MessageBody::AppendEntries {
                prev: LogPosition::new(first - 1, 1),
                entries: entries.into(),
                leader_commit: 0,
            },
        }
    }

    fn accepted(group: GroupId, match_index: Index) -> GroupMessage {
        GroupMessage {
            group,
            term: 1,
            progress_id: 0,
            body: MessageBody::AppendEntriesResponse(AppendResponse::Accepted { match_index }),
        }
    }

    #[test]
    fn times_the_first_append_until_its_group_acknowledges_it() {
        let t0 = Instant::now();
        let mut trips = RoundTrips::new();
        trips.frame_sent(&frame(1, 2, vec![append(7, 10, 12)]), || t0);
        // A second append before the answer is not timed.
        trips.frame_sent(&frame(1, 2, vec![append(7, 13, 20)]), || {
            panic!("no clock read for an untimed frame")
        });
        assert_eq!(trips.len(), 1);
        let ms = |n| t0 + Duration::from_millis(n);
        // Another group's acknowledgement, or an older one, does not end
        // the sample; a frame from another peer is not looked at.
        assert_eq!(
            trips.frame_received(&frame(2, 1, vec![accepted(8, 30)]), || ms(1)),
            None
        );
        assert_eq!(
            trips.frame_received(&frame(2, 1, vec![accepted(7, 11)]), || ms(2)),
            None
        );
        assert_eq!(
            trips.frame_received(&frame(3, 1, vec![accepted(7, 30)]), || ms(3)),
            None
        );
        let covering = frame(2, 1, vec![accepted(8, 1), accepted(7, 12)]);
        assert_eq!(
            trips.frame_received(&covering, || ms(5)),
            Some(Duration::from_millis(5))
        );
        // Nothing timed: nothing measured.
        assert_eq!(trips.frame_received(&covering, || ms(6)), None);
        // One sample of a peer per tick: the next append goes untimed
        // until the tick, then is timed.
        trips.frame_sent(&frame(1, 2, vec![append(7, 21, 21)]), || {
            panic!("a peer sampled this tick is not timed again")
        });
        trips.ticked(|| ms(7));
        assert!(trips.is_empty());
        trips.frame_sent(&frame(1, 2, vec![append(7, 22, 22)]), || ms(8));
        assert_eq!(trips.len(), 1);
    }

    #[test]
    fn a_peer_without_appends_is_searched_a_few_times_per_tick() {
        let t0 = Instant::now();
        let mut trips = RoundTrips::new();
        // Frames of heartbeats only cost no search.
        for _ in 0..10 {
            trips.frame_sent(&frame(1, 2, Vec::new()), || t0);
        }
        assert!(trips.is_empty());
        for _ in 0..SEARCHES_PER_TICK {
            trips.frame_sent(&frame(1, 2, vec![accepted(7, 3)]), || t0);
        }
        assert_eq!(trips.len(), 1);
        // Searched enough this tick: an append now goes untimed.
        trips.frame_sent(&frame(1, 2, vec![append(7, 4, 4)]), || {
            panic!("no clock read for an untimed frame")
        });
        assert_eq!(
            trips.frame_received(&frame(2, 1, vec![accepted(7, 4)]), || t0),
            None
        );
        trips.ticked(|| panic!("no clock read without a sample"));
        assert!(trips.is_empty());
        trips.frame_sent(&frame(1, 2, vec![accepted(7, 4)]), || t0);
        trips.frame_sent(&frame(1, 2, vec![append(7, 5, 5)]), || t0);
        let ack = frame(2, 1, vec![accepted(7, 5)]);
        assert!(trips.frame_received(&ack, || t0).is_some());
    }

    #[test]
    fn old_samples_and_a_group_that_changed_role_are_dropped() {
        let t0 = Instant::now();
        let mut trips = RoundTrips::new();
        trips.frame_sent(&frame(1, 2, vec![append(7, 1, 1)]), || t0);
        trips.frame_sent(&frame(1, 3, vec![append(8, 1, 1)]), || t0);
        trips.ticked(|| t0 + SAMPLE_AGE_MAX);
        assert_eq!(trips.len(), 2, "not older than the bound yet");
        trips.role_changed(8);
        assert_eq!(trips.len(), 1);
        assert_eq!(
            trips.frame_received(&frame(3, 1, vec![accepted(8, 1)]), || t0),
            None
        );
        trips.ticked(|| t0 + SAMPLE_AGE_MAX + Duration::from_millis(1));
        assert!(trips.is_empty());
    }

    #[test]
    fn the_table_is_bounded() {
        let t0 = Instant::now();
        let mut trips = RoundTrips::new();
        for peer in 0..(PEERS_MAX as u64 + 10) {
            trips.frame_sent(&frame(1, peer, vec![append(1, 1, 1)]), || t0);
        }
        assert_eq!(trips.len(), PEERS_MAX);
    }
}
