//! What people read: the tables and details of `snowgate gates …` (pure, unit-tested).
use chrono::{DateTime, Utc};

use crate::api::{EventView, GateView};
use crate::domain::names::job_segments;

fn proceed_text(g: &GateView) -> &'static str {
    match g.proceed {
        Some(true) => "yes",
        Some(false) => "no",
        None => "-",
    }
}

/// `shop/app` for `https://ci/job/shop/job/app/`; the URL itself when it has no `/job/` parts.
pub(super) fn job_name(job_url: &str) -> String {
    let segs = job_segments(job_url);
    if segs.is_empty() {
        job_url.to_string()
    } else {
        segs.join("/")
    }
}

fn cr_number(g: &GateView) -> &str {
    g.change_request
        .as_ref()
        .and_then(|c| c.number.as_deref())
        .unwrap_or("-")
}

/// `42s`, `5m`, `3h`, `2d` since `created` (an RFC 3339 time).
pub fn age(created: &str, now: DateTime<Utc>) -> String {
    let Ok(t) = DateTime::parse_from_rfc3339(created) else {
        return "-".into();
    };
    let secs = (now - t.with_timezone(&Utc)).num_seconds().max(0);
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// Columns padded to their widest cell; the last column is not padded.
pub(super) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let last = row.len().saturating_sub(1);
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i == last {
                line.push_str(cell);
            } else {
                let pad = widths[i] - cell.chars().count();
                line.push_str(cell);
                line.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `gates list`: ID STATE PROCEED JOB BUILD STAGE CR AGE.
pub fn gate_table(gates: &[GateView], now: DateTime<Utc>) -> String {
    let rows: Vec<Vec<String>> = gates
        .iter()
        .map(|g| {
            vec![
                g.id.to_string(),
                g.state.to_string(),
                proceed_text(g).to_string(),
                job_name(&g.job_url),
                g.build_number.clone(),
                g.stage_name.clone(),
                cr_number(g).to_string(),
                age(&g.created_at, now),
            ]
        })
        .collect();
    table(
        &[
            "ID", "STATE", "PROCEED", "JOB", "BUILD", "STAGE", "CR", "AGE",
        ],
        &rows,
    )
}

fn or_dash(s: Option<&str>) -> String {
    match s {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => "-".to_string(),
    }
}

/// `CHG0030001 (Assess) https://…`, or `-` without a change request.
fn cr_line(g: &GateView) -> String {
    let Some(c) = &g.change_request else {
        return "-".to_string();
    };
    let mut s = cr_number(g).to_string();
    if let Some(state) = &c.state {
        s.push_str(&format!(" ({state})"));
    }
    if let Some(url) = &c.url {
        s.push_str(&format!(" {url}"));
    }
    s
}

/// `gates show` / `wait` / `resume` / `abort`: one `key: value` line per field.
pub fn gate_details(g: &GateView, now: DateTime<Utc>) -> String {
    let created = &g.created_at;
    let rows = [
        ("id", g.id.to_string()),
        ("state", g.state.to_string()),
        ("proceed", proceed_text(g).to_string()),
        ("message", or_dash(Some(&g.message))),
        ("job", job_name(&g.job_url)),
        ("job url", or_dash(Some(&g.job_url))),
        ("build", g.build_number.clone()),
        ("stage", g.stage_name.clone()),
        ("branch", or_dash(g.branch_name.as_deref())),
        ("change request", cr_line(g)),
        (
            "created",
            format!("{} ({} ago)", or_dash(Some(created)), age(created, now)),
        ),
        ("decided", or_dash(g.decided_at.as_deref())),
        ("decided by", or_dash(g.decided_by.as_deref())),
    ];
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    rows.iter()
        .map(|(k, v)| format!("{:width$} {v}\n", format!("{k}:")))
        .collect()
}

/// `gates events`: AT ACTOR KIND FROM→TO MESSAGE.
pub fn event_table(events: &[EventView]) -> String {
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            // Notices (a CR number arrived, an acknowledgement was sent) change no state.
            let transition = match (e.from_state, e.to_state) {
                (None, None) => "-".to_string(),
                (f, t) => format!(
                    "{} -> {}",
                    f.map_or("-", |s| s.as_str()),
                    t.map_or("-", |s| s.as_str())
                ),
            };
            vec![
                e.at.clone(),
                e.actor.clone(),
                e.kind.clone(),
                transition,
                e.message.clone(),
            ]
        })
        .collect();
    table(&["AT", "ACTOR", "KIND", "TRANSITION", "MESSAGE"], &rows)
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{event, gate, now};
    use super::*;
    use serde_json::json;

    #[test]
    fn the_list_table_has_one_aligned_row_per_gate() {
        let out = gate_table(&[gate()], now());
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(lines[0].starts_with("ID "), "{out}");
        for cell in [
            "5a0c1f4e-0000-4000-8000-000000000001",
            "pending",
            "shop/app",
            "42",
            "Deploy",
            "CHG0030001",
            "5m",
        ] {
            assert!(lines[1].contains(cell), "{cell} missing from {out}");
        }
        // Columns line up: STATE starts where the row's state starts.
        assert_eq!(lines[0].find("STATE"), lines[1].find("pending"));
    }

    #[test]
    fn details_name_the_change_request_and_the_age() {
        let out = gate_details(&gate(), now());
        assert!(out.contains("change request: CHG0030001 (Assess) https://sn/chg"));
        assert!(out.contains("(5m ago)"), "{out}");
        assert!(out.contains("proceed:        -"), "{out}");
        assert!(out.contains("decided by:     -"), "{out}");
    }

    #[test]
    fn events_show_transitions_and_notices() {
        let out = event_table(&[
            event(
                json!({"id": 1, "at": "2026-01-01T10:00:00.000Z", "actor": "operator:alice", "kind": "aborted",
                   "fromState": "pending", "toState": "aborted", "message": "aborted by alice: wrong build"}),
            ),
            event(
                json!({"id": 2, "at": "2026-01-01T10:00:01.000Z", "actor": "servicenow", "kind": "change_request",
                   "fromState": null, "toState": null, "message": "CHG0030001"}),
            ),
        ]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert!(lines[1].contains("pending -> aborted"), "{out}");
        assert!(lines[1].ends_with("aborted by alice: wrong build"), "{out}");
        assert!(!lines[2].contains("->"), "{out}");
    }

    #[test]
    fn ages_use_the_largest_whole_unit() {
        let n = now();
        assert_eq!(age("2026-01-01T10:05:00Z", n), "30s");
        assert_eq!(age("2026-01-01T07:00:00Z", n), "3h");
        assert_eq!(age("2025-12-29T10:00:00Z", n), "3d");
        assert_eq!(age("not a time", n), "-");
        // A clock a little behind the server's never shows a negative age.
        assert_eq!(age("2026-01-01T10:06:00Z", n), "0s");
    }
}
