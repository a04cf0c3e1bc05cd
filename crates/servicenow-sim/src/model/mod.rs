//! The simulator's one in-memory model: change requests, callback registrations, recorded
//! requests, callback attempts and the knobs tests turn. Everything here is synchronous and is
//! only ever touched under the model's `Mutex`, never across an `.await`.//!
//! Modules: `states` (CR states, approvals, decisions), `records` (a CR with its registration,
//! and the snapshots tests read) and `changes` (registering, finding, deciding and updating CRs).

use std::collections::{HashMap, VecDeque};

use serde::Serialize;
use serde_json::Value;
use tokio::task::AbortHandle;

use super::artifacts::ArtifactRegistry;
use super::faults::FaultTable;
use super::RecordedRequest;

mod changes;
mod records;
mod states;
#[cfg(test)]
mod tests;

pub use records::{CallbackAttempt, ChangeRecord};
pub(crate) use records::{Change, Outbound, Registration};
pub(crate) use states::{Approval, CrState, Decision};

/// The approvers and group every simulated CR gets (ServiceNow's DevOps API reference, changeInfo example).
const APPROVERS: &str = "Ron Kettering, Christen Mitchell";
const ASSIGNMENT_GROUP: &str = "Change Management";
/// First CR is CHG0030001, like a fresh instance's demo data.
const FIRST_NUMBER: u32 = 30_001;
/// How many API requests are kept for `requests()`: the oldest go first beyond this, so a load
/// test through the embedded simulator does not grow without bound (tests stay far below it).
pub(crate) const REQUEST_LOG_LIMIT: usize = 10_000;
/// `YYYY-MM-DD HH:MM:SS`, UTC: how ServiceNow writes `start_date`/`end_date` values.
pub(crate) const DATE_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// Errors of model operations.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum ModelError {
    #[error("change request {0} not found")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
}

/// What a registration did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Registered {
    /// A new CR.
    Created { number: String, sys_id: String },
    /// The callback token was registered before: its CR was kept, the registration refreshed.
    Existing { number: String },
}

/// A changeInfo lookup.
#[derive(Clone, Debug, Default)]
pub(crate) struct ChangeQuery {
    pub(crate) pipeline: Option<String>,
    pub(crate) project: Option<String>,
    pub(crate) stage: Option<String>,
    pub(crate) build: String,
    pub(crate) branch: Option<String>,
}

#[derive(Default)]
pub(crate) struct Model {
    requests: VecDeque<RecordedRequest>,
    changes: Vec<Change>,
    /// Callback token → index in `changes`.
    by_token: HashMap<String, usize>,
    callbacks: Vec<CallbackAttempt>,
    pub(crate) faults: FaultTable,
    pub(crate) drop_callbacks: bool,
    pub(crate) invalid_steps: Vec<String>,
    pub(crate) controlled_stages: Option<Vec<String>>,
    /// Job URLs whose stages are all known orchestration tasks (see `SimSettings`).
    pub(crate) known_pipelines: Vec<String>,
    /// Orchestration tasks created by `POST …/stepMapping` or a STARTED stage event.
    tasks: Vec<OrchestrationTask>,
    /// Every accepted `POST …/tool/orchestration` event, oldest first.
    events: Vec<Value>,
    pub(crate) timers: Vec<AbortHandle>,
    /// Artifact repositories, artifacts, versions and packages (see `artifacts/`).
    pub(crate) artifacts: ArtifactRegistry,
}

/// An orchestration task the instance learned about while running.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OrchestrationTask {
    /// The stage task URL, `https://ci/job/folder/job/app#Deploy/`.
    pub task_url: String,
    /// `stepMapping` or `stageEvent`.
    pub source: String,
}

pub(crate) fn now() -> String {
    chrono::Utc::now().format(DATE_FORMAT).to_string()
}

/// Checks a planned date: `YYYY-MM-DD HH:MM:SS`, or empty to clear it.
pub(crate) fn parse_planned_date(field: &str, value: &str) -> Result<Option<String>, ModelError> {
    if value.is_empty() {
        return Ok(None);
    }
    chrono::NaiveDateTime::parse_from_str(value, DATE_FORMAT)
        .map(|_| Some(value.to_string()))
        .map_err(|_| {
            ModelError::Invalid(format!(
                "{field} must be a UTC date and time as YYYY-MM-DD HH:MM:SS, got {value:?}"
            ))
        })
}

impl Model {
    pub(crate) fn record_request(&mut self, request: RecordedRequest) {
        if self.requests.len() >= REQUEST_LOG_LIMIT {
            self.requests.pop_front();
        }
        self.requests.push_back(request);
    }

    pub(crate) fn requests(&self) -> Vec<RecordedRequest> {
        self.requests.iter().cloned().collect()
    }

    pub(crate) fn clear_requests(&mut self) {
        self.requests.clear();
    }

    /// Whether a stage is under change control.
    pub(crate) fn is_controlled(&self, stage: &str) -> bool {
        match &self.controlled_stages {
            None => true,
            Some(stages) => stages.iter().any(|s| s == stage),
        }
    }

    /// Whether the instance knows the orchestration task of a stage task URL
    /// (`https://ci/job/folder/job/app#Deploy/`): its job is a known pipeline, or the task was
    /// created by stepMapping or a STARTED stage event. The job URL is compared exactly as
    /// Jenkins renders it.
    pub(crate) fn is_known_task(&self, job_url: &str, task_url: &str) -> bool {
        self.known_pipelines.iter().any(|p| p == job_url)
            || self.tasks.iter().any(|t| t.task_url == task_url)
    }

    /// Adds an orchestration task (once per task URL).
    pub(crate) fn add_task(&mut self, task_url: &str, source: &str) {
        if !self.tasks.iter().any(|t| t.task_url == task_url) {
            self.tasks.push(OrchestrationTask {
                task_url: task_url.to_string(),
                source: source.to_string(),
            });
        }
    }

    pub(crate) fn tasks(&self) -> Vec<OrchestrationTask> {
        self.tasks.clone()
    }

    pub(crate) fn record_event(&mut self, event: Value) {
        self.events.push(event);
    }

    pub(crate) fn events(&self) -> Vec<Value> {
        self.events.clone()
    }
}
