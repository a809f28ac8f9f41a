//! Growing and shrinking a multi-group cluster under a steady client
//! load, on real processes: three `concord-node --groups N --balance` on
//! loopback, four clients running every request of the key-value store
//! throughout. Servers 4 and 5 join (`--join`) and `concord-cli cluster
//! add-server` records them: the servers move replicas to them by
//! themselves until `cluster status` shows every server within the band
//! and nothing in flight. Then `cluster drain 1` empties server 1 and
//! `cluster remove-server 1` retires it. No acknowledged write may be
//! lost and every group's history, read-back included, must be
//! linearizable. Printed, for each phase: the time it took, the snapshot
//! bytes the servers sent, and the clients' put p99 during it against
//! the p99 before it (a figure, not asserted: the ratio means something
//! only on a quiet machine).
//!
//! ```text
//! cargo test -p concord-node --test cluster_rebalance_load -- --nocapture
//! CONCORD_REBALANCE_GROUPS=1000 cargo test --release -p concord-node --test cluster_rebalance_load -- --nocapture
//! ```

#[path = "common/multi_cluster.rs"]
mod multi_cluster;
#[path = "common/processes.rs"]
mod processes;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use concord_services::sharded_kv::ShardMap;
use concord_sim::history::{Op, Outcome};
use multi_cluster::{Processes, Recorder};
use processes::{cli_binary, free_addr, output_of};

const CLUSTER: &str = "rebalance-load";
const CLIENTS: u64 = 4;

/// Groups of the cluster: 64, or `CONCORD_REBALANCE_GROUPS` (2 to
/// 100,000; the figures in docs/rebalance.md use 1,000).
fn groups() -> u64 {
    std::env::var("CONCORD_REBALANCE_GROUPS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(64u64)
        .clamp(2, 100_000)
}

/// `concord-cli --groups N ARGS` against `servers`: exit code, stdout,
/// stderr.
fn cli(servers: &[&String], args: &[&str]) -> (i32, String, String) {
    let servers: Vec<&str> = servers.iter().map(|s| s.as_str()).collect();
    output_of(
        std::process::Command::new(cli_binary())
            .args(["--servers", &servers.join(","), "--cluster-id", CLUSTER])
            .args(["--timeout-ms", "5000", "--groups", &groups().to_string()])
            .args(args),
    )
}

/// Runs `args` until it succeeds, for up to `within`; its stdout.
fn cli_ok_within(servers: &[&String], args: &[&str], within: Duration) -> String {
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
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// From `cluster status`: the band, and each server's state and replica
/// count.
fn status_rows(status: &str) -> ((usize, usize), BTreeMap<u64, (String, usize)>) {
    let band_at = status.find("band ").expect("a band in the status");
    let words: Vec<&str> = status[band_at..].split_whitespace().collect();
    let band = (words[1].parse().unwrap(), words[3].parse().unwrap());
    let rows = status
        .lines()
        .filter_map(|line| {
            let columns: Vec<&str> = line.split_whitespace().collect();
            let id = columns.first()?.parse().ok()?;
            Some((id, (columns[1].to_string(), columns[3].parse().ok()?)))
        })
        .collect();
    (band, rows)
}

/// Bytes every server sent, from their metrics: (in snapshots, to
/// peers in all).
fn bytes_sent(metrics: &BTreeMap<u64, String>) -> (u64, u64) {
    use std::io::{Read, Write};
    let mut sums = (0, 0);
    for addr in metrics.values() {
        let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
            continue;
        };
        let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        let mut text = String::new();
        if stream.write_all(request.as_bytes()).is_err()
            || stream.read_to_string(&mut text).is_err()
        {
            continue;
        }
        for line in text.lines() {
            let value = || {
                line.rsplit(' ')
                    .next()
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or(0.0) as u64
            };
            if line.starts_with("concord_snapshot_sent_bytes_total ") {
                sums.0 += value();
            } else if line.starts_with("concord_peer_sent_bytes_total{") {
                sums.1 += value();
            }
        }
    }
    sums
}

/// The p99 of the acknowledged puts that returned in `from..to` (µs
/// since the recorder's start), and how many there were.
fn put_p99(recorder: &Recorder, from: u64, to: u64) -> (u64, usize) {
    let mut latencies: Vec<u64> = recorder
        .ops
        .lock()
        .unwrap()
        .iter()
        .filter(|op| matches!(op.op, Op::Put { .. }) && matches!(op.outcome, Outcome::Ok(_)))
        .filter_map(|op| {
            op.ret
                .filter(|ret| (from..to).contains(ret))
                .map(|ret| ret - op.call)
        })
        .collect();
    latencies.sort_unstable();
    let at = (latencies.len() * 99 / 100).min(latencies.len().saturating_sub(1));
    (latencies.get(at).copied().unwrap_or(0), latencies.len())
}

/// One phase's figures.
struct Phase {
    name: &'static str,
    took: Duration,
    snapshot_bytes: u64,
    /// Bytes sent to peers during the phase, and per second before it.
    peer_bytes: u64,
    peer_bytes_per_second_before: u64,
    p99_before_us: u64,
    p99_during_us: u64,
}

/// Where a phase starts from: its start, and the 3 s before it.
struct Baseline {
    started: Instant,
    start_us: u64,
    bytes: (u64, u64),
    peer_bytes_per_second: u64,
    p99_us: u64,
}

impl Baseline {
    /// Waits 3 s under the load, measuring it, and starts a phase.
    async fn take(recorder: &Recorder, metrics: &BTreeMap<u64, String>) -> Baseline {
        let quiet_bytes = bytes_sent(metrics).1;
        let from_us = recorder.now();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (p99_us, _) = put_p99(recorder, from_us, recorder.now());
        let bytes = bytes_sent(metrics);
        Baseline {
            started: Instant::now(),
            start_us: recorder.now(),
            bytes,
            peer_bytes_per_second: (bytes.1 - quiet_bytes) / 3,
            p99_us,
        }
    }

    /// The phase that ran since: its figures. Some put must have been
    /// acknowledged during it.
    fn phase(
        self,
        name: &'static str,
        recorder: &Recorder,
        metrics: &BTreeMap<u64, String>,
    ) -> Phase {
        let (p99_during_us, puts) = put_p99(recorder, self.start_us, recorder.now());
        assert!(puts > 0, "no put acknowledged during {name}");
        let bytes = bytes_sent(metrics);
        Phase {
            name,
            took: self.started.elapsed(),
            snapshot_bytes: bytes.0 - self.bytes.0,
            peer_bytes: bytes.1 - self.bytes.1,
            peer_bytes_per_second_before: self.peer_bytes_per_second,
            p99_before_us: self.p99_us,
            p99_during_us,
        }
    }
}

async fn grow_then_shrink() {
    let seed = multi_cluster::seed_from_env("CONCORD_REBALANCE_SEED");
    let groups = groups();
    let base = std::env::temp_dir().join(format!(
        "concord-rebalance-load-{}-{seed}",
        std::process::id()
    ));
    let mut nodes = Processes::direct(base, CLUSTER, groups, &[1, 2, 3], &[4, 5], &["--balance"]);
    let metrics: BTreeMap<u64, String> = (1..=5).map(|id| (id, free_addr())).collect();
    for id in 1..=3 {
        nodes.start_with(id, &["--metrics-listen", &metrics[&id]]);
    }
    let listen = nodes.listen.clone();
    let first_three: BTreeMap<u64, String> = (1..=3).map(|id| (id, listen[&id].clone())).collect();
    let map = ShardMap::new(groups).unwrap();
    let keys = Arc::new(multi_cluster::keys_of_every_group(&map));
    let recorder = Arc::new(Recorder::new());
    // Every group takes a first write.
    {
        let mut kv = multi_cluster::client(CLUSTER, groups, &first_three);
        let mut who = recorder.client_id();
        let deadline = Instant::now() + Duration::from_secs(300);
        for key in keys.iter() {
            while !multi_cluster::put(&mut kv, &recorder, &mut who, key, format!("init-{key}"))
                .await
            {
                assert!(Instant::now() < deadline, "{key}: no first write");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let workers = multi_cluster::spawn_clients(
        seed,
        CLIENTS,
        CLUSTER,
        groups,
        &first_three,
        &keys,
        0,
        &recorder,
        &stop,
    );
    let mut phases = Vec::new();

    // Grow: servers 4 and 5 join and are recorded; the servers balance.
    for id in [4, 5] {
        nodes.start_with(id, &["--join", "--metrics-listen", &metrics[&id]]);
    }
    let grow = Baseline::take(&recorder, &metrics).await;
    // `add-server` is given the servers already recorded: a server
    // named in --servers counts as in use.
    let three: Vec<&String> = first_three.values().collect();
    for id in [4u64, 5] {
        let addr = listen[&id].clone();
        let args = ["cluster", "add-server", &id.to_string(), &addr];
        tokio::task::block_in_place(|| cli_ok_within(&three, &args, Duration::from_secs(60)));
    }
    let all: Vec<&String> = listen.values().collect();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let (code, status, _) =
            tokio::task::block_in_place(|| cli(&all, &["cluster", "status", "--watch-secs", "0"]));
        if code == 0 {
            let ((low, high), rows) = status_rows(&status);
            let filled = rows
                .values()
                .all(|(state, replicas)| state != "up" || (low..=high).contains(replicas));
            if filled && rows.len() == 5 && status.contains("moves in flight: none") {
                eprintln!("balanced:\n{status}");
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "not balanced within 600 s: {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    phases.push(grow.phase("add servers 4 and 5", &recorder, &metrics));
    // Then the leaderships, until the balancer plans nothing more; each
    // up server then leads a count within the leader band (600
    // replicas of every server share groups with each other server, so
    // one outside the band always has a group to give or take).
    let leaders_from = Instant::now();
    let status = loop {
        let (_, dry, _) =
            tokio::task::block_in_place(|| cli(&all, &["cluster", "balance", "--dry-run"]));
        let (code, status, _) =
            tokio::task::block_in_place(|| cli(&all, &["cluster", "status", "--watch-secs", "0"]));
        if code == 0 && dry.trim() == "balanced" {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "leaderships not balanced within 600 s: {dry}\n{status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!(
        "leaders balanced {:.1} s after the replicas:\n{status}",
        leaders_from.elapsed().as_secs_f64()
    );
    let first = status.lines().next().unwrap_or_default();
    let band: Vec<usize> = first
        .rsplit(", ")
        .next()
        .unwrap_or_default()
        .split(' ')
        .filter_map(|word| word.parse().ok())
        .collect();
    for line in status.lines() {
        let columns: Vec<&str> = line.split_whitespace().collect();
        if columns.get(1) == Some(&"up") {
            let led: usize = columns[4].parse().unwrap();
            assert!(
                (band[0]..=band[1]).contains(&led),
                "leader band {band:?}: {status}"
            );
        }
    }

    // Shrink: drain server 1 and retire it.
    let shrink = Baseline::take(&recorder, &metrics).await;
    let drained = tokio::task::block_in_place(|| {
        cli_ok_within(&all, &["cluster", "drain", "1"], Duration::from_secs(600))
    });
    assert!(drained.contains("server 1 holds no replica"), "{drained}");
    tokio::task::block_in_place(|| {
        cli_ok_within(
            &all,
            &["cluster", "remove-server", "1"],
            Duration::from_secs(60),
        )
    });
    phases.push(shrink.phase("drain and remove server 1", &recorder, &metrics));
    let (_, status, _) =
        tokio::task::block_in_place(|| cli(&all, &["cluster", "status", "--watch-secs", "0"]));
    let (_, rows) = status_rows(&status);
    assert_eq!(rows[&1], ("retired".to_string(), 0), "{status}");
    nodes.assert_running();

    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.await.unwrap();
    }
    let rest: BTreeMap<u64, String> = (2..=5).map(|id| (id, listen[&id].clone())).collect();
    let mut kv = multi_cluster::client(CLUSTER, groups, &rest);
    let finals =
        multi_cluster::read_back(&mut kv, &recorder, &keys, Duration::from_secs(120)).await;
    let history = std::mem::take(&mut *recorder.ops.lock().unwrap());
    let operations = multi_cluster::check_history(history, &finals, &map, seed);
    eprintln!(
        "{groups} groups: {operations} operations linearizable ({} writes acknowledged, {} \
         unknown)",
        recorder.acked_writes.load(Ordering::SeqCst),
        recorder.unknown_writes.load(Ordering::SeqCst),
    );
    eprintln!(
        "| phase | time | snapshot bytes sent | peer bytes sent (per s before → during) | put \
         p99 before → during |"
    );
    eprintln!("| --- | ---: | ---: | ---: | --- |");
    for phase in &phases {
        eprintln!(
            "| {} | {:.1} s | {} | {} ({} → {}) | {:.1} → {:.1} ms ({:.2}×) |",
            phase.name,
            phase.took.as_secs_f64(),
            phase.snapshot_bytes,
            phase.peer_bytes,
            phase.peer_bytes_per_second_before,
            phase.peer_bytes / phase.took.as_secs().max(1),
            phase.p99_before_us as f64 / 1000.0,
            phase.p99_during_us as f64 / 1000.0,
            phase.p99_during_us as f64 / phase.p99_before_us.max(1) as f64
        );
    }
}

#[test]
fn servers_added_then_one_drained_under_load_lose_no_write() {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(grow_then_shrink());
}
