//! A workload written in a service's own requests and answers: the
//! plumbing between it and the simulator's byte-level [`Workload`]
//! (operation ids, the service's codec, which request is a read, how an
//! answer decodes) is written here once, for every service's workload.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::ops::Range;

use bytes::Bytes;
use rand_chacha::ChaCha8Rng;

use concord_services::{codec, Service, ServiceRequest};

use crate::history::{Op, Operation, Output};
use crate::linearizability::{check_history_with, CheckConfig, CheckResult};

use crate::engine::FailureKind;
use crate::workload::{OpResult, Workload, WorkloadReport};

/// A service's request.
pub type RequestOf<W> = <<W as ServiceWorkload>::Service as Service>::Request;
/// A service's response.
pub type ResponseOf<W> = <<W as ServiceWorkload>::Service as Service>::Response;

/// A client's next request and what the workload keeps of it; `None`
/// when the client is done.
pub type Next<W> = Option<(RequestOf<W>, <W as ServiceWorkload>::Pending)>;

/// Bits of an operation id that number a client's requests (the bits
/// above name the client).
const NUMBER_BITS: u32 = 40;

/// One request of a client: whose, under which operation id, called when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Call {
    /// The client (0-based).
    pub client: usize,
    /// The operation id the request carries (unique in the run).
    pub op_id: u64,
    /// When the client called it.
    pub call_ns: u64,
}

impl Call {
    /// The client's number for this request: 1, 2, ... in the order it
    /// issued them.
    pub fn number(&self) -> u64 {
        self.op_id & ((1 << NUMBER_BITS) - 1)
    }
}

/// How one request ended, with all the workload knew of it.
#[derive(Clone, Debug)]
pub struct Completed<W: ServiceWorkload + ?Sized> {
    /// The request's call.
    pub call: Call,
    /// When its outcome reached the client.
    pub return_ns: u64,
    /// The request.
    pub request: RequestOf<W>,
    /// What the workload kept of it ([`ServiceWorkload::Pending`]).
    pub pending: W::Pending,
    /// How it ended.
    pub answer: Answer<ResponseOf<W>>,
}

/// How one request of a client ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer<R> {
    /// Executed once; the service's response.
    Done(R),
    /// Refused by the service, with its reason: nothing changed.
    Refused(String),
    /// An answer that is not one of this service's (a violation: the
    /// outcome is unknown).
    Undecodable(String),
    /// Definitely not executed.
    Failed,
    /// Executed once or never.
    Unknown,
}

/// A workload of service [`ServiceWorkload::Service`], in its requests and
/// responses; [`Typed`] makes it a [`Workload`], keeping each client's
/// request in flight with its [`Call`] and [`ServiceWorkload::Pending`].
pub trait ServiceWorkload {
    /// The service the clients call (with its planted mistake, for
    /// `--bug service-bug`, with the `planted-bugs` feature).
    #[cfg(feature = "planted-bugs")]
    type Service: concord_services::PlantedService;
    /// The service the clients call.
    #[cfg(not(feature = "planted-bugs"))]
    type Service: Service;

    /// What the workload keeps of a request until its outcome (where it
    /// recorded it, say).
    type Pending: Clone + std::fmt::Debug;

    /// The next request of `call.client`, and what to keep of it; `None`
    /// when the client is done.
    fn next_request(&mut self, call: Call, rng: &mut ChaCha8Rng) -> Next<Self>;

    /// How a request ended.
    fn completed(&mut self, done: Completed<Self>);

    /// Whether a client sends `request` as a read: the service's rule,
    /// unless a planted bug's client half says otherwise.
    fn sends_as_read(&self, request: &RequestOf<Self>) -> bool {
        request.is_read()
    }

    /// A short description of `request` for the timeline.
    fn describe(&self, request: &RequestOf<Self>) -> String;

    /// The read kept as `pending` was served on `path`.
    fn served_by(&mut self, pending: &Self::Pending, path: concord::ReadPath) {
        let _ = (pending, path);
    }

    /// See [`Workload::supports_forced_recovery`].
    fn supports_forced_recovery(&self) -> bool {
        false
    }

    /// See [`Workload::forced_recovery`].
    fn forced_recovery(&mut self, recovered_ns: u64, lost_op_ids: &BTreeSet<u64>) {
        let _ = (recovered_ns, lost_op_ids);
    }

    /// See [`Workload::failure_kind`].
    fn failure_kind(&self) -> FailureKind {
        FailureKind::Workload("workload")
    }

    /// Checks everything recorded; called once at the end of a run.
    fn finish(&mut self) -> WorkloadReport;
}

/// A client's request in flight.
type InFlight<W> = (Call, RequestOf<W>, <W as ServiceWorkload>::Pending);

/// A [`ServiceWorkload`] as the simulator's [`Workload`].
#[derive(Clone, Debug)]
pub struct Typed<W: ServiceWorkload> {
    workload: W,
    /// Per client, the request in flight.
    in_flight: Vec<Option<InFlight<W>>>,
    /// Per client, requests issued.
    counters: Vec<u64>,
}

impl<W: ServiceWorkload> Typed<W> {
    /// `workload` for `clients` clients.
    pub fn with_clients(workload: W, clients: usize) -> Self {
        Typed {
            workload,
            in_flight: vec![None; clients],
            counters: vec![0; clients],
        }
    }

    /// The service's workload.
    pub fn workload(&self) -> &W {
        &self.workload
    }

    /// The service's workload, to change its settings.
    pub fn workload_mut(&mut self) -> &mut W {
        &mut self.workload
    }

    fn decode(&self, command: &[u8]) -> Option<RequestOf<W>> {
        codec::decode_request::<W::Service>(command)
            .ok()
            .map(|(_, request)| request)
    }
}

impl<W: ServiceWorkload> Workload for Typed<W> {
    fn next_command(&mut self, client: usize, now_ns: u64, rng: &mut ChaCha8Rng) -> Option<Bytes> {
        let number = self.counters.get_mut(client)?;
        *number += 1;
        assert!(
            *number < 1 << NUMBER_BITS,
            "client {client} ran out of operation ids"
        );
        let call = Call {
            client,
            op_id: ((client as u64) << NUMBER_BITS) | *number,
            call_ns: now_ns,
        };
        let (request, pending) = self.workload.next_request(call, rng)?;
        debug_assert_eq!(request.validate(), Ok(()));
        let command = codec::encode_request::<W::Service>(call.op_id, &request);
        self.in_flight[client] = Some((call, request, pending));
        Some(command)
    }

    fn complete(&mut self, client: usize, now_ns: u64, result: OpResult<'_>) {
        let Some((call, request, pending)) = self.in_flight.get_mut(client).and_then(Option::take)
        else {
            return;
        };
        let answer = match result {
            OpResult::Ok(bytes) => match codec::decode_answer::<W::Service>(bytes) {
                Ok(Ok(response)) => Answer::Done(response),
                Ok(Err(reason)) => Answer::Refused(reason),
                Err(error) => Answer::Undecodable(error.to_string()),
            },
            OpResult::Failed => Answer::Failed,
            OpResult::Unknown => Answer::Unknown,
        };
        self.workload.completed(Completed {
            call,
            return_ns: now_ns,
            request,
            pending,
            answer,
        });
    }

    fn command_id(&self, command: &[u8]) -> Option<u64> {
        codec::request_op_id(command)
    }

    fn describe(&self, command: &[u8]) -> String {
        match codec::decode_request::<W::Service>(command) {
            Ok((_, request)) => self.workload.describe(&request),
            Err(error) => format!("malformed request ({error})"),
        }
    }

    fn is_read_only(&self, command: &[u8]) -> bool {
        self.decode(command)
            .is_some_and(|request| self.workload.sends_as_read(&request))
    }

    fn served_by(&mut self, client: usize, path: concord::ReadPath) {
        if let Some(Some((_, _, pending))) = self.in_flight.get(client) {
            self.workload.served_by(pending, path);
        }
    }

    fn supports_forced_recovery(&self) -> bool {
        self.workload.supports_forced_recovery()
    }

    fn forced_recovery(&mut self, recovered_ns: u64, lost_op_ids: &BTreeSet<u64>) {
        self.workload.forced_recovery(recovered_ns, lost_op_ids);
    }

    fn failure_kind(&self) -> FailureKind {
        self.workload.failure_kind()
    }

    fn finish(&mut self) -> WorkloadReport {
        self.workload.finish()
    }
}

/// Requests projected on the keys they touch: one history operation per
/// key, each key's operations checked for linearizability at the end (a
/// projection of a linearizable history is linearizable).
#[derive(Clone, Debug, Default)]
pub struct KeyHistory {
    operations: Vec<Operation>,
}

impl KeyHistory {
    /// Records `call`'s operations on their keys; returns where they
    /// are, to complete them.
    pub fn call(
        &mut self,
        call: Call,
        ops: impl IntoIterator<Item = (String, Op)>,
    ) -> Range<usize> {
        let start = self.operations.len();
        let client = call.client as u64;
        self.operations.extend(
            ops.into_iter()
                .map(|(key, op)| Operation::new(client, key, op, call.call_ns)),
        );
        start..self.operations.len()
    }

    /// Replaces operation `at` by what `change` makes of it (moved out,
    /// not cloned: it owns its key and values).
    fn change(&mut self, at: usize, change: impl FnOnce(Operation) -> Operation) {
        let placeholder = Operation::new(0, String::new(), Op::Get, 0);
        let operation = std::mem::replace(&mut self.operations[at], placeholder);
        self.operations[at] = change(operation);
    }

    /// Completes the operations `at` at `return_ns`, one output each.
    pub fn complete(
        &mut self,
        at: Range<usize>,
        return_ns: u64,
        outputs: impl IntoIterator<Item = Output>,
    ) {
        for (index, output) in at.zip(outputs) {
            self.change(index, |operation| operation.completed(return_ns, output));
        }
    }

    /// Completes the writes `at` at `return_ns`.
    pub fn done(&mut self, at: Range<usize>, return_ns: u64) {
        self.complete(at.clone(), return_ns, at.map(|_| Output::Done));
    }

    /// Marks the operations `at` definitely not applied, learned at
    /// `return_ns`.
    pub fn fail(&mut self, at: Range<usize>, return_ns: u64) {
        for index in at {
            self.change(index, |operation| operation.failed(return_ns));
        }
    }

    /// The operations recorded.
    pub fn operations(&self) -> &[Operation] {
        &self.operations
    }

    /// The operation at `at`.
    pub fn get(&self, at: usize) -> &Operation {
        &self.operations[at]
    }

    /// Checks every key's operations; the failure names `service`.
    pub fn check(&self, service: &str, config: &CheckConfig) -> Option<String> {
        match check_history_with(&self.operations, config) {
            CheckResult::Ok => None,
            other => Some(format!("{service}: {other}")),
        }
    }
}

/// The checker settings of a service's key history: a budget large
/// enough for every sweep's histories.
pub fn check_config() -> CheckConfig {
    CheckConfig {
        max_steps: 200_000_000,
        ..CheckConfig::default()
    }
}

/// Most violations a workload keeps for its report: the first is the
/// one that matters, the rest are counted.
pub const VIOLATIONS_MAX: usize = 8;

/// The invariant violations a workload found.
#[derive(Clone, Debug, Default)]
pub struct Violations {
    kept: Vec<String>,
    dropped: usize,
}

impl Violations {
    /// Records one.
    pub fn push(&mut self, message: String) {
        if self.kept.len() < VIOLATIONS_MAX {
            self.kept.push(message);
        } else {
            self.dropped += 1;
        }
    }

    /// Records a violation for an answer no valid request may get: a
    /// refusal, bytes that do not decode, or a response that does not fit
    /// the request (`Done`); a failure or an unknown outcome is none.
    pub fn unexpected<R: Debug, A: Debug>(&mut self, call: Call, request: &R, answer: &Answer<A>) {
        let client = call.client;
        let what = match answer {
            Answer::Refused(reason) => format!("was refused: {reason}"),
            Answer::Undecodable(error) => format!("got an answer that does not decode: {error}"),
            Answer::Done(response) => format!("got an answer that does not fit: {response:?}"),
            Answer::Failed | Answer::Unknown => return,
        };
        self.push(format!(
            "client {client}'s valid request {request:?} {what}"
        ));
    }

    /// The report of a run that checked `operations_checked` operations:
    /// the violations found, else what `check` finds.
    pub fn report(
        &self,
        operations_checked: u64,
        check: impl FnOnce() -> Option<String>,
    ) -> WorkloadReport {
        WorkloadReport {
            operations_checked,
            failure: self.failure().or_else(check),
        }
    }

    /// Whether none was found.
    pub fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }

    /// The first [`VIOLATIONS_MAX`] found, in the order found.
    pub fn kept(&self) -> &[String] {
        &self.kept
    }

    /// The first, and how many more (`None`: none).
    pub fn failure(&self) -> Option<String> {
        let first = self.kept.first()?;
        let more = self.kept.len() - 1 + self.dropped;
        Some(if more == 0 {
            first.clone()
        } else {
            format!("{first} (and {more} more)")
        })
    }
}
