//! Two real `snowgate serve` processes on one PostgreSQL database.
use std::path::{Path, PathBuf};

use std::time::{Duration, Instant};

use servicenow_sim::{SimHandle, SimSettings};
use snowgate::api::GateView;
use snowgate::domain::GateState;

use crate::durability::{free_port, gate, post, start_binary, Binary};
use crate::helpers::*;
use crate::pg::PgServer;

struct Cluster {
    sim: SimHandle,
    pg: PgServer,
    dir: tempfile::TempDir,
    a: Option<Binary>,
    b: Option<Binary>,
    a_url: String,
    b_url: String,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for bin in [self.a.take(), self.b.take()].into_iter().flatten() {
            let mut child = bin.child;
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// Each argument is one line of the YAML; a struct would only rename them.
#[allow(clippy::too_many_arguments)]
fn config(
    dir: &Path,
    name: &str,
    port: u16,
    public: &str,
    sim: &SimHandle,
    sim_cfg: &SimSettings,
    db: &str,
    poll: &str,
) -> PathBuf {
    let yaml = format!(
        r#"server:
  bind: "127.0.0.1:{port}"
callback:
  public_base_url: "{public}/"
servicenow:
  instance_url: "{instance}"
  tool_id: "{tool}"
  auth: token
  token: "{token}"
  timeout: 2s
  poll_interval: {poll}
store:
  url: "{db}"
  lease_ttl: 1s
  pool_size: 8
outbox:
  initial_backoff: 50ms
  max_backoff: 300ms
auth:
  pipeline_tokens: [ {{ name: jenkins, token: "{pipeline}" }} ]
  operator_tokens: [ {{ name: alice, token: "{operator}" }} ]
"#,
        instance = sim.url(),
        tool = sim_cfg.tool_id,
        token = sim_cfg.token,
        pipeline = PIPELINE_TOKEN,
        operator = OPERATOR_TOKEN,
    );
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, yaml).unwrap();
    path
}

async fn cluster(sim_cfg: SimSettings, poll: &str) -> Cluster {
    let sim = servicenow_sim::start(sim_cfg.clone()).await.unwrap();
    let pg = PgServer::start();
    let db = pg.database("snowgate").await;
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (free_port(), free_port());
    let a_url = format!("http://127.0.0.1:{pa}");
    let b_url = format!("http://127.0.0.1:{pb}");
    // Behind a load balancer both would have one public URL; here callbacks name replica A,
    // and the tests send them to either replica by hand.
    let ca = config(dir.path(), "a", pa, &a_url, &sim, &sim_cfg, &db, poll);
    let cb = config(dir.path(), "b", pb, &a_url, &sim, &sim_cfg, &db, poll);
    let a = start_binary(&ca, &a_url, &dir.path().join("a.log")).await;
    let b = start_binary(&cb, &b_url, &dir.path().join("b.log")).await;
    Cluster {
        sim,
        pg,
        dir,
        a: Some(a),
        b: Some(b),
        a_url,
        b_url,
    }
}

async fn open_on(client: &reqwest::Client, address: &str, stage: &str) -> GateView {
    open_at(client, address, &gate_body(stage), &[200, 201]).await
}

/// The callback path of `stage`, to send to whichever replica.
fn callback_path(sim: &SimHandle, stage: &str) -> String {
    let url = registration_in(sim, stage).json().unwrap()["callbackURL"]
        .as_str()
        .unwrap()
        .to_string();
    url[url.find("/sn-devops/").unwrap()..].to_string()
}

#[tokio::test]
async fn a_decision_at_one_replica_wakes_the_long_poll_held_by_the_other() {
    let c = cluster(quiet_sim(), "1h").await;
    let client = reqwest::Client::new();
    let g = open_on(&client, &c.a_url, "Deploy").await;
    let id = g.id.to_string();
    let waiter = {
        let client = client.clone();
        let url = format!("{}/api/v1/gates/{id}/wait?timeout=120", c.a_url);
        tokio::spawn(async move {
            let r = client
                .get(url)
                .bearer_auth(PIPELINE_TOKEN)
                .send()
                .await
                .unwrap();
            (r.json::<GateView>().await.unwrap(), Instant::now())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = Instant::now();
    let path = callback_path(&c.sim, "Deploy");
    assert_eq!(
        post(
            &client,
            &format!("{}{path}", c.b_url),
            r#"{"result":"succeeded"}"#
        )
        .await,
        200
    );
    let (body, at) = tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(body.state, GateState::Approved);
    // Answered by the notification, far sooner than the 120 s long-poll timeout.
    assert!(at.duration_since(sent) < Duration::from_secs(10));
    // Either replica answers any request about the gate, the operator endpoints included.
    assert_eq!(
        gate(&client, &c.b_url, &id).await.state,
        GateState::Approved
    );
    let other = open_on(&client, &c.b_url, "Verify").await;
    let resp = client
        .post(format!("{}/api/v1/gates/{}/abort", c.a_url, other.id))
        .bearer_auth(OPERATOR_TOKEN)
        .header("Content-Type", "application/json")
        .body(r#"{"reason":"wrong build"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn polling_is_done_by_one_replica_at_a_time() {
    let c = cluster(SimSettings::default(), "300ms").await;
    c.sim.set_drop_callbacks(true);
    let client = reqwest::Client::new();
    open_on(&client, &c.a_url, "Deploy").await;
    c.sim.clear_requests();
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let polls = c
        .sim
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/orchestration/changeInfo"))
        .count();
    let one_replica = started.elapsed().as_millis() as usize / 300;
    assert!(polls >= 3, "the gate is polled: {polls}");
    // Two replicas polling the same gate would make about twice as many.
    assert!(
        polls <= one_replica + 2,
        "{polls} polls in {:?}",
        started.elapsed()
    );
}

async fn burst(c: &Cluster, client: &reqwest::Client, n: usize) -> (Vec<String>, Vec<usize>) {
    let stages: Vec<String> = (0..n).map(|i| format!("Stage {i}")).collect();
    let mut ids = Vec::new();
    for (i, st) in stages.iter().enumerate() {
        let at = if i % 2 == 0 { &c.a_url } else { &c.b_url };
        ids.push(open_on(client, at, st).await.id.to_string());
    }
    let mut tasks = Vec::new();
    for (i, st) in stages.iter().enumerate() {
        let url = format!(
            "{}{}",
            if i % 2 == 0 { &c.a_url } else { &c.b_url },
            callback_path(&c.sim, st)
        );
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let s = client
                .post(url)
                .body(r#"{"result":"succeeded"}"#)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .ok();
            (i, s)
        }));
    }
    let mut ok = Vec::new();
    for t in tasks {
        let (i, s) = t.await.unwrap();
        if s == Some(200) {
            ok.push(i);
        }
    }
    (ids, ok)
}

async fn until_acknowledged_once(sim: &SimHandle, stages: &[String]) {
    for _ in 0..400 {
        let changes = sim.changes();
        let acks: Vec<u32> = stages
            .iter()
            .map(|s| {
                changes
                    .iter()
                    .find(|c| &c.stage_name == s)
                    .map_or(0, |c| c.acknowledgements)
            })
            .collect();
        if acks.iter().all(|a| *a >= 1) {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let changes = sim.changes();
            for s in stages {
                let n = changes
                    .iter()
                    .find(|c| &c.stage_name == s)
                    .unwrap()
                    .acknowledgements;
                assert_eq!(n, 1, "stage {s} was acknowledged {n} times");
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not every decision was acknowledged");
}

#[tokio::test]
async fn a_burst_split_across_replicas_is_acknowledged_exactly_once_per_gate() {
    let c = cluster(quiet_sim(), "1h").await;
    let client = reqwest::Client::new();
    let (ids, ok) = burst(&c, &client, 60).await;
    assert_eq!(ok.len(), 60);
    for id in &ids {
        assert_eq!(gate(&client, &c.b_url, id).await.state, GateState::Approved);
    }
    let stages: Vec<String> = (0..60).map(|i| format!("Stage {i}")).collect();
    until_acknowledged_once(&c.sim, &stages).await;
}

#[tokio::test]
async fn killing_a_replica_loses_no_answered_decision_and_the_other_carries_on() {
    let mut c = cluster(quiet_sim(), "1h").await;
    let client = reqwest::Client::new();
    // Acknowledgements fail for a while, so replica A has claimed outbox work when it dies.
    c.sim.inject_fault(servicenow_sim::Fault {
        endpoint: "changeControl.put".into(),
        fail_next: 1_000_000,
        status: 503,
        latency_ms: 0,
    });
    let n = 40;
    let stages: Vec<String> = (0..n).map(|i| format!("Stage {i}")).collect();
    let mut ids = Vec::new();
    for (i, st) in stages.iter().enumerate() {
        let at = if i % 2 == 0 { &c.a_url } else { &c.b_url };
        ids.push(open_on(&client, at, st).await.id.to_string());
    }
    // Opened at A: a gate whose step timeout runs, and one decided only by polling.
    let mut timed = gate_body("Timer");
    timed["changeStepTimeoutSecs"] = 2.into();
    let timed = open_at(&client, &c.a_url, &timed, &[201]).await;
    let mut polled = gate_body("Polled");
    polled["pollingIntervalSecs"] = 1.into();
    let polled = open_at(&client, &c.a_url, &polled, &[201]).await;
    let mut tasks = Vec::new();
    for (i, st) in stages.iter().enumerate() {
        let url = format!(
            "{}{}",
            if i % 2 == 0 { &c.a_url } else { &c.b_url },
            callback_path(&c.sim, st)
        );
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            (
                i,
                client
                    .post(url)
                    .body(r#"{"result":"succeeded"}"#)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .ok(),
            )
        }));
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut a = c.a.take().unwrap();
    a.child.kill().unwrap(); // SIGKILL, mid-burst
    a.child.wait().unwrap();
    let mut answered = Vec::new();
    for t in tasks {
        let (i, s) = t.await.unwrap();
        if s == Some(200) {
            answered.push(i);
        }
    }
    for i in &answered {
        assert_eq!(
            gate(&client, &c.b_url, &ids[*i]).await.state,
            GateState::Approved,
            "stage {i}"
        );
    }
    // A's claimed acknowledgements expire (lease) and B sends them, once each.
    c.sim.clear_faults();
    let decided: Vec<String> = answered.iter().map(|i| stages[*i].clone()).collect();
    until_acknowledged_once(&c.sim, &decided).await;
    // A's timers and polling go on at B: the step timeout fires, and a CR approved without a
    // callback is found by B's poller.
    c.sim.set_drop_callbacks(true);
    let number = c
        .sim
        .changes()
        .into_iter()
        .find(|ch| ch.stage_name == "Polled")
        .unwrap()
        .number;
    c.sim.approve(&number, "ok").await.unwrap();
    let (timed, polled) = (timed.id.to_string(), polled.id.to_string());
    let mut states = (GateState::Pending, GateState::Pending);
    for _ in 0..200 {
        states = (
            gate(&client, &c.b_url, &timed).await.state,
            gate(&client, &c.b_url, &polled).await.state,
        );
        if states == (GateState::TimedOut, GateState::Approved) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "after A died: timer gate {}, polled gate {}",
        states.0, states.1
    );
}

#[tokio::test]
async fn a_postgres_restart_is_survived_and_readyz_tells_meanwhile() {
    let c = cluster(quiet_sim(), "1h").await;
    let client = reqwest::Client::new();
    open_on(&client, &c.a_url, "Before").await;
    c.pg.stop();
    let ready = client
        .get(format!("{}/readyz", c.a_url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let resp = client
        .post(format!("{}/api/v1/gates", c.a_url))
        .bearer_auth(PIPELINE_TOKEN)
        .header("Content-Type", "application/json")
        .body(gate_body("During").to_string())
        .send()
        .await
        .unwrap();
    assert_error(resp, 503, "store_unavailable").await;
    c.pg.restart();
    for _ in 0..100 {
        if client
            .get(format!("{}/readyz", c.a_url))
            .send()
            .await
            .unwrap()
            .status()
            == 200
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        client
            .get(format!("{}/readyz", c.b_url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let g = open_on(&client, &c.b_url, "After").await;
    assert_eq!(g.state, GateState::Pending);
    // Cross-replica wake-ups work again after the listening connection reconnected.
    let id = g.id.to_string();
    let waiter = {
        let client = client.clone();
        let url = format!("{}/api/v1/gates/{id}/wait?timeout=60", c.b_url);
        tokio::spawn(async move {
            client
                .get(url)
                .bearer_auth(PIPELINE_TOKEN)
                .send()
                .await
                .unwrap()
                .json::<GateView>()
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let path = callback_path(&c.sim, "After");
    assert_eq!(
        post(
            &client,
            &format!("{}{path}", c.a_url),
            r#"{"result":"succeeded"}"#
        )
        .await,
        200
    );
    let body = tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(body.state, GateState::Approved);
    let _ = &c.dir;
}
