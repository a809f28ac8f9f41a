//! Workloads that record and check a typed history: the workload names
//! its [`Model`] and how its commands and responses map to the model's
//! inputs and outputs; [`Checked`] turns it into a simulator
//! [`Workload`] that records every operation (call, return, outcome) and,
//! at the end of the run, checks the history against the model. No
//! hand-written judge.
//!
//! ```
//! use bytes::Bytes;
//! use concord_sim::check::workload::{Checked, ModelWorkload};
//! use concord_sim::models::{Counter, CounterInput, CounterOutput};
//! use rand::Rng;
//! use rand_chacha::ChaCha8Rng;
//!
//! /// Clients add to a counter (8-byte amounts) and read it (empty command).
//! struct Adds;
//!
//! impl ModelWorkload for Adds {
//!     type Model = Counter;
//!     fn model(&self) -> &Counter {
//!         &Counter
//!     }
//!     fn next_operation(&mut self, _client: usize, _now_ns: u64, rng: &mut ChaCha8Rng)
//!         -> Option<(CounterInput, Bytes)> {
//!         if rng.gen_bool(0.5) {
//!             Some((CounterInput::Read, Bytes::new()))
//!         } else {
//!             let n: i64 = rng.gen_range(1..10);
//!             Some((CounterInput::Add(n), Bytes::copy_from_slice(&n.to_le_bytes())))
//!         }
//!     }
//!     fn output(&self, input: &CounterInput, response: &[u8]) -> Result<CounterOutput, String> {
//!         match input {
//!             CounterInput::Add(_) => Ok(CounterOutput::Done),
//!             CounterInput::Read => <[u8; 8]>::try_from(response)
//!                 .map(|b| CounterOutput::Value(i64::from_le_bytes(b)))
//!                 .map_err(|_| format!("{} bytes, want 8", response.len())),
//!         }
//!     }
//! }
//!
//! let workload = Checked::new(Adds, 4); // 4 clients
//! # let _ = workload;
//! ```

use bytes::Bytes;
use rand_chacha::ChaCha8Rng;

use super::{check_hinted, CheckConfig, Model, Op, Outcome, Verdict};
use crate::workload::{OpResult, TookEffect, Workload, WorkloadReport};

/// A workload whose operations are a model's.
pub trait ModelWorkload {
    /// The model the service claims to implement.
    type Model: Model;

    /// The model, with its parameters (e.g. a bank's opening balances).
    fn model(&self) -> &Self::Model;

    /// The next operation of `client` at `now_ns`: its model input and the
    /// command that asks the service for it; `None` when the client is
    /// done. Must be deterministic given `rng`.
    fn next_operation(
        &mut self,
        client: usize,
        now_ns: u64,
        rng: &mut ChaCha8Rng,
    ) -> Option<(<Self::Model as Model>::Input, Bytes)>;

    /// The model output of the service's `response` to `input`; an error
    /// when the response has the wrong shape (that fails the run).
    fn output(
        &self,
        input: &<Self::Model as Model>::Input,
        response: &[u8],
    ) -> Result<<Self::Model as Model>::Output, String>;

    /// Whether `input` only reads (it may then be served without a log
    /// entry, on a read path the simulator picks).
    fn is_read_only(&self, _input: &<Self::Model as Model>::Input) -> bool {
        false
    }

    /// A unique id of the operation a command carries, if the workload
    /// embeds one (see [`Workload::command_id`]).
    fn command_id(&self, _command: &[u8]) -> Option<u64> {
        None
    }

    /// The limits of the check at the end of the run.
    fn check_config(&self) -> CheckConfig {
        CheckConfig {
            shrink_steps: 5_000_000,
            ..CheckConfig::default()
        }
    }
}

type ModelOp<W> = Op<
    <<W as ModelWorkload>::Model as Model>::Input,
    <<W as ModelWorkload>::Model as Model>::Output,
>;

/// A [`ModelWorkload`] as a simulator [`Workload`]: records the history
/// and checks it against the model when the run ends.
///
/// It also records where the simulator saw each command take effect
/// ([`Workload::took_effect`]: its log index, or the applied index a read
/// served without the log reflects) and hands that to the check as a
/// witness ([`check_hinted`]): the check tries that order first, so a
/// history with dozens of operations of unknown outcome is decided in a
/// few steps per operation, and still accepts only an order it verified
/// itself.
pub struct Checked<W: ModelWorkload> {
    workload: W,
    ops: Vec<ModelOp<W>>,
    /// Per operation: where it took effect ([`TookEffect::order_key`]).
    hints: Vec<Option<u64>>,
    /// Per client: its operations (indices into `ops`), in issue order.
    issued: Vec<Vec<usize>>,
    /// Per client: its operation in flight (index into `ops`) and command.
    current: Vec<Option<(usize, Bytes)>>,
    /// The command just issued and whether it only reads.
    last: Option<(Bytes, bool)>,
    /// The first response of the wrong shape.
    bad_response: Option<String>,
    verdict: Option<Verdict>,
}

impl<W: ModelWorkload> Checked<W> {
    /// Wraps `workload` for `clients` clients.
    pub fn new(workload: W, clients: usize) -> Self {
        Checked {
            workload,
            ops: Vec::new(),
            hints: Vec::new(),
            issued: Vec::new(),
            current: vec![None; clients],
            last: None,
            bad_response: None,
            verdict: None,
        }
    }

    /// The history recorded so far.
    pub fn history(&self) -> &[ModelOp<W>] {
        &self.ops
    }

    /// Per operation of [`Checked::history`]: where the simulator saw it
    /// take effect ([`TookEffect::order_key`]), `None` where it did not
    /// (never executed, or not reported): the witness the check is
    /// handed.
    pub fn hints(&self) -> &[Option<u64>] {
        &self.hints
    }

    /// The wrapped workload.
    pub fn workload(&self) -> &W {
        &self.workload
    }

    /// The verdict of the check at the end of the run (`None` before).
    pub fn verdict(&self) -> Option<&Verdict> {
        self.verdict.as_ref()
    }

    fn slot(&mut self, client: usize) -> &mut Option<(usize, Bytes)> {
        if client >= self.current.len() {
            self.current.resize(client + 1, None);
        }
        &mut self.current[client]
    }
}

impl<W: ModelWorkload> Workload for Checked<W> {
    fn next_command(&mut self, client: usize, now_ns: u64, rng: &mut ChaCha8Rng) -> Option<Bytes> {
        let (input, command) = self.workload.next_operation(client, now_ns, rng)?;
        let read_only = self.workload.is_read_only(&input);
        self.ops.push(Op::unknown(client as u64, input, now_ns));
        self.hints.push(None);
        let index = self.ops.len() - 1;
        if client >= self.issued.len() {
            self.issued.resize(client + 1, Vec::new());
        }
        self.issued[client].push(index);
        *self.slot(client) = Some((index, command.clone()));
        self.last = Some((command.clone(), read_only));
        Some(command)
    }

    fn complete(&mut self, client: usize, now_ns: u64, result: OpResult<'_>) {
        let Some((index, _)) = self.slot(client).take() else {
            return;
        };
        match result {
            OpResult::Ok(response) => {
                match self.workload.output(&self.ops[index].input, response) {
                    Ok(output) => {
                        let op = &mut self.ops[index];
                        op.ret = Some(now_ns.max(op.call));
                        op.outcome = Outcome::Ok(output);
                    }
                    Err(reason) => {
                        if self.bad_response.is_none() {
                            self.bad_response = Some(format!(
                                "client {client}'s {} got a response of the wrong shape ({} bytes): {reason}",
                                self.workload.model().describe_input(&self.ops[index].input),
                                response.len()
                            ));
                        }
                    }
                }
            }
            OpResult::Failed => {
                let op = &mut self.ops[index];
                op.ret = Some(now_ns.max(op.call));
                op.outcome = Outcome::Failed;
            }
            OpResult::Unknown => {}
        }
    }

    fn command_id(&self, command: &[u8]) -> Option<u64> {
        self.workload.command_id(command)
    }

    fn took_effect(&mut self, client: usize, nth: u64, effect: TookEffect) {
        let index = self
            .issued
            .get(client)
            .and_then(|ops| ops.get(usize::try_from(nth).ok()?));
        if let Some(&index) = index {
            self.hints[index].get_or_insert(effect.order_key());
        }
    }

    fn describe(&self, command: &[u8]) -> String {
        self.current
            .iter()
            .flatten()
            .find(|(_, c)| c.as_ref() == command)
            .map(|(i, _)| self.workload.model().describe_input(&self.ops[*i].input))
            .unwrap_or_else(|| format!("{} bytes", command.len()))
    }

    fn is_read_only(&self, command: &[u8]) -> bool {
        matches!(&self.last, Some((c, true)) if c.as_ref() == command)
    }

    fn finish(&mut self) -> WorkloadReport {
        let model = self.workload.model();
        let completed = self
            .ops
            .iter()
            .filter(|o| matches!(o.outcome, Outcome::Ok(_)))
            .count() as u64;
        if let Some(bad) = &self.bad_response {
            return WorkloadReport {
                operations_checked: completed,
                failure: Some(bad.clone()),
            };
        }
        let verdict = check_hinted(model, &self.ops, &self.hints, &self.workload.check_config());
        let failure = match &verdict {
            Verdict::Linearizable => None,
            Verdict::NotLinearizable(f) => Some(f.to_string()),
            other => Some(other.to_string()),
        };
        self.verdict = Some(verdict);
        WorkloadReport {
            operations_checked: completed,
            failure,
        }
    }
}
