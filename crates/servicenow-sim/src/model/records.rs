//! One simulated CR with its callback registration, and the snapshots tests and the admin API
//! read.

use serde::Serialize;
use serde_json::{json, Map, Value};

use super::{Approval, CrState, Decision, APPROVERS, ASSIGNMENT_GROUP};
use crate::plugin_forms::PluginRegistration;

/// What a `POST …/changeControl` registered.
#[derive(Clone, Debug)]
pub(crate) struct Registration {
    pub(crate) token: String,
    pub(crate) callback_url: String,
    pub(crate) task_url: String,
    pub(crate) task_name: Option<String>,
    pub(crate) stage: String,
    pub(crate) branch: Option<String>,
    pub(crate) multibranch: bool,
    pub(crate) build_number: Option<String>,
    pub(crate) task_execution_url: Option<String>,
    pub(crate) change_request_details: Option<Value>,
    /// What the checked body says about the stage (job URL, `JOB_NAME`, item, …).
    pub(crate) plugin: PluginRegistration,
    /// The body exactly as received, for field-by-field comparisons in tests.
    pub(crate) body: Value,
}

/// One simulated change request with its callback registration.
#[derive(Clone, Debug)]
pub(crate) struct Change {
    pub(crate) number: String,
    pub(crate) sys_id: String,
    pub(crate) state: CrState,
    pub(super) approval: Approval,
    pub(crate) planned_start: Option<String>,
    pub(crate) planned_end: Option<String>,
    pub(crate) registration: Registration,
    pub(crate) comments: Option<String>,
    pub(crate) decision: Option<Decision>,
    pub(super) acknowledgements: u32,
    /// The bodies of the accepted acknowledgements, oldest first.
    pub(super) acknowledgement_bodies: Vec<Value>,
    pub(super) fields: Map<String, Value>,
    pub(super) created_at: String,
}

impl Change {
    /// The `result` the `GET …/callback` endpoint reports.
    pub(crate) fn callback_result(&self) -> &'static str {
        self.decision.map_or("pending", Decision::result)
    }

    /// The API reference's changeInfo `result` object for this CR.
    pub(crate) fn change_info(&self, base_url: &str, numeric_states: bool) -> Value {
        let (phase, phase_state) = self.state.phase();
        let state = if numeric_states {
            self.state.value()
        } else {
            self.state.name()
        };
        json!({
            "changeFound": true,
            // The official plugin reads every changeInfo member through `parseResponseResult`,
            // which needs `result.status` "success" (any case), and logs `stateDisplayValue`
            // (the state's name); the other DevOps answers of the API reference spell it "Success".
            "status": "Success",
            "sys_id": self.sys_id,
            "number": self.number,
            "type": "normal",
            "state": state,
            "stateDisplayValue": self.state.name(),
            "phase": phase,
            "phase_state": phase_state,
            "priority": "4",
            "risk": "4",
            "url": format!("{base_url}/change_request.do?sys_id={}", self.sys_id),
            "changeAssignmentGroup": ASSIGNMENT_GROUP,
            "changeApprovers": APPROVERS,
            "plannedStartDate": self.planned_start.clone().unwrap_or_default(),
            "plannedEndDate": self.planned_end.clone().unwrap_or_default(),
        })
    }
}

/// A CR as tests and the admin API see it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeRecord {
    /// `CHG0030001`, `CHG0030002`, …
    pub number: String,
    /// 32 lower-case hex digits.
    pub sys_id: String,
    /// State name: New, Assess, Authorize, Scheduled, Implement, Review, Closed, Canceled.
    pub state: String,
    /// requested | approved | rejected.
    pub approval: String,
    /// `YYYY-MM-DD HH:MM:SS`, UTC.
    pub planned_start_date: Option<String>,
    pub planned_end_date: Option<String>,
    pub approvers: String,
    pub assignment_group: String,
    /// The last path segment of the callback URL (`pipeline_<uuid>`).
    pub callback_token: String,
    pub callback_url: String,
    pub stage_name: String,
    /// Jenkins' `JOB_NAME` of the registration (`folder/app`, `mb/feature%2Fx`): the one
    /// `pipelineName` changeInfo finds this CR under.
    pub pipeline_name: String,
    pub orchestration_task_name: Option<String>,
    pub orchestration_task_url: String,
    pub branch_name: Option<String>,
    pub build_number: Option<String>,
    pub task_execution_url: Option<String>,
    /// The comments of the last decision.
    pub comments: Option<String>,
    /// succeeded | rejected | canceled | failed, once decided.
    pub decision_result: Option<String>,
    /// How many `PUT …/changeControl/{token}` acknowledgements were accepted.
    pub acknowledgements: u32,
    /// The changeControl POST body exactly as received (the latest one for this token).
    pub registration_body: Value,
    /// The bodies of the accepted acknowledgements, oldest first.
    pub acknowledgement_bodies: Vec<Value>,
    /// Fields set through `changeRequestDetails.attributes` and `PUT …/changeInfo`.
    pub fields: Map<String, Value>,
    pub change_request_details: Option<Value>,
    /// Every callback (notice or decision) sent, or dropped, for this CR, oldest first.
    pub callbacks: Vec<CallbackAttempt>,
    pub created_at: String,
}

/// One callback the simulator sent (or dropped).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallbackAttempt {
    pub number: String,
    /// notice | succeeded | rejected | canceled | failed.
    pub kind: String,
    pub url: String,
    pub body: Value,
    /// The HTTP status the callback got; `None` when dropped or unreachable.
    pub status: Option<u16>,
    pub dropped: bool,
    pub error: Option<String>,
    pub at: String,
}

/// A callback to send once the model lock is released.
#[derive(Clone, Debug)]
pub(crate) struct Outbound {
    pub(crate) number: String,
    pub(crate) state: CrState,
    pub(crate) kind: String,
    pub(crate) url: String,
    pub(crate) body: Value,
    pub(crate) drop: bool,
}
