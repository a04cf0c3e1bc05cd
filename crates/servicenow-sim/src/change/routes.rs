//! Routing under `/api/sn_chg_rest`, and the checks every call passes before its handler, in
//! the order an instance applies them; the platform's error answers.

use std::sync::Arc;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;
use subtle::ConstantTimeEq as _;

use super::conflicts;
use super::handlers::{create, get, list, patch, templates};
use super::record::{ChgError, Shape};
use super::state_model::ChangeType;
use super::{READ_ROLES, WRITE_ROLES};
use crate::faults::status_message;
use crate::protocol::{
    check_accept, is_json_content_type, parse_authorization, query_pairs, AcceptCheck, Credentials,
    RouteError,
};
use crate::{RecordedRequest, Shared};

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::scope("/api/sn_chg_rest").default_service(web::to(entry)));
}

/// The change-API endpoints the simulator serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ChgRoute {
    List,
    Get(String),
    Create {
        kind: ChangeType,
        /// The standard template's sys_id.
        template: Option<String>,
    },
    Patch(String),
    Templates,
    /// `POST /change/{sys_id}/conflict`.
    ConflictStart(String),
    /// `GET /change/{sys_id}/conflict`.
    ConflictStatus(String),
    /// `DELETE /change/{sys_id}/conflict`.
    ConflictCancel(String),
}

impl ChgRoute {
    /// The key a [`crate::Fault`] names this endpoint by.
    pub(crate) fn fault_key(&self) -> &'static str {
        match self {
            ChgRoute::List | ChgRoute::Get(_) => "change.get",
            ChgRoute::Create { .. } => "change.post",
            ChgRoute::Patch(_) => "change.patch",
            ChgRoute::Templates => "change.template",
            ChgRoute::ConflictStart(_) => "change.conflict.post",
            ChgRoute::ConflictStatus(_) => "change.conflict.get",
            ChgRoute::ConflictCancel(_) => "change.conflict.delete",
        }
    }

    /// The calls that take a JSON body and so need `Content-Type: application/json`. Not the
    /// conflict POST: ServiceNow documents neither a body nor a `Content-Type` for it (its
    /// example sends only `Accept`).
    pub(super) fn takes_json_body(&self) -> bool {
        matches!(self, ChgRoute::Create { .. } | ChgRoute::Patch(_))
    }
}

/// Parses a raw path under `/api/sn_chg_rest/` (optionally `v1/`).
pub(crate) fn parse_route(method: &str, path: &str) -> Result<ChgRoute, RouteError> {
    let rest = path
        .strip_prefix("/api/sn_chg_rest/")
        .ok_or(RouteError::UnknownResource)?;
    let rest = rest.strip_prefix("v1/").unwrap_or(rest);
    let segments: Vec<&str> = rest.split('/').collect();
    let decoded = |s: &str| crate::protocol::decode_again(s);
    let route = match (segments.as_slice(), method) {
        (["change"], "GET") => ChgRoute::List,
        (["change", kind @ ("normal" | "emergency")], "POST") => ChgRoute::Create {
            kind: ChangeType::parse(kind).ok_or(RouteError::UnknownResource)?,
            template: None,
        },
        (["change", "standard", "template"], "GET") => ChgRoute::Templates,
        (["change", "standard", id], "POST") if !id.is_empty() && *id != "template" => {
            ChgRoute::Create {
                kind: ChangeType::Standard,
                template: Some(decoded(id)),
            }
        }
        (["change"], _)
        | (["change", "normal" | "emergency" | "standard"], _)
        | (["change", "standard", _], _) => return Err(RouteError::MethodNotAllowed),
        (["change", id, "conflict"], method) if !id.is_empty() => match method {
            "POST" => ChgRoute::ConflictStart(decoded(id)),
            "GET" => ChgRoute::ConflictStatus(decoded(id)),
            "DELETE" => ChgRoute::ConflictCancel(decoded(id)),
            _ => return Err(RouteError::MethodNotAllowed),
        },
        (["change", id], "GET") if !id.is_empty() => ChgRoute::Get(decoded(id)),
        (["change", id], "PATCH") if !id.is_empty() => ChgRoute::Patch(decoded(id)),
        (["change", id], _) if !id.is_empty() => return Err(RouteError::MethodNotAllowed),
        _ => return Err(RouteError::UnknownResource),
    };
    Ok(route)
}

/// Entry point for everything under `/api/sn_chg_rest`.
pub(crate) async fn entry(
    req: HttpRequest,
    body: web::Bytes,
    data: web::Data<Shared>,
) -> HttpResponse {
    let shared = data.into_inner();
    shared.with_model(|m| m.record_request(RecordedRequest::capture(&req, &body)));
    let path = req.path();
    match parse_route(req.method().as_str(), path) {
        Ok(route) => serve(&shared, &req, &body, route).await,
        Err(RouteError::MethodNotAllowed) => platform_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method not Supported",
            &format!("{} is not supported for {path}", req.method()),
        ),
        Err(RouteError::UnknownResource) => platform_error(
            StatusCode::BAD_REQUEST,
            "Requested URI does not represent any resource",
            path,
        ),
    }
}

#[tracing::instrument(skip_all, fields(endpoint = route.fault_key()))]
pub(super) async fn serve(
    shared: &Arc<Shared>,
    req: &HttpRequest,
    body: &[u8],
    route: ChgRoute,
) -> HttpResponse {
    let action = shared.with_model(|m| m.faults.on_call(route.fault_key()));
    if !action.latency.is_zero() {
        tokio::time::sleep(action.latency).await;
    }
    if let Some(status) = action.fail_with {
        tracing::debug!(status, "injected fault");
        return fault_response(status);
    }

    if !authenticated(shared, req) {
        return unauthorized();
    }

    if let Some(refused) = header_refusal(req, &route) {
        return refused;
    }

    let roles = shared.with_chg(|c| c.roles.clone());
    if let Some(denied) = acl_denial(&route, &roles) {
        return denied;
    }

    let pairs = query_pairs(req.query_string());
    let shape = Shape::of(&shared.settings);
    let result = match route {
        ChgRoute::List => list(shared, &pairs, shape),
        ChgRoute::Get(sys_id) => get(shared, &sys_id, &pairs, shape),
        ChgRoute::Templates => templates(shared, &pairs, shape),
        ChgRoute::Create { kind, template } => {
            create(shared, kind, template.as_deref(), &pairs, body, shape)
        }
        ChgRoute::Patch(sys_id) => patch(shared, &sys_id, &pairs, body, shape),
        // None of the three takes query parameters or a body; both are ignored.
        ChgRoute::ConflictStart(sys_id) => conflicts::start(shared, &sys_id),
        ChgRoute::ConflictStatus(sys_id) => conflicts::status(shared, &sys_id),
        ChgRoute::ConflictCancel(sys_id) => conflicts::cancel(shared, &sys_id),
    };
    result.unwrap_or_else(ChgError::into_response)
}

/// The 400 or 406 for a missing or non-JSON `Accept`, or a write without
/// `Content-Type: application/json`.
fn header_refusal(req: &HttpRequest, route: &ChgRoute) -> Option<HttpResponse> {
    match check_accept(header_value(req, header::ACCEPT)) {
        AcceptCheck::Json => {}
        AcceptCheck::Missing => {
            return Some(platform_error(
                StatusCode::BAD_REQUEST,
                "Accept header is required",
                "This API only supports application/json: send Accept: application/json",
            ))
        }
        AcceptCheck::NotAcceptable => {
            return Some(platform_error(
                StatusCode::NOT_ACCEPTABLE,
                "Not Acceptable",
                "This API only supports application/json responses",
            ))
        }
    }

    if route.takes_json_body() && !is_json_content_type(header_value(req, header::CONTENT_TYPE)) {
        return Some(platform_error(
            StatusCode::BAD_REQUEST,
            "Content-Type header is required",
            "POST and PATCH requests must be sent with Content-Type: application/json",
        ));
    }
    None
}

pub(super) type Answer = Result<HttpResponse, ChgError>;

/// `Authorization: Bearer <access token>` (valid and unexpired) or Basic with the simulator's
/// user and password. Only the first `Authorization` header counts.
pub(crate) fn authenticated(shared: &Shared, req: &HttpRequest) -> bool {
    let Some(value) = header_value(req, header::AUTHORIZATION) else {
        return false;
    };
    let value = value.trim();
    if let Some((scheme, token)) = value.split_once(' ') {
        if scheme.eq_ignore_ascii_case("bearer") {
            return shared.with_oauth(|o| o.is_valid(token.trim()));
        }
    }
    match parse_authorization(value) {
        Some(Credentials::Basic { user, password }) => {
            let settings = &shared.settings;
            bool::from(user.as_bytes().ct_eq(settings.user.as_bytes()))
                & bool::from(password.as_bytes().ct_eq(settings.password.as_bytes()))
        }
        _ => false,
    }
}

/// The 403 an instance's ACLs answer when the account lacks the roles.
pub(super) fn acl_denial(route: &ChgRoute, roles: &[String]) -> Option<HttpResponse> {
    let has = |wanted: &[&str]| roles.iter().any(|r| wanted.contains(&r.as_str()));
    let (message, detail) = match route {
        ChgRoute::Create { .. } if !has(&WRITE_ROLES) => (
            "Operation Failed",
            "ACL Exception Insert Failed due to security constraints (requires sn_change_write or itil)",
        ),
        ChgRoute::Patch(_) if !has(&WRITE_ROLES) => (
            "Operation Failed",
            "ACL Exception Update Failed due to security constraints (requires sn_change_write or itil)",
        ),
        // ServiceNow's Change Management API: GET takes the read roles, POST the write roles.
        // DELETE is documented as change_manager or admin; the simulator's account has only
        // read and write roles, so DELETE takes the write roles.
        ChgRoute::ConflictStart(_) | ChgRoute::ConflictCancel(_) if !has(&WRITE_ROLES) => (
            "User Not Authorized",
            "ACL restricts conflict checking (requires sn_change_write or itil)",
        ),
        ChgRoute::List | ChgRoute::Get(_) | ChgRoute::Templates | ChgRoute::ConflictStatus(_)
            if !has(&READ_ROLES) =>
        (
            "User Not Authorized",
            "ACL restricts the record retrieval (requires sn_change_read or itil)",
        ),
        _ => return None,
    };
    Some(platform_error(StatusCode::FORBIDDEN, message, detail))
}

pub(super) fn header_value(req: &HttpRequest, name: header::HeaderName) -> Option<&str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// ServiceNow's error shape: `{"error": {"message", "detail"}, "status": "failure"}`.
pub(crate) fn platform_error(status: StatusCode, message: &str, detail: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({
        "error": {"message": message, "detail": detail},
        "status": "failure",
    }))
}

pub(crate) fn unauthorized() -> HttpResponse {
    HttpResponse::Unauthorized()
        .insert_header((header::WWW_AUTHENTICATE, "BASIC realm=\"Service-now\""))
        .json(json!({
            "error": {
                "message": "User Not Authenticated",
                "detail": "Required to provide Auth information",
            },
            "status": "failure",
        }))
}

/// The answer to a call an injected fault fails: the platform error shape (401 as the
/// authentication failure; 429 with `Retry-After: 1`).
pub(crate) fn fault_response(status: u16) -> HttpResponse {
    if status == 401 {
        return unauthorized();
    }
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = HttpResponse::build(code);
    if status == 429 {
        response.insert_header((header::RETRY_AFTER, "1"));
    }
    response.json(json!({
        "error": {
            "message": status_message(status),
            "detail": "Fault injected by the ServiceNow simulator",
        },
        "status": "failure",
    }))
}
