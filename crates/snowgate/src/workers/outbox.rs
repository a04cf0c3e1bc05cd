//! The outbox worker: every outbound action that must happen is a row in the store, attempted
//! until it succeeds or fails for good, with capped exponential backoff and jitter. Attempts
//! are recorded in the gate's event log. Rows claimed by a process that died are taken up
//! again when their claim expires.
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::Semaphore;

mod change;
mod release;

pub use change::change_request_of;

use crate::change_mode::ChangeMode;
use crate::configuration::GateMode;
use crate::configuration::{NotControlled, OutboxSettings, StepMapping};
use crate::decisions::Decider;
use crate::domain::gate::Actor;
use crate::domain::timers::{on_pending, Timers};
use crate::domain::{Gate, GateState};
use crate::jenkins::JenkinsClient;
use crate::servicenow::devops::{ControlAnswer, Registration, StageEvent};
use crate::servicenow::{DevOpsClient, ServiceNowError};
use crate::store::{
    GateStore, NewOutbox, OutboxItem, OutboxKind, OutboxResult, StoreError, Transition,
};
use crate::waiters::ShutdownFlag;

/// Rows attempted at the same time.
const CONCURRENCY: usize = 32;

#[derive(Clone)]
pub struct Outbox {
    pub store: Arc<dyn GateStore>,
    pub decider: Decider,
    pub servicenow: DevOpsClient,
    pub settings: OutboxSettings,
    pub step_mapping: StepMapping,
    /// `servicenow.stage_events`: STARTED before registering, COMPLETED at `/complete`.
    pub stage_events: bool,
    /// `servicenow.not_controlled`.
    pub not_controlled: NotControlled,
    pub register_give_up_after: Duration,
    pub callback_base: String,
    /// Default polling interval, armed when a gate becomes pending.
    pub poll_interval: Duration,
    pub jenkins: Option<JenkinsClient>,
    /// Change mode, when ServiceNow's Change API can be used (auth basic or oauth).
    pub change: Option<Arc<ChangeMode>>,
    /// How long a claimed row stays ours: `store.lease_ttl`, but never shorter than one
    /// attempt can take (the ServiceNow timeout plus a margin), so no other replica repeats
    /// an action still in flight. A dead replica's claims expire after it.
    pub claim: Duration,
}

impl Outbox {
    pub fn claim_duration(&self) -> Duration {
        self.claim
    }

    /// The callback URL ServiceNow calls for this gate.
    pub fn callback_url(&self, gate: &Gate) -> String {
        format!(
            "{}sn-devops/{}",
            self.callback_base,
            gate.callback_token.expose()
        )
    }

    /// Run until `shutdown` is set.
    pub async fn run(self, shutdown: ShutdownFlag) {
        let permits = Arc::new(Semaphore::new(CONCURRENCY));
        loop {
            if shutdown.is_set() {
                break;
            }
            let claimed = match self
                .store
                .claim_outbox(CONCURRENCY as u32, self.claim)
                .await
            {
                Ok(items) => items,
                Err(e) => {
                    tracing::error!(error = %e, "outbox: cannot claim work");
                    Vec::new()
                }
            };
            let busy = !claimed.is_empty();
            // The claimed rows' gates, read in one query (one round trip, not one per row).
            let ids: Vec<_> = claimed.iter().map(|i| i.gate_id).collect();
            let gates: Result<std::collections::HashMap<_, _>, String> =
                match self.store.gates(&ids).await {
                    Ok(gates) => Ok(gates.into_iter().map(|g| (g.id, g)).collect()),
                    Err(e) => Err(e.to_string()),
                };
            for item in claimed {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    break;
                };
                let gate = match &gates {
                    Ok(found) => Ok(found.get(&item.gate_id).cloned()),
                    Err(e) => Err(StoreError::unavailable(e.clone())),
                };
                let me = self.clone();
                tokio::spawn(async move {
                    me.attempt_on(item, gate).await;
                    drop(permit);
                });
            }
            if busy {
                continue;
            }
            let wait = match self.store.next_outbox_due().await {
                Ok(Some(due)) => (due - chrono::Utc::now())
                    .to_std()
                    .unwrap_or(Duration::ZERO)
                    .min(Duration::from_secs(30)),
                Ok(None) => Duration::from_secs(30),
                Err(_) => Duration::from_secs(1),
            };
            tokio::select! {
                _ = self.decider.wakeups().outbox.notified() => {}
                _ = tokio::time::sleep(wait.max(Duration::from_millis(5))) => {}
                _ = shutdown.wait() => break,
            }
        }
        tracing::info!("outbox worker stopped");
    }

    fn backoff(&self, attempts: u32, hint: Option<Duration>) -> Duration {
        let base = self.settings.initial_backoff.0.as_secs_f64();
        let cap = self.settings.max_backoff.0.as_secs_f64();
        let exp = (base * 2f64.powi(attempts.min(30) as i32)).min(cap);
        // ±25% jitter, so retries of many gates after an outage do not arrive together.
        let jittered = exp * rand::thread_rng().gen_range(0.75..1.25);
        let d = Duration::from_secs_f64(jittered.min(cap).max(0.001));
        hint.map_or(d, |h| d.max(h))
    }

    /// One attempt at one row, with its result written back to the store.
    pub async fn attempt(&self, item: OutboxItem) {
        let gate = self.store.gate(item.gate_id).await;
        self.attempt_on(item, gate).await
    }

    /// One attempt at one row whose gate was read already (`None`: it no longer exists).
    #[tracing::instrument(skip_all, fields(gate_id = %item.gate_id, kind = item.kind.as_str(), attempt = item.attempts + 1))]
    async fn attempt_on(&self, item: OutboxItem, gate: Result<Option<Gate>, StoreError>) {
        let result = match gate {
            Ok(Some(gate)) => match item.kind {
                OutboxKind::Register => self.register(&item, &gate).await,
                OutboxKind::Acknowledge => self.acknowledge(&item, &gate).await,
                OutboxKind::ReleaseInput => Ok(self.release(&item, &gate).await),
                OutboxKind::ChangeUpdate => Ok(self.change_update(&item, &gate).await),
                OutboxKind::StageEvent => Ok(self.stage_completed(&item, &gate).await),
                OutboxKind::Attach => Ok(self.attach(&item, &gate).await),
            },
            Ok(None) => Ok(OutboxResult::GiveUp {
                error: "the gate no longer exists".into(),
            }),
            Err(e) => Err(e),
        };
        let result = match result {
            Ok(r) => r.scrubbed(),
            Err(e) => {
                tracing::warn!(error = %e, "outbox: store trouble; will retry");
                OutboxResult::Retry {
                    after: self.backoff(item.attempts, None),
                    error: e.to_string(),
                }
            }
        };
        match &result {
            OutboxResult::Done { message } => tracing::info!(%message, "outbox: done"),
            OutboxResult::Retry { after, error } => {
                tracing::warn!(%error, retry_in = ?after, "outbox: attempt failed, will retry")
            }
            OutboxResult::GiveUp { error } => tracing::error!(%error, "outbox: given up"),
        }
        let retry = matches!(result, OutboxResult::Retry { .. });
        if let Err(e) = self.store.finish_outbox(&item, result).await {
            // The claim expires and the row is attempted again.
            tracing::error!(error = %e, "outbox: cannot record the attempt");
        }
        if retry {
            // The worker may be asleep until a later due time: let it see this one.
            self.decider.wakeups().outbox.notify_one();
        }
    }

    /// Retry with backoff while attempts remain; then give up, saying how often it was tried.
    fn retry_or_give_up(&self, item: &OutboxItem, error: String) -> OutboxResult {
        if item.attempts + 1 < self.settings.max_attempts {
            OutboxResult::Retry {
                after: self.backoff(item.attempts, None),
                error,
            }
        } else {
            OutboxResult::GiveUp {
                error: format!("given up after {} attempts: {error}", item.attempts + 1),
            }
        }
    }

    /// Decide a gate from the outbox, ignoring a conflict (someone decided first).
    async fn decide(
        &self,
        gate: &Gate,
        to: GateState,
        proceed: Option<bool>,
        message: String,
        kind: &'static str,
        timers: Timers,
    ) -> Result<(), StoreError> {
        self.decider
            .decide(Transition {
                gate_id: gate.id,
                to,
                proceed,
                message,
                actor: Actor::ServiceNow,
                event_kind: kind,
                change_request: None,
                outbox: Vec::<NewOutbox>::new(),
                timers,
            })
            .await
            .map(|_| ())
    }

    async fn register(&self, item: &OutboxItem, gate: &Gate) -> Result<OutboxResult, StoreError> {
        if gate.state != GateState::Registering {
            return Ok(OutboxResult::Done {
                message: format!("registration not needed: the gate is {}", gate.state),
            });
        }
        if gate.spec.mode == GateMode::Change {
            return self.link_change(item, gate).await;
        }
        match self.register_once(gate).await {
            Ok(answer) => self.registered(gate, answer).await,
            Err(RegisterError::StepInvalid) => {
                self.fail(gate, "Step could not be associated with a pipeline step in ServiceNow (stepMapping answered stepValid: false)".into()).await?;
                Ok(OutboxResult::GiveUp {
                    error: "the step mapping is not valid".into(),
                })
            }
            Err(RegisterError::ServiceNow(e)) => self.registration_failed(item, gate, e).await,
        }
    }

    /// What ServiceNow answered about change control decides the gate.
    async fn registered(
        &self,
        gate: &Gate,
        answer: ControlAnswer,
    ) -> Result<OutboxResult, StoreError> {
        if answer.controlled {
            self.decide(
                gate,
                GateState::Pending,
                None,
                "Waiting for a change request decision from ServiceNow".into(),
                "registered",
                on_pending(
                    &gate.spec,
                    chrono::Utc::now().timestamp_millis(),
                    self.poll_interval,
                ),
            )
            .await?;
            return Ok(OutboxResult::Done {
                message: "registered with ServiceNow: the stage is under change control".into(),
            });
        }
        if self.not_controlled == NotControlled::Proceed {
            self.decide(
                gate,
                GateState::NotControlled,
                Some(true),
                format!("{} (servicenow.not_controlled: proceed)", answer.describe()),
                "not_controlled",
                Timers::default(),
            )
            .await?;
            return Ok(OutboxResult::Done {
                message: "registered with ServiceNow: not under change control".into(),
            });
        }
        // Fail closed, as the plugin does: a stage ServiceNow does not know must not reach
        // production ungated.
        let why = answer.describe();
        self.fail(gate, why.clone()).await?;
        Ok(OutboxResult::GiveUp { error: why })
    }

    /// A transient error is retried until `register_give_up_after` or `max_attempts`; then, or
    /// for any other error, the gate fails.
    async fn registration_failed(
        &self,
        item: &OutboxItem,
        gate: &Gate,
        e: ServiceNowError,
    ) -> Result<OutboxResult, StoreError> {
        let age = (chrono::Utc::now() - item.created_at)
            .to_std()
            .unwrap_or_default();
        if e.is_transient()
            && age < self.register_give_up_after
            && item.attempts + 1 < self.settings.max_attempts
        {
            return Ok(OutboxResult::Retry {
                after: self.backoff(item.attempts, e.retry_after()),
                error: e.describe(),
            });
        }
        let why = if e.is_transient() {
            format!(
                "registration with ServiceNow kept failing and was given up: {}",
                e.describe()
            )
        } else {
            format!("registration with ServiceNow failed: {}", e.describe())
        };
        self.fail(gate, why.clone()).await?;
        Ok(OutboxResult::GiveUp { error: why })
    }

    async fn register_once(&self, gate: &Gate) -> Result<ControlAnswer, RegisterError> {
        if self.stage_events {
            // The plugin discards the answer to its events; so does snowgate, but says so.
            let started = StageEvent::started(&gate.spec, gate.created_at);
            if let Err(e) = self.servicenow.stage_event(&started).await {
                tracing::warn!(error = %e.describe(), "the stage's STARTED event was not accepted");
            }
        }
        match self.step_mapping {
            StepMapping::Off => {}
            StepMapping::Validate => {
                if !self.servicenow.step_mapping_valid(&gate.spec).await? {
                    return Err(RegisterError::StepInvalid);
                }
            }
            StepMapping::Create => {
                if !self.servicenow.create_step_mapping(&gate.spec).await? {
                    return Err(RegisterError::StepInvalid);
                }
            }
        }
        let url = self.callback_url(gate);
        Ok(self
            .servicenow
            .register(&Registration {
                spec: &gate.spec,
                callback_url: &url,
            })
            .await?)
    }

    /// A gate that cannot be registered fails; `ignoreErrors` lets the stage proceed anyway.
    async fn fail(&self, gate: &Gate, why: String) -> Result<(), StoreError> {
        let proceed = gate.spec.ignore_errors;
        let message = if proceed {
            format!("{why} (ignoreErrors: the stage proceeds)")
        } else {
            why
        };
        self.decide(
            gate,
            GateState::Failed,
            Some(proceed),
            message,
            "registration_failed",
            Timers::default(),
        )
        .await
    }

    /// `servicenow.stage_events`: the stage's COMPLETED event, with the result `/complete` gave.
    async fn stage_completed(&self, item: &OutboxItem, gate: &Gate) -> OutboxResult {
        let success = item.payload["result"] == "success";
        let event = StageEvent::completed(&gate.spec, gate.created_at, success);
        match self.servicenow.stage_event(&event).await {
            Ok(()) => OutboxResult::Done {
                message: "ServiceNow took the stage's COMPLETED event".into(),
            },
            Err(e) if e.is_transient() && item.attempts + 1 < self.settings.max_attempts => {
                OutboxResult::Retry {
                    after: self.backoff(item.attempts, e.retry_after()),
                    error: e.describe(),
                }
            }
            Err(e) => OutboxResult::GiveUp {
                error: format!("the COMPLETED event was refused: {}", e.describe()),
            },
        }
    }

    async fn acknowledge(
        &self,
        item: &OutboxItem,
        gate: &Gate,
    ) -> Result<OutboxResult, StoreError> {
        let url = self.callback_url(gate);
        match self
            .servicenow
            .acknowledge(gate.callback_token.expose(), &gate.spec, &url)
            .await
        {
            Ok(()) => Ok(OutboxResult::Done {
                message: "ServiceNow acknowledged the callback".into(),
            }),
            Err(e) if e.is_transient() && item.attempts + 1 < self.settings.max_attempts => {
                Ok(OutboxResult::Retry {
                    after: self.backoff(item.attempts, e.retry_after()),
                    error: e.describe(),
                })
            }
            Err(e) => Ok(OutboxResult::GiveUp {
                error: format!("acknowledgement given up: {}", e.describe()),
            }),
        }
    }
}

enum RegisterError {
    StepInvalid,
    ServiceNow(ServiceNowError),
}

impl From<ServiceNowError> for RegisterError {
    fn from(e: ServiceNowError) -> Self {
        RegisterError::ServiceNow(e)
    }
}
