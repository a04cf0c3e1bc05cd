//! Test builders: the bodies the plugin sends, for the simulator's own tests.

use serde_json::{Map, Value};

use crate::protocol::job_segments;

/// A changeControl POST body as the plugin builds it for `stage` (a top-level stage, flow node
/// 15, no upstream sibling told) of build `build` of `job_url`, started by user alice;
/// multibranch when `branch` is given.
pub(crate) fn plugin_registration(
    callback_url: &str,
    job_url: &str,
    stage: &str,
    build: u32,
    branch: Option<&str>,
) -> Value {
    let names = job_segments(job_url);
    let item = names.last().cloned().unwrap_or_default();
    let base = job_url.strip_suffix('/').unwrap_or(job_url);
    let task_url = format!("{base}#{stage}/");
    let execution = format!("{job_url}{build}/execution/node/15/wfapi/describe");
    let mut body = serde_json::json!({
        "callbackURL": callback_url,
        "orchestrationTaskURL": task_url,
        "isMultiBranch": if branch.is_some() { "true" } else { "false" },
        "isFreestyle": "false",
        "pipelineExecutionUrl": format!("{job_url}{build}/"),
        "orchestrationTaskName": item,
        "stageName": stage,
        "parentStageName": format!("{item}#{stage}"),
        "parentStageURL": task_url,
        "parentNode": {"id": "15", "name": stage, "parentId": ""},
        "parentStageExecutionURL": execution,
        "orchestrationTaskDetails": {
            "message": "Started by user alice",
            "triggerType": "user",
            "userName": "alice",
            "buildNumber": build.to_string(),
            "fullName": names.join("/"),
            "taskExecutionURL": execution,
        },
    });
    if let Some(branch) = branch {
        body["branchName"] = Value::String(branch.to_string());
    }
    body
}

/// The acknowledgement the plugin sends for a registration body built by
/// [`plugin_registration`].
pub(crate) fn plugin_acknowledgement(registration: &Value) -> Value {
    let mut body = Map::new();
    for key in [
        "callbackURL",
        "orchestrationTaskURL",
        "isMultiBranch",
        "branchName",
        "parentStageName",
        "parentStageURL",
        "parentNode",
        "parentStageExecutionURL",
    ] {
        if let Some(v) = registration.get(key) {
            body.insert(key.to_string(), v.clone());
        }
    }
    let execution = registration["parentStageExecutionURL"].clone();
    body.insert("taskExecutionURL".into(), execution.clone());
    body.insert("parentTaskExecutionURL".into(), execution);
    body.insert(
        "orchestrationTaskName".into(),
        registration["parentStageName"].clone(),
    );
    Value::Object(body)
}
