//! The scope of an exploration: how many nodes, how high terms go, how
//! many client proposals, reads, crashes, duplicates, timer firings, how
//! many messages the network holds, and which faults and features are in.
//! Every bound is explicit: the explorer visits every state the scope
//! allows, so the scope is what a clean result speaks for.

use serde::{Deserialize, Serialize};

use crate::config::CoreBugs;

/// Most nodes: symmetry reduction tries every order of nodes that look
/// alike, and a cluster's state grows with each node.
pub const NODES_MAX: usize = 5;

/// Highest term bound accepted: each term is at least one election, and
/// the explored depth grows with each.
pub const TERM_MAX: u64 = 8;

/// Most messages the network may hold at once.
pub const NETWORK_MESSAGES_MAX: usize = 16;

/// Most steps of one path (the depth bound when none is given is this).
pub const DEPTH_MAX: u32 = 200;

/// What the explorer is allowed to do. Every field is a bound on the
/// search; the defaults are a small scope (3 nodes, terms up
/// to 3, up to 2 proposals, loss, duplication, reordering, one crash).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// Nodes of the cluster, all voters, ids `1..=nodes`.
    pub nodes: usize,
    /// States where some node's term exceeds this are checked but not
    /// explored further.
    pub max_term: u64,
    /// Client proposals over a whole run, each proposed at a leader.
    pub proposals: u32,
    /// Crash-and-restarts over a whole run. A crash loses every write not
    /// yet synced; the node is rebuilt by `Node::new` from exactly what
    /// was durable.
    pub crashes: u32,
    /// Timer firings over a whole run (each "advance this node's clock
    /// until its timer fires"). 0: no bound but `depth`.
    pub timeouts: u32,
    /// Timer firings of each node over a whole run. 0: no bound of its
    /// own. A bound per node, unlike `timeouts`, never lets one node's
    /// firings use up another's, so firings of different nodes stay
    /// independent of each other.
    #[serde(default)]
    pub timeouts_per_node: u32,
    /// How messages are lost.
    pub loss: Loss,
    /// Messages that may be delivered twice (a copy delivered, the
    /// original kept), over a whole run. 0 turns duplication off.
    pub duplicates: u32,
    /// Most messages in flight at once. A send into a full network is
    /// lost (with `loss` on) or leaves the scope (the state is not
    /// explored further; with `loss` off or implicit). The command line's
    /// default grows with `nodes` ([`Scope::network_max_default`]).
    pub network_max: usize,
    /// Every write is made durable and reported (`Input::Persisted`) as
    /// soon as the node asks for it, within the step: no `Sync` steps,
    /// and a crash loses nothing. For scopes about the protocol rather
    /// than durability: a host that syncs at once is a real host, and
    /// the durability checks still run, but the schedules in which a
    /// write waits are not explored.
    #[serde(default)]
    pub sync_at_once: bool,
    /// A message whose term is below its receiver's durable term is lost
    /// at once, not kept to be delivered later (a network that loses what
    /// it holds across a term change). Such a message is only ever
    /// refused; a request's refusal tells its sender the newer term, so
    /// the schedules in which a sender learns a term that way are not
    /// explored. Needs loss. (Messages whose delivery could not change
    /// anything are taken out in every scope, this one or not.)
    #[serde(default)]
    pub stale_lost: bool,
    /// Linearizable reads over a whole run: ReadIndex at a leader, a
    /// follower read at a follower that knows its leader.
    pub reads: u32,
    /// One membership change (a leader asked to remove any one voter,
    /// itself included), through a joint configuration.
    pub membership: bool,
    /// One snapshot: a node asked to snapshot what it applied, after which
    /// it compacts its whole log, so a follower behind it is caught up by
    /// a snapshot transfer.
    pub snapshot: bool,
    /// Bytes per snapshot chunk (so a snapshot of two commands takes one
    /// chunk at 16, two at 8).
    pub snapshot_chunk_bytes: u64,
    /// PreVote on every node (the core's default).
    pub pre_vote: bool,
    /// CheckQuorum on every node (the core's default): a leader that did
    /// not hear from a majority within an election timeout steps down,
    /// and a node that heard from a leader within one refuses votes.
    #[serde(default = "on")]
    pub check_quorum: bool,
    /// Most entries per AppendEntries (the core's
    /// `Config::append_entries_max`). At 1 a leader that backs up to a
    /// follower sends an earlier term's entry without its own term's
    /// entries after it, as Raft's Figure 8 needs.
    #[serde(default = "append_entries_max_default")]
    pub append_entries_max: u32,
    /// Most steps of one path; the search stops there even if states
    /// remain (then the result says so).
    pub depth: u32,
    /// Count states that differ only by node names once (symmetry
    /// reduction; at most 4 nodes).
    pub symmetry: bool,
    /// Judge every step of every node by the step rules
    /// (`crate::observe`; a broken rule is a `step-rule` violation).
    /// Off to see which outcome property a mistake reaches.
    #[serde(default = "on")]
    pub step_rules: bool,
    /// Planted core mistakes (the core's `planted-bugs` feature).
    #[serde(default)]
    pub bugs: ScopeBugs,
}

impl Default for Scope {
    fn default() -> Self {
        Scope {
            nodes: 3,
            max_term: 3,
            proposals: 2,
            crashes: 1,
            timeouts: 0,
            timeouts_per_node: 0,
            loss: Loss::On,
            duplicates: 1,
            network_max: Scope::network_max_default(3),
            sync_at_once: false,
            stale_lost: false,
            reads: 0,
            membership: false,
            snapshot: false,
            snapshot_chunk_bytes: 16,
            pre_vote: true,
            check_quorum: true,
            append_entries_max: append_entries_max_default(),
            depth: DEPTH_MAX,
            symmetry: true,
            step_rules: true,
            bugs: ScopeBugs::default(),
        }
    }
}

fn on() -> bool {
    true
}

/// The core's default of `Config::append_entries_max`.
fn append_entries_max_default() -> u32 {
    1024
}

/// How the network loses messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Loss {
    /// No message is lost; a send into a full network leaves the scope.
    Off,
    /// A step may lose any message in flight; a send into a full network
    /// is lost.
    On,
    /// A message is lost by never being delivered: no step loses one.
    /// Nothing a node does depends on a message it never receives, so
    /// every state a node, its host and the checks reach with `On` is
    /// reached here too, by the same path without its loss steps, as long
    /// as the messages sent and not yet delivered (lost ones included)
    /// never exceed `network_max`; a send past that leaves the scope.
    /// What is saved is every state that differs from another only by
    /// which undelivered messages were dropped, and every loss step.
    Implicit,
}

impl Loss {
    /// The flag's value.
    pub fn name(self) -> &'static str {
        match self {
            Loss::Off => "off",
            Loss::On => "on",
            Loss::Implicit => "implicit",
        }
    }
}

/// The planted core mistakes an exploration can turn on (see the core's
/// `src/planted.rs`): the safety mistakes, which the explorer's checks
/// must find.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeBugs {
    /// Raft's Figure 8: a leader commits an earlier term's entry by
    /// counting replicas.
    #[serde(default)]
    pub figure_8_commit: bool,
    /// A vote grant is sent before the vote is durable.
    #[serde(default)]
    pub vote_before_durable: bool,
    /// A leader serves ReadIndex reads without a heartbeat round.
    #[serde(default)]
    pub read_index_without_round: bool,
    /// A follower commits on a commit notice without checking its log.
    #[serde(default)]
    pub commit_notice_unchecked: bool,
}

impl ScopeBugs {
    /// Whether any mistake is planted.
    pub fn any(&self) -> bool {
        self.figure_8_commit
            || self.vote_before_durable
            || self.read_index_without_round
            || self.commit_notice_unchecked
    }

    /// The simulator's form of these mistakes.
    pub fn core_bugs(&self) -> CoreBugs {
        CoreBugs {
            figure_8_commit: self.figure_8_commit,
            vote_before_durable: self.vote_before_durable,
            read_index_without_round: self.read_index_without_round,
            commit_notice_unchecked: self.commit_notice_unchecked,
            ..CoreBugs::default()
        }
    }

    /// The mistakes of the table (`crate::bugs`) an exploration can
    /// plant.
    pub const NAMES: [&'static str; 4] = [
        "figure-8-commit",
        "vote-before-durable",
        "read-index-without-round",
        "commit-notice-unchecked",
    ];

    /// Plants the mistake `name` of the table, if an exploration can.
    pub fn plant(&mut self, name: &str) -> Result<(), String> {
        let mistake = crate::bugs::find(name)?;
        if !Self::NAMES.contains(&mistake.name) {
            return Err(format!(
                "explore plants only {}, not {name}",
                Self::NAMES.join(", ")
            ));
        }
        let mut switches = crate::bugs::Switches {
            core: self.core_bugs(),
            ..crate::bugs::Switches::default()
        };
        mistake.set(&mut switches, true);
        let core = switches.core;
        *self = ScopeBugs {
            figure_8_commit: core.figure_8_commit,
            vote_before_durable: core.vote_before_durable,
            read_index_without_round: core.read_index_without_round,
            commit_notice_unchecked: core.commit_notice_unchecked,
        };
        Ok(())
    }

    /// The command-line flags that plant these mistakes.
    pub fn flags(&self) -> Vec<String> {
        crate::bugs::Switches {
            core: self.core_bugs(),
            ..crate::bugs::Switches::default()
        }
        .flags()
    }
}

impl Scope {
    /// The network bound when none is given, for `nodes` nodes: nodes + 1
    /// (4 for 3 nodes, 6 for 5).
    ///
    /// Why: with loss off or implicit a send into a full network leaves
    /// the scope, so the network must hold one election. A pre-candidate
    /// sends nodes − 1 pre-vote requests and turns candidate on a majority
    /// of answers, when nodes − 1 − ⌊nodes / 2⌋ of those requests or
    /// answers may still be in flight; its nodes − 1 vote requests come on
    /// top: 2 (nodes − 1) − ⌊nodes / 2⌋ messages, 3 for 3 nodes, 6 for 5
    /// ([`election_messages_max`](Scope::election_messages_max)). Measured
    /// on the CI scope with 5 nodes: 4 and 5 never elect (361 states),
    /// 6 does. Once a leader is in, the vote answers it no longer needs
    /// are inert and dropped, so its first appends fit as well. nodes + 1
    /// is that bound for 5 nodes and above it for fewer, so that the
    /// 3-node default stays 4, the bound every 3-node figure was measured
    /// with.
    pub const fn network_max_default(nodes: usize) -> usize {
        let room = nodes + 1;
        if room > NETWORK_MESSAGES_MAX {
            NETWORK_MESSAGES_MAX
        } else {
            room
        }
    }

    /// Messages in flight at the worst moment of one PreVote election of
    /// `nodes` nodes in which none is lost (see
    /// [`network_max_default`](Scope::network_max_default)).
    pub const fn election_messages_max(nodes: usize) -> usize {
        let others = nodes.saturating_sub(1);
        others + others - nodes / 2
    }

    /// Checks every bound, naming the flag to change.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=NODES_MAX).contains(&self.nodes) {
            return Err(format!(
                "--nodes {} is out of range: explore 1 to {NODES_MAX} nodes",
                self.nodes
            ));
        }
        if self.symmetry && self.nodes > 4 {
            return Err(format!(
                "symmetry reduction tries every order of {} nodes; use at most 4 nodes or --symmetry off",
                self.nodes
            ));
        }
        if !(1..=TERM_MAX).contains(&self.max_term) {
            return Err(format!(
                "--max-term {} is out of range: 1 to {TERM_MAX}",
                self.max_term
            ));
        }
        if !(1..=NETWORK_MESSAGES_MAX).contains(&self.network_max) {
            return Err(format!(
                "--network-max {} is out of range: 1 to {NETWORK_MESSAGES_MAX} messages",
                self.network_max
            ));
        }
        if !(1..=DEPTH_MAX).contains(&self.depth) {
            return Err(format!(
                "--depth {} is out of range: 1 to {DEPTH_MAX} steps",
                self.depth
            ));
        }
        if self.proposals > 8 || self.reads > 8 || self.crashes > 8 || self.duplicates > 8 {
            return Err(
                "--proposals, --reads, --crashes and --duplicates are at most 8 each".to_string(),
            );
        }
        if self.timeouts > 64 || self.timeouts_per_node > 64 {
            return Err(
                "--timeouts and --timeouts-per-node are at most 64 (0: no bound of their own)"
                    .to_string(),
            );
        }
        if !(1..=1024).contains(&self.append_entries_max) {
            return Err("--append-entries-max must be 1 to 1024".to_string());
        }
        if self.snapshot_chunk_bytes == 0 || self.snapshot_chunk_bytes > 1 << 20 {
            return Err("--snapshot-chunk-bytes must be 1 to 1048576".to_string());
        }
        if self.stale_lost && self.loss == Loss::Off {
            return Err("--stale-lost loses messages: it needs --loss on or implicit".to_string());
        }
        if self.membership && self.nodes < 2 {
            return Err("--membership needs at least 2 nodes (a voter to remove)".to_string());
        }
        if self.bugs.any() && !cfg!(feature = "planted-bugs") {
            return Err(
                "planted core mistakes need concord-sim's `planted-bugs` feature".to_string(),
            );
        }
        Ok(())
    }

    /// The flags that give this scope on the command line (only those
    /// that differ from the defaults).
    pub fn flags(&self) -> String {
        let default = Scope::default();
        let mut flags: Vec<String> = Vec::new();
        let on_off = |value: bool| if value { "on" } else { "off" };
        if self.nodes != default.nodes {
            flags.push(format!("--nodes {}", self.nodes));
        }
        if self.max_term != default.max_term {
            flags.push(format!("--max-term {}", self.max_term));
        }
        if self.proposals != default.proposals {
            flags.push(format!("--proposals {}", self.proposals));
        }
        if self.crashes != default.crashes {
            flags.push(format!("--crashes {}", self.crashes));
        }
        if self.timeouts != default.timeouts {
            flags.push(format!("--timeouts {}", self.timeouts));
        }
        if self.timeouts_per_node != default.timeouts_per_node {
            flags.push(format!("--timeouts-per-node {}", self.timeouts_per_node));
        }
        if self.loss != default.loss {
            flags.push(format!("--loss {}", self.loss.name()));
        }
        if self.duplicates != default.duplicates {
            flags.push(format!("--duplicates {}", self.duplicates));
        }
        if self.network_max != Scope::network_max_default(self.nodes) {
            flags.push(format!("--network-max {}", self.network_max));
        }
        if self.sync_at_once != default.sync_at_once {
            flags.push(format!("--sync-at-once {}", on_off(self.sync_at_once)));
        }
        if self.stale_lost != default.stale_lost {
            flags.push(format!("--stale-lost {}", on_off(self.stale_lost)));
        }
        if self.reads != default.reads {
            flags.push(format!("--reads {}", self.reads));
        }
        if self.membership != default.membership {
            flags.push(format!("--membership {}", on_off(self.membership)));
        }
        if self.snapshot != default.snapshot {
            flags.push(format!("--snapshot {}", on_off(self.snapshot)));
        }
        if self.snapshot_chunk_bytes != default.snapshot_chunk_bytes {
            flags.push(format!(
                "--snapshot-chunk-bytes {}",
                self.snapshot_chunk_bytes
            ));
        }
        if self.pre_vote != default.pre_vote {
            flags.push(format!("--pre-vote {}", on_off(self.pre_vote)));
        }
        if self.check_quorum != default.check_quorum {
            flags.push(format!("--check-quorum {}", on_off(self.check_quorum)));
        }
        if self.append_entries_max != default.append_entries_max {
            flags.push(format!("--append-entries-max {}", self.append_entries_max));
        }
        if self.depth != default.depth {
            flags.push(format!("--depth {}", self.depth));
        }
        if self.symmetry != default.symmetry {
            flags.push(format!("--symmetry {}", on_off(self.symmetry)));
        }
        if self.step_rules != default.step_rules {
            flags.push(format!("--step-rules {}", on_off(self.step_rules)));
        }
        flags.extend(self.bugs.flags());
        flags.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_network_holds_one_election_for_every_cluster_size() {
        for nodes in 1..=NODES_MAX {
            let default = Scope::network_max_default(nodes);
            assert!(
                default >= Scope::election_messages_max(nodes),
                "{nodes} nodes: {default} < {}",
                Scope::election_messages_max(nodes)
            );
            assert!((1..=NETWORK_MESSAGES_MAX).contains(&default));
        }
        assert_eq!(Scope::network_max_default(3), 4);
        assert_eq!(Scope::network_max_default(5), 6);
        assert_eq!(Scope::election_messages_max(5), 6);
    }

    #[test]
    fn flags_name_the_network_only_when_it_differs_from_the_nodes_default() {
        let five = Scope {
            nodes: 5,
            symmetry: false,
            network_max: Scope::network_max_default(5),
            ..Scope::default()
        };
        assert_eq!(five.flags(), "--nodes 5 --symmetry off");
        let small = Scope {
            network_max: 4,
            ..five
        };
        assert_eq!(small.flags(), "--nodes 5 --network-max 4 --symmetry off");
    }
}
