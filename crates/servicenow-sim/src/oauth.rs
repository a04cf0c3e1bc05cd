//! The simulated OAuth token endpoint, `POST /oauth_token.do` (the Octopus docs' "Configure
//! ServiceNow OAuth credentials (for use by Octopus)"), issuing the bearer tokens the change API
//! takes.
//!
//! Only `Content-Type: application/x-www-form-urlencoded` bodies are read (JSON is a 400, as the
//! instance answers). Grants:
//! - `grant_type=password&client_id=&client_secret=&username=&password=`
//! - `grant_type=refresh_token&client_id=&client_secret=&refresh_token=`
//!
//! both answering 200 `{"access_token","refresh_token","scope":"useraccount","token_type":"Bearer",
//! "expires_in":N}` (a refresh keeps the same refresh token, or omits it with
//! [`super::SimSettings::oauth_refresh_omits_token`]). A wrong client, user or refresh token is a
//! 401 `{"error":"server_error","error_description":"access_denied"}` (the instance's body;
//! tells clients not to parse it). Injected faults use the key `oauth`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};
use subtle::ConstantTimeEq as _;

use super::change::{fault_response, platform_error};
use super::{RecordedRequest, Shared, SimSettings};

/// The fault key of the token endpoint.
pub(crate) const FAULT_KEY: &str = "oauth";

/// Issued tokens and grant counts.
#[derive(Debug, Default)]
pub(crate) struct OAuthState {
    /// Access token → when it expires.
    access: HashMap<String, Instant>,
    /// Refresh tokens still honoured.
    refresh: HashSet<String>,
    /// Successful grants by type.
    pub(crate) password_grants: u32,
    pub(crate) refresh_grants: u32,
    /// Grants refused (any reason).
    pub(crate) refused_grants: u32,
}

/// Why a grant was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum GrantError {
    /// 400 `invalid_request` / `unsupported_grant_type`.
    BadRequest {
        error: &'static str,
        description: String,
    },
    /// 401: bad client, user or refresh token.
    Denied,
}

/// Random, URL-safe, opaque.
fn new_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

fn same(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

impl OAuthState {
    /// Whether an access token was issued and has not expired.
    pub(crate) fn is_valid(&self, token: &str) -> bool {
        self.access
            .get(token)
            .is_some_and(|expires| Instant::now() < *expires)
    }

    /// Expires every access token now (refresh tokens stay good).
    pub(crate) fn expire_all(&mut self) {
        self.access.clear();
    }

    /// Revokes every refresh token issued so far: the next refresh fails and the client has to
    /// make a password grant (whose refresh token is good again).
    pub(crate) fn revoke_refresh(&mut self) {
        self.refresh.clear();
    }

    pub(crate) fn active_access_tokens(&self) -> usize {
        let now = Instant::now();
        self.access.values().filter(|e| now < **e).count()
    }

    fn issue_access(&mut self, lifetime: Duration) -> String {
        let now = Instant::now();
        self.access.retain(|_, expires| now < *expires);
        let token = new_token();
        self.access.insert(token.clone(), now + lifetime);
        token
    }

    /// Applies one grant request (the form's pairs) and returns the JSON answer.
    pub(crate) fn grant(
        &mut self,
        settings: &SimSettings,
        form: &[(String, String)],
    ) -> Result<Value, GrantError> {
        let result = self.try_grant(settings, form);
        if result.is_err() {
            self.refused_grants += 1;
        }
        result
    }

    fn try_grant(
        &mut self,
        settings: &SimSettings,
        form: &[(String, String)],
    ) -> Result<Value, GrantError> {
        let get = |name: &str| {
            form.iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .unwrap_or("")
        };
        let grant_type = get("grant_type");
        check_grant_type(grant_type)?;
        let client_ok = same(get("client_id"), &settings.oauth_client_id)
            & same(get("client_secret"), &settings.oauth_client_secret);
        if !client_ok {
            return Err(GrantError::Denied);
        }
        let lifetime = settings.oauth_token_lifetime;
        // Whole seconds, rounded up, so a sub-second test lifetime still reads as "soon".
        let expires_in = lifetime.as_secs() + u64::from(lifetime.subsec_nanos() > 0);
        let mut answer = json!({
            "scope": "useraccount",
            "token_type": "Bearer",
            "expires_in": expires_in,
        });
        if grant_type == "password" {
            let user_ok =
                same(get("username"), &settings.user) & same(get("password"), &settings.password);
            if !user_ok {
                return Err(GrantError::Denied);
            }
            let refresh = new_token();
            self.refresh.insert(refresh.clone());
            answer["access_token"] = json!(self.issue_access(lifetime));
            answer["refresh_token"] = json!(refresh);
            self.password_grants += 1;
        } else {
            let refresh = get("refresh_token");
            if refresh.is_empty() || !self.refresh.contains(refresh) {
                return Err(GrantError::Denied);
            }
            answer["access_token"] = json!(self.issue_access(lifetime));
            if !settings.oauth_refresh_omits_token {
                answer["refresh_token"] = json!(refresh);
            }
            self.refresh_grants += 1;
        }
        Ok(answer)
    }
}

/// The two grants the token endpoint serves: `password` and `refresh_token`.
fn check_grant_type(grant_type: &str) -> Result<(), GrantError> {
    if grant_type.is_empty() {
        return Err(GrantError::BadRequest {
            error: "invalid_request",
            description: "grant_type is required".into(),
        });
    }
    if !matches!(grant_type, "password" | "refresh_token") {
        return Err(GrantError::BadRequest {
            error: "unsupported_grant_type",
            description: format!("grant_type {grant_type:?} is not supported"),
        });
    }
    Ok(())
}

impl Shared {
    /// Runs `f` with the OAuth state locked. Never hold the lock across an `.await`.
    pub(crate) fn with_oauth<R>(&self, f: impl FnOnce(&mut OAuthState) -> R) -> R {
        let mut oauth = self.oauth.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut oauth)
    }
}

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/oauth_token.do").to(token));
}

/// `application/x-www-form-urlencoded`, with or without parameters.
fn is_form(value: Option<&str>) -> bool {
    value.and_then(|v| v.split(';').next()).is_some_and(|m| {
        m.trim()
            .eq_ignore_ascii_case("application/x-www-form-urlencoded")
    })
}

/// `POST /oauth_token.do`.
#[tracing::instrument(skip_all)]
async fn token(req: HttpRequest, body: web::Bytes, data: web::Data<Shared>) -> HttpResponse {
    let shared: Arc<Shared> = data.into_inner();
    shared.with_model(|m| m.record_request(RecordedRequest::capture(&req, &body)));
    if req.method() != actix_web::http::Method::POST {
        return platform_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method not Supported",
            &format!("{} is not supported for /oauth_token.do", req.method()),
        );
    }
    let action = shared.with_model(|m| m.faults.on_call(FAULT_KEY));
    if !action.latency.is_zero() {
        tokio::time::sleep(action.latency).await;
    }
    if let Some(status) = action.fail_with {
        tracing::debug!(status, "injected fault");
        return fault_response(status);
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if !is_form(content_type) {
        return grant_error(GrantError::BadRequest {
            error: "invalid_request",
            description: "the token request must be sent as application/x-www-form-urlencoded"
                .into(),
        });
    }
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    match shared.with_oauth(|o| o.grant(&shared.settings, &form)) {
        Ok(answer) => HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(answer),
        Err(e) => grant_error(e),
    }
}

fn grant_error(error: GrantError) -> HttpResponse {
    match error {
        GrantError::BadRequest { error, description } => HttpResponse::BadRequest()
            .json(json!({"error": error, "error_description": description})),
        GrantError::Denied => HttpResponse::Unauthorized()
            .json(json!({"error": "server_error", "error_description": "access_denied"})),
    }
}
