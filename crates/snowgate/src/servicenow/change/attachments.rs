//! ServiceNow's Attachment API, raw-body form: `POST /api/now/attachment/file?table_name=
//! change_request&table_sys_id=…&file_name=…` with the file as the body and its content type
//! (mandatory there); 201 answers the attachment's metadata, its `sys_id` among them.
use reqwest::Method;
use serde::Deserialize;

use super::ChangeClient;
use crate::servicenow::devops::encode_query_value;
use crate::servicenow::error::{classify, read_answer, ServiceNowError};
use crate::servicenow::lenient::Scalar;

#[derive(Debug, Default, Deserialize)]
struct AttachmentAnswer {
    result: Option<AttachmentMetadata>,
}

#[derive(Debug, Default, Deserialize)]
struct AttachmentMetadata {
    sys_id: Option<Scalar>,
}

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
        let status = match &result {
            Ok(_) => Some(201),
            Err(ServiceNowError::Status { status, .. }) => Some(*status),
            Err(_) => None,
        };
        crate::metrics::record_call(
            &self.metrics.servicenow_requests,
            &self.metrics.servicenow_latency,
            "POST attachment/file",
            status,
            started.elapsed(),
        );
        result
    }

    async fn attach_once(
        &self,
        sys_id: &str,
        file_name: &str,
        content_type: &str,
        content: Vec<u8>,
    ) -> Result<String, ServiceNowError> {
        let mut url = self.instance.clone();
        url.path_segments_mut()
            .expect("http URLs have paths")
            .pop_if_empty()
            .extend(["api", "now", "attachment", "file"]);
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
