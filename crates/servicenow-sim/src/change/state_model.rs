//! ServiceNow's default change lifecycle as PATCH enforces it: the three change types, the
//! `approval` field, the states PATCH accepts and the transitions it allows.

use serde_json::Value;

use crate::model::CrState;

/// The three change models Octopus Deploy's docs name.
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

    pub(super) fn display(self) -> &'static str {
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

    pub(super) fn display(self) -> &'static str {
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
    pub(super) fn implied_by(state: CrState, current: ChgApproval) -> ChgApproval {
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
/// skip Assess and Authorize, emergency changes skip Assess; Canceled is reachable
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
