//! The `/metrics` endpoint (feature `metrics`): installs the Prometheus
//! recorder of `metrics-exporter-prometheus` and answers `GET /metrics`
//! with what it renders.
//!
//! The exporter crate's own HTTP listener would bring hyper; a scrape is
//! one request line and one response, so a plain socket does: the request
//! head is read up to [`REQUEST_BYTES_MAX`] within [`REQUEST_TIMEOUT`],
//! at most [`CONNECTIONS_MAX`] scrapes are served at once, and every
//! answer closes the connection. The text itself is the crate's.
//!
//! ```no_run
//! # async fn example(node: concord_tokio::cluster::RunningNode) {
//! use concord_tokio::metrics::endpoint::MetricsEndpoint;
//! let endpoint = MetricsEndpoint::bind_one_group("127.0.0.1:9100").await.unwrap();
//! let task = endpoint.serve_one_group(node.server.events(), node.server.shutdown_signal());
//! # }
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};

use super::multi::{record_multi_status, MULTI_CATALOGUE};
use super::{buckets_for, record_group_state, Kind, Metric, CATALOGUE, ONE_GROUP_STATE};
use crate::multi::groups_status::{StatusAnswer, StatusQuery};
use crate::multi::host::{HostEvent, MultiStatus};
use crate::multi::wire::GroupOp;
use crate::wire::ClientResponse;

/// Longest request head read (a scrape's is ~200 bytes).
pub const REQUEST_BYTES_MAX: usize = 8 * 1024;
/// Time a client has to send its request head.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Scrapes served at once; more connections are closed unanswered.
pub const CONNECTIONS_MAX: usize = 16;
/// Time the server loop has to answer the status a scrape reads; past it
/// the scrape shows the last values recorded.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(2);
/// How often histogram samples are folded into their buckets when nobody
/// scrapes, so that memory stays bounded between scrapes.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Why the endpoint could not start.
#[derive(Debug, Error)]
pub enum MetricsError {
    /// The listen address was refused (in use, not local, not an address).
    #[error("cannot listen for metrics on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// A metrics recorder is already installed in this process.
    #[error("cannot install the metrics recorder: {0}")]
    Recorder(String),
}

/// A bound `/metrics` listener with the process's recorder installed.
#[derive(Debug)]
pub struct MetricsEndpoint {
    listener: TcpListener,
    handle: PrometheusHandle,
}

impl MetricsEndpoint {
    /// Binds `addr` (`host:port`) and installs the Prometheus recorder as
    /// the process's global one, for a server hosting many groups: every
    /// metric of [`MULTI_CATALOGUE`] described and its unlabeled series
    /// registered at zero. Serve it with
    /// [`serve_multi`](Self::serve_multi).
    pub async fn bind_multi(addr: &str) -> Result<MetricsEndpoint, MetricsError> {
        Self::bind_catalogue(addr, MULTI_CATALOGUE.iter().collect()).await
    }

    /// [`bind_multi`](Self::bind_multi) for a server of one group
    /// (`concord-node` without `--groups`): the metrics of
    /// [`MULTI_CATALOGUE`] and its group's Raft state under the names a
    /// single-group server used ([`ONE_GROUP_STATE`]), so dashboards and
    /// alerts on them keep working. Serve it with
    /// [`serve_one_group`](Self::serve_one_group).
    pub async fn bind_one_group(addr: &str) -> Result<MetricsEndpoint, MetricsError> {
        let mut catalogue: Vec<&'static Metric> = MULTI_CATALOGUE.iter().collect();
        catalogue.extend(
            CATALOGUE
                .iter()
                .filter(|m| ONE_GROUP_STATE.contains(&m.name)),
        );
        Self::bind_catalogue(addr, catalogue).await
    }

    /// Binds `addr` with the metrics of `catalogue`.
    async fn bind_catalogue(
        addr: &str,
        catalogue: Vec<&'static Metric>,
    ) -> Result<MetricsEndpoint, MetricsError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| MetricsError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        let mut builder = PrometheusBuilder::new();
        for metric in catalogue.iter().filter(|m| m.kind == Kind::Histogram) {
            builder = builder
                .set_buckets_for_metric(
                    Matcher::Full(metric.name.to_string()),
                    buckets_for(metric.name),
                )
                .map_err(|e| MetricsError::Recorder(e.to_string()))?;
        }
        let handle = builder
            .install_recorder()
            .map_err(|e| MetricsError::Recorder(e.to_string()))?;
        for metric in catalogue.iter().copied() {
            let name = metric.name;
            let help = metric.help;
            match metric.kind {
                Kind::Counter => metrics::describe_counter!(name, help),
                Kind::Gauge => metrics::describe_gauge!(name, help),
                Kind::Histogram => metrics::describe_histogram!(name, help),
            }
            if metric.label.is_some() {
                continue;
            }
            match metric.kind {
                Kind::Counter => metrics::counter!(name).increment(0),
                Kind::Gauge => metrics::gauge!(name).increment(0.0),
                Kind::Histogram => drop(metrics::histogram!(name)),
            }
        }
        Ok(MetricsEndpoint { listener, handle })
    }

    /// The address it listens on (the port, when bound to port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves scrapes of a multi-group server (bound with
    /// [`bind_multi`](Self::bind_multi)) until `shutdown` turns true; each
    /// reads the status of the server behind `events` first (without the
    /// per-group list: a scrape costs one pass over the groups, and no
    /// series is per group).
    pub fn serve_multi(
        self,
        events: mpsc::Sender<HostEvent>,
        shutdown: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        self.serve_status(events, multi_status, record_multi_status, shutdown)
    }

    /// Serves scrapes of a one-group server (bound with
    /// [`bind_one_group`](Self::bind_one_group)) until `shutdown` turns
    /// true: the host's series as [`serve_multi`](Self::serve_multi)
    /// records them, and its group's state ([`record_group_state`]).
    pub fn serve_one_group(
        self,
        events: mpsc::Sender<HostEvent>,
        shutdown: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        self.serve_status(events, one_group_status, record_one_group_status, shutdown)
    }

    /// Serves scrapes until `shutdown` turns true; each asks the server
    /// behind `events` for its status with `fetch` (waiting at most
    /// [`STATUS_TIMEOUT`]) and records it with `record` first.
    fn serve_status<E, S, R>(
        self,
        events: mpsc::Sender<E>,
        fetch: fn(mpsc::Sender<E>) -> R,
        record: fn(&S),
        shutdown: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()>
    where
        E: Send + 'static,
        S: 'static,
        R: Future<Output = Option<S>> + Send + 'static,
    {
        self.serve_with(
            move || {
                let fetched = fetch(events.clone());
                async move {
                    if let Ok(Some(status)) = tokio::time::timeout(STATUS_TIMEOUT, fetched).await {
                        record(&status);
                    }
                }
            },
            shutdown,
        )
    }

    /// Serves scrapes until `shutdown` turns true; each awaits `refresh`
    /// (which records what is read at scrape time) before rendering.
    fn serve_with<F, R>(
        self,
        refresh: F,
        mut shutdown: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()>
    where
        F: Fn() -> R + Send + Sync + 'static,
        R: Future<Output = ()> + Send + 'static,
    {
        let MetricsEndpoint { listener, handle } = self;
        let refresh = Arc::new(refresh);
        let slots = Arc::new(Semaphore::new(CONNECTIONS_MAX));
        tokio::spawn(async move {
            let mut upkeep = tokio::time::interval(UPKEEP_INTERVAL);
            loop {
                tokio::select! {
                    _ = shutdown.changed() => {
                        if *shutdown.borrow() {
                            return;
                        }
                    }
                    _ = upkeep.tick() => handle.run_upkeep(),
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else {
                            // Out of descriptors and the like: pause
                            // rather than spin.
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        };
                        let Ok(slot) = slots.clone().try_acquire_owned() else {
                            continue;
                        };
                        let handle = handle.clone();
                        let refresh = refresh.clone();
                        tokio::spawn(async move {
                            let _ = answer(stream, &handle, &*refresh).await;
                            drop(slot);
                        });
                    }
                }
            }
        })
    }
}

/// Reads one request head and answers it.
async fn answer<F, R>(
    mut stream: TcpStream,
    handle: &PrometheusHandle,
    refresh: &F,
) -> std::io::Result<()>
where
    F: Fn() -> R,
    R: Future<Output = ()>,
{
    let head = match tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(Some(head))) => head,
        Ok(Err(e)) => return Err(e),
        Ok(Ok(None)) | Err(_) => {
            return respond(&mut stream, "400 Bad Request", "bad or slow request\n").await;
        }
    };
    let mut words = head.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    if method != "GET" {
        return respond(&mut stream, "405 Method Not Allowed", "GET /metrics\n").await;
    }
    if path != "/metrics" {
        return respond(&mut stream, "404 Not Found", "GET /metrics\n").await;
    }
    refresh().await;
    let body = handle.render();
    respond(&mut stream, "200 OK", &body).await
}

/// A multi-group server's status, or `None` once it stopped.
async fn multi_status(events: mpsc::Sender<HostEvent>) -> Option<MultiStatus> {
    let (reply, rx) = oneshot::channel();
    events
        .send(HostEvent::Status {
            groups: false,
            reply,
        })
        .await
        .ok()?;
    rx.await.ok()
}

/// A one-group server's status: the host's, and its group's as a
/// single-group server's; `None` once it stopped.
async fn one_group_status(
    events: mpsc::Sender<HostEvent>,
) -> Option<(MultiStatus, Option<crate::status::NodeStatus>)> {
    let multi = multi_status(events.clone()).await?;
    let (reply, rx) = oneshot::channel();
    let group = crate::multi::one_group_client::GROUP;
    let request = HostEvent::Request {
        group,
        op: GroupOp::Status(StatusQuery::Node(group)),
        reply,
    };
    events.send(request).await.ok()?;
    let node = match rx.await {
        Ok(ClientResponse::Done(bytes)) => match concord::codec::decode(&bytes, bytes.len()) {
            Ok(StatusAnswer::Node(node)) => Some(*node),
            _ => None,
        },
        _ => None,
    };
    Some((multi, node))
}

/// Records [`one_group_status`]'s answer.
fn record_one_group_status(status: &(MultiStatus, Option<crate::status::NodeStatus>)) {
    record_multi_status(&status.0);
    if let Some(node) = &status.1 {
        record_group_state(node);
    }
}

/// The request line, once the whole head arrived; `None` if it is longer
/// than [`REQUEST_BYTES_MAX`], ends early or is not text.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        head.extend_from_slice(&chunk[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
        if head.len() > REQUEST_BYTES_MAX {
            return Ok(None);
        }
    }
    let Ok(text) = std::str::from_utf8(&head) else {
        return Ok(None);
    };
    Ok(text.lines().next().map(str::to_string))
}

async fn respond(stream: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}
