//! The multi-group server (`runtime/src/multi/`): three nodes in one
//! process on loopback TCP (one connection per peer) hosting 100 groups
//! each, every node's groups in one shared
//! write-ahead log on real files (fsync on). Writes go to every group;
//! the node leading the most groups is stopped (its server, listener and
//! connections gone) and restarted from its shared log; afterwards every acknowledged
//! write is present in every group, read through the group's leader and
//! from the restarted node's own state machine, and every group has
//! elected a leader known to all three nodes.
mod common;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::TempDir;

use concord::multi::{GroupId, MultiConfig};
use concord::state_machine::{RestoreError, StateMachine};
use concord::{Config, NodeId, ReadPath, Role};
use concord_tokio::listener::ListenerCounters;
use concord_tokio::multi::data_dir;
use concord_tokio::multi::host::{self, FrameSender, MultiServerConfig, MultiServerHandle};
use concord_tokio::multi::log_sink::WalThread;
use concord_tokio::multi::routing_client::{self, RoutingClient, RoutingConfig, RoutingError};
use concord_tokio::multi::shared_connections::SharedConnections;
use concord_tokio::multi::shared_log::MultiWalOptions;
use concord_tokio::multi::tcp_listener::{self, MultiListenerConfig};
use concord_tokio::multi::tcp_sender::{TcpFrameConfig, TcpFrameSender};
use concord_tokio::multi::wire::GroupOp;
use concord_tokio::wire::ClientResponse;

/// `key=value` commands into a map; a read is a key.
#[derive(Default)]
struct Map(BTreeMap<String, String>);

impl StateMachine for Map {
    fn apply(&mut self, _index: u64, command: &[u8]) -> Bytes {
        let text = String::from_utf8_lossy(command);
        match text.split_once('=') {
            Some((key, value)) => {
                self.0.insert(key.to_string(), value.to_string());
                Bytes::from(value.to_string())
            }
            None => Bytes::from_static(b"?"),
        }
    }
    fn snapshot(&self) -> Bytes {
        let lines: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
        Bytes::from(lines.join("\n"))
    }
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
        let text = std::str::from_utf8(snapshot).map_err(|e| RestoreError::new(e.to_string()))?;
        self.0 = text
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Ok(())
    }
    fn query(&self, request: &[u8]) -> Option<Bytes> {
        let key = String::from_utf8_lossy(request);
        Some(Bytes::from(
            self.0.get(key.as_ref()).cloned().unwrap_or_default(),
        ))
    }
}

const NODES: [NodeId; 3] = [1, 2, 3];
const GROUPS: GroupId = 100;

fn group_config(id: NodeId, group: GroupId, incarnation: u64) -> Config {
    let mut config = Config::new(id, NODES);
    config.seed = group * 1_000 + id * 10 + incarnation;
    // Snapshots every few entries, so restarts recover from them and
    // segments are freed by compaction.
    config.compaction_threshold_entries = Some(8);
    config.compaction_trailing_entries = 2;
    config
}

/// Opens node `id`'s data directory for its `start`-th start (1 for the
/// first), checking that each start has its own incarnation, one above
/// the last: a new directory's counter starts at 0 here (in production it
/// starts from the clock, above any directory that was lost before it).
fn open_for_start(
    dir: &std::path::Path,
    start: u64,
    options: MultiWalOptions,
) -> data_dir::DataDir {
    let counter = dir.join(data_dir::INCARNATION_FILE_NAME);
    if start == 1 {
        std::fs::create_dir_all(dir).unwrap();
        assert!(!counter.exists(), "a first start finds no counter");
        std::fs::write(&counter, data_dir::encode_incarnation(0)).unwrap();
    }
    let opened = data_dir::open_data_dir(dir, options).unwrap();
    assert_eq!(opened.incarnation, start);
    opened
}

/// Starts node `id` from its data directory.
fn start_node<N: FrameSender>(
    id: NodeId,
    dir: &std::path::Path,
    incarnation: u64,
    network: N,
    inbox: (
        tokio::sync::mpsc::Sender<host::HostEvent>,
        tokio::sync::mpsc::Receiver<host::HostEvent>,
    ),
) -> MultiServerHandle {
    let options = MultiWalOptions {
        segment_bytes_max: 64 * 1024,
        segments_max: 4,
        ..MultiWalOptions::default()
    };
    // Every start of the node has its own incarnation, kept on disk.
    let opened = open_for_start(dir, incarnation, options);
    // The directory is locked while its log is written.
    assert!(data_dir::open_data_dir(dir, MultiWalOptions::default()).is_err());
    let log = WalThread::start(opened.log).unwrap();
    let recovery = opened.recovery;
    let mut multi = MultiConfig::new(id, NODES);
    multi.incarnation = opened.incarnation;
    let groups = (1..=GROUPS)
        .map(|group| (group, group_config(id, group, incarnation)))
        .collect();
    let mut config = MultiServerConfig::new(multi, groups);
    config.tick = Duration::from_millis(5);
    // Every snapshot from a leader is received into a file as it arrives.
    config.snapshot_in_memory_bytes_max = 0;
    host::start(config, |_| Map::default(), recovery, log, network, inbox).unwrap()
}

/// Sends `op` to `group`, following redirects, until it is answered
/// `Done` (or the deadline passes).
async fn call(handles: &BTreeMap<NodeId, MultiServerHandle>, group: GroupId, op: GroupOp) -> Bytes {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut target = *handles.keys().next().unwrap();
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "group {group}: no answer in time"
        );
        let answer = match handles.get(&target) {
            Some(handle) => handle.call(group, op.clone()).await,
            None => ClientResponse::NotLeader {
                leader_hint: None,
                leader_addr: None,
            },
        };
        match answer {
            ClientResponse::Done(bytes) => return bytes,
            ClientResponse::NotLeader {
                leader_hint: Some(hint),
                ..
            } if handles.contains_key(&hint) => target = hint,
            _ => {
                let ids: Vec<NodeId> = handles.keys().copied().collect();
                target = ids[(ids.iter().position(|id| *id == target).unwrap() + 1) % ids.len()];
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
}

/// Waits until every group has one leader that every running node knows.
async fn every_group_led(handles: &BTreeMap<NodeId, MultiServerHandle>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut leaders: BTreeMap<GroupId, Vec<Option<NodeId>>> = BTreeMap::new();
        let mut led = BTreeMap::new();
        for (id, handle) in handles {
            let status = handle.status(true).await.expect("running");
            for (group, group_status) in status.groups {
                leaders.entry(group).or_default().push(group_status.leader);
                if group_status.role == Role::Leader {
                    led.insert(group, *id);
                }
            }
        }
        let agreed = leaders.len() == GROUPS as usize
            && leaders.iter().all(|(group, seen)| {
                led.get(group)
                    .is_some_and(|leader| seen.iter().all(|s| *s == Some(*leader)))
            });
        if agreed {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not every group has a leader known to all: {} of {GROUPS} led",
            led.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Each group's leader as its leader reports it.
async fn leaders(handles: &BTreeMap<NodeId, MultiServerHandle>) -> BTreeMap<GroupId, NodeId> {
    let mut leaders = BTreeMap::new();
    for (id, handle) in handles {
        let status = handle.status(true).await.expect("running");
        for (group, group_status) in status.groups {
            if group_status.role == Role::Leader {
                leaders.insert(group, *id);
            }
        }
    }
    leaders
}

/// Node `id` on loopback TCP: its listener on `addrs[id]`, one
/// connection to each peer; stops (listener and links) with the server.
fn start_tcp_node(
    id: NodeId,
    dir: &std::path::Path,
    incarnation: u64,
    addrs: &BTreeMap<NodeId, String>,
) -> MultiServerHandle {
    start_tcp_node_counted(id, dir, incarnation, addrs).0
}

/// [`start_tcp_node`], with its listener's counters.
fn start_tcp_node_counted(
    id: NodeId,
    dir: &std::path::Path,
    incarnation: u64,
    addrs: &BTreeMap<NodeId, String>,
) -> (MultiServerHandle, Arc<ListenerCounters>) {
    let peers: BTreeMap<NodeId, String> = addrs
        .iter()
        .filter(|(peer, _)| **peer != id)
        .map(|(peer, addr)| (*peer, addr.clone()))
        .collect();
    let sender = TcpFrameSender::start(TcpFrameConfig::new(id, "multi-test", peers));
    let inbox = host::inbox();
    let events = inbox.0.clone();
    let handle = start_node(id, dir, incarnation, sender, inbox);
    let listener = std::net::TcpListener::bind(&addrs[&id]).unwrap();
    listener.set_nonblocking(true).unwrap();
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    let config = MultiListenerConfig::new(id, "multi-test", NODES.into_iter().collect());
    let counters = config.counters.clone();
    tokio::spawn(tcp_listener::serve(
        listener,
        config,
        events,
        handle.shutdown_signal(),
    ));
    (handle, counters)
}

/// Every node on loopback TCP ([`start_tcp_node`]), each with its own
/// data directory, and every group led.
struct TcpCluster {
    dirs: BTreeMap<NodeId, TempDir>,
    addrs: BTreeMap<NodeId, String>,
    handles: BTreeMap<NodeId, MultiServerHandle>,
    counters: BTreeMap<NodeId, Arc<ListenerCounters>>,
}

impl TcpCluster {
    async fn start(label: &str) -> TcpCluster {
        let dirs: BTreeMap<NodeId, TempDir> = NODES
            .iter()
            .map(|id| (*id, TempDir::new(&format!("{label}-{id}"))))
            .collect();
        let ports = common::free_ports(NODES.len());
        let addrs: BTreeMap<NodeId, String> = NODES
            .iter()
            .zip(&ports)
            .map(|(id, port)| (*id, format!("127.0.0.1:{port}")))
            .collect();
        let mut handles = BTreeMap::new();
        let mut counters = BTreeMap::new();
        for id in NODES {
            let (handle, counted) = start_tcp_node_counted(id, &dirs[&id].0, 1, &addrs);
            handles.insert(id, handle);
            counters.insert(id, counted);
        }
        every_group_led(&handles).await;
        TcpCluster {
            dirs,
            addrs,
            handles,
            counters,
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn kill_and_restart_a_node_of_100_groups_every_acknowledged_write_survives() {
    let TcpCluster {
        dirs,
        addrs,
        mut handles,
        ..
    } = TcpCluster::start("multi-server").await;
    let mut acked: Vec<(GroupId, String, String)> = Vec::new();
    for round in 0..6 {
        for group in 1..=GROUPS {
            let (key, value) = (format!("k{round}"), format!("g{group}r{round}"));
            let command = Bytes::from(format!("{key}={value}"));
            let answer = call(&handles, group, GroupOp::Command(command)).await;
            assert_eq!(answer, Bytes::from(value.clone()));
            acked.push((group, key, value));
        }
    }
    // Kill the node that leads the most groups.
    let mut most = (0, 0);
    for (id, handle) in &handles {
        let led = handle.status(false).await.unwrap().groups_led;
        if led > most.1 {
            most = (*id, led);
        }
    }
    let victim = most.0;
    assert!(most.1 > 0);
    // Its loop ends, its listener and connections close, its log thread
    // finishes what was queued (a stop in one process: the real-process
    // SIGKILL test is the node binary's).
    handles.remove(&victim).unwrap().shutdown().await.unwrap();
    // The survivors elect new leaders for its groups and take more writes:
    // groups 1 to 10 so many that their leaders compact past what the
    // stopped node holds (it catches up from snapshots).
    for round in 6..21 {
        for group in 1..=if round < 9 { GROUPS } else { 10 } {
            let (key, value) = (format!("k{round}"), format!("g{group}r{round}"));
            let command = Bytes::from(format!("{key}={value}"));
            call(&handles, group, GroupOp::Command(command)).await;
            acked.push((group, key, value));
        }
    }
    handles.insert(victim, start_tcp_node(victim, &dirs[&victim].0, 2, &addrs));
    every_group_led(&handles).await;
    // One more write per group, then every acknowledged write, read
    // through the leader and from the restarted node's own copy.
    for group in 1..=GROUPS {
        let command = Bytes::from(format!("last=g{group}"));
        call(&handles, group, GroupOp::Command(command)).await;
    }
    for (group, key, value) in &acked {
        let read = GroupOp::Read {
            path: ReadPath::ReadIndex,
            query: Bytes::from(key.clone()),
        };
        assert_eq!(
            call(&handles, *group, read).await,
            Bytes::from(value.clone())
        );
    }
    let restarted = &handles[&victim];
    for (group, key, value) in &acked {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let read = GroupOp::Read {
                path: ReadPath::Follower,
                query: Bytes::from(key.clone()),
            };
            match restarted.call(*group, read).await {
                ClientResponse::Done(bytes) if bytes == *value => break,
                other => {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "group {group}: node {victim} answers {other:?} for {key}, want {value}"
                    );
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
    let status = restarted.status(false).await.unwrap();
    assert_eq!(status.groups_hosted, GROUPS as usize);
    // The restarted node was behind its leaders' snapshots: it caught up
    // from snapshots received into files.
    println!("host counters of the restarted node: {:?}", status.host);
    assert!(
        status.host.snapshots_received_to_files > 0,
        "{:?}",
        status.host
    );
    assert_eq!(status.host.snapshots_received_in_memory, 0);
    for (_, handle) in handles {
        handle.shutdown().await.unwrap();
    }
}

/// A group that cannot apply its last entries (its leader lost its
/// quorum right after appending them) does not hold the shared log's old
/// segments forever: when the log asks for its snapshot, the host writes
/// those entries again into the current segment, so the segments on disk
/// stay near `segments_max` while another group writes on; and a restart
/// recovers the group's log with every one of them.
#[tokio::test(flavor = "current_thread")]
async fn a_group_that_cannot_apply_does_not_pin_old_segments() {
    use concord_tokio::multi::mem_network::MemFrameNetwork;
    const SEGMENTS_MAX: usize = 2;
    let dirs: BTreeMap<NodeId, TempDir> = NODES
        .iter()
        .map(|id| (*id, TempDir::new(&format!("multi-pin-{id}"))))
        .collect();
    let network = MemFrameNetwork::new();
    let start = |id: NodeId, incarnation: u64| {
        let options = MultiWalOptions {
            segment_bytes_max: 4096,
            segments_max: SEGMENTS_MAX,
            ..MultiWalOptions::default()
        };
        let opened = open_for_start(&dirs[&id].0, incarnation, options);
        let log = WalThread::start(opened.log).unwrap();
        let mut multi = MultiConfig::new(id, NODES);
        multi.incarnation = opened.incarnation;
        // Group 1 on all three nodes; group 2 on node 1 alone (it commits
        // without the others).
        let mut groups = vec![(1, group_config(id, 1, incarnation))];
        if id == 1 {
            let mut alone = Config::new(1, [1]);
            alone.compaction_threshold_entries = Some(8);
            alone.compaction_trailing_entries = 2;
            groups.push((2, alone));
        }
        let mut config = MultiServerConfig::new(multi, groups);
        config.tick = Duration::from_millis(5);
        let inbox = host::inbox();
        network.register(id, inbox.0.clone());
        host::start(
            config,
            |_| Map::default(),
            opened.recovery,
            log,
            network.sender(id),
            inbox,
        )
        .unwrap()
    };
    let mut handles: BTreeMap<NodeId, MultiServerHandle> =
        NODES.iter().map(|id| (*id, start(*id, 1))).collect();
    // Node 1 leads group 1.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "node 1 never led group 1"
        );
        let status = handles[&1].status(true).await.unwrap();
        match status.groups[&1].leader {
            Some(1) => break,
            Some(leader) => {
                let _ = handles[&leader].transfer(1, 1).await;
            }
            None => {}
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Its followers stop: what it appends now is never committed here.
    for id in [2, 3] {
        network.unregister(id);
        handles.remove(&id).unwrap().shutdown().await.unwrap();
    }
    let node1 = std::sync::Arc::new(handles.remove(&1).unwrap());
    let mut proposals = Vec::new();
    for k in 0..10 {
        let node1 = node1.clone();
        proposals.push(tokio::spawn(async move {
            let command = Bytes::from(format!("stuck{k}=x"));
            node1.call(1, GroupOp::Command(command)).await
        }));
    }
    let stuck = {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let group = node1.status(true).await.unwrap().groups[&1].clone();
            if group.last > group.applied {
                tokio::time::sleep(Duration::from_millis(50)).await;
                break node1.status(true).await.unwrap().groups[&1].clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "nothing appended: {group:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    assert!(stuck.last > stuck.commit, "{stuck:?}");
    // Group 2 writes some 25 segments' worth meanwhile.
    let mut most_segments = 0;
    for k in 0..800 {
        let command = Bytes::from(format!("k{}={}", k % 50, "v".repeat(80)));
        let answer = node1.call(2, GroupOp::Command(command)).await;
        assert!(matches!(answer, ClientResponse::Done(_)), "{answer:?}");
        if k % 20 == 0 {
            let log = node1.status(false).await.unwrap().log;
            most_segments = most_segments.max(log.segments_on_disk);
        }
    }
    let status = node1.status(true).await.unwrap();
    println!(
        "log {:?}\nhost {:?}\nmost segments on disk {most_segments}",
        status.log, status.host
    );
    assert!(status.log.segments_created >= 20, "{:?}", status.log);
    assert!(status.host.groups_rewritten > 0, "{:?}", status.host);
    assert!(
        most_segments <= SEGMENTS_MAX as u64 + 2,
        "{most_segments} segments on disk with segments_max {SEGMENTS_MAX}"
    );
    assert_eq!(
        status.groups[&1].last, stuck.last,
        "group 1 appended nothing more"
    );
    for proposal in proposals {
        proposal.abort();
    }
    let node1 = std::sync::Arc::try_unwrap(node1).expect("proposals aborted");
    node1.shutdown().await.unwrap();
    // Restarted: group 1 still holds every entry it appended.
    network.unregister(1);
    let restarted = start(1, 2);
    let group = restarted.status(true).await.unwrap().groups[&1].clone();
    assert_eq!(group.last, stuck.last, "{group:?}");
    restarted.shutdown().await.unwrap();
}

/// Starts node 0 beside `handles`' cluster and adds its address to
/// `addrs`: a listener whose host answers every request "not hosted"
/// (a server that hosts no group). Counts the requests it refused.
async fn serve_not_hosted(
    addrs: &mut BTreeMap<NodeId, String>,
    handles: &BTreeMap<NodeId, MultiServerHandle>,
) -> std::sync::Arc<std::sync::atomic::AtomicU64> {
    let port = common::free_ports(1)[0];
    addrs.insert(0, format!("127.0.0.1:{port}"));
    let listener = tokio::net::TcpListener::bind(&addrs[&0]).await.unwrap();
    let (events, mut requests) = host::inbox();
    let mut members: Vec<NodeId> = NODES.to_vec();
    members.push(0);
    let config = MultiListenerConfig::new(0, "multi-test", members.into_iter().collect());
    tokio::spawn(tcp_listener::serve(
        listener,
        config,
        events,
        handles[&1].shutdown_signal(),
    ));
    let refusals = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = refusals.clone();
    tokio::spawn(async move {
        while let Some(event) = requests.recv().await {
            if let host::HostEvent::Request { group, reply, .. } = event {
                counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let _ = reply.send(ClientResponse::Error(format!(
                    "group {group} is not hosted on node 0; ask a node that hosts it"
                )));
            }
        }
    });
    refusals
}

/// A client that met only one server when it started (the others were
/// still starting) keeps the other addresses it was given as unresolved:
/// when that server does not host the group, the client asks them their
/// ids and writes through them. Before, the call was refused as "not
/// hosted" although every other server hosted the group.
#[tokio::test(flavor = "current_thread")]
async fn a_client_that_met_one_server_asks_the_others_when_it_does_not_host_the_group() {
    let TcpCluster {
        dirs: _dirs,
        mut addrs,
        handles,
        ..
    } = TcpCluster::start("multi-unresolved").await;
    serve_not_hosted(&mut addrs, &handles).await;
    let given: Vec<String> = addrs.values().cloned().collect();
    let met_first: BTreeMap<NodeId, String> = [(0, addrs[&0].clone())].into_iter().collect();
    // Without the unresolved addresses the client knows no server of the
    // group: refused (what the fix changes).
    let mut alone =
        RoutingClient::new(RoutingConfig::new("multi-test", met_first.clone())).unwrap();
    match alone.command(1, Bytes::from("a=b")).await {
        Err(RoutingError::Refused { message, .. }) => {
            assert!(message.contains("not hosted"), "{message}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let mut config = RoutingConfig::new("multi-test", met_first.clone());
    config.unresolved = routing_client::unresolved_addresses(&given, &met_first);
    assert_eq!(config.unresolved.len(), NODES.len());
    let mut client = RoutingClient::new(config).unwrap();
    let answer = client
        .command(1, Bytes::from("a=found"))
        .await
        .expect("a write through the servers learnt from the unresolved addresses");
    assert_eq!(answer, Bytes::from("found"));
    assert_eq!(client.stats().nodes_learnt, NODES.len() as u64);
    assert_eq!(client.servers().len(), NODES.len() + 1);
    for (_, handle) in handles {
        handle.shutdown().await.unwrap();
    }
}

/// Forwards every connection made to `listen` to `to` (a server's
/// address seen through another one), from when it is called.
async fn forward(listen: String, to: String) {
    let listener = tokio::net::TcpListener::bind(&listen).await.unwrap();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let to = to.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(&to).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
}

/// The addresses a client did not resolve at its start are asked again
/// when every server it knows refuses the group as not hosted, even if
/// asking them failed lately; while some stay unresolved the call is
/// retried, not refused. Before, a client that met only the server that
/// then left the group was refused "not hosted" for as long as its
/// avoidance of the unresolved addresses lasted (seen in a real-process
/// test: a removed server, a client that had met only it).
#[tokio::test(flavor = "current_thread")]
async fn a_client_asks_unresolved_addresses_again_when_no_known_server_hosts_the_group() {
    let TcpCluster {
        dirs: _dirs,
        mut addrs,
        handles,
        ..
    } = TcpCluster::start("multi-unresolved-late").await;
    serve_not_hosted(&mut addrs, &handles).await;
    let met_first: BTreeMap<NodeId, String> = [(0, addrs[&0].clone())].into_iter().collect();
    // An address that answers only later: node 1 seen through a forwarder.
    let late = format!("127.0.0.1:{}", common::free_ports(1)[0]);
    let mut config = RoutingConfig::new("multi-test", met_first);
    config.unresolved = vec![late.clone()];
    config.attempts_max = 3;
    config.backoff = Duration::from_millis(20);
    // Long enough that the second call falls inside the avoidance the
    // first call's failed asking started.
    config.avoid_min = Duration::from_secs(600);
    let mut client = RoutingClient::new(config).unwrap();
    match client.command(1, Bytes::from("a=early")).await {
        Err(RoutingError::Exhausted { last, .. }) => {
            assert!(last.contains("not hosted"), "{last}")
        }
        other => panic!("expected the attempts to run out, not a refusal: {other:?}"),
    }
    forward(late, addrs[&1].clone()).await;
    let answer = client
        .command(1, Bytes::from("a=late"))
        .await
        .expect("a write through the server learnt from the late address");
    assert_eq!(answer, Bytes::from("late"));
    // Node 1 was learnt from the late address (and the leader, if
    // another, from node 1's redirect).
    assert!(client.stats().nodes_learnt >= 1, "{:?}", client.stats());
    for (_, handle) in handles {
        handle.shutdown().await.unwrap();
    }
}

/// The routing client over loopback TCP: with an empty cache it reaches
/// each group's leader by redirect (one per group not led by the node it
/// tries first), then sends straight to the cached leader; when a
/// group's leadership moves, the old leader's redirect is followed and
/// cached; reads come back; a group no node hosts is refused naming it;
/// and with every node stopped a call ends with an error after its
/// bounded attempts.
/// A server that hosts no group (one that joined and has yet to be
/// given any, or the new server of a replace before its groups arrive)
/// refuses each request as not hosted there: the routing client asks the
/// next server instead of giving up. Before, the refusal ended the call,
/// and a session's retry during a replace reported its write unknown.
#[tokio::test(flavor = "current_thread")]
async fn a_server_that_does_not_host_the_group_sends_the_client_on() {
    let TcpCluster {
        dirs: _dirs,
        mut addrs,
        handles,
        ..
    } = TcpCluster::start("multi-not-hosted").await;
    // Node 0 sorts first, so a client with no leader cached asks it
    // first: a listener whose host answers every request "not hosted".
    let refusals = serve_not_hosted(&mut addrs, &handles).await;
    let mut client = RoutingClient::new(RoutingConfig::new("multi-test", addrs.clone())).unwrap();
    for group in 1..=GROUPS {
        let answer = client
            .command(group, Bytes::from(format!("a=g{group}")))
            .await
            .unwrap_or_else(|e| panic!("group {group}: {e}"));
        assert_eq!(answer, Bytes::from(format!("g{group}")));
    }
    // Every group was asked of node 0 first (no leader cached) and was
    // sent on from there (more, if an election sent a retry round).
    let refused = refusals.load(std::sync::atomic::Ordering::Relaxed);
    assert!(refused >= GROUPS, "{refused} refusals for {GROUPS} groups");
    // A group that no server hosts is still refused, once every server
    // said so.
    match client.command(GROUPS + 1, Bytes::from("a=b")).await {
        Err(RoutingError::Refused { message, .. }) => {
            assert!(message.contains("not hosted"), "{message}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    for (_, handle) in handles {
        handle.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "current_thread")]
async fn routing_client_caches_leaders_and_follows_redirects() {
    // The directories live as long as the test.
    let TcpCluster {
        dirs: _dirs,
        addrs,
        handles,
        ..
    } = TcpCluster::start("multi-route").await;
    let first = *addrs.keys().next().unwrap();
    let before = leaders(&handles).await;
    let led_by_first = before.values().filter(|id| **id == first).count() as u64;
    let mut client = RoutingClient::new(RoutingConfig::new("multi-test", addrs.clone())).unwrap();
    // Cold: every group not led by the first node is one redirect.
    for group in 1..=GROUPS {
        let answer = client
            .command(group, Bytes::from(format!("a=g{group}")))
            .await
            .unwrap();
        assert_eq!(answer, Bytes::from(format!("g{group}")));
    }
    let cold = client.stats();
    // Warm: one attempt per call, straight to the leader.
    for group in 1..=GROUPS {
        let command = Bytes::from(format!("b=h{group}"));
        client.command(group, command).await.unwrap();
    }
    let warm = client.stats();
    assert_eq!(cold.cache_hits, 0);
    assert_eq!(cold.calls_done, GROUPS);
    assert_eq!(warm.cache_hits, GROUPS);
    assert!(warm.connects <= NODES.len() as u64, "{warm:?}");
    // The exact counts hold when no group changed leader meanwhile (an
    // election on a starved machine would add redirects).
    if leaders(&handles).await == before {
        for group in 1..=GROUPS {
            assert_eq!(client.cached_leader(group), before.get(&group).copied());
        }
        assert_eq!(cold.redirects, GROUPS - led_by_first, "{cold:?}");
        assert_eq!(warm.redirects, cold.redirects, "{warm:?}");
        assert_eq!(warm.attempts - cold.attempts, GROUPS);
    }
    // Group 1's leadership moves: the cached leader redirects to the new.
    let old = client.cached_leader(1).unwrap();
    let new = NODES.into_iter().find(|id| *id != old).unwrap();
    assert_eq!(
        handles[&old].transfer(1, new).await,
        Ok(concord::TransferOutcome::Started)
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    'known: loop {
        let mut all = true;
        for handle in handles.values() {
            let status = handle.status(true).await.unwrap();
            all &= status.groups.get(&1).is_some_and(|g| g.leader == Some(new));
        }
        if all {
            break 'known;
        }
        assert!(tokio::time::Instant::now() < deadline, "transfer not seen");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let answer = client.command(1, Bytes::from("c=moved")).await.unwrap();
    assert_eq!(answer, Bytes::from("moved"));
    let moved = client.stats();
    assert_eq!(moved.redirects, warm.redirects + 1, "{moved:?}");
    assert_eq!(moved.attempts, warm.attempts + 2);
    assert_eq!(client.cached_leader(1), Some(new));
    for group in 1..=GROUPS {
        let read = GroupOp::Read {
            path: ReadPath::ReadIndex,
            query: Bytes::from("a"),
        };
        let answer = client.call(group, read).await.unwrap();
        assert_eq!(answer, Bytes::from(format!("g{group}")));
    }
    // A group no node hosts: refused for good, naming the group.
    let unknown = GROUPS + 1;
    match client.command(unknown, Bytes::from("a=b")).await {
        Err(RoutingError::Refused { group, message, .. }) => {
            assert_eq!(group, unknown);
            assert!(message.contains("not hosted"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    for (_, handle) in handles {
        handle.shutdown().await.unwrap();
    }
    // Every node gone: a bounded number of attempts, then an error.
    let mut config = RoutingConfig::new("multi-test", addrs);
    config.attempts_max = 3;
    let mut client = RoutingClient::new(config).unwrap();
    match client.command(1, Bytes::from("a=b")).await {
        Err(RoutingError::Exhausted {
            group,
            attempts,
            last,
        }) => {
            assert_eq!((group, attempts), (1, 3));
            // Each dead node is tried once (a failed node is avoided),
            // and the error says so, node by node.
            for node in 1..=3 {
                assert!(last.contains(&format!("node {node} ×1 (last: ")), "{last}");
            }
        }
        other => panic!("expected exhausted attempts, got {other:?}"),
    }
    assert_eq!(client.stats().attempts, 3);
}

/// A follower can install a second snapshot of a group before the layer
/// hands out the write of the first: two whole snapshots in one frame from
/// the leader. Each `PersistSnapshot` must still find its own snapshot;
/// a host that kept only the newest stopped with "stores a snapshot it
/// never received whole" (seen on a real cluster under load). After a
/// restart the group starts from the second one.
#[tokio::test(flavor = "current_thread")]
async fn two_snapshots_installed_in_one_flush_are_both_stored() {
    use concord::multi::Frame;
    use concord::multi::GroupMessage;
    use concord::{checksum64, LogPosition, Membership, MessageBody, SnapshotChunk};
    use concord_tokio::multi::mem_network::MemFrameNetwork;

    const GROUP: GroupId = 7;
    // Far above any term node 3 reaches campaigning alone meanwhile.
    const LEADER_TERM: u64 = 1_000_000;
    let dir = TempDir::new("multi-two-snapshots");
    let network = MemFrameNetwork::new();
    // The leader (node 1) and node 2 are this test: their inboxes only
    // collect what node 3 says.
    let (leader_inbox, mut from_node_3) = host::inbox();
    network.register(1, leader_inbox);
    let (other_inbox, _to_node_2) = host::inbox();
    network.register(2, other_inbox);
    let inbox = host::inbox();
    network.register(3, inbox.0.clone());
    let mut handle = start_node(3, &dir.0, 1, network.sender(3), inbox);

    let chunk = |index: u64, state: &'static str| GroupMessage {
        group: GROUP,
        term: LEADER_TERM,
        progress_id: 0,
        body: MessageBody::InstallSnapshot(Box::new(SnapshotChunk {
            snapshot: LogPosition::new(index, LEADER_TERM),
            size_bytes: state.len() as u64,
            checksum: checksum64(state.as_bytes()),
            offset: 0,
            data: Bytes::from_static(state.as_bytes()),
            membership: Membership::new(NODES),
        })),
    };
    let mut frame = Frame::new(1, 3, 1);
    frame.messages = vec![chunk(50, "a=first"), chunk(60, "a=second")];
    handle
        .events()
        .send(host::HostEvent::Frame(Box::new(frame)))
        .await
        .unwrap();

    // Node 3 answers the second snapshot once both are durable.
    let answered = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let Some(host::HostEvent::Frame(frame)) = from_node_3.recv().await else {
                continue;
            };
            if frame.messages.iter().any(|message| {
                message.group == GROUP
                    && matches!(
                        message.body,
                        MessageBody::InstallSnapshotResponse { snapshot, next_offset, rewind: false }
                            if snapshot.index == 60 && next_offset == 8
                    )
            }) {
                return;
            }
        }
    })
    .await;
    if answered.is_err() {
        let stopped = tokio::time::timeout(Duration::from_secs(5), handle.wait()).await;
        panic!("node 3 never acknowledged the second snapshot; its loop: {stopped:?}");
    }
    let status = handle.status(true).await.expect("node 3 runs");
    assert_eq!(status.groups[&GROUP].commit, 60);
    assert_eq!(status.groups[&GROUP].applied, 60);
    handle.shutdown().await.unwrap();

    // From its own disk: the group starts at the second snapshot.
    let inbox = host::inbox();
    network.register(3, inbox.0.clone());
    let handle = start_node(3, &dir.0, 2, network.sender(3), inbox);
    let status = handle.status(true).await.expect("node 3 runs again");
    assert_eq!(status.groups[&GROUP].commit, 60);
    assert_eq!(status.groups[&GROUP].applied, 60);
    handle.shutdown().await.unwrap();
}

/// Clients sharing one connection per server send their requests without
/// waiting for the answers before them (pipelining): every answer must
/// still be its own request's (each command answers its own value), the
/// requests must have left in fewer writes than there were requests, and
/// the servers must have written a batch's answers together (fewer
/// writes than answers). Then a node stops under them: the calls waiting
/// on its connection end in an unknown outcome or are retried elsewhere,
/// and the clients go on over new connections.
#[tokio::test(flavor = "current_thread")]
async fn clients_sharing_a_connection_pipeline_and_get_their_own_answers() {
    let TcpCluster {
        dirs: _dirs,
        addrs,
        mut handles,
        counters,
    } = TcpCluster::start("multi-shared").await;
    let shared = SharedConnections::new();
    const CLIENTS: u64 = 48;
    const ROUNDS: u64 = 20;
    let mut config = RoutingConfig::new("multi-test", addrs.clone());
    config.shared = Some(shared.clone());
    let run_round = |from: u64, to: u64, config: RoutingConfig| async move {
        let mut tasks = Vec::new();
        for client_no in 0..CLIENTS {
            let config = config.clone();
            tasks.push(tokio::spawn(async move {
                let mut client = RoutingClient::new(config).unwrap();
                let mut acked = Vec::new();
                for round in from..to {
                    // Clients spread over the groups, several per group.
                    let group = 1 + (client_no * 7 + round) % GROUPS;
                    let value = format!("c{client_no}r{round}");
                    let command = Bytes::from(format!("k{client_no}={value}"));
                    match client.command(group, command).await {
                        Ok(answer) => {
                            assert_eq!(
                                answer,
                                Bytes::from(value.clone()),
                                "client {client_no} got another request's answer"
                            );
                            acked.push((group, format!("k{client_no}"), value));
                        }
                        // Only while a node stops: a write whose answer
                        // was lost with its connection.
                        Err(RoutingError::Unknown { .. }) => {}
                        Err(e) => panic!("client {client_no}: {e}"),
                    }
                }
                acked
            }));
        }
        let mut acked = Vec::new();
        for task in tasks {
            acked.extend(task.await.unwrap());
        }
        acked
    };
    let acked = run_round(0, ROUNDS, config.clone()).await;
    assert_eq!(acked.len() as u64, CLIENTS * ROUNDS, "every write answered");
    let sent = shared.counts();
    assert_eq!(sent.requests, sent.answers);
    assert!(
        sent.request_writes < sent.requests,
        "no requests were pipelined: {sent:?}"
    );
    let (answers, writes) = counters.values().fold((0, 0), |(a, w), c| {
        (
            a + c.client_answers.load(Ordering::Relaxed),
            w + c.client_answer_writes.load(Ordering::Relaxed),
        )
    });
    assert_eq!(answers, sent.answers, "the servers wrote every answer");
    assert!(
        writes < answers,
        "no answers were written together: {answers} answers in {writes} writes"
    );
    eprintln!(
        "{} requests in {} writes; {answers} answers in {writes} writes",
        sent.requests, sent.request_writes
    );
    // A node stops under the clients: its connection breaks.
    let victim = *handles.keys().next().unwrap();
    let stopping = handles.remove(&victim).unwrap();
    let (after, ()) = tokio::join!(run_round(ROUNDS, 2 * ROUNDS, config.clone()), async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        stopping.shutdown().await.unwrap();
    });
    assert!(
        shared.counts().broken >= 1,
        "the stopped node's connection broke"
    );
    let mut all = acked;
    all.extend(after);
    // Every acknowledged write reads back. A client writes its key to a
    // group at most once (its rounds walk the groups), so each value
    // read is the one written.
    let mut written: BTreeMap<(GroupId, String), String> = BTreeMap::new();
    for (group, key, value) in all {
        assert!(written.insert((group, key), value).is_none());
    }
    let mut reader = RoutingClient::new(RoutingConfig::new("multi-test", addrs.clone())).unwrap();
    for ((group, key), value) in &written {
        let read = GroupOp::Read {
            path: ReadPath::ReadIndex,
            query: Bytes::from(key.clone()),
        };
        let got = reader.call(*group, read).await.unwrap();
        assert_eq!(got, Bytes::from(value.clone()), "group {group} key {key}");
    }
}

/// One raw client connection sends ten requests and then garbage in one
/// write, without reading: the server reads them all while the first
/// are unanswered, answers the ten in their order (each command answers
/// its own value, a group led elsewhere a redirect), and only then
/// closes the connection for the garbage.
#[tokio::test(flavor = "current_thread")]
async fn pipelined_requests_are_answered_in_order_before_bad_input_closes() {
    use concord_tokio::frame;
    use concord_tokio::multi::wire::GroupRequest;
    use concord_tokio::transport;
    use concord_tokio::wire::{Hello, HelloRole};
    use tokio::io::AsyncWriteExt;
    let TcpCluster {
        dirs: _dirs,
        addrs,
        handles: _handles,
        ..
    } = TcpCluster::start("multi-pipelined").await;
    let node = *addrs.keys().next().unwrap();
    let hello = Hello {
        cluster_id: "multi-test".to_string(),
        role: HelloRole::Client,
    };
    let (mut stream, answered_as) = transport::connect(
        &addrs[&node],
        &hello,
        frame::DEFAULT_MAX_FRAME_BYTES,
        Duration::from_secs(2),
        None,
    )
    .await
    .unwrap();
    assert_eq!(answered_as, node);
    const REQUESTS: u64 = 10;
    let mut bytes = Vec::new();
    for i in 0..REQUESTS {
        let request = GroupRequest {
            group: 1 + i,
            request: GroupOp::Command(Bytes::from(format!("p=v{i}"))),
        };
        frame::encode_frame(&request, &mut bytes).unwrap();
    }
    // A frame header announcing a payload whose checksum is wrong.
    bytes.extend_from_slice(&[4, 0, 0, 0, 0xff, 0, 0, 0, 0, b'b', b'a', b'd', b'!']);
    stream.write_all(&bytes).await.unwrap();
    let mut buf = Vec::new();
    let mut done = 0;
    for i in 0..REQUESTS {
        let answer: ClientResponse =
            frame::read_value(&mut stream, &mut buf, frame::DEFAULT_MAX_FRAME_BYTES)
                .await
                .unwrap_or_else(|e| panic!("answer {i}: {e}"));
        match answer {
            ClientResponse::Done(value) => {
                assert_eq!(
                    value,
                    Bytes::from(format!("v{i}")),
                    "answer {i} out of order"
                );
                done += 1;
            }
            ClientResponse::NotLeader { .. } => {}
            other => panic!("answer {i}: {other:?}"),
        }
    }
    assert!(done >= 1, "node {node} leads none of groups 1..=10");
    // Then the connection is closed for the garbage.
    let after = frame::read_value::<ClientResponse, _>(
        &mut stream,
        &mut buf,
        frame::DEFAULT_MAX_FRAME_BYTES,
    )
    .await;
    assert!(after.is_err(), "an answer to garbage: {after:?}");
}
