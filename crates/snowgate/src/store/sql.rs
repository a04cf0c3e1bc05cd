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
        concat!("SELECT ", gate_columns!(), " FROM gates ", $rest)
    };
}

pub const GATE_COLUMNS: &str = gate_columns!();

/// Open gates (registering, pending), the oldest first (index `gates_open`).
pub const OPEN_GATES: &str =
    select_gates!("WHERE state IN ('registering', 'pending') ORDER BY created_ms, id LIMIT $1");

/// Decided gates, the newest decision first (index `gates_decided`). A gate gets
/// `decided_at` when, and only when, it enters a terminal state.
pub const RECENT_DECISIONS: &str =
    select_gates!("WHERE decided_at IS NOT NULL ORDER BY decided_at DESC, id LIMIT $1");

/// Gates of one build number, the newest first (index `gates_build`).
pub const GATES_OF_BUILD: &str =
    select_gates!("WHERE build_number = $1 ORDER BY created_ms DESC, id LIMIT $2");

/// Gate counts per state.
pub const COUNT_BY_STATE: &str = "SELECT state, COUNT(*) FROM gates GROUP BY state";

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
}
