//! Bad input: garbage, truncated and oversized frames, bad checksums,
//! strangers at the handshake, a peer's frames out of order, on peer and
//! client connections. Each closes
//! its connection with a logged reason while the node keeps serving.
//! The nodes run the one runtime (`concord_tokio::cluster::start_node`).
//! (The binaries' own bad command lines and config files are tested in
//! `node/tests/cli_args.rs`.)

#[path = "common/kv_nodes.rs"]
mod kv_nodes;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use concord_services::KvClient;
use concord_tokio::client::ClientConfig;
use concord_tokio::cluster::{NodeSettings, RunningNode, GROUP};
use concord_tokio::frame::{encode_frame, FRAME_HEADER_BYTES, PROTOCOL_VERSION};
use concord_tokio::multi::groups_status::StatusQuery;
use concord_tokio::multi::wire::{GroupOp, GroupRequest, MultiPeerFrame};
use concord_tokio::wire::{Hello, HelloRole, Welcome};
use kv_nodes::start_kv_node;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuffer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).to_string()
    }
}

async fn start_cluster(cluster_id: &str) -> (Vec<RunningNode>, BTreeMap<u64, String>) {
    let listeners: Vec<_> = (0..3)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let peers: BTreeMap<u64, String> = (1..=3u64)
        .map(|id| {
            (
                id,
                listeners[id as usize - 1].local_addr().unwrap().to_string(),
            )
        })
        .collect();
    drop(listeners);
    let mut nodes = Vec::new();
    for (&id, addr) in &peers {
        let settings = NodeSettings::new(id, addr.clone(), peers.clone(), cluster_id);
        nodes.push(start_kv_node(settings).await.unwrap());
    }
    (nodes, peers)
}

/// Sends `bytes` on a fresh connection (after an optional valid
/// handshake) and expects the server to close it within a few seconds.
async fn expect_closed(addr: &str, hello: Option<Hello>, bytes: &[u8], shutdown_write: bool) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut scratch = vec![0u8; 64 * 1024];
    if let Some(hello) = hello {
        stream = handshake(stream, hello).await;
    }
    let _ = stream.write_all(bytes).await;
    if shutdown_write {
        let _ = stream.shutdown().await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(
            Instant::now() < deadline,
            "server did not close the connection"
        );
        match tokio::time::timeout(Duration::from_millis(500), stream.read(&mut scratch)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(_)) => continue, // e.g. a Refused welcome; keep reading to EOF
            Err(_) => continue,
        }
    }
}

/// Sends `hello` and expects to be accepted.
async fn handshake(mut stream: TcpStream, hello: Hello) -> TcpStream {
    let mut frame = Vec::new();
    encode_frame(&hello, &mut frame).unwrap();
    stream.write_all(&frame).await.unwrap();
    // Read the Welcome frame.
    let mut header = [0u8; FRAME_HEADER_BYTES];
    stream.read_exact(&mut header).await.unwrap();
    let len = u32::from_le_bytes(header[..4].try_into().unwrap()) as usize;
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).await.unwrap();
    let welcome: Welcome = concord_tokio::codec::decode(&payload, 1024).unwrap();
    assert!(matches!(welcome, Welcome::Accepted { .. }), "{welcome:?}");
    stream
}

/// A client's status request, as the one-group client sends it.
fn status_request() -> GroupRequest {
    GroupRequest {
        group: GROUP,
        request: GroupOp::Status(StatusQuery::Node(GROUP)),
    }
}

fn header(len: u32, version: u8, crc: u32) -> Vec<u8> {
    let mut h = len.to_le_bytes().to_vec();
    h.push(version);
    h.extend_from_slice(&crc.to_le_bytes());
    h
}

#[test]
fn bad_frames_close_the_connection_with_a_logged_reason_and_the_node_keeps_serving() {
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    // One thread, so the subscriber above sees every task.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (nodes, peers) = start_cluster("bad-input").await;
        let servers: Vec<String> = peers.values().cloned().collect();
        let mut client = KvClient::new(ClientConfig::new(servers.clone(), "bad-input"));
        client.put("before", "1").await.unwrap();
        let target = &peers[&1];
        let client_hello = Hello {
            cluster_id: "bad-input".to_string(),
            role: HelloRole::Client,
        };
        let peer_hello = Hello {
            cluster_id: "bad-input".to_string(),
            role: HelloRole::Peer {
                from: 2,
                to: 1,
                incarnation: None,
            },
        };

        // 1. Garbage instead of a handshake.
        expect_closed(target, None, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", false).await;
        // 2. A truncated handshake frame.
        let mut hello = Vec::new();
        encode_frame(&client_hello, &mut hello).unwrap();
        expect_closed(target, None, &hello[..hello.len() - 2], true).await;
        // 3. Oversized frame on the client port (after the handshake).
        expect_closed(
            target,
            Some(client_hello.clone()),
            &header(u32::MAX, PROTOCOL_VERSION, 0),
            false,
        )
        .await;
        // 4. Bad checksum on the client port.
        let mut request = Vec::new();
        encode_frame(&status_request(), &mut request).unwrap();
        request[5] ^= 0xff;
        expect_closed(target, Some(client_hello.clone()), &request, false).await;
        // 5. Truncated frame on the peer port.
        let mut body = header(100, PROTOCOL_VERSION, 0);
        body.extend_from_slice(&[1, 2, 3]);
        expect_closed(target, Some(peer_hello.clone()), &body, true).await;
        // 6. A valid frame whose payload is garbage, on the peer port.
        let garbage = [0xffu8; 32];
        let mut body = header(32, PROTOCOL_VERSION, crc32c::crc32c(&garbage));
        body.extend_from_slice(&garbage);
        expect_closed(target, Some(peer_hello.clone()), &body, false).await;
        // 7. Oversized frame on the peer port; 8. wrong version.
        expect_closed(
            target,
            Some(peer_hello.clone()),
            &header(1 << 30, PROTOCOL_VERSION, 0),
            false,
        )
        .await;
        expect_closed(target, Some(peer_hello.clone()), &header(4, 77, 0), false).await;
        // 9. Strangers: another cluster, an unknown node id, our own id.
        for stranger in [
            Hello {
                cluster_id: "other-cluster".to_string(),
                role: HelloRole::Client,
            },
            Hello {
                cluster_id: "bad-input".to_string(),
                role: HelloRole::Peer {
                    from: 99,
                    to: 1,
                    incarnation: None,
                },
            },
            Hello {
                cluster_id: "bad-input".to_string(),
                role: HelloRole::Peer {
                    from: 1,
                    to: 1,
                    incarnation: None,
                },
            },
        ] {
            let mut frame = Vec::new();
            encode_frame(&stranger, &mut frame).unwrap();
            expect_closed(target, None, &frame, false).await;
        }

        // 10. A client that resets its connection right after a request
        // (as one that gave up on a timed-out request does) is not bad
        // input: it is neither counted nor logged as such.
        let counters = &nodes[0].listener_counters;
        let bad_before = counters
            .bad_input
            .load(std::sync::atomic::Ordering::Relaxed);
        for _ in 0..5 {
            let stream = TcpStream::connect(target.as_str()).await.unwrap();
            let mut stream = handshake(stream, client_hello.clone()).await;
            let mut request = Vec::new();
            encode_frame(&status_request(), &mut request).unwrap();
            stream.write_all(&request).await.unwrap();
            // Linger zero makes the close a reset; it cannot block.
            #[allow(deprecated)]
            stream.set_linger(Some(Duration::ZERO)).unwrap();
            drop(stream);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            counters
                .bad_input
                .load(std::sync::atomic::Ordering::Relaxed),
            bad_before,
            "a reset connection was counted as bad input"
        );
        assert!(
            !logs.text().contains("reset by peer"),
            "a reset connection was logged as bad input:\n{}",
            logs.text()
        );

        // 11. A peer whose frames arrive out of the order it sent them
        // in: numbers may skip (frames left unsent), never fall.
        let numbered = |seq: u64| {
            let mut bytes = Vec::new();
            let frame = MultiPeerFrame::Frame {
                seq,
                frame: concord::multi::Frame::new(2, 1, 0),
            };
            encode_frame(&frame, &mut bytes).unwrap();
            bytes
        };
        let reordered_before = counters
            .peer_frames_out_of_order
            .load(std::sync::atomic::Ordering::Relaxed);
        let mut frames = numbered(5);
        frames.extend(numbered(9));
        frames.extend(numbered(7));
        expect_closed(target, Some(peer_hello.clone()), &frames, false).await;
        assert_eq!(
            counters
                .peer_frames_out_of_order
                .load(std::sync::atomic::Ordering::Relaxed),
            reordered_before + 1,
            "a connection whose frame numbers fell was not counted"
        );
        assert!(
            logs.text().contains("frame 7 after frame 9"),
            "the reordered frames were not logged:\n{}",
            logs.text()
        );

        // The node keeps serving, and node 1 still counts as a replica.
        client.put("after", "2").await.unwrap();
        assert_eq!(
            client.get("before").await.unwrap(),
            Some(Bytes::from_static(b"1"))
        );
        let counters = &nodes[0].listener_counters;
        let bad = counters
            .bad_input
            .load(std::sync::atomic::Ordering::Relaxed);
        let refused = counters.refused.load(std::sync::atomic::Ordering::Relaxed);
        assert!(bad >= 8, "bad-input closes counted: {bad}");
        assert_eq!(refused, 3);
        let status = client.status(0).await.unwrap();
        assert!(status.applied_index >= 3, "{status:?}");

        let text = logs.text();
        for expected in [
            "closing connection after bad input",
            "exceeds the maximum",
            "checksum mismatch",
            "connection closed in the middle of a frame",
            "undecodable frame payload",
            "unsupported protocol version 77",
            "refused connection",
            "cluster id \"other-cluster\" is not ours",
            "node 99 is not a member of this cluster as node 1 knows it (its --peers and its \
             log name nodes 2, 3)",
            "peer claims our own id 1",
        ] {
            assert!(text.contains(expected), "log lacks {expected:?}:\n{text}");
        }
        for node in nodes {
            node.shutdown().await.unwrap();
        }
    });
}
