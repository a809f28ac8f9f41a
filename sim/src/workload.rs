//! What simulated clients ask for, and what they make of the answers.
//!
//! The simulator drives clients generically: each client registers a
//! session, then repeatedly asks its [`Workload`] for a command, sends it
//! (with retries, redirects and timeouts, under the same session sequence
//! number), and reports the outcome back. A workload supplies the commands
//! and judges the results; [`crate::services::kv::KvWorkload`] is the
//! default one, and every service's workload is written in its own
//! requests and answers ([`crate::services::workload`]).

use std::collections::BTreeSet;

use bytes::Bytes;
use rand_chacha::ChaCha8Rng;

use crate::engine::FailureKind;

/// How one command of a client ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpResult<'a> {
    /// Executed exactly once; the state machine's response.
    Ok(&'a [u8]),
    /// Definitely not executed.
    Failed,
    /// The client gave up without knowing: executed once or never.
    Unknown,
}

/// Where a client's command took effect, as the simulator saw it: a
/// witness a checker may use to try the system's own order first
/// ([`crate::check::check_hinted`]). Never a proof: a checker must verify
/// any order it is steered to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TookEffect {
    /// Executed by a state machine as the log entry at `index` (the first
    /// server to apply it; a retry answered from the session cache is not
    /// executed again).
    Entry {
        /// The entry's log index.
        index: u64,
    },
    /// A read served without a log entry (read index, lease or follower
    /// read), answered by a state machine that had applied the log up to
    /// `applied`.
    Read {
        /// The applied index the answer reflects.
        applied: u64,
    },
}

impl TookEffect {
    /// A key that orders effects as the log does: the entry at index `i`
    /// is `2 i`, a read at applied index `a` is `2 a + 1` (after entry
    /// `a`, before entry `a + 1`).
    pub fn order_key(self) -> u64 {
        match self {
            TookEffect::Entry { index } => index.saturating_mul(2),
            TookEffect::Read { applied } => applied.saturating_mul(2).saturating_add(1),
        }
    }
}

/// A workload's verdict at the end of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkloadReport {
    /// Operations the workload checked.
    pub operations_checked: u64,
    /// A failure description when the history is wrong.
    pub failure: Option<String>,
}

/// Commands for simulated clients, and the check of their results.
///
/// Must be deterministic given the RNG it is handed: the simulator gives
/// it its own stream of the run's seeded RNG.
pub trait Workload {
    /// The next command of `client` (0-based), issued at `now_ns` of
    /// virtual time; `None` when the client has nothing more to do.
    fn next_command(&mut self, client: usize, now_ns: u64, rng: &mut ChaCha8Rng) -> Option<Bytes>;

    /// The outcome of `client`'s current command, learned at `now_ns`.
    fn complete(&mut self, client: usize, now_ns: u64, result: OpResult<'_>);

    /// A unique id of the logical operation a command carries, if the
    /// workload embeds one. The simulator then checks that no operation is
    /// executed twice by a state machine (exactly-once).
    fn command_id(&self, _command: &[u8]) -> Option<u64> {
        None
    }

    /// A short description of a command for the timeline.
    fn describe(&self, command: &[u8]) -> String {
        format!("{} bytes", command.len())
    }

    /// Whether `command` only reads, so that it may be served without a
    /// log entry (through [`StateMachine::query`]), on a read path the
    /// simulator picks.
    ///
    /// [`StateMachine::query`]: concord::state_machine::StateMachine::query
    fn is_read_only(&self, _command: &[u8]) -> bool {
        false
    }

    /// `client`'s current command, a read, was served on `path` (called
    /// just before [`Workload::complete`]), so the history can record it.
    fn served_by(&mut self, _client: usize, _path: concord::ReadPath) {}

    /// `client`'s command number `nth` (0-based, counting every command
    /// [`Workload::next_command`] gave that client) took effect at
    /// `effect`; called at most once per command, possibly after the
    /// client gave up on it. A workload may hand these to its checker as
    /// hints ([`crate::check::workload::Checked`] does); the default
    /// ignores them.
    fn took_effect(&mut self, _client: usize, _nth: u64, _effect: TookEffect) {}

    /// Whether this workload's check accounts for a forced recovery
    /// ([`Workload::forced_recovery`]). The simulator draws the
    /// forced-recovery scenario only for workloads that do.
    fn supports_forced_recovery(&self) -> bool {
        false
    }

    /// A forced recovery rebuilt the cluster from one survivor at
    /// `recovered_ns` (called once, before [`Workload::finish`]).
    /// `lost_op_ids` are the [`Workload::command_id`]s of the operations
    /// acknowledged to clients whose log entries the survivor did not
    /// hold: their effects may be absent from then on. Every other
    /// acknowledged operation survived.
    fn forced_recovery(&mut self, _recovered_ns: u64, _lost_op_ids: &BTreeSet<u64>) {}

    /// Checks what was recorded so far; called after every
    /// [`Workload::complete`]. An error fails the run at once, at this
    /// virtual time (`now_ns`), with [`Workload::failure_kind`]: an
    /// invariant a workload can judge as it goes ("money is conserved")
    /// is reported when it broke, not at the end. The default checks
    /// nothing.
    fn check_now(&mut self, now_ns: u64) -> Result<(), String> {
        let _ = now_ns;
        Ok(())
    }

    /// The kind a failure of this workload's checks is reported under:
    /// `workload` unless the workload names its own
    /// (`FailureKind::Workload("bank")`); the built-in key-value workload
    /// reports `linearizability`.
    fn failure_kind(&self) -> FailureKind {
        FailureKind::Workload("workload")
    }

    /// Checks everything recorded; called once at the end of a run.
    fn finish(&mut self) -> WorkloadReport;
}
