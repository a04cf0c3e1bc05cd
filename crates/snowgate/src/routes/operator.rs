//! Operator endpoints: resume or abort a held stage by hand, with a reason.
use actix_web::{web, HttpRequest, HttpResponse};

use super::auth::{Operator, Pipeline, Principal};
use super::body::json_body;
use super::gates::{gate_json, parse_gate_id};
use super::ApiError;
use crate::decisions::completion_actions;
use crate::domain::gate::Actor;
use crate::domain::request::Fields;
use crate::domain::{FieldError, GateState};
use crate::state::AppState;
use crate::store::{Completion, TransitionOutcome};

const MAX_REASON: usize = 1000;

async fn act(
    who: Principal,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
    to: GateState,
) -> Result<HttpResponse, ApiError> {
    let received = std::time::Instant::now();
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
    let (verb, transition) = state
        .decider
        .operator_decision(id, to, &who.name, &reason)
        .await?;
    let outcome = state
        .decider
        .decide_received(transition, Some(received))
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

#[utoipa::path(post, path = "/api/v1/gates/{id}/resume", operation_id = "resumeGate", tag = "operator", description = "Resume a held stage (the gate becomes `resumed`, proceed true)",
    security(("operator" = [])), params(("id" = String, Path, format = Uuid, description = "The gate's id")), request_body = crate::openapi::OperatorDecision,
    responses(
        (status = 200, description = "The gate, decided", body = crate::api::GateView),
        crate::openapi::DecisionErrors,
        crate::openapi::BodyErrors,
    ))]
#[tracing::instrument(skip_all, fields(gate_id = %path))]
pub async fn resume(
    Operator(who): Operator,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    act(who, req, path, payload, state, GateState::Resumed).await
}

#[utoipa::path(post, path = "/api/v1/gates/{id}/abort", operation_id = "abortGate", tag = "operator", description = "Abort a held stage (the gate becomes `aborted`, proceed false)",
    security(("operator" = [])), params(("id" = String, Path, format = Uuid, description = "The gate's id")), request_body = crate::openapi::OperatorDecision,
    responses(
        (status = 200, description = "The gate, decided", body = crate::api::GateView),
        crate::openapi::DecisionErrors,
        crate::openapi::BodyErrors,
    ))]
#[tracing::instrument(skip_all, fields(gate_id = %path))]
pub async fn abort(
    Operator(who): Operator,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    act(who, req, path, payload, state, GateState::Aborted).await
}

/// `POST /api/v1/gates/{id}/complete` `{"result": "success"|"failure"}`: the stage finished.
/// In change mode this writes a work note and, for a standard change snowgate created with
/// `change.auto_transition`, moves the CR to Review or Closed; in DevOps mode it is recorded only.
#[utoipa::path(post, path = "/api/v1/gates/{id}/complete", operation_id = "completeStage", tag = "operator",
    security(("pipeline" = []), ("operator" = [])), params(("id" = String, Path, format = Uuid, description = "The gate's id")), request_body = crate::openapi::StageCompletion,
    responses(
        (status = 200, description = "Recorded (or the same result was recorded before)", body = crate::api::GateView),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 404, response = crate::openapi::NotFound),
        (status = 409, response = crate::openapi::Conflict),
        crate::openapi::BodyErrors,
        (status = 503, response = crate::openapi::Unavailable),
    ))]
#[tracing::instrument(skip_all, fields(gate_id = %path))]
pub async fn complete(
    Pipeline(who): Pipeline,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_gate_id(&path)?;
    let body = json_body(&req, payload, state.max_body).await?;
    let obj = body
        .as_object()
        .ok_or_else(|| FieldError::new("body", "must be a JSON object"))?;
    let result = match Fields(obj).string("result", 16)?.as_deref() {
        Some("success") => "success",
        Some("failure") => "failure",
        Some(other) => {
            return Err(FieldError::new(
                "result",
                format!("must be success or failure, not `{other}`"),
            )
            .into())
        }
        None => return Err(FieldError::new("result", "is required (success or failure)").into()),
    };
    let gate = state
        .store
        .gate(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no gate {id}")))?;
    let outbox = completion_actions(
        state.outbox.stage_events,
        state.change.as_deref(),
        &gate,
        result,
    );
    match state
        .store
        .complete_gate(
            id,
            result.to_string(),
            Actor::PipelineClient(who.name.clone()),
            outbox,
        )
        .await?
    {
        Completion::Recorded(_) => {
            state.decider.wakeups().outbox.notify_one();
            let gate = state.store.gate(id).await?.unwrap_or(gate);
            Ok(gate_json(&gate))
        }
        Completion::AlreadyCompleted { result: prev, gate } if prev == result => {
            Ok(gate_json(&gate))
        }
        Completion::AlreadyCompleted { result: prev, .. } => Err(ApiError::Conflict(format!(
            "the stage was already reported as {prev}"
        ))),
        Completion::NotDecided(g) => Err(ApiError::Conflict(format!(
            "the gate is still {}: a stage completes after its gate is decided",
            g.state
        ))),
        Completion::NotFound => Err(ApiError::NotFound(format!("no gate {id}"))),
    }
}
