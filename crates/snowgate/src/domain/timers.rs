//! When a gate is polled and when its timeouts fall due (README "When callbacks do not
//! arrive"). Deadlines are stored with the gate as epoch milliseconds, so they hold across
//! restarts.
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

impl Timers {
    /// The earliest timeout still running (polls are not timeouts).
    pub fn earliest(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        [self.creation_deadline_ms, self.step_deadline_ms]
            .into_iter()
            .flatten()
            .min()
            .and_then(|ms| chrono::TimeZone::timestamp_millis_opt(&chrono::Utc, ms).single())
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::GateSpec;
    use serde_json::json;

    fn spec(extra: serde_json::Value) -> GateSpec {
        let mut b =
            json!({"jobUrl": "https://ci/job/app/", "buildNumber": 1, "stageName": "Deploy"});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        GateSpec::parse(&b).unwrap()
    }

    #[test]
    fn first_polls_are_spread_over_the_second_half_of_the_interval() {
        let s = spec(json!({}));
        let firsts: Vec<i64> = (0..200)
            .map(|_| {
                on_pending(&s, 0, Duration::from_secs(60))
                    .next_poll_ms
                    .unwrap()
            })
            .collect();
        assert!(
            firsts.iter().all(|f| (30_000..=60_000).contains(f)),
            "{firsts:?}"
        );
        let distinct: std::collections::HashSet<_> = firsts.iter().collect();
        assert!(
            distinct.len() > 100,
            "gates opened together must not poll together"
        );
        // A gate's own pollingIntervalSecs wins.
        let own = on_pending(
            &spec(json!({"pollingIntervalSecs": 10})),
            0,
            Duration::from_secs(60),
        );
        assert!(own.next_poll_ms.unwrap() <= 10_000);
    }

    #[test]
    fn the_step_timeout_waits_for_the_change_request_when_a_creation_timeout_runs() {
        let both = spec(json!({"changeCreationTimeoutSecs": 30, "changeStepTimeoutSecs": 60}));
        let t = on_pending(&both, 1_000, Duration::from_secs(60));
        assert_eq!(t.creation_deadline_ms, Some(31_000));
        assert_eq!(t.step_deadline_ms, None);
        assert_eq!(on_change_known(&both, 5_000, false), Some(65_000));
        assert_eq!(on_change_known(&both, 5_000, true), None);
        let step_only = spec(json!({"changeStepTimeoutSecs": 60}));
        assert_eq!(
            on_pending(&step_only, 1_000, Duration::from_secs(60)).step_deadline_ms,
            Some(61_000)
        );
    }
}
