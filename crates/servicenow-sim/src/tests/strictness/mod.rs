//! The simulator is as strict as a real instance: one scenario per rule, each showing the wrong
//! form refused and the plugin's form accepted (real HTTP on port 0).

use serde_json::{json, Value};

use crate::plugin_forms::{plugin_acknowledgement, plugin_registration};
use crate::*;

mod plugin_bodies;
mod tasks_and_lookups;
mod updates_and_auth;

const USER: &str = "admin";
const PASSWORD: &str = "admin-password";

fn tool() -> String {
    SimSettings::default().tool_id
}

fn quiet(known_pipelines: Vec<&str>) -> SimSettings {
    SimSettings {
        send_notice: false,
        known_pipelines: known_pipelines.into_iter().map(str::to_string).collect(),
        ..SimSettings::default()
    }
}

/// `<sim>/api/sn_devops/<version>devops/<path>` with a raw query string, sent as is.
fn url(sim: &SimHandle, version: &str, path: &str, query: &str) -> String {
    format!("{}/api/sn_devops/{version}devops/{path}?{query}", sim.url())
}

async fn send(
    method: reqwest::Method,
    url: String,
    authorization: Option<String>,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method, url)
        .header("Accept", "application/json");
    request = match authorization {
        Some(value) => request.header("Authorization", value),
        None => request.basic_auth(USER, Some(PASSWORD)),
    };
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn get(sim: &SimHandle, path: &str, query: &str) -> (u16, Value) {
    send(
        reqwest::Method::GET,
        url(sim, "v1/", path, query),
        None,
        None,
    )
    .await
}

async fn post(sim: &SimHandle, path: &str, query: &str, body: &Value) -> (u16, Value) {
    send(
        reqwest::Method::POST,
        url(sim, "v1/", path, query),
        None,
        Some(body),
    )
    .await
}

async fn put(sim: &SimHandle, path: &str, query: &str, body: &Value) -> (u16, Value) {
    send(
        reqwest::Method::PUT,
        url(sim, "v1/", path, query),
        None,
        Some(body),
    )
    .await
}

async fn register(sim: &SimHandle, body: &Value) -> (u16, Value) {
    let query = format!("toolId={}&toolType=jenkins", tool());
    post(sim, "orchestration/changeControl", &query, body).await
}

fn callback(token: &str) -> String {
    // Never called: the scenarios send no notices and decide nothing.
    format!("http://127.0.0.1:9/sn-devops/{token}")
}

fn first_error(body: &Value) -> String {
    body["result"]["details"]["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// A stage event as the plugin's `DevOpsRunStatusModel` serializes it.
fn stage_event(job_url: &str, stage: &str, phase: &str, build: u32) -> Value {
    json!({
        "url": format!("{job_url}{build}/"),
        "number": build,
        "phase": "STARTED",
        "pronoun": "Pipeline",
        "isMultiBranch": "false",
        "timestamp": 1_700_000_000_000u64,
        "jobModel": {"name": "svc", "url": job_url, "fullName": "team/svc"},
        "stageModel": {
            "name": stage,
            "id": "15",
            "phase": phase,
            "url": format!("{job_url}{build}/execution/node/15/wfapi/describe"),
            "pipelineExecutionUrl": format!("{job_url}{build}/"),
            "timestamp": 1_700_000_000_000u64,
        },
    })
}
