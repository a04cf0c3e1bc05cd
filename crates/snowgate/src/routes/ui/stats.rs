//! The numbers behind the overview's charts, as pure functions: decisions grouped by the UTC
//! day they were made, with the median and 90th percentile of their time to decision and a
//! count per outcome.
use chrono::{DateTime, Duration, NaiveDate, Utc};

use crate::domain::GateState;
use crate::store::DecisionTimes;

/// Days the charts cover, today (UTC) included.
pub(super) const DAYS: u32 = 14;

/// The decided states, in the order the outcome chart stacks and lists them: the ones that
/// let the stage proceed first.
pub(super) const OUTCOMES: [GateState; 9] = [
    GateState::Approved,
    GateState::Resumed,
    GateState::NotControlled,
    GateState::Rejected,
    GateState::Canceled,
    GateState::Failed,
    GateState::TimedOut,
    GateState::Aborted,
    GateState::Superseded,
];

/// One day's decisions.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Day {
    pub date: NaiveDate,
    /// Decisions made that day.
    pub decisions: u32,
    /// Median time from opening to decision, in seconds; `None` on a day without decisions.
    pub median_secs: Option<f64>,
    pub p90_secs: Option<f64>,
    /// Decisions per outcome, in the order of [`OUTCOMES`].
    pub outcomes: [u32; OUTCOMES.len()],
}

/// The first instant the charts cover: midnight UTC `DAYS - 1` days before `now`'s day.
pub(super) fn window_start(now: DateTime<Utc>) -> DateTime<Utc> {
    let first = now.date_naive() - Duration::days(i64::from(DAYS) - 1);
    first.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
}

/// `DAYS` days ending with `now`'s, each with the decisions made on it (decisions outside the
/// window are left out).
pub(super) fn daily(decisions: &[DecisionTimes], now: DateTime<Utc>) -> Vec<Day> {
    let first = window_start(now).date_naive();
    let mut waits: Vec<Vec<f64>> = vec![Vec::new(); DAYS as usize];
    let mut outcomes = vec![[0u32; OUTCOMES.len()]; DAYS as usize];
    for d in decisions {
        let offset = (d.decided_at.date_naive() - first).num_days();
        let Some(i) = usize::try_from(offset).ok().filter(|i| *i < DAYS as usize) else {
            continue;
        };
        // A clock step back could make a decision seem older than its gate: count it as 0 s.
        let secs = (d.decided_at - d.created_at).num_milliseconds().max(0) as f64 / 1000.0;
        waits[i].push(secs);
        if let Some(k) = OUTCOMES.iter().position(|s| *s == d.state) {
            outcomes[i][k] += 1;
        }
    }
    waits
        .into_iter()
        .zip(outcomes)
        .enumerate()
        .map(|(i, (mut w, outcomes))| {
            w.sort_by(f64::total_cmp);
            Day {
                date: first + Duration::days(i as i64),
                decisions: w.len() as u32,
                median_secs: percentile(&w, 50.0),
                p90_secs: percentile(&w, 90.0),
                outcomes,
            }
        })
        .collect()
}

/// The `p`th percentile (0–100) of `sorted` (ascending), interpolating linearly between the
/// two nearest ranks (the method numpy and R use by default, "type 7"), so the median of an
/// even count is the mean of the middle two; `None` for no values.
pub(super) fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let rank = (p.clamp(0.0, 100.0) / 100.0) * last as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    let frac = rank - lo as f64;
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * frac)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn decided(created: &str, decided: &str, state: GateState) -> DecisionTimes {
        DecisionTimes {
            created_at: at(created),
            decided_at: at(decided),
            state,
        }
    }

    #[test]
    fn percentiles_interpolate_between_the_nearest_ranks() {
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[7.0], 50.0), Some(7.0));
        assert_eq!(percentile(&[7.0], 90.0), Some(7.0));
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 50.0), Some(2.0));
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 50.0), Some(2.5));
        let ten: Vec<f64> = (1..=10).map(f64::from).collect();
        let p90 = percentile(&ten, 90.0).unwrap();
        assert!((p90 - 9.1).abs() < 1e-9, "{p90}");
        assert_eq!(percentile(&ten, 0.0), Some(1.0));
        assert_eq!(percentile(&ten, 100.0), Some(10.0));
    }

    #[test]
    fn decisions_are_grouped_by_their_utc_day_with_gaps_for_days_without_any() {
        let now = at("2026-03-14T10:00:00Z");
        let days = daily(
            &[
                decided(
                    "2026-03-14T09:00:00Z",
                    "2026-03-14T09:00:10Z",
                    GateState::Approved,
                ),
                decided(
                    "2026-03-14T08:00:00Z",
                    "2026-03-14T08:00:30Z",
                    GateState::Rejected,
                ),
                decided(
                    "2026-03-13T23:00:00Z",
                    "2026-03-14T00:00:00Z",
                    GateState::Approved,
                ),
                // The first day of the window, at its first instant.
                decided(
                    "2026-02-28T23:59:00Z",
                    "2026-03-01T00:00:00Z",
                    GateState::TimedOut,
                ),
                // Before the window: left out.
                decided(
                    "2026-02-28T10:00:00Z",
                    "2026-02-28T23:59:59Z",
                    GateState::Failed,
                ),
            ],
            now,
        );
        assert_eq!(days.len(), 14);
        assert_eq!(days[0].date, NaiveDate::from_ymd_opt(2026, 3, 1).unwrap());
        assert_eq!(days[13].date, NaiveDate::from_ymd_opt(2026, 3, 14).unwrap());
        assert_eq!(days[0].decisions, 1);
        assert_eq!(days[0].median_secs, Some(60.0));
        assert_eq!(days[0].outcomes[6], 1, "timed_out");
        for d in &days[1..13] {
            assert_eq!((d.decisions, d.median_secs, d.p90_secs), (0, None, None));
        }
        let today = &days[13];
        assert_eq!(today.decisions, 3);
        assert_eq!(today.median_secs, Some(30.0));
        // 10, 30, 3600 s: rank 1.8 between 30 and 3600.
        assert!((today.p90_secs.unwrap() - (30.0 + 0.8 * 3570.0)).abs() < 1e-9);
        assert_eq!(today.outcomes[0], 2, "approved");
        assert_eq!(today.outcomes[3], 1, "rejected");
        assert_eq!(today.outcomes.iter().sum::<u32>(), 3);
    }

    #[test]
    fn a_decision_recorded_before_its_gate_counts_as_immediate() {
        let now = at("2026-03-14T10:00:00Z");
        let days = daily(
            &[decided(
                "2026-03-14T09:00:05Z",
                "2026-03-14T09:00:00Z",
                GateState::Aborted,
            )],
            now,
        );
        assert_eq!(days[13].median_secs, Some(0.0));
        assert_eq!(days[13].outcomes[7], 1, "aborted");
    }

    #[test]
    fn the_window_starts_at_midnight_thirteen_days_before_today() {
        assert_eq!(
            window_start(at("2026-03-14T23:59:59Z")),
            at("2026-03-01T00:00:00Z")
        );
    }
}
