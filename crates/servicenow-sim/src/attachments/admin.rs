//! `GET /__sim/attachments` (no authentication) and the [`SimHandle`] method it mirrors.

use actix_web::{web, HttpResponse};
use serde_json::{json, Value};

use super::AttachmentRecord;
use crate::{Shared, SimHandle};

/// Registered before the admin API's `/__sim` scope, which would otherwise answer this path.
pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/__sim/attachments").get(list));
}

/// `{"attachments":[{"sysId","tableName","tableSysId","fileName","contentType","sizeBytes",
/// "sha256"}…]}`, oldest first, without the content.
async fn list(data: web::Data<Shared>) -> HttpResponse {
    let listed: Vec<Value> = data.with_attachments(|s| s.records.iter().map(summary).collect());
    HttpResponse::Ok().json(json!({ "attachments": listed }))
}

fn summary(record: &AttachmentRecord) -> Value {
    json!({
        "sysId": record.sys_id,
        "tableName": record.table_name,
        "tableSysId": record.table_sys_id,
        "fileName": record.file_name,
        "contentType": record.content_type,
        "sizeBytes": record.size_bytes,
        "sha256": record.sha256,
    })
}

/// The Attachment API, as tests read it.
impl SimHandle {
    /// Every upload through `POST /api/now/attachment/file`, oldest first, with its bytes.
    pub fn attachments(&self) -> Vec<AttachmentRecord> {
        self.shared.with_attachments(|s| s.records.clone())
    }

    /// Every later upload is stored at once but answered only after `delay`, as when an
    /// instance's answer is lost or late: a client that gives up meanwhile does not know that
    /// its file is attached. `Duration::ZERO` answers at once again.
    pub fn set_attachment_answer_delay(&self, delay: std::time::Duration) {
        self.shared.with_attachments(|s| s.answer_delay = delay);
    }
}
