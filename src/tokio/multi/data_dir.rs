//! A multi-group node's data directory: locked, its identity checked,
//! its shared log and snapshots recovered, in one call. What a server
//! binary calls at start:
//!
//! ```text
//! <dir>/identity, <dir>/lock                             as a single-group server's
//! <dir>/log/<number:020>.seg                             the shared log
//! <dir>/groups/<group:020>/snapshot-<index>-<term>.snap  each group's snapshots
//! ```

use std::path::Path;
use std::sync::Arc;

use crate::tokio::identity::{self, IdentityClaim, IdentityError, IdentityHandle};
use crate::tokio::storage::StorageError;

use super::replay::MultiRecovery;
use super::segment_files::DirSegments;
use super::shared_log::{MultiWalOptions, SharedLog};
use super::snapshot_store::DirSnapshots;

/// The shared log of a data directory on real files.
pub type DirLog = SharedLog<DirSegments, DirSnapshots>;

/// An identity refusal as a storage error (an I/O error stays one).
fn identity_error(error: IdentityError) -> StorageError {
    match error {
        IdentityError::Storage(error) => error,
        other => StorageError::Identity(Box::new(other)),
    }
}

/// Locks `dir` (refusing if another process, or another log in this one,
/// holds it) and recovers its shared log. The lock is held by the log's
/// segments, so for as long as the log is written.
pub fn open_data_dir(
    dir: impl AsRef<Path>,
    options: MultiWalOptions,
) -> Result<(DirLog, MultiRecovery), StorageError> {
    let dir = dir.as_ref();
    let lock = identity::lock(dir).map_err(identity_error)?;
    let segments = DirSegments::new(dir.join("log"))?.holding(lock);
    let snapshots = DirSnapshots::new(dir.join("groups"))?;
    SharedLog::open(segments, snapshots, options)
}

/// [`open_data_dir`] for the server `claim` names: the directory's
/// identity is checked against the claim (or recorded, on a first start)
/// before anything in it is read or changed. Returns the handle the
/// transport checks peers' incarnations with.
pub fn open_data_dir_as(
    dir: impl AsRef<Path>,
    options: MultiWalOptions,
    claim: &IdentityClaim,
) -> Result<(DirLog, MultiRecovery, Arc<IdentityHandle>), StorageError> {
    let dir = dir.as_ref();
    let lock = identity::lock(dir).map_err(identity_error)?;
    let handle = identity::claim(dir, &lock, claim).map_err(identity_error)?;
    let segments = DirSegments::new(dir.join("log"))?.holding(lock);
    let snapshots = DirSnapshots::new(dir.join("groups"))?;
    let (log, recovery) = SharedLog::open(segments, snapshots, options)?;
    Ok((log, recovery, handle))
}
