//! Replacing a dead server of a multi-group cluster, on real processes:
//! three `concord-node --groups 1000` on loopback, clients writing and
//! reading keys of every group throughout; server 3 is SIGKILLed for
//! good and `concord-cli member replace 3 4 ADDR` moves every group to
//! an empty server 4 (started with `--join`). Every group must end on
//! voters {1, 2, 4}, no acknowledged write may be lost, and every
//! group's history (unknown outcomes included) must be linearizable by
//! the simulator's checker. The time the replace took is printed.
//!
//! Two variants: server 1 (leading many groups) is SIGKILLed during the
//! replace and restarted; the replace command itself is killed and run
//! again (it resumes from what the groups' configurations say). Apart,
//! on 200 groups without clients: the new server is SIGKILLed during
//! the replace, which must stop with an error naming it.
//!
//! ```text
//! cargo test -p concord-node --test multi_group_replace -- --nocapture
//! ```

#[path = "common/multi_cluster.rs"]
mod multi_cluster;
#[path = "common/processes.rs"]
mod processes;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use concord::multi::GroupId;
use concord_services::sharded_kv::ShardMap;
use concord_services::sharded_kv_client::{ShardedKvClient, ShardedKvError};
use concord_sim::history::{Op, Operation, Output};
use concord_tokio::multi::admin::{AdminAnswer, AdminRequest};
use concord_tokio::multi::routing_client::{RoutingClient, RoutingConfig};
use concord_tokio::multi::wire::GroupOp;
use processes::{cli_binary, free_addr, node_binary, spawn_node};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const CLUSTER: &str = "multi-replace";
/// Groups of the cluster: 1,000, or `CONCORD_REPLACE_GROUPS` (1 to
/// 100,000; the replace figures in benches/results use 10,000 too).
fn groups() -> u64 {
    std::env::var("CONCORD_REPLACE_GROUPS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000u64)
        .clamp(1, 100_000)
}
const CLIENTS: u64 = 4;

/// What else goes wrong during the replace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    /// Nothing.
    Plain,
    /// Server 1 is SIGKILLed during the replace, restarted 3 s later.
    LeaderKilled,
    /// The replace command is SIGKILLed during the replace and run again.
    CommandKilled,
    /// Server 3 is not killed: a live server is replaced (it leads groups
    /// that only it can show the command).
    OldAlive,
}

struct Processes {
    base: PathBuf,
    listen: BTreeMap<u64, String>,
    /// The cluster's group count (`--groups`).
    groups: u64,
    children: BTreeMap<u64, Child>,
    logs: Vec<PathBuf>,
}

impl Processes {
    /// Servers 1 to 5 of `groups` groups, none running yet, their data
    /// in a fresh directory named after `name`.
    fn new(name: &str, groups: u64) -> Processes {
        let base = std::env::temp_dir().join(format!(
            "concord-multi-replace-{}-{name}",
            std::process::id()
        ));
        std::fs::create_dir_all(&base).unwrap();
        Processes {
            base,
            listen: (1..=5).map(|id| (id, free_addr())).collect(),
            groups,
            children: BTreeMap::new(),
            logs: Vec::new(),
        }
    }

    /// Servers 1 to 3 know of each other only; server 4 (joining) of
    /// them and itself: it reaches them, and they learn its address from
    /// the catalog.
    fn peers(&self, id: u64) -> String {
        self.listen
            .iter()
            .filter(|(peer, _)| **peer <= 3 || **peer == id)
            .map(|(id, addr)| format!("{id}={addr}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn start(&mut self, id: u64, join: bool) {
        self.start_with(id, join, &[]);
    }

    fn start_with(&mut self, id: u64, join: bool, extra: &[&str]) {
        let log = self.base.join(format!("node-{id}-{}.log", self.logs.len()));
        let file = std::fs::File::create(&log).expect("create a log");
        let groups = self.groups.to_string();
        let mut command = Command::new(node_binary());
        command
            .args(["--id", &id.to_string(), "--listen", &self.listen[&id]])
            .args(["--peers", &self.peers(id), "--cluster-id", CLUSTER])
            .args(["--groups", &groups, "--worker-threads", "1"])
            .arg("--data-dir")
            .arg(self.base.join(format!("node-{id}")))
            .env("RUST_LOG", "warn");
        if join {
            command.arg("--join");
        }
        command.args(extra);
        self.children.insert(id, spawn_node(&mut command, file));
        self.logs.push(log);
    }

    fn sigkill(&mut self, id: u64) {
        let mut child = self.children.remove(&id).expect("node runs");
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
    }

    fn assert_running(&mut self) {
        for (id, child) in &mut self.children {
            if let Some(status) = child.try_wait().expect("try_wait") {
                panic!("node {id} exited: {status}");
            }
        }
    }

    /// `concord-cli member replace 3 4 ADDR OPTIONS`, its output (stdout
    /// and stderr) to a file.
    fn replace_command(&self, run: u32, options: &[&str]) -> (Child, PathBuf) {
        self.replace_command_via(run, &[1, 2, 4], options)
    }

    /// [`Processes::replace_command`] with `servers` as `--servers`.
    fn replace_command_via(&self, run: u32, servers: &[u64], options: &[&str]) -> (Child, PathBuf) {
        let servers: Vec<String> = servers.iter().map(|id| self.listen[id].clone()).collect();
        let out = self.base.join(format!("replace-{run}.out"));
        let file = std::fs::File::create(&out).unwrap();
        let err = file.try_clone().unwrap();
        let child = Command::new(cli_binary())
            .args(["--servers", &servers.join(","), "--cluster-id", CLUSTER])
            .args(["--groups", &self.groups.to_string(), "--timeout-ms", "2000"])
            .args(["member", "replace", "3", "4", &self.listen[&4]])
            .args(options)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .expect("run concord-cli");
        (child, out)
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for (_, mut child) in std::mem::take(&mut self.children) {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            for log in &self.logs {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                eprintln!("--- {}, last lines:", log.display());
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

struct Recorder {
    start: Instant,
    ops: Mutex<Vec<Operation>>,
    next_client: AtomicU64,
    acked_writes: AtomicU64,
    unknown_writes: AtomicU64,
    /// Each acknowledged put: when it ended and how long it took (µs
    /// since `start`).
    latencies: Mutex<Vec<(u64, u64)>>,
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
            let end = recorder.now();
            recorder.latencies.lock().unwrap().push((end, end - call));
            recorder.push(entry.completed(end, Output::Done));
            true
        }
        // Unanswered (its session kept, so applied at most once) or lost
        // without a session: the checker takes it as maybe applied.
        Err(e) if !e.definitely_not_applied() => {
            recorder.unknown_writes.fetch_add(1, Ordering::SeqCst);
            recorder.push(entry);
            *who = recorder.client_id();
            false
        }
        Err(ShardedKvError::Routing(_) | ShardedKvError::Session(_)) => {
            recorder.push(entry.failed(recorder.now()));
            false
        }
        Err(other) => panic!("put {key}: {other}"),
    }
}

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
            recorder.push(entry.completed(
                recorder.now(),
                Output::Value(multi_cluster::text(value.clone())),
            ));
            Some(value)
        }
        Err(ShardedKvError::Routing(_)) => None,
        Err(other) => panic!("get {key}: {other}"),
    }
}

/// Each group's voters and learners as its leader reports them, asked of
/// every server in `servers` (groups without a leader are missing).
async fn memberships(
    servers: &BTreeMap<u64, String>,
) -> BTreeMap<GroupId, (BTreeSet<u64>, BTreeSet<u64>, bool)> {
    let mut seen = BTreeMap::new();
    for (id, addr) in servers {
        let mut config = RoutingConfig::new(CLUSTER, [(*id, addr.clone())].into());
        config.attempts_max = 2;
        config.request_timeout = Duration::from_secs(2);
        let mut client = RoutingClient::new(config).unwrap();
        let request = GroupOp::Admin(AdminRequest::ReplaceView { old: 3, new: 4 });
        let Ok(bytes) = client.call(0, request).await else {
            continue;
        };
        let Ok(AdminAnswer::Views(views)) = AdminAnswer::decode(&bytes) else {
            panic!("a malformed answer");
        };
        for view in views {
            let m = view.membership;
            seen.insert(
                view.group,
                (m.voters.clone(), m.learners.clone(), m.is_joint()),
            );
        }
    }
    seen
}

/// Waits until every group of `groups` is seen led on `want` (no
/// learner, not joint) by `servers`; any group seen otherwise fails.
async fn wait_every_group_on(servers: &BTreeMap<u64, String>, groups: u64, want: &BTreeSet<u64>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen = memberships(servers).await;
        let wrong: Vec<_> = seen
            .iter()
            .filter(|(_, (voters, learners, joint))| {
                voters != want || !learners.is_empty() || *joint
            })
            .collect();
        assert!(wrong.is_empty(), "groups not on {want:?}: {wrong:?}");
        if seen.len() == groups as usize + 1 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {} groups seen led",
            seen.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the replace writing to `out` reports some of `groups`
/// groups done but not all (it is in the middle); how many.
async fn wait_partly_done(out: &PathBuf, groups: u64) -> usize {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let printed = std::fs::read_to_string(out).unwrap_or_default();
        let done = printed
            .lines()
            .filter_map(|line| line.split(": ").nth(1)?.split(' ').next()?.parse().ok())
            .max()
            .unwrap_or(0usize);
        if done > 0 {
            assert!(
                done < groups as usize + 1,
                "the replace ended before the fault: {printed}"
            );
            return done;
        }
        assert!(Instant::now() < deadline, "no progress: {printed}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `concord-cli --groups N ARGS` against `servers`: exit status, stdout,
/// stderr.
fn cli(servers: &BTreeMap<u64, String>, args: &[&str]) -> (i32, String, String) {
    cli_of(groups(), servers, args)
}

/// [`cli`] on a cluster of `groups` groups.
fn cli_of(groups: u64, servers: &BTreeMap<u64, String>, args: &[&str]) -> (i32, String, String) {
    let servers: Vec<String> = servers.values().cloned().collect();
    let output = Command::new(cli_binary())
        .args(["--servers", &servers.join(","), "--cluster-id", CLUSTER])
        .args(["--groups", &groups.to_string()])
        .args(args)
        .output()
        .expect("run concord-cli");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `concord-cli --groups N member ARGS`, run until it succeeds (a change
/// may be refused while the previous one settles, a promotion until the
/// learner caught up); its stdout.
fn cli_ok_within(servers: &BTreeMap<u64, String>, args: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, out, err) = cli(servers, args);
        if code == 0 {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "{args:?} kept failing ({code}): {out}{err}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Group `group`'s members as `member list --group` prints them.
fn members_of(servers: &BTreeMap<u64, String>, group: &str) -> String {
    cli_ok_within(servers, &["member", "list", "--group", group])
}

/// Group 7's members changed one at a time through the command line, as
/// an operator of one group would: leadership moved to 4, 4 removed, 4
/// added back as a learner, then promoted.
fn one_groups_members_changed(servers: &BTreeMap<u64, String>) {
    let out = cli_ok_within(servers, &["member", "transfer-leader", "4", "--group", "7"]);
    assert!(out.contains("group 7: node 4 leads now"), "{out}");
    // The group's own list names the new leader (once a heartbeat told
    // the member that answers).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = members_of(servers, "7");
        if out.contains(", leader 4,") {
            break;
        }
        assert!(Instant::now() < deadline, "group 7 not led by 4: {out}");
        std::thread::sleep(Duration::from_millis(250));
    }
    cli_ok_within(servers, &["member", "remove", "4", "--group", "7"]);
    let out = members_of(servers, "7");
    assert!(out.contains("voters: 1,2  learners: \n"), "{out}");
    let addr4 = &servers[&4];
    cli_ok_within(
        servers,
        &["member", "add-learner", "4", addr4, "--group", "7"],
    );
    let out = members_of(servers, "7");
    assert!(out.contains("voters: 1,2  learners: 4\n"), "{out}");
    cli_ok_within(servers, &["member", "promote", "4", "--group", "7"]);
    let out = members_of(servers, "7");
    assert!(out.contains("voters: 1,2,4  learners: \n"), "{out}");
}

/// Server 5 started as a witness (`--join --witness`) and added to group
/// 7 of `voters` with `member add-witness`: the group lists it as a
/// witness, and its other groups are left alone.
async fn add_a_witness_to_one_group(nodes: &mut Processes, voters: &[u64]) {
    nodes.start_with(5, true, &["--witness"]);
    let addr5 = nodes.listen[&5].clone();
    wait_answers(5, &addr5).await;
    let servers: BTreeMap<u64, String> = voters
        .iter()
        .map(|id| (*id, nodes.listen[id].clone()))
        .collect();
    cli_ok_within(
        &servers,
        &["member", "add-witness", "5", &addr5, "--group", "7"],
    );
    let out = members_of(&servers, "7");
    assert!(out.contains("voters: 1,4,5  learners: \n"), "{out}");
    assert!(out.contains("witnesses: 5\n"), "{out}");
    let out = members_of(&servers, "8");
    assert!(out.contains("voters: 1,4  learners: \n"), "{out}");
    assert!(!out.contains("witnesses"), "{out}");
}

/// One group's members, bad input, and draining a server, through the
/// command line after the replace.
fn operator_commands(servers: &BTreeMap<u64, String>) {
    let (code, out, err) = cli(servers, &["member", "list", "--group", "7"]);
    assert_eq!(code, 0, "member list --group 7: {err}");
    assert!(out.contains("voters: 1,2,4  learners: \n"), "{out}");
    let missing = (groups() + 1).to_string();
    let (code, _, err) = cli(servers, &["member", "list", "--group", &missing]);
    assert_eq!(code, 1, "a group that does not exist: {err}");
    assert!(err.contains("does not exist"), "{err}");
    let (code, _, err) = cli(servers, &["member", "list"]);
    assert_eq!(code, 1, "no --group: {err}");
    assert!(err.contains("--group G"), "{err}");
    let (code, _, err) = cli(servers, &["member", "promote", "3", "--group", "7"]);
    assert_eq!(code, 1, "promote a server that is not a member: {err}");
    assert!(err.contains("not a member"), "{err}");
    let unreachable = free_addr();
    let (code, _, err) = cli(servers, &["member", "replace", "2", "5", &unreachable]);
    assert_eq!(code, 1, "replace toward a server that does not run: {err}");
    assert!(err.contains("does not answer"), "{err}");
    one_groups_members_changed(servers);
    let (code, out, err) = cli(servers, &["member", "drain", "2"]);
    assert_eq!(code, 0, "drain 2: {out}{err}");
    assert!(
        out.trim_end().ends_with("drain 2: 0 groups led") || out.contains(": 0 groups led"),
        "{out}"
    );
    // Server 2 leaves every group (clients still writing): the groups go
    // on with servers 1 and 4, and server 2 drops them.
    let (code, out, err) = cli(servers, &["member", "remove-node", "2"]);
    assert_eq!(code, 0, "remove-node 2: {out}{err}");
    assert!(out.contains("server 2 is in no group any more"), "{out}");
    for group in ["0", "7", &groups().to_string()] {
        let (code, out, err) = cli(servers, &["member", "list", "--group", group]);
        assert_eq!(code, 0, "member list --group {group}: {err}");
        assert!(
            out.contains("voters: 1,4  learners: \n"),
            "group {group}: {out}"
        );
    }
}

/// Waits until server `id` answers an admin request (it listens).
async fn wait_answers(id: u64, addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut config = RoutingConfig::new(CLUSTER, [(id, addr.to_string())].into());
        config.attempts_max = 1;
        let mut client = RoutingClient::new(config).unwrap();
        let request = GroupOp::Admin(AdminRequest::Led { groups_max: 0 });
        if client.call(0, request).await.is_ok() {
            return;
        }
        assert!(Instant::now() < deadline, "server {id} does not answer");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn replace_a_dead_server(variant: Variant) {
    let seed: u64 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("{variant:?}: seed {seed}");
    let test_start = Instant::now();
    let mut nodes = Processes::new(&format!("{variant:?}-{seed}"), groups());
    let listen = nodes.listen.clone();
    for id in 1..=3 {
        nodes.start(id, false);
    }
    let map = ShardMap::new(groups()).unwrap();
    let keys = Arc::new(multi_cluster::keys_of_every_group(&map));
    let recorder = Arc::new(Recorder {
        start: Instant::now(),
        ops: Mutex::new(Vec::new()),
        next_client: AtomicU64::new(1),
        acked_writes: AtomicU64::new(0),
        unknown_writes: AtomicU64::new(0),
        latencies: Mutex::new(Vec::new()),
    });
    // Every group takes a first write.
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (keys, recorder, listen) = (keys.clone(), recorder.clone(), listen.clone());
        tasks.push(tokio::spawn(async move {
            let mut kv = multi_cluster::client(CLUSTER, groups(), &listen);
            let mut who = recorder.client_id();
            let deadline = Instant::now() + Duration::from_secs(120);
            for key in keys.iter().skip(c as usize).step_by(CLIENTS as usize) {
                let mut attempt = 0;
                while !put(&mut kv, &recorder, &mut who, key, format!("init-{attempt}")).await {
                    attempt += 1;
                    assert!(Instant::now() < deadline, "{key}: no first write");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    eprintln!("every group written once after {:?}", test_start.elapsed());

    // Clients run throughout.
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for c in 0..CLIENTS {
        let (keys, recorder, listen, stop) =
            (keys.clone(), recorder.clone(), listen.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (c + 1).wrapping_mul(0x9e37_79b9));
            let mut kv = multi_cluster::client(CLUSTER, groups(), &listen);
            let mut who = recorder.client_id();
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let key = &keys[rng.gen_range(0..keys.len())];
                if rng.gen_bool(0.6) {
                    n += 1;
                    put(&mut kv, &recorder, &mut who, key, format!("c{c}-{n}")).await;
                } else {
                    get(&mut kv, &recorder, who, key).await;
                }
            }
        }));
    }
    let clients_start = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let kill_at = Instant::now();
    if variant != Variant::OldAlive {
        nodes.sigkill(3);
    }
    nodes.start(4, true);
    wait_answers(4, &listen[&4]).await;
    let replace_start = Instant::now();
    let options = ["--groups-in-flight", "200"];
    let (mut command, out) = if variant == Variant::OldAlive {
        nodes.replace_command_via(1, &[1, 2, 3, 4], &options)
    } else {
        nodes.replace_command(1, &options)
    };
    match variant {
        Variant::Plain | Variant::OldAlive => {}
        Variant::LeaderKilled => {
            let done = wait_partly_done(&out, groups()).await;
            eprintln!("SIGKILL server 1 with {done} groups done");
            nodes.sigkill(1);
            tokio::time::sleep(Duration::from_secs(3)).await;
            nodes.start(1, false);
        }
        Variant::CommandKilled => {
            let done = wait_partly_done(&out, groups()).await;
            eprintln!("SIGKILL the replace command with {done} groups done");
            command.kill().unwrap();
            command.wait().unwrap();
            let printed = std::fs::read_to_string(&out).unwrap();
            eprintln!("replace command killed; it had printed:\n{printed}");
            // A second replace of server 3, by another server, is refused
            // while the first is under way, naming it, before anything is
            // recorded (server 5 does not even run).
            let servers: BTreeMap<u64, String> = [1, 2, 4]
                .iter()
                .map(|id| (*id, listen[id].clone()))
                .collect();
            let (code, out2, err) = cli(&servers, &["member", "replace", "3", "5", &free_addr()]);
            assert_eq!(code, 1, "a second replace of server 3: {out2}{err}");
            assert!(
                err.contains("server 3 is being replaced by server 4 already"),
                "{err}"
            );
            // The replace left half done is shown by `status`.
            let (code, status, err) = cli(&servers, &["status"]);
            assert_eq!(code, 0, "status: {status}{err}");
            assert!(
                status.contains("replace under way: server 3 -> server 4"),
                "{status}"
            );
            command = nodes.replace_command(2, &options).0;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(240);
    let status = loop {
        if let Some(status) = command.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the replace did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let replace_time = replace_start.elapsed();
    let last_out = nodes.base.join(match variant {
        Variant::CommandKilled => "replace-2.out",
        _ => "replace-1.out",
    });
    let printed = std::fs::read_to_string(&last_out).unwrap();
    eprintln!("{printed}");
    assert!(status.success(), "member replace failed: {printed}");
    eprintln!(
        "{variant:?}: replaced server 3 by server 4 in {} groups in {replace_time:?}",
        groups()
    );
    let p99 = |from: Duration, to: Duration| {
        let from = from.as_micros() as u64;
        let to = to.as_micros() as u64;
        let mut latencies: Vec<u64> = recorder
            .latencies
            .lock()
            .unwrap()
            .iter()
            .filter(|(end, _)| (from..to).contains(end))
            .map(|(_, latency)| *latency)
            .collect();
        latencies.sort_unstable();
        let at = (latencies.len() * 99 / 100).min(latencies.len().saturating_sub(1));
        (latencies.get(at).copied().unwrap_or(0), latencies.len())
    };
    let since_start = |at: Instant| at.duration_since(recorder.start);
    let (before, before_count) = p99(since_start(clients_start), since_start(kill_at));
    let (during, during_count) = p99(
        since_start(replace_start),
        since_start(replace_start) + replace_time,
    );
    eprintln!(
        "{variant:?}: client put p99 before the kill {:.1} ms ({before_count} puts), during the \
         replace {:.1} ms ({during_count} puts): {:.2}x",
        before as f64 / 1000.0,
        during as f64 / 1000.0,
        during as f64 / before.max(1) as f64
    );
    nodes.assert_running();

    // Every group on {1, 2, 4}.
    let survivors: BTreeMap<u64, String> = [1, 2, 4]
        .iter()
        .map(|id| (*id, listen[id].clone()))
        .collect();
    wait_every_group_on(&survivors, groups(), &[1, 2, 4].into()).await;

    if variant == Variant::Plain {
        operator_commands(&survivors);
        add_a_witness_to_one_group(&mut nodes, &[1, 4]).await;
    }

    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.await.unwrap();
    }
    // Every key read back; no acknowledged write lost.
    let reader = recorder.client_id();
    let mut kv = multi_cluster::client(CLUSTER, groups(), &survivors);
    let mut finals = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    for key in keys.iter() {
        loop {
            if let Some(value) = get(&mut kv, &recorder, reader, key).await {
                finals.insert(key.clone(), multi_cluster::text(value));
                break;
            }
            assert!(Instant::now() < deadline, "{key}: not readable");
        }
    }
    let history = std::mem::take(&mut *recorder.ops.lock().unwrap());
    let operations = multi_cluster::check_history(history, &finals, &map, seed);
    eprintln!(
        "{variant:?}: {operations} operations linearizable ({} writes acknowledged, {} unknown); \
         replace {replace_time:?}; whole test {:?}",
        recorder.acked_writes.load(Ordering::SeqCst),
        recorder.unknown_writes.load(Ordering::SeqCst),
        test_start.elapsed()
    );
}

/// Waits until `command` (writing to `out`) exits, at most `bound` (then
/// kills it and fails): its status and what it printed.
async fn wait_exit(command: &mut Child, out: &Path, bound: Duration) -> (ExitStatus, String) {
    let started = Instant::now();
    loop {
        if let Some(status) = command.try_wait().unwrap() {
            return (status, std::fs::read_to_string(out).unwrap());
        }
        if started.elapsed() > bound {
            // Not left running for the hour it may wait.
            let _ = command.kill();
            let _ = command.wait();
            let printed = std::fs::read_to_string(out).unwrap_or_default();
            panic!("the command still ran after {bound:?}: {printed}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A replace whose new server dies part-way: the command stops with an
/// error naming it once it has been silent for `--new-silence-max-secs`
/// (it used to wait out OPERATION_TIME_MAX, an hour, printing nothing),
/// `status` shows the replace still under way, and once the server is
/// back the same command finishes it.
async fn replace_toward_a_dying_server() {
    const GROUPS: u64 = 200;
    let test_start = Instant::now();
    let mut nodes = Processes::new("new-dies", GROUPS);
    let listen = nodes.listen.clone();
    let servers = |ids: &[u64]| -> BTreeMap<u64, String> {
        ids.iter().map(|id| (*id, listen[id].clone())).collect()
    };
    for id in 1..=3 {
        nodes.start(id, false);
    }
    wait_every_group_on(&servers(&[1, 2, 3]), GROUPS, &[1, 2, 3].into()).await;
    nodes.sigkill(3);
    nodes.start(4, true);
    wait_answers(4, &listen[&4]).await;
    // Few groups in flight: the replace is far from done when server 4
    // dies.
    let (mut command, out) = nodes.replace_command(
        1,
        &["--groups-in-flight", "10", "--new-silence-max-secs", "3"],
    );
    wait_partly_done(&out, GROUPS).await;
    // The catalog (group 0, first in line) is moved before server 4 dies:
    // were it left with 3 and 4 among its voters, both dead, the command
    // could stop on the catalog's silence first (assigning the groups
    // that start next) and not on server 4's.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen = memberships(&servers(&[1, 2, 4])).await;
        if seen.get(&0) == Some(&([1, 2, 4].into(), BTreeSet::new(), false)) {
            break;
        }
        assert!(Instant::now() < deadline, "group 0 not moved: {seen:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    nodes.sigkill(4);
    let killed = Instant::now();
    // Not a timing test: a bound on a hang.
    let (status, printed) = wait_exit(&mut command, &out, Duration::from_secs(60)).await;
    eprintln!(
        "the replace exited {status} {:?} after server 4 died:\n{printed}",
        killed.elapsed()
    );
    assert_eq!(status.code(), Some(1), "{printed}");
    let error = printed
        .lines()
        .find(|line| line.starts_with("concord-cli: "))
        .unwrap_or_else(|| panic!("no error printed: {printed}"));
    for said in [
        &format!("the new server 4 at {} has not answered for", listen[&4]),
        "--new-silence-max-secs 3",
        " groups done, ",
        "`concord-cli status` shows it under way",
        &format!("--join --id 4 --listen {}", listen[&4]),
        "run the same command again",
    ] {
        assert!(error.contains(said), "{said:?} not in {error}");
    }
    let (_, shown, err) = cli_of(GROUPS, &servers(&[1, 2, 4]), &["status"]);
    assert!(
        shown.contains("replace under way: server 3 -> server 4"),
        "{shown}{err}"
    );

    // As the error says: server 4 back, the same command again.
    nodes.start(4, true);
    wait_answers(4, &listen[&4]).await;
    let again = Instant::now();
    let (mut command, out) = nodes.replace_command(
        2,
        &["--groups-in-flight", "10", "--new-silence-max-secs", "3"],
    );
    let (status, printed) = wait_exit(&mut command, &out, Duration::from_secs(120)).await;
    assert!(status.success(), "the replace run again failed: {printed}");
    wait_every_group_on(&servers(&[1, 2, 4]), GROUPS, &[1, 2, 4].into()).await;
    // Each server shows its own copy of the catalog: one may lag.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, shown, err) = cli_of(GROUPS, &servers(&[1, 2, 4]), &["status"]);
        if !shown.contains("replace under way") {
            break;
        }
        assert!(Instant::now() < deadline, "{shown}{err}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "finished when run again in {:?}; whole test {:?}",
        again.elapsed(),
        test_start.elapsed()
    );
}

/// The tests run one at a time: each runs four servers of up to 1,000
/// groups, and the machine they run on may have two cores.
static SERIAL: Mutex<()> = Mutex::new(());

fn serially(test: impl std::future::Future<Output = ()>) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(test);
}

fn run(variant: Variant) {
    serially(replace_a_dead_server(variant));
}

#[test]
fn a_dead_server_of_a_thousand_groups_is_replaced() {
    run(Variant::Plain);
}

#[test]
fn the_replace_survives_the_death_of_a_leading_server() {
    run(Variant::LeaderKilled);
}

#[test]
fn a_killed_replace_command_resumes_when_run_again() {
    run(Variant::CommandKilled);
}

/// A live server (it leads some groups, which only it can show) is
/// replaced: the command asks it too while it answers.
#[test]
fn a_live_server_is_replaced() {
    run(Variant::OldAlive);
}

#[test]
fn a_replace_whose_new_server_dies_exits_naming_it() {
    serially(replace_toward_a_dying_server());
}
