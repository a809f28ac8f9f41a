//! What the client does when servers fail, with real `concord-node`
//! processes:
//!
//! * follower reads avoid a SIGSTOPped and a SIGKILLed server instead of
//!   hitting it on every turn (counted in retries, not timed);
//! * "may or may not have been applied" only when a request was sent and
//!   its answer lost (exit 3); nothing reachable, or a write never sent
//!   (its client session never registered), is "nothing was applied"
//!   (exit 1);
//! * a removed server that keeps running says so in `status --group 1`
//!   (it no longer hosts the group), and `member list` asked of it alone
//!   prints the leader's view.

use std::time::{Duration, Instant};

use concord::ReadPath;
use concord_services::{CallError, KvClient};
use concord_tokio::client::ClientConfig;

#[path = "common/processes.rs"]
mod processes;

use processes::{output_of, runtime, NodeProcesses};

const CLUSTER: &str = "client-failures";

/// Runs `concord-cli --servers <servers> --cluster-id CLUSTER <args>`:
/// exit code, stdout, stderr.
fn cli(servers: &[String], args: &[&str]) -> (i32, String, String) {
    output_of(
        std::process::Command::new(processes::cli_binary())
            .args(["--servers", &servers.join(","), "--cluster-id", CLUSTER])
            .args(args),
    )
}

/// Starts all three nodes and waits until a write goes through.
async fn start_and_write(cluster: &mut NodeProcesses, keys: u64) -> KvClient {
    cluster.start_all();
    let mut client = cluster.client();
    for i in 0..keys {
        client
            .put(format!("key-{i}"), format!("value-{i}"))
            .await
            .expect("a write with every node up");
    }
    client
}

/// The leader's id, asked of every node until one leads.
async fn leader(client: &mut KvClient) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(id) = processes::leader_id(client, 3).await {
            return id;
        }
        assert!(Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Most retries `reads` follower reads may take with one server down for
/// `elapsed`, had the client learnt from failure: the first failure, then
/// one probe per avoidance period, the periods doubling from `avoid_min`.
fn retries_bound(elapsed: Duration, avoid_min: Duration) -> u64 {
    let periods = elapsed.as_secs_f64() / avoid_min.as_secs_f64() + 1.0;
    2 + periods.log2().ceil() as u64
}

/// Runs `reads` follower reads of the keys with a fresh client; returns
/// its retries and the time taken. Stops early, once the retries are
/// past any bound, so a client that does not learn fails quickly.
async fn follower_reads(servers: Vec<String>, keys: u64, reads: u64) -> (u64, Duration) {
    let mut config = ClientConfig::new(servers, CLUSTER);
    config.request_timeout = Duration::from_millis(500);
    let mut client = KvClient::new(config);
    client.set_read_path(Some(ReadPath::Follower));
    let started = Instant::now();
    for i in 0..reads {
        let key = format!("key-{}", i % keys);
        let value = client.get(key.clone()).await.expect("a follower read");
        assert_eq!(
            value.as_deref(),
            Some(format!("value-{}", i % keys).as_bytes())
        );
        if client.retries() > 50 {
            break;
        }
    }
    (client.retries(), started.elapsed())
}

/// Keys written, then read back by the follower reads.
const KEYS: u64 = 20;
/// Follower reads per phase.
const READS: u64 = 300;

/// Runs [`READS`] follower reads of [`KEYS`] keys with node `follower`
/// `down` (first in `servers`): the client's retries stay within the
/// bound of one that learns to avoid it.
async fn reads_avoid(servers: Vec<String>, follower: u64, down: &str, avoid_min: Duration) {
    let (retries, took) = follower_reads(servers, KEYS, READS).await;
    let bound = retries_bound(took, avoid_min);
    eprintln!(
        "node {follower} {down}: {READS} follower reads, {retries} retries in {took:?} \
         (bound {bound})"
    );
    assert!(
        retries <= bound,
        "{retries} retries for {READS} reads in {took:?} with node {follower} {down}: the \
         client kept going back to it (at most {bound} expected)"
    );
}

#[test]
fn follower_reads_avoid_a_stopped_and_a_killed_server() {
    let mut cluster = NodeProcesses::on_loopback("avoid-dead", CLUSTER);
    // The client's default first avoidance (`ClientConfig::avoid_min`).
    let avoid_min = Duration::from_secs(1);
    runtime().block_on(async {
        let mut client = start_and_write(&mut cluster, KEYS).await;
        let leader = leader(&mut client).await;
        let follower = (1..=3).find(|id| *id != leader).unwrap();
        // Every read may go to the stopped follower first: it is the
        // first server of the list.
        let mut servers = cluster.servers();
        servers.rotate_left(follower as usize - 1);

        cluster.signal(follower, libc::SIGSTOP);
        reads_avoid(servers.clone(), follower, "stopped (SIGSTOP)", avoid_min).await;
        cluster.signal(follower, libc::SIGCONT);
        cluster.sigkill(follower);
        reads_avoid(servers, follower, "dead (SIGKILL)", avoid_min).await;
    });
}

#[test]
fn maybe_applied_only_when_a_request_was_sent_and_its_answer_lost() {
    // Nothing listens: nothing can have been applied.
    let nowhere = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let (code, _, stderr) = cli(&[nowhere], &["--timeout-ms", "200", "kv", "put", "k", "v"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("nothing was applied"), "{stderr}");
    assert!(!stderr.contains("may or may not"), "{stderr}");

    // A leader whose followers are stopped cannot commit anything.
    let mut cluster = NodeProcesses::on_loopback("maybe-applied", CLUSTER);
    runtime().block_on(async {
        let mut client = start_and_write(&mut cluster, 1).await;
        let leader = leader(&mut client).await;
        // A client whose session is registered while every node is up:
        // its next write is sent at once.
        let mut config = ClientConfig::new(vec![cluster.addr(leader)], CLUSTER);
        config.request_timeout = Duration::from_millis(300);
        config.attempts_max = 3;
        let mut registered = KvClient::new(config);
        registered
            .put("k", "before")
            .await
            .expect("a write with every node up");
        for id in (1..=3).filter(|id| *id != leader) {
            cluster.signal(id, libc::SIGSTOP);
        }
        // The leader takes the write of a client whose session is
        // registered and cannot commit it: sent, answer lost. The error is the one
        // `concord-cli` ends with exit 3 on (`ClientError::outcome_unknown`),
        // worded as it prints it.
        let error = registered
            .put("k", "v")
            .await
            .expect_err("a write no majority can commit");
        match &error {
            CallError::Client(client_error) => {
                assert!(client_error.outcome_unknown(), "{error}")
            }
            other => panic!("not a client error: {other}"),
        }
        assert!(!error.definitely_not_applied(), "{error}");
        assert!(
            error
                .to_string()
                .contains("may or may not have been applied"),
            "{error}"
        );

        let (code, _, stderr) = cli(
            &[cluster.addr(leader)],
            &["--timeout-ms", "300", "kv", "put", "k", "v"],
        );
        // A fresh `concord-cli` process registers its client session (an
        // entry of the log) before it sends the write: the registration
        // is never answered (and the leader steps down meanwhile), the
        // write is never sent: nothing was applied (exit 1).
        assert_eq!(code, 1, "no write was sent: {stderr}");
        assert!(stderr.contains("nothing was applied"), "{stderr}");
        assert!(!stderr.contains("may or may not"), "{stderr}");
        for id in (1..=3).filter(|id| *id != leader) {
            cluster.signal(id, libc::SIGCONT);
        }
    });
}

/// The configuration index of a group's member list as `concord-cli
/// member ...` prints it ("group G: configuration at index N ...").
fn configuration_index(list: &str) -> u64 {
    list.split("configuration at index ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no configuration index in:\n{list}"))
}

#[test]
fn a_removed_server_says_so_and_member_list_prints_the_leaders_view() {
    let mut cluster = NodeProcesses::on_loopback("removed", CLUSTER);
    let new_addr = cluster.add_joining(4);
    runtime().block_on(async {
        let mut client = start_and_write(&mut cluster, 5).await;
        let servers = cluster.servers();
        cluster.start(4);
        // Node 4 joins as a voter; node 1 is removed and keeps running.
        let ok = |args: &[&str]| {
            let mut last = String::new();
            for _ in 0..20 {
                let (code, stdout, stderr) = cli(&servers, args);
                if code == 0 {
                    return stdout;
                }
                last = format!("exit {code}: {stdout}{stderr}");
                std::thread::sleep(Duration::from_millis(300));
            }
            panic!("concord-cli {args:?} kept failing: {last}");
        };
        ok(&["member", "add", "4", &new_addr]);
        // The configuration without node 1, as `member remove` prints it.
        let removed_at = configuration_index(&ok(&["member", "remove", "1"]));
        // A later change node 1 cannot know of: a learner that never runs.
        let spare = cluster.add_joining(5);
        ok(&["member", "add-learner", "5", &spare]);
        // Node 4 leads: the client, given only nodes 1 to 3, must learn
        // its address from a follower's redirect to write at all.
        let transfer = ["member", "transfer-leader", "4"];
        let mut led_by_4 = false;
        for _ in 0..20 {
            let (code, _, stderr) = cli(&servers, &transfer);
            if code == 0 || stderr.contains("already the leader") {
                led_by_4 = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        assert!(led_by_4, "node 4 never took the leadership");
        client
            .put("after", "removal")
            .await
            .expect("a write through node 4, whose address came in a redirect");

        // Node 1 learns it is out (the catalog no longer assigns it group
        // 1: it stops hosting the group) and says so in `status`.
        let node1 = vec![cluster.addr(1)];
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (code, stdout, stderr) = cli(&node1, &["status"]);
            assert_eq!(code, 0, "{stderr}");
            if stdout.contains("not a member: it does not host the cluster's group") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node 1 never said it was removed:\n{stdout}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        // `member list` asked of node 1 alone prints the leader's view:
        // voters 2,3,4, learner 5, a configuration at least as new as the
        // removal of node 1.
        let (code, stdout, stderr) = cli(&node1, &["member", "list"]);
        assert_eq!(code, 0, "{stderr}");
        assert!(stdout.contains("voters: 2,3,4  learners: 5\n"), "{stdout}");
        assert!(stdout.contains(", leader 4, as node 4 sees it"), "{stdout}");
        assert!(configuration_index(&stdout) >= removed_at, "{stdout}");
        assert!(!stdout.contains("as node 1 sees it"), "{stdout}");
    });
}

/// Another cluster's id (a forgotten `--cluster-id`) is refused by every
/// server as configured: the CLI stops at once with exit 4 and names the
/// cluster ids, instead of retrying and saying the operation "may or may
/// not have been applied".
#[test]
fn a_wrong_cluster_id_is_refused_at_once_with_its_own_exit_code() {
    let mut cluster = NodeProcesses::on_loopback("wrong-cluster-id", CLUSTER);
    runtime().block_on(async {
        start_and_write(&mut cluster, 1).await;
    });
    let servers: Vec<String> = (1..=3).map(|id| cluster.addr(id)).collect();
    let output = std::process::Command::new(processes::cli_binary())
        .args([
            "--servers",
            &servers.join(","),
            "--cluster-id",
            "not-this-one",
        ])
        .args(["kv", "get", "key-0"])
        .output()
        .expect("run concord-cli");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("cluster id") && stderr.contains("not-this-one"),
        "{stderr}"
    );
    assert!(!stderr.contains("may or may not"), "{stderr}");
    assert!(!stderr.contains("attempts"), "retried: {stderr}");
}

/// `concord-cli status` with every server unreachable prints a row per
/// server saying so and exits 1, naming what to check: it used to exit
/// 0, as if the cluster had answered.
#[test]
fn status_exits_1_when_no_server_answers() {
    let nowhere: Vec<String> = (0..2)
        .map(|_| {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().to_string()
        })
        .collect();
    let (code, stdout, stderr) = cli(&nowhere, &["--timeout-ms", "300", "status"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    for addr in &nowhere {
        let row = stdout
            .lines()
            .find(|line| line.starts_with(addr.as_str()))
            .unwrap_or_else(|| panic!("no row for {addr}:\n{stdout}"));
        assert!(row.contains("unreachable"), "{stdout}");
    }
    assert!(stderr.contains("no server answered"), "{stderr}");
    // One server answering is enough for exit 0.
    let mut cluster = NodeProcesses::on_loopback("status-one-up", CLUSTER);
    cluster.start(1);
    let mut servers = nowhere.clone();
    servers.push(cluster.addr(1));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, stdout, stderr) = cli(&servers, &["--timeout-ms", "300", "status"]);
        if code == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "status never exited 0 with node 1 up: {stdout}{stderr}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
