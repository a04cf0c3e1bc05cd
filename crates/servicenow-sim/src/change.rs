//! The simulated Change Management API (`sn_chg_rest`), the API Octopus Deploy gates on (seed
//! `000_54d60dabfc9e1606.txt`, "The ServiceNow integration uses the following REST endpoints")
//! and SPEC §6 describes, served under `/api/sn_chg_rest/change…` and
//! `/api/sn_chg_rest/v1/change…`:
//!
//! | request | answer |
//! |---|---|
//! | `GET /change` | 200 `{"result":[record…]}` filtered by `sysparm_query` and plain `field=value` parameters, `sysparm_limit`, `sysparm_offset`, `sysparm_fields`; header `X-Total-Count` |
//! | `GET /change/{sys_id}` | 200 `{"result":record}`; 404 |
//! | `POST /change/normal`, `/change/emergency`, `/change/standard/{template sys_id}` | 200 `{"result":{record…,"__meta":{"ignoredFields":[…]}}}` (an object; `[{…}]` with [`super::SimSettings::chg_create_as_array`]) |
//! | `PATCH /change/{sys_id}` | 200 `{"result":{record…,"__meta":{"ignoredFields":[…]}}}`; 400 bad state or transition; 404 |
//! | `GET /change/standard/template` | 200 `{"result":[{"sys_id","name","active","short_description"}…]}` (record shape) |
//!
//! Every request is recorded first. Then, in the order a ServiceNow instance applies them: the
//! route (400 unknown resource, 405 method), injected faults (keys `change.get`, `change.post`,
//! `change.patch`, `change.template`), authentication (401: `Bearer` access token from
//! [`super::oauth`] or Basic with the simulator's user), `Accept` (400 missing, 406 not JSON),
//! `Content-Type: application/json` on POST and PATCH (400), roles (403), the body (400), and
//! the records (404).
//!
//! Records carry every field as `{"value","display_value"}`. Values are what clients must use:
//! dates are `YYYY-MM-DD HH:MM:SS` UTC, while display values are written for a user in US
//! Pacific time, UTC-08:00 (`display_value` as `MM/DD/YYYY hh:mm:ss AM`, `display_value_internal`
//! as `YYYY-MM-DD HH:MM:SS`), so a client that parses display values is eight hours off, on
//! purpose.
//!
//! The state model is ServiceNow's default lifecycle (SPEC §6; seed: "The only supported states
//! are those defined in the default CR lifecycle"), and PATCH enforces its transitions the way
//! the instance's state-model business rules do; see [`allowed_transition`]. The admin API
//! (`change_admin.rs`) moves a CR anywhere, as an approver or a script would.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError};

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use serde_json::{json, Map, Value};
use subtle::ConstantTimeEq as _;

use super::faults::status_message;
use super::model::{now, CrState, DATE_FORMAT};
use super::protocol::{
    check_accept, is_json_content_type, parse_authorization, query_pairs, AcceptCheck, Credentials,
    RouteError,
};
use super::{RecordedRequest, Shared, SimSettings};

pub(crate) use query::EncodedQuery;

/// Change-API CRs start at CHG0040001, apart from the DevOps CRs (CHG0030001…), so a test can
/// tell which API made a CR from its number.
const FIRST_NUMBER: usize = 40_001;
/// `sysparm_limit` when none is given: the Table API's documented maximum page.
const DEFAULT_LIMIT: usize = 10_000;
/// The user's time zone that display values are written in: US Pacific standard time
/// (America/Los_Angeles as a fixed UTC-08:00, no daylight saving), far enough from UTC that a
/// client parsing display values is visibly wrong.
const USER_UTC_OFFSET_HOURS: i64 = -8;
/// How display values of dates read (the instance's "MM/dd/yyyy hh:mm:ss a" user format).
const DISPLAY_DATE_FORMAT: &str = "%m/%d/%Y %I:%M:%S %p";
/// SPEC §6: read needs `sn_change_read` or `itil`; create and update need `sn_change_write` or
/// `itil`. `admin` is not special here: the seed asks for a web-service user with exactly the
/// two change roles.
const READ_ROLES: [&str; 2] = ["sn_change_read", "itil"];
const WRITE_ROLES: [&str; 2] = ["sn_change_write", "itil"];
/// Fields a create ignores (and lists in `__meta.ignoredFields`): the instance numbers the CR,
/// the path decides the type, and a new CR is always New and not yet requested for approval.
const REFUSED_ON_CREATE: [&str; 6] = ["number", "sys_id", "type", "state", "active", "approval"];
/// Fields a PATCH ignores: identity, type, and what only the lifecycle and approvers change.
const REFUSED_ON_PATCH: [&str; 5] = ["number", "sys_id", "type", "active", "approval"];
/// Fields every record shows, even when empty.
const BASE_FIELDS: [&str; 7] = [
    "short_description",
    "description",
    "assignment_group",
    "close_code",
    "close_notes",
    "start_date",
    "end_date",
];
/// Fields whose values are dates (checked on input, displayed in the user's time zone).
const DATE_FIELDS: [&str; 4] = ["start_date", "end_date", "sys_created_on", "sys_updated_on"];

/// The three change models the seed names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChangeType {
    Normal,
    Emergency,
    Standard,
}

impl ChangeType {
    pub(crate) fn name(self) -> &'static str {
        match self {
            ChangeType::Normal => "normal",
            ChangeType::Emergency => "emergency",
            ChangeType::Standard => "standard",
        }
    }

    fn display(self) -> &'static str {
        match self {
            ChangeType::Normal => "Normal",
            ChangeType::Emergency => "Emergency",
            ChangeType::Standard => "Standard",
        }
    }

    /// `normal`, `emergency` or `standard` (any case: the admin API's input).
    pub(crate) fn parse(text: &str) -> Option<ChangeType> {
        [
            ChangeType::Normal,
            ChangeType::Emergency,
            ChangeType::Standard,
        ]
        .into_iter()
        .find(|t| t.name().eq_ignore_ascii_case(text.trim()))
    }
}

/// The CR's `approval` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChgApproval {
    NotRequested,
    Requested,
    Approved,
    Rejected,
}

impl ChgApproval {
    const ALL: [ChgApproval; 4] = [
        ChgApproval::NotRequested,
        ChgApproval::Requested,
        ChgApproval::Approved,
        ChgApproval::Rejected,
    ];

    pub(crate) fn value(self) -> &'static str {
        match self {
            ChgApproval::NotRequested => "not requested",
            ChgApproval::Requested => "requested",
            ChgApproval::Approved => "approved",
            ChgApproval::Rejected => "rejected",
        }
    }

    fn display(self) -> &'static str {
        match self {
            ChgApproval::NotRequested => "Not Yet Requested",
            ChgApproval::Requested => "Requested",
            ChgApproval::Approved => "Approved",
            ChgApproval::Rejected => "Rejected",
        }
    }

    /// A value (`"not requested"`), any case; `not_requested` too (admin input).
    pub(crate) fn parse(text: &str) -> Option<ChgApproval> {
        let text = text.trim().replace('_', " ");
        Self::ALL
            .into_iter()
            .find(|a| a.value().eq_ignore_ascii_case(&text))
    }

    /// What an approver's decision implies for a state set by hand.
    fn implied_by(state: CrState, current: ChgApproval) -> ChgApproval {
        match state {
            CrState::New | CrState::Assess => ChgApproval::NotRequested,
            CrState::Authorize => ChgApproval::Requested,
            CrState::Scheduled | CrState::Implement | CrState::Review | CrState::Closed => {
                ChgApproval::Approved
            }
            CrState::Canceled => current,
        }
    }
}

/// The states by value, as PATCH takes them: the value (`"-1"`, or the number -1) or the state
/// model's lower-case name (`"implement"`). Display names (`"Implement"`) are refused: the API
/// documents lower-case names.
pub(crate) fn parse_patch_state(value: &Value) -> Option<CrState> {
    const STATES: [(CrState, &str); 8] = [
        (CrState::New, "new"),
        (CrState::Assess, "assess"),
        (CrState::Authorize, "authorize"),
        (CrState::Scheduled, "scheduled"),
        (CrState::Implement, "implement"),
        (CrState::Review, "review"),
        (CrState::Closed, "closed"),
        (CrState::Canceled, "canceled"),
    ];
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    STATES
        .into_iter()
        .find(|(state, name)| state.value() == text || *name == text)
        .map(|(state, _)| state)
}

/// Whether PATCH may move a CR of this type from one state to another: ServiceNow's default
/// state models (`ChangeRequestStateModel_normal`, `_emergency`, `_standard`). Standard changes
/// skip Assess and Authorize, emergency changes skip Assess (SPEC §6); Canceled is reachable
/// from every open state; Closed and Canceled are final; "revert to New" exists from Assess,
/// Authorize and Scheduled. Staying in the same state is always allowed.
///
/// Authorize → Scheduled also needs `approval` approved: the approval engine, not the
/// requester, makes that move (the admin API plays the approver).
pub(crate) fn allowed_transition(kind: ChangeType, from: CrState, to: CrState) -> bool {
    use CrState::*;
    if from == to {
        return true;
    }
    if matches!(from, Closed | Canceled) {
        return false;
    }
    if to == Canceled || (to == New && matches!(from, Assess | Authorize | Scheduled)) {
        return true;
    }
    let next = match (kind, from) {
        (ChangeType::Normal, New) => Assess,
        (ChangeType::Normal, Assess) => Authorize,
        (ChangeType::Emergency, New) => Authorize,
        (ChangeType::Standard, New) => Scheduled,
        (_, Authorize) => Scheduled,
        (_, Scheduled) => Implement,
        (_, Implement) => Review,
        (_, Review) => Closed,
        _ => return false,
    };
    to == next
}

/// One work note in a CR's journal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChgWorkNote {
    /// `YYYY-MM-DD HH:MM:SS`, UTC.
    pub at: String,
    /// The user the note was written as.
    pub by: String,
    pub text: String,
}

/// A change-API CR as tests and the admin API see it (camelCase JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChgChange {
    /// `CHG0040001`, `CHG0040002`, …
    pub number: String,
    /// 32 lower-case hex digits.
    pub sys_id: String,
    /// normal | emergency | standard.
    #[serde(rename = "type")]
    pub change_type: String,
    /// State name: New, Assess, Authorize, Scheduled, Implement, Review, Closed, Canceled.
    pub state: String,
    /// `-5` … `4`.
    pub state_value: String,
    /// not requested | requested | approved | rejected.
    pub approval: String,
    pub active: bool,
    pub short_description: String,
    /// `YYYY-MM-DD HH:MM:SS`, UTC; `None` when unset.
    pub start_date: Option<String>,
    pub end_date: Option<String>,
    /// The standard change template's name, for standard changes.
    pub template: Option<String>,
    /// Every text field (short_description, description, close_code, … and any given field).
    pub fields: BTreeMap<String, String>,
    /// The work-note journal, oldest first (not a field: ServiceNow keeps journals apart).
    pub work_notes: Vec<ChgWorkNote>,
    /// Whether the change API (not the admin API) created it.
    pub created_by_api: bool,
    pub created_at: String,
    pub updated_at: String,
}

/// A standard change template (a Standard Change Catalog entry).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChgTemplate {
    pub sys_id: String,
    pub name: String,
    pub active: bool,
    /// Copied to CRs made from the template, unless the request gives its own.
    pub short_description: String,
}

impl ChgTemplate {
    fn value(&self, field: &str) -> String {
        match field {
            "sys_id" => self.sys_id.clone(),
            "name" => self.name.clone(),
            "active" => self.active.to_string(),
            "short_description" => self.short_description.clone(),
            _ => String::new(),
        }
    }

    fn render(&self, shape: Shape) -> Map<String, Value> {
        let mut out = Map::new();
        out.insert("sys_id".into(), shape.sys_id(&self.sys_id));
        out.insert("name".into(), text_field(&self.name));
        out.insert("active".into(), shape.boolean(self.active));
        out.insert(
            "short_description".into(),
            text_field(&self.short_description),
        );
        out
    }
}

/// One simulated change-API CR.
#[derive(Clone, Debug)]
pub(crate) struct Cr {
    number: String,
    sys_id: String,
    kind: ChangeType,
    state: CrState,
    approval: ChgApproval,
    template: Option<String>,
    /// Text fields by name, `start_date`/`end_date` included (`""` when unset).
    fields: BTreeMap<String, String>,
    work_notes: Vec<ChgWorkNote>,
    created_by_api: bool,
    created_at: String,
    updated_at: String,
}

impl Cr {
    fn active(&self) -> bool {
        !matches!(self.state, CrState::Closed | CrState::Canceled)
    }

    /// A field's `value`, as queries compare it (`""` for a field the CR does not have).
    pub(crate) fn value(&self, field: &str) -> String {
        match field {
            "sys_id" => self.sys_id.clone(),
            "number" => self.number.clone(),
            "type" => self.kind.name().to_string(),
            "state" => self.state.value().to_string(),
            "approval" => self.approval.value().to_string(),
            "active" => self.active().to_string(),
            "sys_created_on" => self.created_at.clone(),
            "sys_updated_on" => self.updated_at.clone(),
            _ => self.fields.get(field).cloned().unwrap_or_default(),
        }
    }

    fn render(&self, shape: Shape, only: Option<&[String]>) -> Map<String, Value> {
        let mut out = Map::new();
        out.insert("sys_id".into(), shape.sys_id(&self.sys_id));
        out.insert("number".into(), text_field(&self.number));
        out.insert(
            "type".into(),
            field(json!(self.kind.name()), self.kind.display()),
        );
        let state = if shape.numeric_values {
            self.state
                .value()
                .parse::<i64>()
                .map_or_else(|_| json!(self.state.value()), |n| json!(n))
        } else {
            json!(self.state.value())
        };
        out.insert("state".into(), field(state, self.state.name()));
        out.insert(
            "approval".into(),
            field(json!(self.approval.value()), self.approval.display()),
        );
        out.insert("active".into(), shape.boolean(self.active()));
        for (name, value) in &self.fields {
            let rendered = if DATE_FIELDS.contains(&name.as_str()) {
                date_field(value)
            } else {
                text_field(value)
            };
            out.insert(name.clone(), rendered);
        }
        out.insert("sys_created_on".into(), date_field(&self.created_at));
        out.insert("sys_updated_on".into(), date_field(&self.updated_at));
        if let Some(only) = only {
            out.retain(|name, _| only.iter().any(|o| o == name));
        }
        out
    }

    pub(crate) fn public(&self) -> ChgChange {
        let date = |name: &str| self.fields.get(name).filter(|v| !v.is_empty()).cloned();
        ChgChange {
            number: self.number.clone(),
            sys_id: self.sys_id.clone(),
            change_type: self.kind.name().to_string(),
            state: self.state.name().to_string(),
            state_value: self.state.value().to_string(),
            approval: self.approval.value().to_string(),
            active: self.active(),
            short_description: self.value("short_description"),
            start_date: date("start_date"),
            end_date: date("end_date"),
            template: self.template.clone(),
            fields: self.fields.clone(),
            work_notes: self.work_notes.clone(),
            created_by_api: self.created_by_api,
            created_at: self.created_at.clone(),
            updated_at: self.updated_at.clone(),
        }
    }
}

/// How records are written: SPEC §6 makes clients read `value` as a string or a number and
/// `sys_id` as a field object or a plain string; these settings make the simulator use the
/// second spellings.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Shape {
    pub(crate) numeric_values: bool,
    pub(crate) plain_sys_id: bool,
}

impl Shape {
    pub(crate) fn of(settings: &SimSettings) -> Shape {
        Shape {
            numeric_values: settings.chg_numeric_values,
            plain_sys_id: settings.chg_plain_sys_id,
        }
    }

    fn sys_id(self, sys_id: &str) -> Value {
        if self.plain_sys_id {
            json!(sys_id)
        } else {
            text_field(sys_id)
        }
    }

    fn boolean(self, b: bool) -> Value {
        if self.numeric_values {
            field(json!(b), &b.to_string())
        } else {
            text_field(&b.to_string())
        }
    }
}

fn field(value: Value, display: &str) -> Value {
    json!({"value": value, "display_value": display})
}

fn text_field(value: &str) -> Value {
    field(json!(value), value)
}

/// A date: the value in UTC, the display values in the user's time zone (`display_value` in the
/// user's format, `display_value_internal` in the internal one).
fn date_field(value: &str) -> Value {
    let parsed = chrono::NaiveDateTime::parse_from_str(value, DATE_FORMAT).ok();
    match parsed {
        None => json!({"value": value, "display_value": value, "display_value_internal": value}),
        Some(utc) => {
            let local = utc + chrono::Duration::hours(USER_UTC_OFFSET_HOURS);
            json!({
                "value": value,
                "display_value": local.format(DISPLAY_DATE_FORMAT).to_string(),
                "display_value_internal": local.format(DATE_FORMAT).to_string(),
            })
        }
    }
}

/// Why a change-API call was refused, in ServiceNow's error shape.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ChgError {
    /// 400.
    #[error("{message}: {detail}")]
    BadRequest { message: String, detail: String },
    /// 404 "No Record found".
    #[error("not found: {0}")]
    NotFound(String),
}

impl ChgError {
    fn bad(message: &str, detail: impl Into<String>) -> ChgError {
        ChgError::BadRequest {
            message: message.to_string(),
            detail: detail.into(),
        }
    }

    fn into_response(self) -> HttpResponse {
        match self {
            ChgError::BadRequest { message, detail } => {
                platform_error(StatusCode::BAD_REQUEST, &message, &detail)
            }
            ChgError::NotFound(detail) => {
                platform_error(StatusCode::NOT_FOUND, "No Record found", &detail)
            }
        }
    }
}

/// The change API's model: CRs, templates and the account's roles. Only ever touched under
/// [`Shared::with_chg`], never across an `.await`.
pub(crate) struct ChgModel {
    changes: Vec<Cr>,
    templates: Vec<ChgTemplate>,
    pub(crate) roles: Vec<String>,
}

/// A creation: the new CR and the fields the request gave but the record did not take.
pub(crate) struct Created {
    pub(crate) change: Cr,
    pub(crate) ignored: Vec<String>,
}

fn new_sys_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A field name the table could have (`u_custom`, `assigned_to`, …).
fn is_field_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// A field value as the instance stores it: text. Objects and arrays are refused (a client
/// sending `{"value": …}` objects back would otherwise store garbage).
fn text_of(name: &str, value: &Value) -> Result<String, ChgError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Ok(String::new()),
        Value::Array(_) | Value::Object(_) => Err(ChgError::bad(
            "Invalid field value",
            format!("{name} must be a string, a number or a boolean"),
        )),
    }
}

/// A planned date value: `YYYY-MM-DD HH:MM:SS` (UTC) or empty.
fn check_date(name: &str, value: &str) -> Result<(), ChgError> {
    if value.is_empty() || chrono::NaiveDateTime::parse_from_str(value, DATE_FORMAT).is_ok() {
        Ok(())
    } else {
        Err(ChgError::bad(
            "Invalid date",
            format!("{name} must be a UTC date and time as YYYY-MM-DD HH:MM:SS, got {value:?}"),
        ))
    }
}

impl ChgModel {
    pub(crate) fn new(settings: &SimSettings) -> ChgModel {
        let mut model = ChgModel {
            changes: Vec::new(),
            templates: Vec::new(),
            roles: settings.chg_roles.clone(),
        };
        for (name, active) in &settings.chg_templates {
            model.add_template(name, *active);
        }
        model
    }

    /// Creates a CR. `given` fields in order (later ones win); refused and unknown-looking names
    /// are listed as ignored. `template` is the standard template's sys_id.
    pub(crate) fn create(
        &mut self,
        kind: ChangeType,
        template: Option<&str>,
        given: Vec<(String, Value)>,
        state: CrState,
        from_api: bool,
        user: &str,
    ) -> Result<Created, ChgError> {
        let mut fields: BTreeMap<String, String> = BASE_FIELDS
            .iter()
            .map(|f| (f.to_string(), String::new()))
            .collect();
        let template_name = match (kind, template) {
            (ChangeType::Standard, Some(id)) => {
                let t = self
                    .templates
                    .iter()
                    .find(|t| t.sys_id == id)
                    .ok_or_else(|| {
                        ChgError::NotFound(format!("No standard change template with sys_id {id}"))
                    })?;
                if from_api && !t.active {
                    return Err(ChgError::bad(
                        "Standard change template is not active",
                        format!("The template {:?} ({id}) is not active", t.name),
                    ));
                }
                fields.insert("short_description".into(), t.short_description.clone());
                Some(t.name.clone())
            }
            _ => None,
        };
        let mut ignored = Vec::new();
        let mut notes = Vec::new();
        let at = now();
        for (name, value) in given {
            if REFUSED_ON_CREATE.contains(&name.as_str())
                || name.starts_with("sys_")
                || !is_field_name(&name)
            {
                if !ignored.contains(&name) {
                    ignored.push(name);
                }
                continue;
            }
            let text = text_of(&name, &value)?;
            if name == "work_notes" {
                if !text.trim().is_empty() {
                    notes.push(ChgWorkNote {
                        at: at.clone(),
                        by: user.to_string(),
                        text,
                    });
                }
                continue;
            }
            if DATE_FIELDS.contains(&name.as_str()) {
                check_date(&name, &text)?;
            }
            fields.insert(name, text);
        }
        let change = Cr {
            number: format!("CHG{:07}", FIRST_NUMBER + self.changes.len()),
            sys_id: new_sys_id(),
            kind,
            state,
            approval: if from_api {
                ChgApproval::NotRequested
            } else {
                ChgApproval::implied_by(state, ChgApproval::NotRequested)
            },
            template: template_name,
            fields,
            work_notes: notes,
            created_by_api: from_api,
            created_at: at.clone(),
            updated_at: at,
        };
        self.changes.push(change.clone());
        Ok(Created { change, ignored })
    }

    pub(crate) fn by_sys_id(&self, sys_id: &str) -> Option<&Cr> {
        self.changes.iter().find(|c| c.sys_id == sys_id)
    }

    /// A CR by number, or the newest for `"latest"`.
    fn by_number_mut(&mut self, selector: &str) -> Result<&mut Cr, ChgError> {
        let found = if selector == "latest" {
            self.changes.last_mut()
        } else {
            self.changes.iter_mut().find(|c| c.number == selector)
        };
        found.ok_or_else(|| ChgError::NotFound(format!("change request {selector} not found")))
    }

    /// One CR by number (or `"latest"`).
    pub(crate) fn change(&self, selector: &str) -> Option<ChgChange> {
        let found = if selector == "latest" {
            self.changes.last()
        } else {
            self.changes.iter().find(|c| c.number == selector)
        };
        found.map(Cr::public)
    }

    /// Every CR, oldest first.
    pub(crate) fn changes(&self) -> Vec<ChgChange> {
        self.changes.iter().map(Cr::public).collect()
    }

    /// The CRs a query selects, in its order (by sys_id when it names none, like an instance
    /// reading its primary key, so not creation order), and how many matched before paging.
    pub(crate) fn search(
        &self,
        query: &EncodedQuery,
        offset: usize,
        limit: usize,
    ) -> (usize, Vec<Cr>) {
        let mut found: Vec<&Cr> = self
            .changes
            .iter()
            .filter(|c| query.matches(|f| c.value(f)))
            .collect();
        found.sort_by(|a, b| a.sys_id.cmp(&b.sys_id));
        found.sort_by(|a, b| query.compare(|f| a.value(f), |f| b.value(f)));
        let total = found.len();
        let page = found
            .into_iter()
            .skip(offset)
            .take(limit)
            .cloned()
            .collect();
        (total, page)
    }

    /// The templates a query selects (by sys_id unless ordered).
    pub(crate) fn search_templates(
        &self,
        query: &EncodedQuery,
        offset: usize,
        limit: usize,
    ) -> (usize, Vec<ChgTemplate>) {
        let mut found: Vec<&ChgTemplate> = self
            .templates
            .iter()
            .filter(|t| query.matches(|f| t.value(f)))
            .collect();
        found.sort_by(|a, b| a.sys_id.cmp(&b.sys_id));
        found.sort_by(|a, b| query.compare(|f| a.value(f), |f| b.value(f)));
        let total = found.len();
        let page = found
            .into_iter()
            .skip(offset)
            .take(limit)
            .cloned()
            .collect();
        (total, page)
    }

    /// `PATCH /change/{sys_id}`: the state (by value or lower-case name, along the state model),
    /// `work_notes` (appended to the journal), dates (checked) and any other field.
    pub(crate) fn patch(
        &mut self,
        sys_id: &str,
        body: Map<String, Value>,
        user: &str,
    ) -> Result<(Cr, Vec<String>), ChgError> {
        let change = self
            .changes
            .iter_mut()
            .find(|c| c.sys_id == sys_id)
            .ok_or_else(|| {
                ChgError::NotFound(
                    "Record doesn't exist or ACL restricts the record retrieval".to_string(),
                )
            })?;
        let mut ignored = Vec::new();
        let mut updates: Vec<(String, String)> = Vec::new();
        let mut note = None;
        let mut target = None;
        for (name, value) in body {
            if name == "state" {
                target = Some(parse_patch_state(&value).ok_or_else(|| {
                    ChgError::bad(
                        "Invalid state",
                        format!(
                            "state {value} is not a change request state: use a value (-5, -4, -3, -2, -1, 0, 3, 4) or a lower-case name (new, assess, authorize, scheduled, implement, review, closed, canceled)"
                        ),
                    )
                })?);
                continue;
            }
            if REFUSED_ON_PATCH.contains(&name.as_str())
                || name.starts_with("sys_")
                || !is_field_name(&name)
            {
                ignored.push(name);
                continue;
            }
            let text = text_of(&name, &value)?;
            if name == "work_notes" {
                note = Some(text).filter(|t| !t.trim().is_empty());
                continue;
            }
            if DATE_FIELDS.contains(&name.as_str()) {
                check_date(&name, &text)?;
            }
            updates.push((name, text));
        }
        if let Some(to) = target {
            let from = change.state;
            if !allowed_transition(change.kind, from, to) {
                return Err(ChgError::bad(
                    "Invalid state transition",
                    format!(
                        "A {} change request cannot move from {} to {}",
                        change.kind.name(),
                        from.name(),
                        to.name()
                    ),
                ));
            }
            if from == CrState::Authorize
                && to == CrState::Scheduled
                && change.approval != ChgApproval::Approved
            {
                return Err(ChgError::bad(
                    "Invalid state transition",
                    "The change request must be approved before it is scheduled",
                ));
            }
            if to == CrState::Closed && from != to {
                // The value after this PATCH: the body's, else the record's.
                let has = |field: &str| {
                    let value = match updates.iter().rev().find(|(n, _)| n == field) {
                        Some((_, v)) => v.clone(),
                        None => change.value(field),
                    };
                    !value.trim().is_empty()
                };
                if !has("close_code") || !has("close_notes") {
                    return Err(ChgError::bad(
                        "Data Policy Exception",
                        "The following fields are mandatory to close a change request: close_code, close_notes",
                    ));
                }
            }
        }
        let at = now();
        for (name, text) in updates {
            change.fields.insert(name, text);
        }
        if let Some(to) = target {
            if to != change.state {
                change.approval = match (change.kind, to) {
                    (_, CrState::New) => ChgApproval::NotRequested,
                    (_, CrState::Authorize) => ChgApproval::Requested,
                    // Standard changes are pre-approved: scheduling one approves it.
                    (ChangeType::Standard, CrState::Scheduled) => ChgApproval::Approved,
                    _ => change.approval,
                };
                change.state = to;
            }
        }
        if let Some(text) = note {
            change.work_notes.push(ChgWorkNote {
                at: at.clone(),
                by: user.to_string(),
                text,
            });
        }
        change.updated_at = at;
        Ok((change.clone(), ignored))
    }

    /// Sets state, approval and planned window by hand (admin; no state-model rules). `None`
    /// keeps a value; an empty date clears it. A state without an explicit approval implies one
    /// (Scheduled/Implement/Review/Closed: approved; Authorize: requested; New/Assess: not
    /// requested).
    pub(crate) fn admin_update(
        &mut self,
        selector: &str,
        state: Option<&str>,
        approval: Option<&str>,
        start: Option<&str>,
        end: Option<&str>,
    ) -> Result<ChgChange, ChgError> {
        let state = state
            .map(|s| {
                CrState::parse(s)
                    .ok_or_else(|| ChgError::bad("Invalid state", format!("unknown state {s:?}")))
            })
            .transpose()?;
        let approval = approval
            .map(|a| {
                ChgApproval::parse(a).ok_or_else(|| {
                    ChgError::bad(
                        "Invalid approval",
                        format!(
                            "approval must be not requested, requested, approved or rejected, got {a:?}"
                        ),
                    )
                })
            })
            .transpose()?;
        for (name, value) in [("startDate", start), ("endDate", end)] {
            if let Some(value) = value {
                check_date(name, value)?;
            }
        }
        let change = self.by_number_mut(selector)?;
        if let Some(state) = state {
            change.approval = ChgApproval::implied_by(state, change.approval);
            change.state = state;
        }
        if let Some(approval) = approval {
            change.approval = approval;
        }
        if let Some(start) = start {
            change.fields.insert("start_date".into(), start.to_string());
        }
        if let Some(end) = end {
            change.fields.insert("end_date".into(), end.to_string());
        }
        change.updated_at = now();
        Ok(change.public())
    }

    /// The demo's automatic approval: an open CR not yet implemented moves to Implement.
    pub(crate) fn auto_approve(&mut self, sys_id: &str) {
        if let Some(change) = self.changes.iter_mut().find(|c| c.sys_id == sys_id) {
            if matches!(
                change.state,
                CrState::New | CrState::Assess | CrState::Authorize | CrState::Scheduled
            ) {
                change.state = CrState::Implement;
                change.approval = ChgApproval::Approved;
                change.updated_at = now();
            }
        }
    }

    pub(crate) fn work_notes(&self, selector: &str) -> Option<Vec<ChgWorkNote>> {
        self.change(selector).map(|c| c.work_notes)
    }

    pub(crate) fn templates(&self) -> Vec<ChgTemplate> {
        self.templates.clone()
    }

    /// Adds a template (its short description is its name) and returns it.
    pub(crate) fn add_template(&mut self, name: &str, active: bool) -> ChgTemplate {
        let template = ChgTemplate {
            sys_id: new_sys_id(),
            name: name.to_string(),
            active,
            short_description: name.to_string(),
        };
        self.templates.push(template.clone());
        template
    }

    /// (De)activates every template with this name or sys_id.
    pub(crate) fn set_template_active(
        &mut self,
        name_or_sys_id: &str,
        active: bool,
    ) -> Result<Vec<ChgTemplate>, ChgError> {
        let mut changed = Vec::new();
        for t in &mut self.templates {
            if t.sys_id == name_or_sys_id || t.name == name_or_sys_id {
                t.active = active;
                changed.push(t.clone());
            }
        }
        if changed.is_empty() {
            return Err(ChgError::NotFound(format!(
                "no standard change template {name_or_sys_id}"
            )));
        }
        Ok(changed)
    }
}

impl Shared {
    /// Runs `f` with the change API's model locked. Never hold the lock across an `.await`.
    pub(crate) fn with_chg<R>(&self, f: impl FnOnce(&mut ChgModel) -> R) -> R {
        let mut chg = self.chg.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut chg)
    }
}

/// The encoded-query subset of `sysparm_query` (ServiceNow "Encoded query strings").
pub(crate) mod query {
    use std::cmp::Ordering;

    /// A condition's operator.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(crate) enum Op {
        Eq,
        Ne,
        Like,
        NotLike,
        StartsWith,
        EndsWith,
        IsEmpty,
        IsNotEmpty,
    }

    /// Operators as they follow a field name; longer spellings first (`ISNOTEMPTY` before
    /// `ISEMPTY`, `!=` before `=`).
    const OPERATORS: [(&str, Op); 8] = [
        ("ISNOTEMPTY", Op::IsNotEmpty),
        ("ISEMPTY", Op::IsEmpty),
        ("NOT LIKE", Op::NotLike),
        ("LIKE", Op::Like),
        ("STARTSWITH", Op::StartsWith),
        ("ENDSWITH", Op::EndsWith),
        ("!=", Op::Ne),
        ("=", Op::Eq),
    ];

    #[derive(Clone, Debug, PartialEq, Eq)]
    pub(crate) struct Condition {
        pub(crate) field: String,
        pub(crate) op: Op,
        pub(crate) value: String,
    }

    impl Condition {
        /// Compares with the field's `value`. Like a MySQL-backed instance, text comparisons
        /// ignore case (so `short_description=…` may return titles that differ in case: the
        /// seed's "must match the format exactly" is the client's check to make).
        fn matches(&self, actual: &str) -> bool {
            let actual = actual.to_lowercase();
            let wanted = self.value.to_lowercase();
            match self.op {
                Op::Eq => actual == wanted,
                Op::Ne => actual != wanted,
                Op::Like => actual.contains(&wanted),
                Op::NotLike => !actual.contains(&wanted),
                Op::StartsWith => actual.starts_with(&wanted),
                Op::EndsWith => actual.ends_with(&wanted),
                Op::IsEmpty => actual.is_empty(),
                Op::IsNotEmpty => !actual.is_empty(),
            }
        }
    }

    /// A parsed query: `^NQ`-separated alternatives, each an AND (`^`) of OR-groups (`^OR`,
    /// which binds tighter, as on the instance), plus `ORDERBY`/`ORDERBYDESC` keys in order.
    #[derive(Clone, Debug, Default, PartialEq, Eq)]
    pub(crate) struct EncodedQuery {
        pub(crate) blocks: Vec<Vec<Vec<Condition>>>,
        /// (field, descending).
        pub(crate) order: Vec<(String, bool)>,
    }

    fn field_name(text: &str) -> usize {
        text.bytes()
            .take_while(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'.'
            })
            .count()
    }

    fn check_field(field: &str, term: &str) -> Result<(), String> {
        if field.is_empty() || field_name(field) != field.len() {
            return Err(format!("invalid field name in {term:?}"));
        }
        Ok(())
    }

    fn parse_condition(term: &str) -> Result<Condition, String> {
        let end = field_name(term);
        let (field, rest) = term.split_at(end);
        check_field(field, term)?;
        let (op, value) = OPERATORS
            .iter()
            .find_map(|(spelling, op)| rest.strip_prefix(spelling).map(|v| (*op, v)))
            .ok_or_else(|| format!("unsupported operator in {term:?}"))?;
        if matches!(op, Op::IsEmpty | Op::IsNotEmpty) && !value.is_empty() {
            return Err(format!("{term:?}: ISEMPTY and ISNOTEMPTY take no value"));
        }
        Ok(Condition {
            field: field.to_string(),
            op,
            value: value.to_string(),
        })
    }

    /// Splits on `^`; `^^` is a literal `^` inside a value.
    fn split_terms(text: &str) -> Vec<String> {
        let mut terms = Vec::new();
        let mut term = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '^' {
                term.push(c);
            } else if chars.peek() == Some(&'^') {
                chars.next();
                term.push('^');
            } else {
                terms.push(std::mem::take(&mut term));
            }
        }
        terms.push(term);
        terms
    }

    impl EncodedQuery {
        /// Parses a `sysparm_query` value (already percent-decoded). Anything outside the
        /// subset is an error rather than silently ignored: an instance that drops a condition
        /// it cannot read returns more records than asked for, and a client must not rely on
        /// that.
        pub(crate) fn parse(text: &str) -> Result<EncodedQuery, String> {
            let mut query = EncodedQuery::default();
            let mut block: Vec<Vec<Condition>> = Vec::new();
            for term in split_terms(text) {
                if term.is_empty() {
                    continue;
                }
                if let Some(field) = term.strip_prefix("ORDERBYDESC") {
                    check_field(field, &term)?;
                    query.order.push((field.to_string(), true));
                } else if let Some(field) = term.strip_prefix("ORDERBY") {
                    check_field(field, &term)?;
                    query.order.push((field.to_string(), false));
                } else if let Some(rest) = term.strip_prefix("NQ") {
                    // `a=1^NQb=2`: a new query whose results are added to the first one's.
                    if !block.is_empty() {
                        query.blocks.push(std::mem::take(&mut block));
                    }
                    if !rest.is_empty() {
                        block.push(vec![parse_condition(rest)?]);
                    }
                } else if let Some(rest) = term.strip_prefix("OR") {
                    let condition = parse_condition(rest)?;
                    match block.last_mut() {
                        Some(group) => group.push(condition),
                        None => return Err(format!("{term:?} has no condition to OR with")),
                    }
                } else {
                    block.push(vec![parse_condition(&term)?]);
                }
            }
            if !block.is_empty() {
                query.blocks.push(block);
            }
            Ok(query)
        }

        /// Adds `field=value` to every alternative (a plain query parameter).
        pub(crate) fn and_equals(&mut self, field: &str, value: &str) {
            let condition = Condition {
                field: field.to_string(),
                op: Op::Eq,
                value: value.to_string(),
            };
            if self.blocks.is_empty() {
                self.blocks.push(Vec::new());
            }
            for block in &mut self.blocks {
                block.push(vec![condition.clone()]);
            }
        }

        pub(crate) fn matches(&self, value: impl Fn(&str) -> String) -> bool {
            self.blocks.is_empty()
                || self.blocks.iter().any(|block| {
                    block
                        .iter()
                        .all(|group| group.iter().any(|c| c.matches(&value(&c.field))))
                })
        }

        /// Orders two records by the query's keys: numbers numerically, text ignoring case.
        pub(crate) fn compare(
            &self,
            a: impl Fn(&str) -> String,
            b: impl Fn(&str) -> String,
        ) -> Ordering {
            for (field, descending) in &self.order {
                let (x, y) = (a(field), b(field));
                let ordering = match (x.parse::<i64>(), y.parse::<i64>()) {
                    (Ok(x), Ok(y)) => x.cmp(&y),
                    _ => x.to_lowercase().cmp(&y.to_lowercase()),
                };
                let ordering = if *descending {
                    ordering.reverse()
                } else {
                    ordering
                };
                if ordering != Ordering::Equal {
                    return ordering;
                }
            }
            Ordering::Equal
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::scope("/api/sn_chg_rest").default_service(web::to(entry)));
}

/// The change-API endpoints the simulator serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ChgRoute {
    List,
    Get(String),
    Create {
        kind: ChangeType,
        /// The standard template's sys_id.
        template: Option<String>,
    },
    Patch(String),
    Templates,
}

impl ChgRoute {
    /// The key a [`super::Fault`] names this endpoint by.
    pub(crate) fn fault_key(&self) -> &'static str {
        match self {
            ChgRoute::List | ChgRoute::Get(_) => "change.get",
            ChgRoute::Create { .. } => "change.post",
            ChgRoute::Patch(_) => "change.patch",
            ChgRoute::Templates => "change.template",
        }
    }

    fn writes(&self) -> bool {
        matches!(self, ChgRoute::Create { .. } | ChgRoute::Patch(_))
    }
}

/// Parses a raw path under `/api/sn_chg_rest/` (optionally `v1/`).
pub(crate) fn parse_route(method: &str, path: &str) -> Result<ChgRoute, RouteError> {
    let rest = path
        .strip_prefix("/api/sn_chg_rest/")
        .ok_or(RouteError::UnknownResource)?;
    let rest = rest.strip_prefix("v1/").unwrap_or(rest);
    let segments: Vec<&str> = rest.split('/').collect();
    let decoded = |s: &str| super::protocol::decode_again(s);
    let route = match (segments.as_slice(), method) {
        (["change"], "GET") => ChgRoute::List,
        (["change", kind @ ("normal" | "emergency")], "POST") => ChgRoute::Create {
            kind: ChangeType::parse(kind).ok_or(RouteError::UnknownResource)?,
            template: None,
        },
        (["change", "standard", "template"], "GET") => ChgRoute::Templates,
        (["change", "standard", id], "POST") if !id.is_empty() && *id != "template" => {
            ChgRoute::Create {
                kind: ChangeType::Standard,
                template: Some(decoded(id)),
            }
        }
        (["change"], _)
        | (["change", "normal" | "emergency" | "standard"], _)
        | (["change", "standard", _], _) => return Err(RouteError::MethodNotAllowed),
        (["change", id], "GET") if !id.is_empty() => ChgRoute::Get(decoded(id)),
        (["change", id], "PATCH") if !id.is_empty() => ChgRoute::Patch(decoded(id)),
        (["change", id], _) if !id.is_empty() => return Err(RouteError::MethodNotAllowed),
        _ => return Err(RouteError::UnknownResource),
    };
    Ok(route)
}

/// Entry point for everything under `/api/sn_chg_rest`.
pub(crate) async fn entry(
    req: HttpRequest,
    body: web::Bytes,
    data: web::Data<Shared>,
) -> HttpResponse {
    let shared = data.into_inner();
    shared.with_model(|m| m.record_request(RecordedRequest::capture(&req, &body)));
    let path = req.path();
    match parse_route(req.method().as_str(), path) {
        Ok(route) => serve(&shared, &req, &body, route).await,
        Err(RouteError::MethodNotAllowed) => platform_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method not Supported",
            &format!("{} is not supported for {path}", req.method()),
        ),
        Err(RouteError::UnknownResource) => platform_error(
            StatusCode::BAD_REQUEST,
            "Requested URI does not represent any resource",
            path,
        ),
    }
}

#[tracing::instrument(skip_all, fields(endpoint = route.fault_key()))]
async fn serve(
    shared: &Arc<Shared>,
    req: &HttpRequest,
    body: &[u8],
    route: ChgRoute,
) -> HttpResponse {
    let action = shared.with_model(|m| m.faults.on_call(route.fault_key()));
    if !action.latency.is_zero() {
        tokio::time::sleep(action.latency).await;
    }
    if let Some(status) = action.fail_with {
        tracing::debug!(status, "injected fault");
        return fault_response(status);
    }

    if !authenticated(shared, req) {
        return unauthorized();
    }

    match check_accept(header_value(req, header::ACCEPT)) {
        AcceptCheck::Json => {}
        AcceptCheck::Missing => {
            return platform_error(
                StatusCode::BAD_REQUEST,
                "Accept header is required",
                "This API only supports application/json: send Accept: application/json",
            )
        }
        AcceptCheck::NotAcceptable => {
            return platform_error(
                StatusCode::NOT_ACCEPTABLE,
                "Not Acceptable",
                "This API only supports application/json responses",
            )
        }
    }

    if route.writes() && !is_json_content_type(header_value(req, header::CONTENT_TYPE)) {
        return platform_error(
            StatusCode::BAD_REQUEST,
            "Content-Type header is required",
            "POST and PATCH requests must be sent with Content-Type: application/json",
        );
    }

    let roles = shared.with_chg(|c| c.roles.clone());
    if let Some(denied) = acl_denial(&route, &roles) {
        return denied;
    }

    let pairs = query_pairs(req.query_string());
    let shape = Shape::of(&shared.settings);
    let result = match route {
        ChgRoute::List => list(shared, &pairs, shape),
        ChgRoute::Get(sys_id) => get(shared, &sys_id, &pairs, shape),
        ChgRoute::Templates => templates(shared, &pairs, shape),
        ChgRoute::Create { kind, template } => {
            create(shared, kind, template.as_deref(), &pairs, body, shape)
        }
        ChgRoute::Patch(sys_id) => patch(shared, &sys_id, &pairs, body, shape),
    };
    result.unwrap_or_else(ChgError::into_response)
}

type Answer = Result<HttpResponse, ChgError>;

/// `Authorization: Bearer <access token>` (valid and unexpired) or Basic with the simulator's
/// user and password. Only the first `Authorization` header counts.
fn authenticated(shared: &Shared, req: &HttpRequest) -> bool {
    let Some(value) = header_value(req, header::AUTHORIZATION) else {
        return false;
    };
    let value = value.trim();
    if let Some((scheme, token)) = value.split_once(' ') {
        if scheme.eq_ignore_ascii_case("bearer") {
            return shared.with_oauth(|o| o.is_valid(token.trim()));
        }
    }
    match parse_authorization(value) {
        Some(Credentials::Basic { user, password }) => {
            let settings = &shared.settings;
            bool::from(user.as_bytes().ct_eq(settings.user.as_bytes()))
                & bool::from(password.as_bytes().ct_eq(settings.password.as_bytes()))
        }
        _ => false,
    }
}

/// The 403 an instance's ACLs answer when the account lacks the roles (SPEC §6).
fn acl_denial(route: &ChgRoute, roles: &[String]) -> Option<HttpResponse> {
    let has = |wanted: &[&str]| roles.iter().any(|r| wanted.contains(&r.as_str()));
    let (message, detail) = match route {
        ChgRoute::Create { .. } if !has(&WRITE_ROLES) => (
            "Operation Failed",
            "ACL Exception Insert Failed due to security constraints (requires sn_change_write or itil)",
        ),
        ChgRoute::Patch(_) if !has(&WRITE_ROLES) => (
            "Operation Failed",
            "ACL Exception Update Failed due to security constraints (requires sn_change_write or itil)",
        ),
        ChgRoute::List | ChgRoute::Get(_) | ChgRoute::Templates if !has(&READ_ROLES) => (
            "User Not Authorized",
            "ACL restricts the record retrieval (requires sn_change_read or itil)",
        ),
        _ => return None,
    };
    Some(platform_error(StatusCode::FORBIDDEN, message, detail))
}

/// `sysparm_query`, plain `field=value` parameters, `sysparm_limit`, `sysparm_offset`,
/// `sysparm_fields`. Other `sysparm_*` parameters (`sysparm_display_value`, …) change nothing.
struct ListParams {
    query: EncodedQuery,
    limit: usize,
    offset: usize,
    fields: Option<Vec<String>>,
}

fn first<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// `sysparm_fields=number,state`: only these fields (an empty value means every field).
fn fields_param(pairs: &[(String, String)]) -> Option<Vec<String>> {
    let fields: Vec<String> = first(pairs, "sysparm_fields")?
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    (!fields.is_empty()).then_some(fields)
}

fn list_params(pairs: &[(String, String)]) -> Result<ListParams, ChgError> {
    let mut query = match first(pairs, "sysparm_query") {
        Some(text) => EncodedQuery::parse(text).map_err(|e| ChgError::bad("Invalid query", e))?,
        None => EncodedQuery::default(),
    };
    for (name, value) in pairs {
        if name.starts_with("sysparm_") {
            continue;
        }
        if !is_field_name(name) {
            return Err(ChgError::bad(
                "Invalid query parameter",
                format!("{name:?} is neither a sysparm_ parameter nor a field name"),
            ));
        }
        query.and_equals(name, value);
    }
    let number = |name: &str, default: usize, min: usize| -> Result<usize, ChgError> {
        match first(pairs, name) {
            None => Ok(default),
            Some(text) => text
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n >= min)
                .ok_or_else(|| {
                    ChgError::bad(
                        "Invalid parameter",
                        format!("{name} must be an integer of at least {min}, got {text:?}"),
                    )
                }),
        }
    };
    Ok(ListParams {
        query,
        limit: number("sysparm_limit", DEFAULT_LIMIT, 1)?,
        offset: number("sysparm_offset", 0, 0)?,
        fields: fields_param(pairs),
    })
}

fn list_answer(total: usize, records: Vec<Map<String, Value>>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("X-Total-Count", total.to_string()))
        .json(json!({ "result": records }))
}

fn list(shared: &Arc<Shared>, pairs: &[(String, String)], shape: Shape) -> Answer {
    let params = list_params(pairs)?;
    let (total, found) = shared.with_chg(|c| c.search(&params.query, params.offset, params.limit));
    let records = found
        .iter()
        .map(|c| c.render(shape, params.fields.as_deref()))
        .collect();
    Ok(list_answer(total, records))
}

fn get(shared: &Arc<Shared>, sys_id: &str, pairs: &[(String, String)], shape: Shape) -> Answer {
    let found = shared.with_chg(|c| c.by_sys_id(sys_id).cloned());
    let change = found.ok_or_else(|| {
        ChgError::NotFound("Record doesn't exist or ACL restricts the record retrieval".into())
    })?;
    let record = change.render(shape, fields_param(pairs).as_deref());
    Ok(HttpResponse::Ok().json(json!({ "result": record })))
}

fn templates(shared: &Arc<Shared>, pairs: &[(String, String)], shape: Shape) -> Answer {
    let params = list_params(pairs)?;
    let (total, found) =
        shared.with_chg(|c| c.search_templates(&params.query, params.offset, params.limit));
    let records = found
        .iter()
        .map(|t| {
            let mut record = t.render(shape);
            if let Some(only) = &params.fields {
                record.retain(|name, _| only.iter().any(|o| o == name));
            }
            record
        })
        .collect();
    Ok(list_answer(total, records))
}

/// A JSON object body; `allow_empty` lets an empty body mean "no fields" (POST with the fields
/// in the query).
fn body_object(body: &[u8], allow_empty: bool) -> Result<Map<String, Value>, ChgError> {
    if allow_empty && body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ChgError::bad(
            "Invalid request body",
            "The request body must be a JSON object of field names and values",
        )),
        Err(e) => Err(ChgError::bad(
            "Invalid request body",
            format!("The request body is not valid JSON: {e}"),
        )),
    }
}

/// The record a create or PATCH answers, with `__meta.ignoredFields`.
fn record_with_meta(
    change: &Cr,
    ignored: Vec<String>,
    shape: Shape,
    only: Option<&[String]>,
) -> Value {
    let mut record = change.render(shape, only);
    record.insert("__meta".into(), json!({ "ignoredFields": ignored }));
    Value::Object(record)
}

/// `POST /change/{normal|emergency}`, `POST /change/standard/{template}`: fields from the query
/// (everything but `sysparm_*`) and then the JSON body (which wins).
fn create(
    shared: &Arc<Shared>,
    kind: ChangeType,
    template: Option<&str>,
    pairs: &[(String, String)],
    body: &[u8],
    shape: Shape,
) -> Answer {
    let body = body_object(body, true)?;
    let mut given: Vec<(String, Value)> = pairs
        .iter()
        .filter(|(name, _)| !name.starts_with("sysparm_"))
        .map(|(name, value)| (name.clone(), Value::String(value.clone())))
        .collect();
    given.extend(body);
    let user = shared.settings.user.clone();
    let created =
        shared.with_chg(|c| c.create(kind, template, given, CrState::New, true, &user))?;
    tracing::info!(number = %created.change.number, kind = kind.name(), "change request created");
    arm_auto_approve(shared, created.change.sys_id.clone());
    let record = record_with_meta(
        &created.change,
        created.ignored,
        shape,
        fields_param(pairs).as_deref(),
    );
    let result = if shared.settings.chg_create_as_array {
        json!([record])
    } else {
        record
    };
    Ok(HttpResponse::Ok().json(json!({ "result": result })))
}

fn patch(
    shared: &Arc<Shared>,
    sys_id: &str,
    pairs: &[(String, String)],
    body: &[u8],
    shape: Shape,
) -> Answer {
    let body = body_object(body, false)?;
    let user = shared.settings.user.clone();
    let (change, ignored) = shared.with_chg(|c| c.patch(sys_id, body, &user))?;
    let record = record_with_meta(&change, ignored, shape, fields_param(pairs).as_deref());
    Ok(HttpResponse::Ok().json(json!({ "result": record })))
}

/// The demo's automatic approval (`SimSettings::auto_approve_after`) for change-API CRs.
fn arm_auto_approve(shared: &Arc<Shared>, sys_id: String) {
    let Some(delay) = shared.settings.auto_approve_after else {
        return;
    };
    let task_shared = Arc::clone(shared);
    let handle = shared.runtime.spawn(async move {
        tokio::time::sleep(delay).await;
        task_shared.with_chg(|c| c.auto_approve(&sys_id));
    });
    shared.with_model(|m| {
        m.timers.retain(|t| !t.is_finished());
        m.timers.push(handle.abort_handle());
    });
}

fn header_value(req: &HttpRequest, name: header::HeaderName) -> Option<&str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// ServiceNow's error shape: `{"error": {"message", "detail"}, "status": "failure"}`.
pub(crate) fn platform_error(status: StatusCode, message: &str, detail: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({
        "error": {"message": message, "detail": detail},
        "status": "failure",
    }))
}

pub(crate) fn unauthorized() -> HttpResponse {
    HttpResponse::Unauthorized()
        .insert_header((header::WWW_AUTHENTICATE, "BASIC realm=\"Service-now\""))
        .json(json!({
            "error": {
                "message": "User Not Authenticated",
                "detail": "Required to provide Auth information",
            },
            "status": "failure",
        }))
}

/// The answer to a call an injected fault fails: the platform error shape (401 as the
/// authentication failure; 429 with `Retry-After: 1`).
pub(crate) fn fault_response(status: u16) -> HttpResponse {
    if status == 401 {
        return unauthorized();
    }
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = HttpResponse::build(code);
    if status == 429 {
        response.insert_header((header::RETRY_AFTER, "1"));
    }
    response.json(json!({
        "error": {
            "message": status_message(status),
            "detail": "Fault injected by the ServiceNow simulator",
        },
        "status": "failure",
    }))
}
