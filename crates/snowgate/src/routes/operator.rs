//! Operator endpoints: resume or abort a held stage by hand, with a reason (SPEC §3).
use actix_web::{web, HttpRequest, HttpResponse};

use super::auth::{Operator, Pipeline, Principal};
use super::body::json_body;
use super::gates::{gate_json, parse_gate_id};
use super::ApiError;
use crate::configuration::{AutoTransition, GateMode};
use crate::domain::request::Fields;
use crate::domain::{FieldError, GateState};
use crate::state::AppState;
use crate::store::{work_note, Completion, NewOutbox, OutboxKind, Transition, TransitionOutcome};
use serde_json::json;

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
    let (verb, transition) = operator_decision(id, to, &who.name, &reason);
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

/// The decision an operator makes by hand (API and status page alike): `resumed` proceeds,
/// `aborted` stops; the operator and the reason go into the message and the audit trail.
pub fn operator_decision(
    id: uuid::Uuid,
    to: GateState,
    operator: &str,
    reason: &str,
) -> (&'static str, Transition) {
    let (verb, proceed) = if to == GateState::Resumed {
        ("resumed", true)
    } else {
        ("aborted", false)
    };
    let t = Transition {
        gate_id: id,
        to,
        proceed: Some(proceed),
        message: format!("{verb} by {operator}: {reason}"),
        actor: format!("operator:{operator}"),
        event_kind: verb,
        change_request: None,
        outbox: Vec::new(),
        timers: Default::default(),
    };
    (verb, t)
}

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
    let outbox = completion_actions(&state, &gate, result);
    match state
        .store
        .complete_gate(
            id,
            result.to_string(),
            format!("pipeline:{}", who.name),
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

fn completion_actions(
    state: &AppState,
    gate: &crate::domain::Gate,
    result: &str,
) -> Vec<NewOutbox> {
    let mut out = Vec::new();
    if state.outbox.stage_events && gate.spec.mode == GateMode::Devops {
        out.push(NewOutbox {
            kind: OutboxKind::StageEvent,
            payload: json!({ "result": result }),
        });
    }
    let build = gate.spec.build_url.as_deref().unwrap_or(&gate.spec.job_url);
    out.extend(work_note(
        gate,
        &format!(
            "stage {} finished: {result} ({build})",
            gate.spec.stage_name
        ),
    ));
    let created = gate
        .change_request
        .as_ref()
        .is_some_and(|c| c.created_by_snowgate && c.sys_id.is_some());
    if let (Some(change), true) = (&state.change, created) {
        if let (true, Some(to)) = (
            change.auto_transitions(&gate.spec),
            change.settings.auto_transition,
        ) {
            let close = json!({
                "close_code": if result == "success" { "successful" } else { "unsuccessful" },
                "close_notes": format!(
                    "Jenkins stage {} of build {} finished: {result} ({build})",
                    gate.spec.stage_name, gate.spec.build_number
                ),
            });
            let mut review = close.clone();
            review["state"] = json!("review");
            let mut steps = vec![review];
            if to == AutoTransition::Closed {
                let mut closed = close;
                closed["state"] = json!("closed");
                steps.push(closed);
            }
            let target = match to {
                AutoTransition::Review => "review",
                AutoTransition::Closed => "closed",
            };
            out.push(NewOutbox {
                kind: OutboxKind::ChangeUpdate,
                payload: json!({"steps": steps, "what": format!("move to {target}")}),
            });
        }
    }
    out
}
