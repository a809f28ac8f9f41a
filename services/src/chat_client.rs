//! The typed client of the chat service (feature `runtime`).
//!
//! Every call goes through [`ServiceClient::call`]: the client finds the
//! leader itself (following redirects, trying each server in turn when
//! the one it knew stops answering) and retries inside its session, so a
//! send or fetch retried after a lost answer is applied once and a
//! retried fetch returns the same messages rather than losing them.

use concord::ReadPath;

use crate::chat::{ChatRequest, ChatResponse, Message};
use crate::runtime::{CallError, ServiceClient, ServiceRequest};

/// A client of a chat cluster.
#[derive(Debug)]
pub struct ChatClient {
    inner: ServiceClient,
}

/// One `fetch`'s answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    /// The messages, oldest first, now marked delivered.
    pub messages: Vec<Message>,
    /// Whether more undelivered messages wait (fetch again).
    pub more: bool,
}

impl ChatClient {
    /// A client of the cluster at `servers` named `cluster_id`.
    pub fn new(servers: Vec<String>, cluster_id: &str) -> Self {
        ChatClient {
            inner: ServiceClient::new(servers, cluster_id),
        }
    }

    /// A client over an already configured [`ServiceClient`].
    pub fn from_service_client(inner: ServiceClient) -> Self {
        ChatClient { inner }
    }

    /// Writes return only once every healthy server applied them (see
    /// [`ServiceClient::set_acknowledge_all`]).
    pub fn set_acknowledge_all(&mut self, enabled: bool) {
        self.inner.set_acknowledge_all(enabled);
    }

    async fn call(&mut self, request: ChatRequest) -> Result<ChatResponse, CallError> {
        self.inner.call(request, ReadPath::ReadIndex).await
    }

    fn unexpected(what: &str, other: ChatResponse) -> CallError {
        CallError::Protocol(format!("expected {what}, got {other:?}"))
    }

    /// Creates `account` with an empty mailbox.
    pub async fn create_account(&mut self, account: &str) -> Result<(), CallError> {
        match self
            .call(ChatRequest::CreateAccount {
                account: account.to_string(),
            })
            .await?
        {
            ChatResponse::Done => Ok(()),
            other => Err(Self::unexpected("done", other)),
        }
    }

    /// Deletes `account` and its mailbox (undelivered messages included).
    pub async fn delete_account(&mut self, account: &str) -> Result<(), CallError> {
        match self
            .call(ChatRequest::DeleteAccount {
                account: account.to_string(),
            })
            .await?
        {
            ChatResponse::Done => Ok(()),
            other => Err(Self::unexpected("done", other)),
        }
    }

    /// The accounts matching the glob `pattern` (`*`, `?`), sorted, and
    /// whether more matched than one answer holds.
    pub async fn list_accounts(&mut self, pattern: &str) -> Result<(Vec<String>, bool), CallError> {
        match self
            .call(ChatRequest::ListAccounts {
                pattern: pattern.to_string(),
            })
            .await?
        {
            ChatResponse::Accounts { names, truncated } => Ok((names, truncated)),
            other => Err(Self::unexpected("account names", other)),
        }
    }

    /// Queues `body` for `recipient`; returns the message's id.
    pub async fn send(
        &mut self,
        sender: &str,
        recipient: &str,
        body: &str,
    ) -> Result<u64, CallError> {
        match self
            .call(ChatRequest::Send {
                sender: sender.to_string(),
                recipient: recipient.to_string(),
                body: body.to_string(),
            })
            .await?
        {
            ChatResponse::Sent(id) => Ok(id),
            other => Err(Self::unexpected("a message id", other)),
        }
    }

    /// The oldest undelivered messages of `account`, which are now
    /// delivered (a write through the log).
    pub async fn fetch(&mut self, account: &str) -> Result<Fetched, CallError> {
        match self
            .call(ChatRequest::Fetch {
                account: account.to_string(),
            })
            .await?
        {
            ChatResponse::Fetched { messages, more } => Ok(Fetched { messages, more }),
            other => Err(Self::unexpected("messages", other)),
        }
    }

    /// Deletes delivered messages of `account` by id (every delivered one
    /// when `ids` is empty); returns how many were deleted.
    pub async fn delete_messages(&mut self, account: &str, ids: &[u64]) -> Result<u64, CallError> {
        match self
            .call(ChatRequest::DeleteMessages {
                account: account.to_string(),
                ids: ids.to_vec(),
            })
            .await?
        {
            ChatResponse::Deleted(count) => Ok(count),
            other => Err(Self::unexpected("a deleted count", other)),
        }
    }
}

impl ServiceRequest for ChatRequest {
    type Response = ChatResponse;

    fn is_read(&self) -> bool {
        ChatRequest::is_read(self)
    }

    fn validate(&self) -> Result<(), String> {
        ChatRequest::validate(self)
    }

    fn encode(&self, op_id: u64) -> bytes::Bytes {
        ChatRequest::encode(self, op_id)
    }

    fn decode_response(
        bytes: &[u8],
    ) -> Result<Result<ChatResponse, String>, crate::codec::DecodeError> {
        let response = ChatResponse::decode(bytes)?;
        Ok(match response.refusal() {
            Some(reason) => Err(reason),
            None => Ok(response),
        })
    }
}
