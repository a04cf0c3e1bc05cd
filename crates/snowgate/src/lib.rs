//! snowgate: a sidecar that puts Jenkins pipeline stages under ServiceNow change control.
pub mod api;
pub mod change_mode;
pub mod check;
pub mod cli;
pub mod configuration;
pub mod decisions;
pub mod domain;
pub mod jenkins;
pub mod metrics;
pub mod routes;
pub mod servicenow;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod waiters;
pub mod workers;
