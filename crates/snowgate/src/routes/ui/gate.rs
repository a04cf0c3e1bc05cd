//! One gate at `/ui/gates/{id}`: everything known about it, the resume and abort forms while it
//! is open, and its event log.
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use maud::{html, Markup};
use uuid::Uuid;

use super::layout::{
    build_cell, cr_cell, deadline_text, human, job_cell, layout, link_or_text, proceed_text,
    state_badge, utc, utc_or_dash, utc_text, Text,
};
use super::session::{session, Session};
use super::{page, to_login, UiError, MAX_REASON};
use crate::domain::{Gate, GateState};
use crate::state::AppState;
use crate::store::Event;

/// What the gate page says above the gate.
pub(super) enum Notice {
    Done(GateState),
    Error(String),
}

pub(super) fn parse_id(raw: &str) -> Result<Uuid, UiError> {
    Uuid::parse_str(raw).map_err(|_| {
        UiError::Status(
            StatusCode::NOT_FOUND,
            format!(
                "There is no gate `{}`.",
                raw.chars().take(64).collect::<String>()
            ),
        )
    })
}

pub(super) fn no_such_gate(id: Uuid) -> UiError {
    UiError::Status(StatusCode::NOT_FOUND, format!("There is no gate {id}."))
}

pub(super) async fn gate_page(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, UiError> {
    let Some(session) = session(&req, &state) else {
        return Ok(to_login());
    };
    let id = parse_id(&path)?;
    // Only fixed words come from the query string: it never puts text of its own on the page.
    let done = url::form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, _)| k == "done")
        .and_then(|(_, v)| match v.as_ref() {
            "resumed" => Some(GateState::Resumed),
            "aborted" => Some(GateState::Aborted),
            _ => None,
        });
    render_gate(&state, &session, id, done.map(Notice::Done), StatusCode::OK).await
}

/// The gate page with `notice` above the gate, answered with `status`.
pub(super) async fn render_gate(
    state: &AppState,
    session: &Session,
    id: Uuid,
    notice: Option<Notice>,
    status: StatusCode,
) -> Result<HttpResponse, UiError> {
    let gate = state
        .store
        .gate(id)
        .await?
        .ok_or_else(|| no_such_gate(id))?;
    let events = state.store.events(id).await?;
    let content = gate_body(&gate, &events, session, notice, Utc::now());
    Ok(page(
        status,
        layout(&gate.spec.stage_path(), Some(session), None, content),
    ))
}

fn gate_body(
    gate: &Gate,
    events: &[Event],
    session: &Session,
    notice: Option<Notice>,
    now: DateTime<Utc>,
) -> Markup {
    html! {
        p { a href="/ui" { "← all gates" } }
        h1 { (Text(&gate.spec.stage_path())) " " (state_badge(gate.state)) }
        @match notice {
            Some(Notice::Done(s)) => {
                p class="notice" id="notice" { "The gate is now " (s.as_str()) "." }
            }
            Some(Notice::Error(e)) => { p class="error" id="error" { (Text(&e)) } }
            None => {}
        }
        (details(gate, now))
        @if gate.state.is_terminal() {
            p class="muted" {
                "This gate is decided; it can no longer be resumed or aborted."
            }
        } @else {
            (decision_forms(gate.id, session))
        }
        h2 { "Timeline" }
        (super::timeline::timeline(gate, events, now))
        (super::evidence::evidence_section(events))
        (super::evidence::conflicts_section(events))
        h2 { "Event log" }
        (event_log(events))
    }
}

/// The gate's fields as a definition list, `—` where a value is unknown.
fn details(gate: &Gate, now: DateTime<Utc>) -> Markup {
    let view = gate.view();
    let cr = gate.change_request.clone().unwrap_or_default();
    let opt = |v: Option<&str>| html! { (Text(v.unwrap_or("—"))) };
    let text = |v: &str| html! { (Text(v)) };
    let created = format!(
        "{} ({} ago)",
        utc(&gate.created_at),
        human(now - gate.created_at)
    );
    let rows: [(&str, Markup); 19] = [
        ("Gate", text(&gate.id.to_string())),
        ("State", state_badge(gate.state)),
        ("Proceed", text(proceed_text(gate.proceed))),
        ("Message", text(&gate.message)),
        ("Job", job_cell(gate)),
        (
            "Job URL",
            link_or_text(&gate.spec.job_url, Some(&gate.spec.job_url)),
        ),
        ("Build", build_cell(gate)),
        ("Stage", text(&gate.spec.stage_path())),
        ("Branch", opt(gate.spec.branch_name.as_deref())),
        ("Change request", cr_cell(gate)),
        ("CR state", opt(cr.state.as_deref())),
        ("Planned start", opt(cr.planned_start_date.as_deref())),
        ("Planned end", opt(cr.planned_end_date.as_deref())),
        ("Approvers", opt(cr.approvers.as_deref())),
        ("Created", text(&created)),
        ("Updated", text(&utc(&gate.updated_at))),
        (
            "Deadline",
            text(&deadline_text(view.deadline.as_deref(), now)),
        ),
        ("Decided at", text(&utc_or_dash(gate.decided_at.as_ref()))),
        ("Decided by", opt(gate.decided_by.as_deref())),
    ];
    html! {
        dl id="gate" {
            @for (term, value) in rows {
                dt { (term) }
                dd { (value) }
            }
        }
    }
}

/// The resume and abort forms of an open gate, each with the session's CSRF token.
fn decision_forms(id: Uuid, session: &Session) -> Markup {
    let csrf = session.csrf();
    html! {
        h2 { "Decide by hand" }
        div class="actions" {
            (decision_form(id, &csrf, "resume", "Reason for resuming",
                "e.g. CAB approved by phone", "Resume: let the stage proceed"))
            (decision_form(id, &csrf, "abort", "Reason for aborting",
                "e.g. wrong artifact", "Abort: stop the stage"))
        }
    }
}

/// One form posting to `/ui/gates/{id}/{action}` with a required reason.
fn decision_form(
    id: Uuid,
    csrf: &str,
    action: &str,
    label: &str,
    placeholder: &str,
    button: &str,
) -> Markup {
    html! {
        form method="post" action={ "/ui/gates/" (id) "/" (action) } id={ (action) "-form" } {
            input type="hidden" name="csrf" value=(Text(csrf));
            p {
                label for={ (action) "-reason" } { (label) }
                br;
                input type="text" id={ (action) "-reason" } name="reason" required
                    maxlength=(MAX_REASON) placeholder=(placeholder);
            }
            p { button type="submit" { (button) } }
        }
    }
}

fn event_log(events: &[Event]) -> Markup {
    html! {
        table id="events" {
            thead { tr {
                th { "Time" } th { "Actor" } th { "Event" } th { "From → to" } th { "Message" }
            } }
            tbody {
                @if events.is_empty() {
                    tr { td colspan="5" class="muted" { "No events." } }
                }
                @for e in events {
                    tr {
                        td { (Text(&utc_text(&e.at))) }
                        td { (Text(&e.actor)) }
                        td { (Text(&e.kind)) }
                        td {
                            (e.from_state.map(|s| s.as_str()).unwrap_or("—"))
                            " → "
                            (e.to_state.map(|s| s.as_str()).unwrap_or("—"))
                        }
                        td { (Text(&e.message)) }
                    }
                }
            }
        }
    }
}
