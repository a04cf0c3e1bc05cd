//! ServiceNow pass-throughs of the pipeline API (README "HTTP API"), what the
//! plugin-shim's `snDevOpsStep`, `snDevOpsGetChangeNumber`, `snDevOpsUpdateChangeInfo`,
//! `snDevOpsArtifact` and `snDevOpsPackage` call. Any valid token may use them.
//!
//! | endpoint | ServiceNow (DevOps API) | answer |
//! |---|---|---|
//! | `POST /api/v1/step-mappings` | `POST …/orchestration/stepMapping?toolId=&toolType=jenkins` | `{"stepValid": bool}` |
//! | `GET /api/v1/change-info?…` | the gate's CR, else `GET …/orchestration/changeInfo?toolId=&toolType=jenkins&…` | [`change_info_view`] |
//! | `PUT /api/v1/change-info/{number}` | `PUT …/orchestration/changeInfo?changeRequestNumber=` | `{"updated": true, "result": …}` |
//! | `POST /api/v1/artifacts` | `POST …/devops/artifact/registration?orchestrationToolId=` | ServiceNow's `result` |
//! | `POST /api/v1/packages` | `POST …/devops/package/registration?orchestrationToolId=` | ServiceNow's `result` |
//!
//! Bad input is a 400 naming the field, and nothing is sent. ServiceNow's failures keep
//! ServiceNow's own message: unreachable, timed out, 5xx or 429 → 503/504/502
//! `servicenow_unavailable`; 401/403 → 502 `servicenow_refused`; 404 → 404
//! `servicenow_not_found`; other 4xx (and a 2xx whose result says `Error`) → 422
//! `servicenow_rejected` (ServiceNow refused what the pipeline sent: the same request fails
//! again, so it is the caller's error, not the gateway's); an unreadable answer → 502
//! `servicenow_bad_answer`.
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use serde_json::{json, Value};

use super::auth::Pipeline;
use super::body::json_body;
use super::gates::query_map;
use super::ApiError;
use crate::domain::passthrough::{
    change_info_query, change_request_number, gate_matches, registration_body, step_mapping_spec,
    update_fields,
};
use crate::domain::{FieldError, Gate};
use crate::servicenow::devops::ChangeInfo;
use crate::servicenow::passthrough::{change_info_of, ChangeInfoQuery, Registration};
use crate::servicenow::ServiceNowError;
use crate::state::AppState;
use crate::store::StoreError;

/// How many of the build's gates, the newest first, `GET /change-info` searches for the
/// stage's own CR.
const GATE_SEARCH_LIMIT: u32 = 1000;
/// The longest a pass-through waits for a slot under `servicenow.max_requests_per_second`
/// before answering 503 with `Retry-After`: well inside the shim's own request timeout.
const MAX_RATE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// What a pass-through can fail with: the API's own errors, or ServiceNow's.
#[derive(Debug, thiserror::Error)]
pub enum PassthroughError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("{}", .0.describe())]
    ServiceNow(#[from] ServiceNowError),
    /// `servicenow.max_requests_per_second` has no slot soon enough.
    #[error("servicenow.max_requests_per_second is reached; retry in {} s", .0.as_secs().max(1))]
    RateLimited(std::time::Duration),
}

/// Take a slot of the ServiceNow rate limit before a pass-through call.
async fn rate_limit(state: &AppState) -> Result<(), PassthroughError> {
    state
        .limiter
        .acquire_within(MAX_RATE_WAIT)
        .await
        .map_err(PassthroughError::RateLimited)
}

impl From<FieldError> for PassthroughError {
    fn from(e: FieldError) -> Self {
        PassthroughError::Api(ApiError::InvalidField(e))
    }
}

impl From<StoreError> for PassthroughError {
    fn from(e: StoreError) -> Self {
        PassthroughError::Api(ApiError::Store(e))
    }
}

/// Status and code for a ServiceNow failure (see the module comment).
fn servicenow_status(e: &ServiceNowError) -> (StatusCode, &'static str) {
    match e {
        ServiceNowError::Connect(_) => (StatusCode::SERVICE_UNAVAILABLE, "servicenow_unavailable"),
        ServiceNowError::Timeout => (StatusCode::GATEWAY_TIMEOUT, "servicenow_unavailable"),
        ServiceNowError::Decode(_) => (StatusCode::BAD_GATEWAY, "servicenow_bad_answer"),
        ServiceNowError::Redirect { .. } => (StatusCode::BAD_GATEWAY, "servicenow_redirect"),
        ServiceNowError::Status { status, .. } => match *status {
            429 | 503 => (StatusCode::SERVICE_UNAVAILABLE, "servicenow_unavailable"),
            s if s >= 500 => (StatusCode::BAD_GATEWAY, "servicenow_unavailable"),
            401 | 403 => (StatusCode::BAD_GATEWAY, "servicenow_refused"),
            404 => (StatusCode::NOT_FOUND, "servicenow_not_found"),
            _ => (StatusCode::UNPROCESSABLE_ENTITY, "servicenow_rejected"),
        },
    }
}

impl ResponseError for PassthroughError {
    fn status_code(&self) -> StatusCode {
        match self {
            PassthroughError::Api(e) => e.status_code(),
            PassthroughError::ServiceNow(e) => servicenow_status(e).0,
            PassthroughError::RateLimited(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            PassthroughError::Api(e) => e.error_response(),
            PassthroughError::RateLimited(wait) => HttpResponse::ServiceUnavailable()
                .insert_header(("Retry-After", wait.as_secs().max(1).to_string()))
                .json(json!({"error": {"code": "rate_limited", "message": self.to_string()}})),
            PassthroughError::ServiceNow(e) => {
                let (status, code) = servicenow_status(e);
                // ServiceNow's message is the useful part of the answer, so unlike other 5xx
                // bodies it is passed on; it never holds our credentials (they travel in a
                // header ServiceNow does not echo).
                let message = e.describe();
                tracing::warn!(code, error = %message, "ServiceNow pass-through failed");
                let mut resp = HttpResponse::build(status);
                if let Some(after) = e.retry_after() {
                    resp.insert_header(("Retry-After", after.as_secs().to_string()));
                }
                resp.json(json!({"error": {"code": code, "message": message}}))
            }
        }
    }
}

type Answer = Result<HttpResponse, PassthroughError>;

// ----------------------------------------------------------------------------------------------
// POST /api/v1/step-mappings

#[utoipa::path(post, path = "/api/v1/step-mappings", operation_id = "createStepMapping", tag = "servicenow",
    description = "ServiceNow's `POST …/orchestration/stepMapping`: creates and associates the stage's orchestration task",
    security(("pipeline" = []), ("operator" = [])), request_body = crate::openapi::StepMapping,
    responses(
        (status = 200, description = "ServiceNow's answer", body = crate::openapi::StepMappingAnswer),
        crate::openapi::PassthroughErrors,
        crate::openapi::BodyErrors,
    ))]
#[tracing::instrument(skip_all)]
pub async fn step_mapping(
    _caller: Pipeline,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Answer {
    let body = json_body(&req, payload, state.max_body).await?;
    let spec = step_mapping_spec(&body)?;
    rate_limit(&state).await?;
    let valid = state.outbox.servicenow.create_step_mapping(&spec).await?;
    Ok(HttpResponse::Ok().json(json!({ "stepValid": valid })))
}

// ----------------------------------------------------------------------------------------------
// GET /api/v1/change-info

/// The CR of the newest gate of that stage, when snowgate knows its number.
fn from_gate(gates: &[Gate], q: &ChangeInfoQuery) -> Option<ChangeInfo> {
    gates.iter().find_map(|g| {
        let cr = g.change_request.as_ref()?;
        let number = cr.number.clone()?;
        gate_matches(&g.spec, q).then(|| ChangeInfo {
            found: true,
            number: Some(number),
            sys_id: cr.sys_id.clone(),
            state: cr.state.clone(),
            state_is_name: cr
                .state
                .as_deref()
                .is_some_and(|s| s.trim().parse::<i64>().is_err()),
            url: cr.url.clone(),
            approvers: cr.approvers.clone(),
            assignment_group: cr.assignment_group.clone(),
            planned_start: cr.planned_start_date.clone(),
            planned_end: cr.planned_end_date.clone(),
        })
    })
}

/// The answer of `GET /change-info`: the CR in snowgate's words (`null` for what is not known),
/// `source` saying who answered, and from ServiceNow also its `result` as sent (type, phase,
/// priority, risk, …).
pub fn change_info_view(info: &ChangeInfo, source: &str, result: Option<Value>) -> Value {
    let mut v = json!({
        "changeFound": info.found,
        "number": info.number,
        "sysId": info.sys_id,
        "state": info.state,
        "url": info.url,
        "approvers": info.approvers,
        "assignmentGroup": info.assignment_group,
        "plannedStartDate": info.planned_start,
        "plannedEndDate": info.planned_end,
        "source": source,
    });
    if let Some(r) = result {
        v["result"] = r;
    }
    v
}

#[utoipa::path(get, path = "/api/v1/change-info", operation_id = "changeInfo", tag = "servicenow",
    description = "The stage's change request: its gate's, else ServiceNow's `GET …/orchestration/changeInfo`",
    security(("pipeline" = []), ("operator" = [])),
    params(
        ("buildNumber" = String, Query, max_length = 128, description = "The build number"),
        ("pipelineName" = Option<String>, Query, max_length = 255, description = "The full job name; required without projectName"),
        ("stageName" = Option<String>, Query, max_length = 160, description = "Required without projectName"),
        ("projectName" = Option<String>, Query, max_length = 255, description = "Freestyle and Maven projects"),
        ("branchName" = Option<String>, Query, max_length = 255),
    ),
    responses(
        (status = 200, description = "What is known of the change request", body = crate::openapi::ChangeInfoAnswer),
        crate::openapi::PassthroughErrors,
    ))]
#[tracing::instrument(skip_all)]
pub async fn change_info(
    _caller: Pipeline,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Answer {
    let q = change_info_query(&query_map(&req))?;
    // The store finds the build's gates by index; the pipeline (a Jenkins name, not the
    // job URL the store keeps) and the stage are matched here.
    let gates = state
        .store
        .gates_of_build(&q.build_number, GATE_SEARCH_LIMIT)
        .await?;
    if let Some(info) = from_gate(&gates, &q) {
        return Ok(HttpResponse::Ok().json(change_info_view(&info, "snowgate", None)));
    }
    rate_limit(&state).await?;
    let result = state.outbox.servicenow.change_info_by(&q).await?;
    let info = change_info_of(&result);
    Ok(HttpResponse::Ok().json(change_info_view(&info, "servicenow", Some(result))))
}

// ----------------------------------------------------------------------------------------------
// PUT /api/v1/change-info/{changeRequestNumber}

#[utoipa::path(put, path = "/api/v1/change-info/{number}", operation_id = "updateChangeInfo", tag = "servicenow",
    description = "ServiceNow's `PUT …/orchestration/changeInfo`: the change request's fields, plain or as `changeRequestDetails` (an object, or a string holding one)",
    security(("pipeline" = []), ("operator" = [])),
    params(("number" = String, Path, max_length = 40, pattern = "^[A-Za-z0-9]+$", description = "The change request's number, e.g. CHG0030001")),
    request_body = crate::openapi::ChangeRequestFields,
    responses(
        (status = 200, description = "Updated", body = crate::openapi::ChangeInfoUpdated),
        crate::openapi::PassthroughErrors,
        crate::openapi::BodyErrors,
    ))]
#[tracing::instrument(skip_all, fields(change = %path))]
pub async fn update_change_info(
    _caller: Pipeline,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Answer {
    let number = change_request_number(&path)?;
    let body = json_body(&req, payload, state.max_body).await?;
    let fields = update_fields(&body)?;
    check_field_names(&fields)?;
    rate_limit(&state).await?;
    let result = state
        .outbox
        .servicenow
        .update_change_info(&number, &fields)
        .await?;
    Ok(HttpResponse::Ok().json(json!({"updated": true, "result": result})))
}

/// The longest field name taken: ServiceNow's dictionary holds column names (`element`) of at
/// most 80 characters.
const MAX_FIELD_NAME: usize = 80;

/// The fields to update must be named as ServiceNow names columns (`short_description`,
/// `u_custom`): lowercase letters, digits and `_`. Anything else cannot be a field of the change
/// request, so it is refused here, naming it, rather than sent on for ServiceNow to refuse.
fn check_field_names(fields: &serde_json::Map<String, Value>) -> Result<(), FieldError> {
    let bad = fields.keys().find(|k| {
        k.is_empty()
            || k.len() > MAX_FIELD_NAME
            || !k
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    });
    match bad {
        None => Ok(()),
        Some(k) => Err(FieldError::new(
            "changeRequestDetails",
            format!(
                "`{}` is not a change request field name: 1 to {MAX_FIELD_NAME} lowercase letters, digits or _",
                k.chars().take(40).collect::<String>()
            ),
        )),
    }
}

// ----------------------------------------------------------------------------------------------
// POST /api/v1/artifacts, POST /api/v1/packages

async fn register(
    target: Registration,
    _caller: Pipeline,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Answer {
    let body = json_body(&req, payload, state.max_body).await?;
    let (body, artifact_tool) = registration_body(target, &body)?;
    rate_limit(&state).await?;
    let result = state
        .outbox
        .servicenow
        .register_artifacts(target, artifact_tool.as_deref(), &body)
        .await?;
    Ok(HttpResponse::Ok().json(result))
}

#[utoipa::path(post, path = "/api/v1/artifacts", operation_id = "registerArtifacts", tag = "servicenow",
    description = "ServiceNow's `POST …/devops/artifact/registration`",
    security(("pipeline" = []), ("operator" = [])), request_body = crate::openapi::Registration,
    responses(
        (status = 200, description = "ServiceNow's `result`", body = serde_json::Value),
        crate::openapi::PassthroughErrors,
        crate::openapi::BodyErrors,
    ))]
#[tracing::instrument(skip_all)]
pub async fn artifacts(
    caller: Pipeline,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Answer {
    register(Registration::Artifact, caller, req, payload, state).await
}

#[utoipa::path(post, path = "/api/v1/packages", operation_id = "registerPackage", tag = "servicenow",
    description = "ServiceNow's `POST …/devops/package/registration`",
    security(("pipeline" = []), ("operator" = [])), request_body = crate::openapi::Registration,
    responses(
        (status = 200, description = "ServiceNow's `result`", body = serde_json::Value),
        crate::openapi::PassthroughErrors,
        crate::openapi::BodyErrors,
    ))]
#[tracing::instrument(skip_all)]
pub async fn packages(
    caller: Pipeline,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Answer {
    register(Registration::Package, caller, req, payload, state).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servicenow_failures_map_to_gateway_statuses() {
        let st = |status| ServiceNowError::Status {
            status,
            message: "m".into(),
            retry_after: None,
        };
        assert_eq!(servicenow_status(&ServiceNowError::Timeout).0, 504);
        assert_eq!(
            servicenow_status(&ServiceNowError::Connect("x".into())).0,
            503
        );
        assert_eq!(
            servicenow_status(&st(500)),
            (StatusCode::BAD_GATEWAY, "servicenow_unavailable")
        );
        assert_eq!(servicenow_status(&st(429)).0, 503);
        assert_eq!(
            servicenow_status(&st(401)),
            (StatusCode::BAD_GATEWAY, "servicenow_refused")
        );
        assert_eq!(servicenow_status(&st(403)).1, "servicenow_refused");
        assert_eq!(
            servicenow_status(&st(404)),
            (StatusCode::NOT_FOUND, "servicenow_not_found")
        );
        assert_eq!(
            servicenow_status(&st(400)),
            (StatusCode::UNPROCESSABLE_ENTITY, "servicenow_rejected")
        );
    }
}
