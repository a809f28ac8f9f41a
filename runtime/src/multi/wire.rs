//! What travels on a multi-group server's connections, after the same
//! handshake as a single-group server's ([`Hello`](crate::wire::Hello),
//! [`Welcome`](crate::wire::Welcome), naming the cluster and both
//! nodes): on a peer connection, one [`MultiPeerFrame`] per
//! [`Frame`] (every group's messages for that peer in one flush) and
//! keepalives, answered by [`PeerReply`](crate::wire::PeerReply);
//! on a client connection, [`GroupRequest`]s answered by
//! [`ClientResponse`](crate::wire::ClientResponse)s. A client's
//! request names its group; a redirect
//! ([`ClientResponse::NotLeader`](crate::wire::ClientResponse::NotLeader))
//! names that group's leader.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use concord::multi::{Frame, GroupId};

/// What a node sends on its connection to a peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MultiPeerFrame {
    /// Everything for the peer from one flush, for every group.
    Frame {
        /// The frame's place among those the sender handed its transport
        /// for this peer (from 1, rising by one each, over the sender's
        /// run). Frames left unsent may be skipped, so the numbers on one
        /// connection need not be consecutive, but they must rise: the
        /// receiver closes a connection on which they do not (its frames
        /// arrive in another order than they were sent).
        seq: u64,
        /// The frame.
        frame: Frame,
    },
    /// "Are you there?", answered with
    /// [`PeerReply::KeepaliveAck`](crate::wire::PeerReply::KeepaliveAck).
    Keepalive,
}

/// [`MultiPeerFrame`] borrowing its frame: encodes identically.
#[derive(Serialize)]
pub(crate) enum MultiPeerFrameRef<'a> {
    Frame { seq: u64, frame: &'a Frame },
    Keepalive,
}

/// A client's request to one group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRequest {
    /// The group it is for.
    pub group: GroupId,
    /// What to do there.
    pub request: GroupOp,
}

/// What a client asks of a group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupOp {
    /// A state-machine command, replicated through the group's log.
    Command(Bytes),
    /// A linearizable read on `path`, answered by the group's
    /// [`StateMachine::query`](concord::state_machine::StateMachine::query).
    Read {
        /// How the read is served.
        path: concord::ReadPath,
        /// The read request.
        query: Bytes,
    },
    /// The server's status: a summary of its groups, or one group (the
    /// request's group is ignored); answered with a
    /// [`StatusAnswer`](super::groups_status::StatusAnswer), encoded, in
    /// [`ClientResponse::Done`](crate::wire::ClientResponse::Done).
    Status(super::groups_status::StatusQuery),
    /// A membership request (see [`admin`](super::admin)).
    Admin(super::admin::AdminRequest),
}

/// What a server answers for a group it does not host. The routing client
/// recognises it ([`is_not_hosted`]) and asks another server: the
/// `ClientResponse::Error` it travels in stays readable to any client.
pub(crate) fn not_hosted_message(group: GroupId, node: concord::NodeId) -> String {
    format!("group {group} is not hosted on node {node}; ask a node that hosts it")
}

/// Whether `message` is a [`not_hosted_message`].
pub(crate) fn is_not_hosted(message: &str) -> bool {
    message.starts_with("group ") && message.contains(" is not hosted on node ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn borrowed_frames_encode_like_owned_ones() {
        let frame = Frame::new(1, 2, 3);
        let owned = crate::codec::encode(&MultiPeerFrame::Frame {
            seq: 7,
            frame: frame.clone(),
        })
        .unwrap();
        let borrowed = crate::codec::encode(&MultiPeerFrameRef::Frame {
            seq: 7,
            frame: &frame,
        })
        .unwrap();
        assert_eq!(owned, borrowed);
    }
}
