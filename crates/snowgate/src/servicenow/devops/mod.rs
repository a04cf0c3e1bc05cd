//! Client of ServiceNow's DevOps orchestration API (`/api/sn_devops/{v}/devops/orchestration/…`):
//! v2 with `Authorization: sn_devops.DevOpsToken <toolId>:<token>`, v1 with Basic. The request
//! bodies are in [`bodies`], the answers snowgate reads in [`answers`].
pub(crate) mod answers;
mod bodies;

use reqwest::{Method, StatusCode};
use serde::Serialize;

pub use super::error::{servicenow_message, ServiceNowError};
pub use answers::{CallbackStatus, ChangeInfo, ControlAnswer};
pub use bodies::{
    acknowledgement_body, registration_body, stage_task_name, Acknowledgement, Registration,
    RegistrationBody, StageEvent,
};

use super::auth::Auth;
use super::error::{classify, read_answer, Answer};
use crate::configuration::ServiceNowSettings;
use crate::domain::names::stage_task_url;
use crate::domain::GateSpec;

/// A query value encoded once, exactly as the plugin's `URLEncoder.encode(value, "UTF-8")`
/// does (application/x-www-form-urlencoded): letters, digits and `.-*_` stay, a space becomes
/// `+`, everything else `%XX`. Values that are already encoded (job URLs, multibranch item
/// names) gain one layer (`%20` → `%2520`).
pub fn encode_query_value(v: &str) -> String {
    url::form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

/// `PUT orchestration/changeControl/{id}`: the metrics label of a request (ids and tokens
/// replaced, so labels stay few and secrets stay out).
fn endpoint_label(method: &Method, url: &url::Url) -> String {
    let path = url.path();
    let rest = path.split_once("/devops/").map(|(_, r)| r).unwrap_or(path);
    let mut parts: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    if parts.len() > 2 {
        parts.truncate(2);
        parts.push("{id}");
    }
    format!("{method} {}", parts.join("/"))
}

/// A request body as JSON text.
pub(crate) fn json_body<B: Serialize + ?Sized>(body: &B) -> Result<String, ServiceNowError> {
    serde_json::to_string(body).map_err(|e| ServiceNowError::Decode(e.to_string()))
}

/// The one client for sn_devops; cheap to clone.
#[derive(Clone)]
pub struct DevOpsClient {
    http: reqwest::Client,
    instance: url::Url,
    tool_id: String,
    auth: Auth,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
}

impl std::fmt::Debug for DevOpsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevOpsClient")
            .field("instance", &self.instance.as_str())
            .field("tool_id", &self.tool_id)
            .finish_non_exhaustive()
    }
}

impl DevOpsClient {
    pub fn new(s: &ServiceNowSettings) -> anyhow::Result<DevOpsClient> {
        Ok(DevOpsClient {
            http: super::http_client(s)?,
            instance: url::Url::parse(&s.instance_url)?,
            tool_id: s.tool_id.clone(),
            auth: Auth::devops(s),
            metrics: Default::default(),
        })
    }

    /// Record requests in `metrics` (the application's registry).
    pub fn with_metrics(mut self, metrics: std::sync::Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    fn version(&self) -> &'static str {
        match self.auth {
            Auth::DevOpsToken { .. } => "v2",
            Auth::Basic { .. } | Auth::OAuth(_) => "v1",
        }
    }

    /// `<instance>/api/sn_devops/<v>/devops/orchestration/<segments…>?<query>`.
    fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> url::Url {
        let mut all = vec!["orchestration"];
        all.extend_from_slice(segments);
        self.devops_url(&all, query)
    }

    /// `<instance>/api/sn_devops/<v>/devops/<segments…>?<query>`; path segments are encoded
    /// as segments, every query value percent-encoded exactly once here.
    pub(crate) fn devops_url(&self, segments: &[&str], query: &[(&str, &str)]) -> url::Url {
        let mut u = self.instance.clone();
        {
            let mut path = u.path_segments_mut().expect("http URLs have paths");
            path.pop_if_empty()
                .extend(["api", "sn_devops", self.version(), "devops"]);
            path.extend(segments);
        }
        let q: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{k}={}", encode_query_value(v)))
            .collect();
        u.set_query(Some(&q.join("&")));
        u
    }

    /// One request, recorded in the metrics; a 2xx that reports an error is a refusal (400).
    pub(crate) async fn call(
        &self,
        method: Method,
        url: url::Url,
        body: Option<String>,
    ) -> Result<Answer, ServiceNowError> {
        let endpoint = endpoint_label(&method, &url);
        let started = std::time::Instant::now();
        let result = self.call_inner(method, url, body).await;
        let m = &self.metrics;
        let status = match &result {
            Ok(_) => Some(200),
            Err(ServiceNowError::Status { status, .. }) => Some(*status),
            Err(_) => None,
        };
        crate::metrics::record_call(
            &m.servicenow_requests,
            &m.servicenow_latency,
            &endpoint,
            status,
            started.elapsed(),
        );
        result
    }

    async fn call_inner(
        &self,
        method: Method,
        url: url::Url,
        body: Option<String>,
    ) -> Result<Answer, ServiceNowError> {
        let authorization = self.auth.header(&self.http, &self.metrics, false).await?;
        let mut req = self
            .http
            .request(method, url)
            .header(reqwest::header::ACCEPT, "application/json")
            .header(reqwest::header::AUTHORIZATION, authorization);
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b);
        }
        let resp = req.send().await.map_err(classify)?;
        let answer = read_answer(resp, "").await?;
        if let Some(msg) = answer.envelope.message() {
            // A 2xx whose result says `"status":"error"` is still a refusal.
            if answer.envelope.is_refusal() {
                return Err(ServiceNowError::Status {
                    status: StatusCode::BAD_REQUEST.as_u16(),
                    message: msg,
                    retry_after: None,
                });
            }
        }
        Ok(answer)
    }

    pub(crate) fn tool_id(&self) -> &str {
        &self.tool_id
    }

    /// `GET changeControl?toolId=…&toolType=jenkins&testConnection=true`. The answer is
    /// returned as ServiceNow sent it: it is only shown, never decided on.
    #[tracing::instrument(skip_all)]
    pub async fn test_connection(&self) -> Result<serde_json::Value, ServiceNowError> {
        let url = self.url(
            &["changeControl"],
            &[
                ("toolId", &self.tool_id),
                ("toolType", "jenkins"),
                ("testConnection", "true"),
            ],
        );
        self.call(Method::GET, url, None).await?.value()
    }

    fn task_query<'a>(
        &'a self,
        spec: &'a GateSpec,
        name: &'a str,
        encoded_task_url: &'a str,
    ) -> Vec<(&'a str, &'a str)> {
        let mut q = vec![
            ("toolId", self.tool_id.as_str()),
            ("toolType", "jenkins"),
            ("orchestrationTaskName", name),
            // orchestrationTaskURL "must be percent (%) encoded" as a value, so it is encoded
            // once as its value and once more in the query string (`https%253A%252F…`).
            ("orchestrationTaskURL", encoded_task_url),
        ];
        if let Some(b) = &spec.branch_name {
            q.push(("branchName", b));
        }
        if spec.is_multi_branch {
            q.push(("isMultiBranch", "true"));
        }
        if let Some(p) = &spec.parent_stage_name {
            q.push(("parentStageName", p));
        }
        q
    }

    /// `GET stepMapping`: is this stage a valid orchestration task for a mapped step?
    #[tracing::instrument(skip_all)]
    pub async fn step_mapping_valid(&self, spec: &GateSpec) -> Result<bool, ServiceNowError> {
        let name = stage_task_name(spec);
        let task_url = encode_query_value(&stage_task_url(&spec.job_url, &spec.stage_path()));
        let url = self.url(&["stepMapping"], &self.task_query(spec, &name, &task_url));
        let answer = self.call(Method::GET, url, None).await?;
        answers::step_valid(&answer.read()?)
    }

    /// `POST stepMapping`: create the orchestration task and associate it with its step.
    #[tracing::instrument(skip_all)]
    pub async fn create_step_mapping(&self, spec: &GateSpec) -> Result<bool, ServiceNowError> {
        let url = self.url(
            &["stepMapping"],
            &[("toolId", &self.tool_id), ("toolType", "jenkins")],
        );
        let body = json_body(&bodies::StepMapping::new(spec))?;
        let answer = self.call(Method::POST, url, Some(body)).await?;
        answers::step_valid(&answer.read()?)
    }

    /// `POST changeControl?toolId=&toolType=jenkins`: register the callback, and what
    /// ServiceNow answered about change control.
    #[tracing::instrument(skip_all)]
    pub async fn register(&self, r: &Registration<'_>) -> Result<ControlAnswer, ServiceNowError> {
        let url = self.url(
            &["changeControl"],
            &[("toolId", &self.tool_id), ("toolType", "jenkins")],
        );
        let body = json_body(&registration_body(r))?;
        let answer = self.call(Method::POST, url, Some(body)).await?;
        Ok(ControlAnswer::from_answer(answer.read()?))
    }

    /// `POST …/devops/tool/orchestration?toolType=jenkins&toolId=…`: a stage event in the
    /// plugin's `DevOpsRunStatusModel` shape.
    #[tracing::instrument(skip_all)]
    pub async fn stage_event(&self, event: &StageEvent) -> Result<(), ServiceNowError> {
        let url = self.devops_url(
            &["tool", "orchestration"],
            &[("toolType", "jenkins"), ("toolId", &self.tool_id)],
        );
        self.call(Method::POST, url, Some(json_body(event)?))
            .await?;
        Ok(())
    }

    /// `PUT changeControl/{token}?toolId=&toolType=jenkins`: acknowledge a callback.
    pub async fn acknowledge(
        &self,
        token: &str,
        spec: &GateSpec,
        callback_url: &str,
    ) -> Result<(), ServiceNowError> {
        let url = self.url(
            &["changeControl", token],
            &[("toolId", &self.tool_id), ("toolType", "jenkins")],
        );
        let body = json_body(&acknowledgement_body(spec, callback_url))?;
        self.call(Method::PUT, url, Some(body)).await?;
        Ok(())
    }

    /// `GET changeInfo?toolId=&toolType=jenkins&pipelineName=&stageName=&buildNumber=&branchName=`
    /// as the plugin's polling sends it: `pipelineName` is Jenkins' `JOB_NAME`, `stageName` the
    /// full stage path, `branchName` only when there is one.
    #[tracing::instrument(skip_all)]
    pub async fn change_info(&self, spec: &GateSpec) -> Result<ChangeInfo, ServiceNowError> {
        let pipeline = spec.full_name();
        let stage = spec.stage_path();
        let mut q: Vec<(&str, &str)> = vec![
            ("toolId", &self.tool_id),
            ("toolType", "jenkins"),
            ("pipelineName", &pipeline),
            ("stageName", &stage),
            ("buildNumber", &spec.build_number),
        ];
        if let Some(b) = &spec.branch_name {
            q.push(("branchName", b));
        }
        let url = self.url(&["changeInfo"], &q);
        let answer = self.call(Method::GET, url, None).await?;
        ChangeInfo::from_answer(answer.read()?)
    }

    /// `GET callback?toolId=&taskExecutionURL=`: did ServiceNow decide while we were away?
    #[tracing::instrument(skip_all)]
    pub async fn callback_status(
        &self,
        task_execution_url: &str,
    ) -> Result<CallbackStatus, ServiceNowError> {
        let url = self.url(
            &["callback"],
            &[
                ("toolId", &self.tool_id),
                ("taskExecutionURL", task_execution_url),
            ],
        );
        let answer = self.call(Method::GET, url, None).await?;
        CallbackStatus::from_answer(answer.read()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn metric_labels_hide_tokens() {
        let u = url::Url::parse(
            "https://x/api/sn_devops/v2/devops/orchestration/changeControl/pipeline_abc?toolId=1",
        )
        .unwrap();
        assert_eq!(
            endpoint_label(&Method::PUT, &u),
            "PUT orchestration/changeControl/{id}"
        );
    }

    #[test]
    fn query_values_are_encoded_once_more() {
        assert_eq!(
            encode_query_value("https://ci/job/a%20b/"),
            "https%3A%2F%2Fci%2Fjob%2Fa%2520b%2F"
        );
        assert_eq!(encode_query_value("a b"), "a+b");
        assert_eq!(encode_query_value("mb/feature%2Fx"), "mb%2Ffeature%252Fx");
        assert_eq!(encode_query_value("a~b*c"), "a%7Eb*c");
    }

    #[test]
    fn both_error_shapes_give_servicenows_message() {
        let a = json!({"error": {"message": "User Not Authenticated", "detail": "Required to provide Auth information"}, "status": "failure"});
        assert_eq!(
            servicenow_message(&a).unwrap(),
            "User Not Authenticated (Required to provide Auth information)"
        );
        let b = json!({"result": {"status": "error", "details": {"errors": [{"message": "Invalid toolId"}]}}});
        assert_eq!(servicenow_message(&b).unwrap(), "Invalid toolId");
        assert_eq!(
            servicenow_message(&json!({"result": {"changeControl": true}})),
            None
        );
    }

    #[test]
    fn transient_errors_are_connect_timeout_5xx_and_429() {
        let st = |status| ServiceNowError::Status {
            status,
            message: String::new(),
            retry_after: None,
        };
        assert!(ServiceNowError::Timeout.is_transient());
        assert!(ServiceNowError::Connect("x".into()).is_transient());
        assert!(st(503).is_transient());
        assert!(st(429).is_transient());
        for s in [400, 401, 403, 404] {
            assert!(!st(s).is_transient());
        }
    }
}
