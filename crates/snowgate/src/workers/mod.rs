//! Background work: the outbox (registrations and acknowledgements, retried from the store),
//! the change poller, the timeout timers, and the reconciliation after a start.
pub mod outbox;
pub mod poller;
pub mod reconcile;
pub mod timers;

use std::time::Duration;

/// The longest a worker sleeps before it looks at the store again. Work armed by another
/// replica (a deadline, a poll time) is announced by notification too; this bounds the delay
/// when such a notification is missed.
pub(crate) const RECHECK: Duration = Duration::from_secs(5);

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
