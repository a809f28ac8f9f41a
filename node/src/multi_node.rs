//! `concord-node --groups N` (N > 1): a server hosting N Raft groups of
//! a sharded service (the key-value store, `concord_services::sharded_kv`,
//! or any other: `crate::multi_service`), with a client session table in
//! every group, on the multi-group host (`concord_tokio::multi`): one shared write-ahead
//! log in `<data-dir>/log/`, each group's snapshots in
//! `<data-dir>/groups/`, one connection per peer carrying every group's
//! messages, one timer. Peers and clients share `--listen`; a client
//! names the group of each request (`concord-cli --groups N <service>
//! ...` routes by key).
//!
//! Every node of `--peers` hosts every group, each group's voters being
//! all of them at the start; group 0 is the catalog
//! ([`concord::multi::Catalog`]): the servers added since and their
//! addresses, and the groups assigned to them. A server started with
//! `--join` hosts only the catalog, as a learner, until the catalog
//! assigns it groups (`concord-cli member replace`, `member add-learner
//! --group G`). Membership changes of each group go through its own
//! log (`concord-cli member ... --group G`). Leases, witnesses and the preferred leader apply to
//! every data group ([`crate::group_roles`]). The data directory records
//! the service, the group
//! count ([`crate::groups_file`]) and the node's identity, like a
//! single-group server's, and is refused to a server started otherwise.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use concord::multi::{MultiConfig, CATALOG_GROUP};
use concord::{Config, NodeId};
use concord_services::sharded_kv::ShardMap;
use concord_tokio::identity::{IdentityClaim, IdentityHandle};
use concord_tokio::multi::data_dir;
use concord_tokio::multi::host::{self, MultiServerConfig, MultiServerHandle};
use concord_tokio::multi::log_sink::WalThread;
use concord_tokio::multi::shared_log::MultiWalOptions;
use concord_tokio::multi::tcp_listener::{self, MultiListenerConfig};
use concord_tokio::multi::tcp_sender::{TcpFrameConfig, TcpFrameSender};
use concord_tokio::multi::upgrade::{UpgradeOutcome, Upgraded};
use concord_tokio::storage::StorageError;

use crate::group_roles;
use crate::server::{ServerSettings, Storage, DISK_DIR_NAME};
use crate::{groups_file, service_file};

/// Exit status: failed to start or serve.
pub const EXIT_FAILED: u8 = 1;
/// Exit status: flags that cannot work together on this data directory.
pub const EXIT_BAD_FLAGS: u8 = 2;
/// Exit status: the data directory belongs to another cluster, node,
/// service or group count.
pub const EXIT_FOREIGN_DATA_DIR: u8 = 3;
/// Exit status: the data directory is in use by another process.
pub const EXIT_DATA_DIR_IN_USE: u8 = 4;

/// Why a multi-group server did not start, and its exit status.
#[derive(Debug)]
pub struct StartFailure {
    /// Exit status ([`EXIT_FAILED`], [`EXIT_FOREIGN_DATA_DIR`],
    /// [`EXIT_DATA_DIR_IN_USE`]).
    pub code: u8,
    /// What went wrong and what to do.
    pub message: String,
}

impl StartFailure {
    /// A claim on the data directory refused: [`EXIT_FOREIGN_DATA_DIR`]
    /// when it is another's (`foreign`), [`EXIT_FAILED`] when reading or
    /// writing it failed.
    pub fn claim_refused(foreign: bool, message: String) -> StartFailure {
        StartFailure {
            code: if foreign {
                EXIT_FOREIGN_DATA_DIR
            } else {
                EXIT_FAILED
            },
            message,
        }
    }

    /// The data directory `data_dir` could not be opened: refused for its
    /// identity (another cluster's or node's: [`EXIT_FOREIGN_DATA_DIR`];
    /// in use by another process: [`EXIT_DATA_DIR_IN_USE`]), or failed.
    pub fn data_dir_unopened(error: StorageError, data_dir: &Path) -> StartFailure {
        match error {
            StorageError::Identity(refusal) => StartFailure {
                code: if refusal.is_foreign() {
                    EXIT_FOREIGN_DATA_DIR
                } else {
                    EXIT_DATA_DIR_IN_USE
                },
                message: refusal.to_string(),
            },
            other => format!(
                "cannot open the data directory {}: {other}",
                data_dir.display()
            )
            .into(),
        }
    }
}

impl From<String> for StartFailure {
    fn from(message: String) -> Self {
        StartFailure {
            code: EXIT_FAILED,
            message,
        }
    }
}

/// A running multi-group server.
pub struct RunningMultiNode {
    /// The server loop.
    pub handle: MultiServerHandle,
    /// The address peers and clients reach it on.
    pub local_addr: SocketAddr,
    /// Its groups' key map.
    pub map: ShardMap,
    _identity: Arc<IdentityHandle>,
}

/// Starts the multi-group server `settings` describe (more than one
/// group, any service: [`crate::multi_service`]): claims and recovers
/// the data directory, then serves.
pub async fn start(settings: &ServerSettings) -> Result<RunningMultiNode, StartFailure> {
    if settings.storage == Storage::Disk && !cfg!(feature = "disk") {
        return Err(StartFailure {
            code: EXIT_BAD_FLAGS,
            message: "--storage disk needs a concord-node built with feature disk (cargo build \
                      -p concord-node --features disk; it compiles RocksDB and needs libclang): \
                      this one keeps the keys in memory only"
                .to_string(),
        });
    }
    if settings.storage == Storage::Memory && settings.data_dir.join(DISK_DIR_NAME).is_dir() {
        return Err(StartFailure::claim_refused(
            false,
            format!(
                "{} keeps the key-value store on disk ({DISK_DIR_NAME}/): start it with \
                 --storage disk (in memory, the keys there would be ignored)",
                settings.data_dir.display()
            ),
        ));
    }
    let map = ShardMap::new(settings.groups).map_err(|e| e.to_string())?;
    service_file::claim(&settings.data_dir, settings.service)
        .map_err(|e| StartFailure::claim_refused(e.is_foreign(), e.to_string()))?;
    groups_file::claim(&settings.data_dir, settings.groups)
        .map_err(|e| StartFailure::claim_refused(e.is_foreign(), e.to_string()))?;
    let claim = IdentityClaim {
        cluster_id: settings.cluster_id.clone(),
        node_id: settings.id,
        bootstrap: !settings.join && settings.peers.keys().next() == Some(&settings.id),
    };
    let options = MultiWalOptions {
        sync: settings.fsync,
        accept_data_loss: settings.accept_wal_data_loss,
        ..MultiWalOptions::default()
    };
    let (opened, identity) = if map.groups() == 1 {
        let group = *map.group_ids().start();
        let (opened, identity, outcome) =
            data_dir::open_one_group_data_dir_as(&settings.data_dir, options, &claim, group)
                .map_err(|e| StartFailure::data_dir_unopened(e, &settings.data_dir))?;
        if let UpgradeOutcome::Upgraded(upgraded) = &outcome {
            warn_of_unlisted_addresses(settings, upgraded);
        }
        (opened, identity)
    } else {
        data_dir::open_data_dir_as(&settings.data_dir, options, &claim)
            .map_err(|e| StartFailure::data_dir_unopened(e, &settings.data_dir))?
    };
    // A server that joined holds the cluster's log (the catalog's at
    // least): its configuration is in force, whatever --join says.
    let holds_configuration = opened.recovery.holds_configuration();
    // A cluster of one group keeps the single-group server's rule (a new
    // node lists the voters it joins, not itself); a sharded cluster's
    // new server may list itself: its catalog leaves it out.
    let refusal = settings
        .join_listed_itself_refusal(holds_configuration)
        .filter(|_| settings.groups == 1);
    if let Some(refusal) = refusal {
        return Err(StartFailure {
            code: EXIT_BAD_FLAGS,
            message: refusal,
        });
    }
    if settings.join && holds_configuration {
        tracing::info!(
            "--join is ignored: this node's log holds the cluster's configuration (it joined \
             already)"
        );
    } else if settings.join && settings.groups == 1 {
        tracing::info!(
            "joining as a learner: add this node with `concord-cli member add-learner {} {}`",
            settings.id,
            settings.listen
        );
    }
    let tls = settings.node_tls()?;
    let listener = tokio::net::TcpListener::bind(&settings.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", settings.listen))?;
    let local_addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;

    let id = settings.id;
    let voters: BTreeSet<_> = settings.peers.keys().copied().collect();
    let mut multi = node_config(id, &voters);
    multi.incarnation = opened.incarnation;
    multi.snapshot_send_bytes_per_tick_max = concord_tokio::cluster::snapshot_bytes_per_tick(
        settings.snapshot_send_bytes_per_sec,
        Duration::from_millis(settings.tick_ms),
    );
    let started_nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    group_roles::check_group_config(settings, &voters)?;
    let witness = settings.is_witness();
    if let Some(conflict) = group_roles::witness_role_conflict(&opened.recovery, id, witness) {
        return Err(StartFailure::claim_refused(true, conflict));
    }
    // A joining server follows the catalog as a learner of the servers it
    // was told of, and hosts what the catalog assigns it.
    let catalog_voters: BTreeSet<_> = if settings.join {
        voters
            .iter()
            .copied()
            .filter(|voter| *voter != id)
            .collect()
    } else {
        voters.clone()
    };
    let data_groups = if settings.join {
        None
    } else {
        Some(map.group_ids())
    };
    let groups = std::iter::once(CATALOG_GROUP)
        .chain(data_groups.into_iter().flatten())
        .map(|group| {
            let seed = id ^ started_nanos.rotate_left(17) ^ group.wrapping_mul(0x9e37_79b9);
            if group != CATALOG_GROUP {
                return (
                    group,
                    group_roles::group_config(settings, &voters, group, seed),
                );
            }
            // The catalog is every server's to keep in full, a witness's
            // too: it says what each server hosts.
            let mut config = Config::new(id, catalog_voters.iter().copied());
            if !catalog_voters.contains(&id) {
                config.learners.insert(id);
            }
            config.compaction_threshold_entries = settings.snapshot_every_entries;
            config.compaction_trailing_entries = settings.compaction_trailing_entries;
            config.snapshot_chunk_bytes_max = concord_tokio::cluster::snapshot_chunk_bytes_for(
                settings.snapshot_send_bytes_per_sec,
            );
            // The template of the groups the catalog assigns here later.
            config.snapshot_bytes_max = group_roles::snapshot_bytes_max(settings);
            config.seed = seed;
            (group, config)
        })
        .collect();
    let mut config = MultiServerConfig::new(multi, groups);
    config.witness = witness;
    config.tick = Duration::from_millis(settings.tick_ms);
    config.client_addrs = settings.peers.clone();

    // The servers of --peers are the first the listener asks for the
    // address of a member it was not told of (the catalog records it).
    let (mut frames, addresses) =
        TcpFrameConfig::for_servers(id, settings.cluster_id.clone(), &settings.peers);
    frames.tls = tls.clone();
    frames.identity = Some(identity.clone());
    let sender = TcpFrameSender::start(frames);
    let log = WalThread::start(opened.log)
        .map_err(|e| format!("cannot start the write-ahead log's thread: {e}"))?;
    let inbox = host::inbox();
    let events = inbox.0.clone();
    let parts = crate::multi_service::HostParts {
        config,
        recovery: opened.recovery,
        log,
        network: sender,
        inbox,
    };
    // A witness builds no state machine for any group.
    let handle = start_groups(settings, map, witness, parts)?;
    let mut accept = MultiListenerConfig::new(id, settings.cluster_id.clone(), voters);
    accept.tls = tls;
    accept.groups_hosted = Some(settings.groups);
    accept.addresses = addresses;
    accept.identity = Some(identity.clone());
    tokio::spawn(tcp_listener::serve(
        listener,
        accept,
        events,
        handle.shutdown_signal(),
    ));
    if settings.balance {
        let cluster = crate::multi_admin::Cluster {
            cluster_id: settings.cluster_id.clone(),
            servers: settings.peers.clone(),
            groups: settings.groups,
            tls: settings.node_tls()?,
            timeout: BALANCER_REQUEST_TIMEOUT,
        };
        tokio::spawn(crate::cluster_admin::balance_while_leading(
            cluster,
            id,
            local_addr.to_string(),
            !settings.join,
        ));
    }
    Ok(RunningMultiNode {
        handle,
        local_addr,
        map,
        _identity: identity,
    })
}

/// Timeout of one request of the server's own balancer (`--balance`).
const BALANCER_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A single-group server's directory was upgraded
/// ([`concord_tokio::multi::upgrade`]): its replicated address book is
/// not kept (`--peers` and the catalog are the addresses now), so a
/// server it names that `--peers` does not is named in a warning.
fn warn_of_unlisted_addresses(settings: &ServerSettings, upgraded: &Upgraded) {
    // The upgrade itself is logged where it happens (`upgrade.rs`).
    for (id, addr) in &upgraded.addresses {
        if !settings.peers.contains_key(id) {
            tracing::warn!(
                id,
                %addr,
                "the upgraded log's address book names server {id} at {addr}, which --peers \
                 does not list: if it is still a member, add {id}={addr} to --peers of every \
                 server"
            );
        }
    }
}

/// Runs `node` until SIGINT or SIGTERM (then stops it gracefully) or
/// until its loop stops by itself (a failed log); how it ended.
pub async fn serve_until_signal(node: RunningMultiNode) -> Result<(), String> {
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("cannot install a SIGTERM handler: {e}"))?;
    let handle = node.handle;
    let stopped = async {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if handle.status(false).await.is_none() {
                return;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
        _ = sigterm.recv() => tracing::info!("SIGTERM: shutting down"),
        () = stopped => tracing::error!("the server loop stopped"),
    }
    handle.shutdown().await.map_err(|e| e.to_string())
}

/// The node-level configuration of server `id` of `voters`: room for
/// every data group `--groups` allows and the catalog beside them (with
/// the layer's default, `--groups 100000` was refused at start).
fn node_config(id: NodeId, voters: &BTreeSet<NodeId>) -> MultiConfig {
    let mut multi = MultiConfig::new(id, voters.iter().copied());
    multi.groups_max = concord_services::sharded_kv::GROUPS_MAX as usize + 1;
    multi
}

/// Starts the host with each group's state machine in memory, or on disk
/// (`--storage disk`, [`crate::disk_groups`]).
fn start_groups(
    settings: &ServerSettings,
    map: ShardMap,
    witness: bool,
    parts: crate::multi_service::HostParts,
) -> Result<MultiServerHandle, String> {
    #[cfg(feature = "disk")]
    if settings.storage == Storage::Disk {
        let groups = if settings.join {
            Vec::new()
        } else {
            map.group_ids().collect()
        };
        return crate::disk_groups::start_disk_host(
            &settings.data_dir,
            &settings.cluster_id,
            settings.id,
            map,
            groups,
            witness,
            parts,
        );
    }
    crate::multi_service::start_host(settings.service, map, witness, parts)
        .map_err(|e| format!("cannot start the groups: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use concord::multi::MultiNode;

    /// `--groups` at its most, 100,000 data groups, and the catalog:
    /// every one is created.
    #[test]
    fn a_node_hosts_the_most_groups_the_flag_allows_and_the_catalog() {
        let voters: BTreeSet<NodeId> = [1, 2, 3].into();
        let mut node = MultiNode::new(node_config(1, &voters)).unwrap();
        let groups = concord_services::sharded_kv::GROUPS_MAX;
        for group in std::iter::once(CATALOG_GROUP).chain(1..=groups) {
            let config = Config::new(1, voters.iter().copied());
            node.create_group(group, config, concord::Recovered::default())
                .unwrap_or_else(|e| panic!("group {group}: {e}"));
        }
        assert_eq!(node.group_count() as u64, groups + 1);
    }
}

/// The upgrade of a single-group server's data directory
/// (`concord_tokio::multi::upgrade`) on the committed fixture of such a
/// cluster (`node/tests/data/single-group-v2`, written by the binaries
/// of before the one runtime; its README says what it holds).
#[cfg(test)]
mod upgrade_tests {
    use std::path::{Path, PathBuf};

    use concord::multi::sessions::GroupSessions;
    use concord::state_machine::StateMachine;
    use concord::{EntryPayload, Recovered};
    use concord_services::sharded_kv::{ShardMachine, ShardMap};
    use concord_tokio::identity::IdentityClaim;
    use concord_tokio::multi::data_dir::{self, DataDir};
    use concord_tokio::multi::shared_log::MultiWalOptions;
    use concord_tokio::multi::upgrade::{
        self, UpgradeOptions, UpgradeOutcome, UpgradeStep, UPGRADE_DIR_NAME,
    };
    use concord_tokio::wal::{self, WalOptions};

    use crate::multi_service::SessionLimits;

    const GROUP: u64 = 1;

    fn fixture(node: u64) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/single-group-v2")
            .join(format!("node-{node}"))
    }

    /// A copy of the fixture's directory of `node` to change.
    fn copy_of(node: u64, name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "concord-upgrade-{name}-{node}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        copy_dir(&fixture(node), &dir);
        dir
    }

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

    fn open(dir: &Path, node: u64) -> (DataDir, UpgradeOutcome) {
        let claim = IdentityClaim {
            cluster_id: "fixture-v2".to_string(),
            node_id: node,
            bootstrap: false,
        };
        let (opened, _identity, outcome) =
            data_dir::open_one_group_data_dir_as(dir, MultiWalOptions::default(), &claim, GROUP)
                .unwrap();
        (opened, outcome)
    }

    /// The group's state machine as a server of one group runs it,
    /// restored from the recovered snapshot and every recovered entry
    /// applied.
    fn replay(opened: &DataDir) -> GroupSessions<ShardMachine> {
        let map = ShardMap::new(1).unwrap();
        let limits = SessionLimits::of(&map);
        let mut machine = GroupSessions::with_limits(
            ShardMachine::new(map, GROUP),
            limits.sessions_max,
            limits.bytes_max,
        );
        let group = &opened.recovery.groups[&GROUP];
        if let Some(snapshot) = &group.snapshot {
            machine.restore(&snapshot.read_verified().unwrap()).unwrap();
        }
        for entry in &group.recovered.entries {
            concord::state_machine::apply_entry(&mut machine, entry);
        }
        machine
    }

    /// What `make-single-group-fixture.sh` wrote, key by value.
    fn written() -> Vec<(String, Vec<u8>)> {
        let mut writes: Vec<(String, Vec<u8>)> = (0..60)
            .map(|i| (format!("small-{i}"), format!("value-{i}").into_bytes()))
            .collect();
        writes[7].1 = b"seven-again".to_vec();
        writes.push(("large".to_string(), vec![b'x'; 10_000]));
        writes.push(("log".to_string(), b"abc".to_vec()));
        writes
    }

    /// The old directory's state as the single-group server recovered it.
    fn old_state(dir: &Path) -> (Recovered, Option<concord::LogPosition>) {
        let report = wal::recover_dir(dir, &WalOptions::default()).unwrap();
        let position = report.snapshot.as_ref().map(|s| s.meta().position);
        (report.recovered, position)
    }

    /// Every write the fixture's cluster acknowledged is in the upgraded
    /// directory of each of its three servers, with the hard state, the
    /// snapshot's position and every entry's index and term kept.
    #[test]
    fn an_upgraded_directory_holds_every_acknowledged_write_and_the_same_log() {
        for node in 1..=3 {
            let dir = copy_of(node, "whole");
            let (old, old_snapshot) = old_state(&dir);
            let (opened, outcome) = open(&dir, node);
            let UpgradeOutcome::Upgraded(upgraded) = outcome else {
                panic!("node {node}: {outcome:?}");
            };
            assert_eq!(upgraded.entries, old.entries.len() as u64);
            assert!(
                !upgrade::holds_single_group_data(&dir) && !dir.join("wal").exists(),
                "node {node}: old files left"
            );
            let group = &opened.recovery.groups[&GROUP];
            let new = &group.recovered;
            assert_eq!(new.hard_state, old.hard_state, "node {node}");
            assert_eq!(new.base, old.base, "node {node}");
            assert_eq!(
                group.snapshot.as_ref().map(|s| s.meta().position),
                old_snapshot,
                "node {node}"
            );
            assert!(
                old_snapshot.is_some_and(|p| p.index > 0),
                "the fixture has a snapshot"
            );
            assert_eq!(new.entries.len(), old.entries.len(), "node {node}");
            for (new, old) in new.entries.iter().zip(&old.entries) {
                assert_eq!((new.index, new.term), (old.index, old.term));
                match (&new.payload, &old.payload) {
                    (EntryPayload::Command(new), EntryPayload::Command(old)) => {
                        assert_eq!(new[0], concord::multi::sessions::SESSION_TAG);
                        assert_eq!(&new[1..], &old[..]);
                    }
                    (new, old) => assert_eq!(new, old),
                }
            }
            let machine = replay(&opened);
            for (key, value) in written() {
                assert_eq!(
                    machine
                        .inner()
                        .store()
                        .value(key.as_bytes())
                        .map(|v| v.to_vec()),
                    Some(value),
                    "node {node}: key {key}"
                );
            }
            // The fixture's clients each wrote in a session; their table
            // came along.
            assert!(!machine.table().is_empty(), "node {node}: no sessions");
            drop(opened);
            // A second start finds nothing to upgrade.
            let (_, outcome) = open(&dir, node);
            assert_eq!(outcome, UpgradeOutcome::NotNeeded);
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }

    /// A crash after any step of the upgrade leaves a directory that
    /// starts, as the old one (upgraded again) or the new one, and holds
    /// the same log and state either way.
    #[test]
    fn a_crash_at_any_step_of_the_upgrade_leaves_a_directory_that_starts() {
        let reference_dir = copy_of(2, "reference");
        let (reference, _) = open(&reference_dir, 2);
        let expected = reference.recovery.groups[&GROUP].recovered.clone();
        let expected_state = replay(&reference).canonical_state();
        drop(reference);
        for step in UpgradeStep::ALL {
            let dir = copy_of(2, "crash");
            let stopped = upgrade::upgrade_single_group(
                &dir,
                GROUP,
                &UpgradeOptions {
                    stop_after: Some(step),
                    ..UpgradeOptions::default()
                },
            );
            assert!(stopped.is_err(), "{step:?}: {stopped:?}");
            let committed = step >= UpgradeStep::Committed;
            assert_eq!(dir.join("log").exists(), committed, "{step:?}");
            assert_eq!(
                upgrade::holds_single_group_data(&dir),
                !committed,
                "{step:?}"
            );
            let (opened, outcome) = open(&dir, 2);
            match (committed, &outcome) {
                (false, UpgradeOutcome::Upgraded(_)) => {}
                (true, UpgradeOutcome::Finished) if step < UpgradeStep::Cleaned => {}
                (true, UpgradeOutcome::NotNeeded) if step == UpgradeStep::Cleaned => {}
                _ => panic!("{step:?}: {outcome:?}"),
            }
            assert_eq!(
                opened.recovery.groups[&GROUP].recovered, expected,
                "{step:?}"
            );
            assert_eq!(
                replay(&opened).canonical_state(),
                expected_state,
                "{step:?}"
            );
            for old in ["wal", "snapshots", "hardstate", UPGRADE_DIR_NAME] {
                assert!(!dir.join(old).exists(), "{step:?}: {old} left");
            }
            drop(opened);
            std::fs::remove_dir_all(&dir).unwrap();
        }
        std::fs::remove_dir_all(&reference_dir).unwrap();
    }
}
