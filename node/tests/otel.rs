//! OpenTelemetry export (feature `otel`): three real `concord-node`
//! processes started with `--otlp-endpoint` at a stub OTLP/HTTP collector
//! of this test (a TCP listener answering every `POST /v1/traces` with
//! 200 and keeping the bodies). After a few writes and a read, the
//! request spans arrive, protobuf-encoded: `propose` on the leader,
//! `commit` and `apply` on every node, `read` where the read was served,
//! with the session's `client` and `seq` attributes, from the service
//! `concord-node`.
//!
//! ```text
//! cargo test -p concord-node --features otel --test otel
//! ```

#[path = "common/processes.rs"]
mod processes;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use processes::{put_keys, runtime, NodeProcesses};

/// Generous bound on anything the cluster must do (a loaded CI machine).
const DEADLINE: Duration = Duration::from_secs(60);
/// Largest request body the stub takes.
const BODY_BYTES_MAX: usize = 16 * 1024 * 1024;

/// One request the stub received.
#[derive(Clone, Debug)]
struct Received {
    method: String,
    path: String,
    content_type: String,
    body: Vec<u8>,
}

/// A stub OTLP/HTTP collector: answers every request 200, keeps it.
struct Collector {
    addr: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Collector {
    fn start() -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("local addr").to_string();
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let sink = sink.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, &sink);
                });
            }
        });
        Collector { addr, received }
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

/// Answers the requests of one (keep-alive) connection.
fn serve(stream: TcpStream, sink: &Mutex<Vec<Received>>) -> std::io::Result<()> {
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut words = line.split_whitespace();
        let method = words.next().unwrap_or("").to_string();
        let path = words.next().unwrap_or("").to_string();
        let mut length = 0usize;
        let mut content_type = String::new();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header)? == 0 {
                return Ok(());
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            let Some((name, value)) = header.split_once(':') else {
                continue;
            };
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap_or(0),
                "content-type" => content_type = value.trim().to_string(),
                _ => {}
            }
        }
        assert!(length <= BODY_BYTES_MAX, "a {length}-byte body");
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        sink.lock().unwrap().push(Received {
            method,
            path,
            content_type,
            body,
        });
        writer.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n",
        )?;
        writer.flush()?;
    }
}

/// Whether `body` holds a span named `name`: the protobuf field `name`
/// of `Span` (field 5, length-delimited: tag 0x2a) with that value.
fn has_span(body: &[u8], name: &str) -> bool {
    let mut needle = vec![0x2a, name.len() as u8];
    needle.extend_from_slice(name.as_bytes());
    body.windows(needle.len()).any(|w| w == needle.as_slice())
}

/// Whether `body` holds the bytes of `text` anywhere.
fn has_text(body: &[u8], text: &str) -> bool {
    body.windows(text.len()).any(|w| w == text.as_bytes())
}

#[test]
fn request_spans_reach_an_otlp_collector() {
    let collector = Collector::start();
    let endpoint = format!("http://{}/v1/traces", collector.addr);
    // The exporter's batch delay (standard OpenTelemetry variable): spans
    // arrive within a fraction of a second rather than 5 s.
    std::env::set_var("OTEL_BSP_SCHEDULE_DELAY", "100");
    let mut cluster = NodeProcesses::on_loopback("otel", "otel-test");
    cluster.start_all_with(&["--otlp-endpoint", &endpoint]);
    runtime().block_on(async {
        let mut client = cluster.client();
        let mut acked = std::collections::BTreeMap::new();
        put_keys(&mut client, &mut acked, "k", 0, 5).await;
        let value = client.get("k-0").await.expect("a read");
        assert_eq!(value.as_deref(), Some(&b"value-0"[..]));
    });
    let wanted = ["propose", "commit", "apply", "read"];
    let deadline = Instant::now() + DEADLINE;
    loop {
        let received = collector.received();
        let body: Vec<u8> = received.iter().flat_map(|r| r.body.clone()).collect();
        let missing: Vec<&str> = wanted
            .iter()
            .copied()
            .filter(|name| !has_span(&body, name))
            .collect();
        if missing.is_empty() {
            for request in &received {
                assert_eq!(request.method, "POST");
                assert_eq!(request.path, "/v1/traces");
                assert_eq!(request.content_type, "application/x-protobuf");
            }
            assert!(has_text(&body, "concord-node"), "the service name");
            for attribute in ["index", "term", "client", "seq"] {
                assert!(has_text(&body, attribute), "attribute {attribute}");
            }
            // The long-lived span around them is not exported.
            assert!(!has_span(&body, "node"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "spans {missing:?} not exported within {DEADLINE:?}; {} requests received",
            received.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // A graceful stop: each node's exporter sends what is still queued.
    cluster.sigterm_all();
}
