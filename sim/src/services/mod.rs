//! The services of `concord-services` under the simulator: each runs its
//! own state machine (the same code a real server runs,
//! [`concord_services::ServiceMachine`]) with a workload that checks the
//! service's own invariants on every seed, besides every check the
//! simulator always makes. Every workload is written in its service's
//! requests and answers ([`workload::ServiceWorkload`]).
//!
//! | `--service` | state | workload and invariants |
//! | --- | --- | --- |
//! | (default) `builtin` | [`concord_services::kv::Kv`] | [`kv`]: get, put, append and cas on a few keys; linearizability, across a forced recovery too |
//! | `kv` | [`concord_services::kv::Kv`] | [`strict_kv`]: linearizability of every get, get_many, put and put_many (projected on each key); `put_many` atomicity: no read sees part of a multi-key write |
//! | `orders` | [`concord_services::orders::Orders`] | per customer: no order number twice, increasing in real-time order, gap-free; `last_order` (on any read path, follower reads included) within what was placed |
//! | `directory` | [`concord_services::directory::Directory`] | sequence numbers unique and strictly increasing in real-time order; no lookup returns an address after its user's disconnect was acknowledged; linearizability per user |
//! | `chat` | [`concord_services::chat::Chat`] | no acknowledged message lost or delivered twice; one sender's messages to one recipient delivered in the order sent; a deleted account receives nothing |
//!
//! Planted bugs (`--bug service-bug`): kv applies a `put_many` as two log
//! entries would be (a read can see half of it); directory serves
//! `next_sequence` as a read from the answering replica's own counter
//! (two callers can get the same number); orders numbers an order with
//! its log index (unique and increasing, but with gaps); chat serves
//! `fetch` as a read from the answering replica's state, marking nothing
//! delivered (the next fetch returns the same messages). `sim/tests/services.rs` states
//! within how many seeds each is caught.

pub mod chat;
pub mod directory;
pub mod kv;
pub mod orders;
pub mod strict_kv;
pub mod workload;

use concord_services::ServiceMachine;

use crate::config::SimConfig;
use crate::engine::{RunReport, Simulation};
use crate::faults::FaultPlan;
use crate::history::Operation;
use workload::{ServiceWorkload, Typed};

/// Which service a run drives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Service {
    /// The default workload on the key-value store ([`kv`]): get, put,
    /// append, cas.
    #[default]
    Builtin,
    /// The multi-key workload on the key-value store ([`strict_kv`]).
    Kv,
    /// The directory of `concord-services`.
    Directory,
    /// The orders service of `concord-services`.
    Orders,
    /// The chat service of `concord-services`.
    Chat,
}

impl Service {
    /// The name `--service` takes.
    pub fn name(self) -> &'static str {
        match self {
            Service::Builtin => "builtin",
            Service::Kv => "kv",
            Service::Directory => "directory",
            Service::Orders => "orders",
            Service::Chat => "chat",
        }
    }

    /// Parses a `--service` value.
    pub fn parse(text: &str) -> Result<Service, String> {
        match text {
            "builtin" => Ok(Service::Builtin),
            "kv" => Ok(Service::Kv),
            "directory" => Ok(Service::Directory),
            "orders" => Ok(Service::Orders),
            "chat" => Ok(Service::Chat),
            other => Err(format!(
                "unknown service {other:?}: use builtin, kv, directory, orders or chat"
            )),
        }
    }
}

/// Runs `config.service` (not [`Service::Builtin`], which
/// [`crate::runner::run_kv`] runs itself) and returns the report and the
/// key-level history its workload recorded.
pub fn run_service(
    config: &SimConfig,
    plan: Option<FaultPlan>,
) -> Result<(RunReport, Vec<Operation>), String> {
    let planted = config.service_bug;
    match config.service {
        Service::Builtin => Err("the built-in workload is run by run_kv".to_string()),
        Service::Kv => {
            let workload = strict_kv::StrictKvWorkload::new();
            let (report, workload) = simulate(config, plan, workload)?;
            Ok((report, workload.workload().history().to_vec()))
        }
        Service::Directory => {
            let workload = directory::DirectoryWorkload::new(planted);
            let (report, workload) = simulate(config, plan, workload)?;
            Ok((report, workload.workload().history().to_vec()))
        }
        // Orders and chat keep no key-level history: their checks are
        // their own.
        Service::Orders => {
            let workload = orders::OrdersWorkload::new();
            Ok((simulate(config, plan, workload)?.0, Vec::new()))
        }
        Service::Chat => {
            let workload = chat::ChatWorkload::new(planted);
            Ok((simulate(config, plan, workload)?.0, Vec::new()))
        }
    }
}

/// One service's run: every node runs the service's state machine (with
/// its planted bug when the run asks for it), the clients `workload`.
fn simulate<W: ServiceWorkload>(
    config: &SimConfig,
    plan: Option<FaultPlan>,
    workload: W,
) -> Result<(RunReport, Typed<W>), String> {
    let planted = config.service_bug;
    let workload = Typed::with_clients(workload, config.clients);
    let make_sm = move |_| {
        #[cfg(feature = "planted-bugs")]
        if planted {
            return ServiceMachine::<W::Service>::with_planted_bug();
        }
        let _ = planted;
        ServiceMachine::<W::Service>::new()
    };
    let simulation = Simulation::new(config.clone(), plan, make_sm, workload)?;
    Ok(simulation.run_with_workload())
}
