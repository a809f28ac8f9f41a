//! What clients of many groups do, on real `concord-node --groups`
//! processes on loopback:
//!
//! * with node 1 stopped (SIGSTOP: its port still takes connections,
//!   which then get no handshake, as a hung or unreachable host's would),
//!   a routing client's first request to each group waits no connect
//!   timeout once one request learnt node 1 is down: one failed connect
//!   to node 1 in all, not one per group; and every `concord-cli --groups
//!   N` command is answered well within one connect timeout (its
//!   handshakes with the servers end once the fastest answered);
//! * a single-group client's request (`concord-cli` without `--groups`)
//!   to a multi-group server is answered "this server hosts N groups: use
//!   --groups N", at once, and not logged as malformed input.
//!
//! ```text
//! cargo test -p concord-node --test multi_group_clients -- --nocapture
//! ```

#[path = "common/processes.rs"]
mod processes;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use concord_services::sharded_kv::ShardMap;
use concord_services::sharded_kv_client::ShardedKvClient;
use concord_tokio::multi::routing_client::RoutingConfig;
use processes::{cli_binary, output_of, NodeProcesses};

const CLUSTER: &str = "multi-clients";
const GROUPS: u64 = 16;

/// The connect timeout of the routing client measured here (its
/// default) and of `concord-cli` (its `--timeout-ms` default).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// One key of each group.
fn keys_of_every_group(map: &ShardMap) -> Vec<String> {
    map.group_ids()
        .map(|group| {
            (0..)
                .map(|i| format!("g{group}-{i}"))
                .find(|key| map.group_of(key.as_bytes()) == group)
                .expect("some key hashes to every group")
        })
        .collect()
}

/// Three `--groups GROUPS` nodes, started.
fn cluster(label: &str) -> NodeProcesses {
    let mut cluster = NodeProcesses::on_loopback(label, CLUSTER);
    cluster.start_all_with(&["--groups", &GROUPS.to_string()]);
    cluster
}

/// A sharded client of `servers`: patient, so that it outlasts
/// elections.
fn client(servers: BTreeMap<u64, String>) -> ShardedKvClient {
    let mut config = RoutingConfig::new(CLUSTER, servers);
    config.connect_timeout = CONNECT_TIMEOUT;
    config.request_timeout = Duration::from_secs(5);
    config.attempts_max = 64;
    ShardedKvClient::new(ShardMap::new(GROUPS).unwrap(), config).unwrap()
}

/// `concord-cli --servers <all> --cluster-id CLUSTER <args>`: exit code,
/// stdout, stderr, and how long it took.
fn cli(cluster: &NodeProcesses, args: &[&str]) -> (i32, String, String, Duration) {
    let started = Instant::now();
    let (code, out, err) = output_of(
        Command::new(cli_binary())
            .args(["--servers", &cluster.servers().join(",")])
            .args(["--cluster-id", CLUSTER])
            .args(args),
    );
    (code, out, err, started.elapsed())
}

#[test]
fn with_node_1_stopped_the_first_request_per_group_waits_no_connect_timeout() {
    let cluster = cluster("stopped-node-1");
    let map = ShardMap::new(GROUPS).unwrap();
    let keys = keys_of_every_group(&map);
    let all: BTreeMap<u64, String> = cluster.addrs.clone();
    let survivors: BTreeMap<u64, String> = all
        .iter()
        .filter(|(id, _)| **id != 1)
        .map(|(id, addr)| (*id, addr.clone()))
        .collect();
    let runtime = processes::runtime();
    runtime.block_on(async {
        // Every group serves before node 1 stops.
        let mut warm = client(all.clone());
        for key in &keys {
            warm.put(key.clone(), "before").await.expect("a write");
        }
    });
    cluster.signal(1, libc::SIGSTOP);
    runtime.block_on(async {
        // Every group elects a leader among nodes 2 and 3 (those node 1
        // led too): a read of each through them alone is answered.
        let mut survivors_only = client(survivors);
        for key in &keys {
            let deadline = Instant::now() + Duration::from_secs(60);
            while survivors_only.get(key.clone()).await.is_err() {
                assert!(Instant::now() < deadline, "group of {key} never served");
            }
        }

        // A new client of all three nodes, node 1 first in id order, and
        // long avoidance (what is measured is that the failure is
        // remembered across groups, not how long).
        let mut config = RoutingConfig::new(CLUSTER, all.clone());
        config.connect_timeout = CONNECT_TIMEOUT;
        config.request_timeout = Duration::from_secs(5);
        config.avoid_min = Duration::from_secs(60);
        config.avoid_max = Duration::from_secs(60);
        let mut fresh = ShardedKvClient::new(map, config).unwrap();
        let mut took = Vec::new();
        for key in &keys {
            let started = Instant::now();
            fresh.put(key.clone(), "after").await.expect("a write");
            took.push(started.elapsed());
        }
        let stats = fresh.routing().stats();
        eprintln!(
            "node 1 stopped: first request of each of {GROUPS} groups took {:?} ms; {stats:?}",
            took.iter().map(Duration::as_millis).collect::<Vec<_>>()
        );
        // The first request learnt it: one connect timeout.
        assert!(took[0] >= CONNECT_TIMEOUT, "{took:?}");
        for (group, took) in took.iter().enumerate().skip(1) {
            assert!(
                *took < CONNECT_TIMEOUT / 2,
                "the first request to group {} took {took:?}: it waited on node 1, down and \
                 known down (connect timeout {CONNECT_TIMEOUT:?})",
                group + 1
            );
        }
        assert_eq!(
            stats.connect_failures, 1,
            "node 1 was dialled more than once: {stats:?}"
        );
        assert!(fresh.routing().avoids(1));
    });

    // Each concord-cli command: its handshakes end once the fastest
    // server answered, and node 1 is not dialled again for the request.
    for key in keys.iter().take(4) {
        let (code, _, err, took) = cli(
            &cluster,
            &["--groups", &GROUPS.to_string(), "kv", "put", key, "cli"],
        );
        eprintln!("concord-cli --groups {GROUPS} kv put {key}: {took:?}");
        assert_eq!(code, 0, "{err}");
        assert!(
            took < CONNECT_TIMEOUT,
            "concord-cli took {took:?} with node 1 stopped (connect timeout {CONNECT_TIMEOUT:?})"
        );
    }
    cluster.signal(1, libc::SIGCONT);
}

#[test]
fn a_single_group_request_to_a_multi_group_server_names_the_group_count() {
    let mut cluster = cluster("one-group-client");
    // The cluster serves (a --groups client's write goes through).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, _, err, _) = cli(
            &cluster,
            &["--groups", &GROUPS.to_string(), "kv", "put", "k", "v"],
        );
        if code == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the cluster never served: {err}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let hint = format!("this server hosts {GROUPS} groups: use --groups {GROUPS}");
    // A client without --groups asks a server how many groups it hosts
    // before it sends anything: a write, a follower read and a ReadIndex
    // read are refused with the group count, none sent to group 1.
    for args in [
        &["kv", "put", "k", "v"][..],
        &["--read", "follower", "kv", "get", "k"][..],
        &["kv", "get", "k"][..],
    ] {
        let (code, out, err, took) = cli(&cluster, args);
        eprintln!("concord-cli {args:?} (no --groups): exit {code} in {took:?}: {err}");
        assert_eq!(code, 1, "{out}{err}");
        assert!(err.contains(&hint), "{err}");
        assert!(!err.contains("may or may not"), "{err}");
        // Answered by each server once, not retried for 30 attempts.
        assert!(took < Duration::from_secs(1), "{took:?}: {err}");
    }
    // `status` and `member list` get the same answer from every server.
    let (code, out, err, _) = cli(&cluster, &["status"]);
    assert_eq!(code, 1, "no server answered with a status: {out}{err}");
    assert!(out.contains(&hint), "{out}");
    let (code, _, err, _) = cli(&cluster, &["member", "list"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&hint), "{err}");
    cluster.sigterm_all();
    for id in cluster.ids() {
        let log = cluster.log_text(id);
        assert!(
            !log.contains("bad input"),
            "node {id} logged a single-group request as bad input:\n{log}"
        );
    }
}
