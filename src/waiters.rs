//! Per-gate wake-ups for long-polls. A waiter subscribes *before* it reads the gate, and every
//! decision notifies *after* its commit, so no decision can slip between the read and the wait.
//! Entries exist only while someone waits; a notification carries the decided gate, so waking
//! thousands of long-polls costs no store reads.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use uuid::Uuid;

use crate::domain::Gate;

type Slot = watch::Sender<Option<Arc<Gate>>>;

#[derive(Default)]
pub struct Waiters {
    slots: Mutex<HashMap<Uuid, Slot>>,
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
    rx: Option<watch::Receiver<Option<Arc<Gate>>>>,
    waiters: Arc<Waiters>,
}

impl Subscription {
    /// The decided gate, once a decision for this gate is committed.
    pub async fn decided(&mut self) -> Option<Arc<Gate>> {
        let rx = self.rx.as_mut()?;
        loop {
            if let Some(g) = rx.borrow_and_update().clone() {
                return Some(g);
            }
            rx.changed().await.ok()?;
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        drop(self.rx.take());
        if let Ok(mut slots) = self.waiters.slots.lock() {
            if slots.get(&self.id).is_some_and(|s| s.receiver_count() == 0) {
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
        let rx = slots
            .entry(id)
            .or_insert_with(|| watch::channel(None).0)
            .subscribe();
        Subscription {
            id,
            rx: Some(rx),
            waiters: self.clone(),
        }
    }

    /// Wake everyone waiting on this gate (call after the commit).
    pub fn notify(&self, gate: &Gate) {
        let slots = self.slots.lock().expect("waiters lock");
        if let Some(slot) = slots.get(&gate.id) {
            slot.send_replace(Some(Arc::new(gate.clone())));
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
