//! Growing, rebalancing and shrinking a multi-group cluster on real
//! processes: three `concord-node --groups 8` on loopback take keys; a
//! fourth joins (`--join`), `concord-cli cluster add-server` records it
//! and `cluster balance` moves replicas to it until `cluster status`
//! shows it within the band. Every acknowledged key reads back. Then
//! `cluster drain 1` empties server 1 and `cluster remove-server 1`
//! retires it; the keys still read back. With `--balance` the servers
//! fill an added server by themselves, no `cluster balance` running.
//! Bad input is refused with its
//! reason and a non-zero exit, nothing moved: an id or address in use,
//! a server that does not run, a drain that would leave the placement
//! rule unmet (too few servers, or the last server of a zone).
//!
//! ```text
//! cargo test -p concord-node --test cluster_rebalance -- --nocapture
//! ```

#[path = "common/processes.rs"]
mod processes;

use std::time::{Duration, Instant};

use processes::{cli_binary, output_of, NodeProcesses};

const CLUSTER: &str = "cluster-rebalance";
const GROUPS: &str = "8";
const KEYS: u32 = 40;

/// Runs `concord-cli --servers <servers> --groups 8 <args>`: exit code,
/// stdout, stderr.
fn cli(servers: &[String], args: &[&str]) -> (i32, String, String) {
    output_of(
        std::process::Command::new(cli_binary())
            .args(["--servers", &servers.join(","), "--cluster-id", CLUSTER])
            .args(["--timeout-ms", "2000", "--groups", GROUPS])
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
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Runs `args` once; it must succeed. Its stdout.
fn ok_once(servers: &[String], args: &[&str]) -> String {
    let (code, stdout, stderr) = cli(servers, args);
    assert_eq!(code, 0, "concord-cli {args:?}: {stdout}{stderr}");
    eprintln!("concord-cli {args:?}:\n{stdout}");
    stdout
}

/// Runs `args` once; it must fail with a message containing `reason`.
fn refused(servers: &[String], args: &[&str], reason: &str) {
    let (code, stdout, stderr) = cli(servers, args);
    assert_ne!(code, 0, "concord-cli {args:?} succeeded: {stdout}");
    assert!(
        stderr.contains(reason),
        "concord-cli {args:?} (exit {code}) does not say {reason:?}: {stdout}{stderr}"
    );
}

/// From `cluster status`: the band, and server `id`'s state and
/// replicas.
fn status_of(status: &str, id: u64) -> ((usize, usize), String, usize) {
    let band_at = status.find("band ").expect("a band in the status");
    let words: Vec<&str> = status[band_at..].split_whitespace().collect();
    let band = (words[1].parse().unwrap(), words[3].parse().unwrap());
    let row = status
        .lines()
        .find(|line| line.split_whitespace().next() == Some(&id.to_string()))
        .unwrap_or_else(|| panic!("no row of server {id} in {status}"));
    let columns: Vec<&str> = row.split_whitespace().collect();
    (band, columns[1].to_string(), columns[3].parse().unwrap())
}

/// Waits until `cluster balance --dry-run` plans nothing (no replica
/// and no leadership to move: a leadership handed over by the last
/// `cluster balance` may still be electing) and checks that each of
/// servers 1 to 4 then leads a count within the leader band. With 8
/// groups of 3 replicas on 4 servers each server holds 6: a server
/// outside the band always shares a group with one the balancer can
/// hand a leadership to, so the fixed point is within the band.
fn assert_leaders_balanced_within(servers: &[String], within: Duration) {
    let deadline = Instant::now() + within;
    let status = loop {
        let (_, dry, _) = cli(servers, &["cluster", "balance", "--dry-run"]);
        let (code, status, _) = cli(servers, &["cluster", "status"]);
        if code == 0 && dry.trim() == "balanced" {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "not balanced within {within:?}: {dry}\n{status}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    eprintln!("leaders balanced:\n{status}");
    let (low, high) = leader_band(&status);
    for id in 1..=4 {
        let led = leaders_of(&status, id);
        assert!(
            (low..=high).contains(&led),
            "server {id} leads {led}, band {low}..={high}: {status}"
        );
    }
}

/// From `cluster status`: the band of leaders per up server.
fn leader_band(status: &str) -> (usize, usize) {
    let line = status.lines().next().expect("a status");
    let before = line.find(" leaders").expect("a leader band");
    let words: Vec<&str> = line[..before]
        .rsplit(", ")
        .next()
        .unwrap()
        .split(' ')
        .collect();
    (words[0].parse().unwrap(), words[2].parse().unwrap())
}

/// From `cluster status`: the groups server `id` leads.
fn leaders_of(status: &str, id: u64) -> usize {
    let row = status
        .lines()
        .find(|line| line.split_whitespace().next() == Some(&id.to_string()))
        .unwrap_or_else(|| panic!("no row of server {id} in {status}"));
    row.split_whitespace().nth(4).unwrap().parse().unwrap()
}

fn read_back(servers: &[String], keys: &[u32]) {
    for key in keys {
        let value = ok_within(
            servers,
            &["kv", "get", &format!("key-{key}")],
            Duration::from_secs(30),
        );
        assert_eq!(value.trim(), format!("value-{key}"), "key-{key}");
    }
}

/// Three servers of 8 groups (started with `extra` too) that took keys
/// 0 to 39: the cluster, the servers' addresses and the keys whose put
/// was acknowledged (more than half).
fn three_servers_with_keys(name: &str, extra: &[&str]) -> (NodeProcesses, Vec<String>, Vec<u32>) {
    let mut cluster = NodeProcesses::on_loopback(name, CLUSTER);
    let mut flags = vec!["--groups", GROUPS];
    flags.extend_from_slice(extra);
    cluster.start_all_with(&flags);
    let three: Vec<String> = (1..=3).map(|id| cluster.addr(id)).collect();
    ok_within(
        &three,
        &["kv", "put", "warm-up", "1"],
        Duration::from_secs(60),
    );
    let acknowledged: Vec<u32> = (0..KEYS)
        .filter(|key| {
            let put = ["kv", "put", &format!("key-{key}"), &format!("value-{key}")];
            cli(&three, &put).0 == 0
        })
        .collect();
    assert!(acknowledged.len() as u32 > KEYS / 2, "{acknowledged:?}");
    (cluster, three, acknowledged)
}

#[test]
fn a_fourth_server_takes_replicas_and_a_drained_one_leaves() {
    let (mut cluster, three, acknowledged) = three_servers_with_keys("cluster-rebalance", &[]);

    // Nothing to add before server 4 runs; bad input is refused.
    let addr4 = cluster.add_joining(4);
    refused(
        &three,
        &["cluster", "add-server", "4", &addr4],
        "does not answer",
    );
    refused(&three, &["cluster", "add-server", "3", &addr4], "is in use");
    refused(
        &three,
        &["cluster", "add-server", "4", "not-an-address"],
        "not a host:port address",
    );
    refused(
        &three,
        &["cluster", "add-server", "4", &addr4, "--zone", "no spaces"],
        "zone",
    );
    refused(
        &three,
        &["cluster", "drain", "9"],
        "not a server of this cluster",
    );

    let peers = format!("{},4={addr4}", cluster.peers_arg());
    cluster.start_with_peers(4, &peers, &["--groups", GROUPS]);
    let four: Vec<String> = (1..=4).map(|id| cluster.addr(id)).collect();
    ok_within(
        &three,
        &["cluster", "add-server", "4", &addr4, "--zone", "z4"],
        Duration::from_secs(30),
    );
    refused(&four, &["cluster", "add-server", "4", &addr4], "is in use");
    let dry = ok_once(&four, &["cluster", "balance", "--dry-run"]);
    assert!(dry.lines().any(|line| line.ends_with("to 4")), "{dry}");
    // 24 replicas over 4 servers: server 4 needs 5 at least (band 5 to 7).
    let status = ok_once(&four, &["cluster", "status"]);
    let left: usize = status
        .split("moves left after those in flight: at least ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no moves left in {status}"));
    assert!(left >= 5, "{status}");

    // The first balance is killed once it started moving; run again, it
    // finishes the moves the catalog records and the rest.
    let out = cluster.base.join("balance-killed.out");
    let file = std::fs::File::create(&out).unwrap();
    let mut killed = std::process::Command::new(cli_binary())
        .args(["--servers", &four.join(","), "--cluster-id", CLUSTER])
        .args(["--timeout-ms", "2000", "--groups", GROUPS])
        .args(["cluster", "balance"])
        .stdout(file)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run concord-cli");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&out)
        .unwrap_or_default()
        .contains("moving group")
    {
        assert!(Instant::now() < deadline, "no move started");
        if killed.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = killed.kill();
    let _ = killed.wait();
    eprintln!(
        "killed balance:\n{}",
        std::fs::read_to_string(&out).unwrap_or_default()
    );
    let balance = ok_once(&four, &["cluster", "balance", "--time-max-secs", "300"]);
    assert!(balance.contains("balanced"), "{balance}");
    let status = ok_once(&four, &["cluster", "status"]);
    let ((low, high), state, replicas) = status_of(&status, 4);
    assert_eq!(state, "up");
    assert!(
        (low..=high).contains(&replicas) && replicas > 0,
        "server 4 holds {replicas} replicas, band {low}..={high}: {status}"
    );
    assert!(status.contains("moves in flight: none"), "{status}");
    assert!(!status.contains("moves left"), "{status}");
    assert_leaders_balanced_within(&four, Duration::from_secs(30));
    read_back(&four, &acknowledged);

    // Shrink: server 1 still holds replicas, so it cannot be removed yet.
    refused(
        &four,
        &["cluster", "remove-server", "1"],
        "still holds replicas",
    );
    let drain = ok_once(&four, &["cluster", "drain", "1"]);
    assert!(drain.contains("server 1 holds no replica"), "{drain}");
    // Three servers up for three replicas: none more may drain.
    refused(
        &four,
        &["cluster", "drain", "2"],
        "the placement rule needs 3 servers",
    );
    ok_once(&four, &["cluster", "remove-server", "1"]);
    let status = ok_once(&four, &["cluster", "status"]);
    let (_, state, replicas) = status_of(&status, 1);
    assert_eq!((state.as_str(), replicas), ("retired", 0), "{status}");
    let rest: Vec<String> = (2..=4).map(|id| cluster.addr(id)).collect();
    read_back(&rest, &acknowledged);
    let (code, stdout, _) = cli(&rest, &["kv", "put", "after", "1"]);
    assert_eq!(code, 0, "{stdout}");

    // Zones: 2 and 3 in zone a, 4 in z4. A rule of two replicas in two
    // zones holds, but not without server 4, the last of its zone.
    ok_once(&rest, &["cluster", "set-zone", "2", "a"]);
    ok_once(&rest, &["cluster", "set-zone", "3", "a"]);
    refused(&rest, &["cluster", "set-zone", "3", "a b"], "zone");
    refused(&rest, &["cluster", "set-rule", "--replicas", "9"], "9");
    ok_once(
        &rest,
        &["cluster", "set-rule", "--replicas", "2", "--spread-zones"],
    );
    refused(
        &rest,
        &["cluster", "drain", "4"],
        "the placement rule needs 2 zones",
    );
    let status = ok_once(&rest, &["cluster", "status"]);
    assert_eq!(status_of(&status, 4).1, "up", "{status}");
    ok_once(&rest, &["cluster", "set-rule", "--replicas", "3"]);
}

/// `concord-node --balance`: the catalog's leader moves replicas by
/// itself. A fourth server joins and `cluster add-server` records it;
/// with no `cluster balance` running, the servers move replicas to it
/// until `cluster status` shows it within the band and nothing in
/// flight. Every acknowledged key reads back.
#[test]
fn with_balance_the_catalog_leader_fills_an_added_server_by_itself() {
    let (mut cluster, three, acknowledged) =
        three_servers_with_keys("cluster-self-balance", &["--balance"]);
    // Three servers of three replicas each: no replica to move (the
    // leaderships elections gave may still be handed over).
    let dry = ok_once(&three, &["cluster", "balance", "--dry-run"]);
    assert!(
        dry.lines()
            .all(|line| line == "balanced" || line.contains(" leadership from ")),
        "{dry}"
    );

    let addr4 = cluster.add_joining(4);
    let peers = format!("{},4={addr4}", cluster.peers_arg());
    cluster.start_with_peers(4, &peers, &["--groups", GROUPS, "--balance"]);
    let four: Vec<String> = (1..=4).map(|id| cluster.addr(id)).collect();
    ok_within(
        &three,
        &["cluster", "add-server", "4", &addr4],
        Duration::from_secs(30),
    );
    // No `cluster balance` runs: the servers move replicas to 4.
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        let (code, status, _) = cli(&four, &["cluster", "status"]);
        if code == 0 {
            let ((low, high), state, replicas) = status_of(&status, 4);
            assert_eq!(state, "up", "{status}");
            let settled = (low..=high).contains(&replicas)
                && replicas > 0
                && status.contains("moves in flight: none");
            if settled {
                break status;
            }
        }
        assert!(
            Instant::now() < deadline,
            "server 4 not filled within 120 s: {status}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    eprintln!("replicas balanced by the servers:\n{status}");
    // Then the leaderships.
    assert_leaders_balanced_within(&four, Duration::from_secs(60));
    read_back(&four, &acknowledged);
}

/// Runs `concord-cli ... <args>` for at most `limit`, its stdout going
/// to `out`: its exit code, or `None` if it was still running (then it
/// is killed).
fn run_for(
    servers: &[String],
    args: &[&str],
    out: &std::path::Path,
    limit: Duration,
) -> Option<i32> {
    let file = std::fs::File::create(out).unwrap();
    let mut child = std::process::Command::new(cli_binary())
        .args(["--servers", &servers.join(","), "--cluster-id", CLUSTER])
        .args(["--timeout-ms", "2000", "--groups", GROUPS])
        .args(args)
        .stdout(file)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run concord-cli");
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status.code().unwrap_or(-1));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Starts server 4 with `--join` and records it (`cluster add-server`).
fn add_fourth_server(cluster: &mut NodeProcesses, three: &[String]) {
    let addr4 = cluster.add_joining(4);
    let peers = format!("{},4={addr4}", cluster.peers_arg());
    cluster.start_with_peers(4, &peers, &["--groups", GROUPS]);
    ok_within(
        three,
        &["cluster", "add-server", "4", &addr4],
        Duration::from_secs(30),
    );
}

/// A server added to the cluster dies before it holds anything, and the
/// balancer has started moves to it: each waits for a learner that never
/// catches up. `cluster drain` of the dead server undoes those moves
/// (its learners leave their groups, the catalog forgets them) instead of
/// waiting for them forever, and `cluster remove-server` then retires
/// it. Every acknowledged key reads back and writes go on.
#[test]
fn moves_to_a_server_that_died_are_undone_when_it_is_drained() {
    let (mut cluster, three, acknowledged) = three_servers_with_keys("cluster-undo-moves", &[]);
    add_fourth_server(&mut cluster, &three);
    cluster.sigkill(4);

    // A balance starts moves to server 4; they cannot finish.
    let out = cluster.base.join("balance-to-dead.out");
    let code = run_for(
        &three,
        &["cluster", "balance"],
        &out,
        Duration::from_secs(8),
    );
    let balance = std::fs::read_to_string(&out).unwrap_or_default();
    eprintln!("balance toward the dead server:\n{balance}");
    assert_eq!(
        code, None,
        "the balance ended although server 4 is dead: {balance}"
    );
    assert!(balance.contains("moving group"), "{balance}");
    let status = ok_once(&three, &["cluster", "status"]);
    assert!(!status.contains("moves in flight: none"), "{status}");

    // Draining it undoes them.
    let out = cluster.base.join("drain-dead.out");
    let code = run_for(
        &three,
        &["cluster", "drain", "4"],
        &out,
        Duration::from_secs(90),
    );
    let drain = std::fs::read_to_string(&out).unwrap_or_default();
    eprintln!("drain of the dead server:\n{drain}");
    assert_eq!(code, Some(0), "the drain did not finish: {drain}");
    assert!(
        drain.contains("undone: server 4 is no longer up"),
        "{drain}"
    );
    assert!(drain.contains("server 4 holds no replica"), "{drain}");
    ok_once(&three, &["cluster", "remove-server", "4"]);
    let status = ok_once(&three, &["cluster", "status"]);
    assert!(status.contains("moves in flight: none"), "{status}");
    let (_, state, replicas) = status_of(&status, 4);
    assert_eq!((state.as_str(), replicas), ("retired", 0), "{status}");
    read_back(&three, &acknowledged);
    let (code, stdout, stderr) = cli(&three, &["kv", "put", "after", "1"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
}

/// A server added to the cluster hangs (SIGSTOP: its process holds its
/// port, the catalog still counts it up) once the balancer has started
/// moves to it: its learners never get closer to their groups' logs.
/// `cluster balance --move-stall-secs 3` undoes each such move after 3 s
/// without progress and plans again, instead of holding the groups and
/// the move limits for as long as the server hangs. Once the server runs
/// again, the same command fills it, and every acknowledged key reads
/// back.
#[test]
fn a_move_whose_target_hangs_is_undone_after_the_stall_time() {
    let (mut cluster, three, acknowledged) = three_servers_with_keys("cluster-stall", &[]);
    add_fourth_server(&mut cluster, &three);
    cluster.signal(4, libc::SIGSTOP);

    let out = cluster.base.join("balance-to-hung.out");
    let code = run_for(
        &three,
        &[
            "cluster",
            "balance",
            "--move-stall-secs",
            "3",
            "--time-max-secs",
            "30",
        ],
        &out,
        Duration::from_secs(120),
    );
    let balance = std::fs::read_to_string(&out).unwrap_or_default();
    eprintln!("balance toward the hung server:\n{balance}");
    // It cannot balance onto a hung server: it gives up at its time
    // limit, having undone the stalled moves on the way.
    assert!(
        matches!(code, Some(c) if c != 0),
        "exit {code:?}: {balance}"
    );
    assert!(balance.contains("moving group"), "{balance}");
    assert!(
        balance.contains("undone: server 4 got no closer to the group's log in 3 s"),
        "{balance}"
    );

    cluster.signal(4, libc::SIGCONT);
    let balance = ok_within(
        &three,
        &["cluster", "balance", "--time-max-secs", "120"],
        Duration::from_secs(180),
    );
    assert!(balance.contains("balanced"), "{balance}");
    let status = ok_once(&three, &["cluster", "status"]);
    let ((low, high), state, replicas) = status_of(&status, 4);
    assert_eq!(state, "up", "{status}");
    assert!(
        (low..=high).contains(&replicas),
        "server 4 holds {replicas}, outside the band {low}..={high}: {status}"
    );
    read_back(&three, &acknowledged);
}

/// The moves of `cluster status` that start or end at server `id`.
fn moves_touching(status: &str, id: u64) -> usize {
    status
        .lines()
        .filter_map(|line| line.trim().strip_prefix("group "))
        .filter_map(|rest| rest.split_once(": ")?.1.split_once(" (").map(|(m, _)| m))
        .filter_map(|m| m.split_once(" -> "))
        .filter(|(from, to)| *from == id.to_string() || *to == id.to_string())
        .count()
}

/// Three balancers act at once while a fourth server fills: the servers'
/// own (`--balance`, on the catalog leader) and two `concord-cli cluster
/// balance`. Each plans from its own reading of the catalog; the catalog
/// records a move only within the limits against the moves it holds, so
/// the moves touching server 4 never exceed the limit of 2 per server,
/// and a move refused to one balancer is planned again, not an error:
/// both commands finish, the cluster balanced, every key read back.
#[test]
fn balancers_acting_at_once_keep_the_limits_and_all_finish() {
    let (mut cluster, three, acknowledged) =
        three_servers_with_keys("cluster-two-balancers", &["--balance"]);
    let addr4 = cluster.add_joining(4);
    let peers = format!("{},4={addr4}", cluster.peers_arg());
    cluster.start_with_peers(4, &peers, &["--groups", GROUPS, "--balance"]);
    let four: Vec<String> = (1..=4).map(|id| cluster.addr(id)).collect();
    let spawn = |name: &str| {
        let out = cluster.base.join(name);
        let child = std::process::Command::new(cli_binary())
            .args(["--servers", &four.join(","), "--cluster-id", CLUSTER])
            .args(["--timeout-ms", "2000", "--groups", GROUPS])
            .args(["cluster", "balance", "--time-max-secs", "300"])
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(out.with_extension("err")).unwrap())
            .spawn()
            .expect("run concord-cli");
        (child, out)
    };
    ok_within(
        &three,
        &["cluster", "add-server", "4", &addr4],
        Duration::from_secs(30),
    );
    let mut balances = [spawn("balance-a.out"), spawn("balance-b.out")];
    let deadline = Instant::now() + Duration::from_secs(120);
    let (mut most, mut polls, mut estimates) = (0, 0, 0);
    let mut codes = [None, None];
    while codes.iter().any(Option::is_none) {
        assert!(
            Instant::now() < deadline,
            "the two balances did not finish within 120 s"
        );
        // The first polls watch the moves for the time left.
        let watch = if polls < 2 { "2" } else { "0" };
        let (code, status, _) = cli(&four, &["cluster", "status", "--watch-secs", watch]);
        if code == 0 {
            if status.contains("moves in flight: ") && !status.contains("moves in flight: none") {
                if watch != "0" {
                    let line = status
                        .lines()
                        .find(|line| line.starts_with("time left: "))
                        .unwrap_or_else(|| panic!("no time left while moves run: {status}"));
                    assert!(line.contains("moves finished in the "), "{line}");
                    eprintln!("{line}");
                    estimates += 1;
                } else {
                    assert!(!status.contains("time left: "), "{status}");
                }
            }
            let touching = moves_touching(&status, 4);
            assert!(
                touching <= 2,
                "{touching} moves in flight touch server 4, over the limit of 2: {status}"
            );
            most = most.max(touching);
            polls += 1;
        }
        for (i, (child, _)) in balances.iter_mut().enumerate() {
            if codes[i].is_none() {
                codes[i] = child.try_wait().unwrap().map(|s| s.code().unwrap_or(-1));
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for (i, (_, out)) in balances.iter().enumerate() {
        let said = std::fs::read_to_string(out).unwrap_or_default();
        let err = std::fs::read_to_string(out.with_extension("err")).unwrap_or_default();
        eprintln!("balance {i} (exit {:?}):\n{said}{err}", codes[i]);
        assert_eq!(codes[i], Some(0), "balance {i}: {said}{err}");
    }
    eprintln!(
        "{polls} status polls ({estimates} with the time left); at most {most} moves touched \
         server 4 at once"
    );
    assert!(polls > 0, "no status answered while the balances ran");
    let status = ok_once(&four, &["cluster", "status"]);
    let ((low, high), state, replicas) = status_of(&status, 4);
    assert_eq!(state, "up", "{status}");
    assert!((low..=high).contains(&replicas), "{status}");
    read_back(&four, &acknowledged);
}

/// Each server's snapshot counters from its metrics endpoint at `addr`:
/// bytes of chunks sent, and chunks that waited for the bandwidth limit.
fn snapshot_counters(addr: &str) -> (u64, u64) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("metrics endpoint");
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let value = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|value| value.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{addr} reports no {name}:\n{text}")) as u64
    };
    (
        value("concord_snapshot_sent_bytes_total"),
        value("concord_snapshot_chunks_paced_total"),
    )
}

/// `--snapshot-send-bytes-per-sec`: each server's snapshot bandwidth
/// limit holds while a fourth server is filled with groups of 48 KiB of
/// values each. Between two scrapes of its metrics, no server sent more
/// snapshot bytes than the limit allows for the time between them, plus
/// one tick's credit and one chunk (a tenth of a second's worth, at
/// least 4 KiB); the limit held some chunks back; every move finished
/// and every acknowledged value reads back. Without the limit the same
/// bytes leave a server within a second or two, well past that bound.
#[test]
fn a_snapshot_bandwidth_limit_paces_the_moves_to_an_added_server() {
    const LIMIT_BYTES_PER_SEC: u64 = 16 * 1024;
    const VALUE_BYTES: usize = 8 * 1024;
    const PACED_KEYS: u32 = 48;
    let limit = LIMIT_BYTES_PER_SEC.to_string();
    // Each metrics address is taken just before its server starts: a port
    // found free now may be a client connection's own port by the time
    // the fourth server starts (the kernel hands out the same range).
    let mut metrics: Vec<String> = (0..3).map(|_| processes::free_addr()).collect();
    let mut cluster = NodeProcesses::on_loopback("cluster-snapshot-pace", CLUSTER);
    let flags = |metrics_addr: &str| {
        vec![
            "--groups".to_string(),
            GROUPS.to_string(),
            "--snapshot-every-entries".to_string(),
            "4".to_string(),
            "--compaction-trailing-entries".to_string(),
            "0".to_string(),
            "--snapshot-send-bytes-per-sec".to_string(),
            limit.clone(),
            "--metrics-listen".to_string(),
            metrics_addr.to_string(),
        ]
    };
    for id in 1..=3 {
        let flags = flags(&metrics[id as usize - 1]);
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        cluster.start_with(id, &flags);
    }
    let three: Vec<String> = (1..=3).map(|id| cluster.addr(id)).collect();
    ok_within(
        &three,
        &["kv", "put", "warm-up", "1"],
        Duration::from_secs(60),
    );
    let value_of = |key: u32| format!("{key}-").repeat(VALUE_BYTES)[..VALUE_BYTES].to_string();
    let acknowledged: Vec<u32> = (0..PACED_KEYS)
        .filter(|key| {
            let put = ["kv", "put", &format!("paced-{key}"), &value_of(*key)];
            cli(&three, &put).0 == 0
        })
        .collect();
    assert!(
        acknowledged.len() as u32 > PACED_KEYS / 2,
        "{acknowledged:?}"
    );

    let before: Vec<(u64, u64)> = metrics[..3].iter().map(|a| snapshot_counters(a)).collect();
    let start = Instant::now();
    let addr4 = cluster.add_joining(4);
    let peers = format!("{},4={addr4}", cluster.peers_arg());
    metrics.push(processes::free_addr());
    let flags4 = flags(&metrics[3]);
    let flags4: Vec<&str> = flags4.iter().map(String::as_str).collect();
    cluster.start_with_peers(4, &peers, &flags4);
    let four: Vec<String> = (1..=4).map(|id| cluster.addr(id)).collect();
    ok_within(
        &three,
        &["cluster", "add-server", "4", &addr4],
        Duration::from_secs(30),
    );
    // A stalled transfer fails the test in minutes, not the CLI's hour.
    ok_within(
        &four,
        &["cluster", "balance", "--time-max-secs", "120"],
        Duration::from_secs(240),
    );
    let after: Vec<(u64, u64)> = metrics[..3].iter().map(|a| snapshot_counters(a)).collect();
    let elapsed = start.elapsed();

    let tick_credit = LIMIT_BYTES_PER_SEC / 100;
    let chunk = (LIMIT_BYTES_PER_SEC / 10).max(4 * 1024);
    let allowed = (LIMIT_BYTES_PER_SEC as f64 * elapsed.as_secs_f64()) as u64 + tick_credit + chunk;
    let mut sent_all = 0;
    let mut paced_all = 0;
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        let (sent, paced) = (a.0 - b.0, a.1 - b.1);
        eprintln!(
            "server {}: {sent} snapshot bytes sent in {elapsed:?} ({:.0} bytes/s; at most {allowed}), \
             {paced} chunks held back",
            i + 1,
            sent as f64 / elapsed.as_secs_f64()
        );
        assert!(
            sent <= allowed,
            "server {} sent {sent} snapshot bytes in {elapsed:?}, past its limit of \
             {LIMIT_BYTES_PER_SEC} bytes/s (at most {allowed} with a tick's credit and a chunk)",
            i + 1
        );
        sent_all += sent;
        paced_all += paced;
    }
    // The fill moved whole groups of 48 KiB: enough to hold chunks back.
    assert!(
        sent_all > 4 * chunk,
        "only {sent_all} snapshot bytes were sent: the fill did not go through snapshots"
    );
    assert!(paced_all > 0, "the limit held no chunk back");
    let status = ok_once(&four, &["cluster", "status"]);
    let ((low, high), state, replicas) = status_of(&status, 4);
    assert_eq!(state, "up", "{status}");
    assert!((low..=high).contains(&replicas), "{status}");
    assert!(status.contains("moves in flight: none"), "{status}");
    for key in acknowledged {
        let value = ok_within(
            &four,
            &["kv", "get", &format!("paced-{key}")],
            Duration::from_secs(30),
        );
        assert_eq!(value.trim(), value_of(key), "paced-{key}");
    }
}
