//! Conflict checking: `POST`, `GET` and `DELETE /change/{sys_id}/conflict`, as ServiceNow's
//! Change Management API documents them, and the conflicts a test plants for a CR.
//!
//! A simulated check completes the moment it starts, unless a test asks it to run on for a
//! number of GETs (`ChgModel::keep_checks_running`): the POST takes a snapshot of the
//! conflicts planted for the CR, and GET shows that snapshot until the next POST. Conflicts
//! planted after a POST appear only after the next one, as on an instance, where GET shows
//! "the results of the last completed conflict checking process". A POST while a check runs
//! starts it over (what an instance does then is not documented).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use actix_web::HttpResponse;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::record::ChgError;
use super::routes::Answer;
use super::store::{new_sys_id, ChgModel};
use crate::model::now;
use crate::Shared;

/// A conflict a test plants for a CR (camelCase JSON in the admin API). The next conflict check
/// of that CR reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChgConflict {
    /// The CR the conflict record's `change` field names (a change-API CR, `CHG0040001`, …).
    pub change_number: String,
    /// The conflict type's value, such as `not_in_maintenance_window` or `blackout`.
    pub kind: String,
    /// Its display value, such as `Not In Maintenance Window` or `Blackout`.
    pub kind_display: String,
    /// The blackout schedule's name, for blackout conflicts (rendered as the `schedule` field).
    #[serde(default)]
    pub schedule: Option<String>,
}

/// A planted conflict with its references resolved: the change's sys_id and the schedule's.
#[derive(Clone, Debug)]
struct Stored {
    change_number: String,
    change_sys_id: String,
    kind: String,
    kind_display: String,
    /// (name, sys_id).
    schedule: Option<(String, String)>,
}

impl Stored {
    /// A conflict as GET lists it: record fields as `{display_value, value}` pairs (ServiceNow's
    /// example shows `change` and `type`; `schedule` is the conflict record's reference to the
    /// blackout schedule).
    fn render(&self) -> Value {
        let pair = |display: &str, value: &str| json!({"display_value": display, "value": value});
        let mut out = json!({
            "change": pair(&self.change_number, &self.change_sys_id),
            "type": pair(&self.kind_display, &self.kind),
        });
        if let Some((name, sys_id)) = &self.schedule {
            out["schedule"] = pair(name, sys_id);
        }
        out
    }
}

/// The last check that ran for a CR.
#[derive(Clone, Debug)]
struct CheckRun {
    /// When the check started, `YYYY-MM-DD HH:MM:SS` UTC (ServiceNow: `last_run` is the "Date
    /// and time the last conflict checking process started").
    started: String,
    /// The conflicts planted when it ran.
    conflicts: Vec<Stored>,
}

#[derive(Debug, Default)]
struct CrConflicts {
    planted: Vec<Stored>,
    last: Option<CheckRun>,
    runs: usize,
    /// GETs for which each new check of the CR shows as still running.
    running_for: usize,
    /// GETs left before the last check shows as completed.
    running_left: usize,
}

/// Conflicts and checks, by the checked CR's sys_id; schedules get one sys_id per name.
#[derive(Debug, Default)]
pub(crate) struct ConflictBook {
    by_change: HashMap<String, CrConflicts>,
    schedules: BTreeMap<String, String>,
}

fn not_found() -> ChgError {
    ChgError::NotFound("Record doesn't exist or ACL restricts the record retrieval".into())
}

impl ChgModel {
    /// Starts (and, in the simulator, completes) a check of the CR with this sys_id; the check's
    /// sys_id. A CR without a configuration item is a 400: ServiceNow's conflict detection
    /// checks a CR's CI, and its Change API refuses the related schedule calls for a CR that
    /// "does not have an associated configuration item".
    pub(crate) fn start_conflict_check(&mut self, sys_id: &str) -> Result<String, ChgError> {
        let change = self.by_sys_id(sys_id).ok_or_else(not_found)?;
        if change.value("cmdb_ci").trim().is_empty() {
            return Err(ChgError::bad(
                "Conflict checking was unable to start",
                format!(
                    "The change request {} does not have an associated configuration item (cmdb_ci)",
                    change.value("number")
                ),
            ));
        }
        let entry = self
            .conflicts
            .by_change
            .entry(sys_id.to_string())
            .or_default();
        entry.last = Some(CheckRun {
            started: now(),
            conflicts: entry.planted.clone(),
        });
        entry.runs += 1;
        entry.running_left = entry.running_for;
        Ok(new_sys_id())
    }

    /// GET's `result` for the CR with this sys_id.
    pub(crate) fn conflict_status(&mut self, sys_id: &str) -> Result<Value, ChgError> {
        self.by_sys_id(sys_id).ok_or_else(not_found)?;
        let mut running = false;
        if let Some(c) = self.conflicts.by_change.get_mut(sys_id) {
            // Each read of a running check brings it one read nearer to completing.
            running = c.running_left > 0;
            c.running_left = c.running_left.saturating_sub(1);
        }
        let last = self
            .conflicts
            .by_change
            .get(sys_id)
            .and_then(|c| c.last.as_ref());
        Ok(match last {
            // A check still running: ServiceNow documents no running status; job status "1"
            // (anything but the "2" of its finished examples) and no conflicts yet are the
            // simulator's choice.
            Some(run) if running => json!({
                "status": "Conflict",
                "last_run": run.started,
                "record_count": "0",
                "job_status": "1",
                "conflicts": [],
            }),
            // Never checked. ServiceNow documents "Not run" as a status but not the other
            // fields before a first run: the empty date, "0" records and job status "0" are the
            // simulator's choice.
            None => json!({
                "status": "Not run",
                "last_run": "",
                "record_count": "0",
                "job_status": "0",
                "conflicts": [],
            }),
            // A finished run, as ServiceNow's examples show it: "Conflict" even without
            // conflicts (documented), one record checked and job status "2".
            Some(run) => json!({
                "status": "Conflict",
                "last_run": run.started,
                "record_count": "1",
                "job_status": "2",
                "conflicts": run.conflicts.iter().map(Stored::render).collect::<Vec<_>>(),
            }),
        })
    }

    /// DELETE: cancels the running check. Simulated checks complete at once, so none is ever
    /// running; what an instance answers then is not documented, and the simulator answers 200
    /// and keeps the last results.
    pub(crate) fn cancel_conflict_check(&self, sys_id: &str) -> Result<(), ChgError> {
        self.by_sys_id(sys_id).map(|_| ()).ok_or_else(not_found)
    }

    /// The sys_id of the CR with this number (or `"latest"`).
    fn sys_id_of(&self, number: &str) -> Result<String, ChgError> {
        self.change(number)
            .map(|c| c.sys_id)
            .ok_or_else(|| ChgError::NotFound(format!("change request {number} not found")))
    }

    /// Plants a conflict for the CR `number`; its `change_number` must name a CR too.
    pub(crate) fn add_conflict(
        &mut self,
        number: &str,
        conflict: ChgConflict,
    ) -> Result<(), ChgError> {
        let checked = self.sys_id_of(number)?;
        let named = self.change(&conflict.change_number).ok_or_else(|| {
            ChgError::NotFound(format!(
                "change request {} (the conflict's change) not found",
                conflict.change_number
            ))
        })?;
        if conflict.kind.trim().is_empty() {
            return Err(ChgError::bad("Invalid conflict", "kind is required"));
        }
        let schedule = conflict.schedule.map(|name| {
            let sys_id = self
                .conflicts
                .schedules
                .entry(name.clone())
                .or_insert_with(new_sys_id)
                .clone();
            (name, sys_id)
        });
        let stored = Stored {
            change_number: named.number,
            change_sys_id: named.sys_id,
            kind: conflict.kind,
            kind_display: conflict.kind_display,
            schedule,
        };
        let entry = self.conflicts.by_change.entry(checked).or_default();
        entry.planted.push(stored);
        Ok(())
    }

    /// Forgets the conflicts planted for the CR `number` (the last check's results stay).
    pub(crate) fn clear_conflicts(&mut self, number: &str) -> Result<(), ChgError> {
        let checked = self.sys_id_of(number)?;
        if let Some(entry) = self.conflicts.by_change.get_mut(&checked) {
            entry.planted.clear();
        }
        Ok(())
    }

    /// The conflicts planted for the CR `number` (`None` when unknown).
    pub(crate) fn planted_conflicts(&self, number: &str) -> Option<Vec<ChgConflict>> {
        let checked = self.sys_id_of(number).ok()?;
        let planted = self
            .conflicts
            .by_change
            .get(&checked)
            .map_or(&[][..], |c| &c.planted);
        Some(
            planted
                .iter()
                .map(|s| ChgConflict {
                    change_number: s.change_number.clone(),
                    kind: s.kind.clone(),
                    kind_display: s.kind_display.clone(),
                    schedule: s.schedule.as_ref().map(|(name, _)| name.clone()),
                })
                .collect(),
        )
    }

    /// Each later check of the CR `number` shows as running for `gets` GETs before it completes.
    pub(crate) fn keep_checks_running(
        &mut self,
        number: &str,
        gets: usize,
    ) -> Result<(), ChgError> {
        let checked = self.sys_id_of(number)?;
        self.conflicts
            .by_change
            .entry(checked)
            .or_default()
            .running_for = gets;
        Ok(())
    }

    /// How many checks ran for the CR `number` (0 when unknown).
    pub(crate) fn conflict_checks(&self, number: &str) -> usize {
        self.sys_id_of(number)
            .ok()
            .and_then(|id| self.conflicts.by_change.get(&id))
            .map_or(0, |c| c.runs)
    }
}

/// `POST /change/{sys_id}/conflict` → `{"result": "<the check's sys_id>"}`.
pub(super) fn start(shared: &Arc<Shared>, sys_id: &str) -> Answer {
    let check = shared.with_chg(|c| c.start_conflict_check(sys_id))?;
    tracing::info!(%sys_id, %check, "conflict check run");
    Ok(HttpResponse::Ok().json(json!({ "result": check })))
}

/// `GET /change/{sys_id}/conflict` → `{"result": {status, last_run, record_count, job_status,
/// conflicts}}`.
pub(super) fn status(shared: &Arc<Shared>, sys_id: &str) -> Answer {
    let result = shared.with_chg(|c| c.conflict_status(sys_id))?;
    Ok(HttpResponse::Ok().json(json!({ "result": result })))
}

/// `DELETE /change/{sys_id}/conflict` → 200 without a body (ServiceNow: "Response body: None").
pub(super) fn cancel(shared: &Arc<Shared>, sys_id: &str) -> Answer {
    shared.with_chg(|c| c.cancel_conflict_check(sys_id))?;
    Ok(HttpResponse::Ok().finish())
}
