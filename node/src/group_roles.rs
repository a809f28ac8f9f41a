//! What each group of a multi-group server (`concord-node --groups N`)
//! is configured with besides its voters: lease reads (`--lease-ticks`),
//! witnesses (`--witnesses`, `--witness`) and the preferred leader
//! (`--preferred-leader`, `--spread-leaders`); and the state machine of
//! a group on a witness, which holds none.
//!
//! ## The preferred leader of many groups
//!
//! A server of a multi-group cluster hosts every group, so "prefer this
//! server" can mean two things, and both are offered:
//!
//! * `--preferred-leader ID`: **every group prefers server ID**, as the
//!   one group of a single-group cluster does. The reasons an operator
//!   names one server (it sits next to the clients, it has the faster
//!   disk, the directory service's "highest id when healthy") hold for
//!   every group alike, and a flag that meant something else with
//!   `--groups` would surprise. The cost is said in the docs: that server
//!   does every group's leader work.
//! * `--spread-leaders`: **each group prefers one full voter, chosen from
//!   the group id** ([`spread_leader`]: a hash of the id over the voters
//!   in id order, the same on every server), so leadership is balanced,
//!   within a few percent, across the full voters, and stays so: without a
//!   preference, leadership stays where elections put it, and a server
//!   that restarted leads nothing until another fails; with it, each
//!   group hands leadership back to its own preferred server once that
//!   server is healthy and caught up (the core's priority election), so a
//!   restarted server gets its share back.
//!
//! Both use the core's priorities ([`Config::priorities`]): the preferred
//! server has priority 1, every other 0. A group whose preferred server
//! is down is led by another until it is back.

use std::collections::BTreeSet;

use bytes::Bytes;
use concord::multi::GroupId;
use concord::recovery::ForcedRecovery;
use concord::state_machine::{RestoreError, SnapshotSource, StateMachine};
use concord::{Config, Index, NodeId};

use crate::server::ServerSettings;

/// Which server each group prefers as its leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaderPreference {
    /// None: leadership stays where elections put it.
    None,
    /// Every group prefers this server (`--preferred-leader ID`).
    Every(NodeId),
    /// Each group prefers the full voter [`spread_leader`] picks
    /// (`--spread-leaders`).
    Spread,
}

impl LeaderPreference {
    /// The preference `settings` ask for.
    pub fn of(settings: &ServerSettings) -> LeaderPreference {
        match (settings.preferred_leader, settings.spread_leaders) {
            (Some(id), _) => LeaderPreference::Every(id),
            (None, true) => LeaderPreference::Spread,
            (None, false) => LeaderPreference::None,
        }
    }

    /// The server `group` prefers among `full_voters` (the voters that
    /// are not witnesses), if any.
    pub fn of_group(self, group: GroupId, full_voters: &BTreeSet<NodeId>) -> Option<NodeId> {
        match self {
            LeaderPreference::None => None,
            LeaderPreference::Every(id) => Some(id),
            LeaderPreference::Spread => spread_leader(group, full_voters),
        }
    }
}

/// The full voter `group` prefers under `--spread-leaders`: the voters in
/// id order, indexed by a hash of the group id (`None` without voters).
/// Deterministic, so every server computes the same one; hashed rather
/// than `group % n` so that groups 1..=N, whose keys are spread by a hash
/// too, do not line up with a server by their numbering.
pub fn spread_leader(group: GroupId, full_voters: &BTreeSet<NodeId>) -> Option<NodeId> {
    if full_voters.is_empty() {
        return None;
    }
    let at = mix(group) % full_voters.len() as u64;
    full_voters.iter().nth(at as usize).copied()
}

/// SplitMix64's finaliser: a fixed, well-spread hash of a group id.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Election timeout range of a cluster of one group, in ticks: the
/// single-group server's (many groups take the core's shorter default:
/// their heartbeats are batched per peer, and a sleeping group sends
/// none).
pub const ONE_GROUP_ELECTION_TICKS: (u32, u32) = (15, 30);

/// Heartbeat interval of a cluster of one group, in ticks: the
/// single-group server's.
pub const ONE_GROUP_HEARTBEAT_TICKS: u32 = 3;

/// Largest snapshot a follower takes from its leader with `--storage
/// disk`: the store's own limit on its state, twice (each row is framed,
/// sessions ride along). The core's default (1 GiB) bounds what an
/// in-memory state machine decodes at once; a disk store streams a
/// snapshot into its engine and never holds it.
pub const DISK_SNAPSHOT_BYTES_MAX: u64 = 2 << 40;

/// Largest snapshot a group of the server `settings` describe takes from
/// its leader.
pub fn snapshot_bytes_max(settings: &ServerSettings) -> u64 {
    match settings.storage {
        crate::server::Storage::Disk => DISK_SNAPSHOT_BYTES_MAX,
        crate::server::Storage::Memory => {
            Config::new(settings.id, [settings.id]).snapshot_bytes_max
        }
    }
}

/// Group `group`'s configuration on the server `settings` describe, whose
/// groups all have `voters` as voters; `seed` is the group's PRNG seed
/// for this start. Leases, witnesses and the preferred leader are the
/// server's, for every group alike.
pub fn group_config(
    settings: &ServerSettings,
    voters: &BTreeSet<NodeId>,
    group: GroupId,
    seed: u64,
) -> Config {
    let mut config = Config::new(settings.id, voters.iter().copied());
    config.snapshot_bytes_max = snapshot_bytes_max(settings);
    if settings.groups == 1 {
        // One group keeps the single-group server's timing, so that
        // every --lease-ticks and --clock-drift-bound-ticks it took is
        // taken.
        (
            config.election_timeout_min_ticks,
            config.election_timeout_max_ticks,
        ) = ONE_GROUP_ELECTION_TICKS;
        config.heartbeat_interval_ticks = ONE_GROUP_HEARTBEAT_TICKS;
    }
    config.compaction_threshold_entries = settings.snapshot_every_entries;
    config.compaction_trailing_entries = settings.compaction_trailing_entries;
    config.snapshot_chunk_bytes_max =
        concord_tokio::cluster::snapshot_chunk_bytes_for(settings.snapshot_send_bytes_per_sec);
    config.seed = seed;
    config.lease_read_ticks = settings.lease_ticks;
    config.clock_drift_bound_ticks = settings.clock_drift_bound_ticks;
    config.witnesses = settings.witnesses.clone();
    if settings.is_witness() {
        config.witnesses.insert(settings.id);
    }
    let full_voters: BTreeSet<NodeId> = voters
        .iter()
        .copied()
        .filter(|id| !config.witnesses.contains(id))
        .collect();
    if let Some(preferred) = LeaderPreference::of(settings).of_group(group, &full_voters) {
        config.priorities.insert(preferred, 1);
    }
    config
}

/// Why the groups' configuration cannot work with these settings (a
/// lease too long for the election timeout, say), naming the flag; the
/// same for every group, so group 1's is checked.
pub fn check_group_config(
    settings: &ServerSettings,
    voters: &BTreeSet<NodeId>,
) -> Result<(), String> {
    group_config(settings, voters, 1, 0)
        .validate()
        .map_err(|e| {
            let min = group_config(settings, voters, 1, 0).election_timeout_min_ticks;
            format!(
                "invalid settings: the groups' settings do not work together: {e} (this server's groups \
             have a minimum election timeout of {min} ticks: --lease-ticks plus \
             --clock-drift-bound-ticks must stay below it)"
            )
        })
}

/// A group's state machine on this server: the service's, or none on a
/// witness, which stores the log's metadata and votes but never applies,
/// snapshots or restores state (the core never asks it to; its snapshots
/// carry no bytes).
#[derive(Debug)]
pub enum GroupMachine<S> {
    /// A full member's state machine.
    Full(S),
    /// A witness: no state at all.
    Witness,
}

impl<S: StateMachine> StateMachine for GroupMachine<S> {
    fn apply(&mut self, index: Index, command: &[u8]) -> Bytes {
        match self {
            GroupMachine::Full(machine) => machine.apply(index, command),
            // The core marks a witness's entries applied itself (see
            // `Node::is_witness_node`): an Apply here is a core bug.
            GroupMachine::Witness => panic!("a witness was asked to apply entry {index}"),
        }
    }

    fn query(&self, request: &[u8]) -> Option<Bytes> {
        match self {
            GroupMachine::Full(machine) => machine.query(request),
            // The core refuses reads at a witness before they get here.
            GroupMachine::Witness => None,
        }
    }

    fn snapshot(&self) -> Bytes {
        match self {
            GroupMachine::Full(machine) => machine.snapshot(),
            GroupMachine::Witness => Bytes::new(),
        }
    }

    fn snapshot_source(&self) -> Option<SnapshotSource> {
        match self {
            GroupMachine::Full(machine) => machine.snapshot_source(),
            GroupMachine::Witness => None,
        }
    }

    fn canonical_state(&self) -> Bytes {
        match self {
            GroupMachine::Full(machine) => machine.canonical_state(),
            GroupMachine::Witness => Bytes::new(),
        }
    }

    fn sessions(&self) -> Option<usize> {
        match self {
            GroupMachine::Full(machine) => machine.sessions(),
            GroupMachine::Witness => None,
        }
    }

    /// A full member's machine learns of the forced recovery (its
    /// sessions expire what the lost servers may share ids with and start
    /// the next id epoch); a witness holds no state to change.
    fn apply_forced_recovery(&mut self, index: Index, audit: &ForcedRecovery) {
        if let GroupMachine::Full(machine) = self {
            machine.apply_forced_recovery(index, audit);
        }
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
        match self {
            GroupMachine::Full(machine) => machine.restore(snapshot),
            GroupMachine::Witness if snapshot.is_empty() => Ok(()),
            // A witness's own snapshots and the ones a leader sends it
            // are empty: state here is a full server's data directory.
            GroupMachine::Witness => Err(RestoreError {
                reason: format!(
                    "this server runs as a witness, but its data directory holds a snapshot \
                     of {} bytes of state, a full server's: start it without --witness (or \
                     without its id in --witnesses)",
                    snapshot.len()
                ),
            }),
        }
    }
}

pub use concord_tokio::multi::witness_role_conflict;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_balances_leadership_over_the_full_voters() {
        let voters: BTreeSet<NodeId> = [1, 2, 3].into();
        let mut led = std::collections::BTreeMap::new();
        for group in 1..=30_000 {
            let leader = spread_leader(group, &voters).unwrap();
            assert!(voters.contains(&leader));
            *led.entry(leader).or_insert(0u32) += 1;
        }
        // Each of 3 voters prefers about 10,000 groups: within 3 %.
        for (voter, count) in &led {
            assert!((9_700..=10_300).contains(count), "node {voter}: {count}");
        }
        // The same answer every time (every server must agree), and none
        // without voters.
        assert_eq!(spread_leader(17, &voters), spread_leader(17, &voters));
        assert_eq!(spread_leader(17, &BTreeSet::new()), None);
        // A witness is never preferred: only full voters are given.
        let full: BTreeSet<NodeId> = [1, 2].into();
        assert!((1..=1000).all(|g| spread_leader(g, &full) != Some(3)));
    }

    fn settings(extra: &[&str], file: &str) -> Result<ServerSettings, String> {
        use clap::Parser;
        let mut argv = vec![
            "concord-node",
            "--id",
            "1",
            "--listen",
            "127.0.0.1:1",
            "--peers",
            "1=127.0.0.1:1,2=127.0.0.1:2,3=127.0.0.1:3",
            "--cluster-id",
            "c",
            "--data-dir",
            "d",
        ];
        argv.extend_from_slice(extra);
        let flags = crate::server::NodeArgs::try_parse_from(argv)
            .map_err(|e| e.to_string())?
            .server;
        let path = std::path::Path::new("s.toml");
        let file = crate::server::parse_config(file, path).map_err(|e| e.to_string())?;
        ServerSettings::merge(&flags, &file, Some(path)).map_err(|e| e.to_string())
    }

    #[test]
    fn a_disk_store_takes_snapshots_past_what_memory_decodes() {
        let voters: BTreeSet<NodeId> = [1, 2, 3].into();
        let memory = group_config(&settings(&[], "").unwrap(), &voters, 1, 0);
        let disk = settings(&["--storage", "disk"], "").unwrap();
        let from_file = settings(&[], "storage = \"disk\"").unwrap();
        assert_eq!(disk, from_file);
        let disk = group_config(&disk, &voters, 1, 0);
        // The core's default, what an in-memory state is decoded within.
        assert_eq!(memory.snapshot_bytes_max, 1 << 30);
        assert_eq!(disk.snapshot_bytes_max, DISK_SNAPSHOT_BYTES_MAX);
    }

    #[test]
    fn every_group_gets_the_servers_lease_witnesses_and_preference() {
        let voters: BTreeSet<NodeId> = [1, 2, 3].into();
        let s = settings(
            &[
                "--groups",
                "64",
                "--lease-ticks",
                "5",
                "--witnesses",
                "3",
                "--spread-leaders",
            ],
            "",
        )
        .unwrap();
        check_group_config(&s, &voters).unwrap();
        for group in 1..=64 {
            let config = group_config(&s, &voters, group, 7);
            assert_eq!(config.lease_read_ticks, 5);
            assert_eq!(config.witnesses, [3].into());
            // The witness is never preferred; the full voters are.
            let preferred = spread_leader(group, &[1, 2].into()).unwrap();
            assert_eq!(config.priorities, [(preferred, 1)].into());
            config.validate().unwrap();
        }
        // --preferred-leader: every group prefers that server.
        let s = settings(&["--groups", "64", "--preferred-leader", "2"], "").unwrap();
        assert!((1..=64).all(|g| group_config(&s, &voters, g, 7).priorities == [(2, 1)].into()));
        // A lease too long for the groups' election timeout is refused at
        // start, naming the flags.
        let s = settings(&["--groups", "64", "--lease-ticks", "7"], "").unwrap();
        let e = check_group_config(&s, &voters).unwrap_err();
        assert!(
            e.contains("--lease-ticks plus --clock-drift-bound-ticks")
                && e.contains("minimum election timeout of 10 ticks"),
            "{e}"
        );
        // One group keeps the single-group server's timing: the lease it
        // took is taken, and one past its bound is refused naming 15.
        let s = settings(&["--lease-ticks", "7"], "").unwrap();
        check_group_config(&s, &voters).unwrap();
        let config = group_config(&s, &voters, 1, 7);
        assert_eq!(
            (
                config.election_timeout_min_ticks,
                config.election_timeout_max_ticks,
                config.heartbeat_interval_ticks
            ),
            (15, 30, 3)
        );
        let s = settings(&["--lease-ticks", "12"], "").unwrap();
        let e = check_group_config(&s, &voters).unwrap_err();
        assert!(e.contains("minimum election timeout of 15 ticks"), "{e}");
    }

    #[test]
    fn what_groups_still_refuse_is_refused_by_name() {
        let e = settings(&["--spread-leaders"], "").unwrap_err();
        assert!(
            e.contains("a single-group server prefers one leader"),
            "{e}"
        );
        let e = settings(
            &["--groups", "8", "--spread-leaders"],
            "preferred-leader = 2\n",
        )
        .unwrap_err();
        assert!(e.contains("give one of them"), "{e}");
        let e = settings(
            &[
                "--groups",
                "8",
                "--spread-leaders",
                "--preferred-leader",
                "2",
            ],
            "",
        )
        .unwrap_err();
        assert!(e.contains("cannot be used with"), "{e}");
        // --join starts an empty server of a multi-group cluster too.
        assert!(settings(&["--groups", "8", "--join"], "").is_ok());
        let s = settings(&["--groups", "8"], "spread-leaders = true\n").unwrap();
        assert_eq!(LeaderPreference::of(&s), LeaderPreference::Spread);
    }

    #[test]
    fn a_server_restarted_in_the_other_role_is_refused() {
        use concord::Membership;
        let mut recovery = concord_tokio::multi::MultiRecovery::default();
        let membership = Membership::new([1, 2, 3]).try_with_witnesses(&[3]).unwrap();
        for group in [5, 6] {
            let recovered = concord::Recovered {
                membership: Some(membership.clone()),
                ..Default::default()
            };
            let found = concord_tokio::multi::RecoveredGroup {
                recovered,
                snapshot: None,
                entries_dropped_after_snapshot: 0,
            };
            recovery.groups.insert(group, found);
        }
        assert_eq!(witness_role_conflict(&recovery, 3, true), None);
        assert_eq!(witness_role_conflict(&recovery, 1, false), None);
        let e = witness_role_conflict(&recovery, 3, false).unwrap();
        assert!(
            e.contains("2 of its groups (group 5 first) lists it as a witness"),
            "{e}"
        );
        let e = witness_role_conflict(&recovery, 2, true).unwrap();
        assert!(e.contains("lists it as a full voter"), "{e}");
    }

    #[test]
    fn a_witness_machine_holds_nothing_and_refuses_a_full_servers_snapshot() {
        let mut witness = GroupMachine::<concord_services::sharded_kv::ShardMachine>::Witness;
        assert!(witness.snapshot().is_empty());
        assert_eq!(witness.query(b"anything"), None);
        assert!(witness.restore(&[]).is_ok());
        let e = witness.restore(b"state").unwrap_err();
        assert!(e.reason.contains("runs as a witness"), "{}", e.reason);
    }
}
