//! Change mode (the way Octopus Deploy gates on the Change Management API): decide
//! whether a gate is change-controlled, then find the change request it is about — the one
//! named by the gate, else an open one with the exact title, else a new one — and link it.
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde_json::{Map, Value};

use crate::configuration::ChangeSettings;
use crate::domain::names::job_segments;
use crate::domain::{Gate, GateSpec};
use crate::servicenow::change::{ChangeClient, ChangeKind, ChangeRecord};
use crate::servicenow::ServiceNowError;
use crate::store::{GateStore, StoreError};

#[derive(Debug)]
pub enum Link {
    /// The job or the environment is not change-controlled.
    NotControlled(String),
    Linked {
        record: ChangeRecord,
        created: bool,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("change request {0} was not found in ServiceNow")]
    UnknownNumber(String),
    #[error("the standard change template `{0}` was not found or is not active")]
    UnknownTemplate(String),
    #[error("{}", .0.describe())]
    ServiceNow(#[from] ServiceNowError),
    /// The title's lock could not be taken (the store is unavailable or another gate held it
    /// longer than `store.timeout`): retried.
    #[error("cannot take the change request title's lock: {0}")]
    TitleLock(#[from] StoreError),
}

impl LinkError {
    pub fn is_transient(&self) -> bool {
        match self {
            LinkError::ServiceNow(e) => e.is_transient(),
            LinkError::TitleLock(_) => true,
            LinkError::UnknownNumber(_) | LinkError::UnknownTemplate(_) => false,
        }
    }
}

pub struct ChangeMode {
    pub client: ChangeClient,
    pub settings: ChangeSettings,
    /// The conflict checks this process started (`change.conflicts`).
    pub conflict_checks: StartedChecks,
    jobs: GlobSet,
    environments: GlobSet,
}

/// The conflict checks this process started, by the gate they were started for, each with the
/// `last_run` ServiceNow showed just before it: a later read whose `last_run` differs shows a
/// check that started after it (`last_run` has a resolution of one second, so a check started
/// within the same second as the one before reads as not yet run, and the gate's next poll
/// looks again), and one that shows the same is an older run's result. Keyed by gate, not by
/// CR: gates sharing a CR never take each other's starts.
#[derive(Default)]
pub struct StartedChecks(std::sync::Mutex<std::collections::HashMap<uuid::Uuid, String>>);

/// Most checks remembered at once; beyond it they are forgotten (their CRs are checked anew).
const STARTED_CHECKS: usize = 10_000;

impl StartedChecks {
    pub fn started(&self, gate: uuid::Uuid, last_run_before: String) {
        if let Ok(mut started) = self.0.lock() {
            if started.len() >= STARTED_CHECKS {
                started.clear();
            }
            started.insert(gate, last_run_before);
        }
    }

    /// Forget the check started for `gate` (its CR left Implement before the check was read).
    pub fn forget(&self, gate: uuid::Uuid) {
        if let Ok(mut started) = self.0.lock() {
            started.remove(&gate);
        }
    }

    /// Whether a completed run that started at `last_run` is one this process asked for since
    /// its last look; if so it is forgotten, and the next look starts a check again.
    pub fn finished(&self, gate: uuid::Uuid, last_run: &str) -> bool {
        let Ok(mut started) = self.0.lock() else {
            return false;
        };
        match started.get(&gate) {
            Some(before) if before != last_run => {
                started.remove(&gate);
                true
            }
            _ => false,
        }
    }
}

pub(crate) fn globs(patterns: &[String], case_insensitive: bool) -> anyhow::Result<GlobSet> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        b.add(
            GlobBuilder::new(p)
                .case_insensitive(case_insensitive)
                .literal_separator(false)
                .build()?,
        );
    }
    Ok(b.build()?)
}

/// The full job name as Jenkins shows it (`folder/app`, `mb/feature%2Fx`).
pub fn full_job_name(spec: &GateSpec) -> String {
    job_segments(&spec.job_url).join("/")
}

/// Expand `{job}` `{buildNumber}` `{environment}` `{gateId}` `{buildUrl}` in a template.
pub fn expand(template: &str, gate: &Gate) -> String {
    let spec = &gate.spec;
    template
        .replace("{job}", &full_job_name(spec))
        .replace("{buildNumber}", &spec.build_number)
        .replace("{environment}", spec.environment.as_deref().unwrap_or(""))
        .replace("{gateId}", &gate.id.to_string())
        .replace("{buildUrl}", spec.build_url.as_deref().unwrap_or(""))
}

impl ChangeMode {
    pub fn new(client: ChangeClient, settings: ChangeSettings) -> anyhow::Result<ChangeMode> {
        Ok(ChangeMode {
            jobs: globs(&settings.jobs, false)?,
            environments: globs(&settings.environments, true)?,
            client,
            settings,
            conflict_checks: StartedChecks::default(),
        })
    }

    /// Both the job and the environment must be change-controlled.
    pub fn controlled(&self, spec: &GateSpec) -> Result<(), String> {
        let job = full_job_name(spec);
        if !self.jobs.is_match(&job) {
            return Err(format!(
                "job `{job}` is not change-controlled (change.jobs)"
            ));
        }
        let env = spec.environment.as_deref().unwrap_or("");
        if !self.environments.is_match(env) {
            return Err(format!(
                "environment `{env}` is not change-controlled (change.environments)"
            ));
        }
        Ok(())
    }

    /// The CR fields: configured templates, then the gate's `changeRequestDetails.attributes`;
    /// `short_description` defaults to the title.
    pub fn fields(&self, gate: &Gate) -> Map<String, Value> {
        let mut m = Map::new();
        for (k, v) in &self.settings.fields {
            m.insert(k.clone(), Value::String(expand(v, gate)));
        }
        if let Some(Value::Object(attrs)) = gate
            .spec
            .change_request_details
            .as_ref()
            .and_then(|d| d.get("attributes"))
        {
            for (k, v) in attrs {
                m.insert(k.clone(), v.clone());
            }
        }
        if !m.contains_key("short_description") {
            m.insert(
                "short_description".into(),
                Value::String(expand(&self.settings.title_template, gate)),
            );
        }
        m
    }

    /// The title a CR for this gate carries (and a re-run matches).
    pub fn title(&self, gate: &Gate) -> String {
        match self.fields(gate).get("short_description") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => expand(&self.settings.title_template, gate),
        }
    }

    fn template_name<'a>(&'a self, spec: &'a GateSpec) -> Option<&'a str> {
        if spec.emergency {
            return None;
        }
        spec.standard_change_template
            .as_deref()
            .or(self.settings.standard_template.as_deref())
    }

    /// Whether snowgate moves this gate's new CR itself (a standard change with auto_transition).
    pub fn auto_transitions(&self, spec: &GateSpec) -> bool {
        self.settings.auto_transition.is_some() && self.template_name(spec).is_some()
    }

    /// Find or create the gate's change request. The search-or-create of a title runs under
    /// the store's title lock, so gates racing for one title (in this process or on other
    /// replicas of a shared store) create one change request, not two.
    pub async fn link(&self, gate: &Gate, store: &dyn GateStore) -> Result<Link, LinkError> {
        if let Err(why) = self.controlled(&gate.spec) {
            return Ok(Link::NotControlled(why));
        }
        if let Some(number) = &gate.spec.change_request_number {
            // Only that CR: never another, even one with the matching title.
            return match self.client.find_by_number(number).await? {
                Some(record) => Ok(Link::Linked {
                    record,
                    created: false,
                }),
                None => Err(LinkError::UnknownNumber(number.clone())),
            };
        }
        let title = self.title(gate);
        let _held = store.lock_title(&title).await?;
        self.find_or_create(gate, &title).await
    }

    /// The open CR with `title`, else a new one (emergency, standard from a template, or normal).
    async fn find_or_create(&self, gate: &Gate, title: &str) -> Result<Link, LinkError> {
        if let Some(record) = self.client.find_open_by_title(title).await? {
            return Ok(Link::Linked {
                record,
                created: false,
            });
        }
        let fields = self.fields(gate);
        let record = if gate.spec.emergency {
            self.client.create(ChangeKind::Emergency, &fields).await?
        } else if let Some(name) = self.template_name(&gate.spec) {
            let template = self
                .client
                .find_template(name)
                .await?
                .ok_or_else(|| LinkError::UnknownTemplate(name.to_string()))?;
            self.client.create_standard(&template, &fields).await?
        } else {
            self.client.create(ChangeKind::Normal, &fields).await?
        };
        tracing::info!(gate_id = %gate.id, number = %record.number, %title, "change request created");
        Ok(Link::Linked {
            record,
            created: true,
        })
    }
}
