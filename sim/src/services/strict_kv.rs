//! The strict key-value store's workload and invariants.
//!
//! Keys come in two kinds. *Single* keys (`s0`..) are read with `get` and
//! written with `put`. *Group* keys come in groups of
//! [`GROUP_SIZE`] (`g0.a`, `g0.b`, ...): a group is only ever written
//! whole, by one `put_many` that gives every key of the group the same
//! value, unique to that write; it is read whole with `get_many` (and now
//! and then one member alone with `get`).
//!
//! Checks at the end of a run:
//!
//! * **put_many atomicity**: every completed `get_many` of a group returns
//!   the same value for every key of the group. Since each write sets the
//!   whole group to one value of its own, differing values can only come
//!   from a read that saw part of one write (or parts of two).
//! * **linearizability** of every operation, projected on each key: a
//!   `put_many` is a `put` of each of its keys, a `get_many` a `get` of
//!   each, with the operation's call and return times and outcome; the
//!   simulator's checker then checks every key's history (a projection of
//!   a linearizable history is linearizable).
//! * a valid request is never refused.

use bytes::Bytes;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use concord_services::kv::{KvRequest, KvResponse};

use crate::history::{Op, Operation, Output};
use crate::linearizability::{check_history_with, CheckConfig, CheckResult};
use crate::workload::{OpResult, Workload, WorkloadReport};

/// Single keys (`s0`..).
pub const SINGLE_KEYS: usize = 4;
/// Groups of keys written together.
pub const GROUPS: usize = 2;
/// Keys in one group.
pub const GROUP_SIZE: usize = 3;
/// Violations kept for the report (the first is the one that matters).
const VIOLATIONS_MAX: usize = 8;

fn group_keys(group: usize) -> Vec<String> {
    (0..GROUP_SIZE)
        .map(|member| format!("g{group}.{}", (b'a' + member as u8) as char))
        .collect()
}

/// One client operation in flight: its request and the entries of the
/// key-level history it projects to.
#[derive(Clone, Debug)]
struct InFlight {
    request: KvRequest,
    call_ns: u64,
    history: Vec<usize>,
}

/// Clients of the strict key-value store; records a key-level history and
/// checks atomicity and linearizability at the end.
#[derive(Clone, Debug)]
pub struct StrictKvWorkload {
    history: Vec<Operation>,
    in_flight: Vec<Option<InFlight>>,
    counters: Vec<u64>,
    violations: Vec<String>,
    get_manys_checked: u64,
    check_config: CheckConfig,
}

impl StrictKvWorkload {
    /// A workload for `clients` clients.
    pub fn new(clients: usize) -> Self {
        StrictKvWorkload {
            history: Vec::new(),
            in_flight: vec![None; clients],
            counters: vec![0; clients],
            violations: Vec::new(),
            get_manys_checked: 0,
            check_config: CheckConfig {
                max_steps: 200_000_000,
                ..CheckConfig::default()
            },
        }
    }

    /// The key-level history recorded so far.
    pub fn history(&self) -> &[Operation] {
        &self.history
    }

    /// Completed `get_many`s whose atomicity was checked.
    pub fn get_manys_checked(&self) -> u64 {
        self.get_manys_checked
    }

    fn violation(&mut self, message: String) {
        if self.violations.len() < VIOLATIONS_MAX {
            self.violations.push(message);
        }
    }

    fn pick(&self, client: usize, number: u64, rng: &mut ChaCha8Rng) -> KvRequest {
        let value = format!("{client}.{number}");
        match rng.gen_range(0..12u32) {
            0..=2 => KvRequest::Get {
                key: format!("s{}", rng.gen_range(0..SINGLE_KEYS)),
            },
            3..=4 => KvRequest::Put {
                key: format!("s{}", rng.gen_range(0..SINGLE_KEYS)),
                value,
            },
            5..=7 => KvRequest::GetMany {
                keys: group_keys(rng.gen_range(0..GROUPS)),
            },
            8..=10 => KvRequest::PutMany {
                pairs: group_keys(rng.gen_range(0..GROUPS))
                    .into_iter()
                    .map(|key| (key, value.clone()))
                    .collect(),
            },
            _ => {
                let keys = group_keys(rng.gen_range(0..GROUPS));
                KvRequest::Get {
                    key: keys[rng.gen_range(0..GROUP_SIZE)].clone(),
                }
            }
        }
    }
}

impl Workload for StrictKvWorkload {
    fn next_command(&mut self, client: usize, now_ns: u64, rng: &mut ChaCha8Rng) -> Option<Bytes> {
        if client >= self.in_flight.len() {
            return None;
        }
        self.counters[client] += 1;
        let number = self.counters[client];
        let request = self.pick(client, number, rng);
        debug_assert!(request.validate().is_ok());
        let projected: Vec<(String, Op)> = match &request {
            KvRequest::Get { key } => vec![(key.clone(), Op::Get)],
            KvRequest::GetMany { keys } => keys.iter().map(|key| (key.clone(), Op::Get)).collect(),
            KvRequest::Put { key, value } => vec![(
                key.clone(),
                Op::Put {
                    value: value.clone(),
                },
            )],
            KvRequest::PutMany { pairs } => pairs
                .iter()
                .map(|(key, value)| {
                    (
                        key.clone(),
                        Op::Put {
                            value: value.clone(),
                        },
                    )
                })
                .collect(),
        };
        let mut indices = Vec::with_capacity(projected.len());
        for (key, op) in projected {
            indices.push(self.history.len());
            self.history
                .push(Operation::new(client as u64, key, op, now_ns));
        }
        let op_id = ((client as u64) << 40) | number;
        let command = request.encode(op_id);
        self.in_flight[client] = Some(InFlight {
            request,
            call_ns: now_ns,
            history: indices,
        });
        Some(command)
    }

    fn complete(&mut self, client: usize, now_ns: u64, result: OpResult<'_>) {
        let Some(op) = self.in_flight.get_mut(client).and_then(Option::take) else {
            return;
        };
        match result {
            OpResult::Ok(bytes) => match KvResponse::decode(bytes) {
                Ok(KvResponse::Values(values)) if values.len() == op.history.len() => {
                    if let KvRequest::GetMany { keys } = &op.request {
                        self.get_manys_checked += 1;
                        if values.iter().any(|value| *value != values[0]) {
                            let seen: Vec<String> = keys
                                .iter()
                                .zip(&values)
                                .map(|(key, value)| format!("{key}={value:?}"))
                                .collect();
                            self.violation(format!(
                                "put_many atomicity: client {client}'s get_many (called at {} ns, returned at {now_ns} ns) saw part of a multi-key write: {}",
                                op.call_ns,
                                seen.join(", ")
                            ));
                        }
                    }
                    for (index, value) in op.history.iter().zip(values) {
                        let operation = &mut self.history[*index];
                        *operation = operation
                            .clone()
                            .completed(now_ns, Output::Value(value.unwrap_or_default()));
                    }
                }
                Ok(KvResponse::Written) if !op.request.is_read() => {
                    for index in &op.history {
                        let operation = &mut self.history[*index];
                        *operation = operation.clone().completed(now_ns, Output::Done);
                    }
                }
                Ok(KvResponse::Refused(reason)) => {
                    self.violation(format!(
                        "client {client}'s valid request {:?} was refused: {reason}",
                        op.request
                    ));
                    for index in &op.history {
                        let operation = &mut self.history[*index];
                        *operation = operation.clone().failed(now_ns);
                    }
                }
                other => {
                    self.violation(format!(
                        "client {client}'s request {:?} got an answer that does not fit: {other:?}",
                        op.request
                    ));
                }
            },
            OpResult::Failed => {
                for index in &op.history {
                    let operation = &mut self.history[*index];
                    *operation = operation.clone().failed(now_ns);
                }
            }
            // May take effect at any instant after the call, or never:
            // left open in the history.
            OpResult::Unknown => {}
        }
    }

    fn command_id(&self, command: &[u8]) -> Option<u64> {
        let bytes: [u8; 8] = command.get(..8)?.try_into().ok()?;
        Some(u64::from_le_bytes(bytes))
    }

    fn is_read_only(&self, command: &[u8]) -> bool {
        KvRequest::decode(command).is_ok_and(|(_, request)| request.is_read())
    }

    fn describe(&self, command: &[u8]) -> String {
        match KvRequest::decode(command) {
            Ok((_, KvRequest::Get { key })) => format!("get {key}"),
            Ok((_, KvRequest::GetMany { keys })) => format!("get_many {}", keys.join(" ")),
            Ok((_, KvRequest::Put { key, value })) => format!("put {key} = {value:?}"),
            Ok((_, KvRequest::PutMany { pairs })) => {
                let pairs: Vec<String> = pairs
                    .iter()
                    .map(|(key, value)| format!("{key}={value:?}"))
                    .collect();
                format!("put_many {}", pairs.join(" "))
            }
            Err(error) => format!("malformed request ({error})"),
        }
    }

    fn finish(&mut self) -> WorkloadReport {
        let operations_checked = self.history.len() as u64;
        if let Some(first) = self.violations.first() {
            let more = self.violations.len() - 1;
            let failure = if more == 0 {
                first.clone()
            } else {
                format!("{first} (and {more} more)")
            };
            return WorkloadReport {
                operations_checked,
                failure: Some(failure),
            };
        }
        let failure = match check_history_with(&self.history, &self.check_config) {
            CheckResult::Ok => None,
            other => Some(format!("strict kv: {other}")),
        };
        WorkloadReport {
            operations_checked,
            failure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn written() -> Bytes {
        KvResponse::Written.encode()
    }

    /// Drives the workload by hand: client 0 issues commands until one of
    /// the wanted shape comes up.
    fn issue(
        workload: &mut StrictKvWorkload,
        rng: &mut ChaCha8Rng,
        want: fn(&KvRequest) -> bool,
        now: u64,
    ) -> KvRequest {
        for _ in 0..1000 {
            let command = workload.next_command(0, now, rng).unwrap();
            let (_, request) = KvRequest::decode(&command).unwrap();
            if want(&request) {
                return request;
            }
            workload.complete(0, now, OpResult::Failed);
        }
        panic!("no request of the wanted shape in 1000 draws");
    }

    /// Issues reads at `at` until one is a `get_many` of `group`, failing
    /// the others, and leaves that one in flight (for the caller to
    /// complete at a later time).
    fn read_group(workload: &mut StrictKvWorkload, rng: &mut ChaCha8Rng, group: &str, at: u64) {
        loop {
            let read = issue(
                workload,
                rng,
                |r| matches!(r, KvRequest::GetMany { .. }),
                at,
            );
            let KvRequest::GetMany { keys } = read else {
                unreachable!()
            };
            if keys[0].starts_with(group) {
                return;
            }
            workload.complete(0, at + 10, OpResult::Failed);
        }
    }

    #[test]
    fn a_partial_get_many_is_a_violation_and_a_whole_one_is_not() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut workload = StrictKvWorkload::new(1);
        let write = issue(
            &mut workload,
            &mut rng,
            |r| matches!(r, KvRequest::PutMany { .. }),
            10,
        );
        workload.complete(0, 20, OpResult::Ok(&written()));
        let KvRequest::PutMany { pairs } = write else {
            unreachable!()
        };
        let value = pairs[0].1.clone();
        let group = pairs[0].0.split('.').next().unwrap().to_string();
        // A whole read of that group passes.
        read_group(&mut workload, &mut rng, &group, 30);
        let whole = KvResponse::Values(vec![Some(value.clone()); GROUP_SIZE]).encode();
        workload.complete(0, 40, OpResult::Ok(&whole));
        assert_eq!(workload.clone().finish().failure, None);
        // A read that sees the write on one key only is caught.
        read_group(&mut workload, &mut rng, &group, 50);
        let mut values = vec![Some(value.clone()); GROUP_SIZE];
        values[1] = None;
        workload.complete(0, 60, OpResult::Ok(&KvResponse::Values(values).encode()));
        let failure = workload.finish().failure.expect("partial read caught");
        assert!(failure.contains("put_many atomicity"), "{failure}");
    }

    #[test]
    fn a_stale_read_after_a_put_many_fails_linearizability() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let mut workload = StrictKvWorkload::new(1);
        let write = issue(
            &mut workload,
            &mut rng,
            |r| matches!(r, KvRequest::PutMany { .. }),
            10,
        );
        workload.complete(0, 20, OpResult::Ok(&written()));
        let KvRequest::PutMany { pairs } = write else {
            unreachable!()
        };
        let group = pairs[0].0.split('.').next().unwrap().to_string();
        read_group(&mut workload, &mut rng, &group, 30);
        // Consistent across the group, but older than an acknowledged
        // write: not linearizable.
        let stale = KvResponse::Values(vec![None; GROUP_SIZE]).encode();
        workload.complete(0, 40, OpResult::Ok(&stale));
        let failure = workload.finish().failure.expect("stale read caught");
        assert!(failure.contains("strict kv"), "{failure}");
    }
}
