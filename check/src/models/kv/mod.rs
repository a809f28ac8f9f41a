//! The key-value store of [`crate::history`] as a [`Model`]: `get`, `put`,
//! `append`, `cas` on string keys, each key an independent part, decided
//! by the key-value checker of [`crate::linearizability`] (its rules for
//! appends and unknown writes make it the fast path); the generic search
//! takes over only where that checker gives up.

use serde_json::{Map, Value};

use crate::history::{self, Operation, Output};
use crate::typed::{field_bool, field_value, JsonModel};
use crate::{Decision, Model, Op, Outcome};

pub(crate) mod search;

/// A key-value operation's input: the key and the request.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KvInput {
    /// The key.
    pub key: String,
    /// The request.
    pub op: history::Op,
}

/// The key-value store: every key starts as `""`. JSON lines are those of
/// [`crate::history`].
#[derive(Clone, Debug, Default)]
pub struct Kv;

impl Kv {
    /// A typed history from a key-value history.
    pub fn from_history(ops: &[Operation]) -> Vec<Op<KvInput, Output>> {
        ops.iter()
            .map(|o| Op {
                client: o.client,
                input: KvInput {
                    key: o.key.clone(),
                    op: o.op.clone(),
                },
                call: o.call,
                ret: o.ret,
                outcome: match &o.outcome {
                    history::Outcome::Ok(out) => Outcome::Ok(out.clone()),
                    history::Outcome::Failed => Outcome::Failed,
                    history::Outcome::Unknown => Outcome::Unknown,
                },
            })
            .collect()
    }

    /// A key-value history from a typed one.
    pub fn to_history(ops: &[&Op<KvInput, Output>]) -> Vec<Operation> {
        ops.iter()
            .map(|o| Operation {
                client: o.client,
                key: o.input.key.clone(),
                op: o.input.op.clone(),
                call: o.call,
                ret: o.ret,
                outcome: match &o.outcome {
                    Outcome::Ok(out) => history::Outcome::Ok(out.clone()),
                    Outcome::Failed => history::Outcome::Failed,
                    Outcome::Unknown => history::Outcome::Unknown,
                },
            })
            .collect()
    }
}

/// The store: keys and their values (a missing key is `""`; a key set to
/// `""` is removed, so that equal stores compare equal).
pub type KvState = std::collections::BTreeMap<String, String>;

fn with(s: &KvState, key: &str, value: String) -> KvState {
    let mut t = s.clone();
    if value.is_empty() {
        t.remove(key);
    } else {
        t.insert(key.to_string(), value);
    }
    t
}

impl Model for Kv {
    type State = KvState;
    type Input = KvInput;
    type Output = Output;

    fn name(&self) -> String {
        "kv".into()
    }
    fn init(&self) -> KvState {
        KvState::new()
    }
    fn step(&self, st: &KvState, i: &KvInput, o: &Output) -> Option<KvState> {
        let s = st.get(&i.key).map_or("", String::as_str);
        match (&i.op, o) {
            (history::Op::Get, Output::Value(v)) => (v == s).then(|| st.clone()),
            (history::Op::Put { value }, Output::Done) => Some(with(st, &i.key, value.clone())),
            (history::Op::Append { value }, Output::Done) => {
                Some(with(st, &i.key, format!("{s}{value}")))
            }
            (history::Op::Cas { from, to }, Output::Swapped(true)) => {
                (from == s).then(|| with(st, &i.key, to.clone()))
            }
            (history::Op::Cas { from, .. }, Output::Swapped(false)) => {
                (from != s).then(|| st.clone())
            }
            _ => None,
        }
    }
    fn step_unknown(&self, st: &KvState, i: &KvInput) -> Vec<KvState> {
        let s = st.get(&i.key).map_or("", String::as_str);
        vec![match &i.op {
            history::Op::Get => st.clone(),
            history::Op::Put { value } => with(st, &i.key, value.clone()),
            history::Op::Append { value } => with(st, &i.key, format!("{s}{value}")),
            history::Op::Cas { from, to } => {
                if from == s {
                    with(st, &i.key, to.clone())
                } else {
                    st.clone()
                }
            }
        }]
    }
    fn part(&self, i: &KvInput) -> Option<String> {
        Some(i.key.clone())
    }
    fn read_only(&self, i: &KvInput, o: &Output) -> bool {
        matches!(
            (&i.op, o),
            (history::Op::Get, _) | (history::Op::Cas { .. }, Output::Swapped(false))
        )
    }
    fn pins(&self, stuck: &KvInput, o: &Output, other: &KvInput) -> bool {
        let needed = match (&stuck.op, o) {
            (history::Op::Get, Output::Value(v)) => v,
            (history::Op::Cas { from, .. }, Output::Swapped(true)) => from,
            _ => return false,
        };
        match &other.op {
            history::Op::Put { value } | history::Op::Cas { to: value, .. } => {
                needed.starts_with(value.as_str())
            }
            history::Op::Append { value } => needed.contains(value.as_str()),
            history::Op::Get => false,
        }
    }
    fn decide(&self, ops: &[&Op<KvInput, Output>]) -> Option<Decision<KvState>> {
        Some(match search::decide_key(&Kv::to_history(ops))? {
            Ok(()) => Decision::Linearizable,
            Err((index, values)) => {
                // A part is one key: every operation has the stuck one's.
                let key = &ops[index].input.key;
                Decision::Stuck {
                    index,
                    states: values
                        .into_iter()
                        .map(|v| with(&KvState::new(), key, v))
                        .collect(),
                }
            }
        })
    }
    fn describe_input(&self, i: &KvInput) -> String {
        match &i.op {
            history::Op::Get => format!("get {:?}", i.key),
            history::Op::Put { value } => format!("put {:?} {value:?}", i.key),
            history::Op::Append { value } => format!("append {:?} {value:?}", i.key),
            history::Op::Cas { from, to } => format!("cas {:?} {from:?}->{to:?}", i.key),
        }
    }
    fn describe_output(&self, o: &Output) -> String {
        match o {
            Output::Done => "ok".into(),
            Output::Value(v) => format!("{v:?}"),
            Output::Swapped(s) => format!("swapped={s}"),
        }
    }
    fn describe_state(&self, s: &KvState) -> String {
        // Within a part there is one key: show its value alone.
        match s.len() {
            0 => "\"\"".to_string(),
            1 => format!("{:?}", s.values().next().expect("one")),
            _ => format!("{s:?}"),
        }
    }
    fn state_heap_bytes(&self, s: &KvState) -> usize {
        crate::memory::btree_map_bytes::<String, String>(s.len())
            + s.iter()
                .map(|(k, v)| {
                    crate::memory::string_bytes(k, k.capacity())
                        + crate::memory::string_bytes(v, v.capacity())
                })
                .sum::<usize>()
    }
}

impl JsonModel for Kv {
    fn op_names(&self) -> &'static [&'static str] {
        &["get", "put", "append", "cas"]
    }
    fn input_from_json(&self, op: &str, line: &Map<String, Value>) -> Result<KvInput, String> {
        let key = match line.get("key") {
            Some(Value::String(k)) => k.clone(),
            Some(v) => return Err(format!("field \"key\" must be a string, got {v}")),
            None => return Err("missing field \"key\"".into()),
        };
        let op = match op {
            "get" => history::Op::Get,
            "put" => history::Op::Put {
                value: field_value(line, "value")?,
            },
            "append" => history::Op::Append {
                value: field_value(line, "value")?,
            },
            _ => history::Op::Cas {
                from: field_value(line, "from")?,
                to: field_value(line, "to")?,
            },
        };
        Ok(KvInput { key, op })
    }
    fn output_from_json(&self, i: &KvInput, line: &Map<String, Value>) -> Result<Output, String> {
        Ok(match &i.op {
            history::Op::Get => Output::Value(field_value(line, "value")?),
            history::Op::Cas { .. } => Output::Swapped(field_bool(line, "swapped")?),
            _ => Output::Done,
        })
    }
    fn input_to_json(&self, i: &KvInput, line: &mut Map<String, Value>) {
        line.insert("op".into(), i.op.name().into());
        line.insert("key".into(), i.key.clone().into());
        match &i.op {
            history::Op::Get => {}
            history::Op::Put { value } | history::Op::Append { value } => {
                line.insert("value".into(), value.clone().into());
            }
            history::Op::Cas { from, to } => {
                line.insert("from".into(), from.clone().into());
                line.insert("to".into(), to.clone().into());
            }
        }
    }
    fn output_to_json(&self, o: &Output, line: &mut Map<String, Value>) {
        match o {
            Output::Done => {}
            Output::Value(v) => {
                line.insert("value".into(), v.clone().into());
            }
            Output::Swapped(s) => {
                line.insert("swapped".into(), (*s).into());
            }
        }
    }
}
