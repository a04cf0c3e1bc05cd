//! The real binary, killed with SIGKILL and restarted on the same store.
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use snowgate::simulator::{self, SimSettings};

use crate::helpers::*;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Binary {
    pub child: Child,
}

/// Start `snowgate serve` with `config` and wait until it answers /healthz.
pub async fn start_binary(config: &Path, address: &str, log: &Path) -> Binary {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_snowgate"))
        .args(["serve", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("snowgate starts");
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if let Ok(r) = client.get(format!("{address}/healthz")).send().await {
            if r.status() == 200 {
                return Binary { child };
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("snowgate did not start");
}

pub fn write_config(
    dir: &Path,
    port: u16,
    sim: &simulator::SimHandle,
    sim_cfg: &SimSettings,
) -> std::path::PathBuf {
    let yaml = format!(
        r#"server:
  bind: "127.0.0.1:{port}"
callback:
  public_base_url: "http://127.0.0.1:{port}/"
servicenow:
  instance_url: "{instance}"
  tool_id: "{tool}"
  auth: token
  token: "{token}"
  timeout: 5s
store:
  url: "sqlite://{db}"
outbox:
  initial_backoff: 50ms
  max_backoff: 500ms
auth:
  pipeline_tokens: [ {{ name: jenkins, token: "{pipeline}" }} ]
  operator_tokens: [ {{ name: alice, token: "{operator}" }} ]
"#,
        instance = sim.url(),
        tool = sim_cfg.tool_id,
        token = sim_cfg.token,
        db = dir.join("snowgate.db").display(),
        pipeline = PIPELINE_TOKEN,
        operator = OPERATOR_TOKEN,
    );
    let path = dir.join("snowgate.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

async fn post(client: &reqwest::Client, url: &str, body: &str) -> u16 {
    client
        .post(url)
        .bearer_auth(PIPELINE_TOKEN)
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn gate(client: &reqwest::Client, address: &str, id: &str) -> Value {
    client
        .get(format!("{address}/api/v1/gates/{id}"))
        .bearer_auth(PIPELINE_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn gates_and_decisions_survive_sigkill() {
    let sim_cfg = SimSettings {
        send_notice: false,
        ..SimSettings::default()
    };
    let sim = simulator::start(sim_cfg.clone()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), port, &sim, &sim_cfg);
    let log = dir.path().join("snowgate.log");
    let address = format!("http://127.0.0.1:{port}");
    let mut bin = start_binary(&config, &address, &log).await;
    let client = reqwest::Client::new();

    let mut ids = Vec::new();
    for stage in ["A", "B", "C", "D"] {
        let resp = client
            .post(format!("{address}/api/v1/gates"))
            .bearer_auth(PIPELINE_TOKEN)
            .header("Content-Type", "application/json")
            .body(gate_body(stage).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        let g: Value = resp.json().await.unwrap();
        ids.push(g["id"].as_str().unwrap().to_string());
    }
    let cb = |stage: &str| {
        registration_in(&sim, stage).json().unwrap()["callbackURL"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        post(&client, &cb("A"), r#"{"result":"succeeded"}"#).await,
        200
    );
    assert_eq!(
        post(
            &client,
            &cb("B"),
            r#"{"result":"rejected","changeComments":"no"}"#
        )
        .await,
        200
    );

    bin.child.kill().unwrap(); // SIGKILL
    bin.child.wait().unwrap();

    let mut bin = start_binary(&config, &address, &log).await;
    let states: Vec<String> = {
        let mut v = Vec::new();
        for id in &ids {
            v.push(
                gate(&client, &address, id).await["state"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
        }
        v
    };
    assert_eq!(states, vec!["approved", "rejected", "pending", "pending"]);
    // Callback tokens are durable: ServiceNow's later call still finds its gate.
    assert_eq!(
        post(&client, &cb("C"), r#"{"result":"succeeded"}"#).await,
        200
    );
    assert_eq!(gate(&client, &address, &ids[2]).await["state"], "approved");
    // Re-opening after the restart returns the same gate.
    let resp = client
        .post(format!("{address}/api/v1/gates"))
        .bearer_auth(PIPELINE_TOKEN)
        .header("Content-Type", "application/json")
        .body(gate_body("D").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    bin.child.kill().unwrap();
    bin.child.wait().unwrap();
}
