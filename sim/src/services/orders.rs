//! The orders service's workload and invariants.
//!
//! Clients place orders for a few customers (`c0`..) and read their last
//! order numbers (on whichever read path the seed draws, follower reads
//! included). Checks at the end of a run, per customer:
//!
//! * **no repeat**: no number is handed out twice;
//! * **increasing**: an order placed after another returned gets a larger
//!   number;
//! * **gap-free**: an order's number is at most the number of orders
//!   placed (not known to have failed) before it returned, so no number
//!   was skipped;
//! * **reads**: `last_order` returns at least the number of every order
//!   that returned before the read was called, and at most the number of
//!   orders called before the read returned.
//! * a valid request is never refused.

use std::collections::BTreeMap;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use concord_services::orders::{Orders, OrdersRequest, OrdersResponse};

use super::workload::{Answer, Call, Completed, Next, ServiceWorkload, Violations};
use crate::workload::WorkloadReport;

/// Customers (`c0`..).
pub const CUSTOMERS: usize = 4;

/// A completed call: (call, return, number, client).
type Seen = (u64, u64, u64, usize);

#[derive(Clone, Debug, Default)]
struct Customer {
    /// Completed place_orders.
    placed: Vec<Seen>,
    /// Call times of every place_order not known to have failed.
    may_apply: Vec<u64>,
    /// Completed last_orders.
    reads: Vec<Seen>,
}

/// Clients of the orders service; checks its invariants at the end.
#[derive(Clone, Debug, Default)]
pub struct OrdersWorkload {
    customers: BTreeMap<String, Customer>,
    violations: Violations,
}

impl OrdersWorkload {
    /// A workload.
    pub fn new() -> Self {
        Self::default()
    }

    /// Orders placed and acknowledged.
    pub fn orders_placed(&self) -> usize {
        self.customers.values().map(|c| c.placed.len()).sum()
    }

    fn check(&mut self) {
        let mut found = Vec::new();
        for (name, customer) in &self.customers {
            let mut calls = customer.may_apply.clone();
            calls.sort_unstable();
            // Orders that may have been applied by time `t` (called before).
            let called_before = |t: u64| calls.partition_point(|&call| call < t) as u64;
            let mut by_number: BTreeMap<u64, &Seen> = BTreeMap::new();
            for placed in &customer.placed {
                let &(call, ret, number, client) = placed;
                if let Some(other) = by_number.insert(number, placed) {
                    found.push(format!(
                        "{name}'s order number {number} handed out twice: to client {} (returned at {} ns) and to client {client} (returned at {ret} ns)",
                        other.3, other.1
                    ));
                }
                let possible = called_before(ret);
                if number == 0 || number > possible {
                    found.push(format!(
                        "{name}'s order numbers have a gap: client {client}'s order (called at {call} ns, returned at {ret} ns) got number {number}, but only {possible} orders for {name} can have been placed by then"
                    ));
                }
            }
            let mut by_return = customer.placed.clone();
            by_return.sort_by_key(|placed| placed.1);
            let highest_before = |t: u64| {
                by_return
                    .iter()
                    .take_while(|placed| placed.1 < t)
                    .map(|placed| placed.2)
                    .max()
            };
            for &(call, _, number, client) in &customer.placed {
                if let Some(best) = highest_before(call) {
                    if number <= best {
                        found.push(format!(
                            "{name}'s order numbers went back: client {client}'s order called at {call} ns got {number} after an order numbered {best} had returned"
                        ));
                    }
                }
            }
            for &(call, ret, seen, client) in &customer.reads {
                let floor = highest_before(call).unwrap_or(0);
                let ceiling = called_before(ret);
                if seen < floor || seen > ceiling {
                    found.push(format!(
                        "client {client}'s last_order({name}) (called at {call} ns, returned at {ret} ns) read {seen}, outside [{floor}, {ceiling}]"
                    ));
                }
            }
        }
        for message in found {
            self.violations.push(message);
        }
    }
}

impl ServiceWorkload for OrdersWorkload {
    type Service = Orders;

    type Pending = ();

    fn next_request(&mut self, call: Call, rng: &mut ChaCha8Rng) -> Next<Self> {
        let now_ns = call.call_ns;
        let customer = format!("c{}", rng.gen_range(0..CUSTOMERS));
        let request = if rng.gen_range(0..10u32) < 6 {
            self.customers
                .entry(customer.clone())
                .or_default()
                .may_apply
                .push(now_ns);
            OrdersRequest::PlaceOrder { customer }
        } else {
            OrdersRequest::LastOrder { customer }
        };
        Some((request, ()))
    }

    fn completed(&mut self, done: Completed<Self>) {
        let (call, now_ns, request, answer) =
            (done.call, done.return_ns, done.request, done.answer);
        let (client, call_ns) = (call.client, call.call_ns);
        let customer = self
            .customers
            .entry(request.customer().to_string())
            .or_default();
        match (&request, answer) {
            (OrdersRequest::PlaceOrder { .. }, Answer::Done(OrdersResponse::Placed(number))) => {
                customer.placed.push((call_ns, now_ns, number, client));
            }
            (OrdersRequest::LastOrder { .. }, Answer::Done(OrdersResponse::Last(number))) => {
                customer.reads.push((call_ns, now_ns, number, client));
            }
            (OrdersRequest::PlaceOrder { .. }, Answer::Failed) => {
                // Definitely not applied: it cannot explain a number.
                if let Some(position) = customer.may_apply.iter().position(|&call| call == call_ns)
                {
                    customer.may_apply.swap_remove(position);
                }
            }
            (_, Answer::Failed | Answer::Unknown) => {}
            (request, other) => self.violations.unexpected(call, request, &other),
        }
    }

    fn describe(&self, request: &OrdersRequest) -> String {
        match request {
            OrdersRequest::PlaceOrder { customer } => format!("place_order {customer}"),
            OrdersRequest::LastOrder { customer } => format!("last_order {customer}"),
        }
    }

    fn finish(&mut self) -> WorkloadReport {
        let operations_checked = self
            .customers
            .values()
            .map(|c| (c.placed.len() + c.reads.len()) as u64)
            .sum();
        self.check();
        WorkloadReport {
            operations_checked,
            failure: self.violations.failure(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(placed: &[Seen], may_apply: &[u64], reads: &[Seen]) -> OrdersWorkload {
        let mut workload = OrdersWorkload::new();
        workload.customers.insert(
            "c0".into(),
            Customer {
                placed: placed.to_vec(),
                may_apply: may_apply.to_vec(),
                reads: reads.to_vec(),
            },
        );
        workload
    }

    #[test]
    fn correct_histories_pass() {
        // Two concurrent orders, then a third; an unknown one (called at
        // 35) may explain number 4; reads within bounds.
        let mut ok = workload(
            &[(0, 10, 2, 0), (1, 12, 1, 0), (20, 30, 3, 0), (36, 40, 5, 0)],
            &[0, 1, 20, 35, 36],
            &[(31, 33, 3, 0), (37, 50, 4, 0)],
        );
        assert_eq!(ok.finish().failure, None);
    }

    #[test]
    fn gaps_repeats_regressions_and_stale_reads_are_caught() {
        let gap = workload(&[(0, 10, 2, 0)], &[0], &[])
            .clone()
            .finish()
            .failure;
        assert!(gap.unwrap().contains("gap"));
        let repeat = workload(&[(0, 10, 1, 0), (0, 10, 1, 0)], &[0, 0], &[])
            .finish()
            .failure;
        assert!(repeat.unwrap().contains("twice"));
        // Order 3 returned, then a later order got 2 (no repeat, no gap:
        // an unknown order accounts for the missing number).
        let back = workload(&[(0, 10, 3, 0), (11, 20, 2, 0)], &[0, 0, 0, 11], &[])
            .finish()
            .failure;
        assert!(back.unwrap().contains("went back"));
        let stale = workload(&[(0, 10, 1, 0)], &[0], &[(11, 12, 0, 0)])
            .finish()
            .failure;
        assert!(stale.unwrap().contains("outside"));
    }
}
