//! The typed client of the orders service (feature `runtime`).

use concord::ReadPath;

use crate::orders::{OrdersRequest, OrdersResponse};
use crate::runtime::{CallError, ServiceClient};

/// A client of an orders cluster: an order is counted once even when
/// retried; the last order number is read at any server, linearizably.
#[derive(Debug)]
pub struct OrdersClient {
    inner: ServiceClient,
}

impl OrdersClient {
    /// A client of the cluster at `servers` named `cluster_id`.
    pub fn new(servers: Vec<String>, cluster_id: &str) -> Self {
        OrdersClient {
            inner: ServiceClient::new(servers, cluster_id),
        }
    }

    /// Writes return only once every healthy server applied them (see
    /// [`ServiceClient::set_acknowledge_all`]).
    pub fn set_acknowledge_all(&mut self, enabled: bool) {
        self.inner.set_acknowledge_all(enabled);
    }

    /// A client over an already configured [`ServiceClient`].
    pub fn from_service_client(inner: ServiceClient) -> Self {
        OrdersClient { inner }
    }

    async fn call(&mut self, request: OrdersRequest) -> Result<OrdersResponse, CallError> {
        request.validate().map_err(CallError::Invalid)?;
        let op_id = self.inner.next_op_id();
        let bytes = request.encode(op_id);
        let answer = if request.is_read() {
            self.inner.read_via(bytes, ReadPath::Follower).await?
        } else {
            self.inner.write(bytes).await?
        };
        match OrdersResponse::decode(&answer) {
            Ok(OrdersResponse::Refused(reason)) => Err(CallError::Refused(reason)),
            Ok(response) => Ok(response),
            Err(error) => Err(CallError::Protocol(error.to_string())),
        }
    }

    /// Places `customer`'s next order; returns its number.
    pub async fn place_order(&mut self, customer: &str) -> Result<u64, CallError> {
        match self
            .call(OrdersRequest::PlaceOrder {
                customer: customer.to_string(),
            })
            .await?
        {
            OrdersResponse::Placed(number) => Ok(number),
            other => Err(CallError::Protocol(format!(
                "expected an order number, got {other:?}"
            ))),
        }
    }

    /// `customer`'s last order number (0: none), read at any server.
    pub async fn last_order(&mut self, customer: &str) -> Result<u64, CallError> {
        match self
            .call(OrdersRequest::LastOrder {
                customer: customer.to_string(),
            })
            .await?
        {
            OrdersResponse::Last(number) => Ok(number),
            other => Err(CallError::Protocol(format!(
                "expected the last order number, got {other:?}"
            ))),
        }
    }
}
