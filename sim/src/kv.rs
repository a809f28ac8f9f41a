//! The built-in key-value service: a state machine with get / put /
//! append / compare-and-set, and a workload that records a
//! [`history`](crate::history) and checks it for linearizability.
//!
//! Command layout (inside the session envelope of
//! [`concord::session`]): operation id (u64 LE, unique per logical
//! operation, used only by the exactly-once check), a tag byte (0 get,
//! 1 put, 2 append, 3 cas), the key (u16 LE length + UTF-8), then for put
//! and append the value, for cas the expected and new values (each u32 LE
//! length + UTF-8). Responses: `0x00` + value for get, `0x01` for put and
//! append, `0x02` + 0/1 for cas, `0xff` for a command that cannot be
//! parsed.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{BufMut, Bytes, BytesMut};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use concord::state_machine::{RestoreError, StateMachine};
use concord::Index;

use crate::history::{Op, Operation, Outcome, Output};
use crate::linearizability::{check_history_with, CheckConfig, CheckResult};
use crate::workload::{OpResult, Workload, WorkloadReport};

const GET: u8 = 0;
const PUT: u8 = 1;
const APPEND: u8 = 2;
const CAS: u8 = 3;

/// Encodes a key-value command carrying operation id `op_id`.
pub fn encode_command(op_id: u64, key: &str, op: &Op) -> Bytes {
    let mut buffer = BytesMut::with_capacity(32 + key.len());
    buffer.put_u64_le(op_id);
    let put_str = |buffer: &mut BytesMut, s: &str| {
        buffer.put_u32_le(s.len() as u32);
        buffer.put_slice(s.as_bytes());
    };
    let tag = match op {
        Op::Get => GET,
        Op::Put { .. } => PUT,
        Op::Append { .. } => APPEND,
        Op::Cas { .. } => CAS,
    };
    buffer.put_u8(tag);
    buffer.put_u16_le(key.len() as u16);
    buffer.put_slice(key.as_bytes());
    match op {
        Op::Get => {}
        Op::Put { value } | Op::Append { value } => put_str(&mut buffer, value),
        Op::Cas { from, to } => {
            put_str(&mut buffer, from);
            put_str(&mut buffer, to);
        }
    }
    buffer.freeze()
}

/// A decoded key-value command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    /// The operation id.
    pub op_id: u64,
    /// The key.
    pub key: String,
    /// The operation.
    pub op: Op,
}

/// A command parsed without copying: operation id, tag, key and up to
/// two string arguments.
struct RawCommand<'a> {
    op_id: u64,
    tag: u8,
    key: &'a str,
    first: &'a str,
    second: &'a str,
}

fn parse(bytes: &[u8]) -> Option<RawCommand<'_>> {
    let mut reader = bytes;
    let mut take = |length: usize| -> Option<&[u8]> {
        if reader.len() < length {
            return None;
        }
        let (head, tail) = reader.split_at(length);
        reader = tail;
        Some(head)
    };
    let op_id = u64::from_le_bytes(take(8)?.try_into().ok()?);
    let tag = take(1)?[0];
    let key_length = u16::from_le_bytes(take(2)?.try_into().ok()?) as usize;
    let key = std::str::from_utf8(take(key_length)?).ok()?;
    let mut string = || -> Option<&str> {
        let length = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
        std::str::from_utf8(take(length)?).ok()
    };
    let (first, second) = match tag {
        GET => ("", ""),
        PUT | APPEND => (string()?, ""),
        CAS => {
            let from = string()?;
            (from, string()?)
        }
        _ => return None,
    };
    Some(RawCommand {
        op_id,
        tag,
        key,
        first,
        second,
    })
}

/// Decodes a command; `None` when malformed.
pub fn decode_command(bytes: &[u8]) -> Option<Command> {
    let raw = parse(bytes)?;
    let op = match raw.tag {
        GET => Op::Get,
        PUT => Op::Put {
            value: raw.first.to_string(),
        },
        APPEND => Op::Append {
            value: raw.first.to_string(),
        },
        _ => Op::Cas {
            from: raw.first.to_string(),
            to: raw.second.to_string(),
        },
    };
    Some(Command {
        op_id: raw.op_id,
        key: raw.key.to_string(),
        op,
    })
}

/// Decodes a response to `op` into a history output.
pub fn decode_response(op: &Op, response: &[u8]) -> Option<Output> {
    match (op, response.first()) {
        (Op::Get, Some(0)) => Some(Output::Value(
            String::from_utf8(response[1..].to_vec()).ok()?,
        )),
        (Op::Put { .. } | Op::Append { .. }, Some(1)) => Some(Output::Done),
        (Op::Cas { .. }, Some(2)) if response.len() == 2 => Some(Output::Swapped(response[1] == 1)),
        _ => None,
    }
}

/// The key-value state machine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvStateMachine {
    data: BTreeMap<String, String>,
    /// Deliberate bug: when set, some appends are applied twice depending
    /// on this per-replica value, so replicas diverge.
    quirk: Option<u64>,
}

impl KvStateMachine {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A deliberately non-deterministic store (for testing the checkers):
    /// replicas built with different `salt`s apply some appends twice on
    /// some replicas and once on others.
    pub fn nondeterministic(salt: u64) -> Self {
        KvStateMachine {
            data: BTreeMap::new(),
            quirk: Some(salt),
        }
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.data.get(key).map(String::as_str)
    }
}

impl KvStateMachine {
    fn get_response(&self, key: &str) -> Bytes {
        let value = self.data.get(key).map(String::as_str).unwrap_or("");
        let mut buffer = BytesMut::with_capacity(1 + value.len());
        buffer.put_u8(0);
        buffer.put_slice(value.as_bytes());
        buffer.freeze()
    }
}

impl StateMachine for KvStateMachine {
    /// Gets are answered without the log; everything else is not a read.
    fn query(&self, request: &[u8]) -> Option<Bytes> {
        let command = parse(request)?;
        (command.tag == GET).then(|| self.get_response(command.key))
    }

    fn apply(&mut self, index: Index, command: &[u8]) -> Bytes {
        let Some(command) = parse(command) else {
            return Bytes::from_static(&[0xff]);
        };
        match command.tag {
            GET => self.get_response(command.key),
            PUT => {
                match self.data.get_mut(command.key) {
                    Some(slot) => command.first.clone_into(slot),
                    None => {
                        self.data
                            .insert(command.key.to_string(), command.first.to_string());
                    }
                }
                Bytes::from_static(&[1])
            }
            APPEND => {
                if !self.data.contains_key(command.key) {
                    self.data.insert(command.key.to_string(), String::new());
                }
                if let Some(slot) = self.data.get_mut(command.key) {
                    slot.push_str(command.first);
                    if let Some(salt) = self.quirk {
                        if (index + salt).is_multiple_of(3) {
                            slot.push_str(command.first);
                        }
                    }
                }
                Bytes::from_static(&[1])
            }
            _ => {
                let current = self.data.get(command.key).map(String::as_str).unwrap_or("");
                let swapped = current == command.first;
                if swapped {
                    self.data
                        .insert(command.key.to_string(), command.second.to_string());
                }
                Bytes::copy_from_slice(&[2, swapped as u8])
            }
        }
    }

    fn snapshot(&self) -> Bytes {
        let mut buffer = BytesMut::new();
        buffer.put_u64_le(self.data.len() as u64);
        for (key, value) in &self.data {
            buffer.put_u32_le(key.len() as u32);
            buffer.put_slice(key.as_bytes());
            buffer.put_u32_le(value.len() as u32);
            buffer.put_slice(value.as_bytes());
        }
        buffer.freeze()
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
        let truncated = || RestoreError::new("key-value snapshot truncated");
        let mut reader = snapshot;
        let mut take = |length: usize| -> Result<&[u8], RestoreError> {
            if reader.len() < length {
                return Err(truncated());
            }
            let (head, tail) = reader.split_at(length);
            reader = tail;
            Ok(head)
        };
        let count = u64::from_le_bytes(take(8)?.try_into().map_err(|_| truncated())?);
        let mut data = BTreeMap::new();
        for _ in 0..count {
            let mut string = || -> Result<String, RestoreError> {
                let length =
                    u32::from_le_bytes(take(4)?.try_into().map_err(|_| truncated())?) as usize;
                String::from_utf8(take(length)?.to_vec())
                    .map_err(|_| RestoreError::new("key or value is not UTF-8"))
            };
            let key = string()?;
            let value = string()?;
            data.insert(key, value);
        }
        self.data = data;
        Ok(())
    }
}

/// Mix of operations and key space of a [`KvWorkload`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvWorkloadConfig {
    /// Number of keys (`k0`, `k1`, ...).
    pub keys: usize,
    /// Relative weights of get, put, append and cas.
    pub weights: [u32; 4],
}

impl Default for KvWorkloadConfig {
    fn default() -> Self {
        KvWorkloadConfig {
            keys: 8,
            weights: [3, 2, 3, 2],
        }
    }
}

/// Clients issuing get / put / append / cas; records the history and
/// checks it for linearizability at the end.
#[derive(Clone, Debug)]
pub struct KvWorkload {
    config: KvWorkloadConfig,
    history: Vec<Operation>,
    /// Per operation of `history`: the read path that served it, for reads
    /// served without the log.
    read_paths: Vec<Option<concord::ReadPath>>,
    /// Per client: index into `history` of the operation in flight.
    in_flight: Vec<Option<usize>>,
    counters: Vec<u64>,
    /// Per key, the last value read from or written to it.
    last_seen: BTreeMap<String, String>,
    check: bool,
    check_config: CheckConfig,
    /// Per operation of `history`: its operation id.
    op_ids: Vec<u64>,
    /// A forced recovery: its time and the lost operations' ids.
    forced: Option<(u64, BTreeSet<u64>)>,
}

impl KvWorkload {
    /// A workload for `clients` clients.
    pub fn new(config: KvWorkloadConfig, clients: usize) -> Self {
        let check_config = CheckConfig {
            max_steps: 200_000_000,
            ..CheckConfig::default()
        };
        KvWorkload {
            config,
            history: Vec::new(),
            read_paths: Vec::new(),
            in_flight: vec![None; clients],
            counters: vec![0; clients],
            last_seen: BTreeMap::new(),
            check: true,
            check_config,
            op_ids: Vec::new(),
            forced: None,
        }
    }

    /// Turns the linearizability check at the end off (the history is
    /// still recorded).
    pub fn without_check(mut self) -> Self {
        self.check = false;
        self
    }

    /// The history recorded so far.
    pub fn history(&self) -> &[Operation] {
        &self.history
    }

    /// Per operation of [`KvWorkload::history`], the read path that served
    /// it (`None` for an operation that went through the log, or whose
    /// outcome never arrived).
    pub fn read_paths(&self) -> &[Option<concord::ReadPath>] {
        &self.read_paths
    }
}

/// Moves `operation` out of the history to complete it, leaving a
/// placeholder that owns no allocation (cloning it would copy its key and
/// values).
fn take_operation(operation: &mut Operation) -> Operation {
    std::mem::replace(operation, Operation::new(0, String::new(), Op::Get, 0))
}

impl Workload for KvWorkload {
    fn next_command(&mut self, client: usize, now_ns: u64, rng: &mut ChaCha8Rng) -> Option<Bytes> {
        if client >= self.in_flight.len() {
            return None;
        }
        self.counters[client] += 1;
        let number = self.counters[client];
        let key = format!("k{}", rng.gen_range(0..self.config.keys.max(1)));
        let total: u32 = self.config.weights.iter().sum::<u32>().max(1);
        let mut pick = rng.gen_range(0..total);
        let mut kind = 0;
        for (i, weight) in self.config.weights.iter().enumerate() {
            if pick < *weight {
                kind = i;
                break;
            }
            pick -= weight;
        }
        let value = format!("{client}.{number};");
        let op = match kind {
            0 => Op::Get,
            1 => Op::Put { value },
            2 => Op::Append { value },
            _ => {
                // Compare against a value the key may plausibly hold: the
                // last value seen or written there, or empty.
                let from = if rng.gen_bool(0.25) {
                    String::new()
                } else {
                    self.last_seen.get(&key).cloned().unwrap_or_default()
                };
                Op::Cas { from, to: value }
            }
        };
        match &op {
            Op::Put { value } | Op::Cas { to: value, .. } => {
                self.last_seen.insert(key.clone(), value.clone());
            }
            _ => {}
        }
        let op_id = ((client as u64) << 40) | number;
        let command = encode_command(op_id, &key, &op);
        self.in_flight[client] = Some(self.history.len());
        self.op_ids.push(op_id);
        self.history
            .push(Operation::new(client as u64, key, op, now_ns));
        self.read_paths.push(None);
        Some(command)
    }

    fn complete(&mut self, client: usize, now_ns: u64, result: OpResult<'_>) {
        let Some(index) = self.in_flight.get_mut(client).and_then(Option::take) else {
            return;
        };
        let operation = &mut self.history[index];
        match result {
            OpResult::Ok(response) => match decode_response(&operation.op, response) {
                Some(output) => {
                    if let Output::Value(value) = &output {
                        self.last_seen.insert(operation.key.clone(), value.clone());
                    }
                    *operation = take_operation(operation).completed(now_ns, output);
                }
                None => {
                    // A response that does not fit: keep the outcome
                    // unknown rather than invent one.
                }
            },
            OpResult::Failed => *operation = take_operation(operation).failed(now_ns),
            OpResult::Unknown => {}
        }
    }

    fn is_read_only(&self, command: &[u8]) -> bool {
        // The tag alone: decoding would copy the key and values.
        parse(command).is_some_and(|command| command.tag == GET)
    }

    fn served_by(&mut self, client: usize, path: concord::ReadPath) {
        if let Some(Some(index)) = self.in_flight.get(client) {
            self.read_paths[*index] = Some(path);
        }
    }

    fn describe(&self, command: &[u8]) -> String {
        match decode_command(command) {
            Some(Command {
                key, op: Op::Get, ..
            }) => format!("get {key}"),
            Some(Command {
                key,
                op: Op::Put { value },
                ..
            }) => format!("put {key} = {value:?}"),
            Some(Command {
                key,
                op: Op::Append { value },
                ..
            }) => format!("append {key} += {value:?}"),
            Some(Command {
                key,
                op: Op::Cas { from, to },
                ..
            }) => format!("cas {key} {from:?} -> {to:?}"),
            None => "malformed command".to_string(),
        }
    }

    fn command_id(&self, command: &[u8]) -> Option<u64> {
        let bytes: [u8; 8] = command.get(..8)?.try_into().ok()?;
        Some(u64::from_le_bytes(bytes))
    }

    fn supports_forced_recovery(&self) -> bool {
        true
    }

    fn forced_recovery(&mut self, recovered_ns: u64, lost_op_ids: &BTreeSet<u64>) {
        self.forced = Some((recovered_ns, lost_op_ids.clone()));
    }

    fn failure_kind(&self) -> crate::engine::FailureKind {
        crate::engine::FailureKind::Linearizability
    }

    fn finish(&mut self) -> WorkloadReport {
        let operations_checked = self.history.len() as u64;
        if !self.check {
            return WorkloadReport {
                operations_checked,
                failure: None,
            };
        }
        let verdict = match &self.forced {
            None => check_history_with(&self.history, &self.check_config).map_failure(|text| text),
            Some((recovered_ns, lost)) => {
                let (before, across) =
                    split_at_forced_recovery(&self.history, &self.op_ids, *recovered_ns, lost);
                match check_history_with(&before, &self.check_config) {
                    CheckResult::Ok => check_history_with(&across, &self.check_config)
                        .map_failure(|text| {
                            format!(
                                "across the forced recovery at {recovered_ns} ns ({} lost operations may be absent): {text}",
                                lost.len()
                            )
                        }),
                    other => other.map_failure(|text| {
                        format!("before the forced recovery at {recovered_ns} ns: {text}")
                    }),
                }
            }
        };
        let failure = match verdict {
            None => None,
            Some(other) => {
                let mut counts = [0u64; 3];
                for path in self.read_paths.iter().flatten() {
                    counts[*path as usize] += 1;
                }
                let gets = self.history.iter().filter(|op| op.op == Op::Get).count() as u64;
                Some(format!(
                    "{other} (reads served: {} ReadIndex, {} lease, {} follower, {} through the log or unanswered)",
                    counts[0],
                    counts[1],
                    counts[2],
                    gets - counts.iter().sum::<u64>()
                ))
            }
        };
        WorkloadReport {
            operations_checked,
            failure,
        }
    }
}

/// A check verdict as an optional failure text.
trait MapFailure {
    fn map_failure(self, describe: impl FnOnce(String) -> String) -> Option<String>;
}

impl MapFailure for CheckResult {
    fn map_failure(self, describe: impl FnOnce(String) -> String) -> Option<String> {
        match self {
            CheckResult::Ok => None,
            other => Some(describe(other.to_string())),
        }
    }
}

/// The two histories a run with a forced recovery at `recovered_ns` is
/// checked as, each for linearizability, `lost_op_ids` being the ids
/// (`op_ids`, one per operation of `history`) of the acknowledged
/// operations whose entries the survivor did not hold:
///
/// * **before**: the operations called before the recovery, as the old
///   cluster ran them (strict: it was linearizable until it was rebuilt,
///   lost writes included, which did take effect then); one that had not
///   returned by the recovery is unknown (it may have taken effect in the
///   old cluster, or later in the recovered one);
/// * **across**: the whole history with the lost operations unknown (their
///   effects may be absent) and the reads called before the recovery left
///   out (they may have seen the lost writes; the first history checks
///   them). Everything else stays as recorded: an acknowledged write not
///   among the lost must have taken effect and stay.
///
/// Sound because every committed entry the survivor held precedes, in the
/// log, every one it did not hold (log matching): an operation completed
/// before the recovery and not lost never depended on a lost one.
pub fn split_at_forced_recovery(
    history: &[Operation],
    op_ids: &[u64],
    recovered_ns: u64,
    lost_op_ids: &BTreeSet<u64>,
) -> (Vec<Operation>, Vec<Operation>) {
    let unknown = |op: &Operation| Operation {
        ret: None,
        outcome: Outcome::Unknown,
        ..op.clone()
    };
    let before = history
        .iter()
        .filter(|op| op.call < recovered_ns)
        .map(|op| match (&op.outcome, op.ret) {
            (Outcome::Failed, _) => op.clone(),
            (_, Some(ret)) if ret < recovered_ns => op.clone(),
            _ => unknown(op),
        })
        .collect();
    let across = history
        .iter()
        .zip(op_ids.iter())
        .filter(|(op, _)| !(op.op == Op::Get && op.call < recovered_ns))
        .map(|(op, id)| {
            if lost_op_ids.contains(id) {
                unknown(op)
            } else {
                op.clone()
            }
        })
        .collect();
    (before, across)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip() {
        for op in [
            Op::Get,
            Op::Put { value: "v".into() },
            Op::Append { value: "xy".into() },
            Op::Cas {
                from: "".into(),
                to: "z".into(),
            },
        ] {
            let bytes = encode_command(77, "k3", &op);
            assert_eq!(
                decode_command(&bytes),
                Some(Command {
                    op_id: 77,
                    key: "k3".into(),
                    op
                })
            );
        }
        assert_eq!(decode_command(&[1, 2]), None);
    }

    #[test]
    fn state_machine_semantics_and_snapshot() {
        let mut kv = KvStateMachine::new();
        let get = |kv: &mut KvStateMachine, index| {
            let response = kv.apply(index, &encode_command(index, "a", &Op::Get));
            decode_response(&Op::Get, &response)
        };
        assert_eq!(get(&mut kv, 1), Some(Output::Value(String::new())));
        kv.apply(
            2,
            &encode_command(2, "a", &Op::Append { value: "x".into() }),
        );
        kv.apply(
            3,
            &encode_command(3, "a", &Op::Append { value: "y".into() }),
        );
        assert_eq!(get(&mut kv, 4), Some(Output::Value("xy".into())));
        let cas = Op::Cas {
            from: "xy".into(),
            to: "z".into(),
        };
        let response = kv.apply(5, &encode_command(5, "a", &cas));
        assert_eq!(
            decode_response(&cas, &response),
            Some(Output::Swapped(true))
        );
        let response = kv.apply(6, &encode_command(6, "a", &cas));
        assert_eq!(
            decode_response(&cas, &response),
            Some(Output::Swapped(false))
        );
        let snapshot = kv.snapshot();
        let mut other = KvStateMachine::new();
        other.restore(&snapshot).unwrap();
        assert_eq!(other.get("a"), Some("z"));
        assert!(other.restore(&snapshot[..3]).is_err());
        assert_eq!(&kv.apply(7, b"junk")[..], &[0xff]);
    }
}
