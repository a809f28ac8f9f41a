//! The seed corpus: real encoded data for every target, made by the
//! runtime's own encoders (frames, peer frames, client requests, shared
//! logs written by the shared log itself, legacy single-group
//! directories, session commands) and by scripted schedules of the
//! `node_step` cluster. Deterministic: the committed files in
//! `fuzz/corpus/<target>/` are this module's output, written by
//! `cargo run -p concord-sim --example fuzz_seed_corpus`, and a test
//! (`sim/tests/fuzz_corpus.rs`) checks they still are.

use std::collections::BTreeSet;

use bytes::Bytes;
use concord::multi::{CatalogCommand, Frame, GroupMessage};
use concord::session::{encode_command, encode_register, SessionResponse};
use concord::{
    AppendResponse, Entry, EntryPayload, HardState, LogPosition, Membership, MembershipChange,
    Message, MessageBody, ReadPath, SnapshotChunk,
};
use concord_services::chat::{ChatRequest, ChatResponse, Message as ChatMessage};
use concord_services::codec as services;
use concord_services::directory::{DirectoryRequest, DirectoryResponse};
use concord_services::kv::{Kv, KvRequest, KvResponse};
use concord_services::orders::{OrdersRequest, OrdersResponse};
use concord_services::{Service, ServiceMachine};
use concord_tokio::addresses::{AddressRecord, HostRecord};
use concord_tokio::codec;
use concord_tokio::frame::encode_frame;
use concord_tokio::identity::{self, DataDirIdentity, Incarnation};
use concord_tokio::multi::admin::{AdminAnswer, AdminRequest};
use concord_tokio::multi::groups_status::{StatusAnswer, StatusQuery};
use concord_tokio::multi::record::{DurableMarker, GroupRecord};
use concord_tokio::multi::wire::{GroupOp, GroupRequest, MultiPeerFrame};
use concord_tokio::status::{NodeStatus, PeerStatus};
// The legacy format, read only to upgrade a single-group directory.
use concord_tokio::wal::WalRecord;
use concord_tokio::wire::{ClientRequest, ClientResponse, Hello, HelloRole, PeerReply, Welcome};

/// One seed input: a file name (without directory) and its bytes.
pub type Seed = (String, Vec<u8>);

fn entry(term: u64, index: u64, payload: &'static [u8]) -> Entry {
    Entry {
        term,
        index,
        payload: EntryPayload::Command(Bytes::from_static(payload)),
    }
}

/// One message of every kind, as peers exchange them.
pub fn sample_messages() -> Vec<Message> {
    let bodies = vec![
        MessageBody::RequestVote {
            pre_vote: true,
            last_log: LogPosition::new(4, 2),
            transfer: false,
        },
        MessageBody::RequestVoteResponse {
            pre_vote: false,
            granted: true,
        },
        MessageBody::AppendEntries {
            prev: LogPosition::new(3, 2),
            entries: vec![
                entry(3, 4, b"put k v"),
                Entry {
                    term: 3,
                    index: 5,
                    payload: EntryPayload::Noop,
                },
                Entry {
                    term: 3,
                    index: 6,
                    payload: EntryPayload::Membership(Box::new(Membership::new([1, 2, 3]))),
                },
            ]
            .into(),
            leader_commit: 3,
        },
        MessageBody::AppendEntriesResponse(AppendResponse::Accepted { match_index: 6 }),
        MessageBody::AppendEntriesResponse(AppendResponse::Rejected {
            rejected_index: 7,
            hint_index: 5,
            hint_term: 2,
        }),
        MessageBody::Heartbeat {
            commit: 6,
            read_round: 9,
        },
        MessageBody::HeartbeatResponse { read_round: 9 },
        MessageBody::TimeoutNow,
        MessageBody::InstallSnapshot(Box::new(SnapshotChunk {
            snapshot: LogPosition::new(100, 3),
            size_bytes: 5,
            checksum: concord::checksum64(b"state"),
            offset: 0,
            data: Bytes::from_static(b"state"),
            membership: Membership::new([1, 2, 3]),
        })),
        MessageBody::Removed {
            configuration: LogPosition::new(8, 3),
        },
        MessageBody::ReadIndexRequest { request: 12 },
        MessageBody::ReadIndexResponse {
            request: 12,
            index: Some(6),
        },
        MessageBody::InstallSnapshotResponse {
            snapshot: LogPosition::new(100, 3),
            next_offset: 5,
            rewind: false,
        },
        MessageBody::CommitNotice {
            last: LogPosition::new(6, 3),
            commit: 6,
        },
    ];
    bodies
        .into_iter()
        .map(|body| Message {
            from: 1,
            to: 2,
            term: 3,
            progress_id: 0,
            body,
        })
        .collect()
}

fn sample_status() -> NodeStatus {
    NodeStatus {
        id: 1,
        role: "Leader".to_string(),
        term: 3,
        leader: Some(1),
        last_index: 6,
        persisted_index: 6,
        commit_index: 5,
        applied_index: 5,
        first_index: 1,
        peers: vec![PeerStatus {
            id: 2,
            match_index: 5,
            next_index: 6,
            inflight_messages: 1,
            state: "Replicate".to_string(),
            ..PeerStatus::default()
        }],
        ..NodeStatus::default()
    }
}

fn b(text: &'static str) -> Bytes {
    Bytes::from_static(text.as_bytes())
}

fn kv_requests() -> Vec<KvRequest> {
    vec![
        KvRequest::Get { key: b("k") },
        KvRequest::Put {
            key: b("k"),
            value: b("v1"),
        },
        KvRequest::Append {
            key: b("k"),
            value: b("+2"),
        },
        KvRequest::Cas {
            key: b("k"),
            expected: Some(b("v1+2")),
            new: b("v3"),
        },
        KvRequest::PutMany {
            pairs: vec![(b("a"), b("1")), (b("b"), b("2"))],
        },
        KvRequest::GetMany {
            keys: vec![b("a"), b("b"), b("k")],
        },
    ]
}

/// One service's sample requests and answers, encoded, and the snapshot
/// of a state that applied the requests, named `service-<name>-...`.
fn service_samples<S: Service>(
    requests: Vec<S::Request>,
    answers: Vec<Result<S::Response, String>>,
) -> Vec<Seed> {
    use concord::state_machine::StateMachine;
    let mut out = Vec::new();
    let mut machine = ServiceMachine::<S>::new();
    for (i, request) in requests.iter().enumerate() {
        let bytes = services::encode_request::<S>(i as u64 + 1, request);
        machine.apply(i as u64 + 1, &bytes);
        out.push((format!("service-{}-request-{i}", S::NAME), bytes.to_vec()));
    }
    for (i, answer) in answers.iter().enumerate() {
        let bytes = services::encode_answer::<S>(answer).to_vec();
        out.push((format!("service-{}-answer-{i}", S::NAME), bytes));
    }
    out.push((
        format!("service-{}-snapshot", S::NAME),
        machine.snapshot().to_vec(),
    ));
    out
}

/// Every service's samples.
fn services_samples() -> Vec<Seed> {
    let text = |text: &str| text.to_string();
    let mut out = service_samples::<Kv>(
        kv_requests(),
        vec![
            Ok(KvResponse::Values(vec![Some(b("v")), None])),
            Ok(KvResponse::Written),
            Ok(KvResponse::Swapped(false)),
            Err(text("refused")),
        ],
    );
    out.extend(service_samples::<concord_services::directory::Directory>(
        vec![
            DirectoryRequest::Connect {
                user: text("ann"),
                address: text("10.0.0.7:5000"),
            },
            DirectoryRequest::Lookup {
                users: vec![text("ann"), text("bob")],
            },
            DirectoryRequest::NextSequence,
            DirectoryRequest::Disconnect { user: text("ann") },
        ],
        vec![
            Ok(DirectoryResponse::Addresses(vec![
                Some(text("10.0.0.7:5000")),
                None,
            ])),
            Ok(DirectoryResponse::Done),
            Ok(DirectoryResponse::Sequence(7)),
        ],
    ));
    out.extend(service_samples::<concord_services::orders::Orders>(
        vec![
            OrdersRequest::PlaceOrder {
                customer: text("acme"),
            },
            OrdersRequest::LastOrder {
                customer: text("acme"),
            },
        ],
        vec![Ok(OrdersResponse::Placed(1)), Ok(OrdersResponse::Last(1))],
    ));
    out.extend(service_samples::<concord_services::chat::Chat>(
        vec![
            ChatRequest::CreateAccount {
                account: text("ann"),
            },
            ChatRequest::CreateAccount {
                account: text("bob"),
            },
            ChatRequest::Send {
                sender: text("ann"),
                recipient: text("bob"),
                body: text("hi"),
            },
            ChatRequest::Fetch {
                account: text("bob"),
            },
            ChatRequest::ListAccounts { pattern: text("*") },
            ChatRequest::DeleteMessages {
                account: text("bob"),
                ids: vec![1],
            },
            ChatRequest::DeleteAccount {
                account: text("ann"),
            },
        ],
        vec![
            Ok(ChatResponse::Fetched {
                messages: vec![ChatMessage {
                    id: 1,
                    sender: text("ann"),
                    body: text("hi"),
                }],
                more: true,
            }),
            Ok(ChatResponse::Accounts {
                names: vec![text("ann")],
                truncated: false,
            }),
            Ok(ChatResponse::NoSuchAccount(text("eve"))),
        ],
    ));
    out
}

/// `messages` as one peer frame of the one runtime: each as a message of
/// group `1 + i % 3`.
fn sample_frame(messages: Vec<Message>) -> Frame {
    let mut frame = Frame::new(1, 2, 7);
    for (i, message) in messages.into_iter().enumerate() {
        frame.messages.push(GroupMessage {
            group: 1 + i as u64 % 3,
            term: message.term,
            progress_id: 0,
            body: message.body,
        });
    }
    frame
}

/// Every value of every wire and disk type the samples cover, encoded,
/// with a name for each.
pub fn sample_payloads() -> Vec<Seed> {
    let mut out: Vec<Seed> = Vec::new();
    let mut push = |name: String, bytes: Result<Vec<u8>, codec::CodecError>| {
        out.push((name, bytes.expect("sample values encode")));
    };
    // The handshake.
    push(
        "hello-peer".into(),
        codec::encode(&Hello {
            cluster_id: "demo".to_string(),
            role: HelloRole::Peer {
                from: 1,
                to: 2,
                incarnation: Some(Incarnation([7; 16])),
            },
        }),
    );
    push(
        "hello-client".into(),
        codec::encode(&Hello {
            cluster_id: "demo".to_string(),
            role: HelloRole::Client,
        }),
    );
    push(
        "welcome-accepted".into(),
        codec::encode(&Welcome::Accepted { node_id: 2 }),
    );
    push(
        "welcome-refused".into(),
        codec::encode(&Welcome::Refused {
            reason: "wrong cluster".to_string(),
        }),
    );
    push(
        "peerreply-ack".into(),
        codec::encode(&PeerReply::KeepaliveAck),
    );
    // Peer frames: each message alone, then all of them with compact
    // heartbeats in one frame.
    for (i, message) in sample_messages().into_iter().enumerate() {
        push(
            format!("multi-peerframe-{i:02}"),
            codec::encode(&MultiPeerFrame::Frame {
                seq: 1,
                frame: sample_frame(vec![message]),
            }),
        );
    }
    let mut busy = sample_frame(sample_messages());
    busy.heartbeats.push(concord::multi::GroupHeartbeat {
        group: 2,
        term: 3,
        progress_id: 0,
        commit: 6,
        read_round: 1,
    });
    push(
        "multi-peerframe-all".into(),
        codec::encode(&MultiPeerFrame::Frame {
            seq: 1,
            frame: busy,
        }),
    );
    push(
        "multi-peerframe-keepalive".into(),
        codec::encode(&MultiPeerFrame::Keepalive),
    );
    // Client requests to a group, and their answers.
    for (i, request) in kv_requests().iter().enumerate() {
        let op_bytes = services::encode_request::<Kv>(i as u64 + 1, request);
        push(
            format!("group-request-command-{i}"),
            codec::encode(&GroupRequest {
                group: 1,
                request: GroupOp::Command(encode_command(7, i as u64 + 1, &op_bytes)),
            }),
        );
        push(
            format!("group-request-read-{i}"),
            codec::encode(&GroupRequest {
                group: 1,
                request: GroupOp::Read {
                    path: ReadPath::ReadIndex,
                    query: op_bytes,
                },
            }),
        );
    }
    let ops = [
        GroupOp::Command(encode_register()),
        GroupOp::Status(StatusQuery::Summary),
        GroupOp::Status(StatusQuery::Node(1)),
        GroupOp::Admin(AdminRequest::List),
        GroupOp::Admin(AdminRequest::Change(MembershipChange::AddLearner(4))),
        GroupOp::Admin(AdminRequest::ChangeBatch(vec![(
            2,
            MembershipChange::Remove(3),
        )])),
        GroupOp::Admin(AdminRequest::Led { groups_max: 10 }),
    ];
    for (i, op) in ops.into_iter().enumerate() {
        push(
            format!("group-request-op-{i}"),
            codec::encode(&GroupRequest {
                group: 1,
                request: op,
            }),
        );
    }
    // A single-group client's request, which the listener recognises.
    push(
        "single-group-client-request".into(),
        codec::encode(&ClientRequest::Command(encode_register())),
    );
    let responses = vec![
        ClientResponse::Done(SessionResponse::Ok(Bytes::from_static(b"ok")).encode()),
        ClientResponse::NotLeader {
            leader_hint: Some(3),
            leader_addr: Some("127.0.0.1:7003".to_string()),
        },
        ClientResponse::Unknown,
        ClientResponse::Busy,
        ClientResponse::Error("refused".to_string()),
    ];
    for (i, response) in responses.into_iter().enumerate() {
        push(format!("response-{i}"), codec::encode(&response));
    }
    push(
        "status-answer-node".into(),
        codec::encode(&StatusAnswer::Node(Box::new(sample_status()))),
    );
    push(
        "status-answer-not-hosted".into(),
        codec::encode(&StatusAnswer::NotHosted { group: 9, node: 2 }),
    );
    let answers = [
        AdminAnswer::Proposed { index: 12 },
        AdminAnswer::TransferStarted,
        AdminAnswer::Batch(vec![(2, None), (3, Some("not the leader".to_string()))]),
        AdminAnswer::Led {
            groups: vec![1, 2],
            total: 2,
        },
        AdminAnswer::Replaces(vec![(2, 4)]),
    ];
    for (i, answer) in answers.iter().enumerate() {
        push(format!("admin-answer-{i}"), Ok(answer.encode().to_vec()));
    }
    // The disk: shared-log records, the durable marker, the identity.
    for (i, record) in sample_group_records().into_iter().enumerate() {
        push(format!("group-record-{i}"), codec::encode(&record));
    }
    push(
        "durable-marker".into(),
        Ok(DurableMarker {
            segment: 3,
            offset_bytes: 4096,
        }
        .encode()
        .to_vec()),
    );
    let identity = DataDirIdentity {
        cluster_id: "demo".to_string(),
        node_id: 2,
        incarnation: Some(Incarnation([7; 16])),
        storage_format: 1,
    };
    push(
        "identity-file".into(),
        Ok(identity::encode(&identity).expect("the identity encodes")),
    );
    push("identity".into(), codec::encode(&identity));
    // The catalog's commands (group 0's entries).
    let catalog = [
        CatalogCommand::Create {
            group: 5,
            voters: BTreeSet::from([1, 2, 3]),
        },
        CatalogCommand::AddServer {
            id: 4,
            addr: "127.0.0.1:7004".to_string(),
        },
        CatalogCommand::Assign {
            node: 4,
            groups: vec![(5, BTreeSet::from([1, 2, 3]))],
        },
        CatalogCommand::Unassign {
            node: 3,
            groups: vec![5],
        },
    ];
    for (i, command) in catalog.iter().enumerate() {
        push(
            format!("catalog-command-{i}"),
            Ok(command.encode().to_vec()),
        );
    }
    // What the legacy reader decodes when it upgrades a single-group
    // directory.
    for (i, record) in sample_wal_records().into_iter().enumerate() {
        push(format!("legacy-walrecord-{i}"), codec::encode(&record));
    }
    push(
        "legacy-hardstate".into(),
        codec::encode(&HardState::new(3, Some(1))),
    );
    push(
        "legacy-hostrecord".into(),
        Ok(HostRecord::Address(AddressRecord {
            id: 2,
            addr: "127.0.0.1:7002".to_string(),
        })
        .encode()
        .expect("a host record encodes")
        .to_vec()),
    );
    out.extend(services_samples());
    out.extend(hostile_lengths());
    out
}

/// One record of every kind, as the shared log holds them.
pub fn sample_group_records() -> Vec<GroupRecord> {
    vec![
        GroupRecord::HardState {
            group: 1,
            hard_state: HardState::new(3, Some(1)),
        },
        GroupRecord::Append {
            group: 1,
            entries: vec![entry(3, 4, b"a"), entry(3, 5, b"bb")],
        },
        GroupRecord::Truncate { group: 2, after: 4 },
        GroupRecord::Snapshot {
            group: 1,
            position: LogPosition::new(5, 3),
            discard_log: false,
        },
        GroupRecord::Removed { group: 3 },
    ]
}

/// Bytes announced by the hostile length fields: far more than any seed
/// holds, below the codec's 64 MiB limit.
const ANNOUNCED_BYTES: u32 = 60 << 20;

/// `encoded` with the one-byte length prefix of `content` (its first
/// occurrence) replaced by one announcing `announced` bytes, and the
/// content cut to its first byte: a length field that outruns its input.
pub fn inflate_length(encoded: &[u8], content: &[u8], announced: u32) -> Vec<u8> {
    let at = encoded
        .windows(content.len())
        .position(|w| w == content)
        .expect("the content is in the encoding");
    assert_eq!(
        usize::from(encoded[at - 1]),
        content.len(),
        "a one-byte length prefix"
    );
    let mut out = encoded[..at - 1].to_vec();
    // bincode's varint: 0xfc then a little-endian u32.
    out.push(0xfc);
    out.extend_from_slice(&announced.to_le_bytes());
    out.push(content[0]);
    out
}

/// Values whose byte string, string or key announces
/// [`ANNOUNCED_BYTES`] in an input of a few bytes: decoding them must
/// not allocate what they announce.
fn hostile_lengths() -> Vec<Seed> {
    let marker: &[u8] = b"hostile";
    let encoded = |value: Result<Vec<u8>, codec::CodecError>| value.expect("encodes");
    let bytes = || Bytes::from_static(b"hostile");
    let append = Message {
        from: 1,
        to: 2,
        term: 3,
        progress_id: 0,
        body: MessageBody::AppendEntries {
            prev: LogPosition::new(3, 2),
            entries: vec![entry(3, 4, b"hostile")].into(),
            leader_commit: 3,
        },
    };
    vec![
        (
            "hostile-length-command".to_string(),
            encoded(codec::encode(&GroupRequest {
                group: 1,
                request: GroupOp::Command(bytes()),
            })),
        ),
        (
            "hostile-length-hello".to_string(),
            encoded(codec::encode(&Hello {
                cluster_id: "hostile".to_string(),
                role: HelloRole::Client,
            })),
        ),
        (
            "hostile-length-append".to_string(),
            encoded(codec::encode(&MultiPeerFrame::Frame {
                seq: 1,
                frame: sample_frame(vec![append]),
            })),
        ),
        (
            "hostile-length-group-record".to_string(),
            encoded(codec::encode(&GroupRecord::Append {
                group: 1,
                entries: vec![entry(3, 4, b"hostile")],
            })),
        ),
        (
            "hostile-length-kv-request".to_string(),
            hostile_put().to_vec(),
        ),
        ("hostile-length-kv-snapshot".to_string(), {
            use concord::state_machine::StateMachine;
            let mut store = ServiceMachine::<Kv>::new();
            store.apply(1, &hostile_put());
            store.snapshot().to_vec()
        }),
    ]
    .into_iter()
    .map(|(name, value)| (name, inflate_length(&value, marker, ANNOUNCED_BYTES)))
    .collect()
}

/// A key-value put of the key `hostile`, encoded as a client sends it.
fn hostile_put() -> Bytes {
    let put = KvRequest::Put {
        key: Bytes::from_static(b"hostile"),
        value: Bytes::from_static(b"v"),
    };
    services::encode_request::<Kv>(1, &put)
}

/// Records of every kind, as the legacy single-group write-ahead log
/// holds them (read only to upgrade such a directory).
pub fn sample_wal_records() -> Vec<WalRecord> {
    vec![
        WalRecord::Append {
            entries: vec![entry(1, 1, b"a"), entry(1, 2, b"bb")],
        },
        WalRecord::Truncate { after: 1 },
        WalRecord::Snapshot {
            position: LogPosition::new(2, 1),
            discard_log: false,
        },
    ]
}

fn frame_seeds() -> Vec<Seed> {
    // Split headers: one contiguous read; byte by byte; odd pieces with
    // `Pending`s between them.
    let splits: [&[u8]; 3] = [&[0], &[1, 1], &[3, 0, 7, 1, 200, 2]];
    let mut seeds = Vec::new();
    let payloads = sample_payloads();
    for (i, (name, payload)) in payloads.iter().enumerate() {
        // One frame per payload (the frame encoder takes a value; a byte
        // payload is re-framed by hand the way `encode_frame` does).
        let mut stream = Vec::new();
        frame_raw(payload, &mut stream);
        let split = splits[i % splits.len()];
        let mut input = vec![split.len() as u8 - 1];
        input.extend_from_slice(split);
        input.extend_from_slice(&stream);
        seeds.push((format!("frame-{name}"), input));
    }
    // A whole peer connection: the handshake, then several frames.
    let mut stream = Vec::new();
    encode_frame(
        &Hello {
            cluster_id: "demo".to_string(),
            role: HelloRole::Peer {
                from: 1,
                to: 2,
                incarnation: Some(Incarnation([7; 16])),
            },
        },
        &mut stream,
    )
    .expect("encodes");
    for message in sample_messages() {
        encode_frame(
            &MultiPeerFrame::Frame {
                seq: 1,
                frame: sample_frame(vec![message]),
            },
            &mut stream,
        )
        .expect("encodes");
    }
    encode_frame(&MultiPeerFrame::Keepalive, &mut stream).expect("encodes");
    for split in splits {
        let mut input = vec![split.len() as u8 - 1];
        input.extend_from_slice(split);
        input.extend_from_slice(&stream);
        seeds.push((format!("stream-peer-split{}", split.len()), input));
    }
    seeds
}

/// Frames `payload` as `encode_frame` frames an encoded value.
fn frame_raw(payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.push(concord_tokio::frame::PROTOCOL_VERSION);
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

fn session_seeds() -> Vec<Seed> {
    let mut seeds = Vec::new();
    seeds.push(("register".to_string(), encode_register().to_vec()));
    for (i, request) in kv_requests().iter().enumerate() {
        let request = services::encode_request::<Kv>(i as u64 + 1, request);
        seeds.push((format!("kv-request-{i}"), request.to_vec()));
        seeds.push((
            format!("command-{i}"),
            encode_command(1, i as u64 + 1, &request).to_vec(),
        ));
    }
    let responses = [
        SessionResponse::Registered { client: 1 },
        SessionResponse::Ok(Bytes::from_static(b"value")),
        SessionResponse::SessionExpired,
        SessionResponse::Malformed,
    ];
    for (i, response) in responses.iter().enumerate() {
        seeds.push((format!("response-{i}"), response.encode().to_vec()));
    }
    // A session's life as length-prefixed requests: register, then
    // commands, a retry, a stale sequence number, more registrations than
    // the table holds (eviction), a command of an evicted session.
    let mut script: Vec<Bytes> = vec![encode_register()];
    for (seq, request) in kv_requests().iter().enumerate() {
        let request = services::encode_request::<Kv>(seq as u64 + 1, request);
        script.push(encode_command(1, seq as u64 + 1, &request));
    }
    script.push(script[script.len() - 1].clone());
    script.push(encode_command(1, 1, b"stale"));
    for _ in 0..super::session::SESSIONS_MAX + 1 {
        script.push(encode_register());
    }
    script.push(encode_command(1, 9, b"evicted"));
    let mut input = Vec::new();
    for request in &script {
        input.push(request.len() as u8);
        input.extend_from_slice(request);
    }
    seeds.push(("script-sessions".to_string(), input));
    // A session state machine's snapshot (restore decoder).
    let mut machine = concord_services::service_state_machine::<Kv>();
    use concord::state_machine::StateMachine;
    for (i, request) in script.iter().enumerate() {
        machine.apply(i as u64 + 1, request);
    }
    seeds.push(("snapshot-kv".to_string(), machine.snapshot().to_vec()));
    // Length fields that outrun the input: a key-value request (read as
    // a query, and applied inside a command of a length-prefixed script)
    // and a session snapshot whose key-value state does.
    let op = inflate_length(&hostile_put(), b"hostile", ANNOUNCED_BYTES);
    seeds.push(("hostile-length-kv-request".to_string(), op.clone()));
    let command = encode_command(1, 1, &op);
    let mut input = vec![encode_register().len() as u8];
    input.extend_from_slice(&encode_register());
    input.push(command.len() as u8);
    input.extend_from_slice(&command);
    seeds.push(("hostile-length-script".to_string(), input));
    let mut machine = concord_services::service_state_machine::<Kv>();
    let registered = SessionResponse::decode(&machine.apply(1, &encode_register()));
    let Ok(SessionResponse::Registered { client }) = registered else {
        panic!("a registration registers: {registered:?}");
    };
    machine.apply(2, &encode_command(client, 1, &hostile_put()));
    seeds.push((
        "hostile-length-snapshot".to_string(),
        inflate_length(&machine.snapshot(), b"hostile", ANNOUNCED_BYTES),
    ));
    seeds
}

/// The seed inputs of target `name` (empty for an unknown name).
pub fn seeds(name: &str) -> Vec<Seed> {
    match name {
        "frame" => frame_seeds(),
        "codec" => sample_payloads(),
        "session" => session_seeds(),
        "wal_recovery" => super::wal_recovery::seeds(),
        "legacy_upgrade" => super::legacy_upgrade::seeds(),
        "node_step" => super::node_step::seeds(),
        _ => Vec::new(),
    }
}
