//! The ServiceNow DevOps simulator: the test double behind every snowgate test and the server
//! behind `snowgate sim` and `snowgate demo`.
//!
//! It serves the sn_devops orchestration API of ServiceNow's DevOps REST API reference under
//! `/api/sn_devops/devops/…`, `/api/sn_devops/v1/devops/…` and `/api/sn_devops/v2/devops/…`
//! (`changeControl` GET/POST/PUT, `stepMapping` GET/POST, `changeInfo` GET/PUT, `callback` GET,
//! `POST …/devops/tool/{capability}` (stage events), and `POST …/devops/artifact/registration`
//! and `…/devops/package/registration`), exactly as strict as the the API reference: `{"result": …}`
//! wrappers, status codes, Basic auth (any version) or `sn_devops.DevOpsToken <tool_id>:<token>`
//! (v2 only), `Accept`, `Content-Type`, `toolId` and required fields. See `devops/` for the
//! order of the checks.
//!
//! It accepts only what the official Jenkins plugin (6.2.0) sends (`plugin_forms/`): the
//! changeControl POST and its acknowledgement member by member, stage events in the plugin's
//! shape, changeInfo lookups under exactly the plugin's `pipelineName`/`stageName` spelling,
//! and `PUT changeInfo` with the fields object itself. A stage is only under change control
//! when its orchestration task exists (`SimSettings::known_pipelines`, stepMapping or a
//! STARTED stage event).
//!
//! A registration (`POST …/changeControl`) for a controlled stage opens a change request (state
//! New) and remembers the callback URL; the simulator then POSTs a "created" notice there, and
//! later the decision (`{"result":"succeeded"|"rejected"|"canceled","changeComments":…}`, or
//! `{"result":"failed","isError":true,…}`) when a test, the demo timer or the admin API decides.
//!
//! It also serves the Change Management API of ServiceNow's Change Management API, as Octopus Deploy's ServiceNow docs describe it
//! (`change/`: `GET /api/sn_chg_rest/change` with `sysparm_query`, `GET …/change/{sys_id}`,
//! `POST …/change/normal|emergency`, `POST …/change/standard/{template}`,
//! `GET …/change/standard/template`, `PATCH …/change/{sys_id}`, also under `…/v1/…`), with its
//! own CRs (CHG0040001…), Basic or `Bearer` auth, roles, and the OAuth token endpoint
//! `POST /oauth_token.do` (`oauth.rs`: password and refresh-token grants). New change-API CRs
//! move to Implement after `auto_approve_after` too.
//!
//! # Admin API
//!
//! Under `/__sim/`, without authentication, JSON in and out (any request content type is taken,
//! so plain `curl -d` works). Admin calls are not recorded as API requests.
//!
//! | request | effect / answer |
//! |---|---|
//! | `GET /__sim/changes` | every CR ([`ChangeRecord`], camelCase), oldest first |
//! | `GET /__sim/changes/{number}` | one CR (404 when unknown) |
//! | `POST /__sim/changes/{number}/approve` | state Implement; callback `succeeded` |
//! | `POST /__sim/changes/{number}/reject` | state Closed, approval rejected; callback `rejected` |
//! | `POST /__sim/changes/{number}/cancel` | state Canceled; callback `canceled` |
//! | `POST /__sim/changes/{number}/error` | state unchanged; callback `failed` with `isError: true` |
//! | `POST /__sim/changes/{number}/notice` | sends the "change request created" notice again |
//! | `POST /__sim/changes/{number}/state` | body `{"state":"Scheduled","plannedStartDate":"2030-01-01 08:00:00","plannedEndDate":…}`; no callback (for polling); an empty date clears it, an absent one is kept |
//! | `GET /__sim/faults`, `POST /__sim/faults`, `DELETE /__sim/faults` | list, inject (a [`Fault`]: `{"endpoint":"changeControl.post","failNext":2,"status":503,"latencyMs":0}`), clear |
//! | `GET /__sim/callbacks` | `{"drop":bool,"callbacks":[…every attempt with its HTTP status…]}` |
//! | `POST /__sim/callbacks` | `{"drop":true}`: callbacks are no longer sent (CR states still change) |
//! | `GET /__sim/requests`, `DELETE /__sim/requests` | the recorded API requests ([`RecordedRequest`]); forget them |
//! | `GET /__sim/artifacts` | `{"artifactVersions":[…],"packages":[…]}` ([`ArtifactVersionRecord`], [`PackageRecord`]) |
//! | `POST /__sim/controlled-stages` | `{"stages":["Deploy"]}` or `{"stages":null}` (every stage) |
//! | `POST /__sim/known-pipelines` | `{"pipelines":["https://ci/job/app/"]}`: the job URLs whose stages are known orchestration tasks |
//! | `GET /__sim/tasks` | `{"knownPipelines":[…],"tasks":[…]}` ([`OrchestrationTask`]: created by stepMapping or stage events) |
//! | `GET /__sim/events` | every accepted `POST …/tool/orchestration` body |
//! | `POST /__sim/invalid-steps` | `{"invalid":["app#Deploy"]}`: stepMapping answers `stepValid: false` for these names (or stages) |
//!
//! The change API and OAuth (`change_admin.rs`; CRs as [`ChgChange`], camelCase, with their
//! `workNotes`):
//!
//! | request | effect / answer | [`SimHandle`] |
//! |---|---|---|
//! | `GET /__sim/chg/changes` | every change-API CR, oldest first | `chg_changes()` |
//! | `POST /__sim/chg/changes` | plants a CR: `{"type":"normal","state":"Closed","fields":{"short_description":"…"}}` (approval follows the state) → the CR | `chg_create(fields, type, state)` |
//! | `GET /__sim/chg/changes/{number}` | one CR with its work notes (404 when unknown) | `chg_change(number)` |
//! | `POST /__sim/chg/changes/{number}/state` | `{"state":"Implement","approval":"approved","startDate":"2030-01-01 08:00:00","endDate":"…"}`, each optional; no state-model rules; an empty date clears it → the CR | `chg_set_state(number, state, start, end)`, `chg_set_approval(number, approval)` |
//! | `GET /__sim/chg/changes/{number}/work-notes` | `{"workNotes":[{"at","by","text"}…]}` | `chg_work_notes(number)` |
//! | `POST /__sim/chg/changes/{number}/conflicts` | plants a conflict ([`ChgConflict`]: `{"changeNumber":"CHG0040001","kind":"blackout","kindDisplay":"Blackout","schedule":"Year-end freeze"}`, `schedule` optional) for the CR's next `POST …/change/{sys_id}/conflict` → `{"conflicts":[…],"checks":n}` | `chg_add_conflict(number, conflict)` |
//! | `GET /__sim/chg/changes/{number}/conflicts`, `DELETE …` | `{"conflicts":[…planted…],"checks":n}` (the checks that ran); forget the planted ones (the last check's results stay) | `chg_conflict_checks(number)`, `chg_clear_conflicts(number)` |
//! | `GET /__sim/chg/templates`, `POST /__sim/chg/templates` | list; add `{"name":"…","active":true}` → the template | `chg_templates()`, `chg_add_template(name, active)` |
//! | `POST /__sim/chg/templates/{name or sys_id}` | `{"active":false}`: (de)activate | `chg_set_template_active(name, active)` |
//! | `GET /__sim/chg/roles`, `POST /__sim/chg/roles` | `{"roles":["sn_change_read"]}` | `chg_roles()`, `chg_set_roles(roles)` |
//! | `GET /__sim/chg/oauth` | `{"passwordGrants","refreshGrants","refusedGrants","activeAccessTokens"}` | `oauth_grants()` |
//! | `POST /__sim/chg/oauth/expire-tokens` | every access token expires now | `oauth_expire_tokens()` |
//! | `POST /__sim/chg/oauth/revoke-refresh` | every refresh token issued so far is revoked | `oauth_revoke_refresh()` |
//! | `GET /__sim/attachments` | uploads through `POST /api/now/attachment/file` (`attachments/`), oldest first, without content: `{"attachments":[{"sysId","tableName","tableSysId","fileName","contentType","sizeBytes","sha256"}…]}` | `attachments()` ([`AttachmentRecord`], with the bytes) |
//! | – | every later upload is stored at once and answered only after a delay (a lost answer) | `set_attachment_answer_delay(delay)` |
//! | – | each later conflict check of a CR shows as running for N reads of its status | `chg_keep_conflict_checks_running(number, n)` |
//!
//! `{number}` may be `latest`, the newest CR. Decisions answer
//! `{"number":"CHG0030001","state":"Implement","callbackStatus":200}` (`callbackStatus` is `null`
//! when the callback was dropped or unreachable); an unknown CR is a 404
//! `{"error":{"code":"change_not_found","message":…}}`.
//!
//! For example, after `snowgate demo` opened a gate:
//!
//! ```text
//! curl -s localhost:PORT/__sim/changes
//! curl -s -X POST localhost:PORT/__sim/changes/latest/approve -d '{"comments":"LGTM"}'
//! ```

mod admin;
mod artifacts;
mod attachments;
mod callbacks;
mod change;
mod change_admin;
mod devops;
mod faults;
mod handle;
mod model;
mod oauth;
mod plugin_forms;
mod protocol;
mod recorded;
mod settings;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use actix_web::{web, App, HttpServer};
use anyhow::Context;

pub use artifacts::{ArtifactVersionRecord, BuildDetails, PackageRecord};
pub use attachments::AttachmentRecord;
pub use change::{ChgChange, ChgConflict, ChgTemplate, ChgWorkNote};
pub use faults::Fault;
pub use handle::SimHandle;
pub use model::{CallbackAttempt, ChangeRecord, OrchestrationTask};
pub use recorded::RecordedRequest;
pub use settings::SimSettings;

use model::Model;

/// Largest request body the simulated API reads (ServiceNow's default REST limit is far larger;
/// snowgate never sends more than a few kB).
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Callbacks give up after this long (the brief for the simulator: one client, 10 s).
const CALLBACK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a graceful stop waits for in-flight requests.
const SHUTDOWN_TIMEOUT_SECS: u64 = 2;

/// State shared by the HTTP workers, the handle and background tasks.
pub(crate) struct Shared {
    pub(crate) settings: SimSettings,
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub(crate) base_url: String,
    model: Mutex<Model>,
    /// The change API's CRs, templates and roles (`change/`).
    chg: Mutex<change::ChgModel>,
    /// Issued OAuth tokens and grant counts (`oauth.rs`).
    oauth: Mutex<oauth::OAuthState>,
    /// Uploads through the Attachment API (`attachments/`).
    attachments: Mutex<attachments::AttachmentStore>,
    /// The one client for callbacks.
    pub(crate) client: reqwest::Client,
    /// The runtime `start` ran on: callbacks and timers run there.
    pub(crate) runtime: tokio::runtime::Handle,
}

impl Shared {
    /// Runs `f` with the model locked. Never hold the lock across an `.await`.
    pub(crate) fn with_model<R>(&self, f: impl FnOnce(&mut Model) -> R) -> R {
        let mut model = self.model.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut model)
    }
}

/// The simulator, for callers that prefer a type: `Simulator::start(settings)`.
pub struct Simulator;

impl Simulator {
    pub async fn start(settings: SimSettings) -> anyhow::Result<SimHandle> {
        start(settings).await
    }
}

/// Binds, spawns the actix server on the current tokio runtime and returns once listening.
pub async fn start(settings: SimSettings) -> anyhow::Result<SimHandle> {
    let listener = std::net::TcpListener::bind(settings.bind)
        .with_context(|| format!("binding the ServiceNow simulator to {}", settings.bind))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let host = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let base_url = format!("http://{}", SocketAddr::new(host, addr.port()));
    let client = reqwest::Client::builder()
        .timeout(CALLBACK_TIMEOUT)
        .build()
        .context("building the simulator's callback client")?;
    let mut model = Model::default();
    model.controlled_stages = settings.controlled_stages.clone();
    model.known_pipelines = settings.known_pipelines.clone();
    let chg = change::ChgModel::new(&settings);
    let shared = Arc::new(Shared {
        settings,
        base_url,
        model: Mutex::new(model),
        chg: Mutex::new(chg),
        oauth: Mutex::default(),
        attachments: Mutex::default(),
        client,
        runtime: tokio::runtime::Handle::current(),
    });
    let data = web::Data::from(Arc::clone(&shared));
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
            // Before `admin`: its `/__sim` scope would otherwise answer `/__sim/chg/…` too.
            .configure(change_admin::configure)
            .configure(attachments::configure)
            .configure(admin::configure)
            .configure(change::configure)
            .configure(oauth::configure)
            .default_service(web::to(devops::entry))
    })
    .workers(2)
    .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS)
    .disable_signals()
    .listen(listener)
    .context("starting the ServiceNow simulator")?
    .run();
    let server_handle = server.handle();
    let task = tokio::spawn(server);
    tracing::info!(url = %shared.base_url, "ServiceNow simulator listening");
    Ok(SimHandle {
        shared,
        addr,
        server: server_handle,
        task: Some(task),
    })
}

#[cfg(test)]
mod tests;
