//! The multi-group node: many [`Node`]s, one per group, behind one
//! sans-IO step function. It routes inputs to groups, batches their
//! output across groups (one frame per peer and one persist batch per
//! flush), ticks only the groups that are awake, and fans durability
//! reports out to the groups they cover.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use thiserror::Error;

use crate::config::ConfigError;
use crate::io::{Action, Input};
use crate::message::{Message, MessageBody};
use crate::node::Node;
use crate::types::{Index, LogPosition, NodeId, WriteId};

use super::config::{MultiConfig, MultiConfigError};
use super::frame::{Frame, GroupId};
use super::group_table::GroupTable;
use super::liveness::Liveness;
use super::observer::{observed_step, Observer};
use super::outbox::{Item, Outbox};
use super::persist::{BatchId, PersistBatch, Persister};
use super::planted::MultiPlantedBugs;
use super::quiescence::{QuiesceAsked, QuiesceRound};
use super::snapshot_pace::{chunk_bytes, Offer, SnapshotPacer, TransferWaiting};
use super::stats::MultiStats;
use super::wake::{Sleep, SleepKind, Wake};

/// An event the host feeds into [`MultiNode::step`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MultiInput {
    /// One logical unit of time has passed. Ticks the awake groups only.
    Tick,
    /// A frame arrived from a peer.
    Receive(Frame),
    /// Every persist batch up to and including this one is durable (one
    /// report for all the groups whose writes they held).
    Persisted(BatchId),
    /// An input for one group: a proposal, a read, a membership change, a
    /// leadership transfer, a snapshot request, or the host's completion
    /// of an action the group asked for (`Applied`, `Snapshotted`). Never
    /// `Tick`, `Receive` or `Persisted`: the layer delivers those.
    Group {
        /// The group.
        group: GroupId,
        /// The input.
        input: Input,
    },
    /// A snapshot chunk the host read for a group's
    /// [`Action::SendSnapshotChunk`] (built with
    /// [`SnapshotChunkToSend::cut_from`](crate::SnapshotChunkToSend::cut_from)
    /// or `into_message`), to send in the next frame to its receiver.
    SendSnapshotChunk {
        /// The group.
        group: GroupId,
        /// The chunk's message.
        message: Message,
    },
}

/// Something the host must do on the layer's behalf.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MultiAction {
    /// One group's action, as a lone node's host would execute it (never
    /// `Send`, `Persist` or `PersistSnapshot`: those come batched).
    /// Completions go back as [`MultiInput::Group`]. These come at once,
    /// the writes at the flush: a group's `RestoreSnapshot` reaches the
    /// host before the batch holding its `PersistSnapshot`, so restore
    /// from the chunks received (`WriteSnapshotChunk`), which the write
    /// then stores.
    Group {
        /// The group.
        group: GroupId,
        /// The action.
        action: Action,
    },
    /// Deliver a frame to peer `frame.to` (best effort: loss is fine).
    Send(Frame),
    /// Execute these writes in order, after every earlier batch's, sync
    /// them once, then report [`MultiInput::Persisted`].
    Persist(PersistBatch),
}

/// Why the layer refused a host's request. Nothing was done.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MultiError {
    /// The configuration is unusable.
    #[error("invalid multi-group configuration: {0}")]
    Config(#[from] MultiConfigError),
    /// A group's configuration is unusable.
    #[error("group {group} cannot be built: {error}")]
    GroupConfig {
        /// The group.
        group: GroupId,
        /// Why.
        error: ConfigError,
    },
    /// No group with this id is hosted here.
    #[error("group {group} is not hosted on this node; create it first (or route the request to a node that hosts it)")]
    UnknownGroup {
        /// The group.
        group: GroupId,
    },
    /// A group with this id is hosted already.
    #[error("group {group} is already hosted on this node; group ids are never reused")]
    GroupExists {
        /// The group.
        group: GroupId,
    },
    /// `groups_max` groups are hosted already.
    #[error("this node hosts {max} groups already (`groups_max`); remove one or raise the limit")]
    TooManyGroups {
        /// The limit.
        max: usize,
    },
    /// A group's configuration names another node as this one.
    #[error("group {group} is configured for node {found}, but this is node {expected}")]
    WrongNode {
        /// The group.
        group: GroupId,
        /// This node's id.
        expected: NodeId,
        /// The id in the group's configuration.
        found: NodeId,
    },
    /// A group's configuration names a node outside the cluster.
    #[error("group {group} names node {node}, which is not a peer of this node; add it with `add_peer` first")]
    UnknownMember {
        /// The group.
        group: GroupId,
        /// The node.
        node: NodeId,
    },
    /// An input the layer delivers itself was given for a group.
    #[error("`{input}` is delivered by the layer; give it `MultiInput::{input}` instead")]
    InputNotForGroup {
        /// The kind of input.
        input: &'static str,
    },
    /// A snapshot chunk to send is not an InstallSnapshot of this node.
    #[error("the message to send for group {group} is not a snapshot chunk from this node")]
    NotASnapshotChunk {
        /// The group.
        group: GroupId,
    },
}

/// What a group's log looked like at its last tick, to tell idle groups.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Seen {
    pub(crate) last: LogPosition,
    pub(crate) commit: Index,
    pub(crate) applied: Index,
}

impl Seen {
    pub(crate) fn of(node: &Node) -> Seen {
        Seen {
            last: node.last_position(),
            commit: node.commit_index(),
            applied: node.applied_index(),
        }
    }
}

/// One hosted group: its node and the layer's state about it.
#[derive(Debug)]
pub(crate) struct Group {
    pub(crate) node: Node,
    /// Tells this group from an earlier one of the same id (a durability
    /// report in flight across a removal is not handed to a new group).
    pub(crate) generation: u64,
    /// `None` while awake.
    pub(crate) sleep: Option<Sleep>,
    pub(crate) idle_ticks: u32,
    pub(crate) seen: Seen,
    /// Leader: the quiescence round under way.
    pub(crate) round: Option<QuiesceRound>,
    /// Follower: the quiescence request to answer at the next flush.
    pub(crate) asked: Option<QuiesceAsked>,
    /// Woken to elect at this tick, holding an election slot.
    pub(crate) electing_since: Option<u64>,
    /// In a wake queue (entries of groups woken otherwise are skipped).
    pub(crate) queued: bool,
}

/// Where a group is, as seen from outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupSleep {
    /// Ticked on every tick.
    Awake,
    /// Quiesced as leader.
    Leading,
    /// Quiesced as follower of `leader`.
    Following {
        /// The leader it follows.
        leader: NodeId,
    },
    /// Asleep without a live leader, queued to wake and elect one.
    Waiting,
}

/// Many Raft groups on one node, driven as one deterministic state
/// machine: see the module documentation for the host loop.
#[derive(Debug)]
pub struct MultiNode {
    pub(crate) config: MultiConfig,
    pub(crate) now_ticks: u64,
    pub(crate) next_generation: u64,
    pub(crate) groups: GroupTable,
    /// The groups ticked on every tick.
    pub(crate) awake: BTreeSet<GroupId>,
    /// Groups woken from the election queue, still without a leader.
    pub(crate) electing: BTreeSet<GroupId>,
    pub(crate) election_queue: VecDeque<GroupId>,
    pub(crate) lead_queue: VecDeque<GroupId>,
    /// Sleeping followers, by the leader they follow.
    pub(crate) sleeping_followers: BTreeMap<NodeId, BTreeSet<GroupId>>,
    /// Sleeping leaders, by each of their members.
    pub(crate) sleeping_leaders: BTreeMap<NodeId, BTreeSet<GroupId>>,
    /// Followers asked to quiesce, answered at the next flush.
    pub(crate) answers_owed: BTreeSet<GroupId>,
    pub(crate) liveness: Liveness,
    pub(crate) outbox: Outbox,
    pub(crate) persister: Persister,
    /// The snapshot bandwidth limit (`snapshot_pace.rs`).
    pub(crate) pacer: SnapshotPacer,
    pub(crate) stats: MultiStats,
    /// Whether [`MultiNode::flush`] ran since the last tick: ticks that
    /// come back to back are a host catching up after a stall.
    pub(crate) flushed_since_tick: bool,
    /// Ticks since the last flush, this one included: the length of the
    /// catch-up burst so far.
    pub(crate) burst_ticks: u64,
    /// The largest [`burst_ticks_max`] of any group created: no group
    /// takes more ticks of one burst than this.
    pub(crate) burst_group_ticks_max: u64,
    /// Ticks on which awake groups were ticked: the clock election slots
    /// age by (a slot does not run out on ticks its group never got).
    pub(crate) slot_clock_ticks: u64,
    /// Reused buffers.
    pub(crate) actions: Vec<Action>,
    pub(crate) scratch_groups: Vec<GroupId>,
    pub(crate) scratch_durable: Vec<(GroupId, u64, WriteId)>,
    /// Sees every group step, if installed (`observer.rs`).
    pub(crate) observer: Observer,
    #[cfg(feature = "planted-bugs")]
    pub(crate) planted: MultiPlantedBugs,
    /// Core mistakes planted in every group's node (`src/planted.rs`).
    #[cfg(feature = "planted-bugs")]
    pub(crate) planted_core: crate::PlantedBugs,
}

impl MultiNode {
    /// A node hosting no group yet.
    pub fn new(config: MultiConfig) -> Result<MultiNode, MultiError> {
        config.validate()?;
        let pacer = SnapshotPacer::new(
            config.snapshot_send_bytes_per_tick_max,
            config.snapshot_queue_bytes_max,
        );
        Ok(MultiNode {
            liveness: Liveness::new(config.peers.iter().copied(), 0),
            config,
            now_ticks: 0,
            next_generation: 1,
            groups: GroupTable::default(),
            awake: BTreeSet::new(),
            electing: BTreeSet::new(),
            election_queue: VecDeque::new(),
            lead_queue: VecDeque::new(),
            sleeping_followers: BTreeMap::new(),
            sleeping_leaders: BTreeMap::new(),
            answers_owed: BTreeSet::new(),
            outbox: Outbox::default(),
            persister: Persister::new(),
            pacer,
            stats: MultiStats::default(),
            flushed_since_tick: true,
            burst_ticks: 0,
            burst_group_ticks_max: 0,
            slot_clock_ticks: 0,
            actions: Vec::new(),
            scratch_groups: Vec::new(),
            scratch_durable: Vec::new(),
            observer: Observer::default(),
            #[cfg(feature = "planted-bugs")]
            planted: MultiPlantedBugs::NONE,
            #[cfg(feature = "planted-bugs")]
            planted_core: crate::PlantedBugs::NONE,
        })
    }

    /// Feeds one input to the layer and appends what the host must do to
    /// `out`, in order. Group messages and writes are held for the next
    /// [`MultiNode::flush`]; everything else is appended at once.
    ///
    /// # Panics
    ///
    /// Only on a broken host contract (a durability report for a batch
    /// never handed out, or one a group's node refuses) or a violated
    /// invariant. Malformed or hostile frames never panic; they are
    /// counted in [`MultiNode::stats`].
    pub fn step(
        &mut self,
        input: MultiInput,
        out: &mut Vec<MultiAction>,
    ) -> Result<(), MultiError> {
        match input {
            MultiInput::Tick => self.tick(out),
            MultiInput::Receive(frame) => self.receive(frame, out),
            MultiInput::Persisted(id) => self.persisted(id, out),
            MultiInput::Group { group, input } => return self.group_input(group, input, out),
            MultiInput::SendSnapshotChunk { group, message } => {
                if !self.groups.contains_key(&group) {
                    return Err(MultiError::UnknownGroup { group });
                }
                let chunk = matches!(message.body, MessageBody::InstallSnapshot(_));
                if !chunk || message.from != self.config.id || message.to == self.config.id {
                    return Err(MultiError::NotASnapshotChunk { group });
                }
                self.pace_snapshot_chunk(group, message);
            }
        }
        self.check_invariants();
        Ok(())
    }

    /// Ends a round of the host's loop: answers the quiescence requests of
    /// the round (after the host executed its actions, so applies it
    /// reported count), then hands out one frame per peer with something
    /// to say (or owed a node-level heartbeat) and one persist batch with
    /// every group's writes. Call it after executing the actions of every
    /// input of the round, and once per tick. A host that stalled may
    /// hand over the ticks it missed back to back and flush once after
    /// them: the groups' clocks take every one, but the queues of groups
    /// to wake are served once for the lot (a stall must not wake
    /// `wakes_per_tick_max` groups for each tick it missed, or a slow loop
    /// would make itself slower), and election slots are judged then.
    pub fn flush(&mut self, out: &mut Vec<MultiAction>) {
        self.flushed_since_tick = true;
        self.answer_quiesce_requests(out);
        let now_ticks = self.now_ticks;
        self.outbox.flush(now_ticks, &mut self.stats, |frame| {
            out.push(MultiAction::Send(frame))
        });
        self.persister.flush(
            self.config.persist_batch_writes_max,
            &mut self.stats,
            |batch| out.push(MultiAction::Persist(batch)),
        );
        self.check_invariants();
    }

    fn tick(&mut self, out: &mut Vec<MultiAction>) {
        self.now_ticks += 1;
        self.stats.ticks += 1;
        let mut died = Vec::new();
        let alone = self.planted().live_peer_taken_for_dead;
        self.liveness.tick(
            self.now_ticks,
            self.config.liveness_timeout_ticks,
            alone,
            |peer| died.push(peer),
        );
        for peer in died {
            self.peer_changed(peer, super::liveness::PeerChange::Died);
        }
        let (id, incarnation) = (self.config.id, self.config.incarnation);
        let interval_ticks = self.config.liveness_interval_ticks;
        for peer in self.liveness.ids() {
            self.outbox
                .owe_liveness_frame(id, peer, incarnation, self.now_ticks, interval_ticks);
        }
        self.release_paced_chunks();
        if std::mem::replace(&mut self.flushed_since_tick, false) {
            self.burst_ticks = 1;
            self.release_election_slots();
            self.wake_from_queues(out);
        } else {
            self.burst_ticks += 1;
            self.stats.ticks_back_to_back += 1;
            if self.planted().tick_burst_wakes {
                self.release_election_slots();
                self.wake_from_queues(out);
            }
        }
        // A burst hands each awake group at most a few ticks (see
        // `burst_ticks_max`): past the largest share, the
        // rest of the burst is the layer's clock alone, and a stall's
        // catch-up costs the awake groups a bounded number of steps
        // however long the stall was.
        if self.burst_ticks > self.burst_group_ticks_max {
            self.stats.group_ticks_withheld += self.awake.len() as u64;
            return;
        }
        self.slot_clock_ticks += 1;
        // Only the awake groups: the work of a tick grows with them, not
        // with every group hosted.
        let mut ticking = std::mem::take(&mut self.scratch_groups);
        ticking.clear();
        ticking.extend(self.awake.iter().copied());
        for &group in &ticking {
            let Some(state) = self.groups.get(&group) else {
                continue;
            };
            if state.sleep.is_some() {
                continue;
            }
            if self.tick_is_withheld(state) {
                self.stats.group_ticks_withheld += 1;
                continue;
            }
            self.stats.group_ticks += 1;
            self.step_group(group, Input::Tick, out);
            self.consider_quiescing(group);
        }
        self.scratch_groups = ticking;
    }

    /// Whether the current tick of a burst is withheld from `group`: it
    /// got its share of the burst already ([`burst_ticks_max`]).
    fn tick_is_withheld(&self, state: &Group) -> bool {
        if self.planted().burst_lease_kept && state.node.role() == crate::Role::Leader {
            return self.burst_ticks > 1;
        }
        self.burst_ticks > burst_ticks_max(&state.node)
    }

    fn receive(&mut self, frame: Frame, out: &mut Vec<MultiAction>) {
        // A frame from a node that is not a peer cannot come from a
        // member of any group hosted here (every member is a peer): it is
        // forged or misrouted, and its groups' messages must not reach
        // the groups' nodes, whatever their own rules for strangers.
        if frame.to != self.config.id
            || frame.from == self.config.id
            || frame.from == 0
            || !self.liveness.is_peer(frame.from)
            || frame.items() > self.config.frame_items_max
        {
            self.stats.frames_refused += 1;
            return;
        }
        self.stats.frames_received += 1;
        let (from, to) = (frame.from, self.config.id);
        let old_restarts = self.planted().old_incarnation_restarts;
        let heard = self
            .liveness
            .heard(from, frame.incarnation, self.now_ticks, old_restarts);
        if let Some(change) = heard {
            self.peer_changed(from, change);
        }
        for message in frame.messages {
            let group = message.group;
            let message = Message {
                from,
                to,
                term: message.term,
                progress_id: message.progress_id,
                body: message.body,
            };
            self.deliver(group, message, out);
        }
        for heartbeat in frame.heartbeats {
            self.deliver(heartbeat.group, heartbeat.expand(from, to), out);
        }
        for answer in frame.heartbeat_answers {
            self.deliver(answer.group, answer.expand(from, to), out);
        }
        for request in frame.quiesce {
            self.quiesce_requested(from, request, out);
        }
        for answer in frame.quiesce_answers {
            self.quiesce_answered(from, answer, out);
        }
    }

    /// A group's message from a peer: a sleeping group wakes for it,
    /// unless it is its leader's heartbeat telling it nothing new.
    fn deliver(&mut self, group: GroupId, message: Message, out: &mut Vec<MultiAction>) {
        let Some(state) = self.groups.get(&group) else {
            self.stats.items_unknown_group += 1;
            return;
        };
        // The sleep a follower woke from, to go back to if the message
        // changed nothing (`maybe_sleep_again`).
        let mut following = None;
        if let Some(sleep) = &state.sleep {
            let stale_wakes = self.planted().stale_message_wakes;
            if sleep.keeps_sleeping_on(&state.node, &message, stale_wakes) {
                if self.planted().sleeping_follower_answers_unstepped {
                    // The planted mistake: the layer answers its leader's
                    // heartbeat itself; the node never takes it.
                    if let MessageBody::Heartbeat { read_round, .. } = message.body {
                        if message.term == state.node.term() {
                            let answer = Message {
                                from: message.to,
                                to: message.from,
                                term: message.term,
                                progress_id: message.progress_id,
                                body: MessageBody::HeartbeatResponse { read_round },
                            };
                            self.push_item(answer.to, Item::of(group, answer));
                            return;
                        }
                    }
                }
                self.step_group(group, Input::Receive(message), out);
                self.recheck_sleep(group, out);
                return;
            }
            let drops_read = self.planted().wake_drops_read
                && matches!(message.body, MessageBody::ReadIndexRequest { .. });
            following =
                matches!(sleep.kind, SleepKind::Following { .. }).then(|| sleep.kind.clone());
            self.wake(group, Wake::Message, out);
            if drops_read {
                // The planted mistake: the wake swallows the read.
                return;
            }
        }
        self.step_group(group, Input::Receive(message), out);
        if let Some(kind) = following {
            self.maybe_sleep_again(group, kind);
        }
    }

    /// A sleeping learner woken by a message that changed nothing (a
    /// duplicate or a late copy of what it holds) sleeps again as it
    /// slept: its leader sleeps on and would never send the heartbeat that
    /// puts it back to sleep, and a learner never campaigns (which would
    /// wake the leader), so it would stay awake for good. A voter is left
    /// awake: its election timer is what notices a leader gone.
    fn maybe_sleep_again(&mut self, group: GroupId, kind: SleepKind) {
        let Some(state) = self.groups.get(&group) else {
            return;
        };
        if state.node.membership().is_voter(state.node.id()) {
            return;
        }
        let sleep = Sleep {
            since_tick: self.now_ticks,
            kind,
        };
        if state.sleep.is_none() && state.round.is_none() && sleep.holds(&state.node) {
            self.sleep(group, sleep.kind);
        }
    }

    fn group_input(
        &mut self,
        group: GroupId,
        input: Input,
        out: &mut Vec<MultiAction>,
    ) -> Result<(), MultiError> {
        let refused = match input {
            Input::Tick => Some("Tick"),
            Input::Receive(_) => Some("Receive"),
            Input::Persisted(_) => Some("Persisted"),
            _ => None,
        };
        if let Some(input) = refused {
            return Err(MultiError::InputNotForGroup { input });
        }
        let Some(state) = self.groups.get(&group) else {
            return Err(MultiError::UnknownGroup { group });
        };
        if state.sleep.is_some() {
            // The host completing an action asks nothing new of the group.
            if matches!(input, Input::Applied(_) | Input::Snapshotted(_)) {
                self.step_group(group, input, out);
                self.recheck_sleep(group, out);
                self.check_invariants();
                return Ok(());
            }
            let drops_read = self.planted().wake_drops_read && matches!(input, Input::Read { .. });
            self.wake(group, Wake::Local, out);
            if drops_read {
                // The planted mistake: the wake swallows the read.
                return Ok(());
            }
        }
        self.step_group(group, input, out);
        self.check_invariants();
        Ok(())
    }

    fn persisted(&mut self, id: BatchId, out: &mut Vec<MultiAction>) {
        // A kept buffer: a sync covers a write of every group of its
        // round, and a list grown anew for each was a copy per doubling.
        let mut durable = std::mem::take(&mut self.scratch_durable);
        durable.clear();
        self.persister.persisted(
            id,
            self.planted().persist_acks_later_batches,
            |group, generation, write| durable.push((group, generation, write)),
        );
        for (group, generation, write) in durable.drain(..) {
            let current = self
                .groups
                .get(&group)
                .is_some_and(|state| state.generation == generation);
            if !current {
                continue;
            }
            self.step_group(group, Input::Persisted(write), out);
            self.recheck_sleep(group, out);
        }
        self.scratch_durable = durable;
    }

    /// Steps one group's node and routes what it asks for.
    pub(crate) fn step_group(&mut self, group: GroupId, input: Input, out: &mut Vec<MultiAction>) {
        // One lookup for the step and its routing: a write of a group of
        // its own is some thirteen steps across a cluster, each of which
        // looked the group up again to route.
        let Some(state) = self.groups.get_mut(&group) else {
            return;
        };
        let mut actions = std::mem::take(&mut self.actions);
        observed_step(
            &mut self.observer,
            group,
            &mut state.node,
            input,
            &mut actions,
            self.now_ticks,
        );
        self.stats.node_steps += 1;
        let (generation, commit) = (state.generation, state.node.commit_index());
        self.route_from(group, generation, commit, &mut actions, out);
        self.actions = actions;
    }

    /// Sends go to the outbox, writes to the persist batch, the rest to
    /// the host.
    pub(crate) fn route(
        &mut self,
        group: GroupId,
        actions: &mut Vec<Action>,
        out: &mut Vec<MultiAction>,
    ) {
        let Some(state) = self.groups.get(&group) else {
            actions.clear();
            return;
        };
        let (generation, commit) = (state.generation, state.node.commit_index());
        self.route_from(group, generation, commit, actions, out);
    }

    /// [`MultiNode::route`] for a group of `generation` whose node is at
    /// `commit`.
    fn route_from(
        &mut self,
        group: GroupId,
        generation: u64,
        commit: Index,
        actions: &mut Vec<Action>,
        out: &mut Vec<MultiAction>,
    ) {
        let uncapped = self.planted().heartbeat_commit_uncapped;
        for action in actions.drain(..) {
            match action {
                Action::Send { to, mut message } => {
                    if uncapped {
                        // The planted mistake: the group's commit index
                        // instead of the one capped for this follower.
                        if let MessageBody::Heartbeat { commit: sent, .. } = &mut message.body {
                            *sent = commit;
                        }
                    }
                    self.push_item(to, Item::of(group, message));
                }
                write @ (Action::Persist { .. } | Action::PersistSnapshot { .. }) => {
                    self.persister.push(group, generation, write);
                }
                action => out.push(MultiAction::Group { group, action }),
            }
        }
    }

    /// A chunk the host filled goes out now, or waits for the bandwidth
    /// limit's credit (`snapshot_pace.rs`).
    fn pace_snapshot_chunk(&mut self, group: GroupId, message: Message) {
        let repeats_queued = self.planted().snapshot_repeats_queued;
        match self.pacer.offer(group, message, repeats_queued) {
            Offer::Send(message) => self.send_snapshot_chunk(group, message),
            Offer::Held => self.stats.snapshot_chunks_held += 1,
            // The older copy is dropped, the newer one waits in its place.
            Offer::Dropped | Offer::Replaced => self.stats.snapshot_chunks_dropped += 1,
        }
    }

    /// Releases the chunks a tick's credit allows. A chunk of a group no
    /// longer hosted here, asleep, or no longer led here is dropped: its
    /// transfer ended (a group sleeps only with every follower caught up),
    /// and an idle node sends no group message.
    fn release_paced_chunks(&mut self) {
        let banked = self.planted().snapshot_credit_banked;
        let mut released = Vec::new();
        self.pacer
            .tick(banked, |group, message| released.push((group, message)));
        for (group, message) in released {
            let transferring = self.groups.get(&group).is_some_and(|state| {
                state.sleep.is_none() && state.node.role() == crate::Role::Leader
            });
            if transferring {
                self.send_snapshot_chunk(group, message);
            } else {
                self.stats.snapshot_chunks_dropped += 1;
            }
        }
    }

    fn send_snapshot_chunk(&mut self, group: GroupId, message: Message) {
        self.stats.snapshot_bytes_sent += chunk_bytes(&message);
        let to = message.to;
        self.push_item(to, Item::of(group, message));
    }

    pub(crate) fn push_item(&mut self, to: NodeId, item: Item) {
        self.outbox.push(
            self.config.id,
            to,
            self.config.incarnation,
            item,
            self.config.frame_items_max,
            self.config.frame_bytes_max,
        );
    }

    /// The planted mistakes (always none without the `planted-bugs`
    /// feature, so the checks compile away).
    #[inline]
    pub(crate) fn planted(&self) -> MultiPlantedBugs {
        #[cfg(feature = "planted-bugs")]
        {
            self.planted
        }
        #[cfg(not(feature = "planted-bugs"))]
        {
            MultiPlantedBugs::NONE
        }
    }

    /// Plants deliberate mistakes in this layer (see
    /// `src/multi/planted.rs`). For measuring tests only.
    #[cfg(feature = "planted-bugs")]
    #[doc(hidden)]
    pub fn plant_bugs(&mut self, bugs: MultiPlantedBugs) {
        self.planted = bugs;
    }

    /// Plants deliberate core mistakes (`src/planted.rs`) in the node of
    /// every group this layer hosts, and of every group it creates from
    /// now on. For measuring tests only.
    #[cfg(feature = "planted-bugs")]
    #[doc(hidden)]
    pub fn plant_core_bugs(&mut self, bugs: crate::PlantedBugs) {
        self.planted_core = bugs;
        self.groups
            .for_each_mut(|_, group| group.node.plant_bugs(bugs));
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.config.id
    }

    /// The configuration the layer was built with (peers as changed since).
    pub fn config(&self) -> &MultiConfig {
        &self.config
    }

    /// Ticks seen since the layer started.
    pub fn now_ticks(&self) -> u64 {
        self.now_ticks
    }

    /// The node of `group`, if hosted here.
    pub fn group(&self, group: GroupId) -> Option<&Node> {
        self.groups.get(&group).map(|state| &state.node)
    }

    /// Every hosted group and its node, by id.
    pub fn groups(&self) -> impl Iterator<Item = (GroupId, &Node)> + '_ {
        self.groups.iter().map(|(id, state)| (*id, &state.node))
    }

    /// Number of groups hosted.
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// Number of groups awake (ticked on every tick).
    pub fn awake_count(&self) -> usize {
        self.awake.len()
    }

    /// Whether `group` sleeps or is awake, if hosted here.
    pub fn sleep_state(&self, group: GroupId) -> Option<GroupSleep> {
        self.groups.get(&group).map(|state| match &state.sleep {
            None => GroupSleep::Awake,
            Some(sleep) => match sleep.kind {
                SleepKind::Leading { .. } => GroupSleep::Leading,
                SleepKind::Following { leader, .. } => GroupSleep::Following { leader },
                SleepKind::Waiting => GroupSleep::Waiting,
            },
        })
    }

    /// Whether `group` sleeps queued to wake: a member it sleeps with
    /// returned or restarted (a sleeping leader wakes to heartbeat it), or
    /// it waits to elect. The queues are served within the wake limits, so
    /// such a group may sleep on for a few ticks in a state its members no
    /// longer match.
    pub fn wake_queued(&self, group: GroupId) -> bool {
        self.groups
            .get(&group)
            .is_some_and(|state| state.sleep.is_some() && state.queued)
    }

    /// Groups woken to elect and still without a leader (at most
    /// `elections_concurrent_max`).
    pub fn electing_count(&self) -> usize {
        self.electing.len()
    }

    /// Of the awake groups, how many this node leads, and how many of
    /// those have a quiescence round out (for diagnosing a node whose
    /// groups do not go back to sleep; walks the awake groups).
    pub fn awake_leaders(&self) -> (usize, usize) {
        let mut leading = 0;
        let mut rounds = 0;
        for group in &self.awake {
            let Some(state) = self.groups.get(group) else {
                continue;
            };
            if state.node.role() == crate::Role::Leader {
                leading += 1;
                rounds += usize::from(state.round.is_some());
            }
        }
        (leading, rounds)
    }

    /// Whether peer `id` is taken for alive (`None` if not a peer).
    pub fn peer_alive(&self, id: NodeId) -> Option<bool> {
        self.liveness
            .is_peer(id)
            .then(|| self.liveness.is_alive(id))
    }

    /// The peers node-level liveness watches, in id order.
    pub fn peer_ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.liveness.ids()
    }

    /// Ticks since peer `id` was last heard from (or added, or the layer
    /// started); `None` if not a peer.
    pub fn peer_heard_ticks_ago(&self, id: NodeId) -> Option<u64> {
        self.liveness
            .last_heard_tick(id)
            .map(|tick| self.now_ticks.saturating_sub(tick))
    }

    /// Persist batches handed to the host and not yet reported durable.
    pub fn persist_batches_in_flight(&self) -> usize {
        self.persister.in_flight()
    }

    /// Counters of what the layer did.
    pub fn stats(&self) -> &MultiStats {
        &self.stats
    }

    /// Snapshot chunks waiting for the bandwidth limit, and their bytes.
    pub fn snapshot_chunks_waiting(&self) -> (usize, u64) {
        (self.pacer.queued_chunks(), self.pacer.queued_bytes())
    }

    /// The chunks waiting for the bandwidth limit, by transfer: a walk of
    /// every waiting chunk, for checks (the simulator's `snapshot-pace`
    /// holds each transfer's waiting bytes to its snapshot's length).
    pub fn snapshot_transfers_waiting(&self) -> Vec<TransferWaiting> {
        self.pacer.transfers_waiting()
    }

    /// Invariants between steps: cheap ones always, the walks over every
    /// group in debug builds only when few groups are hosted.
    fn check_invariants(&self) {
        assert!(self.electing.len() <= self.config.elections_concurrent_max);
        assert!(self.awake.len() <= self.groups.len());
        if cfg!(debug_assertions) {
            self.pacer.check_invariants();
        }
        if cfg!(debug_assertions) && self.groups.len() <= 64 {
            for (id, state) in self.groups.iter() {
                assert_eq!(state.sleep.is_none(), self.awake.contains(id));
                if self.electing.contains(id) {
                    assert!(state.sleep.is_none() && state.electing_since.is_some());
                }
                if let Some(sleep) = &state.sleep {
                    match &sleep.kind {
                        // A sleeping follower's leader is alive, or it
                        // would have been queued to elect.
                        SleepKind::Following { leader, .. } => {
                            assert!(self.liveness.is_alive(*leader));
                            assert!(self.sleeping_followers[leader].contains(id));
                        }
                        SleepKind::Waiting => assert!(state.queued),
                        SleepKind::Leading { .. } => {}
                    }
                }
            }
        }
    }
}

/// Most ticks of one burst (ticks handed over back to back, a loop
/// catching up after a stall) a group takes: a leader, its
/// `lease_read_ticks` and at least a heartbeat interval; any other role,
/// half its `election_timeout_min_ticks` (at least one).
///
/// Why a group may be handed fewer ticks than its host missed (the core
/// asks a host that stalled for every one): the ticks past these change
/// nothing that safety rests on, and each costs a step of every awake
/// group (a stall of 1,000 ticks with 10,000 groups awake was 10 million
/// steps, a stall of its own, and the next catch-up longer still). A
/// leader that took `lease_read_ticks` more ticks holds no lease from
/// before the stall any more (as when a sleeping leader wakes,
/// `wake.rs`), and its heartbeat still goes out at every turn. A follower
/// or candidate whose clock lags real time only refuses votes, and
/// campaigns, later than it could: the conservative side of every timing
/// rule. Handed the whole burst before the frames that waited for it,
/// every awake follower would also time out on heartbeats that sit
/// unread in those frames, and campaign against a live leader.
pub(crate) fn burst_ticks_max(node: &crate::Node) -> u64 {
    match node.role() {
        crate::Role::Leader => leader_burst_ticks(node.config()),
        _ => follower_burst_ticks(node.config()),
    }
}

/// The most ticks of one burst a group with `config` takes in any role.
pub(crate) fn burst_ticks_max_any_role(config: &crate::Config) -> u64 {
    leader_burst_ticks(config).max(follower_burst_ticks(config))
}

fn leader_burst_ticks(config: &crate::Config) -> u64 {
    u64::from(
        config
            .lease_read_ticks
            .max(config.heartbeat_interval_ticks)
            .max(1),
    )
}

/// Half the minimum timeout: a follower still times out within a turn
/// or two of a dead leader, and never on heartbeats of one turn that sit
/// unread behind the burst.
fn follower_burst_ticks(config: &crate::Config) -> u64 {
    u64::from((config.election_timeout_min_ticks / 2).max(1))
}
