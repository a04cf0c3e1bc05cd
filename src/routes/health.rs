//! `/healthz` (the process is up) and `/readyz` (the store answers).
use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::startup::AppState;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    match state.store.ping().await {
        Ok(()) => HttpResponse::Ok().json(json!({"status": "ready", "store": "ok"})),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            HttpResponse::ServiceUnavailable()
                .json(json!({"status": "not_ready", "store": "unreachable"}))
        }
    }
}

/// `GET /metrics`: Prometheus text format. Gauges mirroring the store are refreshed here.
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
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(m.encode())
}
