//! ServiceNow's conflict detection for a change request (Change Management API:
//! `POST /api/sn_chg_rest/change/{sys_id}/conflict` starts a check, `GET` on the same path
//! answers the running check's status or the last completed one's results).
use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;

use super::{ChangeClient, Field};
use crate::servicenow::lenient::Scalar;
use crate::servicenow::ServiceNowError;

/// The last conflict check of a change request.
#[derive(Clone, Debug, PartialEq)]
pub struct ConflictReport {
    /// The check has completed. ServiceNow documents `job_status` without its values; its
    /// examples of completed checks answer `"2"`, so anything else counts as not completed
    /// (fail closed: the gate waits).
    pub completed: bool,
    /// No check has run for the CR yet (`status` "Not run", documented as a status value;
    /// the CR's `conflict_status` defaults to "Not Run").
    pub never_run: bool,
    /// When the last check started (`last_run`, ServiceNow's text): a check started since
    /// shows a different one.
    pub last_run: String,
    pub conflicts: Vec<Conflict>,
}

/// One conflict ServiceNow reports.
#[derive(Clone, Debug, PartialEq)]
pub struct Conflict {
    /// The conflicting change (its number), when the conflict is with another change.
    pub change: Option<String>,
    /// The conflict's type as ServiceNow shows it (`Not In Maintenance Window`, `Blackout`).
    pub kind: String,
    /// The blackout or maintenance schedule, when one is named.
    pub schedule: Option<String>,
}

impl Conflict {
    /// `CHG0030001 (Not In Maintenance Window)`, `blackout schedule Year end (Blackout)`.
    pub fn describe(&self) -> String {
        match (&self.change, &self.schedule) {
            (_, Some(s)) => format!("schedule {s} ({})", self.kind),
            (Some(c), None) => format!("{c} ({})", self.kind),
            (None, None) => self.kind.clone(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct ConflictAnswer {
    result: Option<ConflictResult>,
}

#[derive(Debug, Default, Deserialize)]
struct ConflictResult {
    job_status: Option<Scalar>,
    /// Documented as strings; read as any JSON so that another shape reads as unknown rather
    /// than failing the whole answer.
    status: Option<Value>,
    last_run: Option<Value>,
    #[serde(default)]
    conflicts: Vec<Value>,
}

fn display(record: &Value, name: &str) -> Option<String> {
    Field::deserialize(record.get(name)?).ok()?.display()
}

impl ChangeClient {
    /// Start a conflict check of the CR (`POST …/change/{sys_id}/conflict`, no body).
    pub async fn start_conflict_check(&self, sys_id: &str) -> Result<(), ServiceNowError> {
        let url = self.url(&[sys_id, "conflict"], &[]);
        self.call(Method::POST, url, None, "POST change/{id}/conflict")
            .await?;
        Ok(())
    }

    /// The status or results of the CR's last conflict check (`GET …/conflict`).
    pub async fn conflicts(&self, sys_id: &str) -> Result<ConflictReport, ServiceNowError> {
        let url = self.url(&[sys_id, "conflict"], &[]);
        let answer = self
            .call(Method::GET, url, None, "GET change/{id}/conflict")
            .await?;
        let result = answer
            .read::<ConflictAnswer>()?
            .result
            .ok_or_else(|| ServiceNowError::Decode("the answer has no `result`".into()))?;
        let completed = match result.job_status {
            Some(Scalar::Str(s)) => s == "2",
            Some(Scalar::Num(n)) => n.as_u64() == Some(2),
            _ => false,
        };
        let conflicts = result
            .conflicts
            .iter()
            .map(|c| Conflict {
                change: display(c, "change"),
                kind: display(c, "type").unwrap_or_else(|| "conflict".into()),
                schedule: display(c, "schedule"),
            })
            .collect();
        Ok(ConflictReport {
            completed,
            never_run: result
                .status
                .as_ref()
                .and_then(Value::as_str)
                .is_some_and(|s| s.trim().eq_ignore_ascii_case("not run")),
            last_run: result
                .last_run
                .as_ref()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                .unwrap_or_default(),
            conflicts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflicts_read_as_servicenow_documents_them() {
        let v: ConflictAnswer = crate::servicenow::lenient::parse(
            br#"{"result":{"status":"Conflict","last_run":"2018-08-30 12:58:05","record_count":"1","job_status":"2",
              "conflicts":[{"change":{"display_value":"CHG0030001","value":"afbf"},
                            "type":{"display_value":"Not In Maintenance Window","value":"not_in_maintenance_window"}},
                           {"type":{"display_value":"Blackout","value":"blackout"},
                            "schedule":{"display_value":"Year end","value":"a1"}}]}}"#,
        )
        .unwrap();
        let r = v.result.unwrap();
        assert!(matches!(&r.job_status, Some(Scalar::Str(s)) if s == "2"));
        let described: Vec<String> = r
            .conflicts
            .iter()
            .map(|c| {
                Conflict {
                    change: display(c, "change"),
                    kind: display(c, "type").unwrap(),
                    schedule: display(c, "schedule"),
                }
                .describe()
            })
            .collect();
        assert_eq!(
            described,
            vec![
                "CHG0030001 (Not In Maintenance Window)",
                "schedule Year end (Blackout)"
            ]
        );
    }
}
