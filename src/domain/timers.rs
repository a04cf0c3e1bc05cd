//! When a gate is polled and when its timeouts fall due (SPEC §4 "Timeouts"). Deadlines are
//! stored with the gate as epoch milliseconds, so they hold across restarts.
use std::time::Duration;

use rand::Rng;

use super::GateSpec;

/// Timer columns to write; `None` leaves a column as it is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timers {
    pub next_poll_ms: Option<i64>,
    pub creation_deadline_ms: Option<i64>,
    pub step_deadline_ms: Option<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deadline {
    /// `changeCreationTimeoutSecs`: no change request found in time.
    Creation,
    /// `changeStepTimeoutSecs`: no decision in time.
    Step,
}

pub fn ms(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

/// The gate's polling interval: its own `pollingIntervalSecs`, else the configured default.
pub fn poll_interval(spec: &GateSpec, default: Duration) -> Duration {
    spec.polling_interval_secs
        .map(Duration::from_secs)
        .unwrap_or(default)
}

/// Timers armed when a gate becomes pending. The first poll falls at a random point of the
/// first interval, so gates opened together are not polled together. The creation deadline
/// runs from now; the step deadline runs from now only when there is no creation timeout
/// (otherwise from the moment the change request is known, see [`on_change_known`]).
pub fn on_pending(spec: &GateSpec, now_ms: i64, default_poll: Duration) -> Timers {
    let interval = ms(poll_interval(spec, default_poll)).max(1);
    let first = rand::thread_rng().gen_range(interval / 2..=interval);
    let creation = spec
        .change_creation_timeout_secs
        .map(|s| now_ms + ms(Duration::from_secs(s)));
    let step = match (creation, spec.change_step_timeout_secs) {
        (None, Some(s)) => Some(now_ms + ms(Duration::from_secs(s))),
        _ => None,
    };
    Timers {
        next_poll_ms: Some(now_ms + first),
        creation_deadline_ms: creation,
        step_deadline_ms: step,
    }
}

/// Once a change request is known, the creation timeout is over and the step timeout starts
/// (unless it already runs).
pub fn on_change_known(spec: &GateSpec, now_ms: i64, step_running: bool) -> Option<i64> {
    match spec.change_step_timeout_secs {
        Some(s) if !step_running => Some(now_ms + ms(Duration::from_secs(s))),
        _ => None,
    }
}
