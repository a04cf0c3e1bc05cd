//! What the ServiceNow pass-throughs accept, as ServiceNow's DevOps API reference defines those endpoints: the request
//! checks of `POST /api/v1/step-mappings`, `GET|PUT /api/v1/change-info` and
//! `POST /api/v1/artifacts|packages`. Bad input is a [`FieldError`] naming the field; the
//! handlers (`routes/passthrough.rs`) send nothing then. Artifact and package registrations
//! are checked in [`registration`].
use serde_json::{json, Map, Value};

use crate::domain::request::{kind, Fields, MAX_NAME, MAX_STAGE_NAME};
use crate::domain::{FieldError, GateSpec};
use crate::servicenow::passthrough::ChangeInfoQuery;

mod registration;

pub use registration::registration_body;
use registration::MAX_EXECUTION_NUMBER;

/// A CR number such as `CHG0030001`: 1 to 40 letters and digits (nothing that could change
/// the meaning of the query it travels in).
const MAX_CHANGE_NUMBER: usize = 40;

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

/// The query of `GET /change-info`, with ServiceNow's rules: `buildNumber` required;
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
/// and ServiceNow's documented example send). At least one field.
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
    fn change_info_queries_follow_servicenows_rules() {
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
}
