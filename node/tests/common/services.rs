//! A cluster of one service as real `concord-node --service NAME`
//! processes, driven only through `concord-cli NAME ...`: the real-process
//! tests of the services (`service_*.rs`).
//!
//! Included next to `processes.rs`:
//! `#[path = "common/processes.rs"] mod processes;`
//! `#[path = "common/services.rs"] mod services;`
#![allow(dead_code)]

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use concord_sim::history::{Op, Output, Recorder};

use crate::processes::{cli_binary, leader_id, runtime, NodeProcesses};

/// The server processes of one service's cluster; SIGKILLed and their
/// data removed on drop (kept, with the logs printed, when the test
/// fails).
pub struct Cluster {
    service: &'static str,
    nodes: NodeProcesses,
    /// `--groups N` of every server and client (`None`: one group).
    groups: Option<u64>,
}

impl Cluster {
    /// Three nodes of `service` on loopback ports the kernel handed out.
    pub fn on_loopback(service: &'static str, cluster_id: &'static str) -> Cluster {
        Cluster::with_nodes(service, cluster_id, 3)
    }

    /// [`Cluster::on_loopback`], every node started and one leading.
    pub fn started(service: &'static str, cluster_id: &'static str) -> Cluster {
        let mut cluster = Cluster::on_loopback(service, cluster_id);
        cluster.start_all_and_await_leader();
        cluster
    }

    /// `nodes` nodes of `service` on loopback ports the kernel handed out;
    /// `cluster_id` also names the run's directory.
    pub fn with_nodes(service: &'static str, cluster_id: &'static str, nodes: u64) -> Cluster {
        Cluster {
            service,
            nodes: NodeProcesses::on_loopback_n(cluster_id, cluster_id, nodes),
            groups: None,
        }
    }

    /// Three nodes of `service` hosting `groups` groups each (`--groups`),
    /// started, with the groups of `probes` serving: each probe (a
    /// request) answered, done or refused by the service.
    pub fn started_with_groups(
        service: &'static str,
        cluster_id: &'static str,
        groups: u64,
        probes: &[&[&str]],
    ) -> Cluster {
        let mut cluster = Cluster::on_loopback(service, cluster_id);
        cluster.groups = Some(groups);
        for id in cluster.nodes.ids() {
            cluster.start(id);
        }
        let target = cluster.cli_target();
        for probe in probes {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let (code, _, err) = cli_output(&target, probe);
                if code == Some(0) || (code == Some(1) && err.contains("refused the request")) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{probe:?} not answered in 30 s: exit {code:?}: {err}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        cluster
    }

    /// Where the command-line client finds this cluster.
    pub fn cli_target(&self) -> CliTarget {
        CliTarget {
            service: self.service,
            servers: self.servers(),
            cluster_id: self.nodes.cluster_id.clone(),
            groups: self.groups,
        }
    }

    /// The servers as `--servers` takes them.
    pub fn servers(&self) -> String {
        self.nodes.servers().join(",")
    }

    /// Starts every node and waits until one leads (up to 20 s).
    pub fn start_all_and_await_leader(&mut self) {
        for id in self.nodes.ids() {
            self.start(id);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.leader().is_none() {
            assert!(Instant::now() < deadline, "no leader within 20 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Once `clients` (one still running) have made `calls` calls,
    /// SIGKILLs the leader: its id and when it was killed.
    pub fn kill_leader_after<T>(
        &mut self,
        made: &AtomicUsize,
        calls: usize,
        clients: &[JoinHandle<T>],
    ) -> (u64, Instant) {
        while made.load(Ordering::SeqCst) < calls {
            assert!(
                clients.iter().any(|c| !c.is_finished()),
                "the clients stopped early"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let leader = self.leader().expect("a leader before the kill");
        let killed_at = Instant::now();
        self.sigkill(leader);
        (leader, killed_at)
    }

    /// Starts node `id`.
    pub fn start(&mut self, id: u64) {
        self.start_with(id, &[]);
    }

    /// Starts node `id` with `extra` server flags.
    pub fn start_with(&mut self, id: u64, extra: &[&str]) {
        let mut flags = vec!["--service", self.service];
        let groups = self.groups.map(|n| n.to_string());
        if let Some(groups) = &groups {
            flags.extend_from_slice(&["--groups", groups]);
        }
        flags.extend_from_slice(extra);
        self.nodes.start_with(id, &flags);
    }

    /// SIGKILLs node `id`.
    pub fn sigkill(&mut self, id: u64) {
        self.nodes.sigkill(id);
    }

    /// Node `id`'s (commit index, applied index), if it answers.
    pub fn indexes(&self, id: u64) -> Option<(u64, u64)> {
        let index = self.nodes.ids().iter().position(|&node| node == id)?;
        runtime().block_on(async {
            let mut client = self.nodes.client_with_timeout(Duration::from_millis(500));
            let status = client.status(index).await.ok()?;
            Some((status.commit_index, status.applied_index))
        })
    }

    /// The node that says it leads, asked of every node in turn.
    pub fn leader(&self) -> Option<u64> {
        let nodes = self.nodes.ids().len();
        runtime().block_on(async {
            let mut client = self.nodes.client_with_timeout(Duration::from_millis(500));
            leader_id(&mut client, nodes).await
        })
    }
}

/// A number a command returned (a sequence number, an order number), and
/// when it was called and returned.
#[derive(Clone, Copy, Debug)]
pub struct Numbered {
    /// When the command was called.
    pub call: Instant,
    /// When it returned.
    pub ret: Instant,
    /// The number.
    pub number: u64,
}

/// Checks numbers drawn from one sequence: none handed out twice, and
/// strictly increasing in real-time order (one that returned before
/// another was called is smaller). Sorts them by number.
pub fn assert_unique_and_increasing(numbers: &mut [Numbered]) {
    numbers.sort_by_key(|n| n.number);
    for pair in numbers.windows(2) {
        assert_ne!(pair[0].number, pair[1].number, "handed out twice: {pair:?}");
    }
    for a in numbers.iter() {
        for b in numbers.iter() {
            if a.ret < b.call {
                assert!(
                    a.number < b.number,
                    "{a:?} returned before {b:?} was called, yet is not smaller"
                );
            }
        }
    }
}

/// How a command-line call ended.
#[derive(Debug)]
pub enum Outcome {
    /// Exit 0, with its standard output.
    Ok(String),
    /// Exit 1: refused, nothing changed.
    NotApplied,
    /// Exit 3: the outcome is not known.
    Unknown,
}

/// What the command-line client needs to reach a cluster; cheap to clone
/// into client threads.
#[derive(Clone, Debug)]
pub struct CliTarget {
    service: &'static str,
    servers: String,
    cluster_id: String,
    groups: Option<u64>,
}

/// Runs `concord-cli --servers ... [--groups N] <service> <args>`.
fn cli_command(target: &CliTarget, args: &[&str]) -> std::process::Output {
    let mut command = Command::new(cli_binary());
    command
        .args(["--servers", &target.servers])
        .args(["--cluster-id", &target.cluster_id]);
    if let Some(groups) = target.groups {
        command.args(["--groups", &groups.to_string()]);
    }
    command
        .arg(target.service)
        .args(args)
        .output()
        .expect("run the command-line client")
}

/// Runs `concord-cli ... <service> <args>`: its exit status, standard
/// output and standard error.
pub fn cli_output(target: &CliTarget, args: &[&str]) -> (Option<i32>, String, String) {
    let output = cli_command(target, args);
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs `concord-cli --servers ... <service> <args>`.
pub fn cli(target: &CliTarget, args: &[&str]) -> Outcome {
    let output = cli_command(target, args);
    match output.status.code() {
        Some(0) => Outcome::Ok(String::from_utf8(output.stdout).expect("UTF-8 output")),
        Some(1) => Outcome::NotApplied,
        Some(3) => Outcome::Unknown,
        other => panic!(
            "client {args:?} exited with {other:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

/// Starts `clients` client threads, each running `work` against `target`
/// with the shared count of calls `made` (for
/// [`Cluster::kill_leader_after`]).
pub fn spawn_clients<T: Send + 'static>(
    clients: usize,
    target: &CliTarget,
    made: &Arc<AtomicUsize>,
    work: fn(&CliTarget, &AtomicUsize) -> T,
) -> Vec<JoinHandle<T>> {
    (0..clients)
        .map(|_| {
            let (target, made) = (target.clone(), made.clone());
            std::thread::spawn(move || work(&target, &made))
        })
        .collect()
}

/// Parses lines `key=value`, or `key` followed by `absent_suffix` for a
/// key without a value (as the clients print `lookup` and `get-many`).
pub fn parse_pairs(text: &str, absent_suffix: &str) -> Vec<(String, Option<String>)> {
    text.lines()
        .map(|line| match line.split_once('=') {
            Some((key, value)) => (key.to_string(), Some(value.to_string())),
            None => (line.trim_end_matches(absent_suffix).to_string(), None),
        })
        .collect()
}

/// A multi-key read (`command keys...`, answered one line a key as
/// [`parse_pairs`] reads with `absent_suffix`), recorded in `recorder` as
/// a get of each key by `client`: each get returns the value read (absent:
/// empty), or fails when the read was not answered. The pairs read, in
/// the order of `keys`, if it was answered.
pub fn recorded_read(
    target: &CliTarget,
    recorder: &Recorder,
    client: u64,
    command: &str,
    keys: &[&str],
    absent_suffix: &str,
) -> Option<Vec<(String, Option<String>)>> {
    let tokens: Vec<_> = keys
        .iter()
        .map(|key| recorder.call(client, *key, Op::Get))
        .collect();
    let mut args = vec![command];
    args.extend(keys);
    match cli(target, &args) {
        Outcome::Ok(text) => {
            let read = parse_pairs(&text, absent_suffix);
            assert_eq!(read.len(), keys.len(), "{command} printed {text:?}");
            for (token, (key, value)) in tokens.into_iter().zip(&read) {
                assert!(keys.contains(&key.as_str()), "{command} printed {text:?}");
                recorder.ok(token, Output::Value(value.clone().unwrap_or_default()));
            }
            Some(read)
        }
        // A read changes nothing: either way it is not applied.
        Outcome::NotApplied | Outcome::Unknown => {
            tokens.into_iter().for_each(|t| recorder.fail(t));
            None
        }
    }
}
