//! PostgreSQL migrations, applied under an advisory lock so replicas starting together never
//! race.
use chrono::Utc;

use super::rows::pg;
use super::PostgresStore;
use crate::domain::gate::timestamp;
use crate::store::sql;
use crate::store::StoreError;

/// An arbitrary constant identifying snowgate's migration lock.
const MIGRATION_LOCK: i64 = 0x736e_6f77_6761_7465;

/// The schema's versions, in order (`migrations/postgres/NNN_*.sql`): entry `i` moves the schema
/// from version `i` to `i + 1`, in one transaction.
const MIGRATIONS: &[&str] = &[
    include_str!("../../../../../migrations/postgres/001_init.sql"),
    include_str!("../../../../../migrations/postgres/002_one_acknowledgement.sql"),
    include_str!("../../../../../migrations/postgres/003_status_and_lookup.sql"),
    include_str!("../../../../../migrations/postgres/004_freezes.sql"),
    include_str!("../../../../../migrations/postgres/005_evidence.sql"),
    include_str!("../../../../../migrations/postgres/006_hold_actor_and_evidence_per_cr.sql"),
];

pub(super) async fn migrate(store: &PostgresStore) -> Result<(), StoreError> {
    let mut c = store.client().await?;
    c.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg)?;
    let result = apply_pending(&mut c).await;
    let _ = c
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    result
}

async fn apply_pending(c: &mut deadpool_postgres::Object) -> Result<(), StoreError> {
    c.batch_execute(sql::CREATE_SCHEMA_MIGRATIONS)
        .await
        .map_err(pg)?;
    let current: i32 = c
        .query_one(sql::SCHEMA_VERSION, &[])
        .await
        .map_err(pg)?
        .get(0);
    for (i, migration) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = c.transaction().await.map_err(pg)?;
        tx.batch_execute(migration).await.map_err(pg)?;
        tx.execute(
            sql::RECORD_MIGRATION,
            &[&(i as i32 + 1), &timestamp(&Utc::now())],
        )
        .await
        .map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        tracing::info!(version = i + 1, "store migration applied");
    }
    Ok(())
}
