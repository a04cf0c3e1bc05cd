//! The one path every state change takes (STYLE habit 12): compare-and-set, event row and
//! outbox rows in one transaction, then the wake-ups after the commit.
use std::sync::Arc;

use tokio::sync::Notify;

use crate::domain::timers::Timers;
use crate::domain::GateState;
use crate::metrics::{Metrics, SourceLabel};
use crate::store::{GateStore, StoreError, Transition, TransitionOutcome};
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
}

impl Decider {
    pub fn new(
        store: Arc<dyn GateStore>,
        waiters: Arc<Waiters>,
        wakeups: Arc<Wakeups>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Decider {
            store,
            waiters,
            wakeups,
            metrics,
        }
    }

    pub fn wakeups(&self) -> &Wakeups {
        &self.wakeups
    }

    pub async fn decide(&self, t: Transition) -> Result<TransitionOutcome, StoreError> {
        self.decide_received(t, None).await
    }

    /// As `decide`, for a decision that arrived by HTTP at `received`: the long-polls it
    /// releases report the time since then (`Server-Timing`).
    #[tracing::instrument(skip_all, fields(gate_id = %t.gate_id, to = %t.to, actor = %t.actor))]
    pub async fn decide_received(
        &self,
        t: Transition,
        received: Option<std::time::Instant>,
    ) -> Result<TransitionOutcome, StoreError> {
        // Terminal transitions may carry follow-ups the store adds (e.g. a Jenkins release).
        let has_outbox = !t.outbox.is_empty() || t.to.is_terminal();
        let has_timers = t.timers != Timers::default();
        let started = std::time::Instant::now();
        let actor = t.actor.clone();
        let outcome = self.store.transition(t).await?;
        if let TransitionOutcome::Applied(gate) = &outcome {
            self.waiters.notify_received(gate, received);
            if gate.state.is_terminal() {
                let m = &self.metrics;
                m.decision_latency.observe(started.elapsed().as_secs_f64());
                let source = actor.split(':').next().unwrap_or("unknown").to_string();
                m.decisions.get_or_create(&SourceLabel { source }).inc();
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
