//! A request id per request (taken from `X-Request-Id` when the caller sends a sane one), on
//! the request's tracing span, in the access log and echoed in the response.
//!
//! The access log line is written here, once the answer is ready, from the request the answer
//! carries: nothing is rendered or stored while a request is in flight, which matters when
//! 10,000 long-polls wait at once (actix's `Logger` renders its fields when a request arrives
//! and keeps them, about 1 KB per open request).
use std::time::Instant;

use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::HttpRequest;
use tracing::Instrument;

pub const HEADER: &str = "x-request-id";

/// Paths probed often enough that logging them would drown the rest.
const NOT_LOGGED: [&str; 2] = ["/healthz", "/metrics"];

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
    let started = Instant::now();
    let id = req
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| sane(v))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let span = tracing::info_span!("request", request_id = %id);
    let mut resp = match next.call(req).instrument(span).await {
        Ok(resp) => resp,
        Err(e) => {
            tracing::warn!(request_id = %id, error = %e, "request failed before an answer");
            return Err(e);
        }
    };
    access_log(resp.request(), &resp, started, &id);
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut()
            .insert(HeaderName::from_static(HEADER), v);
    }
    Ok(resp)
}

/// One line per answered request: peer, request line (callback token cut), status, body
/// bytes, time taken and request id.
fn access_log<B: MessageBody>(
    req: &HttpRequest,
    resp: &ServiceResponse<B>,
    started: Instant,
    id: &str,
) {
    if NOT_LOGGED.contains(&req.path())
        || !tracing::enabled!(target: "snowgate::access", tracing::Level::INFO)
    {
        return;
    }
    let peer = req
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|| "-".into());
    let bytes = match resp.response().body().size() {
        BodySize::Sized(n) => n.to_string(),
        BodySize::None | BodySize::Stream => "-".into(),
    };
    tracing::info!(
        target: "snowgate::access",
        "{peer} \"{}\" {} {bytes} {:.3}ms request_id={id}",
        redacted_request_line(req),
        resp.status().as_u16(),
        started.elapsed().as_secs_f64() * 1000.0,
    );
}

/// The request line for the access log, with a callback token cut to its first characters.
pub fn redacted_request_line(req: &HttpRequest) -> String {
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
