//! A small in-test cluster: nodes, their durable disks, and a FIFO network
//! that tests can cut, hold back and inspect. Deliberately simpler than the
//! simulator: every step is explicit so a test can assert on exact
//! messages.
#![allow(dead_code)]

pub mod crash_image;
pub mod kv_nodes;
pub mod kv_writes;
pub mod wal;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use concord::{
    Action, Config, Entry, EntryPayload, HardState, Index, Input, LogPosition, Message,
    MessageBody, Node, NodeId, Recovered, Role, Snapshot, SnapshotMeta, Term, WriteId,
};

/// One write handed to the disk: a log write (id, hard state, truncation,
/// entries) or a snapshot received from a leader (id, snapshot, whether
/// the whole log is dropped).
#[derive(Clone, Debug)]
pub enum Write {
    Log(WriteId, Option<HardState>, Option<Index>, Vec<Entry>),
    Snapshot(WriteId, Snapshot, bool),
}

/// What a node has written. Entries, hard state and snapshots become
/// durable only when the write is synced; a crash loses the rest.
#[derive(Clone, Debug, Default)]
pub struct Disk {
    pub hard_state: HardState,
    /// The stored snapshot, if any; the log continues after `base`.
    pub snapshot: Option<Snapshot>,
    pub base: LogPosition,
    /// Entries from `base.index + 1`, contiguous.
    pub entries: Vec<Entry>,
    /// Writes handed over but not yet synced.
    pub unsynced: Vec<Write>,
    /// A snapshot the node asked for (`TakeSnapshot`), not yet synced.
    pub unsynced_own_snapshot: Option<Snapshot>,
}

impl Disk {
    /// Makes every write durable; returns the last write id, and the
    /// node's own snapshot if one became durable.
    pub fn sync_all(&mut self) -> (Option<WriteId>, Option<Snapshot>) {
        let mut last = None;
        for write in std::mem::take(&mut self.unsynced) {
            match write {
                Write::Log(id, hard_state, truncate_after, entries) => {
                    if let Some(after) = truncate_after {
                        self.entries.retain(|entry| entry.index <= after);
                    }
                    for entry in entries {
                        assert_eq!(
                            entry.index,
                            self.base.index + self.entries.len() as u64 + 1,
                            "disk append must be contiguous"
                        );
                        self.entries.push(entry);
                    }
                    if let Some(hard_state) = hard_state {
                        self.hard_state = hard_state;
                    }
                    last = Some(id);
                }
                Write::Snapshot(id, snapshot, discard_log) => {
                    if discard_log {
                        self.entries.clear();
                    }
                    self.store_snapshot(snapshot);
                    last = Some(id);
                }
            }
        }
        let own = self.unsynced_own_snapshot.take();
        if let Some(snapshot) = &own {
            self.store_snapshot(snapshot.clone());
        }
        (last, own)
    }

    /// Log and hard state writes only (the node's own snapshot stays
    /// pending).
    pub fn sync(&mut self) -> Option<WriteId> {
        let own = self.unsynced_own_snapshot.take();
        let (last, _) = self.sync_all();
        self.unsynced_own_snapshot = own;
        last
    }

    /// Keeps the newer snapshot; drops the log entries it covers.
    fn store_snapshot(&mut self, snapshot: Snapshot) {
        if snapshot.position.index <= self.base.index {
            return;
        }
        self.entries
            .retain(|entry| entry.index > snapshot.position.index);
        if self
            .entries
            .first()
            .is_some_and(|entry| entry.index != snapshot.position.index + 1)
        {
            self.entries.clear();
        }
        self.base = snapshot.position;
        self.snapshot = Some(snapshot);
    }

    pub fn recovered(&self) -> Recovered {
        Recovered {
            hard_state: self.hard_state,
            base: self.base,
            entries: self.entries.clone(),
            applied_index: self.base.index,
            membership: self
                .snapshot
                .as_ref()
                .and_then(|snapshot| snapshot.membership.clone()),
        }
    }
}

/// The test state machine: the commands applied, with their index.
/// A snapshot of it is that list, length-prefixed.
pub fn encode_applied(applied: &[(Index, Bytes)]) -> Bytes {
    let mut out = Vec::new();
    for (index, command) in applied {
        out.extend_from_slice(&index.to_le_bytes());
        out.extend_from_slice(&(command.len() as u32).to_le_bytes());
        out.extend_from_slice(command);
    }
    Bytes::from(out)
}

/// Inverse of [`encode_applied`].
pub fn decode_applied(mut bytes: &[u8]) -> Vec<(Index, Bytes)> {
    let mut applied = Vec::new();
    while !bytes.is_empty() {
        let index = u64::from_le_bytes(bytes[..8].try_into().unwrap());
        let length = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
        applied.push((index, Bytes::copy_from_slice(&bytes[12..12 + length])));
        bytes = &bytes[12 + length..];
    }
    applied
}

pub struct Cluster {
    pub configs: BTreeMap<NodeId, Config>,
    pub nodes: BTreeMap<NodeId, Node>,
    pub disks: BTreeMap<NodeId, Disk>,
    /// Messages in flight, FIFO.
    pub network: VecDeque<Message>,
    /// Directed links (from, to) that drop everything.
    pub cut: BTreeSet<(NodeId, NodeId)>,
    /// Nodes whose disks sync (and report Persisted) at once.
    pub auto_sync: BTreeSet<NodeId>,
    /// Commands applied per node, in order, with their index: the state
    /// machine (restored wholesale from snapshots).
    pub applied: BTreeMap<NodeId, Vec<(Index, Bytes)>>,
    /// Position of the last entry each node's state machine applied.
    pub applied_position: BTreeMap<NodeId, LogPosition>,
    /// Every (term, leader) pair ever announced.
    pub leaders: BTreeMap<Term, BTreeSet<NodeId>>,
    /// Every action every node emitted, in order (for assertions).
    pub trace: Vec<(NodeId, Action)>,
    pub record_trace: bool,
    /// The bytes of every snapshot each node was told of, by position (what
    /// `SendSnapshotChunk` reads).
    pub snapshot_bytes: BTreeMap<NodeId, BTreeMap<LogPosition, Bytes>>,
    /// The snapshot each node is receiving (`WriteSnapshotChunk`); lost in
    /// a crash.
    pub incoming: BTreeMap<NodeId, (SnapshotMeta, Vec<u8>)>,
}

/// The test config of node `id`. Its storage is a map in this process,
/// lost only when a test says so, so an empty one is a new node's: the
/// recovery from lost storage is off (tests/storage_loss.rs turns it on).
pub fn config(id: NodeId, voters: &[NodeId]) -> Config {
    let mut config = Config::new(id, voters.iter().copied());
    config.seed = 1000 + id;
    config.recover_empty_storage = false;
    config
}

impl Cluster {
    pub fn new(voters: &[NodeId]) -> Self {
        Self::with_configs(voters.iter().map(|id| config(*id, voters)).collect())
    }

    /// A cluster of `voters` with the default test config in which
    /// `leader` has been elected ([`Cluster::elect`]).
    pub fn elected(voters: &[NodeId], leader: NodeId) -> Self {
        let mut cluster = Self::new(voters);
        cluster.elect(leader);
        cluster
    }

    /// A cluster of `voters` with the default test config, adjusted by
    /// `configure` on every node.
    pub fn configured(voters: &[NodeId], configure: impl Fn(&mut Config)) -> Self {
        let configs = voters
            .iter()
            .map(|id| {
                let mut c = config(*id, voters);
                configure(&mut c);
                c
            })
            .collect();
        Self::with_configs(configs)
    }

    /// Three voters (1, 2, 3) with PreVote and CheckQuorum as given: the
    /// two guards against a disruptive or stale leader.
    pub fn guarded(pre_vote: bool, check_quorum: bool) -> Self {
        Self::configured(&[1, 2, 3], |c| {
            c.pre_vote = pre_vote;
            c.check_quorum = check_quorum;
        })
    }

    /// [`Cluster::guarded`] in which node 1 was elected and node 3 then
    /// cut off for `ticks` rounds of [`Cluster::tick_all`]; returns it and
    /// node 1's term.
    pub fn guarded_with_3_cut_off(
        pre_vote: bool,
        check_quorum: bool,
        ticks: usize,
    ) -> (Self, Term) {
        let mut cluster = Self::guarded(pre_vote, check_quorum);
        let term = cluster.elect(1);
        cluster.isolate(3);
        cluster.tick_all(ticks);
        (cluster, term)
    }

    pub fn with_configs(configs: Vec<Config>) -> Self {
        let mut cluster = Cluster {
            configs: BTreeMap::new(),
            nodes: BTreeMap::new(),
            disks: BTreeMap::new(),
            network: VecDeque::new(),
            cut: BTreeSet::new(),
            auto_sync: BTreeSet::new(),
            applied: BTreeMap::new(),
            applied_position: BTreeMap::new(),
            leaders: BTreeMap::new(),
            trace: Vec::new(),
            record_trace: false,
            snapshot_bytes: BTreeMap::new(),
            incoming: BTreeMap::new(),
        };
        for config in configs {
            let id = config.id;
            cluster.nodes.insert(
                id,
                Node::new(config.clone(), Recovered::default()).expect("valid config"),
            );
            cluster.configs.insert(id, config);
            cluster.disks.insert(id, Disk::default());
            cluster.auto_sync.insert(id);
            cluster.applied.insert(id, Vec::new());
            cluster.applied_position.insert(id, LogPosition::ZERO);
        }
        cluster
    }

    /// Keeps `snapshot`'s bytes for node `id`'s chunk requests and returns
    /// the input that reports it.
    pub fn snapshotted(&mut self, id: NodeId, snapshot: Snapshot) -> Input {
        let meta = snapshot.meta();
        self.snapshot_bytes
            .entry(id)
            .or_default()
            .insert(snapshot.position, snapshot.data);
        Input::Snapshotted(meta)
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[&id]
    }

    pub fn ids(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    /// Feeds one input to a node and executes what follows, including the
    /// `Persisted` and `Applied` reports of auto-syncing nodes.
    pub fn step(&mut self, id: NodeId, input: Input) {
        let mut inputs = VecDeque::from([input]);
        let mut actions = Vec::new();
        while let Some(input) = inputs.pop_front() {
            let Some(node) = self.nodes.get_mut(&id) else {
                return;
            };
            node.step(input, &mut actions);
            for action in actions.drain(..) {
                if self.record_trace {
                    self.trace.push((id, action.clone()));
                }
                match action {
                    Action::Send { to, message } => {
                        assert_eq!(message.from, id);
                        assert_eq!(message.to, to);
                        if !self.cut.contains(&(id, to)) {
                            self.network.push_back(message);
                        }
                    }
                    Action::Persist {
                        id: write,
                        hard_state,
                        truncate_after,
                        entries,
                    } => {
                        let disk = self.disks.get_mut(&id).expect("disk");
                        disk.unsynced.push(Write::Log(
                            write,
                            hard_state,
                            truncate_after,
                            entries.into_vec(),
                        ));
                        if self.auto_sync.contains(&id) {
                            let synced = disk.sync().expect("just written");
                            inputs.push_back(Input::Persisted(synced));
                        }
                    }
                    Action::SendSnapshotChunk(chunk) => {
                        let bytes = &self.snapshot_bytes[&id][&chunk.snapshot.position];
                        let to = chunk.to;
                        let message = chunk.cut_from(bytes);
                        if self.record_trace {
                            // Recorded as the send it becomes.
                            self.trace.push((
                                id,
                                Action::Send {
                                    to,
                                    message: message.clone(),
                                },
                            ));
                        }
                        if !self.cut.contains(&(id, to)) {
                            self.network.push_back(message);
                        }
                    }
                    Action::WriteSnapshotChunk {
                        snapshot,
                        offset,
                        data,
                    } => {
                        if offset == 0 {
                            self.incoming.insert(id, (snapshot, Vec::new()));
                        }
                        let (meta, bytes) = self.incoming.get_mut(&id).expect("offset 0 first");
                        assert_eq!(*meta, snapshot, "a chunk of another snapshot");
                        assert_eq!(bytes.len() as u64, offset, "chunks must be contiguous");
                        bytes.extend_from_slice(&data);
                    }
                    Action::PersistSnapshot {
                        id: write,
                        snapshot: meta,
                        discard_log,
                        membership,
                    } => {
                        let (received, bytes) = self.incoming.remove(&id).expect("received");
                        assert_eq!(received, meta);
                        let snapshot = Snapshot::new(meta.position, Bytes::from(bytes))
                            .with_membership(Some(*membership));
                        assert_eq!(snapshot.meta(), meta, "received bytes fail the checksum");
                        self.snapshot_bytes
                            .entry(id)
                            .or_default()
                            .insert(meta.position, snapshot.data.clone());
                        let disk = self.disks.get_mut(&id).expect("disk");
                        disk.unsynced
                            .push(Write::Snapshot(write, snapshot, discard_log));
                        if self.auto_sync.contains(&id) {
                            let synced = disk.sync().expect("just written");
                            inputs.push_back(Input::Persisted(synced));
                        }
                    }
                    Action::RestoreSnapshot { snapshot } => {
                        let data = &self.snapshot_bytes[&id][&snapshot.position];
                        self.applied.insert(id, decode_applied(data));
                        self.applied_position.insert(id, snapshot.position);
                        inputs.push_back(Input::Applied(snapshot.position.index));
                    }
                    Action::TakeSnapshot => {
                        // A witness's entries count as applied inside the
                        // node; its snapshot holds no state.
                        let node = &self.nodes[&id];
                        let position = if node.is_witness_node() {
                            let applied = node.applied_index();
                            LogPosition::new(applied, node.term_at(applied).expect("in the log"))
                        } else {
                            self.applied_position[&id]
                        };
                        let data = encode_applied(&self.applied[&id]);
                        let membership = self.nodes[&id].membership_at(position.index).cloned();
                        let snapshot = Snapshot::new(position, data).with_membership(membership);
                        let disk = self.disks.get_mut(&id).expect("disk");
                        disk.unsynced_own_snapshot = Some(snapshot);
                        if self.auto_sync.contains(&id) {
                            let (_, own) = disk.sync_all();
                            let input = self.snapshotted(id, own.expect("just taken"));
                            inputs.push_back(input);
                        }
                    }
                    Action::Apply { entries } => {
                        let last = entries.last().expect("non-empty apply").index;
                        self.applied_position
                            .insert(id, entries.last().expect("non-empty").position());
                        let applied = self.applied.get_mut(&id).expect("applied");
                        for entry in entries {
                            if let EntryPayload::Command(command) = entry.payload {
                                applied.push((entry.index, command));
                            }
                        }
                        inputs.push_back(Input::Applied(last));
                    }
                    Action::RoleChanged {
                        role: Role::Leader,
                        term,
                    } => {
                        self.leaders.entry(term).or_default().insert(id);
                    }
                    _ => {}
                }
            }
        }
    }

    /// Syncs a node's disk by hand (for nodes not in `auto_sync`).
    pub fn sync(&mut self, id: NodeId) {
        let (synced, own) = self.disks.get_mut(&id).expect("disk").sync_all();
        if let Some(synced) = synced {
            self.step(id, Input::Persisted(synced));
        }
        if let Some(snapshot) = own {
            let input = self.snapshotted(id, snapshot);
            self.step(id, input);
        }
    }

    /// Delivers queued messages until none are left (bounded).
    pub fn deliver_all(&mut self) {
        for _ in 0..1_000_000 {
            let Some(message) = self.network.pop_front() else {
                return;
            };
            let to = message.to;
            if self.nodes.contains_key(&to) {
                self.step(to, Input::Receive(message));
            }
        }
        panic!("network never went quiet");
    }

    /// Delivers one message if any; returns it.
    pub fn deliver_one(&mut self) -> Option<Message> {
        let message = self.network.pop_front()?;
        if self.nodes.contains_key(&message.to) {
            self.step(message.to, Input::Receive(message.clone()));
        }
        Some(message)
    }

    /// Removes and returns every queued message.
    pub fn take_messages(&mut self) -> Vec<Message> {
        self.network.drain(..).collect()
    }

    pub fn tick(&mut self, id: NodeId) {
        self.step(id, Input::Tick);
    }

    /// Ticks every live node `ticks` times, delivering messages after each.
    pub fn tick_all(&mut self, ticks: usize) {
        for _ in 0..ticks {
            for id in self.ids() {
                self.tick(id);
            }
            self.deliver_all();
        }
    }

    /// Ticks only `id` until it becomes leader (others stay passive but
    /// answer messages); returns the term it leads in. Panics if it does
    /// not within a bound.
    pub fn elect(&mut self, id: NodeId) -> Term {
        for _ in 0..200 {
            self.tick(id);
            self.deliver_all();
            if self.node(id).role() == Role::Leader {
                self.deliver_all();
                return self.node(id).term();
            }
        }
        panic!("node {id} did not become leader");
    }

    pub fn leader(&self) -> Option<NodeId> {
        let leaders: Vec<_> = self
            .nodes
            .values()
            .filter(|n| n.role() == Role::Leader)
            .collect();
        leaders.iter().max_by_key(|n| n.term()).map(|n| n.id())
    }

    pub fn propose(&mut self, id: NodeId, command: &str) {
        self.step(
            id,
            Input::Propose(Bytes::copy_from_slice(command.as_bytes())),
        );
    }

    /// Proposes `count` commands at `id`, named `{prefix}0`, `{prefix}1`, ...
    pub fn propose_numbered(&mut self, id: NodeId, prefix: &str, count: usize) {
        for i in 0..count {
            self.propose(id, &format!("{prefix}{i}"));
        }
    }

    /// Proposes `command` at `leader`, runs `ticks` rounds of
    /// [`Cluster::tick_all`] and checks `id` applied it last.
    pub fn assert_served(&mut self, leader: NodeId, command: &str, ticks: usize, id: NodeId) {
        self.propose(leader, command);
        self.tick_all(ticks);
        assert_eq!(
            self.applied_strings(id).last().map(String::as_str),
            Some(command),
            "node {id} applied {command:?} last"
        );
    }

    /// Cuts every link between the two groups, both ways.
    pub fn partition(&mut self, a: &[NodeId], b: &[NodeId]) {
        for x in a {
            for y in b {
                self.cut.insert((*x, *y));
                self.cut.insert((*y, *x));
            }
        }
    }

    pub fn isolate(&mut self, id: NodeId) {
        let others: Vec<_> = self.configs.keys().copied().filter(|x| *x != id).collect();
        self.partition(&[id], &others);
    }

    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// Crashes a node: memory and unsynced writes are lost.
    pub fn crash(&mut self, id: NodeId) {
        self.nodes.remove(&id);
        let disk = self.disks.get_mut(&id).expect("disk");
        disk.unsynced.clear();
        disk.unsynced_own_snapshot = None;
        self.incoming.remove(&id);
        self.snapshot_bytes.remove(&id);
        self.network.retain(|message| message.to != id);
    }

    /// Restarts a crashed node from its synced disk. Its state machine
    /// starts from the stored snapshot (or empty) and is rebuilt from the
    /// log; the snapshot is handed back to the node to serve.
    pub fn restart(&mut self, id: NodeId) {
        let disk = &self.disks[&id];
        let recovered = disk.recovered();
        let snapshot = disk.snapshot.clone();
        let node =
            Node::new(self.configs[&id].clone(), recovered).expect("recovered state is valid");
        self.nodes.insert(id, node);
        match snapshot {
            Some(snapshot) => {
                self.applied.insert(id, decode_applied(&snapshot.data));
                self.applied_position.insert(id, snapshot.position);
                let input = self.snapshotted(id, snapshot);
                self.step(id, input);
            }
            None => {
                self.applied.insert(id, Vec::new());
                self.applied_position.insert(id, LogPosition::ZERO);
            }
        }
    }

    /// Commands applied by `id`, as strings.
    pub fn applied_strings(&self, id: NodeId) -> Vec<String> {
        self.applied[&id]
            .iter()
            .map(|(_, c)| String::from_utf8_lossy(c).into_owned())
            .collect()
    }

    /// Log terms of a node, index 1 on.
    pub fn log_terms(&self, id: NodeId) -> Vec<Term> {
        let node = self.node(id);
        (1..=node.last_index())
            .map(|i| node.term_at(i).expect("in memory"))
            .collect()
    }

    /// Asserts at most one leader was ever announced per term.
    pub fn assert_election_safety(&self) {
        for (term, leaders) in &self.leaders {
            assert!(leaders.len() <= 1, "term {term} had leaders {leaders:?}");
        }
    }
}

/// The voters of a seeded run: three for an even seed, five for an odd
/// one (so a sweep over seeds covers both cluster sizes).
pub fn voters_of_seed(seed: u64) -> &'static [NodeId] {
    if seed % 2 == 0 {
        &[1, 2, 3]
    } else {
        &[1, 2, 3, 4, 5]
    }
}

/// A message body shorthand for assertions.
pub fn is_vote_grant(message: &Message) -> bool {
    matches!(
        message.body,
        MessageBody::RequestVoteResponse {
            pre_vote: false,
            granted: true
        }
    )
}

// ---------------------------------------------------------------------------
// Helpers for the rule-by-rule tests (additive).
// ---------------------------------------------------------------------------

/// The command an entry built by [`entry`] carries: "index@term", so two
/// entries compare equal exactly when index and term do.
pub fn command(index: Index, term: Term) -> Bytes {
    Bytes::from(format!("{index}@{term}"))
}

/// A command entry at `index` in `term`.
pub fn entry(index: Index, term: Term) -> Entry {
    Entry {
        term,
        index,
        payload: EntryPayload::Command(command(index, term)),
    }
}

/// A log from index 1 with the given terms.
pub fn log_of(terms: &[Term]) -> Vec<Entry> {
    terms
        .iter()
        .enumerate()
        .map(|(i, term)| entry(i as Index + 1, *term))
        .collect()
}

/// Recovered state with the given hard state and log terms.
pub fn recovered(term: Term, voted_for: Option<NodeId>, terms: &[Term]) -> Recovered {
    Recovered {
        hard_state: HardState {
            term,
            voted_for,
            ..Default::default()
        },
        entries: log_of(terms),
        ..Recovered::default()
    }
}

pub fn msg(from: NodeId, to: NodeId, term: Term, body: MessageBody) -> Message {
    Message {
        from,
        to,
        term,
        progress_id: 0,
        body,
    }
}

/// An AppendEntries body.
pub fn append(prev: (Index, Term), entries: Vec<Entry>, leader_commit: Index) -> MessageBody {
    MessageBody::AppendEntries {
        prev: concord::LogPosition::new(prev.0, prev.1),
        entries: entries.into(),
        leader_commit,
    }
}

/// A real (not pre-) vote request.
pub fn vote_request(last: (Index, Term)) -> MessageBody {
    MessageBody::RequestVote {
        pre_vote: false,
        last_log: concord::LogPosition::new(last.0, last.1),
        transfer: false,
    }
}

/// A pre-vote request.
pub fn pre_vote_request(last: (Index, Term)) -> MessageBody {
    MessageBody::RequestVote {
        pre_vote: true,
        last_log: concord::LogPosition::new(last.0, last.1),
        transfer: false,
    }
}

/// The messages among `actions`.
pub fn sent(actions: &[Action]) -> Vec<Message> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Send { message, .. } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

/// The vote answers (granted or not, real votes only) among `actions`.
pub fn vote_answers(actions: &[Action]) -> Vec<(NodeId, Term, bool)> {
    sent(actions)
        .into_iter()
        .filter_map(|m| match m.body {
            MessageBody::RequestVoteResponse {
                pre_vote: false,
                granted,
            } => Some((m.to, m.term, granted)),
            _ => None,
        })
        .collect()
}

/// The AppendEntries answers among `actions`.
pub fn append_answers(actions: &[Action]) -> Vec<concord::AppendResponse> {
    sent(actions)
        .into_iter()
        .filter_map(|m| match m.body {
            MessageBody::AppendEntriesResponse(response) => Some(response),
            _ => None,
        })
        .collect()
}

/// One node driven by hand, with a disk that syncs only when told.
pub struct Solo {
    pub node: Node,
    pub disk: Disk,
    /// Every action ever emitted, in order.
    pub history: Vec<Action>,
    /// The snapshot being received (`WriteSnapshotChunk`).
    pub incoming: Option<(SnapshotMeta, Vec<u8>)>,
    /// The last snapshot received whole and stored (`PersistSnapshot`).
    pub received: Option<Snapshot>,
}

impl Solo {
    pub fn new(config: Config, recovered: Recovered) -> Self {
        let disk = Disk {
            hard_state: recovered.hard_state,
            base: recovered.base,
            entries: recovered.entries.clone(),
            ..Disk::default()
        };
        Solo {
            node: Node::new(config, recovered).expect("valid node"),
            disk,
            history: Vec::new(),
            incoming: None,
            received: None,
        }
    }

    /// Feeds one input; records writes on the (unsynced) disk and reports
    /// applied entries at once. Returns this step's actions.
    pub fn step(&mut self, input: Input) -> Vec<Action> {
        let mut inputs = VecDeque::from([input]);
        let mut out = Vec::new();
        let mut actions = Vec::new();
        while let Some(input) = inputs.pop_front() {
            self.node.step(input, &mut actions);
            for action in actions.drain(..) {
                match &action {
                    Action::Persist {
                        id,
                        hard_state,
                        truncate_after,
                        entries,
                    } => self.disk.unsynced.push(Write::Log(
                        *id,
                        *hard_state,
                        *truncate_after,
                        entries.to_vec(),
                    )),
                    Action::WriteSnapshotChunk {
                        snapshot,
                        offset,
                        data,
                    } => {
                        if *offset == 0 {
                            self.incoming = Some((*snapshot, Vec::new()));
                        }
                        let (meta, bytes) = self.incoming.as_mut().expect("offset 0 first");
                        assert_eq!(meta, snapshot, "a chunk of another snapshot");
                        assert_eq!(bytes.len() as u64, *offset, "chunks must be contiguous");
                        bytes.extend_from_slice(data);
                    }
                    Action::PersistSnapshot {
                        id,
                        snapshot: meta,
                        discard_log,
                        membership,
                    } => {
                        let (received, bytes) = self.incoming.take().expect("received");
                        assert_eq!(received, *meta);
                        let snapshot = Snapshot::new(meta.position, Bytes::from(bytes))
                            .with_membership(Some((**membership).clone()));
                        assert_eq!(snapshot.meta(), *meta, "received bytes fail the checksum");
                        self.received = Some(snapshot.clone());
                        self.disk
                            .unsynced
                            .push(Write::Snapshot(*id, snapshot, *discard_log));
                    }
                    Action::RestoreSnapshot { snapshot } => {
                        inputs.push_back(Input::Applied(snapshot.position.index))
                    }
                    Action::Apply { entries } => {
                        inputs.push_back(Input::Applied(entries.last().expect("non-empty").index))
                    }
                    _ => {}
                }
                out.push(action);
            }
        }
        self.history.extend(out.iter().cloned());
        out
    }

    pub fn receive(&mut self, message: Message) -> Vec<Action> {
        self.step(Input::Receive(message))
    }

    /// Syncs the disk and reports it durable. Returns the actions that
    /// follow (the promises that waited for the write).
    pub fn sync(&mut self) -> Vec<Action> {
        match self.disk.sync() {
            Some(id) => self.step(Input::Persisted(id)),
            None => Vec::new(),
        }
    }

    /// Ticks `n` times, returning every action.
    pub fn ticks(&mut self, n: usize) -> Vec<Action> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.extend(self.step(Input::Tick));
        }
        out
    }
}

impl Cluster {
    /// Replaces a node's disk with the given durable state and restarts it
    /// from there.
    pub fn load(&mut self, id: NodeId, recovered: Recovered) {
        let disk = self.disks.get_mut(&id).expect("disk");
        disk.hard_state = recovered.hard_state;
        disk.base = recovered.base;
        disk.snapshot = None;
        disk.entries = recovered.entries;
        disk.unsynced.clear();
        disk.unsynced_own_snapshot = None;
        self.nodes.remove(&id);
        self.network.retain(|m| m.to != id && m.from != id);
        self.restart(id);
    }

    /// Delivers queued messages until none are left, dropping those that
    /// `keep` refuses (bounded).
    pub fn deliver_filtered(&mut self, mut keep: impl FnMut(&Message) -> bool) {
        for _ in 0..1_000_000 {
            let Some(message) = self.network.pop_front() else {
                return;
            };
            if keep(&message) && self.nodes.contains_key(&message.to) {
                self.step(message.to, Input::Receive(message));
            }
        }
        panic!("network never went quiet");
    }

    /// Delivers queued messages until none are left, passing each through
    /// `map` first: it may drop a message (None) or change it (bounded).
    pub fn deliver_mapped(&mut self, mut map: impl FnMut(Message) -> Option<Message>) {
        for _ in 0..1_000_000 {
            let Some(message) = self.network.pop_front() else {
                return;
            };
            if let Some(message) = map(message) {
                if self.nodes.contains_key(&message.to) {
                    self.step(message.to, Input::Receive(message));
                }
            }
        }
        panic!("network never went quiet");
    }

    /// Messages `from` sent (as recorded in the trace).
    pub fn traced_sends(&self, from: NodeId) -> Vec<Message> {
        self.trace
            .iter()
            .filter(|(id, _)| *id == from)
            .filter_map(|(_, action)| match action {
                Action::Send { message, .. } => Some(message.clone()),
                _ => None,
            })
            .collect()
    }

    /// The whole log of a node.
    pub fn log(&self, id: NodeId) -> Vec<Entry> {
        let node = self.node(id);
        (node.first_index()..=node.last_index())
            .map(|i| node.entry(i).expect("in memory").clone())
            .collect()
    }

    /// Ticks every node until some node leads with its whole log committed
    /// (bounded); returns the leader.
    pub fn settle(&mut self) -> NodeId {
        for _ in 0..500 {
            self.tick_all(1);
            if let Some(leader) = self.leader() {
                let node = self.node(leader);
                if node.commit_index() == node.last_index()
                    && self.ids().iter().all(|id| {
                        self.node(*id).commit_index() == node.commit_index()
                            && self.node(*id).term() == node.term()
                    })
                {
                    return leader;
                }
            }
        }
        panic!("the cluster did not settle");
    }
}

/// Seeded chaos over an in-test cluster: random ticks, reordered, lost and
/// duplicated delivery, syncs, proposals, crashes, restarts and partitions.
/// `check` runs after every step; `on_restart` is told of restarts.
pub struct Chaos {
    pub cluster: Cluster,
    pub rng: rand_chacha::ChaCha8Rng,
    pub crashed: Vec<NodeId>,
    pub next_command: u64,
    voters: Vec<NodeId>,
}

impl Chaos {
    pub fn new(seed: u64, voters: &[NodeId], configure: impl Fn(&mut Config)) -> Self {
        use rand::SeedableRng;
        let configs = voters
            .iter()
            .map(|id| {
                let mut config = config(*id, voters);
                config.seed = seed * 1000 + id;
                configure(&mut config);
                config
            })
            .collect();
        let mut cluster = Cluster::with_configs(configs);
        cluster.auto_sync.clear();
        Chaos {
            cluster,
            rng: rand_chacha::ChaCha8Rng::seed_from_u64(seed),
            crashed: Vec::new(),
            next_command: 0,
            voters: voters.to_vec(),
        }
    }

    /// One random step. Returns the id of a node that was restarted, if any.
    pub fn step(&mut self) -> Option<NodeId> {
        use rand::Rng;
        let c = &mut self.cluster;
        let rng = &mut self.rng;
        let ids = c.ids();
        let id = ids[rng.gen_range(0..ids.len())];
        match rng.gen_range(0..100) {
            0..=29 => c.tick(id),
            30..=59 => {
                if !c.network.is_empty() {
                    let pick = rng.gen_range(0..c.network.len().min(4));
                    let message = c.network.remove(pick).expect("in range");
                    if !rng.gen_bool(0.05) {
                        if rng.gen_bool(0.03) {
                            c.network.push_back(message.clone());
                        }
                        if c.nodes.contains_key(&message.to) {
                            c.step(message.to, Input::Receive(message));
                        }
                    }
                }
            }
            60..=74 => c.sync(id),
            75..=84 => {
                if c.node(id).role() == Role::Leader {
                    self.next_command += 1;
                    c.propose(id, &format!("cmd{}", self.next_command));
                }
            }
            85..=87 => {
                if self.crashed.len() < (self.voters.len() - 1) / 2 {
                    c.crash(id);
                    self.crashed.push(id);
                }
            }
            88..=91 => {
                if let Some(id) = self.crashed.pop() {
                    c.restart(id);
                    return Some(id);
                }
            }
            92..=94 => {
                let a = self.voters[rng.gen_range(0..self.voters.len())];
                let b = self.voters[rng.gen_range(0..self.voters.len())];
                if a != b {
                    c.partition(&[a], &[b]);
                }
            }
            _ => c.heal(),
        }
        None
    }

    /// Restarts every crashed node, heals the network, syncs every disk and
    /// lets the cluster settle. Returns the leader.
    pub fn heal_and_settle(&mut self) -> NodeId {
        let c = &mut self.cluster;
        for id in self.crashed.drain(..) {
            c.restart(id);
        }
        c.heal();
        c.auto_sync = c.ids().into_iter().collect();
        for id in c.ids() {
            c.sync(id);
        }
        c.settle()
    }
}

mod scratch;
#[allow(unused_imports)] // not every test uses them
pub use scratch::{free_ports, TempDir};

/// A two-thread tokio runtime for the runtime's tests.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("build a tokio runtime")
}
