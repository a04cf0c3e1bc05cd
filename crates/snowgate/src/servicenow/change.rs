//! Client of ServiceNow's Change Management REST API (`/api/sn_chg_rest/change…`, SPEC §6) and
//! its authentication: OAuth 2 password grant with one shared, refreshed token, or Basic.
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Map, Value};
use tokio::sync::Mutex;

use super::devops::{classify, encode_query_value, read_answer, ServiceNowError};
use crate::configuration::{Secret, ServiceNowAuth, ServiceNowSettings};
use crate::metrics::Metrics;

/// Refresh the access token this long before ServiceNow says it expires.
const REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// A change request as the Change API answers it; every field read from its `value`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChangeRecord {
    pub sys_id: String,
    pub number: String,
    pub short_description: String,
    /// The state's value (`-5` … `4`) or name, as sent.
    pub state: String,
    pub active: bool,
    pub start_date: Option<String>,
    pub end_date: Option<String>,
    pub approval: Option<String>,
    pub assignment_group: Option<String>,
}

/// The `value` of a record field: `{"value": …, "display_value": …}`, or a plain value.
pub fn field(record: &Value, name: &str) -> Option<String> {
    let v = record.get(name)?;
    let inner = match v {
        Value::Object(o) => o.get("value")?,
        other => other,
    };
    match inner {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `display_value` of a reference field (e.g. `assignment_group`), else its value.
fn display(record: &Value, name: &str) -> Option<String> {
    record
        .get(name)
        .and_then(|v| v.get("display_value"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .filter(|s| !s.is_empty())
        .or_else(|| field(record, name))
}

impl ChangeRecord {
    pub fn parse(v: &Value) -> Result<ChangeRecord, ServiceNowError> {
        let sys_id = field(v, "sys_id")
            .ok_or_else(|| ServiceNowError::Decode("a change record without sys_id".into()))?;
        let non_empty = |s: Option<String>| s.filter(|x| !x.trim().is_empty());
        Ok(ChangeRecord {
            number: field(v, "number").unwrap_or_default(),
            short_description: field(v, "short_description").unwrap_or_default(),
            state: field(v, "state").unwrap_or_default(),
            active: field(v, "active").is_none_or(|a| a == "true"),
            start_date: non_empty(field(v, "start_date")),
            end_date: non_empty(field(v, "end_date")),
            approval: non_empty(field(v, "approval")),
            assignment_group: non_empty(display(v, "assignment_group")),
            sys_id,
        })
    }
}

/// The records of a list answer, `{"result": [{…}, …]}`.
pub fn records(v: &Value) -> Result<Vec<ChangeRecord>, ServiceNowError> {
    v.get("result")
        .and_then(Value::as_array)
        .ok_or_else(|| ServiceNowError::Decode("the answer has no `result` list".into()))?
        .iter()
        .map(ChangeRecord::parse)
        .collect()
}

/// Creation answers are documented both as `{"result": {…}}` and `{"result": [{…}]}`.
pub fn single_result(v: &Value) -> Result<&Value, ServiceNowError> {
    match v.get("result") {
        Some(Value::Array(a)) => a
            .first()
            .ok_or_else(|| ServiceNowError::Decode("an empty result".into())),
        Some(r @ Value::Object(_)) => Ok(r),
        _ => Err(ServiceNowError::Decode("the answer has no `result`".into())),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    Normal,
    Emergency,
}

struct Tokens {
    access: Secret,
    refresh: Option<Secret>,
    expires_at: Instant,
}

/// One OAuth token shared by every gate: a password grant once, refreshes before expiry and
/// after a 401, a fresh password grant when a refresh fails.
pub struct OAuth {
    token_url: url::Url,
    client_id: String,
    client_secret: Secret,
    user: String,
    password: Secret,
    tokens: Mutex<Option<Tokens>>,
}

enum Auth {
    Basic { user: String, password: Secret },
    OAuth(Arc<OAuth>),
}

#[derive(Clone)]
pub struct ChangeClient {
    http: reqwest::Client,
    instance: url::Url,
    auth: Arc<Auth>,
    metrics: Arc<Metrics>,
}

impl ChangeClient {
    pub fn new(s: &ServiceNowSettings) -> anyhow::Result<ChangeClient> {
        let instance = url::Url::parse(&s.instance_url)?;
        let auth = match s.auth {
            ServiceNowAuth::Oauth => Auth::OAuth(Arc::new(OAuth {
                token_url: instance.join("oauth_token.do")?,
                client_id: s.client_id.clone(),
                client_secret: s.client_secret.clone(),
                user: s.user.clone(),
                password: s.password.clone(),
                tokens: Mutex::new(None),
            })),
            _ => Auth::Basic {
                user: s.user.clone(),
                password: s.password.clone(),
            },
        };
        Ok(ChangeClient {
            http: super::http_client(s)?,
            instance,
            auth: Arc::new(auth),
            metrics: Default::default(),
        })
    }

    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// A link a person can click: `<instance>/nav_to.do?uri=change_request.do?sys_id=…`.
    pub fn record_url(&self, sys_id: &str) -> String {
        let base = self.instance.as_str().trim_end_matches('/');
        format!("{base}/nav_to.do?uri=change_request.do?sys_id={sys_id}")
    }

    fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> url::Url {
        let mut u = self.instance.clone();
        u.path_segments_mut()
            .expect("http URLs have paths")
            .pop_if_empty()
            .extend(["api", "sn_chg_rest", "change"])
            .extend(segments);
        if !query.is_empty() {
            let q: Vec<String> = query
                .iter()
                .map(|(k, v)| format!("{k}={}", encode_query_value(v)))
                .collect();
            u.set_query(Some(&q.join("&")));
        }
        u
    }

    /// The `Authorization` header value.
    async fn authorization(&self, force_refresh: bool) -> Result<String, ServiceNowError> {
        match &*self.auth {
            Auth::Basic { user, password } => {
                use base64::Engine;
                Ok(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD
                        .encode(format!("{user}:{}", password.expose()))
                ))
            }
            Auth::OAuth(o) => Ok(format!("Bearer {}", self.bearer(o, force_refresh).await?)),
        }
    }

    async fn bearer(&self, o: &OAuth, force_refresh: bool) -> Result<String, ServiceNowError> {
        let mut guard = o.tokens.lock().await;
        if let Some(t) = guard.as_ref() {
            if !force_refresh && Instant::now() + REFRESH_MARGIN < t.expires_at {
                return Ok(t.access.expose().to_string());
            }
        }
        let refresh = guard.as_ref().and_then(|t| t.refresh.clone());
        let fresh = match refresh {
            Some(r) => match self
                .grant(
                    o,
                    &[
                        ("grant_type", "refresh_token"),
                        ("refresh_token", r.expose()),
                    ],
                )
                .await
            {
                Ok(t) => Ok(t),
                Err(ServiceNowError::Status {
                    status: 400 | 401, ..
                }) => {
                    tracing::info!(
                        "OAuth refresh refused; requesting a new token with the password grant"
                    );
                    self.password_grant(o).await
                }
                Err(e) => Err(e),
            },
            None => self.password_grant(o).await,
        }?;
        let mut fresh = fresh;
        // A refresh answer may omit `refresh_token`: keep the old one.
        if fresh.refresh.is_none() {
            fresh.refresh = guard.as_ref().and_then(|t| t.refresh.clone());
        }
        let access = fresh.access.expose().to_string();
        *guard = Some(fresh);
        Ok(access)
    }

    async fn password_grant(&self, o: &OAuth) -> Result<Tokens, ServiceNowError> {
        self.grant(
            o,
            &[
                ("grant_type", "password"),
                ("username", &o.user),
                ("password", o.password.expose()),
            ],
        )
        .await
    }

    async fn grant(&self, o: &OAuth, params: &[(&str, &str)]) -> Result<Tokens, ServiceNowError> {
        let mut form: Vec<(&str, &str)> = params.to_vec();
        form.push(("client_id", &o.client_id));
        form.push(("client_secret", o.client_secret.expose()));
        let started = std::time::Instant::now();
        let resp = self
            .http
            .post(o.token_url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(classify);
        crate::metrics::record_call(
            &self.metrics.servicenow_requests,
            &self.metrics.servicenow_latency,
            "POST oauth_token.do",
            resp.as_ref().ok().map(|r| r.status().as_u16()),
            started.elapsed(),
        );
        let resp = resp?;
        let status = resp.status();
        if status.is_redirection() {
            return Err(ServiceNowError::Redirect {
                status: status.as_u16(),
                location: super::location_host(resp.headers()),
            });
        }
        if !status.is_success() {
            // The body of a refused grant is not specified: do not parse it.
            return Err(ServiceNowError::Status {
                status: status.as_u16(),
                message: format!(
                    "the OAuth {} grant was refused; check servicenow.client_id, client_secret, user and password",
                    params[0].1
                ),
                retry_after: None,
            });
        }
        let v: Value = resp.json().await.map_err(classify)?;
        let access = v
            .get("access_token")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                ServiceNowError::Decode("the token answer has no access_token".into())
            })?;
        let expires = v.get("expires_in").and_then(Value::as_u64).unwrap_or(1800);
        Ok(Tokens {
            access: Secret::new(access),
            refresh: v
                .get("refresh_token")
                .and_then(Value::as_str)
                .map(Secret::new),
            expires_at: Instant::now() + Duration::from_secs(expires),
        })
    }

    async fn call(
        &self,
        method: Method,
        url: url::Url,
        body: Option<&Value>,
        endpoint: &str,
    ) -> Result<Value, ServiceNowError> {
        let started = std::time::Instant::now();
        let mut result = self
            .call_once(method.clone(), url.clone(), body, false)
            .await;
        // An OAuth token can be revoked or expire early: refresh once and try again.
        if matches!(result, Err(ServiceNowError::Status { status: 401, .. }))
            && matches!(&*self.auth, Auth::OAuth(_))
        {
            result = self.call_once(method, url, body, true).await;
        }
        let status = match &result {
            Ok(_) => Some(200),
            Err(ServiceNowError::Status { status, .. }) => Some(*status),
            Err(_) => None,
        };
        crate::metrics::record_call(
            &self.metrics.servicenow_requests,
            &self.metrics.servicenow_latency,
            endpoint,
            status,
            started.elapsed(),
        );
        result
    }

    async fn call_once(
        &self,
        method: Method,
        url: url::Url,
        body: Option<&Value>,
        force_refresh: bool,
    ) -> Result<Value, ServiceNowError> {
        let auth = self.authorization(force_refresh).await?;
        let mut req = self
            .http
            .request(method, url)
            .header(reqwest::header::ACCEPT, "application/json")
            .header(reqwest::header::AUTHORIZATION, auth);
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.map_err(classify)?;
        read_answer(
            resp,
            "; the account needs the sn_change_read and sn_change_write roles (or itil)",
        )
        .await
    }

    async fn query(
        &self,
        sysparm_query: &str,
        limit: u32,
    ) -> Result<Vec<ChangeRecord>, ServiceNowError> {
        let limit = limit.to_string();
        let url = self.url(
            &[],
            &[("sysparm_query", sysparm_query), ("sysparm_limit", &limit)],
        );
        let v = self.call(Method::GET, url, None, "GET change").await?;
        records(&v)
    }

    /// The CR with this number, if any.
    pub async fn find_by_number(
        &self,
        number: &str,
    ) -> Result<Option<ChangeRecord>, ServiceNowError> {
        let q = format!("number={}", escape_query_value(number));
        Ok(self
            .query(&q, 5)
            .await?
            .into_iter()
            .find(|c| c.number == number))
    }

    /// The newest open CR whose short description is exactly `title` (closed, canceled and
    /// near-miss titles never match; the comparison is repeated here, not left to the query).
    pub async fn find_open_by_title(
        &self,
        title: &str,
    ) -> Result<Option<ChangeRecord>, ServiceNowError> {
        let q = format!(
            "short_description={}^active=true^ORDERBYDESCsys_created_on",
            escape_query_value(title)
        );
        Ok(self.query(&q, 20).await?.into_iter().find(|c| {
            c.short_description == title
                && c.active
                && !matches!(
                    crate::domain::change::CrState::parse(&c.state),
                    Some(
                        crate::domain::change::CrState::Closed
                            | crate::domain::change::CrState::Canceled
                    )
                )
        }))
    }

    pub async fn get(&self, sys_id: &str) -> Result<ChangeRecord, ServiceNowError> {
        let url = self.url(&[sys_id], &[]);
        let v = self.call(Method::GET, url, None, "GET change/{id}").await?;
        ChangeRecord::parse(single_result(&v)?)
    }

    pub async fn create(
        &self,
        kind: ChangeKind,
        fields: &Map<String, Value>,
    ) -> Result<ChangeRecord, ServiceNowError> {
        let seg = match kind {
            ChangeKind::Normal => "normal",
            ChangeKind::Emergency => "emergency",
        };
        let url = self.url(&[seg], &[]);
        let body = Value::Object(fields.clone());
        let v = self
            .call(
                Method::POST,
                url,
                Some(&body),
                &format!("POST change/{seg}"),
            )
            .await?;
        ChangeRecord::parse(single_result(&v)?)
    }

    pub async fn create_standard(
        &self,
        template_sys_id: &str,
        fields: &Map<String, Value>,
    ) -> Result<ChangeRecord, ServiceNowError> {
        let url = self.url(&["standard", template_sys_id], &[]);
        let body = Value::Object(fields.clone());
        let v = self
            .call(Method::POST, url, Some(&body), "POST change/standard/{id}")
            .await?;
        ChangeRecord::parse(single_result(&v)?)
    }

    /// The sys_id of the active standard change template with this name.
    pub async fn find_template(&self, name: &str) -> Result<Option<String>, ServiceNowError> {
        let q = format!("name={}^active=true", escape_query_value(name));
        let url = self.url(&["standard", "template"], &[("sysparm_query", &q)]);
        let v = self
            .call(Method::GET, url, None, "GET change/standard/template")
            .await?;
        Ok(v.get("result").and_then(Value::as_array).and_then(|rows| {
            rows.iter()
                .find(|r| field(r, "name").as_deref() == Some(name))
                .and_then(|r| field(r, "sys_id"))
        }))
    }

    pub async fn patch(
        &self,
        sys_id: &str,
        body: &Map<String, Value>,
    ) -> Result<ChangeRecord, ServiceNowError> {
        let url = self.url(&[sys_id], &[]);
        let v = self
            .call(
                Method::PATCH,
                url,
                Some(&Value::Object(body.clone())),
                "PATCH change/{id}",
            )
            .await?;
        ChangeRecord::parse(single_result(&v)?)
    }
}

/// In an encoded query `^` separates conditions; a literal caret is written `^^`.
pub fn escape_query_value(v: &str) -> String {
    v.replace('^', "^^")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn records_are_read_from_values_not_display_values() {
        let r = json!({
            "sys_id": {"value": "abc", "display_value": "abc"},
            "number": {"value": "CHG0030001", "display_value": "CHG0030001"},
            "state": {"value": -1, "display_value": "Implement"},
            "active": {"value": "true", "display_value": "true"},
            "start_date": {"value": "2030-01-01 08:00:00", "display_value": "01/01/2030 09:00:00 CET", "display_value_internal": "2030-01-01 09:00:00"},
            "end_date": {"value": "", "display_value": ""},
            "assignment_group": {"value": "a1b2", "display_value": "CAB"},
        });
        let c = ChangeRecord::parse(&r).unwrap();
        assert_eq!(c.sys_id, "abc");
        assert_eq!(c.state, "-1");
        assert_eq!(c.start_date.as_deref(), Some("2030-01-01 08:00:00"));
        assert_eq!(c.end_date, None);
        assert_eq!(c.assignment_group.as_deref(), Some("CAB"));
        // sys_id as a plain string is read too.
        let plain = json!({"sys_id": "def", "number": "CHG1", "state": "-5"});
        assert_eq!(ChangeRecord::parse(&plain).unwrap().sys_id, "def");
    }

    #[test]
    fn creation_answers_may_be_an_object_or_a_list() {
        let obj = json!({"result": {"sys_id": "a"}});
        let list = json!({"result": [{"sys_id": "b"}]});
        assert_eq!(field(single_result(&obj).unwrap(), "sys_id").unwrap(), "a");
        assert_eq!(field(single_result(&list).unwrap(), "sys_id").unwrap(), "b");
    }

    #[test]
    fn carets_in_query_values_are_doubled() {
        assert_eq!(escape_query_value("a^b"), "a^^b");
    }
}
