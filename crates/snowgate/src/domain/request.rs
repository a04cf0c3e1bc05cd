//! Parsing an open-gate request into a [`GateSpec`]: every field checked once, by name
//! (`POST /api/v1/gates`, README "HTTP API"). After this, nothing re-checks a field.
use serde::{Deserialize, Serialize};

use serde_json::Value;

use crate::configuration::GateMode;
pub use crate::domain::fields::{kind, Fields};

/// A request field that is missing, of the wrong type or out of bounds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct FieldError {
    pub field: String,
    pub problem: String,
}

impl FieldError {
    pub fn new(field: &str, problem: impl Into<String>) -> Self {
        FieldError {
            field: field.to_string(),
            problem: problem.into(),
        }
    }
}

/// `stageName` may hold at most this many characters (ServiceNow's `stageName` limit).
pub const MAX_STAGE_NAME: usize = 160;
pub const MAX_URL: usize = 2048;
pub const MAX_NAME: usize = 255;
pub const MAX_MESSAGE: usize = 4000;
/// Longest timeout or polling interval accepted: 30 days.
pub const MAX_SECS: u64 = 30 * 24 * 3600;
/// Fields ServiceNow refuses in `changeRequestDetails.attributes` (ServiceNow's DevOps API, POST changeControl).
pub const FORBIDDEN_ATTRIBUTES: [&str; 5] =
    ["impact", "number", "risk", "risk_impact_analysis", "sys_id"];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TriggerType {
    User,
    Scm,
    Upstream,
}

impl TriggerType {
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerType::User => "user",
            TriggerType::Scm => "scm",
            TriggerType::Upstream => "upstream",
        }
    }
}

/// A validated gate request, stored with the gate (it is what registration and the
/// acknowledgement send to ServiceNow).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GateSpec {
    pub job_url: String,
    pub build_number: String,
    pub stage_name: String,
    pub build_url: Option<String>,
    pub branch_name: Option<String>,
    pub is_multi_branch: bool,
    /// The enclosing stage's path, when `stageName` is the inner stage's own name.
    pub parent_stage_name: Option<String>,
    /// The enclosing stage's flow node id (`parentNode.parentId`; `""` at top level).
    pub parent_stage_id: Option<String>,
    /// Jenkins' `JOB_NAME` (`folder/app`); derived from the job URL when not given.
    #[serde(default)]
    pub job_name: Option<String>,
    /// The stage's own flow node id (`parentNode.id`, and the stage execution URL).
    #[serde(default)]
    pub flow_node_id: Option<String>,
    /// The previous stage at the same level, and its execution URL (`parentNode.upstream…`).
    #[serde(default)]
    pub upstream_stage_name: Option<String>,
    #[serde(default)]
    pub upstream_stage_url: Option<String>,
    pub trigger_type: TriggerType,
    /// The upstream build's URL when an upstream build triggered this one.
    pub upstream_task_execution_url: Option<String>,
    /// The user who started the build, for a `user` trigger.
    #[serde(default)]
    pub user_name: Option<String>,
    /// The stage execution URL (`<build>execution/node/<id>/wfapi/describe`), when the pipeline
    /// gives it; otherwise built from `buildUrl` and `flowNodeId`.
    pub task_execution_url: Option<String>,
    /// The build cause's text (`Started by user alice`).
    pub message: Option<String>,
    pub change_request_details: Option<Value>,
    pub input_id: Option<String>,
    pub polling_interval_secs: Option<u64>,
    pub change_creation_timeout_secs: Option<u64>,
    pub abort_on_change_creation_failure: bool,
    pub change_step_timeout_secs: Option<u64>,
    pub abort_on_change_step_timeout: bool,
    pub ignore_errors: bool,
    #[serde(default)]
    pub mode: GateMode,
    /// Change mode: the deployment's environment (`Production`).
    #[serde(default)]
    pub environment: Option<String>,
    /// Change mode: check only this CR.
    #[serde(default)]
    pub change_request_number: Option<String>,
    /// Change mode: create an emergency change.
    #[serde(default)]
    pub emergency: bool,
    /// Change mode: create a standard change from this template (overrides the configured one).
    #[serde(default)]
    pub standard_change_template: Option<String>,
    /// Change mode: write work notes on the CR (`change.work_notes` when the gate was opened).
    #[serde(default)]
    pub work_notes: bool,
    /// Opening this gate decides older builds' open gates of the same job, branch and stage
    /// `superseded` (the request's `supersede`, or `supersede.jobs` when the gate was opened).
    #[serde(default)]
    pub supersede: bool,
}

impl GateSpec {
    /// Whether `self` is an older build of the same job, branch and stage as `newer`: what a
    /// gate opened with `supersede` replaces. Build numbers (digits) compare as numbers, as
    /// Jenkins counts builds.
    pub fn is_older_run_of(&self, newer: &GateSpec) -> bool {
        let number = |s: &GateSpec| s.build_number.parse::<u64>().ok();
        self.job_url == newer.job_url
            && self.stage_name == newer.stage_name
            && self.branch_name == newer.branch_name
            && matches!((number(self), number(newer)), (Some(old), Some(new)) if old < new)
    }

    /// The stage path used in task URLs and names: nested stages are joined with `/`.
    pub fn stage_path(&self) -> String {
        match &self.parent_stage_name {
            Some(p) if !self.stage_name.starts_with(&format!("{p}/")) => {
                format!("{p}/{}", self.stage_name)
            }
            _ => self.stage_name.clone(),
        }
    }

    /// The build URL (`pipelineExecutionUrl`): given by the pipeline, else
    /// `<jobUrl><buildNumber>/`, which is how Jenkins renders it.
    pub fn pipeline_execution_url(&self) -> String {
        match &self.build_url {
            Some(u) => u.clone(),
            None => format!("{}{}/", with_slash(&self.job_url), self.build_number),
        }
    }

    /// The stage execution URL (`taskExecutionURL`): given by the pipeline; else
    /// `<build URL>execution/node/<flowNodeId>/wfapi/describe`; else the build URL.
    pub fn task_execution_url(&self) -> String {
        if let Some(u) = &self.task_execution_url {
            return u.clone();
        }
        let build = self.pipeline_execution_url();
        match &self.flow_node_id {
            Some(id) => format!("{}execution/node/{id}/wfapi/describe", with_slash(&build)),
            None => build,
        }
    }

    /// The build cause's text (`orchestrationTaskDetails.message`, always sent by the plugin):
    /// as given, else Jenkins' own wording for the trigger.
    pub fn cause_message(&self) -> String {
        if let Some(m) = &self.message {
            return m.clone();
        }
        match (self.trigger_type, &self.user_name) {
            (TriggerType::User, Some(user)) => format!("Started by user {user}"),
            (TriggerType::User, None) => "Started by user".to_string(),
            (TriggerType::Scm, _) => "Started by an SCM change".to_string(),
            (TriggerType::Upstream, _) => "Started by upstream project".to_string(),
        }
    }

    /// `parentNode.id`: the stage's flow node id; the stage path when the pipeline did not say
    /// (the plugin always sends an id, and a stage path is unique within its build).
    pub fn node_id(&self) -> String {
        self.flow_node_id
            .clone()
            .unwrap_or_else(|| self.stage_path())
    }

    /// The stage task URL: the job URL with its last `/` replaced by `#<stage path>/`.
    pub fn task_url(&self) -> String {
        crate::domain::names::stage_task_url(&self.job_url, &self.stage_path())
    }

    /// The job's item name (`app`, `feature%2Fx`).
    pub fn item_name(&self) -> String {
        crate::domain::names::item_name(&self.job_url)
    }

    /// `<item>#<stage path>`: the task's name in the acknowledgement, stepMapping and the
    /// registration's `parentStageName`.
    pub fn task_name(&self) -> String {
        format!("{}#{}", self.item_name(), self.stage_path())
    }

    /// Jenkins' `JOB_NAME`: as given, else from the job URL.
    pub fn full_name(&self) -> String {
        self.job_name
            .clone()
            .unwrap_or_else(|| crate::domain::names::full_name(&self.job_url))
    }

    /// Parse the JSON body of `POST /api/v1/gates` (gates that do not say are DevOps gates).
    pub fn parse(body: &Value) -> Result<GateSpec, FieldError> {
        Self::parse_with_default(body, GateMode::Devops)
    }

    /// Parse, with `default_mode` (`servicenow.default_mode`) for gates that do not say.
    pub fn parse_with_default(
        body: &Value,
        default_mode: GateMode,
    ) -> Result<GateSpec, FieldError> {
        let obj = body
            .as_object()
            .ok_or_else(|| FieldError::new("body", "must be a JSON object"))?;
        let f = Fields(obj);
        let job_url = f.url("jobUrl")?.ok_or_else(|| f.missing("jobUrl"))?;
        let build_number = f
            .build_number("buildNumber")?
            .ok_or_else(|| f.missing("buildNumber"))?;
        let stage_name = f
            .string("stageName", MAX_STAGE_NAME)?
            .ok_or_else(|| f.missing("stageName"))?;
        let (trigger_type, upstream_task_execution_url) = f.trigger()?;
        let change_request_details = f.change_request_details("changeRequestDetails")?;
        let input_id = f.input()?;
        let mode = f.mode(default_mode)?;
        let environment = f.string("environment", MAX_NAME)?;
        let change_request_number = f.change_request_number()?;
        if mode == GateMode::Change && environment.is_none() {
            return Err(FieldError::new(
                "environment",
                "is required for a change-mode gate (the environment being deployed to)",
            ));
        }
        Ok(GateSpec {
            job_url,
            build_number,
            stage_name,
            build_url: f.url("buildUrl")?,
            branch_name: f.string("branchName", MAX_NAME)?,
            is_multi_branch: f.boolean("isMultiBranch")?.unwrap_or(false),
            parent_stage_name: f.string("parentStageName", MAX_STAGE_NAME)?,
            parent_stage_id: f.node_id("parentStageId")?,
            job_name: f.string("jobName", MAX_NAME)?,
            flow_node_id: f.node_id("flowNodeId")?,
            upstream_stage_name: f.string("upstreamStageName", MAX_STAGE_NAME)?,
            upstream_stage_url: f.url("upstreamStageUrl")?,
            trigger_type,
            upstream_task_execution_url,
            user_name: f.string("userName", MAX_NAME)?,
            task_execution_url: f.url("taskExecutionUrl")?,
            message: f.string("message", MAX_MESSAGE)?,
            change_request_details,
            input_id,
            polling_interval_secs: f.seconds("pollingIntervalSecs")?,
            change_creation_timeout_secs: f.seconds("changeCreationTimeoutSecs")?,
            abort_on_change_creation_failure: f
                .boolean("abortOnChangeCreationFailure")?
                .unwrap_or(true),
            change_step_timeout_secs: f.seconds("changeStepTimeoutSecs")?,
            abort_on_change_step_timeout: f.boolean("abortOnChangeStepTimeout")?.unwrap_or(true),
            ignore_errors: f.boolean("ignoreErrors")?.unwrap_or(false),
            mode,
            environment,
            change_request_number,
            emergency: f.boolean("emergency")?.unwrap_or(false),
            standard_change_template: f.string("standardChangeTemplate", MAX_NAME)?,
            work_notes: false,
            supersede: f.boolean("supersede")?.unwrap_or(false),
        })
    }
}

/// `u` with one trailing `/`.
fn with_slash(u: &str) -> String {
    if u.ends_with('/') {
        u.to_string()
    } else {
        format!("{u}/")
    }
}

/// The gate fields that are more than one value or one choice.
impl Fields<'_> {
    /// `triggerType` (default `user`) and the `upstreamTaskExecutionUrl` an upstream trigger needs.
    fn trigger(&self) -> Result<(TriggerType, Option<String>), FieldError> {
        let trigger_type = match self.string("triggerType", 16)?.as_deref() {
            None | Some("user") => TriggerType::User,
            Some("scm") => TriggerType::Scm,
            Some("upstream") => TriggerType::Upstream,
            Some(other) => {
                return Err(FieldError::new(
                    "triggerType",
                    format!("must be user, scm or upstream, not `{other}`"),
                ))
            }
        };
        let upstream_task_execution_url = self.url("upstreamTaskExecutionUrl")?;
        if trigger_type == TriggerType::Upstream && upstream_task_execution_url.is_none() {
            return Err(FieldError::new(
                "upstreamTaskExecutionUrl",
                "is required when triggerType is upstream",
            ));
        }
        Ok((trigger_type, upstream_task_execution_url))
    }

    /// `input: {"id": …}`: the Jenkins `input` step to answer.
    fn input(&self) -> Result<Option<String>, FieldError> {
        match self.0.get("input") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(i)) => {
                Ok(Some(Fields(i).input_id("input.id")?.ok_or_else(|| {
                    FieldError::new("input.id", "is required when input is given")
                })?))
            }
            Some(_) => Err(FieldError::new(
                "input",
                "must be an object like {\"id\": \"SnowgateApproval\"}",
            )),
        }
    }

    /// `mode`: `devops` or `change`, else the configured default.
    fn mode(&self, default_mode: GateMode) -> Result<GateMode, FieldError> {
        match self.string("mode", 16)?.as_deref() {
            None => Ok(default_mode),
            Some("devops") => Ok(GateMode::Devops),
            Some("change") => Ok(GateMode::Change),
            Some(other) => Err(FieldError::new(
                "mode",
                format!("must be devops or change, not `{other}`"),
            )),
        }
    }

    /// `changeRequestNumber`: letters and digits only (it travels in a ServiceNow query).
    fn change_request_number(&self) -> Result<Option<String>, FieldError> {
        let n = self.string("changeRequestNumber", 40)?;
        if n.as_deref()
            .is_some_and(|n| !n.chars().all(|c| c.is_ascii_alphanumeric()))
        {
            return Err(FieldError::new(
                "changeRequestNumber",
                "must be a change request number such as CHG0030001",
            ));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Value {
        json!({"jobUrl": "https://ci.example.com/job/app/", "buildNumber": 42, "stageName": "Deploy"})
    }

    fn with(field: &str, value: Value) -> Value {
        let mut b = base();
        b[field] = value;
        b
    }

    #[test]
    fn an_older_build_of_the_same_job_branch_and_stage_is_an_older_run() {
        let spec = |build: Value, stage: &str, branch: Option<&str>| {
            let mut b = with("buildNumber", build);
            b["stageName"] = json!(stage);
            if let Some(branch) = branch {
                b["branchName"] = json!(branch);
            }
            GateSpec::parse(&b).unwrap()
        };
        let newer = spec(json!(10), "Deploy", Some("main"));
        assert!(spec(json!(9), "Deploy", Some("main")).is_older_run_of(&newer));
        assert!(spec(json!("2"), "Deploy", Some("main")).is_older_run_of(&newer));
        // Not older: the same or a later build, another stage or branch.
        assert!(!spec(json!(10), "Deploy", Some("main")).is_older_run_of(&newer));
        assert!(!spec(json!(11), "Deploy", Some("main")).is_older_run_of(&newer));
        assert!(!spec(json!(9), "Test", Some("main")).is_older_run_of(&newer));
        assert!(!spec(json!(9), "Deploy", Some("dev")).is_older_run_of(&newer));
        assert!(!spec(json!(9), "Deploy", None).is_older_run_of(&newer));
        assert!(!GateSpec::parse(&base()).unwrap().supersede);
        assert!(
            GateSpec::parse(&with("supersede", json!(true)))
                .unwrap()
                .supersede
        );
    }

    #[test]
    fn a_minimal_request_parses_with_the_plugin_defaults() {
        let s = GateSpec::parse(&base()).unwrap();
        assert_eq!(s.build_number, "42");
        assert_eq!(s.trigger_type, TriggerType::User);
        assert!(s.abort_on_change_creation_failure && s.abort_on_change_step_timeout);
        assert!(!s.ignore_errors);
    }

    #[test]
    fn bad_fields_are_named() {
        let cases = [
            (json!({"buildNumber": 1, "stageName": "x"}), "jobUrl"),
            (with("jobUrl", json!("not a url")), "jobUrl"),
            (with("buildNumber", json!("4x")), "buildNumber"),
            (with("buildNumber", json!(true)), "buildNumber"),
            (with("stageName", json!("s".repeat(161))), "stageName"),
            (with("stageName", json!(5)), "stageName"),
            (with("triggerType", json!("cron")), "triggerType"),
            (
                with("triggerType", json!("upstream")),
                "upstreamTaskExecutionUrl",
            ),
            (
                with("changeRequestDetails", json!("x")),
                "changeRequestDetails",
            ),
            (
                with("pollingIntervalSecs", json!(-1)),
                "pollingIntervalSecs",
            ),
            (with("ignoreErrors", json!("yes")), "ignoreErrors"),
            (with("supersede", json!("yes")), "supersede"),
            (with("input", json!({"id": "has space"})), "input.id"),
            (with("mode", json!("other")), "mode"),
            (with("mode", json!("change")), "environment"),
            (
                with("changeRequestNumber", json!("CHG 1")),
                "changeRequestNumber",
            ),
        ];
        for (body, field) in cases {
            let err = GateSpec::parse(&body).unwrap_err();
            assert_eq!(err.field, field, "{body}");
        }
    }

    #[test]
    fn forbidden_attributes_are_refused() {
        for key in FORBIDDEN_ATTRIBUTES {
            let body = with("changeRequestDetails", json!({"attributes": {key: "x"}}));
            let err = GateSpec::parse(&body).unwrap_err();
            assert_eq!(err.field, format!("changeRequestDetails.attributes.{key}"));
        }
    }

    #[test]
    fn nested_stages_join_with_a_slash() {
        let s = GateSpec::parse(&with("parentStageName", json!("Deploy"))).unwrap();
        assert_eq!(s.stage_path(), "Deploy/Deploy");
        let mut b = base();
        b["stageName"] = json!("Prod");
        b["parentStageName"] = json!("Deploy");
        assert_eq!(GateSpec::parse(&b).unwrap().stage_path(), "Deploy/Prod");
    }

    #[test]
    fn numbers_may_come_as_numeric_strings() {
        let s = GateSpec::parse(&with("changeStepTimeoutSecs", json!("120"))).unwrap();
        assert_eq!(s.change_step_timeout_secs, Some(120));
        let s = GateSpec::parse(&with("changeStepTimeoutSecs", json!("0"))).unwrap();
        assert_eq!(s.change_step_timeout_secs, None);
    }
}
