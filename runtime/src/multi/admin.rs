//! Membership of a multi-group server's groups, on the wire: the
//! requests of `concord-cli member ... --group G` and of the node-level
//! operations (`member replace`, `drain`, `remove-node`), carried as
//! [`GroupOp::Admin`](super::wire::GroupOp::Admin) and answered with
//! [`ClientResponse::Done`](crate::wire::ClientResponse::Done)
//! holding an encoded [`AdminAnswer`] (or `NotLeader` / `Error`).
//!
//! Changes of one group's membership go to that group's leader (a
//! follower redirects, as for a command); the catalog (group
//! [`CATALOG_GROUP`](concord::multi::CATALOG_GROUP)) takes its commands
//! ([`CatalogCommand`](concord::multi::CatalogCommand)) as ordinary
//! commands of that group.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use concord::multi::{CatchUpMark, GroupId};
use concord::{Index, Membership, MembershipChange, NodeId, Term};

/// Largest answer read back (a view of every group a server leads).
pub const ADMIN_ANSWER_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Most changes one [`AdminRequest::ChangeBatch`] carries.
pub const ADMIN_BATCH_CHANGES_MAX: usize = 4096;

/// A membership request to a multi-group server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminRequest {
    /// The members of the request's group, as this server sees them
    /// (any server hosting it answers; the leader knows the progress).
    List,
    /// Propose a change of the request's group's membership (at its
    /// leader). Answered [`AdminAnswer::Proposed`] once appended at the
    /// leader: poll [`AdminRequest::List`] until the configuration is
    /// committed and not joint to know it took effect.
    Change(MembershipChange),
    /// Hand the request's group's leadership to this voter.
    Transfer(NodeId),
    /// Every group this server leads that names `old` or `new`, as the
    /// replace planner needs it ([`GroupView`]). Any server answers for
    /// the groups it leads.
    ReplaceView {
        /// The server replaced.
        old: NodeId,
        /// The server taking its place.
        new: NodeId,
    },
    /// Propose each change to its group, at this server, for each group
    /// it leads (at most [`ADMIN_BATCH_CHANGES_MAX`]). The request's own
    /// group is ignored.
    ChangeBatch(Vec<(GroupId, MembershipChange)>),
    /// The groups this server leads (for `member drain`), at most
    /// `groups_max` of them, in ascending id.
    Led {
        /// Most groups listed.
        groups_max: usize,
    },
    /// The replaces of servers under way that the catalog records (asked
    /// of the catalog group's leader; any other server redirects).
    Replaces,
    /// The catalog itself, as its snapshot's bytes
    /// ([`concord::multi::Catalog::restore`] reads them back): servers,
    /// zones, states, placement rule, moves under way (asked of the
    /// catalog group's leader; any other server redirects).
    Catalog,
    /// Every group this server leads, at most `groups_max` of them in
    /// ascending id, as the balancer needs them ([`LedGroup`]).
    LedGroups {
        /// Most groups listed.
        groups_max: usize,
    },
}

/// One group as its leader sees it, for `cluster status` and `cluster
/// balance`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedGroup {
    /// The group.
    pub group: GroupId,
    /// The leader's term.
    pub term: Term,
    /// The configuration in force at the leader.
    pub membership: Membership,
    /// A change not final yet (not committed, or joint).
    pub change_pending: bool,
    /// The members holding the leader's log within the promote bound.
    pub caught_up: Vec<NodeId>,
    /// The voter the group's configuration prefers as its leader
    /// (`--preferred-leader`, `--spread-leaders`): the leader balancer
    /// leaves the group alone.
    pub preferred_leader: Option<NodeId>,
    /// Each learner's progress as the leader sees it, by id: a balancer
    /// undoes a move whose target's mark stops rising
    /// ([`concord::multi::MoveStall`]).
    pub learner_marks: Vec<(NodeId, CatchUpMark)>,
}

/// One group's configuration as its leader sees it, for the replace
/// planner ([`concord::multi::ReplaceGroup`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupView {
    /// The group.
    pub group: GroupId,
    /// The leader's term.
    pub term: Term,
    /// The configuration in force at the leader.
    pub membership: Membership,
    /// A change not final yet (not committed, or joint).
    pub change_pending: bool,
    /// The new server holds the leader's log within the promote bound.
    pub new_caught_up: bool,
}

/// One group's members as one server sees them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMembers {
    /// The group.
    pub group: GroupId,
    /// The server that answered.
    pub answered_by: NodeId,
    /// Its term in the group.
    pub term: Term,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// Its commit index in the group.
    pub commit_index: Index,
    /// Index of the entry holding the configuration in force.
    pub configuration_index: Index,
    /// Whether that entry is committed.
    pub configuration_committed: bool,
    /// The configuration in force.
    pub membership: Membership,
    /// Each member's match index and lag in entries (known at the
    /// leader only; empty elsewhere).
    pub progress: Vec<(NodeId, Index, u64)>,
    /// Each member's address, as the catalog records it.
    pub addrs: Vec<(NodeId, String)>,
    /// The latest forced recovery in the answering server's log of the
    /// group, for a person: "forced recovery at index I, term T: ...".
    pub forced_recovery: Option<String>,
}

impl GroupMembers {
    /// This view as a single-group server answered `member list`
    /// ([`crate::wire::Members`]): roles as words, each member's address,
    /// match index and lag (known at the leader only), the audit record
    /// of the latest forced recovery.
    pub fn to_members(&self) -> crate::wire::Members {
        let m = &self.membership;
        let progress: std::collections::BTreeMap<NodeId, (Index, u64)> = self
            .progress
            .iter()
            .map(|(id, matched, lag)| (*id, (*matched, *lag)))
            .collect();
        let members = m
            .members()
            .into_iter()
            .map(|id| {
                let incoming = m.voters.contains(&id);
                let kind = if m.is_witness(id) { "witness" } else { "voter" };
                let role = if m.is_learner(id) {
                    "learner".to_string()
                } else if incoming {
                    kind.to_string()
                } else {
                    format!("outgoing {kind}")
                };
                crate::wire::MemberInfo {
                    id,
                    role,
                    addr: self
                        .addrs
                        .iter()
                        .find(|(node, _)| *node == id)
                        .map(|(_, addr)| addr.clone()),
                    match_index: progress.get(&id).map(|(matched, _)| *matched),
                    lag_entries: progress.get(&id).map(|(_, lag)| *lag),
                }
            })
            .collect();
        crate::wire::Members {
            answered_by: self.answered_by,
            term: self.term,
            leader: self.leader,
            commit_index: self.commit_index,
            configuration_index: self.configuration_index,
            configuration_committed: self.configuration_committed,
            voters: m.voters.iter().copied().collect(),
            voters_outgoing: m.voters_outgoing.iter().copied().collect(),
            learners: m.learners.iter().copied().collect(),
            members,
            forced_recovery: self.forced_recovery.clone(),
            not_member_since: None,
        }
    }
}

/// The answer to an [`AdminRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminAnswer {
    /// The members ([`AdminRequest::List`]).
    Members(Box<GroupMembers>),
    /// The change was appended at the leader ([`AdminRequest::Change`]).
    Proposed {
        /// Index of its configuration entry.
        index: Index,
    },
    /// The transfer started ([`AdminRequest::Transfer`]).
    TransferStarted,
    /// The groups led here naming OLD or NEW
    /// ([`AdminRequest::ReplaceView`]).
    Views(Vec<GroupView>),
    /// Per group of an [`AdminRequest::ChangeBatch`]: `None` if proposed,
    /// or why not.
    Batch(Vec<(GroupId, Option<String>)>),
    /// The groups led here ([`AdminRequest::Led`]), and how many in all.
    Led {
        /// The groups listed.
        groups: Vec<GroupId>,
        /// Groups led in all.
        total: usize,
    },
    /// Each replace under way, old server -> new server
    /// ([`AdminRequest::Replaces`]).
    Replaces(Vec<(NodeId, NodeId)>),
    /// The catalog's snapshot bytes ([`AdminRequest::Catalog`]).
    Catalog(Vec<u8>),
    /// The groups led here ([`AdminRequest::LedGroups`]), and how many
    /// in all.
    LedGroups {
        /// The groups listed.
        groups: Vec<LedGroup>,
        /// Groups led in all.
        total: usize,
    },
}

impl AdminAnswer {
    /// The answer's bytes.
    pub fn encode(&self) -> Bytes {
        Bytes::from(concord::codec::encode(self).expect("admin answers encode"))
    }

    /// Reads an answer back; malformed bytes are an error, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<AdminAnswer, String> {
        concord::codec::decode(bytes, ADMIN_ANSWER_BYTES_MAX)
            .map_err(|e| format!("a malformed answer from the server: {e}"))
    }
}

/// The answer of the catalog group to one of its commands: empty when
/// applied, the reason otherwise.
pub fn catalog_answer(result: Result<(), String>) -> Bytes {
    match result {
        Ok(()) => Bytes::new(),
        Err(reason) => Bytes::from(reason.into_bytes()),
    }
}

/// Reads [`catalog_answer`] back.
pub fn catalog_result(answer: &[u8]) -> Result<(), String> {
    if answer.is_empty() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(answer).into_owned())
    }
}
