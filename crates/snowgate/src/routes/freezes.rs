//! Change freezes: declare (`POST`, operator), list (`GET`, pipeline or operator), delete
//! (`DELETE`, operator). Deleting one releases the approvals it held at once.
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;

use super::auth::{Operator, Pipeline};
use super::body::json_body;
use super::ApiError;
use crate::api::{FreezeList, FreezeView, FREEZES_PATH};
use crate::domain::freeze::Freeze;
use crate::state::AppState;

/// Held approvals listed with the freezes: more than any freeze holds at once.
const MAX_HOLDS: u32 = 10_000;

#[utoipa::path(post, path = "/api/v1/freezes", operation_id = "declareFreeze", tag = "freezes",
    security(("operator" = [])), request_body = crate::openapi::DeclareFreeze,
    responses(
        (status = 201, description = "Declared", body = crate::api::FreezeView,
            headers(("Location" = String, description = "The freeze's path"))),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::Forbidden),
        crate::openapi::BodyErrors,
        (status = 503, response = crate::openapi::Unavailable),
    ))]
#[tracing::instrument(skip_all)]
pub async fn declare(
    Operator(who): Operator,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = json_body(&req, payload, state.max_body).await?;
    let freeze = Freeze::parse(&body, uuid::Uuid::new_v4().to_string(), &who.name)?;
    state.store.add_freeze(&freeze).await?;
    state.decider.freezes().invalidate();
    tracing::info!(freeze = %freeze.name, start = %freeze.start, end = %freeze.end, operator = %who.name, "change freeze declared");
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("{FREEZES_PATH}/{}", freeze.id)))
        .json(FreezeView {
            active: freeze.is_active(Utc::now()),
            freeze,
            held_gates: Vec::new(),
        }))
}

#[utoipa::path(get, path = "/api/v1/freezes", operation_id = "listFreezes", tag = "freezes", security(("pipeline" = []), ("operator" = [])),
    responses(
        (status = 200, description = "The freezes not over, the earliest first", body = crate::api::FreezeList),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 503, response = crate::openapi::Unavailable),
    ))]
#[tracing::instrument(skip_all)]
pub async fn list(_caller: Pipeline, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(freeze_list(&state).await?))
}

/// The freezes not over, each with the gates it holds.
pub async fn freeze_list(state: &AppState) -> Result<FreezeList, crate::store::StoreError> {
    let holds = state.store.holds(i64::MAX, MAX_HOLDS).await?;
    let now = Utc::now();
    let freezes = state
        .decider
        .freezes()
        .list()
        .await?
        .into_iter()
        .map(|freeze| FreezeView {
            active: freeze.is_active(now),
            held_gates: holds
                .iter()
                .filter(|h| h.freeze_id == freeze.id)
                .map(|h| h.gate_id)
                .collect(),
            freeze,
        })
        .collect();
    Ok(FreezeList { freezes })
}

#[utoipa::path(delete, path = "/api/v1/freezes/{id}", operation_id = "deleteFreeze", tag = "freezes",
    description = "Ends a freeze declared through the API; the approvals it held are released at once",
    security(("operator" = [])), params(("id" = String, Path, description = "The freeze's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, response = crate::openapi::NotFound),
        (status = 409, description = "The freeze is declared in the configuration file", body = crate::api::ErrorBody),
        (status = 503, response = crate::openapi::Unavailable),
    ))]
#[tracing::instrument(skip_all, fields(freeze_id = %path))]
pub async fn delete(
    Operator(who): Operator,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    if state.decider.freezes().is_configured(&id) {
        return Err(ApiError::Conflict(format!(
            "freeze {id} is declared in the configuration file (freezes); remove it there"
        )));
    }
    if !state.store.delete_freeze(&id).await? {
        return Err(ApiError::NotFound(format!(
            "no freeze `{}`",
            id.chars().take(64).collect::<String>()
        )));
    }
    state.decider.freezes().invalidate();
    // The approvals it held are due now.
    state.decider.wakeups().timers.notify_one();
    tracing::info!(freeze_id = %id, operator = %who.name, "change freeze deleted");
    Ok(HttpResponse::NoContent().finish())
}
