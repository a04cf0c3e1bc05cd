//! `snowgate check`: validate the configuration, test the ServiceNow connection and the callback
//! URL, and say what could not be checked. The result is a [`Report`] so it can be tested;
//! `main` only prints it.
use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use crate::configuration::{check_base_url, env_name, ServiceNowAuth, Settings};
use crate::servicenow::devops::{DevOpsClient, ServiceNowError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// Works, but probably not as intended (a loopback callback URL); not a failure.
    Warn,
    Fail,
    /// Not checked; the detail says why.
    Skip,
}

impl Status {
    pub fn marker(self) -> &'static str {
        match self {
            Status::Ok => "[ok]",
            Status::Warn => "[warn]",
            Status::Fail => "[FAIL]",
            Status::Skip => "[skip]",
        }
    }
}

/// What a line of the checklist is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject {
    Configuration,
    ServiceNow,
    Callback,
    Jenkins,
}

impl Subject {
    pub fn label(self) -> &'static str {
        match self {
            Subject::Configuration => "configuration",
            Subject::ServiceNow => "ServiceNow connection",
            Subject::Callback => "callback URL",
            Subject::Jenkins => "Jenkins credentials",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Item {
    pub subject: Subject,
    pub status: Status,
    pub detail: String,
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<6} {}: {}",
            self.status.marker(),
            self.subject.label(),
            self.detail
        )
    }
}

#[derive(Clone, Debug, Default)]
pub struct Report {
    pub items: Vec<Item>,
}

impl Report {
    fn push(&mut self, subject: Subject, status: Status, detail: impl Into<String>) {
        self.items.push(Item {
            subject,
            status,
            detail: detail.into(),
        });
    }

    pub fn failures(&self) -> usize {
        self.count(Status::Fail)
    }

    pub fn passed(&self) -> bool {
        self.failures() == 0
    }

    fn count(&self, status: Status) -> usize {
        self.items.iter().filter(|i| i.status == status).count()
    }

    pub fn of(&self, subject: Subject) -> impl Iterator<Item = &Item> {
        self.items.iter().filter(move |i| i.subject == subject)
    }

    /// The closing line: how many failed, warned, were skipped.
    pub fn summary(&self) -> String {
        let (fail, warn, skip) = (
            self.failures(),
            self.count(Status::Warn),
            self.count(Status::Skip),
        );
        let head = if fail == 0 {
            "all checks passed".to_string()
        } else {
            format!("{fail} check(s) failed")
        };
        format!("{head} ({warn} warning(s), {skip} skipped)")
    }
}

/// Load `config` (and the `SNOWGATE__*` environment) and check it.
pub async fn run(config: Option<&Path>) -> Report {
    let source = match config {
        Some(p) => format!("{} and the SNOWGATE__* environment", p.display()),
        None => "the SNOWGATE__* environment (no --config file)".to_string(),
    };
    match Settings::load(config) {
        Ok(settings) => {
            let mut report = Report::default();
            report.push(
                Subject::Configuration,
                Status::Ok,
                format!("loaded from {source}"),
            );
            report.items.extend(check_settings(&settings).await.items);
            report
        }
        Err(e) => {
            let mut report = Report::default();
            report.push(Subject::Configuration, Status::Fail, e.0);
            let why = "skipped: the configuration did not load";
            report.push(Subject::ServiceNow, Status::Skip, why);
            report.push(Subject::Callback, Status::Skip, why);
            report.push(Subject::Jenkins, Status::Skip, why);
            report
        }
    }
}

/// Every check on loaded settings: configuration problems, the ServiceNow connection, the
/// callback URL and the (not yet configurable) Jenkins credentials.
pub async fn check_settings(settings: &Settings) -> Report {
    let mut report = Report::default();
    // The callback URL gets its own line below; keep its problem from being reported twice.
    let callback_key = format!(
        "callback.public_base_url ({})",
        env_name("callback.public_base_url")
    );
    let problems: Vec<String> = settings
        .problems()
        .into_iter()
        .filter(|p| !p.starts_with(&callback_key))
        .collect();
    if problems.is_empty() {
        report.push(
            Subject::Configuration,
            Status::Ok,
            "every setting `serve` needs is present and well-formed",
        );
    }
    for p in problems {
        report.push(Subject::Configuration, Status::Fail, p);
    }
    let (status, detail) = servicenow_connection(settings).await;
    report.push(Subject::ServiceNow, status, detail);
    let (status, detail) = callback_url(settings.callback.public_base_url.as_deref());
    report.push(Subject::Callback, status, detail);
    let (status, detail) = jenkins_credentials(settings).await;
    report.push(Subject::Jenkins, status, detail);
    report
}

/// `GET {jenkins.url}whoAmI/api/json` with the configured user and API token.
async fn jenkins_credentials(settings: &Settings) -> (Status, String) {
    let Some(j) = &settings.jenkins else {
        // Only input-step releases need Jenkins; nothing to test, and "ok" would claim a
        // check that never ran.
        return (
            Status::Skip,
            "skipped: no jenkins section configured".into(),
        );
    };
    let client = match crate::jenkins::JenkinsClient::new(j) {
        Ok(c) => c,
        Err(e) => return (Status::Fail, format!("jenkins.url cannot be used: {e:#}")),
    };
    match client.who_am_i().await {
        Ok(name) if name == j.user => (
            Status::Ok,
            format!("{} accepted the API token of {name}", client.base()),
        ),
        Ok(name) => (
            Status::Fail,
            format!(
                "{} answered as `{name}`, not as jenkins.user `{}`: the API token was not accepted",
                client.base(),
                j.user
            ),
        ),
        Err(e) => (Status::Fail, format!("{}: {e}", client.base())),
    }
}

/// Why the connection cannot be tested with these settings (the problems are listed above).
fn connection_prerequisite(settings: &Settings) -> Option<String> {
    let sn = &settings.servicenow;
    let valid_instance = url::Url::parse(&sn.instance_url)
        .map(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .unwrap_or(false);
    if !valid_instance {
        return Some("servicenow.instance_url is missing or not an http(s) URL".into());
    }
    if sn.tool_id.is_empty() {
        return Some("servicenow.tool_id is missing".into());
    }
    match sn.auth {
        ServiceNowAuth::Token if sn.token.is_empty() => Some("servicenow.token is missing".into()),
        ServiceNowAuth::Basic if sn.user.is_empty() || sn.password.is_empty() => {
            Some("servicenow.user or servicenow.password is missing".into())
        }
        ServiceNowAuth::Oauth => {
            Some("servicenow.auth `oauth` is not supported by this build".into())
        }
        _ => None,
    }
}

/// `GET …/orchestration/changeControl?toolId=…&toolType=jenkins&testConnection=true`.
async fn servicenow_connection(settings: &Settings) -> (Status, String) {
    if let Some(why) = connection_prerequisite(settings) {
        return (Status::Skip, format!("skipped: {why}"));
    }
    let sn = &settings.servicenow;
    let client = match DevOpsClient::new(sn) {
        Ok(c) => c,
        Err(e) => {
            return (
                Status::Fail,
                format!(
                    "cannot set up the HTTP client (servicenow.proxy / servicenow.ca_file?): {e:#}"
                ),
            )
        }
    };
    // Only the origin: an instance URL is not secret, but keep anything after it out of the output.
    let instance = url::Url::parse(&sn.instance_url)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_default();
    match client.test_connection().await {
        Ok(_) => (
            Status::Ok,
            format!(
                "{instance} accepted the {} credentials for tool {} (testConnection)",
                match sn.auth {
                    ServiceNowAuth::Token => "DevOps token (v2)",
                    _ => "Basic (v1)",
                },
                sn.tool_id
            ),
        ),
        Err(e @ ServiceNowError::Status { status, .. }) if status == 401 || status == 403 => (
            Status::Fail,
            format!("credentials refused by {instance}: {}", e.describe()),
        ),
        Err(e) => (Status::Fail, format!("{instance}: {}", e.describe())),
    }
}

/// The shape of `callback.public_base_url`, and whether ServiceNow could possibly reach it.
pub fn callback_url(base: Option<&str>) -> (Status, String) {
    let key = format!(
        "callback.public_base_url ({})",
        env_name("callback.public_base_url")
    );
    let Some(base) = base else {
        return (
            Status::Fail,
            format!("{key} is missing (the URL ServiceNow uses to reach snowgate, ending with /)"),
        );
    };
    if let Err(p) = check_base_url(base) {
        return (Status::Fail, format!("{key} {p}"));
    }
    if let Some(host) = loopback_host(base) {
        return (
            Status::Warn,
            format!(
                "{key} points at {host}, which ServiceNow cannot reach; callbacks will only \
                 arrive from a simulator on this machine"
            ),
        );
    }
    (
        Status::Ok,
        format!("ServiceNow will call back on {base}sn-devops/pipeline_<uuid>"),
    )
}

/// The host when it is this machine only: `localhost`, a loopback or unspecified address.
fn loopback_host(base: &str) -> Option<String> {
    let u = url::Url::parse(base).ok()?;
    let loopback = match u.host()? {
        url::Host::Domain(d) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
        url::Host::Ipv4(ip) => IpAddr::V4(ip).is_loopback() || ip.is_unspecified(),
        url::Host::Ipv6(ip) => {
            ip.is_loopback()
                || ip.is_unspecified()
                || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    };
    loopback.then(|| u.host_str().unwrap_or_default().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_callback_urls_are_a_warning_not_a_failure() {
        for base in [
            "http://127.0.0.1:8080/",
            "http://localhost:8080/",
            "http://LOCALHOST./",
            "http://app.localhost/",
            "http://[::1]:8080/",
            "http://0.0.0.0:8080/",
            "http://127.1.2.3/",
        ] {
            let (status, detail) = callback_url(Some(base));
            assert_eq!(status, Status::Warn, "{base}: {detail}");
            assert!(detail.contains("cannot reach"), "{detail}");
        }
    }

    #[test]
    fn a_public_callback_url_passes() {
        let (status, detail) = callback_url(Some("https://snowgate.ci.example.com/"));
        assert_eq!(status, Status::Ok, "{detail}");
        assert!(detail.contains("https://snowgate.ci.example.com/sn-devops/pipeline_<uuid>"));
        // A name that merely starts like a loopback name is not one.
        assert_eq!(
            callback_url(Some("https://localhost-proxy.example/")).0,
            Status::Ok
        );
    }

    #[test]
    fn a_missing_or_malformed_callback_url_fails_naming_its_variable() {
        for base in [
            None,
            Some("https://x.example/app"),
            Some("ftp://x.example/"),
        ] {
            let (status, detail) = callback_url(base);
            assert_eq!(status, Status::Fail, "{base:?}");
            assert!(
                detail.contains("SNOWGATE__CALLBACK__PUBLIC_BASE_URL"),
                "{detail}"
            );
        }
    }

    #[tokio::test]
    async fn empty_settings_fail_and_skip_the_connection_test() {
        let report = check_settings(&Settings::default()).await;
        assert!(!report.passed());
        let config: Vec<String> = report
            .of(Subject::Configuration)
            .map(|i| i.to_string())
            .collect();
        assert!(
            config
                .iter()
                .any(|l| l.starts_with("[FAIL] configuration: ")
                    && l.contains("SNOWGATE__SERVICENOW__INSTANCE_URL")),
            "{config:?}"
        );
        // The callback problem is reported once, on its own line.
        assert!(
            !config.iter().any(|l| l.contains("PUBLIC_BASE_URL")),
            "{config:?}"
        );
        let sn: Vec<&Item> = report.of(Subject::ServiceNow).collect();
        assert_eq!(sn.len(), 1);
        assert_eq!(sn[0].status, Status::Skip);
        assert_eq!(
            report.of(Subject::Callback).next().unwrap().status,
            Status::Fail
        );
        let jenkins = report.of(Subject::Jenkins).next().unwrap();
        assert_eq!(jenkins.status, Status::Skip);
        assert_eq!(
            jenkins.to_string(),
            "[skip] Jenkins credentials: skipped: no jenkins section configured"
        );
    }

    #[tokio::test]
    async fn a_configuration_that_does_not_load_is_one_failed_line() {
        let report = run(Some(Path::new("/nonexistent/snowgate.yaml"))).await;
        let fails: Vec<&Item> = report
            .items
            .iter()
            .filter(|i| i.status == Status::Fail)
            .collect();
        assert_eq!(fails.len(), 1, "{:?}", report.items);
        assert!(fails[0].detail.contains("does not exist"));
        assert!(report.summary().starts_with("1 check(s) failed"));
    }
}
