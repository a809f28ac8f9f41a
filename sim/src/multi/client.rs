//! The clients: each runs one key-value operation at a time against one
//! group (mostly the seed's hot groups, now and then any group, which
//! wakes it), finds the group's leader through refusals' hints, and
//! records every operation in that group's history.
//!
//! A client never re-sends a command that a leader may have appended: it
//! retries only refusals (definitely not appended), and once its command
//! is accepted it waits for the entry to apply (at any replica: the
//! response is the same everywhere, which the state-machine check
//! verifies) or gives up with an unknown outcome. So no command runs
//! twice, and the histories need no sessions to be linearizable.
//!
//! After the heal, each group's liveness probe (a command the state
//! machine ignores, outside the histories) must commit.

use bytes::Bytes;
use rand::Rng;

use concord::multi::{GroupId, MultiInput};
use concord::{Index, Input, NodeId, Term};

use crate::workload::{OpResult, Workload};

use super::engine::{ClientOp, Event, MultiSim, Proposer, Queued, MS};

impl MultiSim {
    /// Picks the group of a client's next operation.
    fn pick_group(&mut self) -> GroupId {
        let cold = self.client_rng.gen_range(0..1000) < self.drawn.cold_per_mille;
        if cold || self.drawn.hot.is_empty() {
            self.client_rng.gen_range(1..=self.drawn.groups as GroupId)
        } else {
            let at = self.client_rng.gen_range(0..self.drawn.hot.len());
            self.drawn.hot[at]
        }
    }

    /// A node of `group` to ask: the hint, else the last leader seen, else
    /// any voter.
    fn pick_target(&mut self, group: GroupId, hint: Option<NodeId>) -> NodeId {
        let state = &self.groups[&group];
        if let Some(hint) = hint.filter(|hint| state.voters.contains(hint)) {
            return hint;
        }
        if let Some(leader) = state.leader_hint.filter(|_| self.client_rng.gen_bool(0.8)) {
            return leader;
        }
        let voters = &self.groups[&group].voters;
        voters[self.client_rng.gen_range(0..voters.len())]
    }

    /// A client starts its next operation (until the heal).
    pub(crate) fn client_next(&mut self, client: usize) {
        if self.phase != super::engine::Phase::Chaos || self.clients[client].op.is_some() {
            return;
        }
        let group = self.pick_group();
        let now = self.now_ns;
        let state = self.groups.get_mut(&group).expect("a drawn group");
        let Some(command) = state
            .workload
            .next_command(client, now, &mut self.client_rng)
        else {
            return;
        };
        let path = if state.workload.is_read_only(&command) {
            self.drawn.reads.pick(&mut self.client_rng)
        } else {
            None
        };
        let target = self.pick_target(group, None);
        let seq = self.clients[client].op_seq + 1;
        self.clients[client].op_seq = seq;
        self.clients[client].op = Some(ClientOp {
            group,
            command,
            path,
            attempt: 0,
            accepted: false,
            target,
        });
        self.send_request(client, seq, 0, target);
        let timeout = self.config.client_timeout_ns;
        self.schedule(
            timeout,
            Event::ClientTimeout {
                client,
                op_seq: seq,
            },
        );
    }

    fn send_request(&mut self, client: usize, op_seq: u64, attempt: u32, node: NodeId) {
        let delay = self.reply_delay();
        self.schedule(
            delay,
            Event::ClientArrive {
                client,
                op_seq,
                attempt,
                node,
            },
        );
    }

    fn current(&self, client: usize, op_seq: u64, attempt: u32) -> bool {
        self.clients[client].op_seq == op_seq
            && self.clients[client]
                .op
                .as_ref()
                .is_some_and(|op| op.attempt == attempt && !op.accepted)
    }

    /// A client's request reaches node `node`.
    pub(crate) fn client_arrive(&mut self, client: usize, op_seq: u64, attempt: u32, node: NodeId) {
        let index = node as usize - 1;
        if !self.current(client, op_seq, attempt) || self.hosts[index].multi.is_none() {
            return;
        }
        let queued = Queued::Request {
            client,
            op_seq,
            attempt,
        };
        if self.queue_if_paused(index, queued).is_some() {
            self.client_request(index, client, op_seq, attempt);
        }
    }

    /// Node `index` takes a client's request: a proposal, or a read.
    pub(crate) fn client_request(
        &mut self,
        index: usize,
        client: usize,
        op_seq: u64,
        attempt: u32,
    ) {
        if !self.current(client, op_seq, attempt) {
            return;
        }
        let Some(op) = self.clients[client].op.clone() else {
            return;
        };
        let proposer = Some(Proposer::Client {
            client,
            op_seq,
            attempt,
        });
        let group = op.group;
        if !self.hosts_group(index, group) {
            // Refused as a real host refuses a group it does not host.
            self.retry_after_reply(client, op_seq, attempt, None);
            return;
        }
        match op.path {
            None => {
                let input = MultiInput::Group {
                    group,
                    input: Input::Propose(op.command),
                };
                self.step_node(index, input, proposer);
            }
            Some(path) => {
                self.lease.note_read_command(&op.command);
                let committed_when_asked = self.committed_anywhere(group);
                let host = &mut self.hosts[index];
                host.next_read_id += 1;
                let id = host.next_read_id;
                host.reads.insert(
                    id,
                    super::engine::HostRead {
                        group,
                        client: Some((client, op_seq, attempt)),
                        command: op.command,
                        asked_ns: self.now_ns,
                        committed_when_asked,
                    },
                );
                let input = MultiInput::Group {
                    group,
                    input: Input::Read { id, path },
                };
                self.step_node(index, input, proposer);
            }
        }
    }

    /// A client hears its request was refused: it tries again (at the
    /// hinted node) or gives up — the command was never appended.
    pub(crate) fn client_retry(
        &mut self,
        client: usize,
        op_seq: u64,
        attempt: u32,
        hint: Option<NodeId>,
    ) {
        if !self.current(client, op_seq, attempt) {
            return;
        }
        let Some(op) = self.clients[client].op.as_ref() else {
            return;
        };
        let group = op.group;
        if attempt + 1 >= self.config.client_max_attempts {
            self.complete(client, OpResult::Failed);
            return;
        }
        let target = self.pick_target(group, hint);
        if let Some(op) = self.clients[client].op.as_mut() {
            op.attempt = attempt + 1;
            op.target = target;
        }
        // A short back-off, so a client without a hint does not spin.
        let backoff = self.client_rng.gen_range(MS..20 * MS);
        self.schedule(
            backoff,
            Event::ClientArrive {
                client,
                op_seq,
                attempt: attempt + 1,
                node: target,
            },
        );
    }

    /// A client gives up: unknown if its command was appended somewhere,
    /// failed if it never was (no attempt can arrive later: they carry
    /// the operation's number).
    pub(crate) fn client_timeout(&mut self, client: usize, op_seq: u64) {
        if self.clients[client].op_seq != op_seq {
            return;
        }
        let Some(op) = self.clients[client].op.as_ref() else {
            return;
        };
        if op.accepted {
            self.complete(client, OpResult::Unknown);
        } else {
            self.complete(client, OpResult::Failed);
        }
    }

    /// A read the client asked for was served.
    pub(crate) fn client_read_served(
        &mut self,
        client: usize,
        op_seq: u64,
        attempt: u32,
        response: &Bytes,
    ) {
        if !self.current(client, op_seq, attempt) {
            return;
        }
        let response = response.clone();
        self.complete(client, OpResult::Ok(&response));
    }

    /// Ends the client's operation and schedules its next.
    fn complete(&mut self, client: usize, result: OpResult<'_>) {
        let Some(op) = self.clients[client].op.take() else {
            return;
        };
        let now = self.now_ns;
        self.trace.word(0xc1e0_0000 | client as u64);
        let state = self.groups.get_mut(&op.group).expect("a drawn group");
        if let (Some(path), OpResult::Ok(_)) = (op.path, result) {
            state.workload.served_by(client, path);
        }
        state.workload.complete(client, now, result);
        let think = crate::faults::exponential(&mut self.client_rng, self.config.think_mean_ns);
        self.schedule(think.max(1), Event::ClientNext { client });
    }

    /// Entry `index` of `group` (of `term`) applied at some replica with
    /// `response`: the operation appended there, or the probe, learns its
    /// fate.
    pub(crate) fn entry_applied(
        &mut self,
        group: GroupId,
        index: Index,
        term: Term,
        response: &Bytes,
    ) {
        let state = self.groups.get_mut(&group).expect("a hosted group");
        if let Some(pending) = state.pending.remove(&index) {
            let current = self.clients[pending.client].op_seq == pending.op_seq
                && self.clients[pending.client]
                    .op
                    .as_ref()
                    .is_some_and(|op| op.group == group && op.accepted);
            if current {
                // Judged again at a forced recovery (`forced.rs`).
                if let Some(op) = self.clients[pending.client].op.as_ref() {
                    let command = op.command.clone();
                    let failed = pending.term != term;
                    self.record_forced_outcome(group, index, pending.term, &command, failed);
                }
                if pending.term == term {
                    let response = response.clone();
                    self.complete(pending.client, OpResult::Ok(&response));
                } else {
                    // Another entry committed at its index: it never will.
                    self.complete(pending.client, OpResult::Failed);
                }
            }
        }
        let probe = &mut self.groups.get_mut(&group).expect("a hosted group").probe;
        if probe.committed.is_none()
            && probe
                .accepted
                .iter()
                .any(|(at, accepted_term, _)| *at == index && *accepted_term == term)
        {
            probe.committed = Some(index);
        }
    }

    /// The probe of `group` tries to append (again): at its target, or
    /// the last leader seen, or any voter.
    pub(crate) fn probe_try(&mut self, group: GroupId) {
        let probe = &self.groups[&group].probe;
        if probe.committed.is_some() {
            return;
        }
        // An accepted probe that has not applied within a second may have
        // been overwritten by a leader that never got it: try again.
        let now = self.now_ns;
        let waiting = probe
            .accepted
            .iter()
            .any(|(_, _, at)| now.saturating_sub(*at) < 1_000 * MS);
        if !waiting {
            let hint = probe.target;
            let target = self.pick_target(group, hint);
            let probe = &mut self.groups.get_mut(&group).expect("a hosted group").probe;
            probe.tries += 1;
            probe.target = None;
            let index = target as usize - 1;
            if self.hosts[index].multi.is_some() {
                let queued = Queued::Probe { group };
                if self.queue_if_paused(index, queued).is_some() {
                    self.probe_request(index, group);
                }
            }
        }
        let delay = 50 * MS + self.client_rng.gen_range(0..50 * MS);
        self.schedule(delay, Event::ProbeTry { group });
    }

    /// Node `index` is asked to append `group`'s probe.
    pub(crate) fn probe_request(&mut self, index: usize, group: GroupId) {
        if !self.hosts_group(index, group) {
            // The probe tries again.
            return;
        }
        let input = MultiInput::Group {
            group,
            input: Input::Propose(Bytes::from_static(b"liveness probe")),
        };
        self.step_node(index, input, Some(Proposer::Probe { group }));
    }

    /// Whether every client is done.
    pub(crate) fn clients_idle(&self) -> bool {
        self.clients.iter().all(|client| client.op.is_none())
    }
}
