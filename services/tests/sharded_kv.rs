//! The sharded key-value store on an in-process cluster: three
//! multi-group servers linked by the in-process frame network, each with
//! a loopback listener for clients, every group's state machine the one
//! store ([`ShardMachine`]) behind the group's session table. Checks routing by key, redirects after a
//! leader change, the refusal of a `put_many` across groups, the
//! atomicity of one within a group, and the guard against a client with
//! another group count.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use concord::multi::sessions::GroupSessions;
use concord::multi::{GroupId, MultiConfig};
use concord::{Config, NodeId, Role, TransferOutcome};
use concord_services::sharded_kv::{ShardError, ShardMachine, ShardMap};
use concord_services::sharded_kv_client::{ShardedKvClient, ShardedKvError};
use concord_tokio::multi::data_dir;
use concord_tokio::multi::host::{self, MultiServerConfig, MultiServerHandle};
use concord_tokio::multi::log_sink::WalThread;
use concord_tokio::multi::mem_network::MemFrameNetwork;
use concord_tokio::multi::routing_client::RoutingConfig;
use concord_tokio::multi::shared_log::MultiWalOptions;
use concord_tokio::multi::tcp_listener::{self, MultiListenerConfig};

const NODES: [NodeId; 3] = [1, 2, 3];
const GROUPS: u64 = 8;
const CLUSTER: &str = "sharded-test";

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("concord-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Cluster {
    handles: BTreeMap<NodeId, MultiServerHandle>,
    addrs: BTreeMap<NodeId, String>,
    _dirs: Vec<TempDir>,
}

/// Every node on an in-memory network with a TCP listener for clients;
/// returns once every group is led.
async fn start_cluster(name: &str) -> Cluster {
    let network = MemFrameNetwork::new();
    let map = ShardMap::new(GROUPS).unwrap();
    let mut handles = BTreeMap::new();
    let mut addrs = BTreeMap::new();
    let mut dirs = Vec::new();
    for id in NODES {
        let dir = TempDir::new(&format!("{name}-{id}"));
        let options = MultiWalOptions {
            sync: false,
            ..MultiWalOptions::default()
        };
        let opened = data_dir::open_data_dir(&dir.0, options).unwrap();
        let log = WalThread::start(opened.log).unwrap();
        let mut multi = MultiConfig::new(id, NODES);
        multi.incarnation = opened.incarnation;
        let groups = map
            .group_ids()
            .map(|group| {
                let mut config = Config::new(id, NODES);
                config.seed = group * 1_000 + id;
                (group, config)
            })
            .collect();
        let mut config = MultiServerConfig::new(multi, groups);
        config.tick = Duration::from_millis(5);
        let inbox = host::inbox();
        network.register(id, inbox.0.clone());
        let events = inbox.0.clone();
        let handle = host::start(
            config,
            |group| GroupSessions::new(ShardMachine::new(map, group)),
            opened.recovery,
            log,
            network.sender(id),
            inbox,
        )
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        addrs.insert(id, listener.local_addr().unwrap().to_string());
        let config = MultiListenerConfig::new(id, CLUSTER, NODES.into_iter().collect());
        tokio::spawn(tcp_listener::serve(
            listener,
            config,
            events,
            handle.shutdown_signal(),
        ));
        handles.insert(id, handle);
        dirs.push(dir);
    }
    let cluster = Cluster {
        handles,
        addrs,
        _dirs: dirs,
    };
    cluster.leaders().await;
    cluster
}

impl Cluster {
    fn client(&self, groups: u64) -> ShardedKvClient {
        let config = RoutingConfig::new(CLUSTER, self.addrs.clone());
        ShardedKvClient::new(ShardMap::new(groups).unwrap(), config).unwrap()
    }

    /// Each group's leader, once every group has one that every node
    /// knows.
    async fn leaders(&self) -> BTreeMap<GroupId, NodeId> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let mut seen: BTreeMap<GroupId, BTreeSet<Option<NodeId>>> = BTreeMap::new();
            let mut led = BTreeMap::new();
            for (id, handle) in &self.handles {
                for (group, status) in handle.status(true).await.unwrap().groups {
                    seen.entry(group).or_default().insert(status.leader);
                    if status.role == Role::Leader {
                        led.insert(group, *id);
                    }
                }
            }
            let agreed = led.len() == GROUPS as usize
                && seen
                    .iter()
                    .all(|(group, s)| s.len() == 1 && s.first() == Some(&led.get(group).copied()));
            if agreed {
                return led;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "not every group has an agreed leader: {led:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn shutdown(self) {
        for (_, handle) in self.handles {
            handle.shutdown().await.unwrap();
        }
    }
}

/// Keys land in their groups: every key written is read back, and every
/// group holds some (a misrouted key would be refused by the group's
/// state machine). The client's cache then sends each call straight to
/// its group's leader.
#[tokio::test(flavor = "current_thread")]
async fn keys_are_routed_to_their_groups_and_read_back() {
    let cluster = start_cluster("shard-route").await;
    let mut client = cluster.client(GROUPS);
    let map = *client.map();
    let keys: Vec<String> = (0..200).map(|i| format!("key-{i}")).collect();
    let groups: BTreeSet<GroupId> = keys.iter().map(|k| map.group_of(k.as_bytes())).collect();
    assert_eq!(groups.len(), GROUPS as usize, "200 keys reach every group");
    for key in &keys {
        client.put(key.clone(), format!("v-{key}")).await.unwrap();
    }
    for key in &keys {
        let value = client.get(key.clone()).await.unwrap();
        assert_eq!(value, Some(Bytes::from(format!("v-{key}"))));
    }
    assert_eq!(client.get("never-written").await.unwrap(), None);
    // Warm: at most one redirect per group ever, then cache hits.
    let stats = client.routing().stats();
    assert!(stats.redirects <= GROUPS, "{stats:?}");
    assert!(stats.cache_hits >= 401 - GROUPS, "{stats:?}");
    for group in map.group_ids() {
        assert!(client.routing().cached_leader(group).is_some());
    }
    // append and cas go to the key's group too.
    client.append("key-0", "+").await.unwrap();
    assert!(client
        .cas("key-0", Some(Bytes::from("v-key-0+")), "swapped")
        .await
        .unwrap());
    assert_eq!(
        client.get("key-0").await.unwrap(),
        Some(Bytes::from("swapped"))
    );

    // A client with another group count is refused by the groups, with
    // the reason, never served from the wrong group.
    let mut wrong = cluster.client(GROUPS / 2);
    let misplaced = keys
        .iter()
        .find(|k| wrong.map().group_of(k.as_bytes()) != map.group_of(k.as_bytes()))
        .unwrap()
        .clone();
    match wrong.put(misplaced.clone(), "x").await {
        Err(ShardedKvError::Refused { reason, .. }) => {
            assert!(
                reason.contains("group count must be the cluster's (8)"),
                "{reason}"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(
        client.get(misplaced.clone()).await.unwrap(),
        Some(Bytes::from(format!("v-{misplaced}")))
    );
    cluster.shutdown().await;
}

/// When a group's leader moves, the cached old leader redirects the
/// client to the new one, which it then caches; other groups' entries
/// stay.
#[tokio::test(flavor = "current_thread")]
async fn a_leader_change_is_followed_by_redirect() {
    let cluster = start_cluster("shard-redirect").await;
    let leaders = cluster.leaders().await;
    let mut client = cluster.client(GROUPS);
    let map = *client.map();
    let key = "moving-key";
    let group = map.group_of(key.as_bytes());
    client.put(key, "before").await.unwrap();
    let old = client.routing().cached_leader(group).unwrap();
    assert_eq!(old, leaders[&group]);
    let new = NODES.into_iter().find(|id| *id != old).unwrap();
    assert_eq!(
        cluster.handles[&old].transfer(group, new).await,
        Ok(TransferOutcome::Started)
    );
    // Wait until the old leader knows the new one, so its redirect names
    // it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = cluster.handles[&old].status(true).await.unwrap();
        if status.groups[&group].leader == Some(new) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "transfer not seen");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let before = client.routing().stats();
    client.put(key, "after").await.unwrap();
    let after = client.routing().stats();
    assert_eq!(after.redirects, before.redirects + 1, "{after:?}");
    assert_eq!(after.attempts, before.attempts + 2, "{after:?}");
    assert_eq!(client.routing().cached_leader(group), Some(new));
    assert_eq!(client.get(key).await.unwrap(), Some(Bytes::from("after")));
    // The redirect cost nothing more afterwards: straight to the new
    // leader.
    let settled = client.routing().stats();
    client.put(key, "again").await.unwrap();
    assert_eq!(client.routing().stats().attempts, settled.attempts + 1);
    cluster.shutdown().await;
}

/// A `put_many` whose keys span groups is refused before anything is
/// sent, naming the groups; one within a group (hash tag) is atomic: a
/// reader of all its keys, at any moment, sees one batch's values.
#[tokio::test(flavor = "current_thread")]
async fn put_many_is_atomic_within_a_group_and_refused_across() {
    let cluster = start_cluster("shard-batch").await;
    let mut client = cluster.client(GROUPS);
    let map = *client.map();

    let spanning: Vec<(String, String)> = (0..10)
        .map(|i| (format!("span-{i}"), format!("{i}")))
        .collect();
    let expected: Vec<GroupId> = spanning
        .iter()
        .map(|(k, _)| map.group_of(k.as_bytes()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert!(expected.len() > 1);
    let before = client.routing().stats();
    match client.put_many(spanning.clone()).await {
        Err(ShardedKvError::Shard(ShardError::CrossGroup { what, groups })) => {
            assert_eq!((what, groups), ("put_many", expected.clone()));
        }
        other => panic!("expected a cross-group refusal, got {other:?}"),
    }
    let message = client
        .put_many(spanning.clone())
        .await
        .unwrap_err()
        .to_string();
    let named: Vec<String> = expected.iter().map(|g| g.to_string()).collect();
    assert!(message.contains(&named.join(", ")), "{message}");
    assert_eq!(client.routing().stats(), before, "nothing was sent");
    for (key, _) in &spanning {
        assert_eq!(client.get(key.clone()).await.unwrap(), None);
    }
    // get_many across groups: refused the same way.
    let keys: Vec<String> = spanning.iter().map(|(k, _)| k.clone()).collect();
    assert!(matches!(
        client.get_many(keys).await,
        Err(ShardedKvError::Shard(ShardError::CrossGroup {
            what: "get_many",
            ..
        }))
    ));

    // Within one group: a writer of batches, a reader of all their keys.
    let keys: Vec<String> = ["a", "b", "c", "d"]
        .iter()
        .map(|k| format!("{{acct7}}.{k}"))
        .collect();
    let group = map.group_of(b"acct7");
    assert!(keys.iter().all(|k| map.group_of(k.as_bytes()) == group));
    const BATCHES: usize = 150;
    let writer_keys = keys.clone();
    let mut writer = cluster.client(GROUPS);
    let write = async move {
        for round in 0..BATCHES {
            let pairs: Vec<(String, String)> = writer_keys
                .iter()
                .map(|k| (k.clone(), format!("round-{round}")))
                .collect();
            writer.put_many(pairs).await.unwrap();
        }
    };
    let read_keys = keys.clone();
    let read = async {
        let mut rounds_seen = BTreeSet::new();
        let mut reads = 0;
        while rounds_seen.len() < 3 || reads < BATCHES {
            let values = client.get_many(read_keys.clone()).await.unwrap();
            let distinct: BTreeSet<&Option<Bytes>> = values.iter().collect();
            assert_eq!(distinct.len(), 1, "a torn put_many: {values:?}");
            rounds_seen.insert(values[0].clone());
            reads += 1;
            if reads > 20 * BATCHES {
                break;
            }
        }
        rounds_seen
    };
    let ((), seen) = tokio::join!(write, read);
    assert!(seen.len() >= 2, "the reader saw batches change: {seen:?}");
    let last = client.get_many(keys).await.unwrap();
    let want = Some(Bytes::from(format!("round-{}", BATCHES - 1)));
    assert!(last.iter().all(|v| *v == want), "{last:?}");
    cluster.shutdown().await;
}
