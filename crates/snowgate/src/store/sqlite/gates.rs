//! Gates in SQLite: opening, deciding, change-request updates and completion. Each function
//! runs inside the writer's transaction (a savepoint of the batch) on its connection.
use std::time::Duration;

use chrono::Utc;
use rusqlite::{params, Connection, OptionalExtension};
use uuid::Uuid;

use super::rows::{gate_from_row, insert_event, insert_outbox, load_gate, now_ms, reload_gate};
use crate::domain::gate::{sources_of, timestamp, transition, Actor};
use crate::domain::{CallbackToken, Gate, GateSpec, GateState};
use crate::store::sql::{self, GATE_COLUMNS};
use crate::store::{
    Completion, CrUpdate, FollowUps, NewOutbox, Opened, OutboxItem, OutboxKind, StoreError,
    Transition, TransitionOutcome,
};

pub(super) fn open_gate(
    conn: &Connection,
    spec: GateSpec,
    token: CallbackToken,
    claim: Duration,
) -> Result<Opened, StoreError> {
    // One writer: looking first cannot race another open of the same stage (PostgreSQL, with
    // several replicas, relies on `ON CONFLICT` instead).
    let existing: Option<String> = conn
        .query_row(
            "SELECT id FROM gates WHERE job_url = ?1 AND build_number = ?2 AND stage_name = ?3",
            params![spec.job_url, spec.build_number, spec.stage_name],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(id) = existing {
        let gate = reload_gate(conn, &id)?;
        return Ok(Opened {
            gate,
            created: false,
            register_item: None,
        });
    }
    let id = Uuid::new_v4();
    let id_s = id.to_string();
    insert_gate(conn, &id_s, &spec, &token)?;
    insert_event(
        conn,
        &id_s,
        &Actor::Pipeline,
        "opened",
        None,
        Some(GateState::Registering),
        &format!(
            "gate opened for {} build {} stage {}",
            spec.job_url, spec.build_number, spec.stage_name
        ),
    )?;
    let item = NewOutbox {
        kind: OutboxKind::Register,
        payload: serde_json::json!({}),
    };
    let claimed_until = now_ms() + claim.as_millis() as i64;
    let outbox_id = insert_outbox(conn, &id_s, &item, claimed_until)?;
    let gate = reload_gate(conn, &id_s)?;
    Ok(Opened {
        register_item: Some(OutboxItem {
            id: outbox_id,
            gate_id: id,
            kind: OutboxKind::Register,
            payload: item.payload,
            attempts: 0,
            created_at: gate.created_at,
        }),
        gate,
        created: true,
    })
}

fn insert_gate(
    conn: &Connection,
    id: &str,
    spec: &GateSpec,
    token: &CallbackToken,
) -> Result<(), StoreError> {
    let now = Utc::now();
    let spec_json = serde_json::to_string(spec).map_err(StoreError::corrupt_from)?;
    conn.execute(
        &sql::sqlite(sql::insert_gate!()),
        params![
            id,
            spec.job_url,
            spec.build_number,
            spec.stage_name,
            GateState::Registering.as_str(),
            "Registering the stage with ServiceNow",
            spec_json,
            token.expose(),
            CallbackToken::lookup_hash(token.expose()),
            timestamp(&now),
            now.timestamp_millis(),
            spec.polling_interval_secs.map(|s| s as i64 * 1000)
        ],
    )?;
    Ok(())
}

pub(super) fn gate_by_token(
    conn: &Connection,
    raw_token: &str,
) -> Result<Option<Gate>, StoreError> {
    let hash = CallbackToken::lookup_hash(raw_token);
    let gate = conn
        .prepare_cached(&sql::sqlite(sql::GATE_BY_TOKEN_HASH))?
        .query_row(params![hash], gate_from_row)
        .optional()?
        .transpose()?;
    // The index lookup is by hash; the token itself is compared in constant time.
    Ok(gate.filter(|g| g.callback_token.matches(raw_token)))
}

pub(super) fn transition_gate(
    conn: &Connection,
    t: Transition,
    follow_ups: FollowUps,
) -> Result<TransitionOutcome, StoreError> {
    let id = t.gate_id.to_string();
    // Only the state is needed before the move (the event's `from`); the whole gate
    // comes back from the UPDATE, or is read for a conflict.
    let before_state: Option<String> = conn
        .prepare_cached("SELECT state FROM gates WHERE id = ?1")?
        .query_row(params![id], |r| r.get(0))
        .optional()?;
    let Some(before_state) = before_state else {
        return Ok(TransitionOutcome::NotFound);
    };
    let before_state = GateState::parse(&before_state)
        .ok_or_else(|| StoreError::corrupt(format!("unknown gate state `{before_state}`")))?;
    if transition(before_state, t.to).is_err() {
        return Ok(TransitionOutcome::Conflict(reload_gate(conn, &id)?));
    }
    let Some(after) = compare_and_set(conn, &id, &t)? else {
        return Ok(TransitionOutcome::Conflict(reload_gate(conn, &id)?));
    };
    insert_event(
        conn,
        &id,
        &t.actor,
        t.event_kind,
        Some(before_state),
        Some(t.to),
        &t.message,
    )?;
    // The spec a follow-up reads is the same before and after the move.
    for item in t.outbox.iter().chain(follow_ups(&after, &t).iter()) {
        insert_outbox(conn, &id, item, 0)?;
    }
    Ok(TransitionOutcome::Applied(after))
}

/// The compare-and-set: touches exactly one row, or none when someone else decided first.
/// The decided row comes back from the same statement (`RETURNING`): no second read.
fn compare_and_set(
    conn: &Connection,
    id: &str,
    t: &Transition,
) -> Result<Option<Gate>, StoreError> {
    // The admitted states, exactly those the domain's table allows, as literals: SQLite has
    // no array parameter (PostgreSQL binds them as `= ANY($12)`).
    let placeholders = sources_of(t.to)
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(",");
    let now = timestamp(&Utc::now());
    let terminal = t.to.is_terminal();
    let cr_json = match &t.change_request {
        Some(cr) => Some(serde_json::to_string(cr).map_err(StoreError::corrupt_from)?),
        None => None,
    };
    let statement = format!(
        "{}IN ({placeholders}) RETURNING {GATE_COLUMNS}",
        sql::sqlite(sql::TRANSITION_SET)
    );
    conn.prepare_cached(&statement)?
        .query_row(
            params![
                t.to.as_str(),
                t.proceed,
                t.message,
                now,
                terminal,
                t.actor.to_string(),
                cr_json,
                id,
                t.timers.next_poll_ms,
                t.timers.creation_deadline_ms,
                t.timers.step_deadline_ms
            ],
            gate_from_row,
        )
        .optional()?
        .transpose()
}

pub(super) fn update_change_request(
    conn: &Connection,
    id: Uuid,
    u: CrUpdate,
) -> Result<Option<Gate>, StoreError> {
    let id_s = id.to_string();
    let cr_json = serde_json::to_string(&u.cr).map_err(StoreError::corrupt_from)?;
    let changed = conn.execute(
        &sql::sqlite(sql::UPDATE_CHANGE_REQUEST),
        params![
            cr_json,
            timestamp(&Utc::now()),
            u.message,
            u.change_known,
            u.step_deadline_ms,
            u.next_poll_ms,
            id_s
        ],
    )?;
    if changed == 0 {
        return Ok(None);
    }
    if let Some(event) = &u.event {
        insert_event(conn, &id_s, &u.actor, "change_request", None, None, event)?;
    }
    load_gate(conn, &id_s)
}

pub(super) fn complete_gate(
    conn: &Connection,
    id: Uuid,
    result: String,
    actor: Actor,
    outbox: Vec<NewOutbox>,
) -> Result<Completion, StoreError> {
    let id_s = id.to_string();
    let Some(gate) = load_gate(conn, &id_s)? else {
        return Ok(Completion::NotFound);
    };
    if !gate.state.is_terminal() {
        return Ok(Completion::NotDecided(gate));
    }
    // One writer: the gate and its completion are read apart without a row lock (PostgreSQL
    // reads both under `FOR UPDATE`).
    let previous: Option<String> = conn.query_row(
        "SELECT completed_result FROM gates WHERE id = ?1",
        params![id_s],
        |r| r.get(0),
    )?;
    if let Some(prev) = previous {
        return Ok(Completion::AlreadyCompleted { result: prev, gate });
    }
    conn.execute(
        "UPDATE gates SET completed_result = ?1, completed_at = ?2 WHERE id = ?3 AND completed_result IS NULL",
        params![result, timestamp(&Utc::now()), id_s],
    )?;
    insert_event(
        conn,
        &id_s,
        &actor,
        "completed",
        None,
        None,
        &format!("the stage finished: {result}"),
    )?;
    for item in &outbox {
        insert_outbox(conn, &id_s, item, 0)?;
    }
    Ok(Completion::Recorded(gate))
}
