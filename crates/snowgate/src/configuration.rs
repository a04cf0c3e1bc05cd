//! Typed settings: a YAML file layered under `SNOWGATE__SECTION__KEY` environment variables
//! (the `config` crate). Secrets are wrapped in [`Secret`] and may be given as `<key>_file`.
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

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

/// A configuration problem, naming the key and its environment-variable form.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

/// `servicenow.token` → `SNOWGATE__SERVICENOW__TOKEN`.
pub fn env_name(key: &str) -> String {
    format!("SNOWGATE__{}", key.replace('.', "__").to_uppercase())
}

fn key_problem(key: &str, problem: &str) -> String {
    format!("{key} ({}) {problem}", env_name(key))
}

impl Settings {
    /// Load `file` (optional) and the `SNOWGATE__*` environment, resolve `*_file` secrets.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        let mut builder = config::Config::builder();
        if let Some(f) = file {
            if !f.exists() {
                return Err(ConfigError(format!(
                    "the file {} does not exist",
                    f.display()
                )));
            }
            if let Ok(text) = std::fs::read_to_string(f) {
                check_yaml_keys(&text)?;
            }
            builder = builder.add_source(config::File::from(f).format(config::FileFormat::Yaml));
        }
        builder = builder.add_source(
            config::Environment::with_prefix("SNOWGATE")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true),
        );
        let mut settings = Self::from_builder(builder)?;
        settings.resolve_secret_files()?;
        Ok(settings)
    }

    /// The settings that YAML `text` alone gives, read as `load` reads its file, but without
    /// the `SNOWGATE__*` environment and without reading `*_file` secrets (their paths are
    /// kept): a check of configuration text that touches nothing else (the fuzz target).
    pub fn from_yaml_str(text: &str) -> Result<Settings, ConfigError> {
        check_yaml_keys(text)?;
        Self::from_builder(
            config::Config::builder()
                .add_source(config::File::from_str(text, config::FileFormat::Yaml)),
        )
    }

    fn from_builder(
        builder: config::ConfigBuilder<config::builder::DefaultState>,
    ) -> Result<Settings, ConfigError> {
        builder
            .build()
            .and_then(config::Config::try_deserialize)
            .map_err(|e| ConfigError(describe_config_error(&e)))
    }

    fn resolve_secret_files(&mut self) -> Result<(), ConfigError> {
        fn read(key: &str, file: &Option<PathBuf>, target: &mut Secret) -> Result<(), ConfigError> {
            if let Some(path) = file {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ConfigError(key_problem(
                        &format!("{key}_file"),
                        &format!("names {} which cannot be read: {e}", path.display()),
                    ))
                })?;
                *target = Secret::new(text.trim().to_string());
            }
            Ok(())
        }
        let sn = &mut self.servicenow;
        read("servicenow.token", &sn.token_file, &mut sn.token)?;
        read("servicenow.password", &sn.password_file, &mut sn.password)?;
        read(
            "servicenow.client_secret",
            &sn.client_secret_file,
            &mut sn.client_secret,
        )?;
        if let Some(j) = &mut self.jenkins {
            read("jenkins.api_token", &j.api_token_file, &mut j.api_token)?;
        }
        read(
            "store.password",
            &self.store.password_file,
            &mut self.store.password,
        )?;
        if let Some(b) = &mut self.callback.basic_auth {
            read(
                "callback.basic_auth.password",
                &b.password_file,
                &mut b.password,
            )?;
        }
        for t in self
            .auth
            .pipeline_tokens
            .iter_mut()
            .chain(self.auth.operator_tokens.iter_mut())
        {
            read("auth.*_tokens[].token", &t.token_file, &mut t.token)?;
        }
        Ok(())
    }

    /// Every problem that stops `serve`, each naming its key and environment variable.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.servicenow_problems(&mut out);
        self.change_problems(&mut out);
        self.callback_problems(&mut out);
        self.jenkins_problems(&mut out);
        self.store_problems(&mut out);
        self.auth_problems(&mut out);
        self.server_problems(&mut out);
        out
    }

    /// `servicenow.*`: where the instance is and how snowgate signs in.
    fn servicenow_problems(&self, out: &mut Vec<String>) {
        let sn = &self.servicenow;
        if sn.instance_url.is_empty() {
            out.push(key_problem("servicenow.instance_url", "is missing"));
        } else if url::Url::parse(&sn.instance_url)
            .map(|u| !matches!(u.scheme(), "http" | "https"))
            .unwrap_or(true)
        {
            out.push(key_problem(
                "servicenow.instance_url",
                "must be an http(s) URL such as https://example.service-now.com",
            ));
        }
        if sn.tool_id.is_empty() {
            out.push(key_problem(
                "servicenow.tool_id",
                "is missing (the sys_id of the Jenkins tool record)",
            ));
        }
        match sn.auth {
            ServiceNowAuth::Token if sn.token.is_empty() => out.push(key_problem(
                "servicenow.token",
                "is missing (auth: token needs the tool's DevOps token)",
            )),
            ServiceNowAuth::Basic | ServiceNowAuth::Oauth => {
                if sn.user.is_empty() {
                    out.push(key_problem("servicenow.user", "is missing"));
                }
                if sn.password.is_empty() {
                    out.push(key_problem("servicenow.password", "is missing"));
                }
                if sn.auth == ServiceNowAuth::Oauth {
                    if sn.client_id.is_empty() {
                        out.push(key_problem(
                            "servicenow.client_id",
                            "is missing (auth: oauth)",
                        ));
                    }
                    if sn.client_secret.is_empty() {
                        out.push(key_problem(
                            "servicenow.client_secret",
                            "is missing (auth: oauth)",
                        ));
                    }
                }
            }
            _ => {}
        }
        if sn.default_mode == GateMode::Change && sn.auth == ServiceNowAuth::Token {
            out.push(key_problem(
                "servicenow.auth",
                "is `token`, which only the DevOps API accepts; change mode (default_mode: change) needs `basic` or `oauth`",
            ));
        }
        if sn.max_requests_per_second == 0 {
            out.push(key_problem(
                "servicenow.max_requests_per_second",
                "must be at least 1",
            ));
        }
    }

    /// `change.*`: the change-mode patterns and policies.
    fn change_problems(&self, out: &mut Vec<String>) {
        for (i, p) in self
            .change
            .jobs
            .iter()
            .chain(self.change.environments.iter())
            .enumerate()
        {
            if globset::Glob::new(p).is_err() {
                out.push(format!(
                    "change.jobs/environments entry {i} `{p}` is not a valid glob pattern"
                ));
            }
        }
        if self.change.auto_transition.is_some() && self.change.standard_template.is_none() {
            out.push(key_problem(
                "change.auto_transition",
                "needs change.standard_template: only pre-approved standard changes are moved by snowgate",
            ));
        }
    }

    /// `callback.*`: the URL ServiceNow calls back on, and its credentials.
    fn callback_problems(&self, out: &mut Vec<String>) {
        match &self.callback.public_base_url {
            None => out.push(key_problem(
                "callback.public_base_url",
                "is missing (the URL ServiceNow uses to reach snowgate, ending with /)",
            )),
            Some(u) => {
                if let Err(p) = check_base_url(u) {
                    out.push(key_problem("callback.public_base_url", &p));
                }
            }
        }
        if let Some(b) = &self.callback.basic_auth {
            if b.user.is_empty() || b.password.is_empty() {
                out.push(key_problem(
                    "callback.basic_auth",
                    "needs both user and password",
                ));
            }
        }
    }

    /// `jenkins.*`: the Jenkins that `input` steps are answered on.
    fn jenkins_problems(&self, out: &mut Vec<String>) {
        if let Some(j) = &self.jenkins {
            if let Err(p) = check_base_url(&j.url) {
                out.push(key_problem("jenkins.url", &p));
            }
            for (i, u) in j.allowed_urls.iter().enumerate() {
                if let Err(p) = check_base_url(u) {
                    out.push(key_problem(&format!("jenkins.allowed_urls.{i}"), &p));
                }
            }
            if j.user.is_empty() {
                out.push(key_problem("jenkins.user", "is missing"));
            }
            if j.api_token.is_empty() {
                out.push(key_problem(
                    "jenkins.api_token",
                    "is missing (a Jenkins API token of jenkins.user)",
                ));
            }
        }
    }

    /// `store.*`: the database URL and its options.
    fn store_problems(&self, out: &mut Vec<String>) {
        match self.store.backend() {
            Err(p) => out.push(key_problem("store.url", &p)),
            Ok(Backend::Postgres(url)) => {
                if let Err(p) = crate::store::split_sslmode(&url) {
                    out.push(key_problem("store.url", &p));
                }
                if let Some(ca) = &self.store.ca_file {
                    if !ca.is_file() {
                        out.push(key_problem(
                            "store.ca_file",
                            &format!("{} is not a readable file", ca.display()),
                        ));
                    }
                }
            }
            Ok(Backend::Sqlite(_)) => {}
        }
        if self.store.timeout.0.is_zero() {
            out.push(key_problem("store.timeout", "must be more than 0"));
        }
    }

    /// `auth.*`: the API tokens.
    fn auth_problems(&self, out: &mut Vec<String>) {
        if !self.auth.disabled
            && self.auth.pipeline_tokens.is_empty()
            && self.auth.operator_tokens.is_empty()
        {
            out.push(format!(
                "{} and {} are empty: set tokens, or `auth.disabled: true` ({}) to run without authentication",
                key_problem("auth.pipeline_tokens", ""),
                key_problem("auth.operator_tokens", ""),
                env_name("auth.disabled")
            ));
        }
        for t in self
            .auth
            .pipeline_tokens
            .iter()
            .chain(self.auth.operator_tokens.iter())
        {
            if t.token.expose().len() < 16 {
                out.push(format!(
                    "auth token `{}` is shorter than 16 characters; use a long random token",
                    t.name
                ));
            }
        }
        if self.ui.session_ttl.0 < Duration::from_secs(1) {
            out.push(key_problem(
                "ui.session_ttl",
                "must be at least 1s (the session cookie's Max-Age counts whole seconds)",
            ));
        }
    }

    /// `server.*`: where the API listens (and whether running without auth is safe there).
    fn server_problems(&self, out: &mut Vec<String>) {
        match self.server.bind.parse::<std::net::SocketAddr>() {
            Err(_) => out.push(key_problem(
                "server.bind",
                "must be an address such as 127.0.0.1:8080",
            )),
            Ok(addr) if self.auth.disabled && !addr.ip().is_loopback() => out.push(key_problem(
                "auth.disabled",
                &format!("is accepted only on a loopback server.bind (127.0.0.1 or ::1), not {addr}: anyone who reaches the port could release production stages"),
            )),
            Ok(_) => {}
        }
    }
}

/// The callback base must be an absolute http(s) URL ending with `/` (the path is appended).
pub fn check_base_url(u: &str) -> Result<(), String> {
    let parsed = url::Url::parse(u).map_err(|e| format!("`{u}` is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("`{u}` must be an http or https URL"));
    }
    if !u.ends_with('/') {
        return Err(format!("`{u}` must end with `/`"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(format!("`{u}` must not carry a query or fragment"));
    }
    Ok(())
}

/// The config crate (0.14) panics on a YAML mapping key that is neither a string nor an
/// integer (an `unreachable!` in its YAML reader, rust-cli/config-rs issue 547; found by the
/// config_yaml fuzz target). Every snowgate key is a name, so such a key is refused first.
fn check_yaml_keys(text: &str) -> Result<(), ConfigError> {
    use yaml_rust2::Yaml;
    fn walk(v: &Yaml) -> Result<(), ConfigError> {
        match v {
            Yaml::Hash(h) => h.iter().try_for_each(|(k, v)| {
                let what = match k {
                    Yaml::String(_) | Yaml::Integer(_) => return walk(v),
                    Yaml::Null => "empty".to_string(),
                    Yaml::Boolean(b) => format!("`{b}`"),
                    Yaml::Real(r) => format!("`{r}`"),
                    Yaml::Array(_) => "a list".to_string(),
                    Yaml::Hash(_) => "a mapping".to_string(),
                    Yaml::Alias(_) | Yaml::BadValue => "not a name".to_string(),
                };
                Err(ConfigError(format!(
                    "a YAML key is {what}; keys are names such as `servicenow`"
                )))
            }),
            Yaml::Array(a) => a.iter().try_for_each(walk),
            _ => Ok(()),
        }
    }
    // A syntax error is left to the config crate, which reports it with its position.
    match yaml_rust2::YamlLoader::load_from_str(text) {
        Ok(docs) => docs.iter().try_for_each(walk),
        Err(_) => Ok(()),
    }
}

fn describe_config_error(e: &config::ConfigError) -> String {
    let text = e.to_string();
    // The config crate names the key as `for key "servicenow.timeout"`; add its env form.
    if let Some(start) = text.find("for key `").or_else(|| text.find("for key \"")) {
        let rest = &text[start + 9..];
        if let Some(end) = rest.find(['`', '"']) {
            let key = &rest[..end];
            return format!("{text} (environment variable {})", env_name(key));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_units_and_bare_seconds() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("12").unwrap(), Duration::from_secs(12));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn a_duration_too_long_for_duration_is_refused_not_a_panic() {
        // Found by the config_yaml fuzz target: Duration::from_secs_f64 panics past u64 seconds.
        let err = Settings::from_yaml_str("outbox:\n  max_backoff: 1.0e300\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("too long"), "{err}");
        let s = Settings::from_yaml_str("outbox:\n  max_backoff: 2.5\n").unwrap();
        assert_eq!(s.outbox.max_backoff.0, Duration::from_millis(2500));
    }

    #[test]
    fn a_yaml_key_that_is_not_a_name_is_refused_not_a_panic() {
        // Found by the config_yaml fuzz target (`servicenow:\n : x\n` panicked in config).
        for text in [
            "servicenow:\n : x\n",
            "true: x\n",
            "servicenow:\n  1.5: x\n",
            "auth:\n  pipeline_tokens:\n    - {[a]: b}\n",
        ] {
            let err = Settings::from_yaml_str(text).unwrap_err().to_string();
            assert!(err.contains("a YAML key is"), "{text:?}: {err}");
        }
        let dir = std::env::temp_dir().join(format!("snowgate-cfg-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad-key.yaml");
        std::fs::write(&path, "servicenow:\n : x\n").unwrap();
        let err = Settings::load(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("a YAML key is empty"), "{err}");
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2-hunter2");
        assert_eq!(format!("{s:?}"), "[redacted]");
    }

    #[test]
    fn env_names_follow_the_double_underscore_form() {
        assert_eq!(
            env_name("servicenow.instance_url"),
            "SNOWGATE__SERVICENOW__INSTANCE_URL"
        );
    }

    #[test]
    fn base_url_needs_a_trailing_slash() {
        assert!(check_base_url("https://x.example/").is_ok());
        assert!(check_base_url("https://x.example/app").is_err());
        assert!(check_base_url("ftp://x.example/").is_err());
    }

    #[test]
    fn the_example_configuration_has_only_known_keys() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config.example.yaml");
        let s = Settings::load(Some(&path)).expect("config.example.yaml loads");
        assert_eq!(s.servicenow.tool_id, "1c219f7e8708f1508ca933383cbb3543");
        assert_eq!(s.servicenow.timeout.0, Duration::from_secs(30));
        assert_eq!(s.auth.operator_tokens[0].name, "alice");
    }

    #[test]
    fn the_status_page_session_lasts_8h_unless_configured() {
        assert_eq!(
            Settings::default().ui.session_ttl.0,
            Duration::from_secs(8 * 3600)
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ui.yaml");
        std::fs::write(&path, "ui:\n  session_ttl: 30m\n").unwrap();
        let s = Settings::load(Some(&path)).unwrap();
        assert_eq!(s.ui.session_ttl.0, Duration::from_secs(1800));
    }

    #[test]
    fn a_session_ttl_under_a_second_is_named_with_its_environment_variable() {
        for ttl in [Duration::ZERO, Duration::from_millis(500)] {
            let mut s = Settings::default();
            s.ui.session_ttl = Dur(ttl);
            let problems = s.problems().join("\n");
            assert!(
                problems.contains("ui.session_ttl (SNOWGATE__UI__SESSION_TTL) must be at least 1s"),
                "{ttl:?}: {problems}"
            );
        }
        assert!(!Settings::default()
            .problems()
            .join("\n")
            .contains("ui.session_ttl"));
    }

    #[test]
    fn an_unknown_key_is_named() {
        let dir = std::env::temp_dir().join(format!("snowgate-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.yaml");
        std::fs::write(&path, "servicenow:\n  instance_ur: x\n").unwrap();
        let err = Settings::load(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("instance_ur"), "{err}");
    }

    #[test]
    fn yaml_text_reads_like_the_file_without_environment_or_secret_files() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config.example.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        let s = Settings::from_yaml_str(&text).expect("config.example.yaml reads");
        assert_eq!(s.servicenow.tool_id, "1c219f7e8708f1508ca933383cbb3543");
        assert_eq!(s.auth.operator_tokens[0].name, "alice");
        let s = Settings::from_yaml_str("servicenow:\n  token_file: /nonexistent/token\n")
            .expect("a secret file is not read");
        assert_eq!(
            s.servicenow.token_file.as_deref(),
            Some(Path::new("/nonexistent/token"))
        );
        assert!(s.servicenow.token.is_empty());
        let err = Settings::from_yaml_str("servicenow:\n  instance_ur: x\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("instance_ur"), "{err}");
    }

    #[test]
    fn an_empty_configuration_names_every_missing_key() {
        let problems = Settings::default().problems().join("\n");
        for key in [
            "SNOWGATE__SERVICENOW__INSTANCE_URL",
            "SNOWGATE__SERVICENOW__TOOL_ID",
            "SNOWGATE__SERVICENOW__TOKEN",
            "SNOWGATE__CALLBACK__PUBLIC_BASE_URL",
            "SNOWGATE__AUTH__DISABLED",
        ] {
            assert!(problems.contains(key), "{key} missing from {problems}");
        }
    }
}
