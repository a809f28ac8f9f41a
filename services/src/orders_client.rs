//! The typed client of the orders service (feature `runtime`).

use concord::ReadPath;

use crate::orders::{OrdersRequest, OrdersResponse};
use crate::runtime::{CallError, ServiceClient, ServiceRequest};

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
        self.inner.call(request, ReadPath::Follower).await
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

impl ServiceRequest for OrdersRequest {
    type Response = OrdersResponse;

    fn is_read(&self) -> bool {
        OrdersRequest::is_read(self)
    }

    fn validate(&self) -> Result<(), String> {
        OrdersRequest::validate(self)
    }

    fn encode(&self, op_id: u64) -> bytes::Bytes {
        OrdersRequest::encode(self, op_id)
    }

    fn decode_response(
        bytes: &[u8],
    ) -> Result<Result<OrdersResponse, String>, crate::codec::DecodeError> {
        Ok(match OrdersResponse::decode(bytes)? {
            OrdersResponse::Refused(reason) => Err(reason),
            response => Ok(response),
        })
    }
}
