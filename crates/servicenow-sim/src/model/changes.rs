//! Registering, finding, deciding and updating the DevOps CRs.

use serde_json::{json, Map, Value};

use super::{
    now, parse_planned_date, Approval, CallbackAttempt, Change, ChangeQuery, ChangeRecord, CrState,
    Decision, Model, ModelError, Outbound, Registered, Registration, APPROVERS, ASSIGNMENT_GROUP,
    FIRST_NUMBER,
};

impl Model {
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
    /// `projectName` instead of `pipelineName` (ServiceNow's DevOps API reference, GET changeInfo).
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

    /// `PUT …/changeInfo`: updates fields of a CR, with the API reference's rules for `state` (only to
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
        let new_state = change_info_state(change, number, &fields)?;
        let start = planned_date(&fields, "start_date")?;
        let end = planned_date(&fields, "end_date")?;
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

/// The state a `PUT …/changeInfo` asks for, checked against the API reference's rules: only canceled
/// (from Implement, with `reason`) or closed (from Implement or Review, with `close_code` and
/// `close_notes`); `None` when the body names no state.
fn change_info_state(
    change: &Change,
    number: &str,
    fields: &Map<String, Value>,
) -> Result<Option<CrState>, ModelError> {
    let text = |key: &str| -> Option<String> {
        match fields.get(key)? {
            Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    };
    let Some(value) = fields.get("state") else {
        return Ok(None);
    };
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
                    "close_code and close_notes are mandatory to close a change request".into(),
                ));
            }
        }
    }
    Ok(Some(target))
}

/// A planned date a `PUT …/changeInfo` sets: `None` when absent, `Some(None)` to clear it.
fn planned_date(
    fields: &Map<String, Value>,
    key: &str,
) -> Result<Option<Option<String>>, ModelError> {
    match fields.get(key) {
        Some(Value::String(s)) => Ok(Some(parse_planned_date(key, s)?)),
        Some(_) => Err(ModelError::Invalid(format!("{key} must be a string"))),
        None => Ok(None),
    }
}
