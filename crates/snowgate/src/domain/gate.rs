//! Gate states and the pure transition rules.
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::names::CallbackToken;
use super::request::GateSpec;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GateState {
    Registering,
    Pending,
    Approved,
    NotControlled,
    Rejected,
    Canceled,
    Failed,
    TimedOut,
    Resumed,
    Aborted,
    /// A newer build's gate for the same job, branch and stage opened with `supersede`.
    Superseded,
}

pub const ALL_STATES: [GateState; 11] = [
    GateState::Registering,
    GateState::Pending,
    GateState::Approved,
    GateState::NotControlled,
    GateState::Rejected,
    GateState::Canceled,
    GateState::Failed,
    GateState::TimedOut,
    GateState::Resumed,
    GateState::Aborted,
    GateState::Superseded,
];

/// The states a gate can still leave.
pub const OPEN_STATES: [GateState; 2] = [GateState::Registering, GateState::Pending];

impl GateState {
    pub fn as_str(self) -> &'static str {
        match self {
            GateState::Registering => "registering",
            GateState::Pending => "pending",
            GateState::Approved => "approved",
            GateState::NotControlled => "not_controlled",
            GateState::Rejected => "rejected",
            GateState::Canceled => "canceled",
            GateState::Failed => "failed",
            GateState::TimedOut => "timed_out",
            GateState::Resumed => "resumed",
            GateState::Aborted => "aborted",
            GateState::Superseded => "superseded",
        }
    }

    pub fn parse(s: &str) -> Option<GateState> {
        ALL_STATES.into_iter().find(|st| st.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        !OPEN_STATES.contains(&self)
    }
}

impl std::fmt::Display for GateState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("the gate is already {0}")]
    AlreadyTerminal(GateState),
    #[error("a gate cannot move from {from} to {to}")]
    NotAllowed { from: GateState, to: GateState },
}

/// The states from which `to` may be entered. The store uses this list in its
/// compare-and-set (`UPDATE … WHERE state IN (…)`).
pub fn sources_of(to: GateState) -> &'static [GateState] {
    match to {
        GateState::Registering => &[],
        GateState::Pending => &[GateState::Registering],
        // A callback may beat the registration reply, so every decision is allowed from
        // `registering` as well as from `pending`.
        _ => &OPEN_STATES,
    }
}

/// Pure rule: may a gate in `from` move to `to`? The store checks a transition with it
/// before its compare-and-set.
pub fn transition(from: GateState, to: GateState) -> Result<GateState, TransitionError> {
    if sources_of(to).contains(&from) {
        Ok(to)
    } else if from.is_terminal() {
        Err(TransitionError::AlreadyTerminal(from))
    } else {
        Err(TransitionError::NotAllowed { from, to })
    }
}

/// Who made a change, as the audit trail (`actor`) and a decided gate (`decidedBy`) record
/// it. The stored text is this type's `Display`; `FromStr` reads it back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Actor {
    /// The pipeline's request that opened the gate: `pipeline`.
    Pipeline,
    /// A pipeline acting with a named client token (`POST …/complete`): `pipeline:<name>`.
    PipelineClient(String),
    /// A callback or an answer from ServiceNow (also what the poller and reconciler read
    /// there): `servicenow`.
    ServiceNow,
    /// snowgate itself (a timeout, an outbox attempt's result): `snowgate`.
    Snowgate,
    /// An operator's decision by hand: `operator:<name>`.
    Operator(String),
}

impl Actor {
    /// The kind of actor without a name: the `source` label of the decision metrics.
    pub fn source(&self) -> &'static str {
        match self {
            Actor::Pipeline | Actor::PipelineClient(_) => "pipeline",
            Actor::ServiceNow => "servicenow",
            Actor::Snowgate => "snowgate",
            Actor::Operator(_) => "operator",
        }
    }
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Actor::PipelineClient(name) | Actor::Operator(name) => {
                write!(f, "{}:{name}", self.source())
            }
            _ => f.write_str(self.source()),
        }
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an actor")]
pub struct UnknownActor(String);

impl std::str::FromStr for Actor {
    type Err = UnknownActor;
    fn from_str(s: &str) -> Result<Actor, UnknownActor> {
        let (kind, name) = match s.split_once(':') {
            Some((kind, name)) => (kind, Some(name.to_string())),
            None => (s, None),
        };
        match (kind, name) {
            ("pipeline", None) => Ok(Actor::Pipeline),
            ("pipeline", Some(name)) => Ok(Actor::PipelineClient(name)),
            ("servicenow", None) => Ok(Actor::ServiceNow),
            ("snowgate", None) => Ok(Actor::Snowgate),
            ("operator", Some(name)) => Ok(Actor::Operator(name)),
            _ => Err(UnknownActor(s.to_string())),
        }
    }
}

/// The change request ServiceNow linked to the gate, as far as snowgate knows it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChangeRequest {
    pub number: Option<String>,
    pub sys_id: Option<String>,
    pub url: Option<String>,
    pub state: Option<String>,
    pub planned_start_date: Option<String>,
    pub planned_end_date: Option<String>,
    pub approvers: Option<String>,
    pub assignment_group: Option<String>,
    pub comments: Option<String>,
    /// Change mode: snowgate created this CR (so it may move it after `complete`).
    #[serde(default)]
    pub created_by_snowgate: bool,
}

/// A gate as stored.
#[derive(Clone, Debug)]
pub struct Gate {
    pub id: Uuid,
    pub state: GateState,
    pub proceed: Option<bool>,
    pub message: String,
    pub spec: GateSpec,
    pub callback_token: CallbackToken,
    pub change_request: Option<ChangeRequest>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
    pub decided_by: Option<String>,
    pub timers: super::timers::Timers,
}

pub fn timestamp(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_gates_accept_every_decision() {
        for to in ALL_STATES.into_iter().filter(|s| s.is_terminal()) {
            assert_eq!(transition(GateState::Pending, to), Ok(to));
            assert_eq!(transition(GateState::Registering, to), Ok(to));
        }
    }

    #[test]
    fn terminal_gates_accept_nothing() {
        for from in ALL_STATES.into_iter().filter(|s| s.is_terminal()) {
            for to in ALL_STATES {
                assert_eq!(
                    transition(from, to),
                    Err(TransitionError::AlreadyTerminal(from))
                );
            }
        }
    }

    #[test]
    fn pending_is_entered_only_from_registering() {
        assert!(transition(GateState::Registering, GateState::Pending).is_ok());
        assert_eq!(
            transition(GateState::Pending, GateState::Pending),
            Err(TransitionError::NotAllowed {
                from: GateState::Pending,
                to: GateState::Pending
            })
        );
    }

    #[test]
    fn actors_round_trip_through_their_stored_text() {
        for (actor, text) in [
            (Actor::Pipeline, "pipeline"),
            (Actor::PipelineClient("ci".into()), "pipeline:ci"),
            (Actor::ServiceNow, "servicenow"),
            (Actor::Snowgate, "snowgate"),
            (Actor::Operator("alice".into()), "operator:alice"),
        ] {
            assert_eq!(actor.to_string(), text);
            assert_eq!(text.parse::<Actor>(), Ok(actor));
        }
        assert!("operator".parse::<Actor>().is_err());
        assert!("jenkins".parse::<Actor>().is_err());
    }

    #[test]
    fn states_round_trip_through_their_names() {
        for s in ALL_STATES {
            assert_eq!(GateState::parse(s.as_str()), Some(s));
        }
        assert_eq!(GateState::parse("bogus"), None);
    }
}
