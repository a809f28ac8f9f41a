//! What an operator watches a server through: its logs (`--log-format`,
//! `RUST_LOG`) and its Prometheus metrics (`--metrics-listen`).
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

/// Installs the process's log subscriber: `format` on stderr, filtered by
/// `RUST_LOG`. A malformed `RUST_LOG` is reported on stderr as a warning
/// from `program` and the default filter is used.
pub fn init_logging(program: &str, format: LogFormat) {
    let (filter, warning) = log_filter(std::env::var_os("RUST_LOG").as_deref());
    if let Some(warning) = &warning {
        eprintln!("{program}: warning: {warning}");
    }
    // Checked by `log_filter` (or the default, which parses).
    let filter = tracing_subscriber::EnvFilter::builder()
        .parse(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(LOG_FILTER_DEFAULT));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        // Colour codes are for a person at a terminal, not a log file.
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        // Every event with the fields of the spans it is in, so that one
        // request can be followed by its `client`/`seq` or `index` fields.
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .init(),
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
    fn log_format_names_are_the_flag_values() {
        assert_eq!(LogFormat::from_name("text"), Ok(LogFormat::Text));
        assert_eq!(LogFormat::from_name("json"), Ok(LogFormat::Json));
        let refusal = LogFormat::from_name("xml").unwrap_err();
        assert!(refusal.contains("text or json"), "{refusal}");
    }
}
