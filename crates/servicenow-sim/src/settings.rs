//! How a simulator behaves: [`SimSettings`] and its defaults.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

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
    /// `changeControl: false` with a `message` (ServiceNow's DevOps API reference, POST changeControl: "Before you call this
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
    /// Change API: creates answer `{"result":[{…}]}` instead of `{"result":{…}}` (ServiceNow's Change API:
    /// clients accept both).
    pub chg_create_as_array: bool,
    /// Change API: `state` values as numbers (`-5`) and `active` as a boolean (ServiceNow's Change API: a
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
            // The API reference's example artifact tool.
            artifact_tool_id: "391b4ff6dba24010bc8cdd384b96198f".to_string(),
            // The API reference's web-service-only account: exactly these two roles.
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
