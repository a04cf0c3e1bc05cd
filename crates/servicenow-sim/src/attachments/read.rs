//! Reading attachments back, ServiceNow's "Attachment - GET /now/attachment" ("Returns the
//! metadata for multiple attachments", `sysparm_query` an encoded query against
//! sys_attachment, `sysparm_limit` default 1000) and "GET /now/attachment/{sys_id}/file"
//! (the binary). Both need authentication as the upload does, and a role that may read CRs.
//!
//! The encoded query understands `field=value` conditions joined by `^` on `table_name`,
//! `table_sys_id`, `file_name` and `content_type`, and ignores `ORDERBY…` terms; any other
//! condition is a 400 (an instance may instead ignore a condition it cannot read and answer
//! every row: the simulator never answers more than was asked for).

use std::sync::Arc;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::{AttachmentRecord, WRITE_ROLES};
use crate::change::{fault_response, platform_error};
use crate::protocol::query_pairs;
use crate::{RecordedRequest, Shared};

/// Roles that may read a CR's attachments: the change API's read and write roles.
const READ_ROLES: [&str; 1] = ["sn_change_read"];

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource(["/api/now/attachment", "/api/now/v1/attachment"]).to(list))
        .service(
            web::resource([
                "/api/now/attachment/{sys_id}/file",
                "/api/now/v1/attachment/{sys_id}/file",
            ])
            .to(file),
        );
}

/// The refusal every read shares: the method, authentication and roles.
fn refused(shared: &Shared, req: &HttpRequest) -> Option<HttpResponse> {
    shared.with_model(|m| m.record_request(RecordedRequest::capture(req, &[])));
    if req.method() != actix_web::http::Method::GET {
        return Some(platform_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method not Supported",
            &format!("{} is not supported for {}", req.method(), req.path()),
        ));
    }
    if !crate::change::authenticated(shared, req) {
        return Some(fault_response(401));
    }
    let roles = shared.with_chg(|c| c.roles.clone());
    let may_read = roles
        .iter()
        .any(|r| WRITE_ROLES.contains(&r.as_str()) || READ_ROLES.contains(&r.as_str()));
    (!may_read).then(|| {
        platform_error(
            StatusCode::FORBIDDEN,
            "Operation Failed",
            "ACL Exception Read Failed due to security constraints (requires sn_change_read or itil)",
        )
    })
}

/// The rows `query` selects, as `(field, value)` conditions; an error names the first
/// condition the simulator does not read.
fn conditions(query: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for term in query.split('^').filter(|t| !t.is_empty()) {
        if term.starts_with("ORDERBY") {
            continue;
        }
        match term.split_once('=') {
            Some((field, value))
                if ["table_name", "table_sys_id", "file_name", "content_type"].contains(&field) =>
            {
                out.push((field.to_string(), value.to_string()));
            }
            _ => return Err(term.to_string()),
        }
    }
    Ok(out)
}

fn matches(record: &AttachmentRecord, conditions: &[(String, String)]) -> bool {
    conditions.iter().all(|(field, value)| {
        let actual = match field.as_str() {
            "table_name" => &record.table_name,
            "table_sys_id" => &record.table_sys_id,
            "file_name" => &record.file_name,
            _ => &record.content_type,
        };
        actual == value
    })
}

/// `GET /api/now/attachment` → `{"result": [metadata…]}`, the oldest first.
async fn list(req: HttpRequest, data: web::Data<Shared>) -> HttpResponse {
    let shared: Arc<Shared> = data.into_inner();
    if let Some(refusal) = refused(&shared, &req) {
        return refusal;
    }
    let pairs = query_pairs(req.query_string());
    let param = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let conditions = match conditions(param("sysparm_query").unwrap_or("")) {
        Ok(c) => c,
        Err(term) => {
            return platform_error(
                StatusCode::BAD_REQUEST,
                "Invalid query",
                &format!("The simulator does not read the condition `{term}`"),
            )
        }
    };
    let limit = match param("sysparm_limit").map(str::parse::<usize>) {
        None => 1000,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            return platform_error(
                StatusCode::BAD_REQUEST,
                "Invalid sysparm_limit",
                "sysparm_limit must be a number",
            )
        }
    };
    let rows: Vec<_> = shared.with_attachments(|s| {
        s.records
            .iter()
            .filter(|r| matches(r, &conditions))
            .take(limit)
            .map(|r| super::routes::metadata(r, &shared.base_url, &shared.settings.user))
            .collect()
    });
    HttpResponse::Ok().json(json!({ "result": rows }))
}

/// `GET /api/now/attachment/{sys_id}/file` → the bytes, with the attachment's content type.
async fn file(req: HttpRequest, path: web::Path<String>, data: web::Data<Shared>) -> HttpResponse {
    let shared: Arc<Shared> = data.into_inner();
    if let Some(refusal) = refused(&shared, &req) {
        return refusal;
    }
    let sys_id = path.into_inner();
    let found = shared.with_attachments(|s| {
        s.records
            .iter()
            .find(|r| r.sys_id == sys_id)
            .map(|r| (r.content_type.clone(), r.content.clone()))
    });
    match found {
        Some((content_type, content)) => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, content_type))
            .body(content),
        None => platform_error(
            StatusCode::NOT_FOUND,
            "No Record found",
            &format!("Attachment {sys_id} does not exist or is not accessible"),
        ),
    }
}
