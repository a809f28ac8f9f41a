//! On real `concord-node` processes: `--peers` that no
//! longer match the cluster's voters.
//!
//! * A learner started with `--join --peers` naming the voters the
//!   cluster was born with, after the voters changed (node 1 removed and
//!   stopped, node 4 added and leading the group and the catalog),
//!   accepts the leader's connections although its `--peers` do not name
//!   it (same cluster, same incarnation), learns node 4's address from
//!   the servers its `--peers` do name, catches up from the log, and is
//!   promoted.
//! * A node that joined restarts with `--join` and `--peers` naming the
//!   current voters, itself included (`--join` is ignored once its log
//!   holds a configuration), and serves; a new node started so is
//!   refused, naming why.
//!
//! Before the fix the learner refused node 4 ("node 4 is not a member
//! of this cluster") and `promote` was refused for good, and the joined
//! node refused to start ("--join: node 4 is listed in --peers").
//!
//! ```text
//! cargo test -p concord-node --test membership_peers -- --nocapture
//! ```

#[path = "common/processes.rs"]
mod processes;

use std::time::{Duration, Instant};

use processes::{cli_binary, output_of, NodeProcesses};

const CLUSTER: &str = "membership-peers";

/// Runs `concord-cli --servers <servers> --cluster-id CLUSTER <args>`:
/// exit code, stdout, stderr.
fn cli(servers: &[String], args: &[&str]) -> (i32, String, String) {
    output_of(
        std::process::Command::new(cli_binary())
            .args(["--servers", &servers.join(","), "--cluster-id", CLUSTER])
            .args(["--timeout-ms", "1000"])
            .args(args),
    )
}

/// Runs `args` until it succeeds, for up to `within`; its stdout.
fn ok_within(servers: &[String], args: &[&str], within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let (code, stdout, stderr) = cli(servers, args);
        if code == 0 {
            return stdout;
        }
        assert!(
            Instant::now() < deadline,
            "concord-cli {args:?} kept failing for {within:?} (exit {code}): {stdout}{stderr}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn ok(servers: &[String], args: &[&str]) -> String {
    ok_within(servers, args, Duration::from_secs(30))
}

/// `id=addr,...` of `ids`.
fn peers_of(cluster: &NodeProcesses, ids: &[u64]) -> String {
    ids.iter()
        .map(|id| format!("{id}={}", cluster.addr(*id)))
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn a_learner_with_stale_peers_catches_up_and_a_joined_node_restarts_with_the_voters() {
    let mut cluster = NodeProcesses::on_loopback("stale-peers", CLUSTER);
    cluster.start_all();
    let addr4 = cluster.add_joining(4);
    let addr5 = cluster.add_joining(5);
    let servers = || -> Vec<String> { (1..=5).map(|id| cluster.addr(id)).collect() };
    let all = servers();
    ok(&all, &["kv", "put", "before", "1"]);

    // The voters change: node 4 joins and leads, node 1 is removed and
    // stopped.
    cluster.start(4);
    ok(&all, &["member", "add-learner", "4", &addr4]);
    ok(&all, &["member", "promote", "4"]);
    ok(&all, &["member", "remove", "1"]);
    cluster.sigkill(1);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, _, stderr) = cli(&all, &["member", "transfer-leader", "4"]);
        if code == 0 || stderr.contains("already the leader") {
            break;
        }
        assert!(Instant::now() < deadline, "node 4 never led: {stderr}");
        std::thread::sleep(Duration::from_millis(300));
    }
    // The catalog (group 0) is led by node 4 too: node 5 below must
    // learn node 4's address before it can answer it, from the servers
    // it knows.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, _, stderr) = cli(&all, &["--group", "0", "member", "transfer-leader", "4"]);
        if code == 0 || stderr.contains("already the leader") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 4 never led the catalog: {stderr}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    ok(&all, &["kv", "put", "voters", "2,3,4"]);

    // Node 5 starts with --join and --peers naming nodes 1, 2 and 3, the
    // voters of the cluster's birth: stale, node 4 (the leader) is not
    // in them and node 1 is gone.
    cluster.start(5);
    ok(&all, &["member", "add-learner", "5", &addr5]);
    let promoted = ok_within(&all, &["member", "promote", "5"], Duration::from_secs(20));
    assert!(promoted.contains("voters 2,3,4,5"), "{promoted}");
    let log5 = cluster.log_text(5);
    // Node 5 learns node 4's address from the servers its --peers name:
    // its listener asks them when node 4 (the catalog's leader) dials it
    // with the cluster's incarnation, or the catalog's entry naming node 4
    // reaches it first.
    assert!(
        log5.contains("joining as a learner: add this node with `concord-cli member add-learner 5"),
        "node 5 did not say how to add it:\n{log5}"
    );
    let learned = format!("node 4 is at {addr4}");
    let from_catalog = format!("a new server of the cluster peer=4 addr=\"{addr4}\"");
    assert!(
        log5.contains(&learned) || log5.contains(&from_catalog),
        "node 5 did not learn node 4's address:\n{log5}"
    );
    assert!(
        !log5.contains("as node 5 knows it"),
        "node 5 refused a member:\n{log5}"
    );
    // It holds the data: a follower read at node 5 alone.
    ok(&all, &["kv", "put", "after", "5"]);
    let at5 = vec![addr5.clone()];
    let value = ok(&at5, &["--read", "follower", "kv", "get", "after"]);
    assert_eq!(value.trim(), "5");

    // Node 4, which joined, restarts with --join (as its service unit
    // still says) and --peers naming the current voters, itself among
    // them: its log's configuration is in force.
    cluster.sigkill(4);
    let voters = peers_of(&cluster, &[2, 3, 4, 5]);
    cluster.start_with_peers(4, &voters, &[]);
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        cluster.still_runs(4),
        "node 4 did not start:\n{}",
        cluster.log_text(4)
    );
    assert!(
        cluster.log_text(4).contains("--join is ignored"),
        "{}",
        cluster.log_text(4)
    );
    ok(&all, &["kv", "put", "restarted", "4"]);
    let at4 = vec![addr4.clone()];
    let value = ok(&at4, &["--read", "follower", "kv", "get", "restarted"]);
    assert_eq!(value.trim(), "4");

    // A new node started that way never joined: refused, naming why.
    let addr6 = cluster.add_joining(6);
    let with_6 = format!("{voters},6={addr6}");
    cluster.start_with_peers(6, &with_6, &[]);
    let exit = cluster.wait_exit(6, Duration::from_secs(20));
    let log6 = cluster.log_text(6);
    assert_eq!(exit.and_then(|s| s.code()), Some(2), "{log6}");
    assert!(
        log6.contains("--join: node 6 is listed in --peers")
            && log6.contains("holds no configuration yet"),
        "{log6}"
    );
    cluster.sigterm_all();
}
