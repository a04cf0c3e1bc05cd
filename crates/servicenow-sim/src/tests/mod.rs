//! The simulator's own tests, against a running simulator (real HTTP on port 0): the DevOps API
//! (`devops_api`), its strictness rule by rule (`strictness`), and the change API with OAuth
//! (`change_api`).

mod change_api;
mod devops_api;
mod strictness;
