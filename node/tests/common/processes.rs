//! Real `concord-node` processes for the integration tests that run a
//! cluster for real (`real_cluster.rs` on loopback, `net_chaos.rs` in
//! network namespaces): start, SIGKILL, SIGSTOP/SIGCONT, SIGTERM, a data
//! directory per run, and the nodes' logs dumped when a test panics.
//!
//! Included with `#[path = "common/processes.rs"] mod processes;`. It
//! lives in the `concord-node` package because `CARGO_BIN_EXE_*` names
//! only the binaries of the package a test belongs to.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use concord_services::KvClient;
use concord_tokio::client::ClientConfig;
use concord_tokio::tls::{TlsConfig, TlsPaths, TlsRole};
use concord_tokio::wal;

/// The `concord-node` binary the tests run: this package's, or the one
/// `CONCORD_TEST_NODE_BIN` names (to run a suite against another build,
/// such as the commit before a fix, and see its tests fail there).
pub fn node_binary() -> String {
    std::env::var("CONCORD_TEST_NODE_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_concord-node").to_string())
}

/// The `concord-cli` binary the tests run (`CONCORD_TEST_CLI_BIN`
/// overrides it, as [`node_binary`]).
pub fn cli_binary() -> String {
    std::env::var("CONCORD_TEST_CLI_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_concord-cli").to_string())
}

/// A new, empty directory under the system's temporary directory, named
/// after `label`, this process and a count of the directories it made.
pub fn fresh_dir(label: &str) -> PathBuf {
    static MADE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("concord-{label}-{}-{n}", std::process::id()));
    // A left-over of an earlier process that had this pid.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a test directory");
    dir
}

/// A directory of [`fresh_dir`], removed on drop unless the test is
/// failing: then it is kept (the nodes' logs are in it) and its path
/// printed.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(label: &str) -> Scratch {
        Scratch(fresh_dir(label))
    }

    /// Writes `text` to the file `name` in it; the file's path.
    pub fn file(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write a file");
        path.to_string_lossy().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "kept {} (the failing test's nodes' data and logs)",
                self.0.display()
            );
            return;
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A current-thread runtime for a test's client calls.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Runs `command` (a `concord-cli` call) to its end: exit code (-1 when
/// killed by a signal), standard output, standard error.
pub fn output_of(command: &mut Command) -> (i32, String, String) {
    let output = command.output().expect("run concord-cli");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The node processes of one cluster. Dropping it SIGKILLs every process
/// still running; the data directory is removed unless the thread is
/// panicking, in which case the last lines of every node's log are printed
/// and the directory is kept for inspection.
pub struct NodeProcesses {
    /// Data directories and logs of this run.
    pub base: PathBuf,
    pub cluster_id: String,
    /// Listen address of every node the cluster was born with (what
    /// `--peers` names).
    pub addrs: BTreeMap<u64, String>,
    /// Listen address of every node added at runtime: started with
    /// `--join` and `--peers` naming the birth nodes only.
    pub joining: BTreeMap<u64, String>,
    /// Per node, a command prefix the node is started under (for example
    /// `ip netns exec <ns>`); empty: started directly.
    launchers: BTreeMap<u64, Vec<String>>,
    children: BTreeMap<u64, Child>,
    /// The log file of each node's latest start.
    logs: BTreeMap<u64, PathBuf>,
    starts: u32,
    /// Mutual TLS: a directory with `ca.pem`, `node-<id>.pem`/`.key` and
    /// `client.pem`/`.key` (see `certs.rs`); `None`: plaintext.
    tls_dir: Option<PathBuf>,
}

impl NodeProcesses {
    /// A cluster of the nodes in `addrs`, with a fresh data directory under
    /// the system's temporary directory named after `label` and the pid.
    pub fn new(label: &str, cluster_id: &str, addrs: BTreeMap<u64, String>) -> NodeProcesses {
        let base = fresh_dir(label);
        NodeProcesses {
            base,
            cluster_id: cluster_id.to_string(),
            addrs,
            joining: BTreeMap::new(),
            launchers: BTreeMap::new(),
            children: BTreeMap::new(),
            logs: BTreeMap::new(),
            starts: 0,
            tls_dir: None,
        }
    }

    /// Three nodes on free loopback ports ([`loopback_listener`]).
    pub fn on_loopback(label: &str, cluster_id: &str) -> NodeProcesses {
        NodeProcesses::on_loopback_n(label, cluster_id, 3)
    }

    /// `nodes` nodes on free loopback ports ([`loopback_listener`]).
    pub fn on_loopback_n(label: &str, cluster_id: &str, nodes: u64) -> NodeProcesses {
        let listeners: Vec<_> = (0..nodes).map(|_| loopback_listener()).collect();
        let addrs = (1..=nodes)
            .map(|id| {
                let addr = listeners[id as usize - 1].local_addr().expect("local addr");
                (id, addr.to_string())
            })
            .collect();
        drop(listeners);
        NodeProcesses::new(label, cluster_id, addrs)
    }

    /// Reserves a loopback address for a node `id` to be added at runtime
    /// (started with `--join`); returns it.
    pub fn add_joining(&mut self, id: u64) -> String {
        let listener = loopback_listener();
        let addr = listener.local_addr().expect("local addr").to_string();
        drop(listener);
        self.joining.insert(id, addr.clone());
        addr
    }

    /// Node `id`'s listen address.
    pub fn addr(&self, id: u64) -> String {
        self.addrs
            .get(&id)
            .or_else(|| self.joining.get(&id))
            .expect("a node of this cluster")
            .clone()
    }

    /// Starts node `id` under `prefix` from now on (`ip netns exec <ns>`).
    pub fn set_launcher(&mut self, id: u64, prefix: Vec<String>) {
        self.launchers.insert(id, prefix);
    }

    pub fn ids(&self) -> Vec<u64> {
        self.addrs.keys().copied().collect()
    }

    pub fn peers_arg(&self) -> String {
        self.addrs
            .iter()
            .map(|(id, a)| format!("{id}={a}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn servers(&self) -> Vec<String> {
        self.addrs.values().cloned().collect()
    }

    pub fn is_running(&self, id: u64) -> bool {
        self.children.contains_key(&id)
    }

    /// Runs every node and client with mutual TLS, from the certificates
    /// in `dir` (`ca.pem`, `node-<id>.pem`/`.key`, `client.pem`/`.key`).
    pub fn use_tls(&mut self, dir: PathBuf) {
        self.tls_dir = Some(dir);
    }

    /// The `--tls-*` flags of node `id` (none without TLS).
    fn tls_args(&self, id: u64) -> Vec<std::ffi::OsString> {
        let Some(dir) = &self.tls_dir else {
            return Vec::new();
        };
        vec![
            "--tls-ca".into(),
            dir.join("ca.pem").into(),
            "--tls-cert".into(),
            dir.join(format!("node-{id}.pem")).into(),
            "--tls-key".into(),
            dir.join(format!("node-{id}.key")).into(),
        ]
    }

    /// Starts node `id` (its log goes to `node-<id>-<n>.log` in `base`).
    pub fn start(&mut self, id: u64) {
        self.start_with(id, &[]);
    }

    /// Starts every node the cluster was born with.
    pub fn start_all(&mut self) {
        self.start_all_with(&[]);
    }

    /// Starts every node the cluster was born with, with extra
    /// command-line flags.
    pub fn start_all_with(&mut self, extra: &[&str]) {
        for id in self.ids() {
            self.start_with(id, extra);
        }
    }

    /// Node `id`'s data directory.
    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.base.join(format!("node-{id}"))
    }

    /// Starts node `id` with extra command-line flags.
    pub fn start_with(&mut self, id: u64, extra: &[&str]) {
        let peers = self.peers_arg();
        self.start_with_peers(id, &peers, extra);
    }

    /// Starts node `id` with `peers` as its `--peers` (`id=host:port,...`)
    /// instead of the nodes the cluster was born with, and extra flags;
    /// `--join` if it was added with [`add_joining`](Self::add_joining).
    pub fn start_with_peers(&mut self, id: u64, peers: &str, extra: &[&str]) {
        assert!(!self.children.contains_key(&id), "node {id} already runs");
        self.starts += 1;
        let log_path = self.base.join(format!("node-{id}-{}.log", self.starts));
        let log = std::fs::File::create(&log_path).expect("create a node log");
        self.logs.insert(id, log_path);
        let binary = node_binary();
        let mut command = match self.launchers.get(&id) {
            Some(prefix) if !prefix.is_empty() => {
                let mut command = Command::new(&prefix[0]);
                command.args(&prefix[1..]).arg(&binary);
                command
            }
            _ => Command::new(&binary),
        };
        let command = command
            .args([
                "--id",
                &id.to_string(),
                "--listen",
                &self.addr(id),
                "--peers",
                peers,
            ])
            .args(if self.joining.contains_key(&id) {
                &["--join"][..]
            } else {
                &[]
            })
            .arg("--data-dir")
            .arg(self.data_dir(id))
            .args(["--cluster-id", &self.cluster_id])
            .args(self.tls_args(id))
            .args(extra)
            .env("RUST_LOG", "info");
        self.children.insert(id, spawn_node(command, log));
    }

    /// Waits up to `timeout` for node `id` to exit on its own; its exit
    /// status if it did.
    pub fn wait_exit(&mut self, id: u64, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.children.get_mut(&id).expect("node runs");
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.children.remove(&id);
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether node `id` was started and has not exited (reaps it if it
    /// has).
    pub fn still_runs(&mut self, id: u64) -> bool {
        match self.children.get_mut(&id) {
            Some(child) => child.try_wait().expect("try_wait").is_none(),
            None => false,
        }
    }

    /// What node `id` logged since its latest start.
    pub fn log_text(&self, id: u64) -> String {
        self.logs
            .get(&id)
            .and_then(|path| std::fs::read_to_string(path).ok())
            .unwrap_or_default()
    }

    /// The pid of node `id`'s process, if it runs.
    pub fn pid(&self, id: u64) -> Option<u32> {
        self.children.get(&id).map(|c| c.id())
    }

    /// SIGKILLs node `id` and reaps it.
    pub fn sigkill(&mut self, id: u64) {
        let mut child = self.children.remove(&id).expect("node runs");
        child.kill().expect("SIGKILL"); // SIGKILL on unix
        child.wait().expect("reap");
    }

    /// Sends `signal` (e.g. `libc::SIGSTOP`) to node `id`.
    pub fn signal(&self, id: u64, signal: i32) {
        let pid = self.pid(id).expect("node runs");
        // SAFETY: kill(2) on a child we own and have not reaped.
        let rc = unsafe { libc::kill(pid as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal}) failed");
    }

    /// SIGTERMs every node and waits (bounded) for it to exit; SIGKILLs
    /// those that do not.
    pub fn sigterm_all(&mut self) {
        for (_, mut child) in std::mem::take(&mut self.children) {
            // SAFETY: kill(2) on a child we own and have not reaped. A
            // stopped process is continued so it can act on the SIGTERM.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
                libc::kill(child.id() as libc::pid_t, libc::SIGCONT);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if child.try_wait().expect("try_wait").is_some() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// SIGKILLs every node that runs.
    pub fn sigkill_all(&mut self) {
        for (_, mut child) in std::mem::take(&mut self.children) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Prints the last lines of every node log to stderr.
    pub fn dump_logs(&self) {
        let Ok(dir) = std::fs::read_dir(&self.base) else {
            return;
        };
        let mut paths: Vec<PathBuf> = dir
            .flatten()
            .map(|item| item.path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        paths.sort();
        for path in paths {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            eprintln!("==== {} (last lines) ====", path.display());
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }

    /// A client of this cluster's key-value store with patient retries.
    pub fn client(&self) -> KvClient {
        self.client_at(self.servers())
    }

    /// A client with patient retries that knows only `servers` (in that
    /// order: status calls name a server by its place in the list).
    pub fn client_at(&self, servers: Vec<String>) -> KvClient {
        let mut config = self.client_config(servers, Duration::from_millis(1500));
        config.attempts_max = 100;
        config.retry_backoff = Duration::from_millis(50);
        KvClient::new(config)
    }

    /// A client whose every attempt gives up after `timeout` (for status
    /// probes).
    pub fn client_with_timeout(&self, timeout: Duration) -> KvClient {
        KvClient::new(self.client_config(self.servers(), timeout))
    }

    fn client_config(&self, servers: Vec<String>, timeout: Duration) -> ClientConfig {
        let mut config = ClientConfig::new(servers, self.cluster_id.clone());
        config.request_timeout = timeout;
        if let Some(dir) = &self.tls_dir {
            let paths = TlsPaths {
                ca: dir.join("ca.pem"),
                cert: dir.join("client.pem"),
                key: dir.join("client.key"),
            };
            let tls = TlsConfig::load(&paths, &self.cluster_id, TlsRole::Client)
                .expect("load the client's TLS material");
            config.tls = Some(std::sync::Arc::new(tls));
        }
        config
    }
}

impl Drop for NodeProcesses {
    fn drop(&mut self) {
        self.sigkill_all();
        if std::thread::panicking() {
            self.dump_logs();
            eprintln!("kept the data and logs in {}", self.base.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.base);
        }
    }
}

/// Spawns `command` (a node, or a launcher of one) with no input, its
/// standard output discarded and its standard error to `log`. It dies with
/// the thread that started it (the test's thread), so a test process
/// killed before its guards ran leaves no node behind; the setting
/// survives the exec of `ip netns exec` and of the node.
pub fn spawn_node(command: &mut Command, log: std::fs::File) -> Child {
    // SAFETY: the closure runs in the forked child before exec and only
    // calls prctl(2), which is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn concord-node")
}

/// A loopback address free when asked (the kernel's pick).
pub fn free_addr() -> String {
    let listener = loopback_listener();
    listener.local_addr().expect("local addr").to_string()
}

/// A listener on a loopback port below the kernel's ephemeral range
/// (`/proc/sys/net/ipv4/ip_local_port_range`), for an address a server
/// started later will listen on. A port the kernel hands out for
/// `127.0.0.1:0` comes from the ephemeral range, and once released it can
/// become the source port of any outgoing connection (a client's, a
/// peer's) before the server that was meant to take it starts: seen in
/// CI as "Address already in use". Falls back to `127.0.0.1:0` when that
/// range leaves no room below it.
pub fn loopback_listener() -> std::net::TcpListener {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    const LOW_PORT: u64 = 10_000;
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0);
    if ephemeral_low > LOW_PORT + 1_000 {
        let span = ephemeral_low - LOW_PORT;
        // Processes of one test run start from far-apart places.
        let start = u64::from(std::process::id()).wrapping_mul(7_919);
        for _ in 0..span.min(2_000) {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let port = LOW_PORT + start.wrapping_add(n.wrapping_mul(104_729)) % span;
            if let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", port as u16)) {
                return listener;
            }
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback")
}

/// The id of the node that reports itself leader, asked of every node.
pub async fn leader_id(client: &mut KvClient, nodes: usize) -> Option<u64> {
    for i in 0..nodes {
        if let Ok(status) = client.status(i).await {
            if status.role == "Leader" {
                return Some(status.id);
            }
        }
    }
    None
}

/// The leader of a three-node cluster, asked of every node until one
/// answers (within 10 s).
pub async fn find_leader(client: &mut KvClient) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(id) = leader_id(client, 3).await {
            return id;
        }
        assert!(Instant::now() < deadline, "no leader found");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Writes keys `{prefix}-{from}` .. (`count` of them, each with value
/// `value-{i}`), recording them in `acked`.
pub async fn put_keys(
    client: &mut KvClient,
    acked: &mut BTreeMap<String, String>,
    prefix: &str,
    from: u32,
    count: u32,
) {
    for i in from..from + count {
        let (k, v) = (format!("{prefix}-{i}"), format!("value-{i}"));
        client.put(k.clone(), v.clone()).await.expect("write");
        acked.insert(k, v);
    }
}

/// Reads every key of `acked` back and checks its value.
pub async fn read_all(client: &mut KvClient, acked: &BTreeMap<String, String>) {
    for (k, v) in acked {
        let got = client.get(k.clone()).await.expect("read");
        assert_eq!(got, Some(bytes::Bytes::from(v.clone())), "key {k}");
    }
}

/// Node `id`'s status once it answers (a client of every node, in id
/// order), asked until `within` passes.
pub async fn status_once_up(
    client: &mut KvClient,
    id: u64,
    within: Duration,
) -> concord_tokio::status::NodeStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(status) = client.status(id as usize - 1).await {
            return status;
        }
        assert!(Instant::now() < deadline, "node {id} did not answer");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits up to `within` until the server at place `follower` of the
/// client's list has applied what the one at place `leader` has
/// committed.
pub async fn wait_caught_up_at(
    client: &mut KvClient,
    leader: usize,
    follower: usize,
    within: Duration,
) {
    let target = client
        .status(leader)
        .await
        .expect("leader status")
        .commit_index;
    let deadline = Instant::now() + within;
    loop {
        if let Ok(status) = client.status(follower).await {
            if status.applied_index >= target {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "server {follower} did not catch up to index {target}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits up to `within` until node `id` has applied everything `leader`
/// has committed (a client of every node, in id order).
pub async fn wait_caught_up(client: &mut KvClient, leader: u64, id: u64, within: Duration) {
    wait_caught_up_at(client, leader as usize - 1, id as usize - 1, within).await;
}

/// Writes `count` keys `{prefix}-0` ..., then waits until a follower has
/// applied them; returns the leader and that follower.
pub async fn write_to_a_follower(
    client: &mut KvClient,
    acked: &mut BTreeMap<String, String>,
    prefix: &str,
    count: u32,
) -> (u64, u64) {
    put_keys(client, acked, prefix, 0, count).await;
    let leader = find_leader(client).await;
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    wait_caught_up(client, leader, follower, Duration::from_secs(10)).await;
    (leader, follower)
}

/// The newest segment of a data directory's shared log (`log/`).
pub fn newest_segment(data_dir: &Path) -> PathBuf {
    // Segment names are zero-padded numbers: the newest sorts last.
    std::fs::read_dir(data_dir.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .max()
        .expect("a WAL segment")
}

/// Where the records of `segment` end, and the last one's offset and
/// length (read by the documented format). A killed node leaves zeros
/// after its records (the log fills them ahead); they are not records.
fn records(segment: &Path) -> (u64, Option<(u64, u64)>) {
    let bytes = std::fs::read(segment).unwrap();
    let mut at = concord_tokio::multi::record::SEGMENT_HEADER_BYTES;
    let mut last = None;
    while at + wal::RECORD_HEADER_BYTES <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        if len == 0 {
            break;
        }
        last = Some((at as u64, (wal::RECORD_HEADER_BYTES + len) as u64));
        at += wal::RECORD_HEADER_BYTES + len;
    }
    assert!(
        bytes[at..].iter().all(|byte| *byte == 0),
        "segment ends on a record boundary, then zeros only"
    );
    (at as u64, last)
}

/// Bytes of `segment` that hold its header and records (the zeros after
/// them left out).
pub fn records_end_bytes(segment: &Path) -> u64 {
    records(segment).0
}

/// Cuts the last record of `segment` in half (read by the documented
/// format: what a disk that lost part of a synced write leaves), and the
/// zeros after it; returns the record's offset.
pub fn cut_last_record_in_half(segment: &Path) -> u64 {
    let (_, last) = records(segment);
    let (at, len) = last.expect("a record in the newest segment");
    std::fs::OpenOptions::new()
        .write(true)
        .open(segment)
        .unwrap()
        .set_len(at + len / 2)
        .unwrap();
    at
}

/// The kill/restart scenario of `real_cluster.rs`, for any three-node
/// `cluster` (plaintext or TLS): write, SIGKILL the leader, keep writing
/// through the new leader, restart the dead node and see it catch up; then
/// stop all three, restart all three, and read every acknowledged write
/// back.
pub fn survive_sigkill_of_the_leader_and_full_restart(cluster: &mut NodeProcesses) {
    let runtime = runtime();
    cluster.start_all();
    runtime.block_on(async {
        let mut client = cluster.client();
        let mut acked: BTreeMap<String, String> = BTreeMap::new();
        put_keys(&mut client, &mut acked, "key", 0, 50).await;

        // SIGKILL the leader.
        let leader = find_leader(&mut client).await;
        cluster.sigkill(leader);

        // Keep writing through the new leader.
        put_keys(&mut client, &mut acked, "key", 50, 50).await;
        let new_leader = leader_id(&mut client, 3).await.expect("a new leader");
        assert_ne!(new_leader, leader);

        // Restart the dead node: it catches up from its own log plus the leader.
        cluster.start(leader);
        wait_caught_up(&mut client, new_leader, leader, Duration::from_secs(20)).await;
        // Writes keep working with all three up.
        client.put("after-restart", "yes").await.unwrap();
        acked.insert("after-restart".to_string(), "yes".to_string());

        // Stop all three, restart all three, read everything back.
        drop(client);
        cluster.sigterm_all();
        cluster.start_all();
        read_all(&mut cluster.client(), &acked).await;
    });
    cluster.sigterm_all();
}
