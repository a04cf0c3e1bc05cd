//! The admin API of the change API and OAuth, under `/__sim/chg/` (no authentication, JSON in
//! and out, any request content type), and the [`SimHandle`] methods it mirrors. See the module
//! documentation of [`super`] for the list.
//!
//! It plays the approver and the instance's administrator: states move without the state
//! model's rules, CRs can be planted (decoys for title matching), templates and roles change,
//! and OAuth tokens expire or are revoked on demand.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use anyhow::anyhow;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::change::{ChangeType, ChgChange, ChgConflict, ChgError, ChgTemplate, ChgWorkNote};
use super::model::CrState;
use super::{Shared, SimHandle};

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/__sim/chg")
            .route("/changes", web::get().to(list_changes))
            .route("/changes", web::post().to(create_change))
            .route("/changes/{number}", web::get().to(get_change))
            .route("/changes/{number}/state", web::post().to(set_state))
            .route("/changes/{number}/work-notes", web::get().to(work_notes))
            .route("/changes/{number}/conflicts", web::get().to(get_conflicts))
            .route("/changes/{number}/conflicts", web::post().to(add_conflict))
            .route(
                "/changes/{number}/conflicts",
                web::delete().to(clear_conflicts),
            )
            .route("/templates", web::get().to(list_templates))
            .route("/templates", web::post().to(add_template))
            .route("/templates/{template}", web::post().to(set_template))
            .route("/roles", web::get().to(get_roles))
            .route("/roles", web::post().to(set_roles))
            .route("/oauth", web::get().to(oauth_status))
            .route("/oauth/expire-tokens", web::post().to(expire_tokens))
            .route("/oauth/revoke-refresh", web::post().to(revoke_refresh))
            .default_service(web::to(unknown)),
    );
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateBody {
    /// normal (default) | emergency | standard.
    #[serde(rename = "type")]
    change_type: Option<String>,
    /// Any state name or value; New by default.
    state: Option<String>,
    #[serde(default)]
    fields: Map<String, Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StateBody {
    state: Option<String>,
    approval: Option<String>,
    #[serde(alias = "start_date", alias = "plannedStartDate")]
    start_date: Option<String>,
    #[serde(alias = "end_date", alias = "plannedEndDate")]
    end_date: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct TemplateBody {
    name: Option<String>,
    active: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
struct RolesBody {
    roles: Option<Vec<String>>,
}

/// Creates a CR without the API's rules (any state; approval implied by it). Shared by the
/// admin route and [`SimHandle::chg_create`].
fn create(
    shared: &Shared,
    fields: Map<String, Value>,
    change_type: &str,
    state: &str,
) -> Result<ChgChange, ChgError> {
    let kind = ChangeType::parse(change_type).ok_or_else(|| ChgError::BadRequest {
        message: "Invalid type".into(),
        detail: format!("type must be normal, emergency or standard, got {change_type:?}"),
    })?;
    let state = CrState::parse(state).ok_or_else(|| ChgError::BadRequest {
        message: "Invalid state".into(),
        detail: format!("unknown state {state:?}"),
    })?;
    let user = shared.settings.user.clone();
    let given = fields.into_iter().collect();
    let created = shared.with_chg(|c| c.create(kind, None, given, state, false, &user))?;
    Ok(created.change.public())
}

async fn list_changes(data: web::Data<Shared>) -> HttpResponse {
    HttpResponse::Ok().json(data.with_chg(|c| c.changes()))
}

async fn create_change(data: web::Data<Shared>, body: web::Bytes) -> HttpResponse {
    let body: CreateBody = match parse_body(&body) {
        Ok(body) => body,
        Err(message) => return error(StatusCode::BAD_REQUEST, "invalid_json", &message),
    };
    let change_type = body.change_type.as_deref().unwrap_or("normal");
    let state = body.state.as_deref().unwrap_or("New");
    match create(&data, body.fields, change_type, state) {
        Ok(change) => HttpResponse::Ok().json(change),
        Err(e) => chg_error(e),
    }
}

async fn get_change(data: web::Data<Shared>, path: web::Path<String>) -> HttpResponse {
    let number = path.into_inner();
    match data.with_chg(|c| c.change(&number)) {
        Some(change) => HttpResponse::Ok().json(change),
        None => not_found(&number),
    }
}

async fn set_state(
    data: web::Data<Shared>,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let number = path.into_inner();
    let body: StateBody = match parse_body(&body) {
        Ok(body) => body,
        Err(message) => return error(StatusCode::BAD_REQUEST, "invalid_json", &message),
    };
    let updated = data.with_chg(|c| {
        c.admin_update(
            &number,
            body.state.as_deref(),
            body.approval.as_deref(),
            body.start_date.as_deref(),
            body.end_date.as_deref(),
        )
    });
    match updated {
        Ok(change) => HttpResponse::Ok().json(change),
        Err(e) => chg_error(e),
    }
}

async fn work_notes(data: web::Data<Shared>, path: web::Path<String>) -> HttpResponse {
    let number = path.into_inner();
    match data.with_chg(|c| c.work_notes(&number)) {
        Some(notes) => HttpResponse::Ok().json(json!({ "workNotes": notes })),
        None => not_found(&number),
    }
}

/// `{"conflicts":[…planted…],"checks":n}` for the CR `number`.
fn conflicts_json(shared: &Shared, number: &str) -> HttpResponse {
    match shared.with_chg(|c| {
        c.planted_conflicts(number)
            .map(|p| (p, c.conflict_checks(number)))
    }) {
        Some((conflicts, checks)) => {
            HttpResponse::Ok().json(json!({ "conflicts": conflicts, "checks": checks }))
        }
        None => not_found(number),
    }
}

async fn get_conflicts(data: web::Data<Shared>, path: web::Path<String>) -> HttpResponse {
    conflicts_json(&data, &path.into_inner())
}

async fn add_conflict(
    data: web::Data<Shared>,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let number = path.into_inner();
    // Every field but `schedule` is required, so no empty-body default here.
    let conflict: ChgConflict = match serde_json::from_slice(&body) {
        Ok(conflict) => conflict,
        Err(e) => {
            let message = format!("invalid JSON body: {e}");
            return error(StatusCode::BAD_REQUEST, "invalid_json", &message);
        }
    };
    match data.with_chg(|c| c.add_conflict(&number, conflict)) {
        Ok(()) => conflicts_json(&data, &number),
        Err(e) => chg_error(e),
    }
}

async fn clear_conflicts(data: web::Data<Shared>, path: web::Path<String>) -> HttpResponse {
    let number = path.into_inner();
    match data.with_chg(|c| c.clear_conflicts(&number)) {
        Ok(()) => conflicts_json(&data, &number),
        Err(e) => chg_error(e),
    }
}

async fn list_templates(data: web::Data<Shared>) -> HttpResponse {
    HttpResponse::Ok().json(data.with_chg(|c| c.templates()))
}

async fn add_template(data: web::Data<Shared>, body: web::Bytes) -> HttpResponse {
    let body: TemplateBody = match parse_body(&body) {
        Ok(body) => body,
        Err(message) => return error(StatusCode::BAD_REQUEST, "invalid_json", &message),
    };
    let Some(name) = body.name.filter(|n| !n.trim().is_empty()) else {
        return error(StatusCode::BAD_REQUEST, "invalid", "name is required");
    };
    let active = body.active.unwrap_or(true);
    HttpResponse::Ok().json(data.with_chg(|c| c.add_template(&name, active)))
}

async fn set_template(
    data: web::Data<Shared>,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let template = path.into_inner();
    let body: TemplateBody = match parse_body(&body) {
        Ok(body) => body,
        Err(message) => return error(StatusCode::BAD_REQUEST, "invalid_json", &message),
    };
    let Some(active) = body.active else {
        return error(StatusCode::BAD_REQUEST, "invalid", "active is required");
    };
    match data.with_chg(|c| c.set_template_active(&template, active)) {
        Ok(changed) => HttpResponse::Ok().json(changed),
        Err(e) => chg_error(e),
    }
}

async fn get_roles(data: web::Data<Shared>) -> HttpResponse {
    HttpResponse::Ok().json(json!({"roles": data.with_chg(|c| c.roles.clone())}))
}

async fn set_roles(data: web::Data<Shared>, body: web::Bytes) -> HttpResponse {
    let body: RolesBody = match parse_body(&body) {
        Ok(body) => body,
        Err(message) => return error(StatusCode::BAD_REQUEST, "invalid_json", &message),
    };
    let Some(roles) = body.roles else {
        return error(StatusCode::BAD_REQUEST, "invalid", "roles is required");
    };
    data.with_chg(|c| c.roles = roles.clone());
    HttpResponse::Ok().json(json!({ "roles": roles }))
}

fn oauth_json(shared: &Shared) -> Value {
    shared.with_oauth(|o| {
        json!({
            "passwordGrants": o.password_grants,
            "refreshGrants": o.refresh_grants,
            "refusedGrants": o.refused_grants,
            "activeAccessTokens": o.active_access_tokens(),
        })
    })
}

async fn oauth_status(data: web::Data<Shared>) -> HttpResponse {
    HttpResponse::Ok().json(oauth_json(&data))
}

async fn expire_tokens(data: web::Data<Shared>) -> HttpResponse {
    data.with_oauth(|o| o.expire_all());
    HttpResponse::Ok().json(oauth_json(&data))
}

async fn revoke_refresh(data: web::Data<Shared>) -> HttpResponse {
    data.with_oauth(|o| o.revoke_refresh());
    HttpResponse::Ok().json(oauth_json(&data))
}

async fn unknown() -> HttpResponse {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such simulator admin endpoint",
    )
}

/// An optional JSON body: empty means all defaults. Any content type is taken (curl's `-d`
/// sends a form type).
fn parse_body<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| format!("invalid JSON body: {e}"))
}

fn not_found(number: &str) -> HttpResponse {
    error(
        StatusCode::NOT_FOUND,
        "change_not_found",
        &format!("change request {number} not found"),
    )
}

fn chg_error(e: ChgError) -> HttpResponse {
    match e {
        ChgError::NotFound(detail) => error(StatusCode::NOT_FOUND, "not_found", &detail),
        ChgError::BadRequest { message, detail } => error(
            StatusCode::BAD_REQUEST,
            "invalid",
            &format!("{message}: {detail}"),
        ),
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({"error": {"code": code, "message": message}}))
}

/// The change API (`sn_chg_rest`) and OAuth, as tests drive them.
impl SimHandle {
    /// The change-API CRs (CHG0040001…), oldest first.
    pub fn chg_changes(&self) -> Vec<ChgChange> {
        self.shared.with_chg(|c| c.changes())
    }

    /// One change-API CR by number (or `"latest"`), with its work-note journal.
    pub fn chg_change(&self, number: &str) -> Option<ChgChange> {
        self.shared.with_chg(|c| c.change(number))
    }

    /// Sets a CR's state (name such as `"Implement"`, or value such as `"-1"`) and planned
    /// window (`YYYY-MM-DD HH:MM:SS` UTC; `None` keeps, `Some("")` clears), as an approver would:
    /// no state-model rules. The approval follows the state (Scheduled, Implement, Review,
    /// Closed: approved; Authorize: requested; New, Assess: not requested; Canceled: kept).
    pub fn chg_set_state(
        &self,
        number: &str,
        state: &str,
        start: Option<&str>,
        end: Option<&str>,
    ) -> anyhow::Result<ChgChange> {
        Ok(self
            .shared
            .with_chg(|c| c.admin_update(number, Some(state), None, start, end))?)
    }

    /// Sets a CR's `approval` (`not requested`, `requested`, `approved`, `rejected`).
    pub fn chg_set_approval(&self, number: &str, approval: &str) -> anyhow::Result<ChgChange> {
        Ok(self
            .shared
            .with_chg(|c| c.admin_update(number, None, Some(approval), None, None))?)
    }

    /// Plants a CR directly (a decoy, say a Closed CR with the title a client will search for):
    /// `fields` a JSON object of field names and text values, `change_type` normal, emergency or
    /// standard, `state` any state name or value. Not auto-approved.
    pub fn chg_create(
        &self,
        fields: Value,
        change_type: &str,
        state: &str,
    ) -> anyhow::Result<ChgChange> {
        let fields = match fields {
            Value::Object(map) => map,
            Value::Null => Map::new(),
            other => return Err(anyhow!("fields must be a JSON object, got {other}")),
        };
        Ok(create(&self.shared, fields, change_type, state)?)
    }

    /// A CR's work notes, oldest first; `None` for an unknown CR.
    pub fn chg_work_notes(&self, number: &str) -> Option<Vec<ChgWorkNote>> {
        self.shared.with_chg(|c| c.work_notes(number))
    }

    /// Plants a conflict for the CR `number` (or `"latest"`): the CR's next conflict check
    /// (`POST …/change/{sys_id}/conflict`) reports it. Errors when either CR is unknown or
    /// `kind` is empty.
    pub fn chg_add_conflict(&self, number: &str, conflict: ChgConflict) -> anyhow::Result<()> {
        Ok(self.shared.with_chg(|c| c.add_conflict(number, conflict))?)
    }

    /// Forgets the conflicts planted for the CR `number`; the last check's results stay until
    /// the next check.
    pub fn chg_clear_conflicts(&self, number: &str) -> anyhow::Result<()> {
        Ok(self.shared.with_chg(|c| c.clear_conflicts(number))?)
    }

    /// Each later conflict check of the CR `number` runs on for `gets` GETs of its status
    /// (`job_status` "1", no conflicts) before it completes; a POST meanwhile starts it over.
    pub fn chg_keep_conflict_checks_running(
        &self,
        number: &str,
        gets: usize,
    ) -> anyhow::Result<()> {
        Ok(self
            .shared
            .with_chg(|c| c.keep_checks_running(number, gets))?)
    }

    /// How many conflict checks (`POST …/conflict` answered 200) ran for the CR `number`; 0 for
    /// an unknown CR.
    pub fn chg_conflict_checks(&self, number: &str) -> usize {
        self.shared.with_chg(|c| c.conflict_checks(number))
    }

    /// The standard change templates.
    pub fn chg_templates(&self) -> Vec<ChgTemplate> {
        self.shared.with_chg(|c| c.templates())
    }

    /// Adds a standard change template (its short description is its name).
    pub fn chg_add_template(&self, name: &str, active: bool) -> ChgTemplate {
        self.shared.with_chg(|c| c.add_template(name, active))
    }

    /// (De)activates the templates with this name or sys_id; errors when there is none.
    pub fn chg_set_template_active(
        &self,
        name_or_sys_id: &str,
        active: bool,
    ) -> anyhow::Result<()> {
        self.shared
            .with_chg(|c| c.set_template_active(name_or_sys_id, active))?;
        Ok(())
    }

    /// The roles of the simulator's account.
    pub fn chg_roles(&self) -> Vec<String> {
        self.shared.with_chg(|c| c.roles.clone())
    }

    /// Replaces the roles of the simulator's account (`sn_change_read`, `sn_change_write`,
    /// `itil`, …).
    pub fn chg_set_roles<I, S>(&self, roles: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let roles: Vec<String> = roles.into_iter().map(Into::into).collect();
        self.shared.with_chg(|c| c.roles = roles);
    }

    /// Expires every issued access token now (refresh tokens stay good).
    pub fn oauth_expire_tokens(&self) {
        self.shared.with_oauth(|o| o.expire_all());
    }

    /// Revokes every refresh token issued so far (the next refresh is a 401).
    pub fn oauth_revoke_refresh(&self) {
        self.shared.with_oauth(|o| o.revoke_refresh());
    }

    /// Successful grants so far: (password, refresh_token).
    pub fn oauth_grants(&self) -> (u32, u32) {
        self.shared
            .with_oauth(|o| (o.password_grants, o.refresh_grants))
    }
}
