//! Chat: accounts, and messages between them queued in the recipient's
//! mailbox until the recipient fetches them.
//!
//! On many groups (`--groups N`, [`crate::sharded`]) an account lives in
//! the group of its name up to the first `.` (`team7.ann`, `team7.bob`
//! share one); a `send` between accounts of two groups is refused (the
//! sender's account is checked and the recipient's mailbox written in one
//! log entry of one group), as is `list_accounts` (it would read every
//! group); message ids then increase within a group, not across groups.
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

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::service::{one_to, Applied, Outcome, Service, ServiceRequest};
#[cfg(feature = "cli")]
use crate::service::{Out, Printed};

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

/// Whether `name` is a valid account name: 1 to [`ACCOUNT_BYTES_MAX`]
/// bytes of ASCII letters, digits, `_`, `.` and `-` (so no name holds a
/// glob character).
fn validate_account(name: &str) -> Result<(), String> {
    one_to(
        "an account name has",
        name.len(),
        ACCOUNT_BYTES_MAX,
        "bytes",
    )?;
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

/// A request to the chat service (and its command line).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Subcommand))]
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
    /// The accounts whose name matches `pattern` (a glob of `*` and `?`),
    /// one per line, sorted.
    ListAccounts {
        /// The glob.
        #[cfg_attr(feature = "cli", arg(default_value = "*"))]
        pattern: String,
    },
    /// Queue `body` in `recipient`'s mailbox; prints the message's id.
    Send {
        /// The sending account.
        sender: String,
        /// The receiving account.
        recipient: String,
        /// The text.
        body: String,
    },
    /// Return the oldest undelivered messages of `account` and mark them
    /// delivered; prints `id<TAB>sender<TAB>body` for each, oldest first.
    Fetch {
        /// The account.
        account: String,
    },
    /// Remove delivered messages of `account` (every delivered one when
    /// `ids` is empty); prints how many were removed.
    DeleteMessages {
        /// The account.
        account: String,
        /// The messages' ids.
        ids: Vec<u64>,
    },
}

impl ChatRequest {
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
}

impl ServiceRequest for ChatRequest {
    /// Only `list_accounts`: a fetch marks what it returns as delivered.
    fn is_read(&self) -> bool {
        matches!(self, ChatRequest::ListAccounts { .. })
    }

    /// Checks the limits; the error says what to change.
    fn validate(&self) -> Result<(), String> {
        match self {
            ChatRequest::CreateAccount { account }
            | ChatRequest::DeleteAccount { account }
            | ChatRequest::Fetch { account } => validate_account(account),
            ChatRequest::ListAccounts { pattern } => {
                one_to("a pattern has", pattern.len(), PATTERN_BYTES_MAX, "bytes")
            }
            ChatRequest::Send {
                sender,
                recipient,
                body,
            } => {
                validate_account(sender)?;
                validate_account(recipient)?;
                one_to("a message body has", body.len(), BODY_BYTES_MAX, "bytes")
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
}

/// One message as a fetch returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Cluster-wide id, increasing in the order messages were sent.
    pub id: u64,
    /// The sending account.
    pub sender: String,
    /// The text.
    pub body: String,
}

/// The chat service's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
}

/// A message in a mailbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Stored {
    sender: String,
    body: String,
    delivered: bool,
}

/// Accounts and their mailboxes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chat {
    /// Account → its mailbox, message id → message (so oldest first).
    accounts: BTreeMap<String, BTreeMap<u64, Stored>>,
    /// Messages held, over every mailbox.
    messages: usize,
    /// The last message id handed out (0: none yet).
    last_id: u64,
}

impl Chat {
    /// Answers a read; with `planted`, the service's planted mistake
    /// (`crate::planted`): `fetch` is served as a read, from this
    /// replica's state (a copy: a read changes nothing), and marks nothing
    /// delivered, so the next fetch returns the same messages again (with
    /// a client that sends `fetch` as a read).
    pub(crate) fn read_as(&self, request: &ChatRequest, planted: bool) -> Option<Outcome<Self>> {
        match request {
            ChatRequest::ListAccounts { pattern } => Some(Ok(self.list(pattern))),
            ChatRequest::Fetch { account } if planted => {
                Some(Ok(self.clone().fetch(account, false)))
            }
            _ => None,
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

    fn send(
        &mut self,
        sender: String,
        recipient: String,
        body: String,
    ) -> Result<ChatResponse, String> {
        if !self.accounts.contains_key(&sender) {
            return Ok(ChatResponse::NoSuchAccount(sender));
        }
        if self.messages >= MESSAGES_MAX {
            return Err(format!(
                "the service holds its limit of {MESSAGES_MAX} messages; recipients must delete delivered ones"
            ));
        }
        let id = self
            .last_id
            .checked_add(1)
            .ok_or("message ids are exhausted")?;
        let Some(mailbox) = self.accounts.get_mut(&recipient) else {
            return Ok(ChatResponse::NoSuchAccount(recipient));
        };
        if mailbox.len() >= MAILBOX_MESSAGES_MAX {
            return Err(format!(
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
        Ok(ChatResponse::Sent(id))
    }

    fn delete_messages(&mut self, account: &str, ids: &[u64]) -> Result<ChatResponse, String> {
        let Some(mailbox) = self.accounts.get_mut(account) else {
            return Ok(ChatResponse::NoSuchAccount(account.to_string()));
        };
        if let Some(id) = ids
            .iter()
            .find(|id| mailbox.get(id).is_some_and(|m| !m.delivered))
        {
            return Err(format!(
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
        Ok(ChatResponse::Deleted(deleted as u64))
    }
}

impl Service for Chat {
    /// By account, hashed on its name up to the first `.` (so that
    /// `team7.ann` and `team7.bob` share a group: account names hold no
    /// hash tag braces); a send's sender and recipient must be of one
    /// group (the sender is checked and the recipient's mailbox written in
    /// one entry); a listing would read every group.
    fn placement(request: &ChatRequest) -> crate::sharded::Placement<'_> {
        use crate::sharded::Placement;
        fn home(account: &str) -> &[u8] {
            account.split('.').next().unwrap_or(account).as_bytes()
        }
        match request {
            ChatRequest::CreateAccount { account }
            | ChatRequest::DeleteAccount { account }
            | ChatRequest::Fetch { account }
            | ChatRequest::DeleteMessages { account, .. } => Placement::Key(home(account)),
            ChatRequest::Send {
                sender, recipient, ..
            } => Placement::Keys {
                what: "send",
                keys: vec![home(sender), home(recipient)],
            },
            ChatRequest::ListAccounts { .. } => Placement::Every {
                what: "list_accounts",
                why: "a listing reads the accounts of every group",
            },
        }
    }

    type Request = ChatRequest;
    type Response = ChatResponse;

    fn apply(&mut self, request: ChatRequest, _at: Applied) -> Result<ChatResponse, String> {
        match request {
            ChatRequest::CreateAccount { account } => {
                if self.accounts.contains_key(&account) {
                    return Ok(ChatResponse::AccountExists(account));
                }
                if self.accounts.len() >= ACCOUNTS_MAX {
                    return Err(format!(
                        "the service holds its limit of {ACCOUNTS_MAX} accounts; delete some first"
                    ));
                }
                self.accounts.insert(account, BTreeMap::new());
                Ok(ChatResponse::Done)
            }
            ChatRequest::DeleteAccount { account } => Ok(match self.accounts.remove(&account) {
                Some(mailbox) => {
                    self.messages -= mailbox.len();
                    ChatResponse::Done
                }
                None => ChatResponse::NoSuchAccount(account),
            }),
            ChatRequest::ListAccounts { pattern } => Ok(self.list(&pattern)),
            ChatRequest::Send {
                sender,
                recipient,
                body,
            } => self.send(sender, recipient, body),
            ChatRequest::Fetch { account } => Ok(self.fetch(&account, true)),
            ChatRequest::DeleteMessages { account, ids } => self.delete_messages(&account, &ids),
        }
    }

    fn read(&self, request: &ChatRequest) -> Option<Outcome<Self>> {
        self.read_as(request, false)
    }

    fn check_restored(&self) -> Result<(), String> {
        crate::service::at_most("accounts", self.accounts.len(), ACCOUNTS_MAX)?;
        let mut messages = 0;
        for (name, mailbox) in &self.accounts {
            validate_account(name)?;
            if mailbox.len() > MAILBOX_MESSAGES_MAX {
                return Err(format!(
                    "{name}'s mailbox holds {} messages, above the limit of {MAILBOX_MESSAGES_MAX}",
                    mailbox.len()
                ));
            }
            if let Some(id) = mailbox.keys().find(|&&id| id == 0 || id > self.last_id) {
                return Err(format!("message id {id}, outside 1..={}", self.last_id));
            }
            messages += mailbox.len();
        }
        if messages != self.messages || messages > MESSAGES_MAX {
            return Err(format!(
                "it holds {messages} messages but says {} (limit {MESSAGES_MAX})",
                self.messages
            ));
        }
        Ok(())
    }

    fn refusal(response: &ChatResponse) -> Option<String> {
        match response {
            ChatResponse::NoSuchAccount(name) => Some(format!("no account named {name:?}")),
            ChatResponse::AccountExists(name) => {
                Some(format!("an account named {name:?} already exists"))
            }
            _ => None,
        }
    }

    #[cfg(feature = "cli")]
    type Command = ChatRequest;

    #[cfg(feature = "cli")]
    fn show(_request: &Self::Request, response: Self::Response, out: &mut Out) -> Printed {
        let more = match response {
            ChatResponse::Accounts { names, truncated } => {
                for name in names {
                    writeln!(out, "{name}")?;
                }
                truncated.then_some("more accounts match; narrow the pattern")
            }
            ChatResponse::Sent(id) => {
                writeln!(out, "{id}")?;
                None
            }
            ChatResponse::Fetched { messages, more } => {
                for message in messages {
                    writeln!(out, "{}\t{}\t{}", message.id, message.sender, message.body)?;
                }
                more.then_some("more messages wait; fetch again")
            }
            ChatResponse::Deleted(count) => {
                writeln!(out, "{count}")?;
                None
            }
            // Refusals reach a client as errors (`refusal`).
            ChatResponse::Done
            | ChatResponse::NoSuchAccount(_)
            | ChatResponse::AccountExists(_) => None,
        };
        Ok(more.map_or(crate::Shown::Done, |note| {
            crate::Shown::Note(note.to_string())
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::{testing, ServiceMachine};
    use concord::state_machine::StateMachine;

    type Machine = ServiceMachine<Chat>;

    fn apply(chat: &mut Machine, index: u64, request: ChatRequest) -> Result<ChatResponse, String> {
        testing::apply(chat, index, &request)
    }

    fn create(chat: &mut Machine, account: &str) -> Result<ChatResponse, String> {
        let account = account.into();
        apply(chat, 0, ChatRequest::CreateAccount { account })
    }

    fn send(
        chat: &mut Machine,
        sender: &str,
        recipient: &str,
        body: &str,
    ) -> Result<ChatResponse, String> {
        let (sender, recipient, body) = (sender.into(), recipient.into(), body.into());
        apply(
            chat,
            0,
            ChatRequest::Send {
                sender,
                recipient,
                body,
            },
        )
    }

    fn fetch(chat: &mut Machine, account: &str) -> Result<ChatResponse, String> {
        let account = account.into();
        apply(chat, 0, ChatRequest::Fetch { account })
    }

    fn bodies(response: &Result<ChatResponse, String>) -> Vec<&str> {
        match response {
            Ok(ChatResponse::Fetched { messages, .. }) => {
                messages.iter().map(|m| m.body.as_str()).collect()
            }
            other => panic!("expected messages, got {other:?}"),
        }
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
        let mut chat = Machine::new();
        assert_eq!(create(&mut chat, "ann"), Ok(ChatResponse::Done));
        assert_eq!(create(&mut chat, "bob"), Ok(ChatResponse::Done));
        assert_eq!(
            create(&mut chat, "bob"),
            Ok(ChatResponse::AccountExists("bob".into()))
        );
        assert_eq!(
            send(&mut chat, "ann", "bob", "one"),
            Ok(ChatResponse::Sent(1))
        );
        assert_eq!(
            send(&mut chat, "ann", "bob", "two"),
            Ok(ChatResponse::Sent(2))
        );
        assert_eq!(
            send(&mut chat, "ann", "eve", "x"),
            Ok(ChatResponse::NoSuchAccount("eve".into()))
        );
        assert_eq!(
            send(&mut chat, "eve", "bob", "x"),
            Ok(ChatResponse::NoSuchAccount("eve".into()))
        );
        assert_eq!(chat.state().undelivered("bob"), 2);
        assert_eq!(bodies(&fetch(&mut chat, "bob")), ["one", "two"]);
        assert!(bodies(&fetch(&mut chat, "bob")).is_empty());
        assert_eq!(
            send(&mut chat, "bob", "bob", "three"),
            Ok(ChatResponse::Sent(3))
        );
        // An undelivered message cannot be deleted; delivered ones can.
        let delete = |ids: Vec<u64>| ChatRequest::DeleteMessages {
            account: "bob".into(),
            ids,
        };
        let reason = apply(&mut chat, 0, delete(vec![3])).unwrap_err();
        assert!(
            reason.contains("message 3 has not been delivered"),
            "{reason}"
        );
        assert_eq!(
            apply(&mut chat, 0, delete(vec![1])),
            Ok(ChatResponse::Deleted(1))
        );
        assert_eq!(
            apply(&mut chat, 0, delete(vec![])),
            Ok(ChatResponse::Deleted(1))
        );
        assert_eq!(bodies(&fetch(&mut chat, "bob")), ["three"]);
        assert_eq!(chat.state().messages, 1);
        // Deleting an account drops its mailbox; it then receives nothing.
        assert_eq!(
            apply(
                &mut chat,
                0,
                ChatRequest::DeleteAccount {
                    account: "bob".into()
                }
            ),
            Ok(ChatResponse::Done)
        );
        assert_eq!(chat.state().messages, 0);
        assert_eq!(
            send(&mut chat, "ann", "bob", "late"),
            Ok(ChatResponse::NoSuchAccount("bob".into()))
        );
        assert_eq!(
            fetch(&mut chat, "bob"),
            Ok(ChatResponse::NoSuchAccount("bob".into()))
        );
    }

    #[test]
    fn limits_are_refused_with_what_to_change() {
        let mut chat = Machine::new();
        for bad in ["", "a b", "a*", &"x".repeat(ACCOUNT_BYTES_MAX + 1)] {
            match create(&mut chat, bad) {
                Err(reason) => assert!(reason.contains("account name")),
                other => panic!("{bad:?} accepted: {other:?}"),
            }
        }
        create(&mut chat, "ann").unwrap();
        match send(&mut chat, "ann", "ann", &"x".repeat(BODY_BYTES_MAX + 1)) {
            Err(reason) => assert!(reason.contains("body")),
            other => panic!("oversized body accepted: {other:?}"),
        }
        for _ in 0..MAILBOX_MESSAGES_MAX {
            assert!(matches!(
                send(&mut chat, "ann", "ann", "x"),
                Ok(ChatResponse::Sent(_))
            ));
        }
        match send(&mut chat, "ann", "ann", "x") {
            Err(reason) => assert!(reason.contains("mailbox")),
            other => panic!("a full mailbox accepted a message: {other:?}"),
        }
        // One fetch returns at most FETCH_MESSAGES_MAX and says more wait.
        match fetch(&mut chat, "ann") {
            Ok(ChatResponse::Fetched { messages, more }) => {
                assert_eq!(messages.len(), FETCH_MESSAGES_MAX);
                assert!(more);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            chat.state().undelivered("ann"),
            MAILBOX_MESSAGES_MAX - FETCH_MESSAGES_MAX
        );
        let empty = ChatRequest::ListAccounts { pattern: "".into() };
        let reason = apply(&mut chat, 0, empty).unwrap_err();
        assert!(reason.contains("a pattern has 1 to"), "{reason}");
        let junk = chat.apply(0, b"junk");
        let reason = crate::codec::decode_answer::<Chat>(&junk)
            .unwrap()
            .unwrap_err();
        assert!(reason.contains("version 106"), "{reason}");
    }

    #[test]
    fn list_is_a_read_and_fetch_is_not() {
        let mut chat = Machine::new();
        for name in ["ann", "anna", "bob"] {
            create(&mut chat, name).unwrap();
        }
        let list = ChatRequest::ListAccounts {
            pattern: "an*".into(),
        };
        assert_eq!(
            testing::query(&chat, &list),
            Some(Ok(ChatResponse::Accounts {
                names: vec!["ann".into(), "anna".into()],
                truncated: false
            }))
        );
        let fetch = ChatRequest::Fetch {
            account: "bob".into(),
        };
        assert_eq!(testing::query(&chat, &fetch), None);
        assert!(!fetch.is_read());
    }

    #[test]
    fn snapshots_restore_exactly_and_bad_ones_are_refused() {
        let mut chat = Machine::new();
        create(&mut chat, "ann").unwrap();
        create(&mut chat, "bob").unwrap();
        send(&mut chat, "ann", "bob", "one").unwrap();
        send(&mut chat, "ann", "bob", "two").unwrap();
        fetch(&mut chat, "bob").unwrap();
        send(&mut chat, "bob", "ann", "three").unwrap();
        let mut copy = crate::machine::testing::restored_copy(&chat);
        assert_eq!(
            send(&mut copy, "ann", "bob", "four"),
            Ok(ChatResponse::Sent(4))
        );
        // A total that does not add up is refused.
        let mut lying = chat.state().clone();
        lying.messages += 1;
        let error = Machine::new()
            .restore(&crate::codec::encode_snapshot(&lying))
            .unwrap_err();
        assert!(error.to_string().contains("says 4"), "{error}");
    }

    #[cfg(feature = "planted-bugs")]
    #[test]
    fn the_planted_bug_fetches_without_marking() {
        let mut chat = Machine::with_planted_bug();
        create(&mut chat, "ann").unwrap();
        send(&mut chat, "ann", "ann", "one").unwrap();
        let fetch = ChatRequest::Fetch {
            account: "ann".into(),
        };
        let first = testing::query(&chat, &fetch).expect("served as a read");
        let second = testing::query(&chat, &fetch).expect("served as a read");
        assert_eq!(bodies(&first), ["one"]);
        assert_eq!(first, second);
    }
}
