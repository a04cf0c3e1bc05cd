//! Restart reconciliation: after a start, ask ServiceNow about every pending gate
//! (`GET …/orchestration/callback?taskExecutionURL=`) so decisions made while snowgate was down
//! are applied without a callback. Gates are read in pages and every request takes a slot of
//! the shared rate limit, so thousands of pending gates do not flood the instance.
use std::sync::Arc;

use serde_json::json;

use crate::decisions::{decision_message, Decider};
use crate::domain::gate::Actor;
use crate::domain::timers::Timers;
use crate::domain::{Gate, GateState};
use crate::servicenow::{DevOpsClient, RateLimiter, ServiceNowError};
use crate::store::{GateStore, NewOutbox, OutboxKind, StoreError, Transition};
use crate::waiters::ShutdownFlag;

const PAGE: u32 = 100;

#[derive(Clone)]
pub struct Reconciler {
    pub store: Arc<dyn GateStore>,
    pub decider: Decider,
    pub servicenow: DevOpsClient,
    pub limiter: Arc<RateLimiter>,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    pub checked: u64,
    pub decided: u64,
    pub errors: u64,
}

impl Reconciler {
    pub async fn run(self, shutdown: ShutdownFlag) -> ReconcileReport {
        let mut report = ReconcileReport::default();
        let mut after = None;
        loop {
            let page = match self.store.open_gates_after(after, PAGE).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "reconciliation stopped: store unavailable");
                    break;
                }
            };
            let Some((last_ms, last)) = page.last().map(|(m, g)| (*m, g.id)) else {
                break;
            };
            after = Some((last_ms, last));
            for (_, gate) in page {
                if gate.state != GateState::Pending {
                    continue;
                }
                tokio::select! {
                    _ = self.limiter.acquire() => {}
                    _ = shutdown.wait() => return report,
                }
                report.checked += 1;
                match self.reconcile(&gate).await {
                    Ok(true) => report.decided += 1,
                    Ok(false) => {}
                    Err(e) => {
                        report.errors += 1;
                        tracing::warn!(gate_id = %gate.id, error = %e, "reconciliation of a gate failed");
                    }
                }
            }
        }
        tracing::info!(
            checked = report.checked,
            decided = report.decided,
            errors = report.errors,
            "reconciliation with ServiceNow finished"
        );
        report
    }

    /// Returns whether the gate was decided.
    async fn reconcile(&self, gate: &Gate) -> Result<bool, ReconcileError> {
        let task_url = gate.spec.task_execution_url();
        let status = match self.servicenow.callback_status(&task_url).await {
            Ok(s) => s,
            Err(ServiceNowError::Status { status: 404, .. }) => return Ok(false),
            Err(e) => return Err(ReconcileError::ServiceNow(e)),
        };
        // A callback registered by someone else for the same task is not ours to apply.
        if status
            .token
            .as_deref()
            .is_some_and(|t| !gate.callback_token.matches(t))
        {
            return Ok(false);
        }
        let comments = status.comments.clone().unwrap_or_default();
        let to = match status.result.as_str() {
            "pending" | "" => return Ok(false),
            "succeeded" => GateState::Approved,
            "canceled" => GateState::Canceled,
            "failed" | "error" => GateState::Failed,
            _ => GateState::Rejected,
        };
        // The same outcome and wording as if the callback had arrived.
        let (proceed, message) = decision_message(to, &comments);
        let mut cr = gate.change_request.clone().unwrap_or_default();
        if !comments.is_empty() {
            cr.comments = Some(comments.clone());
        }
        self.decider
            .decide(Transition {
                gate_id: gate.id,
                to,
                proceed,
                message: format!("{message} (found while reconciling after a restart)"),
                actor: Actor::ServiceNow,
                event_kind: "reconciled",
                change_request: Some(cr),
                // ServiceNow's callback never reached us: acknowledge it now.
                outbox: vec![NewOutbox {
                    kind: OutboxKind::Acknowledge,
                    payload: json!({}),
                }],
                timers: Timers::default(),
            })
            .await?;
        Ok(true)
    }
}

#[derive(Debug, thiserror::Error)]
enum ReconcileError {
    #[error("{}", .0.describe())]
    ServiceNow(ServiceNowError),
    #[error(transparent)]
    Store(#[from] StoreError),
}
