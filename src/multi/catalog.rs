//! The catalog: which groups exist and who their members are, kept as the
//! state of a metadata group (group [`CATALOG_GROUP`]) that every node of
//! the cluster runs. Creating or removing a group is a command proposed to
//! that group; once it commits, every node applies it in the same order
//! and hosts exactly the groups whose voters name it (creating each with
//! its voters as its first configuration, removing it when the catalog
//! does). So the nodes agree on what exists without any other
//! coordination, a group id is never handed out twice, and a restarted
//! node learns what to host from its own disk.
//!
//! The catalog also records the cluster's servers (id and address: how a
//! server added to groups reaches, and is reached by, every other),
//! which server was assigned which groups beyond their first voters (a
//! server that a group adds creates the group when it applies the
//! assignment, and learns it again from the catalog after a restart),
//! and the replaces of a server under way (at most one per server).
//!
//! The catalog only starts and stops groups. A group's own membership
//! then changes through the group's log ([`MembershipChange`]); a node
//! that a group adds creates the group (as a learner of its current
//! voters) when its host learns it should, and one it removes stops
//! hosting it when its host sees the removal committed.
//!
//! [`MembershipChange`]: crate::MembershipChange

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use thiserror::Error;

use crate::types::NodeId;

use super::balance::{
    MoveLimits, PlacementRule, ReplicaMove, ServerPlace, ServerState, BALANCE_REPLICAS_MAX,
};
use super::frame::GroupId;
use super::planted::MultiPlantedBugs;

/// Whether a move of `replica` may be recorded beside the moves
/// `recorded` (at most one per group): `Ok(true)` it is a new move,
/// `Ok(false)` the same move is recorded already (a re-run resumes it),
/// or why not. With `limits`, a move that would take the moves in flight
/// past them, cluster-wide or at its source or target, is refused.
///
/// The catalog applies this rule to each move in its log's order, so it
/// holds across balancers: of two acting at once (a catalog leader that
/// has not learned yet that it was deposed, and the new one; or a
/// server's own balancer and `concord-cli cluster balance`), the one whose
/// move commits second is refused a second move of a group or one past the
/// limits, however stale its view was when it planned. The simulator's
/// balancers record their moves through it too.
pub fn admit_move(
    recorded: impl IntoIterator<Item = ReplicaMove>,
    replica: ReplicaMove,
    limits: Option<MoveLimits>,
) -> Result<bool, CatalogError> {
    admit_move_planted(recorded, replica, limits, MultiPlantedBugs::NONE)
}

/// [`admit_move`] with planted mistakes (feature `planted-bugs`; the
/// simulator's table of planted mistakes).
#[doc(hidden)]
pub fn admit_move_planted(
    recorded: impl IntoIterator<Item = ReplicaMove>,
    replica: ReplicaMove,
    limits: Option<MoveLimits>,
    planted: MultiPlantedBugs,
) -> Result<bool, CatalogError> {
    let ReplicaMove { group, from, to } = replica;
    if from == to || from == 0 || to == 0 {
        return Err(CatalogError::BadMove { group, from, to });
    }
    #[cfg(feature = "planted-bugs")]
    if planted.catalog_trusts_balancers {
        // The planted mistake: every balancer's move is recorded as it
        // comes, over a move of the same group and past the limits.
        return Ok(true);
    }
    #[cfg(not(feature = "planted-bugs"))]
    let _ = planted;
    let mut in_flight = 0usize;
    let (mut at_from, mut at_to) = (0usize, 0usize);
    for under in recorded {
        if under.group == group {
            if (under.from, under.to) == (from, to) {
                return Ok(false);
            }
            return Err(CatalogError::MoveUnderWay {
                group,
                from: under.from,
                to: under.to,
            });
        }
        in_flight += 1;
        at_from += usize::from(under.from == from || under.to == from);
        at_to += usize::from(under.from == to || under.to == to);
    }
    if let Some(limits) = limits {
        if in_flight >= limits.moves_max {
            return Err(CatalogError::MovesAtLimit { group, in_flight });
        }
        for (id, n) in [(from, at_from), (to, at_to)] {
            if n >= limits.moves_per_server_max {
                return Err(CatalogError::ServerMovesAtLimit {
                    group,
                    id,
                    in_flight: n,
                });
            }
        }
    }
    Ok(true)
}

/// The metadata group every node runs; its log holds [`CatalogCommand`]s.
pub const CATALOG_GROUP: GroupId = 0;

/// Most voters a group may be created with.
pub const CATALOG_VOTERS_MAX: usize = 64;

/// Most groups one [`CatalogCommand::Assign`] or
/// [`CatalogCommand::Unassign`] names (a replace assigns at most its
/// groups in flight at once).
pub const CATALOG_ASSIGN_GROUPS_MAX: usize = 4096;

/// Longest server address the catalog records, `host:port`.
pub const CATALOG_ADDR_BYTES_MAX: usize = 256;

/// Whether `addr` has the form of a server address, `HOST:PORT`: a port
/// from 1 to 65535 after the last colon, before it a host name or IPv4
/// address (letters, digits, `-`, `.`, `_`) or an IPv6 address in
/// brackets, and at most [`CATALOG_ADDR_BYTES_MAX`] bytes. Servers check
/// it before they propose [`CatalogCommand::AddServer`]; the catalog's
/// own [`Catalog::apply`] does not, so that its verdict on entries
/// already in a log never changes from one version to the next.
pub fn is_server_address(addr: &str) -> bool {
    if addr.len() > CATALOG_ADDR_BYTES_MAX {
        return false;
    }
    let Some((host, port)) = addr.rsplit_once(':') else {
        return false;
    };
    let port_ok = !port.is_empty()
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u16>().is_ok_and(|port| port != 0);
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(ipv6) => ipv6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => {
            !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        }
    };
    port_ok && host_ok
}

/// Most servers the catalog records.
pub const CATALOG_SERVERS_MAX: usize = 1024;

/// Longest zone name the catalog records.
pub const CATALOG_ZONE_BYTES_MAX: usize = 64;

/// Whether `zone` may name a zone: 1 to [`CATALOG_ZONE_BYTES_MAX`]
/// bytes of letters, digits, `-`, `.` and `_`.
pub fn is_zone_name(zone: &str) -> bool {
    !zone.is_empty()
        && zone.len() <= CATALOG_ZONE_BYTES_MAX
        && zone
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

/// A change to the catalog, proposed to [`CATALOG_GROUP`] as the bytes of
/// [`CatalogCommand::encode`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CatalogCommand {
    /// Create `group` with these voters. Refused unless `group` is above
    /// every group ever created.
    Create {
        /// The new group's id.
        group: GroupId,
        /// Its first voters.
        voters: BTreeSet<NodeId>,
    },
    /// Remove `group`: every member stops hosting it.
    Remove {
        /// The group.
        group: GroupId,
    },
    /// Record server `id` and the address its peers and clients reach it
    /// on (replacing an address recorded before).
    AddServer {
        /// The server.
        id: NodeId,
        /// Where it listens, `host:port`.
        addr: String,
    },
    /// Forget server `id` (once no group names it).
    RemoveServer {
        /// The server.
        id: NodeId,
    },
    /// Server `node` hosts these groups, joining each as a learner of the
    /// voters given (its configuration until the group's log or snapshot
    /// tells it the one in force).
    Assign {
        /// The server.
        node: NodeId,
        /// Each group and the voters it joins.
        groups: Vec<(GroupId, BTreeSet<NodeId>)>,
    },
    /// Server `node` no longer hosts these groups (it was removed from
    /// them).
    Unassign {
        /// The server.
        node: NodeId,
        /// The groups.
        groups: Vec<GroupId>,
    },
    /// A replace of server `old` by server `new` starts. Refused while
    /// another replace of `old` (by another server) is recorded; the same
    /// replace again is a no-op (a re-run resumes it).
    StartReplace {
        /// The server replaced.
        old: NodeId,
        /// The server taking its place (recorded with `AddServer` first).
        new: NodeId,
    },
    /// The replace of `old` ended (every group moved, or given up).
    FinishReplace {
        /// The server replaced.
        old: NodeId,
    },
    /// Server `id` (recorded) is in `zone` from now on, or in none.
    SetZone {
        /// The server.
        id: NodeId,
        /// Its zone ([`is_zone_name`]), or `None` for no zone.
        zone: Option<String>,
    },
    /// Server `id` (recorded) takes replicas ([`ServerState::Up`]), gives
    /// them all away (`Draining`) or is gone for good (`Retired`, final).
    SetServerState {
        /// The server.
        id: NodeId,
        /// Its state.
        state: ServerState,
    },
    /// The rule every group's replicas follow from now on.
    SetPlacementRule {
        /// The rule; its replicas between 1 and [`BALANCE_REPLICAS_MAX`].
        rule: PlacementRule,
    },
    /// A move of `group`'s replica from server `from` to server `to`
    /// (recorded, not retired) starts. Refused while another move of the
    /// group is recorded, and, with `limits`, while the moves recorded
    /// reach them ([`admit_move`]); the same move again is a no-op (a
    /// re-run resumes it).
    StartMove {
        /// The replica moved.
        replica: ReplicaMove,
        /// The proposing balancer's limits on moves in flight
        /// ([`BalanceLimits::moves`]). `None` records the move whatever
        /// else is in flight: a catalog snapshot restoring its moves, or a
        /// command written before moves carried their limits.
        ///
        /// [`BalanceLimits::moves`]: super::BalanceLimits::moves
        limits: Option<MoveLimits>,
    },
    /// The move of `group`'s replica ended (done, or given up).
    FinishMove {
        /// The group.
        group: GroupId,
        /// The move's source and target, as the balancer that finishes it
        /// recorded them: a move of the group with other ends is not
        /// finished ([`CatalogError::OtherMove`]), so a finish that comes
        /// late (another balancer finished the move and started the
        /// group's next) ends nothing. `None` finishes whatever move the
        /// group has (a command written before finishes named the move).
        ends: Option<(NodeId, NodeId)>,
    },
}

const TAG_CREATE: u8 = 1;
const TAG_REMOVE: u8 = 2;
const TAG_ADD_SERVER: u8 = 3;
const TAG_REMOVE_SERVER: u8 = 4;
const TAG_ASSIGN: u8 = 5;
const TAG_UNASSIGN: u8 = 6;
const TAG_START_REPLACE: u8 = 7;
const TAG_FINISH_REPLACE: u8 = 8;
const TAG_SET_ZONE: u8 = 9;
const TAG_SET_SERVER_STATE: u8 = 10;
const TAG_SET_PLACEMENT_RULE: u8 = 11;
const TAG_START_MOVE: u8 = 12;
const TAG_FINISH_MOVE: u8 = 13;
/// In a snapshot, right after the next group id: the format's version
/// (u32) follows. Snapshots of version 1 have no such record.
const TAG_VERSION: u8 = 0x7e;
/// The snapshot format written: 2 added the version record, zones,
/// server states, the placement rule and moves.
const SNAPSHOT_VERSION: u32 = 2;

fn state_byte(state: ServerState) -> u8 {
    match state {
        ServerState::Up => 0,
        ServerState::Draining => 1,
        ServerState::Retired => 2,
    }
}

fn state_of_byte(byte: u8) -> Option<ServerState> {
    match byte {
        0 => Some(ServerState::Up),
        1 => Some(ServerState::Draining),
        2 => Some(ServerState::Retired),
        _ => None,
    }
}
/// In a snapshot: a length (u32) and a command of another kind than
/// `Create` follow.
const TAG_FRAMED: u8 = 0x7f;

impl CatalogCommand {
    /// The command's bytes, as proposed.
    pub fn encode(&self) -> Bytes {
        let mut out = Vec::new();
        match self {
            CatalogCommand::Create { group, voters } => {
                out.push(TAG_CREATE);
                out.extend_from_slice(&group.to_le_bytes());
                out.extend_from_slice(&(voters.len() as u32).to_le_bytes());
                for voter in voters {
                    out.extend_from_slice(&voter.to_le_bytes());
                }
            }
            CatalogCommand::Remove { group } => {
                out.push(TAG_REMOVE);
                out.extend_from_slice(&group.to_le_bytes());
            }
            CatalogCommand::AddServer { id, addr } => {
                out.push(TAG_ADD_SERVER);
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(&(addr.len() as u32).to_le_bytes());
                out.extend_from_slice(addr.as_bytes());
            }
            CatalogCommand::RemoveServer { id } => {
                out.push(TAG_REMOVE_SERVER);
                out.extend_from_slice(&id.to_le_bytes());
            }
            CatalogCommand::Assign { node, groups } => {
                out.push(TAG_ASSIGN);
                out.extend_from_slice(&node.to_le_bytes());
                out.extend_from_slice(&(groups.len() as u32).to_le_bytes());
                for (group, voters) in groups {
                    out.extend_from_slice(&group.to_le_bytes());
                    out.extend_from_slice(&(voters.len() as u32).to_le_bytes());
                    for voter in voters {
                        out.extend_from_slice(&voter.to_le_bytes());
                    }
                }
            }
            CatalogCommand::Unassign { node, groups } => {
                out.push(TAG_UNASSIGN);
                out.extend_from_slice(&node.to_le_bytes());
                out.extend_from_slice(&(groups.len() as u32).to_le_bytes());
                for group in groups {
                    out.extend_from_slice(&group.to_le_bytes());
                }
            }
            CatalogCommand::StartReplace { old, new } => {
                out.push(TAG_START_REPLACE);
                out.extend_from_slice(&old.to_le_bytes());
                out.extend_from_slice(&new.to_le_bytes());
            }
            CatalogCommand::FinishReplace { old } => {
                out.push(TAG_FINISH_REPLACE);
                out.extend_from_slice(&old.to_le_bytes());
            }
            CatalogCommand::SetZone { id, zone } => {
                out.push(TAG_SET_ZONE);
                out.extend_from_slice(&id.to_le_bytes());
                match zone {
                    None => out.push(0),
                    Some(zone) => {
                        out.push(1);
                        out.extend_from_slice(&(zone.len() as u32).to_le_bytes());
                        out.extend_from_slice(zone.as_bytes());
                    }
                }
            }
            CatalogCommand::SetServerState { id, state } => {
                out.push(TAG_SET_SERVER_STATE);
                out.extend_from_slice(&id.to_le_bytes());
                out.push(state_byte(*state));
            }
            CatalogCommand::SetPlacementRule { rule } => {
                out.push(TAG_SET_PLACEMENT_RULE);
                out.extend_from_slice(&(rule.replicas.min(u32::MAX as usize) as u32).to_le_bytes());
                out.push(u8::from(rule.spread_zones));
            }
            CatalogCommand::StartMove { replica, limits } => {
                out.push(TAG_START_MOVE);
                out.extend_from_slice(&replica.group.to_le_bytes());
                out.extend_from_slice(&replica.from.to_le_bytes());
                out.extend_from_slice(&replica.to.to_le_bytes());
                if let Some(limits) = limits {
                    let limit = |n: usize| n.min(u32::MAX as usize) as u32;
                    out.extend_from_slice(&limit(limits.moves_max).to_le_bytes());
                    out.extend_from_slice(&limit(limits.moves_per_server_max).to_le_bytes());
                }
            }
            CatalogCommand::FinishMove { group, ends } => {
                out.push(TAG_FINISH_MOVE);
                out.extend_from_slice(&group.to_le_bytes());
                if let Some((from, to)) = ends {
                    out.extend_from_slice(&from.to_le_bytes());
                    out.extend_from_slice(&to.to_le_bytes());
                }
            }
        }
        Bytes::from(out)
    }

    /// Reads a command back; any malformed input is an error, never a
    /// panic.
    pub fn decode(bytes: &[u8]) -> Result<CatalogCommand, CatalogError> {
        let malformed = || CatalogError::Malformed {
            length_bytes: bytes.len(),
        };
        let u64_at = |at: usize| -> Result<u64, CatalogError> {
            let slice = bytes.get(at..at + 8).ok_or_else(malformed)?;
            Ok(u64::from_le_bytes(slice.try_into().expect("8 bytes")))
        };
        match bytes.first() {
            Some(&TAG_CREATE) => {
                let group = u64_at(1)?;
                let count_bytes = bytes.get(9..13).ok_or_else(malformed)?;
                let count = u32::from_le_bytes(count_bytes.try_into().expect("4 bytes")) as usize;
                if count > CATALOG_VOTERS_MAX || bytes.len() != 13 + 8 * count {
                    return Err(malformed());
                }
                let mut voters = BTreeSet::new();
                for i in 0..count {
                    voters.insert(u64_at(13 + 8 * i)?);
                }
                if voters.len() != count {
                    return Err(malformed());
                }
                Ok(CatalogCommand::Create { group, voters })
            }
            Some(&TAG_REMOVE) if bytes.len() == 9 => {
                Ok(CatalogCommand::Remove { group: u64_at(1)? })
            }
            Some(&TAG_REMOVE_SERVER) if bytes.len() == 9 => {
                Ok(CatalogCommand::RemoveServer { id: u64_at(1)? })
            }
            Some(&TAG_FINISH_REPLACE) if bytes.len() == 9 => {
                Ok(CatalogCommand::FinishReplace { old: u64_at(1)? })
            }
            Some(&TAG_START_REPLACE) if bytes.len() == 17 => Ok(CatalogCommand::StartReplace {
                old: u64_at(1)?,
                new: u64_at(9)?,
            }),
            Some(&TAG_ADD_SERVER) => {
                let mut reader = Reader::new(bytes, 1);
                let id = reader.u64().ok_or_else(malformed)?;
                let length = reader.u32().ok_or_else(malformed)? as usize;
                if length > CATALOG_ADDR_BYTES_MAX {
                    return Err(malformed());
                }
                let addr = reader.bytes(length).ok_or_else(malformed)?;
                let addr = std::str::from_utf8(addr).map_err(|_| malformed())?;
                if !reader.is_done() {
                    return Err(malformed());
                }
                Ok(CatalogCommand::AddServer {
                    id,
                    addr: addr.to_string(),
                })
            }
            Some(&TAG_ASSIGN) => {
                let mut reader = Reader::new(bytes, 1);
                let node = reader.u64().ok_or_else(malformed)?;
                let count = reader.u32().ok_or_else(malformed)? as usize;
                if count > CATALOG_ASSIGN_GROUPS_MAX {
                    return Err(malformed());
                }
                let mut groups = Vec::with_capacity(count);
                for _ in 0..count {
                    let group = reader.u64().ok_or_else(malformed)?;
                    let voters_count = reader.u32().ok_or_else(malformed)? as usize;
                    if voters_count > CATALOG_VOTERS_MAX {
                        return Err(malformed());
                    }
                    let mut voters = BTreeSet::new();
                    for _ in 0..voters_count {
                        voters.insert(reader.u64().ok_or_else(malformed)?);
                    }
                    groups.push((group, voters));
                }
                if !reader.is_done() {
                    return Err(malformed());
                }
                Ok(CatalogCommand::Assign { node, groups })
            }
            Some(&TAG_UNASSIGN) => {
                let mut reader = Reader::new(bytes, 1);
                let node = reader.u64().ok_or_else(malformed)?;
                let count = reader.u32().ok_or_else(malformed)? as usize;
                if count > CATALOG_ASSIGN_GROUPS_MAX {
                    return Err(malformed());
                }
                let mut groups = Vec::with_capacity(count);
                for _ in 0..count {
                    groups.push(reader.u64().ok_or_else(malformed)?);
                }
                if !reader.is_done() {
                    return Err(malformed());
                }
                Ok(CatalogCommand::Unassign { node, groups })
            }
            Some(&TAG_SET_ZONE) => {
                let mut reader = Reader::new(bytes, 1);
                let id = reader.u64().ok_or_else(malformed)?;
                let zone = match reader.bytes(1).ok_or_else(malformed)?[0] {
                    0 => None,
                    1 => {
                        let length = reader.u32().ok_or_else(malformed)? as usize;
                        if length > CATALOG_ZONE_BYTES_MAX {
                            return Err(malformed());
                        }
                        let zone = reader.bytes(length).ok_or_else(malformed)?;
                        let zone = std::str::from_utf8(zone).map_err(|_| malformed())?;
                        Some(zone.to_string())
                    }
                    _ => return Err(malformed()),
                };
                if !reader.is_done() {
                    return Err(malformed());
                }
                Ok(CatalogCommand::SetZone { id, zone })
            }
            Some(&TAG_SET_SERVER_STATE) if bytes.len() == 10 => {
                let state = state_of_byte(bytes[9]).ok_or_else(malformed)?;
                Ok(CatalogCommand::SetServerState {
                    id: u64_at(1)?,
                    state,
                })
            }
            Some(&TAG_SET_PLACEMENT_RULE) if bytes.len() == 6 => {
                let replicas = u32::from_le_bytes(bytes[1..5].try_into().expect("4 bytes"));
                let spread_zones = match bytes[5] {
                    0 => false,
                    1 => true,
                    _ => return Err(malformed()),
                };
                Ok(CatalogCommand::SetPlacementRule {
                    rule: PlacementRule {
                        replicas: replicas as usize,
                        spread_zones,
                    },
                })
            }
            Some(&TAG_START_MOVE) if bytes.len() == 25 || bytes.len() == 33 => {
                let u32_at = |at: usize| {
                    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize
                };
                Ok(CatalogCommand::StartMove {
                    replica: ReplicaMove {
                        group: u64_at(1)?,
                        from: u64_at(9)?,
                        to: u64_at(17)?,
                    },
                    limits: (bytes.len() == 33).then(|| MoveLimits {
                        moves_max: u32_at(25),
                        moves_per_server_max: u32_at(29),
                    }),
                })
            }
            Some(&TAG_FINISH_MOVE) if bytes.len() == 9 || bytes.len() == 25 => {
                Ok(CatalogCommand::FinishMove {
                    group: u64_at(1)?,
                    ends: if bytes.len() == 25 {
                        Some((u64_at(9)?, u64_at(17)?))
                    } else {
                        None
                    },
                })
            }
            _ => Err(malformed()),
        }
    }
}

/// Reads little-endian numbers off a command, never past its end.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], at: usize) -> Self {
        Reader { bytes, at }
    }

    fn bytes(&mut self, length: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(length)?;
        let slice = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(slice)
    }

    fn u64(&mut self) -> Option<u64> {
        let slice = self.bytes(8)?;
        Some(u64::from_le_bytes(slice.try_into().expect("8 bytes")))
    }

    fn u32(&mut self) -> Option<u32> {
        let slice = self.bytes(4)?;
        Some(u32::from_le_bytes(slice.try_into().expect("4 bytes")))
    }

    fn is_done(&self) -> bool {
        self.at == self.bytes.len()
    }
}

/// What applying a command changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CatalogChange {
    /// `group` exists now, with these voters: each of them hosts it.
    Created {
        /// The group.
        group: GroupId,
        /// Its first voters.
        voters: BTreeSet<NodeId>,
    },
    /// `group` is gone: every node that hosts it stops.
    Removed {
        /// The group.
        group: GroupId,
        /// Its voters as the catalog knew them.
        voters: BTreeSet<NodeId>,
    },
    /// Server `id` is reachable at `addr` (every server adds it to its
    /// peers).
    ServerAdded {
        /// The server.
        id: NodeId,
        /// Its address.
        addr: String,
    },
    /// Server `id` is forgotten.
    ServerRemoved {
        /// The server.
        id: NodeId,
    },
    /// Server `node` hosts these groups from now on (it creates each not
    /// hosted yet, as a learner of the voters given).
    Assigned {
        /// The server.
        node: NodeId,
        /// Each group and the voters it joins.
        groups: Vec<(GroupId, BTreeSet<NodeId>)>,
    },
    /// Server `node` no longer hosts these groups.
    Unassigned {
        /// The server.
        node: NodeId,
        /// The groups.
        groups: Vec<GroupId>,
    },
    /// A replace started, or the same replace was asked again.
    ReplaceStarted {
        /// The server replaced.
        old: NodeId,
        /// The server taking its place.
        new: NodeId,
    },
    /// A replace ended.
    ReplaceFinished {
        /// The server replaced.
        old: NodeId,
    },
    /// A server's zone or state, the placement rule, or the moves under
    /// way changed (nothing for a server to carry out: the command that
    /// balances reads them).
    PlacementChanged,
}

/// Why a catalog command changed nothing. Deterministic: every replica
/// refuses the same command the same way.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// The bytes are not a command.
    #[error("a catalog command of {length_bytes} bytes could not be read")]
    Malformed {
        /// Its length.
        length_bytes: usize,
    },
    /// Group ids must grow, so none is ever reused.
    #[error("group {group} cannot be created: ids must be at least {next}, above every group ever created")]
    IdNotFresh {
        /// The id asked for.
        group: GroupId,
        /// The lowest id that may be created.
        next: GroupId,
    },
    /// No such group.
    #[error("group {group} does not exist (or was removed)")]
    UnknownGroup {
        /// The group.
        group: GroupId,
    },
    /// A group needs voters, none of them node 0.
    #[error("a group needs between 1 and {CATALOG_VOTERS_MAX} voters, none of them node 0")]
    BadVoters,
    /// Node id 0 is reserved, or an address is empty.
    #[error("server {id} with address {addr:?}: give an id of 1 or more and a host:port address")]
    BadServer {
        /// The id given.
        id: NodeId,
        /// The address given.
        addr: String,
    },
    /// The catalog records [`CATALOG_SERVERS_MAX`] servers already.
    #[error("the catalog records {CATALOG_SERVERS_MAX} servers already; remove one first")]
    TooManyServers,
    /// The server is not recorded.
    #[error("server {id} is not a server of this cluster (add it with its address first)")]
    UnknownServer {
        /// The server.
        id: NodeId,
    },
    /// Another replace of the same server is under way.
    #[error("server {old} is being replaced by server {new} already; finish that replace (re-run it) before replacing {old} by another")]
    ReplaceUnderWay {
        /// The server replaced.
        old: NodeId,
        /// The server taking its place in the replace under way.
        new: NodeId,
    },
    /// No replace of this server is under way.
    #[error("no replace of server {old} is under way")]
    NoReplace {
        /// The server.
        old: NodeId,
    },
    /// Not a zone name.
    #[error("zone {zone:?}: give 1 to {CATALOG_ZONE_BYTES_MAX} letters, digits, '-', '.' or '_'")]
    BadZone {
        /// The zone given.
        zone: String,
    },
    /// A retired server stays retired.
    #[error("server {id} is retired for good; add the machine again under a new id")]
    ServerRetired {
        /// The server.
        id: NodeId,
    },
    /// A rule's replica count out of range.
    #[error("a placement rule of {replicas} replicas: give 1 to {BALANCE_REPLICAS_MAX}")]
    BadRule {
        /// The replicas asked for.
        replicas: usize,
    },
    /// A move of the same group is recorded already.
    #[error(
        "group {group} is moving its replica from server {from} to server {to} already; finish \
         that move (run the balance again) first"
    )]
    MoveUnderWay {
        /// The group.
        group: GroupId,
        /// The source of the move under way.
        from: NodeId,
        /// Its target.
        to: NodeId,
    },
    /// As many moves in flight as the proposing balancer allows.
    #[error(
        "group {group} does not start moving now: {in_flight} moves are in flight, the most \
         the balancer allows; it starts once one ends"
    )]
    MovesAtLimit {
        /// The group.
        group: GroupId,
        /// Moves recorded.
        in_flight: usize,
    },
    /// As many moves in flight touching one server as the proposing
    /// balancer allows.
    #[error(
        "group {group} does not start moving now: {in_flight} moves in flight touch server \
         {id}, the most the balancer allows per server; it starts once one ends"
    )]
    ServerMovesAtLimit {
        /// The group.
        group: GroupId,
        /// The server.
        id: NodeId,
        /// Moves recorded that start or end at it.
        in_flight: usize,
    },
    /// A move to the server it starts from, or from or to node 0.
    #[error("a move of group {group} from server {from} to server {to}: give two different servers, neither 0")]
    BadMove {
        /// The group.
        group: GroupId,
        /// The source given.
        from: NodeId,
        /// The target given.
        to: NodeId,
    },
    /// A move's target does not take replicas.
    #[error("server {id} is not up (draining or retired): it takes no replica")]
    ServerNotUp {
        /// The server.
        id: NodeId,
    },
    /// No move of this group is under way.
    #[error("no move of group {group} is under way")]
    NoMove {
        /// The group.
        group: GroupId,
    },
    /// The group's move under way is not the one a finish names (that
    /// one was finished already, and the group's next began).
    #[error(
        "group {group} is moving from server {from} to server {to}, not the move named: that \
         one was finished already"
    )]
    OtherMove {
        /// The group.
        group: GroupId,
        /// The source of the move under way.
        from: NodeId,
        /// Its target.
        to: NodeId,
    },
    /// A snapshot of a format this version cannot read.
    #[error("a catalog snapshot of format version {version}; this version reads 1 and 2 (upgrade the server)")]
    SnapshotVersion {
        /// The version found.
        version: u32,
    },
}

/// The catalog's state: every existing group and its first voters, the
/// servers, the groups assigned to servers since, and the replaces under
/// way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Catalog {
    groups: BTreeMap<GroupId, BTreeSet<NodeId>>,
    /// The lowest id that may still be created.
    next: GroupId,
    servers: BTreeMap<NodeId, String>,
    /// (server, group) -> the voters it joined as a learner of.
    assigned: BTreeMap<(NodeId, GroupId), BTreeSet<NodeId>>,
    /// old -> new.
    replaces: BTreeMap<NodeId, NodeId>,
    /// Zones and states of the servers given one (others are up, in no
    /// zone).
    places: BTreeMap<NodeId, ServerPlace>,
    /// The placement rule, once set.
    rule: Option<PlacementRule>,
    /// The replica moves under way, by group: (from, to).
    moves: BTreeMap<GroupId, (NodeId, NodeId)>,
}

impl Default for Catalog {
    fn default() -> Self {
        Catalog {
            groups: BTreeMap::new(),
            next: CATALOG_GROUP + 1,
            servers: BTreeMap::new(),
            assigned: BTreeMap::new(),
            replaces: BTreeMap::new(),
            places: BTreeMap::new(),
            rule: None,
            moves: BTreeMap::new(),
        }
    }
}

/// The place of a server given none: up, in no zone.
const PLACE_DEFAULT: ServerPlace = ServerPlace {
    state: ServerState::Up,
    zone: None,
};

impl Catalog {
    /// An empty catalog.
    pub fn new() -> Self {
        Catalog::default()
    }

    /// Applies a committed command.
    pub fn apply(&mut self, command: &[u8]) -> Result<CatalogChange, CatalogError> {
        match CatalogCommand::decode(command)? {
            CatalogCommand::Create { group, voters } => {
                if group < self.next {
                    return Err(CatalogError::IdNotFresh {
                        group,
                        next: self.next,
                    });
                }
                if voters.is_empty() || voters.contains(&0) {
                    return Err(CatalogError::BadVoters);
                }
                self.next = group + 1;
                self.groups.insert(group, voters.clone());
                Ok(CatalogChange::Created { group, voters })
            }
            CatalogCommand::Remove { group } => match self.groups.remove(&group) {
                Some(voters) => {
                    self.assigned.retain(|(_, assigned), _| *assigned != group);
                    Ok(CatalogChange::Removed { group, voters })
                }
                None => Err(CatalogError::UnknownGroup { group }),
            },
            CatalogCommand::AddServer { id, addr } => {
                if id == 0 || addr.is_empty() || addr.len() > CATALOG_ADDR_BYTES_MAX {
                    return Err(CatalogError::BadServer { id, addr });
                }
                if !self.servers.contains_key(&id) && self.servers.len() >= CATALOG_SERVERS_MAX {
                    return Err(CatalogError::TooManyServers);
                }
                self.servers.insert(id, addr.clone());
                Ok(CatalogChange::ServerAdded { id, addr })
            }
            CatalogCommand::RemoveServer { id } => match self.servers.remove(&id) {
                Some(_) => {
                    self.assigned.retain(|(node, _), _| *node != id);
                    self.places.remove(&id);
                    Ok(CatalogChange::ServerRemoved { id })
                }
                None => Err(CatalogError::UnknownServer { id }),
            },
            CatalogCommand::Assign { node, groups } => {
                if !self.servers.contains_key(&node) {
                    return Err(CatalogError::UnknownServer { id: node });
                }
                if groups
                    .iter()
                    .any(|(_, voters)| voters.is_empty() || voters.contains(&0))
                {
                    return Err(CatalogError::BadVoters);
                }
                for (group, voters) in &groups {
                    self.assigned.insert((node, *group), voters.clone());
                }
                Ok(CatalogChange::Assigned { node, groups })
            }
            CatalogCommand::Unassign { node, groups } => {
                for group in &groups {
                    self.assigned.remove(&(node, *group));
                }
                Ok(CatalogChange::Unassigned { node, groups })
            }
            CatalogCommand::StartReplace { old, new } => {
                if !self.servers.contains_key(&new) {
                    return Err(CatalogError::UnknownServer { id: new });
                }
                match self.replaces.get(&old) {
                    Some(under_way) if *under_way != new => Err(CatalogError::ReplaceUnderWay {
                        old,
                        new: *under_way,
                    }),
                    _ => {
                        self.replaces.insert(old, new);
                        Ok(CatalogChange::ReplaceStarted { old, new })
                    }
                }
            }
            CatalogCommand::FinishReplace { old } => match self.replaces.remove(&old) {
                Some(_) => Ok(CatalogChange::ReplaceFinished { old }),
                None => Err(CatalogError::NoReplace { old }),
            },
            CatalogCommand::SetZone { id, zone } => {
                if !self.servers.contains_key(&id) {
                    return Err(CatalogError::UnknownServer { id });
                }
                if let Some(zone) = zone.as_ref().filter(|zone| !is_zone_name(zone)) {
                    return Err(CatalogError::BadZone { zone: zone.clone() });
                }
                self.places.entry(id).or_insert(PLACE_DEFAULT).zone = zone;
                Ok(CatalogChange::PlacementChanged)
            }
            CatalogCommand::SetServerState { id, state } => {
                if !self.servers.contains_key(&id) {
                    return Err(CatalogError::UnknownServer { id });
                }
                let place = self.places.entry(id).or_insert(PLACE_DEFAULT);
                if place.state == ServerState::Retired && state != ServerState::Retired {
                    return Err(CatalogError::ServerRetired { id });
                }
                place.state = state;
                Ok(CatalogChange::PlacementChanged)
            }
            CatalogCommand::SetPlacementRule { rule } => {
                if rule.replicas == 0 || rule.replicas > BALANCE_REPLICAS_MAX {
                    return Err(CatalogError::BadRule {
                        replicas: rule.replicas,
                    });
                }
                self.rule = Some(rule);
                Ok(CatalogChange::PlacementChanged)
            }
            CatalogCommand::StartMove { replica, limits } => {
                let ReplicaMove { group, from, to } = replica;
                if !admit_move(self.moves(), replica, limits)? {
                    return Ok(CatalogChange::PlacementChanged);
                }
                if !self.servers.contains_key(&to) {
                    return Err(CatalogError::UnknownServer { id: to });
                }
                if self.place_of(to).state != ServerState::Up {
                    return Err(CatalogError::ServerNotUp { id: to });
                }
                self.moves.insert(group, (from, to));
                Ok(CatalogChange::PlacementChanged)
            }
            CatalogCommand::FinishMove { group, ends } => match self.moves.get(&group) {
                None => Err(CatalogError::NoMove { group }),
                Some(&(from, to)) if ends.is_some_and(|ends| ends != (from, to)) => {
                    Err(CatalogError::OtherMove { group, from, to })
                }
                Some(_) => {
                    self.moves.remove(&group);
                    Ok(CatalogChange::PlacementChanged)
                }
            },
        }
    }

    /// Server `id`'s zone and state: up and in no zone unless set.
    pub fn place_of(&self, id: NodeId) -> ServerPlace {
        self.places.get(&id).cloned().unwrap_or(PLACE_DEFAULT)
    }

    /// Every recorded server and its place, as the balancer takes them.
    pub fn places(&self) -> BTreeMap<NodeId, ServerPlace> {
        self.servers
            .keys()
            .map(|&id| (id, self.place_of(id)))
            .collect()
    }

    /// The placement rule, once one was set.
    pub fn placement_rule(&self) -> Option<PlacementRule> {
        self.rule
    }

    /// Every replica move under way, in ascending group id.
    pub fn moves(&self) -> impl Iterator<Item = ReplicaMove> + '_ {
        self.moves
            .iter()
            .map(|(&group, &(from, to))| ReplicaMove { group, from, to })
    }

    /// Whether server `id` is recorded.
    pub fn has_server(&self, id: NodeId) -> bool {
        self.servers.contains_key(&id)
    }

    /// Every recorded server and its address.
    pub fn servers(&self) -> impl Iterator<Item = (NodeId, &str)> + '_ {
        self.servers.iter().map(|(id, addr)| (*id, addr.as_str()))
    }

    /// The groups assigned to `node` since they were created, each with
    /// the voters it joined as a learner of.
    pub fn assigned_to(
        &self,
        node: NodeId,
    ) -> impl Iterator<Item = (GroupId, &BTreeSet<NodeId>)> + '_ {
        self.assigned
            .range((node, 0)..=(node, GroupId::MAX))
            .map(|((_, group), voters)| (*group, voters))
    }

    /// The replace of `old` under way, if any: the server taking its
    /// place.
    pub fn replace_of(&self, old: NodeId) -> Option<NodeId> {
        self.replaces.get(&old).copied()
    }

    /// Every replace under way, old -> new.
    pub fn replaces(&self) -> impl Iterator<Item = (NodeId, NodeId)> + '_ {
        self.replaces.iter().map(|(old, new)| (*old, *new))
    }

    /// The lowest id a new group may take.
    pub fn next_group_id(&self) -> GroupId {
        self.next
    }

    /// Every existing group and its first voters.
    pub fn groups(&self) -> impl Iterator<Item = (GroupId, &BTreeSet<NodeId>)> + '_ {
        self.groups.iter().map(|(group, voters)| (*group, voters))
    }

    /// Whether `node` hosts `group`: created with it as a voter, or
    /// assigned to it since ([`Self::hosted_by`] for one group, without
    /// walking every group).
    pub fn hosts(&self, node: NodeId, group: GroupId) -> bool {
        self.assigned.contains_key(&(node, group))
            || self
                .groups
                .get(&group)
                .is_some_and(|voters| voters.contains(&node))
    }

    /// The groups `node` hosts: those created with it as a voter, and
    /// those assigned to it since (in ascending id, each once).
    pub fn hosted_by(&self, node: NodeId) -> impl Iterator<Item = GroupId> + '_ {
        let created = self
            .groups
            .iter()
            .filter(move |(_, voters)| voters.contains(&node))
            .map(|(group, _)| *group);
        let assigned: BTreeSet<GroupId> = self.assigned_to(node).map(|(group, _)| group).collect();
        let mut all: BTreeSet<GroupId> = created.collect();
        all.extend(assigned);
        all.into_iter()
    }

    /// The catalog's bytes, for a snapshot of the metadata group.
    pub fn snapshot(&self) -> Bytes {
        let mut out = Vec::new();
        out.extend_from_slice(&self.next.to_le_bytes());
        out.push(TAG_VERSION);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
        for (group, voters) in &self.groups {
            out.extend_from_slice(
                &CatalogCommand::Create {
                    group: *group,
                    voters: voters.clone(),
                }
                .encode(),
            );
        }
        let mut framed = |command: CatalogCommand| {
            let bytes = command.encode();
            out.push(TAG_FRAMED);
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(&bytes);
        };
        for (id, addr) in &self.servers {
            framed(CatalogCommand::AddServer {
                id: *id,
                addr: addr.clone(),
            });
        }
        for ((node, group), voters) in &self.assigned {
            framed(CatalogCommand::Assign {
                node: *node,
                groups: vec![(*group, voters.clone())],
            });
        }
        for (old, new) in &self.replaces {
            framed(CatalogCommand::StartReplace {
                old: *old,
                new: *new,
            });
        }
        // Moves before states: a move's target was up when it started.
        for (group, (from, to)) in &self.moves {
            framed(CatalogCommand::StartMove {
                replica: ReplicaMove {
                    group: *group,
                    from: *from,
                    to: *to,
                },
                limits: None,
            });
        }
        for (id, place) in &self.places {
            framed(CatalogCommand::SetZone {
                id: *id,
                zone: place.zone.clone(),
            });
            framed(CatalogCommand::SetServerState {
                id: *id,
                state: place.state,
            });
        }
        if let Some(rule) = self.rule {
            framed(CatalogCommand::SetPlacementRule { rule });
        }
        Bytes::from(out)
    }

    /// A catalog from [`Catalog::snapshot`]'s bytes.
    pub fn restore(bytes: &[u8]) -> Result<Catalog, CatalogError> {
        let malformed = CatalogError::Malformed {
            length_bytes: bytes.len(),
        };
        let next_bytes = bytes.get(..8).ok_or(malformed.clone())?;
        let next = u64::from_le_bytes(next_bytes.try_into().expect("8 bytes"));
        let mut catalog = Catalog::new();
        let mut rest = &bytes[8..];
        // Version 1 (no version record) holds what version 2 holds but
        // zones, states, the rule and moves.
        if rest.first() == Some(&TAG_VERSION) {
            let version_bytes = rest.get(1..5).ok_or(malformed.clone())?;
            let version = u32::from_le_bytes(version_bytes.try_into().expect("4 bytes"));
            if version < 2 || version > SNAPSHOT_VERSION {
                return Err(CatalogError::SnapshotVersion { version });
            }
            rest = &rest[5..];
        }
        while !rest.is_empty() {
            if rest[0] == TAG_FRAMED {
                let length_bytes = rest.get(1..5).ok_or(malformed.clone())?;
                let length = u32::from_le_bytes(length_bytes.try_into().expect("4 bytes")) as usize;
                let record = rest.get(5..5 + length).ok_or(malformed.clone())?;
                match CatalogCommand::decode(record)? {
                    command @ (CatalogCommand::AddServer { .. }
                    | CatalogCommand::Assign { .. }
                    | CatalogCommand::StartReplace { .. }
                    | CatalogCommand::SetZone { .. }
                    | CatalogCommand::SetServerState { .. }
                    | CatalogCommand::SetPlacementRule { .. }
                    | CatalogCommand::StartMove { .. }) => {
                        catalog
                            .apply(&command.encode())
                            .map_err(|_| malformed.clone())?;
                    }
                    _ => return Err(malformed),
                }
                rest = &rest[5 + length..];
                continue;
            }
            let count_bytes = rest.get(9..13).ok_or(malformed.clone())?;
            let count = u32::from_le_bytes(count_bytes.try_into().expect("4 bytes")) as usize;
            let length = 13usize
                .checked_add(count.checked_mul(8).ok_or(malformed.clone())?)
                .ok_or(malformed.clone())?;
            let record = rest.get(..length).ok_or(malformed.clone())?;
            match CatalogCommand::decode(record)? {
                CatalogCommand::Create { group, voters } if group >= catalog.next => {
                    catalog.next = group + 1;
                    catalog.groups.insert(group, voters);
                }
                _ => return Err(malformed),
            }
            rest = &rest[length..];
        }
        if next < catalog.next {
            return Err(malformed);
        }
        catalog.next = next;
        Ok(catalog)
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_server_address_is_host_colon_port() {
        for good in [
            "127.0.0.1:7001",
            "node-4.example:80",
            "[::1]:9000",
            "a_b:65535",
        ] {
            assert!(is_server_address(good), "{good:?}");
        }
        for bad in [
            "not an address",
            "127.0.0.1",
            "127.0.0.1:",
            "127.0.0.1:0",
            "127.0.0.1:65536",
            ":7001",
            "host:+80",
            "::1:7001",
            "[::1:7001",
            "[not-v6]:7001",
            "host name:7001",
        ] {
            assert!(!is_server_address(bad), "{bad:?}");
        }
        let long = format!("{}:1", "h".repeat(CATALOG_ADDR_BYTES_MAX));
        assert!(!is_server_address(&long));
    }

    use super::*;

    #[test]
    fn a_created_group_id_is_never_created_again() {
        let mut catalog = Catalog::new();
        let create = |group| CatalogCommand::Create {
            group,
            voters: [1, 2, 3].into(),
        };
        assert!(catalog.apply(&create(5).encode()).is_ok());
        let remove = CatalogCommand::Remove { group: 5 }.encode();
        assert!(catalog.apply(&remove).is_ok());
        assert_eq!(
            catalog.apply(&create(5).encode()),
            Err(CatalogError::IdNotFresh { group: 5, next: 6 })
        );
        assert_eq!(
            catalog.apply(&create(3).encode()),
            Err(CatalogError::IdNotFresh { group: 3, next: 6 })
        );
    }

    #[test]
    fn a_snapshot_restores_the_same_catalog() {
        let mut catalog = Catalog::new();
        for group in [1, 2, 7] {
            let command = CatalogCommand::Create {
                group,
                voters: [1, group + 1].into(),
            };
            catalog.apply(&command.encode()).unwrap();
        }
        catalog
            .apply(&CatalogCommand::Remove { group: 7 }.encode())
            .unwrap();
        let restored = Catalog::restore(&catalog.snapshot()).unwrap();
        assert_eq!(restored, catalog);
        assert_eq!(restored.next_group_id(), 8);
        assert_eq!(restored.hosted_by(3).collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn servers_assignments_and_replaces_survive_a_snapshot() {
        let mut catalog = Catalog::new();
        let create = CatalogCommand::Create {
            group: 1,
            voters: [1, 2, 3].into(),
        };
        catalog.apply(&create.encode()).unwrap();
        for (id, addr) in [(1, "127.0.0.1:7001"), (4, "127.0.0.1:7004")] {
            let command = CatalogCommand::AddServer {
                id,
                addr: addr.to_string(),
            };
            assert_eq!(
                CatalogCommand::decode(&command.encode()),
                Ok(command.clone())
            );
            catalog.apply(&command.encode()).unwrap();
        }
        let assign = CatalogCommand::Assign {
            node: 4,
            groups: vec![(1, [1, 2, 3].into()), (9, [1, 2].into())],
        };
        assert_eq!(CatalogCommand::decode(&assign.encode()), Ok(assign.clone()));
        catalog.apply(&assign.encode()).unwrap();
        let start = CatalogCommand::StartReplace { old: 3, new: 4 };
        catalog.apply(&start.encode()).unwrap();
        // The same replace again resumes it; another of 3 is refused.
        assert!(catalog.apply(&start.encode()).is_ok());
        assert_eq!(
            catalog.apply(&CatalogCommand::StartReplace { old: 3, new: 1 }.encode()),
            Err(CatalogError::ReplaceUnderWay { old: 3, new: 4 })
        );
        assert_eq!(
            catalog.apply(&CatalogCommand::StartReplace { old: 2, new: 5 }.encode()),
            Err(CatalogError::UnknownServer { id: 5 })
        );
        assert_eq!(catalog.hosted_by(4).collect::<Vec<_>>(), vec![1, 9]);
        let restored = Catalog::restore(&catalog.snapshot()).unwrap();
        assert_eq!(restored, catalog);
        let unassign = CatalogCommand::Unassign {
            node: 4,
            groups: vec![9],
        };
        assert_eq!(
            CatalogCommand::decode(&unassign.encode()),
            Ok(unassign.clone())
        );
        catalog.apply(&unassign.encode()).unwrap();
        assert_eq!(catalog.hosted_by(4).collect::<Vec<_>>(), vec![1]);
        // One group at a time, the same answer.
        for node in 1..=5 {
            for group in 0..=10 {
                let listed = catalog.hosted_by(node).any(|g| g == group);
                assert_eq!(catalog.hosts(node, group), listed, "n{node} g{group}");
            }
        }
        assert!(catalog.hosts(4, 1) && !catalog.hosts(4, 9));
        catalog
            .apply(&CatalogCommand::FinishReplace { old: 3 }.encode())
            .unwrap();
        assert_eq!(catalog.replace_of(3), None);
        assert_eq!(
            catalog.apply(&CatalogCommand::FinishReplace { old: 3 }.encode()),
            Err(CatalogError::NoReplace { old: 3 })
        );
    }

    #[test]
    fn malformed_commands_and_snapshots_are_errors_not_panics() {
        for length in 0..40 {
            let bytes: Vec<u8> = (0..length).map(|i| (i * 37 + 1) as u8).collect();
            let _ = CatalogCommand::decode(&bytes);
            let _ = Catalog::restore(&bytes);
            let mut catalog = Catalog::new();
            let _ = catalog.apply(&bytes);
        }
        for tag in [TAG_ADD_SERVER, TAG_ASSIGN, TAG_UNASSIGN, TAG_FRAMED] {
            let mut huge = vec![tag];
            huge.extend_from_slice(&9u64.to_le_bytes());
            huge.extend_from_slice(&u32::MAX.to_le_bytes());
            assert!(CatalogCommand::decode(&huge).is_err());
            let _ = Catalog::restore(&huge);
        }
        let mut huge = vec![TAG_CREATE];
        huge.extend_from_slice(&9u64.to_le_bytes());
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(CatalogCommand::decode(&huge).is_err());
    }

    /// Version 1 of the snapshot, as written before zones, states, the
    /// rule and moves: next group 3, group 2 of voters 1 and 2, server 4
    /// at "h:1", assigned group 2, replacing server 1.
    const SNAPSHOT_V1: &[u8] = &[
        3, 0, 0, 0, 0, 0, 0, 0, // next
        1, 2, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, // Create 2, two voters
        1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, // 1, 2
        0x7f, 16, 0, 0, 0, // framed, 16 bytes
        3, 4, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, b'h', b':', b'1', // AddServer 4 "h:1"
        0x7f, 41, 0, 0, 0, // framed, 41 bytes
        5, 4, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, // Assign 4, one group
        2, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, // group 2, two voters
        1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, // 1, 2
        0x7f, 17, 0, 0, 0, // framed, 17 bytes
        7, 1, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, // StartReplace 1 -> 4
    ];

    #[test]
    fn a_version_1_snapshot_still_restores() {
        let catalog = Catalog::restore(SNAPSHOT_V1).unwrap();
        assert_eq!(catalog.next_group_id(), 3);
        assert_eq!(catalog.groups().count(), 1);
        assert_eq!(catalog.servers().collect::<Vec<_>>(), vec![(4, "h:1")]);
        assert_eq!(catalog.hosted_by(4).collect::<Vec<_>>(), vec![2]);
        assert_eq!(catalog.replace_of(1), Some(4));
        assert_eq!(catalog.place_of(4), PLACE_DEFAULT);
        assert_eq!(catalog.placement_rule(), None);
        assert_eq!(catalog.moves().count(), 0);
        // Written again, it is version 2 and restores the same.
        let again = catalog.snapshot();
        assert_eq!(again[8], TAG_VERSION);
        assert_eq!(Catalog::restore(&again).unwrap(), catalog);
        // A version from the future is refused with its number.
        let mut future = again.to_vec();
        future[9..13].copy_from_slice(&3u32.to_le_bytes());
        assert_eq!(
            Catalog::restore(&future),
            Err(CatalogError::SnapshotVersion { version: 3 })
        );
    }

    #[test]
    fn old_commands_keep_their_bytes() {
        let add = CatalogCommand::AddServer {
            id: 4,
            addr: "h:1".to_string(),
        };
        assert_eq!(&add.encode()[..], &SNAPSHOT_V1[42..58]);
        assert_eq!(CatalogCommand::decode(&SNAPSHOT_V1[42..58]), Ok(add));
        let start = CatalogCommand::StartReplace { old: 1, new: 4 };
        assert_eq!(CatalogCommand::decode(&SNAPSHOT_V1[109..]), Ok(start));
    }

    #[test]
    fn a_move_past_the_limits_is_refused_whoever_plans_it() {
        // Four servers; two balancers acting at once, each within its own
        // view: the catalog holds both to the limits of the moves it has.
        let mut catalog = placed_catalog();
        let add = CatalogCommand::AddServer {
            id: 4,
            addr: "127.0.0.1:7004".to_string(),
        };
        catalog.apply(&add.encode()).unwrap();
        let limits = Some(MoveLimits {
            moves_max: 2,
            moves_per_server_max: 1,
        });
        let start = |group, from, to| CatalogCommand::StartMove {
            replica: ReplicaMove { group, from, to },
            limits,
        };
        let first = start(1, 1, 4);
        assert_eq!(CatalogCommand::decode(&first.encode()), Ok(first.clone()));
        catalog.apply(&first.encode()).unwrap();
        // The same move again (a re-run, or the other balancer planning
        // alike) changes nothing.
        let before = catalog.clone();
        catalog.apply(&start(1, 1, 4).encode()).unwrap();
        assert_eq!(catalog, before);
        // A second move of group 1, a second at server 4 or at server 1.
        let refused = [
            (
                start(1, 2, 3),
                CatalogError::MoveUnderWay {
                    group: 1,
                    from: 1,
                    to: 4,
                },
            ),
            (
                start(2, 2, 4),
                CatalogError::ServerMovesAtLimit {
                    group: 2,
                    id: 4,
                    in_flight: 1,
                },
            ),
            (
                start(2, 1, 3),
                CatalogError::ServerMovesAtLimit {
                    group: 2,
                    id: 1,
                    in_flight: 1,
                },
            ),
        ];
        for (command, error) in refused {
            assert_eq!(catalog.apply(&command.encode()), Err(error), "{command:?}");
            assert_eq!(catalog, before);
        }
        catalog.apply(&start(2, 2, 3).encode()).unwrap();
        // Two in flight: the cluster-wide limit.
        assert_eq!(
            catalog.apply(&start(3, 2, 4).encode()),
            Err(CatalogError::MovesAtLimit {
                group: 3,
                in_flight: 2
            })
        );
        // Without limits (a snapshot's moves, an older command) it is
        // recorded; and the snapshot brings every move back.
        let unlimited = CatalogCommand::StartMove {
            replica: ReplicaMove {
                group: 3,
                from: 3,
                to: 4,
            },
            limits: None,
        };
        catalog.apply(&unlimited.encode()).unwrap();
        assert_eq!(catalog.moves().count(), 3);
        assert_eq!(Catalog::restore(&catalog.snapshot()).unwrap(), catalog);
        // A move ended makes room again. A finish that names other ends
        // (one that comes late: its move ended, the group's next began)
        // ends nothing.
        let late = CatalogCommand::FinishMove {
            group: 2,
            ends: Some((1, 3)),
        };
        assert_eq!(CatalogCommand::decode(&late.encode()), Ok(late.clone()));
        assert_eq!(
            catalog.apply(&late.encode()),
            Err(CatalogError::OtherMove {
                group: 2,
                from: 2,
                to: 3
            })
        );
        let finish = CatalogCommand::FinishMove {
            group: 2,
            ends: Some((2, 3)),
        };
        catalog.apply(&finish.encode()).unwrap();
        assert_eq!(
            catalog.apply(&finish.encode()),
            Err(CatalogError::NoMove { group: 2 })
        );
        catalog
            .apply(
                &CatalogCommand::FinishMove {
                    group: 3,
                    ends: None,
                }
                .encode(),
            )
            .unwrap();
        catalog.apply(&start(3, 2, 3).encode()).unwrap();
        let moving: Vec<ReplicaMove> = catalog.moves().collect();
        assert_eq!(
            moving,
            [
                ReplicaMove {
                    group: 1,
                    from: 1,
                    to: 4
                },
                ReplicaMove {
                    group: 3,
                    from: 2,
                    to: 3
                }
            ]
        );
    }

    #[test]
    fn a_start_move_without_limits_keeps_its_old_bytes() {
        // 25 bytes, as written before moves carried their limits.
        let mut old = vec![TAG_START_MOVE];
        for n in [7u64, 1, 4] {
            old.extend_from_slice(&n.to_le_bytes());
        }
        let command = CatalogCommand::StartMove {
            replica: ReplicaMove {
                group: 7,
                from: 1,
                to: 4,
            },
            limits: None,
        };
        assert_eq!(CatalogCommand::decode(&old), Ok(command.clone()));
        assert_eq!(&command.encode()[..], &old[..]);
    }

    fn placed_catalog() -> Catalog {
        let mut catalog = Catalog::new();
        for id in [1, 2, 3] {
            let add = CatalogCommand::AddServer {
                id,
                addr: format!("127.0.0.1:700{id}"),
            };
            catalog.apply(&add.encode()).unwrap();
        }
        catalog
    }

    #[test]
    fn zones_states_rule_and_moves_are_recorded_and_survive_a_snapshot() {
        let mut catalog = placed_catalog();
        let commands = [
            CatalogCommand::SetZone {
                id: 1,
                zone: Some("eu-1a".to_string()),
            },
            CatalogCommand::SetZone { id: 2, zone: None },
            CatalogCommand::SetServerState {
                id: 3,
                state: ServerState::Draining,
            },
            CatalogCommand::SetPlacementRule {
                rule: PlacementRule {
                    replicas: 3,
                    spread_zones: true,
                },
            },
            CatalogCommand::StartMove {
                replica: ReplicaMove {
                    group: 5,
                    from: 3,
                    to: 2,
                },
                limits: None,
            },
        ];
        for command in &commands {
            assert_eq!(
                CatalogCommand::decode(&command.encode()).as_ref(),
                Ok(command)
            );
            assert_eq!(
                catalog.apply(&command.encode()),
                Ok(CatalogChange::PlacementChanged)
            );
        }
        assert_eq!(catalog.place_of(1).zone.as_deref(), Some("eu-1a"));
        assert_eq!(catalog.place_of(3).state, ServerState::Draining);
        assert_eq!(catalog.places().len(), 3);
        assert_eq!(
            catalog.placement_rule(),
            Some(PlacementRule {
                replicas: 3,
                spread_zones: true
            })
        );
        assert_eq!(
            catalog.moves().collect::<Vec<_>>(),
            vec![ReplicaMove {
                group: 5,
                from: 3,
                to: 2
            }]
        );
        // The target drains while its move is under way: still restored.
        let drain_2 = CatalogCommand::SetServerState {
            id: 2,
            state: ServerState::Draining,
        };
        catalog.apply(&drain_2.encode()).unwrap();
        assert_eq!(Catalog::restore(&catalog.snapshot()).unwrap(), catalog);
        // The same move again resumes it.
        assert!(catalog.apply(&commands[4].encode()).is_ok());
        catalog
            .apply(
                &CatalogCommand::FinishMove {
                    group: 5,
                    ends: None,
                }
                .encode(),
            )
            .unwrap();
        assert_eq!(catalog.moves().count(), 0);
        assert_eq!(Catalog::restore(&catalog.snapshot()).unwrap(), catalog);
    }

    #[test]
    fn bad_placement_commands_are_refused_and_change_nothing() {
        let mut catalog = placed_catalog();
        let retire = CatalogCommand::SetServerState {
            id: 3,
            state: ServerState::Retired,
        };
        catalog.apply(&retire.encode()).unwrap();
        let before = catalog.clone();
        let refused = [
            (
                CatalogCommand::SetZone {
                    id: 9,
                    zone: Some("a".to_string()),
                },
                CatalogError::UnknownServer { id: 9 },
            ),
            (
                CatalogCommand::SetZone {
                    id: 1,
                    zone: Some("no spaces".to_string()),
                },
                CatalogError::BadZone {
                    zone: "no spaces".to_string(),
                },
            ),
            (
                CatalogCommand::SetZone {
                    id: 1,
                    zone: Some(String::new()),
                },
                CatalogError::BadZone {
                    zone: String::new(),
                },
            ),
            (
                CatalogCommand::SetServerState {
                    id: 9,
                    state: ServerState::Up,
                },
                CatalogError::UnknownServer { id: 9 },
            ),
            (
                CatalogCommand::SetServerState {
                    id: 3,
                    state: ServerState::Up,
                },
                CatalogError::ServerRetired { id: 3 },
            ),
            (
                CatalogCommand::SetPlacementRule {
                    rule: PlacementRule {
                        replicas: 0,
                        spread_zones: false,
                    },
                },
                CatalogError::BadRule { replicas: 0 },
            ),
            (
                CatalogCommand::SetPlacementRule {
                    rule: PlacementRule {
                        replicas: BALANCE_REPLICAS_MAX + 1,
                        spread_zones: false,
                    },
                },
                CatalogError::BadRule {
                    replicas: BALANCE_REPLICAS_MAX + 1,
                },
            ),
            (
                CatalogCommand::StartMove {
                    replica: ReplicaMove {
                        group: 1,
                        from: 2,
                        to: 2,
                    },
                    limits: None,
                },
                CatalogError::BadMove {
                    group: 1,
                    from: 2,
                    to: 2,
                },
            ),
            (
                CatalogCommand::StartMove {
                    replica: ReplicaMove {
                        group: 1,
                        from: 2,
                        to: 9,
                    },
                    limits: None,
                },
                CatalogError::UnknownServer { id: 9 },
            ),
            (
                CatalogCommand::StartMove {
                    replica: ReplicaMove {
                        group: 1,
                        from: 2,
                        to: 3,
                    },
                    limits: None,
                },
                CatalogError::ServerNotUp { id: 3 },
            ),
            (
                CatalogCommand::FinishMove {
                    group: 1,
                    ends: None,
                },
                CatalogError::NoMove { group: 1 },
            ),
        ];
        for (command, error) in refused {
            assert_eq!(catalog.apply(&command.encode()), Err(error), "{command:?}");
            assert_eq!(catalog, before);
        }
        let start = |to| CatalogCommand::StartMove {
            replica: ReplicaMove {
                group: 1,
                from: 2,
                to,
            },
            limits: None,
        };
        catalog.apply(&start(1).encode()).unwrap();
        let other = CatalogCommand::StartMove {
            replica: ReplicaMove {
                group: 1,
                from: 3,
                to: 2,
            },
            limits: None,
        };
        assert_eq!(
            catalog.apply(&other.encode()),
            Err(CatalogError::MoveUnderWay {
                group: 1,
                from: 2,
                to: 1
            })
        );
        // Malformed new commands: an error, never a panic.
        for tag in [
            TAG_SET_ZONE,
            TAG_SET_SERVER_STATE,
            TAG_SET_PLACEMENT_RULE,
            TAG_START_MOVE,
            TAG_FINISH_MOVE,
        ] {
            for length in 0..30 {
                let mut bytes = vec![tag];
                bytes.extend((0..length).map(|i| (i * 91 + 7) as u8));
                let _ = CatalogCommand::decode(&bytes);
            }
        }
        let mut bad_state = vec![TAG_SET_SERVER_STATE];
        bad_state.extend_from_slice(&1u64.to_le_bytes());
        bad_state.push(3);
        assert!(CatalogCommand::decode(&bad_state).is_err());
    }
}
