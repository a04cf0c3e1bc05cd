//! Integration tests: the real application on port 0, a real SQLite file, and the ServiceNow
//! simulator over HTTP.
mod callbacks;
mod change;
mod cli;
mod conflicts;
mod durability;
mod evidence;
mod fidelity;
mod freezes;
mod gates;
mod helpers;
mod jenkins;
mod jenkins_fake;
mod operations;
mod operator;
mod passthrough;
mod pg;
mod registration;
mod reliability;
mod replicas;
mod scale;
mod security;
mod shim;
mod store_contract;
mod store_faults;
mod supersede;
mod ui;
