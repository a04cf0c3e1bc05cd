//! The real binary, killed with SIGKILL and restarted on the same store.
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use servicenow_sim::SimSettings;
use snowgate::api::GateView;
use snowgate::domain::GateState;

use crate::helpers::*;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Binary {
    pub child: Child,
}

impl Binary {
    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// A test that fails (panics) before it ends its `snowgate serve` must not leave it running:
/// dropping the handle ends the process (by its own pid) if it still runs.
impl Drop for Binary {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
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
    sim: &servicenow_sim::SimHandle,
    sim_cfg: &SimSettings,
    poll_interval: &str,
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
  poll_interval: {poll_interval}
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

pub async fn post(client: &reqwest::Client, url: &str, body: &str) -> u16 {
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

/// Send ServiceNow's `succeeded` callback to `url`, counting a 200 in `answered`; the reply's
/// status, `None` for a connection error or a timeout.
pub async fn succeed_counted(
    client: &reqwest::Client,
    url: &str,
    answered: &AtomicUsize,
) -> Option<u16> {
    let status = client
        .post(url)
        .header("Content-Type", "application/json")
        .body(r#"{"result":"succeeded"}"#)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .ok();
    if status == Some(200) {
        answered.fetch_add(1, Ordering::SeqCst);
    }
    status
}

pub async fn gate(client: &reqwest::Client, address: &str, id: &str) -> GateView {
    get_json(client, address, &format!("/api/v1/gates/{id}")).await
}

/// GET `path` at the snowgate at `address` with the pipeline token, read as `T`.
pub async fn get_json<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    address: &str,
    path: &str,
) -> T {
    client
        .get(format!("{address}{path}"))
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
    let sim_cfg = quiet_sim();
    let sim = servicenow_sim::start(sim_cfg.clone()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), port, &sim, &sim_cfg, "60s");
    let log = dir.path().join("snowgate.log");
    let address = format!("http://127.0.0.1:{port}");
    let mut bin = start_binary(&config, &address, &log).await;
    let client = reqwest::Client::new();

    let mut ids = Vec::new();
    for stage in ["A", "B", "C", "D"] {
        ids.push(open_on(&client, &address, stage).await);
    }
    let cb = |stage: &str| callback_url_in(&sim, stage);
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

    bin.kill(); // SIGKILL

    let mut bin = start_binary(&config, &address, &log).await;
    let states: Vec<GateState> = {
        let mut v = Vec::new();
        for id in &ids {
            v.push(gate(&client, &address, id).await.state);
        }
        v
    };
    assert_eq!(
        states,
        vec![
            GateState::Approved,
            GateState::Rejected,
            GateState::Pending,
            GateState::Pending
        ]
    );
    // Callback tokens are durable: ServiceNow's later call still finds its gate.
    assert_eq!(
        post(&client, &cb("C"), r#"{"result":"succeeded"}"#).await,
        200
    );
    assert_eq!(
        gate(&client, &address, &ids[2]).await.state,
        GateState::Approved
    );
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
    bin.kill();
}

async fn open_on(client: &reqwest::Client, address: &str, stage: &str) -> String {
    open_at(client, address, &gate_body(stage), &[201])
        .await
        .id
        .to_string()
}

async fn until_state_on(
    client: &reqwest::Client,
    address: &str,
    id: &str,
    state: GateState,
) -> GateView {
    for _ in 0..300 {
        let g = gate(client, address, id).await;
        if g.state == state {
            return g;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "gate {id} never reached {state}: {:?}",
        gate(client, address, id).await
    );
}

struct Setup {
    sim: servicenow_sim::SimHandle,
    _dir: tempfile::TempDir,
    config: std::path::PathBuf,
    log: std::path::PathBuf,
    address: String,
}

async fn setup(sim_cfg: SimSettings, poll_interval: &str) -> Setup {
    let sim = servicenow_sim::start(sim_cfg.clone()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), port, &sim, &sim_cfg, poll_interval);
    let log = dir.path().join("snowgate.log");
    Setup {
        sim,
        config,
        log,
        address: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    }
}

#[tokio::test]
async fn a_decision_made_while_snowgate_was_down_is_applied_after_restart() {
    let s = setup(SimSettings::default(), "1h").await;
    let client = reqwest::Client::new();
    let mut bin = start_binary(&s.config, &s.address, &s.log).await;
    let id = open_on(&client, &s.address, "Deploy").await;
    until_state_on(&client, &s.address, &id, GateState::Pending).await;
    bin.kill();

    let number = s
        .sim
        .changes()
        .into_iter()
        .find(|c| c.stage_name == "Deploy")
        .unwrap()
        .number;
    // snowgate is down: ServiceNow's callback cannot be delivered.
    assert_eq!(
        s.sim.approve(&number, "approved by CAB").await.unwrap(),
        None
    );

    let mut bin = start_binary(&s.config, &s.address, &s.log).await;
    let g = until_state_on(&client, &s.address, &id, GateState::Approved).await;
    assert_eq!(g.proceed, Some(true));
    assert!(g.message.contains("reconciling"), "{g:?}");
    // Asked with the task execution URL it registered.
    let asked = s
        .sim
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/orchestration/callback"))
        .expect("a reconciliation request");
    assert!(asked.query_pairs().contains(&(
        "taskExecutionURL".into(),
        "https://ci.example.com/job/shop/job/app/42/".into()
    )));
    bin.kill();
}

#[tokio::test]
async fn an_unacknowledged_decision_is_acknowledged_after_a_restart() {
    let s = setup(SimSettings::default(), "1h").await;
    let client = reqwest::Client::new();
    let mut bin = start_binary(&s.config, &s.address, &s.log).await;
    let id = open_on(&client, &s.address, "Deploy").await;
    until_state_on(&client, &s.address, &id, GateState::Pending).await;
    s.sim.inject_fault(servicenow_sim::Fault {
        endpoint: "changeControl.put".into(),
        fail_next: 1_000_000,
        status: 503,
        latency_ms: 0,
    });
    let url = callback_url_in(&s.sim, "Deploy");
    assert_eq!(post(&client, &url, r#"{"result":"succeeded"}"#).await, 200);
    // Let it fail a few times, then kill it.
    for _ in 0..200 {
        let puts = s
            .sim
            .requests()
            .iter()
            .filter(|r| r.method == "PUT")
            .count();
        if puts >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    bin.kill();
    s.sim.clear_faults();

    let mut bin = start_binary(&s.config, &s.address, &s.log).await;
    for _ in 0..300 {
        let acks = s
            .sim
            .changes()
            .into_iter()
            .find(|c| c.stage_name == "Deploy")
            .unwrap()
            .acknowledgements;
        if acks >= 1 {
            assert_eq!(acks, 1);
            bin.kill();
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bin.kill();
    panic!("the acknowledgement was not retried after the restart");
}

#[tokio::test]
async fn sigkill_during_a_burst_of_callbacks_loses_no_answered_decision() {
    let s = setup(quiet_sim(), "1h").await;
    let client = reqwest::Client::new();
    let mut bin = start_binary(&s.config, &s.address, &s.log).await;
    let stages: Vec<String> = (0..200).map(|i| format!("Stage {i}")).collect();
    let mut ids = Vec::new();
    for st in &stages {
        ids.push(open_on(&client, &s.address, st).await);
    }
    let urls: Vec<String> = stages
        .iter()
        .map(|st| callback_url_in(&s.sim, st))
        .collect();
    let answered = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for (i, url) in urls.iter().enumerate() {
        let client = client.clone();
        let url = url.clone();
        let answered = answered.clone();
        tasks.push(tokio::spawn(async move {
            (i, succeed_counted(&client, &url, &answered).await)
        }));
    }
    // Kill it in the middle of the burst.
    for _ in 0..2000 {
        if answered.load(Ordering::SeqCst) >= 40 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    bin.kill();
    let mut ok = Vec::new();
    for t in tasks {
        let (i, status) = t.await.unwrap();
        if status == Some(200) {
            ok.push(i);
        }
    }
    assert!(!ok.is_empty());

    let mut bin = start_binary(&s.config, &s.address, &s.log).await;
    for i in &ok {
        let g = gate(&client, &s.address, &ids[*i]).await;
        assert_eq!(
            g.state,
            GateState::Approved,
            "gate {i} was answered 200 but is {}",
            g.state
        );
    }
    bin.kill();
}

#[tokio::test]
async fn sigterm_answers_open_long_polls_and_exits_zero() {
    let s = setup(SimSettings::default(), "1h").await;
    let client = reqwest::Client::new();
    let mut bin = start_binary(&s.config, &s.address, &s.log).await;
    let mut waits = Vec::new();
    for st in ["A", "B", "C"] {
        let id = open_on(&client, &s.address, st).await;
        let client = client.clone();
        let url = format!("{}/api/v1/gates/{id}/wait?timeout=120", s.address);
        waits.push(tokio::spawn(async move {
            let r = client
                .get(url)
                .bearer_auth(PIPELINE_TOKEN)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<GateView>().await.unwrap())
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(bin.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    for w in waits {
        let (status, body) = tokio::time::timeout(Duration::from_secs(30), w)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(status, 200);
        assert_eq!(body.state, GateState::Pending);
    }
    let mut exited = None;
    for _ in 0..300 {
        if let Some(st) = bin.child.try_wait().unwrap() {
            exited = Some(st);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let Some(status) = exited else {
        bin.kill();
        panic!("snowgate did not exit after SIGTERM");
    };
    assert!(status.success(), "{status:?}");
    let log = std::fs::read_to_string(&s.log).unwrap();
    assert!(log.contains("snowgate stopped"), "{log}");
}

#[tokio::test]
async fn a_timeout_that_passed_while_snowgate_was_down_fires_after_restart() {
    let s = setup(SimSettings::default(), "1h").await;
    let client = reqwest::Client::new();
    let mut bin = start_binary(&s.config, &s.address, &s.log).await;
    let mut body = gate_body("Deploy");
    body["changeStepTimeoutSecs"] = 2.into();
    let resp = client
        .post(format!("{}/api/v1/gates", s.address))
        .bearer_auth(PIPELINE_TOKEN)
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let g: GateView = resp.json().await.unwrap();
    let id = g.id.to_string();
    assert_eq!(g.state, GateState::Pending);
    bin.kill();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut bin = start_binary(&s.config, &s.address, &s.log).await;
    let g = until_state_on(&client, &s.address, &id, GateState::TimedOut).await;
    assert_eq!(g.proceed, Some(false));
    bin.kill();
}
