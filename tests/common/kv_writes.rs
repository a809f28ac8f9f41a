//! Writing to a key-value cluster until it answers. Shared with the
//! madsim suite (`madsim-tests/tests/madsim_stalled_links.rs`), where
//! `tokio` is madsim's and time is simulated; so only `tokio::time`.

use std::time::Duration;

use concord_services::KvClient;
use tokio::time::Instant;

/// Writes until one write succeeds or `within` passes; the time it took.
pub async fn first_write(client: &mut KvClient, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut attempt = 0u64;
    while start.elapsed() < within {
        attempt += 1;
        if client.put("k", format!("v{attempt}")).await.is_ok() {
            return Some(start.elapsed());
        }
    }
    None
}
