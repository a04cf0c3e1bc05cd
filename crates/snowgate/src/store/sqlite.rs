//! SQLite backend: one file in WAL mode with `synchronous=FULL`, versioned migrations,
//! one writer thread that commits concurrent writes together (group commit: one fsync for
//! many decisions, each caller answered only after the commit that holds its data), and a
//! small pool of read connections.
use std::cell::RefCell;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{params, Connection, OptionalExtension, Row};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::sql::{self, GATE_COLUMNS};
use super::{
    Completion, CrUpdate, Event, FollowUps, GateStore, NewOutbox, Opened, OutboxItem, OutboxKind,
    OutboxResult, StoreError, Transition, TransitionOutcome,
};
use crate::domain::gate::{sources_of, timestamp, transition, Actor};
use crate::domain::timers::{Deadline, Timers};
use crate::domain::{CallbackToken, ChangeRequest, Gate, GateSpec, GateState};

/// The schema's versions, in order (`migrations/sqlite/NNN_*.sql`): entry `i` moves the schema
/// from version `i` to `i + 1`, in one transaction.
const MIGRATIONS: &[&str] = &[
    include_str!("../../../../migrations/sqlite/001_init.sql"),
    include_str!("../../../../migrations/sqlite/002_poll_and_deadlines.sql"),
    include_str!("../../../../migrations/sqlite/003_completion.sql"),
    include_str!("../../../../migrations/sqlite/004_one_acknowledgement.sql"),
    include_str!("../../../../migrations/sqlite/005_status_and_lookup.sql"),
];

/// Largest number of writes committed together.
const MAX_BATCH: usize = 512;
/// Reader threads, each with its own connection (WAL lets them read while the writer writes).
const READERS: usize = 4;

type Reply = Box<dyn FnOnce(Result<(), String>) + Send>;
type ReadJob = Box<dyn FnOnce(&Connection) + Send>;
type Job = Box<dyn FnOnce(&Connection) -> (bool, Reply) + Send>;

#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// Tells this store's connections apart in the per-thread point readers.
    id: u64,
    path: PathBuf,
    writer: Mutex<mpsc::Sender<Job>>,
    readers: Mutex<mpsc::Sender<ReadJob>>,
    /// The exclusive lock on `<file>.lock`, held for the store's life.
    _lock: std::fs::File,
}

static NEXT_STORE_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// Per-thread read connections for single-row lookups by key, by store id.
    static POINT_READERS: RefCell<HashMap<u64, Connection>> = RefCell::new(HashMap::new());
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// Page cache of the writer's connection, KiB (SQLite's default is 2,000 KiB per connection).
const WRITER_CACHE_KIB: i64 = 2048;
/// Page cache of each reader's connection, KiB: readers fetch single rows by key, and a miss is
/// a read from the OS page cache; five default caches were a fifth of the process's memory.
const READER_CACHE_KIB: i64 = 256;

fn open_connection(path: &Path, cache_kib: i64) -> rusqlite::Result<Connection> {
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
fn lock_exclusively(path: &Path) -> Result<std::fs::File, StoreError> {
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

fn migrate(conn: &mut Connection) -> rusqlite::Result<usize> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)",
    )?;
    let current: i64 = conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    let mut applied = 0;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
            params![i as i64 + 1, timestamp(&Utc::now())],
        )?;
        tx.commit()?;
        applied += 1;
    }
    Ok(applied)
}

impl SqliteStore {
    /// Open (creating if needed) the database file and apply pending migrations.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() && !dir.exists() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| StoreError::unavailable_by(dir.display(), e))?;
            }
        }
        let lock = lock_exclusively(path)?;
        let mut conn = open_connection(path, WRITER_CACHE_KIB)
            .map_err(|e| StoreError::unavailable_by(path.display(), e))?;
        let applied = migrate(&mut conn)?;
        // One process owns a SQLite store: claims left in it belong to a process that died,
        // so its unfinished outbox work is due again at once.
        let released = conn.execute(
            "UPDATE outbox SET claimed_until = 0 WHERE claimed_until > 0",
            [],
        )?;
        if released > 0 {
            tracing::info!(
                released,
                "outbox work left by a stopped process is due again"
            );
        }
        if applied > 0 {
            tracing::info!(path = %path.display(), applied, "store migrations applied");
        }
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("snowgate-store-writer".into())
            .spawn(move || writer_loop(conn, rx))
            .map_err(StoreError::unavailable_from)?;
        let (read_tx, read_rx) = mpsc::channel::<ReadJob>();
        let read_rx = Arc::new(Mutex::new(read_rx));
        for i in 0..READERS {
            let conn = open_connection(path, READER_CACHE_KIB)
                .map_err(|e| StoreError::unavailable_by(path.display(), e))?;
            let rx = read_rx.clone();
            std::thread::Builder::new()
                .name(format!("snowgate-store-reader-{i}"))
                .spawn(move || reader_loop(conn, rx))
                .map_err(StoreError::unavailable_from)?;
        }
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                id: NEXT_STORE_ID.fetch_add(1, Ordering::Relaxed),
                path: path.to_path_buf(),
                writer: Mutex::new(tx),
                readers: Mutex::new(read_tx),
                _lock: lock,
            }),
        })
    }

    /// Run `f` in the writer's transaction; resolves once the batch holding it is committed.
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<Result<T, StoreError>>();
        let job: Job = Box::new(move |conn| {
            let result = f(conn);
            let ok = result.is_ok();
            let reply: Reply = Box::new(move |commit| {
                let out = match commit {
                    Ok(()) => result,
                    Err(e) => Err(StoreError::unavailable(format!("commit failed: {e}"))),
                };
                let _ = tx.send(out);
            });
            (ok, reply)
        });
        self.inner
            .writer
            .lock()
            .map_err(|_| StoreError::unavailable("writer lock poisoned"))?
            .send(job)
            .map_err(|_| StoreError::unavailable("the store writer has stopped"))?;
        rx.await
            .map_err(|_| StoreError::unavailable("the store writer dropped the request"))?
    }

    /// Run a single-row lookup by key on this thread's own read connection. Such a lookup is
    /// an index probe of a few cached pages (tens of microseconds), cheaper than the two thread
    /// wake-ups a reader thread costs (about 0.1 ms on a VM with idle vCPUs), and it sits on
    /// the decision path: callback → gate by token. Scans and lists stay on the reader threads.
    fn read_point<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        POINT_READERS.with(|cell| {
            let mut readers = cell.borrow_mut();
            if !readers.contains_key(&self.inner.id) {
                // Connections of stores closed earlier in this thread (tests) are let go.
                if readers.len() >= 4 {
                    readers.clear();
                }
                let conn = open_connection(&self.inner.path, READER_CACHE_KIB)
                    .map_err(|e| StoreError::unavailable_by(self.inner.path.display(), e))?;
                readers.insert(self.inner.id, conn);
            }
            f(&readers[&self.inner.id])
        })
    }

    /// Run `f` on one of the reader threads. A fixed pool: thousands of long-polls arriving
    /// together queue here instead of growing the blocking thread pool (and memory) by a
    /// thread each.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<Result<T, StoreError>>();
        let job: ReadJob = Box::new(move |conn| {
            let _ = tx.send(f(conn));
        });
        self.inner
            .readers
            .lock()
            .map_err(|_| StoreError::unavailable("reader lock poisoned"))?
            .send(job)
            .map_err(|_| StoreError::unavailable("the store readers have stopped"))?;
        rx.await
            .map_err(|_| StoreError::unavailable("a store reader dropped the request"))?
    }
}

fn reader_loop(conn: Connection, rx: Arc<Mutex<mpsc::Receiver<ReadJob>>>) {
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

fn writer_loop(conn: Connection, rx: mpsc::Receiver<Job>) {
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

fn parse_time(s: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::corrupt_by(format!("timestamp `{s}`"), e))
}

fn gate_from_row(row: &Row<'_>) -> rusqlite::Result<Result<Gate, StoreError>> {
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

fn load_gate(conn: &Connection, id: &str) -> Result<Option<Gate>, StoreError> {
    // Cached statements: these run several times per decision.
    conn.prepare_cached(&format!("SELECT {GATE_COLUMNS} FROM gates WHERE id = ?1"))?
        .query_row(params![id], gate_from_row)
        .optional()?
        .transpose()
}

fn insert_event(
    conn: &Connection,
    gate_id: &str,
    actor: &Actor,
    kind: &str,
    from: Option<GateState>,
    to: Option<GateState>,
    message: &str,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO events (gate_id, at, actor, kind, from_state, to_state, message) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
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

fn insert_outbox(
    conn: &Connection,
    gate_id: &str,
    item: &NewOutbox,
    claimed_until: i64,
) -> Result<i64, StoreError> {
    conn.prepare_cached(
        "INSERT INTO outbox (gate_id, kind, payload, due_ms, claimed_until, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
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

fn outbox_from_row(row: &Row<'_>) -> rusqlite::Result<Result<OutboxItem, StoreError>> {
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

/// The gates one of the shared statements selects.
fn gates_by(
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

#[async_trait]
impl GateStore for SqliteStore {
    async fn open_gate(
        &self,
        spec: GateSpec,
        token: CallbackToken,
        claim: Duration,
    ) -> Result<Opened, StoreError> {
        self.write(move |conn| {
            let existing: Option<String> = conn
                .query_row(
                    "SELECT id FROM gates WHERE job_url = ?1 AND build_number = ?2 AND stage_name = ?3",
                    params![spec.job_url, spec.build_number, spec.stage_name],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(id) = existing {
                let gate = load_gate(conn, &id)?
                    .ok_or_else(|| StoreError::corrupt("gate vanished"))?;
                return Ok(Opened { gate, created: false, register_item: None });
            }
            let id = Uuid::new_v4();
            let id_s = id.to_string();
            let now = Utc::now();
            let spec_json = serde_json::to_string(&spec)
                .map_err(StoreError::corrupt_from)?;
            conn.execute(
                "INSERT INTO gates (id, job_url, build_number, stage_name, state, proceed, message, \
                 spec, callback_token, token_hash, created_at, created_ms, updated_at, poll_interval_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, NULL, ?6, ?7, ?8, ?9, ?10, ?11, ?10, ?12)",
                params![
                    id_s,
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
            let item = NewOutbox { kind: OutboxKind::Register, payload: serde_json::json!({}) };
            let claimed_until = now_ms() + claim.as_millis() as i64;
            let outbox_id = insert_outbox(conn, &id_s, &item, claimed_until)?;
            let gate = load_gate(conn, &id_s)?
                .ok_or_else(|| StoreError::corrupt("gate vanished"))?;
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
        })
        .await
    }

    async fn gate(&self, id: Uuid) -> Result<Option<Gate>, StoreError> {
        self.read_point(|conn| load_gate(conn, &id.to_string()))
    }

    async fn gate_by_token(&self, raw_token: &str) -> Result<Option<Gate>, StoreError> {
        let hash = CallbackToken::lookup_hash(raw_token);
        self.read_point(|conn| {
            let gate = conn
                .prepare_cached(&format!(
                    "SELECT {GATE_COLUMNS} FROM gates WHERE token_hash = ?1"
                ))?
                .query_row(params![hash], gate_from_row)
                .optional()?
                .transpose()?;
            // The index lookup is by hash; the token itself is compared in constant time.
            Ok(gate.filter(|g| g.callback_token.matches(raw_token)))
        })
    }

    async fn list_gates(
        &self,
        state: Option<GateState>,
        limit: u32,
    ) -> Result<Vec<Gate>, StoreError> {
        self.read(move |conn| {
            let mut out = Vec::new();
            let mut push = |row: &Row<'_>| -> rusqlite::Result<()> {
                out.push(gate_from_row(row)?);
                Ok(())
            };
            match state {
                Some(s) => {
                    let mut stmt = conn.prepare_cached(&format!(
                        "SELECT {GATE_COLUMNS} FROM gates WHERE state = ?1 ORDER BY created_ms DESC, id LIMIT ?2"
                    ))?;
                    let mut rows = stmt.query(params![s.as_str(), limit])?;
                    while let Some(r) = rows.next()? {
                        push(r)?;
                    }
                }
                None => {
                    let mut stmt = conn.prepare_cached(&format!(
                        "SELECT {GATE_COLUMNS} FROM gates ORDER BY created_ms DESC, id LIMIT ?1"
                    ))?;
                    let mut rows = stmt.query(params![limit])?;
                    while let Some(r) = rows.next()? {
                        push(r)?;
                    }
                }
            }
            out.into_iter().collect()
        })
        .await
    }

    async fn open_gates(&self, limit: u32) -> Result<Vec<Gate>, StoreError> {
        self.read(move |conn| gates_by(conn, sql::OPEN_GATES, params![limit]))
            .await
    }

    async fn recent_decisions(&self, limit: u32) -> Result<Vec<Gate>, StoreError> {
        self.read(move |conn| gates_by(conn, sql::RECENT_DECISIONS, params![limit]))
            .await
    }

    async fn gates_of_build(
        &self,
        build_number: &str,
        limit: u32,
    ) -> Result<Vec<Gate>, StoreError> {
        let build = build_number.to_string();
        self.read(move |conn| gates_by(conn, sql::GATES_OF_BUILD, params![build, limit]))
            .await
    }

    async fn events(&self, id: Uuid) -> Result<Vec<Event>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, at, actor, kind, from_state, to_state, message FROM events \
                 WHERE gate_id = ?1 ORDER BY id",
            )?;
            let rows = stmt.query_map(params![id.to_string()], |r| {
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
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn transition(
        &self,
        t: Transition,
        follow_ups: FollowUps,
    ) -> Result<TransitionOutcome, StoreError> {
        self.write(move |conn| {
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
                let current = load_gate(conn, &id)?
                    .ok_or_else(|| StoreError::corrupt("gate vanished"))?;
                return Ok(TransitionOutcome::Conflict(current));
            }
            // The compare-and-set admits exactly the states the domain's table allows.
            let placeholders = sources_of(t.to)
                .iter()
                .map(|s| format!("'{}'", s.as_str()))
                .collect::<Vec<_>>()
                .join(",");
            let now = timestamp(&Utc::now());
            let terminal = t.to.is_terminal();
            let cr_json = match &t.change_request {
                Some(cr) => Some(
                    serde_json::to_string(cr).map_err(StoreError::corrupt_from)?,
                ),
                None => None,
            };
            // Compare-and-set: touches exactly one row, or none when someone else decided first.
            // The decided row comes back from the same statement (`RETURNING`): no second read.
            let after = conn.prepare_cached(
                &format!(
                    "UPDATE gates SET state = ?1, proceed = ?2, message = ?3, updated_at = ?4, \
                     decided_at = CASE WHEN ?5 THEN ?4 ELSE decided_at END, \
                     decided_by = CASE WHEN ?5 THEN ?6 ELSE decided_by END, \
                     change_request = COALESCE(?7, change_request), \
                     next_poll_ms = CASE WHEN ?5 THEN NULL ELSE COALESCE(?9, next_poll_ms) END, \
                     creation_deadline_ms = CASE WHEN ?5 THEN NULL ELSE COALESCE(?10, creation_deadline_ms) END, \
                     step_deadline_ms = CASE WHEN ?5 THEN NULL ELSE COALESCE(?11, step_deadline_ms) END \
                     WHERE id = ?8 AND state IN ({placeholders}) RETURNING {GATE_COLUMNS}"
                ),
            )?
            .query_row(params![
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
                ], gate_from_row)
            .optional()?
            .transpose()?;
            let Some(after) = after else {
                let current = load_gate(conn, &id)?
                    .ok_or_else(|| StoreError::corrupt("gate vanished"))?;
                return Ok(TransitionOutcome::Conflict(current));
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
        })
        .await
    }

    async fn update_change_request(
        &self,
        id: Uuid,
        u: CrUpdate,
    ) -> Result<Option<Gate>, StoreError> {
        self.write(move |conn| {
            let id_s = id.to_string();
            let cr_json = serde_json::to_string(&u.cr).map_err(StoreError::corrupt_from)?;
            // Only open gates take new CR data, messages and timers; a decided gate keeps
            // its record as it was decided.
            let changed = conn.execute(
                "UPDATE gates SET change_request = ?1, updated_at = ?2, message = COALESCE(?3, message), \
                 creation_deadline_ms = CASE WHEN ?4 THEN NULL ELSE creation_deadline_ms END, \
                 step_deadline_ms = COALESCE(step_deadline_ms, ?5), \
                 next_poll_ms = COALESCE(?6, next_poll_ms) \
                 WHERE id = ?7 AND state IN ('registering', 'pending')",
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
        })
        .await
    }

    async fn claim_polls(
        &self,
        limit: u32,
        default_interval: Duration,
    ) -> Result<Vec<Gate>, StoreError> {
        self.write(move |conn| {
            let now = now_ms();
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {GATE_COLUMNS} FROM gates WHERE state = 'pending' AND next_poll_ms <= ?1 \
                 ORDER BY next_poll_ms LIMIT ?2"
            ))?;
            let gates = stmt
                .query_map(params![now, limit], gate_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?
                .into_iter()
                .collect::<Result<Vec<_>, _>>()?;
            for g in &gates {
                conn.execute(
                    "UPDATE gates SET next_poll_ms = ?1 + COALESCE(poll_interval_ms, ?2) WHERE id = ?3",
                    params![now, default_interval.as_millis() as i64, g.id.to_string()],
                )?;
            }
            Ok(gates)
        })
        .await
    }

    async fn next_poll_due(&self) -> Result<Option<i64>, StoreError> {
        self.read(|conn| {
            Ok(conn.query_row(
                "SELECT MIN(next_poll_ms) FROM gates WHERE state = 'pending' AND next_poll_ms IS NOT NULL",
                [],
                |r| r.get(0),
            )?)
        })
        .await
    }

    async fn due_deadlines(&self, limit: u32) -> Result<Vec<(Gate, Deadline)>, StoreError> {
        self.read(move |conn| {
            let now = now_ms();
            let mut out = Vec::new();
            for (column, kind) in [
                ("creation_deadline_ms", Deadline::Creation),
                ("step_deadline_ms", Deadline::Step),
            ] {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {GATE_COLUMNS} FROM gates WHERE {column} <= ?1 \
                     AND state IN ('registering', 'pending') ORDER BY {column} LIMIT ?2"
                ))?;
                let rows = stmt.query_map(params![now, limit], gate_from_row)?;
                for row in rows {
                    out.push((row??, kind));
                }
            }
            Ok(out)
        })
        .await
    }

    async fn next_deadline(&self) -> Result<Option<i64>, StoreError> {
        self.read(|conn| {
            Ok(conn.query_row(
                "SELECT MIN(MIN(COALESCE(creation_deadline_ms, 9223372036854775807), \
                 COALESCE(step_deadline_ms, 9223372036854775807))) FROM gates \
                 WHERE state IN ('registering', 'pending') \
                 AND (creation_deadline_ms IS NOT NULL OR step_deadline_ms IS NOT NULL)",
                [],
                |r| r.get(0),
            )?)
        })
        .await
    }

    async fn open_gates_after(
        &self,
        after: Option<(i64, Uuid)>,
        limit: u32,
    ) -> Result<Vec<(i64, Gate)>, StoreError> {
        self.read(move |conn| {
            let (ms, id) = after.map(|(m, i)| (m, i.to_string())).unwrap_or((i64::MIN, String::new()));
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {GATE_COLUMNS}, created_ms FROM gates WHERE state IN ('registering', 'pending') \
                 AND (created_ms, id) > (?1, ?2) ORDER BY created_ms, id LIMIT ?3"
            ))?;
            let rows = stmt.query_map(params![ms, id, limit], |r| {
                let created: i64 = r.get(14)?;
                Ok(gate_from_row(r)?.map(|g| (created, g)))
            })?;
            let mut out = Vec::new();
            for row in rows {
                out.push(row??);
            }
            Ok(out)
        })
        .await
    }

    async fn claim_outbox(
        &self,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        self.write(move |conn| {
            let now = now_ms();
            let mut stmt = conn.prepare_cached(
                "SELECT id, gate_id, kind, payload, attempts, created_at FROM outbox \
                 WHERE due_ms <= ?1 AND claimed_until <= ?1 ORDER BY due_ms LIMIT ?2",
            )?;
            let items = stmt
                .query_map(params![now, limit], outbox_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?
                .into_iter()
                .collect::<Result<Vec<_>, _>>()?;
            let until = now + lease.as_millis() as i64;
            for item in &items {
                conn.execute(
                    "UPDATE outbox SET claimed_until = ?1 WHERE id = ?2",
                    params![until, item.id],
                )?;
            }
            Ok(items)
        })
        .await
    }

    async fn finish_outbox(
        &self,
        item: &OutboxItem,
        result: OutboxResult,
    ) -> Result<(), StoreError> {
        let item = item.clone();
        self.write(move |conn| {
            let gate_id = item.gate_id.to_string();
            let kind = item.kind.as_str();
            match &result {
                OutboxResult::Done { message } => {
                    conn.execute("DELETE FROM outbox WHERE id = ?1", params![item.id])?;
                    insert_event(conn, &gate_id, &Actor::Snowgate, &format!("{kind}_done"), None, None, message)?;
                }
                OutboxResult::Retry { after, error } => {
                    conn.execute(
                        "UPDATE outbox SET attempts = attempts + 1, due_ms = ?1, claimed_until = 0, last_error = ?2 WHERE id = ?3",
                        params![now_ms() + after.as_millis() as i64, error, item.id],
                    )?;
                    insert_event(
                        conn,
                        &gate_id,
                        &Actor::Snowgate,
                        &format!("{kind}_retry"),
                        None,
                        None,
                        &format!("attempt {} failed: {error}; retrying in {:.1}s", item.attempts + 1, after.as_secs_f64()),
                    )?;
                }
                OutboxResult::GiveUp { error } => {
                    conn.execute("DELETE FROM outbox WHERE id = ?1", params![item.id])?;
                    insert_event(conn, &gate_id, &Actor::Snowgate, &format!("{kind}_failed"), None, None, error)?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn next_outbox_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.read(|conn| {
            let ms: Option<i64> = conn.query_row(
                "SELECT MIN(MAX(due_ms, claimed_until)) FROM outbox",
                [],
                |r| r.get(0),
            )?;
            Ok(ms.and_then(|m| Utc.timestamp_millis_opt(m).single()))
        })
        .await
    }

    async fn complete_gate(
        &self,
        id: Uuid,
        result: String,
        actor: Actor,
        outbox: Vec<NewOutbox>,
    ) -> Result<Completion, StoreError> {
        self.write(move |conn| {
            let id_s = id.to_string();
            let Some(gate) = load_gate(conn, &id_s)? else {
                return Ok(Completion::NotFound);
            };
            if !gate.state.is_terminal() {
                return Ok(Completion::NotDecided(gate));
            }
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
            insert_event(conn, &id_s, &actor, "completed", None, None, &format!("the stage finished: {result}"))?;
            for item in &outbox {
                insert_outbox(conn, &id_s, item, 0)?;
            }
            Ok(Completion::Recorded(gate))
        })
        .await
    }

    async fn acknowledge_late(&self, id: Uuid, message: String) -> Result<bool, StoreError> {
        self.write(move |conn| {
            let id_s = id.to_string();
            let added = conn.execute(
                // Once per gate: not while one is queued (the unique index), nor after one was
                // sent or given up (its event stays when the outbox row is gone).
                "INSERT INTO outbox (gate_id, kind, payload, due_ms, claimed_until, created_at) \
                 SELECT ?1, 'acknowledge', '{}', ?2, 0, ?3 WHERE NOT EXISTS ( \
                   SELECT 1 FROM events WHERE gate_id = ?1 \
                   AND kind IN ('acknowledge_done', 'acknowledge_failed', 'late_callback')) \
                 ON CONFLICT DO NOTHING",
                params![id_s, now_ms(), timestamp(&Utc::now())],
            )?;
            if added > 0 {
                insert_event(
                    conn,
                    &id_s,
                    &Actor::ServiceNow,
                    "late_callback",
                    None,
                    None,
                    &message,
                )?;
            }
            Ok(added > 0)
        })
        .await
    }

    async fn outbox_backlog(&self) -> Result<u64, StoreError> {
        self.read(|conn| {
            let n: i64 = conn.query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get(0))?;
            Ok(n as u64)
        })
        .await
    }

    async fn count_by_state(&self) -> Result<Vec<(GateState, u64)>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&sql::sqlite(sql::COUNT_BY_STATE))?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            let mut out = Vec::new();
            for row in rows {
                let (s, n) = row?;
                if let Some(state) = GateState::parse(&s) {
                    out.push((state, n as u64));
                }
            }
            Ok(out)
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|conn| {
            conn.query_row("SELECT COUNT(*) FROM schema_migrations", [], |r| {
                r.get::<_, i64>(0)
            })?;
            Ok(())
        })
        .await?;
        // The writer must be alive too.
        self.write(|_| Ok(())).await
    }
}
