//! Creating and removing groups on a running node, and changing the set
//! of peers. Which groups a node hosts is the host's decision (see
//! [`Catalog`](super::Catalog) for one that every node takes from a
//! replicated metadata group); the layer enforces that a node hosts only
//! groups it is a member of and that every member is a known peer.

use crate::config::Config;
use crate::node::Node;
use crate::recovered::Recovered;
use crate::types::NodeId;

use super::frame::GroupId;
use super::multi_node::{Group, MultiError, MultiNode, Seen};
use super::wake::SleepKind;

impl MultiNode {
    /// Hosts `group` here: a new group (with `Recovered::default()`) or one
    /// recovered from this node's disk after a restart. `config.id` must
    /// be this node, which must be a member (voter, learner or witness) of
    /// the group's configuration; every member must be a peer.
    ///
    /// The group starts asleep and queued to elect: it wakes at its turn
    /// in the election queue (bounded like every wake after a node loss),
    /// or at once when a message for it arrives (its leader's heartbeat,
    /// say, after a restart of this node).
    pub fn create_group(
        &mut self,
        group: GroupId,
        config: Config,
        recovered: Recovered,
    ) -> Result<(), MultiError> {
        if self.groups.contains_key(&group) {
            return Err(MultiError::GroupExists { group });
        }
        if self.groups.len() >= self.config.groups_max {
            return Err(MultiError::TooManyGroups {
                max: self.config.groups_max,
            });
        }
        if config.id != self.config.id {
            return Err(MultiError::WrongNode {
                group,
                expected: self.config.id,
                found: config.id,
            });
        }
        let members = config
            .voters
            .iter()
            .chain(&config.learners)
            .chain(&config.witnesses);
        let recovered_members = recovered
            .membership
            .iter()
            .flat_map(|membership| membership.members());
        for node in members.copied().chain(recovered_members) {
            if node != self.config.id && !self.liveness.is_peer(node) {
                return Err(MultiError::UnknownMember { group, node });
            }
        }
        #[cfg_attr(not(feature = "planted-bugs"), allow(unused_mut))]
        let mut node = Node::new(config, recovered)
            .map_err(|error| MultiError::GroupConfig { group, error })?;
        #[cfg(feature = "planted-bugs")]
        node.plant_bugs(self.planted_core);
        self.burst_group_ticks_max = self
            .burst_group_ticks_max
            .max(super::multi_node::burst_ticks_max_any_role(node.config()));
        let generation = self.next_generation;
        self.next_generation += 1;
        self.groups.insert(
            group,
            Group {
                seen: Seen::of(&node),
                node,
                generation,
                sleep: None,
                idle_ticks: 0,
                round: None,
                asked: None,
                electing_since: None,
                queued: false,
            },
        );
        self.awake.insert(group);
        self.sleep(group, SleepKind::Waiting);
        Ok(())
    }

    /// Stops hosting `group` and hands back its node (for the host to
    /// read its final state before it deletes the group's storage).
    /// Durability reports still in flight for it are dropped; messages for
    /// it that arrive later are counted in
    /// [`MultiStats::items_unknown_group`](super::MultiStats::items_unknown_group).
    pub fn remove_group(&mut self, group: GroupId) -> Result<Node, MultiError> {
        let Some(state) = self.groups.remove(&group) else {
            return Err(MultiError::UnknownGroup { group });
        };
        self.awake.remove(&group);
        self.electing.remove(&group);
        self.answers_owed.remove(&group);
        if let Some(sleep) = &state.sleep {
            self.unindex(group, sleep);
        }
        // Queue entries of the group are skipped when reached.
        Ok(state.node)
    }

    /// Adds `peer` to the nodes whose liveness this node watches (before a
    /// group naming it is created). Returns false if it is one already.
    pub fn add_peer(&mut self, peer: NodeId) -> bool {
        if peer == 0 || peer == self.config.id {
            return false;
        }
        self.config.peers.insert(peer);
        self.liveness.add(peer, self.now_ticks)
    }

    /// Stops watching `peer` (once no hosted group names it). Returns
    /// false if it was not a peer.
    pub fn remove_peer(&mut self, peer: NodeId) -> bool {
        self.config.peers.remove(&peer);
        // Followers asleep under it have no one to wake them: queue them.
        self.peer_changed(peer, super::liveness::PeerChange::Died);
        self.outbox.forget_peer(peer);
        self.liveness.remove(peer)
    }
}
