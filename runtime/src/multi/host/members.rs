//! Membership on the multi-group host: the admin requests of one group
//! ([`AdminRequest`]), the catalog (group [`CATALOG_GROUP`]) applied by
//! the host itself, and what the catalog's changes ask of this server:
//! new peers (and their addresses), groups to host, groups to drop.
//!
//! A server added to a group learns it from the catalog: the command
//! that assigns it the group names the voters it joins as a learner of,
//! and every server applies the catalog, so the new server creates the
//! group (empty) and the group's leader catches it up (by snapshot once
//! its log is compacted). A server unassigned from a group (after the
//! group removed it) stops hosting it and deletes its records.

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::wire::ClientResponse;
use concord::durable::DurableStateMachine;
use concord::multi::{
    Catalog, CatalogChange, CatalogCommand, CatalogError, CatchUpMark, GroupId, MultiInput,
    MultiNode, CATALOG_GROUP,
};
use concord::{Entry, EntryPayload, Input, MembershipChange, NodeId, Role};

use super::super::admin::{
    catalog_answer, AdminAnswer, AdminRequest, GroupMembers, GroupView, LedGroup,
    ADMIN_BATCH_CHANGES_MAX,
};
use super::super::log_sink::LogSink;
use super::super::replay::MultiRecovery;
use super::super::shared_log::WalWrite;
use super::{FrameSender, HostGroup, MultiServerConfig, Server};

/// Most groups [`AdminRequest::Led`] lists.
const LED_GROUPS_MAX: usize = 100_000;

/// Applies one committed entry of the catalog group; the answer to the
/// client that proposed it (empty when applied, the reason otherwise).
pub(super) fn apply_catalog(
    catalog: &mut Catalog,
    entry: &Entry,
    changes: &mut Vec<CatalogChange>,
) -> Option<Bytes> {
    let EntryPayload::Command(command) = &entry.payload else {
        return None;
    };
    let result = catalog.apply(command).map(|change| changes.push(change));
    Some(catalog_answer(result.map_err(|e| e.to_string())))
}

/// Refuses, before it is proposed, a catalog command that would record
/// a server address no server could dial (not `HOST:PORT`): the
/// catalog's own apply does not look (see
/// [`concord::multi::is_server_address`]). Anything else, undecodable
/// bytes too, is left to the apply.
pub(super) fn check_catalog_command(command: &[u8]) -> Result<(), String> {
    match CatalogCommand::decode(command) {
        Ok(CatalogCommand::AddServer { id, addr }) if !concord::multi::is_server_address(&addr) => {
            Err(CatalogError::BadServer { id, addr }.to_string())
        }
        _ => Ok(()),
    }
}

/// Restores the catalog from its snapshot's bytes.
pub(super) fn restore_catalog(catalog: &mut Catalog, data: &[u8]) -> Result<(), String> {
    *catalog = Catalog::restore(data).map_err(|e| e.to_string())?;
    Ok(())
}

/// At start: every group found on disk is hosted (it was assigned here
/// since the cluster started, or is one of the configured groups), and
/// every member its recovered configuration names is a peer.
pub(super) fn host_recovered_groups(
    config: &mut MultiServerConfig,
    multi: &mut MultiNode,
    recovery: &MultiRecovery,
) {
    let id = config.multi.id;
    let witness = config.witness;
    let template = config
        .groups
        .iter()
        .find(|(group, _)| *group == CATALOG_GROUP)
        .or(config.groups.first())
        .map(|(_, group_config)| group_config.clone());
    for found in recovery.groups.values() {
        for member in found.recovered.membership.iter().flat_map(|m| m.members()) {
            multi.add_peer(member);
        }
    }
    let Some(template) = template else {
        return;
    };
    let configured: std::collections::BTreeSet<GroupId> =
        config.groups.iter().map(|(group, _)| *group).collect();
    for (group, found) in &recovery.groups {
        if configured.contains(group) {
            continue;
        }
        // The newest configuration durable here: its log's last one, else
        // its snapshot's. A group a server joined keeps no snapshot until
        // it compacts, yet its log holds every configuration it saw.
        let logged = found
            .recovered
            .entries
            .iter()
            .rev()
            .find_map(|entry| match &entry.payload {
                EntryPayload::Membership(membership) => Some(&**membership),
                EntryPayload::ForcedMembership(forced) => Some(&forced.membership),
                _ => None,
            });
        let Some(membership) = logged.or(found.recovered.membership.as_ref()) else {
            // No configuration stored: nothing says which voters to
            // follow; the catalog's assignment creates it again.
            continue;
        };
        config.groups.push((
            *group,
            joining_config(&template, id, *group, &membership.voters, witness),
        ));
    }
    config.groups.sort_by_key(|(group, _)| *group);
}

/// The configuration of a group this server joins as a learner of
/// `voters`: the template's settings, its own seed.
fn joining_config(
    template: &concord::Config,
    id: NodeId,
    group: GroupId,
    voters: &std::collections::BTreeSet<NodeId>,
    witness: bool,
) -> concord::Config {
    let mut config = template.clone();
    config.id = id;
    config.voters = voters.clone();
    // A witness server hosts every data group as a witness (it has no
    // state machine to apply to): listed alone among the witnesses, as
    // one joining a running group is, never as a learner.
    config.learners = if voters.contains(&id) || witness {
        Default::default()
    } else {
        [id].into()
    };
    config.witnesses = if witness {
        [id].into()
    } else {
        Default::default()
    };
    config.seed = template.seed ^ group.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    config
}

impl<S, L, N> Server<S, L, N>
where
    S: DurableStateMachine,
    L: LogSink,
    N: FrameSender,
{
    /// Answers an admin request for `group`.
    pub(super) fn admin(
        &mut self,
        group: GroupId,
        request: AdminRequest,
        reply: oneshot::Sender<ClientResponse>,
    ) {
        let answer = match request {
            AdminRequest::List => Ok(AdminAnswer::Members(Box::new(self.members(group)))),
            AdminRequest::Change(change) => self
                .propose_change(group, change)
                .map(|index| AdminAnswer::Proposed { index }),
            AdminRequest::Transfer(target) => self.start_transfer(group, target),
            AdminRequest::ReplaceView { old, new } => Ok(AdminAnswer::Views(self.views(old, new))),
            AdminRequest::ChangeBatch(changes) => {
                if changes.len() > ADMIN_BATCH_CHANGES_MAX {
                    Err(Box::new(ClientResponse::Error(format!(
                        "a batch of {} changes; send at most {ADMIN_BATCH_CHANGES_MAX}",
                        changes.len()
                    ))))
                } else {
                    let mut results = Vec::with_capacity(changes.len());
                    for (group, change) in changes {
                        let result = match self.propose_change(group, change).map_err(|e| *e) {
                            Ok(_) => None,
                            Err(ClientResponse::Error(reason)) => Some(reason),
                            Err(_) => Some(format!(
                                "node {} does not lead group {group}",
                                self.multi.id()
                            )),
                        };
                        results.push((group, result));
                    }
                    Ok(AdminAnswer::Batch(results))
                }
            }
            AdminRequest::Led { groups_max } => {
                let led: Vec<GroupId> = self
                    .multi
                    .groups()
                    .filter(|(_, node)| node.role() == Role::Leader)
                    .map(|(group, _)| group)
                    .collect();
                let total = led.len();
                let groups = led
                    .into_iter()
                    .take(groups_max.min(LED_GROUPS_MAX))
                    .collect();
                Ok(AdminAnswer::Led { groups, total })
            }
            AdminRequest::Replaces => self.replaces_under_way(group),
            AdminRequest::Catalog => self.catalog_bytes(group),
            AdminRequest::LedGroups { groups_max } => Ok(self.led_groups(groups_max)),
        };
        let response = match answer {
            Ok(answer) => ClientResponse::Done(answer.encode()),
            Err(response) => *response,
        };
        let _ = reply.send(response);
    }

    fn members(&self, group: GroupId) -> GroupMembers {
        let node = self.multi.group(group).expect("the caller checked");
        let membership = node.membership().clone();
        let progress = if node.role() == Role::Leader {
            let last = node.last_index();
            node.progress_all()
                .map(|(id, view)| (id, view.match_index, last.saturating_sub(view.match_index)))
                .collect()
        } else {
            Vec::new()
        };
        let addrs = membership
            .members()
            .into_iter()
            .filter_map(|id| {
                self.config
                    .client_addrs
                    .get(&id)
                    .map(|addr| (id, addr.clone()))
            })
            .collect();
        GroupMembers {
            group,
            answered_by: self.multi.id(),
            term: node.term(),
            leader: node.leader(),
            commit_index: node.commit_index(),
            configuration_index: node.membership_index(),
            configuration_committed: node.membership_index() <= node.commit_index(),
            membership,
            progress,
            addrs,
            forced_recovery: node.last_forced_recovery().map(|(position, audit)| {
                format!(
                    "forced recovery at index {}, term {}: {audit}",
                    position.index, position.term
                )
            }),
        }
    }

    /// Proposes `change` to `group` at its leader here: the index of its
    /// configuration entry, or the answer refusing it. Checked here first
    /// so that the refusal names its reason.
    fn propose_change(
        &mut self,
        group: GroupId,
        change: MembershipChange,
    ) -> Result<concord::Index, Box<ClientResponse>> {
        let refuse = |reason: String| Err(Box::new(ClientResponse::Error(reason)));
        let Some(node) = self.multi.group(group) else {
            return refuse(format!(
                "group {group} is not hosted on node {}; ask a server that hosts it",
                self.multi.id()
            ));
        };
        if node.role() != Role::Leader {
            let leader = node.leader();
            return Err(Box::new(self.not_leader(leader)));
        }
        if let Some(index) = node.membership_change_pending() {
            return refuse(format!(
                "a change of group {group}'s membership is under way (its entry {index} is not \
                 final yet); retry once it is"
            ));
        }
        if let Err(e) = node.membership().apply_change(change) {
            return refuse(format!("group {group}: {e}"));
        }
        match change {
            MembershipChange::AddVoter(id)
            | MembershipChange::AddLearner(id)
            | MembershipChange::AddWitness(id)
                if !self.config.client_addrs.contains_key(&id) =>
            {
                return refuse(format!(
                    "server {id} has no address in the catalog; record it first (concord-cli \
                     member add-learner {id} HOST:PORT --group {group} does both)"
                ));
            }
            MembershipChange::PromoteLearner(id) => {
                let match_index = node.progress(id).map_or(0, |p| p.match_index);
                let lag_entries = node.last_index().saturating_sub(match_index);
                if lag_entries > node.config().promote_lag_entries_max
                    || match_index < node.membership_index()
                {
                    return refuse(format!(
                        "group {group}: learner {id} is {lag_entries} entries behind; retry once \
                         it caught up"
                    ));
                }
            }
            _ => {}
        }
        let before = node.membership_index();
        self.input(MultiInput::Group {
            group,
            input: Input::ChangeMembership(change),
        });
        let after = self
            .multi
            .group(group)
            .map_or(before, |node| node.membership_index());
        if after > before {
            tracing::info!(group, ?change, index = after, "membership change proposed");
            Ok(after)
        } else {
            refuse(format!(
                "group {group}'s leader refused the change now (too many writes waiting for the \
                 disk, or a leadership transfer under way); retry"
            ))
        }
    }

    fn start_transfer(
        &mut self,
        group: GroupId,
        target: NodeId,
    ) -> Result<AdminAnswer, Box<ClientResponse>> {
        let Some(node) = self.multi.group(group) else {
            return Err(Box::new(ClientResponse::Error(format!(
                "group {group} is not hosted on node {}",
                self.multi.id()
            ))));
        };
        if node.role() != Role::Leader {
            let leader = node.leader();
            return Err(Box::new(self.not_leader(leader)));
        }
        if !node.membership().is_full_voter(target) {
            return Err(Box::new(ClientResponse::Error(format!(
                "node {target} is not a voter of group {group} that may lead"
            ))));
        }
        // The group answers at once (`Action::Transfer`, carried out
        // within `input`): a refusal (the target unreachable or behind,
        // another transfer under way) is the answer, not "started", so
        // that the command does not wait for a hand-over that never
        // begins.
        let (reply, mut outcome) = oneshot::channel();
        if let Some(earlier) = self.transfers.insert(group, reply) {
            let _ = earlier.send(Err("superseded by a newer transfer".to_string()));
        }
        self.input(MultiInput::Group {
            group,
            input: Input::TransferLeadership(target),
        });
        match outcome.try_recv() {
            Ok(Ok(concord::TransferOutcome::Refused(error))) => {
                Err(Box::new(ClientResponse::Error(error.to_string())))
            }
            Ok(Err(reason)) => Err(Box::new(ClientResponse::Error(reason))),
            _ => {
                self.transfers.remove(&group);
                Ok(AdminAnswer::TransferStarted)
            }
        }
    }

    /// Every group led here that names `old` or `new`.
    fn views(&self, old: NodeId, new: NodeId) -> Vec<GroupView> {
        self.multi
            .groups()
            .filter(|(_, node)| node.role() == Role::Leader)
            .filter(|(_, node)| node.membership().contains(old) || node.membership().contains(new))
            .map(|(group, node)| {
                let new_caught_up = node.progress(new).is_some_and(|progress| {
                    node.last_index().saturating_sub(progress.match_index)
                        <= node.config().promote_lag_entries_max
                        && progress.match_index >= node.membership_index()
                });
                GroupView {
                    group,
                    term: node.term(),
                    membership: node.membership().clone(),
                    change_pending: node.membership_change_pending().is_some(),
                    new_caught_up,
                }
            })
            .collect()
    }

    /// Every group led here (at most `groups_max`, capped), for the
    /// balancer.
    fn led_groups(&self, groups_max: usize) -> AdminAnswer {
        let led: Vec<LedGroup> = self
            .multi
            .groups()
            .filter(|(_, node)| node.role() == Role::Leader)
            .map(|(group, node)| {
                let last = node.last_index();
                let caught_up = node
                    .progress_all()
                    .filter(|(_, progress)| {
                        last.saturating_sub(progress.match_index)
                            <= node.config().promote_lag_entries_max
                            && progress.match_index >= node.membership_index()
                    })
                    .map(|(id, _)| id)
                    .collect();
                LedGroup {
                    group,
                    term: node.term(),
                    membership: node.membership().clone(),
                    change_pending: node.membership_change_pending().is_some(),
                    caught_up,
                    preferred_leader: node.preferred_leader(),
                    learner_marks: node
                        .membership()
                        .learners
                        .iter()
                        .filter_map(|id| {
                            node.progress(*id)
                                .map(|progress| (*id, CatchUpMark::of(&progress)))
                        })
                        .collect(),
                }
            })
            .collect();
        let total = led.len();
        let groups = led
            .into_iter()
            .take(groups_max.min(LED_GROUPS_MAX))
            .collect();
        AdminAnswer::LedGroups { groups, total }
    }

    /// The catalog's bytes, answered by the catalog group's leader only
    /// (a follower's copy may lag).
    fn catalog_bytes(&mut self, group: GroupId) -> Result<AdminAnswer, Box<ClientResponse>> {
        self.read_at_catalog_leader(group, "it", |catalog| {
            AdminAnswer::Catalog(catalog.snapshot().to_vec())
        })
    }

    /// `read` of the catalog, at the catalog group's leader only (a
    /// follower's copy may lag); `what` names the answer in the error
    /// for another group.
    fn read_at_catalog_leader(
        &mut self,
        group: GroupId,
        what: &str,
        read: impl FnOnce(&Catalog) -> AdminAnswer,
    ) -> Result<AdminAnswer, Box<ClientResponse>> {
        let Some(catalog) = self.catalog.as_ref().filter(|_| group == CATALOG_GROUP) else {
            return Err(Box::new(ClientResponse::Error(format!(
                "group {group} is not the catalog (group {CATALOG_GROUP}); ask group \
                 {CATALOG_GROUP} for {what}"
            ))));
        };
        match self.multi.group(CATALOG_GROUP) {
            // Read only at the leader: a follower does no work for nothing.
            Some(node) if node.role() == Role::Leader => Ok(read(catalog)),
            Some(node) => {
                let leader = node.leader();
                Err(Box::new(self.not_leader(leader)))
            }
            None => Err(Box::new(ClientResponse::Error(format!(
                "node {} does not host the catalog",
                self.multi.id()
            )))),
        }
    }

    /// Carries out what the catalog applied since the last call.
    pub(super) fn catalog_carry_out(&mut self) {
        for change in std::mem::take(&mut self.catalog_changes) {
            match change {
                CatalogChange::ServerAdded { id, addr } => self.learn_server(id, &addr),
                CatalogChange::Assigned { node, groups } if node == self.multi.id() => {
                    for (group, voters) in groups {
                        self.host_assigned(group, &voters);
                    }
                }
                CatalogChange::Unassigned { node, groups } if node == self.multi.id() => {
                    for group in groups {
                        self.unhost(group);
                    }
                }
                _ => {}
            }
        }
    }

    /// The replaces the catalog records, answered by the catalog group's
    /// leader only: a follower's copy may lag a replace just started.
    fn replaces_under_way(&mut self, group: GroupId) -> Result<AdminAnswer, Box<ClientResponse>> {
        self.read_at_catalog_leader(group, "the replaces under way", |catalog| {
            AdminAnswer::Replaces(catalog.replaces().collect())
        })
    }

    /// After the catalog was restored: every server it records is a peer,
    /// every group it assigns here is hosted.
    pub(super) fn catalog_sync(&mut self) {
        let Some(catalog) = &self.catalog else {
            return;
        };
        let me = self.multi.id();
        let servers: Vec<(NodeId, String)> = catalog
            .servers()
            .map(|(id, addr)| (id, addr.to_string()))
            .collect();
        let assigned: Vec<(GroupId, std::collections::BTreeSet<NodeId>)> = catalog
            .assigned_to(me)
            .map(|(group, voters)| (group, voters.clone()))
            .collect();
        for (id, addr) in servers {
            self.learn_server(id, &addr);
        }
        for (group, voters) in assigned {
            self.host_assigned(group, &voters);
        }
    }

    fn learn_server(&mut self, id: NodeId, addr: &str) {
        if id == self.multi.id() {
            return;
        }
        if self.multi.add_peer(id) {
            tracing::info!(peer = id, addr, "a new server of the cluster");
        }
        self.network.add_peer(id, addr);
        self.config.client_addrs.insert(id, addr.to_string());
    }

    /// Hosts `group`, assigned here, unless it is already: an empty
    /// learner of `voters`, caught up by the group's leader.
    fn host_assigned(&mut self, group: GroupId, voters: &std::collections::BTreeSet<NodeId>) {
        if self.groups.contains_key(&group) || group == CATALOG_GROUP {
            return;
        }
        let Some(make) = &self.make else {
            tracing::warn!(
                group,
                "assigned a group, but this server cannot create groups"
            );
            return;
        };
        let Some(template) = self
            .multi
            .group(CATALOG_GROUP)
            .map(|node| node.config().clone())
        else {
            return;
        };
        let mut state_machine = make(group);
        if state_machine.applied_index() > 0 {
            // Left by an earlier stay in this group (a crash between the
            // log's removal of the group and the state's): the group starts
            // here afresh, so that state is garbage.
            tracing::warn!(
                group,
                applied = state_machine.applied_index(),
                "deleting a state machine's state left from an earlier stay in the group"
            );
            if let Err(error) = state_machine.destroy() {
                tracing::error!(group, %error, "cannot delete a group's old state; not hosting it");
                return;
            }
            state_machine = make(group);
        }
        let config = joining_config(
            &template,
            self.multi.id(),
            group,
            voters,
            self.config.witness,
        );
        for voter in voters {
            self.multi.add_peer(*voter);
        }
        if let Err(e) = self
            .multi
            .create_group(group, config, concord::Recovered::default())
        {
            tracing::error!(group, error = %e, "cannot host a group the catalog assigns here");
            return;
        }
        self.groups.insert(group, HostGroup::new(state_machine));
        tracing::debug!(group, "hosting a group assigned here");
    }

    /// Stops hosting `group` and deletes its records.
    fn unhost(&mut self, group: GroupId) {
        if group == CATALOG_GROUP {
            return;
        }
        let Ok(node) = self.multi.remove_group(group) else {
            return;
        };
        // The node-wide counters keep what the group did here.
        self.retired.add(node.stats());
        self.snapshot_times.forget_group(group);
        if let Some(mut host_group) = self.groups.remove(&group) {
            let replies = host_group
                .pending_replies
                .drain(..)
                .chain(host_group.proposing.drain(..))
                .chain(host_group.waiting.drain(..).map(|(_, _, reply)| reply));
            for reply in replies {
                self.stats.unknown_outcomes += 1;
                let _ = reply.send(ClientResponse::Unknown);
            }
            // A state machine on its own storage leaves nothing behind
            // (were the group assigned here again, it starts empty).
            if let Err(error) = host_group.state_machine.destroy() {
                tracing::error!(group, %error, "cannot delete the state of a group removed from this server");
            }
        }
        self.proposals_pending.remove(&group);
        self.transfers.remove(&group);
        let reads: Vec<u64> = self
            .reads
            .iter()
            .filter(|(_, (read_group, _, _))| *read_group == group)
            .map(|(id, _)| *id)
            .collect();
        for id in reads {
            if let Some((_, _, reply)) = self.reads.remove(&id) {
                let _ = reply.send(ClientResponse::Error(format!(
                    "group {group} left this server"
                )));
            }
        }
        self.log.submit(None, vec![WalWrite::Remove { group }]);
        tracing::info!(group, "no longer hosting a group removed from this server");
    }
}
