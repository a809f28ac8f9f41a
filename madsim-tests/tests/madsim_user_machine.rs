//! Your own state machine on the deployed runtime, swept under madsim:
//! the pattern to copy for a server of your own. `Tally` below stands
//! for your machine; [`serve_machine`] starts it on each node the way
//! `concord_tokio::cluster::start_node` serves it in production (the
//! multi-group host's loop, its shared log on the page-cache disk model
//! that a kill cuts at its last sync, TCP between the nodes), clients
//! write through the one-group client (`OneGroupClient`: a session, so a
//! write whose answer was lost is sent again and applied once) while
//! nodes are killed and restarted, cut off, and the network slows down.
//! The verdict is your machine's own: here, after every node restarted
//! at once, the tally counts each acknowledged write once and each write
//! of unknown outcome at most once.
//!
//! Each `#[madsim::test]` runs one seed per run, `MADSIM_TEST_NUM` runs
//! from `MADSIM_TEST_SEED` (a sweep in `cargo test`); a failure names its
//! seed and the command that replays it:
//!
//! ```text
//! RUSTFLAGS="--cfg madsim" MADSIM_TEST_SEED=1 MADSIM_TEST_NUM=20 cargo test \
//!     -p concord-madsim-tests --target-dir target/madsim --test madsim_user_machine
//! ```
#![cfg(madsim)]

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use concord::state_machine::{RestoreError, StateMachine};
use concord::ReadPath;
use concord_madsim_tests::{
    ip, join_clients, plain_node, run_faults, serve_machine, Fault, FaultRounds, NodeDisk,
};
use concord_tokio::client::{ClientConfig, ClientError};
use concord_tokio::cluster::NodeSettings;
use concord_tokio::multi::one_group_client::OneGroupClient;
use madsim::runtime::Handle;
use madsim::time::sleep;

const CLUSTER: &str = "madsim-user";
const PORT: u16 = 7200;
const CLIENTS: u64 = 3;

fn node_ip(id: u64) -> IpAddr {
    ip(2, 0, id)
}

fn client_ip(i: u64) -> IpAddr {
    ip(2, 1, i)
}

/// A user's state machine: a tally that each command adds its amount
/// (8 bytes, little-endian) to; it answers, and a read returns, the
/// total.
#[derive(Debug, Default)]
struct Tally {
    total: u64,
}

fn number(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

impl StateMachine for Tally {
    fn apply(&mut self, _index: u64, command: &[u8]) -> Bytes {
        self.total += number(command).unwrap_or(0);
        Bytes::copy_from_slice(&self.total.to_le_bytes())
    }

    fn query(&self, _request: &[u8]) -> Option<Bytes> {
        Some(Bytes::copy_from_slice(&self.total.to_le_bytes()))
    }

    fn snapshot(&self) -> Bytes {
        Bytes::copy_from_slice(&self.total.to_le_bytes())
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
        self.total = number(snapshot).ok_or_else(|| RestoreError::new("not 8 bytes"))?;
        Ok(())
    }
}

/// What the clients learnt of their writes: acknowledged, and of
/// unknown outcome.
#[derive(Debug, Default)]
struct Writes {
    acknowledged: u64,
    unknown: u64,
}

async fn run_client(servers: Vec<String>, writes: Arc<Mutex<Writes>>, stop: Arc<AtomicBool>) {
    let mut config = ClientConfig::new(servers, CLUSTER);
    config.request_timeout = Duration::from_millis(800);
    let mut client = OneGroupClient::new(config);
    while !stop.load(Ordering::Relaxed) {
        let result = client
            .write(Bytes::copy_from_slice(&1u64.to_le_bytes()))
            .await;
        let mut writes = writes.lock().unwrap();
        match result {
            Ok(_) => writes.acknowledged += 1,
            // Sent and its answer lost (or not understood): it may land.
            Err(e) if e.outcome_unknown() || matches!(e, ClientError::Protocol(_)) => {
                writes.unknown += 1
            }
            // Certainly not applied.
            Err(_) => {}
        }
    }
}

/// One seed: 3 nodes serving [`Tally`], clients adding 1 at a time
/// through 8 faults, every node killed and restarted at once, then the
/// tally read and judged.
async fn sweep_one_seed() {
    let handle = Handle::current();
    let seed = handle.seed();
    let replay = format!(
        "RUSTFLAGS=\"--cfg madsim\" MADSIM_TEST_SEED={seed} cargo test -p concord-madsim-tests \
         --target-dir target/madsim --test madsim_user_machine"
    );
    let peers: BTreeMap<u64, String> = (1..=3)
        .map(|id| (id, format!("{}:{PORT}", node_ip(id))))
        .collect();
    let mut nodes = BTreeMap::new();
    for id in 1..=3u64 {
        let (disk, peers) = (NodeDisk::new(), peers.clone());
        let node = handle
            .create_node()
            .name(format!("node-{id}"))
            .ip(node_ip(id))
            .init(move || {
                let settings = NodeSettings::new(id, peers[&id].clone(), peers.clone(), CLUSTER);
                serve_machine(settings, Tally::default, disk.clone())
            })
            .build();
        nodes.insert(id, node);
    }
    let servers: Vec<String> = peers.values().cloned().collect();
    let writes = Arc::new(Mutex::new(Writes::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (1..=CLIENTS)
        .map(|c| {
            let node = plain_node(&handle, format!("client-{c}"), client_ip(c));
            node.spawn(run_client(servers.clone(), writes.clone(), stop.clone()))
        })
        .collect();
    let plan = FaultRounds {
        rounds: 8,
        gap_ms: 200..800,
        hold_ms: 300..1500,
        kinds: vec![Fault::Kill, Fault::Isolate, Fault::OneWay, Fault::Slow],
    };
    let faults = run_faults(&nodes, &plan, |_| {}).await.faults;
    sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    join_clients(clients).await;
    // Every node killed at once: what was acknowledged must be on disks.
    for node in nodes.values() {
        handle.kill(node.id());
    }
    sleep(Duration::from_millis(100)).await;
    for node in nodes.values() {
        handle.restart(node.id());
    }
    let reader = plain_node(&handle, "reader", client_ip(CLIENTS + 1));
    let total = reader
        .spawn(async move {
            let mut client = OneGroupClient::new(ClientConfig::new(servers, CLUSTER));
            loop {
                match client.read(Bytes::new(), ReadPath::ReadIndex).await {
                    Ok(answer) => break number(&answer).expect("a total"),
                    Err(_) => sleep(Duration::from_millis(100)).await,
                }
            }
        })
        .await
        .expect("the final read ran");
    let writes = writes.lock().unwrap();
    assert!(
        writes.acknowledged > 0,
        "seed {seed}: no write acknowledged ({faults:?}); replay: {replay}"
    );
    assert!(
        (writes.acknowledged..=writes.acknowledged + writes.unknown).contains(&total),
        "seed {seed}: the tally is {total} after {} acknowledged writes and {} of unknown \
         outcome ({faults:?}): a write lost or applied twice; replay: {replay}",
        writes.acknowledged,
        writes.unknown
    );
    eprintln!(
        "seed {seed}: tally {total}, {} acknowledged, {} unknown, faults {faults:?}",
        writes.acknowledged, writes.unknown
    );
}

#[madsim::test]
async fn a_users_own_state_machine_swept_under_faults() {
    sweep_one_seed().await;
}
