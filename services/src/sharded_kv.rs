//! The key-value store sharded over many Raft groups: every key belongs
//! to one group, each group's state machine is the one store
//! ([`Kv`], as [`ServiceMachine<Kv>`]), and a client
//! ([`ShardedKvClient`](crate::sharded_kv_client::ShardedKvClient),
//! feature `runtime`) sends each request to the group of its keys.
//!
//! ## Keys to groups: a stable hash, not ranges
//!
//! Groups are numbered `1..=groups`. A key belongs to group
//! `1 + h(key) mod groups`, where `h` is 64-bit FNV-1a followed by the
//! SplitMix64 finalizer: fixed constants, no seed drawn at run time (not
//! std's `RandomState`), the same on every build, machine and process, so
//! every client and every server agree with nothing but the group count.
//!
//! Hashing was chosen over ranges because:
//!
//! * the store has no scans (get, get-many, put, put-many, append, cas),
//!   so ranges would buy no ordered reads;
//! * a hash spreads keys, and so load, evenly over the groups whatever
//!   their shape (sequential ids, one hot prefix), with no split, merge
//!   or rebalancing machinery;
//! * the whole map is one number, known to every process: no range
//!   directory to replicate, cache and keep fresh.
//!
//! What it costs: the group count is fixed for the cluster's lifetime
//! (changing it moves most keys; resharding is not part of this
//! service), and keys that belong together are usually in different
//! groups. For the latter, a key may carry a **hash tag**, as in Redis
//! Cluster: when a key holds a `{` followed later by a `}` with at least
//! one byte between them, only the bytes between the first `{` and the
//! next `}` are hashed. `{user42}.name` and `{user42}.mail` are then in
//! one group, and one `put_many` writes them atomically.
//!
//! ## Atomicity
//!
//! A request is one log entry of one group, so `put_many` and `get_many`
//! are atomic when all their keys are in one group, and refused before
//! anything is sent when they are not ([`ShardError::CrossGroup`] names
//! the groups): there are no cross-group transactions.
//! [`ShardMap::split`] groups pairs by group for a caller that accepts a
//! write per group.
//!
//! ## A guard against a wrong group count
//!
//! A client configured with another group count than the servers would
//! send keys to groups that do not own them. [`ShardMachine`] (what a
//! sharded server runs per group) refuses any request naming a key of
//! another group, saying which group owns it, so a misconfigured client
//! gets an error, never a silently split key space.

use std::collections::BTreeMap;

use bytes::Bytes;
use concord::multi::GroupId;
use concord::state_machine::{RestoreError, SnapshotSource, StateMachine};
use concord::Index;

use crate::codec;
use crate::kv::{Kv, KvRequest};
use crate::machine::ServiceMachine;

/// Most groups a sharded store may have.
pub const GROUPS_MAX: u64 = 100_000;

/// Why a request cannot be sent as one request of one group.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShardError {
    /// The group count is out of range.
    #[error("a sharded store has 1 to {GROUPS_MAX} groups, not {0}")]
    Groups(u64),
    /// A multi-key request whose keys belong to several groups.
    #[error(
        "{what} names keys of groups {}: a {what} is atomic only within one group and there \
         are no cross-group transactions; send one {what} per group (ShardMap::split), or give \
         the keys a shared hash tag such as {{user42}}.name and {{user42}}.mail",
        list(groups)
    )]
    CrossGroup {
        /// The request (`put_many`, `get_many`).
        what: &'static str,
        /// The groups its keys belong to, ascending.
        groups: Vec<GroupId>,
    },
    /// A request with no key.
    #[error("{0} names no key")]
    NoKey(&'static str),
    /// A request that would need every group's state at one instant.
    #[error(
        "{what} is refused on a multi-group cluster: {why}; there are no cross-group requests"
    )]
    AllGroups {
        /// The request.
        what: &'static str,
        /// What it would need.
        why: &'static str,
    },
}

fn list(groups: &[GroupId]) -> String {
    let names: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
    names.join(", ")
}

/// Which group each key belongs to (see the [module documentation](self)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardMap {
    groups: u64,
}

/// 64-bit FNV-1a.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// SplitMix64's finalizer: spreads FNV's weak low bits over all 64.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The bytes of `key` that are hashed: its hash tag if it has one.
pub fn hashed_part(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|b| *b == b'{') {
        if let Some(len) = key[open + 1..].iter().position(|b| *b == b'}') {
            if len > 0 {
                return &key[open + 1..open + 1 + len];
            }
        }
    }
    key
}

impl ShardMap {
    /// A map onto groups `1..=groups`.
    pub fn new(groups: u64) -> Result<Self, ShardError> {
        if groups == 0 || groups > GROUPS_MAX {
            return Err(ShardError::Groups(groups));
        }
        Ok(ShardMap { groups })
    }

    /// The number of groups.
    pub fn groups(&self) -> u64 {
        self.groups
    }

    /// Every group, ascending.
    pub fn group_ids(&self) -> std::ops::RangeInclusive<GroupId> {
        1..=self.groups
    }

    /// The group `key` belongs to.
    pub fn group_of(&self, key: &[u8]) -> GroupId {
        1 + mix(fnv1a(hashed_part(key))) % self.groups
    }

    /// The one group all of `keys` belong to, or the groups they span.
    pub fn group_of_all<'a>(
        &self,
        what: &'static str,
        keys: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<GroupId, ShardError> {
        let groups: std::collections::BTreeSet<GroupId> =
            keys.into_iter().map(|key| self.group_of(key)).collect();
        match groups.len() {
            0 => Err(ShardError::NoKey(what)),
            1 => Ok(*groups.first().expect("one group")),
            _ => Err(ShardError::CrossGroup {
                what,
                groups: groups.into_iter().collect(),
            }),
        }
    }

    /// The group `request` goes to: the group of its keys, all in one.
    pub fn group_of_request(&self, request: &KvRequest) -> Result<GroupId, ShardError> {
        match request {
            KvRequest::Get { key }
            | KvRequest::Put { key, .. }
            | KvRequest::Append { key, .. }
            | KvRequest::Cas { key, .. } => Ok(self.group_of(key)),
            KvRequest::GetMany { keys } => {
                self.group_of_all("get_many", keys.iter().map(|k| k.as_ref()))
            }
            KvRequest::PutMany { pairs } => {
                self.group_of_all("put_many", pairs.iter().map(|(k, _)| k.as_ref()))
            }
        }
    }

    /// `pairs` by group, each group's in their given order.
    pub fn split(&self, pairs: Vec<(Bytes, Bytes)>) -> BTreeMap<GroupId, Vec<(Bytes, Bytes)>> {
        let mut by_group: BTreeMap<GroupId, Vec<(Bytes, Bytes)>> = BTreeMap::new();
        for (key, value) in pairs {
            by_group
                .entry(self.group_of(&key))
                .or_default()
                .push((key, value));
        }
        by_group
    }
}

/// One group's state machine in a sharded store: the one store
/// ([`ServiceMachine<Kv>`]), refusing requests naming keys of other
/// groups (see the [module documentation](self)). A server runs it behind
/// the group's session table
/// ([`GroupSessions`](concord::multi::sessions::GroupSessions)), so a
/// sharded client's retried write is applied once.
#[derive(Clone, Debug)]
pub struct ShardMachine {
    map: ShardMap,
    group: GroupId,
    store: ServiceMachine<Kv>,
}

impl ShardMachine {
    /// Group `group`'s empty store under `map`.
    pub fn new(map: ShardMap, group: GroupId) -> Self {
        ShardMachine {
            map,
            group,
            store: ServiceMachine::new(),
        }
    }

    /// The group's store (for tests and inspection: reading it here is
    /// not linearizable).
    pub fn store(&self) -> &Kv {
        self.store.state()
    }

    fn misrouted(&self, command: &[u8]) -> Option<Bytes> {
        misrouted(&self.map, self.group, command)
    }
}

/// Why `command` must not run in `group` of `map`, if it names a key of
/// another group (undecodable bytes are left to the store, which refuses
/// them): the refusal, encoded as the store's answer.
pub(crate) fn misrouted(map: &ShardMap, group: GroupId, command: &[u8]) -> Option<Bytes> {
    // With one group every key is group 1's: no need to decode the
    // command a second time (the store decodes it to apply it) on every
    // write of a single-group server.
    if map.groups == 1 && group == 1 {
        return None;
    }
    let (_, request) = codec::decode_request::<Kv>(command).ok()?;
    let keys: Vec<&Bytes> = match &request {
        KvRequest::Get { key }
        | KvRequest::Put { key, .. }
        | KvRequest::Append { key, .. }
        | KvRequest::Cas { key, .. } => vec![key],
        KvRequest::GetMany { keys } => keys.iter().collect(),
        KvRequest::PutMany { pairs } => pairs.iter().map(|(k, _)| k).collect(),
    };
    let key = keys.into_iter().find(|key| map.group_of(key) != group)?;
    let reason = format!(
        "key {:?} belongs to group {} of {}, not to group {}: the client's group count \
         must be the cluster's ({}): use --groups {} (a client of a single-group cluster \
         reads so too)",
        String::from_utf8_lossy(key),
        map.group_of(key),
        map.groups,
        group,
        map.groups,
        map.groups,
    );
    Some(codec::encode_answer::<Kv>(&Err(reason)))
}

impl StateMachine for ShardMachine {
    fn apply(&mut self, index: Index, command: &[u8]) -> Bytes {
        match self.misrouted(command) {
            Some(refusal) => refusal,
            None => self.store.apply(index, command),
        }
    }

    fn query(&self, request: &[u8]) -> Option<Bytes> {
        let answer = self.store.query(request)?;
        // Only reads are answered here; one of a key of another group is
        // refused like a write would be.
        Some(self.misrouted(request).unwrap_or(answer))
    }

    fn snapshot(&self) -> Bytes {
        self.store.snapshot()
    }

    fn snapshot_source(&self) -> Option<SnapshotSource> {
        self.store.snapshot_source()
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
        self.store.restore(snapshot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::KvResponse;

    #[test]
    fn a_single_group_owns_every_key_so_nothing_is_misrouted() {
        // The premise of `misrouted`'s shortcut for one group.
        let map = ShardMap::new(1).unwrap();
        for n in 0..1000u32 {
            let key = format!("k{n}{{tag{}}}", n % 7);
            assert_eq!(map.group_of(key.as_bytes()), 1);
        }
        let put = codec::encode_request::<Kv>(
            0,
            &KvRequest::Put {
                key: Bytes::from_static(b"any"),
                value: Bytes::from_static(b"v"),
            },
        );
        assert_eq!(misrouted(&map, 1, &put), None);
        // A two-group map does refuse the key of the other group.
        let two = ShardMap::new(2).unwrap();
        let other = 3 - two.group_of(b"any");
        assert!(misrouted(&two, other, &put).is_some());
    }

    #[test]
    fn group_counts_out_of_range_are_refused() {
        assert_eq!(ShardMap::new(0), Err(ShardError::Groups(0)));
        let error = ShardMap::new(GROUPS_MAX + 1).unwrap_err();
        assert!(error.to_string().contains("1 to 100000 groups"), "{error}");
        assert_eq!(ShardMap::new(GROUPS_MAX).unwrap().groups(), GROUPS_MAX);
    }

    /// The map is a fixed function: these values must never change, or
    /// every existing cluster's keys would be looked for in the wrong
    /// group.
    #[test]
    fn the_map_is_stable() {
        let map = ShardMap::new(1000).unwrap();
        let seen: Vec<GroupId> = ["", "a", "b", "key-1", "key-2", "user:0001"]
            .iter()
            .map(|k| map.group_of(k.as_bytes()))
            .collect();
        assert_eq!(seen, vec![204, 737, 822, 279, 147, 872]);
        assert_eq!(ShardMap::new(1).unwrap().group_of(b"anything"), 1);
        // FNV-1a's published test vectors.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn keys_spread_evenly_over_groups() {
        let map = ShardMap::new(16).unwrap();
        let mut counts = [0u32; 16];
        for i in 0..16_000 {
            let group = map.group_of(format!("key-{i}").as_bytes());
            assert!((1..=16).contains(&group));
            counts[(group - 1) as usize] += 1;
        }
        // 1,000 expected per group; a sequential key space must not
        // pile up in a few.
        for count in counts {
            assert!((850..=1150).contains(&count), "{counts:?}");
        }
    }

    #[test]
    fn hash_tags_put_related_keys_in_one_group() {
        let map = ShardMap::new(1000).unwrap();
        assert_eq!(hashed_part(b"{user42}.name"), b"user42");
        assert_eq!(hashed_part(b"x{a}{b}"), b"a");
        assert_eq!(hashed_part(b"{}x"), b"{}x");
        assert_eq!(hashed_part(b"{open"), b"{open");
        assert_eq!(
            map.group_of(b"{user42}.name"),
            map.group_of(b"{user42}.mail")
        );
        let pairs = vec![
            (Bytes::from("{user42}.name"), Bytes::from("Ada")),
            (Bytes::from("{user42}.mail"), Bytes::from("ada@example.org")),
        ];
        let request = KvRequest::PutMany { pairs };
        assert_eq!(map.group_of_request(&request), Ok(map.group_of(b"user42")));
    }

    #[test]
    fn a_put_many_across_groups_is_refused_naming_them() {
        let map = ShardMap::new(8).unwrap();
        let keys: Vec<Bytes> = (0..32).map(|i| Bytes::from(format!("k{i}"))).collect();
        let pairs: Vec<(Bytes, Bytes)> = keys.iter().map(|k| (k.clone(), k.clone())).collect();
        let expected: std::collections::BTreeSet<GroupId> =
            keys.iter().map(|k| map.group_of(k)).collect();
        assert!(expected.len() > 1);
        let request = KvRequest::PutMany {
            pairs: pairs.clone(),
        };
        let error = map.group_of_request(&request).unwrap_err();
        assert_eq!(
            error,
            ShardError::CrossGroup {
                what: "put_many",
                groups: expected.iter().copied().collect(),
            }
        );
        let message = error.to_string();
        assert!(message.contains("no cross-group transactions"), "{message}");
        let split = map.split(pairs);
        assert_eq!(
            split.keys().copied().collect::<Vec<_>>(),
            Vec::from_iter(expected)
        );
        for (group, pairs) in &split {
            assert!(pairs.iter().all(|(k, _)| map.group_of(k) == *group));
        }
        assert_eq!(split.values().map(Vec::len).sum::<usize>(), 32);
        let empty = KvRequest::GetMany { keys: vec![] };
        assert_eq!(
            map.group_of_request(&empty),
            Err(ShardError::NoKey("get_many"))
        );
    }

    fn answer(bytes: &[u8]) -> Result<KvResponse, String> {
        codec::decode_answer::<Kv>(bytes).unwrap()
    }

    #[test]
    fn a_group_refuses_keys_of_other_groups() {
        let map = ShardMap::new(4).unwrap();
        let key = Bytes::from("some-key");
        let owner = map.group_of(&key);
        let other = owner % 4 + 1;
        let put = KvRequest::Put {
            key: key.clone(),
            value: Bytes::from("v"),
        };
        let command = codec::encode_request::<Kv>(1, &put);
        let mut wrong = ShardMachine::new(map, other);
        let refusal = answer(&wrong.apply(1, &command)).unwrap_err();
        assert!(
            refusal.contains(&format!(
                "belongs to group {owner} of 4, not to group {other}"
            )),
            "{refusal}"
        );
        assert!(wrong.store().is_empty());
        let get = codec::encode_request::<Kv>(2, &KvRequest::Get { key: key.clone() });
        assert!(answer(&wrong.query(&get).unwrap()).is_err());
        let mut right = ShardMachine::new(map, owner);
        assert_eq!(answer(&right.apply(1, &command)), Ok(KvResponse::Written));
        assert_eq!(
            answer(&right.query(&get).unwrap()),
            Ok(KvResponse::Values(vec![Some(Bytes::from("v"))]))
        );
        // A write is not answered as a read.
        assert!(right.query(&command).is_none());
        // Snapshots are the store's.
        let mut copy = ShardMachine::new(map, owner);
        copy.restore(&right.snapshot()).unwrap();
        assert_eq!(copy.store(), right.store());
        // Bytes that are no request are refused by the store.
        assert!(answer(&right.apply(2, b"junk")).is_err());
    }
}
