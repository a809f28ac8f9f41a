//! Whose a data directory is: the identity file written on a node's first
//! start, checked on every later one, and the lock that keeps a second
//! process off a directory in use.
//!
//! ## The identity file
//!
//! `<dir>/identity`, replaced atomically (temporary file, fsync, rename,
//! directory fsync):
//!
//! ```text
//! [magic "CNCDIDNT": 8][version = 1: u32][checksum: u32][payload]
//! ```
//!
//! with `checksum = crc32c(payload) ^ CHECKSUM_SALT` and the payload a
//! bincode [`DataDirIdentity`]: the cluster's name, this node's id, the
//! cluster's [`Incarnation`] (once known) and the write-ahead log's format
//! version ([`wal::FORMAT_VERSION`]) when it was written. A directory
//! whose identity names another cluster or another node, or a newer
//! format, is refused ([`IdentityError`]) before recovery reads or
//! changes anything in it.
//!
//! ## The incarnation
//!
//! Two clusters may share a name (a cluster torn down and created again,
//! a test cluster and a production one): the incarnation, 128 random
//! bits, tells them apart. It is generated once, when a cluster is born,
//! by the server that bootstraps it: the one with the lowest id in
//! `--peers`, on its first start with an empty data directory (not
//! `--join`). Every other server starts without one and adopts the first
//! one a peer shows it in the handshake (see [`IdentityHandle::meet`]),
//! storing it before it accepts the connection; from then on a peer of
//! another incarnation is refused in both directions, naming both. A node
//! that joins a running cluster adopts the incarnation the same way.
//!
//! A data directory written before identity files existed (no `identity`,
//! but a log, a hard state or a snapshot) is upgraded in place: it is
//! taken to be what the flags say, and the identity is written (the
//! bootstrap server generates the incarnation then, the others adopt it).
//! Nothing else in the directory changes.
//!
//! ## The lock
//!
//! `<dir>/lock` holds an exclusive `flock(2)` for as long as the process
//! uses the directory, and the holder's pid (for the message of a refused
//! second process). The kernel releases the lock when the process dies,
//! however it dies (SIGKILL included), so a lock file left behind by a
//! crash never blocks the next start: the file's presence means nothing,
//! only a live holder does. `flock` is reliable on local filesystems; on
//! NFS it may not exclude a process on another machine.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use concord::NodeId;

use super::codec;
use super::storage::StorageError;
use super::wal::{self, CHECKSUM_SALT};

/// File name of the identity inside a data directory.
pub const IDENTITY_FILE_NAME: &str = "identity";

/// File name of the lock inside a data directory.
pub const LOCK_FILE_NAME: &str = "lock";

/// First bytes of the identity file.
pub const IDENTITY_MAGIC: [u8; 8] = *b"CNCDIDNT";

/// Version of the identity file's layout.
pub const IDENTITY_VERSION: u32 = 1;

/// Bytes before the identity file's payload: magic, version, checksum.
const IDENTITY_HEADER_BYTES: usize = 16;

/// Largest identity payload read back (a cluster name is at most 128
/// bytes).
const IDENTITY_PAYLOAD_BYTES_MAX: usize = 4096;

/// One incarnation of a cluster: 128 random bits drawn when the cluster is
/// born (see the [module documentation](self)).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Incarnation(pub [u8; 16]);

impl Incarnation {
    /// A fresh incarnation from the operating system's random source
    /// (falling back on the clock, the pid and std's random hash keys if
    /// `/dev/urandom` cannot be read).
    pub fn generate() -> Incarnation {
        let mut bytes = [0u8; 16];
        if File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .is_ok()
        {
            return Incarnation(bytes);
        }
        use std::hash::{BuildHasher, Hasher};
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        for (i, half) in bytes.chunks_mut(8).enumerate() {
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_u128(nanos);
            hasher.write_u32(std::process::id());
            hasher.write_usize(i);
            half.copy_from_slice(&hasher.finish().to_le_bytes());
        }
        Incarnation(bytes)
    }
}

impl std::fmt::Display for Incarnation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for Incarnation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Incarnation({self})")
    }
}

/// What a data directory records about whose it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataDirIdentity {
    /// The cluster's name (`--cluster-id`).
    pub cluster_id: String,
    /// The node the directory belongs to (`--id`).
    pub node_id: NodeId,
    /// The cluster's incarnation; `None` until this node learned it.
    pub incarnation: Option<Incarnation>,
    /// The write-ahead log's format version when the identity was written.
    pub storage_format: u32,
}

/// Who a starting server says it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityClaim {
    /// `--cluster-id`.
    pub cluster_id: String,
    /// `--id`.
    pub node_id: NodeId,
    /// Whether this server bootstraps a new cluster (the lowest id of
    /// `--peers`, not `--join`): it generates the incarnation when its
    /// directory has none.
    pub bootstrap: bool,
}

/// Why a data directory was refused.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// Another process holds the directory's lock.
    #[error(
        "the data directory {dir} is in use by another process ({holder}); two servers on one \
         directory would each acknowledge writes the other overwrites. Stop that process, or \
         give this one its own --data-dir. (A lock left by a process that died is released by \
         the kernel: if no such process runs, the directory is free.)"
    )]
    Locked {
        /// The data directory.
        dir: PathBuf,
        /// What the lock file says about its holder.
        holder: String,
    },
    /// The directory belongs to another cluster.
    #[error(
        "the data directory {dir} belongs to cluster {stored:?}, but this server was started \
         for cluster {given:?} (--cluster-id); its log is that cluster's and must not be mixed \
         into this one. Give the right --data-dir or --cluster-id; to reuse the directory for \
         cluster {given:?}, move it away or delete it (the node then starts empty)"
    )]
    WrongCluster {
        /// The data directory.
        dir: PathBuf,
        /// The cluster its identity names.
        stored: String,
        /// The cluster the flags name.
        given: String,
    },
    /// The directory belongs to another node.
    #[error(
        "the data directory {dir} belongs to node {stored} of cluster {cluster:?}, but this \
         server was started as node {given} (--id); running node {given} on node {stored}'s \
         log and votes breaks Raft's safety. Give the right --data-dir or --id"
    )]
    WrongNode {
        /// The data directory.
        dir: PathBuf,
        /// The cluster.
        cluster: String,
        /// The node its identity names.
        stored: NodeId,
        /// The node the flags name.
        given: NodeId,
    },
    /// The directory was written by a newer build.
    #[error(
        "the data directory {dir} holds write-ahead log format {stored}, newer than the {supported} \
         this build reads; run the newer concord-node on it"
    )]
    NewerFormat {
        /// The data directory.
        dir: PathBuf,
        /// The format its identity names.
        stored: u32,
        /// The format this build reads and writes.
        supported: u32,
    },
    /// The identity file is damaged.
    #[error(
        "the identity file {file} is damaged ({reason}); it names the cluster and node the data \
         directory belongs to. Restore it from a backup of the directory, or, if you know whose \
         the directory is, delete the file: the next start records the flags' cluster and node"
    )]
    Corrupt {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An I/O error.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl IdentityError {
    /// Whether this is a refusal of a directory that is another's (the
    /// wrong cluster or node, a newer format, a damaged identity), as
    /// opposed to one in use ([`IdentityError::Locked`]) or an I/O error.
    pub fn is_foreign(&self) -> bool {
        matches!(
            self,
            IdentityError::WrongCluster { .. }
                | IdentityError::WrongNode { .. }
                | IdentityError::NewerFormat { .. }
                | IdentityError::Corrupt { .. }
        )
    }
}

/// The exclusive lock on a data directory, held until dropped.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

/// Takes the exclusive lock on `dir` (created if missing), writing this
/// process's pid into the lock file; refuses with
/// [`IdentityError::Locked`] if another process holds it.
pub fn lock(dir: &Path) -> Result<DataDirLock, IdentityError> {
    fs::create_dir_all(dir).map_err(wal::io_err(format!("creating {}", dir.display())))?;
    let path = dir.join(LOCK_FILE_NAME);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(wal::io_err(format!("opening {}", path.display())))?;
    if let Err(errno) =
        rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive)
    {
        if errno == rustix::io::Errno::WOULDBLOCK {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            let holder = match text.trim() {
                "" => "its pid is not recorded".to_string(),
                pid => format!("pid {pid}"),
            };
            return Err(IdentityError::Locked {
                dir: dir.to_path_buf(),
                holder,
            });
        }
        let error = std::io::Error::from(errno);
        return Err(wal::io_err(format!("locking {}", path.display()))(error).into());
    }
    let pid = format!("{}\n", std::process::id());
    file.set_len(0)
        .and_then(|()| file.seek(SeekFrom::Start(0)))
        .and_then(|_| file.write_all(pid.as_bytes()))
        .map_err(wal::io_err(format!("writing {}", path.display())))?;
    Ok(DataDirLock { _file: file })
}

/// Encodes `identity` as the identity file's bytes.
pub fn encode(identity: &DataDirIdentity) -> Result<Vec<u8>, StorageError> {
    let payload = codec::encode(identity).map_err(|e| StorageError::Misuse(e.to_string()))?;
    let mut bytes = Vec::with_capacity(IDENTITY_HEADER_BYTES + payload.len());
    bytes.extend_from_slice(&IDENTITY_MAGIC);
    bytes.extend_from_slice(&IDENTITY_VERSION.to_le_bytes());
    bytes.extend_from_slice(&(crc32c::crc32c(&payload) ^ CHECKSUM_SALT).to_le_bytes());
    bytes.extend_from_slice(&payload);
    Ok(bytes)
}

/// Decodes the identity file's bytes, saying what is wrong if they are
/// not one.
pub fn decode(bytes: &[u8]) -> Result<DataDirIdentity, String> {
    if bytes.len() < IDENTITY_HEADER_BYTES {
        return Err(format!("{} bytes, shorter than its header", bytes.len()));
    }
    if bytes[..8] != IDENTITY_MAGIC {
        return Err("bad magic".to_string());
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if version != IDENTITY_VERSION {
        return Err(format!(
            "layout version {version}, this build reads {IDENTITY_VERSION}"
        ));
    }
    let checksum = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
    let payload = &bytes[IDENTITY_HEADER_BYTES..];
    if crc32c::crc32c(payload) ^ CHECKSUM_SALT != checksum {
        return Err("checksum mismatch".to_string());
    }
    codec::decode(payload, IDENTITY_PAYLOAD_BYTES_MAX).map_err(|e| e.to_string())
}

/// Reads `dir`'s identity: `None` when it has no identity file.
pub fn read(dir: &Path) -> Result<Option<DataDirIdentity>, IdentityError> {
    let path = dir.join(IDENTITY_FILE_NAME);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(wal::io_err(format!("reading {}", path.display()))(e).into()),
    };
    decode(&bytes)
        .map(Some)
        .map_err(|reason| IdentityError::Corrupt { file: path, reason })
}

/// Writes `dir`'s identity atomically and durably.
pub fn write(dir: &Path, identity: &DataDirIdentity) -> Result<(), StorageError> {
    let bytes = encode(identity)?;
    wal::write_file_atomically(dir, IDENTITY_FILE_NAME, &[&bytes]).map(|_| ())
}

/// Whether `dir` holds state of an earlier start (a hard state, a log
/// segment or a snapshot).
fn holds_state(dir: &Path) -> bool {
    let nonempty = |sub: &str| {
        fs::read_dir(dir.join(sub)).is_ok_and(|mut entries| {
            entries.any(|e| {
                e.is_ok_and(|e| {
                    let name = e.file_name();
                    let name = name.to_string_lossy();
                    name.ends_with(".seg") || name.ends_with(".snap")
                })
            })
        })
    };
    dir.join("hardstate").exists() || nonempty("wal") || nonempty("snapshots")
}

/// Checks `dir` (whose lock the caller holds) against `claim`, or records
/// `claim` as its identity if it has none yet; returns the handle the
/// transport uses to check and adopt incarnations.
pub fn claim(
    dir: &Path,
    _lock: &DataDirLock,
    claim: &IdentityClaim,
) -> Result<Arc<IdentityHandle>, IdentityError> {
    let identity = match read(dir)? {
        Some(stored) => {
            if stored.storage_format > wal::FORMAT_VERSION {
                return Err(IdentityError::NewerFormat {
                    dir: dir.to_path_buf(),
                    stored: stored.storage_format,
                    supported: wal::FORMAT_VERSION,
                });
            }
            if stored.cluster_id != claim.cluster_id {
                return Err(IdentityError::WrongCluster {
                    dir: dir.to_path_buf(),
                    stored: stored.cluster_id,
                    given: claim.cluster_id.clone(),
                });
            }
            if stored.node_id != claim.node_id {
                return Err(IdentityError::WrongNode {
                    dir: dir.to_path_buf(),
                    cluster: stored.cluster_id,
                    stored: stored.node_id,
                    given: claim.node_id,
                });
            }
            if stored.incarnation.is_none() && claim.bootstrap && !holds_state(dir) {
                // Recorded by an earlier start that stopped before the
                // bootstrap server generated it: still a new cluster.
                let identity = DataDirIdentity {
                    incarnation: Some(Incarnation::generate()),
                    ..stored
                };
                write(dir, &identity)?;
                identity
            } else {
                stored
            }
        }
        None => {
            let upgrading = holds_state(dir);
            let identity = DataDirIdentity {
                cluster_id: claim.cluster_id.clone(),
                node_id: claim.node_id,
                incarnation: claim.bootstrap.then(Incarnation::generate),
                storage_format: wal::FORMAT_VERSION,
            };
            write(dir, &identity)?;
            if upgrading {
                tracing::warn!(
                    dir = %dir.display(),
                    cluster = %identity.cluster_id,
                    node = identity.node_id,
                    "the data directory was written before data directories recorded whose they \
                     are; recorded it as the flags say (check that --data-dir, --id and \
                     --cluster-id are right: from now on a mismatch is refused)"
                );
            }
            identity
        }
    };
    match identity.incarnation {
        Some(incarnation) => {
            tracing::info!(cluster = %identity.cluster_id, node = identity.node_id, %incarnation, "data directory identity")
        }
        None => {
            tracing::info!(cluster = %identity.cluster_id, node = identity.node_id, "data directory identity; the cluster's incarnation is learned from the first peer that knows it")
        }
    }
    Ok(Arc::new(IdentityHandle {
        dir: dir.to_path_buf(),
        identity: Mutex::new(identity),
    }))
}

/// A node's identity while it runs: the transport asks it whether a peer
/// is of our cluster's incarnation, and it adopts (and stores) the first
/// incarnation a peer shows while ours is unknown.
#[derive(Debug)]
pub struct IdentityHandle {
    dir: PathBuf,
    identity: Mutex<DataDirIdentity>,
}

impl IdentityHandle {
    /// A handle that is not backed by a data directory (tests): it adopts
    /// incarnations in memory only.
    pub fn in_memory(identity: DataDirIdentity) -> Arc<IdentityHandle> {
        Arc::new(IdentityHandle {
            dir: PathBuf::new(),
            identity: Mutex::new(identity),
        })
    }

    /// The identity as it stands.
    pub fn identity(&self) -> DataDirIdentity {
        self.identity
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Our cluster's incarnation, if known yet.
    pub fn incarnation(&self) -> Option<Incarnation> {
        self.identity().incarnation
    }

    /// A handshake with `peer`, which says its cluster's incarnation is
    /// `theirs`: `Ok` when either side does not know one yet or they are
    /// equal (adopting theirs, durably, if ours was unknown); otherwise
    /// the reason to refuse the connection, naming both. The adoption's
    /// write (an fsync or two) happens once in a node's life.
    pub fn meet(&self, peer: NodeId, theirs: Option<Incarnation>) -> Result<(), String> {
        let mut identity = self
            .identity
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match (identity.incarnation, theirs) {
            (_, None) => Ok(()),
            (Some(ours), Some(theirs)) if ours == theirs => Ok(()),
            (Some(ours), Some(theirs)) => Err(format!(
                "node {peer} belongs to incarnation {theirs} of cluster {:?}, this node to \
                 incarnation {ours}: two clusters of the same name (a data directory left from \
                 an earlier cluster, or a server started empty that was not one); start the \
                 node whose data directory is the stranger on the right directory, or wipe it \
                 and add it back with --join",
                identity.cluster_id
            )),
            (None, Some(theirs)) => {
                let adopted = DataDirIdentity {
                    incarnation: Some(theirs),
                    ..identity.clone()
                };
                if !self.dir.as_os_str().is_empty() {
                    write(&self.dir, &adopted).map_err(|e| {
                        format!("cannot record the cluster's incarnation {theirs}: {e}")
                    })?;
                }
                tracing::info!(peer, incarnation = %theirs, "adopted the cluster's incarnation from a peer");
                *identity = adopted;
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> DataDirIdentity {
        DataDirIdentity {
            cluster_id: "demo".to_string(),
            node_id: 3,
            incarnation: Some(Incarnation([7; 16])),
            storage_format: wal::FORMAT_VERSION,
        }
    }

    #[test]
    fn identity_round_trips_and_damage_is_named() {
        let bytes = encode(&sample()).unwrap();
        assert_eq!(decode(&bytes).unwrap(), sample());
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(decode(&flipped).unwrap_err(), "checksum mismatch");
        assert_eq!(
            decode(&bytes[..10]).unwrap_err(),
            "10 bytes, shorter than its header"
        );
        let mut magic = bytes.clone();
        magic[0] = b'X';
        assert_eq!(decode(&magic).unwrap_err(), "bad magic");
    }

    #[test]
    fn incarnations_are_adopted_once_then_enforced() {
        let handle = IdentityHandle::in_memory(DataDirIdentity {
            incarnation: None,
            ..sample()
        });
        let a = Incarnation([1; 16]);
        let b = Incarnation([2; 16]);
        assert_eq!(handle.meet(1, None), Ok(()));
        assert_eq!(handle.incarnation(), None);
        assert_eq!(handle.meet(1, Some(a)), Ok(()));
        assert_eq!(handle.incarnation(), Some(a));
        assert_eq!(handle.meet(2, Some(a)), Ok(()));
        let refusal = handle.meet(2, Some(b)).unwrap_err();
        assert!(
            refusal.contains(&format!("node 2 belongs to incarnation {b}")),
            "{refusal}"
        );
        assert!(
            refusal.contains(&format!("this node to incarnation {a}")),
            "{refusal}"
        );
        assert_eq!(handle.incarnation(), Some(a));
        assert_ne!(Incarnation::generate(), Incarnation::generate());
    }
}
