//! What an operator watches a server through: its logs (`--log-format`,
//! `RUST_LOG`), its Prometheus metrics (`--metrics-listen`) and, in a
//! build with the `otel` feature, its request spans exported to an
//! OpenTelemetry collector (`--otlp-endpoint`).
//!
//! Kept apart from [`crate::server`]'s settings: neither changes what the
//! server does, only what it shows, and both are read before it starts.

use clap::{Args, ValueEnum};

/// The filter used when `RUST_LOG` is unset or unusable.
pub const LOG_FILTER_DEFAULT: &str = "info";

/// How log lines are written to stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line (fields, span chain, target, level), for
    /// a log pipeline.
    Json,
}

impl LogFormat {
    /// The format a `log-format` config key names (`text` or `json`), or
    /// why the name is refused.
    pub fn from_name(name: &str) -> Result<LogFormat, String> {
        <LogFormat as ValueEnum>::from_str(name, false)
            .map_err(|_| format!("{name:?} is not a log format; expected text or json"))
    }
}

/// The observability flags of `concord-node`, each optional here: a
/// missing one may come from the config file (`metrics-listen`,
/// `log-format`) or a default.
#[derive(Clone, Debug, Default, Args)]
pub struct ObservabilityFlags {
    /// Serve Prometheus metrics on `GET http://ADDR/metrics` (e.g.
    /// 127.0.0.1:9101; off by default). An address that cannot be bound
    /// stops the server at start with exit status 2.
    #[arg(long, env = "CONCORD_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// Log line format on stderr [default: text].
    #[arg(long, env = "CONCORD_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Export the request spans (propose, apply, read) to an OpenTelemetry
    /// collector over OTLP/HTTP with protobuf, e.g.
    /// http://127.0.0.1:4318/v1/traces (off by default; needs a build
    /// with the `otel` feature; plain http only).
    #[arg(long, env = "CONCORD_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,
}

/// The log filter from `RUST_LOG`, or the default and a warning saying
/// why `RUST_LOG` was not used: a typo in a filter must not keep a server
/// from starting, nor be ignored in silence.
pub fn log_filter(rust_log: Option<&std::ffi::OsStr>) -> (String, Option<String>) {
    let Some(value) = rust_log else {
        return (LOG_FILTER_DEFAULT.to_string(), None);
    };
    let Some(text) = value.to_str() else {
        return (
            LOG_FILTER_DEFAULT.to_string(),
            Some(format!(
                "ignoring RUST_LOG: it is not UTF-8; logging at {LOG_FILTER_DEFAULT}"
            )),
        );
    };
    match tracing_subscriber::EnvFilter::builder().parse(text) {
        Ok(_) => (text.to_string(), None),
        Err(e) => (
            LOG_FILTER_DEFAULT.to_string(),
            Some(format!(
                "ignoring RUST_LOG={text:?}: {e}; logging at {LOG_FILTER_DEFAULT} \
                 (a filter is e.g. RUST_LOG=concord=debug or RUST_LOG=warn)"
            )),
        ),
    }
}

/// Spans exported over OTLP (`--otlp-endpoint`): the short request
/// spans of the server (`concord_tokio::request_trace`). The long-lived
/// `node` span is left out: a span is exported when it ends, and every
/// event inside a span is kept with it until then.
pub const EXPORTED_SPANS: &[&str] = &["propose", "commit", "apply", "read"];

/// Why tracing could not be set up as asked (exit status 2: a bad flag).
#[derive(Debug, thiserror::Error)]
pub enum TracingError {
    /// `--otlp-endpoint` in a build without the `otel` feature.
    #[error(
        "--otlp-endpoint {0}: this concord-node was built without OpenTelemetry; rebuild it \
         with `cargo build -p concord-node --features otel`, or leave the flag out"
    )]
    NotBuilt(String),
    /// An endpoint that is not a plain `http://` URL.
    #[error(
        "--otlp-endpoint {0}: expected an http:// URL such as \
         http://127.0.0.1:4318/v1/traces (this build exports over plain HTTP only: run a \
         collector on a trusted network that forwards over TLS)"
    )]
    Endpoint(String),
    /// The exporter could not be built.
    #[error("--otlp-endpoint {endpoint}: cannot start the OTLP exporter: {reason}")]
    Exporter {
        /// The endpoint asked for.
        endpoint: String,
        /// What the exporter reported.
        reason: String,
    },
}

/// What [`init`] started: the OTLP exporter, if any. [`Tracing::shutdown`]
/// (or dropping it) sends the spans still queued; call it outside any
/// async runtime (the exporter blocks).
#[derive(Debug, Default)]
pub struct Tracing {
    #[cfg(feature = "otel")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Tracing {
    /// Sends what is queued and stops the exporter. Idempotent.
    pub fn shutdown(&mut self) {
        #[cfg(feature = "otel")]
        if let Some(provider) = self.provider.take() {
            if let Err(e) = provider.shutdown() {
                eprintln!("concord-node: warning: OTLP exporter: {e}");
            }
        }
    }
}

impl Drop for Tracing {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Checks an OTLP endpoint: a plain `http://` URL with a host.
pub fn check_otlp_endpoint(endpoint: &str) -> Result<(), TracingError> {
    let host = endpoint
        .strip_prefix("http://")
        .map(|rest| rest.split('/').next().unwrap_or(""));
    match host {
        Some(host) if !host.is_empty() && !host.contains(char::is_whitespace) => Ok(()),
        _ => Err(TracingError::Endpoint(endpoint.to_string())),
    }
}

/// Installs the process's log subscriber: `format` on stderr, filtered by
/// `RUST_LOG`. A malformed `RUST_LOG` is reported on stderr as a warning
/// from `program` and the default filter is used.
pub fn init_logging(program: &str, format: LogFormat) {
    // Without an endpoint nothing can fail.
    let _ = init(program, format, None);
}

/// [`init_logging`], and with `otlp_endpoint` the request spans
/// ([`EXPORTED_SPANS`], at `debug` whatever `RUST_LOG` says) exported to
/// it over OTLP/HTTP with protobuf (feature `otel`). Checks everything
/// before installing anything.
pub fn init(
    program: &str,
    format: LogFormat,
    otlp_endpoint: Option<&str>,
) -> Result<Tracing, TracingError> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;

    let (export, tracing) = otlp_layer(program, otlp_endpoint)?;
    let (filter, warning) = log_filter(std::env::var_os("RUST_LOG").as_deref());
    if let Some(warning) = &warning {
        eprintln!("{program}: warning: {warning}");
    }
    // Checked by `log_filter` (or the default, which parses).
    let filter = tracing_subscriber::EnvFilter::builder()
        .parse(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(LOG_FILTER_DEFAULT));
    let lines = match format {
        // Colour codes are for a person at a terminal, not a log file.
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed(),
        // Every event with the fields of the spans it is in, so that one
        // request can be followed by its `client`/`seq` or `index` fields.
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .boxed(),
    };
    let mut layers: Vec<BoxedLayer> = vec![lines.with_filter(filter).boxed()];
    layers.extend(export);
    tracing_subscriber::registry().with(layers).init();
    Ok(tracing)
}

/// A boxed layer of the process's subscriber.
type BoxedLayer =
    Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync + 'static>;

/// The layer exporting the request spans to `endpoint`, if one is given.
#[cfg(feature = "otel")]
fn otlp_layer(
    program: &str,
    endpoint: Option<&str>,
) -> Result<(Option<BoxedLayer>, Tracing), TracingError> {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::{Protocol, WithExportConfig};
    use tracing_subscriber::Layer;

    let Some(endpoint) = endpoint else {
        return Ok((None, Tracing::default()));
    };
    check_otlp_endpoint(endpoint)?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| TracingError::Exporter {
            endpoint: endpoint.to_string(),
            reason: e.to_string(),
        })?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(program.to_string())
        .build();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    let tracer = provider.tracer(program.to_string());
    let only_requests = tracing_subscriber::filter::filter_fn(|meta| {
        let ours = meta.target().starts_with("concord");
        if meta.is_span() {
            ours && EXPORTED_SPANS.contains(&meta.name())
        } else {
            // Events become events of the exported span they are in;
            // one outside such a span is dropped by the layer.
            ours && *meta.level() <= tracing::Level::DEBUG
        }
    });
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_threads(false)
        .with_filter(only_requests)
        .boxed();
    Ok((
        Some(layer),
        Tracing {
            provider: Some(provider),
        },
    ))
}

/// Without the `otel` feature: no layer; an endpoint is refused.
#[cfg(not(feature = "otel"))]
fn otlp_layer(
    _program: &str,
    endpoint: Option<&str>,
) -> Result<(Option<BoxedLayer>, Tracing), TracingError> {
    match endpoint {
        Some(endpoint) => Err(TracingError::NotBuilt(endpoint.to_string())),
        None => Ok((None, Tracing::default())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn a_usable_filter_is_kept_and_a_bad_one_warned_about() {
        assert_eq!(log_filter(None), ("info".to_string(), None));
        assert_eq!(
            log_filter(Some(OsStr::new("concord=debug,warn"))),
            ("concord=debug,warn".to_string(), None)
        );
        let (filter, warning) = log_filter(Some(OsStr::new("concord=loudest")));
        assert_eq!(filter, "info");
        let warning = warning.expect("a malformed filter is warned about");
        assert!(warning.contains("concord=loudest"), "{warning}");
    }

    #[test]
    fn an_otlp_endpoint_is_a_plain_http_url() {
        assert!(check_otlp_endpoint("http://127.0.0.1:4318/v1/traces").is_ok());
        assert!(check_otlp_endpoint("http://collector:4318").is_ok());
        for bad in [
            "https://collector:4318",
            "127.0.0.1:4318",
            "http://",
            "http:// x",
        ] {
            let refusal = check_otlp_endpoint(bad).unwrap_err().to_string();
            assert!(refusal.contains(bad), "{refusal}");
            assert!(refusal.contains("http://"), "{refusal}");
        }
    }

    #[test]
    fn log_format_names_are_the_flag_values() {
        assert_eq!(LogFormat::from_name("text"), Ok(LogFormat::Text));
        assert_eq!(LogFormat::from_name("json"), Ok(LogFormat::Json));
        let refusal = LogFormat::from_name("xml").unwrap_err();
        assert!(refusal.contains("text or json"), "{refusal}");
    }
}
