//! Node-level liveness: whether each peer node is up, judged from the
//! frames it sends (at least one per `liveness_interval_ticks`, whether or
//! not any of its groups speaks). It is what notices that the leader of
//! groups that sleep — and so send nothing — has died, and what wakes the
//! groups a returning peer must catch up in.

use std::collections::BTreeMap;

use crate::types::NodeId;

/// What the layer learns about a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PeerChange {
    /// Not heard from for `liveness_timeout_ticks`.
    Died,
    /// Heard from again after it was taken for dead.
    Returned,
    /// Its frames carry a new incarnation: it restarted (perhaps too
    /// quickly to be taken for dead) and forgot what it held in memory.
    Restarted,
}

#[derive(Clone, Copy, Debug)]
struct Peer {
    last_heard_tick: u64,
    incarnation: Option<u64>,
    alive: bool,
}

/// The liveness of every configured peer.
#[derive(Debug, Default)]
pub(crate) struct Liveness {
    peers: BTreeMap<NodeId, Peer>,
}

impl Liveness {
    /// Peers start alive, as if just heard from: a node that starts does
    /// not take its peers for dead before a timeout has passed.
    pub(crate) fn new(peers: impl IntoIterator<Item = NodeId>, now_tick: u64) -> Self {
        Liveness {
            peers: peers
                .into_iter()
                .map(|id| {
                    let peer = Peer {
                        last_heard_tick: now_tick,
                        incarnation: None,
                        alive: true,
                    };
                    (id, peer)
                })
                .collect(),
        }
    }

    pub(crate) fn add(&mut self, id: NodeId, now_tick: u64) -> bool {
        if self.peers.contains_key(&id) {
            return false;
        }
        let peer = Peer {
            last_heard_tick: now_tick,
            incarnation: None,
            alive: true,
        };
        self.peers.insert(id, peer);
        true
    }

    pub(crate) fn remove(&mut self, id: NodeId) -> bool {
        self.peers.remove(&id).is_some()
    }

    pub(crate) fn is_peer(&self, id: NodeId) -> bool {
        self.peers.contains_key(&id)
    }

    /// Whether `id` is taken for alive. A node that is not a configured
    /// peer is never taken for dead (nothing watches it).
    pub(crate) fn is_alive(&self, id: NodeId) -> bool {
        self.peers.get(&id).is_none_or(|peer| peer.alive)
    }

    /// The tick `id` was last heard from (or added, or the layer started).
    pub(crate) fn last_heard_tick(&self, id: NodeId) -> Option<u64> {
        self.peers.get(&id).map(|peer| peer.last_heard_tick)
    }

    pub(crate) fn ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.peers.keys().copied()
    }

    /// A frame from `id` carrying `incarnation` arrived.
    ///
    /// `old_restarts` is the planted mistake that takes a smaller
    /// incarnation for a restart too.
    pub(crate) fn heard(
        &mut self,
        id: NodeId,
        incarnation: u64,
        now_tick: u64,
        old_restarts: bool,
    ) -> Option<PeerChange> {
        let peer = self.peers.get_mut(&id)?;
        if !old_restarts && peer.incarnation.is_some_and(|known| incarnation < known) {
            // A frame the peer sent before its last restart, delayed: it
            // says nothing of the peer now. Taken for a restart, it would
            // orphan every group the peer leads here (they would elect
            // against a live leader), and the next current frame would
            // orphan them again.
            return None;
        }
        peer.last_heard_tick = now_tick;
        let restarted = peer.incarnation.is_some_and(|known| known != incarnation);
        peer.incarnation = Some(incarnation);
        let returned = !peer.alive;
        peer.alive = true;
        if restarted {
            Some(PeerChange::Restarted)
        } else if returned {
            Some(PeerChange::Returned)
        } else {
            None
        }
    }

    /// Time passed: the peers silent for `timeout_ticks` die, in id order
    /// — but only while some other peer was heard from at least
    /// `timeout_ticks` after them. Silence is judged against the others:
    /// a host that stalled (a long pause of its loop, a stopped process,
    /// an overloaded machine) is handed the ticks it missed in one burst
    /// before the frames that waited for it, and would otherwise take
    /// every peer for dead at once and queue every group they lead to
    /// elect; that work stalls the loop again, and the next burst repeats
    /// it. When every peer is silent alike the node
    /// cannot tell its own stall from their deaths, and loses nothing by
    /// waiting: without any peer it has no quorum to elect with. A peer
    /// that did die is taken for dead at the first tick after another
    /// peer's frame arrives `timeout_ticks` past its last one.
    ///
    /// `silence_alone` is the planted mistake that judges each peer's
    /// silence on its own (the second condition skipped).
    pub(crate) fn tick(
        &mut self,
        now_tick: u64,
        timeout_ticks: u32,
        silence_alone: bool,
        mut died: impl FnMut(NodeId),
    ) {
        let timeout_ticks = u64::from(timeout_ticks);
        let heard_latest_tick = self
            .peers
            .values()
            .map(|peer| peer.last_heard_tick)
            .max()
            .unwrap_or(0);
        for (id, peer) in &mut self.peers {
            if peer.alive
                && now_tick.saturating_sub(peer.last_heard_tick) >= timeout_ticks
                && (silence_alone
                    || heard_latest_tick.saturating_sub(peer.last_heard_tick) >= timeout_ticks)
            {
                peer.alive = false;
                died(*id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_from_an_earlier_incarnation_is_no_restart() {
        let mut liveness = Liveness::default();
        assert!(liveness.add(2, 0));
        assert_eq!(liveness.heard(2, 5, 1, false), None);
        assert_eq!(liveness.heard(2, 6, 2, false), Some(PeerChange::Restarted));
        // Delayed from before the restart: no change, and the peer's
        // current incarnation is still known.
        assert_eq!(liveness.heard(2, 5, 3, false), None);
        assert_eq!(liveness.last_heard_tick(2), Some(2));
        assert_eq!(liveness.heard(2, 6, 4, false), None);
        assert_eq!(liveness.heard(2, 7, 5, false), Some(PeerChange::Restarted));
    }

    #[test]
    fn the_planted_mistake_takes_an_earlier_incarnation_for_a_restart() {
        let mut liveness = Liveness::default();
        assert!(liveness.add(2, 0));
        assert_eq!(liveness.heard(2, 5, 1, true), None);
        assert_eq!(liveness.heard(2, 6, 2, true), Some(PeerChange::Restarted));
        assert_eq!(liveness.heard(2, 5, 3, true), Some(PeerChange::Restarted));
        assert_eq!(liveness.heard(2, 6, 4, true), Some(PeerChange::Restarted));
    }
}
