//! Per-gate wake-ups for long-polls. A waiter subscribes *before* it reads the gate, and every
//! decision notifies *after* its commit, so no decision can slip between the read and the wait.
//! Entries exist only while someone waits; a notification carries the decided gate, so waking
//! thousands of long-polls costs no store reads.
//!
//! A slot is kept small (a lock, an `Arc` and a `Notify`, under 100 bytes) because 10,000 gates
//! may be waited on at once.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{watch, Notify};
use uuid::Uuid;

use crate::domain::Gate;

#[derive(Default)]
struct Slot {
    decided: Mutex<Option<Decided>>,
    notify: Notify,
}

/// A decision as a waiter sees it.
#[derive(Clone)]
pub struct Decided {
    pub gate: Arc<Gate>,
    /// When the request that made the decision arrived, if it came by HTTP.
    pub received: Option<Instant>,
}

#[derive(Default)]
pub struct Waiters {
    slots: Mutex<HashMap<Uuid, Arc<Slot>>>,
    shutdown: ShutdownFlag,
}

/// Set once when the process begins to stop: open long-polls answer with the current gate.
#[derive(Clone)]
pub struct ShutdownFlag {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for ShutdownFlag {
    fn default() -> Self {
        ShutdownFlag {
            tx: Arc::new(watch::channel(false).0),
        }
    }
}

impl ShutdownFlag {
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }
    pub fn is_set(&self) -> bool {
        *self.tx.borrow()
    }
    /// Resolves once the flag is set.
    pub async fn wait(&self) {
        let mut rx = self.tx.subscribe();
        let _ = rx.wait_for(|v| *v).await;
    }
}

/// A subscription to one gate's decision; unsubscribes when dropped.
pub struct Subscription {
    id: Uuid,
    slot: Arc<Slot>,
    waiters: Arc<Waiters>,
}

impl Subscription {
    /// The decided gate, once a decision for this gate is committed.
    pub async fn decided(&mut self) -> Option<Decided> {
        loop {
            // Register for the wake-up before looking, so a notify in between is not missed.
            let notified = self.slot.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(g) = self.slot.decided.lock().ok()?.clone() {
                return Some(g);
            }
            notified.await;
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Ok(mut slots) = self.waiters.slots.lock() {
            // Counts change only under this lock: the map's reference and ours mean no one
            // else waits on this gate.
            if slots
                .get(&self.id)
                .is_some_and(|s| Arc::ptr_eq(s, &self.slot) && Arc::strong_count(s) == 2)
            {
                slots.remove(&self.id);
            }
        }
    }
}

impl Waiters {
    pub fn new() -> Arc<Waiters> {
        Arc::new(Waiters::default())
    }

    pub fn subscribe(self: &Arc<Self>, id: Uuid) -> Subscription {
        let mut slots = self.slots.lock().expect("waiters lock");
        let slot = slots.entry(id).or_default().clone();
        Subscription {
            id,
            slot,
            waiters: self.clone(),
        }
    }

    /// Wake everyone waiting on this gate (call after the commit).
    pub fn notify(&self, gate: &Gate) {
        self.notify_received(gate, None)
    }

    /// As `notify`, for a decision whose request arrived at `received`.
    pub fn notify_received(&self, gate: &Gate, received: Option<Instant>) {
        let slots = self.slots.lock().expect("waiters lock");
        if let Some(slot) = slots.get(&gate.id) {
            if let Ok(mut decided) = slot.decided.lock() {
                *decided = Some(Decided {
                    gate: Arc::new(gate.clone()),
                    received,
                });
            }
            slot.notify.notify_waiters();
        }
    }

    pub fn is_waited(&self, id: Uuid) -> bool {
        self.slots
            .lock()
            .map(|s| s.contains_key(&id))
            .unwrap_or(false)
    }

    pub fn waited_ids(&self) -> Vec<Uuid> {
        self.slots
            .lock()
            .map(|s| s.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Gates with at least one open long-poll.
    pub fn waiting_gates(&self) -> usize {
        self.slots.lock().map(|s| s.len()).unwrap_or(0)
    }

    pub fn shutdown(&self) -> &ShutdownFlag {
        &self.shutdown
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::GateState;

    fn decided_gate(id: Uuid) -> Gate {
        let spec = crate::domain::request::GateSpec::parse(&serde_json::json!({
            "jobUrl": "https://ci.example.com/job/app/", "buildNumber": 1, "stageName": "Deploy"
        }))
        .unwrap();
        let now = chrono::Utc::now();
        Gate {
            id,
            state: GateState::Approved,
            proceed: Some(true),
            message: String::new(),
            spec,
            callback_token: crate::domain::names::CallbackToken::generate(),
            change_request: None,
            created_at: now,
            updated_at: now,
            decided_at: Some(now),
            decided_by: None,
            timers: Default::default(),
        }
    }

    #[tokio::test]
    async fn a_decision_wakes_every_waiter_of_its_gate_only() {
        let waiters = Waiters::new();
        let (id, other) = (Uuid::new_v4(), Uuid::new_v4());
        let mut a = waiters.subscribe(id);
        let mut b = waiters.subscribe(id);
        let mut c = waiters.subscribe(other);
        let wait_a = tokio::spawn(async move { a.decided().await.map(|d| d.gate.state) });
        let wait_b = tokio::spawn(async move { b.decided().await.map(|d| d.gate.state) });
        tokio::task::yield_now().await;
        waiters.notify(&decided_gate(id));
        assert_eq!(wait_a.await.unwrap(), Some(GateState::Approved));
        assert_eq!(wait_b.await.unwrap(), Some(GateState::Approved));
        let pending = tokio::time::timeout(std::time::Duration::from_millis(50), c.decided()).await;
        assert!(pending.is_err(), "another gate's decision woke this waiter");
    }

    #[tokio::test]
    async fn a_decision_before_the_wait_is_not_missed() {
        let waiters = Waiters::new();
        let id = Uuid::new_v4();
        let mut sub = waiters.subscribe(id);
        waiters.notify(&decided_gate(id));
        let d = sub.decided().await.expect("decided");
        assert_eq!(d.gate.id, id);
        assert!(d.received.is_none());
    }

    #[test]
    fn a_slot_lives_while_someone_waits() {
        let waiters = Waiters::new();
        let id = Uuid::new_v4();
        let a = waiters.subscribe(id);
        let b = waiters.subscribe(id);
        assert_eq!(waiters.waiting_gates(), 1);
        drop(a);
        assert!(waiters.is_waited(id), "the second waiter still waits");
        drop(b);
        assert!(!waiters.is_waited(id));
        assert_eq!(waiters.waiting_gates(), 0);
        // A notification for a gate no one waits on is dropped.
        waiters.notify(&decided_gate(id));
        assert_eq!(waiters.waiting_gates(), 0);
    }
}
