//! The simulated artifact and package registration (ServiceNow's DevOps REST API reference, sections
//! "DevOps - POST /devops/artifact/registration" and "DevOps - POST /devops/package/registration"):
//! the API reference's required fields and length limits, its `create`/`update`/`found` answers, and a
//! small registry of repositories, artifacts, versions, staged requests and packages.
//!
//! An artifact version is *linked* when its build details (pipeline or project name, stage,
//! `taskExecutionNumber`, branch) name a stage execution registered through `POST
//! …/changeControl`; otherwise the request is staged (the API reference: "If a task execution is not found,
//! the request is persisted in the staging table"), as it is when the version is left to the
//! artifact tool. A package whose artifact versions are all known is created with one
//! version-to-package link per artifact; otherwise the request is staged.
//!
//! This module checks the bodies; `registry` keeps what they registered.

use serde::Serialize;
use serde_json::{Map, Value};

use super::model::ChangeQuery;

mod registry;
#[cfg(test)]
mod tests;

pub(crate) use registry::ArtifactRegistry;

/// Seed: names, repository names, versions, pipeline and stage names: "Maximum length: 160".
const MAX_FIELD: usize = 160;
/// Seed (package registration): `branchName` "Maximum length: 200 characters".
const MAX_PACKAGE_BRANCH: usize = 200;
/// Seed (package registration): `taskExecutionNumber` "Maximum length: 128 characters".
const MAX_EXECUTION_NUMBER: usize = 128;

/// Which pipeline run something belongs to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildDetails {
    pub pipeline_name: Option<String>,
    pub project_name: Option<String>,
    pub stage_name: Option<String>,
    pub task_execution_number: Option<String>,
    pub branch_name: Option<String>,
}

impl BuildDetails {
    fn query(&self) -> Option<ChangeQuery> {
        Some(ChangeQuery {
            pipeline: self.pipeline_name.clone(),
            project: self.project_name.clone(),
            stage: self.stage_name.clone(),
            build: self.task_execution_number.clone()?,
            branch: self.branch_name.clone(),
        })
    }

    /// Whether the build details `wanted` names (only what it names) are these.
    fn covers(&self, wanted: &BuildDetails) -> bool {
        let same = |w: &Option<String>, k: &Option<String>| w.is_none() || w == k;
        same(&wanted.pipeline_name, &self.pipeline_name)
            && same(&wanted.project_name, &self.project_name)
            && same(&wanted.stage_name, &self.stage_name)
            && same(&wanted.task_execution_number, &self.task_execution_number)
            && same(&wanted.branch_name, &self.branch_name)
    }
}

/// An artifact version as tests and the admin API see it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactVersionRecord {
    pub sys_id: String,
    pub repository_name: String,
    pub name: String,
    pub version: String,
    pub semantic_version: Option<String>,
    pub build: BuildDetails,
    /// Linked to a registered stage execution; `false`: the request was staged.
    pub linked: bool,
}

/// A package as tests and the admin API see it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PackageRecord {
    /// `None` while the request is staged.
    pub sys_id: Option<String>,
    pub name: String,
    /// The sys_ids of the artifact versions in the package.
    pub artifact_versions: Vec<String>,
    pub staged: bool,
    pub build: BuildDetails,
}

/// One entry of `artifacts`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ArtifactEntry {
    name: String,
    repository: String,
    version: Option<String>,
    semantic_version: Option<String>,
    /// Package registration only: the artifact's own build details.
    build: BuildDetails,
}

/// A checked `POST …/artifact/registration` or `…/package/registration` body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RegistrationRequest {
    /// The package's name (package registration).
    name: Option<String>,
    artifacts: Vec<ArtifactEntry>,
    build: BuildDetails,
}

/// An optional string of at most `max` characters; blank counts as absent.
fn text(
    obj: &Map<String, Value>,
    key: &str,
    prefix: &str,
    max: usize,
) -> Result<Option<String>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) if s.chars().count() > max => Err(format!(
            "{prefix}{key} may be at most {max} characters long"
        )),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("{prefix}{key} must be a string")),
    }
}

fn required(
    obj: &Map<String, Value>,
    key: &str,
    prefix: &str,
    max: usize,
) -> Result<String, String> {
    text(obj, key, prefix, max)?.ok_or_else(|| format!("{prefix}{key} is required"))
}

/// `taskExecutionNumber`: a string (a number is taken as its digits, as Jenkins pipelines
/// often send it).
fn execution_number(obj: &Map<String, Value>, prefix: &str) -> Result<Option<String>, String> {
    match obj.get("taskExecutionNumber") {
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        _ => text(obj, "taskExecutionNumber", prefix, MAX_EXECUTION_NUMBER),
    }
}

fn build_details(
    obj: &Map<String, Value>,
    prefix: &str,
    branch_max: usize,
) -> Result<BuildDetails, String> {
    Ok(BuildDetails {
        pipeline_name: text(obj, "pipelineName", prefix, MAX_FIELD)?,
        project_name: text(obj, "projectName", prefix, MAX_FIELD)?,
        stage_name: text(obj, "stageName", prefix, MAX_FIELD)?,
        task_execution_number: execution_number(obj, prefix)?,
        branch_name: text(obj, "branchName", prefix, branch_max)?,
    })
}

/// The request-level build rules both endpoints share: "pipelineName Required if projectName is
/// not passed", "stageName Required if pipelineName is passed".
fn check_build(build: &BuildDetails) -> Result<(), String> {
    if build.pipeline_name.is_none() && build.project_name.is_none() {
        return Err("pipelineName or projectName is required".into());
    }
    if build.pipeline_name.is_some() && build.stage_name.is_none() {
        return Err("stageName is required when pipelineName is passed".into());
    }
    Ok(())
}

fn artifact_list(body: &Map<String, Value>) -> Result<&Vec<Value>, String> {
    match body.get("artifacts") {
        Some(Value::Array(a)) if !a.is_empty() => Ok(a),
        Some(Value::Array(_)) | None | Some(Value::Null) => {
            Err("artifacts is required: at least one entry".into())
        }
        Some(_) => Err("artifacts must be an array of objects".into()),
    }
}

/// `POST …/artifact/registration`; `has_tool`: a `toolId` (artifact tool) was passed.
pub(crate) fn parse_artifact_registration(
    body: &Map<String, Value>,
    has_tool: bool,
) -> Result<RegistrationRequest, String> {
    let build = build_details(body, "", MAX_FIELD)?;
    check_build(&build)?;
    let mut artifacts = Vec::new();
    for (i, entry) in artifact_list(body)?.iter().enumerate() {
        let prefix = format!("artifacts[{i}].");
        let obj = entry
            .as_object()
            .ok_or_else(|| format!("artifacts[{i}] must be an object"))?;
        let version = text(obj, "version", &prefix, MAX_FIELD)?;
        // Seed: "artifacts.version Required if toolId is not passed".
        if version.is_none() && !has_tool {
            return Err(format!(
                "{prefix}version is required when toolId is not passed"
            ));
        }
        artifacts.push(ArtifactEntry {
            name: required(obj, "name", &prefix, MAX_FIELD)?,
            repository: required(obj, "repositoryName", &prefix, MAX_FIELD)?,
            version,
            semantic_version: text(obj, "semanticVersion", &prefix, MAX_FIELD)?,
            build: BuildDetails::default(),
        });
    }
    Ok(RegistrationRequest {
        name: None,
        artifacts,
        build,
    })
}

/// `POST …/package/registration`.
pub(crate) fn parse_package_registration(
    body: &Map<String, Value>,
) -> Result<RegistrationRequest, String> {
    let name = required(body, "name", "", MAX_FIELD)?;
    let build = build_details(body, "", MAX_PACKAGE_BRANCH)?;
    check_build(&build)?;
    if build.task_execution_number.is_none() {
        return Err("taskExecutionNumber is required".into());
    }
    let mut artifacts = Vec::new();
    for (i, entry) in artifact_list(body)?.iter().enumerate() {
        let prefix = format!("artifacts[{i}].");
        let obj = entry
            .as_object()
            .ok_or_else(|| format!("artifacts[{i}] must be an object"))?;
        let version = text(obj, "version", &prefix, MAX_FIELD)?;
        let own = build_details(obj, &prefix, MAX_FIELD)?;
        // Seed: without `version`, the artifact is found by its own build details.
        if version.is_none() {
            if own.pipeline_name.is_none() && own.project_name.is_none() {
                return Err(format!(
                    "{prefix}pipelineName or {prefix}projectName is required when {prefix}version is not passed"
                ));
            }
            if own.stage_name.is_none() {
                return Err(format!(
                    "{prefix}stageName is required when {prefix}version is not passed"
                ));
            }
            if own.task_execution_number.is_none() {
                return Err(format!(
                    "{prefix}taskExecutionNumber is required when {prefix}version is not passed"
                ));
            }
        }
        artifacts.push(ArtifactEntry {
            name: required(obj, "name", &prefix, MAX_FIELD)?,
            repository: required(obj, "repositoryName", &prefix, MAX_FIELD)?,
            version,
            semantic_version: None,
            build: own,
        });
    }
    Ok(RegistrationRequest {
        name: Some(name),
        artifacts,
        build,
    })
}
