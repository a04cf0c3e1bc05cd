//! The outbox's change-mode work: find or create the change request and link it, and the
//! updates (work notes, state moves) snowgate sends it afterwards.
use super::Outbox;
use crate::change_mode::{ChangeMode, Link, LinkError};
use crate::decisions::work_note;
use crate::domain::change::CrState;
use crate::domain::gate::Actor;
use crate::domain::timers::{on_change_known, on_pending, Timers};
use crate::domain::{ChangeRequest, Gate, GateState};
use crate::servicenow::change::{ChangeClient, ChangeRecord};
use crate::store::{NewOutbox, OutboxItem, OutboxKind, OutboxResult, StoreError, Transition};

impl Outbox {
    /// Change mode's registration: find or create the CR and link it.
    pub(super) async fn link_change(
        &self,
        item: &OutboxItem,
        gate: &Gate,
    ) -> Result<OutboxResult, StoreError> {
        let Some(change) = &self.change else {
            let why = "change mode needs servicenow.auth basic or oauth".to_string();
            self.fail(gate, why.clone()).await?;
            return Ok(OutboxResult::GiveUp { error: why });
        };
        match change.link(gate, &*self.store).await {
            Ok(Link::NotControlled(why)) => {
                self.decide(
                    gate,
                    GateState::NotControlled,
                    Some(true),
                    format!("Not under change control: {why}"),
                    "not_controlled",
                    Timers::default(),
                )
                .await?;
                Ok(OutboxResult::Done {
                    message: "not change-controlled: no change request searched or created".into(),
                })
            }
            Ok(Link::Linked { record, created }) => {
                self.linked(change, gate, &record, created).await
            }
            Err(e) => self.link_failed(item, gate, e).await,
        }
    }

    /// The CR is found or created: the gate waits for it.
    async fn linked(
        &self,
        change: &ChangeMode,
        gate: &Gate,
        record: &ChangeRecord,
        created: bool,
    ) -> Result<OutboxResult, StoreError> {
        let now_ms = chrono::Utc::now().timestamp_millis();
        let mut timers = on_pending(&gate.spec, now_ms, self.poll_interval);
        // The CR is known from the start: the creation timeout does not apply.
        timers.creation_deadline_ms = None;
        timers.step_deadline_ms = on_change_known(&gate.spec, now_ms, false);
        let mut cr = change_request_of(&change.client, record);
        cr.created_by_snowgate = created;
        let verb = if created { "created" } else { "linked" };
        let message = format!(
            "Waiting for {} ({verb}; state {})",
            record.number,
            cr.state.as_deref().unwrap_or("unknown")
        );
        let outbox = linked_outbox(change, gate, &cr, verb, created);
        self.decider
            .decide(Transition {
                gate_id: gate.id,
                to: GateState::Pending,
                proceed: None,
                message,
                actor: Actor::ServiceNow,
                event_kind: "linked",
                change_request: Some(cr),
                outbox,
                timers,
            })
            .await?;
        Ok(OutboxResult::Done {
            message: format!("change request {} {verb}", record.number),
        })
    }

    /// A transient error is retried until `register_give_up_after` or `max_attempts`; then, or
    /// for any other error, the gate fails.
    async fn link_failed(
        &self,
        item: &OutboxItem,
        gate: &Gate,
        e: LinkError,
    ) -> Result<OutboxResult, StoreError> {
        if !e.is_transient() {
            let why = e.to_string();
            self.fail(gate, why.clone()).await?;
            return Ok(OutboxResult::GiveUp { error: why });
        }
        let age = (chrono::Utc::now() - item.created_at)
            .to_std()
            .unwrap_or_default();
        if age < self.register_give_up_after && item.attempts + 1 < self.settings.max_attempts {
            let hint = match &e {
                LinkError::ServiceNow(s) => s.retry_after(),
                _ => None,
            };
            return Ok(OutboxResult::Retry {
                after: self.backoff(item.attempts, hint),
                error: e.to_string(),
            });
        }
        let why = format!("finding or creating the change request kept failing: {e}");
        self.fail(gate, why.clone()).await?;
        Ok(OutboxResult::GiveUp { error: why })
    }

    /// `PATCH …/change/{sys_id}`: a work note or a state move (change mode).
    pub(super) async fn change_update(&self, item: &OutboxItem, gate: &Gate) -> OutboxResult {
        let (Some(change), Some(sys_id)) = (
            &self.change,
            gate.change_request.as_ref().and_then(|c| c.sys_id.clone()),
        ) else {
            return OutboxResult::GiveUp {
                error: "no change request to update".into(),
            };
        };
        let what = item.payload["what"]
            .as_str()
            .unwrap_or("update")
            .to_string();
        let result = match (
            item.payload["fields"].as_object(),
            item.payload["steps"].as_array(),
        ) {
            (Some(fields), _) if item.payload["onlyIfOpen"] == true => {
                match closed_already(change, &sys_id).await {
                    Ok(Some(closed)) => {
                        return OutboxResult::Done {
                            message: format!("{what} not written: {closed}"),
                        }
                    }
                    Ok(None) => change.client.patch(&sys_id, fields).await.map(|r| r.number),
                    Err(e) => Err(e),
                }
            }
            (Some(fields), _) => change.client.patch(&sys_id, fields).await.map(|r| r.number),
            (None, Some(steps)) => self.move_through(change, &sys_id, steps).await,
            (None, None) => {
                return OutboxResult::GiveUp {
                    error: "a change update without fields".into(),
                }
            }
        };
        match result {
            Ok(number) => OutboxResult::Done {
                message: format!("{what} written to {number}"),
            },
            Err(e) if e.is_transient() => self.retry_or_give_up(item, e.describe()),
            Err(e) => OutboxResult::GiveUp {
                error: format!("{what} refused by ServiceNow: {}", e.describe()),
            },
        }
    }

    /// Evidence: the attachment to the gate's CR through the Attachment API. Sent once: its
    /// row was queued once per SHA-256, and goes when ServiceNow answers 201.
    pub(super) async fn attach(&self, item: &OutboxItem, gate: &Gate) -> OutboxResult {
        use base64::Engine as _;
        let (Some(change), Some(cr)) = (&self.change, gate.change_request.as_ref()) else {
            return OutboxResult::GiveUp {
                error: "no change request to attach to".into(),
            };
        };
        let Some(sys_id) = cr.sys_id.as_deref() else {
            return OutboxResult::GiveUp {
                error: "the change request's sys_id is not known".into(),
            };
        };
        let p = &item.payload;
        let name = p["name"].as_str().unwrap_or("evidence");
        let content_type = p["contentType"]
            .as_str()
            .unwrap_or("application/octet-stream");
        let Ok(content) = base64::engine::general_purpose::STANDARD
            .decode(p["contentBase64"].as_str().unwrap_or_default())
        else {
            return OutboxResult::GiveUp {
                error: "the queued evidence is not base64".into(),
            };
        };
        let number = cr.number.clone().unwrap_or_else(|| sys_id.to_string());
        let sha256 = p["sha256"].as_str().unwrap_or("");
        // An earlier attempt may have been stored with its answer lost (a timeout, a dropped
        // connection, a crash before its result was written, which leaves the row as if never
        // tried): look before sending the file, every time.
        match change.client.find(sys_id, name, content.len(), sha256).await {
            Ok(Some(attachment)) => {
                return OutboxResult::Done {
                    message: format!(
                        "evidence {name} (sha256 {sha256}) is on {number} already as attachment {attachment} (an earlier attempt's answer was lost)"
                    ),
                }
            }
            Ok(None) => {}
            Err(e) if e.is_transient() => return self.retry_or_give_up(item, e.describe()),
            // Not allowed to read attachments back: send it, as without the look.
            Err(e) => {
                tracing::warn!(gate_id = %gate.id, error = %e.describe(), "evidence: cannot look for an earlier attempt's attachment");
            }
        }
        match change
            .client
            .attach(sys_id, name, content_type, content)
            .await
        {
            Ok(attachment) => OutboxResult::Done {
                message: format!(
                    "evidence {name} (sha256 {sha256}) attached to {number} as attachment {attachment}"
                ),
            },
            Err(e) if e.is_transient() => self.retry_or_give_up(item, e.describe()),
            Err(e) => OutboxResult::GiveUp {
                error: format!("ServiceNow refused the evidence {name}: {}", e.describe()),
            },
        }
    }

    /// PATCH a CR through states in order, skipping the steps it has already passed (so a
    /// retry after a partial success does not ask for a move backwards).
    async fn move_through(
        &self,
        change: &ChangeMode,
        sys_id: &str,
        steps: &[serde_json::Value],
    ) -> Result<String, crate::servicenow::ServiceNowError> {
        let mut current = change.client.get(sys_id).await?;
        for step in steps {
            let Some(fields) = step.as_object() else {
                continue;
            };
            let target = fields
                .get("state")
                .and_then(|s| s.as_str())
                .and_then(CrState::parse);
            let now = CrState::parse(&current.state);
            if let (Some(t), Some(n)) = (target, now) {
                if n.order() >= t.order() {
                    continue;
                }
            }
            current = change.client.patch(sys_id, fields).await?;
        }
        Ok(current.number)
    }
}

/// `CHG… is Closed already` when the CR is no longer open in ServiceNow (read now, not from the
/// last poll), else `None`.
async fn closed_already(
    change: &ChangeMode,
    sys_id: &str,
) -> Result<Option<String>, crate::servicenow::ServiceNowError> {
    let cr = change.client.get(sys_id).await?;
    Ok(CrState::parse(&cr.state)
        .filter(|s| !s.is_open())
        .map(|closed| format!("{} is {} already", cr.number, closed.name())))
}

/// What a linked CR's gate sends next: a work note naming the Jenkins build, and for a standard
/// change snowgate created, the moves to Implement.
fn linked_outbox(
    change: &ChangeMode,
    gate: &Gate,
    cr: &ChangeRequest,
    verb: &str,
    created: bool,
) -> Vec<NewOutbox> {
    let mut outbox: Vec<NewOutbox> = Vec::new();
    let mut linked = gate.clone();
    linked.change_request = Some(cr.clone());
    outbox.extend(work_note(
        &linked,
        &format!(
            "{verb} to Jenkins {} build {} stage {}{}",
            gate.spec.job_url,
            gate.spec.build_number,
            gate.spec.stage_name,
            gate.spec
                .build_url
                .as_deref()
                .map(|u| format!(" ({u})"))
                .unwrap_or_default()
        ),
    ));
    if created && change.auto_transitions(&gate.spec) {
        // A pre-approved standard change: snowgate moves it to Implement itself.
        // The state model takes a standard change New → Scheduled → Implement.
        outbox.push(NewOutbox {
            kind: OutboxKind::ChangeUpdate,
            payload: serde_json::json!({
                "steps": [{"state": "scheduled"}, {"state": "implement"}],
                "what": "move to Implement",
            }),
        });
    }
    outbox
}

/// The gate's view of a change record.
pub fn change_request_of(client: &ChangeClient, r: &ChangeRecord) -> ChangeRequest {
    ChangeRequest {
        number: Some(r.number.clone()),
        sys_id: Some(r.sys_id.clone()),
        url: Some(client.record_url(&r.sys_id)),
        state: Some(
            CrState::parse(&r.state)
                .map(|s| s.name().to_string())
                .unwrap_or_else(|| r.state.clone()),
        ),
        planned_start_date: r.start_date.clone(),
        planned_end_date: r.end_date.clone(),
        approvers: r.approval.clone(),
        assignment_group: r.assignment_group.clone(),
        comments: None,
        created_by_snowgate: false,
    }
}
