//! Group commit on PostgreSQL: one writer task per replica commits the decisions (and outbox
//! results) that arrive together in one transaction, as the SQLite writer thread does. A
//! batch is whatever is queued when the writer is free, plus, when several came together,
//! what arrives while the writer yields to the runtime a few times: a decision on an idle
//! store starts at once, and under load the next batch gathers while the previous one
//! commits. A batch the server aborts for a deadlock or serialisation failure is tried again.
//!
//! Within a batch every compare-and-set still touches exactly one row, with its event and
//! outbox rows; the gates are locked first, in id order, so batches of two replicas never
//! deadlock. Statements go out pipelined (tokio-postgres sends the requests of futures polled
//! together without waiting for each answer), so a batch costs two round trips (`BEGIN`, the
//! locks and the compare-and-sets; then the inserts and `COMMIT`) and one WAL flush however
//! many decisions it holds. Each caller is answered only after its batch
//! committed.
use std::collections::HashMap;
use std::sync::Arc;

use chrono::Utc;
use deadpool_postgres::{ClientWrapper, Object, Pool};
use futures::future::try_join_all;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::ToSql;

use super::listen::{notify_payloads, CHANNEL};
use super::rows::{gate_from_row, now_ms, pg, text};
use crate::domain::gate::{sources_of, timestamp, Actor};
use crate::domain::{Gate, GateState};
use crate::store::sql::{self, GATE_COLUMNS};
use crate::store::{
    FollowUps, NewOutbox, OutboxItem, OutboxResult, StoreError, Transition, TransitionOutcome,
};

/// Largest number of jobs committed together: 256 decisions are ~150 KB of statements, and
/// their notification ids fit in two `pg_notify` payloads.
const MAX_BATCH: usize = 256;

/// Jobs waiting for the writer; callers beyond it wait to queue (back-pressure).
pub(super) const QUEUE: usize = 4096;

// A job lives in the writer's queue for a batch's time; boxing the decision would cost an
// allocation per decision for no gain.
#[allow(clippy::large_enum_variant)]
pub(super) enum Job {
    Transition {
        t: Transition,
        follow_ups: FollowUps,
        reply: oneshot::Sender<Result<TransitionOutcome, StoreError>>,
    },
    Finish {
        item: OutboxItem,
        result: OutboxResult,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

/// What a job's commit produced, for its caller.
#[allow(clippy::large_enum_variant)]
enum Outcome {
    Transition(TransitionOutcome),
    Finished,
}

/// The writer task: runs until every sender (every clone of the store) is gone.
pub(super) async fn run(pool: Pool, origin: Arc<str>, mut rx: mpsc::Receiver<Job>) {
    while let Some(first) = rx.recv().await {
        let batch = gather(first, &mut rx).await;
        match commit_retrying(&pool, &origin, &batch).await {
            Ok(outcomes) => answer_all(batch, outcomes),
            Err(e) if batch.len() > 1 && refused_data(&e) => {
                // One job's data was refused (say, a constraint): commit each alone, so only
                // that one fails.
                tracing::warn!(error = %e, jobs = batch.len(), "store: a batch was refused; committing its jobs one by one");
                for job in batch {
                    let outcome = commit(&pool, &origin, std::slice::from_ref(&job)).await;
                    answer(job, outcome.map(|mut o| o.remove(0)));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, jobs = batch.len(), "store: a batch could not be committed");
                let text = e.to_string();
                for job in batch {
                    answer(job, Err(StoreError::unavailable(text.clone())));
                }
            }
        }
    }
}

/// The batch that starts with `first`: whatever else is queued, up to `MAX_BATCH`. A job alone
/// on an idle store goes at once; when others came with it (decisions arriving together),
/// the writer yields to the runtime a few times, a few microseconds each, so the callbacks
/// being handled at this moment join this commit instead of waiting for the next one.
async fn gather(first: Job, rx: &mut mpsc::Receiver<Job>) -> Vec<Job> {
    /// Yields while the batch still grows; never a timer (tokio's resolution is 1 ms).
    const YIELDS: usize = 4;
    let mut batch = vec![first];
    let mut yields = 0;
    loop {
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if batch.len() == 1 || batch.len() >= MAX_BATCH || yields == YIELDS {
            return batch;
        }
        tokio::task::yield_now().await;
        yields += 1;
        if rx.is_empty() {
            return batch;
        }
    }
}

/// Tries of a batch that PostgreSQL aborted for a reason of its own (a deadlock or a
/// serialisation failure) rather than for the batch's data or a lost connection.
const TRANSIENT_TRIES: usize = 3;

/// `commit`, tried again when the server aborted the batch transiently: nothing of an
/// aborted batch was written, so trying it again is safe, and each of its jobs still
/// answers once.
async fn commit_retrying(
    pool: &Pool,
    origin: &str,
    jobs: &[Job],
) -> Result<Vec<Outcome>, StoreError> {
    let mut tries = 1;
    loop {
        match commit(pool, origin, jobs).await {
            Err(e) if tries < TRANSIENT_TRIES && transient(&e) => {
                tracing::warn!(error = %e, jobs = jobs.len(), tries, "store: a batch was aborted by the server; trying it again");
                tries += 1;
            }
            outcome => return outcome,
        }
    }
}

/// The SQLSTATE of a PostgreSQL error behind `e`, if the server sent one.
fn sqlstate(e: &StoreError) -> Option<&str> {
    let StoreError::Unavailable {
        source: Some(source),
        ..
    } = e
    else {
        return None;
    };
    source
        .downcast_ref::<tokio_postgres::Error>()
        .and_then(|e| e.code())
        .map(|code| code.code())
}

/// A deadlock (40P01) or serialisation failure (40001): the server rolled back, and the same
/// statements may succeed when sent again.
fn transient(e: &StoreError) -> bool {
    matches!(sqlstate(e), Some("40P01" | "40001"))
}

/// Whether the server refused the batch's data (SQLSTATE class 22 data exception or 23
/// integrity constraint violation), rather than failing as a whole (connection, timeout).
fn refused_data(e: &StoreError) -> bool {
    sqlstate(e).is_some_and(|code| matches!(code.get(..2), Some("22" | "23")))
}

fn answer_all(batch: Vec<Job>, outcomes: Vec<Outcome>) {
    for (job, outcome) in batch.into_iter().zip(outcomes) {
        answer(job, Ok(outcome));
    }
}

fn answer(job: Job, outcome: Result<Outcome, StoreError>) {
    match job {
        Job::Transition { reply, .. } => {
            let _ = reply.send(outcome.and_then(|o| match o {
                Outcome::Transition(t) => Ok(t),
                Outcome::Finished => Err(StoreError::corrupt("a decision answered as a finish")),
            }));
        }
        Job::Finish { reply, .. } => {
            let _ = reply.send(outcome.map(|_| ()));
        }
    }
}

/// Commit `jobs` in one transaction; their outcomes, in order. A batch that fails leaves no
/// transaction open on the pooled connection.
async fn commit(pool: &Pool, origin: &str, jobs: &[Job]) -> Result<Vec<Outcome>, StoreError> {
    let c = pool.get().await.map_err(pg)?;
    let committed = run_batch(&c, origin, jobs).await;
    if committed.is_err() && c.batch_execute("ROLLBACK").await.is_err() {
        // Never return a connection mid-transaction to the pool: close it.
        drop(Object::take(c));
    }
    committed
}

/// The batch's statements in two pipelined round trips: `BEGIN` with the row locks and the
/// compare-and-sets, then every insert, deletion and notification with the `COMMIT` (which
/// PostgreSQL turns into a rollback if any statement before it failed; that failure is
/// what the batch then reports).
async fn run_batch(
    c: &ClientWrapper,
    origin: &str,
    jobs: &[Job],
) -> Result<Vec<Outcome>, StoreError> {
    let mut writes = Writes::new(timestamp(&Utc::now()));
    let decided = decide(c, jobs, &mut writes).await?;
    let mut outcomes = Vec::with_capacity(jobs.len());
    let mut decided = decided.into_iter();
    for job in jobs {
        outcomes.push(match job {
            Job::Transition { .. } => Outcome::Transition(
                decided
                    .next()
                    .ok_or_else(|| StoreError::corrupt("a decision went missing"))?,
            ),
            Job::Finish { item, result, .. } => {
                writes.finish(item, result);
                Outcome::Finished
            }
        });
    }
    writes.flush(c, origin).await?;
    Ok(outcomes)
}

/// The parameters of one compare-and-set (`sql::TRANSITION_SET`), owned for the pipeline.
struct CasParams<'a> {
    t: &'a Transition,
    id: String,
    actor: String,
    cr_json: Option<String>,
    sources: Vec<&'static str>,
}

impl CasParams<'_> {
    async fn run(
        &self,
        tx: &ClientWrapper,
        stmt: &tokio_postgres::Statement,
        now: &str,
    ) -> Result<Option<tokio_postgres::Row>, tokio_postgres::Error> {
        let t = self.t;
        let message = text(&t.message);
        let params: [&(dyn ToSql + Sync); 12] = [
            &t.to.as_str(),
            &t.proceed,
            &message,
            &now,
            &t.to.is_terminal(),
            &self.actor,
            &self.cr_json,
            &self.id,
            &t.timers.next_poll_ms,
            &t.timers.creation_deadline_ms,
            &t.timers.step_deadline_ms,
            &self.sources,
        ];
        tx.query_opt(stmt, &params).await
    }
}

/// Lock the batch's gates, run every compare-and-set, and note the event, outbox and
/// notification each applied one implies.
async fn decide(
    tx: &ClientWrapper,
    jobs: &[Job],
    writes: &mut Writes,
) -> Result<Vec<TransitionOutcome>, StoreError> {
    let transitions: Vec<(&Transition, FollowUps)> = jobs
        .iter()
        .filter_map(|j| match j {
            Job::Transition { t, follow_ups, .. } => Some((t, *follow_ups)),
            Job::Finish { .. } => None,
        })
        .collect();
    let planned: Vec<CasParams> = transitions
        .iter()
        .map(|(t, _)| cas_params(t))
        .collect::<Result<_, _>>()?;
    let (current, rows) = begin_lock_and_set(tx, &planned, &writes.now).await?;
    if transitions.is_empty() {
        return Ok(Vec::new());
    }
    record(transitions, current, rows, writes)
}

/// Each transition's outcome from its compare-and-set's row (in the batch's order), and the
/// event, outbox rows and notification of each applied one.
fn record(
    transitions: Vec<(&Transition, FollowUps)>,
    mut current: HashMap<String, Gate>,
    rows: Vec<Option<tokio_postgres::Row>>,
    writes: &mut Writes,
) -> Result<Vec<TransitionOutcome>, StoreError> {
    if rows.len() != transitions.len() {
        return Err(StoreError::corrupt("a compare-and-set went missing"));
    }
    let mut outcomes = Vec::with_capacity(transitions.len());
    for ((t, follow_ups), row) in transitions.into_iter().zip(rows) {
        let id = t.gate_id.to_string();
        let Some(before) = current.get(&id) else {
            outcomes.push(TransitionOutcome::NotFound);
            continue;
        };
        let Some(row) = row else {
            // The gate is no longer in a state this move may leave (possibly moved by an
            // earlier decision of this same batch): here it is as it is now.
            outcomes.push(TransitionOutcome::Conflict(before.clone()));
            continue;
        };
        let after = gate_from_row(&row)?;
        writes.event(
            &id,
            &t.actor,
            t.event_kind,
            Some(before.state),
            Some(t.to),
            &t.message,
        );
        for item in t.outbox.iter().chain(follow_ups(before, t).iter()) {
            writes.outbox(&id, item, 0);
        }
        writes.notify.push(id.clone());
        current.insert(id, after.clone());
        outcomes.push(TransitionOutcome::Applied(after));
    }
    Ok(outcomes)
}

fn cas_params(t: &Transition) -> Result<CasParams<'_>, StoreError> {
    Ok(CasParams {
        t,
        id: t.gate_id.to_string(),
        actor: t.actor.to_string(),
        cr_json: t
            .change_request
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(StoreError::corrupt_from)?,
        // The admitted states are exactly those the domain's table allows, bound as one array
        // (SQLite, without array parameters, lists them as literals).
        sources: sources_of(t.to).iter().map(|s| s.as_str()).collect(),
    })
}

/// `BEGIN`, the batch's gates locked in id order, and every compare-and-set, in one round
/// trip: the statements go out pipelined and PostgreSQL runs them in the order sent, so the
/// locks are taken (and the gates read as they were) before any compare-and-set runs. Batches
/// of two replicas take their locks in the same order, so neither waits for the other in a
/// cycle. The lock is `FOR NO KEY UPDATE`, the one a compare-and-set's `UPDATE` takes anyway
/// (it changes no key): the foreign-key checks of other transactions' event and outbox rows
/// (`KEY SHARE`) do not wait for it, so they cannot close a cycle with a batch either. A
/// compare-and-set of a gate that does not exist changes nothing; the lock's reading tells it
/// apart from one that lost its race. The compare-and-sets' rows, one per transition, in
/// order.
async fn begin_lock_and_set(
    c: &ClientWrapper,
    planned: &[CasParams<'_>],
    now: &str,
) -> Result<(HashMap<String, Gate>, Vec<Option<tokio_postgres::Row>>), StoreError> {
    let mut ids: Vec<&str> = planned.iter().map(|p| p.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    let lock = c
        .prepare_cached(&format!(
            "SELECT {GATE_COLUMNS} FROM gates WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE"
        ))
        .await
        .map_err(pg)?;
    let set = c
        .prepare_cached(&format!(
            "{}= ANY($12) RETURNING {GATE_COLUMNS}",
            sql::TRANSITION_SET
        ))
        .await
        .map_err(pg)?;
    let (begun, locked, set) = futures::join!(
        c.batch_execute("BEGIN"),
        async {
            if ids.is_empty() {
                Ok(Vec::new())
            } else {
                c.query(&lock, &[&ids]).await
            }
        },
        try_join_all(planned.iter().map(|p| p.run(c, &set, now)))
    );
    begun.map_err(pg)?;
    let current = locked
        .map_err(pg)?
        .iter()
        .map(|r| gate_from_row(r).map(|g| (g.id.to_string(), g)))
        .collect::<Result<_, _>>()?;
    Ok((current, set.map_err(pg)?))
}

/// The rows a batch adds, deletes or changes besides its compare-and-sets, written together.
struct Writes {
    now: String,
    events: EventColumns,
    outbox: OutboxColumns,
    done: Vec<i64>,
    retries: RetryColumns,
    notify: Vec<String>,
}

/// Event rows as columns, for one `INSERT … SELECT FROM UNNEST(…)`.
#[derive(Default)]
struct EventColumns {
    gate_id: Vec<String>,
    actor: Vec<String>,
    kind: Vec<String>,
    from: Vec<Option<&'static str>>,
    to: Vec<Option<&'static str>>,
    message: Vec<String>,
}

#[derive(Default)]
struct OutboxColumns {
    gate_id: Vec<String>,
    kind: Vec<&'static str>,
    payload: Vec<String>,
    claimed_until: Vec<i64>,
}

/// Many events in one statement, in the order given (ids follow it).
const INSERT_EVENTS: &str =
    "INSERT INTO events (gate_id, at, actor, kind, from_state, to_state, message) \
     SELECT e.gate_id, $1, e.actor, e.kind, e.from_state, e.to_state, e.message \
     FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[]) \
       WITH ORDINALITY AS e(gate_id, actor, kind, from_state, to_state, message, n) \
     ORDER BY e.n";

/// Many outbox rows in one statement, due now.
const INSERT_OUTBOX: &str =
    "INSERT INTO outbox (gate_id, kind, payload, due_ms, claimed_until, created_at) \
     SELECT o.gate_id, o.kind, o.payload, $1, o.claimed_until, $2 \
     FROM UNNEST($3::text[], $4::text[], $5::text[], $6::bigint[]) \
       WITH ORDINALITY AS o(gate_id, kind, payload, claimed_until, n) \
     ORDER BY o.n";

/// Outbox rows due again, as columns for one `UPDATE … FROM UNNEST(…)`.
#[derive(Default)]
struct RetryColumns {
    id: Vec<i64>,
    due_ms: Vec<i64>,
    error: Vec<String>,
}

/// Many outbox retries in one statement (`sql::RETRY_OUTBOX` for each row of the arrays).
const RETRY_OUTBOX_ROWS: &str =
    "UPDATE outbox SET attempts = attempts + 1, due_ms = r.due_ms, claimed_until = 0, \
       last_error = r.error \
     FROM UNNEST($1::bigint[], $2::bigint[], $3::text[]) AS r(id, due_ms, error) \
     WHERE outbox.id = r.id";

/// Finished and abandoned outbox rows, together.
const DELETE_OUTBOX_ROWS: &str = "DELETE FROM outbox WHERE id = ANY($1)";

impl Writes {
    fn new(now: String) -> Writes {
        Writes {
            now,
            events: EventColumns::default(),
            outbox: OutboxColumns::default(),
            done: Vec::new(),
            retries: RetryColumns::default(),
            notify: Vec::new(),
        }
    }

    fn event(
        &mut self,
        gate_id: &str,
        actor: &Actor,
        kind: &str,
        from: Option<GateState>,
        to: Option<GateState>,
        message: &str,
    ) {
        let e = &mut self.events;
        e.gate_id.push(gate_id.to_string());
        e.actor.push(actor.to_string());
        e.kind.push(kind.to_string());
        e.from.push(from.map(|s| s.as_str()));
        e.to.push(to.map(|s| s.as_str()));
        e.message.push(text(message).into_owned());
    }

    fn outbox(&mut self, gate_id: &str, item: &NewOutbox, claimed_until: i64) {
        let o = &mut self.outbox;
        o.gate_id.push(gate_id.to_string());
        o.kind.push(item.kind.as_str());
        o.payload.push(item.payload.to_string());
        o.claimed_until.push(claimed_until);
    }

    /// An outbox attempt's result: the row goes (done, given up) or is due again (retry),
    /// with the attempt's event.
    fn finish(&mut self, item: &OutboxItem, result: &OutboxResult) {
        let kind = item.kind.as_str();
        let (event, message) = match result {
            OutboxResult::Done { message } => {
                self.done.push(item.id);
                (format!("{kind}_done"), message.clone())
            }
            OutboxResult::Retry { after, error } => {
                let due = now_ms() + after.as_millis() as i64;
                self.retries.id.push(item.id);
                self.retries.due_ms.push(due);
                self.retries.error.push(text(error).into_owned());
                (
                    format!("{kind}_retry"),
                    crate::store::retry_message(item, *after, error),
                )
            }
            OutboxResult::GiveUp { error } => {
                self.done.push(item.id);
                (format!("{kind}_failed"), error.clone())
            }
        };
        let gate_id = item.gate_id.to_string();
        self.event(&gate_id, &Actor::Snowgate, &event, None, None, &message);
    }

    /// Every noted write, pipelined with the `COMMIT`: events, outbox rows, deletions, retries,
    /// notifications.
    async fn flush(&self, tx: &ClientWrapper, origin: &str) -> Result<(), StoreError> {
        let mut pending: Vec<futures::future::BoxFuture<'_, Result<u64, tokio_postgres::Error>>> =
            Vec::new();
        let e = &self.events;
        if !e.gate_id.is_empty() {
            let stmt = tx.prepare_cached(INSERT_EVENTS).await.map_err(pg)?;
            pending.push(Box::pin(async move {
                tx.execute(
                    &stmt,
                    &[
                        &self.now, &e.gate_id, &e.actor, &e.kind, &e.from, &e.to, &e.message,
                    ],
                )
                .await
            }));
        }
        let o = &self.outbox;
        if !o.gate_id.is_empty() {
            let stmt = tx.prepare_cached(INSERT_OUTBOX).await.map_err(pg)?;
            pending.push(Box::pin(async move {
                tx.execute(
                    &stmt,
                    &[
                        &now_ms(),
                        &self.now,
                        &o.gate_id,
                        &o.kind,
                        &o.payload,
                        &o.claimed_until,
                    ],
                )
                .await
            }));
        }
        if !self.done.is_empty() {
            let stmt = tx.prepare_cached(DELETE_OUTBOX_ROWS).await.map_err(pg)?;
            pending.push(Box::pin(
                async move { tx.execute(&stmt, &[&self.done]).await },
            ));
        }
        let r = &self.retries;
        if !r.id.is_empty() {
            let stmt = tx.prepare_cached(RETRY_OUTBOX_ROWS).await.map_err(pg)?;
            pending.push(Box::pin(async move {
                tx.execute(&stmt, &[&r.id, &r.due_ms, &r.error]).await
            }));
        }
        if !self.notify.is_empty() {
            // Tell every listening replica which gates were decided, when (and only if) the
            // batch commits.
            let stmt = tx
                .prepare_cached("SELECT pg_notify($1, $2)")
                .await
                .map_err(pg)?;
            for payload in notify_payloads(origin, &self.notify) {
                let stmt = stmt.clone();
                pending.push(Box::pin(async move {
                    tx.execute(&stmt, &[&CHANNEL, &payload]).await
                }));
            }
        }
        pending.push(Box::pin(async move {
            tx.batch_execute("COMMIT").await.map(|()| 0)
        }));
        try_join_all(pending).await.map_err(pg)?;
        Ok(())
    }
}
