//! A state machine's keys on disk: one embedded storage engine (redb,
//! chosen by measurement in `docs/storage-engine.md`) behind the few
//! operations a disk-backed state machine needs.
//!
//! * [`DiskEngine::open`] opens (or creates) a directory that belongs to
//!   one cluster, node and group ([`DiskIdentity`]); a directory of
//!   another one is refused before anything in it is read or changed.
//! * [`DiskEngine::apply_batch`] (or [`DiskEngine::transact`], which
//!   reads its own writes) writes a batch of committed commands and the
//!   applied index they bring the state to in one atomic write. The write
//!   is not durable: the log is, and a restart replays the log after
//!   [`DiskEngine::durable_applied_index`]. [`DiskEngine::sync`] makes
//!   every earlier batch durable and says up to which index.
//! * [`DiskEngine::view`] is a point-in-time view: it sees the state at
//!   one applied index however many batches are applied after it was
//!   taken, and iterates its pairs in key order from any key, so a
//!   snapshot stream can be cut and resumed.
//! * [`DiskEngine::restore_begin`] streams sorted pairs into a new state
//!   that replaces the old one atomically at [`DiskRestore::finish`];
//!   until then, after a crash too, the old state is what is there.
//!
//! ## The directory
//!
//! ```text
//! <dir>/state.redb           the state: tables "data" (the pairs) and
//!                            "meta" (identity, applied index)
//! <dir>/state.redb.restore   a restore in progress (deleted on open:
//!                            a restore that did not finish never counts)
//! ```
//!
//! The identity lives in the state file's own meta table, written in the
//! same commit as the empty state it belongs to, so the two are never
//! apart and a restored state carries this node's identity from its
//! first durable commit. The engine locks its file (`flock`): a second
//! process on the same directory gets [`DiskError::InUse`].
//!
//! ## Durability
//!
//! A batch is a redb commit with `Durability::None`: visible at once to
//! reads and views, on disk only after the next [`DiskEngine::sync`] (an
//! `Immediate` commit, with redb's quick-repair so that opening after a
//! crash reads two commit slots instead of walking the whole file). A
//! crash loses the batches after the last sync, and only those: the
//! state opens at the last synced applied index, and the log holds the
//! rest. [`DiskEngine::open`] syncs before it reports, so the index it
//! reports is on disk, not in the page cache only.
//!
//! Applies, syncs, views and reads may come from different threads
//! ([`DiskEngine`] is `Sync`); redb runs one write transaction at a time
//! and views never wait for one.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use concord::multi::GroupId;
use concord::NodeId;
use redb::{
    Database, Durability, ReadOnlyTable, ReadTransaction, ReadableTable, Table, TableDefinition,
    WriteTransaction,
};
use thiserror::Error;

/// File name of the state inside the directory.
pub const STATE_FILE_NAME: &str = "state.redb";

/// File name of a restore in progress inside the directory.
pub const RESTORE_FILE_NAME: &str = "state.redb.restore";

/// Longest cluster id an identity holds (the runtime's own limit).
pub const CLUSTER_ID_BYTES_MAX: usize = 128;

/// Memory redb may use for its page cache unless [`DiskOptions`] says
/// otherwise. redb's own default (1 GiB) would let a server with many
/// groups grow by a gigabyte per group; reads past the cache come from
/// the operating system's page cache, which the kernel bounds.
pub const CACHE_BYTES_DEFAULT: usize = 64 << 20;

/// Bytes of pairs a restore holds in memory before it writes them.
pub const RESTORE_CHUNK_BYTES: usize = 16 << 20;

/// The version of what this module keeps in the meta table.
const FORMAT_VERSION: u64 = 1;

const DATA: TableDefinition<&[u8], &[u8]> = TableDefinition::new("data");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

const META_FORMAT: &str = "format";
const META_CLUSTER: &str = "cluster_id";
const META_NODE: &str = "node_id";
const META_GROUP: &str = "group_id";
const META_APPLIED: &str = "applied_index";

/// Whose a state directory is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskIdentity {
    /// The cluster's name (`--cluster-id`).
    pub cluster_id: String,
    /// The node that owns the directory.
    pub node_id: NodeId,
    /// The Raft group whose state it holds.
    pub group_id: GroupId,
}

/// Settings of [`DiskEngine::open`].
#[derive(Clone, Debug)]
pub struct DiskOptions {
    /// Bytes of redb's page cache (see [`CACHE_BYTES_DEFAULT`]).
    pub cache_bytes: usize,
}

impl Default for DiskOptions {
    fn default() -> Self {
        DiskOptions {
            cache_bytes: CACHE_BYTES_DEFAULT,
        }
    }
}

/// Why an operation on the state directory failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DiskError {
    /// A file system operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// Another process (or another [`DiskEngine`] in this one) has the
    /// state file open.
    #[error(
        "the state file {path} is in use by another process or engine; two writers on one state \
         would overwrite each other. Stop the other one, or give this one its own directory"
    )]
    InUse {
        /// The state file.
        path: PathBuf,
    },
    /// The directory belongs to another cluster.
    #[error(
        "the state directory {dir} belongs to cluster {stored:?}, but was opened for cluster \
         {given:?}; its state is that cluster's. Give the right directory, or move this one away"
    )]
    WrongCluster {
        /// The directory.
        dir: PathBuf,
        /// The cluster its identity names.
        stored: String,
        /// The cluster it was opened for.
        given: String,
    },
    /// The directory belongs to another node.
    #[error(
        "the state directory {dir} belongs to node {stored} of cluster {cluster:?}, but was \
         opened for node {given}; a node must not serve another node's state (its applied index \
         is not this node's log's). Give the right directory"
    )]
    WrongNode {
        /// The directory.
        dir: PathBuf,
        /// The cluster.
        cluster: String,
        /// The node its identity names.
        stored: NodeId,
        /// The node it was opened for.
        given: NodeId,
    },
    /// The directory holds another group's state.
    #[error(
        "the state directory {dir} holds group {stored} of node {node} (cluster {cluster:?}), \
         but was opened for group {given}. Give the right directory"
    )]
    WrongGroup {
        /// The directory.
        dir: PathBuf,
        /// The cluster.
        cluster: String,
        /// The node.
        node: NodeId,
        /// The group its identity names.
        stored: GroupId,
        /// The group it was opened for.
        given: GroupId,
    },
    /// The identity given to [`DiskEngine::open`] cannot be stored.
    #[error("invalid identity: {reason}")]
    BadIdentity {
        /// What is wrong with it.
        reason: String,
    },
    /// The state file is damaged or is not a state file of this module.
    #[error(
        "the state file {path} is damaged or not a concord state file ({detail}); the node \
         cannot trust it. Move it away: the node then starts empty and catches up from a snapshot"
    )]
    Damaged {
        /// The state file.
        path: PathBuf,
        /// What was found.
        detail: String,
    },
    /// A batch's applied index is not past the state's.
    #[error("applied index {given} does not follow the state's applied index {current}")]
    AppliedIndexNotIncreasing {
        /// The state's applied index.
        current: u64,
        /// The batch's.
        given: u64,
    },
    /// A restore was given a key not after the previous one.
    #[error("restore: key {key:02x?} does not follow key {previous:02x?}; a snapshot stream is in key order")]
    RestoreOutOfOrder {
        /// The previous key.
        previous: Vec<u8>,
        /// The key given.
        key: Vec<u8>,
    },
    /// Any other error of the storage engine.
    #[error("storage engine error on {path}: {source}")]
    Engine {
        /// The state file.
        path: PathBuf,
        /// redb's error.
        #[source]
        source: redb::Error,
    },
}

/// One write of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOp<'a> {
    /// Sets `key` to `value`.
    Put {
        /// The key.
        key: &'a [u8],
        /// Its new value.
        value: &'a [u8],
    },
    /// Removes `key` (nothing if absent).
    Delete {
        /// The key.
        key: &'a [u8],
    },
}

/// A state machine's key-value state in one directory (see the
/// [module documentation](self)).
pub struct DiskEngine {
    dir: PathBuf,
    identity: DiskIdentity,
    options: DiskOptions,
    /// Replaced whole by a restore; views keep the one they started on.
    db: RwLock<Arc<Database>>,
    applied: AtomicU64,
    durable: AtomicU64,
}

impl std::fmt::Debug for DiskEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskEngine")
            .field("dir", &self.dir)
            .field("identity", &self.identity)
            .field("applied", &self.applied_index())
            .field("durable", &self.durable_applied_index())
            .finish_non_exhaustive()
    }
}

fn io_error<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> DiskError + 'a {
    move |source| DiskError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// redb's error as ours: the ones a caller acts on get their own variant.
fn engine_error(path: &Path, error: impl Into<redb::Error>) -> DiskError {
    let path = path.to_path_buf();
    match error.into() {
        redb::Error::DatabaseAlreadyOpen => DiskError::InUse { path },
        redb::Error::Corrupted(detail) => DiskError::Damaged { path, detail },
        redb::Error::UpgradeRequired(version) => DiskError::Damaged {
            path,
            detail: format!("file format {version}, which this build cannot read"),
        },
        // redb's word for a file that does not start as a redb file.
        redb::Error::Io(source) if source.kind() == io::ErrorKind::InvalidData => {
            DiskError::Damaged {
                path,
                detail: source.to_string(),
            }
        }
        redb::Error::Io(source) => DiskError::Io {
            action: "reading or writing the state file",
            path,
            source,
        },
        source => DiskError::Engine { path, source },
    }
}

fn u64_of(path: &Path, name: &str, bytes: &[u8]) -> Result<u64, DiskError> {
    let array: [u8; 8] = bytes.try_into().map_err(|_| DiskError::Damaged {
        path: path.to_path_buf(),
        detail: format!("meta entry {name:?} is {} bytes, not 8", bytes.len()),
    })?;
    Ok(u64::from_be_bytes(array))
}

/// Syncs a directory, so that a rename or a new file in it survives a
/// power loss.
fn sync_dir(dir: &Path) -> Result<(), DiskError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error("syncing the directory", dir))
}

/// Writes the identity and the applied index into `tx`'s meta table.
fn write_meta(
    tx: &WriteTransaction,
    path: &Path,
    identity: &DiskIdentity,
    applied: u64,
) -> Result<(), DiskError> {
    let mut meta = tx.open_table(META).map_err(|e| engine_error(path, e))?;
    let entries: [(&str, &[u8]); 5] = [
        (META_FORMAT, &FORMAT_VERSION.to_be_bytes()),
        (META_CLUSTER, identity.cluster_id.as_bytes()),
        (META_NODE, &identity.node_id.to_be_bytes()),
        (META_GROUP, &identity.group_id.to_be_bytes()),
        (META_APPLIED, &applied.to_be_bytes()),
    ];
    for (name, value) in entries {
        meta.insert(name, value)
            .map_err(|e| engine_error(path, e))?;
    }
    Ok(())
}

/// A durable commit: what every sync and the end of a restore use.
fn commit_durable(tx: WriteTransaction, path: &Path) -> Result<(), DiskError> {
    let mut tx = tx;
    tx.set_durability(Durability::Immediate);
    tx.set_quick_repair(true);
    tx.commit().map_err(|e| engine_error(path, e))
}

fn begin_write(db: &Database, path: &Path) -> Result<WriteTransaction, DiskError> {
    db.begin_write().map_err(|e| engine_error(path, e))
}

fn begin_read(db: &Database, path: &Path) -> Result<ReadTransaction, DiskError> {
    db.begin_read().map_err(|e| engine_error(path, e))
}

fn create_database(path: &Path, options: &DiskOptions) -> Result<Database, DiskError> {
    Database::builder()
        // The format redb 3 and later read, so that moving past the redb
        // that builds with Rust 1.85 (2.6) needs no file migration.
        .create_with_file_format_v3(true)
        .set_cache_size(options.cache_bytes)
        .create(path)
        .map_err(|e| engine_error(path, e))
}

/// What the meta table of a state file says, if anything.
struct Meta {
    identity: DiskIdentity,
    applied: u64,
}

fn read_meta(tx: &ReadTransaction, path: &Path) -> Result<Option<Meta>, DiskError> {
    let meta = match tx.open_table(META) {
        Ok(meta) => meta,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(engine_error(path, e)),
    };
    let get = |name: &str| -> Result<Vec<u8>, DiskError> {
        let value = meta.get(name).map_err(|e| engine_error(path, e))?;
        value
            .map(|v| v.value().to_vec())
            .ok_or_else(|| DiskError::Damaged {
                path: path.to_path_buf(),
                detail: format!("meta entry {name:?} is missing"),
            })
    };
    let format = u64_of(path, META_FORMAT, &get(META_FORMAT)?)?;
    if format != FORMAT_VERSION {
        return Err(DiskError::Damaged {
            path: path.to_path_buf(),
            detail: format!("meta format {format}; this build reads {FORMAT_VERSION}"),
        });
    }
    let cluster_id = String::from_utf8(get(META_CLUSTER)?).map_err(|_| DiskError::Damaged {
        path: path.to_path_buf(),
        detail: "the cluster id is not UTF-8".to_string(),
    })?;
    Ok(Some(Meta {
        identity: DiskIdentity {
            cluster_id,
            node_id: u64_of(path, META_NODE, &get(META_NODE)?)?,
            group_id: u64_of(path, META_GROUP, &get(META_GROUP)?)?,
        },
        applied: u64_of(path, META_APPLIED, &get(META_APPLIED)?)?,
    }))
}

fn check_identity(
    dir: &Path,
    stored: &DiskIdentity,
    given: &DiskIdentity,
) -> Result<(), DiskError> {
    if stored.cluster_id != given.cluster_id {
        return Err(DiskError::WrongCluster {
            dir: dir.to_path_buf(),
            stored: stored.cluster_id.clone(),
            given: given.cluster_id.clone(),
        });
    }
    if stored.node_id != given.node_id {
        return Err(DiskError::WrongNode {
            dir: dir.to_path_buf(),
            cluster: given.cluster_id.clone(),
            stored: stored.node_id,
            given: given.node_id,
        });
    }
    if stored.group_id != given.group_id {
        return Err(DiskError::WrongGroup {
            dir: dir.to_path_buf(),
            cluster: given.cluster_id.clone(),
            node: given.node_id,
            stored: stored.group_id,
            given: given.group_id,
        });
    }
    Ok(())
}

impl DiskEngine {
    /// Opens the state in `dir`, creating the directory and an empty
    /// state (applied index 0) owned by `identity` if there is none.
    /// Deletes a restore that did not finish. Refuses a directory of
    /// another cluster, node or group, and a damaged state file.
    pub fn open(
        dir: impl AsRef<Path>,
        identity: DiskIdentity,
        options: DiskOptions,
    ) -> Result<DiskEngine, DiskError> {
        let dir = dir.as_ref().to_path_buf();
        if identity.cluster_id.len() > CLUSTER_ID_BYTES_MAX {
            return Err(DiskError::BadIdentity {
                reason: format!(
                    "cluster id of {} bytes (at most {CLUSTER_ID_BYTES_MAX})",
                    identity.cluster_id.len()
                ),
            });
        }
        fs::create_dir_all(&dir).map_err(io_error("creating the state directory", &dir))?;
        let restore = dir.join(RESTORE_FILE_NAME);
        match fs::remove_file(&restore) {
            Ok(()) => sync_dir(&dir)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error("deleting an unfinished restore", &restore)(e)),
        }
        let path = dir.join(STATE_FILE_NAME);
        let db = create_database(&path, &options)?;
        let stored = read_meta(&begin_read(&db, &path)?, &path)?;
        let applied = match stored {
            Some(meta) => {
                check_identity(&dir, &meta.identity, &identity)?;
                // Make sure what was read is on disk, not only in the page
                // cache of a process that crashed, before calling it durable.
                commit_durable(begin_write(&db, &path)?, &path)?;
                meta.applied
            }
            None => {
                let tx = begin_write(&db, &path)?;
                let has_data = tx
                    .list_tables()
                    .map_err(|e| engine_error(&path, e))?
                    .next()
                    .is_some();
                if has_data {
                    return Err(DiskError::Damaged {
                        path,
                        detail: "tables but no identity".to_string(),
                    });
                }
                tx.open_table(DATA).map_err(|e| engine_error(&path, e))?;
                write_meta(&tx, &path, &identity, 0)?;
                commit_durable(tx, &path)?;
                sync_dir(&dir)?;
                0
            }
        };
        Ok(DiskEngine {
            dir,
            identity,
            options,
            db: RwLock::new(Arc::new(db)),
            applied: AtomicU64::new(applied),
            durable: AtomicU64::new(applied),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whose the state is.
    pub fn identity(&self) -> &DiskIdentity {
        &self.identity
    }

    fn path(&self) -> PathBuf {
        self.dir.join(STATE_FILE_NAME)
    }

    fn database(&self) -> Arc<Database> {
        Arc::clone(&self.db.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// The applied index of the last batch (durable or not).
    pub fn applied_index(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    /// The applied index that is on disk: what the state opens at after a
    /// crash. The log must keep every entry after it.
    pub fn durable_applied_index(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    /// Writes `ops` in order and `applied_index` in one atomic write,
    /// visible at once, durable at the next [`DiskEngine::sync`].
    pub fn apply_batch(&self, ops: &[WriteOp<'_>], applied_index: u64) -> Result<(), DiskError> {
        self.transact(applied_index, |batch| {
            for op in ops {
                match *op {
                    WriteOp::Put { key, value } => batch.put(key, value)?,
                    WriteOp::Delete { key } => {
                        batch.delete(key)?;
                    }
                }
            }
            Ok(())
        })
    }

    /// Runs `f` on a batch that reads its own writes (a compare-and-set
    /// after a put in the same batch sees the put), then writes the batch
    /// and `applied_index` in one atomic write. If `f` fails nothing of the
    /// batch is written.
    pub fn transact<R>(
        &self,
        applied_index: u64,
        f: impl FnOnce(&mut DiskBatch<'_>) -> Result<R, DiskError>,
    ) -> Result<R, DiskError> {
        let path = self.path();
        let db = self.database();
        let mut tx = begin_write(&db, &path)?;
        tx.set_durability(Durability::None);
        let result = {
            let mut meta = tx.open_table(META).map_err(|e| engine_error(&path, e))?;
            let current = match meta.get(META_APPLIED).map_err(|e| engine_error(&path, e))? {
                Some(v) => u64_of(&path, META_APPLIED, v.value())?,
                None => 0,
            };
            if applied_index <= current {
                return Err(DiskError::AppliedIndexNotIncreasing {
                    current,
                    given: applied_index,
                });
            }
            let table = tx.open_table(DATA).map_err(|e| engine_error(&path, e))?;
            let mut batch = DiskBatch { table, path: &path };
            let result = f(&mut batch)?;
            meta.insert(META_APPLIED, &applied_index.to_be_bytes()[..])
                .map_err(|e| engine_error(&path, e))?;
            result
        };
        tx.commit().map_err(|e| engine_error(&path, e))?;
        self.applied.fetch_max(applied_index, Ordering::AcqRel);
        Ok(result)
    }

    /// Makes every batch applied so far durable; returns the durable
    /// applied index.
    pub fn sync(&self) -> Result<u64, DiskError> {
        let path = self.path();
        let db = self.database();
        let tx = begin_write(&db, &path)?;
        // Read inside the write transaction: no batch can commit between
        // this read and the durable commit.
        let applied = {
            let meta = tx.open_table(META).map_err(|e| engine_error(&path, e))?;
            let value = meta.get(META_APPLIED).map_err(|e| engine_error(&path, e))?;
            match value {
                Some(v) => u64_of(&path, META_APPLIED, v.value())?,
                None => 0,
            }
        };
        commit_durable(tx, &path)?;
        self.durable.fetch_max(applied, Ordering::AcqRel);
        Ok(applied)
    }

    /// The value of `key` in the latest state.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, DiskError> {
        self.view()?.get(key)
    }

    /// A point-in-time view of the latest state: later batches and
    /// restores do not change what it sees. A view pins the pages it
    /// sees, so the file grows by what is written while it is open:
    /// drop it when the stream is done.
    pub fn view(&self) -> Result<DiskView, DiskError> {
        let path = self.path();
        let db = self.database();
        let tx = begin_read(&db, &path)?;
        let applied = match read_meta(&tx, &path)? {
            Some(meta) => meta.applied,
            None => {
                return Err(DiskError::Damaged {
                    path,
                    detail: "no meta table".to_string(),
                })
            }
        };
        let table = tx.open_table(DATA).map_err(|e| engine_error(&path, e))?;
        Ok(DiskView {
            applied_index: applied,
            table,
            path,
        })
    }

    /// Starts replacing the whole state by a stream of pairs in key
    /// order. The current state stays as it is, for reads, views and
    /// (pointless) batches, until [`DiskRestore::finish`]; a restore
    /// dropped before it, or cut by a crash, leaves it untouched.
    pub fn restore_begin(&self) -> Result<DiskRestore<'_>, DiskError> {
        let path = self.dir.join(RESTORE_FILE_NAME);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error("deleting an unfinished restore", &path)(e)),
        }
        let db = create_database(&path, &self.options)?;
        Ok(DiskRestore {
            engine: self,
            db: Some(db),
            path,
            pending: Vec::new(),
            pending_bytes: 0,
            last_key: None,
        })
    }
}

impl Drop for DiskEngine {
    fn drop(&mut self) {
        // A clean stop leaves every batch durable, so the next open
        // replays nothing; a failure here is a crash's case, which the
        // log covers.
        if self.applied_index() > self.durable_applied_index() {
            let _ = self.sync();
        }
    }
}

/// A batch being written by [`DiskEngine::transact`].
pub struct DiskBatch<'a> {
    table: Table<'a, &'static [u8], &'static [u8]>,
    path: &'a Path,
}

impl DiskBatch<'_> {
    /// The value of `key`, with this batch's earlier writes.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, DiskError> {
        let value = self
            .table
            .get(key)
            .map_err(|e| engine_error(self.path, e))?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    /// Sets `key` to `value`.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), DiskError> {
        self.table
            .insert(key, value)
            .map_err(|e| engine_error(self.path, e))?;
        Ok(())
    }

    /// Removes `key`; whether it was there.
    pub fn delete(&mut self, key: &[u8]) -> Result<bool, DiskError> {
        let old = self
            .table
            .remove(key)
            .map_err(|e| engine_error(self.path, e))?;
        Ok(old.is_some())
    }
}

/// A point-in-time view of the state (see [`DiskEngine::view`]).
pub struct DiskView {
    applied_index: u64,
    table: ReadOnlyTable<&'static [u8], &'static [u8]>,
    path: PathBuf,
}

impl std::fmt::Debug for DiskView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskView")
            .field("applied_index", &self.applied_index)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl DiskView {
    /// The applied index of the state this view sees.
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// The value of `key` in this view.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, DiskError> {
        let value = self
            .table
            .get(key)
            .map_err(|e| engine_error(&self.path, e))?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    /// The view's pairs in key order, from the first key at or after
    /// `start` (`&[]` for all): a stream cut after key `k` resumes from
    /// the key after `k` (`k` followed by a zero byte).
    pub fn iter_from(&self, start: &[u8]) -> Result<DiskIter, DiskError> {
        let range = self
            .table
            .range::<&[u8]>(start..)
            .map_err(|e| engine_error(&self.path, e))?;
        Ok(DiskIter {
            range,
            path: self.path.clone(),
        })
    }
}

/// The pairs of a [`DiskView`], in key order.
pub struct DiskIter {
    range: redb::Range<'static, &'static [u8], &'static [u8]>,
    path: PathBuf,
}

impl Iterator for DiskIter {
    type Item = Result<(Vec<u8>, Vec<u8>), DiskError>;

    fn next(&mut self) -> Option<Self::Item> {
        let item = self.range.next()?;
        Some(
            item.map(|(k, v)| (k.value().to_vec(), v.value().to_vec()))
                .map_err(|e| engine_error(&self.path, e)),
        )
    }
}

/// A restore in progress (see [`DiskEngine::restore_begin`]): pairs go
/// into a new state file beside the current one, which replaces it by
/// an atomic rename at [`DiskRestore::finish`].
pub struct DiskRestore<'a> {
    engine: &'a DiskEngine,
    db: Option<Database>,
    path: PathBuf,
    pending: Vec<(Vec<u8>, Vec<u8>)>,
    pending_bytes: usize,
    last_key: Option<Vec<u8>>,
}

impl DiskRestore<'_> {
    /// Adds one pair; its key must come after the previous one's.
    pub fn push(&mut self, key: &[u8], value: &[u8]) -> Result<(), DiskError> {
        if let Some(previous) = &self.last_key {
            if key <= previous.as_slice() {
                return Err(DiskError::RestoreOutOfOrder {
                    previous: previous.clone(),
                    key: key.to_vec(),
                });
            }
        }
        self.last_key = Some(key.to_vec());
        self.pending_bytes += key.len() + value.len();
        self.pending.push((key.to_vec(), value.to_vec()));
        if self.pending_bytes >= RESTORE_CHUNK_BYTES {
            self.write_pending(None)?;
        }
        Ok(())
    }

    /// Writes the pending pairs in one transaction; with `applied`, the
    /// meta table too, durably: the restore's last commit.
    fn write_pending(&mut self, applied: Option<u64>) -> Result<(), DiskError> {
        let db = self.db.as_ref().expect("a restore's database until finish");
        let mut tx = begin_write(db, &self.path)?;
        {
            let mut table = tx
                .open_table(DATA)
                .map_err(|e| engine_error(&self.path, e))?;
            for (key, value) in self.pending.drain(..) {
                table
                    .insert(key.as_slice(), value.as_slice())
                    .map_err(|e| engine_error(&self.path, e))?;
            }
        }
        self.pending_bytes = 0;
        match applied {
            Some(applied) => {
                write_meta(&tx, &self.path, &self.engine.identity, applied)?;
                commit_durable(tx, &self.path)
            }
            None => {
                // Nothing of a restore counts before its last commit, so the
                // chunks need not be durable on their own.
                tx.set_durability(Durability::None);
                tx.commit().map_err(|e| engine_error(&self.path, e))
            }
        }
    }

    /// Writes the rest, records `applied_index`, and makes the restored
    /// state the engine's, atomically: a crash before the rename leaves
    /// the old state, after it the new one. Views taken before keep
    /// seeing the old state.
    pub fn finish(mut self, applied_index: u64) -> Result<(), DiskError> {
        self.write_pending(Some(applied_index))?;
        let state = self.engine.path();
        fs::rename(&self.path, &state).map_err(io_error("replacing the state file", &state))?;
        sync_dir(&self.engine.dir)?;
        let db = self.db.take().expect("a restore's database until finish");
        // The open database follows its file through the rename.
        *self.engine.db.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(db);
        self.engine.applied.store(applied_index, Ordering::Release);
        self.engine.durable.store(applied_index, Ordering::Release);
        Ok(())
    }
}

impl Drop for DiskRestore<'_> {
    fn drop(&mut self) {
        // Not finished: the new file is garbage. (An error here leaves the
        // file for the next open to delete.)
        if self.db.take().is_some() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the system's temporary directory, deleted
    /// when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            use std::sync::atomic::AtomicUsize;
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let path = std::env::temp_dir().join(format!(
                "concord-disk-engine-{name}-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&path);
            TempDir(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn identity() -> DiskIdentity {
        DiskIdentity {
            cluster_id: "test-cluster".to_string(),
            node_id: 2,
            group_id: 7,
        }
    }

    fn open(dir: &TempDir) -> DiskEngine {
        DiskEngine::open(&dir.0, identity(), DiskOptions::default()).unwrap()
    }

    fn put<'a>(key: &'a [u8], value: &'a [u8]) -> WriteOp<'a> {
        WriteOp::Put { key, value }
    }

    fn all(view: &DiskView, start: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        view.iter_from(start).unwrap().map(Result::unwrap).collect()
    }

    #[test]
    fn a_new_directory_opens_empty_at_index_zero() {
        let dir = TempDir::new("new");
        let engine = open(&dir);
        assert_eq!(engine.applied_index(), 0);
        assert_eq!(engine.durable_applied_index(), 0);
        assert_eq!(engine.get(b"k").unwrap(), None);
        assert!(dir.0.join(STATE_FILE_NAME).exists());
    }

    #[test]
    fn reopen_shows_the_last_batch_and_its_applied_index() {
        let dir = TempDir::new("reopen");
        {
            let engine = open(&dir);
            engine
                .apply_batch(&[put(b"a", b"1"), put(b"b", b"2")], 5)
                .unwrap();
            engine
                .apply_batch(&[put(b"a", b"3"), WriteOp::Delete { key: b"b" }], 6)
                .unwrap();
            assert_eq!(engine.sync().unwrap(), 6);
            assert_eq!(engine.durable_applied_index(), 6);
        }
        let engine = open(&dir);
        assert_eq!(engine.applied_index(), 6);
        assert_eq!(engine.durable_applied_index(), 6);
        assert_eq!(engine.get(b"a").unwrap(), Some(b"3".to_vec()));
        assert_eq!(engine.get(b"b").unwrap(), None);
    }

    #[test]
    fn a_clean_drop_makes_the_last_batch_durable() {
        let dir = TempDir::new("drop");
        {
            let engine = open(&dir);
            engine.apply_batch(&[put(b"a", b"1")], 1).unwrap();
            engine.apply_batch(&[put(b"b", b"2")], 2).unwrap();
            assert_eq!(engine.durable_applied_index(), 0);
        }
        let engine = open(&dir);
        assert_eq!(engine.applied_index(), 2);
        assert_eq!(engine.durable_applied_index(), 2);
        assert_eq!(engine.get(b"b").unwrap(), Some(b"2".to_vec()));
    }

    const CRASH_DIR_VAR: &str = "CONCORD_DISK_ENGINE_CRASH_DIR";

    /// Run by [`a_crash_opens_at_a_state_that_matches_its_applied_index`]
    /// in a child process: syncs at index 3, applies 4 and 5, and dies by
    /// SIGKILL.
    #[test]
    #[ignore = "the child of a_crash_opens_at_a_state_that_matches_its_applied_index"]
    fn crash_child() {
        let Some(dir) = std::env::var_os(CRASH_DIR_VAR) else {
            return;
        };
        let engine = DiskEngine::open(&dir, identity(), DiskOptions::default()).unwrap();
        for index in 1..=5u64 {
            let key = index.to_be_bytes();
            engine
                .apply_batch(&[put(&key, &[index as u8; 3000])], index)
                .unwrap();
            if index == 3 {
                engine.sync().unwrap();
            }
        }
        let pid = std::process::id().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid])
            .status();
        unreachable!("alive after SIGKILL");
    }

    #[test]
    fn a_crash_opens_at_a_state_that_matches_its_applied_index() {
        let dir = TempDir::new("kill");
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "disk_engine::tests::crash_child",
                "--exact",
                "--ignored",
                "--nocapture",
            ])
            .env(CRASH_DIR_VAR, &dir.0)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(!status.success(), "the child was to die by SIGKILL");
        let engine = open(&dir);
        let applied = engine.applied_index();
        assert!(
            (3..=5).contains(&applied),
            "applied index {applied} after sync at 3"
        );
        for index in 1..=5u64 {
            let value = engine.get(&index.to_be_bytes()).unwrap();
            let expected = (index <= applied).then(|| vec![index as u8; 3000]);
            assert_eq!(value, expected, "key {index} at applied index {applied}");
        }
    }

    #[test]
    fn a_batch_is_not_durable_until_sync() {
        let dir = TempDir::new("durable");
        let engine = open(&dir);
        engine.apply_batch(&[put(b"a", b"1")], 1).unwrap();
        assert_eq!(engine.sync().unwrap(), 1);
        engine.apply_batch(&[put(b"a", b"2")], 2).unwrap();
        assert_eq!(engine.applied_index(), 2);
        assert_eq!(engine.durable_applied_index(), 1);
        assert_eq!(engine.get(b"a").unwrap(), Some(b"2".to_vec()));
        assert_eq!(engine.sync().unwrap(), 2);
        assert_eq!(engine.durable_applied_index(), 2);
    }

    #[test]
    fn an_applied_index_that_does_not_increase_is_refused_and_writes_nothing() {
        let dir = TempDir::new("index");
        let engine = open(&dir);
        engine.apply_batch(&[put(b"a", b"1")], 4).unwrap();
        let err = engine.apply_batch(&[put(b"a", b"2")], 4).unwrap_err();
        assert!(
            matches!(
                err,
                DiskError::AppliedIndexNotIncreasing {
                    current: 4,
                    given: 4
                }
            ),
            "{err}"
        );
        assert_eq!(engine.get(b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(engine.applied_index(), 4);
    }

    #[test]
    fn a_batch_reads_its_own_writes_and_a_failed_one_writes_nothing() {
        let dir = TempDir::new("transact");
        let engine = open(&dir);
        let seen = engine
            .transact(1, |batch| {
                batch.put(b"k", b"v1")?;
                batch.get(b"k")
            })
            .unwrap();
        assert_eq!(seen, Some(b"v1".to_vec()));
        let err = engine
            .transact(2, |batch| {
                batch.put(b"k", b"v2")?;
                Err::<(), _>(DiskError::BadIdentity {
                    reason: "planted".to_string(),
                })
            })
            .unwrap_err();
        assert!(matches!(err, DiskError::BadIdentity { .. }));
        assert_eq!(engine.get(b"k").unwrap(), Some(b"v1".to_vec()));
        assert_eq!(engine.applied_index(), 1);
        assert_eq!(engine.view().unwrap().applied_index(), 1);
    }

    #[test]
    fn a_view_does_not_see_batches_applied_after_it() {
        let dir = TempDir::new("view");
        let engine = open(&dir);
        engine
            .apply_batch(&[put(b"a", b"1"), put(b"c", b"3")], 10)
            .unwrap();
        let view = engine.view().unwrap();
        engine
            .apply_batch(
                &[
                    put(b"a", b"changed"),
                    put(b"b", b"2"),
                    WriteOp::Delete { key: b"c" },
                ],
                11,
            )
            .unwrap();
        engine.sync().unwrap();
        assert_eq!(view.applied_index(), 10);
        assert_eq!(
            all(&view, b""),
            vec![
                (b"a".to_vec(), b"1".to_vec()),
                (b"c".to_vec(), b"3".to_vec())
            ]
        );
        assert_eq!(view.get(b"b").unwrap(), None);
        let now = engine.view().unwrap();
        assert_eq!(now.applied_index(), 11);
        assert_eq!(
            all(&now, b""),
            vec![
                (b"a".to_vec(), b"changed".to_vec()),
                (b"b".to_vec(), b"2".to_vec())
            ]
        );
    }

    #[test]
    fn a_view_iterates_in_key_order_and_resumes_from_a_key() {
        let dir = TempDir::new("resume");
        let engine = open(&dir);
        let keys: Vec<Vec<u8>> = [b"m".as_slice(), b"a", b"z", b"ab", b"b"]
            .iter()
            .map(|k| k.to_vec())
            .collect();
        let ops: Vec<WriteOp<'_>> = keys.iter().map(|k| put(k, b"v")).collect();
        engine.apply_batch(&ops, 1).unwrap();
        let view = engine.view().unwrap();
        let order: Vec<Vec<u8>> = all(&view, b"").into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            order,
            vec![
                b"a".to_vec(),
                b"ab".to_vec(),
                b"b".to_vec(),
                b"m".to_vec(),
                b"z".to_vec()
            ]
        );
        // Cut after "ab": resume just past it.
        let rest: Vec<Vec<u8>> = all(&view, b"ab\0").into_iter().map(|(k, _)| k).collect();
        assert_eq!(rest, vec![b"b".to_vec(), b"m".to_vec(), b"z".to_vec()]);
    }

    #[test]
    fn a_view_can_be_read_from_another_thread_while_applies_go_on() {
        let dir = TempDir::new("thread");
        let engine = open(&dir);
        let ops: Vec<(Vec<u8>, Vec<u8>)> = (0u32..500)
            .map(|i| (i.to_be_bytes().to_vec(), b"old".to_vec()))
            .collect();
        let batch: Vec<WriteOp<'_>> = ops.iter().map(|(k, v)| put(k, v)).collect();
        engine.apply_batch(&batch, 1).unwrap();
        let view = engine.view().unwrap();
        let reader = std::thread::spawn(move || {
            view.iter_from(b"")
                .unwrap()
                .map(|item| item.unwrap())
                .filter(|(_, v)| v == b"old")
                .count()
        });
        for index in 2..50u64 {
            let key = (index as u32).to_be_bytes();
            engine.apply_batch(&[put(&key, b"new")], index).unwrap();
        }
        assert_eq!(reader.join().unwrap(), 500);
    }

    #[test]
    fn a_restore_replaces_the_state_and_survives_reopen() {
        let dir = TempDir::new("restore");
        {
            let engine = open(&dir);
            engine
                .apply_batch(&[put(b"old", b"x"), put(b"k1", b"old")], 3)
                .unwrap();
            let before = engine.view().unwrap();
            let mut restore = engine.restore_begin().unwrap();
            for i in 0u32..2000 {
                restore.push(&i.to_be_bytes(), &[i as u8; 100]).unwrap();
            }
            restore.push(b"k1", b"new").unwrap();
            restore.finish(900).unwrap();
            assert_eq!(engine.applied_index(), 900);
            assert_eq!(engine.durable_applied_index(), 900);
            assert_eq!(engine.get(b"old").unwrap(), None);
            assert_eq!(engine.get(b"k1").unwrap(), Some(b"new".to_vec()));
            // A view from before still sees the old state.
            assert_eq!(before.applied_index(), 3);
            assert_eq!(before.get(b"old").unwrap(), Some(b"x".to_vec()));
            // And applies go on on the new one.
            engine.apply_batch(&[put(b"after", b"1")], 901).unwrap();
            engine.sync().unwrap();
        }
        assert!(!dir.0.join(RESTORE_FILE_NAME).exists());
        let engine = open(&dir);
        assert_eq!(engine.applied_index(), 901);
        assert_eq!(engine.get(b"after").unwrap(), Some(b"1".to_vec()));
        assert_eq!(
            engine.get(&1999u32.to_be_bytes()).unwrap(),
            Some(vec![1999u32 as u8; 100])
        );
        assert_eq!(all(&engine.view().unwrap(), b"").len(), 2002);
    }

    #[test]
    fn a_restore_dropped_before_finish_leaves_the_old_state() {
        let dir = TempDir::new("dropped");
        let engine = open(&dir);
        engine.apply_batch(&[put(b"keep", b"me")], 8).unwrap();
        {
            let mut restore = engine.restore_begin().unwrap();
            restore.push(b"a", b"1").unwrap();
            assert!(dir.0.join(RESTORE_FILE_NAME).exists());
        }
        assert!(!dir.0.join(RESTORE_FILE_NAME).exists());
        assert_eq!(engine.applied_index(), 8);
        assert_eq!(engine.get(b"keep").unwrap(), Some(b"me".to_vec()));
        assert_eq!(engine.get(b"a").unwrap(), None);
    }

    #[test]
    fn a_restore_cut_by_a_crash_leaves_the_old_state_on_reopen() {
        let dir = TempDir::new("crash");
        {
            let engine = open(&dir);
            engine.apply_batch(&[put(b"keep", b"me")], 8).unwrap();
            engine.sync().unwrap();
            let mut restore = engine.restore_begin().unwrap();
            for i in 0u32..20_000 {
                // More than one chunk, so some of it reached the file.
                restore.push(&i.to_be_bytes(), &[7; 1000]).unwrap();
            }
            // A crash runs no destructor.
            std::mem::forget(restore);
        }
        assert!(dir.0.join(RESTORE_FILE_NAME).exists());
        let engine = open(&dir);
        assert!(!dir.0.join(RESTORE_FILE_NAME).exists());
        assert_eq!(engine.applied_index(), 8);
        assert_eq!(engine.get(b"keep").unwrap(), Some(b"me".to_vec()));
        assert_eq!(engine.get(&0u32.to_be_bytes()).unwrap(), None);
    }

    #[test]
    fn a_restore_refuses_keys_out_of_order() {
        let dir = TempDir::new("order");
        let engine = open(&dir);
        let mut restore = engine.restore_begin().unwrap();
        restore.push(b"b", b"1").unwrap();
        let err = restore.push(b"a", b"2").unwrap_err();
        assert!(matches!(err, DiskError::RestoreOutOfOrder { .. }), "{err}");
        let err = restore.push(b"b", b"2").unwrap_err();
        assert!(matches!(err, DiskError::RestoreOutOfOrder { .. }), "{err}");
    }

    #[test]
    fn another_cluster_node_or_group_is_refused() {
        let dir = TempDir::new("identity");
        {
            let engine = open(&dir);
            engine.apply_batch(&[put(b"a", b"1")], 1).unwrap();
        }
        let cases = [
            DiskIdentity {
                cluster_id: "other".to_string(),
                ..identity()
            },
            DiskIdentity {
                node_id: 3,
                ..identity()
            },
            DiskIdentity {
                group_id: 8,
                ..identity()
            },
        ];
        for (n, given) in cases.into_iter().enumerate() {
            let err = DiskEngine::open(&dir.0, given, DiskOptions::default()).unwrap_err();
            let right = match n {
                0 => matches!(err, DiskError::WrongCluster { .. }),
                1 => matches!(
                    err,
                    DiskError::WrongNode {
                        stored: 2,
                        given: 3,
                        ..
                    }
                ),
                _ => matches!(
                    err,
                    DiskError::WrongGroup {
                        stored: 7,
                        given: 8,
                        ..
                    }
                ),
            };
            assert!(right, "case {n}: {err}");
        }
        // The refusals changed nothing.
        let engine = open(&dir);
        assert_eq!(engine.get(b"a").unwrap(), Some(b"1".to_vec()));
    }

    #[test]
    fn a_second_engine_on_the_same_directory_is_refused() {
        let dir = TempDir::new("lock");
        let _engine = open(&dir);
        let err = DiskEngine::open(&dir.0, identity(), DiskOptions::default()).unwrap_err();
        assert!(matches!(err, DiskError::InUse { .. }), "{err}");
    }

    #[test]
    fn a_file_that_is_not_a_state_file_is_refused() {
        let dir = TempDir::new("garbage");
        fs::create_dir_all(&dir.0).unwrap();
        fs::write(dir.0.join(STATE_FILE_NAME), vec![0x5a; 64 * 1024]).unwrap();
        let err = DiskEngine::open(&dir.0, identity(), DiskOptions::default()).unwrap_err();
        assert!(matches!(err, DiskError::Damaged { .. }), "{err}");
    }

    #[test]
    fn a_state_file_with_a_damaged_header_is_refused() {
        use std::io::{Seek, SeekFrom, Write};
        let dir = TempDir::new("damaged");
        {
            let engine = open(&dir);
            engine.apply_batch(&[put(b"a", b"1")], 1).unwrap();
            engine.sync().unwrap();
        }
        let mut file = fs::OpenOptions::new()
            .write(true)
            .open(dir.0.join(STATE_FILE_NAME))
            .unwrap();
        file.seek(SeekFrom::Start(0)).unwrap();
        file.write_all(&[0xff; 512]).unwrap();
        drop(file);
        let err = DiskEngine::open(&dir.0, identity(), DiskOptions::default()).unwrap_err();
        assert!(matches!(err, DiskError::Damaged { .. }), "{err}");
    }

    #[test]
    fn a_cluster_id_too_long_is_refused() {
        let dir = TempDir::new("long");
        let given = DiskIdentity {
            cluster_id: "c".repeat(CLUSTER_ID_BYTES_MAX + 1),
            ..identity()
        };
        let err = DiskEngine::open(&dir.0, given, DiskOptions::default()).unwrap_err();
        assert!(matches!(err, DiskError::BadIdentity { .. }), "{err}");
        assert!(!dir.0.exists());
    }

    #[test]
    fn views_and_the_engine_cross_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<DiskEngine>();
        fn send<T: Send>() {}
        send::<DiskView>();
        send::<DiskIter>();
    }
}
