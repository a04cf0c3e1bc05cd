//! What the ServiceNow pass-throughs accept, as the seed's endpoints define it: the request
//! checks of `POST /api/v1/step-mappings`, `GET|PUT /api/v1/change-info` and
//! `POST /api/v1/artifacts|packages`. Bad input is a [`FieldError`] naming the field; the
//! handlers (`routes/passthrough.rs`) send nothing then.
use serde_json::{json, Map, Value};

use crate::domain::names::full_name;
use crate::domain::request::{kind, Fields, MAX_NAME, MAX_STAGE_NAME};
use crate::domain::{FieldError, GateSpec};
use crate::servicenow::passthrough::{ChangeInfoQuery, Registration};

/// Seed (artifact and package registration): names, versions, pipeline and stage names hold at
/// most 160 characters.
const MAX_FIELD: usize = 160;

/// Seed (package registration): `branchName` "Maximum length: 200 characters".
const MAX_PACKAGE_BRANCH: usize = 200;

/// Seed (package registration): `taskExecutionNumber` "Maximum length: 128 characters"; the
/// same bound serves changeInfo's `buildNumber`.
const MAX_EXECUTION_NUMBER: usize = 128;

/// A CR number such as `CHG0030001`: 1 to 40 letters and digits (nothing that could change
/// the meaning of the query it travels in).
const MAX_CHANGE_NUMBER: usize = 40;

/// Fields of the artifact/package requests that are snowgate's own and not sent on.
const SNOWGATE_FIELDS: [&str; 3] = ["artifactToolId", "jobUrl", "buildUrl"];

/// The fields of a step mapping, read with the gate rules. stepMapping needs no build, but
/// [`GateSpec`] holds one: a placeholder stands in when none is given (it is never sent).
pub fn step_mapping_spec(body: &Value) -> Result<GateSpec, FieldError> {
    let obj = body
        .as_object()
        .ok_or_else(|| FieldError::new("body", "must be a JSON object"))?;
    let mut fields = Map::new();
    for key in [
        "jobUrl",
        "stageName",
        "buildNumber",
        "branchName",
        "isMultiBranch",
        "parentStageName",
        "parentStageId",
        // The stage node params of the stepMapping body (its node id and execution URL).
        "buildUrl",
        "jobName",
        "flowNodeId",
        "taskExecutionUrl",
        "upstreamStageName",
        "upstreamStageUrl",
    ] {
        if let Some(v) = obj.get(key).filter(|v| !v.is_null()) {
            fields.insert(key.to_string(), v.clone());
        }
    }
    fields.entry("buildNumber").or_insert_with(|| json!("0"));
    GateSpec::parse(&Value::Object(fields))
}

/// The query of `GET /change-info`, with the seed's rules: `buildNumber` required;
/// `pipelineName` and `stageName` required unless `projectName` (Freestyle/Maven) is given;
/// `stageName` at most 160 characters. Empty values count as absent.
pub fn change_info_query(
    raw: &std::collections::HashMap<String, String>,
) -> Result<ChangeInfoQuery, FieldError> {
    let map: Map<String, Value> = raw
        .iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let f = Fields(&map);
    let build_number = f
        .string("buildNumber", MAX_EXECUTION_NUMBER)?
        .ok_or_else(|| FieldError::new("buildNumber", "is required"))?;
    let pipeline_name = f.string("pipelineName", MAX_NAME)?;
    let stage_name = f.string("stageName", MAX_STAGE_NAME)?;
    let project_name = f.string("projectName", MAX_NAME)?;
    let branch_name = f.string("branchName", MAX_NAME)?;
    if project_name.is_none() {
        if pipeline_name.is_none() {
            return Err(FieldError::new(
                "pipelineName",
                "is required (or projectName, for Freestyle and Maven projects)",
            ));
        }
        if stage_name.is_none() {
            return Err(FieldError::new(
                "stageName",
                "is required (or projectName, for Freestyle and Maven projects)",
            ));
        }
    }
    Ok(ChangeInfoQuery {
        pipeline_name,
        stage_name,
        build_number: build_number.trim().to_string(),
        branch_name,
        project_name,
    })
}

/// Whether a gate is the stage a changeInfo query names: same build; the stage by its path
/// (`Deploy/Prod`) or its own name; the pipeline by the name changeInfo uses (`folder/app`,
/// without a multibranch branch job) or by Jenkins' `JOB_NAME` (`mb/feature%2Fx`, with it);
/// the branch, when both sides know one.
pub fn gate_matches(spec: &GateSpec, q: &ChangeInfoQuery) -> bool {
    if spec.build_number != q.build_number {
        return false;
    }
    if let Some(stage) = &q.stage_name {
        if *stage != spec.stage_path() && *stage != spec.stage_name {
            return false;
        }
    }
    if let Some(name) = q.pipeline_name.as_ref().or(q.project_name.as_ref()) {
        // Jenkins' JOB_NAME (`mb/feature%2Fx`), or a multibranch pipeline named without its
        // branch job (`mb`) as a person may write it in `changeDetails`.
        let full = spec.full_name();
        let without_branch = full.rsplit_once('/').map(|(p, _)| p.to_string());
        let matches = *name == full
            || (spec.is_multi_branch && without_branch.as_deref() == Some(name.as_str()));
        if !matches {
            return false;
        }
    }
    match (&q.branch_name, &spec.branch_name) {
        (Some(given), Some(known)) => given == known,
        _ => true,
    }
}

pub fn change_request_number(raw: &str) -> Result<String, FieldError> {
    let n = raw.trim();
    if n.is_empty() || n.len() > MAX_CHANGE_NUMBER || !n.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err(FieldError::new(
            "changeRequestNumber",
            format!("must be 1 to {MAX_CHANGE_NUMBER} letters and digits, e.g. CHG0030001"),
        ));
    }
    Ok(n.to_string())
}

/// The fields to update: `{"changeRequestDetails": {…}}` (the object, or a string holding it,
/// as the plugin's step parameter is), or the fields object itself (what the plugin's step
/// and the seed's example send). At least one field.
pub fn update_fields(body: &Value) -> Result<Map<String, Value>, FieldError> {
    let obj = body
        .as_object()
        .ok_or_else(|| FieldError::new("body", "must be a JSON object"))?;
    let fields = match obj.get("changeRequestDetails") {
        None => obj.clone(),
        Some(Value::Object(o)) => o.clone(),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(o)) => o,
            _ => {
                return Err(FieldError::new(
                    "changeRequestDetails",
                    "must be a JSON object, or a string holding one",
                ))
            }
        },
        Some(other) => {
            return Err(FieldError::new(
                "changeRequestDetails",
                format!("must be a JSON object, not {}", kind(other)),
            ))
        }
    };
    if fields.is_empty() {
        return Err(FieldError::new(
            "changeRequestDetails",
            "must name at least one field of the change request to update",
        ));
    }
    Ok(fields)
}

/// A field error inside `artifacts[i]`.
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

/// Checks one entry of `artifacts` (seed field rules) and normalizes it.
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
            // Seed: "artifacts.version Required if toolId is not passed".
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
            // Seed: without a version, the artifact is found by its build details.
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

/// The body of `POST /artifacts` or `/packages`: the seed's body fields, checked and passed on
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
    let artifact_tool = f.string("artifactToolId", 64)?;
    if let Some(t) = &artifact_tool {
        if !t.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(FieldError::new(
                "artifactToolId",
                "must be the sys_id of an artifact tool (letters and digits)",
            ));
        }
    }
    let job_url = f.url("jobUrl")?;
    f.url("buildUrl")?;
    let mut out = obj.clone();
    for k in SNOWGATE_FIELDS {
        out.remove(k);
    }
    let mut pipeline = f.string("pipelineName", MAX_FIELD)?;
    let project = f.string("projectName", MAX_FIELD)?;
    if pipeline.is_none() && project.is_none() {
        let derived = job_url
            .as_deref()
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
    // Seed: "stageName Required if pipelineName is passed".
    if pipeline.is_some() && f.string("stageName", MAX_FIELD)?.is_none() {
        return Err(FieldError::new(
            "stageName",
            "is required with pipelineName",
        ));
    }
    let branch_max = match target {
        Registration::Artifact => MAX_FIELD,
        Registration::Package => MAX_PACKAGE_BRANCH,
    };
    f.string("branchName", branch_max)?;
    let task_execution = execution_number(&mut out, "")?;
    if target == Registration::Package {
        if f.string("name", MAX_FIELD)?.is_none() {
            return Err(FieldError::new("name", "is required: the package's name"));
        }
        if task_execution.is_none() {
            return Err(FieldError::new(
                "taskExecutionNumber",
                "is required: the build number of the pipeline run",
            ));
        }
    }
    let build: Vec<(&str, Value)> = BUILD_FIELDS
        .iter()
        .filter_map(|k| {
            out.get(*k)
                .filter(|v| !v.is_null())
                .map(|v| (*k, v.clone()))
        })
        .collect();
    let artifacts = match out.get_mut("artifacts") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        None | Some(Value::Null) => {
            return Err(FieldError::new(
                "artifacts",
                "is required: at least one artifact",
            ))
        }
        Some(Value::Array(_)) => {
            return Err(FieldError::new("artifacts", "needs at least one entry"))
        }
        Some(other) => {
            return Err(FieldError::new(
                "artifacts",
                format!("must be an array, not {}", kind(other)),
            ))
        }
    };
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

/// The build details of a registration, at the top and in a package's artifacts.
const BUILD_FIELDS: [&str; 4] = [
    "pipelineName",
    "taskExecutionNumber",
    "stageName",
    "branchName",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(job_url: &str, stage: &str, multibranch: bool, branch: Option<&str>) -> GateSpec {
        let mut body = json!({"jobUrl": job_url, "buildNumber": "42", "stageName": stage,
                              "isMultiBranch": multibranch});
        if let Some(b) = branch {
            body["branchName"] = json!(b);
        }
        GateSpec::parse(&body).unwrap()
    }

    fn query(pipeline: &str, stage: &str, build: &str) -> ChangeInfoQuery {
        ChangeInfoQuery {
            pipeline_name: Some(pipeline.into()),
            stage_name: Some(stage.into()),
            build_number: build.into(),
            ..ChangeInfoQuery::default()
        }
    }

    #[test]
    fn gates_match_by_pipeline_stage_build_and_branch() {
        let s = spec("https://ci/job/shop/job/app/", "Deploy", false, None);
        assert!(gate_matches(&s, &query("shop/app", "Deploy", "42")));
        assert!(!gate_matches(&s, &query("app", "Deploy", "42")));
        assert!(!gate_matches(&s, &query("shop/app", "Deploy", "43")));
        assert!(!gate_matches(&s, &query("shop/app", "Test", "42")));
        let mb = spec(
            "https://ci/job/mb/job/feature%252Fx/",
            "Deploy",
            true,
            Some("feature/x"),
        );
        assert!(gate_matches(&mb, &query("mb", "Deploy", "42")));
        assert!(gate_matches(&mb, &query("mb/feature%2Fx", "Deploy", "42")));
        let mut q = query("mb", "Deploy", "42");
        q.branch_name = Some("main".into());
        assert!(!gate_matches(&mb, &q));
        q.branch_name = Some("feature/x".into());
        assert!(gate_matches(&mb, &q));
    }

    #[test]
    fn change_info_queries_follow_the_seed_rules() {
        let m = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<std::collections::HashMap<_, _>>()
        };
        let cases = [
            (
                m(&[("pipelineName", "a"), ("stageName", "s")]),
                "buildNumber",
            ),
            (
                m(&[("buildNumber", "1"), ("stageName", "s")]),
                "pipelineName",
            ),
            (
                m(&[("buildNumber", "1"), ("pipelineName", "a")]),
                "stageName",
            ),
            (
                m(&[
                    ("buildNumber", "1"),
                    ("pipelineName", "a"),
                    ("stageName", &"s".repeat(161)),
                ]),
                "stageName",
            ),
        ];
        for (raw, field) in cases {
            assert_eq!(change_info_query(&raw).unwrap_err().field, field, "{raw:?}");
        }
        let q = change_info_query(&m(&[("buildNumber", "7"), ("projectName", "free")])).unwrap();
        assert_eq!(q.project_name.as_deref(), Some("free"));
        let q = change_info_query(&m(&[
            ("buildNumber", "7"),
            ("pipelineName", "a"),
            ("stageName", "s"),
            ("branchName", ""),
        ]))
        .unwrap();
        assert_eq!(q.branch_name, None);
    }

    #[test]
    fn update_fields_come_wrapped_or_plain() {
        let plain = update_fields(&json!({"short_description": "x"})).unwrap();
        let wrapped =
            update_fields(&json!({"changeRequestDetails": {"short_description": "x"}})).unwrap();
        let text = update_fields(&json!({"changeRequestDetails": "{\"short_description\":\"x\"}"}))
            .unwrap();
        assert_eq!(plain, wrapped);
        assert_eq!(plain, text);
        for bad in [
            json!({}),
            json!({"changeRequestDetails": {}}),
            json!({"changeRequestDetails": 3}),
            json!({"changeRequestDetails": "not json"}),
        ] {
            assert_eq!(
                update_fields(&bad).unwrap_err().field,
                "changeRequestDetails",
                "{bad}"
            );
        }
        assert!(change_request_number("CHG0030001").is_ok());
        for bad in ["", "CHG 1", "CHG&x=1", &"C".repeat(41)] {
            assert!(change_request_number(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn registration_bodies_are_checked_by_the_seed_rules() {
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
