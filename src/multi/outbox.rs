//! Batching across groups on the way out: every message any group sends
//! to a peer during one flush goes into one frame to that peer (more only
//! past the frame limits), and a leader's heartbeats and their answers go
//! in their compact form.

use std::collections::BTreeMap;

use crate::message::{Message, MessageBody};
use crate::types::NodeId;

use super::frame::{
    body_payload_bytes, Frame, GroupHeartbeat, GroupHeartbeatAnswer, GroupId, GroupMessage,
    QuiesceAnswer, QuiesceRequest, FRAME_ITEM_OVERHEAD_BYTES,
};
use super::stats::MultiStats;

/// One item to put in a frame.
pub(crate) enum Item {
    Message(GroupMessage),
    Heartbeat(GroupHeartbeat),
    HeartbeatAnswer(GroupHeartbeatAnswer),
    Quiesce(QuiesceRequest),
    QuiesceAnswer(QuiesceAnswer),
}

impl Item {
    /// A group's message in the form it travels in: compact for
    /// heartbeats and their answers, whole otherwise.
    pub(crate) fn of(group: GroupId, message: Message) -> Item {
        match message.body {
            MessageBody::Heartbeat { commit, read_round } => Item::Heartbeat(GroupHeartbeat {
                group,
                term: message.term,
                progress_id: message.progress_id,
                commit,
                read_round,
            }),
            MessageBody::HeartbeatResponse { read_round } => {
                Item::HeartbeatAnswer(GroupHeartbeatAnswer {
                    group,
                    term: message.term,
                    progress_id: message.progress_id,
                    read_round,
                })
            }
            body => Item::Message(GroupMessage {
                group,
                term: message.term,
                progress_id: message.progress_id,
                body,
            }),
        }
    }

    fn size_bytes(&self) -> usize {
        FRAME_ITEM_OVERHEAD_BYTES
            + match self {
                Item::Message(message) => body_payload_bytes(&message.body),
                _ => 0,
            }
    }
}

/// Frames being filled for the current flush, by peer. The last frame of
/// each peer is the one being filled; earlier ones are full.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    open: BTreeMap<NodeId, Vec<(Frame, usize)>>,
    /// The layer's tick at the last flush that sent each peer a frame.
    last_sent_tick: BTreeMap<NodeId, u64>,
    /// How many messages the last frame to each peer carried: a new
    /// frame's list starts at that size, so that a busy flush does not
    /// grow it item by item (each growth a copy of the list; with many
    /// groups writing at once they were a tenth of the layer's routing).
    messages_hint: BTreeMap<NodeId, usize>,
}

/// The most message slots a new frame's list is given ahead of use.
const MESSAGES_PREALLOCATED_MAX: usize = 256;

impl Outbox {
    /// Makes sure a frame goes to `to` in this flush, even an empty one:
    /// the node-level heartbeat.
    pub(crate) fn owe_frame(&mut self, from: NodeId, to: NodeId, incarnation: u64) {
        self.open_frames(from, to, incarnation);
    }

    /// The frames being filled for `to`, the first one opened if none is:
    /// an empty frame, its message list sized as the last one's.
    fn open_frames(
        &mut self,
        from: NodeId,
        to: NodeId,
        incarnation: u64,
    ) -> &mut Vec<(Frame, usize)> {
        let hint = &self.messages_hint;
        self.open.entry(to).or_insert_with(|| {
            let last = hint.get(&to).copied().unwrap_or(0);
            let mut frame = Frame::new(from, to, incarnation);
            frame.messages = Vec::with_capacity(last.min(MESSAGES_PREALLOCATED_MAX));
            vec![(frame, 0)]
        })
    }

    /// Owes `to` a frame (the node-level heartbeat) if none went to it
    /// in the last `interval_ticks` ticks: a peer that hears from us
    /// anyway, like a follower of a busy leader, gets no empty frame on
    /// top, and none hears nothing from us for longer than
    /// `interval_ticks`.
    pub(crate) fn owe_liveness_frame(
        &mut self,
        from: NodeId,
        to: NodeId,
        incarnation: u64,
        now_ticks: u64,
        interval_ticks: u32,
    ) {
        let last = self.last_sent_tick.get(&to).copied().unwrap_or(0);
        debug_assert!(last <= now_ticks, "a frame stamped in the future");
        if now_ticks.saturating_sub(last) >= u64::from(interval_ticks) {
            self.owe_frame(from, to, incarnation);
        }
    }

    /// Forgets `to` once it is no longer a peer: the stamps stay bounded
    /// by the peers there are.
    pub(crate) fn forget_peer(&mut self, to: NodeId) {
        self.last_sent_tick.remove(&to);
        self.messages_hint.remove(&to);
    }

    /// Adds `item` to the frame for `to`, starting another once the one
    /// being filled is at a limit.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn push(
        &mut self,
        from: NodeId,
        to: NodeId,
        incarnation: u64,
        item: Item,
        items_max: usize,
        bytes_max: usize,
    ) {
        let frames = self.open_frames(from, to, incarnation);
        let item_bytes = item.size_bytes();
        let (frame, bytes) = frames.last().expect("never empty");
        let full =
            !frame.is_empty() && (frame.items() >= items_max || *bytes + item_bytes > bytes_max);
        if full {
            frames.push((Frame::new(from, to, incarnation), 0));
        }
        let (frame, bytes) = frames.last_mut().expect("never empty");
        *bytes += item_bytes;
        match item {
            Item::Message(message) => frame.messages.push(message),
            Item::Heartbeat(heartbeat) => frame.heartbeats.push(heartbeat),
            Item::HeartbeatAnswer(answer) => frame.heartbeat_answers.push(answer),
            Item::Quiesce(request) => frame.quiesce.push(request),
            Item::QuiesceAnswer(answer) => frame.quiesce_answers.push(answer),
        }
        debug_assert!(frame.items() <= items_max || frame.items() == 1);
    }

    /// Hands every frame of this flush to `emit`, in peer order, and
    /// stamps each peer sent to with `now_ticks`.
    pub(crate) fn flush(
        &mut self,
        now_ticks: u64,
        stats: &mut MultiStats,
        mut emit: impl FnMut(Frame),
    ) {
        // Popped rather than taken whole: the emptied map keeps its node,
        // and a flush does not allocate one again.
        while let Some((to, frames)) = self.open.pop_first() {
            debug_assert!(!frames.is_empty(), "an open peer without a frame");
            *self.last_sent_tick.entry(to).or_default() = now_ticks;
            let last_messages = frames.last().map_or(0, |(frame, _)| frame.messages.len());
            *self.messages_hint.entry(to).or_default() = last_messages;
            for (frame, _) in frames {
                stats.frames_sent += 1;
                stats.frame_items_sent += frame.items() as u64;
                stats.heartbeats_sent += frame.heartbeats.len() as u64;
                stats.heartbeat_answers_sent += frame.heartbeat_answers.len() as u64;
                emit(frame);
            }
        }
    }
}
