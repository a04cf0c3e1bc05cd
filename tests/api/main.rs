//! Integration tests: the real application on port 0, a real SQLite file, and the ServiceNow
//! simulator over HTTP.
mod callbacks;
mod durability;
mod gates;
mod helpers;
mod operator;
mod registration;
mod reliability;
