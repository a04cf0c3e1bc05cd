//! `changeInfo` GET and PUT: the CR of a pipeline's stage run, and the fields a pipeline may
//! set on it.

use std::sync::Arc;

use actix_web::http::StatusCode;
use serde_json::{json, Map, Value};

use super::{missing, success, Answer, ApiError, Query, MAX_STAGE_NAME};
use crate::model::{ChangeQuery, ModelError};
use crate::Shared;

/// `GET …/changeInfo`.
pub(super) fn change_info_get(shared: &Arc<Shared>, query: &Query) -> Answer {
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
    // A miss is the API reference's "false: Change request wasn't found", with the `status` the plugin
    // needs to read it at all.
    Ok(success(
        StatusCode::OK,
        info.unwrap_or_else(|| json!({"changeFound": false, "status": "Success"})),
    ))
}

/// `PUT …/changeInfo?changeRequestNumber=`: the body is the fields object itself, as the API reference's
/// example and the official plugin (`DevOpsPipelineUpdateChangeInfoStepExecution`) send it;
/// only its top-level members are applied. A member that is no change request field (such as
/// the `data` wrapper of the API reference's table, whose value is a JSON string) cannot be set: the
/// update fails with the API reference's failure answer (`status` "Error", `updateStatus` "Error") and
/// nothing changes.
pub(super) fn change_info_put(
    shared: &Arc<Shared>,
    query: &Query,
    body: Map<String, Value>,
) -> Answer {
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
/// update may name: the API reference's examples (PUT changeInfo, and `changeRequestDetails` in POST
/// changeControl) and the standard ones next to them. Custom columns (`u_…`) are allowed.
pub(super) const CHANGE_REQUEST_FIELDS: &[&str] = &[
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

pub(super) fn is_change_request_field(name: &str) -> bool {
    CHANGE_REQUEST_FIELDS.contains(&name) || name.starts_with("u_")
}
