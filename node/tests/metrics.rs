//! Prometheus metrics and logs of real `concord-node` processes:
//! * a 3-node loopback cluster with `--metrics-listen`, scraped over HTTP
//!   while it works: a leader shows in the role gauge, commit index and
//!   `concord_entries_committed_total` grow by the writes made, fsyncs and
//!   append round trips are counted; the scrape's metrics are exactly
//!   those `docs/metrics.md` lists, and the Grafana dashboard names no
//!   other;
//! * a metrics address in use: exit status 2 at start, naming it, before
//!   the data directory is touched;
//! * a malformed `RUST_LOG`: a warning, and the server runs at `info`;
//!   `--log-format json` writes JSON lines;
//! * the config file's `log-format` and `metrics-listen` keys do what the
//!   flags do;
//! * a follower that catches up by snapshot moves its snapshot index, its
//!   install, received-bytes, receive and restore series, and the
//!   leader's snapshots taken and sent, bytes sent and send durations;
//! * elections and leaderships won are counted (at start, and on a new
//!   leader after the old one is killed), client sessions show once a
//!   client wrote, append round trips are timed per peer;
//! * one write followed through the JSON logs of all three nodes by its
//!   `client`, `seq` and `index` fields: proposed on the leader, committed
//!   and applied on every node.
//!
//! About 2 s on 2 cores (the two cluster tests dominate).

#[path = "common/processes.rs"]
mod processes;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use concord_tokio::metrics::multi::MULTI_CATALOGUE;
use concord_tokio::metrics::{Kind, CATALOGUE, ONE_GROUP_STATE};
use processes::{free_addr, node_binary, put_keys, runtime, spawn_node, NodeProcesses, Scratch};

/// Writes made while scraping.
const WRITES: u64 = 20;
/// Generous bound on anything the cluster must do (a loaded CI machine).
const DEADLINE: Duration = Duration::from_secs(60);

/// `GET path` on `addr` over a plain TCP connection: (status line, body).
fn get(addr: &str, path: &str) -> Result<(String, String), String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| format!("read from {addr}: {e}"))?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no end of head in {response:?}"))?;
    let status = head.lines().next().unwrap_or("").to_string();
    Ok((status, body.to_string()))
}

/// One scrape of `/metrics`.
struct Scrape {
    text: String,
}

impl Scrape {
    fn of(addr: &str) -> Result<Scrape, String> {
        let (status, body) = get(addr, "/metrics")?;
        if !status.contains(" 200 ") {
            return Err(format!("{addr}: {status}"));
        }
        Ok(Scrape { text: body })
    }

    /// The value of one series, named exactly as exposed (`name` or
    /// `name{label="v"}`).
    fn value(&self, series: &str) -> Option<f64> {
        self.text.lines().find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok())?
        })
    }

    fn at_least(&self, series: &str, bound: f64) -> bool {
        self.value(series).is_some_and(|v| v >= bound)
    }

    /// Metric families by their `# TYPE` lines: name → kind.
    fn families(&self) -> BTreeMap<String, String> {
        self.text
            .lines()
            .filter_map(|line| {
                let mut words = line.strip_prefix("# TYPE ")?.split_whitespace();
                Some((words.next()?.to_string(), words.next()?.to_string()))
            })
            .collect()
    }
}

fn kind_word(kind: Kind) -> &'static str {
    match kind {
        Kind::Counter => "counter",
        Kind::Gauge => "gauge",
        Kind::Histogram => "histogram",
    }
}

/// Scrapes `addr` until `ready` holds for a scrape; that scrape.
fn scrape_until(addr: &str, what: &str, ready: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + DEADLINE;
    let mut last;
    loop {
        match Scrape::of(addr) {
            Ok(scrape) if ready(&scrape) => return scrape,
            Ok(scrape) => last = scrape.text,
            Err(e) => last = e,
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {DEADLINE:?}; last scrape of {addr}:\n{last}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The heading of `docs/metrics.md`'s section on the multi-group server:
/// the table before it lists the single-group server's metrics, the one
/// after it the multi-group server's.
const MULTI_SECTION: &str = "## Many groups per node";

/// The metric names `docs/metrics.md` lists in the table of one server
/// (`multi`: the multi-group one), with their kind.
fn documented(multi: bool) -> BTreeMap<String, String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/metrics.md");
    let text = std::fs::read_to_string(&path).expect("read docs/metrics.md");
    let (single, rest) = text
        .split_once(MULTI_SECTION)
        .expect("docs/metrics.md has a section on many groups");
    let section = if multi { rest } else { single };
    section
        .lines()
        .filter_map(|line| {
            let mut cells = line.strip_prefix("| `")?.split('|');
            let name = cells.next()?.trim().trim_end_matches('`').to_string();
            Some((name, cells.next()?.trim().to_string()))
        })
        .collect()
}

/// Every `concord_*` name in the dashboard's queries, as its family's
/// name (a histogram's `_bucket`, `_sum`, `_count` series are its own).
fn dashboard_families(families: &BTreeMap<String, String>) -> BTreeSet<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/grafana-dashboard.json");
    let text = std::fs::read_to_string(&path).expect("read the dashboard");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut names = BTreeSet::new();
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(!panels.is_empty());
    for panel in panels {
        let targets = panel["targets"]
            .as_array()
            .expect("every panel has targets");
        for target in targets {
            let expr = target["expr"].as_str().expect("a target's expr");
            let mut rest = expr;
            while let Some(at) = rest.find("concord_") {
                let name: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[at + name.len()..];
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| {
                        let base = name.strip_suffix(suffix)?;
                        (families.get(base).map(String::as_str) == Some("histogram"))
                            .then(|| base.to_string())
                    })
                    .unwrap_or(name);
                names.insert(family);
            }
        }
    }
    names
}

/// Starts every node of `cluster` with `flags` and its own
/// `--metrics-listen` address on loopback; returns the addresses by id.
fn start_with_metrics(cluster: &mut NodeProcesses, flags: &[&str]) -> BTreeMap<u64, String> {
    let metrics: BTreeMap<u64, String> = cluster
        .ids()
        .into_iter()
        .map(|id| (id, free_addr()))
        .collect();
    for (id, addr) in &metrics {
        let mut args = flags.to_vec();
        args.extend(["--metrics-listen", addr.as_str()]);
        cluster.start_with(*id, &args);
    }
    metrics
}

#[test]
fn a_cluster_exports_metrics_that_move_as_it_works() {
    let mut cluster = NodeProcesses::on_loopback("metrics", "metrics-test");
    let metrics = start_with_metrics(&mut cluster, &[]);
    // A leader, as its role gauge says; the others follow it.
    let deadline = Instant::now() + DEADLINE;
    let leader = loop {
        let found = metrics.iter().find(|(_, addr)| {
            Scrape::of(addr).is_ok_and(|s| s.value("concord_role{role=\"leader\"}") == Some(1.0))
        });
        if let Some((id, _)) = found {
            break *id;
        }
        assert!(Instant::now() < deadline, "no node reported itself leader");
        std::thread::sleep(Duration::from_millis(100));
    };
    let before = Scrape::of(&metrics[&leader]).expect("scrape the leader");
    assert_eq!(before.value("concord_node_id"), Some(leader as f64));
    assert_eq!(before.value("concord_role{role=\"follower\"}"), Some(0.0));
    // It won an election it started; no client opened a session yet.
    let won = before
        .value("concord_leader_elected_total")
        .expect("leaderships");
    assert!(won >= 1.0, "{won}");
    assert!(before.at_least("concord_elections_started_total", won));
    assert_eq!(before.value("concord_sessions"), Some(0.0));
    let commit_before = before.value("concord_commit_index").expect("commit index");
    let committed_before = before
        .value("concord_entries_committed_total")
        .expect("entries committed");
    let runtime = runtime();
    runtime.block_on(async {
        let mut client = cluster.client();
        put_keys(&mut client, &mut BTreeMap::new(), "k", 0, WRITES as u32).await;
    });
    // The leader's numbers moved by at least the writes (a session
    // registration is one more entry).
    let peers: Vec<u64> = cluster
        .ids()
        .into_iter()
        .filter(|id| *id != leader)
        .collect();
    let after = scrape_until(
        &metrics[&leader],
        "the leader's metrics after the writes",
        |s| {
            s.at_least("concord_commit_index", commit_before + WRITES as f64)
                && s.at_least("concord_applied_index", commit_before + WRITES as f64)
                && s.at_least(
                    "concord_entries_committed_total",
                    committed_before + WRITES as f64,
                )
                && s.at_least("concord_proposals_total", WRITES as f64)
                && s.at_least("concord_proposal_batch_entries_count", 1.0)
                && s.at_least("concord_wal_fsync_duration_seconds_count", 1.0)
                && s.at_least("concord_wal_batch_entries_count", 1.0)
                // The client's session, registered by its first write.
                && s.at_least("concord_sessions", 1.0)
                && peers.iter().all(|p| {
                    s.at_least(
                        &format!("concord_peer_frames_sent_total{{peer=\"{p}\"}}"),
                        1.0,
                    ) && s.at_least(
                        &format!("concord_append_round_trip_seconds_count{{peer=\"{p}\"}}"),
                        1.0,
                    ) && s.value(&format!("concord_peer_connected{{peer=\"{p}\"}}")) == Some(1.0)
                        && s.value(&format!("concord_follower_lag_entries{{peer=\"{p}\"}}"))
                            .is_some()
                })
        },
    );
    assert_eq!(after.value("concord_leader_id"), Some(leader as f64));
    // Each follower applied the writes, fsynced, and names the leader.
    for peer in &peers {
        scrape_until(
            &metrics[peer],
            "a follower's metrics after the writes",
            |s| {
                s.value("concord_role{role=\"follower\"}") == Some(1.0)
                    && s.value("concord_leader_id") == Some(leader as f64)
                    && s.at_least("concord_commit_index", commit_before + WRITES as f64)
                    && s.at_least("concord_wal_fsync_duration_seconds_count", 1.0)
                    && s.at_least("concord_sessions", 1.0)
            },
        );
    }
    // The catalogues, the doc and the scrape agree, name and kind: a
    // server of one group exports the multi-group catalogue and its
    // group's state under the single-group names.
    let families = after.families();
    let catalogue: BTreeMap<String, String> = MULTI_CATALOGUE
        .iter()
        .chain(
            CATALOGUE
                .iter()
                .filter(|m| ONE_GROUP_STATE.contains(&m.name)),
        )
        .map(|m| (m.name.to_string(), kind_word(m.kind).to_string()))
        .collect();
    assert_eq!(families, catalogue, "the scrape against the catalogue");
    let mut documented_one_group = documented(false);
    documented_one_group.extend(documented(true));
    assert_eq!(
        documented_one_group, families,
        "docs/metrics.md against a scrape"
    );
    // The dashboard's panels are of either server: each name is in one
    // of the two catalogues (the multi-group test checks its scrape).
    let mut either = families.clone();
    either.extend(
        concord_tokio::metrics::multi::MULTI_CATALOGUE
            .iter()
            .map(|m| (m.name.to_string(), kind_word(m.kind).to_string())),
    );
    let panels = dashboard_families(&either);
    for name in &panels {
        assert!(
            either.contains_key(name),
            "the dashboard names {name}, which no catalogue holds"
        );
    }
    assert!(panels.contains("concord_commit_index") && panels.contains("concord_groups_active"));
    let (status, _) = get(&metrics[&leader], "/elsewhere").expect("GET /elsewhere");
    assert!(status.contains(" 404 "), "{status}");

    // The leader dies: one of the others starts an election and wins it,
    // and its counters say so.
    let counts = |scrape: &Scrape| {
        let value = |name| scrape.value(name).expect(name);
        (
            value("concord_elections_started_total"),
            value("concord_leader_elected_total"),
        )
    };
    let peers_before: BTreeMap<u64, (f64, f64)> = peers
        .iter()
        .map(|p| {
            (
                *p,
                counts(&Scrape::of(&metrics[p]).expect("scrape a follower")),
            )
        })
        .collect();
    cluster.sigkill(leader);
    let deadline = Instant::now() + DEADLINE;
    let (new_leader, scrape) = loop {
        let found = peers.iter().find_map(|p| {
            let scrape = Scrape::of(&metrics[p]).ok()?;
            (scrape.value("concord_role{role=\"leader\"}") == Some(1.0)).then_some((*p, scrape))
        });
        if let Some(found) = found {
            break found;
        }
        assert!(Instant::now() < deadline, "no new leader after the kill");
        std::thread::sleep(Duration::from_millis(100));
    };
    let (started, won) = counts(&scrape);
    let (started_before, won_before) = peers_before[&new_leader];
    assert!(
        started > started_before && won > won_before,
        "node {new_leader} leads: elections started {started_before} -> {started}, won \
         {won_before} -> {won}"
    );
}

#[test]
fn a_follower_caught_up_by_snapshot_moves_the_snapshot_metrics() {
    // Compacting often: a follower down for 150 writes comes back behind
    // the leader's log and catches up by snapshot.
    let compact = [
        "--snapshot-every-entries",
        "50",
        "--compaction-trailing-entries",
        "20",
    ];
    let mut cluster = NodeProcesses::on_loopback("metrics-snap", "metrics-snap");
    let metrics = start_with_metrics(&mut cluster, &compact);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut client = {
        let _runtime = runtime.enter();
        cluster.client()
    };
    runtime.block_on(async {
        client.put("first", "write").await.expect("a write");
    });
    let leader = *metrics
        .iter()
        .find(|(_, addr)| {
            Scrape::of(addr).is_ok_and(|s| s.value("concord_role{role=\"leader\"}") == Some(1.0))
        })
        .expect("a leader after a write")
        .0;
    let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    cluster.sigkill(follower);
    runtime.block_on(async {
        for i in 0..150 {
            client
                .put(format!("k{i}"), format!("v{i}"))
                .await
                .expect("a write");
        }
    });
    // Restarted with the same flags and metrics address.
    let mut flags = compact.to_vec();
    flags.extend(["--metrics-listen", metrics[&follower].as_str()]);
    cluster.start_with(follower, &flags);
    // Its group's snapshot index is past the writes it missed: it took
    // a snapshot from the leader (its own log was far behind), and it
    // applied everything after.
    let leader_scrape = Scrape::of(&metrics[&leader]).expect("scrape the leader");
    let leader_snapshot = leader_scrape
        .value("concord_snapshot_index")
        .expect("the leader's snapshot index");
    assert!(
        leader_snapshot >= 100.0,
        "the leader compacted: {leader_snapshot}"
    );
    scrape_until(&metrics[&follower], "the follower's snapshot index", |s| {
        s.at_least("concord_snapshot_index", leader_snapshot)
            && s.at_least("concord_applied_index", 150.0)
    });
    // The follower (its counters new with its restart) received, stored
    // and restored a snapshot; the leader took snapshots, and sent one.
    let follower_scrape = scrape_until(
        &metrics[&follower],
        "the follower's snapshot metrics",
        |s| {
            s.at_least("concord_snapshots_installed_total", 1.0)
                && s.at_least("concord_snapshot_received_bytes_total", 1.0)
                && s.at_least("concord_snapshot_receive_duration_seconds_count", 1.0)
                && s.at_least("concord_snapshot_restore_duration_seconds_count", 1.0)
        },
    );
    assert_eq!(
        follower_scrape.value("concord_snapshots_sent_total"),
        Some(0.0),
        "the follower sent no snapshot"
    );
    scrape_until(&metrics[&leader], "the leader's snapshot metrics", |s| {
        s.at_least("concord_snapshots_taken_total", 2.0)
            && s.at_least("concord_snapshots_sent_total", 1.0)
            && s.at_least("concord_snapshot_sent_bytes_total", 1.0)
            && s.at_least("concord_snapshot_send_duration_seconds_count", 1.0)
    });
    cluster.sigterm_all();
}

/// A one-node cluster's `concord-node` with `extra` flags and `RUST_LOG`,
/// its stderr to `log`.
fn single_node(scratch: &Scratch, extra: &[&str], rust_log: &str, log: &Path) -> Child {
    let listen = free_addr();
    let mut command = Command::new(node_binary());
    command
        .args(["--id", "1", "--listen", &listen])
        .args(["--peers", &format!("1={listen}")])
        .arg("--data-dir")
        .arg(scratch.0.join("data"))
        .args(["--cluster-id", "metrics-bad-input"])
        .args(extra)
        .env("RUST_LOG", rust_log);
    spawn_node(&mut command, std::fs::File::create(log).expect("log file"))
}

/// Kills `child` when dropped (a failed assertion leaves no process).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for `node` to exit by itself; its status and stderr.
fn exit_of(node: &mut Killed, log: &Path) -> (Option<i32>, String) {
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = node.0.try_wait().expect("try_wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the node did not stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = std::fs::read_to_string(log).expect("read the log");
    (status.code(), stderr)
}

/// Flags a node refuses at start, before it touches its data directory:
/// exit status 2 and a message naming the problem.
#[test]
fn flags_the_node_cannot_serve_are_refused_at_start_with_status_2() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = taken.local_addr().expect("local addr").to_string();
    let in_use = format!("cannot listen for metrics on {addr}");
    // Without the `otel` feature any OTLP endpoint is refused, naming the
    // feature; with it, one that is not plain http.
    let (endpoint, expected) = if cfg!(feature = "otel") {
        (
            "https://127.0.0.1:4318/v1/traces",
            "expected an http:// URL",
        )
    } else {
        ("http://127.0.0.1:4318/v1/traces", "--features otel")
    };
    let cases: [(&str, &[&str], &[&str]); 3] = [
        (
            "a metrics address in use",
            &["--metrics-listen", &addr],
            &[&in_use, "in use"],
        ),
        (
            "a multi-group node's metrics address in use",
            &["--groups", "4", "--metrics-listen", &addr],
            &[&in_use],
        ),
        (
            "an OTLP endpoint this build cannot serve",
            &["--otlp-endpoint", endpoint],
            &[endpoint, expected],
        ),
    ];
    for (case, flags, needles) in cases {
        let scratch = Scratch::new("refused-flags");
        let log = scratch.0.join("node.log");
        let mut node = Killed(single_node(&scratch, flags, "info", &log));
        let (code, stderr) = exit_of(&mut node, &log);
        assert_eq!(code, Some(2), "{case}: {stderr}");
        for needle in needles {
            assert!(stderr.contains(needle), "{case}: {needle:?} in {stderr}");
        }
        assert!(
            !scratch.0.join("data").exists(),
            "{case}: the data directory was touched before the flags were checked"
        );
    }
}

#[test]
fn a_malformed_rust_log_is_a_warning_and_json_logs_are_json() {
    let scratch = Scratch::new("rust-log");
    let log = scratch.0.join("node.log");
    let _node = Killed(single_node(
        &scratch,
        &["--log-format", "json"],
        "concord=loudest",
        &log,
    ));
    let deadline = Instant::now() + DEADLINE;
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("became leader") {
            break text;
        }
        assert!(Instant::now() < deadline, "the node did not lead:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut lines = text.lines();
    let warning = lines.next().expect("a first line");
    assert!(
        warning.starts_with("concord-node: warning: ignoring RUST_LOG=\"concord=loudest\""),
        "{warning}"
    );
    // The rest is JSON at the default level: info events, no debug.
    let mut events = 0;
    for line in lines {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        let level = event["level"].as_str().expect("a level");
        assert!(matches!(level, "INFO" | "WARN" | "ERROR"), "{line}");
        events += 1;
    }
    assert!(events > 0, "{text}");
}

#[test]
fn the_config_file_keys_turn_on_json_logs_and_the_endpoint() {
    let scratch = Scratch::new("config-keys");
    let metrics = free_addr();
    let config = scratch.0.join("server.toml");
    std::fs::write(
        &config,
        format!("log-format = \"json\"\nmetrics-listen = \"{metrics}\"\n"),
    )
    .expect("write the config file");
    let log = scratch.0.join("node.log");
    let config = config.to_string_lossy().to_string();
    let _node = Killed(single_node(&scratch, &["--config", &config], "info", &log));
    // Served on the file's address once the node leads.
    scrape_until(&metrics, "the file's metrics-listen serving", |scrape| {
        scrape.at_least("concord_role{role=\"leader\"}", 1.0)
    });
    let deadline = Instant::now() + DEADLINE;
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("serving metrics") && text.contains("became leader") {
            break text;
        }
        assert!(Instant::now() < deadline, "no leader in the log:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    };
    // Every line is JSON: the file's log-format.
    for line in text.lines() {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(event["level"].is_string(), "{line}");
    }
}

/// A number in a JSON log field (numbers or their text).
fn number(value: &serde_json::Value) -> Option<u64> {
    value
        .as_u64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
}

/// Node `id`'s JSON log events so far (the lines that parse).
fn events(cluster: &NodeProcesses, id: u64) -> Vec<serde_json::Value> {
    cluster
        .log_text(id)
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

#[test]
fn a_write_can_be_followed_through_every_nodes_log() {
    let mut cluster = NodeProcesses::on_loopback("trace", "trace-test");
    for id in cluster.ids() {
        // `env` overrides the RUST_LOG the harness sets for every node.
        cluster.set_launcher(
            id,
            vec![
                "env".to_string(),
                "RUST_LOG=info,concord_tokio::server=debug".to_string(),
            ],
        );
        cluster.start_with(id, &["--log-format", "json"]);
    }
    runtime()
        .block_on(cluster.client().put("traced", "yes"))
        .expect("the write");
    // The one write's proposal on the leader names its request.
    let deadline = Instant::now() + DEADLINE;
    let (leader, index, client, seq) = loop {
        let proposed: Vec<(u64, u64, u64, u64)> = cluster
            .ids()
            .into_iter()
            .flat_map(|id| events(&cluster, id).into_iter().map(move |e| (id, e)))
            .filter(|(_, e)| e["fields"]["message"] == "proposed")
            .filter_map(|(id, e)| {
                let f = &e["fields"];
                Some((
                    id,
                    number(&f["index"])?,
                    number(&f["client"])?,
                    number(&f["seq"])?,
                ))
            })
            .collect();
        if let [one] = proposed[..] {
            break one;
        }
        assert!(
            proposed.len() <= 1,
            "one write, proposed once: {proposed:?}"
        );
        assert!(
            Instant::now() < deadline,
            "no `proposed` event with client and seq"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    // Every node commits and applies that index, in an `apply` span with
    // the same request fields; the leader answers it there.
    for id in cluster.ids() {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let events = events(&cluster, id);
            let committed = events.iter().any(|e| {
                e["fields"]["message"] == "committed"
                    && number(&e["fields"]["first"]).is_some_and(|f| f <= index)
                    && number(&e["fields"]["last"]).is_some_and(|l| l >= index)
            });
            let in_span = |message: &str| {
                events.iter().any(|e| {
                    let span = &e["span"];
                    e["fields"]["message"] == message
                        && span["name"] == "apply"
                        && number(&span["index"]) == Some(index)
                        && number(&span["client"]) == Some(client)
                        && number(&span["seq"]) == Some(seq)
                })
            };
            let answered = id != leader || in_span("answered");
            if committed && in_span("applied") && answered {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {id} did not log the commit and apply of index {index} \
                 (client {client}, seq {seq}):\n{}",
                cluster.log_text(id)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Groups of the multi-group cluster below.
const MULTI_GROUPS: u64 = 64;
/// Groups each node hosts: the store's, and the catalog (group 0).
const MULTI_GROUPS_HOSTED: u64 = MULTI_GROUPS + 1;

/// A value summed over the scrapes of every node (a missing series
/// counts 0).
fn sum(scrapes: &[Scrape], series: &str) -> f64 {
    scrapes.iter().filter_map(|s| s.value(series)).sum()
}

fn scrape_all(metrics: &BTreeMap<u64, String>) -> Result<Vec<Scrape>, String> {
    metrics.values().map(|addr| Scrape::of(addr)).collect()
}

/// Scrapes every node until `ready` holds for the set; that set.
fn scrape_all_until(
    metrics: &BTreeMap<u64, String>,
    what: &str,
    ready: impl Fn(&[Scrape]) -> bool,
) -> Vec<Scrape> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let last = match scrape_all(metrics) {
            Ok(scrapes) if ready(&scrapes) => return scrapes,
            Ok(scrapes) => scrapes
                .iter()
                .map(|s| s.text.as_str())
                .collect::<Vec<_>>()
                .join("\n---\n"),
            Err(e) => e,
        };
        assert!(
            Instant::now() < deadline,
            "{what}: not within {DEADLINE:?}; last scrapes:\n{last}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether every node hosts all groups and has all of them asleep.
fn all_quiesced(scrapes: &[Scrape]) -> bool {
    let groups = MULTI_GROUPS_HOSTED as f64;
    scrapes.iter().all(|s| {
        s.value("concord_groups_hosted") == Some(groups)
            && s.value("concord_groups_quiesced") == Some(groups)
            && s.value("concord_groups_active") == Some(0.0)
    })
}

#[test]
fn a_multi_group_cluster_exports_group_counts_that_move_as_it_works() {
    use concord_services::sharded_kv::ShardMap;
    use concord_services::sharded_kv_client::ShardedKvClient;
    use concord_tokio::metrics::multi::MULTI_CATALOGUE;
    use concord_tokio::multi::routing_client::RoutingConfig;

    let mut cluster = NodeProcesses::on_loopback("metrics-multi", "metrics-multi");
    let groups = MULTI_GROUPS.to_string();
    let metrics = start_with_metrics(&mut cluster, &["--groups", &groups]);
    // Every group elects a leader, falls idle and sleeps on every node.
    let idle = scrape_all_until(&metrics, "every group quiesced after start", |s| {
        all_quiesced(s) && sum(s, "concord_groups_led") == MULTI_GROUPS_HOSTED as f64
    });
    let committed_before: Vec<f64> = idle
        .iter()
        .map(|s| s.value("concord_entries_committed_total").expect("commits"))
        .collect();
    let sleeps_before = sum(&idle, "concord_group_sleeps_total");
    let proposals_before = sum(&idle, "concord_proposals_total");
    // Every group's leader won an election it started; no client opened
    // a session yet.
    let won = sum(&idle, "concord_leader_elected_total");
    assert!(won >= MULTI_GROUPS_HOSTED as f64, "{won} leaderships");
    assert!(sum(&idle, "concord_elections_started_total") >= won);
    assert_eq!(sum(&idle, "concord_sessions"), 0.0);

    // Writes to keys of many groups, scraping between batches: while they
    // go on, some groups are awake and the commit counters move.
    let runtime = runtime();
    let mut config = RoutingConfig::new("metrics-multi", cluster.addrs.clone());
    config.request_timeout = Duration::from_secs(5);
    config.attempts_max = 16;
    let map = ShardMap::new(MULTI_GROUPS).expect("a shard map");
    let mut client = {
        let _runtime = runtime.enter();
        ShardedKvClient::new(map, config).expect("a client")
    };
    let keys: Vec<String> = (0..4 * MULTI_GROUPS).map(|i| format!("key-{i}")).collect();
    let groups_written: BTreeSet<u64> = keys.iter().map(|k| map.group_of(k.as_bytes())).collect();
    assert!(
        groups_written.len() as u64 > MULTI_GROUPS / 2,
        "{groups_written:?}"
    );
    let deadline = Instant::now() + DEADLINE;
    let mut written = 0u64;
    let mut seen_active = false;
    let mut seen_committed = false;
    for key in keys.iter().cycle() {
        runtime
            .block_on(client.put(key.clone(), format!("value-{written}")))
            .expect("a write");
        written += 1;
        if written % 16 != 0 {
            continue;
        }
        let scrapes = scrape_all(&metrics).expect("scrape while writing");
        seen_active |= scrapes
            .iter()
            .any(|s| s.at_least("concord_groups_active", 1.0));
        seen_committed |= scrapes
            .iter()
            .zip(&committed_before)
            .all(|(s, before)| s.at_least("concord_entries_committed_total", before + 16.0));
        if written >= keys.len() as u64 && seen_active && seen_committed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after {written} writes: some group active {seen_active}, commits moved on every \
             node {seen_committed}"
        );
    }
    // Reads of every written key, served by read index at the leaders.
    let reads = 8u64;
    for key in keys.iter().take(reads as usize) {
        let value = runtime.block_on(client.get(key.clone())).expect("a read");
        assert!(value.is_some(), "{key} was written");
    }

    // Idle again: every group goes back to sleep, and the counters hold
    // what the writes did.
    let after = scrape_all_until(&metrics, "every group quiesced after the writes", |s| {
        all_quiesced(s) && sum(s, "concord_group_sleeps_total") > sleeps_before
    });
    assert!(
        sum(&after, "concord_proposals_total") >= proposals_before + written as f64,
        "proposals summed over the nodes cover the {written} writes"
    );
    assert!(sum(&after, "concord_reads_total{path=\"read_index\"}") >= reads as f64);
    assert_eq!(
        sum(&after, "concord_groups_led"),
        MULTI_GROUPS_HOSTED as f64
    );
    // The leaders' appends were timed to their followers.
    let round_trips: f64 = metrics
        .keys()
        .map(|peer| {
            sum(
                &after,
                &format!("concord_append_round_trip_seconds_count{{peer=\"{peer}\"}}"),
            )
        })
        .sum();
    assert!(round_trips >= 1.0, "{round_trips} append round trips timed");
    for ((id, scrape), before) in metrics.keys().zip(&after).zip(&committed_before) {
        assert_eq!(scrape.value("concord_node_id"), Some(*id as f64));
        // Every node saw every write commit (each is one entry of its
        // group on every replica).
        assert!(
            scrape.at_least("concord_entries_committed_total", before + written as f64),
            "node {id}: {:?} committed, {before} before {written} writes",
            scrape.value("concord_entries_committed_total")
        );
        assert!(scrape.at_least("concord_entries_applied_total", written as f64));
        assert!(scrape.at_least("concord_wal_fsync_duration_seconds_count", 1.0));
        assert!(scrape.at_least("concord_wal_batch_entries_count", 1.0));
        assert!(scrape.at_least("concord_wal_batch_entries_sum", written as f64));
        assert!(scrape.at_least("concord_wal_batch_bytes_sum", 1.0));
        assert!(scrape.at_least("concord_frames_sent_total", 1.0));
        assert!(scrape.at_least("concord_persist_batches_total", 1.0));
        // The client's session of each group it wrote to, on every
        // replica.
        assert!(
            scrape.at_least("concord_sessions", groups_written.len() as f64),
            "node {id}: {:?} sessions, {} groups written",
            scrape.value("concord_sessions"),
            groups_written.len()
        );
        for peer in metrics.keys().filter(|peer| *peer != id) {
            assert_eq!(
                scrape.value(&format!("concord_peer_connected{{peer=\"{peer}\"}}")),
                Some(1.0),
                "node {id} to {peer}"
            );
            assert!(scrape.at_least(
                &format!("concord_peer_frames_sent_total{{peer=\"{peer}\"}}"),
                1.0
            ));
            assert!(scrape.at_least(
                &format!("concord_peer_sent_bytes_total{{peer=\"{peer}\"}}"),
                1.0
            ));
        }
        // No series per group: its count does not grow with the groups.
        assert!(
            !scrape.text.contains("group=\""),
            "node {id} exports a series per group"
        );
        // The catalogue, the doc's section and the scrape agree.
        let families = scrape.families();
        let catalogue: BTreeMap<String, String> = MULTI_CATALOGUE
            .iter()
            .map(|m| (m.name.to_string(), kind_word(m.kind).to_string()))
            .collect();
        assert_eq!(
            families, catalogue,
            "node {id}'s scrape against the catalogue"
        );
        assert_eq!(
            documented(true),
            families,
            "docs/metrics.md's section on many groups against a scrape"
        );
        for name in [
            "concord_groups_active",
            "concord_groups_quiesced",
            "concord_wal_batch_entries",
            "concord_peer_sent_bytes_total",
        ] {
            assert!(
                dashboard_families(&families).contains(name),
                "the dashboard graphs {name}"
            );
        }
    }
}
