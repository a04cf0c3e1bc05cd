//! The one path every state change takes (STYLE habit 12): compare-and-set, event row and
//! outbox rows in one transaction, then the wake-ups after the commit.
use std::sync::Arc;

use serde_json::json;
use tokio::sync::Notify;
use tracing::Instrument;

use crate::change_mode::ChangeMode;
use crate::configuration::{AutoTransition, GateMode};
use crate::domain::gate::Actor;
use crate::domain::timers::{on_change_known, Timers};
use crate::domain::{ChangeRequest, Gate, GateState};
use crate::freezes::{FreezeVerdict, Freezes};
use crate::metrics::{Metrics, SourceLabel};
use crate::store::{
    CrUpdate, GateStore, NewOutbox, OutboxKind, StoreError, Transition, TransitionOutcome,
};
use crate::waiters::Waiters;

/// Wake-ups of the background workers, so they never sleep past new work.
#[derive(Default)]
pub struct Wakeups {
    pub outbox: Notify,
    pub timers: Notify,
    pub poller: Notify,
}

#[derive(Clone)]
pub struct Decider {
    store: Arc<dyn GateStore>,
    waiters: Arc<Waiters>,
    wakeups: Arc<Wakeups>,
    metrics: Arc<Metrics>,
    /// The change freezes, which hold back (or fail) every decision but an operator's that
    /// would let a covered stage go on, while active.
    freezes: Arc<Freezes>,
}

impl Decider {
    pub fn new(
        store: Arc<dyn GateStore>,
        waiters: Arc<Waiters>,
        wakeups: Arc<Wakeups>,
        metrics: Arc<Metrics>,
        freezes: Arc<Freezes>,
    ) -> Self {
        Decider {
            store,
            waiters,
            wakeups,
            metrics,
            freezes,
        }
    }

    pub fn freezes(&self) -> &Freezes {
        &self.freezes
    }

    /// An operator's decision by hand; a resume while a freeze covers the gate is a
    /// break-glass override of that freeze, recorded as such (event `freeze_override`, the
    /// freeze named, and in change mode a note on the CR).
    pub async fn operator_decision(
        &self,
        id: uuid::Uuid,
        to: GateState,
        operator: &str,
        reason: &str,
    ) -> Result<(&'static str, Transition), StoreError> {
        let (verb, mut t) = operator_decision(id, to, operator, reason);
        if to != GateState::Resumed || !self.freezes.any_active().await? {
            return Ok((verb, t));
        }
        let Some(gate) = self.store.gate(id).await? else {
            return Ok((verb, t));
        };
        if let Some(freeze) = self.freezes.covering(&gate.spec, false).await? {
            t.event_kind = "freeze_override";
            t.message = format!(
                "resumed by {operator} during {}, overriding the freeze: {reason}",
                freeze.describe()
            );
            t.outbox.extend(audit_note(&gate, &t.message));
            tracing::warn!(gate_id = %id, %operator, freeze = %freeze.name, "a change freeze was overridden");
        }
        Ok((verb, t))
    }

    pub fn wakeups(&self) -> &Wakeups {
        &self.wakeups
    }

    pub async fn decide(&self, t: Transition) -> Result<TransitionOutcome, StoreError> {
        self.decide_received(t, None).await
    }

    /// As `decide`, for a decision that arrived by HTTP at `received`: the long-polls it
    /// releases report the time since then (`Server-Timing`).
    ///
    /// The decision runs to its end in a task of its own: a caller that goes away meanwhile
    /// (a callback whose connection closed while the store committed) must not leave a
    /// committed decision without its wake-ups, or this process's long-polls would wait out
    /// their time for it.
    pub async fn decide_received(
        &self,
        t: Transition,
        received: Option<std::time::Instant>,
    ) -> Result<TransitionOutcome, StoreError> {
        let this = self.clone();
        tokio::spawn(async move { this.apply(t, received).await }.in_current_span())
            .await
            .map_err(|e| StoreError::unavailable(format!("a decision's task ended: {e}")))?
    }

    #[tracing::instrument(skip_all, fields(gate_id = %t.gate_id, to = %t.to, actor = %t.actor))]
    async fn apply(
        &self,
        t: Transition,
        received: Option<std::time::Instant>,
    ) -> Result<TransitionOutcome, StoreError> {
        let t = match self.freezes.apply(&*self.store, t).await? {
            FreezeVerdict::Decide(t) => t,
            FreezeVerdict::Held(outcome) => {
                // The callback's acknowledgement is queued; the freeze's end is a deadline.
                self.wakeups.outbox.notify_one();
                self.wakeups.timers.notify_one();
                return Ok(outcome);
            }
        };
        // Terminal transitions may carry follow-ups the store adds (e.g. a Jenkins release).
        let has_outbox = !t.outbox.is_empty() || t.to.is_terminal();
        let has_timers = t.timers != Timers::default();
        let started = std::time::Instant::now();
        let source = t.actor.source();
        let outcome = self.store.transition(t, follow_ups).await?;
        if let TransitionOutcome::Applied(gate) = &outcome {
            self.waiters.notify_received(gate, received);
            if gate.state.is_terminal() {
                let m = &self.metrics;
                m.decision_latency.observe(started.elapsed().as_secs_f64());
                m.decisions
                    .get_or_create(&SourceLabel {
                        source: source.to_string(),
                    })
                    .inc();
                if let Some(at) = gate.decided_at {
                    let pending = (at - gate.created_at).num_milliseconds().max(0) as f64 / 1000.0;
                    m.time_pending.observe(pending);
                }
            }
            tracing::info!(
                state = %gate.state,
                proceed = ?gate.proceed,
                message = %gate.message,
                "gate {} is now {}",
                gate.id,
                gate.state
            );
            if has_outbox {
                self.wakeups.outbox.notify_one();
            }
            if has_timers {
                self.wakeups.timers.notify_one();
                self.wakeups.poller.notify_one();
            }
        }
        Ok(outcome)
    }
}

/// A work note for the gate's change request (change mode, `change.work_notes: true`).
pub fn work_note(gate: &Gate, text: &str) -> Option<NewOutbox> {
    gate.spec.work_notes.then(|| note_on_cr(gate, text))
}

/// The outbox row of a work note on the gate's CR.
fn note_on_cr(gate: &Gate, text: &str) -> NewOutbox {
    NewOutbox {
        kind: OutboxKind::ChangeUpdate,
        payload: json!({
            "fields": {"work_notes": format!("snowgate gate {}: {text}", gate.id)},
            "what": "work note",
        }),
    }
}

/// A note for a change-mode gate's CR that its history must carry whatever
/// `change.work_notes` says (why a deployment never came, or came during a freeze); `None`
/// without a CR, and when work notes are on (`follow_ups` writes the decision's note then).
pub fn audit_note(gate: &Gate, text: &str) -> Option<NewOutbox> {
    if gate.spec.mode != GateMode::Change || gate.spec.work_notes || gate.change_request.is_none() {
        return None;
    }
    Some(note_on_cr(gate, text))
}

/// The outbound actions every decision implies, besides those its caller asked for: a gate
/// that names a Jenkins `input` gets it answered (proceed or abort by the outcome), and in
/// change mode the decision is written on the CR as a work note (naming the operator who
/// made it by hand). The store writes them in the decision's own transaction, so each
/// happens once per decision.
pub fn follow_ups(gate: &Gate, t: &Transition) -> Vec<NewOutbox> {
    let mut out = Vec::new();
    if !t.to.is_terminal() {
        return out;
    }
    let who = match &t.actor {
        Actor::Operator(_) => format!(" (by {})", t.actor),
        _ => String::new(),
    };
    out.extend(work_note(gate, &format!("{}{who}: {}", t.to, t.message)));
    if gate.spec.input_id.is_some() {
        out.push(NewOutbox {
            kind: OutboxKind::ReleaseInput,
            payload: json!({ "proceed": t.proceed.unwrap_or(false) }),
        });
    }
    out
}

/// The outcome and message of a ServiceNow decision, as the plugin words it. `ignoreErrors`
/// never turns a decision into proceed: a rejection, a cancellation and an `isError` callback
/// all stop the stage, whatever the step says.
pub fn decision_message(to: GateState, comments: &str) -> (Option<bool>, String) {
    let with = |s: &str| {
        if comments.is_empty() {
            s.to_string()
        } else {
            format!("{s}: {comments}")
        }
    };
    match to {
        GateState::Approved => (Some(true), with("Approved in ServiceNow")),
        GateState::Canceled => (Some(false), with("Job was canceled")),
        GateState::Failed => (Some(false), with("ServiceNow reported an error")),
        _ => (Some(false), with("Job was not approved for execution")),
    }
}

/// What a ServiceNow notice (`changeRequestId` in the callback) records: its CR fields over
/// those already known, the plugin's "Waiting for approval of …" message, and the step
/// timeout, which runs from the moment the CR is known.
pub fn notice_update(gate: &Gate, cr: ChangeRequest, now_ms: i64) -> CrUpdate {
    let number = cr.number.clone().unwrap_or_default();
    let message = format!(
        "Waiting for approval of {number}{}",
        cr.comments
            .as_ref()
            .map(|c| format!(" ({c})"))
            .unwrap_or_default()
    );
    let mut merged = gate.change_request.clone().unwrap_or_default();
    merged.number = cr.number.or(merged.number);
    merged.url = cr.url.or(merged.url);
    merged.comments = cr.comments.or(merged.comments);
    CrUpdate {
        cr: merged,
        actor: Actor::ServiceNow,
        message: Some(message.clone()),
        event: Some(message),
        change_known: true,
        step_deadline_ms: on_change_known(
            &gate.spec,
            now_ms,
            gate.timers.step_deadline_ms.is_some(),
        ),
        next_poll_ms: None,
    }
}

/// ServiceNow's decision by callback: the plugin's outcome and message, its comments on the
/// CR, and the acknowledgement the plugin sends for every decision callback.
pub fn callback_decision(gate: &Gate, to: GateState, comments: String) -> Transition {
    let (proceed, message) = decision_message(to, &comments);
    let mut cr = gate.change_request.clone().unwrap_or_default();
    if !comments.is_empty() {
        cr.comments = Some(comments);
    }
    Transition {
        gate_id: gate.id,
        to,
        proceed,
        message,
        actor: Actor::ServiceNow,
        event_kind: "decided",
        change_request: Some(cr),
        outbox: vec![NewOutbox {
            kind: OutboxKind::Acknowledge,
            payload: json!({}),
        }],
        timers: Default::default(),
    }
}

/// The decision an operator makes by hand (API and status page alike): `resumed` proceeds,
/// `aborted` stops; the operator and the reason go into the message and the audit trail.
pub fn operator_decision(
    id: uuid::Uuid,
    to: GateState,
    operator: &str,
    reason: &str,
) -> (&'static str, Transition) {
    let (verb, proceed) = if to == GateState::Resumed {
        ("resumed", true)
    } else {
        ("aborted", false)
    };
    let t = Transition {
        gate_id: id,
        to,
        proceed: Some(proceed),
        message: format!("{verb} by {operator}: {reason}"),
        actor: Actor::Operator(operator.to_string()),
        event_kind: verb,
        change_request: None,
        outbox: Vec::new(),
        timers: Default::default(),
    };
    (verb, t)
}

/// The decision a newer build's gate makes for an older, still open one of the same job,
/// branch and stage. In change mode the older gate's CR is told why, in a work note (also
/// without `change.work_notes`: the CR's history must say why its deployment never came),
/// and with `change.cancel_superseded` a CR snowgate created for it is canceled, unless the
/// newer gate's title is the same (it would link, and need, that very CR).
pub fn superseded_decision(older: &Gate, newer: &Gate, change: Option<&ChangeMode>) -> Transition {
    let message = format!(
        "superseded by build {} (gate {}) of the same job, branch and stage",
        newer.spec.build_number, newer.id
    );
    let cr = older.change_request.as_ref();
    let cancel = change.is_some_and(|c| {
        c.settings.cancel_superseded
            && cr.is_some_and(|cr| cr.created_by_snowgate && cr.sys_id.is_some())
            && cr
                .and_then(|cr| cr.state.as_deref())
                .and_then(crate::domain::change::CrState::parse)
                .is_none_or(|s| s.is_open())
            && c.title(older) != c.title(newer)
    });
    let mut outbox: Vec<NewOutbox> = audit_note(older, &format!("superseded: {message}"))
        .into_iter()
        .collect();
    if cancel {
        outbox.push(NewOutbox {
            kind: OutboxKind::ChangeUpdate,
            payload: json!({
                "fields": {"state": "canceled"},
                "what": "cancellation (superseded)",
                // Read the CR first: one closed or canceled since the last poll stays as it is.
                "onlyIfOpen": true,
            }),
        });
    }
    Transition {
        gate_id: older.id,
        to: GateState::Superseded,
        proceed: Some(false),
        message,
        actor: Actor::Snowgate,
        event_kind: "superseded",
        change_request: None,
        outbox,
        timers: Default::default(),
    }
}

/// What `POST /gates/{id}/complete` queues with the recorded result: the stage's COMPLETED
/// event (`servicenow.stage_events`), a work note, and for a CR snowgate created with
/// `change.auto_transition` the moves to Review (and Closed).
pub fn completion_actions(
    stage_events: bool,
    change: Option<&ChangeMode>,
    gate: &Gate,
    result: &str,
) -> Vec<NewOutbox> {
    let mut out = Vec::new();
    if stage_events && gate.spec.mode == GateMode::Devops {
        out.push(NewOutbox {
            kind: OutboxKind::StageEvent,
            payload: json!({ "result": result }),
        });
    }
    let build = gate.spec.build_url.as_deref().unwrap_or(&gate.spec.job_url);
    out.extend(work_note(
        gate,
        &format!(
            "stage {} finished: {result} ({build})",
            gate.spec.stage_name
        ),
    ));
    let created = gate
        .change_request
        .as_ref()
        .is_some_and(|c| c.created_by_snowgate && c.sys_id.is_some());
    if let (Some(change), true) = (change, created) {
        if let (true, Some(to)) = (
            change.auto_transitions(&gate.spec),
            change.settings.auto_transition,
        ) {
            let close = json!({
                "close_code": if result == "success" { "successful" } else { "unsuccessful" },
                "close_notes": format!(
                    "Jenkins stage {} of build {} finished: {result} ({build})",
                    gate.spec.stage_name, gate.spec.build_number
                ),
            });
            let mut review = close.clone();
            review["state"] = json!("review");
            let mut steps = vec![review];
            if to == AutoTransition::Closed {
                let mut closed = close;
                closed["state"] = json!("closed");
                steps.push(closed);
            }
            let target = match to {
                AutoTransition::Review => "review",
                AutoTransition::Closed => "closed",
            };
            out.push(NewOutbox {
                kind: OutboxKind::ChangeUpdate,
                payload: json!({"steps": steps, "what": format!("move to {target}")}),
            });
        }
    }
    out
}
