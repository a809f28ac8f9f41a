//! `history::Recorder`: thread-safe recording with a monotonic clock, and a
//! history recorded from a real in-process TCP cluster (three servers of
//! the one runtime serving the key-value store, on in-memory disks,
//! concurrent clients) that checks as linearizable.

use std::collections::BTreeMap;
use std::time::Duration;

use concord_services::kv::Kv;
use concord_services::{CallError, KvClient, ServiceMachine};
use concord_sim::history::{parse_jsonl, Op, Outcome, Output, Recorder, Token};
use concord_sim::linearizability::{check_history, check_history_parallel, CheckConfig};
use concord_tokio::client::ClientConfig;
use concord_tokio::cluster::{start_node, NodeSettings, NodeStorage};
use concord_tokio::multi::page_cache::PageCacheDisk;

#[test]
fn recorder_is_thread_safe_and_monotonic() {
    let recorder = Recorder::new();
    let threads: Vec<_> = (0..4u64)
        .map(|client| {
            let recorder = recorder.clone();
            std::thread::spawn(move || {
                for i in 0..250 {
                    let value = format!("c{client}.{i}");
                    let token = recorder.call(client, format!("k{client}"), Op::Put { value });
                    match i % 3 {
                        0 => recorder.ok(token, Output::Done),
                        1 => recorder.fail(token),
                        _ => recorder.unknown(token),
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let history = recorder.history();
    assert_eq!(history.len(), 1000);
    for op in &history {
        op.validate().unwrap();
    }
    // Call times are non-decreasing in recording order (one clock, taken
    // under the lock).
    assert!(history.windows(2).all(|w| w[0].call <= w[1].call));
    // Per client, each operation returned before the next was called.
    for client in 0..4 {
        let mine: Vec<_> = history.iter().filter(|o| o.client == client).collect();
        for w in mine.windows(2) {
            if let Some(r) = w[0].ret {
                assert!(r <= w[1].call);
            }
        }
    }
    assert!(check_history(&history).is_ok());
    // Round trip through JSON lines.
    let mut out = Vec::new();
    recorder.write_jsonl(&mut out).unwrap();
    assert_eq!(
        parse_jsonl(std::str::from_utf8(&out).unwrap()).unwrap(),
        history
    );
}

#[test]
fn dropped_tokens_and_calls_in_flight_are_unknown() {
    let recorder = Recorder::new();
    let token = recorder.call(1, "k", Op::Put { value: "a".into() });
    drop(token);
    let _in_flight = recorder.call(2, "k", Op::Get);
    let token = recorder.call(3, "k", Op::Get);
    recorder.ok(token, Output::Value("a".into()));
    let history = recorder.history();
    assert_eq!(history[0].outcome, Outcome::Unknown);
    assert_eq!(history[1].outcome, Outcome::Unknown);
    // The unknown put explains the read of "a".
    assert!(check_history(&history).is_ok());
}

fn record_error(recorder: &Recorder, token: Token, error: &CallError) {
    if error.definitely_not_applied() {
        recorder.fail(token)
    } else {
        recorder.unknown(token)
    }
}

#[test]
fn history_recorded_from_a_real_tcp_cluster_is_linearizable() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let recorder = Recorder::new();
    runtime.block_on(async {
        let listeners: Vec<_> = (0..3)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let peers: BTreeMap<u64, String> = listeners
            .iter()
            .enumerate()
            .map(|(i, l)| (i as u64 + 1, l.local_addr().unwrap().to_string()))
            .collect();
        drop(listeners);
        let mut nodes = Vec::new();
        for (&id, addr) in &peers {
            let settings = NodeSettings::new(id, addr.clone(), peers.clone(), "rec-test");
            let storage = NodeStorage::memory(PageCacheDisk::new(), 1);
            nodes.push(
                start_node(settings, ServiceMachine::<Kv>::new, storage)
                    .await
                    .unwrap(),
            );
        }
        let servers: Vec<String> = peers.values().cloned().collect();
        let tasks: Vec<_> = (1..=4u64)
            .map(|id| {
                let recorder = recorder.clone();
                let servers = servers.clone();
                tokio::spawn(async move {
                    let mut config = ClientConfig::new(servers, "rec-test");
                    config.request_timeout = Duration::from_millis(500);
                    let mut client = KvClient::new(config);
                    for i in 0..30u64 {
                        let key = format!("k{}", i % 2);
                        if (id + i) % 2 == 0 {
                            let value = format!("c{id}.{i};");
                            let token = recorder.call(
                                id,
                                key.clone(),
                                Op::Append {
                                    value: value.clone(),
                                },
                            );
                            match client.append(key, value).await {
                                Ok(_) => recorder.ok(token, Output::Done),
                                Err(e) => record_error(&recorder, token, &e),
                            }
                        } else {
                            let token = recorder.call(id, key.clone(), Op::Get);
                            match client.get(key).await {
                                Ok(v) => recorder.ok(
                                    token,
                                    Output::Value(v.map_or(String::new(), |v| {
                                        String::from_utf8_lossy(&v).into_owned()
                                    })),
                                ),
                                Err(e) => record_error(&recorder, token, &e),
                            }
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        for node in nodes {
            let _ = tokio::time::timeout(Duration::from_secs(5), node.shutdown()).await;
        }
    });
    let history = recorder.history();
    assert_eq!(history.len(), 120);
    let completed = history
        .iter()
        .filter(|o| matches!(o.outcome, Outcome::Ok(_)))
        .count();
    assert!(completed >= 100, "only {completed} of 120 completed");
    // Reads saw appends: the history is not trivial.
    assert!(history
        .iter()
        .any(|o| matches!(&o.outcome, Outcome::Ok(Output::Value(v)) if v.len() > 10)));
    let report = check_history_parallel(&history, &CheckConfig::default(), 2);
    assert!(report.result.is_ok(), "{}", report.result);
    assert_eq!(report.keys.len(), 2);
}
