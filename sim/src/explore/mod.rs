//! Exhaustive small-scope checking of the real core (`concord-sim
//! explore`): every interleaving of a small scope, with the real
//! [`concord::Node`] — never a model of it — driven through its public API
//! by miniature hosts, and Raft's properties checked on every state.
//!
//! Random seeds find the common schedules; this finds the rare ones, up to
//! the bounds of a [`Scope`]: 3 nodes, terms up to 3, up to 2 client
//! proposals, message loss, duplication and reordering, a crash that loses
//! every unsynced write (the node is rebuilt by `Node::new` from exactly
//! what was durable), and optionally reads, one membership change and one
//! snapshot.
//!
//! # What a state is, and a step
//!
//! A state ([`World`]) is every node (a real `Node`, cloned), its host's
//! disk (what is durable, and the writes queued before a sync), its host's
//! state machine and snapshot buffer, the messages in flight (a multiset:
//! any may be delivered next, which is reordering), the budgets spent and
//! the checks' ghost state (what was committed, who led each term, what
//! each read must reflect). A step ([`Step`]) is one input to one node and
//! everything its host does in answer (sends, queued writes, applies,
//! snapshots): a timer firing, the delivery, duplication or loss of one
//! message, a sync of the oldest pending write, a crash and restart, a
//! proposal, a read, a snapshot request, a membership change.
//!
//! # Time
//!
//! Ticking one tick at a time would multiply the depth of every path by
//! the election timeout. Instead a step *fires* a node's timer: it ticks
//! the node until the node emits anything (a follower's or candidate's
//! election timeout, a leader's heartbeat), at most a few ticks. Firings
//! interleave freely with every other step, so each node's clock runs at
//! any speed relative to the others and to the network: the asynchronous
//! model, in which Raft's safety must hold. The election timeout range
//! holds one value (2 ticks, heartbeat 1), so the timeout PRNG decides
//! nothing, and hashing ignores it.
//!
//! What this hides, deliberately:
//!
//! * **Leases.** A lease read is safe only while clocks drift apart by
//!   less than a declared bound; with clocks free to run at any relative
//!   speed, the lease would be "broken" by schedules no real clock
//!   produces. Lease reads are therefore off (the core serves a `Lease`
//!   read as ReadIndex when `lease_read_ticks` is 0) and not checked
//!   here; the simulator's clock-skew faults, which stay within the bound,
//!   check them.
//! * **Partial timeouts.** A follower never sits past its leader lease
//!   without campaigning: with a one-value timeout range, the lease ends
//!   exactly when its timer fires. In the real range a follower may, for a
//!   few ticks, grant votes without campaigning; here it first becomes a
//!   (pre-)candidate itself, which with PreVote changes no term, so only
//!   its pre-vote requests are extra.
//! * **CheckQuorum timing.** A leader steps down only at its own firings
//!   (every second one), never because of a real-time relation to the
//!   followers' timers; since safety may not rest on timing, every order
//!   is explored anyway.
//! * **Time-outs of waiting reads** (a follower read's request) fire only
//!   with the node's own timer.
//!
//! # What is checked, on every state
//!
//! See [`Property`]: election safety (one leader per term over the whole
//! history), log matching (between every two logs, and every committed
//! entry the same everywhere, never replaced, commit never going back),
//! leader completeness (every leader holds every entry committed in an
//! earlier term), state-machine safety (hosts apply exactly the committed
//! entries; a restored snapshot holds exactly the committed prefix), the
//! durability contract (a vote grant, an append acknowledgement, a
//! leader's commit only once the promised write is on the disk of the
//! voter, the follower, a majority), read safety (a served read reflects
//! every entry committed before it started), and no panic.
//!
//! # Why an explorer of our own, not `stateright`
//!
//! stateright's model checker wants a state it can hash and, for symmetry
//! reduction, rewrite into a representative (a function returning the
//! renamed state). A `Node` is opaque: its node ids live in private fields
//! (votes, progress, configurations), so no host can build a renamed node.
//! The core instead offers [`Node::hash_state`](concord::Node::hash_state)
//! with a renaming of ids, which is all a fingerprint needs: here a state's
//! fingerprint is the least hash over the renamings of nodes that look
//! alike. Two other wants decided it: the result (counts, the path found)
//! must not depend on the thread count, which a level-by-level search with
//! a fixed merge order gives and a shared work queue does not; and
//! storing only fingerprints and 8-byte parent records, rebuilding states
//! by replay (see `search.rs`), keeps millions of states within memory
//! where stored clusters of nodes would not fit.
//!
//! # Output
//!
//! [`explore`] returns the counts (transitions explored, distinct states,
//! depth), whether the scope was exhausted, what its states reached
//! ([`Reached`]: leaders, commits, crashes, terms; a scope that never
//! elects a leader or never commits a proposal is vacuous, and the command
//! line says so), and for a violation its shortest trace ([`Trace`]),
//! which [`replay`] runs again step by step.

mod checks;
#[cfg(feature = "cli")]
pub mod cli;
mod fingerprint;
mod reach;
mod scope;
mod search;
mod trace;
mod world;

pub use checks::{Property, Violation};
pub use fingerprint::{Fingerprint, Fingerprinter};
pub use reach::{Reached, Unreached};
pub use scope::{Loss, Scope, ScopeBugs, DEPTH_MAX, NETWORK_MESSAGES_MAX, NODES_MAX, TERM_MAX};
pub use search::{Counts, Found, Outcome, Progress};
pub use trace::{replay, shows, Replayed, SavedStep, Trace, TRACE_FORMAT};
pub use world::{describe_message, quiet_core_panics, Step, StepLog, World};

/// The result of [`explore`].
#[derive(Clone, Debug)]
pub struct Report {
    /// The scope explored.
    pub scope: Scope,
    /// What the search did.
    pub outcome: Outcome,
    /// The shortest trace to the violation found, if any.
    pub trace: Option<Trace>,
}

impl Report {
    /// Transitions checked per wall-clock second.
    pub fn states_per_second(&self) -> f64 {
        let seconds = self.outcome.wall.as_secs_f64();
        if seconds > 0.0 {
            self.outcome.counts.explored as f64 / seconds
        } else {
            0.0
        }
    }
}

/// Explores `scope` on `threads` threads, calling `progress` about once a
/// second.
pub fn explore(
    scope: &Scope,
    threads: usize,
    progress: &dyn Fn(&Progress),
) -> Result<Report, String> {
    let outcome = search::search(scope, threads, progress)?;
    let trace = match &outcome.found {
        Some(found) => Some(trace::build(scope, &found.steps, &found.violation)?),
        None => None,
    };
    Ok(Report {
        scope: scope.clone(),
        outcome,
        trace,
    })
}
