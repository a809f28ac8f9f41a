//! On real processes: an operator's mistakes are refused, not
//! absorbed, and a follower that lost entries is repaired without a write.
//!
//! * a data directory of another cluster or another node is refused with
//!   exit status 3, naming both values; a second process on a directory
//!   in use with exit status 4; a lock left by a SIGKILLed node is not;
//! * a data directory written before identity files has its log upgraded
//!   in place (a fixture written by the build before them), every entry
//!   kept; being from before services too, it is refused by the server
//!   with exit status 3 rather than served as if empty; a data directory
//!   of another service is refused with exit status 3, both named;
//! * a node of another incarnation of a cluster of the same name is
//!   refused at the handshake, both incarnations named;
//! * a follower restarted with `--accept-wal-data-loss` after losing
//!   acknowledged entries is repaired on an idle cluster within 2 s, and
//!   `status` shows the leader's configuration (every member, a removed
//!   one not as a member) and when each follower was last heard;
//! * `concord-cli`: a missing key exits 5 with nothing on stdout; `put`
//!   reads its value from a file or stdin; a value over the 4 MiB command
//!   limit exits 6 before anything is sent;
//! * logs carry no colour codes when stderr is a file, and a node stops
//!   within 200 ms of SIGTERM, gracefully, with its log synced.
//!
//! Every request goes through `concord-cli`, and every check of a node
//! through its files, its log or `concord-cli status`, so
//! `CONCORD_TEST_NODE_BIN` and `CONCORD_TEST_CLI_BIN` can run the suite
//! against other builds of both binaries (see `common/processes.rs`), such
//! as those of a commit before these refusals, where every test here fails.

#[path = "common/processes.rs"]
mod processes;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use concord_tokio::identity;
use concord_tokio::wal;
use processes::{
    cli_binary, cut_last_record_in_half, free_addr, newest_segment, node_binary, records_end_bytes,
    NodeProcesses,
};

const CLUSTER: &str = "mistakes";

/// A cluster of one node.
fn single(label: &str, cluster_id: &str) -> NodeProcesses {
    NodeProcesses::new(label, cluster_id, BTreeMap::from([(1, free_addr())]))
}

/// Runs `concord-node` with `args` until it exits or `within` passes
/// (then kills it): the exit code (`None` if it was still running) and
/// what it wrote to stderr.
fn node_run(args: &[&str], within: Duration) -> (Option<i32>, String) {
    let mut child = Command::new(node_binary())
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn concord-node");
    let deadline = Instant::now() + within;
    let code = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
    }
    (code, stderr)
}

/// `concord-cli` against some servers of a cluster.
struct Cli {
    servers: Vec<String>,
    cluster: String,
}

impl Cli {
    fn new(servers: Vec<String>, cluster: &str) -> Cli {
        Cli {
            servers,
            cluster: cluster.to_string(),
        }
    }

    fn of(cluster: &NodeProcesses) -> Cli {
        Cli::new(cluster.servers(), &cluster.cluster_id)
    }

    /// Runs `concord-cli --servers ... --cluster-id ... <args>` with
    /// `stdin` as its input: exit code, stdout, stderr.
    fn run_with(&self, args: &[&str], stdin: &[u8]) -> (i32, String, String) {
        let mut child = Command::new(cli_binary())
            .args(["--servers", &self.servers.join(","), "--cluster-id"])
            .arg(&self.cluster)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run concord-cli");
        let mut input = child.stdin.take().expect("stdin");
        let data = stdin.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = input.write_all(&data);
        });
        let output = child.wait_with_output().expect("concord-cli output");
        let _ = writer.join();
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).to_string(),
            String::from_utf8_lossy(&output.stderr).to_string(),
        )
    }

    fn run(&self, args: &[&str]) -> (i32, String, String) {
        self.run_with(args, b"")
    }

    /// Runs `args` until it succeeds (a leader may be being elected);
    /// its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (code, stdout, stderr) = self.run(args);
            if code == 0 {
                return stdout;
            }
            assert!(
                Instant::now() < deadline,
                "concord-cli {args:?} kept failing ({code}): {stderr}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn put(&self, key: &str, value: &str) {
        self.ok(&["--timeout-ms", "1000", "kv", "put", key, value]);
    }

    /// The value of `key` (its line on stdout).
    fn get(&self, key: &str) -> String {
        let out = self.ok(&["--timeout-ms", "1000", "kv", "get", key]);
        out.strip_suffix('\n').unwrap_or(&out).to_string()
    }

    fn status(&self) -> Status {
        Status::parse(&self.run(&["--timeout-ms", "500", "status"]).1)
    }

    /// The leader's id, once one answers `status`.
    fn leader(&self) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(row) = self.status().leader() {
                return row.id;
            }
            assert!(Instant::now() < deadline, "no leader found");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// `concord-cli status` as printed: a row per server (by its header's
/// column names) and, under the leader's, a line per follower.
struct Status {
    text: String,
    rows: Vec<Row>,
}

struct Row {
    server: String,
    id: u64,
    columns: BTreeMap<String, String>,
    followers: Vec<String>,
}

impl Row {
    fn column(&self, name: &str) -> &str {
        self.columns.get(name).map_or("", String::as_str)
    }

    fn number(&self, name: &str) -> u64 {
        self.column(name).parse().unwrap_or(0)
    }

    /// The line of follower `id`, if the row lists one.
    fn follower(&self, id: u64) -> Option<&str> {
        let prefix = format!("follower {id:>3}:");
        self.followers
            .iter()
            .find(|line| line.trim_start().starts_with(&prefix))
            .map(String::as_str)
    }
}

/// The number after `word` in `line`.
fn number_after(line: &str, word: &str) -> Option<String> {
    let mut words = line.split_whitespace();
    words.find(|w| *w == word)?;
    words.next().map(str::to_string)
}

impl Status {
    fn parse(text: &str) -> Status {
        let mut header: Vec<String> = Vec::new();
        let mut rows: Vec<Row> = Vec::new();
        for line in text.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            if words.first() == Some(&"server") {
                header = words.iter().map(|w| w.to_string()).collect();
            } else if line.starts_with("    ") {
                if let Some(row) = rows.last_mut() {
                    row.followers.push(line.to_string());
                }
            } else if words.len() == header.len() && words[0].contains(':') {
                let columns: BTreeMap<String, String> = header
                    .iter()
                    .cloned()
                    .zip(words.iter().map(|w| w.to_string()))
                    .collect();
                rows.push(Row {
                    server: words[0].to_string(),
                    id: columns["id"].parse().unwrap_or(0),
                    columns,
                    followers: Vec::new(),
                });
            }
        }
        Status {
            text: text.to_string(),
            rows,
        }
    }

    fn leader(&self) -> Option<&Row> {
        self.rows.iter().find(|row| row.column("role") == "Leader")
    }

    fn of(&self, id: u64) -> Option<&Row> {
        self.rows.iter().find(|row| row.id == id)
    }
}

/// The flags that start node `id` of `cluster` on `data_dir`.
fn node_args(cluster: &NodeProcesses, id: u64, cluster_id: &str, data_dir: &Path) -> Vec<String> {
    vec![
        "--id".into(),
        id.to_string(),
        "--listen".into(),
        cluster.addr(id),
        "--peers".into(),
        cluster.peers_arg(),
        "--data-dir".into(),
        data_dir.display().to_string(),
        "--cluster-id".into(),
        cluster_id.into(),
    ]
}

/// Three nodes started, and `count` keys `{prefix}-{i}` written through
/// the client, each with the value `v-{i}`.
fn started_with_writes(label: &str, prefix: &str, count: usize) -> (NodeProcesses, Cli) {
    let mut cluster = NodeProcesses::on_loopback(label, CLUSTER);
    cluster.start_all();
    let cli = Cli::of(&cluster);
    for i in 0..count {
        cli.put(&format!("{prefix}-{i}"), &format!("v-{i}"));
    }
    (cluster, cli)
}

/// Runs `concord-node` with `args`, which it must refuse within 10 s with
/// exit status 3 (a data directory that is another's); its stderr.
fn refused_as_foreign(args: &[String]) -> String {
    let (code, stderr) = node_run(&strs(args), Duration::from_secs(10));
    assert_eq!(code, Some(3), "{stderr}");
    stderr
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

#[test]
fn a_data_directory_of_another_cluster_or_node_is_refused_naming_both() {
    let mut other = single("foreign", "other");
    other.start(1);
    Cli::of(&other).put("k", "of-other");
    other.sigterm_all();
    let dir = other.data_dir(1);

    // Node 1 of cluster "demo" on cluster "other"'s directory.
    let args = node_args(&other, 1, "demo", &dir);
    let started = Instant::now();
    let (code, stderr) = node_run(&strs(&args), Duration::from_secs(10));
    assert_eq!(code, Some(3), "refused with its own exit status:\n{stderr}");
    assert!(started.elapsed() < Duration::from_secs(10));
    for needle in [
        "belongs to cluster \"other\"",
        "for cluster \"demo\" (--cluster-id)",
        "--data-dir",
    ] {
        assert!(stderr.contains(needle), "{needle:?} not in:\n{stderr}");
    }

    // Node 2 of the same cluster on node 1's directory (swapped disks).
    let mut args = node_args(&other, 1, "other", &dir);
    args[1] = "2".into();
    args[5] = format!("2={}", other.addr(1));
    let stderr = refused_as_foreign(&args);
    assert!(
        stderr.contains("belongs to node 1 of cluster \"other\"")
            && stderr.contains("started as node 2 (--id)"),
        "{stderr}"
    );

    // Nothing was touched: its own node still starts and serves its data.
    other.start(1);
    assert_eq!(Cli::of(&other).get("k"), "of-other");
    other.sigterm_all();
}

#[test]
fn a_second_process_on_a_data_directory_is_refused_and_a_dead_ones_lock_is_not() {
    let mut cluster = single("locked", CLUSTER);
    cluster.start(1);
    let first_pid = cluster.pid(1).expect("runs");
    let cli = Cli::of(&cluster);
    cli.put("k", "v1");
    // The same directory, another address.
    let other = free_addr();
    let dir = cluster.data_dir(1).display().to_string();
    let peers = format!("1={other}");
    let args = [
        "--id",
        "1",
        "--listen",
        &other,
        "--peers",
        &peers,
        "--data-dir",
        &dir,
        "--cluster-id",
        CLUSTER,
    ];
    let (code, stderr) = node_run(&args, Duration::from_secs(10));
    assert_eq!(code, Some(4), "refused with its own exit status:\n{stderr}");
    assert!(
        stderr.contains("is in use by another process")
            && stderr.contains(&format!("pid {first_pid}")),
        "{stderr}"
    );
    // The first one never noticed.
    assert!(cluster.still_runs(1));
    cli.put("k", "v2");
    // A SIGKILLed holder's lock goes with it: the lock file stays, the
    // lock does not.
    cluster.sigkill(1);
    assert!(cluster.data_dir(1).join(identity::LOCK_FILE_NAME).exists());
    cluster.start(1);
    assert_eq!(cli.get("k"), "v2");
    cluster.sigterm_all();
}

/// Copies directory `from` into `to`, recursively.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// `node/tests/data/format-2-node-1`: the data directory of node 1 of a
/// one-node cluster "fixture", written by `concord-node` of the commit
/// before data directories recorded whose they are (write-ahead log format
/// 2, no `identity` file): keys `small-0`..`small-49` with values
/// `value-<i>`, and `large` with 100,000 bytes of `x`, then stopped with
/// SIGTERM. See `node/tests/data/README.md` for how it was made.
fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/format-2-node-1")
}

#[test]
fn a_data_directory_of_the_previous_format_is_upgraded_without_loss() {
    use concord_tokio::identity::IdentityClaim;
    use concord_tokio::multi::data_dir;
    use concord_tokio::multi::shared_log::MultiWalOptions;
    let cluster = single("upgrade", "fixture");
    let dir = cluster.data_dir(1);
    copy_dir(&fixture(), &dir);
    assert!(!dir.join(identity::IDENTITY_FILE_NAME).exists());
    // The server refuses its key-value data, of the format before
    // services, rather than serve it as an empty store.
    let args = node_args(&cluster, 1, "fixture", &dir);
    let stderr = refused_as_foreign(&args);
    assert!(stderr.contains("from before services"), "{stderr}");
    // Its log is upgraded in place to the shared log, every entry kept.
    let claim = IdentityClaim {
        cluster_id: "fixture".to_string(),
        node_id: 1,
        bootstrap: true,
    };
    let (opened, _, _) =
        data_dir::open_one_group_data_dir_as(&dir, MultiWalOptions::default(), &claim, 1)
            .expect("the log opens");
    let recovered = &opened.recovery.groups[&1].recovered;
    // 51 puts, each by its own concord-cli run (a session registration
    // and the put), and the leader's no-op of term 1.
    assert_eq!(recovered.entries.len(), 2 * 51 + 1, "{:?}", recovered.base);
    drop(opened);
    let recorded = identity::read(&dir)
        .expect("readable")
        .expect("an identity was recorded");
    assert_eq!(recorded.cluster_id, "fixture");
    assert_eq!(recorded.node_id, 1);
    assert_eq!(recorded.storage_format, wal::FORMAT_VERSION);
    assert!(
        recorded.incarnation.is_some(),
        "the only node bootstraps the incarnation"
    );
}

/// What `node/tests/data/make-single-group-fixture.sh` wrote into the
/// fixture `single-group-v2`, by the script's own rules (not read from
/// the fixture): every acknowledged write's final value.
fn single_group_v2_writes() -> BTreeMap<String, String> {
    let mut writes: BTreeMap<String, String> = (0..60)
        .map(|i| (format!("small-{i}"), format!("value-{i}")))
        .collect();
    writes.insert("large".into(), "x".repeat(10_000));
    writes.insert("small-7".into(), "seven-again".into());
    writes.insert("log".into(), "abc".into());
    writes
}

/// `node/tests/data/single-group-v2`: the three data directories of a
/// key-value cluster of today's single-group server (log and snapshot
/// format 2, a snapshot on disk). The one runtime replaced that server; this
/// test holds every acknowledged write of such a directory readable,
/// today by the server that wrote it, after the retirement by the one
/// runtime's upgrade.
#[test]
fn a_single_group_servers_data_directories_serve_every_acknowledged_write() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/single-group-v2");
    // The servers listen where the fixture's servers did: the address
    // book replicated in its snapshot names those ports, and what was
    // replicated wins over `--peers` (runtime/src/addresses.rs).
    let addrs = (1..=3)
        .map(|id| (id, format!("127.0.0.1:{}", 7410 + id)))
        .collect();
    let mut cluster = NodeProcesses::new("single-group-v2", "fixture-v2", addrs);
    for id in cluster.ids() {
        let dir = cluster.data_dir(id);
        copy_dir(&fixture.join(format!("node-{id}")), &dir);
        assert!(
            dir.join("snapshots").read_dir().unwrap().next().is_some(),
            "the fixture holds a snapshot"
        );
    }
    cluster.start_all();
    let cli = Cli::of(&cluster);
    let writes = single_group_v2_writes();
    for (key, value) in &writes {
        assert_eq!(&cli.get(key), value, "key {key}");
    }
    // A read at each server alone: every replica kept every write.
    for server in cluster.servers() {
        let one = Cli::new(vec![server.clone()], "fixture-v2");
        let out = one.ok(&[
            "--timeout-ms",
            "1000",
            "--read",
            "follower",
            "kv",
            "get",
            "log",
        ]);
        assert_eq!(out.trim_end(), "abc", "at {server}");
    }
    // And it still takes writes.
    cli.put("after-upgrade", "yes");
    assert_eq!(cli.get("after-upgrade"), "yes");
    cluster.sigterm_all();
}

/// A survivor of a single-group cluster that lost its majority, never
/// started on the one runtime: `concord-cli force-recover` upgrades its
/// directory to the shared log first, then forces group 1 to voters
/// {1}; started alone, it serves every acknowledged write of the
/// fixture and takes new ones.
#[test]
fn force_recover_upgrades_a_single_group_survivor_which_then_serves_alone() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/single-group-v2/node-1");
    let mut cluster = single("force-recover-v2", "fixture-v2");
    let dir = cluster.data_dir(1);
    copy_dir(&fixture, &dir);
    let force = |confirm: bool| {
        let mut command = Command::new(cli_binary());
        command
            .args(["force-recover", "--data-dir"])
            .arg(&dir)
            .args(["--node-id", "1", "--reason", "lost nodes 2 and 3"]);
        if confirm {
            command.arg("--i-understand-acknowledged-writes-may-be-lost");
        }
        let out = command.output().expect("run concord-cli force-recover");
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code(), text)
    };
    // The plan alone: the directory is upgraded, the log not forced.
    let (code, text) = force(false);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("from the single-group server's layout to the shared log"),
        "{text}"
    );
    assert!(text.contains("no catalog (group 0) here yet"), "{text}");
    assert!(
        dir.join("log").is_dir() && !dir.join("wal").exists(),
        "{text}"
    );
    let (code, text) = force(true);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("DONE: group 1's forced configuration"),
        "{text}"
    );
    cluster.start_all();
    let cli = Cli::of(&cluster);
    for (key, value) in &single_group_v2_writes() {
        assert_eq!(&cli.get(key), value, "key {key}");
    }
    cli.put("after-recovery", "yes");
    assert_eq!(cli.get("after-recovery"), "yes");
    cluster.sigterm_all();
}

#[test]
fn a_data_directory_of_another_service_is_refused_naming_both() {
    let mut chat = single("other-service", CLUSTER);
    chat.start_with(1, &["--service", "chat"]);
    let cli = Cli::of(&chat);
    // Once a leader answers, one account is created.
    assert_eq!(
        cli.ok(&["--timeout-ms", "1000", "chat", "list-accounts"]),
        ""
    );
    let (code, _, stderr) = cli.run(&["--timeout-ms", "1000", "chat", "create-account", "ann"]);
    assert_eq!(code, 0, "{stderr}");
    // A key-value request to the chat server is refused by name.
    let (code, _, stderr) = cli.run(&["--timeout-ms", "1000", "kv", "put", "k", "v"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("a request of the kv service reached a chat server"),
        "{stderr}"
    );
    chat.sigterm_all();
    // The chat server's directory, started as a key-value server.
    let args = node_args(&chat, 1, CLUSTER, &chat.data_dir(1));
    let stderr = refused_as_foreign(&args);
    assert!(
        stderr.contains("holds a chat cluster's data")
            && stderr.contains("started with --service kv"),
        "{stderr}"
    );
    // Its own service still serves it.
    chat.start_with(1, &["--service", "chat"]);
    let out = cli.ok(&["--timeout-ms", "1000", "chat", "list-accounts"]);
    assert_eq!(out, "ann\n");
    chat.sigterm_all();
}

#[test]
fn a_node_of_another_incarnation_of_the_cluster_is_refused_at_the_handshake() {
    // An earlier cluster "mistakes", torn down...
    let (mut earlier, cli) = started_with_writes("incarnation-old", "old", 20);
    earlier.sigterm_all();
    // ...and a new one of the same name on the same addresses, where node
    // 2 is started on the earlier cluster's directory by mistake.
    let mut cluster = NodeProcesses::new("incarnation-new", CLUSTER, earlier.addrs.clone());
    std::fs::rename(earlier.data_dir(2), cluster.data_dir(2)).expect("move node 2's directory");
    let old_incarnation = identity::read(&cluster.data_dir(2))
        .unwrap()
        .and_then(|i| i.incarnation)
        .expect("the earlier cluster's incarnation");
    cluster.start(1);
    cluster.start(3);
    // Node 3 adopts the incarnation node 1 draws when node 1 dials it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let new_incarnation = loop {
        let read = |id| {
            identity::read(&cluster.data_dir(id))
                .ok()
                .flatten()
                .and_then(|i| i.incarnation)
        };
        if let (Some(first), Some(third)) = (read(1), read(3)) {
            if first == third {
                break first;
            }
        }
        assert!(
            Instant::now() < deadline,
            "node 3 never adopted node 1's incarnation"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_ne!(old_incarnation, new_incarnation);
    cluster.start(2);
    let old = old_incarnation.to_string();
    let new = new_incarnation.to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let logs = [
            cluster.log_text(1),
            cluster.log_text(2),
            cluster.log_text(3),
        ];
        let refused = |log: &str| {
            log.contains("belongs to incarnation") && log.contains(&old) && log.contains(&new)
        };
        if refused(&logs[1]) && (refused(&logs[0]) || refused(&logs[2])) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no refusal naming incarnations {old} and {new} in the logs:\n{}",
            logs.join("\n----\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // A new cluster elects once every voter has reported an empty log (an
    // empty voter may be one whose disk was replaced), and node 2 never
    // reaches it: nothing is written, and the stranger leads nothing.
    let (code, _, stderr) = cli.run(&["--timeout-ms", "1000", "kv", "put", "new", "1"]);
    assert_ne!(
        code, 0,
        "a write with a stranger among the voters: {stderr}"
    );
    // The operator's fix: node 2's directory moved away, node 2 started
    // empty. It joins the new cluster, which elects and writes.
    cluster.sigkill(2);
    std::fs::remove_dir_all(cluster.data_dir(2)).expect("remove node 2's directory");
    cluster.start(2);
    cli.put("new", "2");
    assert_eq!(cli.get("new"), "2");
    let deadline = Instant::now() + Duration::from_secs(10);
    while identity::read(&cluster.data_dir(2))
        .ok()
        .flatten()
        .and_then(|i| i.incarnation)
        != Some(new_incarnation)
    {
        assert!(
            Instant::now() < deadline,
            "node 2 never adopted the new incarnation"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    cluster.sigterm_all();
}

#[test]
fn a_follower_that_lost_acknowledged_entries_is_repaired_on_an_idle_cluster() {
    let (mut cluster, cli) = started_with_writes("idle-repair", "k", 30);
    let leader = cli.leader();
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    // Every entry acknowledged by the follower, nothing in flight.
    let deadline = Instant::now() + Duration::from_secs(10);
    let last = loop {
        let status = cli.status();
        if let Some(row) = status.of(leader) {
            let acked = row
                .follower(follower)
                .and_then(|line| number_after(line, "match"));
            let last = row.number("last");
            if acked == Some(last.to_string()) && row.number("commit") == last {
                break last;
            }
        }
        assert!(Instant::now() < deadline, "follower never caught up");
        std::thread::sleep(Duration::from_millis(20));
    };
    cluster.sigkill(follower);
    // Its last record was fsynced and acknowledged; the disk loses it.
    let segment = newest_segment(&cluster.data_dir(follower));
    cut_last_record_in_half(&segment);
    cluster.start_with(follower, &["--accept-wal-data-loss"]);
    let restarted = Instant::now();
    // No write anywhere: the leader must find and repair it alone.
    let repaired = loop {
        let status = cli.status();
        if status
            .of(follower)
            .is_some_and(|row| row.number("last") >= last)
        {
            break restarted.elapsed();
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(2),
            "the follower was not repaired within 2 s on an idle cluster:\n{}",
            status.text
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    eprintln!("follower {follower} repaired {repaired:?} after its restart (idle cluster)");
    let status = cli.status();
    let row = status.of(leader).expect("the leader's row");
    assert_eq!(row.number("last"), last, "nothing was written meanwhile");
    let line = row.follower(follower).expect("the follower's line");
    assert!(
        line.contains("LOST ACKNOWLEDGED ENTRIES") && line.contains("ms ago"),
        "{}",
        status.text
    );
    // A follower read there is served at once.
    let started = Instant::now();
    let at_follower = Cli::new(vec![cluster.addr(follower)], CLUSTER);
    let (code, stdout, stderr) = at_follower.run(&["--read", "follower", "kv", "get", "k-29"]);
    assert_eq!((code, stdout.trim()), (0, "v-29"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(2));
    cluster.sigterm_all();
}

#[test]
fn status_lists_the_leaders_configuration_and_when_each_follower_was_heard() {
    let mut cluster = NodeProcesses::on_loopback("status", CLUSTER);
    cluster.start_all();
    let new_addr = cluster.add_joining(4);
    cluster.start(4);
    let cli = Cli::of(&cluster);
    cli.put("k", "v");
    cli.ok(&["member", "add-learner", "4", &new_addr]);
    // A learner catches up at once on so short a log; promote it.
    cli.ok(&["member", "promote", "4"]);
    // Remove a voter that is not the leader, and leave it running.
    let leader = cli.leader();
    let removed = (1..=3).find(|id| *id != leader).unwrap();
    cli.ok(&["member", "remove", &removed.to_string()]);
    // `status` against the original --servers: node 4 is a member, the
    // removed node is not.
    let status = cli.status();
    let out = &status.text;
    assert!(out.contains("from the leader"), "{out}");
    let four = status
        .of(4)
        .unwrap_or_else(|| panic!("node 4 not listed:\n{out}"));
    assert_eq!(four.server, new_addr);
    assert_eq!(four.column("member"), "voter", "{out}");
    let stranger = status
        .of(removed)
        .unwrap_or_else(|| panic!("node {removed} not listed:\n{out}"));
    assert_eq!(stranger.column("member"), "NO", "{out}");
    let (members_part, strangers_part) = out
        .split_once("not members of the leader's configuration:")
        .unwrap_or_else(|| panic!("no section of strangers:\n{out}"));
    assert!(!members_part.contains(&cluster.addr(removed)), "{out}");
    assert!(strangers_part.contains(&cluster.addr(removed)), "{out}");
    // Every follower of the leader, with its last contact.
    let row = status.of(leader).expect("the leader's row");
    for id in (1..=4).filter(|id| *id != leader && *id != removed) {
        let line = row
            .follower(id)
            .unwrap_or_else(|| panic!("follower {id} not shown:\n{out}"));
        assert!(line.contains("heard") && line.contains("ms ago"), "{out}");
    }
    cluster.sigterm_all();
}

#[test]
fn cli_missing_keys_large_values_and_values_from_files_or_stdin() {
    let mut cluster = single("cli", CLUSTER);
    cluster.start(1);
    let cli = Cli::of(&cluster);
    cli.put("warm", "up");
    // A missing key: exit 5, nothing on stdout.
    let (code, stdout, stderr) = cli.run(&["kv", "get", "nothing-here"]);
    assert_eq!(code, 5, "{stdout}{stderr}");
    assert_eq!(stdout, "");
    assert!(stderr.contains("\"nothing-here\" is absent"), "{stderr}");
    // A value of 300 kB, more than one command-line argument may hold,
    // from stdin and from a file.
    let big = vec![b'y'; 300_000];
    let (code, stdout, stderr) = cli.run_with(&["kv", "put", "big", "--value-file", "-"], &big);
    assert_eq!((code, stdout.trim()), (0, "ok"), "{stderr}");
    assert_eq!(cli.get("big").len(), 300_000);
    let file = cluster.base.join("value.bin");
    std::fs::write(&file, b"from a file").unwrap();
    let path = file.display().to_string();
    let (code, _, stderr) = cli.run(&["kv", "put", "f", "--value-file", &path]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(cli.get("f"), "from a file");
    // Over the limit: refused at once, before sending, with its own code.
    std::fs::write(&file, vec![b'z'; 5 * 1024 * 1024]).unwrap();
    let started = Instant::now();
    let (code, _, stderr) = cli.run(&["kv", "put", "huge", "--value-file", &path]);
    assert_eq!(code, 6, "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        stderr.contains("4 MiB") && stderr.contains("nothing was sent"),
        "{stderr}"
    );
    assert!(!stderr.contains("may or may not"), "{stderr}");
    let (code, _, stderr) = cli.run_with(
        &["kv", "put", "huge", "--value-file", "-"],
        &vec![b'z'; 4 * 1024 * 1024],
    );
    assert_eq!(code, 6, "{stderr}");
    // The limit is in --help.
    let (_, help, _) = cli.run(&["--help"]);
    assert!(
        help.contains("4 MiB") && help.contains("--value-file"),
        "{help}"
    );
    let (code, _, _) = cli.run(&["kv", "get", "huge"]);
    assert_eq!(code, 5, "nothing was written");
    cluster.sigterm_all();
}

#[test]
fn logs_to_a_file_carry_no_colour_codes() {
    let mut cluster = single("colour", CLUSTER);
    cluster.start(1);
    Cli::of(&cluster).put("k", "v");
    cluster.sigterm_all();
    let log = cluster.log_text(1);
    assert!(log.contains("concord-node serving"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a log file:\n{log}"
    );
}

#[test]
fn sigterm_stops_a_node_within_200_ms_gracefully_with_its_log_synced() {
    let (mut cluster, cli) = started_with_writes("sigterm", "k", 20);
    let leader = cli.leader();
    // A follower, then the leader, each with writes just before.
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let mut stopped = Vec::new();
    for id in [follower, leader] {
        for i in 0..5 {
            cli.put(&format!("{id}-{i}"), "v");
        }
        cluster.signal(id, libc::SIGTERM);
        let sent = Instant::now();
        let status = cluster
            .wait_exit(id, Duration::from_secs(5))
            .expect("exited");
        let took = sent.elapsed();
        assert_eq!(status.code(), Some(0), "stopped by a signal: exit 0");
        stopped.push((id, took));
    }
    for (id, took) in &stopped {
        eprintln!("node {id} stopped {took:?} after SIGTERM");
        assert!(
            *took < Duration::from_millis(200),
            "node {id} took {took:?} to stop after SIGTERM:\n{}",
            cluster.log_text(*id)
        );
        // It stopped gracefully (waiting clients answered, the log's
        // writer joined), not by the runtime tearing the server down.
        let log = cluster.log_text(*id);
        assert!(
            log.contains("SIGTERM: shutting down") && log.contains("server stopped"),
            "node {id} did not stop gracefully:\n{log}"
        );
        // Everything in its log is covered by the durable marker: the
        // writer synced what it was given before the process exited.
        let dir = cluster.data_dir(*id);
        let bytes = std::fs::read(dir.join("log").join("durable")).expect("a durable marker");
        let marker = concord_tokio::multi::record::DurableMarker::decode(&bytes)
            .expect("a valid durable marker");
        let newest = newest_segment(&dir);
        let newest_number: u64 = newest
            .file_stem()
            .and_then(|stem| stem.to_str())
            .and_then(|stem| stem.parse().ok())
            .expect("a numbered segment");
        assert_eq!(
            (marker.segment, marker.offset_bytes),
            (newest_number, records_end_bytes(&newest)),
            "node {id}'s whole log is durable"
        );
    }
    cluster.sigterm_all();
}
