//! Change-request states and the polling verdict (README "Change mode"): what a CR's state
//! and planned window mean for a waiting gate. Pure functions, unit-tested without I/O.
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};

/// A change request's state (ServiceNow's `change_request.state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrState {
    New,
    Assess,
    Authorize,
    Scheduled,
    Implement,
    Review,
    Closed,
    Canceled,
}

const STATES: [(CrState, &str, &str); 8] = [
    (CrState::New, "-5", "New"),
    (CrState::Assess, "-4", "Assess"),
    (CrState::Authorize, "-3", "Authorize"),
    (CrState::Scheduled, "-2", "Scheduled"),
    (CrState::Implement, "-1", "Implement"),
    (CrState::Review, "0", "Review"),
    (CrState::Closed, "3", "Closed"),
    (CrState::Canceled, "4", "Canceled"),
];

impl CrState {
    /// Accepts the display name (any case, also `Cancelled`) or the numeric value
    /// (`"-1"`, `"0"` — ServiceNow's changeInfo example answers `"state":"0"`).
    pub fn parse(s: &str) -> Option<CrState> {
        let t = s.trim();
        let t = if t.eq_ignore_ascii_case("cancelled") {
            "Canceled"
        } else {
            t
        };
        STATES
            .iter()
            .find(|(_, num, name)| *num == t || name.eq_ignore_ascii_case(t))
            .map(|(st, _, _)| *st)
    }

    pub fn name(self) -> &'static str {
        STATES
            .iter()
            .find(|(st, _, _)| *st == self)
            .map(|x| x.2)
            .unwrap_or("Unknown")
    }

    /// Position in the normal flow New → … → Closed (Canceled after all of them).
    pub fn order(self) -> u8 {
        match self {
            CrState::New => 0,
            CrState::Assess => 1,
            CrState::Authorize => 2,
            CrState::Scheduled => 3,
            CrState::Implement => 4,
            CrState::Review => 5,
            CrState::Closed => 6,
            CrState::Canceled => 7,
        }
    }

    /// Not yet closed or canceled.
    pub fn is_open(self) -> bool {
        !matches!(self, CrState::Closed | CrState::Canceled)
    }

    /// States in which the CR still waits for approval or scheduling.
    pub fn is_waiting(self) -> bool {
        matches!(
            self,
            CrState::New | CrState::Assess | CrState::Authorize | CrState::Scheduled
        )
    }
}

/// ServiceNow's planned dates: `YYYY-MM-DD HH:MM:SS` in UTC; `""` when unset.
pub fn parse_planned(s: Option<&str>) -> Option<DateTime<Utc>> {
    let s = s?.trim();
    if s.is_empty() {
        return None;
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
        .ok()
        .map(|n| n.and_utc())
        .or_else(|| {
            DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|d| d.with_timezone(&Utc))
        })
}

/// What a polled CR means for its gate.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Keep waiting; `recheck_in` asks for an earlier poll (the window opens then).
    Wait {
        message: String,
        recheck_in: Option<Duration>,
    },
    Approve(String),
    Cancel(String),
    Reject(String),
    Fail(String),
}

/// Decide from a CR's state and planned window (as Octopus Deploy does it, "Respecting change windows"):
/// no dates → no window; start only → on or after it; end only → on or before it; both →
/// between; the end passing while the CR is not approved fails the gate.
pub fn verdict(
    number: &str,
    state: CrState,
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    approvers: Option<&str>,
    now: DateTime<Utc>,
) -> Verdict {
    let closed_window = end.is_some_and(|e| now > e);
    match state {
        CrState::Implement => {
            if closed_window {
                return Verdict::Fail(format!(
                    "change window closed: {number} is approved but its planned end {} has passed",
                    end.map(fmt).unwrap_or_default()
                ));
            }
            match start {
                Some(s) if now < s => Verdict::Wait {
                    message: format!(
                        "{number} is approved; waiting for its change window to open at {}",
                        fmt(s)
                    ),
                    recheck_in: (s - now).to_std().ok(),
                },
                _ => Verdict::Approve(format!(
                    "{number} reached Implement inside its change window"
                )),
            }
        }
        CrState::Canceled => Verdict::Cancel(format!("{number} was canceled")),
        s if s.is_waiting() => {
            if closed_window {
                Verdict::Fail(format!(
                    "change window closed: {number} was not approved before its planned end {}",
                    end.map(fmt).unwrap_or_default()
                ))
            } else {
                let who = approvers
                    .filter(|a| !a.trim().is_empty())
                    .map(|a| format!("; approvers: {a}"))
                    .unwrap_or_default();
                Verdict::Wait {
                    message: format!("Waiting for approval of {number} (state {}{who})", s.name()),
                    recheck_in: None,
                }
            }
        }
        other => Verdict::Reject(format!(
            "{number} is in state {} without this stage having been approved",
            other.name()
        )),
    }
}

fn fmt(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 1, 1, h, 0, 0).unwrap()
    }

    #[test]
    fn states_parse_from_names_and_numbers() {
        assert_eq!(CrState::parse("0"), Some(CrState::Review));
        assert_eq!(CrState::parse("-1"), Some(CrState::Implement));
        assert_eq!(CrState::parse("implement"), Some(CrState::Implement));
        assert_eq!(CrState::parse("Cancelled"), Some(CrState::Canceled));
        assert_eq!(CrState::parse("4"), Some(CrState::Canceled));
        assert_eq!(CrState::parse("bogus"), None);
    }

    #[test]
    fn planned_dates_are_utc_text() {
        assert_eq!(parse_planned(Some("2030-01-01 08:00:00")), Some(at(8)));
        assert_eq!(parse_planned(Some("")), None);
        assert_eq!(parse_planned(None), None);
    }

    #[test]
    fn the_seeds_change_window_cases() {
        let v = |st, s, e, now| verdict("CHG1", st, s, e, None, now);
        // Neither date: no window.
        assert!(matches!(
            v(CrState::Implement, None, None, at(5)),
            Verdict::Approve(_)
        ));
        // Start only: on or after it.
        assert!(matches!(
            v(CrState::Implement, Some(at(8)), None, at(7)),
            Verdict::Wait {
                recheck_in: Some(_),
                ..
            }
        ));
        assert!(matches!(
            v(CrState::Implement, Some(at(8)), None, at(8)),
            Verdict::Approve(_)
        ));
        // End only: on or before it.
        assert!(matches!(
            v(CrState::Implement, None, Some(at(8)), at(8)),
            Verdict::Approve(_)
        ));
        assert!(matches!(
            v(CrState::Implement, None, Some(at(8)), at(9)),
            Verdict::Fail(_)
        ));
        // Both: between.
        assert!(matches!(
            v(CrState::Implement, Some(at(8)), Some(at(10)), at(9)),
            Verdict::Approve(_)
        ));
        assert!(matches!(
            v(CrState::Implement, Some(at(8)), Some(at(10)), at(7)),
            Verdict::Wait { .. }
        ));
        assert!(matches!(
            v(CrState::Implement, Some(at(8)), Some(at(10)), at(11)),
            Verdict::Fail(_)
        ));
    }

    #[test]
    fn waiting_states_wait_until_the_window_closes() {
        let w = verdict(
            "CHG1",
            CrState::Assess,
            None,
            Some(at(10)),
            Some("Ron, Ann"),
            at(9),
        );
        let Verdict::Wait { message, .. } = w else {
            panic!("{w:?}")
        };
        assert!(message.contains("Assess") && message.contains("Ron, Ann"));
        let f = verdict("CHG1", CrState::Authorize, None, Some(at(10)), None, at(11));
        assert!(matches!(f, Verdict::Fail(m) if m.starts_with("change window closed")));
    }

    #[test]
    fn terminal_states_decide() {
        assert!(matches!(
            verdict("C", CrState::Canceled, None, None, None, at(1)),
            Verdict::Cancel(_)
        ));
        assert!(matches!(
            verdict("C", CrState::Closed, None, None, None, at(1)),
            Verdict::Reject(_)
        ));
        assert!(matches!(
            verdict("C", CrState::Review, None, None, None, at(1)),
            Verdict::Reject(_)
        ));
    }
}
