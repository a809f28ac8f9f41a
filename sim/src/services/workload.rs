//! A workload written in a service's own requests and answers: the
//! plumbing between it and the simulator's byte-level [`Workload`]
//! (operation ids, the service's codec, which request is a read, how an
//! answer decodes) is written here once, for every service's workload.

use std::collections::BTreeSet;

use bytes::Bytes;
use rand_chacha::ChaCha8Rng;

use concord_services::{codec, Service};

use crate::engine::FailureKind;
use crate::workload::{OpResult, Workload, WorkloadReport};

/// A service's request.
pub type RequestOf<W> = <<W as ServiceWorkload>::Service as Service>::Request;
/// A service's response.
pub type ResponseOf<W> = <<W as ServiceWorkload>::Service as Service>::Response;

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
/// responses; [`Typed`] makes it a [`Workload`].
pub trait ServiceWorkload {
    /// The service the clients call.
    type Service: Service;

    /// The next request of `client` (0-based), issued at `now_ns` under
    /// operation id `op_id`; `None` when the client is done.
    fn next_request(
        &mut self,
        client: usize,
        op_id: u64,
        now_ns: u64,
        rng: &mut ChaCha8Rng,
    ) -> Option<RequestOf<Self>>;

    /// How `client`'s current request ended, learned at `now_ns`.
    fn completed(
        &mut self,
        client: usize,
        now_ns: u64,
        request: RequestOf<Self>,
        answer: Answer<ResponseOf<Self>>,
    );

    /// Whether a client sends `request` as a read: the service's rule,
    /// unless a planted bug's client half says otherwise.
    fn sends_as_read(&self, request: &RequestOf<Self>) -> bool {
        Self::Service::is_read(request)
    }

    /// A short description of `request` for the timeline.
    fn describe(&self, request: &RequestOf<Self>) -> String;

    /// `client`'s current read was served on `path`.
    fn served_by(&mut self, client: usize, path: concord::ReadPath) {
        let _ = (client, path);
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

/// A [`ServiceWorkload`] as the simulator's [`Workload`].
#[derive(Clone, Debug)]
pub struct Typed<W: ServiceWorkload> {
    workload: W,
    /// Per client, the request in flight.
    in_flight: Vec<Option<RequestOf<W>>>,
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
        // Unique per (client, number) for fewer than 2^40 requests each.
        let op_id = ((client as u64) << 40) | *number;
        let request = self.workload.next_request(client, op_id, now_ns, rng)?;
        debug_assert_eq!(W::Service::validate(&request), Ok(()));
        let command = codec::encode_request::<W::Service>(op_id, &request);
        self.in_flight[client] = Some(request);
        Some(command)
    }

    fn complete(&mut self, client: usize, now_ns: u64, result: OpResult<'_>) {
        let Some(request) = self.in_flight.get_mut(client).and_then(Option::take) else {
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
        self.workload.completed(client, now_ns, request, answer);
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
        self.workload.served_by(client, path);
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
