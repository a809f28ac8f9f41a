//! Jepsen-style JSON histories of registers and compare-and-set
//! registers, as Knossos and elle-cli read them
//! (`elle-cli --model cas-register history.json`).
//!
//! A Jepsen history is a JSON array of events in time order, each
//! `{"process":P,"type":T,"f":F,"value":V}`: an `invoke` followed, for the
//! same process, by its completion `ok` (took effect, with the result),
//! `fail` (did not take effect) or `info` (unknown). `f` is `read`
//! (`value` the value read, `null` on invoke), `write` (`value` written)
//! or `cas` (`value` `[from, to]`; Jepsen records a compare-and-set that
//! found another value as `fail`). A register starts as `null`.
//!
//! Mapping to [`crate::models`]: times are event positions (the order is
//! all that matters); `null` is the empty string, the initial value of
//! [`Register`](crate::models::Register); values that are integers or
//! strings are compared as text. An invocation never completed is
//! unknown. On export, each operation is invoked by its client's process
//! unless that process still has one outstanding (Jepsen allows one), then
//! by a fresh process; operations of unknown outcome complete with `info`
//! at the end; a compare-and-set that answered `swapped: false` is
//! exported as `fail`, which Jepsen's checkers read as "not applied" (a
//! weaker claim: the value it saw is dropped). [`write_json`] accepts only
//! histories whose inputs the target format can express.

use serde_json::{json, Value};

use super::{Op, Outcome};
use crate::history::HistoryError;
use crate::models::{RegisterInput, RegisterOutput};

type RegOp = Op<RegisterInput, RegisterOutput>;

fn text(v: &Value) -> Option<String> {
    match v {
        Value::Null => Some(String::new()),
        other => super::typed::value_text(other),
    }
}

fn value_json(s: &str) -> Value {
    if s.is_empty() {
        return Value::Null;
    }
    match s.parse::<i64>() {
        Ok(n) if n.to_string() == s => Value::from(n),
        _ => Value::from(s),
    }
}

/// Reads a Jepsen JSON history of a (compare-and-set) register: a JSON
/// array of events, or one event object per line. The line of an error
/// is the event's position (1-based) in the history.
pub fn read_json(text_in: &str) -> Result<Vec<RegOp>, HistoryError> {
    let events: Vec<Value> = if text_in.trim_start().starts_with('[') {
        match serde_json::from_str::<Value>(text_in) {
            Ok(Value::Array(a)) => a,
            Ok(_) => unreachable!("starts with ["),
            Err(e) => {
                return Err(HistoryError::Malformed {
                    line: e.line(),
                    message: format!("invalid JSON: {e}"),
                })
            }
        }
    } else {
        let mut v = Vec::new();
        for (i, line) in text_in.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            v.push(
                serde_json::from_str(line).map_err(|e| HistoryError::Malformed {
                    line: i + 1,
                    message: format!("invalid JSON: {e}"),
                })?,
            );
        }
        v
    };
    let mut ops: Vec<RegOp> = Vec::new();
    // Per process: the index in `ops` of its outstanding invocation.
    let mut open: std::collections::BTreeMap<i64, usize> = Default::default();
    for (n, ev) in events.iter().enumerate() {
        let err = |message: String| HistoryError::Malformed {
            line: n + 1,
            message,
        };
        let obj = ev
            .as_object()
            .ok_or_else(|| err("expected an event object".into()))?;
        let process = match obj.get("process") {
            Some(Value::Number(p)) => p
                .as_i64()
                .ok_or_else(|| err(format!("\"process\" must be an integer, got {p}")))?,
            // Jepsen's nemesis has process :nemesis; its events are not
            // client operations.
            Some(Value::String(_)) => continue,
            Some(v) => return Err(err(format!("\"process\" must be an integer, got {v}"))),
            None => return Err(err("missing field \"process\"".into())),
        };
        let kind = obj
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| err("missing or non-string field \"type\"".into()))?;
        let f = obj
            .get("f")
            .and_then(Value::as_str)
            .ok_or_else(|| err("missing or non-string field \"f\"".into()))?;
        let value = obj.get("value").unwrap_or(&Value::Null);
        let time = n as u64;
        match kind {
            "invoke" => {
                if open.contains_key(&process) {
                    return Err(err(format!(
                        "process {process} invokes while its previous operation is outstanding"
                    )));
                }
                let input = match f {
                    "read" => RegisterInput::Read,
                    "write" => RegisterInput::Write(
                        text(value).ok_or_else(|| err(format!("bad write value {value}")))?,
                    ),
                    "cas" => match value.as_array().map(|a| a.as_slice()) {
                        Some([a, b]) => RegisterInput::Cas {
                            from: text(a).ok_or_else(|| err(format!("bad cas value {value}")))?,
                            to: text(b).ok_or_else(|| err(format!("bad cas value {value}")))?,
                        },
                        _ => return Err(err(format!("a cas value is [from, to], got {value}"))),
                    },
                    other => {
                        return Err(err(format!(
                            "operation {other:?} is not one of a register's (read, write, cas)"
                        )))
                    }
                };
                open.insert(process, ops.len());
                ops.push(Op::unknown(process.max(0) as u64, input, time));
            }
            "ok" | "fail" | "info" => {
                let Some(i) = open.remove(&process) else {
                    return Err(err(format!(
                        "process {process} completes an operation it never invoked"
                    )));
                };
                let op = &mut ops[i];
                let same = matches!(
                    (&op.input, f),
                    (RegisterInput::Read, "read")
                        | (RegisterInput::Write(_), "write")
                        | (RegisterInput::Cas { .. }, "cas")
                );
                if !same {
                    return Err(err(format!(
                        "completion {f:?} does not match the invocation of process {process}"
                    )));
                }
                match kind {
                    "ok" => {
                        let out = match &op.input {
                            RegisterInput::Read => RegisterOutput::Value(
                                text(value)
                                    .ok_or_else(|| err(format!("bad read value {value}")))?,
                            ),
                            RegisterInput::Write(_) => RegisterOutput::Done,
                            RegisterInput::Cas { .. } => RegisterOutput::Swapped(true),
                        };
                        op.ret = Some(time);
                        op.outcome = Outcome::Ok(out);
                    }
                    "fail" => {
                        op.ret = Some(time);
                        op.outcome = Outcome::Failed;
                    }
                    _ => {}
                }
            }
            other => return Err(err(format!("unknown event type {other:?}"))),
        }
    }
    Ok(ops)
}

/// Writes a (compare-and-set) register history as a Jepsen JSON array.
pub fn write_json(ops: &[RegOp]) -> String {
    // (time, 0 = invocation / 1 = completion, op index): at equal times
    // invocations first, so that touching intervals stay concurrent in
    // Jepsen's strict event order.
    let mut events: Vec<(u64, u8, usize)> = Vec::new();
    let end = ops
        .iter()
        .map(|o| o.ret.unwrap_or(o.call))
        .max()
        .unwrap_or(0)
        .saturating_add(1);
    for (i, o) in ops.iter().enumerate() {
        events.push((o.call, 0, i));
        let done = match o.outcome {
            Outcome::Unknown => end,
            _ => o.ret.unwrap_or(end),
        };
        events.push((done, 1, i));
    }
    events.sort_unstable();
    let mut busy: std::collections::BTreeSet<u64> = Default::default();
    let mut process_of: Vec<u64> = vec![0; ops.len()];
    let mut fresh = ops.iter().map(|o| o.client).max().unwrap_or(0) + 1;
    let mut out: Vec<Value> = Vec::new();
    for (_, phase, i) in events {
        let o = &ops[i];
        let (f, invoke_value) = match &o.input {
            RegisterInput::Read => ("read", Value::Null),
            RegisterInput::Write(v) => ("write", value_json(v)),
            RegisterInput::Cas { from, to } => ("cas", json!([value_json(from), value_json(to)])),
        };
        if phase == 0 {
            let p = if busy.contains(&o.client) {
                fresh += 1;
                fresh - 1
            } else {
                o.client
            };
            busy.insert(p);
            process_of[i] = p;
            out.push(json!({"process": p, "type": "invoke", "f": f, "value": invoke_value}));
        } else {
            let p = process_of[i];
            busy.remove(&p);
            let (kind, value) = match &o.outcome {
                Outcome::Ok(RegisterOutput::Value(v)) => ("ok", value_json(v)),
                Outcome::Ok(RegisterOutput::Swapped(false)) => ("fail", invoke_value),
                Outcome::Ok(_) => ("ok", invoke_value),
                Outcome::Failed => ("fail", invoke_value),
                Outcome::Unknown => ("info", invoke_value),
            };
            out.push(json!({"process": p, "type": kind, "f": f, "value": value}));
        }
    }
    Value::Array(out).to_string()
}
