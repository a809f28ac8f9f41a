//! Orders: each customer's orders are numbered 1, 2, 3, ... with no gap
//! and no repeat. `place_order(customer)` returns the new number (a log
//! entry, in the client's session, so a retried call is not counted
//! twice); `last_order(customer)` reads the last number, at any server
//! (a follower read: the server first learns the leader's commit index,
//! then answers once it has applied that far, so the answer is still
//! linearizable).
//!
//! Request layout (the session envelope of [`concord::session`] around
//! writes, bare for reads): operation id (u64; chosen by the client, used
//! only by the simulator's exactly-once check), a tag byte (0
//! place_order, 1 last_order), the customer ([`crate::codec`] string).
//! Response: tag 0 + u64 (the new order number), 1 + u64 (the last order
//! number, 0 before the first), 2 + reason (refused, nothing changed).

use std::collections::BTreeMap;

use bytes::Bytes;

use concord::state_machine::{RestoreError, StateMachine};
use concord::Index;

use crate::codec::{DecodeError, Reader, SnapshotReader, Writer};

/// Longest customer name.
pub const CUSTOMER_BYTES_MAX: usize = 256;
/// Most customers the service tracks; an order for a new customer beyond
/// it is refused.
pub const CUSTOMERS_MAX: usize = 1 << 20;

const TAG_PLACE: u8 = 0;
const TAG_LAST: u8 = 1;

const SNAPSHOT_VERSION: u8 = 1;

/// A request to the orders service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrdersRequest {
    /// Place the customer's next order.
    PlaceOrder {
        /// The customer.
        customer: String,
    },
    /// The customer's last order number.
    LastOrder {
        /// The customer.
        customer: String,
    },
}

impl OrdersRequest {
    /// Whether the request only reads.
    pub fn is_read(&self) -> bool {
        matches!(self, OrdersRequest::LastOrder { .. })
    }

    /// The customer named.
    pub fn customer(&self) -> &str {
        match self {
            OrdersRequest::PlaceOrder { customer } | OrdersRequest::LastOrder { customer } => {
                customer
            }
        }
    }

    /// Checks the limits; the error says what to change.
    pub fn validate(&self) -> Result<(), String> {
        let customer = self.customer();
        if customer.is_empty() || customer.len() > CUSTOMER_BYTES_MAX {
            return Err(format!(
                "a customer name has 1 to {CUSTOMER_BYTES_MAX} bytes, not {}",
                customer.len()
            ));
        }
        Ok(())
    }

    /// Encodes the request with operation id `op_id`.
    pub fn encode(&self, op_id: u64) -> Bytes {
        let tag = match self {
            OrdersRequest::PlaceOrder { .. } => TAG_PLACE,
            OrdersRequest::LastOrder { .. } => TAG_LAST,
        };
        Writer::new()
            .u64(op_id)
            .u8(tag)
            .str(self.customer())
            .finish()
    }

    /// Decodes a request and its operation id.
    pub fn decode(bytes: &[u8]) -> Result<(u64, OrdersRequest), DecodeError> {
        let mut reader = Reader::new(bytes);
        let op_id = reader.u64("operation id")?;
        let tag = reader.u8("request tag")?;
        let customer = reader.str("customer")?.to_string();
        let request = match tag {
            TAG_PLACE => OrdersRequest::PlaceOrder { customer },
            TAG_LAST => OrdersRequest::LastOrder { customer },
            tag => {
                return Err(DecodeError::UnknownTag {
                    field: "request",
                    tag,
                })
            }
        };
        reader.end()?;
        Ok((op_id, request))
    }
}

/// The orders service's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrdersResponse {
    /// The number of the order just placed.
    Placed(u64),
    /// The customer's last order number (0: none yet).
    Last(u64),
    /// The request was refused and changed nothing.
    Refused(String),
}

impl OrdersResponse {
    /// Encodes the response.
    pub fn encode(&self) -> Bytes {
        let mut writer = Writer::new();
        match self {
            OrdersResponse::Placed(number) => writer.u8(0).u64(*number),
            OrdersResponse::Last(number) => writer.u8(1).u64(*number),
            OrdersResponse::Refused(reason) => writer.u8(2).str(reason),
        };
        writer.finish()
    }

    /// Decodes a response.
    pub fn decode(bytes: &[u8]) -> Result<OrdersResponse, DecodeError> {
        let mut reader = Reader::new(bytes);
        let response = match reader.u8("response tag")? {
            0 => OrdersResponse::Placed(reader.u64("order number")?),
            1 => OrdersResponse::Last(reader.u64("order number")?),
            2 => OrdersResponse::Refused(reader.str("reason")?.to_string()),
            tag => {
                return Err(DecodeError::UnknownTag {
                    field: "response",
                    tag,
                })
            }
        };
        reader.end()?;
        Ok(response)
    }
}

/// The orders state machine: customer → last order number.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Orders {
    last: BTreeMap<String, u64>,
    /// Planted bug: number orders with the log index.
    number_by_log_index: bool,
}

impl Orders {
    /// No orders yet.
    pub fn new() -> Self {
        Orders::default()
    }

    /// Orders with a planted bug, for measuring the simulator's gap-free
    /// check: an order's number is the index of its log entry (unique and
    /// increasing, so it looks right, but a customer's numbers skip every
    /// entry in between).
    pub fn with_log_index_numbers() -> Self {
        Orders {
            number_by_log_index: true,
            ..Orders::default()
        }
    }

    /// The customer's last order number (0: none).
    pub fn last_order(&self, customer: &str) -> u64 {
        self.last.get(customer).copied().unwrap_or(0)
    }

    fn execute(&mut self, index: Index, request: OrdersRequest) -> OrdersResponse {
        if let Err(reason) = request.validate() {
            return OrdersResponse::Refused(reason);
        }
        match request {
            OrdersRequest::LastOrder { customer } => {
                OrdersResponse::Last(self.last_order(&customer))
            }
            OrdersRequest::PlaceOrder { customer } => {
                if !self.last.contains_key(&customer) && self.last.len() >= CUSTOMERS_MAX {
                    return OrdersResponse::Refused(format!(
                        "the service tracks its limit of {CUSTOMERS_MAX} customers"
                    ));
                }
                let last = self.last_order(&customer);
                let next = if self.number_by_log_index {
                    index
                } else {
                    match last.checked_add(1) {
                        Some(next) => next,
                        None => {
                            return OrdersResponse::Refused(format!(
                                "customer {customer:?} has no order numbers left"
                            ))
                        }
                    }
                };
                self.last.insert(customer, next);
                OrdersResponse::Placed(next)
            }
        }
    }
}

impl StateMachine for Orders {
    fn apply(&mut self, index: Index, command: &[u8]) -> Bytes {
        match OrdersRequest::decode(command) {
            Ok((_, request)) => self.execute(index, request).encode(),
            Err(error) => OrdersResponse::Refused(format!("malformed request: {error}")).encode(),
        }
    }

    fn query(&self, request: &[u8]) -> Option<Bytes> {
        let (_, request) = OrdersRequest::decode(request).ok()?;
        let OrdersRequest::LastOrder { customer } = &request else {
            return None;
        };
        Some(
            match request.validate() {
                Ok(()) => OrdersResponse::Last(self.last_order(customer)),
                Err(reason) => OrdersResponse::Refused(reason),
            }
            .encode(),
        )
    }

    /// Layout: version byte, customer count (u64), then each customer and
    /// last order number (u64).
    fn snapshot(&self) -> Bytes {
        let mut writer = Writer::new();
        writer.u8(SNAPSHOT_VERSION).u64(self.last.len() as u64);
        for (customer, last) in &self.last {
            writer.str(customer).u64(*last);
        }
        writer.finish()
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
        let mut snapshot = SnapshotReader::open(snapshot, "orders", SNAPSHOT_VERSION)?;
        let count = snapshot.count("customer count", "customers", CUSTOMERS_MAX)?;
        let mut last = BTreeMap::new();
        for _ in 0..count {
            let customer = snapshot.string("customer")?;
            let number = snapshot
                .reader
                .u64("order number")
                .map_err(|e| snapshot.error(e))?;
            last.insert(customer, number);
        }
        snapshot.end()?;
        self.last = last;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(orders: &mut Orders, index: Index, customer: &str) -> OrdersResponse {
        let request = OrdersRequest::PlaceOrder {
            customer: customer.into(),
        };
        OrdersResponse::decode(&orders.apply(index, &request.encode(index))).unwrap()
    }

    #[test]
    fn requests_and_responses_round_trip() {
        for request in [
            OrdersRequest::PlaceOrder {
                customer: "acme".into(),
            },
            OrdersRequest::LastOrder {
                customer: "acme".into(),
            },
        ] {
            let bytes = request.encode(3);
            assert_eq!(OrdersRequest::decode(&bytes), Ok((3, request.clone())));
            for cut in 0..bytes.len() {
                assert!(OrdersRequest::decode(&bytes[..cut]).is_err());
            }
        }
        for response in [
            OrdersResponse::Placed(7),
            OrdersResponse::Last(0),
            OrdersResponse::Refused("no".into()),
        ] {
            assert_eq!(OrdersResponse::decode(&response.encode()), Ok(response));
        }
    }

    #[test]
    fn numbers_are_per_customer_and_gap_free() {
        let mut orders = Orders::new();
        assert_eq!(place(&mut orders, 1, "a"), OrdersResponse::Placed(1));
        assert_eq!(place(&mut orders, 2, "b"), OrdersResponse::Placed(1));
        assert_eq!(place(&mut orders, 3, "a"), OrdersResponse::Placed(2));
        let read = OrdersRequest::LastOrder {
            customer: "a".into(),
        }
        .encode(0);
        assert_eq!(
            OrdersResponse::decode(&orders.query(&read).unwrap()).unwrap(),
            OrdersResponse::Last(2)
        );
        assert!(orders
            .query(
                &OrdersRequest::PlaceOrder {
                    customer: "a".into()
                }
                .encode(0)
            )
            .is_none());
        assert!(matches!(
            place(&mut orders, 4, ""),
            OrdersResponse::Refused(_)
        ));
        assert!(matches!(
            OrdersResponse::decode(&orders.apply(5, b"junk")).unwrap(),
            OrdersResponse::Refused(_)
        ));
        let snapshot = orders.snapshot();
        let mut copy = Orders::new();
        copy.restore(&snapshot).unwrap();
        assert_eq!(copy, orders);
        for cut in 0..snapshot.len() {
            assert!(Orders::new().restore(&snapshot[..cut]).is_err());
        }
    }

    #[test]
    fn the_planted_bug_numbers_by_log_index() {
        let mut orders = Orders::with_log_index_numbers();
        assert_eq!(place(&mut orders, 5, "a"), OrdersResponse::Placed(5));
        assert_eq!(place(&mut orders, 9, "a"), OrdersResponse::Placed(9));
    }
}
