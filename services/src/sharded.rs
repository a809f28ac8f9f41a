//! Any service over many Raft groups (`concord-node --service NAME
//! --groups N`): each request runs in one group, chosen by the service
//! ([`Service::placement`]):
//!
//! * [`Placement::Key`]: the group of the request's key (a user, a
//!   customer, an account), by the sharded store's map ([`ShardMap`]:
//!   a stable hash, hash tags `{...}` honoured);
//! * [`Placement::Keys`]: the one group of all its keys; refused before
//!   anything is sent when they span groups ([`ShardError::CrossGroup`]
//!   names the request and the groups): a request is one log entry of one
//!   group, and there are no cross-group transactions;
//! * [`Placement::First`]: group 1 alone, for state that is one thing and
//!   not per key (a cluster-wide sequence);
//! * [`Placement::Every`]: refused ([`ShardError::AllGroups`]): the
//!   request would need every group's state at one instant; on a cluster
//!   of one group, that group, which holds it all.
//!
//! Which request goes where, per service:
//!
//! | service | by key | group 1 alone | refused across groups |
//! | --- | --- | --- | --- |
//! | kv | every request (its key) | | `put-many`, `get-many` whose keys span groups |
//! | directory | `connect`, `disconnect` (the user) | `next-sequence` (one counter) | `lookup` of users of several groups |
//! | orders | `place-order`, `last-order` (the customer) | | |
//! | chat | `create-account`, `delete-account`, `fetch`, `delete-messages` (the account's name up to its first `.`) | | `send` between accounts of two groups; `list-accounts` (every group) |
//!
//! Each group's state machine ([`ShardedMachine`]) refuses a request that
//! belongs to another group, naming the owner, so a client configured
//! with another group count gets an error, never a split key space. Keys
//! that must meet in one request share a group by a hash tag (kv keys,
//! directory users: `{team7}.ann`, `{team7}.bob`) or, for chat accounts
//! (whose names hold no braces), by their name up to the first `.`
//! (`team7.ann`, `team7.bob`).

use bytes::Bytes;
use concord::multi::GroupId;
use concord::state_machine::{RestoreError, SnapshotSource, StateMachine};
use concord::Index;

use crate::codec;
use crate::machine::ServiceMachine;
use crate::service::Service;
use crate::sharded_kv::{ShardError, ShardMap};

/// Where a request runs on a multi-group cluster (see the
/// [module documentation](self)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement<'a> {
    /// The group of this key.
    Key(&'a [u8]),
    /// The one group of all these keys (refused when they span groups).
    Keys {
        /// The request's name, for the refusal.
        what: &'static str,
        /// Its keys.
        keys: Vec<&'a [u8]>,
    },
    /// Group 1 alone.
    First {
        /// Why the request cannot be sharded.
        why: &'static str,
    },
    /// Every group: refused.
    Every {
        /// The request's name, for the refusal.
        what: &'static str,
        /// What it would need.
        why: &'static str,
    },
}

/// The group `request` of service `S` runs in under `map`, or why it runs
/// in none.
pub fn group_of<S: Service>(map: &ShardMap, request: &S::Request) -> Result<GroupId, ShardError> {
    match S::placement(request) {
        Placement::Key(key) => Ok(map.group_of(key)),
        Placement::Keys { what, keys } => map.group_of_all(what, keys),
        Placement::First { .. } => Ok(1),
        // One group holds every group's state: nothing spans.
        Placement::Every { .. } if map.groups() == 1 => Ok(1),
        Placement::Every { what, why } => Err(ShardError::AllGroups { what, why }),
    }
}

/// One group's state machine of service `S` on a multi-group cluster: the
/// service ([`ServiceMachine<S>`]), refusing requests of other groups (see
/// the [module documentation](self)). A server runs it behind the group's
/// session table
/// ([`GroupSessions`](concord::multi::sessions::GroupSessions)).
#[derive(Clone, Debug)]
pub struct ShardedMachine<S> {
    map: ShardMap,
    group: GroupId,
    service: ServiceMachine<S>,
}

impl<S: Service> ShardedMachine<S> {
    /// Group `group`'s empty state under `map`.
    pub fn new(map: ShardMap, group: GroupId) -> Self {
        ShardedMachine {
            map,
            group,
            service: ServiceMachine::new(),
        }
    }

    /// The group's state (for tests and inspection: reading it here is not
    /// linearizable).
    pub fn state(&self) -> &S {
        self.service.state()
    }

    /// Why `request` must not run in this group, if it belongs to another
    /// or to none (undecodable bytes are left to the service, which
    /// refuses them).
    fn misrouted(&self, request: &[u8]) -> Option<Bytes> {
        let (_, request) = codec::decode_request::<S>(request).ok()?;
        let reason = match group_of::<S>(&self.map, &request) {
            Ok(group) if group == self.group => return None,
            Ok(group) => format!(
                "{} request {request:?} belongs to group {group} of {}, not to group {}: the \
                 client's group count must be the cluster's: use --groups {}",
                S::NAME,
                self.map.groups(),
                self.group,
                self.map.groups(),
            ),
            Err(error) => error.to_string(),
        };
        Some(codec::encode_answer::<S>(&Err(reason)))
    }
}

impl<S: Service> StateMachine for ShardedMachine<S> {
    fn apply(&mut self, index: Index, command: &[u8]) -> Bytes {
        match self.misrouted(command) {
            Some(refusal) => refusal,
            None => self.service.apply(index, command),
        }
    }

    fn query(&self, request: &[u8]) -> Option<Bytes> {
        let answer = self.service.query(request)?;
        Some(self.misrouted(request).unwrap_or(answer))
    }

    fn snapshot(&self) -> Bytes {
        self.service.snapshot()
    }

    fn snapshot_source(&self) -> Option<SnapshotSource> {
        self.service.snapshot_source()
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
        self.service.restore(snapshot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::{Chat, ChatRequest, ChatResponse};
    use crate::directory::{Directory, DirectoryRequest};
    use crate::kv::{Kv, KvRequest};
    use crate::orders::{Orders, OrdersRequest, OrdersResponse};

    fn map() -> ShardMap {
        ShardMap::new(8).unwrap()
    }

    /// Two names of different groups.
    fn apart(map: &ShardMap) -> (String, String) {
        let first = "u0".to_string();
        let other = (1..)
            .map(|i| format!("u{i}"))
            .find(|name| map.group_of(name.as_bytes()) != map.group_of(first.as_bytes()))
            .unwrap();
        (first, other)
    }

    #[test]
    fn each_service_places_its_requests_by_key_or_on_group_1() {
        let map = map();
        let (a, b) = apart(&map);
        let group = |key: &str| map.group_of(key.as_bytes());
        let connect = DirectoryRequest::Connect {
            user: a.clone(),
            address: "10.0.0.1:5".into(),
        };
        assert_eq!(group_of::<Directory>(&map, &connect), Ok(group(&a)));
        assert_eq!(
            group_of::<Directory>(&map, &DirectoryRequest::NextSequence),
            Ok(1)
        );
        let lookup = DirectoryRequest::Lookup {
            users: vec![a.clone(), b.clone()],
        };
        let error = group_of::<Directory>(&map, &lookup).unwrap_err();
        assert!(
            matches!(&error, ShardError::CrossGroup { what: "lookup", .. }),
            "{error}"
        );
        let place = OrdersRequest::PlaceOrder {
            customer: b.clone(),
        };
        assert_eq!(group_of::<Orders>(&map, &place), Ok(group(&b)));
        let send = ChatRequest::Send {
            sender: a.clone(),
            recipient: b.clone(),
            body: "hi".into(),
        };
        let error = group_of::<Chat>(&map, &send).unwrap_err();
        assert!(
            error.to_string().contains("send names keys of groups"),
            "{error}"
        );
        let list = ChatRequest::ListAccounts {
            pattern: "*".into(),
        };
        let error = group_of::<Chat>(&map, &list).unwrap_err();
        assert!(error.to_string().contains("list_accounts"), "{error}");
        // Kv places as the sharded store always did.
        let put = KvRequest::Put {
            key: Bytes::from(a.clone()),
            value: Bytes::new(),
        };
        assert_eq!(group_of::<Kv>(&map, &put), map.group_of_request(&put));
    }

    #[test]
    fn a_group_refuses_requests_of_other_groups_and_serves_its_own() {
        let map = map();
        let (a, _) = apart(&map);
        let owner = map.group_of(a.as_bytes());
        let other = owner % 8 + 1;
        let place = codec::encode_request::<Orders>(
            1,
            &OrdersRequest::PlaceOrder {
                customer: a.clone(),
            },
        );
        let mut wrong = ShardedMachine::<Orders>::new(map, other);
        let refusal = codec::decode_answer::<Orders>(&wrong.apply(1, &place))
            .unwrap()
            .unwrap_err();
        assert!(
            refusal.contains(&format!(
                "belongs to group {owner} of 8, not to group {other}"
            )),
            "{refusal}"
        );
        assert_eq!(wrong.state().last_order(&a), 0);
        let mut right = ShardedMachine::<Orders>::new(map, owner);
        assert_eq!(
            codec::decode_answer::<Orders>(&right.apply(1, &place)).unwrap(),
            Ok(OrdersResponse::Placed(1))
        );
        let mut copy = ShardedMachine::<Orders>::new(map, owner);
        copy.restore(&right.snapshot()).unwrap();
        assert_eq!(copy.state(), right.state());
        // A chat request that spans groups is refused by any group too.
        let chat = ShardedMachine::<Chat>::new(map, 1);
        let list = codec::encode_request::<Chat>(
            1,
            &ChatRequest::ListAccounts {
                pattern: "*".into(),
            },
        );
        let answer = codec::decode_answer::<Chat>(&chat.query(&list).unwrap()).unwrap();
        assert!(answer.is_err(), "{answer:?}");
        let create = codec::encode_request::<Chat>(
            2,
            &ChatRequest::CreateAccount {
                account: "t.x".into(),
            },
        );
        let mut home = ShardedMachine::<Chat>::new(map, map.group_of(b"t"));
        assert_eq!(
            codec::decode_answer::<Chat>(&home.apply(2, &create)).unwrap(),
            Ok(ChatResponse::Done)
        );
        // One group holds every account: the listing is served, and
        // every request of every service is that group's.
        let one = ShardMap::new(1).unwrap();
        let mut only = ShardedMachine::<Chat>::new(one, 1);
        assert_eq!(
            codec::decode_answer::<Chat>(&only.apply(1, &create)).unwrap(),
            Ok(ChatResponse::Done)
        );
        let answer = codec::decode_answer::<Chat>(&only.query(&list).unwrap()).unwrap();
        assert!(
            matches!(&answer, Ok(ChatResponse::Accounts { names, truncated: false }) if names == &["t.x"]),
            "{answer:?}"
        );
        assert_eq!(
            group_of::<Chat>(
                &one,
                &ChatRequest::ListAccounts {
                    pattern: "*".into()
                }
            ),
            Ok(1)
        );
    }
}
