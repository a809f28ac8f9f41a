//! Recording a history from a real cluster and checking it.
//!
//! Starts three concord key-value servers on 127.0.0.1 (the one runtime,
//! as `concord-node` runs it: [`start_node`] hosting the store as group 1
//! beside the catalog, each with its data directory in a temporary
//! directory),
//! or connects to a running cluster with `--servers`; runs a short
//! workload of gets, puts, appends and compare-and-sets from several
//! concurrent clients through the typed client, recording every operation
//! with [`concord_sim::history::Recorder`]; writes the history as JSON lines
//! and checks it for linearizability, exactly as `concord-sim check` would.
//!
//! ```text
//! cargo run --release -p concord-sim --example record_real_cluster
//! cargo run --release -p concord-sim --example record_real_cluster -- \
//!     --servers 127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003 --out history.jsonl
//! cargo run --release -p concord-sim -- check history.jsonl
//! ```
//!
//! Options: `--servers A,B,C` (default: start three servers here),
//! `--cluster NAME` (default `concord`), `--clients N` (default 5),
//! `--ops N` per client (default 40), `--out FILE` (default a file in the
//! temporary directory). Exit code 0 if the history is linearizable, 1 if
//! not, 2 if the check gave up or something else went wrong.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use concord_services::kv::Kv;
use concord_services::{CallError, KvClient, ServiceMachine};
use concord_sim::history::{Op, Output, Recorder, Token};
use concord_sim::linearizability::{check_history_parallel, CheckConfig, CheckResult};
use concord_tokio::client::ClientConfig;
use concord_tokio::cluster::{start_node, NodeSettings, NodeStorage, RunningNode};

struct Options {
    servers: Option<Vec<String>>,
    cluster: String,
    clients: u64,
    ops: u64,
    out: PathBuf,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        servers: None,
        cluster: "concord".to_string(),
        clients: 5,
        ops: 40,
        out: std::env::temp_dir().join(format!("concord-history-{}.jsonl", std::process::id())),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--servers" => o.servers = Some(value()?.split(',').map(str::to_string).collect()),
            "--cluster" => o.cluster = value()?,
            "--clients" => o.clients = value()?.parse().map_err(|e| format!("--clients: {e}"))?,
            "--ops" => o.ops = value()?.parse().map_err(|e| format!("--ops: {e}"))?,
            "--out" => o.out = PathBuf::from(value()?),
            other => return Err(format!("unknown option {other:?} (see the example's docs)")),
        }
    }
    Ok(o)
}

/// Records what concord's client reported for the operation of `token`:
/// a refusal before sending is a definite failure; anything else may have
/// been applied, so it is unknown (see `concord_sim::history`).
fn record_error(recorder: &Recorder, token: Token, error: &CallError) {
    if error.definitely_not_applied() {
        recorder.fail(token)
    } else {
        recorder.unknown(token)
    }
}

/// One client's workload: `ops` operations on three keys, each recorded.
async fn client_loop(recorder: Recorder, servers: Vec<String>, cluster: String, id: u64, ops: u64) {
    let mut config = ClientConfig::new(servers, cluster);
    config.request_timeout = Duration::from_millis(500);
    config.attempts_max = 10;
    let mut client = KvClient::new(config);
    // The last value this client read per key.
    let mut last_seen: BTreeMap<String, String> = BTreeMap::new();
    for i in 0..ops {
        let key = format!("k{}", (id + i) % 3);
        match (id * 7 + i * 3) % 4 {
            0 => {
                let token = recorder.call(id, key.clone(), Op::Get);
                let key_read = key.clone();
                match client.get(key).await {
                    Ok(value) => {
                        let value = value
                            .map_or(String::new(), |v| String::from_utf8_lossy(&v).into_owned());
                        last_seen.insert(key_read.clone(), value.clone());
                        recorder.ok(token, Output::Value(value));
                    }
                    Err(e) => record_error(&recorder, token, &e),
                }
            }
            1 => {
                let value = format!("c{id}.{i};");
                let token = recorder.call(
                    id,
                    key.clone(),
                    Op::Put {
                        value: value.clone(),
                    },
                );
                match client.put(key, value).await {
                    Ok(()) => recorder.ok(token, Output::Done),
                    Err(e) => record_error(&recorder, token, &e),
                }
            }
            2 => {
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
            }
            _ => {
                // Compare-and-set from the last value this client read
                // (the empty string stands for a missing key).
                let from = last_seen.get(&key).cloned().unwrap_or_default();
                let to = format!("c{id}.{i}!");
                let token = recorder.call(
                    id,
                    key.clone(),
                    Op::Cas {
                        from: from.clone(),
                        to: to.clone(),
                    },
                );
                let expected = (!from.is_empty()).then(|| Bytes::from(from));
                match client.cas(key, expected, to).await {
                    Ok(swapped) => recorder.ok(token, Output::Swapped(swapped)),
                    Err(e) => record_error(&recorder, token, &e),
                }
            }
        }
    }
}

/// Three servers on free loopback ports, data directories under `base`.
async fn start_cluster(
    base: &std::path::Path,
    cluster: &str,
) -> Result<(Vec<String>, Vec<RunningNode>), Box<dyn std::error::Error>> {
    let listeners: Vec<std::net::TcpListener> = (0..3)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()?;
    let peers: BTreeMap<u64, String> = listeners
        .iter()
        .enumerate()
        .map(|(i, l)| Ok((i as u64 + 1, l.local_addr()?.to_string())))
        .collect::<Result<_, std::io::Error>>()?;
    drop(listeners);
    let mut nodes = Vec::new();
    for (&id, addr) in &peers {
        let storage = NodeStorage::dir(base.join(format!("node-{id}")));
        let settings = NodeSettings::new(id, addr.clone(), peers.clone(), cluster);
        nodes.push(start_node(settings, ServiceMachine::<Kv>::new, storage).await?);
        println!("node {id} listening on {addr}");
    }
    Ok((peers.into_values().collect(), nodes))
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let o = options()?;
    let base = std::env::temp_dir().join(format!("concord-record-{}", std::process::id()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let recorder = Recorder::new();
    let outcome = runtime.block_on(async {
        let (servers, nodes) = match &o.servers {
            Some(servers) => (servers.clone(), Vec::new()),
            None => start_cluster(&base, &o.cluster).await?,
        };
        println!(
            "recording {} clients x {} operations against {}",
            o.clients,
            o.ops,
            servers.join(",")
        );
        let tasks: Vec<_> = (1..=o.clients)
            .map(|id| {
                tokio::spawn(client_loop(
                    recorder.clone(),
                    servers.clone(),
                    o.cluster.clone(),
                    id,
                    o.ops,
                ))
            })
            .collect();
        for task in tasks {
            task.await?;
        }
        for node in nodes {
            let _ = tokio::time::timeout(Duration::from_secs(5), node.shutdown()).await;
        }
        Ok::<(), Box<dyn std::error::Error>>(())
    });
    let _ = std::fs::remove_dir_all(&base);
    outcome?;

    let history = recorder.history();
    recorder.write_jsonl(std::io::BufWriter::new(std::fs::File::create(&o.out)?))?;
    println!(
        "{} operations written to {}",
        history.len(),
        o.out.display()
    );
    let report = check_history_parallel(&history, &CheckConfig::default(), 2);
    for k in &report.keys {
        println!(
            "  key {:?}: {} ops, {} completed, {} unknown, {} failed, {:.3} s: {}",
            k.key,
            k.ops,
            k.completed,
            k.unknown,
            k.failed,
            k.elapsed.as_secs_f64(),
            k.verdict
        );
    }
    println!("{}", report.result);
    println!(
        "check it again with: cargo run --release -p concord-sim -- check {}",
        o.out.display()
    );
    Ok(match report.result {
        CheckResult::Ok => ExitCode::SUCCESS,
        CheckResult::NotLinearizable(_) => ExitCode::from(1),
        _ => ExitCode::from(2),
    })
}
