//! The one table of planted mistakes: every deliberate mistake the
//! simulator can switch on, with the layer it lives in, what it breaks,
//! the check that should catch it and the seeds it must be caught within
//! (`sim/tests/bugs.rs` runs the table).
//!
//! A mistake's name is its switch's field name written in kebab case
//! (`figure-8-commit` is `PlantedBugs::figure_8_commit`), with `multi-`
//! before the multi-group layer's, so one grep finds the switch, the
//! table entry and the command line: `concord-sim run --bug NAME`
//! (repeatable) plants it, a failing run's replay command names it the
//! same way, and `concord-sim bugs` prints this table.
//!
//! Each layer's switches are a struct of bools that the layer itself
//! reads: the core's [`concord::PlantedBugs`], the multi-group layer's
//! [`concord::multi::MultiPlantedBugs`], the simulated host's
//! [`HostBugs`], and the selected service's one mistake
//! ([`SimConfig::service_bug`]). This table is the only place that
//! names them; the command line, the replay command and the tests go
//! through it.

use concord::ReadPath;

use crate::config::{
    CoreBugs, DurableChoice, ForcedRecoveryChoice, HostBugs, ReadChoice, SimConfig,
};
use crate::faults::{FaultKind, FaultSet};
use crate::multi::{MultiBugs, MultiCheck};
use crate::FailureKind;

/// Where a planted mistake lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layer {
    /// The sans-IO core (`concord::Node`), behind its `planted-bugs`
    /// feature.
    Core,
    /// The multi-group layer (`concord::multi`), behind the same feature;
    /// planted only in multi-group runs (`--groups`).
    Multi,
    /// The simulated host: its disk, transport, clients, snapshots or
    /// state machines.
    Host,
    /// The selected service of `concord-services` (`--service`).
    Service,
}

impl Layer {
    /// The layer's name as `concord-sim bugs` prints it.
    pub fn name(self) -> &'static str {
        match self {
            Layer::Core => "core",
            Layer::Multi => "multi-group",
            Layer::Host => "host",
            Layer::Service => "service",
        }
    }
}

/// Every layer's switches, as one run plants them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Switches {
    /// The host's.
    pub host: HostBugs,
    /// The core's.
    pub core: CoreBugs,
    /// The multi-group layer's.
    pub multi: MultiBugs,
    /// The selected service's mistake.
    pub service: bool,
}

impl Switches {
    /// The switches of a single-group run.
    pub fn of(config: &SimConfig) -> Switches {
        Switches {
            host: config.bugs,
            core: config.core_bugs,
            multi: MultiBugs::default(),
            service: config.service_bug,
        }
    }

    /// Sets the single-group layers' switches of `config` to these.
    pub fn apply(&self, config: &mut SimConfig) {
        config.bugs = self.host;
        config.core_bugs = self.core;
        config.service_bug = self.service;
    }

    /// The mistakes switched on, in table order.
    pub fn planted(&self) -> impl Iterator<Item = &'static Mistake> + '_ {
        MISTAKES.iter().filter(|mistake| mistake.is_on(self))
    }

    /// `--bug NAME` for every mistake switched on, in table order.
    pub fn flags(&self) -> Vec<String> {
        self.planted()
            .map(|mistake| format!("--bug {}", mistake.name))
            .collect()
    }
}

/// One planted mistake.
#[derive(Clone, Copy, Debug)]
pub struct Mistake {
    /// Its name on the command line: its switch's field name in kebab
    /// case (`multi-` first for the multi-group layer's).
    pub name: &'static str,
    /// The layer it is planted in.
    pub layer: Layer,
    /// What it breaks.
    pub breaks: &'static str,
    /// The check (failure kind, step rule or budget) that should catch it.
    pub caught_by: &'static str,
    /// How `sim/tests/bugs.rs` holds it to its bound: the runs, the
    /// seeds and the checks (or where another test does).
    pub catch: &'static [Catch],
    switch: fn(&mut Switches) -> &mut bool,
}

/// How a mistake must be caught: within how many seeds of which runs, by
/// which check. `sim/tests/bugs.rs` runs every one, and runs the same
/// seeds without the mistake, which must pass.
#[derive(Clone, Copy, Debug)]
pub enum Catch {
    /// Single-group runs.
    Runs {
        /// Cluster sizes, each with the seeds (from 0) the mistake must
        /// be caught within.
        on: &'static [(usize, u64)],
        /// The run options besides the cluster size and the mistake.
        run: fn(&mut SimConfig),
        /// The failures that count as the catch (any failure if empty):
        /// the first seed that fails with one of them is the catch.
        by: &'static [FailureKind],
        /// The catch's failure must be one of these (any of `by` if
        /// empty).
        is: &'static [FailureKind],
        /// The catch's message contains this.
        says: &'static str,
        /// The step rules while searching for the catch.
        rules: Rules,
    },
    /// Multi-group runs (`--groups swarm`).
    Groups {
        /// Cluster sizes, each with the seeds (from 0) the mistake must
        /// be caught within.
        on: &'static [(usize, u64)],
        /// The checks that count as the catch.
        by: &'static [MultiCheck],
        /// The catch's message contains this.
        says: &'static str,
    },
    /// Held to its bound (or shown uncaught) elsewhere: where, and what.
    Elsewhere(&'static str),
}

/// The step rules (`crate::rules`) while a catch is searched for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rules {
    /// As the run options leave them.
    Kept,
    /// Off: the catch must come from another check (the seeds without the
    /// mistake run with them).
    OffWhileCatching,
    /// Kept, and they alone catch it: without them every seed within the
    /// bound passes with the mistake in.
    Only,
}

impl Catch {
    /// [`Catch::Runs`].
    const fn runs(
        on: &'static [(usize, u64)],
        run: fn(&mut SimConfig),
        by: &'static [FailureKind],
        is: &'static [FailureKind],
        says: &'static str,
        rules: Rules,
    ) -> Catch {
        Catch::Runs {
            on,
            run,
            by,
            is,
            says,
            rules,
        }
    }

    /// [`Catch::Groups`].
    const fn groups(
        on: &'static [(usize, u64)],
        by: &'static [MultiCheck],
        says: &'static str,
    ) -> Catch {
        Catch::Groups { on, by, says }
    }

    /// The bound in words: the seeds, the cluster sizes and the run
    /// options (as `concord-sim run` flags).
    pub fn bound(&self) -> String {
        let within = |on: &[(usize, u64)]| {
            on.iter()
                .map(|(nodes, seeds)| format!("{seeds} seeds on {nodes} nodes"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            Catch::Runs { on, run, rules, .. } => {
                let mut config = SimConfig::default();
                run(&mut config);
                let flags = config.cli_flags();
                // Past "--seed N --nodes N".
                let options: Vec<&str> = flags.split(' ').skip(4).collect();
                let mut text = within(on);
                if !options.is_empty() {
                    text += &format!(" with {}", options.join(" "));
                }
                if *rules == Rules::Only {
                    text += "; none of them fails without the step rules";
                }
                text
            }
            Catch::Groups { on, .. } => format!("{} with --groups swarm", within(on)),
            Catch::Elsewhere(text) => (*text).to_string(),
        }
    }
}

impl Mistake {
    /// The seeds it must be caught within and the runs, in words (see
    /// [`Catch::bound`]).
    pub fn bound(&self) -> String {
        self.catch
            .iter()
            .map(Catch::bound)
            .collect::<Vec<_>>()
            .join("; and ")
    }

    /// Whether `switches` plant this mistake.
    pub fn is_on(&self, switches: &Switches) -> bool {
        let mut copy = *switches;
        *(self.switch)(&mut copy)
    }

    /// Plants (or removes) this mistake in `switches`.
    pub fn set(&self, switches: &mut Switches, on: bool) {
        *(self.switch)(switches) = on;
    }

    /// Switches with this mistake alone planted.
    pub fn alone(&self) -> Switches {
        let mut switches = Switches::default();
        self.set(&mut switches, true);
        switches
    }
}

/// The mistake called `name`, or an error listing the names (and the
/// nearest one, if one is near).
pub fn find(name: &str) -> Result<&'static Mistake, String> {
    if let Some(mistake) = MISTAKES.iter().find(|mistake| mistake.name == name) {
        return Ok(mistake);
    }
    // A name that holds the one given (an old flag's shorter name), else
    // the nearest by edits.
    let nearest = MISTAKES
        .iter()
        .find(|mistake| name.len() >= 4 && mistake.name.contains(name))
        .map(|mistake| mistake.name)
        .or_else(|| {
            MISTAKES
                .iter()
                .map(|mistake| (edit_distance(name, mistake.name), mistake.name))
                .min()
                .filter(|(distance, _)| *distance <= name.len().max(4) / 2)
                .map(|(_, near)| near)
        });
    let hint = match nearest {
        Some(near) => format!(" (did you mean {near}?)"),
        None => String::new(),
    };
    let names: Vec<&str> = MISTAKES.iter().map(|mistake| mistake.name).collect();
    Err(format!(
        "no planted mistake is called {name:?}{hint}; `concord-sim bugs` lists them: {}",
        names.join(", ")
    ))
}

/// Levenshtein distance, for the nearest name.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substituted = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substituted.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

/// `snake` with every `_` a `-`, as bytes (for the names in [`MISTAKES`]).
const fn kebab<const N: usize>(snake: &str) -> [u8; N] {
    let bytes = snake.as_bytes();
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        out[i] = if bytes[i] == b'_' { b'-' } else { bytes[i] };
        i += 1;
    }
    out
}

/// The kebab-case form of a snake-case string literal, as a `&'static str`.
macro_rules! kebab {
    ($snake:expr) => {{
        const SNAKE: &str = $snake;
        const BYTES: [u8; SNAKE.len()] = kebab::<{ SNAKE.len() }>(SNAKE);
        match ::core::str::from_utf8(&BYTES) {
            Ok(name) => name,
            Err(_) => panic!("a mistake's name is ASCII"),
        }
    }};
}

/// A mistake's name and switch from its layer and field.
macro_rules! mistake {
    (core $field:ident) => {
        (kebab!(stringify!($field)), Layer::Core, {
            fn switch(switches: &mut Switches) -> &mut bool {
                &mut switches.core.$field
            }
            switch as fn(&mut Switches) -> &mut bool
        })
    };
    (multi $field:ident) => {
        (
            kebab!(concat!("multi_", stringify!($field))),
            Layer::Multi,
            {
                fn switch(switches: &mut Switches) -> &mut bool {
                    &mut switches.multi.$field
                }
                switch as fn(&mut Switches) -> &mut bool
            },
        )
    };
    (host $field:ident) => {
        (kebab!(stringify!($field)), Layer::Host, {
            fn switch(switches: &mut Switches) -> &mut bool {
                &mut switches.host.$field
            }
            switch as fn(&mut Switches) -> &mut bool
        })
    };
    (service $field:ident) => {
        (kebab!(stringify!($field)), Layer::Service, {
            fn switch(switches: &mut Switches) -> &mut bool {
                &mut switches.service
            }
            switch as fn(&mut Switches) -> &mut bool
        })
    };
}

/// The table: `layer field { breaks, caught_by, catch }` per mistake.
macro_rules! mistakes {
    ($(
        $layer:ident $field:ident {
            breaks: $breaks:literal,
            caught_by: $caught_by:literal,
            catch: $catch:expr $(,)?
        }
    )*) => {
        /// Every planted mistake, in the order `concord-sim bugs` lists
        /// them.
        pub const MISTAKES: &[Mistake] = &[$({
            let (name, layer, switch) = mistake!($layer $field);
            Mistake {
                name,
                layer,
                breaks: $breaks,
                caught_by: $caught_by,
                catch: $catch,
                switch,
            }
        }),*];
    };
}

mistakes! {
    // The core (concord::PlantedBugs).
    core figure_8_commit {
        breaks: "a leader commits an entry of an earlier term by counting the replicas that hold it (Raft's Figure 8)",
        caught_by: "an outside safety check (commit-leader, a step rule, first when the rules are on)",
        catch: &[Catch::runs(&[(5, 1000), (3, 1000)], plain, OUTSIDE_SAFETY, &[], "", Rules::OffWhileCatching)],
    }
    core vote_before_durable {
        breaks: "a vote grant is sent before the vote is durable",
        caught_by: "an outside safety check (election-safety, ...)",
        catch: &[Catch::runs(&[(5, 500), (3, 500)], plain, OUTSIDE_SAFETY, &[], "", Rules::OffWhileCatching)],
    }
    core read_index_without_round {
        breaks: "a leader serves ReadIndex reads without a heartbeat round confirming it still leads",
        caught_by: "read-fresh or linearizability",
        catch: &[Catch::runs(&[(5, 100), (3, 100)], read_index_partitions, OUTSIDE_SAFETY, &[FailureKind::Linearizability, FailureKind::ReadFresh], "", Rules::OffWhileCatching)],
    }
    core follower_read_before_apply {
        breaks: "a follower serves a follower read before applying its read index",
        caught_by: "host-contract (the ReadReady contract) or an outside safety check",
        catch: &[Catch::runs(&[(5, 100), (3, 100)], follower_reads, HOST_CONTRACT_OR_OUTSIDE_SAFETY, &[], "", Rules::OffWhileCatching)],
    }
    core joint_new_quorum_only {
        breaks: "during a joint configuration the leader commits with the new voters' majority alone",
        caught_by: "an outside safety check (commit-without-quorum, ...)",
        catch: &[Catch::runs(&[(5, 100), (3, 100)], plain, OUTSIDE_SAFETY, &[], "", Rules::OffWhileCatching)],
    }
    core membership_on_commit {
        breaks: "a configuration takes effect when its entry commits, not when it is appended",
        caught_by: "an outside safety check (config-in-log, a step rule, first when the rules are on)",
        catch: &[Catch::runs(&[(5, 100), (3, 100)], plain, OUTSIDE_SAFETY, &[], "", Rules::OffWhileCatching)],
    }
    core witness_campaigns {
        breaks: "a witness campaigns, and may lead, like a full voter",
        caught_by: "witness-served",
        catch: &[Catch::runs(&[(5, 100), (3, 100)], plain, OUTSIDE_SAFETY, &[FailureKind::WitnessServed], "", Rules::OffWhileCatching)],
    }
    core probe_ignores_hint {
        breaks: "efficiency: a refused leader backs up one entry per round trip, ignoring the follower's hint",
        caught_by: "the probe expectation of the efficiency budgets",
        catch: &[Catch::Elsewhere("within 20 seeds on 5 and 3 nodes: sim/tests/budgets.rs")],
    }
    core pre_vote_moves_term {
        breaks: "a pre-vote request moves the receiver's term although it grants nothing",
        caught_by: "pre-vote-inert (step rule; nothing else), in one group or many",
        catch: &[
            Catch::runs(&[(5, 10), (3, 10)], plain, STEP_RULE, &[], "rule pre-vote-inert: ", Rules::Only),
            Catch::groups(&[(3, 10)], MULTI_STEP_RULE, "rule pre-vote-inert: "),
        ],
    }
    core stale_acceptance_counted {
        breaks: "a leader counts an older term's append acceptance as its own",
        caught_by: "progress-answer (step rule; nothing else), in one group or many",
        catch: &[
            Catch::runs(&[(5, 150)], plain, STEP_RULE, &[], "rule progress-answer: ", Rules::Only),
            Catch::groups(&[(3, 20)], MULTI_STEP_RULE, "rule progress-answer: "),
        ],
    }
    core earlier_replica_answers_taken {
        breaks: "a leader takes an acknowledgement of a replica removed since, whose node was added back empty in the same term, for the new replica's",
        caught_by: "progress-answer (step rule) in a multi-group run whose stale fault holds back a removed replica's last acknowledgement",
        catch: &[Catch::groups(&[(5, 40)], MULTI_STEP_RULE, "rule progress-answer: ")],
    }
    core commit_past_append {
        breaks: "a follower commits past the last entry of the append that told it the commit",
        caught_by: "commit-follower (step rule; nothing else)",
        catch: &[Catch::runs(&[(5, 60)], plain, STEP_RULE, &[], "rule commit-follower: ", Rules::Only)],
    }
    core probe_ignores_hint_term {
        breaks: "efficiency: a refused leader probes right after the hint's index, ignoring its term",
        caught_by: "probe-per-term (step rule; nothing else)",
        catch: &[Catch::runs(&[(5, 20)], plain, STEP_RULE, &[], "rule probe-per-term: ", Rules::Only)],
    }
    core probe_back_to_match {
        breaks: "efficiency: a refused leader probes from right after the match index, ignoring the hint",
        caught_by: "probe-per-term (step rule; nothing else within the bound)",
        catch: &[Catch::runs(&[(5, 20)], plain, STEP_RULE, &[], "rule probe-per-term: ", Rules::Only)],
    }
    core heartbeat_commit_uncapped {
        breaks: "a leader's heartbeats carry its whole commit index, not capped at what each follower holds",
        caught_by: "commit-follower (step rule); log-matching without the rules",
        catch: &[Catch::runs(&[(5, 10), (3, 10)], plain, STEP_RULE, &[], "rule commit-follower: ", Rules::Kept)],
    }
    core truncate_after_prev {
        breaks: "efficiency: a follower finding a conflict truncates right after the append's prev, not at the conflict",
        caught_by: "log-append-matches (step rule), given the schedule",
        catch: &[Catch::Elsewhere("none: the sweep draws no append whose first entries match and later ones conflict (sim/README.md)")],
    }
    core leader_counts_unpersisted {
        breaks: "a leader counts its whole log toward a commit, durable or not",
        caught_by: "commit-leader (step rule); commit-without-quorum without the rules",
        catch: &[Catch::runs(&[(5, 10), (3, 10)], plain, STEP_RULE, &[], "rule commit-leader: ", Rules::Kept)],
    }
    core candidate_grants_rival {
        breaks: "a candidate grants a rival candidate's vote in its own term, voting twice",
        caught_by: "vote-once (step rule; nothing else within the bound)",
        catch: &[Catch::runs(&[(5, 10), (3, 10)], plain, STEP_RULE, &[], "rule vote-once: ", Rules::Only)],
    }
    core read_joins_sent_round {
        breaks: "a read arriving while a confirmation round is out joins that round, sent before it arrived",
        caught_by: "read-index (step rule; nothing else)",
        catch: &[Catch::runs(&[(5, 10)], plain, STEP_RULE, &[], "rule read-index: ", Rules::Only)],
    }
    core removed_node_campaigns {
        breaks: "liveness: a node removed from the voters keeps campaigning",
        caught_by: "stability, under the final configuration",
        catch: &[Catch::runs(&[(5, 100), (3, 100)], plain, &[FailureKind::Stability], &[], "outside the final configuration", Rules::OffWhileCatching)],
    }
    core commit_notice_unchecked {
        breaks: "a follower commits on a commit notice without checking that its log holds the leader's last entry",
        caught_by: "commit-follower (step rule)",
        catch: &[Catch::runs(&[(3, 10), (5, 10)], plain, STEP_RULE, &[], "rule commit-follower", Rules::Kept)],
    }
    core owed_commit_forgotten {
        breaks: "liveness: a leader forgets the commit notice it held back while appends were in flight",
        caught_by: "commit-untold",
        catch: &[Catch::runs(&[(5, 10), (3, 10)], plain, &[FailureKind::CommitUntold], &[], "has no append in flight", Rules::OffWhileCatching)],
    }
    core lease_from_answer {
        breaks: "a leader counts its lease from when a round's answers arrived, not from when it sent the round",
        caught_by: "read-fresh or linearizability (the lease nemesis)",
        catch: &[Catch::runs(&[(5, 50), (3, 100)], lease_runs, OUTSIDE_SAFETY, STALE_READ, "", Rules::OffWhileCatching)],
    }
    core lease_ignores_drift {
        breaks: "the lease ignores the declared clock drift bound",
        caught_by: "read-fresh or linearizability (the lease nemesis)",
        catch: &[Catch::runs(&[(5, 50)], lease_runs, OUTSIDE_SAFETY, STALE_READ, "", Rules::OffWhileCatching)],
    }
    core lease_during_transfer {
        breaks: "a leader keeps serving lease reads while it transfers its leadership",
        caught_by: "read-fresh or linearizability (the lease nemesis)",
        catch: &[Catch::runs(&[(5, 50), (3, 50)], lease_runs, OUTSIDE_SAFETY, STALE_READ, "", Rules::OffWhileCatching)],
    }
    core snapshot_held_by_index {
        breaks: "a follower takes a snapshot its log reaches (whatever the term there) for one it holds",
        caught_by: "log-matching (the snapshot-conflict nemesis)",
        catch: &[Catch::runs(&[(5, 20), (3, 20)], snapshot_conflict_runs, OUTSIDE_SAFETY, &[FailureKind::LogMatching], "", Rules::OffWhileCatching)],
    }
    core stale_snapshot_installed {
        breaks: "a follower installs a snapshot its commit index already passed",
        caught_by: "commit-regressed (the snapshot-conflict nemesis)",
        catch: &[Catch::runs(&[(5, 20), (3, 20)], snapshot_conflict_runs, &[FailureKind::CommitRegressed], &[], "went back", Rules::OffWhileCatching)],
    }
    core lost_entries_unreported {
        breaks: "liveness: a follower that lost acknowledged entries keeps quiet when a heartbeat names a commit past its log",
        caught_by: "idle-catch-up",
        catch: &[Catch::runs(&[(5, 20), (3, 20)], plain, &[FailureKind::IdleCatchUp], &[], "on an idle cluster", Rules::OffWhileCatching)],
    }
    core storage_loss_ignored {
        breaks: "a node that lost its storage votes at once, as if it remembered what it promised",
        caught_by: "recovering-vote (the disk-loss fault)",
        catch: &[Catch::runs(&[(5, 30), (3, 30)], plain, &[FailureKind::RecoveringVote], &[], "forgot what it acknowledged", Rules::OffWhileCatching)],
    }
    core lease_before_own_term_commit {
        breaks: "a new leader serves lease reads before an entry of its own term is committed",
        caught_by: "read-fresh (the lease nemesis, step rules off)",
        catch: &[Catch::runs(&[(5, 40), (3, 10)], lease_runs_without_rules, &[FailureKind::ReadFresh], &[], "already committed when it arrived", Rules::OffWhileCatching)],
    }
    core restart_hold_lease_long {
        breaks: "a restarted node's vote hold lasts the lease, not a minimum election timeout",
        caught_by: "vote-hold (step rule; nothing else)",
        catch: &[Catch::runs(&[(5, 20)], lease_runs, STEP_RULE, &[], "rule vote-hold: ", Rules::Only)],
    }
    core follower_read_index_reused {
        breaks: "a follower serves a read arriving in the tick its last read index came back, at that index",
        caught_by: "read-forwarded (step rule); read-fresh without the rules",
        catch: &[
            Catch::runs(&[(5, 10), (3, 10)], forwarded_runs, STEP_RULE, &[], "rule read-forwarded: ", Rules::Kept),
            Catch::runs(&[(5, 10), (3, 10)], forwarded_runs_without_rules, &[FailureKind::ReadFresh], &[], "already committed", Rules::OffWhileCatching),
        ],
    }
    core catch_up_unordered {
        breaks: "a candidate takes any matching catch-up, whatever its order",
        caught_by: "catch-up-order (step rule; nothing else; the late catch-up nemesis)",
        catch: &[Catch::runs(&[(3, 1500)], plain, STEP_RULE, &[], "rule catch-up-order: ", Rules::Only)],
    }

    // The multi-group layer (concord::multi::MultiPlantedBugs), with --groups.
    multi quiesce_follower_behind {
        breaks: "a leader quiesces while a live follower is behind",
        caught_by: "quiescence",
        catch: &[Catch::groups(&[(3, 10)], &[MultiCheck::Quiescence], "went to sleep")],
    }
    multi heartbeat_commit_uncapped {
        breaks: "a coalesced heartbeat carries the group's commit index, not the one capped at what the follower holds",
        caught_by: "a group's outside safety check (commit-follower, a step rule)",
        catch: &[Catch::groups(&[(3, 10)], MULTI_OUTSIDE_SAFETY, "")],
    }
    multi wake_drops_read {
        breaks: "waking a sleeping group for a read drops the read",
        caught_by: "read-unanswered",
        catch: &[Catch::groups(&[(3, 10)], &[MultiCheck::ReadUnanswered], "never answered")],
    }
    multi persist_acks_later_batches {
        breaks: "a durability report acknowledges the writes of batches still being written",
        caught_by: "durability or a group's outside safety check",
        catch: &[Catch::groups(&[(3, 20)], MULTI_DURABILITY_OR_OUTSIDE_SAFETY, "")],
    }
    multi stale_message_wakes {
        breaks: "a message of a term older than a sleeping group's wakes it",
        caught_by: "stale-wake",
        catch: &[Catch::groups(&[(3, 10)], &[MultiCheck::StaleWake], "older than its own woke it")],
    }
    multi live_peer_taken_for_dead {
        breaks: "a stalled host takes every live peer for dead at once",
        caught_by: "stall-death",
        catch: &[Catch::groups(&[(3, 10)], &[MultiCheck::StallDeath], "ticks its stall missed")],
    }
    multi old_incarnation_restarts {
        breaks: "a frame of a peer's earlier incarnation is taken for a restart",
        caught_by: "restart-count",
        catch: &[Catch::groups(&[(3, 10)], &[MultiCheck::RestartCount], "did not restart since")],
    }
    multi tick_burst_wakes {
        breaks: "the wake queues are served on every tick of a burst, not once per flush",
        caught_by: "wake-bound",
        catch: &[Catch::groups(&[(3, 30)], &[MultiCheck::WakeBound], "once per flush")],
    }
    multi burst_lease_kept {
        breaks: "a leader takes one tick of a burst, keeping a lease from before its stall",
        caught_by: "lease-promise (step rule); read-fresh without the rules",
        catch: &[Catch::groups(&[(3, 50)], &[MultiCheck::Raft(FailureKind::StepRule)], "rule lease-promise")],
    }
    multi sleeping_follower_answers_unstepped {
        breaks: "a sleeping follower's layer answers its leader's heartbeat without stepping the node",
        caught_by: "lease-promise (step rule)",
        catch: &[Catch::groups(&[(3, 20)], &[MultiCheck::Raft(FailureKind::StepRule)], "rule lease-promise")],
    }
    multi balance_ignores_in_flight {
        breaks: "the balancer plans as if no move were in flight, as a new catalog leader that never read its predecessor's moves: a group gets a second move while its first runs",
        caught_by: "move-limits (the rebalance of the membership fault)",
        catch: &[Catch::groups(&[(5, 10)], &[MultiCheck::MoveLimits], "")],
    }
    multi balance_ignores_zones {
        breaks: "the balancer picks a move's target without the zone rule",
        caught_by: "zone-rule (the rebalance of the membership fault)",
        catch: &[Catch::groups(&[(5, 40)], &[MultiCheck::ZoneRule], "sharing a zone")],
    }
    multi leader_balance_without_margin {
        breaks: "the leader balancer hands a group to any voter leading fewer, so two servers one group apart hand it back and forth",
        caught_by: "leader-band (a planned transfer not two groups down; without it, membership-liveness: no fixed point)",
        catch: &[Catch::groups(&[(5, 80)], &[MultiCheck::LeaderBand], "not two fewer")],
    }
    multi move_rollback_removes_source {
        breaks: "undoing a move whose target was drained while it learned removes the move's source instead of its target",
        caught_by: "replace-rule (the rebalance of the membership fault)",
        catch: &[Catch::groups(&[(5, 40)], &[MultiCheck::ReplaceRule], "is not a voter")],
    }
    multi catalog_trusts_balancers {
        breaks: "the catalog records every balancer's move as it comes: a deposed catalog leader's balancer acting beside the new one's exceeds the limits and moves a group twice",
        caught_by: "move-limits (the rebalance of the membership fault)",
        catch: &[Catch::groups(&[(5, 40)], &[MultiCheck::MoveLimits], "")],
    }
    multi snapshot_credit_banked {
        breaks: "the snapshot bandwidth limit banks the credit of idle ticks, so a transfer after an idle spell leaves in one burst past the limit",
        caught_by: "snapshot-pace (a seed under a drawn bandwidth limit)",
        catch: &[Catch::groups(&[(3, 40)], &[MultiCheck::SnapshotPace], "more than its limit")],
    }
    multi snapshot_repeats_queued {
        breaks: "a repeat of a snapshot chunk waiting for the bandwidth limit waits behind its copy, so a leader's resends pile up faster than the limit lets them out and a transfer never ends",
        caught_by: "snapshot-pace (more of a transfer waits than its snapshot holds)",
        catch: &[Catch::groups(&[(5, 20), (3, 40)], &[MultiCheck::SnapshotPace], "copies of a chunk wait")],
    }
    multi move_stall_equal_mark_progress {
        breaks: "the stall watch takes a mark equal to the highest seen for progress, so a move whose target hangs (up in the catalog) never stalls and is never undone",
        caught_by: "move-stall (the rebalance of the membership fault, under a drawn stall time)",
        catch: &[Catch::groups(&[(5, 20)], &[MultiCheck::MoveStall], "not taken for stalled")],
    }
    multi replace_removes_old_early {
        breaks: "replacing a node removes it from a group while its replacement is still a learner",
        caught_by: "replace-rule (the membership fault)",
        catch: &[Catch::groups(&[(5, 20), (3, 20)], &[MultiCheck::ReplaceRule], "is not a voter")],
    }

    // The simulated host (HostBugs).
    host persisted_before_sync {
        breaks: "the host reports Persisted before the disk synced",
        caught_by: "an outside safety check (leader-completeness, acked-write-lost, ...)",
        catch: &[Catch::runs(&[(3, 50)], crash_fsync_runs, HOST_SAFETY, &[], "", Rules::Kept)],
    }
    host nondeterministic_state_machine {
        breaks: "the state machine applies some commands differently on some replicas",
        caught_by: "state-machine-safety",
        catch: &[Catch::runs(&[(3, 50)], chaos_3s, ANY, &[FailureKind::StateMachineSafety], "", Rules::Kept)],
    }
    host client_without_sessions {
        breaks: "clients send every retry as a new command, so a retried command may run twice",
        caught_by: "exactly-once; linearizability without operation ids",
        catch: &[Catch::runs(&[(3, 50)], chaos_5s, ANY, &[FailureKind::ExactlyOnce], "", Rules::Kept)],
    }
    host snapshot_reported_before_sync {
        breaks: "the host reports (and trusts) its snapshot before the file is synced",
        caught_by: "any check (a crash loses the snapshot and the entries it covered)",
        catch: &[Catch::runs(&[(3, 100)], unsynced_snapshot_runs, ANY, &[], "", Rules::Kept)],
    }
    host snapshot_past_applied {
        breaks: "the host labels its snapshot with the commit index, past what was applied",
        caught_by: "a core assertion, state-machine-safety or log-matching",
        catch: &[Catch::runs(&[(3, 50)], chaos_3s, ANY, &[FailureKind::Panic, FailureKind::StateMachineSafety, FailureKind::LogMatching], "", Rules::Kept)],
    }
    host host_book_dropped_from_snapshots {
        breaks: "the host leaves its address book out of its snapshots",
        caught_by: "host-book",
        catch: &[Catch::runs(&[(5, 100), (3, 100)], plain, &[FailureKind::HostBook], &[], "address book", Rules::OffWhileCatching)],
    }
    host forced_recovery_unsynced {
        breaks: "the forced-recovery survivor starts before the recovery's writes are synced",
        caught_by: "recovery (a done forced recovery stays durable)",
        catch: &[Catch::runs(&[(5, 20)], forced_recovery_runs, &[FailureKind::Recovery], &[], "forced recovery", Rules::OffWhileCatching)],
    }
    host forged_sender_relabelled {
        breaks: "the transport labels a forged sender (the node itself, id 0, an outsider) as a member",
        caught_by: "the forged-sender check",
        catch: &[Catch::Elsewhere("sim/tests/contracts.rs")],
    }
    host client_probes_well_formed {
        breaks: "the session-contract probes are well-formed after all",
        caught_by: "the probes' check",
        catch: &[Catch::Elsewhere("sim/tests/contracts.rs")],
    }
    host session_table_one_larger {
        breaks: "session tables hold one session more than configured",
        caught_by: "the session-answer check",
        catch: &[Catch::Elsewhere("sim/tests/contracts.rs")],
    }
    host calm_commit_updates_dropped {
        breaks: "during the latency writes the network drops the leader's commit updates",
        caught_by: "the follower apply budget",
        catch: &[Catch::Elsewhere("within 20 seeds: sim/tests/calm_budgets.rs")],
    }
    host calm_heartbeat_answers_dropped {
        breaks: "during the read rounds the network drops heartbeat answers",
        caught_by: "the read budget",
        catch: &[Catch::Elsewhere("within 20 seeds: sim/tests/calm_budgets.rs")],
    }
    host calm_backlog_delayed {
        breaks: "while the backlog is under way every message takes 5 ms more",
        caught_by: "the backlog budget",
        catch: &[Catch::Elsewhere("within 20 seeds: sim/tests/calm_budgets.rs")],
    }
    host role_announcement_dropped {
        breaks: "the host loses a node's announcement that it became leader",
        caught_by: "node-report (the accounting check)",
        catch: &[Catch::Elsewhere("at seed 0: sim/tests/accounting.rs")],
    }
    host split_vote_grant_dropped {
        breaks: "during a split vote the transport loses the vote grants to the first candidate",
        caught_by: "the vote-answer check",
        catch: &[Catch::Elsewhere("sim/tests/contracts.rs")],
    }
    host client_forgets_failures {
        breaks: "clients keep sending attempts to servers that failed them",
        caught_by: "client-avoidance",
        catch: &[Catch::runs(&[(5, 20), (3, 20)], plain, &[FailureKind::ClientAvoidance], &[], "while it was dark to clients", Rules::OffWhileCatching)],
    }
    host durable_index_before_state {
        breaks: "an on-disk state machine makes its applied index durable ahead of the state it covers",
        caught_by: "restart-state",
        catch: &[Catch::runs(&[(5, 10), (3, 10)], durable_runs, ANY, &[FailureKind::StateMachineSafety], "rule restart-state:", Rules::Kept)],
    }
    host durable_view_reads_live {
        breaks: "a snapshot's view reads the state when read, not when taken",
        caught_by: "snapshot-round-trip",
        catch: &[Catch::runs(&[(5, 10), (3, 10)], durable_runs, ANY, &[FailureKind::StateMachineSafety], "rule snapshot-round-trip:", Rules::Kept)],
    }
    host durable_snapshot_without_sync {
        breaks: "the host compacts past the durable applied index (no sync() once the view is read)",
        caught_by: "restart-base",
        catch: &[Catch::runs(&[(5, 10), (3, 10)], durable_runs, ANY, &[FailureKind::DurableState], "rule restart-base:", Rules::Kept)],
    }
    host durable_restart_trusts_applied {
        breaks: "a restart hands the node the state machine's durable applied index as its applied index",
        caught_by: "log-matching",
        catch: &[Catch::runs(&[(5, 200)], durable_always, ANY, &[FailureKind::LogMatching], "", Rules::Kept)],
    }
    host durable_forced_recovery_keeps_state {
        breaks: "a forced recovery keeps the survivor's on-disk state machine instead of rebuilding it",
        caught_by: "restart-state",
        catch: &[Catch::Elsewhere("too rare for a bound: 2 of 2000 seeds with --forced-recovery --durable-sm (docs/simulator.md)")],
    }
    host snapshot_copy_taken_late {
        breaks: "the copy of an in-memory state machine is taken when serialised, after later applies",
        caught_by: "snapshot-round-trip",
        catch: &[Catch::runs(&[(3, 10)], copies_in_memory, ANY, &[FailureKind::StateMachineSafety], "rule snapshot-round-trip:", Rules::Kept)],
    }

    // The selected service (--service).
    service service_bug {
        breaks: "the service's own mistake (kv: a put_many applied as two entries; directory: next_sequence read from a replica; orders: numbered by log index; chat: fetch served as a read)",
        caught_by: "the service's invariant check (atomicity, sequence, gap-free, delivered once)",
        catch: &[Catch::Elsewhere("3 to 10 seeds on 3 and on 5 nodes per service: sim/tests/services.rs")],
    }
}

// ----- The runs the catches need -----

/// Any failure.
const ANY: &[FailureKind] = &[];

/// A step rule.
const STEP_RULE: &[FailureKind] = &[FailureKind::StepRule];
/// A core mistake under the multi-group layer, caught by the step rules
/// its groups' nodes are observed by (`crate::observe`).
const MULTI_STEP_RULE: &[MultiCheck] = &[MultiCheck::Raft(FailureKind::StepRule)];

/// A stale read: by the history checker or by `read-fresh`.
const STALE_READ: &[FailureKind] = &[FailureKind::Linearizability, FailureKind::ReadFresh];

/// The checks that watch the nodes from outside: a planted core mistake
/// must be caught by one of these, not by a core assertion (a panic) or
/// a stuck run.
const OUTSIDE_SAFETY: &[FailureKind] = &[
    FailureKind::ElectionSafety,
    FailureKind::LogMatching,
    FailureKind::LeaderCompleteness,
    FailureKind::StateMachineSafety,
    FailureKind::AckedWriteLost,
    FailureKind::Linearizability,
    FailureKind::HardStateRegressed,
    FailureKind::AckedEntryNotRecovered,
    FailureKind::CommitWithoutQuorum,
    FailureKind::WitnessServed,
    FailureKind::ReadFresh,
];

/// [`OUTSIDE_SAFETY`] or the host contract of `Action::ReadReady`.
const HOST_CONTRACT_OR_OUTSIDE_SAFETY: &[FailureKind] = &[
    FailureKind::HostContract,
    FailureKind::ElectionSafety,
    FailureKind::LogMatching,
    FailureKind::LeaderCompleteness,
    FailureKind::StateMachineSafety,
    FailureKind::AckedWriteLost,
    FailureKind::Linearizability,
    FailureKind::HardStateRegressed,
    FailureKind::AckedEntryNotRecovered,
    FailureKind::CommitWithoutQuorum,
    FailureKind::WitnessServed,
    FailureKind::ReadFresh,
];

/// The safety checks a host that acknowledges unsynced writes trips.
const HOST_SAFETY: &[FailureKind] = &[
    FailureKind::LeaderCompleteness,
    FailureKind::AckedWriteLost,
    FailureKind::ElectionSafety,
    FailureKind::LogMatching,
    FailureKind::StateMachineSafety,
    FailureKind::Linearizability,
    FailureKind::AcknowledgedEntriesLost,
    FailureKind::HardStateRegressed,
    FailureKind::AckedEntryNotRecovered,
];

/// The checks that watch a multi-group run's groups from outside (not a
/// node's or the layer's own assertion).
const MULTI_OUTSIDE_SAFETY: &[MultiCheck] = &[
    MultiCheck::Raft(FailureKind::ElectionSafety),
    MultiCheck::Raft(FailureKind::StepRule),
    MultiCheck::Raft(FailureKind::LogMatching),
    MultiCheck::Raft(FailureKind::LeaderCompleteness),
    MultiCheck::Raft(FailureKind::StateMachineSafety),
    MultiCheck::Raft(FailureKind::CommitRegressed),
    MultiCheck::Raft(FailureKind::AcknowledgedEntriesLost),
    MultiCheck::Raft(FailureKind::Linearizability),
];

/// [`MULTI_OUTSIDE_SAFETY`] or the layer's durability check.
const MULTI_DURABILITY_OR_OUTSIDE_SAFETY: &[MultiCheck] = &[
    MultiCheck::Durability,
    MultiCheck::Raft(FailureKind::ElectionSafety),
    MultiCheck::Raft(FailureKind::StepRule),
    MultiCheck::Raft(FailureKind::LogMatching),
    MultiCheck::Raft(FailureKind::LeaderCompleteness),
    MultiCheck::Raft(FailureKind::StateMachineSafety),
    MultiCheck::Raft(FailureKind::CommitRegressed),
    MultiCheck::Raft(FailureKind::AcknowledgedEntriesLost),
    MultiCheck::Raft(FailureKind::Linearizability),
];

/// The default sweep.
fn plain(_: &mut SimConfig) {}

/// Every read a ReadIndex read, only partitions, clients that give up on
/// a silent server after 100 ms.
fn read_index_partitions(config: &mut SimConfig) {
    config.reads = ReadChoice::Only(ReadPath::ReadIndex);
    config.faults = FaultSet::NONE.with(FaultKind::Partition);
    config.client_timeout_ns = 100_000_000;
}

/// Every read a follower read.
fn follower_reads(config: &mut SimConfig) {
    config.reads = ReadChoice::Only(ReadPath::Follower);
}

/// The lease runs: every get takes the lease path, 2 keys (so a stale
/// read meets a write of its key), only the lease nemeses, default node
/// options (CheckQuorum, which leases need, on).
fn lease_runs(config: &mut SimConfig) {
    config.keys = 2;
    config.reads = ReadChoice::Only(ReadPath::Lease);
    config.faults = FaultSet::NONE.with(FaultKind::Lease);
    config.swarm = false;
    config.vary_node_options = false;
}

/// [`lease_runs`] with the step rules off: the freshness check alone.
fn lease_runs_without_rules(config: &mut SimConfig) {
    lease_runs(config);
    config.step_rules = false;
}

/// The forwarded-read runs: [`lease_runs`] with every get a follower read.
fn forwarded_runs(config: &mut SimConfig) {
    lease_runs(config);
    config.reads = ReadChoice::Only(ReadPath::Follower);
}

/// [`forwarded_runs`] with the step rules off.
fn forwarded_runs_without_rules(config: &mut SimConfig) {
    forwarded_runs(config);
    config.step_rules = false;
}

/// Only the snapshot-conflict nemesis.
fn snapshot_conflict_runs(config: &mut SimConfig) {
    config.faults = FaultSet::NONE.with(FaultKind::SnapshotConflict);
    config.swarm = false;
}

/// Three seconds of chaos.
fn chaos_3s(config: &mut SimConfig) {
    config.chaos_ns = 3_000_000_000;
}

/// Five seconds of chaos.
fn chaos_5s(config: &mut SimConfig) {
    config.chaos_ns = 5_000_000_000;
}

/// Crashes (including power loss of a majority) and slow fsyncs, five
/// seconds of chaos, a smaller step budget (a node re-probing a follower
/// whose "durable" log vanished may use it up).
fn crash_fsync_runs(config: &mut SimConfig) {
    config.chaos_ns = 5_000_000_000;
    config.faults = FaultSet::NONE.with(FaultKind::Crash).with(FaultKind::Fsync);
    config.swarm = false;
    config.max_node_steps = 300_000;
}

/// Crashes and slow fsyncs in every seed, no witness (whose snapshots
/// hold no bytes), five seconds of chaos.
fn unsynced_snapshot_runs(config: &mut SimConfig) {
    config.chaos_ns = 5_000_000_000;
    config.faults = FaultSet::NONE.with(FaultKind::Crash).with(FaultKind::Fsync);
    config.swarm = false;
    config.witnesses = false;
}

/// The forced-recovery scenario in every seed.
fn forced_recovery_runs(config: &mut SimConfig) {
    config.forced_recovery = ForcedRecoveryChoice::Always;
}

/// On-disk state machines in every seed.
fn durable_always(config: &mut SimConfig) {
    config.durable_state_machine = DurableChoice::Always;
}

/// On-disk state machines in every seed, five seconds of chaos.
fn durable_runs(config: &mut SimConfig) {
    durable_always(config);
    config.chaos_ns = 5_000_000_000;
}

/// In-memory state machines only, three seconds of chaos.
fn copies_in_memory(config: &mut SimConfig) {
    config.chaos_ns = 3_000_000_000;
    config.durable_state_machine = DurableChoice::Off;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_each_sets_its_own_switch() {
        for (i, mistake) in MISTAKES.iter().enumerate() {
            assert!(
                MISTAKES[..i].iter().all(|other| other.name != mistake.name),
                "{} twice",
                mistake.name
            );
            let alone = mistake.alone();
            assert_ne!(alone, Switches::default(), "{}", mistake.name);
            let planted: Vec<&str> = alone.planted().map(|m| m.name).collect();
            assert_eq!(planted, [mistake.name]);
        }
    }

    #[test]
    fn every_switch_has_its_entry() {
        let mut all = Switches::default();
        for mistake in MISTAKES {
            mistake.set(&mut all, true);
        }
        let shown = format!("{all:?}");
        assert!(!shown.contains("false"), "a switch with no entry: {shown}");
    }

    #[test]
    fn unknown_names_are_refused_with_the_nearest() {
        assert_eq!(find("figure-8-commit").unwrap().layer, Layer::Core);
        let error = find("figure-8").unwrap_err();
        assert!(error.contains("did you mean figure-8-commit?"), "{error}");
        assert!(error.contains("vote-before-durable"), "{error}");
    }
}
