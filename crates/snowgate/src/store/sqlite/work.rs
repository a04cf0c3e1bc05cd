//! Background work in SQLite: poll and deadline claims, the resumption scan, and the outbox.
//! One process owns a SQLite store, so a claim is a plain SELECT and UPDATE in the writer's
//! transaction (PostgreSQL claims with `FOR UPDATE SKIP LOCKED` in one statement).
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{params, Connection};
use uuid::Uuid;

use super::rows::{gate_from_row, insert_event, now_ms, outbox_from_row};
use crate::domain::gate::{timestamp, Actor};
use crate::domain::timers::Deadline;
use crate::domain::Gate;
use crate::store::sql::{self, GATE_COLUMNS};
use crate::store::{OutboxItem, OutboxResult, StoreError};

pub(super) fn claim_polls(
    conn: &Connection,
    limit: u32,
    default_interval: Duration,
) -> Result<Vec<Gate>, StoreError> {
    let now = now_ms();
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {GATE_COLUMNS} FROM gates WHERE state = 'pending' AND next_poll_ms <= ?1 \
         ORDER BY next_poll_ms LIMIT ?2"
    ))?;
    let gates = stmt
        .query_map(params![now, limit], gate_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    for g in &gates {
        conn.execute(
            "UPDATE gates SET next_poll_ms = ?1 + COALESCE(poll_interval_ms, ?2) WHERE id = ?3",
            params![now, default_interval.as_millis() as i64, g.id.to_string()],
        )?;
    }
    Ok(gates)
}

pub(super) fn next_poll_due(conn: &Connection) -> Result<Option<i64>, StoreError> {
    Ok(conn.query_row(sql::NEXT_POLL_DUE, [], |r| r.get(0))?)
}

pub(super) fn due_deadlines(
    conn: &Connection,
    limit: u32,
) -> Result<Vec<(Gate, Deadline)>, StoreError> {
    let now = now_ms();
    let mut out = Vec::new();
    for (statement, kind) in [
        (sql::DUE_CREATION_DEADLINES, Deadline::Creation),
        (sql::DUE_STEP_DEADLINES, Deadline::Step),
    ] {
        let mut stmt = conn.prepare_cached(&sql::sqlite(statement))?;
        let rows = stmt.query_map(params![now, limit], gate_from_row)?;
        for row in rows {
            out.push((row??, kind));
        }
    }
    Ok(out)
}

pub(super) fn next_deadline(conn: &Connection) -> Result<Option<i64>, StoreError> {
    // SQLite's two-argument MIN is PostgreSQL's LEAST; an absent deadline counts as the
    // largest value here, where LEAST skips NULLs by itself.
    Ok(conn.query_row(
        "SELECT MIN(MIN(COALESCE(creation_deadline_ms, 9223372036854775807), \
         COALESCE(step_deadline_ms, 9223372036854775807))) FROM gates \
         WHERE state IN ('registering', 'pending') \
         AND (creation_deadline_ms IS NOT NULL OR step_deadline_ms IS NOT NULL)",
        [],
        |r| r.get(0),
    )?)
}

pub(super) fn open_gates_after(
    conn: &Connection,
    after: Option<(i64, Uuid)>,
    limit: u32,
) -> Result<Vec<(i64, Gate)>, StoreError> {
    let (ms, id) = after
        .map(|(m, i)| (m, i.to_string()))
        .unwrap_or((i64::MIN, String::new()));
    let mut stmt = conn.prepare_cached(&sql::sqlite(sql::OPEN_GATES_AFTER))?;
    let rows = stmt.query_map(params![ms, id, limit], |r| {
        let created: i64 = r.get(14)?;
        Ok(gate_from_row(r)?.map(|g| (created, g)))
    })?;
    let mut out = Vec::new();
    for row in rows {
        out.push(row??);
    }
    Ok(out)
}

pub(super) fn claim_outbox(
    conn: &Connection,
    limit: u32,
    lease: Duration,
) -> Result<Vec<OutboxItem>, StoreError> {
    let now = now_ms();
    let mut stmt = conn.prepare_cached(
        "SELECT id, gate_id, kind, payload, attempts, created_at FROM outbox \
         WHERE due_ms <= ?1 AND claimed_until <= ?1 ORDER BY due_ms LIMIT ?2",
    )?;
    let items = stmt
        .query_map(params![now, limit], outbox_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    let until = now + lease.as_millis() as i64;
    for item in &items {
        conn.execute(
            "UPDATE outbox SET claimed_until = ?1 WHERE id = ?2",
            params![until, item.id],
        )?;
    }
    Ok(items)
}

pub(super) fn finish_outbox(
    conn: &Connection,
    item: &OutboxItem,
    result: &OutboxResult,
) -> Result<(), StoreError> {
    let gate_id = item.gate_id.to_string();
    let kind = item.kind.as_str();
    let (event, message) = match result {
        OutboxResult::Done { message } => {
            conn.execute(&sql::sqlite(sql::DELETE_OUTBOX), params![item.id])?;
            (format!("{kind}_done"), message.clone())
        }
        OutboxResult::Retry { after, error } => {
            conn.execute(
                &sql::sqlite(sql::RETRY_OUTBOX),
                params![now_ms() + after.as_millis() as i64, error, item.id],
            )?;
            (
                format!("{kind}_retry"),
                crate::store::retry_message(item, *after, error),
            )
        }
        OutboxResult::GiveUp { error } => {
            conn.execute(&sql::sqlite(sql::DELETE_OUTBOX), params![item.id])?;
            (format!("{kind}_failed"), error.clone())
        }
    };
    insert_event(
        conn,
        &gate_id,
        &Actor::Snowgate,
        &event,
        None,
        None,
        &message,
    )
}

pub(super) fn next_outbox_due(conn: &Connection) -> Result<Option<DateTime<Utc>>, StoreError> {
    // SQLite's two-argument MAX is PostgreSQL's GREATEST.
    let ms: Option<i64> = conn.query_row(
        "SELECT MIN(MAX(due_ms, claimed_until)) FROM outbox",
        [],
        |r| r.get(0),
    )?;
    Ok(ms.and_then(|m| Utc.timestamp_millis_opt(m).single()))
}

pub(super) fn acknowledge_late(
    conn: &Connection,
    id: Uuid,
    message: &str,
) -> Result<bool, StoreError> {
    let id_s = id.to_string();
    let added = conn.execute(
        &sql::sqlite(sql::QUEUE_LATE_ACKNOWLEDGEMENT),
        params![id_s, now_ms(), timestamp(&Utc::now())],
    )?;
    if added > 0 {
        insert_event(
            conn,
            &id_s,
            &Actor::ServiceNow,
            "late_callback",
            None,
            None,
            message,
        )?;
    }
    Ok(added > 0)
}

pub(super) fn outbox_backlog(conn: &Connection) -> Result<u64, StoreError> {
    let n: i64 = conn.query_row(sql::OUTBOX_BACKLOG, [], |r| r.get(0))?;
    Ok(n as u64)
}
