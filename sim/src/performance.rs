//! What a run costs (`concord-sim run --performance`): messages, bytes,
//! fsyncs and node steps, per committed entry over the whole run and per
//! simulated second of an idle cluster (the quiet period after the faults
//! healed, when clients send nothing and only heartbeats flow).
//!
//! The counts are deterministic (same seed, same counts), so a baseline of
//! a fixed set of seeds can be compared exactly: `sim/tests/performance.rs`
//! fails when a change makes one of them more expensive than its baseline
//! (`sim/tests/data/performance-baseline.json`) by more than a stated
//! tolerance, naming the seed, the counter and the growth.
//!
//! **Bytes** are a model of the wire, not an encoding: each message counts
//! [`MESSAGE_OVERHEAD_BYTES`], its fixed fields at eight bytes each, its
//! entries at their [`concord::Entry::size_bytes`] (payload plus the core's
//! fixed per-entry overhead) and its snapshot chunk at its data. The model
//! moves with what the protocol sends, not with how a transport frames it.
//!
//! **Fsyncs** are the syncs a host starts: of its log (one per batch of
//! writes, group commit) and of the snapshot files it writes.

use serde::{Deserialize, Serialize};

use concord::{Message, MessageBody};

/// Counted for every message, whatever it carries: sender, receiver, term
/// and the kind of message.
pub const MESSAGE_OVERHEAD_BYTES: u64 = 32;

/// The size of `message` under the byte model (see the module docs).
pub fn message_bytes(message: &Message) -> u64 {
    let word = 8;
    let body = match &message.body {
        MessageBody::RequestVote { .. } => 3 * word,
        MessageBody::RequestVoteResponse { .. } => word,
        MessageBody::AppendEntries { entries, .. }
        | MessageBody::CandidateCatchUp { entries, .. } => {
            3 * word
                + entries
                    .iter()
                    .map(|entry| entry.size_bytes() as u64)
                    .sum::<u64>()
        }
        MessageBody::AppendEntriesResponse(_) => 3 * word,
        MessageBody::Heartbeat { .. } => 2 * word,
        MessageBody::HeartbeatResponse { .. } => word,
        MessageBody::ReadIndexRequest { .. } => word,
        MessageBody::ReadIndexResponse { .. } => 2 * word,
        MessageBody::TimeoutNow => 0,
        MessageBody::RecoveryQuery { .. } => word,
        MessageBody::RecoveryReport(report) => 6 * word + report.membership.len_bytes() as u64,
        MessageBody::AcknowledgedEntryLost { .. } => 2 * word,
        MessageBody::InstallSnapshot(chunk) => {
            let members = chunk.membership.voters.len() + chunk.membership.learners.len();
            5 * word + members as u64 * word + chunk.data.len() as u64
        }
        MessageBody::InstallSnapshotResponse { .. } => 3 * word,
        MessageBody::Removed { .. } => 2 * word,
        MessageBody::CommitNotice { .. } => 3 * word,
    };
    MESSAGE_OVERHEAD_BYTES + body
}

/// Counters of what a cluster spent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cost {
    /// Messages the nodes handed the network (lost ones included: the
    /// sender paid for them).
    pub messages: u64,
    /// Their bytes, under the byte model.
    pub bytes: u64,
    /// Syncs the hosts started (log and snapshot files).
    pub fsyncs: u64,
    /// `Node::step` calls.
    pub node_steps: u64,
}

impl Cost {
    /// The counters, named, in a fixed order.
    pub fn counters(&self) -> [(&'static str, u64); 4] {
        [
            ("messages", self.messages),
            ("bytes", self.bytes),
            ("fsyncs", self.fsyncs),
            ("node_steps", self.node_steps),
        ]
    }

    /// `self - earlier`, counter by counter.
    pub fn since(&self, earlier: &Cost) -> Cost {
        Cost {
            messages: self.messages - earlier.messages,
            bytes: self.bytes - earlier.bytes,
            fsyncs: self.fsyncs - earlier.fsyncs,
            node_steps: self.node_steps - earlier.node_steps,
        }
    }

    /// Adds `other`, counter by counter.
    pub fn add(&mut self, other: &Cost) {
        self.messages += other.messages;
        self.bytes += other.bytes;
        self.fsyncs += other.fsyncs;
        self.node_steps += other.node_steps;
    }
}

/// The cost of one run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Performance {
    /// Entries committed (the highest committed index).
    pub committed: u64,
    /// Spent over the whole run.
    pub total: Cost,
    /// Spent in the quiet period after the heal, if the run had one.
    pub idle: Cost,
    /// Length of that quiet period, nanoseconds of simulated time (0: the
    /// run had none).
    pub idle_ns: u64,
}

impl Performance {
    /// `total`'s counters per committed entry (0 without one).
    pub fn per_entry(&self) -> [(&'static str, f64); 4] {
        let committed = self.committed;
        self.total.counters().map(|(name, count)| {
            let ratio = if committed == 0 {
                0.0
            } else {
                count as f64 / committed as f64
            };
            (name, ratio)
        })
    }

    /// `idle`'s counters per simulated second (0 without a quiet period).
    pub fn idle_per_second(&self) -> [(&'static str, f64); 4] {
        let seconds = self.idle_ns as f64 / 1e9;
        self.idle.counters().map(|(name, count)| {
            let rate = if self.idle_ns == 0 {
                0.0
            } else {
                count as f64 / seconds
            };
            (name, rate)
        })
    }

    /// Adds another run's costs (the sum of several runs: their ratios are
    /// ratios of sums).
    pub fn add(&mut self, other: &Performance) {
        self.committed += other.committed;
        self.total.add(&other.total);
        self.idle.add(&other.idle);
        self.idle_ns += other.idle_ns;
    }

    /// One line: the ratios per committed entry, then per idle second.
    pub fn describe(&self) -> String {
        let per_entry: Vec<String> = self
            .per_entry()
            .iter()
            .map(|(name, ratio)| format!("{name} {ratio:.2}"))
            .collect();
        let idle: Vec<String> = self
            .idle_per_second()
            .iter()
            .map(|(name, rate)| format!("{name} {rate:.1}"))
            .collect();
        format!(
            "{} entries: per entry {}; idle ({:.1} s) per second {}",
            self.committed,
            per_entry.join(", "),
            self.idle_ns as f64 / 1e9,
            idle.join(", ")
        )
    }
}

/// One seed's cost, in [`PerformanceJson`] and the baseline file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeedPerformance {
    /// The seed.
    pub seed: u64,
    /// Its cost.
    pub performance: Performance,
}

/// The costs of a sweep (`run --performance --json`): per seed, and the
/// total over them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PerformanceJson {
    /// Each seed's cost, in seed order.
    pub seeds: Vec<SeedPerformance>,
    /// Their sum.
    pub total: Performance,
    /// The total's counters per committed entry.
    pub per_entry: Vec<(String, f64)>,
    /// The total's idle counters per simulated second.
    pub idle_per_second: Vec<(String, f64)>,
}

impl PerformanceJson {
    /// The summary of `seeds` (sorted by seed here).
    pub fn new(mut seeds: Vec<SeedPerformance>) -> PerformanceJson {
        seeds.sort_by_key(|seed| seed.seed);
        let mut total = Performance::default();
        for seed in &seeds {
            total.add(&seed.performance);
        }
        PerformanceJson {
            per_entry: named(total.per_entry()),
            idle_per_second: named(total.idle_per_second()),
            seeds,
            total,
        }
    }
}

fn named(ratios: [(&'static str, f64); 4]) -> Vec<(String, f64)> {
    ratios
        .iter()
        .map(|(name, ratio)| (name.to_string(), *ratio))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use concord::{Entry, EntryPayload, LogPosition};

    #[test]
    fn bytes_follow_the_entries_carried() {
        let heartbeat = Message {
            from: 1,
            to: 2,
            term: 3,
            progress_id: 0,
            body: MessageBody::Heartbeat {
                commit: 4,
                read_round: 5,
            },
        };
        assert_eq!(message_bytes(&heartbeat), MESSAGE_OVERHEAD_BYTES + 16);
        let entry = Entry {
            term: 3,
            index: 5,
            payload: EntryPayload::Command(bytes::Bytes::from_static(b"0123456789")),
        };
        let append = |entries: Vec<Entry>| Message {
            from: 1,
            to: 2,
            term: 3,
            progress_id: 0,
            body: MessageBody::AppendEntries {
                prev: LogPosition::new(4, 3),
                entries: entries.into(),
                leader_commit: 4,
            },
        };
        let one = message_bytes(&append(vec![entry.clone()]));
        let two = message_bytes(&append(vec![entry.clone(), entry.clone()]));
        assert_eq!(two - one, entry.size_bytes() as u64);
        assert_eq!(one, MESSAGE_OVERHEAD_BYTES + 24 + 24 + 10);
    }

    #[test]
    fn ratios_divide_by_entries_and_seconds() {
        let run = Performance {
            committed: 10,
            total: Cost {
                messages: 50,
                bytes: 5_000,
                fsyncs: 20,
                node_steps: 200,
            },
            idle: Cost {
                messages: 30,
                bytes: 900,
                fsyncs: 0,
                node_steps: 60,
            },
            idle_ns: 500_000_000,
        };
        assert_eq!(run.per_entry()[0], ("messages", 5.0));
        assert_eq!(run.per_entry()[2], ("fsyncs", 2.0));
        assert_eq!(run.idle_per_second()[0], ("messages", 60.0));
        assert_eq!(run.idle_per_second()[3], ("node_steps", 120.0));
        let mut sum = run;
        sum.add(&run);
        assert_eq!(sum.per_entry(), run.per_entry(), "ratios of sums");
        assert_eq!(Performance::default().per_entry()[1], ("bytes", 0.0));
    }
}
