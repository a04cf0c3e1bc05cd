//! The change freezes in force: those of the configuration file and those declared through
//! the API (stored, so every replica applies them), and what one does to a ServiceNow approval
//! of a gate it covers: hold it until the freeze ends (`freeze.action: hold`), or fail the
//! gate (`fail`).
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::Utc;

use crate::change_mode::full_job_name;
use crate::configuration::{FreezeAction, Settings};
use crate::domain::freeze::{Freeze, FreezeRule};
use crate::domain::gate::Actor;
use crate::domain::{GateSpec, GateState};
use crate::store::{GateStore, Hold, StoreError, Transition, TransitionOutcome};

/// How long this replica trusts its copy of the stored freezes: a freeze declared or deleted
/// at another replica applies here within this time. Reading them for every decision would
/// put a query on the decision path; once a second is nothing.
const REFRESH: Duration = Duration::from_secs(1);

pub struct Freezes {
    configured: Vec<FreezeRule>,
    store: Arc<dyn GateStore>,
    stored: RwLock<Cached>,
    pub action: FreezeAction,
}

#[derive(Default)]
struct Cached {
    read_at: Option<Instant>,
    rules: Vec<FreezeRule>,
}

impl Freezes {
    pub fn new(settings: &Settings, store: Arc<dyn GateStore>) -> anyhow::Result<Freezes> {
        let mut configured = Vec::new();
        for i in 0..settings.freezes.len() {
            let freeze = settings.configured_freeze(i).map_err(anyhow::Error::msg)?;
            configured.push(FreezeRule::new(freeze).map_err(|e| anyhow::anyhow!("{e:?}"))?);
        }
        Ok(Freezes {
            configured,
            store,
            stored: RwLock::new(Cached::default()),
            action: settings.freeze.action,
        })
    }

    /// Forget the copy of the stored freezes (after this replica changed them).
    pub fn invalidate(&self) {
        if let Ok(mut c) = self.stored.write() {
            c.read_at = None;
        }
    }

    /// Every rule not over: the configured ones, and the stored ones as of at most `REFRESH`
    /// ago (`fresh`: as of now).
    async fn rules(&self, fresh: bool) -> Result<Vec<FreezeRule>, StoreError> {
        let cached = self.stored.read().ok().and_then(|c| {
            c.read_at
                .filter(|at| !fresh && at.elapsed() < REFRESH)
                .map(|_| c.rules.clone())
        });
        let stored = match cached {
            Some(rules) => rules,
            None => {
                let now = Utc::now().timestamp_millis();
                let rules: Vec<FreezeRule> = self
                    .store
                    .freezes(now)
                    .await?
                    .into_iter()
                    .filter_map(|f| FreezeRule::new(f).ok())
                    .collect();
                if let Ok(mut c) = self.stored.write() {
                    *c = Cached {
                        read_at: Some(Instant::now()),
                        rules: rules.clone(),
                    };
                }
                rules
            }
        };
        let now = Utc::now();
        Ok(self
            .configured
            .iter()
            .cloned()
            .chain(stored)
            .filter(|r| r.freeze.end > now)
            .collect())
    }

    /// Every freeze not over (active and upcoming), the earliest start first.
    pub async fn list(&self) -> Result<Vec<Freeze>, StoreError> {
        let mut all: Vec<Freeze> = self
            .rules(true)
            .await?
            .into_iter()
            .map(|r| r.freeze)
            .collect();
        all.sort_by(|a, b| a.start.cmp(&b.start).then_with(|| a.id.cmp(&b.id)));
        Ok(all)
    }

    /// The active freeze covering a gate of `spec` now, the one that ends last when several
    /// do (`fresh`: with the stored freezes read now rather than from the copy).
    pub async fn covering(
        &self,
        spec: &GateSpec,
        fresh: bool,
    ) -> Result<Option<Freeze>, StoreError> {
        let now = Utc::now();
        let job = full_job_name(spec);
        Ok(self
            .rules(fresh)
            .await?
            .into_iter()
            .filter(|r| r.freeze.is_active(now) && r.covers(spec, &job))
            .map(|r| r.freeze)
            .max_by_key(|f| f.end))
    }

    /// Whether any freeze is active now (a decision needs no gate read otherwise).
    pub async fn any_active(&self) -> Result<bool, StoreError> {
        let now = Utc::now();
        Ok(self
            .rules(false)
            .await?
            .iter()
            .any(|r| r.freeze.is_active(now)))
    }

    /// A configured freeze by id (these cannot be deleted through the API).
    pub fn is_configured(&self, id: &str) -> bool {
        self.configured.iter().any(|r| r.freeze.id == id)
    }
}

/// What a freeze makes of a decision (returned once per decision and matched at once: boxing
/// either side would only add an allocation).
#[allow(clippy::large_enum_variant)]
pub enum FreezeVerdict {
    /// Apply this transition (the one given, or `failed` with `freeze.action: fail`).
    Decide(Transition),
    /// The approval is held; here is the gate, still pending.
    Held(TransitionOutcome),
}

impl Freezes {
    /// Look at a decision before it is applied: a decision that would let a stage an active
    /// freeze covers proceed is held (or fails the gate): ServiceNow's approval, and as much
    /// snowgate's own (a timeout that continues, a stage not under change control). Only an
    /// operator's resume goes through, as a recorded override (`Decider::operator_decision`);
    /// everything that stops a stage passes unchanged.
    pub async fn apply(
        &self,
        store: &dyn GateStore,
        t: Transition,
    ) -> Result<FreezeVerdict, StoreError> {
        if t.proceed != Some(true)
            || matches!(t.actor, Actor::Operator(_))
            || !self.any_active().await?
        {
            return Ok(FreezeVerdict::Decide(t));
        }
        let Some(gate) = store.gate(t.gate_id).await? else {
            return Ok(FreezeVerdict::Decide(t));
        };
        let Some(freeze) = self.covering(&gate.spec, false).await? else {
            return Ok(FreezeVerdict::Decide(t));
        };
        let decided = if t.to == GateState::Approved && t.actor == Actor::ServiceNow {
            "ServiceNow approved".to_string()
        } else {
            t.message.clone()
        };
        if self.action == FreezeAction::Fail {
            return Ok(FreezeVerdict::Decide(Transition {
                to: GateState::Failed,
                proceed: Some(false),
                message: format!(
                    "{decided}, but {}; the stage does not proceed (freeze.action: fail)",
                    freeze.describe()
                ),
                event_kind: "freeze_failed",
                ..t
            }));
        }
        let message = format!(
            "{decided}; held by {}. The stage proceeds when the freeze ends",
            freeze.describe()
        );
        let hold = Hold {
            gate_id: t.gate_id,
            freeze_id: freeze.id.clone(),
            freeze_name: freeze.name.clone(),
            until_ms: freeze.end.timestamp_millis(),
            to: t.to,
            proceed: t.proceed,
            message: t.message,
            actor: t.actor,
        };
        tracing::info!(gate_id = %t.gate_id, freeze = %freeze.name, until = %freeze.end, "approval held by a change freeze");
        let outcome = store.hold_approval(hold, message, t.outbox).await?;
        Ok(FreezeVerdict::Held(outcome))
    }
}
