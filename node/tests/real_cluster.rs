//! Three real `concord-node` processes on loopback: write through the
//! client, SIGKILL the leader, keep writing through the new leader, restart
//! the dead node and see it catch up; then stop all three, restart all
//! three, and read every acknowledged write back. And the write-ahead log's
//! recovery rule on real processes: a zero-filled tail is a torn write the
//! node starts past; a cut record it had fsynced makes it refuse to start
//! until the operator passes `--accept-wal-data-loss`. And snapshots on
//! real processes: a follower SIGKILLed while the cluster compacts past it
//! is caught up by a snapshot, all three restart from their snapshots, and
//! a node whose snapshot file is damaged refuses to start, naming it.

#[path = "common/processes.rs"]
mod processes;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use concord_services::KvClient;
use concord_tokio::multi::record::DurableMarker;
use processes::{
    cut_last_record_in_half, find_leader, put_keys, read_all, records_end_bytes, runtime,
    status_once_up, wait_caught_up, wait_caught_up_at, write_to_a_follower, NodeProcesses,
};

const CLUSTER: &str = "real-test";

/// The newest segment of a node's shared write-ahead log
/// (`<dir>/log/<number:020>.seg`). Its records are framed as the
/// single-group log's (`[len][len_check][checksum][payload]` after a
/// 16-byte header), so `records_end_bytes` and `cut_last_record_in_half`
/// read it by the documented format.
fn newest_log_segment(data_dir: &Path) -> PathBuf {
    // Segment names are zero-padded numbers: the newest sorts last.
    std::fs::read_dir(data_dir.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .max()
        .expect("a segment of the shared log")
}

/// The shared log's durable marker (`<dir>/log/durable`), if valid.
fn durable_marker(data_dir: &Path) -> Option<DurableMarker> {
    let bytes = std::fs::read(data_dir.join("log").join("durable")).ok()?;
    DurableMarker::decode(&bytes).ok()
}

/// The number of a segment file (its zero-padded name).
fn segment_number(segment: &Path) -> u64 {
    segment
        .file_stem()
        .and_then(|stem| stem.to_str())
        .and_then(|stem| stem.parse().ok())
        .expect("a numbered segment")
}

#[test]
fn three_processes_survive_sigkill_of_the_leader_and_full_restart() {
    let mut cluster = NodeProcesses::on_loopback("real", CLUSTER);
    processes::survive_sigkill_of_the_leader_and_full_restart(&mut cluster);
}

#[test]
fn follower_restarts_past_a_zero_filled_wal_tail_and_catches_up() {
    let mut cluster = NodeProcesses::on_loopback("real-wal", CLUSTER);
    cluster.start_all();
    runtime().block_on(async {
        let mut client = cluster.client();
        let mut acked = BTreeMap::new();
        let (_, follower) = write_to_a_follower(&mut client, &mut acked, "zero", 30).await;
        cluster.sigkill(follower);
        put_keys(&mut client, &mut acked, "zero", 30, 20).await;

        // What a torn write leaves after power loss on some filesystems.
        let segment = newest_log_segment(&cluster.data_dir(follower));
        let good_bytes = records_end_bytes(&segment);
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&segment)
            .unwrap();
        std::io::Write::write_all(&mut file, &[0u8; 4096]).unwrap();
        drop(file);

        cluster.start(follower);
        let leader = find_leader(&mut client).await;
        wait_caught_up(&mut client, leader, follower, Duration::from_secs(15)).await;
        assert!(cluster.still_runs(follower), "the follower keeps running");
        // The shared log names the cut in the message ("cutting N zero
        // bytes after the last record of <file>") and its offset as a field.
        let log = cluster.log_text(follower);
        let segment_name = segment.file_name().unwrap().to_str().unwrap();
        assert!(
            log.contains("zero bytes")
                && log.contains(segment_name)
                && log.contains(&format!("offset={good_bytes}")),
            "the truncation is logged:\n{log}"
        );
        put_keys(&mut client, &mut acked, "zero", 50, 5).await;
        read_all(&mut client, &acked).await;
    });
    cluster.sigterm_all();
}

#[test]
fn follower_with_a_cut_durable_wal_record_refuses_to_start_until_data_loss_is_accepted() {
    let mut cluster = NodeProcesses::on_loopback("real-wal", CLUSTER);
    cluster.start_all();
    runtime().block_on(async {
        let mut client = cluster.client();
        let mut acked = BTreeMap::new();
        let (leader, follower) = write_to_a_follower(&mut client, &mut acked, "cut", 30).await;
        cluster.sigkill(follower);

        // Its final record was fsynced (and acknowledged): the durable
        // marker covers it. Cut it in half.
        let data_dir = cluster.data_dir(follower);
        let segment = newest_log_segment(&data_dir);
        let records_end = records_end_bytes(&segment);
        let marker = durable_marker(&data_dir).expect("a durable marker");
        assert_eq!(marker.segment, segment_number(&segment), "{marker:?}");
        assert_eq!(
            marker.offset_bytes, records_end,
            "the marker covers the whole log (the zeros ahead of it left out)"
        );
        let at = cut_last_record_in_half(&segment);

        // Loud: it exits non-zero at once, naming the file and the way out.
        let started = Instant::now();
        cluster.start(follower);
        let status = cluster
            .wait_exit(follower, Duration::from_secs(10))
            .expect("the node refuses to start");
        assert!(!status.success(), "{status}");
        assert!(started.elapsed() < Duration::from_secs(10));
        let log = cluster.log_text(follower);
        let segment_name = segment.file_name().unwrap().to_str().unwrap();
        for needle in [
            segment_name,
            &format!("offset {at}"),
            "fsynced",
            "--accept-wal-data-loss",
        ] {
            assert!(log.contains(needle), "{needle:?} not in the log:\n{log}");
        }

        // The cluster keeps serving meanwhile.
        put_keys(&mut client, &mut acked, "cut", 30, 10).await;

        // The operator accepts the loss: it starts, says what was lost,
        // and the cluster still serves every acknowledged write.
        cluster.start_with(follower, &["--accept-wal-data-loss"]);
        status_once_up(&mut client, follower, Duration::from_secs(10)).await;
        let log = cluster.log_text(follower);
        assert!(
            log.contains("ERROR") && log.contains("ACCEPTING DATA LOSS"),
            "the loss is logged at error:\n{log}"
        );
        put_keys(&mut client, &mut acked, "cut", 40, 5).await;
        read_all(&mut client, &acked).await;
        // The leader finds the follower holding less than it acknowledged,
        // says so (error log, status), and replicates the lost entries
        // again: the follower catches up instead of staying behind.
        let leader_now = find_leader(&mut client).await;
        wait_caught_up(&mut client, leader_now, follower, Duration::from_secs(15)).await;
        assert!(cluster.still_runs(follower), "the follower keeps running");
        if leader_now == leader {
            let status = client
                .status(leader as usize - 1)
                .await
                .expect("leader status");
            let peer = status
                .peers
                .iter()
                .find(|p| p.id == follower)
                .expect("the follower's progress");
            assert!(peer.log_regressions >= 1, "{status:?}");
            assert!(status.server.follower_log_regressions >= 1, "{status:?}");
            let log = cluster.log_text(leader);
            assert!(
                log.contains("ERROR")
                    && log.contains("a follower lost entries it had acknowledged as durable"),
                "the leader did not log the lost entries at error level:\n{log}"
            );
        } else {
            // A new leader never saw the old acknowledgement: it finds the
            // follower short by ordinary probing, which is not an error.
            eprintln!("leader changed ({leader} -> {leader_now}); regression report not expected");
        }
    });
    cluster.sigterm_all();
}

/// The example binary `record_real_cluster` of concord-sim, built next to
/// this test by `cargo test --workspace`.
fn recorder_example() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    // target/<profile>/deps/<this test> -> target/<profile>/examples/
    let path = exe.parent()?.parent()?.join("examples").join(format!(
        "record_real_cluster{}",
        std::env::consts::EXE_SUFFIX
    ));
    path.exists().then_some(path)
}

/// The history recorder's worked example, run as a user would against
/// three `concord-node` processes while one of them is SIGKILLed and
/// restarted: it records every operation (unknown outcomes included),
/// writes the JSON lines, and its check finds the history linearizable;
/// `concord-sim check` on the written file agrees.
#[test]
fn recorder_example_checks_a_history_recorded_from_concord_node_processes() {
    let Some(example) = recorder_example() else {
        eprintln!(
            "SKIPPED recorder_example_checks_a_history_recorded_from_concord_node_processes: \
             the example is not built; `cargo test --workspace` builds it \
             (or `cargo build -p concord-sim --example record_real_cluster`)"
        );
        return;
    };
    let mut cluster = NodeProcesses::on_loopback("real-recorder", CLUSTER);
    cluster.start_all();
    // The cluster serves before the recording starts, so the fault below
    // lands in the middle of it.
    runtime().block_on(async {
        let mut client = cluster.client();
        client.put("ready", "1").await.expect("the cluster serves");
    });
    let out = cluster.base.join("history.jsonl");
    let mut recorder = std::process::Command::new(&example)
        .args(["--servers", &cluster.servers().join(",")])
        .args(["--cluster", CLUSTER, "--clients", "4", "--ops", "3000"])
        .arg("--out")
        .arg(&out)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the recorder example");
    // A fault while it records: SIGKILL a node, then bring it back.
    std::thread::sleep(Duration::from_millis(150));
    assert!(
        recorder.try_wait().expect("try_wait").is_none(),
        "the recording finished before the fault; record more operations"
    );
    cluster.sigkill(2);
    std::thread::sleep(Duration::from_millis(500));
    cluster.start(2);
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = recorder.try_wait().expect("try_wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the recorder example hung");
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = recorder.wait_with_output().expect("recorder output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        status.success(),
        "the example's check failed ({status}):\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let history = std::fs::read_to_string(&out).expect("the example wrote its history");
    let history = concord_sim::history::parse_jsonl(&history).expect("valid JSON lines");
    assert!(
        history.len() >= 4 * 3000,
        "{} operations recorded",
        history.len()
    );
    let verdict = concord_sim::linearizability::check_history(&history);
    assert!(
        matches!(verdict, concord_sim::linearizability::CheckResult::Ok),
        "{verdict:?}"
    );
}

/// Flags that make the nodes compact often: a snapshot every 50 applied
/// entries, 20 entries kept below it.
const COMPACT_OFTEN: [&str; 4] = [
    "--snapshot-every-entries",
    "50",
    "--compaction-trailing-entries",
    "20",
];

/// Snapshot files of the data group (group 1) in a node's data
/// directory (`<dir>/groups/00000000000000000001/`).
fn snapshot_files(data_dir: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(data_dir.join("groups").join(format!("{:020}", 1))) {
        Ok(listing) => listing
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "snap"))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Three nodes started with [`COMPACT_OFTEN`].
fn compacting_cluster(label: &str) -> NodeProcesses {
    let mut cluster = NodeProcesses::on_loopback(label, CLUSTER);
    cluster.start_all_with(&COMPACT_OFTEN);
    cluster
}

/// Writes `count` keys and waits until every node applied them; returns
/// the leader.
async fn write_and_settle(
    client: &mut KvClient,
    acked: &mut BTreeMap<String, String>,
    prefix: &str,
    count: u32,
) -> u64 {
    put_keys(client, acked, prefix, 0, count).await;
    let leader = find_leader(client).await;
    for id in 1..=3 {
        wait_caught_up(client, leader, id, Duration::from_secs(10)).await;
    }
    leader
}

#[test]
fn follower_killed_past_the_trailing_window_catches_up_by_snapshot() {
    let mut cluster = compacting_cluster("real-snap");
    runtime().block_on(async {
        let mut client = cluster.client();
        let mut acked = BTreeMap::new();
        let (leader, follower) = write_to_a_follower(&mut client, &mut acked, "before", 120).await;
        let status = client.status(leader as usize - 1).await.unwrap();
        assert!(
            status.snapshot_index > 0 && status.server.snapshots_taken > 0,
            "the leader compacted: {status:?}"
        );
        let follower_last = client
            .status(follower as usize - 1)
            .await
            .unwrap()
            .last_index;

        cluster.sigkill(follower);
        // Well past a snapshot interval plus the trailing window.
        put_keys(&mut client, &mut acked, "while-down", 0, 150).await;
        let leader = find_leader(&mut client).await;
        let status = client.status(leader as usize - 1).await.unwrap();
        assert!(
            status.first_index > follower_last + 1,
            "the leader no longer holds the entries after the follower's log \
             (first index {}, follower's last {follower_last})",
            status.first_index
        );

        cluster.start_with(follower, &COMPACT_OFTEN);
        wait_caught_up(&mut client, leader, follower, Duration::from_secs(20)).await;
        let status = client.status(follower as usize - 1).await.unwrap();
        assert!(
            status.server.snapshots_installed >= 1 && status.snapshot_index > follower_last,
            "node {follower} caught up by a snapshot: {status:?}"
        );
        assert!(!snapshot_files(&cluster.data_dir(follower)).is_empty());
        put_keys(&mut client, &mut acked, "after", 0, 10).await;
        read_all(&mut client, &acked).await;
    });
    cluster.sigterm_all();
}

#[test]
fn all_three_restart_from_their_snapshots_with_state_intact() {
    let mut cluster = compacting_cluster("real-snap-restart");
    runtime().block_on(async {
        let mut client = cluster.client();
        let mut acked = BTreeMap::new();
        write_and_settle(&mut client, &mut acked, "key", 130).await;

        // Kill all three at once; each restarts from its snapshot plus the
        // log after it.
        cluster.sigkill_all();
        for id in 1..=3 {
            assert!(
                !snapshot_files(&cluster.data_dir(id)).is_empty(),
                "node {id} stored a snapshot"
            );
            cluster.start_with(id, &COMPACT_OFTEN);
        }
        for id in 1..=3 {
            let status = status_once_up(&mut client, id, Duration::from_secs(10)).await;
            assert!(
                status.snapshot_index > 0,
                "node {id} restarted from a snapshot: {status:?}"
            );
        }
        // The same client (its session lives in the snapshots) keeps
        // writing, and every acknowledged write reads back.
        put_keys(&mut client, &mut acked, "after", 0, 20).await;
        read_all(&mut client, &acked).await;
    });
    cluster.sigterm_all();
}

#[test]
fn node_with_a_corrupt_snapshot_refuses_to_start_naming_the_file() {
    let mut cluster = compacting_cluster("real-snap-corrupt");
    runtime().block_on(async {
        let mut client = cluster.client();
        let mut acked = BTreeMap::new();
        write_and_settle(&mut client, &mut acked, "key", 80).await;
    });
    cluster.sigterm_all();
    let files = snapshot_files(&cluster.data_dir(1));
    assert_eq!(files.len(), 1, "{files:?}");
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&files[0], &bytes).unwrap();
    cluster.start_with(1, &COMPACT_OFTEN);
    let status = cluster
        .wait_exit(1, Duration::from_secs(10))
        .expect("node 1 refuses to start");
    assert!(!status.success());
    let log = cluster.log_text(1);
    let name = files[0].file_name().unwrap().to_string_lossy().to_string();
    assert!(
        log.contains(&name) && log.contains("checksum"),
        "the error names the file and the damage:\n{log}"
    );
}

/// Reads without log entries on real processes, leases on: every
/// acknowledged write is read back on all three paths (follower reads at
/// each server in turn), before and after the leader is SIGKILLed, and a
/// thousand reads leave every node's commit index where it was.
#[test]
fn reads_on_every_path_return_acknowledged_writes_and_append_nothing() {
    use concord::ReadPath;
    let mut cluster = NodeProcesses::on_loopback("reads", CLUSTER);
    cluster.start_all_with(&["--lease-ticks", "8", "--clock-drift-bound-ticks", "4"]);
    runtime().block_on(async {
        let mut client = cluster.client();
        let mut acked = BTreeMap::new();
        put_keys(&mut client, &mut acked, "read", 0, 30).await;
        let leader = find_leader(&mut client).await;
        for id in 1..=3 {
            wait_caught_up(&mut client, leader, id, Duration::from_secs(10)).await;
        }
        let commits = |statuses: &[concord_tokio::status::NodeStatus]| {
            statuses.iter().map(|s| s.commit_index).collect::<Vec<_>>()
        };
        let mut before = Vec::new();
        for id in 1..=3u64 {
            before.push(client.status(id as usize - 1).await.unwrap());
        }
        for path in [ReadPath::ReadIndex, ReadPath::Lease, ReadPath::Follower] {
            for _ in 0..12 {
                for (k, v) in &acked {
                    let got = client.get_via(k.clone(), Some(path)).await.expect("read");
                    assert_eq!(got, Some(Bytes::from(v.clone())), "{path:?} read of {k}");
                }
            }
        }
        let mut after = Vec::new();
        for id in 1..=3u64 {
            after.push(client.status(id as usize - 1).await.unwrap());
        }
        assert_eq!(
            commits(&before),
            commits(&after),
            "1080 reads moved a commit index: reads wrote the log"
        );
        // Every path was served as asked: each node served follower reads,
        // the leader served ReadIndex and lease reads.
        let leader_status = &after[leader as usize - 1];
        assert!(leader_status.server.reads_read_index >= 360);
        assert!(
            leader_status.server.reads_lease > 0,
            "no lease read was served"
        );
        for (id, status) in after.iter().enumerate() {
            assert!(
                status.server.reads_follower > 0,
                "node {} served no follower read",
                id + 1
            );
        }

        // A new leader serves the same values on every path.
        cluster.sigkill(leader);
        put_keys(&mut client, &mut acked, "read-after", 0, 10).await;
        for path in [ReadPath::ReadIndex, ReadPath::Lease, ReadPath::Follower] {
            for (k, v) in &acked {
                let got = client
                    .get_via(k.clone(), Some(path))
                    .await
                    .expect("read after the kill");
                assert_eq!(got, Some(Bytes::from(v.clone())), "{path:?} read of {k}");
            }
        }
    });
    cluster.sigterm_all();
}

// ---------------------------------------------------------------------
// Membership on real processes: replacing a dead server with
// `concord-cli member ...`, leadership transfer to a named node, and the
// new configuration (and the new node's address) surviving a restart of
// every node started with its original `--peers`.
// ---------------------------------------------------------------------

/// Runs `concord-cli --servers <servers> <args>`; appends the command and
/// what it printed to `transcript`; returns the exit code and stdout.
fn cli(transcript: &mut String, servers: &[String], args: &[&str]) -> (i32, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_concord-cli"))
        .args(["--servers", &servers.join(","), "--cluster-id", CLUSTER])
        .args(args)
        .output()
        .expect("run concord-cli");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    let code = output.status.code().unwrap_or(-1);
    transcript.push_str(&format!(
        "$ concord-cli --servers <{} servers> {}\n",
        servers.len(),
        args.join(" ")
    ));
    transcript.push_str(&stdout);
    transcript.push_str(&stderr);
    if code != 0 {
        transcript.push_str(&format!("(exit status {code})\n"));
    }
    (code, stdout)
}

/// Runs a membership command that must succeed (a few attempts: a leader
/// may be in the middle of an election).
fn cli_ok(transcript: &mut String, servers: &[String], args: &[&str]) -> String {
    for _ in 0..10 {
        let (code, stdout) = cli(transcript, servers, args);
        if code == 0 {
            return stdout;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("concord-cli {args:?} kept failing; transcript:\n{transcript}");
}

/// One member of the data group, as the leader lists it.
#[derive(Debug)]
struct Member {
    id: u64,
    /// "voter", "learner" or "witness".
    role: &'static str,
    /// Its address, as the catalog records it.
    addr: Option<String>,
    /// Entries it trails the leader by (known at the leader only).
    lag_entries: Option<u64>,
}

/// The data group's members as the leader sees them (from
/// `OneGroupClient::members`, the one runtime's `GroupMembers`).
#[derive(Debug)]
struct Members {
    voters: Vec<u64>,
    learners: Vec<u64>,
    voters_outgoing: Vec<u64>,
    leader: Option<u64>,
    members: Vec<Member>,
    forced_recovery: Option<String>,
}

/// The members as the leader sees them.
async fn members(client: &mut KvClient) -> Members {
    let group = client.one_group().members().await.expect("member list");
    let m = &group.membership;
    let addrs: BTreeMap<u64, String> = group.addrs.iter().cloned().collect();
    let lags: BTreeMap<u64, u64> = group
        .progress
        .iter()
        .map(|(id, _, lag)| (*id, *lag))
        .collect();
    Members {
        voters: m.voters.iter().copied().collect(),
        learners: m.learners.iter().copied().collect(),
        voters_outgoing: m.voters_outgoing.iter().copied().collect(),
        leader: group.leader,
        forced_recovery: group.forced_recovery.clone(),
        members: m
            .members()
            .into_iter()
            .map(|id| Member {
                id,
                role: if m.is_witness(id) {
                    "witness"
                } else if m.is_voter(id) {
                    "voter"
                } else {
                    "learner"
                },
                addr: addrs.get(&id).cloned(),
                lag_entries: lags.get(&id).copied(),
            })
            .collect(),
    }
}

/// Polls a node's status until it reports itself leader.
async fn wait_leads(client: &mut KvClient, server: usize, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(status) = client.status(server).await {
            if status.role == "Leader" {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[test]
fn replace_a_dead_voter_with_the_cli_transfer_leadership_and_restart_all() {
    let mut cluster = compacting_cluster("real-member");
    let new_id = 4;
    let new_addr = cluster.add_joining(new_id);
    let mut transcript = String::new();
    runtime().block_on(async {
        let mut client = cluster.client();
        let mut acked = BTreeMap::new();
        // Past a snapshot: the new node is caught up by one, and learns
        // the address book from it.
        put_keys(&mut client, &mut acked, "before", 0, 80).await;

        // A new, empty server starts as a learner of the running cluster.
        cluster.start_with(new_id, &COMPACT_OFTEN);
        let old = cluster.servers();
        cli_ok(&mut transcript, &old, &["member", "list"]);
        let out = cli_ok(
            &mut transcript,
            &old,
            &["member", "add-learner", "4", &new_addr],
        );
        assert!(out.contains("group 1: AddLearner(4) done"), "{out}");
        // A second add of the same node is refused with the core's reason.
        let (code, _) = cli(
            &mut transcript,
            &old,
            &["member", "add-learner", "4", &new_addr],
        );
        assert_eq!(code, 1, "a duplicate add is refused");
        assert!(transcript.contains("already a member"), "{transcript}");

        // Wait for the learner to catch up (lag as the leader sees it).
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let m = members(&mut client).await;
            let learner = m.members.iter().find(|m| m.id == new_id).expect("listed");
            assert_eq!(learner.role, "learner");
            assert_eq!(learner.addr.as_deref(), Some(new_addr.as_str()));
            if learner.lag_entries == Some(0) {
                break;
            }
            assert!(Instant::now() < deadline, "learner never caught up: {m:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        cli_ok(&mut transcript, &old, &["member", "list"]);
        let out = cli_ok(&mut transcript, &old, &["member", "promote", "4"]);
        assert!(out.contains("group 1: PromoteLearner(4) done"), "{out}");
        let m = members(&mut client).await;
        assert_eq!(m.voters, vec![1, 2, 3, 4]);
        assert!(m.learners.is_empty() && m.voters_outgoing.is_empty());

        // SIGKILL an old voter (the leader: the new node must help elect
        // the next one), keep writing, then remove the dead one.
        let dead = find_leader(&mut client).await;
        cluster.sigkill(dead);
        transcript.push_str(&format!(
            "# SIGKILL node {dead} (the leader); 40 writes acknowledged by the survivors\n"
        ));
        let mut servers: Vec<String> = (1..=3u64)
            .filter(|id| *id != dead)
            .map(|id| cluster.addr(id))
            .collect();
        servers.push(new_addr.clone());
        let mut client = cluster.client_at(servers.clone());
        put_keys(&mut client, &mut acked, "after-kill", 0, 40).await;
        let out = cli_ok(
            &mut transcript,
            &servers,
            &["member", "remove", &dead.to_string()],
        );
        assert!(
            out.contains(&format!("group 1: Remove({dead}) done")),
            "{out}"
        );
        let m = members(&mut client).await;
        let mut expected: Vec<u64> = (1..=4).filter(|id| *id != dead).collect();
        expected.sort();
        assert_eq!(m.voters, expected, "{m:?}");
        put_keys(&mut client, &mut acked, "after-remove", 0, 40).await;
        read_all(&mut client, &acked).await;

        // The removed node, started again, is told it was removed: the
        // voters answer its campaign with the configuration that left it
        // out, so it stops campaigning and says so (or, if the catalog's
        // unassignment reaches it first, it stops hosting the group).
        cluster.start_with(dead, &COMPACT_OFTEN);
        let deadline = Instant::now() + Duration::from_secs(15);
        let told = |log: &str| {
            log.contains("not a voter in the committed configuration; no longer campaigning")
                || log.contains("no longer hosting a group removed from this server")
        };
        while !told(&cluster.log_text(dead)) {
            assert!(
                Instant::now() < deadline,
                "removed node {dead} never logged its removal"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        transcript.push_str(&format!(
            "# node {dead} restarted after its removal logs: no longer hosting a group removed \
             from this server\n"
        ));
        put_keys(&mut client, &mut acked, "removed-node-up", 0, 10).await;
        assert_eq!(members(&mut client).await.voters, expected);
        cluster.sigkill(dead);

        // Hand leadership to a named voter that does not lead.
        let leader = members(&mut client).await.leader.expect("a leader");
        let target = expected.iter().copied().find(|id| *id != leader).unwrap();
        let out = cli_ok(
            &mut transcript,
            &servers,
            &["member", "transfer-leader", &target.to_string()],
        );
        assert!(
            out.contains(&format!("group 1: node {target} leads now")),
            "{out}"
        );
        let index = servers
            .iter()
            .position(|s| *s == cluster.addr(target))
            .unwrap();
        assert!(
            wait_leads(&mut client, index, Duration::from_secs(5)).await,
            "node {target} reports itself leader"
        );
        cli_ok(&mut transcript, &servers, &["member", "list"]);

        // Restart every node with its original --peers (which name the
        // dead node and not the new one): the configuration and the new
        // node's address come back from the logs and snapshots.
        drop(client);
        cluster.sigterm_all();
        for id in expected.iter().copied() {
            cluster.start_with(id, &COMPACT_OFTEN);
        }
        transcript.push_str(&format!(
            "# SIGTERM every node; restart {expected:?} with their original flags \
             (--peers names 1,2,3; node 4 also --join); 10 more writes\n"
        ));
        let mut client = cluster.client_at(servers.clone());
        put_keys(&mut client, &mut acked, "after-restart", 0, 10).await;
        let m = members(&mut client).await;
        assert_eq!(m.voters, expected, "the configuration survived: {m:?}");
        assert!(m.learners.is_empty());
        assert_eq!(
            m.members
                .iter()
                .find(|m| m.id == new_id)
                .and_then(|m| m.addr.clone()),
            Some(new_addr.clone())
        );
        read_all(&mut client, &acked).await;
        cli_ok(&mut transcript, &servers, &["member", "list"]);
        // A node of the configuration with no log entries of its own yet
        // was the new one: it holds a snapshot now.
        assert!(!snapshot_files(&cluster.data_dir(new_id)).is_empty());
    });
    cluster.sigterm_all();
    println!("---- replacement walk-through ----\n{transcript}");
}

/// Runs `concord-cli force-recover` (offline: no servers) with `args`.
fn force_recover_cli(transcript: &mut String, args: &[&str]) -> (i32, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_concord-cli"))
        .arg("force-recover")
        .args(args)
        .output()
        .expect("run concord-cli force-recover");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let code = output.status.code().unwrap_or(-1);
    transcript.push_str(&format!("$ concord-cli force-recover {}\n", args.join(" ")));
    transcript.push_str(&stdout);
    transcript.push_str(&String::from_utf8_lossy(&output.stderr));
    transcript.push_str(&format!("(exit status {code})\n"));
    (code, stdout)
}

/// The flag that confirms a forced recovery.
const CONFIRM_LOSS: &str = "--i-understand-acknowledged-writes-may-be-lost";

/// The majority is lost for good: every node but `survivor` killed, its
/// disk destroyed.
fn lose_all_but(cluster: &mut NodeProcesses, survivor: u64) {
    for id in cluster.ids().into_iter().filter(|id| *id != survivor) {
        cluster.sigkill(id);
        std::fs::remove_dir_all(cluster.data_dir(id)).expect("destroy a lost disk");
    }
}

/// `concord-cli force-recover` of `survivor`'s data directory for
/// `reason`, with `flags` added.
fn force_recover_survivor(
    transcript: &mut String,
    cluster: &NodeProcesses,
    survivor: u64,
    reason: &str,
    flags: &[&str],
) -> (i32, String) {
    let data_dir = cluster.data_dir(survivor).display().to_string();
    let survivor = survivor.to_string();
    let args = [
        "--data-dir",
        &data_dir,
        "--node-id",
        &survivor,
        "--reason",
        reason,
    ];
    force_recover_cli(transcript, &[&args[..], flags].concat())
}

/// A client of the forcibly recovered survivor (`servers`, itself alone),
/// once it leads.
async fn leading_alone(cluster: &NodeProcesses, servers: &[String], transcript: &str) -> KvClient {
    let mut client = cluster.client_at(servers.to_vec());
    assert!(
        wait_leads(&mut client, 0, Duration::from_secs(20)).await,
        "the survivor did not lead after the forced recovery:\n{transcript}"
    );
    client
}

#[test]
fn forced_recovery_of_a_single_survivor_after_two_disks_are_destroyed() {
    let mut cluster = NodeProcesses::on_loopback("real-forced", CLUSTER);
    cluster.start_all();
    let mut transcript = String::new();
    let runtime = runtime();
    let (survivor, acked) = runtime.block_on(async {
        let mut client = cluster.client();
        let mut acked = BTreeMap::new();
        // The survivor is a follower that holds every acknowledged write.
        let (_, survivor) = write_to_a_follower(&mut client, &mut acked, "before", 40).await;
        (survivor, acked)
    });
    // The majority is lost for good: killed, disks destroyed.
    lose_all_but(&mut cluster, survivor);
    cluster.sigkill(survivor);
    let recover = |transcript: &mut String, flags: &[&str]| {
        force_recover_survivor(
            transcript,
            &cluster,
            survivor,
            "nodes lost in the fire",
            flags,
        )
    };

    // Without the confirmation: the plan is printed, nothing written.
    let (code, stdout) = recover(&mut transcript, &[]);
    assert_eq!(code, 1, "refused without the flag:\n{transcript}");
    assert!(stdout.contains("FORCED RECOVERY (UNSAFE)"), "{transcript}");
    assert!(stdout.contains("MAY BE LOST"), "{transcript}");
    let (code, stdout) = recover(&mut transcript, &[CONFIRM_LOSS]);
    assert_eq!(code, 0, "{transcript}");
    assert!(stdout.contains("DONE"), "{transcript}");
    // Again: nothing more is written.
    let (code, stdout) = recover(&mut transcript, &[CONFIRM_LOSS]);
    assert_eq!(code, 0, "{transcript}");
    assert!(stdout.contains("nothing written"), "{transcript}");

    cluster.start(survivor);
    let servers = vec![cluster.addr(survivor)];
    runtime.block_on(async {
        let mut client = leading_alone(&cluster, &servers, &transcript).await;
        read_all(&mut client, &acked).await;
        client
            .put("after-recovery", "served")
            .await
            .expect("write after the recovery");
        let got = client
            .get("after-recovery")
            .await
            .expect("read after the recovery");
        assert_eq!(got, Some(Bytes::from("served")));
        let members = members(&mut client).await;
        assert_eq!(members.voters, vec![survivor]);
        assert!(members.learners.is_empty() && members.voters_outgoing.is_empty());
        assert_eq!(members.leader, Some(survivor));
        let audit = members.forced_recovery.expect("the audit record is shown");
        assert!(audit.contains("forced recovery at index"), "{audit}");
        assert!(audit.contains("nodes lost in the fire"), "{audit}");
    });
    // The plan printed what the forced entry records: the reason.
    assert!(
        transcript.contains("reason \"nodes lost in the fire\""),
        "{transcript}"
    );
    let listing = cli_ok(&mut transcript, &servers, &["member", "list"]);
    assert!(
        listing.contains(&format!("voters: {survivor}  learners"))
            && listing.contains(&format!("leader {survivor}"))
            && listing.contains("AUDIT: forced recovery at index"),
        "{transcript}"
    );
    // The cluster grows back with a fresh server: the catalog was forced
    // with the group, so it takes the new server and assigns it the group.
    let new_addr = cluster.add_joining(4);
    cluster.start(4);
    cli_ok(
        &mut transcript,
        &servers,
        &["member", "add-learner", "4", &new_addr],
    );
    let promoted = cli_ok(&mut transcript, &servers, &["member", "promote", "4"]);
    assert!(
        promoted.contains(&format!("voters {survivor},4"))
            || promoted.contains(&format!("voters 4,{survivor}")),
        "{transcript}"
    );
    println!("{transcript}");
    cluster.sigterm_all();
}

/// Of a data-group snapshot file: the members of the configuration it
/// stores, and its state-machine bytes. (On the one runtime the address
/// book lives in the catalog, group 0, which every server keeps, witness
/// or not; a data group's snapshot holds only its state and its
/// configuration.)
fn snapshot_state_bytes(path: &Path) -> (usize, usize) {
    let snapshot = concord_tokio::snapshot_file::read_snapshot_file(path).expect("readable");
    let members = snapshot
        .membership
        .as_ref()
        .map_or(0, |membership| membership.members().len());
    (members, snapshot.data.len())
}

#[test]
fn two_voters_and_a_witness_keep_serving_when_a_voter_dies() {
    // Two full voters are born; a third server starts empty as a witness
    // and is added with `member add-witness`.
    let mut cluster = NodeProcesses::on_loopback_n("real-witness", CLUSTER, 2);
    let witness = 3;
    let witness_addr = cluster.add_joining(witness);
    cluster.start_all_with(&COMPACT_OFTEN);
    let witness_flags = [&COMPACT_OFTEN[..], &["--witness"]].concat();
    cluster.start_with(witness, &witness_flags);
    let mut transcript = String::new();
    // The witness first: requests it gets are redirected to the leader.
    let all = vec![witness_addr.clone(), cluster.addr(1), cluster.addr(2)];
    let index_of = |id: u64| if id == witness { 0 } else { id as usize };
    runtime().block_on(async {
        let mut client = cluster.client_at(all.clone());
        let mut acked = BTreeMap::new();
        put_keys(&mut client, &mut acked, "before", 0, 20).await;

        let voters = cluster.servers();
        let out = cli_ok(
            &mut transcript,
            &voters,
            &["member", "add-witness", "3", &witness_addr],
        );
        assert!(out.contains("group 1: AddWitness(3) done"), "{out}");
        let m = members(&mut client).await;
        assert_eq!(m.voters, vec![1, 2, 3], "{m:?}");
        let role = |m: &Members, id: u64| m.members.iter().find(|x| x.id == id).unwrap().role;
        assert_eq!(role(&m, witness), "witness");
        assert_eq!(role(&m, 1), "voter");
        let out = cli_ok(&mut transcript, &voters, &["member", "list"]);
        assert!(out.contains("witnesses: 3"), "{out}");

        // Past two snapshot intervals: the witness compacts its log too.
        put_keys(&mut client, &mut acked, "with-witness", 0, 120).await;
        let leader = find_leader_of(&mut client, &[1, 2], index_of).await;
        let leader_commit = client.status(index_of(leader)).await.unwrap().commit_index;
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            let status = client
                .status(index_of(witness))
                .await
                .expect("witness status");
            if status.applied_index >= leader_commit && status.snapshot_index > 0 {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "the witness never compacted: {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(
            status.server.entries_applied, 0,
            "a witness applies nothing"
        );
        assert!(status.first_index > 1, "its log was compacted: {status:?}");
        // A client that knows only the witness is redirected, not served.
        // (The cluster's client remembers the leader and avoids servers
        // that failed it, so it may never have asked the witness.)
        let mut config =
            concord_tokio::client::ClientConfig::new(vec![witness_addr.clone()], CLUSTER);
        config.attempts_max = 2;
        config.request_timeout = Duration::from_millis(500);
        let _ = KvClient::new(config).put("asked-the-witness", "x").await;
        let status = client
            .status(index_of(witness))
            .await
            .expect("witness status");
        assert!(
            status.server.redirects > 0,
            "it redirected clients: {status:?}"
        );
        assert_eq!(status.server.entries_applied, 0, "{status:?}");

        // SIGKILL the leader: the other full voter is elected with the
        // witness's vote, and the two of them acknowledge writes.
        cluster.sigkill(leader);
        let survivor = 3 - leader;
        transcript.push_str(&format!(
            "# SIGKILL node {leader} (the leader); node {survivor} and witness 3 keep serving\n"
        ));
        let mut client = cluster.client_at(vec![witness_addr.clone(), cluster.addr(survivor)]);
        put_keys(&mut client, &mut acked, "voter-down", 0, 30).await;
        let status = client.status(1).await.expect("survivor status");
        assert_eq!(status.role, "Leader", "{status:?}");
        let status = client.status(0).await.expect("witness status");
        assert_eq!(status.role, "Follower", "{status:?}");
        assert_eq!(status.leader, Some(survivor));
        assert_eq!(
            status.server.elections_started, 0,
            "a witness never campaigns"
        );
        assert_eq!(status.server.leader_elected, 0);

        // The dead voter restarts, catches up, and serves every
        // acknowledged write from its own state machine.
        cluster.start_with(leader, &COMPACT_OFTEN);
        let mut client = cluster.client_at(all.clone());
        put_keys(&mut client, &mut acked, "voter-back", 0, 5).await;
        wait_caught_up_at(
            &mut client,
            index_of(survivor),
            index_of(leader),
            Duration::from_secs(15),
        )
        .await;
        let mut at_restarted = cluster.client_at(vec![cluster.addr(leader)]);
        for (k, v) in &acked {
            let got = at_restarted
                .get_via(k.clone(), Some(concord::ReadPath::Follower))
                .await
                .expect("follower read at the restarted voter");
            assert_eq!(got, Some(Bytes::from(v.clone())), "key {k}");
        }
        let status = client.status(index_of(witness)).await.unwrap();
        assert_ne!(status.role, "Leader");
        assert_eq!(status.server.entries_applied, 0);
        assert_eq!(status.server.elections_started, 0);
    });
    cluster.sigterm_all();
    // Its snapshots hold the configuration and no state-machine data.
    let files = snapshot_files(&cluster.data_dir(witness));
    assert!(!files.is_empty(), "the witness compacted its log");
    for file in &files {
        let (book_entries, state_bytes) = snapshot_state_bytes(file);
        assert_eq!(
            state_bytes,
            0,
            "{} holds state-machine data",
            file.display()
        );
        assert!(
            book_entries >= 3,
            "{} keeps the configuration",
            file.display()
        );
    }
    // The full voters' snapshots do hold the state machine.
    let (_, state_bytes) = snapshot_state_bytes(&snapshot_files(&cluster.data_dir(1))[0]);
    assert!(state_bytes > 0);
    println!("---- witness walk-through ----\n{transcript}");
}

/// The leader among `ids`, asked of each (`index_of` maps an id to its
/// place in the client's server list).
async fn find_leader_of(
    client: &mut KvClient,
    ids: &[u64],
    index_of: impl Fn(u64) -> usize,
) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for id in ids {
            if let Ok(status) = client.status(index_of(*id)).await {
                if status.role == "Leader" {
                    return *id;
                }
            }
        }
        assert!(Instant::now() < deadline, "no leader among {ids:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Client sessions across a forced recovery, on real processes: a client
/// registers its session on the two servers that are then lost, while the
/// survivor is down (so the survivor never holds that registration). After
/// the forced recovery new clients register until the survivor's log is
/// past the lost session's index: none is given the lost session's id
/// (their ids carry the new id epoch), and the lost session's command is
/// never executed in it: the group answers the session expired. The one
/// runtime's session client, told so before any copy could have been
/// applied, opens a new session (of the new epoch) and applies the
/// command once in that; told so after an unknown outcome, it returns
/// `SessionExpired` and nothing is applied.
#[test]
fn a_session_from_lost_servers_expires_and_is_never_given_to_a_new_client() {
    use concord::session::client_id_parts;
    use concord_services::CallError;
    use concord_tokio::client::ClientError;

    let mut cluster = NodeProcesses::on_loopback("real-forced-sessions", CLUSTER);
    cluster.start_all();
    let mut transcript = String::new();
    let runtime = runtime();
    let survivor = runtime.block_on(async {
        let mut client = cluster.client();
        let mut acked = BTreeMap::new();
        let (_, survivor) = write_to_a_follower(&mut client, &mut acked, "before", 5).await;
        survivor
    });
    // The lost session's holder learns every server's id while all three
    // answer (a read opens no session): the one runtime's client reaches
    // only servers that told it their id, or that a redirect names.
    let mut lost_client = cluster.client();
    runtime.block_on(async {
        lost_client.get("before-0").await.expect("a read");
    });
    assert!(lost_client.session().is_none(), "a read opened a session");
    cluster.sigkill(survivor);
    let lost_session = runtime.block_on(async {
        lost_client
            .put("lost-key", "from the lost servers")
            .await
            .expect("write on the two servers about to be lost");
        lost_client.session().expect("registered")
    });
    lose_all_but(&mut cluster, survivor);
    let (code, _) = force_recover_survivor(
        &mut transcript,
        &cluster,
        survivor,
        "two servers lost",
        &[CONFIRM_LOSS],
    );
    assert_eq!(code, 0, "{transcript}");
    cluster.start(survivor);
    let servers = vec![cluster.addr(survivor)];
    runtime.block_on(async {
        let mut reader = leading_alone(&cluster, &servers, &transcript).await;
        let (lost_epoch, lost_index) = client_id_parts(lost_session);
        assert_eq!(lost_epoch, 0);
        // Each new client registers (one entry) and writes (one more), so
        // the registrations walk the indices up past the lost session's.
        let mut fresh = Vec::new();
        for i in 0..200 {
            let mut client = cluster.client_at(servers.clone());
            client
                .put(format!("after-{i}"), "new session")
                .await
                .expect("write after the recovery");
            let id = client.session().expect("registered");
            assert_ne!(id, lost_session, "the lost session's id was given again");
            assert_eq!(
                client_id_parts(id).0,
                1,
                "session {id:#x} is not of epoch 1"
            );
            let past = client_id_parts(id).1 >= lost_index;
            fresh.push(client);
            if past {
                break;
            }
        }
        assert!(
            fresh
                .last()
                .and_then(KvClient::session)
                .is_some_and(|id| client_id_parts(id).1 >= lost_index),
            "200 registrations did not reach index {lost_index}"
        );
        match lost_client
            .put("lost-key", "written with a lost session")
            .await
        {
            Err(CallError::Client(ClientError::SessionExpired)) => {
                assert_eq!(reader.get("lost-key").await.expect("read"), None);
            }
            Ok(_) => {
                // Reopened: a new session of the new epoch, never the
                // lost one's id, and the command applied once in it.
                let id = lost_client.session().expect("a new session");
                assert_ne!(id, lost_session, "the lost session's id was used again");
                assert_eq!(
                    client_id_parts(id).0,
                    1,
                    "session {id:#x} is not of epoch 1"
                );
                assert_eq!(
                    reader.get("lost-key").await.expect("read"),
                    Some(Bytes::from("written with a lost session"))
                );
            }
            other => panic!("a lost session's command answered {other:?}"),
        }
        // The new sessions are intact: each writes again, exactly once.
        for (i, client) in fresh.iter_mut().enumerate() {
            client
                .append(format!("after-{i}"), "+again")
                .await
                .expect("a new session writes again");
            assert_eq!(
                reader.get(format!("after-{i}")).await.expect("read"),
                Some(Bytes::from("new session+again"))
            );
        }
    });
    cluster.sigterm_all();
}
