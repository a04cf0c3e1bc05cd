//! Client of ServiceNow's Change Management REST API (`/api/sn_chg_rest/change…`), with Basic
//! or OAuth authentication (see [`super::auth`]).
use std::sync::Arc;

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::auth::Auth;
use super::devops::{encode_query_value, json_body};
use super::error::{classify, read_answer, Answer, ServiceNowError};
use super::lenient::{Json, List, Scalar};
use crate::configuration::ServiceNowSettings;
use crate::metrics::Metrics;

mod attachments;
mod conflicts;
pub use conflicts::{Conflict, ConflictReport};

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

/// A record field: `{"value": …, "display_value": …}`, or a plain value.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(from = "Json<FieldObject>")]
pub struct Field {
    value: Option<Scalar>,
    display_value: Option<Scalar>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
struct FieldObject {
    value: Option<Scalar>,
    display_value: Option<Scalar>,
}

impl From<Json<FieldObject>> for Field {
    fn from(j: Json<FieldObject>) -> Field {
        match j {
            Json::Object(o) => Field {
                value: o.value,
                display_value: o.display_value,
            },
            Json::Other(s) => Field {
                value: Some(s),
                display_value: None,
            },
        }
    }
}

impl Field {
    /// The field's value as text: a string, a number or a boolean.
    fn value(&self) -> Option<String> {
        match self.value.as_ref()? {
            Scalar::Str(s) => Some(s.clone()),
            Scalar::Num(n) => Some(n.to_string()),
            Scalar::Bool(b) => Some(b.to_string()),
            Scalar::Null | Scalar::Compound => None,
        }
    }

    /// `display_value` of a reference field (e.g. `assignment_group`), else its value.
    fn display(&self) -> Option<String> {
        self.display_value
            .as_ref()
            .and_then(Scalar::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .or_else(|| self.value())
    }
}

fn value_of(f: &Option<Field>) -> Option<String> {
    f.as_ref().and_then(Field::value)
}

/// The fields of a change record snowgate reads.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct RecordFields {
    sys_id: Option<Field>,
    number: Option<Field>,
    short_description: Option<Field>,
    state: Option<Field>,
    active: Option<Field>,
    start_date: Option<Field>,
    end_date: Option<Field>,
    approval: Option<Field>,
    assignment_group: Option<Field>,
}

/// The `value` of a record field, `{"value": …, "display_value": …}` or a plain value.
pub fn field(record: &Value, name: &str) -> Option<String> {
    Field::deserialize(record.get(name)?).ok()?.value()
}

impl ChangeRecord {
    pub fn parse(v: &Value) -> Result<ChangeRecord, ServiceNowError> {
        Json::<RecordFields>::deserialize(v)
            .map_err(|e| ServiceNowError::Decode(e.to_string()))
            .and_then(|f| ChangeRecord::from_fields(f.into_object()))
    }

    fn from_fields(f: RecordFields) -> Result<ChangeRecord, ServiceNowError> {
        let sys_id = value_of(&f.sys_id)
            .ok_or_else(|| ServiceNowError::Decode("a change record without sys_id".into()))?;
        let non_empty = |s: Option<String>| s.filter(|x| !x.trim().is_empty());
        Ok(ChangeRecord {
            number: value_of(&f.number).unwrap_or_default(),
            short_description: value_of(&f.short_description).unwrap_or_default(),
            state: value_of(&f.state).unwrap_or_default(),
            active: value_of(&f.active).is_none_or(|a| a == "true"),
            start_date: non_empty(value_of(&f.start_date)),
            end_date: non_empty(value_of(&f.end_date)),
            approval: non_empty(value_of(&f.approval)),
            assignment_group: non_empty(f.assignment_group.as_ref().and_then(Field::display)),
            sys_id,
        })
    }
}

/// A list answer, `{"result": [{…}, …]}`.
#[derive(Debug, Default, Deserialize)]
struct ListAnswer {
    result: Option<List<Json<RecordFields>>>,
}

impl ListAnswer {
    fn records(self) -> Result<Vec<ChangeRecord>, ServiceNowError> {
        self.result
            .and_then(|l| l.0)
            .ok_or_else(|| ServiceNowError::Decode("the answer has no `result` list".into()))?
            .into_iter()
            .map(|r| ChangeRecord::from_fields(r.into_object()))
            .collect()
    }
}

/// The records of a list answer, `{"result": [{…}, …]}`.
pub fn records(v: &Value) -> Result<Vec<ChangeRecord>, ServiceNowError> {
    Json::<ListAnswer>::deserialize(v)
        .map_err(|e| ServiceNowError::Decode(e.to_string()))?
        .into_object()
        .records()
}

/// A creation answer's `result`: documented both as `{…}` and as `[{…}]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrList {
    List(Vec<Json<RecordFields>>),
    One(Box<Json<RecordFields>>),
}

#[derive(Debug, Default, Deserialize)]
struct SingleAnswer {
    result: Option<OneOrList>,
}

impl SingleAnswer {
    fn record(self) -> Result<ChangeRecord, ServiceNowError> {
        let fields = match self.result {
            Some(OneOrList::List(list)) => list
                .into_iter()
                .next()
                .ok_or_else(|| ServiceNowError::Decode("an empty result".into()))?
                .into_object(),
            Some(OneOrList::One(one)) => match *one {
                Json::Object(r) => r,
                Json::Other(_) => {
                    return Err(ServiceNowError::Decode("the answer has no `result`".into()))
                }
            },
            _ => return Err(ServiceNowError::Decode("the answer has no `result`".into())),
        };
        ChangeRecord::from_fields(fields)
    }
}

/// The record of a creation or single-record answer, `{"result": {…}}` or `{"result": [{…}]}`.
pub fn single_result(v: &Value) -> Result<ChangeRecord, ServiceNowError> {
    Json::<SingleAnswer>::deserialize(v)
        .map_err(|e| ServiceNowError::Decode(e.to_string()))?
        .into_object()
        .record()
}

/// The standard change templates found by name.
#[derive(Debug, Default, Deserialize)]
struct TemplateAnswer {
    result: Option<List<Json<TemplateRow>>>,
}

#[derive(Debug, Default, Deserialize)]
struct TemplateRow {
    name: Option<Field>,
    sys_id: Option<Field>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    Normal,
    Emergency,
}

#[derive(Clone)]
pub struct ChangeClient {
    http: reqwest::Client,
    instance: url::Url,
    auth: Auth,
    metrics: Arc<Metrics>,
}

impl ChangeClient {
    pub fn new(s: &ServiceNowSettings) -> anyhow::Result<ChangeClient> {
        let instance = url::Url::parse(&s.instance_url)?;
        Ok(ChangeClient {
            http: super::http_client(s)?,
            auth: Auth::change(s, &instance)?,
            instance,
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

    async fn call(
        &self,
        method: Method,
        url: url::Url,
        body: Option<String>,
        endpoint: &str,
    ) -> Result<Answer, ServiceNowError> {
        let started = std::time::Instant::now();
        let mut result = self
            .call_once(method.clone(), url.clone(), body.clone(), false)
            .await;
        // An OAuth token can be revoked or expire early: refresh once and try again.
        if matches!(result, Err(ServiceNowError::Status { status: 401, .. }))
            && self.auth.is_oauth()
        {
            result = self.call_once(method, url, body, true).await;
        }
        self.count_call(endpoint, 200, started, &result);
        result
    }

    /// A call's outcome in the ServiceNow request metrics: `ok` is its status when it
    /// succeeded, an error's own status otherwise (none for a transport error).
    pub(super) fn count_call<T>(
        &self,
        endpoint: &str,
        ok: u16,
        started: std::time::Instant,
        result: &Result<T, ServiceNowError>,
    ) {
        let status = match result {
            Ok(_) => Some(ok),
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
    }

    async fn call_once(
        &self,
        method: Method,
        url: url::Url,
        body: Option<String>,
        force_refresh: bool,
    ) -> Result<Answer, ServiceNowError> {
        let auth = self
            .auth
            .header(&self.http, &self.metrics, force_refresh)
            .await?;
        let mut req = self
            .http
            .request(method, url)
            .header(reqwest::header::ACCEPT, "application/json")
            .header(reqwest::header::AUTHORIZATION, auth);
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b);
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
        let answer = self.call(Method::GET, url, None, "GET change").await?;
        answer.read::<ListAnswer>()?.records()
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
        let answer = self.call(Method::GET, url, None, "GET change/{id}").await?;
        answer.read::<SingleAnswer>()?.record()
    }

    /// `POST change/normal|emergency`. `fields` are the record's fields as the configuration
    /// and the pipeline name them (any field an instance has), so they stay a JSON map.
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
        let endpoint = format!("POST change/{seg}");
        let answer = self
            .call(Method::POST, url, Some(json_body(fields)?), &endpoint)
            .await?;
        answer.read::<SingleAnswer>()?.record()
    }

    pub async fn create_standard(
        &self,
        template_sys_id: &str,
        fields: &Map<String, Value>,
    ) -> Result<ChangeRecord, ServiceNowError> {
        let url = self.url(&["standard", template_sys_id], &[]);
        let body = Some(json_body(fields)?);
        let answer = self
            .call(Method::POST, url, body, "POST change/standard/{id}")
            .await?;
        answer.read::<SingleAnswer>()?.record()
    }

    /// The sys_id of the active standard change template with this name.
    pub async fn find_template(&self, name: &str) -> Result<Option<String>, ServiceNowError> {
        let q = format!("name={}^active=true", escape_query_value(name));
        let url = self.url(&["standard", "template"], &[("sysparm_query", &q)]);
        let answer = self
            .call(Method::GET, url, None, "GET change/standard/template")
            .await?;
        let rows = answer.read::<TemplateAnswer>()?.result.and_then(|l| l.0);
        Ok(rows.and_then(|rows| {
            rows.into_iter()
                .map(Json::into_object)
                .find(|r| value_of(&r.name).as_deref() == Some(name))
                .and_then(|r| value_of(&r.sys_id))
        }))
    }

    pub async fn patch(
        &self,
        sys_id: &str,
        body: &Map<String, Value>,
    ) -> Result<ChangeRecord, ServiceNowError> {
        let url = self.url(&[sys_id], &[]);
        let answer = self
            .call(
                Method::PATCH,
                url,
                Some(json_body(body)?),
                "PATCH change/{id}",
            )
            .await?;
        answer.read::<SingleAnswer>()?.record()
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
        assert_eq!(single_result(&obj).unwrap().sys_id, "a");
        assert_eq!(single_result(&list).unwrap().sys_id, "b");
        assert!(single_result(&json!({"result": []})).is_err());
        assert!(single_result(&json!({"result": "x"})).is_err());
    }

    #[test]
    fn carets_in_query_values_are_doubled() {
        assert_eq!(escape_query_value("a^b"), "a^^b");
    }
}
