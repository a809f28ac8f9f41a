//! Flow control: the bounded in-flight window per follower, pipelining
//! while replicating, batching by entries and bytes, probing one message
//! at a time, and heartbeats reopening a window whose answers were lost.
mod common;

use bytes::Bytes;
use common::*;
use concord::{Config, Entry, Input, Message, MessageBody, NodeId, ProgressState, Role};

fn cluster(configure: impl Fn(&mut Config)) -> Cluster {
    let mut c = Cluster::configured(&[1, 2, 3], configure);
    c.elect(1);
    c.tick_all(2);
    for id in [2, 3] {
        assert_eq!(
            c.node(1).progress(id).unwrap().state,
            ProgressState::Replicate
        );
    }
    c
}

/// [`cluster`] whose window to each follower holds `inflight_messages_max`
/// AppendEntries of at most `append_entries_max` entries each.
fn windowed(inflight_messages_max: usize, append_entries_max: usize) -> Cluster {
    cluster(|c| {
        c.inflight_messages_max = inflight_messages_max;
        c.append_entries_max = append_entries_max;
    })
}

/// How many AppendEntries node 1 sent to `to` since the trace began.
fn appends_traced_to(c: &Cluster, to: NodeId) -> usize {
    c.traced_sends(1)
        .iter()
        .filter(|m| m.to == to && matches!(m.body, MessageBody::AppendEntries { .. }))
        .count()
}

/// The entries of each AppendEntries queued for `to`, in order.
fn batches_to(network: &[Message], to: u64) -> Vec<Vec<Entry>> {
    network
        .iter()
        .filter(|m| m.to == to)
        .filter_map(|m| match &m.body {
            MessageBody::AppendEntries { entries, .. } if !entries.is_empty() => {
                Some(entries.to_vec())
            }
            _ => None,
        })
        .collect()
}

fn queued(c: &Cluster) -> Vec<Message> {
    c.network.iter().cloned().collect()
}

/// With acknowledgements withheld, the leader never has more than
/// `inflight_messages_max` AppendEntries outstanding to one follower, however
/// much is proposed and however often it ticks — and the bound holds in
/// seeded runs with faults too.
#[test]
fn inflight_appends_never_exceed_the_window() {
    let mut c = windowed(3, 1);
    c.propose_numbered(1, "c", 20);
    for _ in 0..5 {
        c.tick(1);
    }
    for id in [2, 3] {
        assert_eq!(batches_to(&queued(&c), id).len(), 3, "to node {id}");
        assert_eq!(c.node(1).progress(id).unwrap().inflight_messages, 3);
    }

    for seed in 0..10 {
        let mut chaos = Chaos::new(seed, &[1, 2, 3, 4, 5], |c| {
            c.inflight_messages_max = 2;
            c.append_entries_max = 1;
        });
        for _ in 0..1000 {
            chaos.step();
            for node in chaos.cluster.nodes.values() {
                for (id, progress) in node.progress_all() {
                    assert!(
                        progress.inflight_messages <= 2,
                        "seed {seed}: {id}: {progress:?}"
                    );
                }
            }
        }
    }
}

/// While replicating, the leader streams several batches without waiting
/// for the first to be answered: 10 entries in batches of 2 fill a window
/// of 4 messages at once, covering consecutive ranges.
#[test]
fn pipelining_sends_several_batches_before_any_ack() {
    let mut c = windowed(4, 2);
    let first = c.node(1).last_index() + 1;
    let commands: Vec<Bytes> = (0..10).map(|i| Bytes::from(format!("c{i}"))).collect();
    c.step(1, Input::ProposeBatch(commands));
    let network = queued(&c);
    assert!(network
        .iter()
        .all(|m| !matches!(m.body, MessageBody::AppendEntriesResponse(_))));
    let batches = batches_to(&network, 2);
    let ranges: Vec<(u64, u64)> = batches
        .iter()
        .map(|b| (b[0].index, b.last().unwrap().index))
        .collect();
    let expected: Vec<(u64, u64)> = (0..4).map(|k| (first + 2 * k, first + 2 * k + 1)).collect();
    assert_eq!(ranges, expected);
    c.tick_all(4);
    assert_eq!(c.log(2), c.log(1));
    assert_eq!(c.applied_strings(2).len(), 10);
}

/// Splits `sizes` greedily the way the batching rule reads: at most
/// `count_max` entries and `bytes_max` bytes (counted by
/// `Entry::size_bytes`) per message, but always at least one entry.
fn expected_batch_lengths(sizes: &[usize], count_max: usize, bytes_max: usize) -> Vec<usize> {
    let mut lengths = Vec::new();
    let mut i = 0;
    while i < sizes.len() {
        let mut n = 1;
        let mut bytes = sizes[i];
        while i + n < sizes.len() && n < count_max && bytes + sizes[i + n] <= bytes_max {
            bytes += sizes[i + n];
            n += 1;
        }
        lengths.push(n);
        i += n;
    }
    lengths
}

/// Batches respect `append_entries_max` and `append_bytes_max`, but an
/// entry larger than the byte limit still goes out, alone.
#[test]
fn batches_respect_entry_and_byte_limits() {
    // (entries max, bytes max, payload sizes)
    let cases: [(usize, usize, Vec<usize>); 4] = [
        (4, 1 << 20, vec![10; 20]),
        (100, 300, vec![90; 10]),
        (100, 300, vec![1000, 1000, 1000]),
        (3, 400, vec![10, 300, 10, 10, 10, 500, 10]),
    ];
    for (count_max, bytes_max, payloads) in cases {
        let mut c = cluster(|c| {
            c.append_entries_max = count_max;
            c.append_bytes_max = bytes_max;
        });
        let commands: Vec<Bytes> = payloads
            .iter()
            .map(|n| Bytes::from(vec![7u8; *n]))
            .collect();
        c.step(1, Input::ProposeBatch(commands));
        let batches = batches_to(&queued(&c), 2);
        let sizes: Vec<usize> = batches.iter().flatten().map(Entry::size_bytes).collect();
        assert_eq!(sizes.len(), payloads.len(), "every entry sent once");
        let lengths: Vec<usize> = batches.iter().map(Vec::len).collect();
        assert_eq!(
            lengths,
            expected_batch_lengths(&sizes, count_max, bytes_max),
            "limits {count_max} entries / {bytes_max} bytes, payloads {payloads:?}"
        );
        for batch in &batches {
            let bytes: usize = batch.iter().map(Entry::size_bytes).sum();
            assert!(batch.len() <= count_max);
            assert!(
                batch.len() == 1 || bytes <= bytes_max,
                "{bytes} bytes in {} entries",
                batch.len()
            );
        }
    }
}

/// A follower whose log position is unknown is probed: one AppendEntries,
/// then nothing until it answers, however much is proposed. Its answer
/// switches it to streaming.
#[test]
fn probe_state_sends_one_message_then_waits() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.isolate(3);
    c.record_trace = true;
    c.elect(1);
    let appends_to_3 = |c: &Cluster| {
        c.traced_sends(1)
            .iter()
            .filter(|m| m.to == 3 && matches!(m.body, MessageBody::AppendEntries { .. }))
            .count()
    };
    assert_eq!(c.node(1).progress(3).unwrap().state, ProgressState::Probe);
    assert_eq!(appends_to_3(&c), 1, "the probe sent on election");
    for i in 0..5 {
        c.propose(1, &format!("c{i}"));
        c.deliver_all();
    }
    assert_eq!(
        appends_to_3(&c),
        1,
        "sent more while a probe is outstanding"
    );
    assert_eq!(c.applied_strings(2).len(), 5, "node 2 streams meanwhile");

    c.heal();
    // The next heartbeat's answer shows node 3 alive: one probe follows.
    let answer = loop {
        c.tick(1);
        let to_3: Vec<Message> = c.network.iter().filter(|m| m.to == 3).cloned().collect();
        c.network.retain(|m| m.to != 3);
        for m in to_3 {
            c.step(3, Input::Receive(m));
        }
        if let Some(at) = c.network.iter().position(|m| m.from == 3) {
            break c.network.remove(at).unwrap();
        }
    };
    assert!(matches!(answer.body, MessageBody::HeartbeatResponse { .. }));
    c.step(1, Input::Receive(answer));
    assert_eq!(appends_to_3(&c), 2, "exactly one new probe");
    c.tick_all(4);
    assert_eq!(c.log(3), c.log(1));
    assert_eq!(
        c.node(1).progress(3).unwrap().state,
        ProgressState::Replicate
    );
}

/// When a follower's answers are lost and its window is full, the leader
/// stops sending to it; the next heartbeat answer frees the window so
/// replication resumes and the follower catches up.
#[test]
fn heartbeat_response_unblocks_a_full_window() {
    let mut c = windowed(2, 1);
    c.propose_numbered(1, "c", 5);
    // Every append to node 2 is lost.
    c.network
        .retain(|m| !(m.to == 2 && matches!(m.body, MessageBody::AppendEntries { .. })));
    c.deliver_all();
    assert_eq!(c.node(1).progress(2).unwrap().inflight_messages, 2);
    let stuck = c.node(2).last_index();
    c.propose(1, "more");
    c.deliver_all();
    assert_eq!(c.node(2).last_index(), stuck, "the full window sent more");
    assert_eq!(c.node(1).role(), Role::Leader);

    // Heartbeat round: node 2 answers, the window reopens.
    let heartbeat = c.configs[&1].heartbeat_interval_ticks;
    for _ in 0..heartbeat {
        c.tick(1);
    }
    c.network.retain(|m| m.to == 2);
    assert!(c
        .network
        .iter()
        .any(|m| matches!(m.body, MessageBody::Heartbeat { .. })));
    c.deliver_one();
    c.deliver_one();
    assert!(
        c.network
            .iter()
            .any(|m| m.to == 2 && matches!(m.body, MessageBody::AppendEntries { .. })),
        "the heartbeat answer did not unblock the window: {:?}",
        c.network
    );
    c.tick_all(6);
    assert_eq!(c.log(2), c.log(1));
    assert_eq!(c.applied_strings(2).len(), 6);
}

/// A follower that rejects a probe at the leader's recorded match index
/// (possible only if its host lied about durability and lost acknowledged
/// entries) is re-probed once per heartbeat, not in an immediate loop.
#[test]
fn probe_rejected_at_match_index_waits_for_heartbeat() {
    let mut c = Cluster::elected(&[1, 2, 3], 1);
    c.propose_numbered(1, "c", 5);
    c.deliver_all();
    let matched = c
        .node(1)
        .progress(3)
        .expect("leader tracks node 3")
        .match_index;
    assert!(matched >= 6);
    // Node 3 comes back with a log that lost entries it acknowledged.
    c.crash(3);
    let mut disk = c.disks[&3].clone();
    disk.entries.truncate(2);
    c.disks.insert(3, disk);
    c.restart(3);
    c.record_trace = true;
    // Any append now makes node 3 reject; count the leader's appends to 3
    // while delivering everything, with no ticks.
    c.propose(1, "after");
    c.deliver_all();
    let appends_to_3 = appends_traced_to(&c, 3);
    assert!(
        appends_to_3 <= 3,
        "leader sent {appends_to_3} appends to node 3 without a tick"
    );
    // Each heartbeat round allows one more probe, so the leader keeps trying.
    c.trace.clear();
    c.tick_all(c.node(1).config().heartbeat_interval_ticks as usize);
    let after_heartbeat = appends_traced_to(&c, 3);
    assert!(
        (1..=3).contains(&after_heartbeat),
        "{after_heartbeat} appends to node 3 after a heartbeat"
    );
}
