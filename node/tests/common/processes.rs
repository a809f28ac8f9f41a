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
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use concord::tokio::client::ClientConfig;
use concord::tokio::tls::{TlsConfig, TlsPaths, TlsRole};
use concord_services::KvClient;

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
        let base = std::env::temp_dir().join(format!(
            "concord-{label}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock after 1970")
                .as_nanos()
        ));
        std::fs::create_dir_all(&base).expect("create the test's data directory");
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

    /// Three nodes on loopback ports the kernel handed out just now.
    pub fn on_loopback(label: &str, cluster_id: &str) -> NodeProcesses {
        NodeProcesses::on_loopback_n(label, cluster_id, 3)
    }

    /// `nodes` nodes on loopback ports the kernel handed out just now.
    pub fn on_loopback_n(label: &str, cluster_id: &str, nodes: u64) -> NodeProcesses {
        let listeners: Vec<_> = (0..nodes)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback"))
            .collect();
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
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
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

    /// Node `id`'s data directory.
    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.base.join(format!("node-{id}"))
    }

    /// Starts node `id` with extra command-line flags.
    pub fn start_with(&mut self, id: u64, extra: &[&str]) {
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
        // SAFETY: the closure runs in the forked child before exec and
        // only calls prctl(2), which is async-signal-safe. The node dies
        // with the thread that started it (the test's thread), so a test
        // process killed before its guards ran leaves no node behind; the
        // setting survives the exec of `ip netns exec` and of the node.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .args([
                "--id",
                &id.to_string(),
                "--listen",
                &self.addr(id),
                "--peers",
                &self.peers_arg(),
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
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn concord-node");
        self.children.insert(id, child);
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
        let mut config = self.client_config(Duration::from_millis(1500));
        config.attempts_max = 100;
        config.retry_backoff = Duration::from_millis(50);
        KvClient::new(config)
    }

    /// A client whose every attempt gives up after `timeout` (for status
    /// probes).
    pub fn client_with_timeout(&self, timeout: Duration) -> KvClient {
        KvClient::new(self.client_config(timeout))
    }

    fn client_config(&self, timeout: Duration) -> ClientConfig {
        let mut config = ClientConfig::new(self.servers(), self.cluster_id.clone());
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

/// The kill/restart scenario of `real_cluster.rs`, for any three-node
/// `cluster` (plaintext or TLS): write, SIGKILL the leader, keep writing
/// through the new leader, restart the dead node and see it catch up; then
/// stop all three, restart all three, and read every acknowledged write
/// back.
pub fn survive_sigkill_of_the_leader_and_full_restart(cluster: &mut NodeProcesses) {
    let runtime = runtime();
    for id in 1..=3 {
        cluster.start(id);
    }
    runtime.block_on(async {
        let mut client = cluster.client();
        let mut acked: BTreeMap<String, String> = BTreeMap::new();
        for i in 0..50 {
            let (k, v) = (format!("key-{i}"), format!("value-{i}"));
            client
                .put(k.clone(), v.clone())
                .await
                .expect("write before the kill");
            acked.insert(k, v);
        }

        // SIGKILL the leader.
        let mut leader = None;
        let deadline = Instant::now() + Duration::from_secs(10);
        while leader.is_none() {
            assert!(Instant::now() < deadline, "no leader found");
            leader = leader_id(&mut client, 3).await;
        }
        let leader = leader.unwrap();
        cluster.sigkill(leader);

        // Keep writing through the new leader.
        for i in 50..100 {
            let (k, v) = (format!("key-{i}"), format!("value-{i}"));
            client
                .put(k.clone(), v.clone())
                .await
                .expect("write after the kill");
            acked.insert(k, v);
        }
        let new_leader = leader_id(&mut client, 3).await.expect("a new leader");
        assert_ne!(new_leader, leader);

        // Restart the dead node: it catches up from its own log plus the leader.
        cluster.start(leader);
        let target = client
            .status(new_leader as usize - 1)
            .await
            .unwrap()
            .commit_index;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(status) = client.status(leader as usize - 1).await {
                if status.applied_index >= target {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "restarted node {leader} did not catch up to {target}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Writes keep working with all three up.
        client.put("after-restart", "yes").await.unwrap();
        acked.insert("after-restart".to_string(), "yes".to_string());

        // Stop all three, restart all three, read everything back.
        drop(client);
        cluster.sigterm_all();
        for id in 1..=3 {
            cluster.start(id);
        }
        let mut client = cluster.client();
        for (k, v) in &acked {
            let got = client
                .get(k.clone())
                .await
                .expect("read after full restart");
            assert_eq!(got, Some(bytes::Bytes::from(v.clone())), "key {k}");
        }
    });
    cluster.sigterm_all();
}
