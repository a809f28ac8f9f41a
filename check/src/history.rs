//! Client operation histories and their JSON-lines format.
//!
//! A *history* is the list of key-value operations that concurrent clients
//! issued against the system under test, each with the virtual time at which
//! it was called, the virtual time at which it returned (if it did) and its
//! outcome. The simulator records one per run; the linearizability checker
//! ([`crate::linearizability`]) reads the same type, and histories recorded
//! by any other system can be checked by writing them in the format below.
//!
//! # Data model
//!
//! Every operation touches exactly one key. Keys and values are strings; a
//! key that was never written reads as the empty string `""`.
//!
//! | op | request | result when completed (`"ok": true`) |
//! | --- | --- | --- |
//! | `get` | `key` | `value`: the value read (`""` when the key is missing) |
//! | `put` | `key`, `value` | none: the key now holds `value` |
//! | `append` | `key`, `value` | none: `value` was appended to the key's current value (missing = `""`) |
//! | `cas` | `key`, `from`, `to` | `swapped`: `true` if the key held `from` and now holds `to`, `false` if the key did not hold `from` (and was left unchanged) |
//!
//! Outcomes ([`Outcome`]):
//!
//! * **completed** (`"ok": true`): the operation took effect exactly once,
//!   at some instant between its call and its return, with the result given.
//! * **failed** (`"ok": false`): the operation definitely did *not* take
//!   effect (for example the server rejected it before proposing it). The
//!   checker ignores failed operations.
//! * **unknown** (`"return": null`): the client gave up or crashed without
//!   learning the outcome. The operation may have taken effect at any single
//!   instant after its call — even long after the client stopped waiting —
//!   or never. Its result is not known.
//!
//! Real-time order: operation A precedes operation B when A's return time
//! is *strictly* less than B's call time. Operations whose intervals touch
//! (`A.return == B.call`) are treated as concurrent.
//!
//! # JSON lines
//!
//! One operation per line, each line a JSON object. Example:
//!
//! ```text
//! {"client":3,"op":"put","key":"k1","value":"v7","call":1234,"return":1300,"ok":true}
//! {"client":4,"op":"get","key":"k1","value":"v7","call":1310,"return":1400,"ok":true}
//! {"client":5,"op":"append","key":"k1","value":"x","call":1320,"return":1390,"ok":false}
//! {"client":6,"op":"cas","key":"k1","from":"v7","to":"v8","swapped":true,"call":1401,"return":1450,"ok":true}
//! {"client":7,"op":"put","key":"k2","value":"v9","call":1500,"return":null}
//! ```
//!
//! Fields:
//!
//! | field | type | required | meaning |
//! | --- | --- | --- | --- |
//! | `client` | unsigned integer | always | id of the issuing client (informational; the checker does not use it) |
//! | `op` | `"get"`, `"put"`, `"append"` or `"cas"` | always | the operation |
//! | `key` | string | always | the key |
//! | `value` | string | `put`, `append`; `get` when `"ok": true` | value written / appended / read; ignored for a `get` that did not complete |
//! | `from`, `to` | string | `cas` | expected and new value |
//! | `swapped` | boolean | `cas` when `"ok": true` | whether the compare-and-set took place; ignored otherwise |
//! | `call` | unsigned integer | always | virtual time of the call (nanoseconds, ticks: any unit, as long as it is one clock for the whole history) |
//! | `return` | unsigned integer or `null` | always | virtual time of the return, `null` when the outcome is unknown; must be `>= call` |
//! | `ok` | `true`, `false` or `null` | unless `return` is `null` | `true` = completed, `false` = definitely not applied; absent or `null` only together with `"return": null` (unknown) |
//!
//! `"ok": false` may come with `"return": null` (failed, return time not
//! recorded); such an operation is still treated as not applied. Fields not
//! listed above are ignored, so other systems may add their own. Blank lines
//! are skipped. Times are integers; lines need not be sorted. The writer
//! ([`write_jsonl`]) emits fields in the order of the example, omits `ok` for
//! unknown operations and omits results that are not known.
//!
//! [`read_jsonl`] and [`parse_jsonl`] never panic on malformed input: they
//! return a [`HistoryError`] naming the (1-based) line and what is wrong.
//!
//! # Recording your own service
//!
//! [`Recorder`] records a history from a real client: [`Recorder::call`]
//! before sending a request, then [`Recorder::ok`], [`Recorder::fail`] or
//! [`Recorder::unknown`] once the client knows what became of it, and
//! [`Recorder::write_jsonl`] for `concord-sim check`. When in doubt,
//! record `unknown`: it is never wrong, only weaker. Which outcome each
//! thing a client sees maps to (and for concord's own client): the
//! repository's `docs/checker.md`, "Recording your own service".

use std::fmt;
use std::io::{BufRead, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::typed::{field, field_u64};

/// The request part of an operation: what the client asked for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// Read the key.
    Get,
    /// Overwrite the key with `value`.
    Put {
        /// The value written.
        value: String,
    },
    /// Append `value` to the key's current value (missing = `""`).
    Append {
        /// The suffix appended.
        value: String,
    },
    /// If the key holds `from`, set it to `to`.
    Cas {
        /// Expected current value.
        from: String,
        /// New value.
        to: String,
    },
}

impl Op {
    /// Runs the request on a key holding `value` (a missing key holds
    /// `""`), as the key-value store does: `value` becomes what the key
    /// holds after it. What the store answers.
    pub fn apply(&self, value: &mut String) -> Output {
        match self {
            Op::Get => Output::Value(value.clone()),
            Op::Put { value: new } => {
                value.clone_from(new);
                Output::Done
            }
            Op::Append { value: suffix } => {
                value.push_str(suffix);
                Output::Done
            }
            Op::Cas { from, to } => {
                let swapped = value == from;
                if swapped {
                    value.clone_from(to);
                }
                Output::Swapped(swapped)
            }
        }
    }

    /// The `"op"` name used in JSON lines: `get`, `put`, `append` or `cas`.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Put { .. } => "put",
            Op::Append { .. } => "append",
            Op::Cas { .. } => "cas",
        }
    }
}

/// The result of a completed operation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Output {
    /// A `put` or `append` completed (they return nothing).
    Done,
    /// A `get` read this value (`""` when the key is missing).
    Value(String),
    /// A `cas` completed; `true` if it swapped.
    Swapped(bool),
}

/// What became of an operation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Completed with this result (`"ok": true`). Requires a return time.
    Ok(Output),
    /// Definitely not applied (`"ok": false`).
    Failed,
    /// Unknown (`"return": null`): applied at some instant after the call,
    /// or never. Requires `ret == None`.
    Unknown,
}

/// One operation of a history.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Operation {
    /// The issuing client.
    pub client: u64,
    /// The key the operation touches.
    pub key: String,
    /// The request.
    pub op: Op,
    /// Virtual time of the call.
    pub call: u64,
    /// Virtual time of the return; `None` when the outcome is unknown (or a
    /// failed operation's return time was not recorded).
    pub ret: Option<u64>,
    /// The outcome.
    pub outcome: Outcome,
}

impl Operation {
    /// A call whose outcome is not known yet (`ret = None`,
    /// `outcome = Unknown`); complete it with [`Operation::completed`] or
    /// [`Operation::failed`] when the client learns the outcome.
    pub fn new(client: u64, key: impl Into<String>, op: Op, call: u64) -> Self {
        Operation {
            client,
            key: key.into(),
            op,
            call,
            ret: None,
            outcome: Outcome::Unknown,
        }
    }

    /// Marks the operation completed at `ret` with `output`.
    pub fn completed(mut self, ret: u64, output: Output) -> Self {
        self.ret = Some(ret);
        self.outcome = Outcome::Ok(output);
        self
    }

    /// Marks the operation definitely not applied, learned at `ret`.
    pub fn failed(mut self, ret: u64) -> Self {
        self.ret = Some(ret);
        self.outcome = Outcome::Failed;
        self
    }

    /// Checks the operation is well formed: `call <= ret`, a completed
    /// operation has a return time and a result of the right kind, an
    /// unknown one has no return time.
    pub fn validate(&self) -> Result<(), String> {
        check_times(self.call, self.ret)?;
        match (&self.outcome, &self.op) {
            (Outcome::Ok(_), _) if self.ret.is_none() => {
                Err("a completed operation needs a return time".to_string())
            }
            (Outcome::Ok(Output::Value(_)), Op::Get)
            | (Outcome::Ok(Output::Swapped(_)), Op::Cas { .. })
            | (Outcome::Ok(Output::Done), Op::Put { .. } | Op::Append { .. }) => Ok(()),
            (Outcome::Ok(out), op) => Err(format!(
                "result {out:?} does not fit a {} operation",
                op.name()
            )),
            (Outcome::Unknown, _) if self.ret.is_some() => {
                Err("an operation with unknown outcome has no return time".to_string())
            }
            _ => Ok(()),
        }
    }

    /// This operation as one JSON line (no trailing newline).
    pub fn to_json_line(&self) -> String {
        let (value, from, to) = match &self.op {
            Op::Get => match &self.outcome {
                Outcome::Ok(Output::Value(v)) => (Some(v.as_str()), None, None),
                _ => (None, None, None),
            },
            Op::Put { value } | Op::Append { value } => (Some(value.as_str()), None, None),
            Op::Cas { from, to } => (None, Some(from.as_str()), Some(to.as_str())),
        };
        let swapped = match &self.outcome {
            Outcome::Ok(Output::Swapped(s)) => Some(*s),
            _ => None,
        };
        let ok = match &self.outcome {
            Outcome::Ok(_) => Some(true),
            Outcome::Failed => Some(false),
            Outcome::Unknown => None,
        };
        let rec = Record {
            client: self.client,
            op: self.op.name(),
            key: &self.key,
            value,
            from,
            to,
            swapped,
            call: self.call,
            ret: self.ret,
            ok,
        };
        // Serialising a struct of strings, integers and booleans cannot fail.
        serde_json::to_string(&rec).unwrap_or_default()
    }
}

impl fmt::Display for Operation {
    /// A short human-readable form, e.g. `c3 put k1 "v7" -> ok [1234, 1300]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{} {} {:?}", self.client, self.op.name(), self.key)?;
        match &self.op {
            Op::Get => {}
            Op::Put { value } | Op::Append { value } => write!(f, " {value:?}")?,
            Op::Cas { from, to } => write!(f, " {from:?}->{to:?}")?,
        }
        match &self.outcome {
            Outcome::Ok(Output::Done) => write!(f, " => ok")?,
            Outcome::Ok(Output::Value(v)) => write!(f, " => {v:?}")?,
            Outcome::Ok(Output::Swapped(s)) => write!(f, " => swapped={s}")?,
            Outcome::Failed => write!(f, " => failed")?,
            Outcome::Unknown => write!(f, " => unknown")?,
        }
        match self.ret {
            Some(r) => write!(f, " [{}, {}]", self.call, r),
            None => write!(f, " [{}, ?]", self.call),
        }
    }
}

#[derive(Serialize)]
struct Record<'a> {
    client: u64,
    op: &'static str,
    key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    swapped: Option<bool>,
    call: u64,
    #[serde(rename = "return")]
    ret: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ok: Option<bool>,
}

/// An error reading a JSON-lines history.
#[derive(Debug)]
pub enum HistoryError {
    /// Line `line` (1-based) is not a valid operation.
    Malformed {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// Reading the input failed.
    Io(std::io::Error),
}

impl fmt::Display for HistoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HistoryError::Malformed { line, message } => write!(f, "line {line}: {message}"),
            HistoryError::Io(e) => write!(f, "reading history: {e}"),
        }
    }
}

impl std::error::Error for HistoryError {}

/// Writes `ops` as JSON lines, one operation per line.
pub fn write_jsonl<W: Write>(mut w: W, ops: &[Operation]) -> std::io::Result<()> {
    for op in ops {
        w.write_all(op.to_json_line().as_bytes())?;
        w.write_all(b"\n")?;
    }
    w.flush()
}

/// `ops` as a JSON-lines string.
pub fn to_jsonl(ops: &[Operation]) -> String {
    let mut s = String::new();
    for op in ops {
        s.push_str(&op.to_json_line());
        s.push('\n');
    }
    s
}

/// Reads a JSON-lines history.
pub fn read_jsonl<R: BufRead>(r: R) -> Result<Vec<Operation>, HistoryError> {
    let mut ops = Vec::new();
    for (i, line) in r.lines().enumerate() {
        let line = line.map_err(HistoryError::Io)?;
        if let Some(op) = parse_line(&line, i + 1)? {
            ops.push(op);
        }
    }
    Ok(ops)
}

/// Parses a JSON-lines history held in a string.
pub fn parse_jsonl(s: &str) -> Result<Vec<Operation>, HistoryError> {
    let mut ops = Vec::new();
    for (i, line) in s.lines().enumerate() {
        if let Some(op) = parse_line(line, i + 1)? {
            ops.push(op);
        }
    }
    Ok(ops)
}

fn parse_line(line: &str, lineno: usize) -> Result<Option<Operation>, HistoryError> {
    if line.trim().is_empty() {
        return Ok(None);
    }
    let err = |message: String| HistoryError::Malformed {
        line: lineno,
        message,
    };
    let v: Value = serde_json::from_str(line).map_err(|e| err(format!("invalid JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| err("expected a JSON object".to_string()))?;
    parse_object(obj).map(Some).map_err(err)
}

fn field_str(obj: &Map<String, Value>, name: &str) -> Result<String, String> {
    field(obj, name, "a string", |v| v.as_str().map(str::to_string))
}

/// That a return time, if any, is not before the call time.
pub(crate) fn check_times(call: u64, ret: Option<u64>) -> Result<(), String> {
    match ret {
        Some(ret) if ret < call => Err(format!("return time {ret} is before call time {call}")),
        _ => Ok(()),
    }
}

/// The fields of a JSON line that say how an operation ended: `"return"`
/// (a time, or null when unknown; required) and `"ok"` (true, false,
/// null or missing).
pub(crate) fn return_and_ok(
    obj: &Map<String, Value>,
) -> Result<(Option<u64>, Option<bool>), String> {
    let ret = match obj.get("return") {
        None => return Err("missing field \"return\" (use null when unknown)".to_string()),
        Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().ok_or_else(|| {
            format!("field \"return\" must be an unsigned integer or null, got {v}")
        })?),
    };
    let ok = match obj.get("ok") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(v) => return Err(format!("field \"ok\" must be true, false or null, got {v}")),
    };
    Ok((ret, ok))
}

fn parse_object(obj: &Map<String, Value>) -> Result<Operation, String> {
    let client = field_u64(obj, "client")?;
    let key = field_str(obj, "key")?;
    let call = field_u64(obj, "call")?;
    let (ret, ok) = return_and_ok(obj)?;
    let op_name = field_str(obj, "op")?;
    let op = match op_name.as_str() {
        "get" => Op::Get,
        "put" => Op::Put {
            value: field_str(obj, "value")?,
        },
        "append" => Op::Append {
            value: field_str(obj, "value")?,
        },
        "cas" => Op::Cas {
            from: field_str(obj, "from")?,
            to: field_str(obj, "to")?,
        },
        other => {
            return Err(format!(
                "unknown op {other:?} (expected get, put, append or cas)"
            ))
        }
    };
    let outcome = match (ok, ret) {
        (Some(true), None) => {
            return Err("\"ok\": true needs a return time, got \"return\": null".to_string())
        }
        (Some(true), Some(_)) => Outcome::Ok(match &op {
            Op::Get => Output::Value(field_str(obj, "value")?),
            Op::Cas { .. } => match obj.get("swapped") {
                Some(Value::Bool(b)) => Output::Swapped(*b),
                None => return Err("a completed cas needs \"swapped\"".to_string()),
                Some(v) => return Err(format!("field \"swapped\" must be a boolean, got {v}")),
            },
            Op::Put { .. } | Op::Append { .. } => Output::Done,
        }),
        (Some(false), _) => Outcome::Failed,
        (None, None) => Outcome::Unknown,
        (None, Some(_)) => {
            return Err(
                "missing field \"ok\" (true or false) for an operation with a return time"
                    .to_string(),
            )
        }
    };
    let op = Operation {
        client,
        key,
        op,
        call,
        ret,
        outcome,
    };
    op.validate()?;
    Ok(op)
}

/// Records a history from a real system's clients: thread-safe, one
/// monotonic clock (nanoseconds since the recorder was created), usable
/// from sync and async code. Clones share the same history. See the
/// module documentation for which outcome to record when.
///
/// ```
/// use concord_check::history::{Op, Output, Recorder};
///
/// let recorder = Recorder::new();
/// let token = recorder.call(1, "k", Op::Put { value: "a".into() });
/// // ... send the request, get a reply ...
/// recorder.ok(token, Output::Done);
/// let token = recorder.call(2, "k", Op::Get);
/// recorder.ok(token, Output::Value("a".into()));
/// let token = recorder.call(2, "k", Op::Put { value: "b".into() });
/// recorder.unknown(token); // timed out: may or may not have been applied
/// assert!(concord_check::linearizability::check_history(&recorder.history()).is_ok());
/// ```
#[derive(Clone, Debug)]
pub struct Recorder {
    epoch: Instant,
    ops: Arc<Mutex<Vec<Operation>>>,
}

/// An operation in flight, returned by [`Recorder::call`] and consumed by
/// [`Recorder::ok`], [`Recorder::fail`] or [`Recorder::unknown`]. Dropping
/// it leaves the operation unknown.
#[must_use = "record the outcome with ok, fail or unknown"]
#[derive(Debug)]
pub struct Token {
    index: usize,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Recorder {
    /// An empty history; its clock starts now.
    pub fn new() -> Self {
        Recorder {
            epoch: Instant::now(),
            ops: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Nanoseconds since the recorder was created (monotonic).
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Operation>> {
        // A panic elsewhere while holding the lock leaves a valid vector.
        self.ops.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the call of `op` on `key` by `client`, now. Call it right
    /// before the request is sent.
    pub fn call(&self, client: u64, key: impl Into<String>, op: Op) -> Token {
        let key = key.into();
        let mut ops = self.lock();
        let call = self.now_ns();
        ops.push(Operation::new(client, key, op, call));
        Token {
            index: ops.len() - 1,
        }
    }

    /// Records that the operation completed, now, with `output`
    /// ([`Output::Done`] for put and append, [`Output::Value`] for get,
    /// `""` for a missing key, [`Output::Swapped`] for cas).
    pub fn ok(&self, token: Token, output: Output) {
        let mut ops = self.lock();
        let ret = self.now_ns();
        let op = &mut ops[token.index];
        op.ret = Some(ret.max(op.call));
        op.outcome = Outcome::Ok(output);
    }

    /// Records that the operation definitely did not take effect (learned
    /// now).
    pub fn fail(&self, token: Token) {
        let mut ops = self.lock();
        let ret = self.now_ns();
        let op = &mut ops[token.index];
        op.ret = Some(ret.max(op.call));
        op.outcome = Outcome::Failed;
    }

    /// Records that the outcome is not known: the operation may take
    /// effect at any instant after its call, or never.
    pub fn unknown(&self, token: Token) {
        let mut ops = self.lock();
        let op = &mut ops[token.index];
        op.ret = None;
        op.outcome = Outcome::Unknown;
    }

    /// Operations recorded so far (calls included).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing was recorded yet.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// A copy of the history so far, in call order; operations still in
    /// flight are unknown.
    pub fn history(&self) -> Vec<Operation> {
        self.lock().clone()
    }

    /// Writes the history so far as JSON lines.
    pub fn write_jsonl<W: Write>(&self, w: W) -> std::io::Result<()> {
        write_jsonl(w, &self.history())
    }
}
