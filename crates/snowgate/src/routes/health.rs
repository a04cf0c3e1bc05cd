//! `/healthz` (the process is up) and `/readyz` (the store answers).
use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::state::AppState;

#[utoipa::path(get, path = "/healthz", operation_id = "healthz", tag = "operations",
    responses((status = 200, description = "The process is up", body = crate::openapi::Health)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

#[utoipa::path(get, path = "/readyz", operation_id = "readyz", tag = "operations",
    responses(
        (status = 200, description = "The store answers", body = crate::openapi::Readiness),
        (status = 503, description = "The store does not answer", body = crate::openapi::Readiness),
    ))]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    // A probe must answer even when the store does not: within READY_WITHIN, whatever
    // `store.timeout` says (Kubernetes' default probe timeout is 1 s, its period 10 s).
    let ping = tokio::time::timeout(READY_WITHIN, state.store.ping()).await;
    match ping {
        Ok(Ok(())) => HttpResponse::Ok().json(json!({"status": "ready", "store": "ok"})),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness check failed");
            HttpResponse::ServiceUnavailable()
                .json(json!({"status": "not_ready", "store": "unreachable"}))
        }
        Err(_) => {
            tracing::warn!(
                within_ms = READY_WITHIN.as_millis() as u64,
                "readiness check failed: the store did not answer"
            );
            HttpResponse::ServiceUnavailable()
                .json(json!({"status": "not_ready", "store": "not_answering"}))
        }
    }
}

/// How long `/readyz` waits for the store's ping.
const READY_WITHIN: std::time::Duration = std::time::Duration::from_millis(1500);

/// `GET /metrics`: Prometheus text format. Gauges mirroring the store are refreshed here.
#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format 0.0.4", body = String,
        content_type = "text/plain")))]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let m = &state.metrics;
    match state.store.count_by_state().await {
        Ok(counts) => {
            for s in crate::domain::gate::ALL_STATES {
                let n = counts
                    .iter()
                    .find(|(st, _)| *st == s)
                    .map_or(0, |(_, n)| *n);
                m.gates
                    .get_or_create(&crate::metrics::StateLabel {
                        state: s.as_str().to_string(),
                    })
                    .set(n as i64);
            }
        }
        Err(e) => tracing::warn!(error = %e, "metrics: cannot count gates"),
    }
    if let Ok(n) = state.store.outbox_backlog().await {
        m.outbox_backlog.set(n as i64);
    }
    m.open_long_polls.set(state.waiters.waiting_gates() as i64);
    // The oldest open gate: `open_gates` lists them oldest first.
    match state.store.open_gates(1).await {
        Ok(open) => {
            let age = open.first().map_or(0, |g| {
                (chrono::Utc::now() - g.created_at).num_seconds().max(0)
            });
            m.liveness.oldest_open_gate.set(age);
        }
        Err(e) => tracing::warn!(error = %e, "metrics: cannot read the oldest open gate"),
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(m.encode())
}
