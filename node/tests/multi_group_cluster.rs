//! Three real `concord-node --groups 1000` processes on loopback, the
//! sharded key-value store under faults: a SIGKILL and restart, a network
//! partition, and a SIGSTOP/SIGCONT pause, while concurrent clients write
//! and read keys of every group. At the end every key is read back, no
//! acknowledged write is lost, and every group's history (each key's
//! puts and gets, unknown outcomes included) is checked linearizable by
//! the simulator's checker.
//!
//! The partition needs no root: every peer connection goes through a
//! proxy of this test (one per direction of each pair of nodes: node i
//! dials node j at the address of proxy i→j). Cutting a node closes every
//! proxied connection to and from it and refuses new ones, which is what
//! a node sees of a partition on TCP; clients still reach every node
//! directly, so they also talk to the cut-off minority. (The nftables
//! partitions of `net_chaos.rs` need root and network namespaces; this
//! one runs everywhere, so the test asserts everywhere.)
//!
//! ```text
//! cargo test -p concord-node --test multi_group_cluster -- --nocapture
//! ```
//!
//! `CONCORD_MULTI_SEED` sets the workload's seed (default: from the
//! clock; printed, and printed again on failure).

#[path = "common/processes.rs"]
mod processes;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use concord::multi::GroupId;
use concord::tokio::multi::routing_client::{RoutingConfig, RoutingError};
use concord_services::sharded_kv::ShardMap;
use concord_services::sharded_kv_client::{ShardedKvClient, ShardedKvError};
use concord_sim::history::{Op, Operation, Output};
use concord_sim::linearizability::{check_history_with, CheckConfig};
use processes::{free_addr, node_binary, spawn_node};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::watch;

const CLUSTER: &str = "multi-chaos";
const GROUPS: u64 = 1_000;
const NODES: [u64; 3] = [1, 2, 3];
/// Concurrent clients of the fault phase.
const CLIENTS: u64 = 8;
/// Keys most operations of the fault phase go to (so some keys see
/// concurrent writers); the rest pick any key.
const HOT_KEYS: usize = 16;

/// The node processes. Dropping it SIGKILLs them; the directory is kept
/// (and the logs' tails printed) when the test failed.
struct Processes {
    base: PathBuf,
    listen: BTreeMap<u64, String>,
    /// Each node's `--peers`: itself at its listen address, every other
    /// node at the proxy from it to that node.
    peers: BTreeMap<u64, String>,
    children: BTreeMap<u64, Child>,
    logs: BTreeMap<u64, PathBuf>,
    starts: u32,
}

impl Processes {
    fn start(&mut self, id: u64) {
        self.starts += 1;
        let log = self.base.join(format!("node-{id}-{}.log", self.starts));
        let file = std::fs::File::create(&log).expect("create a log");
        let mut command = Command::new(node_binary());
        command
            .args(["--id", &id.to_string(), "--listen", &self.listen[&id]])
            .args(["--peers", &self.peers[&id], "--cluster-id", CLUSTER])
            .args(["--groups", &GROUPS.to_string(), "--worker-threads", "1"])
            .arg("--data-dir")
            .arg(self.base.join(format!("node-{id}")))
            .env("RUST_LOG", "warn");
        self.children.insert(id, spawn_node(&mut command, file));
        self.logs.insert(id, log);
    }

    fn sigkill(&mut self, id: u64) {
        let mut child = self.children.remove(&id).expect("node runs");
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
    }

    fn signal(&self, id: u64, signal: i32) {
        let pid = self.children[&id].id();
        // SAFETY: kill(2) on a child we own and have not reaped.
        assert_eq!(unsafe { libc::kill(pid as libc::pid_t, signal) }, 0);
    }

    fn assert_running(&mut self) {
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
struct Network {
    links: Vec<Link>,
}

impl Network {
    /// Cuts node `id` off from the others, both ways.
    fn isolate(&self, id: u64) {
        for link in self.links.iter().filter(|l| l.from == id || l.to == id) {
            link.blocked.store(true, Ordering::SeqCst);
            link.cut.send_modify(|n| *n += 1);
        }
    }

    fn heal(&self) {
        for link in &self.links {
            link.blocked.store(false, Ordering::SeqCst);
        }
    }
}

/// The recorded history, with the time origin.
struct Recorder {
    start: Instant,
    ops: Mutex<Vec<Operation>>,
    next_client: AtomicU64,
    acked_writes: AtomicU64,
    unknown_writes: AtomicU64,
}

impl Recorder {
    fn now(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    fn client_id(&self) -> u64 {
        self.next_client.fetch_add(1, Ordering::SeqCst)
    }

    fn push(&self, op: Operation) {
        self.ops.lock().unwrap().push(op);
    }
}

fn client(servers: &BTreeMap<u64, String>) -> ShardedKvClient {
    let mut config = RoutingConfig::new(CLUSTER, servers.clone());
    config.request_timeout = Duration::from_secs(2);
    config.connect_timeout = Duration::from_millis(500);
    config.attempts_max = 16;
    ShardedKvClient::new(ShardMap::new(GROUPS).unwrap(), config).unwrap()
}

fn text(value: Option<Bytes>) -> String {
    value
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_default()
}

/// Whether `error` leaves a write's outcome unknown.
fn unknown(error: &ShardedKvError) -> bool {
    !error.definitely_not_applied()
}

/// One put, recorded; whether it was acknowledged. A put with an unknown
/// outcome ends history client `*who` (it stays pending forever), so the
/// caller continues as a new one.
async fn put(
    kv: &mut ShardedKvClient,
    recorder: &Recorder,
    who: &mut u64,
    key: &str,
    value: String,
) -> bool {
    let op = Op::Put {
        value: value.clone(),
    };
    let call = recorder.now();
    let result = kv.put(key.to_string(), value).await;
    let entry = Operation::new(*who, key, op, call);
    match result {
        Ok(()) => {
            recorder.acked_writes.fetch_add(1, Ordering::SeqCst);
            recorder.push(entry.completed(recorder.now(), Output::Done));
            true
        }
        Err(e) if unknown(&e) => {
            recorder.unknown_writes.fetch_add(1, Ordering::SeqCst);
            recorder.push(entry);
            *who = recorder.client_id();
            false
        }
        Err(ShardedKvError::Routing(RoutingError::Exhausted { .. })) => {
            recorder.push(entry.failed(recorder.now()));
            false
        }
        Err(other) => panic!("put {key}: {other}"),
    }
}

/// One get, recorded; the value if answered.
async fn get(
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
            recorder.push(entry.completed(recorder.now(), Output::Value(text(value.clone()))));
            Some(value)
        }
        Err(ShardedKvError::Routing(_)) => None,
        Err(other) => panic!("get {key}: {other}"),
    }
}

/// One key of each group.
fn keys_of_every_group(map: &ShardMap) -> Vec<String> {
    map.group_ids()
        .map(|group| {
            (0..)
                .map(|i| format!("g{group}-{i}"))
                .find(|key| map.group_of(key.as_bytes()) == group)
                .expect("some key hashes to every group")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_groups_survive_kill_partition_and_pause() {
    let seed: u64 = std::env::var("CONCORD_MULTI_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("CONCORD_MULTI_SEED={seed}");
    let test_start = Instant::now();
    let base =
        std::env::temp_dir().join(format!("concord-multi-chaos-{}-{seed}", std::process::id()));
    std::fs::create_dir_all(&base).unwrap();

    // Listen addresses, and one proxy per direction of each pair.
    let listen: BTreeMap<u64, String> = NODES.iter().map(|id| (*id, free_addr())).collect();
    let mut links = Vec::new();
    let mut peers: BTreeMap<u64, Vec<String>> = NODES
        .iter()
        .map(|id| (*id, vec![format!("{id}={}", listen[id])]))
        .collect();
    for from in NODES {
        for to in NODES.into_iter().filter(|to| *to != from) {
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
    let network = Network { links };
    let mut nodes = Processes {
        base,
        listen: listen.clone(),
        peers: peers.into_iter().map(|(id, p)| (id, p.join(","))).collect(),
        children: BTreeMap::new(),
        logs: BTreeMap::new(),
        starts: 0,
    };
    for id in NODES {
        nodes.start(id);
    }

    let map = ShardMap::new(GROUPS).unwrap();
    let keys = Arc::new(keys_of_every_group(&map));
    let recorder = Arc::new(Recorder {
        start: Instant::now(),
        ops: Mutex::new(Vec::new()),
        next_client: AtomicU64::new(1),
        acked_writes: AtomicU64::new(0),
        unknown_writes: AtomicU64::new(0),
    });

    // Every group takes a first write (so every group has a leader),
    // from CLIENTS clients each writing a share of the keys.
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (keys, recorder, listen) = (keys.clone(), recorder.clone(), listen.clone());
        tasks.push(tokio::spawn(async move {
            let mut kv = client(&listen);
            let mut who = recorder.client_id();
            let deadline = Instant::now() + Duration::from_secs(120);
            for key in keys.iter().skip(c as usize).step_by(CLIENTS as usize) {
                let mut attempt = 0;
                while !put(&mut kv, &recorder, &mut who, key, format!("init-{attempt}")).await {
                    attempt += 1;
                    assert!(
                        Instant::now() < deadline,
                        "{key}: no first write acknowledged"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let warm_up = test_start.elapsed();
    eprintln!(
        "all {GROUPS} groups written once after {warm_up:?} ({} acknowledged writes)",
        recorder.acked_writes.load(Ordering::SeqCst)
    );
    nodes.assert_running();

    // The fault phase: clients run while the schedule breaks things.
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for c in 0..CLIENTS {
        let (keys, recorder, listen, stop) =
            (keys.clone(), recorder.clone(), listen.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (c + 1).wrapping_mul(0x9e37_79b9));
            let mut kv = client(&listen);
            let mut who = recorder.client_id();
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let key = if rng.gen_bool(0.5) {
                    &keys[rng.gen_range(0..HOT_KEYS)]
                } else {
                    &keys[rng.gen_range(0..keys.len())]
                };
                if rng.gen_bool(0.6) {
                    n += 1;
                    put(&mut kv, &recorder, &mut who, key, format!("c{c}-{n}")).await;
                } else {
                    get(&mut kv, &recorder, who, key).await;
                }
            }
        }));
    }
    let acked = || recorder.acked_writes.load(Ordering::SeqCst);
    let mut phases = Vec::new();
    let mut phase = |name: &str, from: u64| {
        let now = acked();
        eprintln!(
            "{:>6.1}s {name}: {} writes acknowledged during the previous step",
            test_start.elapsed().as_secs_f64(),
            now - from
        );
        phases.push((name.to_string(), now - from));
        now
    };
    let sleep = |secs: u64| tokio::time::sleep(Duration::from_secs(secs));
    let mut mark = acked();
    sleep(3).await;
    mark = phase("SIGKILL node 3", mark);
    nodes.sigkill(3);
    sleep(5).await;
    mark = phase("restart node 3", mark);
    nodes.start(3);
    sleep(5).await;
    mark = phase("partition: node 1 cut off", mark);
    network.isolate(1);
    sleep(7).await;
    mark = phase("heal", mark);
    network.heal();
    sleep(4).await;
    mark = phase("SIGSTOP node 2", mark);
    nodes.signal(2, libc::SIGSTOP);
    sleep(4).await;
    mark = phase("SIGCONT node 2", mark);
    nodes.signal(2, libc::SIGCONT);
    sleep(4).await;
    phase("stop the clients", mark);
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.await.unwrap();
    }
    nodes.assert_running();
    // With one node of three out, the other two keep serving: writes are
    // acknowledged while node 3 is dead, node 1 is cut off and node 2 is
    // paused, and after each comes back.
    for (name, count) in &phases {
        assert!(
            *count > 0,
            "no write acknowledged before `{name}`: {phases:?}"
        );
    }

    // Every key read back: every group answers, and no acknowledged
    // write is lost.
    let reader = recorder.client_id();
    let mut kv = client(&listen);
    let mut finals = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    for key in keys.iter() {
        loop {
            if let Some(value) = get(&mut kv, &recorder, reader, key).await {
                finals.insert(key.clone(), text(value));
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{key}: not readable after the faults"
            );
        }
    }
    let history = std::mem::take(&mut *recorder.ops.lock().unwrap());
    let mut written: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut acked_keys = BTreeSet::new();
    for op in &history {
        if let Op::Put { value } = &op.op {
            written.entry(&op.key).or_default().insert(value);
            if op.ret.is_some() && matches!(op.outcome, concord_sim::history::Outcome::Ok(_)) {
                acked_keys.insert(op.key.as_str());
            }
        }
    }
    assert_eq!(
        acked_keys.len(),
        keys.len(),
        "every key has an acknowledged write"
    );
    for key in &acked_keys {
        let value = finals[*key].as_str();
        assert!(
            written[key].contains(value),
            "seed {seed}: {key} reads {value:?}, which no put wrote: an acknowledged write was lost"
        );
    }

    // Every group's history is linearizable.
    let mut by_group: BTreeMap<GroupId, Vec<Operation>> = BTreeMap::new();
    for op in history {
        by_group
            .entry(map.group_of(op.key.as_bytes()))
            .or_default()
            .push(op);
    }
    assert_eq!(by_group.len(), GROUPS as usize);
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
    eprintln!(
        "{operations} operations on {GROUPS} groups linearizable ({} writes acknowledged, {} \
         unknown); whole test {:?}",
        acked(),
        recorder.unknown_writes.load(Ordering::SeqCst),
        test_start.elapsed()
    );
}

#[path = "common/doc_commands.rs"]
mod doc_commands;

/// Kills the processes it holds when dropped.
struct Children(Vec<Child>, PathBuf);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("logs kept in {}", self.1.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.1);
        }
    }
}

/// The `sh` block of docs/multi-group.md that serves the sharded store,
/// run as written: its servers on free ports with temporary data
/// directories, each client command checked against what the doc says.
#[test]
fn the_documented_commands_run() {
    let doc = "docs/multi-group.md";
    let text = std::fs::read_to_string(doc_commands::root().join(doc)).unwrap();
    let (start, body) = doc_commands::blocks(&text, "sh")
        .into_iter()
        .find(|(_, body)| body.contains("--groups"))
        .expect("the doc has a block serving --groups");
    let commands = doc_commands::of_block(doc, start, &body);
    let base = std::env::temp_dir().join(format!("concord-multi-doc-{}", std::process::id()));
    std::fs::create_dir_all(&base).unwrap();
    let mut children = Children(Vec::new(), base.clone());
    // The doc's ports and directories, made this run's own.
    let ports: Vec<(String, String)> = (1..=3)
        .map(|n| (format!("127.0.0.1:710{n}"), free_addr()))
        .collect();
    let localize = |word: &String| -> String {
        if word.starts_with("shard-") {
            return base.join(word).display().to_string();
        }
        ports
            .iter()
            .fold(word.clone(), |word, (from, to)| word.replace(from, to))
    };
    // What each client command must answer: exit status, and standard
    // output (or a piece of standard error).
    let expected: &[(i32, &str)] = &[
        (0, "ok\n"),
        (0, "hello\n"),
        (0, "ok\n"),
        (0, "{user42}.name=Ada\n{user42}.mail=ada@example.org\n"),
        (2, "no cross-group transactions"),
    ];
    let mut clients = 0;
    for command in &commands {
        match &command.program {
            doc_commands::Program::Node(args) => {
                let args: Vec<String> = args.iter().map(localize).collect();
                let log =
                    std::fs::File::create(base.join(format!("node-{}.log", children.0.len())))
                        .unwrap();
                children
                    .0
                    .push(spawn_node(Command::new(node_binary()).args(&args), log));
            }
            doc_commands::Program::Cli(args) => {
                let args: Vec<String> = args.iter().map(localize).collect();
                let (status, want) = expected.get(clients).unwrap_or_else(|| {
                    panic!("{}: a command this test does not expect", command.place)
                });
                clients += 1;
                // The first waits for the groups to elect.
                let deadline = Instant::now() + Duration::from_secs(90);
                let output = loop {
                    let output = Command::new(env!("CARGO_BIN_EXE_concord-cli"))
                        .args(&args)
                        .output()
                        .expect("run concord-cli");
                    if output.status.code() == Some(*status) || Instant::now() > deadline {
                        break output;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                };
                let (stdout, stderr) = (
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr),
                );
                assert_eq!(
                    output.status.code(),
                    Some(*status),
                    "{}: {}\nstdout: {stdout}\nstderr: {stderr}",
                    command.place,
                    command.text
                );
                if *status == 0 {
                    assert_eq!(stdout, *want, "{}: {}", command.place, command.text);
                } else {
                    assert!(stderr.contains(want), "{}: {stderr}", command.place);
                }
            }
            other => panic!("{}: unexpected {other:?}", command.place),
        }
    }
    assert_eq!(children.0.len(), 3, "the block starts three servers");
    assert_eq!(
        clients,
        expected.len(),
        "every expected command is in the doc"
    );
}
