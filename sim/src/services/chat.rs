//! The chat service's workload and invariants.
//!
//! Clients create and delete a few accounts (`a0`..), send messages
//! between them (each body unique: `m<client>.<number>`), fetch mailboxes,
//! delete delivered messages and list accounts. Checks at the end of a
//! run:
//!
//! * **delivered once**: no message is returned by two fetches (or twice
//!   by one), and every message a fetch returns was sent to that account
//!   by a send not known to have failed.
//! * **nothing lost**: a message whose send was acknowledged is returned
//!   by a fetch of its recipient called after the send returned, unless
//!   another fetch that may have come first returned it, a fetch with an
//!   unknown outcome may have taken it, the recipient may have been
//!   deleted meanwhile, or the fetch said more messages wait.
//! * **per-sender order**: one client's messages to one recipient are
//!   delivered in the order the client sent them (a client sends one at a
//!   time), within a fetch and across fetches that follow each other in
//!   real time, and their ids increase in that order.
//! * **a deleted account receives nothing**: after `delete_account(R)` was
//!   acknowledged, a send to `R` or a fetch of `R` is refused (no such
//!   account) unless a `create_account(R)` may have come after the
//!   delete; and no message sent before the delete is ever fetched after
//!   it.
//! * `list_accounts` returns sorted names that match its pattern, and a
//!   valid request is never refused for a limit.

use std::collections::BTreeMap;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use concord_services::chat::{glob_matches, Chat, ChatRequest, ChatResponse, Message};
use concord_services::ServiceRequest;

use super::workload::{Answer, Call, Completed, Next, ServiceWorkload, Violations};
use crate::workload::WorkloadReport;

/// Accounts (`a0`..).
pub const ACCOUNTS: usize = 4;
/// Patterns `list_accounts` draws from.
const PATTERNS: [&str; 4] = ["*", "a?", "a1*", "*2"];

/// When an operation was called and, if it completed, returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Interval {
    call_ns: u64,
    return_ns: Option<u64>,
}

/// How an operation ended, as far as the client knows.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    /// It completed with this response.
    Done(ChatResponse),
    /// Refused with this reason (a valid request: reported by the
    /// response check); nothing changed.
    Refused(String),
    /// Definitely not applied.
    Failed,
    /// Applied once or never.
    Unknown,
}

#[derive(Clone, Debug)]
struct Recorded {
    client: usize,
    /// The client's operation number (its sends are in this order).
    number: u64,
    request: ChatRequest,
    interval: Interval,
    outcome: Outcome,
}

impl Recorded {
    /// Whether it may have been applied with effect `done`.
    fn may_have(&self, done: impl Fn(&ChatResponse) -> bool) -> bool {
        match &self.outcome {
            Outcome::Done(response) => done(response),
            Outcome::Refused(_) | Outcome::Failed => false,
            Outcome::Unknown => true,
        }
    }

    fn acknowledged(&self, done: impl Fn(&ChatResponse) -> bool) -> bool {
        matches!(&self.outcome, Outcome::Done(response) if done(response))
    }
}

/// One message a fetch returned: (the fetch's index in the record, the
/// message id, the sending client's operation number).
type Delivery = (usize, u64, u64);

/// Clients of the chat service; checks its invariants at the end.
#[derive(Clone, Debug)]
pub struct ChatWorkload {
    ops: Vec<Recorded>,
    /// Ids each account's fetches returned, for deleting them later.
    fetched_ids: BTreeMap<String, Vec<u64>>,
    violations: Violations,
    /// The planted client half of the fetch bug: send `fetch` as a read.
    fetch_as_read: bool,
}

impl ChatWorkload {
    /// A workload; `fetch_as_read` plants the client half of the fetch
    /// bug.
    pub fn new(fetch_as_read: bool) -> Self {
        ChatWorkload {
            ops: Vec::new(),
            fetched_ids: BTreeMap::new(),
            violations: Violations::default(),
            fetch_as_read,
        }
    }

    /// Messages acknowledged as sent.
    pub fn messages_sent(&self) -> usize {
        self.ops
            .iter()
            .filter(|op| op.acknowledged(|r| matches!(r, ChatResponse::Sent(_))))
            .count()
    }

    /// Messages fetches returned.
    pub fn messages_delivered(&self) -> usize {
        self.ops
            .iter()
            .filter_map(|op| match &op.outcome {
                Outcome::Done(ChatResponse::Fetched { messages, .. }) => Some(messages.len()),
                _ => None,
            })
            .sum()
    }

    fn pick(&mut self, client: usize, number: u64, rng: &mut ChaCha8Rng) -> ChatRequest {
        let account = format!("a{}", rng.gen_range(0..ACCOUNTS));
        match rng.gen_range(0..40u32) {
            0..=3 => ChatRequest::CreateAccount { account },
            4 => ChatRequest::DeleteAccount { account },
            5..=6 => ChatRequest::ListAccounts {
                pattern: PATTERNS[rng.gen_range(0..PATTERNS.len())].to_string(),
            },
            7..=22 => ChatRequest::Send {
                sender: format!("a{}", rng.gen_range(0..ACCOUNTS)),
                recipient: account,
                body: format!("m{client}.{number}"),
            },
            23..=36 => ChatRequest::Fetch { account },
            _ => {
                let known = self.fetched_ids.entry(account.clone()).or_default();
                let ids = if rng.gen_bool(0.25) || known.is_empty() {
                    Vec::new()
                } else {
                    let take = rng.gen_range(1..=known.len().min(4));
                    known.drain(..take).collect()
                };
                ChatRequest::DeleteMessages { account, ids }
            }
        }
    }

    /// Completed fetches: (op index, account, messages, more).
    fn fetches(&self) -> Vec<(usize, &str, &[Message], bool)> {
        self.ops
            .iter()
            .enumerate()
            .filter_map(|(i, op)| match (&op.request, &op.outcome) {
                (
                    ChatRequest::Fetch { account },
                    Outcome::Done(ChatResponse::Fetched { messages, more }),
                ) => Some((i, account.as_str(), messages.as_slice(), *more)),
                _ => None,
            })
            .collect()
    }

    /// Sends by body.
    fn sends(&self) -> BTreeMap<&str, &Recorded> {
        self.ops
            .iter()
            .filter_map(|op| match &op.request {
                ChatRequest::Send { body, .. } => Some((body.as_str(), op)),
                _ => None,
            })
            .collect()
    }

    fn check_delivered_once(&self, found: &mut Vec<String>) {
        let sends = self.sends();
        let mut delivered: BTreeMap<&str, usize> = BTreeMap::new();
        for (index, account, messages, _) in self.fetches() {
            let fetch = &self.ops[index];
            for message in messages {
                if let Some(first) = delivered.insert(&message.body, index) {
                    found.push(format!(
                        "delivered twice: message {:?} (id {}) to {account} by client {}'s fetch (called at {} ns) and again by client {}'s fetch (called at {} ns)",
                        message.body, message.id, self.ops[first].client, self.ops[first].interval.call_ns, fetch.client, fetch.interval.call_ns
                    ));
                }
                let Some(send) = sends.get(message.body.as_str()) else {
                    found.push(format!(
                        "delivered but never sent: {account}'s fetch returned {message:?}"
                    ));
                    continue;
                };
                let ChatRequest::Send { recipient, .. } = &send.request else {
                    continue;
                };
                if recipient != account
                    || !send.may_have(|r| matches!(r, ChatResponse::Sent(_)))
                    || send.interval.call_ns > fetch.interval.return_ns.unwrap_or(u64::MAX)
                {
                    found.push(format!(
                        "delivered but never sent: {account}'s fetch (called at {} ns) returned {:?}, whose send to {recipient} ended {:?}",
                        fetch.interval.call_ns, message.body, send.outcome
                    ));
                }
            }
        }
    }

    /// Whether some operation on `account` matching `what` may have taken
    /// effect before `before_ns`.
    fn any_before(&self, account: &str, before_ns: u64, what: impl Fn(&Recorded) -> bool) -> bool {
        self.ops.iter().any(|op| {
            op.request.account() == Some(account) && op.interval.call_ns < before_ns && what(op)
        })
    }

    fn check_nothing_lost(&self, found: &mut Vec<String>) {
        let fetches = self.fetches();
        let delivered_by: BTreeMap<&str, usize> = fetches
            .iter()
            .flat_map(|&(index, _, messages, _)| {
                messages.iter().map(move |m| (m.body.as_str(), index))
            })
            .collect();
        for send in &self.ops {
            let (
                ChatRequest::Send {
                    recipient, body, ..
                },
                Outcome::Done(ChatResponse::Sent(_)),
            ) = (&send.request, &send.outcome)
            else {
                continue;
            };
            let Some(sent_ns) = send.interval.return_ns else {
                continue;
            };
            for &(index, account, messages, more) in &fetches {
                let fetch = &self.ops[index];
                let fetch_return = fetch.interval.return_ns.unwrap_or(u64::MAX);
                if account != recipient
                    || fetch.interval.call_ns <= sent_ns
                    || more
                    || messages.iter().any(|m| &m.body == body)
                {
                    continue;
                }
                let earlier = delivered_by
                    .get(body.as_str())
                    .is_some_and(|&other| self.ops[other].interval.call_ns < fetch_return);
                let excused = earlier
                    || self.any_before(account, fetch_return, |op| match &op.request {
                        ChatRequest::Fetch { .. } => op.outcome == Outcome::Unknown,
                        ChatRequest::DeleteAccount { .. } => {
                            op.may_have(|r| *r == ChatResponse::Done)
                        }
                        _ => false,
                    });
                if !excused {
                    found.push(format!(
                        "acknowledged message lost: {body:?} to {recipient} (acknowledged at {sent_ns} ns) is missing from client {}'s fetch called at {} ns, and no fetch that may have come first returned it",
                        fetch.client, fetch.interval.call_ns
                    ));
                    break;
                }
            }
        }
    }

    fn check_order(&self, found: &mut Vec<String>) {
        // (recipient, sending client) → deliveries (fetch index, message
        // id, the client's operation number).
        let sends = self.sends();
        let mut deliveries: BTreeMap<(&str, usize), Vec<Delivery>> = BTreeMap::new();
        for (index, account, messages, _) in self.fetches() {
            let mut last_id = 0;
            for message in messages {
                if message.id <= last_id {
                    found.push(format!(
                        "per-sender order: {account}'s fetch returned id {} after id {last_id}",
                        message.id
                    ));
                }
                last_id = message.id;
                if let Some(send) = sends.get(message.body.as_str()) {
                    deliveries.entry((account, send.client)).or_default().push((
                        index,
                        message.id,
                        send.number,
                    ));
                }
            }
        }
        for ((account, client), seen) in &deliveries {
            for a in seen {
                for b in seen {
                    let (fa, fb) = (&self.ops[a.0], &self.ops[b.0]);
                    let a_first = if a.0 == b.0 {
                        a.1 < b.1
                    } else {
                        fa.interval
                            .return_ns
                            .is_some_and(|ret| ret < fb.interval.call_ns)
                    };
                    if a_first && a.2 > b.2 {
                        found.push(format!(
                            "per-sender order: client {client}'s message number {} to {account} was delivered before its earlier message number {}",
                            a.2, b.2
                        ));
                    }
                }
            }
        }
        // Ids of one client's acknowledged sends to one recipient increase
        // in the order it sent them.
        let mut ids: BTreeMap<(&str, usize), Vec<(u64, u64)>> = BTreeMap::new();
        for send in &self.ops {
            if let (ChatRequest::Send { recipient, .. }, Outcome::Done(ChatResponse::Sent(id))) =
                (&send.request, &send.outcome)
            {
                ids.entry((recipient, send.client))
                    .or_default()
                    .push((send.number, *id));
            }
        }
        for ((account, client), mut sent) in ids {
            sent.sort_unstable();
            for pair in sent.windows(2) {
                if pair[1].1 <= pair[0].1 {
                    found.push(format!(
                        "per-sender order: client {client}'s message number {} to {account} got id {}, not above the id {} of its earlier message",
                        pair[1].0, pair[1].1, pair[0].1
                    ));
                }
            }
        }
    }

    /// Whether a `create_account(account)` may have taken effect after a
    /// delete called at `delete_call_ns` and before `before_ns`.
    fn recreated(&self, account: &str, delete_call_ns: u64, before_ns: u64) -> bool {
        self.ops.iter().any(|op| {
            matches!(&op.request, ChatRequest::CreateAccount { account: a } if a == account)
                && op.may_have(|r| *r == ChatResponse::Done)
                && op.interval.call_ns < before_ns
                && op.interval.return_ns.is_none_or(|ret| ret > delete_call_ns)
        })
    }

    fn check_deleted_receive_nothing(&self, found: &mut Vec<String>) {
        let sends = self.sends();
        for delete in &self.ops {
            let ChatRequest::DeleteAccount { account } = &delete.request else {
                continue;
            };
            if !delete.acknowledged(|r| *r == ChatResponse::Done) {
                continue;
            }
            let Some(deleted_ns) = delete.interval.return_ns else {
                continue;
            };
            for op in &self.ops {
                if op.request.account() != Some(account.as_str())
                    || op.interval.call_ns <= deleted_ns
                {
                    continue;
                }
                let received = matches!(
                    (&op.request, &op.outcome),
                    (
                        ChatRequest::Send { .. },
                        Outcome::Done(ChatResponse::Sent(_))
                    ) | (
                        ChatRequest::Fetch { .. },
                        Outcome::Done(ChatResponse::Fetched { .. })
                    )
                );
                let op_return = op.interval.return_ns.unwrap_or(u64::MAX);
                if received && !self.recreated(account, delete.interval.call_ns, op_return) {
                    found.push(format!(
                        "deleted account received: {account} was deleted (acknowledged at {deleted_ns} ns), then client {}'s {:?} called at {} ns was answered {:?} though no create_account({account}) can have come between",
                        op.client, op.request, op.interval.call_ns, op.outcome
                    ));
                }
                // A message sent before the delete never surfaces after it.
                if let (
                    ChatRequest::Fetch { .. },
                    Outcome::Done(ChatResponse::Fetched { messages, .. }),
                ) = (&op.request, &op.outcome)
                {
                    for message in messages {
                        let old = sends.get(message.body.as_str()).is_some_and(|send| {
                            send.interval
                                .return_ns
                                .is_some_and(|ret| ret < delete.interval.call_ns)
                        });
                        if old {
                            found.push(format!(
                                "deleted account received: {account}'s fetch called at {} ns returned {:?}, sent before {account} was deleted at {deleted_ns} ns",
                                op.interval.call_ns, message.body
                            ));
                        }
                    }
                }
            }
        }
    }

    fn check_responses(&self, found: &mut Vec<String>) {
        for op in &self.ops {
            let response = match &op.outcome {
                Outcome::Done(response) => response,
                Outcome::Refused(reason) => {
                    found.push(format!(
                        "unexpected answer: client {}'s valid request {:?} was refused: {reason}",
                        op.client, op.request
                    ));
                    continue;
                }
                Outcome::Failed | Outcome::Unknown => continue,
            };
            let expected = match (&op.request, response) {
                (_, ChatResponse::NoSuchAccount(_)) => !matches!(
                    op.request,
                    ChatRequest::CreateAccount { .. } | ChatRequest::ListAccounts { .. }
                ),
                (ChatRequest::CreateAccount { .. }, ChatResponse::AccountExists(_)) => true,
                (
                    ChatRequest::CreateAccount { .. } | ChatRequest::DeleteAccount { .. },
                    ChatResponse::Done,
                ) => true,
                (ChatRequest::Send { .. }, ChatResponse::Sent(_)) => true,
                (ChatRequest::Fetch { .. }, ChatResponse::Fetched { .. }) => true,
                (ChatRequest::DeleteMessages { .. }, ChatResponse::Deleted(_)) => true,
                (ChatRequest::ListAccounts { pattern }, ChatResponse::Accounts { names, .. }) => {
                    let sorted = names.windows(2).all(|pair| pair[0] < pair[1]);
                    let matching = names.iter().all(|name| glob_matches(pattern, name));
                    if !(sorted && matching) {
                        found.push(format!(
                            "list_accounts({pattern:?}) returned {names:?}: not sorted or not matching"
                        ));
                    }
                    true
                }
                _ => false,
            };
            if !expected {
                found.push(format!(
                    "unexpected answer: client {}'s valid request {:?} got {response:?}",
                    op.client, op.request
                ));
            }
        }
    }
}

impl ServiceWorkload for ChatWorkload {
    type Service = Chat;

    type Pending = ();

    fn next_request(&mut self, call: Call, rng: &mut ChaCha8Rng) -> Next<Self> {
        Some((self.pick(call.client, call.number(), rng), ()))
    }

    fn completed(&mut self, done: Completed<Self>) {
        let (call, now_ns, request, answer) =
            (done.call, done.return_ns, done.request, done.answer);
        let client = call.client;
        let (outcome, return_ns) = match answer {
            Answer::Done(response) => (Outcome::Done(response), Some(now_ns)),
            Answer::Refused(reason) => (Outcome::Refused(reason), Some(now_ns)),
            Answer::Undecodable(error) => {
                let message = format!(
                    "unexpected answer: client {client}'s {request:?} got undecodable bytes ({error})"
                );
                self.violations.push(message);
                (Outcome::Unknown, None)
            }
            Answer::Failed => (Outcome::Failed, None),
            Answer::Unknown => (Outcome::Unknown, None),
        };
        if let (
            ChatRequest::Fetch { account },
            Outcome::Done(ChatResponse::Fetched { messages, .. }),
        ) = (&request, &outcome)
        {
            self.fetched_ids
                .entry(account.clone())
                .or_default()
                .extend(messages.iter().map(|m| m.id));
        }
        self.ops.push(Recorded {
            client,
            number: call.number(),
            request,
            interval: Interval {
                call_ns: call.call_ns,
                return_ns,
            },
            outcome,
        });
    }

    fn sends_as_read(&self, request: &ChatRequest) -> bool {
        match request {
            ChatRequest::Fetch { .. } => self.fetch_as_read,
            other => other.is_read(),
        }
    }

    fn describe(&self, request: &ChatRequest) -> String {
        match request {
            ChatRequest::CreateAccount { account } => format!("create_account {account}"),
            ChatRequest::DeleteAccount { account } => format!("delete_account {account}"),
            ChatRequest::ListAccounts { pattern } => format!("list_accounts {pattern}"),
            ChatRequest::Send {
                sender,
                recipient,
                body,
            } => format!("send {sender}->{recipient} {body}"),
            ChatRequest::Fetch { account } => format!("fetch {account}"),
            ChatRequest::DeleteMessages { account, ids } => {
                format!("delete_messages {account} {ids:?}")
            }
        }
    }

    fn finish(&mut self) -> WorkloadReport {
        let operations_checked = self
            .ops
            .iter()
            .filter(|op| matches!(op.outcome, Outcome::Done(_)))
            .count() as u64;
        let mut found = Vec::new();
        self.check_delivered_once(&mut found);
        self.check_nothing_lost(&mut found);
        self.check_order(&mut found);
        self.check_deleted_receive_nothing(&mut found);
        self.check_responses(&mut found);
        for message in found {
            self.violations.push(message);
        }
        WorkloadReport {
            operations_checked,
            failure: self.violations.failure(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(
        client: usize,
        number: u64,
        request: ChatRequest,
        call_ns: u64,
        return_ns: u64,
        response: ChatResponse,
    ) -> Recorded {
        Recorded {
            client,
            number,
            request,
            interval: Interval {
                call_ns,
                return_ns: Some(return_ns),
            },
            outcome: Outcome::Done(response),
        }
    }

    fn send(client: usize, number: u64, to: &str, call: u64, ret: u64, id: u64) -> Recorded {
        op(
            client,
            number,
            ChatRequest::Send {
                sender: "a0".into(),
                recipient: to.into(),
                body: format!("m{client}.{number}"),
            },
            call,
            ret,
            ChatResponse::Sent(id),
        )
    }

    fn fetch(account: &str, call: u64, ret: u64, got: &[(u64, &str)]) -> Recorded {
        op(
            9,
            call,
            ChatRequest::Fetch {
                account: account.into(),
            },
            call,
            ret,
            ChatResponse::Fetched {
                messages: got
                    .iter()
                    .map(|&(id, body)| Message {
                        id,
                        sender: "a0".into(),
                        body: body.into(),
                    })
                    .collect(),
                more: false,
            },
        )
    }

    /// Every violation found, joined (the report names only the first).
    fn verdict(ops: Vec<Recorded>) -> Option<String> {
        let mut workload = ChatWorkload::new(false);
        workload.ops = ops;
        let failure = workload.finish().failure;
        assert_eq!(failure.is_some(), !workload.violations.is_empty());
        failure.map(|_| workload.violations.kept().join("; "))
    }

    #[test]
    fn a_correct_history_passes() {
        let ops = vec![
            send(0, 1, "a1", 0, 10, 1),
            send(0, 2, "a1", 11, 20, 2),
            fetch("a1", 21, 30, &[(1, "m0.1"), (2, "m0.2")]),
            fetch("a1", 31, 40, &[]),
        ];
        assert_eq!(verdict(ops), None);
    }

    #[test]
    fn twice_lost_reordered_and_after_delete_are_caught() {
        let twice = verdict(vec![
            send(0, 1, "a1", 0, 10, 1),
            fetch("a1", 21, 30, &[(1, "m0.1")]),
            fetch("a1", 31, 40, &[(1, "m0.1")]),
        ]);
        assert!(twice.unwrap().contains("delivered twice"));
        let lost = verdict(vec![send(0, 1, "a1", 0, 10, 1), fetch("a1", 21, 30, &[])]);
        assert!(lost.unwrap().contains("lost"));
        let reordered = verdict(vec![
            send(0, 1, "a1", 0, 10, 1),
            send(0, 2, "a1", 11, 20, 2),
            fetch("a1", 21, 30, &[(2, "m0.2")]),
            fetch("a1", 31, 40, &[(1, "m0.1")]),
        ]);
        assert!(reordered.unwrap().contains("per-sender order"));
        let deleted = verdict(vec![
            op(
                1,
                1,
                ChatRequest::DeleteAccount {
                    account: "a1".into(),
                },
                0,
                5,
                ChatResponse::Done,
            ),
            send(0, 1, "a1", 6, 10, 1),
        ]);
        assert!(deleted.unwrap().contains("deleted account received"));
        // A create that may come between the delete and the send excuses it.
        let recreated = verdict(vec![
            op(
                1,
                1,
                ChatRequest::DeleteAccount {
                    account: "a1".into(),
                },
                0,
                5,
                ChatResponse::Done,
            ),
            op(
                2,
                1,
                ChatRequest::CreateAccount {
                    account: "a1".into(),
                },
                4,
                7,
                ChatResponse::Done,
            ),
            send(0, 1, "a1", 6, 10, 1),
        ]);
        assert_eq!(recreated, None);
    }

    #[test]
    fn an_unknown_fetch_excuses_a_missing_message() {
        let mut unknown = fetch("a1", 15, 0, &[]);
        unknown.interval.return_ns = None;
        unknown.outcome = Outcome::Unknown;
        let ops = vec![
            send(0, 1, "a1", 0, 10, 1),
            unknown,
            fetch("a1", 21, 30, &[]),
        ];
        assert_eq!(verdict(ops), None);
    }
}
