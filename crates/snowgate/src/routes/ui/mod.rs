//! The status page at `/ui`: open gates, recent decisions, a gate's event log, and resume/abort
//! forms for operators. Plain server-rendered HTML with inline CSS and no JavaScript, so it works
//! on a machine without internet access and under a CSP that forbids every script.
//!
//! The HTML is built with `maud` templates: checked at compile time, and every value spliced
//! into them is escaped (see [`layout::Text`]), so no request or callback text becomes markup.
//! One module per page: [`overview`], [`gate`], [`login`]; [`actions`] takes the resume and
//! abort forms; [`layout`] holds the frame and the cells the pages share; [`session`] the
//! cookie, the session lookup and the CSRF tokens. The overview's parts: [`filters`] (the GET
//! form and its matching), [`stats`] (per-day medians, percentiles and outcomes, pure) and
//! [`charts`] (their inline SVG); the gate page's: [`timeline`] (inline SVG) and [`evidence`]
//! (the evidence and conflict-check sections, read from the event log).
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
mod actions;
mod charts;
mod evidence;
mod filters;
mod gate;
mod layout;
mod login;
mod overview;
mod session;
pub mod sessions;
mod stats;
mod timeline;

use std::collections::HashMap;
use std::time::Duration;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpResponse, ResponseError};
use futures::StreamExt as _;
use maud::{html, Markup};

use self::layout::{layout, Text};
use self::sessions::{LoginLimiter, Sessions};
use crate::configuration::UiSettings;
use crate::store::StoreError;

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

/// The routes under `/ui`; mounted by `startup` outside the `/api/v1` scope.
pub fn scope() -> actix_web::Scope {
    web::scope("/ui")
        .route("", web::get().to(overview::overview))
        .route("/", web::get().to(overview::overview))
        .route("/login", web::get().to(login::login_form))
        .route("/login", web::post().to(login::login))
        .route("/logout", web::post().to(login::logout))
        .route("/gates/{id}", web::get().to(gate::gate_page))
        .route("/gates/{id}/resume", web::post().to(actions::resume))
        .route("/gates/{id}/abort", web::post().to(actions::abort))
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
        let body = html! {
            h1 { (status.as_u16()) }
            p class="error" { (Text(&self.to_string())) }
            p { a href="/ui" { "Back to the overview" } }
        };
        page(status, layout("Error", None, None, body))
    }
}

/// An HTML answer that is never cached and may run no script at all.
fn page(status: StatusCode, markup: Markup) -> HttpResponse {
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
        .body(markup.into_string())
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

/// A form body (`application/x-www-form-urlencoded`) of at most `MAX_FORM_BYTES`.
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
