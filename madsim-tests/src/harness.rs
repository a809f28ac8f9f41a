//! See the crate documentation.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use concord::state_machine::StateMachine;
use concord_services::kv::Kv;
use concord_services::ServiceMachine;
use concord_sim::history::Operation;
use concord_sim::linearizability::{check_history, CheckResult};
use concord_tokio::cluster::{start_node, NodeSettings, NodeStorage};
use concord_tokio::multi::page_cache::PageCacheDisk;
use madsim::rand::{thread_rng, Rng};
use madsim::runtime::{Handle, NodeHandle};
use madsim::time::sleep;

/// The most a client may take to finish its last operation once told to
/// stop.
pub const CLIENT_FINISH_MAX: Duration = Duration::from_secs(300);

/// The virtual address `10.net.host.id` (madsim simulates the network
/// inside the process; no real socket is opened). Each suite takes its
/// own `net`, nodes and clients their own `host`.
pub fn ip(net: u8, host: u8, id: u64) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, net, host, id as u8))
}

/// A node of the simulation named `name` at `ip`, running nothing yet
/// (a client's, a driver's or a checker's).
pub fn plain_node(handle: &Handle, name: impl Into<String>, ip: IpAddr) -> NodeHandle {
    handle.create_node().name(name).ip(ip).build()
}

/// One node's disk, kept across its kills, and the number of times the
/// node started on it (its incarnation). Clones share both.
#[derive(Clone, Debug, Default)]
pub struct NodeDisk {
    disk: PageCacheDisk,
    starts: Arc<AtomicU64>,
}

impl NodeDisk {
    /// An empty disk on which no node started yet.
    pub fn new() -> NodeDisk {
        NodeDisk::default()
    }

    /// How many times a node started on this disk.
    pub fn starts(&self) -> u64 {
        self.starts.load(Ordering::Relaxed)
    }

    /// The storage of the next start: its incarnation is one more than
    /// the last start's. A start after the first follows a kill, which
    /// stopped the process wherever it was: the page cache is lost, and
    /// of what was written since the last sync only what the crash draw
    /// keeps (perhaps a torn prefix) is on the disk the node reads back.
    fn next_start(&self) -> NodeStorage {
        let incarnation = self.starts.fetch_add(1, Ordering::Relaxed) + 1;
        if incarnation > 1 {
            let report = self.disk.crash(thread_rng().gen());
            tracing::info!(
                incarnation,
                ?report,
                "restart after a kill: the disk crashed"
            );
        }
        NodeStorage::memory(self.disk.clone(), incarnation)
    }
}

/// Starts a node of a one-group cluster on the one runtime
/// ([`start_node`]: the multi-group host's loop hosting the key-value
/// store as group 1 beside the catalog, its shared log on `disk`), and
/// serves until the node is killed. Each call is a new start on `disk`
/// (see [`NodeDisk`]); give it as a madsim node's `init` so that a
/// restart after a kill starts again on what the disk kept.
pub async fn serve_kv(settings: NodeSettings, disk: NodeDisk) {
    serve_machine(settings, ServiceMachine::<Kv>::new, disk).await
}

/// [`serve_kv`] with a state machine of your own: `make_state_machine`
/// makes the group's machine at every start (the runtime puts it behind
/// its session table). Serves until the node is killed.
pub async fn serve_machine<S, F>(settings: NodeSettings, make_state_machine: F, disk: NodeDisk)
where
    S: StateMachine + Send + 'static,
    F: Fn() -> S + Send + 'static,
{
    let mut node = start_node(settings, make_state_machine, disk.next_start())
        .await
        .expect("node starts");
    let _ = node.server.wait().await;
}

/// A value read back as text (empty when absent).
pub fn text(value: Option<Bytes>) -> String {
    value
        .map(|v| String::from_utf8_lossy(&v).to_string())
        .unwrap_or_default()
}

/// One kind of fault of [`run_faults`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The victim is killed, then restarted from its disk.
    Kill,
    /// The victim is cut off from every other node.
    Isolate,
    /// The victim's process stops running (as under SIGSTOP or a
    /// suspended VM) and resumes after the hold: its clock ran on
    /// meanwhile, so it wakes with the ticks it missed, and what it had
    /// sent or was sent in between is waiting.
    Pause,
    /// The link from the victim to the next node is cut one way.
    OneWay,
    /// The victim is cut off from every other node, both ways, while
    /// clients still reach it (and it them): a leader there may go on
    /// answering reads its lease vouches for while the others elect.
    PeersCut,
    /// The nodes split in two sides that do not hear each other, both
    /// ways, with the victim on both (a bridge): each side but the
    /// victim's links is cut off.
    Bridge,
    /// Every message takes 5 to 60 ms instead of 1 to 10 ms.
    Slow,
    /// A fifth of the packets are lost.
    Lossy,
    /// The victim's disk fails (an fsync or a write returns an error,
    /// and every operation after it) a few operations from now; the node
    /// must stop without acknowledging anything it did not sync, and is
    /// then killed and restarted from what its disk kept. Needs the
    /// suite's `disk_fault` hook ([`run_faults_with`]).
    DiskFault,
    /// The victim's disk fails at one of the five steps of its next
    /// snapshot store (drawn: a temporary file created, written, synced,
    /// renamed to its final name, its directory synced), and every
    /// operation after it; the node must stop, and is then killed and
    /// restarted from what its disk kept. A node writes a snapshot far
    /// less often than it appends, so [`Fault::DiskFault`] seldom fails
    /// one. Needs the suite's `disk_fault` hook.
    SnapshotDiskFault,
    /// The victim's next fsync fails with EIO, once (later ones would
    /// succeed, and what the failed one was to make durable never reaches
    /// the disk); the node must stop without trusting it, and is then
    /// killed and restarted from what its disk kept. Needs the suite's
    /// `disk_fault` hook.
    SyncFailsOnce,
    /// The victim's disk is full for one write (a short write, then
    /// ENOSPC; later writes would succeed); the node must stop without
    /// acknowledging it, and is then killed and restarted. Needs the
    /// suite's `disk_fault` hook.
    NoSpace,
    /// While the victim is down, a few bytes of data its disk had synced
    /// change (a latent sector error, a misdirected write), where every
    /// log must notice; at its restart the node must refuse its log,
    /// naming the file, and starts once the bytes are put back (the
    /// operator restoring the disk). Needs the suite's `disk_fault` hook.
    Rot,
    /// Every connection from or to the victim (peers' and clients') is
    /// reset, again and again, for the fault's hold: the requests and
    /// answers still on their way over them are lost. madsim's network
    /// cannot break a connection (its TCP streams are reliable channels
    /// that a clog only delays), so the suite's `reset` hook does it
    /// through the runtime's stream wrappers
    /// (`concord_tokio::fault::ConnectionResetter`).
    Reset,
}

/// What [`run_faults_with`] asks a suite's `disk_fault` hook to do to a
/// victim's disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskTrouble {
    /// Fail after this many more operations, and every operation after.
    Fuse(u64),
    /// Fail after this many more operations on snapshot files, and every
    /// operation after.
    SnapshotFuse(u64),
    /// Fail the next fsync with EIO, once.
    SyncFailsOnce,
    /// Fail the next write with ENOSPC, once.
    NoSpace,
    /// Damage synced bytes at the next crash, once.
    Rot,
}

/// The rounds of faults a suite runs.
#[derive(Clone, Debug)]
pub struct FaultRounds {
    /// How many faults, one after the other.
    pub rounds: u32,
    /// The calm before each fault, in milliseconds (drawn uniformly).
    pub gap_ms: Range<u64>,
    /// How long each fault lasts, in milliseconds (drawn uniformly).
    pub hold_ms: Range<u64>,
    /// The kinds drawn from, each as likely.
    pub kinds: Vec<Fault>,
}

/// What [`run_faults`] did.
#[derive(Clone, Debug, Default)]
pub struct FaultLog {
    /// Nodes killed (and restarted).
    pub kills: u32,
    /// Each fault, named, in order.
    pub faults: Vec<String>,
    /// Connections reset by the [`Fault::Reset`] faults.
    pub connections_reset: u64,
}

/// Runs `plan` against `nodes` (by node id, ids `1..=nodes.len()`), one
/// fault at a time, each healed before the next: the network's latency
/// and loss are back to calm at the end. `before_kill` runs just before
/// a node is killed (to forget what the suite reaches it through).
pub async fn run_faults(
    nodes: &BTreeMap<u64, NodeHandle>,
    plan: &FaultRounds,
    before_kill: impl FnMut(u64),
) -> FaultLog {
    run_faults_with(nodes, plan, before_kill, |_, _| {}, |_| 0).await
}

/// [`run_faults`], with `disk_fault(victim, trouble)` called for a
/// [`Fault::DiskFault`], [`Fault::SnapshotDiskFault`],
/// [`Fault::SyncFailsOnce`], [`Fault::NoSpace`] or [`Fault::Rot`]:
/// it must do `trouble` to the victim's disk; and `reset(victim)` for a
/// [`Fault::Reset`]: it must reset every connection open from or to the
/// victim and say how many there were.
pub async fn run_faults_with(
    nodes: &BTreeMap<u64, NodeHandle>,
    plan: &FaultRounds,
    mut before_kill: impl FnMut(u64),
    mut disk_fault: impl FnMut(u64, DiskTrouble),
    mut reset: impl FnMut(u64) -> usize,
) -> FaultLog {
    let handle = Handle::current();
    let net = madsim::net::NetSim::current();
    let count = nodes.len() as u64;
    let mut log = FaultLog::default();
    if count == 0 || plan.kinds.is_empty() {
        return log;
    }
    for _ in 0..plan.rounds {
        sleep(Duration::from_millis(
            thread_rng().gen_range(plan.gap_ms.clone()),
        ))
        .await;
        let victim = thread_rng().gen_range(1..=count);
        let victim_node = nodes[&victim].id();
        let hold = Duration::from_millis(thread_rng().gen_range(plan.hold_ms.clone()));
        let kind = plan.kinds[thread_rng().gen_range(0..plan.kinds.len())];
        let name = match kind {
            Fault::Kill => format!("kill n{victim}"),
            Fault::Isolate => format!("isolate n{victim}"),
            Fault::Pause => format!("pause n{victim}"),
            Fault::OneWay => format!("cut n{victim}->n{}", victim % count + 1),
            Fault::PeersCut => format!("peers-cut n{victim}"),
            Fault::Bridge => format!("bridge n{victim}"),
            Fault::Slow => "slow network".to_string(),
            Fault::Lossy => "lossy network".to_string(),
            Fault::DiskFault => format!("disk-fault n{victim}"),
            Fault::SnapshotDiskFault => format!("snapshot-disk-fault n{victim}"),
            Fault::SyncFailsOnce => format!("fsync-eio n{victim}"),
            Fault::NoSpace => format!("enospc n{victim}"),
            Fault::Rot => format!("rot n{victim}"),
            Fault::Reset => format!("reset n{victim}"),
        };
        tracing::info!(fault = %name, "fault");
        log.faults.push(name);
        match kind {
            Fault::Kill
            | Fault::DiskFault
            | Fault::SnapshotDiskFault
            | Fault::SyncFailsOnce
            | Fault::NoSpace
            | Fault::Rot => {
                let trouble = match kind {
                    // Fails within the next few writes (a busy node writes
                    // every few milliseconds).
                    Fault::DiskFault => Some(DiskTrouble::Fuse(thread_rng().gen_range(0..40))),
                    // At one of the five steps of the next snapshot's
                    // store (a group's first also makes its directory).
                    Fault::SnapshotDiskFault => {
                        Some(DiskTrouble::SnapshotFuse(thread_rng().gen_range(0..5)))
                    }
                    Fault::SyncFailsOnce => Some(DiskTrouble::SyncFailsOnce),
                    Fault::NoSpace => Some(DiskTrouble::NoSpace),
                    Fault::Rot => Some(DiskTrouble::Rot),
                    _ => None,
                };
                // The node stops on its disk's error, and is killed and
                // restarted a while later.
                let down = if let Some(trouble) = trouble {
                    disk_fault(victim, trouble);
                    sleep(hold).await;
                    Duration::from_millis(100)
                } else {
                    hold
                };
                before_kill(victim);
                handle.kill(victim_node);
                log.kills += 1;
                sleep(down).await;
                handle.restart(victim_node);
            }
            Fault::Isolate => {
                net.clog_node(victim_node);
                sleep(hold).await;
                net.unclog_node(victim_node);
            }
            Fault::Pause => {
                handle.pause(victim_node);
                sleep(hold).await;
                handle.resume(victim_node);
            }
            Fault::OneWay => {
                let other = nodes[&(victim % count + 1)].id();
                net.clog_link(victim_node, other);
                sleep(hold).await;
                net.unclog_link(victim_node, other);
            }
            Fault::PeersCut | Fault::Bridge => {
                // Every pair of nodes whose link is cut, both ways: for a
                // bridge, each node but the victim joins one side, at
                // random (both sides non-empty when there are two).
                let others: Vec<u64> = (1..=count).filter(|n| *n != victim).collect();
                let pairs: Vec<(u64, u64)> = if kind == Fault::PeersCut {
                    others.iter().map(|n| (victim, *n)).collect()
                } else {
                    let mut side: Vec<bool> =
                        others.iter().map(|_| thread_rng().gen_bool(0.5)).collect();
                    side[0] = true;
                    side[1] = false;
                    let mut pairs = Vec::new();
                    for (i, a) in others.iter().enumerate() {
                        for (j, b) in others.iter().enumerate() {
                            if i < j && side[i] != side[j] {
                                pairs.push((*a, *b));
                            }
                        }
                    }
                    pairs
                };
                for &(a, b) in &pairs {
                    net.clog_link(nodes[&a].id(), nodes[&b].id());
                    net.clog_link(nodes[&b].id(), nodes[&a].id());
                }
                sleep(hold).await;
                for &(a, b) in &pairs {
                    net.unclog_link(nodes[&a].id(), nodes[&b].id());
                    net.unclog_link(nodes[&b].id(), nodes[&a].id());
                }
            }
            Fault::Slow => {
                net.update_config(|c| {
                    c.send_latency = Duration::from_millis(5)..Duration::from_millis(60)
                });
                sleep(hold).await;
                net.update_config(|c| {
                    c.send_latency = Duration::from_millis(1)..Duration::from_millis(10)
                });
            }
            Fault::Lossy => {
                net.update_config(|c| c.packet_loss_rate = 0.2);
                sleep(hold).await;
                net.update_config(|c| c.packet_loss_rate = 0.0);
            }
            Fault::Reset => {
                // Reset at once, then every 50 to 400 ms until the hold
                // is over: each time, the connections dialled since.
                let until = madsim::time::Instant::now() + hold;
                loop {
                    log.connections_reset += reset(victim) as u64;
                    let pause = Duration::from_millis(thread_rng().gen_range(50..400));
                    if madsim::time::Instant::now() + pause >= until {
                        break;
                    }
                    sleep(pause).await;
                }
                sleep(until.saturating_duration_since(madsim::time::Instant::now())).await;
            }
        }
    }
    log
}

/// Waits for every client task to end (each within
/// [`CLIENT_FINISH_MAX`]); a client that panicked fails the test.
pub async fn join_clients<F, E>(clients: Vec<F>)
where
    F: Future<Output = Result<(), E>>,
    E: Debug,
{
    for client in clients {
        tokio::time::timeout(CLIENT_FINISH_MAX, client)
            .await
            .expect("clients finish")
            .expect("client ran");
    }
}

/// Operations of `history` that completed, checking that at least
/// `at_least` of them were called after `healed_at_ns`: the cluster made
/// progress once the faults healed.
pub fn completed_after_heal(history: &[Operation], healed_at_ns: u64, at_least: usize) -> usize {
    let completed = history.iter().filter(|op| op.ret.is_some()).count();
    let after_heal = history
        .iter()
        .filter(|op| op.ret.is_some() && op.call > healed_at_ns)
        .count();
    assert!(
        after_heal >= at_least,
        "seed {}: no progress after the faults healed: {after_heal} operations",
        Handle::current().seed()
    );
    completed
}

/// Fails the test, with the history as JSON lines, unless `history` is
/// linearizable; `context` says what the run went through.
pub fn assert_linearizable(history: &[Operation], context: &str) {
    match check_history(history) {
        CheckResult::Ok => {}
        other => panic!(
            "seed {}: history of {} operations ({context}) is not linearizable: {other:?}\n{}",
            Handle::current().seed(),
            history.len(),
            concord_sim::history::to_jsonl(history)
        ),
    }
}
