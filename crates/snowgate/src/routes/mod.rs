//! HTTP handlers: thin — parse, call, map errors.
pub mod auth;
pub mod body;
pub mod callbacks;
pub mod error;
pub mod evidence;
pub mod freezes;
pub mod gates;
pub mod health;
pub mod operator;
pub mod passthrough;
pub mod request_id;
pub mod ui;

pub use error::ApiError;

use actix_web::web;

/// Every route of the service: operations, the status page, the JSON API and ServiceNow's
/// callback. Handlers take a `Pipeline` or `Operator` token themselves where they need one.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        // The status page: HTML for people, outside the JSON API.
        .service(ui::scope())
        .route("/metrics", web::get().to(health::metrics))
        .service(
            web::scope("/api/v1")
                // The OpenAPI document of everything below and the probes; no token.
                .route("/openapi.json", web::get().to(crate::openapi::serve))
                .route("/gates", web::post().to(gates::open))
                .route("/gates", web::get().to(gates::list))
                .route("/gates/{id}", web::get().to(gates::get))
                .route("/gates/{id}/wait", web::get().to(gates::wait))
                .route("/gates/{id}/events", web::get().to(gates::events))
                .route("/step-mappings", web::post().to(passthrough::step_mapping))
                .route("/change-info", web::get().to(passthrough::change_info))
                .route(
                    "/change-info/{number}",
                    web::put().to(passthrough::update_change_info),
                )
                .route("/artifacts", web::post().to(passthrough::artifacts))
                .route("/packages", web::post().to(passthrough::packages))
                .route("/gates/{id}/resume", web::post().to(operator::resume))
                .route("/gates/{id}/abort", web::post().to(operator::abort))
                .route("/gates/{id}/complete", web::post().to(operator::complete))
                .route("/gates/{id}/evidence", web::post().to(evidence::attach))
                .route("/freezes", web::post().to(freezes::declare))
                .route("/freezes", web::get().to(freezes::list))
                .route("/freezes/{id}", web::delete().to(freezes::delete)),
        )
        // Any method, like the plugin's root action.
        .route("/sn-devops/{token}", web::route().to(callbacks::callback));
}
