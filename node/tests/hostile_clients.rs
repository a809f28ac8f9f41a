//! Hostile clients against a real `concord-node`: a thousand connections
//! that complete the handshake, announce a 16 MiB frame and send 1 KiB of
//! it must not make the node allocate what they announce, must not stop
//! ordinary clients from being served, and must be closed once the frame
//! timeout passes.

#[path = "common/processes.rs"]
mod processes;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use concord_tokio::frame::{self, FRAME_HEADER_BYTES, PROTOCOL_VERSION};
use concord_tokio::listener::FRAME_TIMEOUT_DEFAULT;
use concord_tokio::wire::{Hello, HelloRole, Welcome};
use processes::{leader_id, runtime, NodeProcesses};

const CLUSTER: &str = "hostile-test";

/// Connections the attack opens.
const HOSTILE_CONNECTIONS: usize = 1000;

/// What each announces: one byte under the largest frame accepted.
const ANNOUNCED_BYTES: u32 = 16 * 1024 * 1024 - 1;

/// The bound a server keeps to: resident memory above idle while attacked.
const RSS_ABOVE_IDLE_MAX_BYTES: u64 = 100 * 1000 * 1000;

/// Resident set size of process `pid` (from /proc).
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS line");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in kB");
    kib * 1024
}

/// Opens a client connection, completes the handshake and sends a frame
/// header announcing `ANNOUNCED_BYTES` followed by 1 KiB of payload.
fn hostile_connection(addr: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut hello = Vec::new();
    frame::encode_frame(
        &Hello {
            cluster_id: CLUSTER.to_string(),
            role: HelloRole::Client,
        },
        &mut hello,
    )
    .unwrap();
    stream.write_all(&hello).expect("send hello");
    let mut header = [0u8; FRAME_HEADER_BYTES];
    stream.read_exact(&mut header).expect("welcome header");
    let len = u32::from_le_bytes(header[..4].try_into().unwrap()) as usize;
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).expect("welcome payload");
    let welcome: Welcome = concord_tokio::codec::decode(&payload, 1 << 16).expect("a welcome");
    assert!(matches!(welcome, Welcome::Accepted { .. }), "{welcome:?}");
    let mut attack = ANNOUNCED_BYTES.to_le_bytes().to_vec();
    attack.push(PROTOCOL_VERSION);
    attack.extend_from_slice(&[0u8; 4]);
    attack.extend_from_slice(&[0xAB; 1024]);
    stream
        .write_all(&attack)
        .expect("send the announced frame's start");
    stream
}

#[test]
fn announced_frames_cost_what_arrives_and_stalled_connections_are_closed() {
    let mut cluster = NodeProcesses::on_loopback("hostile", CLUSTER);
    for id in cluster.ids() {
        cluster.start(id);
    }
    let rt = runtime();
    let mut client = cluster.client();
    let leader = rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(id) = leader_id(&mut client, 3).await {
                client.put("warm", "up").await.expect("first write");
                break id;
            }
            assert!(Instant::now() < deadline, "no leader");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let pid = cluster.pid(leader).expect("leader runs");
    std::thread::sleep(Duration::from_secs(1));
    let idle_rss = rss_bytes(pid);

    let addr = cluster.addr(leader);
    let attack_started = Instant::now();
    let mut hostile: Vec<TcpStream> = (0..HOSTILE_CONNECTIONS)
        .map(|_| hostile_connection(&addr))
        .collect();
    let opened_in = attack_started.elapsed();

    // Ordinary clients keep being served by the attacked leader, and its
    // memory stays bounded, for as long as the attack lasts.
    let mut peak_rss = rss_bytes(pid);
    let mut writes = 0u32;
    rt.block_on(async {
        while writes < 50 {
            client
                .put(format!("k{writes}"), "v")
                .await
                .expect("an ordinary write during the attack");
            assert_eq!(
                client
                    .get(format!("k{writes}"))
                    .await
                    .expect("a read during the attack"),
                Some(bytes::Bytes::from_static(b"v"))
            );
            writes += 1;
            peak_rss = peak_rss.max(rss_bytes(pid));
        }
    });
    // The attacked node itself answers (a status is served by the node
    // asked, never redirected).
    let attacked = cluster.servers().iter().position(|a| *a == addr).unwrap();
    let status = rt
        .block_on(client.status(attacked))
        .expect("the attacked node answers");
    assert_eq!(status.id, leader);
    peak_rss = peak_rss.max(rss_bytes(pid));
    eprintln!(
        "{HOSTILE_CONNECTIONS} connections announcing {ANNOUNCED_BYTES} bytes (opened in {opened_in:?}): \
         RSS idle {} kB, peak {} kB (+{} kB); {writes} writes and reads served meanwhile",
        idle_rss / 1024,
        peak_rss / 1024,
        peak_rss.saturating_sub(idle_rss) / 1024
    );
    assert!(
        peak_rss <= idle_rss + RSS_ABOVE_IDLE_MAX_BYTES,
        "RSS went from {idle_rss} to {peak_rss} bytes"
    );

    // Each stalled connection is closed by the node once its frame has
    // been unfinished for the frame timeout (the read sees the close, not
    // our own 30 s read timeout).
    let deadline = attack_started + FRAME_TIMEOUT_DEFAULT + Duration::from_secs(30);
    for (i, stream) in hostile.iter_mut().enumerate() {
        let mut byte = [0u8; 1];
        match stream.read(&mut byte) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("hostile connection {i}: expected a close, got {other:?}"),
        }
        assert!(Instant::now() < deadline, "connection {i} closed too late");
    }
    let log = cluster.log_text(leader);
    assert!(
        log.contains("a frame was begun but not finished in time"),
        "the node says why it closed them"
    );
}
