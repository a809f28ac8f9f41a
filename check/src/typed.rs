//! JSON lines for typed histories: one operation per line, the same
//! envelope as [`crate::history`] with the model's own fields.
//!
//! ```text
//! {"client":1,"op":"write","value":"a","call":10,"return":20,"ok":true}
//! {"client":2,"op":"read","value":"a","call":15,"return":30,"ok":true}
//! {"client":3,"op":"write","value":"b","call":40,"return":null}
//! ```
//!
//! | field | meaning |
//! | --- | --- |
//! | `client` | unsigned integer, informational |
//! | `op` | the operation's name, one the model knows ([`crate::models`] lists them) |
//! | model fields | the input (e.g. `value` of a write) and, when `"ok": true`, the output (e.g. `value` of a read) |
//! | `call` | unsigned integer time of the call |
//! | `return` | unsigned integer time of the return, or `null` when the outcome is unknown; never before `call` |
//! | `ok` | `true` completed, `false` definitely not applied, absent or `null` with `"return": null` (unknown) |
//!
//! Values given as JSON strings or integers are compared as text (`3` and
//! `"3"` are the same value). Blank lines are skipped; fields not listed
//! are ignored. [`parse_jsonl`] never panics: a bad line gives a
//! [`HistoryError`] with its number and the reason.

use serde_json::{Map, Value};

use super::{Model, Op, Outcome};
use crate::history::HistoryError;

/// A [`Model`] with a JSON-lines form of its operations.
pub trait JsonModel: Model {
    /// The operation names the model knows (the `op` field).
    fn op_names(&self) -> &'static [&'static str];

    /// The input of an operation named `op` (one of [`JsonModel::op_names`]).
    fn input_from_json(&self, op: &str, line: &Map<String, Value>) -> Result<Self::Input, String>;

    /// The output of a completed operation with this input.
    fn output_from_json(
        &self,
        input: &Self::Input,
        line: &Map<String, Value>,
    ) -> Result<Self::Output, String>;

    /// Writes `op` and the input's fields.
    fn input_to_json(&self, input: &Self::Input, line: &mut Map<String, Value>);

    /// Writes the output's fields.
    fn output_to_json(&self, output: &Self::Output, line: &mut Map<String, Value>);
}

/// Field `name` of `line` as `read` takes it; an error names the field
/// and says what it `must_be` when it is missing or `read` refuses it.
pub(crate) fn field<T>(
    line: &Map<String, Value>,
    name: &str,
    must_be: &str,
    read: impl FnOnce(&Value) -> Option<T>,
) -> Result<T, String> {
    let v = line
        .get(name)
        .ok_or_else(|| format!("missing field \"{name}\""))?;
    read(v).ok_or_else(|| format!("field \"{name}\" must be {must_be}, got {v}"))
}

/// A field that must be an unsigned integer.
pub fn field_u64(line: &Map<String, Value>, name: &str) -> Result<u64, String> {
    field(line, name, "an unsigned integer", Value::as_u64)
}

/// A field that must be an integer.
pub fn field_i64(line: &Map<String, Value>, name: &str) -> Result<i64, String> {
    field(line, name, "an integer", Value::as_i64)
}

/// A field that must be a boolean.
pub fn field_bool(line: &Map<String, Value>, name: &str) -> Result<bool, String> {
    field(line, name, "true or false", Value::as_bool)
}

/// A value field: a string, or an integer taken as its decimal text.
pub fn field_value(line: &Map<String, Value>, name: &str) -> Result<String, String> {
    field(line, name, "a string or an integer", value_text)
}

/// A string or an integer as text.
pub fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

/// An operation of `M`'s history.
type ModelOp<M> = Op<<M as Model>::Input, <M as Model>::Output>;

fn parse_line<M: JsonModel>(model: &M, line: &str) -> Result<Option<ModelOp<M>>, String> {
    if line.trim().is_empty() {
        return Ok(None);
    }
    let v: Value = serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}"))?;
    let obj = v.as_object().ok_or("expected a JSON object")?;
    let client = field_u64(obj, "client")?;
    let call = field_u64(obj, "call")?;
    let (ret, ok) = crate::history::return_and_ok(obj)?;
    let name = match obj.get("op") {
        Some(Value::String(s)) => s.as_str(),
        Some(v) => return Err(format!("field \"op\" must be a string, got {v}")),
        None => return Err("missing field \"op\"".into()),
    };
    if !model.op_names().contains(&name) {
        return Err(format!(
            "the {} model has no operation {name:?} (it knows {})",
            model.name(),
            model.op_names().join(", ")
        ));
    }
    let input = model.input_from_json(name, obj)?;
    let outcome = match (ok, ret) {
        (Some(true), None) => {
            return Err("\"ok\": true needs a return time, got \"return\": null".into())
        }
        (Some(true), Some(_)) => Outcome::Ok(
            model
                .output_from_json(&input, obj)
                .map_err(|e| format!("result of {name}: {e}"))?,
        ),
        (Some(false), _) => Outcome::Failed,
        (None, None) => Outcome::Unknown,
        (None, Some(_)) => {
            return Err(
                "missing field \"ok\" (true or false) for an operation with a return time".into(),
            )
        }
    };
    let op = Op {
        client,
        input,
        call,
        ret,
        outcome,
    };
    op.validate()?;
    Ok(Some(op))
}

/// Parses a JSON-lines history of `model`'s operations.
pub fn parse_jsonl<M: JsonModel>(model: &M, text: &str) -> Result<Vec<ModelOp<M>>, HistoryError> {
    let mut ops = Vec::new();
    for (i, line) in text.lines().enumerate() {
        match parse_line(model, line) {
            Ok(Some(op)) => ops.push(op),
            Ok(None) => {}
            Err(message) => {
                return Err(HistoryError::Malformed {
                    line: i + 1,
                    message,
                })
            }
        }
    }
    Ok(ops)
}

/// One operation as a JSON line (no newline).
pub fn to_json_line<M: JsonModel>(model: &M, op: &Op<M::Input, M::Output>) -> String {
    let mut line = Map::new();
    line.insert("client".into(), Value::from(op.client));
    model.input_to_json(&op.input, &mut line);
    if let Outcome::Ok(out) = &op.outcome {
        model.output_to_json(out, &mut line);
    }
    line.insert("call".into(), Value::from(op.call));
    line.insert("return".into(), op.ret.map_or(Value::Null, Value::from));
    match op.outcome {
        Outcome::Ok(_) => {
            line.insert("ok".into(), Value::Bool(true));
        }
        Outcome::Failed => {
            line.insert("ok".into(), Value::Bool(false));
        }
        Outcome::Unknown => {}
    }
    Value::Object(line).to_string()
}

/// A history as JSON lines.
pub fn to_jsonl<M: JsonModel>(model: &M, ops: &[Op<M::Input, M::Output>]) -> String {
    let mut s = String::new();
    for op in ops {
        s.push_str(&to_json_line(model, op));
        s.push('\n');
    }
    s
}
