//! Change policy in SQLite: change freezes, the approvals they hold, and evidence for CRs.
use chrono::Utc;
use rusqlite::{params, Connection, OptionalExtension, Row};
use uuid::Uuid;

use super::rows::{insert_event, insert_outbox, load_gate};
use crate::domain::freeze::Freeze;
use crate::domain::gate::{timestamp, Actor};
use crate::domain::GateState;
use crate::store::sql;
use crate::store::{Hold, NewOutbox, StoreError, TransitionOutcome};

pub(super) fn add_freeze(conn: &Connection, f: &Freeze) -> Result<(), StoreError> {
    let body = serde_json::to_string(f).map_err(StoreError::corrupt_from)?;
    conn.execute(
        &sql::sqlite(sql::INSERT_FREEZE),
        params![
            f.id,
            f.name,
            f.start.timestamp_millis(),
            f.end.timestamp_millis(),
            body,
            timestamp(&Utc::now())
        ],
    )?;
    Ok(())
}

pub(super) fn freezes(conn: &Connection, now_ms: i64) -> Result<Vec<Freeze>, StoreError> {
    let mut stmt = conn.prepare_cached(&sql::sqlite(sql::FREEZES_NOT_OVER))?;
    let bodies = stmt
        .query_map(params![now_ms], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    bodies
        .iter()
        .map(|b| serde_json::from_str(b).map_err(|e| StoreError::corrupt_by("a stored freeze", e)))
        .collect()
}

pub(super) fn delete_freeze(conn: &Connection, id: &str) -> Result<bool, StoreError> {
    let deleted = conn.execute(&sql::sqlite(sql::DELETE_FREEZE), params![id])?;
    conn.execute(&sql::sqlite(sql::RELEASE_HOLDS_OF_FREEZE), params![id])?;
    Ok(deleted > 0)
}

pub(super) fn hold_approval(
    conn: &Connection,
    hold: &Hold,
    message: &str,
    outbox: &[NewOutbox],
) -> Result<TransitionOutcome, StoreError> {
    let id = hold.gate_id.to_string();
    let now = timestamp(&Utc::now());
    let before = match load_gate(conn, &id)? {
        Some(g) => g,
        None => return Ok(TransitionOutcome::NotFound),
    };
    let held: Option<String> = conn
        .query_row(&sql::sqlite(sql::IS_HELD), params![id], |r| r.get(0))
        .optional()?;
    if conn.execute(&sql::sqlite(sql::HOLD_GATE), params![message, now, id])? == 0 {
        return Ok(TransitionOutcome::Conflict(before));
    }
    if held.as_deref() == Some(hold.to.as_str()) && before.state == GateState::Pending {
        // The same decision again: held as it was (a poll in between may have armed a
        // timeout or written its own message), nothing added.
        return Ok(TransitionOutcome::Applied(
            load_gate(conn, &id)?.ok_or_else(|| StoreError::corrupt("gate vanished"))?,
        ));
    }
    conn.execute(
        &sql::sqlite(sql::UPSERT_HOLD),
        params![
            id,
            hold.freeze_id,
            hold.freeze_name,
            hold.until_ms,
            hold.to.as_str(),
            hold.proceed,
            hold.message,
            now,
            hold.actor.to_string()
        ],
    )?;
    insert_event(
        conn,
        &id,
        &Actor::Snowgate,
        "freeze_hold",
        Some(before.state),
        Some(GateState::Pending),
        message,
    )?;
    for item in outbox {
        insert_outbox(conn, &id, item, 0)?;
    }
    Ok(TransitionOutcome::Applied(
        load_gate(conn, &id)?.ok_or_else(|| StoreError::corrupt("gate vanished"))?,
    ))
}

fn hold_from_row(r: &Row<'_>) -> rusqlite::Result<Result<Hold, StoreError>> {
    let gate_id: String = r.get(0)?;
    let to: String = r.get(4)?;
    let actor: String = r.get(7)?;
    let (freeze_id, freeze_name, until_ms, proceed, message) =
        (r.get(1)?, r.get(2)?, r.get(3)?, r.get(5)?, r.get(6)?);
    let hold = || -> Result<Hold, StoreError> {
        Ok(Hold {
            gate_id: Uuid::parse_str(&gate_id).map_err(StoreError::corrupt_from)?,
            freeze_id,
            freeze_name,
            until_ms,
            to: GateState::parse(&to)
                .ok_or_else(|| StoreError::corrupt(format!("held state `{to}`")))?,
            proceed,
            message,
            actor: actor.parse().map_err(StoreError::corrupt_from)?,
        })
    };
    Ok(hold())
}

pub(super) fn holds(
    conn: &Connection,
    before_ms: i64,
    limit: u32,
) -> Result<Vec<Hold>, StoreError> {
    let mut stmt = conn.prepare_cached(&sql::sqlite(sql::DUE_HOLDS))?;
    let rows = stmt
        .query_map(params![before_ms, limit], hold_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter().collect()
}

pub(super) fn extend_hold(conn: &Connection, hold: &Hold) -> Result<(), StoreError> {
    conn.execute(
        &sql::sqlite(sql::EXTEND_HOLD),
        params![
            hold.freeze_id,
            hold.freeze_name,
            hold.until_ms,
            hold.gate_id.to_string()
        ],
    )?;
    Ok(())
}

pub(super) fn clear_hold(conn: &Connection, gate_id: Uuid) -> Result<(), StoreError> {
    conn.execute(&sql::sqlite(sql::CLEAR_HOLD), params![gate_id.to_string()])?;
    Ok(())
}

pub(super) fn next_hold_due(conn: &Connection) -> Result<Option<i64>, StoreError> {
    Ok(conn.query_row(&sql::sqlite(sql::NEXT_HOLD_DUE), [], |r| r.get(0))?)
}

/// Evidence for a gate's CR, queued once per SHA-256.
pub(super) fn queue_evidence(
    conn: &Connection,
    gate_id: Uuid,
    sha256: &str,
    name: &str,
    item: &NewOutbox,
    message: &str,
) -> Result<crate::store::EvidenceQueued, StoreError> {
    use crate::store::EvidenceQueued;
    let id = gate_id.to_string();
    let Some(gate) = load_gate(conn, &id)? else {
        return Ok(EvidenceQueued::NotFound);
    };
    let cr = gate.change_request.and_then(|cr| cr.sys_id);
    let added = conn.execute(
        &sql::sqlite(sql::INSERT_EVIDENCE),
        params![id, sha256, name, timestamp(&Utc::now()), cr],
    )?;
    if added == 0 {
        return Ok(EvidenceQueued::Duplicate);
    }
    insert_outbox(conn, &id, item, 0)?;
    insert_event(
        conn,
        &id,
        &Actor::Pipeline,
        "evidence_queued",
        None,
        None,
        message,
    )?;
    Ok(EvidenceQueued::Queued)
}
