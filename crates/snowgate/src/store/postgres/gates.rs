//! Gates in PostgreSQL: opening, change-request updates and completion, each in its own
//! transaction (decisions are the writer's, in batches: `writer.rs`). Each runs once or more
//! per gate, and its statements are prepared once per connection.
use std::time::Duration;

use chrono::Utc;
use deadpool_postgres::Transaction;
use uuid::Uuid;

use super::rows::{
    gate_from_row, insert_event, insert_outbox, load_gate, now_ms, pg, prepared, reload_gate, text,
};
use super::PostgresStore;
use crate::domain::gate::{timestamp, Actor};
use crate::domain::{CallbackToken, Gate, GateSpec, GateState};
use crate::store::sql::{self, GATE_COLUMNS};
use crate::store::{Completion, CrUpdate, NewOutbox, Opened, OutboxItem, OutboxKind, StoreError};

/// A new gate; `ON CONFLICT`: a concurrent open of the same stage on another replica keeps its
/// gate, and this open returns it (SQLite's single writer looks first instead).
const INSERT_GATE: &str = concat!(
    sql::insert_gate!(),
    " ON CONFLICT (job_url, build_number, stage_name) DO NOTHING"
);

pub(super) async fn open_gate(
    store: &PostgresStore,
    spec: GateSpec,
    token: CallbackToken,
    claim: Duration,
) -> Result<Opened, StoreError> {
    let mut c = store.client().await?;
    let tx = c.transaction().await.map_err(pg)?;
    let id = Uuid::new_v4();
    let id_s = id.to_string();
    if !insert_gate(&tx, &id_s, &spec, &token).await? {
        let existing = prepared(
            &tx,
            &format!(
                "SELECT {GATE_COLUMNS} FROM gates WHERE job_url = $1 AND build_number = $2 AND stage_name = $3"
            ),
        )
        .await?;
        let row = tx
            .query_one(
                &existing,
                &[&spec.job_url, &spec.build_number, &spec.stage_name],
            )
            .await
            .map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        return Ok(Opened {
            gate: gate_from_row(&row)?,
            created: false,
            register_item: None,
        });
    }
    insert_event(
        &tx,
        &id_s,
        &Actor::Pipeline,
        "opened",
        None,
        Some(GateState::Registering),
        &format!(
            "gate opened for {} build {} stage {}",
            spec.job_url, spec.build_number, spec.stage_name
        ),
    )
    .await?;
    let item = NewOutbox {
        kind: OutboxKind::Register,
        payload: serde_json::json!({}),
    };
    let outbox_id = insert_outbox(&tx, &id_s, &item, now_ms() + claim.as_millis() as i64).await?;
    let gate = reload_gate(&tx, &id_s).await?;
    tx.commit().await.map_err(pg)?;
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

/// Whether the gate was inserted (false: the stage has a gate already).
async fn insert_gate(
    tx: &Transaction<'_>,
    id: &str,
    spec: &GateSpec,
    token: &CallbackToken,
) -> Result<bool, StoreError> {
    let now = Utc::now();
    let spec_json = serde_json::to_string(spec).map_err(StoreError::corrupt_from)?;
    let insert = prepared(tx, INSERT_GATE).await?;
    let inserted = tx
        .execute(
            &insert,
            &[
                &id,
                &spec.job_url,
                &spec.build_number,
                &spec.stage_name,
                &GateState::Registering.as_str(),
                &"Registering the stage with ServiceNow",
                &spec_json,
                &token.expose(),
                &CallbackToken::lookup_hash(token.expose()),
                &timestamp(&now),
                &now.timestamp_millis(),
                &spec.polling_interval_secs.map(|s| s as i64 * 1000),
            ],
        )
        .await
        .map_err(pg)?;
    Ok(inserted > 0)
}

pub(super) async fn gate_by_token(
    store: &PostgresStore,
    raw_token: &str,
) -> Result<Option<Gate>, StoreError> {
    let hash = CallbackToken::lookup_hash(raw_token);
    let c = store.client().await?;
    // Prepared once per connection: every callback starts here.
    let stmt = c
        .prepare_cached(sql::GATE_BY_TOKEN_HASH)
        .await
        .map_err(pg)?;
    let row = c.query_opt(&stmt, &[&hash]).await.map_err(pg)?;
    let gate = row.as_ref().map(gate_from_row).transpose()?;
    Ok(gate.filter(|g| g.callback_token.matches(raw_token)))
}

pub(super) async fn update_change_request(
    store: &PostgresStore,
    id: Uuid,
    u: CrUpdate,
) -> Result<Option<Gate>, StoreError> {
    let mut c = store.client().await?;
    let tx = c.transaction().await.map_err(pg)?;
    let id_s = id.to_string();
    let cr_json = serde_json::to_string(&u.cr).map_err(StoreError::corrupt_from)?;
    let update = prepared(&tx, sql::UPDATE_CHANGE_REQUEST).await?;
    let changed = tx
        .execute(
            &update,
            &[
                &cr_json,
                &timestamp(&Utc::now()),
                &u.message.as_deref().map(text),
                &u.change_known,
                &u.step_deadline_ms,
                &u.next_poll_ms,
                &id_s,
            ],
        )
        .await
        .map_err(pg)?;
    if changed == 0 {
        tx.commit().await.map_err(pg)?;
        return Ok(None);
    }
    if let Some(event) = &u.event {
        insert_event(&tx, &id_s, &u.actor, "change_request", None, None, event).await?;
    }
    let gate = load_gate(&tx, &id_s).await?;
    tx.commit().await.map_err(pg)?;
    Ok(gate)
}

pub(super) async fn complete_gate(
    store: &PostgresStore,
    id: Uuid,
    result: String,
    actor: Actor,
    outbox: Vec<NewOutbox>,
) -> Result<Completion, StoreError> {
    let mut c = store.client().await?;
    let tx = c.transaction().await.map_err(pg)?;
    let id_s = id.to_string();
    // The gate and its completion under one row lock: replicas completing together serialise
    // (SQLite's single writer reads them apart).
    let lock = prepared(
        &tx,
        &format!(
            "SELECT {GATE_COLUMNS}, completed_result FROM gates WHERE id = $1 FOR NO KEY UPDATE"
        ),
    )
    .await?;
    let Some(row) = tx.query_opt(&lock, &[&id_s]).await.map_err(pg)? else {
        return Ok(Completion::NotFound);
    };
    let gate = gate_from_row(&row)?;
    let previous: Option<String> = row.get(14);
    if !gate.state.is_terminal() {
        tx.commit().await.map_err(pg)?;
        return Ok(Completion::NotDecided(gate));
    }
    if let Some(prev) = previous {
        tx.commit().await.map_err(pg)?;
        return Ok(Completion::AlreadyCompleted { result: prev, gate });
    }
    let complete = prepared(
        &tx,
        "UPDATE gates SET completed_result = $1, completed_at = $2 WHERE id = $3",
    )
    .await?;
    tx.execute(&complete, &[&result, &timestamp(&Utc::now()), &id_s])
        .await
        .map_err(pg)?;
    insert_event(
        &tx,
        &id_s,
        &actor,
        "completed",
        None,
        None,
        &format!("the stage finished: {result}"),
    )
    .await?;
    for item in &outbox {
        insert_outbox(&tx, &id_s, item, 0).await?;
    }
    tx.commit().await.map_err(pg)?;
    Ok(Completion::Recorded(gate))
}
