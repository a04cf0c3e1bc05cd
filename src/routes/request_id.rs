//! A request id per request (taken from `X-Request-Id` when the caller sends a sane one), on
//! the request's tracing span, in the access log and echoed in the response.
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use tracing::Instrument;

pub const HEADER: &str = "x-request-id";

fn sane(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

pub async fn request_id(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = req
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| sane(v))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let span = tracing::info_span!("request", request_id = %id);
    let mut resp = next.call(req).instrument(span).await?;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut()
            .insert(HeaderName::from_static(HEADER), v);
    }
    Ok(resp)
}

/// The request line for the access log, with a callback token cut to its first characters.
pub fn redacted_request_line(req: &ServiceRequest) -> String {
    let path = req.path();
    let shown = match path.strip_prefix("/sn-devops/") {
        Some(token) => format!("/sn-devops/{}", crate::telemetry::redact(token)),
        None => match req.query_string() {
            "" => path.to_string(),
            q => format!("{path}?{q}"),
        },
    };
    format!("{} {} {:?}", req.method(), shown, req.version())
}
