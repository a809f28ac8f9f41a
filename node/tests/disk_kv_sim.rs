//! The simulator's key-value workload against the key-value store on
//! disk (feature `disk`): every replica of the simulated cluster is a
//! `DiskKv`, a RocksDB store in a directory of its own, instead of the
//! in-memory store the simulator runs by default. The simulator's
//! faults (crashes and restarts, partitions, lost and delayed messages,
//! snapshots sent to followers behind), its linearizability check of
//! the clients' get, put, append and compare-and-set, and its comparison
//! of the replicas' canonical states all run unchanged, so a request the
//! disk store answers differently from the memory store, or a snapshot
//! it streams and restores wrongly, fails a seed here.
//!
//! The store's own files are not under the simulator's disk faults: a
//! crash drops the replica's store and the restarted node builds a fresh
//! one from the simulated snapshot and log, as with an in-memory state
//! machine (the store's own crash recovery is tested against the real
//! engine in `concord-services`' unit tests and in `disk_kv_cluster.rs`).
//!
//! ```text
//! cargo test -p concord-node --features disk --test disk_kv_sim -- --nocapture
//! ```
//!
//! `CONCORD_DISK_SIM_SEEDS=A..B` runs other seeds (default `0..12`).
#![cfg(feature = "disk")]

use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use concord::durable::{read_view, DurableStateMachine, StateRestore};
use concord::state_machine::{RestoreError, StateMachine};
use concord::{Entry, EntryPayload, Index, NodeId};
use concord_services::disk_engine::{DiskIdentity, DiskOptions};
use concord_services::disk_kv::DiskKv;
use concord_services::sharded_kv::ShardMap;
use concord_sim::services::kv::{KvWorkload, KvWorkloadConfig};
use concord_sim::{DurableChoice, FaultKind, SimConfig, Simulation};

/// The one group every key of the workload belongs to.
const GROUP: u64 = 1;

/// A `DiskKv` as an in-memory state machine for the simulator's hosts:
/// each command applied as a batch of its own (the entries the store did
/// not see, no-ops and configuration changes, as no-ops before it), a
/// snapshot the store's view read whole behind its index, a restore
/// streamed into a new state. Its directory is removed when it drops.
struct DiskMachine {
    disk: RefCell<Option<DiskKv>>,
}

impl DiskMachine {
    fn open(dir: PathBuf, node: NodeId) -> DiskMachine {
        let identity = DiskIdentity {
            cluster_id: "sim".to_string(),
            node_id: node,
            group_id: GROUP,
        };
        let options = DiskOptions {
            // Small: a run opens dozens of stores.
            cache_bytes: 1 << 20,
            write_buffer_bytes: 1 << 20,
            // Only the tests sync; the simulator's crashes drop the store.
            sync_interval: None,
        };
        let map = ShardMap::new(1).unwrap();
        // The simulator keeps the client sessions above the store.
        let disk = DiskKv::open(&dir, identity, options, map, GROUP, 16, 4096)
            .unwrap_or_else(|e| panic!("open a store in {}: {e}", dir.display()));
        DiskMachine {
            disk: RefCell::new(Some(disk)),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut DiskKv) -> T) -> T {
        f(self.disk.borrow_mut().as_mut().expect("open until dropped"))
    }
}

impl Drop for DiskMachine {
    fn drop(&mut self) {
        if let Some(disk) = self.disk.get_mut().take() {
            let _ = disk.destroy();
        }
    }
}

impl StateMachine for DiskMachine {
    fn apply(&mut self, index: Index, command: &[u8]) -> Bytes {
        self.with(|disk| {
            let first = disk.applied_index() + 1;
            assert!(index >= first, "apply {index} after {}", first - 1);
            let mut entries: Vec<Entry> = (first..index)
                .map(|index| Entry {
                    term: 1,
                    index,
                    payload: EntryPayload::Noop,
                })
                .collect();
            entries.push(Entry {
                term: 1,
                index,
                payload: EntryPayload::Command(Bytes::copy_from_slice(command)),
            });
            let mut answers = Vec::new();
            disk.apply_batch(&entries, &mut answers)
                .unwrap_or_else(|e| panic!("apply {index}: {e}"));
            answers.pop().flatten().expect("a command is answered")
        })
    }

    fn query(&self, request: &[u8]) -> Option<Bytes> {
        self.with(|disk| DurableStateMachine::query(disk, request))
    }

    /// The store's index, then its view's stream.
    fn snapshot(&self) -> Bytes {
        self.with(|disk| {
            let index = disk.applied_index();
            let mut view = disk.view().expect("a view of the store");
            let stream = read_view(&mut view).expect("read the view");
            let mut bytes = index.to_le_bytes().to_vec();
            bytes.extend_from_slice(&stream);
            Bytes::from(bytes)
        })
    }

    fn canonical_state(&self) -> Bytes {
        self.with(|disk| DurableStateMachine::canonical_state(disk))
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
        let Some((index, stream)) = snapshot.split_first_chunk::<8>() else {
            return Err(RestoreError::new("a snapshot shorter than its index"));
        };
        let index = u64::from_le_bytes(*index);
        self.with(|disk| {
            let failed = |e: concord::durable::DurableError| RestoreError::new(e.to_string());
            let mut restore = disk.begin_restore(index).map_err(failed)?;
            // In chunks, as a snapshot from a leader arrives.
            for chunk in stream.chunks(1000) {
                restore.write(chunk).map_err(failed)?;
            }
            restore.complete().map_err(failed)?;
            disk.finish_restore(restore).map_err(failed)
        })
    }
}

fn seeds() -> std::ops::Range<u64> {
    let Ok(range) = std::env::var("CONCORD_DISK_SIM_SEEDS") else {
        return 0..12;
    };
    let (a, b) = range
        .split_once("..")
        .expect("CONCORD_DISK_SIM_SEEDS is A..B");
    a.parse().expect("a seed")..b.parse().expect("a seed")
}

#[test]
fn disk_store_passes_the_simulators_kv_workload_and_faults() {
    let base = std::env::temp_dir().join(format!("concord-disk-sim-{}", std::process::id()));
    std::fs::create_dir_all(&base).unwrap();
    let stores = Arc::new(AtomicU64::new(0));
    let (mut operations, mut taken, mut installed, mut restarts) = (0, 0, 0, 0);
    let seeds = seeds();
    for seed in seeds.clone() {
        let config = SimConfig {
            seed,
            nodes: 3,
            chaos_ns: 3_000_000_000,
            // The store stands in for an in-memory state machine.
            durable_state_machine: DurableChoice::Off,
            ..SimConfig::default()
        };
        let workload = KvWorkload::new(
            KvWorkloadConfig {
                keys: config.keys,
                ..KvWorkloadConfig::default()
            },
            config.clients,
        );
        let (dir, stores) = (base.clone(), stores.clone());
        let make = move |node: NodeId| {
            let n = stores.fetch_add(1, Ordering::Relaxed);
            DiskMachine::open(dir.join(format!("store-{n}")), node)
        };
        let report = Simulation::new(config, None, make, workload).unwrap().run();
        assert!(
            report.passed(),
            "seed {seed} fails against the disk store: {}",
            report
                .failure
                .as_ref()
                .map(|failure| failure.to_string())
                .unwrap_or_default()
        );
        operations += report.operations;
        taken += report.snapshots.taken;
        installed += report.snapshots.installed;
        restarts += report.faults.get(FaultKind::Crash);
    }
    eprintln!(
        "seeds {seeds:?}: {operations} operations checked, {taken} snapshots taken, \
         {installed} installed from a leader, {restarts} crashes, {} stores opened",
        stores.load(Ordering::Relaxed)
    );
    // The run reached what it is for.
    assert!(operations > 0 && taken > 0 && installed > 0 && restarts > 0);
    std::fs::remove_dir_all(&base).unwrap();
}
