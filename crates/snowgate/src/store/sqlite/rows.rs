//! Rows to domain values, and the writes every SQLite operation shares (events, outbox items).
use chrono::Utc;
use rusqlite::{params, Connection, OptionalExtension, Row};
use uuid::Uuid;

use crate::domain::gate::{timestamp, Actor};
use crate::domain::timers::Timers;
use crate::domain::{CallbackToken, ChangeRequest, Gate, GateSpec, GateState};
use crate::store::{parse_time, sql};
use crate::store::{Event, NewOutbox, OutboxItem, OutboxKind, StoreError};

pub(super) fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

pub(super) fn gate_from_row(row: &Row<'_>) -> rusqlite::Result<Result<Gate, StoreError>> {
    let id: String = row.get(0)?;
    let state: String = row.get(1)?;
    let proceed: Option<bool> = row.get(2)?;
    let message: String = row.get(3)?;
    let spec: String = row.get(4)?;
    let token: String = row.get(5)?;
    let cr: Option<String> = row.get(6)?;
    let created_at: String = row.get(7)?;
    let updated_at: String = row.get(8)?;
    let decided_at: Option<String> = row.get(9)?;
    let decided_by: Option<String> = row.get(10)?;
    let timers = Timers {
        next_poll_ms: row.get(11)?,
        creation_deadline_ms: row.get(12)?,
        step_deadline_ms: row.get(13)?,
    };
    Ok((|| {
        Ok(Gate {
            id: Uuid::parse_str(&id).map_err(StoreError::corrupt_from)?,
            state: GateState::parse(&state)
                .ok_or_else(|| StoreError::corrupt(format!("unknown state `{state}`")))?,
            proceed,
            message,
            spec: serde_json::from_str::<GateSpec>(&spec)
                .map_err(|e| StoreError::corrupt_by("gate spec", e))?,
            callback_token: CallbackToken::from_stored(token),
            change_request: match cr {
                Some(c) => Some(
                    serde_json::from_str::<ChangeRequest>(&c)
                        .map_err(|e| StoreError::corrupt_by("change request", e))?,
                ),
                None => None,
            },
            created_at: parse_time(&created_at)?,
            updated_at: parse_time(&updated_at)?,
            decided_at: decided_at.as_deref().map(parse_time).transpose()?,
            decided_by,
            timers,
        })
    })())
}

pub(super) fn outbox_from_row(row: &Row<'_>) -> rusqlite::Result<Result<OutboxItem, StoreError>> {
    let id: i64 = row.get(0)?;
    let gate_id: String = row.get(1)?;
    let kind: String = row.get(2)?;
    let payload: String = row.get(3)?;
    let attempts: i64 = row.get(4)?;
    let created_at: String = row.get(5)?;
    Ok((|| {
        Ok(OutboxItem {
            id,
            gate_id: Uuid::parse_str(&gate_id).map_err(StoreError::corrupt_from)?,
            kind: OutboxKind::parse(&kind)
                .ok_or_else(|| StoreError::corrupt(format!("outbox kind `{kind}`")))?,
            payload: serde_json::from_str(&payload)
                .map_err(|e| StoreError::corrupt_by("outbox payload", e))?,
            attempts: attempts as u32,
            created_at: parse_time(&created_at)?,
        })
    })())
}

pub(super) fn event_from_row(r: &Row<'_>) -> rusqlite::Result<Event> {
    let from: Option<String> = r.get(4)?;
    let to: Option<String> = r.get(5)?;
    Ok(Event {
        id: r.get(0)?,
        at: r.get(1)?,
        actor: r.get(2)?,
        kind: r.get(3)?,
        from_state: from.as_deref().and_then(GateState::parse),
        to_state: to.as_deref().and_then(GateState::parse),
        message: r.get(6)?,
    })
}

pub(super) fn load_gate(conn: &Connection, id: &str) -> Result<Option<Gate>, StoreError> {
    // Cached statements: these run several times per decision.
    conn.prepare_cached(&sql::sqlite(sql::GATE_BY_ID))?
        .query_row(params![id], gate_from_row)
        .optional()?
        .transpose()
}

/// The gate with `id`, which the caller knows exists.
pub(super) fn reload_gate(conn: &Connection, id: &str) -> Result<Gate, StoreError> {
    load_gate(conn, id)?.ok_or_else(|| StoreError::corrupt("gate vanished"))
}

pub(super) fn insert_event(
    conn: &Connection,
    gate_id: &str,
    actor: &Actor,
    kind: &str,
    from: Option<GateState>,
    to: Option<GateState>,
    message: &str,
) -> Result<(), StoreError> {
    conn.prepare_cached(&sql::sqlite(sql::INSERT_EVENT))?
        .execute(params![
            gate_id,
            timestamp(&Utc::now()),
            actor.to_string(),
            kind,
            from.map(|s| s.as_str()),
            to.map(|s| s.as_str()),
            message
        ])?;
    Ok(())
}

pub(super) fn insert_outbox(
    conn: &Connection,
    gate_id: &str,
    item: &NewOutbox,
    claimed_until: i64,
) -> Result<i64, StoreError> {
    // SQLite reports the new id through the connection rather than with `RETURNING`.
    conn.prepare_cached(&sql::sqlite(sql::insert_outbox!()))?
        .execute(params![
            gate_id,
            item.kind.as_str(),
            item.payload.to_string(),
            now_ms(),
            claimed_until,
            timestamp(&Utc::now())
        ])?;
    Ok(conn.last_insert_rowid())
}

/// The gates one of the shared statements selects.
pub(super) fn gates_by(
    conn: &Connection,
    statement: &'static str,
    params: &[&dyn rusqlite::ToSql],
) -> Result<Vec<Gate>, StoreError> {
    let mut stmt = conn.prepare_cached(&sql::sqlite(statement))?;
    let rows = stmt.query_map(params, gate_from_row)?;
    let mut out = Vec::new();
    for row in rows {
        out.push(row??);
    }
    Ok(out)
}

/// Gates decided since `since`, the newest first: `sql::DECISION_TIMES`.
pub(super) fn decision_times_since(
    conn: &Connection,
    since: &str,
    limit: u32,
) -> Result<Vec<crate::store::DecisionTimes>, StoreError> {
    let mut stmt = conn.prepare_cached(&sql::sqlite(sql::DECISION_TIMES))?;
    let rows = stmt.query_map(params![since, limit], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (created, decided, state) = row?;
        out.push(crate::store::DecisionTimes::from_columns(
            &created, &decided, &state,
        )?);
    }
    Ok(out)
}
