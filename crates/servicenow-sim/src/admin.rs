//! The simulator's admin API under `/__sim/` (no authentication, JSON in and out). It mirrors
//! the [`super::SimHandle`] methods for the demo's curl lines and pipeline dry-runs; see the
//! module documentation of [`super`] for the list.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;

use super::callbacks::{self, Delivered};
use super::faults::FAULT_KEYS;
use super::model::{Decision, ModelError};
use super::{Fault, Shared};

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/__sim")
            .route("/changes", web::get().to(list_changes))
            .route("/changes/{number}", web::get().to(get_change))
            .route("/changes/{number}/{action}", web::post().to(change_action))
            .route("/faults", web::get().to(list_faults))
            .route("/faults", web::post().to(add_fault))
            .route("/faults", web::delete().to(clear_faults))
            .route("/callbacks", web::get().to(list_callbacks))
            .route("/callbacks", web::post().to(set_callbacks))
            .route("/requests", web::get().to(list_requests))
            .route("/requests", web::delete().to(clear_requests))
            .route("/artifacts", web::get().to(list_artifacts))
            .route("/controlled-stages", web::post().to(set_controlled_stages))
            .route("/known-pipelines", web::post().to(set_known_pipelines))
            .route("/tasks", web::get().to(list_tasks))
            .route("/events", web::get().to(list_events))
            .route("/invalid-steps", web::post().to(set_invalid_steps))
            .default_service(web::to(unknown)),
    );
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ActionBody {
    comments: Option<String>,
    state: Option<String>,
    planned_start_date: Option<String>,
    planned_end_date: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct DropBody {
    #[serde(default)]
    drop: bool,
}

#[derive(Debug, Default, Deserialize)]
struct StagesBody {
    /// `null` (or absent): every stage is under change control.
    stages: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
struct PipelinesBody {
    #[serde(default)]
    pipelines: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
struct StepsBody {
    #[serde(default)]
    invalid: Vec<String>,
}

async fn list_changes(data: web::Data<Shared>) -> HttpResponse {
    HttpResponse::Ok().json(data.with_model(|m| m.snapshot()))
}

async fn get_change(data: web::Data<Shared>, path: web::Path<String>) -> HttpResponse {
    let number = path.into_inner();
    match data.with_model(|m| m.find(&number).map(|c| m.record_of(c))) {
        Some(record) => HttpResponse::Ok().json(record),
        None => not_found(&number),
    }
}

/// `POST /__sim/changes/{number|latest}/{approve|reject|cancel|error|notice|state}`.
async fn change_action(
    data: web::Data<Shared>,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> HttpResponse {
    let shared = data.into_inner();
    let (number, action) = path.into_inner();
    let body: ActionBody = match parse_body(&body) {
        Ok(body) => body,
        Err(message) => return error(StatusCode::BAD_REQUEST, "invalid_json", &message),
    };
    let outcome = if let Some(decision) = Decision::parse(&action) {
        let comments = body
            .comments
            .unwrap_or_else(|| decision.default_comments().to_string());
        callbacks::decide(&shared, &number, decision, &comments).await
    } else if action == "notice" {
        callbacks::notice(&shared, &number).await
    } else if action == "state" {
        set_state(&shared, &number, body)
    } else {
        return error(
            StatusCode::NOT_FOUND,
            "unknown_action",
            &format!(
                "unknown action {action:?}: use approve, reject, cancel, error, notice or state"
            ),
        );
    };
    match outcome {
        Ok(done) => HttpResponse::Ok().json(json!({
            "number": done.number,
            "state": done.state.name(),
            "callbackStatus": done.status,
        })),
        Err(ModelError::NotFound(number)) => not_found(&number),
        Err(ModelError::Invalid(message)) => error(StatusCode::BAD_REQUEST, "invalid", &message),
    }
}

fn set_state(
    shared: &Arc<Shared>,
    number: &str,
    body: ActionBody,
) -> Result<Delivered, ModelError> {
    let state = body
        .state
        .ok_or_else(|| ModelError::Invalid("state is required".into()))?;
    let (number, state) = shared.with_model(|m| {
        m.set_state(
            number,
            &state,
            body.planned_start_date.as_deref(),
            body.planned_end_date.as_deref(),
        )
    })?;
    Ok(Delivered {
        number,
        state,
        status: None,
    })
}

async fn list_faults(data: web::Data<Shared>) -> HttpResponse {
    HttpResponse::Ok().json(json!({"faults": data.with_model(|m| m.faults.list())}))
}

async fn add_fault(data: web::Data<Shared>, body: web::Bytes) -> HttpResponse {
    let fault: Fault = match serde_json::from_slice(&body) {
        Ok(fault) => fault,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_json", &e.to_string()),
    };
    if fault.endpoint != "*" && !FAULT_KEYS.contains(&fault.endpoint.as_str()) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_endpoint",
            &format!("endpoint must be \"*\" or one of {}", FAULT_KEYS.join(", ")),
        );
    }
    if !(400..=599).contains(&fault.status) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_status",
            "status must be an error status (400-599)",
        );
    }
    let faults = data.with_model(|m| {
        m.faults.inject(fault);
        m.faults.list()
    });
    HttpResponse::Ok().json(json!({ "faults": faults }))
}

async fn clear_faults(data: web::Data<Shared>) -> HttpResponse {
    data.with_model(|m| m.faults.clear());
    HttpResponse::Ok().json(json!({"faults": []}))
}

async fn list_callbacks(data: web::Data<Shared>) -> HttpResponse {
    let (drop, callbacks) = data.with_model(|m| (m.drop_callbacks, m.callbacks()));
    HttpResponse::Ok().json(json!({"drop": drop, "callbacks": callbacks}))
}

async fn set_callbacks(data: web::Data<Shared>, body: web::Bytes) -> HttpResponse {
    let body: DropBody = match parse_body(&body) {
        Ok(body) => body,
        Err(message) => return error(StatusCode::BAD_REQUEST, "invalid_json", &message),
    };
    data.with_model(|m| m.drop_callbacks = body.drop);
    HttpResponse::Ok().json(json!({"drop": body.drop}))
}

async fn list_requests(data: web::Data<Shared>) -> HttpResponse {
    HttpResponse::Ok().json(data.with_model(|m| m.requests()))
}

async fn list_artifacts(data: web::Data<Shared>) -> HttpResponse {
    let (versions, packages) =
        data.with_model(|m| (m.artifacts.versions(), m.artifacts.packages()));
    HttpResponse::Ok().json(json!({"artifactVersions": versions, "packages": packages}))
}

async fn clear_requests(data: web::Data<Shared>) -> HttpResponse {
    data.with_model(|m| m.clear_requests());
    HttpResponse::NoContent().finish()
}

async fn set_controlled_stages(data: web::Data<Shared>, body: web::Bytes) -> HttpResponse {
    let body: StagesBody = match parse_body(&body) {
        Ok(body) => body,
        Err(message) => return error(StatusCode::BAD_REQUEST, "invalid_json", &message),
    };
    data.with_model(|m| m.controlled_stages = body.stages.clone());
    HttpResponse::Ok().json(json!({"stages": body.stages}))
}

async fn set_known_pipelines(data: web::Data<Shared>, body: web::Bytes) -> HttpResponse {
    let body: PipelinesBody = match parse_body(&body) {
        Ok(body) => body,
        Err(message) => return error(StatusCode::BAD_REQUEST, "invalid_json", &message),
    };
    data.with_model(|m| m.known_pipelines = body.pipelines.clone());
    HttpResponse::Ok().json(json!({"pipelines": body.pipelines}))
}

async fn list_tasks(data: web::Data<Shared>) -> HttpResponse {
    let (known, tasks) = data.with_model(|m| (m.known_pipelines.clone(), m.tasks()));
    HttpResponse::Ok().json(json!({"knownPipelines": known, "tasks": tasks}))
}

async fn list_events(data: web::Data<Shared>) -> HttpResponse {
    HttpResponse::Ok().json(data.with_model(|m| m.events()))
}

async fn set_invalid_steps(data: web::Data<Shared>, body: web::Bytes) -> HttpResponse {
    let body: StepsBody = match parse_body(&body) {
        Ok(body) => body,
        Err(message) => return error(StatusCode::BAD_REQUEST, "invalid_json", &message),
    };
    data.with_model(|m| m.invalid_steps = body.invalid.clone());
    HttpResponse::Ok().json(json!({"invalid": body.invalid}))
}

async fn unknown() -> HttpResponse {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such simulator admin endpoint",
    )
}

/// An optional JSON body: empty means all defaults. Any content type is taken (curl's `-d`
/// sends a form type).
fn parse_body<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| format!("invalid JSON body: {e}"))
}

fn not_found(number: &str) -> HttpResponse {
    error(
        StatusCode::NOT_FOUND,
        "change_not_found",
        &format!("change request {number} not found"),
    )
}

fn error(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({"error": {"code": code, "message": message}}))
}
