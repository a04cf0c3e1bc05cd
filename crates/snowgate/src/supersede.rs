//! Superseded runs: when a gate opens for the same job, branch and stage as older builds'
//! gates still waiting, and with a higher build number, the older ones are decided
//! `superseded` (proceed false): a newer approved run makes the older ones moot, so they
//! must not deploy after it.
use globset::GlobSet;

use crate::change_mode::{full_job_name, globs, ChangeMode};
use crate::configuration::SupersedeSettings;
use crate::decisions::{superseded_decision, Decider};
use crate::domain::{Gate, GateSpec};
use crate::store::{GateStore, StoreError, TransitionOutcome};

/// Open gates of one stage looked at when a newer one opens: far more than one job's stage
/// ever has waiting at once.
const MAX_OLDER: u32 = 1000;

/// Which gates supersede older runs: those whose request says `supersede`, and every gate of
/// the jobs `supersede.jobs` names.
pub struct Supersede {
    jobs: GlobSet,
}

impl Supersede {
    pub fn new(settings: &SupersedeSettings) -> anyhow::Result<Supersede> {
        Ok(Supersede {
            jobs: globs(&settings.jobs, false)?,
        })
    }

    pub fn applies(&self, spec: &GateSpec) -> bool {
        spec.supersede || self.jobs.is_match(full_job_name(spec))
    }
}

/// Decide every older open gate of `newer`'s job, branch and stage `superseded`; how many
/// were. Safe to repeat (an open that is retried supersedes nothing twice: the older gates
/// are decided by then).
pub async fn supersede_older(
    store: &dyn GateStore,
    decider: &Decider,
    change: Option<&ChangeMode>,
    newer: &Gate,
) -> Result<usize, StoreError> {
    let open = store
        .open_gates_of_stage(&newer.spec.job_url, &newer.spec.stage_name, MAX_OLDER)
        .await?;
    let mut superseded = 0;
    for older in open.iter().filter(|g| g.spec.is_older_run_of(&newer.spec)) {
        let outcome = decider
            .decide(superseded_decision(older, newer, change))
            .await?;
        if let TransitionOutcome::Applied(_) = outcome {
            tracing::info!(gate_id = %older.id, build = %older.spec.build_number, newer_gate = %newer.id, newer_build = %newer.spec.build_number, "gate superseded by a newer build");
            superseded += 1;
        }
    }
    Ok(superseded)
}
