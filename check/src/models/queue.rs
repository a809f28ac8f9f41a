//! A FIFO queue: `enqueue` a value, `dequeue` the oldest (or empty).

use std::collections::VecDeque;

use serde_json::{Map, Value};

use crate::typed::{field_value, value_text, JsonModel};
use crate::Model;

/// What a queue client asks for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum QueueInput {
    /// Append a value at the back.
    Enqueue(String),
    /// Take the value at the front.
    Dequeue,
}

/// What a queue answered.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum QueueOutput {
    /// An enqueue completed.
    Done,
    /// A dequeue took this value.
    Value(String),
    /// A dequeue found the queue empty.
    Empty,
}

/// A FIFO queue, empty at first. JSON lines: `{"op":"enqueue","value":V}`,
/// `{"op":"dequeue","value":V}` (when completed: the value taken, `null`
/// when the queue was empty).
#[derive(Clone, Debug, Default)]
pub struct Queue;

impl Model for Queue {
    type State = VecDeque<String>;
    type Input = QueueInput;
    type Output = QueueOutput;

    fn name(&self) -> String {
        "queue".into()
    }
    fn init(&self) -> VecDeque<String> {
        VecDeque::new()
    }
    fn step(
        &self,
        s: &VecDeque<String>,
        i: &QueueInput,
        o: &QueueOutput,
    ) -> Option<VecDeque<String>> {
        match (i, o) {
            (QueueInput::Enqueue(v), QueueOutput::Done) => {
                let mut t = s.clone();
                t.push_back(v.clone());
                Some(t)
            }
            (QueueInput::Dequeue, QueueOutput::Value(v)) => (s.front() == Some(v)).then(|| {
                let mut t = s.clone();
                t.pop_front();
                t
            }),
            (QueueInput::Dequeue, QueueOutput::Empty) => s.is_empty().then(|| s.clone()),
            _ => None,
        }
    }
    fn step_unknown(&self, s: &VecDeque<String>, i: &QueueInput) -> Vec<VecDeque<String>> {
        let mut t = s.clone();
        match i {
            QueueInput::Enqueue(v) => t.push_back(v.clone()),
            QueueInput::Dequeue => {
                t.pop_front();
            }
        }
        vec![t]
    }
    fn read_only(&self, i: &QueueInput, o: &QueueOutput) -> bool {
        matches!((i, o), (QueueInput::Dequeue, QueueOutput::Empty))
    }
    fn pins(&self, stuck: &QueueInput, o: &QueueOutput, other: &QueueInput) -> bool {
        match (stuck, o, other) {
            (QueueInput::Dequeue, QueueOutput::Value(v), QueueInput::Enqueue(w)) => v == w,
            _ => false,
        }
    }
    fn describe_input(&self, i: &QueueInput) -> String {
        match i {
            QueueInput::Enqueue(v) => format!("enqueue {v:?}"),
            QueueInput::Dequeue => "dequeue".into(),
        }
    }
    fn describe_output(&self, o: &QueueOutput) -> String {
        match o {
            QueueOutput::Done => "ok".into(),
            QueueOutput::Value(v) => format!("{v:?}"),
            QueueOutput::Empty => "empty".into(),
        }
    }
    fn describe_state(&self, s: &VecDeque<String>) -> String {
        format!("{:?}", s.iter().collect::<Vec<_>>())
    }
    fn state_heap_bytes(&self, s: &VecDeque<String>) -> usize {
        crate::memory::alloc_bytes(s.capacity() * std::mem::size_of::<String>())
            + s.iter()
                .map(|v| crate::memory::string_bytes(v, v.capacity()))
                .sum::<usize>()
    }
}

impl JsonModel for Queue {
    fn op_names(&self) -> &'static [&'static str] {
        &["enqueue", "dequeue"]
    }
    fn input_from_json(&self, op: &str, line: &Map<String, Value>) -> Result<QueueInput, String> {
        Ok(match op {
            "enqueue" => QueueInput::Enqueue(field_value(line, "value")?),
            _ => QueueInput::Dequeue,
        })
    }
    fn output_from_json(
        &self,
        i: &QueueInput,
        line: &Map<String, Value>,
    ) -> Result<QueueOutput, String> {
        Ok(match i {
            QueueInput::Enqueue(_) => QueueOutput::Done,
            QueueInput::Dequeue => match line.get("value") {
                None => return Err("missing field \"value\" (null when empty)".into()),
                Some(Value::Null) => QueueOutput::Empty,
                Some(v) => QueueOutput::Value(value_text(v).ok_or_else(|| {
                    format!("field \"value\" must be a string, an integer or null, got {v}")
                })?),
            },
        })
    }
    fn input_to_json(&self, i: &QueueInput, line: &mut Map<String, Value>) {
        match i {
            QueueInput::Enqueue(v) => {
                line.insert("op".into(), "enqueue".into());
                line.insert("value".into(), v.clone().into());
            }
            QueueInput::Dequeue => {
                line.insert("op".into(), "dequeue".into());
            }
        }
    }
    fn output_to_json(&self, o: &QueueOutput, line: &mut Map<String, Value>) {
        match o {
            QueueOutput::Done => {}
            QueueOutput::Value(v) => {
                line.insert("value".into(), v.clone().into());
            }
            QueueOutput::Empty => {
                line.insert("value".into(), Value::Null);
            }
        }
    }
}
