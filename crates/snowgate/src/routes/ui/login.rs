//! Logging in with an operator token (throttled per client address) and logging out.
use std::time::Duration;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use maud::html;

use super::layout::{layout, Text};
use super::session::{client_address, session, set_cookie};
use super::{page, read_form, redirect, sessions, UiError};
use crate::routes::ApiError;
use crate::state::AppState;

fn login_page(status: StatusCode, error: Option<&str>) -> HttpResponse {
    let content = html! {
        h1 { "Log in" }
        @if let Some(e) = error {
            p class="error" id="login-error" { (Text(e)) }
        }
        p {
            "The status page needs an " strong { "operator token" }
            " (" code { "auth.operator_tokens" } " in the configuration)."
        }
        form method="post" action="/ui/login" id="login-form" {
            p {
                label for="token" { "Operator token" }
                br;
                input type="password" id="token" name="token" required
                    autocomplete="current-password" autofocus;
            }
            p { button type="submit" { "Log in" } }
        }
    };
    page(status, layout("Log in", None, None, content))
}

pub(super) async fn login_form(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
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

/// 303 to the overview with a new session's cookie.
fn logged_in(req: &HttpRequest, state: &AppState, operator: &str, token: &str) -> HttpResponse {
    let id = state.ui.sessions.issue(operator, token);
    tracing::info!(
        operator = %operator,
        token = %sessions::token_fingerprint(token),
        client = %client_address(req),
        "operator logged in to the status page"
    );
    let ttl = state.ui.sessions.ttl().as_secs();
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/ui"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::SET_COOKIE, set_cookie(req, &id, ttl)))
        .finish()
}

pub(super) async fn login(
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
    let (status, what, says) = match state.tokens.operator_by_token(token, "use the status page") {
        Ok(who) => return Ok(logged_in(&req, &state, &who.name, token)),
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
    state.ui.failures.record_failure(client);
    // The address and the kind of failure only: what was typed stays out of the log, even a
    // prefix of it (it may be a real token with a typo, or one meant for another system).
    tracing::warn!(%client, presented = what, "status page login failed");
    Ok(login_page(status, Some(says)))
}

pub(super) async fn logout(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, UiError> {
    let form = read_form(payload).await?;
    if let Some(s) = session(&req, &state) {
        s.check_csrf(&form)?;
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
