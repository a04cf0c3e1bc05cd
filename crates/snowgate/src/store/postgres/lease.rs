//! Leases and replica heartbeats, which only PostgreSQL has: they share work among replicas,
//! and a SQLite store belongs to one process. Both upsert with `ON CONFLICT … DO UPDATE`.
use std::time::Duration;

use super::rows::{now_ms, pg};
use super::PostgresStore;
use crate::store::StoreError;

pub(super) async fn try_lease(
    store: &PostgresStore,
    name: &str,
    holder: &str,
    ttl: Duration,
) -> Result<bool, StoreError> {
    let c = store.client().await?;
    let now = now_ms();
    let n = c
        .execute(
            "INSERT INTO leases (name, holder, until_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = $2, until_ms = $3 \
             WHERE leases.until_ms <= $4 OR leases.holder = $2",
            &[&name, &holder, &(now + ttl.as_millis() as i64), &now],
        )
        .await
        .map_err(pg)?;
    Ok(n == 1)
}

pub(super) async fn heartbeat(
    store: &PostgresStore,
    replica: &str,
    ttl: Duration,
) -> Result<u32, StoreError> {
    let c = store.client().await?;
    let now = now_ms();
    c.execute(
        "INSERT INTO replicas (id, seen_ms) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET seen_ms = $2",
        &[&replica, &now],
    )
    .await
    .map_err(pg)?;
    let n: i64 = c
        .query_one(
            "SELECT COUNT(*) FROM replicas WHERE seen_ms > $1",
            &[&(now - ttl.as_millis() as i64)],
        )
        .await
        .map_err(pg)?
        .get(0);
    Ok(n.max(1) as u32)
}
