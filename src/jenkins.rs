//! Typed client of the Jenkins controller: answer a paused `input` step and ask whether a build
//! still runs (SPEC §5). Calls go only to `jenkins.url` (build URLs known under
//! `jenkins.allowed_urls` are rewritten onto it), with Basic auth sent preemptively.
use std::time::Duration;

use serde_json::{json, Value};

use crate::configuration::{JenkinsSettings, Secret};

#[derive(Debug, thiserror::Error)]
pub enum JenkinsError {
    #[error("cannot reach Jenkins: {0}")]
    Connect(String),
    #[error("Jenkins did not answer in time")]
    Timeout,
    #[error("Jenkins answered {status}{}", x_error.as_ref().map(|e| format!(": {e}")).unwrap_or_default())]
    Status {
        status: u16,
        x_error: Option<String>,
    },
}

impl JenkinsError {
    pub fn is_transient(&self) -> bool {
        match self {
            JenkinsError::Connect(_) | JenkinsError::Timeout => true,
            JenkinsError::Status { status, .. } => *status >= 500 || *status == 429,
        }
    }
}

/// Jenkins upper-cases the first letter of an input id (`approval` → `Approval`) and matches
/// it case-sensitively.
pub fn jenkins_input_id(id: &str) -> String {
    let mut chars = id.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[derive(Clone)]
pub struct JenkinsClient {
    http: reqwest::Client,
    base: url::Url,
    known_as: Vec<url::Url>,
    user: String,
    token: Secret,
    change_parameter: Option<String>,
    approver_parameter: Option<String>,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
}

/// What to answer the input with.
pub struct Answer<'a> {
    pub proceed: bool,
    pub change_number: Option<&'a str>,
    pub approver: Option<&'a str>,
}

fn classify(e: reqwest::Error) -> JenkinsError {
    if e.is_timeout() {
        JenkinsError::Timeout
    } else {
        let mut text = e.to_string();
        if let Some(u) = e.url() {
            text = text.replace(u.as_str(), u.path());
        }
        JenkinsError::Connect(text)
    }
}

/// Send a request, recording it in the metrics.
async fn timed(
    m: &crate::metrics::Metrics,
    endpoint: &str,
    send: impl std::future::Future<Output = reqwest::Result<reqwest::Response>>,
) -> Result<reqwest::Response, JenkinsError> {
    let started = std::time::Instant::now();
    let result = send.await;
    crate::metrics::record_call(
        &m.jenkins_requests,
        &m.jenkins_latency,
        endpoint,
        result.as_ref().ok().map(|r| r.status().as_u16()),
        started.elapsed(),
    );
    result.map_err(classify)
}

impl JenkinsClient {
    pub fn new(s: &JenkinsSettings) -> anyhow::Result<JenkinsClient> {
        let base = url::Url::parse(&s.url)?;
        let mut known_as = vec![base.clone()];
        for u in &s.allowed_urls {
            known_as.push(url::Url::parse(u)?);
        }
        Ok(JenkinsClient {
            http: reqwest::Client::builder()
                .timeout(s.timeout.0)
                .connect_timeout(Duration::from_secs(5))
                // proceedEmpty answers with a redirect to the build; it is not followed.
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("snowgate/", env!("CARGO_PKG_VERSION")))
                .build()?,
            base,
            known_as,
            user: s.user.clone(),
            token: s.api_token.clone(),
            change_parameter: s.change_parameter.clone(),
            approver_parameter: s.approver_parameter.clone(),
            metrics: Default::default(),
        })
    }

    /// Record requests in `metrics` (the application's registry).
    pub fn with_metrics(mut self, metrics: std::sync::Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The build URL on the base snowgate may call, or why it may not.
    pub fn resolve(&self, build_url: &str) -> Result<url::Url, String> {
        let parsed = url::Url::parse(build_url).map_err(|e| format!("is not a URL: {e}"))?;
        let text = parsed.as_str();
        for known in &self.known_as {
            if let Some(rest) = text.strip_prefix(known.as_str()) {
                let mut rebuilt = self
                    .base
                    .join(rest)
                    .map_err(|e| format!("cannot be rebased onto jenkins.url: {e}"))?;
                if !rebuilt.path().ends_with('/') {
                    let p = format!("{}/", rebuilt.path());
                    rebuilt.set_path(&p);
                }
                return Ok(rebuilt);
            }
        }
        Err(format!(
            "is not under jenkins.url or jenkins.allowed_urls ({}); snowgate sends Jenkins credentials only there",
            self.known_as
                .iter()
                .map(url::Url::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }

    fn request(&self, method: reqwest::Method, url: url::Url) -> reqwest::RequestBuilder {
        // Preemptive Basic auth: an API token needs no crumb.
        self.http
            .request(method, url)
            .basic_auth(&self.user, Some(self.token.expose()))
    }

    fn input_url(build: &url::Url, input_id: &str, action: &str) -> url::Url {
        let mut u = build.clone();
        u.path_segments_mut()
            .expect("http URLs have paths")
            .pop_if_empty()
            .extend(["input", &jenkins_input_id(input_id), action]);
        u
    }

    /// `POST {build}input/{Id}/proceedEmpty|proceed|abort`.
    #[tracing::instrument(skip_all, fields(input = input_id))]
    pub async fn answer_input(
        &self,
        build: &url::Url,
        input_id: &str,
        answer: &Answer<'_>,
    ) -> Result<&'static str, JenkinsError> {
        let mut params = Vec::new();
        if answer.proceed {
            if let (Some(name), Some(v)) = (&self.change_parameter, answer.change_number) {
                params.push(json!({"name": name, "value": v}));
            }
            if let (Some(name), Some(v)) = (&self.approver_parameter, answer.approver) {
                params.push(json!({"name": name, "value": v}));
            }
        }
        let (action, req) = if !answer.proceed {
            let url = Self::input_url(build, input_id, "abort");
            ("abort", self.request(reqwest::Method::POST, url))
        } else if params.is_empty() {
            let url = Self::input_url(build, input_id, "proceedEmpty");
            ("proceedEmpty", self.request(reqwest::Method::POST, url))
        } else {
            let url = Self::input_url(build, input_id, "proceed");
            let json = json!({ "parameter": params }).to_string();
            (
                "proceed",
                self.request(reqwest::Method::POST, url)
                    .form(&[("json", json.as_str()), ("proceed", "Proceed")]),
            )
        };
        let resp = timed(
            &self.metrics,
            &format!("POST input/{{id}}/{action}"),
            req.send(),
        )
        .await?;
        let status = resp.status();
        if status.is_success() || status.is_redirection() {
            return Ok(action);
        }
        Err(JenkinsError::Status {
            status: status.as_u16(),
            x_error: resp
                .headers()
                .get("X-Error")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        })
    }

    /// `GET {build}api/json?tree=building,result`: `Some((building, result))`, or `None` when
    /// the build does not exist (any more).
    #[tracing::instrument(skip_all)]
    pub async fn build_status(
        &self,
        build: &url::Url,
    ) -> Result<Option<(bool, Option<String>)>, JenkinsError> {
        let mut u = build.clone();
        u.path_segments_mut()
            .expect("http URLs have paths")
            .pop_if_empty()
            .extend(["api", "json"]);
        u.set_query(Some("tree=building,result"));
        let resp = timed(
            &self.metrics,
            "GET api/json",
            self.request(reqwest::Method::GET, u).send(),
        )
        .await?;
        let status = resp.status();
        if status.as_u16() == 404 {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(JenkinsError::Status {
                status: status.as_u16(),
                x_error: None,
            });
        }
        let v: Value = resp.json().await.map_err(classify)?;
        Ok(Some((
            v.get("building").and_then(Value::as_bool).unwrap_or(false),
            v.get("result").and_then(Value::as_str).map(str::to_string),
        )))
    }

    /// `GET {jenkins.url}whoAmI/api/json`: the name Jenkins authenticated us as.
    pub async fn who_am_i(&self) -> Result<String, JenkinsError> {
        let mut u = self.base.clone();
        u.path_segments_mut()
            .expect("http URLs have paths")
            .pop_if_empty()
            .extend(["whoAmI", "api", "json"]);
        let resp = timed(
            &self.metrics,
            "GET whoAmI",
            self.request(reqwest::Method::GET, u).send(),
        )
        .await?;
        let status = resp.status();
        if !status.is_success() {
            return Err(JenkinsError::Status {
                status: status.as_u16(),
                x_error: None,
            });
        }
        let v: Value = resp.json().await.map_err(classify)?;
        Ok(v.get("name")
            .and_then(Value::as_str)
            .unwrap_or("anonymous")
            .to_string())
    }

    pub fn base(&self) -> &url::Url {
        &self.base
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> JenkinsClient {
        JenkinsClient::new(&JenkinsSettings {
            url: "http://jenkins.internal:8080/".into(),
            allowed_urls: vec!["https://ci.example.com/".into()],
            user: "snowgate".into(),
            api_token: Secret::new("t"),
            ..JenkinsSettings::default()
        })
        .unwrap()
    }

    #[test]
    fn input_ids_get_an_upper_case_first_letter() {
        assert_eq!(jenkins_input_id("approval"), "Approval");
        assert_eq!(jenkins_input_id("SnowgateApproval"), "SnowgateApproval");
        assert_eq!(jenkins_input_id("éclair"), "Éclair");
    }

    #[test]
    fn build_urls_are_rebased_or_refused() {
        let c = client();
        assert_eq!(
            c.resolve("https://ci.example.com/job/app/42/")
                .unwrap()
                .as_str(),
            "http://jenkins.internal:8080/job/app/42/"
        );
        assert_eq!(
            c.resolve("http://jenkins.internal:8080/job/a%20b/7")
                .unwrap()
                .as_str(),
            "http://jenkins.internal:8080/job/a%20b/7/"
        );
        assert!(c.resolve("https://evil.example.com/job/app/42/").is_err());
        assert!(c
            .resolve("https://ci.example.com.evil.org/job/app/42/")
            .is_err());
    }

    #[test]
    fn input_urls_encode_the_id_as_a_segment() {
        let b = url::Url::parse("http://j/job/app/42/").unwrap();
        assert_eq!(
            JenkinsClient::input_url(&b, "approval", "proceedEmpty").as_str(),
            "http://j/job/app/42/input/Approval/proceedEmpty"
        );
    }
}
