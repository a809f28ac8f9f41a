//! A read/write register and a compare-and-set register.

use serde_json::{Map, Value};

use crate::typed::{field_bool, field_value, JsonModel};
use crate::unambiguous::{decide_register, RegOp, RegisterDecision};
use crate::{Decision, Model, Op, Outcome};

/// What a register client asks for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RegisterInput {
    /// Read the value.
    Read,
    /// Overwrite the value.
    Write(String),
    /// If the value is `from`, make it `to` (compare-and-set registers
    /// only).
    Cas {
        /// Expected value.
        from: String,
        /// New value.
        to: String,
    },
}

/// What a register answered.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RegisterOutput {
    /// A read's value.
    Value(String),
    /// A write completed.
    Done,
    /// A compare-and-set completed; whether it swapped.
    Swapped(bool),
}

/// A register holding a string, starting at `init`: `read` and `write`.
/// JSON lines: `{"op":"write","value":V}`, `{"op":"read","value":V}` (the
/// value read, when completed). Unambiguous histories (no value written
/// twice, nor the initial one) are decided in O(n log n).
pub type Register = RegisterModel<false>;

/// A register with compare-and-set: `read`, `write` and `cas`
/// (`{"op":"cas","from":A,"to":B,"swapped":true}`). A history without a
/// compare-and-set is decided like a [`Register`]'s.
pub type CasRegister = RegisterModel<true>;

/// The register models: [`Register`] without compare-and-set (`CAS` false),
/// [`CasRegister`] with it. One implementation serves both, so that they
/// differ only where the operation set does.
#[derive(Clone, Debug, Default)]
pub struct RegisterModel<const CAS: bool> {
    /// The value before any write (`""` by default).
    pub init: String,
}

/// The register decision of `ops` if it has reads and writes only, no
/// value written twice and none writing `init`.
fn decide<'a>(
    ops: &[&'a Op<RegisterInput, RegisterOutput>],
    init: &'a str,
) -> Option<Decision<String>> {
    let mut ids: crate::hash::StrMap<'a, u32> = Default::default();
    let mut names: Vec<&'a str> = Vec::new();
    let mut intern = |s: &'a str| -> u32 {
        let n = names.len() as u32;
        *ids.entry(s).or_insert_with(|| {
            names.push(s);
            n
        })
    };
    let init_id = intern(init);
    let mut reg: Vec<RegOp> = Vec::with_capacity(ops.len());
    let mut back: Vec<usize> = Vec::with_capacity(ops.len());
    for (j, o) in ops.iter().enumerate() {
        let (write, value) = match (&o.input, &o.outcome) {
            (_, Outcome::Failed) => continue,
            (RegisterInput::Read, Outcome::Ok(RegisterOutput::Value(v))) => (false, v),
            (RegisterInput::Read, _) => continue,
            (RegisterInput::Write(v), _) => (true, v),
            (RegisterInput::Cas { .. }, _) => return None,
        };
        reg.push(RegOp {
            write,
            value: intern(value),
            call: o.call,
            ret: if matches!(o.outcome, Outcome::Ok(_)) {
                o.ret
            } else {
                None
            },
        });
        back.push(j);
    }
    Some(match decide_register(&reg, init_id)? {
        RegisterDecision::Linearizable => Decision::Linearizable,
        RegisterDecision::Stuck { index, values } => Decision::Stuck {
            index: back[index],
            states: values
                .into_iter()
                .map(|v| names[v as usize].to_string())
                .collect(),
        },
    })
}

impl<const CAS: bool> Model for RegisterModel<CAS> {
    type State = String;
    type Input = RegisterInput;
    type Output = RegisterOutput;

    fn name(&self) -> String {
        if CAS { "cas-register" } else { "register" }.into()
    }
    fn init(&self) -> String {
        self.init.clone()
    }
    fn step(
        &self,
        state: &String,
        input: &RegisterInput,
        output: &RegisterOutput,
    ) -> Option<String> {
        if !CAS && matches!(input, RegisterInput::Cas { .. }) {
            return None;
        }
        match (input, output) {
            (RegisterInput::Read, RegisterOutput::Value(v)) => (v == state).then(|| state.clone()),
            (RegisterInput::Write(v), RegisterOutput::Done) => Some(v.clone()),
            (RegisterInput::Cas { from, to }, RegisterOutput::Swapped(true)) => {
                (from == state).then(|| to.clone())
            }
            (RegisterInput::Cas { from, .. }, RegisterOutput::Swapped(false)) => {
                (from != state).then(|| state.clone())
            }
            _ => None,
        }
    }
    fn step_unknown(&self, state: &String, input: &RegisterInput) -> Vec<String> {
        if !CAS && matches!(input, RegisterInput::Cas { .. }) {
            return Vec::new();
        }
        match input {
            RegisterInput::Read => vec![state.clone()],
            RegisterInput::Write(v) => vec![v.clone()],
            RegisterInput::Cas { from, to } => {
                vec![if from == state {
                    to.clone()
                } else {
                    state.clone()
                }]
            }
        }
    }
    fn read_only(&self, input: &RegisterInput, output: &RegisterOutput) -> bool {
        matches!(
            (input, output),
            (RegisterInput::Read, _) | (RegisterInput::Cas { .. }, RegisterOutput::Swapped(false))
        )
    }
    fn pins(&self, stuck: &RegisterInput, out: &RegisterOutput, other: &RegisterInput) -> bool {
        let needed = match (stuck, out) {
            (RegisterInput::Read, RegisterOutput::Value(v)) => v,
            (RegisterInput::Cas { from, .. }, RegisterOutput::Swapped(true)) => from,
            _ => return false,
        };
        match other {
            RegisterInput::Write(v) | RegisterInput::Cas { to: v, .. } => v == needed,
            RegisterInput::Read => false,
        }
    }
    fn decide(&self, ops: &[&Op<RegisterInput, RegisterOutput>]) -> Option<Decision<String>> {
        decide(ops, &self.init)
    }
    fn describe_input(&self, i: &RegisterInput) -> String {
        match i {
            RegisterInput::Read => "read".into(),
            RegisterInput::Write(v) => format!("write {v:?}"),
            RegisterInput::Cas { from, to } => format!("cas {from:?}->{to:?}"),
        }
    }
    fn describe_output(&self, o: &RegisterOutput) -> String {
        match o {
            RegisterOutput::Value(v) => format!("{v:?}"),
            RegisterOutput::Done => "ok".into(),
            RegisterOutput::Swapped(s) => format!("swapped={s}"),
        }
    }
    fn describe_state(&self, s: &String) -> String {
        format!("{s:?}")
    }
    fn state_heap_bytes(&self, s: &String) -> usize {
        crate::memory::string_bytes(s, s.capacity())
    }
}

fn input_from_json(op: &str, line: &Map<String, Value>) -> Result<RegisterInput, String> {
    Ok(match op {
        "read" => RegisterInput::Read,
        "write" => RegisterInput::Write(field_value(line, "value")?),
        _ => RegisterInput::Cas {
            from: field_value(line, "from")?,
            to: field_value(line, "to")?,
        },
    })
}

fn output_from_json(
    input: &RegisterInput,
    line: &Map<String, Value>,
) -> Result<RegisterOutput, String> {
    Ok(match input {
        RegisterInput::Read => RegisterOutput::Value(field_value(line, "value")?),
        RegisterInput::Write(_) => RegisterOutput::Done,
        RegisterInput::Cas { .. } => RegisterOutput::Swapped(field_bool(line, "swapped")?),
    })
}

fn input_to_json(input: &RegisterInput, line: &mut Map<String, Value>) {
    match input {
        RegisterInput::Read => {
            line.insert("op".into(), "read".into());
        }
        RegisterInput::Write(v) => {
            line.insert("op".into(), "write".into());
            line.insert("value".into(), v.clone().into());
        }
        RegisterInput::Cas { from, to } => {
            line.insert("op".into(), "cas".into());
            line.insert("from".into(), from.clone().into());
            line.insert("to".into(), to.clone().into());
        }
    }
}

fn output_to_json(output: &RegisterOutput, line: &mut Map<String, Value>) {
    match output {
        RegisterOutput::Value(v) => {
            line.insert("value".into(), v.clone().into());
        }
        RegisterOutput::Done => {}
        RegisterOutput::Swapped(s) => {
            line.insert("swapped".into(), (*s).into());
        }
    }
}

impl<const CAS: bool> JsonModel for RegisterModel<CAS> {
    fn op_names(&self) -> &'static [&'static str] {
        if CAS {
            &["read", "write", "cas"]
        } else {
            &["read", "write"]
        }
    }
    fn input_from_json(
        &self,
        op: &str,
        line: &Map<String, Value>,
    ) -> Result<RegisterInput, String> {
        input_from_json(op, line)
    }
    fn output_from_json(
        &self,
        i: &RegisterInput,
        line: &Map<String, Value>,
    ) -> Result<RegisterOutput, String> {
        output_from_json(i, line)
    }
    fn input_to_json(&self, i: &RegisterInput, line: &mut Map<String, Value>) {
        input_to_json(i, line)
    }
    fn output_to_json(&self, o: &RegisterOutput, line: &mut Map<String, Value>) {
        output_to_json(o, line)
    }
}
