//! A multi-group node's data directory: locked, its identity checked, its
//! incarnation bumped, its shared log and snapshots recovered, in one
//! call. What a server binary calls at start:
//!
//! ```text
//! <dir>/identity, <dir>/lock                             as a single-group server's
//! <dir>/incarnation                                      this node's start counter
//! <dir>/log/<number:020>.seg                             the shared log
//! <dir>/log/durable                                      its durable marker
//! <dir>/groups/<group:020>/snapshot-<index>-<term>.snap  each group's snapshots
//! ```
//!
//! ## The incarnation
//!
//! Peers learn that a node restarted — and forgot every vote and
//! leadership it held in memory — from the incarnation its frames carry
//! ([`MultiConfig::incarnation`](concord::multi::MultiConfig::incarnation)):
//! it must differ at every start. So it is a counter kept in
//! `<dir>/incarnation`, 24 bytes
//! `[magic "CNCDINCR": 8][version = 1: u32][incarnation: u64][checksum: u32]`
//! (checksum = `crc32c` of the first 20 bytes `^ CHECKSUM_SALT`), read and
//! replaced atomically and durably with the next value before anything
//! else is opened: a crash at any point leaves a value no start used
//! since. A directory with a log but no counter (written before it
//! existed) starts from a random value. A damaged counter refuses to
//! start, naming the file.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use crate::identity::{self, IdentityClaim, IdentityError, IdentityHandle, Incarnation};
use crate::storage::StorageError;
use crate::wal::{self, io_err, CHECKSUM_SALT};

use super::replay::MultiRecovery;
use super::segment_files::DirSegments;
use super::shared_log::{MultiWalOptions, SharedLog};
use super::snapshot_store::DirSnapshots;
use super::upgrade::{upgrade_single_group, UpgradeOptions, UpgradeOutcome};

/// The shared log of a data directory on real files.
pub type DirLog = SharedLog<DirSegments, DirSnapshots>;

/// File name of the incarnation counter inside a data directory.
pub const INCARNATION_FILE_NAME: &str = "incarnation";

/// First bytes of the incarnation file.
pub const INCARNATION_MAGIC: [u8; 8] = *b"CNCDINCR";

/// Version of the incarnation file's layout.
pub const INCARNATION_VERSION: u32 = 1;

/// Bytes of the incarnation file.
pub const INCARNATION_BYTES: usize = 24;

/// A data directory opened for a start of the node.
#[derive(Debug)]
pub struct DataDir {
    /// Its shared log, ready for writing (it holds the directory's lock).
    pub log: DirLog,
    /// Every group's durable state.
    pub recovery: MultiRecovery,
    /// This start's incarnation, stored: put it in
    /// [`MultiConfig::incarnation`](concord::multi::MultiConfig::incarnation).
    pub incarnation: u64,
}

/// Which layout a data directory holds, told by its files (see
/// [`layout`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataDirLayout {
    /// The shared log of the one runtime: `log/` (and `groups/`), one
    /// group or many. An upgrade that committed but did not finish
    /// deleting the old files counts here, as a start finishes it.
    SharedLog,
    /// A single-group server's write-ahead log not yet upgraded: `wal/`,
    /// `hardstate` or `snapshots/`, and no `log/`.
    SingleGroup,
    /// Neither: a missing or empty directory, or one that holds no log.
    Neither,
}

impl std::fmt::Display for DataDirLayout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DataDirLayout::SharedLog => "the shared log of a multi-group server (log/, groups/)",
            DataDirLayout::SingleGroup => {
                "the write-ahead log of a single-group server (wal/, hardstate, snapshots/)"
            }
            DataDirLayout::Neither => "no write-ahead log (no log/, no wal/)",
        })
    }
}

/// The layout `dir` holds, read from the names of its files only
/// (nothing is opened, locked or changed).
pub fn layout(dir: &Path) -> DataDirLayout {
    if dir.join("log").is_dir() {
        DataDirLayout::SharedLog
    } else if super::upgrade::holds_single_group_data(dir) {
        DataDirLayout::SingleGroup
    } else {
        DataDirLayout::Neither
    }
}

/// An identity refusal as a storage error (an I/O error stays one).
fn identity_error(error: IdentityError) -> StorageError {
    match error {
        IdentityError::Storage(error) => error,
        other => StorageError::Identity(Box::new(other)),
    }
}

/// Encodes incarnation `value` as the file holds it.
pub fn encode_incarnation(value: u64) -> [u8; INCARNATION_BYTES] {
    let mut bytes = [0u8; INCARNATION_BYTES];
    bytes[..8].copy_from_slice(&INCARNATION_MAGIC);
    bytes[8..12].copy_from_slice(&INCARNATION_VERSION.to_le_bytes());
    bytes[12..20].copy_from_slice(&value.to_le_bytes());
    let checksum = crc32c::crc32c(&bytes[..20]) ^ CHECKSUM_SALT;
    bytes[20..].copy_from_slice(&checksum.to_le_bytes());
    bytes
}

/// Decodes the incarnation file's bytes, saying what is wrong.
pub fn decode_incarnation(bytes: &[u8]) -> Result<u64, String> {
    if bytes.len() != INCARNATION_BYTES {
        return Err(format!(
            "{} bytes, expected {INCARNATION_BYTES}",
            bytes.len()
        ));
    }
    if bytes[..8] != INCARNATION_MAGIC {
        return Err("it does not start with the incarnation magic".to_string());
    }
    let version = wal::u32_at(bytes, 8);
    if version != INCARNATION_VERSION {
        return Err(format!(
            "version {version}; this build reads only version {INCARNATION_VERSION}"
        ));
    }
    if crc32c::crc32c(&bytes[..20]) ^ CHECKSUM_SALT != wal::u32_at(bytes, 20) {
        return Err("checksum mismatch".to_string());
    }
    let mut value = [0u8; 8];
    value.copy_from_slice(&bytes[12..20]);
    Ok(u64::from_le_bytes(value))
}

/// Reads `dir`'s incarnation counter and stores the next value durably
/// (see the [module documentation](self)); returns it.
pub fn next_incarnation(dir: &Path) -> Result<u64, StorageError> {
    let path = dir.join(INCARNATION_FILE_NAME);
    let previous = match fs::read(&path) {
        Ok(bytes) => decode_incarnation(&bytes).map_err(|reason| StorageError::Corrupt {
            file: path.display().to_string(),
            offset: 0,
            reason: format!(
                "the node's incarnation counter is unreadable: {reason}; remove the file to \
                 start with a random incarnation"
            ),
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let log_dir = dir.join("log");
            let holds_log = fs::read_dir(&log_dir).is_ok_and(|mut items| items.next().is_some());
            if holds_log {
                // Earlier starts kept no counter: any value they used may
                // be what peers remember, so draw one.
                let bytes = Incarnation::generate().0;
                let mut word = [0u8; 8];
                word.copy_from_slice(&bytes[..8]);
                let drawn = u64::from_le_bytes(word) >> 1;
                tracing::info!(
                    file = %path.display(),
                    drawn,
                    "no incarnation counter beside an existing log; starting from a random one"
                );
                drawn
            } else {
                // A new directory, perhaps of a node whose disk was
                // replaced: peers remember the counter of the lost one,
                // and a frame carrying a smaller value is taken for one
                // delayed from before a restart (no restart noticed, the
                // groups it led left asleep). So a new counter starts
                // from the clock, in microseconds, which runs far ahead
                // of one step per start.
                let micros = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |since| since.as_micros() as u64);
                micros >> 1
            }
        }
        Err(e) => return Err(io_err(format!("reading {}", path.display()))(e)),
    };
    let next = previous
        .checked_add(1)
        .ok_or_else(|| StorageError::Corrupt {
            file: path.display().to_string(),
            offset: 0,
            reason: "the node's incarnation counter is at its largest value; remove the file to \
                     start with a random incarnation"
                .to_string(),
        })?;
    wal::write_file_atomically(dir, INCARNATION_FILE_NAME, &[&encode_incarnation(next)])?;
    Ok(next)
}

/// Locks `dir` (refusing if another process, or another log in this one,
/// holds it), bumps its incarnation and recovers its shared log. The lock
/// is held by the log's segments, so for as long as the log is written.
pub fn open_data_dir(
    dir: impl AsRef<Path>,
    options: MultiWalOptions,
) -> Result<DataDir, StorageError> {
    let dir = dir.as_ref();
    let lock = identity::lock(dir).map_err(identity_error)?;
    open_locked(dir, lock, options)
}

fn open_locked(
    dir: &Path,
    lock: identity::DataDirLock,
    options: MultiWalOptions,
) -> Result<DataDir, StorageError> {
    let incarnation = next_incarnation(dir)?;
    let segments = DirSegments::new(dir.join("log"))?.holding(lock);
    let snapshots = DirSnapshots::new(dir.join("groups"))?;
    let (log, recovery) = SharedLog::open(segments, snapshots, options)?;
    Ok(DataDir {
        log,
        recovery,
        incarnation,
    })
}

/// [`open_data_dir`] for the server `claim` names: the directory's
/// identity is checked against the claim (or recorded, on a first start)
/// before anything in it is read or changed. Also returns the handle the
/// transport checks peers' cluster incarnations with.
pub fn open_data_dir_as(
    dir: impl AsRef<Path>,
    options: MultiWalOptions,
    claim: &IdentityClaim,
) -> Result<(DataDir, Arc<IdentityHandle>), StorageError> {
    let dir = dir.as_ref();
    let lock = identity::lock(dir).map_err(identity_error)?;
    let handle = identity::claim(dir, &lock, claim).map_err(identity_error)?;
    let opened = open_locked(dir, lock, options)?;
    Ok((opened, handle))
}

/// [`open_data_dir_as`] for the server of a cluster of one data group,
/// `group`: a single-group server's directory is upgraded in place to
/// the shared log first ([`upgrade`](super::upgrade)), with the
/// directory locked and its identity checked.
pub fn open_one_group_data_dir_as(
    dir: impl AsRef<Path>,
    options: MultiWalOptions,
    claim: &IdentityClaim,
    group: concord::multi::GroupId,
) -> Result<(DataDir, Arc<IdentityHandle>, UpgradeOutcome), StorageError> {
    let dir = dir.as_ref();
    let lock = identity::lock(dir).map_err(identity_error)?;
    let handle = identity::claim(dir, &lock, claim).map_err(identity_error)?;
    let upgrade = UpgradeOptions {
        accept_data_loss: options.accept_data_loss,
        ..UpgradeOptions::default()
    };
    let outcome = upgrade_single_group(dir, group, &upgrade)?;
    let opened = open_locked(dir, lock, options)?;
    Ok((opened, handle, outcome))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "concord-data-dir-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn every_open_takes_a_new_incarnation_and_damage_is_refused() {
        let dir = scratch("incarnation");
        let first = open_data_dir(&dir, MultiWalOptions::default())
            .unwrap()
            .incarnation;
        for expected in first + 1..=first + 2 {
            let opened = open_data_dir(&dir, MultiWalOptions::default()).unwrap();
            assert_eq!(opened.incarnation, expected);
        }
        let path = dir.join(INCARNATION_FILE_NAME);
        let mut bytes = fs::read(&path).unwrap();
        bytes[14] ^= 1;
        fs::write(&path, &bytes).unwrap();
        let error = open_data_dir(&dir, MultiWalOptions::default()).unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("incarnation counter is unreadable")
                && text.contains("checksum mismatch")
                && text.contains(INCARNATION_FILE_NAME),
            "{text}"
        );
        // Removed by the operator: a log is there, so a random start.
        fs::remove_file(&path).unwrap();
        let opened = open_data_dir(&dir, MultiWalOptions::default()).unwrap();
        assert_ne!(opened.incarnation, first + 3);
        drop(opened);
        let _ = fs::remove_dir_all(&dir);
    }

    /// A node whose disk was replaced starts a new counter above the one
    /// its peers remember of the lost disk, or they would take its frames
    /// for old ones and never notice it restarted.
    #[test]
    fn a_new_directory_counts_above_a_lost_one() {
        let lost = scratch("incarnation-lost");
        let mut remembered = 0;
        for _ in 0..5 {
            remembered = open_data_dir(&lost, MultiWalOptions::default())
                .unwrap()
                .incarnation;
        }
        let _ = fs::remove_dir_all(&lost);
        let replaced = scratch("incarnation-lost");
        let opened = open_data_dir(&replaced, MultiWalOptions::default()).unwrap();
        assert!(
            opened.incarnation > remembered,
            "{} <= {remembered}",
            opened.incarnation
        );
        drop(opened);
        let _ = fs::remove_dir_all(&replaced);
    }

    #[test]
    fn the_layout_is_told_by_the_files() {
        let dir = scratch("layout");
        assert_eq!(layout(&dir), DataDirLayout::Neither);
        assert_eq!(layout(&dir.join("missing")), DataDirLayout::Neither);
        fs::create_dir_all(dir.join("wal")).unwrap();
        assert_eq!(layout(&dir), DataDirLayout::SingleGroup);
        // An upgrade that committed (log/ in place) and left old files.
        drop(open_data_dir(&dir, MultiWalOptions::default()).unwrap());
        assert_eq!(layout(&dir), DataDirLayout::SharedLog);
        fs::remove_dir_all(dir.join("wal")).unwrap();
        assert_eq!(layout(&dir), DataDirLayout::SharedLog);
        assert!(DataDirLayout::SingleGroup.to_string().contains("wal/"));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn incarnation_bytes_round_trip() {
        assert_eq!(decode_incarnation(&encode_incarnation(42)), Ok(42));
        assert!(decode_incarnation(&[0u8; INCARNATION_BYTES]).is_err());
        assert!(decode_incarnation(&encode_incarnation(42)[..20]).is_err());
    }
}
