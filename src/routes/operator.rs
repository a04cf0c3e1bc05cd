//! Operator endpoints: resume or abort a held stage by hand, with a reason (SPEC §3).
use actix_web::{web, HttpRequest, HttpResponse};

use super::body::json_body;
use super::gates::{gate_json, parse_gate_id};
use super::ApiError;
use crate::domain::request::Fields;
use crate::domain::{FieldError, GateState};
use crate::startup::AppState;
use crate::store::{Transition, TransitionOutcome};

const MAX_REASON: usize = 1000;

async fn act(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
    to: GateState,
) -> Result<HttpResponse, ApiError> {
    let action = if to == GateState::Resumed {
        "resume gates"
    } else {
        "abort gates"
    };
    let who = state.tokens.operator(&req, action)?;
    let id = parse_gate_id(&path)?;
    let body = json_body(&req, payload, state.max_body).await?;
    let obj = body
        .as_object()
        .ok_or_else(|| FieldError::new("body", "must be a JSON object"))?;
    let reason = Fields(obj).string("reason", MAX_REASON)?.ok_or_else(|| {
        FieldError::new(
            "reason",
            "is required: say why the stage is released or stopped",
        )
    })?;
    let (verb, proceed) = if to == GateState::Resumed {
        ("resumed", true)
    } else {
        ("aborted", false)
    };
    let outcome = state
        .decider
        .decide(Transition {
            gate_id: id,
            to,
            proceed: Some(proceed),
            message: format!("{verb} by {}: {reason}", who.name),
            actor: format!("operator:{}", who.name),
            event_kind: verb,
            change_request: None,
            outbox: Vec::new(),
            timers: Default::default(),
        })
        .await?;
    match outcome {
        TransitionOutcome::Applied(gate) => {
            tracing::info!(gate_id = %gate.id, operator = %who.name, %reason, "gate {verb} by an operator");
            Ok(gate_json(&gate))
        }
        TransitionOutcome::Conflict(gate) => Err(ApiError::Conflict(format!(
            "the gate is already {}; it cannot be {verb}",
            gate.state
        ))),
        TransitionOutcome::NotFound => Err(ApiError::NotFound(format!("no gate {id}"))),
    }
}

#[tracing::instrument(skip_all, fields(gate_id = %path))]
pub async fn resume(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    act(req, path, payload, state, GateState::Resumed).await
}

#[tracing::instrument(skip_all, fields(gate_id = %path))]
pub async fn abort(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    act(req, path, payload, state, GateState::Aborted).await
}
