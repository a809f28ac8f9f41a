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

use std::ops::Range;

use bytes::Bytes;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use concord_services::kv::{Kv, KvRequest, KvResponse};
use concord_services::ServiceRequest;

use super::workload::{
    check_config, Answer, Call, Completed, KeyHistory, Next, ServiceWorkload, Violations,
};
use crate::history::{Op, Operation, Output};
use crate::linearizability::CheckConfig;
use crate::workload::WorkloadReport;

/// Single keys (`s0`..).
pub const SINGLE_KEYS: usize = 4;
/// Groups of keys written together.
pub const GROUPS: usize = 2;
/// Keys in one group.
pub const GROUP_SIZE: usize = 3;
fn group_keys(group: usize) -> Vec<String> {
    (0..GROUP_SIZE)
        .map(|member| format!("g{group}.{}", (b'a' + member as u8) as char))
        .collect()
}

fn bytes(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Clients of the strict key-value store; records a key-level history and
/// checks atomicity and linearizability at the end.
#[derive(Clone, Debug)]
pub struct StrictKvWorkload {
    history: KeyHistory,
    violations: Violations,
    get_manys_checked: u64,
    check_config: CheckConfig,
}

impl Default for StrictKvWorkload {
    fn default() -> Self {
        StrictKvWorkload::new()
    }
}

impl StrictKvWorkload {
    /// A workload for the simulator's clients.
    pub fn new() -> Self {
        StrictKvWorkload {
            history: KeyHistory::default(),
            violations: Violations::default(),
            get_manys_checked: 0,
            check_config: check_config(),
        }
    }

    /// The key-level history recorded so far.
    pub fn history(&self) -> &[Operation] {
        self.history.operations()
    }

    /// Completed `get_many`s whose atomicity was checked.
    pub fn get_manys_checked(&self) -> u64 {
        self.get_manys_checked
    }

    /// Each key written, as the history's operations on it.
    fn pick(&self, client: usize, number: u64, rng: &mut ChaCha8Rng) -> Vec<(String, Op)> {
        let value = format!("{client}.{number}");
        let put = |key: String| {
            let value = value.clone();
            (key, Op::Put { value })
        };
        match rng.gen_range(0..12u32) {
            0..=2 => vec![(format!("s{}", rng.gen_range(0..SINGLE_KEYS)), Op::Get)],
            3..=4 => vec![put(format!("s{}", rng.gen_range(0..SINGLE_KEYS)))],
            5..=7 => group_keys(rng.gen_range(0..GROUPS))
                .into_iter()
                .map(|key| (key, Op::Get))
                .collect(),
            8..=10 => group_keys(rng.gen_range(0..GROUPS))
                .into_iter()
                .map(put)
                .collect(),
            _ => {
                let keys = group_keys(rng.gen_range(0..GROUPS));
                vec![(keys[rng.gen_range(0..GROUP_SIZE)].clone(), Op::Get)]
            }
        }
    }
}

/// The store's request for one pick: a get, a get_many of a group, a put,
/// a put_many of a group.
fn request(picked: &[(String, Op)]) -> KvRequest {
    let group = picked.len() > 1;
    match &picked[0] {
        (key, Op::Get) if !group => KvRequest::Get { key: bytes(key) },
        (_, Op::Get) => KvRequest::GetMany {
            keys: picked.iter().map(|(key, _)| bytes(key)).collect(),
        },
        (key, Op::Put { value }) if !group => KvRequest::Put {
            key: bytes(key),
            value: bytes(value),
        },
        _ => KvRequest::PutMany {
            pairs: picked
                .iter()
                .map(|(key, op)| match op {
                    Op::Put { value } => (bytes(key), bytes(value)),
                    other => unreachable!("a group write of {other:?}"),
                })
                .collect(),
        },
    }
}

impl ServiceWorkload for StrictKvWorkload {
    type Service = Kv;
    type Pending = Range<usize>;

    fn next_request(&mut self, call: Call, rng: &mut ChaCha8Rng) -> Next<Self> {
        let picked = self.pick(call.client, call.number(), rng);
        let request = request(&picked);
        Some((request, self.history.call(call, picked)))
    }

    fn completed(&mut self, done: Completed<Self>) {
        let (call, return_ns, pending) = (done.call, done.return_ns, done.pending);
        let request = done.request;
        let answer = done.answer;
        match answer {
            Answer::Done(KvResponse::Values(values)) if values.len() == pending.len() => {
                if let KvRequest::GetMany { keys } = &request {
                    self.get_manys_checked += 1;
                    if values.iter().any(|value| *value != values[0]) {
                        let seen: Vec<String> = keys
                            .iter()
                            .zip(&values)
                            .map(|(key, value)| {
                                format!("{}={:?}", text(key), value.as_deref().map(text))
                            })
                            .collect();
                        self.violations.push(format!(
                            "put_many atomicity: client {}'s get_many (called at {} ns, returned at {return_ns} ns) saw part of a multi-key write: {}",
                            call.client,
                            call.call_ns,
                            seen.join(", ")
                        ));
                    }
                }
                let outputs = values
                    .into_iter()
                    .map(|value| Output::Value(value.as_deref().map(text).unwrap_or_default()));
                self.history.complete(pending, return_ns, outputs);
            }
            Answer::Done(KvResponse::Written) if !request.is_read() => {
                self.history.done(pending, return_ns);
            }
            Answer::Failed => self.history.fail(pending, return_ns),
            // A refusal changed nothing; reported as a violation below.
            Answer::Refused(_) => {
                self.violations.unexpected(call, &request, &answer);
                self.history.fail(pending, return_ns);
            }
            // May take effect at any instant after the call, or never:
            // left open in the history.
            Answer::Unknown => {}
            other => self.violations.unexpected(call, &request, &other),
        }
    }

    fn describe(&self, request: &KvRequest) -> String {
        match request {
            KvRequest::Get { key } => format!("get {}", text(key)),
            KvRequest::GetMany { keys } => {
                let keys: Vec<String> = keys.iter().map(|key| text(key)).collect();
                format!("get_many {}", keys.join(" "))
            }
            KvRequest::Put { key, value } => format!("put {} = {:?}", text(key), text(value)),
            KvRequest::PutMany { pairs } => {
                let pairs: Vec<String> = pairs
                    .iter()
                    .map(|(key, value)| format!("{}={:?}", text(key), text(value)))
                    .collect();
                format!("put_many {}", pairs.join(" "))
            }
            other => format!("{other:?}"),
        }
    }

    fn finish(&mut self) -> WorkloadReport {
        let operations_checked = self.history.operations().len() as u64;
        let (history, config) = (&self.history, &self.check_config);
        self.violations
            .report(operations_checked, || history.check("strict kv", config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::workload::Typed;
    use crate::workload::{OpResult, Workload};
    use concord_services::codec;
    use rand::SeedableRng;

    type Clients = Typed<StrictKvWorkload>;

    fn clients() -> Clients {
        Typed::with_clients(StrictKvWorkload::new(), 1)
    }

    fn answer(response: KvResponse) -> Bytes {
        codec::encode_answer::<Kv>(&Ok(response))
    }

    fn written() -> Bytes {
        answer(KvResponse::Written)
    }

    /// Drives the workload by hand: client 0 issues commands until one of
    /// the wanted shape comes up.
    fn issue(
        workload: &mut Clients,
        rng: &mut ChaCha8Rng,
        want: fn(&KvRequest) -> bool,
        now: u64,
    ) -> KvRequest {
        for _ in 0..1000 {
            let command = workload.next_command(0, now, rng).unwrap();
            let (_, request) = codec::decode_request::<Kv>(&command).unwrap();
            if want(&request) {
                return request;
            }
            workload.complete(0, now, OpResult::Failed);
        }
        panic!("no request of the wanted shape in 1000 draws");
    }

    /// Issues commands until one is a `put_many`, called at 10 and
    /// acknowledged at 20: its group and the value it wrote first.
    fn put_many_acknowledged(workload: &mut Clients, rng: &mut ChaCha8Rng) -> (String, Bytes) {
        let write = issue(
            workload,
            rng,
            |r| matches!(r, KvRequest::PutMany { .. }),
            10,
        );
        workload.complete(0, 20, OpResult::Ok(&written()));
        let KvRequest::PutMany { pairs } = write else {
            unreachable!()
        };
        let group = text(&pairs[0].0).split('.').next().unwrap().to_string();
        (group, pairs[0].1.clone())
    }

    /// Issues reads at `at` until one is a `get_many` of `group`, failing
    /// the others, and leaves that one in flight (for the caller to
    /// complete at a later time).
    fn read_group(workload: &mut Clients, rng: &mut ChaCha8Rng, group: &str, at: u64) {
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
            if keys[0].starts_with(group.as_bytes()) {
                return;
            }
            workload.complete(0, at + 10, OpResult::Failed);
        }
    }

    /// Issues a read of `group` at `at` (see [`read_group`]) and
    /// completes it 10 later with `values`.
    fn group_read_answered(
        workload: &mut Clients,
        rng: &mut ChaCha8Rng,
        group: &str,
        at: u64,
        values: Vec<Option<Bytes>>,
    ) {
        read_group(workload, rng, group, at);
        let answer = answer(KvResponse::Values(values));
        workload.complete(0, at + 10, OpResult::Ok(&answer));
    }

    #[test]
    fn a_partial_get_many_is_a_violation_and_a_whole_one_is_not() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut workload = clients();
        let (group, value) = put_many_acknowledged(&mut workload, &mut rng);
        // A whole read of that group passes.
        let whole = vec![Some(value.clone()); GROUP_SIZE];
        group_read_answered(&mut workload, &mut rng, &group, 30, whole);
        assert_eq!(workload.clone().finish().failure, None);
        // A read that sees the write on one key only is caught.
        let mut partial = vec![Some(value); GROUP_SIZE];
        partial[1] = None;
        group_read_answered(&mut workload, &mut rng, &group, 50, partial);
        let failure = workload.finish().failure.expect("partial read caught");
        assert!(failure.contains("put_many atomicity"), "{failure}");
    }

    #[test]
    fn a_stale_read_after_a_put_many_fails_linearizability() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let mut workload = clients();
        let (group, _) = put_many_acknowledged(&mut workload, &mut rng);
        // Consistent across the group, but older than an acknowledged
        // write: not linearizable.
        let stale = vec![None; GROUP_SIZE];
        group_read_answered(&mut workload, &mut rng, &group, 30, stale);
        let failure = workload.finish().failure.expect("stale read caught");
        assert!(failure.contains("strict kv"), "{failure}");
    }
}
