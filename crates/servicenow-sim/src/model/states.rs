//! The states a DevOps CR goes through, its approval, and the decisions that move it.

use serde_json::{json, Value};

use super::Change;

/// Change request states (value → name as in the Change Management API).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CrState {
    New,
    Assess,
    Authorize,
    Scheduled,
    Implement,
    Review,
    Closed,
    Canceled,
}

impl CrState {
    const ALL: [CrState; 8] = [
        CrState::New,
        CrState::Assess,
        CrState::Authorize,
        CrState::Scheduled,
        CrState::Implement,
        CrState::Review,
        CrState::Closed,
        CrState::Canceled,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            CrState::New => "New",
            CrState::Assess => "Assess",
            CrState::Authorize => "Authorize",
            CrState::Scheduled => "Scheduled",
            CrState::Implement => "Implement",
            CrState::Review => "Review",
            CrState::Closed => "Closed",
            CrState::Canceled => "Canceled",
        }
    }

    pub(crate) fn value(self) -> &'static str {
        match self {
            CrState::New => "-5",
            CrState::Assess => "-4",
            CrState::Authorize => "-3",
            CrState::Scheduled => "-2",
            CrState::Implement => "-1",
            CrState::Review => "0",
            CrState::Closed => "3",
            CrState::Canceled => "4",
        }
    }

    /// A state by name (any case, "Cancelled" too) or by value (`"-1"`).
    pub(crate) fn parse(text: &str) -> Option<CrState> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("cancelled") {
            return Some(CrState::Canceled);
        }
        CrState::ALL
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(text) || s.value() == text)
    }

    /// `phase` and `phase_state` as changeInfo reports them (ServiceNow's DevOps API reference example: a fresh CR is
    /// `requested`/`open`).
    pub(crate) fn phase(self) -> (&'static str, &'static str) {
        match self {
            CrState::New | CrState::Assess | CrState::Authorize => ("requested", "open"),
            CrState::Scheduled => ("requested", "approved"),
            CrState::Implement => ("implementation", "in_progress"),
            CrState::Review => ("review", "in_progress"),
            CrState::Closed => ("closed", "closed"),
            CrState::Canceled => ("closed", "canceled"),
        }
    }
}

/// The CR's approval field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Approval {
    Requested,
    Approved,
    Rejected,
}

impl Approval {
    pub(super) fn name(self) -> &'static str {
        match self {
            Approval::Requested => "requested",
            Approval::Approved => "approved",
            Approval::Rejected => "rejected",
        }
    }
}

/// A decision ServiceNow calls back with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    Approve,
    Reject,
    Cancel,
    Error,
}

impl Decision {
    pub(crate) fn parse(action: &str) -> Option<Decision> {
        match action {
            "approve" => Some(Decision::Approve),
            "reject" => Some(Decision::Reject),
            "cancel" => Some(Decision::Cancel),
            "error" => Some(Decision::Error),
            _ => None,
        }
    }

    /// The callback's `result` (the official plugin compares it with "succeeded" and
    /// "canceled"; everything else counts as not approved).
    pub(crate) fn result(self) -> &'static str {
        match self {
            Decision::Approve => "succeeded",
            Decision::Reject => "rejected",
            Decision::Cancel => "canceled",
            Decision::Error => "failed",
        }
    }

    pub(crate) fn default_comments(self) -> &'static str {
        match self {
            Decision::Approve => "Approved in the ServiceNow simulator",
            Decision::Reject => "Rejected in the ServiceNow simulator",
            Decision::Cancel => "Canceled in the ServiceNow simulator",
            Decision::Error => "Error reported by the ServiceNow simulator",
        }
    }

    /// The callback body exactly as the official plugin receives it.
    pub(crate) fn body(self, comments: &str) -> Value {
        match self {
            Decision::Error => json!({
                "result": self.result(),
                "isError": true,
                "changeComments": comments,
            }),
            _ => json!({"result": self.result(), "changeComments": comments}),
        }
    }

    pub(super) fn apply(self, change: &mut Change) {
        match self {
            Decision::Approve => {
                change.state = CrState::Implement;
                change.approval = Approval::Approved;
            }
            Decision::Reject => {
                change.state = CrState::Closed;
                change.approval = Approval::Rejected;
            }
            Decision::Cancel => change.state = CrState::Canceled,
            // An error in ServiceNow's processing leaves the CR where it was.
            Decision::Error => {}
        }
    }
}
