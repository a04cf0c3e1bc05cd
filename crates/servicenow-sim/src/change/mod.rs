//! The simulated Change Management API (`sn_chg_rest`), the API Octopus Deploy gates on (Octopus
//! Deploy's ServiceNow docs, "The ServiceNow integration uses the following REST endpoints"),
//! served under `/api/sn_chg_rest/change…` and
//! `/api/sn_chg_rest/v1/change…`:
//!
//! | request | answer |
//! |---|---|
//! | `GET /change` | 200 `{"result":[record…]}` filtered by `sysparm_query` and plain `field=value` parameters, `sysparm_limit`, `sysparm_offset`, `sysparm_fields`; header `X-Total-Count` |
//! | `GET /change/{sys_id}` | 200 `{"result":record}`; 404 |
//! | `POST /change/normal`, `/change/emergency`, `/change/standard/{template sys_id}` | 200 `{"result":{record…,"__meta":{"ignoredFields":[…]}}}` (an object; `[{…}]` with [`crate::SimSettings::chg_create_as_array`]) |
//! | `PATCH /change/{sys_id}` | 200 `{"result":{record…,"__meta":{"ignoredFields":[…]}}}`; 400 bad state or transition; 404 |
//! | `GET /change/standard/template` | 200 `{"result":[{"sys_id","name","active","short_description"}…]}` (record shape) |
//! | `POST /change/{sys_id}/conflict` | 200 `{"result":"<the check's sys_id>"}`, the check done at once; 400 without a `cmdb_ci`; 404; no body or `Content-Type` needed |
//! | `GET /change/{sys_id}/conflict` | 200 `{"result":{"status","last_run","record_count","job_status","conflicts":[{"change","type","schedule"?}…]}}`: "Not run" before a POST, else the last POST's snapshot; 404 |
//! | `DELETE /change/{sys_id}/conflict` | 200, no body (nothing is ever running); 404 |
//!
//! Every request is recorded first. Then, in the order a ServiceNow instance applies them: the
//! route (400 unknown resource, 405 method), injected faults (keys `change.get`, `change.post`,
//! `change.patch`, `change.template`, `change.conflict.post`, `change.conflict.get`,
//! `change.conflict.delete`), authentication (401: `Bearer` access token from
//! [`crate::oauth`] or Basic with the simulator's user), `Accept` (400 missing, 406 not JSON),
//! `Content-Type: application/json` on the POSTs and PATCH that take a body (400), roles (403),
//! the body (400), the records (404), and what the record lacks (400: a conflict check of a CR
//! without a configuration item).
//!
//! Records carry every field as `{"value","display_value"}`. Values are what clients must use:
//! dates are `YYYY-MM-DD HH:MM:SS` UTC, while display values are written for a user in US
//! Pacific time, UTC-08:00 (`display_value` as `MM/DD/YYYY hh:mm:ss AM`, `display_value_internal`
//! as `YYYY-MM-DD HH:MM:SS`), so a client that parses display values is eight hours off, on
//! purpose.
//!
//! The state model is ServiceNow's default lifecycle (ServiceNow's default; the Octopus docs: "The only supported states
//! are those defined in the default CR lifecycle"), and PATCH enforces its transitions the way
//! the instance's state-model business rules do; see [`state_model::allowed_transition`]. The
//! admin API (`change_admin.rs`) moves a CR anywhere, as an approver or a script would.
//!
//! Modules: `state_model` (types, approvals, the transitions PATCH allows), `record` (CRs and
//! templates as records are rendered, the error shape), `store` (the CRs, templates and roles),
//! `query` (encoded queries), `conflicts` (conflict checks and the conflicts tests plant),
//! `routes` (routing and the checks before a handler) and `handlers` (one per endpoint).

use std::sync::PoisonError;

use super::Shared;

mod conflicts;
mod handlers;
pub(crate) mod query;
mod record;
mod routes;
pub(crate) use routes::authenticated;
mod state_model;
mod store;

pub use conflicts::ChgConflict;
pub(crate) use record::ChgError;
pub use record::{ChgChange, ChgTemplate, ChgWorkNote};
pub(crate) use routes::{configure, fault_response, platform_error};
pub(crate) use state_model::ChangeType;
#[cfg(test)]
pub(crate) use state_model::{allowed_transition, parse_patch_state};
pub(crate) use store::ChgModel;

/// Change-API CRs start at CHG0040001, apart from the DevOps CRs (CHG0030001…), so a test can
/// tell which API made a CR from its number.
const FIRST_NUMBER: usize = 40_001;
/// `sysparm_limit` when none is given: the Table API's documented maximum page.
const DEFAULT_LIMIT: usize = 10_000;
/// The user's time zone that display values are written in: US Pacific standard time
/// (America/Los_Angeles as a fixed UTC-08:00, no daylight saving), far enough from UTC that a
/// client parsing display values is visibly wrong.
const USER_UTC_OFFSET_HOURS: i64 = -8;
/// How display values of dates read (the instance's "MM/dd/yyyy hh:mm:ss a" user format).
const DISPLAY_DATE_FORMAT: &str = "%m/%d/%Y %I:%M:%S %p";
/// ServiceNow's Change API: read needs `sn_change_read` or `itil`; create and update need `sn_change_write` or
/// `itil`. `admin` is not special here: Octopus Deploy's docs ask for a web-service user with exactly the
/// two change roles.
const READ_ROLES: [&str; 2] = ["sn_change_read", "itil"];
const WRITE_ROLES: [&str; 2] = ["sn_change_write", "itil"];
/// Fields a create ignores (and lists in `__meta.ignoredFields`): the instance numbers the CR,
/// the path decides the type, and a new CR is always New and not yet requested for approval.
const REFUSED_ON_CREATE: [&str; 6] = ["number", "sys_id", "type", "state", "active", "approval"];
/// Fields a PATCH ignores: identity, type, and what only the lifecycle and approvers change.
const REFUSED_ON_PATCH: [&str; 5] = ["number", "sys_id", "type", "active", "approval"];
/// Fields every record shows, even when empty.
const BASE_FIELDS: [&str; 7] = [
    "short_description",
    "description",
    "assignment_group",
    "close_code",
    "close_notes",
    "start_date",
    "end_date",
];
/// Fields whose values are dates (checked on input, displayed in the user's time zone).
const DATE_FIELDS: [&str; 4] = ["start_date", "end_date", "sys_created_on", "sys_updated_on"];

impl Shared {
    /// Runs `f` with the change API's model locked. Never hold the lock across an `.await`.
    pub(crate) fn with_chg<R>(&self, f: impl FnOnce(&mut ChgModel) -> R) -> R {
        let mut chg = self.chg.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut chg)
    }
}
