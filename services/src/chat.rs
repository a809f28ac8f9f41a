//! Chat: accounts, and messages between them queued in the recipient's
//! mailbox until the recipient fetches them.
//!
//! * `create_account(name)` / `delete_account(name)`: deleting an account
//!   drops its mailbox, delivered and undelivered messages alike; a later
//!   `create_account` of the same name starts an empty mailbox.
//! * `list_accounts(pattern)`: the accounts whose name matches a glob
//!   (`*` any run of characters, `?` exactly one, everything else itself;
//!   no escapes, no classes), sorted, at most [`LIST_ACCOUNTS_MAX`] per
//!   answer. A read, answered without a log entry.
//! * `send(sender, recipient, body)`: both accounts must exist; the message
//!   gets a cluster-wide id, increasing in log order, so a sender's
//!   messages to one recipient are queued in the order they were sent.
//! * `fetch(account)`: returns the oldest undelivered messages (at most
//!   [`FETCH_MESSAGES_MAX`], oldest first) **and marks them delivered**.
//!   Fetch is a write through the log, not a read: marking is a state
//!   change every replica must make at the same point of the history, or
//!   two fetches served by different replicas (or one replica twice) could
//!   both return a message. Inside the client's session a retried fetch
//!   gets the first answer again rather than a second delivery.
//! * `delete_messages(account, ids)`: removes delivered messages by id
//!   (all delivered ones when `ids` is empty). An undelivered message is
//!   never deleted this way, so nothing queued is lost unseen; it is
//!   refused instead.
//!
//! Request layout: operation id (u64; chosen by the client, used only by
//! the simulator's exactly-once check), a tag byte, then the fields
//! ([`crate::codec`] strings and integers). Responses start with a tag
//! byte; see [`ChatResponse::encode`].

use std::collections::BTreeMap;

use bytes::Bytes;

use concord::state_machine::{RestoreError, StateMachine};
use concord::Index;

use crate::codec::{DecodeError, Reader, SnapshotReader, Writer};

/// Longest account name, bytes.
pub const ACCOUNT_BYTES_MAX: usize = 64;
/// Longest message body, bytes.
pub const BODY_BYTES_MAX: usize = 4096;
/// Longest `list_accounts` pattern, bytes.
pub const PATTERN_BYTES_MAX: usize = 256;
/// Most accounts the service holds; creating one more is refused.
pub const ACCOUNTS_MAX: usize = 1 << 16;
/// Most messages (delivered and undelivered) one mailbox holds; a send to
/// a full mailbox is refused until its owner deletes delivered messages.
pub const MAILBOX_MESSAGES_MAX: usize = 4096;
/// Most messages the whole service holds; a send beyond it is refused.
pub const MESSAGES_MAX: usize = 1 << 20;
/// Most messages one fetch returns (the oldest undelivered first; fetch
/// again for the rest).
pub const FETCH_MESSAGES_MAX: usize = 256;
/// Most account names one `list_accounts` answer holds.
pub const LIST_ACCOUNTS_MAX: usize = 1000;
/// Most message ids one `delete_messages` names.
pub const DELETE_IDS_MAX: usize = 1024;

const TAG_CREATE: u8 = 0;
const TAG_DELETE_ACCOUNT: u8 = 1;
const TAG_LIST: u8 = 2;
const TAG_SEND: u8 = 3;
const TAG_FETCH: u8 = 4;
const TAG_DELETE_MESSAGES: u8 = 5;

const SNAPSHOT_VERSION: u8 = 1;

/// Whether `name` is a valid account name: 1 to [`ACCOUNT_BYTES_MAX`]
/// bytes of ASCII letters, digits, `_`, `.` and `-` (so no name holds a
/// glob character).
fn validate_account(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > ACCOUNT_BYTES_MAX {
        return Err(format!(
            "an account name has 1 to {ACCOUNT_BYTES_MAX} bytes, not {}",
            name.len()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(format!(
            "account name {name:?} holds {bad:?}; use ASCII letters, digits, '_', '.' and '-'"
        ));
    }
    Ok(())
}

/// Whether `name` matches the glob `pattern`: `*` matches any run of
/// characters (none included), `?` exactly one, any other character
/// itself. Greedy with one backtrack point, so at most
/// `pattern.len() * name.len()` steps.
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    let (mut p, mut n) = (0, 0);
    // The last `*` seen, and the name position it is matched up to.
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == name[n]) {
            p += 1;
            n += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, n));
            p += 1;
        } else if let Some((star_p, star_n)) = star {
            // Let the last `*` swallow one more character and retry.
            star = Some((star_p, star_n + 1));
            p = star_p + 1;
            n = star_n + 1;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// A request to the chat service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChatRequest {
    /// Create an account with an empty mailbox.
    CreateAccount {
        /// The account's name.
        account: String,
    },
    /// Delete an account and its mailbox.
    DeleteAccount {
        /// The account's name.
        account: String,
    },
    /// The accounts whose name matches `pattern` (a glob of `*` and `?`).
    ListAccounts {
        /// The glob.
        pattern: String,
    },
    /// Queue `body` in `recipient`'s mailbox.
    Send {
        /// The sending account.
        sender: String,
        /// The receiving account.
        recipient: String,
        /// The text.
        body: String,
    },
    /// Return the oldest undelivered messages of `account` and mark them
    /// delivered.
    Fetch {
        /// The account.
        account: String,
    },
    /// Remove delivered messages of `account` (every delivered one when
    /// `ids` is empty).
    DeleteMessages {
        /// The account.
        account: String,
        /// The messages' ids.
        ids: Vec<u64>,
    },
}

impl ChatRequest {
    /// Whether the request only reads (answered without a log entry).
    /// Only `list_accounts`: a fetch marks what it returns as delivered.
    pub fn is_read(&self) -> bool {
        matches!(self, ChatRequest::ListAccounts { .. })
    }

    /// The account the request is about (the recipient of a send; none
    /// for a listing).
    pub fn account(&self) -> Option<&str> {
        match self {
            ChatRequest::CreateAccount { account }
            | ChatRequest::DeleteAccount { account }
            | ChatRequest::Fetch { account }
            | ChatRequest::DeleteMessages { account, .. } => Some(account),
            ChatRequest::Send { recipient, .. } => Some(recipient),
            ChatRequest::ListAccounts { .. } => None,
        }
    }

    /// Checks the limits; the error says what to change.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            ChatRequest::CreateAccount { account }
            | ChatRequest::DeleteAccount { account }
            | ChatRequest::Fetch { account } => validate_account(account),
            ChatRequest::ListAccounts { pattern } => {
                if pattern.is_empty() || pattern.len() > PATTERN_BYTES_MAX {
                    return Err(format!(
                        "a pattern has 1 to {PATTERN_BYTES_MAX} bytes, not {}",
                        pattern.len()
                    ));
                }
                Ok(())
            }
            ChatRequest::Send {
                sender,
                recipient,
                body,
            } => {
                validate_account(sender)?;
                validate_account(recipient)?;
                if body.is_empty() || body.len() > BODY_BYTES_MAX {
                    return Err(format!(
                        "a message body has 1 to {BODY_BYTES_MAX} bytes, not {}",
                        body.len()
                    ));
                }
                Ok(())
            }
            ChatRequest::DeleteMessages { account, ids } => {
                validate_account(account)?;
                if ids.len() > DELETE_IDS_MAX {
                    return Err(format!(
                        "delete at most {DELETE_IDS_MAX} messages at once, not {}",
                        ids.len()
                    ));
                }
                Ok(())
            }
        }
    }

    /// Encodes the request with operation id `op_id`.
    pub fn encode(&self, op_id: u64) -> Bytes {
        let mut writer = Writer::new();
        writer.u64(op_id);
        match self {
            ChatRequest::CreateAccount { account } => writer.u8(TAG_CREATE).str(account),
            ChatRequest::DeleteAccount { account } => writer.u8(TAG_DELETE_ACCOUNT).str(account),
            ChatRequest::ListAccounts { pattern } => writer.u8(TAG_LIST).str(pattern),
            ChatRequest::Send {
                sender,
                recipient,
                body,
            } => writer.u8(TAG_SEND).str(sender).str(recipient).str(body),
            ChatRequest::Fetch { account } => writer.u8(TAG_FETCH).str(account),
            ChatRequest::DeleteMessages { account, ids } => {
                writer
                    .u8(TAG_DELETE_MESSAGES)
                    .str(account)
                    .u32(ids.len() as u32);
                for id in ids {
                    writer.u64(*id);
                }
                &mut writer
            }
        };
        writer.finish()
    }

    /// Decodes a request and its operation id.
    pub fn decode(bytes: &[u8]) -> Result<(u64, ChatRequest), DecodeError> {
        let mut reader = Reader::new(bytes);
        let op_id = reader.u64("operation id")?;
        let request = match reader.u8("request tag")? {
            TAG_CREATE => ChatRequest::CreateAccount {
                account: reader.str("account")?.to_string(),
            },
            TAG_DELETE_ACCOUNT => ChatRequest::DeleteAccount {
                account: reader.str("account")?.to_string(),
            },
            TAG_LIST => ChatRequest::ListAccounts {
                pattern: reader.str("pattern")?.to_string(),
            },
            TAG_SEND => ChatRequest::Send {
                sender: reader.str("sender")?.to_string(),
                recipient: reader.str("recipient")?.to_string(),
                body: reader.str("body")?.to_string(),
            },
            TAG_FETCH => ChatRequest::Fetch {
                account: reader.str("account")?.to_string(),
            },
            TAG_DELETE_MESSAGES => {
                let account = reader.str("account")?.to_string();
                let count = reader.count("message ids", DELETE_IDS_MAX)?;
                let mut ids = Vec::with_capacity(count);
                for _ in 0..count {
                    ids.push(reader.u64("message id")?);
                }
                ChatRequest::DeleteMessages { account, ids }
            }
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

/// One message as a fetch returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Cluster-wide id, increasing in the order messages were sent.
    pub id: u64,
    /// The sending account.
    pub sender: String,
    /// The text.
    pub body: String,
}

/// The chat service's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChatResponse {
    /// The account was created or deleted.
    Done,
    /// Matching account names, sorted; `truncated` when more matched than
    /// [`LIST_ACCOUNTS_MAX`].
    Accounts {
        /// The names.
        names: Vec<String>,
        /// Whether more names matched.
        truncated: bool,
    },
    /// The message was queued with this id.
    Sent(u64),
    /// The messages fetched (now delivered), oldest first; `more` when
    /// undelivered messages are left.
    Fetched {
        /// The messages.
        messages: Vec<Message>,
        /// Whether more undelivered messages wait.
        more: bool,
    },
    /// This many messages were deleted.
    Deleted(u64),
    /// The named account does not exist; nothing changed.
    NoSuchAccount(String),
    /// The named account already exists; nothing changed.
    AccountExists(String),
    /// The request was refused and changed nothing.
    Refused(String),
}

impl ChatResponse {
    /// Encodes the response: a tag byte (0 done, 1 accounts, 2 sent, 3
    /// fetched, 4 deleted, 5 no such account, 6 account exists, 7
    /// refused), then its fields.
    pub fn encode(&self) -> Bytes {
        let mut writer = Writer::new();
        match self {
            ChatResponse::Done => writer.u8(0),
            ChatResponse::Accounts { names, truncated } => {
                writer.u8(1).u8(*truncated as u8).u32(names.len() as u32);
                for name in names {
                    writer.str(name);
                }
                &mut writer
            }
            ChatResponse::Sent(id) => writer.u8(2).u64(*id),
            ChatResponse::Fetched { messages, more } => {
                writer.u8(3).u8(*more as u8).u32(messages.len() as u32);
                for message in messages {
                    writer
                        .u64(message.id)
                        .str(&message.sender)
                        .str(&message.body);
                }
                &mut writer
            }
            ChatResponse::Deleted(count) => writer.u8(4).u64(*count),
            ChatResponse::NoSuchAccount(name) => writer.u8(5).str(name),
            ChatResponse::AccountExists(name) => writer.u8(6).str(name),
            ChatResponse::Refused(reason) => writer.u8(7).str(reason),
        };
        writer.finish()
    }

    /// Decodes a response.
    pub fn decode(bytes: &[u8]) -> Result<ChatResponse, DecodeError> {
        let mut reader = Reader::new(bytes);
        let flag = |reader: &mut Reader<'_>, field| match reader.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(DecodeError::UnknownTag { field, tag }),
        };
        let response = match reader.u8("response tag")? {
            0 => ChatResponse::Done,
            1 => {
                let truncated = flag(&mut reader, "truncated")?;
                let count = reader.count("account names", LIST_ACCOUNTS_MAX)?;
                let mut names = Vec::with_capacity(count);
                for _ in 0..count {
                    names.push(reader.str("account")?.to_string());
                }
                ChatResponse::Accounts { names, truncated }
            }
            2 => ChatResponse::Sent(reader.u64("message id")?),
            3 => {
                let more = flag(&mut reader, "more")?;
                let count = reader.count("messages", FETCH_MESSAGES_MAX)?;
                let mut messages = Vec::with_capacity(count);
                for _ in 0..count {
                    messages.push(Message {
                        id: reader.u64("message id")?,
                        sender: reader.str("sender")?.to_string(),
                        body: reader.str("body")?.to_string(),
                    });
                }
                ChatResponse::Fetched { messages, more }
            }
            4 => ChatResponse::Deleted(reader.u64("deleted count")?),
            5 => ChatResponse::NoSuchAccount(reader.str("account")?.to_string()),
            6 => ChatResponse::AccountExists(reader.str("account")?.to_string()),
            7 => ChatResponse::Refused(reader.str("reason")?.to_string()),
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

    /// The reason of a refusal (no such account, account exists, a limit),
    /// as a person reads it; `None` for an answer that did something.
    pub fn refusal(&self) -> Option<String> {
        match self {
            ChatResponse::NoSuchAccount(name) => Some(format!("no account named {name:?}")),
            ChatResponse::AccountExists(name) => {
                Some(format!("an account named {name:?} already exists"))
            }
            ChatResponse::Refused(reason) => Some(reason.clone()),
            _ => None,
        }
    }
}

/// A message in a mailbox.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stored {
    sender: String,
    body: String,
    delivered: bool,
}

/// The chat state machine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chat {
    /// Account → its mailbox, message id → message (so oldest first).
    accounts: BTreeMap<String, BTreeMap<u64, Stored>>,
    /// Messages held, over every mailbox.
    messages: usize,
    /// The last message id handed out (0: none yet).
    last_id: u64,
    /// Planted bug: fetch is answered as a read, from this replica's own
    /// state, and marks nothing.
    fetch_as_read: bool,
}

impl Chat {
    /// No accounts yet.
    pub fn new() -> Self {
        Chat::default()
    }

    /// Chat with a planted bug, for measuring the simulator's delivery
    /// checks: `fetch` is served on the read path (no log entry) from the
    /// answering replica's state, and marks nothing delivered, so the same
    /// message is delivered again by the next fetch. Used together with a
    /// client that sends `fetch` as a read.
    pub fn with_fetch_as_read() -> Self {
        Chat {
            fetch_as_read: true,
            ..Chat::default()
        }
    }

    /// Whether `account` exists.
    pub fn has_account(&self, account: &str) -> bool {
        self.accounts.contains_key(account)
    }

    /// Undelivered messages waiting for `account` (0 when it does not
    /// exist).
    pub fn undelivered(&self, account: &str) -> usize {
        self.accounts.get(account).map_or(0, |mailbox| {
            mailbox.values().filter(|m| !m.delivered).count()
        })
    }

    fn list(&self, pattern: &str) -> ChatResponse {
        let mut names = Vec::new();
        let mut truncated = false;
        for name in self.accounts.keys() {
            if glob_matches(pattern, name) {
                if names.len() == LIST_ACCOUNTS_MAX {
                    truncated = true;
                    break;
                }
                names.push(name.clone());
            }
        }
        ChatResponse::Accounts { names, truncated }
    }

    /// The oldest undelivered messages of `account`, marked delivered when
    /// `mark`.
    fn fetch(&mut self, account: &str, mark: bool) -> ChatResponse {
        let Some(mailbox) = self.accounts.get_mut(account) else {
            return ChatResponse::NoSuchAccount(account.to_string());
        };
        let mut messages = Vec::new();
        let mut more = false;
        for (&id, stored) in mailbox.iter_mut().filter(|(_, m)| !m.delivered) {
            if messages.len() == FETCH_MESSAGES_MAX {
                more = true;
                break;
            }
            stored.delivered |= mark;
            messages.push(Message {
                id,
                sender: stored.sender.clone(),
                body: stored.body.clone(),
            });
        }
        ChatResponse::Fetched { messages, more }
    }

    fn send(&mut self, sender: String, recipient: String, body: String) -> ChatResponse {
        if !self.accounts.contains_key(&sender) {
            return ChatResponse::NoSuchAccount(sender);
        }
        if self.messages >= MESSAGES_MAX {
            return ChatResponse::Refused(format!(
                "the service holds its limit of {MESSAGES_MAX} messages; recipients must delete delivered ones"
            ));
        }
        let Some(id) = self.last_id.checked_add(1) else {
            return ChatResponse::Refused("message ids are exhausted".to_string());
        };
        let Some(mailbox) = self.accounts.get_mut(&recipient) else {
            return ChatResponse::NoSuchAccount(recipient);
        };
        if mailbox.len() >= MAILBOX_MESSAGES_MAX {
            return ChatResponse::Refused(format!(
                "{recipient}'s mailbox holds its limit of {MAILBOX_MESSAGES_MAX} messages; {recipient} must delete delivered ones"
            ));
        }
        mailbox.insert(
            id,
            Stored {
                sender,
                body,
                delivered: false,
            },
        );
        self.last_id = id;
        self.messages += 1;
        ChatResponse::Sent(id)
    }

    fn delete_messages(&mut self, account: &str, ids: &[u64]) -> ChatResponse {
        let Some(mailbox) = self.accounts.get_mut(account) else {
            return ChatResponse::NoSuchAccount(account.to_string());
        };
        if let Some(id) = ids
            .iter()
            .find(|id| mailbox.get(id).is_some_and(|m| !m.delivered))
        {
            return ChatResponse::Refused(format!(
                "message {id} has not been delivered yet; fetch it before deleting it"
            ));
        }
        let before = mailbox.len();
        if ids.is_empty() {
            mailbox.retain(|_, m| !m.delivered);
        } else {
            for id in ids {
                mailbox.remove(id);
            }
        }
        let deleted = before - mailbox.len();
        self.messages -= deleted;
        ChatResponse::Deleted(deleted as u64)
    }

    fn execute(&mut self, request: ChatRequest) -> ChatResponse {
        if let Err(reason) = request.validate() {
            return ChatResponse::Refused(reason);
        }
        match request {
            ChatRequest::CreateAccount { account } => {
                if self.accounts.contains_key(&account) {
                    return ChatResponse::AccountExists(account);
                }
                if self.accounts.len() >= ACCOUNTS_MAX {
                    return ChatResponse::Refused(format!(
                        "the service holds its limit of {ACCOUNTS_MAX} accounts; delete some first"
                    ));
                }
                self.accounts.insert(account, BTreeMap::new());
                ChatResponse::Done
            }
            ChatRequest::DeleteAccount { account } => match self.accounts.remove(&account) {
                Some(mailbox) => {
                    self.messages -= mailbox.len();
                    ChatResponse::Done
                }
                None => ChatResponse::NoSuchAccount(account),
            },
            ChatRequest::ListAccounts { pattern } => self.list(&pattern),
            ChatRequest::Send {
                sender,
                recipient,
                body,
            } => self.send(sender, recipient, body),
            ChatRequest::Fetch { account } => self.fetch(&account, true),
            ChatRequest::DeleteMessages { account, ids } => self.delete_messages(&account, &ids),
        }
    }
}

impl StateMachine for Chat {
    fn apply(&mut self, _index: Index, command: &[u8]) -> Bytes {
        match ChatRequest::decode(command) {
            Ok((_, request)) => self.execute(request).encode(),
            Err(error) => ChatResponse::Refused(format!("malformed request: {error}")).encode(),
        }
    }

    fn query(&self, request: &[u8]) -> Option<Bytes> {
        let (_, request) = ChatRequest::decode(request).ok()?;
        if let Err(reason) = request.validate() {
            return request
                .is_read()
                .then(|| ChatResponse::Refused(reason).encode());
        }
        match request {
            ChatRequest::ListAccounts { pattern } => Some(self.list(&pattern).encode()),
            // The planted bug: this replica's undelivered messages, nothing
            // marked (a clone, since a query cannot change the state).
            ChatRequest::Fetch { account } if self.fetch_as_read => {
                Some(self.clone().fetch(&account, false).encode())
            }
            _ => None,
        }
    }

    /// Layout: version byte, last message id (u64), account count (u64),
    /// then each account's name, message count (u64) and messages (id
    /// u64, sender, body, delivered byte).
    fn snapshot(&self) -> Bytes {
        let mut writer = Writer::new();
        writer
            .u8(SNAPSHOT_VERSION)
            .u64(self.last_id)
            .u64(self.accounts.len() as u64);
        for (name, mailbox) in &self.accounts {
            writer.str(name).u64(mailbox.len() as u64);
            for (id, stored) in mailbox {
                writer
                    .u64(*id)
                    .str(&stored.sender)
                    .str(&stored.body)
                    .u8(stored.delivered as u8);
            }
        }
        writer.finish()
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
        let mut snapshot = SnapshotReader::open(snapshot, "chat", SNAPSHOT_VERSION)?;
        let last_id = snapshot
            .reader
            .u64("last message id")
            .map_err(|e| snapshot.error(e))?;
        let count = snapshot.count("account count", "accounts", ACCOUNTS_MAX)?;
        let mut accounts = BTreeMap::new();
        let mut messages = 0;
        for _ in 0..count {
            let name = snapshot.string("account")?;
            let held = snapshot.count(
                "message count",
                "messages in a mailbox",
                MAILBOX_MESSAGES_MAX,
            )?;
            messages += held;
            if messages > MESSAGES_MAX {
                return Err(RestoreError::new(format!(
                    "chat snapshot holds more than the limit of {MESSAGES_MAX} messages"
                )));
            }
            let mut mailbox = BTreeMap::new();
            for _ in 0..held {
                let id = snapshot
                    .reader
                    .u64("message id")
                    .map_err(|e| snapshot.error(e))?;
                let sender = snapshot.string("sender")?;
                let body = snapshot.string("body")?;
                let delivered = match snapshot
                    .reader
                    .u8("delivered")
                    .map_err(|e| snapshot.error(e))?
                {
                    0 => false,
                    1 => true,
                    tag => {
                        return Err(snapshot.error(DecodeError::UnknownTag {
                            field: "delivered",
                            tag,
                        }))
                    }
                };
                if id == 0 || id > last_id {
                    return Err(RestoreError::new(format!(
                        "chat snapshot holds message id {id}, outside 1..={last_id}"
                    )));
                }
                mailbox.insert(
                    id,
                    Stored {
                        sender,
                        body,
                        delivered,
                    },
                );
            }
            accounts.insert(name, mailbox);
        }
        snapshot.end()?;
        self.accounts = accounts;
        self.messages = messages;
        self.last_id = last_id;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(chat: &mut Chat, index: Index, request: ChatRequest) -> ChatResponse {
        ChatResponse::decode(&chat.apply(index, &request.encode(index))).unwrap()
    }

    fn create(chat: &mut Chat, account: &str) -> ChatResponse {
        apply(
            chat,
            0,
            ChatRequest::CreateAccount {
                account: account.into(),
            },
        )
    }

    fn send(chat: &mut Chat, sender: &str, recipient: &str, body: &str) -> ChatResponse {
        apply(
            chat,
            0,
            ChatRequest::Send {
                sender: sender.into(),
                recipient: recipient.into(),
                body: body.into(),
            },
        )
    }

    fn fetch(chat: &mut Chat, account: &str) -> ChatResponse {
        apply(
            chat,
            0,
            ChatRequest::Fetch {
                account: account.into(),
            },
        )
    }

    fn bodies(response: &ChatResponse) -> Vec<&str> {
        match response {
            ChatResponse::Fetched { messages, .. } => {
                messages.iter().map(|m| m.body.as_str()).collect()
            }
            other => panic!("expected messages, got {other:?}"),
        }
    }

    #[test]
    fn requests_and_responses_round_trip_and_truncations_fail() {
        let requests = [
            ChatRequest::CreateAccount {
                account: "ann".into(),
            },
            ChatRequest::DeleteAccount {
                account: "ann".into(),
            },
            ChatRequest::ListAccounts {
                pattern: "a*".into(),
            },
            ChatRequest::Send {
                sender: "ann".into(),
                recipient: "bob".into(),
                body: "hi".into(),
            },
            ChatRequest::Fetch {
                account: "bob".into(),
            },
            ChatRequest::DeleteMessages {
                account: "bob".into(),
                ids: vec![1, 7],
            },
        ];
        for request in requests {
            let bytes = request.encode(9);
            assert_eq!(ChatRequest::decode(&bytes), Ok((9, request.clone())));
            for cut in 0..bytes.len() {
                assert!(ChatRequest::decode(&bytes[..cut]).is_err(), "{request:?}");
            }
        }
        let responses = [
            ChatResponse::Done,
            ChatResponse::Accounts {
                names: vec!["a".into(), "b".into()],
                truncated: true,
            },
            ChatResponse::Sent(3),
            ChatResponse::Fetched {
                messages: vec![Message {
                    id: 3,
                    sender: "ann".into(),
                    body: "hi".into(),
                }],
                more: false,
            },
            ChatResponse::Deleted(2),
            ChatResponse::NoSuchAccount("x".into()),
            ChatResponse::AccountExists("y".into()),
            ChatResponse::Refused("no".into()),
        ];
        for response in responses {
            let bytes = response.encode();
            assert_eq!(ChatResponse::decode(&bytes), Ok(response.clone()));
            for cut in 0..bytes.len() {
                assert!(ChatResponse::decode(&bytes[..cut]).is_err());
            }
        }
        // A count above its limit is refused before allocating.
        let huge = Writer::new()
            .u64(1)
            .u8(TAG_DELETE_MESSAGES)
            .str("bob")
            .u32(u32::MAX)
            .finish();
        assert!(matches!(
            ChatRequest::decode(&huge),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    #[test]
    fn globs_match_stars_and_question_marks() {
        assert!(glob_matches("*", ""));
        assert!(glob_matches("*", "anything"));
        assert!(glob_matches("a*", "ann"));
        assert!(!glob_matches("a*", "bob"));
        assert!(glob_matches("?o?", "bob"));
        assert!(!glob_matches("?o?", "bobby"));
        assert!(glob_matches("*b*y", "bobby"));
        assert!(glob_matches("a*b*c", "aXbYbZc"));
        assert!(!glob_matches("a*b*c", "aXbYbZ"));
        assert!(glob_matches("exact", "exact"));
        assert!(!glob_matches("exact", "exactly"));
        // Worst case for backtracking stays bounded by length product.
        let name = "a".repeat(ACCOUNT_BYTES_MAX);
        let pattern = format!("{}b", "*a".repeat(PATTERN_BYTES_MAX / 2 - 1));
        assert!(!glob_matches(&pattern, &name));
    }

    #[test]
    fn messages_queue_until_fetched_and_are_delivered_once_in_order() {
        let mut chat = Chat::new();
        assert_eq!(create(&mut chat, "ann"), ChatResponse::Done);
        assert_eq!(create(&mut chat, "bob"), ChatResponse::Done);
        assert_eq!(
            create(&mut chat, "bob"),
            ChatResponse::AccountExists("bob".into())
        );
        assert_eq!(send(&mut chat, "ann", "bob", "one"), ChatResponse::Sent(1));
        assert_eq!(send(&mut chat, "ann", "bob", "two"), ChatResponse::Sent(2));
        assert_eq!(
            send(&mut chat, "ann", "eve", "x"),
            ChatResponse::NoSuchAccount("eve".into())
        );
        assert_eq!(
            send(&mut chat, "eve", "bob", "x"),
            ChatResponse::NoSuchAccount("eve".into())
        );
        assert_eq!(chat.undelivered("bob"), 2);
        assert_eq!(bodies(&fetch(&mut chat, "bob")), ["one", "two"]);
        assert!(bodies(&fetch(&mut chat, "bob")).is_empty());
        assert_eq!(
            send(&mut chat, "bob", "bob", "three"),
            ChatResponse::Sent(3)
        );
        // An undelivered message cannot be deleted; delivered ones can.
        let delete = |ids: Vec<u64>| ChatRequest::DeleteMessages {
            account: "bob".into(),
            ids,
        };
        assert!(matches!(
            apply(&mut chat, 0, delete(vec![3])),
            ChatResponse::Refused(_)
        ));
        assert_eq!(
            apply(&mut chat, 0, delete(vec![1])),
            ChatResponse::Deleted(1)
        );
        assert_eq!(
            apply(&mut chat, 0, delete(vec![])),
            ChatResponse::Deleted(1)
        );
        assert_eq!(bodies(&fetch(&mut chat, "bob")), ["three"]);
        assert_eq!(chat.messages, 1);
        // Deleting an account drops its mailbox; it then receives nothing.
        assert_eq!(
            apply(
                &mut chat,
                0,
                ChatRequest::DeleteAccount {
                    account: "bob".into()
                }
            ),
            ChatResponse::Done
        );
        assert_eq!(chat.messages, 0);
        assert_eq!(
            send(&mut chat, "ann", "bob", "late"),
            ChatResponse::NoSuchAccount("bob".into())
        );
        assert_eq!(
            fetch(&mut chat, "bob"),
            ChatResponse::NoSuchAccount("bob".into())
        );
    }

    #[test]
    fn limits_are_refused_with_what_to_change() {
        let mut chat = Chat::new();
        for bad in ["", "a b", "a*", &"x".repeat(ACCOUNT_BYTES_MAX + 1)] {
            match create(&mut chat, bad) {
                ChatResponse::Refused(reason) => assert!(reason.contains("account name")),
                other => panic!("{bad:?} accepted: {other:?}"),
            }
        }
        create(&mut chat, "ann");
        match send(&mut chat, "ann", "ann", &"x".repeat(BODY_BYTES_MAX + 1)) {
            ChatResponse::Refused(reason) => assert!(reason.contains("body")),
            other => panic!("oversized body accepted: {other:?}"),
        }
        for _ in 0..MAILBOX_MESSAGES_MAX {
            assert!(matches!(
                send(&mut chat, "ann", "ann", "x"),
                ChatResponse::Sent(_)
            ));
        }
        match send(&mut chat, "ann", "ann", "x") {
            ChatResponse::Refused(reason) => assert!(reason.contains("mailbox")),
            other => panic!("a full mailbox accepted a message: {other:?}"),
        }
        // One fetch returns at most FETCH_MESSAGES_MAX and says more wait.
        match fetch(&mut chat, "ann") {
            ChatResponse::Fetched { messages, more } => {
                assert_eq!(messages.len(), FETCH_MESSAGES_MAX);
                assert!(more);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            chat.undelivered("ann"),
            MAILBOX_MESSAGES_MAX - FETCH_MESSAGES_MAX
        );
        assert!(matches!(
            apply(
                &mut chat,
                0,
                ChatRequest::ListAccounts { pattern: "".into() }
            ),
            ChatResponse::Refused(_)
        ));
        assert!(matches!(
            ChatResponse::decode(&chat.apply(0, b"junk")).unwrap(),
            ChatResponse::Refused(_)
        ));
    }

    #[test]
    fn list_is_a_read_and_fetch_is_not() {
        let mut chat = Chat::new();
        for name in ["ann", "anna", "bob"] {
            create(&mut chat, name);
        }
        let list = ChatRequest::ListAccounts {
            pattern: "an*".into(),
        };
        assert_eq!(
            ChatResponse::decode(&chat.query(&list.encode(0)).unwrap()).unwrap(),
            ChatResponse::Accounts {
                names: vec!["ann".into(), "anna".into()],
                truncated: false
            }
        );
        let fetch = ChatRequest::Fetch {
            account: "bob".into(),
        };
        assert!(chat.query(&fetch.encode(0)).is_none());
        assert!(!fetch.is_read());
    }

    #[test]
    fn snapshots_restore_exactly_and_bad_ones_are_refused() {
        let mut chat = Chat::new();
        create(&mut chat, "ann");
        create(&mut chat, "bob");
        send(&mut chat, "ann", "bob", "one");
        send(&mut chat, "ann", "bob", "two");
        fetch(&mut chat, "bob");
        send(&mut chat, "bob", "ann", "three");
        let snapshot = chat.snapshot();
        let mut copy = Chat::new();
        copy.restore(&snapshot).unwrap();
        assert_eq!(copy, chat);
        assert_eq!(send(&mut copy, "ann", "bob", "four"), ChatResponse::Sent(4));
        for cut in 0..snapshot.len() {
            assert!(Chat::new().restore(&snapshot[..cut]).is_err());
        }
        let mut wrong_version = snapshot.to_vec();
        wrong_version[0] = 9;
        assert!(Chat::new().restore(&wrong_version).is_err());
    }

    #[test]
    fn the_planted_bug_fetches_without_marking() {
        let mut chat = Chat::with_fetch_as_read();
        create(&mut chat, "ann");
        send(&mut chat, "ann", "ann", "one");
        let fetch = ChatRequest::Fetch {
            account: "ann".into(),
        }
        .encode(0);
        let first = ChatResponse::decode(&chat.query(&fetch).unwrap()).unwrap();
        let second = ChatResponse::decode(&chat.query(&fetch).unwrap()).unwrap();
        assert_eq!(bodies(&first), ["one"]);
        assert_eq!(first, second);
    }
}
