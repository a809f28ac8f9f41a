//! Which state machine each group of a multi-group server runs
//! (`concord-node --service NAME --groups N`): the service's, sharded
//! ([`concord_services::sharded`]: each group serves the requests of its
//! keys), behind the group's session table
//! ([`GroupSessions`]: a client's retried write is applied once). The
//! key-value store runs its own [`ShardMachine`], as it always did.

use concord::multi::sessions::GroupSessions;
use concord::multi::{GroupId, CATALOG_GROUP};
use concord_services::sharded::ShardedMachine;
use concord_services::sharded_kv::{ShardMachine, ShardMap};
use concord_services::{Service, ServiceKind, ServiceVisitor};
use concord_tokio::multi::host::{self, HostEvent, MultiServerConfig, MultiServerHandle};
use concord_tokio::multi::log_sink::{LogEvent, WalThread};
use concord_tokio::multi::tcp_sender::TcpFrameSender;
use concord_tokio::multi::MultiRecovery;
use tokio::sync::mpsc;

use crate::group_roles::GroupMachine;

/// What [`host::start`] needs besides the state machines.
pub struct HostParts {
    /// The server's settings.
    pub config: MultiServerConfig,
    /// What the data directory held.
    pub recovery: MultiRecovery,
    /// The shared log.
    pub log: WalThread,
    /// The log's reports.
    pub log_events: mpsc::UnboundedReceiver<LogEvent>,
    /// The peers' connections.
    pub network: TcpFrameSender,
    /// The server's inbox.
    pub inbox: (mpsc::Sender<HostEvent>, mpsc::Receiver<HostEvent>),
}

/// Starts the multi-group host of `service`, each group's state machine
/// that service's under `map`, behind a session table; a `witness` builds
/// none ([`GroupMachine::Witness`]).
pub fn start_host(
    service: ServiceKind,
    map: ShardMap,
    witness: bool,
    parts: HostParts,
) -> Result<MultiServerHandle, host::MultiServerError> {
    if service == ServiceKind::Kv {
        return start_with(parts, witness, move |group| ShardMachine::new(map, group));
    }
    struct Start {
        map: ShardMap,
        witness: bool,
        parts: HostParts,
    }
    impl ServiceVisitor for Start {
        type Output = Result<MultiServerHandle, host::MultiServerError>;
        fn visit<S: Service>(self) -> Self::Output {
            let map = self.map;
            start_with(self.parts, self.witness, move |group| {
                ShardedMachine::<S>::new(map, group)
            })
        }
    }
    service.visit(Start {
        map,
        witness,
        parts,
    })
}

fn start_with<S, F>(
    parts: HostParts,
    witness: bool,
    make: F,
) -> Result<MultiServerHandle, host::MultiServerError>
where
    S: concord::state_machine::StateMachine + Send + 'static,
    F: Fn(GroupId) -> S + Send + 'static,
{
    host::start_with_catalog(
        parts.config,
        move |group| {
            // The catalog is kept in full on a witness too.
            if witness && group != CATALOG_GROUP {
                GroupMachine::Witness
            } else {
                GroupMachine::Full(GroupSessions::new(make(group)))
            }
        },
        parts.recovery,
        parts.log,
        parts.log_events,
        parts.network,
        parts.inbox,
    )
}
