//! The gate store: one trait, used by everything above it; SQLite is the embedded backend,
//! PostgreSQL (cargo feature `postgres`, on by default) the one several replicas share.
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::domain::freeze::Freeze;
use crate::domain::gate::Actor;
use crate::domain::timers::{Deadline, Timers};
use crate::domain::{CallbackToken, ChangeRequest, Gate, GateSpec, GateState};

pub mod bounded;
#[cfg(feature = "postgres")]
mod pg_tls;
mod pg_url;
#[cfg(feature = "postgres")]
pub mod postgres;
mod sql;
pub mod sqlite;

pub use bounded::Bounded;
pub use pg_url::{split_sslmode, SslMode};
#[cfg(feature = "postgres")]
pub use postgres::{PgOptions, PostgresStore};
pub use sqlite::SqliteStore;

/// What a shared store tells the replicas about each other's commits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreSignal {
    /// A gate's decision was committed (by any replica).
    Decided(Uuid),
    /// The listening connection was (re)opened: notifications may have been missed.
    Resync,
}

/// The error a store call ends with, keeping what caused it.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a store call failed. The text (`Display`) already names the cause, so the one-line
/// `error = %e` log fields stay complete; the cause itself stays reachable as `source()`
/// for whoever walks or matches the chain.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or refused the work (a 503 for the API: retry later).
    #[error("the store is unavailable: {context}")]
    Unavailable {
        context: String,
        #[source]
        source: Option<Cause>,
    },
    /// A stored row cannot be read back (a 500 for the API: retrying will not help).
    #[error("stored data is corrupt: {context}")]
    Corrupt {
        context: String,
        #[source]
        source: Option<Cause>,
    },
}

impl StoreError {
    /// Unavailable, for a reason with no underlying error.
    pub fn unavailable(context: impl Into<String>) -> StoreError {
        StoreError::Unavailable {
            context: context.into(),
            source: None,
        }
    }

    /// Unavailable because of `source`: `what: <source>`.
    pub fn unavailable_by(
        what: impl std::fmt::Display,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> StoreError {
        StoreError::Unavailable {
            context: format!("{what}: {source}"),
            source: Some(Box::new(source)),
        }
    }

    /// Unavailable because of `source`, in its words.
    pub fn unavailable_from(source: impl std::error::Error + Send + Sync + 'static) -> StoreError {
        StoreError::Unavailable {
            context: source.to_string(),
            source: Some(Box::new(source)),
        }
    }

    /// Corrupt because of `source`, in its words.
    pub fn corrupt_from(source: impl std::error::Error + Send + Sync + 'static) -> StoreError {
        StoreError::Corrupt {
            context: source.to_string(),
            source: Some(Box::new(source)),
        }
    }

    /// Corrupt, for a reason with no underlying error.
    pub fn corrupt(context: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            context: context.into(),
            source: None,
        }
    }

    /// Corrupt because `source` could not read `what`: `what: <source>`.
    pub fn corrupt_by(
        what: impl std::fmt::Display,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> StoreError {
        StoreError::Corrupt {
            context: format!("{what}: {source}"),
            source: Some(Box::new(source)),
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::unavailable_from(e)
    }
}

/// One row of a gate's audit trail.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub id: i64,
    pub at: String,
    pub actor: String,
    pub kind: String,
    pub from_state: Option<GateState>,
    pub to_state: Option<GateState>,
    pub message: String,
}

/// What the outbox worker must do (and retry) on behalf of a gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutboxKind {
    /// Register the gate with ServiceNow (step mapping, changeControl POST).
    Register,
    /// Acknowledge a callback: `PUT …/orchestration/changeControl/{token}`.
    Acknowledge,
    /// Answer the gate's Jenkins `input` step (payload `{"proceed": bool}`).
    ReleaseInput,
    /// Change mode: `PATCH …/change/{sys_id}` with `{"fields": {…}}` (work notes, state moves).
    ChangeUpdate,
    /// `servicenow.stage_events`: the stage's COMPLETED event (payload `{"result": …}`).
    StageEvent,
    /// Evidence for the gate's CR: `POST /api/now/attachment/file` with the raw content
    /// (payload `{"name", "contentType", "contentBase64", "sha256"}`).
    Attach,
}

impl OutboxKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxKind::Register => "register",
            OutboxKind::Acknowledge => "acknowledge",
            OutboxKind::ReleaseInput => "release",
            OutboxKind::ChangeUpdate => "change_update",
            OutboxKind::StageEvent => "stage_event",
            OutboxKind::Attach => "attach",
        }
    }
    pub fn parse(s: &str) -> Option<OutboxKind> {
        match s {
            "register" => Some(OutboxKind::Register),
            "acknowledge" => Some(OutboxKind::Acknowledge),
            "release" => Some(OutboxKind::ReleaseInput),
            "change_update" => Some(OutboxKind::ChangeUpdate),
            "stage_event" => Some(OutboxKind::StageEvent),
            "attach" => Some(OutboxKind::Attach),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct NewOutbox {
    pub kind: OutboxKind,
    pub payload: Value,
}

#[derive(Clone, Debug)]
pub struct OutboxItem {
    pub id: i64,
    pub gate_id: Uuid,
    pub kind: OutboxKind,
    pub payload: Value,
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
}

/// How an outbox attempt ended.
#[derive(Clone, Debug)]
pub enum OutboxResult {
    Done { message: String },
    Retry { after: Duration, error: String },
    GiveUp { error: String },
}

/// The history entry of a failed outbox attempt that will be tried again.
fn retry_message(item: &OutboxItem, after: Duration, error: &str) -> String {
    format!(
        "attempt {} failed: {error}; retrying in {:.1}s",
        item.attempts + 1,
        after.as_secs_f64()
    )
}

impl OutboxResult {
    /// The same result with any callback token in its text replaced by a fingerprint, before
    /// the text reaches a log line, an event row, the API or the status page.
    pub fn scrubbed(self) -> OutboxResult {
        use crate::domain::names::CallbackToken;
        match self {
            OutboxResult::Done { message } => OutboxResult::Done {
                message: CallbackToken::scrub(&message),
            },
            OutboxResult::Retry { after, error } => OutboxResult::Retry {
                after,
                error: CallbackToken::scrub(&error),
            },
            OutboxResult::GiveUp { error } => OutboxResult::GiveUp {
                error: CallbackToken::scrub(&error),
            },
        }
    }
}

/// A state change, applied as one compare-and-set with its event and outbox rows.
#[derive(Clone, Debug)]
pub struct Transition {
    pub gate_id: Uuid,
    pub to: GateState,
    pub proceed: Option<bool>,
    pub message: String,
    /// Who decided.
    pub actor: Actor,
    pub event_kind: &'static str,
    /// Replaces the gate's change request data when given.
    pub change_request: Option<ChangeRequest>,
    pub outbox: Vec<NewOutbox>,
    /// Timers to arm (a terminal state clears them all).
    pub timers: Timers,
}

/// New change-request data for an open gate (a notice, a poll).
#[derive(Clone, Debug)]
pub struct CrUpdate {
    pub cr: ChangeRequest,
    pub actor: Actor,
    /// Replaces the gate's message when given.
    pub message: Option<String>,
    /// Recorded in the event log when given (polls log only what changed).
    pub event: Option<String>,
    /// The change request exists: the creation timeout is over.
    pub change_known: bool,
    /// Starts the step timeout, unless it already runs.
    pub step_deadline_ms: Option<i64>,
    /// Overrides the next poll (e.g. when a change window opens sooner).
    pub next_poll_ms: Option<i64>,
}

/// The outbound actions a decision implies besides those its caller listed, computed from the
/// gate as decided (its spec) inside the decision's own transaction, so each happens once
/// per decision. The rule belongs to the caller (`decisions::follow_ups`); the store only
/// writes what it returns.
pub type FollowUps = fn(&Gate, &Transition) -> Vec<NewOutbox>;

#[derive(Debug)]
pub enum Completion {
    Recorded(Gate),
    NotFound,
    NotDecided(Gate),
    AlreadyCompleted { result: String, gate: Gate },
}

#[derive(Debug)]
pub enum TransitionOutcome {
    Applied(Gate),
    /// The gate was not in a state the transition may leave; here it is as it is.
    Conflict(Gate),
    NotFound,
}

/// A ServiceNow approval that a change freeze holds back until `until_ms` (the freeze's end):
/// the decision to apply then.
#[derive(Clone, Debug, PartialEq)]
pub struct Hold {
    pub gate_id: Uuid,
    pub freeze_id: String,
    pub freeze_name: String,
    pub until_ms: i64,
    pub to: GateState,
    pub proceed: Option<bool>,
    pub message: String,
    /// Who made the held decision (ServiceNow, or snowgate itself).
    pub actor: Actor,
}

/// Held while one gate searches ServiceNow for the open change request of a title, and creates
/// it when there is none; a gate of another process or replica wanting the same title waits
/// until this is dropped. Two gates racing for a title so create one change request.
pub struct TitleLock {
    _held: Box<dyn Send>,
}

impl TitleLock {
    pub fn new(held: impl Send + 'static) -> TitleLock {
        TitleLock {
            _held: Box::new(held),
        }
    }
}

/// What queueing evidence for a gate's CR did.
#[derive(Debug, PartialEq, Eq)]
pub enum EvidenceQueued {
    Queued,
    /// Evidence with the same SHA-256 was queued for this gate before: nothing new is sent.
    Duplicate,
    NotFound,
}

/// When a decided gate was opened and decided, and how: what the status page's charts of
/// time-to-decision and outcomes are drawn from.
#[derive(Clone, Debug, PartialEq)]
pub struct DecisionTimes {
    pub created_at: DateTime<Utc>,
    pub decided_at: DateTime<Utc>,
    pub state: GateState,
}

impl DecisionTimes {
    /// A row of `sql::DECISION_TIMES`, as either backend reads it (the times as RFC 3339 text).
    pub(crate) fn from_columns(
        created: &str,
        decided: &str,
        state: &str,
    ) -> Result<Self, StoreError> {
        Ok(DecisionTimes {
            created_at: parse_time(created)?,
            decided_at: parse_time(decided)?,
            state: GateState::parse(state)
                .ok_or_else(|| StoreError::corrupt(format!("unknown gate state `{state}`")))?,
        })
    }
}

/// A stored timestamp: both backends keep RFC 3339 text (`domain::gate::timestamp`).
pub(crate) fn parse_time(s: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::corrupt_by(format!("timestamp `{s}`"), e))
}

/// What opening a gate produced.
#[derive(Debug)]
pub struct Opened {
    pub gate: Gate,
    pub created: bool,
    /// The registration outbox row of a new gate, claimed for the caller's first attempt.
    pub register_item: Option<OutboxItem>,
}

#[async_trait]
pub trait GateStore: Send + Sync + 'static {
    /// Insert a gate with its `opened` event and `register` outbox row, or return the existing
    /// gate for the same (jobUrl, buildNumber, stageName). The new outbox row is claimed for
    /// `claim` so the caller can make the first attempt itself.
    async fn open_gate(
        &self,
        spec: GateSpec,
        token: CallbackToken,
        claim: Duration,
    ) -> Result<Opened, StoreError>;
    async fn gate(&self, id: Uuid) -> Result<Option<Gate>, StoreError>;
    /// The gates of `ids` that exist, in no particular order (one query where the backend can).
    async fn gates(&self, ids: &[Uuid]) -> Result<Vec<Gate>, StoreError> {
        let mut found = Vec::with_capacity(ids.len());
        for id in ids {
            found.extend(self.gate(*id).await?);
        }
        Ok(found)
    }
    async fn gate_by_token(&self, raw_token: &str) -> Result<Option<Gate>, StoreError>;
    async fn list_gates(
        &self,
        state: Option<GateState>,
        limit: u32,
    ) -> Result<Vec<Gate>, StoreError>;
    /// Open gates (registering, pending), the oldest first.
    async fn open_gates(&self, limit: u32) -> Result<Vec<Gate>, StoreError>;
    /// Decided gates, the newest decision first.
    async fn recent_decisions(&self, limit: u32) -> Result<Vec<Gate>, StoreError>;
    /// The times and outcomes of at most `limit` gates decided at or after `since`, the newest
    /// decision first (a read of three columns, not whole gates).
    async fn decision_times(
        &self,
        since: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<DecisionTimes>, StoreError>;
    /// The gates of build `build_number`, the newest first: what a lookup by a stage's
    /// identity (pipeline, build, stage) narrows down, since the pipeline is given by its
    /// Jenkins name rather than by the job URL the store keeps.
    async fn gates_of_build(&self, build_number: &str, limit: u32)
        -> Result<Vec<Gate>, StoreError>;
    /// Open gates of `stage_name` in the job at `job_url` (any build and branch), the oldest
    /// first: what a newer build's gate may supersede.
    async fn open_gates_of_stage(
        &self,
        job_url: &str,
        stage_name: &str,
        limit: u32,
    ) -> Result<Vec<Gate>, StoreError>;
    async fn events(&self, id: Uuid) -> Result<Vec<Event>, StoreError>;
    /// Apply `t` as one compare-and-set, with its event row, `t.outbox` and the rows
    /// `follow_ups` returns for the decided gate, in one transaction.
    async fn transition(
        &self,
        t: Transition,
        follow_ups: FollowUps,
    ) -> Result<TransitionOutcome, StoreError>;
    /// Update the CR data of an open gate; `None` when the gate is not open (or unknown).
    async fn update_change_request(
        &self,
        id: Uuid,
        u: CrUpdate,
    ) -> Result<Option<Gate>, StoreError>;
    /// Pending gates whose poll is due; each gets its next poll time (its own interval, else
    /// `default_interval`) in the same write, so no other poller takes it meanwhile.
    async fn claim_polls(
        &self,
        limit: u32,
        default_interval: Duration,
    ) -> Result<Vec<Gate>, StoreError>;
    /// Epoch ms of the earliest next poll.
    async fn next_poll_due(&self) -> Result<Option<i64>, StoreError>;
    /// Open gates whose creation or step deadline has passed.
    async fn due_deadlines(&self, limit: u32) -> Result<Vec<(Gate, Deadline)>, StoreError>;
    /// Epoch ms of the earliest deadline of an open gate, or of a held approval's recheck.
    async fn next_deadline(&self) -> Result<Option<i64>, StoreError>;
    /// Open gates, oldest first, after the `(created_ms, id)` cursor (for reconciliation).
    async fn open_gates_after(
        &self,
        after: Option<(i64, Uuid)>,
        limit: u32,
    ) -> Result<Vec<(i64, Gate)>, StoreError>;
    /// Claim up to `limit` due outbox rows for `lease`.
    async fn claim_outbox(
        &self,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<OutboxItem>, StoreError>;
    /// Record an attempt's result (and its event row).
    async fn finish_outbox(
        &self,
        item: &OutboxItem,
        result: OutboxResult,
    ) -> Result<(), StoreError>;
    /// When the next outbox row falls due, if any.
    async fn next_outbox_due(&self) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// Record that the stage of a decided gate finished (`POST …/complete`), once, with its
    /// event and outbox rows.
    async fn complete_gate(
        &self,
        id: Uuid,
        result: String,
        actor: Actor,
        outbox: Vec<NewOutbox>,
    ) -> Result<Completion, StoreError>;
    /// A decision callback for a gate ServiceNow already decided another way (polling):
    /// queue its acknowledgement, unless the gate has one already, with a `late_callback`
    /// event. Returns whether one was queued.
    async fn acknowledge_late(&self, id: Uuid, message: String) -> Result<bool, StoreError>;
    /// Outbox rows not yet done.
    async fn outbox_backlog(&self) -> Result<u64, StoreError>;
    /// Gate counts per state.
    async fn count_by_state(&self) -> Result<Vec<(GateState, u64)>, StoreError>;
    async fn ping(&self) -> Result<(), StoreError>;

    /// Decisions committed by other processes on the same store (PostgreSQL `LISTEN`);
    /// `None` when this process is the only one (SQLite).
    async fn listen(&self) -> Option<tokio::sync::mpsc::Receiver<StoreSignal>> {
        None
    }

    /// Store a change freeze declared through the API.
    async fn add_freeze(&self, freeze: &Freeze) -> Result<(), StoreError>;
    /// Stored freezes not over at `now_ms`, the earliest first.
    async fn freezes(&self, now_ms: i64) -> Result<Vec<Freeze>, StoreError>;
    /// Delete a stored freeze; the approvals it held fall due at once. False when unknown.
    async fn delete_freeze(&self, id: &str) -> Result<bool, StoreError>;
    /// Hold ServiceNow's approval of an open gate back, in one transaction: the gate stays
    /// (or becomes) pending with `message` and no timers, the hold is stored (replacing an
    /// earlier one), a `freeze_hold` event and `outbox` (the callback's acknowledgement) are
    /// written. `Conflict` when the gate is decided already.
    async fn hold_approval(
        &self,
        hold: Hold,
        message: String,
        outbox: Vec<NewOutbox>,
    ) -> Result<TransitionOutcome, StoreError>;
    /// Held approvals of pending gates due by `before_ms` (`i64::MAX`: all), the earliest first.
    async fn holds(&self, before_ms: i64, limit: u32) -> Result<Vec<Hold>, StoreError>;
    /// Carry a hold on under another (or a longer) freeze.
    async fn extend_hold(&self, hold: &Hold) -> Result<(), StoreError>;
    /// Forget a gate's hold (it was released, or the gate decided otherwise).
    async fn clear_hold(&self, gate_id: Uuid) -> Result<(), StoreError>;

    /// Queue evidence for a gate's CR, once per SHA-256: the outbox row `item` and an
    /// `evidence_queued` event with `message`, in one transaction.
    async fn queue_evidence(
        &self,
        gate_id: Uuid,
        sha256: &str,
        name: &str,
        item: NewOutbox,
        message: &str,
    ) -> Result<EvidenceQueued, StoreError>;

    /// Take the lock of a change-request title, waiting while another holds it (in this
    /// process, or on a shared store in any replica).
    async fn lock_title(&self, title: &str) -> Result<TitleLock, StoreError>;

    /// Take (or renew) a named lease for `ttl`; false while another holder's lease runs.
    /// A store used by one process always grants it.
    async fn try_lease(
        &self,
        _name: &str,
        _holder: &str,
        _ttl: Duration,
    ) -> Result<bool, StoreError> {
        Ok(true)
    }

    /// Record that `replica` is alive; returns how many replicas are (for sharing
    /// `servicenow.max_requests_per_second` across the deployment).
    async fn heartbeat(&self, _replica: &str, _ttl: Duration) -> Result<u32, StoreError> {
        Ok(1)
    }
}
