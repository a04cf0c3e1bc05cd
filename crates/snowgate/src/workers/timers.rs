//! The timeouts of a gate: `changeCreationTimeoutSecs` (no change request in time) and
//! `changeStepTimeoutSecs` (no decision in time), each with its abort flag. Deadlines are
//! stored with the gates; this worker sleeps until the earliest one.
use std::sync::Arc;

use crate::configuration::GateMode;
use crate::decisions::Decider;
use crate::domain::gate::Actor;
use crate::domain::timers::{on_change_known, Deadline, Timers};
use crate::domain::{ChangeRequest, Gate, GateState};
use crate::store::{CrUpdate, GateStore, Hold, StoreError, Transition};
use crate::waiters::ShutdownFlag;

#[derive(Clone)]
pub struct TimeoutWorker {
    pub store: Arc<dyn GateStore>,
    pub decider: Decider,
}

/// The gate's outcome when a deadline passes, with the plugin's wording.
pub fn timeout_outcome(gate: &Gate, kind: Deadline) -> (bool, String) {
    let spec = &gate.spec;
    match kind {
        Deadline::Creation => {
            let secs = spec.change_creation_timeout_secs.unwrap_or_default();
            if spec.abort_on_change_creation_failure {
                (false, format!("Pipeline aborted due to change creation timeout ({secs}s without a change request)"))
            } else {
                (true, format!("No change request within {secs}s; the stage continues (abortOnChangeCreationFailure: false)"))
            }
        }
        Deadline::Step => {
            let secs = spec.change_step_timeout_secs.unwrap_or_default();
            if spec.abort_on_change_step_timeout {
                (
                    false,
                    format!(
                        "Pipeline aborted due to change step timeout ({secs}s without a decision)"
                    ),
                )
            } else {
                (true, format!("No change decision within {secs}s; the stage continues (abortOnChangeStepTimeOut: false)"))
            }
        }
    }
}

impl TimeoutWorker {
    pub async fn run(self, shutdown: ShutdownFlag) {
        loop {
            if shutdown.is_set() {
                break;
            }
            if let Err(e) = self.fire_due().await {
                tracing::error!(error = %e, "timers: cannot read deadlines");
            }
            if let Err(e) = self.release_holds().await {
                tracing::error!(error = %e, "timers: cannot release approvals held by freezes");
            }
            let next = self.store.next_deadline().await.unwrap_or(None);
            tokio::select! {
                _ = tokio::time::sleep(super::until(next, super::RECHECK)) => {}
                _ = self.decider.wakeups().timers.notified() => {}
                _ = shutdown.wait() => break,
            }
        }
        tracing::info!("timers stopped");
    }

    /// Decisions held by a freeze that has ended (or was deleted) are applied now (a change
    /// mode approval is read again first: `read_again`), unless another freeze covers the
    /// gate, which then carries the hold on until its own end.
    async fn release_holds(&self) -> Result<(), StoreError> {
        let now = chrono::Utc::now().timestamp_millis();
        let due = self.store.holds(now, 100).await?;
        for hold in due {
            let Some(gate) = self.store.gate(hold.gate_id).await? else {
                continue;
            };
            // Read the stored freezes now: one deleted at another replica must not extend the
            // hold from a stale copy.
            let freezes = self.decider.freezes();
            if let Some(f) = freezes.covering(&gate.spec, true).await? {
                let until_ms = f.end.timestamp_millis();
                self.store
                    .extend_hold(&crate::store::Hold {
                        freeze_id: f.id,
                        freeze_name: f.name,
                        until_ms,
                        ..hold
                    })
                    .await?;
                continue;
            }
            if hold.actor == Actor::ServiceNow && gate.spec.mode == GateMode::Change {
                if let Some(cr) = gate.change_request.clone() {
                    self.read_again(&gate, cr, &hold, now).await?;
                    continue;
                }
            }
            tracing::info!(gate_id = %gate.id, freeze = %hold.freeze_name, "a change freeze is over: the held decision is applied");
            self.decider
                .decide(Transition {
                    gate_id: gate.id,
                    to: hold.to,
                    proceed: hold.proceed,
                    message: format!(
                        "{} (held by change freeze `{}` until it was over)",
                        hold.message, hold.freeze_name
                    ),
                    actor: hold.actor.clone(),
                    event_kind: "freeze_released",
                    change_request: None,
                    outbox: Vec::new(),
                    timers: Timers::default(),
                })
                .await?;
            self.store.clear_hold(gate.id).await?;
        }
        Ok(())
    }

    /// A change-mode approval held by a freeze that is over is not applied as it was: the
    /// change request may have moved during the freeze (canceled, sent back, its window
    /// closed). The gate is polled at once instead, with its step timeout running again, and
    /// the CR as it is now decides.
    async fn read_again(
        &self,
        gate: &Gate,
        cr: ChangeRequest,
        hold: &Hold,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let number = cr
            .number
            .clone()
            .unwrap_or_else(|| "the change request".into());
        let message = format!(
            "change freeze `{}` is over: reading {number} again before the stage proceeds",
            hold.freeze_name
        );
        tracing::info!(gate_id = %gate.id, freeze = %hold.freeze_name, "a change freeze is over: the change request is read again");
        self.store
            .update_change_request(
                gate.id,
                CrUpdate {
                    cr,
                    actor: Actor::Snowgate,
                    message: Some(message.clone()),
                    event: Some(message),
                    change_known: true,
                    step_deadline_ms: on_change_known(&gate.spec, now_ms, false),
                    next_poll_ms: Some(now_ms),
                },
            )
            .await?;
        self.store.clear_hold(gate.id).await?;
        self.decider.wakeups().poller.notify_one();
        self.decider.wakeups().timers.notify_one();
        Ok(())
    }

    async fn fire_due(&self) -> Result<(), StoreError> {
        loop {
            let due = self.store.due_deadlines(100).await?;
            if due.is_empty() {
                return Ok(());
            }
            for (gate, kind) in due {
                let (proceed, message) = timeout_outcome(&gate, kind);
                if proceed {
                    tracing::info!(gate_id = %gate.id, %message, "gate timed out");
                } else {
                    tracing::warn!(gate_id = %gate.id, %message, "gate timed out");
                }
                self.decider
                    .decide(Transition {
                        gate_id: gate.id,
                        to: GateState::TimedOut,
                        proceed: Some(proceed),
                        message,
                        actor: Actor::Snowgate,
                        event_kind: match kind {
                            Deadline::Creation => "change_creation_timeout",
                            Deadline::Step => "change_step_timeout",
                        },
                        change_request: None,
                        outbox: Vec::new(),
                        timers: Timers::default(),
                    })
                    .await?;
            }
        }
    }
}
