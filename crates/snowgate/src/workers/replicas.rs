//! Work that only matters with several replicas on one store: sharing the ServiceNow rate
//! limit, and waking this replica's long-polls for decisions another replica committed.
use std::sync::Arc;
use std::time::Duration;

use crate::decisions::Decider;
use crate::metrics::{Metrics, ResultLabel};
use crate::servicenow::RateLimiter;
use crate::store::{GateStore, StoreSignal};
use crate::waiters::{ShutdownFlag, Waiters};

/// Replicas share `servicenow.max_requests_per_second`: each takes its share of the rate,
/// by how many replicas have been seen alive within the lease time.
pub(crate) async fn share_rate_limit(
    store: Arc<dyn GateStore>,
    replica: String,
    limiter: Arc<RateLimiter>,
    total: u32,
    ttl: Duration,
    metrics: Arc<Metrics>,
    shutdown: ShutdownFlag,
) {
    let every = (ttl / 3).max(Duration::from_millis(200));
    let mut last = 1;
    loop {
        let beat = store.heartbeat(&replica, ttl).await;
        let result = if beat.is_ok() { "ok" } else { "error" };
        metrics
            .liveness
            .heartbeats
            .get_or_create(&ResultLabel {
                result: result.into(),
            })
            .inc();
        if let Ok(live) = beat {
            metrics.liveness.replicas_alive.set(i64::from(live));
        }
        match beat {
            Ok(live) if live != last => {
                limiter.set_rate((total / live).max(1));
                tracing::info!(
                    replicas = live,
                    per_replica = (total / live).max(1),
                    "sharing the ServiceNow rate limit"
                );
                last = live;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait() => break,
        }
    }
}

/// Wake this replica's long-polls for decisions committed by others (PostgreSQL NOTIFY). After
/// a (re)connection every waited-on gate is checked again, so none hangs on a missed message.
pub(crate) async fn wake_from_other_replicas(
    store: Arc<dyn GateStore>,
    waiters: Arc<Waiters>,
    decider: Decider,
    mut signals: tokio::sync::mpsc::Receiver<StoreSignal>,
) {
    // Another replica's transition may have armed a poll, a deadline or outbox work that this
    // replica's workers take over if that replica dies. Waking them for every notification
    // made each of another replica's decisions cost three claim queries here as well (30,000
    // during a 10,000-decision burst); once per `TAKEOVER_WAKE_EVERY` is as prompt for a
    // takeover, and a notification inside the window is answered at its end.
    const TAKEOVER_WAKE_EVERY: Duration = Duration::from_millis(250);
    let wake = || {
        let w = decider.wakeups();
        w.timers.notify_one();
        w.poller.notify_one();
        w.outbox.notify_one();
    };
    use tokio::time::Instant;
    let mut last_wake: Option<Instant> = None;
    // When a wake held back by the window is due.
    let mut owed_at: Option<Instant> = None;
    loop {
        let received = match owed_at {
            Some(at) => tokio::time::timeout_at(at, signals.recv()).await.ok(),
            None => Some(signals.recv().await),
        };
        let Some(signal) = received else {
            // The window ended with a wake owed.
            wake();
            (last_wake, owed_at) = (Some(Instant::now()), None);
            continue;
        };
        let Some(signal) = signal else { break };
        match last_wake {
            Some(at) if at.elapsed() < TAKEOVER_WAKE_EVERY => {
                owed_at.get_or_insert(at + TAKEOVER_WAKE_EVERY);
            }
            _ => {
                wake();
                (last_wake, owed_at) = (Some(Instant::now()), None);
            }
        }
        // Every notification already queued is read with this one: a burst's decided gates
        // come back in one query rather than one each.
        let mut ids = Vec::new();
        let mut next = Some(signal);
        while let Some(signal) = next {
            match signal {
                StoreSignal::Decided(id) if waiters.is_waited(id) => ids.push(id),
                StoreSignal::Decided(_) => {}
                StoreSignal::Resync => ids.extend(waiters.waited_ids()),
            }
            next = signals.try_recv().ok();
        }
        ids.sort();
        ids.dedup();
        if ids.is_empty() {
            continue;
        }
        match store.gates(&ids).await {
            Ok(gates) => {
                for gate in gates.iter().filter(|g| g.state.is_terminal()) {
                    waiters.notify(gate);
                }
            }
            Err(e) => {
                tracing::warn!(gates = ids.len(), error = %e, "cannot read decided gates")
            }
        }
    }
}
