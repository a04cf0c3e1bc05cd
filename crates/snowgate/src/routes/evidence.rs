//! `POST /api/v1/gates/{id}/evidence`: a file (text or base64) or a link for the gate's change
//! request. Queued in the outbox (retried, sent once, the same SHA-256 never twice) and
//! answered 202; a file goes through ServiceNow's Attachment API, a link as a work note.
use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::auth::Pipeline;
use super::body::json_body;
use super::gates::load_gate;
use super::ApiError;
use crate::domain::request::{Fields, MAX_NAME};
use crate::domain::FieldError;
use crate::state::AppState;
use crate::store::{EvidenceQueued, NewOutbox, OutboxKind};

/// The largest evidence, decoded: 5 MB.
pub const MAX_EVIDENCE: usize = 5_000_000;
/// The largest request: 5 MB in base64 (4/3) with room for the JSON around it.
const MAX_BODY: usize = 7 * 1024 * 1024;

/// What the pipeline sent: the content to attach, or a link.
enum Evidence {
    File {
        content_type: String,
        bytes: Vec<u8>,
    },
    Link(String),
}

fn parse(body: &Value) -> Result<(String, Evidence), ApiError> {
    let obj = body
        .as_object()
        .ok_or_else(|| FieldError::new("body", "must be a JSON object"))?;
    let f = Fields(obj);
    let name = f
        .string("name", MAX_NAME)?
        .ok_or_else(|| f.missing("name"))?;
    if name.contains(['/', '\\']) || name == "." || name == ".." {
        return Err(FieldError::new("name", "must be a file name, without a path").into());
    }
    let given: Vec<&str> = ["content", "contentBase64", "url"]
        .into_iter()
        .filter(|k| obj.get(*k).is_some_and(|v| !v.is_null()))
        .collect();
    if given.len() != 1 {
        return Err(FieldError::new(
            "content",
            "give exactly one of content (text), contentBase64 (bytes) or url (a link)",
        )
        .into());
    }
    if given[0] == "url" {
        return Ok((name, Evidence::Link(f.url("url")?.unwrap_or_default())));
    }
    let content_type = f
        .string("contentType", MAX_NAME)?
        .ok_or_else(|| f.missing("contentType"))?;
    let bytes = match given[0] {
        "content" => match &obj["content"] {
            Value::String(s) => s.clone().into_bytes(),
            _ => return Err(FieldError::new("content", "must be a string").into()),
        },
        _ => {
            let text = obj["contentBase64"]
                .as_str()
                .ok_or_else(|| FieldError::new("contentBase64", "must be a string"))?;
            base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|_| FieldError::new("contentBase64", "is not valid base64"))?
        }
    };
    if bytes.len() > MAX_EVIDENCE {
        return Err(ApiError::PayloadTooLarge(MAX_EVIDENCE));
    }
    Ok((
        name,
        Evidence::File {
            content_type,
            bytes,
        },
    ))
}

#[utoipa::path(post, path = "/api/v1/gates/{id}/evidence", operation_id = "attachEvidence", tag = "evidence",
    security(("pipeline" = []), ("operator" = [])), params(("id" = String, Path, format = Uuid, description = "The gate's id")), request_body = crate::openapi::Evidence,
    responses(
        (status = 202, description = "Queued for the change request", body = crate::openapi::EvidenceReceipt),
        (status = 200, description = "The same evidence was queued for this gate before", body = crate::openapi::EvidenceReceipt),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 404, response = crate::openapi::NotFound),
        (status = 409, description = "The gate has no change request yet, or the ServiceNow credentials cannot attach", body = crate::api::ErrorBody),
        crate::openapi::BodyErrors,
        (status = 503, response = crate::openapi::Unavailable),
    ))]
#[tracing::instrument(skip_all, fields(gate_id = %path))]
pub async fn attach(
    _caller: Pipeline,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = json_body(&req, payload, MAX_BODY).await?;
    let (name, evidence) = parse(&body)?;
    let gate = load_gate(&state, &path).await?;
    if state.change.is_none() {
        return Err(ApiError::Conflict(
            "evidence needs servicenow.auth basic or oauth: the Attachment API does not take the DevOps token".into(),
        ));
    }
    let Some(cr) = gate.change_request.as_ref().filter(|c| c.sys_id.is_some()) else {
        return Err(ApiError::Conflict(
            "the gate has no change request yet; send the evidence once it has one".into(),
        ));
    };
    let number = cr.number.clone().unwrap_or_default();
    let (sha256, item, what) = queued_item(gate.id, &name, evidence);
    let message = format!("evidence {name} ({what}, sha256 {sha256}) queued for {number}");
    let answer =
        |status: &str| json!({"gateId": gate.id, "name": name, "sha256": sha256, "status": status});
    match state
        .store
        .queue_evidence(gate.id, &sha256, &name, item, &message)
        .await?
    {
        EvidenceQueued::Queued => {
            state.decider.wakeups().outbox.notify_one();
            Ok(HttpResponse::Accepted().json(answer("queued")))
        }
        EvidenceQueued::Duplicate => Ok(HttpResponse::Ok().json(answer("duplicate"))),
        EvidenceQueued::NotFound => Err(ApiError::NotFound(format!("no gate {}", gate.id))),
    }
}

/// The outbox row of `evidence`, with its SHA-256 (of the content, or of the link) and how the
/// events describe it.
fn queued_item(gate_id: uuid::Uuid, name: &str, evidence: Evidence) -> (String, NewOutbox, String) {
    match evidence {
        Evidence::Link(url) => {
            let sha = hex::encode(Sha256::digest(url.as_bytes()));
            let item = NewOutbox {
                kind: OutboxKind::ChangeUpdate,
                payload: json!({
                    "fields": {"work_notes": format!("snowgate gate {gate_id}: evidence {name}: {url}")},
                    "what": format!("evidence link {name}"),
                }),
            };
            (sha, item, format!("link {url}"))
        }
        Evidence::File {
            content_type,
            bytes,
        } => {
            let sha = hex::encode(Sha256::digest(&bytes));
            let what = format!("{} bytes of {content_type}", bytes.len());
            let item = NewOutbox {
                kind: OutboxKind::Attach,
                payload: json!({
                    "name": name,
                    "contentType": content_type,
                    "contentBase64": base64::engine::general_purpose::STANDARD.encode(&bytes),
                    "sha256": sha,
                }),
            };
            (sha, item, what)
        }
    }
}
