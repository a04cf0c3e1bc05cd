//! Every store call answers within `store.timeout`, whatever the database does. A frozen
//! PostgreSQL server (its processes stopped, its connections open) answers nothing, so neither
//! `statement_timeout` (enforced by the server) nor TCP notices it; the bound is kept here, on
//! the client, around each call. A call that runs out is `StoreError::Unavailable` (a 503 for
//! the API), and the workers retry it with their usual backoff once the database answers.
//!
//! A write cut off this way may still commit later; every write is safe to see twice (opening
//! is idempotent, decisions are compare-and-set, outbox rows are claimed with leases).
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    Completion, CrUpdate, Deadline, DecisionTimes, Event, FollowUps, GateStore, Hold, NewOutbox,
    Opened, OutboxItem, OutboxResult, StoreError, StoreSignal, TitleLock, Transition,
    TransitionOutcome,
};
use crate::domain::freeze::Freeze;
use crate::domain::gate::Actor;
use crate::domain::{CallbackToken, Gate, GateSpec, GateState};

pub struct Bounded {
    inner: Arc<dyn GateStore>,
    timeout: Duration,
}

impl Bounded {
    pub fn new(inner: Arc<dyn GateStore>, timeout: Duration) -> Bounded {
        Bounded { inner, timeout }
    }

    async fn within<T>(
        &self,
        what: &'static str,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::unavailable(format!(
                "the store did not answer `{what}` within {} ms (store.timeout)",
                self.timeout.as_millis()
            ))),
        }
    }
}

#[async_trait]
impl GateStore for Bounded {
    async fn open_gate(
        &self,
        spec: GateSpec,
        token: CallbackToken,
        claim: Duration,
    ) -> Result<Opened, StoreError> {
        self.within("open_gate", self.inner.open_gate(spec, token, claim))
            .await
    }
    async fn gate(&self, id: Uuid) -> Result<Option<Gate>, StoreError> {
        self.within("gate", self.inner.gate(id)).await
    }
    async fn gates(&self, ids: &[Uuid]) -> Result<Vec<Gate>, StoreError> {
        self.within("gates", self.inner.gates(ids)).await
    }
    async fn gate_by_token(&self, raw_token: &str) -> Result<Option<Gate>, StoreError> {
        self.within("gate_by_token", self.inner.gate_by_token(raw_token))
            .await
    }
    async fn list_gates(
        &self,
        state: Option<GateState>,
        limit: u32,
    ) -> Result<Vec<Gate>, StoreError> {
        self.within("list_gates", self.inner.list_gates(state, limit))
            .await
    }
    async fn open_gates(&self, limit: u32) -> Result<Vec<Gate>, StoreError> {
        self.within("open_gates", self.inner.open_gates(limit))
            .await
    }
    async fn recent_decisions(&self, limit: u32) -> Result<Vec<Gate>, StoreError> {
        self.within("recent_decisions", self.inner.recent_decisions(limit))
            .await
    }
    async fn decision_times(
        &self,
        since: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<DecisionTimes>, StoreError> {
        self.within("decision_times", self.inner.decision_times(since, limit))
            .await
    }
    async fn gates_of_build(
        &self,
        build_number: &str,
        limit: u32,
    ) -> Result<Vec<Gate>, StoreError> {
        self.within(
            "gates_of_build",
            self.inner.gates_of_build(build_number, limit),
        )
        .await
    }
    async fn open_gates_of_stage(
        &self,
        job_url: &str,
        stage_name: &str,
        limit: u32,
    ) -> Result<Vec<Gate>, StoreError> {
        self.within(
            "open_gates_of_stage",
            self.inner.open_gates_of_stage(job_url, stage_name, limit),
        )
        .await
    }
    async fn events(&self, id: Uuid) -> Result<Vec<Event>, StoreError> {
        self.within("events", self.inner.events(id)).await
    }
    async fn transition(
        &self,
        t: Transition,
        follow_ups: FollowUps,
    ) -> Result<TransitionOutcome, StoreError> {
        self.within("transition", self.inner.transition(t, follow_ups))
            .await
    }
    async fn update_change_request(
        &self,
        id: Uuid,
        u: CrUpdate,
    ) -> Result<Option<Gate>, StoreError> {
        self.within(
            "update_change_request",
            self.inner.update_change_request(id, u),
        )
        .await
    }
    async fn claim_polls(
        &self,
        limit: u32,
        default_interval: Duration,
    ) -> Result<Vec<Gate>, StoreError> {
        self.within(
            "claim_polls",
            self.inner.claim_polls(limit, default_interval),
        )
        .await
    }
    async fn next_poll_due(&self) -> Result<Option<i64>, StoreError> {
        self.within("next_poll_due", self.inner.next_poll_due())
            .await
    }
    async fn due_deadlines(&self, limit: u32) -> Result<Vec<(Gate, Deadline)>, StoreError> {
        self.within("due_deadlines", self.inner.due_deadlines(limit))
            .await
    }
    async fn next_deadline(&self) -> Result<Option<i64>, StoreError> {
        self.within("next_deadline", self.inner.next_deadline())
            .await
    }
    async fn open_gates_after(
        &self,
        after: Option<(i64, Uuid)>,
        limit: u32,
    ) -> Result<Vec<(i64, Gate)>, StoreError> {
        self.within(
            "open_gates_after",
            self.inner.open_gates_after(after, limit),
        )
        .await
    }
    async fn claim_outbox(
        &self,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        self.within("claim_outbox", self.inner.claim_outbox(limit, lease))
            .await
    }
    async fn finish_outbox(
        &self,
        item: &OutboxItem,
        result: OutboxResult,
    ) -> Result<(), StoreError> {
        self.within("finish_outbox", self.inner.finish_outbox(item, result))
            .await
    }
    async fn next_outbox_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.within("next_outbox_due", self.inner.next_outbox_due())
            .await
    }
    async fn complete_gate(
        &self,
        id: Uuid,
        result: String,
        actor: Actor,
        outbox: Vec<NewOutbox>,
    ) -> Result<Completion, StoreError> {
        self.within(
            "complete_gate",
            self.inner.complete_gate(id, result, actor, outbox),
        )
        .await
    }
    async fn acknowledge_late(&self, id: Uuid, message: String) -> Result<bool, StoreError> {
        self.within("acknowledge_late", self.inner.acknowledge_late(id, message))
            .await
    }
    async fn outbox_backlog(&self) -> Result<u64, StoreError> {
        self.within("outbox_backlog", self.inner.outbox_backlog())
            .await
    }
    async fn count_by_state(&self) -> Result<Vec<(GateState, u64)>, StoreError> {
        self.within("count_by_state", self.inner.count_by_state())
            .await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.within("ping", self.inner.ping()).await
    }
    async fn listen(&self) -> Option<tokio::sync::mpsc::Receiver<StoreSignal>> {
        self.inner.listen().await
    }
    async fn add_freeze(&self, freeze: &Freeze) -> Result<(), StoreError> {
        self.within("add_freeze", self.inner.add_freeze(freeze))
            .await
    }
    async fn freezes(&self, now_ms: i64) -> Result<Vec<Freeze>, StoreError> {
        self.within("freezes", self.inner.freezes(now_ms)).await
    }
    async fn delete_freeze(&self, id: &str) -> Result<bool, StoreError> {
        self.within("delete_freeze", self.inner.delete_freeze(id))
            .await
    }
    async fn hold_approval(
        &self,
        hold: Hold,
        message: String,
        outbox: Vec<NewOutbox>,
    ) -> Result<TransitionOutcome, StoreError> {
        self.within(
            "hold_approval",
            self.inner.hold_approval(hold, message, outbox),
        )
        .await
    }
    async fn holds(&self, before_ms: i64, limit: u32) -> Result<Vec<Hold>, StoreError> {
        self.within("holds", self.inner.holds(before_ms, limit))
            .await
    }
    async fn extend_hold(&self, hold: &Hold) -> Result<(), StoreError> {
        self.within("extend_hold", self.inner.extend_hold(hold))
            .await
    }
    async fn clear_hold(&self, gate_id: Uuid) -> Result<(), StoreError> {
        self.within("clear_hold", self.inner.clear_hold(gate_id))
            .await
    }
    async fn queue_evidence(
        &self,
        gate_id: Uuid,
        sha256: &str,
        name: &str,
        item: NewOutbox,
        message: &str,
    ) -> Result<super::EvidenceQueued, StoreError> {
        self.within(
            "queue_evidence",
            self.inner
                .queue_evidence(gate_id, sha256, name, item, message),
        )
        .await
    }
    async fn lock_title(&self, title: &str) -> Result<TitleLock, StoreError> {
        // Waiting for another gate's search-or-create is bounded too: a link attempt that
        // runs out is retried by the outbox.
        self.within("lock_title", self.inner.lock_title(title))
            .await
    }
    async fn try_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        self.within("try_lease", self.inner.try_lease(name, holder, ttl))
            .await
    }
    async fn heartbeat(&self, replica: &str, ttl: Duration) -> Result<u32, StoreError> {
        self.within("heartbeat", self.inner.heartbeat(replica, ttl))
            .await
    }
}
