//! A node's whole state as a model checker needs to see it: fed to a
//! [`Hasher`] so that two nodes that would behave alike from now on hash
//! alike ([`Node::hash_state`]), optionally under a renaming of node ids
//! (symmetry reduction).
//!
//! What is left out, and why that cannot change what a node does:
//!
//! * [`Statistics`](crate::Statistics) and the quorum scratch buffer: they
//!   are written, never read to decide anything.
//! * The log's lookup hint: a cache checked before use.
//! * The count of a follower's log regressions a leader keeps: shown in
//!   the status, never read to decide anything.
//! * The absolute value of write ids (`next_write_id`): pending writes are
//!   hashed by their distance from the next id (see `Node::hash_state`).
//! * The absolute reading of the node's clock (`now_ticks`): the node only
//!   ever compares it with ticks it stored earlier (when a read round or a
//!   follower's read request was sent), so those are hashed as their age
//!   instead. Two nodes whose clocks started at different times but whose
//!   stored ticks are equally old do the same.
//! * The election-timeout PRNG's position, when the timeout range holds
//!   one value (the maximum is the minimum plus one): every draw then
//!   gives that value, so the position changes nothing. Otherwise it is
//!   hashed.
//!
//! Everything else is hashed, field by field: the functions below destructure
//! each struct whole, so a field added later fails to compile here until
//! someone decides how it is hashed.

use std::collections::BTreeMap;
use std::hash::Hasher;

use crate::config::Config;
use crate::membership::Membership;
use crate::node::{Node, PendingWrite, Role};
use crate::progress::{Progress, SnapshotTransfer};
use crate::read_index::{ForwardedRead, ReadPath, Reads, UnconfirmedRead};
use crate::recovery::ForcedRecovery;
use crate::snapshot::SnapshotMeta;
use crate::storage_loss::{RecoveryQuestions, ReportSeen};
use crate::types::{Entry, EntryPayload, HardState, LogPosition, NodeId, StorageRecovery};

/// A [`Hasher`] and the renaming of node ids applied to every id fed to it.
pub(crate) struct StateHasher<'a> {
    state: &'a mut dyn Hasher,
    rename: &'a dyn Fn(NodeId) -> NodeId,
}

impl StateHasher<'_> {
    pub(crate) fn u64(&mut self, value: u64) {
        self.state.write_u64(value);
    }

    pub(crate) fn bool(&mut self, value: bool) {
        self.state.write_u8(u8::from(value));
    }

    fn bytes(&mut self, bytes: &[u8]) {
        self.u64(bytes.len() as u64);
        self.state.write(bytes);
    }

    fn option(&mut self, value: Option<u64>) {
        match value {
            None => self.state.write_u8(0),
            Some(value) => {
                self.state.write_u8(1);
                self.u64(value);
            }
        }
    }

    pub(crate) fn id(&mut self, id: NodeId) {
        let renamed = (self.rename)(id);
        self.u64(renamed);
    }

    fn id_option(&mut self, id: Option<NodeId>) {
        let renamed = id.map(|id| (self.rename)(id));
        self.option(renamed);
    }

    /// A set of ids, renamed and then sorted: the renamed set.
    fn ids<'i>(&mut self, ids: impl IntoIterator<Item = &'i NodeId>) {
        let mut renamed: Vec<NodeId> = ids.into_iter().map(|id| (self.rename)(*id)).collect();
        renamed.sort_unstable();
        self.u64(renamed.len() as u64);
        for id in renamed {
            self.u64(id);
        }
    }

    /// A map keyed by node id, in the order of the renamed keys.
    fn by_id<'v, V: 'v>(
        &mut self,
        entries: impl IntoIterator<Item = (&'v NodeId, &'v V)>,
        mut value: impl FnMut(&mut Self, &V),
    ) {
        let mut renamed: Vec<(NodeId, &V)> = entries
            .into_iter()
            .map(|(id, v)| ((self.rename)(*id), v))
            .collect();
        renamed.sort_unstable_by_key(|(id, _)| *id);
        self.u64(renamed.len() as u64);
        for (id, v) in renamed {
            self.u64(id);
            value(self, v);
        }
    }

    pub(crate) fn position(&mut self, position: LogPosition) {
        self.u64(position.index);
        self.u64(position.term);
    }

    fn hard_state(&mut self, hard_state: HardState) {
        let HardState {
            term,
            voted_for,
            recovery,
        } = hard_state;
        self.u64(term);
        self.id_option(voted_for);
        self.recovery(recovery);
    }

    fn recovery(&mut self, recovery: StorageRecovery) {
        match recovery {
            StorageRecovery::None => self.u64(0),
            StorageRecovery::AwaitingReports => self.u64(1),
            StorageRecovery::CatchingUp { floor, term } => {
                self.u64(2);
                self.position(floor);
                self.u64(term);
            }
        }
    }

    fn recovery_questions(&mut self, questions: &RecoveryQuestions) {
        let RecoveryQuestions {
            nonce,
            elapsed_ticks,
            reports,
        } = questions;
        self.u64(*nonce);
        self.u64(u64::from(*elapsed_ticks));
        self.by_id(reports, |h, report| {
            let ReportSeen {
                recovering,
                term,
                last_log,
                configuration,
                membership,
            } = report;
            h.bool(*recovering);
            h.u64(*term);
            h.position(*last_log);
            h.position(*configuration);
            h.membership(membership);
        });
    }

    pub(crate) fn membership(&mut self, membership: &Membership) {
        let Membership {
            voters,
            voters_outgoing,
            learners,
            witnesses,
        } = membership;
        self.ids(voters);
        self.ids(voters_outgoing);
        self.ids(learners);
        self.ids(witnesses);
    }

    fn snapshot_meta(&mut self, meta: &SnapshotMeta) {
        let SnapshotMeta {
            position,
            size_bytes,
            checksum,
        } = meta;
        self.position(*position);
        self.u64(*size_bytes);
        self.u64(*checksum);
    }

    fn entry(&mut self, entry: &Entry) {
        let Entry {
            term,
            index,
            payload,
        } = entry;
        self.u64(*term);
        self.u64(*index);
        match payload {
            EntryPayload::Noop => self.u64(0),
            EntryPayload::Command(bytes) => {
                self.u64(1);
                self.bytes(bytes);
            }
            EntryPayload::Membership(membership) => {
                self.u64(2);
                self.membership(membership);
            }
            EntryPayload::Host(bytes) => {
                self.u64(3);
                self.bytes(bytes);
            }
            EntryPayload::ForcedMembership(forced) => {
                self.u64(4);
                let ForcedRecovery {
                    survivor,
                    membership,
                    previous,
                    last_before,
                    commit_index_before,
                    term_before,
                    reason,
                } = &**forced;
                self.id(*survivor);
                self.membership(membership);
                self.bool(previous.is_some());
                if let Some(previous) = previous {
                    self.membership(previous);
                }
                self.position(*last_before);
                self.u64(*commit_index_before);
                self.u64(*term_before);
                self.bytes(reason.as_bytes());
            }
        }
    }

    fn memberships(&mut self, memberships: &BTreeMap<u64, Membership>) {
        self.u64(memberships.len() as u64);
        for (index, membership) in memberships {
            self.u64(*index);
            self.membership(membership);
        }
    }

    fn config(&mut self, config: &Config) {
        let Config {
            id,
            voters,
            learners,
            witnesses,
            auto_leave_joint,
            promote_lag_entries_max,
            election_timeout_min_ticks,
            election_timeout_max_ticks,
            heartbeat_interval_ticks,
            pre_vote,
            check_quorum,
            transfer_timeout_ticks,
            priorities,
            append_entries_max,
            append_bytes_max,
            inflight_messages_max,
            uncommitted_entries_max,
            apply_batch_entries_max,
            unpersisted_writes_max,
            seed,
            compaction_threshold_entries,
            compaction_threshold_bytes,
            compaction_trailing_entries,
            snapshot_chunk_bytes_max,
            snapshot_chunks_inflight_max,
            snapshot_bytes_max,
            lease_read_ticks,
            clock_drift_bound_ticks,
            read_requests_pending_max,
            recover_empty_storage,
        } = config;
        self.id(*id);
        self.ids(voters);
        self.ids(learners);
        self.ids(witnesses);
        self.bool(*auto_leave_joint);
        self.u64(*promote_lag_entries_max);
        self.u64(u64::from(*election_timeout_min_ticks));
        self.u64(u64::from(*election_timeout_max_ticks));
        self.u64(u64::from(*heartbeat_interval_ticks));
        self.bool(*pre_vote);
        self.bool(*check_quorum);
        self.option(transfer_timeout_ticks.map(u64::from));
        self.by_id(priorities, |h, priority| h.u64(u64::from(*priority)));
        self.u64(*append_entries_max as u64);
        self.u64(*append_bytes_max as u64);
        self.u64(*inflight_messages_max as u64);
        self.u64(*uncommitted_entries_max);
        self.u64(*apply_batch_entries_max as u64);
        self.u64(*unpersisted_writes_max as u64);
        self.u64(*seed);
        self.option(*compaction_threshold_entries);
        self.option(*compaction_threshold_bytes);
        self.u64(*compaction_trailing_entries);
        self.u64(*snapshot_chunk_bytes_max as u64);
        self.u64(*snapshot_chunks_inflight_max as u64);
        self.u64(*snapshot_bytes_max);
        self.u64(u64::from(*lease_read_ticks));
        self.u64(u64::from(*clock_drift_bound_ticks));
        self.u64(*read_requests_pending_max as u64);
        self.bool(*recover_empty_storage);
    }

    fn progress(&mut self, progress: &Progress) {
        let Progress {
            id,
            match_index,
            next_index,
            state,
            probe_sent,
            recent_active,
            inflight,
            denials,
            denial_age_ticks,
            log_regressions: _,
            snapshot,
            read_round_acked,
            commit_owed,
        } = progress;
        self.u64(*id);
        self.u64(*match_index);
        self.u64(*next_index);
        self.u64(*state as u64);
        self.bool(*probe_sent);
        self.bool(*recent_active);
        inflight.hash_state(self);
        self.u64(u64::from(*denials));
        self.u64(u64::from(*denial_age_ticks));
        self.bool(snapshot.is_some());
        if let Some(transfer) = snapshot {
            let SnapshotTransfer {
                position,
                size_bytes,
                acked_offset,
                sent_offset,
                acked_offset_at_heartbeat,
            } = transfer;
            self.position(*position);
            self.u64(*size_bytes);
            self.u64(*acked_offset);
            self.u64(*sent_offset);
            self.u64(*acked_offset_at_heartbeat);
        }
        self.u64(*read_round_acked);
        self.bool(*commit_owed);
    }

    fn read_path(&mut self, path: ReadPath) {
        self.u64(path as u64);
    }

    /// The reads, with every stored tick as its age at `now_ticks`.
    fn reads(&mut self, reads: &Reads, now_ticks: u64) {
        let Reads {
            unconfirmed,
            forwarded,
            request_next,
            request_outstanding,
            awaiting_apply,
            sequence,
            round_next,
            round_sent_ticks,
            round_first,
            lease_round_min,
            // Read only by a planted mistake (`follower_read_index_reused`).
            last_answer: _,
        } = reads;
        self.u64(unconfirmed.len() as u64);
        for read in unconfirmed {
            let UnconfirmedRead {
                id,
                path,
                for_follower,
                round,
            } = read;
            self.u64(*id);
            self.read_path(*path);
            self.id_option(*for_follower);
            self.u64(*round);
        }
        self.u64(forwarded.len() as u64);
        for read in forwarded {
            let ForwardedRead { id, term, request } = read;
            self.u64(*id);
            self.u64(*term);
            self.u64(*request);
        }
        self.u64(*request_next);
        self.bool(request_outstanding.is_some());
        if let Some((request, sent_tick)) = request_outstanding {
            self.u64(*request);
            self.u64(now_ticks - sent_tick);
        }
        self.u64(awaiting_apply.len() as u64);
        for ((index, sequence), (id, path)) in awaiting_apply {
            self.u64(*index);
            self.u64(*sequence);
            self.u64(*id);
            self.read_path(*path);
        }
        self.u64(*sequence);
        self.u64(*round_next);
        self.u64(round_sent_ticks.len() as u64);
        for sent_tick in round_sent_ticks {
            self.u64(now_ticks - sent_tick);
        }
        self.u64(*round_first);
        self.u64(*lease_round_min);
    }
}

impl Node {
    /// Feeds this node's whole state to `state`: everything that can
    /// influence what it does from now on (its configuration, term, vote,
    /// role, log, timers, the leader's view of each follower, writes not
    /// yet reported durable, reads in progress, snapshot transfers), with
    /// every node id first mapped through `rename`. Nothing is changed.
    ///
    /// Made for model checkers that drive nodes through every interleaving
    /// of a small scope (`concord-sim explore`): two nodes that hash alike
    /// (with the identity as `rename`) answer every sequence of inputs
    /// alike, so a state seen before need not be explored again. Left out
    /// are only what cannot change a node's behaviour: its
    /// [`Statistics`](crate::Statistics) and the counters kept for its
    /// status, the absolute reading of its clock (ticks it stored are
    /// hashed as their age), the absolute value of write ids (pending
    /// writes are hashed by their distance from the next id), and the
    /// election-timeout PRNG when the timeout range holds a single value
    /// (see the `state_hash` module).
    ///
    /// With a permutation of the cluster's ids as `rename`, the result is
    /// that of the node whose ids were renamed so: a checker that hashes
    /// a whole cluster under every permutation and keeps the least value
    /// explores one cluster of each class of clusters that differ only by
    /// node names. That is sound when nothing else depends on the ids'
    /// values: concord breaks ties by id only between priorities
    /// ([`Config::priorities`](crate::Config::priorities)), and sends to
    /// peers in id order, which a host that delivers messages in any order
    /// does not see; [`Config::seed`](crate::Config::seed) must then not
    /// be derived from the id.
    pub fn hash_state<H: Hasher>(&self, rename: impl Fn(NodeId) -> NodeId, state: &mut H) {
        let mut h = StateHasher {
            state,
            rename: &rename,
        };
        let Node {
            config,
            role,
            term,
            voted_for,
            leader,
            log,
            rng,
            election_elapsed_ticks,
            heartbeat_elapsed_ticks,
            randomized_election_timeout_ticks,
            votes,
            progress,
            progress_ids_issued,
            leader_progress_id,
            transfer_target,
            transfer_elapsed_ticks,
            next_write_id,
            writes,
            persisted_index,
            durable_hard_state,
            emitted_index,
            pending_truncate,
            hard_state_dirty,
            leader_match_index,
            acked_index,
            ack_owed,
            pending_vote_grant,
            apply_emitted_index,
            applied_index,
            stats: _,
            scratch_indices: _,
            peer_ids,
            membership,
            membership_in_force_index,
            voter_here,
            memberships,
            known_nodes,
            removed_notice,
            deferred_memberships,
            commit_checked_persisted_index,
            snapshot,
            snapshot_membership,
            snapshot_index,
            snapshot_requested,
            snapshot_request_explicit,
            applied_since_snapshot_bytes,
            incoming_snapshot,
            reads,
            now_ticks,
            vote_hold_after_start,
            recovery,
            recovery_questions,
            divergence,
            #[cfg(feature = "planted-bugs")]
            planted,
        } = self;
        h.config(config);
        h.u64(match role {
            Role::Follower => 0,
            Role::PreCandidate => 1,
            Role::Candidate => 2,
            Role::Leader => 3,
        });
        h.u64(*term);
        h.id_option(*voted_for);
        h.id_option(*leader);
        log.hash_state(&mut h, |h, entry| h.entry(entry));
        if config.election_timeout_max_ticks - config.election_timeout_min_ticks > 1 {
            h.u64(rng.get_stream());
            let position = rng.get_word_pos();
            h.u64(position as u64);
            h.u64((position >> 64) as u64);
        }
        h.u64(u64::from(*election_elapsed_ticks));
        h.u64(u64::from(*heartbeat_elapsed_ticks));
        h.u64(u64::from(*randomized_election_timeout_ticks));
        h.by_id(votes, |h, granted| h.bool(*granted));
        h.by_id(progress.iter(), |h, progress| h.progress(progress));
        h.u64(*progress_ids_issued);
        h.u64(leader_progress_id.0);
        h.u64(leader_progress_id.1);
        h.id_option(*transfer_target);
        h.u64(u64::from(*transfer_elapsed_ticks));
        // Write ids only name writes: the node compares them with each
        // other and with the next id, never with anything else, and the
        // host hands back only ids it was given. So only their distance
        // from the next id is hashed: nodes that made different numbers of
        // writes so far, with the same writes pending, do the same.
        h.u64(writes.len() as u64);
        for write in writes {
            let PendingWrite {
                id,
                last_index,
                hard_state,
            } = write;
            h.u64(next_write_id - id.0);
            h.u64(*last_index);
            h.bool(hard_state.is_some());
            if let Some(hard_state) = hard_state {
                h.hard_state(*hard_state);
            }
        }
        h.u64(*persisted_index);
        h.hard_state(*durable_hard_state);
        h.u64(*emitted_index);
        h.option(*pending_truncate);
        h.bool(*hard_state_dirty);
        h.u64(*leader_match_index);
        h.u64(*acked_index);
        h.bool(*ack_owed);
        h.bool(pending_vote_grant.is_some());
        if let Some((candidate, term)) = pending_vote_grant {
            h.id(*candidate);
            h.u64(*term);
        }
        h.u64(*apply_emitted_index);
        h.u64(*applied_index);
        h.ids(peer_ids);
        h.membership(membership);
        h.u64(*membership_in_force_index);
        h.bool(*voter_here);
        h.memberships(memberships);
        h.ids(known_nodes);
        h.bool(removed_notice.is_some());
        if let Some(position) = removed_notice {
            h.position(*position);
        }
        h.memberships(deferred_memberships);
        h.u64(*commit_checked_persisted_index);
        h.bool(snapshot.is_some());
        if let Some(meta) = snapshot {
            h.snapshot_meta(meta);
        }
        h.membership(snapshot_membership);
        h.u64(*snapshot_index);
        h.bool(*snapshot_requested);
        h.bool(*snapshot_request_explicit);
        h.u64(*applied_since_snapshot_bytes);
        h.bool(incoming_snapshot.is_some());
        if let Some(incoming) = incoming_snapshot {
            incoming.hash_state(&mut h);
        }
        h.reads(reads, *now_ticks);
        h.bool(*vote_hold_after_start);
        h.recovery(*recovery);
        h.recovery_questions(recovery_questions);
        h.bool(divergence.is_some());
        if let Some(divergence) = divergence {
            h.u64(divergence.index);
            h.u64(divergence.local_term);
            h.u64(divergence.leader_term);
            h.id(divergence.leader);
        }
        #[cfg(feature = "planted-bugs")]
        {
            // Hashed as the bits of a plain struct of flags (see
            // `PlantedBugs`): `Hash` on it feeds them in order.
            std::hash::Hash::hash(planted, &mut h.state);
        }
    }
}
