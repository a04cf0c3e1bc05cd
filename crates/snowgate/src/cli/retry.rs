//! The retry budget of `snowgate gates open --wait`: a snowgate that restarts, or whose
//! replicas fail over behind a load balancer, is unreachable (or answers 502/503/504 from the
//! proxy) for a while; the pipeline keeps waiting through that, for at most `--retry-for` of
//! failures in a row.
use std::time::{Duration, Instant};

use super::client::CallError;

const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Whether `e` may pass once snowgate (or the proxy before it) is back: no answer at all, or an
/// answer that says "not now" (429; 500 and 503 when its store is failing over; 502 and 504
/// from a proxy without a healthy replica). Any other 4xx is this request's fault and repeats.
pub(super) fn transient(e: &CallError) -> bool {
    match e {
        CallError::Unreachable(_) => true,
        CallError::Usage(_) => false,
        CallError::Api { status, .. } => matches!(status, 429 | 500 | 502 | 503 | 504),
    }
}

/// Failures in a row, and since when.
pub(super) struct Retry {
    budget: Duration,
    report_every: Duration,
    failing_since: Option<Instant>,
    last_report: Option<Instant>,
    backoff: Duration,
}

impl Retry {
    pub(super) fn new(budget: Duration, report_every: Duration) -> Retry {
        Retry {
            budget,
            report_every,
            failing_since: None,
            last_report: None,
            backoff: FIRST_BACKOFF,
        }
    }

    /// An answer came: the next failure starts a new budget.
    pub(super) fn succeeded(&mut self) {
        self.failing_since = None;
        self.last_report = None;
        self.backoff = FIRST_BACKOFF;
    }

    /// After the failure `e`: sleep and answer true to try again, or false when `e` is not
    /// transient or the budget is spent. Says so on stderr at the first failure of a row and
    /// then once per `report_every`.
    pub(super) async fn again(&mut self, e: &CallError) -> bool {
        if !transient(e) {
            return false;
        }
        let now = Instant::now();
        let since = *self.failing_since.get_or_insert(now);
        let left = self.budget.saturating_sub(now - since);
        if left.is_zero() {
            eprintln!(
                "snowgate: giving up after {} of failures: {}",
                humantime::format_duration(round_secs(now - since)),
                message(e)
            );
            return false;
        }
        if self
            .last_report
            .is_none_or(|t| now - t >= self.report_every)
        {
            self.last_report = Some(now);
            eprintln!(
                "snowgate: {}; retrying for up to {}",
                message(e),
                humantime::format_duration(round_secs(left))
            );
        }
        tokio::time::sleep(self.backoff.min(left)).await;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        true
    }
}

fn round_secs(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
}

fn message(e: &CallError) -> String {
    match e {
        CallError::Unreachable(m) | CallError::Usage(m) => m.clone(),
        CallError::Api {
            status, message, ..
        } => format!("{message} (HTTP {status})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16) -> CallError {
        CallError::Api {
            status,
            code: "x".into(),
            message: "m".into(),
            body: None,
        }
    }

    #[test]
    fn only_no_answer_and_not_now_answers_are_retried() {
        assert!(transient(&CallError::Unreachable("refused".into())));
        for s in [429, 500, 502, 503, 504] {
            assert!(transient(&api(s)), "{s}");
        }
        for s in [400, 401, 403, 404, 409, 413] {
            assert!(!transient(&api(s)), "{s}");
        }
    }

    #[tokio::test]
    async fn the_budget_counts_failures_in_a_row_and_an_answer_renews_it() {
        let mut r = Retry::new(Duration::from_millis(600), Duration::from_secs(60));
        let e = CallError::Unreachable("refused".into());
        let started = Instant::now();
        let mut tries = 0;
        while r.again(&e).await {
            tries += 1;
        }
        assert!(started.elapsed() >= Duration::from_millis(600));
        assert!(tries >= 2, "{tries}");
        r.succeeded();
        assert!(r.again(&e).await, "a new row of failures has a new budget");
        assert!(!r.again(&api(401)).await);
    }
}
