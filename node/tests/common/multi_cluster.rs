//! A real multi-group cluster on loopback for the tests of `concord-node
//! --groups N`: its processes (started with any extra flags, SIGKILLed,
//! paused), a proxy per direction of each pair of nodes to partition them
//! without root, sharded clients running every request of the key-value
//! store, and the recorded history checked by the simulator's
//! linearizability checker, group by group.
//!
//! The partition needs no root: every peer connection goes through a
//! proxy (one per direction of each pair of nodes: node i dials node j
//! at the address of proxy i→j). Cutting a node closes every proxied
//! connection to and from it and refuses new ones, which is what a node
//! sees of a partition on TCP; clients still reach every node directly,
//! so they also talk to the cut-off minority.
//!
//! Included with `#[path = "common/multi_cluster.rs"] mod multi_cluster;`
//! after `#[path = "common/processes.rs"] mod processes;`.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use concord::multi::GroupId;
use concord_services::sharded_kv::ShardMap;
use concord_services::sharded_kv_client::{ShardedKvClient, ShardedKvError};
use concord_sim::history::{Op, Operation, Output};
use concord_sim::linearizability::{check_history_with, CheckConfig};
use concord_tokio::multi::routing_client::{RoutingConfig, RoutingError};
use tokio::sync::watch;

use crate::processes::{free_addr, node_binary, spawn_node};

/// The seed of a test's workload: `$var`, or the clock (printed either
/// way, so a failure can be replayed).
pub fn seed_from_env(var: &str) -> u64 {
    let seed = std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("{var}={seed}");
    seed
}

/// The node processes. Dropping it SIGKILLs them; the directory is kept
/// (and the logs' tails printed) when the test failed.
pub struct Processes {
    pub base: PathBuf,
    pub cluster: String,
    pub groups: u64,
    pub listen: BTreeMap<u64, String>,
    /// Each node's `--peers`: itself at its listen address, every other
    /// node at the proxy from it to that node.
    pub peers: BTreeMap<u64, String>,
    /// Flags every node is started with, besides the cluster's.
    pub extra_args: Vec<String>,
    children: BTreeMap<u64, Child>,
    logs: BTreeMap<u64, PathBuf>,
    starts: u32,
}

impl Processes {
    /// The processes of `voters` (a new cluster) and `joiners` (each
    /// started with `--join`, its `--peers` the voters and itself), not
    /// started, peers connected directly; their data in a fresh
    /// directory `base`.
    pub fn direct(
        base: PathBuf,
        cluster: &str,
        groups: u64,
        voters: &[u64],
        joiners: &[u64],
        extra_args: &[&str],
    ) -> Processes {
        std::fs::create_dir_all(&base).unwrap();
        let listen: BTreeMap<u64, String> = voters
            .iter()
            .chain(joiners)
            .map(|id| (*id, free_addr()))
            .collect();
        let of = |ids: &mut dyn Iterator<Item = &u64>| {
            ids.map(|id| format!("{id}={}", listen[id]))
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut peers: BTreeMap<u64, String> = voters
            .iter()
            .map(|id| (*id, of(&mut voters.iter())))
            .collect();
        for id in joiners {
            peers.insert(*id, of(&mut voters.iter().chain([id])));
        }
        Processes {
            base,
            cluster: cluster.to_string(),
            groups,
            listen,
            peers,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            children: BTreeMap::new(),
            logs: BTreeMap::new(),
            starts: 0,
        }
    }

    pub fn start(&mut self, id: u64) {
        self.start_with(id, &[]);
    }

    /// [`Processes::start`] with flags of this start only.
    pub fn start_with(&mut self, id: u64, extra: &[&str]) {
        self.starts += 1;
        let log = self.base.join(format!("node-{id}-{}.log", self.starts));
        let file = std::fs::File::create(&log).expect("create a log");
        let mut command = Command::new(node_binary());
        command
            .args(["--id", &id.to_string(), "--listen", &self.listen[&id]])
            .args(["--peers", &self.peers[&id], "--cluster-id", &self.cluster])
            .args([
                "--groups",
                &self.groups.to_string(),
                "--worker-threads",
                "1",
            ])
            .args(&self.extra_args)
            .args(extra)
            .arg("--data-dir")
            .arg(self.base.join(format!("node-{id}")))
            .env("RUST_LOG", "info");
        self.children.insert(id, spawn_node(&mut command, file));
        self.logs.insert(id, log);
    }

    /// SIGKILLs node `id`, which must still be running: a node that
    /// stopped on its own is a failure this would otherwise hide.
    pub fn sigkill(&mut self, id: u64) {
        let status = self
            .children
            .get_mut(&id)
            .expect("node runs")
            .try_wait()
            .expect("try_wait");
        if let Some(status) = status {
            panic!("node {id} stopped on its own before it was to be killed: {status}");
        }
        let mut child = self.children.remove(&id).expect("node runs");
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
    }

    pub fn signal(&self, id: u64, signal: i32) {
        let pid = self.children[&id].id();
        // SAFETY: kill(2) on a child we own and have not reaped.
        assert_eq!(unsafe { libc::kill(pid as libc::pid_t, signal) }, 0);
    }

    pub fn assert_running(&mut self) {
        for (id, child) in &mut self.children {
            if let Some(status) = child.try_wait().expect("try_wait") {
                panic!("node {id} exited: {status}");
            }
        }
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for (_, mut child) in std::mem::take(&mut self.children) {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            for (id, log) in &self.logs {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(20).collect();
                eprintln!("--- node {id} ({}), last lines:", log.display());
                for line in tail.into_iter().rev() {
                    eprintln!("{line}");
                }
            }
            eprintln!("data kept in {}", self.base.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.base);
        }
    }
}

/// One direction of one pair of nodes: a proxy the `from` node dials to
/// reach `to`.
struct Link {
    from: u64,
    to: u64,
    blocked: Arc<AtomicBool>,
    cut: watch::Sender<u64>,
}

/// Forwards connections accepted on `listener` to `target` unless
/// blocked; closes them all when `cut` changes.
async fn proxy(
    listener: tokio::net::TcpListener,
    target: String,
    blocked: Arc<AtomicBool>,
    cut: watch::Receiver<u64>,
) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            continue;
        };
        if blocked.load(Ordering::SeqCst) {
            continue;
        }
        let (target, blocked, mut cut) = (target.clone(), blocked.clone(), cut.clone());
        cut.borrow_and_update();
        tokio::spawn(async move {
            let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else {
                return;
            };
            if blocked.load(Ordering::SeqCst) {
                return;
            }
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                _ = cut.changed() => {}
            }
        });
    }
}

/// The proxies between the nodes.
pub struct Network {
    links: Vec<Link>,
}

impl Network {
    /// Cuts node `id` off from the others, both ways.
    pub fn isolate(&self, id: u64) {
        for link in self.links.iter().filter(|l| l.from == id || l.to == id) {
            link.blocked.store(true, Ordering::SeqCst);
            link.cut.send_modify(|n| *n += 1);
        }
    }

    pub fn heal(&self) {
        for link in &self.links {
            link.blocked.store(false, Ordering::SeqCst);
        }
    }
}

/// The processes of `nodes` (not started) of cluster `cluster` with
/// `groups` groups, in a fresh directory under `base`, their peer
/// connections through proxies of this test (call from a tokio runtime:
/// the proxies are its tasks).
pub async fn proxied_cluster(
    base: PathBuf,
    cluster: &str,
    groups: u64,
    nodes: &[u64],
    extra_args: &[&str],
) -> (Processes, Network) {
    std::fs::create_dir_all(&base).unwrap();
    // The nodes' ports stay bound until every proxy has its own: a port
    // released at once could be handed to a proxy's listener next (seen
    // in CI: a node's address answered as another node, through a proxy,
    // and the node could not listen on it).
    let reserved: BTreeMap<u64, std::net::TcpListener> = nodes
        .iter()
        .map(|id| (*id, crate::processes::loopback_listener()))
        .collect();
    let listen: BTreeMap<u64, String> = reserved
        .iter()
        .map(|(id, listener)| (*id, listener.local_addr().expect("local addr").to_string()))
        .collect();
    let mut links = Vec::new();
    let mut peers: BTreeMap<u64, Vec<String>> = nodes
        .iter()
        .map(|id| (*id, vec![format!("{id}={}", listen[id])]))
        .collect();
    for &from in nodes {
        for &to in nodes.iter().filter(|to| **to != from) {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            peers.get_mut(&from).unwrap().push(format!("{to}={addr}"));
            let blocked = Arc::new(AtomicBool::new(false));
            let (cut, cut_rx) = watch::channel(0);
            tokio::spawn(proxy(
                listener,
                listen[&to].clone(),
                blocked.clone(),
                cut_rx,
            ));
            links.push(Link {
                from,
                to,
                blocked,
                cut,
            });
        }
    }
    drop(reserved);
    let processes = Processes {
        base,
        cluster: cluster.to_string(),
        groups,
        listen,
        peers: peers.into_iter().map(|(id, p)| (id, p.join(","))).collect(),
        extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
        children: BTreeMap::new(),
        logs: BTreeMap::new(),
        starts: 0,
    };
    (processes, Network { links })
}

/// The recorded history, with the time origin.
pub struct Recorder {
    pub start: Instant,
    pub ops: Mutex<Vec<Operation>>,
    next_client: AtomicU64,
    pub acked_writes: AtomicU64,
    pub unknown_writes: AtomicU64,
    /// Calls answered, by request (a compare-and-set by its outcome).
    answered: Mutex<BTreeMap<&'static str, u64>>,
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder {
            start: Instant::now(),
            ops: Mutex::new(Vec::new()),
            next_client: AtomicU64::new(1),
            acked_writes: AtomicU64::new(0),
            unknown_writes: AtomicU64::new(0),
            answered: Mutex::new(BTreeMap::new()),
        }
    }

    /// Counts a call answered, by the name of its request.
    pub fn answered(&self, request: &'static str) {
        *self.answered.lock().unwrap().entry(request).or_default() += 1;
    }

    /// Every request of the store was answered at least once (a compare-
    /// and-set both ways); prints how often each was.
    pub fn assert_every_request_answered(&self) {
        let answered = self.answered.lock().unwrap().clone();
        eprintln!("answered: {answered:?}");
        for request in [
            "get",
            "put",
            "append",
            "cas swapped",
            "cas refused",
            "get-many",
            "put-many",
        ] {
            assert!(
                answered.get(request).is_some_and(|n| *n > 0),
                "no {request} answered: {answered:?}"
            );
        }
    }

    pub fn now(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    pub fn client_id(&self) -> u64 {
        self.next_client.fetch_add(1, Ordering::SeqCst)
    }

    pub fn push(&self, op: Operation) {
        self.ops.lock().unwrap().push(op);
    }

    pub fn acked(&self) -> u64 {
        self.acked_writes.load(Ordering::SeqCst)
    }
}

/// A sharded client of `servers` with short timeouts.
pub fn client(cluster: &str, groups: u64, servers: &BTreeMap<u64, String>) -> ShardedKvClient {
    let mut config = RoutingConfig::new(cluster, servers.clone());
    config.request_timeout = Duration::from_secs(2);
    config.connect_timeout = Duration::from_millis(500);
    config.attempts_max = 16;
    ShardedKvClient::new(ShardMap::new(groups).unwrap(), config).unwrap()
}

pub fn text(value: Option<Bytes>) -> String {
    value
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_default()
}

/// Whether `error` leaves a write's outcome unknown.
pub fn unknown(error: &ShardedKvError) -> bool {
    !error.definitely_not_applied()
}

/// One write call touching `ops` (each key once, one call), recorded as
/// one operation per key with the call's interval (the checker checks
/// key by key, so a write of several keys is checked on each of them;
/// not its atomicity across keys), and counted as answered under
/// `request` (a `cas` by its outcome). Whether it was acknowledged. An
/// unknown outcome ends history client `*who` (its operations stay
/// pending forever), so the caller continues as a new one.
fn record_write(
    recorder: &Recorder,
    who: &mut u64,
    call: u64,
    request: &'static str,
    ops: Vec<(String, Op)>,
    result: Result<Vec<Output>, ShardedKvError>,
) -> bool {
    let first = ops.first().map(|(key, op)| format!("{} {key}", op.name()));
    let request = match &result {
        Ok(outputs) if request == "cas" && outputs[..] == [Output::Swapped(true)] => "cas swapped",
        _ if request == "cas" => "cas refused",
        _ => request,
    };
    let entries: Vec<Operation> = ops
        .into_iter()
        .map(|(key, op)| Operation::new(*who, key, op, call))
        .collect();
    match result {
        Ok(outputs) => {
            assert_eq!(
                outputs.len(),
                entries.len(),
                "{first:?}: one result per key"
            );
            recorder.answered(request);
            recorder.acked_writes.fetch_add(1, Ordering::SeqCst);
            let ret = recorder.now();
            for (entry, output) in entries.into_iter().zip(outputs) {
                recorder.push(entry.completed(ret, output));
            }
            true
        }
        Err(e) if unknown(&e) => {
            recorder.unknown_writes.fetch_add(1, Ordering::SeqCst);
            for entry in entries {
                recorder.push(entry);
            }
            *who = recorder.client_id();
            false
        }
        Err(ShardedKvError::Routing(RoutingError::Exhausted { .. })) => {
            let ret = recorder.now();
            for entry in entries {
                recorder.push(entry.failed(ret));
            }
            false
        }
        Err(other) => panic!("{first:?}: {other}"),
    }
}

/// One put, recorded; whether it was acknowledged (see [`record_write`]).
pub async fn put(
    kv: &mut ShardedKvClient,
    recorder: &Recorder,
    who: &mut u64,
    key: &str,
    value: String,
) -> bool {
    let call = recorder.now();
    let result = kv.put(key.to_string(), value.clone()).await;
    let ops = vec![(key.to_string(), Op::Put { value })];
    record_write(
        recorder,
        who,
        call,
        "put",
        ops,
        result.map(|()| vec![Output::Done]),
    )
}

/// One append, recorded; whether it was acknowledged.
pub async fn append(
    kv: &mut ShardedKvClient,
    recorder: &Recorder,
    who: &mut u64,
    key: &str,
    suffix: String,
) -> bool {
    let call = recorder.now();
    let result = kv.append(key.to_string(), suffix.clone()).await;
    let ops = vec![(key.to_string(), Op::Append { value: suffix })];
    record_write(
        recorder,
        who,
        call,
        "append",
        ops,
        result.map(|()| vec![Output::Done]),
    )
}

/// One compare-and-set (`expected: None` is an absent key, which the
/// checker's model reads as `""`: no test writes an empty value),
/// recorded; whether it swapped, if answered.
pub async fn cas(
    kv: &mut ShardedKvClient,
    recorder: &Recorder,
    who: &mut u64,
    key: &str,
    expected: Option<String>,
    new: String,
) -> Option<bool> {
    let call = recorder.now();
    let result = kv
        .cas(
            key.to_string(),
            expected.clone().map(Bytes::from),
            new.clone(),
        )
        .await;
    let swapped = result.as_ref().ok().copied();
    let op = Op::Cas {
        from: expected.unwrap_or_default(),
        to: new,
    };
    let outputs = result.map(|swapped| vec![Output::Swapped(swapped)]);
    record_write(
        recorder,
        who,
        call,
        "cas",
        vec![(key.to_string(), op)],
        outputs,
    );
    swapped
}

/// One atomic write of several keys of one group, recorded; whether it
/// was acknowledged.
pub async fn put_many(
    kv: &mut ShardedKvClient,
    recorder: &Recorder,
    who: &mut u64,
    pairs: Vec<(String, String)>,
) -> bool {
    let call = recorder.now();
    let result = kv.put_many(pairs.clone()).await;
    let outputs = result.map(|()| vec![Output::Done; pairs.len()]);
    let ops = pairs
        .into_iter()
        .map(|(key, value)| (key, Op::Put { value }))
        .collect();
    record_write(recorder, who, call, "put-many", ops, outputs)
}

/// One read of several keys of one group at one instant, recorded as a
/// get of each; the values if answered.
pub async fn get_many(
    kv: &mut ShardedKvClient,
    recorder: &Recorder,
    who: u64,
    keys: &[String],
) -> Option<Vec<Option<Bytes>>> {
    let call = recorder.now();
    let result = kv.get_many(keys.to_vec()).await;
    match result {
        Ok(values) => {
            recorder.answered("get-many");
            assert_eq!(values.len(), keys.len(), "get_many: one value per key");
            let ret = recorder.now();
            for (key, value) in keys.iter().zip(&values) {
                let entry = Operation::new(who, key, Op::Get, call);
                recorder.push(entry.completed(ret, Output::Value(text(value.clone()))));
            }
            Some(values)
        }
        Err(ShardedKvError::Routing(_)) => None,
        Err(other) => panic!("get_many {keys:?}: {other}"),
    }
}

/// One get on the client's read path, recorded; the value if answered.
pub async fn get(
    kv: &mut ShardedKvClient,
    recorder: &Recorder,
    who: u64,
    key: &str,
) -> Option<Option<Bytes>> {
    let call = recorder.now();
    let result = kv.get(key.to_string()).await;
    let entry = Operation::new(who, key, Op::Get, call);
    match result {
        Ok(value) => {
            recorder.answered("get");
            recorder.push(entry.completed(recorder.now(), Output::Value(text(value.clone()))));
            Some(value)
        }
        Err(ShardedKvError::Routing(_)) => None,
        Err(other) => panic!("get {key}: {other}"),
    }
}

/// One key of each group.
pub fn keys_of_every_group(map: &ShardMap) -> Vec<String> {
    map.group_ids()
        .map(|group| {
            (0..)
                .map(|i| format!("g{group}-{i}"))
                .find(|key| map.group_of(key.as_bytes()) == group)
                .expect("some key hashes to every group")
        })
        .collect()
}

/// Reads every key back (recorded, as client `reader`) until each
/// answers, within `within`: each key's final value.
pub async fn read_back(
    kv: &mut ShardedKvClient,
    recorder: &Recorder,
    keys: &[String],
    within: Duration,
) -> BTreeMap<String, String> {
    let reader = recorder.client_id();
    let mut finals = BTreeMap::new();
    let deadline = Instant::now() + within;
    for key in keys {
        loop {
            if let Some(value) = get(kv, recorder, reader, key).await {
                finals.insert(key.clone(), text(value));
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{key}: not readable after the faults"
            );
        }
    }
    finals
}

/// Checks that every key of `finals` has an acknowledged put and, if
/// only puts wrote it, reads a value some put wrote (no acknowledged
/// write is lost), then that every group's history, read-back included,
/// is linearizable. The number of operations checked.
pub fn check_history(
    history: Vec<Operation>,
    finals: &BTreeMap<String, String>,
    map: &ShardMap,
    seed: u64,
) -> usize {
    let mut written: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut acked_keys = BTreeSet::new();
    // Keys also written by appends or compare-and-sets: their final value
    // is not one a put wrote; the linearizability check below (which
    // holds the read-back) is what finds a lost write of theirs.
    let mut not_put_only = BTreeSet::new();
    for op in &history {
        match &op.op {
            Op::Put { value } => {
                written.entry(&op.key).or_default().insert(value);
                if op.ret.is_some() && matches!(op.outcome, concord_sim::history::Outcome::Ok(_)) {
                    acked_keys.insert(op.key.as_str());
                }
            }
            Op::Append { .. } | Op::Cas { .. } => {
                not_put_only.insert(op.key.as_str());
            }
            Op::Get => {}
        }
    }
    assert_eq!(
        acked_keys.len(),
        finals.len(),
        "every key has an acknowledged write"
    );
    for key in acked_keys.difference(&not_put_only) {
        let value = finals[*key].as_str();
        assert!(
            written[key].contains(value),
            "seed {seed}: {key} reads {value:?}, which no put wrote: an acknowledged write was lost"
        );
    }
    let mut by_group: BTreeMap<GroupId, Vec<Operation>> = BTreeMap::new();
    for op in history {
        by_group
            .entry(map.group_of(op.key.as_bytes()))
            .or_default()
            .push(op);
    }
    let check = CheckConfig {
        time_limit: Some(Duration::from_secs(30)),
        ..CheckConfig::default()
    };
    let mut operations = 0;
    for (group, ops) in &by_group {
        operations += ops.len();
        let verdict = check_history_with(ops, &check);
        if !verdict.is_ok() {
            if let Some(failure) = verdict.failure() {
                eprintln!("{}", failure.timeline());
            }
            panic!(
                "seed {seed}: group {group}'s history of {} operations: {verdict}",
                ops.len()
            );
        }
    }
    operations
}

/// Clients that run every request of the key-value store on random
/// keys of `keys` until `stop`: get 30 %, put 20 %, append 15 %, cas 15 %
/// (expecting the value the client last saw of the key, or an absent
/// one), get-many and put-many 10 % each (two or three keys of one
/// group), client `c` drawing from its own generator seeded from `seed`.
/// Every value written is unique. With `hot` above 0, half the
/// operations go to the first `hot` keys, so that some keys see
/// concurrent writers.
#[allow(clippy::too_many_arguments)]
pub fn spawn_clients(
    seed: u64,
    clients: u64,
    cluster: &'static str,
    groups: u64,
    listen: &BTreeMap<u64, String>,
    keys: &Arc<Vec<String>>,
    hot: usize,
    recorder: &Arc<Recorder>,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    use rand::{Rng, SeedableRng};
    let map = ShardMap::new(groups).unwrap();
    let mut by_group: BTreeMap<GroupId, Vec<String>> = BTreeMap::new();
    for key in keys.iter() {
        by_group
            .entry(map.group_of(key.as_bytes()))
            .or_default()
            .push(key.clone());
    }
    let by_group = Arc::new(by_group);
    (0..clients)
        .map(|c| {
            let (keys, recorder, listen, stop) =
                (keys.clone(), recorder.clone(), listen.clone(), stop.clone());
            let by_group = by_group.clone();
            tokio::spawn(async move {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
                    seed ^ (c + 1).wrapping_mul(0x9e37_79b9),
                );
                let mut kv = client(cluster, groups, &listen);
                let mut who = recorder.client_id();
                // The value this client last saw of each key (what its
                // compare-and-sets expect).
                let mut seen: BTreeMap<String, String> = BTreeMap::new();
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let key = if hot > 0 && rng.gen_bool(0.5) {
                        keys[rng.gen_range(0..hot)].clone()
                    } else {
                        keys[rng.gen_range(0..keys.len())].clone()
                    };
                    n += 1;
                    match rng.gen_range(0..100) {
                        0..30 => {
                            if let Some(value) = get(&mut kv, &recorder, who, &key).await {
                                seen.insert(key, text(value));
                            }
                        }
                        30..50 => {
                            let value = format!("c{c}-{n}");
                            if put(&mut kv, &recorder, &mut who, &key, value.clone()).await {
                                seen.insert(key, value);
                            }
                        }
                        50..65 => {
                            let suffix = format!(".{c}-{n}");
                            append(&mut kv, &recorder, &mut who, &key, suffix).await;
                            seen.remove(&key);
                        }
                        65..80 => {
                            let expected = seen.get(&key).cloned();
                            let new = format!("x{c}-{n}");
                            let swapped =
                                cas(&mut kv, &recorder, &mut who, &key, expected, new.clone())
                                    .await;
                            if swapped == Some(true) {
                                seen.insert(key, new);
                            } else {
                                seen.remove(&key);
                            }
                        }
                        roll => {
                            // Two or three keys of the key's group (fewer
                            // if the group has fewer), the key first.
                            let group = &by_group[&map.group_of(key.as_bytes())];
                            let mut several = vec![key];
                            for _ in 0..rng.gen_range(1..=2) {
                                let other = &group[rng.gen_range(0..group.len())];
                                if !several.contains(other) {
                                    several.push(other.clone());
                                }
                            }
                            if roll < 90 {
                                if let Some(values) =
                                    get_many(&mut kv, &recorder, who, &several).await
                                {
                                    for (key, value) in several.into_iter().zip(values) {
                                        seen.insert(key, text(value));
                                    }
                                }
                            } else {
                                let pairs: Vec<(String, String)> = several
                                    .into_iter()
                                    .enumerate()
                                    .map(|(i, key)| (key, format!("m{c}-{n}-{i}")))
                                    .collect();
                                if put_many(&mut kv, &recorder, &mut who, pairs.clone()).await {
                                    seen.extend(pairs);
                                } else {
                                    for (key, _) in pairs {
                                        seen.remove(&key);
                                    }
                                }
                            }
                        }
                    }
                }
            })
        })
        .collect()
}

/// The steps of a fault schedule, each printed with the writes
/// acknowledged during the step before it.
pub struct Steps {
    started: Instant,
    recorder: Arc<Recorder>,
    mark: u64,
    /// Each step's name and the writes acknowledged before it.
    pub done: Vec<(String, u64)>,
}

impl Steps {
    pub fn new(started: Instant, recorder: &Arc<Recorder>) -> Steps {
        Steps {
            started,
            recorder: recorder.clone(),
            mark: recorder.acked(),
            done: Vec::new(),
        }
    }

    pub fn step(&mut self, name: &str) {
        let now = self.recorder.acked();
        eprintln!(
            "{:>6.1}s {name}: {} writes acknowledged during the previous step",
            self.started.elapsed().as_secs_f64(),
            now - self.mark
        );
        self.done.push((name.to_string(), now - self.mark));
        self.mark = now;
    }

    /// The cluster kept serving: writes were acknowledged before every
    /// step.
    pub fn assert_each_acknowledged(&self) {
        for (name, count) in &self.done {
            assert!(
                *count > 0,
                "no write acknowledged before `{name}`: {:?}",
                self.done
            );
        }
    }
}
