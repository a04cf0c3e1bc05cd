//! The ServiceNow DevOps simulator: the test double behind every snowgate test and the server
//! behind `snowgate sim` and `snowgate demo`.
//!
//! It serves the sn_devops orchestration API of seed `001_ca31e58e1be9e25d.txt` under
//! `/api/sn_devops/devops/…`, `/api/sn_devops/v1/devops/…` and `/api/sn_devops/v2/devops/…`
//! (`changeControl` GET/POST/PUT, `stepMapping` GET/POST, `changeInfo` GET/PUT, `callback` GET,
//! `POST …/devops/tool/{capability}` (stage events), and `POST …/devops/artifact/registration`
//! and `…/devops/package/registration`), exactly as strict as the seed: `{"result": …}`
//! wrappers, status codes, Basic auth (any version) or `sn_devops.DevOpsToken <tool_id>:<token>`
//! (v2 only), `Accept`, `Content-Type`, `toolId` and required fields. See `devops.rs` for the
//! order of the checks.
//!
//! It accepts only what the official Jenkins plugin (6.2.0) sends (`plugin_forms.rs`): the
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
//! It also serves the Change Management API of SPEC §6 and seed `000_54d60dabfc9e1606.txt`
//! (`change.rs`: `GET /api/sn_chg_rest/change` with `sysparm_query`, `GET …/change/{sys_id}`,
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
//! | `GET /__sim/chg/templates`, `POST /__sim/chg/templates` | list; add `{"name":"…","active":true}` → the template | `chg_templates()`, `chg_add_template(name, active)` |
//! | `POST /__sim/chg/templates/{name or sys_id}` | `{"active":false}`: (de)activate | `chg_set_template_active(name, active)` |
//! | `GET /__sim/chg/roles`, `POST /__sim/chg/roles` | `{"roles":["sn_change_read"]}` | `chg_roles()`, `chg_set_roles(roles)` |
//! | `GET /__sim/chg/oauth` | `{"passwordGrants","refreshGrants","refusedGrants","activeAccessTokens"}` | `oauth_grants()` |
//! | `POST /__sim/chg/oauth/expire-tokens` | every access token expires now | `oauth_expire_tokens()` |
//! | `POST /__sim/chg/oauth/revoke-refresh` | every refresh token issued so far is revoked | `oauth_revoke_refresh()` |
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
mod callbacks;
mod change;
mod change_admin;
mod devops;
mod faults;
mod model;
mod oauth;
mod plugin_forms;
mod protocol;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpServer};
use anyhow::Context;
use serde::{Deserialize, Serialize};

pub use artifacts::{ArtifactVersionRecord, BuildDetails, PackageRecord};
pub use change::{ChgChange, ChgTemplate, ChgWorkNote};
pub use model::{CallbackAttempt, ChangeRecord, OrchestrationTask};

use model::{Decision, Model};

/// Largest request body the simulated API reads (ServiceNow's default REST limit is far larger;
/// snowgate never sends more than a few kB).
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Callbacks give up after this long (the brief for the simulator: one client, 10 s).
const CALLBACK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a graceful stop waits for in-flight requests.
const SHUTDOWN_TIMEOUT_SECS: u64 = 2;

/// How a simulator behaves.
#[derive(Clone)]
pub struct SimSettings {
    /// Where to listen; port 0 picks a free port (tests).
    pub bind: SocketAddr,
    /// The only `toolId` accepted.
    pub tool_id: String,
    /// Basic-auth credentials accepted on v1, v2 and unversioned paths.
    pub user: String,
    pub password: String,
    /// The v2 token: `Authorization: sn_devops.DevOpsToken <tool_id>:<token>` (only on `/v2/`).
    pub token: String,
    /// `None`: every stage is under change control; `Some(list)`: only these stage names.
    /// Only stages whose orchestration task the instance knows can be (see `known_pipelines`).
    pub controlled_stages: Option<Vec<String>>,
    /// Job URLs, exactly as Jenkins renders them with their trailing `/`
    /// (`https://ci.example.com/job/shop/job/app/`), whose stages ServiceNow already knows as
    /// orchestration tasks, as if the plugin's discovery had imported them. Any other stage
    /// needs its task created first, by `POST …/orchestration/stepMapping` or a STARTED stage
    /// event (`POST …/tool/orchestration`); until then a registration answers
    /// `changeControl: false` with a `message` (seed, POST changeControl: "Before you call this
    /// endpoint, you must have an orchestration task created in your ServiceNow instance").
    pub known_pipelines: Vec<String>,
    /// Demo: approve each new CR after this delay.
    pub auto_approve_after: Option<Duration>,
    /// After creating a CR, POST the "created" notice to its callback URL.
    pub send_notice: bool,
    /// When set, callbacks carry Basic auth with these credentials.
    pub callback_user: Option<String>,
    pub callback_password: Option<String>,
    /// changeInfo answers `state` as values (`"-5"`, …) instead of names.
    pub numeric_states: bool,
    /// The one artifact tool (`toolId` of artifact and package registration) the instance knows.
    pub artifact_tool_id: String,
    /// Change API: the roles of the account (`user`, and whoever holds its OAuth tokens).
    pub chg_roles: Vec<String>,
    /// Change API: the standard change templates at start, as (name, active).
    pub chg_templates: Vec<(String, bool)>,
    /// Change API: creates answer `{"result":[{…}]}` instead of `{"result":{…}}` (SPEC §6:
    /// clients accept both).
    pub chg_create_as_array: bool,
    /// Change API: `state` values as numbers (`-5`) and `active` as a boolean (SPEC §6: a
    /// `value` may be a string or a number).
    pub chg_numeric_values: bool,
    /// Change API: `sys_id` as a plain string instead of a `{"value","display_value"}` object.
    pub chg_plain_sys_id: bool,
    /// OAuth (`/oauth_token.do`): the client credentials accepted.
    pub oauth_client_id: String,
    pub oauth_client_secret: String,
    /// OAuth: access-token lifetime (`expires_in`, whole seconds rounded up).
    pub oauth_token_lifetime: Duration,
    /// OAuth: refresh answers omit `refresh_token` (the client keeps the old one).
    pub oauth_refresh_omits_token: bool,
}

impl Default for SimSettings {
    fn default() -> Self {
        SimSettings {
            bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            tool_id: "1c219f7e8708f1508ca933383cbb3543".to_string(),
            user: "admin".to_string(),
            password: "admin-password".to_string(),
            token: "sim-devops-token".to_string(),
            controlled_stages: None,
            known_pipelines: default_known_pipelines(),
            auto_approve_after: None,
            send_notice: true,
            callback_user: None,
            callback_password: None,
            numeric_states: false,
            // The seed's example artifact tool.
            artifact_tool_id: "391b4ff6dba24010bc8cdd384b96198f".to_string(),
            // The seed's web-service-only account: exactly these two roles.
            chg_roles: vec!["sn_change_read".to_string(), "sn_change_write".to_string()],
            chg_templates: vec![("Jenkins deployment".to_string(), true)],
            chg_create_as_array: false,
            chg_numeric_values: false,
            chg_plain_sys_id: false,
            oauth_client_id: "sim-oauth-client".to_string(),
            oauth_client_secret: "sim-oauth-secret".to_string(),
            // ServiceNow's default access-token lifespan.
            oauth_token_lifetime: Duration::from_secs(1800),
            oauth_refresh_omits_token: false,
        }
    }
}

/// The jobs of snowgate's own tests, demo and benchmark, whose stages a default simulator knows.
fn default_known_pipelines() -> Vec<String> {
    [
        // tests/api (helpers::gate_body and scenarios) and `snowgate gates` examples.
        "https://ci.example.com/job/shop/job/app/",
        "https://ci.example.com/job/app/",
        "https://ci.example.com/job/mb/job/feature%252Fx/",
        "https://ci.example.com/job/my%20app/",
        "https://ci.example.com/job/spring-boot-app/",
        // The simulator's own tests.
        "https://ci.example.com/job/folder/job/app/",
        // `snowgate demo`.
        "http://jenkins.example.com/job/shop/job/deploy-app/",
        // `snowgate bench`.
        "http://jenkins.bench/job/app/",
    ]
    .into_iter()
    .map(str::to_string)
    .collect()
}

impl fmt::Debug for SimSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimSettings")
            .field("bind", &self.bind)
            .field("tool_id", &self.tool_id)
            .field("user", &self.user)
            .field("password", &"[redacted]")
            .field("token", &"[redacted]")
            .field("controlled_stages", &self.controlled_stages)
            .field("known_pipelines", &self.known_pipelines)
            .field("auto_approve_after", &self.auto_approve_after)
            .field("send_notice", &self.send_notice)
            .field("callback_user", &self.callback_user)
            .field(
                "callback_password",
                &self.callback_password.as_ref().map(|_| "[redacted]"),
            )
            .field("numeric_states", &self.numeric_states)
            .field("artifact_tool_id", &self.artifact_tool_id)
            .field("chg_roles", &self.chg_roles)
            .field("chg_templates", &self.chg_templates)
            .field("chg_create_as_array", &self.chg_create_as_array)
            .field("chg_numeric_values", &self.chg_numeric_values)
            .field("chg_plain_sys_id", &self.chg_plain_sys_id)
            .field("oauth_client_id", &self.oauth_client_id)
            .field("oauth_client_secret", &"[redacted]")
            .field("oauth_token_lifetime", &self.oauth_token_lifetime)
            .field("oauth_refresh_omits_token", &self.oauth_refresh_omits_token)
            .finish()
    }
}

/// One request the simulated API received.
#[derive(Clone, Debug, Serialize)]
pub struct RecordedRequest {
    pub method: String,
    /// The raw path, still percent-encoded.
    pub path: String,
    /// The raw query string, as received.
    pub query: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RecordedRequest {
    fn capture(req: &HttpRequest, body: &[u8]) -> RecordedRequest {
        RecordedRequest {
            method: req.method().to_string(),
            path: req.path().to_string(),
            query: req.query_string().to_string(),
            headers: req
                .headers()
                .iter()
                .map(|(name, value)| {
                    (
                        name.as_str().to_ascii_lowercase(),
                        String::from_utf8_lossy(value.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: String::from_utf8_lossy(body).into_owned(),
        }
    }

    /// The first value of a header (name in any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The query pairs, percent-decoded once (`+` as space).
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        protocol::query_pairs(&self.query)
    }

    /// The body as JSON, if it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.body).ok()
    }
}

/// A fault to inject: the next `fail_next` calls of `endpoint` answer `status` with a
/// ServiceNow error body, after `latency_ms`. With `fail_next == 0`, `latency_ms` is added to
/// every call of the endpoint until another fault for the same key replaces it (a fault with
/// neither failures nor latency clears the key).
///
/// Endpoint keys: `changeControl.get`, `changeControl.post`, `changeControl.put`,
/// `stepMapping.get`, `stepMapping.post`, `changeInfo.get`, `changeInfo.put`, `callback.get`,
/// `artifactRegistration.post`, `packageRegistration.post`,
/// `change.get` (list and one CR), `change.post` (every create), `change.patch`,
/// `change.template`, `oauth` (`/oauth_token.do`),
/// and `*` for any endpoint (used after an endpoint's own fault). `status` should be 400–599:
/// on sn_devops 400 and 404 use the sn_devops error shape; 401 is the authentication failure;
/// everything else `{"error":{"message","detail"},"status":"failure"}` (429 adds `Retry-After: 1`).
///
/// As JSON (admin API) the fields are camelCase (`failNext`, `latencyMs`; snake_case is accepted
/// too); `failNext` defaults to 1, `status` to 500, `latencyMs` to 0.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Fault {
    pub endpoint: String,
    #[serde(default = "one", alias = "fail_next")]
    pub fail_next: u32,
    #[serde(default = "internal_server_error")]
    pub status: u16,
    #[serde(default, alias = "latency_ms")]
    pub latency_ms: u64,
}

fn one() -> u32 {
    1
}

fn internal_server_error() -> u16 {
    500
}

/// State shared by the HTTP workers, the handle and background tasks.
pub(crate) struct Shared {
    pub(crate) settings: SimSettings,
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub(crate) base_url: String,
    model: Mutex<Model>,
    /// The change API's CRs, templates and roles (`change.rs`).
    chg: Mutex<change::ChgModel>,
    /// Issued OAuth tokens and grant counts (`oauth.rs`).
    oauth: Mutex<oauth::OAuthState>,
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

/// A running simulator. Dropping it stops the server (not gracefully); prefer [`SimHandle::stop`].
pub struct SimHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: actix_web::dev::ServerHandle,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
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
    /// [`SimSettings::known_pipelines`]).
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

#[cfg(test)]
mod change_tests;
#[cfg(test)]
mod strict_tests;
#[cfg(test)]
mod tests;
