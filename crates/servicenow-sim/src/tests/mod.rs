//! The simulator's own tests, against a running simulator (real HTTP on port 0): the DevOps API
//! (`devops_api`), its strictness rule by rule (`strictness`), the change API with OAuth
//! (`change_api`) and the Attachment API's upload (`attachments`).

mod attachments;
mod change_api;
mod devops_api;
mod strictness;
