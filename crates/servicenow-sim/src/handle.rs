//! [`SimHandle`]: a running simulator, what tests and the demo read and decide through.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use super::callbacks;
use super::model::Decision;
use super::{
    ArtifactVersionRecord, CallbackAttempt, ChangeRecord, Fault, OrchestrationTask, PackageRecord,
    RecordedRequest, Shared,
};

/// A running simulator. Dropping it stops the server (not gracefully); prefer [`SimHandle::stop`].
pub struct SimHandle {
    pub(crate) shared: Arc<Shared>,
    pub(crate) addr: SocketAddr,
    pub(crate) server: actix_web::dev::ServerHandle,
    pub(crate) task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl SimHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// Every request to the API (not to `/__sim/`), in order (the newest 10,000).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.with_model(|m| m.requests())
    }

    pub fn clear_requests(&self) {
        self.shared.with_model(|m| m.clear_requests());
    }

    /// The CRs, oldest first.
    pub fn changes(&self) -> Vec<ChangeRecord> {
        self.shared.with_model(|m| m.snapshot())
    }

    /// One CR by number (or `"latest"`).
    pub fn change(&self, number: &str) -> Option<ChangeRecord> {
        self.shared
            .with_model(|m| m.find(number).map(|c| m.record_of(c)))
    }

    /// The artifact versions registered through `POST …/artifact/registration`, oldest first.
    pub fn artifact_versions(&self) -> Vec<ArtifactVersionRecord> {
        self.shared.with_model(|m| m.artifacts.versions())
    }

    /// The packages registered through `POST …/package/registration` (staged ones too).
    pub fn packages(&self) -> Vec<PackageRecord> {
        self.shared.with_model(|m| m.artifacts.packages())
    }

    /// Every callback attempt (notices and decisions), oldest first.
    pub fn callbacks(&self) -> Vec<CallbackAttempt> {
        self.shared.with_model(|m| m.callbacks())
    }

    /// Approves (state Implement) and calls back `{"result":"succeeded",…}`. Returns the
    /// callback's HTTP status, `None` when dropped or unreachable; errors for an unknown CR.
    pub async fn approve(&self, number: &str, comments: &str) -> anyhow::Result<Option<u16>> {
        self.decide(number, Decision::Approve, comments).await
    }

    /// Rejects (state Closed, approval rejected) and calls back `{"result":"rejected",…}`.
    pub async fn reject(&self, number: &str, comments: &str) -> anyhow::Result<Option<u16>> {
        self.decide(number, Decision::Reject, comments).await
    }

    /// Cancels (state Canceled) and calls back `{"result":"canceled",…}`.
    pub async fn cancel(&self, number: &str, comments: &str) -> anyhow::Result<Option<u16>> {
        self.decide(number, Decision::Cancel, comments).await
    }

    /// Calls back `{"result":"failed","isError":true,…}` (state unchanged).
    pub async fn error(&self, number: &str, comments: &str) -> anyhow::Result<Option<u16>> {
        self.decide(number, Decision::Error, comments).await
    }

    /// Sends the "change request created" notice again.
    pub async fn notice(&self, number: &str) -> anyhow::Result<Option<u16>> {
        Ok(callbacks::notice(&self.shared, number).await?.status)
    }

    async fn decide(
        &self,
        number: &str,
        decision: Decision,
        comments: &str,
    ) -> anyhow::Result<Option<u16>> {
        Ok(callbacks::decide(&self.shared, number, decision, comments)
            .await?
            .status)
    }

    /// Sets a CR's state (name such as `"Scheduled"`, or value such as `"-2"`) and planned
    /// window (`YYYY-MM-DD HH:MM:SS` UTC; `None` keeps, `Some("")` clears). No callback.
    pub fn set_state(
        &self,
        number: &str,
        state: &str,
        planned_start: Option<String>,
        planned_end: Option<String>,
    ) -> anyhow::Result<()> {
        self.shared.with_model(|m| {
            m.set_state(
                number,
                state,
                planned_start.as_deref(),
                planned_end.as_deref(),
            )
        })?;
        Ok(())
    }

    /// Adds or replaces the fault for `fault.endpoint` (see [`Fault`]).
    pub fn inject_fault(&self, fault: Fault) {
        self.shared.with_model(|m| m.faults.inject(fault));
    }

    pub fn clear_faults(&self) {
        self.shared.with_model(|m| m.faults.clear());
    }

    /// While true, callbacks are not sent (CR states still change).
    pub fn set_drop_callbacks(&self, drop: bool) {
        self.shared.with_model(|m| m.drop_callbacks = drop);
    }

    /// `None`: every stage under change control; `Some(list)`: only these.
    pub fn set_controlled_stages(&self, stages: Option<Vec<String>>) {
        self.shared.with_model(|m| m.controlled_stages = stages);
    }

    /// Replaces the job URLs whose stages are known orchestration tasks (see
    /// [`crate::SimSettings::known_pipelines`]).
    pub fn set_known_pipelines(&self, job_urls: Vec<String>) {
        self.shared.with_model(|m| m.known_pipelines = job_urls);
    }

    /// The orchestration tasks created by stepMapping or stage events, oldest first.
    pub fn orchestration_tasks(&self) -> Vec<OrchestrationTask> {
        self.shared.with_model(|m| m.tasks())
    }

    /// Every accepted `POST …/tool/orchestration` event body, oldest first.
    pub fn orchestration_events(&self) -> Vec<serde_json::Value> {
        self.shared.with_model(|m| m.events())
    }

    /// Task names (`app#Deploy`) or stage names for which stepMapping answers `stepValid: false`.
    pub fn set_invalid_steps(&self, names: Vec<String>) {
        self.shared.with_model(|m| m.invalid_steps = names);
    }

    /// Stops the server gracefully (in-flight requests get up to two seconds) and the
    /// simulator's timers.
    pub async fn stop(mut self) {
        self.abort_timers();
        self.server.stop(true).await;
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    fn abort_timers(&self) {
        let timers = self.shared.with_model(|m| std::mem::take(&mut m.timers));
        for timer in timers {
            timer.abort();
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if self.task.is_some() {
            self.abort_timers();
            // `stop` sends its command at once; the returned future only waits for completion.
            std::mem::drop(self.server.stop(false));
        }
    }
}

impl fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimHandle")
            .field("url", &self.shared.base_url)
            .finish_non_exhaustive()
    }
}
