//! The pass-through calls of the pipeline API: changeInfo by raw parameters (`GET
//! /devops/orchestration/changeInfo`), the changeInfo update (`PUT` on the same path), and
//! artifact and package registration (`POST /devops/artifact/registration`, `POST
//! /devops/package/registration`).
//!
//! Each answers ServiceNow's `result` object; a 2xx whose `result` says `"status": "Error"`
//! (or, for the update, `"updateStatus": "Error"`) is a refusal like a 400.
//!
//! Unlike the other calls, these keep ServiceNow's answer as a `serde_json::Value`: snowgate
//! relays the `result` to the pipeline verbatim, whatever fields a ServiceNow version adds, and
//! reads only whether it reports an error.
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::devops::answers::ChangeInfoResult;
use super::devops::{json_body, ChangeInfo, DevOpsClient, ServiceNowError};
use super::lenient::{Json, Scalar};

/// The query of `GET …/orchestration/changeInfo`, as the pipeline gave it. `buildNumber`
/// is required; `pipelineName` and `stageName` are required except for Freestyle/Maven
/// projects, which give `projectName` (the caller checks this before asking).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChangeInfoQuery {
    pub pipeline_name: Option<String>,
    pub stage_name: Option<String>,
    pub build_number: String,
    pub branch_name: Option<String>,
    pub project_name: Option<String>,
}

/// What the artifact or package registration is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Registration {
    Artifact,
    Package,
}

impl Registration {
    fn segments(self) -> [&'static str; 2] {
        match self {
            Registration::Artifact => ["artifact", "registration"],
            Registration::Package => ["package", "registration"],
        }
    }
}

/// The `result` object of an answer.
fn result_of(value: Value) -> Result<Value, ServiceNowError> {
    match value {
        Value::Object(mut m) => m
            .remove("result")
            .ok_or_else(|| ServiceNowError::Decode("the answer has no `result`".into())),
        _ => Err(ServiceNowError::Decode(
            "the answer is not a JSON object".into(),
        )),
    }
}

/// A `result` that reports an error in a 2xx answer: ServiceNow's message from `message`,
/// `errorMessage`, `errors[]` or `details.errors[]`, else the result itself (short).
fn refusal(result: &Value, flags: &[&str]) -> Option<ServiceNowError> {
    let failed = flags.iter().any(|f| {
        result
            .get(*f)
            .and_then(Value::as_str)
            .is_some_and(|s| s.eq_ignore_ascii_case("error"))
    });
    if !failed {
        return None;
    }
    let texts = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .map(|errors| {
                errors
                    .iter()
                    .filter_map(|e| {
                        e.get("message")
                            .and_then(Value::as_str)
                            .or_else(|| e.as_str())
                            .map(str::to_string)
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut messages: Vec<String> = ["message", "errorMessage"]
        .iter()
        .filter_map(|k| result.get(*k).and_then(Value::as_str))
        .filter(|s| !s.trim().is_empty())
        .map(str::to_string)
        .collect();
    messages.extend(texts(result.get("errors")));
    messages.extend(texts(result.get("details").and_then(|d| d.get("errors"))));
    let message = if messages.is_empty() {
        result.to_string().chars().take(300).collect()
    } else {
        messages.join("; ")
    };
    Some(ServiceNowError::Status {
        status: 400,
        message,
        retry_after: None,
    })
}

/// The changeInfo `result` as a [`ChangeInfo`]. `changeFound` may come as a boolean or a
/// string; without it, a number means found.
pub fn change_info_of(result: &Value) -> ChangeInfo {
    let r = Json::<ChangeInfoResult>::deserialize(result)
        .map(Json::into_object)
        .unwrap_or_default();
    let found = match &r.change_found {
        Some(Scalar::Bool(b)) => *b,
        Some(Scalar::Str(s)) => s == "true",
        _ => r.has_number(),
    };
    r.into_info(found)
}

impl DevOpsClient {
    /// `GET …/orchestration/changeInfo?toolId=&toolType=jenkins&pipelineName=&stageName=
    /// &buildNumber=&branchName=&projectName=` (only the parameters given); ServiceNow's `result`.
    #[tracing::instrument(skip_all)]
    pub async fn change_info_by(&self, q: &ChangeInfoQuery) -> Result<Value, ServiceNowError> {
        let mut query: Vec<(&str, &str)> =
            vec![("toolId", self.tool_id()), ("toolType", "jenkins")];
        let optional = [
            ("pipelineName", &q.pipeline_name),
            ("stageName", &q.stage_name),
        ];
        for (k, v) in optional {
            if let Some(v) = v {
                query.push((k, v));
            }
        }
        query.push(("buildNumber", &q.build_number));
        let optional = [
            ("branchName", &q.branch_name),
            ("projectName", &q.project_name),
        ];
        for (k, v) in optional {
            if let Some(v) = v {
                query.push((k, v));
            }
        }
        let url = self.devops_url(&["orchestration", "changeInfo"], &query);
        result_of(self.call(Method::GET, url, None).await?.value()?)
    }

    /// `PUT …/orchestration/changeInfo?changeRequestNumber=` with the fields object itself as
    /// the body (`{"short_description": "…", "work_notes": "…"}`), as the official plugin's
    /// `snDevOpsUpdateChangeInfo` sends it and ServiceNow's example shows. No `toolId`: the plugin
    /// sends only the number. Success is `result.status` "success" (in any case); anything else
    /// is a refusal with ServiceNow's message.
    #[tracing::instrument(skip_all)]
    pub async fn update_change_info(
        &self,
        change_request_number: &str,
        fields: &Map<String, Value>,
    ) -> Result<Value, ServiceNowError> {
        let url = self.devops_url(
            &["orchestration", "changeInfo"],
            &[("changeRequestNumber", change_request_number)],
        );
        let answer = self
            .call(Method::PUT, url, Some(json_body(fields)?))
            .await?;
        let result = result_of(answer.value()?)?;
        let success = result
            .get("status")
            .and_then(Value::as_str)
            .is_some_and(|s| s.eq_ignore_ascii_case("success"));
        if success {
            return Ok(result);
        }
        Err(
            refusal(&result, &["status", "updateStatus"]).unwrap_or_else(|| {
                ServiceNowError::Status {
                    status: 200,
                    message: format!(
                        "ServiceNow did not report success: {}",
                        result.to_string().chars().take(300).collect::<String>()
                    ),
                    retry_after: None,
                }
            }),
        )
    }

    /// `POST …/devops/artifact/registration` or `…/devops/package/registration` with
    /// `orchestrationToolId` (snowgate's tool) and, when the pipeline names one, `toolId` (the
    /// artifact tool: a record of another table, so never snowgate's own tool id). The body is
    /// passed as given.
    #[tracing::instrument(skip_all, fields(kind = ?kind))]
    pub async fn register_artifacts(
        &self,
        kind: Registration,
        artifact_tool_id: Option<&str>,
        body: &Value,
    ) -> Result<Value, ServiceNowError> {
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(t) = artifact_tool_id {
            query.push(("toolId", t));
        }
        query.push(("orchestrationToolId", self.tool_id()));
        let url = self.devops_url(&kind.segments(), &query);
        let answer = self.call(Method::POST, url, Some(json_body(body)?)).await?;
        let result = result_of(answer.value()?)?;
        match refusal(&result, &["status"]) {
            Some(e) => Err(e),
            None => Ok(result),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_error_status_in_a_2xx_result_is_a_refusal_with_servicenows_words() {
        let r = json!({"updateStatus": "Error", "status": "Error", "message": "Change request not found"});
        let e = refusal(&r, &["updateStatus", "status"]).unwrap();
        assert_eq!(
            e.to_string(),
            "ServiceNow answered 400: Change request not found"
        );
        let r = json!({"status": "Error", "errors": [{"message": "Invalid repositoryName"}]});
        assert!(refusal(&r, &["status"])
            .unwrap()
            .to_string()
            .contains("Invalid repositoryName"));
        let r = json!({"status": "Success", "response": {}});
        assert!(refusal(&r, &["status"]).is_none());
    }

    #[test]
    fn change_info_results_read_both_found_spellings() {
        let r = json!({"changeFound": "true", "number": "CHG0030001", "state": -1});
        let info = change_info_of(&r);
        assert!(info.found);
        assert_eq!(info.state.as_deref(), Some("-1"));
        assert!(!change_info_of(&json!({"changeFound": false})).found);
        assert!(change_info_of(&json!({"number": "CHG1"})).found);
    }
}
