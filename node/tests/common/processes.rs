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

use concord::tokio::client::{Client, ClientConfig};

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
        }
    }

    /// Three nodes on loopback ports the kernel handed out just now.
    pub fn on_loopback(label: &str, cluster_id: &str) -> NodeProcesses {
        let listeners: Vec<_> = (0..3)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback"))
            .collect();
        let addrs = (1..=3u64)
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
        let binary = env!("CARGO_BIN_EXE_concord-node");
        let mut command = match self.launchers.get(&id) {
            Some(prefix) if !prefix.is_empty() => {
                let mut command = Command::new(&prefix[0]);
                command.args(&prefix[1..]).arg(binary);
                command
            }
            _ => Command::new(binary),
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

    /// A client of this cluster with patient retries.
    pub fn client(&self) -> Client {
        let mut config = ClientConfig::new(self.servers(), self.cluster_id.clone());
        config.request_timeout = Duration::from_millis(1500);
        config.attempts_max = 100;
        config.retry_backoff = Duration::from_millis(50);
        Client::new(config)
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
pub async fn leader_id(client: &mut Client, nodes: usize) -> Option<u64> {
    for i in 0..nodes {
        if let Ok(status) = client.status(i).await {
            if status.role == "Leader" {
                return Some(status.id);
            }
        }
    }
    None
}
