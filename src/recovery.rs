//! Forced recovery: rebuilding a cluster from one surviving server after a
//! majority of its voters is lost for good. **Unsafe by design.**
//!
//! Raft stays safe only while a majority of the voters keeps its disks. When
//! a majority is destroyed (disks gone, machines never coming back) no
//! quorum can ever form again, and the normal membership change cannot run:
//! it needs that quorum to commit. The only way back to service is to tell
//! one survivor, out of band, that it alone is the cluster now.
//!
//! [`plan_forced_recovery`] takes the survivor's durable state (as its host
//! reads it back, a [`Recovered`]) and returns the writes that do it:
//!
//! * a hard state whose term is past every term the survivor has seen, with
//!   no vote, so nothing it promised before is contradicted and the forced
//!   entry below cannot share an (index, term) with any entry a leader of
//!   an earlier term made — Log Matching keeps holding across the recovery;
//! * one log entry at the next index, of that new term, carrying the new
//!   configuration (the survivor alone, or a voter set the operator names
//!   that includes it) together with an audit record ([`ForcedRecovery`]):
//!   the previous configuration, the survivor's last log position and the
//!   commit index its durable state shows, and the operator's reason.
//!
//! The host writes both durably (hard state first, then the entry — the
//! forced entry must never be durable under the old term) and then starts
//! the node as usual. A configuration is in force from the moment its entry
//! is in the log, so the node starts as a sole voter, elects itself and
//! commits everything in its log, the forced entry included.
//!
//! What this costs: entries the lost majority committed (and so
//! acknowledged to clients) that never reached the survivor are gone; the
//! survivor's uncommitted entries beyond its known commit index are kept and
//! now committed, although no client may have been told they succeeded.
//! Normal configuration-change rules (one change at a time, joint
//! consensus, quorum of the old configuration) are bypassed, and only here.
//! If a "lost" server comes back after all it must be wiped before it
//! rejoins: with its old log it could disagree with the recovered cluster.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::membership::{Membership, MembershipError};
use crate::recovered::Recovered;
use crate::types::{Entry, EntryPayload, HardState, Index, LogPosition, NodeId, Term};

/// Longest operator reason stored in the audit record, in bytes.
pub const FORCED_RECOVERY_REASON_BYTES_MAX: usize = 512;

/// The audit record of a forced recovery, stored in the log with the forced
/// configuration ([`EntryPayload::ForcedMembership`]) and replicated with it,
/// so every node that later holds the entry can say when and why the
/// cluster was rebuilt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForcedRecovery {
    /// The server the cluster was rebuilt from.
    pub survivor: NodeId,
    /// The configuration forced (no joint phase, no witness).
    pub membership: Membership,
    /// The configuration in force on the survivor before, when its durable
    /// state or the caller knew it.
    pub previous: Option<Membership>,
    /// The survivor's last log entry before the forced one.
    pub last_before: LogPosition,
    /// The highest index the survivor knew committed (what its durable
    /// state shows: its applied index, a lower bound of the cluster's
    /// commit index). Entries after it up to `last_before` were kept and
    /// are committed by the recovery.
    pub commit_index_before: Index,
    /// The survivor's term before the recovery.
    pub term_before: Term,
    /// Why the operator forced it (at most
    /// [`FORCED_RECOVERY_REASON_BYTES_MAX`] bytes).
    pub reason: String,
}

impl ForcedRecovery {
    /// Bytes counted by batching limits.
    pub(crate) fn len_bytes(&self) -> usize {
        self.membership.len_bytes()
            + self.previous.as_ref().map_or(0, Membership::len_bytes)
            + 40
            + self.reason.len()
    }
}

impl fmt::Display for ForcedRecovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "forced from survivor {} to voters {:?}; its log then ended at index {} term {} with commit index {} (term {})",
            self.survivor,
            self.membership.voters,
            self.last_before.index,
            self.last_before.term,
            self.commit_index_before,
            self.term_before,
        )?;
        if let Some(previous) = &self.previous {
            write!(f, "; previous voters {:?}", previous.voters)?;
            if previous.is_joint() {
                write!(f, " (joint with {:?})", previous.voters_outgoing)?;
            }
        }
        write!(f, "; reason: {:?}", self.reason)
    }
}

/// What the operator asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForcedRecoveryRequest {
    /// The surviving server whose durable state is rewritten.
    pub survivor: NodeId,
    /// The voters of the forced configuration; empty means the survivor
    /// alone. Must include the survivor. Other voters listed must be able
    /// to join with an empty disk, and until a majority of them is up
    /// nothing commits: forcing the survivor alone, then adding servers
    /// with the ordinary membership changes, is the usual path.
    pub voters: BTreeSet<NodeId>,
    /// Why (kept in the log; required, at most
    /// [`FORCED_RECOVERY_REASON_BYTES_MAX`] bytes).
    pub reason: String,
    /// The configuration the survivor started with, used as the previous
    /// configuration when neither its log nor its snapshot holds one.
    pub startup_membership: Option<Membership>,
}

/// The writes a forced recovery makes: store `hard_state` durably, then
/// append `entry` durably, in that order, before starting the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForcedRecoveryPlan {
    /// The new term, no vote.
    pub hard_state: HardState,
    /// The forced configuration entry, at the index after the survivor's
    /// last entry and of the new term.
    pub entry: Entry,
    /// The audit record the entry carries.
    pub audit: ForcedRecovery,
}

impl ForcedRecoveryPlan {
    /// The survivor's entries its durable state does not show committed:
    /// kept, and committed by the recovery although no client may have been
    /// told they succeeded. Empty when it knew everything committed.
    pub fn uncommitted_kept(&self) -> std::ops::RangeInclusive<Index> {
        self.audit.commit_index_before + 1..=self.audit.last_before.index
    }

    /// Applies the plan to a recovered state in memory (what a host whose
    /// disk is simulated does; a real host writes the same through its
    /// storage).
    pub fn apply_to(&self, recovered: &mut Recovered) {
        recovered.hard_state = self.hard_state;
        recovered.entries.push(self.entry.clone());
    }
}

/// Why a forced recovery is refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RecoveryError {
    /// No reason was given.
    #[error("give a reason for the forced recovery; it is kept in the log for audit")]
    ReasonEmpty,
    /// The reason is too long.
    #[error("the reason is {bytes} bytes; keep it to at most {max} bytes")]
    ReasonTooLong {
        /// Its length.
        bytes: usize,
        /// [`FORCED_RECOVERY_REASON_BYTES_MAX`].
        max: usize,
    },
    /// The survivor is not among the voters asked for.
    #[error("the survivor {id} must be one of the forced voters; list it or list none (the survivor alone)")]
    SurvivorNotVoter {
        /// The survivor.
        id: NodeId,
    },
    /// The survivor is a witness: it holds no state machine and never
    /// leads, so the cluster cannot be rebuilt from it.
    #[error("node {id} is a witness in the configuration in force; a witness holds no data and cannot lead, recover from a full voter instead")]
    SurvivorWitness {
        /// The survivor.
        id: NodeId,
    },
    /// The forced configuration is not valid.
    #[error("the forced configuration is not valid: {0}")]
    Membership(#[from] MembershipError),
    /// The survivor's term is at its maximum.
    #[error("the survivor's term is at its maximum; it cannot be raised past it")]
    TermExhausted,
    /// The survivor's log already ends with this very forced recovery, and
    /// its term was not raised since: doing it again would change nothing.
    #[error("the survivor's log already ends with a forced recovery to these voters (index {index}, term {term}); start the node")]
    AlreadyRecovered {
        /// Index of the forced entry.
        index: Index,
        /// Its term.
        term: Term,
    },
}

/// The writes that force `request`'s configuration on the survivor whose
/// durable state is `recovered` (see the [module documentation](self)).
pub fn plan_forced_recovery(
    recovered: &Recovered,
    request: &ForcedRecoveryRequest,
) -> Result<ForcedRecoveryPlan, RecoveryError> {
    check_reason(&request.reason)?;
    let membership = forced_membership(request)?;
    let last_before = last_position(recovered);
    if let Some(entry) = recovered.entries.last() {
        if let EntryPayload::ForcedMembership(done) = &entry.payload {
            if done.survivor == request.survivor
                && done.membership == membership
                && recovered.hard_state.term == entry.term
            {
                return Err(RecoveryError::AlreadyRecovered {
                    index: entry.index,
                    term: entry.term,
                });
            }
        }
    }
    let previous = membership_in_force(recovered).or_else(|| request.startup_membership.clone());
    if previous
        .as_ref()
        .is_some_and(|previous| previous.is_witness(request.survivor))
    {
        return Err(RecoveryError::SurvivorWitness {
            id: request.survivor,
        });
    }
    let term_before = recovered.hard_state.term;
    let term = term_before
        .max(last_before.term)
        .checked_add(1)
        .ok_or(RecoveryError::TermExhausted)?;
    let audit = ForcedRecovery {
        survivor: request.survivor,
        membership: forced_learners(membership, previous.as_ref()),
        previous,
        last_before,
        commit_index_before: recovered.applied_index.max(recovered.base.index),
        term_before,
        reason: request.reason.clone(),
    };
    Ok(ForcedRecoveryPlan {
        hard_state: HardState::new(term, None),
        entry: Entry {
            term,
            index: last_before.index + 1,
            payload: EntryPayload::ForcedMembership(Box::new(audit.clone())),
        },
        audit,
    })
}

/// The latest forced recovery recorded in `entries`, with its entry's
/// position.
pub fn last_forced_recovery<'a>(
    entries: impl DoubleEndedIterator<Item = &'a Entry>,
) -> Option<(LogPosition, &'a ForcedRecovery)> {
    entries.rev().find_map(|entry| match &entry.payload {
        EntryPayload::ForcedMembership(audit) => Some((entry.position(), audit.as_ref())),
        _ => None,
    })
}

fn check_reason(reason: &str) -> Result<(), RecoveryError> {
    if reason.trim().is_empty() {
        return Err(RecoveryError::ReasonEmpty);
    }
    if reason.len() > FORCED_RECOVERY_REASON_BYTES_MAX {
        return Err(RecoveryError::ReasonTooLong {
            bytes: reason.len(),
            max: FORCED_RECOVERY_REASON_BYTES_MAX,
        });
    }
    Ok(())
}

/// The voters asked for, checked: the survivor among them, no id 0.
fn forced_membership(request: &ForcedRecoveryRequest) -> Result<Membership, RecoveryError> {
    let mut voters = request.voters.clone();
    if voters.is_empty() {
        voters.insert(request.survivor);
    }
    if !voters.contains(&request.survivor) {
        return Err(RecoveryError::SurvivorNotVoter {
            id: request.survivor,
        });
    }
    let membership = Membership::new(voters);
    membership.validate()?;
    Ok(membership)
}

/// Learners of the previous configuration stay learners: they never
/// counted toward a quorum, and one that survived can catch up again.
fn forced_learners(mut membership: Membership, previous: Option<&Membership>) -> Membership {
    if let Some(previous) = previous {
        membership.learners = previous
            .learners
            .iter()
            .copied()
            .filter(|id| !membership.voters.contains(id))
            .collect();
    }
    membership
}

fn last_position(recovered: &Recovered) -> LogPosition {
    recovered
        .entries
        .last()
        .map_or(recovered.base, Entry::position)
}

/// The configuration in force at the end of the recovered log, if the log
/// or the snapshot under it holds one.
fn membership_in_force(recovered: &Recovered) -> Option<Membership> {
    recovered
        .entries
        .iter()
        .rev()
        .find_map(|entry| entry.payload.membership().cloned())
        .or_else(|| recovered.membership.clone())
}

impl crate::node::Node {
    /// The latest forced recovery in this node's log, with its entry's
    /// position: what status pages show ("forced recovery at index I, term
    /// T, reason ..."). `None` when there was none, or its entry was
    /// compacted into a snapshot since this node started.
    pub fn last_forced_recovery(&self) -> Option<(LogPosition, &ForcedRecovery)> {
        self.memberships.keys().rev().find_map(|&index| {
            let entry = self.entry(index)?;
            match &entry.payload {
                EntryPayload::ForcedMembership(audit) => Some((entry.position(), audit.as_ref())),
                _ => None,
            }
        })
    }
}
