//! The multi-group scenario: the tokio multi-group host
//! (`concord_tokio::multi::host`, the server loop of `concord-node
//! --groups N`) run as a cluster of `nodes` nodes (3 by default, up to
//! [`NODES_MAX`]) and `groups` groups under madsim:
//! each node the real loop with its shared write-ahead log (written
//! inline, on the page-cache disk model, which a kill cuts at its last
//! sync), one TCP connection per peer (`TcpFrameSender`, `tcp_listener`),
//! the sharded key-value store's state machine, and clients of the
//! sharded store (`ShardedKvClient` over the `RoutingClient`) on madsim's
//! simulated TCP. Faults, one at a time: a node killed and restarted
//! from its disk, a node's disk failing (a write or fsync returns an
//! error; the node stops, then restarts from its disk), a node's disk
//! failing at one of the steps of a snapshot's store (its snapshot
//! files follow a file system's rules: contents durable once synced, a
//! rename once its directory is), an fsync failing
//! once with EIO (what it was to make durable is lost though later syncs
//! would succeed), a disk full for one write (ENOSPC after a short
//! write), synced bytes rotting while a node is down (its restart must
//! refuse the log naming the file; the bytes are then put back), each of
//! them followed by a kill and a restart, a node paused (its process
//! stopped, its clock running on) and resumed, a node cut off, a node cut off
//! from its peers while clients still reach it, a bridge (two sides that
//! hear only the victim), a
//! link cut one way, a slow network, a lossy network (madsim's TCP retransmits: lost packets arrive late, and
//! connections that fall silent are dropped with the frames queued on
//! them), every connection from or to a node reset again and again for
//! a while (`concord_tokio::fault::ConnectionResetter`: madsim cannot
//! break a connection itself), losing requests and answers in flight.
//! Always: every node's clock runs at a rate of its own, drawn per seed
//! within `clock_skew_permille` (±10 % by default: madsim has one clock,
//! so skew is in the rate of each node's ticks), and half the seeds lease
//! their reads (every group's `lease_read_ticks` as long as the declared
//! drift bound allows, every client on `ReadPath::Lease`). The odd
//! seeds put every client on one machine, sharing one connection per
//! server (`SharedConnections`): their requests pipelined, a batch's
//! answers written together; the even seeds give each client its own.
//!
//! Checked: every group has a leader known to every node after the
//! faults heal (and each client then gets through to every key it calls)
//! and again after every node is killed at once and
//! restarted on what its disk kept, every acknowledged append is in its
//! key's value at the end, and the client history of every key (one key per group, so one
//! history per group) is linearizable.
//!
//! Exactly once: every write goes through the client's session in its
//! group (`concord_tokio::multi::session_client`, the groups'
//! `GroupSessions`), and a write whose answer was lost is sent again
//! under the same sequence number. Each append to an append-only key
//! carries a token of its own (`c<client>.<n>;`), written by one call
//! only, so in the key's final value, after every node restarted, each
//! acknowledged token must appear exactly once, a token of a write whose
//! outcome is unknown at most once, a token of a write certainly not
//! applied never, and no value read during the run may hold a token
//! twice. The scenario's client never writes a token twice itself and
//! the session client only opens a new session for a write whose first
//! copy was answered "session expired" (certainly not applied), so no
//! correct run lands a token twice. No node may see a peer's frames out
//! of the order they were sent in (their numbers must rise on one
//! connection; the listener counts a connection it closes for that). A
//! failed check panics naming the
//! seed; otherwise [`run_multi_group`] returns what the run did. The
//! `madsim_multi_group` test runs it over madsim's test seeds, the
//! `madsim-sweep` binary over any range of seeds.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::harness::{
    assert_linearizable, completed_after_heal, ip, join_clients, plain_node, run_faults_with, text,
    DiskTrouble, Fault, FaultRounds,
};
use bytes::Bytes;
use concord::multi::sessions::GroupSessions;
use concord::multi::{GroupId, MultiConfig};
use concord::{Config, NodeId, ReadPath, Role};
use concord_services::sharded_kv::{ShardMachine, ShardMap};
use concord_services::sharded_kv_client::ShardedKvClient;
use concord_sim::history::{Op, Operation, Outcome, Output};
use concord_tokio::fault::ConnectionResetter;
use concord_tokio::listener::ListenerCounters;
use concord_tokio::multi::host::{self, HostEvent, MultiServerConfig, MultiStatus};
use concord_tokio::multi::log_sink::InlineLog;
use concord_tokio::multi::page_cache::PageCacheDisk;
use concord_tokio::multi::routing_client::RoutingConfig;
use concord_tokio::multi::segment_files::SegmentFiles;
use concord_tokio::multi::session_client::SessionConfig;
use concord_tokio::multi::shared_connections::SharedConnections;
use concord_tokio::multi::shared_log::{MultiWalOptions, SharedLog};
use concord_tokio::multi::tcp_listener::{self, MultiListenerConfig};
use concord_tokio::multi::tcp_sender::{TcpFrameConfig, TcpFrameSender};
use concord_tokio::multi::MultiRecovery;
use madsim::rand::{thread_rng, Rng};
use madsim::runtime::Handle;
use madsim::time::{sleep, Instant};
use tokio::sync::{mpsc, oneshot};

const CLUSTER: &str = "madsim-multi";
const PORT: u16 = 7100;
/// Most servers of a cluster (a Raft group of more than 7 voters is
/// slower to agree and no safer in practice).
pub const NODES_MAX: u64 = 7;

/// The servers of a cluster of `count`: ids `1..=count`.
fn members(count: u64) -> Vec<NodeId> {
    (1..=count).collect()
}
/// Most operations per client (clients stop earlier, once the faults
/// have run and the cluster had time to heal).
const OPS_PER_CLIENT_MAX: u64 = 3000;
/// Virtual time allowed, after the heal, for every group to have a
/// leader known to every node.
const LED_WITHIN: Duration = Duration::from_secs(30);

fn node_ip(id: NodeId) -> IpAddr {
    ip(1, 0, id)
}

fn client_ip(i: u64) -> IpAddr {
    ip(1, 1, i)
}

/// One key for each group: the first of `k0`, `k1`, ... the map sends
/// to it.
fn key_per_group(map: &ShardMap) -> BTreeMap<GroupId, String> {
    let mut keys = BTreeMap::new();
    let mut n = 0u64;
    while keys.len() < map.groups() as usize {
        let key = format!("k{n}");
        keys.entry(map.group_of(key.as_bytes())).or_insert(key);
        n += 1;
    }
    keys
}

/// The keys the clients use, one per group, and those of them that only
/// ever take appends (and reads), whose every acknowledged append must be
/// in their final value: the keys of even groups, or, for a lone group,
/// a second key of its own.
fn scenario_keys(map: &ShardMap) -> (Vec<String>, BTreeSet<String>) {
    let firsts = key_per_group(map);
    let mut keys: Vec<String> = firsts.values().cloned().collect();
    let mut append_only: BTreeSet<String> = firsts
        .iter()
        .filter(|(group, _)| group.is_multiple_of(2))
        .map(|(_, key)| key.clone())
        .collect();
    if append_only.is_empty() {
        let extra = (0u64..)
            .map(|n| format!("k{n}"))
            .find(|key| !keys.contains(key))
            .expect("keys are unbounded");
        append_only.insert(extra.clone());
        keys.push(extra);
    }
    (keys, append_only)
}

/// Nominal tick of every node's clock.
const TICK: Duration = Duration::from_millis(10);

/// How fast a node's clock runs, and whether its groups lease reads.
#[derive(Clone, Copy, Debug)]
struct NodeClock {
    /// The real time one of its ticks takes (its clock runs fast or slow:
    /// madsim has one clock for all nodes, so skew is in the rate).
    tick: Duration,
    /// Its groups serve lease reads (`Config::lease_read_ticks`).
    leases: bool,
}

/// Largest clock skew, in parts per thousand of the nominal rate, that
/// the default `Config` declares safe for leases: a follower's ticks may
/// fall short of a leader's by `clock_drift_bound_ticks` (2) per
/// `election_timeout_min_ticks` (10), so the ratio of two nodes' rates
/// (1 - p) / (1 + p) must stay above 0.8: p below 1/9.
pub const CLOCK_SKEW_SAFE_PERMILLE_MAX: u32 = 111;

/// Where the test reaches each running node's loop (replaced at every
/// start; a killed node's sender finds its loop gone).
type Inboxes = Arc<Mutex<BTreeMap<NodeId, mpsc::Sender<HostEvent>>>>;

/// Starts node `id`'s server in its `incarnation` on `disk` (a restart
/// first loses what the kill left unsynced) and serves until killed.
#[allow(clippy::too_many_arguments)]
async fn serve(
    groups: u64,
    nodes: u64,
    clock: NodeClock,
    listener_counters: Arc<ListenerCounters>,
    planted: Option<RuntimeMistake>,
    resetter: ConnectionResetter,
    id: NodeId,
    incarnation: u64,
    disk: PageCacheDisk,
    addrs: BTreeMap<NodeId, String>,
    inboxes: Inboxes,
) {
    if incarnation > 1 {
        disk.crash(id * 1_000 + incarnation);
    }
    disk.set_planted_snapshot_rename_before_sync(
        planted == Some(RuntimeMistake::SnapshotRenameBeforeSync),
    );
    let options = MultiWalOptions {
        segment_bytes_max: 64 * 1024,
        segments_max: 4,
        planted_ack_before_sync: planted == Some(RuntimeMistake::AckBeforeFsync),
        planted_replay_past_torn: planted == Some(RuntimeMistake::ReplayPastTorn),
        planted_retry_failed_sync: planted == Some(RuntimeMistake::RetryFailedFsync),
        ..MultiWalOptions::default()
    };
    let (log, recovery) = open_log(id, &disk, options);
    let log = InlineLog::new(log);
    let map = ShardMap::new(groups).unwrap();
    let mut multi = MultiConfig::new(id, members(nodes));
    multi.incarnation = incarnation;
    let groups = map
        .group_ids()
        .map(|group| {
            let mut config = Config::new(id, members(nodes));
            config.seed = group * 1_000 + id * 10 + incarnation;
            // Snapshots every few entries: restarts recover from them,
            // segments are freed, a node behind is sent one.
            config.compaction_threshold_entries = Some(16);
            config.compaction_trailing_entries = 4;
            if clock.leases {
                // As long a lease as the declared drift bound leaves.
                config.lease_read_ticks =
                    config.election_timeout_min_ticks - config.clock_drift_bound_ticks - 1;
            }
            (group, config)
        })
        .collect();
    let mut config = MultiServerConfig::new(multi, groups);
    config.tick = clock.tick;
    config.client_addrs = addrs.clone();
    let peers = addrs
        .iter()
        .filter(|(peer, _)| **peer != id)
        .map(|(peer, addr)| (*peer, addr.clone()))
        .collect();
    let mut links = TcpFrameConfig::new(id, CLUSTER, peers);
    links.planted_frames_out_of_order = planted == Some(RuntimeMistake::FramesOutOfOrder);
    links.stream_wrapper = Some(resetter.wrapper(id));
    let sender = TcpFrameSender::start(links);
    let inbox = host::inbox();
    let events = inbox.0.clone();
    let handle = host::start(
        config,
        |group| GroupSessions::new(ShardMachine::new(map, group)),
        recovery,
        log,
        sender,
        inbox,
    )
    .expect("the server starts");
    let listener = tokio::net::TcpListener::bind(&addrs[&id])
        .await
        .expect("listens");
    let mut accept = MultiListenerConfig::new(id, CLUSTER, members(nodes).into_iter().collect());
    accept.counters = listener_counters;
    accept.planted_answers_out_of_order = planted == Some(RuntimeMistake::AnswersOutOfOrder);
    tokio::spawn(tcp_listener::serve(
        listener,
        accept,
        events.clone(),
        handle.shutdown_signal(),
    ));
    inboxes.lock().unwrap().insert(id, events);
    // The handle keeps the loop running (dropping it stops the server):
    // hold it until the node is killed.
    std::future::pending::<()>().await;
    drop(handle);
}

/// Opens node `id`'s shared log on `disk`. If the crash before this start
/// rotted synced bytes, recovery must refuse the log naming the damaged
/// file (the docs' promise; a node that started without what it had
/// acknowledged could elect a leader that lacks it): the bytes are then
/// put back, as an operator would restore them, and the log opened again.
fn open_log(
    id: NodeId,
    disk: &PageCacheDisk,
    options: MultiWalOptions,
) -> (SharedLog<PageCacheDisk, PageCacheDisk>, MultiRecovery) {
    let seed = Handle::current().seed();
    let opened = SharedLog::open(disk.clone(), disk.clone(), options.clone());
    let Some(rot) = disk.take_rot() else {
        return opened.expect("the shared log recovers");
    };
    let file = disk.describe(rot.segment);
    match opened {
        Ok(_) => panic!(
            "seed {seed}: node n{id} started on a log whose synced bytes rotted ({file}, byte \
             offset {}, {} bytes): recovery must refuse it, naming the file",
            rot.offset_bytes,
            rot.original.len()
        ),
        Err(refusal) => {
            let message = refusal.to_string();
            assert!(
                message.contains(&file),
                "seed {seed}: node n{id} refused its rotted log without naming {file}: {message}"
            );
            tracing::info!(%message, "refused a rotted log, as it must; restoring the bytes");
        }
    }
    disk.repair(&rot);
    SharedLog::open(disk.clone(), disk.clone(), options).expect("the repaired shared log recovers")
}

/// Node `id`'s status with every group, or `None` while it is down.
async fn status(inboxes: &Inboxes, id: NodeId) -> Option<MultiStatus> {
    let inbox = inboxes.lock().unwrap().get(&id).cloned()?;
    let (reply, rx) = oneshot::channel();
    inbox
        .send(HostEvent::Status {
            groups: true,
            reply,
        })
        .await
        .ok()?;
    tokio::time::timeout(Duration::from_secs(1), rx)
        .await
        .ok()?
        .ok()
}

/// Waits until every group has one leader that all `nodes` nodes know;
/// the time it took, or the groups still without one.
async fn every_group_led(
    inboxes: &Inboxes,
    nodes: u64,
    groups: u64,
    within: Duration,
) -> Result<Duration, String> {
    let start = Instant::now();
    loop {
        let mut known: BTreeMap<GroupId, BTreeSet<Option<NodeId>>> = BTreeMap::new();
        let mut led: BTreeMap<GroupId, NodeId> = BTreeMap::new();
        let mut answered = 0u64;
        for id in members(nodes) {
            let Some(status) = status(inboxes, id).await else {
                continue;
            };
            answered += 1;
            for (group, group_status) in status.groups {
                known.entry(group).or_default().insert(group_status.leader);
                if group_status.role == Role::Leader {
                    led.insert(group, id);
                }
            }
        }
        let unled: Vec<GroupId> = (1..=groups)
            .filter(|group| {
                let Some(leader) = led.get(group) else {
                    return true;
                };
                known
                    .get(group)
                    .map(|seen| seen.len() == 1 && seen.contains(&Some(*leader)))
                    != Some(true)
            })
            .collect();
        if answered == nodes && unled.is_empty() {
            return Ok(start.elapsed());
        }
        if start.elapsed() > within {
            return Err(format!(
                "{answered} of {nodes} nodes answered; groups without a leader known to all: {unled:?}"
            ));
        }
        sleep(Duration::from_millis(50)).await;
    }
}

/// What became of a write, as its client learnt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    /// Acknowledged: applied.
    Acknowledged,
    /// Sent, its answer lost: applied at most once.
    Unknown,
    /// Certainly not applied.
    NotApplied,
}

impl Fate {
    fn name(self) -> &'static str {
        match self {
            Fate::Acknowledged => "acknowledged",
            Fate::Unknown => "of unknown outcome",
            Fate::NotApplied => "reported not applied",
        }
    }
}

/// What the clients did.
#[derive(Default)]
struct Record {
    history: Vec<Operation>,
    /// Appended values acknowledged, by key.
    appended: BTreeMap<String, Vec<String>>,
    /// Every append to an append-only key, by key, then token: what
    /// became of it.
    tokens: BTreeMap<String, BTreeMap<String, Fate>>,
    /// Copies of writes the clients' sessions sent again after a lost
    /// answer.
    session_retries: u64,
}

/// The tokens of an append-only key's value, `c<client>.<n>` each
/// followed by `;`.
fn tokens_of(value: &str) -> impl Iterator<Item = &str> {
    value.split_terminator(';')
}

fn routing(addrs: &BTreeMap<NodeId, String>) -> RoutingConfig {
    let mut config = RoutingConfig::new(CLUSTER, addrs.clone());
    config.attempts_max = 12;
    config.request_timeout = Duration::from_millis(800);
    config.connect_timeout = Duration::from_millis(300);
    config
}

/// The clients' routing: [`routing`], with the planted caching mistake
/// when the run plants it.
fn clients_routing(
    addrs: &BTreeMap<NodeId, String>,
    planted: Option<RuntimeMistake>,
    resetter: &ConnectionResetter,
    client_no: u64,
    shared: Option<&SharedConnections>,
) -> RoutingConfig {
    let mut config = routing(addrs);
    config.shared = shared.cloned();
    config.planted_leader_cached_forever = planted == Some(RuntimeMistake::LeaderCachedForever);
    config.stream_wrapper = Some(resetter.wrapper(CLIENT_IDS + client_no));
    config
}

/// The clients' sessions: the defaults, with the planted retry mistake
/// when the run plants it.
fn clients_sessions(planted: Option<RuntimeMistake>) -> SessionConfig {
    SessionConfig {
        planted_retry_without_session: planted == Some(RuntimeMistake::RetryWithoutSession),
        ..SessionConfig::default()
    }
}

/// Client `n`'s id among the connections the resetter tracks (above
/// every node's).
const CLIENT_IDS: u64 = 100;

#[allow(clippy::too_many_arguments)]
async fn run_client(
    groups: u64,
    leases: bool,
    planted: Option<RuntimeMistake>,
    resetter: ConnectionResetter,
    client_no: u64,
    addrs: BTreeMap<NodeId, String>,
    keys: Vec<String>,
    append_only: BTreeSet<String>,
    start: Instant,
    record: Arc<Mutex<Record>>,
    stop: Arc<AtomicBool>,
    shared: Option<SharedConnections>,
) {
    let map = ShardMap::new(groups).unwrap();
    let mut client = ShardedKvClient::with_sessions(
        map,
        clients_routing(&addrs, planted, &resetter, client_no, shared.as_ref()),
        clients_sessions(planted),
    )
    .expect("client");
    if leases {
        client.set_read_path(ReadPath::Lease);
    }
    let mut last_seen: BTreeMap<String, String> = BTreeMap::new();
    for i in 0..OPS_PER_CLIENT_MAX {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let key = keys[thread_rng().gen_range(0..keys.len())].clone();
        let value = format!("c{client_no}.{i};");
        let appends_only = append_only.contains(&key);
        let roll = thread_rng().gen_range(0..10);
        let op = match roll {
            _ if appends_only && roll < 4 => Op::Get,
            _ if appends_only => Op::Append {
                value: value.clone(),
            },
            0..=2 => Op::Get,
            3..=4 => Op::Put {
                value: value.clone(),
            },
            5..=7 => Op::Append {
                value: value.clone(),
            },
            _ => Op::Cas {
                from: last_seen.get(&key).cloned().unwrap_or_default(),
                to: value.clone(),
            },
        };
        let call = start.elapsed().as_nanos() as u64;
        let result = match &op {
            Op::Get => client
                .get(key.clone())
                .await
                .map(|v| Output::Value(text(v))),
            Op::Put { value } => client
                .put(key.clone(), value.clone())
                .await
                .map(|()| Output::Done),
            Op::Append { value } => client
                .append(key.clone(), value.clone())
                .await
                .map(|()| Output::Done),
            Op::Cas { from, to } => {
                let expected = (!from.is_empty()).then(|| Bytes::from(from.clone()));
                client
                    .cas(key.clone(), expected, to.clone())
                    .await
                    .map(Output::Swapped)
            }
        };
        let ret = (start.elapsed().as_nanos() as u64).max(call);
        let operation = Operation::new(client_no, key.clone(), op.clone(), call);
        let mut record = record.lock().unwrap();
        let fate = match result {
            Ok(output) => {
                if let Output::Value(seen) = &output {
                    last_seen.insert(key.clone(), seen.clone());
                }
                if let Op::Append { value } = &op {
                    record
                        .appended
                        .entry(key.clone())
                        .or_default()
                        .push(value.clone());
                }
                record.history.push(operation.completed(ret, output));
                Fate::Acknowledged
            }
            // Certainly not applied (refused, never sent, no leader found).
            Err(e) if e.definitely_not_applied() => {
                record.history.push(operation.failed(ret));
                Fate::NotApplied
            }
            // Sent, outcome unknown: it may take effect at any time later.
            Err(_) => {
                record.history.push(operation);
                Fate::Unknown
            }
        };
        if let (Op::Append { value }, true) = (&op, appends_only) {
            let token = value.trim_end_matches(';').to_string();
            record.tokens.entry(key).or_default().insert(token, fate);
        }
    }
    record.lock().unwrap().session_retries += client.sessions().stats().retries;
}

/// A mistake planted in the runtime, for showing that the sweep catches
/// it (`madsim-sweep --bug NAME`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeMistake {
    /// The shared log reports a round durable while its fsync waits for a
    /// later round: a kill loses entries the node acknowledged.
    AckBeforeFsync,
    /// The clients' routing keeps each group's first leader forever and
    /// sends it every attempt, redirects or not: once leadership moves,
    /// a client cannot reach the group.
    LeaderCachedForever,
    /// The shared log's recovery skips a damaged record that a valid
    /// one follows and reads on, instead of refusing the log as corrupt:
    /// after the `rot` fault the node starts without a record it had
    /// synced, where it must refuse the log naming the file.
    ReplayPastTorn,
    /// Each peer connection writes every sixteenth frame after the next
    /// one: the two arrive swapped. Raft would survive it (stale appends
    /// and acknowledgements are ignored, what is lost is resent); the
    /// receiving listener does not, since the frames' numbers must rise
    /// on one connection, and the sweep checks that no node saw them fall.
    FramesOutOfOrder,
    /// The shared log tries a failed fsync again and, when the second
    /// one succeeds, reports the round durable: what the failed one was
    /// to make durable never reached the disk.
    RetryFailedFsync,
    /// The session client sends a write whose answer was lost again
    /// under a fresh sequence number, as a new write: when the lost copy
    /// was applied, the group applies the retry too.
    RetryWithoutSession,
    /// The snapshot store renames a snapshot's temporary file to its
    /// final name and syncs the directory before it syncs the file's
    /// contents: a crash in between (a disk failing at that sync) leaves
    /// a named snapshot whose contents are torn, and the restarted node
    /// refuses to start, naming the file.
    SnapshotRenameBeforeSync,
    /// A client connection's write that gathers several answers puts
    /// the first two the wrong way round: clients that share a
    /// connection (odd seeds) each get the other's answer, a read
    /// another key's value, a write another's session outcome.
    AnswersOutOfOrder,
}

impl RuntimeMistake {
    /// Every mistake, with its name on the command line.
    pub const ALL: [(RuntimeMistake, &'static str); 8] = [
        (RuntimeMistake::AckBeforeFsync, "ack-before-fsync"),
        (RuntimeMistake::LeaderCachedForever, "leader-cached-forever"),
        (RuntimeMistake::ReplayPastTorn, "replay-past-torn"),
        (RuntimeMistake::FramesOutOfOrder, "frames-out-of-order"),
        (RuntimeMistake::RetryFailedFsync, "retry-failed-fsync"),
        (RuntimeMistake::RetryWithoutSession, "retry-without-session"),
        (
            RuntimeMistake::SnapshotRenameBeforeSync,
            "snapshot-rename-before-sync",
        ),
        (RuntimeMistake::AnswersOutOfOrder, "answers-out-of-order"),
    ];

    /// The mistake called `name`.
    pub fn named(name: &str) -> Option<RuntimeMistake> {
        Self::ALL
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(mistake, _)| *mistake)
    }

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(mistake, _)| *mistake == self)
            .map(|(_, name)| *name)
            .expect("every mistake is in ALL")
    }
}

/// The shape of a run of [`run_multi_group`].
#[derive(Clone, Copy, Debug)]
pub struct MultiScenario {
    /// Servers, each a voter of every group (3 to [`NODES_MAX`]).
    pub nodes: u64,
    /// Data groups of the sharded store (keys spread over them).
    pub groups: u64,
    /// Client nodes, each with one operation in flight.
    pub clients: u64,
    /// Faults, one after the other, each healed before the next.
    pub fault_rounds: u32,
    /// A mistake planted in every node's runtime, or none.
    pub planted: Option<RuntimeMistake>,
    /// Each node's clock runs at a rate drawn per seed within this many
    /// parts per thousand of the nominal one (0: exact clocks). Up to
    /// [`CLOCK_SKEW_SAFE_PERMILLE_MAX`] the clusters' leases are safe by
    /// their declaration; beyond, a test shows the checks catch stale
    /// lease reads.
    pub clock_skew_permille: u32,
    /// Nodes (the first this many) whose disk lies about fsync once the
    /// clients start: every sync reports success and nothing reaches the
    /// platter, so each restart finds the disk as it was when the
    /// clients started. No runtime can defend against it on a majority;
    /// a test uses it to show that the checks catch the writes it loses.
    /// 0 in a sweep.
    pub lying_fsync_nodes: u64,
}

impl Default for MultiScenario {
    /// 3 nodes, 64 groups, 4 clients, 8 faults.
    fn default() -> Self {
        MultiScenario {
            nodes: 3,
            groups: 64,
            clients: 4,
            fault_rounds: 8,
            planted: None,
            clock_skew_permille: 100,
            lying_fsync_nodes: 0,
        }
    }
}

/// What a run of [`run_multi_group`] did; every check passed.
#[derive(Clone, Debug, Default)]
pub struct MultiReport {
    /// Client operations in the history checked (with the final reads).
    pub operations: usize,
    /// Of them, the ones that completed.
    pub completed: usize,
    /// Acknowledged appends found in their key's final value.
    pub appends_checked: usize,
    /// Session writes to append-only keys whose token was counted in the
    /// key's final value: each acknowledged one found exactly once, each
    /// of unknown outcome at most once, each certainly not applied never.
    pub session_writes_checked: usize,
    /// Of them, those of unknown outcome.
    pub session_writes_unknown: usize,
    /// Copies of writes the clients' sessions sent again after a lost
    /// answer.
    pub session_retries: u64,
    /// Whether the seed drew lease reads (every group leases, every
    /// client reads on `ReadPath::Lease`).
    pub leases: bool,
    /// Whether the seed's clients shared one connection per server, their
    /// requests pipelined (odd seeds).
    pub shared_connections: bool,
    /// Reads served under a lease, counted on each node's incarnation
    /// before the final restart.
    pub lease_reads: u64,
    /// Connections reset by the `reset` faults.
    pub connections_reset: u64,
    /// Nodes killed and restarted from their disk.
    pub kills: u32,
    /// Each fault, named, in order.
    pub faults: Vec<String>,
    /// Fsyncs that failed once with EIO (of the `fsync-eio` faults,
    /// those that struck before the kill).
    pub syncs_failed: u64,
    /// Writes that failed with ENOSPC (of the `enospc` faults, those
    /// that struck before the kill).
    pub writes_failed: u64,
    /// Crashes that rotted synced bytes (of the `rot` faults, those that
    /// found synced bytes to damage), each refused at the restart.
    pub rots_refused: u64,
    /// Virtual time until every group was first led.
    pub first_led: Duration,
    /// Virtual time after the heal until every group was led again.
    pub led_after_heal: Duration,
    /// Virtual time after every node restarted at once until every
    /// group was led again.
    pub led_after_restart: Duration,
    /// Virtual time from the clients' start to the end of the checks.
    pub virtual_time: Duration,
}

/// Runs the scenario of the module documentation on the current madsim
/// runtime; panics, naming the seed, when a check fails.
pub async fn run_multi_group(scenario: MultiScenario) -> MultiReport {
    let MultiScenario {
        nodes: node_count,
        groups,
        clients: client_count,
        fault_rounds,
        planted,
        clock_skew_permille,
        lying_fsync_nodes,
    } = scenario;
    assert!(
        groups >= 1 && client_count >= 1,
        "an empty scenario: {scenario:?}"
    );
    assert!(
        clock_skew_permille < 1_000,
        "a clock cannot run at a rate of 0 or less: {scenario:?}"
    );
    assert!(
        (3..=NODES_MAX).contains(&node_count) && lying_fsync_nodes <= node_count,
        "a cluster of 3 to {NODES_MAX} nodes, no more of them lying: {scenario:?}"
    );
    let handle = Handle::current();
    let addrs: BTreeMap<NodeId, String> = members(node_count)
        .iter()
        .map(|id| (*id, format!("{}:{PORT}", node_ip(*id))))
        .collect();
    let map = ShardMap::new(groups).unwrap();
    let inboxes: Inboxes = Arc::default();
    let resetter = ConnectionResetter::new();
    // Half the seeds lease their reads; every node's clock runs at a rate
    // of its own (madsim has one clock: skew is in the rate).
    let leases = thread_rng().gen_bool(0.5);
    let skew = i64::from(clock_skew_permille);
    let rates_permille: BTreeMap<NodeId, u32> = members(node_count)
        .into_iter()
        .map(|id| (id, (1_000 + thread_rng().gen_range(-skew..=skew)) as u32))
        .collect();
    let mut disks = BTreeMap::new();
    let mut nodes = BTreeMap::new();
    // Each node's listener counters, kept over its restarts.
    let mut listeners: BTreeMap<NodeId, Arc<ListenerCounters>> = BTreeMap::new();
    for id in members(node_count) {
        let disk = PageCacheDisk::new();
        disks.insert(id, disk.clone());
        let starts = Arc::new(AtomicU64::new(0));
        let (addrs, inboxes, resetter) = (addrs.clone(), inboxes.clone(), resetter.clone());
        let counters = listeners.entry(id).or_default().clone();
        // A fast clock ticks more often: its tick takes less real time.
        let clock = NodeClock {
            tick: TICK * 1_000 / rates_permille[&id],
            leases,
        };
        let node = handle
            .create_node()
            .name(format!("node-{id}"))
            .ip(node_ip(id))
            .init(move || {
                let incarnation = starts.fetch_add(1, Ordering::Relaxed) + 1;
                serve(
                    groups,
                    node_count,
                    clock,
                    counters.clone(),
                    planted,
                    resetter.clone(),
                    id,
                    incarnation,
                    disk.clone(),
                    addrs.clone(),
                    inboxes.clone(),
                )
            })
            .build();
        nodes.insert(id, node);
    }

    let first_led = every_group_led(&inboxes, node_count, groups, LED_WITHIN)
        .await
        .unwrap_or_else(|e| panic!("seed {}: the groups did not elect: {e}", handle.seed()));

    for (id, disk) in &disks {
        if *id <= lying_fsync_nodes {
            disk.set_lying_sync(true);
        }
    }
    let start = Instant::now();
    let record = Arc::new(Mutex::new(Record::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let (key_list, append_only) = scenario_keys(&map);
    let mut clients = Vec::new();
    // Odd seeds put every client on one machine, sharing one connection
    // per server with its requests pipelined; even seeds give each client
    // a machine and connections of its own. Decided by the seed, not
    // drawn, so the even seeds run as they did before sharing existed.
    let shared = (handle.seed() % 2 == 1).then(SharedConnections::new);
    let shared_node = shared
        .as_ref()
        .map(|_| plain_node(&handle, "clients", client_ip(1)));
    for c in 1..=client_count {
        let client_node = match &shared_node {
            Some(node) => node.clone(),
            None => plain_node(&handle, format!("client-{c}"), client_ip(c)),
        };
        let task = run_client(
            groups,
            leases,
            planted,
            resetter.clone(),
            c,
            addrs.clone(),
            key_list.clone(),
            append_only.clone(),
            start,
            record.clone(),
            stop.clone(),
            shared.clone(),
        );
        clients.push(client_node.spawn(task));
    }

    // Faults, one at a time, each healed before the next.
    let plan = FaultRounds {
        rounds: fault_rounds,
        gap_ms: 200..800,
        hold_ms: 300..2000,
        kinds: vec![
            Fault::Kill,
            Fault::Isolate,
            Fault::Pause,
            Fault::OneWay,
            Fault::PeersCut,
            Fault::Bridge,
            Fault::Slow,
            Fault::Lossy,
            Fault::DiskFault,
            Fault::SnapshotDiskFault,
            Fault::SyncFailsOnce,
            Fault::NoSpace,
            Fault::Rot,
            Fault::Reset,
        ],
    };
    let log = run_faults_with(
        &nodes,
        &plan,
        |victim| {
            inboxes.lock().unwrap().remove(&victim);
        },
        |victim, trouble| match trouble {
            DiskTrouble::Fuse(operations) => disks[&victim].set_fuse(operations),
            DiskTrouble::SnapshotFuse(operations) => disks[&victim].set_snapshot_fuse(operations),
            DiskTrouble::SyncFailsOnce => disks[&victim].fail_next_sync(),
            DiskTrouble::NoSpace => disks[&victim].fail_next_append_no_space(),
            DiskTrouble::Rot => disks[&victim].rot_at_next_crash(),
        },
        |victim| resetter.reset_node(victim),
    )
    .await;
    let (mut kills, mut faults, connections_reset) = (log.kills, log.faults, log.connections_reset);

    // Healed: every group must be led again, and clients must get through.
    let healed_at = start.elapsed().as_nanos() as u64;
    let led_after_heal = every_group_led(&inboxes, node_count, groups, LED_WITHIN)
        .await
        .unwrap_or_else(|e| panic!("seed {}: after the heal ({faults:?}): {e}", handle.seed()));
    let led_at = start.elapsed().as_nanos() as u64;
    sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    join_clients(clients).await;

    let mut lease_reads = 0;
    for id in members(node_count) {
        if let Some(status) = status(&inboxes, id).await {
            lease_reads += status.host.reads_lease;
        }
    }

    // Every node killed at once and restarted on what its disk kept: no
    // page cache survives, so an acknowledged write must have been
    // synced somewhere a quorum reads it back from.
    for (id, node) in &nodes {
        inboxes.lock().unwrap().remove(id);
        handle.kill(node.id());
        kills += 1;
    }
    faults.push("restart-all".to_string());
    sleep(Duration::from_millis(100)).await;
    for node in nodes.values() {
        handle.restart(node.id());
    }
    let led_after_restart = every_group_led(&inboxes, node_count, groups, LED_WITHIN)
        .await
        .unwrap_or_else(|e| panic!("seed {}: after every node restarted: {e}", handle.seed()));

    // Every acknowledged append is in its key's value, read through each
    // group's leader once the clients are done.
    let checker = handle
        .create_node()
        .name("checker")
        .ip(client_ip(client_count + 1))
        .build();
    let final_keys = key_list.clone();
    let final_addrs = addrs.clone();
    let finals: BTreeMap<String, String> = checker
        .spawn(async move {
            let mut client =
                ShardedKvClient::new(ShardMap::new(groups).unwrap(), routing(&final_addrs))
                    .expect("client");
            let mut finals = BTreeMap::new();
            for key in final_keys {
                let value = loop {
                    match client.get(key.clone()).await {
                        Ok(value) => break text(value),
                        Err(_) => sleep(Duration::from_millis(100)).await,
                    }
                };
                finals.insert(key, value);
            }
            finals
        })
        .await
        .expect("final reads ran");
    let record = std::mem::take(&mut *record.lock().unwrap());
    // Once every group is led again (no fault after that), each client
    // gets through to every key it calls: of its calls to a key made
    // after that moment, one at least completed.
    let mut unreached = Vec::new();
    for client in 1..=client_count {
        for key in &key_list {
            let mut calls = record
                .history
                .iter()
                .filter(|op| op.client == client && op.key == *key && op.call >= led_at)
                .peekable();
            if calls.peek().is_some() && !calls.any(|op| matches!(op.outcome, Outcome::Ok(_))) {
                unreached.push(format!("client {client} to {key}"));
            }
        }
    }
    assert!(
        unreached.is_empty(),
        "seed {}: once every group was led again, no call got through for: {}",
        handle.seed(),
        unreached.join(", ")
    );
    let mut history = record.history;
    let end = start.elapsed().as_nanos() as u64;
    for (key, value) in &finals {
        history.push(
            Operation::new(client_count + 1, key.clone(), Op::Get, end)
                .completed(end, Output::Value(value.clone())),
        );
    }
    // Every acknowledged append to an append-only key is in its final
    // value.
    let mut appends_checked = 0;
    for (key, values) in &record.appended {
        if !append_only.contains(key) {
            continue;
        }
        for value in values {
            assert!(
                finals[key].contains(value.as_str()),
                "seed {}: acknowledged append {value:?} to {key} lost; final value {:?}",
                handle.seed(),
                finals[key]
            );
            appends_checked += 1;
        }
    }
    assert!(
        appends_checked > 0,
        "seed {}: no append acknowledged",
        handle.seed()
    );
    let (session_writes_checked, session_writes_unknown) =
        check_exactly_once(&record.tokens, &finals, &history);
    let completed = completed_after_heal(&history, healed_at, client_count as usize);
    let groups_written: BTreeSet<&str> = history
        .iter()
        .filter(|op| op.ret.is_some() && !matches!(op.op, Op::Get))
        .map(|op| op.key.as_str())
        .collect();
    tracing::info!(
        "seed {}: {} operations ({completed} completed, {appends_checked} acknowledged appends found) on {} of {groups} groups' keys, {kills} kills, faults {faults:?}; every group led {first_led:?} after start and {led_after_heal:?} after the heal; {:?} virtual time",
        handle.seed(),
        history.len(),
        groups_written.len(),
        start.elapsed()
    );
    // Every peer connection kept the order its frames were sent in.
    for (id, counters) in &listeners {
        let reordered = counters.peer_frames_out_of_order.load(Ordering::Relaxed);
        assert!(
            reordered == 0,
            "seed {}: node n{id} closed {reordered} peer connections whose frames arrived out of \
             the order they were sent in",
            handle.seed()
        );
    }
    assert_linearizable(
        &history,
        &format!("{completed} completed, {kills} kills, faults {faults:?}"),
    );
    let struck = disks.values().map(PageCacheDisk::faults_struck);
    let (syncs_failed, writes_failed, rots_refused) =
        struck.fold((0, 0, 0), |(syncs, writes, rots), s| {
            (
                syncs + s.failed_syncs,
                writes + s.failed_appends,
                rots + s.rots,
            )
        });
    MultiReport {
        operations: history.len(),
        completed,
        appends_checked,
        session_writes_checked,
        session_writes_unknown,
        session_retries: record.session_retries,
        leases,
        shared_connections: shared.is_some(),
        lease_reads,
        connections_reset,
        kills,
        faults,
        syncs_failed,
        writes_failed,
        rots_refused,
        first_led,
        led_after_heal,
        led_after_restart,
        virtual_time: start.elapsed(),
    }
}

/// Checks that each session write to an append-only key landed as often
/// as its fate allows (see the module documentation), in the keys'
/// `finals` and in every value read in `history`; panics naming the seed,
/// the key and the token otherwise. The writes checked, and of them those
/// of unknown outcome.
fn check_exactly_once(
    tokens: &BTreeMap<String, BTreeMap<String, Fate>>,
    finals: &BTreeMap<String, String>,
    history: &[Operation],
) -> (usize, usize) {
    let seed = Handle::current().seed();
    // No value ever read holds a token twice.
    for op in history {
        let Outcome::Ok(Output::Value(value)) = &op.outcome else {
            continue;
        };
        let Some(written) = tokens.get(&op.key) else {
            continue;
        };
        let mut seen = BTreeSet::new();
        for token in tokens_of(value) {
            assert!(
                seen.insert(token),
                "seed {seed}: session write {token:?} to {} ({}) applied twice: read by client \
                 {} as {value:?}",
                op.key,
                written
                    .get(token)
                    .map_or("written by no client", |f| f.name()),
                op.client
            );
        }
    }
    let (mut checked, mut unknown) = (0, 0);
    for (key, written) in tokens {
        let final_value = finals.get(key).map(String::as_str).unwrap_or_default();
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for token in tokens_of(final_value) {
            *counts.entry(token).or_default() += 1;
        }
        for token in counts.keys() {
            assert!(
                written.contains_key(*token),
                "seed {seed}: {key}'s final value holds {token:?}, which no client wrote: \
                 {final_value:?}"
            );
        }
        for (token, fate) in written {
            let count = counts.get(token.as_str()).copied().unwrap_or(0);
            let allowed = match fate {
                Fate::Acknowledged => count == 1,
                Fate::Unknown => count <= 1,
                Fate::NotApplied => count == 0,
            };
            assert!(
                allowed,
                "seed {seed}: session write {token:?} to {key} ({}) {} in the final value \
                 {final_value:?}",
                fate.name(),
                match count {
                    0 => "lost: not".to_string(),
                    1 => "applied: found once".to_string(),
                    n => format!("applied {n} times: found {n} times"),
                }
            );
            checked += 1;
            unknown += usize::from(*fate == Fate::Unknown);
        }
    }
    (checked, unknown)
}

/// The message of the last panic, kept by [`capture_panics`]'s hook.
static LAST_PANIC: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Makes a panic keep its message (and where it was raised) for
/// [`run_seed`] instead of printing it: a sweep's output stays a
/// summary.
pub fn capture_panics() {
    std::panic::set_hook(Box::new(|info| {
        let message = match info.payload().downcast_ref::<&str>() {
            Some(s) => s.to_string(),
            None => match info.payload().downcast_ref::<String>() {
                Some(s) => s.clone(),
                None => "a panic without a message".to_string(),
            },
        };
        let at = info
            .location()
            .map(|l| format!(" (at {}:{})", l.file(), l.line()))
            .unwrap_or_default();
        *LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()) = Some(format!("{message}{at}"));
    }));
}

/// The stack of a seed's thread (a main thread's size).
const SEED_STACK_BYTES: usize = 8 << 20;
/// Virtual time a seed may take before it counts as hung.
const SEED_VIRTUAL_LIMIT: Duration = Duration::from_secs(1_200);

/// Runs `scenario` under `seed` on a fresh madsim runtime, on a thread of
/// its own: madsim seeds std's hash maps per thread, which it cannot do
/// on a thread that made one already. What the seed did, or why it
/// failed (the panic's message when [`capture_panics`] is on).
pub fn run_seed(seed: u64, scenario: MultiScenario) -> Result<MultiReport, String> {
    let thread = std::thread::Builder::new()
        .name(format!("seed-{seed}"))
        .stack_size(SEED_STACK_BYTES)
        .spawn(move || {
            let mut runtime =
                madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
            runtime.set_time_limit(SEED_VIRTUAL_LIMIT);
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                runtime.block_on(run_multi_group(scenario))
            }))
        })
        .map_err(|e| format!("cannot start the seed's thread: {e}"))?;
    let outcome = thread.join().unwrap_or_else(Err);
    outcome.map_err(|_| {
        LAST_PANIC
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_else(|| "panicked".to_string())
    })
}
