//! The timeouts of a gate: `changeCreationTimeoutSecs` (no change request in time) and
//! `changeStepTimeoutSecs` (no decision in time), each with its abort flag. Deadlines are
//! stored with the gates; this worker sleeps until the earliest one.
use std::sync::Arc;

use crate::decisions::Decider;
use crate::domain::gate::Actor;
use crate::domain::timers::{Deadline, Timers};
use crate::domain::{Gate, GateState};
use crate::store::{GateStore, StoreError, Transition};
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
            let next = self.store.next_deadline().await.unwrap_or(None);
            tokio::select! {
                _ = tokio::time::sleep(super::until(next, super::RECHECK)) => {}
                _ = self.decider.wakeups().timers.notified() => {}
                _ = shutdown.wait() => break,
            }
        }
        tracing::info!("timers stopped");
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
