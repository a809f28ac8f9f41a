//! The offline operator command behind `concord-cli force-recover`: forced
//! recovery of a stopped server's data directory after a majority of the
//! cluster is lost for good. **Unsafe**: see [`concord::recovery`] for what it
//! does and what it loses.
//!
//! [`force_recover`] opens the data directory with the server's own
//! write-ahead log code ([`FileStorage`]), plans the recovery with
//! [`plan_forced_recovery`], prints what it is about to do and what may be
//! lost, and writes the plan through the same writer thread and group
//! commit the server uses: the raised term and the forced configuration
//! entry (with its audit record), fsynced, in one write (the hard state is
//! made durable before the entry). Running it again on the result writes
//! nothing ([`ForceRecoverOutcome::AlreadyRecovered`]); a run interrupted
//! part way leaves at most a raised term, and running it again completes it.
//!
//! The server must be stopped: the log has no lock, and a server writing
//! to the same directory at the same time would corrupt it.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::storage::{PersistRequest, Storage, StorageError};
use crate::wal::{FileStorage, WalOptions};
use concord::recovery::{plan_forced_recovery, ForcedRecoveryPlan, ForcedRecoveryRequest};
use concord::{EntryPayload, NodeId, Recovered, RecoveryError, WriteId};

/// What the operator asked for.
#[derive(Clone, Debug)]
pub struct ForceRecoverOptions {
    /// The stopped server's data directory.
    pub data_dir: PathBuf,
    /// The server's id (the survivor).
    pub node_id: NodeId,
    /// The voters of the forced configuration; empty means the survivor
    /// alone (the usual choice: add servers back with `member add-learner`
    /// and `member promote` once it serves).
    pub voters: BTreeSet<NodeId>,
    /// Why; kept in the log.
    pub reason: String,
    /// The operator confirmed that acknowledged writes may be lost. Without
    /// it nothing is written.
    pub confirmed: bool,
}

/// What [`force_recover`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ForceRecoverOutcome {
    /// The forced configuration was written.
    Recovered(Box<ForcedRecoveryPlan>),
    /// The directory already ends with this forced recovery; nothing was
    /// written.
    AlreadyRecovered {
        /// Index of the forced entry.
        index: concord::Index,
        /// Its term.
        term: concord::Term,
    },
}

/// Why [`force_recover`] wrote nothing.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ForceRecoverError {
    /// The confirmation flag was not given.
    #[error("refusing to force a recovery without --i-understand-acknowledged-writes-may-be-lost: writes the lost servers acknowledged may be lost for good; read the plan above and give the flag to proceed")]
    NotConfirmed,
    /// The data directory holds no write-ahead log.
    #[error("{path} holds no write-ahead log (no {path}/wal); name the data directory the stopped server was started with")]
    NoLog {
        /// The directory.
        path: String,
    },
    /// The data directory holds a log with no term and no entry: there is
    /// nothing to recover from.
    #[error("{path} holds an empty log (no term, no entry): there is nothing to recover from; pick the survivor with the longest log")]
    EmptyLog {
        /// The directory.
        path: String,
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

/// Forces `options`' configuration on the stopped server's data directory
/// (see the [module documentation](self)), printing what it does to `out`.
pub fn force_recover(
    options: &ForceRecoverOptions,
    out: &mut dyn Write,
) -> Result<ForceRecoverOutcome, ForceRecoverError> {
    let wal_dir = options.data_dir.join("wal");
    if !wal_dir.is_dir() {
        return Err(ForceRecoverError::NoLog {
            path: options.data_dir.display().to_string(),
        });
    }
    let mut storage = FileStorage::open(&options.data_dir, WalOptions::default())?;
    let recovered = storage.recover()?;
    if recovered.hard_state.term == 0 && recovered.entries.is_empty() && recovered.base.index == 0 {
        return Err(ForceRecoverError::EmptyLog {
            path: options.data_dir.display().to_string(),
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
                "{}: the log already ends with this forced recovery (index {index}, term {term}); nothing written. Start the server.",
                options.data_dir.display()
            )?;
            return Ok(ForceRecoverOutcome::AlreadyRecovered { index, term });
        }
        Err(error) => return Err(error.into()),
    };
    print_plan(out, &options.data_dir, &recovered, &plan)?;
    if !options.confirmed {
        return Err(ForceRecoverError::NotConfirmed);
    }
    write_plan(storage, &plan)?;
    writeln!(
        out,
        "DONE: forced configuration written at index {} term {} and fsynced. Start the server as before; it elects itself and commits. Wipe the data directories of the lost servers before any of them comes back.",
        plan.entry.index, plan.entry.term
    )?;
    Ok(ForceRecoverOutcome::Recovered(Box::new(plan)))
}

/// The loud part: what is about to happen and what may be lost.
fn print_plan(
    out: &mut dyn Write,
    data_dir: &Path,
    recovered: &Recovered,
    plan: &ForcedRecoveryPlan,
) -> std::io::Result<()> {
    let audit = &plan.audit;
    writeln!(
        out,
        "!!! FORCED RECOVERY (UNSAFE) of {} !!!",
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
            "configuration in force: the one the server was started with (--peers); none is stored in its log"
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
        "MAY BE LOST: every write the lost servers acknowledged that is not in this log (after index {}); this server cannot know them",
        audit.last_before.index
    )?;
    Ok(())
}

/// Writes the plan through the server's writer thread: one write, hard
/// state first, fsynced, then waits for it to be reported durable.
fn write_plan(mut storage: FileStorage, plan: &ForcedRecoveryPlan) -> Result<(), StorageError> {
    let (notify, mut durable) = tokio::sync::mpsc::unbounded_channel();
    storage.start(notify)?;
    let id = WriteId(1);
    storage.submit(PersistRequest {
        id,
        hard_state: Some(plan.hard_state),
        truncate_after: None,
        entries: vec![plan.entry.clone()].into(),
    });
    // Shutting down finishes (and reports) every queued write.
    storage.shutdown();
    loop {
        match durable.try_recv() {
            Ok(Ok(done)) if done >= id => return Ok(()),
            Ok(Ok(_)) => continue,
            Ok(Err(error)) => return Err(error),
            Err(_) => {
                return Err(StorageError::Misuse(
                    "the log writer stopped without reporting the forced recovery durable"
                        .to_string(),
                ))
            }
        }
    }
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

On a multi-group server's data directory (`log/`, `concord-node --groups N`)
it recovers one group: --group G (default 1); recover each group that lost
its majority the same way, the catalog with --group 0. Two running copies
are refused: the server holds the directory's lock.

Exit status: 0 done (or already done: nothing written), 1 refused or failed.";
