//! A small in-test cluster: nodes, their durable disks, and a FIFO network
//! that tests can cut, hold back and inspect. Deliberately simpler than the
//! simulator: every step is explicit so a test can assert on exact
//! messages.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use concord::{
    Action, Config, Entry, EntryPayload, HardState, Index, Input, Message, MessageBody, Node,
    NodeId, Recovered, Role, Term, WriteId,
};

/// One write handed to the disk: id, hard state, truncation, entries.
pub type Write = (WriteId, Option<HardState>, Option<Index>, Vec<Entry>);

/// What a node has written. Entries and hard state become durable only
/// when the write is synced; a crash loses the rest.
#[derive(Clone, Debug, Default)]
pub struct Disk {
    pub hard_state: HardState,
    pub entries: Vec<Entry>,
    /// Writes handed over but not yet synced.
    pub unsynced: Vec<Write>,
}

impl Disk {
    pub fn sync(&mut self) -> Option<WriteId> {
        let mut last = None;
        for (id, hard_state, truncate_after, entries) in self.unsynced.drain(..) {
            if let Some(after) = truncate_after {
                self.entries.retain(|entry| entry.index <= after);
            }
            for entry in entries {
                assert_eq!(
                    entry.index,
                    self.entries.len() as u64 + 1,
                    "disk append must be contiguous"
                );
                self.entries.push(entry);
            }
            if let Some(hard_state) = hard_state {
                self.hard_state = hard_state;
            }
            last = Some(id);
        }
        last
    }

    pub fn recovered(&self) -> Recovered {
        Recovered {
            hard_state: self.hard_state,
            entries: self.entries.clone(),
            ..Recovered::default()
        }
    }
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
    /// Commands applied per node, in order, with their index.
    pub applied: BTreeMap<NodeId, Vec<(Index, Bytes)>>,
    /// Every (term, leader) pair ever announced.
    pub leaders: BTreeMap<Term, BTreeSet<NodeId>>,
    /// Every action every node emitted, in order (for assertions).
    pub trace: Vec<(NodeId, Action)>,
    pub record_trace: bool,
}

pub fn config(id: NodeId, voters: &[NodeId]) -> Config {
    let mut config = Config::new(id, voters.iter().copied());
    config.seed = 1000 + id;
    config
}

impl Cluster {
    pub fn new(voters: &[NodeId]) -> Self {
        Self::with_configs(voters.iter().map(|id| config(*id, voters)).collect())
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
            leaders: BTreeMap::new(),
            trace: Vec::new(),
            record_trace: false,
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
        }
        cluster
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
                        disk.unsynced
                            .push((write, hard_state, truncate_after, entries));
                        if self.auto_sync.contains(&id) {
                            let synced = disk.sync().expect("just written");
                            inputs.push_back(Input::Persisted(synced));
                        }
                    }
                    Action::Apply { entries } => {
                        let last = entries.last().expect("non-empty apply").index;
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
        if let Some(synced) = self.disks.get_mut(&id).expect("disk").sync() {
            self.step(id, Input::Persisted(synced));
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
    /// answer messages). Panics if it does not within a bound.
    pub fn elect(&mut self, id: NodeId) {
        for _ in 0..200 {
            self.tick(id);
            self.deliver_all();
            if self.node(id).role() == Role::Leader {
                self.deliver_all();
                return;
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
        self.disks.get_mut(&id).expect("disk").unsynced.clear();
        self.network.retain(|message| message.to != id);
    }

    /// Restarts a crashed node from its synced disk. Its state machine
    /// starts empty and is rebuilt from the log.
    pub fn restart(&mut self, id: NodeId) {
        let recovered = self.disks[&id].recovered();
        let node =
            Node::new(self.configs[&id].clone(), recovered).expect("recovered state is valid");
        self.nodes.insert(id, node);
        self.applied.insert(id, Vec::new());
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
