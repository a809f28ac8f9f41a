//! The chat service's fault story on three real `concord-node --service
//! chat` processes on loopback, driven only through its command-line
//! client:
//!
//! 1. one client sends numbered messages from ann to bob while another
//!    fetches bob's mailbox;
//! 2. the leader is SIGKILLed; once a new leader serves, the first is
//!    restarted and must catch up (its applied index reaches the leader's
//!    commit index); then the second leader is SIGKILLed too (two leaders
//!    lost in a row, a majority always alive) and restarted the same way;
//! 3. after the fetcher stops, a few more messages are sent and left
//!    undelivered, every server is stopped, and all three are restarted
//!    from their data directories;
//! 4. bob's mailbox is drained.
//!
//! Checked on the results: no message delivered twice; every
//! acknowledged message delivered (a fetch whose outcome is unknown may
//! have taken messages sent before it returned, and only those may be
//! missing); messages arrive in the order they were sent with increasing
//! ids; and the undelivered messages survive the full restart.

#[path = "common/processes.rs"]
mod processes;
#[path = "common/services.rs"]
mod services;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use services::{cli, CliTarget, Cluster, Outcome};

const CLUSTER: &str = "real-chat-test";
const SENDS_BEFORE_FIRST_KILL: usize = 6;
const SENDS_BETWEEN_KILLS: usize = 6;
const SENDS_AFTER_SECOND_KILL: usize = 6;
const SENDS_BEFORE_RESTART: usize = 5;
const WAIT_MAX: Duration = Duration::from_secs(30);

/// A send: its number, when it was called, and its id when acknowledged.
#[derive(Clone, Debug)]
struct Sent {
    number: usize,
    call: Instant,
    id: Option<u64>,
}

/// One delivered message: (id, body).
type Delivered = (u64, String);

fn send(target: &CliTarget, number: usize) -> Sent {
    let call = Instant::now();
    let body = format!("m{number}");
    let id = match cli(target, &["send", "ann", "bob", &body]) {
        Outcome::Ok(text) => Some(text.trim().parse().expect("a message id")),
        Outcome::Unknown => None,
        Outcome::NotApplied => panic!("send {body} was refused"),
    };
    Sent { number, call, id }
}

/// Fetches bob's mailbox: `Some(messages)`, or `None` when the outcome is
/// unknown (it may have taken messages).
fn fetch(target: &CliTarget) -> Option<Vec<Delivered>> {
    match cli(target, &["fetch", "bob"]) {
        Outcome::Ok(text) => Some(
            text.lines()
                .map(|line| {
                    let mut fields = line.splitn(3, '\t');
                    let id = fields.next().and_then(|id| id.parse().ok());
                    let sender = fields.next();
                    let body = fields.next();
                    match (id, sender, body) {
                        (Some(id), Some("ann"), Some(body)) => (id, body.to_string()),
                        _ => panic!("fetch printed {line:?}, not ID<TAB>ann<TAB>BODY"),
                    }
                })
                .collect(),
        ),
        Outcome::Unknown => None,
        Outcome::NotApplied => panic!("fetch of bob was refused"),
    }
}

fn wait_for_leader(cluster: &Cluster, not: Option<u64>) -> u64 {
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        if let Some(leader) = cluster.leader().filter(|&l| Some(l) != not) {
            return leader;
        }
        assert!(
            Instant::now() < deadline,
            "no new leader within {WAIT_MAX:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until node `id` has applied everything the leader had committed
/// when it came back: it caught up.
fn wait_caught_up(cluster: &Cluster, id: u64) -> u64 {
    let deadline = Instant::now() + WAIT_MAX;
    let target = loop {
        let leader = wait_for_leader(cluster, Some(id));
        if let Some((commit, _)) = cluster.indexes(leader) {
            break commit;
        }
        assert!(Instant::now() < deadline, "the leader stopped answering");
    };
    loop {
        if let Some((_, applied)) = cluster.indexes(id) {
            if applied >= target {
                return applied;
            }
        }
        assert!(
            Instant::now() < deadline,
            "node {id} did not apply up to {target} within {WAIT_MAX:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn create_account(target: &CliTarget, account: &str) {
    for _ in 0..5 {
        match cli(target, &["create-account", account]) {
            Outcome::Ok(_) => return,
            // Refused: it exists (an earlier unknown attempt applied).
            Outcome::NotApplied => {
                let Outcome::Ok(list) = cli(target, &["list-accounts", account]) else {
                    continue;
                };
                assert_eq!(list.trim(), account, "create {account} was refused");
                return;
            }
            Outcome::Unknown => continue,
        }
    }
    panic!("could not create {account}");
}

#[test]
fn chat_loses_two_leaders_in_a_row_and_a_full_restart_without_losing_a_message() {
    let mut cluster = Cluster::on_loopback("chat", CLUSTER);
    for id in 1..=3 {
        cluster.start(id);
    }
    wait_for_leader(&cluster, None);
    let target = cluster.cli_target();
    create_account(&target, "ann");
    create_account(&target, "bob");
    let Outcome::Ok(list) = cli(&target, &["list-accounts", "?o?"]) else {
        panic!("list-accounts failed");
    };
    assert_eq!(list.trim(), "bob");

    let sent_count = Arc::new(AtomicUsize::new(0));
    let stop_sending = Arc::new(AtomicBool::new(false));
    let stop_fetching = Arc::new(AtomicBool::new(false));
    let sender = {
        let (target, count, stop) = (target.clone(), sent_count.clone(), stop_sending.clone());
        std::thread::spawn(move || {
            let mut sent = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                sent.push(send(&target, sent.len() + 1));
                count.fetch_add(1, Ordering::SeqCst);
            }
            sent
        })
    };
    let fetcher = {
        let (target, stop) = (target.clone(), stop_fetching.clone());
        std::thread::spawn(move || {
            // (returned at, messages) per fetch; None: unknown outcome.
            let mut fetches = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let got = fetch(&target);
                fetches.push((Instant::now(), got));
                std::thread::sleep(Duration::from_millis(50));
            }
            fetches
        })
    };
    let wait_sent = |at_least: usize| {
        let deadline = Instant::now() + WAIT_MAX;
        while sent_count.load(Ordering::SeqCst) < at_least {
            assert!(!sender.is_finished(), "the sender stopped");
            assert!(
                Instant::now() < deadline,
                "fewer than {at_least} sends within {WAIT_MAX:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };

    wait_sent(SENDS_BEFORE_FIRST_KILL);
    let first = cluster.leader().expect("a leader before the first kill");
    cluster.sigkill(first);
    let second = wait_for_leader(&cluster, Some(first));
    let before_second = sent_count.load(Ordering::SeqCst);
    wait_sent(before_second + SENDS_BETWEEN_KILLS);
    cluster.start(first);
    let first_applied = wait_caught_up(&cluster, first);

    cluster.sigkill(second);
    let killed_second = Instant::now();
    let third = wait_for_leader(&cluster, Some(second));
    let before_third = sent_count.load(Ordering::SeqCst);
    wait_sent(before_third + SENDS_AFTER_SECOND_KILL);
    cluster.start(second);
    let second_applied = wait_caught_up(&cluster, second);

    stop_fetching.store(true, Ordering::SeqCst);
    let fetches = fetcher.join().expect("fetching client");
    // Left undelivered across the full restart.
    let sent_before_restart = sent_count.load(Ordering::SeqCst);
    wait_sent(sent_before_restart + SENDS_BEFORE_RESTART);
    stop_sending.store(true, Ordering::SeqCst);
    let sent = sender.join().expect("sending client");

    for id in 1..=3 {
        cluster.sigkill(id);
    }
    for id in 1..=3 {
        cluster.start(id);
    }
    wait_for_leader(&cluster, None);
    let mut drained: Vec<Delivered> = Vec::new();
    loop {
        match fetch(&target) {
            Some(messages) if messages.is_empty() => break,
            Some(messages) => drained.extend(messages),
            None => {
                panic!("a fetch after the restart ended unknown; its messages cannot be checked")
            }
        }
    }

    // Every delivery in order: the fetcher's, then the drain's.
    let mut delivered: Vec<Delivered> = fetches
        .iter()
        .filter_map(|(_, got)| got.clone())
        .flatten()
        .collect();
    let before_drain = delivered.len();
    delivered.extend(drained.iter().cloned());
    let mut seen = BTreeMap::new();
    for (position, (id, body)) in delivered.iter().enumerate() {
        if let Some(earlier) = seen.insert(body.clone(), position) {
            panic!("{body} (id {id}) delivered twice, at positions {earlier} and {position}");
        }
    }
    for pair in delivered.windows(2) {
        let number = |body: &str| body[1..].parse::<usize>().expect("a numbered body");
        assert!(
            pair[0].0 < pair[1].0 && number(&pair[0].1) < number(&pair[1].1),
            "out of order: {pair:?}"
        );
    }
    let last_unknown_fetch = fetches
        .iter()
        .filter(|(_, got)| got.is_none())
        .map(|(returned, _)| *returned)
        .max();
    let acknowledged: Vec<&Sent> = sent.iter().filter(|s| s.id.is_some()).collect();
    for message in &acknowledged {
        let body = format!("m{}", message.number);
        let excused = last_unknown_fetch.is_some_and(|returned| message.call < returned);
        assert!(
            seen.contains_key(&body) || excused,
            "acknowledged message {body} (id {:?}) was never delivered",
            message.id
        );
        if let Some(&position) = seen.get(&body) {
            let (id, _) = &delivered[position];
            assert_eq!(Some(*id), message.id, "{body} delivered with another id");
        }
    }
    // The messages sent after the fetcher stopped survived the restart.
    for message in sent.iter().skip(sent_before_restart) {
        let body = format!("m{}", message.number);
        if message.id.is_some() {
            assert!(
                drained.iter().any(|(_, b)| *b == body),
                "{body}, undelivered when every server stopped, is gone after the restart"
            );
        }
    }
    let after_second_kill = acknowledged
        .iter()
        .filter(|s| s.call > killed_second)
        .count();
    assert!(
        after_second_kill >= SENDS_AFTER_SECOND_KILL / 2,
        "only {after_second_kill} sends acknowledged after the second leader was killed"
    );
    eprintln!(
        "leaders {first} then {second} killed (new leaders {second}, {third}); returning servers applied up to {first_applied} and {second_applied}; {} sends ({} acknowledged, {after_second_kill} after the second kill), {} fetches ({} unknown), {before_drain} delivered before the full restart and {} after",
        sent.len(),
        acknowledged.len(),
        fetches.len(),
        fetches.iter().filter(|(_, got)| got.is_none()).count(),
        drained.len()
    );
}

/// `--groups 4`: accounts are sharded; a send between accounts of one
/// group (one name before the first `.`) is delivered once; a send across groups and
/// a listing of every group's accounts are refused naming why.
#[test]
fn chat_on_four_groups_delivers_within_a_group_and_refuses_across() {
    let map = concord_services::sharded_kv::ShardMap::new(4).unwrap();
    let (ann, bob) = ("team.ann", "team.bob");
    let carl = (0..)
        .map(|i| format!("carl-{i}"))
        .find(|name| map.group_of(name.as_bytes()) != map.group_of(b"team"))
        .unwrap();
    let probes: [&[&str]; 2] = [&["fetch", ann], &["fetch", &carl]];
    let cluster = Cluster::started_with_groups("chat", "real-chat-groups", 4, &probes);
    let target = cluster.cli_target();
    for account in [ann, bob, &carl] {
        assert!(matches!(
            cli(&target, &["create-account", account]),
            Outcome::Ok(_)
        ));
    }
    for body in ["one", "two"] {
        assert!(matches!(
            cli(&target, &["send", ann, bob, body]),
            Outcome::Ok(_)
        ));
    }
    match cli(&target, &["fetch", bob]) {
        Outcome::Ok(text) => {
            let bodies: Vec<&str> = text
                .lines()
                .map(|line| line.rsplit('\t').next().unwrap())
                .collect();
            assert_eq!(bodies, vec!["one", "two"], "{text}");
        }
        other => panic!("fetch: {other:?}"),
    }
    match cli(&target, &["fetch", bob]) {
        Outcome::Ok(text) => assert!(text.trim().is_empty(), "delivered twice: {text}"),
        other => panic!("fetch: {other:?}"),
    }
    let (code, _, err) = services::cli_output(&target, &["send", ann, &carl, "hi"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("send names keys of groups"), "{err}");
    let (code, _, err) = services::cli_output(&target, &["list-accounts"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("list_accounts is refused on a multi-group cluster"),
        "{err}"
    );
}
