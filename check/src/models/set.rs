//! A set of strings: `add`, `remove`, `contains`, each element an
//! independent part.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::typed::{field_bool, field_value, JsonModel};
use crate::Model;

/// What a set client asks for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SetInput {
    /// Add the element; answers whether it was absent (and so added).
    Add(String),
    /// Remove the element; answers whether it was present.
    Remove(String),
    /// Answers whether the element is present.
    Contains(String),
}

impl SetInput {
    fn element(&self) -> &str {
        match self {
            SetInput::Add(v) | SetInput::Remove(v) | SetInput::Contains(v) => v,
        }
    }
}

/// A set, empty at first. Operations on different elements are
/// independent, so each element is checked on its own (near-linear time
/// for any number of elements). JSON lines:
/// `{"op":"add","value":V,"result":true}` (`result`, when completed: was
/// it absent), `remove` (was it present), `contains` (is it present).
#[derive(Clone, Debug, Default)]
pub struct Set;

impl Model for Set {
    type State = BTreeSet<String>;
    type Input = SetInput;
    type Output = bool;

    fn name(&self) -> String {
        "set".into()
    }
    fn init(&self) -> BTreeSet<String> {
        BTreeSet::new()
    }
    fn step(&self, s: &BTreeSet<String>, i: &SetInput, out: &bool) -> Option<BTreeSet<String>> {
        let present = s.contains(i.element());
        match i {
            SetInput::Add(v) => (*out != present).then(|| {
                let mut t = s.clone();
                t.insert(v.clone());
                t
            }),
            SetInput::Remove(v) => (*out == present).then(|| {
                let mut t = s.clone();
                t.remove(v);
                t
            }),
            SetInput::Contains(_) => (*out == present).then(|| s.clone()),
        }
    }
    fn step_unknown(&self, s: &BTreeSet<String>, i: &SetInput) -> Vec<BTreeSet<String>> {
        let mut t = s.clone();
        match i {
            SetInput::Add(v) => {
                t.insert(v.clone());
            }
            SetInput::Remove(v) => {
                t.remove(v);
            }
            SetInput::Contains(_) => {}
        }
        vec![t]
    }
    fn part(&self, i: &SetInput) -> Option<String> {
        Some(i.element().to_string())
    }
    fn read_only(&self, i: &SetInput, out: &bool) -> bool {
        // A failed add (already present) and a failed remove change
        // nothing either.
        matches!(i, SetInput::Contains(_)) || !*out
    }
    fn pins(&self, stuck: &SetInput, out: &bool, other: &SetInput) -> bool {
        // What could have made the element present or absent.
        let wants_present = match stuck {
            SetInput::Add(_) => !out,
            SetInput::Remove(_) | SetInput::Contains(_) => *out,
        };
        matches!(
            (other, wants_present),
            (SetInput::Add(_), true) | (SetInput::Remove(_), false)
        )
    }
    fn describe_input(&self, i: &SetInput) -> String {
        match i {
            SetInput::Add(v) => format!("add {v:?}"),
            SetInput::Remove(v) => format!("remove {v:?}"),
            SetInput::Contains(v) => format!("contains {v:?}"),
        }
    }
    fn describe_output(&self, o: &bool) -> String {
        o.to_string()
    }
    fn describe_state(&self, s: &BTreeSet<String>) -> String {
        format!("{s:?}")
    }
    fn state_heap_bytes(&self, s: &BTreeSet<String>) -> usize {
        crate::memory::btree_set_bytes::<String>(s.len())
            + s.iter()
                .map(|v| crate::memory::string_bytes(v, v.capacity()))
                .sum::<usize>()
    }
}

impl JsonModel for Set {
    fn op_names(&self) -> &'static [&'static str] {
        &["add", "remove", "contains"]
    }
    fn input_from_json(&self, op: &str, line: &Map<String, Value>) -> Result<SetInput, String> {
        let v = field_value(line, "value")?;
        Ok(match op {
            "add" => SetInput::Add(v),
            "remove" => SetInput::Remove(v),
            _ => SetInput::Contains(v),
        })
    }
    fn output_from_json(&self, _i: &SetInput, line: &Map<String, Value>) -> Result<bool, String> {
        field_bool(line, "result")
    }
    fn input_to_json(&self, i: &SetInput, line: &mut Map<String, Value>) {
        let op = match i {
            SetInput::Add(_) => "add",
            SetInput::Remove(_) => "remove",
            SetInput::Contains(_) => "contains",
        };
        line.insert("op".into(), op.into());
        line.insert("value".into(), i.element().into());
    }
    fn output_to_json(&self, o: &bool, line: &mut Map<String, Value>) {
        line.insert("result".into(), (*o).into());
    }
}
