//! Real `concord-services` processes for the real-cluster tests: start,
//! SIGKILL, find the leader, and run the command-line client.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use concord::tokio::client::{Client, ClientConfig};

/// The binary under test.
pub const BINARY: &str = env!("CARGO_BIN_EXE_concord-services");

/// The server processes; SIGKILLed and their data removed on drop (kept,
/// with the logs printed, when the test fails).
pub struct Cluster {
    service: &'static str,
    cluster_id: &'static str,
    base: PathBuf,
    addrs: BTreeMap<u64, String>,
    children: BTreeMap<u64, Child>,
}

impl Cluster {
    /// Three nodes of `service` on loopback ports the kernel handed out.
    pub fn on_loopback(service: &'static str, cluster_id: &'static str) -> Cluster {
        Cluster::with_nodes(service, cluster_id, 3)
    }

    /// `nodes` nodes of `service` on loopback ports the kernel handed out;
    /// `cluster_id` also names the run's directory.
    pub fn with_nodes(service: &'static str, cluster_id: &'static str, nodes: u64) -> Cluster {
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
        let base =
            std::env::temp_dir().join(format!("{cluster_id}-{service}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).expect("create the test's directory");
        Cluster {
            service,
            cluster_id,
            base,
            addrs,
            children: BTreeMap::new(),
        }
    }

    /// Where the command-line client finds this cluster.
    pub fn cli_target(&self) -> CliTarget {
        CliTarget {
            service: self.service,
            servers: self.servers(),
            cluster_id: self.cluster_id,
        }
    }

    /// The servers as `--servers` takes them.
    pub fn servers(&self) -> String {
        self.addrs.values().cloned().collect::<Vec<_>>().join(",")
    }

    /// Starts node `id`.
    pub fn start(&mut self, id: u64) {
        self.start_with(id, &[]);
    }

    /// Starts node `id` with `extra` server flags.
    pub fn start_with(&mut self, id: u64, extra: &[&str]) {
        let peers: Vec<String> = self
            .addrs
            .iter()
            .map(|(id, addr)| format!("{id}={addr}"))
            .collect();
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.base.join(format!("node-{id}.log")))
            .expect("log");
        let child = Command::new(BINARY)
            .args([self.service, "serve", "--id", &id.to_string(), "--listen"])
            .arg(&self.addrs[&id])
            .args(["--peers", &peers.join(","), "--cluster-id", self.cluster_id])
            .arg("--data-dir")
            .arg(self.base.join(format!("node-{id}")))
            .stdout(Stdio::null())
            .stderr(log)
            .args(extra)
            .spawn()
            .expect("spawn a server");
        self.children.insert(id, child);
    }

    /// SIGKILLs node `id`.
    pub fn sigkill(&mut self, id: u64) {
        if let Some(mut child) = self.children.remove(&id) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Node `id`'s (commit index, applied index), if it answers.
    pub fn indexes(&self, id: u64) -> Option<(u64, u64)> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let mut config =
                ClientConfig::new(self.addrs.values().cloned().collect(), self.cluster_id);
            config.request_timeout = Duration::from_millis(500);
            let mut client = Client::new(config);
            let index = self.addrs.keys().position(|&node| node == id)?;
            let status = client.status(index).await.ok()?;
            Some((status.commit_index, status.applied_index))
        })
    }

    /// The node that says it leads, asked of every node in turn.
    pub fn leader(&self) -> Option<u64> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let mut config =
                ClientConfig::new(self.addrs.values().cloned().collect(), self.cluster_id);
            config.request_timeout = Duration::from_millis(500);
            let mut client = Client::new(config);
            for index in 0..self.addrs.len() {
                if let Ok(status) = client.status(index).await {
                    if status.role == "Leader" {
                        return Some(status.id);
                    }
                }
            }
            None
        })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, mut child) in std::mem::take(&mut self.children) {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            for id in self.addrs.keys() {
                let log = std::fs::read_to_string(self.base.join(format!("node-{id}.log")))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(20).collect();
                eprintln!("--- node {id} (last lines) ---");
                for line in tail.into_iter().rev() {
                    eprintln!("{line}");
                }
            }
        } else {
            let _ = std::fs::remove_dir_all(&self.base);
        }
    }
}

/// How a command-line call ended.
pub enum Outcome {
    /// Exit 0, with its standard output.
    Ok(String),
    /// Exit 3: refused, nothing changed.
    NotApplied,
    /// Exit 4: the outcome is not known.
    Unknown,
}

/// What the command-line client needs to reach a cluster; cheap to clone
/// into client threads.
#[derive(Clone, Debug)]
pub struct CliTarget {
    service: &'static str,
    servers: String,
    cluster_id: &'static str,
}

/// Runs `concord-services <service> --servers ... <args>`.
pub fn cli(target: &CliTarget, args: &[&str]) -> Outcome {
    let output = Command::new(BINARY)
        .args([
            target.service,
            "--servers",
            &target.servers,
            "--cluster-id",
            target.cluster_id,
        ])
        .args(args)
        .output()
        .expect("run the command-line client");
    match output.status.code() {
        Some(0) => Outcome::Ok(String::from_utf8(output.stdout).expect("UTF-8 output")),
        Some(3) => Outcome::NotApplied,
        Some(4) => Outcome::Unknown,
        other => panic!(
            "client {args:?} exited with {other:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}
