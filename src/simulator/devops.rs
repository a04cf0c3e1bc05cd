//! The simulated sn_devops orchestration API (seed `001_ca31e58e1be9e25d.txt`, sections
//! "DevOps - GET/POST/PUT /devops/orchestration/…"), served under `/api/sn_devops/devops/…`,
//! `/api/sn_devops/v1/devops/…` and `/api/sn_devops/v2/devops/…`.
//!
//! Every request is recorded first. Then, in the order a ServiceNow instance applies them:
//! injected faults, authentication (401), `Accept` (400 when missing, 406 when it excludes JSON),
//! `Content-Type` on POST/PUT (415), JSON syntax (400), `toolId` (400), the endpoint's own
//! required fields (400) and records (404).

use std::sync::Arc;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};

use super::artifacts::{parse_artifact_registration, parse_package_registration};
use super::callbacks;
use super::faults::status_message;
use super::model::{ChangeQuery, ModelError, Registered, Registration};
use super::protocol::{
    build_number_from_url, callback_token, check_accept, decode_again, is_authorized,
    is_json_content_type, parse_route, query_pairs, stage_after_hash, stage_from_query_value,
    AcceptCheck, Endpoint, Route, RouteError,
};
use super::{RecordedRequest, Shared};

/// Fields `changeRequestDetails` may not set (seed, POST changeControl: "If these fields are
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

    match check_accept(header_value(req, header::ACCEPT)) {
        AcceptCheck::Json => {}
        AcceptCheck::Missing if endpoint.accept_defaults_to_json() => {}
        AcceptCheck::Missing => {
            return sn_error(
                StatusCode::BAD_REQUEST,
                "The Accept header is required: this API only supports application/json",
            )
        }
        AcceptCheck::NotAcceptable => {
            return platform_error(
                StatusCode::NOT_ACCEPTABLE,
                "Not Acceptable",
                "This API only supports application/json responses",
            )
        }
    }

    let body = if endpoint.has_body() {
        if !is_json_content_type(header_value(req, header::CONTENT_TYPE)) {
            return platform_error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Unsupported Media Type",
                "The request body must be sent with Content-Type: application/json",
            );
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => map,
            Ok(_) => {
                return sn_error(
                    StatusCode::BAD_REQUEST,
                    "The request body must be a JSON object",
                )
            }
            Err(e) => {
                return sn_error(
                    StatusCode::BAD_REQUEST,
                    &format!("The request body is not valid JSON: {e}"),
                )
            }
        }
    } else {
        Map::new()
    };

    let query = Query::parse(req.query_string());
    if endpoint.is_registration() {
        if let Err(message) = check_registration_tools(shared, &query) {
            return sn_error(StatusCode::BAD_REQUEST, &message);
        }
    } else {
        match query.nonempty("toolId") {
            None if endpoint.requires_tool_id() => {
                return sn_error(
                    StatusCode::BAD_REQUEST,
                    "toolId is a required query parameter",
                )
            }
            Some(tool_id) if tool_id != shared.settings.tool_id => {
                return sn_error(
                    StatusCode::BAD_REQUEST,
                    &format!("Invalid toolId: no orchestration tool with sys_id {tool_id}"),
                )
            }
            _ => {}
        }
    }

    let result = match endpoint {
        Endpoint::ChangeControlGet => Ok(change_control_get(shared, &query)),
        Endpoint::ChangeControlPost => change_control_post(shared, &body),
        Endpoint::ChangeControlPut { id } => change_control_put(shared, &id, &body),
        Endpoint::StepMappingGet => step_mapping_get(shared, &query),
        Endpoint::StepMappingPost => step_mapping_post(shared, &query, &body),
        Endpoint::ChangeInfoGet => change_info_get(shared, &query),
        Endpoint::ChangeInfoPut { .. } => change_info_put(shared, &query, body),
        Endpoint::CallbackGet => callback_get(shared, &query),
        Endpoint::ArtifactRegistration => artifact_registration(shared, &query, &body),
        Endpoint::PackageRegistration => package_registration(shared, &body),
    };
    result.unwrap_or_else(ApiError::into_response)
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

/// `GET …/changeControl`: is the task (the stage after `#`) under change control?
fn change_control_get(shared: &Arc<Shared>, query: &Query) -> HttpResponse {
    if query
        .nonempty("testConnection")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        return success(
            StatusCode::OK,
            json!({"changeControl": true, "status": "Success"}),
        );
    }
    let stage = query
        .nonempty("orchestrationTaskName")
        .map(|name| stage_from_query_value(name).unwrap_or_else(|| decode_again(name)))
        .or_else(|| {
            query
                .nonempty("orchestrationTaskURL")
                .and_then(stage_from_query_value)
        });
    let controlled = shared.with_model(|m| match &stage {
        Some(stage) => m.is_controlled(stage),
        None => m.controlled_stages.is_none(),
    });
    if controlled {
        success(
            StatusCode::OK,
            json!({"changeControl": true, "status": "Success"}),
        )
    } else {
        // The seed's "not under change control" example carries no `status`.
        success(StatusCode::OK, json!({"changeControl": false}))
    }
}

/// `POST …/changeControl`: registers the callback and, under change control, opens a CR.
fn change_control_post(shared: &Arc<Shared>, body: &Map<String, Value>) -> Answer {
    let registration = parse_registration(body).map_err(ApiError::Invalid)?;
    if !shared.with_model(|m| m.is_controlled(&registration.stage)) {
        return Ok(success(
            StatusCode::CREATED,
            json!({"changeControl": false, "status": "Success"}),
        ));
    }
    match shared.with_model(|m| m.register(registration)) {
        Registered::Created { number, .. } => {
            tracing::info!(%number, "change request created");
            callbacks::after_registration(shared, number);
        }
        Registered::Existing { number } => {
            tracing::debug!(%number, "callback registered again");
        }
    }
    Ok(success(
        StatusCode::CREATED,
        json!({"changeControl": true, "status": "Success"}),
    ))
}

fn parse_registration(body: &Map<String, Value>) -> Result<Registration, String> {
    let callback_url = required_str(body, "callbackURL")?;
    let task_url = required_str(body, "orchestrationTaskURL")?;
    let details = task_details(body)?;
    check_change_request_details(body.get("changeRequestDetails"))?;
    let change_request_details = match body.get("changeRequestDetails") {
        Some(Value::String(s)) if !s.trim().is_empty() => serde_json::from_str(s).ok(),
        Some(Value::Object(o)) => Some(Value::Object(o.clone())),
        _ => None,
    };
    let token = callback_token(&callback_url).ok_or_else(|| {
        "callbackURL must be an absolute http(s) URL whose last path segment is the callback token"
            .to_string()
    })?;
    let task_name = optional_str(body, "orchestrationTaskName")?;
    let stage = match optional_str(body, "stageName")? {
        Some(stage) => stage,
        None => stage_after_hash(&task_url)
            .or_else(|| task_name.as_deref().and_then(stage_after_hash))
            .unwrap_or_default(),
    };
    let task_execution_url = match optional_str(details, "taskExecutionURL")? {
        Some(url) => Some(url),
        None => optional_str(body, "taskExecutionURL")?,
    };
    let build_number = scalar(details.get("buildNumber"))
        .or_else(|| scalar(body.get("buildNumber")))
        .or_else(|| {
            task_execution_url
                .as_deref()
                .and_then(build_number_from_url)
        });
    Ok(Registration {
        token,
        callback_url,
        task_url,
        task_name,
        stage,
        branch: optional_str(body, "branchName")?,
        multibranch: body
            .get("isMultiBranch")
            .is_some_and(|v| v == &json!(true) || v == &json!("true")),
        build_number,
        task_execution_url,
        change_request_details,
    })
}

/// `orchestrationTaskDetails` with its required `triggerType` (and `upstreamTaskExecutionURL`
/// for upstream triggers).
fn task_details(body: &Map<String, Value>) -> Result<&Map<String, Value>, String> {
    let details = match body.get("orchestrationTaskDetails") {
        Some(Value::Object(details)) => details,
        None | Some(Value::Null) => return Err("orchestrationTaskDetails is required".into()),
        Some(_) => return Err("orchestrationTaskDetails must be an object".into()),
    };
    let trigger = required_str(details, "triggerType")
        .map_err(|e| format!("orchestrationTaskDetails.{e}"))?;
    match trigger.as_str() {
        "user" | "scm" => {}
        "upstream" => {
            required_str(details, "upstreamTaskExecutionURL").map_err(|e| {
                format!("orchestrationTaskDetails.{e} when triggerType is upstream")
            })?;
        }
        other => {
            return Err(format!(
                "orchestrationTaskDetails.triggerType must be one of user, scm, upstream (got {other:?})"
            ))
        }
    }
    Ok(details)
}

fn check_change_request_details(details: Option<&Value>) -> Result<(), String> {
    let details = match details {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Object(o)) => Value::Object(o.clone()),
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(()),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(v @ Value::Object(_)) => v,
            _ => return Err("changeRequestDetails must be a JSON object".into()),
        },
        Some(_) => return Err("changeRequestDetails must be a JSON object".into()),
    };
    let mut found: Vec<&str> = Vec::new();
    let attributes = details.get("attributes").and_then(Value::as_object);
    for key in FORBIDDEN_CR_FIELDS {
        let in_attributes = attributes.is_some_and(|a| a.contains_key(key));
        if details.get(key).is_some() || in_attributes {
            found.push(key);
        }
    }
    if found.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "changeRequestDetails may not set impact, number, risk, risk_impact_analysis or sys_id (found: {})",
            found.join(", ")
        ))
    }
}

/// `PUT …/changeControl/{changeControlId}`: the acknowledgement of a callback.
fn change_control_put(shared: &Arc<Shared>, id: &str, body: &Map<String, Value>) -> Answer {
    if !shared.with_model(|m| m.has_token(id)) {
        return Err(ApiError::NotFound(format!(
            "No change control callback record found for {id}"
        )));
    }
    required_str(body, "callbackURL").map_err(ApiError::Invalid)?;
    required_str(body, "orchestrationTaskURL").map_err(ApiError::Invalid)?;
    required_str(body, "taskExecutionURL").map_err(ApiError::Invalid)?;
    task_details(body).map_err(ApiError::Invalid)?;
    shared.with_model(|m| m.acknowledge(id));
    Ok(success(StatusCode::OK, json!({"change_control": true})))
}

/// `GET …/stepMapping`.
fn step_mapping_get(shared: &Arc<Shared>, query: &Query) -> Answer {
    check_tool_type(query).map_err(ApiError::Invalid)?;
    let name = query
        .nonempty("orchestrationTaskName")
        .ok_or_else(|| missing("orchestrationTaskName"))?;
    query
        .nonempty("orchestrationTaskURL")
        .ok_or_else(|| missing("orchestrationTaskURL"))?;
    let valid = step_valid(shared, &decode_again(name)) && step_valid(shared, name);
    Ok(success(
        StatusCode::OK,
        json!({"stepValid": valid, "status": "Success"}),
    ))
}

/// `POST …/stepMapping`.
fn step_mapping_post(shared: &Arc<Shared>, query: &Query, body: &Map<String, Value>) -> Answer {
    check_tool_type(query).map_err(ApiError::Invalid)?;
    let name = required_str(body, "orchestrationTaskName").map_err(ApiError::Invalid)?;
    required_str(body, "orchestrationTaskURL").map_err(ApiError::Invalid)?;
    let valid = step_valid(shared, name.trim());
    Ok(success(
        StatusCode::CREATED,
        json!({"stepValid": valid, "status": "Success"}),
    ))
}

/// stepMapping's `toolType`: "Required … Valid values: jenkins".
fn check_tool_type(query: &Query) -> Result<(), String> {
    match query.nonempty("toolType") {
        None => Err("toolType is a required query parameter".into()),
        Some(t) if t.eq_ignore_ascii_case("jenkins") => Ok(()),
        Some(t) => Err(format!("Invalid toolType {t:?}: valid values are jenkins")),
    }
}

fn step_valid(shared: &Arc<Shared>, name: &str) -> bool {
    let stage = stage_after_hash(name);
    shared.with_model(|m| {
        !m.invalid_steps
            .iter()
            .any(|s| s == name || Some(s) == stage.as_ref())
    })
}

/// `GET …/changeInfo`.
fn change_info_get(shared: &Arc<Shared>, query: &Query) -> Answer {
    let bad = |m: &str| ApiError::Invalid(m.to_string());
    let build = query
        .nonempty("buildNumber")
        .ok_or_else(|| missing("buildNumber"))?;
    let pipeline = query.nonempty("pipelineName").map(str::to_string);
    let project = query.nonempty("projectName").map(str::to_string);
    let stage = query.nonempty("stageName").map(str::to_string);
    if stage
        .as_ref()
        .is_some_and(|s| s.chars().count() > MAX_STAGE_NAME)
    {
        return Err(bad("stageName may be at most 160 characters long"));
    }
    // Seed: pipelineName and stageName are required except for Freestyle/Maven projects,
    // which are named by projectName instead.
    if project.is_none() && (pipeline.is_none() || stage.is_none()) {
        return Err(bad(
            "pipelineName and stageName are required query parameters (projectName for Freestyle or Maven projects)",
        ));
    }
    let lookup = ChangeQuery {
        pipeline,
        project,
        stage,
        build: build.to_string(),
        branch: query.nonempty("branchName").map(str::to_string),
    };
    let info = shared.with_model(|m| {
        m.find_for_change_info(&lookup)
            .map(|c| c.change_info(&shared.base_url, shared.settings.numeric_states))
    });
    Ok(success(
        StatusCode::OK,
        info.unwrap_or_else(|| json!({"changeFound": false})),
    ))
}

/// `PUT …/changeInfo?changeRequestNumber=`.
///
/// The seed's table wants the fields in `data` (a JSON string), its example and the official
/// plugin send them as the body itself: both are served, neither may be empty.
fn change_info_put(shared: &Arc<Shared>, query: &Query, body: Map<String, Value>) -> Answer {
    let failed = |status: StatusCode, message: &str| ApiError::Update(status, message.to_string());
    let number = query
        .nonempty("changeRequestNumber")
        .ok_or_else(|| {
            failed(
                StatusCode::BAD_REQUEST,
                "changeRequestNumber is a required query parameter",
            )
        })?
        .to_string();
    let fields = match body.get("data") {
        None => body,
        Some(Value::Object(fields)) => fields.clone(),
        Some(Value::String(text)) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(fields)) => fields,
            _ => {
                return Err(failed(
                    StatusCode::BAD_REQUEST,
                    "data must be a JSON object, or a string holding one",
                ))
            }
        },
        Some(_) => {
            return Err(failed(
                StatusCode::BAD_REQUEST,
                "data must be a JSON object, or a string holding one",
            ))
        }
    };
    if fields.is_empty() {
        return Err(failed(
            StatusCode::BAD_REQUEST,
            "data is required: the fields to update in the change request",
        ));
    }
    match shared.with_model(|m| m.update_fields(&number, fields)) {
        Ok(()) => Ok(success(
            StatusCode::OK,
            json!({
                "updateStatus": "Done",
                "status": "Success",
                "message": "change request update successful",
            }),
        )),
        Err(ModelError::NotFound(_)) => Err(failed(
            StatusCode::NOT_FOUND,
            &format!("Change request {number} not found"),
        )),
        Err(ModelError::Invalid(message)) => Err(failed(StatusCode::BAD_REQUEST, &message)),
    }
}

/// `GET …/callback?taskExecutionURL=`: the callback state of a stage execution.
fn callback_get(shared: &Arc<Shared>, query: &Query) -> Answer {
    let given = query
        .nonempty("taskExecutionURL")
        .ok_or_else(|| missing("taskExecutionURL"))?;
    let once = decode_again(given);
    let twice = decode_again(&once);
    let spellings = vec![given.to_string(), once, twice];
    let found = shared.with_model(|m| {
        m.find_by_task_execution(&spellings).map(|c| {
            json!({
                "result": c.callback_result(),
                "token": c.registration.token,
                "changeComments": c.comments.clone().unwrap_or_default(),
            })
        })
    });
    found
        .map(|result| success(StatusCode::OK, result))
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "No callback registered for taskExecutionURL {given}"
            ))
        })
}

/// Artifact and package registration name two tools (seed): `orchestrationToolId` (required,
/// the orchestration tool) and `toolId` (optional, an *artifact* tool, which must exist).
fn check_registration_tools(shared: &Arc<Shared>, query: &Query) -> Result<(), String> {
    match query.nonempty("orchestrationToolId") {
        None => return Err("orchestrationToolId is a required query parameter".into()),
        Some(id) if id != shared.settings.tool_id => {
            return Err(format!(
                "Invalid orchestrationToolId: no orchestration tool with sys_id {id}"
            ))
        }
        Some(_) => {}
    }
    match query.nonempty("toolId") {
        Some(id) if id != shared.settings.artifact_tool_id => {
            Err(format!("Invalid toolId: no artifact tool with sys_id {id}"))
        }
        _ => Ok(()),
    }
}

/// `POST …/artifact/registration`: 201 when something was created, 200 when all was known.
fn artifact_registration(shared: &Arc<Shared>, query: &Query, body: &Map<String, Value>) -> Answer {
    let request = parse_artifact_registration(body, query.nonempty("toolId").is_some())
        .map_err(ApiError::Invalid)?;
    let (result, created) = shared.with_model(|m| m.register_artifacts(&request));
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(success(status, result))
}

/// `POST …/package/registration`: always a new package (or staged request), 201.
fn package_registration(shared: &Arc<Shared>, body: &Map<String, Value>) -> Answer {
    let request = parse_package_registration(body).map_err(ApiError::Invalid)?;
    let result = shared.with_model(|m| m.register_package(&request));
    Ok(success(StatusCode::CREATED, result))
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

fn optional_str(object: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match object.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.clone())),
        None | Some(Value::Null) | Some(Value::String(_)) => Ok(None),
        Some(_) => Err(format!("{key} must be a string")),
    }
}

/// A string or number field as text (build numbers arrive both ways).
fn scalar(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `{"result": …}` with a status.
fn success(status: StatusCode, result: Value) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "result": result }))
}

/// The sn_devops error shape (seed, PUT changeControl: `details.errors[].message`).
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

#[cfg(test)]
mod tests {
    use super::*;

    fn body(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    fn registration_body() -> Value {
        json!({
            "callbackURL": "http://192.168.0.4:3000/jenkins/sn-devops/pipeline_839b7605-b98d-4831-bc87-96829de7da37",
            "orchestrationTaskURL": "http://192.168.0.4:3000/jenkins/job/java_sample_tests#deploy/",
            "isMultiBranch": "false",
            "orchestrationTaskName": "java_sample_tests#deploy",
            "orchestrationTaskDetails": {
                "triggerType": "upstream",
                "upstreamTaskExecutionURL": "http://192.168.0.4:3000/jenkins/job/java_sample_tests/129/execution/node/35/wfapi/describe",
                "taskExecutionURL": "http://192.168.0.4:3000/jenkins/job/java_sample_tests/129/execution/node/50/wfapi/describe"
            },
            "changeRequestDetails": {"setCloseCode": false, "attributes": {"category": "Service"}}
        })
    }

    #[test]
    fn the_seed_example_registration_parses() {
        let reg = parse_registration(&body(registration_body())).unwrap();
        assert_eq!(reg.token, "pipeline_839b7605-b98d-4831-bc87-96829de7da37");
        assert_eq!(reg.stage, "deploy");
        assert_eq!(reg.build_number.as_deref(), Some("129"));
        assert!(!reg.multibranch);
    }

    #[test]
    fn registrations_missing_required_fields_are_refused() {
        type Mutation = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(&str, Mutation)> = vec![
            (
                "callbackURL",
                Box::new(|v| drop(v.as_object_mut().unwrap().remove("callbackURL"))),
            ),
            (
                "orchestrationTaskURL",
                Box::new(|v| drop(v.as_object_mut().unwrap().remove("orchestrationTaskURL"))),
            ),
            (
                "orchestrationTaskDetails",
                Box::new(|v| {
                    drop(
                        v.as_object_mut()
                            .unwrap()
                            .remove("orchestrationTaskDetails"),
                    )
                }),
            ),
            (
                "triggerType",
                Box::new(|v| v["orchestrationTaskDetails"]["triggerType"] = json!("cron")),
            ),
            (
                "upstreamTaskExecutionURL",
                Box::new(|v| {
                    drop(
                        v["orchestrationTaskDetails"]
                            .as_object_mut()
                            .unwrap()
                            .remove("upstreamTaskExecutionURL"),
                    )
                }),
            ),
            (
                "risk",
                Box::new(|v| v["changeRequestDetails"]["attributes"]["risk"] = json!("High")),
            ),
            (
                "sys_id",
                Box::new(|v| v["changeRequestDetails"]["sys_id"] = json!("x")),
            ),
        ];
        for (field, mutate) in cases {
            let mut value = registration_body();
            mutate(&mut value);
            let err = parse_registration(&body(value)).unwrap_err();
            assert!(err.contains(field), "{field}: {err}");
        }
    }

    #[test]
    fn the_stage_name_field_wins_over_the_url() {
        let mut value = registration_body();
        value["stageName"] = json!("Deploy/Prod");
        value["orchestrationTaskDetails"]["buildNumber"] = json!(7);
        let reg = parse_registration(&body(value)).unwrap();
        assert_eq!(reg.stage, "Deploy/Prod");
        assert_eq!(reg.build_number.as_deref(), Some("7"));
    }
}
