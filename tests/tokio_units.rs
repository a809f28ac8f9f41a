//! Tests of the tokio runtime's parts: the write-ahead log (group commit,
//! recovery, torn tails, corruption), an in-process cluster over the
//! in-memory transport, and a TCP cluster driven by the real client.
mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::kv_nodes::{loopback_peers, start_kv_node};
use common::wal::{entry, one_entry_write};
use common::{free_ports, runtime, TempDir};
use concord::{Config, HardState, WriteId};
use concord_services::KvClient;
use concord_tokio::client::ClientConfig;
use concord_tokio::cluster::NodeSettings;
use concord_tokio::null::NullStateMachine;
use concord_tokio::server::{self, ServerConfig};
use concord_tokio::storage::{MemDisk, MemStorage, PersistRequest, Storage, StorageError};
use concord_tokio::transport::MemNetwork;
use concord_tokio::wal::{self, FileStorage, WalOptions};
use concord_tokio::wire::ClientResponse;

/// Submits writes to a started storage and waits until `last` is reported.
fn write_all(storage: &mut FileStorage, writes: Vec<PersistRequest>) -> usize {
    common::wal::write_and_wait(storage, writes).len()
}

#[test]
fn wal_round_trips_truncations_and_hard_state_with_group_commit() {
    let dir = TempDir::new("wal-roundtrip");
    let mut storage = FileStorage::open(&dir.0, WalOptions::default()).unwrap();
    assert_eq!(storage.recover().unwrap(), concord::Recovered::default());
    let mut writes = vec![PersistRequest {
        id: WriteId(1),
        hard_state: Some(HardState {
            term: 1,
            voted_for: Some(1),
            ..Default::default()
        }),
        truncate_after: None,
        entries: vec![].into(),
    }];
    for i in 1..=500u64 {
        writes.push(PersistRequest {
            id: WriteId(i + 1),
            hard_state: None,
            truncate_after: None,
            entries: vec![entry(1, i, &format!("v{i}"))].into(),
        });
    }
    // A new leader overwrites the tail from index 401.
    writes.push(PersistRequest {
        id: WriteId(502),
        hard_state: Some(HardState {
            term: 2,
            voted_for: None,
            ..Default::default()
        }),
        truncate_after: Some(400),
        entries: vec![entry(2, 401, "new")].into(),
    });
    let notifications = write_all(&mut storage, writes);
    assert!(notifications <= 502, "at most one notification per write");
    drop(storage);

    let mut storage = FileStorage::open(&dir.0, WalOptions::default()).unwrap();
    let recovered = storage.recover().unwrap();
    assert_eq!(
        recovered.hard_state,
        HardState {
            term: 2,
            voted_for: None,
            ..Default::default()
        }
    );
    assert_eq!(recovered.entries.len(), 401);
    assert_eq!(recovered.entries[399], entry(1, 400, "v400"));
    assert_eq!(recovered.entries[400], entry(2, 401, "new"));
}

#[test]
fn wal_rolls_segments_and_reads_them_all_back() {
    let dir = TempDir::new("wal-segments");
    let options = WalOptions {
        segment_bytes_max: 1024,
        ..WalOptions::default()
    };
    // Several rounds (each a group commit of many writes, each rolling to
    // a new segment once past 1 KiB).
    for round in 0..4u64 {
        let mut storage = FileStorage::open(&dir.0, options.clone()).unwrap();
        assert_eq!(storage.recover().unwrap().entries.len() as u64, round * 50);
        let mut writes = vec![PersistRequest {
            id: WriteId(1),
            hard_state: Some(HardState {
                term: 3,
                voted_for: None,
                ..Default::default()
            }),
            truncate_after: None,
            entries: vec![].into(),
        }];
        for i in 1..=50u64 {
            let index = round * 50 + i;
            writes.push(PersistRequest {
                id: WriteId(i + 1),
                hard_state: None,
                truncate_after: None,
                entries: vec![entry(3, index, &"x".repeat(50))].into(),
            });
        }
        write_all(&mut storage, writes);
    }
    let segments = std::fs::read_dir(dir.0.join("wal"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "seg")
        })
        .count();
    assert!(segments > 2, "expected several segments, found {segments}");
    let report = wal::recover_dir(&dir.0, &WalOptions::default()).unwrap();
    assert_eq!(report.recovered.entries.len(), 200);
    assert_eq!(report.segments, segments);
}

fn write_two_records(dir: &TempDir) -> PathBuf {
    // Each in its own opening of the log.
    for (i, entry) in [entry(1, 1, "a"), entry(1, 2, "b")].into_iter().enumerate() {
        let mut storage = FileStorage::open(&dir.0, WalOptions::default()).unwrap();
        storage.recover().unwrap();
        write_all(&mut storage, vec![one_entry_write(i, entry)]);
    }
    dir.0.join("wal").join(format!("{:020}.seg", 1))
}

#[test]
fn wal_truncates_a_torn_final_record() {
    let dir = TempDir::new("wal-torn");
    let segment = write_two_records(&dir);
    let full = std::fs::read(&segment).unwrap();
    // Cut the last record in half: a crash in the middle of a write. That
    // record was reported durable, so the durable marker would make this
    // loud (see tests/wal_recovery.rs); without a marker (lost in a power
    // failure) the torn-tail rule alone applies.
    let marker = dir.0.join("wal").join(wal::MARKER_FILE_NAME);
    std::fs::remove_file(&marker).unwrap();
    std::fs::write(&segment, &full[..full.len() - 3]).unwrap();
    let report = wal::recover_dir(&dir.0, &WalOptions::default()).unwrap();
    assert_eq!(report.recovered.entries, vec![entry(1, 1, "a")]);
    assert!(report.torn_bytes_truncated > 0);
    // The file was truncated to the good prefix; appending works again.
    let mut storage = FileStorage::open(&dir.0, WalOptions::default()).unwrap();
    assert_eq!(storage.recover().unwrap().entries.len(), 1);
    write_all(&mut storage, vec![one_entry_write(1, entry(1, 2, "c"))]);
    drop(storage);
    let report = wal::recover_dir(&dir.0, &WalOptions::default()).unwrap();
    assert_eq!(
        report.recovered.entries,
        vec![entry(1, 1, "a"), entry(1, 2, "c")]
    );

    // A garbage tail that fails its checksum at the very end is torn too.
    let mut bytes = std::fs::read(&segment).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&segment, &bytes).unwrap();
    std::fs::remove_file(&marker).unwrap();
    let report = wal::recover_dir(&dir.0, &WalOptions::default()).unwrap();
    assert_eq!(report.recovered.entries, vec![entry(1, 1, "a")]);
}

#[test]
fn wal_corruption_before_the_end_is_a_startup_error_naming_file_and_offset() {
    let dir = TempDir::new("wal-corrupt");
    let segment = write_two_records(&dir);
    let mut bytes = std::fs::read(&segment).unwrap();
    // Inside the first record's payload, after the segment header.
    bytes[wal::SEGMENT_HEADER_BYTES + 10] ^= 0x55;
    std::fs::write(&segment, &bytes).unwrap();
    let error = FileStorage::open(&dir.0, WalOptions::default()).unwrap_err();
    match &error {
        StorageError::Corrupt { file, offset, .. } => {
            assert!(file.ends_with("00000000000000000001.seg"), "{file}");
            assert_eq!(*offset, wal::SEGMENT_HEADER_BYTES as u64);
        }
        other => panic!("expected corruption, got {other}"),
    }
    let message = error.to_string();
    assert!(
        message.contains("00000000000000000001.seg") && message.contains("offset 16"),
        "{message}"
    );

    // A damaged hard-state file is an error too, never a silent default.
    let dir = TempDir::new("wal-corrupt-hs");
    write_two_records(&dir);
    let hs = dir.0.join("hardstate");
    let mut bytes = std::fs::read(&hs).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&hs, &bytes).unwrap();
    assert!(matches!(
        FileStorage::open(&dir.0, WalOptions::default()),
        Err(StorageError::Corrupt { .. })
    ));
}

fn raft_config(id: u64) -> Config {
    let mut config = Config::new(id, [1, 2, 3]);
    config.seed = id * 7919;
    config
}

/// Starts the server `config` names on `network` with a 5 ms tick, the
/// null state machine and `disk`.
fn start_in_memory(
    config: Config,
    disk: &MemDisk,
    network: &MemNetwork,
) -> Result<server::ServerHandle, server::ServerError> {
    let id = config.id;
    let inbox = server::inbox();
    network.register(id, inbox.0.clone());
    let mut config = ServerConfig::new(config);
    config.tick = Duration::from_millis(5);
    server::start(
        config,
        NullStateMachine,
        MemStorage::new(disk.clone()),
        network.transport(id),
        inbox,
    )
}

#[test]
fn in_memory_cluster_commits_and_survives_leader_loss() {
    runtime().block_on(async {
        let network = MemNetwork::new();
        let disks: Vec<MemDisk> = (0..3).map(|_| MemDisk::new()).collect();
        let start =
            |id: u64| start_in_memory(raft_config(id), &disks[id as usize - 1], &network).unwrap();
        let mut servers: Vec<Option<_>> = (1..=3).map(|id| Some(start(id))).collect();
        let leader = wait_for_leader(&servers).await;
        for i in 0..100u32 {
            let handle = servers[leader as usize - 1].as_ref().unwrap();
            match handle.call(Bytes::from(i.to_le_bytes().to_vec())).await {
                ClientResponse::Done(_) => {}
                other => panic!("write {i} failed: {other:?}"),
            }
        }
        // Stop the leader; the other two elect a new one and keep going.
        network.unregister(leader);
        servers[leader as usize - 1]
            .take()
            .unwrap()
            .shutdown()
            .await
            .unwrap();
        let new_leader = wait_for_leader(&servers).await;
        assert_ne!(new_leader, leader);
        let handle = servers[new_leader as usize - 1].as_ref().unwrap();
        assert!(matches!(
            handle.call(Bytes::from_static(b"after")).await,
            ClientResponse::Done(_)
        ));
        // Restart the old leader from its disk: it catches up.
        servers[leader as usize - 1] = Some(start(leader));
        let target = servers[new_leader as usize - 1]
            .as_ref()
            .unwrap()
            .status()
            .await
            .unwrap()
            .commit_index;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let status = servers[leader as usize - 1]
                .as_ref()
                .unwrap()
                .status()
                .await
                .unwrap();
            if status.applied_index >= target {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "restarted node did not catch up: {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for server in servers.into_iter().flatten() {
            server.shutdown().await.unwrap();
        }
    });
}

async fn wait_for_leader(servers: &[Option<server::ServerHandle>]) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for server in servers.iter().flatten() {
            if let Some(status) = server.status().await {
                if status.role == "Leader" {
                    return status.id;
                }
            }
        }
        assert!(Instant::now() < deadline, "no leader elected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn tcp_cluster_serves_the_typed_client_api() {
    runtime().block_on(async {
        let peers = loopback_peers(&free_ports(3));
        let mut nodes = Vec::new();
        for (&id, addr) in &peers {
            let settings = NodeSettings::new(id, addr.clone(), peers.clone(), "units");
            nodes.push(start_kv_node(settings).await.unwrap());
        }
        let mut client = KvClient::single_group(ClientConfig::new(
            peers.values().cloned().collect(),
            "units",
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
        let mut stranger = KvClient::single_group(ClientConfig {
            attempts_max: 2,
            ..ClientConfig::new(peers.values().cloned().collect(), "other")
        });
        let error = stranger.get("k").await.unwrap_err().to_string();
        assert!(
            error.contains("refused") && error.contains("cluster id"),
            "{error}"
        );
        // Status of every node.
        for i in 0..3 {
            let status = client.status(i).await.unwrap();
            assert!(status.commit_index >= 5, "{status:?}");
        }
        for node in nodes {
            node.shutdown().await.unwrap();
        }
    });
}

/// Membership requests against an in-process cluster: typed answers for
/// every outcome a request can have short of a timeout.
#[test]
fn admin_requests_are_answered_with_typed_outcomes() {
    use concord_tokio::wire::{AdminRequest, AdminResponse};
    runtime().block_on(async {
        let network = MemNetwork::new();
        let servers: Vec<Option<_>> = (1..=3u64)
            .map(|id| {
                let inbox = server::inbox();
                network.register(id, inbox.0.clone());
                let mut config = ServerConfig::new(raft_config(id));
                config.tick = Duration::from_millis(5);
                Some(
                    server::start(
                        config,
                        NullStateMachine,
                        MemStorage::new(MemDisk::new()),
                        network.transport(id),
                        inbox,
                    )
                    .unwrap(),
                )
            })
            .collect();
        let leader = wait_for_leader(&servers).await;
        let at = |id: u64| servers[id as usize - 1].as_ref().unwrap();
        let follower = (1..=3).find(|id| *id != leader).unwrap();
        // Wait until the follower knows the leader, then a change sent to
        // it is redirected.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match at(follower).admin(AdminRequest::Remove { id: 3 }).await {
                Some(AdminResponse::NotLeader { leader_hint, .. })
                    if leader_hint == Some(leader) =>
                {
                    break
                }
                Some(AdminResponse::NotLeader { .. }) => {}
                other => panic!("a follower answered a change with {other:?}"),
            }
            assert!(
                Instant::now() < deadline,
                "follower never learned the leader"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let refused = |response: Option<AdminResponse>, needle: &str| match response {
            Some(AdminResponse::Refused(reason)) => {
                assert!(
                    reason.contains(needle),
                    "{reason:?} should mention {needle:?}"
                )
            }
            other => panic!("expected a refusal mentioning {needle:?}, got {other:?}"),
        };
        let leader_handle = at(leader);
        let add = |id: u64, addr: &str| AdminRequest::AddLearner {
            id,
            addr: addr.to_string(),
        };
        refused(
            leader_handle.admin(add(3, "127.0.0.1:7003")).await,
            "already a member",
        );
        refused(leader_handle.admin(add(4, "nowhere")).await, "host:port");
        refused(
            leader_handle.admin(add(0, "127.0.0.1:7000")).await,
            "reserved",
        );
        refused(
            leader_handle.admin(AdminRequest::Remove { id: 9 }).await,
            "not a member",
        );
        refused(
            leader_handle
                .admin(AdminRequest::Promote { id: follower })
                .await,
            "not a learner",
        );
        refused(
            leader_handle
                .admin(AdminRequest::TransferLeader { id: leader })
                .await,
            "already the leader",
        );
        // Adding and removing a learner: done, with the address listed.
        match leader_handle.admin(add(4, "127.0.0.1:7004")).await {
            Some(AdminResponse::Done(members)) => {
                assert_eq!(members.learners, vec![4]);
                assert_eq!(members.voters, vec![1, 2, 3]);
                let four = members.members.iter().find(|m| m.id == 4).unwrap();
                assert_eq!(four.addr.as_deref(), Some("127.0.0.1:7004"));
                assert_eq!(four.role, "learner");
                // The leader knows every voter's match index.
                assert!(members
                    .members
                    .iter()
                    .filter(|m| m.role == "voter")
                    .all(|m| m.match_index.is_some()));
            }
            other => panic!("add-learner answered {other:?}"),
        }
        match leader_handle.admin(AdminRequest::Remove { id: 4 }).await {
            Some(AdminResponse::Done(members)) => assert!(members.learners.is_empty()),
            other => panic!("remove answered {other:?}"),
        }
        // A follower lists the members from its own view.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match at(follower).admin(AdminRequest::List).await {
                Some(AdminResponse::Done(members)) if members.learners.is_empty() => {
                    assert_eq!(members.answered_by, follower);
                    assert!(members.members.iter().all(|m| m.match_index.is_none()));
                    break;
                }
                Some(AdminResponse::Done(_)) => {}
                other => panic!("list answered {other:?}"),
            }
            assert!(Instant::now() < deadline, "follower never saw the removal");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Leadership goes to the named voter.
        match leader_handle
            .admin(AdminRequest::TransferLeader { id: follower })
            .await
        {
            Some(AdminResponse::Done(members)) => assert_eq!(members.leader, Some(follower)),
            other => panic!("transfer answered {other:?}"),
        }
        assert_eq!(wait_for_leader(&servers).await, follower);
        // The leader removes itself: done once the new configuration
        // commits (it steps down then), and the other two lead on.
        match at(follower)
            .admin(AdminRequest::Remove { id: follower })
            .await
        {
            Some(AdminResponse::Done(members)) => {
                assert!(!members.voters.contains(&follower), "{members:?}");
                assert_eq!(members.voters.len(), 2);
                assert!(members.voters_outgoing.is_empty());
            }
            other => panic!("the leader's removal of itself answered {other:?}"),
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        'elected: loop {
            for id in (1..=3u64).filter(|id| *id != follower) {
                if at(id).status().await.is_some_and(|s| s.role == "Leader") {
                    break 'elected;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the remaining two elected no leader"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
}

/// Witness servers in an in-process cluster: born with a witness, which
/// redirects clients, applies nothing, compacts its log into snapshots
/// without state and restarts from them; `AddWitness` is checked like any
/// change; and a server whose kind contradicts the configuration stored
/// in its log refuses to start, saying what to do.
#[test]
fn witness_servers_redirect_compact_restart_and_refuse_a_wrong_role() {
    use concord_tokio::server::ServerError;
    use concord_tokio::wire::{AdminRequest, AdminResponse};
    runtime().block_on(async {
        let network = MemNetwork::new();
        let disks: Vec<MemDisk> = (0..4).map(|_| MemDisk::new()).collect();
        // Nodes 1 and 2 are full voters, 3 a witness (listed on every
        // node); node 4 joins as a witness (itself alone in `witnesses`).
        let config_of = |id: u64| {
            let mut config = if id == 4 {
                Config::new(id, [1, 2, 3])
            } else {
                raft_config(id)
            };
            config.seed = id * 7919;
            config.witnesses = [3].into();
            if id == 4 {
                config.witnesses = [4].into();
            }
            config.compaction_threshold_entries = Some(10);
            config.compaction_trailing_entries = 2;
            config
        };
        let start = |id: u64| start_in_memory(config_of(id), &disks[id as usize - 1], &network);
        let mut servers: Vec<Option<_>> = (1..=3u64).map(|id| Some(start(id).unwrap())).collect();
        let leader = wait_for_leader(&servers).await;
        assert_ne!(leader, 3, "a witness never leads");
        let leader_handle = servers[leader as usize - 1].as_ref().unwrap();
        for i in 0..30 {
            let answer = leader_handle.call(Bytes::from(format!("c{i}"))).await;
            assert!(matches!(answer, ClientResponse::Done(_)), "{answer:?}");
        }
        // The witness redirects a client to the leader.
        let witness = servers[2].as_ref().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match witness.call(Bytes::from_static(b"w")).await {
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
            let status = witness.status().await.unwrap();
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
        let members = match leader_handle.admin(AdminRequest::List).await {
            Some(AdminResponse::Done(members)) => members,
            other => panic!("list answered {other:?}"),
        };
        let role = |id: u64| {
            members
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
        match leader_handle
            .admin(AdminRequest::AddWitness {
                id: 4,
                addr: "127.0.0.1:7004".to_string(),
            })
            .await
        {
            Some(AdminResponse::Refused(reason)) => {
                assert!(reason.contains("not a majority"), "{reason}")
            }
            other => panic!("a second witness was answered {other:?}"),
        }
        // The witness restarts from its snapshot (no state to restore).
        servers[2].take().unwrap().shutdown().await.unwrap();
        network.unregister(3);
        servers[2] = Some(start(3).unwrap());
        let status = servers[2].as_ref().unwrap().status().await.unwrap();
        assert!(status.snapshot_index >= 20, "{status:?}");
        // Down while the full voters compact past its log, it is sent the
        // leader's snapshot without bytes, stores it, and restarts from
        // it too.
        servers[2].take().unwrap().shutdown().await.unwrap();
        network.unregister(3);
        let leader_handle = servers[leader as usize - 1].as_ref().unwrap();
        for i in 30..60 {
            let answer = leader_handle.call(Bytes::from(format!("c{i}"))).await;
            assert!(matches!(answer, ClientResponse::Done(_)), "{answer:?}");
        }
        servers[2] = Some(start(3).unwrap());
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let status = servers[2].as_ref().unwrap().status().await.unwrap();
            if status.server.snapshots_installed > 0 {
                assert_eq!(status.server.snapshot_bytes_received, 0, "{status:?}");
                assert_eq!(status.server.entries_applied, 0, "{status:?}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no snapshot installed: {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        servers[2].take().unwrap().shutdown().await.unwrap();
        network.unregister(3);
        servers[2] = Some(start(3).unwrap());
        let status = servers[2].as_ref().unwrap().status().await.unwrap();
        assert!(status.snapshot_index >= 40, "{status:?}");

        // Node 4 runs as a witness, but is added with `AddVoter`: its log
        // then names it a full voter, and it refuses to restart so.
        servers.push(Some(start(4).unwrap()));
        let leader = wait_for_leader(&servers).await;
        let leader_handle = servers[leader as usize - 1].as_ref().unwrap();
        match leader_handle
            .admin(AdminRequest::AddVoter {
                id: 4,
                addr: "127.0.0.1:7004".to_string(),
            })
            .await
        {
            Some(AdminResponse::Done(members)) => assert_eq!(members.voters, vec![1, 2, 3, 4]),
            other => panic!("add voter answered {other:?}"),
        }
        let four = servers[3].as_ref().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(AdminResponse::Done(m)) = four.admin(AdminRequest::List).await {
                if m.voters.contains(&4) {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "node 4 never saw its addition");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        servers[3].take().unwrap().shutdown().await.unwrap();
        network.unregister(4);
        match start(4) {
            Err(ServerError::WitnessListedAsFullVoter { id: 4, .. }) => {}
            other => panic!("node 4 restarted as a witness listed as a full voter: {other:?}"),
        }
        let message = ServerError::WitnessListedAsFullVoter {
            id: 4,
            configuration_index: 9,
        }
        .to_string();
        assert!(message.contains("without --witness"), "{message}");
        for server in servers.into_iter().flatten() {
            server.shutdown().await.unwrap();
        }
    });
}
