//! Three real `concord-node --groups 1000` processes on loopback, the
//! sharded key-value store under faults: a SIGKILL and restart, a network
//! partition, and a SIGSTOP/SIGCONT pause, while concurrent clients run
//! every request of the store (get, put, append, cas, get-many, put-many)
//! on keys of every group. At the end every key is read back, no
//! acknowledged write is lost, and every group's history (each key's
//! operations, unknown outcomes included) is checked linearizable by the
//! simulator's checker. `disk_kv_cluster.rs` runs the same clients
//! against the store on disk.
//!
//! The partition needs no root: every peer connection goes through a
//! proxy of this test (`common/multi_cluster.rs`, whose helpers the
//! other multi-group tests share). (The nftables partitions of
//! `net_chaos.rs` need root and network namespaces; this one runs
//! everywhere, so the test asserts everywhere.)
//!
//! ```text
//! cargo test -p concord-node --test multi_group_cluster -- --nocapture
//! ```
//!
//! `CONCORD_MULTI_SEED` sets the workload's seed (default: from the
//! clock; printed, and printed again on failure).

#[path = "common/multi_cluster.rs"]
mod multi_cluster;
#[path = "common/processes.rs"]
mod processes;

use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use concord_services::sharded_kv::ShardMap;
use multi_cluster::{client, keys_of_every_group, proxied_cluster, put, Recorder};
use processes::{free_addr, node_binary, spawn_node};

const CLUSTER: &str = "multi-chaos";
const GROUPS: u64 = 1_000;
const NODES: [u64; 3] = [1, 2, 3];
/// Concurrent clients of the fault phase.
const CLIENTS: u64 = 8;
/// Keys most operations of the fault phase go to (so some keys see
/// concurrent writers); the rest pick any key.
const HOT_KEYS: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_groups_survive_kill_partition_and_pause() {
    let seed = multi_cluster::seed_from_env("CONCORD_MULTI_SEED");
    let test_start = Instant::now();
    let base =
        std::env::temp_dir().join(format!("concord-multi-chaos-{}-{seed}", std::process::id()));
    let (mut nodes, network) = proxied_cluster(base, CLUSTER, GROUPS, &NODES, &[]).await;
    let listen = nodes.listen.clone();
    for id in NODES {
        nodes.start(id);
    }

    let map = ShardMap::new(GROUPS).unwrap();
    let keys = Arc::new(keys_of_every_group(&map));
    let recorder = Arc::new(Recorder::new());

    // Every group takes a first write (so every group has a leader),
    // from CLIENTS clients each writing a share of the keys.
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (keys, recorder, listen) = (keys.clone(), recorder.clone(), listen.clone());
        tasks.push(tokio::spawn(async move {
            let mut kv = client(CLUSTER, GROUPS, &listen);
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
        recorder.acked()
    );
    nodes.assert_running();

    // The fault phase: clients run while the schedule breaks things.
    let stop = Arc::new(AtomicBool::new(false));
    let workers = multi_cluster::spawn_clients(
        seed, CLIENTS, CLUSTER, GROUPS, &listen, &keys, HOT_KEYS, &recorder, &stop,
    );
    let mut steps = multi_cluster::Steps::new(test_start, &recorder);
    let sleep = |secs: u64| tokio::time::sleep(Duration::from_secs(secs));
    sleep(3).await;
    steps.step("SIGKILL node 3");
    nodes.sigkill(3);
    sleep(5).await;
    steps.step("restart node 3");
    nodes.start(3);
    sleep(5).await;
    steps.step("partition: node 1 cut off");
    network.isolate(1);
    sleep(7).await;
    steps.step("heal");
    network.heal();
    sleep(4).await;
    steps.step("SIGSTOP node 2");
    nodes.signal(2, libc::SIGSTOP);
    sleep(4).await;
    steps.step("SIGCONT node 2");
    nodes.signal(2, libc::SIGCONT);
    sleep(4).await;
    steps.step("stop the clients");
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.await.unwrap();
    }
    nodes.assert_running();
    // With one node of three out, the other two keep serving: writes are
    // acknowledged while node 3 is dead, node 1 is cut off and node 2 is
    // paused, and after each comes back.
    steps.assert_each_acknowledged();

    // Every key read back: every group answers, no acknowledged write is
    // lost, and every group's history is linearizable.
    let mut kv = client(CLUSTER, GROUPS, &listen);
    let finals = multi_cluster::read_back(&mut kv, &recorder, &keys, Duration::from_secs(60)).await;
    assert_eq!(finals.len(), GROUPS as usize);
    recorder.assert_every_request_answered();
    let history = std::mem::take(&mut *recorder.ops.lock().unwrap());
    let operations = multi_cluster::check_history(history, &finals, &map, seed);
    eprintln!(
        "{operations} operations on {GROUPS} groups linearizable ({} writes acknowledged, {} \
         unknown); whole test {:?}",
        recorder.acked(),
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

/// The `sh` block of docs/sharded-store.md that serves the sharded store,
/// run as written: its servers on free ports with temporary data
/// directories, each client command checked against what the doc says.
#[test]
fn the_documented_commands_run() {
    let doc = "docs/sharded-store.md";
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
