//! Typed clients for ServiceNow, and the one rate limit they share.
pub mod change;
pub mod devops;
pub mod passthrough;
pub mod ratelimit;

pub use devops::{DevOpsClient, ServiceNowError};
pub use ratelimit::RateLimiter;
