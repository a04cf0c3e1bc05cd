//! Typed clients for ServiceNow, and what they share: one HTTP client builder ([`http`]), one
//! authentication type ([`auth`]), one error type ([`error`]) and one rate limit.
pub mod auth;
pub mod change;
pub mod devops;
pub mod error;
pub mod http;
pub(crate) mod lenient;
pub mod passthrough;
pub mod ratelimit;

pub use devops::DevOpsClient;
pub use error::ServiceNowError;
pub use http::{http_client, location_host};
pub use ratelimit::RateLimiter;
