//! Client of ServiceNow's DevOps orchestration API (`/api/sn_devops/{v}/devops/orchestration/…`,
//! seed 001). v2 with `Authorization: sn_devops.DevOpsToken <toolId>:<token>`, v1 with Basic.
use std::time::Duration;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::{Method, StatusCode};
use serde_json::{json, Map, Value};

use crate::configuration::{Secret, ServiceNowAuth, ServiceNowSettings};
use crate::domain::names::CallbackToken;
use crate::domain::names::{pipeline_name, short_job_name, stage_task_url};
use crate::domain::GateSpec;

/// RFC 3986 unreserved characters stay; everything else in a query value is encoded.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

pub fn encode_query_value(v: &str) -> String {
    utf8_percent_encode(v, QUERY_VALUE).to_string()
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceNowError {
    #[error("cannot reach ServiceNow: {0}")]
    Connect(String),
    #[error("ServiceNow did not answer in time")]
    Timeout,
    #[error("ServiceNow answered {status}: {message}")]
    Status {
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("ServiceNow's answer could not be read: {0}")]
    Decode(String),
    /// Redirects are not followed: following one would re-send the request, credentials and
    /// callback token included, to the host `Location` names.
    #[error("ServiceNow answered {status} redirecting to {location}; redirects are not followed (check servicenow.instance_url)")]
    Redirect { status: u16, location: String },
}

impl ServiceNowError {
    /// Transient errors are retried: connect errors, timeouts, 5xx and 429.
    pub fn is_transient(&self) -> bool {
        match self {
            ServiceNowError::Connect(_) | ServiceNowError::Timeout => true,
            ServiceNowError::Status { status, .. } => *status >= 500 || *status == 429,
            ServiceNowError::Decode(_) | ServiceNowError::Redirect { .. } => false,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ServiceNowError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// A sentence for the gate's message and the event log.
    pub fn describe(&self) -> String {
        match self {
            ServiceNowError::Status {
                status: 401,
                message,
                ..
            } => format!(
                "ServiceNow refused the credentials (401 Unauthorized): {message}; check servicenow.auth, servicenow.tool_id and the token or user/password"
            ),
            ServiceNowError::Status {
                status: 403,
                message,
                ..
            } => format!(
                "ServiceNow denied access (403 Forbidden): {message}; the account needs the sn_devops.integration role"
            ),
            other => other.to_string(),
        }
    }
}

pub(crate) fn classify(e: reqwest::Error) -> ServiceNowError {
    if e.is_timeout() {
        ServiceNowError::Timeout
    } else if e.is_connect() || e.is_request() {
        ServiceNowError::Connect(without_url(&e))
    } else {
        ServiceNowError::Decode(without_url(&e))
    }
}

/// reqwest puts the URL in its messages: keep only the path, and replace the callback token in
/// an acknowledgement's path by its fingerprint.
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(u) = e.url() {
        text = text.replace(u.as_str(), u.path());
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    CallbackToken::scrub(&text)
}

/// ServiceNow's answer as JSON, or the error it stands for: the status, ServiceNow's own message
/// (with `hint` appended for 401/403), and `Retry-After`.
pub(crate) async fn read_answer(
    resp: reqwest::Response,
    hint: &str,
) -> Result<Value, ServiceNowError> {
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    if status.is_redirection() {
        return Err(ServiceNowError::Redirect {
            status: status.as_u16(),
            location: super::location_host(resp.headers()),
        });
    }
    let bytes = resp.bytes().await.map_err(classify)?;
    let parsed: Option<Value> = serde_json::from_slice(&bytes).ok();
    if !status.is_success() {
        let mut message = parsed
            .as_ref()
            .and_then(servicenow_message)
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("no message").into());
        if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            message.push_str(hint);
        }
        return Err(ServiceNowError::Status {
            status: status.as_u16(),
            message,
            retry_after,
        });
    }
    parsed.ok_or_else(|| ServiceNowError::Decode(format!("{status} with a body that is not JSON")))
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

/// ServiceNow's own message from either error shape:
/// `{"error":{"message":…,"detail":…}}` or `{"result":{"status":"error","details":{"errors":[{"message":…}]}}}`.
pub fn servicenow_message(body: &Value) -> Option<String> {
    if let Some(err) = body.get("error") {
        let msg = err.get("message").and_then(Value::as_str).unwrap_or("");
        let detail = err.get("detail").and_then(Value::as_str).unwrap_or("");
        let text = match (msg.is_empty(), detail.is_empty()) {
            (false, false) => format!("{msg} ({detail})"),
            (false, true) => msg.to_string(),
            (true, false) => detail.to_string(),
            (true, true) => return err.as_str().map(str::to_string),
        };
        return Some(text);
    }
    let errors = body
        .get("result")
        .and_then(|r| r.get("details"))
        .and_then(|d| d.get("errors"))
        .and_then(Value::as_array)?;
    let msgs: Vec<String> = errors
        .iter()
        .filter_map(|e| {
            e.get("message")
                .and_then(Value::as_str)
                .map(str::to_string)
                .or_else(|| e.as_str().map(str::to_string))
        })
        .collect();
    (!msgs.is_empty()).then(|| msgs.join("; "))
}

#[derive(Clone)]
enum Auth {
    Token(Secret),
    Basic { user: String, password: Secret },
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

/// What the registration needs besides the gate's own request.
pub struct Registration<'a> {
    pub spec: &'a GateSpec,
    pub callback_url: &'a str,
}

impl DevOpsClient {
    pub fn new(s: &ServiceNowSettings) -> anyhow::Result<DevOpsClient> {
        let instance = url::Url::parse(&s.instance_url)?;
        let auth = match s.auth {
            ServiceNowAuth::Token => Auth::Token(s.token.clone()),
            ServiceNowAuth::Basic | ServiceNowAuth::Oauth => Auth::Basic {
                user: s.user.clone(),
                password: s.password.clone(),
            },
        };
        Ok(DevOpsClient {
            http: super::http_client(s)?,
            instance,
            tool_id: s.tool_id.clone(),
            auth,
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
            Auth::Token(_) => "v2",
            Auth::Basic { .. } => "v1",
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

    pub(crate) async fn call(
        &self,
        method: Method,
        url: url::Url,
        body: Option<&Value>,
    ) -> Result<Value, ServiceNowError> {
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
        body: Option<&Value>,
    ) -> Result<Value, ServiceNowError> {
        let mut req = self
            .http
            .request(method, url)
            .header(reqwest::header::ACCEPT, "application/json");
        req = match &self.auth {
            Auth::Token(t) => req.header(
                reqwest::header::AUTHORIZATION,
                format!("sn_devops.DevOpsToken {}:{}", self.tool_id, t.expose()),
            ),
            Auth::Basic { user, password } => req.basic_auth(user, Some(password.expose())),
        };
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.map_err(classify)?;
        let value = read_answer(resp, "").await?;
        if let Some(msg) = servicenow_message(&value) {
            // A 2xx whose result says `"status":"error"` is still a refusal.
            if value
                .get("result")
                .and_then(|r| r.get("status"))
                .and_then(Value::as_str)
                .is_some_and(|s| s.eq_ignore_ascii_case("error"))
                || value.get("error").is_some()
            {
                return Err(ServiceNowError::Status {
                    status: StatusCode::BAD_REQUEST.as_u16(),
                    message: msg,
                    retry_after: None,
                });
            }
        }
        Ok(value)
    }

    pub(crate) fn tool_id(&self) -> &str {
        &self.tool_id
    }

    pub(crate) fn result_flag(value: &Value, names: &[&str]) -> Result<bool, ServiceNowError> {
        let result = value
            .get("result")
            .ok_or_else(|| ServiceNowError::Decode("the answer has no `result`".into()))?;
        for n in names {
            match result.get(*n) {
                Some(Value::Bool(b)) => return Ok(*b),
                Some(Value::String(s)) if s == "true" || s == "false" => return Ok(s == "true"),
                _ => {}
            }
        }
        Err(ServiceNowError::Decode(format!(
            "the answer's result has no boolean `{}`",
            names.join("`/`")
        )))
    }

    /// `GET changeControl?toolId=…&toolType=jenkins&testConnection=true`.
    #[tracing::instrument(skip_all)]
    pub async fn test_connection(&self) -> Result<Value, ServiceNowError> {
        let url = self.url(
            &["changeControl"],
            &[
                ("toolId", &self.tool_id),
                ("toolType", "jenkins"),
                ("testConnection", "true"),
            ],
        );
        self.call(Method::GET, url, None).await
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
            // The seed: orchestrationTaskURL "must be percent (%) encoded" as a value, so it is
            // encoded once as its value and once more in the query string (`https%253A%252F…`).
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
        if let Some(p) = &spec.parent_stage_url {
            q.push(("parentStageURL", p));
        }
        q
    }

    /// `GET stepMapping`: is this stage a valid orchestration task for a mapped step?
    #[tracing::instrument(skip_all)]
    pub async fn step_mapping_valid(&self, spec: &GateSpec) -> Result<bool, ServiceNowError> {
        let name = stage_task_name(spec);
        let task_url = encode_query_value(&stage_task_url(&spec.job_url, &spec.stage_path()));
        let url = self.url(&["stepMapping"], &self.task_query(spec, &name, &task_url));
        let v = self.call(Method::GET, url, None).await?;
        Self::result_flag(&v, &["stepValid"])
    }

    /// `POST stepMapping`: create the orchestration task and associate it with its step.
    #[tracing::instrument(skip_all)]
    pub async fn create_step_mapping(&self, spec: &GateSpec) -> Result<bool, ServiceNowError> {
        let url = self.url(
            &["stepMapping"],
            &[("toolId", &self.tool_id), ("toolType", "jenkins")],
        );
        let v = self
            .call(Method::POST, url, Some(&step_mapping_body(spec)))
            .await?;
        Self::result_flag(&v, &["stepValid"])
    }

    /// `POST changeControl?toolId=&toolType=jenkins`: register the callback. Returns whether
    /// the stage is under change control.
    #[tracing::instrument(skip_all)]
    pub async fn register(&self, r: &Registration<'_>) -> Result<bool, ServiceNowError> {
        let url = self.url(
            &["changeControl"],
            &[("toolId", &self.tool_id), ("toolType", "jenkins")],
        );
        let v = self
            .call(Method::POST, url, Some(&registration_body(r)))
            .await?;
        Self::result_flag(&v, &["changeControl", "change_control"])
    }

    /// `PUT changeControl/{token}?toolId=`: acknowledge a callback.
    #[tracing::instrument(skip_all)]
    pub async fn acknowledge(
        &self,
        token: &str,
        spec: &GateSpec,
        callback_url: &str,
    ) -> Result<(), ServiceNowError> {
        let url = self.url(&["changeControl", token], &[("toolId", &self.tool_id)]);
        self.call(
            Method::PUT,
            url,
            Some(&acknowledgement_body(spec, callback_url)),
        )
        .await?;
        Ok(())
    }
}

/// The change request as `GET …/orchestration/changeInfo` reports it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChangeInfo {
    pub found: bool,
    pub number: Option<String>,
    pub sys_id: Option<String>,
    /// As sent: a display name (`Implement`) or a number (`-1`, `0`).
    pub state: Option<String>,
    pub url: Option<String>,
    pub approvers: Option<String>,
    pub assignment_group: Option<String>,
    pub planned_start: Option<String>,
    pub planned_end: Option<String>,
}

/// What `GET …/orchestration/callback?taskExecutionURL=` says about a registered callback.
#[derive(Clone, Debug, PartialEq)]
pub struct CallbackStatus {
    /// `pending`, `succeeded`, `canceled`, … exactly as sent.
    pub result: String,
    pub token: Option<String>,
    pub comments: Option<String>,
}

fn opt_text(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl DevOpsClient {
    /// `GET changeInfo?toolId=&toolType=jenkins&pipelineName=&stageName=&buildNumber=&branchName=`.
    #[tracing::instrument(skip_all)]
    pub async fn change_info(&self, spec: &GateSpec) -> Result<ChangeInfo, ServiceNowError> {
        let pipeline = pipeline_name(&spec.job_url, spec.is_multi_branch);
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
        let v = self.call(Method::GET, url, None).await?;
        let r = v
            .get("result")
            .ok_or_else(|| ServiceNowError::Decode("the answer has no `result`".into()))?;
        let found = match r.get("changeFound") {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s == "true",
            _ => opt_text(r, "number").is_some(),
        };
        Ok(ChangeInfo {
            found,
            number: opt_text(r, "number"),
            sys_id: opt_text(r, "sys_id"),
            state: opt_text(r, "state"),
            url: opt_text(r, "url"),
            approvers: opt_text(r, "changeApprovers"),
            assignment_group: opt_text(r, "changeAssignmentGroup"),
            planned_start: opt_text(r, "plannedStartDate"),
            planned_end: opt_text(r, "plannedEndDate"),
        })
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
        let v = self.call(Method::GET, url, None).await?;
        let r = v
            .get("result")
            .ok_or_else(|| ServiceNowError::Decode("the answer has no `result`".into()))?;
        Ok(CallbackStatus {
            result: opt_text(r, "result").ok_or_else(|| {
                ServiceNowError::Decode("the answer has no `result.result`".into())
            })?,
            token: opt_text(r, "token"),
            comments: opt_text(r, "changeComments"),
        })
    }
}

/// `app#Deploy`: the task name used in stepMapping and the acknowledgement.
pub fn stage_task_name(spec: &GateSpec) -> String {
    format!(
        "{}#{}",
        short_job_name(&spec.job_url, spec.is_multi_branch),
        spec.stage_path()
    )
}

fn insert_opt(map: &mut Map<String, Value>, key: &str, v: Option<&str>) {
    if let Some(v) = v {
        map.insert(key.to_string(), Value::String(v.to_string()));
    }
}

fn task_details(spec: &GateSpec) -> Value {
    let mut d = Map::new();
    d.insert("triggerType".into(), json!(spec.trigger_type.as_str()));
    insert_opt(&mut d, "message", spec.message.as_deref());
    insert_opt(
        &mut d,
        "upstreamTaskExecutionURL",
        spec.upstream_task_execution_url.as_deref(),
    );
    insert_opt(&mut d, "taskExecutionURL", spec.task_execution_url());
    d.insert("buildNumber".into(), json!(spec.build_number));
    Value::Object(d)
}

fn add_branch_and_parent(m: &mut Map<String, Value>, spec: &GateSpec) {
    insert_opt(m, "branchName", spec.branch_name.as_deref());
    // The plugin sends the flag as a string.
    m.insert(
        "isMultiBranch".into(),
        json!(if spec.is_multi_branch {
            "true"
        } else {
            "false"
        }),
    );
    if let Some(parent) = &spec.parent_stage_name {
        m.insert("parentStageName".into(), json!(parent));
        insert_opt(m, "parentStageURL", spec.parent_stage_url.as_deref());
        let mut node = Map::new();
        insert_opt(&mut node, "id", spec.parent_stage_id.as_deref());
        node.insert("name".into(), json!(parent));
        insert_opt(
            &mut node,
            "upstreamTaskExecutionURL",
            spec.parent_stage_url.as_deref(),
        );
        m.insert("parentNode".into(), Value::Object(node));
    }
}

pub fn registration_body(r: &Registration<'_>) -> Value {
    let spec = r.spec;
    let mut m = Map::new();
    m.insert("callbackURL".into(), json!(r.callback_url));
    m.insert(
        "orchestrationTaskURL".into(),
        json!(stage_task_url(&spec.job_url, &spec.stage_path())),
    );
    // In the changeControl POST the plugin sends the short job name and the stage apart.
    m.insert(
        "orchestrationTaskName".into(),
        json!(short_job_name(&spec.job_url, spec.is_multi_branch)),
    );
    m.insert("stageName".into(), json!(spec.stage_name));
    m.insert("orchestrationTaskDetails".into(), task_details(spec));
    add_branch_and_parent(&mut m, spec);
    if let Some(d) = &spec.change_request_details {
        m.insert("changeRequestDetails".into(), d.clone());
    }
    Value::Object(m)
}

pub fn acknowledgement_body(spec: &GateSpec, callback_url: &str) -> Value {
    let task_url = stage_task_url(&spec.job_url, &spec.stage_path());
    let mut m = Map::new();
    m.insert("callbackURL".into(), json!(callback_url));
    m.insert("orchestrationTaskURL".into(), json!(task_url));
    m.insert(
        "taskExecutionURL".into(),
        json!(spec.task_execution_url().unwrap_or(&task_url)),
    );
    m.insert("orchestrationTaskName".into(), json!(stage_task_name(spec)));
    m.insert("toolType".into(), json!("jenkins"));
    m.insert("orchestrationTaskDetails".into(), task_details(spec));
    add_branch_and_parent(&mut m, spec);
    Value::Object(m)
}

fn step_mapping_body(spec: &GateSpec) -> Value {
    let mut m = Map::new();
    m.insert(
        "orchestrationTaskURL".into(),
        json!(stage_task_url(&spec.job_url, &spec.stage_path())),
    );
    m.insert("orchestrationTaskName".into(), json!(stage_task_name(spec)));
    add_branch_and_parent(&mut m, spec);
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(encode_query_value("a b"), "a%20b");
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
