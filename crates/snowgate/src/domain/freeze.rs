//! Change freezes (blackout windows): while one is active, the gates of the jobs (and, in
//! change mode, of the environments) it names do not proceed, whatever ServiceNow decides.
use chrono::{DateTime, Utc};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::fields::{kind, Fields};
use super::request::{FieldError, MAX_NAME};
use crate::configuration::GateMode;
use crate::domain::GateSpec;

/// Longest freeze name (a CR title is 160 characters; a freeze name reads like one).
pub const MAX_FREEZE_NAME: usize = 160;

/// The keys of a freeze in `POST /api/v1/freezes`.
const FREEZE_FIELDS: [&str; 6] = ["name", "start", "end", "reason", "jobs", "environments"];

/// Longest reason.
pub const MAX_REASON: usize = 1000;
/// Most job patterns or environments one freeze lists.
pub const MAX_ENTRIES: usize = 100;

/// Where a freeze was declared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FreezeSource {
    /// The configuration file's `freezes`: changed there, not through the API.
    Configuration,
    /// `POST /api/v1/freezes`.
    Api,
}

/// A declared freeze.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Freeze {
    pub id: String,
    pub name: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub reason: String,
    /// Glob patterns on the full job name (`folder/job`); empty: every job.
    #[serde(default)]
    pub jobs: Vec<String>,
    /// Environment names (case-insensitive) a change-mode gate must deploy to; empty: every
    /// environment.
    #[serde(default)]
    pub environments: Vec<String>,
    pub source: FreezeSource,
    /// The operator who declared it (API freezes).
    #[serde(default)]
    pub created_by: Option<String>,
}

impl Freeze {
    /// A freeze from `POST /api/v1/freezes`' body; `id` and `by` are the server's.
    pub fn parse(body: &Value, id: String, by: &str) -> Result<Freeze, FieldError> {
        let obj = body
            .as_object()
            .ok_or_else(|| FieldError::new("body", "must be a JSON object"))?;
        // A misspelt key (`enviroments`) must not quietly widen the freeze to everything.
        if let Some(key) = obj.keys().find(|k| !FREEZE_FIELDS.contains(&k.as_str())) {
            return Err(FieldError::new(
                key,
                format!("is not a field of a freeze ({})", FREEZE_FIELDS.join(", ")),
            ));
        }
        let f = Fields(obj);
        let name = f
            .string("name", MAX_FREEZE_NAME)?
            .ok_or_else(|| f.missing("name"))?;
        let start = time(&f, "start")?;
        let end = time(&f, "end")?;
        let reason = f
            .string("reason", MAX_REASON)?
            .ok_or_else(|| f.missing("reason"))?;
        let freeze = Freeze {
            id,
            name,
            start,
            end,
            reason,
            jobs: names(obj.get("jobs"), "jobs")?,
            environments: names(obj.get("environments"), "environments")?,
            source: FreezeSource::Api,
            created_by: Some(by.to_string()),
        };
        freeze.check()?;
        Ok(freeze)
    }

    /// What every freeze must be, however declared: a window that ends after it starts, and
    /// job patterns that are globs.
    pub fn check(&self) -> Result<(), FieldError> {
        if self.end <= self.start {
            return Err(FieldError::new("end", "must be after start"));
        }
        matcher(&self.jobs).map_err(|e| FieldError::new("jobs", e))?;
        Ok(())
    }

    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.start <= now && now < self.end
    }

    /// `name` (until `end`): `reason` — how messages name the freeze.
    pub fn describe(&self) -> String {
        format!(
            "change freeze `{}` (until {}): {}",
            self.name,
            self.end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            self.reason
        )
    }
}

/// An RFC 3339 time.
fn time(f: &Fields, name: &str) -> Result<DateTime<Utc>, FieldError> {
    let text = f.string(name, 64)?.ok_or_else(|| f.missing(name))?;
    DateTime::parse_from_rfc3339(&text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            FieldError::new(
                name,
                "must be an RFC 3339 time, e.g. \"2026-12-24T00:00:00Z\"",
            )
        })
}

/// An optional array of non-empty strings.
fn names(value: Option<&Value>, field: &str) -> Result<Vec<String>, FieldError> {
    let items = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(FieldError::new(
                field,
                format!("must be an array of strings, not {}", kind(other)),
            ))
        }
    };
    if items.len() > MAX_ENTRIES {
        return Err(FieldError::new(
            field,
            format!(
                "lists {} entries; at most {MAX_ENTRIES} are allowed",
                items.len()
            ),
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(s) if !s.trim().is_empty() && s.chars().count() <= MAX_NAME => {
                Ok(s.clone())
            }
            Value::String(_) => Err(FieldError::new(
                &format!("{field}[{i}]"),
                format!("must be 1 to {MAX_NAME} characters"),
            )),
            other => Err(FieldError::new(
                &format!("{field}[{i}]"),
                format!("must be a string, not {}", kind(other)),
            )),
        })
        .collect()
}

fn matcher(patterns: &[String]) -> Result<GlobSet, String> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        b.add(
            GlobBuilder::new(p)
                .literal_separator(false)
                .build()
                .map_err(|e| format!("`{p}` is not a glob pattern: {e}"))?,
        );
    }
    b.build().map_err(|e| e.to_string())
}

/// A freeze with its job patterns compiled, to test gates against.
#[derive(Clone, Debug)]
pub struct FreezeRule {
    pub freeze: Freeze,
    jobs: GlobSet,
}

impl FreezeRule {
    pub fn new(freeze: Freeze) -> Result<FreezeRule, FieldError> {
        let jobs = matcher(&freeze.jobs).map_err(|e| FieldError::new("jobs", e))?;
        Ok(FreezeRule { freeze, jobs })
    }

    /// Whether the freeze covers this gate: its job matches (no patterns: every job), and a
    /// change-mode gate's environment is one of the freeze's (none listed: every one).
    pub fn covers(&self, spec: &GateSpec, full_job_name: &str) -> bool {
        let job = self.freeze.jobs.is_empty() || self.jobs.is_match(full_job_name);
        let environment = spec.mode != GateMode::Change
            || self.freeze.environments.is_empty()
            || spec.environment.as_deref().is_some_and(|env| {
                self.freeze
                    .environments
                    .iter()
                    .any(|e| e.eq_ignore_ascii_case(env))
            });
        job && environment
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body() -> Value {
        json!({"name": "Year end", "start": "2026-12-20T00:00:00Z", "end": "2027-01-04T00:00:00+01:00",
               "reason": "no deployments over the holidays", "jobs": ["shop/*"], "environments": ["Production"]})
    }

    #[test]
    fn a_freeze_parses_with_its_window_patterns_and_author() {
        let f = Freeze::parse(&body(), "f1".into(), "alice").unwrap();
        assert_eq!(f.name, "Year end");
        assert_eq!(f.end.to_rfc3339(), "2027-01-03T23:00:00+00:00");
        assert_eq!(f.jobs, vec!["shop/*"]);
        assert_eq!(f.created_by.as_deref(), Some("alice"));
        assert!(f.is_active("2026-12-24T12:00:00Z".parse().unwrap()));
        assert!(
            !f.is_active("2027-01-03T23:00:00Z".parse().unwrap()),
            "the end is not in it"
        );
        assert!(!f.is_active("2026-12-19T23:59:59Z".parse().unwrap()));
    }

    #[test]
    fn bad_freezes_are_refused_by_field() {
        let with = |k: &str, v: Value| {
            let mut b = body();
            b[k] = v;
            b
        };
        let without = |k: &str| {
            let mut b = body();
            b.as_object_mut().unwrap().remove(k);
            b
        };
        for (b, field) in [
            (without("name"), "name"),
            (with("name", json!("x".repeat(161))), "name"),
            (with("name", json!(7)), "name"),
            (without("start"), "start"),
            (with("start", json!("24.12.2026")), "start"),
            (with("end", json!("2026-12-19T00:00:00Z")), "end"),
            (without("reason"), "reason"),
            (with("jobs", json!("shop/*")), "jobs"),
            (with("jobs", json!(["shop/[a"])), "jobs"),
            (with("jobs", json!([1])), "jobs[0]"),
            (with("environments", json!([""])), "environments[0]"),
            (json!([]), "body"),
            (with("enviroments", json!(["Production"])), "enviroments"),
        ] {
            let e = Freeze::parse(&b, "f".into(), "alice").unwrap_err();
            assert_eq!(e.field, field, "{b}");
        }
    }

    #[test]
    fn a_freeze_covers_its_jobs_and_in_change_mode_its_environments() {
        let rule = FreezeRule::new(Freeze::parse(&body(), "f".into(), "a").unwrap()).unwrap();
        let mut spec = GateSpec::parse(&json!({"jobUrl": "https://ci/job/shop/job/app/",
            "buildNumber": 1, "stageName": "Deploy"}))
        .unwrap();
        assert!(
            rule.covers(&spec, "shop/app"),
            "DevOps gates: the job alone"
        );
        assert!(!rule.covers(&spec, "billing/app"));
        spec.mode = GateMode::Change;
        spec.environment = Some("production".into());
        assert!(rule.covers(&spec, "shop/app"));
        spec.environment = Some("Staging".into());
        assert!(!rule.covers(&spec, "shop/app"));
    }
}
