//! The forced-recovery scenario: a majority of the voters is lost for good
//! and the cluster is rebuilt from one survivor with the core's
//! [`plan_forced_recovery`], the way an operator runs the offline tool.
//!
//! In the seeds that draw it (about a fifth of those without membership
//! churn, on 2 or more nodes, when the workload can account for lost
//! writes; `run --forced-recovery` forces it), at a drawn time during the
//! faults:
//!
//! 1. **Loss.** Every node but one is destroyed: crashed, its disk wiped,
//!    never restarted (the plan's restarts and the heal skip it), its Raft
//!    messages still in the network dropped from the recovery on (the
//!    runbook fences the lost machines' addresses). That is a majority of
//!    the voters or more; a lost node that was not in the majority is, as
//!    the runbook asks, wiped too and comes back, if at all, under a new
//!    id. Client replies a lost node sent before it died still arrive.
//! 2. **Recovery**, a drawn while later (the operator notices): the
//!    survivor (half the seeds: the one with the shortest durable log,
//!    the most likely to lack acknowledged writes; otherwise any node that
//!    is not a witness) is stopped, its durable state read back from its
//!    simulated disk, and the plan's two writes (hard state, then the
//!    forced entry) go through that disk and are synced before it starts
//!    again, a sole voter. In some seeds it crashes again just after.
//! 3. **Growth** (about 60 % of the seeds): one to three fresh nodes with
//!    new ids and empty disks join through the ordinary membership
//!    changes (add as learner, promote), one at a time.
//!
//! What the run reports: every acknowledged operation whose log entry
//! (index and term) the survivor did not hold when it was recovered, the
//! writes among them printed as the lost writes. Those, and only those,
//! are taken out of the acknowledged-write check (`checks`), and the
//! workload is told of them to check its history accordingly
//! ([`Workload::forced_recovery`]). An acknowledgement that arrives after
//! the recovery (a lost leader's reply still in the network) is classified
//! the same way when it arrives.
//!
//! What the safety checks relax, exactly, at the recovery (and nothing
//! else, nowhere else):
//!
//! * **committed entries the survivor did not hold are gone**: the
//!   cluster-wide committed log is cut at the first index where the
//!   survivor's log differs from it (or ends), with the responses applied
//!   there, the snapshot digests taken there and the host records there.
//!   Raft's "a committed entry never changes" holds again from then on
//!   for the survivor's history: its kept entries, committed by the
//!   recovery although no quorum ever held them, are checked like any new
//!   commit (log matching, state machine safety) from then on;
//! * **at most one leader per term** forgets the leaders of terms at or
//!   above the forced term: only lost nodes can have led them (the
//!   survivor never saw them; the forced term is past every term it
//!   saw), and no node that knew those leaders remains, so a new leader
//!   of such a term contradicts nobody;
//! * **sessions**: a client session registered, before the recovery,
//!   above the survivor's commit index (the audit record's
//!   `commit_index_before`) is expired by the session layer when it
//!   applies the forced entry (`concord::session`), whether or not the
//!   survivor held its registration: its id may have been handed out
//!   twice. Its expiry is not a lost session. Every other session must
//!   survive, and a client holding an expired session must be answered
//!   "session expired", never served from another client's session (the
//!   exactly-once and history checks catch that).
//!
//! The survivor's own promises (votes, terms, acknowledged entries) are
//! checked across the recovery as across any restart, and once the
//! recovery's writes were synced, every later restart of the survivor
//! must still hold them (the forced term and entry).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use concord::session::ClientRequest;
use concord::state_machine::StateMachine;
use concord::{
    plan_forced_recovery, EntryPayload, ForcedRecoveryRequest, Index, Input, LogPosition,
    Membership, MembershipChange, NodeId, Role, Term, WriteId,
};

use super::{format_time, Event, FailureKind, Simulation, MS};
use crate::config::{ForcedRecoveryChoice, SimConfig};
use crate::disk::{Disk, Record};
use crate::workload::Workload;

/// Most hosts a run can hold (the partition matrix is 8 bits wide).
const HOSTS_MAX: usize = 8;

/// The steps of the scenario, one event each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ForcedStep {
    /// The majority is lost.
    Lose,
    /// The operator forces the survivor's recovery.
    Recover,
    /// The survivor crashes again just after.
    CrashSurvivor,
    /// The next membership change bringing fresh nodes in.
    Grow,
}

impl ForcedStep {
    pub(super) fn code(self) -> u64 {
        self as u64
    }
}

/// One acknowledged operation whose log entry the survivor did not hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LostOperation {
    /// The workload's operation id ([`Workload::command_id`]), if it has one.
    pub op_id: Option<u64>,
    /// The client it was acknowledged to (0-based).
    pub client: u32,
    /// The index of its entry in the lost majority's log.
    pub index: Index,
    /// The term of that entry.
    pub term: Term,
    /// The operation ([`Workload::describe`]).
    pub description: String,
    /// Whether it only read (a read through the log): lost reads change
    /// nothing, and are not counted among the lost writes.
    pub read_only: bool,
    /// Virtual time the acknowledgement arrived, nanoseconds.
    pub acked_ns: u64,
}

/// What a run's forced recovery did and cost.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ForcedRecoveryReport {
    /// The survivor the cluster was rebuilt from.
    pub survivor: NodeId,
    /// The nodes lost for good.
    pub lost_nodes: Vec<NodeId>,
    /// Virtual time the majority was lost, nanoseconds.
    pub lost_ns: u64,
    /// Virtual time of the recovery, nanoseconds (0: it never ran).
    pub recovered_ns: u64,
    /// The forced term.
    pub term: Term,
    /// The index of the forced entry.
    pub forced_index: Index,
    /// The survivor's log base (snapshot) when it was recovered.
    pub survivor_base: LogPosition,
    /// The survivor's last entry when it was recovered.
    pub survivor_last: LogPosition,
    /// The highest index known committed cluster-wide at the recovery.
    pub committed_before: Index,
    /// The first index of the cluster's committed log the survivor did not
    /// hold (one past the committed log when it held all of it): the
    /// committed entries from here on are gone.
    pub diverged_at: Index,
    /// Operation ids of the client commands in the survivor's log (above
    /// its base) when it was recovered.
    pub held_op_ids: Vec<u64>,
    /// Fresh nodes added after the recovery (new ids, empty disks).
    pub fresh_nodes: Vec<NodeId>,
    /// Acknowledged operations whose entries the survivor did not hold,
    /// in the order their acknowledgements arrived.
    pub lost: Vec<LostOperation>,
    /// Operation ids of the client commands in the survivor's log (above
    /// its base) at the end of the run, and that base: what an outside
    /// check can compare the lost operations with.
    pub final_op_ids: Vec<u64>,
    /// The survivor's log base at the end of the run.
    pub final_base: Index,
}

impl ForcedRecoveryReport {
    /// The lost operations that wrote (reads through the log aside).
    pub fn lost_writes(&self) -> impl Iterator<Item = &LostOperation> {
        self.lost.iter().filter(|lost| !lost.read_only)
    }
}

impl ForcedRecoveryReport {
    /// The report in one line, listing at most `listed` lost writes.
    pub fn describe(&self, listed: usize) -> String {
        let mut text = String::new();
        let _ = self.write_to(&mut text, listed);
        text
    }

    fn write_to(&self, f: &mut impl fmt::Write, listed: usize) -> fmt::Result {
        write!(
            f,
            "forced recovery from n{} at {} (nodes {:?} lost at {}; forced entry {} term {}; committed entries from index {} on gone",
            self.survivor,
            format_time(self.recovered_ns),
            self.lost_nodes,
            format_time(self.lost_ns),
            self.forced_index,
            self.term,
            self.diverged_at,
        )?;
        if !self.fresh_nodes.is_empty() {
            write!(f, "; fresh nodes {:?} joined", self.fresh_nodes)?;
        }
        let count = self.lost_writes().count();
        let writes: Vec<String> = self
            .lost_writes()
            .take(listed)
            .map(|lost| match lost.op_id {
                Some(id) => format!("op {id:#x} {}", lost.description),
                None => format!("index {} {}", lost.index, lost.description),
            })
            .collect();
        write!(
            f,
            "): {count} acknowledged writes lost{}{}",
            if writes.is_empty() { "" } else { ": " },
            writes.join(", ")
        )?;
        if count > writes.len() {
            write!(f, ", and {} more", count - writes.len())?;
        }
        Ok(())
    }
}

impl fmt::Display for ForcedRecoveryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f, usize::MAX)
    }
}

/// An acknowledgement seen before the recovery, classified at it.
struct Ack {
    index: Index,
    term: Term,
    client: u32,
    op_id: Option<u64>,
    read_only: bool,
    description: String,
    acked_ns: u64,
}

/// The survivor's log as it was recovered: its base and its entries'
/// terms above it.
struct Held {
    base: LogPosition,
    terms: BTreeMap<Index, Term>,
    /// The audit record's commit index: sessions registered above it
    /// expire at the forced entry.
    commit_index_before: Index,
}

impl Held {
    /// Whether the survivor held entry (`index`, `term`) of the old
    /// cluster. At or below its base the entry is in its snapshot, which
    /// holds the committed prefix there: every committed entry (and an
    /// acknowledged one is) counts. (An entry the recovered cluster made
    /// can have the same index and term as one of a lost leader: the lost
    /// nodes may have reached terms past the forced one. So an
    /// acknowledgement is judged by when its reply was sent, see
    /// `Simulation::record_ack`.)
    fn holds(&self, index: Index, term: Term) -> bool {
        index <= self.base.index || self.terms.get(&index) == Some(&term)
    }
}

/// This seed's forced recovery.
pub(super) struct Forced {
    rng: ChaCha8Rng,
    lose_at_ns: u64,
    notice_ns: u64,
    prefer_laggard: bool,
    crash_after_ns: Option<u64>,
    fresh_wanted: usize,
    /// Hosts lost for good.
    lost: BTreeSet<usize>,
    survivor: Option<usize>,
    held: Option<Held>,
    /// Acknowledgements before the recovery.
    acks: Vec<Ack>,
    /// Sessions' registrations (reply sent at, entry index and term), by
    /// client.
    sessions: BTreeMap<u32, (u64, Index, Term)>,
    /// The forced entry, once synced: every later boot of the survivor
    /// must hold it.
    forced_entry: Option<LogPosition>,
    /// Fresh hosts added, in order.
    fresh: Vec<usize>,
    report: ForcedRecoveryReport,
}

impl Forced {
    /// Draws this seed's forced recovery (about a fifth of the seeds
    /// without churn, on 2 or more nodes), from its own random stream.
    pub(super) fn draw(config: &SimConfig, churn: bool, supported: bool) -> Option<Forced> {
        if config.nodes < 2 || !supported {
            return None;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0x666f_7263_6564_7265);
        rng.set_stream(31);
        let drawn = rng.gen_bool(0.2);
        match config.forced_recovery {
            ForcedRecoveryChoice::Off => return None,
            ForcedRecoveryChoice::Swarm if churn || !drawn => return None,
            _ => {}
        }
        let chaos_ns = config.chaos_ns.max(1);
        let lose_at_ns = rng.gen_range(chaos_ns * 15 / 100..=chaos_ns * 55 / 100);
        let notice_ns = rng.gen_range(50 * MS..500 * MS);
        let prefer_laggard = rng.gen_bool(0.5);
        let crash_after_ns = rng.gen_bool(0.3).then(|| rng.gen_range(0..2 * MS));
        let room = HOSTS_MAX - config.nodes;
        let fresh_wanted = if room > 0 && rng.gen_bool(0.6) {
            rng.gen_range(1..=room.min(config.nodes - 1).clamp(1, 3))
        } else {
            0
        };
        Some(Forced {
            rng,
            lose_at_ns,
            notice_ns,
            prefer_laggard,
            crash_after_ns,
            fresh_wanted,
            lost: BTreeSet::new(),
            survivor: None,
            held: None,
            acks: Vec::new(),
            sessions: BTreeMap::new(),
            forced_entry: None,
            fresh: Vec::new(),
            report: ForcedRecoveryReport::default(),
        })
    }

    /// When the majority is lost.
    pub(super) fn lose_at_ns(&self) -> u64 {
        self.lose_at_ns
    }

    /// The report so far.
    pub(super) fn report(&self) -> &ForcedRecoveryReport {
        &self.report
    }
}

impl<S: StateMachine, W: Workload> Simulation<S, W> {
    /// Whether host `index` was lost for good.
    pub(super) fn is_lost(&self, index: usize) -> bool {
        self.forced
            .as_ref()
            .is_some_and(|forced| forced.lost.contains(&index))
    }

    /// Whether a Raft message from node `from` (an id) is dropped: it was
    /// lost and the recovery fenced it off.
    pub(super) fn is_fenced(&self, from: NodeId) -> bool {
        self.forced.as_ref().is_some_and(|forced| {
            forced.held.is_some() && forced.lost.contains(&(from as usize - 1))
        })
    }

    /// The voters and learners fresh host `index` starts with: the
    /// survivor's voters of the moment, itself a learner waiting to be
    /// added. `None` for every other host.
    pub(super) fn fresh_initial_membership(
        &self,
        index: usize,
    ) -> Option<(BTreeSet<NodeId>, BTreeSet<NodeId>)> {
        let forced = self.forced.as_ref()?;
        if !forced.fresh.contains(&index) {
            return None;
        }
        let survivor = forced.survivor?;
        let id = index as NodeId + 1;
        // Only used while its disk holds no configuration (then the log's
        // replaces it): a learner of the voters of the moment.
        let voters: BTreeSet<NodeId> = self
            .voters_except(self.current_leader().or(Some(survivor)), id)
            .into_iter()
            .collect();
        let voters = if voters.is_empty() {
            [survivor as NodeId + 1].into()
        } else {
            voters
        };
        Some((voters, [id].into()))
    }

    pub(super) fn forced_step(&mut self, step: ForcedStep) {
        if self.failure.is_some() || self.forced.is_none() {
            return;
        }
        match step {
            ForcedStep::Lose => self.lose_majority(),
            ForcedStep::Recover => self.force_recovery(),
            ForcedStep::CrashSurvivor => {
                let Some(survivor) = self.forced.as_ref().and_then(|forced| forced.survivor) else {
                    return;
                };
                if self.healed {
                    return;
                }
                self.note(Some(survivor), || {
                    "forced recovery: the survivor crashes just after".to_string()
                });
                self.crash(survivor);
                let down_ns = self.disk_rng.gen_range(20 * MS..300 * MS);
                self.schedule(
                    down_ns,
                    Event::DelayedRestart {
                        node: survivor as u8,
                    },
                );
            }
            ForcedStep::Grow => self.grow(),
        }
    }

    /// Destroys every node but the survivor: crashed, disk wiped, never
    /// restarted.
    fn lose_majority(&mut self) {
        let witness = self.witness;
        let candidates: Vec<usize> = (0..self.hosts.len())
            .filter(|index| Some(*index) != witness)
            .collect();
        let forced = self.forced.as_mut().expect("forced recovery is on");
        let survivor = if forced.prefer_laggard {
            // The shortest durable log, lowest index on ties.
            candidates
                .iter()
                .copied()
                .min_by_key(|index| (self.hosts[*index].disk.last_index(), *index))
        } else {
            Some(candidates[forced.rng.gen_range(0..candidates.len())])
        };
        let Some(survivor) = survivor else {
            return;
        };
        forced.survivor = Some(survivor);
        let lost: Vec<usize> = (0..self.hosts.len())
            .filter(|index| *index != survivor)
            .collect();
        forced.lost = lost.iter().copied().collect();
        forced.report.survivor = survivor as NodeId + 1;
        forced.report.lost_nodes = lost.iter().map(|index| *index as NodeId + 1).collect();
        forced.report.lost_ns = self.now;
        self.note(None, || {
            format!(
                "FORCED RECOVERY: nodes {:?} are lost for good (disks destroyed); n{} survives",
                lost.iter().map(|index| index + 1).collect::<Vec<_>>(),
                survivor + 1
            )
        });
        for index in lost {
            self.crash(index);
            self.hosts[index].disk = Disk::default();
        }
        let notice_ns = self.forced.as_ref().expect("on").notice_ns;
        self.schedule(notice_ns, Event::Forced(ForcedStep::Recover));
    }

    /// The operator's offline recovery of the survivor: stop it, read its
    /// durable state, write the plan through its disk (synced), start it.
    fn force_recovery(&mut self) {
        let Some(survivor) = self.forced.as_ref().and_then(|forced| forced.survivor) else {
            return;
        };
        // The operator stops the process first: whatever it had not
        // synced is lost, as in any crash.
        self.crash(survivor);
        // Committed entries of the lost nodes are given up: reads judge
        // freshness afresh (`fresh`).
        self.forget_commits_for_reads();
        let recovered = match self.hosts[survivor].disk.recover() {
            Ok(recovered) => recovered,
            Err(error) => {
                let message = format!("reading the survivor's disk: {}", error.0);
                self.fail(FailureKind::HostContract, Some(survivor), message);
                return;
            }
        };
        if self.durable.is_some() && !self.config.bugs.durable_forced_recovery_keeps_state {
            // The recovery gives committed entries up: an on-disk state
            // machine may hold their effect (`ondisk`).
            self.roll_back_state_machine(survivor);
            if self.failure.is_some() {
                return;
            }
        }
        let survivor_id = survivor as NodeId + 1;
        let startup = self.node_config(survivor);
        let request = ForcedRecoveryRequest {
            survivor: survivor_id,
            voters: BTreeSet::new(),
            reason: format!("simulated loss of {} nodes", self.hosts.len() - 1),
            startup_membership: Some(Membership::new(startup.voters.iter().copied())),
        };
        let plan = match plan_forced_recovery(&recovered, &request) {
            Ok(plan) => plan,
            Err(error) => {
                let message = format!("the survivor's forced recovery was refused: {error}");
                self.fail(FailureKind::Recovery, Some(survivor), message);
                return;
            }
        };
        let held = Held {
            base: recovered.base,
            terms: recovered
                .entries
                .iter()
                .map(|entry| (entry.index, entry.term))
                .collect(),
            commit_index_before: plan.audit.commit_index_before,
        };
        let held_op_ids: Vec<u64> = recovered
            .entries
            .iter()
            .filter_map(|entry| self.entry_op_id(&entry.payload))
            .collect();
        // The first committed index the survivor does not hold: committed
        // entries from there on are gone.
        let committed = self.safety.committed_len();
        let diverged_at = (held.base.index + 1..=committed)
            .find(|i| {
                self.safety
                    .committed_term(*i)
                    .is_none_or(|term| !held.holds(*i, term))
            })
            .unwrap_or(committed + 1);
        // Hard state first, then the entry: the forced entry is never
        // durable under the old term. Write ids 0 come before any the
        // node will use (its first is 1).
        let disk = &mut self.hosts[survivor].disk;
        disk.write(Record {
            id: WriteId(0),
            hard_state: Some(plan.hard_state),
            truncate_after: None,
            entries: Vec::new(),
            snapshot: None,
        });
        disk.write(Record {
            id: WriteId(0),
            hard_state: None,
            truncate_after: None,
            entries: vec![plan.entry.clone()],
            snapshot: None,
        });
        let synced = !self.config.bugs.forced_recovery_unsynced;
        if synced {
            // The offline tool syncs before it returns and the node starts.
            if let Err(error) = self.hosts[survivor].disk.complete_sync(WriteId(0)) {
                self.fail(FailureKind::HostContract, Some(survivor), error.0);
                return;
            }
        }
        self.relax_checks_at_recovery(diverged_at, plan.hard_state.term);
        let forced = self.forced.as_mut().expect("on");
        forced.forced_entry = Some(plan.entry.position());
        forced.report.recovered_ns = self.now;
        forced.report.term = plan.hard_state.term;
        forced.report.forced_index = plan.entry.index;
        forced.report.survivor_base = held.base;
        forced.report.survivor_last = plan.audit.last_before;
        forced.report.committed_before = committed;
        forced.report.diverged_at = diverged_at;
        forced.report.held_op_ids = held_op_ids;
        let acks = std::mem::take(&mut forced.acks);
        for ack in acks {
            if !held.holds(ack.index, ack.term) {
                forced.report.lost.push(LostOperation {
                    op_id: ack.op_id,
                    client: ack.client,
                    index: ack.index,
                    term: ack.term,
                    description: ack.description,
                    read_only: ack.read_only,
                    acked_ns: ack.acked_ns,
                });
            }
        }
        self.acked.retain(|(index, term)| held.holds(*index, *term));
        let lost_count = forced.report.lost.len();
        forced.held = Some(held);
        let audit = plan.audit.clone();
        self.note(Some(survivor), || {
            format!(
                "FORCED RECOVERY at index {} term {}: {audit}; committed entries from {diverged_at} on are gone ({lost_count} acknowledged operations lost so far)",
                plan.entry.index, plan.entry.term
            )
        });
        // The node starts on its durable state with the plan's writes on
        // top (as a real host reads back what it just wrote, synced or
        // not: the page cache serves it).
        let mut state = recovered;
        plan.apply_to(&mut state);
        self.note(Some(survivor), || "restart".to_string());
        if let Err(message) = self.boot_from(survivor, state) {
            self.fail(FailureKind::Recovery, Some(survivor), message);
        }
        if self.failure.is_some() {
            return;
        }
        let forced = self.forced.as_ref().expect("on");
        let (crash_after_ns, fresh_wanted) = (forced.crash_after_ns, forced.fresh_wanted);
        if let Some(delay) = crash_after_ns {
            self.schedule(delay, Event::Forced(ForcedStep::CrashSurvivor));
        }
        if fresh_wanted > 0 {
            self.schedule(100 * MS, Event::Forced(ForcedStep::Grow));
        }
    }

    /// Forgets what the lost majority alone committed (see the module
    /// documentation for exactly what is relaxed, and why).
    fn relax_checks_at_recovery(&mut self, diverged_at: Index, forced_term: Term) {
        let forgotten = self
            .safety
            .committed_len()
            .saturating_sub(diverged_at.saturating_sub(1));
        self.budgets.committed_forgotten(forgotten);
        self.safety.forget_from(diverged_at, forced_term);
        if let Some(durable) = self.durable.as_mut() {
            durable.forget_from(diverged_at);
        }
        let _ = self.snapshot_states.split_off(&diverged_at);
        if let Some(entries) = self.host_entries.as_mut() {
            entries.forget_from(diverged_at);
        }
    }

    /// The workload's operation id of a client command entry.
    fn entry_op_id(&self, payload: &EntryPayload) -> Option<u64> {
        let EntryPayload::Command(bytes) = payload else {
            return None;
        };
        match ClientRequest::decode(bytes) {
            Ok(ClientRequest::Command { command, .. }) => self.workload.command_id(command),
            _ => None,
        }
    }

    /// Whether a reply sent at `sent_ns` about entry (`index`, `term`)
    /// speaks of an entry that survived the forced recovery: one the
    /// recovered cluster made (the reply was sent after the recovery), or
    /// one of the old cluster the survivor held.
    fn survived(held: &Held, recovered_ns: u64, sent_ns: u64, index: Index, term: Term) -> bool {
        sent_ns >= recovered_ns || held.holds(index, term)
    }

    /// A client's operation was acknowledged, in a reply sent at
    /// `sent_ns`, from entry (`index`, `term`): into the acknowledged
    /// writes every one must survive, or, when it was an entry of the old
    /// cluster the survivor of a forced recovery did not hold, into the
    /// report of lost operations.
    pub(super) fn record_ack(&mut self, client: usize, sent_ns: u64, index: Index, term: Term) {
        let Some(forced) = self.forced.as_ref() else {
            self.acked.push((index, term));
            return;
        };
        if forced.held.as_ref().is_some_and(|held| {
            Self::survived(held, forced.report.recovered_ns, sent_ns, index, term)
        }) {
            self.acked.push((index, term));
            return;
        }
        let command = self.clients[client]
            .op
            .as_ref()
            .map(|op| op.command.clone())
            .unwrap_or_default();
        let ack = Ack {
            index,
            term,
            client: client as u32,
            op_id: self.workload.command_id(&command),
            read_only: self.workload.is_read_only(&command),
            description: self.workload.describe(&command),
            acked_ns: self.now,
        };
        if self.forced.as_ref().expect("on").held.is_none() {
            self.forced.as_mut().expect("on").acks.push(ack);
            self.acked.push((index, term));
            return;
        }
        self.note(None, || {
            format!(
                "client {client}: acknowledgement of {} at index {index} term {term}, an entry the survivor did not hold: lost",
                ack.description
            )
        });
        let forced = self.forced.as_mut().expect("on");
        forced.report.lost.push(LostOperation {
            op_id: ack.op_id,
            client: ack.client,
            index,
            term,
            description: ack.description,
            read_only: ack.read_only,
            acked_ns: ack.acked_ns,
        });
    }

    /// A client's session was registered at entry (`index`, `term`), in
    /// a reply sent at `sent_ns`.
    pub(super) fn record_session(&mut self, client: usize, sent_ns: u64, index: Index, term: Term) {
        if let Some(forced) = self.forced.as_mut() {
            forced
                .sessions
                .insert(client as u32, (sent_ns, index, term));
        }
    }

    /// Whether `client`'s session was registered in an entry the survivor
    /// of a forced recovery did not hold, or, before the recovery, above
    /// the survivor's commit index (the session layer expires those at the
    /// forced entry): its expiry loses nothing the cluster still promised.
    pub(super) fn session_lost_by_recovery(&self, client: usize) -> bool {
        let Some(forced) = self.forced.as_ref() else {
            return false;
        };
        let (Some(held), Some((sent_ns, index, term))) =
            (forced.held.as_ref(), forced.sessions.get(&(client as u32)))
        else {
            return false;
        };
        let recovered_ns = forced.report.recovered_ns;
        !Self::survived(held, recovered_ns, *sent_ns, *index, *term)
            || (*sent_ns < recovered_ns && *index > held.commit_index_before)
    }

    /// After every boot of the survivor past its recovery: the recovery's
    /// writes are durable (the forced term, and the forced entry unless a
    /// snapshot covers it).
    pub(super) fn check_forced_durable(&mut self, index: usize) {
        let Some(forced) = self.forced.as_ref() else {
            return;
        };
        let Some(entry) = forced.forced_entry else {
            return;
        };
        if forced.survivor != Some(index) {
            return;
        }
        let Some(node) = self.hosts[index].node.as_ref() else {
            return;
        };
        let holds =
            entry.index <= node.log_base().index || node.term_at(entry.index) == Some(entry.term);
        if node.term() < entry.term || !holds {
            let message = format!(
                "the forced recovery (entry {} term {}) was done, but the survivor restarted in term {} with {:?} there",
                entry.index,
                entry.term,
                node.term(),
                node.term_at(entry.index)
            );
            self.fail(FailureKind::Recovery, Some(index), message);
        }
    }

    /// The next step of bringing a fresh node in: start it, add it as a
    /// learner, promote it; then the next one.
    fn grow(&mut self) {
        if self.probe.satisfied {
            return;
        }
        let next_ns = 100 * MS;
        let Some(leader) = self.current_leader() else {
            self.schedule(next_ns, Event::Forced(ForcedStep::Grow));
            return;
        };
        let forced = self.forced.as_ref().expect("on");
        let current = forced.fresh.last().copied();
        let membership = self.hosts[leader].node.as_ref().map(|node| {
            (
                node.membership().clone(),
                node.commit_index() >= node.membership_index(),
            )
        });
        let Some((membership, committed)) = membership else {
            return;
        };
        let change = match current {
            Some(fresh) if !membership.contains(fresh as NodeId + 1) => {
                Some(MembershipChange::AddLearner(fresh as NodeId + 1))
            }
            Some(fresh) if membership.is_learner(fresh as NodeId + 1) => {
                Some(MembershipChange::PromoteLearner(fresh as NodeId + 1))
            }
            Some(_) if !committed || membership.is_joint() => None,
            _ if forced.fresh.len() < forced.fresh_wanted && self.hosts.len() < HOSTS_MAX => {
                let fresh = self.add_fresh_host();
                self.note(Some(fresh), || {
                    format!("forced recovery: fresh node n{} joins", fresh + 1)
                });
                Some(MembershipChange::AddLearner(fresh as NodeId + 1))
            }
            _ => return,
        };
        if let Some(change) = change {
            if let MembershipChange::AddLearner(id) | MembershipChange::PromoteLearner(id) = change
            {
                self.propose_address(leader, id);
            }
            if self.hosts[leader]
                .node
                .as_ref()
                .is_some_and(|node| node.role() == Role::Leader)
            {
                self.note(Some(leader), || format!("membership change {change:?}"));
                self.step(leader, Input::ChangeMembership(change), None);
            }
        }
        self.schedule(next_ns, Event::Forced(ForcedStep::Grow));
    }

    /// A new host with the next id and an empty disk, started.
    fn add_fresh_host(&mut self) -> usize {
        let index = self.hosts.len();
        let id = index as NodeId + 1;
        let tick_period_ns = self.config.tick_ns.max(1);
        let sm = self.new_replica(index, id);
        self.hosts
            .push(super::host::Host::fresh(id, sm, tick_period_ns));
        let seed = self.forced.as_mut().expect("on").rng.gen();
        self.node_seeds.push(seed);
        self.safety.add_node();
        self.promises.add_node();
        self.rules.add_node();
        let forced = self.forced.as_mut().expect("on");
        forced.fresh.push(index);
        forced.report.fresh_nodes.push(id);
        self.restart(index);
        index
    }

    /// At the end of the run: the survivor's final log, for the report.
    pub(super) fn finish_forced(&mut self) {
        let Some(survivor) = self.forced.as_ref().and_then(|forced| forced.survivor) else {
            return;
        };
        let Some(recovered_ns) = self
            .forced
            .as_ref()
            .filter(|forced| forced.held.is_some())
            .map(|forced| forced.report.recovered_ns)
        else {
            return;
        };
        let (final_op_ids, final_base) = match self.hosts[survivor].node.as_ref() {
            Some(node) => {
                let base = node.log_base().index;
                let ids = (base + 1..=node.last_index())
                    .filter_map(|i| node.entry(i))
                    .filter_map(|entry| self.entry_op_id(&entry.payload))
                    .collect();
                (ids, base)
            }
            None => (Vec::new(), Index::MAX),
        };
        let forced = self.forced.as_mut().expect("on");
        forced.report.final_op_ids = final_op_ids;
        forced.report.final_base = final_base;
        let lost: BTreeSet<u64> = forced
            .report
            .lost
            .iter()
            .filter_map(|lost| lost.op_id)
            .collect();
        self.workload.forced_recovery(recovered_ns, &lost);
    }
}
