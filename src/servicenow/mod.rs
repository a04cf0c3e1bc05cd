//! Typed clients for ServiceNow.
pub mod devops;

pub use devops::{DevOpsClient, ServiceNowError};
