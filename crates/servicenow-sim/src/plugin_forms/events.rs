//! Stage and run events (`POST …/devops/tool/orchestration`) in the plugin's
//! `DevOpsRunStatusModel` shape.

use serde_json::{Map, Value};

use super::{equal, no_nulls, optional_string, string};

/// A stage or run event `POST …/devops/tool/orchestration` in the plugin's
/// `DevOpsRunStatusModel` shape: `{url, number, phase, result?, pronoun, isMultiBranch,
/// timestamp, jobModel{name,url,fullName}, stageModel{…}}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StageEvent {
    /// `jobModel.url`.
    pub(crate) job_url: String,
    /// `stageModel.name` (the full stage path), `None` for a run event (empty `stageModel`).
    pub(crate) stage: Option<String>,
    /// `stageModel.phase` for a stage event, the top-level `phase` for a run event.
    pub(crate) phase: String,
    /// `number`.
    pub(crate) build_number: u64,
}

fn phase(object: &Map<String, Value>, at: &str) -> Result<String, String> {
    match string(object, "phase", at)? {
        p @ ("STARTED" | "COMPLETED") => Ok(p.to_string()),
        other => Err(format!(
            "{at}phase must be STARTED or COMPLETED (got {other:?})"
        )),
    }
}

pub(crate) fn check_event(body: &Map<String, Value>) -> Result<StageEvent, String> {
    no_nulls(body)?;
    let url = string(body, "url", "")?;
    let build_number = body
        .get("number")
        .and_then(Value::as_u64)
        .ok_or("number is required: the build number as a JSON number")?;
    let run_phase = phase(body, "")?;
    string(body, "pronoun", "")?;
    if !body.contains_key("isMultiBranch") {
        return Err("isMultiBranch is required".into());
    }
    if !body.get("timestamp").is_some_and(Value::is_number) {
        return Err("timestamp is required: milliseconds since the epoch".into());
    }
    let job_url = job_url_of(body, url)?;
    let stage_model = match body.get("stageModel") {
        Some(Value::Object(stage)) => stage,
        None => return Err("stageModel is required (empty for a run event)".into()),
        Some(_) => return Err("stageModel must be an object".into()),
    };
    if stage_model.is_empty() {
        return Ok(StageEvent {
            job_url: job_url.to_string(),
            stage: None,
            phase: run_phase,
            build_number,
        });
    }
    stage_event(stage_model, url, job_url, build_number)
}

/// `jobModel`: `{name, fullName, url}`, the job URL (with its trailing `/`) that `url`, the
/// build URL, starts with.
fn job_url_of<'a>(body: &'a Map<String, Value>, url: &str) -> Result<&'a str, String> {
    let job = match body.get("jobModel") {
        Some(Value::Object(job)) => job,
        None => return Err("jobModel is required".into()),
        Some(_) => return Err("jobModel must be an object".into()),
    };
    string(job, "name", "jobModel.")?;
    string(job, "fullName", "jobModel.")?;
    let job_url = string(job, "url", "jobModel.")?;
    if !job_url.ends_with('/') || !url.starts_with(job_url) {
        return Err(format!(
            "url must be a build URL of jobModel.url {job_url:?}, got {url:?}"
        ));
    }
    Ok(job_url)
}

/// A stage event's `stageModel` (not empty): `{name, id, phase, url, pipelineExecutionUrl?,
/// result?, upstream and parent names?}`, its `url` a stage execution URL of the build.
fn stage_event(
    stage_model: &Map<String, Value>,
    url: &str,
    job_url: &str,
    build_number: u64,
) -> Result<StageEvent, String> {
    let at = "stageModel.";
    let stage = string(stage_model, "name", at)?.to_string();
    string(stage_model, "id", at)?;
    let stage_phase = phase(stage_model, at)?;
    let stage_url = string(stage_model, "url", at)?;
    if !stage_url.starts_with(url) {
        return Err(format!(
            "stageModel.url must be a stage execution URL of the build {url:?}, got {stage_url:?}"
        ));
    }
    if let Some(pipeline) = optional_string(stage_model, "pipelineExecutionUrl", at)? {
        equal("stageModel.pipelineExecutionUrl", pipeline, url)?;
    }
    for key in [
        "result",
        "upstreamStageName",
        "upstreamTaskExecutionURL",
        "parentStageName",
        "parentExecutionUrl",
    ] {
        optional_string(stage_model, key, at)?;
    }
    Ok(StageEvent {
        job_url: job_url.to_string(),
        stage: Some(stage),
        phase: stage_phase,
        build_number,
    })
}
