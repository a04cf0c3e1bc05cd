//! The simulator's one in-memory model: change requests, callback registrations, recorded
//! requests, callback attempts and the knobs tests turn. Everything here is synchronous and is
//! only ever touched under the model's `Mutex`, never across an `.await`.

use std::collections::{HashMap, VecDeque};

use serde::Serialize;
use serde_json::{json, Map, Value};
use tokio::task::AbortHandle;

use super::artifacts::ArtifactRegistry;
use super::faults::FaultTable;
use super::plugin_forms::PluginRegistration;
use super::RecordedRequest;

/// The approvers and group every simulated CR gets (seed, changeInfo example).
const APPROVERS: &str = "Ron Kettering, Christen Mitchell";
const ASSIGNMENT_GROUP: &str = "Change Management";
/// First CR is CHG0030001, like a fresh instance's demo data.
const FIRST_NUMBER: u32 = 30_001;
/// How many API requests are kept for `requests()`: the oldest go first beyond this, so a load
/// test through the embedded simulator does not grow without bound (tests stay far below it).
pub(crate) const REQUEST_LOG_LIMIT: usize = 10_000;
/// `YYYY-MM-DD HH:MM:SS`, UTC: how ServiceNow writes `start_date`/`end_date` values.
pub(crate) const DATE_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// Change request states (value → name as in the Change Management API).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CrState {
    New,
    Assess,
    Authorize,
    Scheduled,
    Implement,
    Review,
    Closed,
    Canceled,
}

impl CrState {
    const ALL: [CrState; 8] = [
        CrState::New,
        CrState::Assess,
        CrState::Authorize,
        CrState::Scheduled,
        CrState::Implement,
        CrState::Review,
        CrState::Closed,
        CrState::Canceled,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            CrState::New => "New",
            CrState::Assess => "Assess",
            CrState::Authorize => "Authorize",
            CrState::Scheduled => "Scheduled",
            CrState::Implement => "Implement",
            CrState::Review => "Review",
            CrState::Closed => "Closed",
            CrState::Canceled => "Canceled",
        }
    }

    pub(crate) fn value(self) -> &'static str {
        match self {
            CrState::New => "-5",
            CrState::Assess => "-4",
            CrState::Authorize => "-3",
            CrState::Scheduled => "-2",
            CrState::Implement => "-1",
            CrState::Review => "0",
            CrState::Closed => "3",
            CrState::Canceled => "4",
        }
    }

    /// A state by name (any case, "Cancelled" too) or by value (`"-1"`).
    pub(crate) fn parse(text: &str) -> Option<CrState> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("cancelled") {
            return Some(CrState::Canceled);
        }
        CrState::ALL
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(text) || s.value() == text)
    }

    /// `phase` and `phase_state` as changeInfo reports them (seed example: a fresh CR is
    /// `requested`/`open`).
    pub(crate) fn phase(self) -> (&'static str, &'static str) {
        match self {
            CrState::New | CrState::Assess | CrState::Authorize => ("requested", "open"),
            CrState::Scheduled => ("requested", "approved"),
            CrState::Implement => ("implementation", "in_progress"),
            CrState::Review => ("review", "in_progress"),
            CrState::Closed => ("closed", "closed"),
            CrState::Canceled => ("closed", "canceled"),
        }
    }
}

/// The CR's approval field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Approval {
    Requested,
    Approved,
    Rejected,
}

impl Approval {
    fn name(self) -> &'static str {
        match self {
            Approval::Requested => "requested",
            Approval::Approved => "approved",
            Approval::Rejected => "rejected",
        }
    }
}

/// A decision ServiceNow calls back with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    Approve,
    Reject,
    Cancel,
    Error,
}

impl Decision {
    pub(crate) fn parse(action: &str) -> Option<Decision> {
        match action {
            "approve" => Some(Decision::Approve),
            "reject" => Some(Decision::Reject),
            "cancel" => Some(Decision::Cancel),
            "error" => Some(Decision::Error),
            _ => None,
        }
    }

    /// The callback's `result` (the official plugin compares it with "succeeded" and
    /// "canceled"; everything else counts as not approved).
    pub(crate) fn result(self) -> &'static str {
        match self {
            Decision::Approve => "succeeded",
            Decision::Reject => "rejected",
            Decision::Cancel => "canceled",
            Decision::Error => "failed",
        }
    }

    pub(crate) fn default_comments(self) -> &'static str {
        match self {
            Decision::Approve => "Approved in the ServiceNow simulator",
            Decision::Reject => "Rejected in the ServiceNow simulator",
            Decision::Cancel => "Canceled in the ServiceNow simulator",
            Decision::Error => "Error reported by the ServiceNow simulator",
        }
    }

    /// The callback body exactly as the official plugin receives it.
    pub(crate) fn body(self, comments: &str) -> Value {
        match self {
            Decision::Error => json!({
                "result": self.result(),
                "isError": true,
                "changeComments": comments,
            }),
            _ => json!({"result": self.result(), "changeComments": comments}),
        }
    }

    fn apply(self, change: &mut Change) {
        match self {
            Decision::Approve => {
                change.state = CrState::Implement;
                change.approval = Approval::Approved;
            }
            Decision::Reject => {
                change.state = CrState::Closed;
                change.approval = Approval::Rejected;
            }
            Decision::Cancel => change.state = CrState::Canceled,
            // An error in ServiceNow's processing leaves the CR where it was.
            Decision::Error => {}
        }
    }
}

/// What a `POST …/changeControl` registered.
#[derive(Clone, Debug)]
pub(crate) struct Registration {
    pub(crate) token: String,
    pub(crate) callback_url: String,
    pub(crate) task_url: String,
    pub(crate) task_name: Option<String>,
    pub(crate) stage: String,
    pub(crate) branch: Option<String>,
    pub(crate) multibranch: bool,
    pub(crate) build_number: Option<String>,
    pub(crate) task_execution_url: Option<String>,
    pub(crate) change_request_details: Option<Value>,
    /// What the checked body says about the stage (job URL, `JOB_NAME`, item, …).
    pub(crate) plugin: PluginRegistration,
    /// The body exactly as received, for field-by-field comparisons in tests.
    pub(crate) body: Value,
}

/// One simulated change request with its callback registration.
#[derive(Clone, Debug)]
pub(crate) struct Change {
    pub(crate) number: String,
    pub(crate) sys_id: String,
    pub(crate) state: CrState,
    approval: Approval,
    pub(crate) planned_start: Option<String>,
    pub(crate) planned_end: Option<String>,
    pub(crate) registration: Registration,
    pub(crate) comments: Option<String>,
    pub(crate) decision: Option<Decision>,
    acknowledgements: u32,
    /// The bodies of the accepted acknowledgements, oldest first.
    acknowledgement_bodies: Vec<Value>,
    fields: Map<String, Value>,
    created_at: String,
}

impl Change {
    /// The `result` the `GET …/callback` endpoint reports.
    pub(crate) fn callback_result(&self) -> &'static str {
        self.decision.map_or("pending", Decision::result)
    }

    /// The seed's changeInfo `result` object for this CR.
    pub(crate) fn change_info(&self, base_url: &str, numeric_states: bool) -> Value {
        let (phase, phase_state) = self.state.phase();
        let state = if numeric_states {
            self.state.value()
        } else {
            self.state.name()
        };
        json!({
            "changeFound": true,
            // The official plugin reads every changeInfo member through `parseResponseResult`,
            // which needs `result.status` "success" (any case), and logs `stateDisplayValue`
            // (the state's name); the other DevOps answers of the seed spell it "Success".
            "status": "Success",
            "sys_id": self.sys_id,
            "number": self.number,
            "type": "normal",
            "state": state,
            "stateDisplayValue": self.state.name(),
            "phase": phase,
            "phase_state": phase_state,
            "priority": "4",
            "risk": "4",
            "url": format!("{base_url}/change_request.do?sys_id={}", self.sys_id),
            "changeAssignmentGroup": ASSIGNMENT_GROUP,
            "changeApprovers": APPROVERS,
            "plannedStartDate": self.planned_start.clone().unwrap_or_default(),
            "plannedEndDate": self.planned_end.clone().unwrap_or_default(),
        })
    }
}

/// A CR as tests and the admin API see it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeRecord {
    /// `CHG0030001`, `CHG0030002`, …
    pub number: String,
    /// 32 lower-case hex digits.
    pub sys_id: String,
    /// State name: New, Assess, Authorize, Scheduled, Implement, Review, Closed, Canceled.
    pub state: String,
    /// requested | approved | rejected.
    pub approval: String,
    /// `YYYY-MM-DD HH:MM:SS`, UTC.
    pub planned_start_date: Option<String>,
    pub planned_end_date: Option<String>,
    pub approvers: String,
    pub assignment_group: String,
    /// The last path segment of the callback URL (`pipeline_<uuid>`).
    pub callback_token: String,
    pub callback_url: String,
    pub stage_name: String,
    /// Jenkins' `JOB_NAME` of the registration (`folder/app`, `mb/feature%2Fx`): the one
    /// `pipelineName` changeInfo finds this CR under.
    pub pipeline_name: String,
    pub orchestration_task_name: Option<String>,
    pub orchestration_task_url: String,
    pub branch_name: Option<String>,
    pub build_number: Option<String>,
    pub task_execution_url: Option<String>,
    /// The comments of the last decision.
    pub comments: Option<String>,
    /// succeeded | rejected | canceled | failed, once decided.
    pub decision_result: Option<String>,
    /// How many `PUT …/changeControl/{token}` acknowledgements were accepted.
    pub acknowledgements: u32,
    /// The changeControl POST body exactly as received (the latest one for this token).
    pub registration_body: Value,
    /// The bodies of the accepted acknowledgements, oldest first.
    pub acknowledgement_bodies: Vec<Value>,
    /// Fields set through `changeRequestDetails.attributes` and `PUT …/changeInfo`.
    pub fields: Map<String, Value>,
    pub change_request_details: Option<Value>,
    /// Every callback (notice or decision) sent, or dropped, for this CR, oldest first.
    pub callbacks: Vec<CallbackAttempt>,
    pub created_at: String,
}

/// One callback the simulator sent (or dropped).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallbackAttempt {
    pub number: String,
    /// notice | succeeded | rejected | canceled | failed.
    pub kind: String,
    pub url: String,
    pub body: Value,
    /// The HTTP status the callback got; `None` when dropped or unreachable.
    pub status: Option<u16>,
    pub dropped: bool,
    pub error: Option<String>,
    pub at: String,
}

/// A callback to send once the model lock is released.
#[derive(Clone, Debug)]
pub(crate) struct Outbound {
    pub(crate) number: String,
    pub(crate) state: CrState,
    pub(crate) kind: String,
    pub(crate) url: String,
    pub(crate) body: Value,
    pub(crate) drop: bool,
}

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
    /// Artifact repositories, artifacts, versions and packages (see `artifacts.rs`).
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

    /// Registers a callback; creates the CR unless the token is known already.
    pub(crate) fn register(&mut self, registration: Registration) -> Registered {
        if let Some(&i) = self.by_token.get(&registration.token) {
            let change = &mut self.changes[i];
            change.registration = registration;
            return Registered::Existing {
                number: change.number.clone(),
            };
        }
        let number = format!("CHG{:07}", FIRST_NUMBER as usize + self.changes.len());
        let sys_id = uuid::Uuid::new_v4().simple().to_string();
        let fields = registration
            .change_request_details
            .as_ref()
            .and_then(|d| d.get("attributes"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        self.by_token
            .insert(registration.token.clone(), self.changes.len());
        self.changes.push(Change {
            number: number.clone(),
            sys_id: sys_id.clone(),
            state: CrState::New,
            approval: Approval::Requested,
            planned_start: None,
            planned_end: None,
            registration,
            comments: None,
            decision: None,
            acknowledgements: 0,
            acknowledgement_bodies: Vec::new(),
            fields,
            created_at: now(),
        });
        Registered::Created { number, sys_id }
    }

    /// A CR by number, or the newest for `"latest"`.
    pub(crate) fn find(&self, selector: &str) -> Option<&Change> {
        if selector == "latest" {
            return self.changes.last();
        }
        self.changes.iter().find(|c| c.number == selector)
    }

    fn find_mut(&mut self, selector: &str) -> Result<&mut Change, ModelError> {
        let found = if selector == "latest" {
            self.changes.last_mut()
        } else {
            self.changes.iter_mut().find(|c| c.number == selector)
        };
        found.ok_or_else(|| ModelError::NotFound(selector.to_string()))
    }

    pub(crate) fn find_by_sys_id(&self, sys_id: &str) -> Option<&Change> {
        self.changes.iter().find(|c| c.sys_id == sys_id)
    }

    /// The registration behind a callback token.
    pub(crate) fn registration_of(&self, token: &str) -> Option<&Registration> {
        self.by_token
            .get(token)
            .map(|&i| &self.changes[i].registration)
    }

    /// Records an accepted acknowledgement (`PUT …/changeControl/{token}`).
    pub(crate) fn acknowledge(&mut self, token: &str, body: Value) -> bool {
        match self.by_token.get(token) {
            Some(&i) => {
                let change = &mut self.changes[i];
                change.acknowledgements += 1;
                change.acknowledgement_bodies.push(body);
                true
            }
            None => false,
        }
    }

    /// The newest CR whose registration matches a changeInfo query, under exactly the official
    /// plugin's spelling (`DevOpsChangePollingModel`): `pipelineName` = Jenkins' `JOB_NAME`
    /// (`folder/app`, `mb/feature%2Fx`), `stageName` = the full stage path, `buildNumber`, and
    /// `branchName` only for multibranch registrations (an empty one counts as absent: a
    /// scripted REST resource reads `branchName=` as no value). The query values arrive
    /// decoded once (`+` and `%20` both give a space, as in any form-encoded query); no second
    /// decoding, no short names, no case folding. Freestyle registrations are found by
    /// `projectName` instead of `pipelineName` (seed, GET changeInfo).
    pub(crate) fn find_for_change_info(&self, query: &ChangeQuery) -> Option<&Change> {
        let branch = query.branch.as_deref().filter(|b| !b.is_empty());
        self.changes.iter().rev().find(|change| {
            let reg = &change.registration;
            let name = if reg.plugin.freestyle {
                query.project.as_deref()
            } else {
                query.pipeline.as_deref()
            };
            reg.build_number.as_deref() == Some(query.build.as_str())
                && name == Some(reg.plugin.full_name.as_str())
                && (reg.plugin.freestyle || query.stage.as_deref() == Some(reg.stage.as_str()))
                && if reg.multibranch {
                    branch == reg.branch.as_deref()
                } else {
                    branch.is_none()
                }
        })
    }

    /// The newest CR registered with this stage execution URL (any of the given spellings).
    pub(crate) fn find_by_task_execution(&self, urls: &[String]) -> Option<&Change> {
        self.changes.iter().rev().find(|c| {
            c.registration
                .task_execution_url
                .as_ref()
                .is_some_and(|known| urls.iter().any(|u| u == known))
        })
    }

    /// Applies a decision and returns the callback to send (`None` when `only_if_pending` and
    /// the CR was decided already).
    pub(crate) fn decide(
        &mut self,
        selector: &str,
        decision: Decision,
        comments: &str,
        only_if_pending: bool,
    ) -> Result<Option<Outbound>, ModelError> {
        let drop = self.drop_callbacks;
        let change = self.find_mut(selector)?;
        if only_if_pending && change.decision.is_some() {
            return Ok(None);
        }
        decision.apply(change);
        change.decision = Some(decision);
        change.comments = Some(comments.to_string());
        Ok(Some(Outbound {
            number: change.number.clone(),
            state: change.state,
            kind: decision.result().to_string(),
            url: change.registration.callback_url.clone(),
            body: decision.body(comments),
            drop,
        }))
    }

    /// The "change request created" notice for a CR.
    pub(crate) fn notice(&self, selector: &str, base_url: &str) -> Result<Outbound, ModelError> {
        let change = self
            .find(selector)
            .ok_or_else(|| ModelError::NotFound(selector.to_string()))?;
        Ok(Outbound {
            number: change.number.clone(),
            state: change.state,
            kind: "notice".to_string(),
            url: change.registration.callback_url.clone(),
            body: json!({
                "changeRequestId": change.number,
                "changeRequestUrl": format!(
                    "{base_url}/nav_to.do?uri=change_request.do?sys_id={}",
                    change.sys_id
                ),
                "changeComments": format!("Change request {} created", change.number),
                "configResult": {"message": ""},
            }),
            drop: self.drop_callbacks,
        })
    }

    /// Sets the state and planned window by hand (no callback). `None` dates stay as they are,
    /// empty ones are cleared.
    pub(crate) fn set_state(
        &mut self,
        selector: &str,
        state: &str,
        planned_start: Option<&str>,
        planned_end: Option<&str>,
    ) -> Result<(String, CrState), ModelError> {
        let parsed = CrState::parse(state).ok_or_else(|| {
            ModelError::Invalid(format!("unknown change request state {state:?}"))
        })?;
        let start = planned_start
            .map(|v| parse_planned_date("plannedStartDate", v))
            .transpose()?;
        let end = planned_end
            .map(|v| parse_planned_date("plannedEndDate", v))
            .transpose()?;
        let change = self.find_mut(selector)?;
        change.state = parsed;
        match parsed {
            CrState::Scheduled | CrState::Implement | CrState::Review => {
                change.approval = Approval::Approved
            }
            CrState::New | CrState::Assess | CrState::Authorize => {
                change.approval = Approval::Requested
            }
            CrState::Closed | CrState::Canceled => {}
        }
        if let Some(start) = start {
            change.planned_start = start;
        }
        if let Some(end) = end {
            change.planned_end = end;
        }
        Ok((change.number.clone(), parsed))
    }

    /// `PUT …/changeInfo`: updates fields of a CR, with the seed's rules for `state` (only to
    /// canceled — from Implement, with `reason` — or closed — from Implement or Review, with
    /// `close_code` and `close_notes`).
    pub(crate) fn update_fields(
        &mut self,
        number: &str,
        fields: Map<String, Value>,
    ) -> Result<(), ModelError> {
        let change = self
            .changes
            .iter_mut()
            .find(|c| c.number == number)
            .ok_or_else(|| ModelError::NotFound(number.to_string()))?;
        let text = |key: &str| -> Option<String> {
            match fields.get(key)? {
                Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            }
        };
        let new_state = match fields.get("state") {
            None => None,
            Some(value) => {
                let raw = match value {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    _ => return Err(ModelError::Invalid("state must be a string".into())),
                };
                let target = match CrState::parse(&raw) {
                    Some(CrState::Canceled) => CrState::Canceled,
                    _ if raw.trim().eq_ignore_ascii_case("cancel") => CrState::Canceled,
                    Some(CrState::Closed) => CrState::Closed,
                    _ => {
                        return Err(ModelError::Invalid(format!(
                            "state {raw:?} is not supported: only 4 (cancel) and 3 (closed) are"
                        )))
                    }
                };
                match target {
                    CrState::Canceled => {
                        if change.state != CrState::Implement {
                            return Err(ModelError::Invalid(format!(
                                "change request {number} must be in state Implement to be canceled, it is {}",
                                change.state.name()
                            )));
                        }
                        if text("reason").is_none() {
                            return Err(ModelError::Invalid(
                                "reason is mandatory to cancel a change request".into(),
                            ));
                        }
                    }
                    _ => {
                        if !matches!(change.state, CrState::Implement | CrState::Review) {
                            return Err(ModelError::Invalid(format!(
                                "change request {number} must be in state Implement or Review to be closed, it is {}",
                                change.state.name()
                            )));
                        }
                        if text("close_code").is_none() || text("close_notes").is_none() {
                            return Err(ModelError::Invalid(
                                "close_code and close_notes are mandatory to close a change request"
                                    .into(),
                            ));
                        }
                    }
                }
                Some(target)
            }
        };
        let start = match fields.get("start_date") {
            Some(Value::String(s)) => Some(parse_planned_date("start_date", s)?),
            Some(_) => return Err(ModelError::Invalid("start_date must be a string".into())),
            None => None,
        };
        let end = match fields.get("end_date") {
            Some(Value::String(s)) => Some(parse_planned_date("end_date", s)?),
            Some(_) => return Err(ModelError::Invalid("end_date must be a string".into())),
            None => None,
        };
        if let Some(state) = new_state {
            change.state = state;
        }
        if let Some(start) = start {
            change.planned_start = start;
        }
        if let Some(end) = end {
            change.planned_end = end;
        }
        change.fields.extend(fields);
        Ok(())
    }

    pub(crate) fn record_callback(&mut self, attempt: CallbackAttempt) {
        self.callbacks.push(attempt);
    }

    pub(crate) fn callbacks(&self) -> Vec<CallbackAttempt> {
        self.callbacks.clone()
    }

    pub(crate) fn record_of(&self, change: &Change) -> ChangeRecord {
        let reg = &change.registration;
        ChangeRecord {
            number: change.number.clone(),
            sys_id: change.sys_id.clone(),
            state: change.state.name().to_string(),
            approval: change.approval.name().to_string(),
            planned_start_date: change.planned_start.clone(),
            planned_end_date: change.planned_end.clone(),
            approvers: APPROVERS.to_string(),
            assignment_group: ASSIGNMENT_GROUP.to_string(),
            callback_token: reg.token.clone(),
            callback_url: reg.callback_url.clone(),
            stage_name: reg.stage.clone(),
            pipeline_name: reg.plugin.full_name.clone(),
            orchestration_task_name: reg.task_name.clone(),
            orchestration_task_url: reg.task_url.clone(),
            branch_name: reg.branch.clone(),
            build_number: reg.build_number.clone(),
            task_execution_url: reg.task_execution_url.clone(),
            comments: change.comments.clone(),
            decision_result: change.decision.map(|d| d.result().to_string()),
            acknowledgements: change.acknowledgements,
            registration_body: reg.body.clone(),
            acknowledgement_bodies: change.acknowledgement_bodies.clone(),
            fields: change.fields.clone(),
            change_request_details: reg.change_request_details.clone(),
            callbacks: self
                .callbacks
                .iter()
                .filter(|a| a.number == change.number)
                .cloned()
                .collect(),
            created_at: change.created_at.clone(),
        }
    }

    pub(crate) fn snapshot(&self) -> Vec<ChangeRecord> {
        self.changes.iter().map(|c| self.record_of(c)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registration(token: &str, stage: &str, build: &str) -> Registration {
        Registration {
            token: token.into(),
            callback_url: format!("http://127.0.0.1:1/sn-devops/{token}"),
            task_url: format!("https://ci/job/folder/job/app#{stage}/"),
            task_name: Some("app".into()),
            stage: stage.into(),
            branch: None,
            multibranch: false,
            build_number: Some(build.into()),
            task_execution_url: Some(format!("https://ci/job/folder/job/app/{build}/")),
            change_request_details: None,
            plugin: PluginRegistration {
                job_url: "https://ci/job/folder/job/app/".into(),
                full_name: "folder/app".into(),
                item: "app".into(),
                stage: stage.into(),
                multibranch: false,
                freestyle: false,
                branch: None,
                build_number: build.into(),
                task_execution_url: format!("https://ci/job/folder/job/app/{build}/"),
            },
            body: Value::Null,
        }
    }

    #[test]
    fn registrations_create_numbered_changes_once_per_token() {
        let mut model = Model::default();
        let first = model.register(registration("pipeline_a", "Deploy", "1"));
        let Registered::Created { number, sys_id } = first else {
            panic!("expected a new CR")
        };
        assert_eq!(number, "CHG0030001");
        assert_eq!(sys_id.len(), 32);
        assert!(sys_id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(
            model.register(registration("pipeline_a", "Deploy", "1")),
            Registered::Existing {
                number: "CHG0030001".into()
            }
        );
        assert!(matches!(
            model.register(registration("pipeline_b", "Deploy", "2")),
            Registered::Created { number, .. } if number == "CHG0030002"
        ));
        assert_eq!(model.find("latest").unwrap().number, "CHG0030002");
    }

    #[test]
    fn decisions_move_the_change_and_build_the_plugin_bodies() {
        let mut model = Model::default();
        model.register(registration("pipeline_a", "Deploy", "1"));
        let out = model
            .decide("CHG0030001", Decision::Approve, "ok", false)
            .unwrap()
            .unwrap();
        assert_eq!(out.state, CrState::Implement);
        assert_eq!(
            out.body,
            json!({"result": "succeeded", "changeComments": "ok"})
        );
        assert!(matches!(
            model.decide("CHG0030001", Decision::Reject, "no", true),
            Ok(None)
        ));
        let err = Decision::Error.body("boom");
        assert_eq!(err["isError"], json!(true));
        assert_eq!(err["result"], json!("failed"));
        assert_eq!(
            model
                .decide("CHG9", Decision::Cancel, "", false)
                .unwrap_err(),
            ModelError::NotFound("CHG9".into())
        );
    }

    #[test]
    fn change_info_matches_pipeline_stage_build_and_branch() {
        let mut model = Model::default();
        model.register(registration("pipeline_a", "Deploy", "7"));
        let mut query = ChangeQuery {
            pipeline: Some("folder/app".into()),
            stage: Some("Deploy".into()),
            build: "7".into(),
            ..ChangeQuery::default()
        };
        assert!(model.find_for_change_info(&query).is_some());
        // Only Jenkins' JOB_NAME: not the short name, not encoded twice.
        for other in ["app", "folder%2Fapp", "Folder/app"] {
            query.pipeline = Some(other.into());
            assert!(model.find_for_change_info(&query).is_none(), "{other}");
        }
        query.pipeline = Some("folder/app".into());
        query.branch = Some("main".into());
        assert!(model.find_for_change_info(&query).is_none());
        query.branch = Some(String::new());
        assert!(model.find_for_change_info(&query).is_some());
        query.branch = None;
        query.build = "8".into();
        assert!(model.find_for_change_info(&query).is_none());
        query.build = "7".into();
        query.stage = Some("Test".into());
        assert!(model.find_for_change_info(&query).is_none());
    }

    #[test]
    fn change_info_updates_follow_the_seed_state_rules() {
        let mut model = Model::default();
        model.register(registration("pipeline_a", "Deploy", "1"));
        let fields = |v: Value| v.as_object().unwrap().clone();
        assert!(matches!(
            model.update_fields("CHG0030001", fields(json!({"state": "3"}))),
            Err(ModelError::Invalid(_))
        ));
        model
            .set_state("CHG0030001", "Implement", Some("2030-01-01 10:00:00"), None)
            .unwrap();
        assert!(model
            .update_fields("CHG0030001", fields(json!({"state": "4"})))
            .is_err());
        model
            .update_fields(
                "CHG0030001",
                fields(json!({"state": 3, "close_code": "successful", "close_notes": "done"})),
            )
            .unwrap();
        let change = model.find("CHG0030001").unwrap();
        assert_eq!(change.state, CrState::Closed);
        assert_eq!(change.planned_start.as_deref(), Some("2030-01-01 10:00:00"));
        assert!(model
            .set_state("CHG0030001", "Scheduled", Some("tomorrow"), None)
            .is_err());
        assert!(model
            .set_state("CHG0030001", "Sideways", None, None)
            .is_err());
    }

    #[test]
    fn states_parse_by_name_or_value() {
        assert_eq!(CrState::parse("implement"), Some(CrState::Implement));
        assert_eq!(CrState::parse("-2"), Some(CrState::Scheduled));
        assert_eq!(CrState::parse("Cancelled"), Some(CrState::Canceled));
        assert_eq!(CrState::parse("later"), None);
    }
}
