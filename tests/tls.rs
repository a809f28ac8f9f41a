//! Mutual TLS: a three-node TLS cluster refuses every connection
//! that is not what it claims (no client certificate, an expired one, one
//! from another CA, one naming another node id or another cluster, a node
//! certificate used by a client, a plaintext client), each with a log line
//! naming the remote address and the reason, and keeps serving a good
//! client afterwards; TLS material that cannot be used is refused at load
//! time naming the file. The nodes run the one runtime
//! (`concord_tokio::cluster::start_node`). (Three real `concord-node` processes with TLS
//! passing the kill/restart scenario: `node/tests/tls_cluster.rs`.)
//!
//! Certificates are made at run time with rcgen into a temporary directory.

#[path = "common/certs.rs"]
mod certs;
#[path = "common/kv_nodes.rs"]
mod kv_nodes;
#[path = "common/scratch.rs"]
mod scratch;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use bytes::Bytes;
use certs::{client_name, node_name, Ca, Validity};
use concord_services::KvClient;
use concord_tokio::client::ClientConfig;
use concord_tokio::cluster::{NodeSettings, RunningNode};
use concord_tokio::frame;
use concord_tokio::tls::{TlsConfig, TlsPaths, TlsRole};
use concord_tokio::wire::{Hello, HelloRole, Welcome};
use kv_nodes::{loopback_peers, start_kv_node};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use scratch::{free_ports, TempDir};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_rustls::rustls;

const CLUSTER: &str = "tls-test";

/// Everything logged by this test binary (at info and above).
static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Capture;

impl Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        LOG.lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_writer(|| Capture)
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("install the log capture");
    });
}

/// The captured log lines that mention `needle`.
fn log_lines_with(needle: &str) -> Vec<String> {
    let log = LOG.lock().unwrap_or_else(|e| e.into_inner());
    String::from_utf8_lossy(&log)
        .lines()
        .filter(|line| line.contains(needle))
        .map(str::to_string)
        .collect()
}

/// The certificates of one test: the cluster's (written by
/// `certs::write_cluster`) and the bad ones.
struct Material {
    dir: TempDir,
    ca: Ca,
}

impl Material {
    fn new(label: &str) -> Material {
        let dir = TempDir::new(label);
        let ca = certs::write_cluster(&dir.0, CLUSTER, 3, 30).expect("make the certificates");
        Material { dir, ca }
    }

    fn paths(&self, stem: &str) -> TlsPaths {
        TlsPaths {
            ca: self.dir.0.join("ca.pem"),
            cert: self.dir.0.join(format!("{stem}.pem")),
            key: self.dir.0.join(format!("{stem}.key")),
        }
    }

    fn load(&self, stem: &str, role: TlsRole) -> Arc<TlsConfig> {
        Arc::new(TlsConfig::load(&self.paths(stem), CLUSTER, role).expect("load TLS material"))
    }

    /// Writes a certificate for `names` issued by `ca` as `<stem>.pem/.key`.
    fn issue(&self, ca: &Ca, stem: &str, names: &[String], validity: Validity) {
        let issued = ca.issue(names, validity).expect("issue a certificate");
        certs::write_issued(&self.dir.0, stem, &issued).expect("write a certificate");
    }

    fn pem(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.dir.0.join(name)).expect("read a PEM file")
    }

    /// A rustls client trusting the cluster's CA and presenting `<stem>`'s
    /// certificate, or none.
    fn raw_client(&self, stem: Option<&str>) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&self.pem("ca.pem")) {
            roots.add(cert.unwrap()).unwrap();
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots);
        let config = match stem {
            None => builder.with_no_client_auth(),
            Some(stem) => {
                let chain = CertificateDer::pem_slice_iter(&self.pem(&format!("{stem}.pem")))
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap();
                let key = PrivateKeyDer::from_pem_slice(&self.pem(&format!("{stem}.key"))).unwrap();
                builder.with_client_auth_cert(chain, key).unwrap()
            }
        };
        Arc::new(config)
    }
}

/// Three in-process TLS nodes on loopback.
async fn tls_cluster(material: &Material) -> (Vec<RunningNode>, BTreeMap<u64, String>) {
    let peers = loopback_peers(&free_ports(3));
    let mut nodes = Vec::new();
    for (&id, addr) in &peers {
        let mut settings = NodeSettings::new(id, addr.clone(), peers.clone(), CLUSTER);
        settings.tls = Some(material.load(&format!("node-{id}"), TlsRole::Node(id)));
        nodes.push(start_kv_node(settings).await.expect("start a TLS node"));
    }
    (nodes, peers)
}

fn good_client(material: &Material, peers: &BTreeMap<u64, String>) -> KvClient {
    let mut config = ClientConfig::new(peers.values().cloned().collect(), CLUSTER);
    config.tls = Some(material.load("client", TlsRole::Client));
    config.request_timeout = Duration::from_millis(1500);
    config.attempts_max = 60;
    KvClient::new(config)
}

/// A connection, plaintext or TLS.
trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// One connection to `addr`: TLS with `tls` (as if to node 1) or plaintext,
/// then `hello`. Returns the local address (what the server logs as
/// `remote`) and the server's answer or what went wrong.
async fn attempt(
    addr: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
    hello: &Hello,
) -> (String, Result<Welcome, String>) {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let local = stream.local_addr().expect("local address").to_string();
    let result = async {
        let mut stream: Box<dyn Stream> = match tls {
            None => Box::new(stream),
            Some(config) => {
                let name = ServerName::try_from(node_name(1, CLUSTER)).unwrap();
                Box::new(
                    tokio_rustls::TlsConnector::from(config)
                        .connect(name, stream)
                        .await
                        .map_err(|e| format!("client-side TLS handshake: {e}"))?,
                )
            }
        };
        let mut buf = Vec::new();
        frame::encode_frame(hello, &mut buf).map_err(|e| e.to_string())?;
        stream.write_all(&buf).await.map_err(|e| e.to_string())?;
        stream.flush().await.map_err(|e| e.to_string())?;
        frame::read_value::<Welcome, _>(&mut stream, &mut buf, 64 * 1024)
            .await
            .map_err(|e| e.to_string())
    };
    let result = tokio::time::timeout(Duration::from_secs(5), result)
        .await
        .unwrap_or_else(|_| Err("no answer within 5 s".to_string()));
    (local, result)
}

/// Waits until node 1 counted `refused` refusals and returns its log line
/// about the connection from `remote`.
async fn refusal_logged(node: &RunningNode, refused: u64, remote: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines = log_lines_with(&format!("remote={remote} "));
        if node.listener_counters.refused.load(Ordering::Relaxed) >= refused && !lines.is_empty() {
            return lines.join("\n");
        }
        assert!(
            Instant::now() < deadline,
            "no refusal of {remote} was counted and logged (refused: {}, lines: {lines:?})",
            node.listener_counters.refused.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn bad_certificates_and_plaintext_are_refused_with_a_log_line_and_the_cluster_keeps_serving() {
    capture_logs();
    let material = Material::new("tls-refusals");
    // The bad ones: expired, another CA's, another cluster's.
    material.issue(
        &material.ca,
        "expired-client",
        &[client_name(CLUSTER)],
        Validity::Expired,
    );
    let stranger_ca = Ca::new("stranger", 30).unwrap();
    material.issue(
        &stranger_ca,
        "stranger-client",
        &[client_name(CLUSTER)],
        Validity::Days(30),
    );
    material.issue(
        &stranger_ca,
        "stranger-node-2",
        &[node_name(2, CLUSTER)],
        Validity::Days(30),
    );
    material.issue(
        &material.ca,
        "other-cluster-node-2",
        &[node_name(2, "other-cluster")],
        Validity::Days(30),
    );
    let runtime = scratch_runtime();
    runtime.block_on(async {
        let (nodes, peers) = tls_cluster(&material).await;
        let mut client = good_client(&material, &peers);
        client.put("before", "1").await.expect("a first TLS write");
        let addr = peers[&1].clone();
        let as_peer = |from| Hello {
            cluster_id: CLUSTER.to_string(),
            role: HelloRole::Peer {
                from,
                to: 1,
                incarnation: None,
            },
        };
        let as_client = Hello {
            cluster_id: CLUSTER.to_string(),
            role: HelloRole::Client,
        };
        // (what, certificate presented, hello, what the log line must say)
        #[allow(clippy::type_complexity)]
        let cases: Vec<(&str, Option<Option<&str>>, Hello, Vec<&str>)> = vec![
            (
                "no client certificate",
                Some(None),
                as_client.clone(),
                vec!["TLS handshake failed", "no certificates"],
            ),
            (
                "an expired certificate",
                Some(Some("expired-client")),
                as_client.clone(),
                vec!["TLS handshake failed", "expired"],
            ),
            (
                "a client certificate from another CA",
                Some(Some("stranger-client")),
                as_client.clone(),
                vec!["TLS handshake failed", "UnknownIssuer"],
            ),
            (
                "a peer certificate from another CA",
                Some(Some("stranger-node-2")),
                as_peer(2),
                vec!["TLS handshake failed", "UnknownIssuer"],
            ),
            (
                "node 3's certificate claiming to be node 2",
                Some(Some("node-3")),
                as_peer(2),
                vec![
                    "claims to be node 2 of cluster \"tls-test\"",
                    "names node-3.tls-test",
                    "needs node-2.tls-test",
                ],
            ),
            (
                "another cluster's node 2 claiming to be our node 2",
                Some(Some("other-cluster-node-2")),
                as_peer(2),
                vec!["claims to be node 2", "names node-2.other-cluster"],
            ),
            (
                "a node certificate used by a client",
                Some(Some("node-2")),
                as_client.clone(),
                vec!["naming node-2.tls-test", "clients need client.tls-test"],
            ),
            (
                "a plaintext client",
                None,
                as_client.clone(),
                vec!["TLS handshake failed"],
            ),
        ];
        let mut refused = nodes[0].listener_counters.refused.load(Ordering::Relaxed);
        for (i, (what, certificate, hello, expected)) in cases.into_iter().enumerate() {
            let tls = certificate.map(|stem| material.raw_client(stem));
            let (remote, answer) = attempt(&addr, tls, &hello).await;
            assert!(
                !matches!(answer, Ok(Welcome::Accepted { .. })),
                "{what}: accepted ({answer:?})"
            );
            refused += 1;
            let line = refusal_logged(&nodes[0], refused, &remote).await;
            eprintln!("{what}: {line}");
            assert!(line.contains("refused connection"), "{what}: {line}");
            for needle in expected {
                assert!(line.contains(needle), "{what}: {needle:?} not in {line}");
            }
            // The server keeps serving: a good client reads and writes.
            let key = format!("after-{i}");
            client
                .put(key.clone(), "ok")
                .await
                .unwrap_or_else(|e| panic!("{what}: a good write afterwards failed: {e}"));
            assert_eq!(
                client.get(key).await.unwrap(),
                Some(Bytes::from_static(b"ok")),
                "{what}"
            );
        }
        // The peers never lost each other: no peer connection was refused
        // on nodes 2 and 3, and the good client's connections were not
        // counted as refusals on node 1 beyond the cases.
        assert_eq!(
            nodes[0].listener_counters.refused.load(Ordering::Relaxed),
            refused
        );
        for node in &nodes[1..] {
            assert_eq!(node.listener_counters.refused.load(Ordering::Relaxed), 0);
        }
        // A good client that leaves without TLS close_notify (dropping the
        // stream, as most clients do at exit) is a close, not bad input:
        // neither counted nor logged as such.
        let bad_before = nodes[0].listener_counters.bad_input.load(Ordering::Relaxed);
        let mut remotes = Vec::new();
        for _ in 0..3 {
            let (remote, answer) =
                attempt(&addr, Some(material.raw_client(Some("client"))), &as_client).await;
            assert!(
                matches!(answer, Ok(Welcome::Accepted { .. })),
                "a good client: {answer:?}"
            );
            remotes.push(remote);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        client
            .put("after-good-closes", "ok")
            .await
            .expect("a write after the closes");
        assert_eq!(
            nodes[0].listener_counters.bad_input.load(Ordering::Relaxed),
            bad_before,
            "a TLS close without close_notify was counted as bad input"
        );
        for remote in remotes {
            let lines = log_lines_with(&remote);
            assert!(
                lines.iter().all(|l| !l.contains("bad input")),
                "a TLS close without close_notify was logged as bad input: {lines:?}"
            );
        }
        for node in nodes {
            node.shutdown().await.unwrap();
        }
    });
}

#[test]
fn a_client_refuses_a_server_whose_certificate_another_ca_signed() {
    capture_logs();
    let material = Material::new("tls-fake-server");
    let runtime = scratch_runtime();
    runtime.block_on(async {
        // A server with a certificate of another CA (its own CA file
        // trusts that CA, so it starts).
        let stranger = Material::new("tls-fake-server-ca");
        let ports = free_ports(1);
        let addr = format!("127.0.0.1:{}", ports[0]);
        let peers = BTreeMap::from([(1, addr.clone())]);
        let mut settings = NodeSettings::new(1, addr.clone(), peers.clone(), CLUSTER);
        settings.tls = Some(stranger.load("node-1", TlsRole::Node(1)));
        let node = start_kv_node(settings).await.unwrap();
        let mut config = ClientConfig::new(vec![addr], CLUSTER);
        config.tls = Some(material.load("client", TlsRole::Client));
        config.attempts_max = 2;
        let error = KvClient::new(config).put("k", "v").await.unwrap_err();
        // (The other CA has the same name as ours, so webpki finds it by
        // name and the signature does not verify.)
        assert!(
            error
                .to_string()
                .contains("the server's certificate is not trusted here"),
            "the client trusted another CA's server: {error}"
        );
        node.shutdown().await.unwrap();
    });
}

#[test]
fn unusable_tls_material_is_refused_at_load_naming_the_file() {
    let material = Material::new("tls-load");
    // Refused, with a message holding every one of `needles`.
    let refused = |paths: &TlsPaths, role, needles: &[&str]| {
        let error = TlsConfig::load(paths, CLUSTER, role)
            .unwrap_err()
            .to_string();
        assert!(needles.iter().all(|n| error.contains(n)), "{error}");
    };
    let node_1 = TlsRole::Node(1);

    // A missing file.
    let mut paths = material.paths("node-1");
    paths.ca = material.dir.0.join("absent.pem");
    refused(
        &paths,
        node_1,
        &["cannot read the TLS CA file", "absent.pem"],
    );

    // A key file given as the certificate.
    let mut paths = material.paths("node-1");
    paths.cert = material.dir.0.join("node-1.key");
    refused(&paths, node_1, &["node-1.key", "holds no PEM certificate"]);

    // Another node's key.
    let mut paths = material.paths("node-1");
    paths.key = material.dir.0.join("node-2.key");
    refused(&paths, node_1, &["private key file", "node-2.key"]);

    // A certificate for another node, and a node's for a client.
    let other = material.paths("node-2");
    refused(&other, node_1, &["node-2.pem", "needs node-1.tls-test"]);
    refused(&other, TlsRole::Client, &["needs client.tls-test"]);

    // A cluster id that cannot be part of a DNS name.
    let error = TlsConfig::load(&material.paths("node-1"), "not a name", TlsRole::Node(1))
        .unwrap_err()
        .to_string();
    assert!(error.contains("must be a DNS name"), "{error}");
}

fn scratch_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("build a tokio runtime")
}
