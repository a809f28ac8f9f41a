//! What the multi-group layer and the core spend per write when writes
//! come one per group against many per group, with no runtime around
//! them: three nodes in memory, driven in one thread, 1,024 groups led
//! by the three nodes in turn (as `multi_group_writes` leads them). One
//! iteration is one round: 64 groups each propose one command (`64x1`),
//! or one group proposes 64 (`1x64`), and the cluster runs until every
//! node applied them: each node's frames go through the wire encoding
//! ([`concord::codec`]) to the peer, every persist batch is reported
//! durable at once, every apply reported applied. Criterion times a
//! round; the steps and frames per write are printed first.
//!
//! ```text
//! cargo bench -p concord-bench --bench multi_group_rounds
//! ```
//!
//! On a shared machine count instructions instead of timing, one
//! workload at a time (`CONCORD_BENCH_ROUNDS_ONLY` runs 200 rounds of it
//! and nothing else; only the rounds are counted):
//!
//! ```text
//! CONCORD_BENCH_ROUNDS_ONLY=64x1 valgrind --tool=callgrind --toggle-collect='*run_rounds*' \
//!   target/release/deps/multi_group_rounds-* --bench
//! ```

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion};

use concord::multi::{Frame, GroupId, MultiAction, MultiInput, MultiNode};
use concord::{Action, Input, NodeId, Role};

mod in_memory;
use in_memory::multi_nodes;

const NODES: u64 = 3;
const GROUPS: u64 = 1024;
/// Writes per round in both workloads.
const WRITES_PER_ROUND: usize = 64;
const COMMAND_BYTES: usize = 64;
const FRAME_BYTES_MAX: usize = 64 << 20;

struct Cluster {
    nodes: Vec<MultiNode>,
    /// Each group's leader, by group id.
    leaders: Vec<NodeId>,
    frames: u64,
    /// The encoding buffer, kept from frame to frame (as a connection's).
    wire: Vec<u8>,
}

impl Cluster {
    fn new() -> Cluster {
        let nodes = multi_nodes(NODES, GROUPS, Some(4));
        let mut cluster = Cluster {
            nodes,
            leaders: Vec::new(),
            frames: 0,
            wire: Vec::new(),
        };
        // Every group led (and asleep) before anything is measured.
        for _ in 0..400 {
            cluster.run(vec![
                (0, MultiInput::Tick),
                (1, MultiInput::Tick),
                (2, MultiInput::Tick),
            ]);
        }
        cluster.leaders = (0..=GROUPS)
            .map(|group| {
                cluster
                    .nodes
                    .iter()
                    .find(|node| node.group(group).is_some_and(|n| n.role() == Role::Leader))
                    .map_or(0, |node| node.id())
            })
            .collect();
        assert!(
            cluster.leaders[1..].iter().all(|&leader| leader != 0),
            "every group has a leader after 400 ticks"
        );
        cluster
    }

    /// Feeds `inputs` and everything they set off until every node is
    /// quiet.
    fn run(&mut self, inputs: Vec<(usize, MultiInput)>) {
        let mut work: VecDeque<(usize, MultiInput)> = inputs.into();
        let mut out = Vec::new();
        loop {
            while let Some((at, input)) = work.pop_front() {
                self.nodes[at].step(input, &mut out).expect("valid input");
                self.execute(at, &mut out, &mut work);
            }
            for at in 0..self.nodes.len() {
                self.nodes[at].flush(&mut out);
                self.execute(at, &mut out, &mut work);
            }
            if work.is_empty() {
                return;
            }
        }
    }

    fn execute(
        &mut self,
        at: usize,
        out: &mut Vec<MultiAction>,
        work: &mut VecDeque<(usize, MultiInput)>,
    ) {
        for action in out.drain(..) {
            match action {
                MultiAction::Send(frame) => {
                    self.frames += 1;
                    // Through the wire encoding, as a peer receives it.
                    self.wire.clear();
                    concord::codec::encode_into(&frame, &mut self.wire).expect("encodes");
                    let frame: Frame =
                        concord::codec::decode(&self.wire, FRAME_BYTES_MAX).expect("decodes");
                    work.push_back(((frame.to - 1) as usize, MultiInput::Receive(frame)));
                }
                MultiAction::Persist(batch) => {
                    work.push_back((at, MultiInput::Persisted(batch.id)));
                }
                MultiAction::Group {
                    group,
                    action: Action::Apply { entries },
                } => {
                    let last = entries.last().expect("non-empty").index;
                    let input = Input::Applied(last);
                    work.push_back((at, MultiInput::Group { group, input }));
                }
                MultiAction::Group { .. } => {}
            }
        }
    }

    /// One round: `per_group` commands proposed on each group of
    /// `groups` at its leader, then run until quiet.
    fn round(&mut self, groups: &[GroupId], per_group: usize) {
        let command = Bytes::from(vec![b'x'; COMMAND_BYTES]);
        let inputs = groups
            .iter()
            .map(|&group| {
                let at = (self.leaders[group as usize] - 1) as usize;
                let input = Input::ProposeBatch(vec![command.clone(); per_group]);
                (at, MultiInput::Group { group, input })
            })
            .collect();
        self.run(inputs);
    }

    fn steps(&self) -> u64 {
        self.nodes.iter().map(|node| node.stats().node_steps).sum()
    }
}

/// The two workloads: active groups, and commands per group per round.
fn workloads() -> [(&'static str, Vec<GroupId>, usize); 2] {
    let stride = GROUPS / WRITES_PER_ROUND as u64;
    let spread: Vec<GroupId> = (0..WRITES_PER_ROUND as u64)
        .map(|k| 1 + k * stride)
        .collect();
    [("64x1", spread, 1), ("1x64", vec![1], WRITES_PER_ROUND)]
}

#[inline(never)]
fn run_rounds(cluster: &mut Cluster, groups: &[GroupId], per_group: usize, rounds: usize) {
    for _ in 0..rounds {
        cluster.round(groups, per_group);
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a plain `cargo test --benches` run
    // passes nothing and expects no work.
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    if let Ok(only) = std::env::var("CONCORD_BENCH_ROUNDS_ONLY") {
        let Some((name, groups, per_group)) =
            workloads().into_iter().find(|(name, ..)| *name == only)
        else {
            eprintln!("CONCORD_BENCH_ROUNDS_ONLY={only}: expected 64x1 or 1x64");
            std::process::exit(2);
        };
        let mut cluster = Cluster::new();
        run_rounds(&mut cluster, &groups, per_group, 200);
        println!("{name}: 200 rounds of {WRITES_PER_ROUND} writes");
        return;
    }
    let mut criterion = Criterion::default()
        .configure_from_args()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    let mut bench = criterion.benchmark_group("multi_group_rounds");
    for (name, groups, per_group) in workloads() {
        let mut cluster = Cluster::new();
        let (steps, frames) = (cluster.steps(), cluster.frames);
        run_rounds(&mut cluster, &groups, per_group, 100);
        let writes = (100 * WRITES_PER_ROUND) as f64;
        println!(
            "{name}: {:.2} group steps and {:.3} frames per write",
            (cluster.steps() - steps) as f64 / writes,
            (cluster.frames - frames) as f64 / writes,
        );
        bench.bench_function(BenchmarkId::new("round", name), |b| {
            b.iter(|| cluster.round(&groups, per_group))
        });
    }
    bench.finish();
}
