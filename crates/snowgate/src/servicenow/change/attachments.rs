//! ServiceNow's Attachment API, raw-body form: `POST /api/now/attachment/file?table_name=
//! change_request&table_sys_id=…&file_name=…` with the file as the body and its content type
//! (mandatory there); 201 answers the attachment's metadata, its `sys_id` among them. Before
//! each upload, `find` looks for it on the CR (`GET /api/now/attachment` by encoded query,
//! then each candidate's bytes), since a lost answer may hide a stored file.
use reqwest::Method;
use serde::Deserialize;

use super::ChangeClient;
use crate::servicenow::devops::encode_query_value;
use crate::servicenow::error::{classify, read_answer, ServiceNowError};
use crate::servicenow::lenient::{text, Scalar};

#[derive(Debug, Default, Deserialize)]
struct AttachmentAnswer {
    result: Option<AttachmentMetadata>,
}

#[derive(Debug, Default, Deserialize)]
struct AttachmentMetadata {
    sys_id: Option<Scalar>,
    file_name: Option<Scalar>,
    table_sys_id: Option<Scalar>,
    size_bytes: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
struct AttachmentList {
    #[serde(default)]
    result: Vec<AttachmentMetadata>,
}

/// Candidates read per lookup: more files of one name on one CR than snowgate ever sends.
const CANDIDATES: usize = 100;

impl ChangeClient {
    /// Attach `content` to the change request `sys_id` as `file_name`; the attachment's sys_id.
    pub async fn attach(
        &self,
        sys_id: &str,
        file_name: &str,
        content_type: &str,
        content: Vec<u8>,
    ) -> Result<String, ServiceNowError> {
        let started = std::time::Instant::now();
        let result = self
            .attach_once(sys_id, file_name, content_type, content)
            .await;
        self.count_call("POST attachment/file", 201, started, &result);
        result
    }

    /// The sys_id of an attachment of the CR `sys_id` named `file_name` whose bytes have the
    /// SHA-256 `sha256` (lower-case hex), if there is one.
    pub async fn find(
        &self,
        sys_id: &str,
        file_name: &str,
        size: usize,
        sha256: &str,
    ) -> Result<Option<String>, ServiceNowError> {
        use sha2::Digest as _;
        // `^` joins an encoded query's conditions: a name holding one is matched here instead.
        let query = if file_name.contains('^') {
            format!("table_name=change_request^table_sys_id={sys_id}")
        } else {
            format!("table_name=change_request^table_sys_id={sys_id}^file_name={file_name}")
        };
        let mut url = self.attachment_url(&[]);
        url.set_query(Some(&format!(
            "sysparm_query={}&sysparm_limit={CANDIDATES}",
            encode_query_value(&query)
        )));
        let list = self
            .get_answer(url, "GET attachment")
            .await?
            .read::<AttachmentList>()?;
        for meta in list.result {
            let same_record = text(&meta.table_sys_id).as_deref() == Some(sys_id)
                && text(&meta.file_name).as_deref() == Some(file_name);
            let same_size =
                text(&meta.size_bytes).and_then(|s| s.parse::<usize>().ok()) == Some(size);
            let Some(id) = text(&meta.sys_id).filter(|_| same_record && same_size) else {
                continue;
            };
            let bytes = self.download(&id, size).await?;
            if hex::encode(sha2::Sha256::digest(&bytes)) == sha256 {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    /// `…/api/now/attachment/<segments…>`.
    fn attachment_url(&self, segments: &[&str]) -> reqwest::Url {
        let mut url = self.instance.clone();
        url.path_segments_mut()
            .expect("http URLs have paths")
            .pop_if_empty()
            .extend(["api", "now", "attachment"])
            .extend(segments);
        url
    }

    /// A GET of the Attachment API, its answer read (an error status as ServiceNow words it).
    async fn get_answer(
        &self,
        url: reqwest::Url,
        what: &'static str,
    ) -> Result<crate::servicenow::error::Answer, ServiceNowError> {
        let started = std::time::Instant::now();
        let result = async {
            let auth = self.auth.header(&self.http, &self.metrics, false).await?;
            let resp = self
                .http
                .get(url)
                .header(reqwest::header::ACCEPT, "application/json")
                .header(reqwest::header::AUTHORIZATION, auth)
                .send()
                .await
                .map_err(classify)?;
            read_answer(
                resp,
                "; the account needs the roles to read change_request records",
            )
            .await
        }
        .await;
        self.count_call(what, 200, started, &result);
        result
    }

    /// An attachment's bytes (`GET /api/now/attachment/{sys_id}/file`) when they are at most
    /// `size` bytes long; empty when there are more (never read past `size`).
    async fn download(&self, attachment: &str, size: usize) -> Result<Vec<u8>, ServiceNowError> {
        let auth = self.auth.header(&self.http, &self.metrics, false).await?;
        let resp = self
            .http
            .get(self.attachment_url(&[attachment, "file"]))
            .header(reqwest::header::ACCEPT, "*/*")
            .header(reqwest::header::AUTHORIZATION, auth)
            .send()
            .await
            .map_err(classify)?;
        if !resp.status().is_success() {
            return Err(read_answer(resp, "").await.err().unwrap_or_else(|| {
                ServiceNowError::Decode("the attachment's file could not be read".into())
            }));
        }
        let mut resp = resp;
        let mut bytes = Vec::with_capacity(size);
        while let Some(chunk) = resp.chunk().await.map_err(classify)? {
            if bytes.len() + chunk.len() > size {
                // Not the file looked for: never read more than it would be.
                return Ok(Vec::new());
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }

    async fn attach_once(
        &self,
        sys_id: &str,
        file_name: &str,
        content_type: &str,
        content: Vec<u8>,
    ) -> Result<String, ServiceNowError> {
        let mut url = self.attachment_url(&["file"]);
        // The file goes after the last parameter, as the Attachment API asks.
        url.set_query(Some(&format!(
            "table_name=change_request&table_sys_id={}&file_name={}",
            encode_query_value(sys_id),
            encode_query_value(file_name)
        )));
        let auth = self.auth.header(&self.http, &self.metrics, false).await?;
        let resp = self
            .http
            .request(Method::POST, url)
            .header(reqwest::header::ACCEPT, "application/json")
            .header(reqwest::header::AUTHORIZATION, auth)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(content)
            .send()
            .await
            .map_err(classify)?;
        let answer = read_answer(
            resp,
            "; the account needs the roles to create attachments on change_request records",
        )
        .await?;
        let meta = answer
            .read::<AttachmentAnswer>()?
            .result
            .ok_or_else(|| ServiceNowError::Decode("the answer has no `result`".into()))?;
        meta.sys_id
            .as_ref()
            .and_then(Scalar::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .ok_or_else(|| ServiceNowError::Decode("the attachment has no sys_id".into()))
    }
}
