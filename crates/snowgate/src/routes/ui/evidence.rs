//! The gate page's evidence and conflict-check sections, read from the gate's event log: the
//! events carry everything the page shows (the evidence table keeps only names and digests).
//!
//! The evidence events, as the evidence route and the outbox worker write them:
//! `evidence_queued` "evidence NAME (N bytes of TYPE, sha256 HEX) queued for CHG…" (or
//! "(link URL, sha256 HEX)"); `attach_done` "evidence NAME (sha256 HEX) attached to CHG… as
//! attachment SYS_ID"; `attach_failed` "ServiceNow refused the evidence NAME: …"; for a link,
//! `change_update_done` "evidence link NAME written to CHG…" and `change_update_failed`
//! "evidence link NAME refused by ServiceNow: …".
use maud::{html, Markup};

use super::layout::{utc_text, Text};
use crate::store::Event;

/// One piece of evidence for the gate's CR.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Evidence {
    pub name: String,
    /// `N bytes of TYPE`, or `link URL`.
    pub what: String,
    pub bytes: Option<u64>,
    pub sha256: String,
    pub queued_at: String,
    pub status: &'static str,
    /// ServiceNow's sys_id of the attachment, once attached.
    pub attachment: Option<String>,
}

/// The parts of an `evidence_queued` message: name, what, sha256.
fn parse_queued(message: &str) -> Option<(String, String, String)> {
    let rest = message.strip_prefix("evidence ")?;
    let (head, tail) = rest.rsplit_once(", sha256 ")?;
    let sha = tail.split(')').next()?.to_string();
    // The name ends at the " (" that opens a description the route writes.
    let open = head.match_indices(" (").map(|(i, _)| i).find(|i| {
        let what = &head[i + 2..];
        what.starts_with("link ")
            || what
                .split_once(" bytes of ")
                .is_some_and(|(n, _)| n.parse::<u64>().is_ok())
    })?;
    Some((head[..open].to_string(), head[open + 2..].to_string(), sha))
}

/// The sha256 and attachment sys_id of an `attach_done` message.
fn parse_attached(message: &str) -> Option<(String, String)> {
    let (_, after) = message.split_once("(sha256 ")?;
    let (sha, rest) = after.split_once(')')?;
    let (_, sys_id) = rest.rsplit_once(" as attachment ")?;
    Some((sha.to_string(), sys_id.trim().to_string()))
}

/// The evidence named in `events`, in the order it was queued, with how far each got.
pub(super) fn evidence_of(events: &[Event]) -> Vec<Evidence> {
    let mut found: Vec<Evidence> = Vec::new();
    for e in events {
        match e.kind.as_str() {
            "evidence_queued" => {
                let Some((name, what, sha256)) = parse_queued(&e.message) else {
                    continue;
                };
                let bytes = what
                    .split_once(" bytes of ")
                    .and_then(|(n, _)| n.parse().ok());
                found.push(Evidence {
                    name,
                    what,
                    bytes,
                    sha256,
                    queued_at: e.at.clone(),
                    status: "queued",
                    attachment: None,
                });
            }
            "attach_done" => {
                if let Some((sha, sys_id)) = parse_attached(&e.message) {
                    if let Some(ev) = found.iter_mut().find(|ev| ev.sha256 == sha) {
                        ev.status = "attached";
                        ev.attachment = Some(sys_id);
                    }
                }
            }
            kind => mark_by_name(&mut found, kind, &e.message),
        }
    }
    found
}

/// The outcomes whose messages name the evidence rather than its digest: the first queued
/// evidence of that name still waiting takes it.
fn mark_by_name(found: &mut [Evidence], kind: &str, message: &str) {
    let (name, status, link) = match kind {
        "attach_failed" => match message.strip_prefix("ServiceNow refused the evidence ") {
            Some(rest) => (rest.split(": ").next().unwrap_or(rest), "failed", false),
            None => return,
        },
        "change_update_done" => match message.strip_prefix("evidence link ") {
            Some(rest) => (
                rest.rsplit_once(" written to ").map_or(rest, |p| p.0),
                "sent",
                true,
            ),
            None => return,
        },
        "change_update_failed" => match message.strip_prefix("evidence link ") {
            Some(rest) => (
                rest.split(" refused by ").next().unwrap_or(rest),
                "failed",
                true,
            ),
            None => return,
        },
        _ => return,
    };
    if let Some(ev) = found
        .iter_mut()
        .find(|ev| ev.name == name && ev.status == "queued" && ev.what.starts_with("link ") == link)
    {
        ev.status = status;
    }
}

/// A size for people: bytes below 10 kB, then kB below 1 MB, then MB (powers of 10, as the
/// evidence limit of 5 MB is).
fn size_text(bytes: Option<u64>) -> String {
    match bytes {
        None => "—".into(),
        Some(b) if b < 10_000 => format!("{b} B"),
        Some(b) if b < 1_000_000 => format!("{:.1} kB", b as f64 / 1e3),
        Some(b) => format!("{:.1} MB", b as f64 / 1e6),
    }
}

pub(super) fn evidence_section(events: &[Event]) -> Markup {
    let evidence = evidence_of(events);
    html! {
        h2 { "Evidence" }
        table id="evidence" {
            thead { tr {
                th { "Name" } th { "Content" } th { "Size" } th { "SHA-256" } th { "Queued" }
                th { "Status" } th { "Attachment sys_id" }
            } }
            tbody {
                @if evidence.is_empty() {
                    tr { td colspan="7" class="muted" {
                        "No evidence was sent for this gate (POST /api/v1/gates/{id}/evidence)."
                    } }
                }
                @for ev in &evidence {
                    tr class="evidence" {
                        td { (Text(&ev.name)) }
                        td { (Text(&ev.what)) }
                        td { (size_text(ev.bytes)) }
                        td title=(Text(&ev.sha256)) { code { (Text(&ev.sha256.chars().take(12).collect::<String>())) } }
                        td { (Text(&utc_text(&ev.queued_at))) }
                        td { (ev.status) }
                        td { (Text(ev.attachment.as_deref().unwrap_or("—"))) }
                    }
                }
            }
        }
    }
}

/// What one conflict-check entry of the event log says.
fn conflict_outcome(message: &str) -> &'static str {
    if message.contains("conflict check could not run") {
        "check could not run"
    } else if message.contains("waiting for ServiceNow's conflict check to complete") {
        "check not complete"
    } else if message.contains("(change.conflicts: fail)") {
        "conflicts: the gate failed"
    } else if message.contains("reports conflicts for") {
        "conflicts: waiting"
    } else {
        "conflict check"
    }
}

/// The conflicts ServiceNow listed in a message: after "reports conflicts for CHG…: ", up to
/// the policy's words.
fn conflicts_listed(message: &str) -> Vec<String> {
    let Some((_, rest)) = message.split_once("reports conflicts for ") else {
        return Vec::new();
    };
    let Some((_, list)) = rest.split_once(": ") else {
        return Vec::new();
    };
    let list = list
        .split(" (change.conflicts: fail)")
        .next()
        .unwrap_or(list);
    let list = list.split(". Waiting until").next().unwrap_or(list);
    list.split(", ").map(str::to_string).collect()
}

/// The conflict checks the poller recorded for the gate: its entries (messages) that speak of
/// a conflict check. A check that found nothing leaves no entry: the gate simply proceeds.
pub(super) fn conflicts_section(events: &[Event]) -> Markup {
    let checks: Vec<&Event> = events
        .iter()
        .filter(|e| e.message.to_lowercase().contains("conflict"))
        .collect();
    html! {
        h2 { "Conflict check" }
        table id="conflicts" {
            thead { tr { th { "Time" } th { "Result" } th { "Conflicts" } th { "Message" } } }
            tbody {
                @if checks.is_empty() {
                    tr { td colspan="4" class="muted" {
                        "No conflict check reported anything for this gate (checks run in \
                         change mode with change.conflicts wait or fail; a check without \
                         conflicts leaves no entry)."
                    } }
                }
                @for e in checks {
                    tr class="conflict" {
                        td { (Text(&utc_text(&e.at))) }
                        td { (conflict_outcome(&e.message)) }
                        td {
                            @for c in conflicts_listed(&e.message) {
                                span class="state conflict-item" { (Text(&c)) } " "
                            }
                        }
                        td { (Text(&e.message)) }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, message: &str) -> Event {
        Event {
            id: 1,
            at: "2026-01-01T00:00:00.000Z".into(),
            actor: "snowgate".into(),
            kind: kind.into(),
            from_state: None,
            to_state: None,
            message: message.into(),
        }
    }

    const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn queued_attached_and_failed_evidence_is_read_from_the_events() {
        let events = [
            event(
                "evidence_queued",
                &format!("evidence junit (1).xml (23 bytes of application/xml, sha256 {SHA}) queued for CHG0001"),
            ),
            event(
                "evidence_queued",
                "evidence sonar (link https://s.example.com/?a=(1), sha256 ff00) queued for CHG0001",
            ),
            event("evidence_queued", "evidence big.bin (7000000 bytes of application/octet-stream, sha256 aa11) queued for CHG0001"),
            event(
                "attach_done",
                &format!("evidence junit (1).xml (sha256 {SHA}) attached to CHG0001 as attachment 5f1e2d"),
            ),
            event("change_update_done", "evidence link sonar written to CHG0001"),
            event("attach_failed", "ServiceNow refused the evidence big.bin: 413 too large"),
            event("change_request", "unrelated"),
        ];
        let found = evidence_of(&events);
        assert_eq!(found.len(), 3, "{found:?}");
        assert_eq!(found[0].name, "junit (1).xml");
        assert_eq!(found[0].bytes, Some(23));
        assert_eq!(found[0].sha256, SHA);
        assert_eq!(found[0].status, "attached");
        assert_eq!(found[0].attachment.as_deref(), Some("5f1e2d"));
        assert_eq!(found[1].name, "sonar");
        assert_eq!(found[1].what, "link https://s.example.com/?a=(1)");
        assert_eq!((found[1].bytes, found[1].status), (None, "sent"));
        assert_eq!(
            (found[2].status, size_text(found[2].bytes).as_str()),
            ("failed", "7.0 MB")
        );
        let html = evidence_section(&events).into_string();
        assert!(html.contains("<code>0123456789ab</code>"), "{html}");
        assert!(html.contains("5f1e2d"));
    }

    #[test]
    fn conflict_entries_list_what_servicenow_reported() {
        let wait = "CHG2 is approved; ServiceNow reports conflicts for CHG2: CHG9 (Not In \
                    Maintenance Window), schedule Year end (Blackout). Waiting until they are \
                    resolved (change.conflicts: wait)";
        assert_eq!(
            conflicts_listed(wait),
            [
                "CHG9 (Not In Maintenance Window)",
                "schedule Year end (Blackout)"
            ]
        );
        assert_eq!(conflict_outcome(wait), "conflicts: waiting");
        let fail =
            "ServiceNow reports conflicts for CHG2: CHG9 (Blackout) (change.conflicts: fail)";
        assert_eq!(conflicts_listed(fail), ["CHG9 (Blackout)"]);
        assert_eq!(conflict_outcome(fail), "conflicts: the gate failed");
        let html = conflicts_section(&[event("polled", fail), event("opened", "x")]).into_string();
        assert_eq!(html.matches("<tr class=\"conflict\">").count(), 1, "{html}");
        assert!(conflicts_section(&[])
            .into_string()
            .contains("No conflict check"));
    }
}
