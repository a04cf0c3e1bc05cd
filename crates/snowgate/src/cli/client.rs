//! The HTTP side of the client: one snowgate's base URL, token and reqwest client, and what a
//! call that did not give a usable answer means.
use std::time::Duration;

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{
    print_json, CONNECT_TIMEOUT, DEFAULT_URL, EXIT_API_ERROR, EXIT_UNREACHABLE, REQUEST_TIMEOUT,
};
use crate::api::ErrorBody;
use crate::configuration::Secret;

/// Why a call did not give a usable answer.
#[derive(Debug)]
pub(super) enum CallError {
    /// snowgate answered 4xx/5xx (or something that is not its JSON).
    Api {
        status: u16,
        code: String,
        message: String,
        body: Option<ErrorBody>,
    },
    /// No answer at all.
    Unreachable(String),
    /// Nothing was sent: the command line asks for something impossible (a file that cannot
    /// be read, …).
    Usage(String),
}

impl CallError {
    pub(super) fn exit_code(&self) -> u8 {
        match self {
            CallError::Api { .. } => EXIT_API_ERROR,
            CallError::Unreachable(_) => EXIT_UNREACHABLE,
            // clap's own code for a usage error.
            CallError::Usage(_) => 2,
        }
    }

    /// The message on stderr; with `--json`, the API's error body on stdout as well.
    pub(super) fn report(&self, json_output: bool) -> u8 {
        match self {
            CallError::Api {
                status,
                code,
                message,
                body,
            } => {
                if let (true, Some(b)) = (json_output, body) {
                    print_json(b);
                }
                eprintln!("snowgate: {message} (HTTP {status}, {code})");
            }
            CallError::Unreachable(m) | CallError::Usage(m) => eprintln!("snowgate: {m}"),
        }
        self.exit_code()
    }
}

/// A URL as shown to people: without user:password, which may carry secrets.
pub(super) fn display_url(u: &url::Url) -> String {
    let mut shown = u.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

/// reqwest's message with its cause chain, without the URL (shown separately, credential-free).
fn describe_reqwest(e: reqwest::Error) -> String {
    if e.is_timeout() {
        return "no answer in time".to_string();
    }
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// The error an answer's status and body stand for: the API's `{"error":{"code","message"}}`
/// when it sent one, else the bare status (a proxy's 502 page, say).
pub(super) fn api_error(status: reqwest::StatusCode, body: Option<ErrorBody>) -> CallError {
    let (code, message) = match &body {
        Some(b) => (b.error.code.clone(), b.error.message.clone()),
        None => (
            "http_error".to_string(),
            format!(
                "snowgate answered {} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            )
            .trim_end()
            .to_string(),
        ),
    };
    CallError::Api {
        status: status.as_u16(),
        code,
        message,
        body,
    }
}

/// A client of one snowgate: base URL, optional bearer token, one reqwest client.
pub(super) struct Api {
    http: reqwest::Client,
    base: url::Url,
    token: Option<Secret>,
}

impl Api {
    pub(super) fn new(base: &str, token: Option<Secret>) -> Result<Api, CallError> {
        let base = url::Url::parse(base.trim())
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| {
                CallError::Unreachable(format!(
                    "--url / SNOWGATE_URL must be an http(s) URL such as {DEFAULT_URL}"
                ))
            })?;
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("snowgate-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CallError::Unreachable(describe_reqwest(e)))?;
        Ok(Api { http, base, token })
    }

    /// `<base>/<segments…>?<query>`: segments and values are encoded, never formatted in, so a
    /// gate id like `../x` stays one segment. A base with a path (behind an ingress) is kept.
    pub(super) fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> url::Url {
        let mut u = self.base.clone();
        u.set_query(None);
        u.set_fragment(None);
        if let Ok(mut path) = u.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        if !query.is_empty() {
            u.query_pairs_mut().extend_pairs(query);
        }
        u
    }

    pub(super) fn gate_url(&self, id: &str, tail: &[&str]) -> url::Url {
        let mut segments = vec!["api", "v1", "gates", id];
        segments.extend_from_slice(tail);
        self.url(&segments, &[])
    }

    /// One request; a 2xx answer is read as `T`, anything else as the API's error body.
    pub(super) async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        url: url::Url,
        body: Option<&impl Serialize>,
        timeout: Duration,
    ) -> Result<T, CallError> {
        let shown = display_url(&url);
        let mut req = self
            .http
            .request(method, url)
            .timeout(timeout)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(t) = &self.token {
            req = req.bearer_auth(t.expose());
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let unreachable = |e: reqwest::Error| {
            CallError::Unreachable(format!(
                "cannot reach snowgate at {shown}: {}",
                describe_reqwest(e)
            ))
        };
        let resp = req.send().await.map_err(unreachable)?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(unreachable)?;
        if !status.is_success() {
            return Err(api_error(status, serde_json::from_slice(&bytes).ok()));
        }
        // 204 No Content (a deletion) reads as `null`, i.e. `()`.
        let body: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
        serde_json::from_slice(body).map_err(|e| CallError::Api {
            status: status.as_u16(),
            code: "not_json".into(),
            message: format!(
                "{shown} answered {status} with a body that is not snowgate's JSON: {e}"
            ),
            body: None,
        })
    }

    pub(super) async fn get<T: DeserializeOwned>(&self, url: url::Url) -> Result<T, CallError> {
        self.call(Method::GET, url, None::<&()>, REQUEST_TIMEOUT)
            .await
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn urls_keep_the_base_path_and_encode_segments() {
        let api = Api::new("http://snowgate.example:8080/sg/", None).unwrap();
        assert_eq!(
            api.gate_url("../x y", &["wait"]).as_str(),
            "http://snowgate.example:8080/sg/api/v1/gates/..%2Fx%20y/wait"
        );
        assert_eq!(
            api.url(
                &["api", "v1", "gates"],
                &[("state", "pending"), ("limit", "5")]
            )
            .as_str(),
            "http://snowgate.example:8080/sg/api/v1/gates?state=pending&limit=5"
        );
    }

    #[test]
    fn bad_base_urls_are_refused_before_any_call() {
        for bad in ["", "snowgate:8080", "ftp://x/", "not a url"] {
            assert!(
                matches!(Api::new(bad, None), Err(CallError::Unreachable(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn api_errors_carry_the_servers_message_or_the_status() {
        let e = api_error(
            reqwest::StatusCode::FORBIDDEN,
            serde_json::from_value(
                json!({"error": {"code": "forbidden", "message": "this token may not abort gates"}}),
            )
            .ok(),
        );
        match e {
            CallError::Api {
                status,
                code,
                message,
                ..
            } => {
                assert_eq!((status, code.as_str()), (403, "forbidden"));
                assert_eq!(message, "this token may not abort gates");
            }
            other => panic!("{other:?}"),
        }
        match api_error(reqwest::StatusCode::BAD_GATEWAY, None) {
            CallError::Api { message, code, .. } => {
                assert_eq!(message, "snowgate answered 502 Bad Gateway");
                assert_eq!(code, "http_error");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn credentials_in_the_url_are_not_shown() {
        let u = url::Url::parse("http://user:s3cret@snowgate.example/api").unwrap();
        assert_eq!(display_url(&u), "http://snowgate.example/api");
    }
}
