//! The cluster's own counters over the burst: transactions committed in the bench database
//! (`pg_stat_database.xact_commit`), WAL flushes (`pg_stat_wal.wal_sync`, PostgreSQL 14+), and
//! transaction ids assigned (every writing transaction takes one; PostgreSQL 13+).
use std::fmt::Write as _;
use std::time::Duration;

/// PostgreSQL's statistics lag behind: a backend flushes its counters when it goes idle, at
/// most once a second (PostgreSQL docs, "The Cumulative Statistics System": PGSTAT_MIN_INTERVAL,
/// 1 s), and one that went idle within that second flushes 10 s later (PGSTAT_IDLE_INTERVAL in
/// PostgreSQL's src/backend/utils/activity/pgstat.c). Readings meant to hold everything so far
/// wait this long first.
const SETTLE: Duration = Duration::from_secs(11);

const COMMITS: &str = "SELECT xact_commit FROM pg_stat_database WHERE datname = $1";
const WAL_SYNCS: &str = "SELECT wal_sync FROM pg_stat_wal";
/// The next transaction id to be assigned, read without taking one (unlike txid_current()), and
/// at once: it is no statistic.
const NEXT_XID: &str = "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint";

#[derive(Clone, Copy)]
pub struct Reading {
    commits: i64,
    wal_syncs: Option<i64>,
    xids: Option<i64>,
}

pub struct Counters {
    client: tokio_postgres::Client,
    db: String,
    /// Why there is no WAL flush count, when there is none.
    no_wal: Option<String>,
    no_xids: Option<String>,
}

fn db_message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map_or_else(|| e.to_string(), |d| d.message().to_string())
}

/// Per second over `secs`, and per callback.
fn rates(n: i64, secs: f64, ok: usize) -> (f64, f64) {
    (n as f64 / secs.max(1e-9), n as f64 / ok.max(1) as f64)
}

impl Counters {
    /// Counters of database `db`, read over `client`.
    pub async fn new(client: tokio_postgres::Client, db: String) -> Counters {
        let missing = |r: Result<_, tokio_postgres::Error>| r.err().map(|e| db_message(&e));
        let no_wal = missing(client.query_one(WAL_SYNCS, &[]).await);
        let no_xids = missing(client.query_one(NEXT_XID, &[]).await);
        Counters {
            client,
            db,
            no_wal,
            no_xids,
        }
    }

    async fn optional(&self, sql: &str, missing: &Option<String>) -> anyhow::Result<Option<i64>> {
        if missing.is_some() {
            return Ok(None);
        }
        Ok(Some(self.client.query_one(sql, &[]).await?.get(0)))
    }

    /// The counters now (the statistics up to a second behind for busy backends, see SETTLE).
    pub async fn read(&self) -> anyhow::Result<Reading> {
        let commits = self.client.query_one(COMMITS, &[&self.db]).await?.get(0);
        Ok(Reading {
            commits,
            wal_syncs: self.optional(WAL_SYNCS, &self.no_wal).await?,
            xids: self.optional(NEXT_XID, &self.no_xids).await?,
        })
    }

    /// The counters once every backend has flushed what it did until now.
    pub async fn settled(&self) -> anyhow::Result<Reading> {
        tokio::time::sleep(SETTLE).await;
        self.read().await
    }

    /// The burst's lines: counts by the last 200 (per second over the time to it) and, for the
    /// statistics, once settled (per callback; that count also holds the acknowledgements
    /// finished after the last 200 and the replicas' background work meanwhile).
    pub fn report(
        &self,
        out: &mut String,
        answered: Duration,
        ok: usize,
        [before, at_answer, settled]: [Reading; 3],
    ) -> anyhow::Result<()> {
        let secs = answered.as_secs_f64();
        // xact_commit counts every transaction that ended in a commit, read-only ones too
        // (PostgreSQL docs, pg_stat_database).
        let by_answer = at_answer.commits - before.commits;
        let all = settled.commits - before.commits;
        writeln!(
            out,
            "PostgreSQL during the burst: {by_answer} transactions committed in {} by the last 200 ({:.0} commits/s; pg_stat_database.xact_commit, read-only ones included, up to 1 s behind), {all} once settled {} s later ({:.2} per callback answered 200)",
            self.db,
            rates(by_answer, secs, ok).0,
            SETTLE.as_secs(),
            rates(all, secs, ok).1
        )?;
        match (before.wal_syncs, at_answer.wal_syncs, settled.wal_syncs) {
            (Some(b), Some(a), Some(s)) => writeln!(
                out,
                "PostgreSQL during the burst: {} WAL flushes by the last 200 ({:.0} flushes/s; pg_stat_wal.wal_sync, the whole cluster, up to 1 s behind), {} once settled ({:.2} per callback)",
                a - b,
                rates(a - b, secs, ok).0,
                s - b,
                rates(s - b, secs, ok).1
            )?,
            _ => writeln!(
                out,
                "PostgreSQL during the burst: WAL flushes n/a (pg_stat_wal.wal_sync: {})",
                self.no_wal.as_deref().unwrap_or("not read")
            )?,
        }
        if let (Some(b), Some(a)) = (before.xids, at_answer.xids) {
            let (per_s, per_cb) = rates(a - b, secs, ok);
            writeln!(
                out,
                "PostgreSQL during the burst: {} writing transactions by the last 200 ({per_s:.0}/s, {per_cb:.2} per callback; transaction ids assigned in the whole cluster, exact at once)",
                a - b
            )?;
        }
        Ok(())
    }
}
