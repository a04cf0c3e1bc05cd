//! The status page at `/ui`: open gates, recent decisions, a gate's event log, and resume/abort
//! forms for operators. Plain server-rendered HTML with inline CSS and no JavaScript, so it works
//! on a machine without internet access and under a CSP that forbids every script.
//!
//! Authentication: an operator enters an operator token once, in a login form. The server
//! checks it against the configured tokens and opens a session (see [`sessions`]): the cookie
//! (HttpOnly, SameSite=Strict, Secure over https) carries only a random session id of 256 bits,
//! never the token in any encoding, so a stolen cookie is worth one session, not the token. The
//! server keeps, in memory, the SHA-256 digest of each id with the operator's name (the token's
//! configured name), the issue and expiry times and a fingerprint of the token; at most
//! `MAX_SESSIONS` at once, the oldest ending first. A session lasts `ui.session_ttl` (default 8h,
//! also the cookie's Max-Age) and ends on the server at its expiry or at logout, so a replayed
//! cookie is refused from then on. **A restart ends every session** (the store is this process's
//! memory), and so does removing a token from the configuration, which only a restart reads;
//! another replica does not know this one's sessions (pin a browser to one replica).
//!
//! Failed logins (an unknown or a pipeline token) are counted per client address, the peer of
//! the connection (never `X-Forwarded-For`, which any client can write): after
//! `LOGIN_FAILURES` within `LOGIN_WINDOW` that address gets 429 with `Retry-After`, even for the
//! right token, until the oldest failure has left the window. Each failure is logged at warn
//! with the address, never with what was typed.
//!
//! CSRF: every POST form carries a token that is an HMAC of the session id under a random
//! per-process key; a POST without the matching token is refused (403). The login form itself is
//! exempt: there is no session yet, and a forged login could only log the victim in with an
//! operator token the attacker already holds.
pub mod sessions;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;
use std::time::Duration;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use rand::RngCore as _;
use serde_json::{Map, Value};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;
use uuid::Uuid;

use self::sessions::{LoginLimiter, Sessions};
use super::ApiError;
use crate::configuration::UiSettings;
use crate::domain::request::Fields;
use crate::domain::{Gate, GateState};
use crate::state::AppState;
use crate::store::{Event, StoreError, TransitionOutcome};

/// The session cookie: a session id, 64 hex digits.
pub const COOKIE: &str = "snowgate_ui";
/// Sessions held at once: far more than a team of operators opens in `ui.session_ttl`, and a
/// few MB at most (about 200 bytes each) when a script logs in in a loop.
const MAX_SESSIONS: usize = 10_000;
/// Failed logins one client address may make within `LOGIN_WINDOW`: enough for a few typos,
/// far too few to guess a token of 16 or more random characters.
const LOGIN_FAILURES: usize = 5;
const LOGIN_WINDOW: Duration = Duration::from_secs(60);
/// Client addresses whose failures are remembered at once; about 200 bytes each.
const MAX_TRACKED_CLIENTS: usize = 10_000;
/// Forms carry a token and a reason of at most `MAX_REASON` characters; nothing legitimate is
/// near this size.
const MAX_FORM_BYTES: usize = 16 * 1024;
/// Same bound as the operator API (`routes::operator`).
const MAX_REASON: usize = 1000;
/// How many decided gates the "recent decisions" table shows.
const RECENT_DECISIONS: usize = 50;
/// How many of the newest gates are searched for recent decisions, and the most open gates
/// of one state the page lists.
const SCAN_LIMIT: u32 = 1000;
/// The overview reloads itself (a `<meta refresh>`, no script) so a wall display stays current.
const REFRESH_SECS: u32 = 30;

/// The routes under `/ui`; mounted by `startup` outside the `/api/v1` scope.
pub fn scope() -> actix_web::Scope {
    web::scope("/ui")
        .route("", web::get().to(overview))
        .route("/", web::get().to(overview))
        .route("/login", web::get().to(login_form))
        .route("/login", web::post().to(login))
        .route("/logout", web::post().to(logout))
        .route("/gates/{id}", web::get().to(gate_page))
        .route("/gates/{id}/resume", web::post().to(resume))
        .route("/gates/{id}/abort", web::post().to(abort))
}

/// The page's state in `AppState`: live sessions and the failed-login counts, both in memory.
pub struct UiState {
    sessions: Sessions,
    failures: LoginLimiter,
}

impl UiState {
    pub fn new(settings: &UiSettings) -> UiState {
        UiState {
            sessions: Sessions::new(settings.session_ttl.0, MAX_SESSIONS),
            failures: LoginLimiter::new(LOGIN_FAILURES, LOGIN_WINDOW, MAX_TRACKED_CLIENTS),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Escaping and formatting

/// Escape text for HTML element content and double- or single-quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A URL fit for an `href`: absolute http(s) only, so a value such as `javascript:…` from a
/// request or a callback never becomes a link.
fn safe_href(url: &str) -> Option<&str> {
    match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(url),
        _ => None,
    }
}

/// `text`, linked to `url` when it is a safe http(s) URL.
fn link_or_text(text: &str, url: Option<&str>) -> String {
    match url.and_then(safe_href) {
        Some(href) => format!(
            "<a href=\"{}\" rel=\"noopener noreferrer\">{}</a>",
            escape(href),
            escape(text)
        ),
        None => escape(text),
    }
}

fn utc(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// An RFC 3339 time from the store or a gate view, shown in UTC; unparseable text as it is.
fn utc_text(s: &str) -> String {
    match DateTime::parse_from_rfc3339(s) {
        Ok(t) => utc(&t.with_timezone(&Utc)),
        Err(_) => s.to_string(),
    }
}

/// A duration for people: `45s`, `3m 12s`, `2h 05m`, `3d 4h`.
fn human(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86_400, (s % 86_400) / 3600),
    }
}

fn deadline_text(deadline: Option<&str>, now: DateTime<Utc>) -> String {
    let Some(d) = deadline else {
        return "—".into();
    };
    match DateTime::parse_from_rfc3339(d) {
        Ok(t) => {
            let t = t.with_timezone(&Utc);
            let rel = if t > now {
                format!("in {}", human(t - now))
            } else {
                "passed".into()
            };
            format!("{} ({rel})", utc(&t))
        }
        Err(_) => d.to_string(),
    }
}

fn state_badge(state: GateState) -> String {
    format!(
        "<span class=\"state {0}\">{0}</span>",
        escape(state.as_str())
    )
}

fn job_text(gate: &Gate) -> String {
    let name = gate.spec.item_name();
    let name = if name.is_empty() {
        gate.spec.job_url.clone()
    } else {
        name
    };
    match &gate.spec.branch_name {
        Some(b) if gate.spec.is_multi_branch => format!("{name} ({b})"),
        _ => name,
    }
}

fn job_cell(gate: &Gate) -> String {
    link_or_text(&job_text(gate), Some(&gate.spec.job_url))
}

fn build_cell(gate: &Gate) -> String {
    link_or_text(
        &format!("#{}", gate.spec.build_number),
        gate.spec.build_url.as_deref(),
    )
}

fn gate_href(id: Uuid) -> String {
    format!("/ui/gates/{id}")
}

fn cr_cell(gate: &Gate) -> String {
    match gate.change_request.as_ref() {
        Some(cr) => match cr.number.as_deref() {
            Some(n) => link_or_text(n, cr.url.as_deref()),
            None => cr
                .url
                .as_deref()
                .map(|u| link_or_text("change request", Some(u)))
                .unwrap_or_else(|| "—".into()),
        },
        None => "—".into(),
    }
}

fn cr_state(gate: &Gate) -> String {
    gate.change_request
        .as_ref()
        .and_then(|cr| cr.state.as_deref())
        .map(escape)
        .unwrap_or_else(|| "—".into())
}

fn proceed_text(p: Option<bool>) -> &'static str {
    match p {
        Some(true) => "yes",
        Some(false) => "no",
        None => "—",
    }
}

// ---------------------------------------------------------------------------------------------
// Sessions and CSRF

/// HMAC-SHA256 (RFC 2104).
fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    use hmac::Mac;
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

/// Derives and checks the CSRF token of a session.
pub struct CsrfKey([u8; 32]);

impl CsrfKey {
    pub fn random() -> CsrfKey {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        CsrfKey(key)
    }

    /// The token the session's forms carry: `hex(HMAC(key, session))`.
    pub fn token(&self, session: &str) -> String {
        hex::encode(hmac_sha256(&self.0, session.as_bytes()))
    }

    /// Does `presented` belong to `session`? Constant-time; a missing token never does.
    pub fn check(&self, session: &str, presented: Option<&str>) -> bool {
        let Some(p) = presented else {
            return false;
        };
        self.token(session).as_bytes().ct_eq(p.as_bytes()).into()
    }
}

/// One key per process: a restart ends the sessions the tokens belong to anyway.
fn csrf_key() -> &'static CsrfKey {
    static KEY: OnceLock<CsrfKey> = OnceLock::new();
    KEY.get_or_init(CsrfKey::random)
}

/// What the CSRF token of an `auth.disabled` deployment is derived from (there is no cookie).
const NO_AUTH_SESSION: &str = "auth-disabled";

struct Session {
    operator: String,
    /// What the CSRF token is derived from: the session id (the cookie's value), or
    /// `NO_AUTH_SESSION`.
    key: String,
    /// Whether there is a login to log out of.
    cookie: bool,
}

impl Session {
    fn csrf(&self) -> String {
        csrf_key().token(&self.key)
    }
}

/// The cookie's value from every `Cookie` header of the request.
fn cookie_value(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_string())
}

/// The live session the request's cookie names. An expired, revoked or forged id is no
/// session: pages send the browser to the login form, as without a cookie.
///
/// The operator's token is not checked again: the configuration, and with it the tokens, is
/// read only at start, and a restart ends every session.
fn session(req: &HttpRequest, state: &AppState) -> Option<Session> {
    if state.tokens.is_disabled() {
        return Some(Session {
            operator: "anonymous".into(),
            key: NO_AUTH_SESSION.into(),
            cookie: false,
        });
    }
    let id = cookie_value(req)?;
    let info = state.ui.sessions.get(&id)?;
    Some(Session {
        operator: info.operator,
        key: id,
        cookie: true,
    })
}

/// Whom failed logins are counted against: the connection's peer. `X-Forwarded-For` is not
/// used — any client can write it, and would get a fresh allowance with every value. Behind a
/// reverse proxy every browser shares the proxy's address, and so its allowance.
fn client_address(req: &HttpRequest) -> IpAddr {
    req.peer_addr()
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

fn is_https(req: &HttpRequest) -> bool {
    // ConnectionInfo honours `Forwarded` and `X-Forwarded-Proto` from a TLS-terminating proxy.
    req.connection_info().scheme().eq_ignore_ascii_case("https")
}

fn set_cookie(req: &HttpRequest, value: &str, max_age: u64) -> String {
    let secure = if is_https(req) { "; Secure" } else { "" };
    format!("{COOKIE}={value}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
}

// ---------------------------------------------------------------------------------------------
// Responses

#[derive(Debug, thiserror::Error)]
enum UiError {
    #[error("{1}")]
    Status(StatusCode, String),
    #[error("the store is unavailable")]
    Store(#[from] StoreError),
}

impl ResponseError for UiError {
    fn status_code(&self) -> StatusCode {
        match self {
            UiError::Status(s, _) => *s,
            UiError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let UiError::Store(e) = self {
            tracing::error!(error = %e, "status page: the store failed");
        }
        let status = self.status_code();
        let body = format!(
            "<h1>{}</h1><p class=\"error\">{}</p><p><a href=\"/ui\">Back to the overview</a></p>",
            status.as_u16(),
            escape(&self.to_string())
        );
        html(status, &layout("Error", None, false, &body))
    }
}

/// An HTML answer that is never cached and may run no script at all.
fn html(status: StatusCode, body: &str) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::REFERRER_POLICY, "same-origin"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(body.to_string())
}

/// 303 See Other: after a POST the browser GETs `location`.
fn redirect(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

fn to_login() -> HttpResponse {
    redirect("/ui/login")
}

const CSS: &str = "
body{font-family:system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{display:flex;align-items:center;gap:1em;background:#1d2330;color:#fff;padding:.6em 1.2em}
header a{color:#fff;text-decoration:none;font-weight:600}
header .who{margin-left:auto;font-size:.9em}
header form{display:inline;margin:0}
main{padding:1em 1.2em}
h1{font-size:1.3em}h2{font-size:1.1em;margin-top:1.6em}
table{border-collapse:collapse;width:100%;background:#fff;font-size:.9em}
th,td{border:1px solid #d8dce3;padding:.35em .5em;text-align:left;vertical-align:top}
th{background:#eceff3}
dl{display:grid;grid-template-columns:max-content auto;gap:.3em 1em;background:#fff;padding:1em}
dt{font-weight:600}dd{margin:0}
.state{padding:.1em .45em;border-radius:.3em;background:#e3e6ea;white-space:nowrap}
.pending,.registering{background:#fff1c2}
.approved,.resumed,.not_controlled{background:#d4f3d9}
.rejected,.canceled,.failed,.timed_out,.aborted{background:#f8d3d3}
.error{color:#8a1010;background:#fde8e8;padding:.6em;border:1px solid #f1b5b5}
.notice{background:#e6f2ff;padding:.6em;border:1px solid #b7d6f5}
.actions{display:flex;gap:2em;flex-wrap:wrap}
.actions form{background:#fff;padding:1em;border:1px solid #d8dce3}
input[type=text],input[type=password]{width:24em;max-width:100%}
button{padding:.3em .9em}
.muted{color:#667}
";

fn layout(title: &str, session: Option<&Session>, refresh: bool, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 2048);
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    if refresh {
        let _ = write!(
            out,
            "<meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\">"
        );
    }
    let _ = write!(
        out,
        "<title>{} · snowgate</title><style>{CSS}</style></head><body>",
        escape(title)
    );
    out.push_str("<header><a href=\"/ui\">snowgate</a><span>change-controlled stages</span>");
    if let Some(s) = session {
        let _ = write!(
            out,
            "<span class=\"who\">operator <strong>{}</strong></span>",
            escape(&s.operator)
        );
        if s.cookie {
            let _ = write!(
                out,
                "<form method=\"post\" action=\"/ui/logout\"><input type=\"hidden\" name=\"csrf\" \
                 value=\"{}\"><button type=\"submit\">Log out</button></form>",
                escape(&s.csrf())
            );
        }
    }
    out.push_str("</header><main>");
    out.push_str(body);
    out.push_str("</main></body></html>\n");
    out
}

// ---------------------------------------------------------------------------------------------
// Forms

async fn read_form(mut payload: web::Payload) -> Result<HashMap<String, String>, UiError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            UiError::Status(
                StatusCode::BAD_REQUEST,
                format!("the form could not be read: {e}"),
            )
        })?;
        if body.len() + chunk.len() > MAX_FORM_BYTES {
            return Err(UiError::Status(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the form is larger than {MAX_FORM_BYTES} bytes"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(url::form_urlencoded::parse(&body).into_owned().collect())
}

/// The reason, checked like the operator API checks it (required, ≤ 1000 characters, no
/// control characters).
fn reason_of(form: &HashMap<String, String>) -> Result<String, String> {
    let reason = form.get("reason").map(|r| r.trim()).unwrap_or_default();
    if reason.is_empty() {
        return Err("A reason is required: say why the stage is released or stopped.".into());
    }
    let obj = Map::from_iter([("reason".to_string(), Value::String(reason.to_string()))]);
    match Fields(&obj).string("reason", MAX_REASON) {
        Ok(Some(r)) => Ok(r),
        Ok(None) => Err("A reason is required: say why the stage is released or stopped.".into()),
        Err(e) => Err(format!("The reason {}.", e.problem)),
    }
}

// ---------------------------------------------------------------------------------------------
// Login

fn login_page(status: StatusCode, error: Option<&str>) -> HttpResponse {
    let mut body = String::from("<h1>Log in</h1>");
    if let Some(e) = error {
        let _ = write!(
            body,
            "<p class=\"error\" id=\"login-error\">{}</p>",
            escape(e)
        );
    }
    body.push_str(
        "<p>The status page needs an <strong>operator token</strong> \
         (<code>auth.operator_tokens</code> in the configuration).</p>\
         <form method=\"post\" action=\"/ui/login\" id=\"login-form\">\
         <p><label for=\"token\">Operator token</label><br>\
         <input type=\"password\" id=\"token\" name=\"token\" required \
         autocomplete=\"current-password\" autofocus></p>\
         <p><button type=\"submit\">Log in</button></p></form>",
    );
    html(status, &layout("Log in", None, false, &body))
}

async fn login_form(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if session(&req, &state).is_some() {
        return redirect("/ui");
    }
    login_page(StatusCode::OK, None)
}

/// 429: the client has failed too often; `wait` until it may try again.
fn too_many_failures(wait: Duration) -> HttpResponse {
    // Whole seconds, rounded up: trying again at `Retry-After` must not be early.
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let secs = secs.max(1);
    let mut resp = login_page(
        StatusCode::TOO_MANY_REQUESTS,
        Some(&format!(
            "Too many failed logins from your address: wait {secs} seconds, then try again."
        )),
    );
    resp.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
    resp
}

async fn login(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, UiError> {
    if state.tokens.is_disabled() {
        return Ok(redirect("/ui"));
    }
    let client = client_address(&req);
    // Checked before the token is even read: while held back, the right token is refused too,
    // so the answer says nothing about what was typed.
    if let Some(wait) = state.ui.failures.retry_after(client) {
        tracing::warn!(%client, "status page login refused: too many failed logins from this address");
        return Ok(too_many_failures(wait));
    }
    let form = read_form(payload).await?;
    let token = form.get("token").map(|t| t.trim()).unwrap_or_default();
    let refused = match state.tokens.operator_by_token(token, "use the status page") {
        Ok(who) => {
            let id = state.ui.sessions.issue(&who.name, token);
            tracing::info!(
                operator = %who.name,
                token = %sessions::token_fingerprint(token),
                %client,
                "operator logged in to the status page"
            );
            let ttl = state.ui.sessions.ttl().as_secs();
            return Ok(HttpResponse::SeeOther()
                .insert_header((header::LOCATION, "/ui"))
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .insert_header((header::SET_COOKIE, set_cookie(&req, &id, ttl)))
                .finish());
        }
        Err(ApiError::Forbidden(_)) => (
            StatusCode::FORBIDDEN,
            "a pipeline token",
            "That is a pipeline token: it may open and wait for gates, but the status page \
             needs an operator token.",
        ),
        Err(_) => (
            StatusCode::UNAUTHORIZED,
            "no known token",
            "That token is not valid.",
        ),
    };
    let (status, what, says) = refused;
    state.ui.failures.record_failure(client);
    // The address and the kind of failure only: what was typed stays out of the log, even a
    // prefix of it (it may be a real token with a typo, or one meant for another system).
    tracing::warn!(%client, presented = what, "status page login failed");
    Ok(login_page(status, Some(says)))
}

async fn logout(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, UiError> {
    let form = read_form(payload).await?;
    if let Some(s) = session(&req, &state) {
        if !csrf_key().check(&s.key, form.get("csrf").map(String::as_str)) {
            return Err(csrf_refused());
        }
        // Ended on the server: the cookie, replayed, no longer opens anything.
        if s.cookie && state.ui.sessions.revoke(&s.key).is_some() {
            tracing::info!(operator = %s.operator, "operator logged out of the status page");
        }
    }
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/ui/login"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::SET_COOKIE, set_cookie(&req, "", 0)))
        .finish())
}

fn csrf_refused() -> UiError {
    UiError::Status(
        StatusCode::FORBIDDEN,
        "This form has expired or did not come from this page (CSRF check failed): reload the \
         page and try again."
            .into(),
    )
}

// ---------------------------------------------------------------------------------------------
// Overview

async fn overview(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, UiError> {
    let Some(session) = session(&req, &state) else {
        return Ok(to_login());
    };
    let now = Utc::now();
    let mut open = state
        .store
        .list_gates(Some(GateState::Pending), SCAN_LIMIT)
        .await?;
    open.extend(
        state
            .store
            .list_gates(Some(GateState::Registering), SCAN_LIMIT)
            .await?,
    );
    // The longest wait first: that is the stage someone is most likely asking about.
    open.sort_by_key(|g| g.created_at);
    // A gate created long ago may be decided now: search the newest gates, order by decision.
    let mut decided: Vec<Gate> = state
        .store
        .list_gates(None, SCAN_LIMIT)
        .await?
        .into_iter()
        .filter(|g| g.state.is_terminal())
        .collect();
    decided.sort_by(|a, b| {
        b.decided_at
            .unwrap_or(b.updated_at)
            .cmp(&a.decided_at.unwrap_or(a.updated_at))
    });
    decided.truncate(RECENT_DECISIONS);

    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>Waiting stages</h1><p class=\"muted\">{} open gate(s) · as of {} · reloads every \
         {REFRESH_SECS}s</p>",
        open.len(),
        utc(&now)
    );
    body.push_str(
        "<table id=\"open-gates\"><thead><tr><th>State</th><th>Job</th><th>Build</th>\
         <th>Stage</th><th>Change request</th><th>CR state</th><th>Age</th><th>Deadline</th>\
         <th>Message</th></tr></thead><tbody>",
    );
    if open.is_empty() {
        body.push_str("<tr><td colspan=\"9\" class=\"muted\">No stage is waiting.</td></tr>");
    }
    for g in &open {
        let view = g.view();
        let _ = write!(
            body,
            "<tr id=\"gate-{id}\"><td>{state}</td><td>{job}</td><td>{build}</td>\
             <td><a href=\"{href}\">{stage}</a></td><td>{cr}</td><td>{crs}</td><td>{age}</td>\
             <td>{deadline}</td><td>{msg}</td></tr>",
            id = g.id,
            state = state_badge(g.state),
            job = job_cell(g),
            build = build_cell(g),
            href = gate_href(g.id),
            stage = escape(&g.spec.stage_path()),
            cr = cr_cell(g),
            crs = cr_state(g),
            age = human(now - g.created_at),
            deadline = escape(&deadline_text(view.deadline.as_deref(), now)),
            msg = escape(&g.message),
        );
    }
    body.push_str("</tbody></table>");

    body.push_str(
        "<h2>Recent decisions</h2><table id=\"recent-decisions\"><thead><tr><th>Decided at</th>\
         <th>Job</th><th>Build</th><th>Stage</th><th>Change request</th><th>State</th>\
         <th>Proceed</th><th>Decided by</th><th>Message</th></tr></thead><tbody>",
    );
    if decided.is_empty() {
        body.push_str("<tr><td colspan=\"9\" class=\"muted\">No decisions yet.</td></tr>");
    }
    for g in &decided {
        let _ = write!(
            body,
            "<tr id=\"gate-{id}\"><td>{at}</td><td>{job}</td><td>{build}</td>\
             <td><a href=\"{href}\">{stage}</a></td><td>{cr}</td><td>{state}</td>\
             <td>{proceed}</td><td>{by}</td><td>{msg}</td></tr>",
            id = g.id,
            at = g.decided_at.as_ref().map(utc).unwrap_or_else(|| "—".into()),
            job = job_cell(g),
            build = build_cell(g),
            href = gate_href(g.id),
            stage = escape(&g.spec.stage_path()),
            cr = cr_cell(g),
            state = state_badge(g.state),
            proceed = proceed_text(g.proceed),
            by = escape(g.decided_by.as_deref().unwrap_or("—")),
            msg = escape(&g.message),
        );
    }
    body.push_str("</tbody></table>");
    Ok(html(
        StatusCode::OK,
        &layout("Status", Some(&session), true, &body),
    ))
}

// ---------------------------------------------------------------------------------------------
// One gate

/// What the gate page says above the gate.
enum Notice {
    Done(GateState),
    Error(String),
}

fn parse_id(raw: &str) -> Result<Uuid, UiError> {
    Uuid::parse_str(raw).map_err(|_| {
        UiError::Status(
            StatusCode::NOT_FOUND,
            format!(
                "There is no gate `{}`.",
                raw.chars().take(64).collect::<String>()
            ),
        )
    })
}

async fn gate_page(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, UiError> {
    let Some(session) = session(&req, &state) else {
        return Ok(to_login());
    };
    let id = parse_id(&path)?;
    // Only fixed words come from the query string: it never puts text of its own on the page.
    let done = url::form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, _)| k == "done")
        .and_then(|(_, v)| match v.as_ref() {
            "resumed" => Some(GateState::Resumed),
            "aborted" => Some(GateState::Aborted),
            _ => None,
        });
    render_gate(&state, &session, id, done.map(Notice::Done), StatusCode::OK).await
}

async fn render_gate(
    state: &AppState,
    session: &Session,
    id: Uuid,
    notice: Option<Notice>,
    status: StatusCode,
) -> Result<HttpResponse, UiError> {
    let gate =
        state.store.gate(id).await?.ok_or_else(|| {
            UiError::Status(StatusCode::NOT_FOUND, format!("There is no gate {id}."))
        })?;
    let events = state.store.events(id).await?;
    let body = gate_body(&gate, &events, session, notice, Utc::now());
    Ok(html(
        status,
        &layout(&gate.spec.stage_path(), Some(session), false, &body),
    ))
}

fn gate_body(
    gate: &Gate,
    events: &[Event],
    session: &Session,
    notice: Option<Notice>,
    now: DateTime<Utc>,
) -> String {
    let view = gate.view();
    let mut body = String::new();
    let _ = write!(
        body,
        "<p><a href=\"/ui\">← all gates</a></p><h1>{} {}</h1>",
        escape(&gate.spec.stage_path()),
        state_badge(gate.state)
    );
    match notice {
        Some(Notice::Done(s)) => {
            let _ = write!(
                body,
                "<p class=\"notice\" id=\"notice\">The gate is now {}.</p>",
                escape(s.as_str())
            );
        }
        Some(Notice::Error(e)) => {
            let _ = write!(body, "<p class=\"error\" id=\"error\">{}</p>", escape(&e));
        }
        None => {}
    }
    let cr = gate.change_request.clone().unwrap_or_default();
    let opt = |v: Option<&str>| escape(v.unwrap_or("—"));
    let rows: Vec<(&str, String)> = vec![
        ("Gate", escape(&gate.id.to_string())),
        ("State", state_badge(gate.state)),
        ("Proceed", proceed_text(gate.proceed).into()),
        ("Message", escape(&gate.message)),
        ("Job", job_cell(gate)),
        (
            "Job URL",
            link_or_text(&gate.spec.job_url, Some(&gate.spec.job_url)),
        ),
        ("Build", build_cell(gate)),
        ("Stage", escape(&gate.spec.stage_path())),
        ("Branch", opt(gate.spec.branch_name.as_deref())),
        ("Change request", cr_cell(gate)),
        ("CR state", opt(cr.state.as_deref())),
        ("Planned start", opt(cr.planned_start_date.as_deref())),
        ("Planned end", opt(cr.planned_end_date.as_deref())),
        ("Approvers", opt(cr.approvers.as_deref())),
        (
            "Created",
            format!(
                "{} ({} ago)",
                utc(&gate.created_at),
                human(now - gate.created_at)
            ),
        ),
        ("Updated", utc(&gate.updated_at)),
        (
            "Deadline",
            escape(&deadline_text(view.deadline.as_deref(), now)),
        ),
        (
            "Decided at",
            gate.decided_at
                .as_ref()
                .map(utc)
                .unwrap_or_else(|| "—".into()),
        ),
        ("Decided by", opt(gate.decided_by.as_deref())),
    ];
    body.push_str("<dl id=\"gate\">");
    for (k, v) in rows {
        let _ = write!(body, "<dt>{k}</dt><dd>{v}</dd>");
    }
    body.push_str("</dl>");

    if gate.state.is_terminal() {
        body.push_str(
            "<p class=\"muted\">This gate is decided; it can no longer be resumed or aborted.</p>",
        );
    } else {
        let csrf = escape(&session.csrf());
        let _ = write!(
            body,
            "<h2>Decide by hand</h2><div class=\"actions\">\
             <form method=\"post\" action=\"/ui/gates/{id}/resume\" id=\"resume-form\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <p><label for=\"resume-reason\">Reason for resuming</label><br>\
             <input type=\"text\" id=\"resume-reason\" name=\"reason\" required \
             maxlength=\"{MAX_REASON}\" placeholder=\"e.g. CAB approved by phone\"></p>\
             <p><button type=\"submit\">Resume: let the stage proceed</button></p></form>\
             <form method=\"post\" action=\"/ui/gates/{id}/abort\" id=\"abort-form\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <p><label for=\"abort-reason\">Reason for aborting</label><br>\
             <input type=\"text\" id=\"abort-reason\" name=\"reason\" required \
             maxlength=\"{MAX_REASON}\" placeholder=\"e.g. wrong artifact\"></p>\
             <p><button type=\"submit\">Abort: stop the stage</button></p></form></div>",
            id = gate.id,
        );
    }

    body.push_str(
        "<h2>Event log</h2><table id=\"events\"><thead><tr><th>Time</th><th>Actor</th>\
         <th>Event</th><th>From → to</th><th>Message</th></tr></thead><tbody>",
    );
    if events.is_empty() {
        body.push_str("<tr><td colspan=\"5\" class=\"muted\">No events.</td></tr>");
    }
    for e in events {
        let from = e.from_state.map(|s| s.as_str()).unwrap_or("—");
        let to = e.to_state.map(|s| s.as_str()).unwrap_or("—");
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} → {}</td><td>{}</td></tr>",
            escape(&utc_text(&e.at)),
            escape(&e.actor),
            escape(&e.kind),
            escape(from),
            escape(to),
            escape(&e.message)
        );
    }
    body.push_str("</tbody></table>");
    body
}

// ---------------------------------------------------------------------------------------------
// Resume / abort

/// Decide through the one decision path, exactly as `routes::operator` does.
async fn act(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
    to: GateState,
) -> Result<HttpResponse, UiError> {
    let Some(session) = session(&req, &state) else {
        return Ok(to_login());
    };
    let form = read_form(payload).await?;
    if !csrf_key().check(&session.key, form.get("csrf").map(String::as_str)) {
        return Err(csrf_refused());
    }
    let id = parse_id(&path)?;
    let reason = match reason_of(&form) {
        Ok(r) => r,
        Err(why) => {
            return render_gate(
                &state,
                &session,
                id,
                Some(Notice::Error(why)),
                StatusCode::BAD_REQUEST,
            )
            .await;
        }
    };
    let who = &session.operator;
    let (verb, transition) = crate::decisions::operator_decision(id, to, who, &reason);
    let outcome = state.decider.decide(transition).await?;
    match outcome {
        TransitionOutcome::Applied(gate) => {
            tracing::info!(gate_id = %gate.id, operator = %who, %reason, "gate {verb} by an operator on the status page");
            Ok(redirect(&format!("{}?done={verb}", gate_href(gate.id))))
        }
        TransitionOutcome::Conflict(gate) => {
            render_gate(
                &state,
                &session,
                id,
                Some(Notice::Error(format!(
                    "The gate is already {}; it cannot be {verb}.",
                    gate.state
                ))),
                StatusCode::CONFLICT,
            )
            .await
        }
        TransitionOutcome::NotFound => Err(UiError::Status(
            StatusCode::NOT_FOUND,
            format!("There is no gate {id}."),
        )),
    }
}

#[tracing::instrument(skip_all, fields(gate_id = %path))]
async fn resume(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, UiError> {
    act(req, path, payload, state, GateState::Resumed).await
}

#[tracing::instrument(skip_all, fields(gate_id = %path))]
async fn abort(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, UiError> {
    act(req, path, payload, state, GateState::Aborted).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_neutralises_every_html_special_character() {
        assert_eq!(
            escape(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
        assert_eq!(escape("plain Deploy/Prod ü"), "plain Deploy/Prod ü");
        assert_eq!(escape("&amp;"), "&amp;amp;");
    }

    #[test]
    fn only_http_urls_become_links() {
        assert_eq!(
            link_or_text("CHG1", Some("https://sn.example.com/x?a=1&b=2")),
            "<a href=\"https://sn.example.com/x?a=1&amp;b=2\" rel=\"noopener noreferrer\">CHG1</a>"
        );
        for bad in [
            "javascript:alert(1)",
            "JAVASCRIPT:alert(1)",
            "data:text/html,<b>x</b>",
            "/relative",
            "",
        ] {
            assert_eq!(link_or_text("<CHG1>", Some(bad)), "&lt;CHG1&gt;", "{bad}");
        }
        assert_eq!(
            link_or_text("x", Some("https://a/\"><script>")),
            "<a href=\"https://a/&quot;&gt;&lt;script&gt;\" rel=\"noopener noreferrer\">x</a>"
        );
    }

    #[test]
    fn hmac_matches_rfc_4231_test_case_1() {
        let mac = hmac_sha256(&[0x0b; 20], b"Hi There");
        assert_eq!(
            hex::encode(mac),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
    }

    #[test]
    fn hmac_matches_rfc_4231_test_case_6_with_a_long_key() {
        let mac = hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
        );
        assert_eq!(
            hex::encode(mac),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn a_csrf_token_is_accepted_only_for_its_own_session_and_key() {
        let key = CsrfKey::random();
        let session = &"0123456789abcdef".repeat(4);
        let token = key.token(session);
        assert!(key.check(session, Some(&token)));
        assert!(!key.check(session, None), "missing");
        assert!(!key.check(session, Some("")), "empty");
        assert!(!key.check(session, Some(&token[..token.len() - 1])), "cut");
        assert!(
            !key.check(&"fedcba9876543210".repeat(4), Some(&token)),
            "other session"
        );
        assert!(
            !CsrfKey::random().check(session, Some(&token)),
            "other process"
        );
        let mut flipped = token.clone().into_bytes();
        flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
        assert!(!key.check(session, Some(std::str::from_utf8(&flipped).unwrap())));
    }

    #[test]
    fn the_reason_is_required_and_checked_like_the_api() {
        let form = |r: Option<&str>| {
            r.map(|r| HashMap::from([("reason".to_string(), r.to_string())]))
                .unwrap_or_default()
        };
        assert_eq!(
            reason_of(&form(Some(" wrong artifact "))).unwrap(),
            "wrong artifact"
        );
        for bad in [None, Some(""), Some("   ")] {
            assert!(
                reason_of(&form(bad)).unwrap_err().contains("required"),
                "{bad:?}"
            );
        }
        assert!(reason_of(&form(Some(&"x".repeat(1001))))
            .unwrap_err()
            .contains("at most 1000"));
        assert!(reason_of(&form(Some("a\u{7}b"))).is_err());
    }

    #[test]
    fn durations_read_like_people_write_them() {
        let d = chrono::Duration::seconds;
        assert_eq!(human(d(-5)), "0s");
        assert_eq!(human(d(45)), "45s");
        assert_eq!(human(d(192)), "3m 12s");
        assert_eq!(human(d(2 * 3600 + 5 * 60)), "2h 05m");
        assert_eq!(human(d(3 * 86_400 + 4 * 3600)), "3d 4h");
    }

    #[test]
    fn deadlines_show_in_utc_with_the_time_left() {
        let now = DateTime::parse_from_rfc3339("2026-01-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(deadline_text(None, now), "—");
        assert_eq!(
            deadline_text(Some("2026-01-01T12:05:00.000Z"), now),
            "2026-01-01 12:05:00 UTC (in 5m 00s)"
        );
        assert_eq!(
            deadline_text(Some("2026-01-01T11:00:00+00:00"), now),
            "2026-01-01 11:00:00 UTC (passed)"
        );
    }
}
