//! CRs and templates as records: the public snapshots, the record each API answer renders
//! (`{"value","display_value"}` fields, dates in the user's time zone) and the error shape.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::routes::platform_error;
use super::state_model::{ChangeType, ChgApproval};
use super::{DATE_FIELDS, DISPLAY_DATE_FORMAT, USER_UTC_OFFSET_HOURS};
use crate::model::{CrState, DATE_FORMAT};
use crate::SimSettings;

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
    pub(super) fn value(&self, field: &str) -> String {
        match field {
            "sys_id" => self.sys_id.clone(),
            "name" => self.name.clone(),
            "active" => self.active.to_string(),
            "short_description" => self.short_description.clone(),
            _ => String::new(),
        }
    }

    pub(super) fn render(&self, shape: Shape) -> Map<String, Value> {
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
    pub(super) number: String,
    pub(super) sys_id: String,
    pub(super) kind: ChangeType,
    pub(super) state: CrState,
    pub(super) approval: ChgApproval,
    pub(super) template: Option<String>,
    /// Text fields by name, `start_date`/`end_date` included (`""` when unset).
    pub(super) fields: BTreeMap<String, String>,
    pub(super) work_notes: Vec<ChgWorkNote>,
    pub(super) created_by_api: bool,
    pub(super) created_at: String,
    pub(super) updated_at: String,
}

impl Cr {
    pub(super) fn active(&self) -> bool {
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

    pub(super) fn render(&self, shape: Shape, only: Option<&[String]>) -> Map<String, Value> {
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

/// How records are written: ServiceNow makes clients read `value` as a string or a number and
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

    pub(super) fn sys_id(self, sys_id: &str) -> Value {
        if self.plain_sys_id {
            json!(sys_id)
        } else {
            text_field(sys_id)
        }
    }

    pub(super) fn boolean(self, b: bool) -> Value {
        if self.numeric_values {
            field(json!(b), &b.to_string())
        } else {
            text_field(&b.to_string())
        }
    }
}

pub(super) fn field(value: Value, display: &str) -> Value {
    json!({"value": value, "display_value": display})
}

pub(super) fn text_field(value: &str) -> Value {
    field(json!(value), value)
}

/// A date: the value in UTC, the display values in the user's time zone (`display_value` in the
/// user's format, `display_value_internal` in the internal one).
pub(super) fn date_field(value: &str) -> Value {
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
    pub(super) fn bad(message: &str, detail: impl Into<String>) -> ChgError {
        ChgError::BadRequest {
            message: message.to_string(),
            detail: detail.into(),
        }
    }

    pub(super) fn into_response(self) -> HttpResponse {
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
