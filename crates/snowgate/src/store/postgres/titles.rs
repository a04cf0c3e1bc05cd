//! The change-mode title lock across replicas: a transaction-scoped advisory lock on the
//! title's hash, held on its own pooled connection while one gate searches ServiceNow for an
//! open change request with the title and creates it when there is none. PostgreSQL releases
//! it when the transaction ends, and when the connection does (a replica killed mid-search
//! leaves no lock behind).
use deadpool_postgres::Object;

use super::rows::pg;
use super::PostgresStore;
use crate::store::{StoreError, TitleLock};

/// The first key of the two-key advisory lock, telling title locks from any other use of
/// advisory locks on the same database (the second key is the title's `hashtext`). Two titles
/// with the same hash share a lock: they wait for each other, which is harmless.
const TITLE_LOCK_CLASS: i32 = 0x736e_6774; // "sngt"

/// Held until dropped; dropping it ends the transaction, which releases the lock.
struct Held(Option<Object>);

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            tokio::spawn(async move {
                if c.batch_execute("ROLLBACK").await.is_err() {
                    // Never return a connection mid-transaction to the pool: close it, which
                    // ends the transaction and its lock on the server.
                    drop(Object::take(c));
                }
            });
        }
    }
}

pub(super) async fn lock_title(
    store: &PostgresStore,
    title: &str,
) -> Result<TitleLock, StoreError> {
    let c = store.client().await?;
    let held = Held(Some(c));
    let c = held
        .0
        .as_ref()
        .ok_or_else(|| StoreError::corrupt("no connection"))?;
    c.batch_execute("BEGIN").await.map_err(pg)?;
    // Waits while another replica holds the title; bounded by the connection's
    // statement_timeout (`store.timeout`), after which the link is retried.
    let stmt = c
        .prepare_cached("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .await
        .map_err(pg)?;
    c.execute(&stmt, &[&TITLE_LOCK_CLASS, &title])
        .await
        .map_err(pg)?;
    Ok(TitleLock::new(held))
}
