//! Rows to domain values, and the writes every PostgreSQL operation shares (events, outbox
//! items).
use chrono::Utc;
use deadpool_postgres::GenericClient;
use tokio_postgres::{Row, Statement};
use uuid::Uuid;

use crate::domain::gate::{timestamp, Actor};
use crate::domain::timers::Timers;
use crate::domain::{CallbackToken, ChangeRequest, Gate, GateSpec, GateState};
use crate::store::{parse_time, sql};
use crate::store::{Event, NewOutbox, OutboxItem, OutboxKind, StoreError};

/// Text as PostgreSQL can store it: its `text` type cannot hold a NUL character (SQLite's
/// can), which a ServiceNow comment or error message may carry; it is stored as U+FFFD, so
/// such a decision is recorded rather than refused.
pub(super) fn text(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') {
        s.replace('\0', "\u{FFFD}").into()
    } else {
        s.into()
    }
}

pub(super) fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// A PostgreSQL or pool error with its causes (a refused TLS handshake says why only there).
pub(super) fn pg(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let cause = s.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
        source = s.source();
    }
    StoreError::Unavailable {
        context: text,
        source: Some(Box::new(e)),
    }
}

/// `statement` prepared once per connection: every later use saves the round trip of
/// preparing it again.
pub(super) async fn prepared(
    c: &impl GenericClient,
    statement: &str,
) -> Result<Statement, StoreError> {
    c.prepare_cached(statement).await.map_err(pg)
}

pub(super) fn gate_from_row(row: &Row) -> Result<Gate, StoreError> {
    let id: String = row.get(0);
    let state: String = row.get(1);
    let spec: String = row.get(4);
    let cr: Option<String> = row.get(6);
    let created_at: String = row.get(7);
    let updated_at: String = row.get(8);
    let decided_at: Option<String> = row.get(9);
    Ok(Gate {
        id: Uuid::parse_str(&id).map_err(StoreError::corrupt_from)?,
        state: GateState::parse(&state)
            .ok_or_else(|| StoreError::corrupt(format!("unknown state `{state}`")))?,
        proceed: row.get(2),
        message: row.get(3),
        spec: serde_json::from_str::<GateSpec>(&spec)
            .map_err(|e| StoreError::corrupt_by("gate spec", e))?,
        callback_token: CallbackToken::from_stored(row.get(5)),
        change_request: cr
            .map(|c| serde_json::from_str::<ChangeRequest>(&c))
            .transpose()
            .map_err(|e| StoreError::corrupt_by("change request", e))?,
        created_at: parse_time(&created_at)?,
        updated_at: parse_time(&updated_at)?,
        decided_at: decided_at.as_deref().map(parse_time).transpose()?,
        decided_by: row.get(10),
        timers: Timers {
            next_poll_ms: row.get(11),
            creation_deadline_ms: row.get(12),
            step_deadline_ms: row.get(13),
        },
    })
}

pub(super) fn outbox_from_row(row: &Row) -> Result<OutboxItem, StoreError> {
    let gate_id: String = row.get(1);
    let kind: String = row.get(2);
    let payload: String = row.get(3);
    let attempts: i32 = row.get(4);
    let created_at: String = row.get(5);
    Ok(OutboxItem {
        id: row.get(0),
        gate_id: Uuid::parse_str(&gate_id).map_err(StoreError::corrupt_from)?,
        kind: OutboxKind::parse(&kind)
            .ok_or_else(|| StoreError::corrupt(format!("outbox kind `{kind}`")))?,
        payload: serde_json::from_str(&payload)
            .map_err(|e| StoreError::corrupt_by("outbox payload", e))?,
        attempts: attempts.max(0) as u32,
        created_at: parse_time(&created_at)?,
    })
}

pub(super) async fn load_gate(
    c: &impl GenericClient,
    id: &str,
) -> Result<Option<Gate>, StoreError> {
    // Prepared once per connection: the hot statements save a round trip each time.
    let stmt = c.prepare_cached(sql::GATE_BY_ID).await.map_err(pg)?;
    let row = c.query_opt(&stmt, &[&id]).await.map_err(pg)?;
    row.as_ref().map(gate_from_row).transpose()
}

pub(super) async fn insert_event(
    c: &impl GenericClient,
    gate_id: &str,
    actor: &Actor,
    kind: &str,
    from: Option<GateState>,
    to: Option<GateState>,
    message: &str,
) -> Result<(), StoreError> {
    let stmt = c.prepare_cached(sql::INSERT_EVENT).await.map_err(pg)?;
    c.execute(
        &stmt,
        &[
            &gate_id,
            &timestamp(&Utc::now()),
            &actor.to_string(),
            &kind,
            &from.map(|s| s.as_str()),
            &to.map(|s| s.as_str()),
            &text(message),
        ],
    )
    .await
    .map_err(pg)?;
    Ok(())
}

pub(super) async fn insert_outbox(
    c: &impl GenericClient,
    gate_id: &str,
    item: &NewOutbox,
    claimed_until: i64,
) -> Result<i64, StoreError> {
    let stmt = c
        .prepare_cached(
            // The new id comes back with `RETURNING`: PostgreSQL keeps no last-insert id.
            concat!(sql::insert_outbox!(), " RETURNING id"),
        )
        .await
        .map_err(pg)?;
    let row = c
        .query_one(
            &stmt,
            &[
                &gate_id,
                &item.kind.as_str(),
                &item.payload.to_string(),
                &now_ms(),
                &claimed_until,
                &timestamp(&Utc::now()),
            ],
        )
        .await
        .map_err(pg)?;
    Ok(row.get(0))
}

pub(super) fn event_from_row(r: &Row) -> Event {
    let from: Option<String> = r.get(4);
    let to: Option<String> = r.get(5);
    Event {
        id: r.get(0),
        at: r.get(1),
        actor: r.get(2),
        kind: r.get(3),
        from_state: from.as_deref().and_then(GateState::parse),
        to_state: to.as_deref().and_then(GateState::parse),
        message: r.get(6),
    }
}

/// The gate with `id`, which the caller knows exists.
pub(super) async fn reload_gate(c: &impl GenericClient, id: &str) -> Result<Gate, StoreError> {
    load_gate(c, id)
        .await?
        .ok_or_else(|| StoreError::corrupt("gate vanished"))
}

/// A row of `sql::DECISION_TIMES`.
pub(super) fn decision_times_from_row(r: &Row) -> Result<crate::store::DecisionTimes, StoreError> {
    let (created, decided, state): (String, String, String) = (r.get(0), r.get(1), r.get(2));
    crate::store::DecisionTimes::from_columns(&created, &decided, &state)
}
