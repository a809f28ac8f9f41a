//! A simulated node: its [`MultiNode`] driven through the layer's public
//! API exactly as a real host drives it (step, execute the actions, feed
//! completions back, flush), its disk (one log for every group, synced
//! in batches), its groups' state machines, and crash, restart and pause.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use rand::Rng;

use concord::multi::{GroupId, GroupSleep, MultiAction, MultiInput, MultiNode};
use concord::state_machine::StateMachine;
use concord::{
    checksum64, Action, Config, EntryPayload, Input, LogPosition, MessageBody, NodeId,
    ProposeError, Role, Snapshot,
};

use crate::disk::Record;
use crate::engine::{
    fsync_latency_ns, read_refusal_hint, receive_snapshot_chunk, received_snapshot, FailureKind,
};
use crate::faults::FaultKind;
use crate::safety::ApplyError;
use crate::trace::hash_bytes;
use concord_services::{kv::Kv, ServiceMachine};

use super::engine::{
    Event, FlushWindow, HostGroup, MultiSim, PendingOp, Proposer, Queued, WalBatch,
    PAUSED_QUEUE_MAX,
};
use super::report::MultiCheck;

/// Most rounds of execute-and-flush one step may take.
const SETTLE_ROUNDS_MAX: usize = 10_000;

/// Work a step generates for the node itself.
enum Work {
    Input(MultiInput),
}

/// What one step touched, for the checks after it.
#[derive(Default)]
struct Touched {
    groups: BTreeSet<GroupId>,
}

impl Touched {
    fn frame(&mut self, frame: &concord::multi::Frame) {
        self.groups
            .extend(frame.messages.iter().map(|item| item.group));
        self.groups
            .extend(frame.heartbeats.iter().map(|item| item.group));
        self.groups
            .extend(frame.heartbeat_answers.iter().map(|item| item.group));
        self.groups
            .extend(frame.quiesce.iter().map(|item| item.group));
        self.groups
            .extend(frame.quiesce_answers.iter().map(|item| item.group));
    }
}

/// The groups asleep on `multi` for which `frame` holds only messages of
/// terms older than the group's own (no heartbeat, answer or quiescence
/// item): stepping the frame must leave each of them asleep
/// (`stale-wake`).
fn asleep_with_stale_only(multi: &MultiNode, frame: &concord::multi::Frame) -> Vec<GroupId> {
    let mut other: BTreeSet<GroupId> = BTreeSet::new();
    other.extend(frame.heartbeats.iter().map(|item| item.group));
    other.extend(frame.heartbeat_answers.iter().map(|item| item.group));
    other.extend(frame.quiesce.iter().map(|item| item.group));
    other.extend(frame.quiesce_answers.iter().map(|item| item.group));
    let mut stale: BTreeSet<GroupId> = BTreeSet::new();
    for item in &frame.messages {
        let older = multi
            .group(item.group)
            .is_some_and(|node| item.term < node.term());
        if older {
            stale.insert(item.group);
        } else {
            other.insert(item.group);
        }
    }
    stale
        .into_iter()
        .filter(|group| {
            !other.contains(group)
                && !matches!(multi.sleep_state(*group), None | Some(GroupSleep::Awake))
        })
        .collect()
}

impl MultiSim {
    /// Fails the run by the Raft check `kind` at node `index` (and
    /// `group`, if the failure is one group's).
    pub(crate) fn fail_raft(
        &mut self,
        kind: FailureKind,
        index: usize,
        group: Option<GroupId>,
        message: String,
    ) {
        self.fail(MultiCheck::Raft(kind), Some(index), group, message);
    }

    /// The highest commit index of `group` on any running node.
    pub(crate) fn committed_anywhere(&self, group: GroupId) -> concord::Index {
        self.hosts
            .iter()
            .filter_map(|host| host.multi.as_ref()?.group(group))
            .map(|node| node.commit_index())
            .max()
            .unwrap_or(0)
    }

    /// Group `group`'s configuration on node `index`.
    pub(crate) fn group_config(&self, index: usize, group: GroupId) -> Config {
        let id = index as NodeId + 1;
        let state = &self.groups[&group];
        let (voters, joining) = match state.joined.get(&id) {
            Some(voters) => (voters, true),
            None => (&state.initial, false),
        };
        let mut config = Config::new(id, voters.iter().copied());
        if joining {
            config.learners = [id].into();
        }
        let incarnation = self.hosts[index].incarnation;
        config.seed = self
            .config
            .seed
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(group.wrapping_mul(1_000_003))
            .wrapping_add(id.wrapping_mul(7919))
            .wrapping_add(incarnation.wrapping_mul(0x2545_f491_4f6c_dd1d));
        let mut options = self.drawn.node_options;
        let preferred = options.preferred_leader;
        options.preferred_leader = false;
        options.apply(&mut config, voters.len());
        // Every member prefers the same node: the highest drawn voter (a
        // node that joins later prefers it too, or none when it is not a
        // voter of what the joiner starts from). Members preferring
        // different nodes would hand leadership back and forth for good.
        if preferred && state.initial.len() > 1 {
            if let Some(highest) = state.initial.last().filter(|id| voters.contains(id)) {
                config.priorities.insert(*highest, 1);
            }
        }
        if let Some(compaction) = &self.drawn.compaction {
            compaction.apply(&mut config);
        }
        self.drawn
            .reads
            .apply(&mut config, self.config.max_skew_ppm, false);
        config
    }

    /// Starts (or restarts) node `index` from its disk: every group it is
    /// a voter of, recovered, with its state machine restored from the
    /// group's snapshot.
    pub(crate) fn boot(&mut self, index: usize) {
        let incarnation = self.hosts[index].incarnation + 1;
        self.hosts[index].incarnation = incarnation;
        let config = self
            .drawn
            .layer
            .config(index as NodeId + 1, self.config.nodes, incarnation);
        #[allow(unused_mut)]
        let mut multi = match MultiNode::new(config) {
            Ok(multi) => multi,
            Err(error) => {
                let message = format!("the layer refused its configuration: {error}");
                self.fail_raft(FailureKind::Recovery, index, None, message);
                return;
            }
        };
        #[cfg(feature = "planted-bugs")]
        if self.config.bugs != super::MultiBugs::NONE {
            multi.plant_bugs(self.config.bugs);
        }
        #[cfg(feature = "planted-bugs")]
        if self.config.core_bugs != crate::config::CoreBugs::NONE {
            multi.plant_core_bugs(self.config.core_bugs);
        }
        if let Some(shared) = &self.rules {
            shared
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .on_restart(index);
            let observer = super::rules::HostObserver::new(index, shared.clone());
            multi.set_step_observer(Box::new(observer));
        }
        let mut snapshots = Vec::new();
        for group in self.groups_of(index) {
            let config = self.group_config(index, group);
            let host = &mut self.hosts[index];
            let disk = host.disks.entry(group).or_default();
            let recovered = match disk.recover() {
                Ok(recovered) => recovered,
                Err(error) => {
                    let message = format!("group {group}: disk recovery: {}", error.0);
                    self.fail_raft(FailureKind::HostContract, index, Some(group), message);
                    return;
                }
            };
            let base = recovered.base;
            let snapshot = disk.snapshot().cloned();
            if let Some((index_promised, term)) = host.promised.remove(&group) {
                let last = base.index + recovered.entries.len() as u64;
                let held = if index_promised == 0 {
                    true
                } else if term.is_none() {
                    // Below the node's own log: only the index is known.
                    index_promised <= last
                } else if index_promised <= base.index {
                    index_promised < base.index || Some(base.term) == term
                } else {
                    recovered
                        .entries
                        .get((index_promised - base.index - 1) as usize)
                        .is_some_and(|entry| Some(entry.term) == term)
                };
                if !held {
                    let message = format!(
                        "group {group} was told index {index_promised} (term {term:?}) is durable, but after the crash the disk holds only up to index {last} (base {base:?})"
                    );
                    self.fail(MultiCheck::Durability, Some(index), Some(group), message);
                    return;
                }
            }
            let mut sm = ServiceMachine::<Kv>::new();
            let mut snapshot_bytes = std::collections::BTreeMap::new();
            if let Some(snapshot) = &snapshot {
                if let Err(error) = sm.restore(&snapshot.data) {
                    let message = format!("group {group}: restoring the stored snapshot: {error}");
                    self.fail_raft(FailureKind::Recovery, index, Some(group), message);
                    return;
                }
                snapshot_bytes.insert(snapshot.position, snapshot.data.clone());
            } else if base.index > 0 {
                let message = format!(
                    "group {group}: the log continues after {base:?} but no snapshot is stored"
                );
                self.fail_raft(FailureKind::Recovery, index, Some(group), message);
                return;
            }
            if let Err(error) = multi.create_group(group, config, recovered) {
                let message = format!("the layer refused group {group}: {error}");
                self.fail_raft(FailureKind::Recovery, index, Some(group), message);
                return;
            }
            self.hosts[index].groups.insert(
                group,
                HostGroup {
                    sm,
                    applied: base,
                    snapshot_bytes,
                    incoming: None,
                    installed: BTreeMap::new(),
                },
            );
            if let Some(snapshot) = snapshot {
                snapshots.push((group, snapshot.meta()));
            }
            self.groups
                .get_mut(&group)
                .expect("hosted groups exist")
                .safety
                .on_restart(index);
        }
        let host = &mut self.hosts[index];
        host.multi = Some(multi);
        host.clear_run();
        self.note(Some(index), || format!("boot (incarnation {incarnation})"));
        for (group, meta) in snapshots {
            // Hand each group the snapshot it can serve followers.
            let input = MultiInput::Group {
                group,
                input: Input::Snapshotted(meta),
            };
            self.step_node(index, input, None);
        }
        let phase = self
            .disk_rng
            .gen_range(0..self.hosts[index].tick_period_ns.max(1));
        self.schedule(
            phase,
            Event::Tick {
                node: index,
                incarnation,
            },
        );
    }

    /// Crashes node `index`: its memory and every unsynced write are gone
    /// (the first of them perhaps torn).
    pub(crate) fn crash(&mut self, index: usize) {
        let Some(multi) = self.hosts[index].multi.take() else {
            return;
        };
        let tear = self.rates.torn > 0.0 && self.disk_rng.gen_bool(self.rates.torn);
        let first_batch: BTreeSet<GroupId> = self.hosts[index]
            .wal
            .front()
            .map(|batch| batch.writes.iter().map(|(group, _)| *group).collect())
            .unwrap_or_default();
        let host = &mut self.hosts[index];
        host.totals.add(multi.stats());
        let mut torn = false;
        for (group, node) in multi.groups() {
            let term = node.term_at(node.persisted_index());
            host.promised.insert(group, (node.persisted_index(), term));
        }
        for (group, disk) in host.disks.iter_mut() {
            torn |= disk.crash(tear && first_batch.contains(group));
        }
        host.wal.clear();
        host.syncing = None;
        host.groups.clear();
        host.reads.clear();
        host.clear_run();
        if torn {
            self.faults.add(FaultKind::Torn, 1);
        }
        self.faults.add(FaultKind::Crash, 1);
        self.trace.word(0xc4a5_0000 | index as u64);
        self.note(Some(index), || {
            format!("CRASH{}", if torn { " (torn record)" } else { "" })
        });
    }

    /// Restarts a crashed node.
    pub(crate) fn restart(&mut self, index: usize) {
        if self.hosts[index].multi.is_some() {
            return;
        }
        if self.is_lost(index) {
            // Destroyed for good (`forced.rs`): never comes back.
            return;
        }
        if self.membership.held_down() == Some(index) {
            self.note(Some(index), || {
                "restart: kept down (being replaced)".to_string()
            });
            return;
        }
        self.note(Some(index), || "restart".to_string());
        self.boot(index);
    }

    /// Stalls node `index`: its inputs queue and its ticks are counted.
    pub(crate) fn pause(&mut self, index: usize) {
        if self.hosts[index].multi.is_some() && !self.hosts[index].paused {
            self.hosts[index].paused = true;
            self.hosts[index].pause_generation += 1;
            self.faults.add(FaultKind::Pause, 1);
            self.note(Some(index), || "pause".to_string());
        }
    }

    /// Resumes a paused node: the ticks it missed come first (a leader
    /// must see its lease run out before it serves a read), then what
    /// queued up. The missed ticks alone must take no live peer for dead
    /// (`stall-death`, see [`MultiSim::stall_suspects`]). In a seed with
    /// stall bursts they come back to back, the node flushed only after
    /// the last, as the tokio host hands them over after a stall
    /// (`wake-bound` bounds what the layer wakes meanwhile); otherwise
    /// each is flushed.
    pub(crate) fn resume(&mut self, index: usize) {
        if !self.hosts[index].paused {
            return;
        }
        self.hosts[index].paused = false;
        let missed = std::mem::take(&mut self.hosts[index].missed_ticks);
        self.note(Some(index), || format!("resume ({missed} ticks missed)"));
        let suspects = self.stall_suspects(index);
        for at in 0..missed {
            if self.hosts[index].multi.is_none() || self.failure.is_some() {
                return;
            }
            if self.hosts[index].paused {
                // Stalled again by what a tick set off: the ticks left
                // wait for the next resume.
                self.hosts[index].missed_ticks += missed - at;
                break;
            }
            let flush = !self.stall_bursts || at + 1 == missed;
            self.step_node_with(index, MultiInput::Tick, None, flush);
            if !suspects.is_empty() {
                self.check_stall_deaths(index, &suspects, missed);
            }
        }
        while self.hosts[index].multi.is_some()
            && !self.hosts[index].paused
            && self.failure.is_none()
        {
            let Some(queued) = self.hosts[index].paused_queue.pop_front() else {
                break;
            };
            self.take_queued(index, queued);
        }
    }

    /// The peers node `index` must still take for alive after the ticks
    /// its stall missed, with the ticks it had not heard from each when
    /// the stall began: every peer it took for alive, heard from less
    /// than `liveness_timeout_ticks` before the stall, that is up (not
    /// crashed) and whose frames wait for the node in its queue. Such a
    /// peer was alive and speaking the whole time; only the node's own
    /// clock ran on without it, and a host that stalls gets its missed
    /// ticks in one burst before the frames that waited (as the tokio
    /// host does). Taking it for dead would queue every group it leads
    /// here to elect against a live leader.
    pub(crate) fn stall_suspects(&self, index: usize) -> Vec<(NodeId, u64)> {
        let host = &self.hosts[index];
        let Some(multi) = &host.multi else {
            return Vec::new();
        };
        let me = multi.id();
        let now = multi.now_ticks();
        let timeout = u64::from(multi.config().liveness_timeout_ticks);
        multi
            .config()
            .peers
            .iter()
            .copied()
            .filter(|peer| *peer != me && multi.peer_alive(*peer) == Some(true))
            .filter_map(|peer| {
                let silent = now - host.heard_tick.get(&peer).copied().unwrap_or(0).min(now);
                let up = self
                    .hosts
                    .get(peer as usize - 1)
                    .is_some_and(|other| other.multi.is_some());
                let waiting = host.paused_queue.iter().any(|queued| {
                    matches!(queued, Queued::Frame(frame) if frame.from == peer && frame.to == me)
                });
                (silent < timeout && up && waiting).then_some((peer, silent))
            })
            .collect()
    }

    /// After a missed tick of node `index`: fails `stall-death` if it took
    /// one of `suspects` for dead.
    fn check_stall_deaths(&mut self, index: usize, suspects: &[(NodeId, u64)], missed: u64) {
        let Some(multi) = &self.hosts[index].multi else {
            return;
        };
        let Some(&(peer, silent)) = suspects
            .iter()
            .find(|(peer, _)| multi.peer_alive(*peer) == Some(false))
        else {
            return;
        };
        let message = format!(
            "n{} took n{peer} for dead in the {missed} ticks its stall missed: it had heard n{peer} {silent} ticks before the stall (liveness timeout {} ticks), and n{peer}, up, had sent it frames that waited for it",
            multi.id(),
            multi.config().liveness_timeout_ticks
        );
        self.fail(MultiCheck::StallDeath, Some(index), None, message);
    }

    /// Hands a queued input to a node that runs.
    pub(crate) fn take_queued(&mut self, index: usize, queued: Queued) {
        match queued {
            Queued::Frame(frame) => self.step_node(index, MultiInput::Receive(*frame), None),
            Queued::Persisted(id) => self.step_node(index, MultiInput::Persisted(id), None),
            Queued::Snapshotted { group } => self.snapshot_synced(index, group),
            Queued::Request {
                client,
                op_seq,
                attempt,
            } => self.client_request(index, client, op_seq, attempt),
            Queued::Probe { group } => self.probe_request(index, group),
        }
    }

    /// Queues `queued` for a paused node (network input only up to a
    /// bound: a stalled process's socket buffers fill up). False if the
    /// node runs.
    pub(crate) fn queue_if_paused(&mut self, index: usize, queued: Queued) -> Option<Queued> {
        let host = &mut self.hosts[index];
        if !host.paused {
            return Some(queued);
        }
        let local = matches!(queued, Queued::Persisted(_) | Queued::Snapshotted { .. });
        if local || host.paused_queue.len() < PAUSED_QUEUE_MAX {
            host.paused_queue.push_back(queued);
        }
        None
    }

    /// Steps node `index` with `input` and executes everything it leads
    /// to: the actions, the completions they feed back, and the flushes,
    /// until the node has nothing more to do. Then checks every group the
    /// step touched.
    pub(crate) fn step_node(
        &mut self,
        index: usize,
        input: MultiInput,
        proposer: Option<Proposer>,
    ) {
        self.step_node_with(index, input, proposer, true);
    }

    /// [`MultiSim::step_node`], without the flushes when `flush` is false
    /// (a host handing over the ticks it missed back to back: the actions
    /// are executed, the frames and writes wait for the flush after the
    /// last tick).
    pub(crate) fn step_node_with(
        &mut self,
        index: usize,
        input: MultiInput,
        proposer: Option<Proposer>,
        flush: bool,
    ) {
        if self.hosts[index].multi.is_none() || self.failure.is_some() {
            return;
        }
        self.node_steps += 1;
        let peer_changes = |stats: &concord::multi::MultiStats| {
            stats.peers_died + stats.peers_returned + stats.peers_restarted
        };
        let changes_before = self.hosts[index]
            .multi
            .as_ref()
            .map_or(0, |multi| peer_changes(multi.stats()));
        let mut touched = Touched::default();
        let mut work: VecDeque<(Work, Option<Proposer>)> = VecDeque::new();
        work.push_back((Work::Input(input), proposer));
        let mut out = Vec::new();
        let mut rounds = 0;
        'settle: loop {
            while let Some((Work::Input(input), proposer)) = work.pop_front() {
                match &input {
                    MultiInput::Receive(frame) => touched.frame(frame),
                    MultiInput::Group { group, .. }
                    | MultiInput::SendSnapshotChunk { group, .. } => {
                        touched.groups.insert(*group);
                    }
                    _ => {}
                }
                let Some(multi) = self.hosts[index].multi.as_mut() else {
                    return;
                };
                let heard_from = match &input {
                    MultiInput::Receive(frame) => Some((frame.from, frame.incarnation)),
                    _ => None,
                };
                let received = multi.stats().frames_received;
                let restarts = multi.stats().peers_restarted;
                let tick = matches!(input, MultiInput::Tick);
                let queue_work = |stats: &concord::multi::MultiStats| {
                    (
                        stats.wakes_to_elect + stats.wakes_to_lead,
                        stats.election_slots_expired,
                    )
                };
                let queue_before = queue_work(multi.stats());
                let stale_only = match &input {
                    MultiInput::Receive(frame) => asleep_with_stale_only(multi, frame),
                    _ => Vec::new(),
                };
                if let Err(error) = multi.step(input, &mut out) {
                    let message = format!("the layer refused an input of the host: {error}");
                    self.fail_raft(FailureKind::HostContract, index, None, message);
                    return;
                }
                if let Some(shared) = &self.rules {
                    let mut rules = shared
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    if tick {
                        rules.set_clock(index, multi.now_ticks());
                    }
                    if let Some((node, group, broken)) = rules.take_broken() {
                        drop(rules);
                        self.fail_raft(broken.kind, node, Some(group), broken.message);
                        return;
                    }
                }
                if tick {
                    self.hosts[index].pace.ticks += 1;
                }
                let Some(multi) = self.hosts[index].multi.as_mut() else {
                    return;
                };
                if tick {
                    let (wakes, expired) = queue_work(multi.stats());
                    let window = &mut self.hosts[index].since_flush;
                    window.ticks += 1;
                    if window.ticks > 1 {
                        self.ticks_back_to_back += 1;
                    }
                    window.queue_wakes += wakes - queue_before.0;
                    window.serving_ticks += u64::from(wakes > queue_before.0);
                    window.expiring_ticks += u64::from(expired > queue_before.1);
                    let window = *window;
                    self.check_flush_window(index, &window);
                    if self.failure.is_some() {
                        return;
                    }
                }
                let Some(multi) = self.hosts[index].multi.as_mut() else {
                    return;
                };
                if let Some(group) = stale_only
                    .iter()
                    .copied()
                    .find(|group| multi.sleep_state(*group) == Some(GroupSleep::Awake))
                {
                    let term = multi.group(group).map_or(0, |node| node.term());
                    let message = format!(
                        "a frame from n{} whose only messages for group {group} were of terms older than its own woke it (asleep in term {term}): Raft changes nothing for such a message, and a follower woken while its leader sleeps hears no heartbeat and campaigns",
                        heard_from.map_or(0, |(from, _)| from)
                    );
                    self.fail(MultiCheck::StaleWake, Some(index), Some(group), message);
                    return;
                }
                if let Some((from, incarnation)) = heard_from {
                    let accepted = multi.stats().frames_received > received;
                    let restarts = multi.stats().peers_restarted - restarts;
                    let now = multi.now_ticks();
                    let host = &mut self.hosts[index];
                    let known = host.heard_incarnation.get(&from).copied();
                    // The layer takes a peer for restarted exactly when a
                    // frame it takes carries a newer incarnation than any
                    // it took from that peer before (`restart-count`).
                    let newer = accepted && known.is_some_and(|known| incarnation > known);
                    if restarts != u64::from(newer) {
                        let me = index as NodeId + 1;
                        let message = match known {
                            Some(known) if !newer => format!(
                                "n{me} took n{from} for restarted on a frame of its incarnation {incarnation}, though it had taken one of incarnation {known}: n{from} did not restart since"
                            ),
                            _ => format!(
                                "n{me} took a frame of n{from}'s incarnation {incarnation} (newest before: {known:?}) and counted {restarts} restarts of its peers"
                            ),
                        };
                        self.fail(MultiCheck::RestartCount, Some(index), None, message);
                        return;
                    }
                    let current = known.is_none_or(|known| incarnation >= known);
                    if accepted && !current {
                        self.old_incarnation_frames += 1;
                    }
                    let host = &mut self.hosts[index];
                    if accepted && current {
                        host.heard_tick.insert(from, now);
                        host.heard_incarnation.insert(from, incarnation);
                    }
                }
                let actions = std::mem::take(&mut out);
                if !self.execute_all(index, actions, proposer, &mut work, &mut touched) {
                    return;
                }
                // The nemesis strikes before this step's sends and writes
                // leave the node.
                if self.crash_if_struck(index) {
                    return;
                }
            }
            if !flush {
                break 'settle;
            }
            let Some(multi) = self.hosts[index].multi.as_mut() else {
                return;
            };
            multi.flush(&mut out);
            self.check_snapshot_pace(index, &out);
            if self.failure.is_some() {
                return;
            }
            self.hosts[index].since_flush = FlushWindow::default();
            if out.is_empty() {
                break 'settle;
            }
            rounds += 1;
            if rounds > SETTLE_ROUNDS_MAX {
                let message = format!("the node did not settle within {SETTLE_ROUNDS_MAX} flushes");
                self.fail_raft(FailureKind::HostContract, index, None, message);
                return;
            }
            let actions = std::mem::take(&mut out);
            if !self.execute_all(index, actions, None, &mut work, &mut touched) {
                return;
            }
        }
        self.after_step(index, &touched.groups);
        if self.crash_if_struck(index) {
            return;
        }
        let changes_after = self.hosts[index]
            .multi
            .as_ref()
            .map_or(0, |multi| peer_changes(multi.stats()));
        if changes_after > changes_before {
            self.maybe_stall_at_peer_change(index);
        }
    }

    /// The layer of node `index` just saw a peer die, return or restart,
    /// and queued the groups to wake for it: in a seed with stall bursts,
    /// half the time its host stalls for 2 to 40 ticks right then (the
    /// work of a wake storm is what stalls a real loop), so the ticks it
    /// misses come back to back with the queues full.
    fn maybe_stall_at_peer_change(&mut self, index: usize) {
        if !self.stall_bursts
            || self.phase != super::engine::Phase::Chaos
            || self.hosts[index].paused
            || self.failure.is_some()
            || !self.stall_rng.gen_bool(0.5)
        {
            return;
        }
        let ticks = self.stall_rng.gen_range(2..=40u64);
        let stall_ns = ticks * self.hosts[index].tick_period_ns;
        self.pause(index);
        let generation = self.hosts[index].pause_generation;
        self.note(Some(index), || {
            format!("stall of {ticks} ticks at a peer change")
        });
        self.schedule(
            stall_ns,
            Event::StallEnd {
                node: index,
                generation,
            },
        );
    }

    /// Between two flushes the layer serves its wake queues on one tick
    /// at most, waking at most `wakes_per_tick_max` groups, and judges
    /// election slots on one tick at most (`MultiNode::flush`): a host
    /// that hands the ticks it missed back to back must not get a round
    /// of wakes for each (`wake-bound`).
    fn check_flush_window(&mut self, index: usize, window: &FlushWindow) {
        let Some(multi) = &self.hosts[index].multi else {
            return;
        };
        let max = multi.config().wakes_per_tick_max as u64;
        let what = if window.queue_wakes > max {
            format!(
                "woke {} groups from its wake queues (wakes_per_tick_max {max})",
                window.queue_wakes
            )
        } else if window.serving_ticks > 1 {
            format!("served its wake queues on {} ticks", window.serving_ticks)
        } else if window.expiring_ticks > 1 {
            format!("expired election slots on {} ticks", window.expiring_ticks)
        } else {
            return;
        };
        let message = format!(
            "in {} ticks handed over since its last flush, n{} {what}: the queues are served, and slots judged, once per flush",
            window.ticks,
            multi.id()
        );
        self.fail(MultiCheck::WakeBound, Some(index), None, message);
    }

    /// A node under a snapshot bandwidth limit of `rate` bytes per tick
    /// sends, over any `n` consecutive ticks, at most `n × rate` bytes of
    /// chunks plus one chunk (`snapshot-pace`). The host sees chunks only
    /// in the frames of a flush, which may follow several ticks (a stall's
    /// catch-up), so it judges runs of flushes: the chunks of flushes `f1`
    /// to `f` left within the ticks between the flush before `f1` and `f`,
    /// plus the tick under way at that flush, so they are at most
    /// `(ticks + 1) × rate + chunk`, where a chunk is the largest the node
    /// sent (the limit lets the last chunk of a tick overdraw its credit by
    /// less than its length). `pace.excess` is the largest excess of chunk
    /// bytes over `rate × ticks` of any run ending now.
    fn check_snapshot_pace(&mut self, index: usize, out: &[MultiAction]) {
        let Some(multi) = &self.hosts[index].multi else {
            return;
        };
        let Some(rate) = multi.config().snapshot_send_bytes_per_tick_max else {
            return;
        };
        let pace = &mut self.hosts[index].pace;
        let mut chunk_bytes = 0;
        for action in out {
            let MultiAction::Send(frame) = action else {
                continue;
            };
            for message in &frame.messages {
                if let MessageBody::InstallSnapshot(chunk) = &message.body {
                    chunk_bytes += chunk.data.len() as u64;
                    pace.chunk_max = pace.chunk_max.max(chunk.data.len() as u64);
                }
            }
        }
        let drained = rate.saturating_mul(std::mem::take(&mut pace.ticks));
        pace.excess = (pace.excess.max(0) as i128 + chunk_bytes as i128 - drained as i128)
            .clamp(i64::MIN as i128, i64::MAX as i128) as i64;
        let (excess, chunk_max) = (pace.excess, pace.chunk_max);
        let allowed = rate + chunk_max;
        if excess > allowed as i64 {
            let message = format!(
                "n{} sent {excess} bytes of snapshot chunks more than its limit of {rate} bytes per tick allows over the ticks they left in; at most one tick's worth plus its largest chunk ({chunk_max} bytes) may be over",
                index + 1
            );
            self.fail(MultiCheck::SnapshotPace, Some(index), None, message);
            return;
        }
        // Each chunk waits once: a repeat takes its copy's place. Chunks
        // of one transfer never overlap (all are cut at multiples of the
        // chunk length from offset 0), so what waits of a transfer is at
        // most its snapshot.
        let Some(multi) = &self.hosts[index].multi else {
            return;
        };
        let over = multi
            .snapshot_transfers_waiting()
            .into_iter()
            .find(|transfer| transfer.bytes > transfer.size_bytes);
        if let Some(transfer) = over {
            let message = format!(
                "n{} holds {} bytes in {} chunks for group {}'s transfer to n{} of its {}-byte snapshot at {:?}: copies of a chunk wait more than once",
                index + 1,
                transfer.bytes,
                transfer.chunks,
                transfer.group,
                transfer.to,
                transfer.size_bytes,
                transfer.snapshot
            );
            self.fail(
                MultiCheck::SnapshotPace,
                Some(index),
                Some(transfer.group),
                message,
            );
        }
    }

    /// Executes `actions` of node `index` in order: false, and the rest
    /// left, once the run has failed or the node is down.
    fn execute_all(
        &mut self,
        index: usize,
        actions: Vec<MultiAction>,
        proposer: Option<Proposer>,
        work: &mut VecDeque<(Work, Option<Proposer>)>,
        touched: &mut Touched,
    ) -> bool {
        for action in actions {
            self.execute(index, action, proposer, work, touched);
            if self.failure.is_some() || self.hosts[index].multi.is_none() {
                return false;
            }
        }
        true
    }

    /// Crashes node `index` (and schedules its restart) if the nemesis
    /// asked to crash it after its step; whether it did.
    fn crash_if_struck(&mut self, index: usize) -> bool {
        match self.crash_after_step {
            Some((node, down_ns)) if node == index => {
                self.crash_after_step = None;
                self.crash(index);
                self.schedule(down_ns, Event::Restart { node: index });
                true
            }
            _ => false,
        }
    }

    fn execute(
        &mut self,
        index: usize,
        action: MultiAction,
        proposer: Option<Proposer>,
        work: &mut VecDeque<(Work, Option<Proposer>)>,
        touched: &mut Touched,
    ) {
        match action {
            MultiAction::Send(frame) => {
                touched.frame(&frame);
                self.send_frame(index, frame);
            }
            MultiAction::Persist(batch) => {
                let mut writes = Vec::new();
                let mut votes = false;
                let me = index as NodeId + 1;
                for write in batch.writes {
                    let group = write.group;
                    touched.groups.insert(group);
                    let id = write.write_id();
                    match write.action {
                        Action::Persist {
                            id,
                            hard_state,
                            truncate_after,
                            entries,
                        } => {
                            votes |= hard_state.is_some_and(|state| {
                                state.voted_for.is_some_and(|vote| vote != me)
                            });
                            self.hosts[index]
                                .disks
                                .entry(group)
                                .or_default()
                                .write(Record {
                                    id,
                                    hard_state,
                                    truncate_after,
                                    entries: entries.into_vec(),
                                    snapshot: None,
                                });
                        }
                        Action::PersistSnapshot {
                            id,
                            snapshot,
                            discard_log,
                            membership,
                        } => {
                            let host_group = self.hosts[index].groups.entry(group).or_default();
                            // Writes come in the order of the installs: an
                            // older one kept was never going to be stored.
                            host_group.installed =
                                host_group.installed.split_off(&snapshot.position);
                            let kept = host_group
                                .installed
                                .remove(&snapshot.position)
                                .map(|bytes| (snapshot, bytes.to_vec()));
                            let incoming = kept.or_else(|| host_group.incoming.take());
                            let received = match received_snapshot(incoming, &snapshot) {
                                Ok(received) => received,
                                Err(message) => {
                                    self.fail_raft(
                                        FailureKind::HostContract,
                                        index,
                                        Some(group),
                                        message,
                                    );
                                    return;
                                }
                            };
                            host_group
                                .snapshot_bytes
                                .insert(snapshot.position, received.clone());
                            let snapshot = Snapshot::new(snapshot.position, received)
                                .with_membership(Some(*membership));
                            self.hosts[index]
                                .disks
                                .entry(group)
                                .or_default()
                                .write(Record {
                                    id,
                                    hard_state: None,
                                    truncate_after: None,
                                    entries: Vec::new(),
                                    snapshot: Some((snapshot, discard_log)),
                                });
                        }
                        other => {
                            let message = format!("a persist batch held {other:?}");
                            self.fail_raft(FailureKind::HostContract, index, Some(group), message);
                            return;
                        }
                    }
                    match writes.iter_mut().find(|(known, _)| *known == group) {
                        Some((_, last)) => *last = id,
                        None => writes.push((group, id)),
                    }
                }
                self.hosts[index].wal.push_back(WalBatch {
                    id: batch.id,
                    writes,
                });
                if self.hosts[index].syncing.is_none() {
                    self.start_sync(index);
                }
                if votes {
                    if let Some(down_ns) = self.crash_voter.take() {
                        // The vote is written, its sync not done: crash.
                        self.faults.add(FaultKind::VoteCrash, 1);
                        self.note(Some(index), || {
                            "crashes before its vote is synced".to_string()
                        });
                        self.crash_after_step = Some((index, down_ns));
                    }
                }
            }
            MultiAction::Group { group, action } => {
                touched.groups.insert(group);
                self.group_action(index, group, action, proposer, work);
            }
        }
    }

    fn group_action(
        &mut self,
        index: usize,
        group: GroupId,
        action: Action,
        proposer: Option<Proposer>,
        work: &mut VecDeque<(Work, Option<Proposer>)>,
    ) {
        match action {
            Action::Apply { entries } => {
                let Some(last) = entries.last().map(|entry| entry.position()) else {
                    return;
                };
                // The commit that handed these out is judged first (the
                // per-step check comes after the whole step).
                let node = self.hosts[index]
                    .multi
                    .as_ref()
                    .and_then(|multi| multi.group(group));
                if let Some(node) = node {
                    let state = self.groups.get_mut(&group).expect("a hosted group");
                    if let Err((kind, message)) = state.safety.after_step(index, node) {
                        self.fail_raft(kind, index, Some(group), message);
                        return;
                    }
                }
                for entry in entries.iter() {
                    let response = {
                        let Some(host_group) = self.hosts[index].groups.get_mut(&group) else {
                            return;
                        };
                        match &entry.payload {
                            EntryPayload::Command(bytes) => host_group.sm.apply(entry.index, bytes),
                            EntryPayload::ForcedMembership(audit) => {
                                // As a real host does (`apply_entry`).
                                host_group.sm.apply_forced_recovery(entry.index, audit);
                                Bytes::new()
                            }
                            _ => Bytes::new(),
                        }
                    };
                    let state = self.groups.get_mut(&group).expect("a hosted group");
                    match state.safety.on_apply(index, entry, Some(&response)) {
                        Ok(()) => {}
                        Err(ApplyError::Violation((kind, message))) => {
                            self.fail_raft(kind, index, Some(group), message);
                            return;
                        }
                        Err(ApplyError::Diverged {
                            other,
                            other_response,
                        }) => {
                            let message = format!(
                                "applying entry {} (term {}) gave n{} the response {} but n{} the response {}",
                                entry.index,
                                entry.term,
                                other + 1,
                                crate::engine::show_response(other_response.as_ref()),
                                index + 1,
                                crate::engine::show_response(Some(&response)),
                            );
                            self.fail_raft(
                                FailureKind::StateMachineSafety,
                                index,
                                Some(group),
                                message,
                            );
                            return;
                        }
                    }
                    self.entry_applied(group, entry.index, entry.term, &response);
                }
                if let Some(host_group) = self.hosts[index].groups.get_mut(&group) {
                    host_group.applied = last;
                }
                let input = MultiInput::Group {
                    group,
                    input: Input::Applied(last.index),
                };
                work.push_back((Work::Input(input), None));
            }
            Action::ProposalAccepted {
                term, first_index, ..
            } => match proposer {
                Some(Proposer::Client {
                    client,
                    op_seq,
                    attempt,
                }) => {
                    let current = self.clients[client]
                        .op
                        .as_ref()
                        .is_some_and(|op| op.attempt == attempt && op.group == group)
                        && self.clients[client].op_seq == op_seq;
                    if let Some(down_ns) = self.crash_after_append.take() {
                        // The nemesis: the leader dies before the entry it
                        // just appended reaches its disk or a follower.
                        self.note(Some(index), || {
                            format!("crashes right after appending index {first_index}")
                        });
                        self.crash_after_step = Some((index, down_ns));
                    }
                    if current {
                        if let Some(op) = self.clients[client].op.as_mut() {
                            op.accepted = true;
                        }
                        self.groups
                            .get_mut(&group)
                            .expect("a hosted group")
                            .pending
                            .insert(
                                first_index,
                                PendingOp {
                                    client,
                                    op_seq,
                                    term,
                                },
                            );
                    }
                }
                Some(Proposer::Probe { group: probed }) if probed == group => {
                    let now = self.now_ns;
                    let probe = &mut self.groups.get_mut(&group).expect("a hosted group").probe;
                    probe.accepted.push((first_index, term, now));
                }
                _ => {}
            },
            Action::ProposalRefused { error, .. } => {
                let hint = match error {
                    ProposeError::NotLeader { leader_hint } => leader_hint,
                    ProposeError::TransferInProgress { target } => Some(target),
                    _ => None,
                };
                match proposer {
                    Some(Proposer::Client {
                        client,
                        op_seq,
                        attempt,
                    }) => self.retry_after_reply(client, op_seq, attempt, hint),
                    Some(Proposer::Probe { group: probed }) if probed == group => {
                        // The probe's own retry loop tries the hint next.
                        let probe = &mut self.groups.get_mut(&group).expect("a hosted group").probe;
                        probe.target = hint;
                    }
                    _ => {}
                }
            }
            Action::ReadReady {
                id,
                index: read_index,
                path,
            } => self.serve_read(index, group, id, read_index, path),
            Action::ReadRefused { id, error } => {
                let Some(read) = self.hosts[index].reads.remove(&id) else {
                    let message =
                        format!("the node refused read {id}, which it was never asked for");
                    self.fail_raft(FailureKind::HostContract, index, Some(group), message);
                    return;
                };
                let hint = read_refusal_hint(&error);
                if let Some((client, op_seq, attempt)) = read.client {
                    self.retry_after_reply(client, op_seq, attempt, hint);
                }
            }
            Action::TakeSnapshot => self.take_snapshot(index, group),
            Action::SendSnapshotChunk(chunk) => {
                let position = chunk.snapshot.position;
                let bytes = self.hosts[index]
                    .groups
                    .get(&group)
                    .and_then(|host_group| host_group.snapshot_bytes.get(&position))
                    .cloned();
                let Some(bytes) = bytes else {
                    let message = format!("asked to send a chunk of the snapshot at {position:?}, which it was never given");
                    self.fail_raft(FailureKind::HostContract, index, Some(group), message);
                    return;
                };
                let message = chunk.cut_from(&bytes);
                let input = MultiInput::SendSnapshotChunk { group, message };
                work.push_back((Work::Input(input), None));
            }
            Action::WriteSnapshotChunk {
                snapshot,
                offset,
                data,
            } => {
                let host_group = self.hosts[index].groups.entry(group).or_default();
                if offset == 0 {
                    keep_installed(host_group);
                }
                if let Err(message) =
                    receive_snapshot_chunk(&mut host_group.incoming, snapshot, offset, &data)
                {
                    self.fail_raft(FailureKind::HostContract, index, Some(group), message);
                }
            }
            Action::RestoreSnapshot { snapshot } => {
                let position = snapshot.position;
                let Some(host_group) = self.hosts[index].groups.get_mut(&group) else {
                    return;
                };
                // The layer hands this out at once, and the group's
                // `PersistSnapshot` in the next persist batch: restore
                // from the bytes received (as the action's contract
                // allows) when the snapshot is not stored yet.
                let received = host_group.incoming.as_ref().and_then(|(meta, bytes)| {
                    (*meta == snapshot && checksum64(bytes) == meta.checksum)
                        .then(|| Bytes::copy_from_slice(bytes))
                });
                let received = received.or_else(|| host_group.installed.get(&position).cloned());
                let stored = host_group.snapshot_bytes.get(&position).cloned();
                let Some(bytes) = stored.or(received) else {
                    let message = format!(
                        "asked to restore the snapshot at {position:?}, which it does not hold"
                    );
                    self.fail_raft(FailureKind::HostContract, index, Some(group), message);
                    return;
                };
                if let Err(error) = host_group.sm.restore(&bytes) {
                    let message = format!("restoring the snapshot at {position:?}: {error}");
                    self.fail_raft(FailureKind::StateMachineSafety, index, Some(group), message);
                    return;
                }
                host_group.applied = position;
                self.snapshots_installed += 1;
                let input = MultiInput::Group {
                    group,
                    input: Input::Applied(position.index),
                };
                work.push_back((Work::Input(input), None));
            }
            Action::FollowerLogRegressed {
                follower,
                acknowledged_index,
                reported_last_index,
            } => {
                let leader_term = self.hosts[index]
                    .multi
                    .as_ref()
                    .and_then(|multi| multi.group(group))
                    .map_or(0, |node| node.term());
                if self.replica_acknowledgements.explain_regression(
                    follower as usize - 1,
                    group,
                    leader_term,
                    acknowledged_index,
                ) {
                    self.note(Some(index), || {
                        format!("group {group}: n{follower} regressed from {acknowledged_index} to {reported_last_index}, its replica deleted by a removal this leader of term {leader_term} never saw")
                    });
                    return;
                }
                let message = format!("node {follower} acknowledged index {acknowledged_index} as durable but now holds only up to {reported_last_index}");
                self.fail_raft(
                    FailureKind::AcknowledgedEntriesLost,
                    index,
                    Some(group),
                    message,
                );
            }
            Action::LogDiverged(divergence) => {
                let message = format!(
                    "node {} found its committed log contradicted by its leader: {divergence:?}",
                    index + 1
                );
                self.fail_raft(FailureKind::LogMatching, index, Some(group), message);
            }
            Action::StorageRecovery(event) => {
                self.note(Some(index), || {
                    format!("group {group}: storage recovery {event:?}")
                });
            }
            Action::RoleChanged { role, term } => {
                self.trace
                    .word(0xabcd_0000 | ((index as u64) << 8) | (group << 20) | role as u64);
                self.note(Some(index), || {
                    format!("group {group}: {role:?} in term {term}")
                });
                if role == Role::Leader {
                    let state = self.groups.get_mut(&group).expect("a hosted group");
                    state.leader_hint = Some(index as NodeId + 1);
                    let node = self.hosts[index]
                        .multi
                        .as_ref()
                        .and_then(|multi| multi.group(group));
                    if let Some(node) = node {
                        if let Err((kind, message)) = state.safety.on_leader(index, term, node) {
                            self.fail_raft(kind, index, Some(group), message);
                        }
                    }
                }
            }
            Action::Transfer { .. } => {}
            other @ (Action::Send { .. }
            | Action::Persist { .. }
            | Action::PersistSnapshot { .. }) => {
                let message =
                    format!("the layer handed the host a group's {other:?} instead of batching it");
                self.fail_raft(FailureKind::HostContract, index, Some(group), message);
            }
        }
    }

    /// A read the node released: served from the group's state machine,
    /// after checking the contract (its index is applied here).
    fn serve_read(
        &mut self,
        index: usize,
        group: GroupId,
        id: u64,
        read_index: concord::Index,
        path: concord::ReadPath,
    ) {
        let Some(read) = self.hosts[index].reads.remove(&id) else {
            let message = format!("the node released read {id}, which it was never asked for");
            self.fail_raft(FailureKind::HostContract, index, Some(group), message);
            return;
        };
        if read.group != group {
            let message = format!(
                "read {id} of group {} was released by group {group}",
                read.group
            );
            self.fail_raft(FailureKind::HostContract, index, Some(group), message);
            return;
        }
        if read_index < read.committed_when_asked {
            let message = format!(
                "read {id} ({path:?}) released at read index {read_index}, but index {} was \
                 already committed when it was asked",
                read.committed_when_asked
            );
            self.fail(MultiCheck::ReadFresh, Some(index), Some(group), message);
            return;
        }
        let Some(host_group) = self.hosts[index].groups.get(&group) else {
            return;
        };
        let applied = host_group.applied.index;
        if applied < read_index {
            let message = format!("read {id} ({path:?}) released at read index {read_index}, but the state machine has applied only up to {applied}");
            self.fail_raft(FailureKind::HostContract, index, Some(group), message);
            return;
        }
        let Some(bytes) = host_group.sm.query(&read.command) else {
            let message = format!("the state machine cannot answer read {id} without the log");
            self.fail_raft(FailureKind::HostContract, index, Some(group), message);
            return;
        };
        self.trace
            .word(0x7ead_0000 | ((index as u64) << 8) | path as u64);
        if let Some((client, op_seq, attempt)) = read.client {
            self.client_read_served(client, op_seq, attempt, &bytes);
        }
    }

    /// The node asked for a snapshot of a group: serialize its state
    /// machine, compare it with any other snapshot at that index, write
    /// the file and sync it after a disk latency.
    fn take_snapshot(&mut self, index: usize, group: GroupId) {
        let Some(host_group) = self.hosts[index].groups.get(&group) else {
            return;
        };
        let position = host_group.applied;
        let data = host_group.sm.snapshot();
        let membership = self.hosts[index]
            .multi
            .as_ref()
            .and_then(|multi| multi.group(group))
            .and_then(|node| node.membership_at(position.index).cloned());
        let digest = hash_bytes(&data);
        let state = self.groups.get_mut(&group).expect("a hosted group");
        match state.snapshot_digests.get(&position.index) {
            Some(other) if *other != digest => {
                let message = format!(
                    "two snapshots at index {} hold different states",
                    position.index
                );
                self.fail_raft(FailureKind::StateMachineSafety, index, Some(group), message);
                return;
            }
            Some(_) => {}
            None => {
                state.snapshot_digests.insert(position.index, digest);
            }
        }
        let snapshot = Snapshot::new(position, data).with_membership(membership);
        self.snapshots_taken += 1;
        self.hosts[index]
            .disks
            .entry(group)
            .or_default()
            .write_snapshot(snapshot);
        let latency = self
            .disk_rng
            .gen_range(20_000..self.rates.fsync_max_ns.max(200_001));
        let incarnation = self.hosts[index].incarnation;
        self.schedule(
            latency,
            Event::SnapshotSync {
                node: index,
                incarnation,
                group,
            },
        );
    }

    pub(crate) fn on_snapshot_sync(&mut self, index: usize, incarnation: u64, group: GroupId) {
        let host = &self.hosts[index];
        if host.multi.is_none() || host.incarnation != incarnation {
            return;
        }
        if let Some(Queued::Snapshotted { group }) =
            self.queue_if_paused(index, Queued::Snapshotted { group })
        {
            self.snapshot_synced(index, group);
        }
    }

    fn snapshot_synced(&mut self, index: usize, group: GroupId) {
        let Some(snapshot) = self.hosts[index]
            .disks
            .get_mut(&group)
            .and_then(|disk| disk.sync_snapshot())
        else {
            return;
        };
        let meta = snapshot.meta();
        if let Some(host_group) = self.hosts[index].groups.get_mut(&group) {
            host_group
                .snapshot_bytes
                .insert(snapshot.position, snapshot.data);
        }
        let input = MultiInput::Group {
            group,
            input: Input::Snapshotted(meta),
        };
        self.step_node(index, input, None);
    }

    /// Starts a sync of every batch written so far.
    pub(crate) fn start_sync(&mut self, index: usize) {
        let covered = self.hosts[index].wal.len();
        if covered == 0 {
            return;
        }
        let latency = fsync_latency_ns(&self.rates, &mut self.disk_rng, &mut self.faults);
        self.hosts[index].syncing = Some(covered);
        let incarnation = self.hosts[index].incarnation;
        self.schedule(
            latency,
            Event::Sync {
                node: index,
                incarnation,
            },
        );
    }

    /// The sync under way completed: its batches are durable, reported
    /// with one `Persisted` naming the last of them.
    pub(crate) fn on_sync(&mut self, index: usize, incarnation: u64) {
        let host = &mut self.hosts[index];
        if host.multi.is_none() || host.incarnation != incarnation {
            return;
        }
        let Some(covered) = host.syncing.take() else {
            return;
        };
        let mut last = None;
        for _ in 0..covered {
            let Some(batch) = host.wal.pop_front() else {
                break;
            };
            for (group, write) in &batch.writes {
                if let Some(disk) = host.disks.get_mut(group) {
                    if let Err(error) = disk.complete_sync(*write) {
                        let message = error.0;
                        let group = *group;
                        self.fail_raft(FailureKind::HostContract, index, Some(group), message);
                        return;
                    }
                }
            }
            last = Some(batch.id);
        }
        if !self.hosts[index].wal.is_empty() {
            self.start_sync(index);
        }
        if let Some(id) = last {
            if let Some(Queued::Persisted(id)) = self.queue_if_paused(index, Queued::Persisted(id))
            {
                self.step_node(index, MultiInput::Persisted(id), None);
            }
        }
    }

    /// A client's (or the probe's) answer takes this long to travel.
    pub(crate) fn reply_delay(&mut self) -> u64 {
        self.client_rng.gen_range(100_000..1_000_000)
    }

    /// Whether node `index` runs and hosts `group` (it may have left the
    /// group since a client, the probe or a nemesis picked it:
    /// `membership.rs`).
    pub(crate) fn hosts_group(&self, index: usize, group: GroupId) -> bool {
        self.hosts[index]
            .multi
            .as_ref()
            .is_some_and(|multi| multi.group(group).is_some())
    }

    /// The refusal of a client's attempt reaches it after a reply delay,
    /// with the refusing node's leader hint.
    pub(crate) fn retry_after_reply(
        &mut self,
        client: usize,
        op_seq: u64,
        attempt: u32,
        hint: Option<NodeId>,
    ) {
        let delay = self.reply_delay();
        self.schedule(
            delay,
            Event::ClientRetry {
                client,
                op_seq,
                attempt,
                hint,
            },
        );
    }

    /// Which node leads the most groups (highest term per group wins;
    /// ties go to the lowest id): the "leader" the plan's leader-aimed
    /// faults strike.
    pub(crate) fn top_leader(&self) -> Option<usize> {
        let mut counts = vec![0usize; self.hosts.len()];
        for (index, host) in self.hosts.iter().enumerate() {
            let Some(multi) = &host.multi else { continue };
            if host.paused {
                continue;
            }
            counts[index] = multi
                .groups()
                .filter(|(_, node)| node.role() == Role::Leader)
                .count();
        }
        let best = counts.iter().copied().max().unwrap_or(0);
        if best == 0 {
            return None;
        }
        counts.iter().position(|count| *count == best)
    }

    /// `LogPosition` helper for checks.
    pub(crate) fn holds(node: &concord::Node, position: LogPosition) -> bool {
        let base = node.log_base();
        position.index < base.index
            || (position.index == base.index && base.term == position.term)
            || node.term_at(position.index) == Some(position.term)
    }
}

/// Before a chunk at offset 0 starts `host_group`'s incoming snapshot
/// over: keeps the one received so far if it is whole, for the
/// `PersistSnapshot` still to come. (Whole, its checksum right: the node
/// checks the same bytes and installs it. The node may have installed a
/// newer one too by now: the host handles a step's actions after it.)
/// Kept snapshots are few: a store drops the older ones, and so does
/// this past [`INSTALLED_KEPT_MAX`].
fn keep_installed(host_group: &mut HostGroup) {
    let Some((meta, bytes)) = host_group.incoming.as_ref() else {
        return;
    };
    if bytes.len() as u64 == meta.size_bytes && checksum64(bytes) == meta.checksum {
        let (meta, bytes) = host_group.incoming.take().expect("looked at above");
        host_group
            .installed
            .insert(meta.position, Bytes::from(bytes));
        while host_group.installed.len() > INSTALLED_KEPT_MAX {
            host_group.installed.pop_first();
        }
    }
}

/// How many installed snapshots a group's host keeps for their stores.
const INSTALLED_KEPT_MAX: usize = 8;
