//! PostgreSQL backend, for several replicas on one database (SPEC §8): migrations under an
//! advisory lock, a bounded pool with connect and statement timeouts, compare-and-set
//! transitions that `NOTIFY` the gate id on commit (other replicas wake their long-polls with
//! it), and background work claimed with `FOR UPDATE SKIP LOCKED` and expiring leases.
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use deadpool_postgres::GenericClient;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::Row;
use tokio_postgres_rustls::MakeRustlsConnect;
use uuid::Uuid;

use super::sql::{self, GATE_COLUMNS};
use super::{
    Completion, CrUpdate, Event, FollowUps, GateStore, NewOutbox, Opened, OutboxItem, OutboxKind,
    OutboxResult, StoreError, StoreSignal, Transition, TransitionOutcome,
};
use crate::domain::gate::{sources_of, timestamp, transition, Actor};
use crate::domain::timers::{Deadline, Timers};
use crate::domain::{CallbackToken, ChangeRequest, Gate, GateSpec, GateState};

const CHANNEL: &str = "snowgate_gate";
/// An arbitrary constant identifying snowgate's migration lock.
const MIGRATION_LOCK: i64 = 0x736e_6f77_6761_7465;

/// The schema's versions, in order (`migrations/postgres/NNN_*.sql`): entry `i` moves the schema
/// from version `i` to `i + 1`, in one transaction.
const MIGRATIONS: &[&str] = &[
    include_str!("../../../../migrations/postgres/001_init.sql"),
    include_str!("../../../../migrations/postgres/002_one_acknowledgement.sql"),
    include_str!("../../../../migrations/postgres/003_status_and_lookup.sql"),
];

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// A PostgreSQL or pool error with its causes (a refused TLS handshake says why only there).
fn pg(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
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

fn parse_time(s: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::corrupt_by(format!("timestamp `{s}`"), e))
}

fn gate_from_row(row: &Row) -> Result<Gate, StoreError> {
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

fn outbox_from_row(row: &Row) -> Result<OutboxItem, StoreError> {
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

async fn load_gate(c: &impl GenericClient, id: &str) -> Result<Option<Gate>, StoreError> {
    // Prepared once per connection: the hot statements save a round trip each time.
    let stmt = c
        .prepare_cached(&format!("SELECT {GATE_COLUMNS} FROM gates WHERE id = $1"))
        .await
        .map_err(pg)?;
    let row = c.query_opt(&stmt, &[&id]).await.map_err(pg)?;
    row.as_ref().map(gate_from_row).transpose()
}

async fn insert_event(
    c: &impl GenericClient,
    gate_id: &str,
    actor: &Actor,
    kind: &str,
    from: Option<GateState>,
    to: Option<GateState>,
    message: &str,
) -> Result<(), StoreError> {
    let stmt = c
        .prepare_cached(
            "INSERT INTO events (gate_id, at, actor, kind, from_state, to_state, message) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .await
        .map_err(pg)?;
    c.execute(
        &stmt,
        &[
            &gate_id,
            &timestamp(&Utc::now()),
            &actor.to_string(),
            &kind,
            &from.map(|s| s.as_str()),
            &to.map(|s| s.as_str()),
            &message,
        ],
    )
    .await
    .map_err(pg)?;
    Ok(())
}

async fn insert_outbox(
    c: &impl GenericClient,
    gate_id: &str,
    item: &NewOutbox,
    claimed_until: i64,
) -> Result<i64, StoreError> {
    let stmt = c
        .prepare_cached(
            "INSERT INTO outbox (gate_id, kind, payload, due_ms, claimed_until, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
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

#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    config: Arc<tokio_postgres::Config>,
    tls: MakeRustlsConnect,
    /// This store's own mark in its notifications (`<origin> <gate id>`): its listener skips
    /// them, since the process that decided a gate wakes its own long-polls itself (with the
    /// decision's timing) and its workers need no takeover wake for it.
    origin: Arc<str>,
}

/// Connection settings for [`PostgresStore::connect`].
pub struct PgOptions {
    pub url: String,
    pub password: Option<String>,
    pub pool_size: usize,
    pub connect_timeout: Duration,
    pub statement_timeout: Duration,
    /// `store.ca_file`: the CA of the server's certificate (`sslmode` verify-ca/verify-full).
    pub ca_file: Option<std::path::PathBuf>,
}

impl PostgresStore {
    /// Connect, and apply pending migrations under an advisory lock (replicas starting
    /// together never race).
    /// Whether this store's connections are encrypted, as the server sees them.
    pub async fn uses_tls(&self) -> Result<bool, StoreError> {
        let c = self.client().await?;
        let row = c
            .query_one(
                "SELECT COALESCE((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false)",
                &[],
            )
            .await
            .map_err(pg)?;
        Ok(row.get(0))
    }

    pub async fn connect(o: PgOptions) -> Result<PostgresStore, StoreError> {
        let (url, sslmode) = super::pg_url::split_sslmode(&o.url)
            .map_err(|e| StoreError::unavailable(format!("store.url: {e}")))?;
        let tls = super::pg_tls::connector(sslmode, o.ca_file.as_deref())
            .map_err(StoreError::unavailable)?;
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::unavailable_by("store.url is not a PostgreSQL URL", e))?;
        config.ssl_mode(sslmode.negotiation());
        // A dead peer or a cut network is noticed by the kernel within about 25 s even on an
        // idle connection; a server that is alive but hung is bounded by `store.timeout`.
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(10));
        config.keepalives_interval(Duration::from_secs(5));
        config.keepalives_retries(3);
        if let Some(p) = &o.password {
            config.password(p);
        }
        config.connect_timeout(o.connect_timeout);
        config.options(format!(
            "-c statement_timeout={}",
            o.statement_timeout.as_millis()
        ));
        config.application_name("snowgate");
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(o.pool_size.max(2))
            .wait_timeout(Some(o.connect_timeout))
            .create_timeout(Some(o.connect_timeout))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(pg)?;
        let store = PostgresStore {
            pool,
            config: Arc::new(config),
            tls,
            origin: Uuid::new_v4().simple().to_string().into(),
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(pg)
    }

    /// The gates one of the shared statements selects.
    async fn gates_by(
        &self,
        statement: &'static str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Gate>, StoreError> {
        let c = self.client().await?;
        let stmt = c.prepare_cached(statement).await.map_err(pg)?;
        let rows = c.query(&stmt, params).await.map_err(pg)?;
        rows.iter().map(gate_from_row).collect()
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut c = self.client().await?;
        c.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(pg)?;
        let result = async {
            c.batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)",
            )
            .await
            .map_err(pg)?;
            let current: i32 = c
                .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[])
                .await
                .map_err(pg)?
                .get(0);
            for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
                let tx = c.transaction().await.map_err(pg)?;
                tx.batch_execute(sql).await.map_err(pg)?;
                tx.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                    &[&(i as i32 + 1), &timestamp(&Utc::now())],
                )
                .await
                .map_err(pg)?;
                tx.commit().await.map_err(pg)?;
                tracing::info!(version = i + 1, "store migration applied");
            }
            Ok::<(), StoreError>(())
        }
        .await;
        let _ = c
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
            .await;
        result
    }

    /// The listening connection: forwards every committed decision's gate id, and a `Resync`
    /// after each (re)connection so no long-poll hangs on a notification missed meanwhile.
    async fn listen_loop(
        config: Arc<tokio_postgres::Config>,
        tls: MakeRustlsConnect,
        origin: Arc<str>,
        tx: mpsc::Sender<StoreSignal>,
    ) {
        let mut delay = Duration::from_millis(200);
        loop {
            match config.connect(tls.clone()).await {
                Ok((client, mut conn)) => {
                    delay = Duration::from_millis(200);
                    let (msg_tx, mut msg_rx) = mpsc::unbounded_channel();
                    let driver = tokio::spawn(async move {
                        let mut stream = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
                        while let Some(m) = stream.next().await {
                            match m {
                                Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                                    if msg_tx.send(n.payload().to_string()).is_err() {
                                        break;
                                    }
                                }
                                Ok(_) => {}
                                Err(e) => {
                                    tracing::warn!(error = %e, "store: the listening connection failed");
                                    break;
                                }
                            }
                        }
                    });
                    if client
                        .batch_execute(&format!("LISTEN {CHANNEL}"))
                        .await
                        .is_ok()
                    {
                        if tx.send(StoreSignal::Resync).await.is_err() {
                            return;
                        }
                        while let Some(payload) = msg_rx.recv().await {
                            // `<origin> <gate id>`; a bare id from a replica of an older
                            // version during a rolling upgrade.
                            let (from, id) = payload.split_once(' ').unwrap_or(("", &payload));
                            if from == &*origin {
                                continue;
                            }
                            if let Ok(id) = Uuid::parse_str(id) {
                                if tx.send(StoreSignal::Decided(id)).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                    driver.abort();
                    tracing::warn!("store: listening connection lost; reconnecting");
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?delay, "store: cannot open the listening connection");
                }
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }
}

#[async_trait]
impl GateStore for PostgresStore {
    async fn open_gate(
        &self,
        spec: GateSpec,
        token: CallbackToken,
        claim: Duration,
    ) -> Result<Opened, StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(pg)?;
        let id = Uuid::new_v4();
        let id_s = id.to_string();
        let now = Utc::now();
        let spec_json = serde_json::to_string(&spec).map_err(StoreError::corrupt_from)?;
        // ON CONFLICT: a concurrent open of the same stage on another replica returns its gate.
        let inserted = tx
            .execute(
                "INSERT INTO gates (id, job_url, build_number, stage_name, state, proceed, message, \
                 spec, callback_token, token_hash, created_at, created_ms, updated_at, poll_interval_ms) \
                 VALUES ($1, $2, $3, $4, $5, NULL, $6, $7, $8, $9, $10, $11, $10, $12) \
                 ON CONFLICT (job_url, build_number, stage_name) DO NOTHING",
                &[
                    &id_s,
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
        if inserted == 0 {
            let row = tx
                .query_one(
                    &format!(
                        "SELECT {GATE_COLUMNS} FROM gates WHERE job_url = $1 AND build_number = $2 AND stage_name = $3"
                    ),
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
        let outbox_id =
            insert_outbox(&tx, &id_s, &item, now_ms() + claim.as_millis() as i64).await?;
        let gate = load_gate(&tx, &id_s)
            .await?
            .ok_or_else(|| StoreError::corrupt("gate vanished"))?;
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

    async fn gate(&self, id: Uuid) -> Result<Option<Gate>, StoreError> {
        let c = self.client().await?;
        load_gate(&c, &id.to_string()).await
    }

    async fn gate_by_token(&self, raw_token: &str) -> Result<Option<Gate>, StoreError> {
        let hash = CallbackToken::lookup_hash(raw_token);
        let c = self.client().await?;
        // Prepared once per connection: every callback starts here.
        let stmt = c
            .prepare_cached(&format!(
                "SELECT {GATE_COLUMNS} FROM gates WHERE token_hash = $1"
            ))
            .await
            .map_err(pg)?;
        let row = c.query_opt(&stmt, &[&hash]).await.map_err(pg)?;
        let gate = row.as_ref().map(gate_from_row).transpose()?;
        Ok(gate.filter(|g| g.callback_token.matches(raw_token)))
    }

    async fn list_gates(
        &self,
        state: Option<GateState>,
        limit: u32,
    ) -> Result<Vec<Gate>, StoreError> {
        let c = self.client().await?;
        let limit = limit as i64;
        let rows = match state {
            Some(s) => c
                .query(
                    &format!("SELECT {GATE_COLUMNS} FROM gates WHERE state = $1 ORDER BY created_ms DESC, id LIMIT $2"),
                    &[&s.as_str(), &limit],
                )
                .await,
            None => c
                .query(
                    &format!("SELECT {GATE_COLUMNS} FROM gates ORDER BY created_ms DESC, id LIMIT $1"),
                    &[&limit],
                )
                .await,
        }
        .map_err(pg)?;
        rows.iter().map(gate_from_row).collect()
    }

    async fn open_gates(&self, limit: u32) -> Result<Vec<Gate>, StoreError> {
        self.gates_by(sql::OPEN_GATES, &[&(limit as i64)]).await
    }

    async fn recent_decisions(&self, limit: u32) -> Result<Vec<Gate>, StoreError> {
        self.gates_by(sql::RECENT_DECISIONS, &[&(limit as i64)])
            .await
    }

    async fn gates_of_build(
        &self,
        build_number: &str,
        limit: u32,
    ) -> Result<Vec<Gate>, StoreError> {
        self.gates_by(sql::GATES_OF_BUILD, &[&build_number, &(limit as i64)])
            .await
    }

    async fn events(&self, id: Uuid) -> Result<Vec<Event>, StoreError> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT id, at, actor, kind, from_state, to_state, message FROM events WHERE gate_id = $1 ORDER BY id",
                &[&id.to_string()],
            )
            .await
            .map_err(pg)?;
        Ok(rows
            .iter()
            .map(|r| {
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
            })
            .collect())
    }

    async fn transition(
        &self,
        t: Transition,
        follow_ups: FollowUps,
    ) -> Result<TransitionOutcome, StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(pg)?;
        let id = t.gate_id.to_string();
        // Lock the row: a concurrent decision on another replica waits, then sees ours.
        let lock = tx
            .prepare_cached(&format!(
                "SELECT {GATE_COLUMNS} FROM gates WHERE id = $1 FOR UPDATE"
            ))
            .await
            .map_err(pg)?;
        let Some(row) = tx.query_opt(&lock, &[&id]).await.map_err(pg)? else {
            return Ok(TransitionOutcome::NotFound);
        };
        let before = gate_from_row(&row)?;
        if transition(before.state, t.to).is_err() {
            tx.commit().await.map_err(pg)?;
            return Ok(TransitionOutcome::Conflict(before));
        }
        // The compare-and-set admits exactly the states the domain's table allows.
        let sources: Vec<&str> = sources_of(t.to).iter().map(|s| s.as_str()).collect();
        let actor = t.actor.to_string();
        let now = timestamp(&Utc::now());
        let terminal = t.to.is_terminal();
        let cr_json = t
            .change_request
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(StoreError::corrupt_from)?;
        let update = tx
            .prepare_cached(&format!(
                "UPDATE gates SET state = $1, proceed = $2, message = $3, updated_at = $4, \
                 decided_at = CASE WHEN $5 THEN $4 ELSE decided_at END, \
                 decided_by = CASE WHEN $5 THEN $6 ELSE decided_by END, \
                 change_request = COALESCE($7, change_request), \
                 next_poll_ms = CASE WHEN $5 THEN NULL ELSE COALESCE($9, next_poll_ms) END, \
                 creation_deadline_ms = CASE WHEN $5 THEN NULL ELSE COALESCE($10, creation_deadline_ms) END, \
                 step_deadline_ms = CASE WHEN $5 THEN NULL ELSE COALESCE($11, step_deadline_ms) END \
                 WHERE id = $8 AND state = ANY($12) RETURNING {GATE_COLUMNS}"
            ))
            .await
            .map_err(pg)?;
        let updated = tx
            .query_opt(
                &update,
                &[
                    &t.to.as_str(),
                    &t.proceed,
                    &t.message,
                    &now,
                    &terminal,
                    &actor,
                    &cr_json,
                    &id,
                    &t.timers.next_poll_ms,
                    &t.timers.creation_deadline_ms,
                    &t.timers.step_deadline_ms,
                    &sources,
                ],
            )
            .await
            .map_err(pg)?;
        let Some(after) = updated.as_ref().map(gate_from_row).transpose()? else {
            let current = load_gate(&tx, &id)
                .await?
                .ok_or_else(|| StoreError::corrupt("gate vanished"))?;
            tx.commit().await.map_err(pg)?;
            return Ok(TransitionOutcome::Conflict(current));
        };
        insert_event(
            &tx,
            &id,
            &t.actor,
            t.event_kind,
            Some(before.state),
            Some(t.to),
            &t.message,
        )
        .await?;
        for item in t.outbox.iter().chain(follow_ups(&before, &t).iter()) {
            insert_outbox(&tx, &id, item, 0).await?;
        }
        // Delivered to every listening replica when (and only if) this commits.
        let notify = tx
            .prepare_cached("SELECT pg_notify($1, $2)")
            .await
            .map_err(pg)?;
        let payload = format!("{} {id}", self.origin);
        tx.execute(&notify, &[&CHANNEL, &payload])
            .await
            .map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        Ok(TransitionOutcome::Applied(after))
    }

    async fn update_change_request(
        &self,
        id: Uuid,
        u: CrUpdate,
    ) -> Result<Option<Gate>, StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(pg)?;
        let id_s = id.to_string();
        let cr_json = serde_json::to_string(&u.cr).map_err(StoreError::corrupt_from)?;
        let changed = tx
            .execute(
                "UPDATE gates SET change_request = $1, updated_at = $2, message = COALESCE($3, message), \
                 creation_deadline_ms = CASE WHEN $4 THEN NULL ELSE creation_deadline_ms END, \
                 step_deadline_ms = COALESCE(step_deadline_ms, $5), \
                 next_poll_ms = COALESCE($6, next_poll_ms) \
                 WHERE id = $7 AND state IN ('registering', 'pending')",
                &[
                    &cr_json,
                    &timestamp(&Utc::now()),
                    &u.message,
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

    async fn claim_polls(
        &self,
        limit: u32,
        default_interval: Duration,
    ) -> Result<Vec<Gate>, StoreError> {
        let c = self.client().await?;
        let now = now_ms();
        // Claimed by moving the next poll ahead in the same statement: no other replica
        // polls the same gate in this interval.
        let rows = c
            .query(
                &format!(
                    "UPDATE gates SET next_poll_ms = $1 + COALESCE(poll_interval_ms, $2) \
                     WHERE id IN (SELECT id FROM gates WHERE state = 'pending' AND next_poll_ms <= $1 \
                                  ORDER BY next_poll_ms LIMIT $3 FOR UPDATE SKIP LOCKED) \
                     RETURNING {GATE_COLUMNS}"
                ),
                &[&now, &(default_interval.as_millis() as i64), &(limit as i64)],
            )
            .await
            .map_err(pg)?;
        rows.iter().map(gate_from_row).collect()
    }

    async fn next_poll_due(&self) -> Result<Option<i64>, StoreError> {
        let c = self.client().await?;
        let row = c
            .query_one(
                "SELECT MIN(next_poll_ms) FROM gates WHERE state = 'pending' AND next_poll_ms IS NOT NULL",
                &[],
            )
            .await
            .map_err(pg)?;
        Ok(row.get(0))
    }

    async fn due_deadlines(&self, limit: u32) -> Result<Vec<(Gate, Deadline)>, StoreError> {
        let c = self.client().await?;
        let now = now_ms();
        let mut out = Vec::new();
        for (column, kind) in [
            ("creation_deadline_ms", Deadline::Creation),
            ("step_deadline_ms", Deadline::Step),
        ] {
            // Every replica may see a passed deadline; the decision's compare-and-set lets
            // exactly one of them apply it.
            let rows = c
                .query(
                    &format!(
                        "SELECT {GATE_COLUMNS} FROM gates WHERE {column} <= $1 \
                         AND state IN ('registering', 'pending') ORDER BY {column} LIMIT $2"
                    ),
                    &[&now, &(limit as i64)],
                )
                .await
                .map_err(pg)?;
            for r in &rows {
                out.push((gate_from_row(r)?, kind));
            }
        }
        Ok(out)
    }

    async fn next_deadline(&self) -> Result<Option<i64>, StoreError> {
        let c = self.client().await?;
        let row = c
            .query_one(
                "SELECT LEAST(MIN(creation_deadline_ms), MIN(step_deadline_ms)) FROM gates \
                 WHERE state IN ('registering', 'pending')",
                &[],
            )
            .await
            .map_err(pg)?;
        Ok(row.get(0))
    }

    async fn open_gates_after(
        &self,
        after: Option<(i64, Uuid)>,
        limit: u32,
    ) -> Result<Vec<(i64, Gate)>, StoreError> {
        let c = self.client().await?;
        let (ms, id) = after
            .map(|(m, i)| (m, i.to_string()))
            .unwrap_or((i64::MIN, String::new()));
        let rows = c
            .query(
                &format!(
                    "SELECT {GATE_COLUMNS}, created_ms FROM gates WHERE state IN ('registering', 'pending') \
                     AND (created_ms, id) > ($1, $2) ORDER BY created_ms, id LIMIT $3"
                ),
                &[&ms, &id, &(limit as i64)],
            )
            .await
            .map_err(pg)?;
        rows.iter()
            .map(|r| Ok((r.get::<_, i64>(14), gate_from_row(r)?)))
            .collect()
    }

    async fn claim_outbox(
        &self,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let c = self.client().await?;
        let now = now_ms();
        let rows = c
            .query(
                "UPDATE outbox SET claimed_until = $1 \
                 WHERE id IN (SELECT id FROM outbox WHERE due_ms <= $2 AND claimed_until <= $2 \
                              ORDER BY due_ms LIMIT $3 FOR UPDATE SKIP LOCKED) \
                 RETURNING id, gate_id, kind, payload, attempts, created_at",
                &[&(now + lease.as_millis() as i64), &now, &(limit as i64)],
            )
            .await
            .map_err(pg)?;
        rows.iter().map(outbox_from_row).collect()
    }

    async fn finish_outbox(
        &self,
        item: &OutboxItem,
        result: OutboxResult,
    ) -> Result<(), StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(pg)?;
        let gate_id = item.gate_id.to_string();
        let kind = item.kind.as_str();
        match &result {
            OutboxResult::Done { message } => {
                // Prepared once per connection: every acknowledgement ends here.
                let delete = tx
                    .prepare_cached("DELETE FROM outbox WHERE id = $1")
                    .await
                    .map_err(pg)?;
                tx.execute(&delete, &[&item.id]).await.map_err(pg)?;
                insert_event(
                    &tx,
                    &gate_id,
                    &Actor::Snowgate,
                    &format!("{kind}_done"),
                    None,
                    None,
                    message,
                )
                .await?;
            }
            OutboxResult::Retry { after, error } => {
                tx.execute(
                    "UPDATE outbox SET attempts = attempts + 1, due_ms = $1, claimed_until = 0, last_error = $2 WHERE id = $3",
                    &[&(now_ms() + after.as_millis() as i64), error, &item.id],
                )
                .await
                .map_err(pg)?;
                insert_event(
                    &tx,
                    &gate_id,
                    &Actor::Snowgate,
                    &format!("{kind}_retry"),
                    None,
                    None,
                    &format!(
                        "attempt {} failed: {error}; retrying in {:.1}s",
                        item.attempts + 1,
                        after.as_secs_f64()
                    ),
                )
                .await?;
            }
            OutboxResult::GiveUp { error } => {
                tx.execute("DELETE FROM outbox WHERE id = $1", &[&item.id])
                    .await
                    .map_err(pg)?;
                insert_event(
                    &tx,
                    &gate_id,
                    &Actor::Snowgate,
                    &format!("{kind}_failed"),
                    None,
                    None,
                    error,
                )
                .await?;
            }
        }
        tx.commit().await.map_err(pg)
    }

    async fn next_outbox_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let c = self.client().await?;
        let row = c
            .query_one(
                "SELECT MIN(GREATEST(due_ms, claimed_until)) FROM outbox",
                &[],
            )
            .await
            .map_err(pg)?;
        let ms: Option<i64> = row.get(0);
        Ok(ms.and_then(|m| Utc.timestamp_millis_opt(m).single()))
    }

    async fn complete_gate(
        &self,
        id: Uuid,
        result: String,
        actor: Actor,
        outbox: Vec<NewOutbox>,
    ) -> Result<Completion, StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(pg)?;
        let id_s = id.to_string();
        let Some(row) = tx
            .query_opt(
                &format!(
                    "SELECT {GATE_COLUMNS}, completed_result FROM gates WHERE id = $1 FOR UPDATE"
                ),
                &[&id_s],
            )
            .await
            .map_err(pg)?
        else {
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
        tx.execute(
            "UPDATE gates SET completed_result = $1, completed_at = $2 WHERE id = $3",
            &[&result, &timestamp(&Utc::now()), &id_s],
        )
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

    async fn outbox_backlog(&self) -> Result<u64, StoreError> {
        let c = self.client().await?;
        let n: i64 = c
            .query_one("SELECT COUNT(*) FROM outbox", &[])
            .await
            .map_err(pg)?
            .get(0);
        Ok(n as u64)
    }

    async fn count_by_state(&self) -> Result<Vec<(GateState, u64)>, StoreError> {
        let c = self.client().await?;
        let rows = c.query(sql::COUNT_BY_STATE, &[]).await.map_err(pg)?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let s: String = r.get(0);
                let n: i64 = r.get(1);
                GateState::parse(&s).map(|st| (st, n as u64))
            })
            .collect())
    }

    async fn acknowledge_late(&self, id: Uuid, message: String) -> Result<bool, StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(pg)?;
        let id_s = id.to_string();
        let added = tx
            .execute(
                // Once per gate: not while one is queued (the unique index), nor after one was
                // sent or given up (its event stays when the outbox row is gone).
                "INSERT INTO outbox (gate_id, kind, payload, due_ms, claimed_until, created_at) \
                 SELECT $1, 'acknowledge', '{}', $2, 0, $3 WHERE NOT EXISTS ( \
                   SELECT 1 FROM events WHERE gate_id = $1 \
                   AND kind IN ('acknowledge_done', 'acknowledge_failed', 'late_callback')) \
                 ON CONFLICT DO NOTHING",
                &[&id_s, &now_ms(), &timestamp(&Utc::now())],
            )
            .await
            .map_err(pg)?;
        if added > 0 {
            insert_event(
                &tx,
                &id_s,
                &Actor::ServiceNow,
                "late_callback",
                None,
                None,
                &message,
            )
            .await?;
        }
        tx.commit().await.map_err(pg)?;
        Ok(added > 0)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let c = self.client().await?;
        c.query_one("SELECT 1", &[]).await.map_err(pg)?;
        Ok(())
    }

    async fn listen(&self) -> Option<mpsc::Receiver<StoreSignal>> {
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(Self::listen_loop(
            self.config.clone(),
            self.tls.clone(),
            self.origin.clone(),
            tx,
        ));
        Some(rx)
    }

    async fn try_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        let c = self.client().await?;
        let now = now_ms();
        let n = c
            .execute(
                "INSERT INTO leases (name, holder, until_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET holder = $2, until_ms = $3 \
                 WHERE leases.until_ms <= $4 OR leases.holder = $2",
                &[&name, &holder, &(now + ttl.as_millis() as i64), &now],
            )
            .await
            .map_err(pg)?;
        Ok(n == 1)
    }

    async fn heartbeat(&self, replica: &str, ttl: Duration) -> Result<u32, StoreError> {
        let c = self.client().await?;
        let now = now_ms();
        c.execute(
            "INSERT INTO replicas (id, seen_ms) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET seen_ms = $2",
            &[&replica, &now],
        )
        .await
        .map_err(pg)?;
        let n: i64 = c
            .query_one(
                "SELECT COUNT(*) FROM replicas WHERE seen_ms > $1",
                &[&(now - ttl.as_millis() as i64)],
            )
            .await
            .map_err(pg)?
            .get(0);
        Ok(n.max(1) as u32)
    }
}
