//! Background work: the outbox (registrations and acknowledgements, retried from the store),
//! the change poller, the timeout timers, and the reconciliation after a start.
pub mod outbox;
pub mod poller;
pub mod reconcile;
pub mod timers;

use std::time::Duration;

/// Time until an epoch-ms instant, capped, and at least a millisecond.
pub(crate) fn until(epoch_ms: Option<i64>, cap: Duration) -> Duration {
    match epoch_ms {
        Some(ms) => {
            let now = chrono::Utc::now().timestamp_millis();
            Duration::from_millis((ms - now).max(1) as u64).min(cap)
        }
        None => cap,
    }
}
