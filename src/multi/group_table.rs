//! The hosted groups by id: found by hash, walked in id order.
//!
//! Every step of a group looks it up, and a write of a group of its own
//! is some thirteen steps across a cluster: in an ordered map of 1,024
//! groups those searches were a sixth of the layer's instructions per
//! write (`multi_group_rounds`). Lookups go through a hash table with a
//! fixed hasher; every walk goes through the ordered set of ids, so no
//! hash order ever reaches the layer's behaviour.

use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::Index;

use super::frame::GroupId;
use super::multi_node::Group;

/// A multiply-rotate hash of a group id (the word-at-a-time scheme of
/// rustc's `FxHasher`), with no per-process seed: the same ids land in
/// the same buckets on every run.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct GroupIdHasher(u64);

/// An odd constant with well-spread bits (from the golden ratio).
const SEED: u64 = 0x9e37_79b9_7f4a_7c15;

impl Hasher for GroupIdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }

    fn write_u64(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// The groups hosted on one node.
#[derive(Debug, Default)]
pub(crate) struct GroupTable {
    by_id: HashMap<GroupId, Group, BuildHasherDefault<GroupIdHasher>>,
    /// The same ids, in order: what every walk follows.
    ids: BTreeSet<GroupId>,
}

impl GroupTable {
    pub(crate) fn get(&self, group: &GroupId) -> Option<&Group> {
        self.by_id.get(group)
    }

    pub(crate) fn get_mut(&mut self, group: &GroupId) -> Option<&mut Group> {
        self.by_id.get_mut(group)
    }

    pub(crate) fn contains_key(&self, group: &GroupId) -> bool {
        self.by_id.contains_key(group)
    }

    pub(crate) fn len(&self) -> usize {
        debug_assert_eq!(self.by_id.len(), self.ids.len());
        self.by_id.len()
    }

    /// Hosts `state` as `group`, returning what was hosted as it before.
    pub(crate) fn insert(&mut self, group: GroupId, state: Group) -> Option<Group> {
        self.ids.insert(group);
        let old = self.by_id.insert(group, state);
        assert_eq!(self.by_id.len(), self.ids.len());
        old
    }

    pub(crate) fn remove(&mut self, group: &GroupId) -> Option<Group> {
        self.ids.remove(group);
        let old = self.by_id.remove(group);
        assert_eq!(self.by_id.len(), self.ids.len());
        old
    }

    /// Every group, in id order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&GroupId, &Group)> + '_ {
        self.ids.iter().map(|id| (id, &self.by_id[id]))
    }

    /// Calls `visit` with every group, in id order.
    #[cfg(feature = "planted-bugs")]
    pub(crate) fn for_each_mut(&mut self, mut visit: impl FnMut(GroupId, &mut Group)) {
        for id in &self.ids {
            visit(*id, self.by_id.get_mut(id).expect("every id is hosted"));
        }
    }
}

impl Index<&GroupId> for GroupTable {
    type Output = Group;

    fn index(&self, group: &GroupId) -> &Group {
        &self.by_id[group]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_of_an_id_is_the_same_on_every_run() {
        let hash = |id: u64| {
            let mut hasher = GroupIdHasher::default();
            hasher.write_u64(id);
            hasher.finish()
        };
        // Two hashers built apart agree: nothing per process goes in.
        assert_eq!(hash(7), hash(7));
        assert_ne!(hash(7), hash(8));
        assert_eq!(hash(1), SEED);
    }

    #[test]
    fn groups_are_walked_in_id_order_whatever_order_they_came_in() {
        use crate::multi::{MultiConfig, MultiNode};
        use crate::{Config, Recovered};

        let mut multi = MultiNode::new(MultiConfig::new(1, [1, 2, 3])).unwrap();
        // Spread ids whose hashes fall in no particular order.
        let ids = [900_001_u64, 3, 77, 1 << 40, 12, 5_000, 2, 65_537];
        for id in ids {
            let config = Config::new(1, [1, 2, 3]);
            multi
                .create_group(id, config, Recovered::default())
                .unwrap();
        }
        let walked: Vec<u64> = multi.groups().map(|(id, _)| id).collect();
        let mut sorted = ids.to_vec();
        sorted.sort_unstable();
        assert_eq!(walked, sorted);
        multi.remove_group(77).unwrap();
        sorted.retain(|id| *id != 77);
        let walked: Vec<u64> = multi.groups().map(|(id, _)| id).collect();
        assert_eq!(walked, sorted);
        assert_eq!(multi.group_count(), sorted.len());
    }
}
