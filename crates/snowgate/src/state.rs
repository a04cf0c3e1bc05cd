//! `AppState`: what the handlers share. Built by `startup`; routes take what they need from it.
use std::sync::Arc;

use crate::change_mode::ChangeMode;
use crate::configuration::{GateMode, Secret};
use crate::decisions::Decider;
use crate::jenkins::JenkinsClient;
use crate::metrics::Metrics;
use crate::routes::{self, auth::Tokens};
use crate::servicenow::RateLimiter;
use crate::store::GateStore;
use crate::waiters::Waiters;
use crate::workers::outbox::Outbox;

/// Shared state of every handler.
pub struct AppState {
    pub store: Arc<dyn GateStore>,
    pub decider: Decider,
    pub waiters: Arc<Waiters>,
    pub outbox: Outbox,
    pub tokens: Tokens,
    pub callback_auth: Option<(String, Secret)>,
    pub jenkins: Option<JenkinsClient>,
    pub metrics: Arc<Metrics>,
    pub max_body: usize,
    pub change: Option<Arc<ChangeMode>>,
    pub default_mode: GateMode,
    /// `servicenow.max_requests_per_second`, shared with the poller and reconciliation.
    pub limiter: Arc<RateLimiter>,
    /// The status page's sessions and failed-login limiter (in memory).
    pub ui: routes::ui::UiState,
    /// Which gates supersede older runs of their stage.
    pub supersede: crate::supersede::Supersede,
}
