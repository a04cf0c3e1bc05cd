//! The OpenAPI 3.1 document of the JSON API, built by utoipa from the handlers' `#[utoipa::path]`
//! annotations and the wire types' `ToSchema` derives. Served at `GET /api/v1/openapi.json` and
//! committed as `openapi.json` at the repository root; the test `openapi::` of the api test binary
//! fails when the two differ and says how to regenerate the file.
//!
//! The handlers read their bodies field by field (so that every error names its field), so the
//! request bodies below are described by types of their own; the answers that the handlers
//! build with `json!` are described here too. Schemathesis (scripts/schemathesis.sh) checks the
//! live answers against this document.
use std::collections::HashMap;
use std::sync::OnceLock;

use actix_web::HttpResponse;
use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::RefOr;
use utoipa::{Modify, OpenApi, ToSchema};
use uuid::Uuid;

use crate::routes;

mod errors;
pub use errors::*;

/// Where the document is served.
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "snowgate",
        description = "A sidecar that puts Jenkins pipeline stages under ServiceNow change control. \
            Pipeline tokens open, read and wait for gates and use the ServiceNow pass-throughs; \
            operator tokens may do everything, including resume, abort and change freezes. \
            Every error answers `{\"error\": {\"code\", \"message\", \"field\"?}}`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        routes::health::healthz,
        routes::health::readyz,
        routes::health::metrics,
        serve,
        routes::gates::open,
        routes::gates::list,
        routes::gates::get,
        routes::gates::wait,
        routes::gates::events,
        routes::operator::resume,
        routes::operator::abort,
        routes::operator::complete,
        routes::evidence::attach,
        routes::passthrough::step_mapping,
        routes::passthrough::change_info,
        routes::passthrough::update_change_info,
        routes::passthrough::artifacts,
        routes::passthrough::packages,
        routes::freezes::declare,
        routes::freezes::list,
        routes::freezes::delete,
        routes::callbacks::callback,
    ),
    components(responses(
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Conflict,
        Gone,
        PayloadTooLarge,
        UnsupportedMediaType,
        Unavailable,
        Rejected,
        BadGateway,
        GatewayTimeout,
    )),
    modifiers(&SecuritySchemes),
    tags(
        (name = "operations", description = "Probes, metrics and this document: no token"),
        (name = "gates", description = "Open, read and wait for gates (pipeline token)"),
        (name = "operator", description = "Decide a held stage by hand (operator token), report a stage's end"),
        (name = "evidence", description = "Files and links for the gate's change request"),
        (name = "servicenow", description = "Pass-throughs to ServiceNow's DevOps API (pipeline token)"),
        (name = "freezes", description = "Change freezes: blackout windows"),
        (name = "callbacks", description = "ServiceNow's callback, with the official plugin's semantics"),
    )
)]
pub struct ApiDoc;

/// The bearer token scopes (`auth.pipeline_tokens`, `auth.operator_tokens`) and the optional
/// Basic credentials of ServiceNow's callback (`callback.basic_auth`).
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        let bearer = |description: &str| {
            let mut http = Http::new(HttpAuthScheme::Bearer);
            http.description = Some(description.to_string());
            SecurityScheme::Http(http)
        };
        components.add_security_scheme(
            "pipeline",
            bearer("A pipeline token (auth.pipeline_tokens): opens, reads and waits for gates. An operator token works wherever a pipeline token does."),
        );
        components.add_security_scheme(
            "operator",
            bearer("An operator token (auth.operator_tokens): everything, including resume, abort and change freezes; a pipeline token gets 403."),
        );
        let mut basic = Http::new(HttpAuthScheme::Basic);
        basic.description = Some(
            "Only when callback.basic_auth is configured: the credentials of ServiceNow's Jenkins tool record.".into(),
        );
        components.add_security_scheme("callbackBasic", SecurityScheme::Http(basic));
    }
}

/// The document as JSON, built once.
pub fn document_json() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut text = ApiDoc::openapi()
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
        text.push('\n');
        text
    })
}

/// `GET /api/v1/openapi.json`.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    operation_id = "openapi",
    tag = "operations",
    responses((status = 200, description = "This OpenAPI 3.1 document", body = Object))
)]
pub async fn serve() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document_json())
}

// ---------------------------------------------------------------------------------------------
// Answers the handlers build with `json!`.

/// A gate's mode (`servicenow.default_mode` when the request does not say).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = GateMode)]
pub enum GateModeSchema {
    /// ServiceNow DevOps change control: register the stage, wait for the callback.
    Devops,
    /// The Change Management API: snowgate finds or creates the change request and polls it.
    Change,
}

/// `GET /healthz`.
#[derive(Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: String,
}

/// `GET /readyz`: `ready`/`ok`, or `not_ready` with `unreachable` or `not_answering`.
#[derive(Serialize, ToSchema)]
pub struct Readiness {
    pub status: String,
    pub store: String,
}

/// The answer of `POST /api/v1/gates/{id}/evidence`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EvidenceReceipt {
    pub gate_id: Uuid,
    pub name: String,
    /// Of the content, or of the link.
    pub sha256: String,
    pub status: EvidenceStatus,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EvidenceStatus {
    /// 202: queued, sent once through the outbox.
    Queued,
    /// 200: the same content (SHA-256) was sent for this gate before.
    Duplicate,
}

/// The answer of `POST /api/v1/step-mappings`: ServiceNow's `stepValid`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepMappingAnswer {
    pub step_valid: bool,
}

/// The answer of `GET /api/v1/change-info`: the stage's change request, `null` for what is not
/// known; `source` says who answered, and from ServiceNow `result` is its answer as sent.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChangeInfoAnswer {
    pub change_found: bool,
    pub number: Option<String>,
    pub sys_id: Option<String>,
    pub state: Option<String>,
    pub url: Option<String>,
    pub approvers: Option<String>,
    pub assignment_group: Option<String>,
    pub planned_start_date: Option<String>,
    pub planned_end_date: Option<String>,
    pub source: ChangeInfoSource,
    pub result: Option<Value>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChangeInfoSource {
    /// The change request of the stage's own gate.
    Snowgate,
    /// ServiceNow's `changeInfo`.
    Servicenow,
}

/// The answer of `PUT /api/v1/change-info/{number}`: ServiceNow's `result`.
#[derive(Serialize, ToSchema)]
pub struct ChangeInfoUpdated {
    pub updated: bool,
    pub result: Value,
}

/// The plugin's answer to a callback it accepted (with the header
/// `Result: Jenkins webhook triggered successfully`).
#[derive(Serialize, ToSchema)]
pub struct CallbackAnswer {
    pub message: String,
}

// ---------------------------------------------------------------------------------------------
// Request bodies. Strings are non-empty (not only spaces), without control characters; `null`
// counts as absent.

/// A Jenkins build number: digits, as a string or a number.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum BuildNumber {
    Text(String),
    Number(u64),
}

/// `true`/`false`, also as the strings `"true"`/`"false"` (the plugin's parameters are strings).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum Flag {
    Bool(bool),
    Text(String),
}

/// Whole seconds (at most 30 days) as a number or a numeric string; 0 is "off".
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum Seconds {
    Number(u64),
    Text(String),
}

/// `POST /api/v1/gates`: the stage to hold, with the official plugin's step parameters.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OpenGate {
    /// Jenkins' `JOB_URL`: an absolute http(s) URL.
    #[schema(format = Uri, min_length = 1, max_length = 2048, pattern = "^https?://[^/?#]+")]
    pub job_url: String,
    pub build_number: BuildNumber,
    #[schema(min_length = 1, max_length = 160)]
    pub stage_name: String,
    #[schema(format = Uri, min_length = 1, max_length = 2048, pattern = "^https?://[^/?#]+")]
    pub build_url: Option<String>,
    #[schema(min_length = 1, max_length = 255)]
    pub branch_name: Option<String>,
    pub is_multi_branch: Option<Flag>,
    #[schema(min_length = 1, max_length = 160)]
    pub parent_stage_name: Option<String>,
    /// A flow node id: digits (a string or a number); `""` at top level.
    pub parent_stage_id: Option<Value>,
    #[schema(min_length = 1, max_length = 255)]
    pub job_name: Option<String>,
    /// A flow node id: digits (a string or a number).
    pub flow_node_id: Option<Value>,
    #[schema(min_length = 1, max_length = 160)]
    pub upstream_stage_name: Option<String>,
    #[schema(format = Uri, min_length = 1, max_length = 2048, pattern = "^https?://[^/?#]+")]
    pub upstream_stage_url: Option<String>,
    pub trigger_type: Option<TriggerTypeSchema>,
    /// Required when `triggerType` is `upstream`.
    #[schema(format = Uri, min_length = 1, max_length = 2048, pattern = "^https?://[^/?#]+")]
    pub upstream_task_execution_url: Option<String>,
    #[schema(min_length = 1, max_length = 255)]
    pub user_name: Option<String>,
    #[schema(format = Uri, min_length = 1, max_length = 2048, pattern = "^https?://[^/?#]+")]
    pub task_execution_url: Option<String>,
    #[schema(min_length = 1, max_length = 4000)]
    pub message: Option<String>,
    /// ServiceNow's `changeRequestDetails`; `attributes` may not set impact, number, risk,
    /// risk_impact_analysis or sys_id.
    pub change_request_details: Option<HashMap<String, Value>>,
    /// The Jenkins `input` step snowgate answers (needs the jenkins configuration section).
    pub input: Option<InputStep>,
    pub polling_interval_secs: Option<Seconds>,
    pub change_creation_timeout_secs: Option<Seconds>,
    pub abort_on_change_creation_failure: Option<Flag>,
    pub change_step_timeout_secs: Option<Seconds>,
    pub abort_on_change_step_timeout: Option<Flag>,
    pub ignore_errors: Option<Flag>,
    /// `change` needs servicenow.auth basic or oauth, and `environment`.
    pub mode: Option<GateModeSchema>,
    #[schema(min_length = 1, max_length = 255)]
    pub environment: Option<String>,
    /// Letters and digits, e.g. `CHG0030001`.
    #[schema(min_length = 1, max_length = 40, pattern = "^[A-Za-z0-9]+$")]
    pub change_request_number: Option<String>,
    pub emergency: Option<Flag>,
    #[schema(min_length = 1, max_length = 255)]
    pub standard_change_template: Option<String>,
    pub supersede: Option<Flag>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = TriggerType)]
pub enum TriggerTypeSchema {
    User,
    Scm,
    Upstream,
}

#[derive(Serialize, ToSchema)]
pub struct InputStep {
    /// The input step's id: 1 to 64 letters, digits, `_` or `-`.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub id: String,
}

/// `POST /api/v1/gates/{id}/resume` and `…/abort`.
#[derive(Serialize, ToSchema)]
pub struct OperatorDecision {
    /// Why the stage is released or stopped; recorded in the audit trail.
    #[schema(min_length = 1, max_length = 1000)]
    pub reason: String,
}

/// `POST /api/v1/gates/{id}/complete`.
#[derive(Serialize, ToSchema)]
pub struct StageCompletion {
    pub result: StageResult,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StageResult {
    Success,
    Failure,
}

/// `POST /api/v1/gates/{id}/evidence`: exactly one of `content`, `contentBase64` (up to 5 MB
/// decoded, both with `contentType`) or `url`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Evidence {
    /// A file name, without a path.
    #[schema(min_length = 1, max_length = 255)]
    pub name: String,
    pub content: Option<String>,
    pub content_base64: Option<String>,
    #[schema(min_length = 1, max_length = 255)]
    pub content_type: Option<String>,
    #[schema(format = Uri, min_length = 1, max_length = 2048, pattern = "^https?://[^/?#]+")]
    pub url: Option<String>,
}

/// `POST /api/v1/freezes`. A key of no field is refused (400 naming it): a misspelt
/// `environments` must not make a freeze cover every environment.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeclareFreeze {
    #[schema(min_length = 1, max_length = 160)]
    pub name: String,
    pub start: chrono::DateTime<chrono::Utc>,
    /// After `start`.
    pub end: chrono::DateTime<chrono::Utc>,
    #[schema(min_length = 1, max_length = 1000)]
    pub reason: String,
    /// Glob patterns on the full job name (`folder/job`); none: every job.
    #[schema(max_items = 100)]
    pub jobs: Option<Vec<String>>,
    /// Environments of change-mode gates (case-insensitive); none: every environment.
    #[schema(max_items = 100)]
    pub environments: Option<Vec<String>>,
}

/// `POST /api/v1/step-mappings`: the stage whose orchestration task ServiceNow should create.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepMapping {
    #[schema(format = Uri, min_length = 1, max_length = 2048, pattern = "^https?://[^/?#]+")]
    pub job_url: String,
    #[schema(min_length = 1, max_length = 160)]
    pub stage_name: String,
    pub build_number: Option<BuildNumber>,
    #[schema(min_length = 1, max_length = 255)]
    pub branch_name: Option<String>,
    pub is_multi_branch: Option<Flag>,
    #[schema(min_length = 1, max_length = 160)]
    pub parent_stage_name: Option<String>,
    pub parent_stage_id: Option<Value>,
    #[schema(format = Uri, min_length = 1, max_length = 2048, pattern = "^https?://[^/?#]+")]
    pub build_url: Option<String>,
    #[schema(min_length = 1, max_length = 255)]
    pub job_name: Option<String>,
    pub flow_node_id: Option<Value>,
    #[schema(format = Uri, min_length = 1, max_length = 2048, pattern = "^https?://[^/?#]+")]
    pub task_execution_url: Option<String>,
}

/// `POST /api/v1/artifacts` and `POST /api/v1/packages`: ServiceNow's artifact or package
/// registration body (other fields are sent on as given). Packages also need `name`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Registration {
    /// At least one.
    #[schema(min_items = 1)]
    pub artifacts: Vec<Artifact>,
    /// The package's name (packages only).
    #[schema(min_length = 1, max_length = 160)]
    pub name: Option<String>,
    /// Required unless `projectName` or `jobUrl` is given (derived from it).
    #[schema(min_length = 1, max_length = 160)]
    pub pipeline_name: Option<String>,
    #[schema(min_length = 1, max_length = 160)]
    pub project_name: Option<String>,
    /// Required with `pipelineName`.
    #[schema(min_length = 1, max_length = 160)]
    pub stage_name: Option<String>,
    /// The build number (a string or a number).
    pub task_execution_number: Option<Value>,
    pub branch_name: Option<String>,
    /// The sys_id of an artifact tool (letters and digits).
    #[schema(min_length = 1, max_length = 64)]
    pub artifact_tool_id: Option<String>,
    #[schema(format = Uri, min_length = 1, max_length = 2048, pattern = "^https?://[^/?#]+")]
    pub job_url: Option<String>,
    #[schema(format = Uri, min_length = 1, max_length = 2048, pattern = "^https?://[^/?#]+")]
    pub build_url: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Artifact {
    #[schema(min_length = 1, max_length = 160)]
    pub name: String,
    #[schema(min_length = 1, max_length = 160)]
    pub repository_name: String,
    /// Required for artifacts unless `artifactToolId` is given.
    #[schema(min_length = 1, max_length = 160)]
    pub version: Option<String>,
    #[schema(min_length = 1, max_length = 160)]
    pub semantic_version: Option<String>,
    /// Packages: this build's pipeline, stage and build number fill what is missing.
    pub current_build_info: Option<Flag>,
}

/// `PUT /api/v1/change-info/{number}`: the change request's fields by their ServiceNow column
/// names, or `{"changeRequestDetails": {…}}` holding them (or a string holding that object).
pub struct ChangeRequestFields;

impl utoipa::PartialSchema for ChangeRequestFields {
    fn schema() -> RefOr<Schema> {
        let name = ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^([a-z0-9_]{1,80}|changeRequestDetails)$"));
        ObjectBuilder::new()
            .description(Some(
                "The fields to update, e.g. {\"work_notes\": \"…\"}, or {\"changeRequestDetails\": {…}}",
            ))
            .property_names(Some(name))
            .additional_properties(Some(AdditionalProperties::FreeForm(true)))
            .min_properties(Some(1))
            .into()
    }
}

impl ToSchema for ChangeRequestFields {}

/// What ServiceNow's callback carries: a notice (`changeRequestId`) or a decision (`result`:
/// `succeeded` approves, `canceled` cancels, `isError: true` fails, anything else rejects).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceNowCallback {
    pub result: Option<String>,
    pub is_error: Option<Flag>,
    pub change_request_id: Option<String>,
    pub change_request_url: Option<String>,
    pub change_comments: Option<String>,
}
