//! Your own model, checked from the shell: a lock service's history
//! judged by a model that concord-sim does not ship.
//!
//! The service hands out one lock. `acquire` by an owner answers whether
//! it was granted (a try-lock: never waits); `release` by an owner answers
//! whether that owner held it. Recorded as JSON lines, one operation per
//! line (the envelope of `concord_check::typed` plus `owner` and,
//! when completed, `granted` or `released`):
//!
//! ```text
//! {"client":1,"op":"acquire","owner":"a","call":0,"return":10,"ok":true,"granted":true}
//! {"client":2,"op":"acquire","owner":"b","call":5,"return":15,"ok":true,"granted":false}
//! {"client":1,"op":"release","owner":"a","call":20,"return":30,"ok":true,"released":true}
//! ```
//!
//! This binary is `concord-sim check` for that model: the same flags,
//! report and exit codes (0 linearizable, 1 not, 2 a limit reached, 3 bad
//! input, 4 empty).
//!
//! ```text
//! cargo run -p concord-sim --example own_model_check -- sim/tests/data/lock-linearizable.jsonl
//! cargo run -p concord-sim --example own_model_check -- sim/tests/data/lock-two-holders.jsonl
//! ```
//!
//! The second history has two owners granted the lock at once (what a
//! deposed leader that still answers would do): exit 1, with the
//! operations that show it.

use std::process::ExitCode;

use concord_check::typed::{field_bool, field_value, JsonModel};
use concord_check::Model;
use serde_json::{Map, Value};

/// What a client of the lock asks for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LockInput {
    /// Take the lock for this owner, if it is free.
    Acquire(String),
    /// Give the lock back, if this owner holds it.
    Release(String),
}

/// What the lock answered: whether the acquire or release took effect.
/// A refusal is an answer too, and constrains the order as much as a
/// grant: the lock was held by someone at that instant.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Granted(pub bool);

/// The sequential lock: free, or held by one owner.
#[derive(Clone, Debug, Default)]
pub struct Lock;

impl Lock {
    /// The state after `input` in `holder`, and what the lock answers.
    fn apply(holder: &Option<String>, input: &LockInput) -> (Option<String>, Granted) {
        match (input, holder) {
            (LockInput::Acquire(owner), None) => (Some(owner.clone()), Granted(true)),
            (LockInput::Acquire(_), Some(_)) => (holder.clone(), Granted(false)),
            (LockInput::Release(owner), Some(held)) if held == owner => (None, Granted(true)),
            (LockInput::Release(_), _) => (holder.clone(), Granted(false)),
        }
    }
}

impl Model for Lock {
    type State = Option<String>;
    type Input = LockInput;
    type Output = Granted;

    fn name(&self) -> String {
        "lock".into()
    }

    fn init(&self) -> Option<String> {
        None
    }

    fn step(
        &self,
        holder: &Option<String>,
        input: &LockInput,
        output: &Granted,
    ) -> Option<Option<String>> {
        // The lock is deterministic: one answer per state, and the
        // recorded one must be it.
        let (next, answer) = Lock::apply(holder, input);
        (answer == *output).then_some(next)
    }

    fn step_unknown(&self, holder: &Option<String>, input: &LockInput) -> Vec<Option<String>> {
        vec![Lock::apply(holder, input).0]
    }

    fn read_only(&self, _input: &LockInput, output: &Granted) -> bool {
        // A refused acquire or release changed nothing.
        !output.0
    }

    fn pins(&self, _stuck: &LockInput, _output: &Granted, _other: &LockInput) -> bool {
        // Any acquire or release may be what put the lock in the state
        // the stuck operation saw: the explanation keeps them all.
        true
    }

    fn describe_input(&self, input: &LockInput) -> String {
        match input {
            LockInput::Acquire(owner) => format!("acquire by {owner}"),
            LockInput::Release(owner) => format!("release by {owner}"),
        }
    }

    fn describe_output(&self, output: &Granted) -> String {
        if output.0 { "granted" } else { "refused" }.to_string()
    }

    fn describe_state(&self, holder: &Option<String>) -> String {
        match holder {
            Some(owner) => format!("held by {owner}"),
            None => "free".to_string(),
        }
    }
}

impl JsonModel for Lock {
    fn op_names(&self) -> &'static [&'static str] {
        &["acquire", "release"]
    }

    fn input_from_json(&self, op: &str, line: &Map<String, Value>) -> Result<LockInput, String> {
        let owner = field_value(line, "owner")?;
        Ok(match op {
            "acquire" => LockInput::Acquire(owner),
            _ => LockInput::Release(owner),
        })
    }

    fn output_from_json(
        &self,
        input: &LockInput,
        line: &Map<String, Value>,
    ) -> Result<Granted, String> {
        let field = match input {
            LockInput::Acquire(_) => "granted",
            LockInput::Release(_) => "released",
        };
        field_bool(line, field).map(Granted)
    }

    fn input_to_json(&self, input: &LockInput, line: &mut Map<String, Value>) {
        let (op, owner) = match input {
            LockInput::Acquire(owner) => ("acquire", owner),
            LockInput::Release(owner) => ("release", owner),
        };
        line.insert("op".into(), op.into());
        line.insert("owner".into(), owner.as_str().into());
    }

    fn output_to_json(&self, output: &Granted, line: &mut Map<String, Value>) {
        // The field is named after the operation, which is already in
        // the line.
        let field = match line.get("op").and_then(Value::as_str) {
            Some("release") => "released",
            _ => "granted",
        };
        line.insert(field.into(), output.0.into());
    }
}

fn main() -> ExitCode {
    concord_check::main_with(Lock)
}
