//! The encoded-query subset of `sysparm_query` (ServiceNow "Encoded query strings").

use std::cmp::Ordering;

/// A condition's operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Like,
    NotLike,
    StartsWith,
    EndsWith,
    IsEmpty,
    IsNotEmpty,
}

/// Operators as they follow a field name; longer spellings first (`ISNOTEMPTY` before
/// `ISEMPTY`, `!=` before `=`).
const OPERATORS: [(&str, Op); 8] = [
    ("ISNOTEMPTY", Op::IsNotEmpty),
    ("ISEMPTY", Op::IsEmpty),
    ("NOT LIKE", Op::NotLike),
    ("LIKE", Op::Like),
    ("STARTSWITH", Op::StartsWith),
    ("ENDSWITH", Op::EndsWith),
    ("!=", Op::Ne),
    ("=", Op::Eq),
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Condition {
    pub(crate) field: String,
    pub(crate) op: Op,
    pub(crate) value: String,
}

impl Condition {
    /// Compares with the field's `value`. Like a MySQL-backed instance, text comparisons
    /// ignore case (so `short_description=…` may return titles that differ in case: the
    /// API reference's "must match the format exactly" is the client's check to make).
    fn matches(&self, actual: &str) -> bool {
        let actual = actual.to_lowercase();
        let wanted = self.value.to_lowercase();
        match self.op {
            Op::Eq => actual == wanted,
            Op::Ne => actual != wanted,
            Op::Like => actual.contains(&wanted),
            Op::NotLike => !actual.contains(&wanted),
            Op::StartsWith => actual.starts_with(&wanted),
            Op::EndsWith => actual.ends_with(&wanted),
            Op::IsEmpty => actual.is_empty(),
            Op::IsNotEmpty => !actual.is_empty(),
        }
    }
}

/// A parsed query: `^NQ`-separated alternatives, each an AND (`^`) of OR-groups (`^OR`,
/// which binds tighter, as on the instance), plus `ORDERBY`/`ORDERBYDESC` keys in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct EncodedQuery {
    pub(crate) blocks: Vec<Vec<Vec<Condition>>>,
    /// (field, descending).
    pub(crate) order: Vec<(String, bool)>,
}

fn field_name(text: &str) -> usize {
    text.bytes()
        .take_while(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'.')
        .count()
}

fn check_field(field: &str, term: &str) -> Result<(), String> {
    if field.is_empty() || field_name(field) != field.len() {
        return Err(format!("invalid field name in {term:?}"));
    }
    Ok(())
}

fn parse_condition(term: &str) -> Result<Condition, String> {
    let end = field_name(term);
    let (field, rest) = term.split_at(end);
    check_field(field, term)?;
    let (op, value) = OPERATORS
        .iter()
        .find_map(|(spelling, op)| rest.strip_prefix(spelling).map(|v| (*op, v)))
        .ok_or_else(|| format!("unsupported operator in {term:?}"))?;
    if matches!(op, Op::IsEmpty | Op::IsNotEmpty) && !value.is_empty() {
        return Err(format!("{term:?}: ISEMPTY and ISNOTEMPTY take no value"));
    }
    Ok(Condition {
        field: field.to_string(),
        op,
        value: value.to_string(),
    })
}

/// Splits on `^`; `^^` is a literal `^` inside a value.
fn split_terms(text: &str) -> Vec<String> {
    let mut terms = Vec::new();
    let mut term = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '^' {
            term.push(c);
        } else if chars.peek() == Some(&'^') {
            chars.next();
            term.push('^');
        } else {
            terms.push(std::mem::take(&mut term));
        }
    }
    terms.push(term);
    terms
}

impl EncodedQuery {
    /// Parses a `sysparm_query` value (already percent-decoded). Anything outside the
    /// subset is an error rather than silently ignored: an instance that drops a condition
    /// it cannot read returns more records than asked for, and a client must not rely on
    /// that.
    pub(crate) fn parse(text: &str) -> Result<EncodedQuery, String> {
        let mut query = EncodedQuery::default();
        let mut block: Vec<Vec<Condition>> = Vec::new();
        for term in split_terms(text) {
            if term.is_empty() {
                continue;
            }
            if let Some(field) = term.strip_prefix("ORDERBYDESC") {
                check_field(field, &term)?;
                query.order.push((field.to_string(), true));
            } else if let Some(field) = term.strip_prefix("ORDERBY") {
                check_field(field, &term)?;
                query.order.push((field.to_string(), false));
            } else if let Some(rest) = term.strip_prefix("NQ") {
                // `a=1^NQb=2`: a new query whose results are added to the first one's.
                if !block.is_empty() {
                    query.blocks.push(std::mem::take(&mut block));
                }
                if !rest.is_empty() {
                    block.push(vec![parse_condition(rest)?]);
                }
            } else if let Some(rest) = term.strip_prefix("OR") {
                let condition = parse_condition(rest)?;
                match block.last_mut() {
                    Some(group) => group.push(condition),
                    None => return Err(format!("{term:?} has no condition to OR with")),
                }
            } else {
                block.push(vec![parse_condition(&term)?]);
            }
        }
        if !block.is_empty() {
            query.blocks.push(block);
        }
        Ok(query)
    }

    /// Adds `field=value` to every alternative (a plain query parameter).
    pub(crate) fn and_equals(&mut self, field: &str, value: &str) {
        let condition = Condition {
            field: field.to_string(),
            op: Op::Eq,
            value: value.to_string(),
        };
        if self.blocks.is_empty() {
            self.blocks.push(Vec::new());
        }
        for block in &mut self.blocks {
            block.push(vec![condition.clone()]);
        }
    }

    pub(crate) fn matches(&self, value: impl Fn(&str) -> String) -> bool {
        self.blocks.is_empty()
            || self.blocks.iter().any(|block| {
                block
                    .iter()
                    .all(|group| group.iter().any(|c| c.matches(&value(&c.field))))
            })
    }

    /// Orders two records by the query's keys: numbers numerically, text ignoring case.
    pub(crate) fn compare(
        &self,
        a: impl Fn(&str) -> String,
        b: impl Fn(&str) -> String,
    ) -> Ordering {
        for (field, descending) in &self.order {
            let (x, y) = (a(field), b(field));
            let ordering = match (x.parse::<i64>(), y.parse::<i64>()) {
                (Ok(x), Ok(y)) => x.cmp(&y),
                _ => x.to_lowercase().cmp(&y.to_lowercase()),
            };
            let ordering = if *descending {
                ordering.reverse()
            } else {
                ordering
            };
            if ordering != Ordering::Equal {
                return ordering;
            }
        }
        Ordering::Equal
    }
}
