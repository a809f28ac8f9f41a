//! Orders: each customer's orders are numbered 1, 2, 3, ... with no gap
//! and no repeat. `place_order(customer)` returns the new number (a log
//! entry, in the client's session, so a retried call is not counted
//! twice); `last_order(customer)` reads the last number, at any server
//! (a follower read: the server first learns the leader's commit index,
//! then answers once it has applied that far, so the answer is still
//! linearizable).
//!
//! On many groups (`--groups N`, [`crate::sharded`]) every request runs
//! in its customer's group: a customer's numbers are its own, so nothing
//! spans groups.

use std::collections::BTreeMap;

use concord::ReadPath;
use serde::{Deserialize, Serialize};

use crate::service::{one_to, Applied, Outcome, Service, ServiceRequest};
#[cfg(feature = "cli")]
use crate::service::{Out, Printed};

/// Longest customer name.
pub const CUSTOMER_BYTES_MAX: usize = 256;
/// Most customers the service tracks; an order for a new customer beyond
/// it is refused.
pub const CUSTOMERS_MAX: usize = 1 << 20;

/// A request to the orders service (and its command line).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Subcommand))]
pub enum OrdersRequest {
    /// Place the customer's next order; prints its number.
    PlaceOrder {
        /// The customer.
        customer: String,
    },
    /// The customer's last order number (0: none yet), read at any
    /// server.
    LastOrder {
        /// The customer.
        customer: String,
    },
}

impl OrdersRequest {
    /// The customer named.
    pub fn customer(&self) -> &str {
        match self {
            OrdersRequest::PlaceOrder { customer } | OrdersRequest::LastOrder { customer } => {
                customer
            }
        }
    }
}

impl ServiceRequest for OrdersRequest {
    fn is_read(&self) -> bool {
        matches!(self, OrdersRequest::LastOrder { .. })
    }

    fn validate(&self) -> Result<(), String> {
        let customer = self.customer();
        one_to(
            "a customer name has",
            customer.len(),
            CUSTOMER_BYTES_MAX,
            "bytes",
        )
    }
}

/// The orders service's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrdersResponse {
    /// The number of the order just placed.
    Placed(u64),
    /// The customer's last order number (0: none yet).
    Last(u64),
}

/// Customer → last order number.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Orders {
    last: BTreeMap<String, u64>,
}

impl Orders {
    /// Executes `request` at `at`; with `planted`, the service's planted
    /// mistake (`crate::planted`): an order is numbered with the index of
    /// its log entry, unique and increasing, so it looks right, but a
    /// customer's numbers skip every entry in between.
    pub(crate) fn apply_as(
        &mut self,
        request: OrdersRequest,
        at: Applied,
        planted: bool,
    ) -> Result<OrdersResponse, String> {
        let customer = match request {
            OrdersRequest::LastOrder { customer } => {
                return Ok(OrdersResponse::Last(self.last_order(&customer)))
            }
            OrdersRequest::PlaceOrder { customer } => customer,
        };
        if !self.last.contains_key(&customer) && self.last.len() >= CUSTOMERS_MAX {
            return Err(format!(
                "the service tracks its limit of {CUSTOMERS_MAX} customers"
            ));
        }
        let next = if planted {
            at.index
        } else {
            self.last_order(&customer)
                .checked_add(1)
                .ok_or_else(|| format!("customer {customer:?} has no order numbers left"))?
        };
        self.last.insert(customer, next);
        Ok(OrdersResponse::Placed(next))
    }

    /// The customer's last order number (0: none).
    pub fn last_order(&self, customer: &str) -> u64 {
        self.last.get(customer).copied().unwrap_or(0)
    }
}

impl Service for Orders {
    /// By customer: a customer's order numbers are its own.
    fn placement(request: &OrdersRequest) -> crate::sharded::Placement<'_> {
        crate::sharded::Placement::Key(request.customer().as_bytes())
    }

    const READ_PATH: ReadPath = ReadPath::Follower;

    type Request = OrdersRequest;
    type Response = OrdersResponse;

    fn apply(&mut self, request: OrdersRequest, at: Applied) -> Result<OrdersResponse, String> {
        self.apply_as(request, at, false)
    }

    fn read(&self, request: &OrdersRequest) -> Option<Outcome<Self>> {
        match request {
            OrdersRequest::LastOrder { customer } => {
                Some(Ok(OrdersResponse::Last(self.last_order(customer))))
            }
            OrdersRequest::PlaceOrder { .. } => None,
        }
    }

    fn check_restored(&self) -> Result<(), String> {
        crate::service::at_most("customers", self.last.len(), CUSTOMERS_MAX)
    }

    #[cfg(feature = "cli")]
    type Command = OrdersRequest;

    /// The order number.
    #[cfg(feature = "cli")]
    fn show(_request: &Self::Request, response: Self::Response, out: &mut Out) -> Printed {
        let (OrdersResponse::Placed(number) | OrdersResponse::Last(number)) = response;
        writeln!(out, "{number}")?;
        Ok(crate::Shown::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;
    use crate::machine::{testing, ServiceMachine};
    use concord::state_machine::StateMachine;

    fn place(
        orders: &mut ServiceMachine<Orders>,
        index: u64,
        customer: &str,
    ) -> Result<OrdersResponse, String> {
        let request = OrdersRequest::PlaceOrder {
            customer: customer.into(),
        };
        testing::apply(orders, index, &request)
    }

    #[test]
    fn numbers_are_per_customer_and_gap_free() {
        let mut orders = ServiceMachine::<Orders>::new();
        assert_eq!(place(&mut orders, 1, "a"), Ok(OrdersResponse::Placed(1)));
        assert_eq!(place(&mut orders, 2, "b"), Ok(OrdersResponse::Placed(1)));
        assert_eq!(place(&mut orders, 3, "a"), Ok(OrdersResponse::Placed(2)));
        let read = OrdersRequest::LastOrder {
            customer: "a".into(),
        };
        assert_eq!(
            testing::query(&orders, &read),
            Some(Ok(OrdersResponse::Last(2)))
        );
        let write = OrdersRequest::PlaceOrder {
            customer: "a".into(),
        };
        assert_eq!(testing::query(&orders, &write), None);
        assert!(place(&mut orders, 4, "").is_err());
        testing::restored_copy(&orders);
    }

    #[test]
    fn a_snapshot_of_another_service_is_refused_by_name() {
        let snapshot = codec::encode_snapshot(&crate::kv::Kv::default());
        let error = ServiceMachine::<Orders>::new()
            .restore(&snapshot)
            .unwrap_err()
            .to_string();
        assert!(error.contains("kv") && error.contains("orders"), "{error}");
    }

    #[cfg(feature = "planted-bugs")]
    #[test]
    fn the_planted_bug_numbers_by_log_index() {
        let mut orders = ServiceMachine::<Orders>::with_planted_bug();
        assert_eq!(place(&mut orders, 5, "a"), Ok(OrdersResponse::Placed(5)));
        assert_eq!(place(&mut orders, 9, "a"), Ok(OrdersResponse::Placed(9)));
    }
}
