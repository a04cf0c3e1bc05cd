//! The change-mode title lock across replicas: a transaction-scoped advisory lock on the
//! title's hash, held on its own pooled connection while one gate searches ServiceNow for an
//! open change request with the title and creates it when there is none. PostgreSQL releases
//! it when the transaction ends, and when the connection does (a replica killed mid-search
//! leaves no lock behind).
//!
//! At most a quarter of the pool (`title_lock_permits`, at least one connection) is held by
//! title locks at once: each is held across ServiceNow's search and create, and without a
//! bound a burst of change-mode gates with many titles could hold every connection while
//! decisions wait for one.
use deadpool_postgres::Object;
use tokio::sync::OwnedSemaphorePermit;

use super::rows::pg;
use super::PostgresStore;
use crate::store::{StoreError, TitleLock};

/// The first key of the two-key advisory lock, telling title locks from any other use of
/// advisory locks on the same database (the second key is the title's `hashtext`). Two titles
/// with the same hash share a lock: they wait for each other, which is harmless.
const TITLE_LOCK_CLASS: i32 = 0x736e_6774; // "sngt"

/// How many title locks a store of `pool_size` connections holds at once.
pub(super) fn title_lock_permits(pool_size: usize) -> usize {
    (pool_size / 4).max(1)
}

/// Held until dropped; dropping it ends the transaction, which releases the lock, and then
/// the permit (the connection goes back to the pool when the rollback's task ends).
struct Held(Option<Object>, Option<OwnedSemaphorePermit>);

impl Drop for Held {
    fn drop(&mut self) {
        let permit = self.1.take();
        if let Some(c) = self.0.take() {
            tokio::spawn(async move {
                if c.batch_execute("ROLLBACK").await.is_err() {
                    // Never return a connection mid-transaction to the pool: close it, which
                    // ends the transaction and its lock on the server.
                    drop(Object::take(c));
                }
                drop(permit);
            });
        }
    }
}

pub(super) async fn lock_title(
    store: &PostgresStore,
    title: &str,
) -> Result<TitleLock, StoreError> {
    let permit = store
        .title_locks
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| StoreError::unavailable("the title locks are closed"))?;
    let c = store.client().await?;
    let held = Held(Some(c), Some(permit));
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
