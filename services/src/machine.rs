//! Any [`Service`] as a concord [`StateMachine`]: decodes each command
//! ([`crate::codec`]), refuses what is malformed, meant for another
//! service or over a limit, dispatches the rest to the service's `apply`
//! or `read`, encodes the answer, and snapshots and restores the whole
//! state. A server runs it behind the exactly-once session layer:
//! [`service_state_machine`].

use bytes::Bytes;

use concord::session::WithSessions;
use concord::state_machine::{RestoreError, SnapshotSource, StateMachine};
use concord::Index;

use crate::codec;
use crate::service::{Applied, Outcome, Service, ServiceRequest};

/// Sessions a server remembers (the least recently used is evicted beyond
/// it; its client then gets "session expired").
pub const SESSIONS_MAX: usize = 65_536;

/// What a server runs for service `S`: the service behind the session
/// layer, so a write retried after a lost answer is applied once.
pub type SessionMachine<S> = WithSessions<ServiceMachine<S>>;

/// A fresh state machine of service `S` with sessions, as every real
/// server runs it.
pub fn service_state_machine<S: Service>() -> SessionMachine<S> {
    WithSessions::new(ServiceMachine::new(), SESSIONS_MAX)
}

/// Service `S` as a state machine (without sessions).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceMachine<S> {
    state: S,
    /// The service's planted mistake, when it runs one
    /// ([`crate::planted`]).
    #[cfg(feature = "planted-bugs")]
    planted: Option<crate::planted::Planted<S>>,
}

impl<S: Service> ServiceMachine<S> {
    /// An empty state.
    pub fn new() -> Self {
        ServiceMachine {
            state: S::default(),
            #[cfg(feature = "planted-bugs")]
            planted: None,
        }
    }

    /// The service's state (for tests and inspection: reading it here is
    /// not linearizable).
    pub fn state(&self) -> &S {
        &self.state
    }

    /// Runs the service's planted mistake from now on.
    #[cfg(feature = "planted-bugs")]
    pub(crate) fn plant(&mut self, planted: crate::planted::Planted<S>) {
        self.planted = Some(planted);
    }

    /// [`StateMachine::apply`], executing a valid request with `apply`.
    pub(crate) fn apply_with(
        &mut self,
        index: Index,
        command: &[u8],
        apply: fn(&mut S, S::Request, Applied) -> Outcome<S>,
    ) -> Bytes {
        let answer = codec::decode_request::<S>(command)
            .map_err(|e| e.to_string())
            .and_then(|(_, request)| {
                request.validate()?;
                apply(&mut self.state, request, Applied { index })
            });
        codec::encode_answer::<S>(&answer)
    }

    /// [`StateMachine::query`], answering a valid read with `read`.
    pub(crate) fn query_with(
        &self,
        request: &[u8],
        read: fn(&S, &S::Request) -> Option<Outcome<S>>,
    ) -> Option<Bytes> {
        let answer = match codec::decode_request::<S>(request) {
            Err(error) => Err(error.to_string()),
            Ok((_, request)) => match request.validate() {
                Err(reason) => request.is_read().then_some(Err(reason))?,
                Ok(()) => read(&self.state, &request)?,
            },
        };
        Some(codec::encode_answer::<S>(&answer))
    }
}

impl<S: Service> StateMachine for ServiceMachine<S> {
    fn apply(&mut self, index: Index, command: &[u8]) -> Bytes {
        #[cfg(feature = "planted-bugs")]
        if let Some(planted) = self.planted {
            return (planted.apply)(self, index, command);
        }
        self.apply_with(index, command, S::apply)
    }

    /// A read of this service is answered here, and so is a refusal of
    /// what [`StateMachine::apply`] would refuse too (bytes that are not
    /// a request of this service, a read over a limit): the refusal is
    /// encoded the same for every service, so a client of another
    /// service reads its reason. A valid write is `None`: not a read.
    fn query(&self, request: &[u8]) -> Option<Bytes> {
        #[cfg(feature = "planted-bugs")]
        if let Some(planted) = self.planted {
            return (planted.query)(self, request);
        }
        self.query_with(request, S::read)
    }

    fn snapshot(&self) -> Bytes {
        codec::encode_snapshot(&self.state)
    }

    fn snapshot_source(&self) -> Option<SnapshotSource> {
        let copy = self.state.snapshot_copy()?;
        Some(Box::new(move || codec::encode_snapshot(&copy)))
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
        let state: S =
            codec::decode_snapshot(snapshot).map_err(|e| RestoreError::new(e.to_string()))?;
        state
            .check_restored()
            .map_err(|reason| RestoreError::new(format!("{} snapshot: {reason}", S::NAME)))?;
        self.state = state;
        Ok(())
    }
}

/// What every service's tests do: requests in, answers out, through the
/// bytes a server sees.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// Applies `request` at `index`, as a replica applies a committed one.
    pub fn apply<S: Service>(
        machine: &mut ServiceMachine<S>,
        index: Index,
        request: &S::Request,
    ) -> Result<S::Response, String> {
        let answer = machine.apply(index, &codec::encode_request::<S>(index, request));
        codec::decode_answer::<S>(&answer).expect("an answer decodes")
    }

    /// Snapshots `machine` and restores the snapshot into a fresh one,
    /// which must equal it; every cut of the snapshot, and the snapshot
    /// under another codec version, must be refused. Returns the copy.
    pub fn restored_copy<S: Service + PartialEq + std::fmt::Debug>(
        machine: &ServiceMachine<S>,
    ) -> ServiceMachine<S> {
        let snapshot = machine.snapshot();
        let mut copy = ServiceMachine::<S>::new();
        copy.restore(&snapshot).expect("a snapshot restores");
        assert_eq!(&copy, machine);
        for cut in 0..snapshot.len() {
            let cut = ServiceMachine::<S>::new().restore(&snapshot[..cut]);
            assert!(
                cut.is_err(),
                "{} bytes of a snapshot restored",
                snapshot.len()
            );
        }
        let mut other_version = snapshot.to_vec();
        other_version[0] = codec::CODEC_VERSION + 1;
        let error = ServiceMachine::<S>::new()
            .restore(&other_version)
            .unwrap_err();
        let named = format!("version {}", codec::CODEC_VERSION + 1);
        assert!(error.to_string().contains(&named), "{error}");
        copy
    }

    /// Serves `request` as a read; `None` when it is not one.
    pub fn query<S: Service>(
        machine: &ServiceMachine<S>,
        request: &S::Request,
    ) -> Option<Result<S::Response, String>> {
        let answer = machine.query(&codec::encode_request::<S>(0, request))?;
        Some(codec::decode_answer::<S>(&answer).expect("an answer decodes"))
    }
}
