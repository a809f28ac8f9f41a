//! Which state machine each group of a multi-group server runs
//! (`concord-node --service NAME --groups N`): the service's, sharded
//! ([`concord_services::sharded`]: each group serves the requests of its
//! keys), behind the group's session table
//! ([`GroupSessions`]: a client's retried write is applied once). The
//! key-value store runs its own [`ShardMachine`], as it always did.

use concord::multi::sessions::{GroupSessions, GROUP_SESSIONS_MAX, GROUP_SESSION_BYTES_MAX};
use concord::multi::{GroupId, CATALOG_GROUP};
use concord_services::sharded::ShardedMachine;
use concord_services::sharded_kv::{ShardMachine, ShardMap};
use concord_services::{Service, ServiceKind, ServiceVisitor};
use concord_tokio::multi::host::{self, HostEvent, MultiServerConfig, MultiServerHandle};
use concord_tokio::multi::log_sink::WalThread;
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
    let sessions = SessionLimits::of(&map);
    if service == ServiceKind::Kv {
        return start_with(parts, witness, sessions, move |group| {
            ShardMachine::new(map, group)
        });
    }
    struct Start {
        map: ShardMap,
        witness: bool,
        sessions: SessionLimits,
        parts: HostParts,
    }
    impl ServiceVisitor for Start {
        type Output = Result<MultiServerHandle, host::MultiServerError>;
        fn visit<S: Service>(self) -> Self::Output {
            let map = self.map;
            start_with(self.parts, self.witness, self.sessions, move |group| {
                ShardedMachine::<S>::new(map, group)
            })
        }
    }
    service.visit(Start {
        map,
        witness,
        sessions,
        parts,
    })
}

/// The bounds of each group's session table. A cluster of one group
/// keeps the bounds its single-group server had (65,536 sessions, no
/// byte bound): its tables came from that server's data directory
/// ([`concord_tokio::multi::upgrade`]), and a smaller bound would refuse
/// to restore them, or evict on one server what another keeps. Many
/// groups share the server's memory: [`GROUP_SESSIONS_MAX`] and
/// [`GROUP_SESSION_BYTES_MAX`] each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionLimits {
    /// Most sessions of one group.
    pub sessions_max: usize,
    /// Most bytes of sessions of one group.
    pub bytes_max: usize,
}

impl SessionLimits {
    /// The bounds of the groups of `map`.
    pub fn of(map: &ShardMap) -> SessionLimits {
        if map.groups() == 1 {
            SessionLimits {
                sessions_max: concord_services::machine::SESSIONS_MAX,
                bytes_max: usize::MAX,
            }
        } else {
            SessionLimits {
                sessions_max: GROUP_SESSIONS_MAX,
                bytes_max: GROUP_SESSION_BYTES_MAX,
            }
        }
    }
}

fn start_with<S, F>(
    parts: HostParts,
    witness: bool,
    sessions: SessionLimits,
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
                GroupMachine::Full(GroupSessions::with_limits(
                    make(group),
                    sessions.sessions_max,
                    sessions.bytes_max,
                ))
            }
        },
        parts.recovery,
        parts.log,
        parts.network,
        parts.inbox,
    )
}
