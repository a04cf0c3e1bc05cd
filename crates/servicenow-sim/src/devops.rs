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
use super::plugin_forms::{check_acknowledgement, check_event, check_registration, split_task_url};
use super::protocol::{
    callback_token, check_accept, decode_again, is_authorized, is_json_content_type, job_segments,
    parse_route, query_pairs, stage_after_hash, stage_from_query_value, AcceptCheck, Endpoint,
    Route, RouteError,
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
        Endpoint::ChangeControlGet => change_control_get(shared, &query),
        Endpoint::ChangeControlPost => change_control_post(shared, &body),
        Endpoint::ChangeControlPut { id } => change_control_put(shared, &id, &body),
        Endpoint::StepMappingGet => step_mapping_get(shared, &query),
        Endpoint::StepMappingPost => step_mapping_post(shared, &query, &body),
        Endpoint::ChangeInfoGet => change_info_get(shared, &query),
        Endpoint::ChangeInfoPut { .. } => change_info_put(shared, &query, body),
        Endpoint::CallbackGet => callback_get(shared, &query),
        Endpoint::ToolEvent { capability } => tool_event(shared, &query, &capability, body),
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
///
/// `testConnection=true` answers the seed's own "under change control" example,
/// `{"changeControl": true, "status": "Success"}`: the seed's section lists no other member for
/// this flag (no `connectionStatus`), so nothing else is invented here.
fn change_control_get(shared: &Arc<Shared>, query: &Query) -> Answer {
    if let Some(tool_type) = query.nonempty("toolType") {
        if !tool_type.eq_ignore_ascii_case("jenkins") {
            return Err(ApiError::Invalid(format!(
                "Invalid toolType {tool_type:?}: valid values are jenkins"
            )));
        }
    }
    match query.nonempty("testConnection") {
        None => {}
        Some(v) if v.eq_ignore_ascii_case("true") => {
            return Ok(success(
                StatusCode::OK,
                json!({"changeControl": true, "status": "Success"}),
            ))
        }
        Some(v) if v.eq_ignore_ascii_case("false") => {}
        // Seed: "Data type: Boolean".
        Some(v) => {
            return Err(ApiError::Invalid(format!(
                "testConnection must be true or false, got {v:?}"
            )))
        }
    }
    // The seed's example sends the task URL encoded twice (`https%253A%252F…`).
    let task_url = query.nonempty("orchestrationTaskURL").map(decode_again);
    let stage = query
        .nonempty("orchestrationTaskName")
        .map(|name| stage_from_query_value(name).unwrap_or_else(|| decode_again(name)))
        .or_else(|| task_url.as_deref().and_then(stage_after_hash));
    let controlled = shared.with_model(|m| {
        let known = match task_url.as_deref().and_then(split_task_url) {
            Some((job_url, _)) => m.is_known_task(&job_url, task_url.as_deref().unwrap_or("")),
            // Without a task URL the job cannot be told; the stage alone decides.
            None => true,
        };
        known
            && match &stage {
                Some(stage) => m.is_controlled(stage),
                None => m.controlled_stages.is_none(),
            }
    });
    if controlled {
        Ok(success(
            StatusCode::OK,
            json!({"changeControl": true, "status": "Success"}),
        ))
    } else {
        // The seed's "not under change control" example carries no `status`.
        Ok(success(StatusCode::OK, json!({"changeControl": false})))
    }
}

/// `POST …/changeControl`: registers the callback and, under change control, opens a CR.
///
/// Seed: "Before you call this endpoint, you must have an orchestration task created in your
/// ServiceNow instance … through Discovery or by calling … POST /devops/orchestration/stepMapping",
/// and change control must be enabled for its step. Either missing gives `changeControl: false`
/// (the seed's value for "Not under change control") with a `message` saying why, which the
/// official plugin prints; no CR, no callback.
fn change_control_post(shared: &Arc<Shared>, body: &Map<String, Value>) -> Answer {
    let registration = parse_registration(body).map_err(ApiError::Invalid)?;
    let (known, controlled) = shared.with_model(|m| {
        (
            m.is_known_task(&registration.plugin.job_url, &registration.task_url),
            m.is_controlled(&registration.stage),
        )
    });
    let refusal = if !known {
        Some(format!(
            "Orchestration task not found for {}: create it by discovery or POST stepMapping before registering",
            registration.task_url
        ))
    } else if !controlled {
        Some(format!(
            "The orchestration task {}#{} is not under change control",
            registration.plugin.item, registration.stage
        ))
    } else {
        None
    };
    if let Some(message) = refusal {
        tracing::debug!(%message, "not under change control");
        return Ok(success(
            StatusCode::CREATED,
            json!({"changeControl": false, "status": "Success", "message": message}),
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

/// The body as the official plugin sends it (`plugin_forms::check_registration`), plus the
/// seed's rules on `changeRequestDetails`.
fn parse_registration(body: &Map<String, Value>) -> Result<Registration, String> {
    let plugin = check_registration(body)?;
    check_change_request_details(body.get("changeRequestDetails"))?;
    let callback_url = required_str(body, "callbackURL")?;
    let task_url = required_str(body, "orchestrationTaskURL")?;
    let token = callback_token(&callback_url).ok_or_else(|| {
        "callbackURL must be an absolute http(s) URL whose last path segment is the callback token"
            .to_string()
    })?;
    Ok(Registration {
        token,
        callback_url,
        task_url,
        task_name: Some(plugin.item.clone()),
        stage: plugin.stage.clone(),
        branch: plugin.branch.clone(),
        multibranch: plugin.multibranch,
        build_number: Some(plugin.build_number.clone()),
        task_execution_url: Some(plugin.task_execution_url.clone()),
        change_request_details: body.get("changeRequestDetails").cloned(),
        plugin,
        body: Value::Object(body.clone()),
    })
}

fn check_change_request_details(details: Option<&Value>) -> Result<(), String> {
    let details = match details {
        None => return Ok(()),
        Some(Value::Object(o)) => Value::Object(o.clone()),
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

/// `PUT …/changeControl/{changeControlId}`: the acknowledgement of a callback. Seed: 404 "The
/// specified record couldn't be found" for an unknown id (a token never registered, or one whose
/// registration answered `changeControl: false`); the body as the plugin's `sendBuildAndToken`
/// builds it, consistent with the registration (`plugin_forms::check_acknowledgement`).
fn change_control_put(shared: &Arc<Shared>, id: &str, body: &Map<String, Value>) -> Answer {
    let registration = shared
        .with_model(|m| m.registration_of(id).cloned())
        .ok_or_else(|| {
            ApiError::NotFound(format!("No change control callback record found for {id}"))
        })?;
    check_acknowledgement(
        body,
        &registration.callback_url,
        &registration.task_url,
        &registration.plugin,
    )
    .map_err(ApiError::Invalid)?;
    shared.with_model(|m| m.acknowledge(id, Value::Object(body.clone())));
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

/// `POST …/stepMapping`: "If both are valid, it creates the orchestration task and makes the
/// association" (seed). Valid means: the name is `<item>#<stage>` of the task URL (the plugin's
/// `jobName#stage`) and not declared invalid; then the task exists for changeControl.
fn step_mapping_post(shared: &Arc<Shared>, query: &Query, body: &Map<String, Value>) -> Answer {
    check_tool_type(query).map_err(ApiError::Invalid)?;
    let name = required_str(body, "orchestrationTaskName").map_err(ApiError::Invalid)?;
    let task_url = required_str(body, "orchestrationTaskURL").map_err(ApiError::Invalid)?;
    // The seed's own example carries a leading space in both values.
    let (name, task_url) = (name.trim(), task_url.trim());
    let consistent = split_task_url(task_url).is_some_and(|(job_url, stage)| {
        job_segments(&job_url)
            .last()
            .is_some_and(|item| name == format!("{item}#{stage}"))
    });
    let valid = consistent && step_valid(shared, name);
    if valid {
        shared.with_model(|m| m.add_task(task_url, "stepMapping"));
    }
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
    // Values decoded once, exactly: no trimming, no second decoding (see
    // `Model::find_for_change_info`).
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
    // A miss is the seed's "false: Change request wasn't found", with the `status` the plugin
    // needs to read it at all.
    Ok(success(
        StatusCode::OK,
        info.unwrap_or_else(|| json!({"changeFound": false, "status": "Success"})),
    ))
}

/// `PUT …/changeInfo?changeRequestNumber=`: the body is the fields object itself, as the seed's
/// example and the official plugin (`DevOpsPipelineUpdateChangeInfoStepExecution`) send it;
/// only its top-level members are applied. A member that is no change request field (such as
/// the `data` wrapper of the seed's table, whose value is a JSON string) cannot be set: the
/// update fails with the seed's failure answer (`status` "Error", `updateStatus` "Error") and
/// nothing changes.
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
    if body.is_empty() {
        return Err(failed(
            StatusCode::BAD_REQUEST,
            "The body must name the change request fields to update",
        ));
    }
    let unknown: Vec<&str> = body
        .keys()
        .map(String::as_str)
        .filter(|k| !is_change_request_field(k))
        .collect();
    if !unknown.is_empty() {
        return Err(failed(
            StatusCode::BAD_REQUEST,
            &format!(
                "Unknown change request field(s): {}; send the fields themselves as the body",
                unknown.join(", ")
            ),
        ));
    }
    match shared.with_model(|m| m.update_fields(&number, body)) {
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

/// Columns of ServiceNow's `change_request` table (with those it inherits from `task`) that an
/// update may name: the seed's examples (PUT changeInfo, and `changeRequestDetails` in POST
/// changeControl) and the standard ones next to them. Custom columns (`u_…`) are allowed.
const CHANGE_REQUEST_FIELDS: &[&str] = &[
    "approval",
    "assigned_to",
    "assignment_group",
    "backout_plan",
    "business_service",
    "cab_date",
    "cab_delegate",
    "cab_recommendation",
    "cab_required",
    "category",
    "change_plan",
    "close_code",
    "close_notes",
    "cmdb_ci",
    "comments",
    "conflict_status",
    "description",
    "end_date",
    "implementation_plan",
    "justification",
    "on_hold",
    "on_hold_reason",
    "outside_maintenance_schedule",
    "phase",
    "phase_state",
    "priority",
    "production_system",
    "reason",
    "requested_by",
    "requested_by_date",
    "review_comments",
    "review_date",
    "review_status",
    "risk",
    "risk_impact_analysis",
    "service_offering",
    "short_description",
    "start_date",
    "state",
    "test_plan",
    "type",
    "unauthorized",
    "urgency",
    "watch_list",
    "work_end",
    "work_notes",
    "work_notes_list",
    "work_start",
];

fn is_change_request_field(name: &str) -> bool {
    CHANGE_REQUEST_FIELDS.contains(&name) || name.starts_with("u_")
}

/// `GET …/callback?taskExecutionURL=`: the callback state of a stage execution.
fn callback_get(shared: &Arc<Shared>, query: &Query) -> Answer {
    let given = query
        .nonempty("taskExecutionURL")
        .ok_or_else(|| missing("taskExecutionURL"))?;
    // The plugin encodes the value once (`URLEncoder`), so the query decoded once is the URL as
    // registered; a value encoded twice, or not matching exactly, names no callback.
    let spellings = vec![given.to_string()];
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

/// `POST …/devops/tool/{capability}` (seed "DevOps - POST /devops/tool/{capability}"): 201
/// `{"status": "Success", "sysId"}`, or 400 `"Data Error"` for an unsupported capability.
/// `orchestration` bodies must be the official plugin's `DevOpsRunStatusModel`
/// (`plugin_forms::check_event`); a STARTED stage event creates the stage's orchestration task,
/// as SPEC §2 "Stage events" has the plugin send one before the stage's changeControl POST.
fn tool_event(
    shared: &Arc<Shared>,
    query: &Query,
    capability: &str,
    body: Map<String, Value>,
) -> Answer {
    let data_error = |message: &str| {
        HttpResponse::BadRequest().json(json!({"result": {
            "status": "Data Error",
            "details": {"errors": [{"message": message}]},
        }}))
    };
    match capability {
        "orchestration" => {}
        "artifact" | "code" | "plan" | "softwarequality" => {}
        "test" if query.nonempty("testType").is_none() => {
            return Err(missing("testType"));
        }
        "test" => {}
        _ => return Ok(data_error("Unsupported capability type")),
    }
    if capability == "orchestration" {
        let event = check_event(&body).map_err(ApiError::Invalid)?;
        if let (Some(stage), "STARTED") = (&event.stage, event.phase.as_str()) {
            let task_url = format!(
                "{}#{stage}/",
                event.job_url.strip_suffix('/').unwrap_or(&event.job_url)
            );
            shared.with_model(|m| m.add_task(&task_url, "stageEvent"));
        }
        shared.with_model(|m| m.record_event(Value::Object(body)));
    }
    Ok(success(
        StatusCode::CREATED,
        json!({"status": "Success", "sysId": uuid::Uuid::new_v4().simple().to_string()}),
    ))
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
    use super::super::plugin_forms::plugin_registration;
    use super::*;

    fn body(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    fn plugin_body() -> Value {
        plugin_registration(
            "http://192.168.0.4:3000/jenkins/sn-devops/pipeline_839b7605-b98d-4831-bc87-96829de7da37",
            "http://192.168.0.4:3000/jenkins/job/java_sample_tests/",
            "deploy",
            129,
            None,
        )
    }

    #[test]
    fn the_plugin_registration_parses() {
        let reg = parse_registration(&body(plugin_body())).unwrap();
        assert_eq!(reg.token, "pipeline_839b7605-b98d-4831-bc87-96829de7da37");
        assert_eq!(reg.stage, "deploy");
        assert_eq!(reg.build_number.as_deref(), Some("129"));
        assert_eq!(reg.plugin.full_name, "java_sample_tests");
        assert!(!reg.multibranch);
    }

    /// The seed's second POST changeControl example is not what the plugin sends
    /// (`orchestrationTaskName` `java_sample_tests#deploy`, no `stageName`, no parent fields).
    #[test]
    fn the_seeds_minimal_example_is_not_the_plugins_form() {
        let seed = json!({
            "callbackURL": "http://192.168.0.4:3000/jenkins/sn-devops/pipeline_839b7605-b98d-4831-bc87-96829de7da37",
            "orchestrationTaskURL": "http://192.168.0.4:3000/jenkins/job/java_sample_tests#deploy/",
            "isMultiBranch": "false",
            "orchestrationTaskName": "java_sample_tests#deploy",
            "orchestrationTaskDetails": {
                "triggerType": "upstream",
                "upstreamTaskExecutionURL": "http://192.168.0.4:3000/jenkins/job/java_sample_tests/129/execution/node/35/wfapi/describe",
                "taskExecutionURL": "http://192.168.0.4:3000/jenkins/job/java_sample_tests/129/execution/node/50/wfapi/describe"
            },
        });
        assert!(parse_registration(&body(seed)).is_err());
    }

    #[test]
    fn registrations_breaking_the_seeds_rules_are_refused() {
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
                Box::new(|v| v["orchestrationTaskDetails"]["triggerType"] = json!("upstream")),
            ),
            (
                "risk",
                Box::new(|v| {
                    v["changeRequestDetails"] = json!({"attributes": {"risk": "High"}});
                }),
            ),
            (
                "sys_id",
                Box::new(|v| v["changeRequestDetails"] = json!({"sys_id": "x"})),
            ),
            (
                "callbackURL must be an absolute",
                Box::new(|v| v["callbackURL"] = json!("not a url")),
            ),
        ];
        for (field, mutate) in cases {
            let mut value = plugin_body();
            mutate(&mut value);
            let err = parse_registration(&body(value)).unwrap_err();
            assert!(err.contains(field), "{field}: {err}");
        }
    }

    #[test]
    fn only_change_request_fields_may_be_updated() {
        for ok in ["short_description", "work_notes", "close_code", "u_release"] {
            assert!(is_change_request_field(ok), "{ok}");
        }
        for bad in [
            "data",
            "attributes",
            "changeRequestDetails",
            "Short_Description",
        ] {
            assert!(!is_change_request_field(bad), "{bad}");
        }
    }
}
