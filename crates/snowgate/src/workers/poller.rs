//! Polling fallback: for pending gates, ask ServiceNow's changeInfo about the change
//! request, keep the gate's CR data current, and decide when callbacks cannot arrive
//! (firewall, lost callback, snowgate down when ServiceNow called). Each gate is polled at its
//! own interval; every request takes a slot of the shared rate limit.
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::Semaphore;

use crate::change_mode::ChangeMode;
use crate::configuration::{ConflictPolicy, GateMode};
use crate::decisions::Decider;
use crate::domain::change::{parse_planned, verdict, CrState, Verdict};
use crate::domain::gate::Actor;
use crate::domain::timers::{ms, on_change_known, poll_interval, Timers};
use crate::domain::{ChangeRequest, Gate, GateState};
use crate::servicenow::change::ConflictReport;
use crate::servicenow::devops::ChangeInfo;
use crate::servicenow::{DevOpsClient, RateLimiter, ServiceNowError};
use crate::store::{CrUpdate, GateStore, StoreError, Transition};
use crate::waiters::ShutdownFlag;
use crate::workers::outbox::change_request_of;

/// Gates claimed per round, and polls in flight at once.
const BATCH: u32 = 64;
const IN_FLIGHT: usize = 16;

#[derive(Clone)]
pub struct Poller {
    pub store: Arc<dyn GateStore>,
    pub decider: Decider,
    pub servicenow: DevOpsClient,
    pub limiter: Arc<RateLimiter>,
    pub default_interval: Duration,
    pub change: Option<Arc<ChangeMode>>,
}

impl Poller {
    pub async fn run(self, shutdown: ShutdownFlag) {
        let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
        loop {
            if shutdown.is_set() {
                break;
            }
            let claimed = self
                .store
                .claim_polls(BATCH, self.default_interval)
                .await
                .unwrap_or_else(|e| {
                    tracing::error!(error = %e, "poller: cannot claim gates");
                    Vec::new()
                });
            let busy = !claimed.is_empty();
            for gate in claimed {
                tokio::select! {
                    _ = self.limiter.acquire() => {}
                    _ = shutdown.wait() => return,
                }
                let Ok(permit) = in_flight.clone().acquire_owned().await else {
                    return;
                };
                let me = self.clone();
                tokio::spawn(async move {
                    if let Err(e) = me.poll(&gate).await {
                        tracing::warn!(gate_id = %gate.id, error = %e, "poll not recorded");
                    }
                    drop(permit);
                });
            }
            if busy {
                continue;
            }
            let next = self.store.next_poll_due().await.unwrap_or(None);
            tokio::select! {
                _ = tokio::time::sleep(super::until(next, super::RECHECK)) => {}
                _ = self.decider.wakeups().poller.notified() => {}
                _ = shutdown.wait() => break,
            }
        }
        tracing::info!("poller stopped");
    }

    /// Poll one gate's change request and act on what it says.
    #[tracing::instrument(skip_all, fields(gate_id = %gate.id))]
    pub async fn poll(&self, gate: &Gate) -> Result<(), StoreError> {
        if gate.spec.mode == GateMode::Change {
            return self.poll_change(gate).await;
        }
        let info = match self.servicenow.change_info(&gate.spec).await {
            Ok(i) => i,
            Err(e) => {
                // The next poll is already scheduled; a blip only delays the answer.
                tracing::warn!(error = %e.describe(), "changeInfo failed");
                return Ok(());
            }
        };
        if !info.found {
            tracing::debug!("no change request yet");
            return Ok(());
        }
        let now = Utc::now();
        let cr = merge(gate.change_request.clone().unwrap_or_default(), &info);
        let number = cr
            .number
            .clone()
            .unwrap_or_else(|| "the change request".into());
        let state = info.state.as_deref().and_then(CrState::parse);
        let Some(state) = state else {
            return self
                .wait(
                    gate,
                    cr,
                    format!("{number} is in an unknown state {:?}", info.state),
                    None,
                )
                .await;
        };
        let v = devops_verdict(&info, &number, state, now);
        self.act(gate, cr, v).await
    }

    /// A DevOps gate's verdict as a decision, or as a wait.
    async fn act(&self, gate: &Gate, cr: ChangeRequest, v: Verdict) -> Result<(), StoreError> {
        let (to, proceed, message) = match v {
            Verdict::Wait {
                message,
                recheck_in,
            } => return self.wait(gate, cr, message, recheck_in).await,
            Verdict::Approve(m) => (
                GateState::Approved,
                true,
                format!("Approved in ServiceNow: {m}"),
            ),
            Verdict::Cancel(m) => (GateState::Canceled, false, format!("Job was canceled: {m}")),
            Verdict::Reject(m) => (
                GateState::Rejected,
                false,
                format!("Job was not approved for execution: {m}"),
            ),
            // A closed window is a decision, never an error `ignoreErrors` could cover.
            Verdict::Fail(m) => (GateState::Failed, false, m),
        };
        self.decide(gate, to, proceed, message, cr).await
    }

    /// Change mode: read the linked CR and decide: Implement inside its window →
    /// approved; New/Assess/Authorize/Scheduled → wait; any other state → failed, named.
    async fn poll_change(&self, gate: &Gate) -> Result<(), StoreError> {
        let (Some(change), Some(sys_id)) = (
            &self.change,
            gate.change_request.as_ref().and_then(|c| c.sys_id.clone()),
        ) else {
            return Ok(());
        };
        let record = match change.client.get(&sys_id).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e.describe(), "reading the change request failed");
                return Ok(());
            }
        };
        let mut cr = change_request_of(&change.client, &record);
        cr.created_by_snowgate = gate
            .change_request
            .as_ref()
            .is_some_and(|c| c.created_by_snowgate);
        let Some(state) = CrState::parse(&record.state) else {
            return self
                .wait(
                    gate,
                    cr,
                    format!(
                        "{} is in an unknown state `{}`",
                        record.number, record.state
                    ),
                    None,
                )
                .await;
        };
        let approval = record.approval.as_deref().map(|a| format!("approval {a}"));
        let v = verdict(
            &record.number,
            state,
            parse_planned(record.start_date.as_deref()),
            parse_planned(record.end_date.as_deref()),
            approval.as_deref(),
            Utc::now(),
        );
        self.act_on_change(gate, cr, &record.number, state, v).await
    }

    /// A change-mode gate's verdict: only Implement inside the window approves; any other
    /// decision fails the gate, naming the CR's state.
    async fn act_on_change(
        &self,
        gate: &Gate,
        cr: ChangeRequest,
        number: &str,
        state: CrState,
        v: Verdict,
    ) -> Result<(), StoreError> {
        let approves = matches!(v, Verdict::Approve(_));
        if let (false, Some(change)) = (approves, &self.change) {
            // A check started for an approval that did not last is not this CR's answer when
            // it reaches Implement again.
            change.conflict_checks.forget(gate.id);
        }
        // While a freeze covers the gate, its approval is held whatever the conflicts: the
        // check waits until the freeze is over, when the CR is read again.
        let frozen = approves
            && self
                .decider
                .freezes()
                .covering(&gate.spec, false)
                .await?
                .is_some();
        let (to, proceed, message) = match v {
            Verdict::Wait {
                message,
                recheck_in,
            } => return self.wait(gate, cr, message, recheck_in).await,
            Verdict::Approve(m) if frozen => (
                GateState::Approved,
                true,
                format!("Approved in ServiceNow: {m}"),
            ),
            Verdict::Approve(m) => match self.conflict_check(gate, &cr, number).await {
                ConflictStep::Clear => (
                    GateState::Approved,
                    true,
                    format!("Approved in ServiceNow: {m}"),
                ),
                ConflictStep::Wait(why) => return self.wait(gate, cr, why, None).await,
                ConflictStep::Fail(why) => (GateState::Failed, false, why),
            },
            Verdict::Cancel(m) | Verdict::Reject(m) | Verdict::Fail(m) => {
                let m = if m.starts_with("change window closed") {
                    m
                } else {
                    format!("{number} is in state {}: {m}", state.name())
                };
                // A canceled or closed CR, or a window that closed, is a decision:
                // `ignoreErrors` does not cover it.
                (GateState::Failed, false, m)
            }
        };
        self.decide(gate, to, proceed, message, cr).await
    }

    /// `change.conflicts`: ServiceNow's conflict detection on a CR that would approve its gate.
    /// Each such poll reads the CR's last check (`check_results`); until a check started for
    /// it reports no conflicts the gate does not proceed (`wait`), or conflicts fail it
    /// (`fail`). A check that cannot run keeps the gate waiting, in ServiceNow's words.
    async fn conflict_check(&self, gate: &Gate, cr: &ChangeRequest, number: &str) -> ConflictStep {
        let Some(change) = &self.change else {
            return ConflictStep::Clear;
        };
        let policy = change.settings.conflicts;
        let Some(sys_id) = cr
            .sys_id
            .as_deref()
            .filter(|_| policy != ConflictPolicy::Ignore)
        else {
            return ConflictStep::Clear;
        };
        let report = match check_results(change, gate.id, sys_id).await {
            Ok(Some(r)) => r,
            Ok(None) => {
                return ConflictStep::Wait(format!(
                    "{number} is approved; waiting for ServiceNow's conflict check to complete"
                ))
            }
            Err(e) => {
                return ConflictStep::Wait(format!(
                    "{number} is approved, but ServiceNow's conflict check could not run: {}",
                    e.describe()
                ))
            }
        };
        if report.conflicts.is_empty() {
            return ConflictStep::Clear;
        }
        let listed: Vec<String> = report.conflicts.iter().map(|c| c.describe()).collect();
        let found = format!(
            "ServiceNow reports conflicts for {number}: {}",
            listed.join(", ")
        );
        match policy {
            ConflictPolicy::Fail => ConflictStep::Fail(format!("{found} (change.conflicts: fail)")),
            _ => ConflictStep::Wait(format!(
                "{number} is approved; {found}. Waiting until they are resolved (change.conflicts: wait)"
            )),
        }
    }

    /// A decision found by polling, through the one decision path.
    async fn decide(
        &self,
        gate: &Gate,
        to: GateState,
        proceed: bool,
        message: String,
        cr: ChangeRequest,
    ) -> Result<(), StoreError> {
        self.decider
            .decide(Transition {
                gate_id: gate.id,
                to,
                proceed: Some(proceed),
                message,
                actor: Actor::ServiceNow,
                event_kind: "polled",
                change_request: Some(cr),
                outbox: Vec::new(),
                timers: Timers::default(),
            })
            .await?;
        Ok(())
    }

    async fn wait(
        &self,
        gate: &Gate,
        cr: ChangeRequest,
        message: String,
        recheck_in: Option<Duration>,
    ) -> Result<(), StoreError> {
        let now_ms = Utc::now().timestamp_millis();
        let changed = gate.message != message;
        let step_deadline_ms =
            on_change_known(&gate.spec, now_ms, gate.timers.step_deadline_ms.is_some());
        let interval = poll_interval(&gate.spec, self.default_interval);
        // Poll again when the change window opens, if that is sooner than the next interval.
        let next_poll_ms = recheck_in
            .filter(|d| *d < interval)
            .map(|d| now_ms + ms(d) + 50);
        self.store
            .update_change_request(
                gate.id,
                CrUpdate {
                    cr,
                    actor: Actor::ServiceNow,
                    event: changed.then(|| message.clone()),
                    message: Some(message),
                    change_known: true,
                    step_deadline_ms,
                    next_poll_ms,
                },
            )
            .await?;
        if step_deadline_ms.is_some() {
            self.decider.wakeups().timers.notify_one();
        }
        if next_poll_ms.is_some() {
            self.decider.wakeups().poller.notify_one();
        }
        Ok(())
    }
}

/// The results of a conflict check of the CR `sys_id` started for gate `gate`'s approval, or
/// `None` while there are none yet. A check that is running is never started over: a poll
/// reads it until it completes (ServiceNow may run it in the background). A completed run
/// older than the gate's last start is not used: a check is started, and read at once, for a
/// check that completes at once. Gates sharing one CR each start their own.
async fn check_results(
    change: &ChangeMode,
    gate: uuid::Uuid,
    sys_id: &str,
) -> Result<Option<ConflictReport>, ServiceNowError> {
    let checks = &change.conflict_checks;
    let last = change.client.conflicts(sys_id).await?;
    if !last.completed && !last.never_run {
        return Ok(None);
    }
    if last.completed && checks.finished(gate, &last.last_run) {
        return Ok(Some(last));
    }
    change.client.start_conflict_check(sys_id).await?;
    checks.started(gate, last.last_run);
    let now = change.client.conflicts(sys_id).await?;
    Ok((now.completed && checks.finished(gate, &now.last_run)).then_some(now))
}

/// What a conflict check means for a gate whose CR would approve it.
enum ConflictStep {
    Clear,
    Wait(String),
    Fail(String),
}

/// What changeInfo's answer means for a DevOps gate. A bare numeric state is ambiguous
/// (ServiceNow's own example answers `"state": "0"` for a change still being requested):
/// stopping a stage needs the state's name.
fn devops_verdict(
    info: &ChangeInfo,
    number: &str,
    state: CrState,
    now: chrono::DateTime<Utc>,
) -> Verdict {
    let v = verdict(
        number,
        state,
        parse_planned(info.planned_start.as_deref()),
        parse_planned(info.planned_end.as_deref()),
        info.approvers.as_deref(),
        now,
    );
    if !info.state_is_name && !matches!(v, Verdict::Approve(_) | Verdict::Wait { .. }) {
        return Verdict::Wait {
            message: format!(
                "{number} reports only the numeric state {:?}; waiting for its named state or the callback before deciding",
                info.state.as_deref().unwrap_or_default()
            ),
            recheck_in: None,
        };
    }
    v
}

/// The gate's CR data updated with what changeInfo says (state by its name).
fn merge(mut cr: ChangeRequest, info: &ChangeInfo) -> ChangeRequest {
    fn set(slot: &mut Option<String>, v: &Option<String>) {
        if v.is_some() {
            slot.clone_from(v);
        }
    }
    set(&mut cr.number, &info.number);
    set(&mut cr.sys_id, &info.sys_id);
    set(&mut cr.url, &info.url);
    set(&mut cr.approvers, &info.approvers);
    set(&mut cr.assignment_group, &info.assignment_group);
    cr.planned_start_date.clone_from(&info.planned_start);
    cr.planned_end_date.clone_from(&info.planned_end);
    if let Some(s) = &info.state {
        cr.state = Some(
            CrState::parse(s)
                .map(|st| st.name().to_string())
                .unwrap_or_else(|| s.clone()),
        );
    }
    cr
}
