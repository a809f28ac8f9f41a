//! The orders service as three real `concord-node --service orders`
//! processes on loopback, driven only through its command-line client:
//! two clients place orders for one customer while a third reads the last
//! order number at any server (follower reads), and the leader is
//! SIGKILLed part way. Checked on the results: no number twice, numbers
//! increase in real-time order, no gap (every number up to the last is
//! accounted for by an acknowledged or unknown order), and reads never go
//! back behind an acknowledged order.

#[path = "common/processes.rs"]
mod processes;
#[path = "common/services.rs"]
mod services;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use services::{
    assert_unique_and_increasing, cli, spawn_clients, CliTarget, Cluster, Numbered, Outcome,
};

const CLUSTER: &str = "real-orders-test";
const CUSTOMER: &str = "acme";
const ORDERS_PER_CLIENT: usize = 15;
const KILL_AFTER_ORDERS: usize = 8;

/// Places orders; returns the acknowledged ones and how many ended
/// unknown.
fn place(target: &CliTarget, placed: &AtomicUsize) -> (Vec<Numbered>, usize) {
    let mut acked = Vec::new();
    let mut unknown = 0;
    for _ in 0..ORDERS_PER_CLIENT {
        let call = Instant::now();
        let outcome = cli(target, &["place-order", CUSTOMER]);
        let ret = Instant::now();
        match outcome {
            Outcome::Ok(text) => acked.push(Numbered {
                call,
                ret,
                number: text.trim().parse().expect("an order number"),
            }),
            Outcome::Unknown => unknown += 1,
            Outcome::NotApplied => {}
        }
        placed.fetch_add(1, Ordering::SeqCst);
    }
    (acked, unknown)
}

#[test]
fn order_numbers_stay_gap_free_across_a_leader_kill() {
    let mut cluster = Cluster::started("orders", CLUSTER);
    let target = cluster.cli_target();
    let placed = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let placers = spawn_clients(2, &target, &placed, place);
    let reader = {
        let (target, done) = (target.clone(), done.clone());
        std::thread::spawn(move || {
            let mut reads = Vec::new();
            while !done.load(Ordering::SeqCst) {
                let call = Instant::now();
                if let Outcome::Ok(text) = cli(&target, &["last-order", CUSTOMER]) {
                    reads.push(Numbered {
                        call,
                        ret: Instant::now(),
                        number: text.trim().parse().expect("an order number"),
                    });
                }
            }
            reads
        })
    };

    let (leader, killed_at) = cluster.kill_leader_after(&placed, KILL_AFTER_ORDERS, &placers);

    let mut acked = Vec::new();
    let mut unknown = 0;
    for placer in placers {
        let (mine, my_unknown) = placer.join().expect("placing client");
        acked.extend(mine);
        unknown += my_unknown;
    }
    done.store(true, Ordering::SeqCst);
    let reads = reader.join().expect("reading client");

    let after_kill = acked.iter().filter(|t| t.call > killed_at).count();
    assert!(
        after_kill >= ORDERS_PER_CLIENT / 2,
        "only {after_kill} orders acknowledged after the leader was killed"
    );
    assert_unique_and_increasing(&mut acked);
    let highest = acked.last().expect("orders acknowledged").number;
    assert!(
        highest as usize <= acked.len() + unknown,
        "gap: highest number {highest} but only {} acknowledged and {unknown} unknown orders",
        acked.len()
    );
    for read in &reads {
        let floor = acked
            .iter()
            .filter(|t| t.ret < read.call)
            .map(|t| t.number)
            .max()
            .unwrap_or(0);
        assert!(
            read.number >= floor,
            "a read at any server returned {} after order {floor} was acknowledged",
            read.number
        );
    }
    let Outcome::Ok(text) = cli(&target, &["last-order", CUSTOMER]) else {
        panic!("the final read failed");
    };
    let last: u64 = text.trim().parse().expect("an order number");
    assert!(last >= highest && last as usize <= acked.len() + unknown);
    eprintln!(
        "leader {leader} killed; {} orders acknowledged ({after_kill} after the kill), {unknown} unknown, {} reads at any server, last order {last}",
        acked.len(),
        reads.len()
    );
}

/// `--groups 4`: customers are sharded; each customer's numbers are
/// 1, 2, 3, ... whatever the group, read back at its group.
#[test]
fn orders_on_four_groups_number_each_customer_from_one() {
    let map = concord_services::sharded_kv::ShardMap::new(4).unwrap();
    let mut customers: Vec<String> = Vec::new();
    let mut groups = std::collections::BTreeSet::new();
    for i in 0.. {
        let customer = format!("customer-{i}");
        if groups.insert(map.group_of(customer.as_bytes())) {
            customers.push(customer);
        }
        if groups.len() == 3 {
            break;
        }
    }
    let probes: Vec<[&str; 2]> = customers
        .iter()
        .map(|c| ["last-order", c.as_str()])
        .collect();
    let probes: Vec<&[&str]> = probes.iter().map(|p| &p[..]).collect();
    let cluster =
        services::Cluster::started_with_groups("orders", "real-orders-groups", 4, &probes);
    let target = cluster.cli_target();
    for round in 1..=4u64 {
        for customer in &customers {
            match services::cli(&target, &["place-order", customer]) {
                Outcome::Ok(text) => assert_eq!(text.trim(), round.to_string(), "{customer}"),
                other => panic!("place-order {customer}: {other:?}"),
            }
        }
    }
    for customer in &customers {
        match services::cli(&target, &["--read", "index", "last-order", customer]) {
            Outcome::Ok(text) => assert_eq!(text.trim(), "4", "{customer}"),
            other => panic!("last-order {customer}: {other:?}"),
        }
    }
}
