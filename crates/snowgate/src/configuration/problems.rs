//! What is wrong with a loaded configuration, one line per problem, each naming the key and
//! its environment variable.
use std::time::Duration;

use super::{env_name, Backend, GateMode, ServiceNowAuth, Settings};

pub(super) fn key_problem(key: &str, problem: &str) -> String {
    format!("{key} ({}) {problem}", env_name(key))
}

impl Settings {
    /// Every problem that stops `serve`, each naming its key and environment variable.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.servicenow_problems(&mut out);
        self.change_problems(&mut out);
        self.callback_problems(&mut out);
        self.jenkins_problems(&mut out);
        self.store_problems(&mut out);
        self.auth_problems(&mut out);
        self.server_problems(&mut out);
        self.freeze_problems(&mut out);
        out
    }

    /// `freezes[i]`: each a window that ends after it starts, with glob job patterns.
    fn freeze_problems(&self, out: &mut Vec<String>) {
        for i in 0..self.freezes.len() {
            if let Err(e) = self.configured_freeze(i) {
                out.push(e);
            }
        }
    }

    /// The `i`th configured freeze, checked like one declared through the API.
    pub fn configured_freeze(&self, i: usize) -> Result<crate::domain::freeze::Freeze, String> {
        use crate::domain::freeze::{Freeze, FreezeSource};
        let f = &self.freezes[i];
        let key = |field: &str| {
            format!(
                "freezes[{i}].{field} (SNOWGATE__FREEZES__{i}__{})",
                field.to_uppercase()
            )
        };
        let time = |field: &str, text: &str| {
            chrono::DateTime::parse_from_rfc3339(text)
                .map(|t| t.with_timezone(&chrono::Utc))
                .map_err(|_| {
                    format!(
                        "{}: `{text}` is not an RFC 3339 time, e.g. 2026-12-24T00:00:00Z",
                        key(field)
                    )
                })
        };
        if f.name.trim().is_empty() {
            return Err(format!("{}: is missing", key("name")));
        }
        let freeze = Freeze {
            id: format!("config-{i}"),
            name: f.name.clone(),
            start: time("start", &f.start)?,
            end: time("end", &f.end)?,
            reason: f.reason.clone(),
            jobs: f.jobs.clone(),
            environments: f.environments.clone(),
            source: FreezeSource::Configuration,
            created_by: None,
        };
        freeze
            .check()
            .map_err(|e| format!("{}: {}", key(&e.field), e.problem))?;
        Ok(freeze)
    }

    /// `servicenow.*`: where the instance is and how snowgate signs in.
    fn servicenow_problems(&self, out: &mut Vec<String>) {
        let sn = &self.servicenow;
        if sn.instance_url.is_empty() {
            out.push(key_problem("servicenow.instance_url", "is missing"));
        } else if url::Url::parse(&sn.instance_url)
            .map(|u| !matches!(u.scheme(), "http" | "https"))
            .unwrap_or(true)
        {
            out.push(key_problem(
                "servicenow.instance_url",
                "must be an http(s) URL such as https://example.service-now.com",
            ));
        }
        if sn.tool_id.is_empty() {
            out.push(key_problem(
                "servicenow.tool_id",
                "is missing (the sys_id of the Jenkins tool record)",
            ));
        }
        match sn.auth {
            ServiceNowAuth::Token if sn.token.is_empty() => out.push(key_problem(
                "servicenow.token",
                "is missing (auth: token needs the tool's DevOps token)",
            )),
            ServiceNowAuth::Basic | ServiceNowAuth::Oauth => {
                if sn.user.is_empty() {
                    out.push(key_problem("servicenow.user", "is missing"));
                }
                if sn.password.is_empty() {
                    out.push(key_problem("servicenow.password", "is missing"));
                }
                if sn.auth == ServiceNowAuth::Oauth {
                    if sn.client_id.is_empty() {
                        out.push(key_problem(
                            "servicenow.client_id",
                            "is missing (auth: oauth)",
                        ));
                    }
                    if sn.client_secret.is_empty() {
                        out.push(key_problem(
                            "servicenow.client_secret",
                            "is missing (auth: oauth)",
                        ));
                    }
                }
            }
            _ => {}
        }
        if sn.default_mode == GateMode::Change && sn.auth == ServiceNowAuth::Token {
            out.push(key_problem(
                "servicenow.auth",
                "is `token`, which only the DevOps API accepts; change mode (default_mode: change) needs `basic` or `oauth`",
            ));
        }
        if sn.max_requests_per_second == 0 {
            out.push(key_problem(
                "servicenow.max_requests_per_second",
                "must be at least 1",
            ));
        }
    }

    /// `change.*`: the change-mode patterns and policies.
    fn change_problems(&self, out: &mut Vec<String>) {
        for (i, p) in self
            .change
            .jobs
            .iter()
            .chain(self.change.environments.iter())
            .enumerate()
        {
            if globset::Glob::new(p).is_err() {
                out.push(format!(
                    "change.jobs/environments entry {i} `{p}` is not a valid glob pattern"
                ));
            }
        }
        for (i, p) in self.supersede.jobs.iter().enumerate() {
            if globset::Glob::new(p).is_err() {
                out.push(format!(
                    "supersede.jobs entry {i} `{p}` is not a valid glob pattern (SNOWGATE__SUPERSEDE__JOBS)"
                ));
            }
        }
        if self.change.conflicts != super::ConflictPolicy::Ignore
            && !self.change.fields.contains_key("cmdb_ci")
        {
            out.push(key_problem(
                "change.conflicts",
                "needs change.fields.cmdb_ci: ServiceNow's conflict detection checks the change request's configuration item",
            ));
        }
        if self.change.auto_transition.is_some() && self.change.standard_template.is_none() {
            out.push(key_problem(
                "change.auto_transition",
                "needs change.standard_template: only pre-approved standard changes are moved by snowgate",
            ));
        }
    }

    /// `callback.*`: the URL ServiceNow calls back on, and its credentials.
    fn callback_problems(&self, out: &mut Vec<String>) {
        match &self.callback.public_base_url {
            None => out.push(key_problem(
                "callback.public_base_url",
                "is missing (the URL ServiceNow uses to reach snowgate, ending with /)",
            )),
            Some(u) => {
                if let Err(p) = check_base_url(u) {
                    out.push(key_problem("callback.public_base_url", &p));
                }
            }
        }
        if let Some(b) = &self.callback.basic_auth {
            if b.user.is_empty() || b.password.is_empty() {
                out.push(key_problem(
                    "callback.basic_auth",
                    "needs both user and password",
                ));
            }
        }
    }

    /// `jenkins.*`: the Jenkins that `input` steps are answered on.
    fn jenkins_problems(&self, out: &mut Vec<String>) {
        if let Some(j) = &self.jenkins {
            if let Err(p) = check_base_url(&j.url) {
                out.push(key_problem("jenkins.url", &p));
            }
            for (i, u) in j.allowed_urls.iter().enumerate() {
                if let Err(p) = check_base_url(u) {
                    out.push(key_problem(&format!("jenkins.allowed_urls.{i}"), &p));
                }
            }
            if j.user.is_empty() {
                out.push(key_problem("jenkins.user", "is missing"));
            }
            if j.api_token.is_empty() {
                out.push(key_problem(
                    "jenkins.api_token",
                    "is missing (a Jenkins API token of jenkins.user)",
                ));
            }
        }
    }

    /// `store.*`: the database URL and its options.
    fn store_problems(&self, out: &mut Vec<String>) {
        match self.store.backend() {
            Err(p) => out.push(key_problem("store.url", &p)),
            Ok(Backend::Postgres(url)) => {
                if let Err(p) = crate::store::split_sslmode(&url) {
                    out.push(key_problem("store.url", &p));
                }
                if let Some(ca) = &self.store.ca_file {
                    if !ca.is_file() {
                        out.push(key_problem(
                            "store.ca_file",
                            &format!("{} is not a readable file", ca.display()),
                        ));
                    }
                }
            }
            Ok(Backend::Sqlite(_)) => {}
        }
        if self.store.timeout.0.is_zero() {
            out.push(key_problem("store.timeout", "must be more than 0"));
        }
    }

    /// `auth.*`: the API tokens.
    fn auth_problems(&self, out: &mut Vec<String>) {
        if !self.auth.disabled
            && self.auth.pipeline_tokens.is_empty()
            && self.auth.operator_tokens.is_empty()
        {
            out.push(format!(
                "{} and {} are empty: set tokens, or `auth.disabled: true` ({}) to run without authentication",
                key_problem("auth.pipeline_tokens", ""),
                key_problem("auth.operator_tokens", ""),
                env_name("auth.disabled")
            ));
        }
        for t in self
            .auth
            .pipeline_tokens
            .iter()
            .chain(self.auth.operator_tokens.iter())
        {
            if t.token.expose().len() < 16 {
                out.push(format!(
                    "auth token `{}` is shorter than 16 characters; use a long random token",
                    t.name
                ));
            }
        }
        if self.ui.session_ttl.0 < Duration::from_secs(1) {
            out.push(key_problem(
                "ui.session_ttl",
                "must be at least 1s (the session cookie's Max-Age counts whole seconds)",
            ));
        }
    }

    /// `server.*`: where the API listens (and whether running without auth is safe there).
    fn server_problems(&self, out: &mut Vec<String>) {
        match self.server.bind.parse::<std::net::SocketAddr>() {
            Err(_) => out.push(key_problem(
                "server.bind",
                "must be an address such as 127.0.0.1:8080",
            )),
            Ok(addr) if self.auth.disabled && !addr.ip().is_loopback() => out.push(key_problem(
                "auth.disabled",
                &format!("is accepted only on a loopback server.bind (127.0.0.1 or ::1), not {addr}: anyone who reaches the port could release production stages"),
            )),
            Ok(_) => {}
        }
    }
}

/// The callback base must be an absolute http(s) URL ending with `/` (the path is appended).
pub fn check_base_url(u: &str) -> Result<(), String> {
    let parsed = url::Url::parse(u).map_err(|e| format!("`{u}` is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("`{u}` must be an http or https URL"));
    }
    if !u.ends_with('/') {
        return Err(format!("`{u}` must end with `/`"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(format!("`{u}` must not carry a query or fragment"));
    }
    Ok(())
}
