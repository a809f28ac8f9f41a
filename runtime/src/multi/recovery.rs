//! Offline forced recovery of one group of a stopped multi-group server's
//! data directory (the shared log, [`super::data_dir`]), after a majority
//! of that group's voters is lost for good. **Unsafe**: see
//! [`concord::recovery`] for what it does and what it loses. What
//! `concord-cli force-recover --group G` runs on a shared-log directory.
//!
//! [`force_recover_group`]:
//!
//! 1. takes the directory's lock (a running server holds it: refused,
//!    naming the pid), checks that its identity names the survivor, and
//!    replays the shared log the way the server does at start
//!    (`replay.rs`: every segment and snapshot, the same torn-tail and
//!    corruption rules), reading back the group's hard state and log;
//! 2. plans the recovery with [`plan_forced_recovery`] and prints what it
//!    is about to do and what may be lost;
//! 3. without confirmation, stops there ([`ForceRecoverError::NotConfirmed`]);
//! 4. otherwise writes the plan through the server's own log code
//!    ([`SharedLog::write`]) in two rounds, each synced before the next
//!    starts: the raised term (hard state) first, then the forced
//!    configuration entry with its audit record.
//!
//! Running it again on the result writes nothing
//! ([`ForceRecoverOutcome::AlreadyRecovered`]); a run interrupted part way
//! leaves at most the raised term (the entry is never durable under the
//! old term), and running it again completes it under a term one higher.
//!
//! On its next start the server reads the group's log back with the
//! forced entry last: a configuration is in force from the moment its
//! entry is in the log, so the group starts with the forced voters
//! whatever `--peers` says, elects the survivor and commits. Each group
//! is recovered on its own: a server's other groups (the catalog, group
//! [`CATALOG_GROUP`], among them) keep their voters until forced too.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::identity::{self, IdentityError};
use crate::storage::StorageError;
use concord::multi::{GroupId, CATALOG_GROUP};
use concord::recovery::{plan_forced_recovery, ForcedRecoveryPlan, ForcedRecoveryRequest};
use concord::{EntryPayload, Index, NodeId, Recovered, RecoveryError, Term};

use super::data_dir::{layout, DataDirLayout};
use super::replay;
use super::segment_files::DirSegments;
use super::shared_log::{MultiWalOptions, SharedLog, WalWrite};
use super::snapshot_store::DirSnapshots;

/// The group recovered when none is named: the data group of a
/// one-group cluster.
pub const DEFAULT_GROUP: GroupId = 1;

/// What the operator asked for.
#[derive(Clone, Debug)]
pub struct ForceRecoverOptions {
    /// The stopped server's data directory (holding `log/`).
    pub data_dir: PathBuf,
    /// The group to recover ([`DEFAULT_GROUP`] unless told otherwise;
    /// [`CATALOG_GROUP`] is the catalog).
    pub group: GroupId,
    /// The server's id (the survivor).
    pub node_id: NodeId,
    /// The voters of the forced configuration; empty means the survivor
    /// alone (the usual choice: add servers back with `member add-learner`
    /// and `member promote` once it serves).
    pub voters: BTreeSet<NodeId>,
    /// Why; kept in the group's log.
    pub reason: String,
    /// The operator confirmed that acknowledged writes may be lost. Without
    /// it nothing is written.
    pub confirmed: bool,
    /// Stop with an error right after this step, as a crash there would
    /// (crash tests; `None` in the tool).
    #[doc(hidden)]
    pub stop_after: Option<ForceRecoverStep>,
}

/// The writes of a forced recovery, in order, for
/// [`ForceRecoverOptions::stop_after`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForceRecoverStep {
    /// The raised term written and synced; the forced entry not yet.
    HardStateWritten,
}

/// What [`force_recover_group`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ForceRecoverOutcome {
    /// The forced configuration was written.
    Recovered(Box<ForcedRecoveryPlan>),
    /// The group's log already ends with this forced recovery; nothing
    /// was written.
    AlreadyRecovered {
        /// Index of the forced entry.
        index: Index,
        /// Its term.
        term: Term,
    },
}

/// Why [`force_recover_group`] wrote nothing (or, for
/// [`ForceRecoverError::Storage`], stopped part way: run it again).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ForceRecoverError {
    /// The confirmation flag was not given.
    #[error("refusing to force a recovery without --i-understand-acknowledged-writes-may-be-lost: writes the lost servers acknowledged may be lost for good; read the plan above and give the flag to proceed")]
    NotConfirmed,
    /// The directory does not hold a shared log.
    #[error("{path} holds {found}, not the shared log of a multi-group server (no {path}/log); name the data directory the stopped server was started with")]
    NotSharedLog {
        /// The directory.
        path: String,
        /// What it holds instead.
        found: DataDirLayout,
    },
    /// A server (or another tool) runs on the directory.
    #[error("{0}; stop the server first: forced recovery works on a stopped server's data directory only")]
    InUse(IdentityError),
    /// The directory's identity names another server.
    #[error("{path} belongs to node {found} of cluster {cluster:?}, not node {asked}; give --node-id {found}, or name the survivor's own data directory")]
    WrongNode {
        /// The directory.
        path: String,
        /// The node it belongs to.
        found: NodeId,
        /// Its cluster.
        cluster: String,
        /// The node asked for.
        asked: NodeId,
    },
    /// The group has no durable state in this directory.
    #[error("{path} holds no state of group {group} (groups with state here: {found:?}); name one of them with --group")]
    NoGroup {
        /// The directory.
        path: String,
        /// The group asked for.
        group: GroupId,
        /// The groups that have state.
        found: Vec<GroupId>,
    },
    /// The group was removed from this server.
    #[error("group {group} was removed from the server of {path}; its log is void and there is nothing to recover from here")]
    GroupRemoved {
        /// The directory.
        path: String,
        /// The group.
        group: GroupId,
    },
    /// The group's log holds no term and no entry: nothing to recover
    /// from.
    #[error("group {group} in {path} has an empty log (no term, no entry): there is nothing to recover from; pick the survivor with the longest log of that group")]
    EmptyLog {
        /// The directory.
        path: String,
        /// The group.
        group: GroupId,
    },
    /// Reading or writing the log failed.
    #[error("{0}")]
    Storage(#[from] StorageError),
    /// The recovery itself was refused.
    #[error("{0}")]
    Refused(#[from] RecoveryError),
    /// Printing the plan failed.
    #[error("writing the report: {0}")]
    Report(#[from] std::io::Error),
}

/// What the operator must know before running `concord-cli force-recover`
/// (its help text; the binary's flags are `concord_node::client`).
pub const FORCE_RECOVER_USAGE: &str = "\
UNSAFE. For a cluster that lost a majority of its voters for good. Run it on
ONE stopped survivor (the one with the longest log), then start it: it
becomes the only voter, elects itself and serves. Writes the lost servers
acknowledged that this server never received are lost. Its entries beyond
the commit index its disk shows are kept and committed. The recovery is
recorded in the log (`concord-cli member list` shows it). Wipe the lost
servers' data directories before any of them comes back, then add servers
with `member add-learner` and `member promote`.

It recovers one group: --group G (default 1); recover each group that lost
its majority the same way, the catalog with --group 0. Without --group, a
server of one group (no --groups) has group 1 and the catalog recovered
together. A single-group server's directory of before the one runtime
(`wal/`) is first upgraded in place to the shared log, as concord-node
does at its first start. Two running copies are refused: the server holds
the directory's lock.

Exit status: 0 done (or already done: nothing written), 1 refused or failed.";

/// Forces `options`' configuration on one group of the stopped server's
/// shared-log data directory (see the [module documentation](self)),
/// printing what it does to `out`.
pub fn force_recover_group(
    options: &ForceRecoverOptions,
    out: &mut dyn Write,
) -> Result<ForceRecoverOutcome, ForceRecoverError> {
    let dir = options.data_dir.as_path();
    let path = dir.display().to_string();
    let found = layout(dir);
    if found != DataDirLayout::SharedLog {
        return Err(ForceRecoverError::NotSharedLog { path, found });
    }
    let lock = identity::lock(dir).map_err(|error| match error {
        IdentityError::Storage(error) => ForceRecoverError::Storage(error),
        other => ForceRecoverError::InUse(other),
    })?;
    match identity::read(dir) {
        Ok(Some(identity)) if identity.node_id != options.node_id => {
            return Err(ForceRecoverError::WrongNode {
                path,
                found: identity.node_id,
                cluster: identity.cluster_id,
                asked: options.node_id,
            })
        }
        Ok(_) => {}
        Err(IdentityError::Storage(error)) => return Err(error.into()),
        Err(other) => return Err(StorageError::Identity(Box::new(other)).into()),
    }
    let mut segments = DirSegments::new(dir.join("log"))?.holding(lock);
    let mut snapshots = DirSnapshots::new(dir.join("groups"))?;
    // Read-only but for a torn tail, cut as any start cuts it: planning
    // writes nothing else.
    let mut recovery = replay::replay(&mut segments, &mut snapshots, false)?.recovery;
    if recovery.removed.contains(&options.group) {
        return Err(ForceRecoverError::GroupRemoved {
            path,
            group: options.group,
        });
    }
    let Some(found) = recovery.groups.remove(&options.group) else {
        return Err(ForceRecoverError::NoGroup {
            path,
            group: options.group,
            found: recovery.groups.keys().copied().collect(),
        });
    };
    let recovered = found.recovered;
    if recovered.hard_state.term == 0 && recovered.entries.is_empty() && recovered.base.index == 0 {
        return Err(ForceRecoverError::EmptyLog {
            path,
            group: options.group,
        });
    }
    let request = ForcedRecoveryRequest {
        survivor: options.node_id,
        voters: options.voters.clone(),
        reason: options.reason.clone(),
        startup_membership: None,
    };
    let plan = match plan_forced_recovery(&recovered, &request) {
        Ok(plan) => plan,
        Err(RecoveryError::AlreadyRecovered { index, term }) => {
            writeln!(
                out,
                "{path}: group {}'s log already ends with this forced recovery (index {index}, term {term}); nothing written. Start the server.",
                options.group
            )?;
            return Ok(ForceRecoverOutcome::AlreadyRecovered { index, term });
        }
        Err(error) => return Err(error.into()),
    };
    print_plan(out, dir, options.group, &recovered, &plan)?;
    if !options.confirmed {
        return Err(ForceRecoverError::NotConfirmed);
    }
    // The server's own writer, on the same files (the lock held since
    // the replay above): it replays again and continues the log.
    let (mut log, _) = SharedLog::open(segments, snapshots, MultiWalOptions::default())?;
    write_plan(&mut log, options, &plan)?;
    drop(log);
    writeln!(
        out,
        "DONE: group {}'s forced configuration written at index {} term {} and fsynced. Start the server as before; the group elects it and commits. Wipe the data directories of the lost servers before any of them comes back.",
        options.group, plan.entry.index, plan.entry.term
    )?;
    if options.group != CATALOG_GROUP {
        writeln!(
            out,
            "Other groups of this server keep their voters: recover each one that lost its majority the same way (--group G; the catalog is --group {CATALOG_GROUP})."
        )?;
    }
    Ok(ForceRecoverOutcome::Recovered(Box::new(plan)))
}

/// Writes the plan in two synced rounds: the raised term, then the
/// forced entry.
fn write_plan(
    log: &mut SharedLog<DirSegments, DirSnapshots>,
    options: &ForceRecoverOptions,
    plan: &ForcedRecoveryPlan,
) -> Result<(), ForceRecoverError> {
    let group = options.group;
    log.write([WalWrite::Log {
        group,
        hard_state: Some(plan.hard_state),
        truncate_after: None,
        entries: Vec::new().into(),
    }])?;
    if options.stop_after == Some(ForceRecoverStep::HardStateWritten) {
        return Err(StorageError::Misuse(
            "forced recovery stopped after writing the raised term, as asked (a crash test)"
                .to_string(),
        )
        .into());
    }
    log.write([WalWrite::Log {
        group,
        hard_state: None,
        truncate_after: None,
        entries: vec![plan.entry.clone()].into(),
    }])?;
    Ok(())
}

/// The loud part: what is about to happen and what may be lost.
fn print_plan(
    out: &mut dyn Write,
    data_dir: &Path,
    group: GroupId,
    recovered: &Recovered,
    plan: &ForcedRecoveryPlan,
) -> std::io::Result<()> {
    let audit = &plan.audit;
    writeln!(
        out,
        "!!! FORCED RECOVERY (UNSAFE) of group {group} in {} !!!",
        data_dir.display()
    )?;
    writeln!(
        out,
        "survivor {}: term {}, log ends at index {} term {}, committed through index {} as far as its disk shows",
        audit.survivor,
        audit.term_before,
        audit.last_before.index,
        audit.last_before.term,
        audit.commit_index_before
    )?;
    match &audit.previous {
        Some(previous) => writeln!(
            out,
            "configuration in force: voters {:?}{}, learners {:?}",
            previous.voters,
            if previous.is_joint() {
                format!(" joint with {:?}", previous.voters_outgoing)
            } else {
                String::new()
            },
            previous.learners
        )?,
        None => writeln!(
            out,
            "configuration in force: the one the server was started with (--peers); none is stored in the group's log"
        )?,
    }
    writeln!(
        out,
        "will write: term {} (no vote), then at index {} a configuration with voters {:?} and learners {:?}, reason {:?}",
        plan.hard_state.term,
        plan.entry.index,
        audit.membership.voters,
        audit.membership.learners,
        audit.reason
    )?;
    let kept = plan.uncommitted_kept();
    let kept_commands = recovered
        .entries
        .iter()
        .filter(|entry| kept.contains(&entry.index))
        .filter(|entry| matches!(entry.payload, EntryPayload::Command(_)))
        .count();
    writeln!(
        out,
        "KEPT AND COMMITTED: entries {}..={} ({kept_commands} client commands) beyond the commit index this disk shows; some may never have been acknowledged to a client",
        kept.start(),
        kept.end()
    )?;
    writeln!(
        out,
        "MAY BE LOST: every write the lost servers acknowledged in group {group} that is not in this log (after index {}); this server cannot know them",
        audit.last_before.index
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::multi::data_dir::open_data_dir;
    use bytes::Bytes;
    use concord::{Config, Entry, HardState, Membership, Node};
    use std::fs;

    const GROUP: GroupId = 1;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "concord-multi-recovery-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A stopped server's directory: group 1 with voters {1, 2, 3} in
    /// term 3, entries 1..=5 (a configuration, a no-op, three commands),
    /// and the catalog with a term and no entry.
    fn stopped_server(name: &str) -> PathBuf {
        let dir = scratch(name);
        let opened = open_data_dir(&dir, MultiWalOptions::default()).unwrap();
        let mut log = opened.log;
        let mut entries = vec![
            Entry {
                term: 1,
                index: 1,
                payload: EntryPayload::Membership(Box::new(Membership::new([1, 2, 3]))),
            },
            Entry {
                term: 2,
                index: 2,
                payload: EntryPayload::Noop,
            },
        ];
        for index in 3..=5 {
            entries.push(Entry {
                term: 3,
                index,
                payload: EntryPayload::Command(Bytes::from(format!("put k{index}"))),
            });
        }
        log.write([
            WalWrite::Log {
                group: GROUP,
                hard_state: Some(HardState::new(3, Some(2))),
                truncate_after: None,
                entries: entries.into(),
            },
            WalWrite::Log {
                group: CATALOG_GROUP,
                hard_state: Some(HardState::new(2, None)),
                truncate_after: None,
                entries: Vec::new().into(),
            },
        ])
        .unwrap();
        drop(log);
        dir
    }

    fn options(dir: &Path) -> ForceRecoverOptions {
        ForceRecoverOptions {
            data_dir: dir.to_path_buf(),
            group: GROUP,
            node_id: 1,
            voters: BTreeSet::new(),
            reason: "two of three disks destroyed".to_string(),
            confirmed: true,
            stop_after: None,
        }
    }

    /// Every group's state as the server reads it back at start.
    fn read_back(dir: &Path) -> super::super::MultiRecovery {
        open_data_dir(dir, MultiWalOptions::default())
            .unwrap()
            .recovery
    }

    /// Every file of the log directory, by name, with its bytes.
    fn log_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<_> = fs::read_dir(dir.join("log"))
            .unwrap()
            .map(|item| {
                let path = item.unwrap().path();
                (
                    path.file_name().unwrap().to_string_lossy().into_owned(),
                    fs::read(&path).unwrap(),
                )
            })
            .collect();
        files.sort();
        files
    }

    fn run(
        options: &ForceRecoverOptions,
    ) -> (Result<ForceRecoverOutcome, ForceRecoverError>, String) {
        let mut out = Vec::new();
        let result = force_recover_group(options, &mut out);
        (result, String::from_utf8(out).unwrap())
    }

    #[test]
    fn the_forced_entry_is_read_back_by_replay_with_the_raised_term() {
        let dir = stopped_server("replay");
        let (result, printed) = run(&options(&dir));
        let ForceRecoverOutcome::Recovered(plan) = result.unwrap() else {
            panic!("nothing written: {printed}");
        };
        assert!(
            printed.contains("FORCED RECOVERY (UNSAFE) of group 1"),
            "{printed}"
        );
        assert!(printed.contains("voters {1, 2, 3}"), "{printed}");
        assert!(
            printed.contains("KEPT AND COMMITTED: entries 1..=5 (3 client commands)"),
            "{printed}"
        );
        assert_eq!((plan.entry.index, plan.entry.term), (6, 4));
        let mut recovery = read_back(&dir);
        let group = recovery.groups.remove(&GROUP).unwrap().recovered;
        assert_eq!(group.hard_state, HardState::new(4, None));
        assert_eq!(group.entries.len(), 6);
        let last = group.entries.last().unwrap();
        assert_eq!((last.index, last.term), (6, 4));
        let EntryPayload::ForcedMembership(audit) = &last.payload else {
            panic!("the last entry is {:?}", last.payload);
        };
        assert_eq!(audit.membership.voters, BTreeSet::from([1]));
        assert_eq!(
            audit.previous.as_ref().unwrap().voters,
            BTreeSet::from([1, 2, 3])
        );
        assert_eq!(audit.last_before.index, 5);
        // The catalog is untouched.
        let catalog = recovery.groups.remove(&CATALOG_GROUP).unwrap().recovered;
        assert_eq!(catalog.hard_state, HardState::new(2, None));
        // The group starts as its host starts it (voters from --peers):
        // the forced configuration is in force, and the survivor alone
        // elects itself.
        let mut node = Node::new(Config::new(1, [1, 2, 3]), group).unwrap();
        assert_eq!(node.membership().voters, BTreeSet::from([1]));
        let mut actions = Vec::new();
        for _ in 0..100 {
            node.step(concord::Input::Tick, &mut actions);
            for action in actions.drain(..) {
                if let concord::Action::Persist { id, .. } = action {
                    node.step(concord::Input::Persisted(id), &mut Vec::new());
                }
            }
            if node.role() == concord::Role::Leader {
                break;
            }
        }
        assert_eq!(node.role(), concord::Role::Leader);
        assert!(node.term() > 4);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_second_run_is_already_recovered_and_writes_nothing() {
        let dir = stopped_server("twice");
        assert!(matches!(
            run(&options(&dir)).0.unwrap(),
            ForceRecoverOutcome::Recovered(_)
        ));
        let before = log_files(&dir);
        let (result, printed) = run(&options(&dir));
        assert_eq!(
            result.unwrap(),
            ForceRecoverOutcome::AlreadyRecovered { index: 6, term: 4 }
        );
        assert!(printed.contains("nothing written"), "{printed}");
        assert_eq!(log_files(&dir), before, "the second run changed the log");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_interrupted_run_leaves_the_raised_term_and_running_again_completes_it() {
        let dir = stopped_server("interrupted");
        let mut interrupted = options(&dir);
        interrupted.stop_after = Some(ForceRecoverStep::HardStateWritten);
        let error = run(&interrupted).0.unwrap_err();
        assert!(
            error
                .to_string()
                .contains("stopped after writing the raised term"),
            "{error}"
        );
        // A start now finds the raised term and no forced entry: the old
        // entries stay under the old configuration.
        let group = read_back(&dir).groups.remove(&GROUP).unwrap().recovered;
        assert_eq!(group.hard_state, HardState::new(4, None));
        assert_eq!(group.entries.last().unwrap().index, 5);
        let (result, _) = run(&options(&dir));
        let ForceRecoverOutcome::Recovered(plan) = result.unwrap() else {
            panic!("the second run wrote nothing");
        };
        // One term past the raised one.
        assert_eq!((plan.entry.index, plan.entry.term), (6, 5));
        assert_eq!(plan.audit.term_before, 4);
        let group = read_back(&dir).groups.remove(&GROUP).unwrap().recovered;
        assert_eq!(group.hard_state, HardState::new(5, None));
        let last = group.entries.last().unwrap();
        assert!(matches!(last.payload, EntryPayload::ForcedMembership(_)));
        assert_eq!((last.index, last.term), (6, 5));
        assert_eq!(
            run(&options(&dir)).0.unwrap(),
            ForceRecoverOutcome::AlreadyRecovered { index: 6, term: 5 }
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn without_confirmation_the_plan_is_printed_and_nothing_written() {
        let dir = stopped_server("unconfirmed");
        let before = log_files(&dir);
        let mut unconfirmed = options(&dir);
        unconfirmed.confirmed = false;
        let (result, printed) = run(&unconfirmed);
        let error = result.unwrap_err();
        assert!(matches!(error, ForceRecoverError::NotConfirmed), "{error}");
        assert!(error
            .to_string()
            .contains("--i-understand-acknowledged-writes-may-be-lost"));
        assert!(printed.contains("will write: term 4"), "{printed}");
        assert!(printed.contains("MAY BE LOST"), "{printed}");
        assert_eq!(log_files(&dir), before);
        let group = read_back(&dir).groups.remove(&GROUP).unwrap().recovered;
        assert_eq!(group.hard_state, HardState::new(3, Some(2)));
        assert_eq!(group.entries.len(), 5);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_running_server_a_missing_group_and_another_layout_are_refused() {
        let dir = stopped_server("refusals");
        let before = log_files(&dir);
        {
            let _running = open_data_dir(&dir, MultiWalOptions::default()).unwrap();
            let error = run(&options(&dir)).0.unwrap_err();
            assert!(matches!(error, ForceRecoverError::InUse(_)), "{error}");
            assert!(
                error.to_string().contains("stop the server first"),
                "{error}"
            );
        }
        let mut other = options(&dir);
        other.group = 7;
        let error = run(&other).0.unwrap_err();
        assert!(
            error
                .to_string()
                .contains("no state of group 7 (groups with state here: [0, 1])"),
            "{error}"
        );
        // The catalog holds a term but no entry: there is a plan, but the
        // catalog's configuration is the one --peers gave.
        let mut catalog = options(&dir);
        catalog.group = CATALOG_GROUP;
        catalog.confirmed = false;
        let (result, printed) = run(&catalog);
        assert!(matches!(result, Err(ForceRecoverError::NotConfirmed)));
        assert!(
            printed.contains("none is stored in the group's log"),
            "{printed}"
        );
        // Another server's directory.
        identity::write(
            &dir,
            &identity::DataDirIdentity {
                cluster_id: "c1".to_string(),
                node_id: 2,
                incarnation: None,
                storage_format: crate::wal::FORMAT_VERSION,
            },
        )
        .unwrap();
        let error = run(&options(&dir)).0.unwrap_err();
        assert!(
            error
                .to_string()
                .contains("belongs to node 2 of cluster \"c1\", not node 1"),
            "{error}"
        );
        let mut right = options(&dir);
        right.node_id = 2;
        right.confirmed = false;
        assert!(matches!(
            run(&right).0,
            Err(ForceRecoverError::NotConfirmed)
        ));
        let written: Vec<_> = log_files(&dir)
            .into_iter()
            .filter(|(name, _)| name != "durable")
            .collect();
        let before: Vec<_> = before
            .into_iter()
            .filter(|(name, _)| name != "durable")
            .collect();
        assert_eq!(written, before, "a refused run wrote to the log");
        let single = scratch("refusals-single");
        fs::create_dir_all(single.join("wal")).unwrap();
        let error = run(&options(&single)).0.unwrap_err();
        assert!(
            error
                .to_string()
                .contains("write-ahead log of a single-group server"),
            "{error}"
        );
        let _ = fs::remove_dir_all(&dir);
        let _ = fs::remove_dir_all(&single);
    }
}
