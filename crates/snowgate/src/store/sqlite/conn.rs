//! The SQLite store's connections and threads: opening a connection with its pragmas, the
//! one-process lock, migrations, the reader threads and the group-committing writer thread.
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use rusqlite::{params, Connection};

use crate::domain::gate::timestamp;
use crate::store::sql;
use crate::store::StoreError;

/// The schema's versions, in order (`migrations/sqlite/NNN_*.sql`): entry `i` moves the schema
/// from version `i` to `i + 1`, in one transaction.
const MIGRATIONS: &[&str] = &[
    include_str!("../../../../../migrations/sqlite/001_init.sql"),
    include_str!("../../../../../migrations/sqlite/002_poll_and_deadlines.sql"),
    include_str!("../../../../../migrations/sqlite/003_completion.sql"),
    include_str!("../../../../../migrations/sqlite/004_one_acknowledgement.sql"),
    include_str!("../../../../../migrations/sqlite/005_status_and_lookup.sql"),
    include_str!("../../../../../migrations/sqlite/006_freezes.sql"),
    include_str!("../../../../../migrations/sqlite/007_evidence.sql"),
    include_str!("../../../../../migrations/sqlite/008_hold_actor_and_evidence_per_cr.sql"),
];

/// Largest number of writes committed together.
const MAX_BATCH: usize = 512;

pub(super) type Reply = Box<dyn FnOnce(Result<(), String>) + Send>;
pub(super) type ReadJob = Box<dyn FnOnce(&Connection) + Send>;
pub(super) type Job = Box<dyn FnOnce(&Connection) -> (bool, Reply) + Send>;

/// Page cache of the writer's connection, KiB (SQLite's default is 2,000 KiB per connection).
pub(super) const WRITER_CACHE_KIB: i64 = 2048;
/// Page cache of each reader's connection, KiB: readers fetch single rows by key, and a miss is
/// a read from the OS page cache; five default caches were a fifth of the process's memory.
pub(super) const READER_CACHE_KIB: i64 = 256;

pub(super) fn open_connection(path: &Path, cache_kib: i64) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    // Negative: a size in KiB rather than in pages.
    conn.pragma_update(None, "cache_size", -cache_kib)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: a commit is on disk (WAL fsynced) before any reply that depends on it.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // The per-write savepoints' statement journals stay in memory, not in a temporary file.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // Room for every hot statement (rusqlite keeps 16 by default; the writer alone uses more).
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// One process per SQLite file: two would run two outboxes, two pollers and two timer sets
/// over one store. An exclusive `flock` on `<file>.lock`, which the kernel releases when the
/// process ends however it ends, so a `kill -9` leaves nothing to clean up. The file holds the
/// owner's pid, for the message the second process gives.
pub(super) fn lock_exclusively(path: &Path) -> Result<std::fs::File, StoreError> {
    use std::io::{Read as _, Seek as _, Write as _};
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let lock_path = PathBuf::from(name);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(|e| StoreError::unavailable_by(lock_path.display(), e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut owner = String::new();
            let _ = file.read_to_string(&mut owner);
            let owner = owner.trim();
            let pid = if owner.is_empty() {
                String::new()
            } else {
                format!(" (pid {owner})")
            };
            return Err(StoreError::unavailable(format!(
                "{} is in use by another snowgate process{pid}: one process per SQLite file; several replicas need a PostgreSQL store.url",
                path.display()
            )));
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(StoreError::unavailable_by(
                format!("cannot lock {}", lock_path.display()),
                e,
            ))
        }
    }
    let written = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| write!(file, "{}", std::process::id()))
        .and_then(|()| file.flush());
    if let Err(e) = written {
        tracing::warn!(path = %lock_path.display(), error = %e, "cannot write the pid into the lock file");
    }
    Ok(file)
}

pub(super) fn migrate(conn: &mut Connection) -> rusqlite::Result<usize> {
    conn.execute_batch(sql::CREATE_SCHEMA_MIGRATIONS)?;
    let current: i64 = conn.query_row(sql::SCHEMA_VERSION, [], |r| r.get(0))?;
    let mut applied = 0;
    for (i, migration) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(migration)?;
        tx.execute(
            &sql::sqlite(sql::RECORD_MIGRATION),
            params![i as i64 + 1, timestamp(&Utc::now())],
        )?;
        tx.commit()?;
        applied += 1;
    }
    Ok(applied)
}

pub(super) fn reader_loop(conn: Connection, rx: Arc<Mutex<mpsc::Receiver<ReadJob>>>) {
    loop {
        let job = match rx.lock() {
            Ok(r) => match r.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
            Err(_) => return,
        };
        if std::panic::catch_unwind(AssertUnwindSafe(|| job(&conn))).is_err() {
            tracing::error!("store: a read panicked");
        }
    }
}

/// Run one of the writer's fixed transaction-control statements (prepared once and cached:
/// parsing them for every batch cost tens of microseconds per decision).
fn control(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

pub(super) fn writer_loop(conn: Connection, rx: mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if let Err(e) = control(&conn, "BEGIN IMMEDIATE") {
            tracing::error!(error = %e, "store: cannot begin a transaction");
            for job in batch {
                // Run nothing; answer every caller with the error.
                drop(job);
            }
            continue;
        }
        let mut replies = Vec::with_capacity(batch.len());
        for job in batch {
            if control(&conn, "SAVEPOINT job").is_err() {
                continue;
            }
            match std::panic::catch_unwind(AssertUnwindSafe(|| job(&conn))) {
                Ok((ok, reply)) => {
                    if !ok {
                        let _ = control(&conn, "ROLLBACK TO job");
                    }
                    replies.push(reply);
                }
                Err(_) => {
                    tracing::error!("store: a write panicked; its changes are rolled back");
                    let _ = control(&conn, "ROLLBACK TO job");
                }
            }
            let _ = control(&conn, "RELEASE job");
        }
        let commit = control(&conn, "COMMIT").map_err(|e| e.to_string());
        if let Err(e) = &commit {
            tracing::error!(error = %e, "store: commit failed");
            let _ = control(&conn, "ROLLBACK");
        }
        for reply in replies {
            reply(commit.clone());
        }
    }
}
