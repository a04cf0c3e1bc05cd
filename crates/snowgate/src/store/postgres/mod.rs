//! PostgreSQL backend, for several replicas on one database: migrations under an advisory
//! lock, a bounded pool with connect and statement timeouts, decisions group-committed by one
//! writer task (compare-and-sets that `NOTIFY` the decided gate ids on commit; other replicas
//! wake their long-polls with them), and background work claimed with `FOR UPDATE SKIP
//! LOCKED` and expiring leases.
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres_rustls::MakeRustlsConnect;
use uuid::Uuid;

use super::sql;
use super::{
    Completion, CrUpdate, DecisionTimes, Event, FollowUps, GateStore, Hold, NewOutbox, Opened,
    OutboxItem, OutboxResult, StoreError, StoreSignal, TitleLock, Transition, TransitionOutcome,
};
use crate::domain::freeze::Freeze;
use crate::domain::gate::Actor;
use crate::domain::timers::Deadline;
use crate::domain::{CallbackToken, Gate, GateSpec, GateState};
use rows::{event_from_row, gate_from_row, load_gate, pg};

mod gates;
mod lease;
mod listen;
mod policy;
mod rows;
mod schema;
mod titles;
mod work;
mod writer;

/// Several gates by id, bound as one array (SQLite, without array parameters, reads them one
/// by one).
const GATES_BY_IDS: &str = sql::select_gates!("WHERE id = ANY($1)");

#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    config: Arc<tokio_postgres::Config>,
    tls: MakeRustlsConnect,
    /// This store's own mark in its notifications (`<origin> <gate id>`): its listener skips
    /// them, since the process that decided a gate wakes its own long-polls itself (with the
    /// decision's timing) and its workers need no takeover wake for it.
    origin: Arc<str>,
    /// The group-committing writer task (decisions and outbox results).
    writer: mpsc::Sender<writer::Job>,
    /// Connections change-mode title locks may hold at once (`titles.rs`).
    title_locks: Arc<tokio::sync::Semaphore>,
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

    /// Connect, and apply pending migrations under an advisory lock (replicas starting
    /// together never race).
    pub async fn connect(o: PgOptions) -> Result<PostgresStore, StoreError> {
        let (url, sslmode) = super::pg_url::split_sslmode(&o.url)
            .map_err(|e| StoreError::unavailable(format!("store.url: {e}")))?;
        let tls = super::pg_tls::connector(sslmode, o.ca_file.as_deref())
            .map_err(StoreError::unavailable)?;
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::unavailable_by("store.url is not a PostgreSQL URL", e))?;
        config.ssl_mode(sslmode.negotiation());
        configure(&mut config, &o);
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
        let origin: Arc<str> = Uuid::new_v4().simple().to_string().into();
        let (writer, jobs) = mpsc::channel(writer::QUEUE);
        tokio::spawn(writer::run(pool.clone(), origin.clone(), jobs));
        let store = PostgresStore {
            pool,
            config: Arc::new(config),
            tls,
            origin,
            writer,
            title_locks: Arc::new(tokio::sync::Semaphore::new(titles::title_lock_permits(
                o.pool_size.max(2),
            ))),
        };
        schema::migrate(&store).await?;
        Ok(store)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(pg)
    }

    /// Hand `job` to the writer and wait for the commit of the batch that holds it.
    async fn write<T>(
        &self,
        job: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> writer::Job,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.writer
            .send(job(reply))
            .await
            .map_err(|_| StoreError::unavailable("the store writer has stopped"))?;
        answer
            .await
            .map_err(|_| StoreError::unavailable("the store writer dropped the request"))?
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
}

/// Keepalives, the password, timeouts and the application name.
fn configure(config: &mut tokio_postgres::Config, o: &PgOptions) {
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
}

#[async_trait]
impl GateStore for PostgresStore {
    async fn open_gate(
        &self,
        spec: GateSpec,
        token: CallbackToken,
        claim: Duration,
    ) -> Result<Opened, StoreError> {
        gates::open_gate(self, spec, token, claim).await
    }

    async fn gate(&self, id: Uuid) -> Result<Option<Gate>, StoreError> {
        let c = self.client().await?;
        load_gate(&c, &id.to_string()).await
    }

    async fn gates(&self, ids: &[Uuid]) -> Result<Vec<Gate>, StoreError> {
        let ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
        self.gates_by(GATES_BY_IDS, &[&ids]).await
    }

    async fn gate_by_token(&self, raw_token: &str) -> Result<Option<Gate>, StoreError> {
        gates::gate_by_token(self, raw_token).await
    }

    async fn list_gates(
        &self,
        state: Option<GateState>,
        limit: u32,
    ) -> Result<Vec<Gate>, StoreError> {
        let limit = limit as i64;
        match state {
            Some(s) => {
                self.gates_by(sql::GATES_IN_STATE, &[&s.as_str(), &limit])
                    .await
            }
            None => self.gates_by(sql::ALL_GATES, &[&limit]).await,
        }
    }

    async fn open_gates(&self, limit: u32) -> Result<Vec<Gate>, StoreError> {
        self.gates_by(sql::OPEN_GATES, &[&(limit as i64)]).await
    }

    async fn recent_decisions(&self, limit: u32) -> Result<Vec<Gate>, StoreError> {
        self.gates_by(sql::RECENT_DECISIONS, &[&(limit as i64)])
            .await
    }

    async fn decision_times(
        &self,
        since: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<DecisionTimes>, StoreError> {
        let since = crate::domain::gate::timestamp(&since);
        let c = self.client().await?;
        let stmt = c.prepare_cached(sql::DECISION_TIMES).await.map_err(pg)?;
        let rows = c
            .query(&stmt, &[&since, &(limit as i64)])
            .await
            .map_err(pg)?;
        rows.iter().map(rows::decision_times_from_row).collect()
    }

    async fn gates_of_build(
        &self,
        build_number: &str,
        limit: u32,
    ) -> Result<Vec<Gate>, StoreError> {
        self.gates_by(sql::GATES_OF_BUILD, &[&build_number, &(limit as i64)])
            .await
    }

    async fn open_gates_of_stage(
        &self,
        job_url: &str,
        stage_name: &str,
        limit: u32,
    ) -> Result<Vec<Gate>, StoreError> {
        self.gates_by(
            sql::OPEN_GATES_OF_STAGE,
            &[&job_url, &stage_name, &(limit as i64)],
        )
        .await
    }

    async fn events(&self, id: Uuid) -> Result<Vec<Event>, StoreError> {
        let c = self.client().await?;
        let stmt = c.prepare_cached(sql::EVENTS_OF_GATE).await.map_err(pg)?;
        let rows = c.query(&stmt, &[&id.to_string()]).await.map_err(pg)?;
        Ok(rows.iter().map(event_from_row).collect())
    }

    async fn transition(
        &self,
        t: Transition,
        follow_ups: FollowUps,
    ) -> Result<TransitionOutcome, StoreError> {
        self.write(|reply| writer::Job::Transition {
            t,
            follow_ups,
            reply,
        })
        .await
    }

    async fn update_change_request(
        &self,
        id: Uuid,
        u: CrUpdate,
    ) -> Result<Option<Gate>, StoreError> {
        gates::update_change_request(self, id, u).await
    }

    async fn claim_polls(
        &self,
        limit: u32,
        default_interval: Duration,
    ) -> Result<Vec<Gate>, StoreError> {
        work::claim_polls(self, limit, default_interval).await
    }

    async fn next_poll_due(&self) -> Result<Option<i64>, StoreError> {
        work::next_poll_due(self).await
    }

    async fn due_deadlines(&self, limit: u32) -> Result<Vec<(Gate, Deadline)>, StoreError> {
        work::due_deadlines(self, limit).await
    }

    async fn next_deadline(&self) -> Result<Option<i64>, StoreError> {
        let deadline = work::next_deadline(self).await?;
        let hold = policy::next_hold_due(self).await?;
        Ok(deadline.into_iter().chain(hold).min())
    }

    async fn open_gates_after(
        &self,
        after: Option<(i64, Uuid)>,
        limit: u32,
    ) -> Result<Vec<(i64, Gate)>, StoreError> {
        work::open_gates_after(self, after, limit).await
    }

    async fn claim_outbox(
        &self,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        work::claim_outbox(self, limit, lease).await
    }

    async fn finish_outbox(
        &self,
        item: &OutboxItem,
        result: OutboxResult,
    ) -> Result<(), StoreError> {
        let item = item.clone();
        self.write(|reply| writer::Job::Finish {
            item,
            result,
            reply,
        })
        .await
    }

    async fn next_outbox_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        work::next_outbox_due(self).await
    }

    async fn complete_gate(
        &self,
        id: Uuid,
        result: String,
        actor: Actor,
        outbox: Vec<NewOutbox>,
    ) -> Result<Completion, StoreError> {
        gates::complete_gate(self, id, result, actor, outbox).await
    }

    async fn outbox_backlog(&self) -> Result<u64, StoreError> {
        work::outbox_backlog(self).await
    }

    async fn count_by_state(&self) -> Result<Vec<(GateState, u64)>, StoreError> {
        let c = self.client().await?;
        // Every scrape of `/metrics` counts: prepared once per connection.
        let stmt = rows::prepared(&c, sql::COUNT_BY_STATE).await?;
        let rows = c.query(&stmt, &[]).await.map_err(pg)?;
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
        work::acknowledge_late(self, id, &message).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let c = self.client().await?;
        c.query_one("SELECT 1", &[]).await.map_err(pg)?;
        Ok(())
    }

    async fn listen(&self) -> Option<mpsc::Receiver<StoreSignal>> {
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(listen::listen_loop(
            self.config.clone(),
            self.tls.clone(),
            self.origin.clone(),
            tx,
        ));
        Some(rx)
    }

    async fn add_freeze(&self, freeze: &Freeze) -> Result<(), StoreError> {
        policy::add_freeze(self, freeze).await
    }

    async fn freezes(&self, now_ms: i64) -> Result<Vec<Freeze>, StoreError> {
        policy::freezes(self, now_ms).await
    }

    async fn delete_freeze(&self, id: &str) -> Result<bool, StoreError> {
        policy::delete_freeze(self, id).await
    }

    async fn hold_approval(
        &self,
        hold: Hold,
        message: String,
        outbox: Vec<NewOutbox>,
    ) -> Result<TransitionOutcome, StoreError> {
        policy::hold_approval(self, &hold, &message, &outbox).await
    }

    async fn holds(&self, before_ms: i64, limit: u32) -> Result<Vec<Hold>, StoreError> {
        policy::holds(self, before_ms, limit).await
    }

    async fn extend_hold(&self, hold: &Hold) -> Result<(), StoreError> {
        policy::extend_hold(self, hold).await
    }

    async fn clear_hold(&self, gate_id: Uuid) -> Result<(), StoreError> {
        policy::clear_hold(self, gate_id).await
    }

    async fn queue_evidence(
        &self,
        gate_id: Uuid,
        sha256: &str,
        name: &str,
        item: NewOutbox,
        message: &str,
    ) -> Result<crate::store::EvidenceQueued, StoreError> {
        policy::queue_evidence(self, gate_id, sha256, name, &item, message).await
    }

    async fn lock_title(&self, title: &str) -> Result<TitleLock, StoreError> {
        titles::lock_title(self, title).await
    }

    async fn try_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        lease::try_lease(self, name, holder, ttl).await
    }

    async fn heartbeat(&self, replica: &str, ttl: Duration) -> Result<u32, StoreError> {
        lease::heartbeat(self, replica, ttl).await
    }
}
