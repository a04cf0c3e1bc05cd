//! The request bodies snowgate sends the DevOps API, field for field as the official plugin
//! 6.2.0 builds them. Fields are declared in the order of their names (the order in which they
//! have always been sent), and an absent optional field is left out, never sent as `null`.
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::GateSpec;

/// `app#Deploy`: the task name used in stepMapping and the acknowledgement.
pub fn stage_task_name(spec: &GateSpec) -> String {
    spec.task_name()
}

/// `"true"` / `"false"`: the plugin sends its flags as strings.
fn flag(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}

/// What the registration needs besides the gate's own request.
pub struct Registration<'a> {
    pub spec: &'a GateSpec,
    pub callback_url: &'a str,
}

/// `orchestrationTaskDetails` as the plugin's `getJobDetailsForPipeline` builds it: the build
/// cause (text, kind, the user or the upstream build), then `buildNumber` as a string,
/// `fullName` (`JOB_NAME`) and the stage execution URL.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskDetails<'a> {
    build_number: &'a str,
    full_name: String,
    message: String,
    #[serde(rename = "taskExecutionURL")]
    task_execution_url: String,
    trigger_type: &'static str,
    #[serde(
        rename = "upstreamTaskExecutionURL",
        skip_serializing_if = "Option::is_none"
    )]
    upstream_task_execution_url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_name: Option<&'a str>,
}

impl<'a> TaskDetails<'a> {
    fn new(spec: &'a GateSpec) -> Self {
        TaskDetails {
            build_number: &spec.build_number,
            full_name: spec.full_name(),
            message: spec.cause_message(),
            task_execution_url: spec.task_execution_url(),
            trigger_type: spec.trigger_type.as_str(),
            upstream_task_execution_url: spec.upstream_task_execution_url.as_deref(),
            user_name: spec.user_name.as_deref(),
        }
    }
}

/// `parentNode`: the stage's own flow node and name (the full path), the enclosing stage's
/// node id (`""` at top level), and the previous stage at its level when there is one.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentNode<'a> {
    id: String,
    name: String,
    parent_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream_stage_name: Option<&'a str>,
    #[serde(
        rename = "upstreamTaskExecutionURL",
        skip_serializing_if = "Option::is_none"
    )]
    upstream_task_execution_url: Option<&'a str>,
}

/// The stage fields every body carries. In the plugin the `parent*` fields all describe the
/// current stage (`DevOpsModel.addStageNodeParams` is given the step's own stage node).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StageNode<'a> {
    parent_node: ParentNode<'a>,
    #[serde(rename = "parentStageExecutionURL")]
    parent_stage_execution_url: String,
    parent_stage_name: String,
    #[serde(rename = "parentStageURL")]
    parent_stage_url: String,
}

impl<'a> StageNode<'a> {
    fn new(spec: &'a GateSpec) -> Self {
        StageNode {
            parent_node: ParentNode {
                id: spec.node_id(),
                name: spec.stage_path(),
                parent_id: spec.parent_stage_id.as_deref().unwrap_or(""),
                upstream_stage_name: spec.upstream_stage_name.as_deref(),
                upstream_task_execution_url: spec.upstream_stage_url.as_deref(),
            },
            parent_stage_execution_url: spec.task_execution_url(),
            parent_stage_name: spec.task_name(),
            parent_stage_url: spec.task_url(),
        }
    }
}

/// The changeControl POST body (`DevOpsModel.registerPipelineAndNotify`):
/// `orchestrationTaskName` is the job's own item name here (the acknowledgement uses
/// `<item>#<stage>`), `stageName` the full stage path.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    branch_name: Option<&'a str>,
    #[serde(rename = "callbackURL")]
    callback_url: &'a str,
    /// The pipeline's own `changeRequestDetails`, passed to ServiceNow as given (any JSON).
    #[serde(skip_serializing_if = "Option::is_none")]
    change_request_details: Option<&'a serde_json::Value>,
    is_freestyle: &'static str,
    is_multi_branch: &'static str,
    orchestration_task_details: TaskDetails<'a>,
    orchestration_task_name: String,
    #[serde(rename = "orchestrationTaskURL")]
    orchestration_task_url: String,
    #[serde(flatten)]
    stage: StageNode<'a>,
    pipeline_execution_url: String,
    stage_name: String,
}

pub fn registration_body<'a>(r: &Registration<'a>) -> RegistrationBody<'a> {
    let spec = r.spec;
    RegistrationBody {
        branch_name: spec.branch_name.as_deref(),
        callback_url: r.callback_url,
        change_request_details: spec.change_request_details.as_ref(),
        is_freestyle: flag(false),
        is_multi_branch: flag(spec.is_multi_branch),
        orchestration_task_details: TaskDetails::new(spec),
        orchestration_task_name: spec.item_name(),
        orchestration_task_url: spec.task_url(),
        stage: StageNode::new(spec),
        pipeline_execution_url: spec.pipeline_execution_url(),
        stage_name: spec.stage_path(),
    }
}

/// The acknowledgement `PUT changeControl/{token}` body, as the plugin's `sendBuildAndToken`
/// builds it: no `stageName`, `orchestrationTaskDetails`, `isFreestyle` or
/// `pipelineExecutionUrl`; `orchestrationTaskName` is `<item>#<stage path>`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Acknowledgement<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    branch_name: Option<&'a str>,
    #[serde(rename = "callbackURL")]
    callback_url: &'a str,
    is_multi_branch: &'static str,
    orchestration_task_name: String,
    #[serde(rename = "orchestrationTaskURL")]
    orchestration_task_url: String,
    #[serde(flatten)]
    stage: StageNode<'a>,
    #[serde(rename = "parentTaskExecutionURL")]
    parent_task_execution_url: String,
    #[serde(rename = "taskExecutionURL")]
    task_execution_url: String,
}

pub fn acknowledgement_body<'a>(spec: &'a GateSpec, callback_url: &'a str) -> Acknowledgement<'a> {
    let execution = spec.task_execution_url();
    Acknowledgement {
        branch_name: spec.branch_name.as_deref(),
        callback_url,
        is_multi_branch: flag(spec.is_multi_branch),
        orchestration_task_name: spec.task_name(),
        orchestration_task_url: spec.task_url(),
        stage: StageNode::new(spec),
        parent_task_execution_url: execution.clone(),
        task_execution_url: execution,
    }
}

/// The stepMapping POST body (`DevOpsModel` step association): the task URL and name, the
/// branch, then the stage fields.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StepMapping<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    branch_name: Option<&'a str>,
    is_multi_branch: &'static str,
    orchestration_task_name: String,
    #[serde(rename = "orchestrationTaskURL")]
    orchestration_task_url: String,
    #[serde(flatten)]
    stage: StageNode<'a>,
}

impl<'a> StepMapping<'a> {
    pub(crate) fn new(spec: &'a GateSpec) -> Self {
        StepMapping {
            branch_name: spec.branch_name.as_deref(),
            is_multi_branch: flag(spec.is_multi_branch),
            orchestration_task_name: spec.task_name(),
            orchestration_task_url: spec.task_url(),
            stage: StageNode::new(spec),
        }
    }
}

/// A stage event as the plugin sends it for a tracked run: the run is in progress
/// (`phase` STARTED), `stageModel` says what the stage did.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StageEvent {
    is_multi_branch: &'static str,
    job_model: JobModel,
    number: u64,
    phase: &'static str,
    pronoun: &'static str,
    stage_model: StageModel,
    timestamp: i64,
    url: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct JobModel {
    full_name: String,
    name: String,
    url: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct StageModel {
    /// Milliseconds since the gate opened, once the stage completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    duration: Option<i64>,
    id: String,
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_stage_name: Option<String>,
    phase: &'static str,
    pipeline_execution_url: String,
    /// `SUCCESS` or `FAILURE`, once the stage completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'static str>,
    timestamp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream_stage_name: Option<String>,
    #[serde(
        rename = "upstreamTaskExecutionURL",
        skip_serializing_if = "Option::is_none"
    )]
    upstream_task_execution_url: Option<String>,
    url: String,
}

impl StageEvent {
    pub fn started(spec: &GateSpec, opened: DateTime<Utc>) -> StageEvent {
        Self::build(spec, opened, None)
    }

    pub fn completed(spec: &GateSpec, opened: DateTime<Utc>, success: bool) -> StageEvent {
        Self::build(spec, opened, Some(success))
    }

    fn build(spec: &GateSpec, opened: DateTime<Utc>, completed: Option<bool>) -> StageEvent {
        let now = Utc::now();
        let build = spec.pipeline_execution_url();
        let stage = StageModel {
            duration: completed.map(|_| (now - opened).num_milliseconds().max(0)),
            id: spec.node_id(),
            name: spec.stage_path(),
            parent_stage_name: spec.parent_stage_name.clone(),
            phase: if completed.is_some() {
                "COMPLETED"
            } else {
                "STARTED"
            },
            pipeline_execution_url: build.clone(),
            result: completed.map(|success| if success { "SUCCESS" } else { "FAILURE" }),
            timestamp: now.timestamp_millis(),
            upstream_stage_name: spec.upstream_stage_name.clone(),
            upstream_task_execution_url: spec.upstream_stage_url.clone(),
            url: spec.task_execution_url(),
        };
        StageEvent {
            is_multi_branch: flag(spec.is_multi_branch),
            job_model: JobModel {
                full_name: spec.full_name(),
                name: spec.item_name(),
                url: spec.job_url.clone(),
            },
            number: spec.build_number.parse().unwrap_or_default(),
            phase: "STARTED",
            pronoun: if spec.is_multi_branch {
                "Branch"
            } else {
                "Pipeline"
            },
            stage_model: stage,
            timestamp: now.timestamp_millis(),
            url: build,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bodies are sent with their fields in the order of their names, as they always were.
    #[test]
    fn fields_go_out_in_name_order() {
        let spec = GateSpec::parse_with_default(
            &serde_json::json!({
                "jobUrl": "https://ci/job/app/", "buildNumber": "7", "stageName": "Deploy",
                "branchName": "main", "changeRequestDetails": {"b": 1, "a": 2}
            }),
            crate::configuration::GateMode::Devops,
        )
        .unwrap();
        let r = Registration {
            spec: &spec,
            callback_url: "https://sg/cb",
        };
        let bodies = [
            serde_json::to_string(&registration_body(&r)).unwrap(),
            serde_json::to_string(&acknowledgement_body(&spec, "https://sg/cb")).unwrap(),
            serde_json::to_string(&StepMapping::new(&spec)).unwrap(),
            serde_json::to_string(&StageEvent::completed(&spec, Utc::now(), true)).unwrap(),
        ];
        for text in bodies {
            let sorted = serde_json::from_str::<serde_json::Value>(&text)
                .unwrap()
                .to_string();
            assert_eq!(text, sorted);
        }
    }
}
