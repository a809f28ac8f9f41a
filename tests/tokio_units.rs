//! In-process clusters on the one runtime
//! (`concord_tokio::cluster::start_node`: the multi-group host serving
//! group 1 beside the catalog, over loopback TCP, on simulated disks in
//! memory): a cluster that commits and survives the loss of its leader,
//! the typed client API, membership requests answered with typed
//! outcomes, and witness servers.
//!
//! (The single-group write-ahead log's own tests that lived here are
//! gone with it; the shared log's cover the same properties: see
//! `tests/multi_wal_crash.rs` and `tests/multi_wal_zero_ahead.rs`.)
mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::kv_nodes::{loopback_peers, start_kv_node};
use common::{free_ports, runtime};
use concord::multi::{CatalogCommand, CATALOG_GROUP};
use concord::{MembershipChange, NodeId};
use concord_services::KvClient;
use concord_tokio::client::ClientConfig;
use concord_tokio::cluster::{
    start_node, NodeSettings, NodeStorage, RunningNode, StartError, GROUP,
};
use concord_tokio::multi::admin::{catalog_result, AdminAnswer, AdminRequest, GroupMembers};
use concord_tokio::multi::page_cache::PageCacheDisk;
use concord_tokio::multi::snapshot_store::SnapshotStore;
use concord_tokio::multi::wire::GroupOp;
use concord_tokio::null::NullStateMachine;
use concord_tokio::wire::ClientResponse;

const CLUSTER: &str = "units";

/// Nodes 1 to `n` on free loopback ports.
fn peers_of(n: usize) -> BTreeMap<NodeId, String> {
    loopback_peers(&free_ports(n))
}

/// Settings of node `id` of `peers` with a 5 ms tick.
fn settings(id: NodeId, peers: &BTreeMap<NodeId, String>) -> NodeSettings {
    let mut settings = NodeSettings::new(id, peers[&id].clone(), peers.clone(), CLUSTER);
    settings.tick = Duration::from_millis(5);
    settings
}

/// Starts a node of the null state machine on `disk`, in its start
/// number `start`, retrying while its address is still held by its
/// previous run's listener (which stops just after the loop does).
async fn start_null(
    settings: NodeSettings,
    disk: &PageCacheDisk,
    start: u64,
) -> Result<RunningNode, StartError> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let storage = NodeStorage::memory(disk.clone(), start);
        match start_node(settings.clone(), || NullStateMachine, storage).await {
            Err(StartError::Io(reason)) if Instant::now() < deadline => {
                eprintln!("start of node {} retried: {reason}", settings.id);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            started => return started,
        }
    }
}

/// A command sent to node `node`'s group 1, in process.
async fn call(node: &RunningNode, command: impl Into<Bytes>) -> ClientResponse {
    node.server
        .call(GROUP, GroupOp::Command(command.into()))
        .await
}

/// A membership request to node `node`'s group 1, in process: the
/// answer, or the response refusing or redirecting it.
async fn admin(node: &RunningNode, request: AdminRequest) -> Result<AdminAnswer, ClientResponse> {
    match node.server.call(GROUP, GroupOp::Admin(request)).await {
        ClientResponse::Done(bytes) => Ok(AdminAnswer::decode(&bytes).expect("an admin answer")),
        other => Err(other),
    }
}

/// Group 1's members as node `node` sees them.
async fn members(node: &RunningNode) -> GroupMembers {
    match admin(node, AdminRequest::List).await {
        Ok(AdminAnswer::Members(members)) => *members,
        other => panic!("list answered {other:?}"),
    }
}

/// The leader of group 1 among `nodes`.
async fn wait_for_leader(nodes: &[Option<RunningNode>]) -> NodeId {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for node in nodes.iter().flatten() {
            if let Some(status) = node.status().await {
                if status.role == "Leader" {
                    return status.id;
                }
            }
        }
        assert!(Instant::now() < deadline, "no leader elected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The running node `id`.
fn at(nodes: &[Option<RunningNode>], id: NodeId) -> &RunningNode {
    nodes[id as usize - 1].as_ref().expect("node running")
}

async fn shutdown_all(nodes: Vec<Option<RunningNode>>) {
    for node in nodes.into_iter().flatten() {
        node.shutdown().await.unwrap();
    }
}

#[test]
fn in_memory_cluster_commits_and_survives_leader_loss() {
    runtime().block_on(async {
        let peers = peers_of(3);
        let disks: Vec<PageCacheDisk> = (0..3).map(|_| PageCacheDisk::new()).collect();
        let mut nodes = Vec::new();
        for id in 1..=3 {
            let node = start_null(settings(id, &peers), &disks[id as usize - 1], 1).await;
            nodes.push(Some(node.unwrap()));
        }
        let leader = wait_for_leader(&nodes).await;
        for i in 0..100u32 {
            match call(at(&nodes, leader), i.to_le_bytes().to_vec()).await {
                ClientResponse::Done(_) => {}
                other => panic!("write {i} failed: {other:?}"),
            }
        }
        // Stop the leader; the other two elect a new one and keep going.
        nodes[leader as usize - 1]
            .take()
            .unwrap()
            .shutdown()
            .await
            .unwrap();
        let new_leader = wait_for_leader(&nodes).await;
        assert_ne!(new_leader, leader);
        assert!(matches!(
            call(at(&nodes, new_leader), &b"after"[..]).await,
            ClientResponse::Done(_)
        ));
        // Restart the old leader from its disk: it catches up.
        let restarted = start_null(settings(leader, &peers), &disks[leader as usize - 1], 2);
        nodes[leader as usize - 1] = Some(restarted.await.unwrap());
        let target = at(&nodes, new_leader).status().await.unwrap().commit_index;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let status = at(&nodes, leader).status().await.unwrap();
            if status.applied_index >= target {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "restarted node did not catch up: {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        shutdown_all(nodes).await;
    });
}

#[test]
fn tcp_cluster_serves_the_typed_client_api() {
    runtime().block_on(async {
        let peers = peers_of(3);
        let mut nodes = Vec::new();
        for (&id, addr) in &peers {
            let settings = NodeSettings::new(id, addr.clone(), peers.clone(), CLUSTER);
            nodes.push(start_kv_node(settings).await.unwrap());
        }
        let mut client = KvClient::new(ClientConfig::new(
            peers.values().cloned().collect(),
            CLUSTER,
        ));
        client.put("k", "v1").await.unwrap();
        assert_eq!(
            client.get("k").await.unwrap(),
            Some(Bytes::from_static(b"v1"))
        );
        client.append("k", "+").await.unwrap();
        let nope = Some(Bytes::from_static(b"nope"));
        assert!(!client.cas("k", nope, "x").await.unwrap());
        let current = Some(Bytes::from_static(b"v1+"));
        assert!(client.cas("k", current, "v2").await.unwrap());
        assert_eq!(
            client.get_many(["k", "absent"]).await.unwrap(),
            vec![Some(Bytes::from_static(b"v2")), None]
        );
        client.put_many([("a", "1"), ("b", "2")]).await.unwrap();
        assert_eq!(
            client.get_via("b", None).await.unwrap(),
            Some(Bytes::from_static(b"2"))
        );
        // A client of another cluster is refused at the handshake.
        let mut stranger = KvClient::new(ClientConfig {
            attempts_max: 2,
            ..ClientConfig::new(peers.values().cloned().collect(), "other")
        });
        let error = stranger.get("k").await.unwrap_err().to_string();
        assert!(
            error.contains("refused") && error.contains("cluster id"),
            "{error}"
        );
        // Status of every node: each learns the commit of the five writes
        // (a follower with the leader's next message, so it may lag).
        let deadline = Instant::now() + Duration::from_secs(10);
        for i in 0..3 {
            loop {
                let status = client.status(i).await.unwrap();
                if status.commit_index >= 5 {
                    break;
                }
                assert!(Instant::now() < deadline, "{status:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        for node in nodes {
            node.shutdown().await.unwrap();
        }
    });
}

/// Sends `command` to the catalog (group 0) through its leader.
async fn catalog_command(nodes: &[Option<RunningNode>], command: CatalogCommand) {
    if let Err(reason) = try_catalog_command(nodes, &command).await {
        panic!("the catalog refused {command:?}: {reason}");
    }
}

/// Sends `command` to the catalog through its leader: its answer.
async fn try_catalog_command(
    nodes: &[Option<RunningNode>],
    command: &CatalogCommand,
) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for node in nodes.iter().flatten() {
            let op = GroupOp::Command(command.encode());
            match node.server.call(CATALOG_GROUP, op).await {
                ClientResponse::Done(answer) => return catalog_result(&answer),
                ClientResponse::NotLeader { .. } => {}
                other => panic!("the catalog answered {command:?} with {other:?}"),
            }
        }
        assert!(Instant::now() < deadline, "no catalog leader");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls node `node`'s view of group 1 until `done` holds of a committed,
/// not joint configuration.
async fn wait_members(node: &RunningNode, done: impl Fn(&GroupMembers) -> bool) -> GroupMembers {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let members = members(node).await;
        if members.configuration_committed
            && members.membership.voters_outgoing.is_empty()
            && done(&members)
        {
            return members;
        }
        assert!(
            Instant::now() < deadline,
            "node {} never saw the change: {members:?}",
            node.id()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Membership requests against an in-process cluster: typed answers for
/// every outcome a request can have short of a timeout.
#[test]
fn admin_requests_are_answered_with_typed_outcomes() {
    runtime().block_on(async {
        let peers = peers_of(3);
        let mut nodes = Vec::new();
        for id in 1..=3 {
            let node = start_null(settings(id, &peers), &PageCacheDisk::new(), 1).await;
            nodes.push(Some(node.unwrap()));
        }
        let leader = wait_for_leader(&nodes).await;
        let follower = (1..=3).find(|id| *id != leader).unwrap();
        // Wait until the follower knows the leader, then a change sent to
        // it is redirected.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let remove_3 = AdminRequest::Change(MembershipChange::Remove(3));
            match admin(at(&nodes, follower), remove_3).await {
                Err(ClientResponse::NotLeader { leader_hint, .. })
                    if leader_hint == Some(leader) =>
                {
                    break
                }
                Err(ClientResponse::NotLeader { .. }) => {}
                other => panic!("a follower answered a change with {other:?}"),
            }
            assert!(
                Instant::now() < deadline,
                "follower never learned the leader"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let leader_node = at(&nodes, leader);
        let refused = |answer: Result<AdminAnswer, ClientResponse>, needle: &str| match answer {
            Err(ClientResponse::Error(reason)) => {
                assert!(
                    reason.contains(needle),
                    "{reason:?} should mention {needle:?}"
                )
            }
            other => panic!("expected a refusal mentioning {needle:?}, got {other:?}"),
        };
        let change = |change| AdminRequest::Change(change);
        refused(
            admin(leader_node, change(MembershipChange::AddLearner(3))).await,
            "already a member",
        );
        refused(
            admin(leader_node, change(MembershipChange::AddLearner(4))).await,
            "has no address in the catalog",
        );
        // A malformed address is refused before the catalog records it.
        for addr in ["not an address", "127.0.0.1", "127.0.0.1:0"] {
            let bad = CatalogCommand::AddServer {
                id: 4,
                addr: addr.to_string(),
            };
            let reason = try_catalog_command(&nodes, &bad)
                .await
                .expect_err("a malformed address is refused");
            assert!(reason.contains("host:port"), "{reason:?}");
        }
        refused(
            admin(leader_node, change(MembershipChange::AddLearner(4))).await,
            "has no address in the catalog",
        );
        refused(
            admin(leader_node, change(MembershipChange::AddLearner(0))).await,
            "reserved",
        );
        refused(
            admin(leader_node, change(MembershipChange::Remove(9))).await,
            "not a member",
        );
        refused(
            admin(
                leader_node,
                change(MembershipChange::PromoteLearner(follower)),
            )
            .await,
            "not a learner",
        );
        refused(
            admin(leader_node, AdminRequest::Transfer(leader)).await,
            "already the leader",
        );
        // Adding and removing a learner whose address the catalog
        // records: proposed, then committed with the address listed.
        catalog_command(
            &nodes,
            CatalogCommand::AddServer {
                id: 4,
                addr: "127.0.0.1:7004".to_string(),
            },
        )
        .await;
        // Refused until the group's leader applied the catalog's entry.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match admin(leader_node, change(MembershipChange::AddLearner(4))).await {
                Ok(AdminAnswer::Proposed { index }) => {
                    assert!(index > 0);
                    break;
                }
                Err(ClientResponse::Error(reason))
                    if reason.contains("has no address") && Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => panic!("add-learner answered {other:?}"),
            }
        }
        let added = wait_members(leader_node, |m| m.membership.learners.contains(&4)).await;
        assert_eq!(added.membership.learners, [4].into());
        assert_eq!(added.membership.voters, [1, 2, 3].into());
        let four = added.addrs.iter().find(|(id, _)| *id == 4).map(|(_, a)| a);
        assert_eq!(four.map(String::as_str), Some("127.0.0.1:7004"));
        assert_eq!(added.to_members().members[3].role, "learner");
        // The leader knows every other voter's match index.
        for voter in (1..=3).filter(|id| *id != leader) {
            assert!(
                added.progress.iter().any(|(id, _, _)| *id == voter),
                "{added:?}"
            );
        }
        match admin(leader_node, change(MembershipChange::Remove(4))).await {
            Ok(AdminAnswer::Proposed { .. }) => {}
            other => panic!("remove answered {other:?}"),
        }
        wait_members(leader_node, |m| m.membership.learners.is_empty()).await;
        // A follower lists the members from its own view.
        let seen = wait_members(at(&nodes, follower), |m| m.membership.learners.is_empty()).await;
        assert_eq!(seen.answered_by, follower);
        assert!(seen.progress.is_empty(), "{seen:?}");
        // Leadership goes to the named voter.
        // Refused while the follower's last answer is not recent (a slow
        // machine delays heartbeats); the refusal says to retry.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match admin(leader_node, AdminRequest::Transfer(follower)).await {
                Ok(AdminAnswer::TransferStarted) => break,
                Err(e) if format!("{e:?}").contains("then retry") && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => panic!("transfer answered {other:?}"),
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while wait_for_leader(&nodes).await != follower {
            assert!(Instant::now() < deadline, "the leadership did not move");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The leader removes itself: once the new configuration commits
        // (it steps down then), the other two lead on.
        match admin(
            at(&nodes, follower),
            change(MembershipChange::Remove(follower)),
        )
        .await
        {
            Ok(AdminAnswer::Proposed { .. }) => {}
            other => panic!("the leader's removal of itself answered {other:?}"),
        }
        let others: Vec<NodeId> = (1..=3).filter(|id| *id != follower).collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        'elected: loop {
            for &id in &others {
                if at(&nodes, id)
                    .status()
                    .await
                    .is_some_and(|s| s.role == "Leader")
                {
                    break 'elected;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the remaining two elected no leader"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = wait_members(at(&nodes, others[0]), |m| {
            !m.membership.voters.contains(&follower)
        })
        .await;
        assert_eq!(left.membership.voters.len(), 2, "{left:?}");
        shutdown_all(nodes).await;
    });
}

/// Witness servers in an in-process cluster: born with a witness, which
/// redirects clients, applies nothing, compacts its log into snapshots
/// without state and restarts from them; `AddWitness` is checked like any
/// change; and a server whose kind contradicts the configuration stored
/// in its log refuses to start, saying what to do.
#[test]
fn witness_servers_redirect_compact_restart_and_refuse_a_wrong_role() {
    runtime().block_on(async {
        let peers = peers_of(3);
        let disks: Vec<PageCacheDisk> = (0..3).map(|_| PageCacheDisk::new()).collect();
        let mut starts = [0u64; 3];
        // Nodes 1 and 2 are full voters, 3 a witness (listed on every
        // node).
        let settings_of = |id: NodeId| {
            let mut settings = settings(id, &peers);
            settings.witnesses = [3].into();
            settings.snapshot_every_entries = Some(10);
            settings.compaction_trailing_entries = 2;
            settings
        };
        let mut start = async |id: NodeId, settings: NodeSettings| {
            starts[id as usize - 1] += 1;
            start_null(settings, &disks[id as usize - 1], starts[id as usize - 1]).await
        };
        let mut nodes = Vec::new();
        for id in 1..=3 {
            nodes.push(Some(start(id, settings_of(id)).await.unwrap()));
        }
        let leader = wait_for_leader(&nodes).await;
        assert_ne!(leader, 3, "a witness never leads");
        for i in 0..30 {
            let answer = call(at(&nodes, leader), format!("c{i}")).await;
            assert!(matches!(answer, ClientResponse::Done(_)), "{answer:?}");
        }
        // The witness redirects a client to the leader.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match call(at(&nodes, 3), &b"w"[..]).await {
                ClientResponse::NotLeader { leader_hint, .. } if leader_hint == Some(leader) => {
                    break
                }
                ClientResponse::NotLeader { .. } => {}
                other => panic!("a witness answered a command with {other:?}"),
            }
            assert!(
                Instant::now() < deadline,
                "the witness never learned the leader"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // It applied nothing, yet compacted its log.
        let deadline = Instant::now() + Duration::from_secs(5);
        let status = loop {
            let status = at(&nodes, 3).status().await.unwrap();
            if status.snapshot_index >= 20 {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "the witness never compacted: {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(status.server.entries_applied, 0, "{status:?}");
        assert_eq!(status.server.elections_started, 0, "{status:?}");
        let listed = members(at(&nodes, leader)).await.to_members();
        let role = |id: NodeId| {
            listed
                .members
                .iter()
                .find(|m| m.id == id)
                .unwrap()
                .role
                .clone()
        };
        assert_eq!(
            (role(1), role(2), role(3)),
            ("voter".into(), "voter".into(), "witness".into())
        );
        // A second witness would leave 2 full voters of 4: refused, and
        // nothing is written.
        let before = members(at(&nodes, leader)).await.configuration_index;
        let add_witness = AdminRequest::Change(MembershipChange::AddWitness(4));
        match admin(at(&nodes, leader), add_witness).await {
            Err(ClientResponse::Error(reason)) => {
                assert!(reason.contains("not a majority"), "{reason}")
            }
            other => panic!("a second witness was answered {other:?}"),
        }
        assert_eq!(
            members(at(&nodes, leader)).await.configuration_index,
            before
        );
        // The witness restarts from its snapshot (no state to restore).
        nodes[2].take().unwrap().shutdown().await.unwrap();
        nodes[2] = Some(start(3, settings_of(3)).await.unwrap());
        let status = at(&nodes, 3).status().await.unwrap();
        assert!(status.snapshot_index >= 20, "{status:?}");
        // Down while the full voters compact past its log, it is sent the
        // leader's snapshot, stores it without bytes, and restarts from
        // it too.
        nodes[2].take().unwrap().shutdown().await.unwrap();
        for i in 30..60 {
            let answer = call(at(&nodes, leader), format!("c{i}")).await;
            assert!(matches!(answer, ClientResponse::Done(_)), "{answer:?}");
        }
        // Down long enough that the leader's connection to it fails to
        // reconnect and drops the frames queued for it (which would
        // carry the entries it missed).
        tokio::time::sleep(Duration::from_millis(500)).await;
        nodes[2] = Some(start(3, settings_of(3)).await.unwrap());
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let status = at(&nodes, 3).status().await.unwrap();
            if status.server.snapshots_installed > 0 {
                assert_eq!(status.server.entries_applied, 0, "{status:?}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no snapshot installed: {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        nodes[2].take().unwrap().shutdown().await.unwrap();
        let mut store = disks[2].clone();
        let stored = store.newest(GROUP).unwrap().expect("a stored snapshot");
        assert!(stored.meta().position.index >= 40, "{:?}", stored.meta());
        assert_eq!(stored.meta().size_bytes, 0, "a witness stores no state");
        nodes[2] = Some(start(3, settings_of(3)).await.unwrap());
        let status = at(&nodes, 3).status().await.unwrap();
        assert!(status.snapshot_index >= 40, "{status:?}");

        // A server whose kind contradicts its stored configuration
        // refuses to start, saying how to start it: the witness as a
        // full server, a full voter as a witness.
        nodes[2].take().unwrap().shutdown().await.unwrap();
        let mut full = settings_of(3);
        full.witnesses.clear();
        match start(3, full).await {
            Err(StartError::Settings(reason)) => {
                assert!(reason.contains("lists it as a witness"), "{reason}");
                assert!(reason.contains("--witnesses"), "{reason}");
            }
            other => panic!("the witness restarted as a full server: {other:?}"),
        }
        let voter = (1..=2).find(|id| *id != leader).unwrap();
        nodes[voter as usize - 1]
            .take()
            .unwrap()
            .shutdown()
            .await
            .unwrap();
        let mut witness = settings_of(voter);
        witness.witness = true;
        match start(voter, witness).await {
            Err(StartError::Settings(reason)) => {
                assert!(reason.contains("lists it as a full voter"), "{reason}");
                assert!(reason.contains("without --witness"), "{reason}");
            }
            other => panic!("a full voter restarted as a witness: {other:?}"),
        }
        shutdown_all(nodes).await;
    });
}
