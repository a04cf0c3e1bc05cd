//! The bodies of `POST /api/v1/artifacts` and `POST /api/v1/packages`, checked by the field
//! rules of ServiceNow's DevOps API (artifact and package registration) and normalised the way
//! the official plugin sends them.
use serde_json::{Map, Value};

use crate::domain::names::full_name;
use crate::domain::request::{kind, Fields};
use crate::domain::FieldError;
use crate::servicenow::passthrough::Registration;

/// ServiceNow's DevOps API (artifact and package registration): names, versions, pipeline and stage names hold at
/// most 160 characters.
const MAX_FIELD: usize = 160;

/// ServiceNow's DevOps API (package registration): `branchName` "Maximum length: 200 characters".
const MAX_PACKAGE_BRANCH: usize = 200;

/// ServiceNow's DevOps API (package registration): `taskExecutionNumber` "Maximum length: 128 characters"; the
/// same bound serves changeInfo's `buildNumber`.
pub(super) const MAX_EXECUTION_NUMBER: usize = 128;

/// Fields of the artifact/package requests that are snowgate's own and not sent on.
const SNOWGATE_FIELDS: [&str; 3] = ["artifactToolId", "jobUrl", "buildUrl"];

fn nested(prefix: &str, e: FieldError) -> FieldError {
    FieldError::new(&format!("{prefix}{}", e.field), e.problem)
}

/// `taskExecutionNumber` as the string ServiceNow wants (pipelines often send a number).
fn execution_number(
    obj: &mut Map<String, Value>,
    prefix: &str,
) -> Result<Option<String>, FieldError> {
    let name = "taskExecutionNumber";
    let text = match obj.get(name) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(FieldError::new(
                &format!("{prefix}{name}"),
                format!("must be a string or a number, not {}", kind(other)),
            ))
        }
    };
    obj.insert(name.to_string(), Value::String(text));
    Fields(obj)
        .string(name, MAX_EXECUTION_NUMBER)
        .map_err(|e| nested(prefix, e))
}

/// Checks one entry of `artifacts` (ServiceNow's field rules) and normalizes it.
fn check_artifact(
    target: Registration,
    entry: &mut Value,
    prefix: &str,
    has_artifact_tool: bool,
) -> Result<(), FieldError> {
    let obj = entry
        .as_object_mut()
        .ok_or_else(|| FieldError::new(prefix.trim_end_matches('.'), "must be an object"))?;
    let task_execution = execution_number(obj, prefix)?;
    let f = Fields(obj);
    let s = |name: &str, max: usize| f.string(name, max).map_err(|e| nested(prefix, e));
    for required in ["name", "repositoryName"] {
        if s(required, MAX_FIELD)?.is_none() {
            return Err(FieldError::new(
                &format!("{prefix}{required}"),
                "is required",
            ));
        }
    }
    let version = s("version", MAX_FIELD)?;
    match target {
        Registration::Artifact => {
            s("semanticVersion", MAX_FIELD)?;
            s("branchName", MAX_FIELD)?;
            // ServiceNow's DevOps API: "artifacts.version Required if toolId is not passed".
            if version.is_none() && !has_artifact_tool {
                return Err(FieldError::new(
                    &format!("{prefix}version"),
                    "is required unless artifactToolId names the artifact tool that knows it",
                ));
            }
        }
        Registration::Package => {
            let pipeline = s("pipelineName", MAX_FIELD)?;
            let project = s("projectName", MAX_FIELD)?;
            let stage = s("stageName", MAX_FIELD)?;
            s("branchName", MAX_FIELD)?;
            // ServiceNow's DevOps API: without a version, the artifact is found by its build details.
            if version.is_none() {
                let missing = if pipeline.is_none() && project.is_none() {
                    Some("pipelineName")
                } else if stage.is_none() {
                    Some("stageName")
                } else if task_execution.is_none() {
                    Some("taskExecutionNumber")
                } else {
                    None
                };
                if let Some(m) = missing {
                    return Err(FieldError::new(
                        &format!("{prefix}{m}"),
                        "is required when the artifact has no version (it is found by its build details)",
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The official plugin's package step: an artifact marked `"currentBuildInfo": true` loses the
/// mark and gets the request's build details where it has none of its own (its
/// `addBuildDetails`), so it is found by this build rather than by a version.
fn add_current_build(artifacts: &mut [Value], build: &[(&str, Value)]) {
    for artifact in artifacts.iter_mut().filter_map(Value::as_object_mut) {
        let marked = matches!(artifact.get("currentBuildInfo"), Some(Value::Bool(true)))
            || matches!(artifact.get("currentBuildInfo"), Some(Value::String(s)) if s == "true");
        if !marked {
            continue;
        }
        artifact.remove("currentBuildInfo");
        for (k, v) in build {
            if artifact.get(*k).is_none_or(Value::is_null) {
                artifact.insert(k.to_string(), v.clone());
            }
        }
    }
}

/// The body of `POST /artifacts` or `/packages`: ServiceNow's body fields, checked and passed on
/// (unknown fields too), without snowgate's own `artifactToolId`, `jobUrl` and `buildUrl`.
/// Without `pipelineName` or `projectName`, a `jobUrl` gives `pipelineName` as Jenkins'
/// `JOB_NAME` (what the official plugin sends). In a package, artifacts marked
/// `"currentBuildInfo": true` get this build's details (see [`add_current_build`]). Returns the
/// body to send and the artifact tool.
pub fn registration_body(
    target: Registration,
    body: &Value,
) -> Result<(Value, Option<String>), FieldError> {
    let obj = body
        .as_object()
        .ok_or_else(|| FieldError::new("body", "must be a JSON object"))?;
    let f = Fields(obj);
    let artifact_tool = artifact_tool_id(&f)?;
    let job_url = f.url("jobUrl")?;
    f.url("buildUrl")?;
    let mut out = obj.clone();
    for k in SNOWGATE_FIELDS {
        out.remove(k);
    }
    pipeline_and_stage(&f, job_url.as_deref(), &mut out)?;
    let branch_max = match target {
        Registration::Artifact => MAX_FIELD,
        Registration::Package => MAX_PACKAGE_BRANCH,
    };
    f.string("branchName", branch_max)?;
    let task_execution = execution_number(&mut out, "")?;
    if target == Registration::Package {
        package_needs(&f, task_execution.as_deref())?;
    }
    let build: Vec<(&str, Value)> = BUILD_FIELDS
        .iter()
        .filter_map(|k| {
            out.get(*k)
                .filter(|v| !v.is_null())
                .map(|v| (*k, v.clone()))
        })
        .collect();
    let artifacts = artifacts_of(&mut out)?;
    if target == Registration::Package {
        add_current_build(artifacts, &build);
    }
    for (i, entry) in artifacts.iter_mut().enumerate() {
        check_artifact(
            target,
            entry,
            &format!("artifacts[{i}]."),
            artifact_tool.is_some(),
        )?;
    }
    Ok((Value::Object(out), artifact_tool))
}

/// `artifactToolId`: the sys_id of an artifact tool, when given.
fn artifact_tool_id(f: &Fields<'_>) -> Result<Option<String>, FieldError> {
    let artifact_tool = f.string("artifactToolId", 64)?;
    if let Some(t) = &artifact_tool {
        if !t.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(FieldError::new(
                "artifactToolId",
                "must be the sys_id of an artifact tool (letters and digits)",
            ));
        }
    }
    Ok(artifact_tool)
}

/// `pipelineName` (or `projectName`, or one derived from `jobUrl` into `out`), and the
/// `stageName` a pipeline needs.
fn pipeline_and_stage(
    f: &Fields<'_>,
    job_url: Option<&str>,
    out: &mut Map<String, Value>,
) -> Result<(), FieldError> {
    let mut pipeline = f.string("pipelineName", MAX_FIELD)?;
    let project = f.string("projectName", MAX_FIELD)?;
    if pipeline.is_none() && project.is_none() {
        let derived = job_url
            .map(full_name)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                FieldError::new(
                    "pipelineName",
                    "is required (or projectName, for Freestyle and Maven projects, or jobUrl)",
                )
            })?;
        out.insert("pipelineName".into(), Value::String(derived.clone()));
        pipeline = Some(derived);
    }
    // ServiceNow's DevOps API: "stageName Required if pipelineName is passed".
    if pipeline.is_some() && f.string("stageName", MAX_FIELD)?.is_none() {
        return Err(FieldError::new(
            "stageName",
            "is required with pipelineName",
        ));
    }
    Ok(())
}

/// A package registration names the package and the pipeline run.
fn package_needs(f: &Fields<'_>, task_execution: Option<&str>) -> Result<(), FieldError> {
    if f.string("name", MAX_FIELD)?.is_none() {
        return Err(FieldError::new("name", "is required: the package's name"));
    }
    if task_execution.is_none() {
        return Err(FieldError::new(
            "taskExecutionNumber",
            "is required: the build number of the pipeline run",
        ));
    }
    Ok(())
}

/// `artifacts`: a non-empty array.
fn artifacts_of(out: &mut Map<String, Value>) -> Result<&mut Vec<Value>, FieldError> {
    let problem = match out.get("artifacts") {
        Some(Value::Array(a)) if !a.is_empty() => None,
        None | Some(Value::Null) => Some("is required: at least one artifact".to_string()),
        Some(Value::Array(_)) => Some("needs at least one entry".to_string()),
        Some(other) => Some(format!("must be an array, not {}", kind(other))),
    };
    if let Some(p) = problem {
        return Err(FieldError::new("artifacts", p));
    }
    out.get_mut("artifacts")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| FieldError::new("artifacts", "must be an array"))
}

/// The build details of a registration, at the top and in a package's artifacts.
const BUILD_FIELDS: [&str; 4] = [
    "pipelineName",
    "taskExecutionNumber",
    "stageName",
    "branchName",
];

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn registration_bodies_are_checked_by_servicenows_rules() {
        let artifact = json!({"artifacts": [{"name": "a.jar", "repositoryName": "r", "version": "1.0"}],
                              "pipelineName": "shop/app", "stageName": "Build",
                              "taskExecutionNumber": 42, "jobUrl": "https://ci/job/shop/job/app/"});
        let (out, tool) = registration_body(Registration::Artifact, &artifact).unwrap();
        assert_eq!(tool, None);
        assert_eq!(out["taskExecutionNumber"], "42");
        assert!(out.get("jobUrl").is_none());
        let with = |mut v: Value, path: &[&str], value: Value| {
            let mut cur = &mut v;
            for p in &path[..path.len() - 1] {
                cur = match p.parse::<usize>() {
                    Ok(i) => &mut cur[i],
                    Err(_) => &mut cur[*p],
                };
            }
            let last = path[path.len() - 1];
            match (value.is_null(), last.parse::<usize>()) {
                (true, _) => drop(cur.as_object_mut().unwrap().remove(last)),
                (false, Ok(i)) => cur[i] = value,
                (false, Err(_)) => cur[last] = value,
            }
            v
        };
        let artifact_cases = [
            (
                with(artifact.clone(), &["artifacts"], json!([])),
                "artifacts",
            ),
            (
                with(artifact.clone(), &["artifacts"], json!("x")),
                "artifacts",
            ),
            (
                with(artifact.clone(), &["artifacts", "0", "name"], Value::Null),
                "artifacts[0].name",
            ),
            (
                with(
                    artifact.clone(),
                    &["artifacts", "0", "repositoryName"],
                    json!("r".repeat(161)),
                ),
                "artifacts[0].repositoryName",
            ),
            (
                with(
                    artifact.clone(),
                    &["artifacts", "0", "version"],
                    Value::Null,
                ),
                "artifacts[0].version",
            ),
            (
                with(artifact.clone(), &["stageName"], Value::Null),
                "stageName",
            ),
            (
                with(
                    with(artifact.clone(), &["pipelineName"], Value::Null),
                    &["jobUrl"],
                    Value::Null,
                ),
                "pipelineName",
            ),
            (
                with(artifact.clone(), &["taskExecutionNumber"], json!(true)),
                "taskExecutionNumber",
            ),
            (
                with(artifact.clone(), &["artifactToolId"], json!("x y")),
                "artifactToolId",
            ),
        ];
        for (body, field) in artifact_cases {
            let err = registration_body(Registration::Artifact, &body).unwrap_err();
            assert_eq!(err.field, field, "{body}");
        }
        // A named artifact tool may supply the version; a job URL may supply the pipeline name.
        let body = with(
            with(
                artifact.clone(),
                &["artifacts", "0", "version"],
                Value::Null,
            ),
            &["artifactToolId"],
            json!("391b4ff6dba24010bc8cdd384b96198f"),
        );
        let body = with(body, &["pipelineName"], Value::Null);
        let (out, tool) = registration_body(Registration::Artifact, &body).unwrap();
        assert_eq!(tool.as_deref(), Some("391b4ff6dba24010bc8cdd384b96198f"));
        assert_eq!(out["pipelineName"], "shop/app");
        assert!(out.get("artifactToolId").is_none());

        let package = with(artifact.clone(), &["name"], json!("release"));
        assert!(registration_body(Registration::Package, &package).is_ok());
        let package_cases = [
            (with(package.clone(), &["name"], Value::Null), "name"),
            (
                with(package.clone(), &["taskExecutionNumber"], Value::Null),
                "taskExecutionNumber",
            ),
            (
                with(package.clone(), &["artifacts", "0", "version"], Value::Null),
                "artifacts[0].pipelineName",
            ),
        ];
        for (body, field) in package_cases {
            let err = registration_body(Registration::Package, &body).unwrap_err();
            assert_eq!(err.field, field, "{body}");
        }
        let by_build = with(
            package,
            &["artifacts", "0"],
            json!({"name": "a.jar", "repositoryName": "r", "pipelineName": "shop/app",
                   "stageName": "Build", "taskExecutionNumber": "41"}),
        );
        assert!(registration_body(Registration::Package, &by_build).is_ok());
        let current = with(
            by_build,
            &["artifacts", "0"],
            json!({"name": "a.jar", "repositoryName": "r", "currentBuildInfo": true}),
        );
        let (out, _) = registration_body(Registration::Package, &current).unwrap();
        assert_eq!(
            out["artifacts"][0],
            json!({"name": "a.jar", "repositoryName": "r", "pipelineName": "shop/app",
                   "stageName": "Build", "taskExecutionNumber": "42"})
        );
    }
}
