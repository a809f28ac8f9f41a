//! Membership change on the one runtime under madsim: three nodes of
//! `concord_tokio::cluster::start_node` (the multi-group host's loop
//! serving the key-value store as group 1 beside the catalog, group 0,
//! shared logs on the page-cache disk model, madsim's TCP), and a fourth
//! that starts empty with `NodeSettings::join`, following the catalog
//! as a learner. Membership goes through the one runtime's admin
//! requests as `concord-cli member` sends them to a cluster of one group
//! (`node/src/multi_admin.rs`, `one_group_member`): the catalog first on
//! the way in (the server's address, then the server itself, then the
//! group assigned to it), the data group's change, the catalog last on
//! the way out; the data group's members are read with
//! `OneGroupClient::members`.
//!
//! The fourth node is added as a learner while an old voter is cut off
//! (madsim `clog`), is refused promotion while it is itself cut off and
//! falls behind, is promoted once it caught up, takes the leadership (a
//! client given only the old voters' addresses writes through it,
//! learning its address from a redirect), and then stands in for an old
//! voter that is removed while cut off, and for another one cut off
//! afterwards: every acknowledged write stays readable through the new
//! configuration. No node is killed.
//!
//! ```text
//! RUSTFLAGS="--cfg madsim" MADSIM_TEST_SEED=7 MADSIM_TEST_CHECK_DETERMINISM=1 \
//!     cargo test -p concord-madsim-tests --test madsim_membership --target-dir target/madsim
//! ```
#![cfg(madsim)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use bytes::Bytes;
use concord::multi::{CatalogCommand, GroupId, CATALOG_GROUP};
use concord::{Membership, MembershipChange, NodeId};
use concord_madsim_tests::{serve_kv, NodeDisk};
use concord_services::KvClient;
use concord_tokio::client::ClientConfig;
use concord_tokio::cluster::{NodeSettings, GROUP};
use concord_tokio::multi::admin::{catalog_result, AdminAnswer, AdminRequest, GroupMembers};
use concord_tokio::multi::routing_client::{RoutingClient, RoutingConfig, RoutingError};
use concord_tokio::multi::wire::GroupOp;
use madsim::runtime::Handle;
use madsim::time::sleep;

const CLUSTER: &str = "madsim-member";
const PORT: u16 = 7000;
/// Rounds of an admin step before the test gives up on it (each round
/// waits [`ROUND_PAUSE`] at least).
const ROUNDS_MAX: u32 = 100;
const ROUND_PAUSE: Duration = Duration::from_millis(100);

fn node_ip(id: u64) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, id as u8))
}

fn addr(id: u64) -> String {
    format!("{}:{PORT}", node_ip(id))
}

fn client(servers: Vec<String>) -> KvClient {
    let mut config = ClientConfig::new(servers, CLUSTER);
    config.request_timeout = Duration::from_millis(800);
    config.attempts_max = 40;
    config.retry_backoff = Duration::from_millis(50);
    KvClient::new(config)
}

async fn put_keys(
    client: &mut KvClient,
    acked: &mut BTreeMap<String, String>,
    prefix: &str,
    count: u32,
) {
    for i in 0..count {
        let (k, v) = (format!("{prefix}-{i}"), format!("v{i}"));
        client.put(k.clone(), v.clone()).await.expect("write");
        acked.insert(k, v);
    }
}

fn ids(ids: &BTreeSet<NodeId>) -> Vec<NodeId> {
    ids.iter().copied().collect()
}

/// Whether `change` is in force in `membership`.
fn in_force(change: MembershipChange, membership: &Membership) -> bool {
    match change {
        MembershipChange::AddLearner(id) => membership.is_learner(id),
        MembershipChange::PromoteLearner(id) | MembershipChange::AddVoter(id) => {
            membership.voters.contains(&id) && !membership.is_learner(id)
        }
        MembershipChange::Remove(id) => !membership.contains(id),
        other => panic!("the test makes no {other:?}"),
    }
}

/// The one runtime's membership requests for a cluster of one group, as
/// `concord-cli member` makes them: admin requests and catalog commands
/// through a routing client, the data group's members through the
/// one-group client.
struct Admin {
    routing: RoutingClient,
    data: KvClient,
}

impl Admin {
    fn new(servers: &BTreeMap<NodeId, String>) -> Admin {
        let mut config = RoutingConfig::new(CLUSTER, servers.clone());
        config.attempts_max = 40;
        config.request_timeout = Duration::from_millis(800);
        config.connect_timeout = Duration::from_millis(300);
        config.backoff = Duration::from_millis(50);
        Admin {
            routing: RoutingClient::new(config).expect("routing client"),
            data: client(servers.values().cloned().collect()),
        }
    }

    /// `group`'s members as its leader sees them (the data group's
    /// through `OneGroupClient::members`), so that a change is judged in
    /// force or not where it is proposed.
    async fn members(&mut self, group: GroupId) -> GroupMembers {
        for _ in 0..ROUNDS_MAX {
            let members = if group == GROUP {
                let one_group = self.data.one_group();
                one_group.members().await.map_err(|e| e.to_string())
            } else {
                match self.request(group, AdminRequest::List).await {
                    Ok(AdminAnswer::Members(members)) => Ok(self.leaders_view(*members).await),
                    Ok(other) => panic!("a member list answered {other:?}"),
                    Err(e) => Err(e.to_string()),
                }
            };
            match members {
                Ok(members) => return members,
                Err(e) => tracing::info!(group, error = %e, "members not listed yet"),
            }
            sleep(ROUND_PAUSE).await;
        }
        panic!("group {group}'s members could not be listed");
    }

    /// `list` as the leader it names sees it, when another server
    /// answered and the leader does (as `concord-cli member list`).
    async fn leaders_view(&mut self, list: GroupMembers) -> GroupMembers {
        let Some(leader) = list.leader.filter(|leader| *leader != list.answered_by) else {
            return list;
        };
        if let Some((_, addr)) = list.addrs.iter().find(|(id, _)| *id == leader) {
            self.routing.learn(leader, addr);
        }
        let op = GroupOp::Admin(AdminRequest::List);
        match self.routing.call_node(leader, list.group, op).await {
            Ok(bytes) => match AdminAnswer::decode(&bytes) {
                Ok(AdminAnswer::Members(members)) => *members,
                _ => list,
            },
            Err(_) => list,
        }
    }

    async fn request(
        &mut self,
        group: GroupId,
        request: AdminRequest,
    ) -> Result<AdminAnswer, RoutingError> {
        let bytes = self.routing.call(group, GroupOp::Admin(request)).await?;
        Ok(AdminAnswer::decode(&bytes).expect("an admin answer"))
    }

    /// Applies `command` to the catalog (idempotent: sent again while its
    /// outcome is unknown); the catalog must not refuse it.
    async fn catalog(&mut self, command: CatalogCommand) {
        for _ in 0..ROUNDS_MAX {
            match self.routing.command(CATALOG_GROUP, command.encode()).await {
                Ok(answer) => {
                    return catalog_result(&answer)
                        .unwrap_or_else(|e| panic!("the catalog refused {command:?}: {e}"))
                }
                Err(e @ (RoutingError::Unknown { .. } | RoutingError::Exhausted { .. })) => {
                    tracing::info!(error = %e, ?command, "catalog command sent again");
                    sleep(ROUND_PAUSE).await;
                }
                Err(e) => panic!("the catalog did not take {command:?}: {e}"),
            }
        }
        panic!("the catalog never took {command:?}");
    }

    /// Puts `change` in force in `group`: proposes it at the leader and
    /// waits until its configuration is committed and not joint. Skipped
    /// when already in force, and proposed again while a lost answer
    /// leaves it unknown or another change is under way; the leader's
    /// refusal is the error.
    async fn change(&mut self, group: GroupId, change: MembershipChange) -> Result<(), String> {
        for _ in 0..ROUNDS_MAX {
            let now = self.members(group).await;
            if now.configuration_committed && !now.membership.is_joint() {
                if in_force(change, &now.membership) {
                    return Ok(());
                }
                match self.request(group, AdminRequest::Change(change)).await {
                    Ok(AdminAnswer::Proposed { index }) => {
                        tracing::info!(group, ?change, index, "membership change proposed")
                    }
                    Ok(other) => panic!("{change:?} answered {other:?}"),
                    Err(RoutingError::Refused { message, .. }) if message.contains("under way") => {
                    }
                    Err(RoutingError::Refused { message, .. }) => return Err(message),
                    Err(e) => tracing::info!(group, ?change, error = %e, "change sent again"),
                }
            }
            sleep(ROUND_PAUSE).await;
        }
        Err(format!(
            "group {group}: {change:?} not in force after {ROUNDS_MAX} rounds"
        ))
    }

    /// `concord-cli member add-learner ID ADDR`: the server's address in
    /// the catalog, the server a learner of the catalog, group 1 assigned
    /// to it, then a learner of group 1.
    async fn add_learner(&mut self, id: NodeId, addr: &str) -> Result<(), String> {
        let server = CatalogCommand::AddServer {
            id,
            addr: addr.to_string(),
        };
        self.catalog(server).await;
        self.change(CATALOG_GROUP, MembershipChange::AddLearner(id))
            .await?;
        let voters = self.members(GROUP).await.membership.voters;
        self.catalog(CatalogCommand::Assign {
            node: id,
            groups: vec![(GROUP, voters)],
        })
        .await;
        self.change(GROUP, MembershipChange::AddLearner(id)).await
    }

    /// `concord-cli member promote ID`: in the catalog, then in group 1.
    async fn promote(&mut self, id: NodeId) -> Result<(), String> {
        if self.members(CATALOG_GROUP).await.membership.is_learner(id) {
            self.change(CATALOG_GROUP, MembershipChange::PromoteLearner(id))
                .await?;
        }
        self.change(GROUP, MembershipChange::PromoteLearner(id))
            .await
    }

    /// `concord-cli member remove ID`: from group 1, then group 1
    /// unassigned from it in the catalog, then from the catalog.
    async fn remove(&mut self, id: NodeId) -> Result<(), String> {
        self.change(GROUP, MembershipChange::Remove(id)).await?;
        self.catalog(CatalogCommand::Unassign {
            node: id,
            groups: vec![GROUP],
        })
        .await;
        self.change(CATALOG_GROUP, MembershipChange::Remove(id))
            .await
    }

    /// `concord-cli member transfer-leader ID`, retried while the target
    /// is not ready (just back from a partition); true once it leads.
    async fn transfer_leader(&mut self, id: NodeId) -> bool {
        for _ in 0..ROUNDS_MAX {
            if self.members(GROUP).await.leader == Some(id) {
                return true;
            }
            match self.request(GROUP, AdminRequest::Transfer(id)).await {
                Ok(AdminAnswer::TransferStarted) => {}
                Ok(other) => panic!("a transfer answered {other:?}"),
                Err(RoutingError::Refused { message, .. })
                    if message.contains("recently")
                        || message.contains("behind")
                        || message.contains("already being transferred") => {}
                Err(RoutingError::Refused { message, .. })
                    if message.contains("already the leader") =>
                {
                    return true
                }
                Err(e) => panic!("the transfer to node {id} answered {e}"),
            }
            sleep(ROUND_PAUSE).await;
        }
        false
    }
}

#[madsim::test]
async fn learner_added_and_promoted_under_partitions() {
    let handle = Handle::current();
    let voters: BTreeMap<u64, String> = (1..=3).map(|id| (id, addr(id))).collect();
    let mut nodes = BTreeMap::new();
    for id in 1..=4u64 {
        let disk = NodeDisk::new();
        let mut peers = voters.clone();
        peers.insert(id, addr(id));
        let node = handle
            .create_node()
            .name(format!("node-{id}"))
            .ip(node_ip(id))
            .init(move || {
                let mut settings = NodeSettings::new(id, addr(id), peers.clone(), CLUSTER);
                // Node 4 starts empty, as a learner of the voters 1..3.
                settings.join = id == 4;
                serve_kv(settings, disk.clone())
            })
            .build();
        nodes.insert(id, node);
    }
    let net = madsim::net::NetSim::current();
    let driver = handle
        .create_node()
        .name("driver")
        .ip(IpAddr::V4(Ipv4Addr::new(10, 0, 1, 1)))
        .build();
    let (node1, node3, node4) = (nodes[&1].id(), nodes[&3].id(), nodes[&4].id());
    let all: Vec<String> = (1..=4).map(addr).collect();
    driver
        .spawn(async move {
            let mut c = client(voters.values().cloned().collect());
            let mut admin = Admin::new(&voters);
            let mut acked = BTreeMap::new();
            put_keys(&mut c, &mut acked, "before", 20).await;

            // Add the learner while old voter 3 is cut off: the address
            // record and the changes commit with voters 1 and 2.
            net.clog_node(node3);
            admin
                .add_learner(4, &addr(4))
                .await
                .expect("node 4 added as a learner");
            let members = admin.members(GROUP).await;
            assert_eq!(ids(&members.membership.learners), vec![4]);
            assert_eq!(ids(&members.membership.voters), vec![1, 2, 3]);
            let catalog = admin.members(CATALOG_GROUP).await;
            assert_eq!(ids(&catalog.membership.learners), vec![4]);
            put_keys(&mut c, &mut acked, "learner-added", 20).await;
            net.unclog_node(node3);

            // The learner is partitioned and falls behind: promotion is
            // refused with the leader's reason.
            net.clog_node(node4);
            put_keys(&mut c, &mut acked, "learner-cut-off", 100).await;
            match admin.promote(4).await {
                Err(reason) => {
                    eprintln!("promotion of the lagging learner refused: {reason}");
                    assert!(
                        reason.contains("group 1") && reason.contains("behind"),
                        "refused for lag: {reason}"
                    )
                }
                Ok(()) => panic!("a lagging learner was promoted"),
            }
            assert!(
                admin.members(GROUP).await.membership.is_learner(4),
                "the refused promotion left node 4 a learner"
            );
            // The catalog goes first (as `concord-cli member promote`
            // does), and its log did not move while node 4 was away.
            let catalog = admin.members(CATALOG_GROUP).await.membership;
            eprintln!(
                "after the refusal the catalog has voters {:?}, learners {:?}",
                catalog.voters, catalog.learners
            );
            net.unclog_node(node4);

            // Once it caught up the promotion goes through.
            let mut promoted = false;
            for _ in 0..ROUNDS_MAX {
                match admin.promote(4).await {
                    Ok(()) => {
                        promoted = true;
                        break;
                    }
                    Err(reason) if reason.contains("behind") => sleep(ROUND_PAUSE).await,
                    Err(reason) => panic!("promotion refused: {reason}"),
                }
            }
            assert!(promoted, "the learner caught up and was promoted");
            let members = admin.members(GROUP).await;
            assert_eq!(ids(&members.membership.voters), vec![1, 2, 3, 4]);
            assert!(members.membership.learners.is_empty() && !members.membership.is_joint());
            let catalog = admin.members(CATALOG_GROUP).await;
            assert_eq!(ids(&catalog.membership.voters), vec![1, 2, 3, 4]);

            // Leadership moves to node 4: a client given only the first
            // three addresses learns node 4's from a redirect and writes.
            assert!(
                admin.transfer_leader(4).await,
                "node 4 never took the leadership"
            );
            let mut old = client(voters.values().cloned().collect());
            put_keys(&mut old, &mut acked, "led-by-4", 20).await;
            assert_eq!(
                old.leader(),
                Some(addr(4).as_str()),
                "the client of the old voters found node 4 leading"
            );

            // Node 4 now counts: with 1 and 3 cut off, 2 and 4 are not a
            // majority of four, so remove 3 first (with 1, 2, 4 up), then
            // cut 1 off: 2 and 4 are a majority of {1, 2, 4}.
            net.clog_node(node3);
            admin.remove(3).await.expect("node 3 removed");
            let members = admin.members(GROUP).await;
            assert_eq!(ids(&members.membership.voters), vec![1, 2, 4]);
            let mut c = client(all.clone());
            put_keys(&mut c, &mut acked, "node3-removed", 20).await;
            net.clog_node(node1);
            put_keys(&mut c, &mut acked, "node1-cut-off", 20).await;
            for (k, v) in &acked {
                let got = c.get(k.clone()).await.expect("read");
                assert_eq!(got, Some(Bytes::from(v.clone())), "key {k}");
            }
            net.unclog_node(node1);
            let members = admin.members(GROUP).await;
            assert_eq!(ids(&members.membership.voters), vec![1, 2, 4]);
            assert!(members.membership.learners.is_empty());
            assert_eq!(
                members
                    .addrs
                    .iter()
                    .find(|(id, _)| *id == 4)
                    .map(|(_, a)| a.clone()),
                Some(addr(4))
            );
            let catalog = admin.members(CATALOG_GROUP).await;
            assert_eq!(ids(&catalog.membership.voters), vec![1, 2, 4]);
        })
        .await
        .expect("driver ran");
}
