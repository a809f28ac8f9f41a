//! Client sessions on every group, on real processes: three
//! `concord-node --groups 16` servers on loopback, and between the
//! clients and each server a proxy of this test that cuts some answers: the request reaches the server,
//! the connection is closed before its answer gets back. Clients append
//! unique tokens to a few keys (of several groups), each write retried
//! with its session (`ShardedKvClient` in this process, and `concord-cli
//! --groups 16` processes); a server is killed and restarted on the way
//! (leader changes, a restart replaying snapshots and the log). At the
//! end each key is read from the servers directly: every acknowledged
//! token is there exactly once, and no token twice.
//!
//! ```text
//! cargo test -p concord-node --test multi_group_sessions -- --nocapture
//! ```
//!
//! `CONCORD_SESSIONS_SEED` sets the proxies' seed (default: from the
//! clock; printed).

#[path = "common/processes.rs"]
mod processes;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use concord_services::sharded_kv::ShardMap;
use concord_services::sharded_kv_client::ShardedKvClient;
use concord_tokio::multi::routing_client::RoutingConfig;
use processes::{cli_binary, output_of, NodeProcesses};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const CLUSTER: &str = "multi-sessions";
const GROUPS: u64 = 16;
/// Keys appended to; chosen in distinct groups.
const KEYS: usize = 6;
/// Writers in this process, each with its own client (and sessions).
const WRITERS: u64 = 4;
/// Appends per writer.
const APPENDS: u64 = 50;
/// `concord-cli` appends (each process opens its own session).
const CLI_APPENDS: u64 = 12;
/// Per mille of answers the proxies cut.
const CUT_PER_MILLE: u32 = 250;
/// A frame's header: length (u32), version, checksum (u32).
const FRAME_HEADER_BYTES: usize = 9;

/// Answers cut by the proxies, and answers passed.
#[derive(Default)]
struct ProxyCounters {
    cut: AtomicU64,
    passed: AtomicU64,
}

/// Reads one frame (header and payload) from `stream` into `frame`;
/// `false` at the end of the stream.
async fn read_frame(stream: &mut tokio::net::tcp::OwnedReadHalf, frame: &mut Vec<u8>) -> bool {
    frame.resize(FRAME_HEADER_BYTES, 0);
    if stream.read_exact(frame).await.is_err() {
        return false;
    }
    let length = u32::from_le_bytes(frame[..4].try_into().expect("4 bytes")) as usize;
    frame.resize(FRAME_HEADER_BYTES + length, 0);
    stream
        .read_exact(&mut frame[FRAME_HEADER_BYTES..])
        .await
        .is_ok()
}

/// One client connection through the proxy: requests pass; after the
/// handshake's answer, each answer is cut (the connection closed
/// instead) with probability CUT_PER_MILLE.
async fn relay(
    client: TcpStream,
    target: String,
    rng: Arc<Mutex<ChaCha8Rng>>,
    counters: Arc<ProxyCounters>,
) {
    let Ok(server) = TcpStream::connect(&target).await else {
        return;
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let requests = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
    });
    let mut frame = Vec::new();
    let mut handshake = true;
    while read_frame(&mut server_read, &mut frame).await {
        let cut = !handshake && rng.lock().unwrap().gen_range(0..1000) < CUT_PER_MILLE;
        handshake = false;
        if cut {
            counters.cut.fetch_add(1, Ordering::Relaxed);
            break;
        }
        counters.passed.fetch_add(1, Ordering::Relaxed);
        if client_write.write_all(&frame).await.is_err() {
            break;
        }
    }
    requests.abort();
}

/// A proxy on a fresh loopback port in front of `target`; its address.
async fn proxy(
    target: String,
    rng: Arc<Mutex<ChaCha8Rng>>,
    counters: Arc<ProxyCounters>,
) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(relay(client, target.clone(), rng.clone(), counters.clone()));
        }
    });
    addr
}

/// KEYS keys, each of another group.
fn keys(map: &ShardMap) -> Vec<String> {
    let mut seen = BTreeSet::new();
    (0..)
        .map(|i| format!("log-{i}"))
        .filter(|key| seen.insert(map.group_of(key.as_bytes())))
        .take(KEYS)
        .collect()
}

fn client(servers: BTreeMap<u64, String>) -> ShardedKvClient {
    let mut config = RoutingConfig::new(CLUSTER, servers);
    config.request_timeout = Duration::from_secs(5);
    config.attempts_max = 64;
    // A cut connection is no sign of a dead server here.
    config.avoid_min = Duration::from_millis(20);
    config.avoid_max = Duration::from_millis(100);
    ShardedKvClient::new(ShardMap::new(GROUPS).unwrap(), config).unwrap()
}

#[test]
fn retried_writes_are_applied_exactly_once_when_answers_are_cut() {
    let seed: u64 = std::env::var("CONCORD_SESSIONS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("CONCORD_SESSIONS_SEED={seed}");
    let mut cluster = NodeProcesses::on_loopback("multi-sessions", CLUSTER);
    // Snapshots every 64 entries: the tables travel in snapshots too.
    let flags = ["--groups", "16", "--snapshot-every-entries", "64"];
    cluster.start_all_with(&flags);
    let map = ShardMap::new(GROUPS).unwrap();
    let keys = keys(&map);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // Every key's group serves before the proxies cut anything.
    runtime.block_on(async {
        let mut direct = client(cluster.addrs.clone());
        for key in &keys {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while let Err(e) = direct.get(key.clone()).await {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{key} not served: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    let rng = Arc::new(Mutex::new(ChaCha8Rng::seed_from_u64(seed)));
    let counters = Arc::new(ProxyCounters::default());
    let proxied: BTreeMap<u64, String> = runtime.block_on(async {
        let mut proxied = BTreeMap::new();
        for (id, addr) in &cluster.addrs {
            proxied.insert(
                *id,
                proxy(addr.clone(), rng.clone(), counters.clone()).await,
            );
        }
        proxied
    });

    // Every token sent, and the ones acknowledged, by key.
    let acknowledged: Arc<Mutex<BTreeMap<String, BTreeSet<String>>>> = Arc::default();
    let retries = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let (proxied, keys) = (proxied.clone(), keys.clone());
            let (acknowledged, retries) = (acknowledged.clone(), retries.clone());
            runtime.spawn(async move {
                let mut client = client(proxied);
                for i in 0..APPENDS {
                    let key = keys[((writer + i) % KEYS as u64) as usize].clone();
                    let token = format!("w{writer}.{i};");
                    match client.append(key.clone(), token.clone()).await {
                        Ok(()) => {
                            acknowledged
                                .lock()
                                .unwrap()
                                .entry(key)
                                .or_default()
                                .insert(token);
                        }
                        Err(e) => panic!("writer {writer}: append {token} to {key}: {e}"),
                    }
                }
                retries.fetch_add(client.sessions().stats().retries, Ordering::Relaxed);
            })
        })
        .collect();

    // concord-cli appends through the proxies meanwhile; node 2 is killed
    // and restarted half way.
    let servers: Vec<String> = proxied.values().cloned().collect();
    for i in 0..CLI_APPENDS {
        if i == CLI_APPENDS / 2 {
            cluster.sigkill(2);
            std::thread::sleep(Duration::from_millis(300));
            cluster.start_with(2, &flags);
        }
        let key = keys[(i % KEYS as u64) as usize].clone();
        let token = format!("cli.{i};");
        let (code, _, err) = output_of(
            Command::new(cli_binary())
                .args(["--servers", &servers.join(",")])
                .args(["--cluster-id", CLUSTER, "--groups", "16"])
                .args(["--timeout-ms", "5000"])
                .args(["kv", "append", &key, &token]),
        );
        assert_eq!(code, 0, "concord-cli append {token} to {key}: {err}");
        acknowledged
            .lock()
            .unwrap()
            .entry(key)
            .or_default()
            .insert(token);
    }
    for writer in writers {
        runtime.block_on(writer).expect("a writer");
    }

    // Read every key from the servers directly, no proxy in between.
    let values: BTreeMap<String, String> = runtime.block_on(async {
        let mut reader = client(cluster.addrs.clone());
        let mut values = BTreeMap::new();
        for key in &keys {
            let value = reader.get(key.clone()).await.expect("a read");
            let text = String::from_utf8(value.unwrap_or_default().to_vec()).expect("utf-8");
            values.insert(key.clone(), text);
        }
        values
    });
    let acknowledged = acknowledged.lock().unwrap().clone();
    let mut total = 0;
    for key in &keys {
        let tokens: Vec<String> = values[key]
            .split_terminator(';')
            .map(|t| format!("{t};"))
            .collect();
        let distinct: BTreeSet<String> = tokens.iter().cloned().collect();
        assert_eq!(
            distinct.len(),
            tokens.len(),
            "{key}: a token applied twice: {}",
            values[key]
        );
        let expected = acknowledged.get(key).cloned().unwrap_or_default();
        assert_eq!(distinct, expected, "{key}: tokens applied vs acknowledged");
        total += tokens.len();
    }
    let (cut, passed) = (
        counters.cut.load(Ordering::Relaxed),
        counters.passed.load(Ordering::Relaxed),
    );
    let retries = retries.load(Ordering::Relaxed);
    println!(
        "{total} appends applied once each ({} by concord-cli); proxies cut {cut} answers, \
         passed {passed}; in-process writers retried {retries} writes",
        CLI_APPENDS
    );
    assert_eq!(total as u64, WRITERS * APPENDS + CLI_APPENDS);
    assert!(
        cut > 0 && retries > 0,
        "no answer was cut: the test tested nothing"
    );
    runtime.shutdown_background();
}
