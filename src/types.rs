//! The small vocabulary every other module speaks: ids, terms, indices,
//! log entries and the hard state a replica must keep on disk.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Identifies one replica in a cluster. Zero is reserved to mean "nobody".
pub type NodeId = u64;

/// A Raft term. Terms only ever grow on a replica.
pub type Term = u64;

/// A 1-based position in the replicated log. Index 0 is the empty prefix.
pub type Index = u64;

/// A point in the log, named by its index and the term of the entry there.
///
/// Two logs that hold an entry with the same index and term are identical up
/// to that index (the Log Matching property), so a position names a whole
/// log prefix.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct LogPosition {
    /// Index of the entry.
    pub index: Index,
    /// Term of the entry at `index` (0 for the empty prefix).
    pub term: Term,
}

impl LogPosition {
    /// The empty log prefix: index 0, term 0.
    pub const ZERO: LogPosition = LogPosition { index: 0, term: 0 };

    /// Builds a position.
    pub fn new(index: Index, term: Term) -> Self {
        LogPosition { index, term }
    }

    /// Raft's "at least as up-to-date" comparison (§5.4.1): a later last
    /// term wins, and for equal terms the longer log wins.
    pub fn is_up_to_date_with(&self, other: &LogPosition) -> bool {
        (self.term, self.index) >= (other.term, other.index)
    }
}

/// What an entry carries.
///
/// Marked non-exhaustive because membership changes will be stored in the
/// log as entries of their own kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum EntryPayload {
    /// Appended by every new leader so that it can commit entries of its own
    /// term (and so everything before them) without waiting for a client.
    Noop,
    /// An opaque command for the host's state machine.
    Command(Bytes),
    /// A cluster configuration, in force on a replica from the moment the
    /// entry is in its log (see [`Membership`](crate::Membership)). Hosts
    /// skip it when applying. Boxed: configurations are rare and four
    /// sets wide, and inline they would more than double the size of every
    /// entry (120 bytes instead of 56) that the log, every AppendEntries and
    /// every write move. Serialized exactly as the configuration itself.
    Membership(Box<crate::membership::Membership>),
    /// Bytes for the host runtime itself, never for the state machine:
    /// replicated and committed like a command, proposed with
    /// [`Input::ProposeHost`](crate::Input::ProposeHost). The tokio
    /// runtime keeps its replicated address book in them (see
    /// `concord_tokio::addresses`). Hosts that propose none never see one.
    Host(Bytes),
    /// A configuration forced on one surviving server by an operator after
    /// a majority was lost for good, with its audit record (see
    /// [`crate::recovery`]). In force when appended, like
    /// [`EntryPayload::Membership`]; only
    /// [`plan_forced_recovery`](crate::plan_forced_recovery) makes one.
    /// Hosts pass it to the state machine when applying, through
    /// [`StateMachine::apply_forced_recovery`](crate::state_machine::StateMachine::apply_forced_recovery)
    /// (the session layer expires the sessions the lost servers may have
    /// handed out).
    ForcedMembership(Box<crate::recovery::ForcedRecovery>),
}

impl EntryPayload {
    /// Size of the payload in bytes, as counted by batching limits.
    pub fn len_bytes(&self) -> usize {
        match self {
            EntryPayload::Noop => 0,
            EntryPayload::Command(bytes) => bytes.len(),
            EntryPayload::Membership(membership) => membership.len_bytes(),
            EntryPayload::Host(bytes) => bytes.len(),
            EntryPayload::ForcedMembership(forced) => forced.len_bytes(),
        }
    }

    /// The configuration this entry puts in force, if it carries one
    /// (ordinary or forced).
    pub fn membership(&self) -> Option<&crate::membership::Membership> {
        match self {
            EntryPayload::Membership(membership) => Some(&**membership),
            EntryPayload::ForcedMembership(forced) => Some(&forced.membership),
            _ => None,
        }
    }
}

/// One entry of the replicated log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Term of the leader that created the entry.
    pub term: Term,
    /// Position of the entry in the log.
    pub index: Index,
    /// What the entry carries.
    pub payload: EntryPayload,
}

impl Entry {
    /// The position of this entry.
    pub fn position(&self) -> LogPosition {
        LogPosition::new(self.index, self.term)
    }

    /// Bytes this entry counts for in per-message byte limits: the payload
    /// plus a fixed overhead for index, term and framing, so that a batch of
    /// empty entries is still bounded.
    pub fn size_bytes(&self) -> usize {
        ENTRY_OVERHEAD_BYTES + self.payload.len_bytes()
    }
}

/// Fixed per-entry overhead counted against byte limits.
pub const ENTRY_OVERHEAD_BYTES: usize = 24;

/// The state a replica must make durable before it acts on it: the current
/// term, the vote cast in that term, and whether the replica is still
/// recovering from lost storage.
///
/// Losing the term or the vote could let a replica vote twice in one term,
/// which could elect two leaders in that term; losing `recovery` could let
/// a replica that forgot what it acknowledged vote before it caught up.
///
/// Encoded with serde (the tokio runtime's disk formats use the codec): a
/// hard state written before `recovery` existed, which ends after
/// `voted_for`, decodes with [`StorageRecovery::None`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub struct HardState {
    /// The latest term this replica has seen.
    pub term: Term,
    /// The candidate this replica voted for in `term`, if any.
    pub voted_for: Option<NodeId>,
    /// Where this replica stands in recovering from lost storage (see
    /// [`StorageRecovery`]); [`StorageRecovery::None`] on a replica that
    /// never lost any.
    pub recovery: StorageRecovery,
}

impl HardState {
    /// A hard state with no recovery under way.
    pub fn new(term: Term, voted_for: Option<NodeId>) -> Self {
        HardState {
            term,
            voted_for,
            recovery: StorageRecovery::None,
        }
    }
}

/// A replica that may have lost durable state it had promised (it started
/// with empty storage, or its host found storage damaged) neither votes
/// nor campaigns until it has learned, from enough of its peers, what the
/// cluster may have counted on it for, and holds at least that much again.
/// Durable, in [`HardState::recovery`], so that a restart in the middle
/// does not end the recovery. See the source of the
/// core's storage-loss rules, `src/storage_loss.rs`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StorageRecovery {
    /// Nothing lost, or the recovery is over: the replica votes.
    #[default]
    None,
    /// Storage was lost (or may have been): the replica asks its peers
    /// ([`MessageBody::RecoveryQuery`](crate::MessageBody::RecoveryQuery))
    /// until enough have answered to bound what it may have promised.
    AwaitingReports,
    /// Enough peers answered: the replica votes again once its durable
    /// log is at least as up to date as `floor` (the most up-to-date log
    /// they reported, in Raft's order) and its term is past `term` (the
    /// highest term they reported, in which it may already have voted).
    CatchingUp {
        /// The log position the durable log must reach.
        floor: LogPosition,
        /// The term the replica's term must pass.
        term: Term,
    },
}

impl StorageRecovery {
    /// Whether a recovery is under way (the replica does not vote).
    pub fn is_recovering(&self) -> bool {
        *self != StorageRecovery::None
    }
}

// Hand-written so that a hard state encoded before `recovery` existed
// (two fields) still decodes: the third field is read only if present.
// The codec refuses trailing bytes and every disk format frames a hard
// state on its own (a file, or a length-prefixed record), so a missing
// field can only mean the old layout.
impl<'de> Deserialize<'de> for HardState {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = HardState;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a hard state (term, vote, recovery)")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<HardState, A::Error> {
                use serde::de::Error;
                let term = seq
                    .next_element()?
                    .ok_or_else(|| A::Error::invalid_length(0, &self))?;
                let voted_for = seq
                    .next_element()?
                    .ok_or_else(|| A::Error::invalid_length(1, &self))?;
                // Absent in the old layout: the sequence ends (self-describing
                // formats), or the input does (bincode).
                let recovery = seq.next_element().ok().flatten().unwrap_or_default();
                Ok(HardState {
                    term,
                    voted_for,
                    recovery,
                })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<HardState, A::Error> {
                use serde::de::Error;
                let (mut term, mut voted_for, mut recovery) = (None, None, None);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "term" => term = Some(map.next_value()?),
                        "voted_for" => voted_for = Some(map.next_value()?),
                        "recovery" => recovery = Some(map.next_value()?),
                        _ => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(HardState {
                    term: term.ok_or_else(|| A::Error::missing_field("term"))?,
                    voted_for: voted_for.unwrap_or_default(),
                    recovery: recovery.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("HardState", &["term", "voted_for", "recovery"], Visitor)
    }
}

/// Identifies one [`Action::Persist`](crate::Action::Persist) write.
///
/// Write ids grow by one with every write the node asks for. The host
/// reports durability with [`Input::Persisted`](crate::Input::Persisted)
/// naming the highest id whose write, and every write before it, is durable.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct WriteId(pub u64);

#[cfg(test)]
mod tests {
    use super::*;

    /// A hard state written before `recovery` existed (term and vote
    /// only) still reads back, as one that never lost storage; the new
    /// layout round-trips.
    #[test]
    #[cfg(feature = "codec")]
    fn a_hard_state_of_the_old_layout_decodes() {
        #[derive(Serialize)]
        struct OldHardState {
            term: Term,
            voted_for: Option<NodeId>,
        }
        let old = crate::codec::encode(&OldHardState {
            term: 7,
            voted_for: Some(3),
        })
        .unwrap();
        let decoded: HardState = crate::codec::decode(&old, 1024).unwrap();
        assert_eq!(decoded, HardState::new(7, Some(3)));
        let recovering = HardState {
            term: 9,
            voted_for: None,
            recovery: StorageRecovery::CatchingUp {
                floor: LogPosition::new(40, 3),
                term: 9,
            },
        };
        let bytes = crate::codec::encode(&recovering).unwrap();
        let decoded: HardState = crate::codec::decode(&bytes, 1024).unwrap();
        assert_eq!(decoded, recovering);
        // A damaged third field is refused, not read as "no recovery".
        let mut damaged = bytes.clone();
        damaged.push(0xff);
        assert!(crate::codec::decode::<HardState>(&damaged, 1024).is_err());
    }

    /// The log, every write, every AppendEntries and every `Apply` move and
    /// clone entries: a rare variant must not widen them all (an inline
    /// configuration made every entry 120 bytes).
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn an_entry_is_its_position_and_two_payload_words() {
        assert!(
            std::mem::size_of::<Entry>() <= 56,
            "Entry grew to {} bytes",
            std::mem::size_of::<Entry>()
        );
    }
}
