//! A small deterministic driver for the multi-group layer: N nodes, each a
//! `MultiNode` hosting the groups it is a member of, an in-memory network
//! that loses, delays and reorders frames, a disk per node that makes a
//! persist batch durable only when its (delayed) sync completes and loses
//! every batch not yet synced when the node crashes, and restarts from
//! exactly what was durable. Everything is drawn from one seeded ChaCha
//! generator, so a seed replays exactly.
//!
//! The checks run as it goes: per group, at most one leader per term
//! (election safety); every replica applies the same entry at an index
//! (commit agreement); a read is served at an index at or past everything
//! committed when it was asked, and answered within a bound while its node
//! is up; what a group was told is durable is on its node's disk at a
//! crash; a sleeping leader's live followers hold its last entry. Log
//! matching is checked between every pair of replicas on demand.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use concord::multi::{Frame, GroupId, GroupSleep, MultiAction, MultiConfig, MultiInput, MultiNode};
use concord::{
    Action, Config, Entry, EntryPayload, HardState, Index, Input, LogPosition, NodeId, ReadPath,
    Recovered, Role, Term,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The planted mistakes of `src/multi/planted.rs`, as plain flags so the
/// driver compiles with and without the `planted-bugs` feature.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bugs {
    pub quiesce_follower_behind: bool,
    pub heartbeat_commit_uncapped: bool,
    pub wake_drops_read: bool,
    pub persist_acks_later_batches: bool,
}

impl Bugs {
    pub fn any(&self) -> bool {
        *self != Bugs::default()
    }
}

/// What a run looks like.
#[derive(Clone, Debug)]
pub struct Options {
    pub nodes: u64,
    pub groups: u64,
    /// Voters per group (drawn from the nodes; all nodes if equal).
    pub voters_per_group: u64,
    pub ticks: u64,
    /// Chance in 1,000 that a frame is lost.
    pub loss_per_mille: u32,
    /// A frame arrives 0..=this many ticks after it is sent (so frames
    /// overtake each other).
    pub delay_ticks_max: u64,
    /// A persist batch is durable 0..=this many ticks after it is handed
    /// out (batches complete in order).
    pub sync_delay_ticks_max: u64,
    /// Chance in 1,000 per tick that a live node crashes.
    pub crash_per_mille: u32,
    /// Ticks a crashed node stays down.
    pub down_ticks: u64,
    /// Chance in 1,000 per tick that the network is cut in two (healed
    /// after `partition_ticks`).
    pub partition_per_mille: u32,
    pub partition_ticks: u64,
    /// Proposals per tick, each to a random group (at a node that leads it).
    pub proposals_per_tick: u32,
    /// Chance in 1,000 per tick of a read at a random group.
    pub reads_per_mille: u32,
    /// Ticks after which faults stop and the cluster must settle.
    pub faults_until_tick: u64,
    pub quiesce_after_idle_ticks: Option<u32>,
    /// Every tick, not the layer's default: the planted mistakes' catch
    /// bounds below were measured so (the simulator draws 1 to 3).
    pub liveness_interval_ticks: u32,
    pub liveness_timeout_ticks: u32,
    pub elections_concurrent_max: usize,
    pub lease_read_ticks: u32,
    /// Every group prefers this node as leader (the core's priorities).
    pub preferred_leader: Option<NodeId>,
    pub bugs: Bugs,
    /// Most ticks a read may wait at a node that stays up.
    pub read_answer_ticks_max: u64,
}

impl Options {
    pub fn new(nodes: u64, groups: u64) -> Options {
        Options {
            nodes,
            groups,
            voters_per_group: nodes.min(3),
            ticks: 600,
            loss_per_mille: 50,
            delay_ticks_max: 2,
            sync_delay_ticks_max: 2,
            crash_per_mille: 4,
            down_ticks: 30,
            partition_per_mille: 4,
            partition_ticks: 40,
            proposals_per_tick: 2,
            reads_per_mille: 300,
            faults_until_tick: 400,
            quiesce_after_idle_ticks: Some(4),
            liveness_interval_ticks: 1,
            liveness_timeout_ticks: 10,
            elections_concurrent_max: 256,
            lease_read_ticks: 6,
            preferred_leader: None,
            bugs: Bugs::default(),
            read_answer_ticks_max: 200,
        }
    }

    /// No faults, no workload: for counting what idle groups cost.
    pub fn quiet(nodes: u64, groups: u64) -> Options {
        Options {
            loss_per_mille: 0,
            delay_ticks_max: 0,
            sync_delay_ticks_max: 0,
            crash_per_mille: 0,
            partition_per_mille: 0,
            proposals_per_tick: 0,
            reads_per_mille: 0,
            faults_until_tick: 0,
            ..Options::new(nodes, groups)
        }
    }
}

/// One group's durable state on one node (no snapshots in these runs).
#[derive(Clone, Debug, Default)]
pub struct GroupDisk {
    pub hard_state: HardState,
    pub entries: Vec<Entry>,
}

impl GroupDisk {
    fn write(&mut self, action: &Action) {
        match action {
            Action::Persist {
                hard_state,
                truncate_after,
                entries,
                ..
            } => {
                if let Some(after) = truncate_after {
                    self.entries.truncate(*after as usize);
                }
                for entry in entries.iter() {
                    assert_eq!(
                        entry.index,
                        self.entries.len() as u64 + 1,
                        "disk appends are contiguous"
                    );
                    self.entries.push(entry.clone());
                }
                if let Some(hard_state) = hard_state {
                    self.hard_state = *hard_state;
                }
            }
            other => panic!("no snapshots in these runs, yet the layer asked for {other:?}"),
        }
    }

    fn recovered(&self) -> Recovered {
        Recovered {
            hard_state: self.hard_state,
            base: LogPosition::ZERO,
            entries: self.entries.clone(),
            applied_index: 0,
            membership: None,
        }
    }
}

/// A read asked of a node and not yet answered.
#[derive(Clone, Debug)]
struct PendingRead {
    node: NodeId,
    group: GroupId,
    asked_tick: u64,
    /// Every index committed anywhere when the read was asked: the read
    /// must be served at or past it.
    committed_then: Index,
}

/// One node: its layer (none while down), its disk and its host state.
pub struct Host {
    pub multi: Option<MultiNode>,
    pub disks: BTreeMap<GroupId, GroupDisk>,
    /// Batches handed out and not yet durable, with the tick their sync
    /// completes.
    syncing: VecDeque<(u64, concord::multi::PersistBatch)>,
    incarnation: u64,
    down_until: Option<u64>,
}

/// The cluster.
pub struct Driver {
    pub options: Options,
    pub rng: ChaCha8Rng,
    pub now: u64,
    pub hosts: BTreeMap<NodeId, Host>,
    /// Voters of every group.
    pub members: BTreeMap<GroupId, BTreeSet<NodeId>>,
    network: Vec<(u64, u64, Frame)>,
    next_frame_seq: u64,
    /// Nodes on the other side of the current partition from the rest.
    cut: BTreeSet<NodeId>,
    cut_until: u64,
    /// (group, term) → leader, and the tick it took office.
    pub leaders: BTreeMap<(GroupId, Term), (NodeId, u64)>,
    /// (group, index) → the entry every replica applies there.
    applied: BTreeMap<(GroupId, Index), (Term, EntryPayload)>,
    /// Highest index committed anywhere, by group.
    committed: BTreeMap<GroupId, Index>,
    reads: BTreeMap<u64, PendingRead>,
    /// (group, sleeping leader, live follower behind it) → since when.
    behind: BTreeMap<(GroupId, NodeId, NodeId), u64>,
    next_read: u64,
    next_command: u64,
    /// What went wrong, if anything (the first violation).
    pub violation: Option<String>,
    pub reads_answered: u64,
    pub entries_applied: u64,
    pub crashes: u64,
    /// Most groups electing at once on any node, as the layer reports.
    pub electing_max: usize,
}

fn group_config(
    node: NodeId,
    voters: &BTreeSet<NodeId>,
    group: GroupId,
    options: &Options,
) -> Config {
    let mut config = Config::new(node, voters.iter().copied());
    config.seed = group.wrapping_mul(1_000_003) ^ node;
    config.lease_read_ticks = options.lease_read_ticks;
    if let Some(preferred) = options.preferred_leader.filter(|id| voters.contains(id)) {
        config.priorities.insert(preferred, 1);
    }
    config
}

impl Driver {
    pub fn new(options: Options, seed: u64) -> Driver {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let ids: Vec<NodeId> = (1..=options.nodes).collect();
        let mut members = BTreeMap::new();
        for group in 1..=options.groups {
            let mut voters = BTreeSet::new();
            while (voters.len() as u64) < options.voters_per_group {
                voters.insert(ids[rng.gen_range(0..ids.len())]);
            }
            members.insert(group, voters);
        }
        let mut driver = Driver {
            options,
            rng,
            now: 0,
            hosts: BTreeMap::new(),
            members,
            network: Vec::new(),
            next_frame_seq: 0,
            cut: BTreeSet::new(),
            cut_until: 0,
            leaders: BTreeMap::new(),
            applied: BTreeMap::new(),
            committed: BTreeMap::new(),
            reads: BTreeMap::new(),
            behind: BTreeMap::new(),
            next_read: 1,
            next_command: 1,
            violation: None,
            reads_answered: 0,
            entries_applied: 0,
            crashes: 0,
            electing_max: 0,
        };
        for id in ids {
            let host = Host {
                multi: None,
                disks: BTreeMap::new(),
                syncing: VecDeque::new(),
                incarnation: 0,
                down_until: None,
            };
            driver.hosts.insert(id, host);
            driver.start(id);
        }
        driver
    }

    pub fn multi_config(&self, id: NodeId, incarnation: u64) -> MultiConfig {
        let mut config = MultiConfig::new(id, 1..=self.options.nodes);
        config.incarnation = incarnation;
        config.quiesce_after_idle_ticks = self.options.quiesce_after_idle_ticks;
        config.liveness_interval_ticks = self.options.liveness_interval_ticks;
        config.liveness_timeout_ticks = self.options.liveness_timeout_ticks;
        config.elections_concurrent_max = self.options.elections_concurrent_max;
        config
    }

    /// Builds node `id`'s layer from its disk and hosts its groups.
    fn start(&mut self, id: NodeId) {
        let incarnation = self.hosts[&id].incarnation + 1;
        let config = self.multi_config(id, incarnation);
        let mut multi = MultiNode::new(config).expect("valid configuration");
        plant(&mut multi, self.options.bugs);
        let host = self.hosts.get_mut(&id).expect("host");
        for (group, voters) in &self.members {
            if !voters.contains(&id) {
                continue;
            }
            let disk = host.disks.entry(*group).or_default();
            let config = group_config(id, voters, *group, &self.options);
            multi
                .create_group(*group, config, disk.recovered())
                .expect("group is valid");
        }
        host.incarnation = incarnation;
        host.multi = Some(multi);
        host.down_until = None;
    }

    fn fail(&mut self, what: String) {
        if self.violation.is_none() {
            self.violation = Some(format!("tick {}: {what}", self.now));
        }
    }

    /// The incarnation node `id` runs in (its frames carry it).
    pub fn incarnation(&self, id: NodeId) -> u64 {
        self.hosts[&id].incarnation
    }

    pub fn is_up(&self, id: NodeId) -> bool {
        self.hosts[&id].multi.is_some()
    }

    pub fn multi(&self, id: NodeId) -> &MultiNode {
        self.hosts[&id].multi.as_ref().expect("node is up")
    }

    /// Node `id`'s layer, to step by hand (a host that stalls, say).
    pub fn multi_mut(&mut self, id: NodeId) -> &mut MultiNode {
        self.hosts
            .get_mut(&id)
            .and_then(|host| host.multi.as_mut())
            .expect("node is up")
    }

    /// Feeds one input and executes everything that follows, through
    /// flushes, until the node has nothing more to do.
    pub fn step(&mut self, id: NodeId, input: MultiInput) {
        let mut out = Vec::new();
        {
            let Some(multi) = self.hosts.get_mut(&id).and_then(|h| h.multi.as_mut()) else {
                return;
            };
            if let Err(error) = multi.step(input, &mut out) {
                panic!("node {id} refused a driver input: {error}");
            }
        }
        self.settle(id, out);
    }

    fn settle(&mut self, id: NodeId, mut out: Vec<MultiAction>) {
        for _round in 0..10_000 {
            if out.is_empty() {
                let multi = self
                    .hosts
                    .get_mut(&id)
                    .and_then(|h| h.multi.as_mut())
                    .expect("up");
                multi.flush(&mut out);
                if out.is_empty() {
                    return;
                }
            }
            for action in std::mem::take(&mut out) {
                self.execute(id, action, &mut out);
            }
        }
        panic!("node {id} did not settle");
    }

    fn execute(&mut self, id: NodeId, action: MultiAction, out: &mut Vec<MultiAction>) {
        match action {
            MultiAction::Send(frame) => {
                assert_eq!(frame.from, id);
                let lost = self.rng.gen_range(0..1000) < self.options.loss_per_mille;
                let cut = self.cut.contains(&frame.from) != self.cut.contains(&frame.to);
                if lost || cut {
                    return;
                }
                let delay = self.rng.gen_range(0..=self.options.delay_ticks_max);
                self.network
                    .push((self.now + delay, self.next_frame_seq, frame));
                self.next_frame_seq += 1;
            }
            MultiAction::Persist(batch) => {
                let delay = self.rng.gen_range(0..=self.options.sync_delay_ticks_max);
                let host = self.hosts.get_mut(&id).expect("host");
                let after = host.syncing.back().map_or(0, |(at, _)| *at);
                let at = (self.now + delay).max(after);
                if at <= self.now && host.syncing.is_empty() {
                    // Synced at once.
                    for write in &batch.writes {
                        host.disks
                            .entry(write.group)
                            .or_default()
                            .write(&write.action);
                    }
                    let multi = host.multi.as_mut().expect("up");
                    multi
                        .step(MultiInput::Persisted(batch.id), out)
                        .expect("known batch");
                } else {
                    host.syncing.push_back((at, batch));
                }
            }
            MultiAction::Group { group, action } => self.group_action(id, group, action, out),
        }
    }

    fn group_action(
        &mut self,
        id: NodeId,
        group: GroupId,
        action: Action,
        out: &mut Vec<MultiAction>,
    ) {
        match action {
            Action::Apply { entries } => {
                let last = entries.last().expect("non-empty").index;
                for entry in entries.iter() {
                    let key = (group, entry.index);
                    let value = (entry.term, entry.payload.clone());
                    match self.applied.get(&key) {
                        Some(known) if *known != value => {
                            let message = format!(
                                "group {group}: node {id} applies {:?} at index {}, another replica applied {:?}",
                                value, entry.index, known
                            );
                            self.fail(message);
                        }
                        Some(_) => {}
                        None => {
                            self.applied.insert(key, value);
                            self.entries_applied += 1;
                        }
                    }
                    let committed = self.committed.entry(group).or_default();
                    *committed = (*committed).max(entry.index);
                }
                let multi = self
                    .hosts
                    .get_mut(&id)
                    .and_then(|h| h.multi.as_mut())
                    .expect("up");
                multi
                    .step(
                        MultiInput::Group {
                            group,
                            input: Input::Applied(last),
                        },
                        out,
                    )
                    .expect("hosted");
            }
            Action::RoleChanged {
                role: Role::Leader,
                term,
            } => {
                if let Some((other, _)) = self.leaders.insert((group, term), (id, self.now)) {
                    if other != id {
                        self.fail(format!(
                            "group {group}: nodes {other} and {id} both lead term {term}"
                        ));
                    }
                }
            }
            Action::ReadReady {
                id: read, index, ..
            } => {
                if let Some(pending) = self.reads.remove(&read) {
                    self.reads_answered += 1;
                    if index < pending.committed_then {
                        self.fail(format!(
                            "group {group}: read {read} at node {id} served at index {index}, but {} was committed when it was asked",
                            pending.committed_then
                        ));
                    }
                }
            }
            Action::ReadRefused { id: read, .. } if self.reads.remove(&read).is_some() => {
                self.reads_answered += 1;
            }
            Action::FollowerLogRegressed {
                follower,
                acknowledged_index,
                ..
            } => {
                self.fail(format!(
                    "group {group}: node {follower} lost entries up to {acknowledged_index} it had acknowledged as durable"
                ));
            }
            Action::TakeSnapshot
            | Action::SendSnapshotChunk(_)
            | Action::WriteSnapshotChunk { .. }
            | Action::RestoreSnapshot { .. } => {
                panic!("no snapshots in these runs, yet group {group} asked for {action:?}")
            }
            _ => {}
        }
    }

    /// One tick of the whole cluster.
    pub fn tick(&mut self) {
        self.now += 1;
        let ids: Vec<NodeId> = self.hosts.keys().copied().collect();
        if self.now <= self.options.faults_until_tick {
            self.faults(&ids);
        } else if !self.cut.is_empty() {
            self.cut.clear();
        }
        for &id in &ids {
            if self.hosts[&id]
                .down_until
                .is_some_and(|until| until <= self.now)
            {
                self.start(id);
            }
        }
        for &id in &ids {
            if self.is_up(id) {
                self.step(id, MultiInput::Tick);
                let electing = self.multi(id).electing_count();
                self.electing_max = self.electing_max.max(electing);
            }
        }
        self.sync_disks(&ids);
        self.deliver();
        self.workload(&ids);
        self.check_reads();
        self.check_sleeping_leaders();
    }

    pub fn run(&mut self, ticks: u64) {
        for _ in 0..ticks {
            self.tick();
            if self.violation.is_some() {
                return;
            }
        }
    }

    fn faults(&mut self, ids: &[NodeId]) {
        if self.cut_until <= self.now && !self.cut.is_empty() {
            self.cut.clear();
        }
        if self.cut.is_empty() && self.rng.gen_range(0..1000) < self.options.partition_per_mille {
            for &id in ids {
                if self.rng.gen_bool(0.4) {
                    self.cut.insert(id);
                }
            }
            self.cut_until = self.now + self.options.partition_ticks;
        }
        if self.rng.gen_range(0..1000) < self.options.crash_per_mille {
            let id = ids[self.rng.gen_range(0..ids.len())];
            let down = ids.iter().filter(|id| !self.is_up(**id)).count();
            // Keep a majority up so that groups can make progress.
            if self.is_up(id) && (down + 1) * 2 < ids.len() {
                self.crash(id);
            }
        }
    }

    /// Crashes node `id`: its memory and every unsynced batch are gone.
    pub fn crash(&mut self, id: NodeId) {
        self.check_durable(id);
        let host = self.hosts.get_mut(&id).expect("host");
        host.multi = None;
        host.syncing.clear();
        host.down_until = Some(self.now + self.options.down_ticks);
        self.reads.retain(|_, read| read.node != id);
        self.crashes += 1;
    }

    /// Crashes node `id` for good.
    pub fn kill(&mut self, id: NodeId) {
        self.crash(id);
        self.hosts.get_mut(&id).expect("host").down_until = None;
    }

    /// What each group was told is durable is on the disk.
    fn check_durable(&mut self, id: NodeId) {
        let Some(multi) = self.hosts[&id].multi.as_ref() else {
            return;
        };
        let mut problems = Vec::new();
        for (group, node) in multi.groups() {
            let persisted = node.persisted_index();
            if persisted == 0 {
                continue;
            }
            let disk = self.hosts[&id].disks.get(&group);
            let on_disk = disk.and_then(|disk| disk.entries.get(persisted as usize - 1));
            if on_disk.map(|entry| entry.term) != node.term_at(persisted) {
                problems.push(format!(
                    "group {group} on node {id} was told index {persisted} is durable, but the disk holds {:?}",
                    on_disk.map(|entry| entry.position())
                ));
            }
        }
        if let Some(problem) = problems.into_iter().next() {
            self.fail(problem);
        }
    }

    fn sync_disks(&mut self, ids: &[NodeId]) {
        for &id in ids {
            loop {
                let host = self.hosts.get_mut(&id).expect("host");
                if host.multi.is_none() {
                    break;
                }
                let due = host.syncing.front().is_some_and(|(at, _)| *at <= self.now);
                if !due {
                    break;
                }
                let (_, batch) = host.syncing.pop_front().expect("looked");
                for write in &batch.writes {
                    host.disks
                        .entry(write.group)
                        .or_default()
                        .write(&write.action);
                }
                self.step(id, MultiInput::Persisted(batch.id));
            }
        }
    }

    fn deliver(&mut self) {
        let now = self.now;
        let mut due: Vec<(u64, u64, Frame)> = Vec::new();
        let mut later = Vec::new();
        for item in std::mem::take(&mut self.network) {
            if item.0 <= now {
                due.push(item);
            } else {
                later.push(item);
            }
        }
        self.network = later;
        due.sort_by_key(|(at, seq, _)| (*at, *seq));
        for (_, _, frame) in due {
            let to = frame.to;
            let cut = self.cut.contains(&frame.from) != self.cut.contains(&to);
            if self.is_up(to) && !cut {
                self.step(to, MultiInput::Receive(frame));
            }
        }
    }

    /// The node that leads `group`, if a live one believes it does.
    pub fn leader_of(&self, group: GroupId) -> Option<NodeId> {
        self.members[&group]
            .iter()
            .filter_map(|id| {
                let node = self.hosts[id].multi.as_ref()?.group(group)?;
                (node.role() == Role::Leader).then_some((node.term(), *id))
            })
            .max()
            .map(|(_, id)| id)
    }

    fn workload(&mut self, ids: &[NodeId]) {
        if self.now > self.options.faults_until_tick && self.options.faults_until_tick > 0 {
            // The quiet spell at the end: the cluster must settle.
            return;
        }
        for _ in 0..self.options.proposals_per_tick {
            let group = self.rng.gen_range(1..=self.options.groups);
            if let Some(leader) = self.leader_of(group) {
                self.propose(leader, group);
            }
        }
        if self.rng.gen_range(0..1000) < self.options.reads_per_mille {
            let group = self.rng.gen_range(1..=self.options.groups);
            let voters: Vec<NodeId> = self.members[&group].iter().copied().collect();
            let node = voters[self.rng.gen_range(0..voters.len())];
            if self.is_up(node) && ids.contains(&node) {
                let path = match self.rng.gen_range(0..3) {
                    0 => ReadPath::ReadIndex,
                    1 => ReadPath::Lease,
                    _ => ReadPath::Follower,
                };
                self.read(node, group, path);
            }
        }
    }

    pub fn propose(&mut self, node: NodeId, group: GroupId) {
        let command = Bytes::from(format!("g{group}c{}", self.next_command));
        self.next_command += 1;
        let input = Input::Propose(command);
        self.step(node, MultiInput::Group { group, input });
    }

    /// Asks node `node` for a read of `group`; returns its id.
    pub fn read(&mut self, node: NodeId, group: GroupId, path: ReadPath) -> u64 {
        let id = self.next_read;
        self.next_read += 1;
        let committed_then = self.committed.get(&group).copied().unwrap_or(0);
        let committed_then = committed_then.max(self.commit_anywhere(group));
        self.reads.insert(
            id,
            PendingRead {
                node,
                group,
                asked_tick: self.now,
                committed_then,
            },
        );
        self.step(
            node,
            MultiInput::Group {
                group,
                input: Input::Read { id, path },
            },
        );
        id
    }

    pub fn read_pending(&self, id: u64) -> bool {
        self.reads.contains_key(&id)
    }

    fn commit_anywhere(&self, group: GroupId) -> Index {
        self.members[&group]
            .iter()
            .filter_map(|id| self.hosts[id].multi.as_ref()?.group(group))
            .map(|node| node.commit_index())
            .max()
            .unwrap_or(0)
    }

    fn check_reads(&mut self) {
        let late = self
            .reads
            .iter()
            .find(|(_, read)| self.now - read.asked_tick > self.options.read_answer_ticks_max)
            .map(|(id, read)| (*id, read.clone()));
        if let Some((id, read)) = late {
            self.fail(format!(
                "read {id} of group {} at node {} unanswered after {} ticks",
                read.group, read.node, self.options.read_answer_ticks_max
            ));
        }
    }

    /// A quiesced leader's live followers hold its last entry: none of
    /// them can be missing a committed entry that nothing will send it.
    /// A follower that just came back (or restarted) may lack some until
    /// the leader's layer wakes the group for it, which it does at its
    /// next ticks: the lack must not outlast `BEHIND_TICKS_MAX`.
    fn check_sleeping_leaders(&mut self) {
        const BEHIND_TICKS_MAX: u64 = 3;
        let mut behind_now = BTreeMap::new();
        let mut problems = Vec::new();
        for (&id, host) in &self.hosts {
            let Some(multi) = &host.multi else { continue };
            for (group, node) in multi.groups() {
                if multi.sleep_state(group) != Some(GroupSleep::Leading) {
                    continue;
                }
                let last = node.last_position();
                for &peer in &self.members[&group] {
                    if peer == id || multi.peer_alive(peer) != Some(true) {
                        continue;
                    }
                    let Some(follower) = self.hosts[&peer]
                        .multi
                        .as_ref()
                        .and_then(|m| m.group(group))
                    else {
                        continue;
                    };
                    if follower.term_at(last.index) != Some(last.term) {
                        let since = self
                            .behind
                            .get(&(group, id, peer))
                            .copied()
                            .unwrap_or(self.now);
                        behind_now.insert((group, id, peer), since);
                        if self.now - since > BEHIND_TICKS_MAX {
                            problems.push(format!(
                                "group {group}: leader {id} sleeps at {last:?} while live follower {peer} holds {:?} (last {:?}) since tick {since}",
                                follower.term_at(last.index),
                                follower.last_position()
                            ));
                        }
                    }
                }
            }
        }
        self.behind = behind_now;
        if let Some(problem) = problems.into_iter().next() {
            self.fail(problem);
        }
    }

    /// Per group, between every two live replicas: if both hold an entry
    /// with the same index and term, they hold the same entries up to it.
    pub fn check_log_matching(&mut self) {
        let mut problems = Vec::new();
        for (&group, voters) in &self.members {
            let nodes: Vec<(NodeId, &concord::Node)> = voters
                .iter()
                .filter_map(|id| Some((*id, self.hosts[id].multi.as_ref()?.group(group)?)))
                .collect();
            for (i, (a_id, a)) in nodes.iter().enumerate() {
                for (b_id, b) in &nodes[i + 1..] {
                    let top = a.last_index().min(b.last_index());
                    let same = (1..=top)
                        .rev()
                        .find(|index| a.term_at(*index) == b.term_at(*index));
                    if let Some(same) = same {
                        for index in 1..=same {
                            if a.entry(index) != b.entry(index) {
                                problems.push(format!(
                                    "group {group}: nodes {a_id} and {b_id} agree at {same} but differ at {index}"
                                ));
                                break;
                            }
                        }
                    }
                }
            }
        }
        if let Some(problem) = problems.into_iter().next() {
            self.fail(problem);
        }
    }

    /// After the faults stop: every node up, every group led, every
    /// replica holding and having applied its leader's committed log.
    pub fn check_settled(&mut self) {
        let mut problems = Vec::new();
        for &group in self.members.keys() {
            let Some(leader) = self.leader_of(group) else {
                problems.push(format!(
                    "group {group} has no leader after the faults stopped"
                ));
                continue;
            };
            let commit = self
                .multi(leader)
                .group(group)
                .expect("hosted")
                .commit_index();
            for &peer in &self.members[&group] {
                let node = self.multi(peer).group(group).expect("hosted");
                if node.applied_index() < commit {
                    problems.push(format!(
                        "group {group}: node {peer} applied {} of the {commit} its leader {leader} committed",
                        node.applied_index()
                    ));
                }
            }
        }
        if let Some(problem) = problems.into_iter().next() {
            self.fail(problem);
        }
    }

    /// Whether every group on every live node sleeps, led (quiesced as
    /// leader or follower, none waiting to elect).
    pub fn all_asleep(&self) -> bool {
        self.hosts
            .values()
            .filter_map(|host| host.multi.as_ref())
            .all(|multi| {
                multi.awake_count() == 0
                    && multi.groups().all(|(group, _)| {
                        matches!(
                            multi.sleep_state(group),
                            Some(GroupSleep::Leading | GroupSleep::Following { .. })
                        )
                    })
            })
    }

    /// Ticks until every group sleeps (at most `ticks_max`).
    pub fn run_until_asleep(&mut self, ticks_max: u64) -> Option<u64> {
        for tick in 0..ticks_max {
            if self.all_asleep() {
                return Some(tick);
            }
            self.tick();
        }
        self.all_asleep().then_some(ticks_max)
    }

    /// Sum of a counter over the live nodes.
    pub fn total(&self, counter: impl Fn(&concord::multi::MultiStats) -> u64) -> u64 {
        self.hosts
            .values()
            .filter_map(|host| host.multi.as_ref())
            .map(|multi| counter(multi.stats()))
            .sum()
    }

    /// One full seeded run: faults, then a quiet spell, then the checks.
    pub fn run_checked(options: Options, seed: u64) -> Result<Driver, String> {
        let ticks = options.ticks;
        let mut driver = Driver::new(options, seed);
        driver.run(ticks);
        if driver.violation.is_none() {
            driver.check_log_matching();
        }
        if driver.violation.is_none() {
            driver.check_settled();
        }
        match driver.violation.take() {
            Some(violation) => Err(format!("seed {seed}: {violation}")),
            None => Ok(driver),
        }
    }
}

#[cfg(feature = "planted-bugs")]
fn plant(multi: &mut MultiNode, bugs: Bugs) {
    multi.plant_bugs(concord::multi::MultiPlantedBugs {
        quiesce_follower_behind: bugs.quiesce_follower_behind,
        heartbeat_commit_uncapped: bugs.heartbeat_commit_uncapped,
        wake_drops_read: bugs.wake_drops_read,
        persist_acks_later_batches: bugs.persist_acks_later_batches,
        ..concord::multi::MultiPlantedBugs::NONE
    });
}

#[cfg(not(feature = "planted-bugs"))]
fn plant(_multi: &mut MultiNode, bugs: Bugs) {
    assert!(
        !bugs.any(),
        "planting mistakes needs the `planted-bugs` feature"
    );
}

/// The first seed in `seeds` at which a run with `bugs` planted fails,
/// with its violation.
pub fn first_catch(
    options: &Options,
    bugs: Bugs,
    seeds: std::ops::Range<u64>,
) -> Option<(u64, String)> {
    for seed in seeds {
        let options = Options {
            bugs,
            ..options.clone()
        };
        let outcome = std::panic::catch_unwind(|| Driver::run_checked(options, seed));
        match outcome {
            Ok(Ok(_)) => {}
            Ok(Err(violation)) => return Some((seed, violation)),
            Err(_) => return Some((seed, "an assertion failed".to_string())),
        }
    }
    None
}
