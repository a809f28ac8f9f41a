//! Static configuration of one multi-group node, and its validation.

use std::collections::BTreeSet;

use thiserror::Error;

use crate::types::NodeId;

/// Configuration of a [`MultiNode`](super::MultiNode): the node's
/// identity, the peers it watches, and a limit on everything the layer
/// queues or does per tick. Each group it hosts has its own
/// [`Config`](crate::Config) besides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MultiConfig {
    /// This node's id: the id every hosted group's `Config::id` must carry.
    pub id: NodeId,
    /// The other nodes of the cluster. Node-level liveness watches exactly
    /// these (one frame to each per `liveness_interval_ticks`, whether or
    /// not any group has anything to say), and every member of a group
    /// created here must be one of them or this node.
    pub peers: BTreeSet<NodeId>,
    /// Distinguishes this start of the node from every earlier one, and
    /// must be greater than theirs (the host draws it from a counter it
    /// stores durably). Frames carry it: a peer that sees it grow knows
    /// this node restarted and forgot every leadership and vote it held in
    /// memory, even if the restart was too quick for
    /// `liveness_timeout_ticks`; a frame carrying a smaller one was sent
    /// before a restart and says nothing of the node now.
    pub incarnation: u64,
    /// Most groups hosted at once; `create_group` refuses more.
    pub groups_max: usize,
    /// A frame goes to every peer at least once per this many ticks (the
    /// node-level heartbeat, which also runs when every group sleeps).
    pub liveness_interval_ticks: u32,
    /// A peer not heard from for this many ticks is taken for dead: the
    /// groups it led here that sleep are queued to elect a new leader.
    /// Must exceed `liveness_interval_ticks`.
    pub liveness_timeout_ticks: u32,
    /// A group whose leader has seen nothing change (log, commit, apply,
    /// reads) for this many ticks tries to quiesce. `None`: never; every
    /// group is ticked and heartbeats on every tick, as a lone
    /// [`Node`](crate::Node) does.
    pub quiesce_after_idle_ticks: Option<u32>,
    /// Most sleeping groups woken per tick from the wake queues (groups
    /// whose leader's node died or restarted, groups to re-heartbeat for a
    /// peer that came back, new groups). Messages and local requests for a
    /// group wake it at once, outside this limit: they concern one group.
    pub wakes_per_tick_max: usize,
    /// Most groups woken from the election queue that may be electing at
    /// once (awake without a known leader). What keeps 10,000 groups that
    /// lost their leader in one node from campaigning at once.
    pub elections_concurrent_max: usize,
    /// Ticks a group woken to elect may hold its slot without finding a
    /// leader; then it goes back to sleep at the back of the queue, so
    /// groups that cannot elect (no quorum) never block those that can.
    pub election_slot_ticks: u32,
    /// Most items (group messages, coalesced heartbeats and answers,
    /// quiescence requests and answers) in one frame; more go in further
    /// frames to the same peer. A received frame with more is refused.
    pub frame_items_max: usize,
    /// Most bytes (as estimated by [`Frame::size_bytes`](super::Frame::size_bytes))
    /// in one frame; more go in further frames (a single larger item still
    /// travels, alone).
    pub frame_bytes_max: usize,
    /// Most writes in one persist batch; more go in further batches.
    pub persist_batch_writes_max: usize,
    /// The snapshot bandwidth limit of this node: most bytes of snapshot
    /// chunks it sends per tick, to every peer and group together, with
    /// one chunk of slack (over any `n` ticks, at most `n ×` this `+
    /// snapshot_chunk_bytes_max`). Idle ticks bank nothing. `None`: no
    /// limit. Chunks over the limit wait in the layer (`snapshot_pace.rs`).
    pub snapshot_send_bytes_per_tick_max: Option<u64>,
    /// Most bytes of snapshot chunks waiting for the bandwidth limit; a
    /// chunk past it is dropped and its transfer resends it later.
    pub snapshot_queue_bytes_max: u64,
}

impl MultiConfig {
    /// A configuration with defaults for node `id` among `peers`:
    /// a frame to every peer at least every 3 ticks, a peer dead after 10
    /// silent ticks, quiescence
    /// after 4 idle ticks, up to 1,024 wakes per tick and 256 concurrent
    /// elections (each holding its slot at most 60 ticks), frames of at
    /// most 65,536 items and 16 MiB, persist batches of at most 65,536
    /// writes, 100,000 groups, no snapshot bandwidth limit (64 MiB of
    /// chunks may wait for one when set).
    pub fn new(id: NodeId, peers: impl IntoIterator<Item = NodeId>) -> Self {
        MultiConfig {
            id,
            peers: peers.into_iter().filter(|peer| *peer != id).collect(),
            incarnation: 0,
            groups_max: 100_000,
            // Every third tick, not every tick: on a link with nothing else
            // to carry (two followers of one leader), each empty frame
            // costs a wake-up and two system calls on both ends, and three
            // frames can still be lost before a live peer is taken for
            // dead.
            liveness_interval_ticks: 3,
            liveness_timeout_ticks: 10,
            quiesce_after_idle_ticks: Some(4),
            wakes_per_tick_max: 1024,
            elections_concurrent_max: 256,
            election_slot_ticks: 60,
            frame_items_max: 65_536,
            frame_bytes_max: 16 * 1024 * 1024,
            persist_batch_writes_max: 65_536,
            snapshot_send_bytes_per_tick_max: None,
            snapshot_queue_bytes_max: 64 * 1024 * 1024,
        }
    }

    /// Checks every field, returning the first problem found.
    pub fn validate(&self) -> Result<(), MultiConfigError> {
        if self.id == 0 || self.peers.contains(&0) {
            return Err(MultiConfigError::ZeroNodeId);
        }
        if self.peers.contains(&self.id) {
            return Err(MultiConfigError::SelfPeer { id: self.id });
        }
        let limits: [(&'static str, u64); 10] = [
            ("groups_max", self.groups_max as u64),
            (
                "liveness_interval_ticks",
                self.liveness_interval_ticks.into(),
            ),
            ("liveness_timeout_ticks", self.liveness_timeout_ticks.into()),
            ("wakes_per_tick_max", self.wakes_per_tick_max as u64),
            (
                "elections_concurrent_max",
                self.elections_concurrent_max as u64,
            ),
            ("election_slot_ticks", self.election_slot_ticks.into()),
            ("frame_items_max", self.frame_items_max as u64),
            ("frame_bytes_max", self.frame_bytes_max as u64),
            (
                "persist_batch_writes_max",
                self.persist_batch_writes_max as u64,
            ),
            ("snapshot_queue_bytes_max", self.snapshot_queue_bytes_max),
        ];
        for (field, value) in limits {
            if value == 0 {
                return Err(MultiConfigError::Zero { field });
            }
        }
        if self.snapshot_send_bytes_per_tick_max == Some(0) {
            return Err(MultiConfigError::Zero {
                field: "snapshot_send_bytes_per_tick_max",
            });
        }
        if self.quiesce_after_idle_ticks == Some(0) {
            return Err(MultiConfigError::Zero {
                field: "quiesce_after_idle_ticks",
            });
        }
        if self.liveness_timeout_ticks <= self.liveness_interval_ticks {
            return Err(MultiConfigError::LivenessTimeoutTooShort {
                timeout: self.liveness_timeout_ticks,
                interval: self.liveness_interval_ticks,
            });
        }
        Ok(())
    }
}

/// Why a [`MultiNode`](super::MultiNode) could not be built.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MultiConfigError {
    /// Node id 0 is reserved for "nobody".
    #[error("node id 0 is reserved; give every node an id of 1 or more")]
    ZeroNodeId,
    /// The node lists itself among its peers.
    #[error("node {id} lists itself in `peers`; list only the other nodes")]
    SelfPeer {
        /// This node's id.
        id: NodeId,
    },
    /// A limit or interval that must be positive is zero.
    #[error("`{field}` is 0; it must be at least 1")]
    Zero {
        /// The offending field.
        field: &'static str,
    },
    /// Peers would be taken for dead between two of their heartbeats.
    #[error("`liveness_timeout_ticks` ({timeout}) is not above `liveness_interval_ticks` ({interval}); every peer would be taken for dead between two of its frames")]
    LivenessTimeoutTooShort {
        /// Configured timeout.
        timeout: u32,
        /// Configured interval.
        interval: u32,
    },
}
