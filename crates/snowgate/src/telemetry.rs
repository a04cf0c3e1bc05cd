//! One tracing setup for every subcommand: text or JSON lines on stderr.
//!
//! Lines are written by a background thread (`tracing-appender`'s non-blocking writer, which
//! blocks rather than drops when it falls behind), so a request never waits for the terminal
//! or the log file: at info level the access log and decision lines used to add about 0.15 ms
//! to every decision. The audit trail is the store's event log, not these lines.
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::{fmt, EnvFilter};

use crate::configuration::LogFormat;

/// Keeps the log writer running; dropping it flushes what is still queued.
#[must_use = "logs are flushed when the guard is dropped; hold it until the process ends"]
pub struct LogGuard {
    _writer: Option<WorkerGuard>,
}

/// Install the global subscriber. `RUST_LOG` overrides `level` when set.
pub fn init(format: LogFormat, level: &str) -> LogGuard {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        // The queue is allocated up front: 16,384 lines (512 KB) instead of the default
        // 128,000 (4 MB); a burst's lines are written out far faster than they fill it.
        .buffered_lines_limit(16_384)
        .thread_name("snowgate-log")
        .finish(std::io::stderr());
    let builder = fmt().with_env_filter(filter).with_writer(writer);
    // A second init (tests calling it twice) is harmless: keep the first subscriber.
    let installed = match format {
        LogFormat::Text => builder.with_target(false).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    LogGuard {
        _writer: installed.ok().map(|_| guard),
    }
}
/// A short fingerprint of a secret, for log lines that must tell tokens apart: the first 8 hex
/// characters of its SHA-256 (`sha256:1a2b3c4d`). Never the secret's own characters, which would
/// read the same for every token of one kind and shorten a guess.
pub fn redact(secret: &str) -> String {
    use sha2::{Digest as _, Sha256};
    let digest = Sha256::digest(secret.as_bytes());
    format!("sha256:{}", &hex::encode(digest)[..8])
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_fingerprint_holds_none_of_the_secret() {
        let f = super::redact("pipeline-token-0123456789abcdef");
        assert!(f.starts_with("sha256:") && f.len() == 15, "{f}");
        assert!(!f.contains("pipe"));
        assert_ne!(f, super::redact("pipeline-token-0123456789abcdeg"));
    }
}
