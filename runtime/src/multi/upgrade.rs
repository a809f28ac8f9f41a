//! The upgrade of a single-group server's data directory to the one
//! runtime's layout, in place, on the first start of the new server.
//!
//! Before the one runtime, a server of one group (`concord-node` without
//! `--groups`) kept its own layout: `wal/` segments of one log, a
//! `hardstate` file and `snapshots/`. The one runtime keeps every group,
//! one of them or many, in a shared log (`log/`) and per-group snapshot
//! directories (`groups/`, see [`super::data_dir`]). This module turns
//! the first into the second for the cluster's one data group:
//!
//! * **Every entry keeps its index and term**, the hard state (term,
//!   vote, storage recovery) is kept, and the newest snapshot is kept at
//!   its position with the configuration stored beside it: the replica is
//!   the same replica, so nothing acknowledged can be lost and no vote can
//!   be cast twice. Entries past the commit index are kept too: they may
//!   be committed on the other servers.
//! * **The bytes the state machine sees change their frame, not their
//!   meaning**: a single-group server applied every command through its
//!   session layer directly; a group of the one runtime applies a command
//!   of a session when it starts with [`SESSION_TAG`], and the session
//!   layer's snapshot behind [`SNAPSHOT_MAGIC`]. So each command gains
//!   the tag and the snapshot the magic, and every server of
//!   the cluster, converting its own copy, applies the same commands to
//!   the same state. The replicated address book that led the old
//!   snapshot is taken off it and reported ([`Upgraded::addresses`]): the
//!   one runtime's addresses are `--peers` and its catalog.
//!
//! ## Crash safety
//!
//! The new layout is written beside the old one and switched to by one
//! rename. The steps, with what a start after a crash at each finds:
//!
//! 1. the old log is read (a torn tail truncated, as a start of the old
//!    server did) and the new layout written into `upgrade.tmp/` and made
//!    durable: `log/` is absent, so the directory is still the old one,
//!    and the upgrade starts again from the beginning, deleting
//!    `upgrade.tmp/` (and a `groups/` of an earlier attempt);
//! 2. `upgrade.tmp/groups` is renamed to `groups` (old, as above);
//! 3. `upgrade.tmp/log` is renamed to `log` and the directory synced:
//!    **the commit point**. From here the directory is the new one;
//! 4. the old files (`wal/`, `snapshots/`, `hardstate`) and
//!    `upgrade.tmp/` are deleted; a start that finds `log/` beside any of
//!    them deletes what is left ([`upgrade_single_group`] does, before
//!    the log is opened).
//!
//! So a crash at any point leaves a directory that starts: either the old
//! one, upgraded again, or the new one.

use std::fs;
use std::path::Path;

use bytes::{BufMut, Bytes, BytesMut};
use concord::multi::sessions::{SESSION_TAG, SNAPSHOT_MAGIC};
use concord::multi::GroupId;
use concord::{Entry, EntryPayload, HardState, Index, LogPosition, Snapshot};

use crate::addresses::{self, AddressBook, HostRecord};
use crate::snapshot_file::SNAPSHOT_DIR_NAME;
use crate::storage::StorageError;
use crate::wal::{self, io_err, sync_dir, WalOptions};

use super::segment_files::DirSegments;
use super::shared_log::{MultiWalOptions, SharedLog, WalWrite};
use super::snapshot_store::DirSnapshots;

/// Directory the new layout is written into before the switch.
pub const UPGRADE_DIR_NAME: &str = "upgrade.tmp";

/// The single-group server's files, deleted once the upgrade committed.
const OLD_WAL_DIR_NAME: &str = "wal";
const OLD_HARD_STATE_FILE_NAME: &str = "hardstate";

/// Most entries written in one round of the new log, and most bytes:
/// each round is one record, well under the record size limit.
const ROUND_ENTRIES_MAX: usize = 4_096;
const ROUND_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Steps of the upgrade (see the [module documentation](self)), for
/// [`UpgradeOptions::stop_after`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum UpgradeStep {
    /// The first round of the new log written in `upgrade.tmp/`.
    FirstRoundWritten,
    /// The new layout written in `upgrade.tmp/` and durable.
    Written,
    /// `groups/` in place.
    GroupsRenamed,
    /// `log/` in place: committed.
    Committed,
    /// The old write-ahead log deleted.
    OldLogDeleted,
    /// Every old file deleted.
    Cleaned,
}

impl UpgradeStep {
    /// Every step, in order.
    pub const ALL: [UpgradeStep; 6] = [
        UpgradeStep::FirstRoundWritten,
        UpgradeStep::Written,
        UpgradeStep::GroupsRenamed,
        UpgradeStep::Committed,
        UpgradeStep::OldLogDeleted,
        UpgradeStep::Cleaned,
    ];
}

/// How to upgrade.
#[derive(Clone, Debug, Default)]
pub struct UpgradeOptions {
    /// Accept lost synced data in the old log (the old server's
    /// `--accept-wal-data-loss`): truncate it there and upgrade what is
    /// left, instead of refusing.
    pub accept_data_loss: bool,
    /// Stop with an error right after this step, as a crash there would
    /// (crash tests; `None` in a server).
    #[doc(hidden)]
    pub stop_after: Option<UpgradeStep>,
}

/// What an upgrade converted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upgraded {
    /// The group the old log became.
    pub group: GroupId,
    /// The hard state kept.
    pub hard_state: HardState,
    /// The snapshot's position (ZERO without one).
    pub snapshot: LogPosition,
    /// Entries after the snapshot, converted.
    pub entries: u64,
    /// The last entry's index (the snapshot's without entries).
    pub last_index: Index,
    /// The old replicated address book: the snapshot's, then every
    /// address record of the log, in order.
    pub addresses: AddressBook,
}

/// What [`upgrade_single_group`] found and did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpgradeOutcome {
    /// Nothing of a single-group server in the directory.
    NotNeeded,
    /// An upgrade committed by an earlier start was finished (old files
    /// deleted).
    Finished,
    /// The directory was upgraded now.
    Upgraded(Upgraded),
}

/// Whether `dir` holds a single-group server's data not yet upgraded: a
/// write-ahead log, hard state or snapshots of the old layout and no
/// shared log.
pub fn holds_single_group_data(dir: &Path) -> bool {
    !dir.join("log").exists()
        && [
            OLD_WAL_DIR_NAME,
            OLD_HARD_STATE_FILE_NAME,
            SNAPSHOT_DIR_NAME,
        ]
        .iter()
        .any(|name| dir.join(name).exists())
}

/// Upgrades `dir` in place (see the [module documentation](self)) so its
/// single-group log becomes group `group` of the shared log; finishes an
/// upgrade an earlier start committed; or does nothing. Call it with the
/// directory locked and its identity checked, before the shared log is
/// opened.
pub fn upgrade_single_group(
    dir: &Path,
    group: GroupId,
    options: &UpgradeOptions,
) -> Result<UpgradeOutcome, StorageError> {
    if dir.join("log").exists() {
        return if remove_old_files(dir, options)? {
            Ok(UpgradeOutcome::Finished)
        } else {
            Ok(UpgradeOutcome::NotNeeded)
        };
    }
    if !holds_single_group_data(dir) {
        return Ok(UpgradeOutcome::NotNeeded);
    }
    // Not committed: whatever an earlier attempt wrote is void.
    let staging = dir.join(UPGRADE_DIR_NAME);
    remove_dir_if_present(&staging)?;
    remove_dir_if_present(&dir.join("groups"))?;
    let upgraded = write_new_layout(dir, &staging, group, options)?;
    sync_dir(&staging)?;
    sync_dir(dir)?;
    stop_if(options, UpgradeStep::Written)?;
    rename(&staging.join("groups"), &dir.join("groups"))?;
    sync_dir(dir)?;
    stop_if(options, UpgradeStep::GroupsRenamed)?;
    rename(&staging.join("log"), &dir.join("log"))?;
    sync_dir(dir)?;
    stop_if(options, UpgradeStep::Committed)?;
    remove_old_files(dir, options)?;
    tracing::info!(
        dir = %dir.display(),
        group,
        entries = upgraded.entries,
        snapshot_index = upgraded.snapshot.index,
        last_index = upgraded.last_index,
        "upgraded a single-group server's data directory to the shared log"
    );
    Ok(UpgradeOutcome::Upgraded(upgraded))
}

/// Reads the old log and writes it as `group` of a shared log in
/// `staging`, durably.
fn write_new_layout(
    dir: &Path,
    staging: &Path,
    group: GroupId,
    options: &UpgradeOptions,
) -> Result<Upgraded, StorageError> {
    let wal_options = WalOptions {
        accept_data_loss: options.accept_data_loss,
        ..WalOptions::default()
    };
    let report = wal::recover_dir(dir, &wal_options)?;
    let recovered = report.recovered;
    let mut book = AddressBook::new();
    let snapshot = match &report.snapshot {
        Some(reader) => {
            let data = reader.read_verified()?;
            let (snapshot_book, data) =
                addresses::unwrap_snapshot(data).map_err(|reason| StorageError::Corrupt {
                    file: dir.join(SNAPSHOT_DIR_NAME).display().to_string(),
                    offset: 0,
                    reason,
                })?;
            book = snapshot_book;
            Some(
                Snapshot::new(reader.meta().position, convert_snapshot(&data))
                    .with_membership(reader.membership().cloned()),
            )
        }
        None => None,
    };
    assert_eq!(
        snapshot.as_ref().map_or(LogPosition::ZERO, |s| s.position),
        recovered.base,
        "recovery's base is its snapshot's position"
    );
    let (mut log, recovery) = SharedLog::open(
        DirSegments::new(staging.join("log"))?,
        DirSnapshots::new(staging.join("groups"))?,
        MultiWalOptions::default(),
    )?;
    assert!(
        recovery.groups.is_empty(),
        "a fresh staging directory holds no group"
    );
    let mut first_round = true;
    let mut round = |writes: Vec<WalWrite>| -> Result<(), StorageError> {
        log.write(writes)?;
        if first_round {
            first_round = false;
            stop_if(options, UpgradeStep::FirstRoundWritten)?;
        }
        Ok(())
    };
    let snapshot_position = recovered.base;
    if let Some(snapshot) = snapshot {
        round(vec![WalWrite::Installed {
            group,
            snapshot,
            discard_log: false,
        }])?;
    }
    // The hard state goes with the first entries (or alone).
    let mut hard_state = Some(recovered.hard_state);
    let mut chunk: Vec<Entry> = Vec::new();
    let mut chunk_bytes = 0usize;
    for (expected, entry) in (recovered.base.index + 1..).zip(&recovered.entries) {
        assert_eq!(entry.index, expected, "recovered entries are contiguous");
        if let EntryPayload::Host(bytes) = &entry.payload {
            if let Ok(HostRecord::Address(record)) = HostRecord::decode(bytes) {
                book.insert(record.id, record.addr);
            }
        }
        let converted = convert_entry(entry);
        chunk_bytes += converted.payload.len_bytes();
        chunk.push(converted);
        if chunk.len() >= ROUND_ENTRIES_MAX || chunk_bytes >= ROUND_BYTES_MAX {
            round(vec![WalWrite::Log {
                group,
                hard_state: hard_state.take(),
                truncate_after: None,
                entries: std::mem::take(&mut chunk).into(),
            }])?;
            chunk_bytes = 0;
        }
    }
    if !chunk.is_empty() || hard_state.is_some() {
        round(vec![WalWrite::Log {
            group,
            hard_state: hard_state.take(),
            truncate_after: None,
            entries: chunk.into(),
        }])?;
    }
    drop(log);
    Ok(Upgraded {
        group,
        hard_state: recovered.hard_state,
        snapshot: snapshot_position,
        entries: recovered.entries.len() as u64,
        last_index: recovered
            .entries
            .last()
            .map_or(snapshot_position.index, |e| e.index),
        addresses: book,
    })
}

/// A single-group server's snapshot of its session layer, as a group's
/// session layer of the one runtime stores it; a witness's (no state)
/// stays empty.
pub fn convert_snapshot(data: &[u8]) -> Bytes {
    if data.is_empty() {
        return Bytes::new();
    }
    let mut out = BytesMut::with_capacity(SNAPSHOT_MAGIC.len() + data.len());
    out.put_slice(&SNAPSHOT_MAGIC);
    out.put_slice(data);
    out.freeze()
}

/// A single-group server's log entry as a group's of the one runtime: a
/// command (a request of the session layer) gains the session tag; every
/// other entry is the same.
pub fn convert_entry(entry: &Entry) -> Entry {
    let payload = match &entry.payload {
        EntryPayload::Command(command) => {
            let mut out = BytesMut::with_capacity(1 + command.len());
            out.put_u8(SESSION_TAG);
            out.put_slice(command);
            EntryPayload::Command(out.freeze())
        }
        other => other.clone(),
    };
    Entry {
        term: entry.term,
        index: entry.index,
        payload,
    }
}

/// Deletes the old layout's files and the staging directory, once the
/// upgrade committed. Whether any was there.
fn remove_old_files(dir: &Path, options: &UpgradeOptions) -> Result<bool, StorageError> {
    let mut removed = remove_dir_if_present(&dir.join(OLD_WAL_DIR_NAME))?;
    if removed {
        sync_dir(dir)?;
    }
    stop_if(options, UpgradeStep::OldLogDeleted)?;
    removed |= remove_dir_if_present(&dir.join(SNAPSHOT_DIR_NAME))?;
    let hard_state = dir.join(OLD_HARD_STATE_FILE_NAME);
    if hard_state.exists() {
        fs::remove_file(&hard_state)
            .map_err(io_err(format!("deleting {}", hard_state.display())))?;
        removed = true;
    }
    removed |= remove_dir_if_present(&dir.join(UPGRADE_DIR_NAME))?;
    if removed {
        sync_dir(dir)?;
    }
    stop_if(options, UpgradeStep::Cleaned)?;
    Ok(removed)
}

fn remove_dir_if_present(path: &Path) -> Result<bool, StorageError> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err(format!("deleting {}", path.display()))(e)),
    }
}

fn rename(from: &Path, to: &Path) -> Result<(), StorageError> {
    fs::rename(from, to).map_err(io_err(format!(
        "renaming {} to {}",
        from.display(),
        to.display()
    )))
}

fn stop_if(options: &UpgradeOptions, step: UpgradeStep) -> Result<(), StorageError> {
    if options.stop_after == Some(step) {
        return Err(StorageError::Misuse(format!(
            "upgrade stopped after step {step:?}, as asked (a crash test)"
        )));
    }
    Ok(())
}
