//! The directory's workload and invariants.
//!
//! Clients connect users (`u0`..) at addresses unique to each connect,
//! disconnect them, look up batches of users, and draw sequence numbers.
//! Checks at the end of a run:
//!
//! * **sequence**: every number handed out is handed out once, and a
//!   number drawn after another call returned is larger (strictly
//!   increasing in real-time order), whatever leader served each.
//! * **no stale address after a disconnect**: a lookup never returns the
//!   address of connect `C` when a disconnect of that user was called
//!   after `C` returned and acknowledged before the lookup was called.
//! * **linearizability** of connects, disconnects and lookups, per user
//!   (a connect is a put of the address, a disconnect a put of `""`, a
//!   lookup a get of each user it names), by the simulator's checker.
//! * a valid request is never refused.

use std::collections::BTreeMap;
use std::ops::Range;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use concord_services::directory::{Directory, DirectoryRequest, DirectoryResponse};
use concord_services::ServiceRequest;

use super::workload::{
    check_config, Answer, Call, Completed, KeyHistory, Next, ServiceWorkload, Violations,
};
use crate::history::{Op, Operation, Output};
use crate::linearizability::CheckConfig;
use crate::workload::WorkloadReport;

/// Users (`u0`..).
pub const USERS: usize = 6;
/// Most users one lookup names.
pub const LOOKUP_BATCH_MAX: usize = 4;

/// The address of `client`'s `number`th operation: unique per
/// (client, number) for fewer than 2^22 operations per client and 1024
/// clients.
fn address(client: usize, number: u64) -> String {
    assert!(
        client < 1024 && number < (1 << 22),
        "address space exhausted"
    );
    format!(
        "10.{}.{}.{}:{}",
        client & 255,
        (number >> 8) & 255,
        number & 255,
        1024 + ((client >> 8) as u64) * 64 + ((number >> 16) & 63)
    )
}

/// When an operation was called and, if it completed, returned.
#[derive(Clone, Copy, Debug)]
struct Interval {
    call_ns: u64,
    return_ns: Option<u64>,
}

/// A lookup that completed: who it asked about and what it saw.
#[derive(Clone, Debug)]
struct LookupSeen {
    client: usize,
    interval: Interval,
    answers: Vec<(String, Option<String>)>,
}

/// Clients of the directory; checks its invariants at the end.
#[derive(Clone, Debug)]
pub struct DirectoryWorkload {
    history: KeyHistory,
    violations: Violations,
    /// Every connect by address: its user and interval.
    connects: BTreeMap<String, (String, Interval)>,
    /// Acknowledged disconnects per user.
    disconnects: BTreeMap<String, Vec<Interval>>,
    lookups: Vec<LookupSeen>,
    /// Completed `next_sequence` calls: (call, return, number, client).
    sequences: Vec<(u64, u64, u64, usize)>,
    /// The planted client half of the sequence bug: send `next_sequence`
    /// as a read.
    sequence_as_read: bool,
    check_config: CheckConfig,
}

impl DirectoryWorkload {
    /// A workload; `sequence_as_read` plants the client half of the
    /// sequence bug.
    pub fn new(sequence_as_read: bool) -> Self {
        DirectoryWorkload {
            history: KeyHistory::default(),
            violations: Violations::default(),
            connects: BTreeMap::new(),
            disconnects: BTreeMap::new(),
            lookups: Vec::new(),
            sequences: Vec::new(),
            sequence_as_read,
            check_config: check_config(),
        }
    }

    /// The per-user history of connects, disconnects and lookups.
    pub fn history(&self) -> &[Operation] {
        self.history.operations()
    }

    /// Sequence numbers handed out to completed calls.
    pub fn sequences_handed_out(&self) -> usize {
        self.sequences.len()
    }

    fn pick(&self, client: usize, number: u64, rng: &mut ChaCha8Rng) -> DirectoryRequest {
        let user = format!("u{}", rng.gen_range(0..USERS));
        match rng.gen_range(0..12u32) {
            0..=2 => DirectoryRequest::Connect {
                user,
                address: address(client, number),
            },
            3..=4 => DirectoryRequest::Disconnect { user },
            5..=8 => {
                // Distinct users: the first `count` of a partial shuffle.
                let count = rng.gen_range(1..=LOOKUP_BATCH_MAX);
                let mut order: [usize; USERS] = std::array::from_fn(|i| i);
                for i in 0..count {
                    let j = rng.gen_range(i..USERS);
                    order.swap(i, j);
                }
                DirectoryRequest::Lookup {
                    users: order[..count]
                        .iter()
                        .map(|index| format!("u{index}"))
                        .collect(),
                }
            }
            _ => DirectoryRequest::NextSequence,
        }
    }

    fn check_sequences(&mut self) {
        let mut by_number: BTreeMap<u64, (u64, u64, usize)> = BTreeMap::new();
        let mut duplicates = Vec::new();
        for &(call, ret, number, client) in &self.sequences {
            if let Some(&(other_call, other_ret, other_client)) = by_number.get(&number) {
                duplicates.push(format!(
                    "sequence number {number} handed out twice: to client {other_client} (called at {other_call} ns, returned at {other_ret} ns) and to client {client} (called at {call} ns, returned at {ret} ns)"
                ));
            } else {
                by_number.insert(number, (call, ret, client));
            }
        }
        for message in duplicates {
            self.violations.push(message);
        }
        // Real-time order: sweep calls in call order, folding in every call
        // that returned strictly before.
        let mut by_return = self.sequences.clone();
        by_return.sort_by_key(|&(_, ret, _, _)| ret);
        let mut by_call = self.sequences.clone();
        by_call.sort_by_key(|&(call, _, _, _)| call);
        let mut returned = 0;
        let mut highest: Option<(u64, u64, usize)> = None;
        let mut regressions = Vec::new();
        for &(call, _, number, client) in &by_call {
            while returned < by_return.len() && by_return[returned].1 < call {
                let (_, ret, seen, seen_client) = by_return[returned];
                if highest.is_none_or(|(best, _, _)| seen > best) {
                    highest = Some((seen, ret, seen_client));
                }
                returned += 1;
            }
            if let Some((best, ret, best_client)) = highest {
                if number <= best {
                    regressions.push(format!(
                        "sequence went back: client {client} called at {call} ns and got {number}, but client {best_client} had already got {best} (returned at {ret} ns)"
                    ));
                }
            }
        }
        for message in regressions {
            self.violations.push(message);
        }
    }

    fn check_disconnects(&mut self) {
        let mut stale = Vec::new();
        for lookup in &self.lookups {
            let Some(lookup_return) = lookup.interval.return_ns else {
                continue;
            };
            for (user, answer) in &lookup.answers {
                let Some(address) = answer else { continue };
                let Some((connect_user, connect)) = self.connects.get(address) else {
                    stale.push(format!(
                        "client {}'s lookup of {user} returned {address}, which no client connected",
                        lookup.client
                    ));
                    continue;
                };
                if connect_user != user {
                    stale.push(format!(
                        "client {}'s lookup of {user} returned {address}, which was connected for {connect_user}",
                        lookup.client
                    ));
                    continue;
                }
                let Some(connect_return) = connect.return_ns else {
                    continue;
                };
                let gone = self.disconnects.get(user).and_then(|list| {
                    list.iter().find(|disconnect| {
                        disconnect.call_ns > connect_return
                            && disconnect
                                .return_ns
                                .is_some_and(|ret| ret < lookup.interval.call_ns)
                    })
                });
                if let Some(disconnect) = gone {
                    stale.push(format!(
                        "client {}'s lookup (called at {} ns, returned at {lookup_return} ns) returned {user}'s address {address} after {user}'s disconnect (called at {} ns) was acknowledged at {} ns",
                        lookup.client,
                        lookup.interval.call_ns,
                        disconnect.call_ns,
                        disconnect.return_ns.unwrap_or_default()
                    ));
                }
            }
        }
        for message in stale {
            self.violations.push(message);
        }
    }
}

impl ServiceWorkload for DirectoryWorkload {
    type Service = Directory;
    type Pending = Range<usize>;

    fn next_request(&mut self, call: Call, rng: &mut ChaCha8Rng) -> Next<Self> {
        let request = self.pick(call.client, call.number(), rng);
        let put = |user: &String, value: String| vec![(user.clone(), Op::Put { value })];
        let projected: Vec<(String, Op)> = match &request {
            DirectoryRequest::Connect { user, address } => {
                let interval = Interval {
                    call_ns: call.call_ns,
                    return_ns: None,
                };
                self.connects
                    .insert(address.clone(), (user.clone(), interval));
                put(user, address.clone())
            }
            DirectoryRequest::Disconnect { user } => put(user, String::new()),
            DirectoryRequest::Lookup { users } => {
                users.iter().map(|user| (user.clone(), Op::Get)).collect()
            }
            DirectoryRequest::NextSequence => Vec::new(),
        };
        Some((request, self.history.call(call, projected)))
    }

    fn completed(&mut self, done: Completed<Self>) {
        let (call, return_ns, request) = (done.call, done.return_ns, done.request);
        let (pending, answer) = (done.pending, done.answer);
        let interval = Interval {
            call_ns: call.call_ns,
            return_ns: Some(return_ns),
        };
        match (&request, answer) {
            (_, Answer::Failed) => {
                self.history.fail(pending, return_ns);
                if let DirectoryRequest::Connect { address, .. } = &request {
                    // Never applied: nobody may see this address.
                    if let Some((_, connect)) = self.connects.get_mut(address) {
                        connect.return_ns = None;
                    }
                }
            }
            (_, Answer::Unknown) => {}
            (DirectoryRequest::Connect { address, .. }, Answer::Done(DirectoryResponse::Done)) => {
                if let Some((_, connect)) = self.connects.get_mut(address) {
                    connect.return_ns = Some(return_ns);
                }
                self.history.done(pending, return_ns);
            }
            (DirectoryRequest::Disconnect { user }, Answer::Done(DirectoryResponse::Done)) => {
                self.disconnects
                    .entry(user.clone())
                    .or_default()
                    .push(interval);
                self.history.done(pending, return_ns);
            }
            (
                DirectoryRequest::Lookup { users },
                Answer::Done(DirectoryResponse::Addresses(addresses)),
            ) if addresses.len() == users.len() => {
                let outputs = addresses
                    .iter()
                    .map(|address| Output::Value(address.clone().unwrap_or_default()));
                self.history.complete(pending, return_ns, outputs);
                self.lookups.push(LookupSeen {
                    client: call.client,
                    interval,
                    answers: users.iter().cloned().zip(addresses).collect(),
                });
            }
            (DirectoryRequest::NextSequence, Answer::Done(DirectoryResponse::Sequence(number))) => {
                self.sequences
                    .push((call.call_ns, return_ns, number, call.client));
            }
            (request, other) => self.violations.unexpected(call, request, &other),
        }
    }

    fn sends_as_read(&self, request: &DirectoryRequest) -> bool {
        match request {
            DirectoryRequest::NextSequence => self.sequence_as_read,
            other => other.is_read(),
        }
    }

    fn describe(&self, request: &DirectoryRequest) -> String {
        match request {
            DirectoryRequest::Connect { user, address } => format!("connect {user} {address}"),
            DirectoryRequest::Disconnect { user } => format!("disconnect {user}"),
            DirectoryRequest::Lookup { users } => format!("lookup {}", users.join(" ")),
            DirectoryRequest::NextSequence => "next_sequence".to_string(),
        }
    }

    fn finish(&mut self) -> WorkloadReport {
        let operations = self.history.operations().len() + self.sequences.len();
        self.check_sequences();
        self.check_disconnects();
        let (history, config) = (&self.history, &self.check_config);
        self.violations
            .report(operations as u64, || history.check("directory", config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sequence(workload: &mut DirectoryWorkload, call: u64, ret: u64, number: u64) {
        workload.sequences.push((call, ret, number, 0));
    }

    #[test]
    fn addresses_are_unique_and_valid() {
        let mut seen = std::collections::BTreeSet::new();
        for client in [0, 1, 255, 256, 999] {
            for number in [1, 2, 255, 256, 65_535, 65_536, (1 << 22) - 1] {
                let text = address(client, number);
                assert!(text.parse::<std::net::SocketAddr>().is_ok(), "{text}");
                assert!(seen.insert(text));
            }
        }
    }

    #[test]
    fn sequence_check_catches_duplicates_and_regressions_only() {
        let mut good = DirectoryWorkload::new(false);
        sequence(&mut good, 0, 10, 1);
        sequence(&mut good, 5, 20, 3); // concurrent with the first
        sequence(&mut good, 6, 30, 2); // concurrent with both
        sequence(&mut good, 31, 40, 4);
        assert_eq!(good.finish().failure, None);

        let mut duplicate = DirectoryWorkload::new(false);
        sequence(&mut duplicate, 0, 10, 1);
        sequence(&mut duplicate, 5, 20, 1);
        let failure = duplicate.finish().failure.unwrap();
        assert!(failure.contains("handed out twice"), "{failure}");

        let mut regression = DirectoryWorkload::new(false);
        sequence(&mut regression, 0, 10, 5);
        sequence(&mut regression, 11, 20, 4);
        let failure = regression.finish().failure.unwrap();
        assert!(failure.contains("went back"), "{failure}");
    }

    #[test]
    fn a_lookup_after_an_acknowledged_disconnect_must_not_see_the_address() {
        let mut workload = DirectoryWorkload::new(false);
        let at = |call, ret| Interval {
            call_ns: call,
            return_ns: Some(ret),
        };
        workload
            .connects
            .insert("10.0.0.1:1".into(), ("u0".into(), at(0, 10)));
        workload.disconnects.insert("u0".into(), vec![at(20, 30)]);
        // Concurrent with the disconnect: may see either.
        workload.lookups.push(LookupSeen {
            client: 0,
            interval: at(25, 35),
            answers: vec![("u0".into(), Some("10.0.0.1:1".into()))],
        });
        assert_eq!(workload.clone().finish().failure, None);
        // After it was acknowledged: stale.
        workload.lookups.push(LookupSeen {
            client: 0,
            interval: at(40, 50),
            answers: vec![("u0".into(), Some("10.0.0.1:1".into()))],
        });
        let failure = workload.finish().failure.unwrap();
        assert!(failure.contains("after u0's disconnect"), "{failure}");
    }
}
