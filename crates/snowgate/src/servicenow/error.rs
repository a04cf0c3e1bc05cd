//! What a ServiceNow call can go wrong with, whether that is worth a retry, and ServiceNow's
//! own words for it (read from either of its error shapes).
use std::time::Duration;

use reqwest::StatusCode;
use serde::Deserialize;

use super::lenient::{self, present, str_of, Json, List, Scalar};
use crate::domain::names::CallbackToken;

#[derive(Debug, thiserror::Error)]
pub enum ServiceNowError {
    #[error("cannot reach ServiceNow: {0}")]
    Connect(String),
    #[error("ServiceNow did not answer in time")]
    Timeout,
    #[error("ServiceNow answered {status}: {message}")]
    Status {
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("ServiceNow's answer could not be read: {0}")]
    Decode(String),
    /// Redirects are not followed: following one would re-send the request, credentials and
    /// callback token included, to the host `Location` names.
    #[error("ServiceNow answered {status} redirecting to {location}; redirects are not followed (check servicenow.instance_url)")]
    Redirect { status: u16, location: String },
}

impl ServiceNowError {
    /// Transient errors are retried: connect errors, timeouts, 5xx and 429.
    pub fn is_transient(&self) -> bool {
        match self {
            ServiceNowError::Connect(_) | ServiceNowError::Timeout => true,
            ServiceNowError::Status { status, .. } => *status >= 500 || *status == 429,
            ServiceNowError::Decode(_) | ServiceNowError::Redirect { .. } => false,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ServiceNowError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// A sentence for the gate's message and the event log.
    pub fn describe(&self) -> String {
        match self {
            ServiceNowError::Status {
                status: 401,
                message,
                ..
            } => format!(
                "ServiceNow refused the credentials (401 Unauthorized): {message}; check servicenow.auth, servicenow.tool_id and the token or user/password"
            ),
            ServiceNowError::Status {
                status: 403,
                message,
                ..
            } => format!(
                "ServiceNow denied access (403 Forbidden): {message}; the account needs the sn_devops.integration role"
            ),
            other => other.to_string(),
        }
    }
}

pub(crate) fn classify(e: reqwest::Error) -> ServiceNowError {
    if e.is_timeout() {
        ServiceNowError::Timeout
    } else if e.is_connect() || e.is_request() {
        ServiceNowError::Connect(without_url(&e))
    } else {
        ServiceNowError::Decode(without_url(&e))
    }
}

/// reqwest puts the URL in its messages: keep only the path, and replace the callback token in
/// an acknowledgement's path by its fingerprint.
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(u) = e.url() {
        text = text.replace(u.as_str(), u.path());
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    CallbackToken::scrub(&text)
}

/// `{"error": {"message": …, "detail": …}}`, or `"error": "text"`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ErrorBody {
    message: Option<Scalar>,
    detail: Option<Scalar>,
}

/// `result.details.errors`: objects with a `message`, or strings.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Details {
    errors: Option<List<Json<ErrorItem>>>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ErrorItem {
    message: Option<Scalar>,
}

/// What every answer may carry besides its payload: an `error`, and a `result` with a `status`
/// and error `details`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Envelope {
    #[serde(default, deserialize_with = "present")]
    pub error: Option<Json<ErrorBody>>,
    #[serde(default, deserialize_with = "present")]
    pub result: Option<Json<ResultHead>>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ResultHead {
    pub status: Option<Scalar>,
    pub details: Option<Json<Details>>,
}

impl Envelope {
    /// ServiceNow's own message, from `error` or else `result.details.errors`.
    pub fn message(&self) -> Option<String> {
        let details = self
            .result
            .as_ref()
            .and_then(Json::object)
            .and_then(|r| r.details.as_ref());
        message_of(self.error.as_ref(), details)
    }

    /// A 2xx whose result says `"status":"error"`, or that carries an `error`, is a refusal.
    pub fn is_refusal(&self) -> bool {
        let status = self
            .result
            .as_ref()
            .and_then(Json::object)
            .and_then(|r| str_of(&r.status));
        status.is_some_and(|s| s.eq_ignore_ascii_case("error")) || self.error.is_some()
    }
}

/// ServiceNow's message from either error shape: `error` (an object with `message` and
/// `detail`, or a string) wins; else the messages of `result.details.errors`.
pub(crate) fn message_of(
    error: Option<&Json<ErrorBody>>,
    details: Option<&Json<Details>>,
) -> Option<String> {
    if let Some(err) = error {
        let (msg, detail) = match err {
            Json::Object(e) => (
                str_of(&e.message).unwrap_or(""),
                str_of(&e.detail).unwrap_or(""),
            ),
            Json::Other(_) => ("", ""),
        };
        return match (msg.is_empty(), detail.is_empty()) {
            (false, false) => Some(format!("{msg} ({detail})")),
            (false, true) => Some(msg.to_string()),
            (true, false) => Some(detail.to_string()),
            (true, true) => match err {
                Json::Other(Scalar::Str(s)) => Some(s.clone()),
                _ => None,
            },
        };
    }
    let items = details?.object()?.errors.as_ref()?.0.as_ref()?;
    let msgs: Vec<String> = items
        .iter()
        .filter_map(|e| match e {
            Json::Object(item) => str_of(&item.message).map(str::to_string),
            Json::Other(Scalar::Str(s)) => Some(s.clone()),
            Json::Other(_) => None,
        })
        .collect();
    (!msgs.is_empty()).then(|| msgs.join("; "))
}

/// ServiceNow's own message from either error shape:
/// `{"error":{"message":…,"detail":…}}` or `{"result":{"status":"error","details":{"errors":[{"message":…}]}}}`.
pub fn servicenow_message(body: &serde_json::Value) -> Option<String> {
    Json::<Envelope>::deserialize(body)
        .ok()
        .and_then(|e| e.into_object().message())
}

/// A 2xx answer's body and its envelope.
pub(crate) struct Answer {
    pub bytes: Vec<u8>,
    pub envelope: Envelope,
}

impl Answer {
    /// The body as `T` (see [`lenient::parse`]).
    pub fn read<T: serde::de::DeserializeOwned + Default>(&self) -> Result<T, ServiceNowError> {
        lenient::parse(&self.bytes).map_err(|e| ServiceNowError::Decode(e.to_string()))
    }

    /// The body as sent, for the pass-through endpoints that relay it.
    pub fn value(&self) -> Result<serde_json::Value, ServiceNowError> {
        serde_json::from_slice(&self.bytes).map_err(|e| ServiceNowError::Decode(e.to_string()))
    }
}

/// ServiceNow's answer, or the error it stands for: the status, ServiceNow's own message (with
/// `hint` appended for 401/403), and `Retry-After`. A 2xx must be JSON.
pub(crate) async fn read_answer(
    resp: reqwest::Response,
    hint: &str,
) -> Result<Answer, ServiceNowError> {
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    if status.is_redirection() {
        return Err(ServiceNowError::Redirect {
            status: status.as_u16(),
            location: super::http::location_host(resp.headers()),
        });
    }
    let bytes = resp.bytes().await.map_err(classify)?;
    let envelope: Option<Envelope> = lenient::parse(&bytes).ok();
    if !status.is_success() {
        let mut message = envelope
            .as_ref()
            .and_then(Envelope::message)
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("no message").into());
        if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            message.push_str(hint);
        }
        return Err(ServiceNowError::Status {
            status: status.as_u16(),
            message,
            retry_after,
        });
    }
    let envelope = envelope
        .ok_or_else(|| ServiceNowError::Decode(format!("{status} with a body that is not JSON")))?;
    Ok(Answer {
        bytes: bytes.to_vec(),
        envelope,
    })
}
