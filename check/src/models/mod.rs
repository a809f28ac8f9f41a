//! Built-in models for [`crate`]: the sequential objects a
//! service can claim to be.
//!
//! | model | `--model` | operations (JSON `op`) | parts | unambiguous fast path |
//! | --- | --- | --- | --- | --- |
//! | [`Register`] | `register` | `read`, `write` | one | O(n log n) when no value is written twice |
//! | [`CasRegister`] | `cas-register` | `read`, `write`, `cas` | one | as a register when there is no `cas` |
//! | [`Kv`] | `kv` | `get`, `put`, `append`, `cas` | per key | per key as a register when only `get`/`put`; else the key-value search |
//! | [`Set`] | `set` | `add`, `remove`, `contains` | per element | parts of a few operations each |
//! | [`Queue`] | `queue` | `enqueue`, `dequeue` | one | search |
//! | [`Counter`] | `counter` | `add`, `read` | one | search |
//! | [`Bank`] | `bank` | `transfer`, `balance`, `total` | one | search |
//!
//! Each type's documentation gives its JSON fields; the envelope (`client`,
//! `call`, `return`, `ok`) is [`crate::typed`]'s.

mod bank;
mod counter;
pub(crate) mod kv;
mod queue;
mod register;
mod set;

pub use bank::{Bank, BankInput, BankOutput};
pub use counter::{Counter, CounterInput, CounterOutput};
pub use kv::{Kv, KvInput, KvState};
pub use queue::{Queue, QueueInput, QueueOutput};
pub use register::{CasRegister, Register, RegisterInput, RegisterModel, RegisterOutput};
pub use set::{Set, SetInput};

/// The names `concord-sim check --model` accepts.
pub const NAMES: &[&str] = &[
    "register",
    "cas-register",
    "kv",
    "set",
    "queue",
    "counter",
    "bank",
];
