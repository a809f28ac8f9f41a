//! Fault injection: applying the plan's timed faults (crashes, restarts,
//! pauses, partitions, network heals, leader-targeted crashes and
//! isolations), arming the protocol-aware nemeses of `crate::nemesis`
//! (leader churn, a crash between a vote and its fsync, ...) and carrying
//! out their strikes, and healing everything when the chaos phase ends.
//! Message-level faults (loss, delay, duplication) are drawn in `network`,
//! disk faults (slow fsyncs, torn writes at a crash) in `host` and
//! `crate::disk`.

use concord::state_machine::StateMachine;
use concord::{
    AppendResponse, Entry, EntryPayload, Input, LogPosition, Message, MessageBody, Node, NodeId,
    ProgressState, Role, Term,
};

use super::{accounting, format_time, Event, FailureKind, NetOdds, Simulation};
use crate::faults::{Fault, ForgedSender, MalformedMessage, Partition, Rates, FORGED_OUTSIDE_ID};
use crate::nemesis::{self, Depose, Strike};
use crate::workload::Workload;

impl<S: StateMachine, W: Workload> Simulation<S, W> {
    pub(super) fn apply_fault(&mut self, fault: Fault) {
        if let Some(kind) = fault.kind() {
            self.faults.add(kind, 1);
        }
        self.trace.word(0xfa17);
        if self.nemesis.arm(&fault) {
            self.note(None, || format!("nemesis armed: {fault}"));
            if let Fault::SplitVote { down_ns } = fault {
                // An election follows the leader's crash; its first
                // campaign gets the rival.
                if let Some(index) = self.current_leader() {
                    self.note(Some(index), || "split vote: the leader crashes".to_string());
                    self.crash(index);
                    self.schedule(down_ns, Event::DelayedRestart { node: index as u8 });
                }
            }
            if matches!(fault, Fault::LeaderChurn { .. }) {
                if let Some(index) = self.current_leader() {
                    if let (Some(delay), Some(node)) =
                        (self.nemesis.on_leader(), self.hosts[index].node.as_ref())
                    {
                        let term = node.term();
                        self.schedule_depose(index, term, delay);
                    }
                }
            }
            return;
        }
        match fault {
            Fault::Crash { node } => self.crash(node as usize - 1),
            Fault::Restart { node } => self.restart(node as usize - 1),
            Fault::Pause { node } => {
                let index = node as usize - 1;
                if self.hosts[index].node.is_some() && !self.hosts[index].paused {
                    self.hosts[index].paused = true;
                    self.hosts[index].pauses += 1;
                    self.note(Some(index), || "paused".to_string());
                }
            }
            Fault::Resume { node } => self.resume(node as usize - 1),
            Fault::Partition(partition) => {
                self.blocked = partition.blocked_matrix(self.hosts.len());
                self.note(None, || format!("network: {partition}"));
                self.network_changed();
            }
            Fault::CrashLeader { down_ns } => {
                if let Some(index) = self.current_leader() {
                    self.note(Some(index), || "targeted: the leader crashes".to_string());
                    self.crash(index);
                    self.schedule(down_ns, Event::DelayedRestart { node: index as u8 });
                }
            }
            Fault::IsolateLeader { length_ns } => {
                if let Some(index) = self.current_leader() {
                    let partition = Partition::Split {
                        side: vec![index as NodeId + 1],
                    };
                    self.blocked = partition.blocked_matrix(self.hosts.len());
                    self.note(None, || format!("network: leader isolated, {partition}"));
                    self.slow_clock_beyond_bound(index);
                    self.schedule(length_ns, Event::DelayedHealNetwork);
                    self.network_changed();
                }
            }
            Fault::IsolateLeaderWithMinority { length_ns } => {
                if let Some(index) = self.current_leader() {
                    let nodes = self.hosts.len();
                    let side: Vec<NodeId> = (0..nodes.saturating_sub(1) / 2)
                        .map(|k| ((index + k) % nodes) as NodeId + 1)
                        .collect();
                    let partition = Partition::Split { side };
                    self.blocked = partition.blocked_matrix(nodes);
                    self.note(None, || {
                        format!("network: leader cut off with a minority, {partition}")
                    });
                    self.slow_clock_beyond_bound(index);
                    self.schedule(length_ns, Event::DelayedHealNetwork);
                    self.network_changed();
                }
            }
            Fault::Forge {
                sender,
                terms_ahead,
            } => self.forge(sender, terms_ahead),
            Fault::Malformed { message, pick } => self.hand_malformed(message, pick),
            Fault::Lease {
                scenario,
                length_ns,
            } => self.lease_fault(scenario, length_ns),
            Fault::SnapshotConflict {
                feed_ns,
                late_chunks,
                late_ns,
                depose,
            } => self.conflict_fault(feed_ns, late_chunks, late_ns, depose),
            Fault::DiskLoss { scenario, down_ns } => self.disk_loss_fault(scenario, down_ns),
            Fault::CrashLeaderAfterAppend { .. }
            | Fault::LeaderChurn { .. }
            | Fault::CrashVoter { .. }
            | Fault::SplitVote { .. } => unreachable!("armed above"),
            Fault::HealNetwork => {
                self.restore_clock();
                self.blocked = [0; 8];
                self.note(None, || "network healed".to_string());
                self.network_changed();
            }
        }
    }

    /// The forged-sender fault: hands the leader a heartbeat claiming to
    /// come from `sender`, `terms_ahead` terms ahead of its own, and checks
    /// from outside that the leader refused it without a trace: same term,
    /// vote and role, nothing to send or do. Itself and id 0 name no peer;
    /// a node outside every configuration may move a node's term only
    /// while that node follows no live leader (it may lead a configuration
    /// not yet known here), and a leader that votes in its own
    /// configuration always holds its leader lease.
    fn forge(&mut self, sender: ForgedSender, terms_ahead: u64) {
        let Some(index) = self.current_leader() else {
            return;
        };
        if self.hosts[index].paused {
            return;
        }
        let nodes = self.hosts.len() as NodeId;
        let Some(node) = self.hosts[index].node.as_mut() else {
            return;
        };
        let me = node.id();
        if !node.membership().is_voter(me) {
            // A leader stepping out of its configuration hears strangers.
            return;
        }
        let mut from = match sender {
            ForgedSender::Itself => me,
            ForgedSender::Zero => 0,
            ForgedSender::Outside => FORGED_OUTSIDE_ID,
        };
        if self.config.bugs.forged_sender_relabelled {
            // The bug: the transport names a member instead.
            if let Some(member) =
                (1..=nodes).find(|id| *id != me && node.membership().is_voter(*id))
            {
                from = member;
            }
        }
        let before = (node.term(), node.voted_for(), node.role());
        let stats_before = *node.stats();
        let message = Message {
            from,
            to: me,
            term: before.0 + terms_ahead,
            progress_id: 0,
            body: MessageBody::Heartbeat {
                commit: 0,
                read_round: 0,
            },
        };
        let mut actions = Vec::new();
        node.step(Input::Receive(message), &mut actions);
        let after = (node.term(), node.voted_for(), node.role());
        let miscount = accounting::counted_only_in(
            &stats_before,
            node.stats(),
            Some("messages_from_unknown_node"),
        );
        self.node_steps += 1;
        self.trace.word(0xf049);
        self.trace.word(from);
        self.note(Some(index), || {
            format!("forged: a heartbeat from {sender}, {terms_ahead} terms ahead")
        });
        if before != after || !actions.is_empty() {
            let message = format!(
                "leader n{me} of term {} took a heartbeat forged from {sender} (id {from}) for term {}: (term, vote, role) went from {before:?} to {after:?} and it emitted {} action(s) {:?}; a node must refuse messages claiming to come from itself, from id 0, or (while it leads) from a node outside its configuration (Node::receive, accepts_sender)",
                before.0,
                before.0 + terms_ahead,
                actions.len(),
                actions.iter().take(3).collect::<Vec<_>>(),
            );
            self.fail(FailureKind::ForgedSender, Some(index), message);
            return;
        }
        // Refused at the door and counted there, once: a message from
        // itself, id 0 or a stranger is a message from an unknown node.
        if !self.config.bugs.forged_sender_relabelled {
            if let Some((name, was, is, delta)) = miscount {
                let message = format!(
                    "leader n{me} refused a heartbeat forged from {sender} (id {from}), but Statistics::{name} went from {was} to {is}; it must move by exactly {delta} (only messages_from_unknown_node counts it)"
                );
                self.fail(FailureKind::NodeReport, Some(index), message);
            }
        }
    }

    /// The malformed-message fault: hands a running node the message of
    /// `kind` (built for it from its own state; `pick` chooses among the
    /// nodes it fits) and checks from outside that the node counted it in
    /// exactly the counter the message promises, changed nothing else and
    /// did nothing but send at most one answer (`accounting`). What the
    /// node emits is dropped, as a lost answer.
    fn hand_malformed(&mut self, kind: MalformedMessage, pick: u32) {
        let mut fitting: Vec<(usize, Message)> = (0..self.hosts.len())
            .filter_map(|index| {
                self.malformed_for(index, kind)
                    .map(|message| (index, message))
            })
            .collect();
        if fitting.is_empty() {
            return;
        }
        let (index, message) = fitting.swap_remove(pick as usize % fitting.len());
        if kind.is_acknowledgement() {
            self.hand_acknowledgement(index, kind, message);
            return;
        }
        let Some(node) = self.hosts[index].node.as_mut() else {
            return;
        };
        let reported = accounting::Before::of(node);
        let mut actions = Vec::new();
        node.step(Input::Receive(message.clone()), &mut actions);
        self.node_steps += 1;
        self.trace.word(0x3a1f_0000 | kind as u64);
        self.trace.word(index as u64);
        self.note(Some(index), || format!("malformed: handed {kind}"));
        let Some(node) = self.hosts[index].node.as_ref() else {
            return;
        };
        // A refusal emits at most one answer (checked here), which is
        // dropped, as if lost: nothing the host must carry out is lost.
        if let Err(message) = accounting::check_refusal(kind, &message, &reported, node, &actions) {
            self.fail(FailureKind::NodeReport, Some(index), message);
            return;
        }
        // A committed entry contradicted by the leader leaves the node
        // serving no reads (`Action::LogDiverged`) until an operator
        // repairs it. This contradiction was forged, so the repair is a
        // restart: the node finds its log intact.
        if node.divergence().is_some() {
            self.note(Some(index), || {
                "diverged on a forged append: the operator restarts it".to_string()
            });
            self.crash(index);
            self.restart(index);
        }
    }

    /// The acknowledgement kinds of the malformed fault: not refusals, so
    /// the leader takes them like any message, through the host's whole
    /// step (its checks, its actions carried out: a commit it leads to is
    /// applied, what it sends is sent), and its handling of the follower's
    /// progress is judged from outside before and after
    /// (`accounting::check_acknowledgement`). A step that ends the
    /// leader's term or its process (a nemesis strike) is not judged.
    fn hand_acknowledgement(&mut self, index: usize, kind: MalformedMessage, message: Message) {
        let host = &self.hosts[index];
        let Some(node) = host.node.as_ref() else {
            return;
        };
        let Some(before) = node.progress(message.from) else {
            return;
        };
        let incarnation = host.incarnation;
        let role_term = (node.role(), node.term());
        let stats = *node.stats();
        let handed_before = self.messages_handed;
        self.trace.word(0x3a1f_0000 | kind as u64);
        self.trace.word(index as u64);
        self.note(Some(index), || format!("malformed: handed {kind}"));
        self.step(index, Input::Receive(message.clone()), None);
        let sends = self.messages_handed - handed_before;
        let host = &self.hosts[index];
        let Some(node) = host.node.as_ref().filter(|node| {
            host.incarnation == incarnation && (node.role(), node.term()) == role_term
        }) else {
            return;
        };
        if self.failure.is_some() {
            return;
        }
        let after = node.progress(message.from);
        // Streaming may find the entry after the match compacted away
        // and start a snapshot transfer at once: its counters move.
        let mut was = stats;
        if after.is_some_and(|after| after.state == ProgressState::Snapshot) {
            was.snapshot_transfers_started = node.stats().snapshot_transfers_started;
            was.snapshot_chunks_sent = node.stats().snapshot_chunks_sent;
        }
        let miscount = accounting::counted_only_in(&was, node.stats(), None);
        if let Err((failure, message)) =
            accounting::check_acknowledgement(kind, &message, &before, after, miscount, sends)
        {
            self.fail(failure, Some(index), message);
        }
    }

    /// The message of `kind` for node `index`, if the node runs, is not
    /// paused and is in the state the kind needs.
    fn malformed_for(&self, index: usize, kind: MalformedMessage) -> Option<Message> {
        let host = &self.hosts[index];
        let node = host.node.as_ref().filter(|_| !host.paused)?;
        let message = malformed_message(node, kind, self.hosts.len(), host.known_ids.1)?;
        // It travels the network like any message from its sender: a
        // peer cut off from the node cannot reach it (an answer from it
        // would keep a leader that lost its quorum believing it has one).
        let from = message.from as usize;
        let cut_off =
            (1..=self.hosts.len()).contains(&from) && self.blocked[from - 1] & (1 << index) != 0;
        (!cut_off).then_some(message)
    }

    pub(super) fn judge_step(&mut self, index: usize, before: nemesis::Observed) -> Strike {
        match self.hosts[index].node.as_ref() {
            Some(node) => self.nemesis.after_step(node, before),
            None => Strike::None,
        }
    }

    /// A nemesis crashes node `index` (with `power_loss`, also every node
    /// holding unsynced writes), to restart `down_ns` later.
    pub(super) fn nemesis_crash(&mut self, index: usize, down_ns: u64, power_loss: bool) {
        let mut victims = vec![index];
        if power_loss {
            victims.extend((0..self.hosts.len()).filter(|other| {
                *other != index
                    && self.hosts[*other].node.is_some()
                    && self.hosts[*other].disk.last_written().is_some()
            }));
        }
        self.note(Some(index), || {
            format!(
                "nemesis: crash {victims:?} (node indices) for {}",
                format_time(down_ns)
            )
        });
        for victim in victims {
            self.crash(victim);
            self.schedule(down_ns, Event::DelayedRestart { node: victim as u8 });
        }
    }

    /// Leader churn: depose node `index` if it still leads `term`.
    /// Schedules the churn nemesis's deposition of node `index`, leader
    /// in `term`, `delay_ns` from now.
    pub(super) fn schedule_depose(&mut self, index: usize, term: Term, delay_ns: u64) {
        let incarnation = self.hosts[index].incarnation;
        self.schedule(
            delay_ns,
            Event::Depose {
                node: index as u8,
                incarnation,
                term,
            },
        );
    }

    pub(super) fn depose(&mut self, index: usize, incarnation: u32, term: Term) {
        let host = &self.hosts[index];
        if self.healed || host.incarnation != incarnation {
            return;
        }
        let leads = host
            .node
            .as_ref()
            .is_some_and(|node| node.role() == Role::Leader && node.term() == term);
        if !leads {
            return;
        }
        match self.nemesis.depose() {
            Some(Depose::Crash(down_ns)) => {
                self.note(Some(index), || "churn: the leader crashes".to_string());
                self.crash(index);
                self.schedule(down_ns, Event::DelayedRestart { node: index as u8 });
            }
            Some(Depose::Isolate(length_ns)) => {
                let partition = Partition::Split {
                    side: vec![index as NodeId + 1],
                };
                self.blocked = partition.blocked_matrix(self.hosts.len());
                self.note(None, || format!("churn: leader isolated, {partition}"));
                self.slow_clock_beyond_bound(index);
                self.schedule(length_ns, Event::DelayedHealNetwork);
                self.network_changed();
            }
            None => {}
        }
    }

    /// The lease fault (`lease_skew_beyond_bound`): a leader just cut off
    /// from its peers has its clock run at a tenth of its rate until the
    /// network heals, far beyond the drift bound it declared (0). Its
    /// lease then outlasts its followers' refusal to vote.
    fn slow_clock_beyond_bound(&mut self, index: usize) {
        if !self.config.lease_skew_beyond_bound || self.slowed_clock.is_some() {
            return;
        }
        let period = self.hosts[index].tick_period_ns;
        self.slowed_clock = Some((index, period));
        self.hosts[index].tick_period_ns = period * 10;
        self.faults.add(crate::faults::FaultKind::Skew, 1);
        self.note(Some(index), || {
            "clock runs at a tenth of its rate".to_string()
        });
    }

    fn restore_clock(&mut self) {
        if let Some((index, period)) = self.slowed_clock.take() {
            self.hosts[index].tick_period_ns = period;
            self.note(Some(index), || "clock back to its rate".to_string());
        }
    }

    pub(super) fn heal(&mut self) {
        self.healed = true;
        self.restore_clock();
        self.note(None, || {
            "HEAL: faults stop; liveness check starts".to_string()
        });
        self.blocked = [0; 8];
        self.nemesis.disarm();
        self.lease_heal();
        self.conflict_heal();
        self.disk_loss.heal();
        self.network_changed();
        let fsync_max_ns = 0;
        self.rates = Rates {
            fsync_max_ns,
            ..Rates::calm()
        };
        self.odds = NetOdds::new(&self.rates);
        for index in 0..self.hosts.len() {
            if self.failure.is_some() {
                return;
            }
            self.resume(index);
            self.restart(index);
        }
        self.schedule(0, Event::Probe);
    }
}

/// Builds the message of `kind` for `node` from its own state, or `None`
/// when the node is not in the state the kind needs (a leader, a follower
/// with a leader, an uncommitted tail, ...). `nodes`: the cluster's size,
/// to find a peer; `known`: the ids the node surely knows, a bit per id
/// (`Host::known_ids`).
fn malformed_message(
    node: &Node,
    kind: MalformedMessage,
    nodes: usize,
    known: u64,
) -> Option<Message> {
    let me = node.id();
    let term = node.term();
    let last = node.last_position();
    let commit = node.commit_index();
    let voter_peers =
        || (1..=nodes as NodeId).filter(move |id| *id != me && node.membership().is_voter(*id));
    let voter_peer = || voter_peers().next();
    let leader = || {
        node.leader()
            .filter(|leader| node.role() == Role::Follower && *leader != me)
    };
    let append = |prev: LogPosition, entries: Vec<Entry>| MessageBody::AppendEntries {
        prev,
        entries: entries.into(),
        leader_commit: 0,
    };
    let (from, to, term, body) = match kind {
        MalformedMessage::LeaderHearsLeader => {
            if node.role() != Role::Leader {
                return None;
            }
            let body = MessageBody::Heartbeat {
                commit: 0,
                read_round: 0,
            };
            (voter_peer()?, me, term, body)
        }
        MalformedMessage::TermBeyondMax => {
            let body = MessageBody::Heartbeat {
                commit: 0,
                read_round: 0,
            };
            (voter_peer()?, me, u64::MAX, body)
        }
        MalformedMessage::EntriesNotContiguous => {
            let entry = Entry {
                term,
                index: last.index + 2,
                payload: EntryPayload::Noop,
            };
            (leader()?, me, term, append(last, vec![entry]))
        }
        MalformedMessage::EntryTermAboveMessage => {
            let entry = Entry {
                term: term + 1,
                index: last.index + 1,
                payload: EntryPayload::Noop,
            };
            (leader()?, me, term, append(last, vec![entry]))
        }
        MalformedMessage::AcceptedBeyondLog | MalformedMessage::RejectedBeyondLog => {
            if node.role() != Role::Leader {
                return None;
            }
            let peer =
                (1..=nodes as NodeId).find(|id| *id != me && node.progress(*id).is_some())?;
            let response = if kind == MalformedMessage::AcceptedBeyondLog {
                AppendResponse::Accepted {
                    match_index: last.index + 1,
                }
            } else {
                AppendResponse::Rejected {
                    rejected_index: last.index + 1,
                    hint_index: 0,
                    hint_term: 0,
                }
            };
            (peer, me, term, MessageBody::AppendEntriesResponse(response))
        }
        MalformedMessage::PrevBeyondLog => {
            let prev = LogPosition::new(last.index + 1, term);
            (leader()?, me, term, append(prev, Vec::new()))
        }
        MalformedMessage::PrevAtLastMismatched => {
            if last.index <= commit || last.term == 0 {
                return None;
            }
            let other = if last.term < term {
                term
            } else {
                last.term - 1
            };
            let prev = LogPosition::new(last.index, other);
            (leader()?, me, term, append(prev, Vec::new()))
        }
        MalformedMessage::ContradictsCommit => {
            let held = node
                .term_at(commit)
                .filter(|held| commit > 0 && *held > 0)?;
            let other = if held < term { term } else { held - 1 };
            let prev = LogPosition::new(commit, other);
            (leader()?, me, term, append(prev, Vec::new()))
        }
        MalformedMessage::VoteFromRemoved => {
            // With everything committed, the configuration in force is
            // committed too: only then is a stranger told it is removed.
            if last.index == 0 || commit < last.index {
                return None;
            }
            let body = MessageBody::RequestVote {
                pre_vote: false,
                last_log: LogPosition::ZERO,
                transfer: false,
            };
            (FORGED_OUTSIDE_ID, me, term, body)
        }
        MalformedMessage::Misaddressed => {
            let body = MessageBody::Heartbeat {
                commit: 0,
                read_round: 0,
            };
            (voter_peer()?, me + FORGED_OUTSIDE_ID, term, body)
        }
        MalformedMessage::StaleVoteRequest => {
            // Term 0 is no term: the request is of term 1 at least.
            if term < 2 {
                return None;
            }
            let body = MessageBody::RequestVote {
                pre_vote: false,
                last_log: last,
                transfer: false,
            };
            (voter_peer()?, me, term - 1, body)
        }
        MalformedMessage::PreVoteInOwnTerm => {
            // A node that voted for the asker may grant it again.
            let vote = node.voted_for();
            if vote.is_none() && node.leader().is_none() {
                return None;
            }
            let from = voter_peers().find(|id| Some(*id) != vote)?;
            let body = MessageBody::RequestVote {
                pre_vote: true,
                last_log: last,
                transfer: false,
            };
            (from, me, term, body)
        }
        MalformedMessage::SecondLeader => {
            let leader = leader()?;
            let from = voter_peers().find(|id| *id != leader)?;
            let body = MessageBody::Heartbeat {
                commit: 0,
                read_round: 0,
            };
            (from, me, term, body)
        }
        MalformedMessage::EntryContradictsCommit => {
            // `prev` agrees with the log below the commit index; the entry
            // at the commit index does not, within the terms a well-formed
            // append allows (from `prev`'s term to the message's).
            let below = commit.checked_sub(1).filter(|below| *below > 0)?;
            let prev = LogPosition::new(below, node.term_at(below)?);
            let held = node.term_at(commit)?;
            let other = if held < term {
                term
            } else {
                held.checked_sub(1).filter(|other| *other >= prev.term)?
            };
            let entry = Entry {
                term: other,
                index: commit,
                payload: EntryPayload::Noop,
            };
            (leader()?, me, term, append(prev, vec![entry]))
        }
        MalformedMessage::AnswerFromRemoved | MalformedMessage::AnswerFromRemovedSameTerm => {
            // Removed by a committed configuration, and still known here
            // (a stranger's answer is refused at the door instead).
            if node.commit_index() < node.membership_index() {
                return None;
            }
            let from = (1..=nodes as NodeId).find(|id| {
                *id != me && *id < 64 && known & (1 << id) != 0 && !node.membership().contains(*id)
            })?;
            let term = if kind == MalformedMessage::AnswerFromRemoved {
                term + 1
            } else {
                term
            };
            (
                from,
                me,
                term,
                MessageBody::HeartbeatResponse { read_round: 0 },
            )
        }
        MalformedMessage::AppendBelowBase => {
            // The entry before the base is gone here; its term is at most
            // the base's, which is what a leader would name.
            let base = node.log_base();
            if base.index < 2 {
                return None;
            }
            let prev = LogPosition::new(base.index - 1, base.term);
            (leader()?, me, term, append(prev, Vec::new()))
        }
        MalformedMessage::ProbeRefusedWithHint => {
            if node.role() != Role::Leader {
                return None;
            }
            // Room for a hint strictly between the match and the refused
            // probe, where the leader still holds its log (no snapshot).
            let (from, view) = node.progress_all().find(|(_, view)| {
                view.state == ProgressState::Probe && view.next_index >= view.match_index + 3
            })?;
            let rejected_index = view.next_index - 1;
            let hint_index = rejected_index - 1;
            node.term_at(hint_index)?;
            let response = AppendResponse::Rejected {
                rejected_index,
                hint_index,
                hint_term: 0,
            };
            (from, me, term, MessageBody::AppendEntriesResponse(response))
        }
        MalformedMessage::ProbeAnsweredAtMatch | MalformedMessage::DuplicateAcknowledgement => {
            if node.role() != Role::Leader {
                return None;
            }
            let (from, view) = node.progress_all().find(|(_, view)| {
                if kind == MalformedMessage::ProbeAnsweredAtMatch {
                    view.state == ProgressState::Probe
                } else {
                    view.state == ProgressState::Replicate
                }
            })?;
            let response = AppendResponse::Accepted {
                match_index: view.match_index,
            };
            (from, me, term, MessageBody::AppendEntriesResponse(response))
        }
    };
    Some(Message {
        from,
        to,
        term,
        // An answer names the leader's record of its sender, as one from
        // the replica there now would: it is judged on what it says.
        progress_id: node.progress(from).map_or(0, |view| view.progress_id),
        body,
    })
}
