//! The changeControl POST (`DevOpsModel.registerPipelineAndNotify`) and its acknowledgement
//! PUT (`DevOpsModel.sendBuildAndToken`), checked member by member.

use serde_json::{Map, Value};

use super::{
    check_trigger, equal, no_nulls, optional_string, split_task_url, stage_node_params, string,
    string_flag,
};
use crate::protocol::job_segments;

/// What a checked changeControl POST says about its stage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PluginRegistration {
    /// The job URL as Jenkins renders it, with its trailing `/` (`https://ci/job/folder/job/app/`).
    pub(crate) job_url: String,
    /// Jenkins' `JOB_NAME`: the item names along the job URL, decoded once (`folder/app`,
    /// `mb/feature%2Fx`).
    pub(crate) full_name: String,
    /// The job's own item name (`app`, `feature%2Fx`).
    pub(crate) item: String,
    /// The full stage path (`Deploy/Prod`).
    pub(crate) stage: String,
    pub(crate) multibranch: bool,
    pub(crate) freestyle: bool,
    pub(crate) branch: Option<String>,
    /// `orchestrationTaskDetails.buildNumber`.
    pub(crate) build_number: String,
    /// The stage execution URL (`…/42/execution/node/15/wfapi/describe`).
    pub(crate) task_execution_url: String,
}

/// The changeControl POST body exactly as the plugin builds it (the official plugin 6.2.0's "wire format of the
/// official plugin"): every member named there, of the plugin's type, consistent with the task
/// URL, and no `null` members. Unknown extra members are ignored, as ServiceNow ignores them.
pub(crate) fn check_registration(body: &Map<String, Value>) -> Result<PluginRegistration, String> {
    no_nulls(body)?;
    string(body, "callbackURL", "")?;
    let task_url = string(body, "orchestrationTaskURL", "")?;
    let (job_url, stage_in_url) = split_task_url(task_url).ok_or_else(|| {
        format!("orchestrationTaskURL must be the job URL with its last / replaced by #<stage>/, got {task_url:?}")
    })?;
    let multibranch = string_flag(body, "isMultiBranch")?;
    let freestyle = string_flag(body, "isFreestyle")?;
    let branch = branch_of(body, multibranch)?;
    let pipeline_execution_url = string(body, "pipelineExecutionUrl", "")?;
    if !pipeline_execution_url.starts_with(&job_url) {
        return Err(format!(
            "pipelineExecutionUrl must be a build URL of {job_url}, got {pipeline_execution_url:?}"
        ));
    }
    let (item, full_name) = job_names(&job_url, task_url)?;
    // In the POST the plugin overwrites `jobName#stage` with the plain item name.
    equal(
        "orchestrationTaskName",
        string(body, "orchestrationTaskName", "")?,
        &item,
    )?;
    let stage = string(body, "stageName", "")?.to_string();
    equal("stageName", &stage, &stage_in_url)?;
    let stage_execution_url = stage_node_params(body, &item, &stage, task_url)?;

    let at = "orchestrationTaskDetails.";
    let (details, build_number) = task_details(body)?;
    equal(
        "pipelineExecutionUrl",
        pipeline_execution_url,
        &format!("{job_url}{build_number}/"),
    )?;
    equal(
        "orchestrationTaskDetails.fullName",
        string(details, "fullName", at)?,
        &full_name,
    )?;
    let task_execution_url = string(details, "taskExecutionURL", at)?;
    equal(
        "orchestrationTaskDetails.taskExecutionURL",
        task_execution_url,
        &stage_execution_url,
    )?;
    change_request_details_is_object(body)?;
    Ok(PluginRegistration {
        job_url,
        full_name,
        item,
        stage,
        multibranch,
        freestyle,
        branch,
        build_number,
        task_execution_url: task_execution_url.to_string(),
    })
}

/// `branchName`, required (not blank) for a multibranch job.
fn branch_of(body: &Map<String, Value>, multibranch: bool) -> Result<Option<String>, String> {
    let branch = optional_string(body, "branchName", "")?.map(str::to_string);
    if multibranch && branch.as_deref().is_none_or(|b| b.trim().is_empty()) {
        return Err("branchName is required when isMultiBranch is \"true\"".into());
    }
    Ok(branch)
}

/// The job's item name and Jenkins' `JOB_NAME` (`folder/app`) from its URL.
fn job_names(job_url: &str, task_url: &str) -> Result<(String, String), String> {
    let names = job_segments(job_url);
    let item = names
        .last()
        .cloned()
        .ok_or_else(|| format!("orchestrationTaskURL names no Jenkins job: {task_url:?}"))?;
    let full_name = names.join("/");
    Ok((item, full_name))
}

/// `orchestrationTaskDetails`: an object with `message`, the trigger, `userName?` and
/// `buildNumber` as the plugin writes it (a string of digits); the object and the build number.
fn task_details(body: &Map<String, Value>) -> Result<(&Map<String, Value>, String), String> {
    let at = "orchestrationTaskDetails.";
    let details = match body.get("orchestrationTaskDetails") {
        Some(Value::Object(details)) => details,
        None => return Err("orchestrationTaskDetails is required".into()),
        Some(_) => return Err("orchestrationTaskDetails must be an object".into()),
    };
    string(details, "message", at)?;
    check_trigger(details)?;
    optional_string(details, "userName", at)?;
    let build_number = match details.get("buildNumber") {
        Some(Value::String(s)) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.clone()
        }
        None => return Err(format!("{at}buildNumber is required")),
        Some(_) => {
            return Err(format!(
                "{at}buildNumber must be the build number as a string (Integer.toString), as the official plugin sends it"
            ))
        }
    };
    Ok((details, build_number))
}

/// `changeRequestDetails`, when present, is an object.
fn change_request_details_is_object(body: &Map<String, Value>) -> Result<(), String> {
    match body.get("changeRequestDetails") {
        None | Some(Value::Object(_)) => Ok(()),
        Some(_) => Err(
            "changeRequestDetails must be a JSON object (the plugin parses the step's JSON into one)"
                .into(),
        ),
    }
}

/// The acknowledgement `PUT …/changeControl/{token}` as the plugin sends it
/// (`sendBuildAndToken`), checked against what the token was registered with: `callbackURL`,
/// `orchestrationTaskURL`, `taskExecutionURL` (the API reference's required members), `isMultiBranch`,
/// `branchName?`, `orchestrationTaskName` `<item>#<stage>`, `parentTaskExecutionURL` and the
/// stage node params.
///
/// The API reference's table also marks `orchestrationTaskDetails` required, but the plugin never sends
/// it in this PUT: it is checked when present and not demanded, so that the plugin's own form
/// passes.
pub(crate) fn check_acknowledgement(
    body: &Map<String, Value>,
    callback_url: &str,
    task_url: &str,
    registered: &PluginRegistration,
) -> Result<(), String> {
    no_nulls(body)?;
    equal(
        "callbackURL",
        string(body, "callbackURL", "")?,
        callback_url,
    )?;
    equal(
        "orchestrationTaskURL",
        string(body, "orchestrationTaskURL", "")?,
        task_url,
    )?;
    equal(
        "taskExecutionURL",
        string(body, "taskExecutionURL", "")?,
        &registered.task_execution_url,
    )?;
    if string_flag(body, "isMultiBranch")? != registered.multibranch {
        return Err(format!(
            "isMultiBranch must be \"{}\" as registered",
            registered.multibranch
        ));
    }
    let branch = optional_string(body, "branchName", "")?;
    if registered.multibranch && branch != registered.branch.as_deref() {
        return Err(format!(
            "branchName must be {:?} as registered",
            registered.branch.as_deref().unwrap_or_default()
        ));
    }
    // Not overwritten in the PUT, unlike the POST: `jobName#stage`.
    equal(
        "orchestrationTaskName",
        string(body, "orchestrationTaskName", "")?,
        &format!("{}#{}", registered.item, registered.stage),
    )?;
    string(body, "parentTaskExecutionURL", "")?;
    let stage_execution_url =
        stage_node_params(body, &registered.item, &registered.stage, task_url)?;
    equal(
        "parentStageExecutionURL",
        &stage_execution_url,
        &registered.task_execution_url,
    )?;
    match body.get("orchestrationTaskDetails") {
        None => Ok(()),
        Some(Value::Object(details)) => check_trigger(details),
        Some(_) => Err("orchestrationTaskDetails must be an object".into()),
    }
}
