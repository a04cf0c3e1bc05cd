//! The resume and abort forms of the gate page: checked like the operator API, decided through
//! the one decision path, answered with a redirect to the gate (or the page with the problem).
use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{Map, Value};

use super::gate::{no_such_gate, parse_id, render_gate, Notice};
use super::layout::gate_href;
use super::session::session;
use super::{read_form, redirect, to_login, UiError, MAX_REASON};
use crate::domain::request::Fields;
use crate::domain::GateState;
use crate::state::AppState;
use crate::store::TransitionOutcome;

/// The reason, checked like the operator API checks it (required, ≤ 1000 characters, no
/// control characters).
fn reason_of(form: &HashMap<String, String>) -> Result<String, String> {
    let reason = form.get("reason").map(|r| r.trim()).unwrap_or_default();
    if reason.is_empty() {
        return Err("A reason is required: say why the stage is released or stopped.".into());
    }
    let obj = Map::from_iter([("reason".to_string(), Value::String(reason.to_string()))]);
    match Fields(&obj).string("reason", MAX_REASON) {
        Ok(Some(r)) => Ok(r),
        Ok(None) => Err("A reason is required: say why the stage is released or stopped.".into()),
        Err(e) => Err(format!("The reason {}.", e.problem)),
    }
}

/// Decide through the one decision path, exactly as `routes::operator` does.
async fn act(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
    to: GateState,
) -> Result<HttpResponse, UiError> {
    let Some(session) = session(&req, &state) else {
        return Ok(to_login());
    };
    let form = read_form(payload).await?;
    session.check_csrf(&form)?;
    let id = parse_id(&path)?;
    let refused = |notice: String, status| {
        render_gate(&state, &session, id, Some(Notice::Error(notice)), status)
    };
    let reason = match reason_of(&form) {
        Ok(r) => r,
        Err(why) => return refused(why, StatusCode::BAD_REQUEST).await,
    };
    let who = &session.operator;
    let (verb, transition) = state
        .decider
        .operator_decision(id, to, who, &reason)
        .await?;
    match state.decider.decide(transition).await? {
        TransitionOutcome::Applied(gate) => {
            tracing::info!(gate_id = %gate.id, operator = %who, %reason, "gate {verb} by an operator on the status page");
            Ok(redirect(&format!("{}?done={verb}", gate_href(gate.id))))
        }
        TransitionOutcome::Conflict(gate) => {
            let why = format!("The gate is already {}; it cannot be {verb}.", gate.state);
            refused(why, StatusCode::CONFLICT).await
        }
        TransitionOutcome::NotFound => Err(no_such_gate(id)),
    }
}

#[tracing::instrument(skip_all, fields(gate_id = %path))]
pub(super) async fn resume(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, UiError> {
    act(req, path, payload, state, GateState::Resumed).await
}

#[tracing::instrument(skip_all, fields(gate_id = %path))]
pub(super) async fn abort(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, UiError> {
    act(req, path, payload, state, GateState::Aborted).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reason_is_required_and_checked_like_the_api() {
        let form = |r: Option<&str>| {
            r.map(|r| HashMap::from([("reason".to_string(), r.to_string())]))
                .unwrap_or_default()
        };
        assert_eq!(
            reason_of(&form(Some(" wrong artifact "))).unwrap(),
            "wrong artifact"
        );
        for bad in [None, Some(""), Some("   ")] {
            assert!(
                reason_of(&form(bad)).unwrap_err().contains("required"),
                "{bad:?}"
            );
        }
        assert!(reason_of(&form(Some(&"x".repeat(1001))))
            .unwrap_err()
            .contains("at most 1000"));
        assert!(reason_of(&form(Some("a\u{7}b"))).is_err());
    }
}
