//! HTTP handlers: thin — parse, call, map errors.
pub mod auth;
pub mod body;
pub mod callbacks;
pub mod error;
pub mod gates;
pub mod health;
pub mod operator;

pub use error::ApiError;
