//! The error answers of the document: every one is the JSON error body of routes/error.rs,
//! as a reusable response, and the sets of them several endpoints share.
use utoipa::{IntoResponses, ToResponse};

use crate::api::ErrorBody;

/// The request is not what the endpoint takes: `invalid_field` (with `field` naming it),
/// `malformed_json` or `bad_request`. Nothing was changed.
#[derive(ToResponse)]
pub struct BadRequest(pub ErrorBody);

/// `unauthorized`: no `Authorization: Bearer <token>` header, or an unknown token.
#[derive(ToResponse)]
#[response(headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"snowgate\"`")))]
pub struct Unauthorized(pub ErrorBody);

/// `forbidden`: a pipeline token on an operator endpoint; the message names the action.
#[derive(ToResponse)]
pub struct Forbidden(pub ErrorBody);

/// `not_found`: no such gate or freeze (an id that is not one is not found either);
/// `servicenow_not_found` from a pass-through.
#[derive(ToResponse)]
pub struct NotFound(pub ErrorBody);

/// `conflict`: the resource is not in a state that allows this.
#[derive(ToResponse)]
pub struct Conflict(pub ErrorBody);

/// `gone`: no gate waits for this callback (the plugin's answer for an unknown token).
#[derive(ToResponse)]
pub struct Gone(pub ErrorBody);

/// `payload_too_large`: the body is larger than the endpoint takes.
#[derive(ToResponse)]
pub struct PayloadTooLarge(pub ErrorBody);

/// `unsupported_media_type`: the body must be `application/json`.
#[derive(ToResponse)]
pub struct UnsupportedMediaType(pub ErrorBody);

/// `store_unavailable`: the store did not answer in time; from a pass-through also
/// `servicenow_unavailable` or `rate_limited` (`servicenow.max_requests_per_second`). Retry later.
#[derive(ToResponse)]
#[response(headers(("Retry-After" = String, description = "Seconds to wait, when known")))]
pub struct Unavailable(pub ErrorBody);

/// `servicenow_rejected`: ServiceNow refused what the request carried (a 4xx other than
/// 401, 403 and 404: an unknown field, a value it does not take), with ServiceNow's own message.
/// Sending the same again fails again.
#[derive(ToResponse)]
pub struct Rejected(pub ErrorBody);

/// ServiceNow failed the pass-through: `servicenow_unavailable` (a 5xx), `servicenow_refused`
/// (snowgate's credentials: 401/403), `servicenow_redirect` or `servicenow_bad_answer`, with
/// ServiceNow's own message.
#[derive(ToResponse)]
pub struct BadGateway(pub ErrorBody);

/// `servicenow_unavailable`: ServiceNow did not answer within `servicenow.timeout`.
#[derive(ToResponse)]
pub struct GatewayTimeout(pub ErrorBody);

/// The errors every ServiceNow pass-through may answer, by status (the reusable responses
/// above).
#[derive(IntoResponses)]
pub enum PassthroughErrors {
    #[response(status = 400)]
    BadRequest(#[ref_response] BadRequest),
    #[response(status = 401)]
    Unauthorized(#[ref_response] Unauthorized),
    #[response(status = 404)]
    NotFound(#[ref_response] NotFound),
    #[response(status = 422)]
    Rejected(#[ref_response] Rejected),
    #[response(status = 502)]
    BadGateway(#[ref_response] BadGateway),
    #[response(status = 503)]
    Unavailable(#[ref_response] Unavailable),
    #[response(status = 504)]
    GatewayTimeout(#[ref_response] GatewayTimeout),
}

/// The errors of an operator's decision by hand (resume, abort).
#[derive(IntoResponses)]
pub enum DecisionErrors {
    #[response(status = 400)]
    BadRequest(#[ref_response] BadRequest),
    #[response(status = 401)]
    Unauthorized(#[ref_response] Unauthorized),
    #[response(status = 403)]
    Forbidden(#[ref_response] Forbidden),
    #[response(status = 404)]
    NotFound(#[ref_response] NotFound),
    #[response(status = 409)]
    Conflict(#[ref_response] Conflict),
    #[response(status = 503)]
    Unavailable(#[ref_response] Unavailable),
}

/// The errors of an endpoint that reads a JSON body: too large, or not JSON.
#[derive(IntoResponses)]
pub enum BodyErrors {
    #[response(status = 413)]
    PayloadTooLarge(#[ref_response] PayloadTooLarge),
    #[response(status = 415)]
    UnsupportedMediaType(#[ref_response] UnsupportedMediaType),
}
