//! Typed client of the Jenkins controller: answer a paused `input` step and ask whether a build
//! still runs. Calls go only to `jenkins.url` (build URLs known under `jenkins.allowed_urls` are
//! rewritten onto it; see [`allow_list`]), with Basic auth sent preemptively, and never follow a
//! redirect.
use std::time::Duration;

mod allow_list;
pub use allow_list::AllowList;

use serde::{Deserialize, Serialize};

use crate::configuration::{JenkinsSettings, Secret};
use crate::servicenow::lenient::{str_of, Json, Scalar};

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
    /// A redirect is never followed and never a success: Jenkins answers an input with 200, and
    /// a redirect (to the login page, or elsewhere) means the request was not carried out.
    #[error("Jenkins answered {status} redirecting to {location} instead of carrying out the request (redirects are not followed; check jenkins.url and the credentials)")]
    Redirect { status: u16, location: String },
    /// The URL is not on `jenkins.url`: nothing was sent.
    #[error("refused to send the Jenkins credentials to {0}: not under jenkins.url")]
    NotAllowed(String),
}

impl JenkinsError {
    pub fn is_transient(&self) -> bool {
        match self {
            JenkinsError::Connect(_) | JenkinsError::Timeout => true,
            JenkinsError::Status { status, .. } => *status >= 500 || *status == 429,
            JenkinsError::Redirect { .. } | JenkinsError::NotAllowed(_) => false,
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
    allow: AllowList,
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

/// The `json` form field of `POST input/{Id}/proceed`: `{"parameter": [{"name": …, "value": …}]}`.
#[derive(Serialize)]
struct InputParameters<'a> {
    parameter: Vec<InputParameter<'a>>,
}

#[derive(Serialize)]
struct InputParameter<'a> {
    name: &'a str,
    value: &'a str,
}

/// `GET {build}api/json?tree=building,result`: a `building` that is not a boolean reads as
/// false, a `result` that is not a string as none.
#[derive(Default, Deserialize)]
struct BuildAnswer {
    building: Option<Scalar>,
    result: Option<Scalar>,
}

/// `GET whoAmI/api/json`: a `name` that is not a string reads as anonymous.
#[derive(Default, Deserialize)]
struct WhoAmI {
    name: Option<Scalar>,
}

/// A 3xx answer as an error naming the status and where it pointed.
fn redirect(resp: &reqwest::Response) -> Option<JenkinsError> {
    let status = resp.status();
    status.is_redirection().then(|| JenkinsError::Redirect {
        status: status.as_u16(),
        location: crate::servicenow::location_host(resp.headers()),
    })
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
        let allow =
            AllowList::new(&s.url, &s.allowed_urls).map_err(|e| anyhow::anyhow!("jenkins: {e}"))?;
        Ok(JenkinsClient {
            http: reqwest::Client::builder()
                .timeout(s.timeout.0)
                .connect_timeout(Duration::from_secs(5))
                // A redirect would carry the Basic credentials' request elsewhere; see Redirect.
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("snowgate/", env!("CARGO_PKG_VERSION")))
                .build()?,
            allow,
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
        self.allow.resolve(build_url)
    }

    /// A request carrying the credentials, only to a URL on `jenkins.url`: checked here, just
    /// before every call, whatever built the URL.
    fn request(
        &self,
        method: reqwest::Method,
        url: url::Url,
    ) -> Result<reqwest::RequestBuilder, JenkinsError> {
        if !self.allow.permits(&url) {
            let host = url.host_str().unwrap_or("").to_string();
            return Err(JenkinsError::NotAllowed(format!(
                "{}://{host}{}",
                url.scheme(),
                url.port().map(|p| format!(":{p}")).unwrap_or_default()
            )));
        }
        // Preemptive Basic auth: an API token needs no crumb.
        Ok(self
            .http
            .request(method, url)
            .basic_auth(&self.user, Some(self.token.expose())))
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
                params.push(InputParameter { name, value: v });
            }
            if let (Some(name), Some(v)) = (&self.approver_parameter, answer.approver) {
                params.push(InputParameter { name, value: v });
            }
        }
        let (action, req) = if !answer.proceed {
            let url = Self::input_url(build, input_id, "abort");
            ("abort", self.request(reqwest::Method::POST, url)?)
        } else if params.is_empty() {
            let url = Self::input_url(build, input_id, "proceedEmpty");
            ("proceedEmpty", self.request(reqwest::Method::POST, url)?)
        } else {
            let url = Self::input_url(build, input_id, "proceed");
            let json = serde_json::to_string(&InputParameters { parameter: params })
                .expect("strings serialize");
            (
                "proceed",
                self.request(reqwest::Method::POST, url)?
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
        if status.is_success() {
            return Ok(action);
        }
        if let Some(e) = redirect(&resp) {
            return Err(e);
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
            self.request(reqwest::Method::GET, u)?.send(),
        )
        .await?;
        let status = resp.status();
        if status.as_u16() == 404 {
            return Ok(None);
        }
        if let Some(e) = redirect(&resp) {
            return Err(e);
        }
        if !status.is_success() {
            return Err(JenkinsError::Status {
                status: status.as_u16(),
                x_error: None,
            });
        }
        let answer = resp
            .json::<Json<BuildAnswer>>()
            .await
            .map_err(classify)?
            .into_object();
        Ok(Some((
            answer
                .building
                .as_ref()
                .and_then(Scalar::as_bool)
                .unwrap_or(false),
            str_of(&answer.result).map(str::to_string),
        )))
    }

    /// `GET {jenkins.url}whoAmI/api/json`: the name Jenkins authenticated us as.
    pub async fn who_am_i(&self) -> Result<String, JenkinsError> {
        let mut u = self.allow.base().clone();
        u.path_segments_mut()
            .expect("http URLs have paths")
            .pop_if_empty()
            .extend(["whoAmI", "api", "json"]);
        let resp = timed(
            &self.metrics,
            "GET whoAmI",
            self.request(reqwest::Method::GET, u)?.send(),
        )
        .await?;
        let status = resp.status();
        if let Some(e) = redirect(&resp) {
            return Err(e);
        }
        if !status.is_success() {
            return Err(JenkinsError::Status {
                status: status.as_u16(),
                x_error: None,
            });
        }
        let answer = resp
            .json::<Json<WhoAmI>>()
            .await
            .map_err(classify)?
            .into_object();
        Ok(str_of(&answer.name).unwrap_or("anonymous").to_string())
    }

    pub fn base(&self) -> &url::Url {
        self.allow.base()
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
