//! Typed settings: a YAML file layered under `SNOWGATE__SECTION__KEY` environment variables
//! (the `config` crate). Secrets are wrapped in [`Secret`] and may be given as `<key>_file`.
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

mod load;
mod problems;

pub use load::{env_name, ConfigError};
pub use problems::check_base_url;

/// A secret string: never printed by `Debug` or `Display`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Secret(String::deserialize(d)?))
    }
}

/// A duration written as `"30s"`, `"5m"`, `"250ms"` or a bare number of seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(u64),
            Float(f64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Secs(s) => Ok(Dur(Duration::from_secs(s))),
            Raw::Float(s) if s >= 0.0 && s.is_finite() => Duration::try_from_secs_f64(s)
                .map(Dur)
                .map_err(|_| serde::de::Error::custom(format!("{s} seconds is too long"))),
            Raw::Float(_) => Err(serde::de::Error::custom("a duration cannot be negative")),
            Raw::Text(t) => parse_duration(&t)
                .map(Dur)
                .map_err(serde::de::Error::custom),
        }
    }
}

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if let Ok(secs) = t.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(t)
        .map_err(|_| format!("`{t}` is not a duration (write e.g. \"30s\", \"5m\" or 30)"))
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub callback: CallbackSettings,
    pub servicenow: ServiceNowSettings,
    /// Only needed to release Jenkins `input` steps.
    pub jenkins: Option<JenkinsSettings>,
    pub change: ChangeSettings,
    pub store: StoreSettings,
    pub auth: AuthSettings,
    pub outbox: OutboxSettings,
    pub log: LogSettings,
    pub ui: UiSettings,
    pub supersede: SupersedeSettings,
    /// Change freezes declared in the configuration (more come through the API).
    pub freezes: Vec<FreezeSettings>,
    pub freeze: FreezePolicy,
}

/// One entry of `freezes`: a blackout window. Times are RFC 3339.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FreezeSettings {
    pub name: String,
    pub start: String,
    pub end: String,
    pub reason: String,
    /// Glob patterns on the full job name; none: every job.
    pub jobs: Vec<String>,
    /// Environments (change mode); none: every environment.
    pub environments: Vec<String>,
}

/// `freeze`: what a freeze does to a gate ServiceNow approves while it is active.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FreezePolicy {
    pub action: FreezeAction,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FreezeAction {
    /// The gate stays pending, the approval recorded, and proceeds when the freeze ends.
    #[default]
    Hold,
    /// The gate is decided `failed` (proceed false), naming the freeze.
    Fail,
}

/// `supersede`: jobs whose newer builds replace older ones still waiting.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SupersedeSettings {
    /// Glob patterns on the full job name (`folder/job`): a gate of such a job is opened as
    /// if its request said `"supersede": true`. Default: none.
    pub jobs: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    pub bind: String,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// How long SIGTERM waits for in-flight requests before exiting.
    pub shutdown_timeout: Dur,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            // Gate requests are a few KiB; 256 KiB leaves room for large changeRequestDetails.
            max_body_bytes: 256 * 1024,
            shutdown_timeout: Dur(Duration::from_secs(10)),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallbackSettings {
    /// What ServiceNow can reach; the callback URL is `<this>sn-devops/pipeline_<uuid>`.
    pub public_base_url: Option<String>,
    pub basic_auth: Option<BasicAuth>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BasicAuth {
    pub user: String,
    pub password: Secret,
    pub password_file: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ServiceNowAuth {
    /// v2 API, `Authorization: sn_devops.DevOpsToken <tool_id>:<token>`.
    Token,
    /// v1 API, Basic user + password.
    Basic,
    /// OAuth 2 password grant (change mode).
    Oauth,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StepMapping {
    /// Do not touch step mappings (the orchestration task must exist in ServiceNow).
    Off,
    /// `GET stepMapping` before registering; an invalid step fails the gate.
    Validate,
    /// `POST stepMapping` before registering (creates the orchestration task).
    Create,
}

/// Whether Jenkins also runs the official ServiceNow DevOps plugin (README "With or without
/// the official plugin").
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OfficialPlugin {
    /// The plugin discovers jobs, creates orchestration tasks and sends run and stage events;
    /// the shim replaces only its change-control steps.
    Installed,
    /// snowgate alone: it creates the orchestration task (`step_mapping: create`).
    #[default]
    Absent,
}

/// What a registration answered with anything but `changeControl: "true"` means.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NotControlled {
    /// As the official plugin: the stage does not proceed (`failed`), unless `ignoreErrors`.
    #[default]
    Fail,
    /// The stage proceeds ungated (`not_controlled`).
    Proceed,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum GateMode {
    /// ServiceNow DevOps change control: register the stage, wait for the callback.
    #[default]
    Devops,
    /// Change Management API (sn_chg_rest): snowgate finds or creates the CR and polls it.
    Change,
}

impl GateMode {
    pub fn as_str(self) -> &'static str {
        match self {
            GateMode::Devops => "devops",
            GateMode::Change => "change",
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AutoTransition {
    Review,
    Closed,
}

/// Change mode (README "Change mode"): which jobs and environments are change-controlled, how CRs are
/// titled and filled, and what snowgate writes back.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChangeSettings {
    /// Glob patterns on the full job name (`folder/job`); default: every job.
    pub jobs: Vec<String>,
    /// Glob patterns (case-insensitive) on the gate's `environment`; default: none, so no
    /// change-mode gate is controlled until environments are listed.
    pub environments: Vec<String>,
    pub title_template: String,
    /// Name of an active standard change template: CRs are then created from it.
    pub standard_template: Option<String>,
    /// Extra CR fields; `{job}` `{buildNumber}` `{environment}` `{gateId}` `{buildUrl}` expand.
    pub fields: std::collections::BTreeMap<String, String>,
    /// Write work notes on the CR when the gate is linked, decided and completed.
    pub work_notes: bool,
    /// With a standard template: move new CRs to Implement, and after `complete` to this state.
    pub auto_transition: Option<AutoTransition>,
    /// Cancel the still-open CR snowgate created for a gate that a newer build superseded.
    pub cancel_superseded: bool,
    /// ServiceNow's conflict detection before a CR in Implement approves its gate.
    pub conflicts: ConflictPolicy,
}

/// `change.conflicts`: what ServiceNow's conflict check means for a gate whose CR is approved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConflictPolicy {
    /// No check: an approved CR in its window approves the gate.
    #[default]
    Ignore,
    /// The gate stays pending while ServiceNow reports conflicts; checked again at each poll.
    Wait,
    /// Conflicts fail the gate, naming the conflicting changes and blackout schedules.
    Fail,
}

pub const DEFAULT_TITLE_TEMPLATE: &str =
    "Jenkins: Deploy \"{job}\" build {buildNumber} to \"{environment}\"";

impl Default for ChangeSettings {
    fn default() -> Self {
        Self {
            jobs: vec!["*".into()],
            environments: Vec::new(),
            title_template: DEFAULT_TITLE_TEMPLATE.into(),
            standard_template: None,
            fields: Default::default(),
            work_notes: false,
            auto_transition: None,
            cancel_superseded: false,
            conflicts: ConflictPolicy::Ignore,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceNowSettings {
    pub instance_url: String,
    pub tool_id: String,
    pub auth: ServiceNowAuth,
    pub token: Secret,
    pub token_file: Option<PathBuf>,
    pub user: String,
    pub password: Secret,
    pub password_file: Option<PathBuf>,
    pub client_id: String,
    pub client_secret: Secret,
    pub client_secret_file: Option<PathBuf>,
    pub timeout: Dur,
    pub connect_timeout: Dur,
    pub poll_interval: Dur,
    pub max_requests_per_second: u32,
    pub default_mode: GateMode,
    /// Whether the official ServiceNow DevOps plugin runs in Jenkins beside the shim (it then
    /// creates the orchestration tasks and sends the stage events itself).
    pub official_plugin: OfficialPlugin,
    /// `None`: `create` without the official plugin, `off` with it (see [`Self::step_mapping`]).
    pub step_mapping: Option<StepMapping>,
    /// Send the stage's STARTED event before registering and COMPLETED at `/complete`
    /// (`POST …/devops/tool/orchestration`), as the plugin does for tracked runs.
    pub stage_events: bool,
    /// A stage ServiceNow does not hold under change control: `fail` (default) or `proceed`.
    pub not_controlled: NotControlled,
    pub proxy: Option<String>,
    pub ca_file: Option<PathBuf>,
    /// How long a registration is retried on transient errors before the gate fails.
    pub register_give_up_after: Dur,
}

impl ServiceNowSettings {
    /// `step_mapping` as configured, else `create` without the official plugin (someone must
    /// create the orchestration task, or ServiceNow answers "not under change control") and
    /// `off` with it (the plugin's discovery and stage events create it).
    pub fn step_mapping(&self) -> StepMapping {
        self.step_mapping.unwrap_or(match self.official_plugin {
            OfficialPlugin::Installed => StepMapping::Off,
            OfficialPlugin::Absent => StepMapping::Create,
        })
    }
}

impl Default for ServiceNowSettings {
    fn default() -> Self {
        Self {
            instance_url: String::new(),
            tool_id: String::new(),
            auth: ServiceNowAuth::Token,
            token: Secret::default(),
            token_file: None,
            user: String::new(),
            password: Secret::default(),
            password_file: None,
            client_id: String::new(),
            client_secret: Secret::default(),
            client_secret_file: None,
            timeout: Dur(Duration::from_secs(30)),
            connect_timeout: Dur(Duration::from_secs(5)),
            poll_interval: Dur(Duration::from_secs(60)),
            max_requests_per_second: 20,
            default_mode: GateMode::Devops,
            official_plugin: OfficialPlugin::Absent,
            step_mapping: None,
            stage_events: false,
            not_controlled: NotControlled::Fail,
            proxy: None,
            ca_file: None,
            register_give_up_after: Dur(Duration::from_secs(3600)),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JenkinsSettings {
    /// The Jenkins base URL snowgate can reach, ending with `/`.
    pub url: String,
    /// Other bases Jenkins is known as (e.g. the public URL in `BUILD_URL`); build URLs under
    /// them are rewritten onto `url`. Build URLs under none of them are refused.
    pub allowed_urls: Vec<String>,
    pub user: String,
    pub api_token: Secret,
    pub api_token_file: Option<PathBuf>,
    pub timeout: Dur,
    /// When set, an approved input is answered with `/proceed`, passing the CR number in the
    /// input parameter of this name (the input must declare it).
    pub change_parameter: Option<String>,
    /// Likewise for who approved (ServiceNow approvers, or the operator).
    pub approver_parameter: Option<String>,
}

impl Default for JenkinsSettings {
    fn default() -> Self {
        Self {
            url: String::new(),
            allowed_urls: Vec::new(),
            user: String::new(),
            api_token: Secret::default(),
            api_token_file: None,
            timeout: Dur(Duration::from_secs(30)),
            change_parameter: None,
            approver_parameter: None,
        }
    }
}

#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSettings {
    /// `sqlite://<path>` (default) or `postgres://user[:password]@host:port/db`.
    pub url: String,
    /// PostgreSQL: the password, when not in the URL.
    pub password: Secret,
    pub password_file: Option<PathBuf>,
    /// PostgreSQL: connections per replica.
    pub pool_size: usize,
    /// PostgreSQL: how soon another replica takes over a dead replica's claimed work.
    pub lease_ttl: Dur,
    pub connect_timeout: Dur,
    pub statement_timeout: Dur,
    /// The longest any request or worker waits for the store; past it the request answers
    /// 503 (a hung database never hangs snowgate).
    pub timeout: Dur,
    /// PostgreSQL: the CA certificate(s) of the server (PEM), for `sslmode` verify-ca or
    /// verify-full in `store.url`.
    pub ca_file: Option<PathBuf>,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            url: "sqlite://snowgate.db".into(),
            password: Secret::default(),
            password_file: None,
            pool_size: 16,
            lease_ttl: Dur(Duration::from_secs(15)),
            connect_timeout: Dur(Duration::from_secs(5)),
            // Within `timeout`: the server gives up on a statement no later than we do.
            statement_timeout: Dur(Duration::from_secs(5)),
            timeout: Dur(Duration::from_secs(5)),
            ca_file: None,
        }
    }
}

impl fmt::Debug for StoreSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreSettings")
            .field("url", &redact_url_password(&self.url))
            .field("pool_size", &self.pool_size)
            .field("lease_ttl", &self.lease_ttl)
            .field("timeout", &self.timeout)
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:[redacted]@host/db`.
pub fn redact_url_password(u: &str) -> String {
    match url::Url::parse(u) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("[redacted]"));
            parsed.to_string()
        }
        _ => u.to_string(),
    }
}

/// Which store `store.url` names.
pub enum Backend {
    Sqlite(PathBuf),
    Postgres(String),
}

impl StoreSettings {
    pub fn backend(&self) -> Result<Backend, String> {
        if let Some(p) = self.url.strip_prefix("sqlite://") {
            if p.is_empty() {
                return Err("`sqlite://` needs a file path, e.g. sqlite://snowgate.db".into());
            }
            return Ok(Backend::Sqlite(PathBuf::from(p)));
        }
        if self.url.starts_with("postgres://") || self.url.starts_with("postgresql://") {
            return Ok(Backend::Postgres(self.url.clone()));
        }
        Err(format!(
            "`{}` is not a supported store URL (sqlite://<path> or postgres://user@host:port/db)",
            redact_url_password(&self.url)
        ))
    }

    /// The SQLite file named by `sqlite://<path>`.
    pub fn sqlite_path(&self) -> Result<PathBuf, String> {
        match self.backend()? {
            Backend::Sqlite(p) => Ok(p),
            Backend::Postgres(_) => {
                Err("store.url names a PostgreSQL database, not a SQLite file".into())
            }
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    pub disabled: bool,
    pub pipeline_tokens: Vec<NamedToken>,
    pub operator_tokens: Vec<NamedToken>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedToken {
    pub name: String,
    #[serde(default)]
    pub token: Secret,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

/// Retry schedule of the outbox (registrations, acknowledgements).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboxSettings {
    pub initial_backoff: Dur,
    pub max_backoff: Dur,
    /// Attempts after which an action is given up and recorded as failed.
    pub max_attempts: u32,
}

impl Default for OutboxSettings {
    fn default() -> Self {
        Self {
            initial_backoff: Dur(Duration::from_secs(1)),
            max_backoff: Dur(Duration::from_secs(300)),
            max_attempts: 50,
        }
    }
}

/// The status page at `/ui`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UiSettings {
    /// How long a login lasts, on the server and as the cookie's Max-Age.
    pub session_ttl: Dur,
}

impl Default for UiSettings {
    fn default() -> Self {
        Self {
            // A working day: long enough not to interrupt a shift, short enough that a
            // forgotten browser does not stay logged in for good.
            session_ttl: Dur(Duration::from_secs(8 * 3600)),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `snowgate=debug,actix_web=info`.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

#[cfg(test)]
mod tests;
