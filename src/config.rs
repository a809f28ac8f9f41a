//! Static configuration of one replica, and its validation.

use std::collections::{BTreeMap, BTreeSet};

use thiserror::Error;

use crate::types::NodeId;

/// Configuration of one replica. Every limit is explicit so that nothing in
/// the node grows without bound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// This replica's id. Must be non-zero and one of `voters`.
    pub id: NodeId,
    /// The voting members the cluster starts with (the configuration
    /// before any membership entry in the log; later configurations come
    /// from the log). A new cluster's replicas list every voter, themselves
    /// included; a replica joining a running cluster lists its current
    /// voters and itself in `learners`.
    pub voters: BTreeSet<NodeId>,
    /// The learners the cluster starts with (see `voters`): they receive
    /// the log but never vote.
    pub learners: BTreeSet<NodeId>,
    /// The witnesses among `voters`: voters that store the log and vote
    /// but never apply it and never lead (see the crate's membership
    /// documentation for the trade-off). A node whose own id is listed
    /// here *is* a witness: it never applies, restores or snapshots the
    /// state machine and never campaigns, whatever configuration it later
    /// sees. A witness joining a running cluster (to be added with
    /// [`MembershipChange::AddWitness`](crate::MembershipChange::AddWitness))
    /// lists the cluster's voters in `voters` and itself here alone.
    pub witnesses: BTreeSet<NodeId>,
    /// Leave a joint configuration as soon as it commits (the default).
    /// When off, the leader stays in C_old,new until the host proposes
    /// [`MembershipChange::LeaveJoint`](crate::MembershipChange::LeaveJoint)
    /// (etcd's explicit transition), refusing other changes meanwhile.
    pub auto_leave_joint: bool,
    /// A learner is promoted to voter only when its log is at most this
    /// many entries behind the leader's.
    pub promote_lag_entries_max: u64,
    /// Lower bound of the randomised election timeout.
    pub election_timeout_min_ticks: u32,
    /// Upper bound (exclusive) of the randomised election timeout.
    pub election_timeout_max_ticks: u32,
    /// How often a leader sends heartbeats. Must be below
    /// `election_timeout_min_ticks`, or followers would time out between
    /// heartbeats.
    pub heartbeat_interval_ticks: u32,
    /// Run a pre-election (thesis §9.6) before incrementing the term, so a
    /// node that was partitioned away cannot disrupt a healthy leader.
    pub pre_vote: bool,
    /// A leader steps down when it has not heard from a quorum for an
    /// election timeout, and followers that heard from a leader within the
    /// minimum election timeout refuse to vote for anyone else. (A leader
    /// that is not a voter in its own configuration, one removing itself,
    /// steps down this way even when this is off.)
    pub check_quorum: bool,
    /// A leadership transfer the target has not completed within this
    /// many ticks is given up and the leader serves again. `None`:
    /// `election_timeout_min_ticks`.
    pub transfer_timeout_ticks: Option<u32>,
    /// Election priority of each node (absent means 0). When the node with
    /// the highest priority is healthy and caught up, the leader hands
    /// leadership to it. All nodes must be given the same map.
    pub priorities: BTreeMap<NodeId, u32>,
    /// Most entries in one AppendEntries message.
    pub append_entries_max: usize,
    /// Most payload bytes in one AppendEntries message (at least one entry
    /// is always sent, whatever its size).
    pub append_bytes_max: usize,
    /// Most AppendEntries messages in flight to one follower.
    pub inflight_messages_max: usize,
    /// A leader refuses proposals while this many entries are uncommitted.
    pub uncommitted_entries_max: u64,
    /// Most entries in one [`Action::Apply`](crate::Action::Apply).
    pub apply_batch_entries_max: usize,
    /// Most writes handed to the host and not yet reported durable. Past it
    /// the node refuses proposals and drops incoming appends (the leader
    /// will retry), rather than queueing without bound.
    pub unpersisted_writes_max: usize,
    /// Seed of this node's PRNG, which draws election timeouts. Give every
    /// start of a node a different seed (the simulator derives one per
    /// incarnation; the tokio runtime mixes in the start time): it also
    /// numbers a follower's read-index requests, so that a leader's answer
    /// to an earlier incarnation, delayed across a restart, is never taken
    /// for an answer to this one.
    pub seed: u64,
    /// Ask the host for a snapshot once this many entries were applied
    /// since the last one. `None` (the default): never by entry count.
    pub compaction_threshold_entries: Option<u64>,
    /// Ask the host for a snapshot once the entries applied since the last
    /// one total this many bytes (as counted by
    /// [`Entry::size_bytes`](crate::Entry::size_bytes)). `None` (the
    /// default): never by size.
    pub compaction_threshold_bytes: Option<u64>,
    /// Entries kept in memory below a new snapshot, so that a follower a
    /// little behind is caught up from the log rather than by a snapshot.
    /// The log's base moves to the snapshot index minus this.
    pub compaction_trailing_entries: u64,
    /// Most snapshot bytes in one InstallSnapshot chunk.
    pub snapshot_chunk_bytes_max: usize,
    /// Most snapshot chunks in flight to one follower (at most
    /// `inflight_messages_max`). With the chunk size, this bounds the
    /// memory a transfer holds in the hosts and the network:
    /// `snapshot_chunk_bytes_max × snapshot_chunks_inflight_max` per
    /// follower (4 MiB by default), and how much of a round trip's
    /// bandwidth a transfer can use.
    pub snapshot_chunks_inflight_max: usize,
    /// Largest snapshot a follower assembles from a leader's chunks; a
    /// transfer announcing more is refused. 0 refuses every non-empty
    /// snapshot (for a host that cannot store snapshots).
    pub snapshot_bytes_max: u64,
    /// Lease reads (see [`ReadPath::Lease`](crate::ReadPath::Lease)): a
    /// leader serves a read without a round trip while fewer than this
    /// many of its ticks have passed since it sent a heartbeat that a
    /// quorum answered. 0 (the default) turns leases off: `Lease` reads
    /// are then served as ReadIndex reads.
    ///
    /// **What this assumes of clocks.** A follower refuses to vote for
    /// another leader for `election_timeout_min_ticks` of *its* ticks after
    /// a heartbeat arrives; the lease counts the leader's ticks from when
    /// it sent that heartbeat. The lease is safe as long as, over any span
    /// of real time, no node's tick count falls short of another's by
    /// `clock_drift_bound_ticks` or more per `election_timeout_min_ticks`
    /// ticks: every node's ticks must follow real time within that rate,
    /// and a host that stalls (a paused process, a suspended VM) must
    /// deliver the ticks it missed before any other input. Validation
    /// requires `lease_read_ticks + clock_drift_bound_ticks <
    /// election_timeout_min_ticks`, and CheckQuorum, which provides the
    /// followers' refusal to vote. With lease reads on, a restarted node
    /// (one that recovered a term) also refuses votes for its first
    /// minimum election timeout: it may have answered a heartbeat just
    /// before it went down.
    pub lease_read_ticks: u32,
    /// The declared bound on clock drift that `lease_read_ticks` must
    /// leave room for, in ticks per `election_timeout_min_ticks` ticks
    /// (e.g. with clocks within ±10 % of real time and a minimum timeout
    /// of 10 ticks, tick counts can drift apart by about 20 %: 2 ticks,
    /// so the lease can be at most 7 ticks).
    pub clock_drift_bound_ticks: u32,
    /// Most reads waiting at once on this node (for confirmation, for the
    /// leader's answer, or for the state machine); more are refused with
    /// [`ReadError::Backpressure`](crate::ReadError::Backpressure).
    pub read_requests_pending_max: usize,
    /// A node that starts with empty storage does not vote until enough
    /// of its peers have told it what it may have promised before: empty
    /// storage may be storage that was lost (a replaced disk), and a voter
    /// that forgot its acknowledgements can elect a leader that lacks
    /// committed entries. A new cluster, whose replicas all start empty,
    /// finds that out from the same answers and votes at once. On by
    /// default; turn it off only where storage cannot be lost on its own
    /// (every replica in one process's memory, as in some tests).
    /// See [`StorageRecovery`](crate::StorageRecovery).
    pub recover_empty_storage: bool,
}

impl Config {
    /// A configuration with sensible defaults for node `id` in a cluster of
    /// `voters`: election timeout 10..20 ticks, heartbeat every 2 ticks,
    /// PreVote and CheckQuorum on, seed derived from `id`, no automatic
    /// compaction (1024 trailing entries once it is on), 1 MiB snapshot
    /// chunks, snapshots up to 1 GiB accepted.
    pub fn new(id: NodeId, voters: impl IntoIterator<Item = NodeId>) -> Self {
        Config {
            id,
            voters: voters.into_iter().collect(),
            learners: BTreeSet::new(),
            witnesses: BTreeSet::new(),
            auto_leave_joint: true,
            promote_lag_entries_max: 64,
            election_timeout_min_ticks: 10,
            election_timeout_max_ticks: 20,
            heartbeat_interval_ticks: 2,
            pre_vote: true,
            check_quorum: true,
            transfer_timeout_ticks: None,
            priorities: BTreeMap::new(),
            append_entries_max: 1024,
            append_bytes_max: 1024 * 1024,
            inflight_messages_max: 256,
            uncommitted_entries_max: 65_536,
            apply_batch_entries_max: 4096,
            unpersisted_writes_max: 4096,
            seed: id,
            compaction_threshold_entries: None,
            compaction_threshold_bytes: None,
            compaction_trailing_entries: 1024,
            snapshot_chunk_bytes_max: 1024 * 1024,
            snapshot_chunks_inflight_max: 4,
            snapshot_bytes_max: 1024 * 1024 * 1024,
            lease_read_ticks: 0,
            clock_drift_bound_ticks: 2,
            read_requests_pending_max: 4096,
            recover_empty_storage: true,
        }
    }

    /// Checks every field, returning the first problem found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.id == 0 {
            return Err(ConfigError::ZeroNodeId);
        }
        if self.voters.is_empty() {
            return Err(ConfigError::NoVoters);
        }
        if self.voters.contains(&0) || self.learners.contains(&0) {
            return Err(ConfigError::ZeroNodeId);
        }
        if let Some(id) = self.learners.iter().find(|id| self.voters.contains(id)) {
            return Err(ConfigError::VoterAndLearner { id: *id });
        }
        if self.witnesses.contains(&0) {
            return Err(ConfigError::ZeroNodeId);
        }
        if let Some(id) = self.learners.iter().find(|id| self.witnesses.contains(id)) {
            return Err(ConfigError::WitnessLearner { id: *id });
        }
        // Only this node itself may be a witness outside `voters`: one
        // joining a running cluster.
        if let Some(id) = self
            .witnesses
            .iter()
            .find(|id| !self.voters.contains(id) && **id != self.id)
        {
            return Err(ConfigError::WitnessNotVoter { id: *id });
        }
        let full_voters = self
            .voters
            .iter()
            .filter(|id| !self.witnesses.contains(id))
            .count();
        if full_voters < crate::quorum::majority(self.voters.len()) {
            return Err(ConfigError::NoFullVoterQuorum {
                voters: self.voters.len(),
                full_voters,
            });
        }
        if !self.voters.contains(&self.id)
            && !self.learners.contains(&self.id)
            && !self.witnesses.contains(&self.id)
        {
            return Err(ConfigError::SelfNotVoter { id: self.id });
        }
        let zeros = [
            (
                "transfer_timeout_ticks",
                self.transfer_timeout_ticks == Some(0),
            ),
            (
                "election_timeout_min_ticks",
                self.election_timeout_min_ticks == 0,
            ),
            (
                "heartbeat_interval_ticks",
                self.heartbeat_interval_ticks == 0,
            ),
        ];
        if let Some((field, _)) = zeros.into_iter().find(|(_, zero)| *zero) {
            return Err(ConfigError::Zero { field });
        }
        if self.election_timeout_max_ticks <= self.election_timeout_min_ticks {
            return Err(ConfigError::ElectionTimeoutRange {
                min: self.election_timeout_min_ticks,
                max: self.election_timeout_max_ticks,
            });
        }
        if self.heartbeat_interval_ticks >= self.election_timeout_min_ticks {
            return Err(ConfigError::HeartbeatNotBelowElectionTimeout {
                heartbeat: self.heartbeat_interval_ticks,
                election: self.election_timeout_min_ticks,
            });
        }
        if self.lease_read_ticks > 0 {
            if !self.check_quorum {
                return Err(ConfigError::LeaseWithoutCheckQuorum);
            }
            let needed = u64::from(self.lease_read_ticks) + u64::from(self.clock_drift_bound_ticks);
            if needed >= u64::from(self.election_timeout_min_ticks) {
                return Err(ConfigError::LeaseTooLong {
                    lease: self.lease_read_ticks,
                    drift: self.clock_drift_bound_ticks,
                    election: self.election_timeout_min_ticks,
                });
            }
        }
        let limits: [(&'static str, u64); 11] = [
            (
                "read_requests_pending_max",
                self.read_requests_pending_max as u64,
            ),
            ("append_entries_max", self.append_entries_max as u64),
            ("append_bytes_max", self.append_bytes_max as u64),
            ("inflight_messages_max", self.inflight_messages_max as u64),
            ("uncommitted_entries_max", self.uncommitted_entries_max),
            (
                "apply_batch_entries_max",
                self.apply_batch_entries_max as u64,
            ),
            ("unpersisted_writes_max", self.unpersisted_writes_max as u64),
            (
                "snapshot_chunk_bytes_max",
                self.snapshot_chunk_bytes_max as u64,
            ),
            (
                "snapshot_chunks_inflight_max",
                self.snapshot_chunks_inflight_max as u64,
            ),
            (
                "compaction_threshold_entries",
                self.compaction_threshold_entries.unwrap_or(1),
            ),
            (
                "compaction_threshold_bytes",
                self.compaction_threshold_bytes.unwrap_or(1),
            ),
        ];
        for (field, value) in limits {
            if value == 0 {
                return Err(ConfigError::Zero { field });
            }
        }
        if let Some(id) = self.priorities.keys().find(|id| !self.voters.contains(id)) {
            return Err(ConfigError::PriorityForUnknownNode { id: *id });
        }
        Ok(())
    }

    /// [`Config::new`] for voters as a user lists them: refuses an id
    /// listed twice (which `new` would silently merge), then validates.
    pub fn try_new(id: NodeId, voters: &[NodeId]) -> Result<Self, ConfigError> {
        let mut seen = BTreeSet::new();
        if let Some(duplicate) = voters.iter().find(|voter| !seen.insert(**voter)) {
            return Err(ConfigError::DuplicateId { id: *duplicate });
        }
        let config = Config::new(id, voters.iter().copied());
        config.validate()?;
        Ok(config)
    }

    /// Ticks after which a leadership transfer is given up.
    pub fn transfer_timeout_ticks(&self) -> u32 {
        self.transfer_timeout_ticks
            .unwrap_or(self.election_timeout_min_ticks)
    }

    /// Priority of `id` (0 when not configured).
    pub fn priority_of(&self, id: NodeId) -> u32 {
        self.priorities.get(&id).copied().unwrap_or(0)
    }
}

/// Why a [`Node`](crate::Node) could not be built.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Node id 0 is reserved for "nobody".
    #[error("node id 0 is reserved; give every node an id of 1 or more")]
    ZeroNodeId,
    /// The voter set is empty.
    #[error("the voter set is empty; list every member of the cluster in `voters`")]
    NoVoters,
    /// A node is listed twice (see [`Config::try_new`]).
    #[error("node {id} is listed more than once in `voters`; list every voter once")]
    DuplicateId {
        /// The node listed twice.
        id: NodeId,
    },
    /// A node is listed both in `voters` and in `learners`.
    #[error("node {id} is in both `voters` and `learners`; list it once")]
    VoterAndLearner {
        /// The node listed twice.
        id: NodeId,
    },
    /// A node is listed both in `learners` and in `witnesses`.
    #[error("node {id} is in both `learners` and `witnesses`; list it in one of them (a witness is a voter without a state machine, so it cannot be a learner)")]
    WitnessLearner {
        /// The node listed twice.
        id: NodeId,
    },
    /// A witness other than this node is not in `voters`.
    #[error("node {id} is in `witnesses` but not in `voters`; list the cluster's witnesses among its voters (only a node joining as a witness lists itself alone)")]
    WitnessNotVoter {
        /// The node.
        id: NodeId,
    },
    /// The full (non-witness) voters are not a majority of `voters`.
    #[error("only {full_voters} of the {voters} voters are full (non-witness) voters, not a majority: some quorum would hold no full voter; list fewer witnesses")]
    NoFullVoterQuorum {
        /// Number of voters.
        voters: usize,
        /// How many of them are not witnesses.
        full_voters: usize,
    },
    /// This node is not in its own voter set.
    #[error("node {id} is not in `voters`, `learners` or `witnesses`; a node must be a member of the cluster it serves")]
    SelfNotVoter {
        /// This node's id.
        id: NodeId,
    },
    /// A limit or interval that must be positive is zero.
    #[error("`{field}` is 0; it must be at least 1")]
    Zero {
        /// The offending field.
        field: &'static str,
    },
    /// The election timeout range is empty.
    #[error("election timeout range {min}..{max} ticks is empty; `election_timeout_max_ticks` must exceed the minimum")]
    ElectionTimeoutRange {
        /// Configured minimum.
        min: u32,
        /// Configured maximum.
        max: u32,
    },
    /// Heartbeats would not arrive before followers time out.
    #[error("heartbeat interval {heartbeat} ticks is not below the election timeout {election} ticks; followers would start elections between heartbeats")]
    HeartbeatNotBelowElectionTimeout {
        /// Configured heartbeat interval.
        heartbeat: u32,
        /// Configured minimum election timeout.
        election: u32,
    },
    /// A priority names a node outside the voter set.
    #[error("a priority is given for node {id}, which is not in `voters`")]
    PriorityForUnknownNode {
        /// The unknown node.
        id: NodeId,
    },
    /// Lease reads need CheckQuorum.
    #[error("`lease_read_ticks` is set but `check_quorum` is off; leases rely on followers refusing votes while they hear from a leader, which CheckQuorum provides")]
    LeaseWithoutCheckQuorum,
    /// The lease leaves no room for the declared clock drift.
    #[error("lease of {lease} ticks plus the clock drift bound of {drift} ticks is not below the minimum election timeout of {election} ticks; shorten `lease_read_ticks` or lengthen the election timeout")]
    LeaseTooLong {
        /// Configured `lease_read_ticks`.
        lease: u32,
        /// Configured `clock_drift_bound_ticks`.
        drift: u32,
        /// Configured `election_timeout_min_ticks`.
        election: u32,
    },
    /// The recovered state is inconsistent.
    #[error("recovered state is invalid: {reason}; the data directory may be corrupt or belong to another node")]
    InvalidRecoveredState {
        /// What is wrong with it.
        reason: String,
    },
}
