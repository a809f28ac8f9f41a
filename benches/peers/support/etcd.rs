//! Shared by the process benchmarks that run etcd beside concord (`reads`,
//! `vs_etcd`): etcd's v3 gRPC messages declared by hand, a client on etcd's
//! own fastest path, starting three `etcd` members on loopback, and the CPU
//! time of a set of processes. Included by `#[path]`, so each bench uses
//! only part of it.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use super::node_cluster::{free_loopback_addrs, temp_base, Processes};

/// Sum of user + sys CPU time of `pids`, in microseconds.
pub fn cpu_us(pids: &[u32]) -> u64 {
    // SAFETY: sysconf reads a constant of the system; no memory involved.
    let ticks_per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    pids.iter()
        .map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // Fields after the command name (which may hold spaces): state
            // is field 3, utime 14, stime 15.
            let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let field =
                |n: usize| -> u64 { fields.get(n - 3).and_then(|f| f.parse().ok()).unwrap_or(0) };
            (field(14) + field(15)) * 1_000_000 / ticks_per_sec
        })
        .sum()
}

/// etcd's v3 API messages, the fields this benchmark uses, declared with
/// their numbers from etcd's `rpc.proto` / `kv.proto` (prost needs no
/// `protoc` this way). Unknown fields in answers are skipped by prost.
pub mod etcdpb {
    /// `etcdserverpb.ResponseHeader`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResponseHeader {
        #[prost(uint64, tag = "1")]
        pub cluster_id: u64,
        #[prost(uint64, tag = "2")]
        pub member_id: u64,
        #[prost(int64, tag = "3")]
        pub revision: i64,
        #[prost(uint64, tag = "4")]
        pub raft_term: u64,
    }

    /// `mvccpb.KeyValue`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct KeyValue {
        #[prost(bytes = "vec", tag = "1")]
        pub key: Vec<u8>,
        #[prost(int64, tag = "2")]
        pub create_revision: i64,
        #[prost(int64, tag = "3")]
        pub mod_revision: i64,
        #[prost(int64, tag = "4")]
        pub version: i64,
        #[prost(bytes = "vec", tag = "5")]
        pub value: Vec<u8>,
        #[prost(int64, tag = "6")]
        pub lease: i64,
    }

    /// `etcdserverpb.RangeRequest` (a single key; `serializable` false is
    /// a linearizable read).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RangeRequest {
        #[prost(bytes = "vec", tag = "1")]
        pub key: Vec<u8>,
        #[prost(bool, tag = "7")]
        pub serializable: bool,
    }

    /// `etcdserverpb.RangeResponse`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RangeResponse {
        #[prost(message, optional, tag = "1")]
        pub header: Option<ResponseHeader>,
        #[prost(message, repeated, tag = "2")]
        pub kvs: Vec<KeyValue>,
        #[prost(bool, tag = "3")]
        pub more: bool,
        #[prost(int64, tag = "4")]
        pub count: i64,
    }

    /// `etcdserverpb.PutRequest`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PutRequest {
        #[prost(bytes = "vec", tag = "1")]
        pub key: Vec<u8>,
        #[prost(bytes = "vec", tag = "2")]
        pub value: Vec<u8>,
    }

    /// `etcdserverpb.StatusRequest` (no fields).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct StatusRequest {}

    /// `etcdserverpb.StatusResponse`, the fields used: who answered and
    /// whom it follows.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct StatusResponse {
        #[prost(message, optional, tag = "1")]
        pub header: Option<ResponseHeader>,
        #[prost(uint64, tag = "4")]
        pub leader: u64,
    }

    /// `etcdserverpb.PutResponse`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PutResponse {
        #[prost(message, optional, tag = "1")]
        pub header: Option<ResponseHeader>,
    }
}

/// One etcd client on etcd's own fastest path: gRPC over one HTTP/2
/// connection (`KV/Range`, `KV/Put`), as `etcdctl` and the official Go
/// client speak it, one request in flight. Clones share the channel (one
/// HTTP/2 connection, each call a stream of its own).
#[derive(Clone)]
pub struct Etcd {
    grpc: tonic::client::Grpc<tonic::transport::Channel>,
}

impl Etcd {
    pub async fn connect(addr: &str) -> Result<Etcd, String> {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| e.to_string())?
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        Ok(Etcd {
            grpc: tonic::client::Grpc::new(channel),
        })
    }

    async fn unary<Req, Resp>(&mut self, path: &'static str, request: Req) -> Result<Resp, String>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        self.grpc.ready().await.map_err(|e| e.to_string())?;
        let codec = tonic::codec::ProstCodec::<Req, Resp>::default();
        self.grpc
            .unary(
                tonic::Request::new(request),
                tonic::codegen::http::uri::PathAndQuery::from_static(path),
                codec,
            )
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| format!("{:?}: {}", status.code(), status.message()))
    }

    /// Puts `value` under `k`.
    pub async fn put(&mut self, k: &str, value: &[u8]) -> Result<(), String> {
        let request = etcdpb::PutRequest {
            key: k.as_bytes().to_vec(),
            value: value.to_vec(),
        };
        self.unary::<_, etcdpb::PutResponse>("/etcdserverpb.KV/Put", request)
            .await
            .map(|_| ())
    }

    /// Whether the member this client talks to is the leader
    /// (`Maintenance/Status`: its own member id against its leader's).
    pub async fn is_leader(&mut self) -> Result<bool, String> {
        let answer: etcdpb::StatusResponse = self
            .unary("/etcdserverpb.Maintenance/Status", etcdpb::StatusRequest {})
            .await?;
        let me = answer.header.map(|h| h.member_id).unwrap_or(0);
        Ok(me != 0 && me == answer.leader)
    }

    /// A linearizable get (`serializable` false); true if found.
    pub async fn get(&mut self, k: &str) -> Result<bool, String> {
        let request = etcdpb::RangeRequest {
            key: k.as_bytes().to_vec(),
            serializable: false,
        };
        self.unary::<_, etcdpb::RangeResponse>("/etcdserverpb.KV/Range", request)
            .await
            .map(|answer| answer.kvs.iter().any(|kv| kv.key == k.as_bytes()))
    }
}

/// The etcd binary to run, or why there is none.
pub fn etcd_binary() -> Result<String, String> {
    let candidate = std::env::var("CONCORD_BENCH_ETCD").unwrap_or_else(|_| "etcd".to_string());
    match std::process::Command::new(&candidate).arg("--version").output() {
        Ok(out) if out.status.success() => Ok(candidate),
        Ok(out) => Err(format!(
            "`{candidate} --version` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Err(format!(
            "`{candidate}` not runnable ({e}); run benches/peers/etcd/setup.sh (apt-get install -y etcd-server)"
        )),
    }
}

pub fn etcd_version(binary: &str) -> String {
    std::process::Command::new(binary)
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default()
}

/// Three etcd members on loopback; returns the processes and client
/// addresses. With `gomaxprocs`, each member's Go runtime runs Go code on
/// that many threads at most (`GOMAXPROCS`; etcd's default is one per
/// core).
pub fn start_etcd(binary: &str, gomaxprocs: Option<usize>) -> (Processes, Vec<String>) {
    let addrs = free_loopback_addrs(6);
    let (clients, peers) = addrs.split_at(3);
    let initial = peers
        .iter()
        .enumerate()
        .map(|(i, p)| format!("m{}=http://{p}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let base = temp_base("etcd");
    let mut children = Vec::new();
    for i in 0..3 {
        let name = format!("m{}", i + 1);
        let client_url = format!("http://{}", clients[i]);
        let peer_url = format!("http://{}", peers[i]);
        let mut command = std::process::Command::new(binary);
        if let Some(threads) = gomaxprocs {
            command.env("GOMAXPROCS", threads.to_string());
        }
        let child = command
            .args(["--name", &name])
            .arg("--data-dir")
            .arg(base.join(&name))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &initial])
            .args(["--initial-cluster-token", "concord-bench"])
            .args(["--initial-cluster-state", "new"])
            .args(["--logger", "zap", "--log-level", "error"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn etcd");
        children.push(child);
    }
    (Processes { children, base }, clients.to_vec())
}

/// Waits until the cluster has a leader and takes a put.
pub async fn etcd_wait_ready(addr: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    while Instant::now() < deadline {
        match Etcd::connect(addr).await {
            Ok(mut etcd) => match etcd.put("warmup", b"x").await {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            },
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!("etcd did not come up: {last}"))
}

/// Writes `keys` keys (named by `key`) of `value_bytes` bytes each, with
/// `PRELOAD_CLIENTS` clients spread over the members.
pub async fn etcd_preload(addrs: &[String], keys: u64, key: fn(u64) -> String, value_bytes: usize) {
    let tasks: Vec<_> = (0..PRELOAD_CLIENTS)
        .map(|t| {
            let addr = addrs[t as usize % addrs.len()].clone();
            tokio::spawn(async move {
                let mut etcd = Etcd::connect(&addr).await.expect("connect etcd");
                let value = vec![b'v'; value_bytes];
                for i in (t..keys).step_by(PRELOAD_CLIENTS as usize) {
                    etcd.put(&key(i), &value).await.expect("etcd preload put");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("preload task");
    }
}

/// The index in `addrs` of the member that leads, if one answers so.
pub async fn etcd_leader(addrs: &[String]) -> Option<usize> {
    for (i, addr) in addrs.iter().enumerate() {
        if let Ok(mut etcd) = Etcd::connect(addr).await {
            if etcd.is_leader().await == Ok(true) {
                return Some(i);
            }
        }
    }
    None
}

/// Preload clients per cluster.
const PRELOAD_CLIENTS: u64 = 32;
