//! The simulator's default workload: clients run get, put, append and
//! compare-and-set on a few keys of the key-value store
//! ([`concord_services::kv`], the store every real server runs), and the
//! history of its real requests and answers is checked for
//! linearizability (per key, by [`crate::linearizability`]).

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use concord::state_machine::{RestoreError, StateMachine};
use concord::Index;
use concord_services::kv::{Kv, KvRequest, KvResponse};

use super::workload::{check_config, Answer, Call, Completed, Next, ServiceWorkload, Typed};
use crate::history::{Op, Operation, Outcome, Output};
use crate::linearizability::{check_history_with, CheckConfig, CheckResult};
use crate::workload::WorkloadReport;

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

/// The default workload: clients issuing get / put / append / cas on the
/// key-value store; records the history and checks it for
/// linearizability at the end.
pub type KvWorkload = Typed<KvRegisters>;

/// The requests and checks of [`KvWorkload`].
#[derive(Clone, Debug)]
pub struct KvRegisters {
    config: KvWorkloadConfig,
    history: Vec<Operation>,
    /// Per operation of `history`: the read path that served it, for reads
    /// served without the log.
    read_paths: Vec<Option<concord::ReadPath>>,
    /// Per key, the last value read from or written to it.
    last_seen: BTreeMap<String, String>,
    check: bool,
    check_config: CheckConfig,
    /// Per operation of `history`: its operation id.
    op_ids: Vec<u64>,
    /// A forced recovery: its time and the lost operations' ids.
    forced: Option<(u64, BTreeSet<u64>)>,
}

impl Typed<KvRegisters> {
    /// A workload for `clients` clients.
    pub fn new(config: KvWorkloadConfig, clients: usize) -> Self {
        let check_config = check_config();
        let registers = KvRegisters {
            config,
            history: Vec::new(),
            read_paths: Vec::new(),
            last_seen: BTreeMap::new(),
            check: true,
            check_config,
            op_ids: Vec::new(),
            forced: None,
        };
        Typed::with_clients(registers, clients)
    }

    /// Turns the linearizability check at the end off (the history is
    /// still recorded).
    pub fn without_check(mut self) -> Self {
        self.workload_mut().check = false;
        self
    }

    /// The history recorded so far.
    pub fn history(&self) -> &[Operation] {
        &self.workload().history
    }

    /// Per operation of [`KvWorkload::history`], the read path that served
    /// it (`None` for an operation that went through the log, or whose
    /// outcome never arrived).
    pub fn read_paths(&self) -> &[Option<concord::ReadPath>] {
        &self.workload().read_paths
    }
}

/// Moves `operation` out of the history to complete it, leaving a
/// placeholder that owns no allocation (cloning it would copy its key and
/// values).
fn take_operation(operation: &mut Operation) -> Operation {
    std::mem::replace(operation, Operation::new(0, String::new(), Op::Get, 0))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The store's request for a history operation on `key`. An absent key
/// and an empty value are one value to the history (whose keys start
/// empty): a compare-and-set from `""` expects the key absent, which is
/// exact here because no request of this workload ever writes `""`.
fn request(key: &str, op: &Op) -> KvRequest {
    let key = Bytes::copy_from_slice(key.as_bytes());
    let bytes = |value: &str| Bytes::copy_from_slice(value.as_bytes());
    match op {
        Op::Get => KvRequest::Get { key },
        Op::Put { value } => KvRequest::Put {
            key,
            value: bytes(value),
        },
        Op::Append { value } => KvRequest::Append {
            key,
            value: bytes(value),
        },
        Op::Cas { from, to } => KvRequest::Cas {
            key,
            expected: (!from.is_empty()).then(|| bytes(from)),
            new: bytes(to),
        },
    }
}

/// The history's output for the store's answer to `op` (`None`: an
/// answer that does not fit the request).
fn output(op: &Op, response: KvResponse) -> Option<Output> {
    match (op, response) {
        (Op::Get, KvResponse::Values(mut values)) if values.len() == 1 => Some(Output::Value(
            values.pop().flatten().map(|v| text(&v)).unwrap_or_default(),
        )),
        (Op::Put { .. } | Op::Append { .. }, KvResponse::Written) => Some(Output::Done),
        (Op::Cas { .. }, KvResponse::Swapped(swapped)) => Some(Output::Swapped(swapped)),
        _ => None,
    }
}

impl ServiceWorkload for KvRegisters {
    type Service = Kv;

    /// Where the request's operation is in the history.
    type Pending = usize;

    fn next_request(&mut self, call: Call, rng: &mut ChaCha8Rng) -> Next<Self> {
        let (client, number) = (call.client, call.number());
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
        let request = request(&key, &op);
        let index = self.history.len();
        self.op_ids.push(call.op_id);
        self.history
            .push(Operation::new(client as u64, key, op, call.call_ns));
        self.read_paths.push(None);
        Some((request, index))
    }

    fn completed(&mut self, done: Completed<Self>) {
        let Completed {
            return_ns: now_ns,
            pending: index,
            answer,
            ..
        } = done;
        let operation = &mut self.history[index];
        match answer {
            Answer::Done(response) => {
                if let Some(output) = output(&operation.op, response) {
                    if let Output::Value(value) = &output {
                        self.last_seen.insert(operation.key.clone(), value.clone());
                    }
                    *operation = take_operation(operation).completed(now_ns, output);
                }
                // An answer that does not fit: the outcome stays unknown
                // rather than invented.
            }
            Answer::Failed => *operation = take_operation(operation).failed(now_ns),
            // A refusal or an undecodable answer of a valid request is no
            // outcome this workload can vouch for: left unknown.
            Answer::Refused(_) | Answer::Undecodable(_) | Answer::Unknown => {}
        }
    }

    fn served_by(&mut self, index: &usize, path: concord::ReadPath) {
        self.read_paths[*index] = Some(path);
    }

    fn describe(&self, request: &KvRequest) -> String {
        match request {
            KvRequest::Get { key } => format!("get {}", text(key)),
            KvRequest::Put { key, value } => format!("put {} = {:?}", text(key), text(value)),
            KvRequest::Append { key, value } => {
                format!("append {} += {:?}", text(key), text(value))
            }
            KvRequest::Cas { key, expected, new } => format!(
                "cas {} {:?} -> {:?}",
                text(key),
                expected.as_deref().map(text).unwrap_or_default(),
                text(new)
            ),
            other => format!("{other:?}"),
        }
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

/// A state machine that applies some commands twice, depending on the
/// replica: a deliberately non-deterministic state machine, for testing
/// the simulator's state-machine safety check (`--bug nondeterministic-state-machine`).
/// Replicas built with different salts apply the command at index `i`
/// twice when `i + salt` is a multiple of 3: an append doubles on some
/// replicas and not on others, so they diverge. Without a salt it is the
/// wrapped state machine, unchanged.
#[derive(Clone, Debug, Default)]
pub struct Nondeterministic<S> {
    inner: S,
    salt: Option<u64>,
}

impl<S> Nondeterministic<S> {
    /// `inner`, applying twice on the indices `salt` picks (`None`: never).
    pub fn new(inner: S, salt: Option<u64>) -> Self {
        Nondeterministic { inner, salt }
    }
}

impl<S: StateMachine> StateMachine for Nondeterministic<S> {
    fn apply(&mut self, index: Index, command: &[u8]) -> Bytes {
        let response = self.inner.apply(index, command);
        if self
            .salt
            .is_some_and(|salt| (index + salt).is_multiple_of(3))
        {
            self.inner.apply(index, command);
        }
        response
    }

    fn query(&self, request: &[u8]) -> Option<Bytes> {
        self.inner.query(request)
    }

    fn snapshot(&self) -> Bytes {
        self.inner.snapshot()
    }

    fn snapshot_source(&self) -> Option<concord::state_machine::SnapshotSource> {
        self.inner.snapshot_source()
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
        self.inner.restore(snapshot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use concord_services::{codec, ServiceMachine};

    fn answer(kv: &mut ServiceMachine<Kv>, index: u64, key: &str, op: &Op) -> Option<Output> {
        let command = codec::encode_request::<Kv>(index, &request(key, op));
        let answer = codec::decode_answer::<Kv>(&kv.apply(index, &command)).unwrap();
        output(op, answer.unwrap())
    }

    #[test]
    fn history_operations_run_on_the_store_as_the_checker_models_them() {
        let mut kv = ServiceMachine::<Kv>::new();
        assert_eq!(
            answer(&mut kv, 1, "a", &Op::Get),
            Some(Output::Value(String::new()))
        );
        let cas_absent = Op::Cas {
            from: String::new(),
            to: "w".into(),
        };
        assert_eq!(
            answer(&mut kv, 2, "a", &cas_absent),
            Some(Output::Swapped(true))
        );
        assert_eq!(
            answer(&mut kv, 3, "a", &Op::Append { value: "x".into() }),
            Some(Output::Done)
        );
        assert_eq!(
            answer(&mut kv, 4, "a", &Op::Get),
            Some(Output::Value("wx".into()))
        );
        // A compare-and-set from "" no longer matches a written key.
        assert_eq!(
            answer(&mut kv, 5, "a", &cas_absent),
            Some(Output::Swapped(false))
        );
        let cas = Op::Cas {
            from: "wx".into(),
            to: "z".into(),
        };
        assert_eq!(answer(&mut kv, 6, "a", &cas), Some(Output::Swapped(true)));
        assert_eq!(
            answer(&mut kv, 7, "a", &Op::Put { value: "p".into() }),
            Some(Output::Done)
        );
        assert_eq!(kv.state().value(b"a"), Some(&Bytes::from_static(b"p")));
        // An answer of the wrong kind is no output.
        assert_eq!(output(&Op::Get, KvResponse::Written), None);
    }

    #[test]
    fn a_nondeterministic_replica_diverges_on_appends() {
        let append =
            codec::encode_request::<Kv>(1, &request("a", &Op::Append { value: "x".into() }));
        let mut first = Nondeterministic::new(ServiceMachine::<Kv>::new(), Some(0));
        let mut second = Nondeterministic::new(ServiceMachine::<Kv>::new(), Some(1));
        let mut off = Nondeterministic::new(ServiceMachine::<Kv>::new(), None);
        off.apply(3, &append);
        assert_eq!(
            off.inner.state().value(b"a"),
            Some(&Bytes::from_static(b"x"))
        );
        first.apply(3, &append);
        second.apply(3, &append);
        assert_eq!(
            first.inner.state().value(b"a"),
            Some(&Bytes::from_static(b"xx"))
        );
        assert_eq!(
            second.inner.state().value(b"a"),
            Some(&Bytes::from_static(b"x"))
        );
        assert_ne!(first.snapshot(), second.snapshot());
    }
}
