//! `POST /api/now/attachment/file` and `/api/now/v1/attachment/file`: the checks in the order
//! the module documentation gives, then the upload.

use std::sync::Arc;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::{sha256, AttachmentRecord, CHANGE_TABLE, MAX_UPLOAD_BYTES, WRITE_ROLES};
use crate::change::{fault_response, platform_error};
use crate::protocol::{check_accept, query_pairs, AcceptCheck};
use crate::{RecordedRequest, Shared};

const FAULT_KEY: &str = "attachment.post";

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource(["/api/now/attachment/file", "/api/now/v1/attachment/file"])
            .app_data(web::PayloadConfig::new(MAX_UPLOAD_BYTES))
            .to(entry),
    );
    super::read::configure(cfg);
    super::admin::configure(cfg);
}

/// A request refused before any work: the platform's error answer, built once.
struct Refusal {
    status: StatusCode,
    message: &'static str,
    detail: String,
}

impl Refusal {
    fn into_response(self) -> HttpResponse {
        platform_error(self.status, self.message, &self.detail)
    }
}

/// The three required query parameters (ServiceNow's Attachment API, POST /now/attachment/file).
struct Target {
    table_name: String,
    table_sys_id: String,
    file_name: String,
}

async fn entry(req: HttpRequest, body: web::Bytes, data: web::Data<Shared>) -> HttpResponse {
    let shared = data.into_inner();
    shared.with_model(|m| m.record_request(RecordedRequest::capture(&req, &body)));
    if req.method() != actix_web::http::Method::POST {
        return platform_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method not Supported",
            &format!("{} is not supported for {}", req.method(), req.path()),
        );
    }
    serve(&shared, &req, &body).await
}

#[tracing::instrument(skip_all, fields(endpoint = FAULT_KEY))]
async fn serve(shared: &Arc<Shared>, req: &HttpRequest, body: &[u8]) -> HttpResponse {
    let action = shared.with_model(|m| m.faults.on_call(FAULT_KEY));
    if !action.latency.is_zero() {
        tokio::time::sleep(action.latency).await;
    }
    if let Some(status) = action.fail_with {
        tracing::debug!(status, "injected fault");
        return fault_response(status);
    }
    if !crate::change::authenticated(shared, req) {
        // The change API's 401 (`WWW-Authenticate` and the platform's error body).
        return fault_response(401);
    }
    let content_type = match header_refusal(req) {
        Ok(content_type) => content_type,
        Err(refused) => return refused.into_response(),
    };
    let roles = shared.with_chg(|c| c.roles.clone());
    if !roles.iter().any(|r| WRITE_ROLES.contains(&r.as_str())) {
        return platform_error(
            StatusCode::FORBIDDEN,
            "Operation Failed",
            "ACL Exception Insert Failed due to security constraints (requires sn_change_write or itil)",
        );
    }
    let target = match target(req.query_string()) {
        Ok(target) => target,
        Err(refused) => return refused.into_response(),
    };
    // A CR of the change API, or one ServiceNow DevOps created for a step: both are
    // change_request records on an instance.
    let known = target.table_name == CHANGE_TABLE
        && (shared.with_chg(|c| c.by_sys_id(&target.table_sys_id).is_some())
            || shared.with_model(|m| m.find_by_sys_id(&target.table_sys_id).is_some()));
    if !known {
        return platform_error(
            StatusCode::NOT_FOUND,
            "Invalid table or sys_id",
            &format!(
                "Record {} in table {} does not exist or is not accessible",
                target.table_sys_id, target.table_name
            ),
        );
    }
    let answer = created(shared, target, content_type, body);
    let delay = shared.with_attachments(|s| s.answer_delay);
    if !delay.is_zero() {
        // Stored already: a client that gives up now does not learn that it was.
        tokio::time::sleep(delay).await;
    }
    answer
}

/// The request's `Content-Type`, or the refusal: 406 when `Accept` excludes JSON (absent, it
/// defaults to JSON), 400 when `Content-Type` is missing.
fn header_refusal(req: &HttpRequest) -> Result<String, Refusal> {
    if check_accept(header_value(req, header::ACCEPT)) == AcceptCheck::NotAcceptable {
        return Err(Refusal {
            status: StatusCode::NOT_ACCEPTABLE,
            message: "Not Acceptable",
            detail: "The simulator answers the Attachment API only in application/json".into(),
        });
    }
    match header_value(req, header::CONTENT_TYPE).map(str::trim) {
        Some(value) if !value.is_empty() => Ok(value.to_string()),
        _ => Err(Refusal {
            status: StatusCode::BAD_REQUEST,
            message: "Content-Type header is required",
            detail:
                "Content-Type is mandatory to post file attachments: send the file's content type"
                    .into(),
        }),
    }
}

/// `table_name`, `table_sys_id` and `file_name`, each required and non-empty.
fn target(query: &str) -> Result<Target, Refusal> {
    let pairs = query_pairs(query);
    let required = |name: &str| {
        pairs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
            .filter(|value| !value.is_empty())
            .ok_or_else(|| Refusal {
                status: StatusCode::BAD_REQUEST,
                message: "Missing parameter",
                detail: format!("The query parameter {name} is required"),
            })
    };
    Ok(Target {
        table_name: required("table_name")?,
        table_sys_id: required("table_sys_id")?,
        file_name: required("file_name")?,
    })
}

/// Stores the upload and answers 201 with `Location` and its metadata.
fn created(shared: &Shared, target: Target, content_type: String, body: &[u8]) -> HttpResponse {
    let record = AttachmentRecord {
        sys_id: uuid::Uuid::new_v4().simple().to_string(),
        table_name: target.table_name,
        table_sys_id: target.table_sys_id,
        file_name: target.file_name,
        content_type,
        size_bytes: body.len(),
        sha256: sha256::hex_digest(body),
        content: body.to_vec(),
    };
    let result = metadata(&record, &shared.base_url, &shared.settings.user);
    let location = format!("{}/api/now/attachment/{}", shared.base_url, record.sys_id);
    tracing::debug!(sys_id = %record.sys_id, size = record.size_bytes, "attachment stored");
    shared.with_attachments(|s| s.records.push(record));
    HttpResponse::Created()
        .insert_header((header::LOCATION, location))
        .json(json!({ "result": result }))
}

/// The documented metadata, every field a String. The account is the simulator's one user
/// (OAuth tokens are issued to it too).
pub(super) fn metadata(record: &AttachmentRecord, base_url: &str, user: &str) -> Value {
    let now = crate::model::now();
    json!({
        "sys_id": record.sys_id,
        "file_name": record.file_name,
        "content_type": record.content_type,
        "size_bytes": record.size_bytes.to_string(),
        "table_name": record.table_name,
        "table_sys_id": record.table_sys_id,
        "download_link": format!("{base_url}/api/now/attachment/{}/file", record.sys_id),
        "sys_created_on": now,
        "sys_updated_on": now,
        "sys_created_by": user,
        "sys_updated_by": user,
        "compressed": "false",
        "size_compressed": "",
        "image_height": "",
        "image_width": "",
        "average_image_color": "",
        "sys_mod_count": "0",
        "sys_tags": "",
    })
}

fn header_value(req: &HttpRequest, name: header::HeaderName) -> Option<&str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}
