//! Statements both backends run as written, in PostgreSQL's `$n` placeholders. SQLite gets
//! them through [`sqlite`], with `?n`: SQLite reads `$1` as a *named* parameter, numbered by
//! where it first appears in the statement rather than by its digits, so a statement whose
//! placeholders do not first appear in order (`… WHERE id = $8` after `$11`) would bind the
//! wrong values without an error.
use std::borrow::Cow;

/// The columns `gate_from_row` of each backend reads, in its order.
macro_rules! gate_columns {
    () => {
        "id, state, proceed, message, spec, callback_token, change_request, created_at, \
         updated_at, decided_at, decided_by, next_poll_ms, creation_deadline_ms, step_deadline_ms"
    };
}

/// `SELECT <gate columns> FROM gates <rest>`.
macro_rules! select_gates {
    ($rest:literal) => {
        concat!(
            "SELECT ",
            $crate::store::sql::gate_columns!(),
            " FROM gates ",
            $rest
        )
    };
}
pub(crate) use {gate_columns, select_gates};

pub const GATE_COLUMNS: &str = gate_columns!();

/// Open gates (registering, pending), the oldest first (index `gates_open`).
pub const OPEN_GATES: &str =
    select_gates!("WHERE state IN ('registering', 'pending') ORDER BY created_ms, id LIMIT $1");

/// Decided gates, the newest decision first (index `gates_decided`). A gate gets
/// `decided_at` when, and only when, it enters a terminal state.
pub const RECENT_DECISIONS: &str =
    select_gates!("WHERE decided_at IS NOT NULL ORDER BY decided_at DESC, id LIMIT $1");

/// When gates decided since `$1` (an RFC 3339 time in UTC, as every stored time is) were
/// opened and decided, and their states, the newest decision first (index `gates_decided`).
/// The stored times all have the same form (`…T…000Z`), so comparing them as text compares
/// them as times.
pub const DECISION_TIMES: &str = "SELECT created_at, decided_at, state FROM gates \
     WHERE decided_at IS NOT NULL AND decided_at >= $1 ORDER BY decided_at DESC, id LIMIT $2";

/// Gates of one build number, the newest first (index `gates_build`).
pub const GATES_OF_BUILD: &str =
    select_gates!("WHERE build_number = $1 ORDER BY created_ms DESC, id LIMIT $2");

/// The open gates of one job's stage (all branches and builds), the oldest first (the
/// unique index on job_url, build_number, stage_name serves the job_url prefix).
pub const OPEN_GATES_OF_STAGE: &str = select_gates!(
    "WHERE job_url = $1 AND stage_name = $2 AND state IN ('registering', 'pending') \
     ORDER BY created_ms, id LIMIT $3"
);

/// Gate counts per state.
pub const COUNT_BY_STATE: &str = "SELECT state, COUNT(*) FROM gates GROUP BY state";

/// One gate by id.
pub const GATE_BY_ID: &str = select_gates!("WHERE id = $1");

/// One gate by the hash of its callback token (the token itself is compared afterwards).
pub const GATE_BY_TOKEN_HASH: &str = select_gates!("WHERE token_hash = $1");

/// Gates in one state, the newest first.
pub const GATES_IN_STATE: &str =
    select_gates!("WHERE state = $1 ORDER BY created_ms DESC, id LIMIT $2");

/// All gates, the newest first.
pub const ALL_GATES: &str = select_gates!("ORDER BY created_ms DESC, id LIMIT $1");

/// Open gates after a `(created_ms, id)` cursor, with `created_ms` as a 15th column.
pub const OPEN_GATES_AFTER: &str = concat!(
    "SELECT ",
    gate_columns!(),
    ", created_ms FROM gates WHERE state IN ('registering', 'pending') \
     AND (created_ms, id) > ($1, $2) ORDER BY created_ms, id LIMIT $3"
);

/// A new gate; PostgreSQL appends its `ON CONFLICT` clause to this.
macro_rules! insert_gate {
    () => {
        "INSERT INTO gates (id, job_url, build_number, stage_name, state, proceed, message, \
         spec, callback_token, token_hash, created_at, created_ms, updated_at, poll_interval_ms) \
         VALUES ($1, $2, $3, $4, $5, NULL, $6, $7, $8, $9, $10, $11, $10, $12)"
    };
}
pub(crate) use insert_gate;

/// The compare-and-set of a transition, up to the state test: `$1` state, `$2` proceed,
/// `$3` message, `$4` now, `$5` terminal, `$6` actor, `$7` change request, `$8` id, `$9`–`$11`
/// timers. Each backend appends how it lists the admitted source states, and `RETURNING`.
pub const TRANSITION_SET: &str =
    "UPDATE gates SET state = $1, proceed = $2, message = $3, updated_at = $4, \
     decided_at = CASE WHEN $5 THEN $4 ELSE decided_at END, \
     decided_by = CASE WHEN $5 THEN $6 ELSE decided_by END, \
     change_request = COALESCE($7, change_request), \
     next_poll_ms = CASE WHEN $5 THEN NULL ELSE COALESCE($9, next_poll_ms) END, \
     creation_deadline_ms = CASE WHEN $5 THEN NULL ELSE COALESCE($10, creation_deadline_ms) END, \
     step_deadline_ms = CASE WHEN $5 THEN NULL ELSE COALESCE($11, step_deadline_ms) END \
     WHERE id = $8 AND state ";

/// New change-request data for an open gate; a decided gate keeps its record as decided.
pub const UPDATE_CHANGE_REQUEST: &str =
    "UPDATE gates SET change_request = $1, updated_at = $2, message = COALESCE($3, message), \
     creation_deadline_ms = CASE WHEN $4 THEN NULL ELSE creation_deadline_ms END, \
     step_deadline_ms = COALESCE(step_deadline_ms, $5), \
     next_poll_ms = COALESCE($6, next_poll_ms) \
     WHERE id = $7 AND state IN ('registering', 'pending')";

/// The earliest poll due.
pub const NEXT_POLL_DUE: &str =
    "SELECT MIN(next_poll_ms) FROM gates WHERE state = 'pending' AND next_poll_ms IS NOT NULL";

/// Open gates whose creation deadline has passed (`$1` now, `$2` limit).
pub const DUE_CREATION_DEADLINES: &str = select_gates!(
    "WHERE creation_deadline_ms <= $1 \
     AND state IN ('registering', 'pending') ORDER BY creation_deadline_ms LIMIT $2"
);

/// Open gates whose step deadline has passed (`$1` now, `$2` limit).
pub const DUE_STEP_DEADLINES: &str = select_gates!(
    "WHERE step_deadline_ms <= $1 \
     AND state IN ('registering', 'pending') ORDER BY step_deadline_ms LIMIT $2"
);

/// One entry of a gate's history.
pub const INSERT_EVENT: &str =
    "INSERT INTO events (gate_id, at, actor, kind, from_state, to_state, message) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)";

/// A gate's history, in order.
pub const EVENTS_OF_GATE: &str =
    "SELECT id, at, actor, kind, from_state, to_state, message FROM events \
     WHERE gate_id = $1 ORDER BY id";

/// A new outbox item; PostgreSQL appends `RETURNING id` to this.
macro_rules! insert_outbox {
    () => {
        "INSERT INTO outbox (gate_id, kind, payload, due_ms, claimed_until, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)"
    };
}
pub(crate) use insert_outbox;

/// A finished or abandoned outbox item.
pub const DELETE_OUTBOX: &str = "DELETE FROM outbox WHERE id = $1";

/// A failed outbox attempt, due again at `$1`.
pub const RETRY_OUTBOX: &str = "UPDATE outbox SET attempts = attempts + 1, due_ms = $1, claimed_until = 0, last_error = $2 WHERE id = $3";

/// Queue the acknowledgement of a late callback, once per gate: not while one is queued (the
/// unique index), nor after one was sent or given up (its event stays when the outbox row is
/// gone).
pub const QUEUE_LATE_ACKNOWLEDGEMENT: &str =
    "INSERT INTO outbox (gate_id, kind, payload, due_ms, claimed_until, created_at) \
     SELECT $1, 'acknowledge', '{}', $2, 0, $3 WHERE NOT EXISTS ( \
       SELECT 1 FROM events WHERE gate_id = $1 \
       AND kind IN ('acknowledge_done', 'acknowledge_failed', 'late_callback')) \
     ON CONFLICT DO NOTHING";

/// Outbox items not yet finished.
pub const OUTBOX_BACKLOG: &str = "SELECT COUNT(*) FROM outbox";

/// A freeze declared through the API: its window as epoch ms (for the queries), the whole
/// freeze as JSON.
pub const INSERT_FREEZE: &str =
    "INSERT INTO freezes (id, name, start_ms, end_ms, body, created_at) VALUES ($1, $2, $3, $4, $5, $6)";

/// Freezes not over at `$1`, the earliest first.
pub const FREEZES_NOT_OVER: &str =
    "SELECT body FROM freezes WHERE end_ms > $1 ORDER BY start_ms, id";

pub const DELETE_FREEZE: &str = "DELETE FROM freezes WHERE id = $1";

/// A deleted freeze's held approvals are due at once (the timers worker releases them).
pub const RELEASE_HOLDS_OF_FREEZE: &str =
    "UPDATE held_approvals SET until_ms = 0 WHERE freeze_id = $1";

/// A gate whose approval a freeze holds: pending, with the freeze's message and no timeouts
/// (only the freeze's end is awaited). Its polls go on: a change request canceled, rejected
/// or out of its window during the freeze decides the gate at once, and a repeated approval
/// changes nothing.
pub const HOLD_GATE: &str = "UPDATE gates SET state = 'pending', message = $1, updated_at = $2, \
     creation_deadline_ms = NULL, step_deadline_ms = NULL \
     WHERE id = $3 AND state IN ('registering', 'pending')";

/// The decision a gate's hold holds, if any: ServiceNow resends a decision callback it is
/// unsure arrived, and a poll finds the same approval again, and the repeat must add nothing
/// (one hold, one acknowledgement); it only holds the gate again (message, no timeouts).
pub const IS_HELD: &str = "SELECT to_state FROM held_approvals WHERE gate_id = $1";

/// The approval held, or the newer one replacing it.
pub const UPSERT_HOLD: &str =
    "INSERT INTO held_approvals (gate_id, freeze_id, freeze_name, until_ms, to_state, proceed, message, held_at, actor) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
     ON CONFLICT (gate_id) DO UPDATE SET freeze_id = excluded.freeze_id, \
     freeze_name = excluded.freeze_name, until_ms = excluded.until_ms, \
     to_state = excluded.to_state, proceed = excluded.proceed, message = excluded.message, \
     held_at = excluded.held_at, actor = excluded.actor";

/// Held approvals of pending gates due by `$1`, the earliest first.
pub const DUE_HOLDS: &str =
    "SELECT h.gate_id, h.freeze_id, h.freeze_name, h.until_ms, h.to_state, h.proceed, h.message, \
       h.actor \
     FROM held_approvals h JOIN gates g ON g.id = h.gate_id \
     WHERE g.state = 'pending' AND h.until_ms <= $1 ORDER BY h.until_ms, h.gate_id LIMIT $2";

/// When the next held approval is due.
pub const NEXT_HOLD_DUE: &str =
    "SELECT MIN(h.until_ms) FROM held_approvals h JOIN gates g ON g.id = h.gate_id \
     WHERE g.state = 'pending'";

/// A hold that another freeze now carries on.
pub const EXTEND_HOLD: &str =
    "UPDATE held_approvals SET freeze_id = $1, freeze_name = $2, until_ms = $3 WHERE gate_id = $4";

pub const CLEAR_HOLD: &str = "DELETE FROM held_approvals WHERE gate_id = $1";

/// Evidence for a gate's CR, once per content digest and gate, and once per digest and CR
/// (`$5`, the CR's sys_id: gates sharing a CR); either conflict is a duplicate.
pub const INSERT_EVIDENCE: &str =
    "INSERT INTO evidence (gate_id, sha256, name, created_at, cr_sys_id) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING";

/// The table of applied schema versions.
pub const CREATE_SCHEMA_MIGRATIONS: &str =
    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)";

/// The schema's current version (0 before the first migration).
pub const SCHEMA_VERSION: &str = "SELECT COALESCE(MAX(version), 0) FROM schema_migrations";

/// One applied schema version.
pub const RECORD_MIGRATION: &str =
    "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)";

/// `sql` with SQLite's `?n` for each `$n` placeholder. The shared statements hold no `$` in a
/// string literal, so every `$` followed by a digit is a placeholder.
pub fn sqlite(sql: &'static str) -> Cow<'static, str> {
    let bytes = sql.as_bytes();
    let placeholder =
        |i: usize| bytes[i] == b'$' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit);
    if !(0..bytes.len()).any(placeholder) {
        return Cow::Borrowed(sql);
    }
    let out: String = sql
        .char_indices()
        .map(|(i, c)| if c == '$' && placeholder(i) { '?' } else { c })
        .collect();
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_sqlite_s() {
        assert_eq!(
            sqlite("SELECT 1 WHERE a = $1 AND b = $12 AND c = '$x'"),
            "SELECT 1 WHERE a = ?1 AND b = ?12 AND c = '$x'"
        );
        assert!(matches!(sqlite(COUNT_BY_STATE), Cow::Borrowed(_)));
        assert!(GATES_OF_BUILD.starts_with("SELECT id, state, proceed,"));
        assert!(GATES_OF_BUILD.contains("step_deadline_ms FROM gates WHERE build_number = $1"));
    }

    #[test]
    fn shared_statements_keep_no_dollar_for_sqlite() {
        for statement in [
            GATE_BY_ID,
            GATE_BY_TOKEN_HASH,
            GATES_IN_STATE,
            ALL_GATES,
            OPEN_GATES_AFTER,
            OPEN_GATES_OF_STAGE,
            insert_gate!(),
            TRANSITION_SET,
            UPDATE_CHANGE_REQUEST,
            DUE_CREATION_DEADLINES,
            DUE_STEP_DEADLINES,
            INSERT_EVENT,
            EVENTS_OF_GATE,
            insert_outbox!(),
            DELETE_OUTBOX,
            RETRY_OUTBOX,
            QUEUE_LATE_ACKNOWLEDGEMENT,
            RECORD_MIGRATION,
            INSERT_FREEZE,
            INSERT_EVIDENCE,
            FREEZES_NOT_OVER,
            HOLD_GATE,
            UPSERT_HOLD,
            DUE_HOLDS,
            EXTEND_HOLD,
        ] {
            assert!(!sqlite(statement).contains('$'), "{statement}");
        }
        assert_eq!(
            sqlite(UPDATE_CHANGE_REQUEST),
            "UPDATE gates SET change_request = ?1, updated_at = ?2, message = COALESCE(?3, message), \
             creation_deadline_ms = CASE WHEN ?4 THEN NULL ELSE creation_deadline_ms END, \
             step_deadline_ms = COALESCE(step_deadline_ms, ?5), \
             next_poll_ms = COALESCE(?6, next_poll_ms) \
             WHERE id = ?7 AND state IN ('registering', 'pending')"
        );
        assert!(TRANSITION_SET.ends_with("END WHERE id = $8 AND state "));
        assert!(DUE_STEP_DEADLINES.ends_with(
            "FROM gates WHERE step_deadline_ms <= $1 AND state IN ('registering', 'pending') \
             ORDER BY step_deadline_ms LIMIT $2"
        ));
    }
}
