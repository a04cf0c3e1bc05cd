//! SQLite backend: one file in WAL mode with `synchronous=FULL`, versioned migrations,
//! one writer thread that commits concurrent writes together (group commit: one fsync for
//! many decisions, each caller answered only after the commit that holds its data), and a
//! small pool of read connections.
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::sql;
use super::{
    Completion, CrUpdate, DecisionTimes, Event, FollowUps, GateStore, Hold, NewOutbox, Opened,
    OutboxItem, OutboxResult, StoreError, TitleLock, Transition, TransitionOutcome,
};
use crate::domain::freeze::Freeze;
use crate::domain::gate::Actor;
use crate::domain::timers::Deadline;
use crate::domain::{CallbackToken, Gate, GateSpec, GateState};
use conn::{
    lock_exclusively, migrate, open_connection, reader_loop, writer_loop, Job, ReadJob, Reply,
    READER_CACHE_KIB, WRITER_CACHE_KIB,
};
use rows::{event_from_row, gates_by, load_gate};

mod conn;
mod gates;
mod policy;
mod rows;
mod titles;
mod work;

/// Reader threads, each with its own connection (WAL lets them read while the writer writes).
const READERS: usize = 4;

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
    /// Change-request title searches, one at a time per title (one process owns a SQLite
    /// store: an in-process lock suffices).
    titles: titles::Titles,
}

static NEXT_STORE_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// Per-thread read connections for single-row lookups by key, by store id.
    static POINT_READERS: RefCell<HashMap<u64, Connection>> = RefCell::new(HashMap::new());
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
                titles: titles::Titles::default(),
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

#[async_trait]
impl GateStore for SqliteStore {
    async fn open_gate(
        &self,
        spec: GateSpec,
        token: CallbackToken,
        claim: Duration,
    ) -> Result<Opened, StoreError> {
        self.write(move |conn| gates::open_gate(conn, spec, token, claim))
            .await
    }

    async fn gate(&self, id: Uuid) -> Result<Option<Gate>, StoreError> {
        self.read_point(|conn| load_gate(conn, &id.to_string()))
    }

    async fn gate_by_token(&self, raw_token: &str) -> Result<Option<Gate>, StoreError> {
        self.read_point(|conn| gates::gate_by_token(conn, raw_token))
    }

    async fn list_gates(
        &self,
        state: Option<GateState>,
        limit: u32,
    ) -> Result<Vec<Gate>, StoreError> {
        self.read(move |conn| match state {
            Some(s) => gates_by(conn, sql::GATES_IN_STATE, params![s.as_str(), limit]),
            None => gates_by(conn, sql::ALL_GATES, params![limit]),
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

    async fn decision_times(
        &self,
        since: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<DecisionTimes>, StoreError> {
        let since = crate::domain::gate::timestamp(&since);
        self.read(move |conn| rows::decision_times_since(conn, &since, limit))
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

    async fn open_gates_of_stage(
        &self,
        job_url: &str,
        stage_name: &str,
        limit: u32,
    ) -> Result<Vec<Gate>, StoreError> {
        let (job, stage) = (job_url.to_string(), stage_name.to_string());
        self.read(move |conn| gates_by(conn, sql::OPEN_GATES_OF_STAGE, params![job, stage, limit]))
            .await
    }

    async fn events(&self, id: Uuid) -> Result<Vec<Event>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&sql::sqlite(sql::EVENTS_OF_GATE))?;
            let rows = stmt.query_map(params![id.to_string()], event_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn transition(
        &self,
        t: Transition,
        follow_ups: FollowUps,
    ) -> Result<TransitionOutcome, StoreError> {
        self.write(move |conn| gates::transition_gate(conn, t, follow_ups))
            .await
    }

    async fn update_change_request(
        &self,
        id: Uuid,
        u: CrUpdate,
    ) -> Result<Option<Gate>, StoreError> {
        self.write(move |conn| gates::update_change_request(conn, id, u))
            .await
    }

    async fn claim_polls(
        &self,
        limit: u32,
        default_interval: Duration,
    ) -> Result<Vec<Gate>, StoreError> {
        self.write(move |conn| work::claim_polls(conn, limit, default_interval))
            .await
    }

    async fn next_poll_due(&self) -> Result<Option<i64>, StoreError> {
        self.read(work::next_poll_due).await
    }

    async fn due_deadlines(&self, limit: u32) -> Result<Vec<(Gate, Deadline)>, StoreError> {
        self.read(move |conn| work::due_deadlines(conn, limit))
            .await
    }

    async fn next_deadline(&self) -> Result<Option<i64>, StoreError> {
        self.read(|conn| {
            let deadline = work::next_deadline(conn)?;
            let hold = policy::next_hold_due(conn)?;
            Ok(deadline.into_iter().chain(hold).min())
        })
        .await
    }

    async fn open_gates_after(
        &self,
        after: Option<(i64, Uuid)>,
        limit: u32,
    ) -> Result<Vec<(i64, Gate)>, StoreError> {
        self.read(move |conn| work::open_gates_after(conn, after, limit))
            .await
    }

    async fn claim_outbox(
        &self,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        self.write(move |conn| work::claim_outbox(conn, limit, lease))
            .await
    }

    async fn finish_outbox(
        &self,
        item: &OutboxItem,
        result: OutboxResult,
    ) -> Result<(), StoreError> {
        let item = item.clone();
        self.write(move |conn| work::finish_outbox(conn, &item, &result))
            .await
    }

    async fn next_outbox_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.read(work::next_outbox_due).await
    }

    async fn complete_gate(
        &self,
        id: Uuid,
        result: String,
        actor: Actor,
        outbox: Vec<NewOutbox>,
    ) -> Result<Completion, StoreError> {
        self.write(move |conn| gates::complete_gate(conn, id, result, actor, outbox))
            .await
    }

    async fn acknowledge_late(&self, id: Uuid, message: String) -> Result<bool, StoreError> {
        self.write(move |conn| work::acknowledge_late(conn, id, &message))
            .await
    }

    async fn outbox_backlog(&self) -> Result<u64, StoreError> {
        self.read(work::outbox_backlog).await
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

    async fn add_freeze(&self, freeze: &Freeze) -> Result<(), StoreError> {
        let freeze = freeze.clone();
        self.write(move |conn| policy::add_freeze(conn, &freeze))
            .await
    }

    async fn freezes(&self, now_ms: i64) -> Result<Vec<Freeze>, StoreError> {
        self.read(move |conn| policy::freezes(conn, now_ms)).await
    }

    async fn delete_freeze(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.write(move |conn| policy::delete_freeze(conn, &id))
            .await
    }

    async fn hold_approval(
        &self,
        hold: Hold,
        message: String,
        outbox: Vec<NewOutbox>,
    ) -> Result<TransitionOutcome, StoreError> {
        self.write(move |conn| policy::hold_approval(conn, &hold, &message, &outbox))
            .await
    }

    async fn holds(&self, before_ms: i64, limit: u32) -> Result<Vec<Hold>, StoreError> {
        self.read(move |conn| policy::holds(conn, before_ms, limit))
            .await
    }

    async fn extend_hold(&self, hold: &Hold) -> Result<(), StoreError> {
        let hold = hold.clone();
        self.write(move |conn| policy::extend_hold(conn, &hold))
            .await
    }

    async fn clear_hold(&self, gate_id: Uuid) -> Result<(), StoreError> {
        self.write(move |conn| policy::clear_hold(conn, gate_id))
            .await
    }

    async fn queue_evidence(
        &self,
        gate_id: Uuid,
        sha256: &str,
        name: &str,
        item: NewOutbox,
        message: &str,
    ) -> Result<crate::store::EvidenceQueued, StoreError> {
        let (sha256, name, message) = (sha256.to_string(), name.to_string(), message.to_string());
        self.write(move |conn| {
            policy::queue_evidence(conn, gate_id, &sha256, &name, &item, &message)
        })
        .await
    }

    async fn lock_title(&self, title: &str) -> Result<TitleLock, StoreError> {
        Ok(self.inner.titles.lock(title).await)
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
