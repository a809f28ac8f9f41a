//! # concord-services
//!
//! Services on concord, written once on one framework: each service is
//! a file of domain logic (its state, requests, responses and an
//! [`Service`] impl); the framework gives every one of them the same byte
//! format, exactly-once sessions, read routing, snapshots, errors, the
//! server (`concord-node --service NAME`) and the client (`concord-cli
//! NAME ...`, [`ServiceClient`] from Rust).
//!
//! | module | what |
//! | --- | --- |
//! | [`service`] | the [`Service`] trait: what a service writes |
//! | [`machine`] | any service as a concord state machine: dispatch, refusals, snapshots; with sessions |
//! | `disk_engine` (feature `disk`) | a state machine's keys on disk: atomic batches with the applied index, point-in-time views, streamed restore |
//! | `disk_kv` (feature `disk`) | the key-value store on disk, as a durable state machine: `concord-node --storage disk` |
//! | [`codec`] | the bytes of requests, answers and snapshots: a version byte, serde + bincode, bounded decoding |
//! | [`kv`] | the key-value store: get, get_many, put, put_many, append, cas |
//! | [`directory`] | user → ip:port (batched lookup), connect, disconnect, a cluster-wide sequence |
//! | [`orders`] | per-customer order numbers, gap-free; last order readable at any server |
//! | [`chat`] | accounts (glob listing), messages queued until fetched, each delivered once |
//! | `client` (feature `runtime`) | [`ServiceClient`]: typed calls over concord's client |
//! | `kv_client` (feature `runtime`) | the key-value store's typed methods on its client |
//! | [`sharded`] | any service over many groups: which group each request runs in, each group's state machine |
//! | `sharded_client` (feature `runtime`) | a client of any service over many groups: routed by group, writes in sessions |
//! | [`sharded_kv`] | the key-value store over many groups: keys to groups by a stable hash, each group's state machine |
//! | `sharded_kv_client` (feature `runtime`) | its client: routes by group, leader cache, redirects; put_many within one group |
//!
//! The simulator (`concord-sim run`, `--service kv|directory|orders|chat`)
//! depends on this crate without the `runtime` feature and runs the same
//! state machines under its faults.
//!
//! Adding a service: write its file (see [`service`]), then add its line
//! to the `services!` list in this file: the server, the command line and
//! the codec's checks then know it.
#![deny(missing_docs)]

pub mod chat;
#[cfg(feature = "runtime")]
pub mod client;
pub mod codec;
pub mod directory;
#[cfg(feature = "disk")]
pub mod disk_engine;
#[cfg(feature = "disk")]
pub mod disk_kv;
pub mod kv;
#[cfg(feature = "runtime")]
pub mod kv_client;
pub mod machine;
pub mod orders;
#[cfg(feature = "planted-bugs")]
#[doc(hidden)]
pub mod planted;
pub mod service;
pub mod sharded;
#[cfg(feature = "runtime")]
pub mod sharded_client;
pub mod sharded_kv;
#[cfg(feature = "runtime")]
pub mod sharded_kv_client;

#[cfg(feature = "runtime")]
pub use client::{CallError, ServiceClient};
#[cfg(feature = "runtime")]
pub use kv_client::KvClient;
pub use machine::{service_state_machine, ServiceMachine, SessionMachine};
#[cfg(feature = "planted-bugs")]
#[doc(hidden)]
pub use planted::PlantedService;
#[cfg(feature = "cli")]
pub use service::{request_of, CommandError, Shown};
pub use service::{Applied, Named, Outcome, Service, ServiceRequest};

/// Declares the services: [`ServiceKind`] and [`ServiceKind::visit`],
/// and with the `cli` feature [`ServiceCommand`] (every service's
/// commands, `concord-cli NAME ...`). One line per service.
macro_rules! services {
    (
        default: $default:ident;
        $($(#[$doc:meta])* $kind:ident => $service:ty { name: $name:literal, about: $about:literal $(,)? },)+
    ) => {
        $(
            impl Named for $service {
                const NAME: &'static str = $name;
                const ABOUT: &'static str = $about;
            }
        )+

        /// Every service, by name: what `concord-node --service` and
        /// `concord-cli NAME` choose from.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum ServiceKind {
            $($(#[$doc])* $kind,)+
        }

        impl Default for ServiceKind {
            fn default() -> Self {
                ServiceKind::$default
            }
        }

        impl ServiceKind {
            /// Every service, in the order help lists them.
            pub const ALL: &'static [ServiceKind] = &[$(ServiceKind::$kind,)+];

            /// Calls `visitor` with this service's type.
            pub fn visit<V: ServiceVisitor>(self, visitor: V) -> V::Output {
                match self {
                    $(ServiceKind::$kind => visitor.visit::<$service>(),)+
                }
            }
        }

        /// A command line of one service (`concord-cli NAME COMMAND ...`,
        /// feature `cli`).
        #[cfg(feature = "cli")]
        #[derive(Debug, clap::Subcommand)]
        pub enum ServiceCommand {
            $(
                $(#[$doc])*
                #[command(
                    name = <$service as Named>::NAME,
                    about = <$service as Named>::ABOUT,
                    subcommand
                )]
                $kind(<$service as Service>::Command),
            )+
        }

        #[cfg(feature = "cli")]
        impl ServiceCommand {
            /// The service the command is for.
            pub fn kind(&self) -> ServiceKind {
                match self {
                    $(ServiceCommand::$kind(_) => ServiceKind::$kind,)+
                }
            }

            /// Calls `visitor` with the service's type and the command.
            pub fn visit<V: CommandVisitor>(self, visitor: V) -> V::Output {
                match self {
                    $(ServiceCommand::$kind(command) => visitor.visit::<$service>(command),)+
                }
            }
        }
    };
}

services! {
    default: Kv;
    /// [`kv::Kv`], the default.
    Kv => kv::Kv {
        name: "kv",
        about: "Key-value store: get, put, append, cas, atomic get-many and put-many",
    },
    /// [`directory::Directory`].
    Directory => directory::Directory {
        name: "directory",
        about: "Directory: user -> ip:port lookups and a cluster-wide sequence",
    },
    /// [`orders::Orders`].
    Orders => orders::Orders {
        name: "orders",
        about: "Orders: gap-free order numbers per customer, last order read at any server",
    },
    /// [`chat::Chat`].
    Chat => chat::Chat {
        name: "chat",
        about: "Chat: accounts, and messages queued until their recipient fetches them, each \
                delivered once",
    },
}

/// Something done with a service's types: [`ServiceKind::visit`] calls it
/// with the chosen one.
pub trait ServiceVisitor {
    /// What the visit returns.
    type Output;
    /// Runs with service `S`.
    fn visit<S: Service>(self) -> Self::Output;
}

/// Something done with a service's command line (feature `cli`):
/// [`ServiceCommand::visit`] calls it with the service's type.
#[cfg(feature = "cli")]
pub trait CommandVisitor {
    /// What the visit returns.
    type Output;
    /// Runs with service `S` and its command.
    fn visit<S: Service>(self, command: S::Command) -> Self::Output;
}

impl ServiceKind {
    /// The service's name ([`Named::NAME`]).
    pub fn name(self) -> &'static str {
        struct Name;
        impl ServiceVisitor for Name {
            type Output = &'static str;
            fn visit<S: Service>(self) -> &'static str {
                S::NAME
            }
        }
        self.visit(Name)
    }

    /// The service named `name`; the error lists the names.
    pub fn from_name(name: &str) -> Result<ServiceKind, String> {
        ServiceKind::ALL
            .iter()
            .copied()
            .find(|kind| kind.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = ServiceKind::ALL.iter().map(|kind| kind.name()).collect();
                format!(
                    "no service named {name:?}; the services are {}",
                    names.join(", ")
                )
            })
    }
}

impl std::fmt::Display for ServiceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_service_is_found_by_its_own_name() {
        for &kind in ServiceKind::ALL {
            assert_eq!(ServiceKind::from_name(kind.name()), Ok(kind));
            assert!(kind.name().len() <= codec::SERVICE_NAME_BYTES_MAX);
        }
        let error = ServiceKind::from_name("bank").unwrap_err();
        assert!(error.contains("kv, directory, orders, chat"), "{error}");
    }
}
