//! The orchestration tasks and what a pipeline reports about them: `stepMapping` GET and POST,
//! stage events (`POST …/tool/{capability}`), and artifact and package registration.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use serde_json::{json, Map, Value};

use super::{missing, required_str, success, Answer, ApiError, Query};
use crate::artifacts::{parse_artifact_registration, parse_package_registration};
use crate::plugin_forms::{check_event, split_task_url};
use crate::protocol::{decode_again, job_segments, stage_after_hash};
use crate::Shared;

/// `GET …/stepMapping`.
pub(super) fn step_mapping_get(shared: &Arc<Shared>, query: &Query) -> Answer {
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
/// association" (ServiceNow's DevOps API reference). Valid means: the name is `<item>#<stage>` of the task URL (the plugin's
/// `jobName#stage`) and not declared invalid; then the task exists for changeControl.
pub(super) fn step_mapping_post(
    shared: &Arc<Shared>,
    query: &Query,
    body: &Map<String, Value>,
) -> Answer {
    check_tool_type(query).map_err(ApiError::Invalid)?;
    let name = required_str(body, "orchestrationTaskName").map_err(ApiError::Invalid)?;
    let task_url = required_str(body, "orchestrationTaskURL").map_err(ApiError::Invalid)?;
    // The API reference's own example carries a leading space in both values.
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
pub(super) fn check_tool_type(query: &Query) -> Result<(), String> {
    match query.nonempty("toolType") {
        None => Err("toolType is a required query parameter".into()),
        Some(t) if t.eq_ignore_ascii_case("jenkins") => Ok(()),
        Some(t) => Err(format!("Invalid toolType {t:?}: valid values are jenkins")),
    }
}

pub(super) fn step_valid(shared: &Arc<Shared>, name: &str) -> bool {
    let stage = stage_after_hash(name);
    shared.with_model(|m| {
        !m.invalid_steps
            .iter()
            .any(|s| s == name || Some(s) == stage.as_ref())
    })
}

/// `POST …/devops/tool/{capability}` (ServiceNow's DevOps API reference "DevOps - POST /devops/tool/{capability}"): 201
/// `{"status": "Success", "sysId"}`, or 400 `"Data Error"` for an unsupported capability.
/// `orchestration` bodies must be the official plugin's `DevOpsRunStatusModel`
/// (`plugin_forms::check_event`); a STARTED stage event creates the stage's orchestration task,
/// as the plugin sends one before the stage's changeControl POST.
pub(super) fn tool_event(
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

/// Artifact and package registration name two tools (ServiceNow's DevOps API reference): `orchestrationToolId` (required,
/// the orchestration tool) and `toolId` (optional, an *artifact* tool, which must exist).
pub(super) fn check_registration_tools(shared: &Arc<Shared>, query: &Query) -> Result<(), String> {
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
pub(super) fn artifact_registration(
    shared: &Arc<Shared>,
    query: &Query,
    body: &Map<String, Value>,
) -> Answer {
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
pub(super) fn package_registration(shared: &Arc<Shared>, body: &Map<String, Value>) -> Answer {
    let request = parse_package_registration(body).map_err(ApiError::Invalid)?;
    let result = shared.with_model(|m| m.register_package(&request));
    Ok(success(StatusCode::CREATED, result))
}
