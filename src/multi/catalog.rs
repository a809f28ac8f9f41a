//! The catalog: which groups exist and who their members are, kept as the
//! state of a metadata group (group [`CATALOG_GROUP`]) that every node of
//! the cluster runs. Creating or removing a group is a command proposed to
//! that group; once it commits, every node applies it in the same order
//! and hosts exactly the groups whose voters name it (creating each with
//! its voters as its first configuration, removing it when the catalog
//! does). So the nodes agree on what exists without any other
//! coordination, a group id is never handed out twice, and a restarted
//! node learns what to host from its own disk.
//!
//! The catalog only starts and stops groups. A group's own membership
//! then changes through the group's log ([`MembershipChange`]); a node
//! that a group adds creates the group (as a learner of its current
//! voters) when its host learns it should, and one it removes stops
//! hosting it when its host sees the removal committed.
//!
//! [`MembershipChange`]: crate::MembershipChange

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use thiserror::Error;

use crate::types::NodeId;

use super::frame::GroupId;

/// The metadata group every node runs; its log holds [`CatalogCommand`]s.
pub const CATALOG_GROUP: GroupId = 0;

/// Most voters a group may be created with.
pub const CATALOG_VOTERS_MAX: usize = 64;

/// A change to the catalog, proposed to [`CATALOG_GROUP`] as the bytes of
/// [`CatalogCommand::encode`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CatalogCommand {
    /// Create `group` with these voters. Refused unless `group` is above
    /// every group ever created.
    Create {
        /// The new group's id.
        group: GroupId,
        /// Its first voters.
        voters: BTreeSet<NodeId>,
    },
    /// Remove `group`: every member stops hosting it.
    Remove {
        /// The group.
        group: GroupId,
    },
}

const TAG_CREATE: u8 = 1;
const TAG_REMOVE: u8 = 2;

impl CatalogCommand {
    /// The command's bytes, as proposed.
    pub fn encode(&self) -> Bytes {
        let mut out = Vec::new();
        match self {
            CatalogCommand::Create { group, voters } => {
                out.push(TAG_CREATE);
                out.extend_from_slice(&group.to_le_bytes());
                out.extend_from_slice(&(voters.len() as u32).to_le_bytes());
                for voter in voters {
                    out.extend_from_slice(&voter.to_le_bytes());
                }
            }
            CatalogCommand::Remove { group } => {
                out.push(TAG_REMOVE);
                out.extend_from_slice(&group.to_le_bytes());
            }
        }
        Bytes::from(out)
    }

    /// Reads a command back; any malformed input is an error, never a
    /// panic.
    pub fn decode(bytes: &[u8]) -> Result<CatalogCommand, CatalogError> {
        let malformed = || CatalogError::Malformed {
            length_bytes: bytes.len(),
        };
        let u64_at = |at: usize| -> Result<u64, CatalogError> {
            let slice = bytes.get(at..at + 8).ok_or_else(malformed)?;
            Ok(u64::from_le_bytes(slice.try_into().expect("8 bytes")))
        };
        match bytes.first() {
            Some(&TAG_CREATE) => {
                let group = u64_at(1)?;
                let count_bytes = bytes.get(9..13).ok_or_else(malformed)?;
                let count = u32::from_le_bytes(count_bytes.try_into().expect("4 bytes")) as usize;
                if count > CATALOG_VOTERS_MAX || bytes.len() != 13 + 8 * count {
                    return Err(malformed());
                }
                let mut voters = BTreeSet::new();
                for i in 0..count {
                    voters.insert(u64_at(13 + 8 * i)?);
                }
                if voters.len() != count {
                    return Err(malformed());
                }
                Ok(CatalogCommand::Create { group, voters })
            }
            Some(&TAG_REMOVE) if bytes.len() == 9 => {
                Ok(CatalogCommand::Remove { group: u64_at(1)? })
            }
            _ => Err(malformed()),
        }
    }
}

/// What applying a command changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CatalogChange {
    /// `group` exists now, with these voters: each of them hosts it.
    Created {
        /// The group.
        group: GroupId,
        /// Its first voters.
        voters: BTreeSet<NodeId>,
    },
    /// `group` is gone: every node that hosts it stops.
    Removed {
        /// The group.
        group: GroupId,
        /// Its voters as the catalog knew them.
        voters: BTreeSet<NodeId>,
    },
}

/// Why a catalog command changed nothing. Deterministic: every replica
/// refuses the same command the same way.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// The bytes are not a command.
    #[error("a catalog command of {length_bytes} bytes could not be read")]
    Malformed {
        /// Its length.
        length_bytes: usize,
    },
    /// Group ids must grow, so none is ever reused.
    #[error("group {group} cannot be created: ids must be at least {next}, above every group ever created")]
    IdNotFresh {
        /// The id asked for.
        group: GroupId,
        /// The lowest id that may be created.
        next: GroupId,
    },
    /// No such group.
    #[error("group {group} does not exist (or was removed)")]
    UnknownGroup {
        /// The group.
        group: GroupId,
    },
    /// A group needs voters, none of them node 0.
    #[error("a group needs between 1 and {CATALOG_VOTERS_MAX} voters, none of them node 0")]
    BadVoters,
}

/// The catalog's state: every existing group and its first voters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Catalog {
    groups: BTreeMap<GroupId, BTreeSet<NodeId>>,
    /// The lowest id that may still be created.
    next: GroupId,
}

impl Default for Catalog {
    fn default() -> Self {
        Catalog {
            groups: BTreeMap::new(),
            next: CATALOG_GROUP + 1,
        }
    }
}

impl Catalog {
    /// An empty catalog.
    pub fn new() -> Self {
        Catalog::default()
    }

    /// Applies a committed command.
    pub fn apply(&mut self, command: &[u8]) -> Result<CatalogChange, CatalogError> {
        match CatalogCommand::decode(command)? {
            CatalogCommand::Create { group, voters } => {
                if group < self.next {
                    return Err(CatalogError::IdNotFresh {
                        group,
                        next: self.next,
                    });
                }
                if voters.is_empty() || voters.contains(&0) {
                    return Err(CatalogError::BadVoters);
                }
                self.next = group + 1;
                self.groups.insert(group, voters.clone());
                Ok(CatalogChange::Created { group, voters })
            }
            CatalogCommand::Remove { group } => match self.groups.remove(&group) {
                Some(voters) => Ok(CatalogChange::Removed { group, voters }),
                None => Err(CatalogError::UnknownGroup { group }),
            },
        }
    }

    /// The lowest id a new group may take.
    pub fn next_group_id(&self) -> GroupId {
        self.next
    }

    /// Every existing group and its first voters.
    pub fn groups(&self) -> impl Iterator<Item = (GroupId, &BTreeSet<NodeId>)> + '_ {
        self.groups.iter().map(|(group, voters)| (*group, voters))
    }

    /// The groups `node` hosts.
    pub fn hosted_by(&self, node: NodeId) -> impl Iterator<Item = GroupId> + '_ {
        self.groups
            .iter()
            .filter(move |(_, voters)| voters.contains(&node))
            .map(|(group, _)| *group)
    }

    /// The catalog's bytes, for a snapshot of the metadata group.
    pub fn snapshot(&self) -> Bytes {
        let mut out = Vec::new();
        out.extend_from_slice(&self.next.to_le_bytes());
        for (group, voters) in &self.groups {
            out.extend_from_slice(
                &CatalogCommand::Create {
                    group: *group,
                    voters: voters.clone(),
                }
                .encode(),
            );
        }
        Bytes::from(out)
    }

    /// A catalog from [`Catalog::snapshot`]'s bytes.
    pub fn restore(bytes: &[u8]) -> Result<Catalog, CatalogError> {
        let malformed = CatalogError::Malformed {
            length_bytes: bytes.len(),
        };
        let next_bytes = bytes.get(..8).ok_or(malformed.clone())?;
        let next = u64::from_le_bytes(next_bytes.try_into().expect("8 bytes"));
        let mut catalog = Catalog::new();
        let mut rest = &bytes[8..];
        while !rest.is_empty() {
            let count_bytes = rest.get(9..13).ok_or(malformed.clone())?;
            let count = u32::from_le_bytes(count_bytes.try_into().expect("4 bytes")) as usize;
            let length = 13usize
                .checked_add(count.checked_mul(8).ok_or(malformed.clone())?)
                .ok_or(malformed.clone())?;
            let record = rest.get(..length).ok_or(malformed.clone())?;
            match CatalogCommand::decode(record)? {
                CatalogCommand::Create { group, voters } if group >= catalog.next => {
                    catalog.next = group + 1;
                    catalog.groups.insert(group, voters);
                }
                _ => return Err(malformed),
            }
            rest = &rest[length..];
        }
        if next < catalog.next {
            return Err(malformed);
        }
        catalog.next = next;
        Ok(catalog)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_created_group_id_is_never_created_again() {
        let mut catalog = Catalog::new();
        let create = |group| CatalogCommand::Create {
            group,
            voters: [1, 2, 3].into(),
        };
        assert!(catalog.apply(&create(5).encode()).is_ok());
        let remove = CatalogCommand::Remove { group: 5 }.encode();
        assert!(catalog.apply(&remove).is_ok());
        assert_eq!(
            catalog.apply(&create(5).encode()),
            Err(CatalogError::IdNotFresh { group: 5, next: 6 })
        );
        assert_eq!(
            catalog.apply(&create(3).encode()),
            Err(CatalogError::IdNotFresh { group: 3, next: 6 })
        );
    }

    #[test]
    fn a_snapshot_restores_the_same_catalog() {
        let mut catalog = Catalog::new();
        for group in [1, 2, 7] {
            let command = CatalogCommand::Create {
                group,
                voters: [1, group + 1].into(),
            };
            catalog.apply(&command.encode()).unwrap();
        }
        catalog
            .apply(&CatalogCommand::Remove { group: 7 }.encode())
            .unwrap();
        let restored = Catalog::restore(&catalog.snapshot()).unwrap();
        assert_eq!(restored, catalog);
        assert_eq!(restored.next_group_id(), 8);
        assert_eq!(restored.hosted_by(3).collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn malformed_commands_and_snapshots_are_errors_not_panics() {
        for length in 0..40 {
            let bytes: Vec<u8> = (0..length).map(|i| (i * 37 + 1) as u8).collect();
            let _ = CatalogCommand::decode(&bytes);
            let _ = Catalog::restore(&bytes);
            let mut catalog = Catalog::new();
            let _ = catalog.apply(&bytes);
        }
        let mut huge = vec![TAG_CREATE];
        huge.extend_from_slice(&9u64.to_le_bytes());
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(CatalogCommand::decode(&huge).is_err());
    }
}
