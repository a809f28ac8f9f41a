//! The key-value store on disk (`concord-node --service kv --storage
//! disk`, feature `disk`): each data group's state machine a
//! [`DiskKv`] in `<data-dir>/kv-disk/group-<N>/`, its sessions stored with
//! its keys; the catalog and a witness's groups keep their (small, or no)
//! state in memory as before.
//!
//! The stores of the groups configured at start are opened before the
//! host starts, so a directory of another node or a damaged one stops the
//! server with its reason. A group the catalog assigns later is opened
//! when it is created; should that fail, the group reports the failure at
//! its first apply or restore, and the host stops serving it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bytes::Bytes;
use concord::durable::{
    BytesRestore, BytesView, DurableError, DurableStateMachine, InMemory, StateRestore, StateView,
};
use concord::multi::sessions::GroupSessions;
use concord::multi::{GroupId, CATALOG_GROUP};
use concord::{Entry, Index, NodeId};
use concord_services::disk_engine::{DiskIdentity, DiskOptions};
use concord_services::disk_kv::{DiskKv, DiskKvRestore, DiskKvView};
use concord_services::sharded_kv::{ShardMachine, ShardMap};
use concord_tokio::multi::host::{self, MultiServerHandle};

use crate::group_roles::GroupMachine;
use crate::multi_service::{HostParts, SessionLimits};
use crate::server::DISK_DIR_NAME;

/// Group `group`'s store directory under `data_dir`.
pub fn group_dir(data_dir: &Path, group: GroupId) -> PathBuf {
    data_dir.join(DISK_DIR_NAME).join(format!("group-{group}"))
}

/// Whose stores these are, and how they are bounded.
#[derive(Clone, Debug)]
struct Opener {
    data_dir: PathBuf,
    cluster_id: String,
    node_id: NodeId,
    map: ShardMap,
    sessions: SessionLimits,
}

impl Opener {
    fn open(&self, group: GroupId) -> Result<DiskKv, String> {
        let identity = DiskIdentity {
            cluster_id: self.cluster_id.clone(),
            node_id: self.node_id,
            group_id: group,
        };
        DiskKv::open(
            group_dir(&self.data_dir, group),
            identity,
            DiskOptions::default(),
            self.map,
            group,
            self.sessions.sessions_max,
            self.sessions.bytes_max,
        )
        .map_err(|e| format!("group {group}'s key-value store on disk: {e}"))
    }
}

/// A group's state machine on a server with `--storage disk`.
#[derive(Debug)]
pub enum DiskGroup {
    /// A data group of a full server: its store on disk.
    Kv(Box<DiskKv>),
    /// The catalog's place, or a witness's group: nothing on disk.
    Memory(InMemory<GroupMachine<GroupSessions<ShardMachine>>>),
    /// A store that could not be opened: every use fails with the reason.
    Unopened(String),
}

/// A [`DiskGroup`]'s view.
#[derive(Debug)]
pub enum DiskGroupView {
    /// Of a store on disk.
    Kv(DiskKvView),
    /// Of a state in memory.
    Memory(BytesView),
}

impl StateView for DiskGroupView {
    fn index(&self) -> Index {
        match self {
            DiskGroupView::Kv(view) => view.index(),
            DiskGroupView::Memory(view) => view.index(),
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> Result<usize, DurableError> {
        match self {
            DiskGroupView::Kv(view) => view.read(buf),
            DiskGroupView::Memory(view) => view.read(buf),
        }
    }
}

/// A [`DiskGroup`]'s restore.
#[derive(Debug)]
pub enum DiskGroupRestore {
    /// Into a store on disk (boxed: its parser's state is large).
    Kv(Box<DiskKvRestore>),
    /// Into a state in memory.
    Memory(BytesRestore),
}

impl StateRestore for DiskGroupRestore {
    fn write(&mut self, bytes: &[u8]) -> Result<(), DurableError> {
        match self {
            DiskGroupRestore::Kv(restore) => restore.write(bytes),
            DiskGroupRestore::Memory(restore) => restore.write(bytes),
        }
    }

    fn complete(&mut self) -> Result<(), DurableError> {
        match self {
            DiskGroupRestore::Kv(restore) => restore.complete(),
            DiskGroupRestore::Memory(restore) => restore.complete(),
        }
    }
}

fn unopened(reason: &str) -> DurableError {
    DurableError::Corrupt(reason.to_string())
}

impl DurableStateMachine for DiskGroup {
    type View = DiskGroupView;
    type Restore = DiskGroupRestore;

    fn durable_applied_index(&self) -> Index {
        match self {
            DiskGroup::Kv(kv) => kv.durable_applied_index(),
            DiskGroup::Memory(memory) => memory.durable_applied_index(),
            DiskGroup::Unopened(_) => 0,
        }
    }

    fn applied_index(&self) -> Index {
        match self {
            DiskGroup::Kv(kv) => kv.applied_index(),
            DiskGroup::Memory(memory) => memory.applied_index(),
            DiskGroup::Unopened(_) => 0,
        }
    }

    fn apply_batch(
        &mut self,
        entries: &[Entry],
        responses: &mut Vec<Option<Bytes>>,
    ) -> Result<(), DurableError> {
        match self {
            DiskGroup::Kv(kv) => kv.apply_batch(entries, responses),
            DiskGroup::Memory(memory) => memory.apply_batch(entries, responses),
            DiskGroup::Unopened(reason) => Err(unopened(reason)),
        }
    }

    fn sync(&mut self) -> Result<(), DurableError> {
        match self {
            DiskGroup::Kv(kv) => kv.sync(),
            DiskGroup::Memory(memory) => memory.sync(),
            DiskGroup::Unopened(reason) => Err(unopened(reason)),
        }
    }

    fn view(&mut self) -> Result<DiskGroupView, DurableError> {
        match self {
            DiskGroup::Kv(kv) => kv.view().map(DiskGroupView::Kv),
            DiskGroup::Memory(memory) => memory.view().map(DiskGroupView::Memory),
            DiskGroup::Unopened(reason) => Err(unopened(reason)),
        }
    }

    fn begin_restore(&mut self, index: Index) -> Result<DiskGroupRestore, DurableError> {
        match self {
            DiskGroup::Kv(kv) => kv
                .begin_restore(index)
                .map(|restore| DiskGroupRestore::Kv(Box::new(restore))),
            DiskGroup::Memory(memory) => memory.begin_restore(index).map(DiskGroupRestore::Memory),
            DiskGroup::Unopened(reason) => Err(unopened(reason)),
        }
    }

    fn finish_restore(&mut self, restore: DiskGroupRestore) -> Result<(), DurableError> {
        match (self, restore) {
            (DiskGroup::Kv(kv), DiskGroupRestore::Kv(restore)) => kv.finish_restore(*restore),
            (DiskGroup::Memory(memory), DiskGroupRestore::Memory(restore)) => {
                memory.finish_restore(restore)
            }
            (DiskGroup::Unopened(reason), _) => Err(unopened(reason)),
            _ => unreachable!("a restore is finished by the state machine that began it"),
        }
    }

    fn query(&self, request: &[u8]) -> Option<Bytes> {
        match self {
            DiskGroup::Kv(kv) => kv.query(request),
            DiskGroup::Memory(memory) => memory.query(request),
            DiskGroup::Unopened(_) => None,
        }
    }

    fn canonical_state(&self) -> Bytes {
        match self {
            DiskGroup::Kv(kv) => kv.canonical_state(),
            DiskGroup::Memory(memory) => memory.canonical_state(),
            DiskGroup::Unopened(reason) => Bytes::from(reason.clone().into_bytes()),
        }
    }

    fn sessions(&self) -> Option<usize> {
        match self {
            DiskGroup::Kv(kv) => kv.sessions(),
            DiskGroup::Memory(memory) => memory.sessions(),
            DiskGroup::Unopened(_) => None,
        }
    }

    fn destroy(self) -> Result<(), DurableError> {
        match self {
            DiskGroup::Kv(kv) => kv.destroy(),
            DiskGroup::Memory(memory) => memory.destroy(),
            DiskGroup::Unopened(_) => Ok(()),
        }
    }
}

/// Starts the multi-group host of the key-value store with each data
/// group's store on disk under `data_dir` (see the [module
/// documentation](self)). The stores of `groups` (the data groups
/// configured at start) are opened first: a failure is returned.
#[allow(clippy::too_many_arguments)]
pub fn start_disk_host(
    data_dir: &Path,
    cluster_id: &str,
    node_id: NodeId,
    map: ShardMap,
    groups: impl IntoIterator<Item = GroupId>,
    witness: bool,
    parts: HostParts,
) -> Result<MultiServerHandle, String> {
    let opener = Opener {
        data_dir: data_dir.to_path_buf(),
        cluster_id: cluster_id.to_string(),
        node_id,
        sessions: SessionLimits::of(&map),
        map,
    };
    let mut opened = BTreeMap::new();
    if !witness {
        for group in groups {
            opened.insert(group, opener.open(group)?);
        }
    }
    let opened = Mutex::new(opened);
    let make = move |group: GroupId| -> DiskGroup {
        if witness || group == CATALOG_GROUP {
            return DiskGroup::Memory(InMemory::new(GroupMachine::Witness));
        }
        let ready = opened
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&group);
        match ready.map_or_else(|| opener.open(group), Ok) {
            Ok(kv) => DiskGroup::Kv(Box::new(kv)),
            Err(reason) => {
                tracing::error!(group, %reason, "cannot open a group's store");
                DiskGroup::Unopened(reason)
            }
        }
    };
    host::start_durable_with_catalog(
        parts.config,
        make,
        parts.recovery,
        parts.log,
        parts.network,
        parts.inbox,
    )
    .map_err(|e| format!("cannot start the groups: {e}"))
}
