//! `changeControl` GET, POST and PUT, and `GET …/callback`: is a stage under change control,
//! the registration that opens a CR, its acknowledgement, and the decision so far.

use std::sync::Arc;

use actix_web::http::StatusCode;
use serde_json::{json, Map, Value};

use super::{missing, required_str, success, Answer, ApiError, Query, FORBIDDEN_CR_FIELDS};
use crate::callbacks;
use crate::model::{Registered, Registration};
use crate::plugin_forms::{check_acknowledgement, check_registration, split_task_url};
use crate::protocol::{callback_token, decode_again, stage_after_hash, stage_from_query_value};
use crate::Shared;

/// `GET …/changeControl`: is the task (the stage after `#`) under change control?
///
/// `testConnection=true` answers the API reference's own "under change control" example,
/// `{"changeControl": true, "status": "Success"}`: the API reference's section lists no other member for
/// this flag (no `connectionStatus`), so nothing else is invented here.
pub(super) fn change_control_get(shared: &Arc<Shared>, query: &Query) -> Answer {
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
    // The API reference's example sends the task URL encoded twice (`https%253A%252F…`).
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
        // The API reference's "not under change control" example carries no `status`.
        Ok(success(StatusCode::OK, json!({"changeControl": false})))
    }
}

/// `POST …/changeControl`: registers the callback and, under change control, opens a CR.
///
/// Seed: "Before you call this endpoint, you must have an orchestration task created in your
/// ServiceNow instance … through Discovery or by calling … POST /devops/orchestration/stepMapping",
/// and change control must be enabled for its step. Either missing gives `changeControl: false`
/// (the API reference's value for "Not under change control") with a `message` saying why, which the
/// official plugin prints; no CR, no callback.
pub(super) fn change_control_post(shared: &Arc<Shared>, body: &Map<String, Value>) -> Answer {
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
/// API reference's rules on `changeRequestDetails`.
pub(super) fn parse_registration(body: &Map<String, Value>) -> Result<Registration, String> {
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

pub(super) fn check_change_request_details(details: Option<&Value>) -> Result<(), String> {
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
pub(super) fn change_control_put(
    shared: &Arc<Shared>,
    id: &str,
    body: &Map<String, Value>,
) -> Answer {
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

/// `GET …/callback?taskExecutionURL=`: the callback state of a stage execution.
pub(super) fn callback_get(shared: &Arc<Shared>, query: &Query) -> Answer {
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
