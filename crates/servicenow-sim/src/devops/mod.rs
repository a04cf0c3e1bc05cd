//! The simulated sn_devops orchestration API (ServiceNow's DevOps REST API reference, sections
//! "DevOps - GET/POST/PUT /devops/orchestration/…"), served under `/api/sn_devops/devops/…`,
//! `/api/sn_devops/v1/devops/…` and `/api/sn_devops/v2/devops/…`.
//!
//! Every request is recorded first. Then, in the order a ServiceNow instance applies them:
//! injected faults, authentication (401), `Accept` (400 when missing, 406 when it excludes JSON),
//! `Content-Type` on POST/PUT (415), JSON syntax (400), `toolId` (400), the endpoint's own
//! required fields (400) and records (404).
//!
//! Modules: `change_control` (changeControl and the callback lookup), `change_info` (changeInfo
//! GET and PUT), `orchestration` (stepMapping, stage events, artifact and package
//! registration); this module routes and runs the checks every endpoint shares.

use std::sync::Arc;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};

use super::faults::status_message;
use super::protocol::{
    check_accept, is_authorized, is_json_content_type, parse_route, query_pairs, AcceptCheck,
    Endpoint, Route, RouteError,
};
use super::{RecordedRequest, Shared};

mod change_control;
mod change_info;
mod orchestration;
#[cfg(test)]
mod tests;

use change_control::{callback_get, change_control_get, change_control_post, change_control_put};
use change_info::{change_info_get, change_info_put};
use orchestration::{
    artifact_registration, check_registration_tools, package_registration, step_mapping_get,
    step_mapping_post, tool_event,
};

/// Fields `changeRequestDetails` may not set (ServiceNow's DevOps API reference, POST changeControl: "If these fields are
/// included in the request, the endpoint returns a 400 error").
const FORBIDDEN_CR_FIELDS: [&str; 5] =
    ["impact", "number", "risk", "risk_impact_analysis", "sys_id"];

/// Seed, GET changeInfo: `stageName` "Maximum length: 160".
const MAX_STAGE_NAME: usize = 160;

/// Entry point for everything outside `/__sim/`.
pub(crate) async fn entry(
    req: HttpRequest,
    body: web::Bytes,
    data: web::Data<Shared>,
) -> HttpResponse {
    let shared = data.into_inner();
    shared.with_model(|m| m.record_request(RecordedRequest::capture(&req, &body)));
    let path = req.path();
    if req.method() == actix_web::http::Method::GET
        && (path == "/nav_to.do" || path == "/change_request.do")
    {
        return change_page(&shared, req.query_string());
    }
    match parse_route(req.method().as_str(), path) {
        Ok(route) => serve(&shared, &req, &body, route).await,
        Err(RouteError::MethodNotAllowed) => platform_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method not Supported",
            &format!("{} is not supported for {path}", req.method()),
        ),
        Err(RouteError::UnknownResource) if path.starts_with("/api/") => platform_error(
            StatusCode::BAD_REQUEST,
            "Requested URI does not represent any resource",
            path,
        ),
        Err(RouteError::UnknownResource) => {
            platform_error(StatusCode::NOT_FOUND, "Not Found", path)
        }
    }
}

#[tracing::instrument(skip_all, fields(endpoint = route.endpoint.fault_key()))]
async fn serve(shared: &Arc<Shared>, req: &HttpRequest, body: &[u8], route: Route) -> HttpResponse {
    let endpoint = route.endpoint;
    let action = shared.with_model(|m| m.faults.on_call(endpoint.fault_key()));
    if !action.latency.is_zero() {
        tokio::time::sleep(action.latency).await;
    }
    if let Some(status) = action.fail_with {
        tracing::debug!(status, "injected fault");
        return fault_response(status);
    }

    let authorization: Vec<&str> = req
        .headers()
        .get_all(header::AUTHORIZATION)
        .filter_map(|v| v.to_str().ok())
        .collect();
    if !is_authorized(&authorization, route.version, &shared.settings) {
        return unauthorized();
    }

    if let Some(refused) = accept_refusal(req, &endpoint) {
        return refused;
    }
    let body = match json_body(req, body, &endpoint) {
        Ok(body) => body,
        Err(refused) => return *refused,
    };
    let query = Query::parse(req.query_string());
    if let Some(refused) = tool_refusal(shared, &query, &endpoint) {
        return refused;
    }
    dispatch(shared, endpoint, &query, body).unwrap_or_else(ApiError::into_response)
}

/// The 400 for a missing `Accept` (where the endpoint does not default to JSON) or the 406 for
/// one that excludes JSON.
fn accept_refusal(req: &HttpRequest, endpoint: &Endpoint) -> Option<HttpResponse> {
    match check_accept(header_value(req, header::ACCEPT)) {
        AcceptCheck::Json => {}
        AcceptCheck::Missing if endpoint.accept_defaults_to_json() => {}
        AcceptCheck::Missing => {
            return Some(sn_error(
                StatusCode::BAD_REQUEST,
                "The Accept header is required: this API only supports application/json",
            ))
        }
        AcceptCheck::NotAcceptable => {
            return Some(platform_error(
                StatusCode::NOT_ACCEPTABLE,
                "Not Acceptable",
                "This API only supports application/json responses",
            ))
        }
    }
    None
}

/// The JSON object body of an endpoint that has one (415 without a JSON `Content-Type`, 400 for
/// anything but an object); an empty object for the others.
fn json_body(
    req: &HttpRequest,
    body: &[u8],
    endpoint: &Endpoint,
) -> Result<Map<String, Value>, Box<HttpResponse>> {
    if !endpoint.has_body() {
        return Ok(Map::new());
    }
    if !is_json_content_type(header_value(req, header::CONTENT_TYPE)) {
        return Err(Box::new(platform_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported Media Type",
            "The request body must be sent with Content-Type: application/json",
        )));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Box::new(sn_error(
            StatusCode::BAD_REQUEST,
            "The request body must be a JSON object",
        ))),
        Err(e) => Err(Box::new(sn_error(
            StatusCode::BAD_REQUEST,
            &format!("The request body is not valid JSON: {e}"),
        ))),
    }
}

/// The 400 for a registration's unknown tools, or for a missing or unknown `toolId`.
fn tool_refusal(shared: &Arc<Shared>, query: &Query, endpoint: &Endpoint) -> Option<HttpResponse> {
    if endpoint.is_registration() {
        if let Err(message) = check_registration_tools(shared, query) {
            return Some(sn_error(StatusCode::BAD_REQUEST, &message));
        }
    } else {
        match query.nonempty("toolId") {
            None if endpoint.requires_tool_id() => {
                return Some(sn_error(
                    StatusCode::BAD_REQUEST,
                    "toolId is a required query parameter",
                ))
            }
            Some(tool_id) if tool_id != shared.settings.tool_id => {
                return Some(sn_error(
                    StatusCode::BAD_REQUEST,
                    &format!("Invalid toolId: no orchestration tool with sys_id {tool_id}"),
                ))
            }
            _ => {}
        }
    }
    None
}

/// Runs the endpoint's handler.
fn dispatch(
    shared: &Arc<Shared>,
    endpoint: Endpoint,
    query: &Query,
    body: Map<String, Value>,
) -> Answer {
    match endpoint {
        Endpoint::ChangeControlGet => change_control_get(shared, query),
        Endpoint::ChangeControlPost => change_control_post(shared, &body),
        Endpoint::ChangeControlPut { id } => change_control_put(shared, &id, &body),
        Endpoint::StepMappingGet => step_mapping_get(shared, query),
        Endpoint::StepMappingPost => step_mapping_post(shared, query, &body),
        Endpoint::ChangeInfoGet => change_info_get(shared, query),
        Endpoint::ChangeInfoPut { .. } => change_info_put(shared, query, body),
        Endpoint::CallbackGet => callback_get(shared, query),
        Endpoint::ToolEvent { capability } => tool_event(shared, query, &capability, body),
        Endpoint::ArtifactRegistration => artifact_registration(shared, query, &body),
        Endpoint::PackageRegistration => package_registration(shared, &body),
    }
}

type Answer = Result<HttpResponse, ApiError>;

/// What an endpoint can refuse a request with.
#[derive(Debug)]
enum ApiError {
    /// 400 in the sn_devops error shape.
    Invalid(String),
    /// 404 in the sn_devops error shape.
    NotFound(String),
    /// `PUT …/changeInfo`'s own failure shape (`updateStatus: "Error"`).
    Update(StatusCode, String),
}

impl ApiError {
    fn into_response(self) -> HttpResponse {
        match self {
            ApiError::Invalid(message) => sn_error(StatusCode::BAD_REQUEST, &message),
            ApiError::NotFound(message) => sn_error(StatusCode::NOT_FOUND, &message),
            ApiError::Update(status, message) => {
                HttpResponse::build(status).json(json!({"result": {
                    "status": "Error",
                    "updateStatus": "Error",
                    "message": message,
                    "details": {"errors": [{"message": message}]},
                }}))
            }
        }
    }
}

/// `/nav_to.do?uri=change_request.do?sys_id=…` and `/change_request.do?sys_id=…`: the CR a
/// notice or changeInfo links to, as JSON (no authentication: it is a demo convenience).
fn change_page(shared: &Arc<Shared>, raw_query: &str) -> HttpResponse {
    let query = Query::parse(raw_query);
    let sys_id = query
        .nonempty("sys_id")
        .map(str::to_string)
        .or_else(|| {
            query
                .nonempty("uri")
                .and_then(|uri| uri.split_once("sys_id=").map(|(_, id)| id.to_string()))
        })
        .unwrap_or_default();
    let record = shared.with_model(|m| m.find_by_sys_id(&sys_id).map(|c| m.record_of(c)));
    match record {
        Some(record) => HttpResponse::Ok().json(json!({"result": record})),
        None => platform_error(
            StatusCode::NOT_FOUND,
            "No Record found",
            "Record doesn't exist or ACL restricts the record retrieval",
        ),
    }
}

fn missing(parameter: &str) -> ApiError {
    ApiError::Invalid(format!("{parameter} is a required query parameter"))
}

/// Query pairs decoded once.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(raw: &str) -> Query {
        Query(query_pairs(raw))
    }

    /// The first value of `name`, if not empty.
    fn nonempty(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.trim().is_empty())
    }
}

fn header_value(req: &HttpRequest, name: header::HeaderName) -> Option<&str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

fn required_str(object: &Map<String, Value>, key: &str) -> Result<String, String> {
    match object.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        None | Some(Value::Null) | Some(Value::String(_)) => Err(format!("{key} is required")),
        Some(_) => Err(format!("{key} must be a string")),
    }
}

/// `{"result": …}` with a status.
fn success(status: StatusCode, result: Value) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "result": result }))
}

/// The sn_devops error shape (ServiceNow's DevOps API reference, PUT changeControl: `details.errors[].message`).
pub(crate) fn sn_error(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({"result": {
        "status": "error",
        "details": {"errors": [{"message": message}]},
    }}))
}

/// The platform's error shape: `{"error": {"message", "detail"}, "status": "failure"}`.
pub(crate) fn platform_error(status: StatusCode, message: &str, detail: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({
        "error": {"message": message, "detail": detail},
        "status": "failure",
    }))
}

fn unauthorized() -> HttpResponse {
    HttpResponse::Unauthorized()
        .insert_header((header::WWW_AUTHENTICATE, "BASIC realm=\"Service-now\""))
        .json(json!({
            "error": {
                "message": "User Not Authenticated",
                "detail": "Required to provide Auth information",
            },
            "status": "failure",
        }))
}

/// The answer to a call an injected fault fails.
fn fault_response(status: u16) -> HttpResponse {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match status {
        401 => unauthorized(),
        400 | 404 => sn_error(
            code,
            &format!(
                "{} (fault injected by the ServiceNow simulator)",
                status_message(status)
            ),
        ),
        _ => {
            let mut response = HttpResponse::build(code);
            if status == 429 {
                response.insert_header((header::RETRY_AFTER, "1"));
            }
            response.json(json!({
                "error": {
                    "message": status_message(status),
                    "detail": "Fault injected by the ServiceNow simulator",
                },
                "status": "failure",
            }))
        }
    }
}
