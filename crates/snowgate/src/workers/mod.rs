//! Background work: the outbox (registrations and acknowledgements, retried from the store),
//! the change poller, the timeout timers, and the reconciliation after a start.
pub mod outbox;
pub mod poller;
pub mod reconcile;
pub mod replicas;
pub mod timers;

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::decisions::Decider;
use crate::metrics::Metrics;
use crate::servicenow::RateLimiter;
use crate::store::GateStore;
use crate::waiters::{ShutdownFlag, Waiters};
use outbox::Outbox;
use poller::Poller;
use reconcile::Reconciler;
use timers::TimeoutWorker;

/// What the background workers need; `startup` builds it.
pub struct Workers {
    pub outbox: Outbox,
    pub poller: Poller,
    pub timers: TimeoutWorker,
    pub reconciler: Reconciler,
    pub store: Arc<dyn GateStore>,
    pub waiters: Arc<Waiters>,
    pub decider: Decider,
    /// `servicenow.max_requests_per_second`, shared among the replicas alive.
    pub limiter: Arc<RateLimiter>,
    pub max_requests_per_second: u32,
    /// `store.lease_ttl`.
    pub lease_ttl: Duration,
    pub metrics: Arc<Metrics>,
}

/// Start every worker; they end when `shutdown` triggers.
pub async fn spawn_all(w: Workers, shutdown: ShutdownFlag) -> Vec<JoinHandle<()>> {
    let replica = format!(
        "{}-{}",
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let mut handles = vec![
        tokio::spawn(w.outbox.run(shutdown.clone())),
        tokio::spawn(w.poller.run(shutdown.clone())),
        tokio::spawn(w.timers.run(shutdown.clone())),
        tokio::spawn(reconcile_once_leased(
            w.reconciler,
            w.store.clone(),
            replica.clone(),
            w.lease_ttl,
            shutdown.clone(),
        )),
        tokio::spawn(replicas::share_rate_limit(
            w.store.clone(),
            replica,
            w.limiter,
            w.max_requests_per_second,
            w.lease_ttl,
            w.metrics,
            shutdown.clone(),
        )),
    ];
    if let Some(signals) = w.store.listen().await {
        handles.push(tokio::spawn(replicas::wake_from_other_replicas(
            w.store, w.waiters, w.decider, signals,
        )));
    }
    handles
}

/// With several replicas one of them reconciles; a store used by one process always grants
/// the lease.
async fn reconcile_once_leased(
    reconciler: Reconciler,
    store: Arc<dyn GateStore>,
    replica: String,
    ttl: Duration,
    shutdown: ShutdownFlag,
) {
    match store
        .try_lease("reconcile", &replica, ttl.max(Duration::from_secs(60)))
        .await
    {
        Ok(true) => {
            reconciler.run(shutdown).await;
        }
        Ok(false) => tracing::info!("another replica is reconciling with ServiceNow"),
        Err(e) => tracing::warn!(error = %e, "reconciliation skipped: store unavailable"),
    }
}

/// The longest a worker sleeps before it looks at the store again. Work armed by another
/// replica (a deadline, a poll time) is announced by notification too; this bounds the delay
/// when such a notification is missed.
pub(crate) const RECHECK: Duration = Duration::from_secs(5);

/// Time until an epoch-ms instant, capped, and at least a millisecond.
pub(crate) fn until(epoch_ms: Option<i64>, cap: Duration) -> Duration {
    match epoch_ms {
        Some(ms) => {
            let now = chrono::Utc::now().timestamp_millis();
            Duration::from_millis((ms - now).max(1) as u64).min(cap)
        }
        None => cap,
    }
}
