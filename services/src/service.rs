//! What a service is: its state, its requests and responses, and the
//! domain logic between them. Everything else (the byte format, sessions,
//! which path a read takes, snapshots, refusing bad input, the server and
//! the client) is written once, for every service, in [`crate::machine`],
//! [`crate::codec`] and the client.
//!
//! A new service is one file: a state type deriving `Serialize` and
//! `Deserialize`, a request enum (with an `impl ServiceRequest`) and a
//! response enum, and an `impl Service`; then one line in the crate
//! root's `services!` list, with its name and help line, so the server
//! (`concord-node --service`) and the command line (`concord-cli <name>`)
//! know it.

use std::fmt::Debug;

use concord::{Index, ReadPath};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Where a request is executed through the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The log index of the entry that carries the request.
    pub index: Index,
}

/// A service's name and what it does: given where the services are listed
/// (`services!` in the crate root, one line per service), so that every
/// name stands in one place.
pub trait Named {
    /// The service's name: `concord-node --service NAME`, `concord-cli
    /// NAME ...`; carried in every request and snapshot, so that a request
    /// sent to a server of another service is refused, not misread.
    const NAME: &'static str;

    /// What the service does, in one line (the command line's help).
    const ABOUT: &'static str;
}

/// A service's request: what it is and whether it is within the limits,
/// answered from the request alone.
pub trait ServiceRequest:
    Serialize + DeserializeOwned + Clone + Debug + PartialEq + Send + 'static
{
    /// Whether a client sends the request as a read: answered by
    /// [`Service::read`] without a log entry. Everything else is a write,
    /// sent through the log inside the client's session.
    fn is_read(&self) -> bool;

    /// Checks the request against the service's limits; the error says
    /// what to change. Called by the client before sending and by every
    /// replica before executing, so [`Service::apply`] and
    /// [`Service::read`] only ever see valid requests.
    fn validate(&self) -> Result<(), String>;
}

/// What executing a request of service `S` gives: its answer, or why it
/// was refused.
pub type Outcome<S> = Result<<S as Service>::Response, String>;

/// A replicated service: a deterministic state and what requests do to it.
///
/// The state is serialized whole into a snapshot (serde, bincode, see
/// [`crate::codec`]); use ordered containers (`BTreeMap`), so that every
/// replica's snapshot of one state is the same bytes.
pub trait Service: Named + Default + Serialize + DeserializeOwned + Send + 'static {
    /// The path a client reads on unless told otherwise.
    const READ_PATH: ReadPath = ReadPath::ReadIndex;

    /// A request.
    type Request: ServiceRequest;

    /// An answer.
    type Response: Serialize + DeserializeOwned + Clone + Debug + PartialEq + Send + 'static;

    /// Executes a valid request committed at `at` (a read sent through
    /// the log too). `Err` refuses it: the state must then be unchanged.
    fn apply(&mut self, request: Self::Request, at: Applied) -> Result<Self::Response, String>;

    /// Answers a valid request without a log entry, from the state as it
    /// is; `None` when the request is not a read. Must answer what
    /// [`Service::apply`] would at this state.
    fn read(&self, request: &Self::Request) -> Option<Outcome<Self>>;

    /// Checks a state decoded from a snapshot against the limits the
    /// service keeps while it runs (counts, sizes, derived totals); the
    /// error names what is wrong. The default accepts every state.
    fn check_restored(&self) -> Result<(), String> {
        Ok(())
    }

    /// A copy of the state that costs next to nothing to make (a clone of
    /// persistent or shared structures), for a snapshot serialised off the
    /// server's loop (see [`concord::state_machine::StateMachine::snapshot_source`]);
    /// `None` (the default) when a copy would cost as much as serialising,
    /// and the snapshot is serialised on the loop.
    fn snapshot_copy(&self) -> Option<Self> {
        None
    }

    /// Where `request` runs on a multi-group cluster (`concord-node
    /// --groups N`, see [`crate::sharded`]): in the group of its key, or
    /// on group 1 alone, or nowhere (refused, it would span groups). The
    /// default: group 1 alone, the whole service in one group.
    fn placement(request: &Self::Request) -> crate::sharded::Placement<'_> {
        let _ = request;
        crate::sharded::Placement::First {
            why: "the service is not sharded",
        }
    }

    /// An answer that reports a failure in the service's own terms (chat's
    /// "no such account"): its reason, for a client that treats it as an
    /// error. The default: none.
    fn refusal(response: &Self::Response) -> Option<String> {
        let _ = response;
        None
    }

    /// The service's commands on the command line (`concord-cli NAME
    /// ...`, feature `cli`): often the request enum itself, deriving
    /// `clap::Subcommand` under the feature. The request a command asks
    /// for is its `try_into()` ([`request_of`]).
    #[cfg(feature = "cli")]
    type Command: clap::Subcommand
        + std::fmt::Debug
        + TryInto<Self::Request, Error: Into<CommandError>>;

    /// Prints `response` to `request` for a person (or a script) on
    /// `out`; says whether the command did what it was asked.
    #[cfg(feature = "cli")]
    fn show(request: &Self::Request, response: Self::Response, out: &mut Out) -> Printed;
}

/// The request command line `command` asks for (feature `cli`).
#[cfg(feature = "cli")]
pub fn request_of<S: Service>(command: S::Command) -> Result<S::Request, CommandError> {
    command.try_into().map_err(Into::into)
}

/// `Ok` when `count` is 1 to `max`; otherwise the error says so in the
/// request's terms: `one_to("a user name has", 300, 256, "bytes")` is
/// "a user name has 1 to 256 bytes, not 300".
pub fn one_to(what: &str, count: usize, max: usize, unit: &str) -> Result<(), String> {
    if count == 0 || count > max {
        return Err(format!("{what} 1 to {max} {unit}, not {count}"));
    }
    Ok(())
}

/// `Ok` when `count` of `what` stays within `max`; otherwise what a
/// restored state breaks ([`Service::check_restored`]).
pub fn at_most(what: &str, count: usize, max: usize) -> Result<(), String> {
    if count > max {
        return Err(format!("{count} {what}, above the limit of {max}"));
    }
    Ok(())
}

/// Where a command line's answer is printed (feature `cli`).
#[cfg(feature = "cli")]
pub type Out = dyn std::io::Write;

/// What printing an answer gives (feature `cli`): how the command ended,
/// or why the output could not be written.
#[cfg(feature = "cli")]
pub type Printed = std::io::Result<Shown>;

/// How a command line's answer ends (feature `cli`): `concord-cli`'s exit
/// status.
#[cfg(feature = "cli")]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shown {
    /// Done as asked: exit 0.
    Done,
    /// Done as asked, with a note for standard error (more results wait):
    /// exit 0.
    Note(String),
    /// What was read is absent (`kv get` of a key never written): exit 5,
    /// nothing on standard output, this on standard error.
    Absent(String),
    /// Answered, but not as asked (`kv cas` that did not swap): exit 1,
    /// with this on standard error.
    NotDone(String),
}

/// Why a command line asks for no request (feature `cli`).
#[cfg(feature = "cli")]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The arguments do not make a request: exit 2.
    #[error("{0}")]
    Usage(String),
    /// An input the command reads (a file) could not be read: exit 1.
    #[error("{0}")]
    Input(String),
    /// The request would be larger than a request may be; nothing was
    /// sent: exit 6.
    #[error("{0}")]
    TooLarge(String),
}

/// A command that is its request cannot fail to be one.
#[cfg(feature = "cli")]
impl From<std::convert::Infallible> for CommandError {
    fn from(never: std::convert::Infallible) -> Self {
        match never {}
    }
}
