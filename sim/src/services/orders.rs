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

use bytes::Bytes;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use concord_services::orders::{OrdersRequest, OrdersResponse};

use crate::workload::{OpResult, Workload, WorkloadReport};

/// Customers (`c0`..).
pub const CUSTOMERS: usize = 4;
/// Violations kept for the report.
const VIOLATIONS_MAX: usize = 8;

/// A completed call: (call, return, number, client).
type Completed = (u64, u64, u64, usize);

#[derive(Clone, Debug, Default)]
struct Customer {
    /// Completed place_orders.
    placed: Vec<Completed>,
    /// Call times of every place_order not known to have failed.
    may_apply: Vec<u64>,
    /// Completed last_orders.
    reads: Vec<Completed>,
}

#[derive(Clone, Debug)]
struct InFlight {
    request: OrdersRequest,
    call_ns: u64,
}

/// Clients of the orders service; checks its invariants at the end.
#[derive(Clone, Debug)]
pub struct OrdersWorkload {
    in_flight: Vec<Option<InFlight>>,
    counters: Vec<u64>,
    customers: BTreeMap<String, Customer>,
    violations: Vec<String>,
}

impl OrdersWorkload {
    /// A workload for `clients` clients.
    pub fn new(clients: usize) -> Self {
        OrdersWorkload {
            in_flight: vec![None; clients],
            counters: vec![0; clients],
            customers: BTreeMap::new(),
            violations: Vec::new(),
        }
    }

    /// Orders placed and acknowledged.
    pub fn orders_placed(&self) -> usize {
        self.customers.values().map(|c| c.placed.len()).sum()
    }

    fn violation(&mut self, message: String) {
        if self.violations.len() < VIOLATIONS_MAX {
            self.violations.push(message);
        }
    }

    fn check(&mut self) {
        let mut found = Vec::new();
        for (name, customer) in &self.customers {
            let mut calls = customer.may_apply.clone();
            calls.sort_unstable();
            // Orders that may have been applied by time `t` (called before).
            let called_before = |t: u64| calls.partition_point(|&call| call < t) as u64;
            let mut by_number: BTreeMap<u64, &Completed> = BTreeMap::new();
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
            self.violation(message);
        }
    }
}

impl Workload for OrdersWorkload {
    fn next_command(&mut self, client: usize, now_ns: u64, rng: &mut ChaCha8Rng) -> Option<Bytes> {
        if client >= self.in_flight.len() {
            return None;
        }
        self.counters[client] += 1;
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
        let op_id = ((client as u64) << 40) | self.counters[client];
        let command = request.encode(op_id);
        self.in_flight[client] = Some(InFlight {
            request,
            call_ns: now_ns,
        });
        Some(command)
    }

    fn complete(&mut self, client: usize, now_ns: u64, result: OpResult<'_>) {
        let Some(op) = self.in_flight.get_mut(client).and_then(Option::take) else {
            return;
        };
        let customer = self
            .customers
            .entry(op.request.customer().to_string())
            .or_default();
        let bytes = match result {
            OpResult::Ok(bytes) => bytes,
            OpResult::Failed => {
                if !op.request.is_read() {
                    // Definitely not applied: it cannot explain a number.
                    if let Some(position) = customer
                        .may_apply
                        .iter()
                        .position(|&call| call == op.call_ns)
                    {
                        customer.may_apply.swap_remove(position);
                    }
                }
                return;
            }
            OpResult::Unknown => return,
        };
        match (&op.request, OrdersResponse::decode(bytes)) {
            (OrdersRequest::PlaceOrder { .. }, Ok(OrdersResponse::Placed(number))) => {
                customer.placed.push((op.call_ns, now_ns, number, client));
            }
            (OrdersRequest::LastOrder { .. }, Ok(OrdersResponse::Last(number))) => {
                customer.reads.push((op.call_ns, now_ns, number, client));
            }
            (request, other) => {
                let message = format!("client {client}'s valid request {request:?} got {other:?}");
                self.violation(message);
            }
        }
    }

    fn command_id(&self, command: &[u8]) -> Option<u64> {
        let bytes: [u8; 8] = command.get(..8)?.try_into().ok()?;
        Some(u64::from_le_bytes(bytes))
    }

    fn is_read_only(&self, command: &[u8]) -> bool {
        OrdersRequest::decode(command).is_ok_and(|(_, request)| request.is_read())
    }

    fn describe(&self, command: &[u8]) -> String {
        match OrdersRequest::decode(command) {
            Ok((_, OrdersRequest::PlaceOrder { customer })) => format!("place_order {customer}"),
            Ok((_, OrdersRequest::LastOrder { customer })) => format!("last_order {customer}"),
            Err(error) => format!("malformed request ({error})"),
        }
    }

    fn finish(&mut self) -> WorkloadReport {
        let operations_checked = self
            .customers
            .values()
            .map(|c| (c.placed.len() + c.reads.len()) as u64)
            .sum();
        self.check();
        let failure = self.violations.first().map(|first| {
            let more = self.violations.len() - 1;
            if more == 0 {
                first.clone()
            } else {
                format!("{first} (and {more} more)")
            }
        });
        WorkloadReport {
            operations_checked,
            failure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(placed: &[Completed], may_apply: &[u64], reads: &[Completed]) -> OrdersWorkload {
        let mut workload = OrdersWorkload::new(1);
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
