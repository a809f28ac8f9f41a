//! The disk-loss fault
//! ([`Fault::DiskLoss`](crate::faults::Fault::DiskLoss)): a server whose
//! storage is gone or rolled back, and the sequence in which a server
//! that forgot what it promised would lose acknowledged writes.
//!
//! * **Wipe**: a running voter (not the leader) crashes and comes back
//!   with an empty disk, as after a disk replacement.
//! * **Roll back**: a running voter crashes and its disk loses its last
//!   synced entries, its term and vote going back to the last remaining
//!   entry's term; its host notices (the tokio runtime's durable marker
//!   tells it) and starts the node recovering.
//! * **Aimed**: the sequence an operator hit on real processes. A
//!   minority of followers (the *lagging*) is cut off while the leader
//!   commits writes with the rest; one of the rest (the *victim*) crashes
//!   and comes back with an empty disk, cut off with the lagging
//!   followers from everyone else: a majority, if the victim's vote
//!   counted, whose logs lack the writes. After `down_ns` the network
//!   heals.
//!
//! At most a minority of the voters is without its storage at once (a
//! server counts from its loss until its node reports its recovery done):
//! Raft survives no more, so a fault that would pass that is skipped.
//! No disk is lost while the configuration has witnesses: a witness
//! holds no entries' contents, so an entry committed with one may live on
//! a single full replica, and no protocol survives losing that disk.
//!
//! What must hold: every check of every run, and one rule at the step
//! (`promises`): a server whose storage was lost grants no vote (nor
//! pre-vote) before its durable log holds the entry that was committed
//! when it lost it. A planted mistake that counts such a server as a
//! voter at once (`storage_loss_ignored`) breaks that rule in the aimed
//! sequence's first election.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use concord::state_machine::StateMachine;
use concord::{Index, LogPosition, Message, MessageBody, Node, NodeId, Role, StorageRecoveryEvent};

use super::{Event, Simulation, MS};
use crate::faults::{DiskLossScenario, Partition};
use crate::workload::Workload;

/// How long the aimed sequence lets the leader commit while the lagging
/// followers are cut off, at least and at most.
const LAG_MIN_NS: u64 = 150 * MS;
const LAG_MAX_NS: u64 = 600 * MS;

/// Most synced entries a rolled-back disk loses.
const ROLL_BACK_ENTRIES_MAX: u64 = 8;

/// Timed steps of the aimed sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum DiskLossStep {
    /// The lagging followers have been cut off long enough: replace the
    /// victim's disk and leave it alone with them.
    Wipe,
    /// The network heals and the sequence ends.
    Heal,
}

impl DiskLossStep {
    pub(super) fn code(self) -> u64 {
        self as u64
    }
}

/// An aimed sequence under way.
#[derive(Clone, Debug)]
struct Aimed {
    lagging: Vec<usize>,
    victim: usize,
    down_ns: u64,
}

/// The disk-loss nemesis of one run.
pub(super) struct DiskLossNemesis {
    /// Its own stream, so that the other draws of a seed stay as they were.
    rng: ChaCha8Rng,
    aimed: Option<Aimed>,
    /// Disks replaced or rolled back, and recoveries the nodes reported
    /// done, in this run.
    pub(super) losses: u64,
    pub(super) recoveries: u64,
}

impl DiskLossNemesis {
    pub(super) fn new(seed: u64) -> DiskLossNemesis {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6469_736b_6c6f_7373);
        rng.set_stream(47);
        DiskLossNemesis {
            rng,
            aimed: None,
            losses: 0,
            recoveries: 0,
        }
    }
}

impl DiskLossNemesis {
    /// Faults stop: an aimed sequence under way ends (the network is
    /// healed by the caller), and none of its steps strikes later.
    pub(super) fn heal(&mut self) {
        self.aimed = None;
    }
}

/// What the host remembers of a loss of node's storage, until the node
/// reports its recovery done.
#[derive(Clone, Copy, Debug)]
pub(super) struct StorageLoss {
    /// The highest index the node had acknowledged before the loss: a
    /// leader that finds it holding less is right to.
    pub(super) acknowledged_before: Index,
}

impl<S: StateMachine, W: Workload> Simulation<S, W> {
    /// Starts the fault, unless it would leave more than a minority of the
    /// voters without their storage, or nothing fits.
    pub(super) fn disk_loss_fault(&mut self, scenario: DiskLossScenario, down_ns: u64) {
        // A forced recovery loses acknowledged writes by design (an
        // operator's override after a majority was lost): a run that draws
        // one judges what it lost, not what a disk loss may not lose.
        if self.forced.is_some() {
            self.note(None, || {
                format!("disk loss ({scenario}) skipped: a forced recovery is planned")
            });
            return;
        }
        if self.disk_loss.aimed.is_some() || !self.storage_loss_allowed() {
            self.note(None, || format!("disk loss ({scenario}) skipped"));
            return;
        }
        let Some(leader) = self.current_leader() else {
            self.note(None, || {
                format!("disk loss ({scenario}) skipped: no leader")
            });
            return;
        };
        let followers = self.running_full_voters(leader);
        match scenario {
            DiskLossScenario::Wipe | DiskLossScenario::RollBack => {
                if followers.is_empty() {
                    return;
                }
                let pick = self.disk_loss.rng.gen_range(0..followers.len());
                let index = followers[pick];
                self.lose_storage(index, scenario == DiskLossScenario::RollBack);
                self.schedule(down_ns, Event::DelayedRestart { node: index as u8 });
            }
            DiskLossScenario::Aimed => {
                let voters = followers.len() + 1;
                let lagging_count = (voters - 1) / 2;
                // The lagging followers and the victim must be able to
                // outvote the rest if the victim's vote counted.
                if lagging_count == 0 || followers.len() < lagging_count + 1 {
                    return;
                }
                let mut pool = followers;
                let mut lagging = Vec::new();
                for _ in 0..lagging_count {
                    let pick = self.disk_loss.rng.gen_range(0..pool.len());
                    lagging.push(pool.swap_remove(pick));
                }
                let victim = pool[self.disk_loss.rng.gen_range(0..pool.len())];
                let side: Vec<NodeId> = lagging.iter().map(|i| *i as NodeId + 1).collect();
                let partition = Partition::Split { side };
                self.blocked = partition.blocked_matrix(self.hosts.len());
                self.note(None, || {
                    format!("disk loss, aimed: the lagging followers are cut off, {partition}")
                });
                self.network_changed();
                self.disk_loss.aimed = Some(Aimed {
                    lagging,
                    victim,
                    down_ns,
                });
                let lag_ns = self.disk_loss.rng.gen_range(LAG_MIN_NS..LAG_MAX_NS);
                self.schedule(lag_ns, Event::DiskLoss(DiskLossStep::Wipe));
            }
        }
    }

    /// A timed step of the aimed sequence.
    pub(super) fn disk_loss_step(&mut self, step: DiskLossStep) {
        let Some(aimed) = self.disk_loss.aimed.clone() else {
            return;
        };
        match step {
            DiskLossStep::Wipe => {
                let victim = aimed.victim;
                if self.hosts[victim].node.is_none() || !self.storage_loss_allowed() {
                    self.note(Some(victim), || {
                        "disk loss, aimed: the victim is down or too many disks are lost; ended"
                            .to_string()
                    });
                    self.disk_loss_step(DiskLossStep::Heal);
                    return;
                }
                self.lose_storage(victim, false);
                // The victim joins the lagging side; everyone else, the
                // leader among them, is cut off from it.
                let side: Vec<NodeId> = aimed
                    .lagging
                    .iter()
                    .chain(std::iter::once(&victim))
                    .map(|i| *i as NodeId + 1)
                    .collect();
                let partition = Partition::Split { side };
                self.blocked = partition.blocked_matrix(self.hosts.len());
                self.note(None, || {
                    format!("disk loss, aimed: the victim is left with the lagging, {partition}")
                });
                self.network_changed();
                self.restart(victim);
                self.schedule(aimed.down_ns, Event::DiskLoss(DiskLossStep::Heal));
            }
            DiskLossStep::Heal => {
                self.disk_loss.aimed = None;
                if !self.healed {
                    self.blocked = [0; 8];
                    self.note(None, || "disk loss, aimed: network healed".to_string());
                    self.network_changed();
                }
            }
        }
    }

    /// Whether one more server may lose its storage: those without it
    /// (lost, not yet recovered) stay a minority of the smallest voter
    /// set any running node has in force.
    fn storage_loss_allowed(&self) -> bool {
        // A witness holds no entries' contents: an entry committed with a
        // witness in its majority may live on one full replica only, and
        // losing that replica's disk loses the entry, whatever Raft does.
        // A configuration with witnesses survives no disk loss, so none is
        // made (the recovery then rightly elects no one: seed 3100001901
        // on 5 nodes, where only the witness knew of the committed tail).
        let witnesses = self
            .hosts
            .iter()
            .filter_map(|host| host.node.as_ref())
            .any(|node| !node.membership().witnesses.is_empty());
        if witnesses {
            return false;
        }
        let voters = self
            .hosts
            .iter()
            .filter_map(|host| host.node.as_ref())
            .flat_map(|node| {
                let membership = node.membership();
                [membership.voters.len(), membership.voters_outgoing.len()]
            })
            .filter(|len| *len > 0)
            .min()
            .unwrap_or(0);
        let without = self
            .hosts
            .iter()
            .filter(|host| host.storage_loss.is_some())
            .count();
        2 * (without + 1) < voters
    }

    /// The running full voters of the leader's configuration other than
    /// the leader, not lost for good, not paused.
    fn running_full_voters(&self, leader: usize) -> Vec<usize> {
        let Some(membership) = self.hosts[leader].node.as_ref().map(|n| n.membership()) else {
            return Vec::new();
        };
        (0..self.hosts.len())
            .filter(|index| *index != leader)
            .filter(|index| {
                let id = *index as NodeId + 1;
                membership.is_voter(id)
                    && !membership.voters_outgoing.contains(&id)
                    && !membership.is_witness(id)
            })
            .filter(|index| {
                let host = &self.hosts[*index];
                host.node
                    .as_ref()
                    .is_some_and(|n| n.role() == Role::Follower)
                    && !host.paused
                    && host.storage_loss.is_none()
                    && !self.is_lost(*index)
                    && self.witness != Some(*index)
            })
            .collect()
    }

    /// Crashes node `index` and takes its storage: all of it, or (with
    /// `roll_back`) its last synced entries, term and vote.
    fn lose_storage(&mut self, index: usize, roll_back: bool) {
        let committed = self.committed_position();
        // Everything it ever acknowledged: at most its log's end (it holds
        // what it acknowledges), or what it promised before a truncation.
        let last_index = self.hosts[index]
            .node
            .as_ref()
            .map_or(0, |node| node.last_index());
        let members_at_loss = self
            .hosts
            .iter()
            .filter_map(|host| host.node.as_ref())
            .max_by_key(|node| (node.membership_index(), node.term()))
            .map(|node| {
                (
                    node.membership_index(),
                    node.term(),
                    node.membership().clone(),
                )
            });
        self.crash(index);
        let acknowledged_before = self
            .promises
            .acknowledged_highest(index)
            .max(last_index)
            .max(
                self.hosts[index]
                    .storage_loss
                    .map_or(0, |loss| loss.acknowledged_before),
            );
        let host = &mut self.hosts[index];
        let what = if roll_back {
            let lost = self.disk_loss.rng.gen_range(1..=ROLL_BACK_ENTRIES_MAX);
            // The host notices and stores the recovery marker before it
            // starts the node again (`Recovered::hard_state`).
            let last = host.disk.roll_back(lost);
            format!("DISK ROLLED BACK: lost its last {lost} synced entries, now ends at {last:?}")
        } else {
            host.disk = crate::disk::Disk::default();
            "DISK REPLACED: empty".to_string()
        };
        host.storage_loss = Some(StorageLoss {
            acknowledged_before,
        });
        host.members_at_loss = members_at_loss;
        // Every leader up to the highest term now may hold acknowledgements
        // from before the loss.
        let term_at_loss = self
            .hosts
            .iter()
            .filter_map(|host| host.node.as_ref().map(|node| node.term()))
            .max()
            .unwrap_or(0);
        let host = &mut self.hosts[index];
        let (term_before, acknowledged_earlier) = host.past_storage_loss.unwrap_or((0, 0));
        host.past_storage_loss = Some((
            term_before.max(term_at_loss),
            acknowledged_earlier.max(acknowledged_before),
        ));
        self.disk_loss.losses += 1;
        self.promises.accept_storage_loss(index, committed);
        self.rules.on_storage_loss(index);
        self.trace.word(0xd15c_0000 | index as u64);
        self.note(Some(index), || {
            format!("{what}; committed when lost: {committed:?}")
        });
    }

    /// A server that lost its disk is started as an operator starts a
    /// replaced server: told the cluster's members of the moment (those of
    /// the running node with the newest configuration), not those the
    /// cluster was created with, which may no longer lead it to anyone
    /// who remembers (a cluster grown from one server would find itself
    /// alone, and new). With no member running, it is told the newest
    /// configuration known when its storage was lost (seed 5200002516 on
    /// 3 nodes: a cluster grown from n1 restarted n1's replaced disk while
    /// the others were down, and n1 elected itself alone as a new
    /// cluster).
    pub(super) fn current_members_into(&self, index: usize, config: &mut concord::Config) {
        let running = self
            .hosts
            .iter()
            .enumerate()
            .filter(|(other, _)| *other != index)
            .filter_map(|(_, host)| host.node.as_ref())
            .map(|node| (node.membership_index(), node.term(), node.membership()));
        let at_loss = self.hosts[index]
            .members_at_loss
            .as_ref()
            .map(|(at, term, membership)| (*at, *term, membership));
        let newest = running
            .chain(at_loss)
            .max_by_key(|(at, term, _)| (*at, *term));
        let Some((_, _, membership)) = newest else {
            return;
        };
        let id = index as NodeId + 1;
        config.voters = membership
            .voters
            .iter()
            .chain(&membership.voters_outgoing)
            .copied()
            .collect();
        config.learners = membership.learners.clone();
        config
            .learners
            .retain(|learner| !config.voters.contains(learner));
        config.learners.remove(&id);
        if !config.voters.contains(&id) {
            config.learners.insert(id);
        }
        config.witnesses = membership
            .witnesses
            .intersection(&config.voters)
            .copied()
            .collect();
        if self.witness != Some(index) {
            config.witnesses.remove(&id);
        }
        config.priorities.retain(|id, _| membership.contains(*id));
    }

    /// The highest entry any running node knows committed.
    fn committed_position(&self) -> Option<LogPosition> {
        self.hosts
            .iter()
            .filter_map(|host| host.node.as_ref())
            .filter_map(|node| {
                let commit = node.commit_index();
                let term = node.term_at(commit)?;
                (commit > 0).then_some(LogPosition::new(commit, term))
            })
            .max_by_key(|position| position.index)
    }

    /// Node `index` sends `message`: a node that lost its storage grants
    /// no vote and no pre-vote, until its durable log holds the entry
    /// committed when it lost it, to a candidate whose log lacks that
    /// entry. Its vote could otherwise elect, with a lagging peer, a
    /// leader without it, and the writes acknowledged up to it would be
    /// lost. Returns what went wrong.
    pub(super) fn check_vote_after_loss(
        &mut self,
        index: usize,
        message: &Message,
    ) -> Option<String> {
        let owed = self.promises.owed_after_loss(index)?;
        let holds = |node: &Node| {
            node.log_base().index >= owed.index || node.term_at(owed.index) == Some(owed.term)
        };
        let node = self.hosts[index].node.as_ref()?;
        if node.persisted_index() >= owed.index && holds(node) {
            self.promises.loss_repaid(index);
            return None;
        }
        let MessageBody::RequestVoteResponse {
            pre_vote,
            granted: true,
        } = message.body
        else {
            return None;
        };
        let candidate = self.hosts.get(message.to as usize - 1)?.node.as_ref()?;
        // Judged against the candidate still campaigning as it asked (its
        // log then only grows past its committed entries); one that
        // restarted since may have lost an unsynced tail it asked with.
        let campaigning = if pre_vote {
            candidate.role() == Role::PreCandidate && candidate.term() + 1 == message.term
        } else {
            candidate.role() == Role::Candidate && candidate.term() == message.term
        };
        if !campaigning || holds(candidate) {
            return None;
        }
        Some(format!(
            "lost its storage when entry {} (term {}) was committed, and grants n{} a {}vote in term {} though n{} lacks that entry (its log ends at {:?}; this node's durable log ends at {}): a server that forgot what it acknowledged must help elect only a leader that holds what was committed",
            owed.index,
            owed.term,
            message.to,
            if pre_vote { "pre-" } else { "" },
            message.term,
            message.to,
            candidate.last_position(),
            node.persisted_index()
        ))
    }

    /// A leader found `follower` holding less than it acknowledged: right,
    /// if the follower lost its storage since, below what it had
    /// acknowledged before.
    pub(super) fn storage_loss_expects_regression(
        &self,
        reporter: usize,
        follower: NodeId,
        acknowledged_index: Index,
    ) -> bool {
        let index = follower as usize - 1;
        let Some(host) = self.hosts.get(index) else {
            return false;
        };
        if host
            .storage_loss
            .is_some_and(|loss| acknowledged_index <= loss.acknowledged_before)
        {
            return true;
        }
        // Recovered since, but the reporting leader's term is no later than
        // the loss: it may have counted an acknowledgement from before it.
        let reporter_term = self.hosts[reporter].node.as_ref().map(|node| node.term());
        host.past_storage_loss.is_some_and(|(term, acknowledged)| {
            acknowledged_index <= acknowledged && reporter_term.is_none_or(|t| t <= term)
        })
    }

    /// Node `index` reported a step of its recovery.
    pub(super) fn note_storage_recovery(&mut self, index: usize, event: StorageRecoveryEvent) {
        self.trace.word(
            0x5e0c_0000
                | index as u64
                | match event {
                    StorageRecoveryEvent::NewCluster { .. } => 1 << 8,
                    StorageRecoveryEvent::FloorLearned { .. } => 2 << 8,
                    StorageRecoveryEvent::Recovered { .. } => 3 << 8,
                    StorageRecoveryEvent::AcknowledgedEntryLost { .. } => 4 << 8,
                },
        );
        if matches!(
            event,
            StorageRecoveryEvent::Recovered { .. } | StorageRecoveryEvent::NewCluster { .. }
        ) && self.hosts[index].storage_loss.take().is_some()
        {
            self.disk_loss.recoveries += 1;
        }
        // Only the recoveries that follow a loss are news in a timeline:
        // every node of a new run finds its cluster new.
        if !matches!(event, StorageRecoveryEvent::NewCluster { .. }) {
            self.note(Some(index), || format!("storage recovery: {event:?}"));
        }
    }
}
