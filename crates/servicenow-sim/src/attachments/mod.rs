//! The simulated Attachment API's raw-body upload, `POST /api/now/attachment/file` (also
//! `/api/now/v1/attachment/file`), ServiceNow's "Attachment - POST /now/attachment/file":
//! "Uploads a specified binary file as an attachment to a specified record."
//!
//! Attachments go only to CRs (`table_name=change_request`, `table_sys_id` the sys_id of a CR of
//! the change API or of one ServiceNow DevOps created). Every request is recorded first. Then, in this order: the method (405 unless
//! POST), the injected fault (key `attachment.post`), authentication as the change API takes it
//! (401: Basic with the simulator's user or an OAuth `Bearer` token), `Accept` (absent means
//! JSON, the documented default; 406 when JSON is refused), `Content-Type` (400 when missing:
//! "This header is mandatory to post file attachments"; any value is taken, the API "accepts
//! all Content-Type values (*/*)"), roles (403 without `sn_change_write` or `itil`: the caller
//! must be able to write the target record), the three required query parameters (400 when
//! missing or empty), and the record (404). Then 201 with `Location` and the metadata.
//!
//! Modules: `routes` (the upload), `read` (`GET /api/now/attachment`, the metadata by encoded
//! query, and `GET /api/now/attachment/{sys_id}/file`, the bytes), `admin` (`GET
//! /__sim/attachments` and the [`crate::SimHandle`] methods), `sha256` (the digest tests compare
//! uploads by).

use std::sync::PoisonError;

use super::Shared;

mod admin;
mod read;
mod routes;
mod sha256;

pub(crate) use routes::configure;

/// The one table attachments may go to: the change API's CRs.
const CHANGE_TABLE: &str = "change_request";
/// Roles that may write a CR, and so attach to it (ServiceNow's Attachment API: the caller
/// needs the roles "to read and write the target table's records"; the change API's write
/// roles). There is "no single role allowing a user to add attachments".
const WRITE_ROLES: [&str; 2] = ["sn_change_write", "itil"];
/// The largest upload read. ServiceNow's default (`com.glide.attachment.max_size`) is 1024 MB;
/// snowgate sends at most 5 MB, so 8 MiB is room enough without holding huge bodies.
const MAX_UPLOAD_BYTES: usize = 8 * 1024 * 1024;

/// One uploaded attachment, as tests read it back.
#[derive(Clone, Debug)]
pub struct AttachmentRecord {
    /// 32 lower-case hex digits.
    pub sys_id: String,
    pub table_name: String,
    pub table_sys_id: String,
    pub file_name: String,
    /// The request's `Content-Type`, as sent.
    pub content_type: String,
    pub size_bytes: usize,
    /// SHA-256 of `content`, lower-case hex.
    pub sha256: String,
    /// The raw request body.
    pub content: Vec<u8>,
}

/// The uploads, oldest first.
#[derive(Debug, Default)]
pub(crate) struct AttachmentStore {
    records: Vec<AttachmentRecord>,
    /// How long an upload's answer waits after it was stored (`set_attachment_answer_delay`).
    answer_delay: std::time::Duration,
}

impl Shared {
    /// Runs `f` with the attachments locked. Never hold the lock across an `.await`.
    pub(crate) fn with_attachments<R>(&self, f: impl FnOnce(&mut AttachmentStore) -> R) -> R {
        let mut store = self
            .attachments
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        f(&mut store)
    }
}
