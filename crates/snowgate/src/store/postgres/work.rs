//! Background work in PostgreSQL: poll and deadline claims, the resumption scan, and the
//! outbox. Several replicas share the work, so a claim takes its rows with
//! `FOR [NO KEY] UPDATE SKIP LOCKED` and moves them on in the same statement. Every statement
//! here runs often, by every replica, and is prepared once per connection.
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use uuid::Uuid;

use super::rows::{gate_from_row, insert_event, now_ms, outbox_from_row, pg, prepared};
use super::PostgresStore;
use crate::domain::gate::{timestamp, Actor};
use crate::domain::timers::Deadline;
use crate::domain::Gate;
use crate::store::sql::{self, GATE_COLUMNS};
use crate::store::{OutboxItem, StoreError};

pub(super) async fn claim_polls(
    store: &PostgresStore,
    limit: u32,
    default_interval: Duration,
) -> Result<Vec<Gate>, StoreError> {
    let c = store.client().await?;
    let now = now_ms();
    // Claimed by moving the next poll ahead in the same statement: no other replica
    // polls the same gate in this interval.
    let claim = prepared(
        &c,
        &format!(
            "UPDATE gates SET next_poll_ms = $1 + COALESCE(poll_interval_ms, $2) \
             WHERE id IN (SELECT id FROM gates WHERE state = 'pending' AND next_poll_ms <= $1 \
                          ORDER BY next_poll_ms LIMIT $3 FOR NO KEY UPDATE SKIP LOCKED) \
             RETURNING {GATE_COLUMNS}"
        ),
    )
    .await?;
    let rows = c
        .query(
            &claim,
            &[
                &now,
                &(default_interval.as_millis() as i64),
                &(limit as i64),
            ],
        )
        .await
        .map_err(pg)?;
    rows.iter().map(gate_from_row).collect()
}

pub(super) async fn next_poll_due(store: &PostgresStore) -> Result<Option<i64>, StoreError> {
    let c = store.client().await?;
    let stmt = prepared(&c, sql::NEXT_POLL_DUE).await?;
    let row = c.query_one(&stmt, &[]).await.map_err(pg)?;
    Ok(row.get(0))
}

pub(super) async fn due_deadlines(
    store: &PostgresStore,
    limit: u32,
) -> Result<Vec<(Gate, Deadline)>, StoreError> {
    let c = store.client().await?;
    let now = now_ms();
    let mut out = Vec::new();
    for (statement, kind) in [
        (sql::DUE_CREATION_DEADLINES, Deadline::Creation),
        (sql::DUE_STEP_DEADLINES, Deadline::Step),
    ] {
        // Every replica may see a passed deadline; the decision's compare-and-set lets
        // exactly one of them apply it.
        let stmt = prepared(&c, statement).await?;
        let rows = c.query(&stmt, &[&now, &(limit as i64)]).await.map_err(pg)?;
        for r in &rows {
            out.push((gate_from_row(r)?, kind));
        }
    }
    Ok(out)
}

pub(super) async fn next_deadline(store: &PostgresStore) -> Result<Option<i64>, StoreError> {
    let c = store.client().await?;
    // LEAST skips NULLs; SQLite's two-argument MIN does not, and needs COALESCE there.
    let stmt = prepared(
        &c,
        "SELECT LEAST(MIN(creation_deadline_ms), MIN(step_deadline_ms)) FROM gates \
         WHERE state IN ('registering', 'pending')",
    )
    .await?;
    let row = c.query_one(&stmt, &[]).await.map_err(pg)?;
    Ok(row.get(0))
}

pub(super) async fn open_gates_after(
    store: &PostgresStore,
    after: Option<(i64, Uuid)>,
    limit: u32,
) -> Result<Vec<(i64, Gate)>, StoreError> {
    let c = store.client().await?;
    let (ms, id) = after
        .map(|(m, i)| (m, i.to_string()))
        .unwrap_or((i64::MIN, String::new()));
    let stmt = prepared(&c, sql::OPEN_GATES_AFTER).await?;
    let rows = c
        .query(&stmt, &[&ms, &id, &(limit as i64)])
        .await
        .map_err(pg)?;
    rows.iter()
        .map(|r| Ok((r.get::<_, i64>(14), gate_from_row(r)?)))
        .collect()
}

pub(super) async fn claim_outbox(
    store: &PostgresStore,
    limit: u32,
    lease: Duration,
) -> Result<Vec<OutboxItem>, StoreError> {
    let c = store.client().await?;
    let now = now_ms();
    let claim = prepared(
        &c,
        "UPDATE outbox SET claimed_until = $1 \
         WHERE id IN (SELECT id FROM outbox WHERE due_ms <= $2 AND claimed_until <= $2 \
                      ORDER BY due_ms LIMIT $3 FOR UPDATE SKIP LOCKED) \
         RETURNING id, gate_id, kind, payload, attempts, created_at",
    )
    .await?;
    let rows = c
        .query(
            &claim,
            &[&(now + lease.as_millis() as i64), &now, &(limit as i64)],
        )
        .await
        .map_err(pg)?;
    rows.iter().map(outbox_from_row).collect()
}

pub(super) async fn next_outbox_due(
    store: &PostgresStore,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let c = store.client().await?;
    // GREATEST is SQLite's two-argument MAX.
    let due = prepared(
        &c,
        "SELECT MIN(GREATEST(due_ms, claimed_until)) FROM outbox",
    )
    .await?;
    let row = c.query_one(&due, &[]).await.map_err(pg)?;
    let ms: Option<i64> = row.get(0);
    Ok(ms.and_then(|m| Utc.timestamp_millis_opt(m).single()))
}

pub(super) async fn acknowledge_late(
    store: &PostgresStore,
    id: Uuid,
    message: &str,
) -> Result<bool, StoreError> {
    let mut c = store.client().await?;
    let tx = c.transaction().await.map_err(pg)?;
    let id_s = id.to_string();
    // Under READ COMMITTED the insert's `NOT EXISTS` reads a snapshot from the statement's
    // start: an acknowledgement finishing meanwhile (its row deleted, its `acknowledge_done`
    // event written) would be missed, and a second acknowledgement queued. Locking the
    // queued row first waits for such a finish to commit; the insert, a new statement, then
    // sees its event.
    let wait = prepared(
        &tx,
        "SELECT 1 FROM outbox WHERE gate_id = $1 AND kind = 'acknowledge' FOR UPDATE",
    )
    .await?;
    tx.query(&wait, &[&id_s]).await.map_err(pg)?;
    let queue = prepared(&tx, sql::QUEUE_LATE_ACKNOWLEDGEMENT).await?;
    let added = tx
        .execute(&queue, &[&id_s, &now_ms(), &timestamp(&Utc::now())])
        .await
        .map_err(pg)?;
    if added > 0 {
        insert_event(
            &tx,
            &id_s,
            &Actor::ServiceNow,
            "late_callback",
            None,
            None,
            message,
        )
        .await?;
    }
    tx.commit().await.map_err(pg)?;
    Ok(added > 0)
}

pub(super) async fn outbox_backlog(store: &PostgresStore) -> Result<u64, StoreError> {
    let c = store.client().await?;
    let stmt = prepared(&c, sql::OUTBOX_BACKLOG).await?;
    let n: i64 = c.query_one(&stmt, &[]).await.map_err(pg)?.get(0);
    Ok(n as u64)
}
