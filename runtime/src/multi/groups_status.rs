//! What a multi-group server tells `concord-cli status` about its groups,
//! in an answer bounded in bytes whatever the number of groups
//! ([`STATUS_ANSWER_BYTES_MAX`]): a summary of the node
//! ([`GroupsSummary`]: groups led, followed, without a leader, asleep,
//! behind; the worst-lagging groups by name; each peer), or one group
//! as a single-group server shows itself ([`OneGroup`]).
//!
//! A client asks with [`GroupOp::Status`](super::wire::GroupOp::Status)
//! on a client connection; the answer is
//! [`ClientResponse::Done`](crate::wire::ClientResponse::Done)
//! holding a [`StatusAnswer`] encoded with [`concord::codec`].
//!
//! ## "Behind"
//!
//! A group is **behind** on a node when that node sees it trail by at
//! least [`BEHIND_ENTRIES`] entries: at the group's leader, a member
//! whose log (its match index) trails the leader's last index; at any
//! member, its applied index trailing its commit index. Replication lag
//! is only known to the leader, so a node reports it for the groups it
//! leads; `concord-cli status` asks every server, which covers every
//! group. Computing a summary walks every group once (a few milliseconds
//! for 100,000 groups), on the server's loop, only when asked.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use serde::{Deserialize, Serialize};

use concord::multi::{GroupId, GroupSleep, MultiNode, CATALOG_GROUP};
use concord::{Index, Node, NodeId, Role, Term};

use super::host::HostStats;
use crate::status::{NodeStatus, ServerCounters};

/// A group trailing by at least this many entries is behind (see the
/// [module documentation](self)).
pub const BEHIND_ENTRIES: u64 = 100;
/// Most lagging groups a summary names (the worst first).
pub const WORST_GROUPS_MAX: usize = 10;
/// Most peers a summary lists (the rest are counted in
/// [`GroupsSummary::peers_total`]).
pub const PEERS_SHOWN_MAX: usize = 64;
/// Most node ids listed in each of a group's member sets and in its
/// followers' progress (the rest are counted).
pub const MEMBERS_SHOWN_MAX: usize = 64;
/// Largest encoded [`StatusAnswer`], whatever the number of groups and
/// members: every list in it is bounded by the limits above, every other
/// field is a number of at most 10 bytes (a test checks the largest
/// possible answers against this).
pub const STATUS_ANSWER_BYTES_MAX: usize = 16 * 1024;

/// Most replaces under way a summary lists (the catalog holds one per
/// replaced server).
pub const REPLACES_SHOWN_MAX: usize = 16;

/// What a client asks a multi-group server's status for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StatusQuery {
    /// A summary of every group hosted.
    Summary,
    /// One group.
    Group(GroupId),
    /// One group, as a single-group server's status showed it
    /// ([`NodeStatus`]: persisted index, first index, the server's
    /// counters, recovery and divergence notes): what
    /// [`OneGroupClient::status`](super::one_group_client::OneGroupClient::status)
    /// asks.
    Node(GroupId),
}

/// The answer to a [`StatusQuery`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StatusAnswer {
    /// The summary.
    Summary(GroupsSummary),
    /// The group asked for.
    Group(OneGroup),
    /// The group asked for with [`StatusQuery::Node`] (its followers
    /// listed up to [`MEMBERS_SHOWN_MAX`]).
    Node(Box<NodeStatus>),
    /// The group asked for is not hosted on this node.
    NotHosted {
        /// The group.
        group: GroupId,
        /// The node that answered.
        node: NodeId,
    },
}

/// A lagging group: which member trails, and by how much.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaggingGroup {
    /// The group.
    pub group: GroupId,
    /// The member whose log trails the leader's (this node is its
    /// leader), or `None`: this node's applied index trails its commit.
    pub member: Option<NodeId>,
    /// By how many entries.
    pub lag_entries: u64,
}

/// One peer as the node sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerLink {
    /// The peer.
    pub id: NodeId,
    /// Whether node-level liveness takes it for alive (a frame from it
    /// arrived within the liveness timeout).
    pub alive: bool,
    /// Milliseconds since a frame from it last arrived (or the server
    /// started).
    pub heard_ms_ago: u64,
    /// Groups hosted here whose leader, as known here, is this peer.
    pub groups_it_leads: u64,
}

/// A multi-group node's summary of its groups.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupsSummary {
    /// The node.
    pub id: NodeId,
    /// Data groups hosted (the catalog, group
    /// [`CATALOG_GROUP`], is not
    /// counted in this or in any other count of groups).
    pub groups_hosted: u64,
    /// The catalog's leader as known here (`None`: no catalog hosted here,
    /// or its leader is not known).
    pub catalog_leader: Option<NodeId>,
    /// Groups this node leads.
    pub groups_led: u64,
    /// Groups in which this node follows a known leader.
    pub groups_followed: u64,
    /// Groups without a known leader here (electing, or waiting to).
    pub groups_without_leader: u64,
    /// Groups in which this node is a witness.
    pub groups_witnessed: u64,
    /// Groups asleep (quiesced: not ticked, no heartbeats).
    pub groups_asleep: u64,
    /// Groups behind by [`BEHIND_ENTRIES`] or more (see the
    /// [module documentation](self)).
    pub groups_behind: u64,
    /// The threshold of `groups_behind`, in entries.
    pub behind_entries: u64,
    /// The worst-lagging groups, worst first (at most
    /// [`WORST_GROUPS_MAX`], every one behind).
    pub worst: Vec<LaggingGroup>,
    /// The peers (at most [`PEERS_SHOWN_MAX`], in id order).
    pub peers: Vec<PeerLink>,
    /// Peers in all.
    pub peers_total: u64,
    /// Reads served: at a leader after a heartbeat round, under a lease,
    /// at a follower (every group summed, since the server started).
    pub reads_read_index: u64,
    /// See `reads_read_index`.
    pub reads_lease: u64,
    /// See `reads_read_index`.
    pub reads_follower: u64,
    /// Client requests answered with a redirect to the group's leader.
    pub redirects: u64,
    /// Groups still catching up after this server started with lost or
    /// damaged storage (they vote again once caught up).
    pub groups_recovering_storage: u64,
    /// Groups whose committed log was found contradicting their leader's
    /// (each serves no reads since).
    pub groups_diverged: u64,
    /// Replaces of a server under way (old, new), as this server's copy
    /// of the catalog records them: at most [`REPLACES_SHOWN_MAX`]. A
    /// replace whose command died stays here until run again.
    pub replaces: Vec<(NodeId, NodeId)>,
}

/// A follower's progress, as its leader (this node) tracks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowerProgress {
    /// The follower.
    pub id: NodeId,
    /// The last entry known to match the leader's log.
    pub match_index: Index,
    /// The next entry to send.
    pub next_index: Index,
    /// Whether it answered within the last election timeout.
    pub recently_active: bool,
}

/// One group as this node sees it, as a single-group server shows itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OneGroup {
    /// The group.
    pub group: GroupId,
    /// The node that answered.
    pub node: NodeId,
    /// Its role here (`Leader`, `Follower`, `Candidate`, `PreCandidate`).
    pub role: String,
    /// Whether this node is a witness of the group.
    pub witness: bool,
    /// `awake`, or asleep: `asleep-leading`, `asleep-following`,
    /// `asleep-waiting` (to elect a leader).
    pub sleep: String,
    /// Its term here.
    pub term: Term,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// Last log index (durable or not).
    pub last_index: Index,
    /// Commit index.
    pub commit_index: Index,
    /// Applied index.
    pub applied_index: Index,
    /// Index of the newest snapshot (0: none).
    pub snapshot_index: Index,
    /// The configuration's index in the log.
    pub configuration_index: Index,
    /// Voters (at most [`MEMBERS_SHOWN_MAX`]; so each list below).
    pub voters: Vec<NodeId>,
    /// Outgoing voters of a joint configuration (empty otherwise).
    pub voters_outgoing: Vec<NodeId>,
    /// Learners.
    pub learners: Vec<NodeId>,
    /// Witnesses among the voters.
    pub witnesses: Vec<NodeId>,
    /// Members in all (listed or not).
    pub members_total: u64,
    /// At the leader: each follower's progress.
    pub followers: Vec<FollowerProgress>,
}

/// `query`'s answer from the node `multi`, whose loop counted `host` and
/// ticks every `tick_ms` milliseconds.
pub fn answer(
    multi: &MultiNode,
    host: &HostStats,
    tick_ms: u64,
    query: StatusQuery,
) -> StatusAnswer {
    match query {
        StatusQuery::Summary => StatusAnswer::Summary(summary(multi, host, tick_ms)),
        StatusQuery::Group(group) => match multi.group(group) {
            Some(node) => StatusAnswer::Group(one_group(multi, group, node)),
            None => StatusAnswer::NotHosted {
                group,
                node: multi.id(),
            },
        },
        StatusQuery::Node(group) => match multi.group(group) {
            Some(node) => StatusAnswer::Node(Box::new(node_status(multi, host, tick_ms, node))),
            None => StatusAnswer::NotHosted {
                group,
                node: multi.id(),
            },
        },
    }
}

/// `node`'s status as a single-group server showed it: the server's
/// counters are this host's (every group summed; with one group, that
/// group's), a follower's last contact is the node-level one.
fn node_status(multi: &MultiNode, host: &HostStats, tick_ms: u64, node: &Node) -> NodeStatus {
    let counters = ServerCounters {
        proposals: host.proposals,
        entries_applied: host.entries_applied,
        redirects: host.redirects,
        reads_read_index: host.reads_read_index,
        reads_lease: host.reads_lease,
        reads_follower: host.reads_follower,
        // The group's own count (the single-group server counted the
        // same `FollowerLogRegressed` actions).
        follower_log_regressions: node.stats().follower_log_regressions,
        ..ServerCounters::default()
    };
    let mut status = NodeStatus::of(node, counters);
    status.peers.truncate(MEMBERS_SHOWN_MAX);
    for peer in &mut status.peers {
        peer.last_contact_ms = multi
            .peer_heard_ticks_ago(peer.id)
            .map(|ticks| ticks.saturating_mul(tick_ms));
    }
    status
}

/// The worst lag of `node`'s group as this node sees it: (member, lag).
fn lag(node: &Node) -> Option<(Option<NodeId>, u64)> {
    let mut worst = None;
    let applying = node.commit_index().saturating_sub(node.applied_index());
    if applying > 0 {
        worst = Some((None, applying));
    }
    if node.role() == Role::Leader {
        let last = node.last_index();
        for (peer, progress) in node.progress_all() {
            let behind = last.saturating_sub(progress.match_index);
            if behind > worst.map_or(0, |(_, lag)| lag) {
                worst = Some((Some(peer), behind));
            }
        }
    }
    worst
}

/// A lagging group's place among the worst: its lag, then the lower
/// group id first; and the member that trails.
type WorstKey = (u64, Reverse<GroupId>, Option<NodeId>);

fn summary(multi: &MultiNode, host: &HostStats, tick_ms: u64) -> GroupsSummary {
    let me = multi.id();
    let (mut led, mut followed, mut leaderless, mut witnessed) = (0u64, 0u64, 0u64, 0u64);
    let (mut asleep, mut behind) = (0u64, 0u64);
    let mut led_by: BTreeMap<NodeId, u64> = BTreeMap::new();
    // The worst WORST_GROUPS_MAX seen so far, smallest on top: a group
    // enters only by pushing out a smaller lag (ties: the lower group id
    // stays), so memory is bounded whatever the number of groups.
    let mut worst: BinaryHeap<Reverse<WorstKey>> = BinaryHeap::with_capacity(WORST_GROUPS_MAX + 1);
    let mut catalog_leader = None;
    let mut catalog_hosted = 0u64;
    for (group, node) in multi.groups() {
        if group == CATALOG_GROUP {
            catalog_hosted = 1;
            catalog_leader = if node.role() == Role::Leader {
                Some(me)
            } else {
                node.leader()
            };
            continue;
        }
        match (node.role(), node.leader()) {
            (Role::Leader, _) => led += 1,
            (_, Some(leader)) if leader != me => {
                followed += 1;
                *led_by.entry(leader).or_default() += 1;
            }
            _ => leaderless += 1,
        }
        witnessed += u64::from(node.is_witness_node());
        if !matches!(multi.sleep_state(group), Some(GroupSleep::Awake) | None) {
            asleep += 1;
        }
        if let Some((member, lag)) = lag(node).filter(|(_, lag)| *lag >= BEHIND_ENTRIES) {
            behind += 1;
            worst.push(Reverse((lag, Reverse(group), member)));
            if worst.len() > WORST_GROUPS_MAX {
                worst.pop();
            }
        }
    }
    let mut worst: Vec<LaggingGroup> = worst
        .into_iter()
        .map(
            |Reverse((lag_entries, Reverse(group), member))| LaggingGroup {
                group,
                member,
                lag_entries,
            },
        )
        .collect();
    worst.sort_by_key(|lagging| (Reverse(lagging.lag_entries), lagging.group));
    let peers_total = multi.peer_ids().count() as u64;
    let peers = multi
        .peer_ids()
        .take(PEERS_SHOWN_MAX)
        .map(|id| PeerLink {
            id,
            alive: multi.peer_alive(id).unwrap_or(false),
            heard_ms_ago: multi
                .peer_heard_ticks_ago(id)
                .unwrap_or(0)
                .saturating_mul(tick_ms),
            groups_it_leads: led_by.get(&id).copied().unwrap_or(0),
        })
        .collect();
    let summary = GroupsSummary {
        id: me,
        groups_hosted: multi.group_count() as u64 - catalog_hosted,
        catalog_leader,
        groups_led: led,
        groups_followed: followed,
        groups_without_leader: leaderless,
        groups_witnessed: witnessed,
        groups_asleep: asleep,
        groups_behind: behind,
        behind_entries: BEHIND_ENTRIES,
        worst,
        peers,
        peers_total,
        reads_read_index: host.reads_read_index,
        reads_lease: host.reads_lease,
        reads_follower: host.reads_follower,
        redirects: host.redirects,
        groups_recovering_storage: host
            .groups_recovering_storage
            .saturating_sub(host.groups_recovered_storage),
        groups_diverged: host.groups_diverged,
        replaces: Vec::new(),
    };
    assert_eq!(led + followed + leaderless, summary.groups_hosted);
    assert!(summary.worst.len() <= WORST_GROUPS_MAX && summary.peers.len() <= PEERS_SHOWN_MAX);
    summary
}

fn one_group(multi: &MultiNode, group: GroupId, node: &Node) -> OneGroup {
    let membership = node.membership();
    let listed = |ids: &std::collections::BTreeSet<NodeId>| -> Vec<NodeId> {
        ids.iter().copied().take(MEMBERS_SHOWN_MAX).collect()
    };
    let followers = if node.role() == Role::Leader {
        node.progress_all()
            .take(MEMBERS_SHOWN_MAX)
            .map(|(id, progress)| FollowerProgress {
                id,
                match_index: progress.match_index,
                next_index: progress.next_index,
                recently_active: progress.recently_active,
            })
            .collect()
    } else {
        Vec::new()
    };
    let sleep = match multi.sleep_state(group) {
        Some(GroupSleep::Awake) | None => "awake",
        Some(GroupSleep::Leading) => "asleep-leading",
        Some(GroupSleep::Following { .. }) => "asleep-following",
        Some(GroupSleep::Waiting) => "asleep-waiting",
    };
    OneGroup {
        group,
        node: multi.id(),
        role: format!("{:?}", node.role()),
        witness: node.is_witness_node(),
        sleep: sleep.to_string(),
        term: node.term(),
        leader: node.leader(),
        last_index: node.last_index(),
        commit_index: node.commit_index(),
        applied_index: node.applied_index(),
        snapshot_index: node.latest_snapshot_index(),
        configuration_index: node.membership_index(),
        voters: listed(&membership.voters),
        voters_outgoing: listed(&membership.voters_outgoing),
        learners: listed(&membership.learners),
        witnesses: listed(&membership.witnesses),
        members_total: membership.members().len() as u64,
        followers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use concord::multi::MultiConfig;
    use concord::{Config, Recovered};

    fn encoded_len(answer: &StatusAnswer) -> usize {
        concord::codec::encode(answer).unwrap().len()
    }

    #[test]
    fn the_largest_answers_fit_the_stated_bound() {
        let big = u64::MAX;
        let summary = GroupsSummary {
            id: big,
            groups_hosted: big,
            catalog_leader: Some(big),
            groups_led: big,
            groups_followed: big,
            groups_without_leader: big,
            groups_witnessed: big,
            groups_asleep: big,
            groups_behind: big,
            behind_entries: big,
            worst: vec![
                LaggingGroup {
                    group: big,
                    member: Some(big),
                    lag_entries: big,
                };
                WORST_GROUPS_MAX
            ],
            peers: vec![
                PeerLink {
                    id: big,
                    alive: true,
                    heard_ms_ago: big,
                    groups_it_leads: big,
                };
                PEERS_SHOWN_MAX
            ],
            peers_total: big,
            reads_read_index: big,
            reads_lease: big,
            reads_follower: big,
            redirects: big,
            groups_recovering_storage: big,
            groups_diverged: big,
            replaces: vec![(big, big); REPLACES_SHOWN_MAX],
        };
        let ids = vec![big; MEMBERS_SHOWN_MAX];
        let group = OneGroup {
            group: big,
            node: big,
            role: "PreCandidate".to_string(),
            witness: true,
            sleep: "asleep-following".to_string(),
            term: big,
            leader: Some(big),
            last_index: big,
            commit_index: big,
            applied_index: big,
            snapshot_index: big,
            configuration_index: big,
            voters: ids.clone(),
            voters_outgoing: ids.clone(),
            learners: ids.clone(),
            witnesses: ids,
            members_total: big,
            followers: vec![
                FollowerProgress {
                    id: big,
                    match_index: big,
                    next_index: big,
                    recently_active: true,
                };
                MEMBERS_SHOWN_MAX
            ],
        };
        let summary_bytes = encoded_len(&StatusAnswer::Summary(summary));
        let group_bytes = encoded_len(&StatusAnswer::Group(group));
        assert!(summary_bytes <= STATUS_ANSWER_BYTES_MAX, "{summary_bytes}");
        assert!(group_bytes <= STATUS_ANSWER_BYTES_MAX, "{group_bytes}");
    }

    /// Three one-voter groups led here, one of them with a backlog
    /// to apply.
    #[test]
    fn a_summary_counts_roles_and_names_the_group_behind() {
        let mut multi = MultiNode::new(MultiConfig::new(1, [])).unwrap();
        for group in [4, 5, 6] {
            multi
                .create_group(group, Config::new(1, [1]), Recovered::default())
                .unwrap();
        }
        let mut out = Vec::new();
        for _ in 0..40 {
            multi
                .step(concord::multi::MultiInput::Tick, &mut out)
                .unwrap();
            drive(&mut multi, &mut out, None);
        }
        // Group 5 commits 150 entries and applies none of them.
        let commands = (0..150)
            .map(|i| bytes::Bytes::from(format!("c{i}")))
            .collect();
        let input = concord::Input::ProposeBatch(commands);
        multi
            .step(
                concord::multi::MultiInput::Group { group: 5, input },
                &mut out,
            )
            .unwrap();
        drive(&mut multi, &mut out, Some(5));
        let StatusAnswer::Summary(summary) =
            answer(&multi, &HostStats::default(), 10, StatusQuery::Summary)
        else {
            panic!("a summary was asked for");
        };
        assert_eq!(summary.groups_hosted, 3);
        assert_eq!(summary.groups_led, 3);
        assert_eq!(summary.groups_followed + summary.groups_without_leader, 0);
        assert_eq!(summary.groups_behind, 1);
        assert_eq!(
            summary.worst,
            vec![LaggingGroup {
                group: 5,
                member: None,
                lag_entries: 150
            }]
        );
        let StatusAnswer::Group(one) =
            answer(&multi, &HostStats::default(), 10, StatusQuery::Group(5))
        else {
            panic!("group 5 is hosted");
        };
        assert_eq!((one.role.as_str(), one.leader), ("Leader", Some(1)));
        assert_eq!(one.commit_index - one.applied_index, 150);
        assert_eq!(one.voters, vec![1]);
        assert_eq!(
            answer(&multi, &HostStats::default(), 10, StatusQuery::Group(9)),
            StatusAnswer::NotHosted { group: 9, node: 1 }
        );
        // The single-group view of the same group: the core's indexes and
        // the host's counters.
        let host = HostStats {
            proposals: 150,
            reads_lease: 7,
            ..HostStats::default()
        };
        let StatusAnswer::Node(node) = answer(&multi, &host, 10, StatusQuery::Node(5)) else {
            panic!("group 5 is hosted");
        };
        assert_eq!(
            (node.id, node.role.as_str(), node.leader),
            (1, "Leader", Some(1))
        );
        assert_eq!(node.commit_index - node.applied_index, 150);
        assert_eq!(node.persisted_index, node.last_index);
        assert_eq!((node.server.proposals, node.server.reads_lease), (150, 7));
        assert_eq!(
            answer(&multi, &host, 10, StatusQuery::Node(9)),
            StatusAnswer::NotHosted { group: 9, node: 1 }
        );
    }

    /// Executes what the layer asks, persisting at once and applying
    /// every group's entries but `unapplied`'s.
    fn drive(
        multi: &mut MultiNode,
        out: &mut Vec<concord::multi::MultiAction>,
        unapplied: Option<GroupId>,
    ) {
        use concord::multi::{MultiAction, MultiInput};
        for _ in 0..100 {
            multi.flush(out);
            if out.is_empty() {
                return;
            }
            for action in std::mem::take(out) {
                match action {
                    MultiAction::Persist(batch) => {
                        multi.step(MultiInput::Persisted(batch.id), out).unwrap();
                    }
                    MultiAction::Group {
                        group,
                        action: concord::Action::Apply { entries },
                    } if Some(group) != unapplied => {
                        let last = entries.last().map_or(0, |entry| entry.index);
                        let input = concord::Input::Applied(last);
                        multi.step(MultiInput::Group { group, input }, out).unwrap();
                    }
                    _ => {}
                }
            }
        }
        panic!("the layer did not settle");
    }
}
