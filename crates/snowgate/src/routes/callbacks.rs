//! The ServiceNow-facing callback `/sn-devops/{token}`, with the official Jenkins plugin's
//! semantics and replies: a notice records the CR and keeps the gate pending; a
//! decision is stored durably, then answered, then acknowledged through the outbox.
use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use super::body::read_limited;
use super::ApiError;
use crate::decisions::{callback_decision, notice_update};
use crate::domain::{ChangeRequest, Gate, GateState};
use crate::state::AppState;
use crate::store::TransitionOutcome;
use crate::telemetry::redact;

/// The header the plugin answers with; ServiceNow records it.
pub const RESULT_HEADER: (&str, &str) = ("Result", "Jenkins webhook triggered successfully");

/// What a callback body says.
#[derive(Debug, PartialEq)]
pub enum CallbackBody {
    /// `changeRequestId` present: a CR was created or updated; the gate stays pending.
    Notice(ChangeRequest),
    Decision {
        to: GateState,
        comments: String,
    },
}

fn text(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Classify a callback body exactly as the plugin does: `succeeded` (exact) → approved,
/// `canceled` → canceled, `isError: true` → failed, anything else (even unparseable) → rejected.
pub fn classify(body: &str) -> CallbackBody {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let Some(v) = parsed.filter(Value::is_object) else {
        return CallbackBody::Decision {
            to: GateState::Rejected,
            comments: "ServiceNow sent a decision snowgate could not read; treated as rejected"
                .into(),
        };
    };
    if v.get("changeRequestId").is_some() {
        let config_message = v.get("configResult").and_then(|c| text(c, "message"));
        return CallbackBody::Notice(ChangeRequest {
            number: text(&v, "changeRequestId"),
            url: text(&v, "changeRequestUrl"),
            comments: text(&v, "changeComments").or(config_message),
            ..ChangeRequest::default()
        });
    }
    let comments = text(&v, "changeComments").unwrap_or_default();
    let is_error = matches!(v.get("isError"), Some(Value::Bool(true)))
        || matches!(v.get("isError"), Some(Value::String(s)) if s == "true");
    let to = if is_error {
        GateState::Failed
    } else {
        match v.get("result").and_then(Value::as_str) {
            Some("succeeded") => GateState::Approved,
            Some("canceled") => GateState::Canceled,
            _ => GateState::Rejected,
        }
    };
    CallbackBody::Decision { to, comments }
}

fn check_basic_auth(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    let Some((user, password)) = &state.callback_auth else {
        return Ok(());
    };
    let expected =
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{}", password.expose()));
    let presented = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .unwrap_or("");
    if bool::from(expected.as_bytes().ct_eq(presented.trim().as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

#[utoipa::path(post, path = "/sn-devops/{token}", operation_id = "serviceNowCallback", tag = "callbacks",
    description = "ServiceNow's callback to the URL registered with the stage. Any method is accepted, like the plugin's root action; ServiceNow posts. The token in the path is the secret (unless callback.basic_auth is set).",
    security((), ("callbackBasic" = [])),
    params(("token" = String, Path, description = "The gate's callback token")),
    request_body = crate::openapi::ServiceNowCallback,
    responses(
        (status = 200, description = "Accepted (the plugin's answer)", body = crate::openapi::CallbackAnswer,
            headers(("Result" = String, description = "`Jenkins webhook triggered successfully`"))),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, description = "callback.basic_auth is configured and the request lacks its credentials", body = crate::api::ErrorBody),
        (status = 409, response = crate::openapi::Conflict),
        (status = 410, response = crate::openapi::Gone),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 503, response = crate::openapi::Unavailable),
    ))]
#[tracing::instrument(skip_all, fields(token = %redact(&path)))]
pub async fn callback(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let received = std::time::Instant::now();
    check_basic_auth(&req, &state)?;
    let bytes = read_limited(&req, payload, state.max_body).await?;
    let token = path.into_inner();
    let gate = if token.len() <= 128 {
        state.store.gate_by_token(&token).await?
    } else {
        None
    };
    let Some(gate) = gate else {
        tracing::warn!("callback for an unknown token");
        return Err(ApiError::Gone("no gate waits for this callback".into()));
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::Gone("the callback body is empty".into()));
    }
    let body = std::str::from_utf8(&bytes)
        .map_err(|_| ApiError::BadRequest("the callback body is not UTF-8 text".into()))?;
    match classify(body) {
        CallbackBody::Notice(cr) => notice(&state, &gate, cr).await,
        CallbackBody::Decision { to, comments } => {
            decision(&state, &gate, to, comments, received).await
        }
    }
}

/// A notice: the CR is recorded and the gate stays pending; the step timeout starts now. A
/// notice for a gate snowgate decided (a timeout, an operator, a newer build) gets 410 as a
/// decision would: the plugin has forgotten that token.
async fn notice(
    state: &AppState,
    gate: &Gate,
    cr: ChangeRequest,
) -> Result<HttpResponse, ApiError> {
    if gate.state.is_terminal() {
        if let Some(gone) = forgotten(gate) {
            return Err(gone);
        }
    }
    let number = cr.number.clone().unwrap_or_default();
    let update = notice_update(gate, cr, chrono::Utc::now().timestamp_millis());
    let step_deadline = update.step_deadline_ms.is_some();
    state.store.update_change_request(gate.id, update).await?;
    if step_deadline {
        state.decider.wakeups().timers.notify_one();
    }
    tracing::info!(gate_id = %gate.id, change_request = %number, "change request notice");
    Ok(accepted())
}

/// A decision: stored (with its acknowledgement in the outbox) before the answer.
async fn decision(
    state: &AppState,
    gate: &Gate,
    to: GateState,
    comments: String,
    received: std::time::Instant,
) -> Result<HttpResponse, ApiError> {
    let outcome = state
        .decider
        .decide_received(callback_decision(gate, to, comments), Some(received))
        .await?;
    match outcome {
        TransitionOutcome::Applied(_) => Ok(accepted()),
        TransitionOutcome::Conflict(current) => late_decision(state, &current, to).await,
        TransitionOutcome::NotFound => {
            Err(ApiError::Gone("no gate waits for this callback".into()))
        }
    }
}

/// The plugin's answer to a callback it accepted: 200 with its `Result` header.
fn accepted() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(RESULT_HEADER)
        .json(json!({"message": RESULT_HEADER.1}))
}

/// A decision callback for a gate that is decided already.
///
/// - Decided by a timeout or by an operator: the plugin has forgotten such a token (its
///   timeouts and `stop()` deregister it), so the callback gets 410 and no acknowledgement.
/// - Decided by ServiceNow (polling, an earlier callback, reconciliation): the callback is
///   acknowledged, once per gate (the plugin acknowledges every decision callback it
///   receives); the same decision again answers 200, a different one 409.
async fn late_decision(
    state: &AppState,
    current: &crate::domain::Gate,
    to: GateState,
) -> Result<HttpResponse, ApiError> {
    if let Some(gone) = forgotten(current) {
        return Err(gone);
    }
    let note = format!(
        "ServiceNow's callback ({to}) arrived after the gate was decided ({}); it is acknowledged",
        current.state
    );
    if state.store.acknowledge_late(current.id, note).await? {
        state.decider.wakeups().outbox.notify_one();
    }
    if current.state == to {
        Ok(accepted())
    } else {
        Err(ApiError::Conflict(format!(
            "the gate was already decided ({}); this callback says {to}",
            current.state
        )))
    }
}

/// The 410 for a callback to a decided gate whose token the plugin would have forgotten: one
/// decided by a timeout, an operator or a supersede, not by ServiceNow.
fn forgotten(current: &Gate) -> Option<ApiError> {
    let by = current.decided_by.as_deref().unwrap_or("");
    if by == "servicenow" {
        return None;
    }
    tracing::info!(gate_id = %current.id, decided_by = by, "callback for a gate decided by a timeout, an operator or a newer build");
    Some(ApiError::Gone(format!(
        "the gate was decided ({}) by {} before ServiceNow's callback; its token is no longer registered",
        current.state,
        if by.is_empty() { "snowgate" } else { by }
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to(body: &str) -> GateState {
        match classify(body) {
            CallbackBody::Decision { to, .. } => to,
            CallbackBody::Notice(_) => panic!("a notice"),
        }
    }

    #[test]
    fn decisions_follow_the_plugin() {
        assert_eq!(to(r#"{"result":"succeeded"}"#), GateState::Approved);
        assert_eq!(to(r#"{"result":"Succeeded"}"#), GateState::Rejected);
        assert_eq!(to(r#"{"result":"canceled"}"#), GateState::Canceled);
        assert_eq!(to(r#"{"result":"rejected"}"#), GateState::Rejected);
        assert_eq!(
            to(r#"{"result":"failed","isError":true}"#),
            GateState::Failed
        );
        assert_eq!(
            to(r#"{"result":"succeeded","isError":"true"}"#),
            GateState::Failed
        );
        assert_eq!(to("not json"), GateState::Rejected);
        assert_eq!(to("[1]"), GateState::Rejected);
    }

    #[test]
    fn a_body_with_change_request_id_is_a_notice() {
        let n = classify(
            r#"{"changeRequestId":"CHG0030001","changeRequestUrl":"https://x/y","changeComments":"created","configResult":{"message":""}}"#,
        );
        let CallbackBody::Notice(cr) = n else {
            panic!("not a notice")
        };
        assert_eq!(cr.number.as_deref(), Some("CHG0030001"));
        assert_eq!(cr.url.as_deref(), Some("https://x/y"));
        assert_eq!(cr.comments.as_deref(), Some("created"));
    }
}
