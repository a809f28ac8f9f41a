//! Snapshot transfers timed for `concord_snapshot_send_duration_seconds`
//! (leader: a transfer's first chunk handed to the transport until its
//! last) and `concord_snapshot_receive_duration_seconds` (follower: first
//! chunk written until the snapshot is whole), per group and peer.
//!
//! Chunks are rare next to writes (one per `snapshot_chunk_bytes_max`
//! bytes of a snapshot), so every transfer is timed; the tables are
//! bounded, and emptied when full (transfers then under way go untimed)
//! rather than grow: an abandoned transfer (a follower that went away)
//! leaves an entry behind.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use concord::multi::GroupId;
use concord::{LogPosition, Message, MessageBody, NodeId, SnapshotMeta};

/// Transfers timed at once at most, each way.
pub const TRANSFERS_MAX: usize = 4096;

/// The snapshot transfers under way (see the [module documentation](self)).
#[derive(Debug, Default)]
pub struct SnapshotTimes {
    /// (group, follower) → the snapshot being sent, since when.
    sending: BTreeMap<(GroupId, NodeId), (LogPosition, Instant)>,
    /// Group → the snapshot being received, since when.
    receiving: BTreeMap<GroupId, (SnapshotMeta, Instant)>,
}

impl SnapshotTimes {
    /// No transfer under way.
    pub fn new() -> Self {
        Self::default()
    }

    /// `message`, a chunk of `group`'s snapshot for a follower, is handed
    /// to the transport: a chunk at offset 0 starts a transfer (a
    /// rewound one starts again), the chunk that reaches the snapshot's
    /// end finishes it. The empty chunk a leader sends past the end to
    /// draw an answer finds no transfer and is not counted twice. The
    /// send time, if this finished one (recorded in the histogram too).
    pub fn chunk_sent(&mut self, group: GroupId, message: &Message) -> Option<Duration> {
        let MessageBody::InstallSnapshot(chunk) = &message.body else {
            return None;
        };
        let key = (group, message.to);
        if chunk.offset == 0 {
            if self.sending.len() >= TRANSFERS_MAX {
                self.sending.clear();
            }
            self.sending.insert(key, (chunk.snapshot, Instant::now()));
        }
        let end = chunk.offset + chunk.data.len() as u64;
        if end < chunk.size_bytes {
            return None;
        }
        let (snapshot, started) = self.sending.remove(&key)?;
        if snapshot != chunk.snapshot {
            return None;
        }
        let elapsed = started.elapsed();
        super::snapshot_sent(elapsed);
        Some(elapsed)
    }

    /// `group` started receiving `snapshot` (its chunk at offset 0).
    pub fn receive_started(&mut self, group: GroupId, snapshot: SnapshotMeta) {
        if self.receiving.len() >= TRANSFERS_MAX {
            self.receiving.clear();
        }
        self.receiving.insert(group, (snapshot, Instant::now()));
    }

    /// `group` holds `snapshot` whole: the time since its first chunk, if
    /// it was timed (recorded in the histogram too).
    pub fn received(&mut self, group: GroupId, snapshot: SnapshotMeta) -> Option<Duration> {
        let (receiving, started) = self.receiving.remove(&group)?;
        if receiving != snapshot {
            return None;
        }
        let elapsed = started.elapsed();
        super::snapshot_received(elapsed);
        Some(elapsed)
    }

    /// `group` is no longer hosted here: its transfers are forgotten.
    pub fn forget_group(&mut self, group: GroupId) {
        self.receiving.remove(&group);
        self.sending.retain(|(g, _), _| *g != group);
    }

    /// Transfers timed, sent and received.
    pub fn len(&self) -> usize {
        self.sending.len() + self.receiving.len()
    }

    /// Whether no transfer is timed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use concord::{Membership, SnapshotChunk};

    fn chunk(to: NodeId, index: u64, offset: u64, len: usize, size: u64) -> Message {
        Message {
            from: 1,
            to,
            term: 1,
            progress_id: 0,
            body: MessageBody::InstallSnapshot(Box::new(SnapshotChunk {
                snapshot: LogPosition::new(index, 1),
                size_bytes: size,
                checksum: 0,
                offset,
                data: Bytes::from(vec![0u8; len]),
                membership: Membership::default(),
            })),
        }
    }

    #[test]
    fn a_transfer_is_timed_from_its_first_chunk_to_its_last() {
        let mut times = SnapshotTimes::new();
        assert_eq!(times.chunk_sent(5, &chunk(2, 10, 0, 4, 10)), None);
        assert_eq!(times.chunk_sent(5, &chunk(2, 10, 4, 4, 10)), None);
        // Another follower's transfer of the same group is its own.
        assert_eq!(times.chunk_sent(5, &chunk(3, 10, 0, 4, 10)), None);
        assert_eq!(times.len(), 2);
        assert!(times.chunk_sent(5, &chunk(2, 10, 8, 2, 10)).is_some());
        // The empty chunk past the end: not counted again.
        assert_eq!(times.chunk_sent(5, &chunk(2, 10, 10, 0, 10)), None);
        assert_eq!(times.len(), 1);
        // A newer snapshot's end does not finish an older one's transfer.
        assert_eq!(times.chunk_sent(5, &chunk(3, 20, 4, 6, 10)), None);
        assert!(times.is_empty());
        // A snapshot in one chunk.
        assert!(times.chunk_sent(6, &chunk(2, 30, 0, 3, 3)).is_some());
    }

    #[test]
    fn a_received_snapshot_is_timed_and_the_tables_are_bounded() {
        let meta = |index| SnapshotMeta {
            position: LogPosition::new(index, 1),
            size_bytes: 10,
            checksum: 0,
        };
        let mut times = SnapshotTimes::new();
        times.receive_started(5, meta(10));
        assert_eq!(times.received(5, meta(11)), None, "another snapshot");
        times.receive_started(5, meta(10));
        assert!(times.received(5, meta(10)).is_some());
        assert_eq!(times.received(5, meta(10)), None, "once");
        for group in 0..TRANSFERS_MAX as u64 + 1 {
            times.receive_started(group, meta(1));
        }
        assert_eq!(times.len(), 1, "emptied when full");
        times.chunk_sent(9, &chunk(2, 1, 0, 1, 2));
        times.forget_group(9);
        times.forget_group(TRANSFERS_MAX as u64);
        assert!(times.is_empty());
    }
}
