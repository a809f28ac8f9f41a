//! Batching across groups: one flush hands out one frame per peer and one
//! persist batch carrying every group's messages and writes, and one
//! durability report reaches exactly the groups whose writes the reported
//! batches held.

mod multi_driver;

use bytes::Bytes;
use concord::multi::{GroupId, MultiAction, MultiInput, PersistBatch};
use concord::{Input, NodeId};
use multi_driver::{Bugs, Driver, Options};

/// A quiesced cluster of 3 nodes and `groups` groups, and the node that
/// leads the most of them with the groups it leads.
fn quiesced(groups: u64, bugs: Bugs) -> (Driver, NodeId, Vec<GroupId>) {
    let options = Options {
        bugs,
        ..Options::quiet(3, groups)
    };
    let mut driver = Driver::new(options, 4);
    assert!(driver.run_until_asleep(400).is_some());
    let mut best = (0, Vec::new());
    for id in 1..=3 {
        let led: Vec<GroupId> = driver
            .members
            .keys()
            .copied()
            .filter(|group| driver.leader_of(*group) == Some(id))
            .collect();
        if led.len() > best.1.len() {
            best = (id, led);
        }
    }
    (driver, best.0, best.1)
}

fn propose(driver: &mut Driver, id: NodeId, group: GroupId, out: &mut Vec<MultiAction>) {
    let multi = driver.hosts.get_mut(&id).unwrap().multi.as_mut().unwrap();
    let input = Input::Propose(Bytes::from_static(b"x"));
    multi.step(MultiInput::Group { group, input }, out).unwrap();
}

fn flush(driver: &mut Driver, id: NodeId, out: &mut Vec<MultiAction>) {
    driver
        .hosts
        .get_mut(&id)
        .unwrap()
        .multi
        .as_mut()
        .unwrap()
        .flush(out);
}

#[test]
fn one_flush_sends_one_frame_per_peer_and_one_persist_batch_for_every_group() {
    let (mut driver, leader, led) = quiesced(30, Bugs::default());
    assert!(
        led.len() >= 5,
        "node {leader} leads only {} groups",
        led.len()
    );
    let mut out = Vec::new();
    for &group in &led {
        propose(&mut driver, leader, group, &mut out);
    }
    // Messages and writes wait for the flush.
    assert!(out
        .iter()
        .all(|action| !matches!(action, MultiAction::Send(_) | MultiAction::Persist(_))));
    out.clear();
    flush(&mut driver, leader, &mut out);
    let mut frames_to = Vec::new();
    let mut batches = Vec::new();
    for action in &out {
        match action {
            MultiAction::Send(frame) => {
                frames_to.push(frame.to);
                let mut groups: Vec<GroupId> = frame.messages.iter().map(|m| m.group).collect();
                groups.dedup();
                assert_eq!(
                    groups, led,
                    "frame to {} lacks some group's appends",
                    frame.to
                );
            }
            MultiAction::Persist(batch) => batches.push(batch.clone()),
            MultiAction::Group { .. } => {}
        }
    }
    assert_eq!(
        frames_to,
        vec![1, 2, 3]
            .into_iter()
            .filter(|id| *id != leader)
            .collect::<Vec<_>>()
    );
    assert_eq!(batches.len(), 1, "one persist batch per flush");
    let groups: Vec<GroupId> = batches[0].writes.iter().map(|write| write.group).collect();
    assert_eq!(groups, led);
}

/// Group A's write goes in batch 1, group B's in batch 2; batch 1 is
/// reported durable. Returns whether B was told its write is durable.
fn second_group_told_durable_by_first_batch(bugs: Bugs) -> bool {
    let (mut driver, leader, led) = quiesced(30, bugs);
    let (a, b) = (led[0], led[1]);
    let mut batches: Vec<PersistBatch> = Vec::new();
    let mut out = Vec::new();
    for group in [a, b] {
        propose(&mut driver, leader, group, &mut out);
        flush(&mut driver, leader, &mut out);
        for action in out.drain(..) {
            if let MultiAction::Persist(batch) = action {
                batches.push(batch);
            }
        }
    }
    assert_eq!(batches.len(), 2);
    assert!(batches[0].writes.iter().all(|write| write.group == a));
    assert!(batches[1].writes.iter().all(|write| write.group == b));
    let multi = driver
        .hosts
        .get_mut(&leader)
        .unwrap()
        .multi
        .as_mut()
        .unwrap();
    let last_b = multi.group(b).unwrap().last_index();
    let last_a = multi.group(a).unwrap().last_index();
    multi
        .step(MultiInput::Persisted(batches[0].id), &mut out)
        .unwrap();
    assert_eq!(multi.group(a).unwrap().persisted_index(), last_a);
    let early = multi.group(b).unwrap().persisted_index() == last_b;
    multi
        .step(MultiInput::Persisted(batches[1].id), &mut out)
        .unwrap();
    assert_eq!(multi.group(b).unwrap().persisted_index(), last_b);
    early
}

#[test]
fn a_durability_report_reaches_only_the_groups_whose_writes_it_covered() {
    assert!(!second_group_told_durable_by_first_batch(Bugs::default()));
}

/// The planted mistake is caught by the rule's test (one scenario, no
/// seeds needed).
#[cfg(feature = "planted-bugs")]
#[test]
fn planted_ack_of_one_groups_entries_on_another_groups_fsync_is_caught() {
    let bugs = Bugs {
        persist_acks_later_batches: true,
        ..Bugs::default()
    };
    assert!(second_group_told_durable_by_first_batch(bugs));
}
