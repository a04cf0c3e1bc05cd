//! The change API (`sn_chg_rest`), OAuth and their admin API, against a running simulator (real
//! HTTP on port 0), plus the pure rules (query language, state model) on their own.

use std::time::Duration;

use reqwest::{Method, RequestBuilder};
use serde_json::{json, Value};

use crate::change::query::EncodedQuery;
use crate::change::{allowed_transition, parse_patch_state, ChangeType};
use crate::model::CrState;
use crate::*;

mod access;
mod admin;
mod conflicts;
mod create;
mod oauth;
mod query;
mod state_model;

const TITLE: &str = r#"Jenkins: Deploy "app" build 42 to "Production""#;

fn chg(sim: &SimHandle, path: &str) -> String {
    format!("{}/api/sn_chg_rest/{path}", sim.url())
}

/// A request with Basic auth and `Accept: application/json`.
fn call(sim: &SimHandle, method: Method, path: &str) -> RequestBuilder {
    reqwest::Client::new()
        .request(method, chg(sim, path))
        .basic_auth("admin", Some("admin-password"))
        .header("Accept", "application/json")
}

/// A request with Basic auth and this `Accept` (`""`: none; reqwest sends `*/*` unless told).
fn call_accepting(sim: &SimHandle, method: Method, path: &str, accept: &str) -> RequestBuilder {
    reqwest::Client::new()
        .request(method, chg(sim, path))
        .basic_auth("admin", Some("admin-password"))
        .header("Accept", accept)
}

fn call_without_accept(sim: &SimHandle, method: Method, path: &str) -> RequestBuilder {
    call_accepting(sim, method, path, "")
}

async fn answer(request: RequestBuilder) -> (u16, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// `GET /change?sysparm_query=…` (plus other parameters) → (status, result numbers, total).
async fn search(sim: &SimHandle, params: &[(&str, &str)]) -> (u16, Vec<String>, Option<String>) {
    let response = call(sim, Method::GET, "change")
        .query(params)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let total = response
        .headers()
        .get("x-total-count")
        .map(|v| v.to_str().unwrap().to_string());
    let body: Value = response.json().await.unwrap();
    let numbers = body["result"]
        .as_array()
        .map(|records| {
            records
                .iter()
                .map(|r| r["number"]["value"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default();
    (status, numbers, total)
}

async fn password_grant(sim: &SimHandle) -> (u16, Value) {
    answer(
        reqwest::Client::new()
            .post(format!("{}/oauth_token.do", sim.url()))
            .form(&[
                ("grant_type", "password"),
                ("client_id", "sim-oauth-client"),
                ("client_secret", "sim-oauth-secret"),
                ("username", "admin"),
                ("password", "admin-password"),
            ]),
    )
    .await
}

async fn refresh_grant(sim: &SimHandle, refresh_token: &str) -> (u16, Value) {
    answer(
        reqwest::Client::new()
            .post(format!("{}/oauth_token.do", sim.url()))
            .form(&[
                ("grant_type", "refresh_token"),
                ("client_id", "sim-oauth-client"),
                ("client_secret", "sim-oauth-secret"),
                ("refresh_token", refresh_token),
            ]),
    )
    .await
}

fn bearer_get(sim: &SimHandle, token: &str) -> RequestBuilder {
    reqwest::Client::new()
        .get(chg(sim, "change"))
        .bearer_auth(token)
        .header("Accept", "application/json")
}

fn text(record: &Value, field: &str) -> String {
    record[field]["value"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}
