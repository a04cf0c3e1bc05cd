//! Pipeline endpoints: open, read, wait for, list gates and read their audit trail.
use std::collections::HashMap;
use std::time::Duration;

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};
use uuid::Uuid;

use super::auth::Pipeline;
use super::body::json_body;
use super::ApiError;
use crate::api::{gate_path, EventList, EventView, GateList};
use crate::configuration::GateMode;
use crate::domain::{CallbackToken, FieldError, Gate, GateSpec, GateState};
use crate::state::AppState;
use crate::waiters::Decided;

/// How long `POST /gates` waits for the first registration attempt before answering with
/// the gate still `registering` (the attempt goes on, and retries come from the outbox).
const FIRST_ATTEMPT_WAIT: Duration = Duration::from_secs(5);
pub const DEFAULT_WAIT_SECS: u64 = 30;
pub const MAX_WAIT_SECS: u64 = 300;
pub const DEFAULT_LIST_LIMIT: u32 = 100;
pub const MAX_LIST_LIMIT: u32 = 1000;

pub fn gate_json(gate: &Gate) -> HttpResponse {
    HttpResponse::Ok().json(gate.view())
}

pub fn query_map(req: &HttpRequest) -> HashMap<String, String> {
    url::form_urlencoded::parse(req.query_string().as_bytes())
        .into_owned()
        .collect()
}

pub fn parse_gate_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| {
        ApiError::NotFound(format!(
            "no gate `{}`",
            raw.chars().take(64).collect::<String>()
        ))
    })
}

pub async fn load_gate(state: &AppState, raw: &str) -> Result<Gate, ApiError> {
    let id = parse_gate_id(raw)?;
    state
        .store
        .gate(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no gate {id}")))
}

/// The gate a `POST /gates` body asks for, checked against what this snowgate can do: change
/// mode needs the Change API's credentials, an `input` a Jenkins snowgate may call.
fn checked_spec(body: &serde_json::Value, state: &AppState) -> Result<GateSpec, FieldError> {
    let mut spec = GateSpec::parse_with_default(body, state.default_mode)?;
    if spec.mode == GateMode::Change {
        let change = state.change.as_ref().ok_or_else(|| {
            FieldError::new(
                "mode",
                "change mode needs servicenow.auth `basic` or `oauth` (the Change API does not take the DevOps token)",
            )
        })?;
        spec.work_notes = change.settings.work_notes;
    }
    spec.supersede = state.supersede.applies(&spec);
    if spec.input_id.is_some() {
        // snowgate will call Jenkins for this gate: only where its credentials may go.
        let jenkins = state.jenkins.as_ref().ok_or_else(|| {
            FieldError::new(
                "input",
                "releasing a Jenkins input needs the jenkins section of the configuration",
            )
        })?;
        let build_url = spec
            .build_url
            .as_deref()
            .ok_or_else(|| FieldError::new("buildUrl", "is required when input is given"))?;
        jenkins
            .resolve(build_url)
            .map_err(|why| FieldError::new("buildUrl", why))?;
    }
    Ok(spec)
}

#[utoipa::path(post, path = "/api/v1/gates", operation_id = "openGate", tag = "gates", security(("pipeline" = []), ("operator" = [])),
    request_body = crate::openapi::OpenGate,
    responses(
        (status = 201, description = "Opened; registration with ServiceNow has begun (the gate is usually `pending` or `not_controlled` by the answer)",
            body = crate::api::GateView, headers(("Location" = String, description = "The gate's path"))),
        (status = 200, description = "The same job, build and stage had a gate already: that gate",
            body = crate::api::GateView, headers(("Location" = String, description = "The gate's path"))),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        crate::openapi::BodyErrors,
        (status = 503, response = crate::openapi::Unavailable),
    ))]
#[tracing::instrument(skip_all)]
pub async fn open(
    _caller: Pipeline,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = json_body(&req, payload, state.max_body).await?;
    let spec = checked_spec(&body, &state)?;
    let opened = state
        .store
        .open_gate(
            spec,
            CallbackToken::generate(),
            state.outbox.claim_duration(),
        )
        .await?;
    let mut gate = opened.gate;
    if gate.spec.supersede {
        // Also when the gate existed: a retried open finishes what a failed one began.
        crate::supersede::supersede_older(
            &*state.store,
            &state.decider,
            state.change.as_deref(),
            &gate,
        )
        .await?;
    }
    if let Some(item) = opened.register_item {
        tracing::info!(gate_id = %gate.id, job = %gate.spec.job_url, build = %gate.spec.build_number, stage = %gate.spec.stage_name, "gate opened");
        // The first registration attempt runs now, so the answer usually already says
        // `pending` or `not_controlled`; it is a task so a slow ServiceNow cannot hold the reply.
        let outbox = state.outbox.clone();
        let attempt = tokio::spawn(async move { outbox.attempt(item).await });
        if tokio::time::timeout(FIRST_ATTEMPT_WAIT, attempt)
            .await
            .is_ok()
        {
            if let Some(g) = state.store.gate(gate.id).await? {
                gate = g;
            }
        }
    }
    let status = if opened.created {
        actix_web::http::StatusCode::CREATED
    } else {
        actix_web::http::StatusCode::OK
    };
    Ok(HttpResponse::build(status)
        .insert_header(("Location", gate_path(gate.id, None)))
        .json(gate.view()))
}

#[utoipa::path(get, path = "/api/v1/gates/{id}", operation_id = "getGate", tag = "gates", security(("pipeline" = []), ("operator" = [])), params(("id" = String, Path, format = Uuid, description = "The gate's id")),
    responses(
        (status = 200, description = "The gate", body = crate::api::GateView),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 404, response = crate::openapi::NotFound),
        (status = 503, response = crate::openapi::Unavailable),
    ))]
#[tracing::instrument(skip_all, fields(gate_id = %path))]
pub async fn get(
    _caller: Pipeline,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Ok(gate_json(&load_gate(&state, &path).await?))
}

/// The answer of a long-poll released by a decision. When the decision came by HTTP, the time
/// since its request arrived (the decision latency, seen by the server) goes into the
/// metrics and a W3C `Server-Timing` header.
fn released(state: &AppState, d: &Decided) -> HttpResponse {
    let mut resp = gate_json(&d.gate);
    if let Some(received) = d.received {
        let secs = received.elapsed().as_secs_f64();
        state.metrics.release_latency.observe(secs);
        let timing = format!("decision;dur={:.3}", secs * 1000.0);
        if let Ok(v) = HeaderValue::from_str(&timing) {
            resp.headers_mut()
                .insert(HeaderName::from_static("server-timing"), v);
        }
    }
    resp
}

/// The long-poll's `timeout` query parameter, in seconds.
fn wait_seconds(req: &HttpRequest) -> Result<u64, ApiError> {
    match query_map(req).get("timeout") {
        None => Ok(DEFAULT_WAIT_SECS),
        Some(t) => t
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|s| *s <= MAX_WAIT_SECS)
            .ok_or_else(|| {
                ApiError::InvalidField(crate::domain::FieldError::new(
                    "timeout",
                    format!("must be a whole number of seconds from 0 to {MAX_WAIT_SECS}"),
                ))
            }),
    }
}

/// Long-poll: answers as soon as the gate is terminal, else at the timeout (or at shutdown)
/// with the gate as it is. A per-gate subscription wakes it; there is no polling loop. While
/// it waits it holds only the subscription and a timer (the gate is read again at the end),
/// so 10,000 open long-polls stay small (no span of its own either: the request's span and the
/// access log line, which carries the gate id in the path, identify it).
#[utoipa::path(get, path = "/api/v1/gates/{id}/wait", operation_id = "waitForGate", tag = "gates", security(("pipeline" = []), ("operator" = [])),
    params(
        ("id" = String, Path, format = Uuid, description = "The gate's id"),
        ("timeout" = Option<u64>, Query, minimum = 0, maximum = 300,
            description = "Seconds to wait for a decision (default 30)"),
    ),
    responses(
        (status = 200, description = "The gate once decided, or as it is at the timeout (or at shutdown)", body = crate::api::GateView,
            headers(("Server-Timing" = String, description = "`decision;dur=<ms>` when an HTTP decision released the wait"))),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 404, response = crate::openapi::NotFound),
        (status = 503, response = crate::openapi::Unavailable),
    ))]
pub async fn wait(
    _caller: Pipeline,
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let secs = wait_seconds(&req)?;
    let id = parse_gate_id(&path.into_inner())?;
    // Subscribe before reading, so a decision committed in between still wakes us.
    let mut sub = state.waiters.subscribe(id);
    {
        let gate = state
            .store
            .gate(id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no gate {id}")))?;
        if gate.state.is_terminal() || secs == 0 || state.waiters.shutdown().is_set() {
            return Ok(gate_json(&gate));
        }
    }
    tokio::select! {
        decided = sub.decided() => {
            if let Some(d) = decided {
                return Ok(released(&state, &d));
            }
        }
        _ = tokio::time::sleep(Duration::from_secs(secs)) => {}
        _ = state.waiters.shutdown().wait() => {}
    }
    drop(sub);
    let gate = state
        .store
        .gate(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no gate {id}")))?;
    Ok(gate_json(&gate))
}

#[utoipa::path(get, path = "/api/v1/gates", operation_id = "listGates", tag = "gates", security(("pipeline" = []), ("operator" = [])),
    params(
        ("state" = Option<crate::domain::GateState>, Query, description = "Only gates in this state"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "At most this many, the newest first (default 100)"),
    ),
    responses(
        (status = 200, description = "The gates, the newest first", body = crate::api::GateList),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 503, response = crate::openapi::Unavailable),
    ))]
#[tracing::instrument(skip_all)]
pub async fn list(
    _caller: Pipeline,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let q = query_map(&req);
    let filter = match q.get("state") {
        None => None,
        Some(s) => Some(GateState::parse(s).ok_or_else(|| {
            ApiError::InvalidField(crate::domain::FieldError::new(
                "state",
                format!(
                    "`{}` is not a gate state",
                    s.chars().take(40).collect::<String>()
                ),
            ))
        })?),
    };
    let limit = match q.get("limit") {
        None => DEFAULT_LIST_LIMIT,
        Some(l) => l
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_LIST_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::InvalidField(crate::domain::FieldError::new(
                    "limit",
                    format!("must be a number from 1 to {MAX_LIST_LIMIT}"),
                ))
            })?,
    };
    let gates = state.store.list_gates(filter, limit).await?;
    let gates: Vec<_> = gates.iter().map(Gate::view).collect();
    Ok(HttpResponse::Ok().json(GateList {
        count: gates.len(),
        gates,
    }))
}

#[utoipa::path(get, path = "/api/v1/gates/{id}/events", operation_id = "gateEvents", tag = "gates", security(("pipeline" = []), ("operator" = [])), params(("id" = String, Path, format = Uuid, description = "The gate's id")),
    responses(
        (status = 200, description = "The gate's audit trail, the oldest first", body = crate::api::EventList),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 404, response = crate::openapi::NotFound),
        (status = 503, response = crate::openapi::Unavailable),
    ))]
#[tracing::instrument(skip_all, fields(gate_id = %path))]
pub async fn events(
    _caller: Pipeline,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let gate = load_gate(&state, &path).await?;
    let events = state.store.events(gate.id).await?;
    Ok(HttpResponse::Ok().json(EventList {
        gate_id: gate.id,
        events: events.iter().map(EventView::from).collect(),
    }))
}
