//! The public wire types of snowgate's own API: how a gate, its audit trail and an error look
//! on the wire. The server serialises them, and `snowgate gates …` and the integration tests
//! deserialise them, so a field renamed here is renamed for every party at once.
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::configuration::GateMode;
use crate::domain::gate::timestamp;
use crate::domain::{ChangeRequest, Gate, GateState};
use crate::store::Event;

/// Where the API lives; every path below starts with it.
pub const API_PREFIX: &str = "/api/v1";

/// How a gate is shown by every gate endpoint (`GET /api/v1/gates/{id}`, `…/wait`, the list and
/// the answer of `POST /api/v1/gates`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GateView {
    pub id: Uuid,
    pub state: GateState,
    /// `Some(true)` lets the stage go on, `Some(false)` stops it; `None` while undecided.
    pub proceed: Option<bool>,
    pub message: String,
    #[schema(value_type = crate::openapi::GateModeSchema)]
    pub mode: GateMode,
    pub job_url: String,
    pub build_number: String,
    pub stage_name: String,
    pub branch_name: Option<String>,
    pub build_url: Option<String>,
    pub change_request: Option<ChangeRequest>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    #[schema(format = DateTime)]
    pub decided_at: Option<String>,
    pub decided_by: Option<String>,
    /// The earliest timeout still running, if any.
    #[schema(format = DateTime)]
    pub deadline: Option<String>,
    pub links: Links,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Links {
    #[serde(rename = "self")]
    pub self_: String,
    pub wait: String,
    pub events: String,
}

/// `GET /api/v1/gates`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GateList {
    pub gates: Vec<GateView>,
    pub count: usize,
}

/// One row of a gate's audit trail.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    pub id: i64,
    #[schema(format = DateTime)]
    pub at: String,
    /// Who caused it: `servicenow`, `operator:<name>`, `timer`, … (README "Audit trail").
    pub actor: String,
    pub kind: String,
    pub from_state: Option<GateState>,
    pub to_state: Option<GateState>,
    pub message: String,
}

/// `GET /api/v1/gates/{id}/events`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventList {
    pub gate_id: Uuid,
    pub events: Vec<EventView>,
}

/// Every error answer: `{"error": {"code": "<snake_case>", "message": "…", "field"?: "…"}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    /// The request field at fault, for `invalid_field`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// The path of a gate, or of one of its sub-resources (`wait`, `events`, `resume`, …).
pub fn gate_path(id: Uuid, sub: Option<&str>) -> String {
    match sub {
        None => format!("{API_PREFIX}/gates/{id}"),
        Some(s) => format!("{API_PREFIX}/gates/{id}/{s}"),
    }
}

impl Gate {
    /// The gate as every gate endpoint shows it.
    pub fn view(&self) -> GateView {
        GateView {
            id: self.id,
            state: self.state,
            proceed: self.proceed,
            message: self.message.clone(),
            mode: self.spec.mode,
            job_url: self.spec.job_url.clone(),
            build_number: self.spec.build_number.clone(),
            stage_name: self.spec.stage_name.clone(),
            branch_name: self.spec.branch_name.clone(),
            build_url: self.spec.build_url.clone(),
            change_request: self.change_request.clone(),
            created_at: timestamp(&self.created_at),
            updated_at: timestamp(&self.updated_at),
            decided_at: self.decided_at.as_ref().map(timestamp),
            decided_by: self.decided_by.clone(),
            deadline: self.timers.earliest().map(|t| timestamp(&t)),
            links: Links {
                self_: gate_path(self.id, None),
                wait: gate_path(self.id, Some("wait")),
                events: gate_path(self.id, Some("events")),
            },
        }
    }
}

impl From<&Event> for EventView {
    fn from(e: &Event) -> Self {
        EventView {
            id: e.id,
            at: e.at.clone(),
            actor: e.actor.to_string(),
            kind: e.kind.clone(),
            from_state: e.from_state,
            to_state: e.to_state,
            message: e.message.clone(),
        }
    }
}

/// A change freeze as `GET /api/v1/freezes` lists it: the freeze, whether it is active now,
/// and the gates whose ServiceNow approval it holds back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FreezeView {
    #[serde(flatten)]
    pub freeze: crate::domain::freeze::Freeze,
    pub active: bool,
    #[serde(default)]
    pub held_gates: Vec<Uuid>,
}

/// `GET /api/v1/freezes`: the freezes not over (active and upcoming), the earliest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FreezeList {
    pub freezes: Vec<FreezeView>,
}

/// Where freezes are declared and listed.
pub const FREEZES_PATH: &str = "/api/v1/freezes";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_without_a_field_has_no_field_key() {
        let body = ErrorBody {
            error: ErrorDetail {
                code: "not_found".into(),
                message: "no gate".into(),
                field: None,
            },
        };
        let v = serde_json::to_value(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"error": {"code": "not_found", "message": "no gate"}})
        );
        assert_eq!(serde_json::from_value::<ErrorBody>(v).unwrap(), body);
    }

    #[test]
    fn gate_paths_are_under_the_api_prefix() {
        let id = Uuid::nil();
        assert_eq!(
            gate_path(id, Some("wait")),
            "/api/v1/gates/00000000-0000-0000-0000-000000000000/wait"
        );
    }
}
