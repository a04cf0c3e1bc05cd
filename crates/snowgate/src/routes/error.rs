//! The API's error type: each arm maps to a status and the JSON body
//! `{"error": {"code": "<snake_case>", "message": "…"}}`. 5xx bodies stay generic; the cause
//! goes to the log.
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use crate::api::{ErrorBody, ErrorDetail};
use crate::domain::FieldError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidField(#[from] FieldError),
    #[error("the body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    #[error("the body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("a valid `Authorization: Bearer <token>` header is required")]
    Unauthorized,
    #[error("this token may not {0}; an operator token is required")]
    Forbidden(&'static str),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Gone(String),
    /// Unavailable: 503 (retry later); corrupt data: 500. The body names neither the cause
    /// nor the row; the log gets the whole error.
    #[error("{}", store_message(.0))]
    Store(#[from] StoreError),
    #[error("an unexpected error occurred")]
    Unexpected(#[from] anyhow::Error),
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidField(_) => "invalid_field",
            ApiError::MalformedJson(_) => "malformed_json",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::Gone(_) => "gone",
            ApiError::Store(StoreError::Unavailable { .. }) => "store_unavailable",
            ApiError::Store(StoreError::Corrupt { .. }) => "internal_error",
            ApiError::Unexpected(_) => "internal_error",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::InvalidField(_) | ApiError::MalformedJson(_) | ApiError::BadRequest(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::Store(StoreError::Unavailable { .. }) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Store(StoreError::Corrupt { .. }) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unexpected(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if status.is_server_error() {
            tracing::error!(error = ?self, "request failed");
        }
        let error = ErrorDetail {
            code: self.code().to_string(),
            message: self.to_string(),
            field: match self {
                ApiError::InvalidField(f) => Some(f.field.to_string()),
                _ => None,
            },
        };
        let mut resp = HttpResponse::build(status);
        if matches!(self, ApiError::Unauthorized) {
            resp.insert_header(("WWW-Authenticate", "Bearer realm=\"snowgate\""));
        }
        resp.json(ErrorBody { error })
    }
}

fn store_message(e: &StoreError) -> &'static str {
    match e {
        StoreError::Unavailable { .. } => "the store is unavailable",
        StoreError::Corrupt { .. } => "an unexpected error occurred",
    }
}

/// JSON 404/405 for paths and methods the API does not have.
pub async fn not_found() -> HttpResponse {
    ApiError::NotFound("no such endpoint".into()).error_response()
}
