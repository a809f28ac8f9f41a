//! A counter: `add` an amount, `read` the total.

use serde_json::{Map, Value};

use crate::typed::{field_i64, JsonModel};
use crate::Model;

/// What a counter client asks for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CounterInput {
    /// Add this amount (may be negative).
    Add(i64),
    /// Read the total.
    Read,
}

/// What a counter answered.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CounterOutput {
    /// An add completed.
    Done,
    /// A read's total.
    Value(i64),
}

/// A counter starting at 0 (wrapping on overflow). JSON lines:
/// `{"op":"add","amount":5}`, `{"op":"read","value":12}` (the total read,
/// when completed).
#[derive(Clone, Debug, Default)]
pub struct Counter;

impl Model for Counter {
    type State = i64;
    type Input = CounterInput;
    type Output = CounterOutput;

    fn name(&self) -> String {
        "counter".into()
    }
    fn init(&self) -> i64 {
        0
    }
    fn step(&self, s: &i64, i: &CounterInput, o: &CounterOutput) -> Option<i64> {
        match (i, o) {
            (CounterInput::Add(n), CounterOutput::Done) => Some(s.wrapping_add(*n)),
            (CounterInput::Read, CounterOutput::Value(v)) => (v == s).then_some(*s),
            _ => None,
        }
    }
    fn step_unknown(&self, s: &i64, i: &CounterInput) -> Vec<i64> {
        match i {
            CounterInput::Add(n) => vec![s.wrapping_add(*n)],
            CounterInput::Read => vec![*s],
        }
    }
    fn read_only(&self, i: &CounterInput, _o: &CounterOutput) -> bool {
        matches!(i, CounterInput::Read)
    }
    fn pins(&self, _stuck: &CounterInput, _o: &CounterOutput, other: &CounterInput) -> bool {
        // Any add may be part of the total read.
        matches!(other, CounterInput::Add(_))
    }
    fn describe_input(&self, i: &CounterInput) -> String {
        match i {
            CounterInput::Add(n) => format!("add {n}"),
            CounterInput::Read => "read".into(),
        }
    }
    fn describe_output(&self, o: &CounterOutput) -> String {
        match o {
            CounterOutput::Done => "ok".into(),
            CounterOutput::Value(v) => v.to_string(),
        }
    }
    fn describe_state(&self, s: &i64) -> String {
        s.to_string()
    }
}

impl JsonModel for Counter {
    fn op_names(&self) -> &'static [&'static str] {
        &["add", "read"]
    }
    fn input_from_json(&self, op: &str, line: &Map<String, Value>) -> Result<CounterInput, String> {
        Ok(match op {
            "add" => CounterInput::Add(field_i64(line, "amount")?),
            _ => CounterInput::Read,
        })
    }
    fn output_from_json(
        &self,
        i: &CounterInput,
        line: &Map<String, Value>,
    ) -> Result<CounterOutput, String> {
        Ok(match i {
            CounterInput::Add(_) => CounterOutput::Done,
            CounterInput::Read => CounterOutput::Value(field_i64(line, "value")?),
        })
    }
    fn input_to_json(&self, i: &CounterInput, line: &mut Map<String, Value>) {
        match i {
            CounterInput::Add(n) => {
                line.insert("op".into(), "add".into());
                line.insert("amount".into(), (*n).into());
            }
            CounterInput::Read => {
                line.insert("op".into(), "read".into());
            }
        }
    }
    fn output_to_json(&self, o: &CounterOutput, line: &mut Map<String, Value>) {
        if let CounterOutput::Value(v) = o {
            line.insert("value".into(), (*v).into());
        }
    }
}
