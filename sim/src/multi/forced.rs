//! The forced-recovery scenario of a multi-group run (`--forced-recovery`):
//! the multi-group counterpart of the single-group simulator's
//! (`crate::engine` `forced.rs`), the way an operator runs `concord-cli
//! force-recover --group G` on a stopped survivor's shared log.
//!
//! 1. **Setup.** The seed draws a survivor; every group's voters include
//!    it (a group none of whose replicas survives could not be recovered
//!    at all), and membership changes are off.
//! 2. **Loss**, at a drawn time during the faults: every node but the
//!    survivor is destroyed (crashed, every group's part of its disk
//!    wiped, never restarted: restarts and the heal skip it). Every group
//!    of two or more voters has lost its majority.
//! 3. **Recovery**, a drawn while later: the survivor is stopped (what it
//!    had not synced is lost, as in any crash), and each group of two or
//!    more voters is planned with [`plan_forced_recovery`] from that
//!    group's durable state; the plan's two writes (the raised term, then
//!    the forced entry) go through the group's part of the disk and are
//!    synced; the survivor starts again, each such group a sole voter.
//!    From then on frames of the lost nodes still in the network are
//!    dropped (the runbook fences their addresses).
//!
//! What the checks relax, per forced group, at its recovery (as the
//! single-group scenario does, and nothing else): the committed log is
//! cut at the first index where the survivor's log differs from it (those
//! committed entries are gone), with the snapshot digests taken there;
//! one leader per term forgets the terms at or above the forced one; and
//! the group's history is checked in two parts (before the recovery, and
//! across it with the lost acknowledged operations unknown; see
//! `crate::services::kv::split_at_forced_recovery`). The acknowledged
//! operations whose entries the survivor did not hold are reported as
//! lost by design ([`MultiForcedReport::lost`]).
//!
//! A client here learns its outcome when any node applies its entry's
//! index: an operation whose index a since-lost node applied with another
//! entry failed. If the survivor holds the operation's own entry there,
//! the recovery commits it after all, so its outcome is unknown across
//! the recovery too ([`MultiForcedReport::revived`]; found by seeds
//! 9500000042, 9500000083 and 9500000167 on 5 nodes, `linearizability`
//! before this rule).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use concord::multi::GroupId;
use concord::{plan_forced_recovery, ForcedRecoveryRequest, Index, Membership, NodeId, Term};
use concord::{LogPosition, WriteId};

use crate::disk::Record;
use crate::engine::FailureKind;
use crate::workload::Workload;

use super::config::{Drawn, MultiSimConfig};
use super::engine::{Event, MultiSim, MS};

/// The steps of the scenario, one event each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ForcedStep {
    /// Every node but the survivor is lost.
    Lose,
    /// The operator forces the survivor's groups.
    Recover,
}

/// One acknowledged operation of a group whose entry the survivor did
/// not hold when the group was recovered: lost by design.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MultiLostOperation {
    /// The group.
    pub group: GroupId,
    /// The workload's operation id, if it has one.
    pub op_id: Option<u64>,
    /// The index of its entry in the lost majority's log.
    pub index: Index,
    /// The term of that entry.
    pub term: Term,
    /// The operation.
    pub description: String,
    /// Whether it only read (not counted among the lost writes).
    pub read_only: bool,
    /// Virtual time it was acknowledged, nanoseconds.
    pub acked_ns: u64,
}

/// One group's forced recovery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForcedGroup {
    /// The group.
    pub group: GroupId,
    /// The survivor's last entry before the forced one.
    pub last_before: LogPosition,
    /// The forced entry's index.
    pub forced_index: Index,
    /// The forced term.
    pub term: Term,
    /// The highest index committed cluster-wide before the recovery.
    pub committed_before: Index,
    /// The first committed index the survivor did not hold (one past the
    /// committed log when it held all of it): the committed entries from
    /// here on are gone.
    pub diverged_at: Index,
}

/// What a run's forced recovery did and cost.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MultiForcedReport {
    /// The survivor.
    pub survivor: NodeId,
    /// The nodes lost for good.
    pub lost_nodes: Vec<NodeId>,
    /// Virtual time they were lost, nanoseconds (0: never).
    pub lost_ns: u64,
    /// Virtual time of the recovery, nanoseconds (0: it never ran).
    pub recovered_ns: u64,
    /// The groups forced, in id order.
    pub groups: Vec<ForcedGroup>,
    /// Acknowledged operations whose entries the survivor did not hold.
    pub lost: Vec<MultiLostOperation>,
    /// Operations that failed before the recovery because a lost node
    /// applied another entry at their index, whose own entry the
    /// survivor held: the recovery commits them after all (their history
    /// outcome becomes unknown across the recovery).
    pub revived: Vec<MultiLostOperation>,
}

impl MultiForcedReport {
    /// The lost operations that wrote.
    pub fn lost_writes(&self) -> impl Iterator<Item = &MultiLostOperation> {
        self.lost.iter().filter(|lost| !lost.read_only)
    }

    /// Whether the recovery ran.
    pub fn recovered(&self) -> bool {
        self.recovered_ns > 0
    }

    /// The report in one line, listing at most `listed` lost writes.
    pub fn describe(&self, listed: usize) -> String {
        let mut text = format!(
            "forced recovery from n{} at {} (nodes {:?} lost at {}; {} groups forced",
            self.survivor,
            crate::engine::format_time(self.recovered_ns),
            self.lost_nodes,
            crate::engine::format_time(self.lost_ns),
            self.groups.len()
        );
        let cut: Vec<String> = self
            .groups
            .iter()
            .filter(|group| group.diverged_at <= group.committed_before)
            .map(|group| format!("group {} from index {}", group.group, group.diverged_at))
            .collect();
        if !cut.is_empty() {
            text.push_str(&format!("; committed entries gone: {}", cut.join(", ")));
        }
        if !self.revived.is_empty() {
            text.push_str(&format!(
                "; {} failed operations committed after all",
                self.revived.len()
            ));
        }
        let count = self.lost_writes().count();
        let writes: Vec<String> = self
            .lost_writes()
            .take(listed)
            .map(|lost| match lost.op_id {
                Some(id) => format!("group {} op {id:#x} {}", lost.group, lost.description),
                None => format!(
                    "group {} index {} {}",
                    lost.group, lost.index, lost.description
                ),
            })
            .collect();
        text.push_str(&format!(
            "): {count} acknowledged writes lost{}{}",
            if writes.is_empty() { "" } else { ": " },
            writes.join(", ")
        ));
        if count > writes.len() {
            text.push_str(&format!(", and {} more", count - writes.len()));
        }
        text
    }
}

impl fmt::Display for MultiForcedReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe(usize::MAX))
    }
}

/// The survivor's log of one group as it was recovered.
struct Held {
    base: LogPosition,
    terms: BTreeMap<Index, Term>,
}

impl Held {
    /// Whether the survivor held entry (`index`, `term`): at or below its
    /// snapshot every committed entry counts.
    fn holds(&self, index: Index, term: Term) -> bool {
        index <= self.base.index || self.terms.get(&index) == Some(&term)
    }
}

/// This seed's forced recovery.
pub(crate) struct MultiForced {
    lose_at_ns: u64,
    notice_ns: u64,
    /// Pick, at the loss, the node every group is hosted on with the
    /// shortest durable logs (the most likely to lack acknowledged
    /// writes) rather than the drawn one.
    prefer_laggard: bool,
    /// The survivor's node index (drawn; perhaps another at the loss).
    survivor: usize,
    lost: BTreeSet<usize>,
    /// Acknowledgements before the recovery, to classify at it.
    acks: Vec<MultiLostOperation>,
    /// Operations failed before the recovery (another entry applied at
    /// their index), to classify at it.
    failures: Vec<MultiLostOperation>,
    held: BTreeMap<GroupId, Held>,
    pub(crate) report: MultiForcedReport,
}

impl MultiForced {
    /// This seed's scenario (every seed with `--forced-recovery`, on two
    /// or more nodes), from its own random stream.
    pub(crate) fn draw(config: &MultiSimConfig) -> Option<MultiForced> {
        if !config.forced_recovery || config.nodes < 2 {
            return None;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0x6d75_6c74_6966_6f72);
        let chaos_ns = config.chaos_ns.max(1);
        let lose_at_ns = rng.gen_range(chaos_ns * 15 / 100..=chaos_ns * 45 / 100);
        let notice_ns = rng.gen_range(50 * MS..500 * MS);
        let survivor = rng.gen_range(0..config.nodes);
        let prefer_laggard = rng.gen_bool(0.5);
        Some(MultiForced {
            lose_at_ns,
            notice_ns,
            prefer_laggard,
            survivor,
            lost: BTreeSet::new(),
            acks: Vec::new(),
            failures: Vec::new(),
            held: BTreeMap::new(),
            report: MultiForcedReport {
                survivor: survivor as NodeId + 1,
                ..MultiForcedReport::default()
            },
        })
    }

    /// Every group's voters include the survivor: one it is not in is
    /// given it in place of its highest voter.
    pub(crate) fn adjust(&self, drawn: &mut Drawn) {
        let id = self.survivor as NodeId + 1;
        for voters in &mut drawn.voters {
            if !voters.contains(&id) {
                if let Some(highest) = voters.iter().next_back().copied() {
                    voters.remove(&highest);
                }
                voters.insert(id);
            }
        }
    }

    /// When the nodes are lost.
    pub(crate) fn lose_at_ns(&self) -> u64 {
        self.lose_at_ns
    }
}

impl MultiSim {
    /// Whether node `index` was lost for good.
    pub(crate) fn is_lost(&self, index: usize) -> bool {
        self.forced
            .as_ref()
            .is_some_and(|forced| forced.lost.contains(&index))
    }

    /// Whether frames from node `from` (an id) are dropped: it was lost
    /// and the recovery fenced it off.
    pub(crate) fn is_fenced(&self, from: NodeId) -> bool {
        self.forced.as_ref().is_some_and(|forced| {
            forced.report.recovered() && from >= 1 && forced.lost.contains(&(from as usize - 1))
        })
    }

    pub(crate) fn forced_step(&mut self, step: ForcedStep) {
        if self.failure.is_some() || self.forced.is_none() {
            return;
        }
        match step {
            ForcedStep::Lose => self.lose_all_but_survivor(),
            ForcedStep::Recover => self.force_recover_groups(),
        }
    }

    /// Destroys every node but the survivor.
    fn lose_all_but_survivor(&mut self) {
        let drawn = self.forced.as_ref().expect("on").survivor;
        let laggard = self.forced.as_ref().expect("on").prefer_laggard;
        // Any node hosting every group can survive; the laggard is the
        // one with the fewest durable entries over its groups (the drawn
        // one on ties).
        let survivor = (0..self.hosts.len())
            .filter(|index| laggard || *index == drawn)
            .filter(|index| {
                let id = *index as NodeId + 1;
                self.groups.values().all(|group| group.voters.contains(&id))
            })
            .min_by_key(|index| {
                let durable: Index = self.hosts[*index]
                    .disks
                    .values()
                    .map(|disk| disk.last_index())
                    .sum();
                (durable, *index != drawn, *index)
            })
            .unwrap_or(drawn);
        let forced = self.forced.as_mut().expect("on");
        forced.survivor = survivor;
        forced.report.survivor = survivor as NodeId + 1;
        let lost: Vec<usize> = (0..self.hosts.len())
            .filter(|index| *index != survivor)
            .collect();
        forced.lost = lost.iter().copied().collect();
        forced.report.lost_nodes = lost.iter().map(|index| *index as NodeId + 1).collect();
        forced.report.lost_ns = self.now_ns;
        let notice_ns = forced.notice_ns;
        self.note(None, || {
            format!(
                "FORCED RECOVERY: nodes {:?} are lost for good (disks destroyed); n{} survives",
                lost.iter().map(|index| index + 1).collect::<Vec<_>>(),
                survivor + 1
            )
        });
        for index in lost {
            self.crash(index);
            let host = &mut self.hosts[index];
            host.disks.clear();
            host.promised.clear();
        }
        self.schedule(notice_ns, Event::Forced(ForcedStep::Recover));
    }

    /// The operator's offline recovery: stop the survivor, force each
    /// group that lost its majority through its disk (synced), start it.
    fn force_recover_groups(&mut self) {
        let survivor = self.forced.as_ref().expect("on").survivor;
        let survivor_id = survivor as NodeId + 1;
        self.crash(survivor);
        let lost_nodes = self.hosts.len() - 1;
        let mut forced_groups = Vec::new();
        let groups: Vec<GroupId> = self.groups.keys().copied().collect();
        for group in groups {
            let state = &self.groups[&group];
            let initial = state.initial.clone();
            if state.voters.len() < 2 {
                continue;
            }
            let disk = self.hosts[survivor].disks.entry(group).or_default();
            let recovered = match disk.recover() {
                Ok(recovered) => recovered,
                Err(error) => {
                    let message = format!("reading the survivor's disk: {}", error.0);
                    self.fail_raft(FailureKind::HostContract, survivor, Some(group), message);
                    return;
                }
            };
            let request = ForcedRecoveryRequest {
                survivor: survivor_id,
                voters: BTreeSet::new(),
                reason: format!("simulated loss of {lost_nodes} nodes"),
                startup_membership: Some(Membership::new(initial.iter().copied())),
            };
            let plan = match plan_forced_recovery(&recovered, &request) {
                Ok(plan) => plan,
                Err(error) => {
                    let message = format!("the forced recovery was refused: {error}");
                    self.fail_raft(FailureKind::Recovery, survivor, Some(group), message);
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
            };
            let safety = &self.groups[&group].safety;
            let committed = safety.committed_len();
            let diverged_at = (held.base.index + 1..=committed)
                .find(|i| {
                    safety
                        .committed_term(*i)
                        .is_none_or(|term| !held.holds(*i, term))
                })
                .unwrap_or(committed + 1);
            // The raised term first, then the entry: never the entry
            // durable under the old term. Write ids 0 come before any the
            // node will use.
            let disk = self.hosts[survivor].disks.entry(group).or_default();
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
            if let Err(error) = disk.complete_sync(WriteId(0)) {
                self.fail_raft(FailureKind::HostContract, survivor, Some(group), error.0);
                return;
            }
            let state = self.groups.get_mut(&group).expect("a drawn group");
            state.safety.forget_from(diverged_at, plan.hard_state.term);
            let _ = state.snapshot_digests.split_off(&diverged_at);
            let audit = plan.audit.clone();
            self.note(Some(survivor), || {
                let gone = if diverged_at <= committed {
                    format!("committed entries from {diverged_at} on are gone")
                } else {
                    "it held every committed entry".to_string()
                };
                format!(
                    "group {group}: FORCED RECOVERY at index {} term {}: {audit}; {gone}",
                    plan.entry.index, plan.entry.term
                )
            });
            forced_groups.push(ForcedGroup {
                group,
                last_before: plan.audit.last_before,
                forced_index: plan.entry.index,
                term: plan.entry.term,
                committed_before: committed,
                diverged_at,
            });
            let forced = self.forced.as_mut().expect("on");
            forced.held.insert(group, held);
        }
        // Every group is the survivor's alone now.
        for state in self.groups.values_mut() {
            state.voters = vec![survivor_id];
            state.leader_hint = None;
        }
        let now = self.now_ns;
        let forced = self.forced.as_mut().expect("on");
        forced.report.recovered_ns = now;
        forced.report.groups = forced_groups;
        let acks = std::mem::take(&mut forced.acks);
        for ack in acks {
            let held = forced
                .held
                .get(&ack.group)
                .is_none_or(|held| held.holds(ack.index, ack.term));
            if !held {
                forced.report.lost.push(ack);
            }
        }
        let failures = std::mem::take(&mut forced.failures);
        for failure in failures {
            // Its own entry is in the survivor's log (not merely under
            // its snapshot, which holds what was committed there).
            let revived = forced
                .held
                .get(&failure.group)
                .is_some_and(|held| held.terms.get(&failure.index) == Some(&failure.term));
            if revived {
                forced.report.revived.push(failure);
            }
        }
        self.note(Some(survivor), || "restart".to_string());
        self.boot(survivor);
    }

    /// A client's operation of `group` was acknowledged from entry
    /// (`index`, `term`) (`failed`: it failed, another entry having been
    /// applied there): kept to be judged at the recovery (after it, only
    /// the survivor runs, and what it applies survived).
    pub(crate) fn record_forced_outcome(
        &mut self,
        group: GroupId,
        index: Index,
        term: Term,
        command: &[u8],
        failed: bool,
    ) {
        let Some(forced) = self.forced.as_ref() else {
            return;
        };
        if forced.report.recovered() {
            return;
        }
        let workload = &self.groups[&group].workload;
        let ack = MultiLostOperation {
            group,
            op_id: workload.command_id(command),
            index,
            term,
            description: workload.describe(command),
            read_only: workload.is_read_only(command),
            acked_ns: self.now_ns,
        };
        let forced = self.forced.as_mut().expect("on");
        if failed {
            forced.failures.push(ack);
        } else {
            forced.acks.push(ack);
        }
    }

    /// At the end of the run, before the histories are checked: each
    /// forced group's workload learns of the recovery and of its lost
    /// operations.
    pub(crate) fn finish_forced(&mut self) {
        let Some(forced) = self.forced.as_ref() else {
            return;
        };
        if !forced.report.recovered() {
            return;
        }
        let recovered_ns = forced.report.recovered_ns;
        let mut lost: BTreeMap<GroupId, BTreeSet<u64>> = forced
            .held
            .keys()
            .map(|group| (*group, BTreeSet::new()))
            .collect();
        for op in forced.report.lost.iter().chain(&forced.report.revived) {
            if let (Some(ids), Some(id)) = (lost.get_mut(&op.group), op.op_id) {
                ids.insert(id);
            }
        }
        for (group, ids) in lost {
            if let Some(state) = self.groups.get_mut(&group) {
                state.workload.forced_recovery(recovered_ns, &ids);
            }
        }
    }
}
