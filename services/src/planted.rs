//! Each service's planted mistake, for measuring the simulator's checks
//! of that service (`concord-sim run --service NAME --bug service-bug`).
//! Only with the `planted-bugs` feature, which no server needs; the
//! [`Service`] trait carries no trace of it.

use bytes::Bytes;
use concord::Index;

use crate::chat::Chat;
use crate::directory::Directory;
use crate::kv::Kv;
use crate::machine::ServiceMachine;
use crate::orders::Orders;
use crate::service::{Applied, Outcome, Service};

/// A service with a planted mistake: what `apply` and `read` do under it.
/// Each defaults to the service's own, correct, answer.
pub trait PlantedService: Service {
    /// [`Service::apply`] under the planted mistake.
    fn apply_planted(&mut self, request: Self::Request, at: Applied) -> Outcome<Self> {
        self.apply(request, at)
    }

    /// [`Service::read`] under the planted mistake.
    fn read_planted(&self, request: &Self::Request) -> Option<Outcome<Self>> {
        self.read(request)
    }
}

/// The strict key-value store: a put_many is applied as two log entries
/// would be, so a read can see half of it.
impl PlantedService for Kv {
    fn apply_planted(&mut self, request: Self::Request, _at: Applied) -> Outcome<Self> {
        self.apply_as(request, true)
    }
}

/// The directory: `next_sequence` is served as a read from a replica's
/// own counter.
impl PlantedService for Directory {
    fn read_planted(&self, request: &Self::Request) -> Option<Outcome<Self>> {
        self.read_as(request, true)
    }
}

/// Orders: an order is numbered with its log index.
impl PlantedService for Orders {
    fn apply_planted(&mut self, request: Self::Request, at: Applied) -> Outcome<Self> {
        self.apply_as(request, at, true)
    }
}

/// Chat: `fetch` is served as a read from a replica's state, marking
/// nothing delivered.
impl PlantedService for Chat {
    fn read_planted(&self, request: &Self::Request) -> Option<Outcome<Self>> {
        self.read_as(request, true)
    }
}

/// A [`ServiceMachine`]'s `apply` and `query` under its service's
/// planted mistake.
pub(crate) struct Planted<S> {
    pub(crate) apply: fn(&mut ServiceMachine<S>, Index, &[u8]) -> Bytes,
    pub(crate) query: fn(&ServiceMachine<S>, &[u8]) -> Option<Bytes>,
}

impl<S> Clone for Planted<S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S> Copy for Planted<S> {}

impl<S> std::fmt::Debug for Planted<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the service's planted mistake")
    }
}

/// Only [`ServiceMachine::with_planted_bug`] builds one, from the
/// service's [`PlantedService`] methods, so every `Planted<S>` is the
/// same pair of functions.
impl<S> PartialEq for Planted<S> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<S> Eq for Planted<S> {}

impl<S: PlantedService> ServiceMachine<S> {
    /// An empty state whose service runs its planted mistake, for
    /// measuring the simulator's checks of that service. Never in a real
    /// server.
    pub fn with_planted_bug() -> Self {
        let mut machine = ServiceMachine::new();
        machine.plant(Planted {
            apply: |machine, index, command| machine.apply_with(index, command, S::apply_planted),
            query: |machine, request| machine.query_with(request, S::read_planted),
        });
        machine
    }
}
