//! Change policy in PostgreSQL: change freezes, the approvals they hold, and evidence for CRs
//! (rare writes: each in its own transaction, outside the decision writer's batches).
use chrono::Utc;
use tokio_postgres::Row;
use uuid::Uuid;

use super::rows::{insert_event, insert_outbox, load_gate, pg, text};
use super::PostgresStore;
use crate::domain::freeze::Freeze;
use crate::domain::gate::{timestamp, Actor};
use crate::domain::GateState;
use crate::store::sql;
use crate::store::{Hold, NewOutbox, StoreError, TransitionOutcome};

pub(super) async fn add_freeze(store: &PostgresStore, f: &Freeze) -> Result<(), StoreError> {
    let body = serde_json::to_string(f).map_err(StoreError::corrupt_from)?;
    let c = store.client().await?;
    c.execute(
        sql::INSERT_FREEZE,
        &[
            &f.id,
            &f.name,
            &f.start.timestamp_millis(),
            &f.end.timestamp_millis(),
            &body,
            &timestamp(&Utc::now()),
        ],
    )
    .await
    .map_err(pg)?;
    Ok(())
}

pub(super) async fn freezes(store: &PostgresStore, now_ms: i64) -> Result<Vec<Freeze>, StoreError> {
    let c = store.client().await?;
    let stmt = c.prepare_cached(sql::FREEZES_NOT_OVER).await.map_err(pg)?;
    let rows = c.query(&stmt, &[&now_ms]).await.map_err(pg)?;
    rows.iter()
        .map(|r| {
            serde_json::from_str(r.get::<_, &str>(0))
                .map_err(|e| StoreError::corrupt_by("a stored freeze", e))
        })
        .collect()
}

pub(super) async fn delete_freeze(store: &PostgresStore, id: &str) -> Result<bool, StoreError> {
    let mut c = store.client().await?;
    let tx = c.transaction().await.map_err(pg)?;
    let deleted = tx.execute(sql::DELETE_FREEZE, &[&id]).await.map_err(pg)?;
    tx.execute(sql::RELEASE_HOLDS_OF_FREEZE, &[&id])
        .await
        .map_err(pg)?;
    tx.commit().await.map_err(pg)?;
    Ok(deleted > 0)
}

pub(super) async fn hold_approval(
    store: &PostgresStore,
    hold: &Hold,
    message: &str,
    outbox: &[NewOutbox],
) -> Result<TransitionOutcome, StoreError> {
    let mut c = store.client().await?;
    let tx = c.transaction().await.map_err(pg)?;
    let id = hold.gate_id.to_string();
    let now = timestamp(&Utc::now());
    // The row lock orders this hold after a decision of another replica on the same gate.
    let before = match tx
        .query_opt(&format!("{} FOR NO KEY UPDATE", sql::GATE_BY_ID), &[&id])
        .await
        .map_err(pg)?
    {
        Some(row) => super::rows::gate_from_row(&row)?,
        None => return Ok(TransitionOutcome::NotFound),
    };
    let held: Option<String> = tx
        .query_opt(sql::IS_HELD, &[&id])
        .await
        .map_err(pg)?
        .map(|r| r.get(0));
    if tx
        .execute(sql::HOLD_GATE, &[&text(message), &now, &id])
        .await
        .map_err(pg)?
        == 0
    {
        tx.commit().await.map_err(pg)?;
        return Ok(TransitionOutcome::Conflict(before));
    }
    if held.as_deref() == Some(hold.to.as_str()) && before.state == GateState::Pending {
        // The same decision again: held as it was (a poll in between may have armed a
        // timeout or written its own message), nothing added.
        let gate = load_gate(&tx, &id)
            .await?
            .ok_or_else(|| StoreError::corrupt("gate vanished"))?;
        tx.commit().await.map_err(pg)?;
        return Ok(TransitionOutcome::Applied(gate));
    }
    upsert_hold(&tx, &id, hold, &now).await?;
    insert_event(
        &tx,
        &id,
        &Actor::Snowgate,
        "freeze_hold",
        Some(before.state),
        Some(GateState::Pending),
        message,
    )
    .await?;
    for item in outbox {
        insert_outbox(&tx, &id, item, 0).await?;
    }
    let gate = load_gate(&tx, &id)
        .await?
        .ok_or_else(|| StoreError::corrupt("gate vanished"))?;
    tx.commit().await.map_err(pg)?;
    Ok(TransitionOutcome::Applied(gate))
}

async fn upsert_hold(
    tx: &tokio_postgres::Transaction<'_>,
    id: &str,
    hold: &Hold,
    now: &str,
) -> Result<(), StoreError> {
    tx.execute(
        sql::UPSERT_HOLD,
        &[
            &id,
            &hold.freeze_id,
            &hold.freeze_name,
            &hold.until_ms,
            &hold.to.as_str(),
            &hold.proceed,
            &text(&hold.message),
            &now,
            &hold.actor.to_string(),
        ],
    )
    .await
    .map_err(pg)?;
    Ok(())
}

fn hold_from_row(r: &Row) -> Result<Hold, StoreError> {
    let gate_id: String = r.get(0);
    let to: String = r.get(4);
    Ok(Hold {
        gate_id: Uuid::parse_str(&gate_id).map_err(StoreError::corrupt_from)?,
        freeze_id: r.get(1),
        freeze_name: r.get(2),
        until_ms: r.get(3),
        to: GateState::parse(&to)
            .ok_or_else(|| StoreError::corrupt(format!("held state `{to}`")))?,
        proceed: r.get(5),
        message: r.get(6),
        actor: r
            .get::<_, String>(7)
            .parse()
            .map_err(StoreError::corrupt_from)?,
    })
}

pub(super) async fn holds(
    store: &PostgresStore,
    before_ms: i64,
    limit: u32,
) -> Result<Vec<Hold>, StoreError> {
    let c = store.client().await?;
    let stmt = c.prepare_cached(sql::DUE_HOLDS).await.map_err(pg)?;
    let rows = c
        .query(&stmt, &[&before_ms, &(limit as i64)])
        .await
        .map_err(pg)?;
    rows.iter().map(hold_from_row).collect()
}

pub(super) async fn extend_hold(store: &PostgresStore, hold: &Hold) -> Result<(), StoreError> {
    let c = store.client().await?;
    c.execute(
        sql::EXTEND_HOLD,
        &[
            &hold.freeze_id,
            &hold.freeze_name,
            &hold.until_ms,
            &hold.gate_id.to_string(),
        ],
    )
    .await
    .map_err(pg)?;
    Ok(())
}

pub(super) async fn clear_hold(store: &PostgresStore, gate_id: Uuid) -> Result<(), StoreError> {
    let c = store.client().await?;
    c.execute(sql::CLEAR_HOLD, &[&gate_id.to_string()])
        .await
        .map_err(pg)?;
    Ok(())
}

pub(super) async fn next_hold_due(store: &PostgresStore) -> Result<Option<i64>, StoreError> {
    let c = store.client().await?;
    let row = c.query_one(sql::NEXT_HOLD_DUE, &[]).await.map_err(pg)?;
    Ok(row.get(0))
}

/// Evidence for a gate's CR, queued once per SHA-256.
pub(super) async fn queue_evidence(
    store: &PostgresStore,
    gate_id: Uuid,
    sha256: &str,
    name: &str,
    item: &NewOutbox,
    message: &str,
) -> Result<crate::store::EvidenceQueued, StoreError> {
    use crate::store::EvidenceQueued;
    let mut c = store.client().await?;
    let tx = c.transaction().await.map_err(pg)?;
    let id = gate_id.to_string();
    let Some(gate) = load_gate(&tx, &id).await? else {
        return Ok(EvidenceQueued::NotFound);
    };
    let cr = gate.change_request.and_then(|cr| cr.sys_id);
    let added = tx
        .execute(
            sql::INSERT_EVIDENCE,
            &[&id, &sha256, &name, &timestamp(&Utc::now()), &cr],
        )
        .await
        .map_err(pg)?;
    if added == 0 {
        tx.commit().await.map_err(pg)?;
        return Ok(EvidenceQueued::Duplicate);
    }
    insert_outbox(&tx, &id, item, 0).await?;
    insert_event(
        &tx,
        &id,
        &Actor::Pipeline,
        "evidence_queued",
        None,
        None,
        message,
    )
    .await?;
    tx.commit().await.map_err(pg)?;
    Ok(EvidenceQueued::Queued)
}
