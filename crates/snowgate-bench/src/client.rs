//! The benchmark's side of the API: opening gates, long-polls and callbacks.
use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use futures::stream::{self, StreamExt};
use serde_json::{json, Value};
use servicenow_sim::SimHandle;

pub const TOKEN: &str = "bench-pipeline-token-0123456789";

pub fn client(connections: usize) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .timeout(Duration::from_secs(600))
        .build()?)
}

/// Open one gate for build `i + 1`; its id.
async fn open_one(
    http: &reqwest::Client,
    server: &str,
    stage: &str,
    i: usize,
) -> anyhow::Result<String> {
    let body = json!({
        "jobUrl": "http://jenkins.bench/job/app/",
        "buildNumber": i + 1,
        "stageName": stage,
        "buildUrl": format!("http://jenkins.bench/job/app/{}/", i + 1),
    });
    let r = http
        .post(format!("{server}/api/v1/gates"))
        .bearer_auth(TOKEN)
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await?;
    anyhow::ensure!(r.status().as_u16() == 201, "open answered {}", r.status());
    let g: Value = r.json().await?;
    anyhow::ensure!(g["state"] == "pending", "gate not pending: {g}");
    Ok(g["id"].as_str().unwrap_or_default().to_string())
}

/// Open `n` gates of stage `stage`, 64 at a time, gate `i` at `servers[i % servers.len()]`;
/// returns (gate id, callback URL) pairs in the order of `i`.
pub async fn open_gates(
    http: &reqwest::Client,
    servers: &[&str],
    sim: &SimHandle,
    stage: &str,
    n: usize,
) -> anyhow::Result<Vec<(String, String)>> {
    anyhow::ensure!(!servers.is_empty(), "no server to open gates at");
    let ids: Vec<anyhow::Result<(usize, String)>> = stream::iter(0..n)
        .map(|i| async move {
            let server = servers[i % servers.len()];
            Ok((i, open_one(http, server, stage, i).await?))
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let mut by_build: Vec<(usize, String)> = ids.into_iter().collect::<anyhow::Result<_>>()?;
    by_build.sort();
    // The callback URL of each gate, from the registrations the simulator received.
    let callbacks: HashMap<String, String> = sim
        .changes()
        .into_iter()
        .filter(|c| c.stage_name == stage)
        .map(|c| (c.build_number.unwrap_or_default(), c.callback_url))
        .collect();
    by_build
        .into_iter()
        .map(|(i, id)| {
            let cb = callbacks
                .get(&(i + 1).to_string())
                .cloned()
                .with_context(|| format!("no registration seen for build {}", i + 1))?;
            Ok((id, cb))
        })
        .collect()
}

pub async fn long_poll(http: &reqwest::Client, server: &str, id: &str) -> anyhow::Result<Value> {
    Ok(long_poll_timed(http, server, id).await?.0)
}

/// The long-poll's answer and its `Server-Timing: decision;dur=…` (ms since the deciding
/// callback arrived), when the server sent one.
pub async fn long_poll_timed(
    http: &reqwest::Client,
    server: &str,
    id: &str,
) -> anyhow::Result<(Value, Option<Duration>)> {
    let r = http
        .get(format!("{server}/api/v1/gates/{id}/wait?timeout=300"))
        .bearer_auth(TOKEN)
        .send()
        .await?;
    let server_ms = r
        .headers()
        .get("server-timing")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("decision;dur="))
        .and_then(|v| v.parse::<f64>().ok());
    Ok((
        r.json().await?,
        server_ms.map(|ms| Duration::from_secs_f64(ms / 1000.0)),
    ))
}

/// (sum, count) of the server's decision-latency histogram (store commit and wake-ups).
pub async fn decision_seconds(http: &reqwest::Client, server: &str) -> Option<(f64, f64)> {
    let text = http
        .get(format!("{server}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let value = |suffix: &str| -> Option<f64> {
        text.lines()
            .find(|l| l.contains(&format!("decision_latency_seconds_{suffix}")))?
            .rsplit(' ')
            .next()?
            .parse()
            .ok()
    };
    Some((value("sum")?, value("count")?))
}

/// ServiceNow's approval callback; the answer's status.
pub async fn callback(http: &reqwest::Client, url: &str) -> anyhow::Result<u16> {
    Ok(http
        .post(url)
        .header("Content-Type", "application/json")
        .body(r#"{"result":"succeeded","changeComments":"bench"}"#)
        .send()
        .await?
        .status()
        .as_u16())
}
