//! The DevOps API's answers as snowgate reads them. Like the official plugin
//! (`GenericUtils.parseResponseResult`) most fields count only when `result.status` is
//! "success"; ServiceNow sends numbers and booleans either as JSON or as strings.
use serde::Deserialize;

use crate::servicenow::error::{message_of, Details, ErrorBody, ServiceNowError};
use crate::servicenow::lenient::{present, str_of, text, Json, Scalar};

fn no_result() -> ServiceNowError {
    ServiceNowError::Decode("the answer has no `result`".into())
}

/// `{"result": …}`, where a `result` that is `null` still counts as there.
#[derive(Debug, Default, Deserialize)]
#[serde(bound = "R: Deserialize<'de>")]
pub(crate) struct Wrapped<R> {
    #[serde(default, deserialize_with = "present")]
    result: Option<Json<R>>,
}

impl<R: Default> Wrapped<R> {
    /// The `result` (empty when it is not an object), or an error when there is none.
    fn result(self) -> Result<R, ServiceNowError> {
        self.result.map(Json::into_object).ok_or_else(no_result)
    }
}

/// `result.stepValid` of a stepMapping answer.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct StepResult {
    #[serde(rename = "stepValid")]
    step_valid: Option<Scalar>,
}

/// `stepValid` as a boolean or `"true"`/`"false"`; anything else is unreadable.
pub(crate) fn step_valid(answer: &Wrapped<StepResult>) -> Result<bool, ServiceNowError> {
    let result = answer.result.as_ref().ok_or_else(no_result)?;
    match result.object().and_then(|r| r.step_valid.as_ref()) {
        Some(Scalar::Bool(b)) => Ok(*b),
        Some(Scalar::Str(s)) if s == "true" || s == "false" => Ok(s == "true"),
        _ => Err(ServiceNowError::Decode(
            "the answer's result has no boolean `stepValid`".into(),
        )),
    }
}

/// A changeControl registration's answer.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ControlBody {
    #[serde(default, deserialize_with = "present")]
    error: Option<Json<ErrorBody>>,
    #[serde(default, deserialize_with = "present")]
    result: Option<Json<ControlResult>>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ControlResult {
    status: Option<Scalar>,
    message: Option<Scalar>,
    details: Option<Json<Details>>,
    /// Any JSON: a number or an object is shown in the gate's message as sent, so it is kept
    /// as a `Value`. `null` counts as given (and hides `change_control`).
    #[serde(rename = "changeControl", default, deserialize_with = "present")]
    change_control_camel: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "present")]
    change_control: Option<serde_json::Value>,
}

/// What a changeControl registration answered. Like the official plugin, `result.changeControl`
/// counts only when `result.status` is "success", and only `"true"` (in any case) means "under
/// change control"; `false`, `unknown`, a missing value or an unreadable answer all mean it is
/// not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlAnswer {
    pub controlled: bool,
    /// What ServiceNow said, for the gate's message: `changeControl "false"`, `no changeControl
    /// in the answer`, …
    pub answer: String,
    /// ServiceNow's `result.message`, which says why.
    pub message: Option<String>,
}

impl ControlAnswer {
    pub(crate) fn from_answer(body: ControlBody) -> ControlAnswer {
        let result = body.result.as_ref().and_then(Json::object);
        let status = result.and_then(|r| str_of(&r.status));
        let message = result
            .and_then(|r| text(&r.message))
            .or_else(|| message_of(body.error.as_ref(), result.and_then(|r| r.details.as_ref())));
        let value = result.and_then(|r| {
            r.change_control_camel
                .as_ref()
                .or(r.change_control.as_ref())
        });
        let text = match value {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Bool(b)) => Some(b.to_string()),
            Some(serde_json::Value::Null) | None => None,
            Some(other) => Some(other.to_string()),
        };
        let success = status.is_some_and(|s| s.eq_ignore_ascii_case("success"));
        let controlled = success
            && text
                .as_deref()
                .is_some_and(|t| t.eq_ignore_ascii_case("true"));
        let answer = match (&text, success) {
            (Some(t), true) => format!("changeControl \"{t}\""),
            (Some(t), false) => format!(
                "changeControl \"{t}\" with result.status {}",
                status.map_or("missing".to_string(), |s| format!("\"{s}\""))
            ),
            (None, _) => "no changeControl in its answer".to_string(),
        };
        ControlAnswer {
            controlled,
            answer,
            message,
        }
    }

    /// The gate's message for a stage that is not under change control.
    pub fn describe(&self) -> String {
        let mut m = format!(
            "ServiceNow answered {}: the stage is not under change control",
            self.answer
        );
        if let Some(why) = &self.message {
            m.push_str(&format!(" ({why})"));
        }
        m
    }
}

/// The change request as `GET …/orchestration/changeInfo` reports it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChangeInfo {
    pub found: bool,
    pub number: Option<String>,
    pub sys_id: Option<String>,
    /// `stateDisplayValue` (the state's name), else `state` as sent: a name (`Implement`) or a
    /// number (`-1`, `0`).
    pub state: Option<String>,
    /// Whether `state` is a name (from `stateDisplayValue` or a named `state`) rather than a
    /// bare number, which ServiceNow's own example shows to be ambiguous (`"state": "0"` for a
    /// change in phase "requested").
    pub state_is_name: bool,
    pub url: Option<String>,
    pub approvers: Option<String>,
    pub assignment_group: Option<String>,
    pub planned_start: Option<String>,
    pub planned_end: Option<String>,
}

/// A changeInfo `result`, as the poller and the pass-through endpoint read it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ChangeInfoResult {
    pub status: Option<Scalar>,
    pub change_found: Option<Scalar>,
    number: Option<Scalar>,
    #[serde(rename = "sys_id")]
    sys_id: Option<Scalar>,
    state_display_value: Option<Scalar>,
    state: Option<Scalar>,
    url: Option<Scalar>,
    change_approvers: Option<Scalar>,
    change_assignment_group: Option<Scalar>,
    planned_start_date: Option<Scalar>,
    planned_end_date: Option<Scalar>,
}

impl ChangeInfoResult {
    /// Whether the result names a change (`number` as text).
    pub fn has_number(&self) -> bool {
        text(&self.number).is_some()
    }

    pub fn into_info(self, found: bool) -> ChangeInfo {
        let display = text(&self.state_display_value);
        let raw = text(&self.state);
        let state_is_name = display.is_some()
            || raw
                .as_deref()
                .is_some_and(|s| s.trim().parse::<i64>().is_err());
        ChangeInfo {
            found,
            number: text(&self.number),
            sys_id: text(&self.sys_id),
            state: display.or(raw),
            state_is_name,
            url: text(&self.url),
            approvers: text(&self.change_approvers),
            assignment_group: text(&self.change_assignment_group),
            planned_start: text(&self.planned_start_date),
            planned_end: text(&self.planned_end_date),
        }
    }
}

impl ChangeInfo {
    /// The fields count only when `result.status` is "success"; otherwise no change is found.
    pub(crate) fn from_answer(
        answer: Wrapped<ChangeInfoResult>,
    ) -> Result<ChangeInfo, ServiceNowError> {
        let r = answer.result()?;
        let success = str_of(&r.status).is_some_and(|s| s.eq_ignore_ascii_case("success"));
        if !success {
            return Ok(ChangeInfo::default());
        }
        let found = match &r.change_found {
            Some(Scalar::Bool(b)) => *b,
            Some(Scalar::Str(s)) => s.eq_ignore_ascii_case("true"),
            _ => false,
        };
        Ok(r.into_info(found))
    }
}

/// What `GET …/orchestration/callback?taskExecutionURL=` says about a registered callback.
#[derive(Clone, Debug, PartialEq)]
pub struct CallbackStatus {
    /// `pending`, `succeeded`, `canceled`, … exactly as sent.
    pub result: String,
    pub token: Option<String>,
    pub comments: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct CallbackResult {
    result: Option<Scalar>,
    token: Option<Scalar>,
    #[serde(rename = "changeComments")]
    change_comments: Option<Scalar>,
}

impl CallbackStatus {
    pub(crate) fn from_answer(
        answer: Wrapped<CallbackResult>,
    ) -> Result<CallbackStatus, ServiceNowError> {
        let r = answer.result()?;
        Ok(CallbackStatus {
            result: text(&r.result).ok_or_else(|| {
                ServiceNowError::Decode("the answer has no `result.result`".into())
            })?,
            token: text(&r.token),
            comments: text(&r.change_comments),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn control(body: &str) -> ControlAnswer {
        ControlAnswer::from_answer(crate::servicenow::lenient::parse(body.as_bytes()).unwrap())
    }

    #[test]
    fn change_control_counts_only_with_success() {
        let a = control(r#"{"result": {"status": "Success", "changeControl": "TRUE"}}"#);
        assert!(a.controlled);
        let a = control(r#"{"result": {"status": "error", "changeControl": true}}"#);
        assert!(!a.controlled);
        assert_eq!(
            a.answer,
            "changeControl \"true\" with result.status \"error\""
        );
        let a = control(
            r#"{"result": {"status": "success", "changeControl": null, "change_control": true}}"#,
        );
        assert_eq!(a.answer, "no changeControl in its answer");
        let a = control(r#"{"result": {"status": "success", "change_control": 1}, "error": "no"}"#);
        assert_eq!(a.answer, "changeControl \"1\"");
        assert_eq!(a.message.as_deref(), Some("no"));
    }

    #[test]
    fn step_valid_is_a_boolean_or_its_text() {
        let read = |s: &str| step_valid(&crate::servicenow::lenient::parse(s.as_bytes()).unwrap());
        assert!(read(r#"{"result": {"stepValid": "true"}}"#).unwrap());
        assert!(!read(r#"{"result": {"stepValid": false}}"#).unwrap());
        assert!(read(r#"{"result": {"stepValid": "TRUE"}}"#).is_err());
        assert!(read(r#"{"nothing": 1}"#).is_err());
    }
}
