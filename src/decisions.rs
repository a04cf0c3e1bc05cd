//! The one path every state change takes (STYLE habit 12): compare-and-set, event row and
//! outbox rows in one transaction, then the wake-ups after the commit.
use std::sync::Arc;

use tokio::sync::Notify;

use crate::store::{GateStore, StoreError, Transition, TransitionOutcome};
use crate::waiters::Waiters;

#[derive(Clone)]
pub struct Decider {
    store: Arc<dyn GateStore>,
    waiters: Arc<Waiters>,
    outbox_wakeup: Arc<Notify>,
}

impl Decider {
    pub fn new(
        store: Arc<dyn GateStore>,
        waiters: Arc<Waiters>,
        outbox_wakeup: Arc<Notify>,
    ) -> Self {
        Decider {
            store,
            waiters,
            outbox_wakeup,
        }
    }

    #[tracing::instrument(skip_all, fields(gate_id = %t.gate_id, to = %t.to, actor = %t.actor))]
    pub async fn decide(&self, t: Transition) -> Result<TransitionOutcome, StoreError> {
        let has_outbox = !t.outbox.is_empty();
        let outcome = self.store.transition(t).await?;
        if let TransitionOutcome::Applied(gate) = &outcome {
            tracing::info!(
                state = %gate.state,
                proceed = ?gate.proceed,
                message = %gate.message,
                "gate {} is now {}",
                gate.id,
                gate.state
            );
            self.waiters.notify(gate);
            if has_outbox {
                self.outbox_wakeup.notify_one();
            }
        }
        Ok(outcome)
    }
}
