//! HTTP handlers: thin — parse, call, map errors.
pub mod auth;
pub mod body;
pub mod callbacks;
pub mod error;
pub mod gates;
pub mod health;
pub mod operator;
pub mod passthrough;
pub mod request_id;
pub mod ui;

pub use error::ApiError;
